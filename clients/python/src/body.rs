//! Large bodies: published from a file or a Python file object, received into a file or
//! as a stream of chunks, in bounded memory whatever their size.
//!
//! Progress callbacks never run on the runtime's threads: the transfer counts its bytes
//! in a [`ProgressCounter`], and the caller's thread reports it every
//! [`PROGRESS_INTERVAL`] and once at the end: the thread that waits in the blocking API,
//! the event loop in the asyncio API (`switchboard._progress.watch`). So a callback runs
//! where Python code of that API normally runs, and one that raises cancels the transfer
//! (its future is dropped) and is raised to the caller.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Future;
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;
use switchboard_client::BodyReader;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Mutex};

/// How often a progress callback is called while a transfer runs.
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// How much of a Python file object is read at a time when publishing it.
const READ_SIZE: usize = 256 * 1024;

/// Reads from a Python file object waiting to be sent: with [`READ_SIZE`], at most
/// about 1 MiB sits between the reading thread and the upload.
const READ_AHEAD: usize = 4;

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ProgressCounter>()?;
    module.add_class::<BodyStream>()?;
    Ok(())
}

/// Bytes a transfer has moved so far, read by whoever reports progress.
#[pyclass(frozen, module = "switchboard._native")]
#[derive(Clone, Default)]
pub(crate) struct ProgressCounter {
    done: Arc<AtomicU64>,
}

#[pymethods]
impl ProgressCounter {
    #[getter]
    fn value(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

impl ProgressCounter {
    pub(crate) fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
    }
}

/// Runs `future` like [`crate::bridge::run`], calling `progress` (when given) with the
/// counter's value from the caller's thread while it runs and once after it succeeded.
pub(crate) fn run_with_progress<'py, F, T>(
    py: Python<'py>,
    blocking: bool,
    future: F,
    counter: ProgressCounter,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let Some(progress) = progress else {
        return crate::bridge::run(py, blocking, future);
    };
    if !blocking {
        let awaitable = crate::bridge::awaitable(py, future)?;
        let watch = py.import("switchboard._progress")?.getattr("watch")?;
        return watch.call1((awaitable, counter, progress));
    }
    let runtime = crate::bridge::runtime();
    let mut future = Box::pin(future);
    let mut reported = None;
    let mut report = |py: Python<'_>| -> PyResult<()> {
        let done = counter.value();
        if reported != Some(done) {
            reported = Some(done);
            progress.call1(py, (done,))?;
        }
        Ok(())
    };
    loop {
        let outcome = crate::gate::detach(py, || {
            runtime.block_on(async {
                tokio::time::timeout(PROGRESS_INTERVAL, &mut future)
                    .await
                    .ok()
            })
        });
        match outcome {
            Some(result) => {
                let value = result?;
                report(py)?;
                return value.into_bound_py_any(py);
            }
            // A callback that raises, or a pending KeyboardInterrupt, ends the call here:
            // dropping the future cancels the transfer.
            None => {
                py.check_signals()?;
                report(py)?;
            }
        }
    }
}

/// An exception of `switchboard.errors` by class name.
fn switchboard_error(class_name: &str, message: String) -> PyErr {
    // Through the gate: this runs on the runtime's threads.
    crate::gate::attach(|py| {
        let class = py
            .import("switchboard.errors")
            .and_then(|module| module.getattr(class_name));
        match class.and_then(|class| class.call1((message.clone(),))) {
            Ok(instance) => PyErr::from_value(instance),
            Err(error) => error,
        }
    })
    .unwrap_or_else(crate::bridge::exiting)
}

/// `BodyError`: a streamed body that could not be received whole.
pub(crate) fn body_error(message: impl Into<String>) -> PyErr {
    switchboard_error("BodyError", message.into())
}

/// A failed read of a streamed body: the body's own failures (broken off, wrong length,
/// wrong digest) as `BodyError`, the file system's as `OSError`.
fn read_error(error: io::Error) -> PyErr {
    match error.kind() {
        io::ErrorKind::InvalidData
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::Other => body_error(format!("receiving the body: {error}")),
        _ => PyErr::from(error),
    }
}

/// A message's body still to be read: the streamed body's reader, or the body the
/// message carried. Taken once, by `save_to`, `body_stream` or `read_body`.
pub(crate) type PendingBody = Arc<Mutex<Option<Source>>>;

pub(crate) enum Source {
    Streamed(BodyReader),
    Memory(Bytes),
}

impl Source {
    async fn chunk(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Source::Streamed(reader) => reader.chunk().await,
            Source::Memory(body) if body.is_empty() => Ok(None),
            Source::Memory(body) => Ok(Some(std::mem::take(body))),
        }
    }
}

/// Takes the body out of `pending`, or says why it cannot.
async fn take(pending: &PendingBody) -> PyResult<Source> {
    pending
        .lock()
        .await
        .take()
        .ok_or_else(|| body_error("the body was already read (a body is read once)"))
}

/// Reads the whole body into memory.
pub(crate) async fn read_all(pending: PendingBody) -> PyResult<Vec<u8>> {
    let mut source = take(&pending).await?;
    let mut body = Vec::new();
    while let Some(part) = source.chunk().await.map_err(read_error)? {
        body.extend_from_slice(&part);
    }
    Ok(body)
}

/// Writes the body to `path` as it arrives; the file is removed if the body fails its
/// checks, if writing fails, or if the call is cancelled.
pub(crate) async fn save(
    pending: PendingBody,
    path: PathBuf,
    counter: ProgressCounter,
) -> PyResult<u64> {
    let source = take(&pending).await?;
    let mut unfinished = RemoveOnDrop(Some(path.clone()));
    let saved = match source {
        Source::Streamed(reader) => reader
            .save_to(&path, |done| counter.set(done))
            .await
            .map_err(read_error)?,
        Source::Memory(body) => {
            let mut file = tokio::fs::File::create(&path).await?;
            file.write_all(&body).await?;
            file.sync_all().await?;
            counter.set(body.len() as u64);
            body.len() as u64
        }
    };
    unfinished.0 = None;
    Ok(saved)
}

/// Removes a file left unfinished by a save that did not complete.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if std::fs::metadata(&path).is_ok_and(|meta| meta.is_file()) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A body's chunks as they arrive: `for chunk in stream` (blocking API) or
/// `async for chunk in stream` (asyncio). The length and the SHA-256 digest are checked
/// when the last chunk arrived; a failure raises `BodyError` instead of ending.
#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct BodyStream {
    pending: PendingBody,
    /// The source, once taken from the message by the first read.
    source: Arc<Mutex<Option<Source>>>,
    blocking: bool,
}

impl BodyStream {
    pub(crate) fn new(pending: PendingBody, blocking: bool) -> BodyStream {
        BodyStream {
            pending,
            source: Arc::new(Mutex::new(None)),
            blocking,
        }
    }

    /// The next chunk, or None at the (verified) end.
    fn next_chunk(&self) -> impl Future<Output = PyResult<Option<Bytes>>> + Send + 'static {
        let pending = Arc::clone(&self.pending);
        let source = Arc::clone(&self.source);
        async move {
            let mut source = source.lock().await;
            if source.is_none() {
                *source = Some(take(&pending).await?);
            }
            let Some(reading) = source.as_mut() else {
                return Ok(None);
            };
            reading.chunk().await.map_err(read_error)
        }
    }
}

/// A chunk handed to Python.
struct Chunk(Bytes);

impl<'py> IntoPyObject<'py> for Chunk {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}

#[pymethods]
impl BodyStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyResult<PyRef<'_, Self>> {
        if !slf.blocking {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "a body stream of the asyncio API is read with `async for`",
            ));
        }
        Ok(slf)
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let next = self.next_chunk();
        let chunk = crate::bridge::run(py, true, async move { Ok(next.await?.map(Chunk)) })?;
        Ok(if chunk.is_none() { None } else { Some(chunk) })
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyResult<PyRef<'_, Self>> {
        if slf.blocking {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "a body stream of the blocking API is read with `for`",
            ));
        }
        Ok(slf)
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let next = self.next_chunk();
        crate::bridge::awaitable(py, async move {
            match next.await? {
                Some(chunk) => Ok(Chunk(chunk)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }
}

/// A Python file object's bytes as a stream for the upload, read on a blocking thread in
/// parts of [`READ_SIZE`]. The Python exception that ended the reading, if any, is kept
/// in the returned slot so that the caller raises it rather than the upload's error.
pub(crate) fn python_reader(
    source: Py<PyAny>,
) -> (
    impl tokio::io::AsyncRead + Send + Unpin + 'static,
    Arc<StdMutex<Option<PyErr>>>,
) {
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    let failure = Arc::new(StdMutex::new(None));
    let failed = Arc::clone(&failure);
    // The thread ends at the end of the file, on a failure, when the upload drops the
    // receiver (finished or cancelled), or when the interpreter exits (the gate).
    tokio::task::spawn_blocking(move || loop {
        let part = crate::gate::attach(|py| -> PyResult<Vec<u8>> {
            let data = source.call_method1(py, "read", (READ_SIZE,))?;
            data.extract::<Vec<u8>>(py).map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(
                    "the source's read() must return bytes (open the file in binary mode)",
                )
            })
        })
        .unwrap_or_else(|| Err(crate::bridge::exiting()));
        let item = match part {
            Ok(part) if part.is_empty() => return,
            Ok(part) => Ok(Bytes::from(part)),
            Err(error) => {
                let message = error.to_string();
                if let Ok(mut slot) = failed.lock() {
                    *slot = Some(error);
                }
                Err(io::Error::other(message))
            }
        };
        let stop = item.is_err();
        if sender.blocking_send(item).is_err() || stop {
            return;
        }
    });
    let parts = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    (tokio_util::io::StreamReader::new(Box::pin(parts)), failure)
}
