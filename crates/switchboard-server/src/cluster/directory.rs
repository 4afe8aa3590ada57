//! Cluster mode's client directory and relay: every node publishes its sessions to the
//! backplane's directory, LIST_CLIENTS merges this node's sessions (authoritative for
//! itself) with the other nodes' records in id order, and RELAY sends one message per
//! node to the clients connected elsewhere, which that node delivers and answers for.
//!
//! A client id names its node (`id >> 32`), so a relay never asks where a client is:
//! the directory only says whether it is connected (and how its relay rules read), and
//! its node decides the outcome, as one server does today.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use futures::future::join_all;
use switchboard_proto::packet::{ClientInfo, Direct, Packet, RelayOutcome, RelayStatus};
use tracing::warn;

use super::node::ClusterNode;
use crate::error::Refusal;
use crate::hub::Hub;
use crate::hub::directory::ClientEntry;
use crate::hub::listing::{Page, PageSize};
use crate::hub::stats::Counters;
use crate::log;
use crate::outbox::DirectDelivery;

/// Records asked of the backplane per round while filling a LIST_CLIENTS page.
const LIST_BATCH: usize = 500;
/// Rounds a LIST_CLIENTS page reads at most before it answers with what it has (and a
/// cursor), so that a long run of clients the asker may not see costs one page of time.
const LIST_ROUNDS: usize = 8;

/// What other nodes know of a connected client: enough to list it and to decide
/// whether a relay may reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: u64,
    pub name: String,
    /// The session's user; none for a session without one.
    pub user: Option<String>,
    pub connected_us: u64,
    pub receives_relay: bool,
}

impl ClientRecord {
    /// The node the client is connected to.
    pub fn node(&self) -> u64 {
        self.id >> 32
    }
}

/// A relay to some clients of one node, as the sending node checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRequest {
    pub sender_id: u64,
    pub sender_name: String,
    pub time_us: u64,
    /// The sender may reach clients that do not take relays (an admin).
    pub to_any_client: bool,
    pub content_type: String,
    pub body: Bytes,
    pub receivers: Vec<u64>,
}

/// A relay from another node, to be answered through the backplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRelay {
    pub from_node: u64,
    /// The sender's number for this call, given back with the answer.
    pub call: u64,
    pub request: RelayRequest,
}

/// The directory record of a session of this node.
pub(crate) fn record_of(entry: &ClientEntry) -> ClientRecord {
    ClientRecord {
        id: entry.client_id,
        name: entry.name().as_str().to_owned(),
        user: entry.permissions.user().map(str::to_owned),
        connected_us: entry.connected_since_us(),
        receives_relay: entry.permissions.grants().receives_relay(),
    }
}

/// A page of LIST_CLIENTS across the cluster (every client but `except`), in client id
/// order after the cursor's client, with the same page bounds as on one server. This
/// node's own clients come from its sessions, the others' from the directory.
pub(crate) async fn client_page(
    hub: &Hub,
    cluster: &ClusterNode,
    except: u64,
    cursor: Option<&Bytes>,
    size: PageSize,
    visible_here: impl Fn(&ClientEntry) -> bool,
    visible_there: impl Fn(&ClientRecord) -> bool,
) -> Result<Page<ClientInfo>, Refusal> {
    let after = Hub::client_cursor(cursor)?;
    let node = cluster.backplane().node_id();
    let wanted = size.entries().saturating_add(1).min(LIST_BATCH * 2);
    let mut remote = Vec::new();
    // The last id read from the directory while it had more: entries past it are left
    // to the next page, since remote ones past it are not known yet.
    let mut read_up_to = None;
    let mut from = after;
    for _ in 0..LIST_ROUNDS {
        let batch = cluster.backplane().list_clients(from, LIST_BATCH).await?;
        let full = batch.len() >= LIST_BATCH;
        let last = batch.last().map(|record| record.id);
        remote.extend(
            batch
                .into_iter()
                .filter(|record| record.node() != node && record.id != except)
                .filter(|record| visible_there(record))
                .map(|record| ClientInfo {
                    client_id: record.id,
                    name: record.name.into(),
                    connected_since_us: record.connected_us,
                }),
        );
        read_up_to = if full { last } else { None };
        if !full || remote.len() >= wanted {
            break;
        }
        from = last;
    }
    let mut clients = hub.local_clients_after(except, after, visible_here);
    clients.extend(remote);
    if let Some(bound) = read_up_to {
        clients.retain(|client| client.client_id <= bound);
    }
    clients.sort_by_key(|client| client.client_id);
    Ok(Hub::client_page_of(clients, size, read_up_to))
}

/// Relays `request` (its receivers left empty) to the receivers of other nodes that
/// the directory knows (`records`), one message per node, all nodes at once. Returns
/// each node's outcomes in the order its receivers appear in `receivers`. A node that
/// does not answer within the backplane's bound gets `Dropped` for each of its
/// receivers: the sender is told the body may not have arrived and that sending again
/// later may succeed (it may also have arrived: the answer, not the delivery, is what
/// was lost).
pub(crate) async fn relay_to_nodes(
    cluster: &ClusterNode,
    request: &RelayRequest,
    receivers: &[u64],
    records: &HashMap<u64, ClientRecord>,
) -> HashMap<u64, VecDeque<RelayStatus>> {
    let mut by_node: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for id in receivers {
        if records.contains_key(id) {
            by_node.entry(id >> 32).or_default().push(*id);
        }
    }
    let calls = by_node.into_iter().map(|(node, ids)| async move {
        let request = RelayRequest {
            receivers: ids.clone(),
            ..request.clone()
        };
        let statuses = match cluster.backplane().relay(node, request).await {
            Ok(outcomes) if outcomes.len() == ids.len() => {
                outcomes.into_iter().map(|outcome| outcome.status).collect()
            }
            Ok(outcomes) => {
                warn!(target: log::ERROR, node, receivers = ids.len(), outcomes = outcomes.len(), "relay answer does not match its receivers");
                ids.iter().map(|_| RelayStatus::Dropped).collect()
            }
            Err(refusal) => {
                warn!(target: log::ERROR, node, error = %refusal.message, "relay to another node not confirmed");
                ids.iter().map(|_| RelayStatus::Dropped).collect()
            }
        };
        (node, statuses)
    });
    join_all(calls).await.into_iter().collect()
}

/// Delivers a relay from another node to this node's clients, under the rules one
/// server applies: a receiver not connected here is unknown; one that does not take
/// relays (its permissions changed after the sender's node read its record) is not
/// given the body and is reported dropped; one without room, dropped.
pub(crate) fn deliver(hub: &Hub, node: u64, relay: &IncomingRelay) -> Vec<RelayOutcome> {
    let request = &relay.request;
    let direct = Direct {
        sender_id: request.sender_id,
        sender_name: request.sender_name.as_str().into(),
        time_us: request.time_us,
        content_type: request.content_type.as_str().into(),
        body: request.body.clone(),
    };
    let frame = hub.shared_frame(&Packet::Direct(direct));
    let mut delivered = 0;
    let mut dropped = 0;
    let outcomes = request
        .receivers
        .iter()
        .map(|&client_id| {
            let entry = (client_id >> 32 == node)
                .then(|| hub.client_entry(client_id))
                .flatten();
            let status = match (entry, &frame) {
                (None, _) => RelayStatus::Unknown,
                (Some(_), None) => RelayStatus::Dropped,
                (Some(entry), Some(_))
                    if !request.to_any_client && !entry.permissions.grants().receives_relay() =>
                {
                    RelayStatus::Dropped
                }
                (Some(entry), Some(frame)) => match entry.outbox.deliver_direct(frame.clone()) {
                    DirectDelivery::Queued => RelayStatus::Delivered,
                    DirectDelivery::NoRoom | DirectDelivery::Gone => RelayStatus::Dropped,
                },
            };
            match status {
                RelayStatus::Delivered => delivered += 1,
                RelayStatus::Dropped => dropped += 1,
                RelayStatus::Unknown => {}
            }
            RelayOutcome { client_id, status }
        })
        .collect();
    Counters::add(&hub.counters().relayed_deliveries, delivered);
    Counters::add(&hub.counters().relay_deliveries_dropped, dropped);
    outcomes
}
