//! The cluster's history under faults, checked from the outside: three
//! `switchboard serve --cluster` processes on one Redis, a seeded random workload
//! (publishers on every node, subscribers replaying from seq 1 or live, some joining
//! mid-run, history reads; clients relaying to each other across nodes and joining,
//! posting to and leaving groups, in `cluster_history/traffic.rs`), and Redis killed
//! and restarted, paused, and its pub/sub connections cut while it runs. Every
//! operation is logged as a JSON line; the checker (`cluster_history/checker.rs`) then
//! says whether acks, deliveries, relays, group posts, every node's final history and
//! every node's client list agree.
//!
//! Redis runs with `appendfsync always` and the nodes with `--sync always`, the
//! strongest promise, so that a kill and restart must lose nothing acknowledged: any
//! acknowledged message missing afterwards is a finding, not an expected loss.
//!
//! The seed fixes the workload's choices (channels, pauses, which fault and for how
//! long), not the machine's timing, and every run prints it.
//! `SB_SEED=N cargo test -p switchboard --test cluster_history -- --ignored` runs one
//! seed again (or a random one without `SB_SEED`); `SB_CHECK_SECONDS` makes the faulty
//! phase longer than CI's; `SB_CHECK_PERSISTENCE=none` runs Redis without persistence
//! (and the nodes with `--sync never`), where a kill loses messages and the checker
//! requires that every loss was announced as a new epoch.

#[path = "cluster_history/checker.rs"]
mod checker;
mod support;
#[path = "cluster_history/traffic.rs"]
mod traffic;

use std::ffi::OsStr;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use checker::{Outcome, Record, Seen};
use futures::StreamExt;
use switchboard_client::{Client, ClientConfig, ErrorCode, Payload, PublishAck, Replay, Since};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};

const CHANNELS: [&str; 3] = ["ledger", "orders", "audit"];
const NODES: usize = 3;
const PUBLISHERS_PER_NODE: usize = 2;
const JOINERS: usize = 4;
/// The faulty phase in CI: short, on a busy two-core machine.
const CI_SECONDS: u64 = 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the run waits for the cluster to answer again after the faults.
const SETTLE: Duration = Duration::from_secs(15);

/// One run at a time: each starts three servers and a Redis on a machine with few cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A small seeded generator (splitmix64): the workload depends on the seed only.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }

    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

/// The run's log, in the order things were observed.
#[derive(Clone)]
struct Log {
    started: Instant,
    records: Arc<Mutex<Vec<Record>>>,
}

impl Log {
    fn new() -> Log {
        Log {
            started: Instant::now(),
            records: Arc::default(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn push(&self, record: Record) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Connects `name` to `node` and logs the client id it was given (every connection is
/// logged, so that the checker knows whom every node's client list must show).
async fn connect(log: &Log, addr: &str, node: usize, name: &str) -> (Client, u64) {
    let config = ClientConfig::new(addr, name).with_request_timeout(REQUEST_TIMEOUT);
    let deadline = Instant::now() + SETTLE;
    loop {
        let connected = match Client::connect(config.clone()).await {
            Ok(client) => client.identity().await.map(|me| (client, me.client_id)),
            Err(error) => Err(error),
        };
        match connected {
            Ok((client, client_id)) => {
                log.push(Record::Connected {
                    client: name.to_owned(),
                    node,
                    client_id,
                    at_ms: log.now(),
                });
                return (client, client_id);
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("{name} retries connecting: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("{name} cannot connect to {addr}: {error}"),
        }
    }
}

/// Closes `name`'s connection (its last handle) and logs that it left.
fn disconnect(log: &Log, client: Client, name: &str) {
    drop(client);
    log.push(Record::Disconnected {
        client: name.to_owned(),
        at_ms: log.now(),
    });
}

fn seen(message: &switchboard_client::ReceivedMessage) -> Seen {
    Seen {
        seq: message.seq(),
        id: message.id().to_string(),
        body: message.text().unwrap_or("<binary>").to_owned(),
    }
}

/// How a publish or a post ended, from its answer (or the lack of one).
fn outcome_of(
    result: Result<switchboard_client::Result<PublishAck>, tokio::time::error::Elapsed>,
) -> Outcome {
    match result {
        Ok(Ok(ack)) => Outcome::Acked {
            seq: ack.seq,
            id: ack.id.to_string(),
        },
        Ok(Err(error)) if error.code() == Some(ErrorCode::BackplaneUnavailable) => {
            Outcome::Unavailable {
                error: error.to_string(),
            }
        }
        Ok(Err(error)) if error.is_timeout() => Outcome::TimedOut,
        Err(_) => Outcome::TimedOut,
        Ok(Err(error)) => Outcome::Failed {
            error: error.to_string(),
        },
    }
}

/// Publishes `body` once and logs how it ended; the seq if it was acknowledged.
async fn publish(
    log: &Log,
    client: &Client,
    who: &str,
    node: usize,
    channel: &str,
    body: String,
) -> Option<u64> {
    let start_ms = log.now();
    let result = tokio::time::timeout(
        REQUEST_TIMEOUT * 2,
        client.publish(channel, Payload::text(&body)),
    )
    .await;
    let outcome = outcome_of(result);
    let seq = match outcome {
        Outcome::Acked { seq, .. } => Some(seq),
        _ => None,
    };
    log.push(Record::Publish {
        client: who.to_owned(),
        node,
        channel: channel.to_owned(),
        body,
        start_ms,
        end_ms: log.now(),
        outcome,
    });
    seq
}

/// A subscriber's own connection and task; `newest` is the highest seq it has seen.
struct Subscriber {
    name: String,
    channel: &'static str,
    newest: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Subscribes `name` on its own connection and follows the subscription in a task
/// until `stop`; `None` if the subscription was refused (logged).
async fn subscriber(
    log: &Log,
    addr: &str,
    node: usize,
    name: String,
    channel: &'static str,
    replay_from: Option<u64>,
    stop: Arc<AtomicBool>,
) -> Option<Subscriber> {
    let (client, _) = connect(log, addr, node, &name).await;
    let start_ms = log.now();
    let replay = replay_from.map_or(Replay::None, Replay::SinceSeq);
    let subscribed = client.subscribe(channel, replay).await;
    log.push(Record::Subscribe {
        sub: name.clone(),
        node,
        channel: channel.to_owned(),
        replay_from,
        start_ms,
        end_ms: log.now(),
        error: subscribed.as_ref().err().map(ToString::to_string),
    });
    let Ok(mut subscription) = subscribed else {
        disconnect(log, client, &name);
        return None;
    };
    let newest = Arc::new(AtomicU64::new(0));
    let task = {
        let (log, name, newest) = (log.clone(), name.clone(), newest.clone());
        tokio::spawn(async move {
            let mut told = 0;
            while !stop.load(Ordering::Relaxed) {
                let next =
                    match tokio::time::timeout(Duration::from_millis(200), subscription.next())
                        .await
                    {
                        Ok(next) => next,
                        Err(_) => continue,
                    };
                let message = match next {
                    Some(Ok(message)) => message,
                    ended => {
                        log.push(Record::SubscriptionEnded {
                            sub: name.clone(),
                            channel: channel.to_owned(),
                            at_ms: log.now(),
                            error: match ended {
                                Some(Err(error)) => error.to_string(),
                                _ => "the subscription ended".to_owned(),
                            },
                        });
                        return;
                    }
                };
                // Announced before the first message of its epoch, so before this one
                // if it belongs to the new epoch.
                let changes = client.epoch_changes();
                for change in changes.iter().skip(told) {
                    log.push(Record::EpochChanged {
                        sub: name.clone(),
                        channel: change.channel.clone(),
                        first_seq: change.first_seq,
                        at_ms: log.now(),
                    });
                }
                told = changes.len();
                newest.fetch_max(message.seq(), Ordering::Relaxed);
                log.push(Record::Deliver {
                    sub: name.clone(),
                    channel: channel.to_owned(),
                    at_ms: log.now(),
                    message: seen(&message),
                });
            }
        })
    };
    Some(Subscriber {
        name,
        channel,
        newest,
        task,
    })
}

/// Reads the whole history of `channel` once and logs it; a final read that fails is
/// logged as a final one only when `last_try`, the earlier tries as ordinary reads.
async fn read_history(
    log: &Log,
    client: &Client,
    reader: &str,
    node: usize,
    channel: &str,
    final_read: bool,
    last_try: bool,
) -> bool {
    let start_ms = log.now();
    let result = client
        .get_messages(channel, Since::All, None)
        .await
        .map(|messages| messages.iter().map(seen).collect::<Vec<_>>())
        .map_err(|error| error.to_string());
    let ok = result.is_ok();
    log.push(Record::History {
        reader: reader.to_owned(),
        node,
        channel: channel.to_owned(),
        start_ms,
        end_ms: log.now(),
        final_read: final_read && (ok || last_try),
        result,
    });
    ok
}

/// Publishes one last message to `channel` once the cluster is back, retrying within
/// the settle bound; its seq.
async fn fence(log: &Log, client: &Client, channel: &str) -> Result<u64, checker::Violation> {
    let deadline = Instant::now() + SETTLE;
    let mut attempt = 0;
    loop {
        // Each try a body of its own: a refused one may still have landed.
        attempt += 1;
        let body = format!("fence-{channel}-{attempt}");
        if let Some(seq) = publish(log, client, "fence", 0, channel, body).await {
            return Ok(seq);
        }
        if Instant::now() >= deadline {
            return Err(checker::Violation {
                invariant: "cluster-comes-back",
                detail: format!(
                    "no publish to `{channel}` acknowledged within {SETTLE:?} of the last fault"
                ),
                records: Vec::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (bounded) until every subscriber has seen its channel's fence, and logs how
/// far each got.
async fn drain(log: &Log, subscribers: &[Subscriber], fences: &[(&str, u64)]) {
    for subscriber in subscribers {
        let wanted = fences
            .iter()
            .find(|(channel, _)| *channel == subscriber.channel)
            .map_or(0, |(_, seq)| *seq);
        let deadline = Instant::now() + SETTLE;
        while subscriber.newest.load(Ordering::Relaxed) < wanted
            && Instant::now() < deadline
            && !subscriber.task.is_finished()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log.push(Record::Drained {
            sub: subscriber.name.clone(),
            channel: subscriber.channel.to_owned(),
            upto: subscriber.newest.load(Ordering::Relaxed),
            wanted,
        });
    }
}

/// Reads every channel's whole history from every node, retrying a refused read within
/// the settle bound.
async fn read_final_histories(log: &Log, addrs: &[String]) {
    for (node, addr) in addrs.iter().enumerate() {
        let who = format!("final{node}");
        let (client, _) = connect(log, addr, node, &who).await;
        for channel in CHANNELS {
            let deadline = Instant::now() + SETTLE;
            loop {
                let last_try = Instant::now() >= deadline;
                if read_history(log, &client, &who, node, channel, true, last_try).await || last_try
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Injects faults into Redis until `until`, one at a time with calm in between.
fn inject_faults(redis: &mut RedisProc, log: &Log, rng: &mut Rng, until: Instant) {
    let mut kind = rng.below(3);
    loop {
        std::thread::sleep(rng.millis(1000, 1800));
        if Instant::now() >= until {
            return;
        }
        let start_ms = log.now();
        let name = match kind % 3 {
            0 => {
                redis.kill();
                std::thread::sleep(rng.millis(100, 500));
                redis.restart().expect("redis restarts on its AOF");
                "kill-restart"
            }
            1 => {
                redis.pause().expect("SIGSTOP");
                std::thread::sleep(rng.millis(300, 1200));
                redis.resume().expect("SIGCONT");
                "pause"
            }
            _ => {
                redis
                    .kill_pubsub_clients()
                    .expect("CLIENT KILL TYPE pubsub");
                "pubsub-kill"
            }
        };
        log.push(Record::Fault {
            kind: name.to_owned(),
            start_ms,
            end_ms: log.now(),
        });
        kind += 1;
    }
}

/// Starts the nodes as `switchboard serve --cluster` processes on the Redis at `url`.
fn start_nodes(
    work: &std::path::Path,
    url: &str,
    sync: &str,
) -> Vec<(support::KillOnDrop, String)> {
    let mut servers = Vec::new();
    for node in 0..NODES {
        let data = work.join(format!("node{node}"));
        // Channels keep far more than a run publishes, so that no acknowledged
        // message leaves the history by retention, however long the run.
        let args: [&OsStr; 10] = [
            OsStr::new("--history"),
            OsStr::new("1000000"),
            OsStr::new("--cluster"),
            OsStr::new(url),
            OsStr::new("--sync"),
            OsStr::new(sync),
            OsStr::new("--cluster-timeout"),
            OsStr::new("1s"),
            OsStr::new("--data-dir"),
            data.as_os_str(),
        ];
        servers.push(support::serve_process(&args));
    }
    servers
}

/// Runs the workload with `seed` for `seconds` of faults, checks the log, and fails
/// with the seed, the first broken invariant and the whole log if it does not hold.
fn run(seed: u64, seconds: u64) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    eprintln!("cluster history run: SB_SEED={seed}, {seconds} s of faults");
    let mut rng = Rng(seed);
    let work = tempfile::tempdir().expect("temp dir");
    // Without persistence a kill loses what Redis held, which the nodes must announce
    // as a new epoch: a run of its own by hand, `SB_CHECK_PERSISTENCE=none`.
    let durable = std::env::var("SB_CHECK_PERSISTENCE").map_or(true, |value| value != "none");
    let (options, sync) = match durable {
        true => (RedisOptions::durable(), "always"),
        false => (RedisOptions::default(), "never"),
    };
    let mut redis = RedisProc::start(options).expect("redis-server starts");
    let servers = start_nodes(work.path(), &redis.url(), sync);
    let addrs: Vec<String> = servers.iter().map(|(_, addr)| addr.clone()).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let log = Log::new();
    let stop_work = Arc::new(AtomicBool::new(false));
    let stop_subscribers = Arc::new(AtomicBool::new(false));

    let mut subscribers = runtime.block_on(async {
        let mut subscribers = Vec::new();
        for (i, channel) in CHANNELS.into_iter().enumerate() {
            for (offset, replay) in [(0, Some(1)), (1, None)] {
                let node = (i + offset) % NODES;
                let name = format!("s-{channel}-{node}-{}", replay.map_or("live", |_| "replay"));
                let made = subscriber(
                    &log,
                    &addrs[node],
                    node,
                    name,
                    channel,
                    replay,
                    stop_subscribers.clone(),
                )
                .await;
                subscribers.push(made.expect("subscribes before any fault"));
            }
        }
        subscribers
    });
    let (members, gone_id) = runtime.block_on(traffic::start(&log, &addrs, &stop_subscribers));

    // The workload: publishers and readers on every node, subscribers joining, members
    // relaying to each other and posting to groups.
    let mut work_tasks = Vec::new();
    for member in &members {
        let others: Vec<u64> = members
            .iter()
            .filter(|other| other.client_id != member.client_id)
            .map(|other| other.client_id)
            .chain([gone_id])
            .collect();
        work_tasks.push(runtime.spawn(traffic::work(
            log.clone(),
            member.client.clone(),
            member.name.clone(),
            member.node,
            others,
            rng.fork(),
            stop_work.clone(),
        )));
    }
    for (node, addr) in addrs.iter().enumerate() {
        for k in 0..PUBLISHERS_PER_NODE {
            let (log, addr, stop) = (log.clone(), addr.clone(), stop_work.clone());
            let mut rng = rng.fork();
            work_tasks.push(runtime.spawn(async move {
                let who = format!("p{node}{k}");
                let (client, _) = connect(&log, &addr, node, &who).await;
                let mut count = 0;
                while !stop.load(Ordering::Relaxed) {
                    let channel = CHANNELS[rng.below(CHANNELS.len() as u64) as usize];
                    count += 1;
                    publish(&log, &client, &who, node, channel, format!("{who}-{count}")).await;
                    tokio::time::sleep(rng.millis(20, 60)).await;
                }
                disconnect(&log, client, &who);
            }));
        }
        let (log, addr, stop) = (log.clone(), addr.clone(), stop_work.clone());
        let mut rng = rng.fork();
        work_tasks.push(runtime.spawn(async move {
            let who = format!("r{node}");
            let (client, _) = connect(&log, &addr, node, &who).await;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(rng.millis(300, 800)).await;
                let channel = CHANNELS[rng.below(CHANNELS.len() as u64) as usize];
                read_history(&log, &client, &who, node, channel, false, false).await;
            }
            disconnect(&log, client, &who);
        }));
    }
    let joiners = {
        let (log, addrs, stop) = (log.clone(), addrs.clone(), stop_subscribers.clone());
        let stop_work = stop_work.clone();
        let mut rng = rng.fork();
        let spacing = seconds * 1000 / (JOINERS as u64 + 1);
        runtime.spawn(async move {
            let mut joined = Vec::new();
            for i in 0..JOINERS {
                tokio::time::sleep(rng.millis(spacing / 2, spacing + 1)).await;
                if stop_work.load(Ordering::Relaxed) {
                    break;
                }
                let node = rng.below(NODES as u64) as usize;
                let channel = CHANNELS[rng.below(CHANNELS.len() as u64) as usize];
                let replay = (i % 2 == 0).then_some(1);
                let name = format!("j{i}-{channel}-{node}");
                if let Some(made) = subscriber(
                    &log,
                    &addrs[node],
                    node,
                    name,
                    channel,
                    replay,
                    stop.clone(),
                )
                .await
                {
                    joined.push(made);
                }
            }
            joined
        })
    };

    let faults_until = Instant::now() + Duration::from_secs(seconds);
    let mut fault_rng = rng.fork();
    let faults_log = log.clone();
    let faults = std::thread::spawn(move || {
        inject_faults(&mut redis, &faults_log, &mut fault_rng, faults_until);
        redis
    });
    let redis = faults.join().expect("the fault thread");

    let outcome = runtime.block_on(async {
        // The faults are over: the workload stops, then each channel gets one last
        // message every subscriber of it is owed.
        stop_work.store(true, Ordering::Relaxed);
        for task in work_tasks {
            task.await.expect("a workload task");
        }
        subscribers.extend(joiners.await.expect("the joiners"));
        let (fencer, _) = connect(&log, &addrs[0], 0, "fence").await;
        let mut fences = Vec::new();
        for channel in CHANNELS {
            fences.push((channel, fence(&log, &fencer, channel).await?));
        }
        drain(&log, &subscribers, &fences).await;
        traffic::settle(&log).await;
        traffic::read_directories(&log, &addrs).await;
        read_final_histories(&log, &addrs).await;
        stop_subscribers.store(true, Ordering::Relaxed);
        for subscriber in subscribers {
            subscriber.task.await.expect("a subscriber task");
        }
        for member in members {
            member.finish(&log).await;
        }
        checker::check(&log.records())
    });
    drop(servers);
    drop(redis);

    let records = log.records();
    let kept = work.keep();
    let path = kept.join("cluster-history.jsonl");
    let mut file = std::fs::File::create(&path).expect("log file");
    for record in &records {
        let line = serde_json::to_string(record).expect("a record as JSON");
        writeln!(file, "{line}").expect("log written");
    }
    eprintln!("SB_SEED={seed}: {}", summary(&records));
    if let Err(violation) = outcome {
        let everything = std::fs::read_to_string(&path).unwrap_or_default();
        eprintln!("the whole log ({}):\n{everything}", path.display());
        panic!("SB_SEED={seed}: {violation}");
    }
    // A passing run leaves nothing behind.
    let _ = std::fs::remove_dir_all(&kept);
}

/// What the run did, in a line: enough to see that the faults bit.
fn summary(records: &[Record]) -> String {
    let (mut acked, mut indeterminate, mut delivered, mut reads, mut epochs) = (0, 0, 0, 0, 0);
    let mut subscribed = 0;
    let (mut relayed, mut directs, mut posted, mut group_messages) = (0, 0, 0, 0);
    let (mut refused_posts, mut statuses) = (0, std::collections::BTreeMap::new());
    let mut faults: Vec<&str> = Vec::new();
    for record in records {
        match record {
            Record::Publish {
                outcome: Outcome::Acked { .. },
                ..
            } => acked += 1,
            Record::Publish { .. } => indeterminate += 1,
            Record::Deliver { .. } => delivered += 1,
            Record::Subscribe { error: None, .. } => subscribed += 1,
            Record::History { .. } => reads += 1,
            Record::EpochChanged { .. } => epochs += 1,
            Record::Fault { kind, .. } => faults.push(kind),
            Record::Relay {
                result: Ok(outcomes),
                ..
            } => {
                relayed += 1;
                for (_, status) in outcomes {
                    *statuses.entry(status.as_str()).or_insert(0) += 1;
                }
            }
            Record::Direct { .. } => directs += 1,
            Record::Post {
                outcome: Outcome::Acked { .. },
                ..
            } => posted += 1,
            Record::Post { .. } => refused_posts += 1,
            Record::GroupMessage { .. } => group_messages += 1,
            _ => {}
        }
    }
    format!(
        "{} records: {acked} publishes acknowledged, {indeterminate} refused or timed out, \
         {subscribed} subscriptions, {delivered} deliveries, {reads} history reads, \
         {epochs} epoch changes told, {relayed} relays answered (receivers {statuses:?}), \
         {directs} relayed bodies received, {posted} group posts accepted and {refused_posts} \
         not, {group_messages} group posts received, faults {faults:?}",
        records.len()
    )
}

fn seconds() -> u64 {
    std::env::var("SB_CHECK_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CI_SECONDS)
}

#[test]
fn history_holds_under_faults_seed_1() {
    run(20_261_206, seconds());
}

#[test]
fn history_holds_under_faults_seed_2() {
    run(7_340_033, seconds());
}

/// One more run: the seed from `SB_SEED`, or a fresh one (printed).
#[test]
#[ignore = "by hand: SB_SEED=N (or random) and SB_CHECK_SECONDS"]
fn history_holds_under_faults_chosen_seed() {
    let seed = std::env::var("SB_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        });
    run(seed, seconds());
}

/// Checks a log a failed run kept (its path is printed): `SB_CHECK_LOG=PATH`.
#[test]
#[ignore = "by hand: SB_CHECK_LOG=path of a kept cluster-history.jsonl"]
fn check_a_kept_log() {
    let Ok(path) = std::env::var("SB_CHECK_LOG") else {
        panic!("set SB_CHECK_LOG to the path of a kept cluster-history.jsonl");
    };
    let text = std::fs::read_to_string(&path).expect("the log is readable");
    let records: Vec<Record> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a record per line"))
        .collect();
    if let Err(violation) = checker::check(&records) {
        panic!("{violation}");
    }
}
