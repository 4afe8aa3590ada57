//! The HTTP API's sessions. Every HTTP request is served by a protocol session opened in
//! process (attached to the hub like any connection), so logging in, permissions, limits
//! and error codes are the binary protocol's own, enforced in one place.
//!
//! Opening a session for each request would cost a login each time (an argon2 hash for
//! a password), so sessions are kept: one per client address and credentials, shared by
//! that client's requests, closed after [`IDLE`] unused or when the server closes them
//! (an expired token, a user removed by a reload). Their number is bounded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use switchboard_client::{Client, ClientConfig, ErrorCode};
use switchboard_server::{AttachedPeer, HubHandle};
use tokio::sync::OnceCell;

use crate::error::ApiError;

/// How long an unused session is kept.
pub(crate) const IDLE: Duration = Duration::from_secs(60);

/// Sessions kept open at most; past it, idle ones are closed first, then requests from
/// new clients are refused with SERVER_BUSY.
const MAX_SESSIONS: usize = 4096;

/// Bytes of the in-process pipe between a session and the hub, each way.
const PIPE_BYTES: usize = 256 * 1024;

/// What a request presents to log in.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// None: the session is anonymous (or refused, where anonymous sessions are).
    Anonymous,
    /// `Authorization: Bearer ...`: a JWT (three dot-separated parts) or a token.
    Bearer(String),
    /// `Authorization: Basic ...`: a user and password.
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Bearer(_) => f.write_str("Bearer(..)"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, ..)"),
        }
    }
}

impl Credentials {
    /// The credentials of a request: its `Authorization` header, or else an
    /// `access_token` query parameter (a bearer token or JWT, for browsers' EventSource,
    /// which cannot send headers).
    pub(crate) fn from_parts(parts: &Parts) -> Result<Credentials, ApiError> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return Credentials::from_headers(&parts.headers);
        }
        let query = parts.uri.query().unwrap_or("");
        let token = form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "access_token")
            .map(|(_, token)| token.into_owned());
        Ok(token.map_or(Credentials::Anonymous, Credentials::Bearer))
    }

    /// The credentials of a request's `Authorization` header.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Credentials, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Credentials::Anonymous);
        };
        let bad = |why: &str| ApiError::new(ErrorCode::AuthFailed, why.to_owned());
        let value = value
            .to_str()
            .map_err(|_| bad("the Authorization header is not text"))?;
        let (scheme, rest) = value.split_once(' ').ok_or_else(|| {
            bad("Authorization takes \"Bearer TOKEN\" or \"Basic USER:PASSWORD\"")
        })?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Credentials::Bearer(rest.to_owned()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| bad("Basic credentials are not base64"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| bad("Basic credentials are not UTF-8"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| bad("Basic credentials take USER:PASSWORD"))?;
            return Ok(Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            });
        }
        Err(bad(
            "Authorization takes \"Bearer TOKEN\" or \"Basic USER:PASSWORD\"",
        ))
    }

    /// A digest that tells these credentials apart without keeping them in a map key.
    fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        match self {
            Credentials::Anonymous => hash.update([0]),
            Credentials::Bearer(token) => {
                hash.update([1]);
                hash.update(token.as_bytes());
            }
            Credentials::Basic { user, password } => {
                hash.update([2]);
                hash.update((user.len() as u64).to_be_bytes());
                hash.update(user.as_bytes());
                hash.update(password.as_bytes());
            }
        }
        hash.finalize().into()
    }

    /// The client configuration that logs in with these credentials.
    fn config(&self) -> ClientConfig {
        let config = ClientConfig::new("", "http");
        match self {
            Credentials::Anonymous => config,
            // A JWT is three base64url parts; anything else is a named token.
            Credentials::Bearer(token) if token.split('.').count() == 3 => {
                config.with_jwt(token.clone().into_bytes())
            }
            Credentials::Bearer(token) => config.with_token(token.clone().into_bytes()),
            Credentials::Basic { user, password } => {
                config.with_password(user.clone(), password.clone().into_bytes())
            }
        }
    }
}

type Key = (IpAddr, [u8; 32]);

struct Entry {
    session: Arc<OnceCell<Client>>,
    last_used: Instant,
}

/// The sessions of the HTTP API's clients.
pub(crate) struct Gateway {
    hub: HubHandle,
    sessions: Mutex<HashMap<Key, Entry>>,
}

impl Gateway {
    pub(crate) fn new(hub: HubHandle) -> Gateway {
        Gateway {
            hub,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The session of a client at `addr` presenting `credentials`: the one kept for
    /// them, or a new one logged in now. A session the server has closed since is
    /// replaced.
    pub(crate) async fn session(
        &self,
        credentials: &Credentials,
        addr: SocketAddr,
    ) -> Result<Client, ApiError> {
        let key = (addr.ip(), credentials.digest());
        let cell = self.cell(key)?;
        let opened = cell
            .get_or_try_init(|| self.open(credentials, addr))
            .await
            .cloned();
        match opened {
            Ok(client) if !client.is_closed() => Ok(client),
            Ok(_) => {
                // Closed by the server: log in again, once.
                self.forget(&key, &cell);
                let cell = self.cell(key)?;
                let client = cell
                    .get_or_try_init(|| self.open(credentials, addr))
                    .await
                    .cloned();
                client.inspect_err(|_| self.forget(&key, &cell))
            }
            Err(error) => {
                self.forget(&key, &cell);
                Err(error)
            }
        }
    }

    /// The slot of `key`'s session, made if there is none.
    fn cell(&self, key: Key) -> Result<Arc<OnceCell<Client>>, ApiError> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        if let Some(entry) = sessions.get_mut(&key) {
            entry.last_used = now;
            return Ok(entry.session.clone());
        }
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, entry| now.duration_since(entry.last_used) < IDLE);
            if sessions.len() >= MAX_SESSIONS {
                return Err(ApiError::new(
                    ErrorCode::ServerBusy,
                    format!("the HTTP API has {MAX_SESSIONS} sessions open, the most it keeps"),
                ));
            }
        }
        let session = Arc::new(OnceCell::new());
        sessions.insert(
            key,
            Entry {
                session: session.clone(),
                last_used: now,
            },
        );
        Ok(session)
    }

    /// Drops `key`'s session if it is still `cell`.
    fn forget(&self, key: &Key, cell: &Arc<OnceCell<Client>>) {
        let mut sessions = self.sessions.lock();
        if sessions
            .get(key)
            .is_some_and(|entry| Arc::ptr_eq(&entry.session, cell))
        {
            sessions.remove(key);
        }
    }

    /// A session of its own for a long-lived request (an event stream), not shared with
    /// the client's other requests, whose replies its backpressure would hold up. It
    /// closes when the last handle on it is dropped.
    pub(crate) async fn dedicated_session(
        &self,
        credentials: &Credentials,
        addr: SocketAddr,
    ) -> Result<Client, ApiError> {
        self.open(credentials, addr).await
    }

    /// Opens a session in process and logs in.
    async fn open(&self, credentials: &Credentials, addr: SocketAddr) -> Result<Client, ApiError> {
        let (near, far) = tokio::io::duplex(PIPE_BYTES);
        if !self.hub.attach(far, AttachedPeer::Http(addr)) {
            return Err(ApiError::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        Ok(Client::connect_over(near, credentials.config()).await?)
    }

    /// Closes the sessions unused for [`IDLE`]; returns how many are left.
    pub(crate) fn close_idle(&self) -> usize {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, entry| now.duration_since(entry.last_used) < IDLE);
        sessions.len()
    }

    /// Closes every session (the web listener is stopping).
    pub(crate) fn close_all(&self) {
        self.sessions.lock().clear();
    }
}
