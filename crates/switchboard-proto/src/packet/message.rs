//! MESSAGE: the envelope of a stored message, as pushed to subscribers and returned by
//! GET_MESSAGE / GET_MESSAGES.

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use super::publish::user_headers_len;
use super::{Encode, Scope, StreamStart, content_is_body, put_content, required};
use crate::error::ProtoError;
use crate::fields::{
    BlockWriter, Field, FieldReader, FieldWriter, MAX_BYTES_FIELD_HEAD, MAX_UINT_FIELD,
    WriteFields, bytes_field_len, get_varint, key, uint_field_len, uint_value,
    user_header_field_bound, user_header_field_len, varint_in_word,
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
        let fields = MessageFields::read(frame)?;
        Ok(Message {
            scope: fields.scope,
            channel: fields.channel.text()?,
            id: fields.id,
            seq: fields.seq,
            time_us: fields.time_us,
            sender_id: fields.sender_id,
            sender_name: optional_text(fields.sender_name)?,
            content_type: optional_text(fields.content_type)?,
            user_headers: fields.user_headers,
            body: frame.content.clone(),
            stream: fields.stream,
        })
    }
}

/// A text field that may be absent: absent reads as empty.
fn optional_text(field: Option<Field<'_>>) -> Result<Text, ProtoError> {
    match field {
        Some(field) => field.text(),
        None => Ok(Text::default()),
    }
}

/// The fields of a MESSAGE frame's header block, read and checked, with its channel,
/// sender name and content type left where they lie.
///
/// This is [`Message::from_frame`] without making the three texts: a reader that
/// receives many messages alike (a subscriber) compares their bytes with the ones it
/// decoded last and shares those, rather than slicing and checking them again. Each
/// text is checked as UTF-8 by [`Field::text`] when it is made.
#[derive(Debug)]
pub struct MessageFields<'a> {
    pub scope: Scope,
    pub channel: Field<'a>,
    pub id: Uuid,
    pub seq: u64,
    pub time_us: u64,
    pub sender_id: u64,
    /// Absent reads as empty.
    pub sender_name: Option<Field<'a>>,
    /// Absent reads as empty.
    pub content_type: Option<Field<'a>>,
    pub user_headers: Vec<(Text, Text)>,
    pub stream: Option<StreamStart>,
}

impl<'a> MessageFields<'a> {
    // Inlined: the result is built where the caller keeps it rather than copied there.
    #[inline]
    pub fn read(frame: &'a Frame) -> Result<Self, ProtoError> {
        let (mut channel, mut id, mut seq) = (None, None, None);
        let (mut stream_id, mut total_len) = (None, None);
        let mut scope = Scope::default();
        let (mut time_us, mut sender_id) = (0, 0);
        let (mut sender_name, mut content_type) = (None, None);
        let mut user_headers = Vec::new();
        for field in FieldReader::new(&frame.headers) {
            let field = field?;
            match field.key {
                key::CHANNEL => channel = Some(field),
                key::SCOPE => scope = Scope::read(&field, FrameType::Message)?,
                key::MESSAGE_ID => id = Some(field.uuid()?),
                key::SEQ => seq = Some(field.uint()?),
                key::TIME => time_us = field.uint()?,
                key::SENDER_ID => sender_id = field.uint()?,
                key::SENDER_NAME => sender_name = Some(field),
                key::CONTENT_TYPE => content_type = Some(field),
                key::USER_HEADER => user_headers.push(field.user_header()?),
                key::STREAM_ID => stream_id = Some(field.uint()?),
                key::TOTAL_LEN => total_len = Some(field.uint()?),
                _ => {}
            }
        }
        Ok(MessageFields {
            scope,
            channel: required(channel, FrameType::Message, "channel")?,
            id: required(id, FrameType::Message, "message id")?,
            seq: required(seq, FrameType::Message, "seq")?,
            time_us,
            sender_id,
            sender_name,
            content_type,
            user_headers,
            stream: StreamStart::read(frame, stream_id, total_len)?,
        })
    }
}

/// A MESSAGE header block read by position, in the layout the hub writes for a channel
/// message whose body is whole: CHANNEL, MESSAGE_ID, SEQ, TIME, SENDER_ID, then the
/// rest (`tail`), which holds the sender name and content type.
///
/// A subscriber's messages mostly differ from one another only in the four fields in
/// the middle. A reader that keeps the CHANNEL field and the tail of a message it
/// decoded fully with [`MessageFields::read`] (and found in this layout with
/// [`MessageLayout::tail_is_names`]) knows everything else about the next message whose
/// CHANNEL field and tail are the same bytes: reading it takes the four fields and two
/// comparisons, with no walk over the fields by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLayout<'a> {
    /// The CHANNEL field whole: key, length and name.
    pub channel_field: &'a [u8],
    pub id: Uuid,
    pub seq: u64,
    pub time_us: u64,
    pub sender_id: u64,
    /// Everything after SENDER_ID.
    pub tail: &'a [u8],
}

impl<'a> MessageLayout<'a> {
    /// The block read by position; `None` if it is not in this layout (the fields in
    /// another order, a SCOPE field, a value [`MessageFields::read`] would refuse).
    #[inline]
    pub fn read(block: &'a [u8]) -> Option<Self> {
        let (&key, after_key) = block.split_first()?;
        if key != key::CHANNEL {
            return None;
        }
        let mut value = after_key;
        let len = usize::try_from(get_varint(&mut value).ok()?).ok()?;
        if len > value.len() {
            return None;
        }
        let (channel_field, rest) = block.split_at(block.len() - value.len() + len);
        let (id_field, rest) = rest.split_first_chunk::<18>()?;
        let [key::MESSAGE_ID, 16, id @ ..] = *id_field else {
            return None;
        };
        let (seq, rest) = uint_at(rest, key::SEQ)?;
        let (time_us, rest) = uint_at(rest, key::TIME)?;
        let (sender_id, tail) = uint_at(rest, key::SENDER_ID)?;
        Some(MessageLayout {
            channel_field,
            id: Uuid::from_bytes(id),
            seq,
            time_us,
            sender_id,
            tail,
        })
    }

    /// Whether the tail holds a SENDER_NAME field and then a CONTENT_TYPE field (either
    /// may be absent) and nothing else: then the block's fields are exactly the ones
    /// read by position and those two names, and any block with the same CHANNEL field
    /// and tail reads as this one does but for the four fields in the middle.
    pub fn tail_is_names(&self) -> bool {
        let mut rest = self.tail;
        for name_key in [key::SENDER_NAME, key::CONTENT_TYPE] {
            let Some((&key, after_key)) = rest.split_first() else {
                return true;
            };
            if key != name_key {
                continue;
            }
            let mut value = after_key;
            let Some(len) = get_varint(&mut value)
                .ok()
                .and_then(|len| usize::try_from(len).ok())
            else {
                return false;
            };
            let Some(after) = value.get(len..) else {
                return false;
            };
            rest = after;
        }
        rest.is_empty()
    }
}

/// An integer field of key `want` at the front of `block`, and what follows it.
#[inline(always)]
fn uint_at(block: &[u8], want: u8) -> Option<(u64, &[u8])> {
    let [key, len, rest @ ..] = block else {
        return None;
    };
    // A length of 0x80 and more would be a varint of two bytes: not the hub's layout.
    let len = usize::from(*len);
    if *key != want || len >= 0x80 || len > rest.len() {
        return None;
    }
    let (value, after) = rest.split_at(len);
    // More fields follow the seq and the time (and mostly the sender id): eight bytes
    // are at hand, loaded at once.
    let value = match rest.first_chunk::<8>() {
        Some(word) if len <= 8 => varint_in_word(u64::from_le_bytes(*word), len),
        _ => uint_value(value),
    }?;
    Some((value, after))
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
        let mut bound = self.channel.len()
            + self.sender_name.len()
            + self.content_type.len()
            + 3 * MAX_BYTES_FIELD_HEAD
            + 18
            + 6 * MAX_UINT_FIELD;
        for (name, value) in self.user_headers {
            bound += user_header_field_bound(name, value);
        }
        bound
    }

    /// Writes the header block into a block of [`Envelope::header_block_len`] bytes: the
    /// same bytes as [`Encode::write_fields`].
    pub(crate) fn write_header_block(&self, fields: &mut BlockWriter<'_>) {
        self.put_fields(fields);
    }

    fn put_fields<W: WriteFields>(&self, fields: &mut W) {
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
        self.put_fields(fields);
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
    fn fields_are_read_where_they_lie() {
        for (seq, (channel, sender, content_type)) in [
            ("chat.rust", "ada", "text/plain"),
            ("chat.rust", "", "text/plain"),
            ("chat.zig", "bob", ""),
        ]
        .into_iter()
        .enumerate()
        {
            let message = Message {
                channel: channel.into(),
                id: Uuid::now_v7(),
                seq: seq as u64 + 1,
                time_us: 1_700_000_000_000_000,
                sender_id: 42,
                sender_name: sender.into(),
                content_type: content_type.into(),
                user_headers: vec![("lang".into(), "en".into())],
                body: Bytes::from_static(b"hello"),
                ..Message::default()
            };
            let frame = frame_of(&message);
            let fields = MessageFields::read(&frame).unwrap();
            assert_eq!(fields.channel.value, channel.as_bytes());
            let value =
                |field: &Option<Field<'_>>| field.as_ref().map(|field| field.value.to_vec());
            let absent_if_empty = |text: &str| (!text.is_empty()).then(|| text.as_bytes().to_vec());
            assert_eq!(value(&fields.sender_name), absent_if_empty(sender));
            assert_eq!(value(&fields.content_type), absent_if_empty(content_type));
            assert_eq!(
                (fields.id, fields.seq, fields.time_us, fields.sender_id),
                (message.id, message.seq, message.time_us, message.sender_id)
            );
            assert_eq!(fields.user_headers, message.user_headers);
            assert_eq!(Message::from_frame(&frame).unwrap(), message);
        }
    }

    #[test]
    fn the_usual_layout_is_read_by_position() {
        let plain = Message {
            channel: "chat.rust".into(),
            id: Uuid::now_v7(),
            seq: 300,
            time_us: 1_700_000_000_000_000,
            sender_id: 42,
            sender_name: "ada".into(),
            content_type: "text/plain".into(),
            body: Bytes::from_static(b"hello"),
            ..Message::default()
        };
        for (message, usual) in [
            (plain.clone(), true),
            (
                Message {
                    sender_name: Text::default(),
                    ..plain.clone()
                },
                true,
            ),
            (
                Message {
                    sender_name: Text::default(),
                    content_type: Text::default(),
                    ..plain.clone()
                },
                true,
            ),
            (
                Message {
                    user_headers: vec![("lang".into(), "en".into())],
                    ..plain.clone()
                },
                false,
            ),
        ] {
            let frame = frame_of(&message);
            let layout = MessageLayout::read(&frame.headers).unwrap();
            assert_eq!(
                (layout.id, layout.seq, layout.time_us, layout.sender_id),
                (message.id, message.seq, message.time_us, message.sender_id)
            );
            assert_eq!(&layout.channel_field[2..], b"chat.rust");
            assert_eq!(layout.tail_is_names(), usual);
        }
        // A group message has a SCOPE field after its channel: not the usual layout.
        let group = Message {
            scope: Scope::Group,
            ..plain.clone()
        };
        assert_eq!(MessageLayout::read(&frame_of(&group).headers), None);
        // A value a full read refuses is not read by position either.
        let frame = frame_of(&plain);
        let mut block = frame.headers.to_vec();
        let seq_at = 2 + "chat.rust".len() + 18;
        assert_eq!(block[seq_at..seq_at + 2], [key::SEQ, 2]);
        block[seq_at + 3] |= 0x80;
        assert_eq!(MessageLayout::read(&block), None);
    }

    #[test]
    fn text_that_is_not_utf8_is_refused() {
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
        assert!(Message::from_frame(&frame).is_err());
        let fields = MessageFields::read(&frame).unwrap();
        assert!(fields.channel.text().is_err());
    }
}
