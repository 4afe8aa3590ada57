//! The buffers large frames are read into, used again once whoever holds their bytes
//! lets go of them.
//!
//! A large frame is read into a buffer of its own, and its body goes on as a view of that
//! buffer (no copy): to the application on a client, into a channel's history and every
//! receiver's queue on the server. A fresh buffer per frame costs more than its bytes: as
//! 64 KiB buffers come and go the allocator gives the top of its heap back to the system,
//! and every page of the next ones then faults in anew (about five page faults per 64 KiB
//! message on a client, two to three on the server). Instead, the buffer whose last view
//! is dropped comes back to the [`FrameBuffers`] it was lent from, and the next large
//! frame of about its size is read into it.
//!
//! Buffers come back in bursts (an application many messages behind its connection's
//! reader, a history trimming many messages at once), so up to [`KEPT_BUFFERS`] unused
//! ones are kept ([`KEPT_BYTES`] together); two fewer than that gave back a fault per
//! message or more in `bench pubsub --size 64k` on a client. They are kept only while
//! large frames keep coming: once none was taken for [`KEEP_FOR`], what comes back is
//! freed, and the owner lets go of what was kept ([`FrameBuffers::in_use`],
//! [`FrameBuffers::release_unused`], [`FrameBuffers::release_if_idle`]). A buffer whose
//! [`FrameBuffers`] is gone is freed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Unused buffers a connection keeps for its next large frames.
pub const KEPT_BUFFERS: usize = 32;
/// Bytes those may hold together (so that few frames of a megabyte are kept).
pub const KEPT_BYTES: usize = 4 * 1024 * 1024;
/// How long after the last large frame buffers are still kept.
pub const KEEP_FOR: Duration = Duration::from_secs(1);

/// Large-frame buffers (a client connection's, or a whole server's): those unused, and a
/// count of those lent out.
#[derive(Debug, Default)]
pub struct FrameBuffers {
    unused: Mutex<Unused>,
    /// Buffers lent out as frames and not yet back (or freed).
    lent: AtomicUsize,
}

#[derive(Debug, Default)]
struct Unused {
    buffers: Vec<Vec<u8>>,
    /// When a buffer was last taken for a frame.
    last_taken: Option<Instant>,
}

impl FrameBuffers {
    /// No buffers yet: they are made as large frames come, and kept as they come back.
    pub fn new() -> Arc<FrameBuffers> {
        Arc::default()
    }

    fn unused(&self) -> MutexGuard<'_, Unused> {
        // A panic elsewhere cannot leave a list of buffers half changed.
        self.unused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty buffer of at least `size` bytes, and not much more (a small frame must
    /// not hold a much larger buffer): an unused one if one fits, else a new one.
    pub fn take(&self, size: usize) -> Vec<u8> {
        let mut unused = self.unused();
        unused.last_taken = Some(Instant::now());
        let fitting = unused
            .buffers
            .iter()
            .position(|buffer| (size..=2 * size).contains(&buffer.capacity()));
        match fitting {
            Some(index) => unused.buffers.swap_remove(index),
            None => {
                // Frames of another size now: what is kept makes room for theirs.
                unused.buffers.pop();
                drop(unused);
                Vec::with_capacity(size)
            }
        }
    }

    /// Whether buffers are kept or lent out: the reader, waiting for bytes, then calls
    /// [`FrameBuffers::release_unused`] once nothing came for [`KEEP_FOR`].
    pub fn in_use(&self) -> bool {
        self.lent.load(Ordering::Relaxed) > 0 || !self.unused().buffers.is_empty()
    }

    /// Frees the unused buffers.
    pub fn release_unused(&self) {
        let released = std::mem::take(&mut self.unused().buffers);
        drop(released);
    }

    /// Frees the unused buffers if none was taken for [`KEEP_FOR`]: for an owner that
    /// looks now and then rather than when its reads go quiet.
    pub fn release_if_idle(&self) {
        let mut unused = self.unused();
        if unused.buffers.is_empty()
            || unused
                .last_taken
                .is_some_and(|taken| taken.elapsed() < KEEP_FOR)
        {
            return;
        }
        let released = std::mem::take(&mut unused.buffers);
        drop(unused);
        drop(released);
    }

    /// `buffer` as shared bytes that come back here when their last view is dropped.
    pub fn lend(self: &Arc<FrameBuffers>, buffer: Vec<u8>) -> Bytes {
        self.lent.fetch_add(1, Ordering::Relaxed);
        Bytes::from_owner(Lent {
            buffer,
            home: Arc::downgrade(self),
        })
    }

    fn give_back(&self, mut buffer: Vec<u8>) {
        self.lent.fetch_sub(1, Ordering::Relaxed);
        let mut unused = self.unused();
        let recent = unused
            .last_taken
            .is_some_and(|taken| taken.elapsed() < KEEP_FOR);
        let held: usize = unused.buffers.iter().map(Vec::capacity).sum();
        if recent && unused.buffers.len() < KEPT_BUFFERS && held + buffer.capacity() <= KEPT_BYTES {
            buffer.clear();
            unused.buffers.push(buffer);
        }
    }
}

/// A buffer lent out as [`Bytes`].
struct Lent {
    buffer: Vec<u8>,
    home: Weak<FrameBuffers>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give_back(std::mem::take(&mut self.buffer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_view_is_dropped() {
        let buffers = FrameBuffers::new();
        let mut buffer = buffers.take(1000);
        buffer.extend_from_slice(&[7; 600]);
        let address = buffer.as_ptr();
        let lent = buffers.lend(buffer);
        let body = lent.slice(100..200);
        drop(lent);
        assert!(buffers.unused().buffers.is_empty(), "a view is still held");
        drop(body);
        let again = buffers.take(1000);
        assert_eq!(again.as_ptr(), address, "the same memory");
        assert!(again.is_empty());
        // More than twice as large, or too small: not this one, which makes room.
        drop(buffers.lend(again));
        assert_eq!(buffers.unused().buffers.len(), 1);
        assert!(buffers.take(400).capacity() < 1000);
        drop(buffers.lend(buffers.take(1000)));
        let larger = buffers.take(4000);
        assert!(larger.capacity() >= 4000);
        assert!(buffers.unused().buffers.is_empty());
    }

    #[test]
    fn at_most_a_few_buffers_are_kept_and_none_once_the_connection_is_gone() {
        let buffers = FrameBuffers::new();
        let lent: Vec<Bytes> = (0..KEPT_BUFFERS + 4)
            .map(|_| buffers.lend(buffers.take(64 * 1024)))
            .collect();
        assert!(buffers.in_use());
        drop(lent);
        assert_eq!(buffers.unused().buffers.len(), KEPT_BUFFERS);
        buffers.release_unused();
        assert!(!buffers.in_use());
        let outliving = buffers.lend(buffers.take(64 * 1024));
        drop(buffers);
        // Freed rather than given back to nothing.
        drop(outliving);
    }

    #[test]
    fn buffers_coming_back_long_after_the_last_frame_are_freed() {
        let buffers = FrameBuffers::new();
        let lent = buffers.lend(buffers.take(64 * 1024));
        buffers.unused().last_taken = Instant::now().checked_sub(KEEP_FOR);
        drop(lent);
        assert!(buffers.unused().buffers.is_empty());
        assert!(!buffers.in_use());
    }

    #[test]
    fn kept_buffers_are_released_once_none_was_taken_for_a_while() {
        let buffers = FrameBuffers::new();
        drop(buffers.lend(buffers.take(64 * 1024)));
        buffers.release_if_idle();
        assert_eq!(buffers.unused().buffers.len(), 1, "taken just now: kept");
        buffers.unused().last_taken = Instant::now().checked_sub(KEEP_FOR);
        buffers.release_if_idle();
        assert!(buffers.unused().buffers.is_empty());
        assert!(!buffers.in_use());
    }
}
