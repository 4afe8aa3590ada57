//! `bench pubsub`: publishers and subscribers on one channel (1 → 1 by default), as fast
//! as flow control allows. Publish rate, receive rate, loss.

use anyhow::Result;

use super::Settings;
use super::flow::{self, FlowPlan, Pace};
use super::report::Report;
use super::target::Target;

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    flood_one_channel(target, settings, "pubsub".to_owned()).await
}

/// Publishers flooding one channel and its subscribers: pubsub, and fanout with more
/// subscribers.
pub(super) async fn flood_one_channel(
    target: &Target,
    settings: &Settings,
    label: String,
) -> Result<Report> {
    let plan = FlowPlan {
        label,
        channels: vec![settings.channel_base.clone()],
        publishers_per_channel: settings.publishers,
        subscribers_per_channel: settings.subscribers,
        size: settings.size,
        limit: settings.limit,
        pace: Pace::Flood,
        window: settings.window,
        drain_timeout: settings.drain_timeout,
    };
    let outcome = flow::run(target, &plan).await?;
    Ok(Report::from_flow(
        settings,
        target,
        settings.subscribers,
        outcome,
        plan.pace,
    ))
}
