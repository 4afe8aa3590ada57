//! PUBLISH and PUBLISH_ACK.

use bytes::Bytes;
use uuid::Uuid;

use super::{Encode, Scope, content_is_body, for_each_field, required, text_len};
use crate::error::ProtoError;
use crate::fields::{
    BlockWriter, Field, FieldWriter, MAX_BYTES_FIELD_HEAD, MAX_UINT_FIELD, WriteFields, key,
    same_bytes, user_header_field_bound,
};
use crate::frame::{Flags, Frame, FrameType};
use crate::text::Text;

/// Announces that a body is streamed: CHUNK frames with this stream id carry the rest,
/// the last one with flag LAST and the SHA-256 of the whole body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStart {
    pub stream_id: u64,
    /// Length of the whole body, including the bytes in this frame's content.
    pub total_len: u64,
}

impl StreamStart {
    pub(crate) fn write<W: WriteFields>(stream: Option<&StreamStart>, fields: &mut W) {
        if let Some(stream) = stream {
            fields
                .uint(key::STREAM_ID, stream.stream_id)
                .uint(key::TOTAL_LEN, stream.total_len);
        }
    }

    /// Reads the stream fields, which must be present exactly when flag STREAM is set.
    pub(crate) fn read(
        frame: &Frame,
        stream_id: Option<u64>,
        total_len: Option<u64>,
    ) -> Result<Option<StreamStart>, ProtoError> {
        if !frame.flags.contains(Flags::STREAM) {
            return Ok(None);
        }
        Ok(Some(StreamStart {
            stream_id: required(stream_id, frame.frame_type, "stream id")?,
            total_len: required(total_len, frame.frame_type, "total length")?,
        }))
    }
}

/// Publishes a message to a channel or group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    pub scope: Scope,
    pub channel: Text,
    /// MIME type of the body; empty means `application/octet-stream`.
    pub content_type: Text,
    pub user_headers: Vec<(Text, Text)>,
    /// The body, or its first part when streamed.
    pub body: Bytes,
    pub stream: Option<StreamStart>,
}

impl Publish {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        Self::decode(frame, |_, field| field.text())
    }

    /// [`Publish::from_frame`] for one of a run of publishes: a header block equal to
    /// the previous publish's (which `last` holds) decodes to the same fields, which are
    /// shared from it rather than read again; otherwise a channel or content type equal
    /// to the previous publish's is shared from it rather than sliced from the frame and
    /// checked again.
    pub fn from_frame_sharing(frame: &Frame, last: &mut PublishTexts) -> Result<Self, ProtoError> {
        // A streamed publish's fields depend on its flag too: never shared whole.
        let streamed = frame.flags.contains(Flags::STREAM);
        if !streamed && !last.headers.is_empty() && same_bytes(&frame.headers, &last.headers) {
            check_batch(frame)?;
            return Ok(Publish {
                scope: last.scope,
                channel: last.channel.clone(),
                content_type: last.content_type.clone(),
                // Not cloned when empty (most publishes): a clone costs a call even then.
                user_headers: if last.user_headers.is_empty() {
                    Vec::new()
                } else {
                    last.user_headers.clone()
                },
                body: frame.content.clone(),
                stream: None,
            });
        }
        last.headers = Bytes::new();
        let publish = Self::decode(frame, |which, field| {
            let slot = match which {
                PublishText::Channel => &mut last.channel,
                PublishText::ContentType => &mut last.content_type,
            };
            if slot.as_bytes().as_ref() == field.value {
                return Ok(slot.clone());
            }
            let text = field.text()?;
            *slot = text.clone();
            Ok(text)
        })?;
        if !streamed {
            // An absent content type left the slot as it was: it takes the publish's.
            last.content_type = publish.content_type.clone();
            last.scope = publish.scope;
            last.user_headers.clone_from(&publish.user_headers);
            last.headers = frame.headers.clone();
        }
        Ok(publish)
    }

    fn decode(
        frame: &Frame,
        mut text: impl FnMut(PublishText, &Field<'_>) -> Result<Text, ProtoError>,
    ) -> Result<Self, ProtoError> {
        let mut packet = Publish {
            body: frame.content.clone(),
            ..Publish::default()
        };
        let (mut channel, mut stream_id, mut total_len) = (None, None, None);
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => channel = Some(text(PublishText::Channel, &field)?),
                key::SCOPE => packet.scope = Scope::read(&field, FrameType::Publish)?,
                key::CONTENT_TYPE => packet.content_type = text(PublishText::ContentType, &field)?,
                key::USER_HEADER => packet.user_headers.push(field.user_header()?),
                key::STREAM_ID => stream_id = Some(field.uint()?),
                key::TOTAL_LEN => total_len = Some(field.uint()?),
                _ => {}
            }
            Ok(())
        })?;
        packet.channel = required(channel, FrameType::Publish, "channel")?;
        packet.stream = StreamStart::read(frame, stream_id, total_len)?;
        check_batch(frame)?;
        Ok(packet)
    }
}

/// Bytes of the length before each body of a batched PUBLISH.
pub const BATCH_LEN_BYTES: usize = 4;

/// Refuses a PUBLISH with flag BATCH whose flags or content are not a batch: flag STREAM
/// or no flag NO_REPLY, or no body (`INVALID_ARGUMENT`, as a field out of range); a
/// length running past the content or bytes left after the last body (`BAD_FRAME`, as a
/// malformed field). Checked whole before any body is published, so that a malformed
/// batch is refused whole.
fn check_batch(frame: &Frame) -> Result<(), ProtoError> {
    if !frame.flags.contains(Flags::BATCH) {
        return Ok(());
    }
    let invalid = |reason: &str| ProtoError::InvalidField {
        frame: FrameType::Publish,
        field: "flags",
        reason: reason.to_owned(),
    };
    if frame.flags.contains(Flags::STREAM) {
        return Err(invalid("a batch of bodies cannot be streamed"));
    }
    if !frame.flags.contains(Flags::NO_REPLY) {
        return Err(invalid("a batch of bodies is sent without reply only"));
    }
    if frame.content.is_empty() {
        return Err(invalid("a batch holds at least one body"));
    }
    let mut rest = &frame.content[..];
    while !rest.is_empty() {
        let Some((len, after)) = rest.split_first_chunk::<BATCH_LEN_BYTES>() else {
            return Err(ProtoError::MalformedBatch("a body length is cut short"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > after.len() {
            return Err(ProtoError::MalformedBatch("a body runs past the content"));
        }
        rest = &after[len..];
    }
    Ok(())
}

/// The bodies of a batched PUBLISH, in order, as slices of its content (no copies).
/// Made from a frame that [`Publish::from_frame`] accepted, whose batch was checked;
/// a content that is not one ends the bodies where it stops making sense.
#[derive(Debug, Clone)]
pub struct BatchBodies {
    content: Bytes,
    at: usize,
}

impl BatchBodies {
    /// The bodies of `content`, a batch's.
    pub fn new(content: &Bytes) -> Self {
        BatchBodies {
            content: content.clone(),
            at: 0,
        }
    }
}

impl Iterator for BatchBodies {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let rest = self.content.get(self.at..)?;
        let (len, _) = rest.split_first_chunk::<BATCH_LEN_BYTES>()?;
        let start = self.at + BATCH_LEN_BYTES;
        let end = start.checked_add(u32::from_be_bytes(*len) as usize)?;
        if end > self.content.len() {
            return None;
        }
        self.at = end;
        Some(self.content.slice(start..end))
    }
}

/// The request id of body `index` of a batch whose frame carries `first`: the frame's
/// id plus the index, wrapping inside the ids with the same high bit (a client's ids
/// for publishes without reply all have it), so that an ERROR names that one publish.
pub fn batch_request_id(first: u32, index: u32) -> u32 {
    const HIGH: u32 = 0x8000_0000;
    (first & HIGH) | (first.wrapping_add(index) & !HIGH)
}

/// The text fields of a PUBLISH that [`PublishTexts`] keeps.
#[derive(Debug, Clone, Copy)]
enum PublishText {
    Channel,
    ContentType,
}

/// The channel and content type of the last PUBLISH decoded by
/// [`Publish::from_frame_sharing`], and its header block with the rest of what it
/// decoded to when it was not streamed. They are slices of the frame they came from,
/// not copies: keep this only as long as the frames of one read, or it holds their
/// buffer.
#[derive(Debug, Default)]
pub struct PublishTexts {
    channel: Text,
    content_type: Text,
    /// The last header block decoded whole (not streamed), or empty.
    headers: Bytes,
    scope: Scope,
    user_headers: Vec<(Text, Text)>,
}

impl Encode for Publish {
    fn frame_type(&self) -> FrameType {
        FrameType::Publish
    }
    fn flags(&self) -> Flags {
        if self.stream.is_some() {
            Flags::STREAM
        } else {
            Flags::empty()
        }
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.bytes(key::CHANNEL, self.channel.as_bytes());
        self.scope.write(fields);
        if !self.content_type.is_empty() {
            fields.bytes(key::CONTENT_TYPE, self.content_type.as_bytes());
        }
        for (name, value) in &self.user_headers {
            fields.user_header(name, value);
        }
        StreamStart::write(self.stream.as_ref(), fields);
    }
    content_is_body!(body);
    fn fields_len_hint(&self) -> usize {
        text_len(&self.channel)
            + text_len(&self.content_type)
            + 3
            + user_headers_len(&self.user_headers)
            + if self.stream.is_some() { 24 } else { 0 }
    }
}

/// A PUBLISH borrowed from its caller's parts, for encoding only: the same frame as
/// [`Publish`] without first building an owned packet (no copy nor shared reference of
/// the channel's name per message).
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub scope: Scope,
    pub channel: &'a str,
    pub content_type: &'a str,
    pub user_headers: &'a [(Text, Text)],
    pub body: &'a Bytes,
}

impl PublishRef<'_> {
    fn put_fields<W: WriteFields>(&self, fields: &mut W) {
        fields.bytes(key::CHANNEL, self.channel.as_bytes());
        self.scope.write(fields);
        if !self.content_type.is_empty() {
            fields.bytes(key::CONTENT_TYPE, self.content_type.as_bytes());
        }
        for (name, value) in self.user_headers {
            fields.user_header(name, value);
        }
    }
}

impl Encode for PublishRef<'_> {
    fn frame_type(&self) -> FrameType {
        FrameType::Publish
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        self.put_fields(fields);
    }
    fn write_content(&self, dst: &mut bytes::BytesMut) {
        super::put_content(dst, self.body);
    }
    fn content_len(&self) -> usize {
        self.body.len()
    }
    fn body(&self) -> Option<&Bytes> {
        Some(self.body)
    }
    fn fields_len_hint(&self) -> usize {
        self.channel.len() + self.content_type.len() + 11 + user_headers_len(self.user_headers)
    }
    fn block_bound(&self) -> Option<usize> {
        let headers: usize = self
            .user_headers
            .iter()
            .map(|(name, value)| user_header_field_bound(name, value))
            .sum();
        Some(
            self.channel.len()
                + self.content_type.len()
                + 2 * MAX_BYTES_FIELD_HEAD
                + MAX_UINT_FIELD
                + headers,
        )
    }
    fn write_block(&self, fields: &mut BlockWriter<'_>) {
        self.put_fields(fields);
    }
}

/// A PUBLISH of one body with flag BATCH, for encoding only: the frame a client opens a
/// batch with, to which further bodies with the same header block are appended in
/// place (each its length, then its bytes).
#[derive(Debug, Clone, Copy)]
pub struct PublishBatchRef<'a>(pub PublishRef<'a>);

impl Encode for PublishBatchRef<'_> {
    fn frame_type(&self) -> FrameType {
        FrameType::Publish
    }
    fn flags(&self) -> Flags {
        Flags::BATCH
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        self.0.put_fields(fields);
    }
    fn write_content(&self, dst: &mut bytes::BytesMut) {
        // Bodies of a batch are small (a sender batches only those): the length is
        // within u32 because the frame's content is.
        dst.extend_from_slice(&(self.0.body.len() as u32).to_be_bytes());
        dst.extend_from_slice(self.0.body);
    }
    fn content_len(&self) -> usize {
        BATCH_LEN_BYTES + self.0.body.len()
    }
    fn fields_len_hint(&self) -> usize {
        self.0.fields_len_hint()
    }
    fn block_bound(&self) -> Option<usize> {
        self.0.block_bound()
    }
    fn write_block(&self, fields: &mut BlockWriter<'_>) {
        self.0.put_fields(fields);
    }
}

pub(crate) fn user_headers_len(headers: &[(Text, Text)]) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 8)
        .sum()
}

/// The answer to PUBLISH: the message's id and its sequence number in the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishAck {
    pub id: Uuid,
    pub seq: u64,
}

impl PublishAck {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let (mut id, mut seq) = (None, None);
        for_each_field(&frame.headers, |field: Field| {
            match field.key {
                key::MESSAGE_ID => id = Some(field.uuid()?),
                key::SEQ => seq = Some(field.uint()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(PublishAck {
            id: required(id, FrameType::PublishAck, "message id")?,
            seq: required(seq, FrameType::PublishAck, "seq")?,
        })
    }
}

impl Encode for PublishAck {
    fn frame_type(&self) -> FrameType {
        FrameType::PublishAck
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uuid(key::MESSAGE_ID, &self.id)
            .uint(key::SEQ, self.seq);
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::codec::FrameCodec;
    use crate::limits::Limits;

    fn encoded<P: Encode>(packet: &P) -> BytesMut {
        let codec = FrameCodec::new(Limits::default());
        let mut buffer = BytesMut::new();
        codec
            .encode_packet(7, Flags::NO_REPLY, packet, &mut buffer)
            .unwrap();
        buffer
    }

    #[test]
    fn a_borrowed_publish_encodes_as_the_owned_one() {
        let headers = [(Text::from("trace"), Text::from("a1"))];
        // A block made on the stack (a length of two varint bytes among them), and one
        // too long for it, written in place.
        let long_type = "x".repeat(150);
        let too_long_type = "y".repeat(300);
        for (scope, content_type, headers) in [
            (Scope::Channel, "", &[][..]),
            (Scope::Group, "text/plain", &headers[..]),
            (Scope::Channel, long_type.as_str(), &headers[..]),
            (Scope::Channel, too_long_type.as_str(), &[][..]),
        ] {
            let owned = Publish {
                scope,
                channel: "chat.rust".into(),
                content_type: content_type.into(),
                user_headers: headers.to_vec(),
                body: Bytes::from_static(b"hello #rust"),
                stream: None,
            };
            let borrowed = PublishRef {
                scope,
                channel: "chat.rust",
                content_type,
                user_headers: headers,
                body: &owned.body,
            };
            assert_eq!(encoded(&borrowed), encoded(&owned));
        }
    }
}

#[cfg(test)]
mod shared_texts {
    use super::*;

    fn frame_of(publish: &Publish) -> Frame {
        crate::codec::round_trip(1, publish)
    }

    #[test]
    fn shared_decoding_gives_the_same_publishes() {
        let mut last = PublishTexts::default();
        for (channel, content_type) in [
            ("chat.rust", "text/plain"),
            ("chat.rust", "text/plain"),
            ("chat.rust", ""),
            ("chat.zig", ""),
            ("chat.zig", "text/plain"),
            ("chat.rust", "text/plain"),
        ] {
            let publish = Publish {
                channel: channel.into(),
                content_type: content_type.into(),
                body: Bytes::from_static(b"hello"),
                ..Publish::default()
            };
            let frame = frame_of(&publish);
            let shared = Publish::from_frame_sharing(&frame, &mut last).unwrap();
            assert_eq!(shared, Publish::from_frame(&frame).unwrap());
            assert_eq!(shared, publish);
        }
    }

    /// Runs of publishes with the same header block (any scope, content type and user
    /// headers) decode as alone, and so does a streamed one among them.
    #[test]
    fn a_header_block_decoded_before_gives_the_same_publish() {
        let headers = vec![(Text::from("trace"), Text::from("a1"))];
        let mut last = PublishTexts::default();
        for (scope, content_type, user_headers, stream) in [
            (Scope::Channel, "text/plain", vec![], None),
            (Scope::Channel, "text/plain", vec![], None),
            (Scope::Channel, "", vec![], None),
            (Scope::Channel, "", vec![], None),
            (Scope::Group, "", headers.clone(), None),
            (Scope::Group, "", headers.clone(), None),
            (Scope::Channel, "text/plain", headers.clone(), None),
            (Scope::Channel, "text/plain", headers.clone(), None),
        ] {
            for body in [&b"one"[..], b"two"] {
                let publish = Publish {
                    scope,
                    channel: "chat.rust".into(),
                    content_type: content_type.into(),
                    user_headers: user_headers.clone(),
                    body: Bytes::copy_from_slice(body),
                    stream,
                };
                let frame = frame_of(&publish);
                let shared = Publish::from_frame_sharing(&frame, &mut last).unwrap();
                assert_eq!(shared, publish);
            }
        }
        // A header block decoded whole, then the same block with flag STREAM but no
        // stream fields: refused, as alone; then the plain one again.
        let publish = Publish {
            channel: "chat.rust".into(),
            body: Bytes::from_static(b"hello"),
            ..Publish::default()
        };
        let frame = frame_of(&publish);
        assert_eq!(
            Publish::from_frame_sharing(&frame, &mut last).unwrap(),
            publish
        );
        let streamed = Frame {
            flags: frame.flags.with(Flags::STREAM),
            ..frame.clone()
        };
        assert!(Publish::from_frame(&streamed).is_err());
        assert!(Publish::from_frame_sharing(&streamed, &mut last).is_err());
        assert_eq!(
            Publish::from_frame_sharing(&frame, &mut last).unwrap(),
            publish
        );
    }

    #[test]
    fn shared_decoding_still_refuses_text_that_is_not_utf8() {
        let publish = Publish {
            channel: "ok".into(),
            ..Publish::default()
        };
        let mut last = PublishTexts::default();
        let mut frame = frame_of(&publish);
        Publish::from_frame_sharing(&frame, &mut last).unwrap();
        let mut headers = frame.headers.to_vec();
        let at = headers
            .windows(2)
            .position(|pair| pair == b"ok")
            .expect("the channel is in the header block");
        headers[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
        frame.headers = Bytes::from(headers);
        assert!(Publish::from_frame(&frame).is_err());
        assert!(Publish::from_frame_sharing(&frame, &mut last).is_err());
    }
}

#[cfg(test)]
mod batches {
    use bytes::{BufMut, BytesMut};

    use crate::error::ErrorCode;

    use super::*;

    fn batch_frame(flags: Flags, content: &[u8]) -> Frame {
        let publish = Publish {
            channel: "chat".into(),
            body: Bytes::copy_from_slice(content),
            ..Publish::default()
        };
        let mut frame = crate::codec::round_trip(1, &publish);
        frame.flags = flags;
        frame
    }

    const BATCHED: Flags = Flags(Flags::NO_REPLY.0 | Flags::BATCH.0);

    #[test]
    fn a_batch_encoded_and_appended_to_gives_its_bodies_in_order() {
        let first = Bytes::from_static(b"one");
        let publish = PublishRef {
            scope: Scope::Channel,
            channel: "chat",
            content_type: "",
            user_headers: &[],
            body: &first,
        };
        let mut frame = crate::codec::round_trip(1, &PublishBatchRef(publish));
        assert!(frame.flags.contains(Flags::BATCH));
        let mut content = BytesMut::from(&frame.content[..]);
        for body in [&b""[..], b"three"] {
            content.put_u32(body.len() as u32);
            content.put_slice(body);
        }
        frame.content = content.freeze();
        frame.flags = frame.flags.with(Flags::NO_REPLY);
        let decoded = Publish::from_frame(&frame).unwrap();
        assert_eq!(decoded.channel, "chat");
        let bodies: Vec<Bytes> = BatchBodies::new(&decoded.body).collect();
        assert_eq!(bodies, [&b"one"[..], b"", b"three"]);
    }

    #[test]
    fn malformed_batches_are_refused_with_the_codes_of_the_order_of_checks() {
        let cases: [(Flags, &[u8], ErrorCode); 5] = [
            (BATCHED, &[0, 0, 0, 9, b'a'], ErrorCode::BadFrame),
            (BATCHED, &[0, 0, 0, 1, b'a', 0, 0], ErrorCode::BadFrame),
            (BATCHED, &[], ErrorCode::InvalidArgument),
            (
                Flags::BATCH,
                &[0, 0, 0, 1, b'a'],
                ErrorCode::InvalidArgument,
            ),
            (
                BATCHED.with(Flags::STREAM),
                &[0, 0, 0, 1, b'a'],
                ErrorCode::InvalidArgument,
            ),
        ];
        for (flags, content, code) in cases {
            let frame = batch_frame(flags, content);
            let error = Publish::from_frame(&frame).unwrap_err();
            assert_eq!(error.code(), code, "{content:?}");
            assert!(!error.is_fatal());
            let mut last = PublishTexts::default();
            let sound = batch_frame(BATCHED, &[0, 0, 0, 1, b'a']);
            Publish::from_frame_sharing(&sound, &mut last).unwrap();
            // Refused also when the header block was decoded just before.
            if !flags.contains(Flags::STREAM) {
                assert!(Publish::from_frame_sharing(&frame, &mut last).is_err());
            }
        }
    }

    #[test]
    fn request_ids_of_a_batch_wrap_inside_their_half() {
        assert_eq!(batch_request_id(0x8000_0005, 2), 0x8000_0007);
        assert_eq!(batch_request_id(0xFFFF_FFFF, 1), 0x8000_0000);
        assert_eq!(batch_request_id(7, 3), 10);
        assert_eq!(batch_request_id(0x7FFF_FFFF, 2), 1);
    }
}
