//! `switchboard serve`: runs the hub until STOP, SIGINT or SIGTERM, then drains and exits 0.

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use switchboard_server::{ClientAuth, Server, ServerConfig, SyncPolicy, TlsListenerConfig};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{ServeArgs, SyncArg};
use crate::log_file::RotatingFile;

/// The Unix socket a server listening on `port` uses by default, and that `stop` tries.
pub fn default_unix_socket(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("switchboard-{port}.sock"))
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// How the log file formats fields: as the terminal does, but as a type of its own.
/// Formatted span fields are kept per formatter type and shared by the layers that use
/// it, so with the same type the file would get the span fields the terminal layer
/// formatted, colour codes included.
struct FileFields(DefaultFields);

impl<'writer> FormatFields<'writer> for FileFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

/// Logs to stderr and, with --log-file, to a file capped at --log-max-bytes, in the
/// categories GENERAL, CONNECTION and ERROR (the event targets). Colours only on a terminal: never in the file, nor on
/// a stderr that is a file or a pipe.
fn init_logging(args: &ServeArgs) -> Result<()> {
    let level = &args.log_level;
    let filter = EnvFilter::try_from_default_env().or_else(|_| {
        EnvFilter::try_new(format!(
            "warn,GENERAL={level},CONNECTION={level},ERROR={level}"
        ))
    })?;
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let file = match &args.log_file {
        Some(path) => {
            let file = RotatingFile::open(path, args.log_max_bytes)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(FileFields(DefaultFields::new()))
                    .with_ansi(false)
                    .with_writer(Mutex::new(file)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .context("cannot set up logging")?;
    Ok(())
}

/// The server's configuration from the options (after the config file is applied).
pub fn config_from(
    args: &ServeArgs,
    hmac_key: Option<Vec<u8>>,
    admin_token: Option<String>,
) -> ServerConfig {
    let unix = if args.no_unix {
        None
    } else {
        args.unix.clone().or_else(|| {
            let port = args.listen.first().and_then(|addr| port_of(addr))?;
            (port != 0 && cfg!(unix)).then(|| default_unix_socket(port))
        })
    };
    let defaults = ServerConfig::default();
    let tls = if args.tls.is_empty() {
        args.tls_from_file.clone()
    } else {
        args.tls
            .iter()
            .map(|addr| TlsListenerConfig {
                addr: addr.clone(),
                cert_file: args.tls_cert.clone().unwrap_or_default(),
                key_file: args.tls_key.clone().unwrap_or_default(),
                client_auth: args.tls_client_auth.unwrap_or(match args.tls_client_ca {
                    Some(_) => ClientAuth::Required,
                    None => ClientAuth::None,
                }),
                client_ca_file: args.tls_client_ca.clone(),
            })
            .collect()
    };
    let sync = match args.sync {
        SyncArg::Always => SyncPolicy::Always,
        SyncArg::Interval => SyncPolicy::Interval(args.sync_interval),
        SyncArg::Never => SyncPolicy::Never,
    };
    ServerConfig {
        tcp: args.listen.clone(),
        tls,
        unix,
        hmac_key,
        admin_token,
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(1)),
        max_relay_bytes: args.max_relay_bytes,
        max_body: args.max_body.unwrap_or(defaults.max_body),
        max_frame: args.max_frame.unwrap_or(defaults.max_frame),
        default_history: args.history,
        require_channel_creation: args.require_create,
        data_dir: (!args.memory).then(|| args.data_dir.clone()),
        sync,
        disk_reserve: args.disk_reserve.unwrap_or(defaults.disk_reserve),
        max_blob_bytes: args.max_blob_bytes,
        history_in_memory: args.history_in_memory.unwrap_or(defaults.history_in_memory),
        backlog: args.backlog,
        handshake_timeout: args.handshake_timeout,
        frame_timeout: args.frame_timeout,
        partial_frame_budget: args.partial_frame_budget,
        connection_summary_interval: args.connection_summary,
        max_memory: args.max_memory.unwrap_or(defaults.max_memory),
        security: (*args.security).clone(),
        limits: (*args.limits).clone(),
        ..defaults
    }
}

pub async fn run(
    args: ServeArgs,
    hmac_key: Option<Vec<u8>>,
    admin_token: Option<String>,
) -> Result<()> {
    init_logging(&args)?;
    let terminated = termination();
    let hangups = hangups();
    let config = config_from(&args, hmac_key, admin_token);
    protected_mode(&config, web_addr(&args), args.allow_anonymous)?;
    let mut builder = Server::builder().config(config.clone());
    if let Some(url) = &args.cluster {
        let (backplane, node_link) = join_cluster(&args, url).await?;
        builder = builder.backplane(backplane).node_link(node_link);
    }
    if let Some(path) = args.config.clone() {
        // A reload re-reads the file; only its users, roles and limits change.
        builder = builder.reload_source(move || {
            let (security, limits) =
                crate::config::reloadable(&path).map_err(|error| format!("{error:#}"))?;
            Ok(ServerConfig {
                security,
                limits,
                ..config.clone()
            })
        });
    }
    let handle = builder.start().await.context("cannot start the server")?;
    for addr in handle.tcp_addrs() {
        eprintln!("switchboard listening on {addr}");
    }
    for addr in handle.tls_addrs() {
        eprintln!("switchboard listening on tls://{addr}");
    }
    if let Some(path) = handle.unix_path() {
        eprintln!("switchboard listening on unix:{}", path.display());
    }
    let web = match args.no_http {
        true => None,
        false => {
            let config = switchboard_web::WebConfig {
                addr: args.http.clone(),
                allowed_origins: args.http_allowed_origins.clone(),
                tls: args
                    .http_tls_cert
                    .clone()
                    .zip(args.http_tls_key.clone())
                    .map(|(cert_file, key_file)| switchboard_web::WebTls {
                        cert_file,
                        key_file,
                    }),
            };
            match switchboard_web::WebServer::start(handle.hub(), config).await {
                Ok(web) => Some(web),
                // The default address taken (another server on this machine): the
                // hub serves on; a chosen address is a promise and stops it.
                Err(switchboard_web::WebError::Bind { addr, source })
                    if !args.http_chosen && source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    tracing::warn!(target: switchboard_server::log::GENERAL, %addr, "the default web address is in use: serving without HTTP; choose one with --http ADDR, or --no-http");
                    eprintln!(
                        "switchboard: {addr} (the default web address) is in use: serving without HTTP (choose one with --http ADDR)"
                    );
                    None
                }
                Err(error) => {
                    handle.shutdown().await;
                    return Err(error).context("cannot start the server");
                }
            }
        }
    };
    if let Some(web) = &web {
        let scheme = if args.http_tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        eprintln!("switchboard listening on {scheme}://{}", web.local_addr());
    }
    match &args.memory {
        _ if args.cluster.is_some() => {
            eprintln!("switchboard keeps history in the cluster's Redis")
        }
        true => eprintln!("switchboard keeps history in memory only (--memory)"),
        false => {
            let sync = match args.sync {
                SyncArg::Always => "sync always".to_owned(),
                SyncArg::Interval => format!(
                    "synced every {}",
                    humantime::format_duration(args.sync_interval)
                ),
                SyncArg::Never => "sync never".to_owned(),
            };
            eprintln!(
                "switchboard keeps history in {} ({sync})",
                args.data_dir.display()
            );
        }
    }
    tokio::select! {
        () = handle.stopping() => {}
        () = terminated => {}
        () = reload_on_hangup(&handle, hangups) => {}
    }
    handle.shutdown().await;
    if let Some(web) = web {
        web.stopped().await;
    }
    Ok(())
}

/// Joins the cluster on Redis at `url`: waits for Redis (bounded) and registers this
/// node, or says why it cannot.
async fn join_cluster(
    args: &ServeArgs,
    url: &str,
) -> Result<(
    std::sync::Arc<switchboard_cluster_redis::RedisBackplane>,
    std::net::TcpListener,
)> {
    use switchboard_cluster_redis::supervisor::{Fsync, MismatchPolicy};
    let mut config = switchboard_cluster_redis::RedisConfig::new(url);
    // Bound before joining, so that the node registers the address actually bound
    // (port 0 picks a free one); other nodes fetch streamed bodies there.
    let node_link = std::net::TcpListener::bind(&args.cluster_node_addr).with_context(|| {
        format!(
            "cannot listen on {} for the node link",
            args.cluster_node_addr
        )
    })?;
    config.link_addr = node_link
        .local_addr()
        .context("the node link's address")?
        .to_string();
    config.prefix = args.cluster_prefix.clone();
    config.op_timeout = args.cluster_timeout;
    // What Redis must promise for this node's --sync to hold.
    config.required_fsync = match args.sync {
        SyncArg::Always => Some(Fsync::Always),
        SyncArg::Interval => Some(Fsync::EverySec),
        SyncArg::Never => None,
    };
    config.on_fsync_mismatch = match args.cluster_durability_mismatch {
        crate::cli::MismatchArg::Refuse => MismatchPolicy::Refuse,
        crate::cli::MismatchArg::Warn => MismatchPolicy::Warn,
    };
    let backplane = switchboard_cluster_redis::RedisBackplane::start(config)
        .await
        .context("cannot join the cluster")?;
    eprintln!(
        "switchboard is node {} of the cluster on {}",
        backplane.incarnation(),
        crate::check::mask_password(url)
    );
    Ok((backplane, node_link))
}

/// SIGHUP, caught from now on (its default action would end the server).
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup())
            .inspect_err(|error| {
                tracing::error!(target: "ERROR", %error, "cannot handle SIGHUP; reload with `switchboard reload`");
            })
            .ok()
    }
    #[cfg(not(unix))]
    None
}

/// Reloads the configuration on every SIGHUP, for as long as the server runs (the
/// server logs and counts the outcome). Never resolves.
async fn reload_on_hangup(handle: &switchboard_server::ServerHandle, hangups: Hangups) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
        while hangups.recv().await.is_some() {
            let _ = handle.reload_from_source();
        }
    }
    #[cfg(not(unix))]
    let _ = (handle, hangups);
    std::future::pending::<()>().await
}

/// Protected mode: a hub with no identities configured lets in anyone who reaches it,
/// which is the point on a loopback address and a surprise on any other. Such a server
/// refuses to start unless told that is what is meant.
/// The web listener's address, when there is one.
pub fn web_addr(args: &ServeArgs) -> Option<&str> {
    (!args.no_http).then_some(args.http.as_str())
}

pub fn protected_mode(
    config: &ServerConfig,
    web: Option<&str>,
    allow_anonymous: bool,
) -> Result<()> {
    if allow_anonymous || config.security.has_identities() {
        return Ok(());
    }
    // A TLS listener that requires client certificates lets in only their holders.
    let tls = config
        .tls
        .iter()
        .filter(|listener| listener.client_auth != switchboard_server::ClientAuth::Required)
        .map(|listener| &listener.addr);
    if let Some(exposed) = config
        .tcp
        .iter()
        .chain(tls)
        .map(String::as_str)
        .chain(web)
        .find(|addr| !is_loopback(addr))
    {
        anyhow::bail!(
            "refusing to serve {exposed} with no users configured: anyone who reaches it could \
             use the hub. Add [[users]] (passwords from `switchboard passwd`), [[tokens]] or \
             [jwt] to the --config file, listen on 127.0.0.1 only, or pass --allow-anonymous \
             (or set allow_anonymous = true in [auth]) to serve it open"
        );
    }
    Ok(())
}

/// Whether every address `addr` stands for is a loopback one. An address that does not
/// resolve is not judged here: binding it fails with its own error.
fn is_loopback(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(resolved) => {
            let resolved: Vec<_> = resolved.collect();
            resolved.iter().all(|addr| addr.ip().is_loopback())
        }
        Err(_) => true,
    }
}

/// Resolves on SIGINT, or SIGTERM where there is one. The handlers are installed when this
/// is called, not when the future is first polled: a signal that arrives right after the
/// server announced itself must drain it too, not kill it.
fn termination() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
