//! The drop-oldest slow-consumer policy over real sockets: a subscriber that stops reading
//! on such a channel is not disconnected and does not hold up the publisher; it loses the
//! oldest of what it had not read, and is told how many.

mod common;

use bytes::Bytes;
use common::RawClient;
use switchboard_proto::Flags;
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, EventKind, Packet, Publish, Replay, SlowConsumerPolicy,
    Subscribe,
};
use switchboard_server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_of_a_drop_oldest_channel_skips_instead_of_being_cut_off() {
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| config.outbound_queue_bytes = 256 * 1024)
        .start()
        .await
        .unwrap();
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
    let (mut reader, _) = RawClient::connect_session(&server, "reader").await;
    let subscribed = reader
        .request(Packet::Subscribe(Subscribe {
            pattern: "lossy".into(),
            replay: Replay::None,
        }))
        .await;
    assert!(matches!(subscribed, Packet::SubscribeAck(_)));

    // 20 MiB while the reader reads nothing: far more than the socket buffers and the
    // 256 KiB queue hold.
    let total = 20_000u32;
    let body = Bytes::from(vec![b'm'; 1024]);
    let started = std::time::Instant::now();
    for i in 0..total {
        let publish = Packet::Publish(Publish {
            channel: "lossy".into(),
            body: body.clone(),
            ..Publish::default()
        });
        publisher.send(10 + i, Flags::empty(), &publish).await;
    }
    let mut acked = 0;
    while acked < total {
        match publisher.next_packet().await.expect("acks") {
            Packet::PublishAck(_) => acked += 1,
            other => panic!("{other:?}"),
        }
    }
    let publishing = started.elapsed();

    let mut received = 0u64;
    let mut skipped = 0u64;
    let mut last_seq = 0;
    while last_seq < u64::from(total) {
        match reader
            .next_packet()
            .await
            .expect("the reader is still connected")
        {
            Packet::Message(message) => {
                assert!(
                    message.seq > last_seq,
                    "out of order: {} after {last_seq}",
                    message.seq
                );
                last_seq = message.seq;
                received += 1;
            }
            Packet::Event(event) => {
                assert_eq!(event.kind, EventKind::Skipped);
                skipped += event.count;
            }
            other => panic!("{other:?}"),
        }
    }
    // Every report of skipped messages arrives with the batch that follows the drops, so
    // one more read may still be owed; the total must match exactly once it is in.
    if received + skipped < u64::from(total) {
        match reader.next_packet().await {
            Some(Packet::Event(event)) if event.kind == EventKind::Skipped => {
                skipped += event.count
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        skipped > 0,
        "nothing was dropped: the test did not fill the queue"
    );
    assert_eq!(
        received + skipped,
        u64::from(total),
        "every message is received or counted as skipped"
    );
    let stats = match publisher.request(Packet::Stats(Default::default())).await {
        Packet::StatsReply(stats) => stats,
        other => panic!("{other:?}"),
    };
    assert_eq!(stats.get("slow_consumer_skipped"), Some(skipped));
    assert_eq!(stats.get("slow_consumers_disconnected"), Some(0));
    eprintln!("published {total} in {publishing:?}; received {received}, skipped {skipped}");
    server.shutdown().await;
}
