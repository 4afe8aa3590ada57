//! `bench pubsub`: publishers and subscribers on one channel (1 → 1 by default), as fast
//! as flow control allows. Publish rate, receive rate, loss.

use anyhow::Result;

use super::Settings;
use super::report::Report;
use super::target::Target;
use super::workload::{self, Pace, Workload};

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
    let plan = Workload::new(
        settings,
        label,
        vec![settings.channel_base.clone()],
        Pace::Flood,
    );
    workload::measure(target, settings, plan).await
}
