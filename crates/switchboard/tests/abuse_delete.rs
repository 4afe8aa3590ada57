//! Deleting channels and groups (robustness finding 5, "no way to delete"): a real
//! durable server, the client library, and a restart; what was deleted is gone from
//! memory, from the store and from the blob directory, and those who followed it are told.

use std::time::Duration;

use futures::StreamExt;
use switchboard_client::{
    ChannelOptions, ErrorCode, ErrorKind, EventKind, GroupItem, Payload, Replay, Since,
};
use switchboard_server::SyncPolicy;

mod support;
use support::library::client;

const WAIT: Duration = Duration::from_secs(10);

/// Waits until `done` holds, or fails after `WAIT`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finding 5: a deleted channel's history, hashtag entries and streamed bodies are gone,
/// now and after a restart; its exact subscribers' subscriptions end; the name can be
/// created again, numbered from 1.
#[tokio::test]
async fn a_deleted_channel_is_gone_with_its_bodies_and_its_subscribers_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::library::durable_server(dir.path(), SyncPolicy::Always).await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    alice
        .create_channel("doomed", ChannelOptions::default())
        .await
        .unwrap();
    alice
        .create_channel("kept", ChannelOptions::default())
        .await
        .unwrap();
    let mut following = bob.subscribe("doomed", Replay::None).await.unwrap();
    let mut wildcard = bob.subscribe("*", Replay::None).await.unwrap();
    for i in 0..3 {
        alice
            .publish("doomed", Payload::text(&format!("old news {i} #gone")))
            .await
            .unwrap();
    }
    alice
        .publish("kept", Payload::text("still here #gone"))
        .await
        .unwrap();
    let body = vec![7u8; 256 * 1024];
    let streamed = alice
        .publish("doomed", Payload::default())
        .stream_from(std::io::Cursor::new(body.clone()), body.len() as u64)
        .await
        .unwrap();
    let blob = dir.path().join("blobs").join(streamed.id.to_string());
    assert!(
        blob.exists(),
        "the streamed body is kept at {}",
        blob.display()
    );
    assert_eq!(
        alice
            .tag_messages("gone", Since::All, None)
            .await
            .unwrap()
            .len(),
        4
    );
    for _ in 0..4 {
        tokio::time::timeout(WAIT, following.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    alice.delete_channel("doomed").await.unwrap();

    // The exact subscription ends with an error saying why.
    let end = tokio::time::timeout(WAIT, following.next()).await.unwrap();
    let error = end.expect("an error before the end").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::SubscriptionClosed);
    assert!(error.to_string().contains("doomed"), "{error}");
    assert!(
        tokio::time::timeout(WAIT, following.next())
            .await
            .unwrap()
            .is_none()
    );
    let names: Vec<String> = alice
        .list_channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names, ["kept"]);
    let error = alice
        .get_messages("doomed", Since::All, None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    let tagged = alice.tag_messages("gone", Since::All, None).await.unwrap();
    assert_eq!(tagged.len(), 1, "only the kept channel's message is tagged");
    eventually("the streamed body's file is removed", || !blob.exists()).await;

    // Created again: a new, empty channel numbered from 1, which the wildcard
    // subscription (kept by the delete) follows.
    let ack = alice
        .publish("doomed", Payload::text("fresh"))
        .await
        .unwrap();
    assert_eq!(ack.seq, 1);
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("fresh") {
        let message = tokio::time::timeout(WAIT, wildcard.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(message.text().unwrap_or_default().to_owned());
    }
    drop((following, wildcard));
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.shutdown().await;

    // After a restart: nothing of the deleted channel came back.
    let server = support::library::durable_server(dir.path(), SyncPolicy::Always).await;
    let carol = client(&server, "carol").await;
    let history = carol
        .get_messages("doomed", Since::All, None)
        .await
        .unwrap();
    let texts: Vec<&str> = history.iter().filter_map(|m| m.text()).collect();
    assert_eq!(texts, ["fresh"]);
    assert_eq!(history[0].seq(), 1);
    let tagged = carol.tag_messages("gone", Since::All, None).await.unwrap();
    assert_eq!(tagged.len(), 1);
    assert!(!blob.exists());
    let mut replay = carol.subscribe("doomed", Replay::Last(10)).await.unwrap();
    let first = tokio::time::timeout(WAIT, replay.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.text(), Some("fresh"));
    drop(replay);
    carol.close().await.unwrap();
    server.shutdown().await;
}

/// Finding 5: a deleted group's members are told, and the group, its history and its
/// members are gone, now and after a restart.
#[tokio::test]
async fn a_deleted_group_tells_its_members_and_is_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::library::durable_server(dir.path(), SyncPolicy::Always).await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let mut bob_feed = bob.group_feed().unwrap();
    alice.create_group("crew", "the crew").await.unwrap();
    alice.join_group("crew").await.unwrap();
    bob.join_group("crew").await.unwrap();
    alice
        .post("crew", Payload::text("hello crew"))
        .await
        .unwrap();

    alice.delete_group("crew").await.unwrap();

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let item = tokio::time::timeout_at(deadline, bob_feed.next())
            .await
            .expect("GROUP_DELETED in time")
            .expect("feed open");
        if let GroupItem::Event(event) = item
            && event.kind == EventKind::GroupDeleted
        {
            assert_eq!(event.channel, "crew");
            break;
        }
    }
    assert!(alice.list_groups().await.unwrap().is_empty());
    let error = alice.group_members("crew").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    let error = alice
        .post("crew", Payload::text("anyone?"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    let error = alice.delete_group("crew").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    drop(bob_feed);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.shutdown().await;

    let server = support::library::durable_server(dir.path(), SyncPolicy::Always).await;
    let carol = client(&server, "carol").await;
    assert!(carol.list_groups().await.unwrap().is_empty());
    // The name is free again, and the new group has no member and no history.
    carol.create_group("crew", "a new crew").await.unwrap();
    assert!(carol.group_members("crew").await.unwrap().is_empty());
    carol.join_group("crew").await.unwrap();
    let history = carol
        .group_messages("crew", Since::All, None)
        .await
        .unwrap();
    assert!(
        history.is_empty(),
        "{} old messages came back",
        history.len()
    );
    carol.close().await.unwrap();
    server.shutdown().await;
}

/// Deleting what does not exist is refused clearly.
#[tokio::test]
async fn deleting_an_unknown_channel_is_refused_with_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::library::durable_server(dir.path(), SyncPolicy::Always).await;
    let alice = client(&server, "alice").await;
    let error = alice.delete_channel("nothing").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    assert!(error.to_string().contains("nothing"), "{error}");
    alice.close().await.unwrap();
    server.shutdown().await;
}
