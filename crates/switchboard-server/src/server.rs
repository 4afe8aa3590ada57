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
use crate::storage::{FjallStorage, MemoryStorage, Storage, StoreOptions, SyncPolicy};

/// Entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::default(),
            storage: None,
            hooks: None,
        }
    }
}

/// Configures and starts a server.
pub struct ServerBuilder {
    config: ServerConfig,
    storage: Option<Arc<dyn Storage>>,
    hooks: Option<Arc<dyn Hooks>>,
}

impl ServerBuilder {
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

    /// Changes the configuration in place.
    pub fn configure(mut self, change: impl FnOnce(&mut ServerConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Loads storage, binds every listener and starts accepting.
    pub async fn start(self) -> Result<ServerHandle, ServerError> {
        let config = self.config;
        if config.tcp.is_empty() && config.unix.is_none() {
            return Err(ServerError::NoListener);
        }
        config.security.check()?;
        let mut guard = None;
        let storage: Arc<dyn Storage> = match (self.storage, &config.data_dir) {
            (Some(storage), _) => storage,
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
        let snapshot = storage.load()?;
        let blobs = match &config.data_dir {
            Some(dir) => BlobStore::open(dir.join("blobs"), true),
            None => BlobStore::temporary(),
        }
        .map_err(|e| ServerError::Storage(crate::storage::StorageError(e.to_string())))?
        .with_guard(guard)
        .with_max_bytes(config.max_blob_bytes);
        let hub = Arc::new(Hub::new(config.clone(), storage, hooks, blobs));
        hub.restore(snapshot);

        let tracker = TaskTracker::new();
        // Lets messages past their channel's maximum age go from idle channels too.
        tracker.spawn(hub.clone().run_expiry(EXPIRY_PERIOD));
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
            tracker.spawn(accept_tcp(hub.clone(), listener, tracker.clone()));
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
    loop {
        let accepted = tokio::select! {
            () = hub.shutting_down() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                debug!(target: log::CONNECTION, %peer, "accepted");
                tracker.spawn(connection::serve(hub.clone(), stream, Peer::Tcp(peer)));
            }
            Err(error) => {
                // Out of descriptors or similar: wait a little instead of spinning.
                error!(target: log::ERROR, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
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
    let hub = hub.clone();
    let inner_tracker = tracker.clone();
    tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = hub.shutting_down() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    debug!(target: log::CONNECTION, "accepted on Unix socket");
                    let uid = stream.peer_cred().ok().map(|cred| cred.uid());
                    inner_tracker.spawn(connection::serve(hub.clone(), stream, Peer::Unix { uid }));
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

    pub fn unix_path(&self) -> Option<&std::path::Path> {
        self.unix_socket.as_ref().map(|socket| socket.path())
    }

    /// Resolves when shutdown has begun: a STOP request, or [`ServerHandle::shutdown`].
    pub async fn stopping(&self) {
        self.hub.shutting_down().await;
    }

    /// Named counters, as STATS reports them.
    pub fn stats(&self) -> Vec<(String, u64)> {
        self.hub
            .counters()
            .report()
            .into_iter()
            .map(|stat| (stat.name.to_string(), stat.value))
            .chain([
                (
                    "connections_current".to_owned(),
                    self.hub.connection_count() as u64,
                ),
                (
                    "partial_frame_bytes".to_owned(),
                    self.hub.frame_budget().held() as u64,
                ),
                (
                    "frames_refused_busy".to_owned(),
                    self.hub.frame_budget().refused(),
                ),
                ("memory_budget_used".to_owned(), self.hub.budget().used()),
                ("memory_budget_limit".to_owned(), self.hub.budget().limit()),
            ])
            .collect()
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
        let hub = self.hub.clone();
        // Joins the store's threads and syncs: blocking work, off the async workers.
        let _ = tokio::task::spawn_blocking(move || hub.close_storage()).await;
        info!(target: log::GENERAL, "server stopped");
    }
}
