//! [`History`]: the retained messages of one channel or group, with sequence numbers and
//! retention by count, total bytes and age.

use std::collections::VecDeque;
use std::sync::Arc;

use switchboard_proto::message_head::MessageHead;
use switchboard_proto::packet::Since;
use uuid::Uuid;

use super::message::StoredMessage;
use super::{prefetch, recycle};
use crate::time::now_us;

/// Limits on what a history keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_count: u64,
    pub max_bytes: Option<u64>,
    pub max_age_us: Option<u64>,
}

/// The retained messages of one channel or group, oldest first.
#[derive(Debug)]
pub struct History {
    messages: VecDeque<Arc<StoredMessage>>,
    next_seq: u64,
    last_time_us: u64,
    bytes: u64,
    retention: Retention,
    /// Its channel or group was deleted: a publish that found it just before must not
    /// add to it.
    deleted: bool,
    /// Cluster mode: where this node's copy stands in the backplane's history.
    pub(crate) cluster: ClusterPosition,
    /// The head of the last message encoded here, patched to encode the next one alike
    /// (see [`MessageHead`]); boxed, as a history that is never published to needs none.
    head: Option<Box<MessageHead>>,
}

/// Cluster mode: how a node's cached history relates to the backplane's.
///
/// The cache holds a contiguous run of the channel's newest messages ending at
/// `delivered`: every message in it was delivered live to the connections routed here
/// when it came, so a replay from it followed by live delivery neither repeats nor
/// misses one, exactly as on a single server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterPosition {
    /// The epoch of the cached messages (0: none seen yet).
    pub epoch: u64,
    /// The newest seq delivered live here; `None` until the node is in step with the
    /// channel (after it started following it, or after an epoch change).
    pub delivered: Option<u64>,
    /// The newest seq delivered through a hashtag's feed while the channel itself is not
    /// followed here (such deliveries skip the cache: they have gaps by nature).
    pub tagged: u64,
}

/// Counts describing a history.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryInfo {
    pub count: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub bytes: u64,
}

impl History {
    pub fn new(retention: Retention) -> Self {
        History {
            messages: VecDeque::new(),
            next_seq: 1,
            last_time_us: 0,
            bytes: 0,
            retention,
            deleted: false,
            cluster: ClusterPosition::default(),
            head: None,
        }
    }

    /// A history restored from storage.
    pub fn restore(retention: Retention, next_seq: u64, messages: Vec<Arc<StoredMessage>>) -> Self {
        let mut history = History::new(retention);
        history.next_seq = next_seq.max(1);
        for message in messages {
            history.last_time_us = history.last_time_us.max(message.time_us());
            // Saturating: a stored seq is input too, and u64::MAX must not wrap to 0.
            history.next_seq = history.next_seq.max(message.seq().saturating_add(1));
            history.bytes += message.body_len();
            history.messages.push_back(message);
        }
        history
    }

    /// The sequence number the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A publish time for the next message: `now`, but never before the previous one, so
    /// that time order and sequence order agree even if the clock steps back.
    pub fn next_time(&self, now_us: u64) -> u64 {
        now_us.max(self.last_time_us)
    }

    /// Appends a message (its seq must be `next_seq()`), then trims to the retention.
    /// Returns the highest trimmed seq, if anything was trimmed.
    pub fn push(&mut self, message: Arc<StoredMessage>, now_us: u64) -> Option<u64> {
        self.next_seq = message.seq().saturating_add(1);
        self.last_time_us = message.time_us();
        self.bytes += message.body_len();
        self.messages.push_back(message);
        self.trim(now_us)
    }

    /// Drops the oldest messages beyond the retention; returns the highest seq dropped.
    pub fn trim(&mut self, now_us: u64) -> Option<u64> {
        // Those over the count go whatever else holds: a full history drops one per push
        // without each being weighed against the other limits.
        let over_count = (self.messages.len() as u64).saturating_sub(self.retention.max_count);
        let mut trimmed = None;
        for _ in 0..over_count {
            trimmed = self.drop_oldest().or(trimmed);
        }
        if self.retention.max_bytes.is_none() && self.retention.max_age_us.is_none() {
            return trimmed;
        }
        while let Some(oldest) = self.messages.front() {
            let over_bytes = self
                .retention
                .max_bytes
                .is_some_and(|max| self.bytes > max && self.messages.len() > 1);
            let too_old = self
                .retention
                .max_age_us
                .is_some_and(|max| now_us.saturating_sub(oldest.time_us()) > max);
            if !(over_bytes || too_old) {
                break;
            }
            trimmed = self.drop_oldest().or(trimmed);
        }
        trimmed
    }

    /// Drops the oldest message and returns its seq. A small one that nothing else
    /// holds is handed to [`recycle`], for the next publish to encode into; one that a
    /// delivery queue still holds goes there when the queue's writer lets go of it.
    fn drop_oldest(&mut self) -> Option<u64> {
        let oldest = self.messages.pop_front()?;
        // The next publish lets the next oldest go: its record is asked for now, a
        // publish ahead of the first read of it.
        if let Some(next) = self.messages.front() {
            prefetch::arc(next);
        }
        self.bytes -= oldest.body_len();
        oldest.retire();
        let seq = oldest.seq();
        recycle::give(oldest);
        Some(seq)
    }

    /// The head the next message is encoded from, if it fits.
    pub fn message_head(&mut self) -> &mut MessageHead {
        self.head.get_or_insert_default()
    }

    pub fn info(&self) -> HistoryInfo {
        HistoryInfo {
            count: self.messages.len() as u64,
            first_seq: self.messages.front().map_or(0, |m| m.seq()),
            // The newest message counts too: at u64::MAX, next_seq cannot go past it.
            last_seq: self
                .next_seq
                .saturating_sub(1)
                .max(self.messages.back().map_or(0, |m| m.seq())),
            bytes: self.bytes,
        }
    }

    /// Whether its channel or group was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// The position of the oldest message not past the maximum age at `now_us`: reads
    /// start there, so that an expired message is never served, even before a trim
    /// removes it.
    fn first_live(&self, now_us: u64) -> usize {
        match self.retention.max_age_us {
            Some(max) => self
                .messages
                .partition_point(|m| now_us.saturating_sub(m.time_us()) > max),
            None => 0,
        }
    }

    pub fn latest(&self) -> Option<Arc<StoredMessage>> {
        self.latest_at(now_us())
    }

    fn latest_at(&self, now_us: u64) -> Option<Arc<StoredMessage>> {
        let live = self.first_live(now_us);
        self.messages.range(live..).next_back().cloned()
    }

    pub fn find(&self, id: &Uuid) -> Option<Arc<StoredMessage>> {
        let live = self.first_live(now_us());
        self.messages
            .range(live..)
            .rev()
            .find(|m| m.id() == *id)
            .cloned()
    }

    /// Messages from `since` on, oldest first: with `Since::All`, the newest `limit`;
    /// otherwise the first `limit` from that point. Expired messages are left out.
    pub fn range(&self, since: Since, limit: Option<u64>) -> Vec<Arc<StoredMessage>> {
        self.range_at(since, limit, now_us())
    }

    fn range_at(&self, since: Since, limit: Option<u64>, now_us: u64) -> Vec<Arc<StoredMessage>> {
        let (start, end) = self.bounds(since, limit, now_us);
        self.messages.range(start..end).cloned().collect()
    }

    /// The first and last sequence numbers of what [`History::range`] would return, if
    /// anything: a fetch is then sent page by page within them.
    pub fn window(&self, since: Since, limit: Option<u64>) -> Option<(u64, u64)> {
        let (start, end) = self.bounds(since, limit, now_us());
        if start >= end {
            return None;
        }
        Some((self.messages[start].seq(), self.messages[end - 1].seq()))
    }

    /// The messages with sequence numbers from `first` through `last`, oldest first, up
    /// to `max_bytes` of frames (at least one message, whatever its size). Messages that
    /// expired since the window was taken are left out.
    pub fn page(&self, first: u64, last: u64, max_bytes: usize) -> Vec<Arc<StoredMessage>> {
        let start = self
            .messages
            .partition_point(|m| m.seq() < first)
            .max(self.first_live(now_us()));
        let mut bytes = 0;
        let mut page = Vec::new();
        for message in self.messages.range(start..) {
            if message.seq() > last || (!page.is_empty() && bytes >= max_bytes) {
                break;
            }
            bytes += message.frame_len();
            page.push(message.clone());
        }
        page
    }

    /// The index range of [`History::range`] at time `now_us`.
    fn bounds(&self, since: Since, limit: Option<u64>, now_us: u64) -> (usize, usize) {
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let live = self.first_live(now_us);
        let start = match since {
            Since::All => self.messages.len().saturating_sub(limit),
            Since::Seq(seq) => self.messages.partition_point(|m| m.seq() < seq),
            Since::Time(time) => self.messages.partition_point(|m| m.time_us() < time),
        }
        .max(live);
        let end = start.saturating_add(limit).min(self.messages.len());
        (start, end.max(start))
    }

    /// Cluster mode: forgets the cached messages (the node stopped following the
    /// channel, or its epoch changed), so the cache is again an empty run.
    pub fn clear_cache(&mut self) {
        for message in self.messages.drain(..) {
            message.retire();
        }
        self.bytes = 0;
        self.next_seq = 1;
        self.cluster.delivered = None;
    }

    /// Cluster mode: an empty cache whose next message is the one after `seq`.
    pub fn next_seq_after(&mut self, seq: u64) {
        self.next_seq = seq.saturating_add(1);
    }

    /// Cluster mode: the seqs of the oldest and newest cached messages.
    pub fn cached_bounds(&self) -> Option<(u64, u64)> {
        Some((self.messages.front()?.seq(), self.messages.back()?.seq()))
    }

    /// Cluster mode: puts messages older than every cached one in front of them (oldest
    /// first in `older`), within the retention.
    pub fn prepend(&mut self, older: Vec<Arc<StoredMessage>>) {
        let room = usize::try_from(self.retention.max_count)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.messages.len());
        let skip = older.len().saturating_sub(room);
        for message in older.into_iter().skip(skip).rev() {
            self.bytes += message.body_len();
            self.last_time_us = self.last_time_us.max(message.time_us());
            self.next_seq = self.next_seq.max(message.seq().saturating_add(1));
            self.messages.push_front(message);
        }
    }

    /// Takes every message out (the history is being deleted): each is retired, so
    /// that its streamed body goes once nobody is sending it.
    pub fn take_all(&mut self) -> Vec<Arc<StoredMessage>> {
        self.deleted = true;
        self.bytes = 0;
        let messages: Vec<_> = self.messages.drain(..).collect();
        for message in &messages {
            message.retire();
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::packet::Message;
    use switchboard_proto::{FrameCodec, Limits};

    use super::*;

    const KEEP: Retention = Retention {
        max_count: 10,
        max_bytes: None,
        max_age_us: None,
    };

    fn message(seq: u64) -> Arc<StoredMessage> {
        let message = Message {
            channel: "c".into(),
            seq,
            time_us: seq,
            ..Message::default()
        };
        let codec = FrameCodec::new(Limits::default());
        Arc::new(StoredMessage::encode(&codec, &message.as_envelope(), Vec::new()).unwrap())
    }

    #[test]
    fn restored_sequence_numbers_at_the_top_of_the_range_do_not_overflow() {
        let history = History::restore(KEEP, 0, vec![message(u64::MAX - 1), message(u64::MAX)]);
        let info = history.info();
        assert_eq!(info.count, 2);
        assert_eq!(info.first_seq, u64::MAX - 1);
        assert_eq!(info.last_seq, u64::MAX);
        let mut history = History::restore(KEEP, u64::MAX, Vec::new());
        assert_eq!(history.info().last_seq, u64::MAX - 1);
        history.push(message(u64::MAX), 0);
        assert_eq!(history.info().last_seq, u64::MAX);
    }

    #[test]
    fn pages_cover_the_window_in_order_and_stop_at_its_end() {
        let mut history = History::new(Retention {
            max_count: 100,
            ..KEEP
        });
        for seq in 1..=50 {
            history.push(message(seq), seq);
        }
        assert_eq!(history.window(Since::All, Some(20)), Some((31, 50)));
        assert_eq!(history.window(Since::Seq(10), Some(5)), Some((10, 14)));
        assert_eq!(history.window(Since::Seq(51), None), None);
        let frame = history.latest().unwrap().frame_len();
        let (first, last) = history.window(Since::Seq(10), Some(25)).unwrap();
        let mut next = first;
        let mut seen = Vec::new();
        loop {
            let page = history.page(next, last, 3 * frame);
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            seen.extend(page.iter().map(|m| m.seq()));
            next = page.last().unwrap().seq() + 1;
        }
        assert_eq!(seen, (10..=34).collect::<Vec<_>>());
        assert_eq!(
            history.page(40, 40, 0).len(),
            1,
            "one message even over the bytes"
        );
    }

    #[test]
    fn an_empty_history_reports_zeros() {
        for history in [History::new(KEEP), History::restore(KEEP, 0, Vec::new())] {
            let info = history.info();
            assert_eq!((info.count, info.first_seq, info.last_seq), (0, 0, 0));
            assert_eq!(history.next_seq(), 1);
        }
    }

    #[test]
    fn reads_never_return_a_message_past_the_maximum_age() {
        let aging = Retention {
            max_age_us: Some(10),
            ..KEEP
        };
        // Messages published at times 1..=5; no publish since, so no trim.
        let history = History::restore(aging, 0, (1..=5).map(message).collect());
        let seqs = |messages: Vec<Arc<StoredMessage>>| -> Vec<u64> {
            messages.iter().map(|m| m.seq()).collect()
        };
        assert_eq!(seqs(history.range_at(Since::All, None, 5)), [1, 2, 3, 4, 5]);
        // At 13, messages older than 10 µs (times 1 and 2) are expired.
        assert_eq!(seqs(history.range_at(Since::All, None, 13)), [3, 4, 5]);
        assert_eq!(seqs(history.range_at(Since::Seq(1), Some(2), 13)), [3, 4]);
        assert_eq!(seqs(history.range_at(Since::All, Some(10), 13)), [3, 4, 5]);
        assert_eq!(history.latest_at(15).map(|m| m.seq()), Some(5));
        assert!(history.latest_at(16).is_none());
        assert!(history.range_at(Since::All, None, 100).is_empty());
    }

    /// What a history trims goes to the recycle pool when nothing else holds it; a
    /// message still queued for a subscriber (one more than a history behind, which a
    /// burst of small publishes read at once makes) is left to its queue's writer.
    #[test]
    fn trimmed_messages_nothing_else_holds_are_handed_for_reuse() {
        let mut history = History::new(KEEP);
        let mut queued = Vec::new();
        for seq in 1..=15 {
            let message = message(seq);
            if seq <= 3 {
                queued.push(message.clone());
            }
            history.push(message, seq);
        }
        // Trimmed 1..=5: 4 and 5 were let go, 1..=3 are still queued. This thread's own
        // spares are taken first, the last given first.
        let reused: Vec<u64> = std::iter::from_fn(recycle::take)
            .take(2)
            .map(|spare| spare.seq())
            .collect();
        assert_eq!(reused, [5, 4]);
        assert!(
            queued.iter().all(|message| Arc::strong_count(message) == 1),
            "the history let go of the queued ones"
        );
    }
}
