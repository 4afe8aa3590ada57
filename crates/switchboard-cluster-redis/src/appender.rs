//! The node's channel appends, sent to Redis in the order they were queued.
//!
//! One task takes every append this node makes off a bounded queue and sends what has
//! gathered while the previous batch was out as one pipeline: one write and one round
//! trip for the whole batch, however many connections published. Redis runs a
//! pipeline's scripts in order and the task sends one batch at a time, so appends
//! are stored in the order they were queued; a session that queues its publishes one
//! after another may therefore go on reading before they are stored and still have
//! them stored in its order.
//!
//! Every append keeps its own bound: it fails with BACKPLANE_UNAVAILABLE once the
//! node's operation timeout has passed since it was queued, whether it was still
//! waiting or sent (then whether it was stored is unknown, as for any timeout).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::channels::{self, AppendError, Appended};
use crate::error::BackplaneError;
use crate::keys::Keys;
use crate::supervisor::Supervisor;

/// Appends queued at most before publishers wait for room.
const QUEUE: usize = 8192;
/// Appends sent in one pipeline at most.
const MAX_BATCH: usize = 512;
/// Payload bytes sent in one pipeline at most (a batch always takes its first append).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One message to append, owning what the script needs.
#[derive(Debug)]
pub(crate) struct OwnedAppend {
    pub name: String,
    pub cid: u64,
    pub default_options: Bytes,
    pub new_epoch: u64,
    pub now_us: u64,
    pub max_len: u64,
    pub max_bytes: u64,
    pub id: [u8; 16],
    pub payload: Bytes,
    pub body_len: u64,
    pub tags: Vec<String>,
    pub tag_max_len: u64,
}

/// An append waiting for its batch.
struct Queued {
    append: OwnedAppend,
    queued_at: Instant,
    answer: oneshot::Sender<Result<Appended, AppendError>>,
}

/// The sending side: where appends queue.
pub(crate) struct Appender {
    queue: mpsc::Sender<Queued>,
    sent: Arc<Sent>,
}

/// What the task sent: the mean batch is `appends / batches`.
#[derive(Default)]
struct Sent {
    batches: AtomicU64,
    appends: AtomicU64,
}

/// An append's outcome, once its batch is answered.
pub(crate) struct Pending(oneshot::Receiver<Result<Appended, AppendError>>);

impl Pending {
    pub(crate) async fn outcome(self) -> Result<Appended, AppendError> {
        self.0.await.unwrap_or_else(|_| {
            Err(AppendError::Backplane(BackplaneError::Unavailable(
                "the node is shutting down".to_owned(),
            )))
        })
    }
}

impl Appender {
    /// Starts the task that sends the appends; it ends with `shutdown`.
    pub(crate) fn start(
        supervisor: Arc<Supervisor>,
        keys: Keys,
        shutdown: CancellationToken,
    ) -> (Appender, tokio::task::JoinHandle<()>) {
        let (queue, queued) = mpsc::channel(QUEUE);
        let sent = Arc::new(Sent::default());
        let task = tokio::spawn(send_batches(
            supervisor,
            keys,
            queued,
            sent.clone(),
            shutdown,
        ));
        (Appender { queue, sent }, task)
    }

    /// Pipelines sent.
    pub(crate) fn batches(&self) -> u64 {
        self.sent.batches.load(Ordering::Relaxed)
    }

    /// Appends sent in them.
    pub(crate) fn appends(&self) -> u64 {
        self.sent.appends.load(Ordering::Relaxed)
    }

    /// Queues `append` behind every append queued before it. Returns once it has its
    /// place (waiting for room while the queue is full); its outcome comes later.
    pub(crate) async fn queue(&self, append: OwnedAppend) -> Result<Pending, BackplaneError> {
        let (answer, outcome) = oneshot::channel();
        let queued = Queued {
            append,
            queued_at: Instant::now(),
            answer,
        };
        self.queue
            .send(queued)
            .await
            .map_err(|_| BackplaneError::Unavailable("the node is shutting down".to_owned()))?;
        Ok(Pending(outcome))
    }
}

async fn send_batches(
    supervisor: Arc<Supervisor>,
    keys: Keys,
    mut queued: mpsc::Receiver<Queued>,
    sent: Arc<Sent>,
    shutdown: CancellationToken,
) {
    let bound = supervisor.config().op_timeout;
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            first = queued.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        let mut bytes = first.append.payload.len();
        batch.push(first);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queued.try_recv() {
                Ok(next) => {
                    bytes += next.append.payload.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        sent.batches.fetch_add(1, Ordering::Relaxed);
        sent.appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        send(&supervisor, &keys, bound, &mut batch).await;
    }
}

/// Sends one batch and answers each of its appends, in order.
async fn send(supervisor: &Supervisor, keys: &Keys, bound: Duration, batch: &mut Vec<Queued>) {
    let now = Instant::now();
    // Those that waited out their bound fail unsent; the rest share the bound left to
    // the oldest of them.
    let mut left = bound;
    batch.retain_mut(|queued| {
        let waited = now.saturating_duration_since(queued.queued_at);
        if waited >= bound {
            let answer = std::mem::replace(&mut queued.answer, oneshot::channel().0);
            let _ = answer.send(Err(AppendError::Backplane(BackplaneError::Timeout(bound))));
            false
        } else {
            left = left.min(bound - waited);
            true
        }
    });
    if batch.is_empty() {
        return;
    }
    let generation = supervisor.generation();
    let (appends, answers): (Vec<OwnedAppend>, Vec<_>) = batch
        .drain(..)
        .map(|queued| (queued.append, queued.answer))
        .unzip();
    let keys = keys.clone();
    let outcomes = supervisor
        .run_within(left, move |conn| {
            async move {
                let appends: Vec<channels::Append<'_>> = appends
                    .iter()
                    .map(|append| channels::Append {
                        name: &append.name,
                        cid: append.cid,
                        default_options: &append.default_options,
                        generation,
                        new_epoch: append.new_epoch,
                        now_us: append.now_us,
                        max_len: append.max_len,
                        max_bytes: append.max_bytes,
                        id: append.id,
                        payload: &append.payload,
                        body_len: append.body_len,
                        tags: &append.tags,
                        tag_max_len: append.tag_max_len,
                    })
                    .collect();
                channels::append_many(conn, &keys, &appends).await
            }
            .boxed()
        })
        .await;
    match outcomes {
        Ok(outcomes) => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(outcome);
            }
        }
        Err(error) => {
            let message = error.to_string();
            for answer in answers {
                let error = match &error {
                    BackplaneError::Timeout(bound) => BackplaneError::Timeout(*bound),
                    BackplaneError::Unavailable(why) => BackplaneError::Unavailable(why.clone()),
                    _ => BackplaneError::Unavailable(message.clone()),
                };
                let _ = answer.send(Err(AppendError::Backplane(error)));
            }
        }
    }
}
