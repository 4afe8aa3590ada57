//! `NativeClient`: one connected Rust client, its calls exposed to Python for either API
//! (the `blocking` flag, fixed at connect time, says which; see [`crate::bridge`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use switchboard_client::{
    Client, ClientConfig, Payload, PendingAck, ReceivedMessage, Replay, Since, TlsOptions,
    TryNoReply,
};
use tokio::sync::Mutex;

use crate::body::{self, ProgressCounter};
use crate::bridge::run;
use crate::errors;
use crate::feeds::{Group, Member, NativeDirectFeed, NativeGroupFeed, Relayed};
use crate::subscription::NativeSubscription;
use crate::values::{self, Ack, Channel, ClientEntry, IdentityInfo, Message};

/// Connects and opens a session; the Python `connect` and `Client` give it its shape.
#[pyfunction]
#[pyo3(signature = (
    server, name, *, blocking, user=None, password=None, token=None, tls=false,
    ca_file=None, cert_file=None, key_file=None, server_name=None, request_timeout=None,
    jwt=None, hmac_key=None,
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect<'py>(
    py: Python<'py>,
    server: String,
    name: String,
    blocking: bool,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    tls: bool,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    server_name: Option<String>,
    request_timeout: Option<f64>,
    jwt: Option<String>,
    hmac_key: Option<Vec<u8>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut config = ClientConfig::new(server, name);
    match (user, password) {
        (Some(user), Some(password)) => config = config.with_password(user, password.into_bytes()),
        (None, None) => {}
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "user and password go together",
            ));
        }
    }
    if let Some(token) = token {
        config = config.with_token(token.into_bytes());
    }
    if let Some(jwt) = jwt {
        config = config.with_jwt(jwt.into_bytes());
    }
    if let Some(key) = hmac_key {
        config = config.with_hmac_key(key);
    }
    if let Some(seconds) = request_timeout {
        let timeout = Duration::try_from_secs_f64(seconds).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err("request_timeout must be a positive number")
        })?;
        config = config.with_request_timeout(timeout);
    }
    let wants_tls = tls || ca_file.is_some() || cert_file.is_some() || server_name.is_some();
    if wants_tls {
        let mut options = TlsOptions::new();
        if let Some(ca_file) = ca_file {
            options = options.with_ca_file(ca_file);
        }
        if let Some(server_name) = server_name {
            options = options.with_server_name(server_name);
        }
        match (cert_file, key_file) {
            (Some(cert), Some(key)) => options = options.with_client_certificate(cert, key),
            (None, None) => {}
            _ => {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "cert_file and key_file go together",
                ));
            }
        }
        config = config.with_tls(options);
    }
    run(py, blocking, async move {
        let server = config.server().to_owned();
        let client = Client::connect(config)
            .await
            .map_err(|error| errors::connecting(error, &server))?;
        Ok(NativeClient { client, blocking })
    })
}

#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct NativeClient {
    client: Client,
    #[pyo3(get)]
    blocking: bool,
}

/// A payload of `body` with its content type and headers. The fast path passes a body
/// Python lends for the call, copied once into `Bytes`; the others pass an owned `Vec`.
fn payload(
    body: impl Into<bytes::Bytes>,
    content_type: impl Into<switchboard_client::Text>,
    headers: Vec<(String, String)>,
) -> Payload {
    headers.into_iter().fold(
        Payload::with_content_type(content_type, body),
        |payload, (name, value)| payload.with_header(name, value),
    )
}

fn replay(kind: &str, value: u64) -> PyResult<Replay> {
    match kind {
        "none" => Ok(Replay::None),
        "last" => Ok(Replay::Last(value)),
        "since_seq" => Ok(Replay::SinceSeq(value)),
        "since_time" => Ok(Replay::SinceTime(value)),
        // Every sequence number is at or above zero.
        "all" => Ok(Replay::SinceSeq(0)),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "unknown replay kind {other:?}"
        ))),
    }
}

#[pymethods]
impl NativeClient {
    #[getter]
    fn client_id(&self) -> u64 {
        self.client.session().client_id
    }

    #[getter]
    fn name(&self) -> String {
        self.client.session().name.to_string()
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn publish<'py>(
        &self,
        py: Python<'py>,
        channel: String,
        body: Vec<u8>,
        content_type: String,
        headers: Vec<(String, String)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let ack = client
                .publish(&channel, payload(body, content_type, headers))
                .await
                .map_err(errors::to_py)?;
            Ok(Ack::from(ack))
        })
    }

    fn publish_pipelined<'py>(
        &self,
        py: Python<'py>,
        channel: String,
        body: Vec<u8>,
        content_type: String,
        headers: Vec<(String, String)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        let blocking = self.blocking;
        run(py, blocking, async move {
            let pending = client
                .publish(&channel, payload(body, content_type, headers))
                .pipelined()
                .await
                .map_err(errors::to_py)?;
            Ok(NativePendingAck {
                pending: Arc::new(Mutex::new(Some(pending))),
                blocking,
            })
        })
    }

    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client.flush().await.map_err(errors::to_py)
        })
    }

    fn subscribe<'py>(
        &self,
        py: Python<'py>,
        patterns: Vec<String>,
        replay_kind: String,
        replay_value: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let replay = replay(&replay_kind, replay_value)?;
        let Some((first, more)) = patterns.split_first() else {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "subscribe needs at least one pattern",
            ));
        };
        let (first, more) = (first.clone(), more.to_vec());
        let client = self.client.clone();
        let blocking = self.blocking;
        run(py, blocking, async move {
            let builder = more
                .iter()
                .fold(client.subscribe(&first, replay), |builder, pattern| {
                    builder.pattern(pattern)
                });
            let subscription = builder.await.map_err(errors::to_py)?;
            Ok(NativeSubscription::new(subscription, blocking))
        })
    }

    #[pyo3(signature = (channel, id=None))]
    fn get_message<'py>(
        &self,
        py: Python<'py>,
        channel: String,
        id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = id
            .map(|id| uuid::Uuid::parse_str(&id))
            .transpose()
            .map_err(|error| {
                pyo3::exceptions::PyValueError::new_err(format!("not a message id: {error}"))
            })?;
        let client = self.client.clone();
        let blocking = self.blocking;
        run(py, blocking, async move {
            match client
                .get_message(&channel, id)
                .await
                .map_err(errors::to_py)?
            {
                Some(message) => Ok(Some(Message::read(message, blocking)?)),
                None => Ok(None),
            }
        })
    }

    #[pyo3(signature = (channel, since_kind, since_value, limit=None))]
    fn get_messages<'py>(
        &self,
        py: Python<'py>,
        channel: String,
        since_kind: &str,
        since_value: u64,
        limit: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let since = since(since_kind, since_value)?;
        let client = self.client.clone();
        self.read_messages(py, async move {
            client.get_messages(&channel, since, limit).await
        })
    }

    fn list_channels<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let channels = client.list_channels().await.map_err(errors::to_py)?;
            Ok(channels.into_iter().map(Channel::from).collect::<Vec<_>>())
        })
    }

    #[pyo3(signature = (
        name, *, history=None, max_bytes=None, max_chars=None, max_age_ms=None,
        max_total_bytes=None, slow_consumer=None, durability=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn create_channel<'py>(
        &self,
        py: Python<'py>,
        name: String,
        history: Option<u64>,
        max_bytes: Option<u64>,
        max_chars: Option<u64>,
        max_age_ms: Option<u64>,
        max_total_bytes: Option<u64>,
        slow_consumer: Option<&str>,
        durability: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = values::channel_options(
            history,
            max_bytes,
            max_chars,
            max_age_ms,
            max_total_bytes,
            slow_consumer,
            durability,
        )?;
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let info = client
                .create_channel(&name, options)
                .await
                .map_err(errors::to_py)?;
            Ok(Channel::from(info))
        })
    }

    fn delete_channel<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client.delete_channel(&name).await.map_err(errors::to_py)
        })
    }

    fn identity<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let identity = client.identity().await.map_err(errors::to_py)?;
            Ok(IdentityInfo::from(identity))
        })
    }

    fn list_clients<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let clients = client.list_clients().await.map_err(errors::to_py)?;
            Ok(clients
                .into_iter()
                .map(ClientEntry::from)
                .collect::<Vec<_>>())
        })
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let reply = client.stats().await.map_err(errors::to_py)?;
            Ok(reply
                .stats
                .into_iter()
                .map(|stat| (stat.name.to_string(), stat.value))
                .collect::<HashMap<_, _>>())
        })
    }

    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client.close().await.map_err(errors::to_py)
        })
    }

    // -- payloads: large bodies --

    /// Publishes `length` bytes read from `source` (a path, opened here, or a Python
    /// binary file object) as a streamed body, in bounded memory; see [`crate::body`]
    /// for `progress`.
    #[pyo3(signature = (channel, source, length, content_type, headers, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_file<'py>(
        &self,
        py: Python<'py>,
        channel: String,
        source: Py<PyAny>,
        length: Option<u64>,
        content_type: String,
        headers: Vec<(String, String)>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path: Option<std::path::PathBuf> = source.extract(py).ok();
        let client = self.client.clone();
        let counter = ProgressCounter::default();
        let sent = counter.clone();
        let future = async move {
            let payload = payload(Vec::new(), content_type, headers);
            let (reader, len, failure): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, u64, _) =
                match path {
                    Some(path) => {
                        let file = tokio::fs::File::open(&path).await?;
                        let len = file.metadata().await?.len();
                        (Box::new(file), length.unwrap_or(len), None)
                    }
                    None => {
                        let len = length.ok_or_else(|| {
                            pyo3::exceptions::PyValueError::new_err(
                                "the length of a file object is needed",
                            )
                        })?;
                        let (reader, failure) = body::python_reader(source);
                        (Box::new(reader), len, Some(failure))
                    }
                };
            let progress = sent.clone();
            let published = client
                .publish(&channel, payload)
                .stream_from(reader, len)
                .progress(move |done| progress.set(done))
                .await;
            match published {
                Ok(ack) => {
                    sent.set(len);
                    Ok(Ack::from(ack))
                }
                Err(error) => {
                    // The source's own exception says more than the upload's.
                    let raised = failure.and_then(|slot| slot.lock().ok()?.take());
                    Err(raised.unwrap_or_else(|| errors::to_py(error)))
                }
            }
        };
        body::run_with_progress(py, self.blocking, future, counter, progress)
    }

    // Groups, relay and direct messages, hashtag history, the admin calls.

    fn list_groups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let groups = client.list_groups().await.map_err(errors::to_py)?;
            Ok(groups.into_iter().map(Group::from).collect::<Vec<_>>())
        })
    }

    fn create_group<'py>(
        &self,
        py: Python<'py>,
        name: String,
        description: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client
                .create_group(&name, &description)
                .await
                .map_err(errors::to_py)
        })
    }

    fn join_group<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client.join_group(&name).await.map_err(errors::to_py)
        })
    }

    fn leave_group<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client.leave_group(&name).await.map_err(errors::to_py)
        })
    }

    fn delete_group<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client.delete_group(&name).await.map_err(errors::to_py)
        })
    }

    fn group_members<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let members = client.group_members(&name).await.map_err(errors::to_py)?;
            Ok(members.into_iter().map(Member::from).collect::<Vec<_>>())
        })
    }

    fn post<'py>(
        &self,
        py: Python<'py>,
        group: String,
        body: Vec<u8>,
        content_type: String,
        headers: Vec<(String, String)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let ack = client
                .post(&group, payload(body, content_type, headers))
                .await
                .map_err(errors::to_py)?;
            Ok(Ack::from(ack))
        })
    }

    #[pyo3(signature = (group, since_kind, since_value, limit=None))]
    fn group_messages<'py>(
        &self,
        py: Python<'py>,
        group: String,
        since_kind: &str,
        since_value: u64,
        limit: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let since = since(since_kind, since_value)?;
        let client = self.client.clone();
        self.read_messages(py, async move {
            client.group_messages(&group, since, limit).await
        })
    }

    fn group_feed(&self) -> PyResult<NativeGroupFeed> {
        let feed = self.client.group_feed().map_err(errors::to_py)?;
        Ok(NativeGroupFeed::new(feed, self.blocking))
    }

    fn relay<'py>(
        &self,
        py: Python<'py>,
        receivers: Vec<u64>,
        body: Vec<u8>,
        content_type: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            let outcomes = client
                .relay(&receivers, body, &content_type)
                .await
                .map_err(errors::to_py)?;
            Ok(outcomes.into_iter().map(Relayed::from).collect::<Vec<_>>())
        })
    }

    fn direct_feed(&self) -> PyResult<NativeDirectFeed> {
        let feed = self.client.direct_feed().map_err(errors::to_py)?;
        Ok(NativeDirectFeed::new(feed, self.blocking))
    }

    #[pyo3(signature = (tag, since_kind, since_value, limit=None))]
    fn tag_messages<'py>(
        &self,
        py: Python<'py>,
        tag: String,
        since_kind: &str,
        since_value: u64,
        limit: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let since = since(since_kind, since_value)?;
        let client = self.client.clone();
        self.read_messages(
            py,
            async move { client.tag_messages(&tag, since, limit).await },
        )
    }

    fn stop_server<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client.stop_server().await.map_err(errors::to_py)
        })
    }

    fn reload_server<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        run(py, self.blocking, async move {
            client.reload_server().await.map_err(errors::to_py)
        })
    }

    // ----- fast paths: no future per message -----

    /// Queues a publish without reply at once, without a future, when the send queue
    /// has room, and returns None. When the queue is full, the async API gets an
    /// awaitable that queues it once there is room (backpressure), and the blocking API
    /// waits for room here with the interpreter released, then returns None.
    fn try_publish_no_reply<'py>(
        &self,
        py: Python<'py>,
        channel: &str,
        body: &[u8],
        content_type: &str,
        headers: Vec<(String, String)>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let body = payload(bytes::Bytes::copy_from_slice(body), content_type, headers);
        let attempt = self
            .client
            .publish(channel, body)
            .try_no_reply()
            .map_err(errors::to_py)?;
        match attempt {
            TryNoReply::Queued => Ok(None),
            TryNoReply::Full(wait) => {
                let waited = run(py, self.blocking, async move {
                    wait.send().await.map_err(errors::to_py)
                })?;
                Ok((!self.blocking).then_some(waited))
            }
        }
    }
}

/// The ack of a pipelined publish, awaited (or waited for) once.
#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct NativePendingAck {
    // A tokio mutex: the ack is awaited while held, by at most one caller at a time.
    pending: Arc<Mutex<Option<PendingAck>>>,
    blocking: bool,
}

#[pymethods]
impl NativePendingAck {
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pending = Arc::clone(&self.pending);
        run(py, self.blocking, async move {
            let taken = pending.lock().await.take();
            let pending = taken.ok_or_else(|| errors::internal("this ack was already awaited"))?;
            let ack = pending.await.map_err(errors::to_py)?;
            Ok(Ack::from(ack))
        })
    }
}

impl NativeClient {
    /// Runs a fetch of a message list (a channel's, a group's or a hashtag's history) and
    /// hands its messages to Python.
    fn read_messages<'py, F>(&self, py: Python<'py>, fetch: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = switchboard_client::Result<Vec<ReceivedMessage>>> + Send + 'static,
    {
        let blocking = self.blocking;
        run(py, blocking, async move {
            let messages = fetch.await.map_err(errors::to_py)?;
            Message::read_all(messages, blocking)
        })
    }
}

fn since(kind: &str, value: u64) -> PyResult<Since> {
    match kind {
        "all" => Ok(Since::All),
        "seq" => Ok(Since::Seq(value)),
        "time" => Ok(Since::Time(value)),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "unknown since kind {other:?}"
        ))),
    }
}
