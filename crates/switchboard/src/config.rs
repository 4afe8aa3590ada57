//! `serve --config FILE`: the server's settings read from a TOML file.
//!
//! The file sits between the built-in defaults and the environment: an option given on
//! the command line or in an environment variable wins over the file's value. Relative
//! paths in the file are taken from the file's own directory, so that the same file works
//! whatever directory the server is started in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use switchboard_server::security::limits::{AddressLimits, LimitSettings, LimitSpec};
use switchboard_server::security::{
    JwtSpec, RoleSpec, SecurityConfig, TokenSpec, UnixUserSpec, UserSpec,
};
use switchboard_server::{ClientAuth, DiskReserve, TlsListenerConfig};

use crate::cli::{ServeArgs, SyncArg, max_frame_from, parse_bytes, parse_size};

/// The whole file. Every key is optional; a key the server does not know is an error, so
/// that a misspelt setting is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    listen: ListenSection,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    storage: StorageSection,
    #[serde(default)]
    cluster: ClusterSection,
    #[serde(default)]
    runtime: RuntimeSection,
    #[serde(default)]
    secrets: SecretsSection,
    /// `[[tls]]`: one table per TLS listener.
    #[serde(default)]
    tls: Vec<TlsSection>,
    /// `[auth]`, `[[users]]`, `[[tokens]]`, `[jwt]`, `[[unix_users]]` and `[roles.NAME]` (read into the server's
    /// `SecurityConfig` as they are; docs/SECURITY.md).
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    users: Vec<UserSpec>,
    #[serde(default)]
    tokens: Vec<TokenSpec>,
    #[serde(default)]
    jwt: Option<JwtSpec>,
    #[serde(default)]
    unix_users: Vec<UnixUserSpec>,
    #[serde(default)]
    roles: BTreeMap<String, RoleSpec>,
}

/// `[[tls]]`: a TLS listener, its certificate files and its client certificate policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    listen: String,
    cert: PathBuf,
    key: PathBuf,
    #[serde(default, deserialize_with = "client_auth")]
    client_auth: Option<ClientAuth>,
    client_ca: Option<PathBuf>,
}

/// `[auth]`: sessions without credentials, and failed logins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    /// The role of sessions that present no credentials once users are configured.
    anonymous_role: Option<String>,
    /// Serve a non-loopback address with no identities configured (an open hub).
    allow_anonymous: Option<bool>,
    /// Failed logins from one address within `failure_window` before it is refused.
    max_failures: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    failure_window: Option<Duration>,
    /// How long an address is refused after `max_failures`.
    #[serde(default, deserialize_with = "duration")]
    refuse_for: Option<Duration>,
    /// The delay of the answer to a first failed login; it doubles with each one.
    #[serde(default, deserialize_with = "duration")]
    failure_delay: Option<Duration>,
}

/// `[listen]`: where the server accepts connections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenSection {
    tcp: Option<Vec<String>>,
    #[serde(default, deserialize_with = "unix_socket")]
    unix: Option<UnixSocket>,
    backlog: Option<u32>,
}

/// `[http]`: the web listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    /// `listen = "ADDR"`, or `listen = false` for no web listener.
    #[serde(default, deserialize_with = "http_listen")]
    listen: Option<HttpListen>,
    /// Origins whose pages may open `/ws`, besides the listener's own.
    allowed_origins: Option<Vec<String>>,
    /// Certificate chain and key (PEM) for https and wss.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// `listen = "ADDR"` or `listen = false`.
#[derive(Debug)]
enum HttpListen {
    Addr(String),
    Off,
}

/// `unix = "PATH"` or `unix = false`.
#[derive(Debug)]
enum UnixSocket {
    Path(PathBuf),
    Off,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    file: Option<PathBuf>,
    #[serde(default, deserialize_with = "size")]
    max_bytes: Option<u64>,
    #[serde(default, deserialize_with = "log_level")]
    level: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    connection_summary: Option<Duration>,
}

/// `[limits]`: what one session, one message and all clients together may use.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    #[serde(default, deserialize_with = "duration")]
    heartbeat: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    frame_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "size")]
    partial_frame_budget: Option<u64>,
    #[serde(default, deserialize_with = "size")]
    max_relay_bytes: Option<u64>,
    #[serde(default, deserialize_with = "size")]
    max_body: Option<u64>,
    #[serde(default, deserialize_with = "size")]
    max_frame: Option<u64>,
    history: Option<u64>,
    #[serde(default, deserialize_with = "size")]
    max_memory: Option<u64>,
    require_create: Option<bool>,
    /// Connections open at once from one IP address (0: no limit).
    connections_per_ip: Option<u32>,
    /// New connections per second from one IP address (0: no limit).
    new_connections_per_second_per_ip: Option<u32>,
    /// New connections one IP address may open at once after a quiet spell.
    new_connection_burst_per_ip: Option<u32>,
    /// Hold loopback addresses to the per-address limits too (default: exempt).
    limit_loopback: Option<bool>,
    /// Per-user limits of sessions without a role (keys as in `[roles.NAME.limits]`).
    no_role: Option<LimitSpec>,
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    data_dir: Option<PathBuf>,
    memory: Option<bool>,
    sync: Option<SyncArg>,
    #[serde(default, deserialize_with = "duration")]
    sync_interval: Option<Duration>,
    #[serde(default, deserialize_with = "disk_reserve")]
    disk_reserve: Option<DiskReserve>,
    #[serde(default, deserialize_with = "size_in_bytes")]
    max_blob_bytes: Option<u64>,
    #[serde(default, deserialize_with = "size_in_bytes")]
    history_in_memory: Option<u64>,
}

/// `[cluster]`: run as a node of a cluster on Redis (docs/CLUSTER.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    url: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    prefix: Option<String>,
    durability_mismatch: Option<crate::cli::MismatchArg>,
    node_addr: Option<String>,
}

/// `[runtime]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeSection {
    #[serde(default, deserialize_with = "threads")]
    threads: Option<u16>,
}

/// `[secrets]`: the files holding them; the secrets themselves never go in this file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsSection {
    hmac_key_file: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
}

/// Reads `--config` if given and fills in every option not given on the command line or
/// in the environment.
pub fn apply(args: &mut ServeArgs) -> Result<()> {
    let Some(path) = args.config.clone() else {
        return Ok(());
    };
    let file = load(&path)?;
    let base = path.parent().unwrap_or(Path::new(""));
    file.apply_to(args, base)
        .with_context(|| format!("{}", path.display()))
}

/// Reads and parses the file; an error names the file, line and column.
fn load(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).map_err(|error| {
        let reason = error.message().trim().replace('\n', " ");
        match error.span() {
            Some(span) => {
                let (line, column) = line_and_column(&text, span.start);
                anyhow!("{}:{line}:{column}: {reason}", path.display())
            }
            None => anyhow!("{}: {reason}", path.display()),
        }
    })
}

/// What a reload puts in force: the security settings and limits of the file at `path`,
/// read and parsed again.
pub fn reloadable(path: &Path) -> Result<(SecurityConfig, LimitSettings)> {
    let file = load(path)?;
    let base = path.parent().unwrap_or(Path::new(""));
    let resolve = |relative: PathBuf| base.join(relative);
    let limits = file.limits.settings();
    let security = security_config(
        file.auth,
        file.users,
        file.tokens,
        file.jwt,
        file.unix_users,
        file.roles,
        &resolve,
    );
    // Checked by the server as it builds the policy to put in force, once.
    Ok((security, limits))
}

impl LimitsSection {
    /// The per-address limits (defaults for the keys left out) and those of sessions
    /// without a role.
    fn settings(&self) -> LimitSettings {
        let defaults = AddressLimits::default();
        LimitSettings {
            per_address: AddressLimits {
                connections_per_ip: self
                    .connections_per_ip
                    .unwrap_or(defaults.connections_per_ip),
                new_connections_per_second: self
                    .new_connections_per_second_per_ip
                    .unwrap_or(defaults.new_connections_per_second),
                new_connection_burst: self
                    .new_connection_burst_per_ip
                    .unwrap_or(defaults.new_connection_burst),
                limit_loopback: self.limit_loopback.unwrap_or(defaults.limit_loopback),
            },
            no_role: self.no_role.clone().unwrap_or_default(),
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Sets `slot` to the file's `value`, unless the option was given explicitly.
fn fill<T>(slot: &mut T, value: Option<T>, given: bool) {
    if let (Some(value), false) = (value, given) {
        *slot = value;
    }
}

impl ConfigFile {
    fn apply_to(self, args: &mut ServeArgs, base: &Path) -> Result<()> {
        let ConfigFile {
            listen,
            http,
            log,
            limits,
            storage,
            cluster,
            runtime,
            secrets,
            tls,
            auth,
            users,
            tokens,
            jwt,
            unix_users,
            roles,
        } = self;
        *args.limits = limits.settings();
        if storage.memory == Some(true) && storage.data_dir.is_some() {
            anyhow::bail!("[storage] sets both data_dir and memory = true: choose one");
        }
        let resolve = |path: PathBuf| base.join(path);
        let given = std::mem::take(&mut args.given);
        let is_given = |id: &str| given.iter().any(|given| given == id);

        fill(&mut args.listen, listen.tcp, is_given("listen"));
        if !is_given("unix") && !is_given("no_unix") {
            match listen.unix {
                Some(UnixSocket::Path(path)) => args.unix = Some(resolve(path)),
                Some(UnixSocket::Off) => args.no_unix = true,
                None => {}
            }
        }
        fill(&mut args.backlog, listen.backlog, is_given("backlog"));
        if !is_given("http") && !is_given("no_http") {
            match http.listen {
                Some(HttpListen::Addr(addr)) => {
                    args.http = addr;
                    args.http_chosen = true;
                }
                Some(HttpListen::Off) => args.no_http = true,
                None => {}
            }
        }
        fill(
            &mut args.http_allowed_origins,
            http.allowed_origins,
            is_given("http_allowed_origins"),
        );
        if !is_given("http_tls_cert") && !is_given("http_tls_key") {
            match (http.tls_cert, http.tls_key) {
                (Some(cert), Some(key)) => {
                    args.http_tls_cert = Some(resolve(cert));
                    args.http_tls_key = Some(resolve(key));
                }
                (None, None) => {}
                _ => anyhow::bail!("[http] needs both tls_cert and tls_key, or neither"),
            }
        }

        fill(
            &mut args.log_file,
            log.file.map(|path| Some(resolve(path))),
            is_given("log_file"),
        );
        fill(
            &mut args.log_max_bytes,
            log.max_bytes,
            is_given("log_max_bytes"),
        );
        fill(&mut args.log_level, log.level, is_given("log_level"));
        fill(
            &mut args.connection_summary,
            log.connection_summary,
            is_given("connection_summary"),
        );

        let heartbeat_ms = limits
            .heartbeat
            .map(|heartbeat| u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX));
        fill(
            &mut args.heartbeat_ms,
            heartbeat_ms,
            is_given("heartbeat_ms"),
        );
        fill(
            &mut args.handshake_timeout,
            limits.handshake_timeout,
            is_given("handshake_timeout"),
        );
        fill(
            &mut args.frame_timeout,
            limits.frame_timeout,
            is_given("frame_timeout"),
        );
        fill(
            &mut args.partial_frame_budget,
            limits.partial_frame_budget.map(to_usize).transpose()?,
            is_given("partial_frame_budget"),
        );
        fill(
            &mut args.max_relay_bytes,
            limits.max_relay_bytes.map(to_usize).transpose()?,
            is_given("max_relay_bytes"),
        );
        fill(
            &mut args.max_body,
            limits.max_body.map(Some),
            is_given("max_body"),
        );
        let max_frame = limits
            .max_frame
            .map(|bytes| max_frame_from(bytes).map(Some))
            .transpose()
            .map_err(|reason| anyhow!("[limits] {reason}"))?;
        fill(&mut args.max_frame, max_frame, is_given("max_frame"));
        fill(&mut args.history, limits.history, is_given("history"));
        fill(
            &mut args.max_memory,
            limits.max_memory.map(Some),
            is_given("max_memory"),
        );
        fill(
            &mut args.require_create,
            limits.require_create,
            is_given("require_create"),
        );

        // A data directory given explicitly (flag or SWITCHBOARD_DATA_DIR) wins over the
        // file's `memory = true`, as --memory wins over the file's data_dir.
        fill(
            &mut args.data_dir,
            storage.data_dir.map(resolve),
            is_given("data_dir") || is_given("memory"),
        );
        fill(
            &mut args.memory,
            storage.memory,
            is_given("memory") || is_given("data_dir"),
        );
        fill(&mut args.sync, storage.sync, is_given("sync"));
        fill(
            &mut args.sync_interval,
            storage.sync_interval,
            is_given("sync_interval"),
        );
        fill(
            &mut args.disk_reserve,
            storage.disk_reserve.map(Some),
            is_given("disk_reserve"),
        );
        fill(
            &mut args.max_blob_bytes,
            storage.max_blob_bytes.map(Some),
            is_given("max_blob_bytes"),
        );
        fill(
            &mut args.history_in_memory,
            storage.history_in_memory.map(Some),
            is_given("history_in_memory"),
        );

        fill(
            &mut args.cluster,
            cluster.url.map(Some),
            is_given("cluster"),
        );
        fill(
            &mut args.cluster_timeout,
            cluster.timeout,
            is_given("cluster_timeout"),
        );
        fill(
            &mut args.cluster_prefix,
            cluster.prefix,
            is_given("cluster_prefix"),
        );
        fill(
            &mut args.cluster_durability_mismatch,
            cluster.durability_mismatch,
            is_given("cluster_durability_mismatch"),
        );
        fill(
            &mut args.cluster_node_addr,
            cluster.node_addr,
            is_given("cluster_node_addr"),
        );
        fill(
            &mut args.threads,
            runtime.threads.map(Some),
            is_given("threads"),
        );

        fill(
            &mut args.hmac_key_file,
            secrets.hmac_key_file.map(|path| Some(resolve(path))),
            is_given("hmac_key_file"),
        );
        // SWITCHBOARD_ADMIN_TOKEN is the environment's way to set the admin token, so it
        // wins over the file's token file; set but empty, it sets nothing.
        let token_in_env = args
            .admin_token
            .as_deref()
            .is_some_and(|token| !token.is_empty());
        fill(
            &mut args.admin_token_file,
            secrets.admin_token_file.map(|path| Some(resolve(path))),
            is_given("admin_token_file") || token_in_env,
        );
        // The flags' listeners, when given, replace the file's (see config_from).
        args.tls_from_file = tls
            .into_iter()
            .map(|listener| {
                let client_auth = listener.client_auth.unwrap_or(match listener.client_ca {
                    Some(_) => ClientAuth::Required,
                    None => ClientAuth::None,
                });
                if client_auth != ClientAuth::None && listener.client_ca.is_none() {
                    anyhow::bail!(
                        "[[tls]] listen = {:?}: client_auth = \"{client_auth}\" needs client_ca",
                        listener.listen
                    );
                }
                Ok(TlsListenerConfig {
                    addr: listener.listen,
                    cert_file: resolve(listener.cert),
                    key_file: resolve(listener.key),
                    client_auth,
                    client_ca_file: listener.client_ca.map(resolve),
                })
            })
            .collect::<Result<_>>()?;
        fill(
            &mut args.allow_anonymous,
            auth.allow_anonymous,
            is_given("allow_anonymous"),
        );
        *args.security = security_config(auth, users, tokens, jwt, unix_users, roles, &resolve);
        args.security.check().map_err(|error| anyhow!("{error}"))?;
        args.given = given;
        switchboard_server::security::validate(&args.security)?;
        Ok(())
    }
}

/// The identities of the file as the server takes them; key files relative to the file.
fn security_config(
    auth: AuthSection,
    users: Vec<UserSpec>,
    tokens: Vec<TokenSpec>,
    jwt: Option<JwtSpec>,
    unix_users: Vec<UnixUserSpec>,
    roles: BTreeMap<String, RoleSpec>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> SecurityConfig {
    let jwt = jwt.map(|mut jwt| {
        jwt.secret_file = jwt.secret_file.map(resolve);
        jwt.public_key_file = jwt.public_key_file.map(resolve);
        jwt
    });
    let mut security = SecurityConfig {
        users,
        tokens,
        jwt,
        unix_users,
        roles,
        anonymous_role: auth.anonymous_role,
        ..SecurityConfig::default()
    };
    let throttle = &mut security.throttle;
    fill(&mut throttle.max_failures, auth.max_failures, false);
    fill(&mut throttle.window, auth.failure_window, false);
    fill(&mut throttle.refuse_for, auth.refuse_for, false);
    fill(&mut throttle.delay, auth.failure_delay, false);
    security
}

fn to_usize(bytes: u64) -> Result<usize> {
    usize::try_from(bytes).map_err(|_| anyhow!("{bytes} bytes is too large for this machine"))
}

/// A size: a number of bytes, or a string with a unit read by `parse`.
struct SizeVisitor(fn(&str) -> Result<u64, String>);

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a size: a number of bytes, or a string such as \"512MiB\"")
    }

    fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<u64, E> {
        Ok(bytes)
    }

    fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<u64, E> {
        u64::try_from(bytes).map_err(|_| E::custom(format!("{bytes} is not a size")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
        (self.0)(text).map_err(E::custom)
    }
}

/// A size with binary units (`512MiB`, `2G`), read as --max-memory reads it.
fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    deserializer
        .deserialize_any(SizeVisitor(parse_bytes))
        .map(Some)
}

/// A size as --max-blob-bytes reads it (`MB` decimal, `MiB` binary).
fn size_in_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    deserializer
        .deserialize_any(SizeVisitor(parse_size))
        .map(Some)
}

/// A duration such as "100ms", "30s" or "1m".
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map(Some).map_err(|error| {
        de::Error::custom(format!(
            "{text:?} is not a duration ({error}; e.g. \"100ms\", \"30s\")"
        ))
    })
}

/// A log level: off, error, warn, info, debug or trace.
fn log_level<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let level = String::deserialize(deserializer)?;
    check_log_level(&level).map_err(de::Error::custom)?;
    Ok(Some(level))
}

/// Whether `level` is one `--log-level` takes.
pub fn check_log_level(level: &str) -> Result<(), String> {
    level
        .parse::<tracing_subscriber::filter::LevelFilter>()
        .map(drop)
        .map_err(|_| {
            format!("log level {level:?} is not one of off, error, warn, info, debug, trace")
        })
}

/// A reserve as --disk-reserve reads it: a size, or a percentage such as "5%".
fn disk_reserve<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DiskReserve>, D::Error> {
    struct ReserveVisitor;

    impl Visitor<'_> for ReserveVisitor {
        type Value = DiskReserve;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a size (\"1GiB\") or a percentage of the volume (\"5%\")")
        }

        fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<DiskReserve, E> {
            Ok(DiskReserve::Bytes(bytes))
        }

        fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<DiskReserve, E> {
            SizeVisitor(parse_size)
                .visit_i64(bytes)
                .map(DiskReserve::Bytes)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<DiskReserve, E> {
            text.parse().map_err(E::custom)
        }
    }
    deserializer.deserialize_any(ReserveVisitor).map(Some)
}

/// A client certificate policy: "none", "optional" or "required".
fn client_auth<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ClientAuth>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(de::Error::custom)
}

/// Worker threads, 1..=1024 as --threads takes them.
fn threads<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u16>, D::Error> {
    let threads = u64::deserialize(deserializer)?;
    match u16::try_from(threads) {
        Ok(threads @ 1..=1024) => Ok(Some(threads)),
        _ => Err(de::Error::custom(format!(
            "{threads} threads: give 1 to 1024"
        ))),
    }
}

/// `unix = "PATH"` for a socket, `unix = false` for none.
fn unix_socket<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<UnixSocket>, D::Error> {
    struct UnixVisitor;

    impl Visitor<'_> for UnixVisitor {
        type Value = UnixSocket;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("the socket's path, or false for no Unix socket")
        }

        fn visit_str<E: de::Error>(self, path: &str) -> Result<UnixSocket, E> {
            if path.is_empty() {
                return Err(E::custom("give the socket's path, or false for none"));
            }
            Ok(UnixSocket::Path(PathBuf::from(path)))
        }

        fn visit_bool<E: de::Error>(self, on: bool) -> Result<UnixSocket, E> {
            match on {
                false => Ok(UnixSocket::Off),
                true => Err(E::custom(
                    "unix = true: give the socket's path, or false for none",
                )),
            }
        }
    }
    deserializer.deserialize_any(UnixVisitor).map(Some)
}

/// `listen = "ADDR"` for the web listener, `listen = false` for none.
fn http_listen<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<HttpListen>, D::Error> {
    struct HttpVisitor;

    impl Visitor<'_> for HttpVisitor {
        type Value = HttpListen;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter
                .write_str("an address such as \"127.0.0.1:7480\", or false for no web listener")
        }

        fn visit_str<E: de::Error>(self, addr: &str) -> Result<HttpListen, E> {
            if addr.is_empty() {
                return Err(E::custom("give the address, or false for none"));
            }
            Ok(HttpListen::Addr(addr.to_owned()))
        }

        fn visit_bool<E: de::Error>(self, on: bool) -> Result<HttpListen, E> {
            match on {
                false => Ok(HttpListen::Off),
                true => Err(E::custom(
                    "listen = true: give the address, or false for none",
                )),
            }
        }
    }
    deserializer.deserialize_any(HttpVisitor).map(Some)
}

#[cfg(test)]
mod tests {
    use super::line_and_column;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "[a]\nkey = 1\n  bad = \"é\"x\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 4), (2, 1));
        assert_eq!(line_and_column(text, 10), (2, 7));
        let x = text.find('x').unwrap_or_default();
        assert_eq!(line_and_column(text, x), (3, 12));
    }
}
