//! A channel's maximum age holds on an idle channel (robustness finding 12, "max_age is
//! applied only at the next publish"): a real server, the client library, no publish
//! after the messages expire.

use std::time::Duration;

use futures::StreamExt;
use switchboard_client::{ChannelOptions, Payload, Replay, Since};

mod support;
use support::library::{client, server};

const MAX_AGE: Duration = Duration::from_millis(400);

/// Finding 12: once past the channel's maximum age, a message is never served (fetch,
/// latest, replay, hashtag), and the server trims it from the idle channel by itself.
#[tokio::test]
async fn expired_messages_of_an_idle_channel_are_never_served_and_are_trimmed() {
    let server = server().await;
    let alice = client(&server, "alice").await;
    let options = ChannelOptions {
        max_age_ms: Some(MAX_AGE.as_millis() as u64),
        ..ChannelOptions::default()
    };
    alice.create_channel("fleeting", options).await.unwrap();
    alice
        .create_channel("lasting", ChannelOptions::default())
        .await
        .unwrap();
    for text in ["one #ephemeral", "two #ephemeral"] {
        alice
            .publish("fleeting", Payload::text(text))
            .await
            .unwrap();
    }
    alice
        .publish("lasting", Payload::text("kept #ephemeral"))
        .await
        .unwrap();
    let fresh = alice
        .get_messages("fleeting", Since::All, None)
        .await
        .unwrap();
    assert_eq!(fresh.len(), 2, "served while young");

    // Long enough to expire, too short for the periodic trim to be sure to have run.
    tokio::time::sleep(MAX_AGE + Duration::from_millis(50)).await;
    let expired = alice
        .get_messages("fleeting", Since::All, None)
        .await
        .unwrap();
    assert!(
        expired.is_empty(),
        "{} expired messages served",
        expired.len()
    );
    assert!(alice.get_message("fleeting", None).await.unwrap().is_none());
    assert!(
        alice
            .get_message("fleeting", Some(fresh[0].id()))
            .await
            .unwrap()
            .is_none()
    );
    let tagged: Vec<String> = alice
        .tag_messages("ephemeral", Since::All, None)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| m.text().map(str::to_owned))
        .collect();
    assert_eq!(tagged, ["kept #ephemeral"]);
    let mut replay = alice
        .subscribe("fleeting", Replay::Last(10))
        .pattern("lasting")
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), replay.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first.text(),
        Some("kept #ephemeral"),
        "only the lasting channel replays"
    );
    drop(replay);

    // The periodic trim (every second) lets them go without a publish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let channels = alice.list_channels().await.unwrap();
        let fleeting = channels.iter().find(|c| c.name == "fleeting").unwrap();
        if fleeting.message_count == 0 {
            assert_eq!(fleeting.last_seq, 2, "numbering is kept");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "an idle channel still holds {} expired messages",
            fleeting.message_count
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lasting = alice.list_channels().await.unwrap();
    assert_eq!(
        lasting
            .iter()
            .find(|c| c.name == "lasting")
            .unwrap()
            .message_count,
        1
    );
    alice.close().await.unwrap();
    server.shutdown().await;
}
