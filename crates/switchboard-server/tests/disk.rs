//! A read-only or full data directory, on a real small file system (a tmpfs mounted for
//! the test): a clear error at start, and refused publishes, never silent loss, when the
//! disk fills up while the server runs. Needs the right to mount (root on Linux); without
//! it the test says so and does nothing.

#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::RawClient;
use switchboard_proto::packet::{Packet, Publish};
use switchboard_server::{Server, SyncPolicy};

/// A tmpfs mounted for the length of a test.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?.keep();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .ok()?
            .success();
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(SmallDisk { path: dir })
    }

    fn remount_read_only(&self) -> bool {
        Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[tokio::test]
async fn a_read_only_data_directory_is_refused_at_start() {
    let Some(disk) = SmallDisk::mount("4m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    std::fs::create_dir(disk.path().join("data")).unwrap();
    assert!(disk.remount_read_only());
    let error = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(disk.path().join("data"))
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not writable"), "{error}");
}

#[tokio::test]
async fn a_full_disk_refuses_publishes_clearly_and_the_server_goes_on() {
    let Some(disk) = SmallDisk::mount("6m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(disk.path().join("data"))
        .sync(SyncPolicy::Always)
        .start()
        .await
        .unwrap();
    let (mut client, _) = RawClient::connect_session(&server, "filler").await;
    // Bodies that do not compress, so that they really take room on disk.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        let mut body = Vec::with_capacity(16 * 1024);
        while body.len() < 16 * 1024 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            body.extend_from_slice(&state.to_le_bytes());
        }
        Bytes::from(body)
    };
    let mut stored = 0u64;
    let mut refusal = None;
    for _ in 0..2000 {
        let packet = Packet::Publish(Publish {
            channel: "fill".into(),
            body: noise(),
            ..Publish::default()
        });
        match client.request(packet).await {
            Packet::PublishAck(ack) => stored = ack.seq,
            Packet::Error(error) => {
                refusal = Some(error);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let refusal = refusal.expect("a 6 MiB disk fills up before 32 MiB were stored");
    // The disk reserve refuses before a write can fail.
    assert_eq!(
        refusal.code,
        switchboard_proto::ErrorCode::StorageFull,
        "{refusal:?}"
    );
    assert!(
        refusal.message.contains("storage") || refusal.message.contains("durable"),
        "{refusal:?}"
    );
    assert!(stored > 0);
    // The session and the server are still serving.
    assert!(matches!(
        client.request(Packet::Identify(Default::default())).await,
        Packet::Identity(_)
    ));
    eprintln!(
        "stored {stored} messages of 16 KiB before the disk was full: {}",
        refusal.message
    );
    server.shutdown().await;
    drop(server);
    drop(disk);
}
