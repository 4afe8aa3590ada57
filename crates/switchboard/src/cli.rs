//! The command line: every command, option and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Switchboard: a message hub with channels, history, subscriptions, groups, hashtags and
/// direct relay between clients.
///
/// Start a server with `switchboard serve`, then use the other commands as clients.
/// Every client command connects to --server (default 127.0.0.1:7420, or
/// SWITCHBOARD_SERVER), does its work and exits 0, or exits non-zero with a one-line reason
/// on stderr.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, propagate_version = true)]
pub struct Cli {
    /// Server to connect to: HOST:PORT or unix:PATH.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_SERVER",
        default_value = "127.0.0.1:7420"
    )]
    pub server: String,

    /// Name this client goes by (also the user name for group membership).
    #[arg(long, global = true, env = "SWITCHBOARD_NAME")]
    pub name: Option<String>,

    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// File holding the pre-shared HMAC key (the server must use the same key).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_HMAC_KEY_FILE",
        value_name = "FILE"
    )]
    pub hmac_key_file: Option<PathBuf>,

    /// Admin token, sent as the session's credentials (allows `stop` over TCP).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Stop a running server gracefully (admin: over its Unix socket, or with --token).
    Stop,
    /// Show this client's id, name and session.
    Whoami,
    /// List the other connected clients.
    Clients,
    /// Send a body directly to 1..255 clients by id.
    Relay(RelayArgs),
    /// Print this client's id, then every message relayed to it.
    Listen(ListenArgs),
    /// List channels with their message counts.
    Channels,
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
    Groups,
    /// Manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Join a group under --name.
    Join(GroupName),
    /// Leave a group.
    Leave(GroupName),
    /// List the members of a group.
    Members(GroupName),
    /// Post a message to a group you are a member of.
    Post(PostArgs),
    /// Show the server's counters.
    Stats,
    /// Interactive shell: plain lines post to the current channel or group, /help lists
    /// the commands.
    Chat(ChatArgs),
    /// Measure a server (--server) or one started in this process (--embedded):
    /// throughput, fan-out, latency, acknowledged publishes, idle sessions.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP address to listen on (repeatable).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:7420")]
    pub listen: Vec<String>,
    /// Unix socket to listen on; sessions there may stop the server. Default: a socket
    /// named after the port in the temporary directory (none when the port is 0).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Do not listen on a Unix socket.
    #[arg(long, conflicts_with = "unix")]
    pub no_unix: bool,
    /// Also write the log to this file.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Log level for the GENERAL, CONNECTION and ERROR categories (or set RUST_LOG).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Admin token that lets a session stop the server over TCP.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Default heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub heartbeat_ms: u64,
    /// Largest relayed body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_relay_bytes: usize,
    /// Largest message body in bytes.
    #[arg(long)]
    pub max_body: Option<u64>,
    /// Messages a channel keeps unless created with --history.
    #[arg(long, default_value_t = 1000)]
    pub history: u64,
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
    /// Threads serving connections. Default: one per CPU. Fewer leave cores to clients
    /// on the same machine (see docs/BENCHMARKS.md: one thread did better for large
    /// messages and latency on 2 cores, worse for fan-out to many connections).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

/// The sync policies of `serve --sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncArg {
    Always,
    Interval,
    Never,
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
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a channel with options.
    Create(ChannelCreateArgs),
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
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The hashtag, with or without '#'.
    pub tag: String,
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group in the directory.
    Create(GroupCreateArgs),
    /// Print a group's messages (members only).
    History(GroupHistoryArgs),
}

#[derive(Debug, Args)]
pub struct GroupCreateArgs {
    pub group: String,
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct GroupHistoryArgs {
    pub group: String,
    /// From a time (RFC 3339, HH:MM:SS today UTC, or an age such as 10m) or a sequence number.
    #[arg(long, value_name = "SEQ|TIME")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct GroupName {
    pub group: String,
}

#[derive(Debug, Args)]
pub struct PostArgs {
    pub group: String,
    pub text: String,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Channel to start in; `@group` starts in a group.
    pub channel: Option<String>,
    /// Read lines from this file instead of the terminal (the seed's file mode).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}
