//! The channel data layer against a real Redis: appends assign seqs, times and epochs
//! as promised, retention is exact, reads see consistent snapshots, deletes and
//! restarts start new incarnations, and live payloads reach subscribers.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use switchboard_cluster_redis::channels::{
    self, Append, AppendError, Appended, Entry, Page, Query,
};
use switchboard_cluster_redis::live::{self, Live};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};
use switchboard_cluster_redis::{BackplaneError, Keys};

/// The bound on every test's run: far above what any takes.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

const OPTIONS: &[u8] = b"options\0frame";
const GENERATION: u64 = 1;
const EPOCH: u64 = (1 << 52) - 3;
const NOW: u64 = 1_764_000_000_000_000;

async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test finished in time")
}

struct Fixture {
    redis: RedisProc,
    conn: MultiplexedConnection,
    keys: Keys,
}

impl Fixture {
    async fn start() -> Fixture {
        let redis = RedisProc::start(RedisOptions::default()).expect("redis starts");
        let conn = connect(&redis).await;
        Fixture {
            redis,
            conn,
            keys: Keys::new("test:"),
        }
    }

    async fn append(&mut self, message: &Append<'_>) -> Result<Appended, AppendError> {
        channels::append(&mut self.conn, &self.keys, message).await
    }

    async fn appended(&mut self, message: &Append<'_>) -> Appended {
        self.append(message).await.expect("appended")
    }

    async fn read(&mut self, name: &str, query: Query, limit: u64) -> Option<Page> {
        channels::read(
            &mut self.conn,
            &self.keys,
            name,
            query,
            limit,
            GENERATION,
            EPOCH,
        )
        .await
        .expect("read")
    }

    async fn page(&mut self, name: &str, query: Query, limit: u64) -> Page {
        self.read(name, query, limit)
            .await
            .expect("the channel exists")
    }

    async fn seqs(&mut self, name: &str, query: Query, limit: u64) -> Vec<u64> {
        seqs_of(&self.page(name, query, limit).await.entries)
    }

    async fn meta_field(&mut self, name: &str, field: &str) -> Option<String> {
        redis::cmd("HGET")
            .arg(self.keys.channel_meta(name))
            .arg(field)
            .query_async(&mut self.conn)
            .await
            .expect("hget")
    }

    async fn stream_len(&mut self, name: &str) -> u64 {
        redis::cmd("XLEN")
            .arg(self.keys.channel_stream(name))
            .query_async(&mut self.conn)
            .await
            .expect("xlen")
    }
}

async fn connect(redis: &RedisProc) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connects")
}

/// A message of `name` at `NOW` with no retention limits and no tags.
fn message(name: &str) -> Append<'_> {
    Append {
        name,
        cid: 0,
        default_options: OPTIONS,
        generation: GENERATION,
        new_epoch: EPOCH,
        now_us: NOW,
        max_len: 0,
        max_bytes: 0,
        id: [0; 16],
        payload: b"payload",
        body_len: 7,
        tags: &[],
        tag_max_len: 0,
    }
}

fn id_of(n: u64) -> [u8; 16] {
    let mut id = [0xa5; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

fn seqs_of(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

#[tokio::test]
async fn seqs_count_from_one_and_the_reply_matches_the_stream() {
    within(async {
        let mut fx = Fixture::start().await;
        let (meta, created) =
            channels::create(&mut fx.conn, &fx.keys, "news", OPTIONS, EPOCH, GENERATION)
                .await
                .expect("create");
        assert!(created);
        assert_eq!(
            (meta.epoch, meta.top_seq, &meta.options[..]),
            (EPOCH, 0, OPTIONS)
        );
        let mut replies = Vec::new();
        for n in 1..=3u64 {
            let payload = format!("frame {n}");
            let appended = fx
                .appended(&Append {
                    cid: meta.cid,
                    now_us: NOW + n,
                    id: id_of(n),
                    payload: payload.as_bytes(),
                    ..message("news")
                })
                .await;
            assert_eq!(
                appended,
                Appended {
                    seq: n,
                    epoch: EPOCH,
                    time_us: NOW + n,
                    cid: meta.cid,
                    created: false,
                    new_epoch: false,
                }
            );
            replies.push(appended);
        }
        let page = fx.page("news", Query::SinceSeq(0), 100).await;
        assert_eq!((page.epoch, page.first_seq, page.top_seq), (EPOCH, 1, 3));
        let expected: Vec<Entry> = replies
            .iter()
            .map(|reply| Entry {
                seq: reply.seq,
                time_us: reply.time_us,
                id: id_of(reply.seq),
                payload: Bytes::from(format!("frame {}", reply.seq)),
            })
            .collect();
        assert_eq!(page.entries, expected);
        assert_eq!(fx.seqs("news", Query::SinceTime(NOW + 2), 10).await, [2, 3]);
        assert_eq!(
            fx.seqs("news", Query::SinceTime(u64::MAX), 10).await,
            Vec::<u64>::new()
        );
        assert_eq!(
            fx.seqs("news", Query::SinceSeq(u64::MAX), 10).await,
            Vec::<u64>::new()
        );
        let meta = channels::meta(&mut fx.conn, &fx.keys, "news")
            .await
            .expect("meta")
            .expect("exists");
        assert_eq!(meta.top_seq, 3);
        assert_eq!(fx.meta_field("news", "b").await.as_deref(), Some("21"));
    })
    .await;
}

#[tokio::test]
async fn create_returns_an_existing_channel_unchanged() {
    within(async {
        let mut fx = Fixture::start().await;
        let (first, created) =
            channels::create(&mut fx.conn, &fx.keys, "c", OPTIONS, EPOCH, GENERATION)
                .await
                .expect("create");
        assert!(created);
        fx.appended(&message("c")).await;
        let (again, created) =
            channels::create(&mut fx.conn, &fx.keys, "c", b"other", EPOCH - 1, GENERATION)
                .await
                .expect("create");
        assert!(!created);
        assert_eq!(
            again,
            channels::ChannelMeta {
                top_seq: 1,
                ..first
            }
        );
        assert_eq!(&again.options[..], OPTIONS);
    })
    .await;
}

#[tokio::test]
async fn max_len_is_exact_and_its_bytes_are_released() {
    within(async {
        let mut fx = Fixture::start().await;
        for _ in 0..10 {
            fx.appended(&Append {
                max_len: 3,
                ..message("c")
            })
            .await;
        }
        let page = fx.page("c", Query::SinceSeq(0), 100).await;
        assert_eq!(seqs_of(&page.entries), [8, 9, 10]);
        assert_eq!((page.first_seq, page.top_seq), (8, 10));
        assert_eq!(fx.stream_len("c").await, 3);
        assert_eq!(fx.meta_field("c", "b").await.as_deref(), Some("21"));
        // Past what Redis counts in: no limit in practice.
        fx.appended(&Append {
            max_len: u64::MAX,
            ..message("c")
        })
        .await;
        assert_eq!(fx.seqs("c", Query::SinceSeq(0), 100).await, [8, 9, 10, 11]);
    })
    .await;
}

#[tokio::test]
async fn the_byte_budget_drops_the_oldest_but_never_the_newest() {
    within(async {
        let mut fx = Fixture::start().await;
        for _ in 0..5 {
            fx.appended(&Append {
                max_bytes: 100,
                body_len: 40,
                ..message("c")
            })
            .await;
        }
        assert_eq!(fx.seqs("c", Query::SinceSeq(0), 100).await, [4, 5]);
        assert_eq!(fx.meta_field("c", "b").await.as_deref(), Some("80"));
        // One message over the whole budget stays, alone.
        fx.appended(&Append {
            max_bytes: 100,
            body_len: 500,
            ..message("c")
        })
        .await;
        assert_eq!(fx.seqs("c", Query::SinceSeq(0), 100).await, [6]);
        assert_eq!(fx.meta_field("c", "b").await.as_deref(), Some("500"));
        fx.appended(&Append {
            max_bytes: 100,
            body_len: 10,
            ..message("c")
        })
        .await;
        assert_eq!(fx.seqs("c", Query::SinceSeq(0), 100).await, [7]);
        assert_eq!(fx.meta_field("c", "b").await.as_deref(), Some("10"));
    })
    .await;
}

#[tokio::test]
async fn time_never_goes_back_when_the_clock_does() {
    within(async {
        let mut fx = Fixture::start().await;
        let mut times = Vec::new();
        for now_us in [NOW, NOW - 500, NOW + 7, NOW + 3] {
            let appended = fx
                .appended(&Append {
                    now_us,
                    ..message("c")
                })
                .await;
            times.push(appended.time_us);
        }
        assert_eq!(times, [NOW, NOW, NOW + 7, NOW + 7]);
        let page = fx.page("c", Query::SinceSeq(0), 100).await;
        let stored: Vec<u64> = page.entries.iter().map(|entry| entry.time_us).collect();
        assert_eq!(stored, times);
    })
    .await;
}

#[tokio::test]
async fn an_unknown_or_other_incarnation_is_deleted() {
    within(async {
        let mut fx = Fixture::start().await;
        let missing = fx
            .append(&Append {
                cid: 42,
                ..message("c")
            })
            .await;
        assert!(matches!(missing, Err(AppendError::Deleted)), "{missing:?}");
        assert!(fx.read("c", Query::Latest, 1).await.is_none(), "created");
        let created = fx.appended(&message("c")).await;
        let other = fx
            .append(&Append {
                cid: created.cid ^ 1,
                ..message("c")
            })
            .await;
        assert!(matches!(other, Err(AppendError::Deleted)), "{other:?}");
        let same = fx
            .appended(&Append {
                cid: created.cid,
                ..message("c")
            })
            .await;
        assert_eq!(same.seq, 2);
    })
    .await;
}

#[tokio::test]
async fn an_append_creates_a_missing_channel_with_the_default_options() {
    within(async {
        let mut fx = Fixture::start().await;
        let appended = fx.appended(&message("implicit")).await;
        assert!(appended.created);
        assert!(!appended.new_epoch);
        assert_ne!(appended.cid, 0);
        assert_eq!((appended.seq, appended.epoch), (1, EPOCH));
        let meta = channels::meta(&mut fx.conn, &fx.keys, "implicit")
            .await
            .expect("meta")
            .expect("created");
        assert_eq!(&meta.options[..], OPTIONS);
        assert_eq!(
            (meta.cid, meta.epoch, meta.top_seq),
            (appended.cid, EPOCH, 1)
        );
        let names = channels::list(&mut fx.conn, &fx.keys, None, 10)
            .await
            .expect("list");
        assert_eq!(names, ["implicit"]);
        assert!(!fx.appended(&message("implicit")).await.created);
    })
    .await;
}

#[tokio::test]
async fn delete_then_recreate_is_a_new_incarnation() {
    within(async {
        let mut fx = Fixture::start().await;
        let old = fx.appended(&message("c")).await;
        fx.appended(&message("c")).await;
        let deleted = channels::delete(&mut fx.conn, &fx.keys, "c")
            .await
            .expect("delete");
        assert_eq!(deleted, Some(old.cid));
        assert_eq!(
            channels::delete(&mut fx.conn, &fx.keys, "c")
                .await
                .expect("delete"),
            None
        );
        assert!(
            channels::meta(&mut fx.conn, &fx.keys, "c")
                .await
                .expect("meta")
                .is_none()
        );
        assert!(fx.read("c", Query::SinceSeq(0), 10).await.is_none());
        assert_eq!(fx.stream_len("c").await, 0);
        assert!(
            channels::list(&mut fx.conn, &fx.keys, None, 10)
                .await
                .expect("list")
                .is_empty()
        );
        let stale = fx
            .append(&Append {
                cid: old.cid,
                ..message("c")
            })
            .await;
        assert!(matches!(stale, Err(AppendError::Deleted)), "{stale:?}");
        let new = fx
            .appended(&Append {
                new_epoch: EPOCH - 1,
                ..message("c")
            })
            .await;
        assert!(new.created);
        assert_ne!(new.cid, old.cid);
        assert_eq!((new.seq, new.epoch), (1, EPOCH - 1));
    })
    .await;
}

#[tokio::test]
async fn a_newer_generation_gives_a_new_epoch_and_seqs_go_on() {
    within(async {
        let mut fx = Fixture::start().await;
        let first = fx.appended(&message("c")).await;
        assert_eq!((first.seq, first.epoch), (1, EPOCH));
        let bumped = fx
            .appended(&Append {
                generation: 2,
                new_epoch: 77,
                ..message("c")
            })
            .await;
        assert!(bumped.new_epoch);
        assert_eq!((bumped.seq, bumped.epoch, bumped.cid), (2, 77, first.cid));
        let again = fx
            .appended(&Append {
                generation: 2,
                new_epoch: 78,
                ..message("c")
            })
            .await;
        assert!(!again.new_epoch);
        assert_eq!((again.seq, again.epoch), (3, 77));
        // A read under a newer generation reports the new epoch at once, and the next
        // append keeps it.
        let page = channels::read(&mut fx.conn, &fx.keys, "c", Query::Latest, 1, 3, 99)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!((page.epoch, page.top_seq), (99, 3));
        let after = fx
            .appended(&Append {
                generation: 3,
                new_epoch: 100,
                ..message("c")
            })
            .await;
        assert!(!after.new_epoch);
        assert_eq!((after.seq, after.epoch), (4, 99));
    })
    .await;
}

#[tokio::test]
async fn an_older_generation_is_refused_and_takes_no_seq() {
    within(async {
        let mut fx = Fixture::start().await;
        fx.appended(&Append {
            generation: 5,
            ..message("c")
        })
        .await;
        let stale = fx
            .append(&Append {
                generation: 4,
                new_epoch: 1,
                ..message("c")
            })
            .await;
        assert!(
            matches!(stale, Err(AppendError::StaleGeneration { stored: 5 })),
            "{stale:?}"
        );
        // A read under the older generation sees the data as stored.
        let page = channels::read(&mut fx.conn, &fx.keys, "c", Query::Latest, 1, 4, 1)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!((page.epoch, page.top_seq), (EPOCH, 1));
        let next = fx
            .appended(&Append {
                generation: 5,
                ..message("c")
            })
            .await;
        assert_eq!((next.seq, next.epoch), (2, EPOCH));
    })
    .await;
}

/// Ten messages whose times repeat: 100, 100, 200, 200, 200, 300, 400, 400, 500, 500.
const TIMES: [u64; 10] = [100, 100, 200, 200, 200, 300, 400, 400, 500, 500];

async fn ten_messages(fx: &mut Fixture, name: &str, max_len: u64) {
    for (n, time) in (1..).zip(TIMES) {
        let payload = format!("m{n}");
        fx.appended(&Append {
            now_us: time,
            max_len,
            id: id_of(n),
            payload: payload.as_bytes(),
            ..message(name)
        })
        .await;
    }
}

#[tokio::test]
async fn since_seq_pages_until_empty() {
    within(async {
        let mut fx = Fixture::start().await;
        ten_messages(&mut fx, "c", 0).await;
        let mut pages = Vec::new();
        let mut next = 1;
        loop {
            let page = fx.page("c", Query::SinceSeq(next), 3).await;
            let Some(last) = page.entries.last() else {
                break;
            };
            next = last.seq + 1;
            pages.push(seqs_of(&page.entries));
            assert!(pages.len() <= 4, "paging did not end: {pages:?}");
        }
        assert_eq!(
            pages,
            [vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
        );
        let page = fx.page("c", Query::SinceSeq(4), 2).await;
        assert_eq!(seqs_of(&page.entries), [4, 5]);
        assert_eq!(&page.entries[0].payload[..], b"m4");
        assert_eq!(page.entries[0].id, id_of(4));
        assert_eq!(page.entries[0].time_us, 200);
    })
    .await;
}

#[tokio::test]
async fn since_time_finds_the_first_at_or_after_with_equal_times() {
    within(async {
        let mut fx = Fixture::start().await;
        ten_messages(&mut fx, "c", 0).await;
        // Five kept of ten: the search starts at the oldest retained.
        ten_messages(&mut fx, "trimmed", 5).await;
        for since in 0..=TIMES[9] + 1 {
            let first = (1..).zip(TIMES).find(|&(_, time)| time >= since);
            let expected: Vec<u64> = first.map_or(Vec::new(), |(seq, _)| (seq..=10).collect());
            assert_eq!(
                fx.seqs("c", Query::SinceTime(since), 100).await,
                expected,
                "since {since}"
            );
            let expected_trimmed: Vec<u64> =
                expected.iter().copied().filter(|&seq| seq > 5).collect();
            assert_eq!(
                fx.seqs("trimmed", Query::SinceTime(since), 100).await,
                expected_trimmed,
                "since {since}, trimmed"
            );
        }
        assert_eq!(fx.seqs("c", Query::SinceTime(200), 2).await, [3, 4]);
    })
    .await;
}

#[tokio::test]
async fn last_latest_and_an_empty_limit() {
    within(async {
        let mut fx = Fixture::start().await;
        ten_messages(&mut fx, "c", 0).await;
        assert_eq!(fx.seqs("c", Query::Last(4), 100).await, [7, 8, 9, 10]);
        assert_eq!(fx.seqs("c", Query::Last(4), 2).await, [9, 10]);
        assert_eq!(
            fx.seqs("c", Query::Last(40), 100).await,
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(fx.seqs("c", Query::Last(0), 100).await, Vec::<u64>::new());
        assert_eq!(fx.seqs("c", Query::Last(u64::MAX), 3).await, [8, 9, 10]);
        let latest = fx.page("c", Query::Latest, 100).await;
        assert_eq!(seqs_of(&latest.entries), [10]);
        assert_eq!(&latest.entries[0].payload[..], b"m10");
        let bounds = fx.page("c", Query::SinceSeq(0), 0).await;
        assert_eq!(
            (
                bounds.epoch,
                bounds.first_seq,
                bounds.top_seq,
                bounds.entries.len()
            ),
            (EPOCH, 1, 10, 0)
        );
        channels::create(&mut fx.conn, &fx.keys, "empty", OPTIONS, EPOCH, GENERATION)
            .await
            .expect("create");
        for query in [
            Query::Latest,
            Query::Last(3),
            Query::SinceTime(0),
            Query::SinceSeq(0),
        ] {
            let page = fx.page("empty", query, 10).await;
            assert_eq!((page.first_seq, page.top_seq), (0, 0));
            assert!(page.entries.is_empty(), "{query:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn by_id_finds_a_retained_message_only() {
    within(async {
        let mut fx = Fixture::start().await;
        // More than one scan batch, with the oldest trimmed away.
        for n in 1..=150u64 {
            fx.appended(&Append {
                id: id_of(n),
                max_len: 140,
                ..message("c")
            })
            .await;
        }
        for n in [11, 12, 80, 149, 150] {
            assert_eq!(fx.seqs("c", Query::ById(id_of(n)), 10).await, [n], "id {n}");
        }
        for n in [1, 10, 151] {
            assert!(
                fx.seqs("c", Query::ById(id_of(n)), 10).await.is_empty(),
                "id {n}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_live_payload_is_published_and_the_tombstone_comes_last() {
    within(async {
        let mut fx = Fixture::start().await;
        let client = redis::Client::open(fx.redis.url()).expect("client");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub
            .subscribe(fx.keys.channel_topic("c"))
            .await
            .expect("subscribe");
        let mut sent = Vec::new();
        for n in 1..=3u64 {
            let payload = format!("frame:{n}");
            let appended = fx
                .appended(&Append {
                    now_us: NOW + n,
                    payload: payload.as_bytes(),
                    ..message("c")
                })
                .await;
            sent.push(Live::Message {
                seq: appended.seq,
                epoch: appended.epoch,
                time_us: appended.time_us,
                payload: Bytes::from(payload),
            });
        }
        let cid = channels::delete(&mut fx.conn, &fx.keys, "c")
            .await
            .expect("delete")
            .expect("existed");
        sent.push(Live::Deleted { cid });
        let mut received = Vec::new();
        let mut messages = pubsub.on_message();
        while received.len() < sent.len() {
            let message = messages.next().await.expect("a message");
            assert_eq!(message.get_channel_name(), fx.keys.channel_topic("c"));
            let payload = Bytes::copy_from_slice(message.get_payload_bytes());
            received.push(live::decode(&payload).expect("decodes"));
        }
        assert_eq!(received, sent);
    })
    .await;
}

#[tokio::test]
async fn tags_get_a_stream_entry_and_a_live_payload() {
    within(async {
        let mut fx = Fixture::start().await;
        let client = redis::Client::open(fx.redis.url()).expect("client");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub
            .subscribe(fx.keys.tag_topic("rust"))
            .await
            .expect("subscribe");
        let tags = ["rust".to_owned(), "redis".to_owned()];
        let mut appended = Vec::new();
        for n in 1..=3u64 {
            let channel = if n == 2 { "b" } else { "a" };
            let payload = format!("tagged {n}");
            appended.push((
                channel,
                fx.appended(&Append {
                    now_us: NOW + n,
                    id: id_of(n),
                    payload: payload.as_bytes(),
                    tags: &tags,
                    tag_max_len: 2,
                    ..message(channel)
                })
                .await,
            ));
        }
        // Only the newest two stay in each tag's stream.
        for tag in &tags {
            let entries = channels::tag_read(&mut fx.conn, &fx.keys, tag, Query::Last(10), 10)
                .await
                .expect("tag read");
            let found: Vec<(String, u64, u64, u64, [u8; 16], Bytes)> = entries
                .into_iter()
                .map(|e| (e.channel, e.seq, e.epoch, e.time_us, e.id, e.payload))
                .collect();
            let expected: Vec<_> = (2..=3)
                .map(|n| {
                    let (channel, reply) = appended[n - 1];
                    (
                        channel.to_owned(),
                        reply.seq,
                        reply.epoch,
                        reply.time_us,
                        id_of(n as u64),
                        Bytes::from(format!("tagged {n}")),
                    )
                })
                .collect();
            assert_eq!(found, expected, "tag {tag}");
        }
        let mut messages = pubsub.on_message();
        for (n, (_, reply)) in (1..).zip(&appended) {
            let message = messages.next().await.expect("a message");
            assert_eq!(message.get_channel_name(), fx.keys.tag_topic("rust"));
            let payload = Bytes::copy_from_slice(message.get_payload_bytes());
            assert_eq!(
                live::decode(&payload).expect("decodes"),
                Live::Message {
                    seq: reply.seq,
                    epoch: reply.epoch,
                    time_us: reply.time_us,
                    payload: Bytes::from(format!("tagged {n}")),
                }
            );
        }
    })
    .await;
}

#[tokio::test]
async fn tag_queries() {
    within(async {
        let mut fx = Fixture::start().await;
        let tags = ["t".to_owned(), "t".to_owned()];
        // Channel a gets seqs 1..=4 and channel b seqs 1..=2, interleaved.
        let plan = [
            ("a", 100),
            ("b", 150),
            ("a", 200),
            ("b", 200),
            ("a", 300),
            ("a", 400),
        ];
        for (n, (channel, time)) in (1..).zip(plan) {
            fx.appended(&Append {
                now_us: time,
                id: id_of(n),
                tags: &tags,
                ..message(channel)
            })
            .await;
        }
        let ids = |entries: Vec<channels::TagEntry>| -> Vec<u64> {
            entries
                .iter()
                .map(|e| u64::from_be_bytes(e.id[8..].try_into().expect("8 bytes")))
                .collect()
        };
        let mut read = async |query: Query, limit: u64| {
            ids(
                channels::tag_read(&mut fx.conn, &fx.keys, "t", query, limit)
                    .await
                    .expect("tag read"),
            )
        };
        assert_eq!(read(Query::SinceTime(200), 10).await, [3, 4, 5, 6]);
        assert_eq!(read(Query::SinceTime(200), 2).await, [3, 4]);
        assert_eq!(read(Query::SinceTime(401), 10).await, Vec::<u64>::new());
        assert_eq!(read(Query::SinceSeq(2), 10).await, [3, 4, 5, 6]);
        assert_eq!(read(Query::Last(3), 10).await, [4, 5, 6]);
        assert_eq!(read(Query::Latest, 10).await, [6]);
        assert_eq!(read(Query::ById(id_of(2)), 10).await, [2]);
        assert_eq!(read(Query::ById(id_of(9)), 10).await, Vec::<u64>::new());
        assert_eq!(read(Query::Last(3), 0).await, Vec::<u64>::new());
        let none = channels::tag_read(&mut fx.conn, &fx.keys, "none", Query::Last(3), 10)
            .await
            .expect("tag read");
        assert!(none.is_empty());
    })
    .await;
}

#[tokio::test]
async fn trim_age_removes_the_old_end_and_releases_its_bytes() {
    within(async {
        let mut fx = Fixture::start().await;
        // More than one batch of the trimming script.
        for n in 0..250u64 {
            fx.appended(&Append {
                now_us: 1_000 + n,
                body_len: 2,
                ..message("c")
            })
            .await;
        }
        // Older than 100 µs at 1300: times below 1200, seqs 1..=200.
        let removed = channels::trim_age(&mut fx.conn, &fx.keys, "c", 100, 1_300)
            .await
            .expect("trim");
        assert_eq!(removed, 200);
        let page = fx.page("c", Query::SinceSeq(0), 1000).await;
        assert_eq!(
            (page.first_seq, page.top_seq, page.entries.len()),
            (201, 250, 50)
        );
        assert_eq!(fx.meta_field("c", "b").await.as_deref(), Some("100"));
        let again = channels::trim_age(&mut fx.conn, &fx.keys, "c", 100, 1_300)
            .await
            .expect("trim");
        assert_eq!(again, 0);
        let no_limit = channels::trim_age(&mut fx.conn, &fx.keys, "c", 0, u64::MAX)
            .await
            .expect("trim");
        assert_eq!(no_limit, 0);
        let all = channels::trim_age(&mut fx.conn, &fx.keys, "c", 1, 10_000)
            .await
            .expect("trim");
        assert_eq!(all, 50);
        assert_eq!(fx.meta_field("c", "b").await.as_deref(), Some("0"));
        let missing = channels::trim_age(&mut fx.conn, &fx.keys, "missing", 1, 10_000)
            .await
            .expect("trim");
        assert_eq!(missing, 0);
        assert!(
            fx.read("missing", Query::Latest, 1).await.is_none(),
            "created"
        );
    })
    .await;
}

#[tokio::test]
async fn list_pages_in_name_order() {
    within(async {
        let mut fx = Fixture::start().await;
        for name in ["b", "a.x", "c", "a"] {
            channels::create(&mut fx.conn, &fx.keys, name, OPTIONS, EPOCH, GENERATION)
                .await
                .expect("create");
        }
        let list = async |conn: &mut MultiplexedConnection, after: Option<&str>, limit| {
            channels::list(conn, &Keys::new("test:"), after, limit)
                .await
                .expect("list")
        };
        assert_eq!(list(&mut fx.conn, None, 2).await, ["a", "a.x"]);
        assert_eq!(list(&mut fx.conn, Some("a.x"), 2).await, ["b", "c"]);
        assert_eq!(list(&mut fx.conn, Some("c"), 2).await, Vec::<String>::new());
        assert_eq!(list(&mut fx.conn, None, 0).await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn a_restart_without_persistence_starts_a_fresh_channel() {
    within(async {
        let mut fx = Fixture::start().await;
        let before = fx.appended(&message("c")).await;
        fx.appended(&message("c")).await;
        fx.redis.restart().expect("restart");
        fx.conn = connect(&fx.redis).await;
        let known = fx
            .append(&Append {
                cid: before.cid,
                ..message("c")
            })
            .await;
        assert!(matches!(known, Err(AppendError::Deleted)), "{known:?}");
        let fresh = fx
            .appended(&Append {
                new_epoch: EPOCH - 7,
                ..message("c")
            })
            .await;
        assert!(fresh.created);
        assert_ne!(fresh.cid, before.cid);
        assert_eq!((fresh.seq, fresh.epoch), (1, EPOCH - 7));
    })
    .await;
}

#[tokio::test]
async fn concurrent_appends_get_every_seq_exactly_once() {
    within(async {
        let mut fx = Fixture::start().await;
        let (meta, _) = channels::create(&mut fx.conn, &fx.keys, "c", OPTIONS, EPOCH, GENERATION)
            .await
            .expect("create");
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut conn = fx.conn.clone();
            let keys = fx.keys.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::with_capacity(500);
                for _ in 0..500 {
                    let appended = channels::append(
                        &mut conn,
                        &keys,
                        &Append {
                            cid: meta.cid,
                            ..message("c")
                        },
                    )
                    .await?;
                    seqs.push(appended.seq);
                }
                Ok::<_, AppendError>(seqs)
            }));
        }
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.extend(task.await.expect("task ran").expect("appends"));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=2000).collect::<Vec<u64>>());
        assert_eq!(fx.stream_len("c").await, 2000);
    })
    .await;
}

#[tokio::test]
async fn a_reply_of_the_wrong_shape_is_a_reply_error() {
    within(async {
        let mut fx = Fixture::start().await;
        // A meta hash whose cid is not a number, as no script writes it.
        let _: () = redis::cmd("HSET")
            .arg(fx.keys.channel_meta("c"))
            .arg("cid")
            .arg("not a number")
            .arg("e")
            .arg("1")
            .arg("s")
            .arg("0")
            .query_async(&mut fx.conn)
            .await
            .expect("hset");
        let meta = channels::meta(&mut fx.conn, &fx.keys, "c").await;
        assert!(matches!(meta, Err(BackplaneError::Reply(_))), "{meta:?}");
    })
    .await;
}
