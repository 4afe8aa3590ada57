//! The client-to-client part of the cluster history workload: clients on every node
//! relay numbered bodies to one to four others (sometimes to the id of a client that
//! left), join, post to, leave and join again a few groups, and record everything their
//! direct and group feeds give them; after the faults, every node's client list must
//! come to show exactly the connected clients.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchboard_client::{Client, GroupItem, Payload};

use super::checker::{self, Record};
use super::{Log, REQUEST_TIMEOUT, Rng, SETTLE, connect, disconnect, outcome_of, seen};

pub const GROUPS: [&str; 2] = ["crew", "desk"];
/// Clients relaying and posting, on each node.
const PER_NODE: usize = 2;
/// How long every node's client list has after the faults to show exactly the
/// connected clients: a node's registration lives 5 s, and it publishes in batches.
const DIRECTORY_BOUND: Duration = Duration::from_secs(8);

/// One relaying and posting client: the handle that keeps it connected until the run
/// ends, and the tasks reading its feeds (they stop with the subscribers).
pub struct Member {
    pub name: String,
    pub node: usize,
    pub client: Client,
    pub client_id: u64,
    feeds: Vec<tokio::task::JoinHandle<()>>,
}

impl Member {
    /// Waits for the feed tasks (told to stop by the flag they were given) and closes
    /// the connection.
    pub async fn finish(self, log: &Log) {
        for feed in self.feeds {
            feed.await.expect("a feed task");
        }
        disconnect(log, self.client, &self.name);
    }
}

/// Connects the members on every node, creates the groups, and starts every member's
/// feeds; also connects a client that leaves at once, whose id is returned with the
/// members' as a receiver that is gone.
pub async fn start(log: &Log, addrs: &[String], stop: &Arc<AtomicBool>) -> (Vec<Member>, u64) {
    let mut members = Vec::new();
    for (node, addr) in addrs.iter().enumerate() {
        for k in 0..PER_NODE {
            let name = format!("m{node}{k}");
            let (client, client_id) = connect(log, addr, node, &name).await;
            let feeds = vec![
                follow_directs(log, &client, &name, stop),
                follow_groups(log, &client, &name, stop),
            ];
            members.push(Member {
                name,
                node,
                client,
                client_id,
                feeds,
            });
        }
    }
    for group in GROUPS {
        members[0]
            .client
            .create_group(group, "")
            .await
            .expect("a group is created before any fault");
    }
    let last = addrs.len() - 1;
    let (gone, gone_id) = connect(log, &addrs[last], last, "gone").await;
    disconnect(log, gone, "gone");
    (members, gone_id)
}

fn follow_directs(
    log: &Log,
    client: &Client,
    name: &str,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let mut directs = client.direct_feed().expect("the direct feed is free");
    let (log, name, stop) = (log.clone(), name.to_owned(), stop.clone());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(200), directs.next()).await {
                Err(_) => continue,
                Ok(None) => return,
                Ok(Some(direct)) => log.push(Record::Direct {
                    client: name.clone(),
                    sender_id: direct.sender_id(),
                    body: direct.text().unwrap_or("<binary>").to_owned(),
                    at_ms: log.now(),
                }),
            }
        }
    })
}

fn follow_groups(
    log: &Log,
    client: &Client,
    name: &str,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let mut feed = client.group_feed().expect("the group feed is free");
    let (log, name, stop) = (log.clone(), name.to_owned(), stop.clone());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let item = match tokio::time::timeout(Duration::from_millis(200), feed.next()).await {
                Err(_) => continue,
                Ok(None) => return,
                Ok(Some(item)) => item,
            };
            log.push(match item {
                GroupItem::Message(message) => Record::GroupMessage {
                    client: name.clone(),
                    group: message.channel().to_owned(),
                    at_ms: log.now(),
                    message: seen(&message),
                },
                GroupItem::Event(event) => Record::GroupEvent {
                    client: name.clone(),
                    group: event.channel.to_string(),
                    kind: format!("{:?}", event.kind),
                    subject: event.subject.to_string(),
                    at_ms: log.now(),
                },
            });
        }
    })
}

/// What a member believes of its membership of a group; `Unsure` after a join or
/// leave that got no answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Membership {
    Member,
    Outside,
    Unsure,
}

/// One member's workload until `stop`: relays to `others` (ids of members elsewhere and
/// of the client that left), and joins, posts and leaves.
pub async fn work(
    log: Log,
    client: Client,
    who: String,
    node: usize,
    others: Vec<u64>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) {
    let mut membership = [Membership::Outside; GROUPS.len()];
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(rng.millis(40, 120)).await;
        count += 1;
        if rng.below(2) == 0 {
            let mut pool = others.clone();
            let mut receivers = Vec::new();
            for _ in 0..=rng.below(4) {
                if pool.is_empty() {
                    break;
                }
                receivers.push(pool.swap_remove(rng.below(pool.len() as u64) as usize));
            }
            relay(
                &log,
                &client,
                &who,
                node,
                receivers,
                format!("{who}-relay-{count}"),
            )
            .await;
            continue;
        }
        let which = rng.below(GROUPS.len() as u64) as usize;
        let group = GROUPS[which];
        let roll = rng.below(10);
        let join = match membership[which] {
            Membership::Member if roll < 7 => None,
            Membership::Member => Some(false),
            Membership::Outside if roll < 6 => Some(true),
            // A post from outside: the checker requires that it is refused.
            Membership::Outside => None,
            Membership::Unsure => Some(true),
        };
        let Some(join) = join else {
            post(
                &log,
                &client,
                &who,
                node,
                group,
                format!("{who}-post-{count}"),
            )
            .await;
            continue;
        };
        let start_ms = log.now();
        let call = async {
            match join {
                true => client.join_group(group).await,
                false => client.leave_group(group).await,
            }
        };
        let error = match tokio::time::timeout(REQUEST_TIMEOUT * 2, call).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("no answer in time".to_owned()),
        };
        membership[which] = match (&error, join) {
            (None, true) => Membership::Member,
            (None, false) => Membership::Outside,
            (Some(_), _) => Membership::Unsure,
        };
        log.push(Record::GroupOp {
            client: who.clone(),
            node,
            group: group.to_owned(),
            join,
            start_ms,
            end_ms: log.now(),
            error,
        });
    }
}

async fn relay(
    log: &Log,
    client: &Client,
    who: &str,
    node: usize,
    receivers: Vec<u64>,
    body: String,
) {
    let start_ms = log.now();
    let answer = tokio::time::timeout(
        REQUEST_TIMEOUT * 2,
        client.relay(&receivers, body.clone().into_bytes(), "text/plain"),
    )
    .await;
    let result = match answer {
        Ok(Ok(outcomes)) => Ok(outcomes
            .iter()
            .map(|outcome| (outcome.client_id, outcome.status.name().to_owned()))
            .collect()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer in time".to_owned()),
    };
    log.push(Record::Relay {
        client: who.to_owned(),
        node,
        body,
        receivers,
        start_ms,
        end_ms: log.now(),
        result,
    });
}

async fn post(log: &Log, client: &Client, who: &str, node: usize, group: &str, body: String) {
    let start_ms = log.now();
    let answer = tokio::time::timeout(
        REQUEST_TIMEOUT * 2,
        client.post(group, Payload::text(&body)),
    )
    .await;
    log.push(Record::Post {
        client: who.to_owned(),
        node,
        group: group.to_owned(),
        body,
        start_ms,
        end_ms: log.now(),
        outcome: outcome_of(answer),
    });
}

/// Waits (bounded) until every relay reported delivered, every post owed to a member
/// and every join owed to its joiner has arrived; the checker then says whether they
/// did.
pub async fn settle(log: &Log) {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        let records = log.records();
        if checker::relays_missing(&records).is_empty()
            && checker::posts_missing(&records).is_empty()
            && checker::joins_unannounced(&records).is_empty()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks every node for its client list until it shows exactly the connected clients,
/// within the bound, and logs the last answer of each.
pub async fn read_directories(log: &Log, addrs: &[String]) {
    let mut listers = Vec::new();
    for (node, addr) in addrs.iter().enumerate() {
        let name = format!("dir{node}");
        let (client, _) = connect(log, addr, node, &name).await;
        listers.push((name, client));
    }
    let deadline = Instant::now() + DIRECTORY_BOUND;
    for (node, (name, client)) in listers.iter().enumerate() {
        let expected = checker::connected_clients(&log.records(), name);
        let mut last: Option<(u64, u64, Vec<u64>)> = None;
        loop {
            let start_ms = log.now();
            if let Ok(clients) = client.list_clients().await {
                let listed: Vec<u64> = clients.iter().map(|other| other.client_id).collect();
                let done = listed.iter().copied().collect::<BTreeSet<_>>() == expected;
                last = Some((start_ms, log.now(), listed));
                if done {
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (start_ms, end_ms, listed) = last.unwrap_or_default();
        log.push(Record::Directory {
            lister: name.clone(),
            node,
            start_ms,
            end_ms,
            listed,
        });
    }
    for (name, client) in listers {
        disconnect(log, client, &name);
    }
}
