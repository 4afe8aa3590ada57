//! `/ws`: the protocol over WebSocket. Each binary message carries protocol bytes (the
//! preface, then frames), so a browser speaks exactly what a TCP client speaks; the
//! socket is attached to the hub as a connection of its own.
//!
//! [`WsBytes`] turns the socket into a byte stream: what arrives in binary messages is
//! read in order, and each write goes out as one binary message, sent by a task of the
//! stream's own (a write cannot wait on the socket's flush: the server's writer does not
//! flush between batches).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, Stream, StreamExt};
use switchboard_server::AttachedPeer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;

use crate::AppState;

/// The largest binary message written: larger writes are split (a reader takes the
/// messages as one stream, so a frame may span several).
const MAX_WRITE_MESSAGE: usize = 1 << 20;

/// Messages queued for the socket before writes wait.
const WRITE_QUEUE: usize = 16;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
) -> Response {
    ws.on_upgrade(move |socket| async move {
        state
            .hub
            .attach(WsBytes::new(socket), AttachedPeer::WebSocket(addr));
    })
}

/// A WebSocket as a byte stream of its binary messages.
pub(crate) struct WsBytes {
    reader: StreamReader<Incoming, Bytes>,
    writer: PollSender<Bytes>,
}

impl WsBytes {
    pub(crate) fn new(socket: WebSocket) -> WsBytes {
        let (sink, stream) = socket.split();
        let (queue, queued) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(send_queued(sink, queued));
        WsBytes {
            reader: StreamReader::new(Incoming(stream)),
            writer: PollSender::new(queue),
        }
    }
}

/// Sends each queued write as a binary message until the stream is dropped or the
/// socket fails, then closes the socket.
async fn send_queued(mut sink: SplitSink<WebSocket, Message>, mut queued: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = queued.recv().await {
        if sink.send(Message::Binary(bytes)).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

/// The payloads of the binary messages received, ending at the peer's close.
struct Incoming(SplitStream<WebSocket>);

impl Stream for Incoming {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let message = match ready!(self.0.poll_next_unpin(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(None),
                Some(Err(error)) => return Poll::Ready(Some(Err(io::Error::other(error)))),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Binary(bytes) => return Poll::Ready(Some(Ok(bytes))),
                Message::Text(_) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message: the protocol travels in binary messages",
                    ))));
                }
                // Answered by the socket itself.
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
            }
        }
    }
}

impl AsyncRead for WsBytes {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for WsBytes {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if ready!(self.writer.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let take = buf.len().min(MAX_WRITE_MESSAGE);
        match self.writer.send_item(Bytes::copy_from_slice(&buf[..take])) {
            Ok(()) => Poll::Ready(Ok(take)),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued messages go out as soon as the sending task gets to them.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.close();
        Poll::Ready(Ok(()))
    }
}
