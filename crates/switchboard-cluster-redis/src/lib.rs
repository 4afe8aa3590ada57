//! Cluster mode on Redis: several `switchboard serve` processes that clients see as one
//! hub. Redis holds what they share (channel and group histories as streams, metadata,
//! members, the node registry and the client directory) and carries live messages
//! between them over pub/sub; Redis assigns every message's sequence number and epoch in
//! one script, so all nodes agree on the order.
//!
//! See docs/CLUSTER.md for the design, the data model and what is guaranteed.

mod appender;
pub mod channels;
pub mod engine;
mod engine_bodies;
mod engine_directory;
mod engine_groups;
pub mod error;
pub mod groups;
pub mod keys;
pub mod live;
pub mod nodes;
pub mod subscriber;
pub mod supervisor;
#[cfg(feature = "testing")]
pub mod testing;
pub mod url;

pub use engine::{RedisBackplane, RedisConfig, StartError};
pub use error::BackplaneError;
pub use keys::Keys;
