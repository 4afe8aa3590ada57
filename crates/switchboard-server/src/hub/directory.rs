//! The client directory: every connected session by client id and by name.

use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use parking_lot::RwLock;
use switchboard_proto::Text;
use switchboard_proto::packet::ClientInfo;

use crate::outbox::Outbox;
use crate::security::permissions::SessionPermissions;

/// A connected session as others see it: its queue (which also holds its id, its name
/// and when it connected) and what it may do.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    pub client_id: u64,
    pub outbox: Outbox,
    /// What the session may do and its user (what others' relay rules match).
    pub permissions: Arc<SessionPermissions>,
}

impl ClientEntry {
    /// The entry of the session whose queue is `outbox`, if it was registered (a
    /// registered session's queue holds its permissions).
    fn of(outbox: &Outbox) -> Option<ClientEntry> {
        Some(ClientEntry {
            client_id: outbox.conn_id(),
            permissions: outbox.permissions()?,
            outbox: outbox.clone(),
        })
    }

    pub fn name(&self) -> &Text {
        self.outbox.name()
    }

    pub fn connected_since_us(&self) -> u64 {
        self.outbox.connected_since_us()
    }
}

/// Both indexes hold each session once, as its queue: the queue's state holds the
/// session's id, name, connection time and permissions, so that a slot is one pointer
/// (8 bytes) rather than a copy of them (64), in tables of 1.15 to 2.3 slots per
/// session. Not a map by name: that would keep a copy of the name beside each queue,
/// and a list of queues per name; several sessions of one name are several slots.
#[derive(Default)]
struct Inner {
    /// Every session's queue, hashed by its client id.
    clients: HashTable<Outbox>,
    /// Every session's queue again, hashed by its name.
    by_name: HashTable<Outbox>,
    hasher: RandomState,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn id_hash(&self, client_id: u64) -> u64 {
        self.hasher.hash_one(client_id)
    }

    fn name_hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    fn get(&self, client_id: u64) -> Option<&Outbox> {
        self.clients.find(self.id_hash(client_id), |outbox| {
            outbox.conn_id() == client_id
        })
    }

    /// The queues of the sessions named `name`.
    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Outbox> + 'a {
        self.by_name
            .iter_hash(self.name_hash(name))
            .filter(move |outbox| outbox.name().as_str() == name)
    }
}

/// Connected sessions. A leaf lock: nothing else is taken while it is held but an
/// outbox's own (for its permissions).
#[derive(Debug, Default)]
pub struct Directory {
    inner: RwLock<Inner>,
}

impl Directory {
    pub fn insert(&self, entry: ClientEntry) {
        let ClientEntry {
            client_id,
            outbox,
            permissions,
        } = entry;
        outbox.set_permissions(permissions);
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let name_hash = inner.name_hash(outbox.name());
        let hasher = &inner.hasher;
        inner
            .clients
            .insert_unique(hasher.hash_one(client_id), outbox.clone(), |outbox| {
                hasher.hash_one(outbox.conn_id())
            });
        inner.by_name.insert_unique(name_hash, outbox, |outbox| {
            hasher.hash_one(outbox.name().as_str())
        });
    }

    pub fn remove(&self, client_id: u64) {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let id_hash = inner.id_hash(client_id);
        let Ok(found) = inner
            .clients
            .find_entry(id_hash, |outbox| outbox.conn_id() == client_id)
        else {
            return;
        };
        let (outbox, _) = found.remove();
        let name_hash = inner.name_hash(outbox.name());
        if let Ok(found) = inner
            .by_name
            .find_entry(name_hash, |outbox| outbox.conn_id() == client_id)
        {
            found.remove();
        }
    }

    pub fn outbox(&self, client_id: u64) -> Option<Outbox> {
        self.inner.read().get(client_id).cloned()
    }

    /// Outboxes of every session connected under `name`.
    pub fn outboxes_named(&self, name: &str, out: &mut Vec<Outbox>) {
        let inner = self.inner.read();
        out.extend(inner.named(name).cloned());
    }

    /// Replaces a connected client's permissions (a reload).
    pub fn set_permissions(&self, client_id: u64, permissions: Arc<SessionPermissions>) {
        if let Some(outbox) = self.outbox(client_id) {
            outbox.set_permissions(permissions);
        }
    }

    /// A connected client's entry.
    pub fn entry(&self, client_id: u64) -> Option<ClientEntry> {
        self.inner.read().get(client_id).and_then(ClientEntry::of)
    }

    pub fn is_online(&self, name: &str) -> bool {
        self.inner.read().named(name).next().is_some()
    }

    /// Every client but `except` whose id is above `after`, in id order.
    /// Only those `visible` accepts are listed.
    pub fn list_after(
        &self,
        except: u64,
        after: Option<u64>,
        visible: impl Fn(&ClientEntry) -> bool,
    ) -> Vec<ClientInfo> {
        let inner = self.inner.read();
        let mut list: Vec<ClientInfo> = inner
            .clients
            .iter()
            .filter(|outbox| outbox.conn_id() != except)
            .filter(|outbox| after.is_none_or(|after| outbox.conn_id() > after))
            .filter_map(ClientEntry::of)
            .filter(|entry| visible(entry))
            .map(|entry| ClientInfo {
                client_id: entry.client_id,
                // A copy: a clone of the name would make its buffer shared, an
                // allocation kept for the session's life.
                name: Text::from(entry.name().as_str()),
                connected_since_us: entry.connected_since_us(),
            })
            .collect();
        list.sort_by_key(|client| client.client_id);
        list
    }

    /// Wakes every connected session's request loop to look again at what it waits
    /// for (see `Outbox::signal`).
    pub fn nudge_all(&self) {
        for outbox in self.inner.read().clients.iter() {
            outbox.nudge();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().clients.len()
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::budget::MemoryBudget;
    use crate::outbox::OutboxShared;
    use crate::security::permissions::Grants;

    fn entry(client_id: u64, name: &str) -> ClientEntry {
        let shared = Arc::new(OutboxShared::new(
            16,
            4096,
            CancellationToken::new(),
            Arc::default(),
            MemoryBudget::unlimited(),
        ));
        let (outbox, _) = Outbox::new(client_id, Text::from(name), &shared);
        ClientEntry {
            client_id,
            outbox,
            permissions: SessionPermissions::new(Grants::Everything { admin: false }, None),
        }
    }

    fn ids_named(directory: &Directory, name: &str) -> Vec<u64> {
        let mut outboxes = Vec::new();
        directory.outboxes_named(name, &mut outboxes);
        let mut ids: Vec<u64> = outboxes.iter().map(Outbox::conn_id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn sessions_are_found_by_id_and_by_name_until_removed() {
        let directory = Directory::default();
        // Enough sessions for both tables to grow (and rehash) several times.
        for id in 1..=300 {
            directory.insert(entry(id, &format!("s{}", id % 100)));
        }
        directory.insert(entry(1000, "alone"));
        assert_eq!(directory.len(), 301);
        assert_eq!(ids_named(&directory, "s7"), [7, 107, 207]);
        assert_eq!(ids_named(&directory, "alone"), [1000]);
        assert!(ids_named(&directory, "s100").is_empty());
        assert_eq!(
            directory.outbox(207).map(|outbox| outbox.conn_id()),
            Some(207)
        );
        assert_eq!(
            directory.entry(42).map(|entry| entry.name().to_string()),
            Some("s42".to_owned())
        );

        directory.remove(107);
        directory.remove(107);
        assert_eq!(ids_named(&directory, "s7"), [7, 207]);
        assert!(directory.outbox(107).is_none());
        directory.remove(7);
        directory.remove(207);
        assert!(!directory.is_online("s7"));
        assert!(directory.is_online("s8"));
        directory.remove(1000);
        assert!(!directory.is_online("alone"));
        assert_eq!(directory.len(), 297);

        let listed = directory.list_after(1, Some(295), |_| true);
        let listed: Vec<(u64, String)> = listed
            .into_iter()
            .map(|client| (client.client_id, client.name.to_string()))
            .collect();
        assert_eq!(
            listed,
            [
                (296, "s96".to_owned()),
                (297, "s97".to_owned()),
                (298, "s98".to_owned()),
                (299, "s99".to_owned()),
                (300, "s0".to_owned()),
            ]
        );
    }
}
