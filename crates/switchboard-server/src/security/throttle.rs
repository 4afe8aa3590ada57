//! Failed logins, slowed and then refused per IP address. A failure delays the answer
//! to that connection, more for each recent failure from the same address; past a
//! number of failures within a window the address is refused outright for a while. The
//! cost falls on the connection that failed: other sessions never wait. The table of
//! addresses is bounded: when full, the stalest entry makes room.
//!
//! Password checks are also bounded in number at once (each takes tens of MiB), so that
//! a burst of logins cannot take the memory of the machine.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::Semaphore;

/// How failed logins are slowed and refused (`[auth]` in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSpec {
    /// Failures from one address within `window` before it is refused.
    #[serde(default = "ThrottleSpec::default_max_failures")]
    pub max_failures: u32,
    /// How long a failure counts.
    #[serde(default = "ThrottleSpec::default_window")]
    pub window: Duration,
    /// How long an address is refused once it reached `max_failures`.
    #[serde(default = "ThrottleSpec::default_refuse_for")]
    pub refuse_for: Duration,
    /// The delay of the first failure's answer; it doubles with each recent failure.
    #[serde(default = "ThrottleSpec::default_delay")]
    pub delay: Duration,
    /// The longest delay of an answer.
    #[serde(default = "ThrottleSpec::default_max_delay")]
    pub max_delay: Duration,
}

impl ThrottleSpec {
    fn default_max_failures() -> u32 {
        10
    }
    fn default_window() -> Duration {
        Duration::from_secs(60)
    }
    fn default_refuse_for() -> Duration {
        Duration::from_secs(300)
    }
    fn default_delay() -> Duration {
        Duration::from_millis(250)
    }
    fn default_max_delay() -> Duration {
        Duration::from_secs(4)
    }

    /// The delay of the answer to the `failures`-th recent failure.
    fn delay_for(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

impl Default for ThrottleSpec {
    fn default() -> Self {
        ThrottleSpec {
            max_failures: Self::default_max_failures(),
            window: Self::default_window(),
            refuse_for: Self::default_refuse_for(),
            delay: Self::default_delay(),
            max_delay: Self::default_max_delay(),
        }
    }
}

/// Addresses tracked at most; past that the stalest one is forgotten.
const MAX_ADDRESSES: usize = 10_000;

/// Password verifications running at once, at most.
const MAX_VERIFICATIONS: usize = 4;

/// Recent failures from one address.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    /// When the first failure still counted happened.
    since: Instant,
    refused_until: Option<Instant>,
}

/// The server's record of failed logins, and the bound on password checks at once.
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    addresses: Mutex<HashMap<IpAddr, Record>>,
    verifications: Semaphore,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            addresses: Mutex::new(HashMap::new()),
            verifications: Semaphore::new(MAX_VERIFICATIONS),
        }
    }
}

impl LoginThrottle {
    /// How much longer `address` is refused, if it is.
    pub fn refused(&self, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let table = self.addresses.lock();
        let until = table.get(&address)?.refused_until?;
        until
            .checked_duration_since(now)
            .filter(|left| !left.is_zero())
    }

    /// Records a failure from `address`; returns how long to delay its answer.
    pub fn failed(&self, address: IpAddr, spec: &ThrottleSpec) -> Duration {
        let now = Instant::now();
        let mut table = self.addresses.lock();
        if table.len() >= MAX_ADDRESSES && !table.contains_key(&address) {
            table.retain(|_, record| {
                now.duration_since(record.since) < spec.window
                    || record.refused_until.is_some_and(|until| until > now)
            });
            if table.len() >= MAX_ADDRESSES
                && let Some(stalest) = table
                    .iter()
                    .min_by_key(|(_, record)| record.since)
                    .map(|(address, _)| *address)
            {
                table.remove(&stalest);
            }
        }
        let record = table.entry(address).or_insert(Record {
            failures: 0,
            since: now,
            refused_until: None,
        });
        if now.duration_since(record.since) >= spec.window
            && record.refused_until.is_none_or(|until| until <= now)
        {
            *record = Record {
                failures: 0,
                since: now,
                refused_until: None,
            };
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures >= spec.max_failures {
            record.refused_until = Some(now + spec.refuse_for);
        }
        spec.delay_for(record.failures)
    }

    /// Waits for a turn to verify a password.
    pub async fn verification_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.verifications.acquire().await.ok()
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.addresses.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ThrottleSpec {
        ThrottleSpec {
            max_failures: 3,
            window: Duration::from_secs(60),
            refuse_for: Duration::from_secs(60),
            delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        }
    }

    #[test]
    fn failures_are_slowed_then_refused_per_address() {
        let throttle = LoginThrottle::default();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(throttle.failed(one, &spec()), Duration::from_millis(100));
        assert_eq!(throttle.failed(one, &spec()), Duration::from_millis(200));
        assert!(throttle.refused(one).is_none());
        assert_eq!(throttle.failed(one, &spec()), Duration::from_millis(300));
        assert!(throttle.refused(one).is_some());
        assert!(throttle.refused(other).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let throttle = LoginThrottle::default();
        for n in 0..(MAX_ADDRESSES as u32 + 50) {
            throttle.failed(IpAddr::from(n.to_be_bytes()), &spec());
        }
        assert!(throttle.tracked() <= MAX_ADDRESSES);
    }
}
