//! Abuse: listings longer than one frame. Finding: `channels`, `groups`, `clients` and
//! `members` failed with INTERNAL once the list passed the frame limit. Every listing is
//! paged (cursor and limit), each page within one frame; a request without a limit (an
//! older client) gets the first page, marked as partial by its cursor.

mod common;

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use common::{RawClient, start_server_with};
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, CreateGroup, GroupMembers, JoinGroup, ListChannels, ListClients,
    ListGroups, Packet,
};
use switchboard_proto::{Flags, Frame};
use tokio::io::AsyncWriteExt;

/// Small, so that a few thousand entries make many pages.
const MAX_FRAME: u32 = 16 * 1024;

/// Sends a request and returns the frame answering it, checked against the frame limit.
async fn answer(client: &mut RawClient, packet: Packet) -> Frame {
    let id = client.next_request_id();
    client.send(id, Flags::empty(), &packet).await;
    loop {
        let frame = client.next_frame().await.expect("an answer");
        if frame.request_id == id {
            assert!(
                frame.content.len() <= MAX_FRAME as usize,
                "a reply of {} bytes, over the frame limit",
                frame.content.len()
            );
            return frame;
        }
    }
}

/// Sends many requests in one write, then reads their answers; each must be `ok`.
async fn pipelined(client: &mut RawClient, packets: Vec<Packet>, ok: fn(&Packet) -> bool) {
    let mut out = BytesMut::new();
    let first = client.next_request_id();
    for (index, packet) in packets.iter().enumerate() {
        client
            .codec
            .encode_packet(first + index as u32, Flags::empty(), packet, &mut out)
            .expect("encode");
        client.next_request_id();
    }
    client.stream.write_all(&out).await.expect("write");
    for _ in &packets {
        let packet = client.next_packet().await.expect("an answer");
        assert!(ok(&packet), "{packet:?}");
    }
}

/// Pages through a listing with `request(cursor)`, checking every page; returns every
/// entry's key and the number of pages.
async fn page_through(
    client: &mut RawClient,
    request: impl Fn(Option<Bytes>) -> Packet,
    entries: impl Fn(&Packet) -> (Vec<String>, Option<Bytes>),
) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let frame = answer(client, request(cursor.clone())).await;
        let packet = Packet::from_frame(&frame).expect("valid packet");
        let (keys, next) = entries(&packet);
        assert!(!keys.is_empty(), "an empty page: {packet:?}");
        pages += 1;
        all.extend(keys);
        match next {
            Some(next) => cursor = Some(next),
            None => return (all, pages),
        }
        assert!(pages < 10_000, "the listing does not end");
    }
}

fn assert_complete(listed: &[String], expected: &BTreeSet<String>) {
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "an entry was listed twice");
    assert_eq!(&unique, expected, "the listing is not complete");
}

/// Finding: listings break past one frame. 2,000 channels with long names and 600 groups
/// with 1 KB descriptions, on a server whose frames hold 16 KiB: every listing comes in
/// pages of one frame each, in order, complete and without repeats; without a limit the
/// first page is as large as a frame holds and says more follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_and_group_listings_come_in_pages_within_the_frame_limit() {
    let server = start_server_with(|config| config.max_frame = MAX_FRAME).await;
    let (mut admin, _) = RawClient::connect_session(&server, "admin").await;

    let channels: BTreeSet<String> = (0..2_000)
        .map(|index| format!("listing.{index:05}.{}", "c".repeat(120)))
        .collect();
    let creates = channels
        .iter()
        .map(|name| {
            Packet::CreateChannel(CreateChannel {
                name: name.as_str().into(),
                options: ChannelOptions::default(),
            })
        })
        .collect();
    pipelined(&mut admin, creates, |p| matches!(p, Packet::ChannelInfo(_))).await;

    let groups: BTreeSet<String> = (0..600).map(|index| format!("group-{index:04}")).collect();
    let creates = groups
        .iter()
        .map(|name| {
            Packet::CreateGroup(CreateGroup {
                name: name.as_str().into(),
                description: "d".repeat(1000).into(),
            })
        })
        .collect();
    pipelined(&mut admin, creates, |p| matches!(p, Packet::Ok(_))).await;

    // An older client: no cursor, no limit. It gets a full frame's worth, not an error.
    let first = answer(&mut admin, Packet::ListChannels(ListChannels::default())).await;
    let Ok(Packet::ChannelList(first)) = Packet::from_frame(&first) else {
        panic!("expected CHANNEL_LIST, got {:?}", first.frame_type);
    };
    assert!(first.next.is_some(), "a partial first page says so");
    assert!(
        first.channels.len() > 10,
        "{} channels",
        first.channels.len()
    );

    let (listed, pages) = page_through(
        &mut admin,
        |cursor| {
            Packet::ListChannels(ListChannels {
                cursor,
                limit: None,
            })
        },
        |packet| match packet {
            Packet::ChannelList(list) => (
                list.channels.iter().map(|c| c.name.to_string()).collect(),
                list.next.clone(),
            ),
            other => panic!("expected CHANNEL_LIST, got {other:?}"),
        },
    )
    .await;
    assert!(pages > 10, "{pages} pages");
    assert!(
        listed.windows(2).all(|pair| pair[0] < pair[1]),
        "in name order"
    );
    assert_complete(&listed, &channels);

    // A limit smaller than a frame's worth is kept to.
    let (listed, pages) = page_through(
        &mut admin,
        |cursor| {
            Packet::ListChannels(ListChannels {
                cursor,
                limit: Some(7),
            })
        },
        |packet| match packet {
            Packet::ChannelList(list) => {
                assert!(list.channels.len() <= 7);
                (
                    list.channels.iter().map(|c| c.name.to_string()).collect(),
                    list.next.clone(),
                )
            }
            other => panic!("expected CHANNEL_LIST, got {other:?}"),
        },
    )
    .await;
    assert_eq!(pages, 2_000usize.div_ceil(7));
    assert_complete(&listed, &channels);

    let (listed, pages) = page_through(
        &mut admin,
        |cursor| {
            Packet::ListGroups(ListGroups {
                cursor,
                limit: None,
            })
        },
        |packet| match packet {
            Packet::GroupList(list) => (
                list.groups.iter().map(|g| g.name.to_string()).collect(),
                list.next.clone(),
            ),
            other => panic!("expected GROUP_LIST, got {other:?}"),
        },
    )
    .await;
    assert!(pages > 10, "{pages} pages");
    assert_complete(&listed, &groups);

    // A cursor this server never gave is refused, not misread.
    let refused = answer(
        &mut admin,
        Packet::ListClients(ListClients {
            cursor: Some(Bytes::from_static(b"nope")),
            limit: None,
        }),
    )
    .await;
    assert!(
        matches!(Packet::from_frame(&refused), Ok(Packet::Error(_))),
        "{refused:?}"
    );
    server.shutdown().await;
}

/// Finding: listings break past one frame, for clients and group members too. 700
/// connected sessions with long names, all members of one group, on a server whose
/// frames hold 16 KiB: both listings come in pages, complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_member_listings_come_in_pages_within_the_frame_limit() {
    let server = start_server_with(|config| config.max_frame = MAX_FRAME).await;
    let (mut admin, _) = RawClient::connect_session(&server, "admin").await;
    let created = admin
        .request(Packet::CreateGroup(CreateGroup {
            name: "crowd".into(),
            description: "everyone".into(),
        }))
        .await;
    assert!(matches!(created, Packet::Ok(_)), "{created:?}");

    let mut sessions = Vec::new();
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for index in 0..700 {
        let name = format!("member-{index:04}-{}", "m".repeat(48));
        let (mut session, ack) = RawClient::connect_session(&server, &name).await;
        let joined = session
            .request(Packet::JoinGroup(JoinGroup {
                group: "crowd".into(),
            }))
            .await;
        assert!(matches!(joined, Packet::Ok(_)), "{joined:?}");
        ids.insert(ack.client_id.to_string());
        names.insert(name);
        sessions.push(session);
    }

    let (listed, pages) = page_through(
        &mut admin,
        |cursor| {
            Packet::GroupMembers(GroupMembers {
                group: "crowd".into(),
                cursor,
                limit: None,
            })
        },
        |packet| match packet {
            Packet::MemberList(list) => {
                assert!(list.members.iter().all(|m| m.online));
                (
                    list.members.iter().map(|m| m.name.to_string()).collect(),
                    list.next.clone(),
                )
            }
            other => panic!("expected MEMBER_LIST, got {other:?}"),
        },
    )
    .await;
    assert!(pages > 2, "{pages} pages");
    assert_complete(&listed, &names);

    let (listed, pages) = page_through(
        &mut admin,
        |cursor| {
            Packet::ListClients(ListClients {
                cursor,
                limit: None,
            })
        },
        |packet| match packet {
            Packet::ClientList(list) => (
                list.clients
                    .iter()
                    .map(|c| c.client_id.to_string())
                    .collect(),
                list.next.clone(),
            ),
            other => panic!("expected CLIENT_LIST, got {other:?}"),
        },
    )
    .await;
    assert!(pages > 2, "{pages} pages");
    assert_complete(&listed, &ids);
    drop(sessions);
    server.shutdown().await;
}
