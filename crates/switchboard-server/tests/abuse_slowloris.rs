//! Slowloris: peers that start large frames and finish them slowly, or never. A frame
//! must arrive whole within the frame deadline from its first byte (bytes trickling in
//! do not keep it alive), and large frames still arriving are held within one
//! server-wide budget, beyond which they are refused with SERVER_BUSY. A healthy
//! subscriber is served throughout.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{RawClient, start_server_with, stat};
use switchboard_proto::packet::{Packet, Publish, Replay, Subscribe};
use switchboard_proto::{ErrorCode, Flags};
use switchboard_server::ServerHandle;
use tokio::io::AsyncWriteExt;

/// A publisher and a subscriber exchanging a message every 20 ms, counting what arrives.
struct Pulse {
    received: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pulse {
    async fn start(server: &ServerHandle) -> Pulse {
        let (mut subscriber, _) = RawClient::connect_session(server, "healthy-sub").await;
        let subscribed = subscriber
            .request(Packet::Subscribe(Subscribe {
                pattern: "pulse".into(),
                replay: Replay::None,
            }))
            .await;
        assert!(
            matches!(subscribed, Packet::SubscribeAck(_)),
            "{subscribed:?}"
        );
        let (mut publisher, _) = RawClient::connect_session(server, "healthy-pub").await;
        let received = Arc::new(AtomicU64::new(0));
        let counted = received.clone();
        let reading = tokio::spawn(async move {
            while let Some(packet) = subscriber.next_packet().await {
                if matches!(packet, Packet::Message(_)) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let publishing = tokio::spawn(async move {
            for i in 0u32.. {
                let publish = Packet::Publish(Publish {
                    channel: "pulse".into(),
                    body: Bytes::from_static(b"beat"),
                    ..Publish::default()
                });
                publisher.send(1000 + i, Flags::empty(), &publish).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Pulse {
            received,
            tasks: vec![reading, publishing],
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits for at least one more message than `since` was; false if none comes (within
    /// a bound generous for a busy machine: the wait ends with the first one).
    async fn beats_after(&self, since: u64) -> bool {
        common::eventually(Duration::from_secs(10), || self.received() > since).await
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A PUBLISH frame with a body of `body_len` bytes, encoded.
fn large_publish(client: &RawClient, request_id: u32, body_len: usize) -> Bytes {
    let publish = Packet::Publish(Publish {
        channel: "uploads".into(),
        body: Bytes::from(vec![b'x'; body_len]),
        ..Publish::default()
    });
    let mut out = BytesMut::new();
    client
        .codec
        .encode_packet(request_id, Flags::empty(), &publish, &mut out)
        .expect("encode");
    out.freeze()
}

/// The resident memory of this process, in bytes (Linux), `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Finding: a frame head declaring megabytes, most of the body, then one byte every few
/// seconds held the connection (and its buffer) forever, since any byte counted as a
/// sign of life. Now the frame deadline closes it with DISCONNECT FRAME_TIMEOUT although
/// the bytes keep coming more often than the heartbeat deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_trickling_in_is_closed_at_the_frame_deadline() {
    let frame_timeout = Duration::from_millis(1200);
    let server = start_server_with(|config| config.frame_timeout = frame_timeout).await;
    let pulse = Pulse::start(&server).await;

    let mut slow = RawClient::connect(&server).await;
    // A heartbeat deadline of 3 s, which the trickle below keeps meeting.
    slow.open("slowloris", 1000).await;
    let frame = large_publish(&slow, 7, 512 * 1024);
    let most = frame.len() - 1000;
    slow.send_raw(&frame[..most]).await;
    let started = Instant::now();
    let mut next_byte = most;
    let mut closed_with = None;
    while started.elapsed() < Duration::from_secs(6) {
        // One byte every 200 ms; the server may have closed the connection already.
        let _ = slow.stream.write_all(&frame[next_byte..=next_byte]).await;
        next_byte += 1;
        if let Some(frame) = slow.frame_within(Duration::from_millis(200)).await {
            closed_with = Some(Packet::from_frame(&frame).expect("valid packet"));
            break;
        }
    }
    let elapsed = started.elapsed();
    match closed_with {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.code, ErrorCode::FrameTimeout, "{disconnect:?}");
            assert!(
                disconnect.reason.contains("within 1200 ms"),
                "{}",
                disconnect.reason
            );
        }
        other => panic!("expected DISCONNECT FRAME_TIMEOUT after {elapsed:?}, got {other:?}"),
    }
    assert!(
        elapsed >= frame_timeout - Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}, the frame deadline is {frame_timeout:?}"
    );
    assert_eq!(stat(&server, "frame_timeouts"), 1);
    assert_eq!(stat(&server, "heartbeat_timeouts"), 0);

    let beats = pulse.received();
    assert!(beats > 20, "the healthy subscriber got {beats} messages");
    assert!(
        pulse.beats_after(beats).await,
        "the healthy subscriber is still served"
    );
    server.shutdown().await;
}

/// Finding: 100 connections each holding a large partial frame held about 890 MB. Now 50
/// connections each sending the head and three quarters of a 2 MiB frame hold at most
/// the configured budget (8 MiB here): the frames beyond it are refused with an ERROR
/// SERVER_BUSY answering their request id, then DISCONNECT; the counters say so; the
/// process's resident memory grows far less than the 75 MB those frames would hold; and
/// once the budget is free again a large frame goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_partial_frames_are_held_within_the_server_budget() {
    const BUDGET: usize = 8 * 1024 * 1024;
    const CONNECTIONS: usize = 50;
    const BODY: usize = 2 * 1024 * 1024;
    let server = start_server_with(|config| {
        config.partial_frame_budget = BUDGET;
        config.frame_timeout = Duration::from_secs(20);
    })
    .await;
    let pulse = Pulse::start(&server).await;

    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        let mut client = RawClient::connect(&server).await;
        client.open(&format!("holder-{i}"), 0).await;
        clients.push(client);
    }
    // One frame shared by every sender, built before the baseline is taken.
    let frame = large_publish(&clients[0], 77, BODY);
    let sent = frame.len() * 3 / 4;
    let baseline = resident_bytes();
    let beats = pulse.received();

    let mut sending = Vec::new();
    for mut client in clients {
        let frame = frame.clone();
        sending.push(tokio::spawn(async move {
            // A refused connection is closed under the writer: ignore the failure.
            let write = client.stream.write_all(&frame[..sent]);
            let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
            client
        }));
    }
    let mut clients = Vec::new();
    for task in sending {
        clients.push(task.await.expect("sender"));
    }
    assert!(
        common::eventually(Duration::from_secs(5), || {
            stat(&server, "frames_refused_busy") >= (CONNECTIONS - BUDGET / BODY) as u64
        })
        .await,
        "refused: {}",
        stat(&server, "frames_refused_busy")
    );
    let held = stat(&server, "partial_frame_bytes");
    assert!(
        held > 0 && held <= BUDGET as u64,
        "{held} bytes of partial frames held, budget {BUDGET}"
    );
    if let (Some(before), Some(after)) = (baseline, resident_bytes()) {
        let grown = after.saturating_sub(before);
        eprintln!("resident memory grew by {grown} bytes while partial frames were held");
        assert!(
            grown < 32 * 1024 * 1024,
            "resident memory grew by {grown} bytes while partial frames were held"
        );
    }
    assert!(
        pulse.beats_after(beats).await,
        "the healthy subscriber is served meanwhile"
    );

    // Every refused connection was told why, answering its frame's request id.
    let mut refused = 0;
    let mut admitted = Vec::new();
    for mut client in clients {
        match client.frame_within(Duration::from_millis(200)).await {
            Some(frame) => {
                let packet = Packet::from_frame(&frame).expect("valid packet");
                let Packet::Error(error) = packet else {
                    panic!("expected ERROR SERVER_BUSY, got {packet:?}");
                };
                assert_eq!(frame.request_id, 77);
                assert_eq!(error.code, ErrorCode::ServerBusy, "{error:?}");
                assert!(error.message.contains("try again later"), "{error:?}");
                let closing = client.next_packet().await;
                assert!(
                    matches!(&closing, Some(Packet::Disconnect(d)) if d.code == ErrorCode::ServerBusy),
                    "{closing:?}"
                );
                refused += 1;
            }
            None => admitted.push(client),
        }
    }
    assert_eq!(refused + admitted.len(), CONNECTIONS);
    assert!(
        admitted.len() <= BUDGET / BODY,
        "{} admitted",
        admitted.len()
    );
    assert!(refused >= CONNECTIONS - BUDGET / BODY, "{refused} refused");

    // The admitted ones finish their frames: the budget is given back, and they are
    // answered.
    for client in &mut admitted {
        client.send_raw(&frame[sent..]).await;
        let answer = client.next_packet().await;
        assert!(matches!(answer, Some(Packet::PublishAck(_))), "{answer:?}");
    }
    assert_eq!(stat(&server, "partial_frame_bytes"), 0);

    // A fresh large frame, sent slowly enough to be partial, fits again.
    let mut late = RawClient::connect(&server).await;
    late.open("late", 0).await;
    let frame = large_publish(&late, 5, BODY);
    late.send_raw(&frame[..frame.len() / 2]).await;
    // The server holds the first half before the rest is sent.
    assert!(
        common::eventually(Duration::from_secs(15), || stat(
            &server,
            "partial_frame_bytes"
        ) > 0)
        .await,
        "the first half never arrived"
    );
    late.send_raw(&frame[frame.len() / 2..]).await;
    let answer = late.next_packet().await;
    assert!(matches!(answer, Some(Packet::PublishAck(_))), "{answer:?}");
    server.shutdown().await;
}
