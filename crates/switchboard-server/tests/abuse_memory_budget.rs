//! The server-wide memory budget: subscriptions, channels and groups are admitted against
//! one account, so many sessions together cannot grow the server without bound (the
//! finding: 100 sessions × 10,000 subscriptions added 572 MiB; channels, hashtags and
//! groups had no bound at all).

mod common;

use common::{RawClient, start_server_with, stat};
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, CreateGroup, Identify, Packet, Publish, SlowConsumerPolicy,
    Stats, Subscribe,
};

const BUDGET: u64 = 1 << 20;

fn subscribe(pattern: String) -> Packet {
    Packet::Subscribe(Subscribe {
        pattern: pattern.into(),
        replay: Default::default(),
    })
}

fn limit_reached(packet: &Packet) -> Option<String> {
    match packet {
        Packet::Error(error) if error.code == ErrorCode::LimitReached => {
            Some(error.message.to_string())
        }
        _ => None,
    }
}

/// Finding 13: sessions subscribing without end get LIMIT_REACHED before the budget is
/// exceeded; creating channels and groups is refused too; others are still served; and
/// what leaving sessions held is given back.
#[tokio::test]
async fn many_sessions_subscribing_reach_the_budget_not_the_machine() {
    let server = start_server_with(|config| config.max_memory = BUDGET).await;
    let (mut bystander, _) = RawClient::connect_session(&server, "bystander").await;
    let mut sessions = Vec::new();
    let mut accepted = 0u64;
    let mut refusal = None;
    'sessions: for session in 0..20 {
        let (mut client, _) = RawClient::connect_session(&server, &format!("s{session}")).await;
        // Within the per-session cap of 10,000: only the server-wide budget can stop it.
        for n in 0..1000 {
            let answer = client
                .request(subscribe(format!("load.s{session}.n{n}")))
                .await;
            if let Some(message) = limit_reached(&answer) {
                refusal = Some(message);
                sessions.push(client);
                break 'sessions;
            }
            assert!(matches!(answer, Packet::SubscribeAck(_)), "{answer:?}");
            accepted += 1;
            assert!(stat(&server, "memory_budget_used") <= BUDGET);
        }
        sessions.push(client);
    }
    let message = refusal.expect("the budget refused a subscription");
    assert!(message.contains("memory budget"), "{message}");
    assert!(accepted > 500, "only {accepted} subscriptions fit in 1 MiB");
    let used = stat(&server, "memory_budget_used");
    assert!(used <= BUDGET && used > BUDGET / 2, "used {used}");
    assert_eq!(stat(&server, "memory_budget_limit"), BUDGET);

    // New channels and groups are refused the same way, with a clear message.
    for packet in [
        Packet::CreateChannel(CreateChannel {
            name: "x".repeat(200).into(),
            ..CreateChannel::default()
        }),
        Packet::CreateGroup(CreateGroup {
            name: "club".into(),
            description: "d".repeat(1000).into(),
        }),
    ] {
        let answer = bystander.request(packet).await;
        assert!(limit_reached(&answer).is_some(), "{answer:?}");
    }

    // Everyone else is still served: the bystander identifies, publishes and reads STATS.
    assert!(matches!(
        bystander.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
    let ack = bystander
        .request(Packet::Publish(Publish {
            channel: "load.s0.n0".into(),
            body: "still here".into(),
            ..Publish::default()
        }))
        .await;
    // Publishing to a channel nobody created creates it, which the budget may refuse;
    // either way the server answered.
    assert!(
        matches!(ack, Packet::PublishAck(_)) || limit_reached(&ack).is_some(),
        "{ack:?}"
    );
    let stats = bystander.request(Packet::Stats(Stats)).await;
    let Packet::StatsReply(reply) = stats else {
        panic!("{stats:?}")
    };
    assert!(reply.stats.iter().any(|s| s.name == "memory_budget_used"));

    // Sessions that leave give back what their subscriptions held.
    drop(sessions);
    assert!(
        common::eventually(std::time::Duration::from_secs(5), || stat(
            &server,
            "memory_budget_used"
        ) < BUDGET / 10)
        .await,
        "still used: {}",
        stat(&server, "memory_budget_used")
    );
    let answer = bystander.request(subscribe("after.leaving".into())).await;
    assert!(matches!(answer, Packet::SubscribeAck(_)), "{answer:?}");
    server.shutdown().await;
}

/// Finding 13: group memberships are admitted against the budget too: a join past it is
/// refused with LIMIT_REACHED, a leave gives its share back, deleting the group gives
/// back its members' shares with its own, and memberships loaded at start are counted.
#[tokio::test]
async fn group_memberships_are_charged_to_the_budget() {
    use switchboard_proto::packet::{DeleteGroup, JoinGroup, LeaveGroup};
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    // Room for the group and a little more; every membership below is charged about
    // 64 bytes plus its name (a 60-byte name: 124 bytes).
    let budget = 1024 + 2 * 4 + 3 * 130;
    let server = start_server_with(|config| {
        config.max_memory = budget;
        config.data_dir = Some(data_dir.clone());
    })
    .await;
    let (mut owner, _) = RawClient::connect_session(&server, "owner").await;
    let answer = owner
        .request(Packet::CreateGroup(CreateGroup {
            name: "club".into(),
            description: "".into(),
        }))
        .await;
    assert!(!matches!(answer, Packet::Error(_)), "{answer:?}");
    let with_group = stat(&server, "memory_budget_used");
    let join = || {
        Packet::JoinGroup(JoinGroup {
            group: "club".into(),
        })
    };
    let mut members = Vec::new();
    let mut refused = None;
    for n in 0..10 {
        let name = format!("{n}{}", "m".repeat(59));
        let (mut member, _) = RawClient::connect_session(&server, &name).await;
        let answer = member.request(join()).await;
        assert!(stat(&server, "memory_budget_used") <= budget);
        if let Some(message) = limit_reached(&answer) {
            refused = Some((message, member));
            break;
        }
        assert!(!matches!(answer, Packet::Error(_)), "{answer:?}");
        members.push(member);
    }
    let (message, mut late) = refused.expect("a join past the budget is refused");
    assert!(message.contains("memory budget"), "{message}");
    assert_eq!(members.len(), 3, "three memberships fit");
    let full = stat(&server, "memory_budget_used");
    assert!(full >= with_group + 3 * 124, "used {full}");

    // A leave gives its share back, and the refused member gets in.
    let answer = members[0]
        .request(Packet::LeaveGroup(LeaveGroup {
            group: "club".into(),
        }))
        .await;
    assert!(!matches!(answer, Packet::Error(_)), "{answer:?}");
    assert!(stat(&server, "memory_budget_used") <= full - 124);
    let answer = late.request(join()).await;
    assert!(!matches!(answer, Packet::Error(_)), "{answer:?}");
    assert_eq!(stat(&server, "memory_budget_used"), full);

    // Memberships loaded at start are counted, even past the limit.
    server.shutdown().await;
    drop((members, late, owner));
    let server = start_server_with(|config| {
        config.max_memory = budget;
        config.data_dir = Some(data_dir.clone());
    })
    .await;
    assert_eq!(stat(&server, "memory_budget_used"), full);

    // Deleting the group gives back its members' shares with its own.
    let (mut owner, _) = RawClient::connect_session(&server, "owner").await;
    let answer = owner
        .request(Packet::DeleteGroup(DeleteGroup {
            group: "club".into(),
        }))
        .await;
    assert!(!matches!(answer, Packet::Error(_)), "{answer:?}");
    assert_eq!(stat(&server, "memory_budget_used"), 0);
    server.shutdown().await;
}

/// Publishes `count` bodies of `size` bytes to `channel`, each acknowledged and then read
/// by `reader` (which so never falls behind); checks after each that the budget holds.
/// Returns the most the budget was seen to use.
async fn publish_while_reading(
    server: &switchboard_server::ServerHandle,
    publisher: &mut RawClient,
    reader: &mut RawClient,
    channel: &str,
    count: usize,
    limit: u64,
    done: impl Fn() -> bool,
) -> u64 {
    let body = bytes::Bytes::from(vec![b'q'; 16 * 1024]);
    let mut most = 0;
    for n in 0..count {
        let ack = publisher
            .request(Packet::Publish(Publish {
                channel: channel.into(),
                body: body.clone(),
                ..Publish::default()
            }))
            .await;
        assert!(matches!(ack, Packet::PublishAck(_)), "{ack:?}");
        loop {
            let packet = reader.next_packet().await.unwrap_or_else(|| {
                panic!("the reading subscriber was disconnected after {n} messages")
            });
            if let Packet::Message(message) = packet {
                assert_eq!(message.body.len(), body.len());
                break;
            }
        }
        let used = stat(server, "memory_budget_used");
        assert!(used <= limit, "the budget was passed: {used} of {limit}");
        most = most.max(used);
        if done() {
            break;
        }
    }
    most
}

async fn subscribed(
    server: &switchboard_server::ServerHandle,
    name: &str,
    channel: &str,
) -> RawClient {
    let (mut client, _) = RawClient::connect_session(server, name).await;
    let answer = client.request(subscribe(channel.to_owned())).await;
    assert!(matches!(answer, Packet::SubscribeAck(_)), "{answer:?}");
    client
}

/// Finding 13: queued deliveries count against the budget, so subscribers that never
/// read cannot together queue more than it, though each one's own bound (64 MiB) is
/// larger than the whole budget: they are disconnected as slow consumers once it is
/// full, while a subscriber that reads keeps receiving; what they held is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_queues_together_stay_within_the_budget() {
    const LIMIT: u64 = 16 << 20;
    let server = start_server_with(|config| {
        config.max_memory = LIMIT;
        config.outbound_queue_bytes = 64 << 20;
    })
    .await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let mut stalled = Vec::new();
    for n in 0..3 {
        stalled.push(subscribed(&server, &format!("stalled{n}"), "live").await);
    }
    let mut reader = subscribed(&server, "reader", "live").await;
    // 3,000 × 16 KiB: 47 MiB for each stalled subscriber, under its own bound.
    let most = publish_while_reading(
        &server,
        &mut publisher,
        &mut reader,
        "live",
        3000,
        LIMIT,
        || stat(&server, "slow_consumers_disconnected") == 3,
    )
    .await;
    assert_eq!(stat(&server, "slow_consumers_disconnected"), 3);
    assert!(
        most > LIMIT / 2,
        "the queues were not counted: at most {most}"
    );
    // Their queues go with their connections (closed at once with their sockets).
    drop(stalled);
    assert!(
        common::eventually(std::time::Duration::from_secs(5), || stat(
            &server,
            "memory_budget_used"
        ) < 4 << 20)
        .await,
        "still used: {}",
        stat(&server, "memory_budget_used")
    );
    server.shutdown().await;
}

/// Finding 13: on a drop-oldest channel, a budget full of unread queues drops their
/// oldest frames instead; nobody is disconnected and the reader gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_drop_oldest_queues_lose_frames_within_the_budget() {
    const LIMIT: u64 = 16 << 20;
    let server = start_server_with(|config| {
        config.max_memory = LIMIT;
        config.outbound_queue_bytes = 64 << 20;
    })
    .await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let created = publisher
        .request(Packet::CreateChannel(CreateChannel {
            name: "lossy".into(),
            options: ChannelOptions {
                slow_consumer: Some(SlowConsumerPolicy::DropOldest),
                ..ChannelOptions::default()
            },
        }))
        .await;
    assert!(matches!(created, Packet::ChannelInfo(_)), "{created:?}");
    let mut stalled = Vec::new();
    for n in 0..2 {
        stalled.push(subscribed(&server, &format!("stalled{n}"), "lossy").await);
    }
    let mut reader = subscribed(&server, "reader", "lossy").await;
    let most = publish_while_reading(
        &server,
        &mut publisher,
        &mut reader,
        "lossy",
        3000,
        LIMIT,
        || false,
    )
    .await;
    assert!(
        stat(&server, "slow_consumer_skipped") > 0,
        "nothing was dropped"
    );
    assert_eq!(stat(&server, "slow_consumers_disconnected"), 0);
    assert!(
        most > LIMIT / 2,
        "the queues were not counted: at most {most}"
    );
    drop(stalled);
    server.shutdown().await;
}
