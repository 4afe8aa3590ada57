//! [`StoredMessage`]: a message as the hub keeps it, one buffer per message.
//!
//! The buffer is the message's live MESSAGE frame, encoded once at publish time and
//! shared by history and every subscriber's queue, so history costs one copy of each
//! body, not two, and a delivery costs a reference count. A large inline body is not
//! copied into that frame at all: the message keeps the frame's head (prefix and header
//! block, then its HMAC tag if it has one) and the body as it was read, in the PUBLISH's
//! own buffer, and writers send the three pieces in one vectored write. The bytes on the
//! wire are the same either way.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use switchboard_proto::batch::{WRITE_APART_BYTES, WriteBatch};
use switchboard_proto::codec::{view_encoded, view_encoded_apart};
use switchboard_proto::frame::FIXED_HEADER_LEN;
use switchboard_proto::message_head::MessageHead;
use switchboard_proto::packet::{Envelope, Message};
use switchboard_proto::{Flags, FrameCodec, ProtoError};
use uuid::Uuid;

use crate::blobs::Blob;

/// The largest frame whose buffer a history keeps to encode its next message into.
const MAX_REUSED_FRAME: usize = 4 * 1024;

/// Inline bodies at least this large are kept apart from their MESSAGE head rather than
/// copied into it: the size from which writers send a piece from its own buffer.
pub const BODY_APART_BYTES: usize = WRITE_APART_BYTES;

/// A published message, shared by history, hashtag indexes and delivery queues.
///
/// Only what the hub looks at on every publish is kept beside the frame; the envelope
/// is read back from the frame when a rarer path needs it (streamed bodies, a store
/// that must not hold HMAC tags).
#[derive(Debug)]
pub struct StoredMessage {
    /// The live frame; when the body is kept apart, the frame's head (prefix and header
    /// block) followed by its HMAC tag if it has one.
    frame: Bytes,
    /// A large inline body kept in its own buffer, not copied into `frame`; empty
    /// otherwise.
    body_apart: Bytes,
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
        Ok(StoredMessage::inline(buf.freeze(), envelope, tags))
    }

    /// Encodes `envelope`, whose body is `body`, as a live frame whose body is kept
    /// apart when it is at least [`BODY_APART_BYTES`]: only the head is encoded, and
    /// `body` is shared, not copied (the caller makes sure it is a buffer of its own, not
    /// a read buffer holding other bytes). A smaller body is encoded as by
    /// [`StoredMessage::encode`].
    pub fn encode_with_body(
        codec: &FrameCodec,
        envelope: &Envelope<'_>,
        body: &Bytes,
        tags: Vec<String>,
    ) -> Result<StoredMessage, ProtoError> {
        debug_assert_eq!(envelope.body, &body[..]);
        if body.len() < BODY_APART_BYTES || envelope.stream.is_some() {
            return StoredMessage::encode(codec, envelope, tags);
        }
        let mut head = BytesMut::new();
        if let Some(tag) = codec.encode_head(0, Flags::empty(), envelope, body, &mut head)? {
            head.extend_from_slice(&tag);
        }
        Ok(StoredMessage {
            frame: head.freeze(),
            body_apart: body.clone(),
            seq: envelope.seq,
            id: envelope.id,
            time_us: envelope.time_us,
            inline_len: body.len(),
            tags,
            blob: None,
        })
    }

    /// Encodes `envelope` like [`StoredMessage::encode`], into the record and the frame
    /// buffer of `spare` when it has them to give (a message its history let go that
    /// nothing else holds any more): a warm channel then allocates nothing per message.
    /// The frame is patched from `head`, the head of the channel's last message, when
    /// the envelope fits it (see [`MessageHead`]), and kept there otherwise; `alike` is
    /// the head's generation when it encoded a message the caller knows this one is
    /// alike to ([`FrameCodec::encode_live_message_alike`]).
    pub fn encode_reusing(
        spare: Option<Arc<StoredMessage>>,
        codec: &FrameCodec,
        envelope: &Envelope<'_>,
        tags: Vec<String>,
        head: &mut MessageHead,
        alike: Option<u64>,
    ) -> Result<Arc<StoredMessage>, ProtoError> {
        let encode = |head: &mut MessageHead, buf: &mut BytesMut| match alike {
            Some(generation) => codec.encode_live_message_alike(envelope, head, generation, buf),
            None => codec.encode_live_message(envelope, head, buf),
        };
        let fresh = |head: &mut MessageHead, tags| {
            let mut buf = BytesMut::new();
            encode(head, &mut buf)?;
            Ok(Arc::new(StoredMessage::inline(
                buf.freeze(),
                envelope,
                tags,
            )))
        };
        let Some(mut spare) = spare else {
            return fresh(head, tags);
        };
        let Some(record) = Arc::get_mut(&mut spare) else {
            return fresh(head, tags);
        };
        let frame = std::mem::take(&mut record.frame);
        let mut buf = frame.try_into_mut().unwrap_or_default();
        buf.clear();
        encode(head, &mut buf)?;
        // Split off rather than frozen whole: that makes the buffer a shared one (once,
        // the first time round), which the next message takes back as a mutable buffer
        // without allocating; a frozen vector would get a new shared count every time.
        *record = StoredMessage::inline(buf.split().freeze(), envelope, tags);
        Ok(spare)
    }

    /// The record of a message whose live frame, body inline, `frame` is.
    fn inline(frame: Bytes, envelope: &Envelope<'_>, tags: Vec<String>) -> StoredMessage {
        StoredMessage {
            frame,
            body_apart: Bytes::new(),
            seq: envelope.seq,
            id: envelope.id,
            time_us: envelope.time_us,
            inline_len: envelope.body.len(),
            tags,
            blob: None,
        }
    }

    /// Whether this message, let go by its history, is worth keeping to encode a later
    /// one into once nothing else holds it: a small inline frame (a large one would sit
    /// unused, uncounted, beside each channel's history).
    pub fn may_be_reused(&self) -> bool {
        self.blob.is_none() && self.body_apart.is_empty() && self.frame.len() <= MAX_REUSED_FRAME
    }

    /// The capacity of the frame buffer of `message`, if the message may be reused
    /// ([`StoredMessage::may_be_reused`]) and nothing else holds it or its frame.
    pub fn reusable_capacity(message: &mut Arc<StoredMessage>) -> Option<usize> {
        let record = Arc::get_mut(message)?;
        if !record.may_be_reused() {
            return None;
        }
        // Taken as a mutable buffer and frozen again, which allocates nothing: the
        // buffer's capacity can be known no other way.
        match std::mem::take(&mut record.frame).try_into_mut() {
            Ok(buf) => {
                let capacity = buf.capacity();
                record.frame = buf.freeze();
                Some(capacity)
            }
            Err(frame) => {
                record.frame = frame;
                None
            }
        }
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
            body_apart: Bytes::new(),
            tags,
            blob: None,
        })
    }

    /// The frame as stored: the live frame, or without its HMAC tag if it has one, so
    /// that the store does not depend on the key sessions use.
    pub fn record_bytes(&self) -> Bytes {
        let frame = self.live_frame_bytes();
        if frame.len() > 5 && frame[5] & Flags::MAC.0 as u8 != 0 {
            let mut buf = BytesMut::new();
            let codec = FrameCodec::new(switchboard_proto::Limits {
                max_header_len: usize::from(u16::MAX),
                max_content_len: u32::MAX,
            });
            if codec
                .encode_reframed(&frame, 0, Flags::empty(), &mut buf)
                .is_ok()
            {
                return buf.freeze();
            }
        }
        frame
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

    /// Bytes of the live frame, body and tag included.
    pub fn frame_len(&self) -> usize {
        self.frame.len() + self.body_apart.len()
    }

    /// Where the head ends in `frame` when the body is kept apart (the tag follows).
    fn head_end(&self) -> usize {
        if self.body_apart.is_empty() || self.frame.len() < FIXED_HEADER_LEN {
            return self.frame.len();
        }
        let header_len = usize::from(u16::from_be_bytes([self.frame[6], self.frame[7]]));
        (FIXED_HEADER_LEN + header_len).min(self.frame.len())
    }

    /// The live frame in one buffer, identical for every receiver: shared, or for a body
    /// kept apart, assembled (a copy; writers use [`StoredMessage::put_live`]).
    pub fn live_frame_bytes(&self) -> Bytes {
        if self.body_apart.is_empty() {
            return self.frame.clone();
        }
        let head_end = self.head_end();
        let mut frame = BytesMut::with_capacity(self.frame_len());
        frame.extend_from_slice(&self.frame[..head_end]);
        frame.extend_from_slice(&self.body_apart);
        frame.extend_from_slice(&self.frame[head_end..]);
        frame.freeze()
    }

    /// The live frame, when it is one buffer small enough to be copied into a write
    /// batch (most of a burst of small messages).
    pub fn small_live_frame(&self) -> Option<&[u8]> {
        (self.body_apart.is_empty() && self.frame.len() < WRITE_APART_BYTES)
            .then_some(&self.frame[..])
    }

    /// Adds the live frame to a write batch: copied if small, else written from its own
    /// buffers (a body kept apart between its head and its tag).
    pub fn put_live(&self, batch: &mut WriteBatch) {
        if self.body_apart.is_empty() {
            if self.frame.len() >= WRITE_APART_BYTES {
                batch.push_frame(self.frame.clone());
            } else {
                batch.buffer().extend_from_slice(&self.frame);
            }
            return;
        }
        let head_end = self.head_end();
        batch.buffer().extend_from_slice(&self.frame[..head_end]);
        batch.push_bytes(&self.body_apart);
        batch.buffer().extend_from_slice(&self.frame[head_end..]);
    }

    /// Adds the frame to a write batch as a copy under `request_id` with `flags` added
    /// (a replayed or fetched message, encoded by `codec`, the session's): only the
    /// prefix, the header CRC and the tag are made anew, and a body kept apart is
    /// written from its own buffer. On error nothing was added.
    pub fn put_reframed(
        &self,
        codec: &FrameCodec,
        request_id: u32,
        flags: Flags,
        batch: &mut WriteBatch,
    ) -> Result<(), ProtoError> {
        if self.body_apart.is_empty() {
            return codec.encode_reframed(&self.frame, request_id, flags, batch.buffer());
        }
        let head = &self.frame[..self.head_end()];
        let tag = codec.encode_reframed_head(
            head,
            &self.body_apart,
            request_id,
            flags,
            batch.buffer(),
        )?;
        batch.push_bytes(&self.body_apart);
        if let Some(tag) = tag {
            batch.buffer().extend_from_slice(&tag);
        }
        Ok(())
    }

    /// The envelope, read back from the live frame; its text fields and body borrow it.
    pub fn envelope(&self) -> Result<Message, ProtoError> {
        if self.body_apart.is_empty() {
            Message::from_frame(&view_encoded(&self.frame)?)
        } else {
            Message::from_frame(&view_encoded_apart(&self.frame, &self.body_apart)?)
        }
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

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use switchboard_proto::packet::Message;
    use switchboard_proto::{Limits, MacKey};

    use super::*;

    fn message(body_len: usize) -> Message {
        Message {
            channel: "large.body".into(),
            seq: 7,
            time_us: 1_700_000_000_000_000,
            sender_id: 3,
            sender_name: "sender".into(),
            content_type: "application/x-test".into(),
            user_headers: vec![("k".into(), "v".into())],
            body: Bytes::from((0..body_len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
            ..Message::default()
        }
    }

    fn written(batch: &mut WriteBatch) -> Bytes {
        let bytes = batch.copy_to_bytes(batch.remaining());
        batch.clear(0);
        bytes
    }

    /// Whatever reads a message whose body is kept apart gets the bytes it would get from
    /// the message encoded in one buffer: the live frame, a replayed copy, the envelope
    /// and the record for the store, with and without HMAC.
    #[test]
    fn a_body_kept_apart_reads_as_the_frame_in_one_buffer() {
        for key in [None, Some(MacKey::new(b"a key"))] {
            let codec = FrameCodec::new(Limits::default()).with_mac_key(key.clone());
            for body_len in [0, 100, BODY_APART_BYTES - 1, BODY_APART_BYTES, 64 * 1024] {
                let message = message(body_len);
                let envelope = Envelope {
                    body_crc: Some(switchboard_proto::crc::crc32c(&message.body)),
                    ..message.as_envelope()
                };
                let whole =
                    StoredMessage::encode(&codec, &message.as_envelope(), Vec::new()).unwrap();
                let apart =
                    StoredMessage::encode_with_body(&codec, &envelope, &message.body, Vec::new())
                        .unwrap();
                assert_eq!(
                    !apart.body_apart.is_empty(),
                    body_len >= BODY_APART_BYTES,
                    "only large bodies are kept apart"
                );
                let frame = whole.live_frame_bytes();
                assert_eq!(apart.live_frame_bytes(), frame);
                assert_eq!(apart.frame_len(), frame.len());
                assert_eq!(apart.body_len(), body_len as u64);

                let mut batch = WriteBatch::new();
                apart.put_live(&mut batch);
                assert_eq!(written(&mut batch), frame, "live, {body_len} bytes");

                let mut replayed = BytesMut::new();
                codec
                    .encode_reframed(&frame, 42, Flags::REPLAY, &mut replayed)
                    .unwrap();
                apart
                    .put_reframed(&codec, 42, Flags::REPLAY, &mut batch)
                    .unwrap();
                assert_eq!(written(&mut batch), replayed, "replay, {body_len} bytes");

                assert_eq!(apart.envelope().unwrap(), whole.envelope().unwrap());
                assert_eq!(apart.envelope().unwrap(), message);
                assert_eq!(apart.record_bytes(), whole.record_bytes());
            }
        }
    }
}
