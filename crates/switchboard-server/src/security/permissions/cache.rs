//! A session's permissions while it is served: its grants (replaceable by a reload) and a
//! bounded cache of decisions by operation and subject, so that a session publishing to
//! the same channels again and again pays one hash lookup, not a walk of its roles'
//! patterns. Deliveries filtered on the session's behalf (hashtags, wildcards that
//! overlap a deny pattern) consult the same cache from publishers' tasks, hence the lock;
//! it is held only for the lookup.

use std::sync::Arc;

use arc_swap::ArcSwap;
use foldhash::{HashMap, HashMapExt};
use parking_lot::Mutex;

use super::grants::{Grants, Operation};

/// Decisions kept per operation; past this the operation's cache starts over, so that a
/// session naming endless distinct subjects holds a bounded amount of memory.
pub const CACHE_CAPACITY: usize = 1024;

/// The operations whose decisions are cached: those asked on every publish, delivery
/// or read.
const CACHED: [Operation; 3] = [Operation::Publish, Operation::Subscribe, Operation::History];

#[derive(Default)]
struct Decisions {
    by_operation: [Option<HashMap<Box<str>, bool>>; CACHED.len()],
}

/// One session's grants and its cache of decisions. The cache is allocated on the first
/// decision, so a session that never needs one (an open hub's, an admin's) costs two
/// words for it.
pub struct SessionPermissions {
    grants: ArcSwap<Grants>,
    /// The session's authenticated user, as others' relay rules see it.
    user: Option<Box<str>>,
    cache: Mutex<Option<Box<Decisions>>>,
}

impl std::fmt::Debug for SessionPermissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPermissions")
            .field("grants", &self.grants.load())
            .finish_non_exhaustive()
    }
}

impl SessionPermissions {
    pub fn new(grants: Grants, user: Option<&str>) -> Arc<SessionPermissions> {
        Arc::new(SessionPermissions {
            grants: ArcSwap::from_pointee(grants),
            user: user.map(Box::from),
            cache: Mutex::new(None),
        })
    }

    /// The session's user; `None` when anonymous.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The grants in force.
    pub fn grants(&self) -> Arc<Grants> {
        self.grants.load_full()
    }

    /// Whether the session may do everything, without a lookup.
    pub fn is_everything(&self) -> bool {
        self.grants.load().is_everything()
    }

    /// Puts new grants in force (a reload) and forgets every decision taken under the
    /// old ones.
    pub fn replace(&self, grants: Grants) {
        self.grants.store(Arc::new(grants));
        *self.cache.lock() = None;
    }

    /// Whether `operation` on the concrete subject `name` is allowed; cached for the
    /// operations asked on the hot paths.
    pub fn allows(&self, operation: Operation, name: &str) -> bool {
        let grants = self.grants.load();
        if grants.is_everything() {
            return true;
        }
        let Some(slot) = CACHED.iter().position(|cached| *cached == operation) else {
            return grants.allows(operation, name);
        };
        if let Some(&known) = self
            .cache
            .lock()
            .as_ref()
            .and_then(|cache| cache.by_operation[slot].as_ref())
            .and_then(|map| map.get(name))
        {
            return known;
        }
        let decision = grants.allows(operation, name);
        let mut cache = self.cache.lock();
        let cache = cache.get_or_insert_with(Box::default);
        let map = cache.by_operation[slot].get_or_insert_with(|| HashMap::with_capacity(8));
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(Box::from(name), decision);
        decision
    }

    /// How many decisions are cached, all operations together.
    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.cache.lock().as_ref().map_or(0, |cache| {
            cache.by_operation.iter().flatten().map(HashMap::len).sum()
        })
    }
}
