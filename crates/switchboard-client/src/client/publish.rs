//! Publishing to channels, with or without waiting for the server's ack, and flushing
//! what was sent without reply.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use switchboard_proto::codec::Outbound;
use switchboard_proto::packet::{Publish, PublishAck, Scope};
use switchboard_proto::{Flags, FrameType, Text};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::client::{Client, expect};
use crate::error::{ClientError, Result};
use crate::payload::Payload;
use crate::requests::Pending;
use crate::shared::lock;
use crate::upload::UploadHead;
use crate::writer::Command;

impl Client {
    /// Publishes to a channel and waits for the server's ack.
    ///
    /// A body larger than the server's `max_frame` (and within its `max_body`) is
    /// streamed, as [`Client::publish_stream`] does; a larger one is refused with
    /// [`ClientError::TooLarge`] before anything is sent.
    pub async fn publish(&self, channel: &str, payload: Payload) -> Result<PublishAck> {
        if self.needs_streaming(payload.body.len()) {
            return self
                .publish_payload_streamed(Scope::Channel, channel, payload)
                .await;
        }
        self.publish_pipelined(channel, payload).await?.await
    }

    /// Publishes a body of any size (up to the server's `max_body`) read from `body`,
    /// which must yield exactly `total_len` bytes, and waits for the server's ack.
    ///
    /// The body is sent in chunks of at most [`crate::CHUNK_SIZE`] as it is read, with
    /// its SHA-256; the memory used stays bounded (a few chunks) whatever its size. The
    /// server acknowledges once the whole body is stored, and nothing of it becomes
    /// visible if the upload fails. A reader that fails, or yields fewer or more bytes
    /// than `total_len` ([`ClientError::BodyTooShort`], [`ClientError::BodyTooLong`]),
    /// aborts the stream; so does dropping the future before it completes.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let file = tokio::fs::File::open("backup.tar").await?;
    /// let len = file.metadata().await?.len();
    /// let ack = client.publish_stream("backups", "application/x-tar", file, len).await?;
    /// println!("stored as seq {}", ack.seq);
    /// # Ok(()) }
    /// ```
    pub async fn publish_stream<R>(
        &self,
        channel: &str,
        content_type: &str,
        body: R,
        total_len: u64,
    ) -> Result<PublishAck>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.publish_stream_with(channel, content_type, Vec::new(), body, total_len, |_| {})
            .await
    }

    /// [`Client::publish_stream`] with user headers, calling `progress` with the number
    /// of bytes handed to the connection so far after each chunk (for a progress bar;
    /// at most 8 chunks run ahead of the socket).
    pub async fn publish_stream_with<R, F>(
        &self,
        channel: &str,
        content_type: &str,
        headers: Vec<(Text, Text)>,
        mut body: R,
        total_len: u64,
        mut progress: F,
    ) -> Result<PublishAck>
    where
        R: AsyncRead + Unpin + Send,
        F: FnMut(u64) + Send,
    {
        let head = UploadHead {
            scope: Scope::Channel,
            channel: channel.into(),
            content_type: content_type.into(),
            headers,
            total_len,
        };
        self.start_upload(head)
            .await?
            .send_body(&mut body, &mut progress)
            .await
    }

    /// Queues a publish and returns at once with a future for its ack, so that many
    /// publishes can be in flight:
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::stream::{FuturesOrdered, StreamExt};
    /// use switchboard_client::Payload;
    ///
    /// let mut acks = FuturesOrdered::new();
    /// for n in 0..1000 {
    ///     acks.push_back(client.publish_pipelined("bench", Payload::text(&n.to_string())).await?);
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
    /// A body larger than the server's `max_frame` is streamed by a background task;
    /// the PUBLISH opening the stream is queued when this returns, its chunks follow.
    pub async fn publish_pipelined(&self, channel: &str, payload: Payload) -> Result<PendingAck> {
        if self.needs_streaming(payload.body.len()) {
            let total_len = payload.body.len() as u64;
            let upload = self
                .start_upload(UploadHead {
                    scope: Scope::Channel,
                    channel: channel.into(),
                    content_type: payload.content_type,
                    headers: payload.headers,
                    total_len,
                })
                .await?;
            let request_id = upload.request_id();
            let body = payload.body;
            let task = tokio::spawn(async move {
                let mut reader = std::io::Cursor::new(body);
                upload.send_body(&mut reader, &mut |_| {}).await
            });
            let ack = async move {
                task.await
                    .unwrap_or_else(|error| Err(ClientError::Io(std::io::Error::other(error))))
            };
            return Ok(PendingAck {
                request_id,
                ack: Box::pin(ack),
            });
        }
        let publish = self.publish_packet(Scope::Channel, channel, payload)?;
        let in_flight = self.send_request(Pending::Reply, publish).await?;
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
    /// Bodies are limited to one frame (the server's `max_frame`): a streamed body
    /// needs its ack. Use [`Client::publish`] for larger ones.
    pub async fn publish_no_reply(&self, channel: &str, payload: Payload) -> Result<()> {
        let publish = self.publish_packet(Scope::Channel, channel, payload)?;
        let request_id = self.shared().next_no_reply_id();
        let command = Command::Send(Outbound {
            request_id,
            flags: Flags::NO_REPLY,
            packet: publish.into(),
        });
        // The deadline (a clock read) and its timer matter only when the queue is full.
        match self.commands().try_send(command) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.shared().closed_error()),
            Err(mpsc::error::TrySendError::Full(command)) => {
                self.send_command(command, self.deadline()).await
            }
        }
    }

    /// Waits until everything queued so far was written and processed by the server.
    ///
    /// The server handles a connection's requests in order, so the answer to a request
    /// queued now proves the earlier ones were handled, and that the ERRORs of failed
    /// publishes sent without reply have arrived; those are returned as
    /// [`ClientError::NoReplyFailures`].
    pub async fn flush(&self) -> Result<()> {
        self.identity().await?;
        match self.inner.shared.take_no_reply_failures() {
            Some(failures) => Err(failures),
            None => Ok(()),
        }
    }

    /// Streams a payload that is already in memory.
    pub(crate) async fn publish_payload_streamed(
        &self,
        scope: Scope,
        channel: &str,
        payload: Payload,
    ) -> Result<PublishAck> {
        let total_len = payload.body.len() as u64;
        let upload = self
            .start_upload(UploadHead {
                scope,
                channel: channel.into(),
                content_type: payload.content_type,
                headers: payload.headers,
                total_len,
            })
            .await?;
        let mut reader = std::io::Cursor::new(payload.body);
        upload.send_body(&mut reader, &mut |_| {}).await
    }

    /// A PUBLISH for `payload` in one frame, refused here if the server could not take
    /// it in one frame (callers stream larger bodies instead).
    pub(crate) fn publish_packet(
        &self,
        scope: Scope,
        channel: &str,
        payload: Payload,
    ) -> Result<Publish> {
        self.check_body(payload.body.len())?;
        Ok(Publish {
            scope,
            channel: self.channel_text(channel),
            content_type: payload.content_type,
            user_headers: payload.headers,
            body: payload.body,
            stream: None,
        })
    }

    /// `channel` as a `Text`, shared with the previous publish when it is the same.
    pub(crate) fn channel_text(&self, channel: &str) -> Text {
        let mut last = lock(&self.inner.last_channel);
        if last.as_str() != channel {
            *last = Text::from(channel);
        }
        last.clone()
    }

    /// Whether a body of `len` bytes is too large for one frame, so that publishing it
    /// streams it.
    pub(crate) fn needs_streaming(&self, len: usize) -> bool {
        len as u64 > u64::from(self.server_limits().max_frame)
    }

    pub(crate) fn check_body(&self, len: usize) -> Result<()> {
        let limits = self.server_limits();
        let max = u64::from(limits.max_frame).min(limits.max_body);
        let len = len as u64;
        if len > max {
            return Err(ClientError::TooLarge { len, max });
        }
        Ok(())
    }
}

/// The ack of a publish in flight; a future resolving to its [`PublishAck`] (or to the
/// server's ERROR, or a timeout).
///
/// Dropping it does not cancel the publish, which is already queued; the ack is ignored.
pub struct PendingAck {
    request_id: u32,
    ack: Pin<Box<dyn Future<Output = Result<PublishAck>> + Send>>,
}

impl PendingAck {
    /// The request id the publish was sent with.
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
