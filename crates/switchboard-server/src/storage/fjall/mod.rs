//! [`FjallStorage`]: history and directories in an embedded LSM store (fjall), written
//! by the storage writer (one write batch per batch of records), with a journal synced
//! by policy and key-value separation for large records.
//!
//! The parts: [`keys`] (the key layout), [`record`] (records as protocol frames, checked
//! when read back), [`sink`] (how the writer's batches become database writes: one chunk
//! of messages per history per batch), [`trim`] (the thread that takes large removals
//! off the writer), [`load`] (reading everything back at start), [`read`] (reading part
//! of a history back while running) and [`synclog`] (the pre-written log that
//! `sync always` acknowledgements are synced through).
//!
//! Every message is a protocol frame, so its CRC32C checks catch corruption on load. A
//! chunk of one message is exactly the per-message record of earlier versions, so their
//! stores load unchanged.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use parking_lot::Mutex;
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, CreateGroup, MemberInfo, MemberList, Message,
};
use tracing::{error, info};

use self::record::encode_record;
use self::sink::FjallSink;
use self::trim::Trimmer;
use super::space::{DiskGuard, DiskReserve};
use super::writer::{Op, QueueLimits, Writer, WriterHealth};
use super::{
    CollectedMessages, LoadSink, LogKind, Snapshot, Storage, StorageError, SyncFuture, SyncPolicy,
};
use crate::hub::message::StoredMessage;
use crate::log;

mod keys;
mod load;
mod read;
mod record;
mod sink;
mod synclog;
mod trim;

pub(super) use self::record::record_codec;

/// Bodies larger than this are kept in blob files, out of the LSM tree.
const SEPARATION_THRESHOLD: u32 = 4 * 1024;

fn storage_error(context: &str, error: impl std::fmt::Display) -> StorageError {
    StorageError(format!("{context}: {error}"))
}

/// Each history's chunks on disk, oldest first, by key prefix: the chunk's key seq and
/// the newest seq in it.
type ChunkIndex = HashMap<Vec<u8>, VecDeque<(u64, u64)>>;

/// The open database; taken out at close so that the directory is released even while
/// the server's handle lives on.
struct Open {
    db: Database,
    meta: Keyspace,
    messages: Keyspace,
}

/// The open database, shared by the store, the writer's sink and the trim thread, so
/// that the sink can close it and open it again after a failed write.
type Engine = Arc<parking_lot::RwLock<Option<Open>>>;

/// Opens the database in `dir` with its two keyspaces.
fn open_database(dir: &Path) -> Result<Open, StorageError> {
    let db = Database::builder(dir)
        // One background worker for flushes and compactions. With more, the first one
        // leaves compactions to the others by putting each back on the shared queue
        // and taking the next message at once: while another worker compacts, a
        // queued compaction keeps it spinning on a core the hub needs.
        .worker_threads(1)
        // The journal keeps fjall's lz4 for large records (chunks of several messages):
        // without it the writer thread spends less CPU, but writes every byte of
        // compressible bodies to the page cache and the disk (about 9 times more for
        // the bench's 1 KiB bodies).
        .open()
        .map_err(|e| storage_error(&format!("cannot open the store in {}", dir.display()), e))?;
    let meta = db
        .keyspace("meta", KeyspaceCreateOptions::default)
        .map_err(|e| storage_error("cannot open keyspace meta", e))?;
    let messages = db
        .keyspace("messages", || {
            KeyspaceCreateOptions::default().with_kv_separation(Some(
                KvSeparationOptions::default().separation_threshold(SEPARATION_THRESHOLD),
            ))
        })
        .map_err(|e| storage_error("cannot open keyspace messages", e))?;
    Ok(Open { db, meta, messages })
}

/// The store. Open one per data directory (fjall locks it against other processes).
pub struct FjallStorage {
    dir: PathBuf,
    open: Engine,
    guard: Option<Arc<DiskGuard>>,
    writer: Writer,
    trimmer: Arc<Trimmer>,
    /// Filled by `load`, for the writer's trims.
    chunks: Arc<Mutex<ChunkIndex>>,
    trim_thread: Mutex<Option<JoinHandle<()>>>,
    /// The history appended to or trimmed last: its records share this name instead of
    /// each taking a copy (and the writer freeing it).
    last_log: Mutex<Option<(LogKind, Arc<str>)>>,
}

impl std::fmt::Debug for FjallStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStorage")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Checks that `dir` is a usable directory, creating it if its parent exists. A
/// directory that is there but whose volume is full is usable, read-only: the reason is
/// returned.
fn prepare_dir(dir: &Path) -> Result<Option<String>, StorageError> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(StorageError(format!(
                "data directory {} exists but is not a directory",
                dir.display()
            )));
        }
    } else {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(StorageError(format!(
                "data directory {} does not exist and cannot be created: {} is missing",
                dir.display(),
                parent.display()
            )));
        }
        std::fs::create_dir(dir).map_err(|e| {
            storage_error(
                &format!("cannot create data directory {}", dir.display()),
                e,
            )
        })?;
        info!(target: log::GENERAL, dir = %dir.display(), "created data directory");
    }
    // Creating a file is the one portable test of writability (permission bits lie for
    // root and on read-only mounts).
    let probe = dir.join(".switchboard-write-test");
    match std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            let _ = std::fs::remove_file(&probe);
            Ok(Some(format!(
                "the data volume of {} is full ({e})",
                dir.display()
            )))
        }
        Err(e) => Err(storage_error(
            &format!("data directory {} is not writable", dir.display()),
            e,
        )),
    }
}

/// How a store is opened besides its directory and sync policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// Free space writes must leave on the data volume; `None` checks none (and does
    /// not watch the directory either).
    pub reserve: Option<DiskReserve>,
}

impl FjallStorage {
    /// Opens (or creates) the store in `dir`, failing clearly if it cannot, with the
    /// default disk reserve.
    pub fn open(dir: impl Into<PathBuf>, policy: SyncPolicy) -> Result<FjallStorage, StorageError> {
        let options = StoreOptions {
            reserve: Some(DiskReserve::Default),
        };
        FjallStorage::open_with(dir, policy, options)
    }

    /// Opens (or creates) the store in `dir`. On a full volume the store opens read-only:
    /// history is read back, writes are refused with the reason until there is room
    /// again, then taken without a restart.
    pub fn open_with(
        dir: impl Into<PathBuf>,
        policy: SyncPolicy,
        options: StoreOptions,
    ) -> Result<FjallStorage, StorageError> {
        let dir = dir.into();
        let mut read_only = prepare_dir(&dir)?;
        let guard = options
            .reserve
            .map(|reserve| Arc::new(DiskGuard::new(&dir, reserve)));
        if read_only.is_none()
            && let Some(guard) = &guard
            && let Err(full) = guard.has_room()
        {
            read_only = Some(full.0);
        }
        let engine: Engine = Arc::new(parking_lot::RwLock::new(Some(open_database(&dir)?)));
        let (trimmer, trim_thread) = Trimmer::start(&engine)?;
        let chunks = Arc::new(Mutex::new(ChunkIndex::new()));
        let mut sink = FjallSink::new(dir.clone(), engine.clone(), trimmer.clone(), chunks.clone());
        if policy == SyncPolicy::Always {
            sink = sink.with_log(synclog::LOG_BYTES, guard.clone());
        }
        // Before anything is read: what only the sync log kept goes back into the
        // database. On a full volume the store opens read-only all the same, and the
        // log is tried again when the store recovers.
        if let Err(error) = sink.recover_log() {
            if read_only.is_none() {
                trimmer.stop(Some(trim_thread));
                return Err(error);
            }
            error!(target: log::ERROR, %error, "the sync log cannot be replayed yet");
        }
        let writer = match Writer::start(
            policy,
            QueueLimits::default(),
            sink,
            guard.clone(),
            read_only.clone(),
        ) {
            Ok(writer) => writer,
            Err(error) => {
                trimmer.stop(Some(trim_thread));
                return Err(error);
            }
        };
        match &read_only {
            None => info!(target: log::GENERAL, dir = %dir.display(), %policy, "store opened"),
            Some(reason) => {
                error!(target: log::ERROR, dir = %dir.display(), %policy, %reason, "store opened read-only");
            }
        }
        Ok(FjallStorage {
            dir,
            open: engine,
            guard,
            writer,
            trimmer,
            chunks,
            trim_thread: Mutex::new(Some(trim_thread)),
            last_log: Mutex::new(None),
        })
    }

    /// The guard of the data directory (its reserve and identity), shared with the
    /// blob store beside it.
    pub fn guard(&self) -> Option<Arc<DiskGuard>> {
        self.guard.clone()
    }

    /// The history's name for a queued record: the one the previous record took when it
    /// is the same history (a publish's append and trim, consecutive publishes).
    fn shared_name(&self, kind: LogKind, log: &str) -> Arc<str> {
        let mut last = self.last_log.lock();
        if let Some((last_kind, name)) = &*last
            && *last_kind == kind
            && **name == *log
        {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(log);
        *last = Some((kind, name.clone()));
        name
    }

    /// The queued record of a message appended to a history.
    fn append_op(&self, kind: LogKind, log: &str, message: &Arc<StoredMessage>) -> Op {
        Op::Append {
            kind,
            log: self.shared_name(kind, log),
            seq: message.seq(),
            frame: StoredMessage::record_frame(message),
        }
    }

    fn with_open<T>(
        &self,
        work: impl FnOnce(&Open) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match self.open.read().as_ref() {
            Some(open) => work(open),
            None => Err(StorageError("the store is closed".into())),
        }
    }
}

impl Storage for FjallStorage {
    fn is_durable(&self) -> bool {
        true
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        let mut collected = CollectedMessages::default();
        let mut snapshot = self.load_into(&mut collected)?;
        collected.fill(&mut snapshot);
        Ok(snapshot)
    }

    fn load_into(&self, sink: &mut dyn LoadSink) -> Result<Snapshot, StorageError> {
        let mut chunks = ChunkIndex::new();
        let snapshot = self.with_open(|open| open.load(&mut chunks, sink))?;
        self.chunks.lock().extend(chunks);
        Ok(snapshot)
    }

    fn put_channel(&self, name: &str, options: &ChannelOptions) -> Result<(), StorageError> {
        let record = encode_record(&CreateChannel {
            name: name.into(),
            options: *options,
        })?;
        self.writer.push(Op::Put {
            key: keys::channel_key(name),
            value: record,
        })
    }

    fn append(
        &self,
        kind: LogKind,
        log: &str,
        message: &Arc<StoredMessage>,
    ) -> Result<(), StorageError> {
        self.writer.push(self.append_op(kind, log, message))
    }

    fn append_awaited(
        &self,
        kind: LogKind,
        log: &str,
        message: &Arc<StoredMessage>,
    ) -> Result<(), StorageError> {
        self.writer.push_awaited(self.append_op(kind, log, message))
    }

    fn trim(&self, kind: LogKind, log: &str, through_seq: u64) {
        // Refused only once the store failed or closed; nothing is trimmed then anyway.
        let _ = self.writer.push(Op::Trim {
            kind,
            log: self.shared_name(kind, log),
            through: through_seq,
        });
    }

    fn put_group(&self, name: &str, description: &str) -> Result<(), StorageError> {
        let record = encode_record(&CreateGroup {
            name: name.into(),
            description: description.into(),
        })?;
        self.writer.push(Op::Put {
            key: keys::group_key(name),
            value: record,
        })
    }

    fn add_member(&self, group: &str, member: &str) -> Result<(), StorageError> {
        // The key says it all for loading; the value is the same fact as a checked frame
        // (a list of one), so that `repair` can find the member when keys are damaged.
        let value = encode_record(&MemberList {
            group: group.into(),
            members: vec![MemberInfo {
                name: member.into(),
                online: false,
            }],
            next: None,
        })?;
        self.writer.push(Op::Put {
            key: keys::member_key(group, member),
            value,
        })
    }

    fn remove_member(&self, group: &str, member: &str) -> Result<(), StorageError> {
        self.writer.push(Op::Remove {
            key: keys::member_key(group, member),
        })
    }

    fn delete_channel(&self, name: &str) -> Result<(), StorageError> {
        self.writer.push(Op::DeleteLog {
            kind: LogKind::Channel,
            log: name.into(),
        })
    }

    fn delete_group(&self, name: &str) -> Result<(), StorageError> {
        self.writer.push(Op::DeleteLog {
            kind: LogKind::Group,
            log: name.into(),
        })
    }

    fn bytes_queued(&self) -> u64 {
        self.writer.queued_bytes()
    }

    fn sync(&self) -> SyncFuture {
        self.writer.sync()
    }

    fn sync_here(&self) -> Option<Result<(), StorageError>> {
        self.writer.sync_here()
    }

    fn can_sync_here(&self) -> bool {
        self.writer.can_sync_here()
    }

    fn syncs(&self) -> u64 {
        self.writer.syncs()
    }

    fn can_read_back(&self) -> bool {
        true
    }

    fn queued_through(&self) -> u64 {
        self.writer.queued_through()
    }

    fn written_through(&self) -> u64 {
        self.writer.written_through()
    }

    fn read_log(
        &self,
        kind: LogKind,
        log: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<Message>, StorageError> {
        self.with_open(|open| open.read_messages(kind, log, first, last))
    }

    fn sync_latency(&self) -> crate::metrics::HistogramSnapshot {
        self.writer.sync_latency()
    }

    fn health(&self) -> WriterHealth {
        let mut health = self.writer.health();
        if let Some(gone) = self.guard.as_ref().and_then(|guard| guard.gone()) {
            health.refusing = Some(gone);
        }
        health.disk_full_refusals = self.guard.as_ref().map_or(0, |guard| guard.refusals());
        health
    }

    fn close(&self, next_seqs: &[(LogKind, String, u64)]) {
        // The writer first: it writes what is queued and hands its last trims over.
        self.writer.stop();
        self.trimmer.stop(self.trim_thread.lock().take());
        let Some(open) = self.open.write().take() else {
            return;
        };
        for (kind, name, next_seq) in next_seqs {
            if let Err(error) = open
                .meta
                .insert(keys::next_seq_key(*kind, name), next_seq.to_be_bytes())
            {
                error!(target: log::ERROR, log = %name, %error, "recording a sequence number failed");
            }
        }
        if let Err(error) = open.db.persist(PersistMode::SyncAll) {
            error!(target: log::ERROR, %error, "final sync of the store failed");
        }
        drop(open);
        info!(target: log::GENERAL, dir = %self.dir.display(), "store closed");
    }
}

impl Drop for FjallStorage {
    /// Without a [`Storage::close`] the threads still end, after writing what is queued.
    fn drop(&mut self) {
        self.writer.stop();
        self.trimmer.stop(self.trim_thread.lock().take());
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchboard_proto::packet::{Message, Scope};

    use std::time::Duration;

    use super::record::{decode_chunk, record_codec};
    use super::*;
    use crate::storage::writer::Sink;

    fn message(channel: &str, seq: u64) -> Arc<StoredMessage> {
        let message = Message {
            scope: Scope::Channel,
            channel: channel.into(),
            seq,
            body: Bytes::from(format!("{channel} #{seq}")),
            ..Message::default()
        };
        Arc::new(
            StoredMessage::encode(&record_codec(), &message.as_envelope(), Vec::new()).unwrap(),
        )
    }

    fn open(dir: &Path) -> FjallStorage {
        FjallStorage::open(dir, SyncPolicy::Always).unwrap()
    }

    /// Channels with their next seq and the seqs of the messages stored.
    fn channels(snapshot: &Snapshot) -> Vec<(String, u64, Vec<u64>)> {
        let mut channels: Vec<_> = snapshot
            .channels
            .iter()
            .map(|log| {
                let seqs = log.messages.iter().map(|m| m.seq).collect();
                (log.name.clone(), log.next_seq, seqs)
            })
            .collect();
        channels.sort();
        channels
    }

    /// The seqs each stored chunk of a history holds, read raw from the keyspace.
    fn stored_chunks(store: &FjallStorage, log: &str) -> Vec<Vec<u64>> {
        store
            .with_open(|open| {
                let mut chunks = Vec::new();
                for entry in open
                    .messages
                    .prefix(keys::log_prefix(LogKind::Channel, log))
                {
                    let (key, value) = entry.into_inner().unwrap();
                    let mut messages = Vec::new();
                    assert_eq!(decode_chunk(&key, &value, &mut messages), 0);
                    chunks.push(messages.iter().map(|m| m.seq).collect());
                }
                Ok(chunks)
            })
            .unwrap()
    }

    #[tokio::test]
    async fn close_writes_everything_queued_across_channels_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert!(store.load().unwrap().channels.is_empty());
        for name in ["a", "b"] {
            store.put_channel(name, &ChannelOptions::default()).unwrap();
        }
        for seq in 1..=3000 {
            store
                .append(LogKind::Channel, "a", &message("a", seq))
                .unwrap();
            for b in [2 * seq - 1, 2 * seq] {
                store
                    .append(LogKind::Channel, "b", &message("b", b))
                    .unwrap();
            }
            // Retention of 100 messages in "a", trimmed as the hub does: after each append.
            if seq > 100 {
                store.trim(LogKind::Channel, "a", seq - 100);
            }
            // Batches end here at least, so that "b" has many chunks.
            if seq % 100 == 0 {
                store.sync().await.unwrap();
            }
        }
        // Removes more chunks than one batch does: the rest go to the trim thread.
        store.trim(LogKind::Channel, "b", 5900);
        store
            .append(LogKind::Channel, "a", &message("a", 3001))
            .unwrap();
        // No sync awaited for the last records: close alone must write and sync them.
        store.close(&[]);
        drop(store);

        let store = open(dir.path());
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.corrupt_records, 0);
        assert_eq!(
            channels(&snapshot),
            [
                ("a".to_owned(), 3002, (2901..=3001).collect()),
                ("b".to_owned(), 6001, (5901..=6000).collect()),
            ]
        );
        // Only chunks holding something newer than the trim are left.
        for (log, through) in [("a", 2900), ("b", 5900)] {
            let chunks = stored_chunks(&store, log);
            assert!(!chunks.is_empty());
            for chunk in chunks {
                assert!(chunk.iter().any(|&seq| seq > through), "{log}: {chunk:?}");
            }
        }
        // Trims after a restart know the chunks loaded.
        store.trim(LogKind::Channel, "a", 2950);
        store.close(&[]);
        drop(store);
        let store = open(dir.path());
        let snapshot = store.load().unwrap();
        assert_eq!(channels(&snapshot)[0].2, (2951..=3001).collect::<Vec<_>>());
        for chunk in stored_chunks(&store, "a") {
            assert!(chunk.iter().any(|&seq| seq > 2950), "{chunk:?}");
        }
        store.close(&[]);
    }

    /// A batch's records and its trims are one journal write (one fjall batch, so one
    /// sequence number), and the trim still removes the chunks it covers.
    #[tokio::test]
    async fn a_batch_writes_its_records_and_trims_in_one_journal_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.load().unwrap();
        store.put_channel("a", &ChannelOptions::default()).unwrap();
        store
            .append(LogKind::Channel, "a", &message("a", 1))
            .unwrap();
        store.sync().await.unwrap();
        assert_eq!(stored_chunks(&store, "a"), [vec![1]]);

        let mut sink = FjallSink::new(
            dir.path().to_owned(),
            store.open.clone(),
            store.trimmer.clone(),
            store.chunks.clone(),
        );
        let seqno = || store.with_open(|open| Ok(open.db.seqno())).unwrap();
        let append = |seq| Op::Append {
            kind: LogKind::Channel,
            log: "a".into(),
            seq,
            frame: StoredMessage::record_frame(&message("a", seq)),
        };
        let trim = Op::Trim {
            kind: LogKind::Channel,
            log: "a".into(),
            through: 1,
        };
        let before = seqno();
        sink.write(&[append(2), trim, append(3)]).unwrap();
        assert_eq!(seqno() - before, 1, "more than one batch written");
        assert_eq!(stored_chunks(&store, "a"), [vec![2, 3]]);
        store.close(&[]);
    }

    #[tokio::test]
    async fn a_sync_resolves_once_every_channel_appended_before_it_was_written_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.load().unwrap();
        store.put_channel("a", &ChannelOptions::default()).unwrap();
        store.put_channel("b", &ChannelOptions::default()).unwrap();
        let syncs_before = store.syncs();
        store
            .append(LogKind::Channel, "a", &message("a", 1))
            .unwrap();
        store
            .append(LogKind::Channel, "b", &message("b", 1))
            .unwrap();
        store.sync().await.unwrap();
        assert!(store.syncs() > syncs_before);
        // Read back without a clean close: what the sync covered is in the journal.
        let mut collected = CollectedMessages::default();
        let mut snapshot = store
            .with_open(|open| open.load(&mut HashMap::new(), &mut collected))
            .unwrap();
        collected.fill(&mut snapshot);
        assert_eq!(
            channels(&snapshot),
            [("a".to_owned(), 2, vec![1]), ("b".to_owned(), 2, vec![1])]
        );
        store.close(&[]);
    }

    /// Copies every file of `from` into `to` (made if missing), as a disk would hold
    /// them after losing power.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let path = entry.path();
            let target = to.join(entry.file_name());
            if path.is_dir() {
                copy_dir(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }

    fn synclog_path(dir: &Path) -> PathBuf {
        dir.join(synclog::FILE_NAME)
    }

    /// A store opened and loaded in `live`, and where `image`, a copy of its files as a
    /// crash would leave them, is to go; both under a temporary directory kept with them.
    fn live_store() -> (tempfile::TempDir, PathBuf, PathBuf, FjallStorage) {
        let parent = tempfile::tempdir().unwrap();
        let (live, image) = (parent.path().join("live"), parent.path().join("image"));
        let store = open(&live);
        store.load().unwrap();
        (parent, live, image, store)
    }

    /// `sync always` syncs only the sync log: a power loss may take everything the
    /// database wrote since its last checkpoint, and every acknowledged record must
    /// still come back, from the log.
    #[tokio::test]
    async fn acknowledged_records_come_back_from_the_sync_log_when_the_database_lost_them() {
        let (_parent, live, image, store) = live_store();
        // What the disk holds at the checkpoint made at open.
        copy_dir(&live, &image);
        store.put_channel("a", &ChannelOptions::default()).unwrap();
        store.put_group("g", "the group").unwrap();
        store.add_member("g", "ann").unwrap();
        // Fewer than the test log holds (16 blocks): no checkpoint in between.
        for seq in 1..=10 {
            store
                .append(LogKind::Channel, "a", &message("a", seq))
                .unwrap();
            store.sync().await.unwrap();
        }
        store.trim(LogKind::Channel, "a", 2);
        store
            .append(LogKind::Channel, "a", &message("a", 11))
            .unwrap();
        store.sync().await.unwrap();
        // The power goes: the database's files as at the checkpoint, the log as synced.
        std::fs::copy(synclog_path(&live), synclog_path(&image)).unwrap();
        store.close(&[]);
        drop(store);

        let store = open(&image);
        let snapshot = store.load().unwrap();
        assert_eq!(
            channels(&snapshot),
            [("a".to_owned(), 12, (3..=11).collect())]
        );
        assert_eq!(group_members(&snapshot, "g"), ["ann"]);
        // Replayed, synced into the database, and the log started afresh: a second
        // restart finds the same.
        store.close(&[]);
        drop(store);
        let store = open(&image);
        assert_eq!(
            channels(&store.load().unwrap()),
            [("a".to_owned(), 12, (3..=11).collect())]
        );
        store.close(&[]);
    }

    /// The database may hold batches the log lost (a log write that failed, or a power
    /// loss that kept the journal's later blocks but not the log's): the records it
    /// holds are not replayed over it.
    #[tokio::test]
    async fn records_the_database_holds_are_not_replayed_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.load().unwrap();
        store.put_channel("a", &ChannelOptions::default()).unwrap();
        store.sync().await.unwrap();
        let older_log = std::fs::read(synclog_path(dir.path())).unwrap();
        store.delete_channel("a").unwrap();
        store.put_channel("b", &ChannelOptions::default()).unwrap();
        store.sync().await.unwrap();
        store.close(&[]);
        drop(store);
        // The log as it was before the deletion: its one record, the channel's creation,
        // is older than what the database holds.
        std::fs::write(synclog_path(dir.path()), older_log).unwrap();
        let store = open(dir.path());
        let snapshot = store.load().unwrap();
        assert_eq!(channels(&snapshot), [("b".to_owned(), 1, vec![])]);
        store.close(&[]);
    }

    /// Many more batches than the (test-sized) log holds, and some larger than it: the
    /// log is checkpointed and started again as it fills, and everything comes back
    /// after a restart that closed nothing.
    #[tokio::test]
    async fn the_sync_log_wraps_and_batches_larger_than_it_go_to_the_database() {
        let (_parent, live, image, store) = live_store();
        store.put_channel("a", &ChannelOptions::default()).unwrap();
        let big = |seq| {
            let message = Message {
                scope: Scope::Channel,
                channel: "a".into(),
                seq,
                body: Bytes::from(vec![b'x'; synclog::LOG_BYTES as usize]),
                ..Message::default()
            };
            Arc::new(
                StoredMessage::encode(&record_codec(), &message.as_envelope(), Vec::new()).unwrap(),
            )
        };
        for seq in 1..=100 {
            let stored = if seq % 40 == 0 {
                big(seq)
            } else {
                message("a", seq)
            };
            store.append(LogKind::Channel, "a", &stored).unwrap();
            store.sync().await.unwrap();
        }
        // A copy of the files as a crash leaves them: nothing closed.
        copy_dir(&live, &image);
        store.close(&[]);
        drop(store);
        let store = open(&image);
        let snapshot = store.load().unwrap();
        assert_eq!(
            channels(&snapshot),
            [("a".to_owned(), 101, (1..=100).collect())]
        );
        store.close(&[]);
    }

    /// Without `sync always` the log is not used: one left by an earlier run is replayed
    /// and removed.
    #[tokio::test]
    async fn a_store_opened_without_sync_always_replays_and_removes_the_log() {
        let (_parent, live, image, store) = live_store();
        copy_dir(&live, &image);
        store.put_channel("a", &ChannelOptions::default()).unwrap();
        store
            .append(LogKind::Channel, "a", &message("a", 1))
            .unwrap();
        store.sync().await.unwrap();
        std::fs::copy(synclog_path(&live), synclog_path(&image)).unwrap();
        store.close(&[]);
        drop(store);
        let store = FjallStorage::open(&image, SyncPolicy::default()).unwrap();
        assert!(!synclog_path(&image).exists());
        assert_eq!(
            channels(&store.load().unwrap()),
            [("a".to_owned(), 2, vec![1])]
        );
        store.close(&[]);
        let never = tempfile::tempdir().unwrap();
        let store = FjallStorage::open(never.path(), SyncPolicy::Never).unwrap();
        assert!(!synclog_path(never.path()).exists());
        store.close(&[]);
    }

    /// A store with channel "a" (200 messages, one chunk each) and group "g" with two
    /// members and one message; with `flush`, the memtables are written as tables.
    async fn damaged_store_fixture(dir: &Path, flush: bool) {
        let store = open(dir);
        store.load().unwrap();
        let options = ChannelOptions {
            history: Some(10_000),
            ..ChannelOptions::default()
        };
        store.put_channel("a", &options).unwrap();
        for seq in 1..=200 {
            store
                .append(LogKind::Channel, "a", &message("a", seq))
                .unwrap();
            store.sync().await.unwrap();
        }
        store.put_group("g", "the group").unwrap();
        store.add_member("g", "ann").unwrap();
        store.add_member("g", "bob").unwrap();
        let mut post = Message {
            scope: Scope::Group,
            channel: "g".into(),
            seq: 1,
            body: Bytes::from("to the group"),
            ..Message::default()
        };
        post.sender_name = "ann".into();
        let post = Arc::new(
            StoredMessage::encode(&record_codec(), &post.as_envelope(), Vec::new()).unwrap(),
        );
        store.append(LogKind::Group, "g", &post).unwrap();
        store.sync().await.unwrap();
        if flush {
            store
                .with_open(|open| {
                    open.messages.rotate_memtable_and_wait().unwrap();
                    open.meta.rotate_memtable_and_wait().unwrap();
                    Ok(())
                })
                .unwrap();
        }
        store.close(&[]);
    }

    /// Flips a byte inside the first occurrence of `needle` in every file under `dir`
    /// whose path contains `within`; returns how many files were damaged.
    fn flip(dir: &Path, needle: &[u8], within: &str) -> usize {
        let mut damaged = 0;
        let mut pending = vec![dir.to_owned()];
        while let Some(current) = pending.pop() {
            for entry in std::fs::read_dir(&current).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !path.to_string_lossy().contains(within) {
                    continue;
                }
                let mut bytes = std::fs::read(&path).unwrap();
                if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                    bytes[at + needle.len() - 1] ^= 0x5A;
                    std::fs::write(&path, bytes).unwrap();
                    damaged += 1;
                }
            }
        }
        damaged
    }

    fn opens_and_loads(dir: &Path) -> Result<Snapshot, StorageError> {
        let store = FjallStorage::open(dir, SyncPolicy::Always)?;
        let snapshot = store.load();
        store.close(&[]);
        snapshot
    }

    fn check_repaired(dir: &Path, lost: &[u64]) {
        let snapshot = opens_and_loads(dir).expect("the repaired store opens");
        let expected: Vec<u64> = (1..=200).filter(|seq| !lost.contains(seq)).collect();
        assert_eq!(channels(&snapshot), [("a".to_owned(), 201, expected)]);
        assert_eq!(snapshot.groups.len(), 1);
        let group = &snapshot.groups[0];
        assert_eq!(group.description, "the group");
        assert_eq!(group.members, ["ann", "bob"]);
        assert_eq!(group.history.messages.len(), 1);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_the_journal_is_repaired_keeping_every_intact_message() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        damaged_store_fixture(&dir, false).await;
        assert!(opens_and_loads(&dir).is_ok());
        assert!(
            flip(&dir, b"a #100", ".jnl") > 0,
            "no journal holds message 100"
        );
        let refused = opens_and_loads(&dir);
        assert!(refused.is_err(), "a damaged journal went unnoticed");

        let report = crate::storage::repair(&dir).unwrap();
        assert_eq!(report.channels.len(), 1);
        let a = &report.channels[0];
        assert_eq!(
            (a.kept, a.first_seq, a.last_seq, a.missing),
            (199, 1, 200, 1)
        );
        assert!(report.damaged_frames >= 1);
        assert!(report.damaged_dir.is_dir());
        check_repaired(&dir, &[100]);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_a_table_is_repaired_keeping_every_intact_message() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        damaged_store_fixture(&dir, true).await;
        assert!(
            flip(&dir, b"a #100", "keyspaces") > 0,
            "no table holds message 100"
        );
        let refused = opens_and_loads(&dir);
        assert!(refused.is_err(), "a damaged table went unnoticed");

        let report = crate::storage::repair(&dir).unwrap();
        let a = &report.channels[0];
        // The journal may still hold a copy of the damaged message.
        assert!(a.kept >= 199, "{report:?}");
        assert_eq!(a.kept + a.missing, 200, "{report:?}");
        let lost: Vec<u64> = if a.missing == 1 { vec![100] } else { vec![] };
        check_repaired(&dir, &lost);
    }

    #[tokio::test]
    async fn repair_leaves_an_intact_store_alone_and_refuses_one_in_use() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        damaged_store_fixture(&dir, false).await;
        let report = crate::storage::repair(&dir).unwrap();
        assert!(report.intact);
        check_repaired(&dir, &[]);

        let store = open(&dir);
        let error = crate::storage::repair(&dir).unwrap_err();
        assert!(error.to_string().contains("in use"), "{error}");
        store.close(&[]);
    }

    /// Every key of the meta keyspace, for checking what a deletion left.
    fn meta_keys(store: &FjallStorage) -> Vec<Vec<u8>> {
        store
            .with_open(|open| {
                Ok(open
                    .meta
                    .iter()
                    .map(|entry| entry.key().unwrap().to_vec())
                    .collect())
            })
            .unwrap()
    }

    fn group_members(snapshot: &Snapshot, group: &str) -> Vec<String> {
        snapshot
            .groups
            .iter()
            .find(|g| g.name == group)
            .map(|g| g.members.clone())
            .unwrap_or_default()
    }

    /// Joins `count` members named from `from` on, then waits for the store; returns
    /// the bytes the store was handed and the time it took.
    async fn join_batch(store: &FjallStorage, from: usize, count: usize) -> (u64, Duration) {
        let before = store.bytes_queued();
        let started = std::time::Instant::now();
        for i in from..from + count {
            store.add_member("big", &format!("member-{i:06}")).unwrap();
        }
        store.sync().await.unwrap();
        (store.bytes_queued() - before, started.elapsed())
    }

    /// A join costs the same at 20,000 members as at none: one small record, not the
    /// whole member list (which made 12,000 joins write 433 MB).
    #[tokio::test]
    async fn a_join_writes_the_same_few_bytes_however_large_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStorage::open(dir.path(), SyncPolicy::Never).unwrap();
        store.load().unwrap();
        store.put_group("big", "").unwrap();
        let (first_bytes, first_time) = join_batch(&store, 0, 2_000).await;
        join_batch(&store, 2_000, 18_000).await;
        let (later_bytes, later_time) = join_batch(&store, 20_000, 2_000).await;
        // A record is its key ("m/big", a separator, a 13-byte name) and an overhead.
        let per_join = later_bytes / 2_000;
        assert!(
            per_join < 256,
            "{per_join} bytes per join at 20,000 members"
        );
        assert_eq!(
            first_bytes, later_bytes,
            "the same bytes at 0 and 20,000 members"
        );
        // Time is noisier than bytes: a generous bound.
        assert!(
            later_time < first_time * 4 + Duration::from_millis(500),
            "2,000 joins took {first_time:?} at 0 members, {later_time:?} at 20,000"
        );
        store.remove_member("big", "member-000007").unwrap();
        store.close(&[]);
        drop(store);
        let store = open(dir.path());
        let members = group_members(&store.load().unwrap(), "big");
        assert_eq!(members.len(), 21_999);
        assert!(!members.iter().any(|m| m == "member-000007"));
        store.close(&[]);
    }

    #[tokio::test]
    async fn a_join_and_leave_in_one_batch_leave_no_member() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.load().unwrap();
        store.put_group("g", "").unwrap();
        store.add_member("g", "ann").unwrap();
        store.remove_member("g", "ann").unwrap();
        store.add_member("g", "bob").unwrap();
        store.close(&[]);
        drop(store);
        let store = open(dir.path());
        assert_eq!(group_members(&store.load().unwrap(), "g"), ["bob"]);
        store.close(&[]);
    }

    /// Stores written by earlier versions keep a group's members as one list: they load,
    /// and are rewritten as one record per member.
    #[tokio::test]
    async fn member_lists_of_earlier_versions_load_and_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.load().unwrap();
        store.put_group("old", "").unwrap();
        let list = encode_record(&MemberList {
            group: "old".into(),
            members: ["ann", "bob"]
                .iter()
                .map(|name| MemberInfo {
                    name: (*name).into(),
                    online: false,
                })
                .collect(),
            next: None,
        })
        .unwrap();
        store
            .writer
            .push(Op::Put {
                key: keys::members_key("old"),
                value: list,
            })
            .unwrap();
        store.close(&[]);
        drop(store);
        let store = open(dir.path());
        assert_eq!(group_members(&store.load().unwrap(), "old"), ["ann", "bob"]);
        assert!(!meta_keys(&store).contains(&keys::members_key("old")));
        store.add_member("old", "cy").unwrap();
        store.close(&[]);
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            group_members(&store.load().unwrap(), "old"),
            ["ann", "bob", "cy"]
        );
        store.close(&[]);
    }

    /// A deleted channel or group leaves no key behind, and a name created again in the
    /// same batch starts afresh.
    #[tokio::test]
    async fn deleting_removes_every_key_of_a_channel_and_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.load().unwrap();
        store
            .put_channel("keep", &ChannelOptions::default())
            .unwrap();
        store
            .put_channel("gone", &ChannelOptions::default())
            .unwrap();
        store.put_group("team", "").unwrap();
        store.add_member("team", "ann").unwrap();
        for seq in 1..=50 {
            for log in ["keep", "gone"] {
                store
                    .append(LogKind::Channel, log, &message(log, seq))
                    .unwrap();
            }
            store
                .append(LogKind::Group, "team", &message("team", seq))
                .unwrap();
            if seq % 10 == 0 {
                store.sync().await.unwrap();
            }
        }
        store.trim(LogKind::Channel, "gone", 5);
        store.sync().await.unwrap();
        store
            .append(LogKind::Channel, "gone", &message("gone", 51))
            .unwrap();
        // Deleted, then created again before the writer took any of it.
        store.delete_channel("gone").unwrap();
        store
            .put_channel("gone", &ChannelOptions::default())
            .unwrap();
        store
            .append(LogKind::Channel, "gone", &message("gone", 1))
            .unwrap();
        store.delete_group("team").unwrap();
        store.close(&[(LogKind::Channel, "keep".into(), 51)]);
        drop(store);

        let store = open(dir.path());
        let snapshot = store.load().unwrap();
        assert_eq!(
            channels(&snapshot),
            [
                ("gone".to_owned(), 2, vec![1]),
                ("keep".to_owned(), 51, (1..=50).collect()),
            ]
        );
        assert!(snapshot.groups.is_empty());
        assert_eq!(stored_chunks(&store, "gone"), [vec![1]]);
        let left: Vec<Vec<u8>> = meta_keys(&store)
            .into_iter()
            .filter(|key| !key.ends_with(b"keep") && key != keys::SYNC_LOG_MARK)
            .collect();
        assert_eq!(left, [keys::channel_key("gone")]);
        let group_chunks = store
            .with_open(|open| {
                Ok(open
                    .messages
                    .prefix(keys::log_prefix(LogKind::Group, "team"))
                    .count())
            })
            .unwrap();
        assert_eq!(group_chunks, 0);
        store.close(&[]);
    }
}
