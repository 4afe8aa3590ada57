//! The node's one pub/sub connection: follows topics for the node, hands every message
//! to the node through a bounded queue, and is made again (with every followed topic
//! confirmed again) when it breaks, when the command connection moved to another
//! master, or when the node's own liveness probes stop coming back on it.
//!
//! The connection is read one reply at a time and only as fast as the node takes
//! events, so a slow node leaves the backlog in Redis; past Redis's
//! `client-output-buffer-limit` Redis closes the connection, and the node hears
//! `Resubscribed` and reads back what it missed.
//!
//! The probe is what catches a connection that is open but useless: left on a master
//! that was demoted, or on a server that stopped answering. Probes are published
//! through the command connection, so they reach whatever server the node writes to.

mod connection;
mod frame;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::ConnectionInfo;
use switchboard_server::log;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::BackplaneError;
use crate::supervisor::{Supervisor, backoff};
use crate::url::redacted;
use connection::{Incoming, Kind, PubSubConnection};

/// How often a probe is published.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long the pub/sub connection may go without a probe coming back, while the
/// command connection is up, before it is made again.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(3);
/// The most names in one SUBSCRIBE or PSUBSCRIBE.
pub const BATCH: usize = 512;
/// How often the deadlines are checked.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);
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
    /// A connection is up and every followed topic was confirmed on it once.
    pub connected: bool,
    /// Topics followed (confirmed or waiting for a connection).
    pub followed: usize,
    /// Connections made (every followed topic confirmed).
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

/// Where a topic stands on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Subscribing,
    Subscribed,
    Unsubscribing,
}

/// One connection and what was asked of it.
struct Link {
    connection: PubSubConnection,
    standing: HashMap<Topic, Standing>,
    /// Confirmations still to come, in the order Redis sends them.
    expected: VecDeque<(Kind, String)>,
    opened: Instant,
    last_probe: Instant,
    /// Whether every topic of the first round was confirmed (the connection is up).
    up: bool,
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
        let mut prober = tokio::spawn(Arc::clone(&self).publish_probes(probes.clone()));
        let mut connections = self.supervisor.connections();
        let mut failures = 0u32;
        let mut was_up = false;
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
                attempt = self.open(&info) => attempt,
            };
            let end = match attempt {
                Ok(mut link) => {
                    failures = 0;
                    self.serve(
                        &mut link,
                        &info,
                        &mut was_up,
                        &events,
                        &mut connections,
                        &shutdown,
                    )
                    .await
                }
                Err(reason) => End::Lost(reason),
            };
            match end {
                End::Stop => break,
                End::Lost(reason) => {
                    let was_connected = self.lost(&reason);
                    if !was_connected {
                        let delay = backoff(failures);
                        failures = failures.saturating_add(1);
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        }
        self.lock_health().connected = false;
        probes.cancel();
        // The prober ends at its next await point; its operations are bounded.
        let bound = self.supervisor.config().op_timeout + Duration::from_secs(1);
        if tokio::time::timeout(bound, &mut prober).await.is_err() {
            tracing::warn!(target: log::ERROR, "the pub/sub probe did not stop in time");
            prober.abort();
        }
        tracing::info!(target: log::CONNECTION, "pub/sub subscriber stopped");
    }

    /// Records why a connection ended; whether it had been up.
    fn lost(&self, reason: &str) -> bool {
        let (was_connected, repeated) = {
            let mut health = self.lock_health();
            let was_connected = health.connected;
            health.connected = false;
            let repeated = health.last_error.as_deref() == Some(reason);
            health.last_error = Some(reason.to_owned());
            (was_connected, repeated)
        };
        if was_connected {
            tracing::warn!(target: log::CONNECTION, %reason, "pub/sub connection lost");
        } else if repeated {
            tracing::debug!(target: log::ERROR, %reason, "pub/sub connection failed again");
        } else {
            tracing::error!(target: log::ERROR, %reason, "pub/sub connection failed");
        }
        was_connected
    }

    /// Connects to `info` and asks for the probe and every wanted topic.
    async fn open(&self, info: &ConnectionInfo) -> Result<Link, String> {
        let shown = redacted(info);
        let bound = self.supervisor.config().connect_timeout;
        let connection = match tokio::time::timeout(bound, PubSubConnection::connect(info)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(format!("cannot connect to {shown}: {error}")),
            Err(_) => {
                return Err(format!(
                    "cannot connect to {shown}: no answer within {bound:?}"
                ));
            }
        };
        let now = Instant::now();
        let mut link = Link {
            connection,
            standing: HashMap::new(),
            expected: VecDeque::new(),
            opened: now,
            last_probe: now,
            up: false,
        };
        self.request(
            &mut link,
            Kind::Subscribe,
            vec![self.probe_topic.clone()],
            false,
        )
        .await?;
        self.sync(&mut link).await?;
        Ok(link)
    }

    /// Reads the connection until it ends; follows what is wanted as it changes.
    async fn serve(
        &self,
        link: &mut Link,
        info: &ConnectionInfo,
        was_up: &mut bool,
        events: &mpsc::Sender<SubscriberEvent>,
        connections: &mut watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> End {
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !link.up && link.expected.is_empty() {
                link.up = true;
                if !self.announce(info, was_up, events, shutdown).await {
                    return End::Stop;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Stop,
                _ = self.wake.notified() => {
                    if let Err(reason) = self.sync(link).await {
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
                incoming = link.connection.next() => match incoming {
                    None => return End::Lost("Redis closed the pub/sub connection".to_owned()),
                    Some(Err(reason)) => return End::Lost(reason),
                    Some(Ok(Incoming::Confirmation { kind, name })) => {
                        if let Err(reason) = link.confirmed(kind, name) {
                            return End::Lost(reason);
                        }
                        self.answer_followers(link);
                    }
                    Some(Ok(Incoming::Message(push))) => {
                        if push.topic == self.probe_topic {
                            link.last_probe = Instant::now();
                            self.probe_returned(&push.payload);
                            continue;
                        }
                        // Waiting here is the backpressure: nothing more is read.
                        tokio::select! {
                            _ = shutdown.cancelled() => return End::Stop,
                            sent = events.send(SubscriberEvent::Push(push)) => if sent.is_err() {
                                tracing::info!(target: log::CONNECTION, "nobody reads the pub/sub events");
                                return End::Stop;
                            }
                        }
                    }
                },
                _ = check.tick() => {
                    if let Some(reason) = self.overdue(link) {
                        return End::Lost(reason);
                    }
                }
            }
        }
    }

    /// The connection is up: says so, and tells the node it may have missed messages
    /// if an earlier connection was up. `false` when the task must stop.
    async fn announce(
        &self,
        info: &ConnectionInfo,
        was_up: &mut bool,
        events: &mpsc::Sender<SubscriberEvent>,
        shutdown: &CancellationToken,
    ) -> bool {
        {
            let mut health = self.lock_health();
            health.connected = true;
            health.connects += 1;
            health.last_error = None;
            if *was_up {
                health.resubscribes += 1;
            }
        }
        tracing::info!(target: log::CONNECTION, master = %redacted(info), "pub/sub connected");
        if !std::mem::replace(was_up, true) {
            return true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => false,
            sent = events.send(SubscriberEvent::Resubscribed) => sent.is_ok(),
        }
    }

    /// Why the connection must be made again, if it must.
    fn overdue(&self, link: &Link) -> Option<String> {
        let bound = self.supervisor.config().connect_timeout + self.supervisor.config().op_timeout;
        if !link.up && link.opened.elapsed() > bound {
            return Some(format!("subscriptions not confirmed within {bound:?}"));
        }
        if link.last_probe.elapsed() > PROBE_DEADLINE && self.supervisor.health().connected {
            self.lock_health().probe_failures += 1;
            return Some(format!(
                "no liveness probe came back within {PROBE_DEADLINE:?}"
            ));
        }
        None
    }

    /// Asks for what is wanted and not yet asked for (and drops what is no longer
    /// wanted), in batches; answers the followers already confirmed.
    async fn sync(&self, link: &mut Link) -> Result<(), String> {
        let (follow, unfollow) = {
            let wanted = self.lock_wanted();
            let follow: Vec<Topic> = wanted
                .topics
                .iter()
                .filter(|topic| {
                    matches!(
                        link.standing.get(*topic),
                        None | Some(Standing::Unsubscribing)
                    )
                })
                .cloned()
                .collect();
            let unfollow: Vec<Topic> = link
                .standing
                .iter()
                .filter(|(topic, standing)| {
                    **standing != Standing::Unsubscribing && !wanted.topics.contains(*topic)
                })
                .map(|(topic, _)| topic.clone())
                .collect();
            (follow, unfollow)
        };
        let (exact, glob) = split_kinds(follow);
        self.request(link, Kind::Subscribe, exact, true).await?;
        self.request(link, Kind::Psubscribe, glob, true).await?;
        let (exact, glob) = split_kinds(unfollow);
        self.request(link, Kind::Unsubscribe, exact, true).await?;
        self.request(link, Kind::Punsubscribe, glob, true).await?;
        self.answer_followers(link);
        Ok(())
    }

    /// Sends `names` in batches and notes the confirmations to expect; `tracked` topics
    /// are the node's (the probe is not).
    async fn request(
        &self,
        link: &mut Link,
        kind: Kind,
        names: Vec<String>,
        tracked: bool,
    ) -> Result<(), String> {
        let bound = self.supervisor.config().op_timeout;
        for batch in names.chunks(BATCH) {
            match tokio::time::timeout(bound, link.connection.request(kind, batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(format!("{}: {error}", kind.command())),
                Err(_) => {
                    return Err(format!("{} not sent within {bound:?}", kind.command()));
                }
            }
            for name in batch {
                link.expected.push_back((kind, name.clone()));
                if tracked {
                    let topic = topic_of(kind, name);
                    let standing = match kind {
                        Kind::Subscribe | Kind::Psubscribe => Standing::Subscribing,
                        Kind::Unsubscribe | Kind::Punsubscribe => Standing::Unsubscribing,
                    };
                    link.standing.insert(topic, standing);
                }
            }
        }
        Ok(())
    }

    /// Answers the followers whose topics are confirmed (or no longer wanted).
    fn answer_followers(&self, link: &Link) {
        let answered = {
            let mut wanted = self.lock_wanted();
            let Wanted { topics, waiters } = &mut *wanted;
            let mut answered = Vec::new();
            let mut index = 0;
            while index < waiters.len() {
                let topic = &waiters[index].0;
                if link.standing.get(topic) == Some(&Standing::Subscribed)
                    || !topics.contains(topic)
                {
                    answered.push(waiters.swap_remove(index).1);
                } else {
                    index += 1;
                }
            }
            answered
        };
        for waiter in answered {
            // The follower may have given up; then nobody needs the answer.
            let _ = waiter.send(());
        }
    }

    fn probe_returned(&self, payload: &[u8]) {
        let sent = std::str::from_utf8(payload)
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

impl Link {
    /// Takes a confirmation; `Err` when it is not the one expected next.
    fn confirmed(&mut self, kind: Kind, name: String) -> Result<(), String> {
        match self.expected.pop_front() {
            Some((expected_kind, expected_name))
                if expected_kind == kind && expected_name == name => {}
            other => {
                return Err(format!(
                    "Redis confirmed {} {name} while {other:?} was expected",
                    kind.command()
                ));
            }
        }
        let topic = topic_of(kind, &name);
        // A later request for the same topic decides where it stands.
        match (kind, self.standing.get(&topic)) {
            (Kind::Subscribe | Kind::Psubscribe, Some(Standing::Subscribing)) => {
                self.standing.insert(topic, Standing::Subscribed);
            }
            (Kind::Unsubscribe | Kind::Punsubscribe, Some(Standing::Unsubscribing)) => {
                self.standing.remove(&topic);
            }
            _ => {}
        }
        Ok(())
    }
}

fn topic_of(kind: Kind, name: &str) -> Topic {
    match kind {
        Kind::Subscribe | Kind::Unsubscribe => Topic::Exact(name.to_owned()),
        Kind::Psubscribe | Kind::Punsubscribe => Topic::Glob(name.to_owned()),
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
