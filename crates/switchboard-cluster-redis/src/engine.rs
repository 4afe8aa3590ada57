//! [`RedisBackplane`]: the hub's [`Backplane`] on Redis. It owns the supervised command
//! connection, the one pub/sub connection, the node's registration (its incarnation,
//! kept alive by a heartbeat) and the task that turns pub/sub messages into the hub's
//! feed events; every operation is bounded by the supervisor and fails with
//! BACKPLANE_UNAVAILABLE, never hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use parking_lot::Mutex;
use switchboard_proto::codec::view_encoded;
use switchboard_proto::packet::{ChannelOptions, CreateChannel};
use switchboard_proto::{ErrorCode, Flags, FrameCodec, Limits};
use switchboard_server::Refusal;
use switchboard_server::cluster::{
    self as seam, Append, Appended, Backplane, BackplaneEvent, BackplaneFuture, BackplaneHealth,
    ChannelMeta, Entry, GroupAppend, GroupMeta, LiveMessage, Membership, Page, Query,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::appender::{Appender, OwnedAppend};
use crate::channels::{self, AppendError};
use crate::engine_directory::NodeDirectory;
use crate::engine_groups;
use crate::error::BackplaneError;
use crate::keys::Keys;
use crate::live::{self, Live};
use crate::nodes::{self, NodeInfo};
use crate::subscriber::{Subscriber, SubscriberEvent, Topic};
use crate::supervisor::{Fsync, MismatchPolicy, Supervisor, SupervisorConfig};
use crate::url::{self, RedisTarget};

/// How long a node's registration lives without a heartbeat: a killed node's clients
/// leave the directory within it.
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How often a node renews its registration.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Events the feed holds for the hub before the pub/sub reader waits.
const FEED_CAPACITY: usize = 8192;
/// Newest messages kept per hashtag in Redis.
const TAG_HISTORY: u64 = 1000;
/// Channel names per LIST page asked of Redis at most.
const MAX_LIST: usize = 10_000;
/// Microseconds in an epoch number: epochs stay exact as Lua doubles and JS numbers.
const EPOCH_MASK: u64 = (1 << 52) - 1;

/// How a node joins a cluster on Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://…`, `unix://…` or `redis+sentinel://…`.
    pub url: String,
    /// The prefix of every key (`sb:` by default).
    pub prefix: String,
    /// The bound on every operation.
    pub op_timeout: Duration,
    /// What Redis must promise (from the node's `--sync`), and what to do if it does not.
    pub required_fsync: Option<Fsync>,
    pub on_fsync_mismatch: MismatchPolicy,
    /// How long to wait for Redis at start before giving up.
    pub start_timeout: Duration,
    /// Where this node's link for large bodies listens (advertised to other nodes).
    pub link_addr: String,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: crate::keys::DEFAULT_PREFIX.to_owned(),
            op_timeout: crate::supervisor::DEFAULT_OP_TIMEOUT,
            required_fsync: None,
            on_fsync_mismatch: MismatchPolicy::Refuse,
            start_timeout: Duration::from_secs(10),
            link_addr: String::new(),
        }
    }
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Url(#[from] url::UrlError),
    #[error("cannot reach the cluster's Redis at {target} within {waited:?}: {why}")]
    Unreachable {
        target: String,
        waited: Duration,
        why: String,
    },
    #[error("cannot register this node with the cluster: {0}")]
    Register(String),
}

/// The hub's backplane on Redis.
pub struct RedisBackplane {
    pub(crate) supervisor: Arc<Supervisor>,
    pub(crate) subscriber: Arc<Subscriber>,
    pub(crate) keys: Keys,
    incarnation: u64,
    info: NodeInfo,
    events: Mutex<Option<mpsc::Receiver<BackplaneEvent>>>,
    /// Encodes channel options for Redis.
    codec: FrameCodec,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The node found its registration expired (Redis lost it, or the node was cut off
    /// longer than its time to live) and registered again.
    reregistrations: AtomicU64,
    closed: AtomicBool,
    /// This node's clients in the directory, and its relays in flight.
    pub(crate) directory: Arc<NodeDirectory>,
    /// Channel appends, sent in batches in the order queued.
    appender: Appender,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A new epoch or channel incarnation: random, non-zero, exact as a double.
pub(crate) fn random_id() -> u64 {
    (rand::random::<u64>() & EPOCH_MASK).max(1)
}

pub(crate) fn unavailable(error: &BackplaneError) -> Refusal {
    error.refusal()
}

impl RedisBackplane {
    /// Connects to Redis (waiting up to `start_timeout`), registers this node and
    /// starts following its feed. The tasks stop at [`Backplane::close`].
    pub async fn start(config: RedisConfig) -> Result<Arc<RedisBackplane>, StartError> {
        let target: RedisTarget = url::parse(&config.url)?;
        let keys = Keys::new(&config.prefix);
        let mut supervisor_config = SupervisorConfig::new(target.clone());
        supervisor_config.keys = keys.clone();
        supervisor_config.op_timeout = config.op_timeout;
        supervisor_config.required_fsync = config.required_fsync;
        supervisor_config.on_fsync_mismatch = config.on_fsync_mismatch;
        let shutdown = CancellationToken::new();
        let (supervisor, supervisor_task) =
            Supervisor::start(supervisor_config, shutdown.child_token());
        let unreachable = |why: String| StartError::Unreachable {
            target: target.to_string(),
            waited: config.start_timeout,
            why,
        };
        if supervisor
            .wait_connected(config.start_timeout)
            .await
            .is_err()
        {
            let why = supervisor
                .health()
                .last_error
                .unwrap_or_else(|| "no answer".to_owned());
            shutdown.cancel();
            return Err(unreachable(why));
        }
        let info = NodeInfo {
            link_addr: config.link_addr.clone(),
            started_us: now_us(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let registered = {
            let keys = keys.clone();
            let info = info.clone();
            supervisor
                .run(move |conn| {
                    async move {
                        nodes::register(conn, &keys, &info, NODE_TTL)
                            .await
                            .map_err(|e| BackplaneError::Reply(e.to_string()))
                    }
                    .boxed()
                })
                .await
        };
        let incarnation = match registered {
            Ok(incarnation) => incarnation,
            Err(error) => {
                shutdown.cancel();
                return Err(StartError::Register(error.to_string()));
            }
        };
        info!(target: switchboard_server::log::GENERAL, incarnation, redis = %target, "joined the cluster");
        let (subscriber, pushes, subscriber_task) =
            Subscriber::start(supervisor.clone(), FEED_CAPACITY, shutdown.child_token());
        let (feed, events) = mpsc::channel(FEED_CAPACITY);
        let (directory, relay_answers) = NodeDirectory::new(incarnation);
        let (appender, appender_task) =
            Appender::start(supervisor.clone(), keys.clone(), shutdown.child_token());
        let backplane = Arc::new(RedisBackplane {
            supervisor,
            subscriber,
            keys,
            incarnation,
            info,
            events: Mutex::new(Some(events)),
            codec: FrameCodec::new(Limits {
                max_header_len: usize::from(u16::MAX),
                max_content_len: u32::MAX,
            }),
            shutdown: shutdown.clone(),
            tasks: Mutex::new(Vec::new()),
            reregistrations: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            directory: directory.clone(),
            appender,
        });
        let translator = tokio::spawn(translate(
            backplane.keys.clone(),
            pushes,
            feed,
            directory.clone(),
            shutdown.child_token(),
        ));
        let heartbeat = tokio::spawn(Arc::clone(&backplane).heartbeat(shutdown.child_token()));
        backplane.tasks.lock().extend([
            supervisor_task,
            subscriber_task,
            translator,
            heartbeat,
            appender_task,
        ]);
        backplane.start_directory(relay_answers).await?;
        Ok(backplane)
    }

    /// Runs an operation that may safely run twice (a read). When the connection it found
    /// turned out broken (Redis restarted or failed over since it was last used), it runs
    /// once more on the next connection, within what is left of the operation bound: a
    /// read right after a restart is answered rather than refused.
    pub(crate) async fn run_read<T>(
        &self,
        op: impl for<'c> FnOnce(
            &'c mut redis::aio::MultiplexedConnection,
        ) -> futures::future::BoxFuture<'c, Result<T, BackplaneError>>
        + Clone,
    ) -> Result<T, BackplaneError> {
        let started = std::time::Instant::now();
        let bound = self.supervisor.config().op_timeout;
        match self.supervisor.run(op.clone()).await {
            Err(error)
                if error.breaks_connection() && !matches!(error, BackplaneError::Timeout(_)) =>
            {
                let left = bound.saturating_sub(started.elapsed());
                self.supervisor
                    .wait_connected(left)
                    .await
                    .map_err(|_| error)?;
                let left = bound.saturating_sub(started.elapsed());
                tokio::time::timeout(left, self.supervisor.run(op))
                    .await
                    .unwrap_or(Err(BackplaneError::Timeout(bound)))
            }
            other => other,
        }
    }

    /// This node's incarnation in the cluster.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The keys this node uses (for tests and tools).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(crate) fn supervisor(&self) -> &Arc<Supervisor> {
        &self.supervisor
    }

    /// Renews the registration every second; registers again (with the same
    /// incarnation) when it had expired.
    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let keys = self.keys.clone();
            let incarnation = self.incarnation;
            let renewed = self
                .supervisor
                .run(move |conn| {
                    async move { nodes::heartbeat(conn, &keys, incarnation, NODE_TTL).await }
                        .boxed()
                })
                .await;
            if let Ok(false) = renewed {
                warn!(target: switchboard_server::log::ERROR, incarnation, "this node's registration had expired; registering again");
                let keys = self.keys.clone();
                let info = self.info.clone();
                let again = self
                    .supervisor
                    .run(move |conn| {
                        async move {
                            nodes::reregister(conn, &keys, incarnation, &info, NODE_TTL).await
                        }
                        .boxed()
                    })
                    .await;
                if again.is_ok() {
                    self.reregistrations.fetch_add(1, Ordering::Relaxed);
                    self.directory.publish_all_again();
                }
            }
        }
    }

    fn encode_options(&self, options: &ChannelOptions) -> Bytes {
        let create = CreateChannel {
            name: "".into(),
            options: *options,
        };
        let mut buf = BytesMut::new();
        match self
            .codec
            .encode_packet(0, Flags::empty(), &create, &mut buf)
        {
            Ok(()) => buf.freeze(),
            Err(e) => {
                error!(target: switchboard_server::log::ERROR, error = %e, "cannot encode channel options");
                Bytes::new()
            }
        }
    }

    fn decode_options(bytes: &Bytes) -> Result<ChannelOptions, Refusal> {
        view_encoded(bytes)
            .and_then(|frame| CreateChannel::from_frame(&frame))
            .map(|create| create.options)
            .map_err(|e| {
                Refusal::new(
                    ErrorCode::Internal,
                    format!("channel options in the cluster not readable: {e}"),
                )
            })
    }

    /// A channel's meta, with what its history holds now.
    fn meta_of(
        stored: channels::ChannelMeta,
        page: Option<&channels::Page>,
    ) -> Result<ChannelMeta, Refusal> {
        let options = Self::decode_options(&stored.options)?;
        let (count, first_seq) = match page {
            Some(page) if page.first_seq > 0 => (page.top_seq - page.first_seq + 1, page.first_seq),
            _ => (0, 0),
        };
        Ok(ChannelMeta {
            options,
            cid: stored.cid,
            epoch: page.map_or(stored.epoch, |p| p.epoch),
            top_seq: page.map_or(stored.top_seq, |p| p.top_seq),
            count,
            first_seq,
            bytes: 0,
        })
    }

    async fn meta(&self, name: &str) -> Result<Option<ChannelMeta>, Refusal> {
        let keys = self.keys.clone();
        let name_owned = name.to_owned();
        let generation = self.supervisor.generation();
        let found = self
            .run_read(move |conn| {
                async move {
                    let Some(meta) = channels::meta(conn, &keys, &name_owned).await? else {
                        return Ok(None);
                    };
                    // The bounds come from a read of no entries, which also applies the
                    // generation rule (a new epoch after a failover).
                    let page = channels::read(
                        conn,
                        &keys,
                        &name_owned,
                        channels::Query::SinceSeq(0),
                        0,
                        generation,
                        random_id(),
                    )
                    .await?;
                    Ok(Some((meta, page)))
                }
                .boxed()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        match found {
            Some((meta, page)) => Self::meta_of(meta, page.as_ref()).map(Some),
            None => Ok(None),
        }
    }
}

/// Turns pub/sub messages into the hub's feed events, in order.
async fn translate(
    keys: Keys,
    mut pushes: mpsc::Receiver<SubscriberEvent>,
    feed: mpsc::Sender<BackplaneEvent>,
    directory: Arc<NodeDirectory>,
    shutdown: CancellationToken,
) {
    let node_topic = keys.node_topic(directory.incarnation());
    let control_topic = keys.control_topic();
    let channel_prefix = keys.channel_topic_prefix();
    let tag_prefix = keys.tag_topic("");
    let group_prefix = engine_groups::topic_prefix(&keys);
    loop {
        let push = tokio::select! {
            () = shutdown.cancelled() => return,
            push = pushes.recv() => push,
        };
        let event = match push {
            None => return,
            Some(SubscriberEvent::Resubscribed) => BackplaneEvent::Resubscribed,
            Some(SubscriberEvent::Push(push)) if push.topic.starts_with(&group_prefix) => {
                match engine_groups::event(&push.topic[group_prefix.len()..], &push.payload) {
                    Some(event) => event,
                    None => continue,
                }
            }
            Some(SubscriberEvent::Push(push)) if push.topic == control_topic => {
                match engine_groups::control_event(&push.payload) {
                    Some(event) => event,
                    None => continue,
                }
            }
            Some(SubscriberEvent::Push(push)) if push.topic == node_topic => {
                match directory.take(&push.payload) {
                    Some(relay) => BackplaneEvent::Relay(relay),
                    None => continue,
                }
            }
            Some(SubscriberEvent::Push(push)) => {
                let (channel, via_tag) =
                    if let Some(channel) = push.topic.strip_prefix(&channel_prefix) {
                        (Some(channel.to_owned()), false)
                    } else if push.topic.starts_with(&tag_prefix) {
                        (None, true)
                    } else {
                        // Probes and other nodes' traffic are not for the hub.
                        continue;
                    };
                match live::decode(&push.payload) {
                    Ok(Live::Message {
                        seq,
                        epoch,
                        time_us,
                        payload,
                    }) => {
                        let channel = match channel {
                            Some(channel) => channel,
                            None => match seam::channel_of(&payload) {
                                Some(channel) => channel,
                                None => {
                                    warn!(target: switchboard_server::log::ERROR, topic = %push.topic, "hashtag message without a readable channel; skipped");
                                    continue;
                                }
                            },
                        };
                        BackplaneEvent::Message {
                            channel,
                            via_tag,
                            message: LiveMessage {
                                seq,
                                epoch,
                                time_us,
                                payload,
                            },
                        }
                    }
                    Ok(Live::Deleted { .. }) => match channel {
                        Some(channel) => BackplaneEvent::ChannelDeleted { channel },
                        None => continue,
                    },
                    Err(error) => {
                        warn!(target: switchboard_server::log::ERROR, topic = %push.topic, %error, "unreadable message from the cluster; skipped");
                        continue;
                    }
                }
            }
        };
        let sent = tokio::select! {
            () = shutdown.cancelled() => return,
            sent = feed.send(event) => sent,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The refusal of a write a script found made under a newer backplane generation than
/// this node's (it must handshake again first).
pub(crate) fn stale_generation(stored: u64) -> Refusal {
    Refusal::new(
        ErrorCode::BackplaneUnavailable,
        format!(
            "backplane unavailable: this node's view of Redis is older than another node's (generation {stored}); retry"
        ),
    )
}

/// What a client is told of a channel append's outcome.
fn appended(outcome: Result<channels::Appended, AppendError>) -> Result<Appended, Refusal> {
    match outcome {
        Ok(appended) => Ok(Appended {
            seq: appended.seq,
            epoch: appended.epoch,
            time_us: appended.time_us,
            cid: appended.cid,
        }),
        Err(AppendError::Deleted) => Err(Refusal::not_found(
            "the channel was deleted meanwhile".to_owned(),
        )),
        Err(AppendError::StaleGeneration { stored }) => Err(stale_generation(stored)),
        Err(AppendError::Backplane(error)) => Err(unavailable(&error)),
    }
}

pub(crate) fn redis_query(query: Query) -> channels::Query {
    match query {
        Query::SinceSeq(seq) => channels::Query::SinceSeq(seq),
        Query::SinceTime(time) => channels::Query::SinceTime(time),
        Query::Last(count) => channels::Query::Last(count),
        Query::ById(id) => channels::Query::ById(*id.as_bytes()),
    }
}

pub(crate) fn seam_page(page: channels::Page) -> Page {
    Page {
        epoch: page.epoch,
        first_seq: page.first_seq,
        top_seq: page.top_seq,
        entries: page
            .entries
            .into_iter()
            .map(|entry| Entry {
                seq: entry.seq,
                time_us: entry.time_us,
                payload: entry.payload,
            })
            .collect(),
    }
}

impl Backplane for RedisBackplane {
    fn events(&self) -> Option<mpsc::Receiver<BackplaneEvent>> {
        self.events.lock().take()
    }

    fn follow(&self, topic: seam::Topic) -> BackplaneFuture<'_, ()> {
        let topic = match topic {
            seam::Topic::Channel(name) => Topic::Exact(self.keys.channel_topic(&name)),
            seam::Topic::ChannelPrefix(prefix) => {
                Topic::Glob(self.keys.channel_topic_glob(&prefix))
            }
            seam::Topic::Tag(tag) => Topic::Exact(self.keys.tag_topic(&tag)),
            seam::Topic::Group(name) => engine_groups::topic(&self.keys, &name),
        };
        async move {
            self.subscriber
                .follow(topic)
                .await
                .map_err(|e| unavailable(&e))
        }
        .boxed()
    }

    fn unfollow(&self, topic: seam::Topic) {
        let topic = match topic {
            seam::Topic::Channel(name) => Topic::Exact(self.keys.channel_topic(&name)),
            seam::Topic::ChannelPrefix(prefix) => {
                Topic::Glob(self.keys.channel_topic_glob(&prefix))
            }
            seam::Topic::Tag(tag) => Topic::Exact(self.keys.tag_topic(&tag)),
            seam::Topic::Group(name) => engine_groups::topic(&self.keys, &name),
        };
        self.subscriber.unfollow(topic);
    }

    fn channel<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, Option<ChannelMeta>> {
        self.meta(name).boxed()
    }

    fn create_channel<'a>(
        &'a self,
        name: &'a str,
        options: &'a ChannelOptions,
    ) -> BackplaneFuture<'a, (ChannelMeta, bool)> {
        let encoded = self.encode_options(options);
        async move {
            let keys = self.keys.clone();
            let name_owned = name.to_owned();
            let generation = self.supervisor.generation();
            let (meta, created) = self
                .supervisor
                .run(move |conn| {
                    async move {
                        channels::create(
                            conn,
                            &keys,
                            &name_owned,
                            &encoded,
                            random_id(),
                            generation,
                        )
                        .await
                    }
                    .boxed()
                })
                .await
                .map_err(|e| unavailable(&e))?;
            Ok((Self::meta_of(meta, None)?, created))
        }
        .boxed()
    }

    fn delete_channel<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, bool> {
        async move {
            let keys = self.keys.clone();
            let name_owned = name.to_owned();
            let deleted = self
                .supervisor
                .run(move |conn| {
                    async move { channels::delete(conn, &keys, &name_owned).await }.boxed()
                })
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(deleted.is_some())
        }
        .boxed()
    }

    fn list_channels<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BackplaneFuture<'a, Vec<String>> {
        async move {
            let keys = self.keys.clone();
            let after = after.map(str::to_owned);
            let limit = limit.min(MAX_LIST);
            self.run_read(move |conn| {
                async move { channels::list(conn, &keys, after.as_deref(), limit).await }.boxed()
            })
            .await
            .map_err(|e| unavailable(&e))
        }
        .boxed()
    }

    fn append(&self, append: Append) -> BackplaneFuture<'_, Appended> {
        async move { self.queue_append(append).await?.await }.boxed()
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
        limit: u64,
    ) -> BackplaneFuture<'a, Option<Page>> {
        async move {
            let keys = self.keys.clone();
            let name = channel.to_owned();
            let generation = self.supervisor.generation();
            let page = self
                .run_read(move |conn| {
                    async move {
                        channels::read(
                            conn,
                            &keys,
                            &name,
                            redis_query(query),
                            limit,
                            generation,
                            random_id(),
                        )
                        .await
                    }
                    .boxed()
                })
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(page.map(seam_page))
        }
        .boxed()
    }

    fn health(&self) -> BackplaneHealth {
        let supervisor = self.supervisor.health();
        let subscriber = self.subscriber.health();
        let connected = supervisor.connected && subscriber.connected;
        let detail = if !supervisor.connected {
            supervisor
                .last_error
                .clone()
                .unwrap_or_else(|| "connecting".to_owned())
        } else if !subscriber.connected {
            format!(
                "pub/sub connection down: {}",
                subscriber.last_error.as_deref().unwrap_or("connecting")
            )
        } else {
            format!(
                "node {} on {}",
                self.incarnation,
                supervisor.master.as_deref().unwrap_or("redis")
            )
        };
        BackplaneHealth {
            connected,
            detail,
            counters: vec![
                ("reconnects", supervisor.reconnects),
                ("timeouts", supervisor.timeouts),
                ("generation", supervisor.generation),
                ("resubscribes", subscriber.resubscribes),
                ("probe_failures", subscriber.probe_failures),
                ("node", self.incarnation),
                (
                    "reregistrations",
                    self.reregistrations.load(Ordering::Relaxed),
                ),
                ("append_batches", self.appender.batches()),
                ("appends_batched", self.appender.appends()),
            ],
        }
    }

    fn node_id(&self) -> u64 {
        self.incarnation
    }

    fn trim_age<'a>(
        &'a self,
        channel: &'a str,
        max_age_us: u64,
        now_us: u64,
    ) -> BackplaneFuture<'a, u64> {
        async move {
            let keys = self.keys.clone();
            let name = channel.to_owned();
            self.supervisor
                .run(move |conn| {
                    async move { channels::trim_age(conn, &keys, &name, max_age_us, now_us).await }
                        .boxed()
                })
                .await
                .map_err(|e| unavailable(&e))
        }
        .boxed()
    }

    fn read_tag<'a>(
        &'a self,
        tag: &'a str,
        query: Query,
        limit: u64,
    ) -> BackplaneFuture<'a, Vec<seam::TaggedEntry>> {
        async move {
            let keys = self.keys.clone();
            let tag = tag.to_owned();
            let entries = self
                .run_read(move |conn| {
                    async move { channels::tag_read(conn, &keys, &tag, redis_query(query), limit).await }
                        .boxed()
                })
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(entries
                .into_iter()
                .map(|entry| seam::TaggedEntry {
                    channel: entry.channel,
                    seq: entry.seq,
                    time_us: entry.time_us,
                    payload: entry.payload,
                })
                .collect())
        }
        .boxed()
    }

    fn close(&self) -> BackplaneFuture<'_, ()> {
        async move {
            if self.closed.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            let keys = self.keys.clone();
            let incarnation = self.incarnation;
            let left = self
                .supervisor
                .run(move |conn| {
                    async move { nodes::deregister(conn, &keys, incarnation).await }.boxed()
                })
                .await;
            self.shutdown.cancel();
            let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
            for task in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
            left.map_err(|e| unavailable(&e))
        }
        .boxed()
    }

    fn create_group<'a>(
        &'a self,
        name: &'a str,
        description: &'a str,
        creator: &'a str,
    ) -> BackplaneFuture<'a, (GroupMeta, bool)> {
        self.create_group_now(name, description, creator).boxed()
    }

    fn group<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, Option<GroupMeta>> {
        self.group_now(name).boxed()
    }

    fn delete_group<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, bool> {
        self.delete_group_now(name).boxed()
    }

    fn list_groups<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BackplaneFuture<'a, Vec<(String, GroupMeta)>> {
        self.list_groups_now(after, limit).boxed()
    }

    fn set_group_member<'a>(
        &'a self,
        name: &'a str,
        user: &'a str,
        join: bool,
    ) -> BackplaneFuture<'a, Membership> {
        self.set_group_member_now(name, user, join).boxed()
    }

    fn group_members<'a>(
        &'a self,
        name: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BackplaneFuture<'a, Option<Vec<String>>> {
        self.group_members_now(name, after, limit).boxed()
    }

    fn is_group_member<'a>(&'a self, name: &'a str, user: &'a str) -> BackplaneFuture<'a, bool> {
        self.is_group_member_now(name, user).boxed()
    }

    fn groups_of<'a>(&'a self, user: &'a str) -> BackplaneFuture<'a, Vec<String>> {
        self.groups_of_now(user).boxed()
    }

    fn post_to_group(&self, post: GroupAppend) -> BackplaneFuture<'_, Appended> {
        self.post_to_group_now(post).boxed()
    }

    fn read_group<'a>(
        &'a self,
        name: &'a str,
        query: Query,
        limit: u64,
    ) -> BackplaneFuture<'a, Option<Page>> {
        self.read_group_now(name, query, limit).boxed()
    }

    fn client_joined(&self, record: seam::ClientRecord) {
        self.directory.joined(record);
    }

    fn client_left(&self, id: u64) {
        self.directory.left(id);
    }

    fn list_clients(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> BackplaneFuture<'_, Vec<seam::ClientRecord>> {
        self.list_directory(after, limit).boxed()
    }

    fn client_records<'a>(
        &'a self,
        ids: &'a [u64],
    ) -> BackplaneFuture<'a, Vec<Option<seam::ClientRecord>>> {
        self.directory_records(ids).boxed()
    }

    fn relay(
        &self,
        node: u64,
        request: seam::RelayRequest,
    ) -> BackplaneFuture<'_, Vec<switchboard_proto::packet::RelayOutcome>> {
        let bound = self.supervisor.config().op_timeout;
        async move {
            self.directory
                .relay(&self.supervisor, &self.keys, node, request, bound)
                .await
        }
        .boxed()
    }

    fn answer_relay(
        &self,
        relay: &seam::IncomingRelay,
        outcomes: Vec<switchboard_proto::packet::RelayOutcome>,
    ) {
        self.directory.answer(relay, &outcomes);
    }

    fn node_link_addr(&self, node: u64) -> BackplaneFuture<'_, Option<String>> {
        self.node_link_addr_of(node).boxed()
    }

    fn node_link_key(&self) -> BackplaneFuture<'_, Vec<u8>> {
        self.node_link_key_of().boxed()
    }

    fn names_online<'a>(&'a self, names: &'a [String]) -> BackplaneFuture<'a, Vec<bool>> {
        async move {
            let keys = self.keys.clone();
            let names = names.to_vec();
            self.run_read(move |conn| {
                let keys = keys.clone();
                let names = names.clone();
                async move { nodes::names_online(conn, &keys, &names).await }.boxed()
            })
            .await
            .map_err(|e| unavailable(&e))
        }
        .boxed()
    }

    fn queue_append(&self, append: Append) -> BackplaneFuture<'_, seam::QueuedAppend> {
        async move {
            let default_options = append
                .create_with
                .as_ref()
                .map(|options| self.encode_options(options))
                .unwrap_or_default();
            let owned = OwnedAppend {
                name: append.channel,
                cid: append.cid,
                default_options,
                new_epoch: random_id(),
                now_us: now_us(),
                max_len: append.max_count,
                max_bytes: append.max_bytes.unwrap_or(0),
                id: *append.id.as_bytes(),
                payload: append.payload,
                body_len: append.body_len,
                tags: append.tags,
                tag_max_len: TAG_HISTORY,
            };
            let pending = self
                .appender
                .queue(owned)
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(async move { appended(pending.outcome().await) }.boxed())
        }
        .boxed()
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
