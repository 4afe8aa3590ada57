//! [`Client`]: the API, one method per operation of the protocol.
//!
//! A client is a handle to one connection, run by two background tasks: the dispatch
//! task (reads and routes every frame, see [`crate::dispatch`]) and the writer task
//! (coalesces and writes frames, see [`crate::writer`]). Handles are cheap to clone and
//! share that connection. Each method registers its request, queues its frame and awaits
//! its answer, within the configured request timeout.
//!
//! Bodies larger than the server's `max_frame` are streamed (module `upload`):
//! [`Client::publish_stream`] reads one from an [`AsyncRead`] of any size, and
//! [`Client::publish`] streams a large [`Payload`] by itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use switchboard_proto::codec::Outbound;
use switchboard_proto::packet::{
    ChannelInfo, ChannelList, ChannelOptions, ClientInfo, ClientList, CreateChannel, CreateGroup,
    GetMessage, GetMessages, GroupInfo, GroupList, GroupMembers, Identify, Identity, JoinGroup,
    LeaveGroup, ListChannels, ListClients, ListGroups, MAX_RECEIVERS, MemberInfo, MemberList,
    Packet, Publish, PublishAck, Relay, RelayOutcome, RelayResult, Replay, Scope, Since, Stats,
    StatsReply, Stop, Subscribe,
};
use switchboard_proto::subject::Pattern;
use switchboard_proto::{ErrorCode, Flags, Frame, FrameType, Limits, ProtoError, Text};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::ClientConfig;
use crate::connection::{self, Session};
use crate::dispatch::{self, Dispatcher};
use crate::error::{ClientError, CloseReason, Result};
use crate::feeds::{DirectFeed, GroupFeed};
use crate::payload::{Payload, ReceivedMessage};
use crate::requests::{Pending, PendingSubscription};
use crate::shared::{Shared, lock};
use crate::subscription::{SubscribeBuilder, Subscription, SubscriptionState};
use crate::upload::UploadHead;
use crate::writer::{CLOSE_GRACE, Command, Writer};

/// Shortest heartbeat interval used, whatever the configuration or server says: a zero
/// interval would make the writer spin.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

/// The server's size limits, from SESSION_ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest content of one frame, hence largest body sent in one piece; larger
    /// bodies are streamed.
    pub max_frame: u32,
    /// Largest message body the server accepts, streamed or not.
    pub max_body: u64,
}

/// What SESSION_ACK told about this session.
#[derive(Debug, Clone)]
struct SessionInfo {
    client_id: u64,
    session_id: Uuid,
    name: String,
    heartbeat: Duration,
    limits: ServerLimits,
    server_software: String,
}

/// A connection to a Switchboard server. Clone it freely: clones share the connection.
///
/// The connection stays open while any handle (a `Client`, a [`Subscription`], a feed or
/// a [`PendingAck`]) exists, or until [`Client::close`]. When the last handle is dropped
/// the writer says DISCONNECT and both tasks stop (within a short grace period if the
/// server has stopped reading).
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
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
        self.shared.closing.cancel();
        // Dropping cannot wait: if the queue has no room for the goodbye, stop at once.
        if self.commands.try_send(Command::Close(None)).is_err() {
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
    /// Fails with [`ClientError::Server`] if the server refuses the session (bad
    /// credentials, wrong HMAC key, unsupported version).
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let Session {
            reader,
            writer,
            codec,
            ack,
        } = connection::open(&config).await?;
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
            name: config.name().to_owned(),
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
        let (commands, queue) = mpsc::channel(config.send_queue_capacity());
        let writer = Writer::new(writer, codec, queue, shared.clone(), heartbeat);
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
        Ok(Client {
            inner: Arc::new(ClientInner {
                shared,
                commands,
                session,
                request_timeout: config.request_timeout(),
                subscription_capacity: config.subscription_capacity(),
                tasks: Mutex::new(vec![reader_task, writer_task]),
                last_channel: Mutex::new(Text::default()),
            }),
        })
    }

    // ----- session -----

    /// The id the server gave this client.
    pub fn client_id(&self) -> u64 {
        self.inner.session.client_id
    }

    /// The id of this session.
    pub fn session_id(&self) -> Uuid {
        self.inner.session.session_id
    }

    /// The session name.
    pub fn name(&self) -> &str {
        &self.inner.session.name
    }

    /// The server's size limits.
    pub fn server_limits(&self) -> ServerLimits {
        self.inner.session.limits
    }

    /// The heartbeat interval in force.
    pub fn heartbeat(&self) -> Duration {
        self.inner.session.heartbeat
    }

    /// The server's software and version, as it announced them.
    pub fn server_software(&self) -> &str {
        &self.inner.session.server_software
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.shared.close_reason()
    }

    /// Messages the server reported skipped for this connection (slow consumer,
    /// drop-oldest channels).
    pub fn skipped_messages(&self) -> u64 {
        self.inner.shared.skipped()
    }

    /// Asks the server who this session is.
    pub async fn identity(&self) -> Result<Identity> {
        let reply = self.call(Identify).await?;
        expect(&reply, FrameType::Identity, Identity::from_frame)
    }

    /// The other connected clients.
    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>> {
        let reply = self.call(ListClients).await?;
        Ok(expect(&reply, FrameType::ClientList, ClientList::from_frame)?.clients)
    }

    /// Relays a body to up to 255 connected clients; one outcome per receiver, in order.
    pub async fn relay(
        &self,
        receivers: &[u64],
        body: impl Into<Bytes>,
        content_type: &str,
    ) -> Result<Vec<RelayOutcome>> {
        if receivers.is_empty() || receivers.len() > MAX_RECEIVERS {
            return Err(ClientError::InvalidArgument(format!(
                "a relay names 1 to {MAX_RECEIVERS} receivers, not {}",
                receivers.len()
            )));
        }
        let body = body.into();
        self.check_body(body.len())?;
        let relay = Relay {
            receivers: receivers.to_vec(),
            content_type: content_type.into(),
            body,
        };
        let reply = self.call(relay).await?;
        Ok(expect(&reply, FrameType::RelayResult, RelayResult::from_frame)?.outcomes)
    }

    // ----- channels -----

    /// Creates a channel (succeeds if it exists with the same options).
    pub async fn create_channel(&self, name: &str, options: ChannelOptions) -> Result<ChannelInfo> {
        let reply = self
            .call(CreateChannel {
                name: name.into(),
                options,
            })
            .await?;
        expect(&reply, FrameType::ChannelInfo, ChannelInfo::from_frame)
    }

    /// Every channel on the server.
    pub async fn list_channels(&self) -> Result<Vec<ChannelInfo>> {
        let reply = self.call(ListChannels).await?;
        Ok(expect(&reply, FrameType::ChannelList, ChannelList::from_frame)?.channels)
    }

    /// Publishes to a channel and waits for the server's ack.
    ///
    /// A body larger than the server's `max_frame` (and within its `max_body`) is
    /// streamed, as [`Client::publish_stream`] does; a larger one is refused with
    /// [`ClientError::TooLarge`] before anything is sent.
    pub async fn publish(&self, channel: &str, payload: Payload) -> Result<PublishAck> {
        if self.needs_streaming(payload.body.len()) {
            return self
                .publish_payload_streamed(Scope::Channel, channel, payload)
                .await;
        }
        self.publish_pipelined(channel, payload).await?.await
    }

    /// Publishes a body of any size (up to the server's `max_body`) read from `body`,
    /// which must yield exactly `total_len` bytes, and waits for the server's ack.
    ///
    /// The body is sent in chunks of at most [`crate::CHUNK_SIZE`] as it is read, with
    /// its SHA-256; the memory used stays bounded (a few chunks) whatever its size. The
    /// server acknowledges once the whole body is stored, and nothing of it becomes
    /// visible if the upload fails. A reader that fails, or yields fewer or more bytes
    /// than `total_len` ([`ClientError::BodyTooShort`], [`ClientError::BodyTooLong`]),
    /// aborts the stream; so does dropping the future before it completes.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let file = tokio::fs::File::open("backup.tar").await?;
    /// let len = file.metadata().await?.len();
    /// let ack = client.publish_stream("backups", "application/x-tar", file, len).await?;
    /// println!("stored as seq {}", ack.seq);
    /// # Ok(()) }
    /// ```
    pub async fn publish_stream<R>(
        &self,
        channel: &str,
        content_type: &str,
        body: R,
        total_len: u64,
    ) -> Result<PublishAck>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.publish_stream_with(channel, content_type, Vec::new(), body, total_len, |_| {})
            .await
    }

    /// [`Client::publish_stream`] with user headers, calling `progress` with the number
    /// of bytes handed to the connection so far after each chunk (for a progress bar;
    /// at most 8 chunks run ahead of the socket).
    pub async fn publish_stream_with<R, F>(
        &self,
        channel: &str,
        content_type: &str,
        headers: Vec<(Text, Text)>,
        mut body: R,
        total_len: u64,
        mut progress: F,
    ) -> Result<PublishAck>
    where
        R: AsyncRead + Unpin + Send,
        F: FnMut(u64) + Send,
    {
        let head = UploadHead {
            scope: Scope::Channel,
            channel: channel.into(),
            content_type: content_type.into(),
            headers,
            total_len,
        };
        self.start_upload(head)
            .await?
            .send_body(&mut body, &mut progress)
            .await
    }

    /// Queues a publish and returns at once with a future for its ack, so that many
    /// publishes can be in flight:
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::stream::{FuturesOrdered, StreamExt};
    /// use switchboard_client::Payload;
    ///
    /// let mut acks = FuturesOrdered::new();
    /// for n in 0..1000 {
    ///     acks.push_back(client.publish_pipelined("bench", Payload::text(&n.to_string())).await?);
    /// }
    /// while let Some(ack) = acks.next().await {
    ///     println!("seq {}", ack?.seq);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// The frame is in the writer's queue when this returns (it waits only if the queue
    /// is full). The ack's timeout counts from then.
    ///
    /// A body larger than the server's `max_frame` is streamed by a background task;
    /// the PUBLISH opening the stream is queued when this returns, its chunks follow.
    pub async fn publish_pipelined(&self, channel: &str, payload: Payload) -> Result<PendingAck> {
        if self.needs_streaming(payload.body.len()) {
            let total_len = payload.body.len() as u64;
            let upload = self
                .start_upload(UploadHead {
                    scope: Scope::Channel,
                    channel: channel.into(),
                    content_type: payload.content_type,
                    headers: payload.headers,
                    total_len,
                })
                .await?;
            let request_id = upload.request_id();
            let body = payload.body;
            let task = tokio::spawn(async move {
                let mut reader = std::io::Cursor::new(body);
                upload.send_body(&mut reader, &mut |_| {}).await
            });
            let ack = async move {
                task.await
                    .unwrap_or_else(|error| Err(ClientError::Io(std::io::Error::other(error))))
            };
            return Ok(PendingAck {
                request_id,
                ack: Box::pin(ack),
            });
        }
        let publish = self.publish_packet(Scope::Channel, channel, payload)?;
        let deadline = self.deadline();
        let (done, answer) = oneshot::channel();
        let request_id = self.inner.shared.register(Pending::Reply(done))?;
        let guard = RequestGuard::new(self, request_id);
        self.enqueue(request_id, Flags::empty(), publish.into(), deadline)
            .await?;
        let client = self.clone();
        let ack = async move {
            let reply = client.await_answer(answer, deadline, "publish").await?;
            guard.disarm();
            expect(&reply, FrameType::PublishAck, PublishAck::from_frame)
        };
        Ok(PendingAck {
            request_id,
            ack: Box::pin(ack),
        })
    }

    /// Publishes without asking for an ack (flag NO_REPLY): returns once the frame is
    /// queued. A failure comes back later: logged when the server reports it, and
    /// returned by the next [`Client::flush`].
    ///
    /// Bodies are limited to one frame (the server's `max_frame`): a streamed body
    /// needs its ack. Use [`Client::publish`] for larger ones.
    pub async fn publish_no_reply(&self, channel: &str, payload: Payload) -> Result<()> {
        let publish = self.publish_packet(Scope::Channel, channel, payload)?;
        let request_id = self.inner.shared.next_no_reply_id();
        let command = Command::Send(Outbound {
            request_id,
            flags: Flags::NO_REPLY,
            packet: publish.into(),
        });
        // The deadline (a clock read) and its timer matter only when the queue is full.
        match self.inner.commands.try_send(command) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.inner.shared.closed_error()),
            Err(mpsc::error::TrySendError::Full(command)) => {
                self.send_command(command, self.deadline()).await
            }
        }
    }

    /// Waits until everything queued so far was written and processed by the server.
    ///
    /// The server handles a connection's requests in order, so the answer to a request
    /// queued now proves the earlier ones were handled, and that the ERRORs of failed
    /// publishes sent without reply have arrived; those are returned as
    /// [`ClientError::NoReplyFailures`].
    pub async fn flush(&self) -> Result<()> {
        self.identity().await?;
        match self.inner.shared.take_no_reply_failures() {
            Some(failures) => Err(failures),
            None => Ok(()),
        }
    }

    /// Subscribes to a channel name, a wildcard pattern (`chat.*`, `chat.>`) or a hashtag
    /// (`#rust`). Awaiting the returned [`SubscribeBuilder`] sends the request; before
    /// that, [`SubscribeBuilder::pattern`] adds more patterns to the same subscription and
    /// [`SubscribeBuilder::replay`] asks for history first.
    ///
    /// One subscription is one consumer: a message matching several of its patterns is
    /// received once, in the order the server sent it, and so is a message that the
    /// replays of two patterns both hold. Separate `subscribe` calls are separate
    /// consumers, as in NATS: a message matching both arrives on each.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    /// use switchboard_client::Replay;
    ///
    /// let mut chat = client.subscribe("chat.>").pattern("#rust").replay(Replay::Last(5)).await?;
    /// while let Some(message) = chat.next().await {
    ///     println!("{}", message?.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self, pattern: &str) -> SubscribeBuilder<'_> {
        SubscribeBuilder::new(self, pattern)
    }

    /// Sends one SUBSCRIBE per pattern, all feeding one consumer.
    pub(crate) async fn subscribe_patterns(
        &self,
        patterns: Vec<String>,
        replay: Replay,
    ) -> Result<Subscription> {
        let mut parsed = Vec::with_capacity(patterns.len());
        for pattern in &patterns {
            parsed.push(Pattern::parse(pattern)?);
        }
        let (sender, receiver) = mpsc::channel(self.inner.subscription_capacity);
        let state = Arc::new(SubscriptionState::default());
        // Dropped half way (an error, a timeout), it cancels what was acknowledged.
        let mut subscription = Subscription::new(self.clone(), receiver, state.clone());
        for (pattern, parsed) in patterns.into_iter().zip(parsed) {
            let (done, answer) = oneshot::channel();
            let deadline = self.deadline();
            let request_id =
                self.inner
                    .shared
                    .register(Pending::Subscribe(PendingSubscription {
                        pattern: parsed,
                        sender: sender.clone(),
                        state: state.clone(),
                        done,
                    }))?;
            let guard = RequestGuard::new(self, request_id);
            let subscribe = Subscribe {
                pattern: pattern.as_str().into(),
                replay,
            };
            self.enqueue(request_id, Flags::empty(), subscribe.into(), deadline)
                .await?;
            let ack = self.await_answer(answer, deadline, "subscribe").await?;
            guard.disarm();
            subscription.add(ack, pattern);
        }
        Ok(subscription)
    }

    /// The latest message of a channel, or the one with `id`; `None` if there is none.
    ///
    /// A streamed body is returned as soon as its message arrives and follows through
    /// [`ReceivedMessage::body_reader`]; read it (or drop the message) promptly.
    pub async fn get_message(
        &self,
        channel: &str,
        id: Option<Uuid>,
    ) -> Result<Option<ReceivedMessage>> {
        let request = GetMessage {
            scope: Scope::Channel,
            channel: channel.into(),
            id,
        };
        let deadline = self.deadline();
        let (done, answer) = oneshot::channel();
        let request_id = self.inner.shared.register(Pending::Message(done))?;
        let guard = RequestGuard::new(self, request_id);
        self.enqueue(request_id, Flags::empty(), request.into(), deadline)
            .await?;
        let answer = self
            .await_answer(answer, deadline, "fetching a message")
            .await;
        guard.disarm();
        match answer {
            Ok(message) => Ok(Some(message)),
            Err(ClientError::Server {
                code: ErrorCode::NotFound,
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A range of a channel's history, oldest first: from `since`, at most `limit`
    /// messages (with [`Since::All`] and a limit, the newest `limit`).
    ///
    /// The list is handed over once complete (at MESSAGES_END). Streamed bodies can be
    /// read from then on; they are buffered up to [`crate::BODY_BUFFER_BYTES`] each
    /// meanwhile, and a server that sends more of one before the end of the list makes
    /// this fail with [`ClientError::StreamedBodyBeforeEnd`] rather than stall.
    pub async fn get_messages(
        &self,
        channel: &str,
        since: Since,
        limit: Option<u64>,
    ) -> Result<Vec<ReceivedMessage>> {
        self.collect(GetMessages {
            scope: Scope::Channel,
            channel: channel.into(),
            since,
            limit,
        })
        .await
    }

    /// The latest messages carrying a hashtag (given with or without `#`), oldest first.
    pub async fn tag_messages(
        &self,
        tag: &str,
        limit: Option<u64>,
    ) -> Result<Vec<ReceivedMessage>> {
        let tag = tag.strip_prefix('#').unwrap_or(tag).to_lowercase();
        if tag.is_empty() {
            return Err(ClientError::InvalidArgument("empty hashtag".into()));
        }
        self.collect(GetMessages {
            scope: Scope::Tag,
            channel: tag.into(),
            since: Since::All,
            limit,
        })
        .await
    }

    // ----- groups -----

    /// Creates a group in the directory.
    pub async fn create_group(&self, name: &str, description: &str) -> Result<()> {
        let reply = self
            .call(CreateGroup {
                name: name.into(),
                description: description.into(),
            })
            .await?;
        expect_ok(&reply)
    }

    /// The group directory.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        let reply = self.call(ListGroups).await?;
        Ok(expect(&reply, FrameType::GroupList, GroupList::from_frame)?.groups)
    }

    /// Joins a group under this session's name; its messages then arrive on the
    /// [group feed](Client::group_feed).
    pub async fn join_group(&self, name: &str) -> Result<()> {
        let reply = self.call(JoinGroup { group: name.into() }).await?;
        expect_ok(&reply)
    }

    /// Leaves a group.
    pub async fn leave_group(&self, name: &str) -> Result<()> {
        let reply = self.call(LeaveGroup { group: name.into() }).await?;
        expect_ok(&reply)
    }

    /// The members of a group, and whether each is online.
    pub async fn group_members(&self, name: &str) -> Result<Vec<MemberInfo>> {
        let reply = self.call(GroupMembers { group: name.into() }).await?;
        Ok(expect(&reply, FrameType::MemberList, MemberList::from_frame)?.members)
    }

    /// Posts to a group and waits for the server's ack. Large bodies are streamed, as by
    /// [`Client::publish`].
    pub async fn post_group(&self, group: &str, payload: Payload) -> Result<PublishAck> {
        if self.needs_streaming(payload.body.len()) {
            return self
                .publish_payload_streamed(Scope::Group, group, payload)
                .await;
        }
        let publish = self.publish_packet(Scope::Group, group, payload)?;
        let reply = self.call(publish).await?;
        expect(&reply, FrameType::PublishAck, PublishAck::from_frame)
    }

    /// A group's history from `since`, oldest first.
    pub async fn group_messages(&self, group: &str, since: Since) -> Result<Vec<ReceivedMessage>> {
        self.collect(GetMessages {
            scope: Scope::Group,
            channel: group.into(),
            since,
            limit: None,
        })
        .await
    }

    /// Takes the group feed: messages of joined groups and member events.
    ///
    /// Only one handle at a time: a second call while the first feed is alive fails with
    /// [`ClientError::FeedTaken`]. Items arriving before it is taken are kept (up to the
    /// configured feed capacity, oldest dropped first).
    pub fn group_feed(&self) -> Result<GroupFeed> {
        GroupFeed::take(self)
    }

    /// Takes the direct feed: bodies relayed to this client. Same rules as
    /// [`Client::group_feed`].
    pub fn directs(&self) -> Result<DirectFeed> {
        DirectFeed::take(self)
    }

    // ----- administration -----

    /// The server's counters.
    pub async fn stats(&self) -> Result<StatsReply> {
        let reply = self.call(Stats).await?;
        expect(&reply, FrameType::StatsReply, StatsReply::from_frame)
    }

    /// Asks the server to shut down (admin sessions only).
    pub async fn stop_server(&self) -> Result<()> {
        let reply = self.call(Stop).await?;
        expect_ok(&reply)
    }

    /// Flushes, says DISCONNECT (NORMAL) and stops the background tasks. Every handle of
    /// this connection then fails with [`ClientError::ConnectionClosed`].
    ///
    /// Returns what the flush found (failed publishes sent without reply); closing an
    /// already closed client is not an error.
    ///
    /// Streamed bodies still arriving are not waited for: one whose reader does not keep
    /// up fails (with [`std::io::ErrorKind::ConnectionAborted`]) rather than hold up the
    /// close.
    pub async fn close(&self) -> Result<()> {
        if self.is_closed() {
            self.join_tasks().await;
            return Ok(());
        }
        self.inner.shared.close_requested.cancel();
        let flushed = match self.flush().await {
            Err(error) if error.is_connection_closed() => Ok(()),
            other => other,
        };
        self.inner.shared.closing.cancel();
        let (done, written) = oneshot::channel();
        let queued = tokio::time::timeout(
            CLOSE_GRACE,
            self.inner.commands.send(Command::Close(Some(done))),
        )
        .await;
        if matches!(queued, Ok(Ok(()))) {
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

    // ----- plumbing shared by the methods above -----

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
        let deadline = self.deadline();
        let (done, answer) = oneshot::channel();
        let request_id = self.inner.shared.register(Pending::Reply(done))?;
        let guard = RequestGuard::new(self, request_id);
        self.enqueue(request_id, Flags::empty(), packet.into(), deadline)
            .await?;
        let reply = self.await_answer(answer, deadline, "request").await?;
        guard.disarm();
        Ok(reply)
    }

    /// Sends GET_MESSAGES and gathers its MESSAGE frames until MESSAGES_END.
    async fn collect(&self, request: GetMessages) -> Result<Vec<ReceivedMessage>> {
        let deadline = self.deadline();
        let (done, answer) = oneshot::channel();
        let request_id = self.inner.shared.register(Pending::Collect {
            messages: Vec::new(),
            done,
        })?;
        let guard = RequestGuard::new(self, request_id);
        self.enqueue(request_id, Flags::empty(), request.into(), deadline)
            .await?;
        let messages = self
            .await_answer(answer, deadline, "fetching messages")
            .await?;
        guard.disarm();
        Ok(messages)
    }

    /// Puts a frame in the writer's queue, waiting for room until `deadline`.
    async fn enqueue(
        &self,
        request_id: u32,
        flags: Flags,
        packet: Packet,
        deadline: Instant,
    ) -> Result<()> {
        let command = Command::Send(Outbound {
            request_id,
            flags,
            packet,
        });
        self.send_command(command, deadline).await
    }

    /// Puts a command in the writer's queue, waiting for room until `deadline`.
    pub(crate) async fn send_command(&self, command: Command, deadline: Instant) -> Result<()> {
        match tokio::time::timeout_at(deadline, self.inner.commands.send(command)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.inner.shared.closed_error()),
            Err(_) => Err(ClientError::Timeout {
                what: "queueing a frame",
                after: self.inner.request_timeout,
            }),
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
            Err(_) => Err(ClientError::Timeout {
                what,
                after: self.inner.request_timeout,
            }),
        }
    }

    /// Whether a body of `len` bytes is too large for one frame, so that publishing it
    /// streams it.
    fn needs_streaming(&self, len: usize) -> bool {
        len as u64 > u64::from(self.inner.session.limits.max_frame)
    }

    /// Streams a payload that is already in memory.
    async fn publish_payload_streamed(
        &self,
        scope: Scope,
        channel: &str,
        payload: Payload,
    ) -> Result<PublishAck> {
        let total_len = payload.body.len() as u64;
        let upload = self
            .start_upload(UploadHead {
                scope,
                channel: channel.into(),
                content_type: payload.content_type,
                headers: payload.headers,
                total_len,
            })
            .await?;
        let mut reader = std::io::Cursor::new(payload.body);
        upload.send_body(&mut reader, &mut |_| {}).await
    }

    /// A PUBLISH for `payload` in one frame, refused here if the server could not take
    /// it in one frame (callers stream larger bodies instead).
    fn publish_packet(&self, scope: Scope, channel: &str, payload: Payload) -> Result<Publish> {
        self.check_body(payload.body.len())?;
        Ok(Publish {
            scope,
            channel: self.channel_text(channel),
            content_type: payload.content_type,
            user_headers: payload.headers,
            body: payload.body,
            stream: None,
        })
    }

    /// `channel` as a `Text`, shared with the previous publish when it is the same.
    fn channel_text(&self, channel: &str) -> Text {
        let mut last = lock(&self.inner.last_channel);
        if last.as_str() != channel {
            *last = Text::from(channel);
        }
        last.clone()
    }

    fn check_body(&self, len: usize) -> Result<()> {
        let limits = self.inner.session.limits;
        let max = u64::from(limits.max_frame).min(limits.max_body);
        let len = len as u64;
        if len > max {
            return Err(ClientError::TooLarge { len, max });
        }
        Ok(())
    }
}

/// Parses an answer of the expected type.
pub(crate) fn expect<T>(
    reply: &Frame,
    expected: FrameType,
    parse: fn(&Frame) -> std::result::Result<T, ProtoError>,
) -> Result<T> {
    if reply.frame_type != expected {
        return Err(ClientError::UnexpectedReply {
            expected: expected.name(),
            got: reply.frame_type,
        });
    }
    Ok(parse(reply)?)
}

/// Checks that an answer is OK.
pub(crate) fn expect_ok(reply: &Frame) -> Result<()> {
    if reply.frame_type != FrameType::Ok {
        return Err(ClientError::UnexpectedReply {
            expected: FrameType::Ok.name(),
            got: reply.frame_type,
        });
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

/// The ack of a publish in flight; a future resolving to its [`PublishAck`] (or to the
/// server's ERROR, or a timeout).
///
/// Dropping it does not cancel the publish, which is already queued; the ack is ignored.
pub struct PendingAck {
    request_id: u32,
    ack: Pin<Box<dyn Future<Output = Result<PublishAck>> + Send>>,
}

impl PendingAck {
    /// The request id the publish was sent with.
    pub fn request_id(&self) -> u32 {
        self.request_id
    }
}

impl Future for PendingAck {
    type Output = Result<PublishAck>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.ack.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for PendingAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAck")
            .field("request_id", &self.request_id)
            .finish()
    }
}
