//! The payload a node hands the backplane for each message, opaque to the backplane: a
//! version byte, a flags byte, and the message's MESSAGE frame encoded without sequence
//! number, time or HMAC tag (the backplane assigns the first two; each node signs with
//! its own key). A receiving node puts the position in and encodes its live frame.
//!
//! A message whose body was streamed has version 2: after the flags byte comes the id of
//! the node that keeps the body (8 bytes), and the frame carries the body's length in
//! its stream field and no body. A node that knows only version 1 refuses such a payload
//! as of an unknown version rather than reading it as a message with an empty body.

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_proto::codec::view_encoded;
use switchboard_proto::packet::{Envelope, Message};
use switchboard_proto::{Flags, FrameCodec, Limits, ProtoError, subject};

use std::sync::Arc;

use super::bodies::{NodeLink, RemoteBody};
use crate::blobs::Blob;
use crate::hub::message::StoredMessage;

const VERSION: u8 = 1;
/// A message whose body stays on its origin node.
const VERSION_STREAMED: u8 = 2;
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

/// The payload of a message whose streamed body `origin` keeps: `envelope` has an empty
/// body and its `stream` set to the body's length.
pub(crate) fn encode_streamed(
    codec: &FrameCodec,
    envelope: &Envelope<'_>,
    drop_oldest: bool,
    origin: u64,
) -> Result<Bytes, ProtoError> {
    let unplaced = Envelope {
        seq: 0,
        time_us: 0,
        ..*envelope
    };
    let mut buf = BytesMut::with_capacity(160);
    buf.put_u8(VERSION_STREAMED);
    buf.put_u8(if drop_oldest { DROP_OLDEST } else { 0 });
    buf.put_u64(origin);
    codec.encode_packet(0, Flags::empty(), &unplaced, &mut buf)?;
    Ok(buf.freeze())
}

/// The frame inside a payload, and the origin of its body if it was streamed.
fn frame_of(payload: &Bytes) -> Result<(Bytes, Option<u64>), PayloadError> {
    if payload.len() < 2 {
        return Err(PayloadError::Short);
    }
    match payload[0] {
        VERSION => Ok((payload.slice(2..), None)),
        VERSION_STREAMED if payload.len() >= 10 => {
            let mut origin = [0u8; 8];
            origin.copy_from_slice(&payload[2..10]);
            Ok((payload.slice(10..), Some(u64::from_be_bytes(origin))))
        }
        VERSION_STREAMED => Err(PayloadError::Short),
        other => Err(PayloadError::Version(other)),
    }
}

/// The channel of the message in a payload, if the payload is readable.
pub(crate) fn channel_of(payload: &Bytes) -> Option<String> {
    let (frame, _) = frame_of(payload).ok()?;
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
/// sign it) at the given position. A streamed body is refused: only [`place_with`] knows
/// how to fetch one.
#[cfg(test)]
pub(crate) fn place(
    live_codec: &FrameCodec,
    payload: &Bytes,
    seq: u64,
    time_us: u64,
) -> Result<Placed, PayloadError> {
    place_inner(live_codec, payload, seq, time_us, None)
}

/// [`place`], with streamed bodies read through the node link `link`.
pub(crate) fn place_with(
    link: &Arc<NodeLink>,
    live_codec: &FrameCodec,
    payload: &Bytes,
    seq: u64,
    time_us: u64,
) -> Result<Placed, PayloadError> {
    place_inner(live_codec, payload, seq, time_us, Some(link))
}

fn place_inner(
    live_codec: &FrameCodec,
    payload: &Bytes,
    seq: u64,
    time_us: u64,
    link: Option<&Arc<NodeLink>>,
) -> Result<Placed, PayloadError> {
    let (frame, origin) = frame_of(payload)?;
    let drop_oldest = payload[1] & DROP_OLDEST != 0;
    let message = Message::from_frame(&view_encoded(&frame)?)?;
    let tags = subject::message_hashtags(&message.content_type, &message.body);
    let envelope = Envelope {
        seq,
        time_us,
        ..message.as_envelope()
    };
    let mut stored = StoredMessage::encode(live_codec, &envelope, tags)?;
    if let Some(origin) = origin {
        let (Some(stream), Some(link)) = (message.stream, link) else {
            return Err(PayloadError::Streamed);
        };
        let body = RemoteBody {
            origin,
            id: message.id,
            link: link.clone(),
        };
        stored = stored.with_blob(Blob::remote(stream.total_len, body));
    }
    Ok(Placed {
        message: stored,
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
    #[error("message payload with a streamed body this node cannot fetch")]
    Streamed,
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
    fn a_streamed_payload_names_its_origin_and_carries_no_body() {
        let codec = payload_codec();
        let headers = Vec::new();
        let envelope = Envelope {
            scope: Scope::Channel,
            channel: "files",
            id: Uuid::now_v7(),
            seq: 0,
            time_us: 0,
            sender_id: 7,
            sender_name: "ann",
            content_type: "application/octet-stream",
            user_headers: &headers,
            body: b"",
            body_crc: None,
            stream: Some(switchboard_proto::packet::StreamStart {
                stream_id: 0,
                total_len: 40 << 20,
            }),
        };
        let payload = encode_streamed(&codec, &envelope, false, 42).unwrap();
        // A node that reads only version 1 refuses it instead of taking an empty body.
        assert_ne!(payload[0], VERSION);
        assert!(payload.len() < 200, "the body is not in the payload");
        assert_eq!(channel_of(&payload).as_deref(), Some("files"));
        assert!(matches!(
            place(&codec, &payload, 3, 3),
            Err(PayloadError::Streamed)
        ));
        let link = NodeLink::new(super::super::memory::MemoryBackplane::new().node());
        let placed = place_with(&link, &codec, &payload, 3, 1234).unwrap();
        let blob = placed.message.blob().expect("a body to fetch");
        assert_eq!(blob.len(), 40 << 20);
        let remote = blob.remote_body().expect("kept by its origin");
        assert_eq!(remote.origin, 42);
        assert_eq!(remote.id, envelope.id);
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
        // A streamed payload too short to name its origin.
        assert!(matches!(
            place(&codec, &Bytes::from_static(b"\x02\x00\x00\x01"), 1, 1),
            Err(PayloadError::Short)
        ));
    }
}
