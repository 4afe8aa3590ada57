//! The hub end to end through the client library: a real server on an ephemeral port,
//! real sockets, many clients at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use switchboard_client::{
    ChannelOptions, Client, ClientConfig, ClientError, CloseReason, ErrorCode, ErrorKind,
    EventKind, GroupItem, Payload, Replay, Since,
};
// The server's publish hook sees the protocol's own packet.
use switchboard_proto::packet::Publish;
use switchboard_server::{Hooks, PublishVerdict, Server, SessionInfo};

mod support;
use support::library::{client, server};

const WAIT: Duration = Duration::from_secs(10);

fn code_of(error: &ClientError) -> Option<ErrorCode> {
    error.code()
}

async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("item in time")
        .expect("stream still open")
}

#[tokio::test]
async fn identity_and_client_list() {
    let server = server().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let me = alice.identity().await.unwrap();
    assert_eq!(me.client_id, alice.session().client_id);
    assert_eq!(me.name, "alice");
    let others = alice.list_clients().await.unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].client_id, bob.session().client_id);
    assert_eq!(others[0].name, "bob");
    assert!(others[0].connected_since_us > 0);
    server.shutdown().await;
}

#[tokio::test]
async fn shorthands_do_what_their_builders_do() {
    let server = server().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    assert_eq!(alice.server_limits(), alice.session().limits);
    assert_eq!(alice.server_software(), alice.session().server_software);
    assert!(alice.server_software().starts_with("switchboard"));
    let mut live = bob.subscribe("short.hand", Replay::None).await.unwrap();
    alice
        .publish_no_reply("short.hand", Payload::text("no reply"))
        .await
        .unwrap();
    let pending = alice
        .publish_pipelined("short.hand", Payload::text("pipelined"))
        .await
        .unwrap();
    let ack = pending.await.unwrap();
    assert_eq!(ack.seq, 2, "both were stored, in order");
    for expected in ["no reply", "pipelined"] {
        let message = next(&mut live).await.unwrap();
        assert_eq!(message.text(), Some(expected));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn relay_reaches_up_to_255_receivers_and_refuses_256() {
    let server = server().await;
    let sender = client(&server, "sender").await;
    let receivers: Vec<Client> = futures::future::join_all((0..3).map(|i| {
        let server = &server;
        async move { client(server, &format!("r{i}")).await }
    }))
    .await;
    let mut feeds: Vec<_> = receivers.iter().map(|r| r.direct_feed().unwrap()).collect();
    let live: Vec<u64> = receivers.iter().map(|r| r.session().client_id).collect();
    let mut ids = live.clone();
    ids.extend((0..252).map(|i| 1_000_000 + i));
    assert_eq!(ids.len(), 255);
    let outcomes = sender
        .relay(&ids, b"{\"hello\":1}".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 255);
    for outcome in &outcomes {
        let expected = if live.contains(&outcome.client_id) {
            "delivered"
        } else {
            "unknown"
        };
        assert_eq!(outcome.status.name(), expected, "{outcome:?}");
    }
    for feed in &mut feeds {
        let direct = next(feed).await;
        assert_eq!(direct.sender_id(), sender.session().client_id);
        assert_eq!(direct.sender_name(), "sender");
        assert_eq!(direct.content_type(), "application/json");
        assert_eq!(direct.body().as_ref(), b"{\"hello\":1}");
    }

    ids.push(live[0]);
    assert_eq!(ids.len(), 256);
    // The library refuses before sending; the server's own refusal is tested in the
    // server crate with a client that sends 256 anyway.
    let refused = sender
        .relay(&ids, b"x".to_vec(), "text/plain")
        .await
        .unwrap_err();
    assert!(refused.kind() == ErrorKind::InvalidArgument, "{refused}");

    // Exactly 1 MiB passes; one byte more is refused and nothing is delivered.
    let limit = 1024 * 1024;
    let outcomes = sender
        .relay(&live[..1], vec![7u8; limit], "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(outcomes[0].status.name(), "delivered");
    assert_eq!(next(&mut feeds[0]).await.body().len(), limit);
    let refused = sender
        .relay(&live[..1], vec![7u8; limit + 1], "application/octet-stream")
        .await
        .unwrap_err();
    assert!(
        matches!(code_of(&refused), Some(ErrorCode::TooLarge))
            || refused.kind() == ErrorKind::TooLarge,
        "{refused}"
    );
    // The receivers got nothing from the refused relays: the next thing they see is this.
    sender
        .relay(&live, b"after".to_vec(), "text/plain")
        .await
        .unwrap();
    for feed in &mut feeds {
        assert_eq!(next(feed).await.body().as_ref(), b"after");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn history_keeps_the_last_1000_and_answers_every_query() {
    let server = server().await;
    let alice = client(&server, "alice").await;
    let mut acks = Vec::new();
    for i in 1..=1001u32 {
        acks.push(
            alice
                .publish("news", Payload::text(&format!("message {i}")))
                .pipelined()
                .await
                .unwrap(),
        );
    }
    let acks: Vec<_> = futures::future::try_join_all(acks).await.unwrap();
    assert_eq!(
        acks.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (1..=1001).collect::<Vec<_>>()
    );

    let all = alice.get_messages("news", Since::All, None).await.unwrap();
    assert_eq!(all.len(), 1000);
    assert_eq!(all[0].seq(), 2, "the oldest message is gone");
    assert_eq!(all[999].text(), Some("message 1001"));
    assert!(
        alice
            .get_message("news", Some(acks[0].id))
            .await
            .unwrap()
            .is_none()
    );
    let by_id = alice
        .get_message("news", Some(acks[500].id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id.text(), Some("message 501"));
    let latest = alice.get_message("news", None).await.unwrap().unwrap();
    assert_eq!(latest.seq(), 1001);
    assert_eq!(latest.sender_name(), "alice");

    let since_seq = alice
        .get_messages("news", Since::Seq(990), Some(5))
        .await
        .unwrap();
    assert_eq!(
        since_seq.iter().map(|m| m.seq()).collect::<Vec<_>>(),
        vec![990, 991, 992, 993, 994]
    );
    let newest = alice
        .get_messages("news", Since::All, Some(3))
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|m| m.seq()).collect::<Vec<_>>(),
        vec![999, 1000, 1001]
    );
    let since_time = alice
        .get_messages("news", Since::Time(by_id.time_us()), None)
        .await
        .unwrap();
    assert!(since_time.first().unwrap().seq() <= 501);
    assert_eq!(since_time.last().unwrap().seq(), 1001);

    let channels = alice.list_channels().await.unwrap();
    let news = channels.iter().find(|c| c.name == "news").unwrap();
    assert_eq!(news.message_count, 1000);
    assert_eq!(news.last_seq, 1001);
    server.shutdown().await;
}

#[tokio::test]
async fn subscribers_get_messages_live_by_name_wildcard_and_hashtag() {
    let server = server().await;
    let publisher = client(&server, "pub").await;
    let reader = client(&server, "reader").await;
    let mut exact = reader.subscribe("chat.rust", Replay::None).await.unwrap();
    let mut one = reader.subscribe("chat.*", Replay::None).await.unwrap();
    let mut rest = reader.subscribe("chat.>", Replay::None).await.unwrap();
    let mut tag = reader.subscribe("#tokio", Replay::None).await.unwrap();

    publisher
        .publish("chat.rust", Payload::text("hello"))
        .await
        .unwrap();
    publisher
        .publish("chat.rust.async", Payload::text("I like #Tokio"))
        .await
        .unwrap();
    publisher
        .publish("other", Payload::text("#tokio elsewhere"))
        .await
        .unwrap();

    assert_eq!(next(&mut exact).await.unwrap().text(), Some("hello"));
    assert_eq!(next(&mut one).await.unwrap().text(), Some("hello"));
    assert_eq!(next(&mut rest).await.unwrap().text(), Some("hello"));
    assert_eq!(next(&mut rest).await.unwrap().text(), Some("I like #Tokio"));
    assert_eq!(next(&mut tag).await.unwrap().text(), Some("I like #Tokio"));
    assert_eq!(
        next(&mut tag).await.unwrap().text(),
        Some("#tokio elsewhere")
    );
    // Nothing else was routed to the narrower subscriptions.
    publisher
        .publish("chat.rust", Payload::text("second"))
        .await
        .unwrap();
    assert_eq!(next(&mut exact).await.unwrap().text(), Some("second"));
    assert_eq!(next(&mut one).await.unwrap().text(), Some("second"));

    let tagged = publisher
        .tag_messages("tokio", Since::All, None)
        .await
        .unwrap();
    assert_eq!(tagged.len(), 2);
    assert_eq!(tagged[1].channel(), "other");
    server.shutdown().await;
}

/// The texts of the next `count` messages of a stream.
async fn texts<S>(stream: &mut S, count: usize) -> Vec<String>
where
    S: futures::Stream<Item = switchboard_client::Result<switchboard_client::ReceivedMessage>>
        + Unpin,
{
    let mut texts = Vec::new();
    for _ in 0..count {
        let message = next(stream).await.unwrap();
        texts.push(message.text().unwrap_or_default().to_owned());
    }
    texts
}

#[tokio::test]
async fn one_subscription_of_several_patterns_receives_each_message_once() {
    let server = server().await;
    let publisher = client(&server, "pub").await;
    let reader = client(&server, "reader").await;
    let mut both = reader
        .subscribe("chat.>", Replay::None)
        .pattern("#rust")
        .await
        .unwrap();
    assert_eq!(both.patterns(), ["chat.>", "#rust"]);
    assert_eq!(both.subscription_ids().len(), 2);
    // Separate subscriptions are separate consumers: each gets what matches it.
    let mut channel = reader.subscribe("chat.>", Replay::None).await.unwrap();
    let mut tag = reader.subscribe("#rust", Replay::None).await.unwrap();

    for (name, text) in [
        ("chat.general", "Anyone here likes #Rust?"),
        ("chat.general", "plain"),
        ("other", "#rust elsewhere"),
        ("chat.general", "end"),
    ] {
        publisher.publish(name, Payload::text(text)).await.unwrap();
    }

    assert_eq!(
        texts(&mut both, 4).await,
        [
            "Anyone here likes #Rust?",
            "plain",
            "#rust elsewhere",
            "end"
        ]
    );
    assert_eq!(
        texts(&mut channel, 3).await,
        ["Anyone here likes #Rust?", "plain", "end"]
    );
    assert_eq!(
        texts(&mut tag, 2).await,
        ["Anyone here likes #Rust?", "#rust elsewhere"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn overlapping_replays_of_one_subscription_give_each_message_once() {
    let server = server().await;
    let publisher = client(&server, "pub").await;
    let reader = client(&server, "reader").await;
    for (name, text) in [
        ("chat.general", "one #rust"),
        ("chat.general", "two"),
        ("other", "three #rust"),
        ("chat.general", "four #rust"),
    ] {
        publisher.publish(name, Payload::text(text)).await.unwrap();
    }
    let mut both = reader
        .subscribe("chat.general", Replay::Last(5))
        .pattern("#rust")
        .await
        .unwrap();
    // Each pattern's replay is announced; repeats among them are dropped.
    assert_eq!(both.replay_count(), 6);
    publisher
        .publish("chat.general", Payload::text("five #rust"))
        .await
        .unwrap();
    publisher
        .publish("chat.general", Payload::text("end"))
        .await
        .unwrap();
    assert_eq!(
        texts(&mut both, 6).await,
        [
            "one #rust",
            "two",
            "four #rust",
            "three #rust",
            "five #rust",
            "end"
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn replay_then_live_has_no_gap_and_no_duplicate_under_concurrent_publishing() {
    let server = server().await;
    let total = 3000u64;
    let publishers: Vec<Client> = vec![client(&server, "p1").await, client(&server, "p2").await];
    let mut tasks = Vec::new();
    for (index, publisher) in publishers.iter().enumerate() {
        let publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..total / 2 {
                pending.push(
                    publisher
                        .publish("race", Payload::text(&format!("{index}-{i}")))
                        .pipelined()
                        .await
                        .unwrap(),
                );
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            futures::future::try_join_all(pending).await.unwrap();
        }));
    }
    // Subscribers join at different moments while the publishers run.
    let mut subscribers = Vec::new();
    for (round, replay) in [
        Replay::SinceSeq(1),
        Replay::Last(50),
        Replay::SinceSeq(1),
        Replay::Last(1),
    ]
    .into_iter()
    .enumerate()
    {
        tokio::time::sleep(Duration::from_millis(3 * round as u64)).await;
        let reader = client(&server, &format!("reader{round}")).await;
        let subscription = reader.subscribe("race", replay).await.unwrap();
        subscribers.push((reader, subscription));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (_reader, mut subscription) in subscribers {
        let mut seqs = Vec::new();
        loop {
            let message = next(&mut subscription).await.unwrap();
            seqs.push(message.seq());
            if message.seq() == total {
                break;
            }
        }
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..=total).collect::<Vec<_>>(),
            "gap or duplicate"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn many_clients_at_once_all_receive_everything() {
    let server = server().await;
    let mut readers = Vec::new();
    for i in 0..40 {
        let reader = client(&server, &format!("reader{i}")).await;
        let subscription = reader.subscribe("fan.out", Replay::None).await.unwrap();
        readers.push((reader, subscription));
    }
    let publisher = client(&server, "publisher").await;
    for i in 0..200 {
        publisher
            .publish("fan.out", Payload::text(&i.to_string()))
            .no_reply()
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for (_reader, subscription) in &mut readers {
        for i in 0..200 {
            assert_eq!(
                next(subscription).await.unwrap().text(),
                Some(i.to_string().as_str())
            );
        }
    }
    server.shutdown().await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
    ok: bool,
    tags: Vec<String>,
}

#[tokio::test]
async fn typed_payloads_round_trip_as_msgpack_and_json() {
    let server = server().await;
    let alice = client(&server, "alice").await;
    let reading = Reading {
        sensor: "t1".into(),
        value: 21.5,
        ok: true,
        tags: vec!["a".into()],
    };
    alice
        .publish("typed", Payload::typed(&reading).unwrap())
        .await
        .unwrap();
    alice
        .publish("typed", Payload::json(&reading).unwrap())
        .await
        .unwrap();
    alice
        .publish(
            "typed",
            Payload::bytes(vec![0u8, 159, 146, 150]).with_header("kind", "raw"),
        )
        .await
        .unwrap();
    let messages = alice.get_messages("typed", Since::All, None).await.unwrap();
    assert_eq!(messages[0].content_type(), "application/msgpack");
    assert_eq!(messages[0].decode::<Reading>().unwrap(), reading);
    assert_eq!(messages[1].content_type(), "application/json");
    assert_eq!(messages[1].decode::<Reading>().unwrap(), reading);
    assert_eq!(messages[2].body().as_ref(), &[0u8, 159, 146, 150]);
    assert_eq!(messages[2].header("kind"), Some("raw"));
    server.shutdown().await;
}

#[tokio::test]
async fn channel_options_limit_history_and_characters() {
    let server = server().await;
    let alice = client(&server, "alice").await;
    let info = alice
        .create_channel(
            "tweets",
            ChannelOptions {
                history: Some(5),
                max_chars: Some(150),
                ..ChannelOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.options.history, Some(5));
    let ok = "é".repeat(150);
    alice.publish("tweets", Payload::text(&ok)).await.unwrap();
    let refused = alice
        .publish("tweets", Payload::text(&"é".repeat(151)))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&refused),
        Some(ErrorCode::TooManyCharacters),
        "{refused}"
    );
    for i in 0..10 {
        alice
            .publish("tweets", Payload::text(&i.to_string()))
            .await
            .unwrap();
    }
    assert_eq!(
        alice
            .get_messages("tweets", Since::All, None)
            .await
            .unwrap()
            .len(),
        5
    );
    // Same options again: fine. Different: refused.
    alice
        .create_channel(
            "tweets",
            ChannelOptions {
                history: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let conflict = alice
        .create_channel(
            "tweets",
            ChannelOptions {
                history: Some(6),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&conflict), Some(ErrorCode::AlreadyExists));
    let bad = alice
        .publish("bad..name", Payload::text("x"))
        .await
        .unwrap_err();
    assert!(
        code_of(&bad) == Some(ErrorCode::InvalidArgument)
            || bad.kind() == ErrorKind::InvalidArgument,
        "{bad}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn explicit_creation_can_be_required() {
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| config.require_channel_creation = true)
        .start()
        .await
        .unwrap();
    let alice = client(&server, "alice").await;
    let refused = alice
        .publish("nowhere", Payload::text("x"))
        .await
        .unwrap_err();
    assert_eq!(code_of(&refused), Some(ErrorCode::ChannelRequired));
    alice
        .create_channel("somewhere", ChannelOptions::default())
        .await
        .unwrap();
    alice
        .publish("somewhere", Payload::text("x"))
        .await
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn groups_directory_membership_posting_and_history() {
    let server = server().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let mallory = client(&server, "mallory").await;
    alice
        .create_group("rustaceans", "people who write Rust")
        .await
        .unwrap();
    let duplicate = bob.create_group("rustaceans", "").await.unwrap_err();
    assert_eq!(code_of(&duplicate), Some(ErrorCode::AlreadyExists));

    let mut alice_feed = alice.group_feed().unwrap();
    alice.join_group("rustaceans").await.unwrap();
    bob.join_group("rustaceans").await.unwrap();
    // Alice hears her own join, then Bob's.
    let mut joined = Vec::new();
    while joined.len() < 2 {
        if let GroupItem::Event(event) = next(&mut alice_feed).await {
            assert_eq!(event.kind, EventKind::MemberJoined);
            joined.push(event.subject.to_string());
        }
    }
    assert_eq!(joined, ["alice", "bob"]);

    let groups = mallory.list_groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].member_count, 2);
    assert_eq!(groups[0].description, "people who write Rust");

    let refused = mallory
        .post("rustaceans", Payload::text("let me in"))
        .await
        .unwrap_err();
    assert_eq!(code_of(&refused), Some(ErrorCode::Forbidden));
    let refused = mallory
        .group_messages("rustaceans", Since::All, None)
        .await
        .unwrap_err();
    assert_eq!(code_of(&refused), Some(ErrorCode::Forbidden));

    let before = bob
        .post("rustaceans", Payload::text("first"))
        .await
        .unwrap();
    let message = loop {
        if let GroupItem::Message(message) = next(&mut alice_feed).await {
            break message;
        }
    };
    assert_eq!(message.text(), Some("first"));
    assert_eq!(message.sender_name(), "bob");
    assert_eq!(message.seq(), before.seq);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = switchboard_client::ReceivedMessage::time_us(&message) + 1;
    bob.post("rustaceans", Payload::text("second"))
        .await
        .unwrap();
    let later = alice
        .group_messages("rustaceans", Since::Time(since), None)
        .await
        .unwrap();
    assert_eq!(
        later
            .iter()
            .map(|m| m.text().unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["second"]
    );

    // Membership outlives the connection.
    drop(bob);
    let bob_again = client(&server, "bob").await;
    let members = bob_again.group_members("rustaceans").await.unwrap();
    let names: HashSet<_> = members.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(names, HashSet::from(["alice".to_owned(), "bob".to_owned()]));
    bob_again
        .post("rustaceans", Payload::text("back"))
        .await
        .unwrap();
    bob_again.leave_group("rustaceans").await.unwrap();
    let left = loop {
        if let GroupItem::Event(event) = next(&mut alice_feed).await
            && event.kind == EventKind::MemberLeft
        {
            break event;
        }
    };
    assert_eq!(left.subject, "bob");
    let refused = bob_again
        .post("rustaceans", Payload::text("gone"))
        .await
        .unwrap_err();
    assert_eq!(code_of(&refused), Some(ErrorCode::Forbidden));
    server.shutdown().await;
}

struct Moderator;

impl Hooks for Moderator {
    fn on_connect(&self, session: &SessionInfo) -> Result<(), String> {
        if session.name == "banned" {
            return Err("banned clients may not connect".into());
        }
        Ok(())
    }

    fn on_publish(&self, _session: &SessionInfo, publish: &mut Publish) -> PublishVerdict {
        if publish.body.as_ref() == b"spam" {
            return PublishVerdict::Reject("no spam".into());
        }
        if publish.channel == "shout" {
            publish.body = publish.body.to_ascii_uppercase().into();
        }
        PublishVerdict::Accept
    }
}

#[tokio::test]
async fn hooks_can_refuse_sessions_and_reject_or_rewrite_publishes() {
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .hooks(Arc::new(Moderator))
        .start()
        .await
        .unwrap();
    let addr = server.tcp_addr().unwrap().to_string();
    let refused = Client::connect(ClientConfig::new(addr, "banned"))
        .await
        .unwrap_err();
    assert_eq!(code_of(&refused), Some(ErrorCode::Rejected), "{refused}");
    let alice = client(&server, "alice").await;
    let spam = alice
        .publish("chat", Payload::text("spam"))
        .await
        .unwrap_err();
    assert_eq!(code_of(&spam), Some(ErrorCode::Rejected));
    alice
        .publish("shout", Payload::text("quiet"))
        .await
        .unwrap();
    let latest = alice.get_message("shout", None).await.unwrap().unwrap();
    assert_eq!(latest.text(), Some("QUIET"));
    server.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_sessions_may_stop_the_server_tcp_ones_may_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sock");
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .listen_unix(&path)
        .start()
        .await
        .unwrap();
    let tcp = client(&server, "tcp").await;
    let mut subscription = tcp.subscribe("x", Replay::None).await.unwrap();
    let refused = tcp.stop_server().await.unwrap_err();
    assert_eq!(code_of(&refused), Some(ErrorCode::Forbidden));

    let local = Client::connect(ClientConfig::new(
        format!("unix:{}", path.display()),
        "admin",
    ))
    .await
    .unwrap();
    local
        .publish("x", Payload::text("over unix"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut subscription).await.unwrap().text(),
        Some("over unix")
    );
    local.stop_server().await.unwrap();
    tokio::time::timeout(WAIT, server.stopping()).await.unwrap();
    server.shutdown().await;
    // The subscriber learns why its connection ended.
    let ended = tokio::time::timeout(WAIT, subscription.next())
        .await
        .unwrap();
    if let Some(Err(error)) = ended {
        match error.close_reason() {
            Some(CloseReason::Disconnect { code, reason }) => {
                assert_eq!(*code, ErrorCode::ShuttingDown);
                assert_eq!(reason, "server shutting down");
            }
            _ => panic!("unexpected end: {error}"),
        }
    }
    assert!(matches!(
        tcp.close_reason(),
        Some(CloseReason::Disconnect {
            code: ErrorCode::ShuttingDown,
            ..
        })
    ));
    assert!(!path.exists(), "the socket file is removed");
}

/// Every message of a run exactly once, and each channel's in sequence order from 1.
fn assert_complete(label: &str, received: &[(String, u64)], total: usize) {
    assert_eq!(received.len(), total, "{label}: wrong number of messages");
    let mut per_channel: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for (channel, seq) in received {
        per_channel.entry(channel).or_default().push(*seq);
    }
    for (channel, seqs) in per_channel {
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{label}: gap, duplicate or disorder in {channel}"
        );
    }
}

// Multi-threaded, so that subscribing and publishing really run at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wildcard_and_hashtag_replay_have_no_gap_while_channels_are_being_created() {
    let server = server().await;
    // Within the tag index's 1000 messages, so a full tag replay is everything.
    let (channels, per_publisher) = (30usize, 450usize);
    let total = 2 * per_publisher;
    let readers: Vec<Client> = futures::future::join_all((0..16).map(|i| {
        let server = &server;
        async move { client(server, &format!("reader{i}")).await }
    }))
    .await;
    let publishers: Vec<Client> = vec![client(&server, "p1").await, client(&server, "p2").await];
    let mut tasks = Vec::new();
    for (index, publisher) in publishers.iter().enumerate() {
        let publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..per_publisher {
                // New channels keep appearing while the subscribers replay.
                let channel = format!("grow.c{}", (i * 2 + index) % channels);
                let text = format!("#Grow {index}-{i}");
                pending.push(
                    publisher
                        .publish(&channel, Payload::text(&text))
                        .pipelined()
                        .await
                        .unwrap(),
                );
                if i % 8 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            futures::future::try_join_all(pending).await.unwrap();
        }));
    }
    // Subscribers join one after another while the publishers run.
    let kinds = [
        ("grow.>", Replay::SinceSeq(1)),
        ("#grow", Replay::SinceTime(0)),
        ("grow.*", Replay::SinceSeq(0)),
        ("#GROW", Replay::Last(u64::MAX)),
    ];
    let mut subscribers = Vec::new();
    for (round, reader) in readers.into_iter().enumerate() {
        let (pattern, replay) = kinds[round % kinds.len()];
        let subscription = reader.subscribe(pattern, replay).await.unwrap();
        subscribers.push((pattern, reader, subscription));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (pattern, _reader, mut subscription) in subscribers {
        let mut received = Vec::new();
        while received.len() < total {
            let message = next(&mut subscription).await.unwrap();
            received.push((message.channel().to_owned(), message.seq()));
        }
        // Nothing more arrives after the last one.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), subscription.next())
                .await
                .is_err(),
            "{pattern}: more than {total} messages"
        );
        assert_complete(pattern, &received, total);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_of_a_drop_oldest_channel_learns_how_much_it_missed() {
    use switchboard_client::SlowConsumerPolicy;
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| config.outbound_queue_bytes = 256 * 1024)
        .start()
        .await
        .unwrap();
    let addr = server.tcp_addr().unwrap().to_string();
    let publisher = client(&server, "publisher").await;
    publisher
        .create_channel(
            "ticks",
            ChannelOptions {
                slow_consumer: Some(SlowConsumerPolicy::DropOldest),
                ..ChannelOptions::default()
            },
        )
        .await
        .unwrap();
    // A subscriber with a small local queue that does not read while the flood runs.
    let reader = Client::connect(ClientConfig::new(addr, "reader").with_subscription_capacity(16))
        .await
        .unwrap();
    let mut ticks = reader.subscribe("ticks", Replay::None).await.unwrap();
    let total = 20_000u64;
    let body = vec![b't'; 1024];
    for _ in 0..total {
        publisher
            .publish("ticks", Payload::bytes(body.clone()))
            .no_reply()
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let mut received = 0u64;
    loop {
        let message = next(&mut ticks).await.unwrap();
        received += 1;
        if message.seq() == total {
            break;
        }
    }
    // The last report of skipped messages may trail the last message by one read.
    let deadline = std::time::Instant::now() + WAIT;
    while received + reader.skipped_messages() < total && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let skipped = reader.skipped_messages();
    assert!(
        skipped > 0,
        "nothing was skipped: the flood did not fill the queue"
    );
    assert_eq!(received + skipped, total);
    assert!(
        !reader.is_closed(),
        "a drop-oldest subscriber is not disconnected"
    );
    server.shutdown().await;
}

/// Publishes that alternate between channels each reach their own channel: the client
/// reuses the name of the previous publish only when it is the same.
#[tokio::test]
async fn publishes_alternating_between_channels_keep_their_channels() {
    let server = server().await;
    let reader = client(&server, "reader").await;
    let writer = client(&server, "writer").await;
    let mut all = reader.subscribe("alt.>", Replay::None).await.unwrap();
    let channels = ["alt.a", "alt.b", "alt.b", "alt.a", "alt.ab", "alt.a"];
    for (index, channel) in channels.iter().enumerate() {
        writer
            .publish(channel, Payload::text(&index.to_string()))
            .no_reply()
            .await
            .unwrap();
    }
    writer.flush().await.unwrap();
    for (index, channel) in channels.iter().enumerate() {
        let message = next(&mut all).await.unwrap();
        assert_eq!(message.channel(), *channel);
        assert_eq!(message.text(), Some(index.to_string().as_str()));
    }
    server.shutdown().await;
}
