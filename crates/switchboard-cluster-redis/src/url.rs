//! Where Redis is: the cluster URL parsed into one server or a set of Sentinels, and
//! shown in logs without its password.

use std::fmt;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// The port of a Sentinel when the URL gives none.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

const STANDALONE_FORM: &str = "redis://[[user]:password@]host[:port][/db]";
const UNIX_FORM: &str = "unix:///path/to/redis.sock";
const SENTINEL_FORM: &str =
    "redis+sentinel://[[user]:password@]host1:port1,host2:port2,host3[:port3]/MASTER[/db]";

/// The Redis a node talks to.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One server at a fixed address (TCP or a Unix socket).
    Standalone(ConnectionInfo),
    /// The master that the Sentinels name `master`, asked for at every connection.
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        master: String,
        /// The master's password (the Sentinels themselves are asked without one).
        password: Option<String>,
        username: Option<String>,
        db: i64,
    },
}

/// A cluster URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("TLS to Redis is not supported yet: use {STANDALONE_FORM} or {SENTINEL_FORM}")]
    Tls,
    #[error(
        "unknown Redis URL scheme `{0}`: expected {STANDALONE_FORM}, {UNIX_FORM} or {SENTINEL_FORM}"
    )]
    Scheme(String),
    #[error("bad Redis URL ({reason}): expected {expected}")]
    Invalid {
        reason: String,
        expected: &'static str,
    },
}

fn invalid(reason: impl Into<String>, expected: &'static str) -> UrlError {
    UrlError::Invalid {
        reason: reason.into(),
        expected,
    }
}

/// Parses a cluster URL: `redis://`, `unix://` (or `redis+unix://`) or
/// `redis+sentinel://`.
pub fn parse(url: &str) -> Result<RedisTarget, UrlError> {
    let url = url.trim();
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(invalid("no `scheme://`", STANDALONE_FORM));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "redis" => parse_with_crate(url, STANDALONE_FORM),
        "unix" | "redis+unix" => parse_with_crate(url, UNIX_FORM),
        "redis+sentinel" => parse_sentinel(&url[scheme.len() + 3..]),
        "rediss" | "valkeys" | "rediss+sentinel" => Err(UrlError::Tls),
        other => Err(UrlError::Scheme(other.to_owned())),
    }
}

fn parse_with_crate(url: &str, expected: &'static str) -> Result<RedisTarget, UrlError> {
    // The crate's messages never quote the URL, so the password cannot leak through them.
    let info = url
        .into_connection_info()
        .map_err(|error| invalid(error.to_string(), expected))?;
    Ok(RedisTarget::Standalone(info))
}

fn parse_sentinel(rest: &str) -> Result<RedisTarget, UrlError> {
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("no master name", SENTINEL_FORM))?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => {
            let (user, password) = userinfo.split_once(':').ok_or_else(|| {
                invalid("credentials without `:` before the password", SENTINEL_FORM)
            })?;
            let user = percent_decode(user)?;
            let password = percent_decode(password)?;
            (
                (!user.is_empty()).then_some(user),
                (!password.is_empty()).then_some(password),
            )
        }
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        let (host, port) = split_host_port(host)?;
        let info = (host, port)
            .into_connection_info()
            .map_err(|error| invalid(error.to_string(), SENTINEL_FORM))?;
        sentinels.push(info);
    }
    let (master, db) = match path.split_once('/') {
        Some((master, db)) => (master, db),
        None => (path, ""),
    };
    if master.is_empty() {
        return Err(invalid("no master name", SENTINEL_FORM));
    }
    let master = percent_decode(master)?;
    let db = match db.trim_end_matches('/') {
        "" => 0,
        db => db
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| invalid(format!("database `{db}` is not a number"), SENTINEL_FORM))?,
    };
    Ok(RedisTarget::Sentinel {
        sentinels,
        master,
        password,
        username,
        db,
    })
}

fn split_host_port(text: &str) -> Result<(String, u16), UrlError> {
    if text.is_empty() {
        return Err(invalid("an empty Sentinel address", SENTINEL_FORM));
    }
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid(format!("`{text}` lacks its `]`"), SENTINEL_FORM))?;
        match after {
            "" => (host, None),
            after => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(invalid(format!("`{text}` is not host:port"), SENTINEL_FORM));
                }
            },
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(invalid(format!("`{text}` has no host"), SENTINEL_FORM));
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid(format!("port `{port}` of `{text}`"), SENTINEL_FORM))?,
    };
    Ok((host.to_owned(), port))
}

fn percent_decode(text: &str) -> Result<String, UrlError> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| invalid("a bad %-escape", SENTINEL_FORM))?;
            decoded.push(hex);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| invalid("a %-escape that is not UTF-8", SENTINEL_FORM))
}

impl RedisTarget {
    /// The connection settings of the master at `addr` (found through the Sentinels):
    /// the URL's credentials and database.
    pub fn master_info(&self, addr: ConnectionAddr) -> Option<ConnectionInfo> {
        match self {
            RedisTarget::Standalone(_) => None,
            RedisTarget::Sentinel {
                password,
                username,
                db,
                ..
            } => {
                let mut settings = RedisConnectionInfo::default().set_db(*db);
                if let Some(password) = password {
                    settings = settings.set_password(password);
                }
                if let Some(username) = username {
                    settings = settings.set_username(username);
                }
                addr.into_connection_info()
                    .ok()
                    .map(|info| info.set_redis_settings(settings))
            }
        }
    }
}

/// `info` as a URL without its password.
pub fn redacted(info: &ConnectionInfo) -> String {
    let settings = info.redis_settings();
    let user = settings
        .username()
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    let db = match settings.db() {
        0 => String::new(),
        db => format!("/{db}"),
    };
    match info.addr() {
        ConnectionAddr::Unix(path) => format!("unix://{}{db}", path.display()),
        addr => format!("redis://{user}{addr}{db}"),
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Standalone(info) => f.write_str(&redacted(info)),
            RedisTarget::Sentinel {
                sentinels,
                master,
                username,
                db,
                ..
            } => {
                f.write_str("redis+sentinel://")?;
                if let Some(user) = username {
                    write!(f, "{user}@")?;
                }
                for (index, sentinel) in sentinels.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", sentinel.addr())?;
                }
                write!(f, "/{master}")?;
                if *db != 0 {
                    write!(f, "/{db}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standalone(url: &str) -> ConnectionInfo {
        match parse(url) {
            Ok(RedisTarget::Standalone(info)) => info,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn plain_url_defaults_port_and_db() {
        let info = standalone("redis://example.com");
        assert_eq!(
            info.addr(),
            &ConnectionAddr::Tcp("example.com".into(), 6379)
        );
        assert_eq!(info.redis_settings().db(), 0);
        assert_eq!(info.redis_settings().password(), None);
    }

    #[test]
    fn url_with_credentials_port_and_db() {
        let info = standalone("redis://alice:s3cret@10.0.0.1:7000/3");
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("10.0.0.1".into(), 7000));
        assert_eq!(info.redis_settings().username(), Some("alice"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 3);
        let shown = parse("redis://alice:s3cret@10.0.0.1:7000/3")
            .map(|target| target.to_string())
            .unwrap_or_default();
        assert_eq!(shown, "redis://alice@10.0.0.1:7000/3");
    }

    #[test]
    fn password_only() {
        let info = standalone("redis://:pw@localhost:7001");
        assert_eq!(info.redis_settings().username(), None);
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert!(!standalone_display("redis://:pw@localhost:7001").contains("pw"));
    }

    fn standalone_display(url: &str) -> String {
        parse(url).map(|t| t.to_string()).unwrap_or_default()
    }

    #[cfg(unix)]
    #[test]
    fn unix_socket_forms() {
        for url in ["unix:///tmp/redis.sock", "redis+unix:///tmp/redis.sock"] {
            let info = standalone(url);
            assert_eq!(
                info.addr(),
                &ConnectionAddr::Unix("/tmp/redis.sock".into()),
                "{url}"
            );
            assert_eq!(standalone_display(url), "unix:///tmp/redis.sock");
        }
    }

    #[test]
    fn tls_is_refused_clearly() {
        let error = parse("rediss://host:6380").err();
        assert_eq!(error, Some(UrlError::Tls));
        assert!(
            UrlError::Tls
                .to_string()
                .contains("TLS to Redis is not supported yet")
        );
    }

    #[test]
    fn unknown_scheme_and_missing_scheme() {
        let error = parse("http://host").err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("`http`")
                && e.contains("redis://")
                && e.contains("redis+sentinel://")),
            "{error:?}"
        );
        assert!(matches!(parse("host:6379"), Err(UrlError::Invalid { .. })));
    }

    #[test]
    fn bad_standalone_port_is_an_error_without_the_password() {
        let error = parse("redis://:hunter2@host:notaport")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("expected redis://"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn sentinel_url_with_all_parts() {
        let target = parse("redis+sentinel://bob:p%40ss@h1:1,h2:2,h3/mymaster/2");
        let Ok(RedisTarget::Sentinel {
            sentinels,
            master,
            password,
            username,
            db,
        }) = target
        else {
            panic!("{target:?}");
        };
        let addrs: Vec<_> = sentinels.iter().map(|s| s.addr().clone()).collect();
        assert_eq!(
            addrs,
            vec![
                ConnectionAddr::Tcp("h1".into(), 1),
                ConnectionAddr::Tcp("h2".into(), 2),
                ConnectionAddr::Tcp("h3".into(), DEFAULT_SENTINEL_PORT),
            ]
        );
        // The Sentinels are asked without the master's credentials.
        assert!(
            sentinels
                .iter()
                .all(|s| s.redis_settings().password().is_none())
        );
        assert_eq!(master, "mymaster");
        assert_eq!(password.as_deref(), Some("p@ss"));
        assert_eq!(username.as_deref(), Some("bob"));
        assert_eq!(db, 2);
    }

    #[test]
    fn sentinel_url_minimal_and_its_display() {
        let url = "redis+sentinel://:pw@127.0.0.1:5000,[::1]:5001/main";
        let target = parse(url);
        let Ok(RedisTarget::Sentinel {
            ref sentinels,
            ref master,
            ref password,
            ref username,
            db,
        }) = target
        else {
            panic!("{target:?}");
        };
        assert_eq!(
            sentinels[1].addr(),
            &ConnectionAddr::Tcp("::1".into(), 5001)
        );
        assert_eq!(master, "main");
        assert_eq!(password.as_deref(), Some("pw"));
        assert_eq!(username, &None);
        assert_eq!(db, 0);
        let shown = target.map(|t| t.to_string()).unwrap_or_default();
        assert_eq!(shown, "redis+sentinel://127.0.0.1:5000,::1:5001/main");
    }

    #[test]
    fn sentinel_master_info_carries_credentials_and_db() {
        let target = parse("redis+sentinel://u:pw@h1/m/4");
        let info = target
            .ok()
            .and_then(|t| t.master_info(ConnectionAddr::Tcp("10.1.1.1".into(), 7777)));
        let Some(info) = info else {
            panic!("no master info");
        };
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("10.1.1.1".into(), 7777));
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(info.redis_settings().username(), Some("u"));
        assert_eq!(info.redis_settings().db(), 4);
    }

    #[test]
    fn sentinel_url_errors() {
        let cases = [
            ("redis+sentinel://h1:1,h2:2", "no master name"),
            ("redis+sentinel://h1:1,h2:2/", "no master name"),
            ("redis+sentinel://h1:1,,h2/m", "empty Sentinel address"),
            ("redis+sentinel://h1:port/m", "port `port`"),
            ("redis+sentinel://h1:0/m", "port `0`"),
            ("redis+sentinel://:1/m", "has no host"),
            ("redis+sentinel://[::1/m", "lacks its `]`"),
            ("redis+sentinel://h1/m/x", "database `x`"),
            ("redis+sentinel://h1/m/-1", "database `-1`"),
            ("redis+sentinel://secret@h1/m", "credentials without `:`"),
            ("redis+sentinel://:p%zz@h1/m", "%-escape"),
        ];
        for (url, reason) in cases {
            let error = parse(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(reason), "{url}: {error}");
            assert!(error.contains("redis+sentinel://"), "{url}: {error}");
        }
    }
}
