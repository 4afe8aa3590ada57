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

/// Records group writes in the order they complete; the first of each kind is slow.
#[derive(Default)]
struct Recording {
    slow_group: AtomicBool,
    slow_members: AtomicBool,
    groups: Mutex<Vec<(String, String)>>,
    /// Member changes in the order they reached the store: group, member, joined.
    members: Mutex<Vec<(String, String, bool)>>,
}

const SLOW: Duration = Duration::from_millis(300);

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
        message: &StoredMessage,
    ) -> Result<(), StorageError> {
        MemoryStorage.append(kind, log, message)
    }
    fn trim(&self, kind: LogKind, log: &str, through_seq: u64) {
        MemoryStorage.trim(kind, log, through_seq);
    }
    fn put_group(&self, name: &str, description: &str) -> Result<(), StorageError> {
        if self.slow_group.swap(false, Ordering::SeqCst) {
            std::thread::sleep(SLOW);
        }
        self.groups
            .lock()
            .push((name.to_owned(), description.to_owned()));
        Ok(())
    }
    fn add_member(&self, group: &str, member: &str) -> Result<(), StorageError> {
        if self.slow_members.swap(false, Ordering::SeqCst) {
            std::thread::sleep(SLOW);
        }
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

    storage.slow_members.store(true, Ordering::SeqCst);
    let join = || Packet::JoinGroup(JoinGroup { group: "g".into() });
    let alice_joins = tokio::spawn(async move { alice.request(join()).await });
    tokio::time::sleep(SLOW / 6).await;
    let bob_joins = tokio::spawn(async move { bob.request(join()).await });
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

    storage.slow_group.store(true, Ordering::SeqCst);
    let alice_creates = tokio::spawn(async move { alice.request(create("g", "alice's")).await });
    tokio::time::sleep(SLOW / 6).await;
    let bob_creates = tokio::spawn(async move { bob.request(create("g", "bob's")).await });
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
