//! `NativeSubscription`: a subscription's messages, one `next` call at a time, or in
//! batches of what is already queued (`next_batch`), which is how the Python iterators
//! read them: one call per batch rather than one awaitable per message.

use std::sync::{Arc, Mutex as StdMutex};

use futures::{FutureExt, StreamExt};
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::IntoPyObjectExt;
use switchboard_client::{ClientError, Subscription};
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
        let blocking = self.blocking;
        let deferred_error = Arc::clone(&self.deferred_error);
        run(py, blocking, async move {
            let mut guard = subscription.lock().await;
            if let Some(error) = take_deferred(&deferred_error) {
                return Err(errors::to_py(error));
            }
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            match stream.next().await {
                Some(Ok(message)) => Ok(Some(Message::read(message, blocking)?)),
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
        let blocking = self.blocking;
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
            let ended = gather_ready(stream, &mut batch, max, blocking, &deferred_error)?;
            if ended || !batch.is_empty() {
                return batch.into_bound_py_any(py);
            }
        }
        run(py, blocking, async move {
            let mut guard = subscription.lock().await;
            if let Some(error) = take_deferred(&deferred_error) {
                return Err(errors::to_py(error));
            }
            let Some(stream) = guard.as_mut() else {
                return Ok(Vec::new());
            };
            let mut batch = Vec::new();
            match stream.next().await {
                Some(Ok(message)) => batch.push(Message::read(message, blocking)?),
                Some(Err(error)) => return Err(errors::to_py(error)),
                None => return Ok(batch),
            }
            gather_ready(stream, &mut batch, max, blocking, &deferred_error)?;
            Ok(batch)
        })
    }
}

/// Moves the messages already queued on `stream` into `batch`, up to `max`, without
/// waiting (a streamed body stays unread until asked for, so every message is ready).
/// Returns whether the stream ended; an error that ends it after some messages is kept
/// for the next call, so that the messages before it are not lost.
fn gather_ready(
    stream: &mut Subscription,
    batch: &mut Vec<Message>,
    max: usize,
    blocking: bool,
    deferred_error: &StdMutex<Option<ClientError>>,
) -> PyResult<bool> {
    while batch.len() < max {
        match stream.next().now_or_never() {
            Some(Some(Ok(message))) => batch.push(Message::read(message, blocking)?),
            Some(Some(Err(error))) => {
                if batch.is_empty() {
                    return Err(errors::to_py(error));
                }
                *lock(deferred_error) = Some(error);
                return Ok(true);
            }
            Some(None) => return Ok(true),
            None => return Ok(false),
        }
    }
    Ok(false)
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
