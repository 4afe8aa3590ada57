//! [`History`]: the retained messages of one channel or group, with sequence numbers and
//! retention by count, total bytes and age.
//!
//! A history holds its messages in memory, oldest first; a durable one holds only its
//! newest there and the rest in its [`ColdPart`], read back from the store when a read
//! reaches them. Reads address both as one sequence: positions below the cold part's
//! length are cold entries, the rest are the messages in memory.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use switchboard_proto::message_head::MessageHead;
use switchboard_proto::packet::Since;
use uuid::Uuid;

use super::cold::{ColdLog, ColdPart, ColdRead, Dropped};
use super::message::StoredMessage;
use super::{prefetch, recycle};
use crate::storage::StorageError;
use crate::time::now_us;

/// Limits on what a history keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_count: u64,
    pub max_bytes: Option<u64>,
    pub max_age_us: Option<u64>,
}

/// Messages of a history taken under its lock: those in memory, and where the older
/// ones are in the store, read back by [`HistoryRead::read`] after the lock is released.
pub struct HistoryRead {
    cold: Option<ColdRead>,
    resident: Vec<Arc<StoredMessage>>,
}

impl HistoryRead {
    fn nothing() -> HistoryRead {
        HistoryRead {
            cold: None,
            resident: Vec::new(),
        }
    }

    /// Whether reading takes the store (some message is out of memory).
    pub fn needs_store(&self) -> bool {
        self.cold.as_ref().is_some_and(ColdRead::needs_store)
    }

    /// The seq of the newest message planned, if any.
    pub fn last_seq(&self) -> Option<u64> {
        match (self.resident.last(), &self.cold) {
            (Some(newest), _) => Some(newest.seq()),
            (None, Some(cold)) => cold.last_seq(),
            (None, None) => None,
        }
    }

    /// The messages, oldest first, those out of memory read back from the store.
    pub fn read(self) -> Result<Vec<Arc<StoredMessage>>, StorageError> {
        let mut messages = match self.cold {
            Some(cold) => cold.read()?,
            None => Vec::new(),
        };
        messages.extend(self.resident);
        Ok(messages)
    }
}

/// The retained messages of one channel or group, oldest first.
#[derive(Debug)]
pub struct History {
    /// The messages in memory: all of them, or the newest of a durable history.
    messages: VecDeque<Arc<StoredMessage>>,
    /// A durable history's older messages, known here and read back from the store.
    cold: Option<Box<ColdPart>>,
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
            cold: None,
            next_seq: 1,
            last_time_us: 0,
            bytes: 0,
            retention,
            deleted: false,
            cluster: ClusterPosition::default(),
            head: None,
        }
    }

    /// Moves the next sequence number up to `next_seq` (a restored history's, which the
    /// store knows even when its newest messages were trimmed).
    pub fn resume_at(&mut self, next_seq: u64) {
        self.next_seq = self.next_seq.max(next_seq).max(1);
    }

    /// From now on, keeps only the newest messages in memory (up to `max_bytes` of
    /// frames) and reads older ones back from `log`'s store, which holds every message in
    /// memory now.
    pub fn keep_cold(&mut self, log: ColdLog, max_bytes: u64) {
        let cold = ColdPart::new(log, &self.messages, max_bytes);
        self.attach_cold(cold);
    }

    /// As [`History::keep_cold`], with other limits on what stays in memory.
    #[cfg(test)]
    fn keep_cold_within(&mut self, log: ColdLog, max_messages: usize, max_bytes: u64) {
        let cold = ColdPart::with_limits(log, &self.messages, max_messages, max_bytes);
        self.attach_cold(cold);
    }

    fn attach_cold(&mut self, mut cold: ColdPart) {
        cold.evict(&mut self.messages);
        self.cold = Some(Box::new(cold));
    }

    /// Moves out of memory what the store wrote since the last publish left this history
    /// over its bounds in memory (see [`ColdPart::sweep`]).
    pub fn sweep_cold(&mut self) {
        if let Some(cold) = &mut self.cold {
            cold.sweep(&mut self.messages);
        }
    }

    /// How many messages are in memory (all, unless the history keeps a cold part).
    #[cfg(test)]
    fn resident(&self) -> usize {
        self.messages.len()
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

    /// Appends a message (its seq must be `next_seq()`), `stored` when it was just
    /// appended to the store, then trims to the retention. Returns the highest trimmed
    /// seq, if anything was trimmed.
    pub fn push(&mut self, message: Arc<StoredMessage>, stored: bool, now_us: u64) -> Option<u64> {
        self.append(message, now_us, |cold, message| {
            cold.pushed(message, stored)
        })
    }

    /// As [`History::push`], for a message read from the store at start: already
    /// written, so free to leave memory at once.
    pub fn push_restored(&mut self, message: Arc<StoredMessage>, now_us: u64) -> Option<u64> {
        self.append(message, now_us, ColdPart::pushed_written)
    }

    fn append(
        &mut self,
        message: Arc<StoredMessage>,
        now_us: u64,
        note: impl FnOnce(&mut ColdPart, &StoredMessage),
    ) -> Option<u64> {
        // Saturating: a stored seq is input too, and u64::MAX must not wrap to 0.
        self.next_seq = message.seq().saturating_add(1);
        self.last_time_us = message.time_us();
        self.bytes += message.body_len();
        if let Some(cold) = &mut self.cold {
            note(cold, &message);
        }
        self.messages.push_back(message);
        let trimmed = self.trim(now_us);
        if let Some(cold) = &mut self.cold {
            cold.evict(&mut self.messages);
        }
        trimmed
    }

    /// How many messages the history retains, in memory or not.
    fn len(&self) -> usize {
        self.cold_len() + self.messages.len()
    }

    fn cold_len(&self) -> usize {
        self.cold.as_ref().map_or(0, |cold| cold.len())
    }

    /// The seq of the message at `index` (see the module's documentation).
    fn seq_at(&self, index: usize) -> u64 {
        match &self.cold {
            Some(cold) if index < cold.len() => cold.seq_at(index),
            _ => self.messages[index - self.cold_len()].seq(),
        }
    }

    fn time_at(&self, index: usize) -> u64 {
        match &self.cold {
            Some(cold) if index < cold.len() => cold.time_at(index),
            _ => self.messages[index - self.cold_len()].time_us(),
        }
    }

    fn frame_len_at(&self, index: usize) -> usize {
        match &self.cold {
            Some(cold) if index < cold.len() => cold.frame_len_at(index),
            _ => self.messages[index - self.cold_len()].frame_len(),
        }
    }

    /// The first index whose message does not satisfy `before(seq, time_us)`, which
    /// holds for a prefix of the history.
    fn partition_point(&self, before: impl Fn(u64, u64) -> bool) -> usize {
        let cold_len = self.cold_len();
        if let Some(cold) = &self.cold
            && cold_len > 0
        {
            let point = cold.partition_point(&before);
            if point < cold_len {
                return point;
            }
        }
        cold_len
            + self
                .messages
                .partition_point(|m| before(m.seq(), m.time_us()))
    }

    /// The messages at `range`, those in memory taken now, the others to be read back
    /// from the store by [`HistoryRead::read`].
    fn plan(&self, range: Range<usize>) -> HistoryRead {
        let cold_len = self.cold_len();
        let cold = match &self.cold {
            Some(cold) if range.start < cold_len => {
                Some(cold.plan(range.start..range.end.min(cold_len)))
            }
            _ => None,
        };
        let resident = range.start.max(cold_len) - cold_len..range.end.max(cold_len) - cold_len;
        HistoryRead {
            cold,
            resident: self.messages.range(resident).cloned().collect(),
        }
    }

    /// Drops the oldest messages beyond the retention; returns the highest seq dropped.
    pub fn trim(&mut self, now_us: u64) -> Option<u64> {
        // Those over the count go whatever else holds: a full history drops one per push
        // without each being weighed against the other limits.
        let over_count = (self.len() as u64).saturating_sub(self.retention.max_count);
        let mut trimmed = None;
        for _ in 0..over_count {
            trimmed = self.drop_oldest().or(trimmed);
        }
        if self.retention.max_bytes.is_none() && self.retention.max_age_us.is_none() {
            return trimmed;
        }
        while self.len() > 0 {
            let oldest_time = self.time_at(0);
            let over_bytes = self
                .retention
                .max_bytes
                .is_some_and(|max| self.bytes > max && self.len() > 1);
            let too_old = self
                .retention
                .max_age_us
                .is_some_and(|max| now_us.saturating_sub(oldest_time) > max);
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
        if let Some(cold) = &mut self.cold
            && let Some(dropped) = cold.drop_oldest()
        {
            return Some(match dropped {
                Dropped::Stored { seq, body_len } => {
                    self.bytes -= body_len;
                    seq
                }
                Dropped::Kept(message) => self.let_go(message),
            });
        }
        let oldest = self.messages.pop_front()?;
        if let Some(cold) = &mut self.cold {
            cold.resident_dropped(&oldest);
        }
        // The next publish lets the next oldest go: its record is asked for now, a
        // publish ahead of the first read of it.
        if let Some(next) = self.messages.front() {
            prefetch::arc(next);
        }
        Some(self.let_go(oldest))
    }

    /// Lets go of a message that left the history; returns its seq.
    fn let_go(&mut self, message: Arc<StoredMessage>) -> u64 {
        self.bytes -= message.body_len();
        message.retire();
        let seq = message.seq();
        recycle::give(message);
        seq
    }

    /// The head the next message is encoded from, if it fits.
    pub fn message_head(&mut self) -> &mut MessageHead {
        self.head.get_or_insert_default()
    }

    pub fn info(&self) -> HistoryInfo {
        HistoryInfo {
            count: self.len() as u64,
            first_seq: if self.len() > 0 { self.seq_at(0) } else { 0 },
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
            Some(max) => self.partition_point(|_, time| now_us.saturating_sub(time) > max),
            None => 0,
        }
    }

    /// The newest message that has not expired, if any, to be read by
    /// [`HistoryRead::read`] (after the lock is released).
    pub fn latest(&self) -> HistoryRead {
        self.latest_at(now_us())
    }

    fn latest_at(&self, now_us: u64) -> HistoryRead {
        let live = self.first_live(now_us);
        let len = self.len();
        if live >= len {
            return HistoryRead::nothing();
        }
        self.plan(len - 1..len)
    }

    /// The message with `id`, if the history holds it and it has not expired, to be read
    /// by [`HistoryRead::read`] (after the lock is released).
    pub fn find(&self, id: &Uuid) -> HistoryRead {
        let live = self.first_live(now_us());
        let cold_len = self.cold_len();
        let resident = self.messages.range(live.max(cold_len) - cold_len..);
        if let Some(found) = resident.rev().find(|m| m.id() == *id) {
            return HistoryRead {
                cold: None,
                resident: vec![found.clone()],
            };
        }
        match self
            .cold
            .as_ref()
            .and_then(|cold| cold.position_of(id, live))
        {
            Some(index) => self.plan(index..index + 1),
            None => HistoryRead::nothing(),
        }
    }

    /// Messages from `since` on, oldest first: with `Since::All`, the newest `limit`;
    /// otherwise the first `limit` from that point. Expired messages are left out.
    #[cfg(test)]
    pub fn range(
        &self,
        since: Since,
        limit: Option<u64>,
    ) -> Result<Vec<Arc<StoredMessage>>, StorageError> {
        self.range_at(since, limit, now_us())
    }

    #[cfg(test)]
    fn range_at(
        &self,
        since: Since,
        limit: Option<u64>,
        now_us: u64,
    ) -> Result<Vec<Arc<StoredMessage>>, StorageError> {
        let (start, end) = self.bounds(since, limit, now_us);
        self.plan(start..end).read()
    }

    /// The messages from `since` on (with `Since::All`, the newest `limit`; otherwise
    /// the first `limit` from that point; expired ones left out), cut to the newest
    /// whose frames, with `item_overhead` bytes each, weigh at most `max_weight` (at
    /// least one): a replay, read back only as far as it is sent, by [`HistoryRead::read`].
    pub fn replay(
        &self,
        since: Since,
        limit: Option<u64>,
        max_weight: usize,
        item_overhead: usize,
    ) -> HistoryRead {
        let (mut start, end) = self.bounds(since, limit, now_us());
        let mut weight: usize = (start..end)
            .map(|index| self.frame_len_at(index) + item_overhead)
            .sum();
        while weight > max_weight && start + 1 < end {
            weight -= self.frame_len_at(start) + item_overhead;
            start += 1;
        }
        self.plan(start..end)
    }

    /// The first and last sequence numbers of what [`History::range`] would return, if
    /// anything: a fetch is then sent page by page within them.
    pub fn window(&self, since: Since, limit: Option<u64>) -> Option<(u64, u64)> {
        let (start, end) = self.bounds(since, limit, now_us());
        if start >= end {
            return None;
        }
        Some((self.seq_at(start), self.seq_at(end - 1)))
    }

    /// The messages with sequence numbers from `first` through `last`, oldest first, up
    /// to `max_bytes` of frames (at least one message, whatever its size). Messages that
    /// expired since the window was taken are left out. What is out of memory is read
    /// back by [`HistoryRead::read`], once the history's lock is released.
    pub fn page(&self, first: u64, last: u64, max_bytes: usize) -> HistoryRead {
        let start = self
            .partition_point(|seq, _| seq < first)
            .max(self.first_live(now_us()));
        let mut bytes = 0;
        let mut end = start;
        while end < self.len() {
            if self.seq_at(end) > last || (end > start && bytes >= max_bytes) {
                break;
            }
            bytes += self.frame_len_at(end);
            end += 1;
        }
        self.plan(start..end)
    }

    /// The index range of [`History::range`] at time `now_us`.
    fn bounds(&self, since: Since, limit: Option<u64>, now_us: u64) -> (usize, usize) {
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let live = self.first_live(now_us);
        let start = match since {
            Since::All => self.len().saturating_sub(limit),
            Since::Seq(seq) => self.partition_point(|m_seq, _| m_seq < seq),
            Since::Time(time) => self.partition_point(|_, m_time| m_time < time),
        }
        .max(live);
        let end = start.saturating_add(limit).min(self.len());
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

    /// The hashtags of the messages that left memory, which the hashtag index may
    /// still hold (the history is being deleted): taken out.
    pub fn take_tags_out(&mut self) -> Vec<String> {
        self.cold
            .as_mut()
            .map_or_else(Vec::new, |cold| cold.take_tags_out())
    }

    /// Takes every message out (the history is being deleted): each is retired, so
    /// that its streamed body goes once nobody is sending it.
    pub fn take_all(&mut self) -> Vec<Arc<StoredMessage>> {
        self.deleted = true;
        self.bytes = 0;
        let mut messages = self
            .cold
            .as_mut()
            .map_or_else(Vec::new, |cold| cold.take_kept());
        messages.extend(self.messages.drain(..));
        for message in &messages {
            message.retire();
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use switchboard_proto::packet::{ChannelOptions, Message};
    use switchboard_proto::{FrameCodec, Limits};

    use super::*;
    use crate::storage::{LogKind, Snapshot, Storage, SyncFuture};

    const KEEP: Retention = Retention {
        max_count: 10,
        max_bytes: None,
        max_age_us: None,
    };

    fn codec() -> FrameCodec {
        FrameCodec::new(Limits::default())
    }

    fn message(seq: u64) -> Arc<StoredMessage> {
        let message = Message {
            channel: "c".into(),
            seq,
            id: Uuid::from_u128(u128::from(seq)),
            time_us: seq,
            body: format!("body {seq}").into_bytes().into(),
            ..Message::default()
        };
        Arc::new(StoredMessage::encode(&codec(), &message.as_envelope(), Vec::new()).unwrap())
    }

    /// A store that reads back what it was given, and can hold back its writes.
    #[derive(Default)]
    struct Shelf {
        messages: parking_lot::Mutex<Vec<Message>>,
        /// While set, records queued from now on are not written.
        holding: AtomicBool,
        written: AtomicU64,
        reads: AtomicU64,
        /// Held by a test to keep reads waiting inside the store.
        gate: parking_lot::Mutex<()>,
    }

    impl Shelf {
        /// Channel `c` of this store, to read back from.
        fn log(self: &Arc<Self>) -> ColdLog {
            let store: Arc<dyn Storage> = self.clone();
            ColdLog::new(store, LogKind::Channel, "c", codec(), Default::default())
        }

        fn queued(&self) -> u64 {
            self.messages.lock().len() as u64
        }

        fn hold(&self, hold: bool) {
            self.holding.store(hold, Ordering::SeqCst);
            if !hold {
                self.written.store(self.queued(), Ordering::SeqCst);
            }
        }
    }

    impl Storage for Shelf {
        fn is_durable(&self) -> bool {
            true
        }
        fn load(&self) -> Result<Snapshot, StorageError> {
            Ok(Snapshot::default())
        }
        fn put_channel(&self, _: &str, _: &ChannelOptions) -> Result<(), StorageError> {
            Ok(())
        }
        fn append(
            &self,
            _: LogKind,
            _: &str,
            message: &Arc<StoredMessage>,
        ) -> Result<(), StorageError> {
            self.messages.lock().push(message.envelope().unwrap());
            if !self.holding.load(Ordering::SeqCst) {
                self.written.store(self.queued(), Ordering::SeqCst);
            }
            Ok(())
        }
        fn trim(&self, _: LogKind, _: &str, _: u64) {}
        fn put_group(&self, _: &str, _: &str) -> Result<(), StorageError> {
            Ok(())
        }
        fn add_member(&self, _: &str, _: &str) -> Result<(), StorageError> {
            Ok(())
        }
        fn remove_member(&self, _: &str, _: &str) -> Result<(), StorageError> {
            Ok(())
        }
        fn delete_channel(&self, _: &str) -> Result<(), StorageError> {
            Ok(())
        }
        fn delete_group(&self, _: &str) -> Result<(), StorageError> {
            Ok(())
        }
        fn sync(&self) -> SyncFuture {
            Box::pin(std::future::ready(Ok(())))
        }
        fn close(&self, _: &[(LogKind, String, u64)]) {}
        fn can_read_back(&self) -> bool {
            true
        }
        fn queued_through(&self) -> u64 {
            self.queued()
        }
        fn written_through(&self) -> u64 {
            self.written.load(Ordering::SeqCst)
        }
        fn read_log(
            &self,
            _: LogKind,
            _: &str,
            first: u64,
            last: u64,
        ) -> Result<Vec<Message>, StorageError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            drop(self.gate.lock());
            let messages = self.messages.lock();
            Ok(messages
                .iter()
                .filter(|m| (first..=last).contains(&m.seq))
                .cloned()
                .collect())
        }
    }

    /// A history as the hub keeps it in memory only, and one keeping at most `resident`
    /// messages in memory over `shelf`.
    fn both(retention: Retention, resident: usize) -> [(History, Option<Arc<Shelf>>); 2] {
        let shelf = Arc::new(Shelf::default());
        let mut cold = History::new(retention);
        cold.keep_cold_within(shelf.log(), resident, u64::MAX);
        [(History::new(retention), None), (cold, Some(shelf))]
    }

    /// Publishes `message` as the hub does: stored first, then kept.
    fn publish(history: &mut History, shelf: Option<&Arc<Shelf>>, message: Arc<StoredMessage>) {
        if let Some(shelf) = shelf {
            shelf.append(LogKind::Channel, "c", &message).unwrap();
        }
        let time = message.time_us();
        history.push(message, shelf.is_some(), time);
    }

    /// A history rebuilt from `messages` as at start.
    fn restored(retention: Retention, messages: Vec<Arc<StoredMessage>>) -> History {
        let mut history = History::new(retention);
        for message in messages {
            history.push_restored(message, 0);
        }
        history
    }

    fn seqs(messages: Result<Vec<Arc<StoredMessage>>, StorageError>) -> Vec<u64> {
        messages.unwrap().iter().map(|m| m.seq()).collect()
    }

    #[test]
    fn restored_sequence_numbers_at_the_top_of_the_range_do_not_overflow() {
        let mut history = History::new(KEEP);
        history.push_restored(message(u64::MAX - 1), 0);
        history.push_restored(message(u64::MAX), 0);
        let info = history.info();
        assert_eq!(info.count, 2);
        assert_eq!(info.first_seq, u64::MAX - 1);
        assert_eq!(info.last_seq, u64::MAX);
        let mut history = History::new(KEEP);
        history.resume_at(u64::MAX);
        assert_eq!(history.info().last_seq, u64::MAX - 1);
        history.push(message(u64::MAX), false, 0);
        assert_eq!(history.info().last_seq, u64::MAX);
    }

    /// A history of 50 messages of which the newest 8 are in memory, the rest on `shelf`.
    fn mostly_cold() -> (History, Arc<Shelf>) {
        let shelf = Arc::new(Shelf::default());
        let mut history = History::new(Retention {
            max_count: 100,
            ..KEEP
        });
        history.keep_cold_within(shelf.log(), 8, u64::MAX);
        for seq in 1..=50 {
            publish(&mut history, Some(&shelf), message(seq));
        }
        (history, shelf)
    }

    /// A page is planned under the history's lock and read from the store after it is
    /// released: a publish gets the lock while the read waits on the store.
    #[test]
    fn a_page_is_read_from_the_store_without_the_history_lock() {
        let (history, shelf) = mostly_cold();
        let history = Arc::new(parking_lot::Mutex::new(history));
        let gate = shelf.gate.lock();
        let reader = std::thread::spawn({
            let history = history.clone();
            move || {
                let page = history.lock().page(1, 45, usize::MAX);
                page.read()
            }
        });
        while shelf.reads.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let mut locked = history
            .try_lock_for(std::time::Duration::from_secs(5))
            .expect("the history's lock is free while the store is read");
        publish(&mut locked, Some(&shelf), message(51));
        drop(locked);
        drop(gate);
        let page = reader.join().unwrap();
        assert_eq!(seqs(page), (1..=45).collect::<Vec<_>>());
        assert_eq!(history.lock().info().last_seq, 51);
    }

    /// What changed in the store between a read's plan and the read: a message trimmed
    /// meanwhile, and one of a channel made anew under the same name (same seq, another
    /// id), are left out; the rest is read.
    #[test]
    fn messages_gone_from_the_store_since_the_plan_are_left_out() {
        let (history, shelf) = mostly_cold();
        let page = history.page(1, 12, usize::MAX);
        let found = history.find(&Uuid::from_u128(5));
        {
            let mut stored = shelf.messages.lock();
            stored.retain(|m| m.seq != 4 && m.seq != 12);
            for m in stored.iter_mut().filter(|m| m.seq == 3 || m.seq == 5) {
                m.id = Uuid::from_u128(1000 + u128::from(m.seq));
            }
        }
        // A fetch goes on after the last message planned, read or not.
        assert_eq!(page.last_seq(), Some(12));
        assert_eq!(seqs(page.read()), [1, 2, 6, 7, 8, 9, 10, 11]);
        assert!(found.read().unwrap().is_empty());
        assert_eq!(seqs(history.find(&Uuid::from_u128(6)).read()), [6]);
    }

    /// Paged in memory or across the cold part and memory alike.
    #[test]
    fn pages_cover_the_window_in_order_and_stop_at_its_end() {
        let retention = Retention {
            max_count: 100,
            ..KEEP
        };
        for (mut history, shelf) in both(retention, 8) {
            for seq in 1..=50 {
                publish(&mut history, shelf.as_ref(), message(seq));
            }
            assert_eq!(history.window(Since::All, Some(20)), Some((31, 50)));
            assert_eq!(history.window(Since::Seq(10), Some(5)), Some((10, 14)));
            assert_eq!(history.window(Since::Seq(51), None), None);
            let frame = history.latest().read().unwrap().pop().unwrap().frame_len();
            let (first, last) = history.window(Since::Seq(10), Some(35)).unwrap();
            let mut next = first;
            let mut seen = Vec::new();
            loop {
                let page = history.page(next, last, 3 * frame).read().unwrap();
                if page.is_empty() {
                    break;
                }
                assert!(page.len() <= 3);
                seen.extend(page.iter().map(|m| m.seq()));
                next = page.last().unwrap().seq() + 1;
            }
            assert_eq!(seen, (10..=44).collect::<Vec<_>>());
            assert_eq!(
                history.page(40, 40, 0).read().unwrap().len(),
                1,
                "one message even over the bytes"
            );
        }
    }

    #[test]
    fn an_empty_history_reports_zeros() {
        for history in [History::new(KEEP), restored(KEEP, Vec::new())] {
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
        let shelf = Arc::new(Shelf::default());
        for seq in 1..=5 {
            shelf.append(LogKind::Channel, "c", &message(seq)).unwrap();
        }
        let mut cold = restored(aging, (1..=5).map(message).collect());
        cold.keep_cold_within(shelf.log(), 2, u64::MAX);
        assert_eq!(cold.resident(), 2, "3 of the restored messages left memory");
        let warm = restored(aging, (1..=5).map(message).collect());
        for history in [warm, cold] {
            assert_eq!(seqs(history.range_at(Since::All, None, 5)), [1, 2, 3, 4, 5]);
            // At 13, messages older than 10 µs (times 1 and 2) are expired.
            assert_eq!(seqs(history.range_at(Since::All, None, 13)), [3, 4, 5]);
            assert_eq!(seqs(history.range_at(Since::Seq(1), Some(2), 13)), [3, 4]);
            assert_eq!(seqs(history.range_at(Since::All, Some(10), 13)), [3, 4, 5]);
            let latest = |at| history.latest_at(at).read().unwrap().pop().map(|m| m.seq());
            assert_eq!(latest(15), Some(5));
            assert_eq!(latest(16), None);
            assert!(seqs(history.range_at(Since::All, None, 100)).is_empty());
        }
    }

    /// A durable history keeps its newest messages in memory and reads the others back,
    /// and every read gives what a history all in memory gives.
    #[test]
    fn a_durable_history_reads_back_what_it_does_not_keep_in_memory() {
        let retention = Retention {
            max_count: 40,
            ..KEEP
        };
        let [(mut warm, _), (mut cold, shelf)] = both(retention, 10);
        let shelf = shelf.unwrap();
        let mut ids = Vec::new();
        for seq in 1..=60 {
            let message = message(seq);
            ids.push(message.id());
            publish(&mut warm, None, message.clone());
            publish(&mut cold, Some(&shelf), message);
        }
        assert_eq!(cold.resident(), 10);
        assert_eq!(warm.resident(), 40);
        let (warm_info, cold_info) = (warm.info(), cold.info());
        assert_eq!(
            (
                cold_info.count,
                cold_info.first_seq,
                cold_info.last_seq,
                cold_info.bytes
            ),
            (
                warm_info.count,
                warm_info.first_seq,
                warm_info.last_seq,
                warm_info.bytes
            )
        );
        assert_eq!((cold_info.first_seq, cold_info.count), (21, 40));
        let reads = shelf.reads.load(Ordering::SeqCst);
        assert_eq!(seqs(cold.range(Since::All, Some(5))), [56, 57, 58, 59, 60]);
        assert_eq!(
            shelf.reads.load(Ordering::SeqCst),
            reads,
            "the newest are read from memory"
        );
        for (since, limit) in [
            (Since::All, None),
            (Since::All, Some(35)),
            (Since::Seq(25), Some(20)),
            (Since::Seq(1), Some(3)),
            (Since::Time(49), None),
        ] {
            let (warm_read, cold_read) = (warm.range(since, limit), cold.range(since, limit));
            assert_eq!(
                seqs(cold_read.clone()),
                seqs(warm_read),
                "{since:?} {limit:?}"
            );
            for message in cold_read.unwrap() {
                let original = message.envelope().unwrap();
                assert_eq!(original.body, format!("body {}", message.seq()).as_bytes());
            }
        }
        assert!(shelf.reads.load(Ordering::SeqCst) > reads);
        // Found by id in the store, in memory, or not at all (trimmed).
        let found = |id: &Uuid| cold.find(id).read().unwrap().pop().map(|m| m.seq());
        assert_eq!(found(&ids[24]), Some(25));
        assert_eq!(found(&ids[57]), Some(58));
        assert_eq!(found(&ids[3]), None);
        // A replay reads back only what fits its bytes.
        let frame = message(60).frame_len();
        let replay = cold.replay(Since::All, None, 12 * (frame + 8), 8).read();
        assert_eq!(seqs(replay), (49..=60).collect::<Vec<_>>());
    }

    /// A history left over its bounds by messages not yet written asks to be visited
    /// once, however many publishes leave it so, and the visit lets them go once written.
    #[test]
    fn a_history_left_over_its_bounds_is_swept_once_written() {
        let shelf = Arc::new(Shelf::default());
        let sweeps = super::super::cold::Sweeps::default();
        let mut history = History::new(Retention {
            max_count: 100,
            ..KEEP
        });
        history.keep_cold_within(shelf.log().swept_by(sweeps.clone()), 4, u64::MAX);
        shelf.hold(true);
        for seq in 1..=10 {
            publish(&mut history, Some(&shelf), message(seq));
        }
        assert_eq!(history.resident(), 10);
        assert_eq!(sweeps.lock().len(), 1, "asked once");
        sweeps.lock().clear();
        history.sweep_cold();
        assert_eq!(history.resident(), 10, "still not written");
        assert_eq!(sweeps.lock().len(), 1, "asked again");
        sweeps.lock().clear();
        shelf.hold(false);
        history.sweep_cold();
        assert_eq!(history.resident(), 4);
        assert!(sweeps.lock().is_empty(), "nothing more asked");
        assert_eq!(
            seqs(history.page(1, 10, usize::MAX).read()),
            (1..=10).collect::<Vec<_>>()
        );
    }

    /// A message leaves memory only once the store wrote it; one not stored stays in
    /// memory while the history holds it. The tags of those that left are noted.
    #[test]
    fn only_written_messages_leave_memory() {
        let [_, (mut history, shelf)] = both(
            Retention {
                max_count: 100,
                ..KEEP
            },
            4,
        );
        let shelf = shelf.unwrap();
        shelf.hold(true);
        for seq in 1..=10 {
            publish(&mut history, Some(&shelf), message(seq));
        }
        assert_eq!(history.resident(), 10, "nothing was written yet");
        shelf.hold(false);
        publish(&mut history, Some(&shelf), message(11));
        assert_eq!(history.resident(), 4);
        // Not stored: kept, and read from memory. Tagged: read back like the others.
        history.push(message(12), false, 12);
        let tagged = Message {
            channel: "c".into(),
            seq: 13,
            time_us: 13,
            body: b"#news".to_vec().into(),
            ..Message::default()
        };
        let tagged = Arc::new(
            StoredMessage::encode(&codec(), &tagged.as_envelope(), vec!["news".into()]).unwrap(),
        );
        publish(&mut history, Some(&shelf), tagged);
        for seq in 14..=30 {
            publish(&mut history, Some(&shelf), message(seq));
        }
        assert_eq!(history.resident(), 4);
        assert!(
            shelf
                .read_log(LogKind::Channel, "c", 12, 12)
                .unwrap()
                .is_empty(),
            "12 was never stored"
        );
        assert_eq!(
            seqs(history.range(Since::Seq(11), Some(4))),
            [11, 12, 13, 14]
        );
        assert_eq!(history.take_tags_out(), ["news"]);
        let taken: Vec<u64> = history.take_all().iter().map(|m| m.seq()).collect();
        assert_eq!(
            taken,
            [12, 27, 28, 29, 30],
            "the kept one and those in memory"
        );
        assert_eq!(history.info().count, 0);
    }

    /// A message the store cannot give back is left out of a read, not served wrong.
    #[test]
    fn a_message_missing_from_the_store_is_left_out() {
        let [_, (mut history, shelf)] = both(KEEP, 2);
        let shelf = shelf.unwrap();
        for seq in 1..=6 {
            publish(&mut history, Some(&shelf), message(seq));
        }
        shelf.messages.lock().retain(|m| m.seq != 3);
        assert_eq!(seqs(history.range(Since::All, None)), [1, 2, 4, 5, 6]);
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
            history.push(message, false, seq);
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
