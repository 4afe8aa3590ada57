//! The values calls return to Python: immutable classes copied out of the Rust client's
//! types, so that nothing in Python holds on to the connection.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use switchboard_client::{
    ChannelInfo, ChannelOptions, ClientInfo, Durability, Identity, PublishAck, ReceivedMessage,
    Scope, SlowConsumerPolicy,
};

use crate::body::{self, BodyStream, PendingBody, ProgressCounter, Source};
use crate::bridge::run;
use crate::errors;

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Message>()?;
    module.add_class::<Ack>()?;
    module.add_class::<Channel>()?;
    module.add_class::<ClientEntry>()?;
    module.add_class::<IdentityInfo>()?;
    Ok(())
}

/// A message from a channel, a group or a hashtag. A body the server streams (larger
/// than its frame limit) is not read until asked for (see [`crate::body`]).
#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct Message {
    #[pyo3(get)]
    id: String,
    #[pyo3(get)]
    seq: u64,
    #[pyo3(get)]
    channel: String,
    #[pyo3(get)]
    scope: &'static str,
    #[pyo3(get)]
    time_us: u64,
    #[pyo3(get)]
    sender_id: u64,
    #[pyo3(get)]
    sender_name: String,
    #[pyo3(get)]
    content_type: String,
    #[pyo3(get)]
    headers: Vec<(String, String)>,
    #[pyo3(get)]
    is_replay: bool,
    body: bytes::Bytes,
    #[pyo3(get)]
    body_len: u64,
    #[pyo3(get)]
    is_streamed: bool,
    pending: PendingBody,
    blocking: bool,
}

#[pymethods]
impl Message {
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.whole_body()?))
    }

    #[getter]
    fn time(&self) -> f64 {
        self.time_us as f64 / 1_000_000.0
    }

    /// The body as text, or None when it is not valid UTF-8.
    fn text(&self) -> PyResult<Option<&str>> {
        Ok(std::str::from_utf8(self.whole_body()?).ok())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn __repr__(&self) -> String {
        format!(
            "Message(channel={:?}, seq={}, sender_name={:?}, content_type={:?}, body_len={})",
            self.channel, self.seq, self.sender_name, self.content_type, self.body_len
        )
    }

    // -- payloads: typed values and large bodies --

    /// The body as `target` (a dataclass, a pydantic model, dict, list, ...), read as
    /// MessagePack or JSON according to the content type.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        target: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let body = PyBytes::new(py, self.whole_body()?);
        py.import("switchboard._payload")?
            .getattr("decode")?
            .call1((&self.content_type, body, target))
    }

    /// The body's plain data (dicts, lists, ...), read as MessagePack or JSON according
    /// to the content type.
    fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let body = PyBytes::new(py, self.whole_body()?);
        py.import("switchboard._payload")?
            .getattr("parse")?
            .call1((&self.content_type, body))
    }

    /// The body parsed as JSON, whatever the content type.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let body = PyBytes::new(py, self.whole_body()?);
        py.import("switchboard._payload")?
            .getattr("parse_json")?
            .call1((body,))
    }

    /// Reads the whole body into memory (a streamed one as it arrives, checked).
    fn read_body<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pending = std::sync::Arc::clone(&self.pending);
        run(py, self.blocking, async move {
            let body = body::read_all(pending).await?;
            // Through the gate: this runs on the runtime's threads.
            crate::gate::attach(|py| PyBytes::new(py, &body).unbind())
                .ok_or_else(crate::bridge::exiting)
        })
    }

    /// Writes the body to the file at `path` as it arrives and returns its length; the
    /// length and SHA-256 digest of a streamed body are checked, and the file removed
    /// when they do not match (or anything else fails).
    #[pyo3(signature = (path, progress=None))]
    fn save_to<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pending = std::sync::Arc::clone(&self.pending);
        let counter = ProgressCounter::default();
        let future = body::save(pending, path, counter.clone());
        body::run_with_progress(py, self.blocking, future, counter, progress)
    }

    /// The body's chunks as they arrive: `for` (blocking API) or `async for` (asyncio).
    fn body_stream(&self) -> BodyStream {
        BodyStream::new(std::sync::Arc::clone(&self.pending), self.blocking)
    }
}

impl Message {
    /// Copies `message` out. A streamed body stays where it is, to be read when asked
    /// for (see [`crate::body`]); `blocking` says which API those reads serve.
    pub(crate) fn read(mut message: ReceivedMessage, blocking: bool) -> PyResult<Message> {
        let body = message.body().clone();
        let is_streamed = message.is_streamed();
        let body_len = message.body_len();
        let source = if is_streamed {
            let reader = message
                .take_body_reader()
                .ok_or_else(|| errors::internal("the message's body was already taken"))?;
            Source::Streamed(reader)
        } else {
            Source::Memory(body.clone())
        };
        Ok(Message {
            id: message.id().to_string(),
            seq: message.seq(),
            channel: message.channel().to_owned(),
            scope: scope_name(message.scope()),
            time_us: message.time_us(),
            sender_id: message.sender_id(),
            sender_name: message.sender_name().to_owned(),
            content_type: message.content_type().to_owned(),
            headers: message
                .headers()
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            is_replay: message.is_replay(),
            body,
            body_len,
            is_streamed,
            pending: std::sync::Arc::new(tokio::sync::Mutex::new(Some(source))),
            blocking,
        })
    }

    pub(crate) fn read_all(
        messages: Vec<ReceivedMessage>,
        blocking: bool,
    ) -> PyResult<Vec<Message>> {
        messages
            .into_iter()
            .map(|message| Message::read(message, blocking))
            .collect()
    }

    /// The body in memory; a streamed body is not (see `save_to`, `body_stream`).
    fn whole_body(&self) -> PyResult<&[u8]> {
        if self.is_streamed {
            return Err(body::body_error(format!(
                "this message's body ({} bytes) is streamed, not held in memory: \
                 use save_to(path), body_stream() or read_body()",
                self.body_len
            )));
        }
        Ok(&self.body)
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Channel => "channel",
        Scope::Group => "group",
        Scope::Tag => "tag",
    }
}

/// The server's acknowledgement of a published message.
#[pyclass(frozen, get_all, module = "switchboard._native")]
pub(crate) struct Ack {
    id: String,
    seq: u64,
}

#[pymethods]
impl Ack {
    fn __repr__(&self) -> String {
        format!("Ack(id={:?}, seq={})", self.id, self.seq)
    }
}

impl From<PublishAck> for Ack {
    fn from(ack: PublishAck) -> Ack {
        Ack {
            id: ack.id.to_string(),
            seq: ack.seq,
        }
    }
}

/// A channel and its options, as the server reports them.
#[pyclass(frozen, get_all, module = "switchboard._native")]
pub(crate) struct Channel {
    name: String,
    message_count: u64,
    first_seq: u64,
    last_seq: u64,
    bytes: u64,
    history: Option<u64>,
    max_bytes: Option<u64>,
    max_chars: Option<u64>,
    max_age_ms: Option<u64>,
    max_total_bytes: Option<u64>,
    slow_consumer: Option<&'static str>,
    durability: Option<&'static str>,
}

#[pymethods]
impl Channel {
    fn __repr__(&self) -> String {
        format!(
            "Channel(name={:?}, message_count={}, last_seq={})",
            self.name, self.message_count, self.last_seq
        )
    }
}

impl From<ChannelInfo> for Channel {
    fn from(info: ChannelInfo) -> Channel {
        let options = info.options;
        Channel {
            name: info.name.to_string(),
            message_count: info.message_count,
            first_seq: info.first_seq,
            last_seq: info.last_seq,
            bytes: info.bytes,
            history: options.history,
            max_bytes: options.max_bytes,
            max_chars: options.max_chars,
            max_age_ms: options.max_age_ms,
            max_total_bytes: options.max_total_bytes,
            slow_consumer: options.slow_consumer.map(|policy| match policy {
                SlowConsumerPolicy::Disconnect => "disconnect",
                SlowConsumerPolicy::DropOldest => "drop_oldest",
            }),
            durability: options.durability.map(|durability| match durability {
                Durability::Memory => "memory",
                Durability::Never => "never",
                Durability::Interval => "interval",
                Durability::Always => "always",
            }),
        }
    }
}

/// Reads channel options given by name from Python.
#[allow(clippy::too_many_arguments)]
pub(crate) fn channel_options(
    history: Option<u64>,
    max_bytes: Option<u64>,
    max_chars: Option<u64>,
    max_age_ms: Option<u64>,
    max_total_bytes: Option<u64>,
    slow_consumer: Option<&str>,
    durability: Option<&str>,
) -> PyResult<ChannelOptions> {
    let slow_consumer = match slow_consumer {
        None => None,
        Some("disconnect") => Some(SlowConsumerPolicy::Disconnect),
        Some("drop_oldest") => Some(SlowConsumerPolicy::DropOldest),
        Some(other) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "slow_consumer must be \"disconnect\" or \"drop_oldest\", not {other:?}"
            )));
        }
    };
    let durability = match durability {
        None => None,
        Some("memory") => Some(Durability::Memory),
        Some("never") => Some(Durability::Never),
        Some("interval") => Some(Durability::Interval),
        Some("always") => Some(Durability::Always),
        Some(other) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "durability must be \"memory\", \"never\", \"interval\" or \"always\", not {other:?}"
            )));
        }
    };
    Ok(ChannelOptions {
        history,
        max_bytes,
        max_chars,
        max_age_ms,
        max_total_bytes,
        slow_consumer,
        durability,
    })
}

/// A client connected to the hub.
#[pyclass(frozen, get_all, name = "ClientInfo", module = "switchboard._native")]
pub(crate) struct ClientEntry {
    client_id: u64,
    name: String,
    connected_since_us: u64,
}

#[pymethods]
impl ClientEntry {
    fn __repr__(&self) -> String {
        format!(
            "ClientInfo(client_id={}, name={:?})",
            self.client_id, self.name
        )
    }
}

impl From<ClientInfo> for ClientEntry {
    fn from(info: ClientInfo) -> ClientEntry {
        ClientEntry {
            client_id: info.client_id,
            name: info.name.to_string(),
            connected_since_us: info.connected_since_us,
        }
    }
}

/// Who this session is, as the server sees it.
#[pyclass(frozen, get_all, name = "Identity", module = "switchboard._native")]
pub(crate) struct IdentityInfo {
    client_id: u64,
    name: String,
    session_id: String,
    connected_since_us: u64,
}

#[pymethods]
impl IdentityInfo {
    fn __repr__(&self) -> String {
        format!(
            "Identity(client_id={}, name={:?})",
            self.client_id, self.name
        )
    }
}

impl From<Identity> for IdentityInfo {
    fn from(identity: Identity) -> IdentityInfo {
        IdentityInfo {
            client_id: identity.client_id,
            name: identity.name.to_string(),
            session_id: identity.session_id.to_string(),
            connected_since_us: identity.connected_since_us,
        }
    }
}
