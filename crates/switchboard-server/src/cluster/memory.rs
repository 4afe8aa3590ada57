//! [`MemoryBackplane`]: a backplane inside one process, for several hubs in the same
//! process (tests of cluster behaviour without a Redis, and embedding applications that
//! want several hubs as one). It keeps the contract a networked backplane keeps:
//! positions assigned under one lock, feeds delivered in that order, each node's feed
//! bounded (a node that falls behind loses its feed and is told to catch up), epochs
//! that change when the shared state is lost ([`MemoryBackplane::lose_everything`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::ChannelOptions;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    Append, Appended, Backplane, BackplaneEvent, BackplaneFuture, BackplaneHealth, ChannelMeta,
    Entry, LiveMessage, Page, Query, Topic,
};
use crate::error::Refusal;
use crate::time::now_us;

/// Events a node's feed holds before it is cut off.
const FEED_CAPACITY: usize = 4096;

/// The shared state; one per cluster.
#[derive(Debug, Default)]
pub struct MemoryBackplane {
    state: Mutex<State>,
    next_node: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    channels: BTreeMap<String, StoredChannel>,
    nodes: Vec<Weak<NodeShared>>,
    /// Bumped by [`MemoryBackplane::lose_everything`], so epochs differ afterwards.
    generation: u64,
}

#[derive(Debug)]
struct StoredChannel {
    options: ChannelOptions,
    cid: u64,
    epoch: u64,
    top_seq: u64,
    last_time_us: u64,
    entries: VecDeque<StoredEntry>,
}

#[derive(Debug, Clone)]
struct StoredEntry {
    seq: u64,
    time_us: u64,
    id: Uuid,
    payload: Bytes,
    body_len: u64,
    tags: Vec<String>,
}

#[derive(Debug)]
struct NodeShared {
    follows: Mutex<BTreeSet<Topic>>,
    feed: mpsc::Sender<BackplaneEvent>,
    /// The feed overflowed: events were lost until the node is told to catch up.
    broken: AtomicBool,
    /// A test cut this node off: nothing reaches it and its requests fail.
    cut: AtomicBool,
    /// A test holds this node's feed back: events wait here, in order, until released.
    held: Mutex<Option<Vec<BackplaneEvent>>>,
}

impl NodeShared {
    fn wants(&self, channel: &str, tags: &[String]) -> (bool, Vec<String>) {
        let follows = self.follows.lock();
        let channel_wanted = follows.iter().any(|topic| match topic {
            Topic::Channel(name) => name == channel,
            Topic::ChannelPrefix(prefix) => channel.starts_with(prefix.as_str()),
            Topic::Tag(_) | Topic::Group(_) => false,
        });
        let tags = tags
            .iter()
            .filter(|tag| follows.contains(&Topic::Tag((*tag).clone())))
            .cloned()
            .collect();
        (channel_wanted, tags)
    }

    fn push(&self, event: BackplaneEvent) {
        if let Some(held) = self.held.lock().as_mut() {
            held.push(event);
            return;
        }
        if self.cut.load(Ordering::Acquire) {
            self.broken.store(true, Ordering::Release);
            return;
        }
        if self.broken.load(Ordering::Acquire) {
            if self.feed.try_send(BackplaneEvent::Resubscribed).is_ok() {
                self.broken.store(false, Ordering::Release);
            } else {
                return;
            }
        }
        if self.feed.try_send(event).is_err() {
            self.broken.store(true, Ordering::Release);
        }
    }
}

impl MemoryBackplane {
    pub fn new() -> Arc<MemoryBackplane> {
        Arc::new(MemoryBackplane::default())
    }

    /// A node's handle on this backplane: give one to each hub.
    pub fn node(self: &Arc<Self>) -> Arc<MemoryNode> {
        let (feed, events) = mpsc::channel(FEED_CAPACITY);
        let shared = Arc::new(NodeShared {
            follows: Mutex::new(BTreeSet::new()),
            feed,
            broken: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            held: Mutex::new(None),
        });
        self.state.lock().nodes.push(Arc::downgrade(&shared));
        Arc::new(MemoryNode {
            backplane: self.clone(),
            shared,
            events: Mutex::new(Some(events)),
            id: self.next_node.fetch_add(1, Ordering::Relaxed) + 1,
        })
    }

    /// Forgets every channel and message, as a backplane restarted without persistence
    /// would: the next positions start a new epoch.
    pub fn lose_everything(&self) {
        let mut state = self.state.lock();
        state.channels.clear();
        state.generation += 1;
    }

    fn new_epoch(generation: u64) -> u64 {
        // Random in [1, 2^52), and never equal across generations.
        let random = random_u64() & ((1 << 40) - 1);
        ((generation & 0xFFF) << 40 | random).max(1)
    }
}

/// One node's handle on a [`MemoryBackplane`].
#[derive(Debug)]
pub struct MemoryNode {
    backplane: Arc<MemoryBackplane>,
    shared: Arc<NodeShared>,
    events: Mutex<Option<mpsc::Receiver<BackplaneEvent>>>,
    id: u64,
}

impl MemoryNode {
    /// Cuts this node off the backplane (its feed loses messages and its requests fail)
    /// or restores it (it is then told to catch up).
    pub fn set_cut(&self, cut: bool) {
        self.shared.cut.store(cut, Ordering::Release);
        if !cut && self.shared.broken.swap(false, Ordering::AcqRel) {
            let _ = self.shared.feed.try_send(BackplaneEvent::Resubscribed);
        }
    }

    /// This node's number (what [`Backplane::node_id`] says).
    pub fn node_id_for_tests(&self) -> u64 {
        self.id
    }

    /// Holds this node's feed back (events wait, in order), or releases what waits: a
    /// feed that runs late behind the node's own reads.
    pub fn hold_feed(&self, hold: bool) {
        let released = {
            let mut held = self.shared.held.lock();
            if hold {
                held.get_or_insert_with(Vec::new);
                return;
            }
            held.take().unwrap_or_default()
        };
        for event in released {
            self.shared.push(event);
        }
    }

    fn check(&self) -> Result<(), Refusal> {
        if self.shared.cut.load(Ordering::Acquire) {
            Err(Refusal::new(
                ErrorCode::BackplaneUnavailable,
                "backplane unavailable: this node is cut off",
            ))
        } else {
            Ok(())
        }
    }

    fn meta(name: &str, channel: &StoredChannel) -> ChannelMeta {
        let _ = name;
        ChannelMeta {
            options: channel.options,
            cid: channel.cid,
            epoch: channel.epoch,
            top_seq: channel.top_seq,
            count: channel.entries.len() as u64,
            first_seq: channel.entries.front().map_or(0, |e| e.seq),
            bytes: channel.entries.iter().map(|e| e.body_len).sum(),
        }
    }

    fn ready<T: Send + 'static>(value: Result<T, Refusal>) -> BackplaneFuture<'static, T> {
        Box::pin(std::future::ready(value))
    }

    fn append_now(&self, append: Append) -> Result<Appended, Refusal> {
        self.check()?;
        let mut state = self.backplane.state.lock();
        let generation = state.generation;
        let state = &mut *state;
        let channel = match state.channels.get_mut(&append.channel) {
            Some(channel) if append.cid == 0 || channel.cid == append.cid => channel,
            Some(_) => return Err(deleted(&append.channel)),
            None => {
                let Some(options) = append.create_with else {
                    return Err(deleted(&append.channel));
                };
                if append.cid != 0 {
                    return Err(deleted(&append.channel));
                }
                state
                    .channels
                    .entry(append.channel.clone())
                    .or_insert(StoredChannel {
                        options,
                        cid: (random_u64() >> 12).max(1),
                        epoch: MemoryBackplane::new_epoch(generation),
                        top_seq: 0,
                        last_time_us: 0,
                        entries: VecDeque::new(),
                    })
            }
        };
        channel.top_seq += 1;
        channel.last_time_us = channel.last_time_us.max(now_us());
        let entry = StoredEntry {
            seq: channel.top_seq,
            time_us: channel.last_time_us,
            id: append.id,
            payload: append.payload,
            body_len: append.body_len,
            tags: append.tags,
        };
        channel.entries.push_back(entry.clone());
        while append.max_count > 0 && channel.entries.len() as u64 > append.max_count {
            channel.entries.pop_front();
        }
        if let Some(max) = append.max_bytes {
            let mut bytes: u64 = channel.entries.iter().map(|e| e.body_len).sum();
            while bytes > max && channel.entries.len() > 1 {
                if let Some(oldest) = channel.entries.pop_front() {
                    bytes -= oldest.body_len;
                }
            }
        }
        let appended = Appended {
            seq: entry.seq,
            epoch: channel.epoch,
            time_us: entry.time_us,
            cid: channel.cid,
        };
        let live = LiveMessage {
            seq: entry.seq,
            epoch: channel.epoch,
            time_us: entry.time_us,
            payload: entry.payload,
        };
        state.nodes.retain(|node| node.strong_count() > 0);
        for node in state.nodes.iter().filter_map(Weak::upgrade) {
            let (channel_wanted, tags) = node.wants(&append.channel, &entry.tags);
            if channel_wanted {
                node.push(BackplaneEvent::Message {
                    channel: append.channel.clone(),
                    via_tag: false,
                    message: live.clone(),
                });
            }
            for _ in tags {
                node.push(BackplaneEvent::Message {
                    channel: append.channel.clone(),
                    via_tag: true,
                    message: live.clone(),
                });
            }
        }
        Ok(appended)
    }

    fn read_now(&self, name: &str, query: Query, limit: u64) -> Result<Option<Page>, Refusal> {
        self.check()?;
        let state = self.backplane.state.lock();
        let Some(channel) = state.channels.get(name) else {
            return Ok(None);
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let entry = |e: &StoredEntry| Entry {
            seq: e.seq,
            time_us: e.time_us,
            payload: e.payload.clone(),
        };
        let entries: Vec<Entry> = match query {
            Query::SinceSeq(seq) => channel
                .entries
                .iter()
                .filter(|e| e.seq >= seq)
                .take(limit)
                .map(entry)
                .collect(),
            Query::SinceTime(time) => channel
                .entries
                .iter()
                .filter(|e| e.time_us >= time)
                .take(limit)
                .map(entry)
                .collect(),
            Query::Last(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX).min(limit);
                let skip = channel.entries.len().saturating_sub(n);
                channel.entries.iter().skip(skip).map(entry).collect()
            }
            Query::ById(id) => channel
                .entries
                .iter()
                .rev()
                .find(|e| e.id == id)
                .map(entry)
                .into_iter()
                .collect(),
        };
        Ok(Some(Page {
            epoch: channel.epoch,
            first_seq: channel.entries.front().map_or(0, |e| e.seq),
            top_seq: channel.top_seq,
            entries,
        }))
    }
}

/// 62 random bits (a v7 UUID's low half holds them).
fn random_u64() -> u64 {
    Uuid::now_v7().as_u64_pair().1
}

fn deleted(name: &str) -> Refusal {
    Refusal::not_found(format!("channel {name} was deleted meanwhile"))
}

impl Backplane for MemoryNode {
    fn events(&self) -> Option<mpsc::Receiver<BackplaneEvent>> {
        self.events.lock().take()
    }

    fn follow(&self, topic: Topic) -> BackplaneFuture<'_, ()> {
        let result = self.check().map(|()| {
            // Under the backplane's lock: every append after this is seen.
            let _state = self.backplane.state.lock();
            self.shared.follows.lock().insert(topic);
        });
        Self::ready(result)
    }

    fn unfollow(&self, topic: Topic) {
        self.shared.follows.lock().remove(&topic);
    }

    fn channel<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, Option<ChannelMeta>> {
        let result = self.check().map(|()| {
            let state = self.backplane.state.lock();
            state.channels.get(name).map(|c| Self::meta(name, c))
        });
        Self::ready(result)
    }

    fn create_channel<'a>(
        &'a self,
        name: &'a str,
        options: &'a ChannelOptions,
    ) -> BackplaneFuture<'a, (ChannelMeta, bool)> {
        let result = self.check().map(|()| {
            let mut state = self.backplane.state.lock();
            let generation = state.generation;
            let mut created = false;
            let channel = state.channels.entry(name.to_owned()).or_insert_with(|| {
                created = true;
                StoredChannel {
                    options: *options,
                    cid: (random_u64() >> 12).max(1),
                    epoch: MemoryBackplane::new_epoch(generation),
                    top_seq: 0,
                    last_time_us: 0,
                    entries: VecDeque::new(),
                }
            });
            (Self::meta(name, channel), created)
        });
        Self::ready(result)
    }

    fn delete_channel<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, bool> {
        let result = self.check().map(|()| {
            let mut state = self.backplane.state.lock();
            let existed = state.channels.remove(name).is_some();
            if existed {
                for node in state.nodes.iter().filter_map(Weak::upgrade) {
                    if node.wants(name, &[]).0 {
                        node.push(BackplaneEvent::ChannelDeleted {
                            channel: name.to_owned(),
                        });
                    }
                }
            }
            existed
        });
        Self::ready(result)
    }

    fn list_channels<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BackplaneFuture<'a, Vec<String>> {
        let result = self.check().map(|()| {
            let state = self.backplane.state.lock();
            state
                .channels
                .keys()
                .filter(|name| after.is_none_or(|after| name.as_str() > after))
                .take(limit)
                .cloned()
                .collect()
        });
        Self::ready(result)
    }

    fn append(&self, append: Append) -> BackplaneFuture<'_, Appended> {
        Self::ready(self.append_now(append))
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
        limit: u64,
    ) -> BackplaneFuture<'a, Option<Page>> {
        Self::ready(self.read_now(channel, query, limit))
    }

    fn health(&self) -> BackplaneHealth {
        let cut = self.shared.cut.load(Ordering::Acquire);
        BackplaneHealth {
            connected: !cut,
            detail: if cut {
                "cut off".to_owned()
            } else {
                "in process".to_owned()
            },
            counters: Vec::new(),
        }
    }

    fn node_id(&self) -> u64 {
        self.id
    }

    fn close(&self) -> BackplaneFuture<'_, ()> {
        self.shared.follows.lock().clear();
        Self::ready(Ok(()))
    }
}
