//! Putting a new configuration in force while serving: the checks a configuration must
//! pass before it replaces the one in force, and what a live session must become under
//! the new one (its identity re-checked: a user removed, or anonymous sessions no longer
//! accepted, ends the session).

use std::sync::Arc;

use super::token::parse_sha256;
use super::{AuthMethod, Identity, Policy, SecurityConfig, TokenSpec};
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
            if identity.method == AuthMethod::Token {
                // The credentials are the token itself: its entry gone (or its secret
                // changed), the session goes, whoever else still names the user.
                let Some(token) = token_entry(config, identity) else {
                    return Err(format!(
                        "the token of user {user} was removed by a configuration reload"
                    ));
                };
                let mut identity = identity.clone();
                identity.roles = listed.map(|spec| spec.roles.clone()).unwrap_or_default();
                for role in &token.roles {
                    if !identity.roles.contains(role) {
                        identity.roles.push(role.clone());
                    }
                }
                return Ok(identity);
            }
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

/// The entry of the named token `identity` logged in with, if the configuration still
/// lists it, for the same user.
fn token_entry<'a>(config: &'a SecurityConfig, identity: &Identity) -> Option<&'a TokenSpec> {
    let digest = identity.token_sha256?;
    config.tokens.iter().find(|spec| {
        identity.user.as_ref() == Some(&spec.user)
            && parse_sha256(&spec.sha256).is_ok_and(|listed| listed == digest)
    })
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
            token_sha256: None,
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
    fn a_token_login_lasts_as_long_as_its_token_entry() {
        let token = |sha256: String, roles: &[&str]| TokenSpec {
            name: "ci".to_owned(),
            user: "alice".to_owned(),
            sha256,
            roles: roles.iter().map(|role| role.to_string()).collect(),
        };
        let digest = crate::security::token_sha256(b"secret");
        let hex = |digest: [u8; 32]| digest.iter().map(|b| format!("{b:02x}")).collect();
        let mut config = SecurityConfig::default();
        for role in ["reader", "writer"] {
            config.roles.insert(role.to_owned(), RoleSpec::default());
        }
        config.users.push(user("alice", &["reader"]));
        config.tokens.push(token(hex(digest), &["writer"]));
        let session = Identity {
            method: AuthMethod::Token,
            token_sha256: Some(digest),
            ..alice()
        };
        let kept = recheck(&Policy::new(config.clone()), &session).expect("still listed");
        assert_eq!(kept.roles, ["reader", "writer"]);

        // The same name with another secret is another token.
        config.tokens[0] = token(hex(crate::security::token_sha256(b"new")), &["writer"]);
        let reason = recheck(&Policy::new(config.clone()), &session).unwrap_err();
        assert_eq!(
            reason,
            "the token of user alice was removed by a configuration reload"
        );
        config.tokens.clear();
        assert!(recheck(&Policy::new(config), &session).is_err());
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
        let build = |config: &SecurityConfig| {
            Policy::build(
                config.clone(),
                crate::security::limits::LimitSettings::default(),
            )
        };
        let Err(error) = build(&config) else {
            panic!("a role nobody defines is accepted");
        };
        assert!(error.to_string().contains("\"writer\""), "{error}");
        config
            .roles
            .insert("writer".to_owned(), RoleSpec::default());
        assert!(build(&config).is_ok());
    }
}
