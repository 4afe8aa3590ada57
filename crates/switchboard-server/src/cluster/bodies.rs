//! Streamed bodies in a cluster: they stay off the backplane. The node that received one
//! keeps it; other nodes fetch it over the node link, a TCP protocol of its own, when a
//! connection of theirs is sent the message.
//!
//! The node link (all integers big-endian):
//!
//! ```text
//! origin -> reader   "SBNL" version(1) nonce(32)
//! reader -> origin   message id(16) tag(32)      tag = HMAC-SHA256(key, nonce || id)
//! origin -> reader   status(1)                   0 ok, 1 unknown body, 2 refused, 3 busy
//! if ok:             length(8) body(length) sha256(32)
//! ```
//!
//! The key is the cluster's node-link key, shared by the nodes through the backplane, so
//! only nodes of the cluster can fetch. Every step is bounded: connecting, each read,
//! and the fetches a node makes or serves at once. A body whose origin is gone, whose
//! link breaks, or whose digest does not match is reported as unavailable; the writer
//! then aborts the stream, so a receiver never takes a truncated body for a whole one.
//!
//! Retention: the origin keeps a body as long as its message can be in the channel's
//! history by count, as far as the origin sees: once this node appended a message at
//! least `history` seqs later to the same channel, the body goes. Bodies also count
//! against the server's budget for bodies, and the origin keeps at most [`MAX_KEPT`]
//! (the oldest goes first), so that channels trimmed by age or bytes, or deleted, cannot
//! make it keep bodies without bound. A body past that, or of a node that stopped, is
//! BODY_UNAVAILABLE.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use switchboard_proto::MacKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use super::Backplane;
use crate::blobs::{Blob, DIGEST_LEN};
use crate::log;

const MAGIC: &[u8; 4] = b"SBNL";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 32;
const TAG_LEN: usize = 32;
const OK: u8 = 0;
const UNKNOWN: u8 = 1;
const REFUSED: u8 = 2;
const BUSY: u8 = 3;

/// Most bodies an origin keeps for other nodes to fetch (the oldest goes first).
pub const MAX_KEPT: usize = 4096;
/// Longest wait to connect to an origin, or for it to answer a request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the next bytes of a body, either way.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Fetches a node makes at once, and fetches it serves at once.
pub const MAX_FETCHES: usize = 32;

/// Why a body cannot be sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

fn unavailable(what: impl std::fmt::Display) -> Unavailable {
    Unavailable(what.to_string())
}

/// Where a streamed body of a cluster message is: which node has it.
#[derive(Debug, Clone)]
pub struct RemoteBody {
    pub origin: u64,
    pub id: Uuid,
    pub link: Arc<NodeLink>,
}

/// This node's side of the node link: the bodies it keeps, and the fetches it makes.
pub struct NodeLink {
    backplane: Arc<dyn Backplane>,
    kept: Mutex<Kept>,
    key: OnceCell<MacKey>,
    fetching: Arc<Semaphore>,
    serving: Arc<Semaphore>,
    /// Connections not yet authenticated, so that strangers cannot hold without bound.
    handshakes: Arc<Semaphore>,
    counters: Arc<LinkCounters>,
}

/// What the node link did, for `stats`.
#[derive(Debug, Default)]
struct LinkCounters {
    /// Bodies read whole from other nodes.
    fetched: AtomicU64,
    /// Bodies that could not be read whole (from another node or this one's).
    unavailable: AtomicU64,
    /// Bodies sent whole to other nodes.
    served: AtomicU64,
    /// Requests refused for a wrong key.
    refused: AtomicU64,
}

impl std::fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLink").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Kept {
    /// Ids in the order kept; may hold ids already gone, compacted now and then.
    order: VecDeque<Uuid>,
    bodies: HashMap<Uuid, Blob>,
    /// Per channel, the seq of each body kept for it, oldest first.
    positions: HashMap<String, VecDeque<(u64, Uuid)>>,
}

impl Kept {
    fn remove(&mut self, id: &Uuid) {
        if let Some(blob) = self.bodies.remove(id) {
            blob.retire();
        }
    }
}

impl Drop for Kept {
    /// A node that leaves the cluster comes back as another node, which no message
    /// names: the bodies it kept are of no more use, even in a data directory.
    fn drop(&mut self) {
        for blob in self.bodies.values() {
            blob.retire();
        }
    }
}

/// A body being read, from this node's file or from its origin.
pub struct BodyReader {
    source: Source,
    len: u64,
    read: u64,
    hasher: Sha256,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    counters: Arc<LinkCounters>,
}

enum Source {
    File {
        file: tokio::fs::File,
        digest: [u8; DIGEST_LEN],
    },
    Link(TcpStream),
}

impl NodeLink {
    pub(crate) fn new(backplane: Arc<dyn Backplane>) -> Arc<NodeLink> {
        Arc::new(NodeLink {
            backplane,
            kept: Mutex::new(Kept::default()),
            key: OnceCell::new(),
            fetching: Arc::new(Semaphore::new(MAX_FETCHES)),
            serving: Arc::new(Semaphore::new(MAX_FETCHES)),
            handshakes: Arc::new(Semaphore::new(2 * MAX_FETCHES)),
            counters: Arc::default(),
        })
    }

    /// The node link's counters, named for `stats`.
    pub(crate) fn stats(&self) -> Vec<(String, u64)> {
        let counters = &self.counters;
        let kept = self.kept.lock().bodies.len() as u64;
        [
            ("cluster_bodies_kept", kept),
            ("cluster_bodies_fetched", counters.fetched.load(Relaxed)),
            (
                "cluster_bodies_unavailable",
                counters.unavailable.load(Relaxed),
            ),
            ("cluster_bodies_served", counters.served.load(Relaxed)),
            ("cluster_link_refused", counters.refused.load(Relaxed)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> u64 {
        self.backplane.node_id()
    }

    /// Keeps a body this node received, for its own sessions and for other nodes.
    pub(crate) fn keep(&self, id: Uuid, blob: Blob) {
        let mut kept = self.kept.lock();
        kept.order.push_back(id);
        kept.bodies.insert(id, blob);
        while kept.bodies.len() > MAX_KEPT {
            let Some(oldest) = kept.order.pop_front() else {
                break;
            };
            kept.remove(&oldest);
        }
        if kept.order.len() > 2 * kept.bodies.len() + 64 {
            let Kept { order, bodies, .. } = &mut *kept;
            order.retain(|id| bodies.contains_key(id));
        }
    }

    /// The message of kept body `id` was stored at `seq` in `channel`, whose history
    /// holds `history` messages: bodies of that channel now past its history go.
    pub(crate) fn placed(&self, channel: &str, id: Uuid, seq: u64, history: u64) {
        let mut kept = self.kept.lock();
        let mut gone = Vec::new();
        let positions = kept.positions.entry(channel.to_owned()).or_default();
        positions.push_back((seq, id));
        while let Some(&(oldest, oldest_id)) = positions.front() {
            if oldest.saturating_add(history) > seq {
                break;
            }
            positions.pop_front();
            gone.push(oldest_id);
        }
        for id in gone {
            kept.remove(&id);
        }
    }

    /// The message of kept body `id` was not stored: nobody will ask for it.
    pub(crate) fn forget(&self, id: &Uuid) {
        self.kept.lock().remove(id);
    }

    /// The length, digest and file of a kept body, opened (so that it stays readable
    /// whatever happens to it meanwhile).
    async fn open_kept(&self, id: &Uuid) -> Option<(tokio::fs::File, u64, [u8; DIGEST_LEN])> {
        let (path, len, digest) = {
            let kept = self.kept.lock();
            let blob = kept.bodies.get(id)?;
            (blob.path().to_path_buf(), blob.len(), *blob.digest())
        };
        let file = tokio::fs::File::open(path).await.ok()?;
        Some((file, len, digest))
    }

    async fn key(&self) -> Result<&MacKey, Unavailable> {
        self.key
            .get_or_try_init(|| async {
                let key = self
                    .backplane
                    .node_link_key()
                    .await
                    .map_err(|refusal| unavailable(refusal.message))?;
                Ok(MacKey::new(&key))
            })
            .await
    }

    /// Starts reading body `body` of `len` bytes.
    pub async fn open(&self, body: &RemoteBody, len: u64) -> Result<BodyReader, Unavailable> {
        let opened = self.open_source(body, len).await;
        if opened.is_err() {
            self.counters.unavailable.fetch_add(1, Relaxed);
        }
        opened
    }

    async fn open_source(&self, body: &RemoteBody, len: u64) -> Result<BodyReader, Unavailable> {
        if body.origin == self.node_id() {
            let Some((file, kept_len, digest)) = self.open_kept(&body.id).await else {
                return Err(unavailable("this node no longer keeps the body"));
            };
            if kept_len != len {
                return Err(unavailable("the kept body has another length"));
            }
            return Ok(BodyReader::new(
                Source::File { file, digest },
                len,
                None,
                self.counters.clone(),
            ));
        }
        let permit = tokio::time::timeout(CONNECT_TIMEOUT, self.fetching.clone().acquire_owned())
            .await
            .map_err(|_| unavailable("too many bodies are being fetched"))?
            .map_err(unavailable)?;
        let addr = self
            .backplane
            .node_link_addr(body.origin)
            .await
            .map_err(|refusal| unavailable(refusal.message))?
            .filter(|addr| !addr.is_empty())
            .ok_or_else(|| unavailable(format!("node {} is gone", body.origin)))?;
        let key = self.key().await?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, request(&addr, key, &body.id))
            .await
            .map_err(|_| unavailable(format!("node {} did not answer in time", body.origin)))??;
        let (stream, announced) = stream;
        if announced != len {
            return Err(unavailable(format!(
                "node {} has {announced} bytes for a body of {len}",
                body.origin
            )));
        }
        Ok(BodyReader::new(
            Source::Link(stream),
            len,
            Some(permit),
            self.counters.clone(),
        ))
    }

    /// Answers node-link requests on `listener` until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let tasks = tokio_util::task::TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(target: log::CONNECTION, %error, "node link accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let link = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    result = link.answer(stream) => if let Err(error) = result {
                        debug!(target: log::CONNECTION, %peer, %error, "node link request ended");
                    }
                }
            });
        }
        tasks.close();
        tasks.wait().await;
    }

    /// One request: checks the tag, then sends the body.
    async fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut hello = Vec::with_capacity(MAGIC.len() + 1 + NONCE_LEN);
        hello.extend_from_slice(MAGIC);
        hello.push(VERSION);
        hello.extend_from_slice(&nonce);
        stream.write_all(&hello).await?;
        let mut asked = [0u8; 16 + TAG_LEN];
        let Ok(handshake) = self.handshakes.clone().try_acquire_owned() else {
            return stream.write_all(&[BUSY]).await;
        };
        // A node sends its request at once: a connection that does not is dropped soon.
        tokio::time::timeout(CONNECT_TIMEOUT, stream.read_exact(&mut asked))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
        drop(handshake);
        let (id, tag) = asked.split_at(16);
        let key = match self.key().await {
            Ok(key) => key,
            Err(error) => {
                warn!(target: log::ERROR, %error, "node link key unavailable");
                return stream.write_all(&[BUSY]).await;
            }
        };
        if !key.verify(&[&nonce, id], tag) {
            warn!(target: log::ERROR, "node link request with a wrong key refused");
            self.counters.refused.fetch_add(1, Relaxed);
            return stream.write_all(&[REFUSED]).await;
        }
        let Ok(_permit) = self.serving.clone().try_acquire_owned() else {
            return stream.write_all(&[BUSY]).await;
        };
        let id = Uuid::from_slice(id).map_err(std::io::Error::other)?;
        let Some((mut file, len, digest)) = self.open_kept(&id).await else {
            return stream.write_all(&[UNKNOWN]).await;
        };
        let mut head = [0u8; 9];
        head[0] = OK;
        head[1..].copy_from_slice(&len.to_be_bytes());
        stream.write_all(&head).await?;
        let mut left = len;
        let mut buf = vec![0u8; 256 * 1024];
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(buf.len()).min(buf.len());
            file.read_exact(&mut buf[..want]).await?;
            timed(stream.write_all(&buf[..want])).await?;
            left -= want as u64;
        }
        timed(stream.write_all(&digest)).await?;
        self.counters.served.fetch_add(1, Relaxed);
        stream.shutdown().await
    }
}

/// Connects to an origin and asks for body `id`: the stream, ready for the body, and
/// the length the origin announced.
async fn request(addr: &str, key: &MacKey, id: &Uuid) -> Result<(TcpStream, u64), Unavailable> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| unavailable(format!("cannot reach the body's node at {addr}: {e}")))?;
    let broken = |e: std::io::Error| unavailable(format!("the body's node broke off: {e}"));
    let mut hello = [0u8; 5 + NONCE_LEN];
    stream.read_exact(&mut hello).await.map_err(broken)?;
    if &hello[..4] != MAGIC || hello[4] != VERSION {
        return Err(unavailable(format!("{addr} does not speak this node link")));
    }
    let nonce = &hello[5..];
    let tag = key.tag(&[nonce, id.as_bytes()]);
    let mut asked = Vec::with_capacity(16 + TAG_LEN);
    asked.extend_from_slice(id.as_bytes());
    asked.extend_from_slice(&tag);
    stream.write_all(&asked).await.map_err(broken)?;
    let status = stream.read_u8().await.map_err(broken)?;
    match status {
        OK => {}
        UNKNOWN => return Err(unavailable("the body's node no longer keeps it")),
        REFUSED => return Err(unavailable("the body's node refused this node's key")),
        BUSY => return Err(unavailable("the body's node is busy")),
        other => return Err(unavailable(format!("unknown node link status {other}"))),
    }
    let len = stream.read_u64().await.map_err(broken)?;
    Ok((stream, len))
}

async fn timed<T>(io: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    tokio::time::timeout(READ_TIMEOUT, io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "node link timed out"))?
}

impl BodyReader {
    fn new(
        source: Source,
        len: u64,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        counters: Arc<LinkCounters>,
    ) -> BodyReader {
        BodyReader {
            source,
            len,
            read: 0,
            hasher: Sha256::new(),
            _permit: permit,
            counters,
        }
    }

    /// The next piece of the body, at most `max_len` bytes, and with the last piece the
    /// body's digest, checked.
    pub async fn next(
        &mut self,
        max_len: usize,
    ) -> Result<(Bytes, Option<[u8; DIGEST_LEN]>), Unavailable> {
        let next = self.read_next(max_len).await;
        match &next {
            Err(_) => {
                self.counters.unavailable.fetch_add(1, Relaxed);
            }
            Ok((_, Some(_))) if matches!(self.source, Source::Link(_)) => {
                self.counters.fetched.fetch_add(1, Relaxed);
            }
            Ok(_) => {}
        }
        next
    }

    async fn read_next(
        &mut self,
        max_len: usize,
    ) -> Result<(Bytes, Option<[u8; DIGEST_LEN]>), Unavailable> {
        let left = self.len - self.read;
        let want = usize::try_from(left).unwrap_or(max_len).min(max_len);
        let mut data = BytesMut::zeroed(want);
        let broken = |e: std::io::Error| unavailable(format!("the body broke off: {e}"));
        match &mut self.source {
            Source::File { file, .. } => {
                file.read_exact(&mut data).await.map_err(broken)?;
            }
            Source::Link(stream) => {
                timed(stream.read_exact(&mut data)).await.map_err(broken)?;
            }
        }
        self.hasher.update(&data);
        self.read += want as u64;
        if self.read < self.len {
            return Ok((data.freeze(), None));
        }
        let actual: [u8; DIGEST_LEN] = self.hasher.clone().finalize().into();
        let expected = match &mut self.source {
            Source::File { digest, .. } => *digest,
            Source::Link(stream) => {
                let mut digest = [0u8; DIGEST_LEN];
                timed(stream.read_exact(&mut digest))
                    .await
                    .map_err(broken)?;
                digest
            }
        };
        if actual != expected {
            return Err(unavailable("the body's digest does not match"));
        }
        Ok((data.freeze(), Some(actual)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::BlobStore;

    async fn stored(blobs: &BlobStore, id: &Uuid) -> Blob {
        let mut upload = blobs.begin(3).await.unwrap();
        upload.write(b"abc").await.unwrap();
        let digest: [u8; DIGEST_LEN] = Sha256::digest(b"abc").into();
        let verified = blobs.verify(upload, &digest, false).await.unwrap();
        blobs.store(verified, id).unwrap()
    }

    #[tokio::test]
    async fn a_body_is_kept_while_its_message_can_be_in_the_history() {
        let blobs = BlobStore::temporary().unwrap();
        let link = NodeLink::new(super::super::memory::MemoryBackplane::new().node());
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        for (seq, id) in ids.iter().enumerate() {
            link.keep(*id, stored(&blobs, id).await);
            // History of 2: seq n pushes out seq n - 2.
            link.placed("files", *id, seq as u64 + 1, 2);
        }
        for (index, id) in ids.iter().enumerate() {
            let kept = link.open_kept(id).await.is_some();
            assert_eq!(kept, index >= 2, "body of seq {}", index + 1);
        }
        // Another channel's bodies are not pushed out by this one's.
        let other = Uuid::now_v7();
        link.keep(other, stored(&blobs, &other).await);
        link.placed("other", other, 1, 1);
        link.placed("files", Uuid::now_v7(), 100, 2);
        assert!(link.open_kept(&other).await.is_some());
        // A body whose message was not stored goes, file and budget.
        link.forget(&other);
        assert!(link.open_kept(&other).await.is_none());
        assert_eq!(blobs.bytes_used(), 0, "every body gone gave its bytes back");
        blobs.close();
    }
}
