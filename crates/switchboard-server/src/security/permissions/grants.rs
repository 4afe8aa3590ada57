//! Compiled grants: a role's rules parsed once, and what one identity's roles together
//! allow. A subject is allowed when an allow pattern of one of the roles matches it and
//! no deny pattern of any of the roles does (deny wins across roles). An open hub's
//! sessions and admin identities hold [`Grants::Everything`], which answers without
//! looking at a single pattern.

use std::sync::Arc;

use switchboard_proto::subject::{Pattern, PatternToken};

use super::pattern::{RulePattern, RulePatternError, usable_user};
use super::{AdminOperation, ChannelRule, Rule};
use crate::security::RoleSpec;

/// An operation governed by allow and deny patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Publish,
    Subscribe,
    History,
    Relay,
    CreateChannel,
    CreateGroup,
    JoinGroup,
    PostToGroup,
    ReadGroup,
}

impl Operation {
    const COUNT: usize = 9;

    fn index(self) -> usize {
        self as usize
    }

    /// How a refusal names the operation: "`publish to` chat.admin is not permitted".
    pub fn describe(self) -> &'static str {
        match self {
            Operation::Publish => "publish to",
            Operation::Subscribe => "subscribe to",
            Operation::History => "read the history of",
            Operation::Relay => "relay to",
            Operation::CreateChannel => "create channel",
            Operation::CreateGroup => "create group",
            Operation::JoinGroup => "join group",
            Operation::PostToGroup => "post to group",
            Operation::ReadGroup => "read group",
        }
    }

    /// The configuration key the operation's rule is under, for errors.
    fn key(self) -> &'static str {
        match self {
            Operation::Publish => "publish",
            Operation::Subscribe => "subscribe",
            Operation::History => "history",
            Operation::Relay => "relay",
            Operation::CreateChannel => "create_channel",
            Operation::CreateGroup => "groups.create",
            Operation::JoinGroup => "groups.join",
            Operation::PostToGroup => "groups.post",
            Operation::ReadGroup => "groups.read",
        }
    }
}

/// Why a role could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("role {role:?}, {key}.{list}: {error}")]
    Pattern {
        role: String,
        key: &'static str,
        list: &'static str,
        error: RulePatternError,
    },
    #[error("role {role:?}, {key}: {{user}} stands for a user, not a hashtag")]
    UserInTagRule { role: String, key: &'static str },
    #[error("anonymous_role {0:?} is not a configured role (add a [roles.{0}] table)")]
    UnknownAnonymousRole(String),
    #[error("user {user:?} has the role {role:?}, which is not configured")]
    UnknownUserRole { user: String, role: String },
}

/// One operation's patterns.
#[derive(Debug, Default)]
struct CompiledRule {
    allow: Vec<RulePattern>,
    deny: Vec<RulePattern>,
}

impl CompiledRule {
    fn compile(
        role: &str,
        operation: Operation,
        allow: &[String],
        deny: &[String],
    ) -> Result<CompiledRule, PolicyError> {
        let parse = |list: &'static str, texts: &[String]| {
            texts
                .iter()
                .map(|text| {
                    RulePattern::parse(text).map_err(|error| PolicyError::Pattern {
                        role: role.to_owned(),
                        key: operation.key(),
                        list,
                        error,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(CompiledRule {
            allow: parse("allow", allow)?,
            deny: parse("deny", deny)?,
        })
    }
}

/// A role's rules, compiled once per policy and shared by every session holding it.
#[derive(Debug)]
pub struct CompiledRole {
    rules: [CompiledRule; Operation::COUNT],
    receive_relay: bool,
    max_history: Option<u64>,
    max_body: Option<u64>,
    admin: Vec<AdminOperation>,
}

impl CompiledRole {
    pub fn compile(name: &str, spec: &RoleSpec) -> Result<CompiledRole, PolicyError> {
        let rule = |operation: Operation, rule: &Rule| {
            CompiledRule::compile(name, operation, &rule.allow, &rule.deny)
        };
        let ChannelRule {
            allow,
            deny,
            max_history,
            max_body,
        } = &spec.create_channel;
        let rules = [
            rule(Operation::Publish, &spec.publish)?,
            rule(Operation::Subscribe, &spec.subscribe)?,
            rule(Operation::History, &spec.history)?,
            rule(Operation::Relay, &spec.relay)?,
            CompiledRule::compile(name, Operation::CreateChannel, allow, deny)?,
            rule(Operation::CreateGroup, &spec.groups.create)?,
            rule(Operation::JoinGroup, &spec.groups.join)?,
            rule(Operation::PostToGroup, &spec.groups.post)?,
            rule(Operation::ReadGroup, &spec.groups.read)?,
        ];
        Ok(CompiledRole {
            rules,
            receive_relay: spec.receive_relay,
            max_history: *max_history,
            max_body: *max_body,
            admin: spec.admin.clone(),
        })
    }

    fn rule(&self, operation: Operation) -> &CompiledRule {
        &self.rules[operation.index()]
    }
}

/// What a subscription pattern may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every subject it can match is allowed.
    Allowed,
    /// It is allowed, but some subjects it matches are denied (or, for a hashtag, its
    /// messages come from channels that must each be allowed): deliveries are filtered.
    Filtered,
    Denied,
}

/// The roles of one identity, with its user as `{user}` stands for it.
#[derive(Debug)]
pub struct RoleSet {
    roles: Vec<Arc<CompiledRole>>,
    user: Option<Box<str>>,
}

/// What one identity may do.
#[derive(Debug)]
pub enum Grants {
    /// Every subject and operation: an admin identity (`admin: true`), or a session of an
    /// open hub, which may do everything but stop or reload the server.
    Everything { admin: bool },
    /// What its roles allow.
    Roles(RoleSet),
}

impl Grants {
    /// The grants of an identity with `roles` (unknown ones grant nothing) and `user`.
    pub fn of_roles(roles: Vec<Arc<CompiledRole>>, user: Option<&str>) -> Grants {
        Grants::Roles(RoleSet {
            roles,
            user: usable_user(user).map(Box::from),
        })
    }

    /// Whether the grants allow everything, without a lookup.
    pub fn is_everything(&self) -> bool {
        matches!(self, Grants::Everything { .. })
    }

    /// Whether `operation` on the concrete subject `name` is allowed.
    pub fn allows(&self, operation: Operation, name: &str) -> bool {
        let Grants::Roles(set) = self else {
            return true;
        };
        let user = set.user.as_deref();
        let rules = set.roles.iter().map(|role| role.rule(operation));
        let mut allowed = false;
        for rule in rules {
            if rule.deny.iter().any(|p| p.matches(name, user)) {
                return false;
            }
            allowed = allowed || rule.allow.iter().any(|p| p.matches(name, user));
        }
        allowed
    }

    /// Whether `operation` (subscribe or history) on the hashtag `tag` is allowed.
    pub fn allows_tag(&self, operation: Operation, tag: &str) -> bool {
        let Grants::Roles(set) = self else {
            return true;
        };
        let rules = set.roles.iter().map(|role| role.rule(operation));
        let mut allowed = false;
        for rule in rules {
            if rule.deny.iter().any(|p| p.matches_tag(tag)) {
                return false;
            }
            allowed = allowed || rule.allow.iter().any(|p| p.matches_tag(tag));
        }
        allowed
    }

    /// What a subscription (or replay, with [`Operation::History`]) to `pattern` may
    /// receive: a wildcard must be covered whole by one allow pattern; if it merely
    /// overlaps a deny pattern it is filtered, and if a deny pattern covers it whole, it
    /// is denied. A hashtag must be allowed by name (`#tag` or `#*`), and its messages
    /// are always filtered by their channel.
    pub fn coverage(&self, operation: Operation, pattern: &Pattern) -> Coverage {
        let Grants::Roles(set) = self else {
            return Coverage::Allowed;
        };
        match pattern {
            Pattern::Exact(name) => {
                if self.allows(operation, name) {
                    Coverage::Allowed
                } else {
                    Coverage::Denied
                }
            }
            Pattern::Tag(tag) => {
                if self.allows_tag(operation, tag) {
                    Coverage::Filtered
                } else {
                    Coverage::Denied
                }
            }
            Pattern::Wildcard(tokens) => set.wildcard_coverage(operation, tokens),
        }
    }

    /// Whether the admin operation is allowed.
    pub fn may_admin(&self, operation: AdminOperation) -> bool {
        match self {
            Grants::Everything { admin: true } => true,
            // An open hub keeps its old rules: stopping and reloading need an admin
            // session, statistics and the client list are for everyone.
            Grants::Everything { admin: false } => {
                matches!(operation, AdminOperation::Stats | AdminOperation::Clients)
            }
            Grants::Roles(set) => set.roles.iter().any(|r| r.admin.contains(&operation)),
        }
    }

    /// Whether relays may reach sessions of this identity: every one of its roles must
    /// say so (a role with `receive_relay = false` makes its holders unreachable).
    pub fn receives_relay(&self) -> bool {
        match self {
            Grants::Everything { .. } => true,
            Grants::Roles(set) => set.roles.iter().all(|role| role.receive_relay),
        }
    }

    /// The caps on a channel `name` created with these grants: `(max_history,
    /// max_body)`, the most generous among the roles that allow creating it (`None`: no
    /// cap).
    pub fn channel_caps(&self, name: &str) -> (Option<u64>, Option<u64>) {
        let Grants::Roles(set) = self else {
            return (None, None);
        };
        let user = set.user.as_deref();
        let mut caps: Option<(Option<u64>, Option<u64>)> = None;
        let wider = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.max(b));
        for role in &set.roles {
            let rule = role.rule(Operation::CreateChannel);
            if rule.allow.iter().any(|p| p.matches(name, user)) {
                caps = Some(match caps {
                    None => (role.max_history, role.max_body),
                    Some((history, body)) => {
                        (wider(history, role.max_history), wider(body, role.max_body))
                    }
                });
            }
        }
        caps.unwrap_or((None, None))
    }
}

impl RoleSet {
    fn wildcard_coverage(&self, operation: Operation, tokens: &[PatternToken]) -> Coverage {
        let user = self.user.as_deref();
        let rules: Vec<&CompiledRule> = self.roles.iter().map(|r| r.rule(operation)).collect();
        if !rules
            .iter()
            .any(|rule| rule.allow.iter().any(|p| p.covers(tokens, user)))
        {
            return Coverage::Denied;
        }
        let mut overlapping = false;
        for rule in &rules {
            for deny in &rule.deny {
                if deny.covers(tokens, user) {
                    return Coverage::Denied;
                }
                overlapping = overlapping || deny.overlaps(tokens, user);
            }
        }
        if overlapping {
            Coverage::Filtered
        } else {
            Coverage::Allowed
        }
    }
}
