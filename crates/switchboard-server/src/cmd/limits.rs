//! The limits of a session's roles applied to its requests: rates (RATE_LIMITED, with
//! when to retry), body sizes, and the counts of what its user holds (subscriptions,
//! channels, groups); and what a session does when a reload puts a new policy in force.
//!
//! A session that nothing limits carries no limit state: its requests pay one branch.

use std::sync::Arc;

use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{Event, EventKind, Packet, Publish};
use tracing::warn;

use super::session::Session;
use crate::error::Refusal;
use crate::hub::Hub;
use crate::hub::stats::Counters;
use crate::log;
use crate::security::limits::{Limits, Rate, retry_hint};
use crate::security::usage::{Counter, Owned, SessionLimits, Usage};
use crate::security::{Policy, reload};
use crate::time::now_us;

/// Checks a request against the session's rates and body size before it is served.
pub(super) fn admit(hub: &Hub, session: &SessionLimits, packet: &Packet) -> Result<(), Refusal> {
    let limits = &session.limits;
    let usage = &session.usage;
    let (bucket, rate, what) = match packet {
        // Keeping the session alive, finishing what was admitted, or leaving: never
        // refused.
        Packet::Heartbeat(_)
        | Packet::Disconnect(_)
        | Packet::Chunk(_)
        | Packet::StreamAbort(_)
        | Packet::SessionInit(_) => return Ok(()),
        Packet::Publish(publish) => return admit_publish(hub, session, publish),
        Packet::Relay(relay) => {
            check_body(hub, limits, relay.body.len() as u64)?;
            (&usage.relays, limits.relays, "relay")
        }
        _ => (&usage.requests, limits.requests, "request"),
    };
    let Some(rate) = rate else { return Ok(()) };
    bucket.take(rate, hub.now_ns()).map_err(|wait| {
        Counters::add(&hub.counters().rate_limited, 1);
        rate_limited(what, rate, &retry_hint(wait))
    })
}

/// [`admit`] for a PUBLISH, which the request loop may serve without making a
/// [`Packet`] of it.
pub(super) fn admit_publish(
    hub: &Hub,
    session: &SessionLimits,
    publish: &Publish,
) -> Result<(), Refusal> {
    let limits = &session.limits;
    let len = publish
        .stream
        .as_ref()
        .map_or(publish.body.len() as u64, |stream| stream.total_len);
    check_body(hub, limits, len)?;
    let Some(rate) = limits.publishes else {
        return Ok(());
    };
    session
        .usage
        .publishes
        .take(rate, hub.now_ns())
        .map_err(|wait| {
            Counters::add(&hub.counters().rate_limited, 1);
            rate_limited("publish", rate, &retry_hint(wait))
        })
}

fn rate_limited(what: &str, rate: Rate, retry: &str) -> Refusal {
    Refusal::new(
        ErrorCode::RateLimited,
        format!(
            "{what} rate of {} per second (burst {}) reached; {retry}",
            rate.per_second, rate.burst
        ),
    )
}

fn check_body(hub: &Hub, limits: &Limits, len: u64) -> Result<(), Refusal> {
    match limits.max_body {
        Some(max) if len > max => {
            Counters::add(&hub.counters().limit_refusals, 1);
            Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("a body of {len} bytes is over this session's limit of {max} bytes"),
            ))
        }
        _ => Ok(()),
    }
}

/// Counts one more against `counter` unless its cap is reached.
fn reserve(hub: &Hub, counter: &Counter, cap: Option<u64>, what: &str) -> Result<(), Refusal> {
    counter.reserve(cap).map_err(|cap| {
        Counters::add(&hub.counters().limit_refusals, 1);
        Refusal::new(
            ErrorCode::LimitReached,
            format!("a user may hold at most {cap} {what}"),
        )
    })
}

impl Session {
    /// Puts `limits` in force for this session (at its opening, and after a reload),
    /// keeping its user's usage record while it is limited. The record counts the
    /// session's subscriptions exactly while the session has limits.
    pub(crate) fn apply_limits(&mut self, hub: &Hub, limits: Option<Limits>) {
        let held = self.subscriptions.len() as u64;
        self.limits = match (self.limits.take(), limits) {
            (None, None) => None,
            (Some(mut current), Some(limits)) => {
                current.limits = limits;
                Some(current)
            }
            (None, Some(limits)) => {
                let usage = hub.usage().join(self.identity.user.as_deref());
                usage.subscriptions.add(held);
                Some(Box::new(SessionLimits { limits, usage }))
            }
            (Some(current), None) => {
                current.usage.subscriptions.release(held);
                hub.usage().leave(current.usage);
                None
            }
        };
    }

    /// The session is closing: it no longer counts in its user's usage.
    pub(crate) fn release_limits(&mut self, hub: &Hub) {
        self.apply_limits(hub, None);
    }

    /// Counts a new subscription against the user's cap.
    pub(super) fn count_subscription(&self, hub: &Hub) -> Result<(), Refusal> {
        match &self.limits {
            None => Ok(()),
            Some(session) => reserve(
                hub,
                &session.usage.subscriptions,
                session.limits.max_subscriptions,
                "subscriptions",
            ),
        }
    }

    pub(super) fn uncount_subscriptions(&self, count: u64) {
        if let Some(session) = &self.limits {
            session.usage.subscriptions.release(count);
        }
    }

    /// Counts a channel or group about to be created against the user's cap; the usage
    /// to make its owner if it is created ([`Created::made`]), or to give the count back
    /// ([`Created::not_made`]).
    pub(super) fn reserve_creation(&self, hub: &Hub, kind: Owned) -> Result<Created, Refusal> {
        let Some(session) = &self.limits else {
            return Ok(Created(None));
        };
        let (counter, cap, what) = match kind {
            Owned::Channel => (
                &session.usage.channels,
                session.limits.max_channels,
                "channels",
            ),
            Owned::Group => (&session.usage.groups, session.limits.max_groups, "groups"),
            Owned::Hashtag => (
                &session.usage.hashtags,
                session.limits.max_hashtags,
                "hashtags",
            ),
        };
        reserve(hub, counter, cap, what)?;
        Ok(Created(Some((kind, session.usage.clone()))))
    }
}

/// A creation counted against a user, until it is known whether it happened.
#[must_use]
pub(super) struct Created(Option<(Owned, Arc<Usage>)>);

impl Created {
    /// The thing was created: it counts until it is deleted.
    pub fn made(self, hub: &Hub, name: &str) {
        if let Some((kind, usage)) = self.0 {
            hub.usage().own(kind, name, &usage);
        }
    }

    /// It was not (it existed already, or was refused): the count goes back.
    pub fn not_made(self) {
        if let Some((kind, usage)) = self.0 {
            match kind {
                Owned::Channel => usage.channels.release(1),
                Owned::Group => usage.groups.release(1),
                Owned::Hashtag => usage.hashtags.release(1),
            }
        }
    }
}

/// Hashtags a publish would bring into the index, counted against its user's cap until
/// the publish is known to have happened.
pub(super) struct NewTags {
    tags: Vec<String>,
    usage: Option<Arc<Usage>>,
}

impl NewTags {
    /// Nothing was counted against the user's cap.
    pub fn is_none(&self) -> bool {
        self.usage.is_none() || self.tags.is_empty()
    }

    /// Nothing counted (a publish to a group carries no indexed tags).
    pub fn reserve_none() -> NewTags {
        NewTags {
            tags: Vec::new(),
            usage: None,
        }
    }

    /// Counts the tags of a message that are new to the index against the user's cap,
    /// all or none.
    pub fn reserve(
        hub: &Hub,
        session: &Session,
        content_type: &str,
        body: &[u8],
    ) -> Result<NewTags, Refusal> {
        let none = NewTags::reserve_none();
        let Some(limits) = &session.limits else {
            return Ok(none);
        };
        let Some(cap) = limits.limits.max_hashtags else {
            return Ok(none);
        };
        let mut tags = switchboard_proto::subject::message_hashtags(content_type, body);
        tags.retain(|tag| !hub.has_tag(tag));
        if tags.is_empty() {
            return Ok(none);
        }
        limits
            .usage
            .hashtags
            .reserve_many(tags.len() as u64, Some(cap))
            .map_err(|cap| {
                Counters::add(&hub.counters().limit_refusals, 1);
                Refusal::new(
                    ErrorCode::LimitReached,
                    format!("a user may bring at most {cap} hashtags into use"),
                )
            })?;
        Ok(NewTags {
            tags,
            usage: Some(limits.usage.clone()),
        })
    }

    /// The publish happened: the tags count until they leave the index.
    pub fn made(self, hub: &Hub) {
        if let Some(usage) = &self.usage {
            for tag in &self.tags {
                hub.usage().own(Owned::Hashtag, tag, usage);
            }
        }
    }

    /// It did not: the count goes back.
    pub fn not_made(self) {
        if let Some(usage) = self.usage {
            usage.hashtags.release(self.tags.len() as u64);
        }
    }
}

/// A reload put a new policy in force: the session re-checks who it is (it ends if its
/// user was removed, or sessions without credentials are no longer accepted), takes its
/// roles' new limits and gives up the subscriptions no longer allowed. Returns why the
/// session ends, if it does.
pub(crate) async fn policy_changed(
    hub: &Hub,
    session: &mut Session,
) -> Option<(ErrorCode, String)> {
    session.policy_seen = hub.policy_generation();
    let policy = hub.policy();
    match reload::recheck(&policy, &session.identity) {
        Ok(identity) => session.identity = identity.into_shared(),
        Err(reason) => {
            Counters::add(&hub.counters().sessions_ended_by_reload, 1);
            warn!(target: log::ERROR, client_id = session.caller.client_id(), %reason, "session ended by a reload");
            return Some((ErrorCode::AuthFailed, reason));
        }
    }
    let limits = policy.session_limits(&session.identity);
    session.apply_limits(hub, limits);
    revoke_subscriptions(hub, session, &policy).await;
    None
}

/// Ends every subscription the policy no longer allows, telling the client with an
/// EVENT SUBSCRIPTION_REVOKED each.
async fn revoke_subscriptions(hub: &Hub, session: &mut Session, policy: &Policy) {
    let revoked = session.reload_permissions(hub, policy);
    for subscription_id in revoked {
        let Some(pattern) = session.subscriptions.remove(&subscription_id) else {
            continue;
        };
        hub.unsubscribe(&pattern, session.caller.client_id());
        session.uncount_subscriptions(1);
        let mut event = Event::new(EventKind::SubscriptionRevoked);
        event.subscription_id = subscription_id;
        event.channel = pattern.to_string().as_str().into();
        event.time_us = now_us();
        session.reply(0, Packet::Event(event)).await;
    }
}
