//! One connection from accept to close: the preface, the session handshake, the request
//! loop with its heartbeat deadline, and the cleanup that removes every trace of the
//! session from the hub.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use switchboard_proto::packet::{Disconnect, ErrorPacket, Packet, SessionAck, SessionInit};
use switchboard_proto::subject::Pattern;
use switchboard_proto::{
    ErrorCode, Flags, Frame, FrameCodec, FrameType, PREFACE_LEN, PROTOCOL_VERSION, Preface,
    ProtoError, Text,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;
use tracing::{Instrument, debug, info, info_span, warn};
use uuid::Uuid;

use crate::cmd::{self, Flow};
use crate::error::Refusal;
use crate::hooks::SessionInfo;
use crate::hub::stats::Counters;
use crate::hub::{Caller, Hub, directory::ClientEntry};
use crate::log;
use crate::outbox::{Outbox, Outgoing};
use crate::time::now_us;
use crate::writer;

/// Where a connection came from.
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    Tcp(std::net::SocketAddr),
    #[cfg_attr(not(unix), allow(dead_code))]
    Unix,
}

impl Peer {
    fn describe(&self) -> String {
        match self {
            Peer::Tcp(addr) => format!("tcp {addr}"),
            Peer::Unix => "unix".to_owned(),
        }
    }
}

/// A session's own state, owned by its connection task.
pub(crate) struct Session {
    pub caller: Caller,
    pub info: SessionInfo,
    pub connected_since_us: u64,
    pub subscriptions: Subscriptions,
    /// Streamed bodies being received, by stream id; dropped (and their spool files
    /// removed) with the session.
    pub streams: HashMap<u64, crate::cmd::stream::Ingest>,
    /// Publishes waiting for the store to sync before they are acknowledged.
    pub durable_acks: Option<crate::cmd::publish::DurableAcks>,
    next_subscription_id: u64,
    /// Nothing heard for this long ends the session (three heartbeats). Kept here rather
    /// than passed along, where each async layer would hold a copy for the session's life.
    idle_limit: Duration,
}

impl Session {
    pub fn next_subscription_id(&mut self) -> u64 {
        self.next_subscription_id += 1;
        self.next_subscription_id
    }

    pub fn outbox(&self) -> &Outbox {
        &self.caller.outbox
    }

    /// Queues a reply, waiting for room in this session's own queue.
    pub async fn reply(&self, request_id: u32, packet: Packet) {
        self.reply_flags(request_id, Flags::empty(), packet).await;
    }

    pub async fn reply_flags(&self, request_id: u32, flags: Flags, packet: Packet) {
        let _ = self
            .caller
            .outbox
            .send(Outgoing::Packet {
                request_id,
                flags,
                packet: Box::new(packet),
            })
            .await;
    }

    /// Queues an ERROR answering `request_id`.
    pub async fn refuse(&self, request_id: u32, refusal: Refusal) {
        info!(target: log::ERROR, client_id = self.caller.client_id, request_id, code = %refusal.code, reason = %refusal.message, "request refused");
        self.reply(request_id, Packet::Error(refusal.to_packet()))
            .await;
    }
}

/// A byte stream a connection is served on (TCP, or a Unix socket), split into halves
/// whose read half can wait for bytes without a buffer to read them into.
pub(crate) trait Transport: Send + 'static {
    type Read: Readable;
    type Write: AsyncWrite + Send + Unpin + 'static;
    fn into_halves(self) -> (Self::Read, Self::Write);
}

/// A read half that can be waited on until it has something to read.
pub(crate) trait Readable: AsyncRead + Send + Sync + Unpin + 'static {
    /// Ready once a read would not block (bytes, the end of the stream, or an error).
    /// A poll function rather than the streams' `readable()`, whose future is several
    /// times larger and would be held by every idle connection.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
}

impl Transport for tokio::net::TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Readable for tokio::net::tcp::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }
}

#[cfg(unix)]
impl Transport for tokio::net::UnixStream {
    type Read = tokio::net::unix::OwnedReadHalf;
    type Write = tokio::net::unix::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

#[cfg(unix)]
impl Readable for tokio::net::unix::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }
}

/// A session's subscriptions by id, in id order. A vector rather than a hash map: most
/// sessions hold one or a few, and a map's smallest table is several times their size.
#[derive(Default)]
pub(crate) struct Subscriptions {
    entries: Vec<(u64, Pattern)>,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn insert(&mut self, id: u64, pattern: Pattern) {
        // Grown by doubling from one entry, not from the four a vector starts with.
        if self.entries.len() == self.entries.capacity() {
            self.entries.reserve_exact(self.entries.len().max(1));
        }
        match self.entries.binary_search_by_key(&id, |(id, _)| *id) {
            Ok(at) => self.entries[at].1 = pattern,
            // Ids only grow, so this is nearly always the end.
            Err(at) => self.entries.insert(at, (id, pattern)),
        }
    }

    pub fn remove(&mut self, id: &u64) -> Option<Pattern> {
        let at = self.entries.binary_search_by_key(id, |(id, _)| *id).ok()?;
        Some(self.entries.remove(at).1)
    }

    pub fn drain(&mut self) -> impl Iterator<Item = (u64, Pattern)> + '_ {
        self.entries.drain(..)
    }
}

/// Reads frames from a byte stream into a buffer that is released while idle.
///
/// It holds no codec: the hub's is cloned by whoever decodes a batch of frames, so that
/// a waiting connection does not keep a copy of its own.
struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    /// The last read filled all the room the buffer had.
    streaming: bool,
}

/// A read buffer grown past this is given back once it is empty.
const KEEP_READ_BUFFER: usize = 16 * 1024;
/// Bytes asked of the socket per read while frames stream in.
const READ_CHUNK: usize = switchboard_proto::batch::READ_CHUNK_BYTES;
/// Bytes asked of the socket per read otherwise.
const SMALL_READ: usize = 4 * 1024;

impl<R: Readable> FrameReader<R> {
    fn new(reader: R) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::new(),
            streaming: false,
        }
    }

    /// The next frame if it is already complete in the buffer, without reading.
    fn buffered_frame(&mut self, codec: &mut FrameCodec) -> Result<Option<Frame>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let frame = codec.decode(&mut self.buf)?;
        if frame.is_some() && self.buf.is_empty() && self.buf.capacity() > KEEP_READ_BUFFER {
            self.buf = BytesMut::new();
        }
        Ok(frame)
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream. Cancel-safe.
    async fn fill(&mut self) -> std::io::Result<usize> {
        loop {
            // A connection that sends a frame now and then reads into a small buffer;
            // once a read fills all the room it had, frames are streaming in and reads
            // get room for a burst (a few KiB would mean one system call per handful of
            // 1 KiB publishes).
            let want = if self.streaming {
                READ_CHUNK
            } else {
                SMALL_READ
            };
            if self.buf.capacity() - self.buf.len() < want / 4 {
                self.buf.reserve(want);
            }
            let room = self.buf.capacity() - self.buf.len();
            // Between frames, a read that would block means the peer has nothing more to
            // say for now: that is when the buffer goes (a partial frame keeps it).
            let between_frames = self.buf.is_empty();
            let read = {
                let mut read = std::pin::pin!(self.reader.read_buf(&mut self.buf));
                std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
                    Poll::Pending if between_frames => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(result) => Poll::Ready(Some(result)),
                })
                .await
            };
            let Some(read) = read else {
                // Idle: wait for the socket without a buffer (several KiB per connection
                // otherwise), and take one again once bytes arrive.
                self.buf = BytesMut::new();
                std::future::poll_fn(|cx| self.reader.poll_read_ready(cx)).await?;
                continue;
            };
            let read = read?;
            self.streaming = read == room;
            return Ok(read);
        }
    }

    /// The next frame, `None` at a clean end of stream.
    async fn read_frame(&mut self, codec: &mut FrameCodec) -> Result<Option<Frame>, ProtoError> {
        loop {
            if let Some(frame) = self.buffered_frame(codec)? {
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                return self.ended();
            }
        }
    }

    /// What the end of the stream means: a clean close between frames, or a truncated
    /// frame.
    fn ended(&self) -> Result<Option<Frame>, ProtoError> {
        if self.buf.is_empty() {
            Ok(None)
        } else {
            Err(ProtoError::Truncated {
                needed: self.buf.len() + 1,
                have: self.buf.len(),
            })
        }
    }

    /// Bytes of buffer the reader holds (for tests of idle memory).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Serves one accepted connection until it closes. Not an async fn: that would be one
/// more layer of state around `run` for every connection's life.
pub(crate) fn serve<S: Transport>(
    hub: Arc<Hub>,
    stream: S,
    peer: Peer,
) -> impl Future<Output = ()> + Send {
    let span = info_span!("conn", peer = %peer.describe());
    run(hub, stream, peer).instrument(span)
}

/// An open session and what serving it needs.
struct Opened<R> {
    session: Session,
    reader: FrameReader<R>,
}

/// The connection task. Its future lives as long as the connection, so what it holds
/// while waiting is what an idle connection costs: the handshake, serving requests and
/// the cleanup are each boxed, and their state exists only while they run.
async fn run<S: Transport>(hub: Arc<Hub>, stream: S, peer: Peer) {
    let Some(Opened {
        mut session,
        mut reader,
    }) = Box::pin(start(&hub, stream, peer)).await
    else {
        return;
    };
    let (code, reason) = request_loop(&hub, &mut session, &mut reader).await;
    drop(reader);
    Box::pin(finish(&hub, session, code, reason)).await;
}

/// The handshake and the opening of the session; `None` if no session opened.
async fn start<S: Transport>(hub: &Arc<Hub>, stream: S, peer: Peer) -> Option<Opened<S::Read>> {
    let (reader, mut writer) = stream.into_halves();
    let mut reader = FrameReader::new(reader);
    let handshake = hub.config.handshake_timeout;
    let opening = tokio::select! {
        () = hub.shutdown.cancelled() => return None,
        opening = tokio::time::timeout(handshake, open(hub, &mut reader, &mut writer)) => opening,
    };
    let init = match opening {
        Ok(Ok(init)) => init,
        Ok(Err(ProtoError::Io(error))) => {
            // Gone before a session opened (a reset, a health check): nothing was refused.
            debug!(target: log::CONNECTION, %error, "connection ended during the handshake");
            return None;
        }
        Ok(Err(refused)) => {
            Counters::add(&hub.counters.protocol_errors, 1);
            warn!(target: log::ERROR, %refused, "connection refused");
            return None;
        }
        Err(_) => {
            warn!(target: log::ERROR, "no session opened within {handshake:?}; closing");
            let _ = refuse_raw(
                &hub.codec,
                &mut writer,
                0,
                ErrorCode::SessionRequired,
                "handshake timed out",
            )
            .await;
            return None;
        }
    };
    let (request_id, init) = init;
    // The name is kept for the session's life: a copy of its own, because the decoded
    // one is a slice of the read buffer, which it would keep from being freed.
    let name = Text::from(init.name.as_str());

    let admin = matches!(peer, Peer::Unix)
        || hub
            .config
            .admin_token
            .as_deref()
            .is_some_and(|token| !token.is_empty() && init.credentials == token.as_bytes());
    let client_id = hub.next_client_id();
    let session_id = Uuid::now_v7();
    let info = SessionInfo {
        client_id,
        session_id,
        name: name.to_string(),
        peer: peer.describe(),
        admin,
    };
    if hub.directory.len() >= hub.config.max_connections {
        let _ = refuse_raw(
            &hub.codec,
            &mut writer,
            request_id,
            ErrorCode::LimitReached,
            "the server is at its connection limit",
        )
        .await;
        return None;
    }
    if let Err(reason) = hub.hooks.on_connect(&info) {
        let _ = refuse_raw(
            &hub.codec,
            &mut writer,
            request_id,
            ErrorCode::Rejected,
            &reason,
        )
        .await;
        return None;
    }
    let heartbeat = negotiate_heartbeat(hub, init.heartbeat_ms);

    let (outbox, rx) = Outbox::new(
        client_id,
        hub.config.outbound_queue,
        hub.config.outbound_queue_bytes,
        &hub.shutdown,
        hub.counters.slow_consumer_skipped.clone(),
    );
    writer::start(rx, writer, hub.clone(), client_id);
    let connected_since_us = now_us();
    let session = Session {
        caller: Caller {
            client_id,
            // Moved, not cloned: a clone of a copied `Text` allocates a shared count.
            name,
            outbox: outbox.clone(),
        },
        info,
        connected_since_us,
        subscriptions: Subscriptions::default(),
        streams: HashMap::new(),
        durable_acks: None,
        next_subscription_id: 0,
        idle_limit: heartbeat * 3,
    };
    let ack = SessionAck {
        client_id,
        session_id,
        heartbeat_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
        max_frame: hub.config.max_frame,
        max_body: hub.config.max_body,
        software: concat!("switchboard/", env!("CARGO_PKG_VERSION")).into(),
    };
    session.reply(request_id, Packet::SessionAck(ack)).await;
    // Only now can others reach the session (relays by id, group posts by name), so the
    // SESSION_ACK is always the first frame it is sent.
    let name = &session.caller.name;
    hub.directory.insert(ClientEntry {
        client_id,
        name: name.clone(),
        connected_since_us,
        outbox,
    });
    Counters::add(&hub.counters.connections_total, 1);
    info!(target: log::CONNECTION, client_id, name = %name, %session_id, admin, heartbeat_ms = heartbeat.as_millis() as u64, "session opened");
    Some(Opened { session, reader })
}

/// Removes every trace of the session from the hub, says goodbye and lets the writer
/// flush.
async fn finish(hub: &Hub, mut session: Session, code: ErrorCode, reason: String) {
    let client_id = session.caller.client_id;
    for (_, pattern) in session.subscriptions.drain() {
        hub.routes.write().remove(&pattern, client_id);
    }
    hub.directory.remove(client_id);
    if code == ErrorCode::SlowConsumer {
        Counters::add(&hub.counters.slow_consumers_disconnected, 1);
    }
    // Publishes already stored get their answers before the goodbye.
    if let Some(acks) = session.durable_acks.take() {
        acks.finish(hub.config.shutdown_grace).await;
    }
    let goodbye = if code != ErrorCode::Normal {
        Disconnect::new(code, reason.as_str())
    } else {
        Disconnect::new(code, "goodbye")
    };
    let outbox = session.caller.outbox.clone();
    let writer = outbox.writer();
    // A slow consumer's queue may be full: then it gets no DISCONNECT, only the close.
    let said_goodbye = matches!(
        tokio::time::timeout(
            Duration::from_millis(100),
            outbox.send_last(Outgoing::Close(goodbye)),
        )
        .await,
        Ok(Ok(()))
    );
    // The disconnect hook gets the session's info; the session itself (with its outbox
    // sender) goes now, so that the writer sees the queue close.
    let info = session.info.clone();
    let name = session.caller.name.clone();
    drop(session);
    drop(outbox);
    // The writer gets the grace period to flush what is queued, unless not even the
    // DISCONNECT fitted: then its client is not reading, and waiting only holds the
    // socket and the queue (and a shutdown) for nothing.
    let grace = if said_goodbye {
        hub.config.shutdown_grace
    } else {
        Duration::ZERO
    };
    writer.finished_within(grace).await;
    hub.hooks.on_disconnect(&info, &reason);
    info!(target: log::CONNECTION, client_id, name = %name, code = %code, %reason, "session closed");
}

/// Exchanges prefaces and reads SESSION_INIT. Errors have already been told to the peer.
async fn open<R, W>(
    hub: &Hub,
    reader: &mut FrameReader<R>,
    writer: &mut W,
) -> Result<(u32, SessionInit), ProtoError>
where
    R: Readable,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; PREFACE_LEN];
    reader.reader.read_exact(&mut preface).await?;
    let offered = match Preface::decode(&preface) {
        Ok(preface) => preface.version,
        Err(ProtoError::LooksLikeHttp) => {
            let body = "This port speaks the Switchboard binary protocol, not HTTP. Use a Switchboard client (see `switchboard --help`).\n";
            let response = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = writer.write_all(response.as_bytes()).await;
            let _ = writer.shutdown().await;
            return Err(ProtoError::LooksLikeHttp);
        }
        Err(error) => {
            let _ = writer.write_all(&Preface::encode(PROTOCOL_VERSION)).await;
            let _ = refuse_raw(&hub.codec, writer, 0, error.code(), &error.to_string()).await;
            return Err(error);
        }
    };
    let version = match Preface::negotiate(offered) {
        Ok(version) => version,
        Err(error) => {
            let _ = writer.write_all(&Preface::encode(PROTOCOL_VERSION)).await;
            let _ = refuse_raw(&hub.codec, writer, 0, error.code(), &error.to_string()).await;
            return Err(error);
        }
    };
    writer.write_all(&Preface::encode(version)).await?;
    let frame = match reader.read_frame(&mut hub.codec.clone()).await {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            // Closed between frames: the peer left, it sent nothing wrong.
            return Err(ProtoError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Err(error) => {
            let _ = refuse_raw(&hub.codec, writer, 0, error.code(), &error.to_string()).await;
            return Err(error);
        }
    };
    let request_id = frame.request_id;
    // Judged by the type before decoding: any other first frame, even a malformed one,
    // is SESSION_REQUIRED.
    if frame.frame_type != FrameType::SessionInit {
        let message = format!(
            "the first frame must be SESSION_INIT, not {}",
            frame.frame_type
        );
        let _ = refuse_raw(
            &hub.codec,
            writer,
            request_id,
            ErrorCode::SessionRequired,
            &message,
        )
        .await;
        return Err(ProtoError::UnexpectedFrame(frame.frame_type));
    }
    let init = match SessionInit::from_frame(&frame) {
        Ok(init) => init,
        Err(error) => {
            let _ = refuse_raw(
                &hub.codec,
                writer,
                request_id,
                error.code(),
                &error.to_string(),
            )
            .await;
            return Err(error);
        }
    };
    if init.name.is_empty() || init.name.len() > 64 || init.name.chars().any(char::is_control) {
        let message = "a client name is 1 to 64 bytes without control characters";
        let _ = refuse_raw(
            &hub.codec,
            writer,
            request_id,
            ErrorCode::InvalidArgument,
            message,
        )
        .await;
        return Err(ProtoError::InvalidField {
            frame: frame.frame_type,
            field: "client name",
            reason: message.to_owned(),
        });
    }
    Ok((request_id, init))
}

/// Writes an ERROR frame straight to the socket, before a session (and its writer) exist.
async fn refuse_raw<W: AsyncWrite + Unpin>(
    codec: &FrameCodec,
    writer: &mut W,
    request_id: u32,
    code: ErrorCode,
    message: &str,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    let packet = ErrorPacket::new(code, message);
    if codec
        .encode_packet(request_id, Flags::empty(), &packet, &mut buf)
        .is_ok()
    {
        writer.write_all(&buf).await?;
    }
    writer.shutdown().await
}

fn negotiate_heartbeat(hub: &Hub, asked_ms: u32) -> Duration {
    if asked_ms == 0 {
        return hub.config.heartbeat;
    }
    Duration::from_millis(u64::from(asked_ms))
        .clamp(hub.config.heartbeat_min, hub.config.heartbeat_max)
}

enum Wake {
    Closing,
    Read(Result<std::io::Result<usize>, tokio::time::error::Elapsed>),
}

/// Serves requests until the session ends; returns why it ended.
///
/// This is where an idle connection waits, so it holds only what waiting needs; serving
/// frames takes far more (the future of every request handler, a codec), which is boxed
/// and lives only while there are bytes to serve.
async fn request_loop<R: Readable>(
    hub: &Hub,
    session: &mut Session,
    reader: &mut FrameReader<R>,
) -> (ErrorCode, String) {
    loop {
        // Frames may be waiting already: sent right behind SESSION_INIT, or left by a
        // batch that stopped at a partial frame or for the kill switch.
        if !reader.buf.is_empty()
            && let Some(end) = Box::pin(serve_buffered(hub, session, reader)).await
        {
            return end;
        }
        // The kill switch is a child of the shutdown token, so it wakes for both.
        let wake = tokio::select! {
            biased;
            () = session.caller.outbox.kill_switch().cancelled() => Wake::Closing,
            read = tokio::time::timeout(session.idle_limit, reader.fill()) => Wake::Read(read),
        };
        let client_id = session.caller.client_id;
        match wake {
            Wake::Closing if hub.shutdown.is_cancelled() => {
                return (ErrorCode::ShuttingDown, "server shutting down".to_owned());
            }
            Wake::Closing => {
                let (code, reason) = session.caller.outbox.kill_reason();
                warn!(target: log::ERROR, client_id, %code, %reason, "closing session");
                return (code, reason);
            }
            Wake::Read(Err(_)) => {
                let idle_limit = session.idle_limit;
                Counters::add(&hub.counters.heartbeat_timeouts, 1);
                warn!(target: log::CONNECTION, client_id, "no heartbeat for {idle_limit:?}; closing");
                return (
                    ErrorCode::HeartbeatTimeout,
                    format!(
                        "nothing received for {} ms (three heartbeats)",
                        idle_limit.as_millis()
                    ),
                );
            }
            Wake::Read(Ok(Err(error))) => {
                // The peer is gone (a reset): like an end of stream, not a protocol error.
                return (ErrorCode::Normal, format!("connection lost: {error}"));
            }
            Wake::Read(Ok(Ok(0))) => {
                return match reader.ended() {
                    Ok(_) => (
                        ErrorCode::Normal,
                        "connection closed by the client".to_owned(),
                    ),
                    Err(error) => Box::pin(bad_frame(hub, session, error)).await,
                };
            }
            Wake::Read(Ok(Ok(_))) => {}
        }
    }
}

/// Serves every frame complete in the read buffer; returns why the session ends if it
/// does, `None` once the buffer holds no complete frame or the session is being closed
/// (which the request loop then sees). Frames in the buffer are served one after another
/// without setting up the request loop's wait (a timer and a cancellation future per
/// frame cost more than a small publish).
async fn serve_buffered<R: Readable>(
    hub: &Hub,
    session: &mut Session,
    reader: &mut FrameReader<R>,
) -> Option<(ErrorCode, String)> {
    let mut codec = hub.codec.clone();
    loop {
        if hub.shutdown.is_cancelled() || session.caller.outbox.is_killed() {
            return None;
        }
        let frame = match reader.buffered_frame(&mut codec) {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(error) => return Some(bad_frame(hub, session, error).await),
        };
        if let Flow::Close(code, reason) = cmd::apply(hub, session, frame).await {
            return Some((code, reason));
        }
    }
}

/// Tells the peer why its frame is refused; the session ends with that reason.
async fn bad_frame(hub: &Hub, session: &Session, error: ProtoError) -> (ErrorCode, String) {
    Counters::add(&hub.counters.protocol_errors, 1);
    warn!(target: log::ERROR, client_id = session.caller.client_id, %error, "bad frame; closing");
    session
        .reply(
            0,
            Packet::Error(ErrorPacket::new(error.code(), error.to_string())),
        )
        .await;
    (error.code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use switchboard_proto::Limits;
    use switchboard_proto::packet::Heartbeat;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn the_read_buffer_is_released_while_no_bytes_come_and_taken_again_when_they_do() {
        let (mut client, server) = pair().await;
        let (read_half, _write_half) = server.into_halves();
        let mut reader = FrameReader::new(read_half);
        let mut codec = FrameCodec::new(Limits::default());
        let mut frames = BytesMut::new();
        for request_id in 1..=2 {
            codec
                .encode_packet(
                    request_id,
                    Flags::empty(),
                    &Packet::Heartbeat(Heartbeat),
                    &mut frames,
                )
                .unwrap();
        }
        // One frame and half of the next: the partial frame keeps the buffer.
        let half = frames.len() * 3 / 4;
        client.write_all(&frames[..half]).await.unwrap();
        let first = reader.read_frame(&mut codec).await.unwrap().unwrap();
        assert_eq!(first.request_id, 1);
        let waiting = tokio::time::timeout(Duration::from_millis(50), reader.fill()).await;
        assert!(waiting.is_err(), "nothing more was sent");
        assert!(reader.buffer_capacity() > 0);

        client.write_all(&frames[half..]).await.unwrap();
        let second = reader.read_frame(&mut codec).await.unwrap().unwrap();
        assert_eq!(second.request_id, 2);
        // Between frames, with nothing to read, the buffer goes.
        let waiting = tokio::time::timeout(Duration::from_millis(50), reader.fill()).await;
        assert!(waiting.is_err(), "nothing more was sent");
        assert_eq!(reader.buffer_capacity(), 0);

        // Bytes arriving wake the idle reader, which takes a buffer again.
        let mut more = BytesMut::new();
        codec
            .encode_packet(3, Flags::empty(), &Packet::Heartbeat(Heartbeat), &mut more)
            .unwrap();
        client.write_all(&more).await.unwrap();
        let third = tokio::time::timeout(Duration::from_secs(5), reader.read_frame(&mut codec))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(third.request_id, 3);

        drop(client);
        let end = tokio::time::timeout(Duration::from_secs(5), reader.read_frame(&mut codec))
            .await
            .unwrap()
            .unwrap();
        assert!(end.is_none(), "a clean end of stream");
    }
}
