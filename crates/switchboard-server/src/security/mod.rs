//! Who may do what. The configuration of identities and roles ([`SecurityConfig`]), the
//! identity a session proves in its handshake ([`Identity`]), and the policy the hub
//! holds while serving: compiled once from the configuration and swapped whole on a
//! reload, so a request sees one consistent version of it.
//!
//! * `config`: users, tokens, JWT keys, the Unix uid map and roles, as configured;
//! * `identity`: who a session is and how it proved it;
//! * `permissions`: what a role allows, and the per-session cache of decisions;
//! * `limits`: what a role may use (rates, counts, sizes);
//! * `usage`: what each user uses now, counted against those limits;
//! * `addresses`: connections per IP address, checked before the handshake;
//! * `reload`: putting a new configuration in force while serving.
//!
//! Without any identity configured the hub is open, as it has always been on a local
//! machine: every session is anonymous and may do everything but the admin operations,
//! which need the Unix socket or the admin token.

pub(crate) mod addresses;
mod config;
mod identity;
pub mod limits;
pub mod permissions;
pub(crate) mod reload;
pub(crate) mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use self::limits::{LimitSettings, Limits};

pub use self::config::{
    JwtAlgorithm, JwtSpec, RoleSpec, SecurityConfig, TokenSpec, UnixUserSpec, UserSpec,
};
pub use self::identity::{AuthMethod, Identity};
pub use self::reload::ReloadError;

/// The security settings in force, compiled from a [`SecurityConfig`]. Held by the hub
/// behind an atomic pointer: a reload builds a new one and swaps it in.
#[derive(Debug)]
#[allow(dead_code)] // read by authentication and the permission checks
pub(crate) struct Policy {
    pub config: SecurityConfig,
    /// Per-address limits and those of sessions without a role.
    pub limits: LimitSettings,
    /// Each role's limits, resolved against the defaults.
    role_limits: HashMap<String, Limits>,
    /// The limits of sessions without a role.
    no_role_limits: Limits,
}

#[allow(dead_code)] // read by authentication and the permission checks
impl Policy {
    pub fn new(config: SecurityConfig) -> Policy {
        Policy::with_limits(config, LimitSettings::default())
    }

    /// The policy of `config` with these server-wide limits.
    pub fn with_limits(config: SecurityConfig, limits: LimitSettings) -> Policy {
        let role_limits = config
            .roles
            .iter()
            .map(|(name, role)| {
                (
                    name.clone(),
                    Limits::resolve(&role.limits, &Limits::ROLE_DEFAULTS),
                )
            })
            .collect();
        let no_role_limits = Limits::resolve(&limits.no_role, &Limits::NONE);
        Policy {
            config,
            limits,
            role_limits,
            no_role_limits,
        }
    }

    /// The limits of a session with this identity, the most generous of its roles';
    /// `None` if nothing limits it (an admin, or no role on a server that sets no
    /// limits for sessions without one).
    pub fn session_limits(&self, identity: &Identity) -> Option<Limits> {
        if identity.admin {
            return None;
        }
        let limits = if identity.roles.is_empty() {
            self.no_role_limits
        } else {
            identity
                .roles
                .iter()
                .map(|role| {
                    self.role_limits
                        .get(role)
                        .copied()
                        .unwrap_or(Limits::ROLE_DEFAULTS)
                })
                .reduce(|a, b| a.most_generous(&b))
                .unwrap_or(Limits::ROLE_DEFAULTS)
        };
        (!limits.is_unlimited()).then_some(limits)
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

pub(crate) fn shared_policy(policy: Policy) -> SharedPolicy {
    arc_swap::ArcSwap::new(Arc::new(policy))
}
