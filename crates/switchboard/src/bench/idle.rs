//! `bench idle`: what an idle session costs the server. Opens --connections sessions,
//! each subscribed to a channel of its own (as peers-bench's idle workload does), and
//! reads the server's resident memory before, with all open, and after closing them.
//!
//! Memory comes from `/proc/PID/status` (VmRSS), so it is Linux only. With --embedded
//! the server is this process, whose memory also holds the bench's side of every
//! session: the per-session figure then covers both ends of a connection. Against
//! --server, --server-pid names the process to read; without it memory is not reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use switchboard_client::Replay;

use super::Settings;
use super::progress::Progress;
use super::report::{IdleFigures, Report, round1, round3, thousands};
use super::target::{Target, open_files_limit, rss_kib, stat};

/// Sessions being opened (or closed) at once.
const CONCURRENCY: usize = 64;
/// Time given to the server (and the allocator) to settle before memory is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Descriptors the process needs besides the sessions' own.
const SPARE_DESCRIPTORS: u64 = 64;

pub(super) async fn run(target: &Target, settings: &Settings) -> Result<Report> {
    let connections = settings.connections;
    check_descriptors(target, connections)?;
    let mut report = Report::new(settings, target);
    let mut figures = IdleFigures {
        connections,
        rss_of: match (target.is_embedded(), target.server_pid()) {
            (true, _) => {
                "this process: the embedded server and the bench's own sessions".to_owned()
            }
            (false, Some(pid)) => format!("server process {pid}"),
            (false, None) => "not read: give --server-pid PID".to_owned(),
        },
        ..IdleFigures::default()
    };
    let read_rss = |notes: &mut Vec<String>| -> Option<u64> {
        let pid = target.server_pid()?;
        match rss_kib(pid) {
            Ok(kib) => Some(kib),
            Err(error) => {
                let text = format!("memory unavailable: {}", crate::one_line(&error));
                if !notes.contains(&text) {
                    notes.push(text);
                }
                None
            }
        }
    };

    tokio::time::sleep(SETTLE).await;
    figures.rss_before_kib = read_rss(&mut report.notes);

    let progress = Progress::counting("idle", connections as u64, "sessions");
    let opened_so_far = AtomicU64::new(0);
    let started = Instant::now();
    let results: Vec<Result<_>> = futures::stream::iter(0..connections)
        .map(|index| {
            let (progress, opened_so_far) = (&progress, &opened_so_far);
            async move {
                let client = target.connect(&format!("idle-{index}")).await?;
                let channel = format!("{}.{index}", settings.channel_base);
                let subscription = client.subscribe(&channel, Replay::None).await?;
                let opened = opened_so_far.fetch_add(1, Ordering::Relaxed) + 1;
                progress.show(opened, &[]);
                Ok((client, subscription))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    figures.open_seconds = round3(started.elapsed().as_secs_f64());
    progress.finish();

    let mut sessions = Vec::with_capacity(connections);
    let mut failed = 0;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(session) => sessions.push(session),
            Err(error) => {
                failed += 1;
                first_error.get_or_insert_with(|| crate::one_line(&error));
            }
        }
    }
    figures.opened = sessions.len();
    if let Some(error) = first_error {
        report.failures.push(format!(
            "{} of {} sessions could not be opened; first: {error}",
            thousands(failed),
            thousands(connections as u64)
        ));
    }

    tokio::time::sleep(SETTLE).await;
    // Against an external server the counters are read over a connection of their own,
    // which the server counts too.
    let reading_connection = u64::from(!target.is_embedded());
    figures.server_connections = target
        .server_stats()
        .await
        .and_then(|stats| stat(&stats, "connections_current"))
        .map(|connected| connected.saturating_sub(reading_connection));
    figures.rss_open_kib = read_rss(&mut report.notes);

    futures::stream::iter(sessions)
        .for_each_concurrent(CONCURRENCY, |(client, subscription)| async move {
            drop(subscription);
            let _ = client.close().await;
        })
        .await;
    tokio::time::sleep(SETTLE).await;
    figures.rss_closed_kib = read_rss(&mut report.notes);

    if let (Some(before), Some(open)) = (figures.rss_before_kib, figures.rss_open_kib)
        && figures.opened > 0
    {
        let grown = open as f64 - before as f64;
        figures.rss_per_connection_kib = Some(round1(grown / figures.opened as f64));
    }
    report.idle = Some(figures);
    report.ok = report.failures.is_empty();
    Ok(report)
}

/// Refuses to start when `ulimit -n` is too low for the sessions, instead of failing
/// halfway with "too many open files".
fn check_descriptors(target: &Target, connections: usize) -> Result<()> {
    let Some(limit) = open_files_limit() else {
        return Ok(());
    };
    // Embedded, this process holds both ends of every connection.
    let per_session = if target.is_embedded() { 2 } else { 1 };
    let needed = connections as u64 * per_session + SPARE_DESCRIPTORS;
    if needed > limit {
        bail!(
            "{} sessions need about {needed} open files here, but ulimit -n is {limit}: raise it (ulimit -n {needed}) or open fewer --connections",
            thousands(connections as u64)
        );
    }
    Ok(())
}
