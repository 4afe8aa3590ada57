//! [`Client`]: the handle to one connection, and the plumbing its methods share.
//!
//! A client is a handle to one connection, run by two background tasks: the dispatch
//! task (reads and routes every frame, see [`crate::dispatch`]) and the writer task
//! (coalesces and writes frames, see [`crate::writer`]). Handles are cheap to clone and
//! share that connection. Each method registers its request, queues its frame and awaits
//! its answer, within the configured request timeout.
//!
//! The methods are grouped by area, one `impl Client` per file: [`channels`],
//! [`publish`], [`groups`], [`relay`] (clients and direct bodies) and [`admin`]; this
//! file holds the connection's life (connect, close) and the one request helper they
//! all use ([`Client::request`]).
//!
//! Bodies larger than the server's `max_frame` are streamed (module `upload`), whether
//! they are read from a reader ([`crate::PublishBuilder::stream_from`]) or held in a
//! large [`crate::Payload`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_proto::codec::Outbound;
use switchboard_proto::packet::{Packet, features};
use switchboard_proto::{Flags, Frame, FrameType, Limits, ProtoError, Text};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::ClientConfig;
use crate::connection::{self, Session};
use crate::dispatch::{self, Dispatcher};
use crate::error::{CloseReason, ErrorDetail, Result};
use crate::requests::Pending;
use crate::send_queue::SendQueue;
use crate::send_queue::Write;
use crate::shared::{Shared, lock};
use crate::writer::{CLOSE_GRACE, Command, QueueError, Writer, queue_command};

mod admin;
mod channels;
mod groups;
mod publish;
mod relay;

pub use publish::{PendingAck, PublishBuilder, TryNoReply, WaitForRoom};

/// Shortest heartbeat interval used, whatever the configuration or server says: a zero
/// interval would make the writer spin.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

/// The server's size limits, from SESSION_ACK.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// let limits = client.session().limits;
/// let len = std::fs::metadata("video.mp4")?.len();
/// if len > limits.max_body {
///     println!("too large: the server takes at most {} bytes", limits.max_body);
/// } else if len > u64::from(limits.max_frame) {
///     println!("will be streamed in chunks");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest content of one frame, hence largest body sent in one piece; larger
    /// bodies are streamed.
    pub max_frame: u32,
    /// Largest message body the server accepts, streamed or not.
    pub max_body: u64,
}

/// What the server said about this session when it opened it: [`Client::session`].
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// let session = client.session();
/// println!(
///     "{} is client {} (session {}) on {}, heartbeat {:?}",
///     session.name, session.client_id, session.session_id, session.server_software, session.heartbeat,
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The id the server gave this client (what others relay to).
    pub client_id: u64,
    /// The id of this session.
    pub session_id: Uuid,
    /// The session name (also the member name in groups).
    pub name: String,
    /// The heartbeat interval in force.
    pub heartbeat: Duration,
    /// The server's size limits.
    pub limits: ServerLimits,
    /// The server's software and version, as it announced them.
    pub server_software: String,
    /// The user the session is authenticated as; `None` for an anonymous session.
    pub user: Option<String>,
}

/// A connection to a Switchboard server. Clone it freely: clones share the connection.
///
/// The connection stays open while any handle (a `Client`, a [`Subscription`](crate::Subscription), a feed or
/// a [`PendingAck`]) exists, or until [`Client::close`]. When the last handle is dropped
/// the writer says DISCONNECT and both tasks stop (within a short grace period if the
/// server has stopped reading).
///
/// ```no_run
/// use switchboard_client::{Client, ClientConfig, Payload};
///
/// # async fn demo() -> switchboard_client::Result<()> {
/// let client = Client::connect(ClientConfig::new("127.0.0.1:7420", "alice")).await?;
/// let worker = client.clone();
/// let task = tokio::spawn(async move {
///     worker.publish("jobs", Payload::text("from a task")).await
/// });
/// task.await.expect("the task ran to the end")?;
/// client.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    shared: Arc<Shared>,
    /// Where frames wait for the writer task, encoded already.
    queue: Arc<SendQueue>,
    session: SessionInfo,
    request_timeout: Duration,
    subscription_capacity: usize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The channel of the last publish: publishing to the same channel again shares its
    /// text instead of copying the name (an allocation, freed by the writer's thread).
    last_channel: Mutex<Text>,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        if self.shared.is_closed() {
            return;
        }
        self.shared.goodbye_sent.cancel();
        // Dropping cannot wait: if the queue is full, stop at once.
        if self.queue.is_full() || !self.queue.close(None) {
            self.shared.terminate(CloseReason::Client);
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.inner.session.client_id)
            .field("name", &self.inner.session.name)
            .field("session_id", &self.inner.session.session_id)
            .field("closed", &self.inner.shared.close_reason())
            .finish()
    }
}

impl Client {
    /// Connects, opens a session and starts the background tasks.
    ///
    /// Fails with an error of kind [`ErrorKind::Server`](crate::ErrorKind::Server) if the server refuses the session (bad
    /// credentials, wrong HMAC key, unsupported version).
    ///
    /// ```no_run
    /// # async fn demo() -> switchboard_client::Result<()> {
    /// use switchboard_client::{Client, ClientConfig};
    ///
    /// let client = Client::connect(ClientConfig::new("127.0.0.1:7420", "alice")).await?;
    /// println!("connected as client {}", client.session().client_id);
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let session = connection::open(&config).await?;
        Ok(Client::start(session, &config))
    }

    /// Opens a session over a byte stream the caller connected (an in-process pipe, a
    /// WebSocket adapted to bytes, a tunnel), with the rest of `config` as
    /// [`Client::connect`] uses it; its server address is not used.
    ///
    /// ```no_run
    /// # async fn demo(stream: tokio::io::DuplexStream) -> switchboard_client::Result<()> {
    /// use switchboard_client::{Client, ClientConfig};
    ///
    /// let client = Client::connect_over(stream, ClientConfig::new("", "alice")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_over<S>(stream: S, config: ClientConfig) -> Result<Client>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let session = connection::open_over(Box::new(reader), Box::new(writer), &config).await?;
        Ok(Client::start(session, &config))
    }

    /// Starts the background tasks of a session that completed its handshake.
    fn start(session: Session, config: &ClientConfig) -> Client {
        let Session {
            reader,
            writer,
            codec,
            ack,
            socket,
        } = session;
        let heartbeat = if ack.heartbeat_ms > 0 {
            Duration::from_millis(u64::from(ack.heartbeat_ms))
        } else {
            config.heartbeat()
        }
        .max(MIN_HEARTBEAT);
        let max_frame = if ack.max_frame > 0 {
            ack.max_frame
        } else {
            Limits::DEFAULT_MAX_CONTENT
        };
        let session = SessionInfo {
            client_id: ack.client_id,
            session_id: ack.session_id,
            // The server names an authenticated session after its user, and says so.
            name: if ack.name.is_empty() {
                config.name().to_owned()
            } else {
                ack.name.to_string()
            },
            user: (!ack.user.is_empty()).then(|| ack.user.to_string()),
            heartbeat,
            limits: ServerLimits {
                max_frame,
                max_body: if ack.max_body > 0 {
                    ack.max_body
                } else {
                    u64::from(max_frame)
                },
            },
            server_software: ack.software.to_string(),
        };

        let shared = Arc::new(Shared::new(config.feed_capacity()));
        let queue = Arc::new(SendQueue::new(codec, config.send_queue_capacity()));
        if ack.features & features::PUBLISH_BATCH != 0 {
            queue.allow_batches();
        }
        if let Some(socket) = socket {
            queue.share_socket(socket);
        }
        let writer = Writer::new(writer, queue.clone(), shared.clone(), heartbeat);
        let writer_task = tokio::spawn(writer.run());
        let reader_task = tokio::spawn(dispatch::run_reader(
            reader,
            Dispatcher::new(shared.clone()),
            heartbeat * 3,
        ));
        tracing::debug!(
            client_id = session.client_id,
            server = config.server(),
            "session open"
        );
        Client {
            inner: Arc::new(ClientInner {
                shared,
                queue,
                session,
                request_timeout: config.request_timeout(),
                subscription_capacity: config.subscription_capacity(),
                tasks: Mutex::new(vec![reader_task, writer_task]),
                last_channel: Mutex::new(Text::default()),
            }),
        }
    }

    /// What the server said about this session when it opened it: ids, name, heartbeat,
    /// size limits and software.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) {
    /// let session = client.session();
    /// println!("client {} on {}", session.client_id, session.server_software);
    /// println!("bodies up to {} bytes", session.limits.max_body);
    /// # }
    /// ```
    pub fn session(&self) -> &SessionInfo {
        &self.inner.session
    }

    /// The server's size limits: shorthand for `session().limits`.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) {
    /// println!("frames up to {} bytes", client.server_limits().max_frame);
    /// # }
    /// ```
    pub fn server_limits(&self) -> ServerLimits {
        self.inner.session.limits
    }

    /// The server's software and version: shorthand for `session().server_software`.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) {
    /// println!("connected to {}", client.server_software());
    /// # }
    /// ```
    pub fn server_software(&self) -> &str {
        &self.inner.session.server_software
    }

    /// Whether the connection has ended.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// if client.is_closed() {
    ///     println!("gone: {:?}", client.close_reason());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// Why the connection ended, once it has.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::CloseReason;
    ///
    /// if let Some(CloseReason::Disconnect { code, reason }) = client.close_reason() {
    ///     println!("the server said goodbye ({code}): {reason}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.shared.close_reason()
    }

    /// Messages the server reported skipped for this connection (slow consumer,
    /// drop-oldest channels).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// println!("{} messages skipped for this connection", client.skipped_messages());
    /// # Ok(()) }
    /// ```
    pub fn skipped_messages(&self) -> u64 {
        self.inner.shared.skipped()
    }

    /// The newest channels and groups whose history began a new epoch while this
    /// connection followed them (cluster mode, after the backplane lost messages), oldest
    /// first; at most [`crate::MAX_EPOCH_CHANGES`] are kept.
    pub fn epoch_changes(&self) -> Vec<crate::EpochChange> {
        self.inner.shared.epoch_changes()
    }

    /// Flushes, says DISCONNECT (NORMAL) and stops the background tasks. Every handle of
    /// this connection then fails with an error that
    /// [`is_closed`](crate::ClientError::is_closed).
    ///
    /// Returns what the flush found (failed publishes sent without reply); closing an
    /// already closed client is not an error.
    ///
    /// Streamed bodies still arriving are not waited for: one whose reader does not keep
    /// up fails (with [`std::io::ErrorKind::ConnectionAborted`]) rather than hold up the
    /// close.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// client.publish("logs", Payload::text("done")).no_reply().await?;
    /// // Reports the publish if it failed, then says goodbye.
    /// client.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<()> {
        if self.is_closed() {
            self.join_tasks().await;
            return Ok(());
        }
        self.inner.shared.close_started.cancel();
        let flushed = match self.flush().await {
            Err(error) if error.is_closed() => Ok(()),
            other => other,
        };
        self.inner.shared.goodbye_sent.cancel();
        let (done, written) = oneshot::channel();
        if self.inner.queue.close(Some(done)) {
            let _ = tokio::time::timeout(CLOSE_GRACE, written).await;
        }
        self.inner.shared.terminate(CloseReason::Client);
        self.join_tasks().await;
        flushed
    }

    /// Waits for the background tasks to finish (they were told to stop).
    async fn join_tasks(&self) {
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            if let Err(error) = task.await
                && error.is_panic()
            {
                tracing::error!(%error, "a client task panicked");
            }
        }
    }

    // ----- plumbing shared by the methods of every area -----

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.inner.request_timeout
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Sends a request that has one terminal answer and returns that answer's frame.
    pub(crate) async fn call(&self, packet: impl Into<Packet>) -> Result<Frame> {
        self.request(Pending::Reply, packet, "request").await
    }

    /// The one way a request is made: registers what waits for the answer, queues the
    /// frame under the request's id and waits for the answer, all within the request
    /// timeout. `pending` wraps the sender the dispatch task answers through.
    pub(crate) async fn request<T>(
        &self,
        pending: impl FnOnce(oneshot::Sender<Result<T>>) -> Pending,
        packet: impl Into<Packet>,
        what: &'static str,
    ) -> Result<T> {
        self.send_request(pending, packet).await?.answer(what).await
    }

    /// The first half of [`Client::request`]: the frame is queued when this returns, and
    /// the answer is awaited later (pipelining).
    pub(crate) async fn send_request<T>(
        &self,
        pending: impl FnOnce(oneshot::Sender<Result<T>>) -> Pending,
        packet: impl Into<Packet>,
    ) -> Result<InFlight<T>> {
        let deadline = self.deadline();
        let (done, answer) = oneshot::channel();
        let (request_id, alone) = {
            let mut requests = self.inner.shared.requests();
            let request_id = requests.register(pending(done))?;
            (request_id, requests.len() == 1)
        };
        let guard = RequestGuard::new(self, request_id);
        // A request alone in flight is most likely awaited before the next is sent: it
        // is written at once if it can be, rather than by the writer after a wake-up.
        // Pipelined requests stay queued and go out together.
        let write = if alone {
            Write::NowIfIdle
        } else {
            Write::Queued
        };
        let command = Command::Send(Outbound {
            request_id,
            flags: Flags::empty(),
            packet: packet.into(),
        });
        let queued = queue_command(
            &self.inner.shared,
            &self.inner.queue,
            command,
            write,
            deadline,
        )
        .await;
        queued.map_err(|error| self.queue_error(error))?;
        Ok(InFlight {
            guard,
            answer,
            deadline,
        })
    }

    /// Puts a command in the writer's queue, waiting for room until `deadline`.
    pub(crate) async fn send_command(&self, command: Command, deadline: Instant) -> Result<()> {
        let queued = queue_command(
            &self.inner.shared,
            &self.inner.queue,
            command,
            Write::Queued,
            deadline,
        )
        .await;
        queued.map_err(|error| self.queue_error(error))
    }

    /// The error for a frame that was not queued.
    pub(crate) fn queue_error(&self, error: QueueError) -> crate::ClientError {
        match error {
            QueueError::Closed => self.inner.shared.closed_error(),
            QueueError::TimedOut => ErrorDetail::Timeout {
                what: "queueing a frame",
                after: self.inner.request_timeout,
            }
            .into(),
        }
    }

    /// Waits for the dispatch task to answer a request.
    pub(crate) async fn await_answer<T>(
        &self,
        answer: oneshot::Receiver<Result<T>>,
        deadline: Instant,
        what: &'static str,
    ) -> Result<T> {
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.inner.shared.closed_error()),
            Err(_) => Err(ErrorDetail::Timeout {
                what,
                after: self.inner.request_timeout,
            }
            .into()),
        }
    }

    pub(crate) fn subscription_capacity(&self) -> usize {
        self.inner.subscription_capacity
    }
}

/// Parses an answer of the expected type.
pub(crate) fn expect<T>(
    reply: &Frame,
    expected: FrameType,
    parse: fn(&Frame) -> std::result::Result<T, ProtoError>,
) -> Result<T> {
    if reply.frame_type != expected {
        return Err(ErrorDetail::UnexpectedReply {
            expected: expected.name(),
            got: reply.frame_type,
        }
        .into());
    }
    Ok(parse(reply)?)
}

/// Checks that an answer is OK.
pub(crate) fn expect_ok(reply: &Frame) -> Result<()> {
    if reply.frame_type != FrameType::Ok {
        return Err(ErrorDetail::UnexpectedReply {
            expected: FrameType::Ok.name(),
            got: reply.frame_type,
        }
        .into());
    }
    Ok(())
}

/// Removes a request from the table if its caller stops waiting before the answer
/// (timeout, error, or the future being dropped), so the table holds only live waits.
struct RequestGuard {
    client: Client,
    request_id: u32,
    armed: bool,
}

impl RequestGuard {
    fn new(client: &Client, request_id: u32) -> Self {
        RequestGuard {
            client: client.clone(),
            request_id,
            armed: true,
        }
    }

    /// The answer arrived, so the dispatch task already removed the entry.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.armed {
            self.client.inner.shared.forget(self.request_id);
        }
    }
}

/// A request whose frame is queued; [`InFlight::answer`] waits for its answer.
pub(crate) struct InFlight<T> {
    guard: RequestGuard,
    answer: oneshot::Receiver<Result<T>>,
    deadline: Instant,
}

impl<T> InFlight<T> {
    /// The id the request was sent with.
    pub(crate) fn request_id(&self) -> u32 {
        self.guard.request_id
    }

    /// Waits for the dispatch task's answer until the request's deadline.
    pub(crate) async fn answer(self, what: &'static str) -> Result<T> {
        let InFlight {
            guard,
            answer,
            deadline,
        } = self;
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => {
                // The dispatch task removed the entry when it answered.
                guard.disarm();
                result
            }
            Ok(Err(_)) => Err(guard.client.shared().closed_error()),
            Err(_) => Err(ErrorDetail::Timeout {
                what,
                after: guard.client.request_timeout(),
            }
            .into()),
        }
    }
}
