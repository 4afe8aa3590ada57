//! Who a session is, as established by its handshake.

use std::sync::{Arc, OnceLock};

/// How a session proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No identities are configured: every session is anonymous and open.
    Open,
    /// No credentials, accepted under the anonymous role.
    Anonymous,
    Password,
    Token,
    Jwt,
    Certificate,
    /// The peer's uid on the Unix socket.
    UnixPeer,
    /// The admin token.
    AdminToken,
}

/// A session's identity: its user (the name others see it by) and its roles.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The authenticated user; `None` for an anonymous session.
    pub user: Option<String>,
    /// The roles granted: the user's, the token's, and those a JWT claims.
    pub roles: Vec<String>,
    pub method: AuthMethod,
    /// May use every admin operation whatever its roles: the admin token, or the
    /// server's own uid on the Unix socket.
    pub admin: bool,
    /// When the credentials stop being valid (a JWT's `exp`), in microseconds since the
    /// Unix epoch; the session is closed then.
    pub expires_at_us: Option<u64>,
    /// The digest of the named token the session logged in with: a reload that no
    /// longer lists it ends the session.
    pub token_sha256: Option<[u8; 32]>,
}

impl Identity {
    /// The identity of every session of an open hub.
    pub fn open(admin: bool) -> Identity {
        Identity {
            user: None,
            roles: Vec::new(),
            method: AuthMethod::Open,
            admin,
            expires_at_us: None,
            token_sha256: None,
        }
    }

    /// The identity as a session holds it: open sessions, the most common on a local
    /// hub, share one value instead of each holding a copy for its whole life.
    pub(crate) fn into_shared(self) -> Arc<Identity> {
        static OPEN: OnceLock<[Arc<Identity>; 2]> = OnceLock::new();
        let is_plain_open = self.method == AuthMethod::Open
            && self.user.is_none()
            && self.roles.is_empty()
            && self.expires_at_us.is_none()
            && self.token_sha256.is_none();
        if !is_plain_open {
            return Arc::new(self);
        }
        let shared = OPEN.get_or_init(|| {
            [
                Arc::new(Identity::open(false)),
                Arc::new(Identity::open(true)),
            ]
        });
        shared[usize::from(self.admin)].clone()
    }
}
