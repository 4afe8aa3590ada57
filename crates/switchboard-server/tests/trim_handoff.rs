//! A trim too large for the storage writer's own batch, at the production threshold: more
//! than 65 536 chunks removed at once (a history with a much lower retention after a
//! restart) are handed to the trim thread, which removes them before `close` returns.
//!
//! The unit tests cross a threshold lowered for them; this one builds a history of more
//! chunks than the real one (one chunk per written batch: each append is synced before
//! the next), trims nearly all of it at once, and counts the chunk records left in the
//! database afterwards. The data directory is on a memory file system where there is
//! one, since the test makes tens of thousands of syncs.

use std::path::Path;

use bytes::Bytes;
use fjall::{Database, KeyspaceCreateOptions};
use switchboard_proto::packet::{ChannelOptions, Message, Scope};
use switchboard_proto::{FrameCodec, Limits};
use switchboard_server::{FjallStorage, LogKind, Storage, StoredMessage, SyncPolicy};

/// Chunks a trim removes in the writer's own batch; past it, the trim thread takes them.
const INLINE_TRIM_CHUNKS: u64 = 64 * 1024;
/// Chunks trimmed past the threshold, for the trim thread.
const HANDED_OFF: u64 = 200;
/// Messages, hence chunks, left after the trim.
const KEPT: u64 = 10;

fn message(channel: &str, seq: u64) -> std::sync::Arc<StoredMessage> {
    let message = Message {
        scope: Scope::Channel,
        channel: channel.into(),
        seq,
        body: Bytes::from(format!("{channel} #{seq}")),
        ..Message::default()
    };
    let codec = FrameCodec::new(Limits::default());
    let stored =
        StoredMessage::encode(&codec, &message.as_envelope(), Vec::new()).expect("encodes");
    std::sync::Arc::new(stored)
}

fn data_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if cfg!(target_os = "linux") && shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a directory in /dev/shm")
    } else {
        tempfile::tempdir().expect("a temporary directory")
    }
}

/// The chunk records left in the store's messages keyspace (the store must be closed).
fn stored_chunks(dir: &Path) -> usize {
    let db = Database::builder(dir).open().expect("the database opens");
    let messages = db
        .keyspace("messages", KeyspaceCreateOptions::default)
        .expect("the messages keyspace");
    messages.iter().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trim_past_the_production_threshold_is_finished_by_the_trim_thread() {
    let dir = data_dir();
    let total = INLINE_TRIM_CHUNKS + HANDED_OFF + KEPT;
    {
        let store = FjallStorage::open(dir.path(), SyncPolicy::Always).expect("store opens");
        store.load().expect("loads");
        store
            .put_channel("big", &ChannelOptions::default())
            .expect("channel");
        for seq in 1..=total {
            store
                .append(LogKind::Channel, "big", &message("big", seq))
                .expect("append");
            // Ends the batch: one chunk per message.
            store.sync().await.expect("sync");
        }
        store.close(&[(LogKind::Channel, "big".to_owned(), total + 1)]);
    }
    assert_eq!(
        stored_chunks(dir.path()) as u64,
        total,
        "one chunk per message"
    );

    {
        let store = FjallStorage::open(dir.path(), SyncPolicy::Always).expect("store reopens");
        let snapshot = store.load().expect("loads");
        assert_eq!(snapshot.channels[0].messages.len() as u64, total);
        // One trim removing every chunk but the newest few: more than one batch takes.
        store.trim(LogKind::Channel, "big", total - KEPT);
        store.close(&[(LogKind::Channel, "big".to_owned(), total + 1)]);
    }
    assert_eq!(
        stored_chunks(dir.path()) as u64,
        KEPT,
        "chunks past the writer's share were left behind"
    );

    let store = FjallStorage::open(dir.path(), SyncPolicy::Always).expect("store reopens");
    let snapshot = store.load().expect("loads");
    let seqs: Vec<u64> = snapshot.channels[0]
        .messages
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, (total - KEPT + 1..=total).collect::<Vec<u64>>());
    assert_eq!(snapshot.channels[0].next_seq, total + 1);
    store.close(&[]);
}
