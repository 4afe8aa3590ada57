//! `bench latency`: publishes paced at --rate (5,000 msg/s by default) for --duration,
//! each body starting with its send time (nanoseconds on this process's monotonic
//! clock) and its index; the subscriber, in the same process, records the one-way
//! latency in an HDR histogram (microseconds, 3 significant digits).
//!
//! A paced run shows the latency of a server that is not saturated, which a flood
//! cannot: there, queueing in the window dominates.

use anyhow::Result;

use super::Settings;
use super::report::Report;
use super::target::Target;
use super::workload::{self, Pace, Workload};

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let per_publisher = f64::from(settings.rate) / settings.publishers as f64;
    let plan = Workload::new(
        settings,
        format!("latency {}/s", settings.rate),
        vec![settings.channel_base.clone()],
        Pace::Rate(per_publisher),
    );
    let mut report = workload::measure(target, settings, plan).await?;
    report.rate = Some(settings.rate);
    Ok(report)
}
