//! MESSAGE: the envelope of a stored message, as pushed to subscribers and returned by
//! GET_MESSAGE / GET_MESSAGES.

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use super::publish::user_headers_len;
use super::{Encode, Scope, StreamStart, for_each_field, put_content, required, text_len};
use crate::codec::{FrameCodec, view_encoded};
use crate::error::ProtoError;
use crate::fields::{FieldReader, get_varint};
use crate::fields::{FieldWriter, key};
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
        let mut packet = Message {
            body: frame.content.clone(),
            ..Message::default()
        };
        let (mut channel, mut id, mut seq) = (None, None, None);
        let (mut stream_id, mut total_len) = (None, None);
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => channel = Some(field.text()?),
                key::SCOPE => packet.scope = Scope::read(&field, FrameType::Message)?,
                key::MESSAGE_ID => id = Some(field.uuid()?),
                key::SEQ => seq = Some(field.uint()?),
                key::TIME => packet.time_us = field.uint()?,
                key::SENDER_ID => packet.sender_id = field.uint()?,
                key::SENDER_NAME => packet.sender_name = field.text()?,
                key::CONTENT_TYPE => packet.content_type = field.text()?,
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

impl Message {
    /// Encodes the message as a frame of its own and returns that frame with a copy of
    /// the message whose text fields and body are slices of it: one allocation holds
    /// both, which is what a hub keeps per stored message.
    ///
    /// Unlike encoding and then decoding the frame back, nothing is validated twice: the
    /// fields are located by their offsets only.
    pub fn encode_shared(
        &self,
        codec: &FrameCodec,
        request_id: u32,
        flags: Flags,
    ) -> Result<(Bytes, Message), ProtoError> {
        let mut buf = BytesMut::new();
        codec.encode_packet(request_id, flags, self, &mut buf)?;
        let frame = buf.freeze();
        let view = view_encoded(&frame)?;
        let mut shared = Message {
            scope: self.scope,
            channel: Text::default(),
            id: self.id,
            seq: self.seq,
            time_us: self.time_us,
            sender_id: self.sender_id,
            sender_name: Text::default(),
            content_type: Text::default(),
            user_headers: Vec::with_capacity(self.user_headers.len()),
            body: view.content,
            stream: self.stream,
        };
        for field in FieldReader::new(view.headers) {
            let field = field?;
            match field.key {
                key::CHANNEL => shared.channel = Text::from_copied_text(field.value),
                key::SENDER_NAME => shared.sender_name = Text::from_copied_text(field.value),
                key::CONTENT_TYPE => shared.content_type = Text::from_copied_text(field.value),
                key::USER_HEADER => {
                    let mut slice: &[u8] = &field.value;
                    let name_len =
                        get_varint(&mut slice).map_err(|reason| ProtoError::MalformedField {
                            key: field.key,
                            reason,
                        })?;
                    let offset = field.value.len() - slice.len();
                    let name_end = usize::try_from(name_len)
                        .ok()
                        .and_then(|len| offset.checked_add(len))
                        .filter(|&end| end <= field.value.len())
                        .ok_or(ProtoError::MalformedField {
                            key: field.key,
                            reason: "header name runs past the field",
                        })?;
                    shared.user_headers.push((
                        Text::from_copied_text(field.value.slice(offset..name_end)),
                        Text::from_copied_text(field.value.slice(name_end..)),
                    ));
                }
                _ => {}
            }
        }
        Ok((frame, shared))
    }
}

impl Encode for Message {
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
        for (name, value) in &self.user_headers {
            fields.user_header(name, value);
        }
        StreamStart::write(self.stream.as_ref(), fields);
    }
    fn write_content(&self, dst: &mut BytesMut) {
        put_content(dst, &self.body);
    }
    fn content_len(&self) -> usize {
        self.body.len()
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.channel)
            + text_len(&self.sender_name)
            + text_len(&self.content_type)
            + user_headers_len(&self.user_headers)
            + 3
            + 18
            + 3 * 12
            + if self.stream.is_some() { 24 } else { 0 }
    }
}
