//! Errors: [`ProtoError`] for everything that can go wrong while reading or writing frames,
//! and [`ErrorCode`], the stable machine-readable codes carried by ERROR and DISCONNECT
//! frames.

use crate::frame::FrameType;

/// Stable, machine-readable error codes carried on the wire.
///
/// The numbers never change meaning; new codes may be added, so a receiver must accept
/// codes it does not know ([`ErrorCode::Other`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The connection preface was not Switchboard's (wrong magic, or HTTP).
    BadPreface,
    /// The peer speaks a protocol version this side does not.
    UnsupportedVersion,
    /// A frame could not be decoded: bad sync bytes, bad CRC, truncated, malformed field.
    BadFrame,
    /// The HMAC tag was missing, unexpected or wrong.
    BadMac,
    /// The frame type is not known to this side.
    UnknownFrameType,
    /// A frame's header or content is over the negotiated limit.
    FrameTooLarge,
    /// A request arrived before SESSION_INIT, or SESSION_INIT arrived twice.
    SessionRequired,
    /// The credentials in SESSION_INIT were refused.
    AuthFailed,
    /// A required argument is missing or has an invalid value.
    InvalidArgument,
    /// The named channel, message, group or client does not exist.
    NotFound,
    /// The channel or group already exists with other options.
    AlreadyExists,
    /// A message body is over the size limit of the server or channel.
    TooLarge,
    /// A text message has more characters than its channel allows.
    TooManyCharacters,
    /// A relay named more receivers than allowed (255).
    TooManyReceivers,
    /// The caller is not allowed to do this (not a group member, not an admin).
    Forbidden,
    /// Publishing to an unknown channel while the server requires explicit creation.
    ChannelRequired,
    /// An embedding application's hook refused the operation.
    Rejected,
    /// The connection's outbound queue overflowed.
    SlowConsumer,
    /// The session missed its heartbeats.
    HeartbeatTimeout,
    /// The server is shutting down.
    ShuttingDown,
    /// A frame was not completed within the server's frame deadline from its first byte.
    FrameTimeout,
    /// The server is short of a resource shared by all connections (memory for frames
    /// being read): the frame is refused; trying again later may succeed.
    ServerBusy,
    /// A server-side limit (connections, subscriptions, streams) was reached.
    LimitReached,
    /// A rate limit was reached (requests, publishes or relays of a user, or new
    /// connections from one address): the message says when to retry ("retry in
    /// 120 ms"). Nothing was done; the same request may succeed after that delay.
    RateLimited,
    /// A streamed body was broken off or its digest did not match.
    StreamAborted,
    /// The data volume is too full to take the write (under the disk reserve, or a
    /// byte budget for stored bodies is used up); it may succeed once space is freed.
    StorageFull,
    /// The store takes no durable writes for now (it failed and is recovering, started
    /// read-only, or lost its data directory); reads still work.
    StorageUnavailable,
    /// Cluster mode: the shared backplane (Redis) did not answer within the node's
    /// bound, or is not connected. Nothing is known to be done (a publish may or may not
    /// have been stored); retrying later may succeed.
    BackplaneUnavailable,
    /// A streamed body kept by another node of a cluster cannot be fetched (that node is
    /// gone or its link broke): the message exists but its body cannot be sent.
    BodyUnavailable,
    /// The server failed in a way that is not the caller's fault.
    Internal,
    /// The client closed the session normally.
    Normal,
    /// A code this implementation does not know.
    Other(u16),
}

impl ErrorCode {
    /// The number carried on the wire.
    pub fn as_u16(self) -> u16 {
        match self {
            ErrorCode::Normal => 0,
            ErrorCode::BadPreface => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::BadFrame => 3,
            ErrorCode::BadMac => 4,
            ErrorCode::UnknownFrameType => 5,
            ErrorCode::FrameTooLarge => 6,
            ErrorCode::SessionRequired => 7,
            ErrorCode::AuthFailed => 8,
            ErrorCode::HeartbeatTimeout => 9,
            ErrorCode::SlowConsumer => 10,
            ErrorCode::ShuttingDown => 11,
            ErrorCode::FrameTimeout => 12,
            ErrorCode::ServerBusy => 13,
            ErrorCode::InvalidArgument => 100,
            ErrorCode::NotFound => 101,
            ErrorCode::AlreadyExists => 102,
            ErrorCode::TooLarge => 103,
            ErrorCode::TooManyCharacters => 104,
            ErrorCode::TooManyReceivers => 105,
            ErrorCode::Forbidden => 106,
            ErrorCode::ChannelRequired => 107,
            ErrorCode::Rejected => 108,
            ErrorCode::LimitReached => 109,
            ErrorCode::StreamAborted => 110,
            ErrorCode::RateLimited => 111,
            ErrorCode::StorageFull => 120,
            ErrorCode::StorageUnavailable => 121,
            ErrorCode::BackplaneUnavailable => 122,
            ErrorCode::BodyUnavailable => 123,
            ErrorCode::Internal => 500,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a number read from the wire; unknown numbers are kept as `Other`.
    pub fn from_u16(code: u16) -> Self {
        match code {
            0 => ErrorCode::Normal,
            1 => ErrorCode::BadPreface,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::BadFrame,
            4 => ErrorCode::BadMac,
            5 => ErrorCode::UnknownFrameType,
            6 => ErrorCode::FrameTooLarge,
            7 => ErrorCode::SessionRequired,
            8 => ErrorCode::AuthFailed,
            9 => ErrorCode::HeartbeatTimeout,
            10 => ErrorCode::SlowConsumer,
            11 => ErrorCode::ShuttingDown,
            12 => ErrorCode::FrameTimeout,
            13 => ErrorCode::ServerBusy,
            100 => ErrorCode::InvalidArgument,
            101 => ErrorCode::NotFound,
            102 => ErrorCode::AlreadyExists,
            103 => ErrorCode::TooLarge,
            104 => ErrorCode::TooManyCharacters,
            105 => ErrorCode::TooManyReceivers,
            106 => ErrorCode::Forbidden,
            107 => ErrorCode::ChannelRequired,
            108 => ErrorCode::Rejected,
            109 => ErrorCode::LimitReached,
            110 => ErrorCode::StreamAborted,
            111 => ErrorCode::RateLimited,
            120 => ErrorCode::StorageFull,
            121 => ErrorCode::StorageUnavailable,
            122 => ErrorCode::BackplaneUnavailable,
            123 => ErrorCode::BodyUnavailable,
            500 => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }

    /// A stable upper-case name, as printed by tools and written in PROTOCOL.md.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Normal => "NORMAL",
            ErrorCode::BadPreface => "BAD_PREFACE",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::BadMac => "BAD_MAC",
            ErrorCode::UnknownFrameType => "UNKNOWN_FRAME_TYPE",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::SessionRequired => "SESSION_REQUIRED",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::HeartbeatTimeout => "HEARTBEAT_TIMEOUT",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::FrameTimeout => "FRAME_TIMEOUT",
            ErrorCode::ServerBusy => "SERVER_BUSY",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::TooManyCharacters => "TOO_MANY_CHARACTERS",
            ErrorCode::TooManyReceivers => "TOO_MANY_RECEIVERS",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::ChannelRequired => "CHANNEL_REQUIRED",
            ErrorCode::Rejected => "REJECTED",
            ErrorCode::LimitReached => "LIMIT_REACHED",
            ErrorCode::StreamAborted => "STREAM_ABORTED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::StorageFull => "STORAGE_FULL",
            ErrorCode::StorageUnavailable => "STORAGE_UNAVAILABLE",
            ErrorCode::BackplaneUnavailable => "BACKPLANE_UNAVAILABLE",
            ErrorCode::BodyUnavailable => "BODY_UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Other(_) => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::Other(code) => write!(f, "UNKNOWN({code})"),
            known => f.write_str(known.name()),
        }
    }
}

/// Everything that can go wrong while reading or writing protocol bytes.
///
/// Every variant maps to an [`ErrorCode`] with [`ProtoError::code`], which is what a
/// server sends in its ERROR frame before closing a connection that sent bad bytes.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("not a Switchboard client: the connection did not start with the Switchboard preface")]
    BadPreface,
    #[error("this port speaks the Switchboard binary protocol, not HTTP; use a Switchboard client")]
    LooksLikeHttp,
    #[error("unsupported protocol version {found} (this side speaks {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("bad frame sync bytes {found:#06x}: the stream is out of step or not Switchboard")]
    BadSync { found: u16 },
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    #[error("frame header block of {len} bytes is over the limit of {max}")]
    HeaderTooLarge { len: usize, max: usize },
    #[error("frame content of {len} bytes is over the limit of {max}")]
    ContentTooLarge { len: u64, max: u64 },
    #[error("header CRC32C mismatch (frame says {expected:#010x}, bytes give {actual:#010x})")]
    HeaderCrcMismatch { expected: u32, actual: u32 },
    #[error("content CRC32C mismatch (frame says {expected:#010x}, bytes give {actual:#010x})")]
    ContentCrcMismatch { expected: u32, actual: u32 },
    #[error("frame has no HMAC tag but the session requires one")]
    MissingMac,
    #[error("frame carries an HMAC tag but the session negotiated none")]
    UnexpectedMac,
    #[error("HMAC tag does not match: wrong key or altered frame")]
    BadMac,
    #[error("stream ended inside a frame ({have} of {needed} bytes)")]
    Truncated { needed: usize, have: usize },
    #[error("malformed header field {key:#04x}: {reason}")]
    MalformedField { key: u8, reason: &'static str },
    #[error("{frame} frame is missing its {field} field")]
    MissingField {
        frame: FrameType,
        field: &'static str,
    },
    #[error("{frame} frame has an invalid {field}: {reason}")]
    InvalidField {
        frame: FrameType,
        field: &'static str,
        reason: String,
    },
    #[error("unexpected {0} frame here")]
    UnexpectedFrame(FrameType),
    #[error("malformed batch of bodies: {0}")]
    MalformedBatch(&'static str),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtoError {
    /// The wire code a peer should receive for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::BadPreface | ProtoError::LooksLikeHttp => ErrorCode::BadPreface,
            ProtoError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ProtoError::UnknownFrameType(_) => ErrorCode::UnknownFrameType,
            ProtoError::HeaderTooLarge { .. } | ProtoError::ContentTooLarge { .. } => {
                ErrorCode::FrameTooLarge
            }
            ProtoError::MissingMac | ProtoError::UnexpectedMac | ProtoError::BadMac => {
                ErrorCode::BadMac
            }
            ProtoError::MissingField { .. } | ProtoError::InvalidField { .. } => {
                ErrorCode::InvalidArgument
            }
            ProtoError::BadSync { .. }
            | ProtoError::HeaderCrcMismatch { .. }
            | ProtoError::ContentCrcMismatch { .. }
            | ProtoError::Truncated { .. }
            | ProtoError::MalformedField { .. }
            | ProtoError::MalformedBatch(_)
            | ProtoError::UnexpectedFrame(_) => ErrorCode::BadFrame,
            ProtoError::Io(_) => ErrorCode::Internal,
        }
    }

    /// Whether the stream can no longer be trusted to be in step after this error.
    ///
    /// Framing errors (sync, CRC, MAC, lengths) leave the reader at an unknown position;
    /// a well-framed packet with a bad field does not, and the connection can go on.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            ProtoError::MissingField { .. }
                | ProtoError::InvalidField { .. }
                | ProtoError::MalformedField { .. }
                | ProtoError::MalformedBatch(_)
                | ProtoError::UnexpectedFrame(_)
        )
    }
}
