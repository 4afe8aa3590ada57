//! `bench fanout`: one publisher to many subscribers of one channel (1 → 10 by default).
//! The receive side counts deliveries across all subscribers, so its msgs/s is the
//! server's delivery rate; each subscriber must receive every message.

use anyhow::Result;

use super::Settings;
use super::pubsub::flood_one_channel;
use super::report::Report;
use super::target::Target;

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let label = format!("fanout 1→{}", settings.subscribers);
    flood_one_channel(target, settings, label).await
}
