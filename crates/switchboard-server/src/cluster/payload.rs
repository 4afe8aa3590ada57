//! The payload a node hands the backplane for each message, opaque to the backplane: a
//! version byte, a flags byte, and the message's MESSAGE frame encoded without sequence
//! number, time or HMAC tag (the backplane assigns the first two; each node signs with
//! its own key). A receiving node puts the position in and encodes its live frame.

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_proto::codec::view_encoded;
use switchboard_proto::packet::{Envelope, Message};
use switchboard_proto::{Flags, FrameCodec, Limits, ProtoError, subject};

use crate::hub::message::StoredMessage;

const VERSION: u8 = 1;
/// The channel drops the oldest queued messages of a slow subscriber rather than
/// disconnecting it.
const DROP_OLDEST: u8 = 1;

/// A codec for payload frames: no HMAC, and no size bound beyond the protocol's (the
/// publishing node already checked the frame against its own).
pub(crate) fn payload_codec() -> FrameCodec {
    FrameCodec::new(Limits {
        max_header_len: usize::from(u16::MAX),
        max_content_len: u32::MAX,
    })
}

/// The payload of `envelope` (whose seq and time are ignored).
pub(crate) fn encode(
    codec: &FrameCodec,
    envelope: &Envelope<'_>,
    drop_oldest: bool,
) -> Result<Bytes, ProtoError> {
    let unplaced = Envelope {
        seq: 0,
        time_us: 0,
        ..*envelope
    };
    let mut buf = BytesMut::with_capacity(envelope.body.len() + 128);
    buf.put_u8(VERSION);
    buf.put_u8(if drop_oldest { DROP_OLDEST } else { 0 });
    codec.encode_packet(0, Flags::empty(), &unplaced, &mut buf)?;
    Ok(buf.freeze())
}

/// The channel of the message in a payload, if the payload is readable.
pub(crate) fn channel_of(payload: &Bytes) -> Option<String> {
    if payload.len() < 2 || payload[0] != VERSION {
        return None;
    }
    let frame = payload.slice(2..);
    let message = Message::from_frame(&view_encoded(&frame).ok()?).ok()?;
    Some(message.channel.to_string())
}

/// A message read back from a payload, placed at `seq` and `time_us`.
#[derive(Debug)]
pub(crate) struct Placed {
    pub message: StoredMessage,
    pub drop_oldest: bool,
}

/// Decodes a payload and encodes its live frame with `live_codec` (the node's, which may
/// sign it) at the given position.
pub(crate) fn place(
    live_codec: &FrameCodec,
    payload: &Bytes,
    seq: u64,
    time_us: u64,
) -> Result<Placed, PayloadError> {
    if payload.len() < 2 {
        return Err(PayloadError::Short);
    }
    if payload[0] != VERSION {
        return Err(PayloadError::Version(payload[0]));
    }
    let drop_oldest = payload[1] & DROP_OLDEST != 0;
    let frame = payload.slice(2..);
    let message = Message::from_frame(&view_encoded(&frame)?)?;
    let tags = subject::message_hashtags(&message.content_type, &message.body);
    let envelope = Envelope {
        seq,
        time_us,
        ..message.as_envelope()
    };
    let message = StoredMessage::encode(live_codec, &envelope, tags)?;
    Ok(Placed {
        message,
        drop_oldest,
    })
}

/// A payload this node cannot read (written by a newer node, or damaged).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PayloadError {
    #[error("message payload too short")]
    Short,
    #[error("message payload of unknown version {0}")]
    Version(u8),
    #[error("message payload: {0}")]
    Frame(#[from] ProtoError),
}

#[cfg(test)]
mod tests {
    use switchboard_proto::packet::Scope;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_payload_places_the_message_where_the_backplane_says() {
        let codec = payload_codec();
        let headers = Vec::new();
        let envelope = Envelope {
            scope: Scope::Channel,
            channel: "news",
            id: Uuid::now_v7(),
            seq: 99,
            time_us: 99,
            sender_id: 7,
            sender_name: "ann",
            content_type: "text/plain",
            user_headers: &headers,
            body: b"hello #World",
            body_crc: None,
            stream: None,
        };
        let payload = encode(&codec, &envelope, true).unwrap();
        let placed = place(&codec, &payload, 5, 1234).unwrap();
        assert!(placed.drop_oldest);
        assert_eq!(placed.message.seq(), 5);
        assert_eq!(placed.message.time_us(), 1234);
        assert_eq!(placed.message.id(), envelope.id);
        assert_eq!(placed.message.tags(), ["world"]);
        let read = placed.message.envelope().unwrap();
        assert_eq!(&*read.body, b"hello #World");
        assert_eq!(read.sender_id, 7);
    }

    #[test]
    fn damaged_payloads_are_refused_not_trusted() {
        let codec = payload_codec();
        assert!(matches!(
            place(&codec, &Bytes::from_static(b"\x01"), 1, 1),
            Err(PayloadError::Short)
        ));
        assert!(matches!(
            place(&codec, &Bytes::from_static(b"\x09\x00abc"), 1, 1),
            Err(PayloadError::Version(9))
        ));
        assert!(matches!(
            place(&codec, &Bytes::from_static(b"\x01\x00garbage"), 1, 1),
            Err(PayloadError::Frame(_))
        ));
    }
}
