//! The client directory and node-to-node relays of [`crate::RedisBackplane`].
//!
//! Directory: sessions joining and leaving only mark their id changed here; one task
//! publishes what changed in batches (one round trip each), so a session's start never
//! waits on Redis and a burst of connections costs a few writes. What is pending is
//! bounded by the clients of this node (a change overwrites the one before it), and a
//! write that failed is marked again and retried. After the node's registration expired
//! and came back, every client is published again.
//!
//! Relays: each node follows its own topic (`Keys::node_topic`) from the start. A relay
//! is one message on the target node's topic, carrying the sender's number for the call;
//! the target delivers and publishes its outcomes on the sender's topic under that
//! number. A target whose topic nobody follows is not running: its receivers are
//! unknown at once. A target that does not answer within the operation bound is refused
//! (the hub says what the sender is told).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::FutureExt;
use parking_lot::Mutex;
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{RelayOutcome, RelayStatus};
use switchboard_server::Refusal;
use switchboard_server::cluster::{ClientRecord, IncomingRelay, RelayRequest};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::engine::{NODE_TTL, RedisBackplane, StartError};
use crate::error::BackplaneError;
use crate::keys::Keys;
use crate::nodes;
use crate::subscriber::Topic;
use crate::supervisor::Supervisor;

/// Client records written per round trip.
const RECORDS_PER_WRITE: usize = 1000;
/// Wait before a failed directory write is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// Relay answers waiting to be published; past it an answer is dropped and the sender's
/// node reports its receivers as it does for a node that did not answer.
const ANSWER_QUEUE: usize = 1024;

const KIND_REQUEST: u8 = 1;
const KIND_ANSWER: u8 = 2;

/// This node's part of the directory and its relays in flight.
pub(crate) struct NodeDirectory {
    incarnation: u64,
    /// This node's connected clients, and the ids whose record changed since written.
    clients: Mutex<Clients>,
    changed: Notify,
    /// Relays sent and waiting for their answer, by call number.
    calls: Mutex<HashMap<u64, oneshot::Sender<Vec<RelayOutcome>>>>,
    next_call: AtomicU64,
    answers: mpsc::Sender<(u64, Bytes)>,
}

#[derive(Default)]
struct Clients {
    connected: HashMap<u64, ClientRecord>,
    changed: HashSet<u64>,
    /// Sessions here by client name, and the names whose count Redis has not been told.
    names: HashMap<String, usize>,
    changed_names: HashSet<String>,
}

impl Clients {
    fn count_name(&mut self, name: &str, up: bool) {
        let count = self.names.entry(name.to_owned()).or_default();
        if up {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.names.remove(name);
            }
        }
        self.changed_names.insert(name.to_owned());
    }
}

impl NodeDirectory {
    /// The directory and the receiver of relay answers to publish (for
    /// [`NodeDirectory::publish_answers`]).
    pub(crate) fn new(incarnation: u64) -> (Arc<NodeDirectory>, mpsc::Receiver<(u64, Bytes)>) {
        let (answers, outgoing) = mpsc::channel(ANSWER_QUEUE);
        let directory = Arc::new(NodeDirectory {
            incarnation,
            clients: Mutex::new(Clients::default()),
            changed: Notify::new(),
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            answers,
        });
        (directory, outgoing)
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(crate) fn joined(&self, record: ClientRecord) {
        let mut clients = self.clients.lock();
        clients.changed.insert(record.id);
        clients.count_name(&record.name, true);
        if let Some(replaced) = clients.connected.insert(record.id, record) {
            clients.count_name(&replaced.name, false);
        }
        drop(clients);
        self.changed.notify_one();
    }

    pub(crate) fn left(&self, id: u64) {
        let mut clients = self.clients.lock();
        if let Some(record) = clients.connected.remove(&id) {
            clients.count_name(&record.name, false);
        }
        clients.changed.insert(id);
        drop(clients);
        self.changed.notify_one();
    }

    /// The registration had expired and with it every record: all are written again.
    pub(crate) fn publish_all_again(&self) {
        let mut clients = self.clients.lock();
        let ids: Vec<u64> = clients.connected.keys().copied().collect();
        clients.changed.extend(ids);
        let names: Vec<String> = clients.names.keys().cloned().collect();
        clients.changed_names.extend(names);
        drop(clients);
        self.changed.notify_one();
    }

    /// Writes changed records until `shutdown`; the engine owns the task.
    pub(crate) async fn publish_changes(
        self: Arc<Self>,
        supervisor: Arc<Supervisor>,
        keys: Keys,
        ttl: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.changed.notified() => {}
            }
            loop {
                let (added, removed, names) = {
                    let mut clients = self.clients.lock();
                    let changed = std::mem::take(&mut clients.changed);
                    let mut added = Vec::new();
                    let mut removed = Vec::new();
                    for id in changed {
                        match clients.connected.get(&id) {
                            Some(record) => added.push(redis_record(record)),
                            None => removed.push(id),
                        }
                    }
                    let names: Vec<(String, usize)> = std::mem::take(&mut clients.changed_names)
                        .into_iter()
                        .map(|name| {
                            let count = clients.names.get(&name).copied().unwrap_or(0);
                            (name, count)
                        })
                        .collect();
                    (added, removed, names)
                };
                if added.is_empty() && removed.is_empty() && names.is_empty() {
                    break;
                }
                let failed = self.write(&supervisor, &keys, ttl, added, removed).await;
                let failed_names = self.write_names(&supervisor, &keys, ttl, names).await;
                if !failed.is_empty() || !failed_names.is_empty() {
                    {
                        let mut clients = self.clients.lock();
                        clients.changed.extend(failed);
                        clients.changed_names.extend(failed_names);
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                    }
                }
            }
        }
    }

    /// Writes the session counts of names in batches; returns the names not written.
    async fn write_names(
        &self,
        supervisor: &Supervisor,
        keys: &Keys,
        ttl: Duration,
        names: Vec<(String, usize)>,
    ) -> Vec<String> {
        let incarnation = self.incarnation;
        let mut failed = Vec::new();
        for batch in names.chunks(RECORDS_PER_WRITE) {
            let keys = keys.clone();
            let counts = batch.to_vec();
            let written = supervisor
                .run(move |conn| {
                    async move { nodes::set_names(conn, &keys, incarnation, &counts, ttl).await }
                        .boxed()
                })
                .await;
            if let Err(error) = written {
                warn!(target: switchboard_server::log::ERROR, %error, names = batch.len(), "cannot publish client names to the cluster directory; retrying");
                failed.extend(batch.iter().map(|(name, _)| name.clone()));
            }
        }
        failed
    }

    /// Writes records and removals in batches; returns the ids of those not written.
    async fn write(
        &self,
        supervisor: &Supervisor,
        keys: &Keys,
        ttl: Duration,
        added: Vec<nodes::ClientRecord>,
        removed: Vec<u64>,
    ) -> Vec<u64> {
        let incarnation = self.incarnation;
        let mut failed = Vec::new();
        for batch in added.chunks(RECORDS_PER_WRITE) {
            let keys = keys.clone();
            let records = batch.to_vec();
            let written = supervisor
                .run(move |conn| {
                    async move {
                        nodes::add_clients(conn, &keys, incarnation, &records, ttl)
                            .await
                            .map_err(|e| BackplaneError::Reply(e.to_string()))
                    }
                    .boxed()
                })
                .await;
            if let Err(error) = written {
                warn!(target: switchboard_server::log::ERROR, %error, clients = batch.len(), "cannot publish clients to the cluster directory; retrying");
                failed.extend(batch.iter().map(|record| record.id));
            }
        }
        for batch in removed.chunks(RECORDS_PER_WRITE) {
            let keys = keys.clone();
            let ids = batch.to_vec();
            let written = supervisor
                .run(move |conn| {
                    async move { nodes::remove_clients(conn, &keys, incarnation, &ids).await }
                        .boxed()
                })
                .await;
            if let Err(error) = written {
                warn!(target: switchboard_server::log::ERROR, %error, clients = batch.len(), "cannot withdraw clients from the cluster directory; retrying");
                failed.extend_from_slice(batch);
            }
        }
        failed
    }

    /// Sends a relay to `node` and waits for its answer within `bound`.
    pub(crate) async fn relay(
        &self,
        supervisor: &Supervisor,
        keys: &Keys,
        node: u64,
        request: RelayRequest,
        bound: Duration,
    ) -> Result<Vec<RelayOutcome>, Refusal> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (answered, answer) = oneshot::channel();
        self.calls.lock().insert(call, answered);
        // Whatever happens next, the call is no longer waited for after this.
        let _forget = Forget {
            calls: &self.calls,
            call,
        };
        let message = encode_request(self.incarnation, call, &request);
        let topic = keys.node_topic(node);
        let listeners: i64 = supervisor
            .run(move |conn| {
                async move {
                    Ok(redis::cmd("PUBLISH")
                        .arg(&topic)
                        .arg(message.as_ref())
                        .query_async(conn)
                        .await?)
                }
                .boxed()
            })
            .await
            .map_err(|e| e.refusal())?;
        if listeners == 0 {
            // The directory holds the node as live, but nothing follows its topic: its
            // pub/sub connection is being made again (after Redis restarted, or cut it),
            // or it died and its registration has not expired yet. Either way the
            // receivers may still be connected and the body did not reach them: dropped,
            // as for a node that does not answer, so that the sender may try again.
            return Ok(request
                .receivers
                .iter()
                .map(|&client_id| RelayOutcome {
                    client_id,
                    status: RelayStatus::Dropped,
                })
                .collect());
        }
        match tokio::time::timeout(bound, answer).await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(_)) | Err(_) => Err(Refusal::new(
                ErrorCode::BackplaneUnavailable,
                format!("node {node} did not answer the relay within {bound:?}"),
            )),
        }
    }

    /// Queues the answer to a relay from another node; dropped if the queue is full.
    pub(crate) fn answer(&self, relay: &IncomingRelay, outcomes: &[RelayOutcome]) {
        let message = encode_answer(self.incarnation, relay.call, outcomes);
        if self.answers.try_send((relay.from_node, message)).is_err() {
            warn!(target: switchboard_server::log::ERROR, node = relay.from_node, "relay answers are backed up; one dropped");
        }
    }

    /// Publishes queued relay answers until `shutdown`; the engine owns the task.
    pub(crate) async fn publish_answers(
        supervisor: Arc<Supervisor>,
        keys: Keys,
        mut outgoing: mpsc::Receiver<(u64, Bytes)>,
        shutdown: CancellationToken,
    ) {
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = outgoing.recv() => next,
            };
            let Some((node, message)) = next else { return };
            let topic = keys.node_topic(node);
            let sent = supervisor
                .run(move |conn| {
                    async move {
                        redis::cmd("PUBLISH")
                            .arg(&topic)
                            .arg(message.as_ref())
                            .exec_async(conn)
                            .await?;
                        Ok(())
                    }
                    .boxed()
                })
                .await;
            if let Err(error) = sent {
                warn!(target: switchboard_server::log::ERROR, node, %error, "cannot answer a relay");
            }
        }
    }

    /// A message on this node's topic: a relay for the hub, or an answer to a relay this
    /// node sent (handed to its caller here).
    pub(crate) fn take(&self, message: &[u8]) -> Option<IncomingRelay> {
        match decode(message) {
            Ok(NodeMessage::Request(relay)) => Some(relay),
            Ok(NodeMessage::Answer { call, outcomes }) => {
                if let Some(caller) = self.calls.lock().remove(&call) {
                    // A caller that gave up meanwhile no longer listens.
                    let _ = caller.send(outcomes);
                }
                None
            }
            Err(why) => {
                warn!(target: switchboard_server::log::ERROR, why, "unreadable message on this node's topic; skipped");
                None
            }
        }
    }
}

impl RedisBackplane {
    /// Follows this node's topic (so that relays reach it from the start) and the
    /// control topic (joins made anywhere), and starts the
    /// directory's tasks, owned with the others.
    pub(crate) async fn start_directory(
        &self,
        relay_answers: mpsc::Receiver<(u64, Bytes)>,
    ) -> Result<(), StartError> {
        let own_topic = Topic::Exact(self.keys.node_topic(self.directory.incarnation()));
        let control = Topic::Exact(self.keys.control_topic());
        for topic in [own_topic, control] {
            if let Err(error) = self.subscriber.follow(topic).await {
                self.shutdown.cancel();
                return Err(StartError::Register(format!(
                    "cannot follow this node's topics: {error}"
                )));
            }
        }
        let writer = tokio::spawn(Arc::clone(&self.directory).publish_changes(
            self.supervisor.clone(),
            self.keys.clone(),
            NODE_TTL,
            self.shutdown.child_token(),
        ));
        let answerer = tokio::spawn(NodeDirectory::publish_answers(
            self.supervisor.clone(),
            self.keys.clone(),
            relay_answers,
            self.shutdown.child_token(),
        ));
        self.tasks.lock().extend([writer, answerer]);
        Ok(())
    }

    /// Up to `limit` clients of the live nodes after `after`, in id order.
    pub(crate) async fn list_directory(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ClientRecord>, Refusal> {
        let keys = self.keys.clone();
        let records = self
            .run_read(move |conn| {
                async move { nodes::list_clients(conn, &keys, after, limit).await }.boxed()
            })
            .await
            .map_err(|e| e.refusal())?;
        Ok(records.into_iter().map(seam_record).collect())
    }

    /// The records of these clients, in their order.
    pub(crate) async fn directory_records(
        &self,
        ids: &[u64],
    ) -> Result<Vec<Option<ClientRecord>>, Refusal> {
        let keys = self.keys.clone();
        let ids = ids.to_vec();
        let records = self
            .run_read(move |conn| {
                async move { nodes::client_records(conn, &keys, &ids).await }.boxed()
            })
            .await
            .map_err(|e| e.refusal())?;
        Ok(records
            .into_iter()
            .map(|record| record.map(seam_record))
            .collect())
    }
}

/// Removes a call from the calls waited for when its sender stops waiting.
struct Forget<'a> {
    calls: &'a Mutex<HashMap<u64, oneshot::Sender<Vec<RelayOutcome>>>>,
    call: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.call);
    }
}

/// The Redis form of a record (a client without a user is stored with an empty one).
fn redis_record(record: &ClientRecord) -> nodes::ClientRecord {
    nodes::ClientRecord {
        id: record.id,
        name: record.name.clone(),
        user: record.user.clone().unwrap_or_default(),
        connected_us: record.connected_us,
        receives_relay: record.receives_relay,
    }
}

/// The hub's form of a record read from Redis.
pub(crate) fn seam_record(record: nodes::ClientRecord) -> ClientRecord {
    ClientRecord {
        id: record.id,
        name: record.name,
        user: (!record.user.is_empty()).then_some(record.user),
        connected_us: record.connected_us,
        receives_relay: record.receives_relay,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum NodeMessage {
    Request(IncomingRelay),
    Answer {
        call: u64,
        outcomes: Vec<RelayOutcome>,
    },
}

fn put_text(buf: &mut BytesMut, text: &str) {
    // Names and content types are far below 4 GiB (the protocol bounds them).
    buf.put_u32(u32::try_from(text.len()).unwrap_or(u32::MAX));
    buf.put_slice(text.as_bytes());
}

/// `1`, from, call, sender id, time, to any client, sender name, content type,
/// receivers, then the body.
fn encode_request(from: u64, call: u64, request: &RelayRequest) -> Bytes {
    let mut buf = BytesMut::with_capacity(64 + request.body.len() + 8 * request.receivers.len());
    buf.put_u8(KIND_REQUEST);
    buf.put_u64(from);
    buf.put_u64(call);
    buf.put_u64(request.sender_id);
    buf.put_u64(request.time_us);
    buf.put_u8(u8::from(request.to_any_client));
    put_text(&mut buf, &request.sender_name);
    put_text(&mut buf, &request.content_type);
    buf.put_u32(u32::try_from(request.receivers.len()).unwrap_or(u32::MAX));
    for id in &request.receivers {
        buf.put_u64(*id);
    }
    buf.put_slice(&request.body);
    buf.freeze()
}

/// `2`, from, call, then each receiver's id and status.
fn encode_answer(from: u64, call: u64, outcomes: &[RelayOutcome]) -> Bytes {
    let mut buf = BytesMut::with_capacity(21 + 9 * outcomes.len());
    buf.put_u8(KIND_ANSWER);
    buf.put_u64(from);
    buf.put_u64(call);
    buf.put_u32(u32::try_from(outcomes.len()).unwrap_or(u32::MAX));
    for outcome in outcomes {
        buf.put_u64(outcome.client_id);
        // Statuses are single digits in the protocol.
        buf.put_u8(u8::try_from(outcome.status.as_u64()).unwrap_or(u8::MAX));
    }
    buf.freeze()
}

/// Reads the parts of a node message, each checked against what is left.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, len: usize) -> Result<(), &'static str> {
        if self.0.remaining() < len {
            Err("message cut short")
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }

    fn u32(&mut self) -> Result<usize, &'static str> {
        self.need(4)?;
        usize::try_from(self.0.get_u32()).map_err(|_| "length too large")
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }

    fn text(&mut self) -> Result<String, &'static str> {
        let len = self.u32()?;
        self.need(len)?;
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| "text not UTF-8")
    }

    /// `count` items of `each` bytes, checked before anything is allocated.
    fn count(&mut self, each: usize) -> Result<usize, &'static str> {
        let count = self.u32()?;
        self.need(count.saturating_mul(each))?;
        Ok(count)
    }
}

fn decode(message: &[u8]) -> Result<NodeMessage, &'static str> {
    let mut reader = Reader(message);
    let kind = reader.u8()?;
    let from_node = reader.u64()?;
    let call = reader.u64()?;
    match kind {
        KIND_REQUEST => {
            let sender_id = reader.u64()?;
            let time_us = reader.u64()?;
            let to_any_client = match reader.u8()? {
                0 => false,
                1 => true,
                _ => return Err("bad relay flag"),
            };
            let sender_name = reader.text()?;
            let content_type = reader.text()?;
            let count = reader.count(8)?;
            let receivers = (0..count)
                .map(|_| reader.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let body = Bytes::copy_from_slice(reader.0);
            Ok(NodeMessage::Request(IncomingRelay {
                from_node,
                call,
                request: RelayRequest {
                    sender_id,
                    sender_name,
                    time_us,
                    to_any_client,
                    content_type,
                    body,
                    receivers,
                },
            }))
        }
        KIND_ANSWER => {
            let count = reader.count(9)?;
            let mut outcomes = Vec::with_capacity(count);
            for _ in 0..count {
                let client_id = reader.u64()?;
                let status =
                    RelayStatus::from_u64(u64::from(reader.u8()?)).ok_or("bad relay status")?;
                outcomes.push(RelayOutcome { client_id, status });
            }
            Ok(NodeMessage::Answer { call, outcomes })
        }
        _ => Err("unknown message kind"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RelayRequest {
        RelayRequest {
            sender_id: 3 << 32 | 9,
            sender_name: "ann été".to_owned(),
            time_us: 1_700_000_000_000_000,
            to_any_client: true,
            content_type: "text/plain".to_owned(),
            body: Bytes::from_static(b"hello \x00 there"),
            receivers: vec![5 << 32 | 1, 5 << 32 | 2],
        }
    }

    #[test]
    fn requests_and_answers_round_trip() {
        let encoded = encode_request(3, 77, &request());
        assert_eq!(
            decode(&encoded),
            Ok(NodeMessage::Request(IncomingRelay {
                from_node: 3,
                call: 77,
                request: request(),
            }))
        );
        let outcomes = vec![
            RelayOutcome {
                client_id: 1,
                status: RelayStatus::Delivered,
            },
            RelayOutcome {
                client_id: 2,
                status: RelayStatus::Unknown,
            },
            RelayOutcome {
                client_id: 3,
                status: RelayStatus::Dropped,
            },
        ];
        assert_eq!(
            decode(&encode_answer(5, 77, &outcomes)),
            Ok(NodeMessage::Answer { call: 77, outcomes })
        );
    }

    #[test]
    fn cut_or_malformed_messages_are_errors() {
        let encoded = encode_request(3, 77, &request());
        // Every cut before the body is reported (the body is what is left).
        let body_at = encoded.len() - request().body.len();
        for len in 0..body_at {
            assert!(decode(&encoded[..len]).is_err(), "cut at {len}");
        }
        let mut bad_kind = encoded.to_vec();
        bad_kind[0] = 9;
        assert!(decode(&bad_kind).is_err());
        let mut huge_count = encode_answer(1, 1, &[]).to_vec();
        huge_count[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge_count).is_err());
        let mut bad_status = encode_answer(
            1,
            1,
            &[RelayOutcome {
                client_id: 1,
                status: RelayStatus::Dropped,
            }],
        )
        .to_vec();
        let last = bad_status.len() - 1;
        bad_status[last] = 7;
        assert!(decode(&bad_status).is_err());
    }

    #[test]
    fn records_without_a_user_round_trip_through_redis_form() {
        for user in [None, Some("ann".to_owned())] {
            let record = ClientRecord {
                id: 2 << 32 | 4,
                name: "a".to_owned(),
                user,
                connected_us: 5,
                receives_relay: false,
            };
            assert_eq!(seam_record(redis_record(&record)), record);
        }
    }
}
