//! Direct relay between clients: IDENTIFY / IDENTITY, LIST_CLIENTS / CLIENT_LIST and
//! RELAY / RELAY_RESULT.

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use super::{
    Encode, content_is_body, cursor_len, for_each_field, for_each_record, list_request,
    read_cursor, records_len, required, text_len, unit_packet, write_cursor,
};
use crate::error::ProtoError;
use crate::fields::{FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

/// Most receivers one RELAY may name.
pub const MAX_RECEIVERS: usize = 255;

unit_packet! {
    /// Asks for one's own client id, name and session id.
    Identify => Identify
}

list_request! {
    /// Asks for a page of the other connected clients, in client id order.
    ListClients => ListClients
}

/// The answer to IDENTIFY.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub client_id: u64,
    pub name: Text,
    pub session_id: Uuid,
    pub connected_since_us: u64,
}

impl Identity {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = Identity::default();
        let mut client_id = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CLIENT_ID => client_id = Some(field.uint()?),
                key::CLIENT_NAME => packet.name = field.text()?,
                key::SESSION_ID => packet.session_id = field.uuid()?,
                key::CONNECTED_SINCE => packet.connected_since_us = field.uint()?,
                _ => {}
            }
            Ok(())
        })?;
        packet.client_id = required(client_id, FrameType::Identity, "client id")?;
        Ok(packet)
    }
}

impl Encode for Identity {
    fn frame_type(&self) -> FrameType {
        FrameType::Identity
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uint(key::CLIENT_ID, self.client_id)
            .text(key::CLIENT_NAME, &self.name)
            .uuid(key::SESSION_ID, &self.session_id)
            .uint(key::CONNECTED_SINCE, self.connected_since_us);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.name) + 48
    }
}

/// One connected client, as listed by CLIENT_LIST.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    pub client_id: u64,
    pub name: Text,
    pub connected_since_us: u64,
}

/// The answer to LIST_CLIENTS: one page of the connected clients but the asker, in
/// client id order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientList {
    pub clients: Vec<ClientInfo>,
    /// Present when more clients follow: the cursor of the next page.
    pub next: Option<Bytes>,
}

impl ClientInfo {
    /// At most what this entry takes in a CLIENT_LIST's content.
    pub fn record_len(&self) -> usize {
        2 + text_len(&self.name) + 24
    }
}

impl ClientList {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let clients = for_each_record(&frame.content, |record| {
            let mut info = ClientInfo::default();
            for field in record {
                let field = field?;
                match field.key {
                    key::CLIENT_ID => info.client_id = field.uint()?,
                    key::CLIENT_NAME => info.name = field.text()?,
                    key::CONNECTED_SINCE => info.connected_since_us = field.uint()?,
                    _ => {}
                }
            }
            Ok(info)
        })?;
        Ok(ClientList {
            clients,
            next: read_cursor(frame)?,
        })
    }
}

impl Encode for ClientList {
    fn frame_type(&self) -> FrameType {
        FrameType::ClientList
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        write_cursor(fields, self.next.as_ref());
    }
    fn fields_len_hint(&self) -> usize {
        cursor_len(self.next.as_ref())
    }
    fn write_content(&self, dst: &mut BytesMut) {
        let mut fields = FieldWriter::new(dst);
        for client in &self.clients {
            fields.record(|fields| {
                fields
                    .uint(key::CLIENT_ID, client.client_id)
                    .text(key::CLIENT_NAME, &client.name)
                    .uint(key::CONNECTED_SINCE, client.connected_since_us);
            });
        }
    }
    fn content_len(&self) -> usize {
        records_len(&self.clients, |client| text_len(&client.name) + 24)
    }
}

/// Relays a body to 1..=255 connected clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Relay {
    pub receivers: Vec<u64>,
    pub content_type: Text,
    pub body: Bytes,
}

impl Relay {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = Relay {
            body: frame.content.clone(),
            ..Relay::default()
        };
        let mut receivers = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::RECEIVERS => {
                    if field.value.len() % 8 != 0 {
                        return Err(ProtoError::InvalidField {
                            frame: FrameType::Relay,
                            field: "receivers",
                            reason: "length is not a multiple of 8".into(),
                        });
                    }
                    receivers = Some(
                        field
                            .value
                            .chunks_exact(8)
                            .map(|id| {
                                let mut bytes = [0u8; 8];
                                bytes.copy_from_slice(id);
                                u64::from_be_bytes(bytes)
                            })
                            .collect::<Vec<_>>(),
                    );
                }
                key::CONTENT_TYPE => packet.content_type = field.text()?,
                _ => {}
            }
            Ok(())
        })?;
        packet.receivers = required(receivers, FrameType::Relay, "receivers")?;
        Ok(packet)
    }
}

impl Encode for Relay {
    fn frame_type(&self) -> FrameType {
        FrameType::Relay
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.u64_list(key::RECEIVERS, &self.receivers);
        if !self.content_type.is_empty() {
            fields.text(key::CONTENT_TYPE, &self.content_type);
        }
    }
    content_is_body!(body);
    fn fields_len_hint(&self) -> usize {
        self.receivers.len() * 8 + 4 + text_len(&self.content_type)
    }
}

/// What happened to a relay for one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayStatus {
    /// Queued on the receiver's connection.
    Delivered,
    /// No client with that id is connected.
    Unknown,
    /// The receiver is connected but has no room for direct messages now (they may fill
    /// a quarter of its outbound queue), or it is closing; the body was not delivered.
    /// The receiver keeps its connection; sending again later may succeed.
    Dropped,
}

impl RelayStatus {
    pub fn as_u64(self) -> u64 {
        match self {
            RelayStatus::Delivered => 0,
            RelayStatus::Unknown => 1,
            RelayStatus::Dropped => 2,
        }
    }

    pub fn from_u64(value: u64) -> Option<Self> {
        match value {
            0 => Some(RelayStatus::Delivered),
            1 => Some(RelayStatus::Unknown),
            2 => Some(RelayStatus::Dropped),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RelayStatus::Delivered => "delivered",
            RelayStatus::Unknown => "unknown",
            RelayStatus::Dropped => "dropped",
        }
    }
}

/// One receiver's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayOutcome {
    pub client_id: u64,
    pub status: RelayStatus,
}

/// The answer to RELAY, one outcome per receiver named, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayResult {
    pub outcomes: Vec<RelayOutcome>,
}

impl RelayResult {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let outcomes = for_each_record(&frame.content, |record| {
            let (mut client_id, mut status) = (None, None);
            for field in record {
                let field = field?;
                match field.key {
                    key::CLIENT_ID => client_id = Some(field.uint()?),
                    key::STATUS => {
                        let value = field.uint()?;
                        status = Some(RelayStatus::from_u64(value).ok_or_else(|| {
                            ProtoError::InvalidField {
                                frame: FrameType::RelayResult,
                                field: "status",
                                reason: format!("unknown status {value}"),
                            }
                        })?);
                    }
                    _ => {}
                }
            }
            Ok(RelayOutcome {
                client_id: required(client_id, FrameType::RelayResult, "client id")?,
                status: required(status, FrameType::RelayResult, "status")?,
            })
        })?;
        Ok(RelayResult { outcomes })
    }
}

impl Encode for RelayResult {
    fn frame_type(&self) -> FrameType {
        FrameType::RelayResult
    }
    fn write_fields(&self, _fields: &mut FieldWriter<'_>) {}
    fn write_content(&self, dst: &mut BytesMut) {
        let mut fields = FieldWriter::new(dst);
        for outcome in &self.outcomes {
            fields.record(|fields| {
                fields
                    .uint(key::CLIENT_ID, outcome.client_id)
                    .uint(key::STATUS, outcome.status.as_u64());
            });
        }
    }
    fn content_len(&self) -> usize {
        records_len(&self.outcomes, |_| 16)
    }
}
