//! Everything a client call can fail with: [`ClientError`], and [`CloseReason`], why a
//! connection ended, which every call still waiting at that moment reports.

use std::time::Duration;

use switchboard_proto::subject::NameError;
use switchboard_proto::{ErrorCode, FrameType, ProtoError};

/// The result type of every fallible client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a connection ended.
///
/// Kept as plain data (no I/O error inside) so that one reason can be handed to every
/// request, subscription and feed that was still open when the connection went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// This client closed the connection: [`crate::Client::close`], or the last handle
    /// was dropped.
    Client,
    /// The server sent DISCONNECT.
    Disconnect {
        /// The wire code (NORMAL, SHUTTING_DOWN, SLOW_CONSUMER, ...).
        code: ErrorCode,
        /// The server's explanation.
        reason: String,
    },
    /// The server sent an ERROR that answered no request, then closed the connection.
    ServerError {
        /// The wire code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server closed the connection without saying why.
    Eof,
    /// Nothing arrived from the server for three heartbeat intervals.
    HeartbeatTimeout,
    /// Reading or writing the socket failed.
    Io(String),
    /// The server sent bytes that are not valid protocol; the stream cannot be trusted.
    Protocol(String),
}

impl CloseReason {
    /// The wire code the server gave, if it gave one (DISCONNECT or a final ERROR).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CloseReason::Disconnect { code, .. } | CloseReason::ServerError { code, .. } => {
                Some(*code)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Client => f.write_str("closed by this client"),
            CloseReason::Disconnect { code, reason } if reason.is_empty() => {
                write!(f, "server disconnected ({code})")
            }
            CloseReason::Disconnect { code, reason } => {
                write!(f, "server disconnected ({code}): {reason}")
            }
            CloseReason::ServerError { code, message } => {
                write!(f, "server error {code}: {message}")
            }
            CloseReason::Eof => f.write_str("server closed the connection"),
            CloseReason::HeartbeatTimeout => {
                f.write_str("no sign of life from the server for three heartbeat intervals")
            }
            CloseReason::Io(error) => write!(f, "I/O error: {error}"),
            CloseReason::Protocol(error) => write!(f, "protocol error: {error}"),
        }
    }
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("MessagePack encoding: {0}")]
    MsgpackEncode(#[from] rmp_serde::encode::Error),
    #[error("MessagePack decoding: {0}")]
    MsgpackDecode(#[from] rmp_serde::decode::Error),
    #[error("content type {0:?} is neither JSON nor MessagePack")]
    UnsupportedContentType(String),
}

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not valid protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtoError),
    /// The server answered the request with ERROR.
    #[error("server error {code}: {message}")]
    Server { code: ErrorCode, message: String },
    /// The connection is gone; `reason` says why (including the server's DISCONNECT).
    #[error("connection closed: {reason}")]
    ConnectionClosed { reason: CloseReason },
    /// No answer within the configured time.
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// A typed payload could not be encoded or decoded.
    #[error("payload: {0}")]
    Payload(#[from] PayloadError),
    /// A channel name, pattern or other argument was refused before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A body is over the server's limit for one frame or one message.
    #[error("body of {len} bytes is over the server's limit of {max}")]
    TooLarge { len: u64, max: u64 },
    /// The server answered with a frame of the wrong type.
    #[error("expected {expected} in answer, got {got}")]
    UnexpectedReply {
        expected: &'static str,
        got: FrameType,
    },
    /// The server ended this subscription (EVENT SubscriptionClosed).
    #[error("the server closed subscription {subscription_id}")]
    SubscriptionClosed { subscription_id: u64 },
    /// The group feed or the direct feed is already held by another handle.
    #[error("the {0} feed is already taken; drop the other handle first")]
    FeedTaken(&'static str),
    /// Publishes sent without reply failed since the last flush.
    #[error("{count} publish(es) sent without reply failed; first: {first}")]
    NoReplyFailures { count: u64, first: Box<ClientError> },
    /// The server address is not `HOST:PORT` or `unix:/path`.
    #[error("invalid server address {0:?}")]
    InvalidAddress(String),
    /// The reader of a streamed publish ended before the length announced; the stream
    /// was aborted.
    #[error("the body ended after {got} of the {expected} bytes announced")]
    BodyTooShort { expected: u64, got: u64 },
    /// The reader of a streamed publish had more than the length announced; the stream
    /// was aborted.
    #[error("the body is longer than the {expected} bytes announced")]
    BodyTooLong { expected: u64 },
    /// A message list ([`crate::Client::get_messages`] and the like) is handed over only
    /// when it is complete, but the server sent more of a streamed body before that than
    /// the client buffers ([`crate::BODY_BUFFER_BYTES`]). Fetch such messages one at a
    /// time ([`crate::Client::get_message`]) or through a subscription's replay.
    #[error(
        "the server sent a streamed body of {total_len} bytes before the end of the message list; \
         fetch large messages one at a time"
    )]
    StreamedBodyBeforeEnd { total_len: u64 },
}

impl ClientError {
    /// The wire code, for errors that carry one (server ERROR, DISCONNECT, no-reply
    /// failures).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            ClientError::ConnectionClosed { reason } => reason.code(),
            ClientError::NoReplyFailures { first, .. } => first.code(),
            _ => None,
        }
    }

    /// Whether this error means the connection is gone (every later call will fail too).
    pub fn is_connection_closed(&self) -> bool {
        matches!(self, ClientError::ConnectionClosed { .. })
    }

    pub(crate) fn closed(reason: CloseReason) -> Self {
        ClientError::ConnectionClosed { reason }
    }

    pub(crate) fn server(code: ErrorCode, message: impl Into<String>) -> Self {
        ClientError::Server {
            code,
            message: message.into(),
        }
    }
}

impl From<NameError> for ClientError {
    fn from(error: NameError) -> Self {
        ClientError::InvalidArgument(error.to_string())
    }
}
