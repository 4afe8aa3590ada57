//! `/metrics`: the hub's counters, gauges and latency histograms in the Prometheus text
//! exposition format (version 0.0.4), for scraping.
//!
//! The values live in the server as atomics and are read once per scrape as a typed
//! [`MetricsSnapshot`]; this module only names and formats them. The text is written
//! here rather than through a metrics registry because nothing is recorded on this
//! side: a registry would hold a second copy of every counter, refreshed from the
//! snapshot on each scrape, to produce the same few lines.
//!
//! Conventions: every name starts with `switchboard_`, counters end in `_total`, times
//! are in seconds and sizes in bytes, and labels take only a handful of fixed values
//! (a transport, a reason), never a channel, a user or a client id.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use switchboard_server::metrics::{HistogramSnapshot, MetricsSnapshot};

use crate::AppState;

/// The media type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let snapshot = state.hub.metrics();
    ([(CONTENT_TYPE, TEXT_FORMAT)], render(&snapshot))
}

/// The Prometheus text of `snapshot`.
pub(crate) fn render(m: &MetricsSnapshot) -> String {
    let mut out = Exposition::default();
    out.gauge_labeled(
        "switchboard_build_info",
        "The running build: always 1, its version in the label.",
        "version",
        [(env!("CARGO_PKG_VERSION"), 1)],
    );

    out.gauge_labeled(
        "switchboard_connections",
        "Sessions open now, by transport.",
        "transport",
        m.connections_open
            .iter()
            .map(|&(transport, value)| (transport.label(), value)),
    );
    out.counter_labeled(
        "switchboard_connections_accepted_total",
        "Sessions opened (handshake and login passed), by transport.",
        "transport",
        m.connections_opened
            .iter()
            .map(|&(transport, value)| (transport.label(), value)),
    );
    out.counter(
        "switchboard_connections_closed_total",
        "Sessions closed, for whatever reason.",
        m.connections_closed,
    );
    out.counter_labeled(
        "switchboard_connections_refused_total",
        "Connections refused before a session opened, by reason.",
        "reason",
        m.connections_refused
            .iter()
            .map(|&(reason, value)| (reason.label(), value)),
    );

    out.counter(
        "switchboard_messages_published_total",
        "Messages published to channels and groups.",
        m.messages_published,
    );
    out.counter(
        "switchboard_messages_delivered_total",
        "Live deliveries of published messages to subscribers.",
        m.messages_delivered,
    );
    out.counter(
        "switchboard_relays_total",
        "Direct messages (RELAY) sent.",
        m.relays,
    );
    out.counter(
        "switchboard_messages_relayed_total",
        "Deliveries of direct messages to their receivers.",
        m.relayed_deliveries,
    );
    out.counter_labeled(
        "switchboard_messages_dropped_total",
        "Messages not delivered: dropped for a slow consumer of a drop-oldest channel, or a direct message whose receiver had no room.",
        "reason",
        [
            ("slow_consumer", m.slow_consumer_skipped),
            ("relay_no_room", m.relay_deliveries_dropped),
        ],
    );
    out.counter(
        "switchboard_slow_consumers_total",
        "Sessions disconnected because they did not read their deliveries fast enough.",
        m.slow_consumers_disconnected,
    );
    out.counter(
        "switchboard_received_bytes_total",
        "Bytes read from sessions after their handshake.",
        m.bytes_received,
    );
    out.counter(
        "switchboard_sent_bytes_total",
        "Bytes written to sessions.",
        m.bytes_sent,
    );

    out.gauge(
        "switchboard_subscriptions",
        "Subscriptions held by open sessions.",
        m.subscriptions,
    );
    out.gauge("switchboard_channels", "Channels.", m.channels);
    out.gauge("switchboard_groups", "Groups.", m.groups);
    out.gauge(
        "switchboard_history_messages",
        "Messages kept in the histories of channels and groups.",
        m.history_messages,
    );
    out.gauge(
        "switchboard_history_bytes",
        "Bytes of the messages kept in the histories of channels and groups.",
        m.history_bytes,
    );

    out.counter(
        "switchboard_store_syncs_total",
        "Syncs of the store to disk (one sync covers every publish waiting for it).",
        m.store_syncs,
    );
    out.histogram(
        "switchboard_store_sync_duration_seconds",
        "How long the store's syncs to disk took.",
        &m.store_sync_latency,
    );
    out.gauge(
        "switchboard_store_writable",
        "1 while the store takes writes, 0 while it refuses them (failed, read-only or disk full).",
        u64::from(m.store_refusing.is_none()),
    );
    out.counter(
        "switchboard_store_write_failures_total",
        "Failed writes or syncs of the store.",
        m.store_write_failures,
    );
    out.histogram(
        "switchboard_publish_ack_duration_seconds",
        "From a PUBLISH read to its PUBLISH_ACK queued (after the store's sync for durability always).",
        &m.publish_ack_latency,
    );

    out.counter(
        "switchboard_auth_failures_total",
        "Logins refused: wrong or missing credentials, or an address refused for its failures.",
        m.auth_failures,
    );
    out.counter(
        "switchboard_permission_denials_total",
        "Requests refused with FORBIDDEN by the session's roles.",
        m.permission_denials,
    );
    out.counter(
        "switchboard_rate_limited_total",
        "Requests refused with RATE_LIMITED (a user's publish, relay or request rate).",
        m.rate_limited,
    );
    out.counter(
        "switchboard_limit_refusals_total",
        "Requests refused by a user's or role's caps (subscriptions, channels, groups, body size).",
        m.limit_refusals,
    );
    out.counter(
        "switchboard_protocol_errors_total",
        "Sessions or handshakes ended by invalid frames.",
        m.protocol_errors,
    );
    out.counter(
        "switchboard_heartbeat_timeouts_total",
        "Sessions closed because nothing was heard for three heartbeats.",
        m.heartbeat_timeouts,
    );
    out.counter_labeled(
        "switchboard_reloads_total",
        "Configuration reloads, put in force (success) or refused (failure).",
        "result",
        [("success", m.reloads), ("failure", m.reloads_failed)],
    );
    out.gauge(
        "switchboard_memory_budget_used_bytes",
        "Bytes of the server-wide memory budget in use (subscriptions, channels, groups, queued output).",
        m.memory_budget_used,
    );
    out.gauge(
        "switchboard_memory_budget_limit_bytes",
        "The server-wide memory budget.",
        m.memory_budget_limit,
    );
    out.gauge(
        "switchboard_listeners_configured",
        "Protocol listeners configured (TCP, TLS, Unix socket).",
        m.listeners_configured,
    );
    out.gauge(
        "switchboard_listeners_running",
        "Protocol listeners accepting connections now.",
        m.listeners_running,
    );
    out.gauge(
        "switchboard_draining",
        "1 once the server drains its sessions to stop.",
        u64::from(m.shutting_down),
    );
    out.text
}

/// The text being written, one metric family at a time.
#[derive(Default)]
struct Exposition {
    text: String,
}

type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels<'_>, value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A counter with one label, one sample per value of it.
    fn counter_labeled<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, "counter", help);
        for (value_of_label, value) in samples {
            self.sample(name, &[(label, value_of_label)], value);
        }
    }

    /// A gauge with one label, one sample per value of it.
    fn gauge_labeled<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, "gauge", help);
        for (value_of_label, value) in samples {
            self.sample(name, &[(label, value_of_label)], value);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in histogram.buckets() {
            let le = bound.as_secs_f64().to_string();
            self.sample(&bucket, &[("le", &le)], count);
        }
        self.sample(&bucket, &[("le", "+Inf")], histogram.count());
        self.sample(&format!("{name}_sum"), &[], histogram.sum().as_secs_f64());
        self.sample(&format!("{name}_count"), &[], histogram.count());
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("plain"), "plain");
    }
}
