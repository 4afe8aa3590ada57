//! SUBSCRIBE, SUBSCRIBE_ACK and UNSUBSCRIBE.

use super::{Encode, for_each_field, required, text_len};
use crate::error::ProtoError;
use crate::fields::{FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

/// Which history a subscription delivers before live messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replay {
    /// Live messages only.
    #[default]
    None,
    /// Messages with a sequence number at or above this one.
    SinceSeq(u64),
    /// Messages published at or after this time (microseconds since the Unix epoch).
    SinceTime(u64),
    /// The last N messages of each matching channel.
    Last(u64),
}

/// Subscribes to a pattern: a channel name, a wildcard pattern (`chat.*`, `chat.>`) or a
/// hashtag (`#rust`).
///
/// The server answers SUBSCRIBE_ACK, then the replayed history as MESSAGE frames with this
/// request's id and flag REPLAY, then live messages (request id 0), with no gap and no
/// duplicate between the two.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    pub pattern: Text,
    pub replay: Replay,
}

impl Subscribe {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut pattern = None;
        let mut replay = Replay::None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => pattern = Some(field.text()?),
                key::SINCE_SEQ => replay = Replay::SinceSeq(field.uint()?),
                key::SINCE_TIME => replay = Replay::SinceTime(field.uint()?),
                key::LAST_N => replay = Replay::Last(field.uint()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(Subscribe {
            pattern: required(pattern, FrameType::Subscribe, "pattern")?,
            replay,
        })
    }
}

impl Encode for Subscribe {
    fn frame_type(&self) -> FrameType {
        FrameType::Subscribe
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.text(key::CHANNEL, &self.pattern);
        match self.replay {
            Replay::None => {}
            Replay::SinceSeq(seq) => {
                fields.uint(key::SINCE_SEQ, seq);
            }
            Replay::SinceTime(time) => {
                fields.uint(key::SINCE_TIME, time);
            }
            Replay::Last(count) => {
                fields.uint(key::LAST_N, count);
            }
        }
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.pattern) + 12
    }
}

/// The answer to SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscribeAck {
    pub subscription_id: u64,
    /// How many replayed MESSAGE frames follow before live delivery.
    pub replay_count: u64,
}

impl SubscribeAck {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut subscription_id = None;
        let mut replay_count = 0;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::SUBSCRIPTION_ID => subscription_id = Some(field.uint()?),
                key::COUNT => replay_count = field.uint()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(SubscribeAck {
            subscription_id: required(subscription_id, FrameType::SubscribeAck, "subscription id")?,
            replay_count,
        })
    }
}

impl Encode for SubscribeAck {
    fn frame_type(&self) -> FrameType {
        FrameType::SubscribeAck
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uint(key::SUBSCRIPTION_ID, self.subscription_id)
            .uint(key::COUNT, self.replay_count);
    }
}

/// Cancels a subscription; answered by OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    pub subscription_id: u64,
}

impl Unsubscribe {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut subscription_id = None;
        for_each_field(&frame.headers, |field| {
            if field.key == key::SUBSCRIPTION_ID {
                subscription_id = Some(field.uint()?);
            }
            Ok(())
        })?;
        Ok(Unsubscribe {
            subscription_id: required(subscription_id, FrameType::Unsubscribe, "subscription id")?,
        })
    }
}

impl Encode for Unsubscribe {
    fn frame_type(&self) -> FrameType {
        FrameType::Unsubscribe
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.uint(key::SUBSCRIPTION_ID, self.subscription_id);
    }
}
