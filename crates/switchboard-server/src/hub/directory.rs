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

/// A connected session as others see it.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    pub client_id: u64,
    /// Shared with the session's own copy of its name, and with the by-name index.
    pub name: Text,
    pub connected_since_us: u64,
    pub outbox: Outbox,
    /// What the session may do and its user (what others' relay rules match).
    pub permissions: Arc<SessionPermissions>,
}

/// Both indexes hold each session once: the entry itself, found by its client id, and
/// the client id again, found by the session's name. Not two maps: a map by name would
/// keep a copy of the name (32 bytes) beside each id, and a list of ids per name; here
/// each name's slot is the id alone (8 bytes), and several sessions of one name are
/// several slots whose names are read from their entries.
#[derive(Default)]
struct Inner {
    /// Every session's entry, hashed by its client id.
    clients: HashTable<ClientEntry>,
    /// Every session's client id, hashed by its name.
    by_name: HashTable<u64>,
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

    fn get(&self, client_id: u64) -> Option<&ClientEntry> {
        self.clients.find(self.id_hash(client_id), |entry| {
            entry.client_id == client_id
        })
    }

    /// The entries of the sessions named `name`.
    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ClientEntry> + 'a {
        self.by_name
            .iter_hash(self.name_hash(name))
            .filter_map(|&id| self.get(id))
            .filter(move |entry| entry.name.as_str() == name)
    }
}

/// Connected sessions. A leaf lock: nothing else is taken while it is held.
#[derive(Debug, Default)]
pub struct Directory {
    inner: RwLock<Inner>,
}

impl Directory {
    pub fn insert(&self, entry: ClientEntry) {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let client_id = entry.client_id;
        let name_hash = inner.name_hash(&entry.name);
        let hasher = &inner.hasher;
        inner
            .clients
            .insert_unique(hasher.hash_one(client_id), entry, |entry| {
                hasher.hash_one(entry.client_id)
            });
        let clients = &inner.clients;
        // Growing the table rehashes every id by its session's name, read from its entry
        // (every id in the table has one: both are inserted and removed together).
        inner.by_name.insert_unique(name_hash, client_id, |&id| {
            clients
                .find(hasher.hash_one(id), |entry| entry.client_id == id)
                .map_or(0, |entry| hasher.hash_one(entry.name.as_str()))
        });
    }

    pub fn remove(&self, client_id: u64) {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let id_hash = inner.id_hash(client_id);
        let Ok(found) = inner
            .clients
            .find_entry(id_hash, |entry| entry.client_id == client_id)
        else {
            return;
        };
        let (entry, _) = found.remove();
        let name_hash = inner.name_hash(&entry.name);
        if let Ok(found) = inner.by_name.find_entry(name_hash, |&id| id == client_id) {
            found.remove();
        }
    }

    pub fn outbox(&self, client_id: u64) -> Option<Outbox> {
        self.inner
            .read()
            .get(client_id)
            .map(|entry| entry.outbox.clone())
    }

    /// Outboxes of every session connected under `name`.
    pub fn outboxes_named(&self, name: &str, out: &mut Vec<Outbox>) {
        let inner = self.inner.read();
        out.extend(inner.named(name).map(|entry| entry.outbox.clone()));
    }

    /// Replaces a connected client's permissions (a reload).
    pub fn set_permissions(&self, client_id: u64, permissions: Arc<SessionPermissions>) {
        let mut inner = self.inner.write();
        let id_hash = inner.id_hash(client_id);
        if let Some(entry) = inner
            .clients
            .find_mut(id_hash, |entry| entry.client_id == client_id)
        {
            entry.permissions = permissions;
        }
    }

    /// A connected client's entry.
    pub fn entry(&self, client_id: u64) -> Option<ClientEntry> {
        self.inner.read().get(client_id).cloned()
    }

    pub fn is_online(&self, name: &str) -> bool {
        self.inner.read().named(name).next().is_some()
    }

    /// Every connected client but `except`, by id.
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
            .filter(|entry| entry.client_id != except)
            .filter(|entry| after.is_none_or(|after| entry.client_id > after))
            .filter(|entry| visible(entry))
            .map(|entry| ClientInfo {
                client_id: entry.client_id,
                name: entry.name.clone(),
                connected_since_us: entry.connected_since_us,
            })
            .collect();
        list.sort_by_key(|client| client.client_id);
        list
    }

    /// Wakes every connected session's request loop to look again at what it waits
    /// for (see `Outbox::signal`).
    pub fn nudge_all(&self) {
        for entry in self.inner.read().clients.iter() {
            entry.outbox.nudge();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::permissions::Grants;

    fn entry(client_id: u64, name: &str) -> ClientEntry {
        let (outbox, _) = Outbox::unbudgeted(client_id, 16, 4096);
        ClientEntry {
            client_id,
            name: Text::from(name),
            connected_since_us: client_id * 10,
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
            directory.entry(42).map(|entry| entry.name.to_string()),
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
