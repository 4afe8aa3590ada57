//! The server-wide budget for large frames still arriving: what every connection's
//! partial frames may hold together, so that many peers each sending the head of a large
//! frame, and its body slowly or never, cannot make the server hold their declared
//! lengths all at once.
//!
//! It also keeps the server's large-frame buffers ([`FrameBuffers`]): every connection
//! reads its large frames into buffers taken from there, and a buffer comes back when the
//! last view of its frame is dropped (its message trimmed from history and written to
//! every receiver), for the next large frame of about its size, on any connection. One
//! pool for the server, rather than one per connection, bounds what is kept unused
//! whatever the number of connections, and costs an idle connection nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use switchboard_proto::frame_buffers::FrameBuffers;

/// Frames up to this size are not counted: every connection may hold one partial frame
/// this large anyway (its read buffer), and counting them would cost the frequent small
/// frames an atomic operation each time a read ends inside one.
pub(crate) const UNCOUNTED_FRAME_LEN: usize = 64 * 1024;

/// Bytes of large frames still arriving, against a limit.
#[derive(Debug)]
pub(crate) struct FrameBudget {
    limit: usize,
    held: AtomicUsize,
    /// Large frames refused because the budget was spent.
    refused: AtomicU64,
    buffers: Arc<FrameBuffers>,
}

/// A frame the budget had no room for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoRoom {
    /// Bytes the frame declared.
    pub len: usize,
    /// Bytes held by other partial frames when it was refused.
    pub held: usize,
    pub limit: usize,
}

impl FrameBudget {
    pub fn new(limit: usize) -> Self {
        FrameBudget {
            limit,
            held: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            buffers: FrameBuffers::new(),
        }
    }

    /// The buffers large frames are read into.
    pub fn buffers(&self) -> &Arc<FrameBuffers> {
        &self.buffers
    }

    /// Takes `len` bytes from the budget, or says why not.
    pub fn take(&self, len: usize) -> Result<(), NoRoom> {
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(len).filter(|&total| total <= self.limit)
            });
        taken.map(drop).map_err(|held| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            NoRoom {
                len,
                held,
                limit: self.limit,
            }
        })
    }

    /// Gives back what [`FrameBudget::take`] took.
    pub fn give_back(&self, len: usize) {
        self.held.fetch_sub(len, Ordering::AcqRel);
    }

    /// Bytes held now by partial frames.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Large frames refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_admitted_while_they_fit_and_refused_after() {
        let budget = FrameBudget::new(10);
        budget.take(6).unwrap();
        let refused = budget.take(5).unwrap_err();
        assert_eq!((refused.len, refused.held, refused.limit), (5, 6, 10));
        budget.take(4).unwrap();
        assert_eq!(budget.held(), 10);
        budget.give_back(6);
        budget.take(5).unwrap();
        assert_eq!(budget.held(), 9);
        assert_eq!(budget.refused(), 1);
        assert!(budget.take(usize::MAX).is_err(), "no overflow");
    }
}
