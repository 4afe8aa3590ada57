//! `NativeSubscription`: a subscription's messages, one `next` call at a time, or in
//! batches of what is already queued (`next_batch`), which is how the Python iterators
//! read them: one call per batch rather than one awaitable per message.

use std::sync::{Arc, Mutex as StdMutex};

use futures::{FutureExt, StreamExt};
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::IntoPyObjectExt;
use switchboard_client::{ClientError, ReceivedMessage, Subscription};
use tokio::sync::Mutex;

use crate::bridge::run;
use crate::errors;
use crate::values::Message;

#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct NativeSubscription {
    // A tokio mutex, held across the wait for the next message: two concurrent `next`
    // calls take turns instead of racing for the stream. `None` once unsubscribed.
    subscription: Arc<Mutex<Option<Subscription>>>,
    blocking: bool,
    patterns: Vec<String>,
    replay_count: u64,
    /// The error that ended the stream while a batch was being gathered: the batch is
    /// returned first, the error on the next call.
    deferred_error: Arc<StdMutex<Option<ClientError>>>,
}

impl NativeSubscription {
    pub(crate) fn new(subscription: Subscription, blocking: bool) -> NativeSubscription {
        NativeSubscription {
            patterns: subscription.patterns().to_vec(),
            replay_count: subscription.replay_count(),
            subscription: Arc::new(Mutex::new(Some(subscription))),
            blocking,
            deferred_error: Arc::default(),
        }
    }
}

#[pymethods]
impl NativeSubscription {
    #[getter]
    fn patterns(&self) -> Vec<String> {
        self.patterns.clone()
    }

    #[getter]
    fn replay_count(&self) -> u64 {
        self.replay_count
    }

    /// The next message, or None when the subscription has ended.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let subscription = Arc::clone(&self.subscription);
        let deferred_error = Arc::clone(&self.deferred_error);
        run(py, self.blocking, async move {
            let mut guard = subscription.lock().await;
            if let Some(error) = take_deferred(&deferred_error) {
                return Err(errors::to_py(error));
            }
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            match stream.next().await {
                Some(Ok(message)) => Ok(Some(Message::read(message).await?)),
                Some(Err(error)) => Err(errors::to_py(error)),
                None => Ok(None),
            }
        })
    }

    fn unsubscribe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let subscription = Arc::clone(&self.subscription);
        run(py, self.blocking, async move {
            let taken = subscription.lock().await.take();
            match taken {
                Some(stream) => stream.unsubscribe().await.map_err(errors::to_py),
                None => Ok(()),
            }
        })
    }

    // ----- batches: no future per message -----

    /// Up to `max` messages (at least one): a list at once when some are already
    /// queued, otherwise (async API) an awaitable of the list, or (blocking API) the
    /// list once one arrives. An empty list means the subscription has ended.
    fn next_batch<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Bound<'py, PyAny>> {
        let max = max.max(1);
        let subscription = Arc::clone(&self.subscription);
        let deferred_error = Arc::clone(&self.deferred_error);
        // Taking what is queued needs no future; the lock is only busy while another
        // call waits for a message, and then this one waits its turn below.
        if let Ok(mut guard) = subscription.try_lock() {
            if let Some(error) = take_deferred(&deferred_error) {
                return Err(errors::to_py(error));
            }
            let Some(stream) = guard.as_mut() else {
                return Ok(PyList::empty(py).into_any());
            };
            let mut batch = Vec::new();
            match gather_ready(stream, &mut batch, max, &deferred_error)? {
                Gathered::Done => {
                    if !batch.is_empty() {
                        return batch.into_bound_py_any(py);
                    }
                }
                Gathered::Ended => return batch.into_bound_py_any(py),
                // A streamed body is read in the background, like a wait.
                Gathered::Streamed(message) => {
                    drop(guard);
                    return run(py, self.blocking, async move {
                        batch.push(Message::read(*message).await?);
                        Ok(batch)
                    });
                }
            }
        }
        run(py, self.blocking, async move {
            let mut guard = subscription.lock().await;
            if let Some(error) = take_deferred(&deferred_error) {
                return Err(errors::to_py(error));
            }
            let Some(stream) = guard.as_mut() else {
                return Ok(Vec::new());
            };
            let mut batch = Vec::new();
            match stream.next().await {
                Some(Ok(message)) => batch.push(Message::read(message).await?),
                Some(Err(error)) => return Err(errors::to_py(error)),
                None => return Ok(batch),
            }
            loop {
                match gather_ready(stream, &mut batch, max, &deferred_error)? {
                    Gathered::Done | Gathered::Ended => return Ok(batch),
                    Gathered::Streamed(message) => batch.push(Message::read(*message).await?),
                }
            }
        })
    }
}

/// How [`gather_ready`] stopped.
enum Gathered {
    /// The batch is full, or nothing more is queued.
    Done,
    /// The stream ended (its error, if any, is deferred to the next call).
    Ended,
    /// A message whose body is streamed: it must be read before the batch is returned.
    Streamed(Box<ReceivedMessage>),
}

/// Moves the messages already queued on `stream` into `batch`, up to `max`, without
/// waiting.
fn gather_ready(
    stream: &mut Subscription,
    batch: &mut Vec<Message>,
    max: usize,
    deferred_error: &StdMutex<Option<ClientError>>,
) -> PyResult<Gathered> {
    while batch.len() < max {
        match stream.next().now_or_never() {
            Some(Some(Ok(message))) if message.is_streamed() => {
                return Ok(Gathered::Streamed(Box::new(message)));
            }
            Some(Some(Ok(message))) => match Message::read(message).now_or_never() {
                Some(read) => batch.push(read?),
                None => return Err(errors::internal("a message in memory was not ready")),
            },
            Some(Some(Err(error))) => {
                if batch.is_empty() {
                    return Err(errors::to_py(error));
                }
                *lock(deferred_error) = Some(error);
                return Ok(Gathered::Ended);
            }
            Some(None) => return Ok(Gathered::Ended),
            None => return Ok(Gathered::Done),
        }
    }
    Ok(Gathered::Done)
}

fn take_deferred(deferred_error: &StdMutex<Option<ClientError>>) -> Option<ClientError> {
    lock(deferred_error).take()
}

/// The deferred error's lock: held for a take or a put, never across an await.
fn lock(
    deferred_error: &StdMutex<Option<ClientError>>,
) -> std::sync::MutexGuard<'_, Option<ClientError>> {
    deferred_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
