//! The dispatch task: reads every frame the server sends and hands it to whoever waits
//! for it.
//!
//! * A frame with a request id answers a request in the [`RequestTable`]: completes it,
//!   adds to it (MESSAGE frames of GET_MESSAGES) or feeds a subscription's replay.
//! * A frame with request id 0 is a push: a live MESSAGE fans out to the matching
//!   subscriptions (or to the group feed for group messages), DIRECT goes to the direct
//!   feed, EVENT to the group feed or the subscription it concerns, HEARTBEAT gets its
//!   PONG, and DISCONNECT ends the connection with the server's reason.
//!
//! * Streamed bodies: a MESSAGE with flag STREAM opens an inbound stream, and CHUNK and
//!   STREAM_ABORT frames go to it by stream id; see [`crate::inbound`] for how bodies
//!   reach their recipients and how they hold back the reader.
//!
//! The task also watches the server's liveness: when nothing at all arrives for three
//! heartbeat intervals, the connection is declared dead. Time spent waiting for a slow
//! local subscriber (or body reader) does not count against the server.
//!
//! [`RequestTable`]: crate::requests::RequestTable

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use switchboard_proto::packet::{Direct, Event, EventKind, Scope, SubscribeAck};
use switchboard_proto::{ErrorCode, Flags, Frame, FrameType, ProtoError};
use tokio::sync::{mpsc, oneshot};

use crate::message_queue;
use tokio::time::Instant;

use crate::connection::{FrameReader, disconnect_reason, error_from_frame};
use crate::error::{ClientError, CloseReason, ErrorDetail};
use crate::feeds::GroupItem;
use crate::inbound::InboundStreams;
use crate::payload::{NamesCache, ReceivedDirect, ReceivedMessage};
use crate::requests::{Pending, is_no_reply_id};
use crate::shared::Shared;
use crate::subscription::{EndReason, SubscriptionEntry};

/// What the connection does after a frame: read the next one, or end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterFrame {
    Continue,
    Close(CloseReason),
}

/// How many frames of a burst the dispatch task serves from its buffer between two
/// looks at the client's stop.
const FRAMES_BETWEEN_STOP_CHECKS: u32 = 32;

/// Reads frames until the connection ends, then ends it for everyone.
pub(crate) async fn run_reader(
    mut reader: FrameReader,
    mut dispatcher: Dispatcher,
    silence_limit: Duration,
) {
    let shared = dispatcher.shared.clone();
    let mut last_heard = Instant::now();
    // Frames were dispatched from the buffer since `last_heard` was last set.
    let mut heard = false;
    // Frames dispatched from the buffer since the stop was last looked at.
    let mut unchecked = 0u32;
    let reason = loop {
        // Frames already in the buffer are dispatched without arming the silence timer
        // and the shutdown select for each: a burst of small messages would pay more for
        // those than for the messages. The stop is looked at every few frames of a
        // burst (it takes a lock); the read from the socket below waits on it anyway.
        unchecked += 1;
        if unchecked >= FRAMES_BETWEEN_STOP_CHECKS {
            if shared.stop_tasks.is_cancelled() {
                break CloseReason::Client;
            }
            unchecked = 0;
        }
        let buffered = match reader.buffered_frame() {
            // Dispatch is almost always complete on its first poll: only then is the
            // shutdown future made at all. A dispatch waiting for a full subscription
            // still gives way to shutdown.
            Ok(Some(frame)) => {
                // Most frames of a burst are live messages served here, without a future.
                let Some(unfinished) = dispatcher.dispatch_at_once(frame) else {
                    heard = true;
                    continue;
                };
                let mut dispatch = std::pin::pin!(dispatcher.finish(unfinished));
                match futures::poll!(dispatch.as_mut()) {
                    Poll::Ready(flow) => Some(flow),
                    Poll::Pending => Some(tokio::select! {
                        biased;
                        flow = dispatch => flow,
                        () = shared.stop_tasks.cancelled() => break CloseReason::Client,
                    }),
                }
            }
            Ok(None) => None,
            Err(error) => Some(AfterFrame::Close(read_failure(&error))),
        };
        if let Some(flow) = buffered {
            match flow {
                AfterFrame::Continue => {
                    heard = true;
                    continue;
                }
                AfterFrame::Close(reason) => break reason,
            }
        }
        if heard {
            // Measured after dispatch, like below.
            last_heard = Instant::now();
            heard = false;
        }
        let step = async {
            let read = tokio::time::timeout_at(last_heard + silence_limit, reader.read_frame());
            match read.await {
                Err(_) => AfterFrame::Close(CloseReason::HeartbeatTimeout),
                Ok(Ok(Some(frame))) => match dispatcher.dispatch_at_once(frame) {
                    None => AfterFrame::Continue,
                    Some(unfinished) => dispatcher.finish(unfinished).await,
                },
                Ok(Ok(None)) => AfterFrame::Close(dispatcher.end_of_stream_reason()),
                Ok(Err(error)) => AfterFrame::Close(read_failure(&error)),
            }
        };
        let flow = tokio::select! {
            biased;
            () = shared.stop_tasks.cancelled() => break CloseReason::Client,
            flow = step => flow,
        };
        match flow {
            // Measured after dispatch, so a wait for a slow subscriber is not silence.
            AfterFrame::Continue => last_heard = Instant::now(),
            AfterFrame::Close(reason) => break reason,
        }
    };
    // Once this client said goodbye, the server hanging up (or saying goodbye back
    // before the writer has recorded the client's own close) is the expected end.
    let reason = match reason {
        CloseReason::Eof
        | CloseReason::Io(_)
        | CloseReason::Disconnect {
            code: ErrorCode::Normal,
            ..
        } if shared.goodbye_sent.is_cancelled() => CloseReason::Client,
        other => other,
    };
    dispatcher.end_streams(&reason);
    shared.terminate(reason);
}

/// Why reading from the socket ended the connection.
fn read_failure(error: &ClientError) -> CloseReason {
    match error.detail() {
        ErrorDetail::Io(error) => CloseReason::Io(error.to_string()),
        _ => CloseReason::Protocol(error.to_string()),
    }
}

/// What became of a live message offered to its single consumer.
enum SingleConsumer {
    /// Queued (or dropped with a consumer that is gone).
    Queued,
    /// The consumer's queue is full: wait for room outside the table's lock.
    Full(u64, message_queue::Sender<ReceivedMessage>, ReceivedMessage),
    /// Not the single-consumer case: the message, for the general way.
    NotSo(ReceivedMessage),
}

/// What is left of a frame [`Dispatcher::dispatch_at_once`] could not serve at once.
pub(crate) enum Unfinished {
    /// Not a live message: served the general way.
    Frame(Frame),
    /// A live message, decoded, for more than one subscription (or a streamed body).
    Live(ReceivedMessage),
    /// A live message whose one subscription's queue is full: it waits for room.
    Full(u64, message_queue::Sender<ReceivedMessage>, ReceivedMessage),
}

/// Routes frames; owned by the dispatch task.
pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
    /// The last ERROR that answered no request: the likely cause if the server then
    /// closes without a DISCONNECT.
    connection_error: Option<(ErrorCode, String)>,
    /// Streamed bodies still arriving.
    streams: InboundStreams,
    /// The subscriptions a live message goes to, kept to be reused for the next one.
    targets: Vec<(u64, message_queue::Sender<ReceivedMessage>)>,
    /// The last channel, sender and content type decoded, shared by the messages alike.
    names: NamesCache,
}

impl Dispatcher {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Dispatcher {
            shared,
            connection_error: None,
            streams: InboundStreams::default(),
            targets: Vec::new(),
            names: NamesCache::default(),
        }
    }

    /// Ends every body still arriving with an error: the connection is over.
    pub(crate) fn end_streams(&mut self, reason: &CloseReason) {
        self.streams.end_all(reason);
    }

    /// Why the connection ended when the server closed it between frames.
    pub(crate) fn end_of_stream_reason(&self) -> CloseReason {
        match &self.connection_error {
            Some((code, message)) => CloseReason::ServerError {
                code: *code,
                message: message.clone(),
            },
            None => CloseReason::Eof,
        }
    }

    /// Serves a live MESSAGE that needs no waiting, as [`Dispatcher::dispatch`] would,
    /// without building its future (most frames of a busy connection are these); hands
    /// back what is left of any other frame, for [`Dispatcher::finish`]. `None` once the
    /// frame was served.
    pub(crate) fn dispatch_at_once(&mut self, frame: Frame) -> Option<Unfinished> {
        if frame.frame_type != FrameType::Message || frame.request_id != 0 {
            return Some(Unfinished::Frame(frame));
        }
        let message = match ReceivedMessage::from_frame(frame, &mut self.names) {
            Ok(message) => message,
            Err(error) => {
                self.bad_frame(0, error);
                return None;
            }
        };
        if let Some(stream) = message.stream_start() {
            self.streams.open(stream.stream_id, stream.total_len);
        }
        if message.scope() == Scope::Group {
            let message = self.streams.recipient(message);
            self.shared.group_feed.push(GroupItem::Message(message));
            return None;
        }
        match self.deliver_to_single_consumer(message) {
            SingleConsumer::Queued => None,
            SingleConsumer::Full(subscription_id, sender, message) => {
                Some(Unfinished::Full(subscription_id, sender, message))
            }
            SingleConsumer::NotSo(message) => Some(Unfinished::Live(message)),
        }
    }

    /// Serves what [`Dispatcher::dispatch_at_once`] left.
    pub(crate) async fn finish(&mut self, unfinished: Unfinished) -> AfterFrame {
        match unfinished {
            Unfinished::Frame(frame) => return self.dispatch(frame).await,
            Unfinished::Live(message) => self.deliver_to_all(message).await,
            Unfinished::Full(subscription_id, sender, message) => {
                self.deliver(subscription_id, sender, message).await;
            }
        }
        AfterFrame::Continue
    }

    /// Handles one frame from the server.
    pub(crate) async fn dispatch(&mut self, frame: Frame) -> AfterFrame {
        match frame.frame_type {
            FrameType::Heartbeat => {
                if !frame.flags.contains(Flags::PONG) {
                    self.shared.owe_pong(frame.request_id);
                }
            }
            FrameType::Disconnect => return AfterFrame::Close(disconnect_reason(&frame)),
            FrameType::Error => self.on_error(&frame),
            FrameType::Message => self.on_message(frame).await,
            FrameType::Direct => self.on_direct(&frame),
            FrameType::Event => self.on_event(&frame),
            FrameType::SubscribeAck => self.on_subscribe_ack(&frame),
            FrameType::MessagesEnd => self.on_messages_end(&frame),
            FrameType::Chunk => self.streams.on_chunk(&self.shared, &frame).await,
            FrameType::StreamAbort => self.streams.on_abort(&frame),
            _ if frame.request_id == 0 => {
                tracing::warn!(frame = %frame.frame_type, "unexpected push from the server; ignored");
            }
            _ => self.on_reply(frame),
        }
        AfterFrame::Continue
    }

    fn on_error(&mut self, frame: &Frame) {
        let error = error_from_frame(frame);
        let request_id = frame.request_id;
        if request_id == 0 {
            tracing::warn!(%error, "server reported an error");
            if let ErrorDetail::Server { code, message } = error.detail() {
                self.connection_error = Some((*code, message.clone()));
            }
        } else if is_no_reply_id(request_id) {
            self.shared.record_no_reply_failure(error);
        } else {
            let pending = self.shared.requests().take(request_id);
            match pending {
                Some(pending) => pending.fail(error),
                None => tracing::debug!(request_id, %error, "ERROR for a request nobody awaits"),
            }
        }
    }

    /// A terminal answer of some other type: handed to the caller, who checks its type.
    fn on_reply(&mut self, frame: Frame) {
        let request_id = frame.request_id;
        let pending = self.shared.requests().take(request_id);
        match pending {
            Some(Pending::Reply(done)) => {
                let _ = done.send(Ok(frame));
            }
            Some(Pending::Ignored) => {}
            Some(Pending::Replaying {
                subscription_id,
                remaining,
            }) => {
                tracing::warn!(request_id, frame = %frame.frame_type, "unexpected frame during a replay");
                self.shared.requests().restore(
                    request_id,
                    Pending::Replaying {
                        subscription_id,
                        remaining,
                    },
                );
            }
            Some(other) => other.fail(
                ErrorDetail::UnexpectedReply {
                    expected: "the request's own answer",
                    got: frame.frame_type,
                }
                .into(),
            ),
            None => {
                tracing::debug!(request_id, frame = %frame.frame_type, "answer to a request nobody awaits");
            }
        }
    }

    fn on_subscribe_ack(&mut self, frame: &Frame) {
        let request_id = frame.request_id;
        let pending = self.shared.requests().take(request_id);
        let ack = match SubscribeAck::from_frame(frame) {
            Ok(ack) => ack,
            Err(error) => {
                if let Some(pending) = pending {
                    pending.fail(error.into());
                }
                return;
            }
        };
        let subscription = match pending {
            Some(Pending::Subscribe(subscription)) => subscription,
            Some(other) => {
                other.fail(
                    ErrorDetail::UnexpectedReply {
                        expected: "the request's own answer",
                        got: FrameType::SubscribeAck,
                    }
                    .into(),
                );
                return;
            }
            None => {
                // The caller gave up waiting: the server holds a subscription nobody reads.
                self.shared.schedule_unsubscribe(ack.subscription_id);
                return;
            }
        };
        let entry = SubscriptionEntry {
            pattern: subscription.pattern,
            sender: subscription.sender,
            state: subscription.state,
        };
        let inserted = self
            .shared
            .subscriptions()
            .insert(ack.subscription_id, entry);
        if inserted.is_err() {
            let _ = subscription.done.send(Err(self.shared.closed_error()));
            return;
        }
        if ack.replay_count > 0 {
            self.shared.requests().restore(
                request_id,
                Pending::Replaying {
                    subscription_id: ack.subscription_id,
                    remaining: ack.replay_count,
                },
            );
        }
        if subscription.done.send(Ok(ack)).is_err() {
            self.shared.forget(request_id);
            self.shared.drop_subscription(ack.subscription_id);
        }
    }

    fn on_messages_end(&mut self, frame: &Frame) {
        let request_id = frame.request_id;
        let pending = self.shared.requests().take(request_id);
        match pending {
            Some(Pending::Collect { messages, done }) => {
                let _ = done.send(Ok(messages));
            }
            Some(other) => other.fail(
                ErrorDetail::UnexpectedReply {
                    expected: "the request's own answer",
                    got: FrameType::MessagesEnd,
                }
                .into(),
            ),
            None => tracing::debug!(request_id, "MESSAGES_END for a request nobody awaits"),
        }
    }

    async fn on_message(&mut self, frame: Frame) {
        let request_id = frame.request_id;
        if request_id == 0 {
            // A live message: the frame itself becomes the message.
            if let Some(message) = self.received(frame, request_id) {
                self.deliver_live(message).await;
            }
            return;
        }
        // A copy of the frame (two counts): a reply may hand the frame itself over.
        let Some(message) = self.received(frame.clone(), request_id) else {
            return;
        };
        let stream_id = message.stream_start().map(|stream| stream.stream_id);
        let message = self.streams.recipient(message);

        // Decide under the lock, deliver after it.
        enum Target {
            Reply(oneshot::Sender<crate::Result<Frame>>),
            Message(oneshot::Sender<crate::Result<ReceivedMessage>>),
            Subscription(u64),
            Nobody,
        }
        let target = {
            let mut requests = self.shared.requests();
            match requests.get_mut(request_id) {
                Some(Pending::Collect { messages, .. }) => {
                    messages.push(message);
                    drop(requests);
                    if let Some(stream_id) = stream_id {
                        self.streams.collected_by(stream_id, request_id);
                    }
                    return;
                }
                Some(Pending::Replaying {
                    subscription_id,
                    remaining,
                }) => {
                    let subscription_id = *subscription_id;
                    *remaining = remaining.saturating_sub(1);
                    if *remaining == 0 {
                        requests.take(request_id);
                    }
                    Target::Subscription(subscription_id)
                }
                Some(Pending::Message(_)) => match requests.take(request_id) {
                    Some(Pending::Message(done)) => Target::Message(done),
                    _ => Target::Nobody,
                },
                Some(Pending::Reply(_)) => match requests.take(request_id) {
                    Some(Pending::Reply(done)) => Target::Reply(done),
                    _ => Target::Nobody,
                },
                Some(_) | None => Target::Nobody,
            }
        };
        match target {
            Target::Message(done) => {
                let _ = done.send(Ok(message));
            }
            Target::Reply(done) => {
                let _ = done.send(Ok(frame));
            }
            Target::Nobody => {
                tracing::debug!(request_id, "MESSAGE for a request nobody awaits");
            }
            Target::Subscription(subscription_id) => {
                let sender = self.shared.subscriptions().sender(subscription_id);
                if let Some(sender) = sender {
                    self.deliver(subscription_id, sender, message).await;
                }
            }
        }
    }

    /// The message of a MESSAGE frame, its streamed body's stream opened; a frame that
    /// does not decode fails its request instead.
    fn received(&mut self, frame: Frame, request_id: u32) -> Option<ReceivedMessage> {
        match ReceivedMessage::from_frame(frame, &mut self.names) {
            Ok(message) => {
                if let Some(stream) = message.stream_start() {
                    self.streams.open(stream.stream_id, stream.total_len);
                }
                Some(message)
            }
            Err(error) => {
                self.bad_frame(request_id, error);
                None
            }
        }
    }

    /// A frame that could not be decoded fails the request it answers; a push is dropped.
    fn bad_frame(&mut self, request_id: u32, error: ProtoError) {
        tracing::warn!(request_id, %error, "undecodable frame from the server");
        if request_id != 0 && !is_no_reply_id(request_id) {
            let pending = self.shared.requests().take(request_id);
            if let Some(pending) = pending {
                pending.fail(error.into());
            }
        }
    }

    async fn deliver_live(&mut self, message: ReceivedMessage) {
        if message.scope() == Scope::Group {
            let message = self.streams.recipient(message);
            self.shared.group_feed.push(GroupItem::Message(message));
            return;
        }
        let message = match self.deliver_to_single_consumer(message) {
            SingleConsumer::Queued => return,
            SingleConsumer::Full(subscription_id, sender, message) => {
                return self.deliver(subscription_id, sender, message).await;
            }
            SingleConsumer::NotSo(message) => message,
        };
        self.deliver_to_all(message).await;
    }

    /// Delivers a live message to every subscription it matches.
    async fn deliver_to_all(&mut self, message: ReceivedMessage) {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        self.shared
            .subscriptions()
            .matching_into(&message, &mut targets);
        let last = targets.pop();
        for (subscription_id, sender) in targets.drain(..) {
            let copy = self.streams.recipient(message.clone());
            self.deliver(subscription_id, sender, copy).await;
        }
        self.targets = targets;
        if let Some((last_id, last_sender)) = last {
            let message = self.streams.recipient(message);
            self.deliver(last_id, last_sender, message).await;
        }
    }

    /// The common case of a live message: one subscription matches, its queue has room,
    /// and the body is whole. The message is queued under the table's lock (no await
    /// there), without cloning the queue's sender.
    fn deliver_to_single_consumer(&mut self, message: ReceivedMessage) -> SingleConsumer {
        if message.is_streamed() {
            return SingleConsumer::NotSo(message);
        }
        let mut table = self.shared.subscriptions();
        let Some((subscription_id, sender)) = table.single_match(&message) else {
            return SingleConsumer::NotSo(message);
        };
        match sender.try_send(message) {
            Ok(()) => SingleConsumer::Queued,
            Err(mpsc::error::TrySendError::Full(message)) => {
                SingleConsumer::Full(subscription_id, sender.clone(), message)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                drop(table);
                self.shared.drop_subscription(subscription_id);
                SingleConsumer::Queued
            }
        }
    }

    /// Waits for room in a subscription's queue; see the backpressure note in
    /// [`crate::subscription`].
    async fn deliver(
        &mut self,
        subscription_id: u64,
        sender: message_queue::Sender<ReceivedMessage>,
        message: ReceivedMessage,
    ) {
        // Room is the rule; only a full queue costs a wait.
        let delivered = match sender.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(message)) => sender.send(message).await.is_ok(),
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !delivered {
            self.shared.drop_subscription(subscription_id);
        }
    }

    fn on_direct(&mut self, frame: &Frame) {
        match Direct::from_frame(frame) {
            Ok(direct) => self.shared.direct_feed.push(ReceivedDirect::new(direct)),
            Err(error) => tracing::warn!(%error, "undecodable DIRECT dropped"),
        }
    }

    fn on_event(&mut self, frame: &Frame) {
        let event = match Event::from_frame(frame) {
            Ok(event) => event,
            Err(error) => return tracing::warn!(%error, "undecodable EVENT dropped"),
        };
        match event.kind {
            EventKind::MemberJoined | EventKind::MemberLeft | EventKind::GroupDeleted => {
                self.shared.group_feed.push(GroupItem::Event(event));
            }
            EventKind::ChannelDeleted => {
                // Consumers with a pattern naming the channel exactly end, and every one
                // of their patterns is unsubscribed: the server keeps routes by name, and
                // a channel created again under it would feed them otherwise. Wildcard
                // and hashtag consumers go on.
                let channel = event.channel.to_string();
                let ended = {
                    let mut table = self.shared.subscriptions();
                    let mut ended = Vec::new();
                    for subscription_id in table.exact_on(&channel) {
                        if let Some(entry) = table.remove(subscription_id) {
                            entry.state.end(EndReason::ChannelDeleted {
                                channel: channel.clone(),
                            });
                            ended.push(subscription_id);
                            ended.extend(table.remove_siblings(&entry.state));
                        }
                    }
                    ended
                };
                for subscription_id in ended {
                    self.shared.schedule_unsubscribe(subscription_id);
                }
            }
            EventKind::Skipped => {
                tracing::debug!(
                    count = event.count,
                    "server skipped messages for this client"
                );
                self.shared.add_skipped(event.count);
                if event.subscription_id != 0 {
                    let state = self.shared.subscriptions().state(event.subscription_id);
                    if let Some(state) = state {
                        state.add_skipped(event.count);
                    }
                }
                if event.scope == Scope::Group {
                    self.shared.group_feed.push(GroupItem::Event(event));
                }
            }
            // A subscription the policy no longer allows ends like one the server closed,
            // with a reason of its own so the caller can tell the two apart.
            EventKind::SubscriptionClosed | EventKind::SubscriptionRevoked => {
                // A consumer of several patterns ends as a whole: the rest of its
                // patterns are cancelled too.
                let subscription_id = event.subscription_id;
                let reason = if event.kind == EventKind::SubscriptionRevoked {
                    EndReason::Revoked {
                        subscription_id,
                        pattern: event.channel.to_string(),
                    }
                } else {
                    EndReason::ClosedByServer { subscription_id }
                };
                let siblings = {
                    let mut table = self.shared.subscriptions();
                    let removed = table.remove(subscription_id);
                    removed.map(|entry| {
                        entry.state.end(reason);
                        table.remove_siblings(&entry.state)
                    })
                };
                for sibling in siblings.unwrap_or_default() {
                    self.shared.schedule_unsubscribe(sibling);
                }
            }
            // A channel's history began a new epoch on a cluster: messages may be
            // missing between the last one seen and the first of the new epoch.
            EventKind::EpochChanged => {
                tracing::warn!(
                    channel = %event.channel,
                    first_seq = event.count,
                    "history began a new epoch; messages may be missing"
                );
                self.shared.note_epoch_change(&event);
                if event.scope == Scope::Group {
                    self.shared.group_feed.push(GroupItem::Event(event));
                }
            }
            EventKind::Other(kind) => {
                if event.scope == Scope::Group {
                    self.shared.group_feed.push(GroupItem::Event(event));
                } else {
                    tracing::debug!(kind, "unknown event kind ignored");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use bytes::BytesMut;
    use sha2::{Digest, Sha256};
    use switchboard_proto::packet::{
        Chunk, DIGEST_LEN, Disconnect, Encode, ErrorPacket, Heartbeat, MessagesEnd, PublishAck,
        StreamAbort, StreamStart,
    };
    use switchboard_proto::subject::Pattern;
    use switchboard_proto::{FrameCodec, Limits};
    use tokio::io::AsyncReadExt;
    use tokio::sync::oneshot;
    use tokio_util::codec::Decoder;
    use uuid::Uuid;

    use super::*;
    use crate::body;
    use crate::requests::PendingSubscription;
    use crate::subscription::{SubscriptionEntry, SubscriptionState};
    use switchboard_proto::packet::Message;

    /// A frame as the server would send it, through the real codec.
    fn frame<P: Encode>(request_id: u32, flags: Flags, packet: &P) -> Frame {
        let mut codec = FrameCodec::new(Limits::default());
        let mut buffer = BytesMut::new();
        codec
            .encode_packet(request_id, flags, packet, &mut buffer)
            .unwrap();
        codec.decode(&mut buffer).unwrap().unwrap()
    }

    fn message(channel: &str, seq: u64, body: &str) -> Message {
        Message {
            channel: channel.into(),
            id: Uuid::now_v7(),
            seq,
            content_type: "text/plain".into(),
            body: body.to_owned().into(),
            ..Message::default()
        }
    }

    struct Fixture {
        shared: Arc<Shared>,
        dispatcher: Dispatcher,
    }

    impl Fixture {
        fn new() -> Self {
            let shared = Arc::new(Shared::new(8));
            Fixture {
                dispatcher: Dispatcher::new(shared.clone()),
                shared,
            }
        }

        /// Registers a SUBSCRIBE and acknowledges it as subscription `id`.
        async fn subscribe(
            &mut self,
            id: u64,
            pattern: &str,
            replay_count: u64,
        ) -> (u32, message_queue::Receiver<ReceivedMessage>) {
            let (sender, receiver) = message_queue::channel(16);
            let (done, answer) = oneshot::channel();
            let request_id = self
                .shared
                .register(Pending::Subscribe(PendingSubscription {
                    pattern: Pattern::parse(pattern).unwrap(),
                    sender,
                    state: Arc::new(SubscriptionState::default()),
                    done,
                }))
                .unwrap();
            let ack = SubscribeAck {
                subscription_id: id,
                replay_count,
            };
            let flow = self
                .dispatcher
                .dispatch(frame(request_id, Flags::empty(), &ack))
                .await;
            assert_eq!(flow, AfterFrame::Continue);
            assert_eq!(answer.await.unwrap().unwrap(), ack);
            (request_id, receiver)
        }
    }

    fn drain(receiver: &mut message_queue::Receiver<ReceivedMessage>) -> Vec<(u64, bool)> {
        let mut seen = Vec::new();
        while let Ok(message) = receiver.try_recv() {
            seen.push((message.seq(), message.is_replay()));
        }
        seen
    }

    #[tokio::test]
    async fn live_and_replayed_messages_reach_the_right_subscriptions() {
        let mut fixture = Fixture::new();
        let (replaying_request, mut exact) = fixture.subscribe(1, "chat.rust", 2).await;
        let (_, mut wildcard) = fixture.subscribe(2, "chat.*", 0).await;
        let (_, mut tag) = fixture.subscribe(3, "#tokio", 0).await;
        let (_, mut other) = fixture.subscribe(4, "news", 0).await;

        let replayed = message("chat.rust", 1, "old");
        fixture
            .dispatcher
            .dispatch(frame(replaying_request, Flags::REPLAY, &replayed))
            .await;
        let live = message("chat.rust", 5, "live #tokio");
        fixture
            .dispatcher
            .dispatch(frame(0, Flags::empty(), &live))
            .await;
        let replayed = message("chat.rust", 2, "old");
        fixture
            .dispatcher
            .dispatch(frame(replaying_request, Flags::REPLAY, &replayed))
            .await;

        assert_eq!(drain(&mut exact), [(1, true), (5, false), (2, true)]);
        assert_eq!(drain(&mut wildcard), [(5, false)]);
        assert_eq!(drain(&mut tag), [(5, false)]);
        assert_eq!(drain(&mut other), []);
        // The replay is complete, so its request id is free again.
        assert_eq!(fixture.shared.requests().len(), 0);
    }

    #[tokio::test]
    async fn replies_errors_and_collections_find_their_requests() {
        let mut fixture = Fixture::new();
        let (done, publish_answer) = oneshot::channel();
        let publish_id = fixture.shared.register(Pending::Reply(done)).unwrap();
        let (done, error_answer) = oneshot::channel();
        let error_id = fixture.shared.register(Pending::Reply(done)).unwrap();
        let (done, collected) = oneshot::channel();
        let collect_id = fixture
            .shared
            .register(Pending::Collect {
                messages: Vec::new(),
                done,
            })
            .unwrap();

        let dispatcher = &mut fixture.dispatcher;
        for seq in 1..=2 {
            let history = message("chat", seq, "old");
            dispatcher
                .dispatch(frame(collect_id, Flags::REPLAY, &history))
                .await;
        }
        let refusal = ErrorPacket::new(ErrorCode::NotFound, "no such channel");
        dispatcher
            .dispatch(frame(error_id, Flags::empty(), &refusal))
            .await;
        let ack = PublishAck {
            id: Uuid::now_v7(),
            seq: 42,
        };
        dispatcher
            .dispatch(frame(publish_id, Flags::empty(), &ack))
            .await;
        let end = MessagesEnd {
            count: 2,
            last_seq: 2,
        };
        dispatcher
            .dispatch(frame(collect_id, Flags::empty(), &end))
            .await;

        let reply = publish_answer.await.unwrap().unwrap();
        assert_eq!(PublishAck::from_frame(&reply).unwrap(), ack);
        assert!(matches!(
            error_answer
                .await
                .unwrap()
                .as_ref()
                .map_err(ClientError::detail),
            Err(ErrorDetail::Server {
                code: ErrorCode::NotFound,
                ..
            })
        ));
        let messages = collected.await.unwrap().unwrap();
        assert_eq!(
            messages
                .iter()
                .map(ReceivedMessage::seq)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(messages.iter().all(ReceivedMessage::is_replay));
    }

    #[tokio::test]
    async fn pushes_go_to_feeds_and_pings_get_pongs() {
        let mut fixture = Fixture::new();
        let dispatcher = &mut fixture.dispatcher;
        let mut group_message = message("team", 1, "hello team");
        group_message.scope = Scope::Group;
        dispatcher
            .dispatch(frame(0, Flags::empty(), &group_message))
            .await;
        let mut joined = Event::new(EventKind::MemberJoined);
        joined.scope = Scope::Group;
        joined.channel = "team".into();
        joined.subject = "bob".into();
        dispatcher.dispatch(frame(0, Flags::empty(), &joined)).await;
        let direct = Direct {
            sender_id: 9,
            body: "psst".into(),
            ..Direct::default()
        };
        dispatcher.dispatch(frame(0, Flags::empty(), &direct)).await;
        // A PONG answers our own ping and needs nothing.
        dispatcher.dispatch(frame(0, Flags::PONG, &Heartbeat)).await;
        assert_eq!(fixture.shared.take_chores().pong, None);
        dispatcher
            .dispatch(frame(17, Flags::empty(), &Heartbeat))
            .await;
        assert_eq!(fixture.shared.take_chores().pong, Some(17));

        assert_eq!(fixture.shared.group_feed.len(), 2);
        assert_eq!(fixture.shared.direct_feed.len(), 1);
    }

    #[tokio::test]
    async fn server_closing_a_subscription_ends_its_stream() {
        let mut fixture = Fixture::new();
        let (_, mut receiver) = fixture.subscribe(7, "chat", 0).await;
        let mut closed = Event::new(EventKind::SubscriptionClosed);
        closed.subscription_id = 7;
        fixture
            .dispatcher
            .dispatch(frame(0, Flags::empty(), &closed))
            .await;
        assert!(receiver.recv().await.is_none());
        assert_eq!(fixture.shared.subscriptions().len(), 0);
    }

    #[tokio::test]
    async fn the_patterns_of_one_consumer_get_a_message_once_and_end_together() {
        let mut fixture = Fixture::new();
        let (sender, mut receiver) = message_queue::channel(16);
        let state = Arc::new(SubscriptionState::default());
        for (id, pattern) in [(1, "chat.>"), (2, "#rust")] {
            let entry = SubscriptionEntry {
                pattern: Pattern::parse(pattern).unwrap(),
                sender: sender.clone(),
                state: state.clone(),
            };
            assert!(fixture.shared.subscriptions().insert(id, entry).is_ok());
        }
        drop(sender);
        let (_, mut separate) = fixture.subscribe(3, "#rust", 0).await;
        let dispatcher = &mut fixture.dispatcher;
        dispatcher
            .dispatch(frame(
                0,
                Flags::empty(),
                &message("chat.general", 1, "likes #Rust"),
            ))
            .await;
        assert_eq!(drain(&mut receiver), [(1, false)]);
        assert_eq!(drain(&mut separate), [(1, false)]);

        // The server ends one pattern: the consumer ends, its other pattern is cancelled.
        let mut closed = Event::new(EventKind::SubscriptionClosed);
        closed.subscription_id = 2;
        dispatcher.dispatch(frame(0, Flags::empty(), &closed)).await;
        assert!(receiver.recv().await.is_none());
        assert_eq!(fixture.shared.subscriptions().len(), 1);
        assert_eq!(fixture.shared.take_chores().unsubscribe, [1]);
    }

    #[tokio::test]
    async fn a_deleted_channel_ends_only_the_subscriptions_naming_it_and_unsubscribes_them() {
        let mut fixture = Fixture::new();
        let (_, mut exact) = fixture.subscribe(1, "news", 0).await;
        let (_, mut other) = fixture.subscribe(2, "sports", 0).await;
        let (_, mut wildcard) = fixture.subscribe(3, "*", 0).await;
        let mut deleted = Event::new(EventKind::ChannelDeleted);
        deleted.channel = "news".into();
        fixture
            .dispatcher
            .dispatch(frame(0, Flags::empty(), &deleted))
            .await;
        assert!(exact.recv().await.is_none());
        assert_eq!(fixture.shared.subscriptions().len(), 2);
        assert_eq!(fixture.shared.take_chores().unsubscribe, [1]);
        // The others go on: the wildcard follows a channel created again under the name.
        for channel in ["sports", "news"] {
            fixture
                .dispatcher
                .dispatch(frame(0, Flags::empty(), &message(channel, 1, "on")))
                .await;
        }
        assert_eq!(drain(&mut other), [(1, false)]);
        assert_eq!(drain(&mut wildcard), [(1, false), (1, false)]);
    }

    #[tokio::test]
    async fn disconnect_ends_the_connection_with_its_reason() {
        let mut fixture = Fixture::new();
        let goodbye = Disconnect::new(ErrorCode::ShuttingDown, "maintenance");
        let flow = fixture
            .dispatcher
            .dispatch(frame(0, Flags::empty(), &goodbye))
            .await;
        assert_eq!(
            flow,
            AfterFrame::Close(CloseReason::Disconnect {
                code: ErrorCode::ShuttingDown,
                reason: "maintenance".into()
            })
        );
    }

    #[tokio::test]
    async fn a_dropped_receiver_unsubscribes() {
        let mut fixture = Fixture::new();
        let (_, receiver) = fixture.subscribe(3, "chat", 0).await;
        drop(receiver);
        fixture
            .dispatcher
            .dispatch(frame(0, Flags::empty(), &message("chat", 1, "x")))
            .await;
        assert_eq!(fixture.shared.subscriptions().len(), 0);
        assert_eq!(fixture.shared.take_chores().unsubscribe, [3]);
    }

    /// A MESSAGE opening stream `stream_id` for a body of `total_len` bytes.
    fn streamed(channel: &str, seq: u64, stream_id: u64, total_len: u64) -> Message {
        Message {
            stream: Some(StreamStart {
                stream_id,
                total_len,
            }),
            body: Bytes::new(),
            ..message(channel, seq, "")
        }
    }

    fn sha256(body: &[u8]) -> [u8; DIGEST_LEN] {
        Sha256::digest(body).into()
    }

    fn chunk(stream_id: u64, data: &[u8], digest: Option<[u8; DIGEST_LEN]>) -> Chunk {
        Chunk {
            stream_id,
            data: Bytes::copy_from_slice(data),
            digest,
        }
    }

    async fn read_body(message: ReceivedMessage) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        message.body_reader().read_to_end(&mut body).await?;
        Ok(body)
    }

    #[tokio::test]
    async fn chunks_reach_every_recipient_between_other_frames() {
        let mut fixture = Fixture::new();
        let (_, mut exact) = fixture.subscribe(1, "files.big", 0).await;
        let (_, mut wildcard) = fixture.subscribe(2, "files.*", 0).await;
        let (_, mut other) = fixture.subscribe(3, "chat", 0).await;
        let dispatcher = &mut fixture.dispatcher;
        let body = b"first part|second part|third";
        dispatcher
            .dispatch(frame(0, Flags::empty(), &streamed("files.big", 1, 5, 28)))
            .await;
        dispatcher
            .dispatch(frame(0, Flags::empty(), &chunk(5, &body[..11], None)))
            .await;
        // Other frames, and another stream, between the chunks.
        dispatcher
            .dispatch(frame(0, Flags::empty(), &message("chat", 1, "hi")))
            .await;
        dispatcher
            .dispatch(frame(0, Flags::empty(), &streamed("chat", 2, 6, 3)))
            .await;
        dispatcher
            .dispatch(frame(0, Flags::empty(), &chunk(5, &body[11..23], None)))
            .await;
        dispatcher
            .dispatch(frame(
                0,
                Flags::empty(),
                &chunk(6, b"abc", Some(sha256(b"abc"))),
            ))
            .await;
        dispatcher
            .dispatch(frame(
                0,
                Flags::empty(),
                &chunk(5, &body[23..], Some(sha256(body))),
            ))
            .await;
        assert!(dispatcher.streams.len() == 0, "both streams are closed");

        for receiver in [&mut exact, &mut wildcard] {
            let message = receiver.try_recv().unwrap();
            assert!(message.is_streamed());
            assert_eq!(message.body_len(), 28);
            assert_eq!(read_body(message).await.unwrap(), body);
        }
        assert_eq!(other.try_recv().unwrap().text(), Some("hi"));
        assert_eq!(read_body(other.try_recv().unwrap()).await.unwrap(), b"abc");
    }

    #[tokio::test]
    async fn dropped_bodies_are_discarded_and_unknown_streams_ignored() {
        let mut fixture = Fixture::new();
        let (_, mut files) = fixture.subscribe(1, "files", 0).await;
        let dispatcher = &mut fixture.dispatcher;
        let total = 3 * body::BODY_BUFFER_BYTES;
        dispatcher
            .dispatch(frame(
                0,
                Flags::empty(),
                &streamed("files", 1, 9, total as u64),
            ))
            .await;
        drop(files.try_recv().unwrap());
        // Far more than the buffer, and nobody reads: it must not wait.
        let piece = vec![0u8; 1024 * 1024];
        let sending = async {
            for _ in 0..(total / piece.len()) {
                dispatcher
                    .dispatch(frame(0, Flags::empty(), &chunk(9, &piece, None)))
                    .await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), sending)
            .await
            .expect("chunks of a dropped body are discarded without waiting");
        dispatcher
            .dispatch(frame(0, Flags::empty(), &chunk(77, b"stray", None)))
            .await;
        assert_eq!(dispatcher.streams.len(), 1, "stream 9 is still open");
        dispatcher
            .dispatch(frame(
                0,
                Flags::empty(),
                &chunk(9, b"", Some([0; DIGEST_LEN])),
            ))
            .await;
        assert!(dispatcher.streams.len() == 0);
    }

    #[tokio::test]
    async fn aborts_and_the_connection_end_fail_the_bodies() {
        let mut fixture = Fixture::new();
        let (_, mut files) = fixture.subscribe(1, "files", 0).await;
        let dispatcher = &mut fixture.dispatcher;
        for (seq, stream_id) in [(1, 3), (2, 4)] {
            dispatcher
                .dispatch(frame(
                    0,
                    Flags::empty(),
                    &streamed("files", seq, stream_id, 10),
                ))
                .await;
            dispatcher
                .dispatch(frame(0, Flags::empty(), &chunk(stream_id, b"abc", None)))
                .await;
        }
        let abort = StreamAbort {
            stream_id: 3,
            code: ErrorCode::Internal,
            reason: "disk on fire".into(),
        };
        dispatcher.dispatch(frame(0, Flags::empty(), &abort)).await;
        dispatcher.end_streams(&CloseReason::Eof);

        let error = read_body(files.try_recv().unwrap()).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionAborted);
        assert!(error.to_string().contains("disk on fire"), "{error}");
        let error = read_body(files.try_recv().unwrap()).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionAborted);
        assert!(error.to_string().contains("connection ended"), "{error}");
    }

    #[tokio::test]
    async fn fetched_bodies_outlive_their_request() {
        let mut fixture = Fixture::new();
        let (done, answer) = oneshot::channel();
        let get_id = fixture.shared.register(Pending::Message(done)).unwrap();
        let (done, collected) = oneshot::channel();
        let collect_id = fixture
            .shared
            .register(Pending::Collect {
                messages: Vec::new(),
                done,
            })
            .unwrap();
        let dispatcher = &mut fixture.dispatcher;
        dispatcher
            .dispatch(frame(get_id, Flags::REPLAY, &streamed("files", 1, 1, 4)))
            .await;
        dispatcher
            .dispatch(frame(
                collect_id,
                Flags::REPLAY,
                &streamed("files", 1, 2, 4),
            ))
            .await;
        let end = MessagesEnd {
            count: 1,
            last_seq: 1,
        };
        dispatcher
            .dispatch(frame(collect_id, Flags::empty(), &end))
            .await;
        // The chunks come after the answers.
        for stream_id in [1, 2] {
            dispatcher
                .dispatch(frame(
                    get_id,
                    Flags::empty(),
                    &chunk(stream_id, b"data", Some(sha256(b"data"))),
                ))
                .await;
        }
        let single = answer.await.unwrap().unwrap();
        assert!(single.is_replay());
        assert_eq!(read_body(single).await.unwrap(), b"data");
        let mut list = collected.await.unwrap().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(read_body(list.remove(0)).await.unwrap(), b"data");
    }

    #[tokio::test]
    async fn a_list_fails_rather_than_stall_on_a_body_it_cannot_hand_over() {
        let mut fixture = Fixture::new();
        let (done, collected) = oneshot::channel();
        let collect_id = fixture
            .shared
            .register(Pending::Collect {
                messages: Vec::new(),
                done,
            })
            .unwrap();
        let dispatcher = &mut fixture.dispatcher;
        let total = 2 * body::BODY_BUFFER_BYTES;
        dispatcher
            .dispatch(frame(
                collect_id,
                Flags::REPLAY,
                &streamed("files", 1, 1, total as u64),
            ))
            .await;
        let piece = vec![0u8; 1024 * 1024];
        let sending = async {
            for _ in 0..(total / piece.len()) {
                dispatcher
                    .dispatch(frame(collect_id, Flags::empty(), &chunk(1, &piece, None)))
                    .await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), sending)
            .await
            .expect("the dispatcher does not wait for a body nobody can read");
        assert!(matches!(
            collected.await.unwrap().as_ref().map_err(ClientError::detail),
            Err(ErrorDetail::StreamedBodyBeforeEnd { total_len }) if *total_len == total as u64
        ));
    }
}
