//! Moving messages and counting them: what every mode but `idle` runs.
//!
//! A workload is a set of channels, each with its own publishers and subscribers, every one
//! on its own connection. Subscribers connect and subscribe first, so that everything
//! published is meant for them. Publishers then publish as the [`Pace`] says until the
//! [`Limit`]; the run then tells each subscriber how many messages its channel got and
//! waits until each has received exactly that many, or until nothing has arrived for
//! the drain timeout. Loss is counted per subscriber.
//!
//! Flow control: a publisher may be at most `window` messages ahead of the slowest
//! subscriber of its channel. The server disconnects a subscriber whose outbound queue
//! fills, so without a bound a publisher faster than its subscribers would measure how
//! the server sheds a backlog, not a throughput it can sustain. The publisher waits on
//! a [`Notify`] that the subscribers ring only when the count it waits for is reached,
//! not on every message.
//!
//! Nothing here holds a lock across an await: the shared state is atomics, and every
//! histogram belongs to one task until that task hands it back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::{FuturesOrdered, StreamExt};
use hdrhistogram::Histogram;
use switchboard_client::{Client, OCTET_STREAM, Payload, Replay, Subscription, Text};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::Settings;
use super::progress::{Progress, REFRESH};
use super::report::Report;
use super::target::{Target, cpu_seconds, stat};
use super::{Limit, TIMESTAMP_BYTES};

/// How publishes are sent.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pace {
    /// `publish(..).no_reply()` in batches, as fast as the window allows; after each batch a
    /// flush (one round trip) is started, and the next batch waits for the previous
    /// flush, so the server is never more than two batches behind and a refused
    /// publish is noticed.
    Flood,
    /// This many messages per second per publisher, each body starting with its send
    /// time; subscribers record the one-way latency.
    Rate(f64),
    /// `publish(..).pipelined()` with at most this many acks outstanding per publisher; the
    /// time from queueing to ack is recorded.
    Acked { in_flight: usize },
}

/// The shape of a workload.
#[derive(Debug, Clone)]
pub(super) struct Workload {
    /// Progress label.
    pub label: String,
    pub channels: Vec<String>,
    pub publishers_per_channel: usize,
    pub subscribers_per_channel: usize,
    pub size: usize,
    pub limit: Limit,
    pub pace: Pace,
    pub window: u64,
    pub drain_timeout: Duration,
}

impl Workload {
    /// A workload with the bench's settings on `channels`: --publishers and --subscribers per
    /// channel, --size, the count or duration, the window and the drain timeout.
    pub fn new(settings: &Settings, label: String, channels: Vec<String>, pace: Pace) -> Workload {
        Workload {
            label,
            channels,
            publishers_per_channel: settings.publishers,
            subscribers_per_channel: settings.subscribers,
            size: settings.size,
            limit: settings.limit,
            pace,
            window: settings.window,
            drain_timeout: settings.drain_timeout,
        }
    }
}

/// Runs `plan` and reports it.
pub(super) async fn measure(
    target: &Target,
    settings: &Settings,
    plan: Workload,
) -> Result<Report> {
    let outcome = run(target, &plan).await?;
    let subscribers = plan.subscribers_per_channel * plan.channels.len();
    Ok(Report::from_workload(
        settings,
        target,
        subscribers,
        outcome,
        plan.pace,
    ))
}

/// What a workload measured.
#[derive(Debug)]
pub(super) struct WorkloadOutcome {
    /// Publishes queued by the publishers (and, with flushes, processed by the server).
    pub published: u64,
    /// From the first publish until the last publisher's final flush or ack.
    pub publish_elapsed: Duration,
    /// Acknowledged publishes ([`Pace::Acked`] only).
    pub acked: u64,
    /// Deliveries, all subscribers together.
    pub received: u64,
    /// What the subscribers should have received together.
    pub expected: u64,
    /// From the first publish until the last delivery.
    pub receive_elapsed: Duration,
    /// Per subscriber: its channel's publishes it did not receive.
    pub loss_per_subscriber: Vec<u64>,
    /// Deliveries whose sequence number did not follow the previous one.
    pub out_of_order: u64,
    /// One-way latency in microseconds ([`Pace::Rate`]).
    pub one_way_us: Option<Histogram<u64>>,
    /// Queue-to-ack time in microseconds ([`Pace::Acked`]).
    pub ack_us: Option<Histogram<u64>>,
    /// CPU used during the run, in % of one core: this process, and the server's
    /// process when it is another one whose id is known.
    pub process_cpu_percent: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    /// What went wrong (publish errors, subscribers cut off): the run fails.
    pub failures: Vec<String>,
    /// Observations that do not fail the run.
    pub notes: Vec<String>,
}

/// Where a run is: subscribers stop once told the totals and once they have them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Publishing,
    /// Publishing is over and each channel's total is set.
    Draining,
    /// Give up: the run is over whatever arrived.
    Stop,
}

/// A counter alone on its cache line: subscribers of one channel update theirs on
/// every message, and sharing a line would make them contend for nothing.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedCounter(AtomicU64);

/// One channel's traffic: what its publishers and subscribers count, shared by them
/// for flow control and for the final tally.
#[derive(Debug)]
struct ChannelTraffic {
    name: String,
    /// Publishes queued by this channel's publishers.
    published: AtomicU64,
    /// Messages received by each subscriber of this channel.
    received: Box<[PaddedCounter]>,
    /// The count the slowest subscriber must reach for a waiting publisher to go on;
    /// `u64::MAX` while nobody waits.
    wake_at: AtomicU64,
    room: Notify,
    /// Set when publishing ends: what every subscriber must receive.
    total: AtomicU64,
    /// A subscriber ended early: publishers stop waiting for room.
    broken: AtomicBool,
    window: u64,
}

impl ChannelTraffic {
    fn new(name: String, subscribers: usize, window: u64) -> ChannelTraffic {
        ChannelTraffic {
            name,
            published: AtomicU64::new(0),
            received: (0..subscribers).map(|_| PaddedCounter::default()).collect(),
            wake_at: AtomicU64::new(u64::MAX),
            room: Notify::new(),
            total: AtomicU64::new(u64::MAX),
            broken: AtomicBool::new(false),
            window,
        }
    }

    /// The count of the subscriber furthest behind (`u64::MAX` without subscribers).
    fn slowest(&self) -> u64 {
        self.received
            .iter()
            .map(|counter| counter.0.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn received_total(&self) -> u64 {
        self.received
            .iter()
            .map(|counter| counter.0.load(Ordering::Relaxed))
            .sum()
    }

    fn has_room(&self, extra: u64) -> bool {
        self.published.load(Ordering::SeqCst) + extra <= self.slowest().saturating_add(self.window)
    }

    /// Waits until `extra` more publishes keep this channel within its window. Fails if
    /// a subscriber ended or none made progress for `stall`.
    async fn wait_for_room(&self, extra: u64, stall: Duration) -> Result<()> {
        loop {
            if self.broken.load(Ordering::SeqCst) {
                bail!("a subscriber of {} stopped receiving", self.name);
            }
            if self.has_room(extra) {
                return Ok(());
            }
            // Register before publishing the wish and re-checking, so that a receipt
            // landing in between is either seen by the check or rings the bell.
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let needed =
                (self.published.load(Ordering::SeqCst) + extra).saturating_sub(self.window);
            self.wake_at.fetch_min(needed, Ordering::SeqCst);
            if self.has_room(extra) || self.broken.load(Ordering::SeqCst) {
                continue;
            }
            let before = self.slowest();
            if tokio::time::timeout(stall, notified).await.is_err() && self.slowest() == before {
                bail!(
                    "the subscribers of {} received nothing for {}",
                    self.name,
                    humantime::format_duration(stall)
                );
            }
        }
    }

    /// A subscriber reached `count`: wakes a publisher waiting for that.
    fn received_up_to(&self, count: u64) {
        let waiting_for = self.wake_at.load(Ordering::SeqCst);
        if count >= waiting_for
            && self
                .wake_at
                .compare_exchange(waiting_for, u64::MAX, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.room.notify_waiters();
        }
    }

    /// A subscriber is gone: no publisher may wait for it.
    fn break_flow(&self) {
        self.broken.store(true, Ordering::SeqCst);
        self.room.notify_waiters();
    }
}

/// Nanoseconds since a process-wide instant; publishers stamp bodies with it and
/// subscribers, in the same process, subtract it: no clock synchronisation involved.
fn now_ns() -> u64 {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    let nanos = ANCHOR.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// A latency histogram in microseconds, 1 µs to one hour, 3 significant digits.
pub(super) fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; failing would be a bug here.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn record_micros(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// A body as the server should see it: opaque bytes, so it is not scanned for hashtags.
fn payload(body: Bytes) -> Payload {
    Payload {
        content_type: Text::from_static(OCTET_STREAM),
        body,
        headers: Vec::new(),
    }
}

/// The share of `total` that part `index` of `parts` publishes.
fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    let index = index as u64;
    total / parts + u64::from(index < total % parts)
}

/// When one publisher stops.
#[derive(Debug, Clone, Copy)]
enum Quota {
    Messages(u64),
    Until(Instant),
}

impl Quota {
    /// How many of the next `batch` messages may still be sent after `sent`.
    fn next_batch(self, sent: u64, batch: u64) -> u64 {
        match self {
            Quota::Messages(total) => total.saturating_sub(sent).min(batch),
            Quota::Until(deadline) => {
                if Instant::now() < deadline {
                    batch
                } else {
                    0
                }
            }
        }
    }
}

/// What one publisher did.
struct PublisherResult {
    published: u64,
    acked: u64,
    ack_us: Option<Histogram<u64>>,
    finished: Instant,
    error: Option<String>,
}

/// What one subscriber saw.
struct SubscriberResult {
    channel: usize,
    received: u64,
    out_of_order: u64,
    wrong_size: u64,
    last_receipt: Option<Instant>,
    one_way_us: Option<Histogram<u64>>,
    /// Why it stopped before it had everything, if it did.
    end: Option<String>,
}

/// Everything a publisher task needs.
struct PublisherJob {
    client: Client,
    channel: Arc<ChannelTraffic>,
    body: Bytes,
    size: usize,
    quota: Quota,
    pace: Pace,
    stall: Duration,
    acked: Arc<AtomicU64>,
}

/// Runs a workload against `target`.
pub(super) async fn run(target: &Target, plan: &Workload) -> Result<WorkloadOutcome> {
    let channels: Vec<Arc<ChannelTraffic>> = plan
        .channels
        .iter()
        .map(|name| {
            Arc::new(ChannelTraffic::new(
                name.clone(),
                plan.subscribers_per_channel,
                plan.window,
            ))
        })
        .collect();
    let (phase, phase_watch) = watch::channel(Phase::Publishing);
    let timestamps = matches!(plan.pace, Pace::Rate(_));

    let subscribers = connect_subscribers(target, plan, &channels).await?;
    let subscriber_tasks: Vec<JoinHandle<SubscriberResult>> = subscribers
        .into_iter()
        .map(|(channel, index, client, subscription)| {
            tokio::spawn(receive(
                client,
                subscription,
                channels[channel].clone(),
                channel,
                index,
                plan.size,
                timestamps,
                phase_watch.clone(),
            ))
        })
        .collect();
    let publisher_clients = connect_publishers(target, plan).await?;

    let stats_before = target.server_stats().await;
    let own_pid = std::process::id();
    let external_pid = target.server_pid().filter(|pid| *pid != own_pid);
    let cpu_before = (cpu_seconds(own_pid), external_pid.and_then(cpu_seconds));
    let progress = Progress::for_limit(&plan.label, plan.limit);
    let acked = Arc::new(AtomicU64::new(0));
    let ticker = spawn_ticker(&progress, &channels, &acked);

    let started = Instant::now();
    let publisher_count = publisher_clients.len();
    let publisher_tasks: Vec<JoinHandle<PublisherResult>> = publisher_clients
        .into_iter()
        .enumerate()
        .map(|(index, (channel, client))| {
            let quota = match (plan.limit, plan.pace) {
                (Limit::Count(total), _) => Quota::Messages(share(total, publisher_count, index)),
                // A paced publisher sends exactly rate × duration messages, counted from
                // its own first publish.
                (Limit::Duration(duration), Pace::Rate(rate)) => {
                    Quota::Messages((rate * duration.as_secs_f64()).round() as u64)
                }
                (Limit::Duration(duration), _) => Quota::Until(started + duration),
            };
            let job = PublisherJob {
                client,
                channel: channels[channel].clone(),
                body: Bytes::from(vec![0x5a; plan.size]),
                size: plan.size,
                quota,
                pace: plan.pace,
                stall: plan.drain_timeout,
                acked: acked.clone(),
            };
            tokio::spawn(publish(job))
        })
        .collect();

    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut published = 0;
    let mut acked_total = 0;
    let mut ack_us: Option<Histogram<u64>> = None;
    let mut publish_end = started;
    for task in publisher_tasks {
        let result = task.await.context("a publisher task failed")?;
        published += result.published;
        acked_total += result.acked;
        publish_end = publish_end.max(result.finished);
        merge(&mut ack_us, result.ack_us);
        if let Some(error) = result.error {
            failures.push(error);
        }
    }

    // Publishing is over: each channel's total is now known.
    for channel in &channels {
        channel
            .total
            .store(channel.published.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    let _ = phase.send(Phase::Draining);
    if let Some(note) = wait_for_subscribers(&subscriber_tasks, &channels, plan.drain_timeout).await
    {
        notes.push(note);
    }
    let _ = phase.send(Phase::Stop);

    let mut received = 0;
    let mut expected = 0;
    let mut extra = 0;
    let mut out_of_order = 0;
    let mut wrong_size = 0;
    let mut receive_end = started;
    let mut one_way_us: Option<Histogram<u64>> = None;
    let mut loss_per_subscriber = Vec::with_capacity(subscriber_tasks.len());
    for task in subscriber_tasks {
        let result = task.await.context("a subscriber task failed")?;
        let total = channels[result.channel].published.load(Ordering::SeqCst);
        received += result.received;
        expected += total;
        extra += result.received.saturating_sub(total);
        loss_per_subscriber.push(total.saturating_sub(result.received));
        out_of_order += result.out_of_order;
        wrong_size += result.wrong_size;
        if let Some(last) = result.last_receipt {
            receive_end = receive_end.max(last);
        }
        merge(&mut one_way_us, result.one_way_us);
        if let Some(end) = result.end {
            failures.push(end);
        }
    }
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    progress.finish();

    let cpu_percent =
        |before: Option<f64>, after: Option<f64>| Some((after? - before?) / wall * 100.0);
    let process_cpu_percent = cpu_percent(cpu_before.0, cpu_seconds(own_pid));
    let server_cpu_percent = cpu_percent(cpu_before.1, external_pid.and_then(cpu_seconds));
    let stats_after = target.server_stats().await;
    if let (Some(before), Some(after)) = (&stats_before, &stats_after) {
        let name = "slow_consumers_disconnected";
        let cut = stat(after, name)
            .unwrap_or(0)
            .saturating_sub(stat(before, name).unwrap_or(0));
        if cut > 0 {
            failures.push(format!(
                "the server disconnected {cut} slow consumer(s) during the run"
            ));
        }
    }
    if extra > 0 {
        failures.push(format!(
            "{extra} deliveries more than published: does something else publish on {}?",
            plan.channels.join(", ")
        ));
    }
    if out_of_order > 0 {
        failures.push(format!(
            "{out_of_order} deliveries did not follow their predecessor's sequence number"
        ));
    }
    if wrong_size > 0 {
        failures.push(format!(
            "{wrong_size} deliveries had a body of another size than {} B",
            plan.size
        ));
    }
    Ok(WorkloadOutcome {
        published,
        publish_elapsed: publish_end - started,
        acked: acked_total,
        received,
        expected,
        receive_elapsed: receive_end - started,
        loss_per_subscriber,
        out_of_order,
        one_way_us,
        ack_us,
        process_cpu_percent,
        server_cpu_percent,
        failures,
        notes,
    })
}

fn merge(into: &mut Option<Histogram<u64>>, from: Option<Histogram<u64>>) {
    let Some(from) = from else { return };
    match into {
        None => *into = Some(from),
        // Same bounds everywhere, so adding cannot fail; saturate rather than lose all.
        Some(histogram) => {
            if histogram.add(&from).is_err() {
                histogram.saturating_record(from.max());
            }
        }
    }
}

/// Most connections opened at once: a burst of thousands of handshakes would measure
/// the listen backlog instead.
const CONNECT_CONCURRENCY: usize = 16;

async fn connect_subscribers(
    target: &Target,
    plan: &Workload,
    channels: &[Arc<ChannelTraffic>],
) -> Result<Vec<(usize, usize, Client, Subscription)>> {
    let wanted: Vec<(usize, usize)> = (0..channels.len())
        .flat_map(|channel| (0..plan.subscribers_per_channel).map(move |index| (channel, index)))
        .collect();
    futures::stream::iter(wanted)
        .map(|(channel, index)| async move {
            let name = &channels[channel].name;
            let client = target
                .connect_subscriber(&format!("sub-{channel}-{index}"))
                .await?;
            let subscription = client
                .subscribe(name, Replay::None)
                .await
                .with_context(|| format!("cannot subscribe to {name}"))?;
            Ok((channel, index, client, subscription))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<Result<_>>>()
        .await
        .into_iter()
        .collect()
}

/// One client per publisher, with the index of its channel.
async fn connect_publishers(target: &Target, plan: &Workload) -> Result<Vec<(usize, Client)>> {
    let wanted: Vec<(usize, usize)> = (0..plan.channels.len())
        .flat_map(|channel| (0..plan.publishers_per_channel).map(move |index| (channel, index)))
        .collect();
    futures::stream::iter(wanted)
        .map(|(channel, index)| async move {
            let client = target.connect(&format!("pub-{channel}-{index}")).await?;
            Ok((channel, client))
        })
        .buffered(CONNECT_CONCURRENCY)
        .collect::<Vec<Result<_>>>()
        .await
        .into_iter()
        .collect()
}

/// Redraws the progress bar until aborted; nothing when there is no bar.
fn spawn_ticker(
    progress: &Progress,
    channels: &[Arc<ChannelTraffic>],
    acked: &Arc<AtomicU64>,
) -> Option<JoinHandle<()>> {
    if !progress.is_visible() {
        return None;
    }
    let progress = progress.clone();
    let channels = channels.to_vec();
    let acked = acked.clone();
    let started = Instant::now();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tick.tick().await;
            let published: u64 = channels
                .iter()
                .map(|channel| channel.published.load(Ordering::Relaxed))
                .sum();
            let received: u64 = channels
                .iter()
                .map(|channel| channel.received_total())
                .sum();
            let position = if progress.is_timed() {
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
            } else {
                published
            };
            let acked = acked.load(Ordering::Relaxed);
            let mut counts = vec![("published", published)];
            if acked > 0 {
                counts.push(("acked", acked));
            }
            if channels.iter().any(|channel| !channel.received.is_empty()) {
                counts.push(("received", received));
            }
            progress.show(position, &counts);
        }
    }))
}

/// Waits until every subscriber task ended, or nothing arrived for `drain_timeout`;
/// says so in the latter case.
async fn wait_for_subscribers(
    tasks: &[JoinHandle<SubscriberResult>],
    channels: &[Arc<ChannelTraffic>],
    drain_timeout: Duration,
) -> Option<String> {
    let total = || -> u64 {
        channels
            .iter()
            .map(|channel| channel.received_total())
            .sum()
    };
    let mut last_count = total();
    let mut last_progress = Instant::now();
    loop {
        if tasks.iter().all(JoinHandle::is_finished) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let count = total();
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= drain_timeout {
            return Some(format!(
                "stopped waiting for the last deliveries: none arrived for {}",
                humantime::format_duration(drain_timeout)
            ));
        }
    }
}

/// A subscriber: counts deliveries, checks their sequence and size, and records the
/// one-way latency of timestamped bodies. Ends when it has its channel's total, when
/// told to stop, or when its subscription ends.
#[allow(
    clippy::too_many_arguments,
    reason = "one task's whole context, used once"
)]
async fn receive(
    client: Client,
    mut subscription: Subscription,
    channel: Arc<ChannelTraffic>,
    channel_index: usize,
    index: usize,
    size: usize,
    timestamps: bool,
    mut phase: watch::Receiver<Phase>,
) -> SubscriberResult {
    let counter = &channel.received[index].0;
    let mut result = SubscriberResult {
        channel: channel_index,
        received: 0,
        out_of_order: 0,
        wrong_size: 0,
        last_receipt: None,
        one_way_us: timestamps.then(latency_histogram),
        end: None,
    };
    let mut last_seq: Option<u64> = None;
    loop {
        // A message already queued is taken without the select: arming the phase's
        // future for every message of a flood cost more than the client's own work
        // per message. A change of phase still comes first.
        let ready = if phase.has_changed().unwrap_or(true) {
            None
        } else {
            subscription.next().now_or_never()
        };
        let next = match ready {
            Some(next) => next,
            None => tokio::select! {
                biased;
                changed = phase.changed() => {
                    let now = changed.map_or(Phase::Stop, |()| *phase.borrow_and_update());
                    if now == Phase::Stop || result.received >= channel.total.load(Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
                next = subscription.next() => next,
            },
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                result.end = Some(format!(
                    "subscriber {index} of {} ended: {error}",
                    channel.name
                ));
                break;
            }
            None => {
                result.end = Some(format!("subscriber {index} of {} ended", channel.name));
                break;
            }
        };
        let arrived = Instant::now();
        if let Some(histogram) = &mut result.one_way_us
            && let Some(sent) = message.body().get(..8)
            && let Ok(sent) = <[u8; 8]>::try_from(sent)
        {
            let one_way = now_ns().saturating_sub(u64::from_le_bytes(sent));
            record_micros(histogram, Duration::from_nanos(one_way));
        }
        if last_seq.is_some_and(|last| message.seq() != last + 1) {
            result.out_of_order += 1;
        }
        last_seq = Some(message.seq());
        if message.body().len() != size {
            result.wrong_size += 1;
        }
        result.received += 1;
        result.last_receipt = Some(arrived);
        counter.store(result.received, Ordering::SeqCst);
        channel.received_up_to(result.received);
        if result.received >= channel.total.load(Ordering::Relaxed) {
            break;
        }
    }
    if result.end.is_some() {
        channel.break_flow();
    }
    drop(subscription);
    let _ = client.close().await;
    result
}

/// A publisher task: publishes as `job.pace` says, then closes its connection.
async fn publish(job: PublisherJob) -> PublisherResult {
    let mut result = PublisherResult {
        published: 0,
        acked: 0,
        ack_us: None,
        finished: Instant::now(),
        error: None,
    };
    let outcome = match job.pace {
        Pace::Flood => flood(&job, &mut result).await,
        Pace::Rate(rate) => paced(&job, rate, &mut result).await,
        Pace::Acked { in_flight } => acknowledged(&job, in_flight, &mut result).await,
    };
    result.finished = Instant::now();
    if let Err(error) = outcome {
        // Publishers still waiting for room on this channel would wait for nothing.
        job.channel.break_flow();
        result.error = Some(format!(
            "publisher on {} after {} messages: {}",
            job.channel.name,
            result.published,
            crate::one_line(&error)
        ));
    }
    let _ = job.client.close().await;
    result
}

/// Messages between two flushes of a flooding publisher: about 256 KiB of bodies,
/// 8 to 1024 messages, and at most a quarter of the window so that the window, not the
/// batch, is what bounds the flow.
fn flush_batch(size: usize, window: u64) -> u64 {
    let by_bytes = (256 * 1024 / size.max(1)) as u64;
    by_bytes.clamp(8, 1024).min((window / 4).max(1))
}

async fn flood(job: &PublisherJob, result: &mut PublisherResult) -> Result<()> {
    let batch = flush_batch(job.size, job.channel.window);
    let name = job.channel.name.as_str();
    let mut flushing: Option<JoinHandle<switchboard_client::Result<()>>> = None;
    loop {
        let count = job.quota.next_batch(result.published, batch);
        if count == 0 {
            break;
        }
        job.channel.wait_for_room(count, job.stall).await?;
        let mut queued = 0;
        let mut refused = None;
        for _ in 0..count {
            if let Err(error) = job
                .client
                .publish(name, payload(job.body.clone()))
                .no_reply()
                .await
            {
                refused = Some(error);
                break;
            }
            queued += 1;
        }
        result.published += queued;
        job.channel.published.fetch_add(queued, Ordering::SeqCst);
        if let Some(error) = refused {
            return Err(error).context("publishing failed");
        }
        if let Some(previous) = flushing.take() {
            previous.await.context("a flush task failed")??;
        }
        let client = job.client.clone();
        flushing = Some(tokio::spawn(async move { client.flush().await }));
    }
    if let Some(previous) = flushing.take() {
        previous.await.context("a flush task failed")??;
    }
    // Publishing ends when the server has processed the last publish.
    job.client.flush().await.context("the final flush failed")?;
    Ok(())
}

/// Publishes `rate` messages per second from a thread of its own: std's sleep keeps
/// the pace far finer than the runtime's millisecond timer. Each publish only queues
/// the frame, so blocking on it costs microseconds.
async fn paced(job: &PublisherJob, rate: f64, result: &mut PublisherResult) -> Result<()> {
    let runtime = tokio::runtime::Handle::current();
    let client = job.client.clone();
    let channel = job.channel.clone();
    let (size, quota) = (job.size.max(TIMESTAMP_BYTES), job.quota);
    let gap = Duration::from_secs_f64(1.0 / rate);
    let (sent, error) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut sent: u64 = 0;
        loop {
            let due = start + gap.mul_f64(sent as f64);
            let more = match quota {
                Quota::Messages(total) => sent < total,
                Quota::Until(deadline) => due < deadline,
            };
            if !more {
                return (sent, None);
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut body = vec![0x5a; size];
            body[8..TIMESTAMP_BYTES].copy_from_slice(&sent.to_le_bytes());
            body[..8].copy_from_slice(&now_ns().to_le_bytes());
            let queued = runtime.block_on(
                client
                    .publish(&channel.name, payload(body.into()))
                    .no_reply(),
            );
            if let Err(error) = queued {
                return (sent, Some(anyhow!(error).context("publishing failed")));
            }
            sent += 1;
            channel.published.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await
    .context("the pacing thread failed")?;
    result.published = sent;
    if let Some(error) = error {
        return Err(error);
    }
    job.client.flush().await.context("the final flush failed")?;
    Ok(())
}

async fn acknowledged(
    job: &PublisherJob,
    in_flight: usize,
    result: &mut PublisherResult,
) -> Result<()> {
    let name = job.channel.name.as_str();
    let mut histogram = latency_histogram();
    let mut pending = FuturesOrdered::new();
    let outcome: Result<()> = async {
        loop {
            while pending.len() < in_flight && job.quota.next_batch(result.published, 1) == 1 {
                job.channel.wait_for_room(1, job.stall).await?;
                let queued_at = Instant::now();
                let ack = job
                    .client
                    .publish(name, payload(job.body.clone()))
                    .pipelined()
                    .await
                    .context("publishing failed")?;
                result.published += 1;
                job.channel.published.fetch_add(1, Ordering::SeqCst);
                pending.push_back(async move { (ack.await, queued_at) });
            }
            let Some((ack, queued_at)) = pending.next().await else {
                return Ok(());
            };
            record_micros(&mut histogram, queued_at.elapsed());
            ack.context("a publish was refused")?;
            result.acked += 1;
            job.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
    .await;
    result.ack_us = Some(histogram);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, parts) in [(10, 3), (2000, 7), (1, 4), (5, 5)] {
            let shares: Vec<u64> = (0..parts).map(|index| share(total, parts, index)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total);
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
        }
    }

    #[test]
    fn batches_stay_within_the_window() {
        assert_eq!(flush_batch(16, 4096), 1024);
        assert_eq!(flush_batch(1024, 4096), 256);
        assert_eq!(flush_batch(65536, 256), 8);
        assert_eq!(flush_batch(16, 8), 2);
        assert_eq!(flush_batch(16, 1), 1);
    }

    #[tokio::test]
    async fn a_publisher_waits_for_the_slowest_subscriber() {
        let channel = Arc::new(ChannelTraffic::new("c".into(), 2, 10));
        channel.published.store(10, Ordering::SeqCst);
        assert!(!channel.has_room(1));
        let waiter = {
            let channel = channel.clone();
            tokio::spawn(async move { channel.wait_for_room(5, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        // One subscriber far ahead is not enough; the slowest must reach 5.
        channel.received[0].0.store(10, Ordering::SeqCst);
        channel.received_up_to(10);
        channel.received[1].0.store(5, Ordering::SeqCst);
        channel.received_up_to(5);
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(waited, Ok(Ok(Ok(())))));
    }

    #[tokio::test]
    async fn a_broken_channel_releases_its_publishers() {
        let channel = Arc::new(ChannelTraffic::new("c".into(), 1, 1));
        channel.published.store(1, Ordering::SeqCst);
        let waiter = {
            let channel = channel.clone();
            tokio::spawn(async move { channel.wait_for_room(1, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        channel.break_flow();
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(waited, Ok(Ok(Err(_)))));
    }
}
