//! The group directory: groups with a description, a member list kept by user name (so
//! membership outlives a connection) and a history of the group's messages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use switchboard_proto::packet::{GroupInfo, MemberInfo};

use super::history::History;
use crate::error::Refusal;

/// One group.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub members: Mutex<BTreeSet<String>>,
    pub history: Mutex<History>,
}

impl Group {
    pub fn info(&self) -> GroupInfo {
        GroupInfo {
            name: self.name.as_str().into(),
            description: self.description.as_str().into(),
            member_count: self.members.lock().len() as u64,
        }
    }

    pub fn is_member(&self, name: &str) -> bool {
        self.members.lock().contains(name)
    }

    pub fn member_list(&self, online: impl Fn(&str) -> bool) -> Vec<MemberInfo> {
        self.members
            .lock()
            .iter()
            .map(|name| MemberInfo {
                name: name.as_str().into(),
                online: online(name),
            })
            .collect()
    }
}

/// All groups, by name.
#[derive(Debug, Default)]
pub struct GroupTable {
    map: RwLock<BTreeMap<String, Arc<Group>>>,
}

impl GroupTable {
    pub fn get(&self, name: &str) -> Option<Arc<Group>> {
        self.map.read().get(name).cloned()
    }

    /// Inserts the group unless one of that name exists; returns the group and whether
    /// it was created.
    pub fn insert(&self, group: Group) -> (Arc<Group>, bool) {
        let mut map = self.map.write();
        if let Some(existing) = map.get(&group.name) {
            return (existing.clone(), false);
        }
        let group = Arc::new(group);
        map.insert(group.name.clone(), group.clone());
        (group, true)
    }

    /// Inserts the group `make` builds unless one of that name exists; returns whether it
    /// was created. `make` runs under the table's lock, so that of two sessions creating
    /// the same group only the one that wins reaches storage.
    pub fn insert_with(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Group, Refusal>,
    ) -> Result<bool, Refusal> {
        let mut map = self.map.write();
        if map.contains_key(name) {
            return Ok(false);
        }
        let group = Arc::new(make()?);
        map.insert(group.name.clone(), group);
        Ok(true)
    }

    pub fn list(&self) -> Vec<Arc<Group>> {
        self.map.read().values().cloned().collect()
    }
}
