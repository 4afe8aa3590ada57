//! GET_MESSAGE and GET_MESSAGES over channels, groups (members only) and hashtags.
//!
//! A GET_MESSAGES answer is sent page by page: each page is read from the history only
//! once the previous one was queued, and queuing waits for the session's reply budget
//! (see `outbox`), so an answer costs about a page of memory however much it covers, and
//! a client that pipelines fetches without reading them is simply not served further.
//! A channel or group history is paged by sequence number within the range the request
//! named when it arrived (messages trimmed meanwhile are not sent; MESSAGES_END counts
//! what was). A hashtag's recent messages (at most its retention) are taken at once and
//! sent in the same pages.

use std::sync::Arc;

use switchboard_proto::packet::{GetMessage, GetMessages, MessagesEnd, Packet, Scope, Since};
use switchboard_proto::subject::{self, Pattern};

use super::session::Session;
use crate::cluster::Query;
use crate::cluster::node::{ClusterNode, query_of};
use crate::error::Refusal;
use crate::hub::history::HistoryRead;
use crate::hub::message::StoredMessage;
use crate::hub::{Hub, storage_refusal};
use crate::outbox::{Gone, Outgoing};
use crate::security::permissions::Operation;

/// Whether the session may read this history: a channel's (`history`), a group's
/// (`groups.read`) or a hashtag's (`history` with `#tag` or `#*`).
fn permit_read(hub: &Hub, session: &Session, scope: Scope, name: &str) -> Result<(), Refusal> {
    match scope {
        Scope::Channel => session.permit(hub, Operation::History, name),
        Scope::Group => session.permit(hub, Operation::ReadGroup, name),
        Scope::Tag => {
            let grants = session.permissions.grants();
            let tag = tag_of(name)?;
            if grants.allows_tag(Operation::History, &tag) {
                Ok(())
            } else {
                Err(super::permission::denied(
                    hub,
                    Operation::History.describe(),
                    &format!("#{tag}"),
                    None,
                ))
            }
        }
    }
}

/// A hashtag's messages as the session may see them: those of channels whose history it
/// may read.
fn readable_tagged(
    session: &Session,
    mut messages: Vec<Arc<StoredMessage>>,
) -> Vec<Arc<StoredMessage>> {
    if !session.permissions.is_everything() {
        messages.retain(|message| {
            message.envelope().is_ok_and(|envelope| {
                session
                    .permissions
                    .allows(Operation::History, &envelope.channel)
            })
        });
    }
    messages
}

/// The messages of a history read planned under its lock, those out of memory read back
/// from the store now that the lock is released: a store that failed refuses the request.
fn read_back(read: HistoryRead) -> Result<Vec<Arc<StoredMessage>>, Refusal> {
    read.read().map_err(|error| storage_refusal(&error))
}

/// About how many bytes of frames one page of an answer holds (a page holds at least one
/// message, whatever its size).
const PAGE_BYTES: usize = 256 * 1024;

/// The hashtag a tag-scope request names: lower-cased, without its optional '#'.
fn tag_of(name: &str) -> Result<String, Refusal> {
    let tag = name.strip_prefix('#').unwrap_or(name);
    match Pattern::parse(&format!("#{tag}"))? {
        Pattern::Tag(tag) => Ok(tag),
        _ => Err(Refusal::invalid(format!("{name} is not a hashtag"))),
    }
}

pub(crate) async fn get_message(hub: &Hub, session: &Session, request_id: u32, get: GetMessage) {
    if let Err(refusal) = permit_read(hub, session, get.scope, &get.channel) {
        session.refuse(request_id, refusal).await;
        return;
    }
    let found = if let (Scope::Channel, Some(cluster)) = (get.scope, hub.cluster()) {
        cluster_message(hub, cluster, &get.channel, get.id).await
    } else if let (Scope::Tag, Some(cluster)) = (get.scope, hub.cluster()) {
        match tag_of(&get.channel) {
            Ok(tag) => {
                let query = get.id.map_or(Query::Last(1), Query::ById);
                cluster
                    .read_tag(hub, &tag, query, 1)
                    .await
                    .map(|found| readable_tagged(session, found).pop())
            }
            Err(refusal) => Err(refusal),
        }
    } else if let (Scope::Group, Some(cluster)) = (get.scope, hub.cluster()) {
        let query = get.id.map_or(Query::Last(1), Query::ById);
        let reader = session.caller.name();
        cluster
            .read_group(hub, &get.channel, reader, query, 1)
            .await
            .map(|(_, messages)| messages.last().cloned())
    } else if get.scope == Scope::Tag {
        tag_of(&get.channel).map(|tag| {
            let recent = readable_tagged(session, hub.tagged(&tag, Since::All, None));
            match &get.id {
                Some(id) => recent.into_iter().rev().find(|m| m.id() == *id),
                None => recent.last().cloned(),
            }
        })
    } else {
        hub.read_history(
            get.scope,
            &get.channel,
            session.caller.name(),
            |history| match &get.id {
                Some(id) => history.find(id),
                None => history.latest(),
            },
        )
        .and_then(|(found, _)| read_back(found))
        .map(|mut found| found.pop())
    };
    match found {
        Ok(Some(message)) => {
            let _ = send(session, request_id, vec![message], None).await;
        }
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
    if let Err(refusal) = permit_read(hub, session, get.scope, &get.channel) {
        session.refuse(request_id, refusal).await;
        return;
    }
    if let (Scope::Channel | Scope::Group, Some(cluster)) = (get.scope, hub.cluster()) {
        cluster_messages(hub, cluster, session, request_id, &get).await;
        return;
    }
    if get.scope == Scope::Tag {
        match tag_of(&get.channel) {
            Ok(tag) if hub.cluster().is_some() => {
                let Some(cluster) = hub.cluster() else { return };
                let query = query_of(get.since, get.limit);
                let limit = get.limit.unwrap_or(u64::from(u32::MAX));
                match cluster.read_tag(hub, &tag, query, limit).await {
                    Ok(found) => {
                        send_snapshot(session, request_id, readable_tagged(session, found)).await;
                    }
                    Err(refusal) => session.refuse(request_id, refusal).await,
                }
            }
            Ok(tag) => {
                let messages = readable_tagged(session, hub.tagged(&tag, get.since, get.limit));
                send_snapshot(session, request_id, messages).await;
            }
            Err(refusal) => session.refuse(request_id, refusal).await,
        }
        return;
    }
    let reader = session.caller.name();
    // Each page is planned under the history's lock and read back from the store after
    // it is released: a publisher to the channel does not wait for the store. The next
    // page starts after the last message planned, which a trim in between may have taken
    // out of the one read.
    let first = hub.read_history(get.scope, &get.channel, reader, |history| {
        let window = history.window(get.since, get.limit);
        window.map(|(first, last)| (history.page(first, last, PAGE_BYTES), last))
    });
    let (mut planned, last_seq) = match first {
        Ok(found) => found,
        Err(refusal) => {
            session.refuse(request_id, refusal).await;
            return;
        }
    };
    let mut count = 0u64;
    while let Some((plan, last)) = planned.take() {
        let Some(newest) = plan.last_seq() else {
            break;
        };
        let page = match read_back(plan) {
            Ok(page) => page,
            Err(refusal) => {
                session.refuse(request_id, refusal).await;
                return;
            }
        };
        count += page.len() as u64;
        if !page.is_empty() && send(session, request_id, page, None).await.is_err() {
            return;
        }
        if newest >= last {
            break;
        }
        let next = hub.read_history(get.scope, &get.channel, reader, |history| {
            history.page(newest + 1, last, PAGE_BYTES)
        });
        match next {
            Ok((next, _)) => planned = Some((next, last)),
            Err(refusal) => {
                session.refuse(request_id, refusal).await;
                return;
            }
        }
    }
    send_end(session, request_id, MessagesEnd { count, last_seq }).await;
}

/// Sends messages taken at once (a hashtag's), in pages, then MESSAGES_END.
async fn send_snapshot(session: &Session, request_id: u32, messages: Vec<Arc<StoredMessage>>) {
    let count = messages.len() as u64;
    if send_pages(session, request_id, &messages).await.is_err() {
        return;
    }
    send_end(session, request_id, MessagesEnd { count, last_seq: 0 }).await;
}

/// Sends messages in pages of about [`PAGE_BYTES`].
async fn send_pages(
    session: &Session,
    request_id: u32,
    messages: &[Arc<StoredMessage>],
) -> Result<(), Gone> {
    let mut rest = messages;
    while !rest.is_empty() {
        let mut bytes = 0;
        let take = rest
            .iter()
            .take_while(|message| {
                let more = bytes == 0 || bytes < PAGE_BYTES;
                bytes += message.frame_len();
                more
            })
            .count();
        let (page, after) = rest.split_at(take);
        send(session, request_id, page.to_vec(), None).await?;
        rest = after;
    }
    Ok(())
}

/// Messages read from the cluster's backplane per request: each holds up to a frame, so
/// this bounds what one read holds in memory.
const CLUSTER_READ_BATCH: u64 = 64;

/// GET_MESSAGE of a channel in cluster mode: read from the backplane, so that every node
/// answers alike.
async fn cluster_message(
    hub: &Hub,
    cluster: &ClusterNode,
    name: &str,
    id: Option<uuid::Uuid>,
) -> Result<Option<Arc<StoredMessage>>, Refusal> {
    subject::validate_channel(name)?;
    let query = id.map_or(Query::Last(1), Query::ById);
    match cluster.read(hub, name, query, 1).await? {
        Some((_, messages)) => Ok(messages.last().cloned()),
        None => Err(Refusal::not_found(format!("no channel named {name}"))),
    }
}

/// GET_MESSAGES of a channel or group in cluster mode, read from the backplane page by
/// page within the history as it stood at the first read.
async fn cluster_messages(
    hub: &Hub,
    cluster: &ClusterNode,
    session: &Session,
    request_id: u32,
    get: &GetMessages,
) {
    let valid = match get.scope {
        Scope::Group => subject::validate_group(&get.channel),
        _ => subject::validate_channel(&get.channel),
    };
    if let Err(refusal) = valid {
        session.refuse(request_id, refusal.into()).await;
        return;
    }
    let wanted = get.limit.unwrap_or(u64::MAX);
    let mut query = query_of(get.since, get.limit);
    let mut count = 0u64;
    let mut last_seq = None;
    loop {
        let batch = match query {
            // The newest n come in one read: their start is only known to the backplane.
            Query::Last(n) => n,
            _ => (wanted - count).min(CLUSTER_READ_BATCH),
        };
        let read = match get.scope {
            Scope::Group => cluster
                .read_group(hub, &get.channel, session.caller.name(), query, batch)
                .await
                .map(Some),
            _ => cluster.read(hub, &get.channel, query, batch).await,
        };
        let read = match read {
            Ok(Some(read)) => read,
            Ok(None) => {
                let refusal = Refusal::not_found(format!("no channel named {}", get.channel));
                session.refuse(request_id, refusal).await;
                return;
            }
            Err(refusal) => {
                session.refuse(request_id, refusal).await;
                return;
            }
        };
        let (page, mut messages) = read;
        let top = *last_seq.get_or_insert(page.top_seq);
        messages.retain(|message| message.seq() <= top);
        let got = page.entries.len() as u64;
        count += messages.len() as u64;
        let next = messages.last().map(|message| message.seq() + 1);
        if send_pages(session, request_id, &messages).await.is_err() {
            return;
        }
        match next {
            Some(next)
                if !matches!(query, Query::Last(_))
                    && got == batch
                    && count < wanted
                    && next <= top =>
            {
                query = Query::SinceSeq(next);
            }
            _ => break,
        }
    }
    let end = MessagesEnd {
        count,
        last_seq: last_seq.unwrap_or(0),
    };
    send_end(session, request_id, end).await;
}

/// Ends an answer with MESSAGES_END; a session already gone has nothing to be told.
async fn send_end(session: &Session, request_id: u32, end: MessagesEnd) {
    let _ = send(
        session,
        request_id,
        Vec::new(),
        Some(Box::new(Packet::MessagesEnd(end))),
    )
    .await;
}

async fn send(
    session: &Session,
    request_id: u32,
    messages: Vec<Arc<StoredMessage>>,
    tail: Option<Box<Packet>>,
) -> Result<(), Gone> {
    session
        .outbox()
        .send(Outgoing::Sequence {
            request_id,
            head: None,
            messages,
            tail,
        })
        .await
}
