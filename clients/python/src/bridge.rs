//! Runs a call's future for either API: as an asyncio awaitable, or to completion on the
//! module's tokio runtime while the calling thread waits with the interpreter released.
//!
//! The awaitable is the binding's own rather than a general bridge's, so that the
//! runtime's threads enter Python only through [`crate::gate`]: the result is handed to
//! the event loop only while the interpreter is not exiting.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::IntoPyObjectExt;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::gate;

/// How often a blocking call looks for signals: Ctrl-C must interrupt a script waiting
/// on a subscription, and Python handles signals only while it holds the interpreter.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The runtime every call runs on, started by the first call. It is never shut down:
/// its threads outlive the interpreter, kept out of it by [`crate::gate`].
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("switchboard-runtime")
            .build()
            // Without threads or an event source the binding cannot do anything at
            // all; this fails only when the process is out of resources.
            .unwrap_or_else(|error| panic!("starting the client's runtime: {error}"))
    })
}

/// Returns an awaitable of `future`'s result, or (when `blocking`) the result itself.
pub(crate) fn run<'py, F, T>(
    py: Python<'py>,
    blocking: bool,
    future: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if !blocking {
        return awaitable(py, future);
    }
    let runtime = runtime();
    let mut future = Box::pin(future);
    loop {
        // Other Python threads keep running while this one waits on the network.
        let outcome = gate::detach(py, || {
            runtime.block_on(async {
                tokio::time::timeout(SIGNAL_CHECK_INTERVAL, &mut future)
                    .await
                    .ok()
            })
        });
        match outcome {
            Some(result) => return result?.into_bound_py_any(py),
            // A pending KeyboardInterrupt is raised here; the call's future is dropped,
            // which cancels it as asyncio's cancellation would.
            None => py.check_signals()?,
        }
    }
}

/// The error of a call made while the interpreter exits (from a later `atexit`
/// function): its result could never be handed back.
pub(crate) fn exiting() -> PyErr {
    PyRuntimeError::new_err("the interpreter is exiting: the client takes no more calls")
}

/// An asyncio future of the running loop, resolved with `future`'s result. Cancelling
/// it drops `future`, which cancels the call.
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if gate::is_closed() {
        return Err(exiting());
    }
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let awaitable = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    let (cancel, cancelled) = oneshot::channel();
    awaitable.call_method1(
        pyo3::intern!(py, "add_done_callback"),
        (CancelOnDone(Mutex::new(Some(cancel))),),
    )?;
    let target = Target {
        event_loop: event_loop.unbind(),
        awaitable: awaitable.clone().unbind(),
    };
    runtime().spawn(async move {
        // Only a cancellation ends the call early; the done callback drops its sender
        // without sending for an awaitable resolved otherwise, which must not.
        let cancelled = async move {
            if cancelled.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let outcome = tokio::select! {
            outcome = AssertUnwindSafe(future).catch_unwind() => outcome,
            () = cancelled => return,
        };
        let result = outcome.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("unknown");
            Err(PyRuntimeError::new_err(format!(
                "the client's call panicked: {what}"
            )))
        });
        // Waiting for the interpreter would hold up a worker and every task on it.
        runtime().spawn_blocking(move || target.resolve(result));
    });
    Ok(awaitable)
}

/// Where a result goes: the awaitable and the loop that resolves it.
struct Target {
    event_loop: Py<PyAny>,
    awaitable: Py<PyAny>,
}

impl Target {
    /// Hands `result` to the event loop, which resolves the awaitable with it, unless
    /// the interpreter is exiting: then the result and the references are left to
    /// pyo3's deferred release (never run after the interpreter is gone).
    fn resolve<T>(self, result: PyResult<T>)
    where
        T: for<'a> IntoPyObject<'a>,
    {
        gate::attach(move |py| {
            let awaitable = self.awaitable.bind(py);
            let (method, value) = match result.and_then(|value| value.into_py_any(py)) {
                Ok(value) => (pyo3::intern!(py, "set_result"), value),
                Err(error) => (
                    pyo3::intern!(py, "set_exception"),
                    error.into_value(py).into_any(),
                ),
            };
            let Ok(complete) = awaitable.getattr(method) else {
                return;
            };
            // Fails only when the loop is closed (`asyncio.run` returned while the call
            // was still running): nobody can await the result any more.
            let _ = self.event_loop.bind(py).call_method1(
                pyo3::intern!(py, "call_soon_threadsafe"),
                (Complete, awaitable, complete, value),
            );
        });
    }
}

/// The awaitable's done callback: cancels the call when the awaitable was cancelled.
/// (It and [`Complete`] are made only here, so the module does not export them.)
#[pyclass(frozen, module = "switchboard._native")]
struct CancelOnDone(Mutex<Option<oneshot::Sender<()>>>);

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, awaitable: &Bound<'_, PyAny>) -> PyResult<()> {
        let cancelled = awaitable
            .call_method0(pyo3::intern!(awaitable.py(), "cancelled"))?
            .is_truthy()?;
        let sender = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let (true, Some(sender)) = (cancelled, sender) {
            let _ = sender.send(());
        }
        Ok(())
    }
}

/// Run by the event loop: resolves the awaitable, unless it was cancelled meanwhile.
#[pyclass(frozen, module = "switchboard._native")]
struct Complete;

#[pymethods]
impl Complete {
    fn __call__(
        &self,
        awaitable: &Bound<'_, PyAny>,
        complete: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if awaitable
            .call_method0(pyo3::intern!(awaitable.py(), "cancelled"))?
            .is_truthy()?
        {
            return Ok(());
        }
        complete.call1((value,))?;
        Ok(())
    }
}
