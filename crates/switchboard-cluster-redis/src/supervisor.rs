//! The node's command connection to Redis, owned and supervised: found (at a fixed
//! address or through the Sentinels), checked by a handshake before anything uses it,
//! dropped and made again when it breaks, and every operation on it bounded in time.
//!
//! The handshake is why the connection is ours and not the crate's `ConnectionManager`:
//! a connection that reconnects by itself would run commands on a new server before
//! the node learned whether that server is a master, what it promises on disk, and
//! whether writes may have been lost (the backplane generation).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, Script};
use switchboard_server::log;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::BackplaneError;
use crate::keys::Keys;
use crate::url::{RedisTarget, redacted};

/// Bounds every operation unless configured otherwise.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds every connection attempt (and every question to a Sentinel).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The first wait after a failed attempt; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

static GENERATION_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/generation.lua")));

/// What Redis promises about an acknowledged write, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fsync {
    /// No AOF (`appendonly no`), or AOF left to the operating system (`appendfsync no`).
    No,
    /// AOF written to disk about once a second: a crash may lose the last second.
    EverySec,
    /// AOF written to disk before every reply.
    Always,
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::No => "no fsync (appendonly no or appendfsync no)",
            Fsync::EverySec => "appendfsync everysec",
            Fsync::Always => "appendfsync always",
        })
    }
}

/// What to do when Redis promises less than the node needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchPolicy {
    /// Do not use that Redis: stay disconnected, say why, and ask again later.
    Refuse,
    /// Log a warning once and use it.
    Warn,
}

/// How the supervisor finds and uses Redis.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub target: RedisTarget,
    pub keys: Keys,
    /// Bounds every operation, and every command of the handshake.
    pub op_timeout: Duration,
    /// Bounds every connection attempt and every question to a Sentinel.
    pub connect_timeout: Duration,
    /// What Redis must promise; `None` accepts anything.
    pub required_fsync: Option<Fsync>,
    pub on_fsync_mismatch: MismatchPolicy,
}

impl SupervisorConfig {
    /// The defaults: prefix `sb:`, 2 s bounds, any durability.
    pub fn new(target: RedisTarget) -> SupervisorConfig {
        SupervisorConfig {
            target,
            keys: Keys::default(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            required_fsync: None,
            on_fsync_mismatch: MismatchPolicy::Refuse,
        }
    }
}

/// What the supervisor knows of its connection, for readiness and statistics.
#[derive(Debug, Clone)]
pub struct SupervisorHealth {
    pub connected: bool,
    /// When `connected` last changed (or the supervisor started).
    pub since: Instant,
    /// Why the last attempt failed or the last connection was dropped; `None` while
    /// connected.
    pub last_error: Option<String>,
    /// Connections made (handshake passed).
    pub connects: u64,
    /// Connections made after the first one.
    pub reconnects: u64,
    /// Attempts that did not end in a usable connection.
    pub failed_attempts: u64,
    /// Operations that did not complete within the operation bound.
    pub timeouts: u64,
    /// The backplane generation from the last handshake (0 before the first).
    pub generation: u64,
    /// What the Redis of the last handshake promises; `None` when it would not say.
    pub fsync: Option<Fsync>,
    /// The master in use, as `redis://host:port` without the password.
    pub master: Option<String>,
}

/// The node's supervised command connection. Shared as `Arc<Supervisor>`.
pub struct Supervisor {
    config: SupervisorConfig,
    state: Mutex<State>,
    /// The fast path of [`Supervisor::run`] when disconnected.
    connected: AtomicBool,
    generation: AtomicU64,
    /// Wakes the loop when the connection in use was dropped.
    broken: Notify,
    connections: watch::Sender<u64>,
    warned_mismatch: AtomicBool,
}

struct State {
    live: Option<Live>,
    health: SupervisorHealth,
}

struct Live {
    id: u64,
    connection: MultiplexedConnection,
    info: ConnectionInfo,
}

/// What the handshake learned of a new connection.
struct Handshake {
    generation: u64,
    fsync: Option<Fsync>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("target", &self.config.target.to_string())
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Spawns the connect loop; it stops when `shutdown` is cancelled (the returned
    /// JoinHandle lets the owner await it).
    pub fn start(
        config: SupervisorConfig,
        shutdown: CancellationToken,
    ) -> (Arc<Supervisor>, JoinHandle<()>) {
        let supervisor = Arc::new(Supervisor {
            config,
            state: Mutex::new(State {
                live: None,
                health: SupervisorHealth {
                    connected: false,
                    since: Instant::now(),
                    last_error: Some("connecting".to_owned()),
                    connects: 0,
                    reconnects: 0,
                    failed_attempts: 0,
                    timeouts: 0,
                    generation: 0,
                    fsync: None,
                    master: None,
                },
            }),
            connected: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            broken: Notify::new(),
            connections: watch::Sender::new(0),
            warned_mismatch: AtomicBool::new(false),
        });
        let task = tokio::spawn(Arc::clone(&supervisor).supervise(shutdown));
        (supervisor, task)
    }

    /// Runs `op` on the current connection, bounded by `op_timeout`. Fails at once with
    /// [`BackplaneError::Unavailable`] when not connected (no waiting). A timeout or an
    /// error that breaks the connection ([`BackplaneError::breaks_connection`]) drops
    /// that connection and wakes the loop to make a new one.
    pub async fn run<T>(
        &self,
        op: impl for<'c> FnOnce(
            &'c mut MultiplexedConnection,
        ) -> BoxFuture<'c, Result<T, BackplaneError>>,
    ) -> Result<T, BackplaneError> {
        self.run_within(self.config.op_timeout, op).await
    }

    /// [`Supervisor::run`] bounded by `bound` instead of `op_timeout` (what is left of
    /// the bound of operations that waited their turn).
    pub async fn run_within<T>(
        &self,
        bound: Duration,
        op: impl for<'c> FnOnce(
            &'c mut MultiplexedConnection,
        ) -> BoxFuture<'c, Result<T, BackplaneError>>,
    ) -> Result<T, BackplaneError> {
        let (id, mut connection) = self.current()?;
        match tokio::time::timeout(bound, op(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if error.breaks_connection() {
                    self.drop_connection(id, &error.to_string());
                }
                Err(error)
            }
            Err(_) => {
                self.lock().health.timeouts += 1;
                self.drop_connection(id, &format!("an operation got no answer within {bound:?}"));
                Err(BackplaneError::Timeout(bound))
            }
        }
    }

    /// The backplane generation from the last handshake (0 before the first).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn health(&self) -> SupervisorHealth {
        self.lock().health.clone()
    }

    /// Waits until a connection is in use, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), BackplaneError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut connections = self.connections.subscribe();
        loop {
            if self.connected.load(Ordering::Acquire) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, connections.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(BackplaneError::Unavailable(format!(
                        "not connected within {timeout:?}: {}",
                        self.why_unavailable()
                    )));
                }
            }
        }
    }

    /// Bumped at every new connection (after its handshake).
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connections.subscribe()
    }

    /// Where Redis is, as configured.
    pub fn target(&self) -> &RedisTarget {
        &self.config.target
    }

    /// The master in use now, with its credentials (for the subscriber to connect to the
    /// same server); `None` while disconnected.
    pub fn client_info(&self) -> Option<ConnectionInfo> {
        self.lock().live.as_ref().map(|live| live.info.clone())
    }

    pub fn keys(&self) -> &Keys {
        &self.config.keys
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Result<(u64, MultiplexedConnection), BackplaneError> {
        if !self.connected.load(Ordering::Acquire) {
            return Err(BackplaneError::Unavailable(self.why_unavailable()));
        }
        let state = self.lock();
        match &state.live {
            Some(live) => Ok((live.id, live.connection.clone())),
            None => Err(BackplaneError::Unavailable(
                state
                    .health
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not connected".to_owned()),
            )),
        }
    }

    fn why_unavailable(&self) -> String {
        self.lock()
            .health
            .last_error
            .clone()
            .unwrap_or_else(|| "not connected".to_owned())
    }

    /// Drops connection `id` if it is still the one in use, and wakes the loop.
    fn drop_connection(&self, id: u64, reason: &str) {
        let dropped = {
            let mut state = self.lock();
            if state.live.as_ref().is_some_and(|live| live.id == id) {
                state.live = None;
                state.health.connected = false;
                state.health.since = Instant::now();
                state.health.last_error = Some(reason.to_owned());
                self.connected.store(false, Ordering::Release);
                state.health.master.clone()
            } else {
                None
            }
        };
        if let Some(master) = dropped {
            tracing::warn!(target: log::CONNECTION, %master, %reason, "dropped the Redis connection");
        }
        self.broken.notify_one();
    }

    fn is_current(&self, id: u64) -> bool {
        self.lock().live.as_ref().is_some_and(|live| live.id == id)
    }

    fn install(
        &self,
        connection: MultiplexedConnection,
        info: ConnectionInfo,
        handshake: Handshake,
    ) -> u64 {
        let master = redacted(&info);
        let id = {
            let mut state = self.lock();
            let health = &mut state.health;
            health.connects += 1;
            if health.connects > 1 {
                health.reconnects += 1;
            }
            health.connected = true;
            health.since = Instant::now();
            health.last_error = None;
            health.generation = handshake.generation;
            health.fsync = handshake.fsync;
            health.master = Some(master.clone());
            let id = health.connects;
            state.live = Some(Live {
                id,
                connection,
                info,
            });
            self.generation
                .store(handshake.generation, Ordering::Release);
            self.connected.store(true, Ordering::Release);
            id
        };
        tracing::info!(
            target: log::CONNECTION,
            %master,
            generation = handshake.generation,
            fsync = ?handshake.fsync,
            "connected to Redis"
        );
        self.connections.send_modify(|count| *count += 1);
        id
    }

    fn record_failure(&self, reason: String) {
        let repeated = {
            let mut state = self.lock();
            state.health.failed_attempts += 1;
            let repeated = state.health.last_error.as_deref() == Some(reason.as_str());
            state.health.last_error = Some(reason.clone());
            repeated
        };
        // The same failure every few seconds is logged once, then kept quiet.
        if repeated {
            tracing::debug!(target: log::ERROR, %reason, "Redis connection attempt failed again");
        } else {
            tracing::error!(target: log::ERROR, %reason, "Redis connection attempt failed");
        }
    }

    fn shut_down(&self) {
        let mut state = self.lock();
        state.live = None;
        state.health.connected = false;
        state.health.since = Instant::now();
        state.health.last_error = Some("shut down".to_owned());
        self.connected.store(false, Ordering::Release);
    }

    async fn supervise(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failures = 0u32;
        'attempts: loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break 'attempts,
                attempt = self.connect_once() => attempt,
            };
            match attempt {
                Ok((connection, info, handshake)) => {
                    failures = 0;
                    let id = self.install(connection, info, handshake);
                    // A wake-up left over from an earlier connection is ignored.
                    while self.is_current(id) {
                        tokio::select! {
                            _ = shutdown.cancelled() => break 'attempts,
                            _ = self.broken.notified() => {}
                        }
                    }
                }
                Err(reason) => {
                    self.record_failure(reason);
                    let delay = backoff(failures);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'attempts,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.shut_down();
        tracing::info!(target: log::CONNECTION, "Redis supervisor stopped");
    }

    /// One attempt: resolve, connect, handshake. Every step is bounded.
    async fn connect_once(
        &self,
    ) -> Result<(MultiplexedConnection, ConnectionInfo, Handshake), String> {
        let info = self.resolve().await?;
        let shown = redacted(&info);
        let client = Client::open(info.clone()).map_err(|error| format!("{shown}: {error}"))?;
        let connect_timeout = self.config.connect_timeout;
        // The operation bound is applied around each operation, so that running out of it
        // is always a `Timeout`; the connection's own bound is only a backstop.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(self.config.op_timeout.saturating_mul(2)));
        let mut connection = match tokio::time::timeout(
            connect_timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(format!("cannot connect to {shown}: {error}")),
            Err(_) => {
                return Err(format!(
                    "cannot connect to {shown}: no answer within {connect_timeout:?}"
                ));
            }
        };
        let handshake = self
            .handshake(&mut connection)
            .await
            .map_err(|reason| format!("{shown} {reason}"))?;
        Ok((connection, info, handshake))
    }

    /// The address to connect to: the configured one, or the master the first Sentinel
    /// that answers names (asked again at every attempt, since it changes at failover).
    async fn resolve(&self) -> Result<ConnectionInfo, String> {
        let (sentinels, master) = match &self.config.target {
            RedisTarget::Standalone(info) => return Ok(info.clone()),
            RedisTarget::Sentinel {
                sentinels, master, ..
            } => (sentinels, master),
        };
        let bound = self.config.connect_timeout;
        let mut failures = Vec::with_capacity(sentinels.len());
        for sentinel in sentinels {
            let addr = sentinel.addr();
            match tokio::time::timeout(bound, ask_sentinel(sentinel, master, bound)).await {
                Ok(Ok(Some((host, port)))) => {
                    return self
                        .config
                        .target
                        .master_info(ConnectionAddr::Tcp(host, port))
                        .ok_or_else(|| format!("Sentinel {addr} named an unusable address"));
                }
                Ok(Ok(None)) => failures.push(format!("{addr} does not know it")),
                Ok(Err(error)) => failures.push(format!("{addr}: {error}")),
                Err(_) => failures.push(format!("{addr}: no answer within {bound:?}")),
            }
        }
        Err(format!(
            "no Sentinel named the master `{master}` ({})",
            failures.join("; ")
        ))
    }

    /// Before a connection is used: it must be a master, its durability must do, and
    /// the backplane generation is settled.
    async fn handshake(&self, connection: &mut MultiplexedConnection) -> Result<Handshake, String> {
        let info: String = self
            .bounded(
                redis::cmd("INFO")
                    .arg("replication")
                    .query_async(connection),
            )
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let role = field("role").unwrap_or("unknown");
        if role != "master" {
            return Err(format!(
                "is not a master (role {role}): give the master's address or a redis+sentinel:// URL"
            ));
        }
        let (Some(replid), Some(replid2)) = (field("master_replid"), field("master_replid2"))
        else {
            return Err("gave no master_replid in INFO replication".to_owned());
        };
        let fsync = self.fsync(connection).await;
        self.check_durability(fsync.as_ref().ok().copied())
            .map_err(|needs| match &fsync {
                Ok(_) => needs,
                Err(why) => format!("{needs} ({why})"),
            })?;
        let durable_restart = fsync.as_ref().is_ok_and(|fsync| *fsync == Fsync::Always);
        let keys = &self.config.keys;
        let generation: u64 = self
            .bounded(
                GENERATION_SCRIPT
                    .key(keys.replication_id())
                    .key(keys.generation())
                    .arg(replid)
                    .arg(replid2)
                    .arg(if durable_restart { "1" } else { "0" })
                    .arg(self.generation().to_string())
                    .invoke_async(connection),
            )
            .await?;
        Ok(Handshake {
            generation,
            fsync: fsync.ok(),
        })
    }

    /// What Redis promises, from its configuration; `Err` says why it is not known.
    async fn fsync(&self, connection: &mut MultiplexedConnection) -> Result<Fsync, String> {
        let appendonly: Vec<String> = self
            .bounded(
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("appendonly")
                    .query_async(connection),
            )
            .await?;
        if appendonly.get(1).map(String::as_str) != Some("yes") {
            return Ok(Fsync::No);
        }
        let appendfsync: Vec<String> = self
            .bounded(
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("appendfsync")
                    .query_async(connection),
            )
            .await?;
        match appendfsync.get(1).map(String::as_str) {
            Some("always") => Ok(Fsync::Always),
            Some("everysec") => Ok(Fsync::EverySec),
            Some("no") => Ok(Fsync::No),
            other => Err(format!("appendfsync is {other:?}")),
        }
    }

    /// `Err` (the reason) when the connection must not be used.
    fn check_durability(&self, promised: Option<Fsync>) -> Result<(), String> {
        let Some(needed) = self.config.required_fsync else {
            return Ok(());
        };
        if promised.is_some_and(|promised| promised >= needed) {
            return Ok(());
        }
        let promises = match promised {
            Some(promised) => format!("promises {promised}"),
            None => "does not say what it promises".to_owned(),
        };
        let message = format!("{promises}, but this node needs {needed}");
        match self.config.on_fsync_mismatch {
            MismatchPolicy::Refuse => Err(format!("{message}: not used")),
            MismatchPolicy::Warn => {
                if !self.warned_mismatch.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: log::ERROR, "Redis {message}; used anyway as configured");
                }
                Ok(())
            }
        }
    }

    async fn bounded<T>(
        &self,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.config.op_timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(format!("failed the handshake: {error}")),
            Err(_) => Err(format!(
                "did not answer the handshake within {:?}",
                self.config.op_timeout
            )),
        }
    }
}

/// `SENTINEL get-master-addr-by-name`: `None` when that Sentinel does not know the name.
async fn ask_sentinel(
    sentinel: &ConnectionInfo,
    master: &str,
    bound: Duration,
) -> redis::RedisResult<Option<(String, u16)>> {
    let client = Client::open(sentinel.clone())?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(bound))
        .set_response_timeout(Some(bound));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(&mut connection)
        .await
}

/// The wait after `failures` failed attempts in a row: exponential, capped, with full
/// jitter so that many nodes do not come back at the same instant.
pub(crate) fn backoff(failures: u32) -> Duration {
    let cap = MIN_BACKOFF
        .saturating_mul(1u32 << failures.min(16))
        .min(MAX_BACKOFF);
    let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=cap_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_stays_within_it() {
        for failures in 0..40 {
            let cap = MIN_BACKOFF
                .saturating_mul(1u32 << failures.min(16))
                .min(MAX_BACKOFF);
            for _ in 0..50 {
                assert!(backoff(failures) <= cap);
            }
        }
        assert!((0..200).any(|_| backoff(30) > MAX_BACKOFF / 2));
    }

    #[test]
    fn fsync_is_ordered_by_what_it_promises() {
        assert!(Fsync::Always > Fsync::EverySec);
        assert!(Fsync::EverySec > Fsync::No);
    }
}
