//! Wall-clock time in the protocol's unit, microseconds since the Unix epoch, and the
//! message ids derived from it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_us() -> u64 {
    // Seconds and sub-second micros rather than `as_micros`, whose u128 division showed
    // in publish profiles.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| {
            elapsed
                .as_secs()
                .saturating_mul(1_000_000)
                .saturating_add(u64::from(elapsed.subsec_micros()))
        })
        .unwrap_or(0)
}

const SALT_MASK: u64 = (1 << 42) - 1;

/// Message ids: UUID v7 made from the message's own publish time.
///
/// The 74 bits after the millisecond timestamp hold a process-wide counter (so ids of
/// one process sort in publish order within a millisecond and never repeat) and 42
/// random bits drawn once per process (so two processes, or one restarted within the
/// same millisecond, do not collide). This spares a clock read, a global lock and a
/// random draw per message, which is what `Uuid::now_v7` costs.
#[derive(Debug)]
pub struct MessageIds {
    counter: AtomicU32,
    /// 42 random bits.
    salt: u64,
}

impl MessageIds {
    pub fn new() -> MessageIds {
        // The last 7 bytes of a v7 UUID are random but for the variant bits of the first.
        let random = Uuid::now_v7();
        let bytes = random.as_bytes();
        let mut salt = [0u8; 8];
        salt[2..].copy_from_slice(&bytes[10..16]);
        MessageIds {
            counter: AtomicU32::new(0),
            salt: u64::from_be_bytes(salt) & SALT_MASK,
        }
    }

    /// The id of a message published at `time_us`.
    pub fn next(&self, time_us: u64) -> Uuid {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        // The 74 bits are rand_a (12 bits) then rand_b (62 bits), around the version and
        // variant bits the builder sets.
        let bits = (u128::from(count) << 42) | u128::from(self.salt);
        let rand_a = (bits >> 62) as u16;
        let rand_b = (bits as u64) & ((1 << 62) - 1);
        let mut tail = [0u8; 10];
        tail[..2].copy_from_slice(&rand_a.to_be_bytes());
        tail[2..].copy_from_slice(&rand_b.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(time_us / 1000, &tail).into_uuid()
    }
}

impl Default for MessageIds {
    fn default() -> Self {
        MessageIds::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_carry_their_time_and_sort_in_issue_order() {
        let ids = MessageIds::new();
        let time_us = 1_790_000_000_123_456;
        let issued: Vec<Uuid> = (0..1000).map(|_| ids.next(time_us)).collect();
        for id in &issued {
            assert_eq!(id.get_version_num(), 7);
            let (secs, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
            assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, time_us / 1000);
        }
        let mut sorted = issued.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), issued.len(), "no id repeats");
        assert!(
            issued.windows(2).all(|pair| pair[0] < pair[1]),
            "ids follow issue order"
        );
    }

    #[test]
    fn every_counter_bit_reaches_the_id() {
        let ids = MessageIds {
            counter: AtomicU32::new(0),
            salt: 0,
        };
        let time_us = 1_790_000_000_000_000;
        let mut seen = std::collections::HashSet::new();
        for bit in 0..32 {
            ids.counter.store(1 << bit, Ordering::Relaxed);
            assert!(seen.insert(ids.next(time_us)), "counter bit {bit} is lost");
            assert_eq!(ids.next(time_us).get_version_num(), 7);
        }
    }

    #[test]
    fn two_generators_do_not_collide_in_the_same_millisecond() {
        let (a, b) = (MessageIds::new(), MessageIds::new());
        let time_us = 1_790_000_000_000_000;
        let from_a: std::collections::HashSet<Uuid> = (0..1000).map(|_| a.next(time_us)).collect();
        assert!((0..1000).all(|_| !from_a.contains(&b.next(time_us))));
    }

    #[test]
    fn now_is_in_microseconds() {
        let now = now_us();
        let reference = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        assert!(reference.abs_diff(now) < 1_000_000, "{now} vs {reference}");
    }
}
