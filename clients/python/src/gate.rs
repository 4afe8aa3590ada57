//! Keeps threads the interpreter does not run (the runtime's) out of Python once the
//! interpreter begins to exit, so that a program using the client always exits cleanly.
//!
//! Why a gate: CPython finalizes while other threads still run. A thread that attaches
//! after finalization began, or that is attached and takes the interpreter back after
//! releasing it (any Python call doing I/O does: `call_soon_threadsafe` writes to the
//! event loop's self-pipe), is ended by CPython with `pthread_exit` in the middle of the
//! binding's frames. Their unwinding then drops Python objects and releases a thread
//! state while the main thread finalizes: a segfault, or the fatal error
//! "PyGILState_Release: thread state must be current when releasing". Checking
//! `Py_IsFinalizing` first cannot help: finalization can begin between the check and
//! the attach, and it does not help a thread already inside.
//!
//! So every entry into Python from a thread the binding runs goes through [`attach`],
//! which enters only while the gate is open and counts the thread in until it has let
//! go of the interpreter again. The package's `atexit` hook calls [`close`]: `atexit`
//! functions run before finalization begins, while other threads can still take the
//! interpreter. `close` shuts the gate and, with the interpreter released, waits for
//! the threads inside to leave. Both happen under one mutex, so once `close` returned
//! no such thread is inside Python and none can enter: that holds by construction,
//! not by timing. What such a thread would have done is dropped instead (an awaitable
//! is left unresolved: its event loop is gone; Python objects it holds are leaked
//! rather than released after finalization).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How long [`close`] waits for the threads inside to leave. Every entry of the
/// binding's own is short (building an exception, handing a result to the event loop);
/// only a Python file object's `read()` being published (see [`crate::body`]) can stay
/// inside for long, and an exit must not hang on it.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

struct State {
    /// The thread that closed the gate: the one running the `atexit` functions, and
    /// then finalization. It may still enter (a later `atexit` function may use the
    /// client): it is the interpreter's own thread, never ended by finalization.
    closed_by: Option<ThreadId>,
    /// Threads inside Python through the gate, or about to take the interpreter back.
    inside: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    closed_by: None,
    inside: 0,
});
static LEFT: Condvar = Condvar::new();
/// Set once with `closed_by`: lets [`is_closed`] answer without the lock.
static CLOSED: AtomicBool = AtomicBool::new(false);

fn state() -> MutexGuard<'static, State> {
    // The state is two plain values, consistent at every unlock: a panic elsewhere
    // while holding the lock cannot have left it half-changed.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread counted inside; leaving (dropping it) counts it out.
struct Inside(());

impl Inside {
    /// Counts this thread in, unless the gate is closed to it.
    fn enter() -> Option<Inside> {
        let mut state = state();
        if let Some(closer) = state.closed_by {
            if closer != thread::current().id() {
                return None;
            }
        }
        state.inside += 1;
        Some(Inside(()))
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let mut state = state();
        state.inside -= 1;
        if state.inside == 0 {
            LEFT.notify_all();
        }
    }
}

/// Whether the gate is closed: the runtime's threads no longer enter Python, so an
/// awaitable made now would never be resolved.
pub(crate) fn is_closed() -> bool {
    CLOSED.load(Ordering::Acquire)
}

/// Runs `f` attached to the interpreter, or returns None without touching Python once
/// the interpreter is exiting. For any thread not attached already: the runtime's, or
/// a Python thread running a call's future with the interpreter released.
pub(crate) fn attach<F, R>(f: F) -> Option<R>
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    let inside = Inside::enter()?;
    let result = Python::attach(f);
    // Counted out only now that `Python::attach` has let go of the interpreter.
    drop(inside);
    Some(result)
}

/// Runs `f` with the interpreter released (a blocking call's wait), then takes it back,
/// unless the interpreter is exiting: a thread of the program still waiting then (a
/// daemon thread) would be ended in the middle of the binding's frames when it takes
/// the interpreter back, so it is parked for good instead, as CPython itself does from
/// 3.14 on. The process exits without it.
pub(crate) fn detach<F, R>(py: Python<'_>, f: F) -> R
where
    F: Send + FnOnce() -> R,
    R: Send,
{
    let (result, inside) = py.detach(|| {
        let result = f();
        match Inside::enter() {
            Some(inside) => (result, inside),
            None => loop {
                thread::park();
            },
        }
    });
    drop(inside);
    result
}

/// Shuts the gate and waits (a bounded time, see [`CLOSE_WAIT`]) for the threads inside
/// to leave: the package's `atexit` hook, run before finalization begins.
#[pyfunction]
pub(crate) fn close(py: Python<'_>) {
    state().closed_by = Some(thread::current().id());
    CLOSED.store(true, Ordering::Release);
    // The threads inside may be waiting for the interpreter this thread holds.
    py.detach(|| {
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut state = state();
        while state.inside > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = LEFT
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    });
}

/// Registers [`close`] with `atexit` when the module is loaded: `atexit` runs its
/// functions last registered first, so this one runs after those the program
/// registered later, which may still use the client.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    // Registered only, not exported: a program calling it would cut off its awaitables.
    let close = wrap_pyfunction!(close, module)?;
    module
        .py()
        .import("atexit")?
        .call_method1("register", (close,))?;
    Ok(())
}
