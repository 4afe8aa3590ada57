//! The options of `switchboard bench`, kept beside the benchmark rather than in `cli.rs`
//! so that the command's whole surface is in one place.

use std::time::Duration;

use clap::{Args, ValueEnum};
use switchboard_client::Durability;

/// What `bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// One publisher to one subscriber on one channel, as fast as flow control allows.
    Pubsub,
    /// One publisher to --subscribers subscribers (default 10) of one channel; reports
    /// deliveries per second across all of them.
    Fanout,
    /// --publishers channels (default 4), each with its own publisher and subscriber.
    Channels,
    /// Publishes that each wait for their ack: round-trip latency per request.
    Request,
    /// Publishes paced at --rate with the send time in the body; one-way latency.
    Latency,
    /// Acknowledged publishes, --in-flight at a time (1, or e.g. 256 pipelined).
    Durable,
    /// Opens --connections idle sessions, each subscribed to a channel of its own, and
    /// reports the server's memory per session.
    Idle,
}

/// How bench connections reach the embedded server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchTransport {
    /// The protocol over TCP.
    Tcp,
    /// The protocol over WebSocket, through the web listener.
    Ws,
}

impl BenchTransport {
    pub fn name(self) -> &'static str {
        match self {
            BenchTransport::Tcp => "TCP",
            BenchTransport::Ws => "WebSocket",
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure (the same as --mode).
    #[arg(value_enum, value_name = "MODE")]
    pub mode: Option<BenchMode>,
    /// What to measure, as an option: the values of MODE [default: pubsub].
    #[arg(
        long = "mode",
        value_enum,
        value_name = "MODE",
        conflicts_with = "mode",
        hide_possible_values = true
    )]
    pub mode_option: Option<BenchMode>,
    /// Start a server in this process on 127.0.0.1:0 and measure that (--server is then
    /// not used).
    #[arg(long)]
    pub embedded: bool,
    /// With --embedded: how the bench connects, over TCP or over WebSocket (the embedded
    /// server's web listener, ws://.../ws); "tcp,ws" runs the bench once over each and
    /// compares them. Against --server, give a ws:// address instead.
    #[arg(
        long,
        value_enum,
        value_name = "TRANSPORT",
        value_delimiter = ',',
        default_value = "tcp",
        requires = "embedded"
    )]
    pub transport: Vec<BenchTransport>,
    /// Publishing connections [default: 1; channels: 4, one channel each].
    #[arg(long, value_name = "P")]
    pub publishers: Option<usize>,
    /// Subscribing connections [default: 1, per channel in channels mode; fanout: 10;
    /// request and durable: 0].
    #[arg(long, value_name = "S")]
    pub subscribers: Option<usize>,
    /// Message body size in bytes; k and m suffixes are powers of 1024 (16, 1k, 64k)
    /// [default: 128; fanout: 256; latency: 64; durable: 1k].
    #[arg(long, value_name = "BYTES", value_parser = super::parse_size)]
    pub size: Option<usize>,
    /// Publish this many messages in all (shared among the publishers).
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Publish for this long (5s, 500ms, 1m) [default: 5s; latency: 3s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Prefix of the channel names; a run uses PREFIX.MODE.RUN[.N], fresh each time.
    #[arg(long, value_name = "NAME", default_value = "bench")]
    pub channel: String,
    /// latency: messages per second, all publishers together [default: 5000].
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<u32>,
    /// request, durable: publishes awaiting their ack at once, per publisher [default: 1].
    #[arg(long, value_name = "N")]
    pub in_flight: Option<usize>,
    /// durable: how the bench channel is kept (its durability, the values of
    /// `serve --sync` or memory); default: the server's own policy.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub sync: Option<SyncPolicy>,
    /// idle: sessions to open [default: 1000].
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Subscribers connect here instead of --server (another node of the same cluster),
    /// so that what is measured is a message's way from one node to another.
    #[arg(long, value_name = "ADDR", conflicts_with = "embedded")]
    pub subscriber_server: Option<String>,
    /// Against --server: the server's process id, to read its memory (idle) and its
    /// CPU time from /proc/PID (Linux).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Most messages a publisher may be ahead of the slowest subscriber of its channel
    /// (flow control) [default: 16 MiB worth of bodies, 64..4096 messages].
    #[arg(long, value_name = "N")]
    pub window: Option<u64>,
    /// With --embedded: the bench's sessions take a role of N allow patterns (for
    /// publish, subscribe, history and channel creation), of which only the last matches
    /// the bench's channels, to measure what permission checks cost.
    #[arg(long, value_name = "N", requires = "embedded")]
    pub role_patterns: Option<usize>,
    /// Give up waiting for the last deliveries after this long without progress.
    #[arg(long, value_name = "D", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    #[command(flatten)]
    pub client: crate::cli::ClientOptions,
}

/// How the durable bench's channel is kept, named as `serve --sync` and `channel create
/// --durability` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncPolicy {
    /// Acknowledge a publish once it is synced to disk.
    Always,
    /// Write at once, sync periodically.
    Interval,
    /// Write at once, leave syncing to the operating system.
    Never,
    /// Keep the channel in memory only, even on a server with a data directory.
    Memory,
}

impl SyncPolicy {
    pub fn name(self) -> &'static str {
        self.durability().name()
    }

    /// The channel durability that asks for this policy.
    pub fn durability(self) -> Durability {
        match self {
            SyncPolicy::Always => Durability::Always,
            SyncPolicy::Interval => Durability::Interval,
            SyncPolicy::Never => Durability::Never,
            SyncPolicy::Memory => Durability::Memory,
        }
    }
}
