//! A bare protocol client for server tests: real sockets, frames built with the proto
//! crate, nothing hidden, so tests can also send what a well-behaved client never would.

#![allow(dead_code)]

use std::time::Duration;

use bytes::BytesMut;
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, GetMessages, Message, Packet, Scope, SessionAck, SessionInit,
    Since,
};
use switchboard_proto::{
    Flags, Frame, FrameCodec, Limits, MacKey, PREFACE_LEN, PROTOCOL_VERSION, Preface,
};
use switchboard_server::{Server, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

pub const WAIT: Duration = Duration::from_secs(5);

/// A server on an ephemeral loopback port.
pub async fn start_server() -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .start()
        .await
        .expect("server starts")
}

/// A server on an ephemeral loopback port, with some of its configuration changed.
pub async fn start_server_with(change: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(change)
        .start()
        .await
        .expect("server starts")
}

/// The value of a named counter of the server.
pub fn stat(server: &ServerHandle, name: &str) -> u64 {
    server
        .stats()
        .into_iter()
        .find(|(stat, _)| stat == name)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// Waits until `check` holds, polling; false if it still does not after `within`.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    pub codec: FrameCodec,
    pub buf: BytesMut,
    next_id: u32,
}

impl RawClient {
    /// Connects and exchanges prefaces, without opening a session.
    pub async fn connect(server: &ServerHandle) -> RawClient {
        let addr = server.tcp_addr().expect("tcp address");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&Preface::encode(PROTOCOL_VERSION))
            .await
            .expect("write preface");
        let mut preface = [0u8; PREFACE_LEN];
        tokio::time::timeout(WAIT, stream.read_exact(&mut preface))
            .await
            .expect("preface in time")
            .expect("read preface");
        assert_eq!(
            Preface::decode(&preface).expect("server preface").version,
            PROTOCOL_VERSION
        );
        RawClient {
            stream,
            codec: FrameCodec::new(Limits::default()),
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    pub fn with_mac(mut self, key: &[u8]) -> Self {
        self.codec.set_mac_key(Some(MacKey::new(key)));
        self
    }

    /// Opens a session with the given name and heartbeat.
    pub async fn open(&mut self, name: &str, heartbeat_ms: u32) -> SessionAck {
        let init = SessionInit {
            name: name.into(),
            heartbeat_ms,
            ..SessionInit::default()
        };
        match self.request(Packet::SessionInit(init)).await {
            Packet::SessionAck(ack) => ack,
            other => panic!("expected SESSION_ACK, got {other:?}"),
        }
    }

    pub async fn connect_session(server: &ServerHandle, name: &str) -> (RawClient, SessionAck) {
        let mut client = RawClient::connect(server).await;
        let ack = client.open(name, 0).await;
        (client, ack)
    }

    pub async fn send(&mut self, request_id: u32, flags: Flags, packet: &Packet) {
        let mut out = BytesMut::new();
        self.codec
            .encode_packet(request_id, flags, packet, &mut out)
            .expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends a request and returns the first frame answering it (skipping pushes).
    pub async fn request(&mut self, packet: Packet) -> Packet {
        let id = self.next_id;
        self.next_id += 1;
        self.send(id, Flags::empty(), &packet).await;
        loop {
            let frame = self.next_frame().await.expect("an answer");
            if frame.request_id == id {
                return Packet::from_frame(&frame).expect("valid packet");
            }
        }
    }

    /// GET_MESSAGES of `name` from `since`, at most `limit`: the messages until
    /// MESSAGES_END (other pushes are passed over); panics on an ERROR.
    pub async fn fetch_messages(
        &mut self,
        scope: Scope,
        name: &str,
        since: Since,
        limit: Option<u64>,
    ) -> Vec<Message> {
        let id = self.next_request_id();
        let get = Packet::GetMessages(GetMessages {
            scope,
            channel: name.into(),
            since,
            limit,
        });
        self.send(id, Flags::empty(), &get).await;
        let mut messages = Vec::new();
        loop {
            match self.next_packet().await.expect("answer") {
                Packet::Message(message) => messages.push(message),
                Packet::MessagesEnd(_) => return messages,
                Packet::Error(error) => panic!("fetch failed: {error:?}"),
                _ => {}
            }
        }
    }

    /// Creates channel `name` retaining `history` messages; panics if it is refused.
    pub async fn create_channel(&mut self, name: &str, history: u64) {
        let created = self
            .request(Packet::CreateChannel(CreateChannel {
                name: name.into(),
                options: ChannelOptions {
                    history: Some(history),
                    ..ChannelOptions::default()
                },
            }))
            .await;
        assert!(matches!(created, Packet::ChannelInfo(_)), "{created:?}");
    }

    pub fn next_request_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The next frame, or `None` once the server closed the connection.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).expect("valid frame") {
                return Some(frame);
            }
            let read = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("server answers in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next frame if one arrives within `within`; `None` on silence or close.
    pub async fn frame_within(&mut self, within: Duration) -> Option<Frame> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).expect("valid frame") {
                return Some(frame);
            }
            match tokio::time::timeout(within, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    pub async fn next_packet(&mut self) -> Option<Packet> {
        let frame = self.next_frame().await?;
        Some(Packet::from_frame(&frame).expect("valid packet"))
    }

    /// Reads until the server closes, returning everything it sent.
    pub async fn until_closed(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        while let Some(packet) = self.next_packet().await {
            packets.push(packet);
        }
        packets
    }
}
