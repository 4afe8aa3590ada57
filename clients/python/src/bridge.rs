//! Runs a call's future for either API: as an asyncio awaitable, or to completion on the
//! module's tokio runtime while the calling thread waits with the interpreter released.

use std::future::Future;

use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

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
    if blocking {
        let runtime = pyo3_async_runtimes::tokio::get_runtime();
        // Other Python threads keep running while this one waits on the network.
        let value = py.detach(|| runtime.block_on(future))?;
        value.into_bound_py_any(py)
    } else {
        pyo3_async_runtimes::tokio::future_into_py(py, future)
    }
}
