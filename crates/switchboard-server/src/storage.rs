//! The storage seam: where channel history, the channel and group directory and group
//! membership are persisted.
//!
//! The hub keeps every channel's retained history in memory and calls a [`Storage`] on
//! each change, so that a durable engine can persist it and give it back at start.
//! [`MemoryStorage`] persists nothing.

use std::sync::Arc;

use switchboard_proto::packet::ChannelOptions;

use crate::hub::message::StoredMessage;

/// A failure of the storage engine.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// What a store gives back at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub channels: Vec<ChannelSnapshot>,
    pub groups: Vec<GroupSnapshot>,
}

/// One persisted channel or group history.
#[derive(Debug, Default)]
pub struct ChannelSnapshot {
    pub name: String,
    pub options: ChannelOptions,
    /// The next sequence number to assign.
    pub next_seq: u64,
    /// Retained messages, oldest first.
    pub messages: Vec<Arc<StoredMessage>>,
}

/// One persisted group.
#[derive(Debug, Default)]
pub struct GroupSnapshot {
    pub name: String,
    pub description: String,
    pub members: Vec<String>,
    pub history: ChannelSnapshot,
}

/// A persistence engine. Calls are made with the channel's lock held, in publish order,
/// so an implementation must be quick (buffer and sync in the background).
pub trait Storage: Send + Sync + 'static {
    /// Everything persisted, to rebuild the hub at start.
    fn load(&self) -> Result<Snapshot, StorageError>;
    /// A channel was created (or its options changed).
    fn put_channel(&self, name: &str, options: &ChannelOptions) -> Result<(), StorageError>;
    /// A message was appended to a channel (`group` false) or group (`group` true).
    fn append(&self, group: bool, log: &str, message: &StoredMessage) -> Result<(), StorageError>;
    /// Messages up to and including `seq` were trimmed from a history.
    fn trim(&self, group: bool, log: &str, through_seq: u64) -> Result<(), StorageError>;
    /// A group was created.
    fn put_group(&self, name: &str, description: &str) -> Result<(), StorageError>;
    /// A group's member list changed.
    fn put_members(&self, group: &str, members: &[String]) -> Result<(), StorageError>;
}

/// Keeps nothing: history lives only in the hub's memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot::default())
    }
    fn put_channel(&self, _name: &str, _options: &ChannelOptions) -> Result<(), StorageError> {
        Ok(())
    }
    fn append(
        &self,
        _group: bool,
        _log: &str,
        _message: &StoredMessage,
    ) -> Result<(), StorageError> {
        Ok(())
    }
    fn trim(&self, _group: bool, _log: &str, _through_seq: u64) -> Result<(), StorageError> {
        Ok(())
    }
    fn put_group(&self, _name: &str, _description: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn put_members(&self, _group: &str, _members: &[String]) -> Result<(), StorageError> {
        Ok(())
    }
}
