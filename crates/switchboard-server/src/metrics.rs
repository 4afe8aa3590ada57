//! What the server measures for monitoring, as typed values: the transports and refusal
//! reasons that label counters, latency histograms kept in fixed buckets of atomics, and
//! [`MetricsSnapshot`], everything a scrape reports, read in one pass by
//! [`HubHandle::metrics`](crate::HubHandle::metrics).
//!
//! Recording a latency costs a search among a few bounds and three relaxed atomic
//! additions, with no lock and no allocation: cheap enough for every publish.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a connection reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Tls,
    Unix,
    WebSocket,
    Http,
}

impl Transport {
    /// Every transport, in the order snapshots list them.
    pub const ALL: [Transport; 5] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Unix,
        Transport::WebSocket,
        Transport::Http,
    ];

    /// The transport's name, as metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Unix => "unix",
            Transport::WebSocket => "websocket",
            Transport::Http => "http",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why a connection was refused before a session opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// Its address had as many connections open as one address may.
    AddressLimit,
    /// Its address opened connections faster than allowed.
    AddressRate,
    /// The server had as many sessions as it takes.
    ConnectionLimit,
    /// Its credentials were refused (or its address failed to log in too often).
    Auth,
    /// The embedding application's hook refused it.
    Rejected,
    /// The TLS handshake failed or timed out.
    TlsHandshake,
    /// No SESSION_INIT arrived in time, or something else came first.
    Handshake,
    /// Its first frame was too large for the server-wide frame budget now.
    Busy,
    /// Its preface or first frame was not valid protocol (an HTTP request, a bad CRC).
    Protocol,
}

impl RefusalReason {
    /// Every reason, in the order snapshots list them.
    pub const ALL: [RefusalReason; 9] = [
        RefusalReason::AddressLimit,
        RefusalReason::AddressRate,
        RefusalReason::ConnectionLimit,
        RefusalReason::Auth,
        RefusalReason::Rejected,
        RefusalReason::TlsHandshake,
        RefusalReason::Handshake,
        RefusalReason::Busy,
        RefusalReason::Protocol,
    ];

    /// The reason's name, as metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::AddressLimit => "address_limit",
            RefusalReason::AddressRate => "address_rate",
            RefusalReason::ConnectionLimit => "connection_limit",
            RefusalReason::Auth => "auth",
            RefusalReason::Rejected => "rejected",
            RefusalReason::TlsHandshake => "tls_handshake",
            RefusalReason::Handshake => "handshake",
            RefusalReason::Busy => "busy",
            RefusalReason::Protocol => "protocol",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the latency buckets, in nanoseconds: 50 µs to 10 s, roughly 1-2.5-5
/// per decade, which covers an in-memory ack as well as a slow disk's sync.
pub const LATENCY_BOUNDS_NS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

const BUCKETS: usize = LATENCY_BOUNDS_NS.len() + 1;

/// A latency histogram in fixed buckets ([`LATENCY_BOUNDS_NS`], then everything
/// longer). Each bucket counts only its own observations; the cumulative counts
/// Prometheus wants are summed when a snapshot is taken, not on every record.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn record(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far. Taken bucket by bucket while others record, so it may be a
    /// few observations behind itself; the count is derived from the buckets so that
    /// the last cumulative bucket always equals it.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BUCKETS];
        let mut running = 0u64;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        HistogramSnapshot {
            cumulative,
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment, cumulative as Prometheus reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistogramSnapshot {
    /// Observations at or below each bound of [`LATENCY_BOUNDS_NS`], then all of them.
    cumulative: [u64; BUCKETS],
    sum_ns: u64,
}

impl HistogramSnapshot {
    /// `(upper bound, observations at or below it)` for each finite bound, in order.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        LATENCY_BOUNDS_NS
            .iter()
            .zip(&self.cumulative)
            .map(|(&bound, &count)| (Duration::from_nanos(bound), count))
    }

    /// Every observation.
    pub fn count(&self) -> u64 {
        self.cumulative[BUCKETS - 1]
    }

    /// The observations added up.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }
}

/// Everything a metrics scrape reports, read from the hub's counters and state.
/// Counters only grow while the server runs; the rest are values of the moment.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Sessions open now, per transport.
    pub connections_open: Vec<(Transport, u64)>,
    /// Sessions ever opened, per transport.
    pub connections_opened: Vec<(Transport, u64)>,
    /// Sessions closed, for whatever reason.
    pub connections_closed: u64,
    /// Connections refused before a session opened, per reason.
    pub connections_refused: Vec<(RefusalReason, u64)>,
    pub messages_published: u64,
    /// Live deliveries of published messages to subscribers.
    pub messages_delivered: u64,
    /// Direct messages (RELAY) sent, and their deliveries.
    pub relays: u64,
    pub relayed_deliveries: u64,
    /// Direct messages not delivered: their receiver had no room.
    pub relay_deliveries_dropped: u64,
    /// Frames dropped for slow consumers of drop-oldest channels.
    pub slow_consumer_skipped: u64,
    /// Sessions disconnected as slow consumers.
    pub slow_consumers_disconnected: u64,
    /// Bytes read from sessions (after their handshake) and written to them.
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Subscriptions held by open sessions.
    pub subscriptions: u64,
    pub channels: u64,
    pub groups: u64,
    /// Messages kept in the histories of channels and groups, and their bytes.
    pub history_messages: u64,
    pub history_bytes: u64,
    /// Syncs to disk the store made, and how long each took.
    pub store_syncs: u64,
    pub store_sync_latency: HistogramSnapshot,
    /// Why the store refuses writes now; `None` while it takes them.
    pub store_refusing: Option<String>,
    pub store_write_failures: u64,
    /// From a PUBLISH read to its PUBLISH_ACK queued (after the sync, for durability
    /// `always`).
    pub publish_ack_latency: HistogramSnapshot,
    pub auth_failures: u64,
    pub permission_denials: u64,
    /// Requests refused with RATE_LIMITED, and by a user's or role's caps.
    pub rate_limited: u64,
    pub limit_refusals: u64,
    pub protocol_errors: u64,
    pub heartbeat_timeouts: u64,
    pub reloads: u64,
    pub reloads_failed: u64,
    pub memory_budget_used: u64,
    pub memory_budget_limit: u64,
    /// Listeners (TCP, TLS, Unix) configured, and accepting now.
    pub listeners_configured: u64,
    pub listeners_running: u64,
    /// Whether the server is draining its sessions to stop.
    pub shutting_down: bool,
}

/// Whether the server can take work: what a readiness check looks at. Cheap to read
/// (no history is locked), unlike a [`MetricsSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// The server drains its sessions to stop.
    pub draining: bool,
    /// Why the store refuses writes now; `None` while it takes them.
    pub store_refusing: Option<String>,
    /// Protocol listeners (TCP, TLS, Unix) configured, and accepting now.
    pub listeners_configured: u64,
    pub listeners_running: u64,
    /// Cluster mode: why the backplane is unusable now; `None` while it works (or on a
    /// single server).
    pub backplane_down: Option<String>,
}

impl Readiness {
    /// Why the server is not ready, or `None` if it is.
    pub fn not_ready(&self) -> Option<String> {
        if self.draining {
            return Some("draining: the server is stopping".to_owned());
        }
        if let Some(reason) = &self.store_refusing {
            return Some(format!("the store refuses writes: {reason}"));
        }
        if let Some(reason) = &self.backplane_down {
            return Some(format!("backplane unavailable: {reason}"));
        }
        if self.listeners_running < self.listeners_configured {
            return Some(format!(
                "{} of {} listeners accepting",
                self.listeners_running, self.listeners_configured
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_counts_in_its_bucket_and_every_one_above() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_micros(50));
        histogram.record(Duration::from_micros(51));
        histogram.record(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        let buckets: Vec<_> = snapshot.buckets().collect();
        assert_eq!(buckets[0], (Duration::from_micros(50), 1));
        assert_eq!(buckets[1], (Duration::from_micros(100), 2));
        assert_eq!(buckets.last(), Some(&(Duration::from_secs(10), 2)));
        assert_eq!(snapshot.count(), 3);
        assert_eq!(
            snapshot.sum(),
            Duration::from_micros(101) + Duration::from_secs(60)
        );
    }

    #[test]
    fn readiness_names_the_first_thing_that_is_wrong() {
        let ready = Readiness {
            draining: false,
            store_refusing: None,
            listeners_configured: 2,
            listeners_running: 2,
            backplane_down: None,
        };
        assert_eq!(ready.not_ready(), None);
        let backplane_down = Readiness {
            backplane_down: Some("connection refused".to_owned()),
            ..ready.clone()
        };
        assert_eq!(
            backplane_down.not_ready().as_deref(),
            Some("backplane unavailable: connection refused")
        );
        let listener_down = Readiness {
            listeners_running: 1,
            ..ready.clone()
        };
        assert_eq!(
            listener_down.not_ready().as_deref(),
            Some("1 of 2 listeners accepting")
        );
        let store_and_listener = Readiness {
            store_refusing: Some("disk full".to_owned()),
            ..listener_down.clone()
        };
        assert_eq!(
            store_and_listener.not_ready().as_deref(),
            Some("the store refuses writes: disk full")
        );
        let draining = Readiness {
            draining: true,
            ..store_and_listener
        };
        assert_eq!(
            draining.not_ready().as_deref(),
            Some("draining: the server is stopping")
        );
    }
}
