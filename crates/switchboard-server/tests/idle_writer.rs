//! Connections idle long enough for their writer task to go away (it exits once its
//! queue has been empty for a moment, and the next item queued starts a new one).

mod common;

use std::time::Duration;

use switchboard_proto::packet::{Packet, Publish, Subscribe};

/// Tasks alive on the test's runtime, which the server runs on.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until no more than `idle` tasks are alive: every writer task has exited (each
/// does once its queue has stayed empty for its linger time).
async fn wait_for_writers_to_exit(idle: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while alive_tasks() > idle {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} tasks alive, {idle} expected: a writer never exited",
            alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A writer that went away while its connection was idle comes back for the next item:
/// a live message, and the DISCONNECT of a server shutting down.
#[tokio::test]
async fn a_connection_idle_long_enough_to_lose_its_writer_still_gets_what_is_sent() {
    let server = common::start_server().await;
    // An idle connection is one task, its request loop: anything more is a writer.
    let idle = alive_tasks() + 2;
    let (mut subscriber, _) = common::RawClient::connect_session(&server, "quiet").await;
    let ack = subscriber
        .request(Packet::Subscribe(Subscribe {
            pattern: "quiet.news".into(),
            replay: Default::default(),
        }))
        .await;
    assert!(matches!(ack, Packet::SubscribeAck(_)), "got {ack:?}");
    let (mut publisher, _) = common::RawClient::connect_session(&server, "loud").await;

    for round in 0..2u8 {
        // Both sessions idle long enough for their writers to exit.
        wait_for_writers_to_exit(idle).await;
        let publish = Packet::Publish(Publish {
            channel: "quiet.news".into(),
            body: vec![round; 3].into(),
            ..Default::default()
        });
        let acked = publisher.request(publish).await;
        assert!(matches!(acked, Packet::PublishAck(_)), "got {acked:?}");
        match subscriber.next_packet().await {
            Some(Packet::Message(message)) => assert_eq!(&message.body[..], &[round; 3]),
            other => panic!("expected the message, got {other:?}"),
        }
    }

    wait_for_writers_to_exit(idle).await;
    server.shutdown().await;
    let packets = subscriber.until_closed().await;
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(_))),
        "expected a DISCONNECT last, got {packets:?}"
    );
}
