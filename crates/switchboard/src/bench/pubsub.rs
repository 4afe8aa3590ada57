//! `bench pubsub`: publishers and subscribers on one channel (1 → 1 by default), as fast
//! as flow control allows. Publish rate, receive rate, loss.

use anyhow::Result;

use super::Settings;
use super::flow::{self, FlowPlan, Pace};
use super::report::Report;
use super::target::Target;

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let plan = FlowPlan {
        label: "pubsub".to_owned(),
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
