//! The channel table: every channel by name, each with its options and history.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use switchboard_proto::packet::{ChannelInfo, ChannelOptions, Durability, SlowConsumerPolicy};

use super::history::{History, Retention};
use crate::config::ServerConfig;
use crate::error::Refusal;

/// One channel. Its history lock also orders publishes: whoever holds it assigns the next
/// sequence number and routes the message before anyone else can.
#[derive(Debug)]
pub struct Channel {
    pub name: String,
    /// Options with every default filled in.
    pub options: ChannelOptions,
    pub history: Mutex<History>,
    /// Cluster mode: which incarnation of the name this is (the backplane's), so that a
    /// publish that found it does not add to a channel created again since; 0 otherwise.
    pub cid: u64,
}

impl Channel {
    pub fn new(name: String, options: ChannelOptions, history: History) -> Self {
        Channel {
            name,
            options,
            history: Mutex::new(history),
            cid: 0,
        }
    }

    /// The same channel, as the incarnation `cid` of its name in a cluster.
    #[must_use]
    pub fn with_cid(mut self, cid: u64) -> Self {
        self.cid = cid;
        self
    }

    pub fn info(&self) -> ChannelInfo {
        let info = self.history.lock().info();
        ChannelInfo {
            name: self.name.as_str().into(),
            message_count: info.count,
            first_seq: info.first_seq,
            last_seq: info.last_seq,
            bytes: info.bytes,
            options: self.options,
        }
    }
}

/// Fills in the server's defaults and checks requested options against its limits.
pub fn effective_options(
    requested: &ChannelOptions,
    config: &ServerConfig,
    default_durability: Durability,
) -> Result<ChannelOptions, Refusal> {
    let history = requested.history.unwrap_or(config.default_history);
    if history == 0 || history > config.max_history {
        return Err(Refusal::invalid(format!(
            "history must be between 1 and {} messages",
            config.max_history
        )));
    }
    let max_bytes = requested.max_bytes.unwrap_or(config.max_body);
    if max_bytes > config.max_body {
        return Err(Refusal::invalid(format!(
            "max bytes {max_bytes} is over the server's limit of {}",
            config.max_body
        )));
    }
    if requested.max_chars == Some(0) {
        return Err(Refusal::invalid("max chars must be at least 1"));
    }
    Ok(ChannelOptions {
        history: Some(history),
        max_bytes: Some(max_bytes),
        max_chars: requested.max_chars,
        max_age_ms: requested.max_age_ms,
        max_total_bytes: requested.max_total_bytes,
        durability: Some(requested.durability.unwrap_or(default_durability)),
        slow_consumer: Some(
            requested
                .slow_consumer
                .unwrap_or(SlowConsumerPolicy::Disconnect),
        ),
    })
}

/// The retention a channel's options ask for.
pub fn retention_of(options: &ChannelOptions, config: &ServerConfig) -> Retention {
    Retention {
        max_count: options.history.unwrap_or(config.default_history),
        max_bytes: options.max_total_bytes,
        max_age_us: max_age_us(options),
    }
}

/// How long a channel's messages live, in microseconds, if it says.
pub fn max_age_us(options: &ChannelOptions) -> Option<u64> {
    options.max_age_ms.map(|ms| ms.saturating_mul(1000))
}

/// Whether explicitly requested options conflict with those a channel has.
pub(crate) fn conflicts(requested: &ChannelOptions, existing: &ChannelOptions) -> bool {
    fn differs<T: PartialEq>(asked: Option<T>, have: Option<T>) -> bool {
        asked.is_some() && asked != have
    }
    differs(requested.history, existing.history)
        || differs(requested.max_bytes, existing.max_bytes)
        || differs(requested.max_chars, existing.max_chars)
        || differs(requested.max_age_ms, existing.max_age_ms)
        || differs(requested.max_total_bytes, existing.max_total_bytes)
        || differs(requested.slow_consumer, existing.slow_consumer)
        || differs(requested.durability, existing.durability)
}

/// All channels. Lock order: this table, then a channel's history, then the routes.
#[derive(Debug, Default)]
pub struct ChannelTable {
    map: RwLock<BTreeMap<String, Arc<Channel>>>,
    /// The channels with a maximum age, which the clock trims: kept apart so that the
    /// periodic trim visits only them. Changed only under the table's write lock.
    aging: Mutex<BTreeMap<String, Arc<Channel>>>,
}

impl ChannelTable {
    pub fn get(&self, name: &str) -> Option<Arc<Channel>> {
        self.map.read().get(name).cloned()
    }

    /// Read access to the whole table, which keeps channels from being created meanwhile.
    pub fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<Channel>>> {
        self.map.read()
    }

    /// The channel, created by `make` if it does not exist. Returns whether it was created.
    pub fn get_or_insert_with(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Channel, Refusal>,
    ) -> Result<(Arc<Channel>, bool), Refusal> {
        if let Some(channel) = self.get(name) {
            return Ok((channel, false));
        }
        let mut map = self.map.write();
        if let Some(channel) = map.get(name) {
            return Ok((channel.clone(), false));
        }
        let channel = Arc::new(make()?);
        self.note_aging(&channel);
        map.insert(name.to_owned(), channel.clone());
        Ok((channel, true))
    }

    /// Creates a channel with explicit options; an existing one is fine if the options
    /// asked for match it.
    pub fn create(
        &self,
        name: &str,
        requested: &ChannelOptions,
        make: impl FnOnce() -> Result<Channel, Refusal>,
    ) -> Result<(Arc<Channel>, bool), Refusal> {
        let (channel, created) = self.get_or_insert_with(name, make)?;
        if !created && conflicts(requested, &channel.options) {
            return Err(Refusal::new(
                switchboard_proto::ErrorCode::AlreadyExists,
                format!("channel {name} already exists with other options"),
            ));
        }
        Ok((channel, created))
    }

    /// Inserts a channel restored from storage.
    pub fn restore(&self, channel: Channel) {
        let channel = Arc::new(channel);
        let mut map = self.map.write();
        self.note_aging(&channel);
        map.insert(channel.name.clone(), channel);
    }

    fn note_aging(&self, channel: &Arc<Channel>) {
        if channel.options.max_age_ms.is_some() {
            self.aging
                .lock()
                .insert(channel.name.clone(), channel.clone());
        }
    }

    /// Takes a channel out of the table and runs `retire` on it under the table's lock,
    /// so that no channel of that name can be created (and stored) before `retire` is
    /// done; `None` if there is no channel of that name.
    pub fn remove_with<T>(&self, name: &str, retire: impl FnOnce(&Channel) -> T) -> Option<T> {
        let mut map = self.map.write();
        let channel = map.remove(name)?;
        self.aging.lock().remove(name);
        Some(retire(&channel))
    }

    /// The channels with a maximum age.
    pub fn aging(&self) -> Vec<Arc<Channel>> {
        self.aging.lock().values().cloned().collect()
    }

    pub fn list(&self) -> Vec<Arc<Channel>> {
        self.map.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }
}
