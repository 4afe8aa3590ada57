//! The security configuration as written in the config file (`[auth]`, `[[users]]`,
//! `[[tokens]]`, `[jwt]`, `[[unix_users]]`, `[roles.NAME]`), deserialized as is. Paths
//! are as given; the binary resolves relative ones before handing the config over.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::limits::LimitSpec;
use super::permissions::{AdminOperation, ChannelRule, GroupRules, Rule};

/// Every identity and role the server knows. The default has none: an open hub.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Users who log in with a password (or are named by a token, a certificate or a
    /// Unix uid).
    #[serde(default)]
    pub users: Vec<UserSpec>,
    /// Named bearer tokens, kept as their SHA-256.
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    /// How JSON Web Tokens are verified, if they are accepted.
    #[serde(default)]
    pub jwt: Option<JwtSpec>,
    /// Unix socket peers, by uid, and the user each one is.
    #[serde(default)]
    pub unix_users: Vec<UnixUserSpec>,
    /// Roles by name.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSpec>,
    /// The role of sessions that present no credentials. `None`: once identities are
    /// configured, such sessions are refused.
    #[serde(default)]
    pub anonymous_role: Option<String>,
    /// How failed logins are slowed and refused.
    #[serde(default)]
    pub throttle: super::ThrottleSpec,
}

impl SecurityConfig {
    /// Checks the identities: valid names, argon2id hashes, token digests, no user or
    /// token twice, roles that exist, readable and valid JWT key files.
    pub fn check(&self) -> Result<(), super::SecurityError> {
        super::authenticate::Authenticator::new(self).map(|_| ())
    }

    /// Whether any way of logging in is configured.
    pub fn has_identities(&self) -> bool {
        !self.users.is_empty()
            || !self.tokens.is_empty()
            || self.jwt.is_some()
            || !self.unix_users.is_empty()
    }
}

/// `[[users]]`: a user, with an argon2id password hash if it logs in with a password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    /// A PHC string (`$argon2id$v=19$...`), as `switchboard passwd` prints it.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[[tokens]]`: a bearer token, known only by its SHA-256, that logs in as `user`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// A label for logs and stats; never the token itself.
    pub name: String,
    /// The user the token logs in as.
    pub user: String,
    /// SHA-256 of the token, in hex.
    pub sha256: String,
    /// Roles on top of the user's own.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[jwt]`: how tokens from an identity provider are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    pub algorithm: JwtAlgorithm,
    /// HS256: a file holding the shared secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// RS256 / ES256: a PEM file holding the public key.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`, if set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim naming the user (default `sub`).
    #[serde(default)]
    pub user_claim: Option<String>,
    /// The claim listing roles (default `roles`).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 30).
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
}

/// The signature algorithms accepted for JWTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// `[[unix_users]]`: a Unix socket peer's uid and the user it is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixUserSpec {
    pub uid: u32,
    pub user: String,
}

/// `[roles.NAME]`: what a role may do and use. Every list is empty by default: a role
/// allows nothing it does not name (but its sessions may be relayed to).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Channels it may publish to.
    #[serde(default, skip_serializing_if = "Rule::is_empty")]
    pub publish: Rule,
    /// Channels and hashtags it may subscribe to.
    #[serde(default, skip_serializing_if = "Rule::is_empty")]
    pub subscribe: Rule,
    /// Channels whose history it may read (get, history, replay).
    #[serde(default, skip_serializing_if = "Rule::is_empty")]
    pub history: Rule,
    /// Users it may relay to.
    #[serde(default, skip_serializing_if = "Rule::is_empty")]
    pub relay: Rule,
    /// Whether its sessions may be relayed to.
    #[serde(default = "yes")]
    pub receive_relay: bool,
    /// Channels it may create, and the caps on what it may ask for them.
    #[serde(default, skip_serializing_if = "ChannelRule::is_empty")]
    pub create_channel: ChannelRule,
    #[serde(default, skip_serializing_if = "GroupRules::is_empty")]
    pub groups: GroupRules,
    /// Admin operations it may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin: Vec<AdminOperation>,
    #[serde(default)]
    pub limits: LimitSpec,
}

fn yes() -> bool {
    true
}

impl Default for RoleSpec {
    /// What an empty `[roles.NAME]` table gives.
    fn default() -> RoleSpec {
        RoleSpec {
            publish: Rule::default(),
            subscribe: Rule::default(),
            history: Rule::default(),
            relay: Rule::default(),
            receive_relay: yes(),
            create_channel: ChannelRule::default(),
            groups: GroupRules::default(),
            admin: Vec::new(),
            limits: LimitSpec::default(),
        }
    }
}
