//! The history checker: reads the log of a cluster run (every operation's start, end
//! and result) and says whether the history the clients saw holds together, or which
//! invariant broke first and on which records.
//!
//! A message is known by its body (every publish sends a body of its own), so that a
//! publish with no ack can still be found, and found twice. Sequence numbers are only
//! one series within an epoch: a channel on which an epoch change was announced keeps
//! the checks that hold across epochs (one body, one place; the final history agrees
//! with the nodes and with every ack made after the change) and drops the ones that
//! do not (an ack from before the change may be gone).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// How a publish ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Acked {
        seq: u64,
        id: String,
    },
    /// Refused with BACKPLANE_UNAVAILABLE: it may or may not be in the history.
    Unavailable {
        error: String,
    },
    /// No answer within the request timeout: it may or may not be in the history.
    TimedOut,
    /// Any other failure, which this workload never expects.
    Failed {
        error: String,
    },
}

/// One message as a read or a delivery showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub seq: u64,
    pub id: String,
    pub body: String,
}

/// One line of the log. Times are milliseconds since the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    Publish {
        client: String,
        node: usize,
        channel: String,
        body: String,
        start_ms: u64,
        end_ms: u64,
        outcome: Outcome,
    },
    /// A subscription made (or refused); `replay_from` is the replay asked for.
    Subscribe {
        sub: String,
        node: usize,
        channel: String,
        replay_from: Option<u64>,
        start_ms: u64,
        end_ms: u64,
        error: Option<String>,
    },
    /// A message a subscriber received.
    Deliver {
        sub: String,
        channel: String,
        at_ms: u64,
        message: Seen,
    },
    /// An EVENT EPOCH_CHANGED the subscriber's connection was told of, logged before
    /// the delivery it came before.
    EpochChanged {
        sub: String,
        channel: String,
        first_seq: u64,
        at_ms: u64,
    },
    /// A subscription that ended before the run did.
    SubscriptionEnded {
        sub: String,
        channel: String,
        at_ms: u64,
        error: String,
    },
    /// A history read (`Since::All`); `final_read` for the reads after the faults.
    History {
        reader: String,
        node: usize,
        channel: String,
        start_ms: u64,
        end_ms: u64,
        final_read: bool,
        result: Result<Vec<Seen>, String>,
    },
    /// A fault injected into Redis, from start to end.
    Fault {
        kind: String,
        start_ms: u64,
        end_ms: u64,
    },
    /// A subscriber after the run: the newest seq it had seen when the wait for it to
    /// reach `wanted` (the final history's newest) ended.
    Drained {
        sub: String,
        channel: String,
        upto: u64,
        wanted: u64,
    },
    /// A connection the workload opened, with the client id its node gave it.
    Connected {
        client: String,
        node: usize,
        client_id: u64,
        at_ms: u64,
    },
    /// A connection the workload closed on purpose.
    Disconnected { client: String, at_ms: u64 },
    /// A relay of `body` to `receivers`: the per-receiver outcomes (`delivered`,
    /// `unknown`, `dropped`), or why the whole relay was refused.
    Relay {
        client: String,
        node: usize,
        body: String,
        receivers: Vec<u64>,
        start_ms: u64,
        end_ms: u64,
        result: Result<Vec<(u64, String)>, String>,
    },
    /// A body relayed to `client`, as its direct feed gave it.
    Direct {
        client: String,
        sender_id: u64,
        body: String,
        at_ms: u64,
    },
    /// A join (`join`) or leave of a group, and how it ended.
    GroupOp {
        client: String,
        node: usize,
        group: String,
        join: bool,
        start_ms: u64,
        end_ms: u64,
        error: Option<String>,
    },
    /// A post to a group; refused with FORBIDDEN is `Failed`.
    Post {
        client: String,
        node: usize,
        group: String,
        body: String,
        start_ms: u64,
        end_ms: u64,
        outcome: Outcome,
    },
    /// A post as a member's group feed gave it.
    GroupMessage {
        client: String,
        group: String,
        at_ms: u64,
        message: Seen,
    },
    /// A member event as a member's group feed gave it (logged, not checked).
    GroupEvent {
        client: String,
        group: String,
        kind: String,
        subject: String,
        at_ms: u64,
    },
    /// What `lister`'s node answered to LIST_CLIENTS after the faults: the last answer
    /// of the bounded wait for it to match the connected clients.
    Directory {
        lister: String,
        node: usize,
        start_ms: u64,
        end_ms: u64,
        listed: Vec<u64>,
    },
}

/// The first invariant a log breaks, with the records that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
    pub records: Vec<Record>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invariant `{}` violated: {}",
            self.invariant, self.detail
        )?;
        for record in &self.records {
            let line = serde_json::to_string(record).map_err(|_| fmt::Error)?;
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

fn violation(invariant: &'static str, detail: String, records: Vec<&Record>) -> Violation {
    Violation {
        invariant,
        detail,
        records: records.into_iter().cloned().collect(),
    }
}

/// Checks every invariant over `log`, in a fixed order, and returns the first broken.
pub fn check(log: &[Record]) -> Result<(), Violation> {
    no_unexpected_failures(log)?;
    nodes_converge(log)?;
    one_message_per_place(log)?;
    acks_kept(log)?;
    subscribers_in_order(log)?;
    deliveries_complete(log)?;
    deliveries_owed(log)?;
    subscribers_caught_up(log)?;
    relays_reach_only_targets(log)?;
    relays_delivered_arrive(log)?;
    relays_unknown_only_when_gone(log)?;
    posts_only_from_members(log)?;
    group_feeds_in_order(log)?;
    posts_reach_members(log)?;
    joins_announced(log)?;
    directory_converges(log)?;
    Ok(())
}

/// Channels on which an epoch change was announced, with the times of every
/// announcement (to any subscriber).
fn epoch_changes(log: &[Record]) -> BTreeMap<&str, Vec<u64>> {
    let mut changes: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for record in log {
        if let Record::EpochChanged { channel, at_ms, .. } = record {
            changes.entry(channel.as_str()).or_default().push(*at_ms);
        }
    }
    changes
}

/// The final reads of `channel`, one per node.
fn final_reads<'a>(log: &'a [Record], wanted: &str) -> Vec<(&'a Record, &'a Vec<Seen>)> {
    log.iter()
        .filter_map(|record| match record {
            Record::History {
                channel,
                final_read: true,
                result: Ok(messages),
                ..
            } if channel == wanted => Some((record, messages)),
            _ => None,
        })
        .collect()
}

fn channels(log: &[Record]) -> BTreeSet<&str> {
    log.iter()
        .filter_map(|record| match record {
            Record::Publish { channel, .. }
            | Record::Subscribe { channel, .. }
            | Record::History { channel, .. } => Some(channel.as_str()),
            _ => None,
        })
        .collect()
}

/// Publishes and subscriptions fail only in the ways a fault explains, and every
/// subscription lasts the run.
fn no_unexpected_failures(log: &[Record]) -> Result<(), Violation> {
    for record in log {
        let detail = match record {
            Record::Publish {
                outcome: Outcome::Failed { error },
                ..
            } => format!("a publish failed: {error}"),
            Record::SubscriptionEnded { error, .. } => {
                format!("a subscription ended: {error}")
            }
            Record::History {
                final_read: true,
                result: Err(error),
                ..
            } => format!("a final history read failed: {error}"),
            _ => continue,
        };
        return Err(violation("no-unexpected-failure", detail, vec![record]));
    }
    Ok(())
}

/// Every node reads the same final history of every channel.
fn nodes_converge(log: &[Record]) -> Result<(), Violation> {
    for channel in channels(log) {
        let reads = final_reads(log, channel);
        let Some((first, reference)) = reads.first() else {
            return Err(violation(
                "nodes-converge",
                format!("no final history of `{channel}`"),
                Vec::new(),
            ));
        };
        for (other, messages) in &reads[1..] {
            if messages != reference {
                return Err(violation(
                    "nodes-converge",
                    format!("two nodes read different histories of `{channel}`"),
                    vec![first, other],
                ));
            }
        }
    }
    Ok(())
}

/// Where a message was seen: (seq, id), and the record that showed it.
type Place<'a> = ((u64, &'a str), &'a Record);

/// Each (channel, epoch, seq) is one message, and each message has one place. Without
/// an epoch change the whole run is one epoch, so acks, deliveries and every read must
/// agree; with one, each read and each subscriber's epoch must agree within itself and
/// no body may appear at two places in any of them.
fn one_message_per_place(log: &[Record]) -> Result<(), Violation> {
    let changed = epoch_changes(log);
    let mut by_body: BTreeMap<(&str, &str), Place<'_>> = BTreeMap::new();
    let mut by_seq: BTreeMap<(&str, u64), (&str, &Record)> = BTreeMap::new();
    for record in log {
        let mut observations: Vec<(&str, u64, &str, &str)> = Vec::new();
        match record {
            Record::Publish {
                channel,
                body,
                outcome: Outcome::Acked { seq, id },
                ..
            } => observations.push((channel, *seq, id, body)),
            Record::Deliver {
                channel, message, ..
            } => observations.push((channel, message.seq, &message.id, &message.body)),
            Record::History {
                channel,
                result: Ok(messages),
                ..
            } => {
                let mut bodies = BTreeSet::new();
                for message in messages {
                    if !bodies.insert(message.body.as_str()) {
                        return Err(violation(
                            "one-message-per-place",
                            format!("`{}` twice in one read of `{channel}`", message.body),
                            vec![record],
                        ));
                    }
                    observations.push((channel, message.seq, &message.id, &message.body));
                }
            }
            _ => {}
        }
        for (channel, seq, id, body) in observations {
            if changed.contains_key(channel) {
                continue;
            }
            if let Some(((first_seq, first_id), first)) = by_body.get(&(channel, body))
                && (*first_seq != seq || *first_id != id)
            {
                return Err(violation(
                    "one-message-per-place",
                    format!(
                        "`{body}` in `{channel}` seen as seq {first_seq} ({first_id}) and as \
                         seq {seq} ({id})"
                    ),
                    vec![first, record],
                ));
            }
            by_body
                .entry((channel, body))
                .or_insert(((seq, id), record));
            if let Some((first_body, first)) = by_seq.get(&(channel, seq))
                && *first_body != body
            {
                return Err(violation(
                    "one-message-per-place",
                    format!("seq {seq} of `{channel}` seen as `{first_body}` and as `{body}`"),
                    vec![first, record],
                ));
            }
            by_seq.entry((channel, seq)).or_insert((body, record));
        }
    }
    Ok(())
}

/// Every acknowledged publish is in the final history at its seq, unless an epoch
/// change on its channel was announced after it began; and nothing is in the final
/// history that no one published.
fn acks_kept(log: &[Record]) -> Result<(), Violation> {
    let changed = epoch_changes(log);
    let mut published: BTreeSet<(&str, &str)> = BTreeSet::new();
    for record in log {
        if let Record::Publish { channel, body, .. } = record {
            published.insert((channel, body));
        }
    }
    for channel in channels(log) {
        let Some((read, messages)) = final_reads(log, channel).into_iter().next() else {
            continue;
        };
        for message in messages {
            if !published.contains(&(channel, message.body.as_str())) {
                return Err(violation(
                    "acks-kept",
                    format!("`{}` in `{channel}` was never published", message.body),
                    vec![read],
                ));
            }
        }
        let at: BTreeMap<u64, &Seen> = messages.iter().map(|m| (m.seq, m)).collect();
        for record in log {
            let Record::Publish {
                channel: published_to,
                body,
                start_ms,
                outcome: Outcome::Acked { seq, id },
                ..
            } = record
            else {
                continue;
            };
            if published_to != channel {
                continue;
            }
            let kept = at
                .get(seq)
                .is_some_and(|found| &found.body == body && &found.id == id);
            if kept {
                continue;
            }
            // Lost with an epoch its subscribers were told had ended (any later change:
            // the loss may be announced a few epochs on).
            if changed
                .get(channel)
                .is_some_and(|told| told.iter().any(|at_ms| at_ms >= start_ms))
            {
                continue;
            }
            return Err(violation(
                "acks-kept",
                format!("acknowledged seq {seq} of `{channel}` is not in the final history"),
                vec![record, read],
            ));
        }
    }
    Ok(())
}

/// What one subscriber saw, in order, with the epoch changes it was told of.
fn subscriber_streams(log: &[Record]) -> BTreeMap<&str, Vec<&Record>> {
    let mut streams: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in log {
        match record {
            Record::Subscribe { sub, .. }
            | Record::Deliver { sub, .. }
            | Record::EpochChanged { sub, .. }
            | Record::Drained { sub, .. } => streams.entry(sub).or_default().push(record),
            _ => {}
        }
    }
    streams
}

/// Within an epoch a subscriber's seqs strictly increase; each step back needs an epoch
/// change it was told of and had not yet used. (The log notes a change when the next
/// message is taken, which may be a message or two before the new epoch's first.)
fn subscribers_in_order(log: &[Record]) -> Result<(), Violation> {
    for (sub, stream) in subscriber_streams(log) {
        let mut previous: Option<&Record> = None;
        let mut told = 0_usize;
        for record in stream {
            match record {
                Record::EpochChanged { .. } => told += 1,
                Record::Deliver { message, .. } => {
                    if let Some(last_record @ Record::Deliver { message: last, .. }) = previous
                        && message.seq <= last.seq
                    {
                        if told == 0 {
                            return Err(violation(
                                "subscribers-in-order",
                                format!(
                                    "{sub} saw seq {} after seq {} with no epoch change",
                                    message.seq, last.seq
                                ),
                                vec![last_record, record],
                            ));
                        }
                        told -= 1;
                    }
                    previous = Some(record);
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A subscriber that replayed from seq 1 saw, in its last epoch, every message of the
/// final history up to the newest it saw: the replay and the live feed left no gap.
/// A live subscriber on a channel that kept one epoch saw every message from the first
/// it was given to the newest.
fn deliveries_complete(log: &[Record]) -> Result<(), Violation> {
    let changed = epoch_changes(log);
    for (sub, stream) in subscriber_streams(log) {
        let Some(
            subscribed @ Record::Subscribe {
                channel,
                replay_from,
                error: None,
                ..
            },
        ) = stream.first().copied()
        else {
            continue;
        };
        let replayed = match replay_from {
            Some(1) => true,
            None if !changed.contains_key(channel.as_str()) => false,
            _ => continue,
        };
        let Some((read, messages)) = final_reads(log, channel).into_iter().next() else {
            continue;
        };
        // The last epoch: after the last change this subscriber was told of.
        let mut seen: BTreeSet<u64> = BTreeSet::new();
        let mut since_ms = 0;
        let mut told_first = None;
        for record in &stream {
            match record {
                Record::EpochChanged {
                    at_ms, first_seq, ..
                } => {
                    seen.clear();
                    since_ms = *at_ms;
                    told_first = Some(*first_seq);
                }
                Record::Deliver { message, .. } => {
                    seen.insert(message.seq);
                }
                _ => {}
            }
        }
        let (Some(&oldest), Some(&newest)) = (seen.first(), seen.last()) else {
            continue;
        };
        let acked_after: BTreeSet<&str> = log
            .iter()
            .filter_map(|record| match record {
                Record::Publish {
                    channel: to,
                    body,
                    start_ms,
                    outcome: Outcome::Acked { .. },
                    ..
                } if to == channel && *start_ms >= since_ms => Some(body.as_str()),
                _ => None,
            })
            .collect();
        let from = match replayed {
            true => told_first.unwrap_or(1),
            false => oldest,
        };
        for message in messages {
            let owed = match told_first {
                None => true,
                Some(_) => acked_after.contains(message.body.as_str()),
            };
            if owed && (from..=newest).contains(&message.seq) && !seen.contains(&message.seq) {
                let (invariant, how) = match replayed {
                    true => ("replay-complete", "replayed from seq 1".to_owned()),
                    false => (
                        "live-without-gaps",
                        format!("followed live from seq {from}"),
                    ),
                };
                return Err(violation(
                    invariant,
                    format!(
                        "{sub} {how} `{channel}` and saw up to seq {newest} but not seq {}",
                        message.seq
                    ),
                    vec![subscribed, read],
                ));
            }
        }
    }
    Ok(())
}

/// A subscription gets every message published after it was made that the final
/// history holds (it may not have seen one published while it was being made), unless
/// it was told the final epoch began after that message: messages before an epoch's
/// announced first seq may be missing.
fn deliveries_owed(log: &[Record]) -> Result<(), Violation> {
    for (sub, stream) in subscriber_streams(log) {
        let Some(
            subscribed @ Record::Subscribe {
                channel,
                end_ms: subscribed_ms,
                error: None,
                ..
            },
        ) = stream.first().copied()
        else {
            continue;
        };
        let Some((read, messages)) = final_reads(log, channel).into_iter().next() else {
            continue;
        };
        let seen: BTreeSet<&str> = stream
            .iter()
            .filter_map(|record| match record {
                Record::Deliver { message, .. } => Some(message.body.as_str()),
                _ => None,
            })
            .collect();
        let final_first = stream.iter().rev().find_map(|record| match record {
            Record::EpochChanged { first_seq, .. } => Some(*first_seq),
            _ => None,
        });
        let held: BTreeMap<&str, u64> = messages.iter().map(|m| (m.body.as_str(), m.seq)).collect();
        for record in log {
            let Record::Publish {
                channel: to,
                body,
                start_ms,
                outcome: Outcome::Acked { .. },
                ..
            } = record
            else {
                continue;
            };
            let Some(&seq) = held.get(body.as_str()) else {
                continue;
            };
            let excused = final_first.is_some_and(|first| seq < first);
            if to == channel
                && start_ms > subscribed_ms
                && !excused
                && !seen.contains(body.as_str())
            {
                return Err(violation(
                    "deliveries-owed",
                    format!(
                        "{sub} never got seq {seq} of `{channel}`, published after it subscribed"
                    ),
                    vec![subscribed, record, read],
                ));
            }
        }
    }
    Ok(())
}

/// After the faults stop, every subscriber reaches the newest message of the final
/// history (within the run's bound).
fn subscribers_caught_up(log: &[Record]) -> Result<(), Violation> {
    for record in log {
        if let Record::Drained {
            sub, upto, wanted, ..
        } = record
            && upto < wanted
        {
            return Err(violation(
                "subscribers-caught-up",
                format!("{sub} stopped at seq {upto} of {wanted}"),
                vec![record],
            ));
        }
    }
    Ok(())
}

/// Every connection's client id, by the name the workload gave it.
fn client_ids(log: &[Record]) -> BTreeMap<&str, u64> {
    log.iter()
        .filter_map(|record| match record {
            Record::Connected {
                client, client_id, ..
            } => Some((client.as_str(), *client_id)),
            _ => None,
        })
        .collect()
}

/// When each connection the workload closed was closed.
fn disconnections(log: &[Record]) -> BTreeMap<&str, u64> {
    log.iter()
        .filter_map(|record| match record {
            Record::Disconnected { client, at_ms } => Some((client.as_str(), *at_ms)),
            _ => None,
        })
        .collect()
}

/// The relayed bodies each client's direct feed gave it, by client.
fn directs_received(log: &[Record]) -> BTreeMap<&str, Vec<&Record>> {
    let mut received: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in log {
        if let Record::Direct { client, .. } = record {
            received.entry(client).or_default().push(record);
        }
    }
    received
}

/// A relayed body reaches only the receivers it named, each at most once.
fn relays_reach_only_targets(log: &[Record]) -> Result<(), Violation> {
    let ids = client_ids(log);
    let relays: BTreeMap<&str, &Record> = log
        .iter()
        .filter_map(|record| match record {
            Record::Relay { body, .. } => Some((body.as_str(), record)),
            _ => None,
        })
        .collect();
    let mut got: BTreeMap<(&str, &str), &Record> = BTreeMap::new();
    for record in log {
        let Record::Direct { client, body, .. } = record else {
            continue;
        };
        let Some(relay @ Record::Relay { receivers, .. }) = relays.get(body.as_str()).copied()
        else {
            return Err(violation(
                "relay-only-targets",
                format!("{client} received `{body}`, which no one relayed"),
                vec![record],
            ));
        };
        if !ids
            .get(client.as_str())
            .is_some_and(|id| receivers.contains(id))
        {
            return Err(violation(
                "relay-only-targets",
                format!("{client} received `{body}` but was not one of its receivers"),
                vec![relay, record],
            ));
        }
        if let Some(first) = got.insert((client, body), record) {
            return Err(violation(
                "relay-once",
                format!("{client} received `{body}` twice"),
                vec![relay, first, record],
            ));
        }
    }
    Ok(())
}

/// The receivers a relay reported `delivered` to that have not received it (yet), with
/// the relay. A receiver that closed its connection after the relay began is excused:
/// the body may have been queued on a connection no one read any more. Nodes are never
/// cut in this run (the faults hit Redis, and the nodes' client connections stay up),
/// so nothing else excuses a missing body.
pub fn relays_missing(log: &[Record]) -> Vec<(String, &Record)> {
    let ids = client_ids(log);
    let names: BTreeMap<u64, &str> = ids.iter().map(|(name, id)| (*id, *name)).collect();
    let gone = disconnections(log);
    let received = directs_received(log);
    let mut missing = Vec::new();
    for record in log {
        let Record::Relay {
            body,
            start_ms,
            result: Ok(outcomes),
            ..
        } = record
        else {
            continue;
        };
        for (id, status) in outcomes {
            if status != "delivered" {
                continue;
            }
            let Some(name) = names.get(id).copied() else {
                missing.push((format!("client id {id}, which no connection had"), record));
                continue;
            };
            if gone.get(name).is_some_and(|at_ms| at_ms >= start_ms) {
                continue;
            }
            let arrived = received.get(name).is_some_and(|directs| {
                directs
                    .iter()
                    .any(|direct| matches!(direct, Record::Direct { body: b, .. } if b == body))
            });
            if !arrived {
                missing.push((name.to_owned(), record));
            }
        }
    }
    missing
}

/// A receiver reported `delivered` received the body.
fn relays_delivered_arrive(log: &[Record]) -> Result<(), Violation> {
    match relays_missing(log).into_iter().next() {
        None => Ok(()),
        Some((receiver, relay)) => Err(violation(
            "relay-delivered-arrives",
            format!("the relay reported `delivered` to {receiver}, which never received it"),
            vec![relay],
        )),
    }
}

/// How long after Redis came back without its data the nodes may be missing from it:
/// each finds its registration gone at its next heartbeat (every second) and registers
/// again with its clients; with room for a reconnection and a batch.
const REREGISTER_MS: u64 = 3_000;

/// `unknown` only for a receiver that was not connected for the whole relay: every node
/// stays up in this run, so every connected receiver is on a live node, faults or not
/// (a node between two pub/sub connections answers `dropped`). Only a restart that
/// lost Redis' data (an epoch change was announced after it began) unregisters the
/// nodes, for up to [`REREGISTER_MS`] after it.
fn relays_unknown_only_when_gone(log: &[Record]) -> Result<(), Violation> {
    let gone = disconnections(log);
    let told: Vec<u64> = epoch_changes(log).into_values().flatten().collect();
    let data_lost: Vec<(u64, u64)> = log
        .iter()
        .filter_map(|record| match record {
            Record::Fault {
                kind,
                start_ms,
                end_ms,
            } if kind == "kill-restart" && told.iter().any(|at_ms| at_ms >= start_ms) => {
                Some((*start_ms, end_ms + REREGISTER_MS))
            }
            _ => None,
        })
        .collect();
    let connected: BTreeMap<u64, (&str, u64)> = log
        .iter()
        .filter_map(|record| match record {
            Record::Connected {
                client,
                client_id,
                at_ms,
                ..
            } => Some((*client_id, (client.as_str(), *at_ms))),
            _ => None,
        })
        .collect();
    for record in log {
        let Record::Relay {
            start_ms,
            end_ms,
            result: Ok(outcomes),
            ..
        } = record
        else {
            continue;
        };
        if data_lost
            .iter()
            .any(|(from_ms, to_ms)| from_ms <= end_ms && start_ms <= to_ms)
        {
            continue;
        }
        for (id, status) in outcomes {
            let Some((name, since_ms)) = connected.get(id).copied() else {
                continue;
            };
            let whole_time =
                since_ms < *start_ms && gone.get(name).is_none_or(|at_ms| at_ms > end_ms);
            if status == "unknown" && whole_time {
                return Err(violation(
                    "relay-unknown-only-when-gone",
                    format!("the relay reported {name} `unknown` though it was connected"),
                    vec![record],
                ));
            }
        }
    }
    Ok(())
}

/// One client's joins and leaves of one group, in the order it made them.
fn group_ops<'a>(log: &'a [Record], who: &str, wanted: &str) -> Vec<&'a Record> {
    log.iter()
        .filter(|record| {
            matches!(record, Record::GroupOp { client, group, .. } if client == who && group == wanted)
        })
        .collect()
}

/// No post is accepted from a client that never joined the group, or whose last
/// operation on it before the post was an acknowledged leave.
fn posts_only_from_members(log: &[Record]) -> Result<(), Violation> {
    for (at, record) in log.iter().enumerate() {
        let Record::Post {
            client,
            group,
            body,
            outcome: Outcome::Acked { .. },
            ..
        } = record
        else {
            continue;
        };
        // One client makes its operations one after another, so the log's order is
        // theirs.
        let last = group_ops(&log[..at], client, group).into_iter().last();
        let detail = match last {
            None => format!("`{body}` accepted from {client}, which never joined {group}"),
            Some(Record::GroupOp {
                join: false,
                error: None,
                ..
            }) => format!("`{body}` accepted from {client} after it left {group}"),
            _ => continue,
        };
        return Err(violation(
            "posts-only-from-members",
            detail,
            last.into_iter().chain([record]).collect(),
        ));
    }
    Ok(())
}

/// Each member's group feed gives a group's posts in seq order, each once, and only
/// posts that were made.
fn group_feeds_in_order(log: &[Record]) -> Result<(), Violation> {
    let posted: BTreeSet<(&str, &str)> = log
        .iter()
        .filter_map(|record| match record {
            Record::Post { group, body, .. } => Some((group.as_str(), body.as_str())),
            _ => None,
        })
        .collect();
    let mut newest: BTreeMap<(&str, &str), &Record> = BTreeMap::new();
    for record in log {
        let Record::GroupMessage {
            client,
            group,
            message,
            ..
        } = record
        else {
            continue;
        };
        if !posted.contains(&(group.as_str(), message.body.as_str())) {
            return Err(violation(
                "group-feed-in-order",
                format!(
                    "{client} got `{}` in {group}, which no one posted",
                    message.body
                ),
                vec![record],
            ));
        }
        if let Some(previous @ Record::GroupMessage { message: last, .. }) =
            newest.insert((client, group), record)
            && message.seq <= last.seq
        {
            return Err(violation(
                "group-feed-in-order",
                format!(
                    "{client} got seq {} of {group} after seq {}",
                    message.seq, last.seq
                ),
                vec![previous, record],
            ));
        }
    }
    Ok(())
}

/// The accepted posts members have not received (yet): every client whose last
/// operation on the group that ended before the post began was an acknowledged join,
/// whose next one began after the post ended, and that stayed connected meanwhile, is
/// owed it.
pub fn posts_missing(log: &[Record]) -> Vec<(String, &Record)> {
    let gone = disconnections(log);
    let mut members: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut received: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for record in log {
        match record {
            Record::GroupOp { client, group, .. } => {
                members.insert((client, group));
            }
            Record::GroupMessage {
                client,
                group,
                message,
                ..
            } => {
                received.insert((client, group, &message.body));
            }
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for record in log {
        let Record::Post {
            group: posted_to,
            body,
            start_ms,
            end_ms,
            outcome: Outcome::Acked { .. },
            ..
        } = record
        else {
            continue;
        };
        for &(member, group) in &members {
            if group != posted_to || received.contains(&(member, group, body)) {
                continue;
            }
            let ops = group_ops(log, member, group);
            let before = ops.iter().rev().find(
                |op| matches!(op, Record::GroupOp { end_ms: op_end, .. } if op_end < start_ms),
            );
            let joined = matches!(
                before,
                Some(Record::GroupOp {
                    join: true,
                    error: None,
                    ..
                })
            );
            let stayed = ops.iter().all(|op| match op {
                Record::GroupOp {
                    start_ms: op_start,
                    end_ms: op_end,
                    ..
                } => op_end < start_ms || op_start > end_ms,
                _ => true,
            }) && gone.get(member).is_none_or(|at_ms| at_ms > end_ms);
            if joined && stayed {
                missing.push((member.to_owned(), record));
            }
        }
    }
    missing
}

/// Every accepted post reached every member that was one from before it to after it.
fn posts_reach_members(log: &[Record]) -> Result<(), Violation> {
    match posts_missing(log).into_iter().next() {
        None => Ok(()),
        Some((member, post)) => Err(violation(
            "posts-reach-members",
            format!("{member} was a member all along but never got the post"),
            vec![post],
        )),
    }
}

/// The joins not (yet) announced to the joiner: every acknowledged join of a client
/// that was known to be outside the group (it had never joined, or its last operation
/// was an acknowledged leave) must bring its own MEMBER_JOINED to its group feed. With
/// the joins whose outcome is unknown, the count of those events is bounded on both
/// sides; the second element says which bound is broken (true: too few), with the join
/// or the event that shows it.
pub fn joins_unannounced(log: &[Record]) -> Vec<(&Record, bool)> {
    let mut announced: BTreeMap<(&str, &str), Vec<&Record>> = BTreeMap::new();
    let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for record in log {
        match record {
            Record::GroupEvent {
                client,
                group,
                kind,
                subject,
                ..
            } if kind == "MemberJoined" && subject == client => {
                announced.entry((client, group)).or_default().push(record);
                pairs.insert((client, group));
            }
            Record::GroupOp { client, group, .. } => {
                pairs.insert((client, group));
            }
            _ => {}
        }
    }
    let mut broken = Vec::new();
    for (client, group) in pairs {
        let ops = group_ops(log, client, group);
        let (mut owed, mut attempts, mut last_owed) = (0, 0, None);
        let mut outside = true;
        for op in &ops {
            let Record::GroupOp { join, error, .. } = op else {
                continue;
            };
            if *join {
                attempts += 1;
                if outside && error.is_none() {
                    owed += 1;
                    last_owed = Some(*op);
                }
            }
            outside = !*join && error.is_none();
        }
        let events = announced
            .get(&(client, group))
            .map_or(&[][..], Vec::as_slice);
        if let Some(op) = last_owed.filter(|_| events.len() < owed) {
            broken.push((op, true));
        } else if events.len() > attempts
            && let Some(event) = events.last()
        {
            broken.push((*event, false));
        }
    }
    broken
}

/// Every join that made a client a member was announced to it, and no more.
fn joins_announced(log: &[Record]) -> Result<(), Violation> {
    match joins_unannounced(log).into_iter().next() {
        None => Ok(()),
        Some((op, missing)) => Err(violation(
            "joins-announced",
            match missing {
                true => "a join that made its client a member never brought it its own \
                         MEMBER_JOINED"
                    .to_owned(),
                false => "a client was told more joins of its own than it made".to_owned(),
            },
            vec![op],
        )),
    }
}

/// The client ids connected when `log` ends, but `lister`'s own (LIST_CLIENTS lists
/// the others).
pub fn connected_clients(log: &[Record], lister: &str) -> BTreeSet<u64> {
    let gone = disconnections(log);
    client_ids(log)
        .into_iter()
        .filter(|(name, _)| *name != lister && !gone.contains_key(name))
        .map(|(_, id)| id)
        .collect()
}

/// After the faults, every node's LIST_CLIENTS came to list exactly the connected
/// clients within the bound.
fn directory_converges(log: &[Record]) -> Result<(), Violation> {
    for (at, record) in log.iter().enumerate() {
        let Record::Directory {
            lister,
            node,
            listed,
            ..
        } = record
        else {
            continue;
        };
        let expected = connected_clients(&log[..at], lister);
        let listed: BTreeSet<u64> = listed.iter().copied().collect();
        if listed != expected {
            let extra: Vec<_> = listed.difference(&expected).collect();
            let absent: Vec<_> = expected.difference(&listed).collect();
            return Err(violation(
                "directory-converges",
                format!("node {node} lists clients {extra:?} that left and not {absent:?}"),
                vec![record],
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(seq: u64, body: &str) -> Seen {
        Seen {
            seq,
            id: format!("id-{body}"),
            body: body.to_owned(),
        }
    }

    fn acked(body: &str, seq: u64, at: u64) -> Record {
        Record::Publish {
            client: "p".to_owned(),
            node: 0,
            channel: "c".to_owned(),
            body: body.to_owned(),
            start_ms: at,
            end_ms: at + 1,
            outcome: Outcome::Acked {
                seq,
                id: format!("id-{body}"),
            },
        }
    }

    fn unavailable(body: &str, at: u64) -> Record {
        Record::Publish {
            client: "p".to_owned(),
            node: 0,
            channel: "c".to_owned(),
            body: body.to_owned(),
            start_ms: at,
            end_ms: at + 1,
            outcome: Outcome::Unavailable {
                error: "BACKPLANE_UNAVAILABLE".to_owned(),
            },
        }
    }

    fn subscribe(sub: &str, replay_from: Option<u64>, at: u64) -> Record {
        Record::Subscribe {
            sub: sub.to_owned(),
            node: 1,
            channel: "c".to_owned(),
            replay_from,
            start_ms: at,
            end_ms: at,
            error: None,
        }
    }

    fn deliver(sub: &str, seq: u64, body: &str) -> Record {
        Record::Deliver {
            sub: sub.to_owned(),
            channel: "c".to_owned(),
            at_ms: 50,
            message: seen(seq, body),
        }
    }

    fn final_history(node: usize, messages: Vec<Seen>) -> Record {
        Record::History {
            reader: format!("r{node}"),
            node,
            channel: "c".to_owned(),
            start_ms: 100,
            end_ms: 101,
            final_read: true,
            result: Ok(messages),
        }
    }

    fn drained(sub: &str, upto: u64, wanted: u64) -> Record {
        Record::Drained {
            sub: sub.to_owned(),
            channel: "c".to_owned(),
            upto,
            wanted,
        }
    }

    /// A run that holds: three acks, one publish refused that did land, a replaying
    /// subscriber and a live one, two nodes that agree.
    fn good_log() -> Vec<Record> {
        let history = vec![seen(1, "a"), seen(2, "b"), seen(3, "x"), seen(4, "c")];
        vec![
            subscribe("s1", Some(1), 0),
            acked("a", 1, 1),
            acked("b", 2, 2),
            unavailable("x", 3),
            deliver("s1", 1, "a"),
            subscribe("s2", None, 3),
            deliver("s1", 2, "b"),
            deliver("s1", 3, "x"),
            acked("c", 4, 4),
            deliver("s1", 4, "c"),
            deliver("s2", 4, "c"),
            final_history(0, history.clone()),
            final_history(1, history),
            drained("s1", 4, 4),
            drained("s2", 4, 4),
        ]
    }

    fn broken(log: &[Record]) -> &'static str {
        match check(log) {
            Ok(()) => panic!("the checker passed a bad log"),
            Err(violation) => {
                // What a failing run prints must render.
                assert!(violation.to_string().contains(violation.invariant));
                violation.invariant
            }
        }
    }

    #[test]
    fn a_good_log_passes_and_survives_json() {
        let log = good_log();
        assert_eq!(check(&log), Ok(()));
        let lines: Vec<String> = log
            .iter()
            .map(|record| serde_json::to_string(record).expect("serialises"))
            .collect();
        let back: Vec<Record> = lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("parses"))
            .collect();
        assert_eq!(back, log);
    }

    #[test]
    fn a_duplicate_seq_is_caught() {
        let mut log = good_log();
        // Two publishes acknowledged with the same seq.
        log.insert(9, acked("d", 4, 5));
        assert_eq!(broken(&log), "one-message-per-place");
    }

    #[test]
    fn a_message_stored_twice_is_caught() {
        let mut log = good_log();
        let history = vec![
            seen(1, "a"),
            seen(2, "b"),
            seen(3, "x"),
            seen(4, "c"),
            seen(5, "x"),
        ];
        log[11] = final_history(0, history.clone());
        log[12] = final_history(1, history);
        assert_eq!(broken(&log), "one-message-per-place");
    }

    #[test]
    fn a_lost_ack_is_caught() {
        let mut log = good_log();
        let history = vec![seen(1, "a"), seen(3, "x"), seen(4, "c")];
        log[11] = final_history(0, history.clone());
        log[12] = final_history(1, history);
        log.retain(|record| !matches!(record, Record::Deliver { message, .. } if message.seq == 2));
        assert_eq!(broken(&log), "acks-kept");
    }

    #[test]
    fn a_lost_ack_is_excused_by_an_announced_epoch_change_only() {
        let history = vec![seen(1, "c")];
        let mut log = vec![
            subscribe("s2", None, 0),
            acked("a", 1, 1),
            deliver("s2", 1, "a"),
            acked("c", 1, 20),
            deliver("s2", 1, "c"),
            final_history(0, history.clone()),
            final_history(1, history),
            drained("s2", 1, 1),
        ];
        assert_eq!(broken(&log), "one-message-per-place");
        log.insert(
            4,
            Record::EpochChanged {
                sub: "s2".to_owned(),
                channel: "c".to_owned(),
                first_seq: 1,
                at_ms: 15,
            },
        );
        assert_eq!(check(&log), Ok(()));
    }

    #[test]
    fn a_loss_announced_by_a_later_epoch_change_is_excused() {
        let told = |at_ms| Record::EpochChanged {
            sub: "s2".to_owned(),
            channel: "c".to_owned(),
            first_seq: 1,
            at_ms,
        };
        let history = vec![seen(1, "d")];
        let mut log = vec![
            subscribe("s2", None, 0),
            acked("a", 1, 1),
            deliver("s2", 1, "a"),
            told(10),
            acked("b", 1, 20),
            deliver("s2", 1, "b"),
            acked("c", 2, 21),
            deliver("s2", 2, "c"),
            told(40),
            acked("d", 1, 50),
            deliver("s2", 1, "d"),
            final_history(0, history.clone()),
            final_history(1, history),
            drained("s2", 1, 1),
        ];
        assert_eq!(check(&log), Ok(()));
        // Without the second announcement, "b" and "c" were lost silently.
        log.remove(8);
        assert_eq!(broken(&log), "acks-kept");
    }

    #[test]
    fn a_message_never_delivered_is_caught_unless_before_an_announced_first_seq() {
        let mut log = good_log();
        // s2, subscribed before any publish, was given seq 4 only.
        log[5] = subscribe("s2", None, 0);
        assert_eq!(broken(&log), "deliveries-owed");
        // Told that the epoch it follows began at seq 4: the ones before may be missing.
        log.insert(
            7,
            Record::EpochChanged {
                sub: "s2".to_owned(),
                channel: "c".to_owned(),
                first_seq: 4,
                at_ms: 3,
            },
        );
        assert_eq!(check(&log), Ok(()));
    }

    #[test]
    fn reordering_is_caught() {
        let mut log = good_log();
        log.swap(6, 7);
        assert_eq!(broken(&log), "subscribers-in-order");
    }

    #[test]
    fn a_gap_after_replay_is_caught() {
        let mut log = good_log();
        log.remove(6);
        assert_eq!(broken(&log), "replay-complete");
    }

    #[test]
    fn a_gap_in_a_live_feed_is_caught() {
        let mut log = good_log();
        // The live subscriber is given seq 2, then 4: it never got 3.
        log.insert(6, deliver("s2", 2, "b"));
        log.insert(7, deliver("s2", 3, "x"));
        assert_eq!(check(&log), Ok(()));
        log.remove(7);
        assert_eq!(broken(&log), "live-without-gaps");
    }

    #[test]
    fn diverging_nodes_are_caught() {
        let mut log = good_log();
        log[12] = final_history(1, vec![seen(1, "a"), seen(2, "b"), seen(3, "x")]);
        assert_eq!(broken(&log), "nodes-converge");
    }

    #[test]
    fn a_phantom_message_is_caught() {
        let mut log = good_log();
        let history = vec![
            seen(1, "a"),
            seen(2, "b"),
            seen(3, "x"),
            seen(4, "c"),
            seen(5, "?"),
        ];
        log[11] = final_history(0, history.clone());
        log[12] = final_history(1, history);
        assert_eq!(broken(&log), "acks-kept");
    }

    #[test]
    fn a_subscriber_left_behind_is_caught() {
        let mut log = good_log();
        log[14] = drained("s2", 3, 4);
        assert_eq!(broken(&log), "subscribers-caught-up");
    }

    fn connected(client: &str, client_id: u64, at_ms: u64) -> Record {
        Record::Connected {
            client: client.to_owned(),
            node: 0,
            client_id,
            at_ms,
        }
    }

    fn relay(body: &str, receivers: &[u64], outcomes: &[(u64, &str)], at: u64) -> Record {
        Record::Relay {
            client: "ann".to_owned(),
            node: 0,
            body: body.to_owned(),
            receivers: receivers.to_vec(),
            start_ms: at,
            end_ms: at + 1,
            result: Ok(outcomes
                .iter()
                .map(|(id, status)| (*id, (*status).to_owned()))
                .collect()),
        }
    }

    fn direct(client: &str, body: &str, at_ms: u64) -> Record {
        Record::Direct {
            client: client.to_owned(),
            sender_id: 1,
            body: body.to_owned(),
            at_ms,
        }
    }

    fn group_op(client: &str, join: bool, at: u64, error: Option<&str>) -> Record {
        Record::GroupOp {
            client: client.to_owned(),
            node: 0,
            group: "g".to_owned(),
            join,
            start_ms: at,
            end_ms: at + 1,
            error: error.map(str::to_owned),
        }
    }

    fn post(client: &str, body: &str, seq: u64, at: u64) -> Record {
        Record::Post {
            client: client.to_owned(),
            node: 0,
            group: "g".to_owned(),
            body: body.to_owned(),
            start_ms: at,
            end_ms: at + 1,
            outcome: Outcome::Acked {
                seq,
                id: format!("id-{body}"),
            },
        }
    }

    fn got_post(client: &str, body: &str, seq: u64) -> Record {
        Record::GroupMessage {
            client: client.to_owned(),
            group: "g".to_owned(),
            at_ms: 60,
            message: seen(seq, body),
        }
    }

    fn joined_event(client: &str, at_ms: u64) -> Record {
        Record::GroupEvent {
            client: client.to_owned(),
            group: "g".to_owned(),
            kind: "MemberJoined".to_owned(),
            subject: client.to_owned(),
            at_ms,
        }
    }

    fn directory(lister: &str, listed: &[u64]) -> Record {
        Record::Directory {
            lister: lister.to_owned(),
            node: 0,
            start_ms: 90,
            end_ms: 91,
            listed: listed.to_vec(),
        }
    }

    /// Relays, a group and the directory that hold: ann (1) relays to bob (2) and
    /// cy (3), once to the stale id of dee (4), who left; ann and bob join `g`, bob
    /// leaves and joins again, cy posts while not a member and is refused.
    fn traffic_log() -> Vec<Record> {
        vec![
            connected("ann", 1, 0),
            connected("bob", 2, 0),
            connected("cy", 3, 0),
            connected("dee", 4, 0),
            Record::Disconnected {
                client: "dee".to_owned(),
                at_ms: 1,
            },
            relay("r1", &[2, 3], &[(2, "delivered"), (3, "delivered")], 10),
            direct("bob", "r1", 12),
            direct("cy", "r1", 12),
            relay("r2", &[4, 2], &[(4, "unknown"), (2, "dropped")], 13),
            group_op("ann", true, 20, None),
            joined_event("ann", 21),
            group_op("bob", true, 20, None),
            joined_event("bob", 21),
            post("ann", "p1", 1, 30),
            got_post("ann", "p1", 1),
            got_post("bob", "p1", 1),
            group_op("bob", false, 32, None),
            post("ann", "p2", 2, 34),
            got_post("ann", "p2", 2),
            Record::Post {
                client: "cy".to_owned(),
                node: 0,
                group: "g".to_owned(),
                body: "p-refused".to_owned(),
                start_ms: 35,
                end_ms: 36,
                outcome: Outcome::Failed {
                    error: "FORBIDDEN".to_owned(),
                },
            },
            group_op("bob", true, 40, None),
            joined_event("bob", 41),
            post("bob", "p3", 3, 50),
            got_post("ann", "p3", 3),
            got_post("bob", "p3", 3),
            directory("ann", &[2, 3]),
        ]
    }

    #[test]
    fn a_good_traffic_log_passes_and_survives_json() {
        let log = traffic_log();
        assert_eq!(check(&log), Ok(()));
        for record in &log {
            let line = serde_json::to_string(record).expect("serialises");
            let back: Record = serde_json::from_str(&line).expect("parses");
            assert_eq!(&back, record);
        }
    }

    #[test]
    fn a_relay_to_someone_not_named_is_caught() {
        let mut log = traffic_log();
        log.insert(8, direct("ann", "r1", 12));
        assert_eq!(broken(&log), "relay-only-targets");
    }

    #[test]
    fn a_relay_received_twice_is_caught() {
        let mut log = traffic_log();
        log.insert(8, direct("bob", "r1", 13));
        assert_eq!(broken(&log), "relay-once");
    }

    #[test]
    fn a_delivered_relay_never_received_is_caught_unless_the_receiver_left() {
        let mut log = traffic_log();
        log.remove(7);
        assert_eq!(broken(&log), "relay-delivered-arrives");
        // cy closed its connection after the relay began: the body may be lost with it.
        log.insert(
            7,
            Record::Disconnected {
                client: "cy".to_owned(),
                at_ms: 11,
            },
        );
        // (It then no longer counts for the directory.)
        let last = log.len() - 1;
        log[last] = directory("ann", &[2]);
        assert_eq!(check(&log), Ok(()));
    }

    #[test]
    fn unknown_for_a_connected_receiver_is_caught() {
        let mut log = traffic_log();
        log[8] = relay("r2", &[4, 2], &[(4, "unknown"), (2, "unknown")], 13);
        assert_eq!(broken(&log), "relay-unknown-only-when-gone");
        // A restart of Redis meanwhile excuses nothing, unless it lost the data (and
        // with it the nodes' registrations): an epoch change was announced.
        log.insert(
            8,
            Record::Fault {
                kind: "kill-restart".to_owned(),
                start_ms: 5,
                end_ms: 8,
            },
        );
        assert_eq!(broken(&log), "relay-unknown-only-when-gone");
        log.push(Record::EpochChanged {
            sub: "s".to_owned(),
            channel: "c".to_owned(),
            first_seq: 1,
            at_ms: 9,
        });
        assert_eq!(check(&log), Ok(()));
    }

    #[test]
    fn a_post_accepted_after_an_acknowledged_leave_is_caught() {
        let mut log = traffic_log();
        // bob posts between its leave and its next join, and is accepted.
        log.insert(17, post("bob", "p-bad", 3, 33));
        assert_eq!(broken(&log), "posts-only-from-members");
        // A leave that was never answered leaves the membership open.
        log[16] = group_op("bob", false, 32, Some("timed out"));
        assert_ne!(
            check(&log).map_err(|v| v.invariant),
            Err("posts-only-from-members")
        );
    }

    #[test]
    fn a_post_accepted_from_one_who_never_joined_is_caught() {
        let mut log = traffic_log();
        log[19] = post("cy", "p-refused", 3, 35);
        assert_eq!(broken(&log), "posts-only-from-members");
    }

    #[test]
    fn group_posts_out_of_order_or_twice_are_caught() {
        let mut log = traffic_log();
        log.swap(14, 18);
        assert_eq!(broken(&log), "group-feed-in-order");
        let mut log = traffic_log();
        log.insert(15, got_post("ann", "p1", 1));
        assert_eq!(broken(&log), "group-feed-in-order");
    }

    #[test]
    fn a_post_a_member_missed_is_caught_but_not_while_it_was_away() {
        let mut log = traffic_log();
        // bob was away for p2: not owed.
        assert_eq!(check(&log), Ok(()));
        log.remove(24);
        assert_eq!(broken(&log), "posts-reach-members");
    }

    #[test]
    fn a_join_not_announced_to_its_joiner_or_one_never_made_is_caught() {
        let mut log = traffic_log();
        // bob's second join brought no MEMBER_JOINED.
        log.remove(21);
        assert_eq!(broken(&log), "joins-announced");
        // cy was told of a join of its own it never made.
        let mut log = traffic_log();
        log.insert(20, joined_event("cy", 37));
        assert_eq!(broken(&log), "joins-announced");
    }

    #[test]
    fn a_directory_that_keeps_a_departed_client_or_misses_one_is_caught() {
        let mut log = traffic_log();
        let last = log.len() - 1;
        log[last] = directory("ann", &[2, 3, 4]);
        assert_eq!(broken(&log), "directory-converges");
        log[last] = directory("ann", &[2]);
        assert_eq!(broken(&log), "directory-converges");
    }
}
