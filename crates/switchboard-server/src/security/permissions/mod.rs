//! What a role allows: allow and deny lists of subject patterns per operation.

use serde::Deserialize;

/// Allow and deny lists of patterns in the hub's wildcard syntax (`*`, `>`, `#tag`),
/// `{user}` standing for the session's user. Deny wins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `create_channel`: the channels a role may create, and caps on their options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// Most history a channel it creates may keep.
    #[serde(default)]
    pub max_history: Option<u64>,
    /// Largest body a channel it creates may take, in bytes.
    #[serde(default)]
    pub max_body: Option<u64>,
}

/// `groups`: the groups a role may create, join, post to and read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRules {
    #[serde(default)]
    pub create: Rule,
    #[serde(default)]
    pub join: Rule,
    #[serde(default)]
    pub post: Rule,
    #[serde(default)]
    pub read: Rule,
}

/// The admin operations a role may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminOperation {
    Stop,
    Reload,
    Stats,
    /// The full client list (without it, a session sees only clients it may relay to).
    Clients,
}
