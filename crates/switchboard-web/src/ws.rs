//! `/ws`: the protocol over WebSocket. Each binary message carries protocol bytes (the
//! preface, then frames), so a browser speaks exactly what a TCP client speaks; the
//! socket is attached to the hub as a connection of its own.
//!
//! Pages from other sites may open a WebSocket to any address a browser reaches, and the
//! browser sends their Origin; the upgrade is refused (403) unless that origin is the
//! listener's own or listed in `allowed_origins`. A request without Origin is not from a
//! page (browsers always send it on a WebSocket), so it is let in: such a client can
//! reach the TCP listener as well, and logs in like one.
//!
//! [`WsBytes`] turns the socket into a byte stream: what arrives in binary messages is
//! read in order, and each write goes out as one binary message, sent by a task of the
//! stream's own (a write cannot wait on the socket's flush: the server's writer does not
//! flush between batches). A text message ends the connection with close code 1003 and
//! a reason.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, Stream, StreamExt};
use switchboard_client::ErrorCode;
use switchboard_proto::limits::{WEBSOCKET_MESSAGE_BYTES, websocket_message_limit};
use switchboard_server::AttachedPeer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, error::Error::Capacity};
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;

use crate::AppState;
use crate::error::ApiError;

/// Messages queued for the socket before writes wait (each at most
/// [`WEBSOCKET_MESSAGE_BYTES`]).
const WRITE_QUEUE: usize = 8;

/// How long a socket may take to send what was queued once its connection is done with
/// it; a peer that stopped reading is dropped after that.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why a text message ends the connection (the close reason the peer sees).
pub(crate) const TEXT_REFUSED: &str =
    "text message refused: the protocol travels in binary messages";

/// Who may open a WebSocket.
#[derive(Debug, Clone)]
pub(crate) struct OriginPolicy {
    /// Origins allowed besides the listener's own, as `scheme://host[:port]`, lowercase.
    allowed: Vec<String>,
    /// `"*"` was listed: any origin.
    any: bool,
    /// "http" or "https": the scheme of the listener's own pages.
    scheme: &'static str,
}

impl OriginPolicy {
    pub(crate) fn new(allowed: &[String], tls: bool) -> OriginPolicy {
        OriginPolicy {
            allowed: allowed
                .iter()
                .filter(|origin| origin.as_str() != "*")
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any: allowed.iter().any(|origin| origin == "*"),
            scheme: if tls { "https" } else { "http" },
        }
    }

    /// Whether a request with these headers may upgrade.
    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        if self.any {
            return true;
        }
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.to_ascii_lowercase();
        if self.allowed.contains(&origin) {
            return true;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map(str::to_ascii_lowercase);
        match host {
            Some(host) => {
                origin == format!("{}://{host}", self.scheme) && names_this_machine(&host)
            }
            None => false,
        }
    }
}

/// Whether `host` (a Host header) names the listener by address or as `localhost`. A
/// DNS name is never taken for the listener's own: a name can be pointed at any address
/// (DNS rebinding), so a page from it would pass for same-origin; names are listed in
/// `allowed_origins` instead.
fn names_this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok()
}

pub(crate) fn routes(origins: OriginPolicy) -> Router<AppState> {
    let origins = Arc::new(origins);
    Router::new().route(
        "/ws",
        get(move |ws, info, state, headers| upgrade(ws, info, state, headers, origins)),
    )
}

async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    headers: HeaderMap,
    origins: Arc<OriginPolicy>,
) -> Response {
    if !origins.allows(&headers) {
        return ApiError::new(
            ErrorCode::Forbidden,
            "this origin may not open a WebSocket here (see allowed_origins)",
        )
        .into_response();
    }
    // One message never needs more than one whole frame (or what a sender puts in one
    // message, if more); a WebSocket frame never more than its message.
    let limit = websocket_message_limit(&state.hub.frame_limits());
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            state
                .hub
                .attach(WsBytes::new(socket), AttachedPeer::WebSocket(addr));
        })
}

/// A WebSocket as a byte stream of its binary messages.
pub(crate) struct WsBytes {
    reader: StreamReader<Incoming, Bytes>,
    writer: PollSender<Bytes>,
    /// Dropped with the stream: the sending task then has [`CLOSE_GRACE`] left.
    _done: oneshot::Sender<()>,
}

impl WsBytes {
    pub(crate) fn new(socket: WebSocket) -> WsBytes {
        let (sink, stream) = socket.split();
        let (queue, queued) = mpsc::channel(WRITE_QUEUE);
        let (close, closing) = oneshot::channel();
        let (done, finished) = oneshot::channel();
        tokio::spawn(send_queued(sink, queued, closing, finished));
        WsBytes {
            reader: StreamReader::new(Incoming {
                stream,
                close: Some(close),
            }),
            writer: PollSender::new(queue),
            _done: done,
        }
    }
}

/// Sends each queued write as a binary message, flushing once nothing more is queued,
/// until the stream is done with the socket (then closes it), the reader asks for a
/// close, or the socket fails. Once the stream is dropped, a peer that does not read
/// what is left gets [`CLOSE_GRACE`], then the socket is dropped.
async fn send_queued(
    mut sink: SplitSink<WebSocket, Message>,
    mut queued: mpsc::Receiver<Bytes>,
    mut closing: oneshot::Receiver<CloseFrame>,
    finished: oneshot::Receiver<()>,
) {
    let sending = async {
        let mut close_asked = true;
        loop {
            tokio::select! {
                biased;
                close = &mut closing, if close_asked => match close {
                    Ok(frame) => {
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        return;
                    }
                    Err(_) => close_asked = false,
                },
                next = queued.recv() => {
                    let Some(bytes) = next else {
                        let _ = sink.close().await;
                        return;
                    };
                    if sink.feed(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                    while let Ok(bytes) = queued.try_recv() {
                        if sink.feed(Message::Binary(bytes)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let abandoned = async {
        let _ = finished.await;
        tokio::time::sleep(CLOSE_GRACE).await;
    };
    tokio::select! {
        () = sending => {}
        () = abandoned => {}
    }
}

/// The payloads of the binary messages received, ending at the peer's close.
struct Incoming {
    stream: SplitStream<WebSocket>,
    /// Asks the sending task to close the socket with a reason.
    close: Option<oneshot::Sender<CloseFrame>>,
}

impl Incoming {
    /// Has the socket closed with this code and reason (once).
    fn close_with(&mut self, code: u16, reason: &str) {
        if let Some(close) = self.close.take() {
            let _ = close.send(CloseFrame {
                code,
                reason: reason.into(),
            });
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let message = match ready!(self.stream.poll_next_unpin(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(None),
                Some(Err(error)) => {
                    let error = error.into_inner();
                    if let Some(Capacity(too_large)) = error.downcast_ref::<tungstenite::Error>() {
                        let reason = too_large.to_string();
                        self.close_with(close_code::SIZE, &reason);
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            reason,
                        ))));
                    }
                    return Poll::Ready(Some(Err(io::Error::other(error))));
                }
                Some(Ok(message)) => message,
            };
            match message {
                Message::Binary(bytes) => return Poll::Ready(Some(Ok(bytes))),
                Message::Text(_) => {
                    self.close_with(close_code::UNSUPPORTED, TEXT_REFUSED);
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        TEXT_REFUSED,
                    ))));
                }
                // Pings are answered by the socket itself, as it reads.
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

impl WsBytes {
    /// Queues `bytes` as one message once there is room.
    fn poll_queue(
        &mut self,
        cx: &mut Context<'_>,
        message: impl FnOnce() -> Bytes,
    ) -> Poll<io::Result<()>> {
        if ready!(self.writer.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        match self.writer.send_item(message()) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

impl AsyncWrite for WsBytes {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let take = buf.len().min(WEBSOCKET_MESSAGE_BYTES);
        ready!(self.poll_queue(cx, || Bytes::copy_from_slice(&buf[..take])))?;
        Poll::Ready(Ok(take))
    }

    /// A write batch (many frames, or a frame and its body) goes out as one message,
    /// gathered in one copy.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total = bufs.iter().map(|buf| buf.len()).sum::<usize>();
        let take = total.min(WEBSOCKET_MESSAGE_BYTES);
        ready!(self.poll_queue(cx, || switchboard_proto::limits::websocket_message(bufs)))?;
        Poll::Ready(Ok(take))
    }

    fn is_write_vectored(&self) -> bool {
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_listeners_own_pages_and_listed_origins_may_open_a_socket() {
        let policy = OriginPolicy::new(&["https://app.example.com/".to_owned()], false);
        assert!(policy.allows(&headers(None, "hub:7480")));
        assert!(policy.allows(&headers(Some("http://127.0.0.1:7480"), "127.0.0.1:7480")));
        assert!(policy.allows(&headers(Some("http://localhost:7480"), "localhost:7480")));
        assert!(policy.allows(&headers(Some("http://[::1]:7480"), "[::1]:7480")));
        assert!(policy.allows(&headers(Some("https://APP.example.com"), "hub:7480")));
        // Another site, another port, another scheme, a DNS name not listed.
        assert!(!policy.allows(&headers(Some("http://evil.example"), "127.0.0.1:7480")));
        assert!(!policy.allows(&headers(Some("http://127.0.0.1:9999"), "127.0.0.1:7480")));
        assert!(!policy.allows(&headers(Some("https://127.0.0.1:7480"), "127.0.0.1:7480")));
        assert!(!policy.allows(&headers(
            Some("http://rebound.example:7480"),
            "rebound.example:7480"
        )));
        assert!(
            OriginPolicy::new(&["*".to_owned()], false).allows(&headers(Some("http://x"), "h"))
        );
    }
}
