//! `bench channels`: many channels at once. Each of --publishers channels has its own
//! publisher and --subscribers subscribers of its own, so the server routes many
//! independent flows instead of one hot channel.

use anyhow::Result;

use super::Settings;
use super::flow::{self, FlowPlan, Pace};
use super::report::Report;
use super::target::Target;

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let channels = (0..settings.channel_count())
        .map(|index| format!("{}.{index}", settings.channel_base))
        .collect();
    let plan = FlowPlan {
        label: format!("channels ×{}", settings.channel_count()),
        channels,
        publishers_per_channel: 1,
        subscribers_per_channel: settings.subscribers,
        size: settings.size,
        limit: settings.limit,
        pace: Pace::Flood,
        window: settings.window,
        drain_timeout: settings.drain_timeout,
    };
    let subscribers = settings.subscribers * settings.channel_count();
    let outcome = flow::run(target, &plan).await?;
    Ok(Report::from_flow(
        settings,
        target,
        subscribers,
        outcome,
        plan.pace,
    ))
}
