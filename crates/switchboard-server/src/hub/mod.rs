//! The hub's shared state and the operations that must hold its locks: channels,
//! publishing, subscribing, restoring and closing here; group operations in `groups`;
//! the publish rules in `admission`. Callers reach the state only through `Hub`'s
//! methods.
//!
//! Lock order, always in this direction: channel table → a channel's history (several in
//! name order) → tag index → routes → outboxes (never block). Group operations take a
//! group's history, then its members, then the directory. No lock is held across an
//! await: a caller that must queue a reply under a lock reserves queue room first.

pub mod admission;
pub(crate) mod channels;
pub(crate) mod cluster;
mod cluster_groups;
mod cold;
pub mod directory;
mod groups;
pub mod history;
pub mod listing;
pub mod message;
mod prefetch;
pub(crate) mod recycle;
mod restore;
mod routes;
pub mod stats;
mod tags;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use switchboard_proto::packet::{
    ChannelOptions, Durability, Envelope, Event, EventKind, Packet, Publish, PublishAck, Replay,
    Scope, Since, StreamStart, SubscribeAck,
};
use switchboard_proto::subject::{self, Pattern};
use switchboard_proto::{ErrorCode, Flags, FrameCodec, Limits, MacKey, Text};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{error, info};

use self::admission::{Admission, BodyShape, PublishRules, Target};
use self::channels::{Channel, ChannelTable, effective_options, max_age_us, retention_of};
pub use self::cold::DEFAULT_HISTORY_IN_MEMORY;
use self::cold::{ColdLog, Sweeps};
use self::directory::{ClientEntry, Directory};
use self::groups::{Group, GroupTable};
use self::history::{History, HistoryRead};
use self::message::StoredMessage;
use self::routes::Routes;
use self::stats::Counters;
use self::tags::TagIndex;
use crate::blobs::{BlobStore, Verified};
use crate::budget::{self, MemoryBudget};
use crate::config::ServerConfig;
use crate::error::Refusal;
use crate::hooks::Hooks;
use crate::log;
use crate::outbox::{
    ITEM_OVERHEAD, Outbox, OutboxReceiver, Outgoing, ReplyPermit, messages_weight,
};
use crate::security::addresses::AddressTable;
use crate::security::limits::{Clock, SystemClock};
use crate::security::reload::{ReloadError, ReloadSource};
use crate::security::usage::{Owned, UsageTable};
use crate::security::{Policy, SharedPolicy, shared_policy};
use crate::storage::{LogKind, Storage, StorageError, SyncFuture};
use crate::time::{MessageIds, now_us};

/// Refused connections told why at once; past it, they are closed without a word.
const MAX_REFUSALS_TELLING: usize = 256;

/// A stored publish: its acknowledgement, and whether the store must sync before it may
/// be sent (durability `always`). Such a message was handed to the store as awaited
/// ([`crate::storage::Storage::append_awaited`]): the caller must then ask for the sync
/// (`Hub::sync_storage_here` or `Hub::sync_storage`), which is what gets it written.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub ack: PublishAck,
    pub must_sync: bool,
}

/// What a run of publishes (the frames of one read, see [`Hub::publish_in_run`]) keeps
/// from one to the next: the channel it published to last, and what its last publish
/// there was like.
#[derive(Debug, Default)]
pub struct RunChannel {
    channel: Option<Arc<Channel>>,
    /// Set only with `channel`, by a publish made there.
    last: Option<LastPublish>,
}

/// The last publish of a run, made on the run's channel: its channel and content type
/// texts (slices of the read buffer, which the run holds anyway), and the generation of
/// the channel's message head that encoded its message.
#[derive(Debug)]
struct LastPublish {
    channel: Text,
    content_type: Text,
    head: u64,
}

impl RunChannel {
    /// A run whose last publish went to `channel`.
    #[cfg(test)]
    fn at(channel: Arc<Channel>) -> RunChannel {
        RunChannel {
            channel: Some(channel),
            last: None,
        }
    }

    /// The channel the run published to last.
    #[cfg(test)]
    fn channel(&self) -> Option<&Arc<Channel>> {
        self.channel.as_ref()
    }

    /// The head generation that encoded the run's last publish, if `publish` is alike
    /// to it: the same channel and content type texts (the very slices: equal without
    /// comparing them, as both are held) and no user headers. The session is the same,
    /// and so is the scope (a channel's) on this path.
    fn alike(&self, publish: &Publish) -> Option<u64> {
        let last = self.last.as_ref()?;
        (publish.user_headers.is_empty()
            && publish.channel.is_same(&last.channel)
            && publish.content_type.is_same(&last.content_type))
        .then_some(last.head)
    }

    /// `publish` was made on the run's channel, its message encoded through the head of
    /// generation `head` (`None`: not through a head, or not made); `alike` is what
    /// [`RunChannel::alike`] said of it.
    fn published(&mut self, publish: &Publish, head: Option<u64>, alike: Option<u64>) {
        match (head, &mut self.last) {
            (Some(head), Some(last)) if alike.is_some() => last.head = head,
            (Some(head), _) if publish.user_headers.is_empty() => {
                self.last = Some(LastPublish {
                    channel: publish.channel.clone(),
                    content_type: publish.content_type.clone(),
                    head,
                });
            }
            _ => self.last = None,
        }
    }
}

/// Who is asking: the parts of a session the hub needs.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The session's queue, whose state holds its id and name too.
    pub outbox: Outbox,
}

impl Caller {
    /// The session's name: its outbox's (kept once, where the directory reads it too).
    pub fn name(&self) -> &Text {
        self.outbox.name()
    }

    /// The session's client id: its outbox's connection id (not kept twice, in every
    /// session's record).
    pub fn client_id(&self) -> u64 {
        self.outbox.conn_id()
    }
}

/// Where the body of a publish is.
#[derive(Debug)]
enum Body {
    /// In the PUBLISH frame, with its CRC32C if known.
    Inline { crc: Option<u32> },
    /// Streamed into a checked upload, which becomes the message's blob once the
    /// message has its id.
    Streamed(Verified),
}

impl Body {
    /// The body as the publish rules look at it.
    fn shape<'a>(&self, publish: &'a Publish) -> BodyShape<'a> {
        match self {
            Body::Inline { .. } => BodyShape::Frame(&publish.body),
            Body::Streamed(upload) => BodyShape::Streamed(upload.len()),
        }
    }
}

/// Where a publish goes, as the hub found it.
enum Destination {
    Channel(Arc<Channel>),
    /// A channel nobody created yet, under a valid name.
    NewChannel,
    Group(Arc<Group>),
}

impl Destination {
    /// The destination as the publish rules look at it.
    fn target<'a>(&'a self, publish: &'a Publish, caller: &'a Caller) -> Target<'a> {
        match self {
            Destination::Channel(channel) => Target::Channel(&channel.options),
            Destination::NewChannel => Target::NewChannel {
                name: &publish.channel,
            },
            Destination::Group(group) => Target::Group {
                name: &group.name,
                sender: caller.name(),
                member: group.is_member(caller.name()),
            },
        }
    }
}

/// A listener counted as accepting while this lives (see [`Hub::listener_up`]).
pub(crate) struct ListenerUp(Arc<Hub>);

impl Drop for ListenerUp {
    fn drop(&mut self) {
        self.0
            .counters
            .listeners_running
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything sessions share. Its state is reached only through its methods, which take
/// the locks in the documented order.
pub struct Hub {
    config: ServerConfig,
    /// Encodes frames shared by many receivers (live messages, events).
    codec: FrameCodec,
    channels: ChannelTable,
    routes: Routes,
    directory: Directory,
    groups: GroupTable,
    tags: TagIndex,
    counters: Counters,
    storage: Arc<dyn Storage>,
    /// Durable histories to visit again once the store has written their newest messages
    /// (see [`Hub::sweep_cold`]).
    cold_sweeps: Sweeps,
    /// Streamed bodies.
    blobs: BlobStore,
    hooks: Arc<dyn Hooks>,
    /// What may be published where, and how durably.
    rules: PublishRules,
    /// Ids of published messages.
    message_ids: MessageIds,
    /// Cancelled when the server starts shutting down.
    shutdown: CancellationToken,
    next_client_id: AtomicU64,
    storage_closed: std::sync::atomic::AtomicBool,
    /// What large frames still arriving may hold, all connections together.
    frame_budget: Arc<crate::connection::FrameBudget>,
    /// What clients' subscriptions, channels, groups and hashtags may take in all.
    budget: Arc<MemoryBudget>,
    /// Who may do what; replaced whole by a reload.
    policy: SharedPolicy,
    /// Bumped by every reload: sessions compare it with the one they last saw, and
    /// re-check themselves when it moved. A number rather than a watch: a watch's
    /// receiver is 16 bytes in every session's record, what it last saw 8.
    policy_generation: AtomicU64,
    /// The TLS listeners' certificates, reloaded with the policy.
    tls: crate::tls::TlsReloader,
    /// How a RELOAD request or a signal reads the configuration again, if it can.
    reload_source: Option<ReloadSource>,
    /// What each user uses now, against its limits.
    usage: UsageTable,
    /// Connections per IP address.
    addresses: Arc<AddressTable>,
    /// Where rate limits read the time.
    clock: Arc<dyn Clock>,
    /// Refused connections being told why, at most this many at once (the rest are
    /// closed without a word).
    refusals: Arc<tokio::sync::Semaphore>,
    /// Failed logins per address, and the bound on password checks at once.
    logins: crate::security::throttle::LoginThrottle,
    /// Cluster mode: this server as a node of a cluster (set once, at start).
    cluster: std::sync::OnceLock<Arc<crate::cluster::node::ClusterNode>>,
    /// Idle sessions parked without a task of their own.
    parking: crate::connection::Parking,
    /// What every connection's outbox shares.
    outboxes: Arc<crate::outbox::OutboxShared>,
    /// The runtime connections are served on, known from the first connection's writer
    /// (see [`Hub::runtime`]).
    runtime: std::sync::OnceLock<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub serving `config` under `policy`, built from its security settings (see
    /// [`Policy::build`]).
    pub fn new(
        config: ServerConfig,
        policy: Policy,
        storage: Arc<dyn Storage>,
        hooks: Arc<dyn Hooks>,
        blobs: BlobStore,
    ) -> Hub {
        let limits = Limits {
            max_header_len: Limits::DEFAULT_MAX_HEADER,
            max_content_len: config.max_frame,
        };
        let codec =
            FrameCodec::new(limits).with_mac_key(config.hmac_key.as_deref().map(MacKey::new));
        let frame_budget = Arc::new(crate::connection::FrameBudget::new(
            config.partial_frame_budget,
        ));
        let budget = Arc::new(MemoryBudget::new(config.max_memory));
        let shutdown = CancellationToken::new();
        let counters = Counters::default();
        let parking = crate::connection::Parking::default();
        let outboxes = Arc::new(
            crate::outbox::OutboxShared::new(
                config.outbound_queue,
                config.outbound_queue_bytes,
                shutdown.clone(),
                counters.slow_consumer_skipped.clone(),
                budget.clone(),
            )
            .with_parking(parking.waker()),
        );
        Hub {
            tags: TagIndex::new(usize::try_from(config.default_history).unwrap_or(1000)),
            rules: PublishRules::new(&config, storage.is_durable()),
            budget,
            policy: shared_policy(policy),
            policy_generation: AtomicU64::new(0),
            tls: crate::tls::TlsReloader::default(),
            reload_source: None,
            usage: UsageTable::default(),
            addresses: Arc::default(),
            clock: Arc::new(SystemClock::default()),
            refusals: Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS_TELLING)),
            logins: Default::default(),
            config,
            codec,
            channels: ChannelTable::default(),
            routes: Routes::default(),
            directory: Directory::default(),
            groups: GroupTable::default(),
            counters,
            storage,
            cold_sweeps: Sweeps::default(),
            blobs,
            hooks,
            message_ids: MessageIds::new(),
            shutdown,
            next_client_id: AtomicU64::new(1),
            storage_closed: std::sync::atomic::AtomicBool::new(false),
            frame_budget,
            cluster: std::sync::OnceLock::new(),
            parking,
            outboxes,
            runtime: std::sync::OnceLock::new(),
        }
    }

    /// The runtime connections are served on, where their writer tasks are spawned
    /// (whichever thread queues the item that starts one): one handle for the hub rather
    /// than one in every idle connection's parked writer. The first call must be on that
    /// runtime (a connection's writer is set up there, before anything starts it).
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime.get_or_init(tokio::runtime::Handle::current)
    }

    /// Cluster mode: this server as a node of a cluster, if it is one.
    pub(crate) fn cluster(&self) -> Option<&Arc<crate::cluster::node::ClusterNode>> {
        self.cluster.get()
    }

    /// Makes this hub a node of a cluster; once, before it serves anyone.
    pub(crate) fn join_cluster(&self, node: Arc<crate::cluster::node::ClusterNode>) {
        let _ = self.cluster.set(node);
    }

    /// Rate limits read the time from `clock` (tests move it by hand).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Hub {
        self.clock = clock;
        self
    }

    /// RELOAD requests and [`Hub::reload_from_source`] read the configuration so.
    pub fn with_reload_source(mut self, source: Option<ReloadSource>) -> Hub {
        self.reload_source = source;
        self
    }

    /// Gauges of the limit state: addresses and users tracked now.
    pub fn limit_gauges(&self) -> [(&'static str, u64); 2] {
        [
            ("limit_addresses_tracked", self.addresses.len() as u64),
            ("limit_users_tracked", self.usage.users() as u64),
        ]
    }

    /// Now, for rate limits, in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// What each user uses now.
    pub(crate) fn usage(&self) -> &UsageTable {
        &self.usage
    }

    /// Connections per IP address.
    /// What reloads the TLS listeners' files.
    pub(crate) fn tls_reloader(&self) -> &crate::tls::TlsReloader {
        &self.tls
    }

    pub(crate) fn addresses(&self) -> &Arc<AddressTable> {
        &self.addresses
    }

    /// Room to tell a refused connection why, if any is left.
    pub(crate) fn refusal_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.refusals.clone().try_acquire_owned().ok()
    }

    /// Reloads these TLS listeners' certificates with every reload.
    pub(crate) fn with_tls(mut self, tls: crate::tls::TlsReloader) -> Self {
        self.tls = tls;
        self
    }

    /// How many reloads put a new policy in force. Sequentially consistent, like the
    /// parked key a reload looks at after bumping it (see `Outbox::set_parked_key`):
    /// a session parking as a reload happens either is woken or sees the number move.
    pub(crate) fn policy_generation(&self) -> u64 {
        self.policy_generation.load(Ordering::SeqCst)
    }

    /// Puts the security settings and limits of `config` in force (the rest of it needs
    /// a restart), or keeps those in force and says why not. Live sessions re-check
    /// themselves against the new policy.
    pub fn reload(&self, config: &ServerConfig) -> Result<(), ReloadError> {
        // The certificates go first: they are the part that can still fail, and a
        // reload is all or nothing.
        let result = Policy::build(config.security.clone(), config.limits.clone())
            .and_then(|policy| {
                self.tls
                    .reload()
                    .map(|()| policy)
                    .map_err(|error| ReloadError::Tls(error.to_string()))
            })
            .map(|policy| {
                self.policy.store(Arc::new(policy));
                self.policy_generation.fetch_add(1, Ordering::SeqCst);
                // Sessions wait on their outbox's signal, not on the watch; one
                // registered after this looks at the watch before it first waits.
                self.directory.nudge_all();
            });
        self.reloaded(&result);
        result
    }

    /// Reads the configuration again from the reload source and puts it in force.
    /// Reading a configuration file is brief blocking I/O, done in place.
    pub fn reload_from_source(&self) -> Result<(), ReloadError> {
        let result = match &self.reload_source {
            None => Err(ReloadError::NoSource),
            Some(source) => source().map_err(ReloadError::Read),
        };
        match result {
            Ok(config) => self.reload(&config),
            Err(error) => {
                let result = Err(error);
                self.reloaded(&result);
                result
            }
        }
    }

    fn reloaded(&self, result: &Result<(), ReloadError>) {
        match result {
            Ok(()) => {
                Counters::add(&self.counters.reloads, 1);
                info!(target: log::GENERAL, generation = self.policy_generation(), "configuration reloaded");
            }
            Err(error) => {
                Counters::add(&self.counters.reloads_failed, 1);
                error!(target: log::ERROR, %error, "reload refused; the configuration in force is kept");
            }
        }
    }

    /// The server-wide budget for large frames still arriving.
    pub fn frame_budget(&self) -> &Arc<crate::connection::FrameBudget> {
        &self.frame_budget
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The server-wide memory budget.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// The codec of this server's frames (its limits and HMAC key).
    pub fn codec(&self) -> &FrameCodec {
        &self.codec
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn hooks(&self) -> &dyn Hooks {
        &*self.hooks
    }

    /// Where streamed bodies are received and kept.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Resolves once the server starts shutting down.
    pub fn shutting_down(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Cancelled when the server starts shutting down.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Starts shutting down: accept loops stop, sessions finish their request and close.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        // Every kill switch now reads as pulled; the sessions waiting are woken to see
        // it (one registered after this looks before it first waits).
        self.directory.nudge_all();
        // The task of the parked sessions ends them all, and then itself.
        self.parking.wake();
    }

    /// Idle sessions parked without a task of their own.
    pub(crate) fn parking(&self) -> &crate::connection::Parking {
        &self.parking
    }

    /// The outbound queue of a new connection, with this server's bounds; it is closed
    /// (its kill switch pulled) when the server shuts down.
    /// The security policy in force now.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Failed logins per address.
    pub(crate) fn logins(&self) -> &crate::security::throttle::LoginThrottle {
        &self.logins
    }

    pub fn new_outbox(&self, conn_id: u64, name: Text) -> (Outbox, OutboxReceiver) {
        Outbox::new(conn_id, name, &self.outboxes)
    }

    /// Makes a session reachable by others (relays by id, group posts by name).
    pub fn register_session(&self, entry: ClientEntry) {
        if let Some(cluster) = self.cluster() {
            cluster
                .backplane()
                .client_joined(crate::cluster::directory::record_of(&entry));
        }
        self.directory.insert(entry);
    }

    /// Removes a session and every route of its subscriptions.
    pub fn unregister_session(&self, client_id: u64, subscriptions: impl Iterator<Item = Pattern>) {
        for pattern in subscriptions {
            self.unsubscribe(&pattern, client_id);
        }
        self.directory.remove(client_id);
        if let Some(cluster) = self.cluster() {
            cluster.backplane().client_left(client_id);
        }
    }

    /// Sessions connected now.
    pub fn connection_count(&self) -> usize {
        self.directory.len()
    }

    /// The outbound queue of a connected client.
    pub fn outbox_of(&self, client_id: u64) -> Option<Outbox> {
        self.directory.outbox(client_id)
    }

    /// Replaces a connected client's permissions in the directory (a reload).
    pub fn set_client_permissions(
        &self,
        client_id: u64,
        permissions: Arc<crate::security::permissions::SessionPermissions>,
    ) {
        self.directory.set_permissions(client_id, permissions);
        // Other nodes decide relays and listings from the record: it follows a reload.
        if let Some(cluster) = self.cluster()
            && let Some(entry) = self.directory.entry(client_id)
        {
            cluster
                .backplane()
                .client_joined(crate::cluster::directory::record_of(&entry));
        }
    }

    /// A connected client's directory entry: its queue, user and permissions.
    pub fn client_entry(&self, client_id: u64) -> Option<directory::ClientEntry> {
        self.directory.entry(client_id)
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Whether the hashtag index holds `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.lock().contains(tag)
    }

    /// Recent messages carrying `tag`, oldest first.
    pub fn tagged(&self, tag: &str, since: Since, limit: Option<u64>) -> Vec<Arc<StoredMessage>> {
        self.tags.lock().range(tag, since, limit)
    }

    /// Resolves once everything stored so far is on disk.
    pub fn sync_storage(&self) -> SyncFuture {
        self.storage.sync()
    }

    /// Everything stored so far, synced on the calling thread if the store is idle
    /// (`None` when not done here: see [`Storage::sync_here`]).
    pub fn sync_storage_here(&self) -> Option<Result<(), crate::storage::StorageError>> {
        self.storage.sync_here()
    }

    /// Whether [`Hub::sync_storage_here`] would sync on the calling thread now.
    pub fn can_sync_storage_here(&self) -> bool {
        self.storage.can_sync_here()
    }

    /// How many syncs to disk the store made.
    pub fn store_syncs(&self) -> u64 {
        self.storage.syncs()
    }

    /// Whether the store takes writes, and its failures and recoveries.
    pub fn store_health(&self) -> crate::storage::StoreHealth {
        self.storage.health()
    }

    /// How long the store's syncs to disk took.
    pub fn store_sync_latency(&self) -> crate::metrics::HistogramSnapshot {
        self.storage.sync_latency()
    }

    /// Messages kept in the histories of every channel and group, and their bytes. Takes
    /// each history's lock in turn, never two at once.
    pub fn history_totals(&self) -> (u64, u64) {
        let mut totals = (0, 0);
        let channels = self.channels.list();
        let groups = self.groups.list();
        let histories = channels
            .iter()
            .map(|channel| &channel.history)
            .chain(groups.iter().map(|group| &group.history));
        for history in histories {
            let info = history.lock().info();
            totals.0 += info.count;
            totals.1 += info.bytes;
        }
        totals
    }

    /// Counts a listener as accepting until the returned guard is dropped.
    pub(crate) fn listener_up(self: &Arc<Self>) -> ListenerUp {
        Counters::add(&self.counters.listeners_running, 1);
        ListenerUp(self.clone())
    }

    /// What every record handed to the store weighed, in bytes.
    pub fn store_bytes_queued(&self) -> u64 {
        self.storage.bytes_queued()
    }

    /// The durability channels get when they ask for none: memory only without a durable
    /// store, else the store's sync policy.
    fn default_durability(&self) -> Durability {
        self.rules.default_durability()
    }

    /// Records where every history stands and closes the store (once).
    pub fn close_storage(&self) {
        if self.storage_closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut next_seqs = Vec::new();
        for channel in self.channels.list() {
            if self.rules.durability_of(&channel.options) != Durability::Memory {
                next_seqs.push((
                    LogKind::Channel,
                    channel.name.clone(),
                    channel.history.lock().next_seq(),
                ));
            }
        }
        for group in self.groups.list() {
            next_seqs.push((
                LogKind::Group,
                group.name.clone(),
                group.history.lock().next_seq(),
            ));
        }
        self.storage.close(&next_seqs);
        self.blobs.close();
    }

    /// A new session's client id: unique on this server, and in a cluster unique across
    /// it too, its node's number in the high 32 bits.
    pub fn next_client_id(&self) -> u64 {
        let local = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        match self.cluster.get() {
            Some(cluster) => cluster.backplane().node_id() << 32 | (local & 0xFFFF_FFFF),
            None => local,
        }
    }

    fn new_channel(&self, name: &str, options: ChannelOptions) -> Result<Channel, Refusal> {
        let cost = budget::channel_cost(name);
        self.budget.charge(cost, "channels")?;
        let stored = self.rules.durability_of(&options) != Durability::Memory;
        if stored && let Err(error) = self.storage.put_channel(name, &options) {
            self.budget.release(cost);
            return Err(storage_refusal(&error));
        }
        info!(target: log::GENERAL, channel = name, "channel created");
        let mut history = History::new(retention_of(&options, &self.config));
        self.keep_cold(LogKind::Channel, name, stored, &mut history);
        Ok(Channel::new(name.to_owned(), options, history))
    }

    /// Lets the history of `name`, whose messages go to the store when `stored`, keep
    /// only its newest messages in memory, when the store can read the others back
    /// (not in cluster mode, where a history is a cache of the backplane's).
    fn keep_cold(&self, kind: LogKind, name: &str, stored: bool, history: &mut History) {
        if stored && self.storage.can_read_back() && self.cluster.get().is_none() {
            let log = ColdLog::new(
                self.storage.clone(),
                kind,
                name,
                self.codec.clone(),
                self.counters.messages_read_back.clone(),
            )
            .swept_by(self.cold_sweeps.clone());
            history.keep_cold(log, self.config.history_in_memory);
        }
    }

    /// CREATE_CHANNEL, saying whether the channel is new.
    pub fn create_channel_new(
        &self,
        name: &str,
        requested: &ChannelOptions,
    ) -> Result<(Arc<Channel>, bool), Refusal> {
        subject::validate_channel(name)?;
        let options = effective_options(requested, &self.config, self.default_durability())?;
        self.channels
            .create(name, requested, || self.new_channel(name, options))
    }

    /// The options a CREATE_CHANNEL asking `requested` gets: the server's defaults filled
    /// in, and checked against its limits.
    pub(crate) fn channel_options(
        &self,
        name: &str,
        requested: &ChannelOptions,
    ) -> Result<ChannelOptions, Refusal> {
        subject::validate_channel(name)?;
        effective_options(requested, &self.config, self.default_durability())
    }

    /// Whether a channel of this name exists.
    pub fn has_channel(&self, name: &str) -> bool {
        self.channels.get(name).is_some()
    }

    /// DELETE_CHANNEL: the channel, its history (streamed bodies included) and its
    /// hashtag entries go, in memory and in storage. Every connection routed to it (by
    /// its name or a wildcard) is told with an EVENT `CHANNEL_DELETED`; routes stay, so
    /// a subscription keeps matching a channel created later under that name (clients
    /// end their subscriptions to the exact name when told). The name may be created
    /// again, as a new empty channel whose sequence numbers start at 1.
    pub fn delete_channel(&self, name: &str) -> Result<(), Refusal> {
        subject::validate_channel(name)?;
        let mut event = Event::new(EventKind::ChannelDeleted);
        event.channel = name.into();
        event.time_us = now_us();
        let frame = self.shared_frame(&Packet::Event(event));
        let (messages, stored, tags_left) = self
            .channels
            .remove_with(name, |channel| {
                let mut history = channel.history.lock();
                let tags_out = history.take_tags_out();
                let messages = history.take_all();
                // Under the history lock, after every append of the channel; under the
                // table's, before the name can be created again.
                let stored = if self.rules.durability_of(&channel.options) == Durability::Memory {
                    Ok(())
                } else {
                    self.storage.delete_channel(name)
                };
                let mut tags = self.tags.lock();
                let mut tags_left = tags.remove(&messages, &self.budget);
                tags_left.extend(tags.remove_channel(&tags_out, name, &self.budget));
                drop(tags);
                // Still under the history lock: after every message of the channel queued.
                if let Some(frame) = &frame {
                    for outbox in self.routes.connections_for(name) {
                        outbox.deliver(frame.clone());
                    }
                }
                drop(history);
                (messages, stored, tags_left)
            })
            .ok_or_else(|| Refusal::not_found(format!("no channel named {name}")))?;
        for tag in &tags_left {
            self.usage.disown(Owned::Hashtag, tag);
        }
        // The last references to streamed bodies, unless a reader is still sending one.
        drop(messages);
        self.budget.release(budget::channel_cost(name));
        self.usage.disown(Owned::Channel, name);
        info!(target: log::GENERAL, channel = name, "channel deleted");
        stored.map_err(|e| storage_refusal(&e))
    }

    /// Trims the messages past their maximum age from every channel that has one, so
    /// that an idle channel lets them go too (reads already skip them). Visits only
    /// those channels.
    pub fn expire_aged(&self) {
        let now = now_us();
        for channel in self.channels.aging() {
            let mut history = channel.history.lock();
            if let Some(through) = history.trim(now)
                && self.rules.durability_of(&channel.options) != Durability::Memory
            {
                self.storage.trim(LogKind::Channel, &channel.name, through);
            }
        }
    }

    /// Visits the durable histories that a publish left holding more in memory than their
    /// bounds (the store had not written their newest messages yet), so that a history
    /// that takes no more publishes still lets them go once they are written.
    pub fn sweep_cold(&self) {
        let due = std::mem::take(&mut *self.cold_sweeps.lock());
        for (kind, name) in due {
            match kind {
                LogKind::Channel => {
                    if let Some(channel) = self.channels.get(&name) {
                        channel.history.lock().sweep_cold();
                    }
                }
                LogKind::Group => {
                    if let Some(group) = self.groups.get(&name) {
                        group.history.lock().sweep_cold();
                    }
                }
            }
        }
    }

    /// Runs [`Hub::expire_aged`] and [`Hub::sweep_cold`] every `period` until the server
    /// shuts down, and lets go of the large-frame buffers kept unused once large frames
    /// stopped coming; the server owns the task.
    pub async fn run_expiry(self: Arc<Self>, period: std::time::Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutting_down() => return,
                _ = ticks.tick() => {
                    self.expire_aged();
                    self.sweep_cold();
                    self.frame_budget.buffers().release_if_idle();
                }
            }
        }
    }

    /// PUBLISH to a channel: stores, indexes and routes the message in one critical
    /// section of the channel, so that subscribers replaying history never miss it nor
    /// see it twice.
    ///
    /// `body_crc` is the CRC32C of `publish.body` when the caller knows it (the body as
    /// checked in its frame), which spares computing it again for the live frame.
    pub fn publish(
        &self,
        caller: &Caller,
        publish: Publish,
        body_crc: Option<u32>,
    ) -> Result<Published, Refusal> {
        self.publish_body(caller, publish, Body::Inline { crc: body_crc }, None)
    }

    /// [`Hub::publish`] of one of the publishes read together: `run` keeps the channel
    /// the run published to last, used again for the same name instead of a lookup in
    /// the channel table (its read lock, a search and a reference count per publish),
    /// and set to the channel this publish went to. A channel deleted since is looked
    /// up again, as a publish without a run would.
    ///
    /// `now_us` is the run's time (one clock read for the publishes read together): a
    /// publish to the run's channel is made at that time, or after the channel's last
    /// message if that is later.
    ///
    /// The publish is lent, not moved in: a `Publish` is large enough for its moves
    /// to show; only a publish that misses the run's channel is taken out of `publish`.
    pub fn publish_in_run(
        &self,
        caller: &Caller,
        publish: &mut Publish,
        body_crc: Option<u32>,
        run: &mut RunChannel,
        now_us: u64,
    ) -> Result<Published, Refusal> {
        if publish.scope == Scope::Channel {
            // A publish alike to the run's last one went where it went, and its message
            // may be encoded from the head that one's left, without comparing names.
            let alike = run.alike(publish);
            let found = match alike {
                Some(_) => run.channel.take(),
                None => run
                    .channel
                    .take_if(|last| last.name == publish.channel.as_str()),
            };
            if let Some(channel) = found {
                let body = Body::Inline { crc: body_crc };
                let admission = self
                    .rules
                    .admit(Target::Channel(&channel.options), body.shape(publish))?;
                let tags = subject::message_hashtags(&publish.content_type, &publish.body);
                let mut history = channel.history.lock();
                if !history.is_deleted() {
                    let mut head = alike;
                    let made = self.publish_locked(
                        caller,
                        &channel,
                        &mut history,
                        &admission,
                        publish,
                        body,
                        tags,
                        now_us,
                        &mut head,
                    );
                    drop(history);
                    run.channel = Some(channel);
                    run.published(publish, made.is_ok().then_some(head).flatten(), alike);
                    return made.map(|(stored, delivered)| {
                        self.published(&stored, delivered, admission.must_sync())
                    });
                }
            }
        }
        run.last = None;
        let publish = std::mem::take(publish);
        self.publish_body(
            caller,
            publish,
            Body::Inline { crc: body_crc },
            Some(&mut run.channel),
        )
    }

    /// PUBLISH of a body that was streamed into `upload`.
    pub fn publish_streamed(
        &self,
        caller: &Caller,
        publish: Publish,
        upload: Verified,
    ) -> Result<Published, Refusal> {
        self.publish_body(caller, publish, Body::Streamed(upload), None)
    }

    /// Where a publish goes. A hashtag is never a destination; a channel nobody created
    /// is one (the publish rules decide whether publishing may create it).
    fn destination(&self, publish: &Publish) -> Result<Destination, Refusal> {
        match publish.scope {
            Scope::Channel => {
                let name = publish.channel.as_str();
                // A name in the table was validated when its channel was created (and
                // stored): looking it up first spares validating the name on every publish.
                match self.channels.get(name) {
                    Some(channel) => Ok(Destination::Channel(channel)),
                    None => {
                        subject::validate_channel(name)?;
                        Ok(Destination::NewChannel)
                    }
                }
            }
            Scope::Group => self.group(&publish.channel).map(Destination::Group),
            Scope::Tag => Err(Refusal::invalid(
                "hashtags cannot be published to; put #tag in a channel message",
            )),
        }
    }

    /// Judges a publish by the publish rules without making it: a streamed publish
    /// before its body arrives (so that a refused upload is refused before gigabytes are
    /// sent), and again once it has arrived, to know whether its body must be synced.
    pub fn admit(
        &self,
        caller: &Caller,
        publish: &Publish,
        body: BodyShape<'_>,
    ) -> Result<Admission, Refusal> {
        let destination = self.destination(publish)?;
        self.rules.admit(destination.target(publish, caller), body)
    }

    /// `found`, if given, is set to the channel the publish went to.
    fn publish_body(
        &self,
        caller: &Caller,
        publish: Publish,
        body: Body,
        found: Option<&mut Option<Arc<Channel>>>,
    ) -> Result<Published, Refusal> {
        let shape = body.shape(&publish);
        let destination = self.destination(&publish)?;
        let admission = self
            .rules
            .admit(destination.target(&publish, caller), shape)?;
        match destination {
            Destination::Channel(channel) => {
                let published = self.publish_to_channel(caller, &channel, admission, publish, body);
                if let Some(found) = found {
                    *found = Some(channel);
                }
                published
            }
            Destination::NewChannel => {
                let name = publish.channel.as_str();
                let options = self.rules.default_options()?;
                let (channel, created) = self
                    .channels
                    .get_or_insert_with(name, || self.new_channel(name, options))?;
                // Created meanwhile by another session, maybe with options of its own.
                let admission = if created {
                    admission
                } else {
                    self.rules.admit(Target::Channel(&channel.options), shape)?
                };
                let published = self.publish_to_channel(caller, &channel, admission, publish, body);
                if let Some(found) = found {
                    *found = Some(channel);
                }
                published
            }
            Destination::Group(group) => {
                self.post_to_group(caller, &group, admission, publish, body)
            }
        }
    }

    /// Channel PUBLISH, admitted: stores, indexes and routes the message in one critical
    /// section of the channel.
    fn publish_to_channel(
        &self,
        caller: &Caller,
        channel: &Channel,
        admission: Admission,
        publish: Publish,
        body: Body,
    ) -> Result<Published, Refusal> {
        let tags = subject::message_hashtags(&publish.content_type, &publish.body);
        let mut history = channel.history.lock();
        if history.is_deleted() {
            return Err(deleted_meanwhile("channel", &channel.name));
        }
        let (stored, delivered) = self.publish_locked(
            caller,
            channel,
            &mut history,
            &admission,
            &publish,
            body,
            tags,
            now_us(),
            &mut None,
        )?;
        drop(history);
        Ok(self.published(&stored, delivered, admission.must_sync()))
    }

    /// [`Hub::publish_to_channel`] once the history is locked and found not deleted, at
    /// `now_us`: returns the message and on how many connections it was queued. `head`
    /// is as [`Hub::seal`] takes it.
    // The parts of one publish, as its callers hold them.
    #[allow(clippy::too_many_arguments)]
    fn publish_locked(
        &self,
        caller: &Caller,
        channel: &Channel,
        history: &mut History,
        admission: &Admission,
        publish: &Publish,
        body: Body,
        tags: Vec<String>,
        now_us: u64,
        head: &mut Option<u64>,
    ) -> Result<(Arc<StoredMessage>, u64), Refusal> {
        let name = channel.name.as_str();
        let stored = self.seal(caller, publish, history, tags, body, now_us, head)?;
        if admission.is_stored() {
            self.store(LogKind::Channel, name, &stored, *admission)?;
        }
        let delivered = self.commit(
            channel,
            history,
            &stored,
            admission.drop_oldest,
            admission.is_stored(),
        );
        Ok((stored, delivered))
    }

    /// Keeps a message of `channel` in its history (trimming the store too when `stored`),
    /// indexes its hashtags and routes it, under the history's lock, which the caller
    /// holds. Returns on how many connections it was queued.
    fn commit(
        &self,
        channel: &Channel,
        history: &mut History,
        message: &Arc<StoredMessage>,
        drop_oldest: bool,
        stored: bool,
    ) -> u64 {
        let name = channel.name.as_str();
        if let Some(through) = history.push(message.clone(), stored, message.time_us())
            && stored
        {
            self.storage.trim(LogKind::Channel, name, through);
        }
        if message.tags().is_empty() {
            self.routes.deliver(name, &[], message, drop_oldest)
        } else {
            let mut tags = self.tags.lock();
            tags.push(message, max_age_us(&channel.options), &self.budget);
            let delivered = self
                .routes
                .deliver(name, message.tags(), message, drop_oldest);
            drop(tags);
            delivered
        }
    }

    /// Hands a message to the store; one its publisher waits to see synced is left for
    /// that sync to write.
    fn store(
        &self,
        kind: LogKind,
        log: &str,
        stored: &Arc<StoredMessage>,
        admission: Admission,
    ) -> Result<(), Refusal> {
        let queued = if admission.must_sync() {
            self.storage.append_awaited(kind, log, stored)
        } else {
            self.storage.append(kind, log, stored)
        };
        queued.map_err(|e| refused_to_store(stored, &e))
    }

    /// Counts a publish stored and queued on `delivered` connections, and its answer.
    fn published(&self, stored: &StoredMessage, delivered: u64, must_sync: bool) -> Published {
        Counters::add(&self.counters.messages_published, 1);
        Counters::add(&self.counters.messages_delivered, delivered);
        Published {
            ack: PublishAck {
                id: stored.id(),
                seq: stored.seq(),
            },
            must_sync,
        }
    }

    /// Builds and encodes the stored form of a publish at the history's next position,
    /// made at `now_us` (or after the history's last message, if that is later).
    ///
    /// `head`: given, the generation of the history's [`MessageHead`] when it encoded a
    /// message from the same caller with this publish's channel, scope, content type and
    /// user headers, which the caller knows; set to the generation of the head the
    /// message was encoded through, or `None` if it was not.
    ///
    /// [`MessageHead`]: switchboard_proto::message_head::MessageHead
    // The parts of one publish, as its callers hold them.
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        caller: &Caller,
        publish: &Publish,
        history: &mut History,
        tags: Vec<String>,
        body: Body,
        now_us: u64,
        head: &mut Option<u64>,
    ) -> Result<Arc<StoredMessage>, Refusal> {
        let alike = head.take();
        let time_us = history.next_time(now_us);
        // Every message's id comes from here, under its history's lock, so that ids
        // follow sequence numbers whatever the size of the body.
        let id = self.message_ids.next(time_us);
        let (stream, body_crc) = match &body {
            Body::Streamed(upload) => (
                Some(StreamStart {
                    stream_id: 0,
                    total_len: upload.len(),
                }),
                None,
            ),
            Body::Inline { crc } => (None, *crc),
        };
        let envelope = Envelope {
            scope: publish.scope,
            channel: &publish.channel,
            id,
            seq: history.next_seq(),
            time_us,
            sender_id: caller.client_id(),
            sender_name: caller.name(),
            content_type: &publish.content_type,
            user_headers: &publish.user_headers,
            body: if stream.is_some() { &[] } else { &publish.body },
            body_crc,
            stream,
        };
        let too_large =
            |e: switchboard_proto::ProtoError| Refusal::new(ErrorCode::TooLarge, e.to_string());
        match body {
            Body::Streamed(upload) => {
                let stored =
                    StoredMessage::encode(&self.codec, &envelope, tags).map_err(too_large)?;
                let blob = self
                    .blobs
                    .store(upload, &id)
                    .map_err(|e| blob_refusal(&e))?;
                Ok(Arc::new(stored.with_blob(blob)))
            }
            // A large body is not copied: the message keeps it in the PUBLISH's buffer,
            // which the frame reader gave that frame alone.
            Body::Inline { .. } if publish.body.len() >= message::BODY_APART_BYTES => {
                StoredMessage::encode_with_body(&self.codec, &envelope, &publish.body, tags)
                    .map(Arc::new)
                    .map_err(too_large)
            }
            Body::Inline { .. } => {
                let spare = recycle::take();
                let message_head = history.message_head();
                let stored = StoredMessage::encode_reusing(
                    spare,
                    &self.codec,
                    &envelope,
                    tags,
                    message_head,
                    alike,
                )
                .map_err(too_large)?;
                *head = Some(message_head.generation());
                Ok(stored)
            }
        }
    }

    /// SUBSCRIBE: registers the route and queues the acknowledgement and the replayed
    /// history as one item, while holding the locks that order publishes on every
    /// channel replayed, so that replay and live delivery neither overlap nor leave a gap.
    /// Refused, with nothing registered, when the replay cannot be read back from the
    /// store.
    // Each argument is a different part of one subscription; bundling them would only
    // move the list elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &self,
        caller: &Caller,
        request_id: u32,
        subscription_id: u64,
        pattern: &Pattern,
        replay: Replay,
        permit: ReplyPermit,
        filter: Option<&routes::DeliveryFilter>,
    ) -> Result<(), Refusal> {
        let replay_limit = caller.outbox.reply_limit();
        // What a filtered subscription may replay: channels it may subscribe to and read.
        let readable = |channel: &str| {
            filter.is_none_or(|permissions| {
                use crate::security::permissions::Operation;
                permissions.allows(Operation::Subscribe, channel)
                    && permissions.allows(Operation::History, channel)
            })
        };
        let send = |permit: ReplyPermit, mut messages: Vec<Arc<StoredMessage>>| {
            keep_newest_within(&mut messages, replay_limit);
            let ack = SubscribeAck {
                subscription_id,
                replay_count: messages.len() as u64,
            };
            permit.send(Outgoing::Sequence {
                request_id,
                head: Some(Box::new(Packet::SubscribeAck(ack))),
                messages,
                tail: None,
            });
        };
        let replay = replay_range(replay);
        Counters::add(&self.counters.subscriptions, 1);
        match pattern {
            Pattern::Tag(tag) => {
                let tags = self.tags.lock();
                let mut messages =
                    replay.map_or_else(Vec::new, |(since, limit)| tags.range(tag, since, limit));
                if filter.is_some() {
                    messages.retain(|message| {
                        message
                            .envelope()
                            .is_ok_and(|envelope| readable(&envelope.channel))
                    });
                }
                let mut routes = self.routes.write();
                routes.add(pattern, &caller.outbox, filter);
                send(permit, messages);
                drop(routes);
                drop(tags);
            }
            _ if replay.is_none() => {
                // Queued under the routes lock, so no live message can overtake the ack.
                let mut routes = self.routes.write();
                routes.add(pattern, &caller.outbox, filter);
                send(permit, Vec::new());
                drop(routes);
            }
            Pattern::Exact(_) | Pattern::Wildcard(_) => {
                let Some((since, limit)) = replay else {
                    return Ok(());
                };
                let matching = |table: &BTreeMap<String, Arc<Channel>>| -> Vec<Arc<Channel>> {
                    match pattern {
                        Pattern::Exact(name) => table.get(name).cloned().into_iter().collect(),
                        _ => table
                            .iter()
                            .filter(|(name, _)| pattern.matches_channel(name) && readable(name))
                            .map(|(_, channel)| channel.clone())
                            .collect(),
                    }
                };
                let refused = |error: &StorageError| {
                    self.counters.subscriptions.fetch_sub(1, Ordering::Relaxed);
                    storage_refusal(error)
                };
                // Each history's part is planned under the locks that order publishes,
                // cut as the whole replay is. A part that reaches out of memory is read
                // from the store with no lock held, and the locks are taken again for
                // what was published meanwhile and for the route: the replay and the
                // live messages then neither overlap nor leave a gap, and no publisher
                // waits for the store.
                // Queued under the routing lock, with the histories still locked, so no
                // live message can overtake the replay or be missing from it.
                let register = |messages: Vec<Arc<StoredMessage>>, several: bool| {
                    let mut messages = messages;
                    if several {
                        messages.sort_by_key(|m| m.time_us());
                    }
                    let mut routes = self.routes.write();
                    routes.add(pattern, &caller.outbox, filter);
                    send(permit, messages);
                };
                let table = self.channels.read();
                let channels = matching(&table);
                // The table is a BTreeMap, so these locks are taken in name order.
                let histories: Vec<_> = channels.iter().map(|c| c.history.lock()).collect();
                let planned: Vec<(HistoryRead, u64)> = histories
                    .iter()
                    .map(|history| {
                        let plan = history.replay(since, limit, replay_limit, ITEM_OVERHEAD);
                        (plan, history.info().last_seq)
                    })
                    .collect();
                if !planned.iter().any(|(plan, _)| plan.needs_store()) {
                    let mut messages = Vec::new();
                    for (plan, _) in planned {
                        messages.extend(plan.read().map_err(|error| refused(&error))?);
                    }
                    register(messages, histories.len() > 1);
                    return Ok(());
                }
                drop(histories);
                drop(table);
                let mut parts = Vec::with_capacity(planned.len());
                for (channel, (plan, planned_through)) in channels.into_iter().zip(planned) {
                    parts.push(ReadAhead {
                        channel,
                        messages: plan.read().map_err(|error| refused(&error))?,
                        planned_through,
                    });
                }
                let table = self.channels.read();
                let channels = matching(&table);
                let histories: Vec<_> = channels.iter().map(|c| c.history.lock()).collect();
                let mut messages = Vec::new();
                for (channel, history) in channels.iter().zip(&histories) {
                    let ahead = parts
                        .iter_mut()
                        .find(|part| Arc::ptr_eq(&part.channel, channel));
                    let part = match ahead {
                        Some(ahead) => ahead.complete(history, since, limit, replay_limit),
                        // Made since the plan: replayed as it is now.
                        None => history
                            .replay(since, limit, replay_limit, ITEM_OVERHEAD)
                            .read(),
                    };
                    messages.extend(part.map_err(|error| refused(&error))?);
                }
                register(messages, histories.len() > 1);
            }
        }
        Ok(())
    }

    /// UNSUBSCRIBE (or a session closing): the connection no longer wants what `pattern`
    /// routed to it, unless another of its subscriptions shares the route.
    pub fn unsubscribe(&self, pattern: &Pattern, conn_id: u64) {
        self.routes.write().remove(pattern, conn_id);
        if let Some(cluster) = self.cluster.get() {
            cluster.subscription_ended(self, pattern);
        }
        self.budget.release(budget::subscription_cost(pattern));
        self.counters.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Charges a new subscription to `pattern` to the memory budget, or refuses it. What
    /// is charged is given back by [`Hub::unsubscribe`].
    pub fn admit_subscription(&self, pattern: &Pattern) -> Result<(), Refusal> {
        self.budget
            .charge(budget::subscription_cost(pattern), "subscriptions")
    }

    /// Runs `read` on the history of the channel or group `name` (groups: for members
    /// only); returns also the history's last seq.
    pub fn read_history<T>(
        &self,
        scope: Scope,
        name: &str,
        reader: &str,
        read: impl FnOnce(&History) -> T,
    ) -> Result<(T, u64), Refusal> {
        match scope {
            Scope::Channel => {
                subject::validate_channel(name)?;
                let channel = self
                    .channels
                    .get(name)
                    .ok_or_else(|| Refusal::not_found(format!("no channel named {name}")))?;
                let history = channel.history.lock();
                Ok((read(&history), history.info().last_seq))
            }
            Scope::Group => self.read_group_history(name, reader, read),
            // Tags have no history of their own; callers read the tag index instead.
            Scope::Tag => Err(Refusal::invalid(format!(
                "{name} is a hashtag, not a history"
            ))),
        }
    }

    /// Encodes a push once for many receivers.
    pub fn shared_frame(&self, packet: &Packet) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        match self
            .codec
            .encode_packet(0, Flags::empty(), packet, &mut buf)
        {
            Ok(()) => Some(buf.freeze()),
            Err(e) => {
                error!(target: log::ERROR, error = %e, "cannot encode push");
                None
            }
        }
    }
}

/// Cuts a replay to its newest messages that weigh at most `limit` bytes in the queue
/// (at least one). A replay is a snapshot, taken under the locks that order it with live
/// delivery, so it cannot be produced page by page like a history fetch; this is its
/// bound (SUBSCRIBE_ACK's replay count says how many were kept).
fn keep_newest_within(messages: &mut Vec<Arc<StoredMessage>>, limit: usize) {
    let mut weight = messages_weight(messages);
    let mut cut = 0;
    while weight > limit && cut + 1 < messages.len() {
        weight -= messages_weight(&messages[cut..=cut]);
        cut += 1;
    }
    messages.drain(..cut);
}

/// A channel's part of a replay, read from the store with no lock held: its messages,
/// and the channel's last seq when it was planned.
struct ReadAhead {
    channel: Arc<Channel>,
    messages: Vec<Arc<StoredMessage>>,
    planned_through: u64,
}

impl ReadAhead {
    /// The part as the replay asks for it now, under the channel's lock again: what was
    /// read, then what was published since the plan, cut again to the replay's count
    /// and bytes.
    fn complete(
        &mut self,
        history: &History,
        since: Since,
        limit: Option<u64>,
        replay_limit: usize,
    ) -> Result<Vec<Arc<StoredMessage>>, StorageError> {
        let after = self.planned_through.saturating_add(1);
        let from = match since {
            Since::Seq(seq) => seq.max(after),
            Since::All | Since::Time(_) => after,
        };
        let mut newer = history
            .replay(Since::Seq(from), None, replay_limit, ITEM_OVERHEAD)
            .read()?;
        if let Since::Time(time) = since {
            newer.retain(|message| message.time_us() >= time);
        }
        let mut part = std::mem::take(&mut self.messages);
        part.extend(newer);
        if let Some(limit) = limit {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            part.drain(..part.len().saturating_sub(limit));
        }
        keep_newest_within(&mut part, replay_limit);
        Ok(part)
    }
}

/// The range a replay asks for, or `None` for live only.
fn replay_range(replay: Replay) -> Option<(Since, Option<u64>)> {
    match replay {
        Replay::None => None,
        Replay::SinceSeq(seq) => Some((Since::Seq(seq), None)),
        Replay::SinceTime(time) => Some((Since::Time(time), None)),
        Replay::Last(count) => Some((Since::All, Some(count))),
    }
}

/// A message the store refused is never published: its streamed body goes with it.
fn refused_to_store(stored: &StoredMessage, error: &crate::storage::StorageError) -> Refusal {
    stored.retire();
    storage_refusal(error)
}

/// A publish found its channel or group, which was deleted before it could add to it.
fn deleted_meanwhile(what: &str, name: &str) -> Refusal {
    Refusal::not_found(format!("{what} {name} was deleted meanwhile"))
}

pub(crate) fn storage_refusal(error: &crate::storage::StorageError) -> Refusal {
    let code = if error.is_disk_full() {
        // Refused before anything was written: the store is healthy, the disk is not.
        ErrorCode::StorageFull
    } else if error.is_unavailable() {
        ErrorCode::StorageUnavailable
    } else {
        error!(target: log::ERROR, %error, "storage failed");
        ErrorCode::Internal
    };
    Refusal::new(code, format!("storage failed: {error}"))
}

/// A streamed body that could not be stored.
pub(crate) fn blob_refusal(error: &crate::blobs::BlobError) -> Refusal {
    use crate::blobs::BlobError;
    let code = match error {
        BlobError::Full(_) => ErrorCode::StorageFull,
        BlobError::Unavailable(_) => ErrorCode::StorageUnavailable,
        _ => ErrorCode::Internal,
    };
    Refusal::new(code, error.to_string())
}

#[cfg(test)]
mod publish_run_tests {
    use super::*;
    use crate::hooks::NoHooks;
    use crate::security::SecurityConfig;
    use crate::storage::MemoryStorage;

    fn hub() -> Hub {
        Hub::new(
            ServerConfig::default(),
            Policy::new(SecurityConfig::default()),
            Arc::new(MemoryStorage),
            Arc::new(NoHooks),
            BlobStore::temporary().expect("a temporary blob directory"),
        )
    }

    fn hello(channel: &str) -> Publish {
        Publish {
            channel: channel.into(),
            body: Bytes::from_static(b"hello"),
            ..Publish::default()
        }
    }

    /// The channel a run keeps is used while it lives; once deleted (by another
    /// session, between two publishes of one read), the next publish finds the name
    /// anew and creates the channel again, as a publish outside a run does.
    #[tokio::test]
    async fn a_run_publishes_to_a_channel_created_again_after_a_delete() {
        let hub = hub();
        let (outbox, _queue) = hub.new_outbox(1, "ada".into());
        let caller = Caller { outbox };
        let mut last = RunChannel::default();
        let first = hub.publish_in_run(&caller, &mut hello("chat"), None, &mut last, now_us());
        assert_eq!(first.map(|made| made.ack.seq).ok(), Some(1));
        let second = hub.publish_in_run(&caller, &mut hello("chat"), None, &mut last, now_us());
        assert_eq!(second.map(|made| made.ack.seq).ok(), Some(2));
        let kept = last.channel().cloned().expect("the run keeps the channel");
        hub.delete_channel("chat").expect("deleted");
        let again = hub.publish_in_run(&caller, &mut hello("chat"), None, &mut last, now_us());
        assert_eq!(
            again
                .map(|made| made.ack.seq)
                .map_err(|refusal| refusal.message),
            Ok(1),
            "a new channel, from its first sequence number"
        );
        let now = last
            .channel()
            .cloned()
            .expect("the run keeps the new channel");
        assert!(!Arc::ptr_eq(&kept, &now));
        assert!(hub.has_channel("chat"));
        // Another channel in between: each publish goes where it names.
        let other = hub.publish_in_run(
            &caller,
            &mut hello("news"),
            None,
            &mut RunChannel::at(now),
            now_us(),
        );
        assert_eq!(other.map(|made| made.ack.seq).ok(), Some(1));
    }
}
