//! The server-wide memory budget: subscriptions, channels and groups are admitted against
//! one account, so many sessions together cannot grow the server without bound (the
//! finding: 100 sessions × 10,000 subscriptions added 572 MiB; channels, hashtags and
//! groups had no bound at all).

mod common;

use common::{RawClient, start_server_with, stat};
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    CreateChannel, CreateGroup, Identify, Packet, Publish, Stats, Subscribe,
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
