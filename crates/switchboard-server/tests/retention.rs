//! Retention by total bytes and by age, through the real server: channels created with
//! `max_total_bytes` and `max_age_ms`, read back with GET_MESSAGES and the channel list.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{RawClient, start_server};
use switchboard_proto::Flags;
use switchboard_proto::packet::{
    ChannelInfo, ChannelOptions, CreateChannel, GetMessages, ListChannels, Message, Packet, Publish,
};

/// How long the age test waits at most for the expiry it expects.
const EXPIRY_WAIT: Duration = Duration::from_secs(10);

async fn create(client: &mut RawClient, name: &str, options: ChannelOptions) {
    match client
        .request(Packet::CreateChannel(CreateChannel {
            name: name.into(),
            options,
        }))
        .await
    {
        Packet::ChannelInfo(_) => {}
        other => panic!("expected CHANNEL_INFO, got {other:?}"),
    }
}

async fn publish(client: &mut RawClient, channel: &str, body: Vec<u8>) -> u64 {
    let publish = Publish {
        channel: channel.into(),
        body: Bytes::from(body),
        ..Publish::default()
    };
    match client.request(Packet::Publish(publish)).await {
        Packet::PublishAck(ack) => ack.seq,
        other => panic!("expected PUBLISH_ACK, got {other:?}"),
    }
}

/// The whole history of a channel, oldest first.
async fn history(client: &mut RawClient, channel: &str) -> Vec<Message> {
    let id = client.next_request_id();
    let get = GetMessages {
        channel: channel.into(),
        ..GetMessages::default()
    };
    client
        .send(id, Flags::empty(), &Packet::GetMessages(get))
        .await;
    let mut messages = Vec::new();
    loop {
        let frame = client.next_frame().await.expect("an answer");
        if frame.request_id != id {
            continue;
        }
        match Packet::from_frame(&frame).expect("valid packet") {
            Packet::Message(message) => messages.push(message),
            Packet::MessagesEnd(end) => {
                assert_eq!(end.count, messages.len() as u64);
                return messages;
            }
            other => panic!("expected MESSAGE or MESSAGES_END, got {other:?}"),
        }
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// What the channel list says of one channel.
async fn info(client: &mut RawClient, channel: &str) -> ChannelInfo {
    match client
        .request(Packet::ListChannels(ListChannels::default()))
        .await
    {
        Packet::ChannelList(list) => list
            .channels
            .into_iter()
            .find(|info| info.name == channel)
            .unwrap_or_else(|| panic!("{channel} is not listed")),
        other => panic!("expected CHANNEL_LIST, got {other:?}"),
    }
}

fn now_us() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since_epoch.as_micros()).expect("in range")
}

#[tokio::test]
async fn history_is_trimmed_to_the_byte_budget_oldest_first() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "writer").await;
    create(
        &mut client,
        "budget",
        ChannelOptions {
            max_total_bytes: Some(100),
            ..ChannelOptions::default()
        },
    )
    .await;
    for i in 1..=10u8 {
        publish(&mut client, "budget", vec![b'0' + i % 10; 30]).await;
    }
    // 30 bytes each under 100: the newest three (90 bytes) stay.
    let kept = history(&mut client, "budget").await;
    assert_eq!(seqs(&kept), [8, 9, 10]);
    assert!(kept.iter().all(|m| m.body.len() == 30));
    let listed = info(&mut client, "budget").await;
    assert_eq!(
        (listed.message_count, listed.first_seq, listed.bytes),
        (3, 8, 90)
    );

    // A message over the whole budget is kept on its own: the newest always stays.
    publish(&mut client, "budget", vec![b'x'; 150]).await;
    let kept = history(&mut client, "budget").await;
    assert_eq!(seqs(&kept), [11]);
    assert_eq!(kept[0].body.len(), 150);

    // And the next message pushes it out, since together they are over.
    publish(&mut client, "budget", vec![b'y'; 40]).await;
    publish(&mut client, "budget", vec![b'z'; 40]).await;
    assert_eq!(seqs(&history(&mut client, "budget").await), [12, 13]);
    assert_eq!(info(&mut client, "budget").await.bytes, 80);
    server.shutdown().await;
}

#[tokio::test]
async fn messages_older_than_the_maximum_age_are_dropped_and_younger_ones_kept() {
    const MAX_AGE: Duration = Duration::from_millis(300);
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "writer").await;
    create(
        &mut client,
        "fleeting",
        ChannelOptions {
            max_age_ms: Some(MAX_AGE.as_millis() as u64),
            ..ChannelOptions::default()
        },
    )
    .await;
    publish(&mut client, "fleeting", b"old one".to_vec()).await;
    publish(&mut client, "fleeting", b"old two".to_vec()).await;
    let published = history(&mut client, "fleeting").await;
    assert_eq!(seqs(&published), [1, 2], "young messages are served");
    let newest_old_us = published[1].time_us;

    // Waits for the expiry task to trim them, with no publish or read to prompt it: the
    // channel list counts what the history holds.
    let deadline = Instant::now() + EXPIRY_WAIT;
    loop {
        let listed = info(&mut client, "fleeting").await;
        if listed.message_count == 0 {
            break;
        }
        // Never before their age: anything listed is still young, or only just expired.
        assert!(
            Instant::now() < deadline,
            "aged messages still held after {EXPIRY_WAIT:?}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let trimmed_at_us = now_us();
    assert!(
        trimmed_at_us.saturating_sub(newest_old_us) >= MAX_AGE.as_micros() as u64,
        "trimmed {} us after publishing, before the maximum age",
        trimmed_at_us.saturating_sub(newest_old_us)
    );
    assert!(history(&mut client, "fleeting").await.is_empty());

    // A message published now is kept and served, with the sequence going on.
    let seq = publish(&mut client, "fleeting", b"young".to_vec()).await;
    assert_eq!(seq, 3);
    let kept = history(&mut client, "fleeting").await;
    assert_eq!(seqs(&kept), [3]);
    assert_eq!(&kept[0].body[..], b"young");
    server.shutdown().await;
}

#[tokio::test]
async fn reads_skip_expired_messages_before_any_trim() {
    // Reads apply the age themselves: once the messages are past it, GET_MESSAGES stops
    // serving them even if the expiry task has not run yet (it runs once a second).
    const MAX_AGE: Duration = Duration::from_millis(200);
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "writer").await;
    create(
        &mut client,
        "short",
        ChannelOptions {
            max_age_ms: Some(MAX_AGE.as_millis() as u64),
            ..ChannelOptions::default()
        },
    )
    .await;
    publish(&mut client, "short", b"old".to_vec()).await;
    let published = history(&mut client, "short").await;
    assert_eq!(seqs(&published), [1]);
    let old_us = published[0].time_us;

    let deadline = Instant::now() + EXPIRY_WAIT;
    loop {
        let before_us = now_us();
        let served = history(&mut client, "short").await;
        if served.is_empty() {
            break;
        }
        assert!(
            before_us.saturating_sub(old_us) <= MAX_AGE.as_micros() as u64,
            "served {} us after publishing, past the maximum age",
            before_us.saturating_sub(old_us)
        );
        assert!(
            Instant::now() < deadline,
            "still served after {EXPIRY_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}
