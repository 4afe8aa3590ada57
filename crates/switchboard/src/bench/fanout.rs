//! `bench fanout`: one publisher to many subscribers of one channel (1 → 10 by default).
//! The receive side counts deliveries across all subscribers, so its msgs/s is the
//! server's delivery rate; each subscriber must receive every message.

use anyhow::Result;

use super::Settings;
use super::flow::{self, FlowPlan, Pace};
use super::report::Report;
use super::target::Target;

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let plan = FlowPlan {
        label: format!("fanout 1→{}", settings.subscribers),
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
