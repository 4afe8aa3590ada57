//! STOP, RELOAD and STATS: operations on the server itself.

use switchboard_proto::packet::{OkReply, Packet, Stat, StatsReply};
use tracing::info;

use switchboard_proto::ErrorCode;

use super::session::Session;
use crate::error::Refusal;
use crate::hub::Hub;
use crate::log;
use crate::security::ReloadError;

/// STOP: admin sessions only (the local Unix socket, or the admin token). The OK is
/// queued before shutdown begins, so it reaches the caller before the DISCONNECT.
pub(crate) async fn stop(hub: &Hub, session: &Session, request_id: u32) {
    if !session.info.admin {
        session
            .refuse(
                request_id,
                Refusal::forbidden(
                    "stopping the server needs an admin session: connect over the server's Unix socket or present the admin token",
                ),
            )
            .await;
        return;
    }
    session.reply(request_id, Packet::Ok(OkReply)).await;
    info!(target: log::GENERAL, client_id = session.caller.client_id, name = %session.caller.name, "stop requested");
    hub.begin_shutdown();
}

/// RELOAD: admin sessions only for now. The configuration is read again from the
/// server's reload source and put in force; the answer is OK, or ERROR with the reason
/// it was refused (the configuration in force is kept).
pub(crate) async fn reload(hub: &Hub, session: &Session, request_id: u32) {
    // The permission check goes here: a session whose roles grant
    // `AdminOperation::Reload` may reload too, once roles are enforced.
    if !session.info.admin && !session.identity.admin {
        session
            .refuse(
                request_id,
                Refusal::forbidden(
                    "reloading the configuration needs an admin session: connect over the server's Unix socket or present the admin token",
                ),
            )
            .await;
        return;
    }
    info!(target: log::GENERAL, client_id = session.caller.client_id, name = %session.caller.name, "reload requested");
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
    let mut stats = hub.counters().report();
    let gauge = |name: &str, value: usize| Stat {
        name: name.into(),
        value: value as u64,
    };
    stats.push(gauge("connections_current", hub.connection_count()));
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
    session
        .reply(request_id, Packet::StatsReply(StatsReply { stats }))
        .await;
}
