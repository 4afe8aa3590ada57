//! Administration: STOP, RELOAD and STATS / STATS_REPLY.

use bytes::BytesMut;

use super::{Encode, for_each_record, records_len, required, text_len, unit_packet};
use crate::error::ProtoError;
use crate::fields::{FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

unit_packet! {
    /// Asks the server to shut down gracefully. Allowed to admin sessions only (the local
    /// Unix socket, or a session holding the admin token). Answered by OK before draining.
    Stop => Stop
}

unit_packet! {
    /// Asks the server to re-read the configuration it was started with and put it in
    /// force (admin sessions only). Answered by OK once in force, or ERROR with the
    /// reason, the old configuration kept.
    Reload => Reload
}

unit_packet! {
    /// Asks for the server's counters.
    Stats => Stats
}

/// One named counter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    pub name: Text,
    pub value: u64,
}

/// The answer to STATS: named counters, a list that grows as the server learns to count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsReply {
    pub stats: Vec<Stat>,
}

impl StatsReply {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let stats = for_each_record(&frame.content, |record| {
            let (mut name, mut value) = (None, None);
            for field in record {
                let field = field?;
                match field.key {
                    key::DESCRIPTION => name = Some(field.text()?),
                    key::COUNT => value = Some(field.uint()?),
                    _ => {}
                }
            }
            Ok(Stat {
                name: required(name, FrameType::StatsReply, "stat name")?,
                value: required(value, FrameType::StatsReply, "stat value")?,
            })
        })?;
        Ok(StatsReply { stats })
    }

    /// The value of the named counter, if reported.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.stats
            .iter()
            .find(|stat| stat.name == name)
            .map(|stat| stat.value)
    }
}

impl Encode for StatsReply {
    fn frame_type(&self) -> FrameType {
        FrameType::StatsReply
    }
    fn write_fields(&self, _fields: &mut FieldWriter<'_>) {}
    fn write_content(&self, dst: &mut BytesMut) {
        let mut fields = FieldWriter::new(dst);
        for stat in &self.stats {
            fields.record(|fields| {
                fields
                    .text(key::DESCRIPTION, &stat.name)
                    .uint(key::COUNT, stat.value);
            });
        }
    }
    fn content_len(&self) -> usize {
        records_len(&self.stats, |stat| text_len(&stat.name) + 12)
    }
}
