//! [`StoredMessage`]: a message as the hub keeps it, one buffer per message.
//!
//! The buffer is the message's live MESSAGE frame, encoded once at publish time and
//! shared by history and every subscriber's queue, so history costs one copy of each
//! body, not two, and a delivery costs a reference count.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use switchboard_proto::codec::view_encoded;
use switchboard_proto::packet::{Envelope, Message};
use switchboard_proto::{Flags, FrameCodec, ProtoError};
use uuid::Uuid;

use crate::blobs::Blob;

/// The largest frame whose buffer a history keeps to encode its next message into.
const MAX_REUSED_FRAME: usize = 4 * 1024;

/// A published message, shared by history, hashtag indexes and delivery queues.
///
/// Only what the hub looks at on every publish is kept beside the frame; the envelope
/// is read back from the frame when a rarer path needs it (streamed bodies, a store
/// that must not hold HMAC tags).
#[derive(Debug)]
pub struct StoredMessage {
    frame: Bytes,
    seq: u64,
    id: Uuid,
    time_us: u64,
    /// Length of the body inside the frame (0 when streamed).
    inline_len: usize,
    tags: Vec<String>,
    /// The body, when it was streamed: a file, sent in chunks.
    blob: Option<Blob>,
}

impl StoredMessage {
    /// Encodes `envelope` as a live frame (request id 0) and keeps the frame.
    pub fn encode(
        codec: &FrameCodec,
        envelope: &Envelope<'_>,
        tags: Vec<String>,
    ) -> Result<StoredMessage, ProtoError> {
        let mut buf = BytesMut::new();
        codec.encode_envelope(0, Flags::empty(), envelope, &mut buf)?;
        Ok(StoredMessage {
            frame: buf.freeze(),
            seq: envelope.seq,
            id: envelope.id,
            time_us: envelope.time_us,
            inline_len: envelope.body.len(),
            tags,
            blob: None,
        })
    }

    /// Encodes `envelope` like [`StoredMessage::encode`], into the record and the frame
    /// buffer of `spare` when it has them to give (a message its history let go that
    /// nothing else holds any more): a warm channel then allocates nothing per message.
    pub fn encode_reusing(
        spare: Option<Arc<StoredMessage>>,
        codec: &FrameCodec,
        envelope: &Envelope<'_>,
        tags: Vec<String>,
    ) -> Result<Arc<StoredMessage>, ProtoError> {
        let Some(mut spare) = spare else {
            return StoredMessage::encode(codec, envelope, tags).map(Arc::new);
        };
        let Some(record) = Arc::get_mut(&mut spare) else {
            return StoredMessage::encode(codec, envelope, tags).map(Arc::new);
        };
        let frame = std::mem::take(&mut record.frame);
        let mut buf = frame.try_into_mut().unwrap_or_default();
        buf.clear();
        codec.encode_envelope(0, Flags::empty(), envelope, &mut buf)?;
        // Split off rather than frozen whole: that makes the buffer a shared one (once,
        // the first time round), which the next message takes back as a mutable buffer
        // without allocating; a frozen vector would get a new shared count every time.
        let frame = buf.split().freeze();
        *record = StoredMessage {
            frame,
            seq: envelope.seq,
            id: envelope.id,
            time_us: envelope.time_us,
            inline_len: envelope.body.len(),
            tags,
            blob: None,
        };
        Ok(spare)
    }

    /// Whether this message, let go by its history, is worth keeping to encode the next
    /// one into: a small inline frame (a large one would sit unused, uncounted, beside
    /// each channel's history) that nothing else holds.
    pub fn is_reusable(message: &mut Arc<StoredMessage>) -> bool {
        Arc::get_mut(message).is_some_and(|message| {
            message.blob.is_none() && message.frame.len() <= MAX_REUSED_FRAME
        })
    }

    /// A stored message from a live frame produced by [`StoredMessage::encode`].
    pub fn from_frame_bytes(frame: Bytes, tags: Vec<String>) -> Result<StoredMessage, ProtoError> {
        let envelope = Message::from_frame(&view_encoded(&frame)?)?;
        Ok(StoredMessage {
            seq: envelope.seq,
            id: envelope.id,
            time_us: envelope.time_us,
            inline_len: envelope.body.len(),
            frame,
            tags,
            blob: None,
        })
    }

    /// The frame as stored: the live frame, or without its HMAC tag if it has one, so
    /// that the store does not depend on the key sessions use.
    pub fn record_bytes(&self) -> Bytes {
        if self.frame.len() > 5 && self.frame[5] & Flags::MAC.0 as u8 != 0 {
            let mut buf = BytesMut::new();
            let codec = FrameCodec::new(switchboard_proto::Limits {
                max_header_len: usize::from(u16::MAX),
                max_content_len: u32::MAX,
            });
            if codec
                .encode_reframed(&self.frame, 0, Flags::empty(), &mut buf)
                .is_ok()
            {
                return buf.freeze();
            }
        }
        self.frame.clone()
    }

    /// Attaches a streamed body.
    #[must_use]
    pub fn with_blob(mut self, blob: Blob) -> StoredMessage {
        self.blob = Some(blob);
        self
    }

    /// The streamed body, if the body was streamed.
    pub fn blob(&self) -> Option<&Blob> {
        self.blob.as_ref()
    }

    /// The message left its history: its streamed body may be deleted once unused.
    pub fn retire(&self) {
        if let Some(blob) = &self.blob {
            blob.retire();
        }
    }

    /// The live frame, identical for every receiver.
    pub fn live_frame(&self) -> &Bytes {
        &self.frame
    }

    /// The envelope, read back from the live frame; its text fields and body borrow it.
    pub fn envelope(&self) -> Result<Message, ProtoError> {
        Message::from_frame(&view_encoded(&self.frame)?)
    }

    /// Hashtags found in the body (lower-case, without '#').
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn time_us(&self) -> u64 {
        self.time_us
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Length of the body, streamed or not.
    pub fn body_len(&self) -> u64 {
        match &self.blob {
            Some(blob) => blob.len(),
            None => self.inline_len as u64,
        }
    }
}
