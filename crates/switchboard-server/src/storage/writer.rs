//! The storage writer: records are queued in order by the callers (who hold a history's
//! lock and must not wait for a disk), and one thread writes everything queued as one
//! batch, then syncs it when a publish is waiting for that or the interval is due.
//!
//! A publish that must be durable takes a ticket after its append: the number of the
//! newest record queued so far (trims do not count: they need not be on disk first). A
//! ticket is kept once a sync covered every record up to it, so all the publishes that
//! arrive while one batch is written and synced share the next batch and its one
//! `fdatasync` (group commit), however many connections they came from.
//!
//! The queue is bounded (records and bytes); a full queue makes the appender wait, which
//! holds back the publishers of that history instead of growing memory without limit.
//!
//! A failed write or sync is final: every ticket not covered by an earlier successful
//! sync is refused, whatever was still queued is dropped, and later records are refused
//! when they are queued. The store cannot promise anything after such a failure: the
//! embedded database refuses every write once a journal write failed, and after a failed
//! `fdatasync` the kernel may have dropped the unwritten pages, so a later sync that
//! succeeds proves nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::error;

use super::{LogKind, StorageError, SyncFuture, SyncPolicy};
use crate::log;

/// One queued change, applied in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op {
    /// A directory record (a channel's options, a group, a member) under its key.
    Put { key: Vec<u8>, value: Bytes },
    /// A directory record removed (a member who left).
    Remove { key: Vec<u8> },
    /// A message appended to a history: its frame as stored.
    Append {
        kind: LogKind,
        log: String,
        seq: u64,
        frame: Bytes,
    },
    /// Messages up to `through` may go: applied only after every record queued before
    /// it was written, so that a trim never misses a message still in the queue.
    Trim {
        kind: LogKind,
        log: String,
        through: u64,
    },
    /// A channel or group deleted: its directory records, counters and every message.
    /// Applied after every record queued before it was written, and before any queued
    /// after it (the name may be created again).
    DeleteLog { kind: LogKind, log: String },
}

/// What a queued record costs besides its bytes (the queue entry, allocations).
const OP_OVERHEAD: usize = 64;

impl Op {
    fn weight(&self) -> usize {
        OP_OVERHEAD
            + match self {
                Op::Put { key, value } => key.len() + value.len(),
                // What its key would take: the history's name and the sequence number.
                Op::Append { log, frame, .. } => log.len() + 8 + frame.len(),
                Op::Remove { key } => key.len(),
                Op::Trim { log, .. } | Op::DeleteLog { log, .. } => log.len(),
            }
    }
}

/// Where the writer puts batches: the database, or a test double.
pub(super) trait Sink: Send + 'static {
    /// Writes every op (draining `ops`) as one batch, handed to the operating system but
    /// not necessarily on disk yet.
    fn write(&mut self, ops: &mut Vec<Op>) -> Result<(), StorageError>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<(), StorageError>;
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
    /// Wakes the writer.
    work: Condvar,
    /// Wakes appenders waiting for room.
    room: Condvar,
    progress: watch::Sender<Progress>,
    syncs: AtomicU64,
    /// What every record queued so far weighs: a measure of the store's write volume
    /// that does not depend on the database's own accounting.
    queued_bytes: AtomicU64,
    limits: QueueLimits,
}

impl Shared {
    fn closed() -> StorageError {
        StorageError("the store is closed".into())
    }
}

/// Owns the writer thread; [`Writer::stop`] (or dropping it) writes and syncs whatever
/// is queued, then ends it.
pub(super) struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `sink`.
    pub fn start(
        policy: SyncPolicy,
        limits: QueueLimits,
        sink: impl Sink,
    ) -> Result<Writer, StorageError> {
        let (progress, _) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            progress,
            syncs: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            limits,
        });
        let interval = match policy {
            SyncPolicy::Interval(every) => Some(every.max(Duration::from_millis(1))),
            SyncPolicy::Never | SyncPolicy::Always => None,
        };
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || run(&worker, interval, sink))
            .map_err(|e| StorageError(format!("cannot start the storage writer: {e}")))?;
        Ok(Writer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a record, waiting for room if the queue is full. Fails once the store
    /// failed or closed.
    pub fn push(&self, op: Op) -> Result<(), StorageError> {
        let weight = op.weight();
        let limits = self.shared.limits;
        let mut queue = self.shared.queue.lock();
        loop {
            if let Some(reason) = &queue.failed {
                return Err(StorageError(format!("the store failed: {reason}")));
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
        let is_record = !matches!(op, Op::Trim { .. });
        queue.ops.push(op);
        queue.bytes += weight;
        queue.queued += 1;
        if is_record {
            queue.last_put = queue.queued;
        }
        let wake = std::mem::take(&mut queue.writer_idle);
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
                Some(reason) if reached.synced < ticket => {
                    Err(StorageError(format!("the store failed: {reason}")))
                }
                _ => Ok(()),
            }
        })
    }

    /// How many syncs completed.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
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

/// What the writer thread knows about the records it handled.
struct Done {
    /// Records up to this number were written.
    written: u64,
    /// Records up to this number were synced.
    synced: u64,
    last_sync: Instant,
}

fn run(shared: &Shared, interval: Option<Duration>, mut sink: impl Sink) {
    let mut done = Done {
        written: 0,
        synced: 0,
        last_sync: Instant::now(),
    };
    // Swapped with the queue's vector each batch, so that neither allocates again.
    let mut batch: Vec<Op> = Vec::new();
    loop {
        let mut queue = shared.queue.lock();
        loop {
            let due = interval.is_some_and(|every| {
                done.written > done.synced && done.last_sync.elapsed() >= every
            });
            if !queue.ops.is_empty() || queue.requested > done.synced || due || queue.stop {
                break;
            }
            queue.writer_idle = true;
            match interval {
                Some(every) if done.written > done.synced => {
                    let left = every.saturating_sub(done.last_sync.elapsed());
                    shared.work.wait_for(&mut queue, left);
                }
                _ => shared.work.wait(&mut queue),
            }
            queue.writer_idle = false;
        }
        std::mem::swap(&mut queue.ops, &mut batch);
        queue.bytes = 0;
        let through = queue.queued;
        let requested = queue.requested;
        // Records queued after `stop` are refused, so this batch is the last.
        let stopping = queue.stop;
        if queue.blocked > 0 {
            shared.room.notify_all();
        }
        drop(queue);

        if !batch.is_empty() {
            let result = sink.write(&mut batch);
            batch.clear();
            if let Err(error) = result {
                // What was written before this batch may still be made durable.
                if done.written > done.synced {
                    let _ = sync(shared, &mut sink, &mut done);
                }
                fail(shared, &done, &error);
                return wait_for_stop(shared);
            }
        }
        done.written = through;
        // Tickets taken while the batch was written are covered by a sync now, not
        // after another round.
        let requested = requested.max(shared.queue.lock().requested);
        let due = interval.is_some_and(|every| done.last_sync.elapsed() >= every)
            || requested > done.synced
            || stopping;
        if done.written > done.synced
            && due
            && let Err(error) = sync(shared, &mut sink, &mut done)
        {
            fail(shared, &done, &error);
            return wait_for_stop(shared);
        }
        if stopping {
            return;
        }
    }
}

fn sync(shared: &Shared, sink: &mut impl Sink, done: &mut Done) -> Result<(), StorageError> {
    sink.sync()?;
    shared.syncs.fetch_add(1, Ordering::Relaxed);
    done.synced = done.written;
    done.last_sync = Instant::now();
    let synced = done.synced;
    shared.progress.send_modify(|p| p.synced = synced);
    Ok(())
}

/// Refuses every ticket a sync did not cover, and everything queued or queued later.
fn fail(shared: &Shared, done: &Done, error: &StorageError) {
    error!(target: log::ERROR, %error, synced = done.synced, "writing to the store failed; refusing further writes");
    let mut queue = shared.queue.lock();
    queue.failed = Some(error.0.clone());
    queue.ops.clear();
    queue.bytes = 0;
    drop(queue);
    shared.room.notify_all();
    shared
        .progress
        .send_modify(|p| p.failed = Some(error.0.clone()));
}

fn wait_for_stop(shared: &Shared) {
    let mut queue = shared.queue.lock();
    while !queue.stop {
        shared.work.wait(&mut queue);
    }
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
    }

    struct TestSink(Arc<Seen>);

    impl Sink for TestSink {
        fn write(&mut self, ops: &mut Vec<Op>) -> Result<(), StorageError> {
            self.0.entered.fetch_add(1, Ordering::SeqCst);
            while self.0.hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut batches = self.0.batches.lock();
            if self.0.fail_write.load(Ordering::SeqCst) == batches.len() as u64 + 1 {
                return Err(StorageError("no space left".into()));
            }
            let values = ops
                .drain(..)
                .map(|op| match op {
                    Op::Put { value, .. } | Op::Append { frame: value, .. } => value,
                    Op::Trim { log, .. } | Op::DeleteLog { log, .. } => Bytes::from(log),
                    Op::Remove { key } => Bytes::from(key),
                })
                .collect();
            batches.push(values);
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StorageError> {
            if self.0.fail_sync.load(Ordering::SeqCst) {
                return Err(StorageError("disk gone".into()));
            }
            self.0.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn put(value: &str) -> Op {
        Op::Append {
            kind: LogKind::Channel,
            log: value.to_owned(),
            seq: 1,
            frame: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    fn start(policy: SyncPolicy, limits: QueueLimits) -> (Writer, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let writer = Writer::start(policy, limits, TestSink(seen.clone())).unwrap();
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

    #[test]
    fn stop_writes_and_syncs_everything_queued_in_order() {
        let (writer, seen) = start(SyncPolicy::Never, QueueLimits::default());
        seen.hold.store(true, Ordering::SeqCst);
        let expected: Vec<Bytes> = (0..1000).map(|i| Bytes::from(format!("m{i}"))).collect();
        for value in &expected {
            writer
                .push(Op::Append {
                    kind: LogKind::Channel,
                    log: String::new(),
                    seq: 1,
                    frame: value.clone(),
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
