//! The command line: every command, option and its help text.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Switchboard: a message hub with channels, history, subscriptions, groups, hashtags and
/// direct relay between clients.
///
/// Start a server with `switchboard serve`, then use the other commands as clients.
/// Every client command connects to --server (default 127.0.0.1:7420, or
/// SWITCHBOARD_SERVER), does its work and exits 0, or exits non-zero with a one-line reason
/// on stderr. The client options may come before the command (`switchboard --name bob sub
/// news`) or after it.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, propagate_version = true)]
pub struct Cli {
    /// The client options given before the command; `serve` takes none.
    #[command(flatten)]
    pub client: ClientOptions,

    #[command(subcommand)]
    pub command: Command,
}

/// The options every client command takes. Secrets come from files or the environment,
/// never from the command line, where every local user can read them (`ps`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Client options")]
pub struct ClientOptions {
    /// Server to connect to: HOST:PORT, tls://HOST:PORT or unix:PATH.
    #[arg(long, env = "SWITCHBOARD_SERVER", default_value = "127.0.0.1:7420")]
    pub server: String,

    /// Name this client goes by (also the user name for group membership).
    #[arg(long, env = "SWITCHBOARD_NAME")]
    pub name: Option<String>,

    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,

    /// Print bodies, names and channels as received. By default text output shows control
    /// and invisible characters escaped (`^[`, `\n`, `\u{202e}`), so that a message cannot
    /// drive the terminal or forge a line.
    #[arg(long)]
    pub raw: bool,

    /// File holding the pre-shared HMAC key (the server must use the same key).
    #[arg(long, env = "SWITCHBOARD_HMAC_KEY_FILE", value_name = "FILE")]
    pub hmac_key_file: Option<PathBuf>,

    /// File holding a bearer token to log in with: a named token from the server's
    /// `[[tokens]]`, or the admin token (which allows `stop` over TCP). The token may
    /// instead be in SWITCHBOARD_TOKEN.
    #[arg(long, env = "SWITCHBOARD_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Log in as this user; the password comes from SWITCHBOARD_PASSWORD, or is asked
    /// for (without echo) on a terminal.
    #[arg(long, env = "SWITCHBOARD_USER", value_name = "USER")]
    pub user: Option<String>,

    /// File holding a JSON Web Token to log in with.
    #[arg(long, env = "SWITCHBOARD_JWT_FILE", value_name = "FILE")]
    pub jwt_file: Option<PathBuf>,

    /// The admin token from SWITCHBOARD_TOKEN. As a flag it is refused (see `token_file`).
    #[arg(
        long,
        env = "SWITCHBOARD_TOKEN",
        hide = true,
        hide_env_values = true,
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub token: Option<String>,

    /// Speak TLS to the server (as a tls:// address does), checking its certificate
    /// against the system's root certificates, or --ca-file.
    #[arg(long)]
    pub tls: bool,

    /// Trust the CA certificates of this PEM file instead of the system's (implies --tls).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Present this client certificate (PEM, leaf first) when the server asks for one;
    /// needs --key (implies --tls).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Check the server's certificate against this name instead of the address's host
    /// (implies --tls).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

/// The ids of the client options, as clap knows them.
const CLIENT_OPTIONS: [&str; 14] = [
    "server",
    "name",
    "json",
    "raw",
    "hmac_key_file",
    "token_file",
    "token",
    "tls",
    "ca_file",
    "cert",
    "key",
    "tls_server_name",
    "user",
    "jwt_file",
];

impl Cli {
    /// Parses the process's arguments, exiting with clap's message on an error.
    ///
    /// A client option given after the command wins over the same option given before
    /// it, and either wins over the environment and the defaults.
    pub fn parse_arguments() -> Cli {
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        let given_before: Vec<&str> = CLIENT_OPTIONS
            .into_iter()
            .filter(|id| on_command_line(&matches, id))
            .collect();
        let command = leaf_matches(&matches);
        let before = cli.client.clone();
        match cli.command.client_options_mut() {
            None => {
                match given_before.first() {
                    Some(&"hmac_key_file") => refuse(
                        "the server's --hmac-key-file goes after the command: \
                         switchboard serve --hmac-key-file FILE",
                    ),
                    Some(id) => refuse(&format!(
                        "--{} is an option of the client commands; `serve` does not take it",
                        id.replace('_', "-")
                    )),
                    None => {}
                }
                if on_command_line(command, "admin_token") {
                    refuse(
                        "--admin-token would show the token to every local user (ps); put it \
                         in a file for --admin-token-file FILE, or in SWITCHBOARD_ADMIN_TOKEN",
                    );
                }
            }
            Some(own) => {
                for id in given_before {
                    if !on_command_line(command, id) {
                        own.take_option(&before, id);
                    }
                }
                if on_command_line(&matches, "token") || on_command_line(command, "token") {
                    refuse(
                        "--token would show the token to every local user (ps); put it in a \
                         file for --token-file FILE, or in SWITCHBOARD_TOKEN",
                    );
                }
            }
        }
        if let Command::Serve(args) = &mut cli.command {
            args.given = command
                .ids()
                .map(|id| id.as_str())
                .filter(|id| given_explicitly(command, id))
                .map(str::to_owned)
                .collect();
            args.http_chosen = args.given.iter().any(|id| id == "http");
        }
        cli
    }
}

impl ClientOptions {
    /// The TLS options the flags ask for; `None` when none of them is given (a tls://
    /// address still uses TLS, with the system's roots).
    pub fn tls_options(&self) -> Option<switchboard_client::TlsOptions> {
        let wanted = self.tls
            || self.ca_file.is_some()
            || self.cert.is_some()
            || self.tls_server_name.is_some();
        if !wanted {
            return None;
        }
        let mut options = switchboard_client::TlsOptions::new();
        if let Some(path) = &self.ca_file {
            options = options.with_ca_file(path);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            options = options.with_client_certificate(cert, key);
        }
        if let Some(name) = &self.tls_server_name {
            options = options.with_server_name(name);
        }
        Some(options)
    }

    /// Takes option `id` from `other`.
    fn take_option(&mut self, other: &ClientOptions, id: &str) {
        match id {
            "server" => self.server.clone_from(&other.server),
            "name" => self.name.clone_from(&other.name),
            "json" => self.json = other.json,
            "raw" => self.raw = other.raw,
            "hmac_key_file" => self.hmac_key_file.clone_from(&other.hmac_key_file),
            "token_file" => self.token_file.clone_from(&other.token_file),
            "token" => self.token.clone_from(&other.token),
            "tls" => self.tls = other.tls,
            "ca_file" => self.ca_file.clone_from(&other.ca_file),
            "cert" => self.cert.clone_from(&other.cert),
            "key" => self.key.clone_from(&other.key),
            "tls_server_name" => self.tls_server_name.clone_from(&other.tls_server_name),
            "user" => self.user.clone_from(&other.user),
            "jwt_file" => self.jwt_file.clone_from(&other.jwt_file),
            _ => {}
        }
    }
}

/// Whether `id` was given on the command line (not taken from the environment or a
/// default).
fn on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.try_get_raw(id),
        Ok(Some(_)) if matches.value_source(id) == Some(ValueSource::CommandLine)
    )
}

/// Whether `id` was given on the command line or in the environment (not a default).
fn given_explicitly(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The matches of the innermost subcommand: the one that carries its own options.
fn leaf_matches(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => leaf_matches(sub),
        None => matches,
    }
}

/// Ends the process with a usage error, as clap reports its own.
fn refuse(message: &str) -> ! {
    Cli::command()
        .error(ErrorKind::ArgumentConflict, message)
        .exit()
}

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Salvage a data directory the server cannot open (stop the server first): intact
    /// records go to a fresh store, the damaged one is moved to DIR.damaged-<time>.
    Repair(RepairArgs),
    /// Read a password (without echo, twice on a terminal; one line from stdin
    /// otherwise) and print its argon2id hash for a `[[users]]` entry.
    Passwd,
    /// Make credentials for the server's config file.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Stop a running server gracefully (admin: over its Unix socket, or with the admin
    /// token in --token-file).
    Stop(ClientOptions),
    /// Make a running server re-read its config file and put its users, roles and
    /// limits in force (admin, like stop); prints the reason and exits 1 if the server
    /// refuses the file, keeping the configuration it had.
    Reload(ClientOptions),
    /// Show this client's id, name and session.
    Whoami(ClientOptions),
    /// List the other connected clients.
    Clients(ClientOptions),
    /// Send a body directly to 1..255 clients by id.
    Relay(RelayArgs),
    /// Print this client's id, then every message relayed to it.
    Listen(ListenArgs),
    /// List channels with their message counts.
    Channels(ClientOptions),
    /// Manage channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Publish to a channel: TEXT, --file F, - (stdin), or --lines FILE|- (one message per line).
    #[command(name = "pub")]
    Publish(PublishArgs),
    /// Subscribe to channels, wildcard patterns (chat.*, chat.>) or hashtags ('#rust').
    #[command(name = "sub")]
    Subscribe(SubscribeArgs),
    /// Get the latest message of a channel, or one by id.
    Get(GetArgs),
    /// Print a channel's history, oldest first.
    History(HistoryArgs),
    /// Print the recent messages carrying a hashtag.
    Tag(TagArgs),
    /// List the group directory.
    Groups(ClientOptions),
    /// Manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Join a group, as the session's name (the logged-in user, else --name).
    Join(GroupName),
    /// Leave a group.
    Leave(GroupName),
    /// List the members of a group.
    Members(GroupName),
    /// Post a message to a group you are a member of.
    Post(PostArgs),
    /// Show the server's counters.
    Stats(ClientOptions),
    /// Interactive shell: plain lines post to the current channel or group, /help lists
    /// the commands.
    Chat(ChatArgs),
    /// Measure a server (--server) or one started in this process (--embedded):
    /// throughput, fan-out, latency, acknowledged publishes, idle sessions.
    Bench(crate::bench::BenchArgs),
}

impl Command {
    /// The client options given with the command; `None` for `serve`.
    pub fn client_options_mut(&mut self) -> Option<&mut ClientOptions> {
        Some(match self {
            Command::Serve(_) | Command::Repair(_) | Command::Passwd | Command::Token(_) => {
                return None;
            }
            Command::Stop(client)
            | Command::Reload(client)
            | Command::Whoami(client)
            | Command::Clients(client)
            | Command::Channels(client)
            | Command::Groups(client)
            | Command::Stats(client) => client,
            Command::Relay(args) => &mut args.client,
            Command::Listen(args) => &mut args.client,
            Command::Channel(ChannelCommand::Create(args)) => &mut args.client,
            Command::Channel(ChannelCommand::Delete(args)) => &mut args.client,
            Command::Publish(args) => &mut args.client,
            Command::Subscribe(args) => &mut args.client,
            Command::Get(args) => &mut args.client,
            Command::History(args) => &mut args.client,
            Command::Tag(args) => &mut args.client,
            Command::Group(GroupCommand::Create(args)) => &mut args.client,
            Command::Group(GroupCommand::History(args)) => &mut args.client,
            Command::Group(GroupCommand::Delete(args)) => &mut args.client,
            Command::Join(args) | Command::Leave(args) | Command::Members(args) => &mut args.client,
            Command::Post(args) => &mut args.client,
            Command::Chat(args) => &mut args.client,
            Command::Bench(args) => &mut args.client,
        })
    }
}

/// `serve`'s options. Each may also be set in the --config file; one given here or in the
/// environment wins over the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read the settings from this TOML file (see docs/switchboard.example.toml). The
    /// options given here and the environment variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the settings and print the effective ones (secrets masked) as TOML, or as
    /// JSON with `--check json`, then exit: 0 when they are valid, 1 with the file, line,
    /// column and reason when not.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        num_args = 0..=1,
        default_missing_value = "toml"
    )]
    pub check: Option<CheckFormat>,
    /// TCP address to listen on (repeatable).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:7420")]
    pub listen: Vec<String>,
    /// TLS address to listen on (repeatable), serving --tls-cert and --tls-key. Given
    /// here, these options replace the config file's TLS listeners.
    #[arg(long = "tls", value_name = "ADDR", requires_all = ["tls_cert", "tls_key"])]
    pub tls: Vec<String>,
    /// The TLS listeners' certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS listeners' private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_client_ca: Option<PathBuf>,
    /// Whether TLS clients must present a certificate: none, optional or required.
    /// Default: required with --tls-client-ca, else none.
    #[arg(long, value_name = "MODE", requires = "tls")]
    pub tls_client_auth: Option<switchboard_server::ClientAuth>,
    /// The config file's TLS listeners (paths already taken from the file's directory).
    #[arg(skip)]
    pub tls_from_file: Vec<switchboard_server::TlsListenerConfig>,
    /// Unix socket to listen on; sessions there may stop the server. Default: a socket
    /// named after the port in the temporary directory (none when the port is 0).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Do not listen on a Unix socket.
    #[arg(long, conflicts_with = "unix")]
    pub no_unix: bool,
    /// Address of the web listener: the console, the HTTP API, Server-Sent Events, the
    /// protocol over WebSocket, /metrics and health checks. When the default is taken
    /// (another server on this machine), the server serves without HTTP and says so; an
    /// address given here or in the config file that cannot be used stops it.
    #[arg(long, value_name = "ADDR", default_value = switchboard_web::DEFAULT_HTTP_ADDR)]
    pub http: String,
    /// Do not listen for HTTP.
    #[arg(long, conflicts_with = "http")]
    pub no_http: bool,
    /// Certificate chain (PEM) for the web listener: https and wss. Reloaded with the
    /// other certificates.
    #[arg(long, value_name = "FILE", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,
    /// Private key (PEM) for the web listener's certificate.
    #[arg(long, value_name = "FILE", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,
    /// An origin (https://app.example.com) whose pages may open /ws, besides the
    /// listener's own; repeat for more, "*" for any. Requests without Origin (not from
    /// a browser) are always let in.
    #[arg(long = "http-allowed-origin", value_name = "ORIGIN")]
    pub http_allowed_origins: Vec<String>,
    /// Also write the log to this file.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Size at which the log file is renamed with `.1` appended (replacing the previous
    /// one) and a new one started; 0 for no cap.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    pub log_max_bytes: u64,
    /// Connections the kernel queues for each listener before the server accepts them
    /// (the system may cap it, e.g. at net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub backlog: u32,
    /// Time a new connection has to send its preface and SESSION_INIT (and a TLS
    /// connection its TLS handshake); a slower one is closed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub handshake_timeout: std::time::Duration,
    /// Time a frame has to arrive whole, from its first byte; a slower one closes its
    /// session with FRAME_TIMEOUT.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub frame_timeout: std::time::Duration,
    /// Bytes all connections together may hold for large frames (over 64 KiB) still
    /// arriving; a frame beyond it is refused with SERVER_BUSY.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024 * 1024)]
    pub partial_frame_budget: usize,
    /// How often sessions opened, closed and refused are summed up in the log (at info,
    /// when something changed); each session is logged at debug.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub connection_summary: std::time::Duration,
    /// Log level for the GENERAL, CONNECTION and ERROR categories (or set RUST_LOG).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// File holding the admin token that lets a session stop the server over TCP. The
    /// token may instead be in SWITCHBOARD_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The admin token from SWITCHBOARD_ADMIN_TOKEN. As a flag it is refused (see
    /// `admin_token_file`).
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide = true,
        hide_env_values = true,
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub admin_token: Option<String>,
    /// File holding the pre-shared HMAC key: every frame must carry its tag, and clients
    /// must use the same key.
    #[arg(long, env = "SWITCHBOARD_HMAC_KEY_FILE", value_name = "FILE")]
    pub hmac_key_file: Option<PathBuf>,
    /// Default heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub heartbeat_ms: u64,
    /// Largest relayed body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_relay_bytes: usize,
    /// Largest message body in bytes.
    #[arg(long)]
    pub max_body: Option<u64>,
    /// Largest content of one frame, in bytes or with a unit (64KiB, 8MiB); bodies over
    /// it are streamed in chunks of at most this size. At least 4KiB. Default: 8MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_max_frame)]
    pub max_frame: Option<u32>,
    /// Messages a channel keeps unless created with --history.
    #[arg(long, default_value_t = 1000)]
    pub history: u64,
    /// Memory budget for what clients make the server keep (subscriptions, channels,
    /// groups, group members, hashtags, queued outbound bytes), in bytes or with a unit
    /// (512MiB, 2GiB, 1G); past it, creating more is refused with LIMIT_REACHED and a
    /// queue that needs more is treated as full. Default: half the machine's memory.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_memory: Option<u64>,
    /// Refuse publishing to channels that were not created first.
    #[arg(long)]
    pub require_create: bool,
    /// Directory for history, channels, groups and members.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "switchboard-data",
        env = "SWITCHBOARD_DATA_DIR"
    )]
    pub data_dir: std::path::PathBuf,
    /// Keep nothing on disk: history is lost when the server stops.
    #[arg(long, conflicts_with = "data_dir")]
    pub memory: bool,
    /// When to sync to disk: `always` (acknowledge a publish once it is on disk;
    /// concurrent publishes share one sync), `interval` (every --sync-interval,
    /// acknowledged at once; a machine crash loses at most that window), or `never`
    /// (the operating system decides).
    #[arg(long, value_enum, default_value_t = SyncArg::Interval)]
    pub sync: SyncArg,
    /// How often `--sync interval` syncs.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    pub sync_interval: std::time::Duration,
    /// Free space to leave on the data volume: uploads and durable publishes that would
    /// eat into it are refused (STORAGE_FULL) until space is freed. Bytes (`512MiB`,
    /// `1GB`) or a percentage of the volume (`5%`). Default: 2% of the volume, at most
    /// 1 GiB.
    #[arg(long, value_name = "SIZE")]
    pub disk_reserve: Option<switchboard_server::DiskReserve>,
    /// Most bytes of streamed bodies kept on disk; new uploads past it are refused
    /// (STORAGE_FULL). Bytes (`10GiB`). Default: bounded by the disk reserve only.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_blob_bytes: Option<u64>,
    /// Bytes of messages each durable channel or group keeps in memory: its newest (at
    /// least one, at most 8 192); fetches and replays that reach older ones read them back
    /// from the store. Bytes (`64MiB`). Default: 8 MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub history_in_memory: Option<u64>,
    /// Run as one node of a cluster: several servers that clients see as one hub, sharing
    /// channels, history and live messages through this Redis 7 (`redis://HOST:PORT`,
    /// `redis://:PASSWORD@HOST:PORT/DB`, or through Sentinel:
    /// `redis+sentinel://HOST:PORT,HOST:PORT/MASTER`). The node keeps no store of its own
    /// then; see docs/CLUSTER.md for what is shared and what a Redis failure can lose.
    #[arg(
        long,
        value_name = "URL",
        env = "SWITCHBOARD_CLUSTER",
        conflicts_with = "memory"
    )]
    pub cluster: Option<String>,
    /// Cluster mode: how long a backplane operation may take before the request is
    /// refused with BACKPLANE_UNAVAILABLE (a publish refused so may or may not be stored).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2s")]
    pub cluster_timeout: std::time::Duration,
    /// Cluster mode: the prefix of every Redis key and channel the cluster uses, so that
    /// several clusters can share one Redis.
    #[arg(long, value_name = "PREFIX", default_value = "sb:")]
    pub cluster_prefix: String,
    /// Cluster mode: what to do when Redis promises less durability than --sync (its
    /// `appendfsync`: always for `--sync always`, everysec for `interval`): `refuse` to
    /// use it (the node waits, not ready, until Redis is reconfigured) or `warn` once.
    #[arg(long, value_enum, default_value_t = MismatchArg::Refuse)]
    pub cluster_durability_mismatch: MismatchArg,
    /// Cluster mode: where this node answers other nodes for the streamed bodies it
    /// keeps (the node link; port 0 for any free port). Other nodes must reach this
    /// address: give a routable one when the nodes run on several machines.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub cluster_node_addr: String,
    /// Threads serving connections. Default: one per CPU. Fewer leave cores to clients
    /// on the same machine (see docs/BENCHMARKS.md: one thread did better for large
    /// messages and latency on 2 cores, worse for fan-out to many connections).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Serve a non-loopback TCP address although no users, tokens or JWT keys are
    /// configured: anyone who reaches the port may use the hub. Without it the server
    /// refuses to start that way (see docs/SECURITY.md).
    #[arg(long, env = "SWITCHBOARD_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// The ids of the options given on the command line or in the environment: the ones
    /// the config file does not override.
    #[arg(skip)]
    pub given: Vec<String>,
    /// The web listener's address was chosen (flag, environment or config file), not
    /// the default: failing to listen there stops the server.
    #[arg(skip)]
    pub http_chosen: bool,
    /// Identities and roles from the config file (`[auth]`, `[[users]]`, `[[tokens]]`,
    /// `[jwt]`, `[[unix_users]]`, `[roles.NAME]`; reloadable). Boxed: read once, and
    /// large.
    #[arg(skip)]
    pub security: Box<switchboard_server::security::SecurityConfig>,
    /// Per-address limits and those of sessions without a role, from the config file
    /// (reloadable).
    #[arg(skip)]
    pub limits: Box<switchboard_server::security::limits::LimitSettings>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token, and the `[[tokens]]` entry (with its SHA-256) that
    /// makes it log in as USER.
    New(TokenNewArgs),
}

#[derive(Debug, Args)]
pub struct TokenNewArgs {
    /// A label for the token, shown in logs; not the token.
    pub name: String,
    /// The user the token logs in as.
    #[arg(long)]
    pub user: String,
    /// A role the token adds to the user's (repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The data directory to repair.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "switchboard-data",
        env = "SWITCHBOARD_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `10GiB`, `500MB`, `4096`: a size in bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    // The reserve's parser also takes percentages, which its error suggests: not here.
    match text.parse::<switchboard_server::DiskReserve>() {
        Ok(switchboard_server::DiskReserve::Bytes(bytes)) => Ok(bytes),
        _ => Err(format!(
            "{text:?} is not a size in bytes (e.g. 512MiB, 1GB)"
        )),
    }
}

/// How `serve --check` prints the effective settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Toml,
    Json,
}

/// The sync policies of `serve --sync`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SyncArg {
    Always,
    Interval,
    Never,
}

/// What a cluster node does when Redis promises less durability than it needs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MismatchArg {
    Refuse,
    Warn,
}

/// Durability of one channel (`channel create --durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// Memory only, even on a server with a data directory.
    Memory,
    Never,
    Interval,
    Always,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Receiver client ids, comma-separated (1..255).
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "ID[,ID...]"
    )]
    pub to: Vec<u64>,
    /// The text to send.
    #[arg(conflicts_with = "file")]
    pub text: Option<String>,
    /// Send a file's bytes instead.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a channel with options.
    Create(ChannelCreateArgs),
    /// Delete a channel with its history and streamed bodies; its subscribers are told.
    Delete(ChannelDeleteArgs),
}

#[derive(Debug, Args)]
pub struct ChannelDeleteArgs {
    /// The channel's name.
    pub channel: String,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct ChannelCreateArgs {
    /// The channel's name.
    pub channel: String,
    /// Messages kept in history.
    #[arg(long)]
    pub history: Option<u64>,
    /// Largest body in bytes.
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// Largest text in characters (e.g. 150 for short messages).
    #[arg(long)]
    pub max_chars: Option<u64>,
    /// Drop messages older than this (e.g. 1h, 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_age: Option<std::time::Duration>,
    /// Drop the oldest messages beyond this many bytes of bodies.
    #[arg(long)]
    pub max_total_bytes: Option<u64>,
    /// How this channel's messages are kept (default: the server's --sync policy).
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    /// What happens to a subscriber that cannot keep up: `disconnect` it (default), or
    /// `drop-oldest` of its undelivered messages and tell it how many were skipped.
    #[arg(long, value_enum)]
    pub slow_consumer: Option<SlowConsumerArg>,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// Slow-consumer policies of `channel create --slow-consumer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SlowConsumerArg {
    Disconnect,
    DropOldest,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    pub channel: String,
    /// The text to publish, or - to read the body from standard input.
    #[arg(conflicts_with_all = ["file", "lines"])]
    pub text: Option<String>,
    /// Publish a file's bytes. Files over 1 MiB (or the server's frame size) are
    /// streamed, up to the server's largest message, with a progress bar on a terminal.
    #[arg(long, value_name = "FILE", conflicts_with = "lines")]
    pub file: Option<PathBuf>,
    /// Publish each line of FILE (or - for stdin) as its own message, pipelined.
    #[arg(long, value_name = "FILE|-")]
    pub lines: Option<String>,
    /// Content type of the body (default: text for TEXT and --lines, guessed for files).
    #[arg(long)]
    pub content_type: Option<String>,
    /// A user header KEY=VALUE (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Channel names, wildcard patterns or '#hashtags'.
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Replay history first, from a sequence number or a time (RFC 3339, HH:MM:SS today
    /// UTC, or an age such as 10m).
    #[arg(long, value_name = "SEQ|TIME", conflicts_with = "last")]
    pub since: Option<String>,
    /// Replay the last N messages first.
    #[arg(long, value_name = "N")]
    pub last: Option<u64>,
    /// Write bodies to files instead of printing them (only the metadata is printed).
    /// With --count 1, PATH is the file; otherwise PATH is a directory (created if
    /// needed) and each body goes to PATH/<seq>-<id>.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub channel: String,
    /// Message id (UUID); default the latest message.
    #[arg(long)]
    pub id: Option<uuid::Uuid>,
    /// Write the body to FILE (streamed as it arrives, verified) and print only the
    /// message's metadata.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub channel: String,
    /// From a sequence number or a time (RFC 3339, HH:MM:SS today UTC, or an age such as 10m).
    #[arg(long, value_name = "SEQ|TIME")]
    pub since: Option<String>,
    /// At most this many messages (without --since: the newest N).
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The hashtag, with or without '#'.
    pub tag: String,
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group in the directory.
    Create(GroupCreateArgs),
    /// Print a group's messages (members only).
    History(GroupHistoryArgs),
    /// Delete a group with its history and members; its members are told.
    Delete(GroupName),
}

#[derive(Debug, Args)]
pub struct GroupCreateArgs {
    pub group: String,
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct GroupHistoryArgs {
    pub group: String,
    /// From a time (RFC 3339, HH:MM:SS today UTC, or an age such as 10m) or a sequence number.
    #[arg(long, value_name = "SEQ|TIME")]
    pub since: Option<String>,
    /// At most this many messages (without --since: the newest N).
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct GroupName {
    pub group: String,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct PostArgs {
    pub group: String,
    pub text: String,
    #[command(flatten)]
    pub client: ClientOptions,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Channel to start in; `@group` starts in a group.
    pub channel: Option<String>,
    /// Read lines from this file instead of the terminal, and exit at its end.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// A size in bytes: a number, optionally followed by K, M, G or T (powers of 1024; `KiB`,
/// `KB` and `k` are read the same).
/// The smallest `--max-frame`: a frame must still hold a page of a listing and the
/// replies the protocol sends in one frame.
pub const MIN_MAX_FRAME: u32 = 4 * 1024;

/// A `--max-frame` size: at least [`MIN_MAX_FRAME`], and within a frame's 32-bit length.
pub fn parse_max_frame(text: &str) -> Result<u32, String> {
    max_frame_from(parse_bytes(text)?)
}

/// Checks a frame content size given in bytes.
pub fn max_frame_from(bytes: u64) -> Result<u32, String> {
    match u32::try_from(bytes) {
        Ok(max_frame) if max_frame >= MIN_MAX_FRAME => Ok(max_frame),
        Ok(_) => Err(format!(
            "a max_frame of {bytes} bytes is too small: at least {MIN_MAX_FRAME}"
        )),
        Err(_) => Err(format!(
            "a max_frame of {bytes} bytes is too large: at most {}",
            u32::MAX
        )),
    }
}

pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 536870912, 512MiB, 2G)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown unit {unit:?}: use K, M, G or T")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod size_tests {
    use super::parse_bytes;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("64 kb"), Ok(64 << 10));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5X").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }
}
