//! Relay floods: any client can read client ids from the client list and relay bodies at
//! one of them. Unsolicited traffic must never cost its receiver the connection: direct
//! messages fill at most a quarter of the receiver's outbound budget, the rest is dropped
//! with the sender told (`dropped`) and counted, and the receiver stays connected and is
//! served once it reads.

mod common;

use bytes::Bytes;
use common::{RawClient, start_server_with, stat};
use switchboard_proto::packet::{Packet, Publish, Relay, RelayStatus, Replay, Subscribe};

/// Finding: 1 MiB relays at a client that does not read got it disconnected as a slow
/// consumer within 222 ms. Now the flood is dropped once the receiver's share for direct
/// messages is full; the sender sees `dropped`; the receiver keeps its connection and,
/// once it reads, gets what was queued, its subscription's messages and its own replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_flood_never_disconnects_its_target() {
    const QUEUE_BYTES: usize = 8 * 1024 * 1024;
    const RELAYS: usize = 48;
    let server = start_server_with(|config| config.outbound_queue_bytes = QUEUE_BYTES).await;
    let (mut target, target_ack) = RawClient::connect_session(&server, "target").await;
    let subscribed = target
        .request(Packet::Subscribe(Subscribe {
            pattern: "news".into(),
            replay: Replay::None,
        }))
        .await;
    assert!(
        matches!(subscribed, Packet::SubscribeAck(_)),
        "{subscribed:?}"
    );

    // The target reads nothing from here on, while 48 MiB are relayed at it: far more
    // than its queue and the socket buffers hold.
    let (mut flooder, _) = RawClient::connect_session(&server, "flooder").await;
    let body = Bytes::from(vec![b'r'; 1024 * 1024]);
    let mut delivered = 0;
    let mut dropped = 0;
    for _ in 0..RELAYS {
        let answer = flooder
            .request(Packet::Relay(Relay {
                receivers: vec![target_ack.client_id],
                body: body.clone(),
                ..Relay::default()
            }))
            .await;
        let Packet::RelayResult(result) = answer else {
            panic!("expected RELAY_RESULT, got {answer:?}");
        };
        match result.outcomes[0].status {
            RelayStatus::Delivered => delivered += 1,
            RelayStatus::Dropped => dropped += 1,
            RelayStatus::Unknown => panic!("the target was disconnected"),
        }
    }
    assert!(delivered > 0, "some relays were delivered");
    assert!(dropped > 0, "{delivered} delivered, none dropped");
    assert_eq!(stat(&server, "relay_deliveries_dropped"), dropped);
    assert_eq!(stat(&server, "slow_consumers_disconnected"), 0);
    assert_eq!(stat(&server, "connections_current"), 2);

    // What the target asked for still has room: a message on its subscription, while
    // it still reads nothing.
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let acked = publisher
        .request(Packet::Publish(Publish {
            channel: "news".into(),
            body: Bytes::from_static(b"still here"),
            ..Publish::default()
        }))
        .await;
    assert!(matches!(acked, Packet::PublishAck(_)), "{acked:?}");
    // The delivery was queued (or the target marked slow) before the ack was sent; the
    // target reading everything below shows it was not disconnected since.
    assert_eq!(stat(&server, "slow_consumers_disconnected"), 0);

    // The target reads: every delivered relay, the message, then the answer to its own
    // request.
    let mut directs = 0;
    let mut message = false;
    let stats_id = target.next_request_id();
    target
        .send(
            stats_id,
            switchboard_proto::Flags::empty(),
            &Packet::Stats(Default::default()),
        )
        .await;
    loop {
        let frame = target
            .next_frame()
            .await
            .expect("the target is still connected");
        if frame.request_id == stats_id {
            break;
        }
        match Packet::from_frame(&frame).expect("valid packet") {
            Packet::Direct(direct) => {
                assert_eq!(direct.body.len(), body.len());
                directs += 1;
            }
            Packet::Message(received) => {
                assert_eq!(&received.body[..], b"still here");
                message = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(directs, delivered);
    assert!(message, "the subscription's message arrived");

    // With its queue drained, the target takes relays again.
    let answer = flooder
        .request(Packet::Relay(Relay {
            receivers: vec![target_ack.client_id],
            body: body.clone(),
            ..Relay::default()
        }))
        .await;
    assert!(
        matches!(&answer, Packet::RelayResult(result) if result.outcomes[0].status == RelayStatus::Delivered),
        "{answer:?}"
    );
    server.shutdown().await;
}
