//! `switchboard repair`: salvages a data directory the server cannot open (a damaged
//! journal or table). Every intact record is kept in a fresh store, the damaged directory
//! is moved aside, and what was kept and lost is reported per channel and group.

use anyhow::{Context, Result};
use serde_json::json;
use switchboard_server::{LogReport, RepairReport};

use crate::cli::RepairArgs;

pub fn run(args: &RepairArgs) -> Result<()> {
    let dir = &args.data_dir;
    let report = switchboard_server::repair(dir)
        .with_context(|| format!("cannot repair {}", dir.display()))?;
    if args.json {
        println!("{}", as_json(&args.data_dir, &report));
    } else if report.intact {
        println!("{} is intact: nothing to repair", dir.display());
    } else {
        print_text(&args.data_dir, &report);
    }
    Ok(())
}

fn log_json(log: &LogReport) -> serde_json::Value {
    json!({
        "name": log.name,
        "kept": log.kept,
        "first_seq": log.first_seq,
        "last_seq": log.last_seq,
        "lost": log.missing,
        "record_lost": log.record_lost,
    })
}

fn as_json(dir: &std::path::Path, report: &RepairReport) -> serde_json::Value {
    json!({
        "data_dir": dir.display().to_string(),
        "intact": report.intact,
        "damaged_dir": (!report.intact).then(|| report.damaged_dir.display().to_string()),
        "files_scanned": report.files_scanned,
        "damaged_frames": report.damaged_frames,
        "channels": report.channels.iter().map(log_json).collect::<Vec<_>>(),
        "groups": report.groups.iter().map(log_json).collect::<Vec<_>>(),
    })
}

fn print_text(dir: &std::path::Path, report: &RepairReport) {
    println!(
        "repaired {}: {} files scanned, {} damaged records skipped",
        dir.display(),
        report.files_scanned,
        report.damaged_frames
    );
    println!(
        "the damaged store was moved to {}",
        report.damaged_dir.display()
    );
    for (kind, logs) in [("channel", &report.channels), ("group", &report.groups)] {
        for log in logs {
            let range = if log.kept > 0 {
                format!(" (seq {}..={})", log.first_seq, log.last_seq)
            } else {
                String::new()
            };
            let record = if log.record_lost {
                "; its options were lost, defaults used"
            } else {
                ""
            };
            println!(
                "{kind} {}: kept {} messages{range}, lost {}{record}",
                log.name, log.kept, log.missing
            );
        }
    }
}
