//! Group commit: one thread syncs the store's journal for every publish waiting on it,
//! and at the interval for everyone else.
//!
//! A publish that must be durable takes a ticket after its write and waits until a sync
//! that started after the ticket completes. All tickets taken while one sync runs are
//! covered by the next one, so concurrent publishers share one `fdatasync`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::error;

use super::{StorageError, SyncFuture, SyncPolicy};
use crate::log;

/// How far syncing has got, published to waiters.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every ticket up to this one is on disk.
    completed: u64,
    /// Set once a sync failed: nothing after it can be promised.
    failed: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Highest ticket handed out.
    requested: u64,
    /// Highest ticket covered by a finished sync.
    completed: u64,
    /// Writes made so far, and the count the last sync covered.
    written: u64,
    synced_written: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    syncs: std::sync::atomic::AtomicU64,
}

/// Owns the sync thread; dropping or [`Syncer::stop`] ends it after a final sync.
pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Syncer {
    /// Starts the thread; `sync` performs one durable sync of the store.
    pub fn start(
        policy: SyncPolicy,
        sync: impl Fn() -> Result<(), StorageError> + Send + 'static,
    ) -> Syncer {
        let (progress, _) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            progress,
            syncs: std::sync::atomic::AtomicU64::new(0),
        });
        let interval = match policy {
            SyncPolicy::Interval(every) => Some(every.max(Duration::from_millis(1))),
            SyncPolicy::Never | SyncPolicy::Always => None,
        };
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("switchboard-sync".into())
            .spawn(move || run(&worker, interval, sync))
            .ok();
        Syncer {
            shared,
            thread: Mutex::new(thread),
        }
    }

    /// Notes that something was written (for interval syncs).
    pub fn wrote(&self) {
        self.shared.state.lock().written += 1;
    }

    /// A future that resolves once everything written before this call is on disk.
    pub fn sync(&self) -> SyncFuture {
        let ticket = {
            let mut state = self.shared.state.lock();
            state.requested += 1;
            state.requested
        };
        self.shared.wake.notify_one();
        let mut progress = self.shared.progress.subscribe();
        Box::pin(async move {
            let reached = progress
                .wait_for(|p| p.completed >= ticket || p.failed.is_some())
                .await
                .map_err(|_| StorageError("the store is closed".into()))?;
            match &reached.failed {
                Some(reason) if reached.completed < ticket => {
                    Err(StorageError(format!("sync failed: {reason}")))
                }
                _ => Ok(()),
            }
        })
    }

    /// How many syncs completed.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Syncs one last time and ends the thread.
    pub fn stop(&self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, interval: Option<Duration>, sync: impl Fn() -> Result<(), StorageError>) {
    let mut last_sync = Instant::now();
    loop {
        let mut state = shared.state.lock();
        loop {
            let asked = state.requested > state.completed;
            let due = interval.is_some_and(|every| {
                state.written > state.synced_written && last_sync.elapsed() >= every
            });
            if asked || due || state.stop {
                break;
            }
            match interval {
                Some(every) => {
                    let left = every.saturating_sub(last_sync.elapsed());
                    let wait = if left.is_zero() { every } else { left };
                    shared.wake.wait_for(&mut state, wait);
                }
                None => shared.wake.wait(&mut state),
            }
        }
        let stopping = state.stop;
        let (ticket, written) = (state.requested, state.written);
        drop(state);

        let result = sync();
        last_sync = Instant::now();
        shared
            .syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut state = shared.state.lock();
        match result {
            Ok(()) => {
                state.completed = ticket;
                state.synced_written = written;
                shared.progress.send_modify(|p| p.completed = ticket);
            }
            Err(error) => {
                // After a failed fsync the page cache may have dropped the data: promise
                // nothing more (the publishes waiting are refused).
                error!(target: log::ERROR, %error, "syncing the store failed");
                shared
                    .progress
                    .send_modify(|p| p.failed = Some(error.0.clone()));
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tickets_taken_during_a_sync_share_the_next_one() {
        let performed = Arc::new(AtomicU64::new(0));
        let counter = performed.clone();
        let syncer = Syncer::start(SyncPolicy::Always, move || {
            std::thread::sleep(Duration::from_millis(20));
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let waits: Vec<SyncFuture> = (0..100).map(|_| syncer.sync()).collect();
        for wait in waits {
            wait.await.unwrap();
        }
        let syncs = performed.load(Ordering::Relaxed);
        assert!((1..=3).contains(&syncs), "{syncs} syncs for 100 tickets");
        assert_eq!(syncer.syncs(), syncs);
        syncer.stop();
    }

    #[tokio::test]
    async fn a_failed_sync_fails_its_waiters() {
        let syncer = Syncer::start(SyncPolicy::Always, || Err(StorageError("disk gone".into())));
        let error = syncer.sync().await.unwrap_err();
        assert!(error.0.contains("disk gone"), "{error}");
        syncer.stop();
    }
}
