//! One pub/sub connection to Redis: opened (TCP or a Unix socket), authenticated, and
//! read one reply at a time, so that what the node has not consumed stays in Redis.

use std::io;

use bytes::Bytes;
use futures::StreamExt;
use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::Push;
use super::frame::{Frame, FrameCodec};

/// What a confirmation confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Subscribe,
    Psubscribe,
    Unsubscribe,
    Punsubscribe,
}

impl Kind {
    pub fn command(self) -> &'static str {
        match self {
            Kind::Subscribe => "SUBSCRIBE",
            Kind::Psubscribe => "PSUBSCRIBE",
            Kind::Unsubscribe => "UNSUBSCRIBE",
            Kind::Punsubscribe => "PUNSUBSCRIBE",
        }
    }

    fn from_reply(kind: &[u8]) -> Option<Kind> {
        match kind {
            b"subscribe" => Some(Kind::Subscribe),
            b"psubscribe" => Some(Kind::Psubscribe),
            b"unsubscribe" => Some(Kind::Unsubscribe),
            b"punsubscribe" => Some(Kind::Punsubscribe),
            _ => None,
        }
    }
}

/// What arrives on a pub/sub connection.
#[derive(Debug)]
pub enum Incoming {
    Message(Push),
    Confirmation { kind: Kind, name: String },
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

pub struct PubSubConnection {
    frames: FramedRead<Reader, FrameCodec>,
    writer: Writer,
}

impl PubSubConnection {
    /// Connects and authenticates. The caller bounds the time.
    pub async fn connect(info: &ConnectionInfo) -> Result<PubSubConnection, String> {
        let (reader, writer): (Reader, Writer) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|error| error.to_string())?;
                stream
                    .set_nodelay(true)
                    .map_err(|error| error.to_string())?;
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|error| error.to_string())?;
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            _ => return Err("this kind of address is not supported".to_owned()),
        };
        let mut connection = PubSubConnection {
            frames: FramedRead::new(reader, FrameCodec),
            writer,
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = settings.username() {
                auth.arg(username);
            }
            auth.arg(password);
            connection
                .send(&auth.get_packed_command())
                .await
                .map_err(|error| error.to_string())?;
            match connection.frames.next().await {
                Some(Ok(Frame::Simple(_))) => {}
                Some(Ok(Frame::Error(error))) => return Err(format!("AUTH refused: {error}")),
                Some(Ok(other)) => return Err(format!("AUTH answered {other:?}")),
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("closed during AUTH".to_owned()),
            }
        }
        Ok(connection)
    }

    /// Sends `names` with `kind`'s command. The caller bounds the time.
    pub async fn request(&mut self, kind: Kind, names: &[String]) -> io::Result<()> {
        let command = redis::cmd(kind.command()).arg(names).get_packed_command();
        self.send(&command).await
    }

    async fn send(&mut self, command: &[u8]) -> io::Result<()> {
        self.writer.write_all(command).await?;
        self.writer.flush().await
    }

    /// The next message or confirmation; `None` once Redis closed the connection, `Err`
    /// for anything a pub/sub connection should not receive.
    pub async fn next(&mut self) -> Option<Result<Incoming, String>> {
        let frame = match self.frames.next().await? {
            Ok(frame) => frame,
            Err(error) => return Some(Err(error.to_string())),
        };
        Some(incoming(frame))
    }
}

fn incoming(frame: Frame) -> Result<Incoming, String> {
    let items = match frame {
        Frame::Array(items) => items,
        Frame::Error(error) => return Err(format!("Redis refused a request: {error}")),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let text = |bytes: &Bytes| String::from_utf8_lossy(bytes).into_owned();
    match items.as_slice() {
        [Frame::Bulk(kind), Frame::Bulk(topic), Frame::Bulk(payload)]
            if kind.as_ref() == b"message" =>
        {
            Ok(Incoming::Message(Push {
                topic: text(topic),
                pattern: None,
                payload: payload.clone(),
            }))
        }
        [
            Frame::Bulk(kind),
            Frame::Bulk(pattern),
            Frame::Bulk(topic),
            Frame::Bulk(payload),
        ] if kind.as_ref() == b"pmessage" => Ok(Incoming::Message(Push {
            topic: text(topic),
            pattern: Some(text(pattern)),
            payload: payload.clone(),
        })),
        [Frame::Bulk(kind), Frame::Bulk(name), Frame::Integer(_)] => match Kind::from_reply(kind) {
            Some(kind) => Ok(Incoming::Confirmation {
                kind,
                name: text(name),
            }),
            None => Err(format!("unexpected push `{}`", text(kind))),
        },
        _ => Err("unexpected push".to_owned()),
    }
}
