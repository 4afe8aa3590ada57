//! What can go wrong talking to the backplane, and how it reaches a client.

use std::time::Duration;

use switchboard_proto::ErrorCode;
use switchboard_server::Refusal;

/// A backplane operation that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// No connection to Redis right now (connecting, reconnecting, or refused by the
    /// handshake); the operation was not attempted.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    /// The operation was sent but not answered within the node's bound: whether it took
    /// effect is not known.
    #[error("backplane did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection broke during the operation.
    #[error("backplane failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// A reply that does not have the shape the scripts promise.
    #[error("backplane reply not understood: {0}")]
    Reply(String),
}

impl BackplaneError {
    /// The refusal a client gets: every backplane failure is BACKPLANE_UNAVAILABLE, with
    /// a message saying whether the operation may have taken effect.
    pub fn refusal(&self) -> Refusal {
        Refusal::new(ErrorCode::BackplaneUnavailable, self.to_string())
    }

    /// Whether the connection that gave this error should be dropped and made again.
    pub fn breaks_connection(&self) -> bool {
        match self {
            BackplaneError::Timeout(_) => true,
            BackplaneError::Redis(error) => {
                error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_unrecoverable_error()
                    || matches!(
                        error.kind(),
                        redis::ErrorKind::Server(
                            redis::ServerErrorKind::ReadOnly
                                | redis::ServerErrorKind::MasterDown
                                | redis::ServerErrorKind::BusyLoading
                        )
                    )
            }
            BackplaneError::Unavailable(_) | BackplaneError::Reply(_) => false,
        }
    }
}
