//! MESSAGE: the envelope of a stored message, as pushed to subscribers and returned by
//! GET_MESSAGE / GET_MESSAGES.

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use super::publish::user_headers_len;
use super::{Encode, Scope, StreamStart, content_is_body, for_each_field, put_content, required};
use crate::error::ProtoError;
use crate::fields::{
    BlockWriter, Field, FieldWriter, MAX_VARINT_LEN, bytes_field_len, key, uint_field_len,
    user_header_field_len,
};
use crate::frame::{Flags, Frame, FrameType};
use crate::text::Text;

/// A message as the hub stores and delivers it.
///
/// A live delivery has request id 0 and is byte-identical for every subscriber, so the
/// server encodes it once; history sent for a request carries that request's id and flag
/// REPLAY.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub scope: Scope,
    /// The channel or group the message was published to.
    pub channel: Text,
    /// Time-ordered UUID (v7) assigned by the server.
    pub id: Uuid,
    /// Sequence number in the channel, from 1, without gaps at publish time.
    pub seq: u64,
    /// Server time of the publish, microseconds since the Unix epoch.
    pub time_us: u64,
    pub sender_id: u64,
    pub sender_name: Text,
    pub content_type: Text,
    pub user_headers: Vec<(Text, Text)>,
    /// The body, or its first part when streamed.
    pub body: Bytes,
    pub stream: Option<StreamStart>,
}

impl Message {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        Self::decode(frame, |_, field| field.text())
    }

    /// [`Message::from_frame`] for a stream of messages: a channel, sender name or
    /// content type equal to the one `cache` holds is shared from it rather than sliced
    /// from the frame and checked again.
    pub fn from_frame_cached(frame: &Frame, cache: &mut TextCache) -> Result<Self, ProtoError> {
        Self::decode(frame, |slot, field| cache.text(slot, field))
    }

    fn decode(
        frame: &Frame,
        mut text: impl FnMut(CachedText, &Field<'_>) -> Result<Text, ProtoError>,
    ) -> Result<Self, ProtoError> {
        let mut packet = Message {
            body: frame.content.clone(),
            ..Message::default()
        };
        let (mut channel, mut id, mut seq) = (None, None, None);
        let (mut stream_id, mut total_len) = (None, None);
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => channel = Some(text(CachedText::Channel, &field)?),
                key::SCOPE => packet.scope = Scope::read(&field, FrameType::Message)?,
                key::MESSAGE_ID => id = Some(field.uuid()?),
                key::SEQ => seq = Some(field.uint()?),
                key::TIME => packet.time_us = field.uint()?,
                key::SENDER_ID => packet.sender_id = field.uint()?,
                key::SENDER_NAME => packet.sender_name = text(CachedText::SenderName, &field)?,
                key::CONTENT_TYPE => packet.content_type = text(CachedText::ContentType, &field)?,
                key::USER_HEADER => packet.user_headers.push(field.user_header()?),
                key::STREAM_ID => stream_id = Some(field.uint()?),
                key::TOTAL_LEN => total_len = Some(field.uint()?),
                _ => {}
            }
            Ok(())
        })?;
        packet.channel = required(channel, FrameType::Message, "channel")?;
        packet.id = required(id, FrameType::Message, "message id")?;
        packet.seq = required(seq, FrameType::Message, "seq")?;
        packet.stream = StreamStart::read(frame, stream_id, total_len)?;
        Ok(packet)
    }
}

/// The text fields of a MESSAGE that [`TextCache`] keeps.
#[derive(Debug, Clone, Copy)]
enum CachedText {
    Channel,
    SenderName,
    ContentType,
}

/// The last channel, sender name and content type a reader decoded (see
/// [`Message::from_frame_cached`]). The cache holds copies of its own, so that it keeps
/// no read buffer alive.
#[derive(Debug, Default)]
pub struct TextCache {
    channel: Text,
    sender_name: Text,
    content_type: Text,
}

impl TextCache {
    fn text(&mut self, which: CachedText, field: &Field<'_>) -> Result<Text, ProtoError> {
        let slot = match which {
            CachedText::Channel => &mut self.channel,
            CachedText::SenderName => &mut self.sender_name,
            CachedText::ContentType => &mut self.content_type,
        };
        if slot.as_bytes().as_ref() == field.value {
            return Ok(slot.clone());
        }
        let text = field.text()?;
        *slot = Text::from(text.as_str());
        Ok(slot.clone())
    }
}

impl Message {
    /// The message as a borrowed envelope, which is what encodes it.
    pub fn as_envelope(&self) -> Envelope<'_> {
        Envelope {
            scope: self.scope,
            channel: &self.channel,
            id: self.id,
            seq: self.seq,
            time_us: self.time_us,
            sender_id: self.sender_id,
            sender_name: &self.sender_name,
            content_type: &self.content_type,
            user_headers: &self.user_headers,
            body: &self.body,
            body_crc: None,
            stream: self.stream,
        }
    }
}

/// A MESSAGE borrowed from wherever its parts are, for encoding only.
///
/// The hub encodes each published message once, straight from the PUBLISH it received
/// and the session it came from, without first assembling an owned [`Message`] (which
/// would take a reference on the read buffer per text field, and give it back).
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub scope: Scope,
    pub channel: &'a str,
    pub id: Uuid,
    pub seq: u64,
    pub time_us: u64,
    pub sender_id: u64,
    pub sender_name: &'a str,
    pub content_type: &'a str,
    pub user_headers: &'a [(Text, Text)],
    pub body: &'a [u8],
    /// CRC32C of `body`, if known (the body of a checked PUBLISH frame).
    pub body_crc: Option<u32>,
    pub stream: Option<StreamStart>,
}

impl Envelope<'_> {
    /// Exactly the length of the header block [`Encode::write_fields`] writes.
    pub(crate) fn header_block_len(&self) -> usize {
        let mut len = bytes_field_len(self.channel.len())
            + 18
            + uint_field_len(self.seq)
            + uint_field_len(self.time_us)
            + uint_field_len(self.sender_id);
        if self.scope != Scope::Channel {
            len += uint_field_len(u64::from(self.scope.as_u8()));
        }
        if !self.sender_name.is_empty() {
            len += bytes_field_len(self.sender_name.len());
        }
        if !self.content_type.is_empty() {
            len += bytes_field_len(self.content_type.len());
        }
        for (name, value) in self.user_headers {
            len += user_header_field_len(name, value);
        }
        if let Some(stream) = &self.stream {
            len += uint_field_len(stream.stream_id) + uint_field_len(stream.total_len);
        }
        len
    }

    /// At least the length of the header block, found with a few additions: each text
    /// field counted with the longest length prefix, each integer as the longest
    /// varint.
    pub(crate) fn header_block_bound(&self) -> usize {
        const TEXT_FIELD: usize = 1 + MAX_VARINT_LEN;
        const UINT_FIELD: usize = 2 + MAX_VARINT_LEN;
        let mut bound = self.channel.len()
            + self.sender_name.len()
            + self.content_type.len()
            + 3 * TEXT_FIELD
            + 18
            + 6 * UINT_FIELD;
        for (name, value) in self.user_headers {
            bound += name.len() + value.len() + TEXT_FIELD + MAX_VARINT_LEN;
        }
        bound
    }

    /// Writes the header block, the same fields in the same order as
    /// [`Encode::write_fields`], into a block of [`Envelope::header_block_len`] bytes.
    pub(crate) fn write_header_block(&self, fields: &mut BlockWriter<'_>) {
        fields.bytes(key::CHANNEL, self.channel.as_bytes());
        if self.scope != Scope::Channel {
            fields.uint(key::SCOPE, u64::from(self.scope.as_u8()));
        }
        fields
            .uuid(key::MESSAGE_ID, &self.id)
            .uint(key::SEQ, self.seq)
            .uint(key::TIME, self.time_us)
            .uint(key::SENDER_ID, self.sender_id);
        if !self.sender_name.is_empty() {
            fields.bytes(key::SENDER_NAME, self.sender_name.as_bytes());
        }
        if !self.content_type.is_empty() {
            fields.bytes(key::CONTENT_TYPE, self.content_type.as_bytes());
        }
        for (name, value) in self.user_headers {
            fields.user_header(name, value);
        }
        if let Some(stream) = &self.stream {
            fields
                .uint(key::STREAM_ID, stream.stream_id)
                .uint(key::TOTAL_LEN, stream.total_len);
        }
    }
}

impl Encode for Envelope<'_> {
    fn frame_type(&self) -> FrameType {
        FrameType::Message
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
        fields
            .uuid(key::MESSAGE_ID, &self.id)
            .uint(key::SEQ, self.seq)
            .uint(key::TIME, self.time_us)
            .uint(key::SENDER_ID, self.sender_id);
        if !self.sender_name.is_empty() {
            fields.bytes(key::SENDER_NAME, self.sender_name.as_bytes());
        }
        if !self.content_type.is_empty() {
            fields.bytes(key::CONTENT_TYPE, self.content_type.as_bytes());
        }
        for (name, value) in self.user_headers {
            fields.user_header(name, value);
        }
        StreamStart::write(self.stream.as_ref(), fields);
    }
    fn write_content(&self, dst: &mut BytesMut) {
        put_content(dst, self.body);
    }
    fn content_len(&self) -> usize {
        self.body.len()
    }
    fn content_crc(&self) -> Option<u32> {
        self.body_crc
    }
    fn fields_len_hint(&self) -> usize {
        // Each field is a key, a length (up to 3 bytes for a header block's sizes) and
        // its value; integers take at most 10 bytes.
        self.channel.len()
            + self.sender_name.len()
            + self.content_type.len()
            + user_headers_len(self.user_headers)
            + 3 * 4
            + 18
            + 4 * 12
            + if self.stream.is_some() { 24 } else { 0 }
    }
}

impl Encode for Message {
    fn frame_type(&self) -> FrameType {
        FrameType::Message
    }
    fn flags(&self) -> Flags {
        self.as_envelope().flags()
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        self.as_envelope().write_fields(fields);
    }
    content_is_body!(body);
    fn fields_len_hint(&self) -> usize {
        self.as_envelope().fields_len_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(message: &Message) -> Frame {
        crate::codec::round_trip(0, message)
    }

    #[test]
    fn cached_decoding_gives_the_same_messages() {
        let mut cache = TextCache::default();
        for (seq, (channel, sender, content_type)) in [
            ("chat.rust", "ada", "text/plain"),
            ("chat.rust", "ada", "text/plain"),
            ("chat.rust", "", "text/plain"),
            ("chat.zig", "bob", ""),
            ("chat.zig", "bob", ""),
            ("chat.rust", "ada", "text/plain"),
        ]
        .into_iter()
        .enumerate()
        {
            let message = Message {
                channel: channel.into(),
                id: Uuid::now_v7(),
                seq: seq as u64 + 1,
                sender_name: sender.into(),
                content_type: content_type.into(),
                body: Bytes::from_static(b"hello"),
                ..Message::default()
            };
            let frame = frame_of(&message);
            let cached = Message::from_frame_cached(&frame, &mut cache).unwrap();
            assert_eq!(cached, Message::from_frame(&frame).unwrap());
            assert_eq!(cached, message);
        }
    }

    #[test]
    fn cached_decoding_still_refuses_text_that_is_not_utf8() {
        let message = Message {
            channel: Text::from_utf8(Bytes::from_static(b"ok")).unwrap(),
            id: Uuid::now_v7(),
            seq: 1,
            ..Message::default()
        };
        let mut frame = frame_of(&message);
        // The channel's value, in the header block, replaced by bytes that are not UTF-8.
        let mut headers = frame.headers.to_vec();
        let at = headers
            .windows(2)
            .position(|pair| pair == b"ok")
            .expect("the channel is in the header block");
        headers[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
        frame.headers = Bytes::from(headers);
        let mut cache = TextCache::default();
        assert!(Message::from_frame(&frame).is_err());
        assert!(Message::from_frame_cached(&frame, &mut cache).is_err());
    }
}
