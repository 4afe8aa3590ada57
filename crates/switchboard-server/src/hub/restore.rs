//! Rebuilding channels and groups at start from what the store holds.
//!
//! The store hands each history's messages over one by one, oldest first
//! ([`Storage::load_into`]), and each goes into its history as a publish would: a durable
//! history longer than what stays in memory lets its older messages go while it loads,
//! so a restart never holds a whole history (a channel retaining a million messages
//! would otherwise take a gigabyte for a moment, and that moment is when a server that
//! crashed for lack of memory comes back).
//!
//! [`Storage::load_into`]: crate::storage::Storage::load_into

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_proto::packet::{ChannelOptions, Durability, Message};
use switchboard_proto::subject;
use tracing::{error, info, warn};

use super::Hub;
use super::channels::{Channel, effective_options, max_age_us, retention_of};
use super::history::History;
use super::message::StoredMessage;
use super::stats::Counters;
use crate::budget;
use crate::log;
use crate::storage::{LoadSink, LogKind, Snapshot, StorageError};
use crate::time::now_us;

impl Hub {
    /// Rebuilds channels and groups from the store, streaming their messages.
    pub fn restore_stored(&self) -> Result<(), StorageError> {
        let mut restoring = Restoring {
            hub: self,
            now_us: now_us(),
            current: None,
            done: HashMap::new(),
        };
        let snapshot = self.storage.load_into(&mut restoring)?;
        restoring.finish(snapshot);
        Ok(())
    }
}

/// The histories being rebuilt: the one whose messages arrive now, and those done.
struct Restoring<'a> {
    hub: &'a Hub,
    now_us: u64,
    current: Option<RestoringLog>,
    done: HashMap<(LogKind, String), RestoringLog>,
}

struct RestoringLog {
    kind: LogKind,
    name: String,
    /// The options it is served with (a channel's, checked against this server's limits).
    options: ChannelOptions,
    history: History,
    /// The newest seq trimmed while loading (past the retention), for the store to drop.
    trimmed_through: Option<u64>,
}

impl Restoring<'_> {
    fn start(&self, kind: LogKind, name: &str, saved: &ChannelOptions) -> RestoringLog {
        let hub = self.hub;
        let options = match kind {
            LogKind::Group => ChannelOptions::default(),
            LogKind::Channel => {
                match effective_options(saved, &hub.config, hub.default_durability()) {
                    Ok(options) => options,
                    Err(refusal) => {
                        // Options this server no longer allows (e.g. a lower history
                        // limit): keep the messages under the defaults rather than drop
                        // the channel.
                        warn!(target: log::ERROR, channel = %name, reason = %refusal.message, "stored options refused; using defaults");
                        *saved
                    }
                }
            }
        };
        let stored = match kind {
            LogKind::Group => true,
            LogKind::Channel => hub.rules.durability_of(&options) != Durability::Memory,
        };
        let mut history = History::new(retention_of(&options, &hub.config));
        hub.keep_cold(kind, name, stored, &mut history);
        RestoringLog {
            kind,
            name: name.to_owned(),
            options,
            history,
            trimmed_through: None,
        }
    }

    fn finish_current(&mut self) {
        if let Some(log) = self.current.take() {
            self.done.insert((log.kind, log.name.clone()), log);
        }
    }

    /// The options and history of `kind` `name`, rebuilt (empty if the store streamed
    /// nothing for it).
    fn take(
        &mut self,
        kind: LogKind,
        name: &str,
        saved: &ChannelOptions,
        next_seq: u64,
    ) -> (ChannelOptions, History) {
        let log = match self.done.remove(&(kind, name.to_owned())) {
            Some(log) => log,
            None => self.start(kind, name, saved),
        };
        let mut history = log.history;
        history.resume_at(next_seq);
        if let Some(through) = log.trimmed_through {
            self.hub.storage.trim(kind, name, through);
        }
        (log.options, history)
    }

    fn finish(mut self, snapshot: Snapshot) {
        self.finish_current();
        let hub = self.hub;
        let (channels, groups) = (snapshot.channels.len(), snapshot.groups.len());
        Counters::add(
            &hub.counters.corrupt_records_skipped,
            snapshot.corrupt_records,
        );
        for saved in snapshot.channels {
            hub.budget.charge_anyway(budget::channel_cost(&saved.name));
            let (options, history) = self.take(
                LogKind::Channel,
                &saved.name,
                &saved.options,
                saved.next_seq,
            );
            hub.channels
                .restore(Channel::new(saved.name, options, history));
        }
        for saved in snapshot.groups {
            let (_, history) = self.take(
                LogKind::Group,
                &saved.name,
                &ChannelOptions::default(),
                saved.history.next_seq,
            );
            hub.restore_group(saved, history);
        }
        if channels + groups > 0 {
            info!(target: log::GENERAL, channels, groups, corrupt = snapshot.corrupt_records, "history restored");
        }
    }
}

impl LoadSink for Restoring<'_> {
    fn history(&mut self, kind: LogKind, name: &str, options: &ChannelOptions) {
        self.finish_current();
        self.current = Some(self.start(kind, name, options));
    }

    fn message(&mut self, message: Message) {
        let hub = self.hub;
        let Some(log) = &mut self.current else {
            return;
        };
        let tags = match log.kind {
            LogKind::Channel => subject::message_hashtags(&message.content_type, &message.body),
            LogKind::Group => Vec::new(),
        };
        let blob = match &message.stream {
            Some(stream) => match hub.blobs.existing(&message.id, stream.total_len) {
                Some(blob) => Some(blob),
                None => {
                    error!(target: log::ERROR, log = %log.name, seq = message.seq, "the streamed body of a stored message is missing; skipped");
                    Counters::add(&hub.counters.corrupt_records_skipped, 1);
                    return;
                }
            },
            None => None,
        };
        let stored = match StoredMessage::encode(&hub.codec, &message.as_envelope(), tags) {
            Ok(stored) => Arc::new(match blob {
                Some(blob) => stored.with_blob(blob),
                None => stored,
            }),
            Err(e) => {
                error!(target: log::ERROR, log = %log.name, seq = message.seq, error = %e, "stored message skipped");
                return;
            }
        };
        let seq = stored.seq();
        if let Some(through) = log.history.push_restored(stored.clone(), self.now_us) {
            log.trimmed_through = Some(log.trimmed_through.map_or(through, |t| t.max(through)));
        }
        // Into the hashtags' index as at publish, unless its age already took it out of
        // the history.
        let info = log.history.info();
        let retained = info.count > 0 && info.first_seq <= seq;
        if !stored.tags().is_empty() && retained {
            hub.tags
                .lock()
                .push(&stored, max_age_us(&log.options), &hub.budget);
        }
    }
}
