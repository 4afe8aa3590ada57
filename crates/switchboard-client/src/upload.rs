//! Streamed publishing: a body of any size (up to the server's `max_body`) read from an
//! [`AsyncRead`] and sent as a PUBLISH with flag STREAM followed by CHUNK frames.
//!
//! The body is read in pieces of [`CHUNK_SIZE`] (or the server's `max_frame`, if
//! smaller) and hashed with SHA-256 as it goes; the last CHUNK carries the digest. The
//! chunks go through the writer's ordinary bounded queue, each holding one of
//! [`CHUNKS_IN_FLIGHT`] permits until it is written to the socket, so one upload ties up
//! at most `CHUNKS_IN_FLIGHT` chunks in the queue plus the one being read, whatever the
//! body's size.
//!
//! The server may refuse the stream at any time (TOO_LARGE, FORBIDDEN, ...): its ERROR
//! stops the upload at once, without further chunks. If the reader fails, or yields
//! fewer or more bytes than announced, the client sends STREAM_ABORT and reports the
//! error; the server's confirming ERROR is dropped. An upload abandoned half way (its
//! future dropped, a timeout) is aborted the same way in the background.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use switchboard_proto::codec::Outbound;
use switchboard_proto::packet::{
    Chunk, DIGEST_LEN, Publish, PublishAck, Scope, StreamAbort, StreamStart,
};
use switchboard_proto::{ErrorCode, Flags, Frame, FrameType, Text};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Semaphore, oneshot};

use crate::client::{Client, expect};
use crate::error::{ClientError, ErrorDetail, Result};
use crate::requests::Pending;
use crate::writer::Command;

/// Size of the pieces a streamed body is read and sent in (at most the server's
/// `max_frame`).
///
/// ```
/// use switchboard_client::CHUNK_SIZE;
///
/// // How many chunks a 10 MiB upload takes (more if the server's frames are smaller).
/// let len: u64 = 10 * 1024 * 1024;
/// assert_eq!(len.div_ceil(CHUNK_SIZE as u64), 10);
/// ```
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// Chunks of one upload that may wait in the writer's queue at once.
pub(crate) const CHUNKS_IN_FLIGHT: usize = 8;

/// Why the next piece of a body could not be produced.
#[derive(Debug)]
pub(crate) enum ChunkError {
    Io(io::Error),
    TooShort { expected: u64, got: u64 },
    TooLong { expected: u64 },
}

impl From<ChunkError> for ClientError {
    fn from(error: ChunkError) -> Self {
        match error {
            ChunkError::Io(error) => ErrorDetail::Io(error).into(),
            ChunkError::TooShort { expected, got } => {
                ErrorDetail::BodyTooShort { expected, got }.into()
            }
            ChunkError::TooLong { expected } => ErrorDetail::BodyTooLong { expected }.into(),
        }
    }
}

/// Cuts a body into chunks of at most `chunk_size` bytes, checks that it has exactly
/// `total_len` bytes and computes its SHA-256 on the way.
pub(crate) struct Chunker<R> {
    reader: R,
    chunk_size: usize,
    total_len: u64,
    sent: u64,
    hasher: Sha256,
    finished: bool,
}

impl<R: AsyncRead + Unpin> Chunker<R> {
    pub(crate) fn new(reader: R, total_len: u64, chunk_size: usize) -> Self {
        Chunker {
            reader,
            chunk_size: chunk_size.max(1),
            total_len,
            sent: 0,
            hasher: Sha256::new(),
            finished: false,
        }
    }

    /// Bytes handed out so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// The next piece, with the digest of the whole body on the last one; `None` once
    /// the last was handed out. The last piece is only handed out after the reader was
    /// found to be at its end.
    pub(crate) async fn next_chunk(
        &mut self,
    ) -> std::result::Result<Option<(Bytes, Option<[u8; DIGEST_LEN]>)>, ChunkError> {
        if self.finished {
            return Ok(None);
        }
        let remaining = self.total_len - self.sent;
        let want = usize::try_from(remaining).map_or(self.chunk_size, |r| r.min(self.chunk_size));
        let mut piece = BytesMut::with_capacity(want);
        while piece.len() < want {
            let room = (want - piece.len()) as u64;
            let read = (&mut self.reader)
                .take(room)
                .read_buf(&mut piece)
                .await
                .map_err(ChunkError::Io)?;
            if read == 0 {
                return Err(ChunkError::TooShort {
                    expected: self.total_len,
                    got: self.sent + piece.len() as u64,
                });
            }
        }
        self.hasher.update(&piece);
        self.sent += piece.len() as u64;
        if self.sent < self.total_len {
            return Ok(Some((piece.freeze(), None)));
        }
        let mut probe = [0u8; 1];
        if self.reader.read(&mut probe).await.map_err(ChunkError::Io)? > 0 {
            return Err(ChunkError::TooLong {
                expected: self.total_len,
            });
        }
        self.finished = true;
        let digest = std::mem::take(&mut self.hasher).finalize().into();
        Ok(Some((piece.freeze(), Some(digest))))
    }
}

/// What a streamed publish says besides its body.
pub(crate) struct UploadHead {
    pub scope: Scope,
    pub channel: Text,
    pub content_type: Text,
    pub headers: Vec<(Text, Text)>,
    pub total_len: u64,
}

/// Where an upload stands, for what dropping it must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Chunks still to send: dropping aborts the stream.
    Streaming,
    /// Everything sent: dropping just stops waiting for the ack.
    Sent,
    /// Answered, or aborted already: nothing to do.
    Done,
}

/// A streamed publish whose PUBLISH is queued and whose body is still to be sent.
pub(crate) struct Upload {
    client: Client,
    request_id: u32,
    stream_id: u64,
    total_len: u64,
    chunk_size: usize,
    answer: oneshot::Receiver<Result<Frame>>,
    stage: Stage,
}

impl Client {
    /// Registers a streamed publish and queues its PUBLISH (flag STREAM, no content).
    pub(crate) async fn start_upload(&self, head: UploadHead) -> Result<Upload> {
        let limits = self.session().limits;
        if head.total_len > limits.max_body {
            return Err(ErrorDetail::TooLarge {
                len: head.total_len,
                max: limits.max_body,
            }
            .into());
        }
        let chunk_size = usize::try_from(limits.max_frame)
            .map_or(CHUNK_SIZE, |max_frame| max_frame.min(CHUNK_SIZE))
            .max(1);
        let stream_id = self.shared().next_stream_id();
        let (done, answer) = oneshot::channel();
        let request_id = self.shared().register(Pending::Reply(done))?;
        let mut upload = Upload {
            client: self.clone(),
            request_id,
            stream_id,
            total_len: head.total_len,
            chunk_size,
            answer,
            // Nothing to abort until the PUBLISH is queued.
            stage: Stage::Sent,
        };
        let publish = Publish {
            scope: head.scope,
            channel: head.channel,
            content_type: head.content_type,
            user_headers: head.headers,
            body: Bytes::new(),
            stream: Some(StreamStart {
                stream_id,
                total_len: head.total_len,
            }),
        };
        let command = Command::Send(Outbound {
            request_id,
            flags: Flags::empty(),
            packet: publish.into(),
        });
        self.send_command(command, self.deadline()).await?;
        upload.stage = Stage::Streaming;
        Ok(upload)
    }
}

impl Upload {
    /// The request id of the PUBLISH (and of every CHUNK).
    pub(crate) fn request_id(&self) -> u32 {
        self.request_id
    }

    /// Sends the body and waits for the server's PUBLISH_ACK. `progress` is told the
    /// bytes queued so far after each chunk.
    pub(crate) async fn send_body(
        mut self,
        body: &mut (dyn AsyncRead + Unpin + Send),
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<PublishAck> {
        let in_flight = Arc::new(Semaphore::new(CHUNKS_IN_FLIGHT));
        let mut chunker = Chunker::new(body, self.total_len, self.chunk_size);
        loop {
            let next = tokio::select! {
                biased;
                early = &mut self.answer => return self.answered_early(early),
                next = chunker.next_chunk() => next,
            };
            let (data, digest) = match next {
                Ok(Some(piece)) => piece,
                Ok(None) => break,
                Err(error) => {
                    let error = ClientError::from(error);
                    self.abort(&error.to_string()).await;
                    return Err(error);
                }
            };
            let last = digest.is_some();
            let chunk = Chunk {
                stream_id: self.stream_id,
                data,
                digest,
            };
            let queued = tokio::select! {
                biased;
                early = &mut self.answer => return self.answered_early(early),
                queued = queue_chunk(&self.client, self.request_id, chunk, &in_flight) => queued,
            };
            queued?;
            progress(chunker.sent());
            if last {
                break;
            }
        }
        self.stage = Stage::Sent;
        let deadline = self.client.deadline();
        let answer = std::mem::replace(&mut self.answer, oneshot::channel().1);
        let reply = self
            .client
            .await_answer(answer, deadline, "publish")
            .await?;
        self.stage = Stage::Done;
        expect(&reply, FrameType::PublishAck, PublishAck::from_frame)
    }

    /// The server answered before the body was complete: a refusal (or the connection's
    /// end). Nothing more is sent.
    fn answered_early(
        &mut self,
        answer: std::result::Result<Result<Frame>, oneshot::error::RecvError>,
    ) -> Result<PublishAck> {
        self.stage = Stage::Done;
        match answer {
            Ok(Err(error)) => Err(error),
            Ok(Ok(frame)) => Err(ErrorDetail::UnexpectedReply {
                expected: "PUBLISH_ACK only after the last CHUNK",
                got: frame.frame_type,
            }
            .into()),
            Err(_) => Err(self.client.shared().closed_error()),
        }
    }

    /// Gives up: STREAM_ABORT (unless the server already answered), whose confirming
    /// ERROR is then ignored.
    async fn abort(&mut self, reason: &str) {
        self.stage = Stage::Done;
        if !self.client.shared().requests().ignore(self.request_id) {
            return;
        }
        let command = abort_command(self.request_id, self.stream_id, reason);
        if let Err(error) = self
            .client
            .send_command(command, self.client.deadline())
            .await
        {
            tracing::debug!(%error, "could not send STREAM_ABORT");
        }
    }
}

/// Waits for room (the upload's budget, then the writer's queue) and queues a chunk.
async fn queue_chunk(
    client: &Client,
    request_id: u32,
    chunk: Chunk,
    in_flight: &Arc<Semaphore>,
) -> Result<()> {
    let deadline = client.deadline();
    let permit = tokio::time::timeout_at(deadline, in_flight.clone().acquire_owned())
        .await
        .map_err(|_| {
            ClientError::from(ErrorDetail::Timeout {
                what: "sending a streamed body",
                after: client.request_timeout(),
            })
        })?
        .map_err(|_| client.shared().closed_error())?;
    let command = Command::SendHeld(
        Outbound {
            request_id,
            flags: Flags::empty(),
            packet: chunk.into(),
        },
        permit,
    );
    client.send_command(command, deadline).await
}

fn abort_command(request_id: u32, stream_id: u64, reason: &str) -> Command {
    Command::Send(Outbound {
        request_id,
        flags: Flags::empty(),
        packet: StreamAbort {
            stream_id,
            code: ErrorCode::StreamAborted,
            reason: reason.into(),
        }
        .into(),
    })
}

impl Drop for Upload {
    fn drop(&mut self) {
        match self.stage {
            Stage::Done => {}
            Stage::Sent => self.client.shared().forget(self.request_id),
            Stage::Streaming => {
                if !self.client.shared().requests().ignore(self.request_id) {
                    return;
                }
                // Queued behind the chunks already waiting, so it cannot overtake them.
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let client = self.client.clone();
                let command = abort_command(
                    self.request_id,
                    self.stream_id,
                    "the publisher gave up on the body",
                );
                runtime.spawn(async move {
                    let _ = client.send_command(command, client.deadline()).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn chunks_of(
        body: &[u8],
        total_len: u64,
        chunk_size: usize,
    ) -> std::result::Result<Vec<(Bytes, Option<[u8; DIGEST_LEN]>)>, ChunkError> {
        let mut chunker = Chunker::new(body, total_len, chunk_size);
        let mut chunks = Vec::new();
        while let Some(chunk) = chunker.next_chunk().await? {
            chunks.push(chunk);
        }
        assert_eq!(chunker.sent(), total_len);
        Ok(chunks)
    }

    #[tokio::test]
    async fn bodies_are_cut_into_bounded_chunks_with_the_digest_last() {
        let body: Vec<u8> = (0..2500u32).map(|n| (n % 251) as u8).collect();
        let chunks = chunks_of(&body, 2500, 1000).await.unwrap();
        let sizes: Vec<usize> = chunks.iter().map(|(data, _)| data.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert!(chunks[..2].iter().all(|(_, digest)| digest.is_none()));
        let expected: [u8; DIGEST_LEN] = Sha256::digest(&body).into();
        assert_eq!(chunks[2].1, Some(expected));
        let joined: Vec<u8> = chunks.iter().flat_map(|(data, _)| data.to_vec()).collect();
        assert_eq!(joined, body);

        // An exact multiple ends with a full chunk, not an empty one.
        let chunks = chunks_of(&body[..2000], 2000, 1000).await.unwrap();
        assert_eq!(chunks.len(), 2);
        assert!(chunks[1].1.is_some());
    }

    #[tokio::test]
    async fn an_empty_body_is_one_empty_last_chunk() {
        let chunks = chunks_of(b"", 0, 1000).await.unwrap();
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].0.is_empty());
        let expected: [u8; DIGEST_LEN] = Sha256::digest(b"").into();
        assert_eq!(chunks[0].1, Some(expected));
    }

    #[tokio::test]
    async fn short_and_long_readers_are_refused() {
        match chunks_of(b"abc", 5, 2).await {
            Err(ChunkError::TooShort {
                expected: 5,
                got: 3,
            }) => {}
            other => panic!("expected TooShort, got {other:?}"),
        }
        match chunks_of(b"abcdef", 5, 2).await {
            Err(ChunkError::TooLong { expected: 5 }) => {}
            other => panic!("expected TooLong, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn slow_readers_are_gathered_into_full_chunks() {
        // A reader handing out a few bytes at a time still gives full-sized chunks.
        let (mut writer, reader) = tokio::io::duplex(7);
        let feeding = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for _ in 0..10 {
                writer.write_all(&[9u8; 30]).await.unwrap();
            }
        });
        let mut chunker = Chunker::new(reader, 300, 128);
        let mut sizes = Vec::new();
        while let Some((data, _)) = chunker.next_chunk().await.unwrap() {
            sizes.push(data.len());
        }
        feeding.await.unwrap();
        assert_eq!(sizes, [128, 128, 44]);
    }
}
