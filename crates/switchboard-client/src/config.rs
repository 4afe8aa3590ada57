//! [`ClientConfig`]: where to connect, who to be, and the client's timing and queue
//! sizes. Built with chained `with_*` methods, so new settings never break callers.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{ErrorDetail, Result};
use crate::tls::TlsOptions;

/// The server a client connects to when none is given.
///
/// ```
/// use switchboard_client::{ClientConfig, DEFAULT_SERVER};
///
/// assert_eq!(ClientConfig::default().server(), DEFAULT_SERVER);
/// ```
pub const DEFAULT_SERVER: &str = "127.0.0.1:7420";

/// How to reach and identify with a Switchboard server.
///
/// ```
/// use std::time::Duration;
/// use switchboard_client::ClientConfig;
///
/// let config = ClientConfig::new("127.0.0.1:7420", "alice")
///     .with_heartbeat(Duration::from_secs(2))
///     .with_hmac_key(b"pre-shared secret".to_vec());
/// assert_eq!(config.name(), "alice");
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    server: String,
    name: String,
    heartbeat: Duration,
    credentials: Option<Bytes>,
    password: Option<(String, Bytes)>,
    jwt: Option<Bytes>,
    hmac_key: Option<Vec<u8>>,
    request_timeout: Duration,
    subscription_capacity: usize,
    feed_capacity: usize,
    send_queue_capacity: usize,
    tls: Option<TlsOptions>,
}

impl ClientConfig {
    /// Default heartbeat interval asked of the server.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// assert_eq!(ClientConfig::default().heartbeat(), ClientConfig::DEFAULT_HEARTBEAT);
    /// ```
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
    /// Default time a request may wait for its answer.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::new("127.0.0.1:7420", "alice");
    /// assert_eq!(config.request_timeout(), ClientConfig::DEFAULT_REQUEST_TIMEOUT);
    /// ```
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default number of messages a subscription buffers before the reader waits.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// // Twice the default, for a consumer that works in bursts.
    /// let config = ClientConfig::new("127.0.0.1:7420", "indexer")
    ///     .with_subscription_capacity(2 * ClientConfig::DEFAULT_SUBSCRIPTION_CAPACITY);
    /// assert_eq!(config.subscription_capacity(), 8192);
    /// ```
    pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 4096;
    /// Default number of items the group and direct feeds keep before dropping the oldest.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default();
    /// assert_eq!(config.feed_capacity(), ClientConfig::DEFAULT_FEED_CAPACITY);
    /// ```
    pub const DEFAULT_FEED_CAPACITY: usize = 1024;
    /// Default number of frames queued for the writer before senders wait.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default();
    /// assert_eq!(config.send_queue_capacity(), ClientConfig::DEFAULT_SEND_QUEUE_CAPACITY);
    /// ```
    pub const DEFAULT_SEND_QUEUE_CAPACITY: usize = 4096;

    /// A configuration for `server` (`"HOST:PORT"`, `"tls://HOST:PORT"` or `"unix:/path"`)
    /// under `name`.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let tcp = ClientConfig::new("hub.example.com:7420", "alice");
    /// let local = ClientConfig::new("unix:/run/switchboard.sock", "backup-job");
    /// assert_eq!(tcp.server(), "hub.example.com:7420");
    /// assert_eq!(local.name(), "backup-job");
    /// ```
    pub fn new(server: impl Into<String>, name: impl Into<String>) -> Self {
        ClientConfig {
            server: server.into(),
            name: name.into(),
            ..ClientConfig::default()
        }
    }

    /// Connects to `server` instead.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default().with_server("10.0.0.5:7420");
    /// assert_eq!(config.server(), "10.0.0.5:7420");
    /// ```
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = server.into();
        self
    }

    /// Uses `name` as the session name (also the member name in groups).
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default().with_name("sensor-7");
    /// assert_eq!(config.name(), "sensor-7");
    /// ```
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Asks for this heartbeat interval; the server's answer is what is used.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::ClientConfig;
    ///
    /// // Notice a dead server within about three seconds.
    /// let config = ClientConfig::default().with_heartbeat(Duration::from_secs(1));
    /// assert_eq!(config.heartbeat(), Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sends these opaque credentials (a bearer token) in SESSION_INIT. The same as
    /// [`with_token`](Self::with_token).
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let token = std::env::var("SWITCHBOARD_TOKEN").unwrap_or_default();
    /// let config = ClientConfig::new("127.0.0.1:7420", "alice").with_credentials(token);
    /// assert!(config.credentials().is_some());
    /// ```
    #[must_use]
    pub fn with_credentials(mut self, credentials: impl Into<Bytes>) -> Self {
        self.credentials = Some(credentials.into());
        self
    }

    /// Logs in with a bearer token: the admin token or a named token from the server's
    /// `[[tokens]]`.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::new("127.0.0.1:7420", "deploy").with_token("s3cret");
    /// assert_eq!(config.credentials().map(|token| &token[..]), Some(&b"s3cret"[..]));
    /// ```
    #[must_use]
    pub fn with_token(self, token: impl Into<Bytes>) -> Self {
        self.with_credentials(token)
    }

    /// Logs in as `user` with a password. The session is then named after the user.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::new("127.0.0.1:7420", "alice").with_password("alice", "hunter2");
    /// assert_eq!(config.password().map(|(user, _)| user), Some("alice"));
    /// assert!(!format!("{config:?}").contains("hunter2"));
    /// ```
    #[must_use]
    pub fn with_password(mut self, user: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.password = Some((user.into(), password.into()));
        self
    }

    /// Logs in with a JSON Web Token from an identity provider the server trusts.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::new("127.0.0.1:7420", "svc").with_jwt("eyJ...");
    /// assert!(config.jwt().is_some());
    /// ```
    #[must_use]
    pub fn with_jwt(mut self, jwt: impl Into<Bytes>) -> Self {
        self.jwt = Some(jwt.into());
        self
    }

    /// Authenticates every frame with HMAC-SHA256 under this pre-shared key.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default().with_hmac_key(b"pre-shared secret".to_vec());
    /// assert_eq!(config.hmac_key(), Some(&b"pre-shared secret"[..]));
    /// ```
    #[must_use]
    pub fn with_hmac_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.hmac_key = Some(key.into());
        self
    }

    /// How long connecting, and each request, may take.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default().with_request_timeout(Duration::from_secs(5));
    /// assert_eq!(config.request_timeout(), Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many messages each subscription buffers (at least 1).
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default().with_subscription_capacity(64);
    /// assert_eq!(config.subscription_capacity(), 64);
    /// // Zero is raised to one: a subscription always has room for a message.
    /// assert_eq!(config.with_subscription_capacity(0).subscription_capacity(), 1);
    /// ```
    #[must_use]
    pub fn with_subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }

    /// How many items the group and direct feeds keep (at least 1).
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// // Keep more of a busy group's traffic before the oldest items are dropped.
    /// let config = ClientConfig::default().with_feed_capacity(10_000);
    /// assert_eq!(config.feed_capacity(), 10_000);
    /// ```
    #[must_use]
    pub fn with_feed_capacity(mut self, capacity: usize) -> Self {
        self.feed_capacity = capacity.max(1);
        self
    }

    /// How many frames may wait for the writer (at least 1).
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default().with_send_queue_capacity(256);
    /// assert_eq!(config.send_queue_capacity(), 256);
    /// ```
    #[must_use]
    pub fn with_send_queue_capacity(mut self, capacity: usize) -> Self {
        self.send_queue_capacity = capacity.max(1);
        self
    }

    /// Speaks TLS to the server with these options (a `tls://HOST:PORT` address uses TLS
    /// with the default options: the system's root certificates).
    ///
    /// ```
    /// use switchboard_client::{ClientConfig, TlsOptions};
    ///
    /// let config = ClientConfig::new("hub.example.com:7421", "alice")
    ///     .with_tls(TlsOptions::new().with_ca_file("ca.pem"));
    /// assert!(config.tls().and_then(|tls| tls.ca_file()).is_some());
    /// ```
    #[must_use]
    pub fn with_tls(mut self, options: TlsOptions) -> Self {
        self.tls = Some(options);
        self
    }

    /// The TLS options set with [`ClientConfig::with_tls`], if any.
    pub fn tls(&self) -> Option<&TlsOptions> {
        self.tls.as_ref()
    }

    /// The server address as given.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::new("unix:/run/switchboard.sock", "alice");
    /// assert_eq!(config.server(), "unix:/run/switchboard.sock");
    /// ```
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The session name.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// assert_eq!(ClientConfig::new("127.0.0.1:7420", "alice").name(), "alice");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The heartbeat interval asked for.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default().with_heartbeat(Duration::from_millis(500));
    /// assert_eq!(config.heartbeat(), Duration::from_millis(500));
    /// ```
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// The credentials, if any.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// assert!(ClientConfig::default().credentials().is_none());
    /// let config = ClientConfig::default().with_credentials("token-123");
    /// assert_eq!(config.credentials().map(|token| &token[..]), Some(&b"token-123"[..]));
    /// ```
    pub fn credentials(&self) -> Option<&Bytes> {
        self.credentials.as_ref()
    }

    /// The user and password to log in with, if any.
    pub fn password(&self) -> Option<(&str, &Bytes)> {
        self.password
            .as_ref()
            .map(|(user, password)| (user.as_str(), password))
    }

    /// The JSON Web Token to log in with, if any.
    pub fn jwt(&self) -> Option<&Bytes> {
        self.jwt.as_ref()
    }

    /// The HMAC key, if any.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default();
    /// if config.hmac_key().is_none() {
    ///     println!("frames to {} are not authenticated", config.server());
    /// }
    /// ```
    pub fn hmac_key(&self) -> Option<&[u8]> {
        self.hmac_key.as_deref()
    }

    /// The time allowed for connecting and for each request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default();
    /// assert_eq!(config.request_timeout(), Duration::from_secs(30));
    /// ```
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Messages buffered per subscription.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default();
    /// assert_eq!(config.subscription_capacity(), ClientConfig::DEFAULT_SUBSCRIPTION_CAPACITY);
    /// ```
    pub fn subscription_capacity(&self) -> usize {
        self.subscription_capacity
    }

    /// Items kept by each feed.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// assert_eq!(ClientConfig::default().with_feed_capacity(0).feed_capacity(), 1);
    /// ```
    pub fn feed_capacity(&self) -> usize {
        self.feed_capacity
    }

    /// Frames that may wait for the writer.
    ///
    /// ```
    /// use switchboard_client::ClientConfig;
    ///
    /// let config = ClientConfig::default().with_send_queue_capacity(1024);
    /// assert_eq!(config.send_queue_capacity(), 1024);
    /// ```
    pub fn send_queue_capacity(&self) -> usize {
        self.send_queue_capacity
    }

    /// The parsed server address.
    pub(crate) fn address(&self) -> Result<ServerAddress> {
        match (ServerAddress::parse(&self.server)?, &self.tls) {
            (ServerAddress::Tcp(host_port), Some(options)) => {
                Ok(ServerAddress::Tls(host_port, options.clone()))
            }
            (ServerAddress::Tls(host_port, _), Some(options)) => {
                Ok(ServerAddress::Tls(host_port, options.clone()))
            }
            (
                ServerAddress::WebSocket {
                    url,
                    host_port,
                    tls: Some(_),
                },
                Some(options),
            ) => Ok(ServerAddress::WebSocket {
                url,
                host_port,
                tls: Some(options.clone()),
            }),
            (ServerAddress::WebSocket { .. }, Some(_)) => Err(ErrorDetail::InvalidAddress(
                format!("{} (TLS over WebSocket is wss://)", self.server),
            )
            .into()),
            (ServerAddress::Unix(_), Some(_)) => Err(ErrorDetail::InvalidAddress(format!(
                "{} (TLS is for TCP addresses)",
                self.server
            ))
            .into()),
            (address, None) => Ok(address),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: DEFAULT_SERVER.to_owned(),
            name: "switchboard-client".to_owned(),
            heartbeat: Self::DEFAULT_HEARTBEAT,
            credentials: None,
            password: None,
            jwt: None,
            hmac_key: None,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            subscription_capacity: Self::DEFAULT_SUBSCRIPTION_CAPACITY,
            feed_capacity: Self::DEFAULT_FEED_CAPACITY,
            send_queue_capacity: Self::DEFAULT_SEND_QUEUE_CAPACITY,
            tls: None,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    // Secrets stay out of logs: only whether they are set is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("name", &self.name)
            .field("heartbeat", &self.heartbeat)
            .field("credentials", &self.credentials.as_ref().map(|_| ".."))
            .field(
                "password",
                &self.password.as_ref().map(|(user, _)| (user, "..")),
            )
            .field("jwt", &self.jwt.as_ref().map(|_| ".."))
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| ".."))
            .field("request_timeout", &self.request_timeout)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("feed_capacity", &self.feed_capacity)
            .field("send_queue_capacity", &self.send_queue_capacity)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A parsed server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerAddress {
    /// `HOST:PORT`, resolved when connecting.
    Tcp(String),
    /// `unix:/path`.
    Unix(PathBuf),
    /// `tls://HOST:PORT` (or `HOST:PORT` with TLS options), with the options in force.
    Tls(String, TlsOptions),
    /// `ws://HOST:PORT/PATH` or `wss://...`: the URL, its `HOST:PORT`, and for wss the
    /// TLS options in force.
    WebSocket {
        url: String,
        host_port: String,
        tls: Option<TlsOptions>,
    },
}

impl ServerAddress {
    pub(crate) fn parse(server: &str) -> Result<ServerAddress> {
        if let Some(path) = server.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ErrorDetail::InvalidAddress(server.to_owned()).into());
            }
            return Ok(ServerAddress::Unix(PathBuf::from(path)));
        }
        if let Some((secure, rest)) = server
            .strip_prefix("ws://")
            .map(|rest| (false, rest))
            .or_else(|| server.strip_prefix("wss://").map(|rest| (true, rest)))
        {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            let default_port = if secure { 443 } else { 80 };
            let host_port = match authority.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    authority.to_owned()
                }
                // A bracketed IPv6 address without a port, or a name.
                _ if !authority.is_empty()
                    && (authority.ends_with(']') || !authority.contains(':')) =>
                {
                    format!("{authority}:{default_port}")
                }
                _ => return Err(ErrorDetail::InvalidAddress(server.to_owned()).into()),
            };
            return Ok(ServerAddress::WebSocket {
                url: server.to_owned(),
                host_port,
                tls: secure.then(TlsOptions::new),
            });
        }
        let (tls, host_port) = match server.strip_prefix("tls://") {
            Some(host_port) => (true, host_port),
            None => (false, server),
        };
        // A port is required: connecting to a bare host would pick no port at all.
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(if tls {
                ServerAddress::Tls(host_port.to_owned(), TlsOptions::new())
            } else {
                ServerAddress::Tcp(host_port.to_owned())
            }),
            _ => Err(ErrorDetail::InvalidAddress(server.to_owned()).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            ServerAddress::parse("127.0.0.1:7420").ok(),
            Some(ServerAddress::Tcp("127.0.0.1:7420".into()))
        );
        assert_eq!(
            ServerAddress::parse("[::1]:7420").ok(),
            Some(ServerAddress::Tcp("[::1]:7420".into()))
        );
        assert_eq!(
            ServerAddress::parse("unix:/run/sb.sock").ok(),
            Some(ServerAddress::Unix("/run/sb.sock".into()))
        );
        assert_eq!(
            ServerAddress::parse("tls://hub.example.com:7421").ok(),
            Some(ServerAddress::Tls(
                "hub.example.com:7421".into(),
                TlsOptions::new()
            ))
        );
        assert_eq!(
            ServerAddress::parse("ws://127.0.0.1:7480/ws").ok(),
            Some(ServerAddress::WebSocket {
                url: "ws://127.0.0.1:7480/ws".into(),
                host_port: "127.0.0.1:7480".into(),
                tls: None,
            })
        );
        assert_eq!(
            ServerAddress::parse("wss://hub.example.com/ws").ok(),
            Some(ServerAddress::WebSocket {
                url: "wss://hub.example.com/ws".into(),
                host_port: "hub.example.com:443".into(),
                tls: Some(TlsOptions::new()),
            })
        );
        for bad in [
            "ws://",
            "wss:///ws",
            "ws://host:port/ws",
            "localhost",
            "unix:",
            ":7420",
            "host:port",
            "host:70000",
            "tls://",
            "tls://host",
        ] {
            assert!(
                ServerAddress::parse(bad).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn tls_options_make_a_tcp_address_tls_and_are_refused_for_a_unix_socket() {
        let options = TlsOptions::new().with_server_name("hub");
        let tcp = ClientConfig::new("127.0.0.1:7421", "n").with_tls(options.clone());
        assert_eq!(
            tcp.address().ok(),
            Some(ServerAddress::Tls("127.0.0.1:7421".into(), options.clone()))
        );
        let unix = ClientConfig::new("unix:/run/sb.sock", "n").with_tls(options);
        assert!(unix.address().is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let config = ClientConfig::new("h:1", "n")
            .with_credentials(&b"token-value"[..])
            .with_password("alice", "password-value")
            .with_jwt("jwt-value")
            .with_hmac_key(b"key-value".to_vec());
        let shown = format!("{config:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("password-value"));
        assert!(!shown.contains("jwt-value"));
        assert!(!shown.contains("token-value"));
        assert!(!shown.contains("key-value"));
    }
}
