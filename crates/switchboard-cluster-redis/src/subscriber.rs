//! The node's one pub/sub connection: follows topics for the node, hands every message
//! to the node through a bounded queue, and is made again (with every followed topic
//! confirmed again) when it breaks, when the command connection moved to another
//! master, or when the node's own liveness probes stop coming back on it.
//!
//! The probe is what catches a connection that is open but useless: left on a master
//! that was demoted, or on a server that stopped answering. Probes are published
//! through the command connection, so they reach whatever server the node writes to.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Client, ConnectionInfo, Msg};
use switchboard_server::log;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::BackplaneError;
use crate::supervisor::{Supervisor, backoff};
use crate::url::redacted;

/// How often a probe is published.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long the pub/sub connection may go without a probe coming back, while the
/// command connection is up, before it is made again.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(3);
/// The most names in one SUBSCRIBE or PSUBSCRIBE.
pub const BATCH: usize = 512;
/// How often the probe deadline is checked.
const PROBE_CHECK: Duration = Duration::from_millis(250);
/// How often a subscriber without a master looks for one (besides being woken).
const MASTER_POLL: Duration = Duration::from_millis(250);

/// What to follow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// One pub/sub channel (SUBSCRIBE).
    Exact(String),
    /// Every channel matching a Redis glob (PSUBSCRIBE).
    Glob(String),
}

/// One message from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The channel the message came on.
    pub topic: String,
    /// The glob that matched it, for a message of a [`Topic::Glob`].
    pub pattern: Option<String>,
    pub payload: Bytes,
}

/// What the subscriber hands to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberEvent {
    Push(Push),
    /// A new connection and every followed topic confirmed again: messages may have
    /// been missed since the previous connection was lost, so the node reads back what
    /// it follows.
    Resubscribed,
}

/// What the subscriber knows of its connection, for readiness and statistics.
#[derive(Debug, Clone, Default)]
pub struct SubscriberHealth {
    pub connected: bool,
    /// Topics followed (confirmed or waiting for a connection).
    pub followed: usize,
    /// Connections made.
    pub connects: u64,
    /// Connections made again after one was lost (each sent `Resubscribed`).
    pub resubscribes: u64,
    /// Connections dropped because probes stopped coming back.
    pub probe_failures: u64,
    /// How long the last probe took from publish to delivery.
    pub last_probe_rtt: Option<Duration>,
    /// Why the last connection was lost or the last attempt failed.
    pub last_error: Option<String>,
}

/// The node's pub/sub connection. Shared as `Arc<Subscriber>`.
pub struct Subscriber {
    supervisor: Arc<Supervisor>,
    wanted: Mutex<Wanted>,
    /// Wakes the task when `wanted` changed.
    wake: Notify,
    health: Mutex<SubscriberHealth>,
    probe_topic: String,
    /// Probes carry their send time relative to this.
    started: Instant,
}

/// What the node wants followed, and who waits for a confirmation.
#[derive(Default)]
struct Wanted {
    topics: HashSet<Topic>,
    waiters: Vec<(Topic, oneshot::Sender<()>)>,
}

/// Why a connection ended.
enum End {
    Stop,
    Lost(String),
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("probe_topic", &self.probe_topic)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// Spawns the subscriber task, connected to the supervisor's current master; events
    /// go to the returned bounded receiver (`capacity`); when it is full the task waits
    /// (Redis then buffers; past its client-output-buffer-limit it drops the connection,
    /// which ends in `Resubscribed`).
    pub fn start(
        supervisor: Arc<Supervisor>,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> (
        Arc<Subscriber>,
        mpsc::Receiver<SubscriberEvent>,
        JoinHandle<()>,
    ) {
        let probe_id = format!("{:016x}", rand::random::<u64>());
        let subscriber = Arc::new(Subscriber {
            probe_topic: supervisor.keys().probe_topic(&probe_id),
            supervisor,
            wanted: Mutex::new(Wanted::default()),
            wake: Notify::new(),
            health: Mutex::new(SubscriberHealth::default()),
            started: Instant::now(),
        });
        let (events, receiver) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(Arc::clone(&subscriber).work(events, shutdown));
        (subscriber, receiver, task)
    }

    /// Follows a topic; ends once Redis confirmed the subscription (so every message
    /// published after it will be pushed), or fails within the operation bound. A
    /// failed follow stays wanted: it is confirmed on the next connection unless
    /// unfollowed. Reference counting is the caller's job; following twice is harmless.
    pub async fn follow(&self, topic: Topic) -> Result<(), BackplaneError> {
        let (confirmed, confirmation) = oneshot::channel();
        {
            let mut wanted = self.lock_wanted();
            // Followers that gave up no longer wait.
            wanted.waiters.retain(|(_, waiter)| !waiter.is_closed());
            wanted.topics.insert(topic.clone());
            wanted.waiters.push((topic, confirmed));
        }
        self.wake.notify_one();
        let bound = self.supervisor.config().op_timeout;
        match tokio::time::timeout(bound, confirmation).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(BackplaneError::Unavailable(
                "the subscriber has stopped".to_owned(),
            )),
            Err(_) => {
                let health = self.health();
                if health.connected {
                    Err(BackplaneError::Timeout(bound))
                } else {
                    Err(BackplaneError::Unavailable(format!(
                        "no pub/sub connection: {}",
                        health.last_error.as_deref().unwrap_or("connecting")
                    )))
                }
            }
        }
    }

    /// Stops following a topic (queued, no wait).
    pub fn unfollow(&self, topic: Topic) {
        self.lock_wanted().topics.remove(&topic);
        self.wake.notify_one();
    }

    pub fn health(&self) -> SubscriberHealth {
        let mut health = self.lock_health().clone();
        health.followed = self.lock_wanted().topics.len();
        health
    }

    /// The topic this subscriber's probes travel on.
    pub fn probe_topic(&self) -> &str {
        &self.probe_topic
    }

    fn lock_wanted(&self) -> MutexGuard<'_, Wanted> {
        self.wanted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_health(&self) -> MutexGuard<'_, SubscriberHealth> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn work(
        self: Arc<Self>,
        events: mpsc::Sender<SubscriberEvent>,
        shutdown: CancellationToken,
    ) {
        let probes = shutdown.child_token();
        let prober = tokio::spawn(Arc::clone(&self).publish_probes(probes.clone()));
        let mut connections = self.supervisor.connections();
        let mut failures = 0u32;
        let mut connected_before = false;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            connections.borrow_and_update();
            let Some(info) = self.supervisor.client_info() else {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = connections.changed() => {}
                    _ = tokio::time::sleep(MASTER_POLL) => {}
                }
                continue;
            };
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break,
                attempt = self.connect(&info) => attempt,
            };
            let (mut sink, stream, mut subscribed) = match attempt {
                Ok(connection) => connection,
                Err(reason) => {
                    self.lost(&reason, false);
                    let delay = backoff(failures);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            };
            failures = 0;
            {
                let mut health = self.lock_health();
                health.connected = true;
                health.connects += 1;
                health.last_error = None;
                if connected_before {
                    health.resubscribes += 1;
                }
            }
            tracing::info!(target: log::CONNECTION, master = %redacted(&info), "pub/sub connected");
            if connected_before {
                let sent = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    sent = events.send(SubscriberEvent::Resubscribed) => sent,
                };
                if sent.is_err() {
                    break;
                }
            }
            connected_before = true;
            let end = self
                .serve(
                    &mut sink,
                    stream,
                    &mut subscribed,
                    &events,
                    &mut connections,
                    &shutdown,
                )
                .await;
            match end {
                End::Stop => break,
                End::Lost(reason) => self.lost(&reason, true),
            }
        }
        self.lock_health().connected = false;
        probes.cancel();
        // The prober ends at its next await point; its operations are bounded.
        let bound = self.supervisor.config().op_timeout + Duration::from_secs(1);
        if tokio::time::timeout(bound, prober).await.is_err() {
            tracing::warn!(target: log::ERROR, "the pub/sub probe did not stop in time");
        }
        tracing::info!(target: log::CONNECTION, "pub/sub subscriber stopped");
    }

    fn lost(&self, reason: &str, was_connected: bool) {
        let repeated = {
            let mut health = self.lock_health();
            health.connected = false;
            let repeated = health.last_error.as_deref() == Some(reason);
            health.last_error = Some(reason.to_owned());
            repeated
        };
        if was_connected {
            tracing::warn!(target: log::CONNECTION, %reason, "pub/sub connection lost");
        } else if repeated {
            tracing::debug!(target: log::ERROR, %reason, "pub/sub connection failed again");
        } else {
            tracing::error!(target: log::ERROR, %reason, "pub/sub connection failed");
        }
    }

    /// Connects to `info`, follows the probe and every wanted topic, and confirms them.
    async fn connect(
        &self,
        info: &ConnectionInfo,
    ) -> Result<(PubSubSink, PubSubStream, HashSet<Topic>), String> {
        let shown = redacted(info);
        let client = Client::open(info.clone()).map_err(|error| format!("{shown}: {error}"))?;
        let bound = self.supervisor.config().connect_timeout;
        let pubsub = match tokio::time::timeout(bound, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => return Err(format!("cannot connect to {shown}: {error}")),
            Err(_) => {
                return Err(format!(
                    "cannot connect to {shown}: no answer within {bound:?}"
                ));
            }
        };
        let (mut sink, stream) = pubsub.split();
        self.confirm(sink.subscribe(&self.probe_topic)).await?;
        let mut subscribed = HashSet::new();
        self.sync(&mut sink, &mut subscribed).await?;
        Ok((sink, stream, subscribed))
    }

    /// Reads the connection until it ends; follows what is wanted as it changes.
    async fn serve(
        &self,
        sink: &mut PubSubSink,
        mut stream: PubSubStream,
        subscribed: &mut HashSet<Topic>,
        events: &mpsc::Sender<SubscriberEvent>,
        connections: &mut watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> End {
        let mut last_probe = Instant::now();
        let mut check = tokio::time::interval(PROBE_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Stop,
                _ = self.wake.notified() => {
                    if let Err(reason) = self.sync(sink, subscribed).await {
                        return End::Lost(reason);
                    }
                }
                changed = connections.changed() => {
                    if changed.is_err() {
                        return End::Stop;
                    }
                    return End::Lost(
                        "the command connection was made again (the master may have changed)"
                            .to_owned(),
                    );
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        return End::Lost("the pub/sub connection closed".to_owned());
                    };
                    if message.get_channel_name() == self.probe_topic {
                        last_probe = Instant::now();
                        self.probe_returned(&message);
                        continue;
                    }
                    let event = SubscriberEvent::Push(push(&message));
                    tokio::select! {
                        _ = shutdown.cancelled() => return End::Stop,
                        sent = events.send(event) => if sent.is_err() {
                            tracing::info!(target: log::CONNECTION, "nobody reads the pub/sub events");
                            return End::Stop;
                        }
                    }
                }
                _ = check.tick() => {
                    if last_probe.elapsed() > PROBE_DEADLINE && self.supervisor.health().connected {
                        self.lock_health().probe_failures += 1;
                        return End::Lost(format!(
                            "no liveness probe came back within {PROBE_DEADLINE:?}"
                        ));
                    }
                }
            }
        }
    }

    /// Makes the connection's subscriptions what is wanted, in batches, and answers the
    /// followers whose topics are now confirmed. `Err` means the connection is unusable.
    async fn sync(
        &self,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<Topic>,
    ) -> Result<(), String> {
        let (follow, unfollow, waiters) = {
            let mut wanted = self.lock_wanted();
            let follow: Vec<Topic> = wanted.topics.difference(subscribed).cloned().collect();
            let unfollow: Vec<Topic> = subscribed.difference(&wanted.topics).cloned().collect();
            (follow, unfollow, std::mem::take(&mut wanted.waiters))
        };
        let result = self.apply(sink, subscribed, follow, unfollow).await;
        let mut waiting = Vec::new();
        for (topic, waiter) in waiters {
            if subscribed.contains(&topic) || !self.lock_wanted().topics.contains(&topic) {
                // The follower may have given up; then nobody needs the answer.
                let _ = waiter.send(());
            } else if !waiter.is_closed() {
                waiting.push((topic, waiter));
            }
        }
        if !waiting.is_empty() {
            self.lock_wanted().waiters.extend(waiting);
        }
        result
    }

    async fn apply(
        &self,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<Topic>,
        follow: Vec<Topic>,
        unfollow: Vec<Topic>,
    ) -> Result<(), String> {
        let (exact, glob) = split_kinds(follow);
        for batch in exact.chunks(BATCH) {
            self.confirm(sink.subscribe(batch)).await?;
            subscribed.extend(batch.iter().cloned().map(Topic::Exact));
        }
        for batch in glob.chunks(BATCH) {
            self.confirm(sink.psubscribe(batch)).await?;
            subscribed.extend(batch.iter().cloned().map(Topic::Glob));
        }
        let (exact, glob) = split_kinds(unfollow);
        for batch in exact.chunks(BATCH) {
            self.confirm(sink.unsubscribe(batch)).await?;
            for name in batch {
                subscribed.remove(&Topic::Exact(name.clone()));
            }
        }
        for batch in glob.chunks(BATCH) {
            self.confirm(sink.punsubscribe(batch)).await?;
            for name in batch {
                subscribed.remove(&Topic::Glob(name.clone()));
            }
        }
        Ok(())
    }

    /// Waits for Redis to confirm a (un)subscription, within the operation bound.
    async fn confirm(
        &self,
        request: impl Future<Output = redis::RedisResult<()>>,
    ) -> Result<(), String> {
        let bound = self.supervisor.config().op_timeout;
        match tokio::time::timeout(bound, request).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("a subscription failed: {error}")),
            Err(_) => Err(format!("a subscription was not confirmed within {bound:?}")),
        }
    }

    fn probe_returned(&self, message: &Msg) {
        let sent = std::str::from_utf8(message.get_payload_bytes())
            .ok()
            .and_then(|payload| payload.parse::<u64>().ok())
            .map(Duration::from_micros);
        if let Some(sent) = sent {
            let rtt = self.started.elapsed().saturating_sub(sent);
            self.lock_health().last_probe_rtt = Some(rtt);
        }
    }

    /// Publishes a probe every [`PROBE_INTERVAL`] through the command connection.
    async fn publish_probes(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sent = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let topic = self.probe_topic.clone();
            let published = self.supervisor.run(move |connection| {
                Box::pin(async move {
                    let receivers: u64 = redis::cmd("PUBLISH")
                        .arg(topic)
                        .arg(sent.to_string())
                        .query_async(connection)
                        .await?;
                    Ok(receivers)
                })
            });
            // `run` is bounded by the operation timeout.
            tokio::select! {
                _ = stop.cancelled() => return,
                result = published => {
                    if let Err(error) = result {
                        tracing::debug!(target: log::CONNECTION, %error, "probe not published");
                    }
                }
            }
        }
    }
}

fn split_kinds(topics: Vec<Topic>) -> (Vec<String>, Vec<String>) {
    let mut exact = Vec::new();
    let mut glob = Vec::new();
    for topic in topics {
        match topic {
            Topic::Exact(name) => exact.push(name),
            Topic::Glob(pattern) => glob.push(pattern),
        }
    }
    (exact, glob)
}

fn push(message: &Msg) -> Push {
    let pattern = if message.from_pattern() {
        message.get_pattern::<String>().ok()
    } else {
        None
    };
    Push {
        topic: message.get_channel_name().to_owned(),
        pattern,
        payload: Bytes::copy_from_slice(message.get_payload_bytes()),
    }
}
