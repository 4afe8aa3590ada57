//! One connection from accept to close: the preface, the session handshake, the request
//! loop with its heartbeat deadline, and the cleanup that removes every trace of the
//! session from the hub.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use switchboard_proto::packet::{Disconnect, ErrorPacket, Packet, SessionAck, SessionInit};
use switchboard_proto::subject::Pattern;
use switchboard_proto::{
    ErrorCode, Flags, Frame, FrameCodec, FrameType, PREFACE_LEN, PROTOCOL_VERSION, Preface,
    ProtoError,
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
    pub subscriptions: HashMap<u64, Pattern>,
    /// Streamed bodies being received, by stream id; dropped (and their spool files
    /// removed) with the session.
    pub streams: HashMap<u64, crate::cmd::stream::Ingest>,
    /// Publishes waiting for the store to sync before they are acknowledged.
    pub durable_acks: Option<crate::cmd::publish::DurableAcks>,
    next_subscription_id: u64,
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

/// Reads frames from a byte stream into a buffer that is released while idle.
struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    codec: FrameCodec,
    /// The last read filled all the room the buffer had.
    streaming: bool,
}

/// A read buffer grown past this is given back once it is empty.
const KEEP_READ_BUFFER: usize = 16 * 1024;
/// Bytes asked of the socket per read while frames stream in.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes asked of the socket per read otherwise (what an idle connection holds).
const SMALL_READ: usize = 4 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// The next frame, `None` at a clean end of stream. Cancel-safe.
    /// The next frame if it is already complete in the buffer, without reading.
    fn buffered_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let frame = self.codec.decode(&mut self.buf)?;
        if frame.is_some() && self.buf.is_empty() && self.buf.capacity() > KEEP_READ_BUFFER {
            self.buf = BytesMut::new();
        }
        Ok(frame)
    }

    async fn read_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            // A connection that sends a frame now and then waits with a small buffer;
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
            let read = self.reader.read_buf(&mut self.buf).await?;
            self.streaming = read == room;
            if read == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ProtoError::Truncated {
                        needed: self.buf.len() + 1,
                        have: self.buf.len(),
                    })
                };
            }
        }
    }
}

/// Serves one accepted connection until it closes.
pub(crate) async fn serve<S>(hub: Arc<Hub>, stream: S, peer: Peer)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let span = info_span!("conn", peer = %peer.describe());
    run(hub, stream, peer).instrument(span).await;
}

async fn run<S>(hub: Arc<Hub>, stream: S, peer: Peer)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = FrameReader {
        reader,
        buf: BytesMut::new(),
        codec: hub.codec.clone(),
        streaming: false,
    };
    let handshake = hub.config.handshake_timeout;
    let opening = tokio::select! {
        () = hub.shutdown.cancelled() => return,
        opening = tokio::time::timeout(handshake, open(&hub, &mut reader, &mut writer)) => opening,
    };
    let init = match opening {
        Ok(Ok(init)) => init,
        Ok(Err(ProtoError::Io(error))) => {
            // Gone before a session opened (a reset, a health check): nothing was refused.
            debug!(target: log::CONNECTION, %error, "connection ended during the handshake");
            return;
        }
        Ok(Err(refused)) => {
            Counters::add(&hub.counters.protocol_errors, 1);
            warn!(target: log::ERROR, %refused, "connection refused");
            return;
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
            return;
        }
    };
    let (request_id, init) = init;

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
        name: init.name.to_string(),
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
        return;
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
        return;
    }
    let heartbeat = negotiate_heartbeat(&hub, init.heartbeat_ms);

    let (outbox, rx) = Outbox::new(
        client_id,
        hub.config.outbound_queue,
        hub.config.outbound_queue_bytes,
        &hub.shutdown,
        hub.counters.slow_consumer_skipped.clone(),
    );
    let writer_task = tokio::spawn(writer::run(rx, writer, hub.codec.clone(), client_id));
    let connected_since_us = now_us();
    let mut session = Session {
        caller: Caller {
            client_id,
            name: init.name.clone(),
            outbox: outbox.clone(),
        },
        info,
        connected_since_us,
        subscriptions: HashMap::new(),
        streams: HashMap::new(),
        durable_acks: None,
        next_subscription_id: 0,
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
    hub.directory.insert(ClientEntry {
        client_id,
        name: init.name.to_string(),
        connected_since_us,
        outbox: outbox.clone(),
    });
    Counters::add(&hub.counters.connections_total, 1);
    info!(target: log::CONNECTION, client_id, name = %init.name, %session_id, admin, heartbeat_ms = heartbeat.as_millis() as u64, "session opened");

    let (code, reason) = request_loop(&hub, &mut session, &mut reader, heartbeat * 3).await;

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
    let mut writer_task = writer_task;
    if tokio::time::timeout(grace, &mut writer_task).await.is_err() {
        writer_task.abort();
    }
    hub.hooks.on_disconnect(&info, &reason);
    info!(target: log::CONNECTION, client_id, name = %init.name, code = %code, %reason, "session closed");
}

/// Exchanges prefaces and reads SESSION_INIT. Errors have already been told to the peer.
async fn open<R, W>(
    hub: &Hub,
    reader: &mut FrameReader<R>,
    writer: &mut W,
) -> Result<(u32, SessionInit), ProtoError>
where
    R: AsyncRead + Unpin,
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
    let frame = match reader.read_frame().await {
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
    Shutdown,
    Killed(ErrorCode, String),
    Read(Result<Result<Option<Frame>, ProtoError>, tokio::time::error::Elapsed>),
}

/// Serves requests until the session ends; returns why it ended.
async fn request_loop<R: AsyncRead + Unpin>(
    hub: &Hub,
    session: &mut Session,
    reader: &mut FrameReader<R>,
    idle_limit: Duration,
) -> (ErrorCode, String) {
    let client_id = session.caller.client_id;
    loop {
        // A frame already in the buffer is served without setting up the wait below (a
        // timer and two cancellation futures per frame cost more than a small publish).
        // The order of the checks is the select's: shutdown, then the kill switch.
        let buffered = if hub.shutdown.is_cancelled() || session.caller.outbox.is_killed() {
            Ok(None)
        } else {
            reader.buffered_frame()
        };
        let wake = match buffered {
            Ok(Some(frame)) => Wake::Read(Ok(Ok(Some(frame)))),
            Err(error) => Wake::Read(Ok(Err(error))),
            Ok(None) => tokio::select! {
                biased;
                () = hub.shutdown.cancelled() => Wake::Shutdown,
                (code, reason) = session.caller.outbox.killed() => Wake::Killed(code, reason),
                read = tokio::time::timeout(idle_limit, reader.read_frame()) => Wake::Read(read),
            },
        };
        match wake {
            Wake::Shutdown => {
                return (ErrorCode::ShuttingDown, "server shutting down".to_owned());
            }
            Wake::Killed(code, reason) => {
                warn!(target: log::ERROR, client_id, %code, %reason, "closing session");
                return (code, reason);
            }
            Wake::Read(Err(_)) => {
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
            Wake::Read(Ok(Ok(None))) => {
                return (
                    ErrorCode::Normal,
                    "connection closed by the client".to_owned(),
                );
            }
            Wake::Read(Ok(Err(ProtoError::Io(error)))) => {
                // The peer is gone (a reset): like an end of stream, not a protocol error.
                return (ErrorCode::Normal, format!("connection lost: {error}"));
            }
            Wake::Read(Ok(Err(error))) => {
                Counters::add(&hub.counters.protocol_errors, 1);
                warn!(target: log::ERROR, client_id, %error, "bad frame; closing");
                session
                    .reply(
                        0,
                        Packet::Error(ErrorPacket::new(error.code(), error.to_string())),
                    )
                    .await;
                return (error.code(), error.to_string());
            }
            Wake::Read(Ok(Ok(Some(frame)))) => match cmd::apply(hub, session, frame).await {
                Flow::Continue => {}
                Flow::Close(code, reason) => return (code, reason),
            },
        }
    }
}
