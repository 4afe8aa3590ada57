//! RELAY: a body sent straight to other clients by id, stored nowhere.

use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    Direct, MAX_RECEIVERS, Packet, Relay, RelayOutcome, RelayResult, RelayStatus,
};

use super::permission::{ANONYMOUS_USER, denied};
use super::session::Session;
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
    let grants = session.permissions.grants();
    if matches!(*grants, Grants::Everything { admin: true }) {
        return true;
    }
    if !entry.permissions.grants().receives_relay() {
        return false;
    }
    grants.is_everything()
        || grants.allows(
            Operation::Relay,
            entry.permissions.user().unwrap_or(ANONYMOUS_USER),
        )
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

pub(crate) async fn relay(hub: &Hub, session: &Session, request_id: u32, relay: Relay) {
    if let Err(refusal) = check(hub, &relay).and_then(|()| permit(hub, session, &relay)) {
        session.refuse(request_id, refusal).await;
        return;
    }
    let direct = Direct {
        sender_id: session.caller.client_id,
        sender_name: session.caller.name.clone(),
        time_us: now_us(),
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
    let mut delivered = 0;
    let mut dropped = 0;
    // A receiver without room is not disconnected: the body is dropped for it and the
    // sender told (a relay is unsolicited; see `outbox`).
    let outcomes = relay
        .receivers
        .iter()
        .map(|&client_id| {
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
