//! Loading at start: every record read back and checked, histories rebuilt with their
//! next sequence numbers, each history's chunks noted for the writer's trims, and member
//! lists of earlier versions rewritten as one record per member.

use std::collections::{HashMap, VecDeque};

use fjall::PersistMode;
use switchboard_proto::packet::{ChannelOptions, Packet};
use tracing::{info, warn};

use super::record::{decode_chunk, decode_record};
use super::{ChunkIndex, Open, keys, storage_error};
use crate::log;
use crate::storage::{GroupSnapshot, LoadSink, LogKind, LogSnapshot, Snapshot, StorageError};

impl Open {
    /// Everything stored, each history's messages into `sink` (the snapshot comes without
    /// them), and each history's chunks into `chunks`.
    pub(super) fn load(
        &self,
        chunks: &mut ChunkIndex,
        sink: &mut dyn LoadSink,
    ) -> Result<Snapshot, StorageError> {
        let mut snapshot = Snapshot::default();
        let mut corrupt = 0;
        let mut groups: Vec<(String, String)> = Vec::new();
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        // Member lists as earlier versions stored them, to rewrite one key per member.
        let mut legacy_lists: Vec<(String, Vec<String>)> = Vec::new();
        for entry in self.meta.iter() {
            let (key, value) = entry
                .into_inner()
                .map_err(|e| storage_error("reading meta", e))?;
            if keys::is_counter(&key) {
                continue;
            }
            if let Some((group, member)) = keys::member_of(&key) {
                members
                    .entry(group.to_owned())
                    .or_default()
                    .push(member.to_owned());
                continue;
            }
            match decode_record(&key, &value) {
                Some(Packet::CreateChannel(channel)) => {
                    sink.history(LogKind::Channel, &channel.name, &channel.options);
                    let next_seq =
                        self.read_log(LogKind::Channel, &channel.name, &mut corrupt, chunks, sink)?;
                    snapshot.channels.push(LogSnapshot {
                        name: channel.name.to_string(),
                        options: channel.options,
                        next_seq,
                        messages: Vec::new(),
                    });
                }
                Some(Packet::CreateGroup(group)) => {
                    groups.push((group.name.to_string(), group.description.to_string()));
                }
                Some(Packet::MemberList(list)) => {
                    let names: Vec<String> =
                        list.members.iter().map(|m| m.name.to_string()).collect();
                    members
                        .entry(list.group.to_string())
                        .or_default()
                        .extend(names.iter().cloned());
                    legacy_lists.push((list.group.to_string(), names));
                }
                _ => corrupt += 1,
            }
        }
        self.migrate_member_lists(&legacy_lists)?;
        for list in members.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        for (name, description) in groups {
            sink.history(LogKind::Group, &name, &ChannelOptions::default());
            let next_seq = self.read_log(LogKind::Group, &name, &mut corrupt, chunks, sink)?;
            snapshot.groups.push(GroupSnapshot {
                members: members.remove(&name).unwrap_or_default(),
                history: LogSnapshot {
                    name: name.clone(),
                    options: ChannelOptions::default(),
                    next_seq,
                    messages: Vec::new(),
                },
                name,
                description,
            });
        }
        if corrupt > 0 {
            warn!(target: log::ERROR, corrupt, "corrupt records were skipped while loading");
        }
        snapshot.corrupt_records = corrupt;
        Ok(snapshot)
    }

    /// Rewrites member lists stored whole by earlier versions as one key per member, in
    /// one batch per list, so that joins after this one cost the same however large the
    /// group.
    fn migrate_member_lists(&self, lists: &[(String, Vec<String>)]) -> Result<(), StorageError> {
        for (group, names) in lists {
            let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
            for name in names {
                batch.insert(&self.meta, keys::member_key(group, name), b"");
            }
            batch.remove(&self.meta, keys::members_key(group));
            batch
                .commit()
                .map_err(|e| storage_error("rewriting a member list", e))?;
            info!(target: log::GENERAL, group = %group, members = names.len(), "member list rewritten as one record per member");
        }
        Ok(())
    }

    /// The history's next sequence number; its messages go to `sink` one chunk at a
    /// time, and its chunks into `chunks`.
    fn read_log(
        &self,
        kind: LogKind,
        name: &str,
        corrupt: &mut u64,
        chunks: &mut ChunkIndex,
        sink: &mut dyn LoadSink,
    ) -> Result<u64, StorageError> {
        let read_u64 = |key: Vec<u8>| -> Result<Option<u64>, StorageError> {
            Ok(self
                .meta
                .get(key)
                .map_err(|e| storage_error("reading a sequence number", e))?
                .and_then(|value| <[u8; 8]>::try_from(value.as_ref()).ok())
                .map(u64::from_be_bytes))
        };
        let saved_next = read_u64(keys::next_seq_key(kind, name))?.unwrap_or(1);
        let trimmed = read_u64(keys::trim_key(kind, name))?.unwrap_or(0);
        let prefix = keys::log_prefix(kind, name);
        let mut last_seq = 0;
        let mut chunk = Vec::new();
        // Each chunk's key seq, newest seq, and whether its end was lost to corruption.
        let mut found: Vec<(u64, u64, bool)> = Vec::new();
        for entry in self.messages.prefix(&prefix) {
            let (key, value) = entry
                .into_inner()
                .map_err(|e| storage_error("reading messages", e))?;
            let damaged = decode_chunk(&key, &value, &mut chunk);
            *corrupt += damaged;
            let newest = chunk.iter().map(|m| m.seq).max();
            last_seq = last_seq.max(newest.unwrap_or(0));
            if let Some(first) = keys::chunk_seq(&key) {
                found.push((first, newest.unwrap_or(first).max(first), damaged > 0));
            }
            for message in chunk.drain(..) {
                if message.seq > trimmed {
                    sink.message(message);
                }
            }
        }
        let next_seq = saved_next.max(last_seq + 1).max(trimmed + 1);
        // A damaged chunk may have held messages up to where the next one begins.
        let mut index = VecDeque::with_capacity(found.len());
        for i in 0..found.len() {
            let (first, mut newest, damaged) = found[i];
            if damaged {
                newest = found.get(i + 1).map_or(next_seq, |next| next.0) - 1;
            }
            index.push_back((first, newest.max(first)));
        }
        chunks.insert(prefix, index);
        Ok(next_seq)
    }
}
