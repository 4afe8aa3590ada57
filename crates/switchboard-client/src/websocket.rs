//! The protocol over WebSocket (`ws://HOST:PORT/ws`, `wss://...`): the same bytes as on
//! TCP, carried in binary messages (see PROTOCOL.md, "WebSocket"). [`WsStream`] makes the
//! socket a byte stream: reads take the messages' payloads in order, each write goes out
//! as one message, and a flush flushes the socket. The client's writer flushes whenever
//! its queue runs empty, so nothing waits in the socket's buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use switchboard_proto::Limits;
use switchboard_proto::limits::{WEBSOCKET_MESSAGE_BYTES, websocket_message_limit};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// Opens the WebSocket at `url` over `stream` (TCP, or TLS for wss://).
pub(crate) async fn connect<S>(url: &str, stream: S) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limit = websocket_message_limit(&Limits::default());
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .map_err(|error| match error {
                tungstenite::Error::Io(io) => io,
                tungstenite::Error::Http(response) => io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!(
                        "the server refused the WebSocket: HTTP {}{}",
                        response.status(),
                        response
                            .body()
                            .as_deref()
                            .map(|body| format!(": {}", String::from_utf8_lossy(body).trim()))
                            .unwrap_or_default()
                    ),
                ),
                other => io::Error::other(other),
            })?;
    Ok(WsStream {
        socket,
        unread: Bytes::new(),
    })
}

/// A WebSocket as a byte stream of its binary messages.
pub(crate) struct WsStream<S> {
    socket: WebSocketStream<S>,
    /// What is left of the last message received.
    unread: Bytes,
}

fn to_io(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(io) => io,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::ErrorKind::BrokenPipe.into()
        }
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            match ready!(Pin::new(&mut this.socket).poll_next(cx)) {
                // The end of the stream: the server closed the socket.
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Err(tungstenite::Error::ConnectionClosed)) => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(to_io(error))),
                Some(Ok(Message::Binary(bytes))) => this.unread = bytes,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the server sent a text message; the protocol travels in binary messages",
                    )));
                }
                // Pings are answered by the socket itself.
                Some(Ok(_)) => {}
            }
        }
        let take = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..take]);
        this.unread.advance(take);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        message: impl FnOnce() -> Bytes,
    ) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.socket).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.socket)
            .start_send(Message::Binary(message()))
            .map_err(to_io)?;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let take = buf.len().min(WEBSOCKET_MESSAGE_BYTES);
        ready!(
            self.get_mut()
                .poll_send(cx, || Bytes::copy_from_slice(&buf[..take]))
        )?;
        Poll::Ready(Ok(take))
    }

    /// A write batch goes out as one message, gathered in one copy.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total = bufs.iter().map(|buf| buf.len()).sum::<usize>();
        let take = total.min(WEBSOCKET_MESSAGE_BYTES);
        ready!(
            self.get_mut()
                .poll_send(cx, || switchboard_proto::limits::websocket_message(bufs))
        )?;
        Poll::Ready(Ok(take))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket)
            .poll_flush(cx)
            .map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().socket).poll_close(cx)) {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(error) => Poll::Ready(Err(to_io(error))),
        }
    }
}
