//! Starting and stopping a server: the builder, the listeners and their accept loops, and
//! the handle that shuts everything down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::blobs::BlobStore;
use crate::config::ServerConfig;
use crate::connection::{self, Peer};
use crate::error::ServerError;
use crate::hooks::{Hooks, NoHooks};
use crate::hub::Hub;
use crate::log;
use crate::security::addresses::{AddressRefusal, AddressSlot};
use crate::security::limits::{Clock, retry_hint};
use crate::security::reload::ReloadSource;
use crate::security::{Policy, ReloadError};
use crate::storage::{FjallStorage, MemoryStorage, Storage, StoreOptions, SyncPolicy};
use crate::tls::{TlsError, TlsListener, TlsListenerConfig, TlsReloader, accept_tls};

/// Entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::default(),
            storage: None,
            hooks: None,
            clock: None,
            reload_source: None,
            backplane: None,
            node_link: None,
        }
    }
}

/// Configures and starts a server.
pub struct ServerBuilder {
    config: ServerConfig,
    storage: Option<Arc<dyn Storage>>,
    hooks: Option<Arc<dyn Hooks>>,
    clock: Option<Arc<dyn Clock>>,
    reload_source: Option<ReloadSource>,
    backplane: Option<Arc<dyn crate::cluster::Backplane>>,
    node_link: Option<std::net::TcpListener>,
}

impl ServerBuilder {
    /// Cluster mode: this server becomes a node of the cluster sharing `backplane`. Its
    /// channels, history and live messages are then the cluster's; it keeps no store of
    /// its own (a data directory holds only streamed bodies).
    pub fn backplane(mut self, backplane: Arc<dyn crate::cluster::Backplane>) -> Self {
        self.backplane = Some(backplane);
        self
    }

    /// Cluster mode: where this node answers other nodes asking for the streamed bodies
    /// it keeps (the node link). The backplane must advertise this listener's address.
    /// Without it, other nodes cannot read bodies streamed to this node.
    pub fn node_link(mut self, listener: std::net::TcpListener) -> Self {
        self.node_link = Some(listener);
        self
    }

    /// Replaces the whole configuration (listeners included).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a TCP listener ("127.0.0.1:7420"; port 0 for any free port).
    pub fn listen_tcp(mut self, addr: impl Into<String>) -> Self {
        self.config.tcp.push(addr.into());
        self
    }

    /// Adds a TLS listener (its files are read at start; see [`TlsListenerConfig`]).
    pub fn listen_tls(mut self, listener: TlsListenerConfig) -> Self {
        self.config.tls.push(listener);
        self
    }

    /// Listens on a Unix socket too. Sessions on it are admins.
    pub fn listen_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.unix = Some(path.into());
        self
    }

    pub fn hmac_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.config.hmac_key = Some(key.into());
        self
    }

    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.config.admin_token = Some(token.into());
        self
    }

    /// Keeps history in this directory (created if its parent exists).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// When the store syncs to disk (with a data directory).
    pub fn sync(mut self, policy: SyncPolicy) -> Self {
        self.config.sync = policy;
        self
    }

    /// Uses this store instead of the one `data_dir` would open.
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    pub fn hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Rate limits read the time from `clock` instead of the system's (a
    /// [`ManualClock`](crate::security::limits::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How the server reads its configuration again when asked to reload (a RELOAD
    /// request, or [`ServerHandle::reload_from_source`]): the binary re-reads the file
    /// it was started with. Only the security settings and limits of what it returns are
    /// put in force.
    pub fn reload_source(
        mut self,
        source: impl Fn() -> Result<ServerConfig, String> + Send + Sync + 'static,
    ) -> Self {
        self.reload_source = Some(Arc::new(source));
        self
    }

    /// Changes the configuration in place.
    pub fn configure(mut self, change: impl FnOnce(&mut ServerConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Loads storage, binds every listener and starts accepting.
    pub async fn start(self) -> Result<ServerHandle, ServerError> {
        let config = self.config;
        if config.tcp.is_empty() && config.tls.is_empty() && config.unix.is_none() {
            return Err(ServerError::NoListener);
        }
        let policy = Policy::build(config.security.clone(), config.limits.clone())?;
        // Read before anything is opened: a bad certificate file is a start-up error.
        let tls_listeners = config
            .tls
            .iter()
            .map(|settings| TlsListener::load(settings.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut guard = None;
        let storage: Arc<dyn Storage> = match (self.storage, &config.data_dir) {
            (Some(storage), _) => storage,
            // The cluster's backplane is the store.
            (None, _) if self.backplane.is_some() => Arc::new(MemoryStorage),
            (None, Some(dir)) => {
                let options = StoreOptions {
                    reserve: Some(config.disk_reserve),
                };
                let store = FjallStorage::open_with(dir, config.sync, options)?;
                guard = store.guard();
                Arc::new(store)
            }
            (None, None) => Arc::new(MemoryStorage),
        };
        let hooks = self.hooks.unwrap_or_else(|| Arc::new(NoHooks));
        let blobs = match &config.data_dir {
            // A node's bodies are of use only while it runs (it comes back as another
            // node, which no message names): a directory of their own, emptied at start,
            // apart from the bodies of a server that used this data directory alone.
            Some(dir) if self.backplane.is_some() => {
                let blobs = dir.join("cluster-blobs");
                let _ = std::fs::remove_dir_all(&blobs);
                BlobStore::open(blobs, false)
            }
            Some(dir) => BlobStore::open(dir.join("blobs"), true),
            None => BlobStore::temporary(),
        }
        .map_err(|e| ServerError::Storage(crate::storage::StorageError(e.to_string())))?
        .with_guard(guard)
        .with_max_bytes(config.max_blob_bytes);
        // One reloader, shared by the hub (RELOAD) and the handle (SIGHUP), so that a
        // listener added later is reloaded by both.
        let tls_reloader = TlsReloader::new(tls_listeners.clone());
        let mut hub = Hub::new(config.clone(), policy, storage, hooks, blobs)
            .with_reload_source(self.reload_source)
            .with_tls(tls_reloader.clone());
        if let Some(clock) = self.clock {
            hub = hub.with_clock(clock);
        }
        let hub = Arc::new(hub);
        hub.restore_stored()?;

        let tracker = TaskTracker::new();
        if let Some(backplane) = self.backplane {
            let node = crate::cluster::node::ClusterNode::new(backplane);
            node.attach_hub(Arc::downgrade(&hub));
            hub.join_cluster(node.clone());
            if let Some(listener) = self.node_link {
                let listener = listener
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpListener::from_std(listener))
                    .map_err(|e| ServerError::Bind {
                        addr: "node link".into(),
                        source: e,
                    })?;
                tracker.spawn(node.bodies().clone().serve(listener, hub.shutdown_token()));
            }
            tracker.spawn(node.clone().run(Arc::downgrade(&hub), hub.shutdown_token()));
            tracker.spawn(node.run_trims(
                Arc::downgrade(&hub),
                EXPIRY_PERIOD,
                hub.shutdown_token(),
            ));
        }
        // Lets messages past their channel's maximum age go from idle channels too.
        tracker.spawn(hub.clone().run_expiry(EXPIRY_PERIOD));
        // Waits for the idle sessions parked without a task of their own.
        tracker.spawn(crate::connection::run_parking(hub.clone(), tracker.clone()));
        let mut tcp_addrs = Vec::new();
        for addr in &config.tcp {
            let listener =
                bind_tcp(addr, config.backlog)
                    .await
                    .map_err(|source| ServerError::Bind {
                        addr: addr.clone(),
                        source,
                    })?;
            let local = listener.local_addr().map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
            info!(target: log::GENERAL, addr = %local, "listening on TCP");
            tcp_addrs.push(local);
            let up = hub.listener_up();
            let accepting = accept_tcp(hub.clone(), listener, tracker.clone());
            tracker.spawn(async move {
                accepting.await;
                drop(up);
            });
        }
        let mut tls_addrs = Vec::new();
        for tls in &tls_listeners {
            let addr = &tls.settings().addr;
            let bind_error = |source| ServerError::Bind {
                addr: format!("tls:{addr}"),
                source,
            };
            let listener = bind_tcp(addr, config.backlog).await.map_err(bind_error)?;
            let local = listener.local_addr().map_err(bind_error)?;
            info!(target: log::GENERAL, addr = %local, client_auth = %tls.settings().client_auth, "listening on TLS");
            tls_addrs.push(local);
            let up = hub.listener_up();
            let accepting = accept_tls(hub.clone(), listener, tls.clone(), tracker.clone());
            tracker.spawn(async move {
                accepting.await;
                drop(up);
            });
        }
        tracker.spawn(log_connection_summaries(hub.clone()));
        let unix_socket = match &config.unix {
            Some(path) => Some(bind_unix(&hub, path, &tracker)?),
            None => None,
        };
        Ok(ServerHandle {
            hub,
            tracker,
            tcp_addrs,
            tls_addrs,
            tls: tls_reloader,
            unix_socket,
        })
    }
}

/// How often messages past their channel's maximum age are trimmed away.
const EXPIRY_PERIOD: Duration = Duration::from_secs(1);

/// Binds a TCP listener with the configured backlog (`TcpListener::bind` always asks
/// for 1024 or less, depending on the platform). Every address the name resolves to is
/// tried, like `TcpListener::bind`.
async fn bind_tcp(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does on Unix: a restarted server can bind at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// Logs, at info, how many sessions opened and closed and how many connections were
/// refused since the last summary, every `connection_summary_interval` in which
/// something changed (each session is logged only at debug: under churn, a line per
/// connection would grow the log without bound). Ends at shutdown.
async fn log_connection_summaries(hub: Arc<Hub>) {
    let every = hub.config().connection_summary_interval;
    if every.is_zero() {
        return;
    }
    let totals = |hub: &Hub| {
        let counters = hub.counters();
        [
            &counters.connections_total,
            &counters.connections_closed,
            &counters.connections_refused,
        ]
        .map(|counter| counter.load(std::sync::atomic::Ordering::Relaxed))
    };
    let mut last = totals(&hub);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = hub.shutting_down() => return,
            _ = ticks.tick() => {}
        }
        let now = totals(&hub);
        if now == last {
            continue;
        }
        let [opened, closed, refused] = [0, 1, 2].map(|i| now[i] - last[i]);
        last = now;
        info!(
            target: log::CONNECTION,
            opened,
            closed,
            refused,
            current = hub.connection_count(),
            "sessions in the last {}",
            humantime_secs(every)
        );
    }
}

/// A duration as a short text ("60s", "250ms").
fn humantime_secs(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

async fn accept_tcp(hub: Arc<Hub>, listener: TcpListener, tracker: TaskTracker) {
    let serving = hub.clone();
    let refusing = hub.clone();
    let refusals = tracker.clone();
    accept_loop(
        hub,
        listener,
        move |stream, peer, slot| {
            debug!(target: log::CONNECTION, %peer, "accepted");
            tracker.spawn(connection::serve(
                serving.clone(),
                stream,
                Peer::Tcp(peer),
                Some(slot),
            ));
        },
        move |stream, peer, refusal| refuse_address(&refusing, &refusals, stream, peer, refusal),
    )
    .await;
}

/// Accepts connections on a TCP listener (plain or TLS) until shutdown. Each is first
/// admitted by its address's limits, then handed to `serve` with its place in them, or
/// to `refuse` with the reason.
pub(crate) async fn accept_loop(
    hub: Arc<Hub>,
    listener: TcpListener,
    mut serve: impl FnMut(tokio::net::TcpStream, SocketAddr, AddressSlot),
    mut refuse: impl FnMut(tokio::net::TcpStream, SocketAddr, AddressRefusal),
) {
    loop {
        let accepted = tokio::select! {
            () = hub.shutting_down() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let limits = hub.policy().limits.per_address;
                match hub.addresses().admit(peer.ip(), &limits, hub.now_ns()) {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        serve(stream, peer, slot);
                    }
                    Err(refusal) => refuse(stream, peer, refusal),
                }
            }
            Err(error) => {
                // Out of descriptors or similar: wait a little instead of spinning.
                error!(target: log::ERROR, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Refuses a connection its address may not open now: counted, logged at debug (a
/// flood must not flood the log), and told why with an ERROR after the server's preface
/// while there is room to (see `connection::refuse`), else just closed.
fn refuse_address(
    hub: &Arc<Hub>,
    tracker: &TaskTracker,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    refusal: AddressRefusal,
) {
    let (code, message) = count_address_refusal(hub, peer, refusal);
    if let Some(permit) = hub.refusal_permit() {
        let codec = hub.codec().clone();
        tracker.spawn(async move {
            connection::refuse(&codec, stream, code, message).await;
            drop(permit);
        });
    }
}

/// Counts and logs a connection its address may not open now; returns the error to
/// tell it, where the transport allows telling it before a TLS handshake.
pub(crate) fn count_address_refusal(
    hub: &Hub,
    peer: SocketAddr,
    refusal: AddressRefusal,
) -> (switchboard_proto::ErrorCode, String) {
    let counters = hub.counters();
    let (code, message) = match refusal {
        AddressRefusal::TooMany(limit) => {
            counters.refused(crate::metrics::RefusalReason::AddressLimit);
            crate::hub::stats::Counters::add(&counters.connections_refused_per_ip, 1);
            (
                switchboard_proto::ErrorCode::LimitReached,
                format!(
                    "{} has {limit} connections open, the most one address may",
                    peer.ip()
                ),
            )
        }
        AddressRefusal::TooFast(wait) => {
            counters.refused(crate::metrics::RefusalReason::AddressRate);
            crate::hub::stats::Counters::add(&counters.connections_rate_limited_per_ip, 1);
            let rate = hub.policy().limits.per_address;
            (
                switchboard_proto::ErrorCode::RateLimited,
                format!(
                    "{} opens connections faster than {} per second (burst {}); {}",
                    peer.ip(),
                    rate.new_connections_per_second,
                    rate.new_connection_burst,
                    retry_hint(wait)
                ),
            )
        }
    };
    debug!(target: log::CONNECTION, %peer, %code, %message, "connection refused");
    (code, message)
}

#[cfg(unix)]
fn bind_unix(
    hub: &Arc<Hub>,
    path: &std::path::Path,
    tracker: &TaskTracker,
) -> Result<crate::unix_socket::BoundSocket, ServerError> {
    use tokio::net::UnixSocket;
    let bind_error = |source| ServerError::Bind {
        addr: format!("unix:{}", path.display()),
        source,
    };
    crate::unix_socket::clear_stale(path).map_err(bind_error)?;
    let listener = UnixSocket::new_stream()
        .and_then(|socket| {
            socket.bind(path)?;
            socket.listen(hub.config().backlog)
        })
        .map_err(bind_error)?;
    let bound = crate::unix_socket::BoundSocket::identify(path).map_err(bind_error)?;
    info!(target: log::GENERAL, path = %path.display(), "listening on Unix socket");
    let up = hub.listener_up();
    let hub = hub.clone();
    let inner_tracker = tracker.clone();
    tracker.spawn(async move {
        let _up = up;
        loop {
            let accepted = tokio::select! {
                () = hub.shutting_down() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    debug!(target: log::CONNECTION, "accepted on Unix socket");
                    let uid = stream.peer_cred().ok().map(|cred| cred.uid());
                    inner_tracker.spawn(connection::serve(
                        hub.clone(),
                        stream,
                        Peer::Unix { uid },
                        None,
                    ));
                }
                Err(error) => {
                    error!(target: log::ERROR, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

#[cfg(not(unix))]
fn bind_unix(
    _hub: &Arc<Hub>,
    _path: &std::path::Path,
    _tracker: &TaskTracker,
) -> Result<crate::unix_socket::BoundSocket, ServerError> {
    Err(ServerError::UnixUnsupported)
}

/// A running server. Dropping the handle does not stop the server; call
/// [`ServerHandle::shutdown`].
#[derive(Debug)]
pub struct ServerHandle {
    hub: Arc<Hub>,
    tracker: TaskTracker,
    tcp_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    tls: TlsReloader,
    unix_socket: Option<crate::unix_socket::BoundSocket>,
}

impl ServerHandle {
    /// The first TCP address listened on (with the real port when 0 was asked).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addrs.first().copied()
    }

    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The TLS addresses listened on, in the order configured.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// Re-reads every TLS listener's certificate, key and client CA files and puts them
    /// in force for new handshakes; connections already open keep theirs. When a file
    /// cannot be read, every listener keeps the configuration it had and the error names
    /// the file.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.reload()
    }

    /// What reloads the TLS files, for a task of its own (a signal handler) that outlives
    /// a borrow of the handle.
    pub fn tls_reloader(&self) -> TlsReloader {
        self.tls.clone()
    }

    pub fn unix_path(&self) -> Option<&std::path::Path> {
        self.unix_socket.as_ref().map(|socket| socket.path())
    }

    /// Resolves when shutdown has begun: a STOP request, or [`ServerHandle::shutdown`].
    pub async fn stopping(&self) {
        self.hub.shutting_down().await;
    }

    /// Puts the security settings and limits of `config` in force (users, tokens, roles
    /// and their limits, per-address limits); the rest of it (listeners, storage, sizes)
    /// needs a restart. A configuration that does not pass the checks is refused and the
    /// one in force kept; either way the outcome is logged and counted. Live sessions
    /// are re-checked: those whose user is gone are disconnected.
    pub fn reload(&self, config: &ServerConfig) -> Result<(), ReloadError> {
        self.hub.reload(config)
    }

    /// Reads the configuration again from the builder's
    /// [`reload_source`](ServerBuilder::reload_source) and puts it in force, as a RELOAD
    /// request does.
    pub fn reload_from_source(&self) -> Result<(), ReloadError> {
        self.hub.reload_from_source()
    }

    /// Named counters, as STATS reports them.
    pub fn stats(&self) -> Vec<(String, u64)> {
        stats_of(&self.hub)
    }

    /// A handle for front ends in the same process (the web listener): attach
    /// connections to the hub, read its counters, learn when it stops.
    pub fn hub(&self) -> crate::HubHandle {
        crate::HubHandle::new(self.hub.clone(), self.tracker.clone())
    }

    /// Shuts down gracefully: stops accepting, answers requests in progress, sends every
    /// session DISCONNECT "server shutting down", and waits for the sessions to close.
    pub async fn shutdown(&self) {
        if !self.hub.is_shutting_down() {
            info!(target: log::GENERAL, "shutting down");
            self.hub.begin_shutdown();
        }
        self.tracker.close();
        let grace = self.hub.config().shutdown_grace + Duration::from_secs(1);
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(target: log::ERROR, "sessions did not close within {grace:?}");
        }
        if let Some(socket) = &self.unix_socket {
            socket.remove_if_ours();
        }
        if let Some(cluster) = self.hub.cluster()
            && tokio::time::timeout(Duration::from_secs(3), cluster.backplane().close())
                .await
                .is_err()
        {
            warn!(target: log::ERROR, "the cluster did not hear this node leave; it will expire");
        }
        let hub = self.hub.clone();
        // Joins the store's threads and syncs: blocking work, off the async workers.
        let _ = tokio::task::spawn_blocking(move || hub.close_storage()).await;
        info!(target: log::GENERAL, "server stopped");
    }
}

/// Whether the server takes work (see [`crate::metrics::Readiness`]).
pub(crate) fn readiness_of(hub: &Hub) -> crate::metrics::Readiness {
    crate::metrics::Readiness {
        draining: hub.is_shutting_down(),
        store_refusing: hub.store_health().refusing,
        listeners_configured: listeners_configured(hub.config()),
        listeners_running: hub
            .counters()
            .listeners_running
            .load(std::sync::atomic::Ordering::Relaxed),
        backplane_down: hub.cluster().and_then(|cluster| {
            let health = cluster.health();
            (!health.connected).then_some(health.detail)
        }),
    }
}

fn listeners_configured(config: &ServerConfig) -> u64 {
    (config.tcp.len() + config.tls.len() + usize::from(config.unix.is_some())) as u64
}

/// Everything a metrics scrape reports (see [`crate::metrics::MetricsSnapshot`]).
pub(crate) fn metrics_of(hub: &Hub) -> crate::metrics::MetricsSnapshot {
    use crate::metrics::{RefusalReason, Transport};
    use std::sync::atomic::Ordering::Relaxed;
    let counters = hub.counters();
    let config = hub.config();
    let health = hub.store_health();
    let (history_messages, history_bytes) = hub.history_totals();
    let mut snapshot = crate::metrics::MetricsSnapshot::default();
    snapshot.connections_open = Transport::ALL
        .iter()
        .map(|&transport| {
            let open = &counters.connections_open_by[transport.index()];
            (transport, open.load(Relaxed))
        })
        .collect();
    snapshot.connections_opened = Transport::ALL
        .iter()
        .map(|&transport| {
            let opened = &counters.connections_opened_by[transport.index()];
            (transport, opened.load(Relaxed))
        })
        .collect();
    snapshot.connections_refused = RefusalReason::ALL
        .iter()
        .map(|&reason| {
            let refused = &counters.connections_refused_by[reason.index()];
            (reason, refused.load(Relaxed))
        })
        .collect();
    snapshot.connections_closed = counters.connections_closed.load(Relaxed);
    snapshot.messages_published = counters.messages_published.load(Relaxed);
    snapshot.messages_delivered = counters.messages_delivered.load(Relaxed);
    snapshot.relays = counters.relays.load(Relaxed);
    snapshot.relayed_deliveries = counters.relayed_deliveries.load(Relaxed);
    snapshot.relay_deliveries_dropped = counters.relay_deliveries_dropped.load(Relaxed);
    snapshot.slow_consumer_skipped = counters.slow_consumer_skipped.load(Relaxed);
    snapshot.slow_consumers_disconnected = counters.slow_consumers_disconnected.load(Relaxed);
    snapshot.bytes_received = counters.bytes_received.load(Relaxed);
    snapshot.bytes_sent = counters.bytes_sent.load(Relaxed);
    snapshot.subscriptions = counters.subscriptions.load(Relaxed);
    snapshot.channels = hub.channel_count() as u64;
    snapshot.groups = hub.group_count() as u64;
    snapshot.history_messages = history_messages;
    snapshot.history_bytes = history_bytes;
    snapshot.store_syncs = hub.store_syncs();
    snapshot.store_sync_latency = hub.store_sync_latency();
    snapshot.store_refusing = health.refusing;
    snapshot.store_write_failures = health.failures;
    snapshot.publish_ack_latency = counters.publish_ack_latency.snapshot();
    snapshot.auth_failures = counters.auth_failures.load(Relaxed);
    snapshot.permission_denials = counters.permission_denials.load(Relaxed);
    snapshot.rate_limited = counters.rate_limited.load(Relaxed);
    snapshot.limit_refusals = counters.limit_refusals.load(Relaxed);
    snapshot.protocol_errors = counters.protocol_errors.load(Relaxed);
    snapshot.heartbeat_timeouts = counters.heartbeat_timeouts.load(Relaxed);
    snapshot.reloads = counters.reloads.load(Relaxed);
    snapshot.reloads_failed = counters.reloads_failed.load(Relaxed);
    snapshot.memory_budget_used = hub.budget().used();
    snapshot.memory_budget_limit = hub.budget().limit();
    snapshot.listeners_configured = listeners_configured(config);
    snapshot.listeners_running = counters.listeners_running.load(Relaxed);
    snapshot.shutting_down = hub.is_shutting_down();
    snapshot
}

/// Named counters, as STATS reports them.
pub(crate) fn stats_of(hub: &Hub) -> Vec<(String, u64)> {
    hub.counters()
        .report()
        .into_iter()
        .map(|stat| (stat.name.to_string(), stat.value))
        .chain([
            (
                "connections_current".to_owned(),
                hub.connection_count() as u64,
            ),
            ("sessions_parked".to_owned(), hub.parking().parked() as u64),
            (
                "partial_frame_bytes".to_owned(),
                hub.frame_budget().held() as u64,
            ),
            (
                "frames_refused_busy".to_owned(),
                hub.frame_budget().refused(),
            ),
            ("memory_budget_used".to_owned(), hub.budget().used()),
            ("memory_budget_limit".to_owned(), hub.budget().limit()),
        ])
        .chain(
            hub.limit_gauges()
                .map(|(name, value)| (name.to_owned(), value)),
        )
        .chain(cluster_stats(hub))
        .collect()
}

/// Cluster mode's counters: the node's own, and the backplane's.
pub(crate) fn cluster_stats(hub: &Hub) -> Vec<(String, u64)> {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(cluster) = hub.cluster() else {
        return Vec::new();
    };
    let counters = hub.counters();
    let health = cluster.health();
    [
        ("backplane_up", u64::from(health.connected)),
        (
            "cluster_epoch_changes",
            counters.cluster_epoch_changes.load(Relaxed),
        ),
        (
            "cluster_gaps_recovered",
            counters.cluster_gaps_recovered.load(Relaxed),
        ),
        (
            "cluster_messages_skipped",
            counters.cluster_messages_skipped.load(Relaxed),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .chain(
        health
            .counters
            .into_iter()
            .map(|(name, value)| (format!("backplane_{name}"), value)),
    )
    .chain(cluster.bodies().stats())
    .collect()
}
