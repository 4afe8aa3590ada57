//! The client directory: every connected session by client id and by name.

use std::collections::HashMap;
use std::sync::Arc;

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

#[derive(Debug, Default)]
struct Inner {
    clients: HashMap<u64, ClientEntry>,
    by_name: HashMap<Text, SessionIds>,
}

/// The sessions connected under one name: nearly always one, which then costs no
/// allocation of its own.
#[derive(Debug)]
enum SessionIds {
    One(u64),
    Many(Vec<u64>),
}

impl SessionIds {
    fn as_slice(&self) -> &[u64] {
        match self {
            SessionIds::One(id) => std::slice::from_ref(id),
            SessionIds::Many(ids) => ids,
        }
    }

    fn push(&mut self, id: u64) {
        match self {
            SessionIds::One(first) => *self = SessionIds::Many(vec![*first, id]),
            SessionIds::Many(ids) => ids.push(id),
        }
    }

    /// Removes `id`; true when none is left.
    fn remove(&mut self, id: u64) -> bool {
        match self {
            SessionIds::One(only) => *only == id,
            SessionIds::Many(ids) => {
                ids.retain(|other| *other != id);
                match ids[..] {
                    [] => true,
                    [last] => {
                        *self = SessionIds::One(last);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Connected sessions. A leaf lock: nothing else is taken while it is held.
#[derive(Debug, Default)]
pub struct Directory {
    inner: RwLock<Inner>,
}

impl Directory {
    pub fn insert(&self, entry: ClientEntry) {
        let mut inner = self.inner.write();
        match inner.by_name.get_mut(&entry.name) {
            Some(ids) => ids.push(entry.client_id),
            None => {
                inner
                    .by_name
                    .insert(entry.name.clone(), SessionIds::One(entry.client_id));
            }
        }
        inner.clients.insert(entry.client_id, entry);
    }

    pub fn remove(&self, client_id: u64) {
        let mut inner = self.inner.write();
        if let Some(entry) = inner.clients.remove(&client_id)
            && let Some(ids) = inner.by_name.get_mut(&entry.name)
            && ids.remove(client_id)
        {
            inner.by_name.remove(&entry.name);
        }
    }

    pub fn outbox(&self, client_id: u64) -> Option<Outbox> {
        self.inner
            .read()
            .clients
            .get(&client_id)
            .map(|entry| entry.outbox.clone())
    }

    /// Outboxes of every session connected under `name`.
    pub fn outboxes_named(&self, name: &str, out: &mut Vec<Outbox>) {
        let inner = self.inner.read();
        if let Some(ids) = inner.by_name.get(name) {
            out.extend(
                ids.as_slice()
                    .iter()
                    .filter_map(|id| inner.clients.get(id))
                    .map(|entry| entry.outbox.clone()),
            );
        }
    }

    /// Replaces a connected client's permissions (a reload).
    pub fn set_permissions(&self, client_id: u64, permissions: Arc<SessionPermissions>) {
        if let Some(entry) = self.inner.write().clients.get_mut(&client_id) {
            entry.permissions = permissions;
        }
    }

    /// A connected client's entry.
    pub fn entry(&self, client_id: u64) -> Option<ClientEntry> {
        self.inner.read().clients.get(&client_id).cloned()
    }

    pub fn is_online(&self, name: &str) -> bool {
        self.inner.read().by_name.contains_key(name)
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
            .values()
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
        for entry in self.inner.read().clients.values() {
            entry.outbox.nudge();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().clients.len()
    }
}
