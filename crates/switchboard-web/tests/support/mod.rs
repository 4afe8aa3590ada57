//! What the web listener's tests share: a hub with its web listener on port 0, and a
//! small HTTP/1.1 client over a plain TcpStream (requests, and an event stream read as
//! it arrives).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_server::{Server, ServerBuilder, ServerConfig, ServerHandle};
use switchboard_web::{WebConfig, WebServer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(10);

/// A hub (TCP on port 0) and its web listener on port 0, `change` applied to the
/// server's configuration first.
pub async fn hub_with_web(change: impl FnOnce(&mut ServerConfig)) -> (ServerHandle, WebServer) {
    start(Server::builder().configure(change), WebConfig::default()).await
}

/// The hub `builder` makes, with a TCP listener on port 0, and its web listener on port 0
/// with the rest of `config`.
pub async fn start(builder: ServerBuilder, config: WebConfig) -> (ServerHandle, WebServer) {
    let server = builder.listen_tcp("127.0.0.1:0").start().await.unwrap();
    let web = WebServer::start(
        server.hub(),
        WebConfig {
            addr: "127.0.0.1:0".to_owned(),
            ..config
        },
    )
    .await
    .unwrap();
    (server, web)
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A request to send.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<Vec<u8>>,
    /// Send the body chunked, without a Content-Length.
    pub chunked: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            headers: Vec::new(),
            body: None,
            chunked: false,
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn json(self, value: serde_json::Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(value.to_string())
    }

    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    pub fn basic(self, user: &str, password: &str) -> Self {
        use base64::Engine;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("Authorization", format!("Basic {encoded}"))
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    fn head(&self) -> String {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n",
            self.method, self.path
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let has_length = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
        match (&self.body, self.chunked) {
            _ if has_length => {}
            (Some(_), true) => head.push_str("Transfer-Encoding: chunked\r\n"),
            (Some(body), false) => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
            (None, _) if self.method == "POST" => head.push_str("Content-Length: 0\r\n"),
            (None, _) => {}
        }
        head.push_str("\r\n");
        head
    }

    /// Sends the request and reads the whole response.
    pub async fn send(self, addr: SocketAddr) -> Reply {
        tokio::time::timeout(WAIT, self.exchange(addr))
            .await
            .expect("an answer in time")
    }

    async fn exchange(self, addr: SocketAddr) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(self.head().as_bytes()).await.unwrap();
        if let Some(body) = &self.body {
            if self.chunked {
                for chunk in body.chunks(16 * 1024) {
                    let head = format!("{:x}\r\n", chunk.len());
                    // The server may answer (and close) before the whole body is sent.
                    if stream.write_all(head.as_bytes()).await.is_err()
                        || stream.write_all(chunk).await.is_err()
                        || stream.write_all(b"\r\n").await.is_err()
                    {
                        break;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            } else {
                let _ = stream.write_all(body).await;
            }
        }
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader).await;
        let chunked = headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
        });
        let mut body = Vec::new();
        if chunked {
            while let Some(chunk) = read_chunk(&mut reader).await {
                body.extend_from_slice(&chunk);
            }
        } else {
            let _ = reader.read_to_end(&mut body).await;
        }
        Reply {
            status,
            headers,
            body,
        }
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    Request::new("GET", path).send(addr).await
}

async fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line, not {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (status, headers)
}

/// The next chunk of a chunked body; `None` at its end or when the connection ends.
async fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).await.ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// An event stream being read.
pub struct EventStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    buffer: String,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
}

impl EventStream {
    /// Opens `GET path` with `headers`; the body is read event by event after.
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> EventStream {
        let mut request = Request::new("GET", path).header("Accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.head().as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let (status, headers) = tokio::time::timeout(WAIT, read_head(&mut reader))
            .await
            .expect("the stream's head in time");
        EventStream {
            status,
            headers,
            reader,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event (comments counted and skipped); `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event.event = value.to_owned(),
                        "id" => event.id = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        _ => {}
                    }
                }
                if data.is_empty() && event.event.is_empty() && event.id.is_none() {
                    continue;
                }
                event.data = data.join("\n");
                return Some(event);
            }
            let chunk = tokio::time::timeout(WAIT, read_chunk(&mut self.reader))
                .await
                .expect("an event in time")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `message` event.
    pub async fn next_message(&mut self) -> Option<SseEvent> {
        loop {
            let event = self.next().await?;
            if event.event == "message" {
                return Some(event);
            }
        }
    }
}
