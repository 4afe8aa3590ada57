//! Putting a new configuration in force while serving: the checks a configuration must
//! pass before it replaces the one in force, and what a live session must become under
//! the new one (its identity re-checked: a user removed, or anonymous sessions no longer
//! accepted, ends the session).

use std::sync::Arc;

use super::{AuthMethod, Identity, Policy, SecurityConfig};
use crate::config::ServerConfig;

/// Where a reload gets the configuration: the embedding application's way of reading it
/// again (the binary re-reads the file it was started with).
pub type ReloadSource = Arc<dyn Fn() -> Result<ServerConfig, String> + Send + Sync>;

/// Why a reload was refused; the configuration in force stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The configuration could not be read or parsed.
    #[error("the configuration cannot be read: {0}")]
    Read(String),
    /// It was read but is not consistent.
    #[error("the configuration is not valid: {0}")]
    Invalid(String),
    /// The server was given no way to read its configuration again.
    #[error("this server has no configuration file to reload")]
    NoSource,
    /// A TLS listener's certificate, key or CA file could not be loaded.
    #[error("{0}")]
    Tls(String),
}

/// Checks what a policy needs of a configuration: its rules compile and every role it
/// names exists.
pub(crate) fn validate(config: &SecurityConfig) -> Result<(), ReloadError> {
    super::validate(config).map_err(|error| ReloadError::Invalid(error.to_string()))?;
    config
        .check()
        .map_err(|error| ReloadError::Invalid(error.to_string()))?;
    let known = |role: &String| config.roles.contains_key(role);
    let named = config
        .users
        .iter()
        .flat_map(|user| user.roles.iter().map(move |role| (&user.name, role)))
        .chain(
            config
                .tokens
                .iter()
                .flat_map(|token| token.roles.iter().map(move |role| (&token.name, role))),
        );
    for (holder, role) in named {
        if !known(role) {
            return Err(ReloadError::Invalid(format!(
                "{holder} has the role {role}, which no [roles.{role}] defines"
            )));
        }
    }
    if let Some(role) = &config.anonymous_role
        && !known(role)
    {
        return Err(ReloadError::Invalid(format!(
            "anonymous_role is {role}, which no [roles.{role}] defines"
        )));
    }
    Ok(())
}

/// The identity a live session keeps under a new policy, or why it must end.
pub(crate) fn recheck(policy: &Policy, identity: &Identity) -> Result<Identity, String> {
    if identity.admin && identity.user.is_none() {
        // The Unix socket's own uid or the admin token: not configured, not removable.
        return Ok(identity.clone());
    }
    let config = &policy.config;
    match &identity.user {
        Some(user) => {
            let listed = config.users.iter().find(|spec| &spec.name == user);
            let known = match identity.method {
                // A password or a certificate logs in only the users of `[[users]]`:
                // the entry gone, such a session has nothing left to stand on.
                AuthMethod::Password | AuthMethod::Certificate => listed.is_some(),
                _ => {
                    listed.is_some()
                        || config.tokens.iter().any(|token| &token.user == user)
                        || config.unix_users.iter().any(|unix| &unix.user == user)
                        || (identity.method == AuthMethod::Jwt && config.jwt.is_some())
                }
            };
            if !known {
                return Err(format!("user {user} was removed by a configuration reload"));
            }
            let mut identity = identity.clone();
            // Roles that come from the user's own entry follow it; a token's or a JWT's
            // were granted with the credentials and stay.
            if let (
                Some(spec),
                AuthMethod::Password | AuthMethod::Certificate | AuthMethod::UnixPeer,
            ) = (listed, identity.method)
            {
                identity.roles = spec.roles.clone();
            }
            Ok(identity)
        }
        None => {
            if policy.requires_identity() && config.anonymous_role.is_none() {
                return Err(
                    "sessions without credentials are no longer accepted (configuration reloaded)"
                        .to_owned(),
                );
            }
            Ok(policy.anonymous_identity(identity.admin))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{RoleSpec, UserSpec};

    fn user(name: &str, roles: &[&str]) -> UserSpec {
        UserSpec {
            name: name.to_owned(),
            password: None,
            roles: roles.iter().map(|role| role.to_string()).collect(),
        }
    }

    fn alice() -> Identity {
        Identity {
            user: Some("alice".to_owned()),
            roles: vec!["old".to_owned()],
            method: AuthMethod::Password,
            admin: false,
            expires_at_us: None,
        }
    }

    #[test]
    fn a_removed_user_ends_and_a_kept_one_follows_its_roles() {
        let mut config = SecurityConfig::default();
        config
            .roles
            .insert("writer".to_owned(), RoleSpec::default());
        config.users.push(user("alice", &["writer"]));
        let policy = Policy::new(config.clone());
        let kept = recheck(&policy, &alice()).expect("alice is still configured");
        assert_eq!(kept.roles, ["writer"]);

        config.users.clear();
        config.users.push(user("bob", &[]));
        let reason = recheck(&Policy::new(config), &alice()).unwrap_err();
        assert_eq!(reason, "user alice was removed by a configuration reload");
    }

    #[test]
    fn a_certificate_login_follows_its_users_entry() {
        let mut config = SecurityConfig::default();
        config
            .roles
            .insert("writer".to_owned(), RoleSpec::default());
        config.users.push(user("alice", &["writer"]));
        config.tokens.push(crate::security::TokenSpec {
            name: "ci".to_owned(),
            user: "alice".to_owned(),
            sha256: "00".repeat(32),
            roles: Vec::new(),
        });
        let certificate = Identity {
            method: AuthMethod::Certificate,
            ..alice()
        };
        let kept = recheck(&Policy::new(config.clone()), &certificate).expect("still listed");
        assert_eq!(kept.roles, ["writer"]);

        // A token for alice does not keep a session her certificate opened.
        config.users.clear();
        let reason = recheck(&Policy::new(config), &certificate).unwrap_err();
        assert_eq!(reason, "user alice was removed by a configuration reload");
    }

    #[test]
    fn anonymous_sessions_end_once_identities_are_required_without_an_anonymous_role() {
        let open = Identity::open(false);
        let mut config = SecurityConfig::default();
        assert!(recheck(&Policy::new(config.clone()), &open).is_ok());
        config.users.push(user("bob", &[]));
        assert!(recheck(&Policy::new(config.clone()), &open).is_err());
        config.roles.insert("guest".to_owned(), RoleSpec::default());
        config.anonymous_role = Some("guest".to_owned());
        let guest = recheck(&Policy::new(config), &open).expect("guests are accepted");
        assert_eq!(guest.roles, ["guest"]);
    }

    #[test]
    fn a_role_nobody_defines_is_refused() {
        let mut config = SecurityConfig::default();
        config.users.push(user("alice", &["writer"]));
        let error = validate(&config).unwrap_err();
        assert!(error.to_string().contains("\"writer\""), "{error}");
        config
            .roles
            .insert("writer".to_owned(), RoleSpec::default());
        assert_eq!(validate(&config), Ok(()));
    }
}
