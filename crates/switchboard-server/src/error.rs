//! Errors: [`ServerError`] for starting and running the server, and [`Refusal`], the
//! answer a request gets when it cannot be served.

use switchboard_proto::ErrorCode;
use switchboard_proto::packet::ErrorPacket;

/// Why the server could not start or stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("no listener configured: give a TCP or TLS address or a Unix socket path")]
    NoListener,
    #[error("Unix sockets are not available on this platform")]
    UnixUnsupported,
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Config(#[from] crate::security::ReloadError),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// A request refused with a wire error code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal::new(ErrorCode::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Refusal::new(ErrorCode::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Refusal::new(ErrorCode::Forbidden, message)
    }

    pub fn to_packet(&self) -> ErrorPacket {
        ErrorPacket::new(self.code, self.message.as_str())
    }
}

impl From<switchboard_proto::subject::NameError> for Refusal {
    fn from(error: switchboard_proto::subject::NameError) -> Self {
        Refusal::invalid(error.to_string())
    }
}
