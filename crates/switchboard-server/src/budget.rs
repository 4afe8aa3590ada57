//! The server's memory budget: one byte account, shared by every session, that the state
//! clients can make the server keep (subscriptions, channels, groups, group memberships,
//! hashtag index entries) is admitted against, so that no mix of clients can grow it
//! until the process is at risk. Each item is charged an estimate of what it costs (its
//! names plus the structures around it) when created and released when removed; a
//! creation that would pass the limit is refused with `LIMIT_REACHED` before anything is
//! allocated. Queued outbound bytes are admitted against it too, in steps, by each
//! connection's outbox (see `outbox::reservation`).
//!
//! What it does not count: message histories (bounded per channel by retention) and the
//! first bytes every connection may queue (a small allowance each).

use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_proto::ErrorCode;
use switchboard_proto::subject::{Pattern, PatternToken};

use crate::error::Refusal;

/// What a subscription costs besides its pattern: the session's entry, the route entry
/// and its share of the routing tables (about 600 bytes in all was measured for an exact
/// pattern of a few bytes).
const SUBSCRIPTION_OVERHEAD: u64 = 576;
/// What a channel costs besides its name: the table entry, its options, an empty
/// history and the store's bookkeeping.
const CHANNEL_OVERHEAD: u64 = 1024;
/// What a group costs besides its name and description: table entry, member set, an
/// empty history.
const GROUP_OVERHEAD: u64 = 1024;
/// What a hashtag index entry costs besides its tag: the map entry and its queue.
const TAG_OVERHEAD: u64 = 128;
/// What a group membership costs besides the member's name: its entry in the group's
/// member set.
const MEMBER_OVERHEAD: u64 = 64;
/// What one token of a wildcard pattern costs besides its text (tree node).
const TOKEN_OVERHEAD: u64 = 64;

/// The budget when none is configured and the machine's memory cannot be read.
pub const FALLBACK_MAX_MEMORY: u64 = 4 << 30;

/// A default budget: half the machine's physical memory where it can be read, else
/// [`FALLBACK_MAX_MEMORY`].
pub fn default_max_memory() -> u64 {
    physical_memory().map_or(FALLBACK_MAX_MEMORY, |total| total / 2)
}

/// Physical memory in bytes, from `/proc/meminfo`'s `MemTotal`.
#[cfg(target_os = "linux")]
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(not(target_os = "linux"))]
fn physical_memory() -> Option<u64> {
    None
}

/// The byte account. Charging is one atomic add (and a subtraction to undo it when
/// refused), so concurrent creations never pass the limit together.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicU64,
    limit: u64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Self {
        MemoryBudget {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// A budget nothing can exhaust (for tests of other parts).
    #[cfg(test)]
    pub fn unlimited() -> std::sync::Arc<Self> {
        std::sync::Arc::new(MemoryBudget::new(u64::MAX))
    }

    /// Charges `bytes` for `what` (named in the refusal), or refuses with LIMIT_REACHED
    /// when the account would pass the limit.
    pub fn charge(&self, bytes: u64, what: &str) -> Result<(), Refusal> {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Refusal::new(
                ErrorCode::LimitReached,
                format!(
                    "the server's memory budget is exhausted ({} of {} bytes in use): no new {what} until some are removed",
                    before, self.limit
                ),
            ));
        }
        Ok(())
    }

    /// Charges what is already there (state restored at start-up), even past the limit.
    pub fn charge_anyway(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back what a removed item was charged.
    pub fn release(&self, bytes: u64) {
        // Never below zero, even if a release outran its charge.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// The estimated cost of a subscription to `pattern`.
pub fn subscription_cost(pattern: &Pattern) -> u64 {
    let text = match pattern {
        Pattern::Exact(name) | Pattern::Tag(name) => name.len() as u64,
        Pattern::Wildcard(tokens) => tokens
            .iter()
            .map(|token| match token {
                PatternToken::Literal(literal) => literal.len() as u64 + TOKEN_OVERHEAD,
                PatternToken::One | PatternToken::Rest => TOKEN_OVERHEAD,
            })
            .sum(),
    };
    // The pattern is kept twice: in the session and in the routing table.
    SUBSCRIPTION_OVERHEAD + 2 * text
}

/// The estimated cost of a channel named `name`.
pub fn channel_cost(name: &str) -> u64 {
    // The name is kept in the table's key and in the channel.
    CHANNEL_OVERHEAD + 2 * name.len() as u64
}

/// The estimated cost of a group.
pub fn group_cost(name: &str, description: &str) -> u64 {
    GROUP_OVERHEAD + 2 * name.len() as u64 + description.len() as u64
}

/// The estimated cost of `member`'s membership of a group.
pub fn member_cost(member: &str) -> u64 {
    MEMBER_OVERHEAD + member.len() as u64
}

/// The estimated cost of a hashtag index entry for `tag`.
pub fn tag_cost(tag: &str) -> u64 {
    TAG_OVERHEAD + tag.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_the_limit_and_refuses_past_it() {
        let budget = MemoryBudget::new(1000);
        assert!(budget.charge(600, "channels").is_ok());
        let refusal = budget.charge(600, "channels").unwrap_err();
        assert_eq!(refusal.code, ErrorCode::LimitReached);
        assert!(
            refusal.message.contains("memory budget"),
            "{}",
            refusal.message
        );
        assert_eq!(budget.used(), 600, "a refused charge leaves nothing behind");
        assert!(budget.charge(400, "channels").is_ok());
        budget.release(1000);
        assert_eq!(budget.used(), 0);
        budget.release(5);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_default_is_half_the_machine_or_the_fallback() {
        let default = default_max_memory();
        assert!(default > 0);
        if let Some(total) = physical_memory() {
            assert_eq!(default, total / 2);
        } else {
            assert_eq!(default, FALLBACK_MAX_MEMORY);
        }
    }

    #[test]
    fn costs_grow_with_names() {
        let short = subscription_cost(&Pattern::parse("a").unwrap());
        let long = subscription_cost(&Pattern::parse(&"a".repeat(200)).unwrap());
        assert!(long > short && short >= SUBSCRIPTION_OVERHEAD);
        assert!(subscription_cost(&Pattern::parse("a.*.>").unwrap()) > short);
        assert!(channel_cost("news") > CHANNEL_OVERHEAD);
        assert!(group_cost("club", "a description") > GROUP_OVERHEAD);
        assert!(tag_cost("rust") > TAG_OVERHEAD);
        assert!(member_cost("alice") > MEMBER_OVERHEAD);
    }
}
