//! What one role's sessions may use: rates with bursts, counts and sizes.
//!
//! A role's `[roles.NAME.limits]` ([`LimitSpec`]) is resolved against the protective
//! defaults into [`Limits`]; a session with several roles gets the most generous of
//! them. Rates are token buckets ([`Bucket`]) kept per user, so that every session of a
//! user draws from the same ones; an anonymous session has buckets of its own. Time
//! comes from a [`Clock`], which tests replace with a [`ManualClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `[roles.NAME.limits]`, and `[limits.no_role]` for sessions without a role. A key left
/// out takes its default ([`Limits::ROLE_DEFAULTS`] for a role; none for sessions
/// without a role); 0 means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// PUBLISH requests per second (a streamed publish counts once).
    #[serde(default)]
    pub publishes_per_second: Option<u32>,
    /// Publishes allowed at once above the rate, after a quiet spell.
    #[serde(default)]
    pub publish_burst: Option<u32>,
    /// RELAY requests per second, counted against their sender.
    #[serde(default)]
    pub relays_per_second: Option<u32>,
    #[serde(default)]
    pub relay_burst: Option<u32>,
    /// Every other request per second (subscribe, create, list, fetch, ...); heartbeats,
    /// chunks of a streamed body and the goodbye are not counted.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    #[serde(default)]
    pub request_burst: Option<u32>,
    /// Subscriptions held at once by all sessions of a user.
    #[serde(default)]
    pub max_subscriptions: Option<u64>,
    /// Channels a user created that still exist.
    #[serde(default)]
    pub max_channels: Option<u64>,
    /// Groups a user created that still exist.
    #[serde(default)]
    pub max_groups: Option<u64>,
    /// Hashtags a user's messages brought into the hashtag index that are still in it.
    #[serde(default)]
    pub max_hashtags: Option<u64>,
    /// Largest body a session may publish or relay, in bytes.
    #[serde(default)]
    pub max_body: Option<u64>,
}

/// A rate with its burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    /// A rate, or none for 0 (no limit). A burst of 0 means one.
    fn new(per_second: u32, burst: u32) -> Option<Rate> {
        (per_second > 0).then_some(Rate {
            per_second,
            burst: burst.max(1),
        })
    }

    /// The larger of two rates, `None` (no limit) being the largest.
    fn generous(a: Option<Rate>, b: Option<Rate>) -> Option<Rate> {
        Some(Rate {
            per_second: a?.per_second.max(b?.per_second),
            burst: a?.burst.max(b?.burst),
        })
    }
}

/// Resolved limits: `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub publishes: Option<Rate>,
    pub relays: Option<Rate>,
    pub requests: Option<Rate>,
    pub max_subscriptions: Option<u64>,
    pub max_channels: Option<u64>,
    pub max_groups: Option<u64>,
    pub max_hashtags: Option<u64>,
    pub max_body: Option<u64>,
}

/// The larger of two caps, `None` (no cap) being the largest.
fn generous_cap(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.max(b?))
}

impl Limits {
    /// The limits of a role that gives none: generous for a person or a service, tight
    /// enough that one session cannot flood the server.
    pub const ROLE_DEFAULTS: Limits = Limits {
        publishes: Some(Rate {
            per_second: 1000,
            burst: 2000,
        }),
        relays: Some(Rate {
            per_second: 100,
            burst: 200,
        }),
        requests: Some(Rate {
            per_second: 200,
            burst: 400,
        }),
        max_subscriptions: Some(1000),
        max_channels: Some(100),
        max_groups: Some(100),
        max_hashtags: Some(1000),
        max_body: None,
    };

    /// No limit at all: sessions without a role on a server whose `[limits.no_role]`
    /// sets none.
    pub const NONE: Limits = Limits {
        publishes: None,
        relays: None,
        requests: None,
        max_subscriptions: None,
        max_channels: None,
        max_groups: None,
        max_hashtags: None,
        max_body: None,
    };

    /// `spec` over `defaults`: each key the spec gives replaces the default.
    pub fn resolve(spec: &LimitSpec, defaults: &Limits) -> Limits {
        let rate = |per_second: Option<u32>, burst: Option<u32>, default: Option<Rate>| match (
            per_second, burst,
        ) {
            (None, None) => default,
            (Some(per_second), burst) => Rate::new(
                per_second,
                burst.unwrap_or_else(|| per_second.saturating_mul(2)),
            ),
            (None, Some(burst)) => default.map(|rate| Rate { burst, ..rate }),
        };
        let cap = |value: Option<u64>, default: Option<u64>| match value {
            Some(0) => None,
            Some(value) => Some(value),
            None => default,
        };
        Limits {
            publishes: rate(
                spec.publishes_per_second,
                spec.publish_burst,
                defaults.publishes,
            ),
            relays: rate(spec.relays_per_second, spec.relay_burst, defaults.relays),
            requests: rate(
                spec.requests_per_second,
                spec.request_burst,
                defaults.requests,
            ),
            max_subscriptions: cap(spec.max_subscriptions, defaults.max_subscriptions),
            max_channels: cap(spec.max_channels, defaults.max_channels),
            max_groups: cap(spec.max_groups, defaults.max_groups),
            max_hashtags: cap(spec.max_hashtags, defaults.max_hashtags),
            max_body: cap(spec.max_body, defaults.max_body),
        }
    }

    /// The most generous of both, key by key.
    pub fn most_generous(&self, other: &Limits) -> Limits {
        Limits {
            publishes: Rate::generous(self.publishes, other.publishes),
            relays: Rate::generous(self.relays, other.relays),
            requests: Rate::generous(self.requests, other.requests),
            max_subscriptions: generous_cap(self.max_subscriptions, other.max_subscriptions),
            max_channels: generous_cap(self.max_channels, other.max_channels),
            max_groups: generous_cap(self.max_groups, other.max_groups),
            max_hashtags: generous_cap(self.max_hashtags, other.max_hashtags),
            max_body: generous_cap(self.max_body, other.max_body),
        }
    }

    /// Whether nothing is limited (then a session carries no limit state at all).
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::NONE
    }
}

/// Per-address limits, checked when a TCP connection is accepted, before its handshake
/// (`[limits]` `connections_per_ip`, `new_connections_per_second_per_ip`,
/// `new_connection_burst_per_ip`). 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimits {
    /// Connections open at once from one IP address.
    pub connections_per_ip: u32,
    /// New connections per second from one IP address...
    pub new_connections_per_second: u32,
    /// ...and how many may come at once after a quiet spell.
    pub new_connection_burst: u32,
    /// Whether loopback addresses are held to these limits too. Off by default: a client
    /// on the server's own machine is as trusted as the machine (and benchmarks and test
    /// suites open thousands of connections from 127.0.0.1).
    pub limit_loopback: bool,
}

impl Default for AddressLimits {
    /// Low enough that one remote address cannot take the whole connection limit or
    /// keep the accept loop busy on its own; high enough for a host behind which many
    /// clients share an address.
    fn default() -> Self {
        AddressLimits {
            connections_per_ip: 1024,
            new_connections_per_second: 200,
            new_connection_burst: 1000,
            limit_loopback: false,
        }
    }
}

impl AddressLimits {
    pub(crate) fn rate(&self) -> Option<Rate> {
        Rate::new(self.new_connections_per_second, self.new_connection_burst)
    }
}

/// The limits a server applies besides those of roles; reloadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSettings {
    pub per_address: AddressLimits,
    /// Limits of sessions that have no role (every session of an open hub): none unless
    /// configured.
    pub no_role: LimitSpec,
}

/// Where rate limits read the time. Monotonic, in nanoseconds from any origin.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ns(&self) -> u64;
}

/// The system's monotonic clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told: for tests of rates without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.now_ns.fetch_add(by, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Relaxed)
    }
}

/// A token bucket in one atomic word: the time at which it would be full again (the
/// generic cell rate algorithm). Taking a token moves that time on by one interval; a
/// take that would move it more than a burst's worth past now is refused.
#[derive(Debug, Default)]
pub struct Bucket {
    full_at_ns: AtomicU64,
}

impl Bucket {
    /// Takes one token at `rate`, or says how long until one is free.
    pub fn take(&self, rate: Rate, now_ns: u64) -> Result<(), Duration> {
        let interval = 1_000_000_000 / u64::from(rate.per_second.max(1));
        let window = interval.saturating_mul(u64::from(rate.burst));
        let mut current = self.full_at_ns.load(Ordering::Relaxed);
        loop {
            let next = current.max(now_ns).saturating_add(interval);
            let allowed_from = next.saturating_sub(window);
            if now_ns < allowed_from {
                return Err(Duration::from_nanos(allowed_from - now_ns));
            }
            match self.full_at_ns.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Whether the bucket is full at `now_ns` (an entry for it may be forgotten).
    pub fn is_full(&self, now_ns: u64) -> bool {
        self.full_at_ns.load(Ordering::Relaxed) <= now_ns
    }
}

/// "retry in 120 ms": a delay as a client reads it, rounded up to the millisecond.
pub fn retry_hint(wait: Duration) -> String {
    let ms = wait.as_nanos().div_ceil(1_000_000).max(1);
    format!("retry in {ms} ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let bucket = Bucket::default();
        let rate = Rate {
            per_second: 10,
            burst: 3,
        };
        let start = 5_000 * MS;
        for _ in 0..3 {
            assert_eq!(bucket.take(rate, start), Ok(()));
        }
        assert_eq!(
            bucket.take(rate, start),
            Err(Duration::from_millis(100)),
            "the fourth waits one interval"
        );
        assert_eq!(
            bucket.take(rate, start + 40 * MS),
            Err(Duration::from_millis(60))
        );
        assert_eq!(bucket.take(rate, start + 100 * MS), Ok(()));
        assert!(bucket.take(rate, start + 100 * MS).is_err());
        assert!(bucket.is_full(start + 400 * MS));
    }

    #[test]
    fn a_role_without_limits_gets_the_defaults_and_zero_lifts_one() {
        let spec = LimitSpec {
            publishes_per_second: Some(5),
            max_channels: Some(0),
            ..LimitSpec::default()
        };
        let limits = Limits::resolve(&spec, &Limits::ROLE_DEFAULTS);
        assert_eq!(
            limits.publishes,
            Some(Rate {
                per_second: 5,
                burst: 10
            })
        );
        assert_eq!(limits.max_channels, None);
        assert_eq!(limits.relays, Limits::ROLE_DEFAULTS.relays);
        assert_eq!(
            Limits::resolve(&LimitSpec::default(), &Limits::ROLE_DEFAULTS),
            Limits::ROLE_DEFAULTS
        );
    }

    #[test]
    fn the_most_generous_role_wins_key_by_key() {
        let tight = Limits::resolve(
            &LimitSpec {
                publishes_per_second: Some(1),
                max_subscriptions: Some(500_000),
                ..LimitSpec::default()
            },
            &Limits::ROLE_DEFAULTS,
        );
        let both = tight.most_generous(&Limits::ROLE_DEFAULTS);
        assert_eq!(both.publishes, Limits::ROLE_DEFAULTS.publishes);
        assert_eq!(both.max_subscriptions, Some(500_000));
        assert_eq!(tight.most_generous(&Limits::NONE), Limits::NONE);
    }

    #[test]
    fn retry_hints_round_up() {
        assert_eq!(
            retry_hint(Duration::from_micros(119_200)),
            "retry in 120 ms"
        );
        assert_eq!(retry_hint(Duration::from_nanos(1)), "retry in 1 ms");
    }
}
