//! Authentication: the credentials of a SESSION_INIT and the facts of its connection
//! (the Unix peer's uid, a TLS client certificate's names) turned into the session's
//! [`Identity`], or refused.
//!
//! On an open hub (no identity configured) every session is anonymous, as it has always
//! been; only the admin token is checked, and a wrong one is refused. Once identities
//! are configured, a session logs in with one kind of credentials (a bearer token, a
//! user and password, a JWT) or is recognised by its connection (a mapped Unix uid, a
//! client certificate naming a user); with none it gets the anonymous role if there is
//! one, and is refused if not. A refusal says as little as it can: a wrong password and
//! an unknown user get the same answer, after the same work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use switchboard_proto::ErrorCode;

use super::config::SecurityConfig;
use super::jwt::JwtVerifier;
use super::password::{check_password_hash, dummy_hash, verify_blocking};
use super::throttle::LoginThrottle;
use super::token::{TokenTable, parse_sha256, secrets_equal, token_sha256};
use super::{AuthMethod, Identity, Policy};

/// A configuration refused: the part of it at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecurityError(pub String);

/// The credentials a session presents, as they came in SESSION_INIT.
#[derive(Clone, Copy, Default)]
pub(crate) struct Credentials<'a> {
    /// The name the client asked for.
    pub name: &'a str,
    pub token: &'a [u8],
    pub user: &'a str,
    pub password: &'a [u8],
    pub jwt: &'a [u8],
}

/// What the connection itself says about who is at the other end.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerFacts {
    /// The peer's IP address, for TCP (and TLS) connections.
    pub address: Option<IpAddr>,
    /// Whether the connection came in on the Unix socket.
    pub unix: bool,
    /// The peer's uid on the Unix socket, when the platform tells it.
    pub unix_uid: Option<u32>,
    /// The subject CN and subject alternative names of a verified TLS client certificate.
    pub certificate_names: Vec<String>,
}

/// A session let in: who it is and the name it goes by.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub identity: Identity,
    /// The authenticated user's name, or the name asked for.
    pub name: String,
}

/// A session refused, with the code and message its client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub code: ErrorCode,
    pub message: String,
    /// Whether it counts as a failed login (slowed, counted, logged).
    pub failed_login: bool,
}

impl Denied {
    fn failed(message: impl Into<String>) -> Denied {
        Denied {
            code: ErrorCode::AuthFailed,
            message: message.into(),
            failed_login: true,
        }
    }

    fn invalid(message: impl Into<String>) -> Denied {
        Denied {
            code: ErrorCode::InvalidArgument,
            message: message.into(),
            failed_login: false,
        }
    }
}

/// The one message for a wrong password and an unknown user alike.
const BAD_PASSWORD: &str = "unknown user or wrong password";

/// A configured user.
struct User {
    password: Option<String>,
    roles: Vec<String>,
}

impl std::fmt::Debug for User {
    // The hash stays out of logs: only whether there is one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("roles", &self.roles)
            .finish()
    }
}

/// The identities of a [`SecurityConfig`], checked and ready to log in against.
#[derive(Debug, Default)]
pub(crate) struct Authenticator {
    users: HashMap<String, User>,
    tokens: TokenTable,
    jwt: Option<JwtVerifier>,
    unix_users: HashMap<u32, String>,
    /// The server's own uid: its peers on the Unix socket are admins.
    server_uid: Option<u32>,
}

impl Authenticator {
    /// Checks the configuration (user names, hashes, digests, roles, key files) and
    /// compiles it; the error names the entry at fault.
    pub fn new(config: &SecurityConfig) -> Result<Authenticator, SecurityError> {
        let fail = |message: String| Err(SecurityError(message));
        let known_role = |role: &String| config.roles.contains_key(role);
        let check_roles = |what: &str, roles: &[String]| -> Result<(), SecurityError> {
            match roles.iter().find(|role| !known_role(role)) {
                Some(role) => Err(SecurityError(format!(
                    "{what}: role \"{role}\" is not defined (add [roles.{role}])"
                ))),
                None => Ok(()),
            }
        };
        let mut users = HashMap::new();
        for spec in &config.users {
            let what = format!("[[users]] \"{}\"", spec.name);
            if let Err(error) = switchboard_proto::subject::validate_client_name(&spec.name) {
                return fail(format!("{what}: not a valid name ({error})"));
            }
            if let Some(hash) = &spec.password
                && let Err(error) = check_password_hash(hash)
            {
                return fail(format!("{what}: password: {error}"));
            }
            check_roles(&what, &spec.roles)?;
            let user = User {
                password: spec.password.clone(),
                roles: spec.roles.clone(),
            };
            if users.insert(spec.name.clone(), user).is_some() {
                return fail(format!("{what}: the user is defined twice"));
            }
        }
        let mut digests = Vec::new();
        for spec in &config.tokens {
            let what = format!("[[tokens]] \"{}\"", spec.name);
            if let Err(error) = switchboard_proto::subject::validate_client_name(&spec.user) {
                return fail(format!(
                    "{what}: user \"{}\" is not a valid name ({error})",
                    spec.user
                ));
            }
            let digest = parse_sha256(&spec.sha256)
                .map_err(|error| SecurityError(format!("{what}: {error}")))?;
            if digests.contains(&digest) {
                return fail(format!("{what}: the same token is configured twice"));
            }
            check_roles(&what, &spec.roles)?;
            digests.push(digest);
        }
        let jwt = match &config.jwt {
            Some(spec) => Some(
                JwtVerifier::new(spec).map_err(|error| SecurityError(format!("[jwt]: {error}")))?,
            ),
            None => None,
        };
        let mut unix_users = HashMap::new();
        for spec in &config.unix_users {
            let what = format!("[[unix_users]] uid {}", spec.uid);
            if let Err(error) = switchboard_proto::subject::validate_client_name(&spec.user) {
                return fail(format!(
                    "{what}: user \"{}\" is not a valid name ({error})",
                    spec.user
                ));
            }
            if unix_users.insert(spec.uid, spec.user.clone()).is_some() {
                return fail(format!("{what}: the uid is mapped twice"));
            }
        }
        if let Some(role) = &config.anonymous_role
            && !known_role(role)
        {
            return fail(format!(
                "anonymous_role: role \"{role}\" is not defined (add [roles.{role}])"
            ));
        }
        Ok(Authenticator {
            users,
            tokens: TokenTable::new(digests),
            jwt,
            unix_users,
            server_uid: server_uid(),
        })
    }

    /// Whether `name` belongs to a configured user (by password, token or Unix uid),
    /// which an anonymous session may not take.
    fn is_user_name(&self, config: &SecurityConfig, name: &str) -> bool {
        self.users.contains_key(name)
            || config.tokens.iter().any(|token| token.user == name)
            || self.unix_users.values().any(|user| user == name)
    }

    /// The roles of `user` as configured, if it is.
    fn roles_of(&self, user: &str) -> Vec<String> {
        self.users
            .get(user)
            .map(|user| user.roles.clone())
            .unwrap_or_default()
    }
}

#[cfg(unix)]
fn server_uid() -> Option<u32> {
    Some(rustix::process::getuid().as_raw())
}

#[cfg(not(unix))]
fn server_uid() -> Option<u32> {
    None
}

/// Logs a session in, or says why not. Password checks run on the blocking pool, a few
/// at a time.
pub(crate) async fn authenticate(
    policy: &Arc<Policy>,
    admin_token: Option<&str>,
    credentials: Credentials<'_>,
    peer: &PeerFacts,
    throttle: &LoginThrottle,
) -> Result<Login, Denied> {
    let presented = [
        !credentials.token.is_empty(),
        !credentials.user.is_empty() || !credentials.password.is_empty(),
        !credentials.jwt.is_empty(),
    ];
    if presented.iter().filter(|&&kind| kind).count() > 1 {
        return Err(Denied::invalid(
            "SESSION_INIT carries more than one kind of credentials; send one",
        ));
    }
    let admin_token = admin_token.filter(|token| !token.is_empty());
    let is_admin_token =
        |token: &[u8]| admin_token.is_some_and(|admin| secrets_equal(token, admin.as_bytes()));

    if !policy.requires_identity() {
        // An open hub: anonymous sessions, admins by the Unix socket or the admin token.
        if !credentials.user.is_empty()
            || !credentials.password.is_empty()
            || !credentials.jwt.is_empty()
        {
            return Err(Denied::failed("this server has no users configured"));
        }
        let admin = if credentials.token.is_empty() {
            peer.unix
        } else if is_admin_token(credentials.token) {
            true
        } else {
            return Err(Denied::failed("invalid token"));
        };
        let mut identity = policy.anonymous_identity(admin);
        if !credentials.token.is_empty() {
            identity.method = AuthMethod::AdminToken;
        }
        return Ok(Login {
            identity,
            name: credentials.name.to_owned(),
        });
    }

    let auth = &policy.auth;
    let own_uid = peer.unix && peer.unix_uid.is_some() && peer.unix_uid == auth.server_uid;
    let login = if !credentials.token.is_empty() {
        if is_admin_token(credentials.token) {
            unnamed(AuthMethod::AdminToken, true, Vec::new())
        } else {
            let Some(index) = auth.tokens.find(credentials.token) else {
                return Err(Denied::failed("invalid token"));
            };
            let spec = &policy.config.tokens[index];
            let mut roles = auth.roles_of(&spec.user);
            add_roles(&mut roles, &spec.roles);
            Identity {
                token_sha256: Some(token_sha256(credentials.token)),
                ..named(&spec.user, AuthMethod::Token, own_uid, roles, None)
            }
        }
    } else if !credentials.user.is_empty() || !credentials.password.is_empty() {
        if credentials.user.is_empty() {
            return Err(Denied::invalid("a password needs a user"));
        }
        let hash = auth
            .users
            .get(credentials.user)
            .and_then(|user| user.password.clone());
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
        let password = credentials.password.to_vec();
        let matches = {
            let _slot = throttle.verification_slot().await;
            tokio::task::spawn_blocking(move || verify_blocking(&hash, &password))
                .await
                .unwrap_or(false)
        };
        if !(known && matches) {
            return Err(Denied::failed(BAD_PASSWORD));
        }
        let roles = auth.roles_of(credentials.user);
        named(credentials.user, AuthMethod::Password, own_uid, roles, None)
    } else if !credentials.jwt.is_empty() {
        let Some(verifier) = &auth.jwt else {
            return Err(Denied::failed("this server does not accept JWTs"));
        };
        let claims = verifier.verify(credentials.jwt).map_err(Denied::failed)?;
        if let Err(error) = switchboard_proto::subject::validate_client_name(&claims.user) {
            return Err(Denied::failed(format!(
                "the token's user is not a valid name ({error})"
            )));
        }
        let mut roles = auth.roles_of(&claims.user);
        let claimed: Vec<String> = claims
            .roles
            .into_iter()
            .filter(|role| policy.config.roles.contains_key(role))
            .collect();
        add_roles(&mut roles, &claimed);
        named(
            &claims.user,
            AuthMethod::Jwt,
            own_uid,
            roles,
            Some(claims.expires_at_us),
        )
    } else if let Some(user) = peer
        .unix_uid
        .filter(|_| peer.unix)
        .and_then(|uid| auth.unix_users.get(&uid))
    {
        named(
            user,
            AuthMethod::UnixPeer,
            own_uid,
            auth.roles_of(user),
            None,
        )
    } else if let Some(user) = peer
        .certificate_names
        .iter()
        .find(|name| auth.users.contains_key(name.as_str()))
    {
        named(
            user,
            AuthMethod::Certificate,
            false,
            auth.roles_of(user),
            None,
        )
    } else if own_uid {
        unnamed(AuthMethod::UnixPeer, true, Vec::new())
    } else if policy.config.anonymous_role.is_some() {
        let identity = policy.anonymous_identity(false);
        unnamed(identity.method, false, identity.roles)
    } else {
        return Err(Denied::failed("authentication required"));
    };
    finish(policy, login, credentials.name)
}

fn add_roles(roles: &mut Vec<String>, more: &[String]) {
    for role in more {
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
}

fn named(
    user: &str,
    method: AuthMethod,
    admin: bool,
    roles: Vec<String>,
    expires_at_us: Option<u64>,
) -> Identity {
    Identity {
        user: Some(user.to_owned()),
        roles,
        method,
        admin,
        expires_at_us,
        token_sha256: None,
    }
}

fn unnamed(method: AuthMethod, admin: bool, roles: Vec<String>) -> Identity {
    Identity {
        user: None,
        roles,
        method,
        admin,
        expires_at_us: None,
        token_sha256: None,
    }
}

/// The session's name: its user's, or the one asked for if that is no user's.
fn finish(policy: &Policy, identity: Identity, asked: &str) -> Result<Login, Denied> {
    if let Some(user) = &identity.user {
        return Ok(Login {
            name: user.clone(),
            identity,
        });
    }
    if policy.auth.is_user_name(&policy.config, asked) {
        return Err(Denied::invalid(format!(
            "the name \"{asked}\" belongs to a user: log in as that user to use it"
        )));
    }
    Ok(Login {
        identity,
        name: asked.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{RoleSpec, UserSpec};

    fn policy() -> Arc<Policy> {
        let mut config = SecurityConfig::default();
        config.roles.insert("staff".into(), RoleSpec::default());
        config.users.push(UserSpec {
            name: "alice".into(),
            password: None,
            roles: vec!["staff".into()],
        });
        Arc::new(Policy::new(config))
    }

    async fn log_in(peer: PeerFacts) -> Result<Login, Denied> {
        let credentials = Credentials {
            name: "asked",
            ..Credentials::default()
        };
        authenticate(
            &policy(),
            None,
            credentials,
            &peer,
            &LoginThrottle::default(),
        )
        .await
    }

    #[tokio::test]
    async fn a_client_certificate_naming_a_user_logs_in_as_that_user() {
        let peer = PeerFacts {
            address: Some([192, 0, 2, 1].into()),
            certificate_names: vec!["device-17.example".into(), "alice".into()],
            ..PeerFacts::default()
        };
        let login = log_in(peer).await.unwrap();
        assert_eq!(login.name, "alice");
        assert_eq!(login.identity.user.as_deref(), Some("alice"));
        assert_eq!(login.identity.method, AuthMethod::Certificate);
        assert_eq!(login.identity.roles, ["staff"]);
        assert!(!login.identity.admin);
    }

    #[tokio::test]
    async fn a_certificate_naming_no_user_is_no_login() {
        let peer = PeerFacts {
            address: Some([192, 0, 2, 1].into()),
            certificate_names: vec!["mallory".into()],
            ..PeerFacts::default()
        };
        let denied = log_in(peer).await.unwrap_err();
        assert_eq!(denied.code, ErrorCode::AuthFailed);
        assert_eq!(denied.message, "authentication required");
    }
}
