//! Everything a client call can fail with: [`ClientError`] (one opaque type, asked what
//! it is through [`ErrorKind`] and predicates), and [`CloseReason`], why a connection
//! ended, which every call still waiting at that moment reports.

use std::time::Duration;

use switchboard_proto::subject::NameError;
use switchboard_proto::{ErrorCode, FrameType, ProtoError};

/// The result type of every fallible client call.
///
/// ```
/// use switchboard_client::{Payload, Result};
///
/// fn reading(celsius: f64) -> Result<Payload> {
///     Ok(Payload::json(&celsius)?.with_header("unit", "celsius"))
/// }
///
/// assert_eq!(reading(21.5)?.headers.len(), 1);
/// # Ok::<(), switchboard_client::ClientError>(())
/// ```
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a connection ended.
///
/// Kept as plain data (no I/O error inside) so that one reason can be handed to every
/// request, subscription and feed that was still open when the connection went away.
///
/// ```
/// use switchboard_client::{CloseReason, ErrorCode};
///
/// fn worth_reconnecting(reason: &CloseReason) -> bool {
///     match reason {
///         // This client hung up, or the server asked it to go away for good.
///         CloseReason::Client => false,
///         CloseReason::Disconnect { code, .. } => *code != ErrorCode::AuthFailed,
///         // A network hiccup, a restart, a missed heartbeat: try again.
///         _ => true,
///     }
/// }
///
/// assert!(worth_reconnecting(&CloseReason::HeartbeatTimeout));
/// assert!(!worth_reconnecting(&CloseReason::Client));
/// ```
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
    ///
    /// ```
    /// use switchboard_client::{CloseReason, ErrorCode};
    ///
    /// let reason = CloseReason::Disconnect {
    ///     code: ErrorCode::ShuttingDown,
    ///     reason: "restarting for an upgrade".into(),
    /// };
    /// assert_eq!(reason.code(), Some(ErrorCode::ShuttingDown));
    /// assert_eq!(CloseReason::Eof.code(), None);
    /// ```
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

/// Why a payload could not be encoded or decoded: the
/// [`source`](std::error::Error::source) of a [`ClientError`] of kind
/// [`ErrorKind::Payload`].
///
/// ```
/// use std::collections::HashMap;
/// use std::error::Error as _;
/// use switchboard_client::{ErrorKind, Payload, PayloadError};
///
/// // JSON object keys must be strings; these are pairs.
/// let board: HashMap<(u8, u8), &str> = HashMap::from([((0, 0), "rook")]);
/// let error = Payload::json(&board).unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::Payload);
/// let cause = error.source().and_then(|cause| cause.downcast_ref::<PayloadError>());
/// assert!(matches!(cause, Some(PayloadError::Json(_))));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The body is not the JSON of the type asked for.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The value could not be encoded as MessagePack.
    #[error("MessagePack encoding: {0}")]
    MsgpackEncode(#[from] rmp_serde::encode::Error),
    /// The body is not the MessagePack of the type asked for.
    #[error("MessagePack decoding: {0}")]
    MsgpackDecode(#[from] rmp_serde::decode::Error),
    /// The content type names neither JSON nor MessagePack.
    #[error("content type {0:?} is neither JSON nor MessagePack")]
    UnsupportedContentType(String),
}

/// Everything a client call can fail with: one error type for every call, inspected
/// through [`ClientError::kind`] and a few questions ([`ClientError::is_closed`],
/// [`ClientError::is_timeout`], [`ClientError::code`]).
///
/// Most callers only decide between retrying, reconnecting and reporting; one type keeps
/// every signature a plain [`Result`], and keeping the details private lets them grow
/// without breaking callers. Its [`Display`](std::fmt::Display) says everything there is
/// to say, and [`std::error::Error::source`] gives the underlying I/O, protocol or
/// payload error.
///
/// ```
/// use switchboard_client::{ClientError, ErrorCode, ErrorKind};
///
/// fn advice(error: &ClientError) -> &'static str {
///     if error.is_closed() {
///         "reconnect"
///     } else if error.is_timeout() {
///         "try again later"
///     } else if error.code() == Some(ErrorCode::NotFound) {
///         "create it first"
///     } else if error.kind() == ErrorKind::TooLarge {
///         "send less"
///     } else {
///         "report it"
///     }
/// }
/// ```
pub struct ClientError {
    // Boxed: errors are rare, and a small error keeps every `Result` small.
    detail: Box<ErrorDetail>,
}

/// What kind of failure a [`ClientError`] is.
///
/// ```
/// use switchboard_client::{Client, ClientConfig, ErrorKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A server address needs a port: refused before anything is sent.
/// let error = Client::connect(ClientConfig::new("localhost", "alice")).await.unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::InvalidArgument);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Connecting, reading or writing failed.
    Io,
    /// The server sent something that is not valid protocol.
    Protocol,
    /// The server refused the request with ERROR; [`ClientError::code`] says why.
    Server,
    /// The connection is gone; [`ClientError::close_reason`] says why.
    Closed,
    /// No answer within the configured time.
    Timeout,
    /// A typed payload could not be encoded or decoded.
    Payload,
    /// A name, pattern, address or other argument was refused before anything was sent.
    InvalidArgument,
    /// A body is over the server's limit for one frame or one message.
    TooLarge,
    /// The reader of a streamed publish had fewer or more bytes than announced; the
    /// stream was aborted.
    BodyLength,
    /// The server answered with a frame of the wrong type.
    UnexpectedReply,
    /// The server ended the subscription, or deleted the channel it named.
    SubscriptionClosed,
    /// The server's permissions, reloaded, no longer allow the subscription; subscribing
    /// again is refused too until they do.
    SubscriptionRevoked,
    /// The group feed or the direct feed is already held by another handle.
    FeedTaken,
    /// Publishes sent without reply failed since the last flush; [`ClientError::code`]
    /// is the first failure's.
    NoReplyFailures,
    /// A message list held a streamed body too large to buffer before the list's end;
    /// fetch such messages one at a time.
    StreamedBodyBeforeEnd,
}

impl ClientError {
    /// What kind of failure this is.
    ///
    /// ```
    /// use switchboard_client::{ErrorKind, Payload};
    ///
    /// let error = Payload::json(&std::collections::HashMap::from([((1, 2), 3)])).unwrap_err();
    /// match error.kind() {
    ///     ErrorKind::Payload => println!("cannot encode that: {error}"),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match &*self.detail {
            ErrorDetail::Io(_) | ErrorDetail::Tls(_) => ErrorKind::Io,
            ErrorDetail::Protocol(_) | ErrorDetail::ListingStalled => ErrorKind::Protocol,
            ErrorDetail::Server { .. } => ErrorKind::Server,
            ErrorDetail::ConnectionClosed { .. } => ErrorKind::Closed,
            ErrorDetail::Timeout { .. } => ErrorKind::Timeout,
            ErrorDetail::Payload(_) => ErrorKind::Payload,
            ErrorDetail::InvalidArgument(_) | ErrorDetail::InvalidAddress(_) => {
                ErrorKind::InvalidArgument
            }
            ErrorDetail::TooLarge { .. } => ErrorKind::TooLarge,
            ErrorDetail::BodyTooShort { .. } | ErrorDetail::BodyTooLong { .. } => {
                ErrorKind::BodyLength
            }
            ErrorDetail::UnexpectedReply { .. } => ErrorKind::UnexpectedReply,
            ErrorDetail::SubscriptionClosed { .. } | ErrorDetail::ChannelDeleted { .. } => {
                ErrorKind::SubscriptionClosed
            }
            ErrorDetail::SubscriptionRevoked { .. } => ErrorKind::SubscriptionRevoked,
            ErrorDetail::FeedTaken(_) => ErrorKind::FeedTaken,
            ErrorDetail::NoReplyFailures { .. } => ErrorKind::NoReplyFailures,
            ErrorDetail::StreamedBodyBeforeEnd { .. } => ErrorKind::StreamedBodyBeforeEnd,
        }
    }

    /// The wire code, for errors that carry one (a server's ERROR or DISCONNECT, the
    /// first of the no-reply failures).
    ///
    /// ```
    /// use switchboard_client::{ClientError, ErrorCode};
    ///
    /// /// Whether the channel has to be created before trying again.
    /// fn is_missing(error: &ClientError) -> bool {
    ///     error.code() == Some(ErrorCode::NotFound)
    /// }
    ///
    /// // Errors raised on this side carry no wire code.
    /// let error = ClientError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    /// assert_eq!(error.code(), None);
    /// assert!(!is_missing(&error));
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match &*self.detail {
            ErrorDetail::Server { code, .. } => Some(*code),
            ErrorDetail::ConnectionClosed { reason } => reason.code(),
            ErrorDetail::NoReplyFailures { first, .. } => first.code(),
            _ => None,
        }
    }

    /// Whether the connection is gone (every later call on it will fail too).
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{Shutdown, TcpListener};
    /// use switchboard_client::{Client, ClientConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// // A peer that hangs up at once.
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let address = listener.local_addr()?.to_string();
    /// let peer = std::thread::spawn(move || -> std::io::Result<()> {
    ///     let (mut socket, _) = listener.accept()?;
    ///     socket.shutdown(Shutdown::Write)?;
    ///     socket.read_to_end(&mut Vec::new())?;
    ///     Ok(())
    /// });
    ///
    /// let error = Client::connect(ClientConfig::new(address, "alice")).await.unwrap_err();
    /// assert!(error.is_closed());
    /// # peer.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(*self.detail, ErrorDetail::ConnectionClosed { .. })
    }

    /// Why the connection ended, for an error saying it is gone.
    ///
    /// ```
    /// use switchboard_client::{Client, ClientConfig, CloseReason};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let address = listener.local_addr()?.to_string();
    /// # let peer = std::thread::spawn(move || -> std::io::Result<()> {
    /// #     let (mut socket, _) = listener.accept()?;
    /// #     socket.shutdown(std::net::Shutdown::Write)?;
    /// #     std::io::Read::read_to_end(&mut socket, &mut Vec::new())?;
    /// #     Ok(())
    /// # });
    /// // `address` is a peer that closes the connection without a word.
    /// let error = Client::connect(ClientConfig::new(address, "alice")).await.unwrap_err();
    /// match error.close_reason() {
    ///     Some(CloseReason::Disconnect { code, reason }) => println!("sent away ({code}): {reason}"),
    ///     Some(reason) => println!("connection gone: {reason}"),
    ///     None => println!("failed: {error}"),
    /// }
    /// assert_eq!(error.close_reason(), Some(&CloseReason::Eof));
    /// # peer.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match &*self.detail {
            ErrorDetail::ConnectionClosed { reason } => Some(reason),
            _ => None,
        }
    }

    /// Whether an answer (or room in the send queue) did not come in time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::{Client, ClientConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// // Something listens on this port, but never answers.
    /// let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let config = ClientConfig::new(silent.local_addr()?.to_string(), "alice")
    ///     .with_request_timeout(Duration::from_millis(100));
    /// let error = Client::connect(config).await.unwrap_err();
    /// assert!(error.is_timeout());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(*self.detail, ErrorDetail::Timeout { .. })
    }

    /// What went wrong, for matching inside the crate.
    pub(crate) fn detail(&self) -> &ErrorDetail {
        &self.detail
    }

    pub(crate) fn closed(reason: CloseReason) -> Self {
        ErrorDetail::ConnectionClosed { reason }.into()
    }

    pub(crate) fn server(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorDetail::Server {
            code,
            message: message.into(),
        }
        .into()
    }
}

impl std::fmt::Debug for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.detail, f)
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.detail, f)
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.detail)
    }
}

impl From<ErrorDetail> for ClientError {
    fn from(detail: ErrorDetail) -> Self {
        ClientError {
            detail: Box::new(detail),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        ErrorDetail::Io(error).into()
    }
}

impl From<ProtoError> for ClientError {
    fn from(error: ProtoError) -> Self {
        ErrorDetail::Protocol(error).into()
    }
}

impl From<PayloadError> for ClientError {
    fn from(error: PayloadError) -> Self {
        ErrorDetail::Payload(error).into()
    }
}

/// Everything a client call can fail with, in detail (inside the crate; callers see
/// [`ClientError`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ErrorDetail {
    /// Connecting, reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// A TLS handshake failed, or the server refused the TLS session (its reason in words).
    #[error("{0}")]
    Tls(String),
    /// The server sent something that is not valid protocol.
    #[error("protocol error: {0}")]
    Protocol(#[source] ProtoError),
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
    Payload(#[source] PayloadError),
    /// A channel name, pattern or other argument was refused before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A body is over the server's limit for one frame or one message.
    #[error("body of {len} bytes is over the server's limit of {max}")]
    TooLarge { len: u64, max: u64 },
    /// The server sent a listing page that does not advance (empty, or the same cursor
    /// again) while saying that more follows.
    #[error("the server's listing did not advance past its cursor")]
    ListingStalled,
    /// The server answered with a frame of the wrong type.
    #[error("expected {expected} in answer, got {got}")]
    UnexpectedReply {
        expected: &'static str,
        got: FrameType,
    },
    /// The server ended this subscription (EVENT SubscriptionClosed).
    #[error("the server closed subscription {subscription_id}")]
    SubscriptionClosed { subscription_id: u64 },
    /// The server's permissions, reloaded, no longer allow this subscription's pattern
    /// (EVENT SubscriptionRevoked).
    #[error(
        "subscription {subscription_id} to {pattern} was revoked: the server's permissions no longer allow it"
    )]
    SubscriptionRevoked {
        subscription_id: u64,
        pattern: String,
    },
    /// The channel this subscription named was deleted (EVENT ChannelDeleted).
    #[error("channel {channel} was deleted")]
    ChannelDeleted { channel: String },
    /// The group feed or the direct feed is already held by another handle.
    #[error("the {0} feed is already taken; drop the other handle first")]
    FeedTaken(&'static str),
    /// Publishes sent without reply failed since the last flush.
    #[error("{count} publish(es) sent without reply failed; first: {first}")]
    NoReplyFailures { count: u64, first: ClientError },
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

impl From<NameError> for ClientError {
    fn from(error: NameError) -> Self {
        ErrorDetail::InvalidArgument(error.to_string()).into()
    }
}
