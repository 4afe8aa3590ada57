//! What each user uses now, for the limits of its roles: its rate buckets, and the
//! subscriptions, channels and groups it holds. Kept per user name, so that every
//! session of a user shares them; an anonymous session gets a record of its own. A
//! record lives while a session of its user is open or something it created exists.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::limits::{Bucket, Limits};

/// One user's buckets and counts.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    /// The user it counts for; `None` for an anonymous session's own record.
    user: Option<Box<str>>,
    pub publishes: Bucket,
    pub relays: Bucket,
    pub requests: Bucket,
    pub subscriptions: Counter,
    pub channels: Counter,
    pub groups: Counter,
    pub hashtags: Counter,
}

/// A count held against a cap.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Counts one more unless `cap` is reached; `Err` gives the cap.
    pub fn reserve(&self, cap: Option<u64>) -> Result<(), u64> {
        self.reserve_many(1, cap)
    }

    /// Counts `count` more, all or none, unless that passes `cap`; `Err` gives the cap.
    pub fn reserve_many(&self, count: u64, cap: Option<u64>) -> Result<(), u64> {
        match cap {
            None => {
                self.0.fetch_add(count, Ordering::Relaxed);
                Ok(())
            }
            Some(cap) => self
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                    (held.saturating_add(count) <= cap).then_some(held + count)
                })
                .map(drop)
                .map_err(|_| cap),
        }
    }

    pub fn add(&self, count: u64) {
        self.0.fetch_add(count, Ordering::Relaxed);
    }

    pub fn release(&self, count: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(count))
            });
    }
}

/// What a user created and holds until it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owned {
    Channel,
    Group,
    /// A hashtag the user's message brought into the index.
    Hashtag,
}

/// A session's limits and the usage record they are counted in. `None` on a session
/// that nothing limits: its requests then pay nothing for limits.
#[derive(Debug)]
pub(crate) struct SessionLimits {
    pub limits: Limits,
    pub usage: Arc<Usage>,
}

/// Every user's usage, and who created each channel and group that counts against a
/// user.
#[derive(Debug, Default)]
pub(crate) struct UsageTable {
    users: Mutex<HashMap<Box<str>, Arc<Usage>>>,
    owners: Mutex<Owners>,
}

/// The usage each created channel or group counts in, by kind and name.
type Owners = HashMap<(Owned, Box<str>), Arc<Usage>>;

impl UsageTable {
    /// The usage record of `user`, shared by its sessions; a new one of its own for an
    /// anonymous session.
    pub fn join(&self, user: Option<&str>) -> Arc<Usage> {
        match user {
            Some(user) => self
                .users
                .lock()
                .entry(user.into())
                .or_insert_with(|| {
                    Arc::new(Usage {
                        user: Some(user.into()),
                        ..Usage::default()
                    })
                })
                .clone(),
            None => Arc::default(),
        }
    }

    /// A session no longer counts in `usage`: the record goes with the last session,
    /// unless something the user created still counts in it.
    pub fn leave(&self, usage: Arc<Usage>) {
        let Some(user) = &usage.user else { return };
        let mut users = self.users.lock();
        // Ours and the table's: no other session and nothing owned refers to it.
        if Arc::strong_count(&usage) == 2 {
            users.remove(user);
        }
    }

    /// `name` was created by the holder of `usage`, whose count already includes it.
    pub fn own(&self, kind: Owned, name: &str, usage: &Arc<Usage>) {
        self.owners
            .lock()
            .insert((kind, name.into()), usage.clone());
    }

    /// `name` was deleted: its creator's count goes down.
    pub fn disown(&self, kind: Owned, name: &str) {
        let owner = self.owners.lock().remove(&(kind, name.into()));
        if let Some(usage) = owner {
            match kind {
                Owned::Channel => usage.channels.release(1),
                Owned::Group => usage.groups.release(1),
                Owned::Hashtag => usage.hashtags.release(1),
            }
            // The user's last reference may have been this: its record goes too.
            self.leave(usage);
        }
    }

    /// Users with a record now.
    pub fn users(&self) -> usize {
        self.users.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_record_lives_while_a_session_or_something_it_created_does() {
        let table = UsageTable::default();
        let first = table.join(Some("alice"));
        let second = table.join(Some("alice"));
        assert!(Arc::ptr_eq(&first, &second), "sessions of a user share it");
        first.channels.reserve(Some(1)).unwrap();
        assert_eq!(second.channels.reserve(Some(1)), Err(1));
        table.own(Owned::Channel, "news", &first);
        table.leave(first);
        table.leave(second);
        assert_eq!(table.users(), 1, "the channel still counts");
        table.disown(Owned::Channel, "news");
        assert_eq!(table.users(), 0);
        let again = table.join(Some("alice"));
        assert_eq!(again.channels.reserve(Some(1)), Ok(()));
        table.leave(again);
        assert_eq!(table.users(), 0);
        let anonymous = table.join(None);
        table.leave(anonymous);
        assert_eq!(table.users(), 0);
    }
}
