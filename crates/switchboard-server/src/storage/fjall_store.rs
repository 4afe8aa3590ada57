//! [`FjallStorage`]: history and directories in an embedded LSM store (fjall), written
//! by the storage writer (one write batch per batch of records), with a journal synced
//! by policy and key-value separation for large records.
//!
//! Key layout (all integers big-endian, so keys sort in sequence order):
//!
//! ```text
//! keyspace "meta"
//!   c/<channel>         CREATE_CHANNEL frame: the channel's options
//!   g/<group>           CREATE_GROUP frame: name and description
//!   m/<group>           MEMBER_LIST frame: the members
//!   n/<kind><name>      u64: next sequence number, written at shutdown (and by earlier
//!                       versions at trims)
//!   t/<kind><name>      u64: the newest sequence number trimmed away
//! keyspace "messages"
//!   <kind><name> 0x00 <seq:u64>   a chunk: the MESSAGE frames (no HMAC tag) one batch
//!                                 appended to the history, from <seq> on, back to back
//! ```
//!
//! `<kind>` is `c` for channels and `g` for groups. Names never contain 0x00 (control
//! characters are refused), so a log's keys are exactly those under its prefix. Every
//! message is a protocol frame, so its CRC32C checks catch corruption on load. A chunk
//! of one message is exactly the per-message record of earlier versions, so their stores
//! load unchanged.
//!
//! One chunk per history per batch, instead of one record per message, makes the
//! database's work (memtable entries, journal entries, tombstones at trims) scale with
//! batches rather than messages. A trim removes the chunks it covers entirely; a chunk it
//! covers in part stays until a later trim covers the rest, and loading drops its
//! messages up to `t/`.

use std::collections::{HashMap, VecDeque};
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

fn chunk_key(prefix: &[u8], first: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&first.to_be_bytes());
    key
}

/// `t/<kind><name>` from a history's key prefix (`<kind><name> 0x00`).
fn trim_key(prefix: &[u8]) -> Vec<u8> {
    let mut key = b"t/".to_vec();
    key.extend_from_slice(prefix.strip_suffix(&[0]).unwrap_or(prefix));
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

/// Decodes a chunk's messages into `messages`, checking their CRCs. A corrupt frame ends
/// the chunk (what follows cannot be delimited): reported, and 1 returned, else 0.
fn decode_chunk(key: &[u8], value: &[u8], messages: &mut Vec<Message>) -> u64 {
    let mut codec = record_codec();
    let mut buf = BytesMut::from(value);
    while !buf.is_empty() {
        let have = buf.len();
        let decoded = codec
            .decode(&mut buf)
            .and_then(|frame| {
                frame.ok_or(switchboard_proto::ProtoError::Truncated {
                    needed: have + 1,
                    have,
                })
            })
            .and_then(|frame| Packet::from_frame(&frame));
        match decoded {
            Ok(Packet::Message(message)) => messages.push(message),
            Ok(_) => {
                error!(target: log::ERROR, key = %String::from_utf8_lossy(key), "corrupt record skipped: not a message");
                return 1;
            }
            Err(e) => {
                error!(target: log::ERROR, key = %String::from_utf8_lossy(key), error = %e, "corrupt record skipped");
                return 1;
            }
        }
    }
    0
}

/// Chunk keys for the trim thread to remove.
#[derive(Default)]
struct TrimQueue {
    keys: Vec<Vec<u8>>,
    stop: bool,
}

/// Takes the removals of a trim too large for the writer's own batch (a history trimmed
/// after a restart with a much lower retention, say) off the writer.
struct Trimmer {
    queue: Mutex<TrimQueue>,
    wake: Condvar,
}

impl Trimmer {
    fn add(&self, keys: Vec<Vec<u8>>) {
        self.queue.lock().keys.extend(keys);
        self.wake.notify_one();
    }
}

/// Trims removing up to this many chunks are done in the writer's own batch; the rest
/// go to the trim thread.
const INLINE_TRIM_CHUNKS: usize = if cfg!(test) { 8 } else { 64 * 1024 };

/// Each history's chunks on disk, oldest first, by key prefix: the chunk's key seq and
/// the newest seq in it.
type ChunkIndex = HashMap<Vec<u8>, VecDeque<(u64, u64)>>;

/// The messages one batch appends to one history.
struct Chunk {
    prefix: Vec<u8>,
    first: u64,
    last: u64,
    frames: BytesMut,
}

/// The writer's way into the database: each batch is one fjall write batch (two when
/// it trims), with one record per history it appends to.
struct FjallSink {
    db: Database,
    meta: Keyspace,
    messages: Keyspace,
    trimmer: Arc<Trimmer>,
    /// Seeded by `load`, kept up to date here.
    chunks: Arc<Mutex<ChunkIndex>>,
    /// This batch's chunks; few histories per batch, so a list.
    building: Vec<Chunk>,
    /// This batch's trims, coalesced per history prefix.
    trims: HashMap<Vec<u8>, u64>,
}

impl FjallSink {
    fn add_message(&mut self, key: &[u8], frame: &[u8]) {
        let Some(seq) = key_seq(key) else {
            return;
        };
        let prefix = &key[..key.len() - 8];
        match self.building.iter_mut().find(|c| c.prefix == prefix) {
            Some(chunk) => {
                chunk.last = seq;
                chunk.frames.extend_from_slice(frame);
            }
            None => self.building.push(Chunk {
                prefix: prefix.to_vec(),
                first: seq,
                last: seq,
                frames: BytesMut::from(frame),
            }),
        }
    }

    /// Removes the chunks this batch's trims cover entirely. A separate batch from the
    /// records': an insert and a removal of one key in one batch would share a sequence
    /// number, and the removal might not win.
    fn trim(&mut self) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        let mut far = Vec::new();
        let mut removed = 0;
        let mut index = self.chunks.lock();
        for (prefix, through) in self.trims.drain() {
            // Where loading cuts a chunk trimmed in part; also keeps the next seq when
            // every message is trimmed away.
            batch.insert(&self.meta, trim_key(&prefix), through.to_be_bytes());
            let Some(chunks) = index.get_mut(&prefix) else {
                continue;
            };
            while let Some(&(first, last)) = chunks.front()
                && last <= through
            {
                chunks.pop_front();
                let key = chunk_key(&prefix, first);
                if removed < INLINE_TRIM_CHUNKS {
                    // Weak removals: each chunk key is written exactly once, and a weak
                    // tombstone vanishes together with the value it meets in a flush or
                    // compaction, where a plain one would stay behind.
                    batch.remove_weak(&self.messages, key);
                } else {
                    far.push(key);
                }
                removed += 1;
            }
        }
        drop(index);
        if !far.is_empty() {
            self.trimmer.add(far);
        }
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
                Op::Put {
                    space: Space::Meta,
                    key,
                    value,
                } => batch.insert(&self.meta, key, value.as_ref()),
                Op::Put {
                    space: Space::Messages,
                    key,
                    value,
                } => self.add_message(&key, &value),
                Op::Trim { kind, log, through } => {
                    let slot = self.trims.entry(log_prefix(kind, &log)).or_insert(through);
                    *slot = (*slot).max(through);
                }
            }
        }
        let mut written = Vec::with_capacity(self.building.len());
        for chunk in self.building.drain(..) {
            batch.insert(
                &self.messages,
                chunk_key(&chunk.prefix, chunk.first),
                chunk.frames.as_ref(),
            );
            written.push((chunk.prefix, chunk.first, chunk.last));
        }
        if let Err(e) = batch.commit() {
            self.trims.clear();
            return Err(storage_error("writing to the journal", e));
        }
        let mut index = self.chunks.lock();
        for (prefix, first, last) in written {
            index.entry(prefix).or_default().push_back((first, last));
        }
        drop(index);
        if !self.trims.is_empty()
            && let Err(error) = self.trim()
        {
            // The publishes are stored; only the trim is lost. Loading drops the
            // messages past the retention again, and keeps the rest.
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
    /// Filled by `load`, for the writer's trims.
    chunks: Arc<Mutex<ChunkIndex>>,
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
        let chunks = Arc::new(Mutex::new(ChunkIndex::new()));
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
            chunks: chunks.clone(),
            building: Vec::new(),
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
            chunks,
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
    /// The history's next sequence number and messages, and its chunks into `chunks`.
    fn read_log(
        &self,
        kind: LogKind,
        name: &str,
        corrupt: &mut u64,
        chunks: &mut ChunkIndex,
    ) -> Result<(u64, Vec<Message>), StorageError> {
        let prefix = log_prefix(kind, name);
        let mut messages = Vec::new();
        // Each chunk's key seq, newest seq, and whether its end was lost to corruption.
        let mut found: Vec<(u64, u64, bool)> = Vec::new();
        for entry in self.messages.prefix(&prefix) {
            let (key, value) = entry
                .into_inner()
                .map_err(|e| storage_error("reading messages", e))?;
            let before = messages.len();
            let damaged = decode_chunk(&key, &value, &mut messages);
            *corrupt += damaged;
            if let Some(first) = key_seq(&key) {
                let newest = messages[before..].iter().map(|m| m.seq).max();
                found.push((first, newest.unwrap_or(first).max(first), damaged > 0));
            }
        }
        let read_u64 = |key: Vec<u8>| -> Result<Option<u64>, StorageError> {
            Ok(self
                .meta
                .get(key)
                .map_err(|e| storage_error("reading a sequence number", e))?
                .and_then(|value| <[u8; 8]>::try_from(value.as_ref()).ok())
                .map(u64::from_be_bytes))
        };
        let saved_next = read_u64(next_seq_key(kind, name))?.unwrap_or(1);
        let trimmed = read_u64(trim_key(&prefix))?.unwrap_or(0);
        let last_seq = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        let next_seq = saved_next.max(last_seq + 1).max(trimmed + 1);
        messages.retain(|m| m.seq > trimmed);
        // A damaged chunk may have held messages up to where the next one begins.
        let mut index = VecDeque::with_capacity(found.len());
        for i in 0..found.len() {
            let (first, mut newest, damaged) = found[i];
            if damaged {
                newest = found.get(i + 1).map_or(next_seq, |next| next.0) - 1;
            }
            index.push_back((first, newest.max(first)));
        }
        chunks.insert(prefix, index);
        Ok((next_seq, messages))
    }
}

fn run_trimmer(trimmer: &Trimmer, db: &Database, messages: &Keyspace) {
    loop {
        let keys = {
            let mut queue = trimmer.queue.lock();
            while queue.keys.is_empty() && !queue.stop {
                trimmer.wake.wait(&mut queue);
            }
            if queue.keys.is_empty() && queue.stop {
                return;
            }
            std::mem::take(&mut queue.keys)
        };
        let mut batch = db.batch().durability(Some(PersistMode::Buffer));
        for key in keys {
            batch.remove_weak(messages, key);
        }
        if let Err(error) = batch.commit() {
            error!(target: log::ERROR, %error, "trimming history failed");
        }
    }
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
        let mut chunks = ChunkIndex::new();
        let snapshot = self.with_open(|open| open.load(&mut chunks))?;
        self.chunks.lock().extend(chunks);
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
    fn load(&self, chunks: &mut ChunkIndex) -> Result<Snapshot, StorageError> {
        let mut snapshot = Snapshot::default();
        let mut corrupt = 0;
        let mut groups: Vec<(String, String)> = Vec::new();
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for entry in self.meta.iter() {
            let (key, value) = entry
                .into_inner()
                .map_err(|e| storage_error("reading meta", e))?;
            if key.starts_with(b"n/") || key.starts_with(b"t/") {
                continue;
            }
            match decode_record(&key, &value) {
                Some(Packet::CreateChannel(channel)) => {
                    let (next_seq, messages) =
                        self.read_log(LogKind::Channel, &channel.name, &mut corrupt, chunks)?;
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
                self.read_log(LogKind::Group, &name, &mut corrupt, chunks)?;
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
        StoredMessage::encode(&record_codec(), &message.as_envelope(), Vec::new()).unwrap()
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
                for entry in open.messages.prefix(log_prefix(LogKind::Channel, log)) {
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
