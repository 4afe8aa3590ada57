//! STOP, RELOAD and STATS: operations on the server itself.

use switchboard_proto::packet::{OkReply, Packet, Stat, StatsReply};
use tracing::info;

use switchboard_proto::ErrorCode;

use super::session::Session;
use crate::error::Refusal;
use crate::hub::Hub;
use crate::hub::stats::Counters;
use crate::log;
use crate::security::ReloadError;
use crate::security::permissions::AdminOperation;

/// STOP: admin sessions only (the local Unix socket, or the admin token). The OK is
/// queued before shutdown begins, so it reaches the caller before the DISCONNECT.
pub(crate) async fn stop(hub: &Hub, session: &Session, request_id: u32) {
    if let Err(refusal) = permit_server_admin(hub, session, AdminOperation::Stop) {
        session.refuse(request_id, refusal).await;
        return;
    }
    session.reply(request_id, Packet::Ok(OkReply)).await;
    info!(target: log::GENERAL, client_id = session.caller.client_id(), name = %session.caller.name(), "stop requested");
    hub.begin_shutdown();
}

/// Whether the session may stop or reload the server: by its roles' admin operations
/// where roles restrict it; a session whose roles do not restrict it (an open hub, a
/// hub without roles) must be an admin session, as stopping always needed.
fn permit_server_admin(
    hub: &Hub,
    session: &Session,
    operation: AdminOperation,
) -> Result<(), Refusal> {
    if !session.permissions.is_everything() {
        return session.permit_admin(hub, operation);
    }
    if session.identity.admin {
        return Ok(());
    }
    Counters::add(&hub.counters().permission_denials, 1);
    Err(Refusal::forbidden(format!(
        "{} needs an admin session: connect over the server's Unix socket or present the admin token",
        match operation {
            AdminOperation::Reload => "reloading the configuration",
            _ => "stopping the server",
        }
    )))
}

/// RELOAD: admin sessions, or sessions whose roles grant `reload`. The configuration is
/// read again from the server's reload source and put in force; the answer is OK, or
/// ERROR with the reason it was refused (the configuration in force is kept).
pub(crate) async fn reload(hub: &Hub, session: &Session, request_id: u32) {
    if let Err(refusal) = permit_server_admin(hub, session, AdminOperation::Reload) {
        session.refuse(request_id, refusal).await;
        return;
    }
    info!(target: log::GENERAL, client_id = session.caller.client_id(), name = %session.caller.name(), "reload requested");
    match hub.reload_from_source() {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(error) => {
            let code = match error {
                ReloadError::NoSource => ErrorCode::NotFound,
                ReloadError::Read(_) | ReloadError::Invalid(_) | ReloadError::Tls(_) => {
                    ErrorCode::InvalidArgument
                }
            };
            session
                .refuse(request_id, Refusal::new(code, error.to_string()))
                .await;
        }
    }
}

pub(crate) async fn stats(hub: &Hub, session: &Session, request_id: u32) {
    if let Err(refusal) = session.permit_admin(hub, AdminOperation::Stats) {
        session.refuse(request_id, refusal).await;
        return;
    }
    let mut stats = hub.counters().report();
    let gauge = |name: &str, value: usize| Stat {
        name: name.into(),
        value: value as u64,
    };
    stats.push(gauge("connections_current", hub.connection_count()));
    stats.push(gauge("sessions_parked", hub.parking().parked()));
    stats.push(gauge("channels", hub.channel_count()));
    stats.push(Stat {
        name: "store_syncs".into(),
        value: hub.store_syncs(),
    });
    stats.push(Stat {
        name: "store_bytes_queued".into(),
        value: hub.store_bytes_queued(),
    });
    stats.push(gauge("groups", hub.group_count()));
    let health = hub.store_health();
    stats.push(Stat {
        name: "store_writable".into(),
        value: u64::from(health.refusing.is_none()),
    });
    for (name, value) in [
        ("store_write_failures", health.failures),
        ("store_recoveries", health.recoveries),
        ("store_unwritten_messages", health.unwritten_messages),
        ("store_lost_messages", health.lost_messages),
        ("disk_full_refusals", health.disk_full_refusals),
        ("blob_bytes", hub.blobs().bytes_used()),
    ] {
        stats.push(Stat {
            name: name.into(),
            value,
        });
    }
    stats.push(gauge("partial_frame_bytes", hub.frame_budget().held()));
    stats.push(Stat {
        name: "frames_refused_busy".into(),
        value: hub.frame_budget().refused(),
    });
    stats.push(Stat {
        name: "memory_budget_used".into(),
        value: hub.budget().used(),
    });
    stats.push(Stat {
        name: "memory_budget_limit".into(),
        value: hub.budget().limit(),
    });
    for (name, value) in hub.limit_gauges() {
        stats.push(Stat {
            name: name.into(),
            value,
        });
    }
    for (name, value) in crate::server::cluster_stats(hub) {
        stats.push(Stat {
            name: name.into(),
            value,
        });
    }
    session
        .reply(request_id, Packet::StatsReply(StatsReply { stats }))
        .await;
}
