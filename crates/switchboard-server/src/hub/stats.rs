//! Server counters, reported by STATS.

use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_proto::packet::Stat;

use crate::metrics::{LatencyHistogram, RefusalReason, Transport};

/// Monotonic counters; gauges are computed when reported.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_total: AtomicU64,
    pub messages_published: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub relays: AtomicU64,
    pub relayed_deliveries: AtomicU64,
    pub slow_consumers_disconnected: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub heartbeat_timeouts: AtomicU64,
    /// Sessions closed because a frame did not arrive whole within the frame deadline.
    pub frame_timeouts: AtomicU64,
    /// Relayed bodies not delivered because the receiver had no room for direct messages.
    pub relay_deliveries_dropped: AtomicU64,
    /// Sessions closed, for whatever reason.
    pub connections_closed: AtomicU64,
    /// Connections refused before a session opened (limits, hooks, bad handshakes).
    pub connections_refused: AtomicU64,
    pub corrupt_records_skipped: AtomicU64,
    /// TLS connections dropped because their TLS handshake failed or timed out (also
    /// counted in `connections_refused`).
    pub tls_handshakes_failed: AtomicU64,
    /// Requests refused with RATE_LIMITED (a user's publish, relay or request rate).
    pub rate_limited: AtomicU64,
    /// Requests refused by a user's or role's caps (subscriptions, channels, groups,
    /// body size).
    pub limit_refusals: AtomicU64,
    /// Connections refused because their address had too many open.
    pub connections_refused_per_ip: AtomicU64,
    /// Connections refused because their address opened them too fast.
    pub connections_rate_limited_per_ip: AtomicU64,
    /// Configurations put in force by a reload.
    pub reloads: AtomicU64,
    /// Reloads refused (the configuration could not be read or was not valid).
    pub reloads_failed: AtomicU64,
    /// Sessions ended by a reload (their user removed, or credentials now required).
    pub sessions_ended_by_reload: AtomicU64,
    /// Logins refused: wrong credentials, none where they are required, or an address
    /// refused for its failures.
    pub auth_failures: AtomicU64,
    /// Frames dropped for slow consumers of drop-oldest channels; shared with outboxes.
    pub slow_consumer_skipped: std::sync::Arc<AtomicU64>,
    /// Requests refused with FORBIDDEN because the session's roles do not allow them.
    pub permission_denials: AtomicU64,
    /// Sessions ever opened, and open now, per transport (see [`Transport::index`]).
    pub connections_opened_by: [AtomicU64; Transport::ALL.len()],
    pub connections_open_by: [AtomicU64; Transport::ALL.len()],
    /// Connections refused before a session opened, per reason (see
    /// [`RefusalReason::index`]).
    pub connections_refused_by: [AtomicU64; RefusalReason::ALL.len()],
    /// Bytes read from sessions after their handshake, and written to them.
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Subscriptions held now (a gauge: routes added less routes removed).
    pub subscriptions: AtomicU64,
    /// Listeners accepting now (a gauge).
    pub listeners_running: AtomicU64,
    /// From a PUBLISH read to its PUBLISH_ACK queued; shared with the durable-ack tasks.
    pub publish_ack_latency: std::sync::Arc<LatencyHistogram>,
    /// Cluster mode (reported only there): channel histories that began a new epoch,
    /// messages read back to close gaps in the live feed, and messages that could not be
    /// (trimmed meanwhile).
    pub cluster_epoch_changes: AtomicU64,
    pub cluster_gaps_recovered: AtomicU64,
    pub cluster_messages_skipped: AtomicU64,
    /// Messages read back from the store for reads past what histories keep in memory;
    /// shared with the histories.
    pub messages_read_back: std::sync::Arc<AtomicU64>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Counts a connection refused before a session opened, in the total and by reason.
    pub fn refused(&self, reason: RefusalReason) {
        Counters::add(&self.connections_refused, 1);
        Counters::add(&self.connections_refused_by[reason.index()], 1);
    }

    pub fn report(&self) -> Vec<Stat> {
        let stat = |name: &str, counter: &AtomicU64| Stat {
            name: name.into(),
            value: counter.load(Ordering::Relaxed),
        };
        vec![
            stat("connections_total", &self.connections_total),
            stat("auth_failures", &self.auth_failures),
            stat("messages_published", &self.messages_published),
            stat("messages_delivered", &self.messages_delivered),
            stat("relays", &self.relays),
            stat("relayed_deliveries", &self.relayed_deliveries),
            stat(
                "slow_consumers_disconnected",
                &self.slow_consumers_disconnected,
            ),
            stat("protocol_errors", &self.protocol_errors),
            stat("heartbeat_timeouts", &self.heartbeat_timeouts),
            stat("frame_timeouts", &self.frame_timeouts),
            stat("relay_deliveries_dropped", &self.relay_deliveries_dropped),
            stat("connections_closed", &self.connections_closed),
            stat("connections_refused", &self.connections_refused),
            stat("corrupt_records_skipped", &self.corrupt_records_skipped),
            stat("tls_handshakes_failed", &self.tls_handshakes_failed),
            stat("slow_consumer_skipped", &self.slow_consumer_skipped),
            stat("rate_limited", &self.rate_limited),
            stat("limit_refusals", &self.limit_refusals),
            stat(
                "connections_refused_per_ip",
                &self.connections_refused_per_ip,
            ),
            stat(
                "connections_rate_limited_per_ip",
                &self.connections_rate_limited_per_ip,
            ),
            stat("reloads", &self.reloads),
            stat("reloads_failed", &self.reloads_failed),
            stat("sessions_ended_by_reload", &self.sessions_ended_by_reload),
            stat("permission_denials", &self.permission_denials),
            stat("history_messages_read_back", &self.messages_read_back),
        ]
    }
}
