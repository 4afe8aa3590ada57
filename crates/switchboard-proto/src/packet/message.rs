//! MESSAGE: the envelope of a stored message, as pushed to subscribers and returned by
//! GET_MESSAGE / GET_MESSAGES.

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use super::publish::user_headers_len;
use super::{Encode, Scope, StreamStart, for_each_field, put_content, required, text_len};
use crate::error::ProtoError;
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
        fields.text(key::CHANNEL, &self.channel);
        self.scope.write(fields);
        fields
            .uuid(key::MESSAGE_ID, &self.id)
            .uint(key::SEQ, self.seq)
            .uint(key::TIME, self.time_us)
            .uint(key::SENDER_ID, self.sender_id);
        if !self.sender_name.is_empty() {
            fields.text(key::SENDER_NAME, &self.sender_name);
        }
        if !self.content_type.is_empty() {
            fields.text(key::CONTENT_TYPE, &self.content_type);
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
