//! Messages of any size end to end: the CLI as real processes, a 64 MiB body streamed by
//! `pub --file` and received by `sub --output` and `get --output`, compared by SHA-256;
//! and a 256 MiB body through a `switchboard serve` process whose peak memory must stay
//! far below the body's size.

use std::io::Write;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

mod support;

use support::{
    TestServer, cli_at, json_lines, serve_process_with_web, wait_exit, wait_for_subscriber_at,
};

const MIB: usize = 1024 * 1024;
const BODY_LEN: usize = 64 * MIB;

/// Writes a file of `len` bytes whose content is not uniform, and returns its SHA-256.
fn write_body(path: &Path, len: usize) -> String {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; MIB];
    for n in 0..len / MIB {
        for (i, byte) in block.iter_mut().enumerate() {
            *byte = (i % 251) as u8 ^ n as u8;
        }
        hasher.update(&block);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    hex(&hasher.finalize())
}

fn sha256_of(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn a_64_mib_message_streams_through_pub_sub_and_get() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    let digest = write_body(&source, BODY_LEN);

    // A live subscriber writing the one body it receives to a file.
    let received = dir.path().join("received.bin");
    let mut sub = server.spawn(
        "bob",
        &[
            "--json",
            "sub",
            "files",
            "--count",
            "1",
            "--output",
            received.to_str().unwrap(),
        ],
    );
    server.wait_for_subscriber("bob", 1);

    let out = server.stdout(
        "alice",
        &["--json", "pub", "files", "--file", source.to_str().unwrap()],
    );
    let ack = &json_lines(&out)[0];
    let id = ack["id"].as_str().unwrap().to_owned();

    let status = wait_exit(&mut sub, Duration::from_secs(120));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut sub.stdout.take().unwrap(), &mut stdout).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sub.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "sub failed: {stderr}");
    let meta = &json_lines(stdout.as_bytes())[0];
    assert_eq!(meta["id"], id.as_str());
    assert_eq!(meta["body_len"], BODY_LEN as u64);
    assert!(meta.get("payload").is_none() && meta.get("payload_base64").is_none());
    assert_eq!(
        sha256_of(&received),
        digest,
        "sub --output got the body intact"
    );

    // The same body fetched from history.
    let fetched = dir.path().join("fetched.bin");
    let out = server
        .cli("carol")
        .args(["--json", "get", "files", "--id", &id, "--output"])
        .arg(&fetched)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let meta = &json_lines(&out)[0];
    assert_eq!(meta["body_len"], BODY_LEN as u64);
    assert_eq!(meta["file"], fetched.to_str().unwrap());
    assert_eq!(
        sha256_of(&fetched),
        digest,
        "get --output got the body intact"
    );

    // Without --output, the metadata says the body is streamed instead of printing it.
    let out = server.stdout("carol", &["--json", "get", "files"]);
    let meta = &json_lines(&out)[0];
    assert_eq!(meta["streamed"], true);
    assert_eq!(meta["body_len"], BODY_LEN as u64);

    // Replayed into a directory, next to a small message: one file per body.
    server
        .cli("alice")
        .args(["pub", "files", "small one"])
        .assert()
        .success();
    let folder = dir.path().join("bodies");
    let out = server
        .cli("dave")
        .args([
            "--json", "sub", "files", "--last", "2", "--count", "2", "--output",
        ])
        .arg(&folder)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let metas = json_lines(&out);
    assert_eq!(metas.len(), 2);
    let big = folder.join(format!(
        "{}-{}",
        metas[0]["seq"],
        metas[0]["id"].as_str().unwrap()
    ));
    assert_eq!(sha256_of(&big), digest);
    let small = folder.join(format!(
        "{}-{}",
        metas[1]["seq"],
        metas[1]["id"].as_str().unwrap()
    ));
    assert_eq!(std::fs::read(small).unwrap(), b"small one");
}

/// Peak resident memory of a process, from /proc (Linux).
#[cfg(target_os = "linux")]
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[cfg(target_os = "linux")]
#[test]
fn a_256_mib_message_reaches_a_subscriber_with_bounded_server_memory() {
    const LEN: usize = 256 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr, http) = serve_process_with_web(
        &[
            "--no-unix".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ],
        &[],
    );
    let cli = |name: &str| cli_at(&addr, name);

    let source = dir.path().join("big.bin");
    let digest = write_body(&source, LEN);
    let received = dir.path().join("received.bin");
    let mut sub = support::KillOnDrop(
        StdCommand::new(support::BIN)
            .env_remove("SWITCHBOARD_SERVER")
            .args([
                "--server", &addr, "--name", "bob", "sub", "big", "--count", "1", "--output",
            ])
            .arg(&received)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for_subscriber_at(&addr, &http, "bob", 1);
    let started = Instant::now();
    cli("alice")
        .args(["pub", "big", "--file"])
        .arg(&source)
        .assert()
        .success();
    let status = wait_exit(&mut sub, Duration::from_secs(300));
    let elapsed = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sub.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "sub failed: {stderr}");
    assert_eq!(sha256_of(&received), digest, "the body arrived intact");

    let peak_kib = peak_rss_kib(server.id());
    eprintln!(
        "256 MiB in {elapsed:?} ({:.0} MiB/s); server peak RSS {} MiB",
        256.0 / elapsed.as_secs_f64(),
        peak_kib / 1024
    );
    assert!(
        peak_kib < 96 * 1024,
        "server peak RSS {peak_kib} KiB: memory is not bounded per transfer"
    );
    let _ = server.kill();
    let _ = server.wait();
}
