//! A session as its requests see it: who it is, what it subscribed to, the bodies it is
//! streaming in and the publishes waiting for a sync, and how it answers. The connection
//! task owns it, hands it to every request it serves, and closes it.

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::Flags;
use switchboard_proto::packet::Packet;
use switchboard_proto::subject::Pattern;
use tracing::info;
use uuid::Uuid;

use super::cluster_acks::ClusterAcks;
use super::publish::DurableAcks;
use super::stream::OpenStreams;
use super::subscribe::Subscriptions;
use crate::error::Refusal;
use crate::hooks::SessionInfo;
use crate::hub::Caller;
use crate::log;
use crate::outbox::{Outbox, Outgoing};
use crate::security::permissions::{Coverage, Grants, Operation, SessionPermissions};
use crate::security::usage::SessionLimits;
use crate::security::{Identity, Policy};

/// A session's own state, owned by its connection task.
pub(crate) struct Session {
    pub caller: Caller,
    /// The session's id (IDENTIFY tells it).
    pub session_id: Uuid,
    /// What the embedding application's hooks are shown of the session: kept only for
    /// hooks that look at open sessions (see [`crate::Hooks::follows_sessions`]).
    pub info: Option<Box<SessionInfo>>,
    /// Who the session is, as its handshake proved.
    pub identity: Arc<Identity>,
    /// What its roles let it use, and its user's usage; `None` when nothing limits it.
    pub(crate) limits: Option<Box<SessionLimits>>,
    /// The hub's policy generation the session last checked itself against: a reload
    /// moves the hub's (see `cmd::limits::policy_changed`).
    pub(crate) policy_seen: u64,
    /// What its roles allow, with its cache of decisions; shared with the routes that
    /// filter deliveries on its behalf and with its directory entry.
    pub permissions: Arc<SessionPermissions>,
    /// Nothing heard for this many milliseconds ends the session (three heartbeats; see
    /// [`Session::idle_limit`]). Kept here rather than passed along, where each async
    /// layer would hold a copy for the session's life; 4 bytes where a `Duration` is 16.
    idle_limit_ms: u32,
    pub(super) subscriptions: Subscriptions,
    /// Streamed bodies being received, by stream id; dropped (and their spool files
    /// removed) with the session.
    pub(super) streams: OpenStreams,
    /// Publishes waiting for the store to sync before they are acknowledged.
    pub(super) durable_acks: Option<Box<DurableAcks>>,
    /// More bytes were already read when the request being served was: the client did
    /// not wait for its answer (set by the request loop).
    pub(crate) more_read: bool,
    /// The session has not gone quiet since it served its first request: the next time
    /// it does, it parks at once (see `connection::request_loop`).
    pub(crate) opening: bool,
    /// Which transport's gauge the connection is counted in (set by the connection once
    /// the session opened). Here rather than beside the session in the parked record,
    /// where this byte would make the record a 16-byte step larger at glibc: in here it
    /// takes padding.
    pub(crate) transport: u8,
    /// Publishes queued on the cluster's backplane, not yet stored.
    pub(super) cluster_acks: Option<Box<ClusterAcks>>,
    next_subscription_id: u64,
}

impl Session {
    pub fn new(
        caller: Caller,
        info: SessionInfo,
        follows_sessions: bool,
        identity: Identity,
        permissions: Arc<SessionPermissions>,
        idle_limit: Duration,
        policy_seen: u64,
    ) -> Session {
        Session {
            caller,
            session_id: info.session_id,
            info: follows_sessions.then(|| Box::new(info)),
            identity: identity.into_shared(),
            limits: None,
            policy_seen,
            permissions,
            idle_limit_ms: u32::try_from(idle_limit.as_millis()).unwrap_or(u32::MAX),
            subscriptions: Subscriptions::default(),
            streams: OpenStreams::default(),
            durable_acks: None,
            more_read: false,
            opening: true,
            transport: 0,
            cluster_acks: None,
            next_subscription_id: 0,
        }
    }

    /// Nothing heard for this long ends the session (three heartbeats); the connection's
    /// request loop keeps to it.
    pub fn idle_limit(&self) -> Duration {
        Duration::from_millis(u64::from(self.idle_limit_ms))
    }

    /// Whether a reload put a new policy in force since the session last looked, given
    /// the hub's policy generation now.
    pub(crate) fn policy_changed(&self, generation: u64) -> bool {
        generation != self.policy_seen
    }

    /// Whether the session may wait without a task of its own: no upload is open (its
    /// chunks are on their way, and what it holds is not left alone).
    pub fn may_park(&self) -> bool {
        self.streams.is_empty()
    }

    pub(super) fn next_subscription_id(&mut self) -> u64 {
        self.next_subscription_id += 1;
        self.next_subscription_id
    }

    pub fn outbox(&self) -> &Outbox {
        &self.caller.outbox
    }

    /// Queues a reply, waiting for room in this session's own queue.
    pub async fn reply(&self, request_id: u32, packet: Packet) {
        self.reply_flags(request_id, Flags::empty(), packet).await;
    }

    pub async fn reply_flags(&self, request_id: u32, flags: Flags, packet: Packet) {
        let _ = self
            .caller
            .outbox
            .send(Outgoing::Packet {
                request_id,
                flags,
                packet: Box::new(packet),
            })
            .await;
    }

    /// Queues an ERROR answering `request_id`.
    pub async fn refuse(&self, request_id: u32, refusal: Refusal) {
        let _ = self
            .caller
            .outbox
            .send(refused(self.caller.client_id(), request_id, refusal))
            .await;
    }

    /// The session is closing: every subscription's pattern, taken out, for the hub to
    /// remove their routes.
    pub fn take_subscriptions(&mut self) -> impl Iterator<Item = Pattern> + '_ {
        self.subscriptions.drain().map(|(_, pattern)| pattern)
    }

    /// The ids of this session's subscriptions that `grants` (a reloaded policy's, not
    /// yet in force) no longer allow. Subscriptions that `grants` allow only in part
    /// stay when their routes are filtered (every wildcard and hashtag route of a
    /// session that may not do everything is); those made while the session could do
    /// everything have unfiltered routes, so they are revoked unless `grants` allow them
    /// whole.
    pub fn revoked_subscriptions(&self, grants: &Grants) -> Vec<u64> {
        let unfiltered = self.permissions.is_everything();
        self.subscriptions
            .iter()
            .filter(
                |(_, pattern)| match grants.coverage(Operation::Subscribe, pattern) {
                    Coverage::Denied => true,
                    Coverage::Filtered => unfiltered,
                    Coverage::Allowed => false,
                },
            )
            .map(|(id, _)| *id)
            .collect()
    }

    /// Puts `policy` (a reloaded one) in force for this session, and returns the ids of
    /// the subscriptions it no longer allows ([`Session::revoked_subscriptions`]); the
    /// caller removes them as UNSUBSCRIBE does and tells the session (EVENT
    /// `SUBSCRIPTION_REVOKED` with the subscription's id). The session's own permissions
    /// are updated in place, so the routes filtering on its behalf see the new grants at once; a session moving
    /// from or to grants that allow everything gets a new value, also handed to its
    /// directory entry.
    pub fn reload_permissions(&mut self, hub: &crate::hub::Hub, policy: &Policy) -> Vec<u64> {
        let grants = policy.grants(&self.identity);
        let revoked = self.revoked_subscriptions(&grants);
        if !self.permissions.is_everything() && !grants.is_everything() {
            self.permissions.replace(grants);
        } else {
            self.permissions = policy.permissions(&self.identity);
            hub.set_client_permissions(self.caller.client_id(), self.permissions.clone());
        }
        revoked
    }

    /// The session is closing: publishes already stored get their answers (within
    /// `limit`) before the goodbye.
    pub async fn finish_durable_acks(&mut self, limit: Duration) {
        if let Some(acks) = self.durable_acks.take() {
            acks.finish(limit).await;
        }
        if let Some(acks) = self.cluster_acks.take() {
            acks.finish(limit).await;
        }
    }
}

/// The ERROR answering a refused request, logged as refused (also for answers sent after
/// the session moved on).
pub(super) fn refused(client_id: u64, request_id: u32, refusal: Refusal) -> Outgoing {
    info!(target: log::ERROR, client_id, request_id, code = %refusal.code, reason = %refusal.message, "request refused");
    Outgoing::Packet {
        request_id,
        flags: Flags::empty(),
        packet: Box::new(Packet::Error(refusal.to_packet())),
    }
}
