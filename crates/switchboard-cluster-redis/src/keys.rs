//! Every Redis key and pub/sub channel name the cluster uses, built in one place.
//!
//! All keys of one channel (or group, tag, node) share a hash tag, `{c:NAME}`, so that a
//! script touching several of them is valid on Redis Cluster too. Names are never parsed
//! back from keys, so a name holding `{` or `}` only moves its hash tag, never mixes two
//! channels' keys: each key is the prefix, the whole name and a distinct suffix.

/// The key and channel names of one cluster, under its prefix (`sb:` by default), so
/// that several clusters can share one Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

/// The prefix of every key unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "sb:";

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn tagged(&self, kind: &str, name: &str, suffix: &str) -> String {
        let mut key =
            String::with_capacity(self.prefix.len() + kind.len() + name.len() + suffix.len() + 4);
        key.push_str(&self.prefix);
        key.push('{');
        key.push_str(kind);
        key.push(':');
        key.push_str(name);
        key.push('}');
        key.push(':');
        key.push_str(suffix);
        key
    }

    fn plain(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    // Channels.

    /// Hash: the channel's options, incarnation id, epoch, generation, top seq, last time.
    pub fn channel_meta(&self, name: &str) -> String {
        self.tagged("c", name, "m")
    }

    /// Stream: the channel's history, entry ids `<seq>-0`.
    pub fn channel_stream(&self, name: &str) -> String {
        self.tagged("c", name, "s")
    }

    /// Sorted set (all scores 0): every channel's name, for listing in name order.
    pub fn channels(&self) -> String {
        self.plain("channels")
    }

    /// Pub/sub channel carrying the channel's live messages.
    pub fn channel_topic(&self, name: &str) -> String {
        format!("{}c:{name}", self.prefix)
    }

    /// The prefix of every channel topic, to tell them from others in a pattern message.
    pub fn channel_topic_prefix(&self) -> String {
        format!("{}c:", self.prefix)
    }

    /// A Redis glob matching the topics of every channel whose name starts with
    /// `literal` (escaped, so that glob characters in names match themselves).
    pub fn channel_topic_glob(&self, literal: &str) -> String {
        format!("{}c:{}*", escape_glob(&self.prefix), escape_glob(literal))
    }

    // Groups.

    /// Hash: the group's description, incarnation id, epoch, generation, top seq.
    pub fn group_meta(&self, name: &str) -> String {
        self.tagged("g", name, "m")
    }

    /// Stream: the group's posts.
    pub fn group_stream(&self, name: &str) -> String {
        self.tagged("g", name, "s")
    }

    /// Sorted set (all scores 0): the group's members by user name, for paging in name
    /// order.
    pub fn group_members(&self, name: &str) -> String {
        self.tagged("g", name, "members")
    }

    /// Sorted set (all scores 0): every group's name.
    pub fn groups(&self) -> String {
        self.plain("groups")
    }

    /// Set: the groups a user is a member of (the reverse of `group_members`).
    pub fn user_groups(&self, user: &str) -> String {
        self.tagged("u", user, "groups")
    }

    /// Pub/sub channel carrying the group's posts and member events.
    pub fn group_topic(&self, name: &str) -> String {
        format!("{}g:{name}", self.prefix)
    }

    // Hashtags.

    /// Stream: the newest messages carrying `#tag`, entries naming channel and seq.
    pub fn tag_stream(&self, tag: &str) -> String {
        self.tagged("t", tag, "s")
    }

    /// Pub/sub channel carrying the live messages that carry `#tag`.
    pub fn tag_topic(&self, tag: &str) -> String {
        format!("{}t:{tag}", self.prefix)
    }

    // Nodes.

    /// String: the last incarnation number handed to a starting node.
    pub fn incarnation(&self) -> String {
        self.plain("incarnation")
    }

    /// String: the backplane generation, bumped whenever the Redis replication id
    /// changes (a restart without the same data, a failover).
    pub fn generation(&self) -> String {
        self.plain("gen")
    }

    /// String: the replication id the generation belongs to.
    pub fn replication_id(&self) -> String {
        self.plain("replid")
    }

    /// Sorted set: live nodes' incarnations, scored by when their registration expires
    /// (milliseconds since the epoch).
    pub fn nodes(&self) -> String {
        self.plain("nodes")
    }

    /// Hash, expiring with the node: its node-link address, start time, version.
    pub fn node_info(&self, incarnation: u64) -> String {
        self.tagged("n", &incarnation.to_string(), "info")
    }

    /// Sorted set, expiring with the node: its clients' ids.
    pub fn node_clients(&self, incarnation: u64) -> String {
        self.tagged("n", &incarnation.to_string(), "clients")
    }

    /// Hash, expiring with the node: client id → what others need to know of it.
    pub fn node_client_info(&self, incarnation: u64) -> String {
        self.tagged("n", &incarnation.to_string(), "cinfo")
    }

    /// Hash, expiring with the node: client name → how many of its sessions are there
    /// (whether a group member is online anywhere).
    pub fn node_names(&self, incarnation: u64) -> String {
        self.tagged("n", &incarnation.to_string(), "names")
    }

    /// Pub/sub channel of one node: relays to its clients, answers to its requests,
    /// its own liveness probes.
    pub fn node_topic(&self, incarnation: u64) -> String {
        format!("{}n:{incarnation}", self.prefix)
    }

    /// Pub/sub channel every node follows: joins to groups, so that the node where the
    /// user who joined has sessions follows the group for them.
    pub fn control_topic(&self) -> String {
        self.plain("ctl")
    }
}

// The subscriber's liveness probe.
impl Keys {
    /// Pub/sub channel of one subscriber's liveness probes (`id` is random per process),
    /// published through the command connection and expected back on the pub/sub one.
    pub fn probe_topic(&self, id: &str) -> String {
        format!("{}probe:{id}", self.prefix)
    }
}

/// `text` as a Redis glob matching exactly itself.
pub fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_channel_share_a_hash_tag() {
        let keys = Keys::default();
        assert_eq!(keys.channel_meta("a.b"), "sb:{c:a.b}:m");
        assert_eq!(keys.channel_stream("a.b"), "sb:{c:a.b}:s");
        assert_eq!(keys.channel_topic("a.b"), "sb:c:a.b");
        assert_eq!(keys.node_clients(7), "sb:{n:7}:clients");
    }

    #[test]
    fn names_with_braces_never_share_keys() {
        let keys = Keys::new("x:");
        assert_ne!(keys.channel_meta("a}:s"), keys.channel_stream("a"));
        assert_ne!(keys.channel_stream("a}:m"), keys.channel_meta("a"));
    }

    #[test]
    fn globs_escape_special_characters() {
        let keys = Keys::default();
        assert_eq!(keys.channel_topic_glob("a.b."), "sb:c:a.b.*");
        assert_eq!(keys.channel_topic_glob("we[i]rd*"), "sb:c:we\\[i\\]rd\\**");
        assert_eq!(keys.channel_topic_glob(""), "sb:c:*");
    }
}
