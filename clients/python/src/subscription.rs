//! `NativeSubscription`: a subscription's messages, one `next` call at a time.

use std::sync::Arc;

use futures::StreamExt;
use pyo3::prelude::*;
use switchboard_client::Subscription;
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
}

impl NativeSubscription {
    pub(crate) fn new(subscription: Subscription, blocking: bool) -> NativeSubscription {
        NativeSubscription {
            patterns: subscription.patterns().to_vec(),
            replay_count: subscription.replay_count(),
            subscription: Arc::new(Mutex::new(Some(subscription))),
            blocking,
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
        run(py, blocking, async move {
            let mut guard = subscription.lock().await;
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            match stream.next().await {
                Some(Ok(message)) => Ok(Some(Message::read(message, blocking).await?)),
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
}
