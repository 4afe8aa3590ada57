//! The result of a run: a summary table for people, or with `--json` one JSON object
//! holding every figure, and the verdict (a lost message fails the run).
//!
//! Rates are per second of wall time; MB/s counts bodies only, in millions of bytes
//! (as `nats bench` does), not frame headers.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::target::Target;
use super::workload::{Pace, WorkloadOutcome};
use super::{Settings, mode_name};
use crate::output::print_json;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LatencySummary {
    /// What was timed: `one-way` (publish to delivery) or `ack` (queueing a publish to
    /// its ack).
    pub kind: &'static str,
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

impl LatencySummary {
    pub fn from_histogram(kind: &'static str, histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        Some(LatencySummary {
            kind,
            count: histogram.len(),
            min: histogram.min(),
            mean: round2(histogram.mean()),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p99_9: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        })
    }
}

/// Memory of idle sessions.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct IdleFigures {
    pub connections: usize,
    pub opened: usize,
    pub open_seconds: f64,
    /// Sessions the server counted as connected once all were open.
    pub server_connections: Option<u64>,
    pub rss_before_kib: Option<u64>,
    pub rss_open_kib: Option<u64>,
    pub rss_closed_kib: Option<u64>,
    pub rss_per_connection_kib: Option<f64>,
    /// Whose memory that is.
    pub rss_of: String,
}

/// Everything a run measured. Absent figures are left out of the JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Report {
    pub mode: &'static str,
    pub server: String,
    pub embedded: bool,
    pub server_software: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// durable: the bench channel's durability as the server reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,

    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_msgs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_mb_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_msgs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_mb_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_msgs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_mb_per_s: Option<f64>,
    /// Publishes not received, summed over subscribers (each counts its channel's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_per_subscriber: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<LatencySummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleFigures>,

    pub notes: Vec<String>,
    pub failures: Vec<String>,
    pub ok: bool,
}

impl Report {
    /// The parts every report shares: the mode and the server.
    pub fn new(settings: &Settings, target: &Target) -> Report {
        let mut notes = Vec::new();
        if target.is_embedded() {
            notes.push(format!(
                "embedded: the server runs in this process, on the same runtime and {} as the \
                 bench clients",
                worker_cores()
            ));
        }
        if let Some(patterns) = settings.role_patterns {
            notes.push(format!(
                "role: the bench's sessions hold a role of {patterns} allow patterns per operation, the last one matching"
            ));
        }
        Report {
            mode: mode_name(settings.mode),
            server: target.address().to_owned(),
            embedded: target.is_embedded(),
            server_software: target.software().to_owned(),
            notes,
            ok: true,
            ..Report::default()
        }
    }

    /// A report of a workload: the parameters, then what publishers and subscribers did.
    pub fn from_workload(
        settings: &Settings,
        target: &Target,
        subscribers: usize,
        outcome: WorkloadOutcome,
        pace: Pace,
    ) -> Report {
        let mut report = Report::new(settings, target);
        let bytes = |count: u64| count as f64 * settings.size as f64;
        let publish_seconds = outcome.publish_elapsed.as_secs_f64();
        let receive_seconds = outcome.receive_elapsed.as_secs_f64();
        report.channels = Some(settings.channel_count());
        report.publishers = Some(settings.publishers);
        report.subscribers = Some(subscribers);
        report.size = Some(settings.size);
        report.count = settings.count();
        report.duration_s = settings.duration().map(|duration| duration.as_secs_f64());
        report.window =
            (subscribers > 0 && !matches!(pace, Pace::Rate(_))).then_some(settings.window);
        report.published = Some(outcome.published);
        report.publish_seconds = Some(round3(publish_seconds));
        report.publish_msgs_per_s = Some(per_second(outcome.published as f64, publish_seconds));
        report.publish_mb_per_s = Some(mb_per_second(bytes(outcome.published), publish_seconds));
        if let Pace::Acked { in_flight } = pace {
            report.in_flight = Some(in_flight);
            report.acked = Some(outcome.acked);
            report.acked_msgs_per_s = Some(per_second(outcome.acked as f64, publish_seconds));
            report.acked_mb_per_s = Some(mb_per_second(bytes(outcome.acked), publish_seconds));
            if outcome.acked != outcome.published {
                report.failures.push(format!(
                    "{} publishes were sent but only {} acknowledged",
                    outcome.published, outcome.acked
                ));
            }
        }
        if subscribers > 0 {
            let loss: u64 = outcome.loss_per_subscriber.iter().sum();
            report.received = Some(outcome.received);
            report.expected = Some(outcome.expected);
            report.receive_seconds = Some(round3(receive_seconds));
            report.receive_msgs_per_s = Some(per_second(outcome.received as f64, receive_seconds));
            report.receive_mb_per_s = Some(mb_per_second(bytes(outcome.received), receive_seconds));
            report.loss = Some(loss);
            report.loss_per_subscriber = Some(outcome.loss_per_subscriber);
            report.out_of_order = Some(outcome.out_of_order);
            if loss > 0 {
                report.failures.push(format!(
                    "{loss} of {} deliveries lost",
                    thousands(outcome.expected)
                ));
            }
        }
        report.latency_us = match (&outcome.one_way_us, &outcome.ack_us) {
            (Some(histogram), _) => LatencySummary::from_histogram("one-way", histogram),
            (None, Some(histogram)) => LatencySummary::from_histogram("ack", histogram),
            (None, None) => None,
        };
        report.process_cpu_percent = outcome.process_cpu_percent.map(round1);
        report.server_cpu_percent = outcome.server_cpu_percent.map(round1);
        report.notes.extend(outcome.notes);
        report.failures.extend(outcome.failures);
        report.ok = report.failures.is_empty();
        report
    }

    /// Prints the report: one JSON object, or the summary table.
    pub fn print(&self, json: bool) {
        if json {
            match serde_json::to_value(self) {
                Ok(value) => print_json(&value),
                Err(error) => eprintln!("switchboard: cannot encode the report as JSON: {error}"),
            }
        } else {
            for line in self.text().lines() {
                crate::outln!("{line}");
            }
        }
    }

    /// Ok if nothing was lost or refused; otherwise an error naming the first problem.
    pub fn verdict(&self) -> Result<()> {
        match self.failures.as_slice() {
            [] => Ok(()),
            [only] => bail!("bench failed: {only}"),
            [first, rest @ ..] => bail!("bench failed: {first} (and {} more problems)", rest.len()),
        }
    }

    /// The summary table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let place = if self.embedded {
            format!("embedded server at {}", self.server)
        } else {
            format!("server {}", self.server)
        };
        let _ = writeln!(
            out,
            "switchboard bench {}: {place} ({})",
            self.mode, self.server_software
        );
        let shape = self.shape();
        if !shape.is_empty() {
            let _ = writeln!(out, "  {}", shape.join(", "));
        }
        if let Some(idle) = &self.idle {
            idle_text(&mut out, idle);
        } else {
            self.traffic_text(&mut out);
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for failure in &self.failures {
            let _ = writeln!(out, "FAILED: {failure}");
        }
        out
    }

    /// The parameters, as a short list.
    fn shape(&self) -> Vec<String> {
        let mut shape = Vec::new();
        let plural = |count: usize, word: &str| {
            format!(
                "{} {word}{}",
                thousands(count as u64),
                if count == 1 { "" } else { "s" }
            )
        };
        if let Some(channels) = self.channels {
            shape.push(plural(channels, "channel"));
        }
        if let Some(publishers) = self.publishers {
            shape.push(plural(publishers, "publisher"));
        }
        if let Some(subscribers) = self.subscribers {
            shape.push(plural(subscribers, "subscriber"));
        }
        if let Some(size) = self.size {
            shape.push(format!("{} bodies", size_text(size)));
        }
        if let Some(count) = self.count {
            shape.push(format!("{} messages", thousands(count)));
        }
        if let Some(duration) = self.duration_s {
            shape.push(format!(
                "for {}",
                humantime::format_duration(Duration::from_secs_f64(duration))
            ));
        }
        if let Some(rate) = self.rate {
            shape.push(format!("{} msg/s", thousands(u64::from(rate))));
        }
        if let Some(in_flight) = self.in_flight {
            shape.push(format!("{in_flight} in flight per publisher"));
        }
        if let Some(window) = self.window {
            shape.push(format!("window {} messages", thousands(window)));
        }
        if let Some(sync) = &self.sync {
            shape.push(format!("sync {sync}"));
        }
        shape
    }

    fn traffic_text(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n  {:<10} {:>13} {:>13} {:>10} {:>9}",
            "", "messages", "msgs/s", "MB/s", "seconds"
        );
        let mut row = |label: &str,
                       count: Option<u64>,
                       rate: Option<f64>,
                       mb: Option<f64>,
                       seconds: Option<f64>| {
            if let Some(count) = count {
                let _ = writeln!(
                    out,
                    "  {label:<10} {:>13} {:>13} {:>10.2} {:>9.3}",
                    thousands(count),
                    thousands(rate.unwrap_or(0.0).round() as u64),
                    mb.unwrap_or(0.0),
                    seconds.unwrap_or(0.0)
                );
            }
        };
        row(
            "published",
            self.published,
            self.publish_msgs_per_s,
            self.publish_mb_per_s,
            self.publish_seconds,
        );
        row(
            "acked",
            self.acked,
            self.acked_msgs_per_s,
            self.acked_mb_per_s,
            self.publish_seconds,
        );
        let received_label = if self.subscribers.unwrap_or(0) > 1 {
            "delivered"
        } else {
            "received"
        };
        row(
            received_label,
            self.received,
            self.receive_msgs_per_s,
            self.receive_mb_per_s,
            self.receive_seconds,
        );
        if let Some(loss) = self.loss {
            let worst = self
                .loss_per_subscriber
                .as_ref()
                .and_then(|losses| losses.iter().max().copied())
                .unwrap_or(0);
            let detail = if loss > 0 {
                format!(
                    " (of {}; worst subscriber {})",
                    thousands(self.expected.unwrap_or(0)),
                    thousands(worst)
                )
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {:<10} {:>13}{detail}", "loss", thousands(loss));
        }
        if let Some(latency) = &self.latency_us {
            let _ = writeln!(
                out,
                "\n  latency µs ({}, {} samples)\n  {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
                latency.kind,
                thousands(latency.count),
                "min",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "mean"
            );
            let _ = writeln!(
                out,
                "  {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10.1}",
                latency.min,
                latency.p50,
                latency.p90,
                latency.p99,
                latency.p99_9,
                latency.max,
                latency.mean
            );
        }
        let mut cpu = Vec::new();
        if let Some(percent) = self.process_cpu_percent {
            cpu.push(format!("this process {percent:.0} %"));
        }
        if let Some(percent) = self.server_cpu_percent {
            cpu.push(format!("server {percent:.0} %"));
        }
        if !cpu.is_empty() {
            let _ = writeln!(out, "\n  CPU (% of one core): {}", cpu.join(", "));
        }
        if let Some(storage) = &self.storage {
            let _ = writeln!(out, "  storage: {storage}");
        }
    }
}

fn idle_text(out: &mut String, idle: &IdleFigures) {
    let kib = |value: Option<u64>| {
        value.map_or_else(
            || "unavailable".to_owned(),
            |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
        )
    };
    let _ = writeln!(
        out,
        "\n  sessions opened    {} of {} in {:.2} s",
        thousands(idle.opened as u64),
        thousands(idle.connections as u64),
        idle.open_seconds
    );
    if let Some(connected) = idle.server_connections {
        let _ = writeln!(
            out,
            "  server counts      {} connected",
            thousands(connected)
        );
    }
    let _ = writeln!(
        out,
        "  RSS before         {}  ({})",
        kib(idle.rss_before_kib),
        idle.rss_of
    );
    let _ = writeln!(out, "  RSS with sessions  {}", kib(idle.rss_open_kib));
    let _ = writeln!(out, "  RSS after closing  {}", kib(idle.rss_closed_kib));
    match idle.rss_per_connection_kib {
        Some(per) => {
            let _ = writeln!(out, "  per session        {per:.1} KiB");
        }
        None => {
            let _ = writeln!(out, "  per session        unavailable");
        }
    }
}

/// Cores the runtime may use (its worker threads).
fn worker_cores() -> String {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    format!("{cores} core{}", if cores == 1 { "" } else { "s" })
}

pub(super) fn per_second(count: f64, seconds: f64) -> f64 {
    if count == 0.0 || seconds <= 0.0 {
        return 0.0;
    }
    (count / seconds).round()
}

fn mb_per_second(bytes: f64, seconds: f64) -> f64 {
    round2(per_second(bytes, seconds) / 1e6)
}

pub(super) fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

pub(super) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

pub(super) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `1234567` as `1,234,567`.
pub(super) fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `65536` as `64 KiB`, `100` as `100 B`.
pub(super) fn size_text(size: usize) -> String {
    match size {
        size if size >= 1 << 20 && size % (1 << 20) == 0 => format!("{} MiB", size >> 20),
        size if size >= 1 << 10 && size % (1 << 10) == 0 => format!("{} KiB", size >> 10),
        size => format!("{size} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(size_text(16), "16 B");
        assert_eq!(size_text(1024), "1 KiB");
        assert_eq!(size_text(65536), "64 KiB");
        assert_eq!(size_text(1500), "1500 B");
    }

    #[test]
    fn percentiles_come_out_ordered() {
        let mut histogram = super::super::workload::latency_histogram();
        for value in 1..=10_000 {
            histogram.saturating_record(value);
        }
        let summary = LatencySummary::from_histogram("one-way", &histogram);
        let summary = summary.expect("a summary of 10000 samples");
        assert!(summary.min <= summary.p50);
        assert!(summary.p50 <= summary.p90 && summary.p90 <= summary.p99);
        assert!(summary.p99 <= summary.p99_9 && summary.p99_9 <= summary.max);
        assert_eq!(summary.count, 10_000);
    }

    #[test]
    fn a_failure_fails_the_verdict() {
        let mut report = Report::default();
        assert!(report.verdict().is_ok());
        report.failures.push("3 of 10 deliveries lost".into());
        let error = report.verdict().map_err(|error| error.to_string());
        assert_eq!(
            error,
            Err("bench failed: 3 of 10 deliveries lost".to_owned())
        );
    }
}
