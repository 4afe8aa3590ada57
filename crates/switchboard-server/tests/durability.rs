//! Durable history on a real data directory: what a restart brings back, retention,
//! memory-only channels, corrupt records and unusable directories.

mod common;

use bytes::Bytes;
use common::RawClient;
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, CreateGroup, DeleteChannel, Durability, GetMessage,
    GroupMembers, JoinGroup, Packet, Publish, Replay, Scope, Since, Subscribe,
};
use switchboard_server::{Server, ServerHandle, SyncPolicy};

async fn start(dir: &std::path::Path, sync: SyncPolicy) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(dir)
        .sync(sync)
        .start()
        .await
        .expect("server starts on the data directory")
}

fn publish(channel: &str, text: &str) -> Packet {
    Packet::Publish(Publish {
        channel: channel.into(),
        content_type: "text/plain".into(),
        body: Bytes::copy_from_slice(text.as_bytes()),
        ..Publish::default()
    })
}

async fn publish_ok(client: &mut RawClient, channel: &str, text: &str) -> u64 {
    match client.request(publish(channel, text)).await {
        Packet::PublishAck(ack) => ack.seq,
        other => panic!("publish failed: {other:?}"),
    }
}

/// Every message of a history, as (seq, text).
async fn history(client: &mut RawClient, scope: Scope, channel: &str) -> Vec<(u64, String)> {
    fetch(client, scope, channel, Since::All, None).await
}

/// GET_MESSAGES from `since`, at most `limit`, as (seq, text).
async fn fetch(
    client: &mut RawClient,
    scope: Scope,
    channel: &str,
    since: Since,
    limit: Option<u64>,
) -> Vec<(u64, String)> {
    let messages = client.fetch_messages(scope, channel, since, limit).await;
    (messages.into_iter())
        .map(|m| (m.seq, String::from_utf8_lossy(&m.body).into_owned()))
        .collect()
}

/// The first 20 messages of channel `tweets`.
async fn first_tweets(client: &mut RawClient) -> Vec<(u64, String)> {
    fetch(client, Scope::Channel, "tweets", Since::Seq(1), Some(20)).await
}

/// Creates `name` with room for 20 000 messages: more than a history keeps in memory.
async fn create_long_channel(client: &mut RawClient, name: &str) {
    client.create_channel(name, 20_000).await;
}

/// A durable history keeps only its newest messages in memory (8 192 at most): fetches,
/// lookups by id and replays that reach older ones read them back from the store, and
/// give exactly what was published, before and after a restart.
#[tokio::test]
async fn a_history_longer_than_what_stays_in_memory_reads_back_whole() {
    const COUNT: u64 = 10_000;
    let text = |n: u64| format!("message {n} {}", "x".repeat((n % 7) as usize));
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), SyncPolicy::default()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    create_long_channel(&mut alice, "log").await;
    let mut ids = Vec::new();
    for n in 1..=COUNT {
        match alice.request(publish("log", &text(n))).await {
            Packet::PublishAck(ack) => ids.push(ack.id),
            other => panic!("publish failed: {other:?}"),
        }
    }
    let all: Vec<(u64, String)> = (1..=COUNT).map(|n| (n, text(n))).collect();
    assert_eq!(common::stat(&server, "history_messages_read_back"), 0);
    reads_give_back(&mut alice, &all, &ids).await;
    let read_back = common::stat(&server, "history_messages_read_back");
    // At least what is out of memory, for the whole fetch.
    assert!(read_back >= COUNT - 8_192, "{read_back} read back");
    drop(alice);
    server.shutdown().await;

    let server = start(dir.path(), SyncPolicy::default()).await;
    let (mut bob, _) = RawClient::connect_session(&server, "bob").await;
    reads_give_back(&mut bob, &all, &ids).await;
    assert!(common::stat(&server, "history_messages_read_back") >= COUNT - 8_192);
    drop(bob);
    server.shutdown().await;
}

/// `history_in_memory` bounds what a durable history keeps in memory: with 4 KiB, a
/// history of 200 short messages holds a few dozen, and reads the rest back whole.
#[tokio::test]
async fn history_in_memory_bounds_the_messages_a_history_holds() {
    const COUNT: u64 = 200;
    let text = |n: u64| format!("message {n:03} {}", "y".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    // Synced before each ack: every message before the last is written, free to leave.
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(dir.path())
        .sync(SyncPolicy::Always)
        .configure(|config| config.history_in_memory = 4096)
        .start()
        .await
        .unwrap();
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    for n in 1..=COUNT {
        publish_ok(&mut alice, "log", &text(n)).await;
    }
    let all: Vec<(u64, String)> = (1..=COUNT).map(|n| (n, text(n))).collect();
    read_whole_and_mostly_back(&server, &mut alice, Scope::Channel, "log", &all).await;
    drop(alice);
    server.shutdown().await;
}

/// A data directory's store that can pretend it has written nothing yet: while `holding`,
/// [`Storage::written_through`] says 0, as a store that lags behind a burst does. Its
/// reads wait while `gate` is held, and count in `reads`. With `slow_syncs_ms` set, it
/// syncs on the caller's thread when asked to ([`Storage::sync_here`]) and takes that
/// long, as a busy disk does; `syncs_here` counts those syncs as they start.
struct Lagging {
    store: switchboard_server::FjallStorage,
    holding: std::sync::atomic::AtomicBool,
    gate: std::sync::Mutex<()>,
    reads: std::sync::atomic::AtomicU64,
    slow_syncs_ms: std::sync::atomic::AtomicU64,
    syncs_here: std::sync::atomic::AtomicU64,
}

impl Lagging {
    /// A server on a `Lagging` store in `dir`, keeping 4 KiB of each history in memory, its
    /// publishes acknowledged once synced.
    async fn serve(
        dir: &std::path::Path,
        holding: bool,
    ) -> (std::sync::Arc<Lagging>, ServerHandle) {
        let store = std::sync::Arc::new(Lagging {
            store: switchboard_server::FjallStorage::open(dir, SyncPolicy::Always).unwrap(),
            holding: std::sync::atomic::AtomicBool::new(holding),
            gate: std::sync::Mutex::new(()),
            reads: std::sync::atomic::AtomicU64::new(0),
            slow_syncs_ms: std::sync::atomic::AtomicU64::new(0),
            syncs_here: std::sync::atomic::AtomicU64::new(0),
        });
        let server = Server::builder()
            .listen_tcp("127.0.0.1:0")
            .storage(store.clone())
            .sync(SyncPolicy::Always)
            .configure(|config| config.history_in_memory = 4096)
            .start()
            .await
            .unwrap();
        (store, server)
    }
}

impl switchboard_server::Storage for Lagging {
    fn is_durable(&self) -> bool {
        self.store.is_durable()
    }
    fn load(&self) -> Result<switchboard_server::Snapshot, switchboard_server::StorageError> {
        self.store.load()
    }
    fn put_channel(
        &self,
        name: &str,
        options: &ChannelOptions,
    ) -> Result<(), switchboard_server::StorageError> {
        self.store.put_channel(name, options)
    }
    fn append(
        &self,
        kind: switchboard_server::LogKind,
        log: &str,
        message: &std::sync::Arc<switchboard_server::StoredMessage>,
    ) -> Result<(), switchboard_server::StorageError> {
        self.store.append(kind, log, message)
    }
    fn trim(&self, kind: switchboard_server::LogKind, log: &str, through_seq: u64) {
        self.store.trim(kind, log, through_seq);
    }
    fn put_group(
        &self,
        name: &str,
        description: &str,
    ) -> Result<(), switchboard_server::StorageError> {
        self.store.put_group(name, description)
    }
    fn add_member(
        &self,
        group: &str,
        member: &str,
    ) -> Result<(), switchboard_server::StorageError> {
        self.store.add_member(group, member)
    }
    fn remove_member(
        &self,
        group: &str,
        member: &str,
    ) -> Result<(), switchboard_server::StorageError> {
        self.store.remove_member(group, member)
    }
    fn delete_channel(&self, name: &str) -> Result<(), switchboard_server::StorageError> {
        self.store.delete_channel(name)
    }
    fn delete_group(&self, name: &str) -> Result<(), switchboard_server::StorageError> {
        self.store.delete_group(name)
    }
    fn sync(&self) -> switchboard_server::SyncFuture {
        self.store.sync()
    }
    fn sync_here(&self) -> Option<Result<(), switchboard_server::StorageError>> {
        let slow = self.slow_syncs_ms.load(std::sync::atomic::Ordering::SeqCst);
        if slow == 0 {
            return self.store.sync_here();
        }
        self.syncs_here
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(slow));
        self.store.sync_here().or(Some(Ok(())))
    }
    fn can_sync_here(&self) -> bool {
        self.slow_syncs_ms.load(std::sync::atomic::Ordering::SeqCst) > 0
            || self.store.can_sync_here()
    }
    fn can_read_back(&self) -> bool {
        self.store.can_read_back()
    }
    fn queued_through(&self) -> u64 {
        self.store.queued_through()
    }
    fn written_through(&self) -> u64 {
        if self.holding.load(std::sync::atomic::Ordering::SeqCst) {
            0
        } else {
            self.store.written_through()
        }
    }
    fn read_log(
        &self,
        kind: switchboard_server::LogKind,
        log: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<switchboard_proto::packet::Message>, switchboard_server::StorageError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(self.gate.lock());
        self.store.read_log(kind, log, first, last)
    }
    fn close(&self, next_seqs: &[(switchboard_server::LogKind, String, u64)]) {
        self.store.close(next_seqs);
    }
}

/// Publishes the store has not written when the last of them is served leave the history
/// over its `history_in_memory` until the server comes back to it: within a few seconds
/// of the store writing them, with no publish after, all but a few dozen are out of
/// memory.
#[tokio::test]
async fn a_history_left_over_its_memory_bound_lets_go_once_the_store_wrote() {
    const COUNT: u64 = 200;
    let text = |n: u64| format!("message {n:03} {}", "x".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let (store, server) = Lagging::serve(dir.path(), true).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    for n in 1..=COUNT {
        publish_ok(&mut alice, "lagged", &text(n)).await;
    }
    // Nothing left memory while the store seemed behind, and nothing is published once
    // it caught up: the server's own rounds let the rest go.
    store
        .holding
        .store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let all: Vec<(u64, String)> = (1..=COUNT).map(|n| (n, text(n))).collect();
    read_whole_and_mostly_back(&server, &mut alice, Scope::Channel, "lagged", &all).await;
    drop(alice);
    server.shutdown().await;
}

/// A subscribe whose replay reaches out of memory reads the store with no lock held: a
/// publish to the channel is served while the read waits, and the subscriber still gets
/// every message once and in order, the one published meanwhile with the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_read_from_the_store_holds_no_lock_and_loses_nothing() {
    replay_while_a_publish_waits("replayed", Replay::SinceSeq(1), 1).await;
}

/// The same, for a wildcard asking for the last messages: the one published meanwhile
/// counts among them, and the oldest planned gives way to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wildcard_replay_of_the_last_messages_counts_those_published_meanwhile() {
    replay_while_a_publish_waits("replayed.>", Replay::Last(150), 52).await;
}

/// Publishes 200 messages to `replayed` (or `replayed.now` for a wildcard `pattern`) on a
/// store that keeps most of them out of memory, subscribes with `replay` while the
/// store's reads wait, publishes one more, and checks the replay runs from seq `first`
/// through that one, followed live by the next.
async fn replay_while_a_publish_waits(pattern: &str, replay: Replay, first: u64) {
    const COUNT: u64 = 200;
    let text = |n: u64| format!("message {n:03} {}", "r".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let (store, server) = Lagging::serve(dir.path(), false).await;
    let channel = if pattern.ends_with('>') {
        "replayed.now"
    } else {
        "replayed"
    };
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    for n in 1..=COUNT {
        publish_ok(&mut alice, channel, &text(n)).await;
    }
    let (mut bob, _) = RawClient::connect_session(&server, "bob").await;
    // The gate is held on a thread of its own for five seconds at most: a publish that
    // waited for the read would otherwise stall the runtime, and with it the test.
    let (release, released_after) = std::sync::mpsc::channel::<()>();
    let (gate_held, on_gate_held) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = std::thread::spawn({
        let (store, released) = (store.clone(), released.clone());
        move || {
            let gate = store.gate.lock().unwrap();
            gate_held.send(()).unwrap();
            let _ = released_after.recv_timeout(std::time::Duration::from_secs(5));
            released.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(gate);
        }
    });
    on_gate_held.recv().unwrap();
    let reads = store.reads.load(std::sync::atomic::Ordering::SeqCst);
    let id = bob.next_request_id();
    let subscribe = Packet::Subscribe(Subscribe {
        pattern: pattern.into(),
        replay,
    });
    bob.send(id, switchboard_proto::Flags::empty(), &subscribe)
        .await;
    assert!(
        common::eventually(std::time::Duration::from_secs(4), || {
            store.reads.load(std::sync::atomic::Ordering::SeqCst) > reads
        })
        .await,
        "the replay reads the store"
    );
    assert_eq!(
        publish_ok(&mut alice, channel, &text(COUNT + 1)).await,
        COUNT + 1
    );
    assert!(
        !released.load(std::sync::atomic::Ordering::SeqCst),
        "a publish is served while the replay waits on the store"
    );
    release.send(()).unwrap();
    holder.join().unwrap();
    let replay_count = match bob.next_packet().await.expect("an answer") {
        Packet::SubscribeAck(ack) => ack.replay_count,
        other => panic!("subscribe: {other:?}"),
    };
    assert_eq!(replay_count, COUNT + 2 - first);
    for n in first..=COUNT + 2 {
        if n == COUNT + 2 {
            publish_ok(&mut alice, channel, &text(n)).await;
        }
        match bob.next_packet().await.expect("a message") {
            Packet::Message(message) => {
                let got = (
                    message.seq,
                    String::from_utf8_lossy(&message.body).into_owned(),
                );
                assert_eq!(got, (n, text(n)));
            }
            other => panic!("replay: {other:?}"),
        }
    }
    drop((alice, bob));
    server.shutdown().await;
}

/// A publisher awaiting each ack has its sync made on its session's thread; a slow disk
/// then holds up that thread, and only that: another session is served meanwhile, also
/// when the machine is loaded (run beside another copy of this file's tests, this failed
/// before the sync handed the worker's place over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sync_on_a_sessions_thread_holds_up_no_other_session() {
    const SLOW_MS: u64 = 600;
    let dir = tempfile::tempdir().unwrap();
    let (store, server) = Lagging::serve(dir.path(), false).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    let (mut bob, _) = RawClient::connect_session(&server, "bob").await;
    // Once to create the channel and settle both sessions, with fast syncs.
    publish_ok(&mut alice, "slow", "first").await;
    store
        .slow_syncs_ms
        .store(SLOW_MS, std::sync::atomic::Ordering::SeqCst);
    let publisher = tokio::spawn(async move {
        let seq = publish_ok(&mut alice, "slow", "second").await;
        (seq, alice)
    });
    let started = std::time::Instant::now();
    while store.syncs_here.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the publish is synced on its session's thread"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let asked = std::time::Instant::now();
    let answer = bob.request(Packet::ListChannels(Default::default())).await;
    let waited = asked.elapsed();
    assert!(matches!(answer, Packet::ChannelList(_)), "{answer:?}");
    assert!(
        waited < std::time::Duration::from_millis(SLOW_MS / 2),
        "another session waited {waited:?} for a sync it did not ask for"
    );
    let (seq, alice) = publisher.await.unwrap();
    assert_eq!(seq, 2);
    drop((alice, bob));
    server.shutdown().await;
}

/// Fetches `name` whole, checks it gives `all` (200 messages of about 170-byte frames),
/// and that all but the two dozen a 4 KiB `history_in_memory` holds were read back.
async fn read_whole_and_mostly_back(
    server: &ServerHandle,
    client: &mut RawClient,
    scope: Scope,
    name: &str,
    all: &[(u64, String)],
) {
    assert_eq!(history(client, scope, name).await, all);
    let read_back = common::stat(server, "history_messages_read_back");
    assert!(
        (150..=190).contains(&read_back),
        "{read_back} of {} read back",
        all.len()
    );
}

/// A group's history is restored the same way: streamed in, its older messages left in
/// the store and read back whole.
#[tokio::test]
async fn a_group_history_comes_back_from_a_restart_out_of_memory() {
    const COUNT: u64 = 200;
    let text = |n: u64| format!("post {n:03} {}", "z".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let start_small = || {
        Server::builder()
            .listen_tcp("127.0.0.1:0")
            .data_dir(dir.path())
            .configure(|config| config.history_in_memory = 4096)
            .start()
    };
    let server = start_small().await.unwrap();
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    let created = alice
        .request(Packet::CreateGroup(CreateGroup {
            name: "club".into(),
            description: "readers".into(),
        }))
        .await;
    assert!(matches!(created, Packet::Ok(_)), "{created:?}");
    let joined = alice
        .request(Packet::JoinGroup(JoinGroup {
            group: "club".into(),
        }))
        .await;
    assert!(matches!(joined, Packet::Ok(_)), "{joined:?}");
    for n in 1..=COUNT {
        let mut post = publish("club", &text(n));
        if let Packet::Publish(p) = &mut post {
            p.scope = Scope::Group;
        }
        let acked = alice.request(post).await;
        assert!(matches!(acked, Packet::PublishAck(_)), "{acked:?}");
    }
    drop(alice);
    server.shutdown().await;

    let server = start_small().await.unwrap();
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    let all: Vec<(u64, String)> = (1..=COUNT).map(|n| (n, text(n))).collect();
    read_whole_and_mostly_back(&server, &mut alice, Scope::Group, "club", &all).await;
    drop(alice);
    server.shutdown().await;
}

/// Messages with hashtags leave memory like the others: the channel's history reads them
/// back, the hashtag index still serves its recent ones, before and after a restart, and
/// deleting the channel takes them out of the index too.
#[tokio::test]
async fn tagged_messages_out_of_memory_leave_their_tags_with_their_channel() {
    const COUNT: u64 = 9_000;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), SyncPolicy::default()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    create_long_channel(&mut alice, "tweets").await;
    let text = |n: u64| match n {
        1..=20 => format!("early {n} #dawn"),
        _ => format!("tweet {n}"),
    };
    for n in 1..=COUNT {
        publish_ok(&mut alice, "tweets", &text(n)).await;
    }
    // Another channel's message under the same tag stays when this one goes.
    publish_ok(&mut alice, "other", "elsewhere #dawn").await;
    let early: Vec<(u64, String)> = (1..=20).map(|n| (n, text(n))).collect();
    let read_back = common::stat(&server, "history_messages_read_back");
    let first = first_tweets(&mut alice).await;
    assert_eq!(
        first, early,
        "the tagged messages, read back from the store"
    );
    assert_eq!(
        common::stat(&server, "history_messages_read_back") - read_back,
        20,
        "none of them was still in memory"
    );
    let tagged = history(&mut alice, Scope::Tag, "dawn").await;
    assert_eq!(
        tagged.len(),
        21,
        "the index keeps its recent ones: {tagged:?}"
    );
    // Restarted, the history streams in from the store and lets the same ones go; the
    // index gets its recent ones back, and the channel's deletion still reaches them.
    drop(alice);
    server.shutdown().await;
    let server = start(dir.path(), SyncPolicy::default()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    assert_eq!(history(&mut alice, Scope::Tag, "dawn").await, tagged);
    let first = first_tweets(&mut alice).await;
    assert_eq!(first, early);
    assert_eq!(
        common::stat(&server, "history_messages_read_back"),
        20,
        "after the restart too, none of them was in memory"
    );
    let deleted = alice
        .request(Packet::DeleteChannel(DeleteChannel {
            name: "tweets".into(),
        }))
        .await;
    assert!(matches!(deleted, Packet::Ok(_)), "{deleted:?}");
    let tagged = history(&mut alice, Scope::Tag, "dawn").await;
    assert_eq!(tagged, [(1, "elsewhere #dawn".to_owned())]);
    drop(alice);
    server.shutdown().await;
}

/// The reads of [`a_history_longer_than_what_stays_in_memory_reads_back_whole`]: the
/// channel `log` holds `all` (seq, text), published with `ids`.
async fn reads_give_back(client: &mut RawClient, all: &[(u64, String)], ids: &[uuid::Uuid]) {
    let whole = history(client, Scope::Channel, "log").await;
    assert!(whole == all, "the whole history, in order");
    let some = fetch(client, Scope::Channel, "log", Since::Seq(100), Some(5)).await;
    assert_eq!(some, all[99..104]);
    for n in [10, 5_000, all.len()] {
        let id = ids[n - 1];
        let get = Packet::GetMessage(GetMessage {
            scope: Scope::Channel,
            channel: "log".into(),
            id: Some(id),
        });
        match client.request(get).await {
            Packet::Message(message) => {
                assert_eq!((message.seq, message.id), (n as u64, id));
                assert_eq!(message.body, all[n - 1].1.as_bytes());
            }
            other => panic!("message {n} by id: {other:?}"),
        }
    }
    // A replay from seq 1 001 reaches past what stays in memory.
    let id = client.next_request_id();
    let subscribe = Packet::Subscribe(Subscribe {
        pattern: "log".into(),
        replay: Replay::SinceSeq(1_001),
    });
    client
        .send(id, switchboard_proto::Flags::empty(), &subscribe)
        .await;
    let replay_count = match client.next_packet().await.expect("an answer") {
        Packet::SubscribeAck(ack) => ack.replay_count,
        other => panic!("subscribe: {other:?}"),
    };
    assert_eq!(
        replay_count as usize,
        all.len() - 1_000,
        "the whole replay fits its bound"
    );
    for expected in &all[1_000..] {
        match client.next_packet().await.expect("a replayed message") {
            Packet::Message(message) => {
                let got = (
                    message.seq,
                    String::from_utf8_lossy(&message.body).into_owned(),
                );
                assert_eq!(&got, expected);
            }
            other => panic!("replay: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_restart_brings_back_channels_history_groups_and_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), SyncPolicy::default()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    match alice
        .request(Packet::CreateChannel(CreateChannel {
            name: "tweets".into(),
            options: ChannelOptions {
                history: Some(5),
                max_chars: Some(150),
                ..ChannelOptions::default()
            },
        }))
        .await
    {
        Packet::ChannelInfo(info) => {
            assert_eq!(info.options.durability, Some(Durability::Interval))
        }
        other => panic!("{other:?}"),
    }
    for i in 1..=20 {
        assert_eq!(
            publish_ok(&mut alice, "tweets", &format!("tweet {i} #rust")).await,
            i
        );
    }
    publish_ok(&mut alice, "news", "kept").await;
    assert!(matches!(
        alice
            .request(Packet::CreateGroup(CreateGroup {
                name: "club".into(),
                description: "readers".into(),
            }))
            .await,
        Packet::Ok(_)
    ));
    assert!(matches!(
        alice
            .request(Packet::JoinGroup(JoinGroup {
                group: "club".into()
            }))
            .await,
        Packet::Ok(_)
    ));
    let mut post = publish("club", "group message");
    if let Packet::Publish(p) = &mut post {
        p.scope = Scope::Group;
    }
    assert!(matches!(alice.request(post).await, Packet::PublishAck(_)));
    drop(alice);
    server.shutdown().await;

    let server = start(dir.path(), SyncPolicy::default()).await;
    let (mut bob, _) = RawClient::connect_session(&server, "alice").await;
    let tweets = history(&mut bob, Scope::Channel, "tweets").await;
    assert_eq!(
        tweets.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![16, 17, 18, 19, 20],
        "retention applies after a restart"
    );
    assert_eq!(tweets[4].1, "tweet 20 #rust");
    assert_eq!(publish_ok(&mut bob, "tweets", "after restart").await, 21);
    assert_eq!(
        history(&mut bob, Scope::Channel, "news").await,
        vec![(1, "kept".to_owned())]
    );
    // Options survive: the 150-character limit still holds.
    match bob.request(publish("tweets", &"x".repeat(151))).await {
        Packet::Error(error) => {
            assert_eq!(error.code, switchboard_proto::ErrorCode::TooManyCharacters)
        }
        other => panic!("{other:?}"),
    }
    // Hashtags are indexed again.
    assert_eq!(history(&mut bob, Scope::Tag, "rust").await.len(), 5);
    // Groups, members and group history.
    match bob
        .request(Packet::GroupMembers(GroupMembers {
            group: "club".into(),
            ..GroupMembers::default()
        }))
        .await
    {
        Packet::MemberList(list) => {
            assert_eq!(list.members.len(), 1);
            assert_eq!(list.members[0].name, "alice");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        history(&mut bob, Scope::Group, "club").await,
        vec![(1, "group message".to_owned())]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn sequence_numbers_continue_even_when_every_message_was_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), SyncPolicy::Always).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    alice
        .request(Packet::CreateChannel(CreateChannel {
            name: "short".into(),
            options: ChannelOptions {
                history: Some(1),
                ..ChannelOptions::default()
            },
        }))
        .await;
    for i in 1..=3 {
        publish_ok(&mut alice, "short", &i.to_string()).await;
    }
    drop(alice);
    server.shutdown().await;
    let server = start(dir.path(), SyncPolicy::Always).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    assert_eq!(
        history(&mut alice, Scope::Channel, "short").await,
        vec![(3, "3".to_owned())]
    );
    assert_eq!(publish_ok(&mut alice, "short", "4").await, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn memory_only_channels_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), SyncPolicy::default()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    alice
        .request(Packet::CreateChannel(CreateChannel {
            name: "scratch".into(),
            options: ChannelOptions {
                durability: Some(Durability::Memory),
                ..ChannelOptions::default()
            },
        }))
        .await;
    publish_ok(&mut alice, "scratch", "gone soon").await;
    publish_ok(&mut alice, "kept", "stays").await;
    drop(alice);
    server.shutdown().await;
    let server = start(dir.path(), SyncPolicy::default()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    match alice
        .request(Packet::ListChannels(Default::default()))
        .await
    {
        Packet::ChannelList(list) => {
            let names: Vec<_> = list.channels.iter().map(|c| c.name.to_string()).collect();
            assert_eq!(names, ["kept"]);
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_record_is_reported_and_skipped_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), SyncPolicy::Always).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    for i in 1..=3 {
        publish_ok(&mut alice, "log", &format!("entry {i}")).await;
    }
    drop(alice);
    server.shutdown().await;

    // Damage the record of seq 2 as a torn write would: same key, bytes flipped.
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let messages = db
            .keyspace("messages", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let mut key = b"clog\0".to_vec();
        key.extend_from_slice(&2u64.to_be_bytes());
        let mut value = messages.get(&key).unwrap().expect("record exists").to_vec();
        let last = value.len() - 1;
        value[last] ^= 0xFF;
        messages.insert(&key, value).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }

    let server = start(dir.path(), SyncPolicy::Always).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    assert_eq!(
        history(&mut alice, Scope::Channel, "log").await,
        vec![(1, "entry 1".to_owned()), (3, "entry 3".to_owned())]
    );
    match alice.request(Packet::Stats(Default::default())).await {
        Packet::StatsReply(stats) => assert_eq!(stats.get("corrupt_records_skipped"), Some(1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(publish_ok(&mut alice, "log", "entry 4").await, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn unusable_data_directories_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing_parent = dir.path().join("no").join("such").join("dir");
    let error = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(&missing_parent)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("does not exist"), "{error}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let error = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(&file)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a directory"), "{error}");

    // A directory already in use by a running server.
    let data = dir.path().join("data");
    let server = start(&data, SyncPolicy::default()).await;
    let error = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(&data)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot open the store"), "{error}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_damaged_store_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), SyncPolicy::Always).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    publish_ok(&mut alice, "log", "entry").await;
    drop(alice);
    server.shutdown().await;
    drop(server);
    // The store's format marker, overwritten as a stray write or a bad copy would.
    std::fs::write(dir.path().join("version"), b"garbage!").unwrap();
    let error = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot open the store"), "{error}");
}

/// A store whose every sync completes 50 ms after it was asked for, as a slow disk's would.
struct SlowDisk;

impl switchboard_server::Storage for SlowDisk {
    fn is_durable(&self) -> bool {
        true
    }
    fn load(&self) -> Result<switchboard_server::Snapshot, switchboard_server::StorageError> {
        Ok(Default::default())
    }
    fn put_channel(
        &self,
        _: &str,
        _: &ChannelOptions,
    ) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn append(
        &self,
        _: switchboard_server::LogKind,
        _: &str,
        _: &std::sync::Arc<switchboard_server::StoredMessage>,
    ) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn trim(&self, _: switchboard_server::LogKind, _: &str, _: u64) {}
    fn put_group(&self, _: &str, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn add_member(&self, _: &str, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn remove_member(&self, _: &str, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn delete_channel(&self, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn delete_group(&self, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn sync(&self) -> switchboard_server::SyncFuture {
        // The disk starts when asked, not when someone waits.
        let done = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        Box::pin(async move {
            tokio::time::sleep_until(done).await;
            Ok(())
        })
    }
    fn close(&self, _: &[(switchboard_server::LogKind, String, u64)]) {}
}

#[tokio::test]
async fn a_session_keeps_reading_while_its_publishes_wait_for_the_disk() {
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .sync(SyncPolicy::Always)
        .storage(std::sync::Arc::new(SlowDisk))
        .start()
        .await
        .unwrap();
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    let count = 200u32;
    let started = std::time::Instant::now();
    for i in 0..count {
        alice
            .send(
                1000 + i,
                switchboard_proto::Flags::empty(),
                &publish("fast", &i.to_string()),
            )
            .await;
    }
    let mut acked = Vec::new();
    while acked.len() < count as usize {
        let frame = alice.next_frame().await.expect("answers");
        match Packet::from_frame(&frame).unwrap() {
            Packet::PublishAck(ack) => acked.push((frame.request_id, ack.seq)),
            other => panic!("{other:?}"),
        }
    }
    // Waiting for each sync in turn would take 200 × 50 ms = 10 s; half of that leaves
    // room for a busy machine and still tells the two apart.
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    // Answers come in publish order, each with its own seq.
    let expected: Vec<(u32, u64)> = (0..count).map(|i| (1000 + i, u64::from(i) + 1)).collect();
    assert_eq!(acked, expected);
    server.shutdown().await;
}

/// What a [`Ledger`] store was asked to do and what its syncs covered.
#[derive(Default)]
struct LedgerCounts {
    appended: std::sync::atomic::AtomicU64,
    /// Messages covered by a completed sync.
    synced: std::sync::atomic::AtomicU64,
    /// Syncs made on the publishing session's own thread.
    synced_here: std::sync::atomic::AtomicU64,
    /// Syncs waited for in the background.
    sync_waits: std::sync::atomic::AtomicU64,
}

/// A store whose syncs take 20 ms, made on the session's thread or waited for, and which
/// counts how many messages each one covered.
struct Ledger(std::sync::Arc<LedgerCounts>);

const LEDGER_SYNC: std::time::Duration = std::time::Duration::from_millis(20);

impl switchboard_server::Storage for Ledger {
    fn is_durable(&self) -> bool {
        true
    }
    fn load(&self) -> Result<switchboard_server::Snapshot, switchboard_server::StorageError> {
        Ok(Default::default())
    }
    fn put_channel(
        &self,
        _: &str,
        _: &ChannelOptions,
    ) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn append(
        &self,
        _: switchboard_server::LogKind,
        _: &str,
        _: &std::sync::Arc<switchboard_server::StoredMessage>,
    ) -> Result<(), switchboard_server::StorageError> {
        self.0.appended.fetch_add(1, SeqCst);
        Ok(())
    }
    fn trim(&self, _: switchboard_server::LogKind, _: &str, _: u64) {}
    fn put_group(&self, _: &str, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn add_member(&self, _: &str, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn remove_member(&self, _: &str, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn delete_channel(&self, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn delete_group(&self, _: &str) -> Result<(), switchboard_server::StorageError> {
        Ok(())
    }
    fn sync(&self) -> switchboard_server::SyncFuture {
        self.0.sync_waits.fetch_add(1, SeqCst);
        let counts = self.0.clone();
        let covers = counts.appended.load(SeqCst);
        Box::pin(async move {
            tokio::time::sleep(LEDGER_SYNC).await;
            counts.synced.fetch_max(covers, SeqCst);
            Ok(())
        })
    }
    fn can_sync_here(&self) -> bool {
        true
    }
    fn sync_here(&self) -> Option<Result<(), switchboard_server::StorageError>> {
        let covers = self.0.appended.load(SeqCst);
        std::thread::sleep(LEDGER_SYNC);
        self.0.synced.fetch_max(covers, SeqCst);
        self.0.synced_here.fetch_add(1, SeqCst);
        Some(Ok(()))
    }
    fn close(&self, _: &[(switchboard_server::LogKind, String, u64)]) {}
}

use std::sync::atomic::Ordering::SeqCst;

async fn start_on_ledger() -> (ServerHandle, std::sync::Arc<LedgerCounts>) {
    let counts = std::sync::Arc::new(LedgerCounts::default());
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .sync(SyncPolicy::Always)
        .storage(std::sync::Arc::new(Ledger(counts.clone())))
        .start()
        .await
        .unwrap();
    (server, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_awaiting_each_ack_has_its_sync_made_on_its_own_thread_before_the_ack() {
    let (server, counts) = start_on_ledger().await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    for i in 1..=20u64 {
        let seq = publish_ok(&mut alice, "one.at.a.time", &i.to_string()).await;
        assert_eq!(seq, i);
        // Never acknowledged before a sync covered it.
        assert!(
            counts.synced.load(SeqCst) >= seq,
            "ack {seq} before its sync"
        );
    }
    // No wake-up of the store's writer and back: each sync was made by the session.
    assert_eq!(counts.synced_here.load(SeqCst), 20);
    assert_eq!(counts.sync_waits.load(SeqCst), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishes_wait_for_shared_syncs_and_are_answered_in_order() {
    let (server, counts) = start_on_ledger().await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    // All in one write, as a pipelining client sends them.
    let count = 100u32;
    let mut out = bytes::BytesMut::new();
    for i in 0..count {
        alice
            .codec
            .encode_packet(
                1000 + i,
                switchboard_proto::Flags::empty(),
                &publish("pipelined", &i.to_string()),
                &mut out,
            )
            .unwrap();
    }
    alice.send_raw(&out).await;
    let mut acked = Vec::new();
    while acked.len() < count as usize {
        let frame = alice.next_frame().await.expect("answers");
        match Packet::from_frame(&frame).unwrap() {
            Packet::PublishAck(ack) => {
                assert!(
                    counts.synced.load(SeqCst) >= ack.seq,
                    "ack {} before its sync",
                    ack.seq
                );
                acked.push((frame.request_id, ack.seq));
            }
            other => panic!("{other:?}"),
        }
    }
    let expected: Vec<(u32, u64)> = (0..count).map(|i| (1000 + i, u64::from(i) + 1)).collect();
    assert_eq!(acked, expected);
    // The session read on while they waited: at most the first of the read was synced
    // on its thread (if it came alone), every other one waited for a shared sync.
    assert!(counts.synced_here.load(SeqCst) <= 1);
    server.shutdown().await;
}
