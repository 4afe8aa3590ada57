//! PUBLISH to a channel or group, through the embedding application's hook, and its
//! acknowledgement (after the store synced, for durability `always`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_proto::packet::{Packet, Publish, PublishAck, Scope};
use switchboard_proto::subject;
use switchboard_proto::{ErrorCode, Flags};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::cluster_acks::ClusterAcks;
use super::limits::NewTags;
use super::session::Session;
use crate::error::Refusal;
use crate::hooks::PublishVerdict;
use crate::hub::{Hub, Published};
use crate::metrics::LatencyHistogram;
use crate::outbox::{Outbox, Outgoing};
use crate::security::permissions::Operation;
use crate::storage::SyncFuture;

/// `body_crc` is the CRC32C of the body as checked in its frame.
pub(crate) async fn publish(
    hub: &Hub,
    session: &mut Session,
    request_id: u32,
    quiet: bool,
    mut publish: Publish,
    body_crc: u32,
) {
    let started = Instant::now();
    let body = (publish.body.as_ptr() as usize, publish.body.len());
    if let Err(refusal) = run_hooks(hub, session, &mut publish) {
        session.refuse(request_id, refusal).await;
        return;
    }
    // The same slice of the same (immutable) buffer is the same body; a hook that
    // rewrote it made the CRC stale.
    let unchanged = (publish.body.as_ptr() as usize, publish.body.len()) == body;
    let creation = match super::channel::implicit_channel(hub, session, &publish) {
        Ok(creation) => creation,
        Err(refusal) => return session.refuse(request_id, refusal).await,
    };
    let new_tags = match publish.scope {
        Scope::Channel => NewTags::reserve(hub, session, &publish.content_type, &publish.body),
        _ => Ok(NewTags::reserve_none()),
    };
    let new_tags = match new_tags {
        Ok(new_tags) => new_tags,
        Err(refusal) => {
            creation.settle(hub, false);
            return session.refuse(request_id, refusal).await;
        }
    };
    let body_crc = unchanged.then_some(body_crc);
    let result = match hub.cluster() {
        // Nothing was reserved against the user's caps, so nothing waits on the outcome
        // but the answer: queued, and the session reads on.
        Some(cluster)
            if publish.scope == Scope::Channel && creation.is_none() && new_tags.is_none() =>
        {
            match cluster
                .queue_publish(hub, &session.caller, publish, body_crc)
                .await
            {
                Ok(outcome) => {
                    let acks = session.cluster_acks.get_or_insert_with(|| {
                        Box::new(ClusterAcks::start(
                            session.caller.client_id,
                            session.caller.outbox.clone(),
                            hub.counters().publish_ack_latency.clone(),
                        ))
                    });
                    acks.push(request_id, quiet, outcome, started).await;
                    return;
                }
                Err(refusal) => Err(refusal),
            }
        }
        Some(cluster) if publish.scope == Scope::Channel => {
            cluster
                .publish(hub, &session.caller, &publish, body_crc)
                .await
        }
        Some(cluster) if publish.scope == Scope::Group => {
            cluster.post(hub, &session.caller, &publish, body_crc).await
        }
        _ => hub.publish(&session.caller, publish, body_crc),
    };
    creation.settle(hub, result.is_ok());
    match &result {
        Ok(_) => new_tags.made(hub),
        Err(_) => new_tags.not_made(),
    }
    match result {
        Ok(published) => acknowledge(hub, session, request_id, quiet, published, started).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

/// Checks that the session may publish there (or post to the group) and the header
/// names, then lets the embedding application reject or rewrite the publish.
pub(crate) fn run_hooks(
    hub: &Hub,
    session: &Session,
    publish: &mut Publish,
) -> Result<(), Refusal> {
    let operation = match publish.scope {
        Scope::Group => Operation::PostToGroup,
        Scope::Channel | Scope::Tag => Operation::Publish,
    };
    session.permit(hub, operation, &publish.channel)?;
    for (name, _) in &publish.user_headers {
        subject::validate_header_name(name)
            .map_err(|error| Refusal::invalid(format!("header {error}")))?;
    }
    match hub.hooks().on_publish(&session.info, publish) {
        PublishVerdict::Accept => Ok(()),
        PublishVerdict::Reject(reason) => Err(Refusal::new(ErrorCode::Rejected, reason)),
    }
}

/// Answers a stored publish. With durability `always` the answer waits for the store's
/// sync, but the session does not: it hands the wait to its [`DurableAcks`] and reads on,
/// so that pipelined publishes of one connection share a sync (group commit).
///
/// `started` is when the publish was read: the time until its ack is queued is what the
/// publish-to-ack latency histogram counts (publishes that want no ack are not counted).
pub(crate) async fn acknowledge(
    hub: &Hub,
    session: &mut Session,
    request_id: u32,
    quiet: bool,
    published: Published,
    started: Instant,
) {
    if published.must_sync {
        let waiting = Waiting {
            request_id,
            quiet,
            ack: published.ack,
            synced: hub.sync_storage(),
            started,
        };
        let outbox = session.outbox().clone();
        let latency = hub.counters().publish_ack_latency.clone();
        let acks = session
            .durable_acks
            .get_or_insert_with(|| DurableAcks::start(outbox, latency));
        let _ = acks.queue.send(waiting).await;
        return;
    }
    if !quiet {
        let queued = session
            .outbox()
            .send(Outgoing::PublishAck {
                request_id,
                ack: published.ack,
            })
            .await;
        if queued.is_ok() {
            hub.counters().publish_ack_latency.record(started.elapsed());
        }
    }
}

/// Acknowledgements waiting for a sync, in publish order.
struct Waiting {
    request_id: u32,
    quiet: bool,
    ack: PublishAck,
    synced: SyncFuture,
    /// When the publish was read.
    started: Instant,
}

/// Publishes of a session waiting for the store to sync, answered in order by a task the
/// session owns. Syncs complete in ticket order, so waiting for them one by one costs
/// nothing while each sync covers everything written before it.
pub(super) struct DurableAcks {
    queue: mpsc::Sender<Waiting>,
    task: JoinHandle<()>,
}

/// Publishes that may wait for a sync at once per session (then the session waits too).
const MAX_WAITING: usize = 4096;

impl DurableAcks {
    fn start(outbox: Outbox, latency: Arc<LatencyHistogram>) -> DurableAcks {
        let (queue, mut waiting) = mpsc::channel::<Waiting>(MAX_WAITING);
        let task = tokio::spawn(async move {
            while let Some(next) = waiting.recv().await {
                let item = match next.synced.await {
                    Ok(()) if next.quiet => continue,
                    Ok(()) => {
                        latency.record(next.started.elapsed());
                        Outgoing::PublishAck {
                            request_id: next.request_id,
                            ack: next.ack,
                        }
                    }
                    Err(error) => {
                        // The store failed (and may recover), or it was closed.
                        let code = if error.is_unavailable() {
                            ErrorCode::StorageUnavailable
                        } else {
                            ErrorCode::Internal
                        };
                        let refusal = Refusal::new(
                            code,
                            format!("the message was not made durable: {error}"),
                        );
                        Outgoing::Packet {
                            request_id: next.request_id,
                            flags: Flags::empty(),
                            packet: Box::new(Packet::Error(refusal.to_packet())),
                        }
                    }
                };
                if outbox.send(item).await.is_err() {
                    return;
                }
            }
        });
        DurableAcks { queue, task }
    }

    /// Answers everything still waiting, within `limit`, before the session closes.
    pub(super) async fn finish(self, limit: Duration) {
        let DurableAcks { queue, mut task } = self;
        drop(queue);
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}
