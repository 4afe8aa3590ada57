//! What a role allows: allow and deny lists of subject patterns per operation, as
//! configured (the types below), compiled (`pattern`: rule patterns and the subset rule;
//! `grants`: a role's rules and an identity's roles together) and decided per session
//! with a bounded cache (`cache`). docs/SECURITY.md (permissions) describes the semantics.

mod cache;
mod grants;
mod pattern;

use serde::{Deserialize, Deserializer, Serialize};

pub use self::cache::{CACHE_CAPACITY, SessionPermissions};
pub use self::grants::{CompiledRole, Coverage, Grants, Operation, PolicyError};
pub use self::pattern::{RulePattern, RulePatternError, RuleToken, USER_PLACEHOLDER};

/// Allow and deny lists of patterns in the hub's wildcard syntax (`*`, `>`, `#tag`),
/// `{user}` standing for the session's user. Deny wins.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Rule {
    /// Whether it names no pattern (`--check` leaves it out).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

impl ChannelRule {
    /// Whether it names no pattern and no cap.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.max_history.is_none()
            && self.max_body.is_none()
    }
}

impl GroupRules {
    /// Whether none of its rules names a pattern.
    pub fn is_empty(&self) -> bool {
        [&self.create, &self.join, &self.post, &self.read]
            .iter()
            .all(|rule| rule.is_empty())
    }
}

/// `create_channel`: the channels a role may create, and caps on their options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// Most history a channel it creates may keep.
    #[serde(default)]
    pub max_history: Option<u64>,
    /// Largest body a channel it creates may take, in bytes (a number, or a size such
    /// as `"1MiB"`).
    #[serde(default, deserialize_with = "size")]
    pub max_body: Option<u64>,
}

/// `groups`: the groups a role may create, join, post to and read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminOperation {
    Stop,
    Reload,
    Stats,
    /// The full client list (without it, a session sees only clients it may relay to).
    Clients,
}

impl AdminOperation {
    pub fn name(self) -> &'static str {
        match self {
            AdminOperation::Stop => "stop",
            AdminOperation::Reload => "reload",
            AdminOperation::Stats => "stats",
            AdminOperation::Clients => "clients",
        }
    }
}

/// A size: a number of bytes, or a string with a unit (`"1MiB"`, `"500KB"`).
fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(bytes) => Ok(Some(bytes)),
        Size::Text(text) => match text.parse::<crate::storage::DiskReserve>() {
            Ok(crate::storage::DiskReserve::Bytes(bytes)) => Ok(Some(bytes)),
            Ok(_) => Err(serde::de::Error::custom(format!(
                "{text:?} is not a size in bytes"
            ))),
            Err(error) => Err(serde::de::Error::custom(error)),
        },
    }
}

#[cfg(test)]
mod tests;
