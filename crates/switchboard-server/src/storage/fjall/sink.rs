//! The storage writer's way into the database: each batch of queued records becomes one
//! fjall write batch (one journal write), with one chunk per history it appends to and
//! the removals of its trims.
//!
//! One chunk per history per batch, instead of one record per message, makes the
//! database's work (memtable entries, journal entries, tombstones at trims) scale with
//! batches rather than messages. A trim removes the chunks it covers entirely; a chunk it
//! covers in part stays until a later trim covers the rest, and loading drops its
//! messages up to the trim's mark.
//!
//! With `sync always` each batch is also written to the [`SyncLog`], and a sync is an
//! `fdatasync` of that log instead of the database's journal; the database is synced at
//! the log's checkpoints. Each batch records in the database, in the same write, the
//! number of its log record, so that at open (and at a reopen after a failure) exactly
//! the records the database lacks are replayed: the database's journal comes back as a
//! prefix of what was written, the log holds the rest up to what was acknowledged, and
//! replaying a record the database already holds part of is safe (ops written twice
//! leave what writing them once does).

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use fjall::{PersistMode, Slice};
use parking_lot::Mutex;
use tracing::{info, warn};

use super::synclog::{Fit, SyncLog};
use super::trim::Trimmer;
use super::{ChunkIndex, Engine, Open, keys, open_database, storage_error};
use crate::hub::message::RecordFrame;
use crate::log;
use crate::storage::space::DiskGuard;
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
    frames: Vec<RecordFrame>,
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
    rest: std::slice::Iter<'a, RecordFrame>,
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
    /// The sync log to make acknowledgements durable through (`sync always`).
    log_plan: Option<LogPlan>,
    /// The sync log, once started; `None` without `sync always`, or when it could not
    /// be made (no room for it): syncs then go to the database's journal.
    log: Option<SyncLog>,
}

/// The sync log a store with `sync always` keeps.
struct LogPlan {
    /// Its size (smaller in tests).
    size: u64,
    /// Admits that size when the log is made.
    guard: Option<Arc<DiskGuard>>,
}

/// Where a batch went besides the database.
enum Logged {
    /// No sync log: synced with the database's journal.
    NoLog,
    /// To the sync log, as the record of this epoch and number.
    At(u64, u64),
    /// Larger than the whole sync log: synced with the database at once.
    TooLarge,
}

/// Makes everything written to the database durable: an `fdatasync` of its journal.
fn sync_database(open: &Open) -> Result<(), StorageError> {
    open.db
        .persist(PersistMode::SyncData)
        .map_err(|e| storage_error("fdatasync of the journal", e))
}

/// Makes everything the database holds durable, then starts the log afresh: its records
/// are no longer needed.
fn checkpoint(open: &Open, log: &mut SyncLog) -> Result<(), StorageError> {
    sync_database(open)?;
    log.restart()
}

/// Where the database stands in the sync log: the epoch and number of the newest record
/// whose batch it holds.
fn log_mark(open: &Open) -> Result<Option<(u64, u64)>, StorageError> {
    let value = open
        .meta
        .get(keys::SYNC_LOG_MARK)
        .map_err(|e| storage_error("reading the sync log's mark", e))?;
    Ok(value.and_then(|value| {
        let value: [u8; 16] = value.as_ref().try_into().ok()?;
        let (epoch, number) = value.split_at(8);
        Some((
            u64::from_be_bytes(epoch.try_into().ok()?),
            u64::from_be_bytes(number.try_into().ok()?),
        ))
    }))
}

fn mark_value(epoch: u64, number: u64) -> Bytes {
    let mut value = Vec::with_capacity(16);
    value.extend_from_slice(&epoch.to_be_bytes());
    value.extend_from_slice(&number.to_be_bytes());
    Bytes::from(value)
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
            log_plan: None,
            log: None,
        }
    }

    /// Makes acknowledgements durable through a sync log of `size` bytes, made once
    /// `guard` (if any) finds room for it. Takes effect at [`FjallSink::recover_log`].
    pub fn with_log(mut self, size: u64, guard: Option<Arc<DiskGuard>>) -> FjallSink {
        self.log_plan = Some(LogPlan { size, guard });
        self
    }

    /// Replays into the database the sync log's records it lacks, makes the database
    /// durable and starts the log afresh; without `sync always`, removes the log instead.
    /// Done when the database was opened, before anything is written or read.
    pub fn recover_log(&mut self) -> Result<(), StorageError> {
        self.log = None;
        let engine = self.engine.clone();
        let open = engine.read();
        let Some(open) = open.as_ref() else {
            return Err(StorageError("the store is closed".into()));
        };
        let recovered = SyncLog::recover(&self.dir)?;
        let existed = recovered.is_some();
        let mut after_epoch = 0;
        if let Some(recovered) = recovered {
            after_epoch = recovered.epoch;
            let mark = log_mark(open)?;
            let mut replayed = 0;
            for (number, ops) in &recovered.records {
                let held = mark
                    .is_some_and(|(epoch, newest)| epoch == recovered.epoch && *number <= newest);
                if !held {
                    self.write_database(open, ops, None)?;
                    replayed += 1;
                }
            }
            if replayed > 0 {
                info!(target: log::GENERAL, records = replayed, "replayed the sync log's records the database did not hold");
            }
        }
        sync_database(open)?;
        let Some(plan) = &self.log_plan else {
            return if existed {
                SyncLog::remove(&self.dir)
            } else {
                Ok(())
            };
        };
        if !existed
            && let Some(guard) = &plan.guard
            && let Err(error) = guard.has_room_for(plan.size)
        {
            warn!(target: log::ERROR, %error, "no room for the sync log: acknowledgements sync the database's journal");
            return Ok(());
        }
        match SyncLog::start(&self.dir, plan.size, after_epoch) {
            Ok(log) => self.log = Some(log),
            // A log that could not be made leaves the journal's syncs, as without one.
            Err(error) if !existed => {
                let _ = SyncLog::remove(&self.dir);
                warn!(target: log::ERROR, %error, "the sync log cannot be made: acknowledgements sync the database's journal");
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Adds a message to its history's chunk of this batch.
    fn add_message(&mut self, kind: LogKind, log: &Arc<str>, seq: u64, frame: &RecordFrame) {
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

    /// Writes `ops` to the database as one batch (more around a deletion); with `mark`,
    /// the sync log's mark, in the last of them.
    fn write_database(
        &mut self,
        open: &Open,
        ops: &[Op],
        mark: Option<(u64, u64)>,
    ) -> Result<(), StorageError> {
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
        if let Some((epoch, number)) = mark {
            directory.insert(
                keys::SYNC_LOG_MARK.to_vec(),
                Some(mark_value(epoch, number)),
            );
        }
        self.commit(open, &mut directory, true)
    }
}

impl Sink for FjallSink {
    fn write(&mut self, ops: &[Op]) -> Result<(), StorageError> {
        let engine = self.engine.clone();
        let open = engine.read();
        let Some(open) = open.as_ref() else {
            return Err(StorageError("the store is closed".into()));
        };
        // The log first: a batch in the database is then always in the log too, or
        // synced with the database (too large for the log).
        let logged = match &mut self.log {
            None => Logged::NoLog,
            Some(log) => {
                let mut fit = log.prepare(ops);
                if fit == Fit::Full {
                    checkpoint(open, log)?;
                    fit = Fit::Fits;
                }
                match fit {
                    Fit::TooLarge => Logged::TooLarge,
                    _ => Logged::At(log.next_mark().0, log.write_prepared()?),
                }
            }
        };
        match logged {
            Logged::NoLog => self.write_database(open, ops, None),
            Logged::At(epoch, number) => self.write_database(open, ops, Some((epoch, number))),
            Logged::TooLarge => {
                // Durable at once, through the database, before any later record is
                // logged after it.
                self.write_database(open, ops, None)?;
                sync_database(open)
            }
        }
    }

    fn idle(&mut self) -> Result<(), StorageError> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        if !log.has_records() {
            return Ok(());
        }
        let engine = self.engine.clone();
        let open = engine.read();
        let Some(open) = open.as_ref() else {
            return Err(StorageError("the store is closed".into()));
        };
        checkpoint(open, log)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if let Some(log) = &mut self.log {
            return log.sync();
        }
        let open = self.engine.read();
        let Some(open) = open.as_ref() else {
            return Err(StorageError("the store is closed".into()));
        };
        sync_database(open)
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
        drop(slot);
        // What the failure may have kept from the database, the log may hold.
        self.recover_log()
    }
}
