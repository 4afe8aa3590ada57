//! `bench durable`: acknowledged publishes, the figure a durable store is judged by.
//! Each publisher keeps --in-flight publishes awaiting their ack (1: one at a time;
//! 256: pipelined) and the run reports acked msg/s and the queue-to-ack latency.
//!
//! --sync is passed to the server as the bench channel's durability (CREATE_CHANNEL
//! before the first publish). What the ack promises depends on the server, so the
//! report says what the server answered: the channel's durability in force, and whether
//! the server has a durable store at all (its default durability for a channel that
//! asks for none is `memory` when it keeps nothing on disk; an ack is then "in memory",
//! whatever --sync asked).

use anyhow::{Context as _, Result};
use switchboard_client::{ChannelOptions, Durability};

use super::report::Report;
use super::target::Target;
use super::workload::{self, Pace, Workload};
use super::{Settings, SyncPolicy};

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let channel = settings.channel_base.clone();
    let storage = prepare_channel(target, &channel, settings.sync).await?;
    let plan = Workload::new(
        settings,
        format!("durable ≤{} in flight", settings.in_flight),
        vec![channel],
        Pace::Acked {
            in_flight: settings.in_flight,
        },
    );
    let mut report = workload::measure(target, settings, plan).await?;
    report.sync = settings.sync.map(|sync| sync.name().to_owned());
    report.durability = Some(storage.channel.name().to_owned());
    report.storage = Some(storage.describe());
    Ok(report)
}

/// What the server said about keeping the bench channel.
struct Storage {
    /// The durability the server gives a channel that asks for none.
    server_default: Durability,
    /// The bench channel's durability in force.
    channel: Durability,
}

impl Storage {
    fn describe(&self) -> String {
        if self.server_default == Durability::Memory {
            return "memory-only: the server has no durable store, so an ack means the message \
                    is in the server's memory"
                .to_owned();
        }
        match self.channel {
            Durability::Memory => "memory: this channel is kept in memory only".to_owned(),
            Durability::Never => {
                "durable store, sync never: acked once written, synced when the OS chooses"
                    .to_owned()
            }
            Durability::Interval => {
                "durable store, sync interval: acked once written, synced periodically".to_owned()
            }
            Durability::Always => {
                "durable store, sync always: acked once synced to disk".to_owned()
            }
        }
    }
}

/// Creates the bench channel with the asked durability, and finds out the server's
/// default: from the bench channel itself when nothing was asked, else from a second,
/// empty channel created without options.
async fn prepare_channel(
    target: &Target,
    channel: &str,
    sync: Option<SyncPolicy>,
) -> Result<Storage> {
    let client = target.connect("durable-setup").await?;
    let create = |name: String, durability: Option<Durability>| {
        let client = client.clone();
        async move {
            let options = ChannelOptions {
                durability,
                ..ChannelOptions::default()
            };
            let info = client
                .create_channel(&name, options)
                .await
                .with_context(|| format!("cannot create channel {name}"))?;
            // The server fills in its defaults; a server that predates durability
            // reports none, and keeps everything in memory.
            anyhow::Ok(info.options.durability.unwrap_or(Durability::Memory))
        }
    };
    let storage = match sync {
        None => {
            let durability = create(channel.to_owned(), None).await?;
            Storage {
                server_default: durability,
                channel: durability,
            }
        }
        Some(sync) => Storage {
            channel: create(channel.to_owned(), Some(sync.durability())).await?,
            server_default: create(format!("{channel}.default"), None).await?,
        },
    };
    let _ = client.close().await;
    Ok(storage)
}
