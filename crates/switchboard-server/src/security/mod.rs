//! Who may do what. The configuration of identities and roles ([`SecurityConfig`]), the
//! identity a session proves in its handshake ([`Identity`]), and the policy the hub
//! holds while serving: compiled once from the configuration and swapped whole on a
//! reload, so a request sees one consistent version of it.
//!
//! * `config`: users, tokens, JWT keys, the Unix uid map and roles, as configured;
//! * `identity`: who a session is and how it proved it;
//! * `permissions`: what a role allows, and the per-session cache of decisions;
//! * `limits`: what a role may use (rates, counts, sizes).
//!
//! Without any identity configured the hub is open, as it has always been on a local
//! machine: every session is anonymous and may do everything but the admin operations,
//! which need the Unix socket or the admin token.

mod config;
mod identity;
pub mod limits;
pub mod permissions;

use std::collections::HashMap;
use std::sync::Arc;

use self::permissions::{CompiledRole, Grants, PolicyError, SessionPermissions};

pub use self::config::{
    JwtAlgorithm, JwtSpec, RoleSpec, SecurityConfig, TokenSpec, UnixUserSpec, UserSpec,
};
pub use self::identity::{AuthMethod, Identity};

/// The security settings in force, compiled from a [`SecurityConfig`]. Held by the hub
/// behind an atomic pointer: a reload builds a new one and swaps it in.
#[derive(Debug)]
#[allow(dead_code)] // read by authentication and the permission checks
pub(crate) struct Policy {
    pub config: SecurityConfig,
    /// Every configured role, compiled.
    roles: HashMap<String, Arc<CompiledRole>>,
    /// The permissions every open session shares, and those every admin session shares:
    /// they allow everything, never consult a cache, and cost a session one pointer.
    open: Arc<SessionPermissions>,
    admin: Arc<SessionPermissions>,
}

/// Checks the permission rules of a security configuration: every pattern parses,
/// `{user}` stands only as a whole token of a channel, group or user pattern, and the
/// anonymous role and every user's roles are configured. The first problem is the error.
pub fn validate(config: &SecurityConfig) -> Result<(), PolicyError> {
    for (name, spec) in &config.roles {
        CompiledRole::compile(name, spec)?;
    }
    if let Some(role) = &config.anonymous_role
        && !config.roles.contains_key(role)
    {
        return Err(PolicyError::UnknownAnonymousRole(role.clone()));
    }
    for user in &config.users {
        if let Some(role) = user.roles.iter().find(|r| !config.roles.contains_key(*r)) {
            return Err(PolicyError::UnknownUserRole {
                user: user.name.clone(),
                role: role.clone(),
            });
        }
    }
    Ok(())
}

#[allow(dead_code)] // read by authentication and the permission checks
impl Policy {
    /// Compiles the roles. A role that does not compile (the server validates the
    /// configuration before it starts, see [`validate`]) stands as one that allows
    /// nothing, so that a bad rule never widens what a session may do.
    pub fn new(config: SecurityConfig) -> Policy {
        let roles = config
            .roles
            .iter()
            .map(|(name, spec)| {
                let role = CompiledRole::compile(name, spec).unwrap_or_else(|error| {
                    tracing::error!(target: crate::log::ERROR, %error, "role allows nothing");
                    CompiledRole::nothing()
                });
                (name.clone(), Arc::new(role))
            })
            .collect();
        Policy {
            config,
            roles,
            open: SessionPermissions::new(Grants::Everything { admin: false }, None),
            admin: SessionPermissions::new(Grants::Everything { admin: true }, None),
        }
    }

    /// The permissions of a session of `identity`: shared by all sessions without a
    /// user whose grants allow everything, its own (with its own cache) otherwise.
    pub fn permissions(&self, identity: &Identity) -> Arc<SessionPermissions> {
        let user = identity.user.as_deref();
        match (self.grants(identity), user) {
            (Grants::Everything { admin: true }, None) => self.admin.clone(),
            (Grants::Everything { admin: false }, None) => self.open.clone(),
            (grants, user) => SessionPermissions::new(grants, user),
        }
    }

    /// Whether any role is configured; without one, every session may do everything
    /// (admin operations aside) and nothing is checked.
    pub fn has_roles(&self) -> bool {
        !self.roles.is_empty()
    }

    /// What `identity` may do under this policy. Admin identities, open sessions, and
    /// every session of a hub without any role (identities alone restrict who may
    /// connect, not what they may do) get grants that answer without a lookup.
    pub fn grants(&self, identity: &Identity) -> Grants {
        if identity.admin {
            return Grants::Everything { admin: true };
        }
        if identity.method == AuthMethod::Open || !self.has_roles() {
            return Grants::Everything { admin: false };
        }
        // A role that is not configured grants nothing.
        let roles = identity
            .roles
            .iter()
            .filter_map(|name| self.roles.get(name).cloned())
            .collect();
        Grants::of_roles(roles, identity.user.as_deref())
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
