//! The older part of a durable history, kept out of memory: a history backed by a store
//! that can read it back ([`Storage::can_read_back`]) holds only its newest messages
//! (up to [`RESIDENT_MESSAGES`] and `ServerConfig::history_in_memory` bytes); for each
//! older one it keeps what lookups need (seq, time, id, sizes, about 56 bytes) and reads
//! the message back from the store when a fetch or a replay reaches it.
//!
//! Without this, a durable channel with a large retention holds every retained message
//! in memory: a million 1 KiB messages cost about 1.5 GB, and a channel filling up
//! spends its publishes faulting in fresh pages.
//!
//! A message leaves memory only once the store has written it (its record number is
//! covered by [`Storage::written_through`]), so whatever is not in memory can be read
//! back. Some messages stay in memory however old: one whose body is a streamed file
//! (its file lives as long as the message does), and one that was not stored (a
//! publish that asked for no durability). A message with hashtags leaves memory like any
//! other, but the hashtag index may still hold it: the tags of those that left are
//! noted, so that a channel's deletion also takes its messages out of those tags.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_proto::FrameCodec;
use tracing::{debug, error};
use uuid::Uuid;

use super::message::StoredMessage;
use super::recycle;
use crate::log;
use crate::storage::{LogKind, Storage, StorageError};

/// Messages a durable history keeps in memory at most (its newest).
pub const RESIDENT_MESSAGES: usize = 8 * 1024;
/// Bytes of frames a durable history keeps in memory at most unless configured
/// otherwise (`ServerConfig::history_in_memory`; at least its newest message, whatever
/// its size).
pub const DEFAULT_HISTORY_IN_MEMORY: u64 = 8 * 1024 * 1024;

/// The record number of a message that was not stored.
const NOT_STORED: u64 = u64::MAX;

/// Where a history's messages are read back from: the store, the history's name, the
/// codec live frames are encoded with, and the count of messages read back.
#[derive(Clone)]
pub struct ColdLog {
    storage: Arc<dyn Storage>,
    kind: LogKind,
    name: Arc<str>,
    codec: FrameCodec,
    read_back: Arc<AtomicU64>,
    sweeps: Option<Sweeps>,
}

/// The histories left holding more in memory than their bounds because the store had not
/// written their newest messages yet, by kind and name: the hub visits them again
/// ([`ColdPart::sweep`]), since a history that takes no more publishes would otherwise
/// keep them in memory for good.
pub type Sweeps = Arc<parking_lot::Mutex<Vec<(LogKind, Arc<str>)>>>;

impl ColdLog {
    pub fn new(
        storage: Arc<dyn Storage>,
        kind: LogKind,
        name: &str,
        codec: FrameCodec,
        read_back: Arc<AtomicU64>,
    ) -> ColdLog {
        ColdLog {
            storage,
            kind,
            name: Arc::from(name),
            codec,
            read_back,
            sweeps: None,
        }
    }

    /// Notes the history in `sweeps` whenever it is left over its bounds.
    pub fn swept_by(mut self, sweeps: Sweeps) -> ColdLog {
        self.sweeps = Some(sweeps);
        self
    }
}

impl std::fmt::Debug for ColdLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdLog")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish()
    }
}

/// What a history keeps of a message older than those it holds in memory.
#[derive(Debug)]
enum Entry {
    /// Only in the store.
    Stored(Meta),
    /// In memory all the same (see the module's documentation).
    Kept(Arc<StoredMessage>),
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    seq: u64,
    time_us: u64,
    id: Uuid,
    frame_len: u64,
    body_len: u64,
}

impl Entry {
    fn seq(&self) -> u64 {
        match self {
            Entry::Stored(meta) => meta.seq,
            Entry::Kept(message) => message.seq(),
        }
    }

    fn time_us(&self) -> u64 {
        match self {
            Entry::Stored(meta) => meta.time_us,
            Entry::Kept(message) => message.time_us(),
        }
    }
}

/// The part of a history not in memory, and the store records of the part that is.
#[derive(Debug)]
pub struct ColdPart {
    log: ColdLog,
    entries: VecDeque<Entry>,
    /// For each message in memory, oldest first, the number of the store record that
    /// appended it (at most), or [`NOT_STORED`].
    records: VecDeque<u64>,
    /// Bytes of frames of the messages in memory.
    resident_bytes: u64,
    /// The hashtags of the messages that left memory (see the module's documentation).
    tags_out: BTreeSet<String>,
    max_messages: usize,
    max_bytes: u64,
    /// Noted in the log's sweeps and not yet visited.
    sweep_noted: bool,
}

/// An older message the history let go: what it still accounts for.
pub enum Dropped {
    /// Only its body's length was left.
    Stored { seq: u64, body_len: u64 },
    /// The message itself.
    Kept(Arc<StoredMessage>),
}

impl ColdPart {
    /// The cold part of a history whose messages in memory are `resident`, all read
    /// from the store (or none): each counts as written.
    pub fn new(log: ColdLog, resident: &VecDeque<Arc<StoredMessage>>, max_bytes: u64) -> ColdPart {
        ColdPart::with_limits(log, resident, RESIDENT_MESSAGES, max_bytes)
    }

    pub fn with_limits(
        log: ColdLog,
        resident: &VecDeque<Arc<StoredMessage>>,
        max_messages: usize,
        max_bytes: u64,
    ) -> ColdPart {
        ColdPart {
            log,
            entries: VecDeque::new(),
            records: resident.iter().map(|_| 0).collect(),
            tags_out: BTreeSet::new(),
            resident_bytes: resident.iter().map(|m| m.frame_len() as u64).sum(),
            max_messages: max_messages.max(1),
            max_bytes,
            sweep_noted: false,
        }
    }

    /// How many messages are out of memory (or kept though older than those in it).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn seq_at(&self, index: usize) -> u64 {
        self.entries[index].seq()
    }

    pub fn time_at(&self, index: usize) -> u64 {
        self.entries[index].time_us()
    }

    pub fn frame_len_at(&self, index: usize) -> usize {
        match &self.entries[index] {
            Entry::Stored(meta) => usize::try_from(meta.frame_len).unwrap_or(usize::MAX),
            Entry::Kept(message) => message.frame_len(),
        }
    }

    /// The first index whose entry does not satisfy `before` (entries are in seq and
    /// time order).
    pub fn partition_point(&self, before: impl Fn(u64, u64) -> bool) -> usize {
        self.entries
            .partition_point(|entry| before(entry.seq(), entry.time_us()))
    }

    /// The newest index at or after `from` holding message `id`.
    pub fn position_of(&self, id: &Uuid, from: usize) -> Option<usize> {
        (from..self.entries.len())
            .rev()
            .find(|&index| match &self.entries[index] {
                Entry::Stored(meta) => meta.id == *id,
                Entry::Kept(message) => message.id() == *id,
            })
    }

    /// A message now in memory, appended to the store (or not) just before.
    pub fn pushed(&mut self, message: &StoredMessage, stored: bool) {
        let record = if stored {
            // Read after the append: at least the append's number, which is enough to
            // know when it is written.
            self.log.storage.queued_through()
        } else {
            NOT_STORED
        };
        self.records.push_back(record);
        self.resident_bytes += message.frame_len() as u64;
    }

    /// A message now in memory that the store had already written (read at start).
    pub fn pushed_written(&mut self, message: &StoredMessage) {
        self.records.push_back(0);
        self.resident_bytes += message.frame_len() as u64;
    }

    /// The oldest message in memory left the history (trimmed).
    pub fn resident_dropped(&mut self, message: &StoredMessage) {
        self.records.pop_front();
        self.resident_bytes = self
            .resident_bytes
            .saturating_sub(message.frame_len() as u64);
    }

    /// Drops the oldest entry, for a trim.
    pub fn drop_oldest(&mut self) -> Option<Dropped> {
        Some(match self.entries.pop_front()? {
            Entry::Stored(meta) => Dropped::Stored {
                seq: meta.seq,
                body_len: meta.body_len,
            },
            Entry::Kept(message) => Dropped::Kept(message),
        })
    }

    /// Moves the oldest messages of `resident` out of memory while it holds more than
    /// the limits allow, as far as the store has written them. Those let go are handed
    /// to [`recycle`] (for reuse).
    pub fn evict(&mut self, resident: &mut VecDeque<Arc<StoredMessage>>) {
        let over = |resident: &VecDeque<Arc<StoredMessage>>, bytes: u64| {
            resident.len() > 1 && (resident.len() > self.max_messages || bytes > self.max_bytes)
        };
        if !over(resident, self.resident_bytes) {
            return;
        }
        let written = self.log.storage.written_through();
        while over(resident, self.resident_bytes) {
            let (Some(&record), Some(oldest)) = (self.records.front(), resident.front()) else {
                break;
            };
            let keep = record == NOT_STORED || oldest.blob().is_some();
            if !keep && record > written {
                // The rest once the store has written it: at the next publish, or when
                // the hub comes back to this history.
                self.note_sweep();
                break;
            }
            let (Some(message), Some(_)) = (resident.pop_front(), self.records.pop_front()) else {
                break;
            };
            self.resident_bytes = self
                .resident_bytes
                .saturating_sub(message.frame_len() as u64);
            if keep {
                self.entries.push_back(Entry::Kept(message));
            } else {
                for tag in message.tags() {
                    if !self.tags_out.contains(tag) {
                        self.tags_out.insert(tag.clone());
                    }
                }
                self.entries.push_back(Entry::Stored(Meta {
                    seq: message.seq(),
                    time_us: message.time_us(),
                    id: message.id(),
                    frame_len: message.frame_len() as u64,
                    body_len: message.body_len(),
                }));
                recycle::give(message);
            }
        }
    }

    /// Asks the hub to come back to this history, once.
    fn note_sweep(&mut self) {
        if self.sweep_noted {
            return;
        }
        if let Some(sweeps) = &self.log.sweeps {
            sweeps.lock().push((self.log.kind, self.log.name.clone()));
            self.sweep_noted = true;
        }
    }

    /// The hub's visit to a history it was asked to come back to: moves out of memory
    /// what the store has written since (and asks again if some is still not written).
    pub fn sweep(&mut self, resident: &mut VecDeque<Arc<StoredMessage>>) {
        self.sweep_noted = false;
        self.evict(resident);
    }

    /// What reading the messages of entries `range` takes, oldest first: those in memory
    /// now, and where the others are in the store. Taken under the history's lock, read
    /// once it is released ([`ColdRead::read`]), so that a publisher to the channel never
    /// waits for the store.
    pub fn plan(&self, range: Range<usize>) -> ColdRead {
        let mut pieces: Vec<Piece> = Vec::new();
        for entry in self.entries.range(range) {
            match entry {
                Entry::Kept(message) => pieces.push(Piece::Kept(message.clone())),
                Entry::Stored(meta) => match pieces.last_mut() {
                    Some(Piece::Stored(run)) => run.push(*meta),
                    _ => pieces.push(Piece::Stored(vec![*meta])),
                },
            }
        }
        ColdRead {
            log: self.log.clone(),
            pieces,
        }
    }

    /// The hashtags of the messages that left memory, taken out.
    pub fn take_tags_out(&mut self) -> Vec<String> {
        std::mem::take(&mut self.tags_out).into_iter().collect()
    }

    /// Every message kept in memory among the entries; the entries are cleared.
    pub fn take_kept(&mut self) -> Vec<Arc<StoredMessage>> {
        self.records.clear();
        self.resident_bytes = 0;
        self.entries
            .drain(..)
            .filter_map(|entry| match entry {
                Entry::Kept(message) => Some(message),
                Entry::Stored(_) => None,
            })
            .collect()
    }
}

/// Messages of a history to be read back, planned by [`ColdPart::plan`].
pub struct ColdRead {
    log: ColdLog,
    pieces: Vec<Piece>,
}

/// Part of a [`ColdRead`]: a message in memory, or a run of messages only in the store.
enum Piece {
    Kept(Arc<StoredMessage>),
    Stored(Vec<Meta>),
}

impl ColdRead {
    /// Whether some planned message is only in the store.
    pub fn needs_store(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Stored(_)))
    }

    /// The seq of the newest message planned, if any.
    pub fn last_seq(&self) -> Option<u64> {
        match self.pieces.last()? {
            Piece::Kept(message) => Some(message.seq()),
            Piece::Stored(run) => run.last().map(|meta| meta.seq),
        }
    }

    /// The planned messages, oldest first, those of the store read back. A message the
    /// store no longer has is left out: the history trimmed it or the channel went since
    /// the plan was made (its id tells a message of a channel made anew under the same
    /// name apart), or its record failed its checksum, which the store reports.
    pub fn read(self) -> Result<Vec<Arc<StoredMessage>>, StorageError> {
        let needs_store = self.needs_store();
        let read = || {
            let mut messages = Vec::new();
            for piece in self.pieces {
                match piece {
                    Piece::Kept(message) => messages.push(message),
                    Piece::Stored(run) => read_run(&self.log, &run, &mut messages)?,
                }
            }
            Ok(messages)
        };
        if needs_store {
            crate::storage::off_the_runtime(read)
        } else {
            read()
        }
    }
}

/// Reads the messages of `run` (in seq order, at least one) back from the store in one
/// read, into `into`.
fn read_run(
    log: &ColdLog,
    run: &[Meta],
    into: &mut Vec<Arc<StoredMessage>>,
) -> Result<(), StorageError> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return Ok(());
    };
    let found = log
        .storage
        .read_log(log.kind, &log.name, first.seq, last.seq)?;
    let mut found = found.into_iter().peekable();
    for meta in run {
        while found.next_if(|message| message.seq < meta.seq).is_some() {}
        let Some(message) = found.next_if(|message| message.seq == meta.seq) else {
            debug!(target: log::GENERAL, log = %log.name, seq = meta.seq, "a message planned for reading is no longer in the store; left out");
            continue;
        };
        if message.id != meta.id {
            debug!(target: log::GENERAL, log = %log.name, seq = meta.seq, "the store holds another message under a planned seq (the channel was made anew); left out");
            continue;
        }
        match StoredMessage::encode(&log.codec, &message.as_envelope(), Vec::new()) {
            Ok(stored) => {
                log.read_back.fetch_add(1, Ordering::Relaxed);
                into.push(Arc::new(stored));
            }
            Err(e) => {
                error!(target: log::ERROR, log = %log.name, seq = meta.seq, error = %e, "a stored message could not be encoded; left out");
            }
        }
    }
    Ok(())
}
