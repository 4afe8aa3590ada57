//! Who may do what. The configuration of identities and roles ([`SecurityConfig`]), the
//! identity a session proves in its handshake ([`Identity`]), and the policy the hub
//! holds while serving: compiled once from the configuration and swapped whole on a
//! reload, so a request sees one consistent version of it.
//!
//! * `config`: users, tokens, JWT keys, the Unix uid map and roles, as configured;
//! * `identity`: who a session is and how it proved it;
//! * `permissions`: what a role allows, and the per-session cache of decisions;
//! * `limits`: what a role may use (rates, counts, sizes);
//! * `authenticate`: credentials and connection facts turned into an identity;
//! * `password`, `token`, `jwt`: the three kinds of credentials;
//! * `throttle`: failed logins slowed and refused per address.
//!
//! Without any identity configured the hub is open, as it has always been on a local
//! machine: every session is anonymous and may do everything but the admin operations,
//! which need the Unix socket or the admin token.

pub(crate) mod authenticate;
mod config;
mod identity;
mod jwt;
pub mod limits;
mod password;
pub mod permissions;
pub(crate) mod throttle;
mod token;

use std::sync::Arc;

pub use self::authenticate::SecurityError;
pub use self::config::{
    JwtAlgorithm, JwtSpec, RoleSpec, SecurityConfig, TokenSpec, UnixUserSpec, UserSpec,
};
pub use self::identity::{AuthMethod, Identity};
pub use self::password::{PasswordError, check_password_hash, hash_password};
pub use self::throttle::ThrottleSpec;
pub use self::token::{parse_sha256, token_sha256};

use self::authenticate::Authenticator;

/// The security settings in force, compiled from a [`SecurityConfig`]. Held by the hub
/// behind an atomic pointer: a reload builds a new one and swaps it in.
#[derive(Debug)]
#[allow(dead_code)] // read by authentication and the permission checks
pub(crate) struct Policy {
    pub config: SecurityConfig,
    /// The identities, checked and compiled.
    pub auth: Authenticator,
}

#[allow(dead_code)] // read by authentication and the permission checks
impl Policy {
    /// Compiles the configuration. One that does not check out (see
    /// [`SecurityConfig::check`]) is logged and logs nobody in with credentials;
    /// the server refuses to start with it.
    pub fn new(config: SecurityConfig) -> Policy {
        let auth = Authenticator::new(&config).unwrap_or_else(|error| {
            tracing::error!(target: crate::log::ERROR, %error, "security configuration refused");
            Authenticator::default()
        });
        Policy { config, auth }
    }

    /// Whether any way of logging in is configured; if not, the hub is open.
    pub fn requires_identity(&self) -> bool {
        self.config.has_identities()
    }

    /// The identity of a session that presented no credentials: under the anonymous
    /// role if one is configured, else open.
    pub fn anonymous_identity(&self, admin: bool) -> Identity {
        match &self.config.anonymous_role {
            Some(role) => Identity {
                user: None,
                roles: vec![role.clone()],
                method: AuthMethod::Anonymous,
                admin,
                expires_at_us: None,
            },
            None => Identity::open(admin),
        }
    }
}

/// The policy the hub serves with, replaced whole by a reload.
pub(crate) type SharedPolicy = arc_swap::ArcSwap<Policy>;

pub(crate) fn shared_policy(config: SecurityConfig) -> SharedPolicy {
    arc_swap::ArcSwap::new(Arc::new(Policy::new(config)))
}
