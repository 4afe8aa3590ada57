//! Abuse: a session that asks for much more than it reads. Finding: unread replies grew
//! the server's memory without bound (history fetches pipelined and never read). Replies
//! must stay within the session's outbound budget, the session is held back instead, and
//! everyone else is still served.

// The memory test reads /proc (Linux only); elsewhere its helpers go unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{RawClient, WAIT, start_server_with, stat};
use switchboard_proto::Flags;
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, GetMessages, Packet, Publish, Replay, Scope, Since, Subscribe,
};

/// Resident memory of this process (which runs the server), in bytes.
#[cfg(target_os = "linux")]
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("resident pages");
    pages * 4096
}

const MESSAGES: u32 = 20_000;
const REQUESTS: u32 = 600;
const QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// Finding: unread replies grow memory without bound. 600 GET_MESSAGES for a channel of
/// 20,000 messages of 1 KiB, pipelined and never read, must not grow the server by more
/// than its outbound budget (4 MiB here) plus slack, while a subscriber on another
/// connection gets every publish within a second; once the client leaves, its session
/// goes.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_unread_history_requests_stay_within_the_outbound_budget() {
    let server = start_server_with(|config| config.outbound_queue_bytes = QUEUE_BYTES).await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    for name in ["big", "live"] {
        let created = publisher
            .request(Packet::CreateChannel(CreateChannel {
                name: name.into(),
                options: ChannelOptions {
                    history: Some(u64::from(MESSAGES)),
                    ..ChannelOptions::default()
                },
            }))
            .await;
        assert!(matches!(created, Packet::ChannelInfo(_)), "{created:?}");
    }
    let body = Bytes::from(vec![b'h'; 1024]);
    for i in 0..MESSAGES {
        let publish = Packet::Publish(Publish {
            channel: "big".into(),
            body: body.clone(),
            ..Publish::default()
        });
        publisher.send(100 + i, Flags::NO_REPLY, &publish).await;
    }
    // A last publish with an answer: every one before it was served.
    let last = publisher
        .request(Packet::Publish(Publish {
            channel: "big".into(),
            body: body.clone(),
            ..Publish::default()
        }))
        .await;
    assert!(matches!(last, Packet::PublishAck(_)), "{last:?}");

    let (mut watcher, _) = RawClient::connect_session(&server, "watcher").await;
    let subscribed = watcher
        .request(Packet::Subscribe(Subscribe {
            pattern: "live".into(),
            replay: Replay::None,
        }))
        .await;
    assert!(
        matches!(subscribed, Packet::SubscribeAck(_)),
        "{subscribed:?}"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = resident_bytes();
    let (mut abuser, _) = RawClient::connect_session(&server, "abuser").await;
    let connected = stat(&server, "connections_current");
    for i in 0..REQUESTS {
        let get = Packet::GetMessages(GetMessages {
            scope: Scope::Channel,
            channel: "big".into(),
            since: Since::All,
            limit: None,
        });
        abuser.send(10 + i, Flags::empty(), &get).await;
    }

    // While the abuser reads nothing, the watcher gets each publish within a second, and
    // the server's memory is sampled throughout.
    let mut peak = resident_bytes();
    for round in 0..20u8 {
        let sent = Instant::now();
        let publish = Packet::Publish(Publish {
            channel: "live".into(),
            body: Bytes::from(vec![round; 16]),
            ..Publish::default()
        });
        publisher.send(1_000_000, Flags::NO_REPLY, &publish).await;
        let frame = watcher
            .frame_within(Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("publish {round} not delivered within a second"));
        let Ok(Packet::Message(message)) = Packet::from_frame(&frame) else {
            panic!("expected a MESSAGE, got {:?}", frame.frame_type);
        };
        assert_eq!(message.body.as_ref(), &[round; 16]);
        assert!(sent.elapsed() < Duration::from_secs(1));
        peak = peak.max(resident_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let growth = peak.saturating_sub(before);
    let bound = QUEUE_BYTES + 24 * 1024 * 1024;
    assert!(
        growth < bound,
        "the server grew by {} MiB for unread replies (bound {} MiB)",
        growth >> 20,
        bound >> 20
    );

    // The client leaves: its session (and everything queued for it) goes.
    drop(abuser);
    assert!(
        common::eventually(WAIT, || stat(&server, "connections_current") < connected).await,
        "the abuser's session is still open"
    );
    server.shutdown().await;
}

/// Finding: unread replies grow memory without bound, for replays too. A replay is one
/// snapshot (so that replay and live delivery neither overlap nor leave a gap); it is
/// bounded by the reply budget in bytes (half of a 1 MiB queue here), keeping the newest
/// messages, and live delivery follows it without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_larger_than_the_reply_budget_keeps_its_newest_messages() {
    let server = start_server_with(|config| config.outbound_queue_bytes = 1024 * 1024).await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let created = publisher
        .request(Packet::CreateChannel(CreateChannel {
            name: "long".into(),
            options: ChannelOptions {
                history: Some(2_000),
                ..ChannelOptions::default()
            },
        }))
        .await;
    assert!(matches!(created, Packet::ChannelInfo(_)), "{created:?}");
    let body = Bytes::from(vec![b'r'; 1024]);
    for i in 0..2_000u32 {
        let publish = Packet::Publish(Publish {
            channel: "long".into(),
            body: body.clone(),
            ..Publish::default()
        });
        publisher.send(100 + i, Flags::NO_REPLY, &publish).await;
    }
    let last = publisher
        .request(Packet::Publish(Publish {
            channel: "long".into(),
            body: body.clone(),
            ..Publish::default()
        }))
        .await;
    let Packet::PublishAck(last) = last else {
        panic!("{last:?}");
    };

    let (mut reader, _) = RawClient::connect_session(&server, "reader").await;
    let id = reader.next_request_id();
    reader
        .send(
            id,
            Flags::empty(),
            &Packet::Subscribe(Subscribe {
                pattern: "long".into(),
                replay: Replay::Last(5_000),
            }),
        )
        .await;
    let Some(Packet::SubscribeAck(ack)) = reader.next_packet().await else {
        panic!("expected SUBSCRIBE_ACK");
    };
    // 512 KiB of frames of a little over 1 KiB each.
    assert!(
        ack.replay_count > 100 && ack.replay_count < 512,
        "{} messages replayed",
        ack.replay_count
    );
    let mut seqs = Vec::new();
    for _ in 0..ack.replay_count {
        match reader.next_packet().await {
            Some(Packet::Message(message)) => seqs.push(message.seq),
            other => panic!("expected a replayed MESSAGE, got {other:?}"),
        }
    }
    assert_eq!(seqs.last(), Some(&last.seq), "the newest are kept");
    assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 1), "no gap");
    publisher
        .send(
            1,
            Flags::NO_REPLY,
            &Packet::Publish(Publish {
                channel: "long".into(),
                body: body.clone(),
                ..Publish::default()
            }),
        )
        .await;
    match reader.next_packet().await {
        Some(Packet::Message(message)) => assert_eq!(message.seq, last.seq + 1, "live follows"),
        other => panic!("expected the live MESSAGE, got {other:?}"),
    }
    server.shutdown().await;
}
