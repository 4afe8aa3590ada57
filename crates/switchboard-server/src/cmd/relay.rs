//! RELAY: a body sent straight to other clients by id, stored nowhere.

use std::collections::HashMap;

use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    Direct, MAX_RECEIVERS, Packet, Relay, RelayOutcome, RelayResult, RelayStatus,
};

use super::permission::{ANONYMOUS_USER, denied};
use super::session::Session;
use crate::cluster::directory;
use crate::cluster::node::ClusterNode;
use crate::cluster::{ClientRecord, RelayRequest};
use crate::error::Refusal;
use crate::hub::Hub;
use crate::hub::directory::ClientEntry;
use crate::hub::stats::Counters;
use crate::outbox::DirectDelivery;
use crate::security::permissions::{Grants, Operation};
use crate::time::now_us;

/// Checks the whole relay first: either every receiver gets the body or none does.
fn check(hub: &Hub, relay: &Relay) -> Result<(), Refusal> {
    if relay.receivers.is_empty() {
        return Err(Refusal::invalid("a relay needs at least one receiver"));
    }
    if relay.receivers.len() > MAX_RECEIVERS {
        return Err(Refusal::new(
            ErrorCode::TooManyReceivers,
            format!(
                "a relay may name at most {MAX_RECEIVERS} receivers; this one names {}",
                relay.receivers.len()
            ),
        ));
    }
    if relay.body.len() > hub.config().max_relay_bytes {
        return Err(Refusal::new(
            ErrorCode::TooLarge,
            format!(
                "relay body of {} bytes is over the limit of {} bytes",
                relay.body.len(),
                hub.config().max_relay_bytes
            ),
        ));
    }
    Ok(())
}

/// Whether the session may relay to the client of `entry`: the client takes relays (all
/// its roles say `receive_relay`; admin senders reach it regardless) and the sender's
/// `relay` rule allows its user (a client without a user counts as `anonymous`).
pub(super) fn reachable(session: &Session, entry: &ClientEntry) -> bool {
    may_reach(
        session,
        entry.permissions.grants().receives_relay(),
        entry.permissions.user(),
    )
}

/// [`reachable`] for a client of another node, from its directory record.
pub(super) fn reachable_record(session: &Session, record: &ClientRecord) -> bool {
    may_reach(session, record.receives_relay, record.user.as_deref())
}

fn may_reach(session: &Session, receives_relay: bool, user: Option<&str>) -> bool {
    let grants = session.permissions.grants();
    if matches!(*grants, Grants::Everything { admin: true }) {
        return true;
    }
    if !receives_relay {
        return false;
    }
    grants.is_everything() || grants.allows(Operation::Relay, user.unwrap_or(ANONYMOUS_USER))
}

/// Checks every receiver the relay names against the session's permissions; one it may
/// not reach refuses the whole relay. Receivers not connected are left to be reported
/// `unknown`.
fn permit(hub: &Hub, session: &Session, relay: &Relay) -> Result<(), Refusal> {
    let grants = session.permissions.grants();
    if matches!(*grants, Grants::Everything { admin: true }) {
        return Ok(());
    }
    for &client_id in &relay.receivers {
        let Some(entry) = hub.client_entry(client_id) else {
            continue;
        };
        if !entry.permissions.grants().receives_relay() {
            let subject = format!("client {client_id}");
            return Err(denied(
                hub,
                "relay to",
                &subject,
                Some("it does not take relays"),
            ));
        }
        let user = entry.permissions.user().unwrap_or(ANONYMOUS_USER);
        if !grants.is_everything() && !grants.allows(Operation::Relay, user) {
            return Err(denied(hub, "relay to", user, None));
        }
    }
    Ok(())
}

/// Cluster mode: the directory's records of the receivers on other nodes, each checked
/// like a local one by [`permit`]. Receivers it does not know (not connected anywhere,
/// or on a node that is not live) are left to be reported `unknown`.
async fn permit_remote(
    hub: &Hub,
    session: &Session,
    cluster: &ClusterNode,
    relay: &Relay,
) -> Result<HashMap<u64, ClientRecord>, Refusal> {
    let node = cluster.backplane().node_id();
    let mut remote: Vec<u64> = relay
        .receivers
        .iter()
        .copied()
        .filter(|id| id >> 32 != node)
        .collect();
    remote.sort_unstable();
    remote.dedup();
    if remote.is_empty() {
        return Ok(HashMap::new());
    }
    let records = cluster.backplane().client_records(&remote).await?;
    let mut known = HashMap::new();
    for record in records.into_iter().flatten() {
        if !reachable_record(session, &record) {
            return Err(if record.receives_relay {
                let user = record.user.as_deref().unwrap_or(ANONYMOUS_USER);
                denied(hub, "relay to", user, None)
            } else {
                let subject = format!("client {}", record.id);
                denied(hub, "relay to", &subject, Some("it does not take relays"))
            });
        }
        known.insert(record.id, record);
    }
    Ok(known)
}

pub(crate) async fn relay(hub: &Hub, session: &Session, request_id: u32, relay: Relay) {
    if let Err(refusal) = check(hub, &relay).and_then(|()| permit(hub, session, &relay)) {
        session.refuse(request_id, refusal).await;
        return;
    }
    let remote = match hub.cluster() {
        Some(cluster) => match permit_remote(hub, session, cluster, &relay).await {
            Ok(records) => Some((cluster, records)),
            Err(refusal) => {
                session.refuse(request_id, refusal).await;
                return;
            }
        },
        None => None,
    };
    let time_us = now_us();
    let direct = Direct {
        sender_id: session.caller.client_id(),
        sender_name: session.caller.name().clone(),
        time_us,
        content_type: relay.content_type.clone(),
        body: relay.body.clone(),
    };
    let Some(frame) = hub.shared_frame(&Packet::Direct(direct)) else {
        session
            .refuse(
                request_id,
                Refusal::new(ErrorCode::Internal, "relay could not be encoded"),
            )
            .await;
        return;
    };
    let mut remote_statuses = match &remote {
        Some((cluster, records)) if !records.is_empty() => {
            let request = RelayRequest {
                sender_id: session.caller.client_id(),
                sender_name: session.caller.name().as_str().to_owned(),
                time_us,
                to_any_client: matches!(
                    *session.permissions.grants(),
                    Grants::Everything { admin: true }
                ),
                content_type: relay.content_type.as_str().to_owned(),
                body: relay.body.clone(),
                receivers: Vec::new(),
            };
            directory::relay_to_nodes(cluster, &request, &relay.receivers, records).await
        }
        _ => HashMap::new(),
    };
    let mut delivered = 0;
    let mut dropped = 0;
    // A receiver without room is not disconnected: the body is dropped for it and the
    // sender told (a relay is unsolicited; see `outbox`).
    let outcomes = relay
        .receivers
        .iter()
        .map(|&client_id| {
            // Receivers of other nodes were answered for by their node.
            if let Some(status) = remote
                .as_ref()
                .filter(|(_, records)| records.contains_key(&client_id))
                .and_then(|_| remote_statuses.get_mut(&(client_id >> 32)))
                .and_then(|statuses| statuses.pop_front())
            {
                return RelayOutcome { client_id, status };
            }
            let status = match hub
                .outbox_of(client_id)
                .map(|o| o.deliver_direct(frame.clone()))
            {
                None => RelayStatus::Unknown,
                Some(DirectDelivery::Queued) => {
                    delivered += 1;
                    RelayStatus::Delivered
                }
                Some(DirectDelivery::NoRoom | DirectDelivery::Gone) => {
                    dropped += 1;
                    RelayStatus::Dropped
                }
            };
            RelayOutcome { client_id, status }
        })
        .collect();
    Counters::add(&hub.counters().relays, 1);
    Counters::add(&hub.counters().relayed_deliveries, delivered);
    Counters::add(&hub.counters().relay_deliveries_dropped, dropped);
    session
        .reply(request_id, Packet::RelayResult(RelayResult { outcomes }))
        .await;
}
