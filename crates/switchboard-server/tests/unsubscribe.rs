//! UNSUBSCRIBE against the real hub: the route goes with the acknowledgement (nothing more
//! is delivered, the subscription gauge drops), a route shared by two subscriptions of one
//! session stays until the last goes, and an unknown or already removed subscription is
//! NOT_FOUND.
//!
//! "Nothing more is delivered" is shown without waiting on silence: after the publish that
//! must not arrive, the same publisher publishes to a channel the subscriber still follows.
//! A session's deliveries are queued in publish order, so the marker arriving first proves
//! the other was never queued.

mod common;

use bytes::Bytes;
use common::{RawClient, start_server, stat};
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{Message, Packet, Publish, Replay, Subscribe, Unsubscribe};
use switchboard_server::ServerHandle;

/// Subscriptions held on the hub now (routes added less routes removed).
fn subscriptions(server: &ServerHandle) -> u64 {
    server.hub().metrics().subscriptions
}

async fn subscribe(client: &mut RawClient, pattern: &str) -> u64 {
    match client
        .request(Packet::Subscribe(Subscribe {
            pattern: pattern.into(),
            replay: Replay::None,
        }))
        .await
    {
        Packet::SubscribeAck(ack) => ack.subscription_id,
        other => panic!("expected SUBSCRIBE_ACK, got {other:?}"),
    }
}

async fn unsubscribe(client: &mut RawClient, subscription_id: u64) -> Packet {
    client
        .request(Packet::Unsubscribe(Unsubscribe { subscription_id }))
        .await
}

async fn publish(client: &mut RawClient, channel: &str, body: &str) {
    let publish = Publish {
        channel: channel.into(),
        body: Bytes::from(body.to_owned()),
        ..Publish::default()
    };
    match client.request(Packet::Publish(publish)).await {
        Packet::PublishAck(_) => {}
        other => panic!("expected PUBLISH_ACK, got {other:?}"),
    }
}

/// The next message pushed to `client`.
async fn next_message(client: &mut RawClient) -> Message {
    loop {
        match client
            .next_packet()
            .await
            .expect("a message before the close")
        {
            Packet::Message(message) => return message,
            Packet::Heartbeat(_) => {}
            other => panic!("expected a MESSAGE, got {other:?}"),
        }
    }
}

fn body(message: &Message) -> &str {
    std::str::from_utf8(&message.body).expect("text body")
}

#[tokio::test]
async fn unsubscribe_removes_the_route_and_delivery_stops_at_the_ack() {
    let server = start_server().await;
    let (mut subscriber, _) = RawClient::connect_session(&server, "subscriber").await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let news = subscribe(&mut subscriber, "news").await;
    subscribe(&mut subscriber, "marker").await;
    assert_eq!(subscriptions(&server), 2);

    publish(&mut publisher, "news", "before").await;
    let message = next_message(&mut subscriber).await;
    assert_eq!(
        (message.channel.as_str(), body(&message)),
        ("news", "before")
    );

    assert!(matches!(
        unsubscribe(&mut subscriber, news).await,
        Packet::Ok(_)
    ));
    assert_eq!(subscriptions(&server), 1, "the route is gone");
    let delivered = stat(&server, "messages_delivered");

    publish(&mut publisher, "news", "after").await;
    publish(&mut publisher, "marker", "marker").await;
    let message = next_message(&mut subscriber).await;
    assert_eq!(
        (message.channel.as_str(), body(&message)),
        ("marker", "marker"),
        "a message of the removed subscription arrived"
    );
    assert_eq!(
        stat(&server, "messages_delivered"),
        delivered + 1,
        "only the marker was delivered"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_route_shared_by_two_subscriptions_stays_until_the_last_goes() {
    let server = start_server().await;
    let (mut subscriber, _) = RawClient::connect_session(&server, "subscriber").await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let first = subscribe(&mut subscriber, "news").await;
    let second = subscribe(&mut subscriber, "news").await;
    subscribe(&mut subscriber, "marker").await;
    assert_ne!(first, second);

    assert!(matches!(
        unsubscribe(&mut subscriber, first).await,
        Packet::Ok(_)
    ));
    publish(&mut publisher, "news", "still routed").await;
    publish(&mut publisher, "marker", "one").await;
    // Once, not twice while both were held, and not never after one went.
    let message = next_message(&mut subscriber).await;
    assert_eq!(body(&message), "still routed");
    let message = next_message(&mut subscriber).await;
    assert_eq!(body(&message), "one");

    assert!(matches!(
        unsubscribe(&mut subscriber, second).await,
        Packet::Ok(_)
    ));
    publish(&mut publisher, "news", "no longer routed").await;
    publish(&mut publisher, "marker", "two").await;
    let message = next_message(&mut subscriber).await;
    assert_eq!(
        body(&message),
        "two",
        "a message of a removed route arrived"
    );
    assert_eq!(subscriptions(&server), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_or_removed_subscription_is_not_found() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "client").await;
    let (mut other, _) = RawClient::connect_session(&server, "other").await;
    let id = subscribe(&mut client, "news").await;
    // Ids are per session: the other session's second subscription has an id this
    // session never gave out.
    subscribe(&mut other, "news").await;
    let others = subscribe(&mut other, "news").await;
    assert_ne!(others, id);

    for (what, subscription_id) in [
        ("never given", id + 1_000),
        // Another session's subscription is not this session's to remove.
        ("another session's", others),
    ] {
        match unsubscribe(&mut client, subscription_id).await {
            Packet::Error(error) => assert_eq!(error.code, ErrorCode::NotFound, "{what}"),
            other => panic!("{what}: expected NOT_FOUND, got {other:?}"),
        }
    }
    assert_eq!(subscriptions(&server), 3, "nothing was removed");

    assert!(matches!(unsubscribe(&mut client, id).await, Packet::Ok(_)));
    match unsubscribe(&mut client, id).await {
        Packet::Error(error) => {
            assert_eq!(error.code, ErrorCode::NotFound);
            assert!(error.message.contains(&id.to_string()), "{error:?}");
        }
        other => panic!("removing twice: expected NOT_FOUND, got {other:?}"),
    }
    // The refusals did not end the session, nor touch the other's routes.
    assert_eq!(subscriptions(&server), 2);
    publish(&mut client, "news", "still served").await;
    assert_eq!(body(&next_message(&mut other).await), "still served");
    server.shutdown().await;
}
