//! Records as stored: protocol frames encoded without an HMAC tag (so that the store does
//! not depend on the key sessions use), and decoded with both CRC32C checks, so that a
//! corrupt record is reported and skipped, never served.

use bytes::{Bytes, BytesMut};
use switchboard_proto::packet::{Encode, Message, Packet};
use switchboard_proto::{Flags, FrameCodec, Limits, ProtoError};
use tokio_util::codec::Decoder;
use tracing::error;

use super::storage_error;
use crate::log;
use crate::storage::StorageError;

/// Frames with the full limits and no HMAC: the storage format, independent of the key
/// sessions use.
pub(crate) fn record_codec() -> FrameCodec {
    FrameCodec::new(Limits {
        max_header_len: usize::from(u16::MAX),
        max_content_len: u32::MAX,
    })
}

/// A directory record (channel options, a group, its members) as stored.
pub(super) fn encode_record<P: Encode>(packet: &P) -> Result<Bytes, StorageError> {
    let mut buf = BytesMut::new();
    record_codec()
        .encode_packet(0, Flags::empty(), packet, &mut buf)
        .map_err(|e| storage_error("encoding a record", e))?;
    Ok(buf.freeze())
}

/// The next frame of `buf` as a packet; a frame cut short is an error, not a wait.
fn decode_packet(codec: &mut FrameCodec, buf: &mut BytesMut) -> Result<Packet, ProtoError> {
    let have = buf.len();
    codec
        .decode(buf)
        .and_then(|frame| {
            frame.ok_or(ProtoError::Truncated {
                needed: have + 1,
                have,
            })
        })
        .and_then(|frame| Packet::from_frame(&frame))
}

/// Decodes a record, checking its CRCs; `None` (after a report) if it is corrupt.
pub(super) fn decode_record(key: &[u8], value: &[u8]) -> Option<Packet> {
    let mut buf = BytesMut::from(value);
    match decode_packet(&mut record_codec(), &mut buf) {
        Ok(packet) if buf.is_empty() => Some(packet),
        Ok(_) => {
            error!(target: log::ERROR, key = %String::from_utf8_lossy(key), "corrupt record skipped: trailing bytes");
            None
        }
        Err(e) => {
            error!(target: log::ERROR, key = %String::from_utf8_lossy(key), error = %e, "corrupt record skipped");
            None
        }
    }
}

/// Decodes a chunk's messages into `messages`, checking their CRCs. A corrupt frame ends
/// the chunk (what follows cannot be delimited): reported, and 1 returned, else 0.
pub(super) fn decode_chunk(key: &[u8], value: &[u8], messages: &mut Vec<Message>) -> u64 {
    let mut codec = record_codec();
    let mut buf = BytesMut::from(value);
    while !buf.is_empty() {
        match decode_packet(&mut codec, &mut buf) {
            Ok(Packet::Message(message)) => messages.push(message),
            Ok(_) => {
                error!(target: log::ERROR, key = %String::from_utf8_lossy(key), "corrupt record skipped: not a message");
                return 1;
            }
            Err(e) => {
                error!(target: log::ERROR, key = %String::from_utf8_lossy(key), error = %e, "corrupt record skipped");
                return 1;
            }
        }
    }
    0
}
