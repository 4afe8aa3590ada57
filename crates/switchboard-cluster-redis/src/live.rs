//! The payload of a channel's (or tag's) pub/sub message: how a node that follows a
//! channel learns of each message in order, and of the channel's deletion after them.
//!
//! The append and delete scripts build these in Lua: `"<seq>:<epoch>:<time>:" .. payload`
//! for a message and `"D:<cid>"` for the tombstone of a deleted channel. The numbers are
//! plain decimal; the payload after the third `:` is the encoded frame, passed on as
//! given. The encoders here mirror the scripts, for tests and for anything that must
//! produce the same bytes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::BackplaneError;

/// One pub/sub message of a channel topic, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// A message appended to the channel; `payload` is a slice of the pub/sub payload.
    Message {
        seq: u64,
        epoch: u64,
        time_us: u64,
        payload: Bytes,
    },
    /// The channel incarnation `cid` was deleted; nothing of it follows.
    Deleted { cid: u64 },
}

/// The tag that starts a tombstone (a message starts with a digit instead).
const TOMBSTONE: &[u8] = b"D:";

/// Decodes a pub/sub payload. The message payload shares `payload`'s buffer (no copy).
pub fn decode(payload: &Bytes) -> Result<Live, BackplaneError> {
    if let Some(cid) = payload.strip_prefix(TOMBSTONE) {
        let cid = parse_decimal(cid)
            .ok_or_else(|| malformed("a tombstone without a valid incarnation id", payload))?;
        return Ok(Live::Deleted { cid });
    }
    let mut rest: &[u8] = payload;
    let mut numbers = [0u64; 3];
    for (number, what) in numbers.iter_mut().zip(["seq", "epoch", "time"]) {
        let end = rest
            .iter()
            .position(|&byte| byte == b':')
            .ok_or_else(|| malformed(&format!("no {what} field"), payload))?;
        *number = parse_decimal(&rest[..end])
            .ok_or_else(|| malformed(&format!("an invalid {what}"), payload))?;
        rest = &rest[end + 1..];
    }
    let [seq, epoch, time_us] = numbers;
    let start = payload.len() - rest.len();
    Ok(Live::Message {
        seq,
        epoch,
        time_us,
        payload: payload.slice(start..),
    })
}

/// The payload the append script publishes for a message.
pub fn encode_message(seq: u64, epoch: u64, time_us: u64, payload: &[u8]) -> Bytes {
    let prefix = format!("{seq}:{epoch}:{time_us}:");
    let mut encoded = BytesMut::with_capacity(prefix.len() + payload.len());
    encoded.put_slice(prefix.as_bytes());
    encoded.put_slice(payload);
    encoded.freeze()
}

/// The payload the delete script publishes after a channel's last message.
pub fn encode_deleted(cid: u64) -> Bytes {
    Bytes::from(format!("D:{cid}"))
}

/// A non-empty run of ASCII digits that fits a u64; nothing else (no sign, no spaces).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = char::from(byte).to_digit(10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn malformed(what: &str, payload: &[u8]) -> BackplaneError {
    let shown = &payload[..payload.len().min(40)];
    BackplaneError::Reply(format!(
        "live payload with {what}: {:?}",
        String::from_utf8_lossy(shown)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_shares_the_buffer() {
        let encoded = encode_message(7, (1 << 52) - 1, 1_764_000_000_000_123, b"fr:ame\0");
        let Ok(Live::Message {
            seq,
            epoch,
            time_us,
            payload,
        }) = decode(&encoded)
        else {
            panic!("not a message: {encoded:?}");
        };
        assert_eq!(
            (seq, epoch, time_us),
            (7, (1 << 52) - 1, 1_764_000_000_000_123)
        );
        assert_eq!(&payload[..], b"fr:ame\0");
        let offset = payload.as_ptr() as usize - encoded.as_ptr() as usize;
        assert_eq!(offset, encoded.len() - payload.len(), "payload was copied");
    }

    #[test]
    fn an_empty_payload_is_a_message_too() {
        assert_eq!(
            decode(&Bytes::from_static(b"1:2:3:")).ok(),
            Some(Live::Message {
                seq: 1,
                epoch: 2,
                time_us: 3,
                payload: Bytes::new()
            })
        );
    }

    #[test]
    fn a_tombstone_round_trips() {
        assert_eq!(
            decode(&encode_deleted(u64::MAX)).ok(),
            Some(Live::Deleted { cid: u64::MAX })
        );
    }

    #[test]
    fn bad_input_is_a_reply_error() {
        let bad: &[&[u8]] = &[
            b"",
            b"D:",
            b"D:12x",
            b"D:-1",
            b"1",
            b"1:2",
            b"1:2:3",
            b":2:3:x",
            b"1::3:x",
            b"1:2::x",
            b"-1:2:3:x",
            b"+1:2:3:x",
            b"1 :2:3:x",
            b"18446744073709551616:2:3:x",
            b"1:2:99999999999999999999999:x",
            b"\xff\xfe:1:2:x",
            b"d:5",
        ];
        for input in bad {
            match decode(&Bytes::from_static(input)) {
                Err(BackplaneError::Reply(_)) => {}
                other => panic!("{:?} decoded as {other:?}", String::from_utf8_lossy(input)),
            }
        }
    }
}
