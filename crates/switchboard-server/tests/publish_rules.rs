//! The publish rules as a client meets them on a durable server: every publish to a
//! channel without a durability of its own is as durable as the server's default,
//! whichever way the channel came to be.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::RawClient;
use parking_lot::Mutex;
use switchboard_proto::packet::{ChannelOptions, Packet, Publish};
use switchboard_server::{
    LogKind, LogSnapshot, MemoryStorage, Server, ServerHandle, Snapshot, Storage, StorageError,
    StoredMessage, SyncFuture, SyncPolicy,
};

/// A durable store that gives back one channel at start and records what it is asked.
struct Recording {
    restored: Mutex<Option<Snapshot>>,
    appended: Mutex<Vec<(String, u64)>>,
    syncs_asked: AtomicU64,
}

impl Recording {
    fn restoring(channel: &str, options: ChannelOptions) -> Recording {
        let snapshot = Snapshot {
            channels: vec![LogSnapshot {
                name: channel.to_owned(),
                options,
                next_seq: 1,
                messages: Vec::new(),
            }],
            ..Snapshot::default()
        };
        Recording {
            restored: Mutex::new(Some(snapshot)),
            appended: Mutex::new(Vec::new()),
            syncs_asked: AtomicU64::new(0),
        }
    }
}

impl Storage for Recording {
    fn is_durable(&self) -> bool {
        true
    }
    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(self.restored.lock().take().unwrap_or_default())
    }
    fn put_channel(&self, name: &str, options: &ChannelOptions) -> Result<(), StorageError> {
        MemoryStorage.put_channel(name, options)
    }
    fn append(
        &self,
        _kind: LogKind,
        log: &str,
        message: &Arc<StoredMessage>,
    ) -> Result<(), StorageError> {
        self.appended.lock().push((log.to_owned(), message.seq()));
        Ok(())
    }
    fn trim(&self, kind: LogKind, log: &str, through_seq: u64) {
        MemoryStorage.trim(kind, log, through_seq);
    }
    fn put_group(&self, name: &str, description: &str) -> Result<(), StorageError> {
        MemoryStorage.put_group(name, description)
    }
    fn add_member(&self, group: &str, member: &str) -> Result<(), StorageError> {
        MemoryStorage.add_member(group, member)
    }
    fn remove_member(&self, group: &str, member: &str) -> Result<(), StorageError> {
        MemoryStorage.remove_member(group, member)
    }
    fn delete_channel(&self, name: &str) -> Result<(), StorageError> {
        MemoryStorage.delete_channel(name)
    }
    fn delete_group(&self, name: &str) -> Result<(), StorageError> {
        MemoryStorage.delete_group(name)
    }
    fn sync(&self) -> SyncFuture {
        self.syncs_asked.fetch_add(1, Ordering::SeqCst);
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
        .sync(SyncPolicy::Always)
        .configure(|config| config.max_history = 2000)
        .start()
        .await
        .expect("server starts")
}

async fn publish(client: &mut RawClient, channel: &str) -> u64 {
    let publish = Packet::Publish(Publish {
        channel: channel.into(),
        body: Bytes::from_static(b"kept"),
        ..Publish::default()
    });
    match client.request(publish).await {
        Packet::PublishAck(ack) => ack.seq,
        other => panic!("publish failed: {other:?}"),
    }
}

#[tokio::test]
async fn a_restored_channel_whose_options_are_no_longer_allowed_stays_durable() {
    // Stored by a server that allowed longer histories, and saying nothing of durability:
    // this server keeps the channel with its stored options.
    let stored_options = ChannelOptions {
        history: Some(5000),
        ..ChannelOptions::default()
    };
    let storage = Arc::new(Recording::restoring("old", stored_options));
    let server = server(storage.clone()).await;
    let (mut client, _) = RawClient::connect_session(&server, "ann").await;

    assert_eq!(publish(&mut client, "old").await, 1);
    assert_eq!(
        *storage.appended.lock(),
        [("old".to_owned(), 1)],
        "the publish reached the store"
    );
    assert_eq!(
        storage.syncs_asked.load(Ordering::SeqCst),
        1,
        "with the server's default of always, the acknowledgement waited for a sync"
    );

    // A channel created by publishing to it gets the same treatment.
    assert_eq!(publish(&mut client, "new").await, 1);
    assert_eq!(storage.appended.lock().len(), 2);
    assert_eq!(storage.syncs_asked.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}
