//! Publishing: [`Client::publish`] to a channel and [`Client::post`] to a group, both
//! through one builder, [`PublishBuilder`], whose way of being sent says how the ack is
//! handled: awaited, pipelined, or not asked for. Also [`Client::flush`], which reports
//! what failed among publishes sent without reply.
//!
//! The builder is a plain struct: building it and sending a publish that fits in one
//! frame allocates nothing beyond the frame's own parts, and a publish without reply that
//! finds room in the queue reads no clock and arms no timer.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use switchboard_proto::codec::Outbound;
use switchboard_proto::packet::{Publish, PublishAck, PublishRef, Scope};
use switchboard_proto::{Flags, FrameType, Text};
use tokio::io::AsyncRead;

use crate::client::{Client, expect};
use crate::error::{ClientError, ErrorDetail, Result};
use crate::payload::Payload;
use crate::requests::Pending;
use crate::shared::lock;
use crate::upload::UploadHead;
use crate::writer::{Command, TryQueue, try_queue_no_reply};

/// A progress callback: told the bytes of a streamed body handed to the connection so
/// far, after each chunk.
type Progress = Box<dyn FnMut(u64) + Send + 'static>;

/// A body read from a reader rather than held in memory.
struct ReaderBody<'a> {
    reader: Box<dyn AsyncRead + Unpin + Send + 'a>,
    len: u64,
}

/// A publish being set up: returned by [`Client::publish`] (to a channel) and
/// [`Client::post`] (to a group). Options are chained, then the publish is sent in one
/// of three ways:
///
/// | sent with | returns once | result |
/// |---|---|---|
/// | `.await` | the server acknowledged it | [`PublishAck`] |
/// | [`.pipelined().await`](PublishBuilder::pipelined) | the frame is queued | [`PendingAck`], a future of the ack |
/// | [`.no_reply().await`](PublishBuilder::no_reply) | the frame is queued | `()`; failures come back from [`Client::flush`] |
///
/// A body larger than the server's `max_frame` (and within its `max_body`) is streamed
/// in chunks of at most [`crate::CHUNK_SIZE`] with its SHA-256; a larger one is refused
/// (kind [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge)) before anything is sent.
/// [`PublishBuilder::stream_from`] reads the body from an [`AsyncRead`] instead, so that
/// its size is bounded by the server's `max_body`, not by memory.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use switchboard_client::Payload;
///
/// // Awaited: the ack says where the message was stored.
/// let ack = client.publish("orders", Payload::text("order 17")).header("shop", "north").await?;
/// println!("stored as seq {}", ack.seq);
///
/// // Pipelined: queue now, collect the ack later.
/// let pending = client.publish("orders", Payload::text("order 18")).pipelined().await?;
/// pending.await?;
///
/// // Fire and forget: failures come back from flush.
/// client.publish("metrics", Payload::text("cpu=12")).no_reply().await?;
/// client.flush().await?;
/// # Ok(()) }
/// ```
#[must_use = "a publish is only sent when awaited"]
pub struct PublishBuilder<'a> {
    client: &'a Client,
    scope: Scope,
    target: &'a str,
    payload: Payload,
    reader: Option<ReaderBody<'a>>,
    progress: Option<Progress>,
}

impl Client {
    /// Publishes `payload` to `channel`; awaiting the returned builder waits for the
    /// server's ack. See [`PublishBuilder`] for the options and the other ways to send.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// let ack = client.publish("chat.rust", Payload::text("hello #rust")).await?;
    /// println!("stored as seq {}", ack.seq);
    /// # Ok(()) }
    /// ```
    pub fn publish<'a>(&'a self, channel: &'a str, payload: Payload) -> PublishBuilder<'a> {
        PublishBuilder::new(self, Scope::Channel, channel, payload)
    }

    /// Posts `payload` to a group this session is a member of: the same builder as
    /// [`Client::publish`], aimed at a group. Members receive it on their
    /// [group feed](Client::group_feed).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// client.join_group("team").await?;
    /// let ack = client.post("team", Payload::text("stand-up in 5")).await?;
    /// println!("posted as seq {}", ack.seq);
    /// # Ok(()) }
    /// ```
    pub fn post<'a>(&'a self, group: &'a str, payload: Payload) -> PublishBuilder<'a> {
        PublishBuilder::new(self, Scope::Group, group, payload)
    }

    /// Publishes `payload` to `channel` without asking for an ack: shorthand for
    /// `publish(channel, payload).no_reply()`. See [`PublishBuilder::no_reply`].
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// client.publish_no_reply("metrics", Payload::text("cpu=12")).await?;
    /// client.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_no_reply(&self, channel: &str, payload: Payload) -> Result<()> {
        self.publish(channel, payload).no_reply().await
    }

    /// Queues a publish of `payload` to `channel` and returns its ack to await later:
    /// shorthand for `publish(channel, payload).pipelined()`. See
    /// [`PublishBuilder::pipelined`].
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// let pending = client.publish_pipelined("orders", Payload::text("order 18")).await?;
    /// println!("stored as seq {}", pending.await?.seq);
    /// # Ok(()) }
    /// ```
    pub async fn publish_pipelined(&self, channel: &str, payload: Payload) -> Result<PendingAck> {
        self.publish(channel, payload).pipelined().await
    }

    /// Waits until everything queued so far was written and processed by the server.
    ///
    /// The server handles a connection's requests in order, so the answer to a request
    /// queued now proves the earlier ones were handled, and that the ERRORs of failed
    /// publishes sent without reply have arrived; those are returned as one error of
    /// kind [`ErrorKind::NoReplyFailures`](crate::ErrorKind::NoReplyFailures).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// for n in 0..1000 {
    ///     client.publish("metrics", Payload::text(&n.to_string())).no_reply().await?;
    /// }
    /// client.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<()> {
        self.identity().await?;
        match self.inner.shared.take_no_reply_failures() {
            Some(failures) => Err(failures),
            None => Ok(()),
        }
    }

    /// Whether a body of `len` bytes is too large for one frame, so that publishing it
    /// streams it.
    fn needs_streaming(&self, len: usize) -> bool {
        len as u64 > u64::from(self.inner.session.limits.max_frame)
    }

    /// A PUBLISH for `payload` in one frame, refused here if the server could not take
    /// it in one frame (callers stream larger bodies instead).
    fn publish_packet(&self, scope: Scope, target: &str, payload: Payload) -> Result<Publish> {
        self.check_body(payload.body.len())?;
        Ok(Publish {
            scope,
            channel: self.target_text(target),
            content_type: payload.content_type,
            user_headers: payload.headers,
            body: payload.body,
            stream: None,
        })
    }

    /// `target` as a `Text`, shared with the previous publish when it is the same (no
    /// copy of the name, which the writer's thread would also have to free).
    fn target_text(&self, target: &str) -> Text {
        let mut last = lock(&self.inner.last_channel);
        if last.as_str() != target {
            *last = Text::from(target);
        }
        last.clone()
    }

    /// Refuses a body the server could not take in one frame.
    pub(crate) fn check_body(&self, len: usize) -> Result<()> {
        let limits = self.inner.session.limits;
        let max = u64::from(limits.max_frame).min(limits.max_body);
        let len = len as u64;
        if len > max {
            return Err(ErrorDetail::TooLarge { len, max }.into());
        }
        Ok(())
    }
}

impl<'a> PublishBuilder<'a> {
    fn new(client: &'a Client, scope: Scope, target: &'a str, payload: Payload) -> Self {
        PublishBuilder {
            client,
            scope,
            target,
            payload,
            reader: None,
            progress: None,
        }
    }

    /// Sets the body's content type, replacing the payload's.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// let csv = Payload::bytes(&b"a,b\n1,2\n"[..]);
    /// client.publish("exports", csv).content_type("text/csv").await?;
    /// # Ok(()) }
    /// ```
    pub fn content_type(mut self, content_type: impl Into<Text>) -> Self {
        self.payload.content_type = content_type.into();
        self
    }

    /// Adds a user header, after the payload's own; receivers see them in order.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// client
    ///     .publish("orders", Payload::text("order #42 shipped"))
    ///     .header("trace-id", "a1b2c3")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn header(mut self, name: impl Into<Text>, value: impl Into<Text>) -> Self {
        self.payload.headers.push((name.into(), value.into()));
        self
    }

    /// Reads the body from `reader`, which must yield exactly `len` bytes, instead of
    /// taking the payload's body (its content type and headers still apply). Any size
    /// up to the server's `max_body` is accepted; the memory used stays bounded (a few
    /// chunks) whatever the size.
    ///
    /// The server acknowledges once the whole body is stored, and nothing of it becomes
    /// visible if the upload fails. A reader that fails, or yields fewer or more bytes
    /// than `len` (kind [`ErrorKind::BodyLength`](crate::ErrorKind::BodyLength)), aborts
    /// the stream; so does dropping the future before it completes. Such a publish
    /// needs its ack: [`PublishBuilder::no_reply`] refuses it, and
    /// [`PublishBuilder::pipelined`] sends the whole body and waits for the ack before
    /// it returns.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use switchboard_client::Payload;
    ///
    /// let file = tokio::fs::File::open("backup.tar").await?;
    /// let len = file.metadata().await?.len();
    /// let ack = client
    ///     .publish("backups", Payload::default())
    ///     .content_type("application/x-tar")
    ///     .stream_from(file, len)
    ///     .await?;
    /// println!("stored as seq {}", ack.seq);
    /// # Ok(()) }
    /// ```
    pub fn stream_from(mut self, reader: impl AsyncRead + Unpin + Send + 'a, len: u64) -> Self {
        self.reader = Some(ReaderBody {
            reader: Box::new(reader),
            len,
        });
        self
    }

    /// Calls `progress` with the number of bytes handed to the connection so far after
    /// each chunk of a streamed body (for a progress bar; at most 8 chunks run ahead of
    /// the socket). A body sent in one frame makes no calls.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client, file: tokio::fs::File, len: u64) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// client
    ///     .publish("backups", Payload::default())
    ///     .stream_from(file, len)
    ///     .progress(move |sent| eprint!("\r{sent} of {len} bytes"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn progress(mut self, progress: impl FnMut(u64) + Send + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Queues the publish and returns at once with a future for its ack, so that many
    /// publishes can be in flight:
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::stream::{FuturesOrdered, StreamExt};
    /// use switchboard_client::Payload;
    ///
    /// let mut acks = FuturesOrdered::new();
    /// for n in 0..1000 {
    ///     acks.push_back(client.publish("bench", Payload::text(&n.to_string())).pipelined().await?);
    /// }
    /// while let Some(ack) = acks.next().await {
    ///     println!("seq {}", ack?.seq);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// The frame is in the writer's queue when this returns (it waits only if the queue
    /// is full). The ack's timeout counts from then.
    ///
    /// A body in memory larger than the server's `max_frame` is streamed by a background
    /// task: the PUBLISH opening the stream is queued when this returns, its chunks
    /// follow. A body read from a reader ([`PublishBuilder::stream_from`]) is sent, and
    /// its ack awaited, before this returns.
    pub async fn pipelined(self) -> Result<PendingAck> {
        let PublishBuilder {
            client,
            scope,
            target,
            payload,
            reader,
            mut progress,
        } = self;
        if let Some(reader) = reader {
            let acked = upload(client, scope, target, payload, reader, &mut progress).await;
            return Ok(PendingAck::ready(acked));
        }
        if client.needs_streaming(payload.body.len()) {
            let total_len = payload.body.len() as u64;
            let upload = client
                .start_upload(upload_head(
                    scope,
                    target,
                    payload.content_type,
                    payload.headers,
                    total_len,
                ))
                .await?;
            let request_id = upload.request_id();
            let body = payload.body;
            let task = tokio::spawn(async move {
                let mut reader = std::io::Cursor::new(body);
                let mut ignore = |_| {};
                let progress: &mut (dyn FnMut(u64) + Send) = match &mut progress {
                    Some(progress) => progress,
                    None => &mut ignore,
                };
                upload.send_body(&mut reader, progress).await
            });
            let ack = async move {
                task.await
                    .unwrap_or_else(|error| Err(ClientError::from(std::io::Error::other(error))))
            };
            return Ok(PendingAck {
                request_id,
                ack: Box::pin(ack),
            });
        }
        let publish = client.publish_packet(scope, target, payload)?;
        let in_flight = client.send_request(Pending::Reply, publish).await?;
        let request_id = in_flight.request_id();
        let ack = async move {
            let reply = in_flight.answer("publish").await?;
            expect(&reply, FrameType::PublishAck, PublishAck::from_frame)
        };
        Ok(PendingAck {
            request_id,
            ack: Box::pin(ack),
        })
    }

    /// Publishes without asking for an ack (flag NO_REPLY): returns once the frame is
    /// queued. A failure comes back later: logged when the server reports it, and
    /// returned by the next [`Client::flush`].
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// client.publish("ticks", Payload::bytes(vec![1, 2, 3])).no_reply().await?;
    /// client.flush().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Bodies are limited to one frame (the server's `max_frame`): a streamed body
    /// needs its ack, so a larger one, or one read from a reader, is refused before
    /// anything is sent.
    pub async fn no_reply(self) -> Result<()> {
        match self.try_no_reply()? {
            TryNoReply::Queued => Ok(()),
            TryNoReply::Full(wait) => wait.send().await,
        }
    }

    /// [`PublishBuilder::no_reply`] without waiting: queues the frame if the send queue
    /// has room and says so, or hands back a [`WaitForRoom`] that queues it once room is
    /// made. For callers that must not suspend on every message (bindings to other
    /// languages' event loops): the common case costs no future and no task switch,
    /// and a full queue still holds the caller back.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::{Payload, TryNoReply};
    ///
    /// match client.publish("ticks", Payload::bytes(vec![1, 2, 3])).try_no_reply()? {
    ///     TryNoReply::Queued => {}
    ///     TryNoReply::Full(wait) => wait.send().await?,
    /// }
    /// client.flush().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Fails at once, as `no_reply` does, for a body that would need streaming, for a
    /// closed client, and for a body read from a reader.
    pub fn try_no_reply(self) -> Result<TryNoReply> {
        if self.reader.is_some() {
            return Err(ErrorDetail::InvalidArgument(
                "a body read from a reader is streamed, and a streamed body needs its ack".into(),
            )
            .into());
        }
        let client = self.client;
        let payload = self.payload;
        client.check_body(payload.body.len())?;
        let request_id = client.inner.shared.next_no_reply_id();
        let publish = PublishRef {
            scope: self.scope,
            channel: self.target,
            content_type: &payload.content_type,
            user_headers: &payload.headers,
            body: &payload.body,
        };
        // Encoded straight into the send queue; the deadline (a clock read) and its timer
        // matter only when the queue is full.
        let shared = &client.inner.shared;
        match try_queue_no_reply(shared, &client.inner.queue, request_id, &publish) {
            TryQueue::Queued => Ok(TryNoReply::Queued),
            TryQueue::Closed => Err(shared.closed_error()),
            TryQueue::Full => {
                let publish = Publish {
                    scope: self.scope,
                    channel: self.target.into(),
                    content_type: payload.content_type,
                    user_headers: payload.headers,
                    body: payload.body,
                    stream: None,
                };
                Ok(TryNoReply::Full(WaitForRoom {
                    client: client.clone(),
                    command: Box::new(Command::Send(Outbound {
                        request_id,
                        flags: Flags::NO_REPLY,
                        packet: publish.into(),
                    })),
                }))
            }
        }
    }

    /// Sends the publish and waits for its ack: what awaiting the builder does.
    async fn acknowledged(self) -> Result<PublishAck> {
        let PublishBuilder {
            client,
            scope,
            target,
            payload,
            reader,
            mut progress,
        } = self;
        if let Some(reader) = reader {
            return upload(client, scope, target, payload, reader, &mut progress).await;
        }
        if client.needs_streaming(payload.body.len()) {
            let total_len = payload.body.len() as u64;
            let reader = ReaderBody {
                reader: Box::new(std::io::Cursor::new(payload.body)),
                len: total_len,
            };
            let payload = Payload {
                body: bytes::Bytes::new(),
                ..payload
            };
            return upload(client, scope, target, payload, reader, &mut progress).await;
        }
        let publish = client.publish_packet(scope, target, payload)?;
        let reply = client.request(Pending::Reply, publish, "publish").await?;
        expect(&reply, FrameType::PublishAck, PublishAck::from_frame)
    }
}

impl<'a> IntoFuture for PublishBuilder<'a> {
    type Output = Result<PublishAck>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<PublishAck>> + Send + 'a>>;

    /// Sends the publish and waits for the server's ack.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.acknowledged())
    }
}

impl std::fmt::Debug for PublishBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishBuilder")
            .field("scope", &self.scope)
            .field("target", &self.target)
            .field("payload", &self.payload)
            .field("reader_len", &self.reader.as_ref().map(|reader| reader.len))
            .finish()
    }
}

fn upload_head(
    scope: Scope,
    target: &str,
    content_type: Text,
    headers: Vec<(Text, Text)>,
    total_len: u64,
) -> UploadHead {
    UploadHead {
        scope,
        channel: target.into(),
        content_type,
        headers,
        total_len,
    }
}

/// Streams a body from a reader and waits for the ack.
async fn upload(
    client: &Client,
    scope: Scope,
    target: &str,
    payload: Payload,
    mut body: ReaderBody<'_>,
    progress: &mut Option<Progress>,
) -> Result<PublishAck> {
    let head = upload_head(
        scope,
        target,
        payload.content_type,
        payload.headers,
        body.len,
    );
    let mut ignore = |_| {};
    let progress: &mut (dyn FnMut(u64) + Send) = match progress {
        Some(progress) => progress,
        None => &mut ignore,
    };
    client
        .start_upload(head)
        .await?
        .send_body(body.reader.as_mut(), progress)
        .await
}

/// What [`PublishBuilder::try_no_reply`] did with a publish.
#[must_use = "a full queue leaves the publish unsent until `WaitForRoom::send` is awaited"]
#[derive(Debug)]
pub enum TryNoReply {
    /// The frame is in the send queue.
    Queued,
    /// The send queue was full; the publish is sent by awaiting [`WaitForRoom::send`].
    Full(WaitForRoom),
}

/// A publish without reply that found the send queue full: [`WaitForRoom::send`] waits
/// for room (within the request timeout) and queues it. Dropping it drops the publish.
pub struct WaitForRoom {
    client: Client,
    // Boxed: a full queue is the rare case, and keeps `TryNoReply` small.
    command: Box<Command>,
}

impl WaitForRoom {
    /// Waits for room in the send queue and queues the publish; fails with a timeout
    /// after the client's request timeout, or when the client is closed.
    pub async fn send(self) -> Result<()> {
        let WaitForRoom { client, command } = self;
        client.send_command(*command, client.deadline()).await
    }
}

impl std::fmt::Debug for WaitForRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitForRoom").finish_non_exhaustive()
    }
}

/// The ack of a publish in flight; a future resolving to its [`PublishAck`] (or to the
/// server's ERROR, or a timeout).
///
/// Dropping it does not cancel the publish, which is already queued; the ack is ignored.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use switchboard_client::Payload;
///
/// // Queue a batch without waiting for each ack in turn, then collect them.
/// let mut pending = Vec::new();
/// for line in ["one", "two", "three"] {
///     pending.push(client.publish("lines", Payload::text(line)).pipelined().await?);
/// }
/// for ack in pending {
///     println!("stored as seq {}", ack.await?.seq);
/// }
/// # Ok(()) }
/// ```
pub struct PendingAck {
    request_id: u32,
    ack: Pin<Box<dyn Future<Output = Result<PublishAck>> + Send>>,
}

impl PendingAck {
    /// An ack already known (the publish was completed before it was handed over).
    fn ready(ack: Result<PublishAck>) -> Self {
        PendingAck {
            request_id: 0,
            ack: Box::pin(std::future::ready(ack)),
        }
    }

    /// The request id the publish was sent with (0 if it was complete before this was
    /// returned).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Payload;
    ///
    /// let pending = client.publish("jobs", Payload::text("run")).pipelined().await?;
    /// println!("sent as request {}", pending.request_id());
    /// let ack = pending.await?;
    /// # Ok(()) }
    /// ```
    pub fn request_id(&self) -> u32 {
        self.request_id
    }
}

impl Future for PendingAck {
    type Output = Result<PublishAck>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.ack.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for PendingAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAck")
            .field("request_id", &self.request_id)
            .finish()
    }
}
