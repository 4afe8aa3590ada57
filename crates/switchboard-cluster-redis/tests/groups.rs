//! Groups on a real Redis: the directory, members and their events, member-only posts
//! (atomic with a racing leave), deletion of everything a group owns, reads in every
//! form, and the epoch and generation rules.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use switchboard_cluster_redis::Keys;
use switchboard_cluster_redis::groups::{
    self, Appended, GroupLive, GroupPost, JoinOutcome, LeaveOutcome, PostError, Query,
};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};

/// Bound of every wait in these tests; generous for a busy machine.
const WAIT: Duration = Duration::from_secs(30);
const GENERATION: u64 = 3;
const EPOCH: u64 = 0xF_1234_5678_9ABC; // above 2^32, below 2^52

async fn connect(redis: &RedisProc) -> MultiplexedConnection {
    let client = redis::Client::open(redis.url()).expect("url");
    tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .expect("connect in time")
        .expect("connect")
}

/// The group's topic, subscribed: every message published on it from now on, in order.
async fn subscribe(redis: &RedisProc, topic: &str) -> redis::aio::PubSubStream {
    let client = redis::Client::open(redis.url()).expect("url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub.subscribe(topic).await.expect("subscribe");
    pubsub.into_on_message()
}

async fn next_live(stream: &mut redis::aio::PubSubStream) -> GroupLive {
    let message = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a message in time")
        .expect("the subscription is open");
    groups::decode(&Bytes::copy_from_slice(message.get_payload_bytes())).expect("decodes")
}

fn post<'a>(name: &'a str, user: &'a str, payload: &'a [u8], now_us: u64) -> GroupPost<'a> {
    GroupPost {
        name,
        cid: 0,
        sender_user: user,
        generation: GENERATION,
        new_epoch: EPOCH + 1,
        now_us,
        max_len: 0,
        id: id_of(payload),
        payload,
    }
}

/// A message id derived from the payload, so that tests can find posts by id.
fn id_of(payload: &[u8]) -> [u8; 16] {
    let mut id = [0xA5; 16];
    for (slot, byte) in id.iter_mut().zip(payload) {
        *slot = *byte;
    }
    id
}

async fn start() -> (RedisProc, MultiplexedConnection, Keys) {
    let redis = RedisProc::start(RedisOptions::default()).expect("redis starts");
    let conn = connect(&redis).await;
    (redis, conn, Keys::default())
}

#[tokio::test]
async fn groups_are_created_listed_in_name_order_and_deleted() {
    let (_redis, mut conn, keys) = start().await;
    let (made, created) = groups::create(&mut conn, &keys, "b", "bee", "ann", EPOCH, 1)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(made.description, "bee");
    assert_eq!(made.creator, "ann");
    assert_eq!(made.epoch, EPOCH);
    assert_eq!((made.top_seq, made.member_count), (0, 0));
    assert!(made.cid > 0 && made.cid < 1 << 52);

    // Creating it again changes nothing and gives the existing group back.
    let (again, created) = groups::create(&mut conn, &keys, "b", "other", "bob", 9, 1)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, made);
    assert_eq!(
        groups::meta(&mut conn, &keys, "b").await.unwrap(),
        Some(made.clone())
    );

    for name in ["c", "a{x}", "a"] {
        groups::create(&mut conn, &keys, name, "", "", EPOCH, 1)
            .await
            .unwrap();
    }
    let first = groups::list(&mut conn, &keys, None, 2).await.unwrap();
    let names: Vec<&str> = first.groups.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["a", "a{x}"]);
    assert_eq!(first.next.as_deref(), Some("a{x}"));
    let second = groups::list(&mut conn, &keys, first.next.as_deref(), 2)
        .await
        .unwrap();
    let names: Vec<&str> = second
        .groups
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(second.groups[0].1, made);
    let third = groups::list(&mut conn, &keys, second.next.as_deref(), 2)
        .await
        .unwrap();
    assert!(third.groups.is_empty() && third.next.is_none());

    assert_eq!(
        groups::delete(&mut conn, &keys, "b").await.unwrap(),
        Some(made.cid)
    );
    assert_eq!(groups::delete(&mut conn, &keys, "b").await.unwrap(), None);
    assert_eq!(groups::meta(&mut conn, &keys, "b").await.unwrap(), None);
    let all = groups::list(&mut conn, &keys, None, 10).await.unwrap();
    let names: Vec<&str> = all.groups.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["a", "a{x}", "c"]);
    assert!(all.next.is_none());

    // The name may be created again: a new incarnation, empty.
    let (remade, created) = groups::create(&mut conn, &keys, "b", "new", "cy", EPOCH + 7, 1)
        .await
        .unwrap();
    assert!(created);
    assert_ne!(remade.cid, made.cid);
    assert_eq!((remade.top_seq, remade.epoch), (0, EPOCH + 7));
}

#[tokio::test]
async fn joins_leaves_and_posts_reach_the_topic_in_order() {
    let (redis, mut conn, keys) = start().await;
    let mut topic = subscribe(&redis, &keys.group_topic("g")).await;
    assert_eq!(
        groups::join(&mut conn, &keys, "g", "ann").await.unwrap(),
        JoinOutcome::NoSuchGroup
    );
    assert_eq!(
        groups::leave(&mut conn, &keys, "g", "ann").await.unwrap(),
        LeaveOutcome::NoSuchGroup
    );
    groups::create(&mut conn, &keys, "g", "", "ann", EPOCH, GENERATION)
        .await
        .unwrap();
    assert_eq!(
        groups::join(&mut conn, &keys, "g", "ann").await.unwrap(),
        JoinOutcome::Joined
    );
    assert_eq!(
        groups::join(&mut conn, &keys, "g", "ann").await.unwrap(),
        JoinOutcome::AlreadyMember
    );
    let appended = groups::post(&mut conn, &keys, &post("g", "ann", b"hello", 1000))
        .await
        .unwrap();
    assert_eq!(
        appended,
        Appended {
            seq: 1,
            epoch: EPOCH,
            time_us: 1000,
            new_epoch: false
        }
    );
    assert_eq!(
        groups::join(&mut conn, &keys, "g", "bob").await.unwrap(),
        JoinOutcome::Joined
    );
    assert_eq!(
        groups::leave(&mut conn, &keys, "g", "ann").await.unwrap(),
        LeaveOutcome::Left
    );
    assert_eq!(
        groups::leave(&mut conn, &keys, "g", "ann").await.unwrap(),
        LeaveOutcome::NotMember
    );
    groups::post(&mut conn, &keys, &post("g", "bob", b"bye", 2000))
        .await
        .unwrap();

    // Only the changes, in the order they were made, the posts among them.
    assert_eq!(next_live(&mut topic).await, GroupLive::Joined("ann".into()));
    assert_eq!(
        next_live(&mut topic).await,
        GroupLive::Post {
            seq: 1,
            epoch: EPOCH,
            time_us: 1000,
            payload: Bytes::from_static(b"hello")
        }
    );
    assert_eq!(next_live(&mut topic).await, GroupLive::Joined("bob".into()));
    assert_eq!(next_live(&mut topic).await, GroupLive::Left("ann".into()));
    assert!(matches!(
        next_live(&mut topic).await,
        GroupLive::Post { seq: 2, ref payload, .. } if payload == "bye"
    ));

    assert!(
        groups::is_member(&mut conn, &keys, "g", "bob")
            .await
            .unwrap()
    );
    assert!(
        !groups::is_member(&mut conn, &keys, "g", "ann")
            .await
            .unwrap()
    );
    assert_eq!(
        groups::groups_of(&mut conn, &keys, "bob").await.unwrap(),
        ["g"]
    );
    assert!(
        groups::groups_of(&mut conn, &keys, "ann")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_non_member_post_is_refused_and_nothing_is_appended() {
    let (redis, mut conn, keys) = start().await;
    let (made, _) = groups::create(&mut conn, &keys, "g", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    let mut topic = subscribe(&redis, &keys.group_topic("g")).await;
    let refused = groups::post(&mut conn, &keys, &post("g", "eve", b"spam", 1)).await;
    assert!(matches!(refused, Err(PostError::NotMember)), "{refused:?}");
    let meta = groups::meta(&mut conn, &keys, "g").await.unwrap().unwrap();
    assert_eq!(meta.top_seq, 0);
    let stream_len: u64 = redis.command(&["XLEN", &keys.group_stream("g")]).unwrap();
    assert_eq!(stream_len, 0);

    // The next thing on the topic is a member's join, not the refused post.
    groups::join(&mut conn, &keys, "g", "ann").await.unwrap();
    assert_eq!(next_live(&mut topic).await, GroupLive::Joined("ann".into()));

    // A post naming another incarnation, or a group that is gone, is Deleted.
    let mut stale = post("g", "ann", b"x", 1);
    stale.cid = made.cid + 1;
    let deleted = groups::post(&mut conn, &keys, &stale).await;
    assert!(matches!(deleted, Err(PostError::Deleted)), "{deleted:?}");
    stale.cid = made.cid;
    groups::post(&mut conn, &keys, &stale).await.unwrap();
    groups::delete(&mut conn, &keys, "g").await.unwrap();
    let gone = groups::post(&mut conn, &keys, &post("g", "ann", b"x", 1)).await;
    assert!(matches!(gone, Err(PostError::Deleted)), "{gone:?}");
}

/// A leave and a post of the same user sent at once from two connections, 1000 times
/// (which is sent first alternates, and the two tasks run on two threads): in the
/// topic's order, no post of the user follows its leave until it joins again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_racing_with_its_senders_leave_is_never_after_the_leave() {
    const ROUNDS: usize = 1000;
    let (redis, mut conn, keys) = start().await;
    let poster = connect(&redis).await;
    let leaver = connect(&redis).await;
    groups::create(&mut conn, &keys, "g", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    let mut topic = subscribe(&redis, &keys.group_topic("g")).await;
    let mut accepted = 0;
    for round in 0..ROUNDS {
        groups::join(&mut conn, &keys, "g", "ann").await.unwrap();
        let posting = {
            let (mut poster, keys) = (poster.clone(), keys.clone());
            async move {
                let payload = round.to_string();
                groups::post(&mut poster, &keys, &post("g", "ann", payload.as_bytes(), 1)).await
            }
        };
        let leaving = {
            let (mut leaver, keys) = (leaver.clone(), keys.clone());
            async move { groups::leave(&mut leaver, &keys, "g", "ann").await }
        };
        let (posted, left) = if round % 2 == 0 {
            let posted = tokio::spawn(posting);
            let left = tokio::spawn(leaving);
            (posted, left)
        } else {
            let left = tokio::spawn(leaving);
            let posted = tokio::spawn(posting);
            (posted, left)
        };
        let (posted, left) = tokio::time::timeout(WAIT, futures::future::join(posted, left))
            .await
            .expect("both answered in time");
        assert_eq!(left.unwrap().unwrap(), LeaveOutcome::Left);
        match posted.unwrap() {
            Ok(_) => accepted += 1,
            Err(PostError::NotMember) => {}
            Err(other) => panic!("round {round}: {other}"),
        }
    }
    println!("{accepted} of {ROUNDS} racing posts were accepted");
    // Both sides of the race were exercised.
    assert!(accepted > 0 && accepted < ROUNDS, "{accepted} accepted");

    let mut member = false;
    let mut posts_seen = 0;
    for _ in 0..ROUNDS * 2 + accepted {
        match next_live(&mut topic).await {
            GroupLive::Joined(user) if user == "ann" => member = true,
            GroupLive::Left(user) if user == "ann" => member = false,
            GroupLive::Post { seq, .. } => {
                assert!(member, "post {seq} follows its sender's leave");
                posts_seen += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(posts_seen, accepted);
    let meta = groups::meta(&mut conn, &keys, "g").await.unwrap().unwrap();
    assert_eq!(meta.top_seq, accepted as u64);
}

#[tokio::test]
async fn delete_removes_everything_the_group_owns() {
    let (redis, mut conn, keys) = start().await;
    let (made, _) = groups::create(&mut conn, &keys, "g", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    groups::create(&mut conn, &keys, "other", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    for user in ["ann", "bob", "c{y}"] {
        groups::join(&mut conn, &keys, "g", user).await.unwrap();
    }
    groups::join(&mut conn, &keys, "other", "ann")
        .await
        .unwrap();
    groups::post(&mut conn, &keys, &post("g", "bob", b"x", 1))
        .await
        .unwrap();
    let mut topic = subscribe(&redis, &keys.group_topic("g")).await;

    assert_eq!(
        groups::delete(&mut conn, &keys, "g").await.unwrap(),
        Some(made.cid)
    );
    assert_eq!(
        next_live(&mut topic).await,
        GroupLive::Deleted { cid: made.cid }
    );
    for key in [
        keys.group_meta("g"),
        keys.group_stream("g"),
        keys.group_members("g"),
    ] {
        let exists: bool = redis.command(&["EXISTS", &key]).unwrap();
        assert!(!exists, "{key} is left");
    }
    assert_eq!(
        groups::groups_of(&mut conn, &keys, "ann").await.unwrap(),
        ["other"]
    );
    for user in ["bob", "c{y}"] {
        let exists: bool = redis.command(&["EXISTS", &keys.user_groups(user)]).unwrap();
        assert!(!exists, "{user} still has groups");
    }
    assert_eq!(
        groups::members(&mut conn, &keys, "g", None, 10)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        groups::read(&mut conn, &keys, "g", Query::SinceSeq(1), 10, GENERATION, 1)
            .await
            .unwrap(),
        None
    );
    let listed = groups::list(&mut conn, &keys, None, 10).await.unwrap();
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].0, "other");
}

/// Users join while the group is deleted: whatever the interleaving, no user is left
/// with the deleted group in its reverse index.
#[tokio::test]
async fn delete_racing_with_joins_leaves_no_reverse_index_entry() {
    let (redis, mut conn, keys) = start().await;
    let mut joiner = connect(&redis).await;
    for round in 0..50 {
        groups::create(&mut conn, &keys, "g", "", "", EPOCH, GENERATION)
            .await
            .unwrap();
        let users: Vec<String> = (0..20).map(|n| format!("u{round}-{n}")).collect();
        let joins = async {
            for user in &users {
                groups::join(&mut joiner, &keys, "g", user).await.unwrap();
            }
        };
        let (_, deleted) = tokio::time::timeout(
            WAIT,
            futures::future::join(joins, groups::delete(&mut conn, &keys, "g")),
        )
        .await
        .expect("in time");
        assert!(deleted.unwrap().is_some());
        // Joins after the delete found no group; joins before it were undone by it.
        for user in &users {
            assert!(
                groups::groups_of(&mut conn, &keys, user)
                    .await
                    .unwrap()
                    .is_empty(),
                "round {round}: {user} keeps the deleted group"
            );
        }
    }
}

#[tokio::test]
async fn members_page_in_name_order() {
    let (_redis, mut conn, keys) = start().await;
    groups::create(&mut conn, &keys, "g", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    let mut users: Vec<String> = (0..25).map(|n| format!("user{n:02}")).collect();
    users.push("Zed".to_owned());
    users.push("a(b".to_owned());
    for user in users.iter().rev() {
        groups::join(&mut conn, &keys, "g", user).await.unwrap();
    }
    users.sort();
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = groups::members(&mut conn, &keys, "g", after.as_deref(), 10)
            .await
            .unwrap()
            .expect("the group exists");
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        listed.extend(page);
    }
    assert_eq!(listed, users);
    let meta = groups::meta(&mut conn, &keys, "g").await.unwrap().unwrap();
    assert_eq!(meta.member_count, users.len() as u64);
    assert_eq!(
        groups::members(&mut conn, &keys, "none", None, 10)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn reads_in_every_form_and_by_pages() {
    let (_redis, mut conn, keys) = start().await;
    groups::create(&mut conn, &keys, "g", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    groups::join(&mut conn, &keys, "g", "ann").await.unwrap();
    // Times go 100, 100, 200, 200, ...: equal times; the node's clock goes back at 7.
    for n in 1..=20u64 {
        let payload = format!("m{n}");
        let now = if n == 7 { 50 } else { n.div_ceil(2) * 100 };
        let mut sent = post("g", "ann", payload.as_bytes(), now);
        sent.max_len = 15;
        let appended = groups::post(&mut conn, &keys, &sent).await.unwrap();
        assert_eq!(appended.seq, n);
        // Time never goes back, whatever the node's clock says.
        let expected = if n == 7 { 300 } else { now };
        assert_eq!(appended.time_us, expected);
    }
    let read = |query, limit| {
        let mut conn = conn.clone();
        let keys = keys.clone();
        async move {
            groups::read(&mut conn, &keys, "g", query, limit, GENERATION, 1)
                .await
                .unwrap()
                .expect("the group exists")
        }
    };
    let seqs = |page: &groups::Page| page.entries.iter().map(|e| e.seq).collect::<Vec<_>>();

    // Exactly 15 kept: 6..=20.
    let all = read(Query::SinceSeq(0), 100).await;
    assert_eq!(seqs(&all), (6..=20).collect::<Vec<_>>());
    assert_eq!((all.first_seq, all.top_seq, all.epoch), (6, 20, EPOCH));
    let entry = &all.entries[0];
    assert_eq!(entry.payload, "m6");
    assert_eq!(entry.id, id_of(b"m6"));
    assert_eq!(entry.time_us, 300);

    // Paging by seq until empty.
    let mut paged = Vec::new();
    let mut next = 1;
    loop {
        let page = read(Query::SinceSeq(next), 4).await;
        if page.entries.is_empty() {
            break;
        }
        assert!(page.entries.len() <= 4);
        next = page.entries.last().unwrap().seq + 1;
        paged.extend(seqs(&page));
    }
    assert_eq!(paged, (6..=20).collect::<Vec<_>>());

    assert_eq!(seqs(&read(Query::SinceSeq(18), 100).await), [18, 19, 20]);
    assert!(read(Query::SinceSeq(21), 100).await.entries.is_empty());
    assert_eq!(seqs(&read(Query::Last(3), 100).await), [18, 19, 20]);
    assert_eq!(seqs(&read(Query::Last(5), 2).await), [16, 17]);
    assert_eq!(seqs(&read(Query::Last(100), 3).await), [6, 7, 8]);
    assert!(read(Query::Last(0), 3).await.entries.is_empty());
    assert_eq!(seqs(&read(Query::Latest, 10).await), [20]);
    // Times: 6→300, 7→300, 8→400, 9→500, 10→500, ...
    assert_eq!(seqs(&read(Query::SinceTime(300), 3).await), [6, 7, 8]);
    assert_eq!(seqs(&read(Query::SinceTime(400), 3).await), [8, 9, 10]);
    assert_eq!(seqs(&read(Query::SinceTime(350), 2).await), [8, 9]);
    assert_eq!(seqs(&read(Query::SinceTime(401), 2).await), [9, 10]);
    assert_eq!(seqs(&read(Query::SinceTime(0), 2).await), [6, 7]);
    assert_eq!(seqs(&read(Query::SinceTime(1000), 5).await), [19, 20]);
    assert!(read(Query::SinceTime(1001), 5).await.entries.is_empty());
    assert_eq!(seqs(&read(Query::ById(id_of(b"m9")), 5).await), [9]);
    assert_eq!(
        read(Query::ById(id_of(b"m9")), 5).await.entries[0].payload,
        "m9"
    );
    assert!(read(Query::ById(id_of(b"m2")), 5).await.entries.is_empty());
    let meta_only = read(Query::SinceSeq(0), 0).await;
    assert!(meta_only.entries.is_empty());
    assert_eq!((meta_only.first_seq, meta_only.top_seq), (6, 20));

    // A group with no post.
    groups::create(&mut conn, &keys, "empty", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    for query in [
        Query::SinceSeq(0),
        Query::SinceTime(0),
        Query::Last(5),
        Query::Latest,
        Query::ById([0; 16]),
    ] {
        let page = groups::read(&mut conn, &keys, "empty", query, 10, GENERATION, 1)
            .await
            .unwrap()
            .unwrap();
        assert!(page.entries.is_empty());
        assert_eq!((page.first_seq, page.top_seq), (0, 0));
    }
}

#[tokio::test]
async fn by_id_finds_a_post_beyond_the_first_batch_scanned() {
    let (_redis, mut conn, keys) = start().await;
    groups::create(&mut conn, &keys, "g", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    groups::join(&mut conn, &keys, "g", "ann").await.unwrap();
    for n in 0..300u32 {
        let payload = format!("p{n:03}");
        groups::post(&mut conn, &keys, &post("g", "ann", payload.as_bytes(), 1))
            .await
            .unwrap();
    }
    let page = groups::read(
        &mut conn,
        &keys,
        "g",
        Query::ById(id_of(b"p002")),
        1,
        GENERATION,
        1,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(
        (page.entries[0].seq, &page.entries[0].payload[..]),
        (3, &b"p002"[..])
    );
}

#[tokio::test]
async fn a_newer_generation_starts_a_new_epoch_and_an_older_one_is_refused() {
    let (_redis, mut conn, keys) = start().await;
    groups::create(&mut conn, &keys, "g", "", "", EPOCH, GENERATION)
        .await
        .unwrap();
    groups::join(&mut conn, &keys, "g", "ann").await.unwrap();
    groups::post(&mut conn, &keys, &post("g", "ann", b"1", 1))
        .await
        .unwrap();

    // A node with a newer generation: a new epoch, the seqs go on.
    let mut newer = post("g", "ann", b"2", 1);
    newer.generation = GENERATION + 1;
    newer.new_epoch = EPOCH + 100;
    let appended = groups::post(&mut conn, &keys, &newer).await.unwrap();
    assert_eq!((appended.seq, appended.epoch), (2, EPOCH + 100));
    assert!(appended.new_epoch);
    // Once only: the same generation again keeps the epoch.
    newer.new_epoch = EPOCH + 200;
    let appended = groups::post(&mut conn, &keys, &newer).await.unwrap();
    assert_eq!((appended.seq, appended.epoch), (3, EPOCH + 100));
    assert!(!appended.new_epoch);

    // A node with an older generation may not post, and nothing is appended.
    let refused = groups::post(&mut conn, &keys, &post("g", "ann", b"old", 1)).await;
    assert!(
        matches!(refused, Err(PostError::StaleGeneration { stored }) if stored == GENERATION + 1),
        "{refused:?}"
    );
    // It may read, and sees the stored epoch unchanged.
    let page = groups::read(&mut conn, &keys, "g", Query::SinceSeq(0), 10, GENERATION, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((page.top_seq, page.epoch), (3, EPOCH + 100));

    // A read with a newer generation starts the next epoch, as a post would.
    let page = groups::read(
        &mut conn,
        &keys,
        "g",
        Query::Latest,
        10,
        GENERATION + 2,
        EPOCH + 300,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((page.top_seq, page.epoch), (3, EPOCH + 300));
    let meta = groups::meta(&mut conn, &keys, "g").await.unwrap().unwrap();
    assert_eq!(meta.epoch, EPOCH + 300);
}
