//! The hub's shared state and the operations that must hold its locks.
//!
//! Lock order, always in this direction: channel table → a channel's history (several in
//! name order) → tag index → routes → outboxes (never block). Group operations take a
//! group's history, then its members, then the directory. No lock is held across an
//! await: a caller that must queue a reply under a lock reserves queue room first.

pub mod channels;
pub mod directory;
pub mod groups;
pub mod history;
pub mod message;
pub mod routes;
pub mod stats;
pub mod tags;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use switchboard_proto::packet::{
    ChannelOptions, Event, EventKind, Message, Packet, Publish, PublishAck, Replay, Scope, Since,
    SubscribeAck,
};
use switchboard_proto::subject::{self, Pattern};
use switchboard_proto::{ErrorCode, Flags, FrameCodec, Limits, MacKey, Text};
use tokio::sync::mpsc::OwnedPermit;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use uuid::Uuid;

use self::channels::{Channel, ChannelTable, effective_options, retention_of};
use self::directory::Directory;
use self::groups::{Group, GroupTable};
use self::history::History;
use self::message::StoredMessage;
use self::routes::Routes;
use self::stats::Counters;
use self::tags::TagIndex;
use crate::config::ServerConfig;
use crate::error::Refusal;
use crate::hooks::Hooks;
use crate::log;
use crate::outbox::{Outbox, Outgoing};
use crate::storage::{Snapshot, Storage};
use crate::time::now_us;

/// Who is asking: the parts of a session the hub needs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: u64,
    pub name: Text,
    pub outbox: Outbox,
}

/// Everything sessions share.
pub struct Hub {
    pub config: ServerConfig,
    /// Encodes frames shared by many receivers (live messages, events).
    pub codec: FrameCodec,
    pub channels: ChannelTable,
    pub routes: Routes,
    pub directory: Directory,
    pub groups: GroupTable,
    pub tags: TagIndex,
    pub counters: Counters,
    pub storage: Arc<dyn Storage>,
    pub hooks: Arc<dyn Hooks>,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    next_client_id: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(config: ServerConfig, storage: Arc<dyn Storage>, hooks: Arc<dyn Hooks>) -> Hub {
        let limits = Limits {
            max_header_len: Limits::DEFAULT_MAX_HEADER,
            max_content_len: config.max_frame,
        };
        let codec =
            FrameCodec::new(limits).with_mac_key(config.hmac_key.as_deref().map(MacKey::new));
        Hub {
            tags: TagIndex::new(usize::try_from(config.default_history).unwrap_or(1000)),
            config,
            codec,
            channels: ChannelTable::default(),
            routes: Routes::default(),
            directory: Directory::default(),
            groups: GroupTable::default(),
            counters: Counters::default(),
            storage,
            hooks,
            shutdown: CancellationToken::new(),
            next_client_id: AtomicU64::new(1),
        }
    }

    /// Rebuilds channels and groups from what storage gave back.
    pub fn restore(&self, snapshot: Snapshot) {
        for saved in snapshot.channels {
            let retention = retention_of(&saved.options, &self.config);
            let history = History::restore(retention, saved.next_seq, saved.messages);
            let mut tags = self.tags.lock();
            for message in history.range(Since::All, None) {
                tags.push(&message);
            }
            drop(tags);
            self.channels
                .restore(Channel::new(saved.name, saved.options, history));
        }
        for saved in snapshot.groups {
            let retention = retention_of(&saved.history.options, &self.config);
            self.groups.insert(Group {
                name: saved.name,
                description: saved.description,
                members: parking_lot::Mutex::new(saved.members.into_iter().collect()),
                history: parking_lot::Mutex::new(History::restore(
                    retention,
                    saved.history.next_seq,
                    saved.history.messages,
                )),
            });
        }
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    fn new_channel(&self, name: &str, options: ChannelOptions) -> Result<Channel, Refusal> {
        self.storage
            .put_channel(name, &options)
            .map_err(|e| storage_refusal(&e))?;
        info!(target: log::GENERAL, channel = name, "channel created");
        let history = History::new(retention_of(&options, &self.config));
        Ok(Channel::new(name.to_owned(), options, history))
    }

    /// CREATE_CHANNEL.
    pub fn create_channel(
        &self,
        name: &str,
        requested: &ChannelOptions,
    ) -> Result<Arc<Channel>, Refusal> {
        subject::validate_channel(name)?;
        let options = effective_options(requested, &self.config)?;
        let (channel, _) = self
            .channels
            .create(name, requested, || self.new_channel(name, options))?;
        Ok(channel)
    }

    /// PUBLISH to a channel: stores, indexes and routes the message in one critical
    /// section of the channel, so that subscribers replaying history never miss it nor
    /// see it twice.
    pub fn publish(&self, caller: &Caller, publish: Publish) -> Result<PublishAck, Refusal> {
        match publish.scope {
            Scope::Channel => self.publish_to_channel(caller, publish),
            Scope::Group => self.post_to_group(caller, publish),
            Scope::Tag => Err(Refusal::invalid(
                "hashtags cannot be published to; put #tag in a channel message",
            )),
        }
    }

    fn publish_to_channel(&self, caller: &Caller, publish: Publish) -> Result<PublishAck, Refusal> {
        let name = publish.channel.as_str();
        subject::validate_channel(name)?;
        let channel = match self.channels.get(name) {
            Some(channel) => channel,
            None if self.config.require_channel_creation => {
                return Err(Refusal::new(
                    ErrorCode::ChannelRequired,
                    format!(
                        "channel {name} does not exist and this server requires channels to be created first"
                    ),
                ));
            }
            None => {
                let options = effective_options(&ChannelOptions::default(), &self.config)?;
                self.channels
                    .get_or_insert_with(name, || self.new_channel(name, options))?
                    .0
            }
        };
        check_body(&publish, &channel.options, self.config.max_body)?;
        let tags = subject::message_hashtags(&publish.content_type, &publish.body);
        let mut history = channel.history.lock();
        let stored = self.seal(caller, &publish, &history, tags)?;
        self.storage
            .append(false, name, &stored)
            .map_err(|e| storage_refusal(&e))?;
        let now = stored.time_us();
        if let Some(through) = history.push(stored.clone(), now)
            && let Err(e) = self.storage.trim(false, name, through)
        {
            error!(target: log::ERROR, channel = name, error = %e, "trimming storage failed");
        }
        let delivered = if stored.tags().is_empty() {
            self.routes.deliver(name, &[], stored.live_frame())
        } else {
            let mut tags = self.tags.lock();
            tags.push(&stored);
            let delivered = self
                .routes
                .deliver(name, stored.tags(), stored.live_frame());
            drop(tags);
            delivered
        };
        drop(history);
        Counters::add(&self.counters.messages_published, 1);
        Counters::add(&self.counters.messages_delivered, delivered);
        Ok(PublishAck {
            id: stored.id(),
            seq: stored.seq(),
        })
    }

    /// Builds and encodes the stored form of a publish at the history's next position.
    fn seal(
        &self,
        caller: &Caller,
        publish: &Publish,
        history: &History,
        tags: Vec<String>,
    ) -> Result<Arc<StoredMessage>, Refusal> {
        let message = Message {
            scope: publish.scope,
            channel: publish.channel.clone(),
            id: Uuid::now_v7(),
            seq: history.next_seq(),
            time_us: history.next_time(now_us()),
            sender_id: caller.client_id,
            sender_name: caller.name.clone(),
            content_type: publish.content_type.clone(),
            user_headers: publish.user_headers.clone(),
            body: publish.body.clone(),
            stream: None,
        };
        StoredMessage::encode(&self.codec, &message, tags)
            .map(Arc::new)
            .map_err(|e| Refusal::new(ErrorCode::TooLarge, e.to_string()))
    }

    /// SUBSCRIBE: registers the route and queues the acknowledgement and the replayed
    /// history as one item, while holding the locks that order publishes on every
    /// channel replayed, so that replay and live delivery neither overlap nor leave a gap.
    pub fn subscribe(
        &self,
        caller: &Caller,
        request_id: u32,
        subscription_id: u64,
        pattern: &Pattern,
        replay: Replay,
        permit: OwnedPermit<Outgoing>,
    ) {
        let send = |permit: OwnedPermit<Outgoing>, messages: Vec<Arc<StoredMessage>>| {
            let ack = SubscribeAck {
                subscription_id,
                replay_count: messages.len() as u64,
            };
            permit.send(Outgoing::Sequence {
                request_id,
                head: Some(Box::new(Packet::SubscribeAck(ack))),
                messages,
                tail: None,
            });
        };
        let replay = replay_range(replay);
        match pattern {
            Pattern::Tag(tag) => {
                let tags = self.tags.lock();
                let messages =
                    replay.map_or_else(Vec::new, |(since, limit)| tags.range(tag, since, limit));
                let mut routes = self.routes.write();
                routes.add(pattern, &caller.outbox);
                send(permit, messages);
                drop(routes);
                drop(tags);
            }
            _ if replay.is_none() => {
                // Queued under the routes lock, so no live message can overtake the ack.
                let mut routes = self.routes.write();
                routes.add(pattern, &caller.outbox);
                send(permit, Vec::new());
                drop(routes);
            }
            Pattern::Exact(_) | Pattern::Wildcard(_) => {
                let table = self.channels.read();
                let matching: Vec<&Arc<Channel>> = match pattern {
                    Pattern::Exact(name) => table.get(name).into_iter().collect(),
                    _ => table
                        .iter()
                        .filter(|(name, _)| pattern.matches_channel(name))
                        .map(|(_, channel)| channel)
                        .collect(),
                };
                // The table is a BTreeMap, so these locks are taken in name order.
                let histories: Vec<_> = matching.iter().map(|c| c.history.lock()).collect();
                let mut messages = Vec::new();
                if let Some((since, limit)) = replay {
                    for history in &histories {
                        messages.extend(history.range(since, limit));
                    }
                    if histories.len() > 1 {
                        messages.sort_by_key(|m| m.time_us());
                    }
                }
                let mut routes = self.routes.write();
                routes.add(pattern, &caller.outbox);
                send(permit, messages);
                drop(routes);
                drop(histories);
                drop(table);
            }
        }
    }

    /// Group PUBLISH: members only; stored in the group's history and pushed to every
    /// online member's sessions.
    fn post_to_group(&self, caller: &Caller, publish: Publish) -> Result<PublishAck, Refusal> {
        let group = self.group(&publish.channel)?;
        if !group.is_member(&caller.name) {
            return Err(Refusal::forbidden(format!(
                "{} is not a member of group {}; join it first",
                caller.name, group.name
            )));
        }
        let options = effective_options(&ChannelOptions::default(), &self.config)?;
        check_body(&publish, &options, self.config.max_body)?;
        let mut history = group.history.lock();
        let stored = self.seal(caller, &publish, &history, Vec::new())?;
        self.storage
            .append(true, &group.name, &stored)
            .map_err(|e| storage_refusal(&e))?;
        if let Some(through) = history.push(stored.clone(), stored.time_us())
            && let Err(e) = self.storage.trim(true, &group.name, through)
        {
            error!(target: log::ERROR, group = %group.name, error = %e, "trimming storage failed");
        }
        let delivered = self.tell_members(&group, stored.live_frame());
        drop(history);
        Counters::add(&self.counters.messages_published, 1);
        Counters::add(&self.counters.messages_delivered, delivered);
        Ok(PublishAck {
            id: stored.id(),
            seq: stored.seq(),
        })
    }

    /// Queues a shared frame on every session of every member of the group.
    fn tell_members(&self, group: &Group, frame: &Bytes) -> u64 {
        let members = group.members.lock();
        let mut outboxes = Vec::new();
        for member in members.iter() {
            self.directory.outboxes_named(member, &mut outboxes);
        }
        drop(members);
        outboxes
            .iter()
            .map(|outbox| u64::from(outbox.deliver(frame.clone())))
            .sum()
    }

    pub fn group(&self, name: &str) -> Result<Arc<Group>, Refusal> {
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
        if self.groups.get(name).is_some() {
            return Err(Refusal::new(
                ErrorCode::AlreadyExists,
                format!("group {name} already exists"),
            ));
        }
        self.storage
            .put_group(name, description)
            .map_err(|e| storage_refusal(&e))?;
        let (_, created) = self.groups.insert(Group {
            name: name.to_owned(),
            description: description.to_owned(),
            members: parking_lot::Mutex::new(Default::default()),
            history: parking_lot::Mutex::new(History::new(retention)),
        });
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
        let changed = if join {
            members.insert(caller.name.to_string())
        } else {
            members.remove(caller.name.as_str())
        };
        if !changed {
            drop(members);
            return if join {
                Ok(())
            } else {
                Err(Refusal::not_found(format!(
                    "{} is not a member of group {name}",
                    caller.name
                )))
            };
        }
        let list: Vec<String> = members.iter().cloned().collect();
        drop(members);
        if let Err(e) = self.storage.put_members(name, &list) {
            error!(target: log::ERROR, group = name, error = %e, "saving members failed");
        }
        info!(target: log::GENERAL, group = name, member = %caller.name, join, "membership changed");
        let mut event = Event::new(if join {
            EventKind::MemberJoined
        } else {
            EventKind::MemberLeft
        });
        event.scope = Scope::Group;
        event.channel = name.into();
        event.subject = caller.name.clone();
        event.time_us = now_us();
        let frame = self.shared_frame(&Packet::Event(event));
        if let Some(frame) = frame {
            self.tell_members(&group, &frame);
            if !join {
                caller.outbox.deliver(frame);
            }
        }
        Ok(())
    }

    /// Encodes a push once for many receivers.
    pub fn shared_frame(&self, packet: &Packet) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        match self
            .codec
            .encode_packet(0, Flags::empty(), packet, &mut buf)
        {
            Ok(()) => Some(buf.freeze()),
            Err(e) => {
                error!(target: log::ERROR, error = %e, "cannot encode push");
                None
            }
        }
    }
}

/// The range a replay asks for, or `None` for live only.
fn replay_range(replay: Replay) -> Option<(Since, Option<u64>)> {
    match replay {
        Replay::None => None,
        Replay::SinceSeq(seq) => Some((Since::Seq(seq), None)),
        Replay::SinceTime(time) => Some((Since::Time(time), None)),
        Replay::Last(count) => Some((Since::All, Some(count))),
    }
}

/// Checks a body against the server's and the channel's limits.
fn check_body(publish: &Publish, options: &ChannelOptions, max_body: u64) -> Result<(), Refusal> {
    let len = publish.body.len() as u64;
    let limit = options.max_bytes.unwrap_or(max_body).min(max_body);
    if len > limit {
        return Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("message body of {len} bytes is over the limit of {limit} bytes"),
        ));
    }
    if let Some(max_chars) = options.max_chars {
        let Ok(text) = std::str::from_utf8(&publish.body) else {
            return Err(Refusal::invalid(
                "this channel limits characters, so it takes UTF-8 text only",
            ));
        };
        let chars = text.chars().count() as u64;
        if chars > max_chars {
            return Err(Refusal::new(
                ErrorCode::TooManyCharacters,
                format!("message has {chars} characters; this channel allows {max_chars}"),
            ));
        }
    }
    Ok(())
}

fn storage_refusal(error: &crate::storage::StorageError) -> Refusal {
    error!(target: log::ERROR, %error, "storage failed");
    Refusal::new(ErrorCode::Internal, format!("storage failed: {error}"))
}
