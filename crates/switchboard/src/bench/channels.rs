//! `bench channels`: many channels at once. Each of --publishers channels has its own
//! publisher and --subscribers subscribers of its own, so the server routes many
//! independent flows instead of one hot channel.

use anyhow::Result;

use super::Settings;
use super::report::Report;
use super::target::Target;
use super::workload::{self, Pace, Workload};

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let channels = (0..settings.channel_count())
        .map(|index| format!("{}.{index}", settings.channel_base))
        .collect();
    let mut plan = Workload::new(
        settings,
        format!("channels ×{}", settings.channel_count()),
        channels,
        Pace::Flood,
    );
    // One publisher per channel: --publishers is the number of channels here.
    plan.publishers_per_channel = 1;
    workload::measure(target, settings, plan).await
}
