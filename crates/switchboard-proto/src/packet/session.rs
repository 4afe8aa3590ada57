//! Session packets: SESSION_INIT, SESSION_ACK, HEARTBEAT, ERROR, DISCONNECT and OK.

use uuid::Uuid;

use super::{Encode, for_each_field, required, text_len, unit_packet};
use crate::error::{ErrorCode, ProtoError};
use crate::fields::{FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

/// Opens a session. The first frame a client sends after the preface.
///
/// HMAC use is negotiated by the frame itself: a client holding the pre-shared key tags
/// this frame (flag MAC), and a server configured with a key refuses an untagged one.
///
/// Credentials come in one of three kinds: a bearer token (`credentials`), a user and
/// password (`user`, `password`), or a JSON Web Token (`jwt`). Secrets are kept out of
/// the `Debug` output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SessionInit {
    /// The client's chosen name (also the user name for group membership). An
    /// authenticated session is named after its user instead.
    pub name: Text,
    /// The heartbeat interval the client asks for, in milliseconds (0: server default).
    pub heartbeat_ms: u32,
    /// A bearer token (the admin token or a named token), empty when none.
    pub credentials: bytes::Bytes,
    /// Client software and version, for logs.
    pub software: Text,
    /// The user logging in with `password`, empty when none.
    pub user: Text,
    /// The password of `user`, empty when none.
    pub password: bytes::Bytes,
    /// A JSON Web Token, empty when none.
    pub jwt: bytes::Bytes,
}

impl std::fmt::Debug for SessionInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |bytes: &bytes::Bytes| if bytes.is_empty() { "" } else { "<hidden>" };
        f.debug_struct("SessionInit")
            .field("name", &self.name)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("credentials", &secret(&self.credentials))
            .field("software", &self.software)
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("jwt", &secret(&self.jwt))
            .finish()
    }
}

impl SessionInit {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = SessionInit::default();
        let mut name = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CLIENT_NAME => name = Some(field.text()?),
                key::HEARTBEAT_MS => packet.heartbeat_ms = field.uint_as()?,
                key::CREDENTIALS => packet.credentials = field.bytes(),
                key::SOFTWARE => packet.software = field.text()?,
                key::USER => packet.user = field.text()?,
                key::PASSWORD => packet.password = field.bytes(),
                key::JWT => packet.jwt = field.bytes(),
                _ => {}
            }
            Ok(())
        })?;
        packet.name = required(name, FrameType::SessionInit, "client name")?;
        Ok(packet)
    }
}

impl Encode for SessionInit {
    fn frame_type(&self) -> FrameType {
        FrameType::SessionInit
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .text(key::CLIENT_NAME, &self.name)
            .uint(key::HEARTBEAT_MS, u64::from(self.heartbeat_ms));
        if !self.credentials.is_empty() {
            fields.bytes(key::CREDENTIALS, &self.credentials);
        }
        if !self.software.is_empty() {
            fields.text(key::SOFTWARE, &self.software);
        }
        if !self.user.is_empty() {
            fields.text(key::USER, &self.user);
        }
        if !self.password.is_empty() {
            fields.bytes(key::PASSWORD, &self.password);
        }
        if !self.jwt.is_empty() {
            fields.bytes(key::JWT, &self.jwt);
        }
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.name)
            + self.credentials.len()
            + text_len(&self.software)
            + text_len(&self.user)
            + self.password.len()
            + self.jwt.len()
            + 20
    }
}

/// Accepts a session: who the client is and the limits it must respect.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionAck {
    pub client_id: u64,
    pub session_id: Uuid,
    /// The heartbeat interval both sides use, in milliseconds.
    pub heartbeat_ms: u32,
    /// Largest frame content the server accepts.
    pub max_frame: u32,
    /// Largest message body the server accepts (streamed above `max_frame`).
    pub max_body: u64,
    /// Server software and version.
    pub software: Text,
    /// The session's effective name: the one asked for, or the authenticated user's.
    /// Empty from servers that do not send it.
    pub name: Text,
    /// The user the session is authenticated as; empty for an anonymous session.
    pub user: Text,
    /// What the server accepts beyond version 1's baseline, a bit set of
    /// [`features`]; 0 from servers that do not send it.
    pub features: u64,
}

/// The bits of SESSION_ACK's FEATURES field.
pub mod features {
    /// The server accepts PUBLISH frames with flag BATCH (several bodies per frame).
    pub const PUBLISH_BATCH: u64 = 1;
}

impl SessionAck {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = SessionAck::default();
        let (mut client_id, mut session_id) = (None, None);
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CLIENT_ID => client_id = Some(field.uint()?),
                key::SESSION_ID => session_id = Some(field.uuid()?),
                key::HEARTBEAT_MS => packet.heartbeat_ms = field.uint_as()?,
                key::MAX_FRAME => packet.max_frame = field.uint_as()?,
                key::MAX_BODY => packet.max_body = field.uint()?,
                key::SOFTWARE => packet.software = field.text()?,
                key::CLIENT_NAME => packet.name = field.text()?,
                key::USER => packet.user = field.text()?,
                key::FEATURES => packet.features = field.uint()?,
                _ => {}
            }
            Ok(())
        })?;
        packet.client_id = required(client_id, FrameType::SessionAck, "client id")?;
        packet.session_id = required(session_id, FrameType::SessionAck, "session id")?;
        Ok(packet)
    }
}

impl Encode for SessionAck {
    fn frame_type(&self) -> FrameType {
        FrameType::SessionAck
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uint(key::CLIENT_ID, self.client_id)
            .uuid(key::SESSION_ID, &self.session_id)
            .uint(key::HEARTBEAT_MS, u64::from(self.heartbeat_ms))
            .uint(key::MAX_FRAME, u64::from(self.max_frame))
            .uint(key::MAX_BODY, self.max_body)
            .text(key::SOFTWARE, &self.software);
        if !self.name.is_empty() {
            fields.text(key::CLIENT_NAME, &self.name);
        }
        if !self.user.is_empty() {
            fields.text(key::USER, &self.user);
        }
        if self.features != 0 {
            fields.uint(key::FEATURES, self.features);
        }
    }
    fn fields_len_hint(&self) -> usize {
        84 + self.software.len() + text_len(&self.name) + text_len(&self.user)
    }
}

unit_packet! {
    /// A liveness probe. A HEARTBEAT without flag PONG must be answered by one with it.
    Heartbeat => Heartbeat
}

unit_packet! {
    /// Success, for requests that return nothing else.
    OkReply => Ok
}

/// A failure, answering the request whose id the frame carries (0: not tied to one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPacket {
    pub code: ErrorCode,
    pub message: Text,
}

impl ErrorPacket {
    pub fn new(code: ErrorCode, message: impl Into<Text>) -> Self {
        ErrorPacket {
            code,
            message: message.into(),
        }
    }

    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let (code, message) = code_and_text(frame)?;
        Ok(ErrorPacket {
            code: required(code, FrameType::Error, "error code")?,
            message,
        })
    }
}

impl Encode for ErrorPacket {
    fn frame_type(&self) -> FrameType {
        FrameType::Error
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uint(key::ERROR_CODE, u64::from(self.code.as_u16()))
            .text(key::MESSAGE, &self.message);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.message) + 4
    }
}

/// The sender is closing the session. `code` is NORMAL for a client saying goodbye.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub code: ErrorCode,
    pub reason: Text,
}

impl Disconnect {
    pub fn new(code: ErrorCode, reason: impl Into<Text>) -> Self {
        Disconnect {
            code,
            reason: reason.into(),
        }
    }

    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let (code, reason) = code_and_text(frame)?;
        Ok(Disconnect {
            code: code.unwrap_or(ErrorCode::Normal),
            reason,
        })
    }
}

impl Encode for Disconnect {
    fn frame_type(&self) -> FrameType {
        FrameType::Disconnect
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uint(key::ERROR_CODE, u64::from(self.code.as_u16()))
            .text(key::MESSAGE, &self.reason);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.reason) + 4
    }
}

fn code_and_text(frame: &Frame) -> Result<(Option<ErrorCode>, Text), ProtoError> {
    let mut code = None;
    let mut text = Text::default();
    for_each_field(&frame.headers, |field| {
        match field.key {
            key::ERROR_CODE => code = Some(ErrorCode::from_u16(field.uint_as()?)),
            key::MESSAGE => text = field.text()?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((code, text))
}
