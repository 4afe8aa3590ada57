//! Abuse: listings longer than one frame, through the client library (which the CLI's
//! `channels`, `groups`, `clients` and `members` use). Finding: listings failed with
//! INTERNAL once they passed the frame limit. The library pages through them and returns
//! every entry.

use std::collections::BTreeSet;

use futures::future::try_join_all;
use switchboard_client::ChannelOptions;
use switchboard_server::{Server, ServerHandle};

mod support;
use support::library::client;

/// Small, so that a few hundred entries make many pages.
const MAX_FRAME: u32 = 16 * 1024;

async fn server() -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| config.max_frame = MAX_FRAME)
        .start()
        .await
        .expect("server starts")
}

/// Finding: listings break past one frame. On a server whose frames hold 16 KiB, 1,500
/// channels, 300 groups with 1 KB descriptions and 300 connected members of one group are
/// each listed completely, in order, by the library's list methods; a page asked for
/// with a limit keeps to it and says where the next starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_lists_everything_however_many_pages_it_takes() {
    let server = server().await;
    let admin = client(&server, "admin").await;

    let channels: BTreeSet<String> = (0..1_500)
        .map(|index| format!("paged.{index:05}.{}", "c".repeat(100)))
        .collect();
    try_join_all(
        channels
            .iter()
            .map(|name| admin.create_channel(name, ChannelOptions::default())),
    )
    .await
    .expect("channels created");
    let listed: Vec<String> = admin
        .list_channels()
        .await
        .expect("the channel list")
        .into_iter()
        .map(|channel| channel.name.to_string())
        .collect();
    assert_eq!(listed.len(), channels.len());
    assert!(
        listed.iter().eq(channels.iter()),
        "complete and in name order"
    );

    let page = admin.channels_page(None, Some(10)).await.expect("a page");
    assert_eq!(page.entries.len(), 10);
    let next = admin
        .channels_page(page.next.clone(), Some(10))
        .await
        .expect("the next page");
    assert_eq!(next.entries[0].name.to_string(), listed[10]);

    let groups: BTreeSet<String> = (0..300).map(|index| format!("team-{index:03}")).collect();
    let description = "d".repeat(1000);
    try_join_all(
        groups
            .iter()
            .map(|name| admin.create_group(name, &description)),
    )
    .await
    .expect("groups created");
    let listed: BTreeSet<String> = admin
        .list_groups()
        .await
        .expect("the group list")
        .into_iter()
        .map(|group| group.name.to_string())
        .collect();
    assert_eq!(listed, groups);

    admin.create_group("crowd", "").await.expect("crowd");
    let mut members = Vec::new();
    let mut names = BTreeSet::new();
    for index in 0..300 {
        let name = format!("member-{index:03}-{}", "m".repeat(50));
        let member = client(&server, &name).await;
        member.join_group("crowd").await.expect("joined");
        names.insert(name);
        members.push(member);
    }
    let listed: BTreeSet<String> = admin
        .group_members("crowd")
        .await
        .expect("the member list")
        .into_iter()
        .map(|member| member.name.to_string())
        .collect();
    assert_eq!(listed, names);
    let listed: BTreeSet<String> = admin
        .list_clients()
        .await
        .expect("the client list")
        .into_iter()
        .map(|other| other.name.to_string())
        .collect();
    assert_eq!(listed, names);
    server.shutdown().await;
}
