//! PUBLISH to a channel or group, through the embedding application's hook, and its
//! acknowledgement (after the store synced, for durability `always`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_proto::packet::{
    BatchBodies, Packet, Publish, PublishAck, PublishTexts, Scope, batch_request_id,
};
use switchboard_proto::subject;
use switchboard_proto::{ErrorCode, Flags};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::channel::ImplicitChannel;
use super::cluster_acks::ClusterAcks;
use super::limits::NewTags;
use super::session::Session;
use crate::error::Refusal;
use crate::hooks::PublishVerdict;
use crate::hub::{Hub, Published, RunChannel};
use crate::log;
use crate::metrics::LatencyHistogram;
use crate::outbox::{Outbox, Outgoing};
use crate::security::permissions::Operation;
use crate::storage::SyncFuture;
use crate::time::now_us;

/// `body_crc` is the CRC32C of the body as checked in its frame, if known (not for
/// the bodies of a batch); `publish_permitted`: the session's permission to publish
/// there was checked already (once for a batch's bodies).
pub(crate) async fn publish(
    hub: &Hub,
    session: &mut Session,
    request_id: u32,
    quiet: bool,
    mut publish: Publish,
    body_crc: Option<u32>,
    publish_permitted: bool,
) {
    let Some(cluster) = hub.cluster() else {
        let mut run = PublishRun {
            publish_permitted,
            ..PublishRun::default()
        };
        let answer = publish_at_once(
            hub,
            session,
            &mut run,
            request_id,
            quiet,
            &mut publish,
            body_crc,
        );
        return answer.send(hub, session).await;
    };
    let started = Instant::now();
    let everything = session.permissions.is_everything();
    let prepared = match Prepared::prepare(
        hub,
        session,
        everything,
        publish_permitted,
        &mut publish,
        body_crc,
    ) {
        Ok(prepared) => prepared,
        Err(refusal) => return session.refuse(request_id, refusal).await,
    };
    let body_crc = prepared.body_crc;
    let result = match publish.scope {
        // Nothing was reserved against the user's caps, so nothing waits on the outcome
        // but the answer: queued, and the session reads on.
        Scope::Channel if prepared.reserves_nothing() => {
            match cluster
                .queue_publish(hub, &session.caller, publish, body_crc)
                .await
            {
                Ok(outcome) => {
                    let acks = session.cluster_acks.get_or_insert_with(|| {
                        Box::new(ClusterAcks::start(
                            session.caller.client_id(),
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
        Scope::Channel => {
            cluster
                .publish(hub, &session.caller, &publish, body_crc)
                .await
        }
        Scope::Group => cluster.post(hub, &session.caller, &publish, body_crc).await,
        Scope::Tag => hub.publish(&session.caller, publish, body_crc),
    };
    prepared.settle(hub, result.is_ok());
    Answer::of(request_id, quiet, result, Some(started))
        .send(hub, session)
        .await;
}

/// What the publishes read together (the frames of one read) share, found out once for
/// all of them instead of once per publish: the texts of the previous PUBLISH, whether
/// the session may do everything, and the time. It lives only while the frames of one
/// read are served, as if they had arrived at the same instant (a reload that lands
/// between two of them is seen from the next read on, as the session's limits are).
#[derive(Default)]
pub(crate) struct PublishRun {
    pub(super) texts: PublishTexts,
    everything: Option<bool>,
    /// The channel the run published to last, and what that publish was like.
    channel: RunChannel,
    /// The run's time, read once for its publishes: they are served within
    /// microseconds of each other, and a clock read costs more than a small publish's
    /// routing.
    now_us: Option<u64>,
    /// The session may publish where the frame being served publishes, as checked once
    /// for all the bodies of a batch.
    pub(super) publish_permitted: bool,
}

impl PublishRun {
    fn may_do_everything(&mut self, session: &Session) -> bool {
        *self
            .everything
            .get_or_insert_with(|| session.permissions.is_everything())
    }

    fn now_us(&mut self) -> u64 {
        *self.now_us.get_or_insert_with(now_us)
    }

    /// The run waited (to queue an answer): the publishes after it read the clock anew.
    pub(crate) fn waited(&mut self) {
        self.now_us = None;
    }
}

/// PUBLISH on a server outside a cluster, which needs no waiting until its answer:
/// served synchronously, so that a run of publishes read together is served without
/// an async request handler per frame. Returns the answer still to send. The publish
/// is lent (a hook may rewrite it), not moved in.
pub(crate) fn publish_at_once(
    hub: &Hub,
    session: &Session,
    run: &mut PublishRun,
    request_id: u32,
    quiet: bool,
    publish: &mut Publish,
    body_crc: Option<u32>,
) -> Answer {
    // Only an acknowledged publish has a latency to record: a quiet one reads no clock.
    let started = (!quiet).then(Instant::now);
    let everything = run.may_do_everything(session);
    let permitted = run.publish_permitted;
    let prepared = match Prepared::prepare(hub, session, everything, permitted, publish, body_crc) {
        Ok(prepared) => prepared,
        Err(refusal) => return Answer::Refuse(request_id, refusal),
    };
    let now = run.now_us();
    let result = hub.publish_in_run(
        &session.caller,
        publish,
        prepared.body_crc,
        &mut run.channel,
        now,
    );
    prepared.settle(hub, result.is_ok());
    Answer::of(request_id, quiet, result, started)
}

/// What is left to send once a publish was served.
pub(crate) enum Answer {
    /// Nothing: a publish that wants no acknowledgement and waits for no sync.
    Nothing,
    Ack {
        request_id: u32,
        quiet: bool,
        published: Published,
        started: Instant,
    },
    /// An ERROR, logged as a refused request.
    Refuse(u32, Refusal),
    /// An ERROR for a request over a limit (logged at debug only, where it was found).
    OverLimit(u32, Refusal),
    /// What is left of the publishes of a batch, in order; never nested.
    Several(Vec<Answer>),
}

impl Answer {
    /// `started` is when the publish was read, if a clock was read for it; a quiet
    /// publish reads none unless it has an answer to wait for.
    fn of(
        request_id: u32,
        quiet: bool,
        result: Result<Published, Refusal>,
        started: Option<Instant>,
    ) -> Answer {
        match result {
            Ok(published) if quiet && !published.must_sync => Answer::Nothing,
            Ok(published) => Answer::Ack {
                request_id,
                quiet,
                published,
                started: started.unwrap_or_else(Instant::now),
            },
            Err(refusal) => Answer::Refuse(request_id, refusal),
        }
    }

    pub(crate) fn is_nothing(&self) -> bool {
        matches!(self, Answer::Nothing)
    }

    pub(crate) async fn send(self, hub: &Hub, session: &mut Session) {
        match self {
            Answer::Several(answers) => {
                for answer in answers {
                    answer.send_one(hub, session).await;
                }
            }
            one => one.send_one(hub, session).await,
        }
    }

    async fn send_one(self, hub: &Hub, session: &mut Session) {
        match self {
            // Not nested (see `publish_batch_at_once`).
            Answer::Nothing | Answer::Several(_) => {}
            Answer::Ack {
                request_id,
                quiet,
                published,
                started,
            } => acknowledge(hub, session, request_id, quiet, published, started).await,
            Answer::Refuse(request_id, refusal) => session.refuse(request_id, refusal).await,
            Answer::OverLimit(request_id, refusal) => {
                session
                    .reply(request_id, Packet::Error(refusal.to_packet()))
                    .await;
            }
        }
    }
}

/// A publish past its checks, with what it reserved: the channel it may create and the
/// hashtags it may add, settled once it was made or refused.
struct Prepared {
    creation: ImplicitChannel,
    new_tags: NewTags,
    /// The body's CRC32C, unless a hook rewrote the body.
    body_crc: Option<u32>,
}

impl Prepared {
    /// `everything`: whether the session may do everything, as its permissions say;
    /// `permitted`: whether its permission to publish there was checked already.
    fn prepare(
        hub: &Hub,
        session: &Session,
        everything: bool,
        permitted: bool,
        publish: &mut Publish,
        body_crc: Option<u32>,
    ) -> Result<Prepared, Refusal> {
        let body = (publish.body.as_ptr() as usize, publish.body.len());
        run_hooks_knowing(hub, session, everything || permitted, publish)?;
        // The same slice of the same (immutable) buffer is the same body; a hook that
        // rewrote it made the CRC stale.
        let unchanged = (publish.body.as_ptr() as usize, publish.body.len()) == body;
        let creation = super::channel::implicit_channel_knowing(hub, session, everything, publish)?;
        let new_tags = match publish.scope {
            Scope::Channel => NewTags::reserve(hub, session, &publish.content_type, &publish.body),
            _ => Ok(NewTags::reserve_none()),
        };
        match new_tags {
            Ok(new_tags) => Ok(Prepared {
                creation,
                new_tags,
                body_crc: body_crc.filter(|_| unchanged),
            }),
            Err(refusal) => {
                creation.settle(hub, false);
                Err(refusal)
            }
        }
    }

    /// Nothing was reserved: settling it does nothing whatever the outcome.
    fn reserves_nothing(&self) -> bool {
        self.creation.is_none() && self.new_tags.is_none()
    }

    fn settle(self, hub: &Hub, made: bool) {
        self.creation.settle(hub, made);
        if made {
            self.new_tags.made(hub);
        } else {
            self.new_tags.not_made();
        }
    }
}

/// A batched PUBLISH on a server outside a cluster, served as its publishes: body `k`
/// in order, as a publish without reply with request id `batch_request_id(id, k)`, each
/// through the session's limits, the hooks, history and routing like a PUBLISH of its
/// own. What is the same for every body is done once: the header block was decoded
/// once (by the caller, `publish` holding the whole content), the permission to publish
/// there is checked once, and the run's channel and time serve them all.
pub(crate) fn publish_batch_at_once(
    hub: &Hub,
    session: &Session,
    run: &mut PublishRun,
    request_id: u32,
    publish: &Publish,
) -> Answer {
    let mut answers = Vec::new();
    let bodies = BatchBodies::new(&publish.body);
    if !run.may_do_everything(session)
        && let Err(refusal) = permit_publish(hub, session, publish)
    {
        for (index, _) in bodies.enumerate() {
            let id = batch_request_id(request_id, index as u32);
            answers.push(Answer::Refuse(id, refusal.clone()));
        }
        return Answer::Several(answers);
    }
    run.publish_permitted = true;
    // The batch's fields are cloned once for all its bodies: the publish of one body is
    // the last one's with the body replaced (in place: a publish is large to move),
    // unless a hook may have rewritten it or the hub took it whole.
    let hooked = session.info.is_some();
    let mut one = body_of_batch(publish, Bytes::new());
    for (index, body) in bodies.enumerate() {
        let id = batch_request_id(request_id, index as u32);
        // A publish the hub took is left empty, its channel too.
        if hooked || one.channel.is_empty() || !one.channel.is_same(&publish.channel) {
            one = body_of_batch(publish, body);
        } else {
            one.body = body;
        }
        if let Some(limits) = &session.limits
            && let Err(refusal) = super::limits::admit_publish(hub, limits, &one)
        {
            debug!(target: log::ERROR, client_id = session.caller.client_id(), request_id = id, code = %refusal.code, reason = %refusal.message, "request refused by a limit");
            answers.push(Answer::OverLimit(id, refusal));
            continue;
        }
        // The body's CRC is not known (the frame's covers the whole batch): the
        // message's is computed as it is encoded.
        let answer = publish_at_once(hub, session, run, id, true, &mut one, None);
        if !answer.is_nothing() {
            answers.push(answer);
        }
    }
    run.publish_permitted = false;
    if answers.is_empty() {
        Answer::Nothing
    } else {
        Answer::Several(answers)
    }
}

/// [`publish_batch_at_once`] on a server in a cluster, where each publish may wait for
/// the backplane.
pub(crate) async fn publish_batch(
    hub: &Hub,
    session: &mut Session,
    request_id: u32,
    publish: Publish,
) {
    let bodies = BatchBodies::new(&publish.body);
    if !session.permissions.is_everything()
        && let Err(refusal) = permit_publish(hub, session, &publish)
    {
        for (index, _) in bodies.enumerate() {
            let id = batch_request_id(request_id, index as u32);
            session.refuse(id, refusal.clone()).await;
        }
        return;
    }
    for (index, body) in bodies.enumerate() {
        let id = batch_request_id(request_id, index as u32);
        let one = body_of_batch(&publish, body);
        if let Some(limits) = &session.limits
            && let Err(refusal) = super::limits::admit_publish(hub, limits, &one)
        {
            debug!(target: log::ERROR, client_id = session.caller.client_id(), request_id = id, code = %refusal.code, reason = %refusal.message, "request refused by a limit");
            session.reply(id, Packet::Error(refusal.to_packet())).await;
            continue;
        }
        self::publish(hub, session, id, true, one, None, true).await;
    }
}

/// One publish of a batch: the batch's header fields, with this body.
fn body_of_batch(batch: &Publish, body: Bytes) -> Publish {
    Publish {
        scope: batch.scope,
        channel: batch.channel.clone(),
        content_type: batch.content_type.clone(),
        // Not cloned when empty (most publishes): a clone costs a call even then.
        user_headers: if batch.user_headers.is_empty() {
            Vec::new()
        } else {
            batch.user_headers.clone()
        },
        body,
        stream: None,
    }
}

/// Checks that the session may publish there (or post to the group).
fn permit_publish(hub: &Hub, session: &Session, publish: &Publish) -> Result<(), Refusal> {
    let operation = match publish.scope {
        Scope::Group => Operation::PostToGroup,
        Scope::Channel | Scope::Tag => Operation::Publish,
    };
    session.permit(hub, operation, &publish.channel)
}

/// Checks that the session may publish there (or post to the group) and the header
/// names, then lets the embedding application reject or rewrite the publish.
pub(crate) fn run_hooks(
    hub: &Hub,
    session: &Session,
    publish: &mut Publish,
) -> Result<(), Refusal> {
    run_hooks_knowing(hub, session, session.permissions.is_everything(), publish)
}

/// [`run_hooks`] by a caller that knows whether the session may do everything (then no
/// permission needs looking up).
fn run_hooks_knowing(
    hub: &Hub,
    session: &Session,
    everything: bool,
    publish: &mut Publish,
) -> Result<(), Refusal> {
    if !everything {
        permit_publish(hub, session, publish)?;
    }
    for (name, _) in &publish.user_headers {
        subject::validate_header_name(name)
            .map_err(|error| Refusal::invalid(format!("header {error}")))?;
    }
    let Some(info) = session.info.as_deref() else {
        return Ok(());
    };
    match hub.hooks().on_publish(info, publish) {
        PublishVerdict::Accept => Ok(()),
        PublishVerdict::Reject(reason) => Err(Refusal::new(ErrorCode::Rejected, reason)),
    }
}

/// Answers a stored publish. With durability `always` the answer waits for the store's
/// sync, but the session does not: it hands the wait to its [`DurableAcks`] and reads on,
/// so that pipelined publishes of one connection share a sync (group commit). A
/// publisher that awaits each ack (nothing more read, no ack of its own waiting) has the
/// store sync on this thread when it is idle, and is answered at once: no wake-up of the
/// storage thread, and none back from it.
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
    if published.must_sync && !synced_here(hub, session).await {
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
            .get_or_insert_with(|| Box::new(DurableAcks::start(outbox, latency)));
        acks.unanswered.fetch_add(1, Ordering::Relaxed);
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

/// Whether the store synced everything so far on the session's thread, for a publish
/// that may be answered at once then: one whose client sent nothing more yet (a
/// pipelining client's publishes wait together for one sync) and whose answer cannot
/// pass an earlier one still waiting, on a runtime with another worker to serve the other
/// sessions meanwhile.
async fn synced_here(hub: &Hub, session: &Session) -> bool {
    let in_order = session
        .durable_acks
        .as_ref()
        .is_none_or(|acks| acks.unanswered.load(Ordering::Relaxed) == 0);
    if !in_order || session.more_read || !has_other_workers() || !hub.can_sync_storage_here() {
        // Asked for at once: the writer thread (woken if idle) syncs for everyone.
        return false;
    }
    // What this worker has queued runs first: a task it woke last cannot be taken by
    // another worker while this one is blocked in the sync.
    tokio::task::yield_now().await;
    // The other worker may be asleep without watching the sockets (only one worker
    // waits on them at a time): the sync hands this worker's place over first, or every
    // other session would wait for this one's disk.
    matches!(
        crate::storage::off_the_runtime(|| hub.sync_storage_here()),
        Some(Ok(()))
    )
}

/// Whether the runtime has workers besides the current one.
fn has_other_workers() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
        runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            && runtime.metrics().num_workers() > 1
    })
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
    /// Publishes queued and not yet answered (or found quiet).
    unanswered: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// Publishes that may wait for a sync at once per session (then the session waits too).
const MAX_WAITING: usize = 4096;

impl DurableAcks {
    fn start(outbox: Outbox, latency: Arc<LatencyHistogram>) -> DurableAcks {
        let (queue, mut waiting) = mpsc::channel::<Waiting>(MAX_WAITING);
        let unanswered = Arc::new(AtomicUsize::new(0));
        let answered = unanswered.clone();
        let task = tokio::spawn(async move {
            while let Some(next) = waiting.recv().await {
                let item = match next.synced.await {
                    Ok(()) if next.quiet => {
                        answered.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
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
                let sent = outbox.send(item).await;
                answered.fetch_sub(1, Ordering::Relaxed);
                if sent.is_err() {
                    return;
                }
            }
        });
        DurableAcks {
            queue,
            unanswered,
            task,
        }
    }

    /// Answers everything still waiting, within `limit`, before the session closes.
    pub(super) async fn finish(self, limit: Duration) {
        let DurableAcks {
            queue, mut task, ..
        } = self;
        drop(queue);
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}
