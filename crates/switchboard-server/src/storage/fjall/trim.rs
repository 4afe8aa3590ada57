//! The trim thread: takes the removals of a trim too large for the writer's own batch (a
//! history trimmed after a restart with a much lower retention, say) off the writer.

use std::sync::Arc;
use std::thread::JoinHandle;

use fjall::PersistMode;
use parking_lot::{Condvar, Mutex};
use tracing::error;

use super::{Engine, storage_error};
use crate::log;
use crate::storage::StorageError;

/// Chunk keys for the trim thread to remove.
#[derive(Default)]
struct TrimQueue {
    keys: Vec<Vec<u8>>,
    stop: bool,
}

/// The trim thread's queue, shared by the writer that fills it and the thread.
pub(super) struct Trimmer {
    queue: Mutex<TrimQueue>,
    wake: Condvar,
}

impl Trimmer {
    /// Starts the trim thread, removing chunks from the engine's messages.
    pub fn start(engine: &Engine) -> Result<(Arc<Trimmer>, JoinHandle<()>), StorageError> {
        let trimmer = Arc::new(Trimmer {
            queue: Mutex::new(TrimQueue::default()),
            wake: Condvar::new(),
        });
        let thread = {
            let trimmer = trimmer.clone();
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("switchboard-trim".into())
                .spawn(move || trimmer.run(&engine))
                .map_err(|e| storage_error("cannot start the trim thread", e))?
        };
        Ok((trimmer, thread))
    }

    /// Queues chunk keys for removal.
    pub fn add(&self, keys: Vec<Vec<u8>>) {
        self.queue.lock().keys.extend(keys);
        self.wake.notify_one();
    }

    /// Ends the thread once it removed everything queued.
    pub fn stop(&self, thread: Option<JoinHandle<()>>) {
        self.queue.lock().stop = true;
        self.wake.notify_one();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    fn run(&self, engine: &Engine) {
        loop {
            let keys = {
                let mut queue = self.queue.lock();
                while queue.keys.is_empty() && !queue.stop {
                    self.wake.wait(&mut queue);
                }
                if queue.keys.is_empty() && queue.stop {
                    return;
                }
                std::mem::take(&mut queue.keys)
            };
            // The engine is held only while committing, so that the writer can reopen it.
            let open = engine.read();
            let Some(open) = open.as_ref() else {
                continue;
            };
            let mut batch = open.db.batch().durability(Some(PersistMode::Buffer));
            for key in keys {
                // Weak removals, like the writer's own: see `FjallSink::trim`.
                batch.remove_weak(&open.messages, key);
            }
            if let Err(error) = batch.commit() {
                error!(target: log::ERROR, %error, "trimming history failed");
            }
        }
    }
}
