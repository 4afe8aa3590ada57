//! The storage writer's way into the database: each batch of queued records becomes one
//! fjall write batch (one journal write), with one chunk per history it appends to and
//! the removals of its trims.
//!
//! One chunk per history per batch, instead of one record per message, makes the
//! database's work (memtable entries, journal entries, tombstones at trims) scale with
//! batches rather than messages. A trim removes the chunks it covers entirely; a chunk it
//! covers in part stays until a later trim covers the rest, and loading drops its
//! messages up to the trim's mark.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use fjall::{PersistMode, Slice};
use parking_lot::Mutex;

use super::trim::Trimmer;
use super::{ChunkIndex, Engine, Open, keys, open_database, storage_error};
use crate::storage::writer::{Op, Sink};
use crate::storage::{LogKind, StorageError};

/// Trims removing up to this many chunks are done in the writer's own batch; the rest
/// go to the trim thread.
const INLINE_TRIM_CHUNKS: usize = if cfg!(test) { 8 } else { 64 * 1024 };

/// The messages one batch appends to one history.
struct Chunk {
    kind: LogKind,
    log: Arc<str>,
    first: u64,
    last: u64,
    /// The frames, shared with the queued records: copied once, straight into the
    /// database's value when the batch is committed (no growing buffer copied again as
    /// it fills, no second copy into the database).
    frames: Vec<Bytes>,
    len: usize,
}

impl Chunk {
    /// The database's value: the frames back to back.
    fn value(&self) -> Result<Slice, StorageError> {
        let mut frames = Frames {
            rest: self.frames.iter(),
            current: &[],
        };
        Slice::from_reader(&mut frames, self.len).map_err(|e| storage_error("building a chunk", e))
    }
}

/// Reads frames back to back, to fill a value of known length in one pass.
struct Frames<'a> {
    rest: std::slice::Iter<'a, Bytes>,
    current: &'a [u8],
}

impl Read for Frames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rest.next() {
                Some(frame) => self.current = frame,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = &self.current[n..];
        Ok(n)
    }
}

/// Writes the storage writer's batches.
pub(super) struct FjallSink {
    dir: PathBuf,
    /// The database, shared with the store and the trim thread; reopened after a failure.
    engine: Engine,
    trimmer: Arc<Trimmer>,
    /// Filled by `load`, kept up to date here.
    chunks: Arc<Mutex<ChunkIndex>>,
    /// This batch's chunks; few histories per batch, so a list.
    building: Vec<Chunk>,
    /// This batch's trims, coalesced per history (few per batch, so a list: no name
    /// copied nor hashed per trim).
    trims: Vec<(LogKind, Arc<str>, u64)>,
    /// A reopen closed the engine and could not open it again.
    closed_by_reopen: bool,
}

impl FjallSink {
    pub fn new(
        dir: PathBuf,
        engine: Engine,
        trimmer: Arc<Trimmer>,
        chunks: Arc<Mutex<ChunkIndex>>,
    ) -> FjallSink {
        FjallSink {
            dir,
            engine,
            trimmer,
            chunks,
            building: Vec::new(),
            trims: Vec::new(),
            closed_by_reopen: false,
        }
    }

    /// Adds a message to its history's chunk of this batch.
    fn add_message(&mut self, kind: LogKind, log: &Arc<str>, seq: u64, frame: &Bytes) {
        match self
            .building
            .iter_mut()
            .find(|chunk| chunk.kind == kind && chunk.log == *log)
        {
            Some(chunk) => {
                chunk.last = seq;
                chunk.len += frame.len();
                chunk.frames.push(frame.clone());
            }
            None => self.building.push(Chunk {
                kind,
                log: log.clone(),
                first: seq,
                last: seq,
                frames: vec![frame.clone()],
                len: frame.len(),
            }),
        }
    }

    /// Writes the directory records, the chunks built so far and, with `with_trims`, this
    /// batch's trims as one fjall batch: one journal write however much the batch holds.
    ///
    /// A trim removes the chunks it covers entirely among those already on disk; a chunk
    /// this batch writes is left for a later trim, since one batch must not both write
    /// and remove a key (the two would share a sequence number, and either might win).
    fn commit(
        &mut self,
        open: &Open,
        directory: &mut HashMap<Vec<u8>, Option<Bytes>>,
        with_trims: bool,
    ) -> Result<(), StorageError> {
        let with_trims = with_trims && !self.trims.is_empty();
        if directory.is_empty() && self.building.is_empty() && !with_trims {
            return Ok(());
        }
        let mut batch = open.db.batch().durability(Some(PersistMode::Buffer));
        for (key, value) in directory.drain() {
            match value {
                Some(value) => batch.insert(&open.meta, key, value.as_ref()),
                None => batch.remove(&open.meta, key),
            }
        }
        let mut written = Vec::with_capacity(self.building.len());
        for chunk in self.building.drain(..) {
            let prefix = keys::log_prefix(chunk.kind, &chunk.log);
            batch.insert(
                &open.messages,
                keys::chunk_key(&prefix, chunk.first),
                chunk.value()?,
            );
            written.push((prefix, chunk.first, chunk.last));
        }
        // Chunks a trim removes, by history: taken off the index once the batch is in.
        let mut trimmed: Vec<(Vec<u8>, usize)> = Vec::new();
        let mut far = Vec::new();
        if with_trims {
            let mut removed = 0;
            let index = self.chunks.lock();
            for (kind, log, through) in self.trims.drain(..) {
                // Where loading cuts a chunk trimmed in part; also keeps the next seq
                // when every message is trimmed away.
                batch.insert(
                    &open.meta,
                    keys::trim_key(kind, &log),
                    through.to_be_bytes(),
                );
                let prefix = keys::log_prefix(kind, &log);
                let Some(chunks) = index.get(&prefix) else {
                    continue;
                };
                let mut covered = 0;
                for &(first, last) in chunks {
                    let rewritten = || {
                        written
                            .iter()
                            .any(|(known, seq, _)| *known == prefix && *seq == first)
                    };
                    if last > through || rewritten() {
                        break;
                    }
                    let key = keys::chunk_key(&prefix, first);
                    if removed < INLINE_TRIM_CHUNKS {
                        // Weak removals: each chunk key is written exactly once, and a
                        // weak tombstone vanishes together with the value it meets in a
                        // flush or compaction, where a plain one would stay behind.
                        batch.remove_weak(&open.messages, key);
                    } else {
                        far.push(key);
                    }
                    removed += 1;
                    covered += 1;
                }
                if covered > 0 {
                    trimmed.push((prefix, covered));
                }
            }
        }
        if let Err(e) = batch.commit() {
            self.trims.clear();
            return Err(storage_error("writing to the journal", e));
        }
        let mut index = self.chunks.lock();
        for (prefix, covered) in trimmed {
            if let Some(chunks) = index.get_mut(&prefix) {
                chunks.drain(..covered.min(chunks.len()));
            }
        }
        for (prefix, first, last) in written {
            // In order of first seq, once each: a batch written again after a failure
            // must not list its chunk twice.
            let chunks = index.entry(prefix).or_default();
            let at = chunks.partition_point(|&(known, _)| known < first);
            match chunks.get_mut(at) {
                Some(known) if known.0 == first => known.1 = known.1.max(last),
                _ => chunks.insert(at, (first, last)),
            }
        }
        drop(index);
        if !far.is_empty() {
            self.trimmer.add(far);
        }
        Ok(())
    }

    /// Removes everything stored for a history and its channel or group: every chunk,
    /// the directory records, its members (groups) and its counters. Plain tombstones,
    /// not weak ones: a name created again writes some of the same keys again. Safe to
    /// repeat (a batch written again after a failure): removing what is gone is a no-op.
    fn delete_log(&mut self, open: &Open, kind: LogKind, log: &str) -> Result<(), StorageError> {
        self.trims
            .retain(|(known, name, _)| (*known, &**name) != (kind, log));
        let prefix = keys::log_prefix(kind, log);
        let chunks = self.chunks.lock().remove(&prefix).unwrap_or_default();
        let mut batch = open.db.batch().durability(Some(PersistMode::Buffer));
        for (first, _) in chunks {
            batch.remove(&open.messages, keys::chunk_key(&prefix, first));
        }
        match kind {
            LogKind::Channel => batch.remove(&open.meta, keys::channel_key(log)),
            LogKind::Group => {
                batch.remove(&open.meta, keys::group_key(log));
                batch.remove(&open.meta, keys::members_key(log));
                for key in open.meta.prefix(keys::members_prefix(log)) {
                    let key = key.key().map_err(|e| storage_error("reading members", e))?;
                    batch.remove(&open.meta, key);
                }
            }
        }
        batch.remove(&open.meta, keys::next_seq_key(kind, log));
        batch.remove(&open.meta, keys::trim_key(kind, log));
        batch
            .commit()
            .map_err(|e| storage_error("deleting a history", e))
    }
}

impl Sink for FjallSink {
    fn write(&mut self, ops: &[Op]) -> Result<(), StorageError> {
        let engine = self.engine.clone();
        let open = engine.read();
        let Some(open) = open.as_ref() else {
            return Err(StorageError("the store is closed".into()));
        };
        self.building.clear();
        self.trims.clear();
        // The last put or removal of each directory key in this batch: one batch must not
        // hold two writes of one key (they would share a sequence number, and either
        // might win), and a member who joins and leaves within a batch leaves nothing.
        let mut directory: HashMap<Vec<u8>, Option<Bytes>> = HashMap::new();
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    directory.insert(key.clone(), Some(value.clone()));
                }
                Op::Remove { key } => {
                    directory.insert(key.clone(), None);
                }
                Op::Append {
                    kind,
                    log,
                    seq,
                    frame,
                } => self.add_message(*kind, log, *seq, frame),
                Op::Trim { kind, log, through } => {
                    match self
                        .trims
                        .iter_mut()
                        .find(|(known, name, _)| known == kind && name == log)
                    {
                        Some((_, _, slot)) => *slot = (*slot).max(*through),
                        None => self.trims.push((*kind, log.clone(), *through)),
                    }
                }
                Op::DeleteLog { kind, log } => {
                    // What came before is written first, the deletion in a batch of its
                    // own, and what follows (the name created again) after it.
                    self.commit(open, &mut directory, false)?;
                    self.delete_log(open, *kind, log)?;
                }
            }
        }
        self.commit(open, &mut directory, true)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let open = self.engine.read();
        let Some(open) = open.as_ref() else {
            return Err(StorageError("the store is closed".into()));
        };
        open.db
            .persist(PersistMode::SyncData)
            .map_err(|e| storage_error("fdatasync of the journal", e))
    }

    fn reopen(&mut self) -> Result<(), StorageError> {
        let mut slot = self.engine.write();
        if slot.is_none() && !self.closed_by_reopen {
            return Err(StorageError("the store is closed".into()));
        }
        // The old handles go first: the database's lock and threads are released only
        // when the last one is dropped.
        *slot = None;
        self.closed_by_reopen = true;
        // On failure the engine stays closed (reads fail, the store stays failed) and
        // the next attempt opens it again.
        *slot = Some(open_database(&self.dir)?);
        self.closed_by_reopen = false;
        Ok(())
    }
}
