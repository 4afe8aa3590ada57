//! Groups of a cluster: three servers on a real Redis keep one set of groups. A group
//! made on one node is listed on every node; posts reach the members on every node once
//! and in order, joins and leaves in order with them; a non-member's post is refused
//! and stores nothing; a deletion reaches every member; history reads alike from any
//! node; and a leave racing with posts never lets a post of the user follow the leave.

mod common;

use common::*;

use std::time::Duration;

use futures::StreamExt;
use switchboard_client::{ErrorCode, EventKind, GroupFeed, GroupItem, Payload, Since};
use tokio::sync::mpsc;

/// A group item in a word: `post:<sender>:<text>`, `joined:<user>`, `left:<user>`,
/// `deleted:<group>`.
fn describe(item: &GroupItem) -> String {
    match item {
        GroupItem::Message(message) => format!(
            "post:{}:{}",
            message.sender_name(),
            message.text().unwrap_or_default()
        ),
        GroupItem::Event(event) => match event.kind {
            EventKind::MemberJoined => format!("joined:{}", event.subject),
            EventKind::MemberLeft => format!("left:{}", event.subject),
            EventKind::GroupDeleted => format!("deleted:{}", event.channel),
            other => format!("{other:?}"),
        },
    }
}

async fn next(feed: &mut GroupFeed) -> String {
    let item = tokio::time::timeout(WAIT, feed.next())
        .await
        .expect("a group item within the wait")
        .expect("the feed goes on");
    describe(&item)
}

/// The next `count` items of a feed.
async fn take(feed: &mut GroupFeed, count: usize) -> Vec<String> {
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(next(feed).await);
    }
    items
}

fn error_code(result: switchboard_client::Result<impl std::fmt::Debug>) -> Option<ErrorCode> {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(error) => error.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_made_on_one_node_is_listed_on_every_node() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let on_a = client(&nodes[0], "ann").await;
    let on_b = client(&nodes[1], "bob").await;
    let on_c = client(&nodes[2], "cat").await;
    on_a.create_group("team", "the release crew")
        .await
        .expect("created");
    on_a.create_group("alpha", "first").await.expect("created");
    on_b.join_group("team").await.expect("joined");
    on_c.join_group("team").await.expect("joined");
    for client in [&on_b, &on_c] {
        let groups = client.list_groups().await.expect("listed");
        let listed: Vec<(String, String, u64)> = groups
            .iter()
            .map(|g| {
                (
                    g.name.to_string(),
                    g.description.to_string(),
                    g.member_count,
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("alpha".to_owned(), "first".to_owned(), 0),
                ("team".to_owned(), "the release crew".to_owned(), 2),
            ]
        );
    }
    let members: Vec<String> = on_a
        .group_members("team")
        .await
        .expect("members")
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(members, ["bob", "cat"]);
    // One page at a time, by the cursor the cluster gives.
    let page = on_c.groups_page(None, Some(1)).await.expect("page");
    assert_eq!(page.entries.len(), 1);
    let rest = on_c.groups_page(page.next, None).await.expect("page");
    assert_eq!(rest.entries[0].name.as_str(), "team");
    assert_eq!(
        error_code(on_c.create_group("team", "again").await),
        Some(ErrorCode::AlreadyExists)
    );
    assert_eq!(
        error_code(on_b.join_group("nobody").await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        error_code(on_a.leave_group("team").await),
        Some(ErrorCode::NotFound),
        "ann is not a member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_other_nodes_get_each_post_once_in_order() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let ann = client(&nodes[0], "ann").await;
    let bob = client(&nodes[1], "bob").await;
    ann.create_group("team", "").await.expect("created");
    let mut bob_feed = bob.group_feed().expect("feed");
    bob.join_group("team").await.expect("joined");
    ann.join_group("team").await.expect("joined");
    // cat joins through one session, which closes; its next session, on another node,
    // is found a member when it opens.
    {
        let first = client(&nodes[0], "cat").await;
        first.join_group("team").await.expect("joined");
    }
    let cat = client(&nodes[2], "cat").await;
    let mut cat_feed = cat.group_feed().expect("feed");
    assert_eq!(
        take(&mut bob_feed, 3).await,
        ["joined:bob", "joined:ann", "joined:cat"]
    );
    for i in 0..20 {
        ann.post("team", Payload::text(&format!("m{i}")))
            .await
            .expect("posted");
    }
    ann.post("team", Payload::text("end"))
        .await
        .expect("posted");
    let mut expected: Vec<String> = (0..20).map(|i| format!("post:ann:m{i}")).collect();
    expected.push("post:ann:end".to_owned());
    assert_eq!(take(&mut bob_feed, 21).await, expected);
    assert_eq!(take(&mut cat_feed, 21).await, expected);
    // Once: nothing more came after the last one.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bob_feed.next())
            .await
            .is_err(),
        "a post came twice"
    );
    let history = bob
        .group_messages("team", Since::All, None)
        .await
        .expect("history");
    let seqs: Vec<u64> = history.iter().map(|m| m.seq()).collect();
    assert_eq!(seqs, (1..=21).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_through_one_node_reaches_the_users_sessions_on_the_others() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let ann = client(&nodes[1], "ann").await;
    ann.create_group("crew", "").await.expect("created");
    ann.join_group("crew").await.expect("joined");
    // dan is connected to node 0, where no member of the group is, and joins through
    // node 1.
    let dan_here = client(&nodes[0], "dan").await;
    let mut dan_feed = dan_here.group_feed().expect("feed");
    let dan_there = client(&nodes[1], "dan").await;
    dan_there.join_group("crew").await.expect("joined");
    // Node 0 follows the group for dan once the join reaches it: post until a post
    // arrives there; from the first that does, every later one follows in order.
    let mut first = None;
    let mut sent = 0;
    while first.is_none() && sent < 100 {
        ann.post("crew", Payload::text(&format!("p{sent}")))
            .await
            .expect("posted");
        sent += 1;
        if let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(50), dan_feed.next()).await
        {
            let item = describe(&item);
            if let Some(n) = item.strip_prefix("post:ann:p") {
                first = Some(n.parse::<usize>().expect("a post number"));
            }
        }
    }
    let first = first.expect("dan's session on node 0 never got the group's posts");
    ann.post("crew", Payload::text("last"))
        .await
        .expect("posted");
    let mut expected: Vec<String> = (first + 1..sent)
        .map(|i| format!("post:ann:p{i}"))
        .collect();
    expected.push("post:ann:last".to_owned());
    assert_eq!(take(&mut dan_feed, expected.len()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_members_post_is_forbidden_and_nothing_is_stored() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let ann = client(&nodes[0], "ann").await;
    let dave = client(&nodes[1], "dave").await;
    ann.create_group("team", "").await.expect("created");
    ann.join_group("team").await.expect("joined");
    let mut feed = ann.group_feed().expect("feed");
    assert_eq!(
        error_code(dave.post("team", Payload::text("let me in")).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        error_code(dave.post("nowhere", Payload::text("hello")).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        error_code(dave.group_messages("team", Since::All, None).await),
        Some(ErrorCode::Forbidden),
        "only members read a group's history"
    );
    ann.post("team", Payload::text("mine"))
        .await
        .expect("posted");
    assert_eq!(take(&mut feed, 2).await, ["joined:ann", "post:ann:mine"]);
    let history = ann
        .group_messages("team", Since::All, None)
        .await
        .expect("history");
    let texts: Vec<&str> = history.iter().filter_map(|m| m.text()).collect();
    assert_eq!(texts, ["mine"]);
    assert_eq!(history[0].seq(), 1, "the refused post took no seq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_reach_online_members_in_order_with_posts() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let ann = client(&nodes[0], "ann").await;
    let bob = client(&nodes[1], "bob").await;
    let cat = client(&nodes[2], "cat").await;
    ann.create_group("team", "").await.expect("created");
    let mut ann_feed = ann.group_feed().expect("feed");
    let mut bob_feed = bob.group_feed().expect("feed");
    let mut cat_feed = cat.group_feed().expect("feed");
    ann.join_group("team").await.expect("joined");
    cat.join_group("team").await.expect("joined");
    bob.join_group("team").await.expect("joined");
    ann.post("team", Payload::text("one"))
        .await
        .expect("posted");
    bob.leave_group("team").await.expect("left");
    ann.post("team", Payload::text("two"))
        .await
        .expect("posted");
    bob.join_group("team").await.expect("joined");
    ann.post("team", Payload::text("three"))
        .await
        .expect("posted");
    let seen_by_members = [
        "joined:bob",
        "post:ann:one",
        "left:bob",
        "post:ann:two",
        "joined:bob",
        "post:ann:three",
    ];
    assert_eq!(take(&mut ann_feed, 2).await, ["joined:ann", "joined:cat"]);
    assert_eq!(take(&mut ann_feed, 6).await, seen_by_members);
    assert_eq!(take(&mut cat_feed, 1).await, ["joined:cat"]);
    assert_eq!(take(&mut cat_feed, 6).await, seen_by_members);
    // bob is told of his own leave, and sent nothing while he was out.
    assert_eq!(
        take(&mut bob_feed, 5).await,
        [
            "joined:bob",
            "post:ann:one",
            "left:bob",
            "joined:bob",
            "post:ann:three"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_group_is_announced_to_members_on_every_node() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let ann = client(&nodes[0], "ann").await;
    let bob = client(&nodes[1], "bob").await;
    let cat = client(&nodes[2], "cat").await;
    ann.create_group("team", "").await.expect("created");
    let mut feeds = Vec::new();
    for member in [&ann, &bob, &cat] {
        let feed = member.group_feed().expect("feed");
        member.join_group("team").await.expect("joined");
        feeds.push(feed);
    }
    ann.post("team", Payload::text("last"))
        .await
        .expect("posted");
    cat.delete_group("team").await.expect("deleted");
    // Each member saw the joins after its own, then the post and the deletion.
    for (feed, joins) in feeds.iter_mut().zip([3, 2, 1]) {
        let items = take(feed, joins + 2).await;
        assert_eq!(
            items[joins..],
            ["post:ann:last", "deleted:team"],
            "{items:?}"
        );
    }
    assert!(bob.list_groups().await.expect("listed").is_empty());
    assert_eq!(
        error_code(ann.post("team", Payload::text("gone")).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        error_code(bob.delete_group("team").await),
        Some(ErrorCode::NotFound)
    );
    // The name makes a new, empty group.
    bob.create_group("team", "again").await.expect("created");
    bob.join_group("team").await.expect("joined");
    let history = bob
        .group_messages("team", Since::All, None)
        .await
        .expect("history");
    assert!(history.is_empty());
    assert_eq!(take(&mut feeds[1], 1).await, ["joined:bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_history_reads_alike_from_any_node() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let members = [
        client(&nodes[0], "ann").await,
        client(&nodes[1], "bob").await,
        client(&nodes[2], "cat").await,
    ];
    members[0].create_group("team", "").await.expect("created");
    for member in &members {
        member.join_group("team").await.expect("joined");
    }
    for i in 0..100 {
        members[i % 3]
            .post("team", Payload::text(&format!("m{i}")))
            .await
            .expect("posted");
    }
    let mut answers = Vec::new();
    for member in &members {
        let all = member
            .group_messages("team", Since::All, None)
            .await
            .expect("history");
        assert_eq!(all.len(), 100);
        let texts: Vec<String> = all
            .iter()
            .map(|m| format!("{}:{}", m.seq(), m.text().unwrap_or_default()))
            .collect();
        answers.push(texts);
        let last = member
            .group_messages("team", Since::All, Some(3))
            .await
            .expect("history");
        let seqs: Vec<u64> = last.iter().map(|m| m.seq()).collect();
        assert_eq!(seqs, [98, 99, 100]);
        let since = member
            .group_messages("team", Since::Seq(91), Some(5))
            .await
            .expect("history");
        let seqs: Vec<u64> = since.iter().map(|m| m.seq()).collect();
        assert_eq!(seqs, [91, 92, 93, 94, 95]);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert_eq!(answers[0][99], "100:m99");
    assert_eq!(
        error_code(members[1].group_messages("nothing", Since::All, None).await),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_post_is_accepted_after_its_senders_leave_was_acknowledged() {
    const ROUNDS: usize = 200;
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let poster = client(&nodes[0], "racer").await;
    let leaver = client(&nodes[1], "racer").await;
    let watcher = client(&nodes[2], "watcher").await;
    poster.create_group("race", "").await.expect("created");
    watcher.join_group("race").await.expect("joined");
    // The watcher's feed is read as it comes, so that none of it is dropped.
    let mut feed = watcher.group_feed().expect("feed");
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(item) = feed.next().await {
            let done = describe(&item) == "post:watcher:done";
            if seen_tx.send(describe(&item)).is_err() || done {
                return;
            }
        }
    });
    let mut accepted = 0usize;
    for round in 0..ROUNDS {
        leaver.join_group("race").await.expect("joined");
        // Posts keep coming while the leave is made.
        let posting = {
            let poster = poster.clone();
            tokio::spawn(async move {
                let mut accepted = 0usize;
                for i in 0.. {
                    let text = format!("r{round}p{i}");
                    match poster.post("race", Payload::text(&text)).await {
                        Ok(_) => accepted += 1,
                        Err(error) => {
                            assert_eq!(error.code(), Some(ErrorCode::Forbidden), "{error}");
                            return accepted;
                        }
                    }
                }
                accepted
            })
        };
        tokio::time::sleep(Duration::from_micros((round as u64 % 7) * 300)).await;
        leaver.leave_group("race").await.expect("left");
        // Once the leave is acknowledged, no post of the user is accepted.
        assert_eq!(
            error_code(poster.post("race", Payload::text("late")).await),
            Some(ErrorCode::Forbidden),
            "round {round}: a post was accepted after the leave"
        );
        accepted += tokio::time::timeout(WAIT, posting)
            .await
            .expect("the poster stops")
            .expect("the poster task");
    }
    watcher.join_group("race").await.expect("already a member");
    watcher
        .post("race", Payload::text("done"))
        .await
        .expect("posted");
    // In the order every node saw: no post of the user between its leave and its next
    // join, and every accepted post seen once.
    let mut member = false;
    let mut posts = 0usize;
    let mut rounds = 0usize;
    loop {
        let item = tokio::time::timeout(WAIT, seen.recv())
            .await
            .expect("the watcher's feed within the wait")
            .expect("the watcher's feed goes on");
        match item.as_str() {
            "joined:racer" => member = true,
            "left:racer" => {
                member = false;
                rounds += 1;
            }
            "post:watcher:done" => break,
            "joined:watcher" => {}
            post if post.starts_with("post:racer:") => {
                assert!(member, "{post} came after the user's leave");
                posts += 1;
            }
            other => panic!("unexpected item {other}"),
        }
    }
    assert_eq!(rounds, ROUNDS);
    assert!(
        accepted > 0,
        "the race was run: posts were accepted before leaves"
    );
    assert_eq!(posts, accepted);
    reader.await.expect("reader task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_made_while_the_feed_was_cut_are_delivered_in_order_once_it_is_back() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let ann = client(&nodes[0], "ann").await;
    let bob = client(&nodes[1], "bob").await;
    ann.create_group("team", "").await.expect("created");
    ann.join_group("team").await.expect("joined");
    let mut feed = bob.group_feed().expect("feed");
    bob.join_group("team").await.expect("joined");
    ann.post("team", Payload::text("m1")).await.expect("posted");
    assert_eq!(take(&mut feed, 2).await, ["joined:bob", "post:ann:m1"]);
    redis.kill_pubsub_clients().expect("client kill");
    for i in 2..=20 {
        ann.post("team", Payload::text(&format!("m{i}")))
            .await
            .expect("posted");
    }
    let expected: Vec<String> = (2..=20).map(|i| format!("post:ann:m{i}")).collect();
    assert_eq!(take(&mut feed, 19).await, expected);
    ann.post("team", Payload::text("end"))
        .await
        .expect("posted");
    assert_eq!(take(&mut feed, 1).await, ["post:ann:end"], "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_missed_before_any_reached_a_newly_following_node_are_read_back() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let ann = client(&nodes[0], "ann").await;
    let bob = client(&nodes[1], "bob").await;
    ann.create_group("fresh", "").await.expect("created");
    ann.join_group("fresh").await.expect("joined");
    ann.post("fresh", Payload::text("before"))
        .await
        .expect("posted");
    // Node 1 follows the group afresh for bob, and no post has reached it yet when its
    // feed is cut.
    let mut feed = bob.group_feed().expect("feed");
    bob.join_group("fresh").await.expect("joined");
    assert_eq!(take(&mut feed, 1).await, ["joined:bob"]);
    redis.kill_pubsub_clients().expect("client kill");
    for i in 1..=20 {
        ann.post("fresh", Payload::text(&format!("m{i}")))
            .await
            .expect("posted");
    }
    let expected: Vec<String> = (1..=20).map(|i| format!("post:ann:m{i}")).collect();
    assert_eq!(take(&mut feed, 20).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_are_online_with_a_session_on_any_node() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let ann = client(&nodes[0], "ann").await;
    let bob = client(&nodes[1], "bob").await;
    ann.create_group("desk", "").await.expect("created");
    ann.join_group("desk").await.expect("joined");
    bob.join_group("desk").await.expect("joined");
    {
        let cat = client(&nodes[1], "cat").await;
        cat.join_group("desk").await.expect("joined");
        cat.close().await.expect("closed");
    }
    // The directory is written in batches soon after a session opens or closes: wait
    // for the listing from node 0 to show bob (on node 1) online and cat gone.
    let want = vec![
        ("ann".to_owned(), true),
        ("bob".to_owned(), true),
        ("cat".to_owned(), false),
    ];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let members: Vec<(String, bool)> = ann
            .group_members("desk")
            .await
            .expect("members")
            .into_iter()
            .map(|member| (member.name.to_string(), member.online))
            .collect();
        if members == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members from node 0: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bob.close().await.expect("closed");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let bob_online = ann
            .group_members("desk")
            .await
            .expect("members")
            .iter()
            .any(|member| member.name.as_str() == "bob" && member.online);
        if !bob_online {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob still online after closing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
