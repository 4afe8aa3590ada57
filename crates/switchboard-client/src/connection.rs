//! Opening a session: the transport (TCP or Unix socket), the preface exchange and the
//! SESSION_INIT / SESSION_ACK handshake, plus [`FrameReader`], which turns the read half
//! of the socket into frames.
//!
//! Nothing here runs in the background: once [`open`] returns, the reader half goes to
//! the dispatch task and the write half to the writer task.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use switchboard_proto::packet::{Disconnect, ErrorPacket, SessionAck, SessionInit};
use switchboard_proto::{
    Flags, Frame, FrameCodec, FrameType, Limits, MacKey, PREFACE_LEN, PROTOCOL_VERSION, Preface,
    ProtoError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;

use crate::config::{ClientConfig, ServerAddress};
use crate::direct::{SharedSocket, SharedWriter};
use crate::error::{ClientError, CloseReason, ErrorDetail, Result};
use switchboard_proto::frame_buffers::{FrameBuffers, KEEP_FOR};

/// The read half of a transport, whichever it is.
pub(crate) type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a transport, whichever it is.
pub(crate) type BoxedWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Software name sent in SESSION_INIT.
pub(crate) const SOFTWARE: &str = concat!("switchboard-client/", env!("CARGO_PKG_VERSION"));

/// Request id of SESSION_INIT; the request table starts afresh once the session is open.
const SESSION_INIT_ID: u32 = 1;

/// Room kept free in the read buffer, so that one read can take in many small frames.
const READ_CHUNK: usize = switchboard_proto::batch::READ_CHUNK_BYTES;
/// Frames from this long up to [`OWN_BUFFER_MAX_FRAME_LEN`] are read into a buffer of
/// their own, of their length, once their prefix is in: a large body is then neither
/// copied when the read buffer grows around it nor keeps other frames' bytes alive.
const OWN_BUFFER_FRAME_LEN: usize = switchboard_proto::batch::WRITE_APART_BYTES;
const OWN_BUFFER_MAX_FRAME_LEN: usize = 1024 * 1024;
/// Room a frame's own buffer has past its end, so that the read finishing the frame also
/// brings the head of the next one.
const NEXT_HEAD_ROOM: usize = 1024;

/// A session that completed its handshake.
pub(crate) struct Session {
    pub reader: FrameReader,
    pub writer: BoxedWriter,
    /// The codec for outgoing frames, with the server's limits in force.
    pub codec: FrameCodec,
    pub ack: SessionAck,
    /// The socket's write half, for requests written by their callers (plain TCP and
    /// Unix sockets only).
    pub socket: Option<SharedSocket>,
}

/// Connects to the configured server and opens a session, all within the request
/// timeout.
pub(crate) async fn open(config: &ClientConfig) -> Result<Session> {
    let address = config.address()?;
    within_timeout(config, async {
        let (reader, writer, socket) = connect_transport(&address).await?;
        let opened = handshake(reader, writer, config).await;
        let opened = opened.map(|session| Session { socket, ..session });
        match (&address, opened) {
            // A TLS 1.3 server refuses a client certificate after the client's side of the
            // handshake is done: the refusal arrives as an alert on the first read.
            (ServerAddress::Tls(host_port, _), Err(error)) => Err(tls_refusal(host_port, error)),
            (_, opened) => opened,
        }
    })
    .await
}

/// Opens a session over a transport the caller already connected, within the request
/// timeout.
pub(crate) async fn open_over(
    reader: BoxedReader,
    writer: BoxedWriter,
    config: &ClientConfig,
) -> Result<Session> {
    within_timeout(config, handshake(reader, writer, config)).await
}

/// Runs the opening of a session within the configured request timeout.
async fn within_timeout(
    config: &ClientConfig,
    opening: impl std::future::Future<Output = Result<Session>>,
) -> Result<Session> {
    let limit = config.request_timeout();
    tokio::time::timeout(limit, opening).await.map_err(|_| {
        ClientError::from(ErrorDetail::Timeout {
            what: "connecting",
            after: limit,
        })
    })?
}

/// A TLS fault that surfaced as an I/O error, in plain words; any other error as it is.
fn tls_refusal(host_port: &str, error: ClientError) -> ClientError {
    match error.detail() {
        ErrorDetail::Io(io) => match crate::tls::rustls_error(io) {
            Some(cause) => crate::tls::handshake_error(host_port, cause),
            None => error,
        },
        _ => error,
    }
}

/// Opens the socket and splits it into owned halves; a plain socket's write half is also
/// returned for sharing with callers.
async fn connect_transport(
    address: &ServerAddress,
) -> Result<(BoxedReader, BoxedWriter, Option<SharedSocket>)> {
    match address {
        ServerAddress::Tcp(host_port) => {
            let stream = tokio::net::TcpStream::connect(host_port.as_str()).await?;
            // Frames are coalesced by the writer already; waiting for more would only add
            // latency to the last frame of each batch.
            stream.set_nodelay(true)?;
            let (read, write) = stream.into_split();
            let socket = SharedSocket::Tcp(Arc::new(write));
            let writer = SharedWriter(socket.clone());
            Ok((Box::new(read), Box::new(writer), Some(socket)))
        }
        ServerAddress::Tls(host_port, options) => {
            let stream = tokio::net::TcpStream::connect(host_port.as_str()).await?;
            stream.set_nodelay(true)?;
            let stream = crate::tls::connect(stream, host_port, options).await?;
            let (read, write) = tokio::io::split(stream);
            Ok((Box::new(read), Box::new(write), None))
        }
        ServerAddress::WebSocket {
            url,
            host_port,
            tls,
        } => {
            let stream = tokio::net::TcpStream::connect(host_port.as_str()).await?;
            stream.set_nodelay(true)?;
            match tls {
                None => {
                    let socket = crate::websocket::connect(url, stream).await?;
                    let (read, write) = tokio::io::split(socket);
                    Ok((Box::new(read), Box::new(write), None))
                }
                Some(options) => {
                    let stream = crate::tls::connect(stream, host_port, options).await?;
                    let socket = crate::websocket::connect(url, stream).await?;
                    let (read, write) = tokio::io::split(socket);
                    Ok((Box::new(read), Box::new(write), None))
                }
            }
        }
        #[cfg(unix)]
        ServerAddress::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?;
            let (read, write) = stream.into_split();
            let socket = SharedSocket::Unix(Arc::new(write));
            let writer = SharedWriter(socket.clone());
            Ok((Box::new(read), Box::new(writer), Some(socket)))
        }
        #[cfg(not(unix))]
        ServerAddress::Unix(path) => Err(ErrorDetail::InvalidAddress(format!(
            "unix:{} (Unix sockets are not available on this platform)",
            path.display()
        ))
        .into()),
    }
}

/// The preface exchange and SESSION_INIT / SESSION_ACK over an open transport.
pub(crate) async fn handshake(
    reader: BoxedReader,
    mut writer: BoxedWriter,
    config: &ClientConfig,
) -> Result<Session> {
    let mac = config.hmac_key().map(MacKey::new);
    let mut codec = FrameCodec::new(Limits::default()).with_mac_key(mac);
    let mut reader = FrameReader::new(reader, codec.clone());

    writer.write_all(&Preface::encode(PROTOCOL_VERSION)).await?;
    writer.flush().await?;
    let preface = reader.read_preface().await?;
    if preface.version != PROTOCOL_VERSION {
        return Err(reader
            .refusal_or(
                ErrorDetail::Protocol(ProtoError::UnsupportedVersion {
                    found: preface.version,
                    supported: PROTOCOL_VERSION,
                })
                .into(),
            )
            .await);
    }

    let mut init = SessionInit {
        name: config.name().into(),
        heartbeat_ms: u32::try_from(config.heartbeat().as_millis()).unwrap_or(u32::MAX),
        credentials: config.credentials().cloned().unwrap_or_default(),
        software: SOFTWARE.into(),
        ..SessionInit::default()
    };
    if let Some((user, password)) = config.password() {
        init.user = user.into();
        init.password = password.clone();
    }
    if let Some(jwt) = config.jwt() {
        init.jwt = jwt.clone();
    }
    let mut out = BytesMut::new();
    codec.encode_packet(SESSION_INIT_ID, Flags::empty(), &init, &mut out)?;
    writer.write_all(&out).await?;
    writer.flush().await?;

    let ack = loop {
        let Some(frame) = reader.read_frame().await? else {
            return Err(ClientError::closed(CloseReason::Eof));
        };
        match frame.frame_type {
            FrameType::SessionAck => break SessionAck::from_frame(&frame)?,
            FrameType::Error => return Err(error_from_frame(&frame)),
            FrameType::Disconnect => return Err(disconnect_from_frame(&frame)),
            // A server may probe liveness at any time; answering can wait for the session.
            FrameType::Heartbeat => continue,
            other => return Err(ProtoError::UnexpectedFrame(other).into()),
        }
    };

    if ack.max_frame > 0 {
        // What the server accepts bounds what this client sends. What it sends back
        // (lists, relayed bodies) is only known to fit its own frames, so the read side
        // never goes below the default limit.
        let sending = Limits {
            max_content_len: ack.max_frame,
            ..codec.limits()
        };
        codec.set_limits(sending);
        reader.codec.set_limits(Limits {
            max_content_len: ack.max_frame.max(Limits::DEFAULT_MAX_CONTENT),
            ..sending
        });
    }
    Ok(Session {
        reader,
        writer,
        codec,
        ack,
        socket: None,
    })
}

/// The server's ERROR frame as a client error.
pub(crate) fn error_from_frame(frame: &Frame) -> ClientError {
    match ErrorPacket::from_frame(frame) {
        Ok(error) => ClientError::server(error.code, error.message.as_str()),
        Err(error) => error.into(),
    }
}

/// Why the server said it was closing, from its DISCONNECT frame.
pub(crate) fn disconnect_reason(frame: &Frame) -> CloseReason {
    match Disconnect::from_frame(frame) {
        Ok(disconnect) => CloseReason::Disconnect {
            code: disconnect.code,
            reason: disconnect.reason.to_string(),
        },
        Err(error) => CloseReason::Protocol(format!("undecodable DISCONNECT: {error}")),
    }
}

fn disconnect_from_frame(frame: &Frame) -> ClientError {
    ClientError::closed(disconnect_reason(frame))
}

/// Reads frames from the read half of a transport through its own buffer, so that one
/// read system call can take in many frames and a frame's body is never copied (a large
/// frame gets a buffer of its own, read into directly; see [`OWN_BUFFER_FRAME_LEN`]).
pub(crate) struct FrameReader {
    io: BoxedReader,
    buffer: BytesMut,
    codec: FrameCodec,
    /// The own buffer of the large frame at the front (`buffer` is then empty); it is
    /// never grown.
    own: Option<Vec<u8>>,
    /// Where own buffers come from and go back to once the application is done with
    /// their frames.
    frame_buffers: Arc<FrameBuffers>,
    /// The last frame had a buffer of its own: the next read asks for little, in case it
    /// is the head of another large frame (whose bytes would be copied to its buffer).
    after_own: bool,
}

impl FrameReader {
    pub(crate) fn new(io: BoxedReader, codec: FrameCodec) -> Self {
        FrameReader {
            io,
            buffer: BytesMut::with_capacity(READ_CHUNK),
            codec,
            own: None,
            frame_buffers: FrameBuffers::new(),
            after_own: false,
        }
    }

    /// Reads more bytes into the buffer; 0 means the peer closed its side.
    async fn fill(&mut self) -> Result<usize> {
        if let Some(own) = &mut self.own {
            // Up to the end of the frame and the head of the next one: a buffer used
            // again may be larger. Never full here: a whole frame is taken before the
            // next read.
            let end = switchboard_proto::codec::declared_frame_len(own)
                .map_or(own.capacity(), |len| len + NEXT_HEAD_ROOM);
            let room = end.min(own.capacity()) - own.len();
            return Ok(self.io.read_buf(&mut own.limit(room)).await?);
        }
        let want = if self.after_own {
            NEXT_HEAD_ROOM
        } else {
            READ_CHUNK
        };
        if self.buffer.capacity() - self.buffer.len() < want / 4 {
            self.buffer.reserve(want);
        }
        if self.frame_buffers.in_use() {
            // Buffers kept for large frames are let go once none has come for a while.
            if let Ok(read) =
                tokio::time::timeout(KEEP_FOR, self.io.read_buf(&mut self.buffer)).await
            {
                self.after_own = false;
                return Ok(read?);
            }
            self.frame_buffers.release_unused();
        }
        let read = self.io.read_buf(&mut self.buffer).await?;
        self.after_own = false;
        Ok(read)
    }

    /// Moves a large frame at the front of the buffer, once its prefix is in and while
    /// the rest is still to come, to a buffer of its own length (and [`NEXT_HEAD_ROOM`]):
    /// what came in is copied once, the rest is read straight into it.
    fn give_large_frame_its_own_buffer(&mut self) -> Result<()> {
        if self.own.is_some() {
            return Ok(());
        }
        let Some(len) = switchboard_proto::codec::declared_frame_len(&self.buffer) else {
            return Ok(());
        };
        if !(OWN_BUFFER_FRAME_LEN..=OWN_BUFFER_MAX_FRAME_LEN).contains(&len)
            || len <= self.buffer.len()
        {
            return Ok(());
        }
        // Lengths past the limits are refused before anything is reserved for them.
        self.codec.frame_head(&self.buffer)?;
        let mut own = self.frame_buffers.take(len + NEXT_HEAD_ROOM);
        own.extend_from_slice(&self.buffer);
        self.buffer.clear();
        self.own = Some(own);
        Ok(())
    }

    /// Decodes the frame at the front of the buffer, if it is whole.
    fn decode(&mut self) -> Result<Option<Frame>> {
        self.give_large_frame_its_own_buffer()?;
        let Some(own) = &self.own else {
            return Ok(self.codec.decode(&mut self.buffer)?);
        };
        let Some(len) = switchboard_proto::codec::declared_frame_len(own) else {
            return Ok(None);
        };
        if own.len() < len {
            self.codec.check_partial(own)?;
            return Ok(None);
        }
        let Some(own) = self.own.take() else {
            return Ok(None);
        };
        let have = own.len();
        let own = self.frame_buffers.lend(own);
        let Some((frame, len)) = self.codec.decode_whole(&own)? else {
            return Err(ProtoError::Truncated { needed: len, have }.into());
        };
        // What came after the frame (the head of the next one, if it came) goes back to
        // the shared buffer.
        self.buffer.extend_from_slice(&own[len..]);
        self.after_own = true;
        Ok(Some(frame))
    }

    /// What the end of the stream means: a clean close between frames, or a truncated
    /// frame.
    fn ended(&mut self) -> Result<Option<Frame>> {
        if let Some(own) = &self.own {
            let needed = switchboard_proto::codec::declared_frame_len(own).unwrap_or(own.len() + 1);
            return Err(ProtoError::Truncated {
                needed,
                have: own.len(),
            }
            .into());
        }
        Ok(self.codec.decode_eof(&mut self.buffer)?)
    }

    /// Reads the server's 10-byte preface. A TLS record instead (a TLS server answering
    /// a plain client's preface with an alert) is told as such, with what to do.
    pub(crate) async fn read_preface(&mut self) -> Result<Preface> {
        while self.buffer.len() < PREFACE_LEN {
            if self.fill().await? == 0 {
                if looks_like_tls(&self.buffer) {
                    return Err(ErrorDetail::Tls(TLS_PORT.into()).into());
                }
                return Err(ClientError::closed(CloseReason::Eof));
            }
        }
        let mut bytes = [0u8; PREFACE_LEN];
        bytes.copy_from_slice(&self.buffer.split_to(PREFACE_LEN));
        Preface::decode(&bytes).map_err(|error| {
            if looks_like_tls(&bytes) {
                ErrorDetail::Tls(TLS_PORT.into()).into()
            } else {
                error.into()
            }
        })
    }

    /// The next frame, or `None` when the server closed the connection between frames.
    ///
    /// Cancel-safe: bytes already read stay in the buffer for the next call.
    /// The next frame if it is already complete in the buffer, without reading.
    pub(crate) fn buffered_frame(&mut self) -> Result<Option<Frame>> {
        if self.buffer.is_empty() && self.own.is_none() {
            return Ok(None);
        }
        self.decode()
    }

    pub(crate) async fn read_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                return self.ended();
            }
        }
    }

    /// After a refused preface, the ERROR the server may have sent before closing,
    /// or else `fallback`.
    async fn refusal_or(&mut self, fallback: ClientError) -> ClientError {
        const WAIT_FOR_REFUSAL: Duration = Duration::from_millis(500);
        match tokio::time::timeout(WAIT_FOR_REFUSAL, self.read_frame()).await {
            Ok(Ok(Some(frame))) if frame.frame_type == FrameType::Error => error_from_frame(&frame),
            _ => fallback,
        }
    }
}

/// What a plain client is told when the server answered in TLS.
const TLS_PORT: &str = "the server answered with TLS: this port takes TLS connections (connect to tls://HOST:PORT, or pass --tls)";

/// Whether `bytes` begin a TLS record: a handshake or an alert, TLS 1.x.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}
