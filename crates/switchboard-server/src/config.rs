//! Server configuration, with the defaults a fresh `switchboard serve` uses.

use std::path::PathBuf;
use std::time::Duration;

use crate::security::SecurityConfig;
use crate::security::limits::LimitSettings;
use crate::storage::{DiskReserve, SyncPolicy};

/// Everything a server can be told. `ServerConfig::default()` is what `switchboard serve`
/// runs with when given no options.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP addresses to listen on ("127.0.0.1:7420"; port 0 picks a free port).
    pub tcp: Vec<String>,
    /// TLS listeners, each with its certificate files and client certificate policy.
    pub tls: Vec<crate::tls::TlsListenerConfig>,
    /// Unix socket path to listen on. Sessions on it may use admin operations (STOP).
    pub unix: Option<PathBuf>,
    /// Pre-shared HMAC-SHA256 key; when set, every frame must carry a valid tag.
    pub hmac_key: Option<Vec<u8>>,
    /// Token that makes a session an admin when sent as its credentials.
    pub admin_token: Option<String>,
    /// Heartbeat interval for clients that ask for none.
    pub heartbeat: Duration,
    /// Bounds of the heartbeat interval a client may ask for.
    pub heartbeat_min: Duration,
    pub heartbeat_max: Duration,
    /// Time a new connection has to send its preface and SESSION_INIT.
    pub handshake_timeout: Duration,
    /// Time a frame has to arrive whole, from its first byte. Bytes trickling in keep the
    /// heartbeat deadline alive, not this one: a frame that takes longer closes the
    /// session with FRAME_TIMEOUT.
    pub frame_timeout: Duration,
    /// Bytes all connections together may hold for large frames still arriving (those
    /// over 64 KiB, counted at their declared length). A frame that does not fit is
    /// refused with SERVER_BUSY and its session closed.
    pub partial_frame_budget: usize,
    /// Connections the kernel queues for a listener before the server accepts them
    /// (`listen(2)`'s backlog; the system may cap it, e.g. at `net.core.somaxconn`).
    pub backlog: u32,
    /// How often the server logs a summary of sessions opened, closed and refused (at
    /// info, only when something changed); the sessions themselves are logged at debug.
    pub connection_summary_interval: Duration,
    /// Largest content of one frame.
    pub max_frame: u32,
    /// Largest message body.
    pub max_body: u64,
    /// Largest relayed body.
    pub max_relay_bytes: usize,
    /// Messages a channel keeps when created without a history option.
    pub default_history: u64,
    /// Largest history a channel may ask for.
    pub max_history: u64,
    /// Refuse publishing to channels nobody created.
    pub require_channel_creation: bool,
    /// Announce in SESSION_ACK that PUBLISH frames may carry a batch of bodies (flag
    /// BATCH), so that clients send them. Batches are accepted either way; off, clients
    /// send one frame per publish, as to a server that predates batches.
    pub publish_batches: bool,
    /// Frames queued per connection before it counts as a slow consumer. Queue slots are
    /// allocated as they fill, so a large bound costs an idle connection nothing.
    pub outbound_queue: usize,
    /// Bytes of frames (plus 64 per frame for its slot) queued per connection before it
    /// counts as a slow consumer, whatever `outbound_queue` allows. Like nats-server's
    /// `max_pending`: a reader that keeps up drains a burst far smaller than this; one
    /// that stopped reading reaches it. Replies to the session's own requests count too,
    /// but wait instead while half of this is queued (the session is then not served
    /// until its client reads), and a replay is at most half of this.
    pub outbound_queue_bytes: usize,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// How long shutdown waits for sessions to drain before closing them.
    pub shutdown_grace: Duration,
    /// Where history is kept; `None` keeps it in memory only.
    pub data_dir: Option<PathBuf>,
    /// When the store syncs to disk (with a data directory).
    pub sync: SyncPolicy,
    /// Free space durable writes and uploads must leave on the data volume.
    pub disk_reserve: DiskReserve,
    /// Most bytes of streamed bodies kept on disk (and being received); new uploads
    /// past it are refused. `None`: bounded by the disk reserve only.
    pub max_blob_bytes: Option<u64>,
    /// Bytes of message frames each durable history keeps in memory, its newest (and at
    /// least its newest message, and at most 8 192 messages); older ones are read back
    /// from the store when a fetch or a replay reaches them.
    pub history_in_memory: u64,
    /// The memory budget, in bytes, that subscriptions, channels, groups and hashtag index
    /// entries are admitted against in all (estimated sizes); past it, creating more is
    /// refused with LIMIT_REACHED. Default: half the machine's physical memory where it
    /// can be read (Linux), else 4 GiB.
    pub max_memory: u64,
    /// Users, tokens, JWT keys and roles; the default has none, an open hub.
    pub security: SecurityConfig,
    /// Connections per IP address, and the limits of sessions without a role (roles
    /// carry their own in `security`). Reloadable, like `security`.
    pub limits: LimitSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tcp: Vec::new(),
            tls: Vec::new(),
            unix: None,
            hmac_key: None,
            admin_token: None,
            heartbeat: Duration::from_secs(5),
            heartbeat_min: Duration::from_millis(50),
            heartbeat_max: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            partial_frame_budget: 256 * 1024 * 1024,
            backlog: 1024,
            connection_summary_interval: Duration::from_secs(60),
            max_frame: switchboard_proto::Limits::DEFAULT_MAX_CONTENT,
            max_body: 4 * 1024 * 1024 * 1024,
            max_relay_bytes: 1024 * 1024,
            default_history: 1000,
            max_history: 1_000_000,
            require_channel_creation: false,
            publish_batches: true,
            outbound_queue: 1 << 20,
            outbound_queue_bytes: 64 * 1024 * 1024,
            max_connections: 100_000,
            max_subscriptions: 10_000,
            shutdown_grace: Duration::from_secs(5),
            data_dir: None,
            sync: SyncPolicy::default(),
            disk_reserve: DiskReserve::default(),
            max_blob_bytes: None,
            history_in_memory: crate::hub::DEFAULT_HISTORY_IN_MEMORY,
            max_memory: crate::budget::default_max_memory(),
            security: SecurityConfig::default(),
            limits: LimitSettings::default(),
        }
    }
}

/// The default TCP address of `switchboard serve`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7420";
