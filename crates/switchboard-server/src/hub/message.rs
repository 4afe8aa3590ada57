//! [`StoredMessage`]: a message as the hub keeps it, one buffer per message.
//!
//! The buffer is the message's live MESSAGE frame, encoded once at publish time and
//! shared by every subscriber's queue; the envelope's fields and body are slices of that
//! same buffer, so history costs one copy of each body, not two.

use bytes::{Bytes, BytesMut};
use switchboard_proto::codec::view_encoded;
use switchboard_proto::packet::Message;
use switchboard_proto::{Flags, FrameCodec, ProtoError};

/// A published message, shared by history, hashtag indexes and delivery queues.
#[derive(Debug)]
pub struct StoredMessage {
    frame: Bytes,
    envelope: Message,
    tags: Vec<String>,
}

impl StoredMessage {
    /// Encodes `message` as a live frame (request id 0) and keeps the frame.
    pub fn encode(
        codec: &FrameCodec,
        message: &Message,
        tags: Vec<String>,
    ) -> Result<StoredMessage, ProtoError> {
        let mut buf = BytesMut::new();
        codec.encode_packet(0, Flags::empty(), message, &mut buf)?;
        StoredMessage::from_frame_bytes(buf.freeze(), tags)
    }

    /// A stored message from a live frame produced by [`StoredMessage::encode`].
    pub fn from_frame_bytes(frame: Bytes, tags: Vec<String>) -> Result<StoredMessage, ProtoError> {
        let envelope = Message::from_frame(&view_encoded(&frame)?)?;
        Ok(StoredMessage {
            frame,
            envelope,
            tags,
        })
    }

    /// The live frame, identical for every receiver.
    pub fn live_frame(&self) -> &Bytes {
        &self.frame
    }

    /// The envelope, whose text fields and body borrow the live frame.
    pub fn envelope(&self) -> &Message {
        &self.envelope
    }

    /// Hashtags found in the body (lower-case, without '#').
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    pub fn seq(&self) -> u64 {
        self.envelope.seq
    }

    pub fn time_us(&self) -> u64 {
        self.envelope.time_us
    }

    pub fn id(&self) -> uuid::Uuid {
        self.envelope.id
    }

    pub fn body_len(&self) -> u64 {
        self.envelope.body.len() as u64
    }
}
