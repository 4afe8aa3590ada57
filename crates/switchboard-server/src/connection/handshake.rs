//! The handshake: prefaces are exchanged (an HTTP request gets a plain `400`), then the
//! first frame must be a valid SESSION_INIT. Until a session exists there is no writer
//! task, so a refusal is written straight to the socket, by [`Refused::tell`] alone.

use std::fmt;

use bytes::BytesMut;
use switchboard_proto::packet::{ErrorPacket, SessionInit};
use switchboard_proto::{
    ErrorCode, Flags, FrameCodec, FrameType, PREFACE_LEN, PROTOCOL_VERSION, Preface, ProtoError,
};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame_reader::{FrameReader, ReadError};
use super::transport::Readable;
use crate::metrics::RefusalReason;

/// How the opening of a connection ended without a session.
pub(super) enum Ended {
    /// The peer left, or the connection broke: nothing was refused.
    Gone(std::io::Error),
    /// The server began shutting down first.
    ShuttingDown,
    /// The connection is refused; the peer is told why.
    Refused(Refused),
}

impl From<Refused> for Ended {
    fn from(refused: Refused) -> Self {
        Ended::Refused(refused)
    }
}

/// The answer of a connection refused before it has a session.
pub(super) enum Refused {
    /// An HTTP request: a plain `400` saying what this port speaks.
    Http,
    /// An ERROR frame answering `request_id`.
    Error {
        request_id: u32,
        code: ErrorCode,
        message: String,
        /// The peer's preface was refused before this server sent its own, which goes
        /// first so that the peer can read the ERROR.
        preface_first: bool,
    },
}

impl Refused {
    pub fn new(request_id: u32, code: ErrorCode, message: impl Into<String>) -> Refused {
        Refused::Error {
            request_id,
            code,
            message: message.into(),
            preface_first: false,
        }
    }

    /// The answer to a preface this server does not take.
    fn preface(error: ProtoError) -> Refused {
        match error {
            ProtoError::LooksLikeHttp => Refused::Http,
            error => Refused::Error {
                request_id: 0,
                code: error.code(),
                message: error.to_string(),
                preface_first: true,
            },
        }
    }

    /// The answer to a first frame this server does not take.
    fn frame(request_id: u32, error: &ProtoError) -> Refused {
        Refused::new(request_id, error.code(), error.to_string())
    }

    /// Tells the peer and closes the write half. Failures are ignored: the connection
    /// closes either way.
    pub async fn tell<W: AsyncWrite + Unpin>(self, codec: &FrameCodec, writer: &mut W) {
        match self {
            Refused::Http => {
                let body = "This port speaks the Switchboard binary protocol, not HTTP. Use a Switchboard client (see `switchboard --help`).\n";
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = writer.write_all(response.as_bytes()).await;
            }
            Refused::Error {
                request_id,
                code,
                message,
                preface_first,
            } => {
                if preface_first {
                    let _ = writer.write_all(&Preface::encode(PROTOCOL_VERSION)).await;
                }
                let mut buf = BytesMut::new();
                let packet = ErrorPacket::new(code, message);
                if codec
                    .encode_packet(request_id, Flags::empty(), &packet, &mut buf)
                    .is_ok()
                {
                    let _ = writer.write_all(&buf).await;
                }
            }
        }
        let _ = writer.shutdown().await;
    }
}

impl Refused {
    /// Why the connection was refused, as metrics count it. The refusals are told by
    /// their codes: each code is given before a session opens for one reason only.
    pub fn reason(&self) -> RefusalReason {
        match self {
            Refused::Http => RefusalReason::Protocol,
            Refused::Error { code, .. } => match code {
                ErrorCode::AuthFailed => RefusalReason::Auth,
                ErrorCode::LimitReached => RefusalReason::ConnectionLimit,
                ErrorCode::Rejected => RefusalReason::Rejected,
                ErrorCode::SessionRequired => RefusalReason::Handshake,
                ErrorCode::ServerBusy => RefusalReason::Busy,
                _ => RefusalReason::Protocol,
            },
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Http => f.write_str("an HTTP request"),
            Refused::Error { code, message, .. } => write!(f, "{code}: {message}"),
        }
    }
}

/// Exchanges prefaces and reads SESSION_INIT; returns it with its request id.
pub(super) async fn handshake<R, W>(
    codec: &FrameCodec,
    reader: &mut FrameReader<R>,
    writer: &mut W,
) -> Result<(u32, SessionInit), Ended>
where
    R: Readable,
    W: AsyncWrite + Unpin,
{
    exchange_prefaces(reader, writer).await?;
    read_session_init(codec, reader).await
}

async fn exchange_prefaces<R, W>(reader: &mut FrameReader<R>, writer: &mut W) -> Result<(), Ended>
where
    R: Readable,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; PREFACE_LEN];
    reader
        .unbuffered()
        .read_exact(&mut preface)
        .await
        .map_err(Ended::Gone)?;
    let version = Preface::decode(&preface)
        .and_then(|offered| Preface::negotiate(offered.version))
        .map_err(Refused::preface)?;
    writer
        .write_all(&Preface::encode(version))
        .await
        .map_err(Ended::Gone)
}

async fn read_session_init<R: Readable>(
    codec: &FrameCodec,
    reader: &mut FrameReader<R>,
) -> Result<(u32, SessionInit), Ended> {
    let frame = match reader.read_frame(&mut codec.clone()).await {
        Ok(Some(frame)) => frame,
        // Closed between frames: the peer left, it sent nothing wrong.
        Ok(None) => return Err(Ended::Gone(std::io::ErrorKind::UnexpectedEof.into())),
        Err(ReadError::Frame(ProtoError::Io(error))) => return Err(Ended::Gone(error)),
        Err(ReadError::Frame(error)) => return Err(Refused::frame(0, &error).into()),
        Err(ReadError::Busy(busy)) => {
            let message = busy.message();
            return Err(Refused::new(busy.head.request_id, ErrorCode::ServerBusy, message).into());
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
        return Err(Refused::new(request_id, ErrorCode::SessionRequired, message).into());
    }
    let init =
        SessionInit::from_frame(&frame).map_err(|error| Refused::frame(request_id, &error))?;
    if let Err(error) = switchboard_proto::subject::validate_client_name(&init.name) {
        let message = error.to_string();
        return Err(Refused::new(request_id, ErrorCode::InvalidArgument, message).into());
    }
    Ok((request_id, init))
}
