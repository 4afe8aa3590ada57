//! Fetching history: GET_MESSAGE, GET_MESSAGES and MESSAGES_END.

use uuid::Uuid;

use super::{Encode, Scope, for_each_field, required, text_len};
use crate::error::ProtoError;
use crate::fields::{FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

/// Fetches one message: the latest of a channel, group or hashtag, or the one with `id`.
/// Answered by a MESSAGE frame (flag REPLAY) or ERROR NOT_FOUND.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetMessage {
    pub scope: Scope,
    pub channel: Text,
    pub id: Option<Uuid>,
}

impl GetMessage {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = GetMessage::default();
        let mut channel = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => channel = Some(field.text()?),
                key::SCOPE => packet.scope = Scope::read(&field, FrameType::GetMessage)?,
                key::MESSAGE_ID => packet.id = Some(field.uuid()?),
                _ => {}
            }
            Ok(())
        })?;
        packet.channel = required(channel, FrameType::GetMessage, "channel")?;
        Ok(packet)
    }
}

impl Encode for GetMessage {
    fn frame_type(&self) -> FrameType {
        FrameType::GetMessage
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.text(key::CHANNEL, &self.channel);
        self.scope.write(fields);
        if let Some(id) = &self.id {
            fields.uuid(key::MESSAGE_ID, id);
        }
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.channel) + 24
    }
}

/// Where a GET_MESSAGES range starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Since {
    /// From the oldest message held.
    #[default]
    All,
    /// From this sequence number on.
    Seq(u64),
    /// From this time on (microseconds since the Unix epoch).
    Time(u64),
}

/// Fetches a range of history, oldest first. With `since` All and a `limit`, the newest
/// `limit` messages; with a `since`, the first `limit` messages from that point.
/// Answered by MESSAGE frames (flag REPLAY, this request's id) then MESSAGES_END.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetMessages {
    pub scope: Scope,
    pub channel: Text,
    pub since: Since,
    pub limit: Option<u64>,
}

impl GetMessages {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = GetMessages::default();
        let mut channel = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => channel = Some(field.text()?),
                key::SCOPE => packet.scope = Scope::read(&field, FrameType::GetMessages)?,
                key::SINCE_SEQ => packet.since = Since::Seq(field.uint()?),
                key::SINCE_TIME => packet.since = Since::Time(field.uint()?),
                key::LIMIT => packet.limit = Some(field.uint()?),
                _ => {}
            }
            Ok(())
        })?;
        packet.channel = required(channel, FrameType::GetMessages, "channel")?;
        Ok(packet)
    }
}

impl Encode for GetMessages {
    fn frame_type(&self) -> FrameType {
        FrameType::GetMessages
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.text(key::CHANNEL, &self.channel);
        self.scope.write(fields);
        match self.since {
            Since::All => {}
            Since::Seq(seq) => {
                fields.uint(key::SINCE_SEQ, seq);
            }
            Since::Time(time) => {
                fields.uint(key::SINCE_TIME, time);
            }
        }
        fields.opt_uint(key::LIMIT, self.limit);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.channel) + 28
    }
}

/// Ends the answer to GET_MESSAGES.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessagesEnd {
    /// How many MESSAGE frames were sent.
    pub count: u64,
    /// The channel's newest sequence number when the range was read.
    pub last_seq: u64,
}

impl MessagesEnd {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = MessagesEnd::default();
        let mut count = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::COUNT => count = Some(field.uint()?),
                key::LAST_SEQ => packet.last_seq = field.uint()?,
                _ => {}
            }
            Ok(())
        })?;
        packet.count = required(count, FrameType::MessagesEnd, "count")?;
        Ok(packet)
    }
}

impl Encode for MessagesEnd {
    fn frame_type(&self) -> FrameType {
        FrameType::MessagesEnd
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uint(key::COUNT, self.count)
            .uint(key::LAST_SEQ, self.last_seq);
    }
}
