//! Groups and direct messages: the directory's values, relay outcomes, and the two feeds
//! of pushes (posts and member events of joined groups; bodies relayed to this client),
//! each read one `next` call at a time like a subscription.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;
use switchboard_client::{
    DirectFeed, Event, EventKind, GroupFeed, GroupInfo, GroupItem, MemberInfo, ReceivedDirect,
    RelayOutcome, RelayStatus,
};
use tokio::sync::{watch, Mutex};

use crate::bridge::run;
use crate::values::Message;

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Group>()?;
    module.add_class::<Member>()?;
    module.add_class::<Relayed>()?;
    module.add_class::<DirectMessage>()?;
    module.add_class::<GroupEvent>()?;
    module.add_class::<NativeGroupFeed>()?;
    module.add_class::<NativeDirectFeed>()?;
    Ok(())
}

/// A group of the directory.
#[pyclass(frozen, get_all, module = "switchboard._native")]
pub(crate) struct Group {
    name: String,
    description: String,
    member_count: u64,
}

#[pymethods]
impl Group {
    fn __repr__(&self) -> String {
        format!(
            "Group(name={:?}, member_count={})",
            self.name, self.member_count
        )
    }
}

impl From<GroupInfo> for Group {
    fn from(info: GroupInfo) -> Group {
        Group {
            name: info.name.to_string(),
            description: info.description.to_string(),
            member_count: info.member_count,
        }
    }
}

/// A member of a group, and whether a session with its name is connected.
#[pyclass(frozen, get_all, module = "switchboard._native")]
pub(crate) struct Member {
    name: String,
    online: bool,
}

#[pymethods]
impl Member {
    fn __repr__(&self) -> String {
        let online = if self.online { "True" } else { "False" };
        format!("Member(name={:?}, online={online})", self.name)
    }
}

impl From<MemberInfo> for Member {
    fn from(info: MemberInfo) -> Member {
        Member {
            name: info.name.to_string(),
            online: info.online,
        }
    }
}

/// What became of a relayed body for one receiver.
#[pyclass(frozen, get_all, name = "RelayOutcome", module = "switchboard._native")]
pub(crate) struct Relayed {
    client_id: u64,
    status: &'static str,
}

#[pymethods]
impl Relayed {
    #[getter]
    fn delivered(&self) -> bool {
        self.status == "delivered"
    }

    fn __repr__(&self) -> String {
        format!(
            "RelayOutcome(client_id={}, status={:?})",
            self.client_id, self.status
        )
    }
}

impl From<RelayOutcome> for Relayed {
    fn from(outcome: RelayOutcome) -> Relayed {
        Relayed {
            client_id: outcome.client_id,
            status: match outcome.status {
                RelayStatus::Delivered => "delivered",
                RelayStatus::Unknown => "unknown",
                RelayStatus::Dropped => "dropped",
            },
        }
    }
}

/// A body another client relayed to this one.
#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct DirectMessage {
    #[pyo3(get)]
    sender_id: u64,
    #[pyo3(get)]
    sender_name: String,
    #[pyo3(get)]
    time_us: u64,
    #[pyo3(get)]
    content_type: String,
    body: bytes::Bytes,
}

#[pymethods]
impl DirectMessage {
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }

    #[getter]
    fn time(&self) -> f64 {
        self.time_us as f64 / 1_000_000.0
    }

    /// The body as text, or None when it is not valid UTF-8.
    fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    fn __repr__(&self) -> String {
        format!(
            "DirectMessage(sender_name={:?}, content_type={:?}, body_len={})",
            self.sender_name,
            self.content_type,
            self.body.len()
        )
    }
}

impl From<ReceivedDirect> for DirectMessage {
    fn from(direct: ReceivedDirect) -> DirectMessage {
        DirectMessage {
            sender_id: direct.sender_id(),
            sender_name: direct.sender_name().to_owned(),
            time_us: direct.time_us(),
            content_type: direct.content_type().to_owned(),
            body: direct.body().clone(),
        }
    }
}

/// Something that happened in a group: a member joined or left, the group was deleted.
#[pyclass(frozen, get_all, module = "switchboard._native")]
pub(crate) struct GroupEvent {
    kind: String,
    group: String,
    subject: String,
    count: u64,
    time_us: u64,
}

#[pymethods]
impl GroupEvent {
    fn __repr__(&self) -> String {
        format!(
            "GroupEvent(kind={:?}, group={:?}, subject={:?})",
            self.kind, self.group, self.subject
        )
    }
}

impl From<Event> for GroupEvent {
    fn from(event: Event) -> GroupEvent {
        let kind = match event.kind {
            EventKind::MemberJoined => "member_joined".to_owned(),
            EventKind::MemberLeft => "member_left".to_owned(),
            EventKind::Skipped => "skipped".to_owned(),
            EventKind::SubscriptionClosed => "subscription_closed".to_owned(),
            EventKind::ChannelDeleted => "channel_deleted".to_owned(),
            EventKind::GroupDeleted => "group_deleted".to_owned(),
            EventKind::SubscriptionRevoked => "subscription_revoked".to_owned(),
            EventKind::EpochChanged => "epoch_changed".to_owned(),
            EventKind::Other(number) => format!("other({number})"),
        };
        GroupEvent {
            kind,
            group: event.channel.to_string(),
            subject: event.subject.to_string(),
            count: event.count,
            time_us: event.time_us,
        }
    }
}

/// A feed taken from the client, read by one `next` call at a time, that `close` ends
/// even while a `next` call waits on it.
struct FeedSlot<F> {
    // A tokio mutex, held across the wait for the next item: concurrent `next` calls
    // take turns. `None` once closed, which gives the feed back to the client.
    feed: Mutex<Option<F>>,
    closed: watch::Sender<bool>,
}

impl<F: Stream + Unpin> FeedSlot<F> {
    fn new(feed: F) -> Arc<FeedSlot<F>> {
        Arc::new(FeedSlot {
            feed: Mutex::new(Some(feed)),
            closed: watch::Sender::new(false),
        })
    }

    /// The next item, or None once the feed ended or was closed.
    async fn next(&self) -> Option<F::Item> {
        let mut closed = self.closed.subscribe();
        let mut guard = tokio::select! {
            guard = self.feed.lock() => guard,
            _ = closed.wait_for(|closed| *closed) => return None,
        };
        let stream = guard.as_mut()?;
        tokio::select! {
            item = stream.next() => item,
            _ = closed.wait_for(|closed| *closed) => None,
        }
    }

    async fn close(&self) {
        // Ends a `next` call waiting on the feed, which then lets go of the lock.
        self.closed.send_replace(true);
        self.feed.lock().await.take();
    }
}

/// The group feed: a `Message` or a `GroupEvent` per `next` call, None once the
/// connection ended or the feed was closed.
#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct NativeGroupFeed {
    slot: Arc<FeedSlot<GroupFeed>>,
    blocking: bool,
}

impl NativeGroupFeed {
    pub(crate) fn new(feed: GroupFeed, blocking: bool) -> NativeGroupFeed {
        NativeGroupFeed {
            slot: FeedSlot::new(feed),
            blocking,
        }
    }
}

#[pymethods]
impl NativeGroupFeed {
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let slot = Arc::clone(&self.slot);
        let blocking = self.blocking;
        run(py, blocking, async move {
            match slot.next().await {
                Some(GroupItem::Message(message)) => Ok(Some(GroupFeedItem::Message(Box::new(
                    Message::read(message, blocking)?,
                )))),
                Some(GroupItem::Event(event)) => Ok(Some(GroupFeedItem::Event(event.into()))),
                None => Ok(None),
            }
        })
    }

    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let slot = Arc::clone(&self.slot);
        run(py, self.blocking, async move {
            slot.close().await;
            Ok(())
        })
    }
}

/// An item of the group feed on its way to Python.
enum GroupFeedItem {
    Message(Box<Message>),
    Event(GroupEvent),
}

impl<'py> IntoPyObject<'py> for GroupFeedItem {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            GroupFeedItem::Message(message) => (*message).into_bound_py_any(py),
            GroupFeedItem::Event(event) => event.into_bound_py_any(py),
        }
    }
}

/// The direct feed: a `DirectMessage` per `next` call, None once the connection ended or
/// the feed was closed.
#[pyclass(frozen, module = "switchboard._native")]
pub(crate) struct NativeDirectFeed {
    slot: Arc<FeedSlot<DirectFeed>>,
    blocking: bool,
}

impl NativeDirectFeed {
    pub(crate) fn new(feed: DirectFeed, blocking: bool) -> NativeDirectFeed {
        NativeDirectFeed {
            slot: FeedSlot::new(feed),
            blocking,
        }
    }
}

#[pymethods]
impl NativeDirectFeed {
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let slot = Arc::clone(&self.slot);
        run(py, self.blocking, async move {
            Ok(slot.next().await.map(DirectMessage::from))
        })
    }

    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let slot = Arc::clone(&self.slot);
        run(py, self.blocking, async move {
            slot.close().await;
            Ok(())
        })
    }
}
