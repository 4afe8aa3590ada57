//! The Switchboard hub, usable as a library.
//!
//! A [`Server`] accepts connections on TCP and Unix sockets, runs one session per
//! connection and serves the operations of the wire protocol: direct relay between
//! clients, channels with history, subscriptions with wildcards and gap-free replay,
//! groups and hashtags.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_server::ServerError> {
//! let handle = switchboard_server::Server::builder()
//!     .listen_tcp("127.0.0.1:7420")
//!     .start()
//!     .await?;
//! // ... later
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Seams for a later cluster mode: history goes through [`Storage`], fan-out through the
//! routing table in `hub::routes`, and the client directory through `hub::directory`; each
//! is used by the hub only through a narrow interface.
//!
//! Logging uses three `tracing` targets, the server's categories: `GENERAL` (start, stop,
//! channels, groups), `CONNECTION` (sessions opening and closing) and `ERROR` (everything
//! refused or failed).

mod attach;
mod blobs;
mod budget;
pub mod cluster;
mod cmd;
mod config;
mod connection;
mod error;
mod hooks;
mod hub;
pub mod metrics;
mod outbox;
mod scratch_dir;
pub mod security;
mod server;
mod storage;
mod time;
pub mod tls;
mod unix_socket;
mod writer;

pub use attach::{AdmissionRefused, AttachedPeer, ConnectionSlot, HubHandle, ReloadableTls};
pub use config::{DEFAULT_ADDR, ServerConfig};
pub use error::{Refusal, ServerError};
pub use hooks::{Hooks, NoHooks, PublishVerdict, SessionInfo};
pub use hub::message::StoredMessage;
pub use server::{Server, ServerBuilder, ServerHandle};
pub use storage::{
    DiskGuard, DiskReserve, FjallStorage, GroupSnapshot, LoadSink, LogKind, LogReport, LogSnapshot,
    MemoryStorage, RepairReport, Snapshot, Space, SpaceProbe, Storage, StorageError, StoreHealth,
    StoreOptions, SyncFuture, SyncPolicy, repair,
};
pub use tls::{ClientAuth, TlsError, TlsListenerConfig, TlsReloader};

/// Log categories, used as `tracing` targets.
pub mod log {
    /// Server life cycle, channels and groups.
    pub const GENERAL: &str = "GENERAL";
    /// Sessions opening, closing and timing out.
    pub const CONNECTION: &str = "CONNECTION";
    /// Refused input and failures.
    pub const ERROR: &str = "ERROR";
}
