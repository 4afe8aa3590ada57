//! EVENT: something happened to a group, channel or subscription that the client should
//! know.

use super::{Encode, Scope, for_each_field, required, text_len};
use crate::error::ProtoError;
use crate::fields::{FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

/// The kind of an EVENT. Unknown kinds are kept as `Other` so that old clients can
/// ignore new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `subject` joined the group `channel`.
    MemberJoined,
    /// `subject` left the group `channel`.
    MemberLeft,
    /// `count` messages were dropped for this connection (slow consumer, drop-oldest).
    Skipped,
    /// The server ended subscription `subscription_id`.
    SubscriptionClosed,
    /// The channel `channel` was deleted (sent to the connections routed to it).
    ChannelDeleted,
    /// The group `channel` was deleted (sent to its members' sessions).
    GroupDeleted,
    /// The server ended subscription `subscription_id` because the policy in force
    /// since a reload no longer allows it; `channel` holds its pattern.
    SubscriptionRevoked,
    /// Cluster mode: the history of `channel` (of `scope`) may have lost messages (the
    /// backplane restarted without persistence, or failed over to a replica that had not
    /// received them), so it starts a new epoch; `count` is the first sequence number of
    /// the new epoch this node delivers. Messages after it are not a continuation of
    /// those before.
    EpochChanged,
    Other(u64),
}

impl EventKind {
    pub fn as_u64(self) -> u64 {
        match self {
            EventKind::MemberJoined => 1,
            EventKind::MemberLeft => 2,
            EventKind::Skipped => 3,
            EventKind::SubscriptionClosed => 4,
            EventKind::ChannelDeleted => 5,
            EventKind::GroupDeleted => 6,
            EventKind::SubscriptionRevoked => 7,
            EventKind::EpochChanged => 8,
            EventKind::Other(value) => value,
        }
    }

    pub fn from_u64(value: u64) -> Self {
        match value {
            1 => EventKind::MemberJoined,
            2 => EventKind::MemberLeft,
            3 => EventKind::Skipped,
            4 => EventKind::SubscriptionClosed,
            5 => EventKind::ChannelDeleted,
            6 => EventKind::GroupDeleted,
            7 => EventKind::SubscriptionRevoked,
            8 => EventKind::EpochChanged,
            other => EventKind::Other(other),
        }
    }
}

/// An event pushed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub scope: Scope,
    /// The group or channel concerned (may be empty).
    pub channel: Text,
    /// The member concerned, for join and leave.
    pub subject: Text,
    pub count: u64,
    pub subscription_id: u64,
    pub time_us: u64,
}

impl Event {
    pub fn new(kind: EventKind) -> Self {
        Event {
            kind,
            scope: Scope::Channel,
            channel: Text::default(),
            subject: Text::default(),
            count: 0,
            subscription_id: 0,
            time_us: 0,
        }
    }

    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = Event::new(EventKind::Other(0));
        let mut kind = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::EVENT_KIND => kind = Some(EventKind::from_u64(field.uint()?)),
                key::SCOPE => packet.scope = Scope::read(&field, FrameType::Event)?,
                key::CHANNEL => packet.channel = field.text()?,
                key::CLIENT_NAME => packet.subject = field.text()?,
                key::COUNT => packet.count = field.uint()?,
                key::SUBSCRIPTION_ID => packet.subscription_id = field.uint()?,
                key::TIME => packet.time_us = field.uint()?,
                _ => {}
            }
            Ok(())
        })?;
        packet.kind = required(kind, FrameType::Event, "event kind")?;
        Ok(packet)
    }
}

impl Encode for Event {
    fn frame_type(&self) -> FrameType {
        FrameType::Event
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.uint(key::EVENT_KIND, self.kind.as_u64());
        self.scope.write(fields);
        if !self.channel.is_empty() {
            fields.text(key::CHANNEL, &self.channel);
        }
        if !self.subject.is_empty() {
            fields.text(key::CLIENT_NAME, &self.subject);
        }
        if self.count != 0 {
            fields.uint(key::COUNT, self.count);
        }
        if self.subscription_id != 0 {
            fields.uint(key::SUBSCRIPTION_ID, self.subscription_id);
        }
        fields.uint(key::TIME, self.time_us);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.channel) + text_len(&self.subject) + 48
    }
}
