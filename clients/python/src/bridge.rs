//! Runs a call's future for either API: as an asyncio awaitable, or to completion on the
//! module's tokio runtime while the calling thread waits with the interpreter released.

use std::future::Future;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

/// How often a blocking call looks for signals: Ctrl-C must interrupt a script waiting
/// on a subscription, and Python handles signals only while it holds the interpreter.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

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
        return pyo3_async_runtimes::tokio::future_into_py(py, future);
    }
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    let mut future = Box::pin(future);
    loop {
        // Other Python threads keep running while this one waits on the network.
        let outcome = py.detach(|| {
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
