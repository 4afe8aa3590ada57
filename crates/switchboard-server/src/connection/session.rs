//! A session's registration and cleanup: after the handshake, the checks that accept or
//! refuse it (connection limit, the embedding application's hook), its writer and
//! SESSION_ACK, and its entry in the hub; at the end, the removal of every trace of it,
//! the goodbye, and the writer's last flush.

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::packet::{Disconnect, Packet, SessionAck, SessionInit, features};
use switchboard_proto::{ErrorCode, Text};
use tokio::io::AsyncWrite;
use tracing::{debug, warn};
use uuid::Uuid;

use super::frame_reader::FrameReader;
use super::handshake::{Ended, Refused, handshake};
use super::transport::{Readable, Transport};
use super::{Opened, Peer};
use crate::cmd::Session;
use crate::hooks::SessionInfo;
use crate::hub::directory::ClientEntry;
use crate::hub::stats::Counters;
use crate::hub::{Caller, Hub};
use crate::log;
use crate::outbox::Outgoing;
use crate::security::Identity;
use crate::security::authenticate::{Credentials, Login, authenticate};
use crate::writer;

/// A session the server accepts, not opened yet.
struct Accepted {
    /// The request id of its SESSION_INIT.
    request_id: u32,
    name: Text,
    info: SessionInfo,
    identity: Identity,
    /// The hub's policy generation, read before the identity was judged by the policy,
    /// so that no reload after that goes unnoticed.
    policy_seen: u64,
    heartbeat: Duration,
}

/// The handshake and the opening of the session; `None` if no session opened.
pub(super) async fn open<S: Transport>(
    hub: &Arc<Hub>,
    stream: S,
    peer: Peer,
) -> Option<Opened<S::Read>> {
    let (reader, mut writer) = stream.into_halves();
    let mut reader = FrameReader::new(reader, hub.frame_budget().clone());
    match accept(hub, &mut reader, &mut writer, &peer).await {
        Ok(accepted) => Some(register(hub, accepted, reader, writer).await),
        Err(Ended::Gone(error)) => {
            // Gone before a session opened (a reset, a health check): nothing was refused.
            debug!(target: log::CONNECTION, %error, "connection ended during the handshake");
            None
        }
        Err(Ended::ShuttingDown) => None,
        Err(Ended::Refused(refused)) => {
            hub.counters().refused(refused.reason());
            refused.tell(hub.codec(), &mut writer).await;
            None
        }
    }
}

/// Runs the handshake within its time limit and decides whether the session may open.
async fn accept<R, W>(
    hub: &Hub,
    reader: &mut FrameReader<R>,
    writer: &mut W,
    peer: &Peer,
) -> Result<Accepted, Ended>
where
    R: Readable,
    W: AsyncWrite + Unpin,
{
    let limit = hub.config().handshake_timeout;
    let opening = tokio::select! {
        () = hub.shutting_down() => return Err(Ended::ShuttingDown),
        opening = tokio::time::timeout(limit, handshake(hub.codec(), reader, writer)) => opening,
    };
    let (request_id, init) = match opening {
        Ok(Ok(init)) => init,
        Ok(Err(Ended::Refused(refused))) => {
            Counters::add(&hub.counters().protocol_errors, 1);
            warn!(target: log::ERROR, %refused, "connection refused");
            return Err(Ended::Refused(refused));
        }
        Ok(Err(ended)) => return Err(ended),
        Err(_) => {
            warn!(target: log::ERROR, "no session opened within {limit:?}; closing");
            return Err(Refused::new(0, ErrorCode::SessionRequired, "handshake timed out").into());
        }
    };
    if hub.connection_count() >= hub.config().max_connections {
        let message = "the server is at its connection limit";
        return Err(Refused::new(request_id, ErrorCode::LimitReached, message).into());
    }
    // Read before the policy is: a reload while logging in is not missed.
    let policy_seen = hub.policy_generation();
    let Login { identity, name } = log_in(hub, request_id, &init, peer).await?;
    // The name is kept for the session's life: a copy of its own, because the decoded
    // one is a slice of the read buffer, which it would keep from being freed.
    let name = Text::from(name.as_str());
    let client_id = hub.next_client_id();
    let info = SessionInfo {
        client_id,
        session_id: Uuid::now_v7(),
        name: name.to_string(),
        peer: peer.describe(),
        admin: identity.admin,
    };
    let certificate_names = peer.certificate_names();
    if !certificate_names.is_empty() {
        debug!(target: log::CONNECTION, ?certificate_names, "client certificate");
        if let Err(reason) = hub.hooks().on_client_certificate(&info, certificate_names) {
            return Err(Refused::new(request_id, ErrorCode::Rejected, reason).into());
        }
    }
    if let Err(reason) = hub.hooks().on_connect(&info) {
        return Err(Refused::new(request_id, ErrorCode::Rejected, reason).into());
    }
    Ok(Accepted {
        request_id,
        name,
        identity,
        policy_seen,
        info,
        heartbeat: negotiate_heartbeat(hub, init.heartbeat_ms),
    })
}

/// Authenticates the session. A failed login is counted, logged with the peer's
/// address, and answered late (the later the more the address failed lately); an
/// address that failed too often is refused without a look at its credentials.
async fn log_in(
    hub: &Hub,
    request_id: u32,
    init: &SessionInit,
    peer: &Peer,
) -> Result<Login, Ended> {
    let facts = peer.facts();
    let policy = hub.policy();
    let throttle = &policy.config.throttle;
    if let Some(address) = facts.address
        && let Some(left) = hub.logins().refused(address)
    {
        Counters::add(&hub.counters().auth_failures, 1);
        warn!(target: log::CONNECTION, peer = %peer.describe(), "login refused: too many failed logins from this address");
        let message = format!(
            "too many failed logins from this address; try again in {} s",
            left.as_secs().max(1)
        );
        return Err(Refused::new(request_id, ErrorCode::AuthFailed, message).into());
    }
    let credentials = Credentials {
        name: init.name.as_str(),
        token: &init.credentials,
        user: init.user.as_str(),
        password: &init.password,
        jwt: &init.jwt,
    };
    let admin_token = hub.config().admin_token.as_deref();
    match authenticate(&policy, admin_token, credentials, &facts, hub.logins()).await {
        Ok(login) => Ok(login),
        Err(denied) => {
            if denied.failed_login {
                Counters::add(&hub.counters().auth_failures, 1);
                warn!(target: log::CONNECTION, peer = %peer.describe(), user = %init.user, reason = %denied.message, "login failed");
                if let Some(address) = facts.address {
                    let delay = hub.logins().failed(address, throttle);
                    tokio::time::sleep(delay).await;
                }
            }
            Err(Refused::new(request_id, denied.code, denied.message).into())
        }
    }
}

fn negotiate_heartbeat(hub: &Hub, asked_ms: u32) -> Duration {
    if asked_ms == 0 {
        return hub.config().heartbeat;
    }
    Duration::from_millis(u64::from(asked_ms))
        .clamp(hub.config().heartbeat_min, hub.config().heartbeat_max)
}

/// Opens an accepted session: starts its writer, answers SESSION_ACK, and makes it
/// reachable by others.
async fn register<R, W>(
    hub: &Arc<Hub>,
    accepted: Accepted,
    reader: FrameReader<R>,
    writer: W,
) -> Opened<R>
where
    W: super::WriteHalf,
{
    let Accepted {
        request_id,
        name,
        info,
        identity,
        policy_seen,
        heartbeat,
    } = accepted;
    let client_id = info.client_id;
    let session_id = info.session_id;
    let admin = info.admin;
    // The name moved, not cloned: a clone of a copied `Text` allocates a shared count.
    let (outbox, rx) = hub.new_outbox(client_id, name);
    writer::start(rx, writer, hub.clone());
    let caller = Caller {
        outbox: outbox.clone(),
    };
    let permissions = hub.policy().permissions(&identity);
    let mut session = Session::new(
        caller,
        info,
        hub.hooks().follows_sessions(),
        identity,
        permissions,
        heartbeat * 3,
        policy_seen,
    );
    let limits = hub.policy().session_limits(&session.identity);
    session.apply_limits(hub, limits);
    let ack = SessionAck {
        client_id,
        session_id,
        heartbeat_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
        max_frame: hub.config().max_frame,
        max_body: hub.config().max_body,
        software: concat!("switchboard/", env!("CARGO_PKG_VERSION")).into(),
        // A copy, not a clone: a clone of the session's name would allocate a shared
        // count that stays for the session's life.
        name: Text::from(session.caller.name().as_str()),
        user: session
            .identity
            .user
            .as_deref()
            .map(Text::from)
            .unwrap_or_default(),
        features: if hub.config().publish_batches {
            features::PUBLISH_BATCH
        } else {
            0
        },
    };
    if let Some(cluster) = hub.cluster() {
        // Before the answer: once the client is told it is connected, its groups are
        // followed here, so that what they bring from then on reaches it.
        cluster.session_opened(session.caller.name()).await;
    }
    session.reply(request_id, Packet::SessionAck(ack)).await;
    // Only now can others reach the session (relays by id, group posts by name), so the
    // SESSION_ACK is always the first frame it is sent.
    hub.register_session(ClientEntry {
        client_id,
        outbox,
        permissions: session.permissions.clone(),
    });
    let name = session.caller.name();
    Counters::add(&hub.counters().connections_total, 1);
    let method = session.identity.method;
    debug!(target: log::CONNECTION, client_id, name = %name, %session_id, admin, ?method, heartbeat_ms = heartbeat.as_millis() as u64, "session opened");
    Opened { session, reader }
}

/// Removes every trace of the session from the hub, says goodbye and lets the writer
/// flush.
pub(super) async fn close(hub: &Hub, mut session: Session, code: ErrorCode, reason: String) {
    let client_id = session.caller.client_id();
    session.release_limits(hub);
    hub.unregister_session(client_id, session.take_subscriptions());
    if let Some(cluster) = hub.cluster() {
        cluster.session_closed(session.caller.name());
    }
    if code == ErrorCode::SlowConsumer {
        Counters::add(&hub.counters().slow_consumers_disconnected, 1);
    }
    session
        .finish_durable_acks(hub.config().shutdown_grace)
        .await;
    let goodbye = if code != ErrorCode::Normal {
        Disconnect::new(code, reason.as_str())
    } else {
        Disconnect::new(code, "goodbye")
    };
    let outbox = session.caller.outbox.clone();
    let writer = outbox.writer();
    // A slow consumer's queue may be full: then it gets no DISCONNECT, only the close.
    let said_goodbye = matches!(
        tokio::time::timeout(
            Duration::from_millis(100),
            outbox.send_last(Outgoing::Close(goodbye)),
        )
        .await,
        Ok(Ok(()))
    );
    // The disconnect hook gets the session's info; the session itself (with its outbox
    // sender) goes now, so that the writer sees the queue close.
    let info = session.info.take();
    let name = session.caller.name().clone();
    drop(session);
    drop(outbox);
    // The writer gets the grace period to flush what is queued, unless not even the
    // DISCONNECT fitted: then its client is not reading, and waiting only holds the
    // socket and the queue (and a shutdown) for nothing.
    let grace = if said_goodbye {
        hub.config().shutdown_grace
    } else {
        Duration::ZERO
    };
    writer.finished_within(grace).await;
    if let Some(info) = info {
        hub.hooks().on_disconnect(&info, &reason);
    }
    Counters::add(&hub.counters().connections_closed, 1);
    debug!(target: log::CONNECTION, client_id, name = %name, code = %code, %reason, "session closed");
}
