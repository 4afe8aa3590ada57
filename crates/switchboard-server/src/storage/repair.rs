//! Salvaging a damaged store: every record the store holds is a protocol frame with two
//! CRC32C checks, so the intact ones can be found in the database's files without the
//! database (which refuses to open, or to read on, past a damaged journal batch or table
//! block). [`repair`] scans every file of the data directory for frames whose checks
//! pass, moves the damaged directory aside (`DIR.damaged-<unix time>`), writes a fresh
//! store with what was found and moves the streamed bodies over.
//!
//! Everything salvaged is held in memory until the fresh store is written.
//!
//! What comes back: channels (their options), groups, member lists and messages whose
//! frames are intact. What does not: the sequence counters (raw numbers, not frames: a
//! history continues after its newest salvaged message), messages in damaged frames, and
//! anything in table blocks the database compressed (its deeper levels); messages already
//! trimmed but not yet compacted away may come back, and are trimmed again to their
//! channel's retention when the server loads them. Every member record found comes back,
//! so a member who left may be a member again after a repair.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use switchboard_proto::packet::{ChannelOptions, Message, Packet, Scope};
use switchboard_proto::{FIXED_HEADER_LEN, SYNC};
use tokio_util::codec::Decoder;

use super::fjall::{FjallStorage, StoreOptions, record_codec};
use super::{LogKind, Storage, StorageError, SyncPolicy};
use crate::hub::message::StoredMessage;

/// What a repair kept and lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The store opened and read back without a damaged record: nothing was changed.
    pub intact: bool,
    /// Where the damaged directory was moved.
    pub damaged_dir: PathBuf,
    pub files_scanned: u64,
    /// Frames that began like a record but failed their checks.
    pub damaged_frames: u64,
    pub channels: Vec<LogReport>,
    pub groups: Vec<LogReport>,
}

/// One history after the repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogReport {
    pub name: String,
    /// Messages kept.
    pub kept: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Sequence numbers between the first and last kept that were not found: lost.
    pub missing: u64,
    /// The channel's options (or the group's record) were not found: defaults are used.
    pub record_lost: bool,
}

/// Everything found in the files.
#[derive(Default)]
struct Salvage {
    channels: BTreeMap<String, ChannelOptions>,
    groups: BTreeMap<String, String>,
    members: HashMap<String, Vec<String>>,
    messages: BTreeMap<(u8, String), BTreeMap<u64, Message>>,
    damaged: u64,
}

fn scope_key(scope: Scope) -> Option<u8> {
    match scope {
        Scope::Channel => Some(0),
        Scope::Group => Some(1),
        Scope::Tag => None,
    }
}

impl Salvage {
    fn take(&mut self, packet: Packet) {
        match packet {
            Packet::CreateChannel(channel) => {
                self.channels
                    .insert(channel.name.to_string(), channel.options);
            }
            Packet::CreateGroup(group) => {
                self.groups
                    .insert(group.name.to_string(), group.description.to_string());
            }
            Packet::MemberList(list) => {
                // One record per member (older stores: one list per group): every member
                // found is kept, once.
                let members = self.members.entry(list.group.to_string()).or_default();
                for member in &list.members {
                    if !members.iter().any(|known| known == member.name.as_str()) {
                        members.push(member.name.to_string());
                    }
                }
            }
            Packet::Message(message) => {
                if let Some(scope) = scope_key(message.scope) {
                    self.messages
                        .entry((scope, message.channel.to_string()))
                        .or_default()
                        .insert(message.seq, message);
                }
            }
            _ => {}
        }
    }

    /// Every intact frame in `bytes`.
    fn scan(&mut self, bytes: &[u8]) {
        let mut codec = record_codec();
        let mut at = 0;
        while at + FIXED_HEADER_LEN <= bytes.len() {
            if bytes[at..at + 2] != SYNC || bytes[at + 2] != 1 {
                at += 1;
                continue;
            }
            let header_len = usize::from(u16::from_be_bytes([bytes[at + 6], bytes[at + 7]]));
            let content_len = u32::from_be_bytes([
                bytes[at + 12],
                bytes[at + 13],
                bytes[at + 14],
                bytes[at + 15],
            ]) as usize;
            let end = at
                .saturating_add(FIXED_HEADER_LEN + header_len)
                .saturating_add(content_len);
            if end > bytes.len() {
                at += 1;
                continue;
            }
            let mut frame = BytesMut::from(&bytes[at..end]);
            match codec.decode(&mut frame) {
                Ok(Some(frame)) => match Packet::from_frame(&frame) {
                    Ok(packet) => {
                        self.take(packet);
                        at = end;
                        continue;
                    }
                    Err(_) => self.damaged += 1,
                },
                Ok(None) => {}
                Err(_) => self.damaged += 1,
            }
            at += 1;
        }
    }
}

/// Every file under `dir` but the streamed bodies, oldest modified first.
fn files(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|e| StorageError(format!("cannot read {}: {e}", current.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if path != dir.join("blobs") {
                    pending.push(path);
                }
            } else if meta.is_file() {
                let modified = meta.modified().unwrap_or(UNIX_EPOCH);
                found.push((modified, path));
            }
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// Refuses to repair a directory a running server has open.
#[cfg(unix)]
fn check_not_in_use(dir: &Path) -> Result<(), StorageError> {
    use rustix::fs::{FlockOperation, flock};
    let Ok(lock) = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("lock"))
    else {
        return Ok(());
    };
    match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StorageError(format!(
            "{} is in use by a running server; stop it first",
            dir.display()
        ))),
        // Released when `lock` is closed.
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
fn check_not_in_use(_dir: &Path) -> Result<(), StorageError> {
    Ok(())
}

/// Whether the store opens and reads back without a damaged record.
fn store_is_intact(dir: &Path) -> bool {
    let options = StoreOptions { reserve: None };
    let Ok(store) = FjallStorage::open_with(dir, SyncPolicy::Never, options) else {
        return false;
    };
    let intact = store
        .load()
        .is_ok_and(|snapshot| snapshot.corrupt_records == 0);
    store.close(&[]);
    intact
}

/// Salvages the store in `dir` (see the module documentation); a store that opens and
/// reads back whole is left as it is.
pub fn repair(dir: &Path) -> Result<RepairReport, StorageError> {
    if !dir.is_dir() {
        return Err(StorageError(format!(
            "{} is not a data directory",
            dir.display()
        )));
    }
    check_not_in_use(dir)?;
    // Scanned before the database opens the files, since opening may change them (a
    // torn journal tail is cut off).
    let mut salvage = Salvage::default();
    let files = files(dir)?;
    for path in &files {
        let bytes = std::fs::read(path)
            .map_err(|e| StorageError(format!("cannot read {}: {e}", path.display())))?;
        salvage.scan(&bytes);
    }
    if store_is_intact(dir) {
        return Ok(RepairReport {
            intact: true,
            ..RepairReport::default()
        });
    }

    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut damaged_dir = PathBuf::from(format!("{}.damaged-{stamp}", dir.display()));
    let mut n = 1;
    while damaged_dir.exists() {
        damaged_dir = PathBuf::from(format!("{}.damaged-{stamp}-{n}", dir.display()));
        n += 1;
    }
    std::fs::rename(dir, &damaged_dir).map_err(|e| {
        StorageError(format!(
            "cannot move {} aside to {}: {e}",
            dir.display(),
            damaged_dir.display()
        ))
    })?;
    std::fs::create_dir(dir)
        .map_err(|e| StorageError(format!("cannot create {}: {e}", dir.display())))?;
    let blobs = damaged_dir.join("blobs");
    if blobs.is_dir() {
        std::fs::rename(&blobs, dir.join("blobs"))
            .map_err(|e| StorageError(format!("cannot move the streamed bodies back: {e}")))?;
    }

    let mut report = RepairReport {
        damaged_dir,
        files_scanned: files.len() as u64,
        damaged_frames: salvage.damaged,
        ..RepairReport::default()
    };
    write_fresh(dir, salvage, &mut report)?;
    Ok(report)
}

/// Writes what was salvaged as a fresh store in `dir`.
fn write_fresh(
    dir: &Path,
    mut salvage: Salvage,
    report: &mut RepairReport,
) -> Result<(), StorageError> {
    let store = FjallStorage::open_with(dir, SyncPolicy::Never, StoreOptions { reserve: None })?;
    store.load()?;
    let codec = record_codec();
    let mut next_seqs = Vec::new();
    // Histories whose record was lost still come back, under default options.
    for (scope, name) in salvage.messages.keys() {
        match scope {
            0 if !salvage.channels.contains_key(name) => {
                report.channels.push(LogReport {
                    name: name.clone(),
                    record_lost: true,
                    ..LogReport::default()
                });
            }
            1 if !salvage.groups.contains_key(name) => {
                report.groups.push(LogReport {
                    name: name.clone(),
                    record_lost: true,
                    ..LogReport::default()
                });
            }
            _ => {}
        }
    }
    for name in salvage.channels.keys() {
        report.channels.push(LogReport {
            name: name.clone(),
            ..LogReport::default()
        });
    }
    for name in salvage.groups.keys() {
        report.groups.push(LogReport {
            name: name.clone(),
            ..LogReport::default()
        });
    }
    report.channels.sort_by(|a, b| a.name.cmp(&b.name));
    report.groups.sort_by(|a, b| a.name.cmp(&b.name));

    for (kind, scope, logs) in [
        (LogKind::Channel, 0u8, &mut report.channels),
        (LogKind::Group, 1u8, &mut report.groups),
    ] {
        for log in logs.iter_mut() {
            match kind {
                LogKind::Channel => {
                    let options = salvage.channels.get(&log.name).copied().unwrap_or_default();
                    store.put_channel(&log.name, &options)?;
                }
                LogKind::Group => {
                    let description = salvage.groups.get(&log.name).cloned().unwrap_or_default();
                    store.put_group(&log.name, &description)?;
                    if let Some(members) = salvage.members.remove(&log.name) {
                        for member in &members {
                            store.add_member(&log.name, member)?;
                        }
                    }
                }
            }
            let messages = salvage
                .messages
                .remove(&(scope, log.name.clone()))
                .unwrap_or_default();
            for message in messages.values() {
                let stored = StoredMessage::encode(&codec, &message.as_envelope(), Vec::new())
                    .map(Arc::new)
                    .map_err(|e| StorageError(format!("re-encoding a message: {e}")))?;
                store.append(kind, &log.name, &stored)?;
            }
            log.kept = messages.len() as u64;
            log.first_seq = messages.keys().next().copied().unwrap_or(0);
            log.last_seq = messages.keys().next_back().copied().unwrap_or(0);
            if log.kept > 0 {
                log.missing = log.last_seq - log.first_seq + 1 - log.kept;
                next_seqs.push((kind, log.name.clone(), log.last_seq + 1));
            }
        }
    }
    store.close(&next_seqs);
    Ok(())
}
