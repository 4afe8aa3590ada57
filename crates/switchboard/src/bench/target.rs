//! The server under test: one this process starts (`--embedded`, on 127.0.0.1:0) or the
//! one at `--server`; how to open bench connections to it, and what can be read about
//! the server process (memory, CPU time) from `/proc`. With `--embedded --tls`, the
//! embedded server listens on TLS only, with a certificate made for the run.

use anyhow::{Context as _, Result, bail};
use switchboard_client::{Client, ClientConfig, TlsOptions};
use switchboard_server::security::RoleSpec;
use switchboard_server::security::limits::{AddressLimits, LimitSpec};
use switchboard_server::security::permissions::{AdminOperation, ChannelRule, Rule};
use switchboard_server::{Server, ServerHandle, TlsListenerConfig};

use super::Settings;
use crate::commands::Context;

/// Where the benchmark connects, and the server if this process runs it.
pub(super) struct Target {
    address: String,
    embedded: Option<ServerHandle>,
    /// Carries the global options (HMAC key, token); each connection gets its own name.
    config: ClientConfig,
    software: String,
    /// The process whose memory and CPU time are the server's: this one when embedded.
    server_pid: Option<u32>,
    /// The embedded TLS listener's certificate files, removed at the end.
    certificates: Option<RunCertificates>,
    /// The embedded server's web listener, when the bench connects over WebSocket.
    web: Option<switchboard_web::WebServer>,
    /// Where subscribers connect, when not to `address` (another node of a cluster).
    subscriber_config: Option<(String, ClientConfig)>,
}

impl Target {
    /// Starts the embedded server or checks that `--server` answers.
    pub async fn start(ctx: &Context, settings: &Settings) -> Result<Target> {
        if settings.embedded && settings.server_pid.is_some() {
            bail!(
                "--server-pid is for an external server; with --embedded the server is this process"
            );
        }
        let certificates = match (settings.embedded, &ctx.tls) {
            (true, Some(_)) => Some(RunCertificates::make()?),
            _ => None,
        };
        let (address, embedded) = if settings.embedded {
            // The benchmark is the embedded server's only client, from one address: the
            // per-address limits would measure themselves.
            let mut builder = Server::builder().configure(|config| {
                config.limits.per_address = AddressLimits {
                    connections_per_ip: 0,
                    new_connections_per_second: 0,
                    new_connection_burst: 0,
                    limit_loopback: false,
                };
            });
            builder = match &certificates {
                Some(files) => builder.listen_tls(TlsListenerConfig::new(
                    "127.0.0.1:0",
                    files.dir.join("server.pem"),
                    files.dir.join("server.key"),
                )),
                None => builder.listen_tcp("127.0.0.1:0"),
            };
            if let Some(patterns) = settings.role_patterns {
                let role = bench_role(patterns, &settings.channel_prefix);
                builder = builder.configure(|config| {
                    config.security.roles.insert(BENCH_ROLE.to_owned(), role);
                    config.security.anonymous_role = Some(BENCH_ROLE.to_owned());
                });
            }
            if let Some(key) = &ctx.hmac_key {
                builder = builder.hmac_key(key.clone());
            }
            let handle = builder
                .start()
                .await
                .context("cannot start the embedded server")?;
            let address = match &certificates {
                Some(_) => handle
                    .tls_addrs()
                    .first()
                    .map(|addr| format!("tls://{addr}")),
                None => handle.tcp_addr().map(|addr| addr.to_string()),
            }
            .context("the embedded server has no address")?;
            (address, Some(handle))
        } else {
            (ctx.server.clone(), None)
        };
        let (address, web) = match (&embedded, settings.transport) {
            (Some(handle), super::args::BenchTransport::Ws) => {
                if certificates.is_some() {
                    bail!("--transport ws is plain WebSocket; leave out --tls");
                }
                let web = switchboard_web::WebServer::start(
                    handle.hub(),
                    switchboard_web::WebConfig {
                        addr: "127.0.0.1:0".to_owned(),
                        ..switchboard_web::WebConfig::default()
                    },
                )
                .await
                .context("cannot start the embedded web listener")?;
                (format!("ws://{}/ws", web.local_addr()), Some(web))
            }
            _ => (address, None),
        };
        let mut config = ctx.config_for(&address);
        if let Some(files) = &certificates {
            config = config.with_tls(TlsOptions::new().with_ca_file(files.dir.join("ca.pem")));
        }
        let probe = Client::connect(config.clone().with_name("bench-probe"))
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        let software = probe.session().server_software.clone();
        let _ = probe.close().await;
        let server_pid = if embedded.is_some() {
            Some(std::process::id())
        } else {
            settings.server_pid
        };
        let subscriber_config = settings
            .subscriber_server
            .as_ref()
            .map(|address| (address.clone(), config.clone().with_server(address.clone())));
        Ok(Target {
            address,
            embedded,
            config,
            software,
            server_pid,
            certificates,
            web,
            subscriber_config,
        })
    }

    /// Opens one bench connection named `bench-ROLE`.
    pub async fn connect(&self, role: &str) -> Result<Client> {
        Client::connect(self.config.clone().with_name(format!("bench-{role}")))
            .await
            .with_context(|| format!("{role} cannot connect to {}", self.address))
    }

    /// Opens one subscribing connection named `bench-ROLE`: to --subscriber-server when
    /// given, else as [`Target::connect`].
    pub async fn connect_subscriber(&self, role: &str) -> Result<Client> {
        let Some((address, config)) = &self.subscriber_config else {
            return self.connect(role).await;
        };
        Client::connect(config.clone().with_name(format!("bench-{role}")))
            .await
            .with_context(|| format!("{role} cannot connect to {address}"))
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// The server's software and version, as it announced them.
    pub fn software(&self) -> &str {
        &self.software
    }

    pub fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }

    /// The server's counters; `None` if they cannot be had (they are only evidence).
    pub async fn server_stats(&self) -> Option<Vec<(String, u64)>> {
        if let Some(handle) = &self.embedded {
            return Some(handle.stats());
        }
        let client = self.connect("stats").await.ok()?;
        let reply = client.stats().await.ok();
        let _ = client.close().await;
        Some(
            reply?
                .stats
                .into_iter()
                .map(|stat| (stat.name.to_string(), stat.value))
                .collect(),
        )
    }

    /// Stops the embedded server, if there is one.
    pub async fn stop(self) {
        if let Some(handle) = self.embedded {
            handle.shutdown().await;
        }
        if let Some(web) = self.web {
            web.stopped().await;
        }
        if let Some(files) = self.certificates {
            let _ = std::fs::remove_dir_all(&files.dir);
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 made for one run (ca.pem, server.pem and
/// server.key in a directory of their own).
struct RunCertificates {
    dir: std::path::PathBuf,
}

impl RunCertificates {
    fn make() -> Result<RunCertificates> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "switchboard bench CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
        let dir = std::env::temp_dir().join(format!(
            "switchboard-bench-tls-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("server.pem", server.pem()),
            ("server.key", key.serialize_pem()),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, pem)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(RunCertificates { dir })
    }
}

/// The role `--role-patterns` gives the bench's sessions.
const BENCH_ROLE: &str = "bench";

/// A role of `patterns` allow patterns per operation the bench uses, every one but the
/// last naming channels the bench never touches, so that a decision without a cache
/// would try them all.
fn bench_role(patterns: usize, prefix: &str) -> RoleSpec {
    let mut allow: Vec<String> = (1..patterns).map(|n| format!("unused{n}.>")).collect();
    allow.push(format!("{prefix}.>"));
    let rule = Rule {
        allow: allow.clone(),
        deny: Vec::new(),
    };
    RoleSpec {
        publish: rule.clone(),
        subscribe: rule.clone(),
        history: rule,
        create_channel: ChannelRule {
            allow,
            ..ChannelRule::default()
        },
        admin: vec![AdminOperation::Stats, AdminOperation::Clients],
        // The permission checks are measured, not the rate limits a role has by default.
        limits: LimitSpec {
            publishes_per_second: Some(0),
            relays_per_second: Some(0),
            requests_per_second: Some(0),
            max_subscriptions: Some(0),
            max_channels: Some(0),
            max_groups: Some(0),
            max_hashtags: Some(0),
            max_body: Some(0),
            ..LimitSpec::default()
        },
        ..RoleSpec::default()
    }
}

/// A counter from a STATS answer.
pub(super) fn stat(stats: &[(String, u64)], name: &str) -> Option<u64> {
    stats
        .iter()
        .find(|(stat_name, _)| stat_name == name)
        .map(|(_, value)| *value)
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/PID/status`, Linux only).
pub(super) fn rss_kib(pid: u32) -> Result<u64> {
    let path = status_path(pid);
    let status = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {path} (process memory is read from /proc, Linux only)")
    })?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .with_context(|| format!("{path} has no VmRSS line"))?;
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("cannot read the VmRSS line of {path}: {line:?}"))
}

/// CPU time (user + system) a process used so far, in seconds, from `/proc/PID/stat`.
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture in use.
    Some((user + system) as f64 / 100.0)
}

/// The most descriptors this process may open (`ulimit -n`), Linux only.
pub(super) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn status_path(pid: u32) -> String {
    if pid == std::process::id() {
        "/proc/self/status".to_owned()
    } else {
        format!("/proc/{pid}/status")
    }
}
