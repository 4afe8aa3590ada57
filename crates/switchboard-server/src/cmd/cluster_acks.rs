//! Publishes of a session in cluster mode that the backplane has queued but not yet
//! stored: the session reads on while they are out, and a task it owns answers them in
//! publish order as their outcomes come back. Before any other request the session
//! waits until they are all answered ([`ClusterAcks::settle`]), so a read, a
//! subscription's replay or a group operation that follows publishes sees them stored,
//! as on a single server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::session::refused;
use crate::cluster::node::QueuedPublish;
use crate::metrics::LatencyHistogram;
use crate::outbox::{Outbox, Outgoing};

/// Publishes that may be out at once per session (then the session waits too).
const MAX_OUT: usize = 4096;

enum Waiting {
    Publish {
        request_id: u32,
        quiet: bool,
        outcome: QueuedPublish,
        /// When the publish was read.
        started: Instant,
    },
    /// Everything queued before it was answered.
    Settled(oneshot::Sender<()>),
}

/// The task answering a session's queued publishes, and its queue.
pub(crate) struct ClusterAcks {
    queue: mpsc::Sender<Waiting>,
    task: JoinHandle<()>,
    /// Publishes were queued since the session last settled.
    unsettled: bool,
}

impl ClusterAcks {
    pub(super) fn start(
        client_id: u64,
        outbox: Outbox,
        latency: Arc<LatencyHistogram>,
    ) -> ClusterAcks {
        let (queue, mut waiting) = mpsc::channel::<Waiting>(MAX_OUT);
        let task = tokio::spawn(async move {
            while let Some(next) = waiting.recv().await {
                let (request_id, quiet, outcome, started) = match next {
                    Waiting::Settled(done) => {
                        let _ = done.send(());
                        continue;
                    }
                    Waiting::Publish {
                        request_id,
                        quiet,
                        outcome,
                        started,
                    } => (request_id, quiet, outcome, started),
                };
                let item = match outcome.await {
                    Ok(_) if quiet => continue,
                    Ok(published) => {
                        latency.record(started.elapsed());
                        Outgoing::PublishAck {
                            request_id,
                            ack: published.ack,
                        }
                    }
                    Err(refusal) => refused(client_id, request_id, refusal),
                };
                if outbox.send(item).await.is_err() {
                    return;
                }
            }
        });
        ClusterAcks {
            queue,
            task,
            unsettled: false,
        }
    }

    /// Queues a publish's outcome behind those queued before it (waiting for room when
    /// `MAX_OUT` are out).
    pub(super) async fn push(
        &mut self,
        request_id: u32,
        quiet: bool,
        outcome: QueuedPublish,
        started: Instant,
    ) {
        self.unsettled = true;
        let _ = self
            .queue
            .send(Waiting::Publish {
                request_id,
                quiet,
                outcome,
                started,
            })
            .await;
    }

    /// Returns once every publish queued so far is answered.
    pub(super) async fn settle(&mut self) {
        if !self.unsettled {
            return;
        }
        self.unsettled = false;
        let (done, settled) = oneshot::channel();
        if self.queue.send(Waiting::Settled(done)).await.is_ok() {
            let _ = settled.await;
        }
    }

    /// Answers everything still out, within `limit`, before the session closes.
    pub(super) async fn finish(self, limit: Duration) {
        let ClusterAcks {
            queue, mut task, ..
        } = self;
        drop(queue);
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}
