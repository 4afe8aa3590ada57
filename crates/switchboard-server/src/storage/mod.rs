//! The storage seam: where channel and group history, the channel and group directory
//! and group membership are persisted.
//!
//! The hub tells a [`Storage`] of each change to a history, in publish order, under the
//! history's lock; the store gives everything back at start. A store that can read a
//! history back while running ([`Storage::can_read_back`]) lets the hub keep only each
//! history's newest messages in memory and read older ones from it. [`MemoryStorage`]
//! keeps nothing; [`FjallStorage`] keeps it on disk. Deleting a channel or group removes
//! everything stored for it.

mod fjall;
mod repair;
mod space;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::packet::{ChannelOptions, Durability, Message};

use crate::hub::message::StoredMessage;

pub use fjall::{FjallStorage, StoreOptions};
pub use repair::{LogReport, RepairReport, repair};
pub use space::{DiskGuard, DiskReserve, Space, SpaceProbe, human_bytes};
pub use writer::WriterHealth as StoreHealth;

/// A failure of the storage engine.
///
/// The kinds callers tell apart (a full disk, a store that takes no writes for now) are
/// marked by the start of the message, so that every engine can keep building errors
/// from plain strings.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

const DISK_FULL: &str = "disk full: ";
const UNAVAILABLE: &str = "storage unavailable: ";

impl StorageError {
    /// The write would leave less free space than the reserve (or than a byte budget).
    pub fn disk_full(reason: impl std::fmt::Display) -> StorageError {
        StorageError(format!("{DISK_FULL}{reason}"))
    }

    /// The store takes no writes for now: it failed, is read-only, or lost its directory.
    pub fn unavailable(reason: impl std::fmt::Display) -> StorageError {
        StorageError(format!("{UNAVAILABLE}{reason}"))
    }

    pub fn is_disk_full(&self) -> bool {
        self.0.starts_with(DISK_FULL)
    }

    pub fn is_unavailable(&self) -> bool {
        self.0.starts_with(UNAVAILABLE)
    }
}

/// Whether a history belongs to a channel or a group (they have separate name spaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    Channel,
    Group,
}

/// When the store syncs what it wrote to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Never explicitly: the operating system writes back when it chooses.
    Never,
    /// Every interval, in the background; publishes are acknowledged at once.
    Interval(Duration),
    /// Before acknowledging a publish; concurrent publishes share one sync.
    Always,
}

impl SyncPolicy {
    /// The channel durability this policy gives by default.
    pub fn durability(self) -> Durability {
        match self {
            SyncPolicy::Never => Durability::Never,
            SyncPolicy::Interval(_) => Durability::Interval,
            SyncPolicy::Always => Durability::Always,
        }
    }
}

/// In words, for logs and `--check` output: "synced every 100ms", "synced before each ack".
impl std::fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncPolicy::Never => f.write_str("never synced (the system writes back)"),
            SyncPolicy::Interval(every) => {
                write!(f, "synced every {}", humantime_ms(*every))
            }
            SyncPolicy::Always => f.write_str("synced before each acknowledgement"),
        }
    }
}

/// `100ms`, `2s`: a duration as a person would write it.
fn humantime_ms(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms > 0 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms > 0 {
        format!("{ms}ms")
    } else {
        format!("{}µs", duration.as_micros())
    }
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy::Interval(Duration::from_millis(100))
    }
}

/// What a store gives back at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub channels: Vec<LogSnapshot>,
    pub groups: Vec<GroupSnapshot>,
    /// Records that failed their checksum or did not decode, reported and skipped.
    pub corrupt_records: u64,
}

impl Snapshot {
    /// Every history, channels' then groups'.
    fn logs_mut(&mut self) -> impl Iterator<Item = (LogKind, &mut LogSnapshot)> {
        let channels = self.channels.iter_mut().map(|log| (LogKind::Channel, log));
        let groups = (self.groups.iter_mut()).map(|group| (LogKind::Group, &mut group.history));
        channels.chain(groups)
    }
}

/// One persisted channel or group history.
#[derive(Debug, Default)]
pub struct LogSnapshot {
    pub name: String,
    pub options: ChannelOptions,
    /// The next sequence number to assign (at least one past the newest message).
    pub next_seq: u64,
    /// Persisted messages, oldest first (possibly more than the retention keeps).
    pub messages: Vec<Message>,
}

/// Takes stored histories' messages as [`Storage::load_into`] reads them.
pub trait LoadSink {
    /// The messages given next, until the next call of this, belong to this history
    /// (a group's options are the defaults). Called for every history, even empty.
    fn history(&mut self, kind: LogKind, name: &str, options: &ChannelOptions);
    /// The next message of that history, in sequence order.
    fn message(&mut self, message: Message);
}

/// A [`LoadSink`] that keeps every message, to give a snapshot its messages back.
#[derive(Default)]
pub(crate) struct CollectedMessages {
    logs: HashMap<(LogKind, String), Vec<Message>>,
    current: Option<((LogKind, String), Vec<Message>)>,
}

impl CollectedMessages {
    /// Puts the messages collected into `snapshot`'s histories.
    pub(crate) fn fill(mut self, snapshot: &mut Snapshot) {
        self.finish_current();
        for (kind, log) in snapshot.logs_mut() {
            if let Some(messages) = self.logs.remove(&(kind, log.name.clone())) {
                log.messages = messages;
            }
        }
    }

    fn finish_current(&mut self) {
        if let Some((log, messages)) = self.current.take() {
            self.logs.insert(log, messages);
        }
    }
}

impl LoadSink for CollectedMessages {
    fn history(&mut self, kind: LogKind, name: &str, _options: &ChannelOptions) {
        self.finish_current();
        self.current = Some(((kind, name.to_owned()), Vec::new()));
    }

    fn message(&mut self, message: Message) {
        if let Some((_, messages)) = &mut self.current {
            messages.push(message);
        }
    }
}

/// One persisted group.
#[derive(Debug, Default)]
pub struct GroupSnapshot {
    pub name: String,
    pub description: String,
    pub members: Vec<String>,
    pub history: LogSnapshot,
}

/// Resolves once everything appended before it was created is on disk.
pub type SyncFuture = Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send>>;

/// A persistence engine. Mutating calls are made in publish order with the history's
/// lock held, so they must be quick: an implementation buffers, and syncs and trims in
/// the background.
pub trait Storage: Send + Sync + 'static {
    /// Whether anything survives a restart (false for memory only).
    fn is_durable(&self) -> bool;
    /// Everything persisted, to rebuild the hub at start.
    fn load(&self) -> Result<Snapshot, StorageError>;
    /// As [`Storage::load`], but each history's messages go to `sink` as they are read,
    /// and the snapshot comes back without them: a store that holds more than memory
    /// should (one that reads back, see [`Storage::can_read_back`]) streams them here, so
    /// that a restart never holds a whole history at once.
    fn load_into(&self, sink: &mut dyn LoadSink) -> Result<Snapshot, StorageError> {
        let mut snapshot = self.load()?;
        for (kind, log) in snapshot.logs_mut() {
            sink.history(kind, &log.name, &log.options);
            for message in std::mem::take(&mut log.messages) {
                sink.message(message);
            }
        }
        Ok(snapshot)
    }
    /// A channel was created.
    fn put_channel(&self, name: &str, options: &ChannelOptions) -> Result<(), StorageError>;
    /// A message was appended to a history. May only queue it: an error here means the
    /// store cannot take it (closed, or failed earlier); a write that fails later refuses
    /// the [`Storage::sync`] futures that cover it, and every later append.
    fn append(
        &self,
        kind: LogKind,
        log: &str,
        message: &Arc<StoredMessage>,
    ) -> Result<(), StorageError>;
    /// As [`Storage::append`], for a message whose publisher then waits for a sync
    /// ([`Storage::sync_here`] or [`Storage::sync`]): the store may leave it queued until
    /// that sync asks for it.
    fn append_awaited(
        &self,
        kind: LogKind,
        log: &str,
        message: &Arc<StoredMessage>,
    ) -> Result<(), StorageError> {
        self.append(kind, log, message)
    }
    /// Messages up to and including `through_seq` left a history. Done in the
    /// background; failures are logged, not returned, since the publish that caused the
    /// trim has already succeeded.
    fn trim(&self, kind: LogKind, log: &str, through_seq: u64);
    /// A group was created.
    fn put_group(&self, name: &str, description: &str) -> Result<(), StorageError>;
    /// `member` joined `group`. One small record per member, so that a join costs the
    /// same whatever the size of the group.
    fn add_member(&self, group: &str, member: &str) -> Result<(), StorageError>;
    /// `member` left `group`.
    fn remove_member(&self, group: &str, member: &str) -> Result<(), StorageError>;
    /// A channel was deleted: its options, its counters and every stored message go.
    /// Ordered with the appends like a trim; a channel of that name created later
    /// starts empty.
    fn delete_channel(&self, name: &str) -> Result<(), StorageError>;
    /// A group was deleted: its description, members, counters and every message go.
    fn delete_group(&self, name: &str) -> Result<(), StorageError>;
    /// Everything appended so far, on disk: resolves once a sync covered it, or with
    /// an error if it cannot be (a failed write or sync).
    fn sync(&self) -> SyncFuture;
    /// Everything appended so far, written and synced on the calling thread if the store
    /// is idle: `Some(Ok(()))` once it is on disk. `None` when it was not done here
    /// (the store is busy, failed, or keeps nothing to sync): [`Storage::sync`] then
    /// says when, or whether, it is on disk. Blocks the caller for a write and a sync.
    fn sync_here(&self) -> Option<Result<(), StorageError>> {
        None
    }
    /// Whether [`Storage::sync_here`] would sync on the calling thread now (it may still
    /// not, if the store got busy meanwhile): a cheap look, for a caller that prepares
    /// its thread before blocking it.
    fn can_sync_here(&self) -> bool {
        false
    }
    /// How many syncs to disk were made (for STATS; shows group commit at work).
    fn syncs(&self) -> u64 {
        0
    }

    /// Whether [`Storage::read_log`] gives back, while the server runs, every message
    /// written ([`Storage::written_through`]) and not trimmed: a history may then keep
    /// only its newest messages in memory.
    fn can_read_back(&self) -> bool {
        false
    }

    /// The number of the newest record queued so far (records are numbered from 1 in
    /// the order they are queued): a message appended before this call can be read back
    /// once [`Storage::written_through`] reaches this number.
    fn queued_through(&self) -> u64 {
        0
    }

    /// Records up to this number are written, and readable by [`Storage::read_log`].
    fn written_through(&self) -> u64 {
        0
    }

    /// The stored messages of a history with sequence numbers from `first` through
    /// `last`, oldest first. Only those written ([`Storage::written_through`]) are sure
    /// to be there; a record that fails its checksum is reported and left out.
    fn read_log(
        &self,
        _kind: LogKind,
        _log: &str,
        _first: u64,
        _last: u64,
    ) -> Result<Vec<Message>, StorageError> {
        Ok(Vec::new())
    }

    /// How long its syncs to disk took (empty for a store that never syncs).
    fn sync_latency(&self) -> crate::metrics::HistogramSnapshot {
        crate::metrics::HistogramSnapshot::default()
    }

    /// Whether the store takes writes now (and why not), and its failures and
    /// recoveries, for STATS.
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }

    /// What every record handed to the store so far weighs, in bytes (keys, values and
    /// a small fixed overhead per record): the store's write volume, for STATS.
    fn bytes_queued(&self) -> u64 {
        0
    }

    /// The server is stopping: record where each history's sequence stands, sync, and
    /// stop background work.
    fn close(&self, next_seqs: &[(LogKind, String, u64)]);
}

/// Keeps nothing: history lives only in the hub's memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn is_durable(&self) -> bool {
        false
    }
    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot::default())
    }
    fn put_channel(&self, _name: &str, _options: &ChannelOptions) -> Result<(), StorageError> {
        Ok(())
    }
    fn append(
        &self,
        _kind: LogKind,
        _log: &str,
        _message: &Arc<StoredMessage>,
    ) -> Result<(), StorageError> {
        Ok(())
    }
    fn trim(&self, _kind: LogKind, _log: &str, _through_seq: u64) {}
    fn put_group(&self, _name: &str, _description: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn add_member(&self, _group: &str, _member: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn remove_member(&self, _group: &str, _member: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn delete_channel(&self, _name: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn delete_group(&self, _name: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn sync(&self) -> SyncFuture {
        Box::pin(std::future::ready(Ok(())))
    }
    fn close(&self, _next_seqs: &[(LogKind, String, u64)]) {}
}

/// Runs `io`, which waits on the disk (a store's read or sync), so that it stalls only the
/// task that asked: on a multi-threaded runtime the worker first hands its other tasks,
/// and the I/O and timer driver it may be the only one to run, to another thread. A
/// worker blocked without that can hold up every connection of the runtime, not only its
/// own, until the disk answers. Elsewhere (a current-thread runtime, or none) `io` runs as
/// it is.
pub(crate) fn off_the_runtime<T>(io: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(io)
        }
        _ => io(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_read_as_words() {
        assert_eq!(SyncPolicy::default().to_string(), "synced every 100ms");
        assert_eq!(
            SyncPolicy::Interval(Duration::from_secs(2)).to_string(),
            "synced every 2s"
        );
        assert_eq!(
            SyncPolicy::Always.to_string(),
            "synced before each acknowledgement"
        );
        assert!(!SyncPolicy::Never.to_string().contains("Never"));
    }
}
