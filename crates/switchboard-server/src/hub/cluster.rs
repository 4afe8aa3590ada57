//! Cluster mode's operations on the hub's state, under the same locks as a single
//! server's: taking in a message from the backplane's feed, merging history read back
//! from the backplane into a channel's cache, and forgetting channels deleted elsewhere.
//!
//! Every message of a followed channel passes through here in the backplane's order;
//! `History::cluster` records how far this node delivered, so that a message that comes
//! twice (through a channel and a hashtag, or read back after a reconnect) is delivered
//! once, and one that comes after a gap waits until the gap is read back.

use std::sync::Arc;

use switchboard_proto::packet::{Event, EventKind, Packet, Scope};

use super::Hub;
use super::channels::{Channel, max_age_us, retention_of};
use super::history::History;
use super::message::StoredMessage;
use super::stats::Counters;
use crate::budget;
use crate::cluster::ChannelMeta;
use crate::cluster::payload::Placed;
use crate::error::Refusal;
use crate::security::usage::Owned;
use crate::time::now_us;

/// What became of a message from the backplane's feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ingested {
    /// Delivered on this many connections.
    Delivered(u64),
    /// Already delivered here.
    Duplicate,
    /// Messages from `from` on (before this one) never came: they must be read back and
    /// merged first.
    Gap { from: u64 },
    /// The message belongs to a new epoch: the epoch's kept messages must be read back
    /// and merged first.
    NewEpoch,
}

impl Hub {
    /// The local entry of a channel, if this node has one.
    pub(crate) fn local_channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.get(name)
    }

    /// The local entry for a channel the backplane knows, made if missing. An entry left
    /// from an older channel of the same name (deleted and created again while this node
    /// did not hear it, or lost with the backplane's data) is replaced without a word:
    /// the new channel's first message reaches its subscribers after an EVENT
    /// `EPOCH_CHANGED`, since the old entry's epoch is carried over for comparison.
    pub(crate) fn adopt_channel(
        &self,
        name: &str,
        meta: &ChannelMeta,
    ) -> Result<Arc<Channel>, Refusal> {
        let mut old_epoch = 0;
        if let Some(existing) = self.channels.get(name) {
            if existing.cid == meta.cid {
                return Ok(existing);
            }
            let removed = self.channels.remove_with(name, |channel| {
                let mut history = channel.history.lock();
                let epoch = history.cluster.epoch;
                let messages = history.take_all();
                (epoch, self.tags.lock().remove(&messages, &self.budget))
            });
            if let Some((epoch, tags_left)) = removed {
                old_epoch = epoch;
                for tag in &tags_left {
                    self.usage.disown(Owned::Hashtag, tag);
                }
                self.budget.release(budget::channel_cost(name));
            }
        }
        let (channel, _) = self.channels.get_or_insert_with(name, || {
            self.budget.charge(budget::channel_cost(name), "channels")?;
            let mut history = History::new(retention_of(&meta.options, &self.config));
            history.cluster.epoch = old_epoch;
            Ok(Channel::new(name.to_owned(), meta.options, history).with_cid(meta.cid))
        })?;
        Ok(channel)
    }

    /// A followed channel the backplane no longer has (its data was lost, or it was
    /// deleted while this node was cut off): it falls out of step, keeping its epoch so
    /// that the next message's new epoch is announced.
    pub(crate) fn lost_channel(&self, name: &str) {
        if let Some(channel) = self.channels.get(name) {
            channel.history.lock().clear_cache();
        }
    }

    /// Forgets a channel that was deleted (here or by another node): the connections
    /// routed to it are told with an EVENT `CHANNEL_DELETED` after every message of it
    /// they were sent, as on a single server. Says whether there was an entry.
    pub(crate) fn forget_channel(&self, name: &str) -> bool {
        let mut event = Event::new(EventKind::ChannelDeleted);
        event.channel = name.into();
        event.time_us = now_us();
        let frame = self.shared_frame(&Packet::Event(event));
        let removed = self.channels.remove_with(name, |channel| {
            let mut history = channel.history.lock();
            let messages = history.take_all();
            let tags_left = self.tags.lock().remove(&messages, &self.budget);
            if let Some(frame) = &frame {
                for outbox in self.routes.connections_for(name) {
                    outbox.deliver(frame.clone());
                }
            }
            drop(history);
            tags_left
        });
        let Some(tags_left) = removed else {
            return false;
        };
        for tag in &tags_left {
            self.usage.disown(Owned::Hashtag, tag);
        }
        self.budget.release(budget::channel_cost(name));
        self.usage.disown(Owned::Channel, name);
        true
    }

    /// Whether a connection here has an exact or wildcard route to `channel` (so that
    /// this node follows the channel's own feed).
    pub(crate) fn routes_cover(&self, channel: &str) -> bool {
        self.routes.read().covers(channel)
    }

    /// Takes in a message of `channel` from the channel's feed, in the backplane's order.
    /// With `force_epoch`, a new epoch starts at this message (its earlier messages could
    /// not be read back).
    pub(crate) fn ingest(
        &self,
        channel: &Channel,
        placed: Placed,
        epoch: u64,
        force_epoch: bool,
    ) -> Ingested {
        let message = Arc::new(placed.message);
        let seq = message.seq();
        let mut history = channel.history.lock();
        if history.is_deleted() {
            return Ingested::Duplicate;
        }
        if history.cluster.epoch != epoch {
            if history.cluster.epoch != 0 && !force_epoch {
                // The new epoch's earlier messages are read back first, so that its
                // subscribers get all of it that is kept, not only what comes next.
                return Ingested::NewEpoch;
            }
            self.change_epoch(channel, &mut history, epoch, seq);
        }
        match history.cluster.delivered {
            Some(delivered) if seq <= delivered => return Ingested::Duplicate,
            Some(delivered) if seq > delivered + 1 => {
                return Ingested::Gap {
                    from: delivered + 1,
                };
            }
            _ => {}
        }
        let delivered = self.deliver_next(channel, &mut history, &message, placed.drop_oldest);
        drop(history);
        Counters::add(&self.counters.messages_delivered, delivered);
        Ingested::Delivered(delivered)
    }

    /// Takes in a message of `channel` that came through a hashtag's feed while the
    /// channel itself is not followed here: it reaches the hashtag's subscribers only,
    /// once, and stays out of the channel's cache.
    pub(crate) fn ingest_tagged(&self, channel: &Channel, placed: Placed, epoch: u64) -> u64 {
        let message = Arc::new(placed.message);
        let mut history = channel.history.lock();
        if history.is_deleted() {
            return 0;
        }
        if history.cluster.epoch == epoch && message.seq() <= history.cluster.tagged {
            return 0;
        }
        history.cluster.tagged = message.seq();
        let delivered = {
            let mut tags = self.tags.lock();
            tags.push(&message, max_age_us(&channel.options), &self.budget);
            let delivered = self.routes.read().deliver_tagged(
                &channel.name,
                message.tags(),
                &message,
                placed.drop_oldest,
            );
            drop(tags);
            delivered
        };
        drop(history);
        Counters::add(&self.counters.messages_delivered, delivered);
        delivered
    }

    /// Merges messages read back from the backplane (oldest first, contiguous, of
    /// `epoch`; the history's newest seq was `top` when read) into `channel`'s cache:
    /// older ones go in front of the cache, newer ones than delivered here are delivered
    /// now, in order. Returns on how many connections messages were queued.
    pub(crate) fn merge(
        &self,
        channel: &Channel,
        epoch: u64,
        top: u64,
        entries: Vec<Placed>,
    ) -> u64 {
        let mut history = channel.history.lock();
        if history.is_deleted() {
            return 0;
        }
        if history.cluster.epoch != epoch {
            let first = entries.first().map_or(top + 1, |e| e.message.seq());
            self.change_epoch(channel, &mut history, epoch, first);
        }
        let mut queued = 0;
        match history.cluster.delivered {
            // Not in step: nothing was delivered here since the node began following the
            // channel (or since its epoch changed). Whoever is routed here now came after
            // these messages' feed was followed, so they get them all, in order.
            None => {
                for placed in entries {
                    let message = Arc::new(placed.message);
                    queued +=
                        self.deliver_next(channel, &mut history, &message, placed.drop_oldest);
                }
                if history.cluster.delivered.is_none_or(|d| d < top)
                    && history.cached_bounds().is_none()
                {
                    history.cluster.delivered = Some(top);
                    history.next_seq_after(top);
                }
            }
            Some(delivered) => {
                let cached_first = history.cached_bounds().map(|(first, _)| first);
                let mut older = Vec::new();
                for placed in entries {
                    let seq = placed.message.seq();
                    let before_cache = cached_first.map_or(seq <= delivered, |first| seq < first);
                    if before_cache {
                        older.push(Arc::new(placed.message));
                        continue;
                    }
                    let now_delivered = history.cluster.delivered.unwrap_or(delivered);
                    if seq <= now_delivered {
                        continue;
                    }
                    if seq > now_delivered + 1 {
                        // Trimmed from the backplane before this node could read them.
                        self.announce_skipped(&channel.name, seq - now_delivered - 1);
                        history.clear_cache();
                        older.clear();
                    }
                    let message = Arc::new(placed.message);
                    queued +=
                        self.deliver_next(channel, &mut history, &message, placed.drop_oldest);
                }
                // Only a run that ends where the cache begins keeps the cache contiguous.
                let joins = match (older.last(), history.cached_bounds()) {
                    (Some(last), Some((first, _))) => last.seq() + 1 == first,
                    (Some(last), None) => Some(last.seq()) == history.cluster.delivered,
                    (None, _) => false,
                };
                if joins {
                    history.prepend(older);
                }
            }
        }
        drop(history);
        Counters::add(&self.counters.messages_delivered, queued);
        queued
    }

    /// Delivers the message after the last one delivered here and caches it.
    fn deliver_next(
        &self,
        channel: &Channel,
        history: &mut History,
        message: &Arc<StoredMessage>,
        drop_oldest: bool,
    ) -> u64 {
        let seq = message.seq();
        if history
            .cached_bounds()
            .is_some_and(|(_, last)| last + 1 != seq)
        {
            history.clear_cache();
        }
        history.cluster.delivered = Some(seq);
        self.commit(channel, history, message, drop_oldest, false)
    }

    /// The channel's history began a new epoch: its routed connections are told before
    /// any message of it, and the cache of the old epoch goes.
    fn change_epoch(&self, channel: &Channel, history: &mut History, epoch: u64, first_seq: u64) {
        let had_epoch = history.cluster.epoch != 0;
        history.clear_cache();
        history.cluster.epoch = epoch;
        history.cluster.tagged = 0;
        if had_epoch {
            tracing::warn!(
                target: crate::log::GENERAL,
                channel = %channel.name,
                first_seq,
                "channel history began a new epoch; messages may have been lost"
            );
            Counters::add(&self.counters.cluster_epoch_changes, 1);
            let mut event = Event::new(EventKind::EpochChanged);
            event.scope = Scope::Channel;
            event.channel = channel.name.as_str().into();
            event.count = first_seq;
            event.time_us = now_us();
            if let Some(frame) = self.shared_frame(&Packet::Event(event)) {
                for outbox in self.routes.connections_for(&channel.name) {
                    outbox.deliver(frame.clone());
                }
            }
        }
    }

    /// Tells the connections routed to `channel` that `count` of its messages will never
    /// reach them (trimmed from the backplane while this node was cut off).
    fn announce_skipped(&self, channel: &str, count: u64) {
        Counters::add(&self.counters.cluster_messages_skipped, count);
        let mut event = Event::new(EventKind::Skipped);
        event.channel = channel.into();
        event.count = count;
        event.time_us = now_us();
        if let Some(frame) = self.shared_frame(&Packet::Event(event)) {
            for outbox in self.routes.connections_for(channel) {
                outbox.deliver(frame.clone());
            }
        }
    }

    /// Channels in step with the backplane, with where they stand: after the feed broke,
    /// each is caught up from its history.
    pub(crate) fn channels_in_step(&self) -> Vec<(Arc<Channel>, u64, u64)> {
        self.channels
            .list()
            .into_iter()
            .filter_map(|channel| {
                let position = channel.history.lock().cluster;
                position
                    .delivered
                    .map(|delivered| (channel, delivered, position.epoch))
            })
            .collect()
    }

    /// After a feed was unfollowed: channels no longer routed here fall out of step and
    /// drop their cache (it would have gaps once followed again).
    pub(crate) fn drop_unrouted_caches(&self) {
        for channel in self.channels.list() {
            if !self.routes_cover(&channel.name) {
                let mut history = channel.history.lock();
                if history.cluster.delivered.is_some() {
                    history.clear_cache();
                }
            }
        }
    }

    /// Cluster mode: merges a hashtag's messages read back from the backplane into this
    /// node's index of it, before a replay of the tag is taken from it.
    pub(crate) fn merge_tagged(&self, tag: &str, messages: Vec<Arc<StoredMessage>>) {
        self.tags.lock().merge(tag, messages, &self.budget);
    }

    /// The channels known here with a maximum age, and that age in microseconds.
    pub(crate) fn aging_channels(&self) -> Vec<(String, u64)> {
        self.channels
            .aging()
            .into_iter()
            .filter_map(|channel| Some((channel.name.clone(), max_age_us(&channel.options)?)))
            .collect()
    }

    /// The hub's rules, ids and codec, for cluster publishes.
    pub(crate) fn publish_parts(
        &self,
    ) -> (
        &super::admission::PublishRules,
        &crate::time::MessageIds,
        &switchboard_proto::FrameCodec,
    ) {
        (&self.rules, &self.message_ids, &self.codec)
    }

    /// Counts a publish the backplane stored.
    pub(crate) fn count_published(&self) {
        Counters::add(&self.counters.messages_published, 1);
    }
}
