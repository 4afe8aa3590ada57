//! Groups in cluster mode: every group operation goes through the backplane, which
//! holds the directory, the members and the posts, and announces posts, joins, leaves
//! and the deletion on the group's topic in one order.
//!
//! A node follows a group's topic while a session of one of its members is connected
//! there ([`GroupFollows`]): when a session opens, the node looks up its user's groups
//! and follows them; when the user's last session here closes, it stops. A join made
//! here follows the group before it is made, so that its announcement comes back. The
//! node delivers from the topic only, in the topic's order, to the sessions here of the
//! members it knows online: a post reaches every member once, on every node, in the
//! order the backplane stored it, and never a user after that user's leave.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    EventKind, GroupInfo, MemberInfo, Publish, PublishAck, Scope, StreamStart,
};
use switchboard_proto::subject;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::node::{ClusterNode, READ_BATCH};
use super::payload::{self, Placed};
use super::{BackplaneEvent, GroupAppend, LiveMessage, Membership, Page, Query, Topic};
use crate::error::Refusal;
use crate::hub::admission::{BodyShape, Target};
use crate::hub::listing::{self, PageSize};
use crate::hub::message::StoredMessage;
use crate::hub::{Caller, Hub, Published};
use crate::log;
use crate::time::now_us;

/// How long a JOIN_GROUP or LEAVE_GROUP waits for its announcement to come back through
/// the feed (so that the session is told MEMBER_JOINED or MEMBER_LEFT before OK, as on
/// one server) before it answers anyway.
const ANNOUNCEMENT_WAIT: Duration = Duration::from_secs(5);
/// Groups or members read from the backplane per listing page at most.
const LIST_BATCH: usize = 256;

/// The groups this node follows, with the users online here that are their members.
#[derive(Debug, Default)]
pub(crate) struct GroupFollows {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<String, Followed>,
    /// Sessions here by user name, counted from before they are answered until they
    /// close, so that a session opening while another closes keeps its groups.
    sessions: HashMap<String, usize>,
    /// Joins and leaves made here, waiting for their announcement.
    waiting: Vec<Announcement>,
}

#[derive(Debug, Default)]
struct Followed {
    /// Members with a session here.
    users: BTreeSet<String>,
    /// Operations that need the topic followed for a while (a join being made).
    holds: usize,
    /// The epoch and seq of the newest post delivered.
    delivered: Option<(u64, u64)>,
}

impl Followed {
    fn is_unused(&self) -> bool {
        self.users.is_empty() && self.holds == 0
    }
}

#[derive(Debug)]
struct Announcement {
    group: String,
    user: String,
    joined: bool,
    done: oneshot::Sender<()>,
}

/// A post to deliver, and what the node knew of the group when it arrived.
enum PostStep {
    Unfollowed,
    Duplicate,
    /// Posts from this seq on were missed (the feed broke): read them back first.
    Gap(u64),
    Next,
}

impl ClusterNode {
    /// A session of `user` opened here: follows the user's groups so that their posts
    /// and member events reach it.
    pub(crate) async fn session_opened(&self, user: &str) {
        if user.is_empty() {
            return;
        }
        *self
            .group_follows()
            .inner
            .lock()
            .sessions
            .entry(user.to_owned())
            .or_default() += 1;
        let first = match self.backplane().groups_of(user).await {
            Ok(groups) => groups,
            Err(refusal) => {
                warn!(target: log::ERROR, user, error = %refusal.message, "cannot read the user's groups from the cluster; its group traffic will not reach this session");
                return;
            }
        };
        if first.is_empty() {
            return;
        }
        for group in &first {
            self.take_member(group, user).await;
        }
        // Read again once the groups are followed: a leave or join made meanwhile may
        // not have come through the feed.
        let Ok(second) = self.backplane().groups_of(user).await else {
            return;
        };
        for group in first.iter().filter(|g| !second.contains(g)) {
            self.drop_member(group, user);
        }
        for group in second.iter().filter(|g| !first.contains(g)) {
            self.take_member(group, user).await;
        }
    }

    /// A session of `user` closed: once none is left here, its groups are followed no
    /// more for it.
    pub(crate) fn session_closed(&self, user: &str) {
        if user.is_empty() {
            return;
        }
        let groups: Vec<String> = {
            let mut inner = self.group_follows().inner.lock();
            let Some(count) = inner.sessions.get_mut(user) else {
                return;
            };
            *count -= 1;
            if *count > 0 {
                return;
            }
            inner.sessions.remove(user);
            inner
                .groups
                .iter()
                .filter(|(_, followed)| followed.users.contains(user))
                .map(|(name, _)| name.clone())
                .collect()
        };
        for group in groups {
            self.drop_member(&group, user);
        }
    }

    /// Whether `user`, who joined `group` through some node, has sessions here that do
    /// not get the group's traffic yet.
    pub(crate) fn must_follow_for(&self, group: &str, user: &str) -> bool {
        let inner = self.group_follows().inner.lock();
        inner.sessions.contains_key(user)
            && !inner
                .groups
                .get(group)
                .is_some_and(|followed| followed.users.contains(user))
    }

    /// Follows `group` with `user` as a member online here.
    pub(crate) async fn take_member(&self, group: &str, user: &str) {
        if self.hold(group).await.is_ok() {
            let mut inner = self.group_follows().inner.lock();
            // Not for a user whose sessions all closed meanwhile.
            if inner.sessions.contains_key(user)
                && let Some(followed) = inner.groups.get_mut(group)
            {
                followed.users.insert(user.to_owned());
            }
            drop(inner);
            self.release(group);
        }
    }

    /// `user` is no longer a member online here.
    fn drop_member(&self, group: &str, user: &str) {
        let mut inner = self.group_follows().inner.lock();
        if let Some(followed) = inner.groups.get_mut(group) {
            followed.users.remove(user);
            if followed.is_unused() {
                inner.groups.remove(group);
                // Under the lock, so that a follow that comes next is queued after it.
                self.backplane().unfollow(Topic::Group(group.to_owned()));
            }
        }
    }

    /// Keeps `group` followed until [`ClusterNode::release`]; returns once the feed
    /// brings everything announced on it from now on.
    async fn hold(&self, group: &str) -> Result<(), Refusal> {
        self.group_follows()
            .inner
            .lock()
            .groups
            .entry(group.to_owned())
            .or_default()
            .holds += 1;
        if let Err(refusal) = self
            .backplane()
            .follow(Topic::Group(group.to_owned()))
            .await
        {
            self.release(group);
            return Err(refusal);
        }
        // Followed afresh: where the posts stand now is where this node starts, so that
        // a post it misses from here on (its feed cut) is read back, at the next post or
        // when the feed is whole again, rather than passed over. Read after the follow
        // was confirmed: a post placed before this read was made before the follow's
        // purpose (a join, a session) and is not owed to anyone here.
        let fresh = self
            .group_follows()
            .inner
            .lock()
            .groups
            .get(group)
            .is_some_and(|followed| followed.delivered.is_none());
        if fresh
            && let Ok(Some(meta)) = self.backplane().group(group).await
            && let Some(followed) = self.group_follows().inner.lock().groups.get_mut(group)
            && followed.delivered.is_none()
        {
            followed.delivered = Some((meta.epoch, meta.top_seq));
        }
        Ok(())
    }

    fn release(&self, group: &str) {
        let mut inner = self.group_follows().inner.lock();
        if let Some(followed) = inner.groups.get_mut(group) {
            followed.holds = followed.holds.saturating_sub(1);
            if followed.is_unused() {
                inner.groups.remove(group);
                self.backplane().unfollow(Topic::Group(group.to_owned()));
            }
        }
    }

    /// Waits for the announcement of a join or leave made here to come through the
    /// feed (registered before it was made).
    fn expect_announcement(&self, group: &str, user: &str, joined: bool) -> oneshot::Receiver<()> {
        let (done, announced) = oneshot::channel();
        self.group_follows()
            .inner
            .lock()
            .waiting
            .push(Announcement {
                group: group.to_owned(),
                user: user.to_owned(),
                joined,
                done,
            });
        announced
    }

    /// One group event from the feed, delivered to the members online here.
    pub(crate) async fn take_in_group(&self, hub: &Hub, event: BackplaneEvent) {
        match event {
            BackplaneEvent::GroupPost { group, message } => {
                self.take_in_post(hub, &group, message).await;
            }
            BackplaneEvent::GroupMember {
                group,
                user,
                joined,
            } => self.take_in_member(hub, &group, &user, joined),
            BackplaneEvent::GroupDeleted { group } => {
                let users = {
                    let mut inner = self.group_follows().inner.lock();
                    let users = match inner.groups.get_mut(&group) {
                        Some(followed) => {
                            followed.delivered = None;
                            std::mem::take(&mut followed.users)
                        }
                        None => BTreeSet::new(),
                    };
                    if inner.groups.get(&group).is_some_and(Followed::is_unused) {
                        inner.groups.remove(&group);
                        self.backplane().unfollow(Topic::Group(group.clone()));
                    }
                    users
                };
                if let Some(frame) = hub.group_event_frame(EventKind::GroupDeleted, &group, "") {
                    hub.tell_users(users.iter().map(String::as_str), |outbox| {
                        outbox.deliver(frame.clone())
                    });
                }
                info!(target: log::GENERAL, group, "group deleted in the cluster");
            }
            _ => {}
        }
    }

    fn take_in_member(&self, hub: &Hub, group: &str, user: &str, joined: bool) {
        let (users, waiting) = {
            let mut inner = self.group_follows().inner.lock();
            let Inner {
                groups,
                sessions,
                waiting,
            } = &mut *inner;
            let Some(followed) = groups.get_mut(group) else {
                return;
            };
            if joined && sessions.contains_key(user) {
                followed.users.insert(user.to_owned());
            }
            // Taken before a leave: the one leaving is told too, then sent nothing more.
            let users = followed.users.clone();
            if !joined {
                followed.users.remove(user);
                if followed.is_unused() {
                    groups.remove(group);
                    self.backplane().unfollow(Topic::Group(group.to_owned()));
                }
            }
            let (done, pending): (Vec<_>, Vec<_>) = std::mem::take(waiting)
                .into_iter()
                .filter(|announcement| !announcement.done.is_closed())
                .partition(|a| a.group == group && a.user == user && a.joined == joined);
            *waiting = pending;
            (users, done)
        };
        let kind = if joined {
            EventKind::MemberJoined
        } else {
            EventKind::MemberLeft
        };
        if let Some(frame) = hub.group_event_frame(kind, group, user) {
            hub.tell_users(users.iter().map(String::as_str), |outbox| {
                outbox.deliver(frame.clone())
            });
        }
        for announcement in waiting {
            let _ = announcement.done.send(());
        }
    }

    async fn take_in_post(&self, hub: &Hub, group: &str, live: LiveMessage) {
        match self.post_step(group, live.epoch, live.seq) {
            PostStep::Unfollowed | PostStep::Duplicate => return,
            PostStep::Gap(from) => {
                self.read_back(hub, group, from, live.seq - from).await;
                if matches!(
                    self.post_step(group, live.epoch, live.seq),
                    PostStep::Unfollowed | PostStep::Duplicate
                ) {
                    return;
                }
            }
            PostStep::Next => {}
        }
        match payload::place_with(
            self.bodies(),
            hub.codec(),
            &live.payload,
            live.seq,
            live.time_us,
        ) {
            Ok(placed) => self.deliver_post(hub, group, live.epoch, placed),
            Err(e) => {
                error!(target: log::ERROR, group, seq = live.seq, error = %e, "group post from the cluster not readable; skipped");
            }
        }
    }

    fn post_step(&self, group: &str, epoch: u64, seq: u64) -> PostStep {
        let inner = self.group_follows().inner.lock();
        let Some(followed) = inner.groups.get(group) else {
            return PostStep::Unfollowed;
        };
        match followed.delivered {
            Some((at_epoch, at_seq)) if at_epoch == epoch && seq <= at_seq => PostStep::Duplicate,
            Some((at_epoch, at_seq)) if at_epoch == epoch && seq > at_seq + 1 => {
                PostStep::Gap(at_seq + 1)
            }
            _ => PostStep::Next,
        }
    }

    /// Delivers posts the feed missed, from `from` on (at most `limit`).
    async fn read_back(&self, hub: &Hub, group: &str, from: u64, limit: u64) {
        let mut query = Query::SinceSeq(from);
        let mut left = limit;
        while left > 0 {
            let batch = left.min(READ_BATCH);
            let page = match self.backplane().read_group(group, query, batch).await {
                Ok(Some(page)) => page,
                Ok(None) => return,
                Err(refusal) => {
                    warn!(target: log::ERROR, group, error = %refusal.message, "cannot read missed group posts from the cluster");
                    return;
                }
            };
            let got = page.entries.len() as u64;
            let next = page.entries.last().map(|entry| entry.seq + 1);
            for placed in self.place_group(hub, group, &page) {
                let seq = placed.message.seq();
                if matches!(self.post_step(group, page.epoch, seq), PostStep::Duplicate) {
                    continue;
                }
                self.deliver_post(hub, group, page.epoch, placed);
            }
            match next {
                Some(next) if got == batch => {
                    left -= got;
                    query = Query::SinceSeq(next);
                }
                _ => return,
            }
        }
    }

    fn deliver_post(&self, hub: &Hub, group: &str, epoch: u64, placed: Placed) {
        let seq = placed.message.seq();
        let users = {
            let mut inner = self.group_follows().inner.lock();
            let Some(followed) = inner.groups.get_mut(group) else {
                return;
            };
            followed.delivered = Some((epoch, seq));
            followed.users.clone()
        };
        let message = Arc::new(placed.message);
        hub.tell_users(users.iter().map(String::as_str), |outbox| {
            outbox.deliver_message(&message, placed.drop_oldest)
        });
    }

    fn place_group(&self, hub: &Hub, group: &str, page: &Page) -> Vec<Placed> {
        page.entries
            .iter()
            .filter_map(|entry| {
                match payload::place_with(self.bodies(), hub.codec(), &entry.payload, entry.seq, entry.time_us) {
                    Ok(placed) => Some(placed),
                    Err(e) => {
                        error!(target: log::ERROR, group, seq = entry.seq, error = %e, "stored group post not readable; skipped");
                        None
                    }
                }
            })
            .collect()
    }

    /// After the feed broke: posts to followed groups made meanwhile are read back.
    pub(crate) async fn catch_up_groups(&self, hub: &Hub) {
        let groups: Vec<(String, u64)> = {
            let inner = self.group_follows().inner.lock();
            inner
                .groups
                .iter()
                .filter_map(|(name, followed)| {
                    followed.delivered.map(|(_, seq)| (name.clone(), seq + 1))
                })
                .collect()
        };
        for (group, from) in groups {
            self.read_back(hub, &group, from, u64::MAX).await;
        }
    }

    /// CREATE_GROUP, for the cluster.
    pub(crate) async fn create_group(
        &self,
        caller: &Caller,
        name: &str,
        description: &str,
    ) -> Result<(), Refusal> {
        subject::validate_group(name)?;
        if description.chars().count() > 1024 {
            return Err(Refusal::invalid(
                "a description has at most 1024 characters",
            ));
        }
        let (_, created) = self
            .backplane()
            .create_group(name, description, caller.name())
            .await?;
        if !created {
            return Err(Refusal::new(
                ErrorCode::AlreadyExists,
                format!("group {name} already exists"),
            ));
        }
        info!(target: log::GENERAL, group = name, "group created in the cluster");
        Ok(())
    }

    /// DELETE_GROUP, for the cluster; the members are told through the feed.
    pub(crate) async fn delete_group(&self, hub: &Hub, name: &str) -> Result<(), Refusal> {
        subject::validate_group(name)?;
        if !self.backplane().delete_group(name).await? {
            return Err(Refusal::not_found(format!("no group named {name}")));
        }
        hub.usage()
            .disown(crate::security::usage::Owned::Group, name);
        Ok(())
    }

    /// JOIN_GROUP or LEAVE_GROUP for the caller's name. The answer waits for the change
    /// to come back through the feed, so that, as on one server, the session is told
    /// MEMBER_JOINED or MEMBER_LEFT before OK.
    pub(crate) async fn set_membership(
        &self,
        caller: &Caller,
        name: &str,
        join: bool,
    ) -> Result<(), Refusal> {
        subject::validate_group(name)?;
        let user = caller.name().as_str();
        if join {
            self.hold(name).await?;
        }
        let announced = self.expect_announcement(name, user, join);
        let result = self.backplane().set_group_member(name, user, join).await;
        let outcome = match result {
            Ok(Membership::Changed) => {
                let tracked = self
                    .group_follows()
                    .inner
                    .lock()
                    .groups
                    .get(name)
                    .is_some_and(|followed| join || followed.users.contains(user));
                if (join || tracked)
                    && tokio::time::timeout(ANNOUNCEMENT_WAIT, announced)
                        .await
                        .is_err()
                {
                    warn!(target: log::ERROR, group = name, "the cluster feed did not bring a membership change back in time");
                    if join
                        && let Some(followed) =
                            self.group_follows().inner.lock().groups.get_mut(name)
                    {
                        followed.users.insert(user.to_owned());
                    }
                }
                Ok(())
            }
            Ok(Membership::Unchanged) if join => {
                // Already a member: make sure its traffic reaches this session.
                if let Some(followed) = self.group_follows().inner.lock().groups.get_mut(name) {
                    followed.users.insert(user.to_owned());
                }
                Ok(())
            }
            Ok(Membership::Unchanged) => Err(Refusal::not_found(format!(
                "{user} is not a member of group {name}"
            ))),
            Ok(Membership::NoSuchGroup) => {
                Err(Refusal::not_found(format!("no group named {name}")))
            }
            Err(refusal) => Err(refusal),
        };
        if join {
            self.release(name);
        }
        outcome
    }

    /// A page of LIST_GROUPS from the backplane, in name order.
    pub(crate) async fn group_page(
        &self,
        hub: &Hub,
        cursor: Option<&bytes::Bytes>,
        limit: Option<u64>,
    ) -> Result<listing::Page<GroupInfo>, Refusal> {
        let after = Hub::channel_cursor(cursor)?;
        let want = batch_of(limit);
        // One more than a page, to know whether another follows.
        let groups = self.backplane().list_groups(after, want + 1).await?;
        let infos = groups.into_iter().map(|(name, meta)| GroupInfo {
            name: name.into(),
            description: meta.description.into(),
            member_count: meta.member_count,
        });
        let size = PageSize::new(Some(want as u64), hub.config().max_frame);
        Ok(listing::take_page(
            infos,
            size,
            GroupInfo::record_len,
            |info| bytes::Bytes::copy_from_slice(info.name.as_bytes()),
        ))
    }

    /// A page of GROUP_MEMBERS from the backplane, in name order; a member is online
    /// with a session on any live node (this node's own view when the backplane cannot
    /// say).
    pub(crate) async fn member_page(
        &self,
        hub: &Hub,
        group: &str,
        cursor: Option<&bytes::Bytes>,
        limit: Option<u64>,
    ) -> Result<listing::Page<MemberInfo>, Refusal> {
        subject::validate_group(group)?;
        let after = Hub::channel_cursor(cursor)?;
        let want = batch_of(limit);
        let Some(members) = self
            .backplane()
            .group_members(group, after, want + 1)
            .await?
        else {
            return Err(Refusal::not_found(format!("no group named {group}")));
        };
        let mut online: Vec<bool> = members
            .iter()
            .map(|name| hub.is_online_here(name))
            .collect();
        let elsewhere: Vec<String> = members
            .iter()
            .zip(&online)
            .filter(|(_, here)| !**here)
            .map(|(name, _)| name.clone())
            .collect();
        if !elsewhere.is_empty() {
            match self.backplane().names_online(&elsewhere).await {
                Ok(anywhere) => {
                    let mut anywhere = anywhere.into_iter();
                    for here in online.iter_mut().filter(|here| !**here) {
                        *here = anywhere.next().unwrap_or(false);
                    }
                }
                Err(refusal) => {
                    warn!(target: log::ERROR, group, error = %refusal.message, "cannot tell which members are online on other nodes; listing this node's view");
                }
            }
        }
        let infos = members
            .into_iter()
            .zip(online)
            .map(|(name, online)| MemberInfo {
                online,
                name: name.into(),
            });
        let size = PageSize::new(Some(want as u64), hub.config().max_frame);
        Ok(listing::take_page(
            infos,
            size,
            MemberInfo::record_len,
            |info| bytes::Bytes::copy_from_slice(info.name.as_bytes()),
        ))
    }

    /// Group PUBLISH through the backplane, whose member check is one step with the
    /// append; this node delivers the post when it comes back through the feed.
    pub(crate) async fn post(
        &self,
        hub: &Hub,
        caller: &Caller,
        publish: &Publish,
        body_crc: Option<u32>,
    ) -> Result<Published, Refusal> {
        self.post_body(hub, caller, publish, body_crc, None).await
    }

    /// A streamed group post whose body arrived whole: the body stays on this node, as
    /// a channel message's does (other nodes fetch it over the node link).
    pub(crate) async fn post_streamed(
        &self,
        hub: &Hub,
        caller: &Caller,
        publish: &Publish,
        upload: crate::blobs::Verified,
    ) -> Result<Published, Refusal> {
        self.post_body(hub, caller, publish, None, Some(upload))
            .await
    }

    async fn post_body(
        &self,
        hub: &Hub,
        caller: &Caller,
        publish: &Publish,
        body_crc: Option<u32>,
        upload: Option<crate::blobs::Verified>,
    ) -> Result<Published, Refusal> {
        let name = publish.channel.as_str();
        subject::validate_group(name)?;
        let (rules, ids, _) = hub.publish_parts();
        let target = Target::Group {
            name,
            sender: caller.name(),
            member: true,
        };
        let streamed_len = upload.as_ref().map(crate::blobs::Verified::len);
        let shape = match streamed_len {
            Some(len) => BodyShape::Streamed(len),
            None => BodyShape::Frame(&publish.body),
        };
        let admission = rules.admit(target, shape)?;
        let id = ids.next(now_us());
        if let Some(verified) = upload {
            let blob = hub
                .blobs()
                .store(verified, &id)
                .map_err(|e| crate::hub::blob_refusal(&e))?;
            self.bodies().keep(id, blob);
        }
        let envelope = switchboard_proto::packet::Envelope {
            scope: Scope::Group,
            channel: name,
            id,
            seq: 0,
            time_us: 0,
            sender_id: caller.client_id(),
            sender_name: caller.name(),
            content_type: &publish.content_type,
            user_headers: &publish.user_headers,
            body: if streamed_len.is_some() {
                &[]
            } else {
                &publish.body
            },
            body_crc,
            stream: streamed_len.map(|total_len| StreamStart {
                stream_id: 0,
                total_len,
            }),
        };
        let payload = match streamed_len {
            Some(_) => payload::encode_streamed(
                self.payload_codec(),
                &envelope,
                admission.drop_oldest,
                self.backplane().node_id(),
            ),
            None => payload::encode(self.payload_codec(), &envelope, admission.drop_oldest),
        }
        .map_err(|e| Refusal::new(ErrorCode::TooLarge, e.to_string()))?;
        let history = hub.group_retention();
        let appended = self
            .backplane()
            .post_to_group(GroupAppend {
                group: name.to_owned(),
                sender: caller.name().to_string(),
                id,
                payload,
                max_count: history,
            })
            .await;
        if streamed_len.is_some() {
            // Its bodies are kept by position among the group's posts, apart from any
            // channel of the same name.
            match &appended {
                Ok(appended) => {
                    self.bodies()
                        .placed(&format!("group {name}"), id, appended.seq, history)
                }
                // Perhaps stored: kept.
                Err(refusal) if refusal.code == ErrorCode::BackplaneUnavailable => {}
                Err(_) => self.bodies().forget(&id),
            }
        }
        let appended = appended?;
        hub.count_published();
        Ok(Published {
            ack: PublishAck {
                id,
                seq: appended.seq,
            },
            must_sync: false,
        })
    }

    /// Reads a group's history for `reader`, a member: NOT_FOUND without the group,
    /// FORBIDDEN for one who is not a member, as on one server.
    pub(crate) async fn read_group(
        &self,
        hub: &Hub,
        name: &str,
        reader: &str,
        query: Query,
        limit: u64,
    ) -> Result<(Page, Vec<Arc<StoredMessage>>), Refusal> {
        subject::validate_group(name)?;
        if !self.backplane().is_group_member(name, reader).await? {
            return Err(match self.backplane().group(name).await? {
                None => Refusal::not_found(format!("no group named {name}")),
                Some(_) => {
                    Refusal::forbidden(format!("only members may read group {name}; join it first"))
                }
            });
        }
        let Some(page) = self.backplane().read_group(name, query, limit).await? else {
            return Err(Refusal::not_found(format!("no group named {name}")));
        };
        let messages = self
            .place_group(hub, name, &page)
            .into_iter()
            .map(|placed| Arc::new(placed.message))
            .collect();
        Ok((page, messages))
    }
}

/// Entries asked of the backplane for a listing page of at most `limit`.
fn batch_of(limit: Option<u64>) -> usize {
    match limit {
        None | Some(0) => LIST_BATCH,
        Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX).min(LIST_BATCH),
    }
}
