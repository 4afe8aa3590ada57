//! [`StoredMessage`]: a message as the hub keeps it, one buffer per message.
//!
//! The buffer is the message's live MESSAGE frame, encoded once at publish time and
//! shared by history and every subscriber's queue, so history costs one copy of each
//! body, not two, and a delivery costs a reference count. A frame small enough for
//! writers to copy out is the record's own buffer, not a shared one: nothing but the
//! record counts references to it, so a record let go is reused whole (see
//! [`super::recycle`]) without an atomic operation on the frame, and a new one costs one
//! allocation for it, not two. A large inline body is not
//! copied into that frame at all: the message keeps the frame's head (prefix and header
//! block, then its HMAC tag if it has one) and the body as it was read, in the PUBLISH's
//! own buffer, and writers send the three pieces in one vectored write. The bytes on the
//! wire are the same either way.

use std::ops::Deref;
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

/// The largest frame whose record is kept to encode a later message into (see
/// [`super::recycle`]).
const MAX_REUSED_FRAME: usize = 4 * 1024;

/// Inline bodies at least this large are kept apart from their MESSAGE head rather than
/// copied into it: the size from which writers send a piece from its own buffer.
pub const BODY_APART_BYTES: usize = WRITE_APART_BYTES;

/// A frame's buffer: the record's own when writers copy the frame out (smaller than
/// [`WRITE_APART_BYTES`]), shared when they send it from its own buffer.
#[derive(Debug)]
enum FrameBuf {
    Own(BytesMut),
    Shared(Bytes),
}

impl FrameBuf {
    /// The buffer of a frame just encoded into `buf`.
    fn encoded(buf: BytesMut) -> FrameBuf {
        if buf.len() < WRITE_APART_BYTES {
            FrameBuf::Own(buf)
        } else {
            FrameBuf::Shared(buf.freeze())
        }
    }

    /// The frame as a shared buffer: a copy of one the record owns.
    fn to_bytes(&self) -> Bytes {
        match self {
            FrameBuf::Own(buf) => Bytes::copy_from_slice(buf),
            FrameBuf::Shared(bytes) => bytes.clone(),
        }
    }
}

impl Default for FrameBuf {
    fn default() -> FrameBuf {
        FrameBuf::Own(BytesMut::new())
    }
}

impl Deref for FrameBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FrameBuf::Own(buf) => buf,
            FrameBuf::Shared(bytes) => bytes,
        }
    }
}

/// A message's frame as the store writes it: the message itself when its live frame is
/// what is stored, so that queueing it for the store costs a reference count, not a copy.
#[derive(Debug, Clone)]
pub enum RecordFrame {
    Message(Arc<StoredMessage>),
    Bytes(Bytes),
}

impl Deref for RecordFrame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            RecordFrame::Message(message) => &message.frame,
            RecordFrame::Bytes(bytes) => bytes,
        }
    }
}

impl RecordFrame {
    /// What holding this frame keeps in memory: its bytes, and the message's record
    /// when it is the message's own buffer.
    pub fn held_bytes(&self) -> usize {
        match self {
            RecordFrame::Message(message) => {
                std::mem::size_of::<StoredMessage>() + message.frame.len()
            }
            RecordFrame::Bytes(bytes) => bytes.len(),
        }
    }
}

/// Two frames are equal when their bytes are.
impl PartialEq for RecordFrame {
    fn eq(&self, other: &RecordFrame) -> bool {
        **self == **other
    }
}

impl Eq for RecordFrame {}

impl From<Bytes> for RecordFrame {
    fn from(bytes: Bytes) -> RecordFrame {
        RecordFrame::Bytes(bytes)
    }
}

/// A published message, shared by history, hashtag indexes and delivery queues.
///
/// Only what the hub looks at on every publish is kept beside the frame; the envelope
/// is read back from the frame when a rarer path needs it (streamed bodies, a store
/// that must not hold HMAC tags).
#[derive(Debug)]
pub struct StoredMessage {
    /// The live frame; when the body is kept apart, the frame's head (prefix and header
    /// block) followed by its HMAC tag if it has one.
    frame: FrameBuf,
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
        Ok(StoredMessage::inline(
            FrameBuf::encoded(buf),
            envelope,
            tags,
        ))
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
            frame: FrameBuf::encoded(head),
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
                FrameBuf::encoded(buf),
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
        let mut buf = match std::mem::take(&mut record.frame) {
            FrameBuf::Own(buf) => buf,
            FrameBuf::Shared(_) => BytesMut::new(),
        };
        buf.clear();
        encode(head, &mut buf)?;
        *record = StoredMessage::inline(FrameBuf::encoded(buf), envelope, tags);
        Ok(spare)
    }

    /// The record of a message whose live frame, body inline, `frame` is.
    fn inline(frame: FrameBuf, envelope: &Envelope<'_>, tags: Vec<String>) -> StoredMessage {
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

    /// Whether this message, let go by its last holder, is worth keeping to encode a
    /// later one into: a small inline frame (large ones are rarer, and each would hold
    /// its size in the pool).
    fn may_be_reused(&self) -> bool {
        self.blob.is_none() && self.body_apart.is_empty() && self.frame.len() <= MAX_REUSED_FRAME
    }

    /// The capacity of the frame buffer of `message`, if the message may be reused
    /// ([`StoredMessage::may_be_reused`]) and nothing else holds it.
    pub fn reusable_capacity(message: &mut Arc<StoredMessage>) -> Option<usize> {
        let record = Arc::get_mut(message)?;
        match &record.frame {
            FrameBuf::Own(buf) if record.may_be_reused() => Some(buf.capacity()),
            _ => None,
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
            frame: FrameBuf::Shared(frame),
            body_apart: Bytes::new(),
            tags,
            blob: None,
        })
    }

    /// The frame as stored: the live frame, or without its HMAC tag if it has one, so
    /// that the store does not depend on the key sessions use. The message's own buffer
    /// is shared when the live frame is what is stored.
    pub fn record_frame(message: &Arc<StoredMessage>) -> RecordFrame {
        if let Some(stripped) = message.stripped_record() {
            return RecordFrame::Bytes(stripped);
        }
        match &message.frame {
            // A message with a streamed body stays out of the store's queue, so that its
            // blob goes when the history and the queues let go of it.
            FrameBuf::Own(_) if message.body_apart.is_empty() && message.blob.is_none() => {
                RecordFrame::Message(message.clone())
            }
            _ => RecordFrame::Bytes(message.live_frame_bytes()),
        }
    }

    /// The frame without its HMAC tag, if it has one.
    fn stripped_record(&self) -> Option<Bytes> {
        if self.frame.len() <= 5 || self.frame[5] & Flags::MAC.0 as u8 == 0 {
            return None;
        }
        // Reframed from the record's own buffer; only a body kept apart is assembled.
        let assembled;
        let frame: &[u8] = if self.body_apart.is_empty() {
            &self.frame
        } else {
            assembled = self.live_frame_bytes();
            &assembled
        };
        let mut buf = BytesMut::new();
        let codec = FrameCodec::new(switchboard_proto::Limits {
            max_header_len: usize::from(u16::MAX),
            max_content_len: u32::MAX,
        });
        codec
            .encode_reframed(frame, 0, Flags::empty(), &mut buf)
            .ok()?;
        Some(buf.freeze())
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
            return self.frame.to_bytes();
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
                batch.push_frame(self.frame.to_bytes());
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

    /// The envelope, read back from the live frame; its text fields and body borrow it,
    /// or a copy of it when the record owns the frame (one smaller than
    /// [`WRITE_APART_BYTES`]: the paths that read envelopes back are rare).
    pub fn envelope(&self) -> Result<Message, ProtoError> {
        let frame = self.frame.to_bytes();
        if self.body_apart.is_empty() {
            Message::from_frame(&view_encoded(&frame)?)
        } else {
            Message::from_frame(&view_encoded_apart(&frame, &self.body_apart)?)
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

    /// A small message's frame is its record's own: the store's queue shares the record
    /// instead of copying the frame, a record nothing else holds is reused with its
    /// buffer in place, and one still held by the store is not.
    #[test]
    fn a_small_frame_is_owned_by_its_record_shared_with_the_store_and_reused_in_place() {
        let codec = FrameCodec::new(Limits::default());
        let first = message(100);
        let mut stored =
            Arc::new(StoredMessage::encode(&codec, &first.as_envelope(), Vec::new()).unwrap());
        let record = StoredMessage::record_frame(&stored);
        assert!(
            matches!(record, RecordFrame::Message(_)),
            "shared, not copied"
        );
        assert_eq!(*record, *stored.live_frame_bytes());
        assert_eq!(
            StoredMessage::reusable_capacity(&mut stored),
            None,
            "the store still holds it"
        );
        drop(record);
        let capacity = StoredMessage::reusable_capacity(&mut stored).expect("reusable");
        assert!(capacity >= stored.frame_len());

        let buffer = stored.small_live_frame().unwrap().as_ptr();
        let record = Arc::as_ptr(&stored);
        let second = Message {
            seq: 8,
            ..message(90)
        };
        let mut head = MessageHead::default();
        let reused = StoredMessage::encode_reusing(
            Some(stored),
            &codec,
            &second.as_envelope(),
            Vec::new(),
            &mut head,
            None,
        )
        .unwrap();
        assert!(
            std::ptr::eq(Arc::as_ptr(&reused), record),
            "the same record"
        );
        assert_eq!(
            reused.small_live_frame().unwrap().as_ptr(),
            buffer,
            "the same buffer"
        );
        assert_eq!(reused.envelope().unwrap(), second);

        let mac = FrameCodec::new(Limits::default()).with_mac_key(Some(MacKey::new(b"a key")));
        let tagged =
            Arc::new(StoredMessage::encode(&mac, &first.as_envelope(), Vec::new()).unwrap());
        let untagged =
            Arc::new(StoredMessage::encode(&codec, &first.as_envelope(), Vec::new()).unwrap());
        assert_eq!(
            *StoredMessage::record_frame(&tagged),
            *untagged.live_frame_bytes(),
            "stored without its tag"
        );
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
                let (apart, whole) = (Arc::new(apart), Arc::new(whole));
                assert_eq!(
                    *StoredMessage::record_frame(&apart),
                    *StoredMessage::record_frame(&whole)
                );
            }
        }
    }
}
