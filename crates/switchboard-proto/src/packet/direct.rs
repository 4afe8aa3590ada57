//! DIRECT: a body relayed from another client.

use bytes::Bytes;

use super::{Encode, content_is_body, for_each_field, required, text_len};
use crate::error::ProtoError;
use crate::fields::{FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

/// A relayed body, pushed to each receiver of a RELAY.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Direct {
    pub sender_id: u64,
    pub sender_name: Text,
    pub time_us: u64,
    pub content_type: Text,
    pub body: Bytes,
}

impl Direct {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = Direct {
            body: frame.content.clone(),
            ..Direct::default()
        };
        let mut sender_id = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::SENDER_ID => sender_id = Some(field.uint()?),
                key::SENDER_NAME => packet.sender_name = field.text()?,
                key::TIME => packet.time_us = field.uint()?,
                key::CONTENT_TYPE => packet.content_type = field.text()?,
                _ => {}
            }
            Ok(())
        })?;
        packet.sender_id = required(sender_id, FrameType::Direct, "sender id")?;
        Ok(packet)
    }
}

impl Encode for Direct {
    fn frame_type(&self) -> FrameType {
        FrameType::Direct
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uint(key::SENDER_ID, self.sender_id)
            .text(key::SENDER_NAME, &self.sender_name)
            .uint(key::TIME, self.time_us);
        if !self.content_type.is_empty() {
            fields.text(key::CONTENT_TYPE, &self.content_type);
        }
    }
    content_is_body!(body);
    fn fields_len_hint(&self) -> usize {
        text_len(&self.sender_name) + text_len(&self.content_type) + 24
    }
}
