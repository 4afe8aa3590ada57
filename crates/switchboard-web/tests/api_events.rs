//! Server-Sent Events over real HTTP: a subscription's messages as events, replays,
//! `?access_token=` for browsers, and resuming with `Last-Event-ID` with no gap and no
//! duplicate while messages are being published.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{EventStream, Request, WAIT, hub_with_web};
use switchboard_client::{Client, ClientConfig, Payload};

#[tokio::test]
async fn a_stream_carries_the_messages_of_its_patterns() {
    let (server, web) = hub_with_web(|_| {}).await;
    let addr = web.local_addr();
    let mut events =
        EventStream::open(addr, "/api/v1/events?pattern=news.*&pattern=%23rust", &[]).await;
    assert_eq!(events.status, 200);
    let content_type = events
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.clone());
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    let subscribed = events.next().await.unwrap();
    assert_eq!(subscribed.event, "subscribed");
    assert_eq!(subscribed.json()["patterns"][1], "#rust");

    for (channel, text) in [
        ("news.a", "first"),
        ("elsewhere", "not #rust"),
        ("other", "skip"),
    ] {
        let reply = Request::new("POST", &format!("/api/v1/channels/{channel}/messages"))
            .header("Content-Type", "text/plain")
            .body(text)
            .send(addr)
            .await;
        assert_eq!(reply.status, 201);
    }
    let first = events.next_message().await.unwrap();
    assert_eq!(first.json()["body"], "first");
    assert_eq!(first.json()["channel"], "news.a");
    let second = events.next_message().await.unwrap();
    assert_eq!(second.json()["body"], "not #rust");
    assert!(second.id.unwrap().contains("elsewhere:1"));
    server.shutdown().await;
    assert!(
        tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends when the hub shuts down"
    );
}

#[tokio::test]
async fn a_stream_replays_and_resumes_mid_replay() {
    let (server, web) = hub_with_web(|_| {}).await;
    let addr = web.local_addr();
    for n in 1..=5 {
        Request::new("POST", "/api/v1/channels/log/messages")
            .body(format!("m{n}"))
            .send(addr)
            .await;
    }
    let mut last = EventStream::open(addr, "/api/v1/events?pattern=log&last=2", &[]).await;
    let bodies = [
        last.next_message().await.unwrap().json()["body"].clone(),
        last.next_message().await.unwrap().json()["body"].clone(),
    ];
    assert_eq!(bodies, ["m4", "m5"]);

    let mut since = EventStream::open(addr, "/api/v1/events?pattern=log&since_seq=2", &[]).await;
    let replayed = since.next_message().await.unwrap();
    assert_eq!(replayed.json()["seq"], 2);
    let id = replayed.id.unwrap();
    drop(since);
    let mut resumed = EventStream::open(
        addr,
        "/api/v1/events?pattern=log",
        &[("Last-Event-ID", &id)],
    )
    .await;
    let seqs = [
        resumed.next_message().await.unwrap().json()["seq"].clone(),
        resumed.next_message().await.unwrap().json()["seq"].clone(),
        resumed.next_message().await.unwrap().json()["seq"].clone(),
    ];
    assert_eq!(seqs, [3, 4, 5]);

    let bad = EventStream::open(
        addr,
        "/api/v1/events?pattern=log",
        &[("Last-Event-ID", "zz")],
    )
    .await;
    assert_eq!(bad.status, 400);
    let none = EventStream::open(addr, "/api/v1/events", &[]).await;
    assert_eq!(none.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn an_event_source_logs_in_with_an_access_token_in_the_query() {
    let (server, web) =
        hub_with_web(|config| config.admin_token = Some("open-sesame".into())).await;
    let addr = web.local_addr();
    let refused = EventStream::open(addr, "/api/v1/events?pattern=x&access_token=wrong", &[]).await;
    assert_eq!(refused.status, 401);
    let mut admitted = EventStream::open(
        addr,
        "/api/v1/events?pattern=x&access_token=open-sesame",
        &[],
    )
    .await;
    assert_eq!(admitted.status, 200);
    assert_eq!(admitted.next().await.unwrap().event, "subscribed");
    server.shutdown().await;
}

/// Messages to two channels published without pause while a reader drops its stream
/// half-way and resumes it with the last id it saw: each channel's messages arrive
/// exactly once, all of them.
#[tokio::test]
async fn resuming_under_concurrent_publishing_loses_and_repeats_nothing() {
    const PER_CHANNEL: u64 = 150;
    let (server, web) = hub_with_web(|_| {}).await;
    let addr = web.local_addr();
    let mut stream = EventStream::open(addr, "/api/v1/events?pattern=race.*", &[]).await;
    assert_eq!(stream.next().await.unwrap().event, "subscribed");

    let publisher = Client::connect(ClientConfig::new(
        server.tcp_addr().unwrap().to_string(),
        "publisher",
    ))
    .await
    .unwrap();
    let publishing = tokio::spawn(async move {
        for n in 1..=PER_CHANNEL {
            for channel in ["race.a", "race.b"] {
                publisher
                    .publish(channel, Payload::text(&n.to_string()))
                    .await
                    .unwrap();
            }
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let record = |seen: &mut BTreeMap<String, Vec<u64>>, event: &support::SseEvent| {
        let message = event.json();
        let channel = message["channel"].as_str().unwrap().to_owned();
        seen.entry(channel)
            .or_default()
            .push(message["seq"].as_u64().unwrap());
    };
    let mut last_id = String::new();
    for _ in 0..60 {
        let event = stream.next_message().await.unwrap();
        record(&mut seen, &event);
        last_id = event.id.unwrap();
    }
    drop(stream);
    // Messages keep coming while nobody listens: wait for one more (unless the
    // publisher is already done).
    let published = || {
        server
            .stats()
            .into_iter()
            .find(|(name, _)| name == "messages_published")
            .map_or(0, |(_, value)| value)
    };
    let at_drop = published();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while published() == at_drop && !publishing.is_finished() {
        assert!(tokio::time::Instant::now() < deadline, "publishing stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut resumed = EventStream::open(
        addr,
        "/api/v1/events?pattern=race.*",
        &[("Last-Event-ID", &last_id)],
    )
    .await;
    assert_eq!(resumed.status, 200);
    let total = |seen: &BTreeMap<String, Vec<u64>>| seen.values().map(Vec::len).sum::<usize>();
    while total(&seen) < 2 * PER_CHANNEL as usize {
        let event = resumed.next_message().await.expect("more messages");
        record(&mut seen, &event);
    }
    publishing.await.unwrap();
    let expected: Vec<u64> = (1..=PER_CHANNEL).collect();
    assert_eq!(seen["race.a"], expected);
    assert_eq!(seen["race.b"], expected);
    // Nothing more: no duplicate arrives late.
    Request::new("POST", "/api/v1/channels/race.a/messages")
        .body("sentinel")
        .send(addr)
        .await;
    let next = resumed.next_message().await.unwrap();
    assert_eq!(next.json()["body"], "sentinel");
    server.shutdown().await;
}
