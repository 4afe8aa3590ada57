//! The web listener beside a hub: health checks, the protocol over WebSocket, and
//! sessions attached in process.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use switchboard_client::{Client, ClientConfig, Payload, Replay};
use switchboard_server::{AttachedPeer, Server, ServerHandle};
use switchboard_web::{WebConfig, WebServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

async fn hub_with_web() -> (ServerHandle, WebServer) {
    support::start(Server::builder(), WebConfig::default()).await
}

/// A bare HTTP/1.1 GET: the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn health_and_readiness_answer_until_the_hub_drains() {
    let (server, web) = hub_with_web().await;
    let addr = web.local_addr();
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));
    server.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), web.stopped())
        .await
        .expect("the web listener stops with the hub");
}

#[tokio::test]
async fn a_websocket_speaks_the_protocol_from_its_preface_on() {
    let (server, web) = hub_with_web().await;
    let url = format!("ws://{}/ws", web.local_addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(Message::Binary(
            switchboard_proto::Preface::encode(switchboard_proto::PROTOCOL_VERSION)
                .to_vec()
                .into(),
        ))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Binary(bytes) = reply else {
        panic!("a binary message, not {reply:?}");
    };
    let preface = switchboard_proto::Preface::decode(
        bytes[..switchboard_proto::PREFACE_LEN].try_into().unwrap(),
    )
    .expect("the server's preface");
    assert_eq!(preface.version, switchboard_proto::PROTOCOL_VERSION);
    server.shutdown().await;
}

#[tokio::test]
async fn an_attached_stream_is_a_session_like_any_other() {
    let (server, _web) = hub_with_web().await;
    let tcp = Client::connect(ClientConfig::new(
        server.tcp_addr().unwrap().to_string(),
        "tcp-reader",
    ))
    .await
    .unwrap();
    let mut news = tcp.subscribe("news", Replay::None).await.unwrap();
    let (near, far) = tokio::io::duplex(64 * 1024);
    let peer = AttachedPeer::Http("127.0.0.1:9".parse().unwrap());
    assert!(server.hub().attach(far, peer));
    let attached = Client::connect_over(near, ClientConfig::new("", "in-process"))
        .await
        .unwrap();
    attached
        .publish("news", Payload::text("from inside"))
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), news.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(message.text(), Some("from inside"));
    let clients = tcp.list_clients().await.unwrap();
    assert!(clients.iter().any(|client| client.name == "in-process"));
    server.shutdown().await;
}

#[tokio::test]
async fn an_http_request_is_served_by_a_session_of_its_own_kept_for_the_next() {
    let (server, web) = hub_with_web().await;
    let (status, body) = get(web.local_addr(), "/api/v1/identity").await;
    assert_eq!(status, 200, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(first["name"], "http");
    let (_, body) = get(web.local_addr(), "/api/v1/identity").await;
    let second: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(first["client_id"], second["client_id"]);
    server.shutdown().await;
}
