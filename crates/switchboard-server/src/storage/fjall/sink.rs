//! The storage writer's way into the database: each batch of queued records becomes one
//! fjall write batch (two when it trims), with one chunk per history it appends to.
//!
//! One chunk per history per batch, instead of one record per message, makes the
//! database's work (memtable entries, journal entries, tombstones at trims) scale with
//! batches rather than messages. A trim removes the chunks it covers entirely; a chunk it
//! covers in part stays until a later trim covers the rest, and loading drops its
//! messages up to the trim's mark.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjall::{Database, Keyspace, PersistMode};
use parking_lot::Mutex;
use tracing::error;

use super::trim::Trimmer;
use super::{ChunkIndex, keys, storage_error};
use crate::log;
use crate::storage::writer::{Op, Sink};
use crate::storage::{LogKind, StorageError};

/// Trims removing up to this many chunks are done in the writer's own batch; the rest
/// go to the trim thread.
const INLINE_TRIM_CHUNKS: usize = if cfg!(test) { 8 } else { 64 * 1024 };

/// The messages one batch appends to one history.
struct Chunk {
    kind: LogKind,
    log: String,
    first: u64,
    last: u64,
    frames: BytesMut,
}

/// Writes the storage writer's batches.
pub(super) struct FjallSink {
    db: Database,
    meta: Keyspace,
    messages: Keyspace,
    trimmer: Arc<Trimmer>,
    /// Filled by `load`, kept up to date here.
    chunks: Arc<Mutex<ChunkIndex>>,
    /// This batch's chunks; few histories per batch, so a list.
    building: Vec<Chunk>,
    /// This batch's trims, coalesced per history.
    trims: HashMap<(LogKind, String), u64>,
}

impl FjallSink {
    pub fn new(
        db: Database,
        meta: Keyspace,
        messages: Keyspace,
        trimmer: Arc<Trimmer>,
        chunks: Arc<Mutex<ChunkIndex>>,
    ) -> FjallSink {
        FjallSink {
            db,
            meta,
            messages,
            trimmer,
            chunks,
            building: Vec::new(),
            trims: HashMap::new(),
        }
    }

    /// Adds a message to its history's chunk of this batch.
    fn add_message(&mut self, kind: LogKind, log: String, seq: u64, frame: &Bytes) {
        match self
            .building
            .iter_mut()
            .find(|chunk| chunk.kind == kind && chunk.log == log)
        {
            Some(chunk) => {
                chunk.last = seq;
                chunk.frames.extend_from_slice(frame);
            }
            None => self.building.push(Chunk {
                kind,
                log,
                first: seq,
                last: seq,
                frames: BytesMut::from(frame.as_ref()),
            }),
        }
    }

    /// Writes the directory records and the chunks built so far as one batch.
    fn commit_records(
        &mut self,
        directory: &mut HashMap<Vec<u8>, Option<Bytes>>,
    ) -> Result<(), StorageError> {
        if directory.is_empty() && self.building.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for (key, value) in directory.drain() {
            match value {
                Some(value) => batch.insert(&self.meta, key, value.as_ref()),
                None => batch.remove(&self.meta, key),
            }
        }
        let mut written = Vec::with_capacity(self.building.len());
        for chunk in self.building.drain(..) {
            let prefix = keys::log_prefix(chunk.kind, &chunk.log);
            batch.insert(
                &self.messages,
                keys::chunk_key(&prefix, chunk.first),
                chunk.frames.as_ref(),
            );
            written.push((prefix, chunk.first, chunk.last));
        }
        if let Err(e) = batch.commit() {
            self.trims.clear();
            return Err(storage_error("writing to the journal", e));
        }
        let mut index = self.chunks.lock();
        for (prefix, first, last) in written {
            index.entry(prefix).or_default().push_back((first, last));
        }
        Ok(())
    }

    /// Removes everything stored for a history and its channel or group: every chunk,
    /// the directory records, its members (groups) and its counters. Plain tombstones,
    /// not weak ones: a name created again writes some of the same keys again.
    fn delete_log(&mut self, kind: LogKind, log: &str) -> Result<(), StorageError> {
        self.trims.remove(&(kind, log.to_owned()));
        let prefix = keys::log_prefix(kind, log);
        let chunks = self.chunks.lock().remove(&prefix).unwrap_or_default();
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for (first, _) in chunks {
            batch.remove(&self.messages, keys::chunk_key(&prefix, first));
        }
        match kind {
            LogKind::Channel => batch.remove(&self.meta, keys::channel_key(log)),
            LogKind::Group => {
                batch.remove(&self.meta, keys::group_key(log));
                batch.remove(&self.meta, keys::members_key(log));
                for key in self.meta.prefix(keys::members_prefix(log)) {
                    let key = key.key().map_err(|e| storage_error("reading members", e))?;
                    batch.remove(&self.meta, key);
                }
            }
        }
        batch.remove(&self.meta, keys::next_seq_key(kind, log));
        batch.remove(&self.meta, keys::trim_key(kind, log));
        batch
            .commit()
            .map_err(|e| storage_error("deleting a history", e))
    }

    /// Removes the chunks this batch's trims cover entirely. A separate batch from the
    /// records': an insert and a removal of one key in one batch would share a sequence
    /// number, and the removal might not win.
    fn trim(&mut self) -> Result<(), StorageError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        let mut far = Vec::new();
        let mut removed = 0;
        let mut index = self.chunks.lock();
        for ((kind, log), through) in self.trims.drain() {
            // Where loading cuts a chunk trimmed in part; also keeps the next seq when
            // every message is trimmed away.
            batch.insert(
                &self.meta,
                keys::trim_key(kind, &log),
                through.to_be_bytes(),
            );
            let prefix = keys::log_prefix(kind, &log);
            let Some(chunks) = index.get_mut(&prefix) else {
                continue;
            };
            while let Some(&(first, last)) = chunks.front()
                && last <= through
            {
                chunks.pop_front();
                let key = keys::chunk_key(&prefix, first);
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
        // The last put or removal of each directory key in this batch: one batch must not
        // hold two writes of one key (they would share a sequence number, and either
        // might win), and a member who joins and leaves within a batch leaves nothing.
        let mut directory: HashMap<Vec<u8>, Option<Bytes>> = HashMap::new();
        for op in ops.drain(..) {
            match op {
                Op::Put { key, value } => {
                    directory.insert(key, Some(value));
                }
                Op::Remove { key } => {
                    directory.insert(key, None);
                }
                Op::Append {
                    kind,
                    log,
                    seq,
                    frame,
                } => self.add_message(kind, log, seq, &frame),
                Op::Trim { kind, log, through } => {
                    let slot = self.trims.entry((kind, log)).or_insert(through);
                    *slot = (*slot).max(through);
                }
                Op::DeleteLog { kind, log } => {
                    // What came before is written first, the deletion in a batch of its
                    // own, and what follows (the name created again) after it.
                    self.commit_records(&mut directory)?;
                    self.delete_log(kind, &log)?;
                }
            }
        }
        self.commit_records(&mut directory)?;
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
