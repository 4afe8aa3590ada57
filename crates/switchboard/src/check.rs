//! `serve --check`: prints the settings the server would run with, in the config file's
//! own sections and keys, with every secret masked.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use switchboard_server::{DiskReserve, ServerConfig};

use crate::cli::{CheckFormat, ServeArgs, SyncArg};

/// The effective settings, shaped like the config file.
#[derive(Serialize)]
struct Effective {
    listen: Listen,
    http: Http,
    log: Log,
    limits: Limits,
    storage: Storage,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Cluster>,
    runtime: Runtime,
    secrets: Secrets,
    auth: Auth,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt: Option<Jwt>,
    /// Last: TOML writes arrays of tables after the plain tables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<User>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tokens: Vec<Token>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unix_users: Vec<UnixUser>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tls: Vec<Tls>,
    /// What each role may do and use, as the file says it.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    roles: std::collections::BTreeMap<String, switchboard_server::security::RoleSpec>,
}

/// A TLS listener, as `[[tls]]` writes it.
#[derive(Serialize)]
struct Tls {
    listen: String,
    cert: PathBuf,
    key: PathBuf,
    client_auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ca: Option<PathBuf>,
}

/// `[auth]`.
#[derive(Serialize)]
struct Auth {
    #[serde(skip_serializing_if = "Option::is_none")]
    anonymous_role: Option<String>,
    allow_anonymous: bool,
    max_failures: u32,
    failure_window: String,
    refuse_for: String,
    failure_delay: String,
}

/// `[[users]]`, the password hash masked.
#[derive(Serialize)]
struct User {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'static str>,
    roles: Vec<String>,
}

/// `[[tokens]]`, the digest masked.
#[derive(Serialize)]
struct Token {
    name: String,
    user: String,
    sha256: &'static str,
    roles: Vec<String>,
}

/// `[jwt]`: where its key is; the key files hold no secret but the HS256 one.
#[derive(Serialize)]
struct Jwt {
    algorithm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    user_claim: String,
    roles_claim: String,
}

#[derive(Serialize)]
struct UnixUser {
    uid: u32,
    user: String,
}

/// What `--check` shows instead of a secret.
const MASKED: &str = "(set, not shown)";

#[derive(Serialize)]
struct Listen {
    tcp: Vec<String>,
    unix: UnixSetting,
    backlog: u32,
}

#[derive(Serialize)]
struct Http {
    /// The address, or `false` for no web listener.
    listen: HttpListen,
    allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum HttpListen {
    Addr(String),
    Off(bool),
}

/// A socket path, or `false` for none (as the file writes it).
#[derive(Serialize)]
#[serde(untagged)]
enum UnixSetting {
    Path(PathBuf),
    Off(bool),
}

#[derive(Serialize)]
struct Log {
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
    max_bytes: String,
    level: String,
    connection_summary: String,
}

#[derive(Serialize)]
struct Limits {
    heartbeat: String,
    handshake_timeout: String,
    frame_timeout: String,
    partial_frame_budget: String,
    max_relay_bytes: String,
    max_body: String,
    max_frame: String,
    history: u64,
    max_memory: String,
    require_create: bool,
    connections_per_ip: u32,
    new_connections_per_second_per_ip: u32,
    new_connection_burst_per_ip: u32,
    limit_loopback: bool,
}

#[derive(Serialize)]
struct Storage {
    memory: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    sync: SyncArg,
    sync_interval: String,
    disk_reserve: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_blob_bytes: Option<String>,
    history_in_memory: String,
}

/// `[cluster]`, with any password in the URL masked.
#[derive(Serialize)]
struct Cluster {
    url: String,
    timeout: String,
    prefix: String,
    durability_mismatch: crate::cli::MismatchArg,
    node_addr: String,
}

/// A Redis URL with its password (if any) masked.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[derive(Serialize)]
struct Runtime {
    threads: usize,
}

/// Where the secrets come from; never the secrets.
#[derive(Serialize)]
struct Secrets {
    #[serde(skip_serializing_if = "Option::is_none")]
    hmac_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token: Option<&'static str>,
}

/// Validates what can be checked without starting the server (the log level, the secret
/// files) and prints the effective settings.
pub fn run(args: &ServeArgs, format: CheckFormat) -> Result<()> {
    crate::config::check_log_level(&args.log_level).map_err(anyhow::Error::msg)?;
    // Read only to prove they are readable and not empty; what they hold is dropped.
    let _secrets = crate::read_serve_secrets(args)?;
    let config = crate::serve::config_from(args, None, None);
    // Reads each TLS listener's files as the server would, so a bad one fails here.
    for listener in &config.tls {
        listener.check().with_context(|| {
            let origin = match &args.config {
                Some(path) if args.tls.is_empty() => format!(" in {}", path.display()),
                _ => String::new(),
            };
            format!("TLS listener {}{origin}", listener.addr)
        })?;
    }
    crate::serve::protected_mode(&config, crate::serve::web_addr(args), args.allow_anonymous)?;
    let effective = effective(args, &config);
    if format == CheckFormat::Json {
        let json =
            serde_json::to_string_pretty(&effective).context("cannot format the settings")?;
        crate::outln!("{json}");
    } else {
        let text = toml::to_string(&effective).context("cannot format the settings")?;
        match &args.config {
            Some(path) => crate::outln!("# effective settings, from {}", path.display()),
            None => crate::outln!("# effective settings (no config file)"),
        }
        crate::outln!("{}", text.trim_end());
    }
    Ok(())
}

fn effective(args: &ServeArgs, config: &ServerConfig) -> Effective {
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    Effective {
        listen: Listen {
            tcp: config.tcp.clone(),
            unix: config
                .unix
                .clone()
                .map_or(UnixSetting::Off(false), UnixSetting::Path),
            backlog: config.backlog,
        },
        http: Http {
            listen: match args.no_http {
                true => HttpListen::Off(false),
                false => HttpListen::Addr(args.http.clone()),
            },
            allowed_origins: args.http_allowed_origins.clone(),
            tls_cert: args.http_tls_cert.clone(),
            tls_key: args.http_tls_key.clone(),
        },
        log: Log {
            file: args.log_file.clone(),
            max_bytes: size(args.log_max_bytes),
            level: args.log_level.clone(),
            connection_summary: duration(config.connection_summary_interval),
        },
        limits: Limits {
            heartbeat: duration(config.heartbeat),
            handshake_timeout: duration(config.handshake_timeout),
            frame_timeout: duration(config.frame_timeout),
            partial_frame_budget: size(config.partial_frame_budget as u64),
            max_relay_bytes: size(config.max_relay_bytes as u64),
            max_body: size(config.max_body),
            max_frame: size(u64::from(config.max_frame)),
            history: config.default_history,
            max_memory: size(config.max_memory),
            require_create: config.require_channel_creation,
            connections_per_ip: config.limits.per_address.connections_per_ip,
            new_connections_per_second_per_ip: config.limits.per_address.new_connections_per_second,
            new_connection_burst_per_ip: config.limits.per_address.new_connection_burst,
            limit_loopback: config.limits.per_address.limit_loopback,
        },
        storage: Storage {
            memory: config.data_dir.is_none(),
            data_dir: config.data_dir.clone(),
            sync: args.sync,
            sync_interval: duration(args.sync_interval),
            disk_reserve: match config.disk_reserve {
                DiskReserve::Bytes(bytes) => size(bytes),
                DiskReserve::Percent(percent) => format!("{percent}%"),
                DiskReserve::Default => "2% of the volume, at most 1GiB".to_owned(),
            },
            max_blob_bytes: config.max_blob_bytes.map(size),
            history_in_memory: size(config.history_in_memory),
        },
        cluster: args.cluster.as_ref().map(|url| Cluster {
            url: mask_password(url),
            timeout: duration(args.cluster_timeout),
            prefix: args.cluster_prefix.clone(),
            durability_mismatch: args.cluster_durability_mismatch,
            node_addr: args.cluster_node_addr.clone(),
        }),
        runtime: Runtime { threads },
        secrets: Secrets {
            hmac_key_file: args.hmac_key_file.clone(),
            admin_token_file: args.admin_token_file.clone(),
            admin_token: (args.admin_token_file.is_none()
                && args
                    .admin_token
                    .as_deref()
                    .is_some_and(|token| !token.is_empty()))
            .then_some("(set in SWITCHBOARD_ADMIN_TOKEN)"),
        },
        auth: Auth {
            anonymous_role: config.security.anonymous_role.clone(),
            allow_anonymous: args.allow_anonymous,
            max_failures: config.security.throttle.max_failures,
            failure_window: duration(config.security.throttle.window),
            refuse_for: duration(config.security.throttle.refuse_for),
            failure_delay: duration(config.security.throttle.delay),
        },
        users: config
            .security
            .users
            .iter()
            .map(|user| User {
                name: user.name.clone(),
                password: user.password.as_ref().map(|_| MASKED),
                roles: user.roles.clone(),
            })
            .collect(),
        tokens: config
            .security
            .tokens
            .iter()
            .map(|token| Token {
                name: token.name.clone(),
                user: token.user.clone(),
                sha256: MASKED,
                roles: token.roles.clone(),
            })
            .collect(),
        jwt: config.security.jwt.as_ref().map(|jwt| Jwt {
            algorithm: format!("{:?}", jwt.algorithm),
            secret_file: jwt.secret_file.clone(),
            public_key_file: jwt.public_key_file.clone(),
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            user_claim: jwt.user_claim.clone().unwrap_or_else(|| "sub".to_owned()),
            roles_claim: jwt
                .roles_claim
                .clone()
                .unwrap_or_else(|| "roles".to_owned()),
        }),
        unix_users: config
            .security
            .unix_users
            .iter()
            .map(|unix| UnixUser {
                uid: unix.uid,
                user: unix.user.clone(),
            })
            .collect(),
        roles: config.security.roles.clone(),
        tls: config
            .tls
            .iter()
            .map(|listener| Tls {
                listen: listener.addr.clone(),
                cert: listener.cert_file.clone(),
                key: listener.key_file.clone(),
                client_auth: listener.client_auth.to_string(),
                client_ca: listener.client_ca_file.clone(),
            })
            .collect(),
    }
}

/// `bytes` in the largest binary unit that divides it exactly: "64MiB", "1000".
fn size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn duration(duration: std::time::Duration) -> String {
    humantime::format_duration(duration).to_string()
}
