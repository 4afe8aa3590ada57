//! The data volume under abuse, with real `switchboard serve` processes: a disk filled by
//! uploads and files (the disk reserve refuses writes clearly, the store recovers without
//! a restart once space is back, a write that failed loses nothing it acknowledged
//! without logging it, a full disk at start gives a read-only server that serves
//! history), and a data directory deleted while the server runs.
//!
//! The disk-full tests need a small volume of their own: they mount a 20 MiB tmpfs, which
//! takes root; elsewhere they print why they were skipped and pass.

#![cfg(unix)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use switchboard_client::{ChannelOptions, Client, ClientConfig, ErrorCode, Payload, Since};

mod support;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Volume {
    _parent: tempfile::TempDir,
    path: PathBuf,
}

impl Volume {
    /// Mounts a volume of `size` (mount's syntax), or says why it cannot.
    fn mount(size: &str) -> Result<Volume, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = parent.path().join("volume");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Volume {
            _parent: parent,
            path,
        })
    }

    /// Fills the volume with `file` until writes fail, then frees `leave` bytes of it.
    /// Never more than 64 MiB: if the volume were not the small one mounted, this must
    /// not fill a real disk.
    fn fill(&self, file: &str, leave: u64) {
        let path = self.path.join(file);
        let mut out = std::fs::File::create(&path).unwrap();
        let block = vec![0x55u8; 64 * 1024];
        let mut written = 0u64;
        while written < 64 << 20 && out.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
        // Whatever a partial write put in the last block counts too.
        let written = out.metadata().map_or(written, |meta| meta.len());
        drop(out);
        assert!(
            written < 64 << 20,
            "the volume is not the small one mounted"
        );
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(written.saturating_sub(leave)));
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Mounts a volume or prints why the test is skipped.
macro_rules! volume_or_skip {
    ($size:expr) => {
        match Volume::mount($size) {
            Ok(volume) => volume,
            Err(reason) => {
                eprintln!("skipped: {reason}");
                return;
            }
        }
    };
}

/// `switchboard serve` on `data` with `args`, logging to `log`.
fn serve(data: &Path, log: &Path, args: &[&str]) -> (support::KillOnDrop, String) {
    let mut all: Vec<&std::ffi::OsStr> = vec![
        "--no-unix".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--log-file".as_ref(),
        log.as_os_str(),
    ];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    support::serve_process(&all)
}

fn stop(server: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    support::wait_exit(server, Duration::from_secs(20));
}

async fn connect(addr: &str, name: &str) -> Client {
    Client::connect(ClientConfig::new(addr, name))
        .await
        .expect("connects")
}

async fn create(client: &Client) {
    let options = ChannelOptions {
        history: Some(100_000),
        ..ChannelOptions::default()
    };
    client
        .create_channel("disk", options)
        .await
        .expect("channel");
}

/// Publishes `text`; the error code if refused.
async fn publish(client: &Client, text: &str) -> Result<u64, Option<ErrorCode>> {
    client
        .publish("disk", Payload::text(text))
        .await
        .map(|ack| ack.seq)
        .map_err(|e| e.code())
}

/// Publishes every 50 ms until `want` says the outcome is the one waited for; fails after
/// `limit`.
async fn publish_until(
    client: &Client,
    limit: Duration,
    want: impl Fn(&Result<u64, Option<ErrorCode>>) -> bool,
) -> Result<u64, Option<ErrorCode>> {
    let deadline = Instant::now() + limit;
    for i in 0u64.. {
        let outcome = publish(client, &format!("probe {i}")).await;
        if want(&outcome) {
            return outcome;
        }
        assert!(
            Instant::now() < deadline,
            "still {outcome:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

async fn history(client: &Client) -> Vec<String> {
    client
        .get_messages("disk", Since::All, None)
        .await
        .expect("history")
        .iter()
        .map(|m| m.text().unwrap_or("<binary>").to_owned())
        .collect()
}

async fn stat(client: &Client, name: &str) -> u64 {
    let stats = client.stats().await.expect("stats");
    stats
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in STATS"))
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Finding 4: under the disk reserve, uploads (refused when they open, from their
/// announced length) and durable publishes are refused with STORAGE_FULL; once files are
/// deleted, publishing works again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_reserve_refuses_uploads_and_publishes_until_space_is_freed() {
    let volume = volume_or_skip!("20m");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let data = volume.path.join("data");
    let (mut server, addr) = serve(&data, &log, &["--disk-reserve", "4MiB"]);
    let client = connect(&addr, "writer").await;
    create(&client).await;
    publish(&client, "before").await.expect("room at first");

    // 2 MiB free, under the 4 MiB reserve.
    volume.fill("filler", 2 << 20);
    let refused = publish_until(&client, Duration::from_secs(3), Result::is_err).await;
    assert_eq!(refused, Err(Some(ErrorCode::StorageFull)));
    let body = vec![7u8; 1 << 20];
    let upload = client
        .publish("disk", Payload::default())
        .stream_from(&body[..], body.len() as u64)
        .await;
    assert_eq!(
        upload.map_err(|e| e.code()).err(),
        Some(Some(ErrorCode::StorageFull))
    );
    assert!(stat(&client, "disk_full_refusals").await >= 2);
    assert_eq!(
        stat(&client, "store_writable").await,
        1,
        "the store is healthy"
    );

    std::fs::remove_file(volume.path.join("filler")).unwrap();
    publish_until(&client, Duration::from_secs(3), Result::is_ok)
        .await
        .unwrap();
    let upload = client
        .publish("disk", Payload::default())
        .stream_from(&body[..], body.len() as u64)
        .await;
    assert!(upload.is_ok(), "{upload:?}");
    assert_eq!(history(&client).await[0], "before");
    stop(&mut server);
}

/// Finding 4: a write that fails on a full disk (no reserve to stop it first) is logged
/// under ERROR with the channel and seq of every acknowledged message it left unwritten,
/// durable writes are refused with STORAGE_UNAVAILABLE, and once space is back the store
/// recovers without a restart and writes those messages: they are there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_logged_and_recovered_from_without_a_restart() {
    let volume = volume_or_skip!("20m");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let data = volume.path.join("data");
    let args = ["--disk-reserve", "0", "--sync", "interval"];
    let (mut server, addr) = serve(&data, &log, &args);
    let client = connect(&addr, "writer").await;
    create(&client).await;
    publish(&client, "before").await.expect("room at first");
    tokio::time::sleep(Duration::from_millis(300)).await;

    volume.fill("filler", 0);
    // Acknowledged at once under `interval`, then lost by the failed write.
    let mut acked = Vec::new();
    let refused = loop {
        let text = format!("acked {}", acked.len());
        match publish(&client, &text).await {
            Ok(seq) => acked.push((seq, text)),
            Err(code) => break code,
        }
        assert!(acked.len() < 10_000, "a full disk never failed a write");
    };
    assert_eq!(refused, Some(ErrorCode::StorageUnavailable));
    assert_eq!(stat(&client, "store_writable").await, 0);
    assert!(stat(&client, "store_write_failures").await >= 1);
    // Every acknowledged message the failure left unwritten is logged with its seq.
    let unwritten = stat(&client, "store_unwritten_messages").await;
    assert!(unwritten >= 1);
    // The lines are written as the failure is handled; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = log_text(&log);
        let count = text
            .lines()
            .filter(|line| line.contains("ERROR") && line.contains("message not on disk"))
            .count() as u64;
        if count >= unwritten || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let logged: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("message not on disk"))
        .collect();
    assert_eq!(logged.len() as u64, unwritten, "{text}");
    let (last_seq, _) = acked.last().expect("some publishes were acknowledged");
    assert!(
        logged
            .iter()
            .any(|line| line.contains("log=disk") && line.contains(&format!("seq={last_seq}"))),
        "the last acknowledged message is not logged: {logged:?}"
    );

    std::fs::remove_file(volume.path.join("filler")).unwrap();
    publish_until(&client, Duration::from_secs(10), Result::is_ok)
        .await
        .unwrap();
    assert_eq!(stat(&client, "store_recoveries").await, 1);
    assert_eq!(stat(&client, "store_writable").await, 1);
    stop(&mut server);

    let (mut server, addr) = serve(&data, &log, &args);
    let client = connect(&addr, "reader").await;
    let stored = history(&client).await;
    for (_, text) in &acked {
        assert!(
            stored.contains(text),
            "acknowledged {text} was lost: {stored:?}"
        );
    }
    stop(&mut server);
}

/// Finding 4: a server started on a full data volume starts read-only: history is
/// served, writes are refused with the reason, and taken once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_start_gives_a_read_only_server_until_space_is_back() {
    let volume = volume_or_skip!("20m");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let data = volume.path.join("data");
    let (mut server, addr) = serve(&data, &log, &[]);
    let client = connect(&addr, "writer").await;
    create(&client).await;
    for i in 0..10 {
        publish(&client, &format!("kept {i}")).await.unwrap();
    }
    stop(&mut server);

    volume.fill("filler", 0);
    let (mut server, addr) = serve(&data, &log, &[]);
    let client = connect(&addr, "reader").await;
    let stored = history(&client).await;
    assert_eq!(stored.len(), 10, "{stored:?}");
    assert_eq!(stat(&client, "store_writable").await, 0);
    let refused = publish(&client, "refused").await;
    assert!(
        matches!(
            refused,
            Err(Some(ErrorCode::StorageUnavailable | ErrorCode::StorageFull))
        ),
        "{refused:?}"
    );
    assert!(log_text(&log).contains("read-only"));

    std::fs::remove_file(volume.path.join("filler")).unwrap();
    publish_until(&client, Duration::from_secs(10), Result::is_ok)
        .await
        .unwrap();
    assert_eq!(stat(&client, "store_writable").await, 1);
    stop(&mut server);
}

/// Finding 8: the data directory deleted while the server runs: the next durable publish
/// is refused with STORAGE_UNAVAILABLE within a bounded time, the loss is logged under
/// ERROR, and STATS says the store takes no writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_data_directory_is_noticed_and_writes_are_refused() {
    for sync in ["always", "interval"] {
        let parent = tempfile::tempdir().unwrap();
        let data = parent.path().join("data");
        let log = parent.path().join("serve.log");
        let (mut server, addr) = serve(&data, &log, &["--sync", sync]);
        let client = connect(&addr, "writer").await;
        create(&client).await;
        publish(&client, "before").await.unwrap();

        std::fs::remove_dir_all(&data).unwrap();
        let deleted_at = Instant::now();
        let refused = publish_until(&client, Duration::from_secs(3), Result::is_err).await;
        assert_eq!(refused, Err(Some(ErrorCode::StorageUnavailable)), "{sync}");
        assert!(deleted_at.elapsed() < Duration::from_secs(3));
        assert_eq!(stat(&client, "store_writable").await, 0, "{sync}");
        let text = log_text(&log);
        assert!(
            text.lines()
                .any(|line| line.contains("ERROR") && line.contains("was deleted")),
            "{sync}: {text}"
        );
        // Reads still work: history is in memory.
        assert_eq!(history(&client).await[0], "before");
        stop(&mut server);
    }
}

/// Bodies kept on disk, by counting the blob directory's body files.
fn stored_bodies(data: &Path) -> usize {
    std::fs::read_dir(data.join("blobs"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name != "spool" && !name.ends_with(".sha256")
        })
        .count()
}

async fn upload(client: &Client, channel: &str, len: usize) -> Result<u64, Option<ErrorCode>> {
    let body = vec![9u8; len];
    client
        .publish(channel, Payload::default())
        .stream_from(&body[..], len as u64)
        .await
        .map(|ack| ack.seq)
        .map_err(|e| e.code())
}

/// Finding 4: retention counts streamed bodies: a channel's `max_total_bytes` removes
/// the oldest streamed messages (and their files), and the server's `--max-blob-bytes`
/// refuses new uploads with STORAGE_FULL once the bodies on disk would pass it, until
/// some are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_counts_streamed_bodies_per_channel_and_in_total() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let log = parent.path().join("serve.log");
    let (mut server, addr) = serve(&data, &log, &["--max-blob-bytes", "5MiB"]);
    let client = connect(&addr, "uploader").await;
    let small = ChannelOptions {
        max_total_bytes: Some(3 << 20),
        ..ChannelOptions::default()
    };
    client.create_channel("small", small).await.unwrap();
    for _ in 0..3 {
        upload(&client, "small", 2 << 20).await.unwrap();
    }
    // 6 MiB uploaded to a channel keeping 3 MiB: one 2 MiB body is left.
    let kept = client
        .get_messages("small", Since::All, None)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(stored_bodies(&data), 1);

    client
        .create_channel("big", ChannelOptions::default())
        .await
        .unwrap();
    upload(&client, "big", 2 << 20).await.unwrap();
    // 4 MiB stored; 2 MiB more would pass the 5 MiB budget.
    assert_eq!(
        upload(&client, "big", 2 << 20).await,
        Err(Some(ErrorCode::StorageFull))
    );
    assert_eq!(stat(&client, "blob_bytes").await, 4 << 20);
    // A body that fits is taken.
    upload(&client, "big", 1 << 20).await.unwrap();
    stop(&mut server);

    // The budget counts what is on disk after a restart too.
    let (mut server, addr) = serve(&data, &log, &["--max-blob-bytes", "5MiB"]);
    let client = connect(&addr, "uploader").await;
    assert_eq!(stat(&client, "blob_bytes").await, 5 << 20);
    assert_eq!(
        upload(&client, "big", 1 << 20).await,
        Err(Some(ErrorCode::StorageFull))
    );
    stop(&mut server);
}

/// Flips a byte inside `needle` in every journal file under `dir`; how many it changed.
fn flip_in_journals(dir: &Path, needle: &[u8]) -> usize {
    let mut changed = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "jnl") {
                let mut bytes = std::fs::read(&path).unwrap();
                if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                    bytes[at + needle.len() - 1] ^= 0x20;
                    std::fs::write(&path, bytes).unwrap();
                    changed += 1;
                }
            }
        }
    }
    changed
}

/// Finding 9: one flipped byte in the journal makes the server refuse the store;
/// `switchboard repair` keeps every intact message, moves the damaged store aside and
/// reports what was kept and lost, and the server then opens the repaired store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_salvages_every_intact_message_of_a_damaged_store() {
    repair_after_a_flipped_journal_byte("interval", Some(25)).await;
}

/// With `sync always` the sync log holds its own copy of each recent message: the one
/// whose journal copy is damaged comes back from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_takes_a_message_damaged_in_the_journal_from_the_sync_log() {
    repair_after_a_flipped_journal_byte("always", None).await;
}

/// Publishes 50 messages with `--sync SYNC`, flips a byte of message 25 in the journal,
/// repairs, and checks that every message but `lost` came back.
async fn repair_after_a_flipped_journal_byte(sync: &str, lost: Option<u64>) {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let log = parent.path().join("serve.log");
    let (mut server, addr) = serve(&data, &log, &["--sync", sync]);
    let client = connect(&addr, "writer").await;
    create(&client).await;
    for i in 1..=50 {
        publish(&client, &format!("message {i:02}")).await.unwrap();
    }
    stop(&mut server);

    assert!(flip_in_journals(&data, b"message 25") > 0);
    let refused = Command::new(support::BIN)
        .args([
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--no-unix",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "the damaged store was opened");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("cannot open the store"), "{why}");

    let repaired = Command::new(support::BIN)
        .args(["repair", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        repaired.status.success(),
        "{}",
        String::from_utf8_lossy(&repaired.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&repaired.stdout).unwrap();
    let channel = &report["channels"][0];
    assert_eq!(channel["name"], "disk");
    let lost_count = u64::from(lost.is_some());
    assert_eq!(channel["kept"], 50 - lost_count, "{report}");
    assert_eq!(channel["lost"], lost_count, "{report}");
    let damaged = PathBuf::from(report["damaged_dir"].as_str().unwrap());
    assert!(damaged.is_dir(), "the damaged store was not kept aside");

    let (mut server, addr) = serve(&data, &log, &[]);
    let client = connect(&addr, "reader").await;
    let stored = history(&client).await;
    let expected: Vec<String> = (1..=50)
        .filter(|&i| Some(i) != lost)
        .map(|i| format!("message {i:02}"))
        .collect();
    assert_eq!(stored, expected);
    // Numbering goes on after the newest salvaged message.
    assert_eq!(publish(&client, "after").await, Ok(51));
    stop(&mut server);
}
