//! The native half of the Python package `switchboard`: a binding of the Rust client.
//!
//! Every call exists once, as a Rust future; [`bridge::run`] hands it to asyncio as an
//! awaitable (the async API) or runs it to completion with the interpreter released
//! (the blocking API). The Python modules of the package give both APIs their shape,
//! their type hints and their exception classes; this crate only moves calls and data
//! across. The runtime's threads enter Python only through [`gate`], which an `atexit`
//! hook closes before the interpreter finalizes.

mod body;
mod bridge;
mod client;
mod errors;
mod feeds;
mod gate;
mod msgpack;
mod subscription;
mod values;

use pyo3::prelude::*;

/// Messages are allocated on Python's thread and freed on the runtime's writer thread;
/// glibc's allocator serialises such cross-thread frees on an arena lock, which cost
/// about a third of a 1 KiB fire-and-forget publish. mimalloc frees them lock-free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(client::connect, module)?)?;
    module.add_class::<client::NativeClient>()?;
    module.add_class::<client::NativePendingAck>()?;
    module.add_class::<subscription::NativeSubscription>()?;
    values::register(module)?;
    msgpack::register(module)?;
    body::register(module)?;
    feeds::register(module)?;
    gate::register(module)?;
    Ok(())
}
