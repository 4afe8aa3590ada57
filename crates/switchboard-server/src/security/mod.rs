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
//! * `reload`: putting a new configuration in force while serving;
//! * `authenticate`: credentials and connection facts turned into an identity;
//! * `password`, `token`, `jwt`: the three kinds of credentials;
//! * `throttle`: failed logins slowed and refused per address.
//!
//! Without any identity configured the hub is open, as it has always been on a local
//! machine: every session is anonymous and may do everything but the admin operations,
//! which need the Unix socket or the admin token.

pub(crate) mod addresses;
pub(crate) mod authenticate;
mod config;
mod identity;
mod jwt;
pub mod limits;
mod password;
pub mod permissions;
pub(crate) mod reload;
pub(crate) mod throttle;
mod token;
pub(crate) mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use self::limits::{LimitSettings, Limits};
use self::permissions::{CompiledRole, Grants, PolicyError, SessionPermissions};

pub use self::authenticate::SecurityError;
pub use self::config::{
    JwtAlgorithm, JwtSpec, RoleSpec, SecurityConfig, TokenSpec, UnixUserSpec, UserSpec,
};
pub use self::identity::{AuthMethod, Identity};
pub use self::password::{PasswordError, check_password_hash, hash_password};
pub use self::reload::ReloadError;
pub use self::throttle::ThrottleSpec;
pub use self::token::{parse_sha256, token_sha256};

use self::authenticate::Authenticator;

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
    /// Every configured role, compiled.
    roles: HashMap<String, Arc<CompiledRole>>,
    /// The permissions every open session shares, and those every admin session shares:
    /// they allow everything, never consult a cache, and cost a session one pointer.
    open: Arc<SessionPermissions>,
    admin: Arc<SessionPermissions>,
    /// The identities, checked and compiled.
    pub auth: Authenticator,
}

/// Checks the permission rules of a security configuration: every pattern parses,
/// `{user}` stands only as a whole token of a channel, group or user pattern, and the
/// anonymous role and every user's roles are configured. The first problem is the error.
pub fn validate(config: &SecurityConfig) -> Result<(), PolicyError> {
    compile_roles(config).map(drop)
}

/// Every role of `config`, compiled, once [`validate`]'s checks pass.
fn compile_roles(
    config: &SecurityConfig,
) -> Result<HashMap<String, Arc<CompiledRole>>, PolicyError> {
    let roles = config
        .roles
        .iter()
        .map(|(name, spec)| Ok((name.clone(), Arc::new(CompiledRole::compile(name, spec)?))))
        .collect::<Result<_, PolicyError>>()?;
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
    Ok(roles)
}

#[allow(dead_code)] // read by authentication and the permission checks
impl Policy {
    /// The policy of `config` with the default server-wide limits; for tests, whose
    /// configurations are valid.
    #[cfg(test)]
    pub fn new(config: SecurityConfig) -> Policy {
        match Policy::build(config, LimitSettings::default()) {
            Ok(policy) => policy,
            Err(error) => panic!("a test configuration is not valid: {error}"),
        }
    }

    /// Compiles `config` with these server-wide limits, or says what is wrong with it:
    /// its role rules first, then its identities (the JWT key files are read here, and
    /// every role a token names must exist). Start-up and every reload build the policy
    /// they put in force with this, once.
    pub fn build(config: SecurityConfig, limits: LimitSettings) -> Result<Policy, ReloadError> {
        let invalid = |error: &dyn std::fmt::Display| ReloadError::Invalid(error.to_string());
        let roles = compile_roles(&config).map_err(|error| invalid(&error))?;
        let auth = Authenticator::new(&config).map_err(|error| invalid(&error))?;
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
        Ok(Policy {
            config,
            auth,
            limits,
            role_limits,
            no_role_limits,
            roles,
            open: SessionPermissions::new(Grants::Everything { admin: false }, None),
            admin: SessionPermissions::new(Grants::Everything { admin: true }, None),
        })
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
                token_sha256: None,
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
