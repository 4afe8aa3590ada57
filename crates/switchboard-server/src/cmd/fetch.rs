//! GET_MESSAGE and GET_MESSAGES over channels, groups (members only) and hashtags.

use std::sync::Arc;

use switchboard_proto::packet::{GetMessage, GetMessages, MessagesEnd, Packet, Scope, Since};
use switchboard_proto::subject::{self, Pattern};

use crate::connection::Session;
use crate::error::Refusal;
use crate::hub::Hub;
use crate::hub::history::History;
use crate::hub::message::StoredMessage;
use crate::outbox::Outgoing;

/// Runs `read` on the history named by `scope` and `name`, returning also its last seq.
fn with_history<T>(
    hub: &Hub,
    session: &Session,
    scope: Scope,
    name: &str,
    read: impl FnOnce(&History) -> T,
) -> Result<(T, u64), Refusal> {
    match scope {
        Scope::Channel => {
            subject::validate_channel(name)?;
            let channel = hub
                .channels
                .get(name)
                .ok_or_else(|| Refusal::not_found(format!("no channel named {name}")))?;
            let history = channel.history.lock();
            Ok((read(&history), history.info().last_seq))
        }
        Scope::Group => {
            subject::validate_group(name)?;
            let group = hub.group(name)?;
            if !group.is_member(&session.caller.name) {
                return Err(Refusal::forbidden(format!(
                    "only members may read group {name}; join it first"
                )));
            }
            let history = group.history.lock();
            Ok((read(&history), history.info().last_seq))
        }
        // Tags have no history of their own; callers read the tag index instead.
        Scope::Tag => Err(Refusal::invalid(format!(
            "{name} is a hashtag, not a history"
        ))),
    }
}

/// The hashtag a tag-scope request names: lower-cased, without its optional '#'.
fn tag_of(name: &str) -> Result<String, Refusal> {
    let tag = name.strip_prefix('#').unwrap_or(name);
    match Pattern::parse(&format!("#{tag}"))? {
        Pattern::Tag(tag) => Ok(tag),
        _ => Err(Refusal::invalid(format!("{name} is not a hashtag"))),
    }
}

pub(crate) async fn get_message(hub: &Hub, session: &Session, request_id: u32, get: GetMessage) {
    let found = if get.scope == Scope::Tag {
        tag_of(&get.channel).map(|tag| {
            let recent = hub.tags.lock().range(&tag, Since::All, None);
            match &get.id {
                Some(id) => recent.into_iter().rev().find(|m| m.id() == *id),
                None => recent.last().cloned(),
            }
        })
    } else {
        with_history(
            hub,
            session,
            get.scope,
            &get.channel,
            |history| match &get.id {
                Some(id) => history.find(id),
                None => history.latest(),
            },
        )
        .map(|(found, _)| found)
    };
    match found {
        Ok(Some(message)) => send(session, request_id, vec![message], None).await,
        Ok(None) => {
            let what = match get.id {
                Some(id) => format!("no message {id} in {}", get.channel),
                None => format!("{} has no messages", get.channel),
            };
            session.refuse(request_id, Refusal::not_found(what)).await;
        }
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

pub(crate) async fn get_messages(hub: &Hub, session: &Session, request_id: u32, get: GetMessages) {
    let found = if get.scope == Scope::Tag {
        tag_of(&get.channel).map(|tag| (hub.tags.lock().range(&tag, get.since, get.limit), 0))
    } else {
        with_history(hub, session, get.scope, &get.channel, |history| {
            history.range(get.since, get.limit)
        })
    };
    match found {
        Ok((messages, last_seq)) => {
            let end = MessagesEnd {
                count: messages.len() as u64,
                last_seq,
            };
            send(
                session,
                request_id,
                messages,
                Some(Box::new(Packet::MessagesEnd(end))),
            )
            .await;
        }
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

async fn send(
    session: &Session,
    request_id: u32,
    messages: Vec<Arc<StoredMessage>>,
    tail: Option<Box<Packet>>,
) {
    let _ = session
        .outbox()
        .send(Outgoing::Sequence {
            request_id,
            head: None,
            messages,
            tail,
        })
        .await;
}
