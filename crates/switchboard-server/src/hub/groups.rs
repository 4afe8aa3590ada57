//! Groups: each with a description, a member list kept by user name (so membership
//! outlives a connection) and a history of the group's messages; and the hub's group
//! operations (create, join, leave, post, read, delete), which take a group's history,
//! then its members, then the directory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    ChannelOptions, Event, EventKind, GroupInfo, Packet, Publish, Scope,
};
use switchboard_proto::subject;
use tracing::{error, info};

use super::admission::Admission;
use super::channels::retention_of;
use super::history::History;
use super::{Body, Caller, Hub, Published, deleted_meanwhile, storage_refusal};
use crate::budget;
use crate::error::Refusal;
use crate::log;
use crate::outbox::Outbox;
use crate::storage::{GroupSnapshot, LogKind};
use crate::time::now_us;

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

    /// The table, read-locked (listing in name order).
    pub fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<Group>>> {
        self.map.read()
    }

    pub fn list(&self) -> Vec<Arc<Group>> {
        self.map.read().values().cloned().collect()
    }

    /// Takes a group out of the table and runs `retire` on it under the table's lock,
    /// so that no group of that name can be created (and stored) before `retire` is
    /// done; `None` if there is no group of that name.
    pub fn remove_with<T>(&self, name: &str, retire: impl FnOnce(&Group) -> T) -> Option<T> {
        let mut map = self.map.write();
        let group = map.remove(name)?;
        Some(retire(&group))
    }
}

impl Hub {
    /// Group PUBLISH, admitted (members only): stored in the group's history and pushed
    /// to every online member's sessions.
    pub(super) fn post_to_group(
        &self,
        caller: &Caller,
        group: &Group,
        admission: Admission,
        publish: Publish,
        body: Body,
    ) -> Result<Published, Refusal> {
        let mut history = group.history.lock();
        if history.is_deleted() {
            return Err(deleted_meanwhile("group", &group.name));
        }
        let stored = self.seal(
            caller,
            &publish,
            &mut history,
            Vec::new(),
            body,
            now_us(),
            &mut None,
        )?;
        if admission.is_stored() {
            self.store(LogKind::Group, &group.name, &stored, admission)?;
        }
        if let Some(through) = history.push(stored.clone(), admission.is_stored(), stored.time_us())
            && admission.is_stored()
        {
            self.storage.trim(LogKind::Group, &group.name, through);
        }
        let delivered = self.tell_members(group, |outbox| {
            outbox.deliver_message(&stored, admission.drop_oldest)
        });
        drop(history);
        Ok(self.published(&stored, delivered, admission.must_sync()))
    }

    /// Queues something on every session of every member of the group; returns on how
    /// many it was queued.
    fn tell_members(&self, group: &Group, deliver: impl Fn(&Outbox) -> bool) -> u64 {
        let members = group.members.lock();
        let mut outboxes = Vec::new();
        for member in members.iter() {
            self.directory.outboxes_named(member, &mut outboxes);
        }
        drop(members);
        outboxes
            .iter()
            .map(|outbox| u64::from(deliver(outbox)))
            .sum()
    }

    pub(super) fn group(&self, name: &str) -> Result<Arc<Group>, Refusal> {
        self.groups
            .get(name)
            .ok_or_else(|| Refusal::not_found(format!("no group named {name}")))
    }

    /// CREATE_GROUP. Creating a group that exists is refused.
    pub fn create_group(&self, name: &str, description: &str) -> Result<(), Refusal> {
        subject::validate_group(name)?;
        if description.chars().count() > 1024 {
            return Err(Refusal::invalid(
                "a description has at most 1024 characters",
            ));
        }
        let retention = retention_of(&ChannelOptions::default(), &self.config);
        let cost = budget::group_cost(name, description);
        let created = self.groups.insert_with(name, || {
            self.budget.charge(cost, "groups")?;
            if let Err(error) = self.storage.put_group(name, description) {
                self.budget.release(cost);
                return Err(storage_refusal(&error));
            }
            let mut history = History::new(retention);
            self.keep_cold(LogKind::Group, name, true, &mut history);
            Ok(Group {
                name: name.to_owned(),
                description: description.to_owned(),
                members: Mutex::new(Default::default()),
                history: Mutex::new(history),
            })
        })?;
        if !created {
            return Err(Refusal::new(
                ErrorCode::AlreadyExists,
                format!("group {name} already exists"),
            ));
        }
        info!(target: log::GENERAL, group = name, "group created");
        Ok(())
    }

    /// JOIN_GROUP or LEAVE_GROUP for the caller's name, announced to online members
    /// (including the one joining, and the one leaving).
    pub fn set_membership(&self, caller: &Caller, name: &str, join: bool) -> Result<(), Refusal> {
        let group = self.group(name)?;
        let mut members = group.members.lock();
        let cost = budget::member_cost(caller.name());
        let changed = if join {
            if members.contains(caller.name().as_str()) {
                false
            } else {
                self.budget.charge(cost, "group members")?;
                members.insert(caller.name().to_string())
            }
        } else {
            let removed = members.remove(caller.name().as_str());
            if removed {
                self.budget.release(cost);
            }
            removed
        };
        if !changed {
            drop(members);
            return if join {
                Ok(())
            } else {
                Err(Refusal::not_found(format!(
                    "{} is not a member of group {name}",
                    caller.name()
                )))
            };
        }
        // Saved under the lock, so that changes reach storage in the order they were made.
        let saved = if join {
            self.storage.add_member(name, caller.name())
        } else {
            self.storage.remove_member(name, caller.name())
        };
        if let Err(e) = saved {
            error!(target: log::ERROR, group = name, error = %e, "saving members failed");
        }
        drop(members);
        if join
            && !self
                .groups
                .get(name)
                .is_some_and(|now| Arc::ptr_eq(&now, &group))
        {
            // The group was deleted meanwhile. If the delete took the members before this
            // join, it did not release this membership: it is released here.
            if group.members.lock().remove(caller.name().as_str()) {
                self.budget.release(cost);
            }
            return Err(deleted_meanwhile("group", name));
        }
        info!(target: log::GENERAL, group = name, member = %caller.name(), join, "membership changed");
        let mut event = Event::new(if join {
            EventKind::MemberJoined
        } else {
            EventKind::MemberLeft
        });
        event.scope = Scope::Group;
        event.channel = name.into();
        event.subject = caller.name().clone();
        event.time_us = now_us();
        let frame = self.shared_frame(&Packet::Event(event));
        if let Some(frame) = frame {
            self.tell_members(&group, |outbox| outbox.deliver(frame.clone()));
            if !join {
                caller.outbox.deliver(frame);
            }
        }
        Ok(())
    }

    /// DELETE_GROUP: the group, its history (streamed bodies included) and its members
    /// go, in memory and in storage; every online member's sessions are told with an
    /// EVENT `GROUP_DELETED`. The name may be created again, as a new empty group.
    pub fn delete_group(&self, name: &str) -> Result<(), Refusal> {
        subject::validate_group(name)?;
        let mut event = Event::new(EventKind::GroupDeleted);
        event.scope = Scope::Group;
        event.channel = name.into();
        event.time_us = now_us();
        let frame = self.shared_frame(&Packet::Event(event));
        let (messages, stored, cost) = self
            .groups
            .remove_with(name, |group| {
                let mut history = group.history.lock();
                let messages = history.take_all();
                // Under the history lock, after every append of the group; under the
                // table's, before the name can be created again.
                let stored = self.storage.delete_group(name);
                // Still under the history lock: after every message of the group queued.
                if let Some(frame) = &frame {
                    self.tell_members(group, |outbox| outbox.deliver(frame.clone()));
                }
                drop(history);
                // Taken out, so that a join racing with the delete can tell whether its
                // membership was released here (see `set_membership`).
                let members = std::mem::take(&mut *group.members.lock());
                let cost = budget::group_cost(&group.name, &group.description)
                    + members
                        .iter()
                        .map(|member| budget::member_cost(member))
                        .sum::<u64>();
                (messages, stored, cost)
            })
            .ok_or_else(|| Refusal::not_found(format!("no group named {name}")))?;
        drop(messages);
        self.budget.release(cost);
        self.usage()
            .disown(crate::security::usage::Owned::Group, name);
        info!(target: log::GENERAL, group = name, "group deleted");
        stored.map_err(|e| storage_refusal(&e))
    }

    pub fn group_count(&self) -> usize {
        self.groups.list().len()
    }

    /// Runs `read` on a group's history, if `reader` is a member.
    pub(super) fn read_group_history<T>(
        &self,
        name: &str,
        reader: &str,
        read: impl FnOnce(&History) -> T,
    ) -> Result<(T, u64), Refusal> {
        subject::validate_group(name)?;
        let group = self.group(name)?;
        if !group.is_member(reader) {
            return Err(Refusal::forbidden(format!(
                "only members may read group {name}; join it first"
            )));
        }
        let history = group.history.lock();
        Ok((read(&history), history.info().last_seq))
    }

    /// Rebuilds a group from what storage gave back, with its history rebuilt.
    pub(super) fn restore_group(&self, saved: GroupSnapshot, history: History) {
        let name = saved.name.clone();
        self.budget
            .charge_anyway(budget::group_cost(&name, &saved.description));
        for member in &saved.members {
            self.budget.charge_anyway(budget::member_cost(member));
        }
        self.groups.insert(Group {
            name,
            description: saved.description,
            members: Mutex::new(saved.members.into_iter().collect()),
            history: Mutex::new(history),
        });
    }
}
