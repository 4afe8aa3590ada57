//! [`ClusterNode`]: this server as one node of a cluster. It publishes through the
//! backplane, follows the backplane's feeds for what its connections subscribe to
//! (each feed once, however many subscriptions share it), takes the feed in through
//! one task that keeps every followed channel in step (closing gaps from history), and
//! reads history from the backplane, so that every node answers alike.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use switchboard_proto::ErrorCode;
use switchboard_proto::FrameCodec;
use switchboard_proto::packet::{
    ChannelOptions, Envelope, Publish, PublishAck, Replay, Scope, Since, StreamStart,
};
use switchboard_proto::subject::{self, Pattern, PatternToken};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::payload::{self, Placed};
use super::{Append, Backplane, BackplaneEvent, BackplaneHealth, ChannelMeta, Page, Query, Topic};
use crate::blobs::Verified;
use crate::error::Refusal;
use crate::hub::admission::{BodyShape, Target};
use crate::hub::channels::Channel;
use crate::hub::cluster::Ingested;
use crate::hub::message::StoredMessage;
use crate::hub::{Caller, Hub, Published};
use crate::log;
use crate::time::now_us;

/// Most channels a wildcard subscription brings in step or replays at once.
const MAX_WILDCARD_CHANNELS: usize = 10_000;
/// Joins made elsewhere waiting for this node to follow their group, at most.
const JOINS_QUEUE: usize = 1024;
/// Entries read per history request when catching up or answering a fetch.
pub(crate) const READ_BATCH: u64 = 512;

/// This server as a node of a cluster.
pub(crate) struct ClusterNode {
    backplane: Arc<dyn Backplane>,
    /// Feeds followed, with how many subscriptions here use each.
    follows: Mutex<HashMap<Topic, usize>>,
    /// Encodes payloads (no HMAC tag).
    payload_codec: FrameCodec,
    groups: super::groups::GroupFollows,
    /// Streamed bodies: those this node keeps, and the link that fetches the others.
    bodies: Arc<super::bodies::NodeLink>,
    /// The hub this node serves, for publishes answered after the session moved on.
    hub: std::sync::OnceLock<Weak<Hub>>,
}

/// The outcome of a queued publish ([`ClusterNode::queue_publish`]).
pub(crate) type QueuedPublish =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Published, Refusal>> + Send>>;

/// A streamed body's part in preparing its append.
struct Streamed<'a> {
    /// The body's length; `None` for a body in the frame.
    len: Option<u64>,
    /// The message's id, kept across attempts.
    id: &'a mut Option<Uuid>,
    /// The body, until it becomes a blob this node keeps.
    upload: &'a mut Option<Verified>,
}

/// A publish ready to append.
struct Prepared {
    append: Append,
    /// The channel incarnation the append names (0: created if missing).
    cid: u64,
    id: Uuid,
}

fn published(id: Uuid, seq: u64) -> Published {
    Published {
        ack: PublishAck { id, seq },
        must_sync: false,
    }
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode").finish_non_exhaustive()
    }
}

/// The feed that brings what `pattern` matches.
pub(crate) fn topic_of(pattern: &Pattern) -> Topic {
    match pattern {
        Pattern::Exact(name) => Topic::Channel(name.clone()),
        Pattern::Tag(tag) => Topic::Tag(tag.clone()),
        Pattern::Wildcard(tokens) => {
            let mut prefix = String::new();
            for token in tokens {
                match token {
                    PatternToken::Literal(literal) => {
                        prefix.push_str(literal);
                        prefix.push('.');
                    }
                    PatternToken::One | PatternToken::Rest => break,
                }
            }
            Topic::ChannelPrefix(prefix)
        }
    }
}

impl ClusterNode {
    pub(crate) fn new(backplane: Arc<dyn Backplane>) -> Arc<ClusterNode> {
        Arc::new(ClusterNode {
            backplane: backplane.clone(),
            follows: Mutex::new(HashMap::new()),
            payload_codec: payload::payload_codec(),
            groups: Default::default(),
            bodies: super::bodies::NodeLink::new(backplane.clone()),
            hub: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn backplane(&self) -> &Arc<dyn Backplane> {
        &self.backplane
    }

    pub(crate) fn group_follows(&self) -> &super::groups::GroupFollows {
        &self.groups
    }

    pub(crate) fn payload_codec(&self) -> &FrameCodec {
        &self.payload_codec
    }

    pub(crate) fn health(&self) -> BackplaneHealth {
        self.backplane.health()
    }

    /// Takes the backplane's feed in until `shutdown`; the server owns the task.
    pub(crate) async fn run(self: Arc<Self>, hub: Weak<Hub>, shutdown: CancellationToken) {
        let Some(mut events) = self.backplane.events() else {
            error!(target: log::ERROR, "cluster feed already taken");
            return;
        };
        // Joins made on other nodes that this node must follow a group for: followed by a
        // task of their own, since a follow waits on the feed this loop reads.
        let (joins, mut joined) = tokio::sync::mpsc::channel::<(String, String)>(JOINS_QUEUE);
        let _follower = {
            let node = Arc::clone(&self);
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                while let Some((group, user)) = joined.recv().await {
                    node.take_member(&group, &user).await;
                }
            }))
        };
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            let Some(event) = event else { return };
            let Some(hub) = hub.upgrade() else { return };
            match event {
                BackplaneEvent::Message {
                    channel,
                    via_tag,
                    message,
                } => {
                    self.take_in(&hub, &channel, via_tag, message).await;
                }
                BackplaneEvent::ChannelDeleted { channel } => {
                    if hub.forget_channel(&channel) {
                        info!(target: log::GENERAL, channel, "channel deleted on another node");
                    }
                }
                BackplaneEvent::Resubscribed => {
                    self.catch_up(&hub).await;
                    self.catch_up_groups(&hub).await;
                }
                event @ (BackplaneEvent::GroupPost { .. }
                | BackplaneEvent::GroupMember { .. }
                | BackplaneEvent::GroupDeleted { .. }) => self.take_in_group(&hub, event).await,
                BackplaneEvent::Relay(relay) => {
                    let outcomes =
                        super::directory::deliver(&hub, self.backplane.node_id(), &relay);
                    self.backplane.answer_relay(&relay, outcomes);
                }
                BackplaneEvent::JoinedAnywhere { group, user } => {
                    if self.must_follow_for(&group, &user)
                        && joins.try_send((group.clone(), user)).is_err()
                    {
                        warn!(target: log::ERROR, group, "too many joins to follow at once; a member's other sessions get the group's traffic after they reconnect");
                    }
                }
            }
        }
    }

    /// Trims the messages past their channel's maximum age from the backplane, for the
    /// channels with one that this node knows, every `period` until `shutdown`. Several
    /// nodes may trim the same channel: a trim is idempotent.
    pub(crate) async fn run_trims(
        self: Arc<Self>,
        hub: Weak<Hub>,
        period: std::time::Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Some(hub) = hub.upgrade() else { return };
            let aging = hub.aging_channels();
            drop(hub);
            for (name, max_age) in aging {
                if let Err(refusal) = self.backplane.trim_age(&name, max_age, now_us()).await {
                    debug!(channel = %name, error = %refusal.message, "age trim not done");
                }
            }
        }
    }

    /// One message from the feed.
    async fn take_in(&self, hub: &Hub, name: &str, via_tag: bool, live: super::LiveMessage) {
        if via_tag && hub.routes_cover(name) {
            // The channel's own feed brings it here too, in order with the channel.
            return;
        }
        let local = hub.local_channel(name);
        let wanted = via_tag
            || hub.routes_cover(name)
            || local
                .as_ref()
                .is_some_and(|channel| channel.history.lock().cluster.delivered.is_some());
        if !wanted {
            return;
        }
        let channel = match local {
            Some(channel) => channel,
            None => match self.adopt(hub, name).await {
                Some(channel) => channel,
                None => return,
            },
        };
        let placed = match payload::place_with(
            &self.bodies,
            hub.codec(),
            &live.payload,
            live.seq,
            live.time_us,
        ) {
            Ok(placed) => placed,
            Err(e) => {
                error!(target: log::ERROR, channel = name, seq = live.seq, error = %e, "message from the cluster not readable; skipped");
                return;
            }
        };
        if via_tag {
            hub.ingest_tagged(&channel, placed, live.epoch);
            return;
        }
        match hub.ingest(&channel, placed, live.epoch, false) {
            Ingested::NewEpoch => {
                let retention = channel
                    .options
                    .history
                    .unwrap_or(hub.config().default_history);
                let read = self
                    .read_into(hub, &channel, Query::Last(retention), retention)
                    .await;
                if let Ok(placed) = payload::place_with(
                    &self.bodies,
                    hub.codec(),
                    &live.payload,
                    live.seq,
                    live.time_us,
                ) {
                    // Delivered by the read if it was there; otherwise the epoch starts here.
                    hub.ingest(&channel, placed, live.epoch, !read);
                }
            }
            Ingested::Gap { from } => {
                debug!(
                    channel = name,
                    from,
                    to = live.seq,
                    "closing a gap in the cluster feed"
                );
                self.read_into(hub, &channel, Query::SinceSeq(from), live.seq - from)
                    .await;
                hub.counters()
                    .cluster_gaps_recovered
                    .fetch_add(live.seq - from, std::sync::atomic::Ordering::Relaxed);
                if let Ok(placed) = payload::place_with(
                    &self.bodies,
                    hub.codec(),
                    &live.payload,
                    live.seq,
                    live.time_us,
                ) {
                    hub.ingest(&channel, placed, live.epoch, true);
                }
            }
            Ingested::Delivered(_) | Ingested::Duplicate => {}
        }
    }

    /// The local entry for `name`, made from what the backplane knows of it.
    async fn adopt(&self, hub: &Hub, name: &str) -> Option<Arc<Channel>> {
        match self.backplane.channel(name).await {
            Ok(Some(meta)) => match hub.adopt_channel(name, &meta) {
                Ok(channel) => Some(channel),
                Err(refusal) => {
                    warn!(target: log::ERROR, channel = name, error = %refusal.message, "cannot follow channel");
                    None
                }
            },
            Ok(None) => None,
            Err(refusal) => {
                warn!(target: log::ERROR, channel = name, error = %refusal.message, "cannot read channel from the cluster");
                None
            }
        }
    }

    /// Reads `query` from the backplane into `channel`'s cache, delivering what is new
    /// here; `false` if the backplane could not be read.
    async fn read_into(&self, hub: &Hub, channel: &Channel, query: Query, limit: u64) -> bool {
        match self.backplane.read(&channel.name, query, limit).await {
            Ok(Some(page)) => {
                let entries = self.place_all(hub, &channel.name, &page);
                hub.merge(channel, page.epoch, page.top_seq, entries);
                true
            }
            Ok(None) => {
                hub.lost_channel(&channel.name);
                true
            }
            Err(refusal) => {
                warn!(target: log::ERROR, channel = %channel.name, error = %refusal.message, "cannot read history from the cluster");
                false
            }
        }
    }

    fn place_all(&self, hub: &Hub, name: &str, page: &Page) -> Vec<Placed> {
        page.entries
            .iter()
            .filter_map(|entry| {
                let placed = payload::place_with(
                    &self.bodies,
                    hub.codec(),
                    &entry.payload,
                    entry.seq,
                    entry.time_us,
                );
                match placed {
                    Ok(placed) => Some(placed),
                    Err(e) => {
                        error!(target: log::ERROR, channel = name, seq = entry.seq, error = %e, "stored message not readable; skipped");
                        None
                    }
                }
            })
            .collect()
    }

    /// After the feed broke: every channel in step is read from where it stood, so that
    /// its subscribers get what was published meanwhile, in order.
    async fn catch_up(&self, hub: &Hub) {
        let channels = hub.channels_in_step();
        info!(target: log::CONNECTION, channels = channels.len(), "cluster feed restored; catching up");
        for (channel, delivered, epoch) in channels {
            let mut from = delivered + 1;
            loop {
                let page = match self
                    .backplane
                    .read(&channel.name, Query::SinceSeq(from), READ_BATCH)
                    .await
                {
                    Ok(Some(page)) => page,
                    Ok(None) => {
                        hub.lost_channel(&channel.name);
                        break;
                    }
                    Err(refusal) => {
                        warn!(target: log::ERROR, channel = %channel.name, error = %refusal.message, "cannot catch up channel");
                        break;
                    }
                };
                if page.epoch != epoch {
                    // A new epoch: its positions are not the old ones; take its newest.
                    let retention = channel.options.history.unwrap_or(READ_BATCH);
                    self.read_into(hub, &channel, Query::Last(retention), retention)
                        .await;
                    break;
                }
                let got = page.entries.len() as u64;
                let next = page.entries.last().map(|e| e.seq + 1);
                let entries = self.place_all(hub, &channel.name, &page);
                hub.merge(&channel, page.epoch, page.top_seq, entries);
                match next {
                    Some(next) if got == READ_BATCH && next <= page.top_seq => from = next,
                    _ => break,
                }
            }
        }
    }

    /// Before a subscription's route is added: follows its feed, and brings the channels
    /// it replays (or all it matches, for a first follow) in step, so that the hub's
    /// replay-then-live join works on this node's caches exactly as on one server.
    pub(crate) async fn prepare_subscription(
        &self,
        hub: &Hub,
        pattern: &Pattern,
        replay: Replay,
    ) -> Result<(), Refusal> {
        let topic = topic_of(pattern);
        self.follow(topic.clone()).await?;
        let names = match pattern {
            Pattern::Exact(name) => vec![name.clone()],
            Pattern::Wildcard(_) => match self.matching_channels(pattern, &topic).await {
                Ok(names) => names,
                Err(refusal) => {
                    self.unfollow(&topic);
                    return Err(refusal);
                }
            },
            // Hashtags replay from this node's recent index.
            Pattern::Tag(tag) => {
                let query = match replay {
                    Replay::None => return Ok(()),
                    Replay::SinceSeq(seq) => Query::SinceSeq(seq),
                    Replay::SinceTime(time) => Query::SinceTime(time),
                    Replay::Last(count) => Query::Last(count),
                };
                let limit = hub.config().default_history;
                match self.read_tag(hub, tag, query, limit).await {
                    Ok(messages) => hub.merge_tagged(tag, messages),
                    Err(refusal) => {
                        self.unfollow(&topic);
                        return Err(refusal);
                    }
                }
                return Ok(());
            }
        };
        for name in names {
            if let Err(refusal) = self.bring_in_step(hub, &name, replay).await {
                self.unfollow(&topic);
                hub.drop_unrouted_caches();
                return Err(refusal);
            }
        }
        Ok(())
    }

    /// Channels `pattern` matches now, by their names' literal start.
    async fn matching_channels(
        &self,
        pattern: &Pattern,
        topic: &Topic,
    ) -> Result<Vec<String>, Refusal> {
        let Topic::ChannelPrefix(prefix) = topic else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.backplane.list_channels(after.as_deref(), 1000).await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for name in page {
                if name.starts_with(prefix.as_str()) && pattern.matches_channel(&name) {
                    names.push(name);
                }
            }
            if names.len() >= MAX_WILDCARD_CHANNELS {
                warn!(target: log::GENERAL, pattern = %pattern, "wildcard matches more channels than are replayed");
                names.truncate(MAX_WILDCARD_CHANNELS);
                break;
            }
            after = Some(last);
        }
        Ok(names)
    }

    /// Makes `name`'s cache hold what `replay` asks (or only its position, for no
    /// replay), delivering to connections already routed here anything they lack.
    async fn bring_in_step(&self, hub: &Hub, name: &str, replay: Replay) -> Result<(), Refusal> {
        let query = match replay {
            Replay::None => None,
            Replay::SinceSeq(seq) => Some(Query::SinceSeq(seq)),
            Replay::SinceTime(time) => Some(Query::SinceTime(time)),
            Replay::Last(count) => Some(Query::Last(count)),
        };
        let in_step = hub
            .local_channel(name)
            .is_some_and(|c| c.history.lock().cluster.delivered.is_some());
        if query.is_none() && in_step {
            return Ok(());
        }
        let Some(meta) = self.backplane.channel(name).await? else {
            // Nothing to replay; its first message will come through the feed.
            return Ok(());
        };
        let channel = hub.adopt_channel(name, &meta)?;
        match query {
            None => {
                hub.merge(&channel, meta.epoch, meta.top_seq, Vec::new());
            }
            Some(query) => {
                let limit = channel
                    .options
                    .history
                    .unwrap_or(hub.config().default_history);
                let page = self
                    .backplane
                    .read(name, query, limit)
                    .await?
                    .unwrap_or_default();
                let entries = self.place_all(hub, name, &page);
                hub.merge(&channel, page.epoch, page.top_seq, entries);
            }
        }
        Ok(())
    }

    /// Follows `topic` for one more subscription.
    async fn follow(&self, topic: Topic) -> Result<(), Refusal> {
        *self.follows.lock().entry(topic.clone()).or_default() += 1;
        match self.backplane.follow(topic.clone()).await {
            Ok(()) => Ok(()),
            Err(refusal) => {
                self.unfollow(&topic);
                Err(refusal)
            }
        }
    }

    /// One subscription less on `topic`; the last one stops following it.
    fn unfollow(&self, topic: &Topic) {
        let mut follows = self.follows.lock();
        let Some(count) = follows.get_mut(topic) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            follows.remove(topic);
            // Under the lock, so that a follow that comes next is queued after it.
            self.backplane.unfollow(topic.clone());
        }
    }

    /// A subscription to `pattern` ended.
    pub(crate) fn subscription_ended(&self, hub: &Hub, pattern: &Pattern) {
        let topic = topic_of(pattern);
        let last = self
            .follows
            .lock()
            .get(&topic)
            .is_some_and(|count| *count == 1);
        self.unfollow(&topic);
        if last {
            hub.drop_unrouted_caches();
        }
    }

    /// PUBLISH of an inline body to a channel, through the backplane, which gives the
    /// message its position; this node delivers it when it comes back through the feed.
    pub(crate) async fn publish(
        &self,
        hub: &Hub,
        caller: &Caller,
        publish: &Publish,
        body_crc: Option<u32>,
    ) -> Result<Published, Refusal> {
        self.publish_body(hub, caller, publish, body_crc, None)
            .await
    }

    /// A streamed publish whose body arrived whole: the body becomes a blob this node
    /// keeps (other nodes fetch it over the node link); the backplane gets the message
    /// without it.
    pub(crate) async fn publish_streamed(
        &self,
        hub: &Hub,
        caller: &Caller,
        publish: &Publish,
        upload: Verified,
    ) -> Result<Published, Refusal> {
        self.publish_body(hub, caller, publish, None, Some(upload))
            .await
    }

    /// The node link's side of this node: the bodies it keeps and fetches.
    pub(crate) fn bodies(&self) -> &Arc<super::bodies::NodeLink> {
        &self.bodies
    }

    async fn publish_body(
        &self,
        hub: &Hub,
        caller: &Caller,
        publish: &Publish,
        body_crc: Option<u32>,
        mut upload: Option<Verified>,
    ) -> Result<Published, Refusal> {
        let streamed_len = upload.as_ref().map(Verified::len);
        // A streamed body is kept under the message's id, so the id stays the same if
        // the append is tried again.
        let mut streamed_id: Option<Uuid> = None;
        let name = publish.channel.as_str();
        // The second attempt, after the channel this node knew was found deleted: what
        // the backplane has now (or nothing, and the publish creates it).
        let mut fresh: Option<Option<(u64, ChannelOptions)>> = None;
        for attempt in 0..2 {
            let prepared = self
                .prepare(
                    hub,
                    caller,
                    publish,
                    body_crc,
                    Streamed {
                        len: streamed_len,
                        id: &mut streamed_id,
                        upload: &mut upload,
                    },
                    fresh.take(),
                )
                .await?;
            let (cid, id, history) = (prepared.cid, prepared.id, prepared.append.max_count);
            let appended = self.backplane.append(prepared.append).await;
            if streamed_len.is_some() {
                match &appended {
                    Ok(appended) => self.bodies.placed(name, id, appended.seq, history),
                    // Tried again under the same id, or perhaps stored: kept.
                    Err(refusal)
                        if refusal.code == ErrorCode::BackplaneUnavailable
                            || (refusal.code == ErrorCode::NotFound
                                && cid != 0
                                && attempt == 0) => {}
                    Err(_) => self.bodies.forget(&id),
                }
            }
            match appended {
                Ok(appended) => {
                    hub.count_published();
                    return Ok(published(id, appended.seq));
                }
                // The channel this node knew was deleted (and maybe created again)
                // elsewhere, or lost with the backplane's data: look again, once.
                Err(refusal) if refusal.code == ErrorCode::NotFound && cid != 0 && attempt == 0 => {
                    fresh = Some(self.look_again(hub, name).await?);
                }
                Err(refusal) => return Err(refusal),
            }
        }
        Err(Refusal::not_found(format!(
            "channel {name} was deleted meanwhile"
        )))
    }

    /// PUBLISH of an inline body to a channel, queued behind the node's earlier appends:
    /// returns once it has its place, so that the session can read on; the future it
    /// returns is the outcome. Where the channel this node knew was deleted elsewhere
    /// meanwhile, the outcome is that of [`ClusterNode::publish`] tried again.
    pub(crate) async fn queue_publish(
        self: &Arc<Self>,
        hub: &Hub,
        caller: &Caller,
        publish: Publish,
        body_crc: Option<u32>,
    ) -> Result<QueuedPublish, Refusal> {
        let prepared = self
            .prepare(
                hub,
                caller,
                &publish,
                body_crc,
                Streamed {
                    len: None,
                    id: &mut None,
                    upload: &mut None,
                },
                None,
            )
            .await?;
        let (cid, id) = (prepared.cid, prepared.id);
        let queued = self.backplane.queue_append(prepared.append).await?;
        let node = Arc::clone(self);
        let caller = caller.clone();
        Ok(Box::pin(async move {
            let hub = node.hub.get().and_then(Weak::upgrade);
            match (queued.await, hub) {
                (Ok(appended), Some(hub)) => {
                    hub.count_published();
                    Ok(published(id, appended.seq))
                }
                (Ok(appended), None) => Ok(published(id, appended.seq)),
                (Err(refusal), Some(hub)) if refusal.code == ErrorCode::NotFound && cid != 0 => {
                    node.publish(&hub, &caller, &publish, body_crc).await
                }
                (Err(refusal), _) => Err(refusal),
            }
        }))
    }

    /// Lets queued publishes reach the hub they serve.
    pub(crate) fn attach_hub(&self, hub: Weak<Hub>) {
        let _ = self.hub.set(hub);
    }

    /// The channel as the backplane has it now (adopted here), after an append found the
    /// one this node knew deleted.
    async fn look_again(
        &self,
        hub: &Hub,
        name: &str,
    ) -> Result<Option<(u64, ChannelOptions)>, Refusal> {
        let meta = self.backplane.channel(name).await?;
        if let Some(meta) = &meta {
            hub.adopt_channel(name, meta)?;
        }
        Ok(meta.map(|meta| (meta.cid, meta.options)))
    }

    /// The append of a publish: the channel found (asked of the backplane when this node
    /// does not know it), the publish admitted by its rules, the message given its id and
    /// encoded. A streamed body becomes a blob this node keeps.
    async fn prepare(
        &self,
        hub: &Hub,
        caller: &Caller,
        publish: &Publish,
        body_crc: Option<u32>,
        streamed: Streamed<'_>,
        fresh: Option<Option<(u64, ChannelOptions)>>,
    ) -> Result<Prepared, Refusal> {
        let name = publish.channel.as_str();
        let local = hub.local_channel(name).map(|c| (c.cid, c.options));
        let known = match (fresh, local) {
            (Some(fresh), _) => fresh,
            (None, Some(local)) => Some(local),
            (None, None) => {
                subject::validate_channel(name)?;
                // Kept here, so that the next publish needs no lookup.
                match self.backplane.channel(name).await? {
                    Some(meta) => {
                        let channel = hub.adopt_channel(name, &meta)?;
                        Some((channel.cid, channel.options))
                    }
                    None => None,
                }
            }
        };
        let (rules, ids, _) = hub.publish_parts();
        let shape = match streamed.len {
            Some(len) => BodyShape::Streamed(len),
            None => BodyShape::Frame(&publish.body),
        };
        let (cid, create_with, admission) = match &known {
            // Made here with the options a role's caps gave it, not yet the cluster's:
            // the publish creates it with those options.
            Some((0, options)) => (
                0,
                Some(*options),
                rules.admit(Target::Channel(options), shape)?,
            ),
            Some((cid, options)) => (*cid, None, rules.admit(Target::Channel(options), shape)?),
            None => {
                let admission = rules.admit(Target::NewChannel { name }, shape)?;
                (0, Some(rules.default_options()?), admission)
            }
        };
        let options = known.map_or_else(|| create_with.unwrap_or_default(), |(_, o)| o);
        let time_us = now_us();
        let id = match (streamed.len, *streamed.id) {
            (Some(_), Some(id)) => id,
            (Some(_), None) => *streamed.id.insert(ids.next(time_us)),
            (None, _) => ids.next(time_us),
        };
        if let Some(verified) = streamed.upload.take() {
            let blob = hub
                .blobs()
                .store(verified, &id)
                .map_err(|e| crate::hub::blob_refusal(&e))?;
            self.bodies.keep(id, blob);
        }
        let envelope = Envelope {
            scope: Scope::Channel,
            channel: name,
            id,
            seq: 0,
            time_us: 0,
            sender_id: caller.client_id(),
            sender_name: caller.name(),
            content_type: &publish.content_type,
            user_headers: &publish.user_headers,
            body: if streamed.len.is_some() {
                &[]
            } else {
                &publish.body
            },
            body_crc,
            stream: streamed.len.map(|total_len| StreamStart {
                stream_id: 0,
                total_len,
            }),
        };
        let payload = match streamed.len {
            Some(_) => payload::encode_streamed(
                &self.payload_codec,
                &envelope,
                admission.drop_oldest,
                self.backplane.node_id(),
            ),
            None => payload::encode(&self.payload_codec, &envelope, admission.drop_oldest),
        }
        .map_err(|e| Refusal::new(ErrorCode::TooLarge, e.to_string()))?;
        let append = Append {
            channel: name.to_owned(),
            cid,
            create_with,
            id,
            payload,
            body_len: streamed.len.unwrap_or(publish.body.len() as u64),
            tags: subject::message_hashtags(&publish.content_type, &publish.body),
            max_count: options.history.unwrap_or(hub.config().default_history),
            max_bytes: options.max_total_bytes,
        };
        Ok(Prepared { append, cid, id })
    }

    /// CREATE_CHANNEL with the options the hub's rules filled in.
    pub(crate) async fn create_channel(
        &self,
        hub: &Hub,
        name: &str,
        requested: &ChannelOptions,
        options: ChannelOptions,
    ) -> Result<(Arc<Channel>, bool), Refusal> {
        let (meta, created) = self.backplane.create_channel(name, &options).await?;
        if !created && crate::hub::channels::conflicts(requested, &meta.options) {
            return Err(Refusal::new(
                ErrorCode::AlreadyExists,
                format!("channel {name} already exists with other options"),
            ));
        }
        Ok((hub.adopt_channel(name, &meta)?, created))
    }

    /// DELETE_CHANNEL, for every node.
    pub(crate) async fn delete_channel(&self, hub: &Hub, name: &str) -> Result<(), Refusal> {
        subject::validate_channel(name)?;
        if !self.backplane.delete_channel(name).await? {
            return Err(Refusal::not_found(format!("no channel named {name}")));
        }
        hub.forget_channel(name);
        Ok(())
    }

    /// Channel names after `after`, in name order.
    pub(crate) async fn list_channels(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Refusal> {
        self.backplane.list_channels(after, limit).await
    }

    /// What a channel is, from the backplane.
    pub(crate) async fn channel_meta(&self, name: &str) -> Result<Option<ChannelMeta>, Refusal> {
        self.backplane.channel(name).await
    }

    /// A hashtag's history read from the backplane, as stored messages placed here.
    pub(crate) async fn read_tag(
        &self,
        hub: &Hub,
        tag: &str,
        query: Query,
        limit: u64,
    ) -> Result<Vec<Arc<StoredMessage>>, Refusal> {
        let entries = self.backplane.read_tag(tag, query, limit).await?;
        Ok(entries
            .iter()
            .filter_map(|entry| {
                let placed = payload::place_with(
                    &self.bodies,
                    hub.codec(),
                    &entry.payload,
                    entry.seq,
                    entry.time_us,
                );
                placed
                    .map_err(|e| {
                        error!(target: log::ERROR, channel = %entry.channel, seq = entry.seq, error = %e, "stored message not readable; skipped");
                    })
                    .ok()
                    .map(|placed| Arc::new(placed.message))
            })
            .collect())
    }

    /// A history read, as stored messages placed for this node.
    pub(crate) async fn read(
        &self,
        hub: &Hub,
        name: &str,
        query: Query,
        limit: u64,
    ) -> Result<Option<(Page, Vec<Arc<StoredMessage>>)>, Refusal> {
        let Some(page) = self.backplane.read(name, query, limit).await? else {
            return Ok(None);
        };
        // Messages past the channel's maximum age are never served, even before a trim
        // removed them, as on one server.
        let max_age = match hub.local_channel(name) {
            Some(channel) => crate::hub::channels::max_age_us(&channel.options),
            None => match self.backplane.channel(name).await? {
                Some(meta) => crate::hub::channels::max_age_us(&meta.options),
                None => None,
            },
        };
        let oldest = max_age.map_or(0, |age| now_us().saturating_sub(age));
        let messages = self
            .place_all(hub, name, &page)
            .into_iter()
            .filter(|placed| placed.message.time_us() >= oldest)
            .map(|placed| Arc::new(placed.message))
            .collect();
        Ok(Some((page, messages)))
    }
}

/// The backplane query for a history request.
pub(crate) fn query_of(since: Since, limit: Option<u64>) -> Query {
    match (since, limit) {
        (Since::All, Some(count)) => Query::Last(count),
        (Since::All, None) => Query::SinceSeq(0),
        (Since::Seq(seq), _) => Query::SinceSeq(seq),
        (Since::Time(time), _) => Query::SinceTime(time),
    }
}
