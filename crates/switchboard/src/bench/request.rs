//! `bench request`: request round trips. Each publisher publishes and waits for the
//! server's ack before the next (or keeps --in-flight acks outstanding); the time from
//! queueing a publish to its ack is the request latency. No subscriber by default, so
//! the figure is the server's ingest path alone; --subscribers adds deliveries (with
//! their loss check).

use anyhow::Result;

use super::Settings;
use super::report::Report;
use super::target::Target;
use super::workload::{self, Pace, Workload};

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let plan = Workload::new(
        settings,
        "request".to_owned(),
        vec![settings.channel_base.clone()],
        Pace::Acked {
            in_flight: settings.in_flight,
        },
    );
    workload::measure(target, settings, plan).await
}
