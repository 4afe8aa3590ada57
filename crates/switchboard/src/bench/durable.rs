//! `bench durable`: acknowledged publishes, the figure a durable store is judged by.
//! Each publisher keeps --in-flight publishes awaiting their ack (1: one at a time;
//! 256: pipelined) and the run reports acked msg/s and the queue-to-ack latency.
//!
//! --sync names the storage sync policy to ask for. The protocol has no way to ask yet,
//! so it is recorded in the report and nothing else; the report also says what storage
//! the server has, as far as it tells: an ack from a memory-only server means "in
//! memory", not "on disk".

use anyhow::Result;

use super::Settings;
use super::flow::{self, FlowPlan, Pace};
use super::report::Report;
use super::target::Target;

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let plan = FlowPlan {
        label: format!("durable ≤{} in flight", settings.in_flight),
        channels: vec![settings.channel_base.clone()],
        publishers_per_channel: settings.publishers,
        subscribers_per_channel: settings.subscribers,
        size: settings.size,
        limit: settings.limit,
        pace: Pace::Acked {
            in_flight: settings.in_flight,
        },
        window: settings.window,
        drain_timeout: settings.drain_timeout,
    };
    let storage = storage_description(target).await;
    let outcome = flow::run(target, &plan).await?;
    let mut report = Report::from_flow(settings, target, settings.subscribers, outcome, plan.pace);
    report.storage = Some(storage);
    if let Some(sync) = settings.sync {
        report.sync = Some(sync.name().to_owned());
        report.notes.push(format!(
            "--sync {} is recorded only: the protocol cannot pass a sync policy to the server yet",
            sync.name()
        ));
    }
    Ok(report)
}

/// What the server says about its storage: its `storage*`, `durable*` or `sync*`
/// counters if it reports any, else that it keeps history in memory only.
async fn storage_description(target: &Target) -> String {
    const MEMORY_ONLY: &str = "memory-only (the server reports no durable storage): an ack means the message is in the server's memory";
    if target.is_embedded() {
        // The embedded server is started with the builder's defaults: memory storage.
        return MEMORY_ONLY.to_owned();
    }
    let Some(stats) = target.server_stats().await else {
        return "unknown: the server's counters could not be read".to_owned();
    };
    let storage: Vec<String> = stats
        .iter()
        .filter(|(name, _)| {
            ["storage", "durable", "sync"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
        })
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if storage.is_empty() {
        MEMORY_ONLY.to_owned()
    } else {
        format!("the server reports {}", storage.join(", "))
    }
}
