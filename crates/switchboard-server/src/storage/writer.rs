//! The storage writer: records are queued in order by the callers (who hold a history's
//! lock and must not wait for a disk), and one thread writes everything queued as one
//! batch, then syncs it when a publish is waiting for that or the interval is due.
//!
//! A publish that must be durable takes a ticket after its append: the number of the
//! newest record queued so far (trims do not count: they need not be on disk first). A
//! ticket is kept once a sync covered every record up to it, so all the publishes that
//! arrive while one batch is written and synced share the next batch and its one
//! `fdatasync` (group commit), however many connections they came from. Trims queued
//! alone wait (up to [`TRIM_DELAY`]) for records to share their write, so that a publish
//! awaiting its sync costs one write and one `fdatasync`, not a second write for the trim
//! the previous publish caused.
//!
//! The queue is bounded (records and bytes); a full queue makes the appender wait, which
//! holds back the publishers of that history instead of growing memory without limit.
//!
//! Before a record is queued, the data directory's guard admits it: a record that would
//! leave less free space than the reserve is refused at once (the store stays healthy).
//!
//! When the writer thread is idle, a publish waiting for its sync may write and sync on
//! its own thread instead ([`Writer::sync_here`]): the batch, the sink and what was
//! written and synced are under one lock that the writer thread holds whenever it is not
//! waiting for work, so batches are still taken from the queue and written one at a time
//! in queue order. A lone publisher then costs no wake-up of the writer thread and none
//! of its own thread's back, which at one `fdatasync` per acknowledgement is a visible
//! share of each one.
//!
//! A failed write or sync stops the store: every ticket not covered by an earlier
//! successful sync is refused and later records are refused when they are queued. The
//! records no sync covered (the failed batch, what was queued, and with `interval` what
//! was written since the last sync) are kept in memory and each one is logged under
//! ERROR with its history and seq. Then the writer tries to recover, every
//! [`RETRY_EVERY`]: once the guard sees room above the reserve, the sink reopens the
//! database (the embedded database refuses every write once a journal write failed,
//! and after a failed `fdatasync` a later sync proves nothing, so only a fresh open can
//! be trusted), writes the kept records again, syncs, and the store takes writes again.
//! A store that stops before it recovered logs each kept record as lost. A data
//! directory deleted or replaced never recovers: what it held is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::space::DiskGuard;
use super::{LogKind, StorageError, SyncFuture, SyncPolicy};
use crate::hub::message::RecordFrame;
use crate::log;
use crate::metrics::{HistogramSnapshot, LatencyHistogram};

/// How often a failed store tries to recover.
pub(super) const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often an idle writer checks that the data directory is still there.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long trims queued without records may wait for records to share a write with.
const TRIM_DELAY: Duration = Duration::from_millis(100);
/// Records written but not yet synced that are kept for writing again after a failed
/// sync; past this the oldest are no longer kept (and said to be at risk if the sync
/// then fails).
const KEEP_UNSYNCED_BYTES: usize = 64 * 1024 * 1024;

/// One queued change, applied in queue order. History names are shared (`Arc<str>`): the
/// consecutive records of one history take no copy of its name each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op {
    /// A directory record (a channel's options, a group, a member) under its key.
    Put { key: Vec<u8>, value: Bytes },
    /// A directory record removed (a member who left).
    Remove { key: Vec<u8> },
    /// A message appended to a history: its frame as stored.
    Append {
        kind: LogKind,
        log: Arc<str>,
        seq: u64,
        frame: RecordFrame,
    },
    /// Messages up to `through` may go: applied only after every record queued before
    /// it was written, so that a trim never misses a message still in the queue.
    Trim {
        kind: LogKind,
        log: Arc<str>,
        through: u64,
    },
    /// A channel or group deleted: its directory records, counters and every message.
    /// Applied after every record queued before it was written, and before any queued
    /// after it (the name may be created again).
    DeleteLog { kind: LogKind, log: Arc<str> },
}

/// What a queued record costs besides its bytes (the queue entry, allocations).
const OP_OVERHEAD: usize = 64;

impl Op {
    fn weight(&self) -> usize {
        OP_OVERHEAD
            + match self {
                Op::Put { key, value } => key.len() + value.len(),
                // What its key would take: the history's name and the sequence number.
                Op::Append { log, frame, .. } => log.len() + 8 + frame.held_bytes(),
                Op::Remove { key } => key.len(),
                Op::Trim { log, .. } | Op::DeleteLog { log, .. } => log.len(),
            }
    }
}

/// Where the writer puts batches: the database, or a test double.
pub(super) trait Sink: Send + 'static {
    /// Writes every op as one batch, handed to the operating system but not necessarily
    /// on disk yet. The same ops may be written again after a failure: writing them twice
    /// must leave what writing them once does.
    fn write(&mut self, ops: &[Op]) -> Result<(), StorageError>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// The writer has had nothing to do for a while: housekeeping that would otherwise
    /// fall on a publish waiting for its sync. A failure is a failed sync.
    fn idle(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    /// After a failure: closes the database and opens it again, so that writes can be
    /// trusted again.
    fn reopen(&mut self) -> Result<(), StorageError>;
}

/// What the writer has been through, for STATS.
#[derive(Debug, Clone, Default)]
pub struct WriterHealth {
    /// Why writes are refused now, if they are.
    pub refusing: Option<String>,
    pub failures: u64,
    pub recoveries: u64,
    /// Messages a failure left unwritten (each logged with its history and seq).
    pub unwritten_messages: u64,
    /// Messages lost for good: unwritten when the server stopped.
    pub lost_messages: u64,
    /// Writes refused because the disk reserve would have been used.
    pub disk_full_refusals: u64,
}

/// How much may wait in the queue before appenders wait for the writer.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueueLimits {
    pub records: usize,
    pub bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        // About 8 k records of 1 KiB: several batches' worth at the rates one writer
        // reaches, and at most a few milliseconds of disk bandwidth.
        QueueLimits {
            records: 16 * 1024,
            bytes: 8 * 1024 * 1024,
        }
    }
}

/// How far the writer has got, published to the publishes waiting on tickets.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every record up to this number is on disk.
    synced: u64,
    /// Set once a write or sync failed: records after `synced` are lost.
    failed: Option<String>,
}

#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    bytes: usize,
    /// Records ever queued: the number of the newest.
    queued: u64,
    /// The number of the newest record that is not a trim: what a ticket must cover.
    /// (A trim queued after a publish need not be on disk for the publish to be.)
    last_put: u64,
    /// The highest ticket handed out.
    requested: u64,
    stop: bool,
    failed: Option<String>,
    /// The writer sleeps and must be woken (so that busy appenders do not signal it for
    /// every record).
    writer_idle: bool,
    /// Appenders waiting for room.
    blocked: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    /// What writes: held by the writer thread except while it waits for work, and by a
    /// publish writing on its own thread ([`Writer::sync_here`]). Taken before `queue`
    /// when both are held.
    engine: Mutex<Engine>,
    /// Syncs due this often (`interval`), besides the ones publishes wait for.
    interval: Option<Duration>,
    /// Written batches are kept until synced (not with `never`).
    keep_unsynced: bool,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes appenders waiting for room.
    room: Condvar,
    progress: watch::Sender<Progress>,
    syncs: AtomicU64,
    /// How long each sync took.
    sync_latency: LatencyHistogram,
    /// What every record queued so far weighs: a measure of the store's write volume
    /// that does not depend on the database's own accounting.
    queued_bytes: AtomicU64,
    limits: QueueLimits,
    guard: Option<Arc<DiskGuard>>,
    /// The number of the newest record queued ([`Queue::queued`], readable without the
    /// queue's lock).
    queued_through: AtomicU64,
    /// Records up to this number are in the database ([`Done::written`], readable
    /// without the engine's lock).
    written_through: AtomicU64,
    failures: AtomicU64,
    recoveries: AtomicU64,
    unwritten: AtomicU64,
    lost: AtomicU64,
}

impl Shared {
    fn closed() -> StorageError {
        StorageError("the store is closed".into())
    }
}

fn failed_error(reason: &str) -> StorageError {
    StorageError::unavailable(format!("the store failed: {reason}"))
}

/// Owns the writer thread; [`Writer::stop`] (or dropping it) writes and syncs whatever
/// is queued, then ends it.
pub(super) struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `sink`.
    /// With a `guard`, records are admitted against its reserve and the directory is
    /// checked; with `read_only`, the store starts refusing writes for that reason and
    /// takes them once it recovers (a disk full at start).
    pub fn start(
        policy: SyncPolicy,
        limits: QueueLimits,
        sink: impl Sink,
        guard: Option<Arc<DiskGuard>>,
        read_only: Option<String>,
    ) -> Result<Writer, StorageError> {
        let (progress, _) = watch::channel(Progress {
            synced: 0,
            failed: read_only.clone(),
        });
        let interval = match policy {
            SyncPolicy::Interval(every) => Some(every.max(Duration::from_millis(1))),
            SyncPolicy::Never | SyncPolicy::Always => None,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                failed: read_only,
                ..Queue::default()
            }),
            engine: Mutex::new(Engine {
                sink: Box::new(sink),
                done: Done {
                    written: 0,
                    synced: 0,
                    last_sync: Instant::now(),
                    unsynced: Vec::new(),
                    unsynced_bytes: 0,
                    unsynced_partial: false,
                },
                batch: Vec::new(),
                failure: None,
            }),
            interval,
            keep_unsynced: policy != SyncPolicy::Never,
            work: Condvar::new(),
            room: Condvar::new(),
            progress,
            syncs: AtomicU64::new(0),
            sync_latency: LatencyHistogram::default(),
            queued_bytes: AtomicU64::new(0),
            limits,
            guard,
            queued_through: AtomicU64::new(0),
            written_through: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || run(&worker))
            .map_err(|e| StorageError(format!("cannot start the storage writer: {e}")))?;
        Ok(Writer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a record, waiting for room if the queue is full. Fails once the store
    /// failed or closed.
    pub fn push(&self, op: Op) -> Result<(), StorageError> {
        self.queue_op(op, false)
    }

    /// Queues a record whose caller then waits for its sync ([`Writer::sync_here`] or
    /// [`Writer::sync`]): the writer thread is not woken for it, since the sync either
    /// writes it on the caller's thread or wakes the writer. (Woken for the record, it
    /// would only contend with the caller for the batch.)
    pub fn push_awaited(&self, op: Op) -> Result<(), StorageError> {
        self.queue_op(op, true)
    }

    fn queue_op(&self, op: Op, awaited: bool) -> Result<(), StorageError> {
        let weight = op.weight();
        let is_record = !matches!(op, Op::Trim { .. });
        // Removals free space: only what adds to the store is held to the disk reserve.
        let adds = matches!(op, Op::Put { .. } | Op::Append { .. });
        if adds && let Some(guard) = &self.shared.guard {
            guard.admit(weight as u64)?;
        }
        let limits = self.shared.limits;
        let mut queue = self.shared.queue.lock();
        loop {
            if let Some(reason) = &queue.failed {
                return Err(failed_error(reason));
            }
            if queue.stop {
                return Err(Shared::closed());
            }
            // An empty queue takes any record, however large, so that one record over
            // the byte limit cannot wait forever.
            let fits = queue.ops.len() < limits.records && queue.bytes + weight <= limits.bytes;
            if fits || queue.ops.is_empty() {
                break;
            }
            queue.blocked += 1;
            self.shared.room.wait(&mut queue);
            queue.blocked -= 1;
        }
        self.shared
            .queued_bytes
            .fetch_add(weight as u64, Ordering::Relaxed);
        // A trim needs the writer only to start its wait for records to share a write:
        // with anything queued before it, the writer was woken already, or a sync will be.
        let wanted = !awaited && (is_record || queue.ops.is_empty());
        queue.ops.push(op);
        queue.bytes += weight;
        queue.queued += 1;
        self.shared
            .queued_through
            .store(queue.queued, Ordering::Release);
        if is_record {
            queue.last_put = queue.queued;
        }
        let wake = wanted && std::mem::take(&mut queue.writer_idle);
        drop(queue);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// A future that resolves once every record queued before this call is on disk.
    pub fn sync(&self) -> SyncFuture {
        let ticket = {
            let mut queue = self.shared.queue.lock();
            let ticket = queue.last_put;
            let wake = ticket > queue.requested && std::mem::take(&mut queue.writer_idle);
            queue.requested = queue.requested.max(ticket);
            drop(queue);
            if wake {
                self.shared.work.notify_one();
            }
            ticket
        };
        let mut progress = self.shared.progress.subscribe();
        Box::pin(async move {
            let reached = progress
                .wait_for(|p| p.synced >= ticket || p.failed.is_some())
                .await
                .map_err(|_| Shared::closed())?;
            match &reached.failed {
                Some(reason) if reached.synced < ticket => Err(failed_error(reason)),
                _ => Ok(()),
            }
        })
    }

    /// Whether [`Writer::sync_here`] would sync on the calling thread now: the writer
    /// thread waits for work, no publish waits for a sync, and the store is healthy.
    pub fn can_sync_here(&self) -> bool {
        let shared = &*self.shared;
        if shared.engine.is_locked() {
            return false;
        }
        let synced = shared.progress.borrow().synced;
        let queue = shared.queue.lock();
        queue.writer_idle
            && queue.requested <= synced
            && queue.failed.is_none()
            && !queue.stop
            && queue.blocked == 0
    }

    /// Writes and syncs everything queued so far on the calling thread, if the writer
    /// thread is idle and the store healthy: `Some(Ok(()))` once every record queued
    /// before this call is on disk. `None` when it is not done here (the writer thread
    /// is busy, other publishes already wait for a sync, appenders wait for room, the
    /// store failed or is stopping, or this write or sync failed, which the writer thread
    /// then handles): [`Writer::sync`] then says when, or whether, they are on disk.
    ///
    /// The caller's thread is blocked for one write and one `fdatasync`.
    pub fn sync_here(&self) -> Option<Result<(), StorageError>> {
        let shared = &*self.shared;
        let mut engine = shared.engine.try_lock()?;
        if engine.failure.is_some() {
            return None;
        }
        let mut queue = shared.queue.lock();
        if queue.failed.is_some() || queue.stop || queue.blocked > 0 {
            return None;
        }
        let ticket = queue.last_put;
        if ticket <= engine.done.synced {
            return Some(Ok(()));
        }
        // Other publishes already wait for a sync: the writer thread makes one for all
        // of them (group commit) rather than this caller's sync and then theirs.
        if queue.requested > engine.done.synced {
            return None;
        }
        queue.requested = queue.requested.max(ticket);
        let through = if ticket > engine.done.written {
            // Trims queued with the records ride with them, as on the writer thread.
            std::mem::swap(&mut queue.ops, &mut engine.batch);
            queue.bytes = 0;
            queue.queued
        } else {
            engine.done.written
        };
        drop(queue);
        let engine_state = &mut *engine;
        let written = write_batch(shared, engine_state, through)
            .and_then(|()| sync(shared, engine_state.sink.as_mut(), &mut engine_state.done));
        match written {
            Ok(()) => Some(Ok(())),
            Err(error) => {
                // The writer thread refuses what no sync covered and recovers.
                engine.failure = Some(error);
                drop(engine);
                let _queue = shared.queue.lock();
                shared.work.notify_one();
                None
            }
        }
    }

    /// The number of the newest record queued so far.
    pub fn queued_through(&self) -> u64 {
        self.shared.queued_through.load(Ordering::Acquire)
    }

    /// Records up to this number are in the database (not necessarily synced).
    pub fn written_through(&self) -> u64 {
        self.shared.written_through.load(Ordering::Acquire)
    }

    /// How many syncs completed.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// How long the syncs took.
    pub fn sync_latency(&self) -> HistogramSnapshot {
        self.shared.sync_latency.snapshot()
    }

    /// Whether writes are taken, and what failures and recoveries there were.
    pub fn health(&self) -> WriterHealth {
        let shared = &self.shared;
        WriterHealth {
            refusing: shared.queue.lock().failed.clone(),
            failures: shared.failures.load(Ordering::Relaxed),
            recoveries: shared.recoveries.load(Ordering::Relaxed),
            unwritten_messages: shared.unwritten.load(Ordering::Relaxed),
            lost_messages: shared.lost.load(Ordering::Relaxed),
            disk_full_refusals: 0,
        }
    }

    /// The weight of every record queued so far (keys, values and a fixed overhead).
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued_bytes.load(Ordering::Relaxed)
    }

    /// Writes and syncs everything queued, then ends the thread. Later records are
    /// refused.
    pub fn stop(&self) {
        self.shared.queue.lock().stop = true;
        self.shared.work.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What writes, with what it wrote and synced, under one lock (see [`Shared::engine`]).
struct Engine {
    sink: Box<dyn Sink>,
    done: Done,
    /// Swapped with the queue's vector each batch, so that neither allocates again.
    batch: Vec<Op>,
    /// Why a write or sync made on a publish's own thread failed, for the writer thread
    /// to stop the store and recover.
    failure: Option<StorageError>,
}

/// What the writer knows about the records it handled.
struct Done {
    /// Records up to this number were written.
    written: u64,
    /// Records up to this number were synced.
    synced: u64,
    last_sync: Instant,
    /// Batches written since the last sync, kept to be written again if it fails
    /// (empty with `never`, which promises nothing before the system writes back).
    unsynced: Vec<Vec<Op>>,
    unsynced_bytes: usize,
    /// Some batches written since the last sync were not kept (over the bound).
    unsynced_partial: bool,
}

impl Done {
    fn keep_written(&mut self, batch: &mut Vec<Op>, keep: bool) {
        if !keep {
            batch.clear();
            return;
        }
        let bytes: usize = batch.iter().map(Op::weight).sum();
        if self.unsynced_bytes + bytes > KEEP_UNSYNCED_BYTES {
            self.unsynced.clear();
            self.unsynced_bytes = 0;
            self.unsynced_partial = true;
            batch.clear();
            return;
        }
        self.unsynced_bytes += bytes;
        self.unsynced.push(std::mem::take(batch));
    }

    fn synced_all(&mut self) {
        self.unsynced.clear();
        self.unsynced_bytes = 0;
        self.unsynced_partial = false;
    }
}

/// Why the writer stopped writing: a failure to recover from, or the end.
enum Halt {
    Failed(StorageError),
    Stopped,
}

fn run(shared: &Shared) {
    let mut engine = shared.engine.lock();
    let started_failed = shared.queue.lock().failed.clone();
    if let Some(reason) = started_failed {
        error!(target: log::ERROR, %reason, "the store starts read-only: reads are served, writes refused until it recovers");
        if !recover(shared, &mut engine, Vec::new()) {
            return;
        }
    }
    loop {
        match write_until_halt(shared, &mut engine) {
            Halt::Stopped => return,
            Halt::Failed(error) => {
                let kept = fail(shared, &mut engine.done, &error);
                if !recover(shared, &mut engine, kept) {
                    return;
                }
            }
        }
    }
}

/// What the writer thread does next.
enum Next {
    /// Write everything queued (and sync if that is due).
    Take,
    /// Only sync: what is queued is trims, which need not be on disk first, so they do
    /// not delay it.
    Sync,
    /// Wait for work this long at most.
    Wait(Duration),
}

/// The writer's normal work: batches written and synced until a failure or the end.
/// `engine` is let go only while the thread waits for work.
fn write_until_halt(shared: &Shared, engine: &mut MutexGuard<'_, Engine>) -> Halt {
    // Since when trims alone have been waiting in the queue.
    let mut trims_waiting: Option<Instant> = None;
    loop {
        // A publish writing on its own thread failed.
        if let Some(error) = engine.failure.take() {
            return Halt::Failed(error);
        }
        let mut queue = shared.queue.lock();
        if queue.ops.is_empty() {
            // A publish's own write may have taken the trims that were waiting.
            trims_waiting = None;
        }
        let done = &engine.done;
        // Trims alone are not worth a write of their own: they wait for the next
        // records (a publish's trim rides with the next publish), for a while at most.
        let records = queue.last_put > done.written;
        let trims_due = !queue.ops.is_empty()
            && (queue.blocked > 0
                || trims_waiting.is_some_and(|since| since.elapsed() >= TRIM_DELAY));
        let next = if records || trims_due || queue.stop {
            Next::Take
        } else if queue.requested > done.synced
            || shared.interval.is_some_and(|every| {
                done.written > done.synced && done.last_sync.elapsed() >= every
            })
        {
            Next::Sync
        } else {
            let mut wait = IDLE_CHECK_EVERY;
            if let Some(every) = shared.interval
                && done.written > done.synced
            {
                wait = every.saturating_sub(done.last_sync.elapsed());
            }
            if !queue.ops.is_empty() {
                let since = *trims_waiting.get_or_insert_with(Instant::now);
                wait = wait.min(TRIM_DELAY.saturating_sub(since.elapsed()));
            }
            Next::Wait(wait)
        };
        let through = match next {
            Next::Wait(wait) => {
                queue.writer_idle = true;
                // The engine is free while the thread waits, for a publish to write on
                // its own thread; the queue's lock goes before the engine's is taken
                // again (the order is engine, then queue).
                let idle = MutexGuard::unlocked(engine, move || {
                    let timed_out = shared.work.wait_for(&mut queue, wait).timed_out();
                    queue.writer_idle = false;
                    timed_out && queue.ops.is_empty()
                });
                if idle
                    && let Some(guard) = &shared.guard
                    && let Err(error) = guard.check_identity()
                {
                    // Idle: a deleted data directory is noticed without waiting for a
                    // write.
                    return Halt::Failed(error);
                }
                if idle && let Err(error) = engine.sink.idle() {
                    return Halt::Failed(error);
                }
                continue;
            }
            Next::Take => {
                std::mem::swap(&mut queue.ops, &mut engine.batch);
                queue.bytes = 0;
                trims_waiting = None;
                queue.queued
            }
            Next::Sync => engine.done.written,
        };
        let requested = queue.requested;
        // Records queued after `stop` are refused, so this batch is the last.
        let stopping = queue.stop;
        if matches!(next, Next::Take) && queue.blocked > 0 {
            shared.room.notify_all();
        }
        drop(queue);

        if let Err(error) = write_batch(shared, engine, through) {
            return Halt::Failed(error);
        }
        // Tickets taken while the batch was written are covered by a sync now, not
        // after another round.
        let requested = requested.max(shared.queue.lock().requested);
        let Engine { sink, done, .. } = &mut **engine;
        let due = shared
            .interval
            .is_some_and(|every| done.last_sync.elapsed() >= every)
            || requested > done.synced
            || stopping;
        if done.written > done.synced
            && due
            && let Err(error) = sync(shared, sink.as_mut(), done)
        {
            return Halt::Failed(error);
        }
        if stopping {
            return Halt::Stopped;
        }
    }
}

/// Writes the engine's batch, taken from the queue with the records up to `through`.
/// A failed write keeps the batch among the records no sync covered, after syncing what
/// was written before it.
fn write_batch(shared: &Shared, engine: &mut Engine, through: u64) -> Result<(), StorageError> {
    let Engine {
        sink, done, batch, ..
    } = engine;
    if !batch.is_empty() {
        if let Err(error) = sink.write(batch) {
            // What was written before this batch may still be made durable.
            if done.written > done.synced {
                let _ = sync(shared, sink.as_mut(), done);
            }
            done.unsynced.push(std::mem::take(batch));
            return Err(error);
        }
        done.keep_written(batch, shared.keep_unsynced);
    }
    done.written = through;
    shared.written_through.store(through, Ordering::Release);
    Ok(())
}

fn sync(shared: &Shared, sink: &mut dyn Sink, done: &mut Done) -> Result<(), StorageError> {
    let started = Instant::now();
    sink.sync()?;
    shared.sync_latency.record(started.elapsed());
    // A sync into a deleted directory succeeds and keeps nothing.
    if let Some(guard) = &shared.guard {
        guard.check_identity()?;
    }
    shared.syncs.fetch_add(1, Ordering::Relaxed);
    done.synced = done.written;
    done.last_sync = Instant::now();
    done.synced_all();
    let synced = done.synced;
    shared.progress.send_modify(|p| p.synced = synced);
    Ok(())
}

/// Refuses every ticket a sync did not cover and every record queued later; returns
/// the records no sync covered, each logged.
fn fail(shared: &Shared, done: &mut Done, error: &StorageError) -> Vec<Vec<Op>> {
    shared.failures.fetch_add(1, Ordering::Relaxed);
    error!(target: log::ERROR, %error, synced = done.synced, "writing to the store failed; refusing durable writes until it recovers");
    let is_message = |op: &&Op| matches!(op, Op::Append { .. });
    let mut kept = std::mem::take(&mut done.unsynced);
    let mut queue = shared.queue.lock();
    let queued = std::mem::take(&mut queue.ops);
    queue.bytes = 0;
    if !queued.is_empty() {
        kept.push(queued);
    }
    // Counted before anyone can see the store refuse writes, so that STATS never shows
    // the failure without what it left unwritten.
    let unwritten = kept.iter().flatten().filter(is_message).count() as u64;
    shared.unwritten.fetch_add(unwritten, Ordering::Relaxed);
    queue.failed = Some(error.0.clone());
    drop(queue);
    shared.room.notify_all();
    if std::mem::take(&mut done.unsynced_partial) {
        error!(target: log::ERROR, "some messages written since the last sync were not kept in memory and may be lost");
    }
    for op in kept.iter().flatten() {
        if let Op::Append { kind, log, seq, .. } = op {
            error!(target: log::ERROR, kind = kind_name(*kind), log = %log, seq, "message not on disk after the failure: kept in memory and written again once the store recovers; lost if the server stops first");
        }
    }
    done.unsynced_bytes = 0;
    // Waiting publishes hear of the failure once what it left unwritten is logged.
    shared
        .progress
        .send_modify(|p| p.failed = Some(error.0.clone()));
    kept
}

fn kind_name(kind: LogKind) -> &'static str {
    match kind {
        LogKind::Channel => "channel",
        LogKind::Group => "group",
    }
}

/// Waits until the store can be written again (room above the reserve, the directory
/// still there, the database reopened, the kept records written and synced), then takes
/// writes again and returns true; returns false when the writer is stopped first.
fn recover(shared: &Shared, engine: &mut Engine, kept: Vec<Vec<Op>>) -> bool {
    let Engine { sink, done, .. } = engine;
    let mut last_reason = String::new();
    loop {
        {
            let mut queue = shared.queue.lock();
            if !queue.stop {
                shared.work.wait_for(&mut queue, RETRY_EVERY);
            }
            if queue.stop {
                drop(queue);
                let mut lost = 0;
                for op in kept.iter().flatten() {
                    if let Op::Append { kind, log, seq, .. } = op {
                        lost += 1;
                        error!(target: log::ERROR, kind = kind_name(*kind), log = %log, seq, "message lost: the store did not recover before the server stopped");
                    }
                }
                shared.lost.fetch_add(lost, Ordering::Relaxed);
                return false;
            }
        }
        let attempt = (|| {
            if let Some(guard) = &shared.guard {
                guard.has_room()?;
            }
            sink.reopen()?;
            for batch in &kept {
                sink.write(batch)?;
            }
            sink.sync()?;
            if let Some(guard) = &shared.guard {
                guard.check_identity()?;
            }
            Ok::<(), StorageError>(())
        })();
        match attempt {
            Ok(()) => break,
            Err(error) => {
                // Said once per reason, not every second.
                if error.0 != last_reason {
                    warn!(target: log::ERROR, %error, "the store cannot recover yet");
                    last_reason = error.0;
                }
            }
        }
    }
    let mut queue = shared.queue.lock();
    let through = queue.queued;
    queue.failed = None;
    drop(queue);
    shared.syncs.fetch_add(1, Ordering::Relaxed);
    shared.recoveries.fetch_add(1, Ordering::Relaxed);
    done.written = through;
    shared.written_through.store(through, Ordering::Release);
    done.synced = through;
    done.last_sync = Instant::now();
    done.synced_all();
    shared.progress.send_modify(|p| {
        p.synced = through;
        p.failed = None;
    });
    info!(target: log::GENERAL, rewritten = kept.iter().flatten().count(), "the store recovered: durable writes are taken again");
    true
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// What a test sink saw, shared with the test.
    #[derive(Default)]
    struct Seen {
        /// Batches written, as the values of their records.
        batches: Mutex<Vec<Vec<Bytes>>>,
        syncs: AtomicU64,
        /// The write with this number (from 1) fails.
        fail_write: AtomicU64,
        fail_sync: AtomicBool,
        /// Holds every write back until cleared.
        hold: AtomicBool,
        /// Writes begun (including one held back).
        entered: AtomicU64,
        /// Reopening fails while set.
        refuse_reopen: AtomicBool,
        reopens: AtomicU64,
        /// The threads that wrote each batch, and synced, in order.
        writers: Mutex<Vec<std::thread::ThreadId>>,
        syncers: Mutex<Vec<std::thread::ThreadId>>,
    }

    struct TestSink(Arc<Seen>);

    impl Sink for TestSink {
        fn write(&mut self, ops: &[Op]) -> Result<(), StorageError> {
            self.0.entered.fetch_add(1, Ordering::SeqCst);
            while self.0.hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut batches = self.0.batches.lock();
            if self.0.fail_write.load(Ordering::SeqCst) == batches.len() as u64 + 1 {
                return Err(StorageError("no space left".into()));
            }
            let values = ops
                .iter()
                .map(|op| match op {
                    Op::Put { value, .. } => value.clone(),
                    Op::Append { frame, .. } => Bytes::copy_from_slice(frame),
                    Op::Trim { log, .. } | Op::DeleteLog { log, .. } => {
                        Bytes::copy_from_slice(log.as_bytes())
                    }
                    Op::Remove { key } => Bytes::from(key.clone()),
                })
                .collect();
            batches.push(values);
            self.0.writers.lock().push(std::thread::current().id());
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StorageError> {
            if self.0.fail_sync.load(Ordering::SeqCst) {
                return Err(StorageError("disk gone".into()));
            }
            self.0.syncers.lock().push(std::thread::current().id());
            self.0.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn reopen(&mut self) -> Result<(), StorageError> {
            if self.0.refuse_reopen.load(Ordering::SeqCst) {
                return Err(StorageError("still broken".into()));
            }
            self.0.reopens.fetch_add(1, Ordering::SeqCst);
            self.0.fail_write.store(0, Ordering::SeqCst);
            self.0.fail_sync.store(false, Ordering::SeqCst);
            Ok(())
        }
    }

    fn put(value: &str) -> Op {
        Op::Append {
            kind: LogKind::Channel,
            log: value.into(),
            seq: 1,
            frame: Bytes::copy_from_slice(value.as_bytes()).into(),
        }
    }

    fn start(policy: SyncPolicy, limits: QueueLimits) -> (Writer, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let writer = Writer::start(policy, limits, TestSink(seen.clone()), None, None).unwrap();
        (writer, seen)
    }

    /// Waits until the writer began its `n`th write.
    fn entered(seen: &Seen, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.entered.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the writer never began write {n}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn written(seen: &Seen) -> Vec<Bytes> {
        seen.batches.lock().iter().flatten().cloned().collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_queued_during_a_write_share_the_next_batch_and_sync() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        seen.hold.store(true, Ordering::SeqCst);
        writer.push(put("first")).unwrap();
        let first = writer.sync();
        // The writer is held in the first write; these queue behind it.
        entered(&seen, 1);
        let mut waits = Vec::new();
        for i in 0..100 {
            writer.push(put(&format!("m{i}"))).unwrap();
            waits.push(writer.sync());
        }
        seen.hold.store(false, Ordering::SeqCst);
        first.await.unwrap();
        for wait in waits {
            wait.await.unwrap();
        }
        let batches: Vec<usize> = seen.batches.lock().iter().map(Vec::len).collect();
        let syncs = seen.syncs.load(Ordering::SeqCst);
        assert_eq!(
            (batches, syncs),
            (vec![1, 100], 2),
            "101 records, one held back"
        );
        assert_eq!(writer.syncs(), 2);
        writer.stop();
    }

    #[tokio::test]
    async fn a_trim_queued_after_a_record_does_not_hold_its_ticket_for_another_sync() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        seen.hold.store(true, Ordering::SeqCst);
        writer.push(put("a")).unwrap();
        entered(&seen, 1);
        writer
            .push(Op::Trim {
                kind: LogKind::Channel,
                log: "a".into(),
                through: 1,
            })
            .unwrap();
        let ticket = writer.sync();
        seen.hold.store(false, Ordering::SeqCst);
        ticket.await.unwrap();
        // The sync right after the record's batch kept the ticket; the trim's batch
        // needed none.
        assert_eq!(seen.syncs.load(Ordering::SeqCst), 1);
        writer.stop();
    }

    /// Waits until the writer wrote `n` batches.
    fn batches_written(seen: &Seen, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.batches.lock().len() < n {
            assert!(
                Instant::now() < deadline,
                "the writer never wrote batch {n}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn trims_alone_wait_for_the_next_records_and_share_their_write() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        let trim = |log: &str| Op::Trim {
            kind: LogKind::Channel,
            log: log.into(),
            through: 1,
        };
        writer.push(put("a")).unwrap();
        batches_written(&seen, 1);
        writer.push(trim("trim-a")).unwrap();
        // Well under the delay: a slow machine can only make the writer later still.
        std::thread::sleep(TRIM_DELAY / 5);
        assert_eq!(
            seen.batches.lock().len(),
            1,
            "a trim alone was written at once"
        );
        writer.push(put("b")).unwrap();
        batches_written(&seen, 2);
        assert_eq!(
            seen.batches.lock()[1],
            [Bytes::from("trim-a"), Bytes::from("b")],
            "the trim rides with the next record"
        );
        // With no record to follow, a trim is written once it waited the delay.
        writer.push(trim("trim-b")).unwrap();
        batches_written(&seen, 3);
        assert_eq!(seen.batches.lock()[2], [Bytes::from("trim-b")]);
        writer.stop();
    }

    #[tokio::test]
    async fn a_failed_batch_refuses_exactly_the_tickets_no_sync_covered() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        seen.fail_write.store(2, Ordering::SeqCst);
        writer.push(put("kept")).unwrap();
        writer.sync().await.unwrap();
        // Held, so that both records go in the second (failing) batch.
        seen.hold.store(true, Ordering::SeqCst);
        writer.push(put("lost-1")).unwrap();
        let lost_1 = writer.sync();
        writer.push(put("lost-2")).unwrap();
        let lost_2 = writer.sync();
        seen.hold.store(false, Ordering::SeqCst);
        for lost in [lost_1, lost_2] {
            let error = lost.await.unwrap_err();
            assert!(error.0.contains("no space left"), "{error}");
        }
        assert_eq!(written(&seen), [Bytes::from("kept")]);
        let error = writer.push(put("later")).unwrap_err();
        assert!(error.0.contains("no space left"), "{error}");
        writer.stop();
    }

    #[tokio::test]
    async fn a_failed_sync_refuses_its_waiters_and_later_records() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        seen.fail_sync.store(true, Ordering::SeqCst);
        writer.push(put("a")).unwrap();
        let error = writer.sync().await.unwrap_err();
        assert!(error.0.contains("disk gone"), "{error}");
        assert!(writer.push(put("b")).is_err());
        writer.stop();
    }

    #[tokio::test]
    async fn a_failed_store_recovers_and_writes_what_the_failure_left_unwritten() {
        let (writer, seen) = start(
            SyncPolicy::Interval(Duration::from_millis(5)),
            QueueLimits::default(),
        );
        seen.refuse_reopen.store(true, Ordering::SeqCst);
        seen.fail_write.store(2, Ordering::SeqCst);
        writer.push(put("kept")).unwrap();
        writer.sync().await.unwrap();
        // Acknowledged at once under `interval`; its batch fails.
        writer.push(put("unwritten")).unwrap();
        assert!(writer.sync().await.is_err());
        let error = writer.push(put("refused")).unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        let health = writer.health();
        assert_eq!((health.failures, health.unwritten_messages), (1, 1));
        assert!(health.refusing.is_some());
        // Still broken at the next attempt: still refused.
        std::thread::sleep(RETRY_EVERY + Duration::from_millis(200));
        assert!(writer.push(put("refused")).is_err());
        seen.refuse_reopen.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + RETRY_EVERY * 5;
        while writer.health().refusing.is_some() {
            assert!(Instant::now() < deadline, "the store never recovered");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(seen.reopens.load(Ordering::SeqCst), 1);
        writer.push(put("after")).unwrap();
        writer.sync().await.unwrap();
        assert_eq!(
            written(&seen),
            [
                Bytes::from("kept"),
                Bytes::from("unwritten"),
                Bytes::from("after")
            ]
        );
        assert_eq!(writer.health().recoveries, 1);
        writer.stop();
    }

    #[tokio::test]
    async fn a_store_started_read_only_takes_writes_once_it_recovers() {
        let seen = Arc::new(Seen::default());
        seen.refuse_reopen.store(true, Ordering::SeqCst);
        let writer = Writer::start(
            SyncPolicy::Always,
            QueueLimits::default(),
            TestSink(seen.clone()),
            None,
            Some("disk full at start".into()),
        )
        .unwrap();
        let error = writer.push(put("a")).unwrap_err();
        assert!(error.to_string().contains("disk full at start"), "{error}");
        seen.refuse_reopen.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + RETRY_EVERY * 5;
        while writer.push(put("a")).is_err() {
            assert!(Instant::now() < deadline, "the store never recovered");
            std::thread::sleep(Duration::from_millis(20));
        }
        writer.sync().await.unwrap();
        assert_eq!(written(&seen), [Bytes::from("a")]);
        writer.stop();
    }

    #[test]
    fn unwritten_messages_are_counted_lost_when_the_store_stops_before_recovering() {
        let (writer, seen) = start(SyncPolicy::Never, QueueLimits::default());
        seen.refuse_reopen.store(true, Ordering::SeqCst);
        seen.fail_write.store(1, Ordering::SeqCst);
        writer.push(put("a")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while writer.health().failures == 0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        writer.stop();
        assert_eq!(writer.health().lost_messages, 1);
    }

    #[test]
    fn stop_writes_and_syncs_everything_queued_in_order() {
        let (writer, seen) = start(SyncPolicy::Never, QueueLimits::default());
        seen.hold.store(true, Ordering::SeqCst);
        let expected: Vec<Bytes> = (0..1000).map(|i| Bytes::from(format!("m{i}"))).collect();
        for value in &expected {
            writer
                .push(Op::Append {
                    kind: LogKind::Channel,
                    log: "".into(),
                    seq: 1,
                    frame: value.clone().into(),
                })
                .unwrap();
        }
        seen.hold.store(false, Ordering::SeqCst);
        writer.stop();
        assert_eq!(written(&seen), expected);
        assert_eq!(seen.syncs.load(Ordering::SeqCst), 1, "a final sync");
        let error = writer.push(put("after")).unwrap_err();
        assert!(error.0.contains("closed"), "{error}");
    }

    #[test]
    fn a_full_queue_holds_appenders_back_until_the_writer_takes_it() {
        let limits = QueueLimits {
            records: 4,
            bytes: 1 << 20,
        };
        let (writer, seen) = start(SyncPolicy::Never, limits);
        seen.hold.store(true, Ordering::SeqCst);
        // The first record goes to the (held) writer; four more fill the queue.
        writer.push(put("0")).unwrap();
        entered(&seen, 1);
        for i in 1..=4 {
            writer.push(put(&i.to_string())).unwrap();
        }
        let writer = Arc::new(writer);
        let pushed = Arc::new(AtomicBool::new(false));
        let blocked = {
            let (writer, pushed) = (writer.clone(), pushed.clone());
            std::thread::spawn(move || {
                writer.push(put("5")).unwrap();
                pushed.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!pushed.load(Ordering::SeqCst), "a full queue took a record");
        seen.hold.store(false, Ordering::SeqCst);
        blocked.join().unwrap();
        writer.stop();
        let values: Vec<Bytes> = (0..=5).map(|i| Bytes::from(i.to_string())).collect();
        assert_eq!(written(&seen), values);
    }

    /// Waits until the writer thread waits for work.
    fn writer_idle(writer: &Writer) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !writer.shared.queue.lock().writer_idle {
            assert!(Instant::now() < deadline, "the writer never went idle");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn an_idle_writer_lets_the_caller_write_and_sync_on_its_own_thread() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        let here = std::thread::current().id();
        for (i, value) in ["a", "b", "c"].into_iter().enumerate() {
            writer_idle(&writer);
            // As a publish that awaits its sync queues it: without waking the writer,
            // which would otherwise race the caller for the batch.
            writer.push_awaited(put(value)).unwrap();
            // What this returns is said only once the record is written and synced.
            assert!(matches!(writer.sync_here(), Some(Ok(()))), "record {i}");
            assert_eq!(seen.syncs.load(Ordering::SeqCst), i as u64 + 1);
            assert_eq!(seen.batches.lock()[i], [Bytes::from(value)]);
        }
        assert_eq!(*seen.writers.lock(), [here; 3]);
        assert_eq!(*seen.syncers.lock(), [here; 3]);
        // Covered already: no second sync.
        assert!(matches!(writer.sync_here(), Some(Ok(()))));
        assert_eq!(seen.syncs.load(Ordering::SeqCst), 3);
        writer.stop();
    }

    #[tokio::test]
    async fn an_awaited_record_waits_for_its_sync_to_be_asked_for() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        writer_idle(&writer);
        writer.push_awaited(put("a")).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(written(&seen).is_empty(), "the writer was woken for it");
        // Asked for by a ticket (a pipelining publisher's): the writer thread writes it.
        writer.sync().await.unwrap();
        assert_eq!(written(&seen), [Bytes::from("a")]);
        assert_ne!(seen.writers.lock()[0], std::thread::current().id());
        writer.stop();
    }

    #[tokio::test]
    async fn a_busy_writer_keeps_the_batch_and_the_sync_on_its_own_thread() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        seen.hold.store(true, Ordering::SeqCst);
        writer.push(put("a")).unwrap();
        entered(&seen, 1);
        writer.push(put("b")).unwrap();
        // The writer thread is in its write: the caller is not let in.
        assert!(writer.sync_here().is_none());
        let ticket = writer.sync();
        seen.hold.store(false, Ordering::SeqCst);
        ticket.await.unwrap();
        assert_eq!(written(&seen), [Bytes::from("a"), Bytes::from("b")]);
        let here = std::thread::current().id();
        assert!(seen.writers.lock().iter().all(|id| *id != here));
        writer.stop();
    }

    #[tokio::test]
    async fn a_failed_sync_on_the_callers_thread_stops_the_store() {
        let (writer, seen) = start(SyncPolicy::Always, QueueLimits::default());
        writer.push(put("a")).unwrap();
        writer.sync().await.unwrap();
        writer_idle(&writer);
        seen.refuse_reopen.store(true, Ordering::SeqCst);
        seen.fail_sync.store(true, Ordering::SeqCst);
        writer.push(put("b")).unwrap();
        // Never a success for a record no sync covered.
        assert!(writer.sync_here().is_none());
        let error = writer.sync().await.unwrap_err();
        assert!(error.0.contains("disk gone"), "{error}");
        assert!(writer.push(put("c")).is_err());
        assert!(writer.sync_here().is_none());
        assert_eq!(writer.health().failures, 1);
        writer.stop();
        assert_eq!(writer.health().lost_messages, 1);
    }

    #[test]
    fn interval_syncs_what_was_written_within_the_interval() {
        let (writer, seen) = start(
            SyncPolicy::Interval(Duration::from_millis(20)),
            QueueLimits::default(),
        );
        writer.push(put("a")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.syncs.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(seen.syncs.load(Ordering::SeqCst), 1);
        assert_eq!(written(&seen), [Bytes::from("a")]);
        // Nothing new written: no more syncs.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(seen.syncs.load(Ordering::SeqCst), 1);
        writer.stop();
    }
}
