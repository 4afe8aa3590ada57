//! Streamed bodies on the receiving side: the bounded channel from the dispatch task to
//! a message's [`BodyReader`], which hands the bytes to the application and checks the
//! length and the SHA-256 digest at the end.
//!
//! # Memory and backpressure
//!
//! Each body has its own channel holding at most [`BODY_BUFFER_BYTES`] of data not yet
//! read (a single chunk larger than that is let through alone). When a body's buffer is
//! full, the dispatch task waits for its reader, exactly as it waits for a full
//! subscription queue: it reads nothing else from the socket meanwhile, so TCP
//! backpressure reaches the server. A body that is neither read nor dropped therefore
//! stalls its connection once its buffer is full. Dropping the message (or its reader)
//! discards the rest of the body without slowing anything down.
//!
//! The bound is counted in bytes, not chunks, so it holds whatever chunk size the server
//! uses: a transfer never holds more than the buffer, one chunk being read, and the
//! frame the dispatch task is delivering.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use sha2::{Digest, Sha256};
use switchboard_proto::packet::DIGEST_LEN;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

/// Largest amount of one body buffered between the dispatch task and its reader.
///
/// ```
/// use switchboard_client::{BODY_BUFFER_BYTES, CHUNK_SIZE};
///
/// // A whole chunk always fits in the buffer of a reader that falls behind.
/// assert!(CHUNK_SIZE <= BODY_BUFFER_BYTES);
/// println!("an unread body holds at most {} MiB", BODY_BUFFER_BYTES >> 20);
/// ```
pub const BODY_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// What the dispatch task tells a body's reader.
#[derive(Debug)]
enum BodyEvent {
    /// The next part; the permit returns its size to the budget once it is read.
    Data(Bytes, OwnedSemaphorePermit),
    /// The last chunk arrived (after its data) with the digest of the whole body.
    End([u8; DIGEST_LEN]),
    /// The stream broke off: STREAM_ABORT, a malformed chunk or the connection's end.
    Failed(io::ErrorKind, String),
}

/// The dispatch task's end of one body's channel.
#[derive(Debug)]
pub(crate) struct BodySender {
    events: mpsc::UnboundedSender<BodyEvent>,
    budget: Arc<Semaphore>,
}

/// The outcome of [`BodySender::try_send`].
#[derive(Debug)]
pub(crate) enum TrySend {
    Sent,
    /// The buffer is full; the data is handed back.
    Full(Bytes),
    /// The reader is gone: the rest of the body is to be discarded.
    Gone,
}

/// The receiving end, kept in the [`crate::ReceivedMessage`] until a reader takes it.
#[derive(Debug)]
pub(crate) struct BodyReceiver {
    events: mpsc::UnboundedReceiver<BodyEvent>,
}

/// A new body channel.
///
/// The channel itself is unbounded, but every data item holds permits of the byte budget
/// (at least one), and `End`/`Failed` can each be sent once (they consume the sender), so
/// what it holds is bounded by [`BODY_BUFFER_BYTES`].
pub(crate) fn channel() -> (BodySender, BodyReceiver) {
    let (events, receiver) = mpsc::unbounded_channel();
    let sender = BodySender {
        events,
        budget: Arc::new(Semaphore::new(BODY_BUFFER_BYTES)),
    };
    (sender, BodyReceiver { events: receiver })
}

/// The budget a part of `len` bytes takes: at least 1 (empty chunks count too, so a
/// stream of them cannot grow the queue without bound) and at most the whole buffer.
fn permits_for(len: usize) -> u32 {
    // BODY_BUFFER_BYTES fits in u32, so the conversion cannot fail.
    u32::try_from(len.clamp(1, BODY_BUFFER_BYTES)).unwrap_or(u32::MAX)
}

impl BodySender {
    /// Queues `data` if the buffer has room for it now.
    pub(crate) fn try_send(&self, data: Bytes) -> TrySend {
        if self.events.is_closed() {
            return TrySend::Gone;
        }
        match self
            .budget
            .clone()
            .try_acquire_many_owned(permits_for(data.len()))
        {
            Ok(permit) => match self.events.send(BodyEvent::Data(data, permit)) {
                Ok(()) => TrySend::Sent,
                Err(_) => TrySend::Gone,
            },
            Err(TryAcquireError::NoPermits) => TrySend::Full(data),
            Err(TryAcquireError::Closed) => TrySend::Gone,
        }
    }

    /// Queues `data`, waiting for room; `false` if the reader is gone.
    pub(crate) async fn send(&self, data: Bytes) -> bool {
        let wanted = permits_for(data.len());
        let permit = tokio::select! {
            permit = self.budget.clone().acquire_many_owned(wanted) => permit,
            () = self.events.closed() => return false,
        };
        match permit {
            Ok(permit) => self.events.send(BodyEvent::Data(data, permit)).is_ok(),
            Err(_) => false,
        }
    }

    /// The last chunk's data was queued; `digest` closes the body.
    pub(crate) fn end(self, digest: [u8; DIGEST_LEN]) {
        let _ = self.events.send(BodyEvent::End(digest));
    }

    /// The body will not be completed.
    pub(crate) fn fail(self, kind: io::ErrorKind, reason: impl Into<String>) {
        let _ = self.events.send(BodyEvent::Failed(kind, reason.into()));
    }
}

/// Reads a message body: from memory for an ordinary message, or chunk by chunk as the
/// server streams it. Implements [`AsyncRead`]; [`BodyReader::chunk`] hands out whole
/// chunks without copying.
///
/// For a streamed body, the reader checks that the parts add up to the announced length
/// and that their SHA-256 matches the digest of the last chunk. A mismatch is an
/// [`io::ErrorKind::InvalidData`] error from the read that would otherwise have reported
/// the end, so a body read to the end without error is complete and intact. A stream the
/// server aborts, or that the connection's end cuts off, is an error too
/// ([`io::ErrorKind::ConnectionAborted`]).
///
/// Dropping the reader before the end discards the rest of the body.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use tokio::io::AsyncReadExt;
///
/// let Some(message) = client.get_message("logs.nightly", None).await? else {
///     return Ok(());
/// };
/// let mut log = String::new();
/// message.body_reader().read_to_string(&mut log).await?;
/// println!("{} lines", log.lines().count());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BodyReader {
    source: Source,
    /// Part of a chunk not yet read through [`AsyncRead`].
    current: Bytes,
    /// Keeps `current` counted against the body's buffer until it is read.
    permit: Option<OwnedSemaphorePermit>,
    total_len: u64,
}

#[derive(Debug)]
enum Source {
    Memory(Bytes),
    Streamed(Box<Incoming>),
    Unavailable(String),
}

/// A part of a body, with the budget it holds while unread (none for parts that were
/// never in the channel).
type Part = (Bytes, Option<OwnedSemaphorePermit>);

/// The state of a streamed body being read.
#[derive(Debug)]
struct Incoming {
    events: mpsc::UnboundedReceiver<BodyEvent>,
    /// The part carried by the MESSAGE frame itself, handed out first.
    first: Bytes,
    hasher: Sha256,
    received: u64,
    /// Set once the body ended: `Ok` after a verified end, or the error, repeated to any
    /// later read.
    outcome: Option<Result<(), (io::ErrorKind, String)>>,
}

impl BodyReader {
    /// A reader over a body held in memory.
    pub(crate) fn memory(body: Bytes) -> BodyReader {
        BodyReader {
            total_len: body.len() as u64,
            source: Source::Memory(body),
            current: Bytes::new(),
            permit: None,
        }
    }

    /// A reader over a streamed body whose MESSAGE carried `first`.
    pub(crate) fn streamed(first: Bytes, receiver: BodyReceiver, total_len: u64) -> BodyReader {
        let mut hasher = Sha256::new();
        hasher.update(&first);
        BodyReader {
            source: Source::Streamed(Box::new(Incoming {
                events: receiver.events,
                received: first.len() as u64,
                first,
                hasher,
                outcome: None,
            })),
            current: Bytes::new(),
            permit: None,
            total_len,
        }
    }

    /// A reader whose every read fails with `reason`.
    pub(crate) fn unavailable(reason: impl Into<String>, total_len: u64) -> BodyReader {
        BodyReader {
            source: Source::Unavailable(reason.into()),
            current: Bytes::new(),
            permit: None,
            total_len,
        }
    }

    /// Length of the whole body, as announced.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let mut body = message.body_reader();
    /// let total = body.total_len().max(1);
    /// let mut file = tokio::fs::File::create("dataset.tar").await?;
    /// let mut done = 0;
    /// while let Some(part) = body.chunk().await? {
    ///     file.write_all(&part).await?;
    ///     done += part.len() as u64;
    ///     eprint!("\r{}%", done * 100 / total);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// Whether the body is streamed (rather than already in memory).
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// let body = message.body_reader();
    /// if body.is_streamed() {
    ///     println!("{} bytes on their way", body.total_len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_streamed(&self) -> bool {
        matches!(self.source, Source::Streamed(_))
    }

    /// The next part of the body, without copying; `None` at the (verified) end.
    ///
    /// Parts handed out this way no longer count against the body's buffer: the caller
    /// holds them.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// use sha2::{Digest, Sha256};
    ///
    /// let mut body = message.body_reader();
    /// let mut hasher = Sha256::new();
    /// while let Some(part) = body.chunk().await? {
    ///     hasher.update(&part);
    /// }
    /// println!("sha256 {:x}", hasher.finalize());
    /// # Ok(()) }
    /// ```
    pub async fn chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.current.is_empty() {
            self.permit = None;
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        let next = std::future::poll_fn(|cx| self.poll_chunk(cx)).await?;
        Ok(next.map(|(bytes, _permit)| bytes))
    }

    /// Reads the whole body into `path` (created or truncated), calling `progress` with
    /// the bytes written so far after each part. Returns the body's length.
    ///
    /// If anything fails (the stream, the digest, the disk), the file is removed, so a
    /// file left behind always holds a complete, verified body.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// let body = message.body_reader();
    /// let total = body.total_len();
    /// let saved = body.save_to("backup.tar.gz", |done| eprint!("\r{done}/{total} bytes")).await?;
    /// assert_eq!(saved, total);
    /// # Ok(()) }
    /// ```
    pub async fn save_to(
        mut self,
        path: impl AsRef<Path>,
        mut progress: impl FnMut(u64),
    ) -> io::Result<u64> {
        let path = path.as_ref();
        let mut file = tokio::fs::File::create(path).await?;
        let written = async {
            let mut written = 0u64;
            while let Some(part) = self.chunk().await? {
                file.write_all(&part).await?;
                written += part.len() as u64;
                progress(written);
            }
            file.flush().await?;
            file.sync_all().await?;
            Ok::<_, io::Error>(written)
        }
        .await;
        drop(file);
        if written.is_err() {
            // Only a regular file is ours to remove (not /dev/null, say).
            if tokio::fs::metadata(path)
                .await
                .is_ok_and(|meta| meta.is_file())
            {
                let _ = tokio::fs::remove_file(path).await;
            }
        }
        written
    }

    /// The next non-empty part and the budget it holds, or `None` at the end.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Part>>> {
        let total_len = self.total_len;
        let incoming = match &mut self.source {
            Source::Memory(body) => {
                if body.is_empty() {
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Ok(Some((std::mem::take(body), None))));
            }
            Source::Unavailable(reason) => {
                return Poll::Ready(Err(io::Error::other(reason.clone())));
            }
            Source::Streamed(incoming) => incoming,
        };
        loop {
            if let Some(outcome) = &incoming.outcome {
                return Poll::Ready(match outcome {
                    Ok(()) => Ok(None),
                    Err((kind, reason)) => Err(io::Error::new(*kind, reason.clone())),
                });
            }
            if incoming.received > total_len {
                incoming.fail(
                    io::ErrorKind::InvalidData,
                    format!("the streamed body is longer than the {total_len} bytes announced"),
                );
                continue;
            }
            if !incoming.first.is_empty() {
                return Poll::Ready(Ok(Some((std::mem::take(&mut incoming.first), None))));
            }
            match ready!(incoming.events.poll_recv(cx)) {
                Some(BodyEvent::Data(bytes, permit)) => {
                    if bytes.is_empty() {
                        continue;
                    }
                    incoming.received += bytes.len() as u64;
                    if incoming.received > total_len {
                        continue;
                    }
                    incoming.hasher.update(&bytes);
                    return Poll::Ready(Ok(Some((bytes, Some(permit)))));
                }
                Some(BodyEvent::End(digest)) => incoming.verify(total_len, &digest),
                Some(BodyEvent::Failed(kind, reason)) => incoming.fail(kind, reason),
                None => incoming.fail(
                    io::ErrorKind::UnexpectedEof,
                    "the streamed body ended without its last chunk",
                ),
            }
        }
    }
}

impl Incoming {
    fn fail(&mut self, kind: io::ErrorKind, reason: impl Into<String>) {
        self.outcome = Some(Err((kind, reason.into())));
        // Nothing more is wanted from the dispatch task.
        self.events.close();
    }

    /// Checks the length and digest once the last chunk arrived.
    fn verify(&mut self, total_len: u64, digest: &[u8; DIGEST_LEN]) {
        if self.received != total_len {
            return self.fail(
                io::ErrorKind::InvalidData,
                format!(
                    "the streamed body ended after {} of the {total_len} bytes announced",
                    self.received
                ),
            );
        }
        let computed = std::mem::take(&mut self.hasher).finalize();
        if computed.as_slice() != digest {
            return self.fail(
                io::ErrorKind::InvalidData,
                "the streamed body does not match its SHA-256 digest",
            );
        }
        self.outcome = Some(Ok(()));
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.current.is_empty() {
            match ready!(this.poll_chunk(cx))? {
                Some((bytes, permit)) => {
                    this.current = bytes;
                    this.permit = permit;
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current[..n]);
        this.current.advance(n);
        if this.current.is_empty() {
            this.permit = None;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn digest_of(parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    async fn read_all(mut reader: BodyReader) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn a_complete_body_reads_back_and_verifies() {
        let (sender, receiver) = channel();
        let reader = BodyReader::streamed(Bytes::from_static(b"head "), receiver, 15);
        assert!(sender.send(Bytes::from_static(b"and ")).await);
        assert!(matches!(
            sender.try_send(Bytes::from_static(b"tail!")),
            TrySend::Sent
        ));
        sender.end(digest_of(&[b"head and tail!"]));
        // 14 bytes, but 15 announced: the end is a length error.
        let error = read_all(reader).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);

        let (sender, receiver) = channel();
        let reader = BodyReader::streamed(Bytes::from_static(b"head "), receiver, 14);
        sender.try_send(Bytes::from_static(b"and tail!"));
        sender.end(digest_of(&[b"head and tail!"]));
        assert_eq!(read_all(reader).await.unwrap(), b"head and tail!");
    }

    #[tokio::test]
    async fn a_wrong_digest_or_an_overlong_body_is_invalid_data() {
        let (sender, receiver) = channel();
        let reader = BodyReader::streamed(Bytes::new(), receiver, 3);
        sender.try_send(Bytes::from_static(b"abc"));
        sender.end(digest_of(&[b"abd"]));
        let error = read_all(reader).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("digest"));

        let (sender, receiver) = channel();
        let mut reader = BodyReader::streamed(Bytes::new(), receiver, 2);
        sender.try_send(Bytes::from_static(b"abc"));
        let error = reader.chunk().await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        // The error sticks.
        assert!(reader.chunk().await.is_err());
    }

    #[tokio::test]
    async fn aborts_and_vanished_senders_are_errors() {
        let (sender, receiver) = channel();
        let reader = BodyReader::streamed(Bytes::new(), receiver, 10);
        sender.try_send(Bytes::from_static(b"abc"));
        sender.fail(io::ErrorKind::ConnectionAborted, "server gave up");
        let error = read_all(reader).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);

        let (sender, receiver) = channel();
        let reader = BodyReader::streamed(Bytes::new(), receiver, 10);
        drop(sender);
        let error = read_all(reader).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn the_buffer_is_bounded_in_bytes_and_freed_by_reading() {
        let (sender, receiver) = channel();
        let mut reader = BodyReader::streamed(Bytes::new(), receiver, u64::MAX);
        let half = Bytes::from(vec![1u8; BODY_BUFFER_BYTES / 2]);
        assert!(matches!(sender.try_send(half.clone()), TrySend::Sent));
        assert!(matches!(sender.try_send(half.clone()), TrySend::Sent));
        assert!(matches!(sender.try_send(half.clone()), TrySend::Full(_)));
        let mut small = [0u8; 10];
        reader.read_exact(&mut small).await.unwrap();
        // Part of the first chunk is unread: it still holds its budget.
        assert!(matches!(sender.try_send(half.clone()), TrySend::Full(_)));
        assert_eq!(
            reader.chunk().await.unwrap().unwrap().len(),
            BODY_BUFFER_BYTES / 2 - 10
        );
        assert!(matches!(sender.try_send(half.clone()), TrySend::Sent));
        drop(reader);
        assert!(matches!(sender.try_send(half), TrySend::Gone));
        assert!(!sender.send(Bytes::from_static(b"x")).await);

        // A chunk larger than the whole buffer gets through, but only alone.
        let (sender, _receiver) = channel();
        let huge = Bytes::from(vec![0u8; BODY_BUFFER_BYTES + 1]);
        assert!(matches!(sender.try_send(huge), TrySend::Sent));
        assert!(matches!(
            sender.try_send(Bytes::from_static(b"x")),
            TrySend::Full(_)
        ));
    }

    #[tokio::test]
    async fn memory_bodies_read_as_they_are() {
        let mut reader = BodyReader::memory(Bytes::from_static(b"plain"));
        assert!(!reader.is_streamed());
        assert_eq!(reader.total_len(), 5);
        assert_eq!(reader.chunk().await.unwrap().unwrap(), &b"plain"[..]);
        assert_eq!(reader.chunk().await.unwrap(), None);
        let error = read_all(BodyReader::unavailable("taken", 3))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("taken"));
    }

    #[tokio::test]
    async fn saving_writes_a_verified_file_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        let (sender, receiver) = channel();
        let reader = BodyReader::streamed(Bytes::from_static(b"ab"), receiver, 4);
        sender.try_send(Bytes::from_static(b"cd"));
        sender.end(digest_of(&[b"abcd"]));
        let mut seen = Vec::new();
        let written = reader.save_to(&good, |n| seen.push(n)).await.unwrap();
        assert_eq!(written, 4);
        assert_eq!(seen, [2, 4]);
        assert_eq!(std::fs::read(&good).unwrap(), b"abcd");

        let bad = dir.path().join("bad");
        let (sender, receiver) = channel();
        let reader = BodyReader::streamed(Bytes::new(), receiver, 4);
        sender.try_send(Bytes::from_static(b"abcd"));
        sender.end(digest_of(&[b"abcX"]));
        assert!(reader.save_to(&bad, |_| {}).await.is_err());
        assert!(!bad.exists(), "a failed transfer leaves no file");
    }
}
