//! GET_MESSAGE and GET_MESSAGES over channels, groups (members only) and hashtags.

use std::sync::Arc;

use switchboard_proto::packet::{GetMessage, GetMessages, MessagesEnd, Packet, Scope, Since};
use switchboard_proto::subject::Pattern;

use super::session::Session;
use crate::error::Refusal;
use crate::hub::Hub;
use crate::hub::message::StoredMessage;
use crate::outbox::Outgoing;

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
            let recent = hub.tagged(&tag, Since::All, None);
            match &get.id {
                Some(id) => recent.into_iter().rev().find(|m| m.id() == *id),
                None => recent.last().cloned(),
            }
        })
    } else {
        hub.read_history(
            get.scope,
            &get.channel,
            &session.caller.name,
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
        tag_of(&get.channel).map(|tag| (hub.tagged(&tag, get.since, get.limit), 0))
    } else {
        hub.read_history(get.scope, &get.channel, &session.caller.name, |history| {
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
