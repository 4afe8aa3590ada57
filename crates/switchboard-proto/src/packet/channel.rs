//! Channels: CREATE_CHANNEL, CHANNEL_INFO, LIST_CHANNELS, CHANNEL_LIST and DELETE_CHANNEL.

use bytes::{Bytes, BytesMut};

use super::{
    Encode, cursor_len, for_each_field, for_each_record, list_request, read_cursor, records_len,
    required, text_len, write_cursor,
};
use crate::error::ProtoError;
use crate::fields::{Field, FieldReader, FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

/// What the server does with a subscriber whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Disconnect it with a SLOW_CONSUMER error (the default).
    #[default]
    Disconnect,
    /// Drop its oldest undelivered messages and tell it how many were skipped.
    DropOldest,
}

impl SlowConsumerPolicy {
    pub fn as_u64(self) -> u64 {
        match self {
            SlowConsumerPolicy::Disconnect => 0,
            SlowConsumerPolicy::DropOldest => 1,
        }
    }

    pub fn from_u64(value: u64) -> Option<Self> {
        match value {
            0 => Some(SlowConsumerPolicy::Disconnect),
            1 => Some(SlowConsumerPolicy::DropOldest),
            _ => None,
        }
    }
}

/// How a channel's messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// In memory only: lost on restart.
    Memory,
    /// Written to the store; synced to disk when the operating system chooses.
    Never,
    /// Written to the store and synced at a fixed interval (the server default).
    #[default]
    Interval,
    /// Acknowledged only once synced to disk (concurrent publishes share one sync).
    Always,
}

impl Durability {
    pub fn as_u64(self) -> u64 {
        match self {
            Durability::Memory => 0,
            Durability::Never => 1,
            Durability::Interval => 2,
            Durability::Always => 3,
        }
    }

    pub fn from_u64(value: u64) -> Option<Self> {
        match value {
            0 => Some(Durability::Memory),
            1 => Some(Durability::Never),
            2 => Some(Durability::Interval),
            3 => Some(Durability::Always),
            _ => None,
        }
    }

    /// The lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Memory => "memory",
            Durability::Never => "never",
            Durability::Interval => "interval",
            Durability::Always => "always",
        }
    }
}

/// Options of a channel; `None` means the server's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelOptions {
    /// Messages kept in history (default 1000).
    pub history: Option<u64>,
    /// Largest body accepted, in bytes.
    pub max_bytes: Option<u64>,
    /// Largest text body accepted, in characters (Unicode scalar values).
    pub max_chars: Option<u64>,
    /// Messages older than this are trimmed, in milliseconds.
    pub max_age_ms: Option<u64>,
    /// History is trimmed to stay under this many bytes of bodies.
    pub max_total_bytes: Option<u64>,
    pub slow_consumer: Option<SlowConsumerPolicy>,
    /// How messages are kept (default: the server's sync policy).
    pub durability: Option<Durability>,
}

impl ChannelOptions {
    fn write(&self, fields: &mut FieldWriter<'_>) {
        fields
            .opt_uint(key::HISTORY, self.history)
            .opt_uint(key::MAX_BYTES, self.max_bytes)
            .opt_uint(key::MAX_CHARS, self.max_chars)
            .opt_uint(key::MAX_AGE_MS, self.max_age_ms)
            .opt_uint(key::MAX_TOTAL_BYTES, self.max_total_bytes)
            .opt_uint(
                key::SLOW_CONSUMER,
                self.slow_consumer.map(SlowConsumerPolicy::as_u64),
            )
            .opt_uint(key::DURABILITY, self.durability.map(Durability::as_u64));
    }

    /// Takes the field if it is an option; returns whether it was.
    fn read(&mut self, field: &Field, frame: FrameType) -> Result<bool, ProtoError> {
        match field.key {
            key::HISTORY => self.history = Some(field.uint()?),
            key::MAX_BYTES => self.max_bytes = Some(field.uint()?),
            key::MAX_CHARS => self.max_chars = Some(field.uint()?),
            key::MAX_AGE_MS => self.max_age_ms = Some(field.uint()?),
            key::MAX_TOTAL_BYTES => self.max_total_bytes = Some(field.uint()?),
            key::SLOW_CONSUMER => {
                let value = field.uint()?;
                self.slow_consumer =
                    Some(SlowConsumerPolicy::from_u64(value).ok_or_else(|| {
                        ProtoError::InvalidField {
                            frame,
                            field: "slow consumer policy",
                            reason: format!("unknown policy {value}"),
                        }
                    })?);
            }
            key::DURABILITY => {
                let value = field.uint()?;
                self.durability =
                    Some(
                        Durability::from_u64(value).ok_or_else(|| ProtoError::InvalidField {
                            frame,
                            field: "durability",
                            reason: format!("unknown durability {value}"),
                        })?,
                    );
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Creates a channel. Creating an existing channel with the same options succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateChannel {
    pub name: Text,
    pub options: ChannelOptions,
}

impl CreateChannel {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut options = ChannelOptions::default();
        let mut name = None;
        for_each_field(&frame.headers, |field| {
            if field.key == key::CHANNEL {
                name = Some(field.text()?);
            } else {
                options.read(&field, FrameType::CreateChannel)?;
            }
            Ok(())
        })?;
        Ok(CreateChannel {
            name: required(name, FrameType::CreateChannel, "channel")?,
            options,
        })
    }
}

impl Encode for CreateChannel {
    fn frame_type(&self) -> FrameType {
        FrameType::CreateChannel
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.text(key::CHANNEL, &self.name);
        self.options.write(fields);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.name) + 7 * 11
    }
}

/// Describes a channel: the answer to CREATE_CHANNEL and an entry of CHANNEL_LIST.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelInfo {
    pub name: Text,
    /// Messages currently held in history.
    pub message_count: u64,
    /// Sequence number of the oldest message held (0 when empty).
    pub first_seq: u64,
    /// Sequence number of the newest message ever published (0 when none).
    pub last_seq: u64,
    /// Bytes of bodies currently held.
    pub bytes: u64,
    /// The options in force, with defaults filled in.
    pub options: ChannelOptions,
}

impl ChannelInfo {
    fn read_fields(fields: FieldReader<'_>, frame: FrameType) -> Result<Self, ProtoError> {
        let mut info = ChannelInfo::default();
        let mut name = None;
        for field in fields {
            let field = field?;
            match field.key {
                key::CHANNEL => name = Some(field.text()?),
                key::COUNT => info.message_count = field.uint()?,
                key::FIRST_SEQ => info.first_seq = field.uint()?,
                key::LAST_SEQ => info.last_seq = field.uint()?,
                key::BYTES => info.bytes = field.uint()?,
                _ => {
                    info.options.read(&field, frame)?;
                }
            }
        }
        info.name = required(name, frame, "channel")?;
        Ok(info)
    }

    fn write_fields_to(&self, fields: &mut FieldWriter<'_>) {
        fields
            .text(key::CHANNEL, &self.name)
            .uint(key::COUNT, self.message_count)
            .uint(key::FIRST_SEQ, self.first_seq)
            .uint(key::LAST_SEQ, self.last_seq)
            .uint(key::BYTES, self.bytes);
        self.options.write(fields);
    }

    fn encoded_len(&self) -> usize {
        text_len(&self.name) + 12 * 11
    }

    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        Self::read_fields(FieldReader::new(&frame.headers), FrameType::ChannelInfo)
    }
}

impl Encode for ChannelInfo {
    fn frame_type(&self) -> FrameType {
        FrameType::ChannelInfo
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        self.write_fields_to(fields);
    }
    fn fields_len_hint(&self) -> usize {
        self.encoded_len()
    }
}

list_request! {
    /// Asks for a page of the list of channels, in name order.
    ListChannels => ListChannels
}

/// The answer to LIST_CHANNELS: one page, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelList {
    pub channels: Vec<ChannelInfo>,
    /// Present when more channels follow: the cursor of the next page.
    pub next: Option<Bytes>,
}

impl ChannelList {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let channels = for_each_record(&frame.content, |record| {
            ChannelInfo::read_fields(record, FrameType::ChannelList)
        })?;
        Ok(ChannelList {
            channels,
            next: read_cursor(frame)?,
        })
    }
}

impl ChannelInfo {
    /// At most what this entry takes in a CHANNEL_LIST's content.
    pub fn record_len(&self) -> usize {
        2 + self.encoded_len()
    }
}

impl Encode for ChannelList {
    fn frame_type(&self) -> FrameType {
        FrameType::ChannelList
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        write_cursor(fields, self.next.as_ref());
    }
    fn write_content(&self, dst: &mut BytesMut) {
        let mut fields = FieldWriter::new(dst);
        for channel in &self.channels {
            fields.record(|fields| channel.write_fields_to(fields));
        }
    }
    fn content_len(&self) -> usize {
        records_len(&self.channels, ChannelInfo::encoded_len)
    }
    fn fields_len_hint(&self) -> usize {
        cursor_len(self.next.as_ref())
    }
}

/// Deletes a channel: its history, its streamed bodies and its stored options; answered
/// by OK. Every connection routed to the channel gets an EVENT `CHANNEL_DELETED`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteChannel {
    pub name: Text,
}

impl DeleteChannel {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut name = None;
        for_each_field(&frame.headers, |field| {
            if field.key == key::CHANNEL {
                name = Some(field.text()?);
            }
            Ok(())
        })?;
        Ok(DeleteChannel {
            name: required(name, FrameType::DeleteChannel, "channel")?,
        })
    }
}

impl Encode for DeleteChannel {
    fn frame_type(&self) -> FrameType {
        FrameType::DeleteChannel
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.text(key::CHANNEL, &self.name);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.name)
    }
}
