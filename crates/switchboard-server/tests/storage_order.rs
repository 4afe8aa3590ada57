//! What reaches storage when sessions race: the store must end up with what the hub
//! holds, whichever write finishes last.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::RawClient;
use parking_lot::Mutex;
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    ChannelOptions, CreateGroup, GroupMembers, JoinGroup, ListGroups, Packet,
};
use switchboard_server::{
    LogKind, MemoryStorage, Server, ServerHandle, Snapshot, Storage, StorageError, StoredMessage,
    SyncFuture,
};

/// Records group writes in the order they complete; the first write of a kind can be held
/// inside the store.
#[derive(Default)]
struct Recording {
    group_gate: Gate,
    member_gate: Gate,
    groups: Mutex<Vec<(String, String)>>,
    /// Member changes in the order they reached the store: group, member, joined.
    members: Mutex<Vec<(String, String, bool)>>,
}

/// Holds the first write through it, once armed, inside the store until released, and
/// counts the writes that came in while it was held.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    state: std::sync::Mutex<GateState>,
    /// Signalled on every change of `state`.
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    holding: bool,
    released: bool,
    passed_while_holding: usize,
}

/// How long anything here waits at most, so that a failing test never leaves a thread
/// blocked.
const LIMIT: Duration = Duration::from_secs(30);

/// How long the second write is given to reach the store while the first is held. A hub
/// that keeps its lock while it writes makes the second wait (so it never comes, and this
/// is waited in full); one that does not lets it through at once.
const CHANCE: Duration = Duration::from_millis(300);

impl Gate {
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Called by each write: the first after `arm` is held until `release`.
    fn pass(&self) {
        let mut state = self.state.lock().expect("gate");
        if !self.armed.swap(false, Ordering::SeqCst) {
            if state.holding {
                state.passed_while_holding += 1;
                self.changed.notify_all();
            }
            return;
        }
        state.holding = true;
        self.changed.notify_all();
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, LIMIT, |state| !state.released)
            .expect("gate");
        state.holding = false;
    }

    /// Once the first write is held, runs `second`, gives its write the chance to reach
    /// the store before the first one is let go, then lets it go. Blocks the calling
    /// thread (the runtime's workers go on serving): the store blocks a worker while it
    /// holds a write, so nothing here depends on the runtime.
    fn race(&self, second: impl FnOnce()) {
        let state = self.state.lock().expect("gate");
        let (state, waited) = self
            .changed
            .wait_timeout_while(state, LIMIT, |state| !state.holding)
            .expect("gate");
        assert!(
            !waited.timed_out(),
            "the first write never reached the store"
        );
        drop(state);
        second();
        let state = self.state.lock().expect("gate");
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, CHANCE, |state| state.passed_while_holding == 0)
            .expect("gate");
        state.released = true;
        self.changed.notify_all();
    }
}

impl Storage for Recording {
    fn is_durable(&self) -> bool {
        MemoryStorage.is_durable()
    }
    fn load(&self) -> Result<Snapshot, StorageError> {
        MemoryStorage.load()
    }
    fn put_channel(&self, name: &str, options: &ChannelOptions) -> Result<(), StorageError> {
        MemoryStorage.put_channel(name, options)
    }
    fn append(
        &self,
        kind: LogKind,
        log: &str,
        message: &std::sync::Arc<StoredMessage>,
    ) -> Result<(), StorageError> {
        MemoryStorage.append(kind, log, message)
    }
    fn trim(&self, kind: LogKind, log: &str, through_seq: u64) {
        MemoryStorage.trim(kind, log, through_seq);
    }
    fn put_group(&self, name: &str, description: &str) -> Result<(), StorageError> {
        self.group_gate.pass();
        self.groups
            .lock()
            .push((name.to_owned(), description.to_owned()));
        Ok(())
    }
    fn add_member(&self, group: &str, member: &str) -> Result<(), StorageError> {
        self.member_gate.pass();
        self.members
            .lock()
            .push((group.to_owned(), member.to_owned(), true));
        Ok(())
    }
    fn remove_member(&self, group: &str, member: &str) -> Result<(), StorageError> {
        self.members
            .lock()
            .push((group.to_owned(), member.to_owned(), false));
        Ok(())
    }
    fn delete_channel(&self, name: &str) -> Result<(), StorageError> {
        MemoryStorage.delete_channel(name)
    }
    fn delete_group(&self, name: &str) -> Result<(), StorageError> {
        MemoryStorage.delete_group(name)
    }
    fn sync(&self) -> SyncFuture {
        MemoryStorage.sync()
    }
    fn close(&self, next_seqs: &[(LogKind, String, u64)]) {
        MemoryStorage.close(next_seqs);
    }
}

async fn server(storage: Arc<Recording>) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .storage(storage)
        .start()
        .await
        .expect("server starts")
}

fn create(name: &str, description: &str) -> Packet {
    Packet::CreateGroup(CreateGroup {
        name: name.into(),
        description: description.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_leave_every_member_in_storage() {
    let storage = Arc::new(Recording::default());
    let server = server(storage.clone()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    let (mut bob, _) = RawClient::connect_session(&server, "bob").await;
    assert!(matches!(
        alice.request(create("g", "")).await,
        Packet::Ok(_)
    ));

    // Alice's join is held inside the store while Bob joins: the race happens every
    // time, and the store must still end with both.
    storage.member_gate.arm();
    let join = || Packet::JoinGroup(JoinGroup { group: "g".into() });
    let alice_joins = tokio::spawn(async move { alice.request(join()).await });
    let mut bob_joins = None;
    storage
        .member_gate
        .race(|| bob_joins = Some(tokio::spawn(async move { bob.request(join()).await })));
    let bob_joins = bob_joins.expect("bob joined");
    assert!(matches!(alice_joins.await.unwrap(), Packet::Ok(_)));
    assert!(matches!(bob_joins.await.unwrap(), Packet::Ok(_)));

    let (mut carol, _) = RawClient::connect_session(&server, "carol").await;
    let Packet::MemberList(list) = carol
        .request(Packet::GroupMembers(GroupMembers {
            group: "g".into(),
            ..GroupMembers::default()
        }))
        .await
    else {
        panic!("no member list");
    };
    let held: Vec<String> = list.members.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(held, ["alice", "bob"]);
    // The members the store ends with, replaying its changes in the order they came.
    let mut stored = std::collections::BTreeSet::new();
    for (group, member, joined) in storage.members.lock().iter() {
        assert_eq!(group, "g");
        if *joined {
            stored.insert(member.clone());
        } else {
            stored.remove(member);
        }
    }
    assert_eq!(
        stored.into_iter().collect::<Vec<_>>(),
        held,
        "the store holds other members than the hub: {:?}",
        storage.members.lock()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_concurrent_creations_only_the_winner_reaches_storage() {
    let storage = Arc::new(Recording::default());
    let server = server(storage.clone()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    let (mut bob, _) = RawClient::connect_session(&server, "bob").await;

    // Alice's creation is held inside the store while Bob creates the same group.
    storage.group_gate.arm();
    let alice_creates = tokio::spawn(async move { alice.request(create("g", "alice's")).await });
    let mut bob_creates = None;
    storage.group_gate.race(|| {
        bob_creates = Some(tokio::spawn(async move {
            bob.request(create("g", "bob's")).await
        }))
    });
    let bob_creates = bob_creates.expect("bob created");
    let answers = [alice_creates.await.unwrap(), bob_creates.await.unwrap()];
    let created = answers
        .iter()
        .filter(|a| matches!(a, Packet::Ok(_)))
        .count();
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Packet::Error(e) if e.code == ErrorCode::AlreadyExists))
        .count();
    assert_eq!((created, refused), (1, 1), "{answers:?}");

    let (mut carol, _) = RawClient::connect_session(&server, "carol").await;
    let Packet::GroupList(list) = carol
        .request(Packet::ListGroups(ListGroups::default()))
        .await
    else {
        panic!("no group list");
    };
    let held = list.groups[0].description.to_string();
    assert_eq!(
        *storage.groups.lock(),
        [("g".to_owned(), held)],
        "the store does not hold the group the hub has"
    );
    server.shutdown().await;
}
