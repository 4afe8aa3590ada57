//! [`FjallStorage`]: history and directories in an embedded LSM store (fjall), with a
//! journal synced by policy, key-value separation for large bodies, and trimming in the
//! background.
//!
//! Key layout (all integers big-endian, so keys sort in sequence order):
//!
//! ```text
//! keyspace "meta"
//!   c/<channel>         CREATE_CHANNEL frame: the channel's options
//!   g/<group>           CREATE_GROUP frame: name and description
//!   m/<group>           MEMBER_LIST frame: the members
//!   n/<kind><name>      u64: next sequence number, written at trims and at shutdown
//! keyspace "messages"
//!   <kind><name> 0x00 <seq:u64>   MESSAGE frame (no HMAC tag), checked by its CRCs on load
//! ```
//!
//! `<kind>` is `c` for channels and `g` for groups. Names never contain 0x00 (control
//! characters are refused), so a log's keys are exactly those under its prefix. Every
//! record is a protocol frame, so its CRC32C checks catch corruption on load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use parking_lot::{Condvar, Mutex};
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, CreateGroup, Encode, MemberInfo, MemberList, Message, Packet,
};
use switchboard_proto::{Flags, FrameCodec, Limits};
use tokio_util::codec::Decoder;
use tracing::{error, info, warn};

use super::writer::{Op, QueueLimits, Sink, Space, Writer};
use super::{
    GroupSnapshot, LogKind, LogSnapshot, Snapshot, Storage, StorageError, SyncFuture, SyncPolicy,
};
use crate::hub::message::StoredMessage;
use crate::log;

/// Bodies larger than this are kept in blob files, out of the LSM tree.
const SEPARATION_THRESHOLD: u32 = 4 * 1024;

fn storage_error(context: &str, error: impl std::fmt::Display) -> StorageError {
    StorageError(format!("{context}: {error}"))
}

fn kind_byte(kind: LogKind) -> u8 {
    match kind {
        LogKind::Channel => b'c',
        LogKind::Group => b'g',
    }
}

fn log_prefix(kind: LogKind, name: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(name.len() + 2);
    prefix.push(kind_byte(kind));
    prefix.extend_from_slice(name.as_bytes());
    prefix.push(0);
    prefix
}

fn message_key(kind: LogKind, name: &str, seq: u64) -> Vec<u8> {
    let mut key = log_prefix(kind, name);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number a message key ends with.
fn key_seq(key: &[u8]) -> Option<u64> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))?;
    <[u8; 8]>::try_from(tail).ok().map(u64::from_be_bytes)
}

fn next_seq_key(kind: LogKind, name: &str) -> Vec<u8> {
    let mut key = b"n/".to_vec();
    key.push(kind_byte(kind));
    key.extend_from_slice(name.as_bytes());
    key
}

/// Frames with the full limits and no HMAC: the storage format, independent of the key
/// sessions use.
fn record_codec() -> FrameCodec {
    FrameCodec::new(Limits {
        max_header_len: usize::from(u16::MAX),
        max_content_len: u32::MAX,
    })
}

fn encode_record<P: Encode>(packet: &P) -> Result<Bytes, StorageError> {
    let mut buf = BytesMut::new();
    record_codec()
        .encode_packet(0, Flags::empty(), packet, &mut buf)
        .map_err(|e| storage_error("encoding a record", e))?;
    Ok(buf.freeze())
}

/// Decodes a record, checking its CRCs; `None` (after a report) if it is corrupt.
fn decode_record(key: &[u8], value: &[u8]) -> Option<Packet> {
    let mut buf = BytesMut::from(value);
    let decoded = record_codec()
        .decode(&mut buf)
        .and_then(|frame| {
            frame.ok_or(switchboard_proto::ProtoError::Truncated {
                needed: value.len() + 1,
                have: value.len(),
            })
        })
        .and_then(|frame| Packet::from_frame(&frame));
    match decoded {
        Ok(packet) if buf.is_empty() => Some(packet),
        Ok(_) => {
            error!(target: log::ERROR, key = %String::from_utf8_lossy(key), "corrupt record skipped: trailing bytes");
            None
        }
        Err(e) => {
            error!(target: log::ERROR, key = %String::from_utf8_lossy(key), error = %e, "corrupt record skipped");
            None
        }
    }
}

/// Trims that go to the trim thread: the widest range asked per history.
#[derive(Default)]
struct TrimQueue {
    pending: HashMap<(LogKind, String), (u64, u64)>,
    stop: bool,
}

/// Hands ranges too wide to remove key by key (a history first trimmed after a restart
/// with a lower retention, say) to the trim thread, which removes the keys it finds.
struct Trimmer {
    queue: Mutex<TrimQueue>,
    wake: Condvar,
}

impl Trimmer {
    fn add(&self, kind: LogKind, log: String, from: u64, through: u64) {
        let mut queue = self.queue.lock();
        let range = queue.pending.entry((kind, log)).or_insert((from, through));
        *range = (range.0.min(from), range.1.max(through));
        drop(queue);
        self.wake.notify_one();
    }
}

/// Ranges up to this many sequence numbers are trimmed in the writer's own batch, one
/// removal per number; wider ones are left to the trim thread, which looks for the keys.
const INLINE_TRIM_SEQS: u64 = 4096;

/// The writer's way into the database: each batch is one fjall write batch, so one
/// journal write, whatever the number of records (two when it trims).
struct FjallSink {
    db: Database,
    meta: Keyspace,
    messages: Keyspace,
    trimmer: Arc<Trimmer>,
    /// The newest sequence number trimmed (or never stored) per history; seeded by
    /// `load` with what precedes each history's oldest stored key.
    trimmed: Arc<Mutex<HashMap<(LogKind, String), u64>>>,
    /// This batch's trims, coalesced per history.
    trims: HashMap<(LogKind, String), u64>,
}

impl FjallSink {
    /// Removes what this batch's trims cover. A separate batch from the records': an
    /// insert and a removal of one key in the same batch would share a sequence number,
    /// and the removal might not win.
    fn trim(&mut self) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        let mut trimmed = self.trimmed.lock();
        for ((kind, name), through) in self.trims.drain() {
            let done = trimmed.get(&(kind, name.clone())).copied().unwrap_or(0);
            if done >= through {
                continue;
            }
            // The next seq must survive even when every message is trimmed away.
            batch.insert(
                &self.meta,
                next_seq_key(kind, &name),
                (through + 1).to_be_bytes(),
            );
            if through - done <= INLINE_TRIM_SEQS {
                // Weak removals: each message key is written exactly once, and a weak
                // tombstone vanishes together with the value it meets in a flush or
                // compaction, where a plain one would stay behind.
                for seq in done + 1..=through {
                    batch.remove_weak(&self.messages, message_key(kind, &name, seq));
                }
                trimmed.insert((kind, name), through);
            } else {
                trimmed.insert((kind, name.clone()), through);
                self.trimmer.add(kind, name, done + 1, through);
            }
        }
        drop(trimmed);
        batch
            .commit()
            .map_err(|e| storage_error("trimming history", e))
    }
}

impl Sink for FjallSink {
    fn write(&mut self, ops: &mut Vec<Op>) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for op in ops.drain(..) {
            match op {
                Op::Put { space, key, value } => {
                    let keyspace = match space {
                        Space::Meta => &self.meta,
                        Space::Messages => &self.messages,
                    };
                    batch.insert(keyspace, key, value.as_ref());
                }
                Op::Trim { kind, log, through } => {
                    let slot = self.trims.entry((kind, log)).or_insert(through);
                    *slot = (*slot).max(through);
                }
            }
        }
        let written = batch
            .commit()
            .map_err(|e| storage_error("writing to the journal", e));
        if written.is_err() {
            self.trims.clear();
            return written;
        }
        if !self.trims.is_empty()
            && let Err(error) = self.trim()
        {
            // The publishes are stored; only the trim is lost, until the next start
            // (which trims from each history's oldest stored key) covers it again.
            error!(target: log::ERROR, %error, "trimming history failed");
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(|e| storage_error("fdatasync of the journal", e))
    }
}

/// The open database; taken out at close so that the directory is released even while
/// the server's handle lives on.
struct Open {
    db: Database,
    meta: Keyspace,
    messages: Keyspace,
}

/// The store. Open one per data directory (fjall locks it against other processes).
pub struct FjallStorage {
    dir: PathBuf,
    open: parking_lot::RwLock<Option<Open>>,
    writer: Writer,
    trimmer: Arc<Trimmer>,
    /// Shared with the writer, which trims from there on.
    trimmed: Arc<Mutex<HashMap<(LogKind, String), u64>>>,
    trim_thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FjallStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStorage")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Checks that `dir` is a usable directory, creating it if its parent exists.
fn prepare_dir(dir: &Path) -> Result<(), StorageError> {
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
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            storage_error(
                &format!("data directory {} is not writable", dir.display()),
                e,
            )
        })
}

impl FjallStorage {
    /// Opens (or creates) the store in `dir`, failing clearly if it cannot.
    pub fn open(dir: impl Into<PathBuf>, policy: SyncPolicy) -> Result<FjallStorage, StorageError> {
        let dir = dir.into();
        prepare_dir(&dir)?;
        let db = Database::builder(&dir)
            .worker_threads(2)
            .open()
            .map_err(|e| {
                storage_error(&format!("cannot open the store in {}", dir.display()), e)
            })?;
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
        let trimmer = Arc::new(Trimmer {
            queue: Mutex::new(TrimQueue::default()),
            wake: Condvar::new(),
        });
        let trimmed = Arc::new(Mutex::new(HashMap::new()));
        let trim_thread = {
            let trimmer = trimmer.clone();
            let (db, messages) = (db.clone(), messages.clone());
            std::thread::Builder::new()
                .name("switchboard-trim".into())
                .spawn(move || run_trimmer(&trimmer, &db, &messages))
                .map_err(|e| storage_error("cannot start the trim thread", e))?
        };
        let sink = FjallSink {
            db: db.clone(),
            meta: meta.clone(),
            messages: messages.clone(),
            trimmer: trimmer.clone(),
            trimmed: trimmed.clone(),
            trims: HashMap::new(),
        };
        let writer = match Writer::start(policy, QueueLimits::default(), sink) {
            Ok(writer) => writer,
            Err(error) => {
                stop_trimmer(&trimmer, Some(trim_thread));
                return Err(error);
            }
        };
        info!(target: log::GENERAL, dir = %dir.display(), ?policy, "store opened");
        Ok(FjallStorage {
            dir,
            open: parking_lot::RwLock::new(Some(Open { db, meta, messages })),
            writer,
            trimmer,
            trimmed,
            trim_thread: Mutex::new(Some(trim_thread)),
        })
    }

    /// Runs `work` on the open database, or fails if the store was closed.
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

impl Open {
    /// The history's next sequence number and messages; records in `trimmed` what
    /// precedes its oldest key (corrupt records included, so that trims remove them too).
    fn read_log(
        &self,
        kind: LogKind,
        name: &str,
        corrupt: &mut u64,
        trimmed: &mut HashMap<(LogKind, String), u64>,
    ) -> Result<(u64, Vec<Message>), StorageError> {
        let mut messages = Vec::new();
        let mut last_seq = 0;
        let mut oldest_key = None;
        for entry in self.messages.prefix(log_prefix(kind, name)) {
            let (key, value) = entry
                .into_inner()
                .map_err(|e| storage_error("reading messages", e))?;
            if oldest_key.is_none() {
                oldest_key = key_seq(&key);
            }
            match decode_record(&key, &value) {
                Some(Packet::Message(message)) => {
                    last_seq = last_seq.max(message.seq);
                    messages.push(message);
                }
                _ => *corrupt += 1,
            }
        }
        let saved_next = self
            .meta
            .get(next_seq_key(kind, name))
            .map_err(|e| storage_error("reading a sequence number", e))?
            .and_then(|value| <[u8; 8]>::try_from(value.as_ref()).ok())
            .map_or(1, u64::from_be_bytes);
        let next_seq = saved_next.max(last_seq + 1);
        let before_oldest = oldest_key.unwrap_or(next_seq).saturating_sub(1);
        trimmed.insert((kind, name.to_owned()), before_oldest);
        Ok((next_seq, messages))
    }
}

fn run_trimmer(trimmer: &Trimmer, db: &Database, messages: &Keyspace) {
    loop {
        let pending = {
            let mut queue = trimmer.queue.lock();
            while queue.pending.is_empty() && !queue.stop {
                trimmer.wake.wait(&mut queue);
            }
            if queue.pending.is_empty() && queue.stop {
                return;
            }
            std::mem::take(&mut queue.pending)
        };
        // Every trim of this round in one write batch: one journal write.
        let mut batch = db.batch().durability(Some(PersistMode::Buffer));
        for ((kind, name), (from, through)) in pending {
            match trim_keys(messages, kind, &name, from, through) {
                Ok(keys) => {
                    for key in keys {
                        batch.remove_weak(messages, key);
                    }
                }
                Err(error) => {
                    error!(target: log::ERROR, log = %name, %error, "trimming history failed");
                }
            }
        }
        if let Err(error) = batch.commit() {
            error!(target: log::ERROR, %error, "trimming history failed");
        }
    }
}

/// The keys of a history's messages from `from` through `through`.
fn trim_keys(
    messages: &Keyspace,
    kind: LogKind,
    name: &str,
    from: u64,
    through: u64,
) -> Result<Vec<fjall::UserKey>, StorageError> {
    let start = message_key(kind, name, from);
    let end = message_key(kind, name, through);
    messages
        .range(start..=end)
        .map(|entry| {
            entry
                .key()
                .map_err(|e| storage_error("listing trimmed keys", e))
        })
        .collect()
}

fn stop_trimmer(trimmer: &Trimmer, thread: Option<JoinHandle<()>>) {
    trimmer.queue.lock().stop = true;
    trimmer.wake.notify_one();
    if let Some(thread) = thread {
        let _ = thread.join();
    }
}

impl Storage for FjallStorage {
    fn is_durable(&self) -> bool {
        true
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        let mut trimmed = HashMap::new();
        let snapshot = self.with_open(|open| open.load(&mut trimmed))?;
        self.trimmed.lock().extend(trimmed);
        Ok(snapshot)
    }

    fn put_channel(&self, name: &str, options: &ChannelOptions) -> Result<(), StorageError> {
        let record = encode_record(&CreateChannel {
            name: name.into(),
            options: *options,
        })?;
        self.writer.push(Op::Put {
            space: Space::Meta,
            key: format!("c/{name}").into_bytes(),
            value: record,
        })
    }

    fn append(
        &self,
        kind: LogKind,
        log: &str,
        message: &StoredMessage,
    ) -> Result<(), StorageError> {
        self.writer.push(Op::Put {
            space: Space::Messages,
            key: message_key(kind, log, message.seq()),
            value: message.record_bytes(),
        })
    }

    fn trim(&self, kind: LogKind, log: &str, through_seq: u64) {
        // Refused only once the store failed or closed; nothing is trimmed then anyway.
        let _ = self.writer.push(Op::Trim {
            kind,
            log: log.to_owned(),
            through: through_seq,
        });
    }

    fn put_group(&self, name: &str, description: &str) -> Result<(), StorageError> {
        let record = encode_record(&CreateGroup {
            name: name.into(),
            description: description.into(),
        })?;
        self.writer.push(Op::Put {
            space: Space::Meta,
            key: format!("g/{name}").into_bytes(),
            value: record,
        })
    }

    fn put_members(&self, group: &str, members: &[String]) -> Result<(), StorageError> {
        let record = encode_record(&MemberList {
            group: group.into(),
            members: members
                .iter()
                .map(|name| MemberInfo {
                    name: name.as_str().into(),
                    online: false,
                })
                .collect(),
        })?;
        self.writer.push(Op::Put {
            space: Space::Meta,
            key: format!("m/{group}").into_bytes(),
            value: record,
        })
    }

    fn sync(&self) -> SyncFuture {
        self.writer.sync()
    }

    fn syncs(&self) -> u64 {
        self.writer.syncs()
    }

    fn close(&self, next_seqs: &[(LogKind, String, u64)]) {
        // The writer first: it writes what is queued and hands its last trims over.
        self.writer.stop();
        stop_trimmer(&self.trimmer, self.trim_thread.lock().take());
        let Some(open) = self.open.write().take() else {
            return;
        };
        for (kind, name, next_seq) in next_seqs {
            if let Err(error) = open
                .meta
                .insert(next_seq_key(*kind, name), next_seq.to_be_bytes())
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
        stop_trimmer(&self.trimmer, self.trim_thread.lock().take());
    }
}

impl Open {
    fn load(
        &self,
        trimmed: &mut HashMap<(LogKind, String), u64>,
    ) -> Result<Snapshot, StorageError> {
        let mut snapshot = Snapshot::default();
        let mut corrupt = 0;
        let mut groups: Vec<(String, String)> = Vec::new();
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for entry in self.meta.iter() {
            let (key, value) = entry
                .into_inner()
                .map_err(|e| storage_error("reading meta", e))?;
            if key.starts_with(b"n/") {
                continue;
            }
            match decode_record(&key, &value) {
                Some(Packet::CreateChannel(channel)) => {
                    let (next_seq, messages) =
                        self.read_log(LogKind::Channel, &channel.name, &mut corrupt, trimmed)?;
                    snapshot.channels.push(LogSnapshot {
                        name: channel.name.to_string(),
                        options: channel.options,
                        next_seq,
                        messages,
                    });
                }
                Some(Packet::CreateGroup(group)) => {
                    groups.push((group.name.to_string(), group.description.to_string()));
                }
                Some(Packet::MemberList(list)) => {
                    members.insert(
                        list.group.to_string(),
                        list.members.iter().map(|m| m.name.to_string()).collect(),
                    );
                }
                _ => corrupt += 1,
            }
        }
        for (name, description) in groups {
            let (next_seq, messages) =
                self.read_log(LogKind::Group, &name, &mut corrupt, trimmed)?;
            snapshot.groups.push(GroupSnapshot {
                members: members.remove(&name).unwrap_or_default(),
                history: LogSnapshot {
                    name: name.clone(),
                    options: ChannelOptions::default(),
                    next_seq,
                    messages,
                },
                name,
                description,
            });
        }
        if corrupt > 0 {
            warn!(target: log::ERROR, corrupt, "corrupt records were skipped while loading");
        }
        snapshot.corrupt_records = corrupt;
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::packet::Scope;

    use super::*;

    fn message(channel: &str, seq: u64) -> StoredMessage {
        let message = Message {
            scope: Scope::Channel,
            channel: channel.into(),
            seq,
            body: Bytes::from(format!("{channel} #{seq}")),
            ..Message::default()
        };
        StoredMessage::encode(&record_codec(), &message, Vec::new()).unwrap()
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

    #[test]
    fn close_writes_everything_queued_across_channels_and_trims() {
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
        }
        // A trim wider than the writer removes key by key goes to the trim thread.
        store.trim(LogKind::Channel, "b", 5900);
        // No sync awaited: close alone must write and sync all of it.
        store.close(&[]);
        drop(store);

        let store = open(dir.path());
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.corrupt_records, 0);
        assert_eq!(
            channels(&snapshot),
            [
                ("a".to_owned(), 3001, (2901..=3000).collect()),
                ("b".to_owned(), 6001, (5901..=6000).collect()),
            ]
        );
        // The first trim after a restart starts at the oldest stored key, so it is
        // removed key by key in the writer's own batch and leaves nothing behind.
        store.trim(LogKind::Channel, "a", 2950);
        store.close(&[]);
        drop(store);
        let store = open(dir.path());
        let snapshot = store.load().unwrap();
        assert_eq!(channels(&snapshot)[0].2, (2951..=3000).collect::<Vec<_>>());
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
        let snapshot = store
            .with_open(|open| open.load(&mut HashMap::new()))
            .unwrap();
        assert_eq!(
            channels(&snapshot),
            [("a".to_owned(), 2, vec![1]), ("b".to_owned(), 2, vec![1])]
        );
        store.close(&[]);
    }
}
