//! `switchboard bench`: measures a running server (`--server`) or one started in this
//! process (`--embedded`), in the spirit of `nats bench` and `redis-benchmark`.
//!
//! Every mode but `idle` moves messages through [`workload`]: publishers on their own
//! connections, subscribers on theirs, counters the publishers use for flow control and
//! the run uses to prove that nothing was lost. Each mode file only picks the shape of
//! the workload (how many channels, publishers and subscribers, how publishes are paced) and
//! what its report shows. [`report`] prints the summary table or one JSON object, and
//! [`progress`] draws a bar on a terminal.
//!
//! A run fails (exit code 1, after the report is printed) when a message was lost, a
//! publish failed, or a subscriber was disconnected.

mod args;
mod channels;
mod durable;
mod fanout;
mod idle;
mod latency;
mod progress;
mod pubsub;
mod report;
mod request;
mod target;
mod workload;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::commands::Context;
pub use args::{BenchArgs, BenchMode, SyncPolicy};
use target::Target;

/// Publishing time when neither --count nor --duration is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(5);
/// The latency mode's default duration (5,000 msg/s for 3 s, as peers-bench runs it).
const DEFAULT_LATENCY_DURATION: Duration = Duration::from_secs(3);
const DEFAULT_RATE: u32 = 5000;
const DEFAULT_IDLE_CONNECTIONS: usize = 1000;
const DEFAULT_FANOUT_SUBSCRIBERS: usize = 10;
const DEFAULT_CHANNELS: usize = 4;
/// The flow-control window holds about this many bytes of bodies...
const WINDOW_BYTES: u64 = 16 * 1024 * 1024;
/// ...but at least this many messages, so that large bodies still pipeline...
const MIN_WINDOW: u64 = 64;
/// ...and at most this many: the server queues at most 8192 frames per connection before
/// it disconnects a slow consumer, and a window well below that keeps a subscriber that
/// falls behind from ever reaching the limit (see ARCHITECTURE.md, "outbound queue").
const MAX_WINDOW: u64 = 4096;
/// The latency mode's body starts with the send time and the message index.
pub(super) const TIMESTAMP_BYTES: usize = 16;

/// Runs the benchmark `args` describe, prints its report, and fails if the run lost or
/// refused anything.
pub async fn run(ctx: &Context, args: BenchArgs) -> Result<()> {
    let transports = args.transport.clone();
    let settings = Settings::resolve(args)?;
    if let [transport] = transports[..] {
        return run_over(
            ctx,
            Settings {
                transport,
                ..settings
            },
        )
        .await;
    }
    // The same bench over each transport in turn, each on a fresh embedded server, then
    // how their throughput compares.
    let mut received = Vec::new();
    for &transport in &transports {
        let settings = Settings {
            transport,
            channel_base: format!(
                "{}.{}",
                settings.channel_base,
                transport.name().to_lowercase()
            ),
            ..settings.clone()
        };
        if !ctx.json {
            if transport != transports[0] {
                crate::outln!("");
            }
            crate::outln!("over {}:", transport.name());
        }
        let report = run_once(ctx, &settings).await?;
        report.verdict()?;
        received.push((transport, report.receive_msgs_per_s));
    }
    if let (false, [(first, Some(base)), rest @ ..]) = (ctx.json, &received[..]) {
        for (transport, rate) in rest {
            if let Some(rate) = rate {
                crate::outln!(
                    "{} / {}: {:.2} x the messages received per second",
                    transport.name(),
                    first.name(),
                    rate / base
                );
            }
        }
    }
    Ok(())
}

/// One run, its report printed and its verdict returned.
async fn run_over(ctx: &Context, settings: Settings) -> Result<()> {
    run_once(ctx, &settings).await?.verdict()
}

/// One run on a fresh target; its report printed and returned.
async fn run_once(ctx: &Context, settings: &Settings) -> Result<report::Report> {
    let settings = settings.clone();
    let target = Target::start(ctx, &settings).await?;
    let outcome = match settings.mode {
        BenchMode::Pubsub => pubsub::run(&target, &settings).await,
        BenchMode::Fanout => fanout::run(&target, &settings).await,
        BenchMode::Channels => channels::run(&target, &settings).await,
        BenchMode::Request => request::run(&target, &settings).await,
        BenchMode::Latency => latency::run(&target, &settings).await,
        BenchMode::Durable => durable::run(&target, &settings).await,
        BenchMode::Idle => idle::run(&target, &settings).await,
    };
    target.stop().await;
    let report = outcome?;
    report.print(ctx.json);
    Ok(report)
}

/// When publishing stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// This many messages in all.
    Count(u64),
    /// Publishing for this long.
    Duration(Duration),
}

/// The parameters of one run, with every default filled in for its mode.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub mode: BenchMode,
    pub embedded: bool,
    pub transport: args::BenchTransport,
    pub publishers: usize,
    pub subscribers: usize,
    pub size: usize,
    pub limit: Limit,
    /// `PREFIX.MODE.RUN`: fresh for every run, so nothing else publishes there and no
    /// history of an earlier run is involved.
    pub channel_base: String,
    pub rate: u32,
    pub in_flight: usize,
    pub sync: Option<SyncPolicy>,
    pub connections: usize,
    pub server_pid: Option<u32>,
    /// Where subscribers connect, when not to the server publishers use.
    pub subscriber_server: Option<String>,
    pub window: u64,
    pub drain_timeout: Duration,
    /// The role of N allow patterns the embedded server gives the bench's sessions.
    pub role_patterns: Option<usize>,
    /// The channel names' prefix, which the role's last pattern covers.
    pub channel_prefix: String,
}

impl Settings {
    fn resolve(args: BenchArgs) -> Result<Settings> {
        let mode = args.mode.or(args.mode_option).unwrap_or(BenchMode::Pubsub);
        refuse_options_of_other_modes(mode, &args)?;
        let publishers = args.publishers.unwrap_or(match mode {
            BenchMode::Channels => DEFAULT_CHANNELS,
            _ => 1,
        });
        let subscribers = args.subscribers.unwrap_or(match mode {
            BenchMode::Fanout => DEFAULT_FANOUT_SUBSCRIBERS,
            BenchMode::Request | BenchMode::Durable | BenchMode::Idle => 0,
            _ => 1,
        });
        let size = args.size.unwrap_or(match mode {
            BenchMode::Fanout => 256,
            BenchMode::Latency => 64,
            BenchMode::Durable => 1024,
            _ => 128,
        });
        let limit = match (args.count, args.duration) {
            (Some(count), _) => Limit::Count(count),
            (None, Some(duration)) => Limit::Duration(duration),
            (None, None) if mode == BenchMode::Latency => Limit::Duration(DEFAULT_LATENCY_DURATION),
            (None, None) => Limit::Duration(DEFAULT_DURATION),
        };
        let window = args.window.unwrap_or_else(|| default_window(size));
        let settings = Settings {
            mode,
            embedded: args.embedded,
            transport: args::BenchTransport::Tcp,
            publishers,
            subscribers,
            size,
            limit,
            channel_base: format!("{}.{}.{}", args.channel, mode_name(mode), run_id()),
            rate: args.rate.unwrap_or(DEFAULT_RATE),
            in_flight: args.in_flight.unwrap_or(1),
            sync: args.sync,
            connections: args.connections.unwrap_or(DEFAULT_IDLE_CONNECTIONS),
            server_pid: args.server_pid,
            subscriber_server: args.subscriber_server.clone(),
            window,
            drain_timeout: args.drain_timeout,
            role_patterns: args.role_patterns,
            channel_prefix: args.channel.clone(),
        };
        settings.check()?;
        Ok(settings)
    }

    /// Refuses combinations that cannot run, with the reason.
    fn check(&self) -> Result<()> {
        let moves_messages = self.mode != BenchMode::Idle;
        if moves_messages && self.publishers == 0 {
            bail!("--publishers must be at least 1");
        }
        let needs_subscribers = !matches!(self.mode, BenchMode::Request | BenchMode::Durable);
        if moves_messages && needs_subscribers && self.subscribers == 0 {
            bail!("{} needs at least one subscriber", mode_name(self.mode));
        }
        if self.limit == Limit::Count(0) {
            bail!("--count must be at least 1");
        }
        if self.limit == Limit::Duration(Duration::ZERO) {
            bail!("--duration must be longer than 0");
        }
        if self.mode == BenchMode::Latency {
            if self.size < TIMESTAMP_BYTES {
                bail!(
                    "latency bodies carry a {TIMESTAMP_BYTES}-byte send time and index: --size must be at least {TIMESTAMP_BYTES}"
                );
            }
            if self.rate == 0 {
                bail!("--rate must be at least 1 message per second");
            }
        }
        if self.in_flight == 0 {
            bail!("--in-flight must be at least 1");
        }
        if self.mode == BenchMode::Idle && self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if self.window == 0 {
            bail!("--window must be at least 1");
        }
        if self.role_patterns == Some(0) {
            bail!("--role-patterns must be at least 1: the last pattern is the one that matches");
        }
        if self.mode == BenchMode::Channels && self.channel_count() > 100_000 {
            bail!("--publishers is the number of channels here: at most 100000");
        }
        Ok(())
    }

    /// How many channels the mode publishes to.
    pub fn channel_count(&self) -> usize {
        match self.mode {
            BenchMode::Channels => self.publishers,
            _ => 1,
        }
    }

    /// The message total, when publishing is bounded by count.
    pub fn count(&self) -> Option<u64> {
        match self.limit {
            Limit::Count(count) => Some(count),
            Limit::Duration(_) => None,
        }
    }

    /// The publishing time, when publishing is bounded by time.
    pub fn duration(&self) -> Option<Duration> {
        match self.limit {
            Limit::Count(_) => None,
            Limit::Duration(duration) => Some(duration),
        }
    }
}

/// An option given for a mode that does not use it is refused rather than silently
/// ignored: a figure measured without the asked-for setting would mislead.
fn refuse_options_of_other_modes(mode: BenchMode, args: &BenchArgs) -> Result<()> {
    use BenchMode::{Durable, Idle, Latency, Request};
    let given: [(&str, bool, &[BenchMode]); 7] = [
        ("--rate", args.rate.is_some(), &[Latency]),
        ("--in-flight", args.in_flight.is_some(), &[Request, Durable]),
        ("--sync", args.sync.is_some(), &[Durable]),
        ("--connections", args.connections.is_some(), &[Idle]),
        (
            "--window",
            args.window.is_some(),
            &[
                BenchMode::Pubsub,
                BenchMode::Fanout,
                BenchMode::Channels,
                Request,
                Durable,
            ],
        ),
        ("--publishers", args.publishers.is_some(), &NOT_IDLE),
        ("--size", args.size.is_some(), &NOT_IDLE),
    ];
    for (option, is_given, modes) in given {
        if is_given && !modes.contains(&mode) {
            let names: Vec<&str> = modes.iter().map(|mode| mode_name(*mode)).collect();
            bail!(
                "{option} applies to {} only, not to {}",
                names.join(", "),
                mode_name(mode)
            );
        }
    }
    if mode == Idle
        && (args.subscribers.is_some() || args.count.is_some() || args.duration.is_some())
    {
        bail!(
            "idle opens --connections sessions; --subscribers, --count and --duration do not apply"
        );
    }
    Ok(())
}

const NOT_IDLE: [BenchMode; 6] = [
    BenchMode::Pubsub,
    BenchMode::Fanout,
    BenchMode::Channels,
    BenchMode::Request,
    BenchMode::Latency,
    BenchMode::Durable,
];

pub(super) fn mode_name(mode: BenchMode) -> &'static str {
    match mode {
        BenchMode::Pubsub => "pubsub",
        BenchMode::Fanout => "fanout",
        BenchMode::Channels => "channels",
        BenchMode::Request => "request",
        BenchMode::Latency => "latency",
        BenchMode::Durable => "durable",
        BenchMode::Idle => "idle",
    }
}

/// 16 MiB of bodies, kept within [`MIN_WINDOW`, `MAX_WINDOW`] messages.
fn default_window(size: usize) -> u64 {
    (WINDOW_BYTES / size.max(1) as u64).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// A name part unique to this run: milliseconds since the epoch and the process id.
fn run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("{millis}-{}", std::process::id())
}

/// Parses a body size: `16`, `1k`, `64K`, `1m`, `2KiB`, `512b`, with the suffixes every
/// size flag takes (powers of 1024, as message sizes usually are).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = crate::cli::parse_bytes(text)?;
    usize::try_from(bytes).map_err(|_| format!("{:?} is too large", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1024 * 1024));
        assert_eq!(parse_size("512b"), Ok(512));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "k", "1x", "-1", "1.5k", "99999999999999999999m"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn the_window_follows_the_body_size_within_bounds() {
        assert_eq!(default_window(16), MAX_WINDOW);
        assert_eq!(default_window(8 * 1024), 2048);
        assert_eq!(default_window(64 * 1024), 256);
        assert_eq!(default_window(8 * 1024 * 1024), MIN_WINDOW);
    }
}
