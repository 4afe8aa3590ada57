//! Cluster mode's seam: what the hub needs from a shared backplane (Redis today; a
//! second engine would implement the same trait), and the node-side logic that keeps
//! this server's subscribers in step with the rest of the cluster ([`node`]).
//!
//! In cluster mode the backplane decides every message's sequence number, time and
//! epoch, and every node (the publishing one included) delivers from the backplane's live
//! feed. A node keeps, for each channel it follows, a cache of the channel's newest
//! messages: the same [`crate::hub::history::History`] a single server keeps, so that
//! replay-then-live works under the same locks as on one server.

pub mod bodies;
pub mod directory;
pub(crate) mod groups;
pub mod memory;
pub(crate) mod node;
pub(crate) mod payload;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use switchboard_proto::packet::ChannelOptions;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use self::directory::{ClientRecord, IncomingRelay, RelayRequest};
pub use crate::error::Refusal;

/// The channel a message payload belongs to (a backplane that carries hashtag feeds
/// learns it here: the payload is the hub's, opaque to the backplane otherwise).
pub fn channel_of(payload: &Bytes) -> Option<String> {
    payload::channel_of(payload)
}

/// What every backplane operation returns: bounded in time by the backplane, which
/// answers BACKPLANE_UNAVAILABLE itself when it cannot tell.
pub type BackplaneFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Refusal>> + Send + 'a>>;

/// What a node listens to on the backplane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// One channel's messages (and its deletion).
    Channel(String),
    /// The messages of every channel whose name starts with this text (the literal
    /// start of a wildcard pattern; empty for a pattern starting with a wildcard). The
    /// node filters by the pattern itself.
    ChannelPrefix(String),
    /// The messages carrying a hashtag, from any channel.
    Tag(String),
    /// One group's posts, member changes and deletion, in one order.
    Group(String),
}

/// A message as the backplane carries it: the position the backplane gave it, and the
/// node-made payload (see [`payload`]).
#[derive(Debug, Clone)]
pub struct LiveMessage {
    pub seq: u64,
    pub epoch: u64,
    pub time_us: u64,
    pub payload: Bytes,
}

/// What the backplane's live feed brings.
#[derive(Debug, Clone)]
pub enum BackplaneEvent {
    /// A message of `channel`, from the channel's own topic (or a prefix), or from a
    /// hashtag's topic (`via_tag`).
    Message {
        channel: String,
        via_tag: bool,
        message: LiveMessage,
    },
    /// `channel` was deleted, after every message it had.
    ChannelDeleted { channel: String },
    /// The feed was broken and is whole again: messages published meanwhile never came
    /// through it, so followed channels must be caught up from history.
    Resubscribed,
    /// A post to `group`, placed by the backplane (the payload is a node-made one, of
    /// scope Group).
    GroupPost { group: String, message: LiveMessage },
    /// `user` joined (or left) `group`, in order with the group's posts.
    GroupMember {
        group: String,
        user: String,
        joined: bool,
    },
    /// `group` was deleted, after every post and member change it had.
    GroupDeleted { group: String },
    /// Another node relays a body to clients of this one; answered with
    /// [`Backplane::answer_relay`].
    Relay(IncomingRelay),
    /// `user` joined `group`, through any node: a node with sessions of `user` follows
    /// the group for them.
    JoinedAnywhere { group: String, user: String },
}

/// A channel as the backplane knows it.
#[derive(Debug, Clone)]
pub struct ChannelMeta {
    pub options: ChannelOptions,
    /// Changes each time a channel of this name is created, so that a publish that
    /// found the channel before it was deleted does not add to its successor.
    pub cid: u64,
    pub epoch: u64,
    pub top_seq: u64,
    /// What the history holds now: messages, the oldest's seq, body bytes.
    pub count: u64,
    pub first_seq: u64,
    pub bytes: u64,
}

impl ChannelMeta {
    /// The channel as LIST_CHANNELS and CREATE_CHANNEL describe it.
    pub fn info(&self, name: &str) -> switchboard_proto::packet::ChannelInfo {
        switchboard_proto::packet::ChannelInfo {
            name: name.into(),
            message_count: self.count,
            first_seq: self.first_seq,
            last_seq: self.top_seq,
            bytes: self.bytes,
            options: self.options,
        }
    }
}

/// A channel message to append.
#[derive(Debug, Clone)]
pub struct Append {
    pub channel: String,
    /// The channel's `cid` as the node knows it; 0 when the node saw no channel and
    /// may create it with `create_with`.
    pub cid: u64,
    pub create_with: Option<ChannelOptions>,
    pub id: Uuid,
    pub payload: Bytes,
    pub body_len: u64,
    pub tags: Vec<String>,
    /// Retention: at most this many messages (0: no bound), and this many body bytes.
    pub max_count: u64,
    pub max_bytes: Option<u64>,
}

/// Where an appended message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub epoch: u64,
    pub time_us: u64,
    pub cid: u64,
}

/// Which messages of a history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    SinceSeq(u64),
    SinceTime(u64),
    /// The newest n.
    Last(u64),
    ById(Uuid),
}

/// A stored message read back.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub time_us: u64,
    pub payload: Bytes,
}

/// A consistent slice of a history: its epoch and bounds when read, and the entries.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub epoch: u64,
    pub first_seq: u64,
    pub top_seq: u64,
    pub entries: Vec<Entry>,
}

/// The backplane's state, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct BackplaneHealth {
    pub connected: bool,
    /// Why not, or where to (never a password).
    pub detail: String,
    /// Counters worth exporting, by name.
    pub counters: Vec<(&'static str, u64)>,
}

/// A shared store and live feed for several servers.
pub trait Backplane: Send + Sync + 'static {
    /// The live feed, taken once by the node.
    fn events(&self) -> Option<mpsc::Receiver<BackplaneEvent>>;
    /// Starts following `topic`; ends once the feed will bring everything published from
    /// now on. Following twice is harmless.
    fn follow(&self, topic: Topic) -> BackplaneFuture<'_, ()>;
    fn unfollow(&self, topic: Topic);
    fn channel<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, Option<ChannelMeta>>;
    /// Creates a channel unless it exists; says whether it was created.
    fn create_channel<'a>(
        &'a self,
        name: &'a str,
        options: &'a ChannelOptions,
    ) -> BackplaneFuture<'a, (ChannelMeta, bool)>;
    /// Deletes a channel; says whether it existed.
    fn delete_channel<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, bool>;
    /// Channel names after `after`, in name order.
    fn list_channels<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BackplaneFuture<'a, Vec<String>>;
    fn append(&self, append: Append) -> BackplaneFuture<'_, Appended>;
    /// Reads a channel's history; `None` when there is no such channel.
    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
        limit: u64,
    ) -> BackplaneFuture<'a, Option<Page>>;
    fn health(&self) -> BackplaneHealth;
    /// This node's number in the cluster, unique and never reused (below 2^21): client
    /// ids are `node_id << 32 | n`, unique across the cluster and routable to their node.
    fn node_id(&self) -> u64;
    /// Leaves the cluster cleanly (a node that is killed leaves by expiry instead).
    fn close(&self) -> BackplaneFuture<'_, ()>;

    /// The newest messages carrying a hashtag, from every channel, oldest first (a
    /// tag's recent messages, within what the backplane keeps per tag).
    fn read_tag<'a>(
        &'a self,
        tag: &'a str,
        query: Query,
        limit: u64,
    ) -> BackplaneFuture<'a, Vec<TaggedEntry>> {
        let _ = (tag, query, limit);
        unsupported()
    }

    /// Removes a channel's messages older than `max_age_us` at `now_us` (a channel
    /// option); says how many. Reads skip them anyway; this frees their room.
    fn trim_age<'a>(
        &'a self,
        channel: &'a str,
        max_age_us: u64,
        now_us: u64,
    ) -> BackplaneFuture<'a, u64> {
        let _ = (channel, max_age_us, now_us);
        Box::pin(std::future::ready(Ok(0)))
    }

    /// Creates a group unless one of that name exists; says whether it was created.
    fn create_group<'a>(
        &'a self,
        name: &'a str,
        description: &'a str,
        creator: &'a str,
    ) -> BackplaneFuture<'a, (GroupMeta, bool)> {
        let _ = (name, description, creator);
        unsupported()
    }
    /// A group as the backplane knows it, if it exists.
    fn group<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, Option<GroupMeta>> {
        let _ = name;
        unsupported()
    }
    /// Deletes a group with its posts and members, announced on its topic after all
    /// it had; says whether it existed.
    fn delete_group<'a>(&'a self, name: &'a str) -> BackplaneFuture<'a, bool> {
        let _ = name;
        unsupported()
    }
    /// Groups after `after`, in name order.
    fn list_groups<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BackplaneFuture<'a, Vec<(String, GroupMeta)>> {
        let _ = (after, limit);
        unsupported()
    }
    /// Adds `user` to (or removes it from) a group's members, announced on the group's
    /// topic in order with its posts.
    fn set_group_member<'a>(
        &'a self,
        name: &'a str,
        user: &'a str,
        join: bool,
    ) -> BackplaneFuture<'a, Membership> {
        let _ = (name, user, join);
        unsupported()
    }
    /// Members after `after`, in name order; `None` when there is no such group.
    fn group_members<'a>(
        &'a self,
        name: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BackplaneFuture<'a, Option<Vec<String>>> {
        let _ = (name, after, limit);
        unsupported()
    }
    /// Whether `user` is a member of the group (false when there is no such group).
    fn is_group_member<'a>(&'a self, name: &'a str, user: &'a str) -> BackplaneFuture<'a, bool> {
        let _ = (name, user);
        unsupported()
    }
    /// The groups `user` is a member of, in name order.
    fn groups_of<'a>(&'a self, user: &'a str) -> BackplaneFuture<'a, Vec<String>> {
        let _ = user;
        unsupported()
    }
    /// Appends a post if its sender is a member, in one step with the check, so that
    /// no post of a user is stored after that user's leave. Refused FORBIDDEN for a
    /// non-member, NOT_FOUND when there is no such group.
    fn post_to_group(&self, post: GroupAppend) -> BackplaneFuture<'_, Appended> {
        let _ = post;
        unsupported()
    }
    /// Reads a group's posts; `None` when there is no such group. Membership is the
    /// caller's to check.
    fn read_group<'a>(
        &'a self,
        name: &'a str,
        query: Query,
        limit: u64,
    ) -> BackplaneFuture<'a, Option<Page>> {
        let _ = (name, query, limit);
        unsupported()
    }
    /// A client connected to this node: published to the directory soon after, in a
    /// batch, without waiting (a session's start never waits on the backplane).
    fn client_joined(&self, _record: ClientRecord) {}
    /// A client of this node left (published like [`Backplane::client_joined`]).
    fn client_left(&self, _id: u64) {}
    /// Clients of the live nodes after the client `after`, in id order.
    fn list_clients(
        &self,
        _after: Option<u64>,
        _limit: usize,
    ) -> BackplaneFuture<'_, Vec<ClientRecord>> {
        unsupported()
    }
    /// The records of these clients, in their order: `None` for one whose node is not
    /// live or that is not connected there.
    fn client_records<'a>(
        &'a self,
        _ids: &'a [u64],
    ) -> BackplaneFuture<'a, Vec<Option<ClientRecord>>> {
        unsupported()
    }
    /// Relays a body to clients of another node, which answers with one outcome per
    /// receiver, in order; refused when the node does not answer within the bound.
    fn relay(
        &self,
        _node: u64,
        _request: RelayRequest,
    ) -> BackplaneFuture<'_, Vec<switchboard_proto::packet::RelayOutcome>> {
        unsupported()
    }
    /// Answers a relay from another node ([`BackplaneEvent::Relay`]), without waiting.
    fn answer_relay(
        &self,
        _relay: &IncomingRelay,
        _outcomes: Vec<switchboard_proto::packet::RelayOutcome>,
    ) {
    }
    /// Where node `node` answers node-link requests (streamed bodies it keeps); `None`
    /// when that node is not live.
    fn node_link_addr(&self, _node: u64) -> BackplaneFuture<'_, Option<String>> {
        unsupported()
    }
    /// The key every node of the cluster signs node-link requests with: made by the
    /// first node that asks, the same for all.
    fn node_link_key(&self) -> BackplaneFuture<'_, Vec<u8>> {
        unsupported()
    }
    /// Takes `append`'s place in this node's order of appends and returns once it has
    /// it; the future it returns is the append's outcome. Appends one caller queues one
    /// after another are stored in that order, so a session may queue its publishes and
    /// read on (pipelining) without waiting for each outcome. An engine that cannot
    /// queue stores the append before returning.
    fn queue_append(&self, append: Append) -> BackplaneFuture<'_, QueuedAppend> {
        Box::pin(async move {
            let outcome = self.append(append).await;
            Ok(Box::pin(std::future::ready(outcome)) as QueuedAppend)
        })
    }
    /// Whether each client name has a session on some live node, in the order given
    /// (GROUP_MEMBERS' `online`).
    fn names_online<'a>(&'a self, _names: &'a [String]) -> BackplaneFuture<'a, Vec<bool>> {
        unsupported()
    }
}

/// The outcome of a queued append ([`Backplane::queue_append`]).
pub type QueuedAppend = BackplaneFuture<'static, Appended>;

/// A message of a hashtag's history, with its channel.
#[derive(Debug, Clone)]
pub struct TaggedEntry {
    pub channel: String,
    pub seq: u64,
    pub time_us: u64,
    pub payload: Bytes,
}

/// A group as the backplane knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMeta {
    pub description: String,
    pub member_count: u64,
    /// Changes each time a group of this name is created.
    pub cid: u64,
    pub epoch: u64,
    pub top_seq: u64,
}

/// What a JOIN_GROUP or LEAVE_GROUP did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Changed,
    /// Already a member (join), or not one (leave).
    Unchanged,
    NoSuchGroup,
}

/// A group post to append.
#[derive(Debug, Clone)]
pub struct GroupAppend {
    pub group: String,
    /// The user name the post is sent under; only a member may post.
    pub sender: String,
    pub id: Uuid,
    pub payload: Bytes,
    /// Posts the group keeps (0: no bound).
    pub max_count: u64,
}

/// What a backplane answers for an operation it does not have.
fn unsupported<'a, T: Send + 'a>() -> BackplaneFuture<'a, T> {
    Box::pin(std::future::ready(Err(Refusal::new(
        switchboard_proto::ErrorCode::BackplaneUnavailable,
        "not supported by this backplane",
    ))))
}
