//! What cluster mode's groups need of the hub: the sessions of given users on this node
//! (group posts and member events go to members by name), and the group events as
//! frames. The groups themselves live in the backplane (see `cluster::groups`).

use bytes::Bytes;
use switchboard_proto::packet::{Event, EventKind, Packet, Scope};

use super::Hub;
use crate::outbox::Outbox;
use crate::time::now_us;

impl Hub {
    /// Whether a session of this name is connected to this node.
    pub(crate) fn is_online_here(&self, name: &str) -> bool {
        self.directory.is_online(name)
    }

    /// Queues something on every session here of every one of `users`; returns on how
    /// many it was queued.
    pub(crate) fn tell_users<'a>(
        &self,
        users: impl Iterator<Item = &'a str>,
        deliver: impl Fn(&Outbox) -> bool,
    ) -> u64 {
        let mut outboxes = Vec::new();
        for user in users {
            self.directory.outboxes_named(user, &mut outboxes);
        }
        outboxes
            .iter()
            .map(|outbox| u64::from(deliver(outbox)))
            .sum()
    }

    /// The EVENT frame of a group event (MEMBER_JOINED, MEMBER_LEFT with the member as
    /// subject; GROUP_DELETED with none), as every session is sent it.
    pub(crate) fn group_event_frame(
        &self,
        kind: EventKind,
        group: &str,
        subject: &str,
    ) -> Option<Bytes> {
        let mut event = Event::new(kind);
        event.scope = Scope::Group;
        event.channel = group.into();
        event.subject = subject.into();
        event.time_us = now_us();
        self.shared_frame(&Packet::Event(event))
    }

    /// How many posts a group keeps.
    pub(crate) fn group_retention(&self) -> u64 {
        self.config.default_history
    }
}
