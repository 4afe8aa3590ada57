//! Small messages let go of by the last holder, kept so that the next messages
//! published are encoded into their records and frame buffers instead of new ones.
//!
//! The last holder is the history that trims a message, or, for a subscriber more than
//! a history behind, the writer that copies the message out after its history let it
//! go. A burst of small publishes read at once puts every subscriber that far behind
//! until its writer runs: thousands of messages at 16 B. Each message was then freed
//! by the writer and the next publish allocated a record and a frame anew; with glibc's
//! per-thread cache far smaller than such a burst, malloc and free took a sixth of the
//! server's time at 16 B and 1 KiB bodies.
//!
//! Each thread keeps what it was given, and a publish on that thread takes the message
//! given last, whose memory is the likeliest still to be in the cache: a connection's
//! reader and its subscriber's writer keep to one worker thread while they keep each
//! other busy. When a thread keeps more than [`LOCAL_MESSAGES`], its older half goes to
//! a pool shared by all threads in one chunk, from which a thread with none of its own
//! takes a chunk: a reader and a writer on two threads then exchange one lock per
//! [`CHUNK`] messages. Both are bounded; what is given beyond the bounds is freed.

use std::cell::RefCell;
use std::sync::Arc;

use parking_lot::Mutex;

use super::message::StoredMessage;

/// Messages handed to the shared pool at once.
const CHUNK: usize = 256;

/// Most messages one thread keeps before it hands a chunk to the shared pool.
const LOCAL_MESSAGES: usize = 2 * CHUNK;

/// Most bytes of frame buffers one thread keeps (their capacity, not what they held).
const LOCAL_FRAME_BYTES: usize = 512 * 1024;

/// Most chunks in the shared pool: a burst of small publishes read at once (about
/// 2 500 at 16 B from a 64 KiB read) with room to spare.
const SHARED_CHUNKS: usize = 16;

/// Most bytes of frame buffers in the shared pool.
const SHARED_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// Messages, each with its frame buffer's capacity, oldest first.
struct Spares {
    messages: Vec<(Arc<StoredMessage>, usize)>,
    frame_bytes: usize,
}

impl Spares {
    const fn new() -> Spares {
        Spares {
            messages: Vec::new(),
            frame_bytes: 0,
        }
    }

    fn push(&mut self, message: Arc<StoredMessage>, capacity: usize) {
        self.frame_bytes += capacity;
        self.messages.push((message, capacity));
    }

    fn pop(&mut self) -> Option<Arc<StoredMessage>> {
        let (message, capacity) = self.messages.pop()?;
        self.frame_bytes -= capacity;
        Some(message)
    }

    /// The oldest `count` messages, taken out.
    fn take_oldest(&mut self, count: usize) -> Spares {
        let messages: Vec<_> = self
            .messages
            .drain(..count.min(self.messages.len()))
            .collect();
        let frame_bytes = messages.iter().map(|(_, capacity)| capacity).sum();
        self.frame_bytes -= frame_bytes;
        Spares {
            messages,
            frame_bytes,
        }
    }
}

/// Chunks handed over by threads that kept too many.
struct Shared {
    chunks: Vec<Spares>,
    frame_bytes: usize,
}

/// The shared pool (one per process; tests make their own).
struct Pool {
    shared: Mutex<Shared>,
}

static POOL: Pool = Pool::new();

thread_local! {
    static LOCAL: RefCell<Spares> = const { RefCell::new(Spares::new()) };
}

/// Keeps `message` for a later publish if nothing else holds it, it may be reused,
/// and the bounds leave room; otherwise drops it.
pub fn give(message: Arc<StoredMessage>) {
    POOL.give(message);
}

/// A message to encode a new one into: the one given last on this thread, or one of a
/// chunk from the shared pool when this thread has none.
pub fn take() -> Option<Arc<StoredMessage>> {
    POOL.take()
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            shared: Mutex::new(Shared {
                chunks: Vec::new(),
                frame_bytes: 0,
            }),
        }
    }

    fn give(&self, mut message: Arc<StoredMessage>) {
        let Some(capacity) = StoredMessage::reusable_capacity(&mut message) else {
            return;
        };
        if capacity > LOCAL_FRAME_BYTES {
            return;
        }
        // Nothing is kept on a thread that is ending (its spares are gone); the message
        // is then dropped with the closure.
        let handed = LOCAL.try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            local.push(message, capacity);
            if local.messages.len() > LOCAL_MESSAGES || local.frame_bytes > LOCAL_FRAME_BYTES {
                let half = local.messages.len().div_ceil(2);
                return Some(local.take_oldest(half));
            }
            None
        });
        if let Ok(Some(chunk)) = handed {
            self.hand_over(chunk);
        }
    }

    /// Adds `chunk` to the shared pool if it has room; otherwise its messages are
    /// freed (outside the lock).
    fn hand_over(&self, chunk: Spares) {
        let refused = {
            let mut shared = self.shared.lock();
            if shared.chunks.len() < SHARED_CHUNKS
                && shared.frame_bytes + chunk.frame_bytes <= SHARED_FRAME_BYTES
            {
                shared.frame_bytes += chunk.frame_bytes;
                shared.chunks.push(chunk);
                None
            } else {
                Some(chunk)
            }
        };
        drop(refused);
    }

    fn take(&self) -> Option<Arc<StoredMessage>> {
        LOCAL
            .try_with(|local| {
                let mut local = local.try_borrow_mut().ok()?;
                if let Some(message) = local.pop() {
                    return Some(message);
                }
                let chunk = {
                    let mut shared = self.shared.lock();
                    let chunk = shared.chunks.pop()?;
                    shared.frame_bytes -= chunk.frame_bytes;
                    chunk
                };
                *local = chunk;
                local.pop()
            })
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::FrameCodec;
    use switchboard_proto::packet::{Envelope, Scope};
    use uuid::Uuid;

    fn message(seq: u64, body: &[u8]) -> Arc<StoredMessage> {
        let envelope = Envelope {
            scope: Scope::Channel,
            channel: "spares",
            id: Uuid::from_u128(u128::from(seq)),
            seq,
            time_us: seq,
            sender_id: 1,
            sender_name: "test",
            content_type: "",
            user_headers: &[],
            body,
            body_crc: None,
            stream: None,
        };
        let codec = FrameCodec::new(Default::default());
        Arc::new(StoredMessage::encode(&codec, &envelope, Vec::new()).expect("encodes"))
    }

    /// What this thread keeps, then what the pool has, given last first.
    fn drain(pool: &Pool) -> Vec<u64> {
        std::iter::from_fn(|| pool.take())
            .map(|message| message.seq())
            .collect()
    }

    fn shared_chunks(pool: &Pool) -> usize {
        pool.shared.lock().chunks.len()
    }

    // Each test runs on a thread of its own, so starts with nothing kept on it, and
    // has a pool of its own.

    #[test]
    fn the_last_given_is_taken_first_and_a_held_message_is_not_kept() {
        let pool = Pool::new();
        pool.give(message(1, b"one"));
        let held = message(2, b"two");
        pool.give(held.clone());
        pool.give(message(3, b"three"));
        assert_eq!(drain(&pool), [3, 1]);
        assert_eq!(Arc::strong_count(&held), 1, "the held message was let go");
    }

    #[test]
    fn large_frames_are_not_kept() {
        let pool = Pool::new();
        pool.give(message(1, &vec![7; 64 * 1024]));
        assert_eq!(drain(&pool), Vec::<u64>::new());
    }

    #[test]
    fn a_thread_hands_its_older_half_to_the_pool_which_another_thread_takes() {
        let pool = Pool::new();
        let given = LOCAL_MESSAGES as u64 + 1;
        for seq in 1..=given {
            pool.give(message(seq, b"small"));
        }
        assert_eq!(shared_chunks(&pool), 1);
        let elsewhere = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let first = pool.take().map(|message| message.seq());
                    (first, LOCAL.with_borrow(|local| local.messages.len()))
                })
                .join()
                .expect("the other thread takes")
        });
        let half = given.div_ceil(2);
        assert_eq!(elsewhere, (Some(half), half as usize - 1));
        assert_eq!(shared_chunks(&pool), 0);
        let here = drain(&pool);
        assert_eq!(here, (half + 1..=given).rev().collect::<Vec<_>>());
    }

    #[test]
    fn the_pool_and_each_thread_keep_at_most_their_bounds() {
        let pool = Pool::new();
        for seq in 0..20 * LOCAL_MESSAGES as u64 {
            pool.give(message(seq, b"small"));
        }
        assert_eq!(shared_chunks(&pool), SHARED_CHUNKS);
        let local = LOCAL.with_borrow(|local| local.messages.len());
        assert!(local <= LOCAL_MESSAGES, "{local} kept on the thread");
        // Frames of 2 KiB: the bytes bounds come first.
        drain(&pool);
        let body = vec![1; 2048];
        for seq in 0..4000 {
            pool.give(message(seq, &body));
        }
        let local = LOCAL.with_borrow(|local| local.frame_bytes);
        let shared = pool.shared.lock().frame_bytes;
        assert!(
            local <= LOCAL_FRAME_BYTES,
            "{local} bytes kept on the thread"
        );
        assert!(shared <= SHARED_FRAME_BYTES, "{shared} bytes in the pool");
        assert!(
            shared > SHARED_FRAME_BYTES / 2,
            "{shared} bytes in the pool"
        );
    }
}
