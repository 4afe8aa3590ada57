//! The protocol over WebSocket against a real hub and web listener: the whole client API
//! through `ws://`, HMAC, and what the upgrade and the socket refuse.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use switchboard_client::{Client, ClientConfig, GroupItem, Payload, Replay};
use switchboard_server::{Server, ServerBuilder, ServerHandle};
use switchboard_web::{WebConfig, WebServer};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const WAIT: Duration = Duration::from_secs(10);

async fn hub_with_web(builder: ServerBuilder, config: WebConfig) -> (ServerHandle, WebServer) {
    support::start(builder, config).await
}

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

async fn ws_client(web: &WebServer, name: &str) -> Client {
    Client::connect(ClientConfig::new(ws_url(web.local_addr()), name))
        .await
        .unwrap()
}

async fn next<T, S: futures::Stream<Item = T> + Unpin>(stream: &mut S) -> T {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
        .expect("not ended")
}

#[tokio::test]
async fn the_whole_client_api_works_over_a_websocket() {
    let (server, web) = hub_with_web(Server::builder(), WebConfig::default()).await;
    let alice = ws_client(&web, "alice").await;
    let bob = ws_client(&web, "bob").await;
    let tcp = Client::connect(ClientConfig::new(
        server.tcp_addr().unwrap().to_string(),
        "carol",
    ))
    .await
    .unwrap();

    // Publish, then subscribe with replay and receive live.
    for i in 0..3 {
        alice
            .publish("news", Payload::text(&format!("old {i}")))
            .await
            .unwrap();
    }
    let mut news = bob.subscribe("news", Replay::Last(2)).await.unwrap();
    for expected in ["old 1", "old 2"] {
        assert_eq!(next(&mut news).await.unwrap().text(), Some(expected));
    }
    tcp.publish("news", Payload::text("from tcp"))
        .await
        .unwrap();
    assert_eq!(next(&mut news).await.unwrap().text(), Some("from tcp"));

    // A streamed body of several MiB: frames span messages and messages hold many frames.
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut files = bob.subscribe("files", Replay::None).await.unwrap();
    alice
        .publish("files", Payload::default())
        .stream_from(&body[..], body.len() as u64)
        .await
        .unwrap();
    let message = next(&mut files).await.unwrap();
    let mut reader = message.body_reader();
    let mut received = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, reader.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        received.extend_from_slice(&chunk);
    }
    assert!(received == body, "the streamed body arrives whole");
    let mut large = bob.subscribe("large", Replay::None).await.unwrap();
    let whole = vec![9u8; 3 * 1024 * 1024];
    tcp.publish("large", Payload::bytes(whole.clone()))
        .await
        .unwrap();
    assert!(next(&mut large).await.unwrap().body()[..] == whole[..]);

    // Relay between a WebSocket and a TCP session.
    let mut directs = tcp.direct_feed().unwrap();
    let outcomes = alice
        .relay(&[tcp.session().client_id], "psst", "text/plain")
        .await
        .unwrap();
    assert_eq!(outcomes[0].status.name(), "delivered");
    assert_eq!(next(&mut directs).await.text(), Some("psst"));

    // Groups.
    alice.create_group("crew", "").await.unwrap();
    let mut feed = alice.group_feed().unwrap();
    alice.join_group("crew").await.unwrap();
    bob.join_group("crew").await.unwrap();
    bob.post("crew", Payload::text("hello crew")).await.unwrap();
    let message = loop {
        if let GroupItem::Message(message) = next(&mut feed).await {
            break message;
        }
    };
    assert_eq!(message.text(), Some("hello crew"));
    assert_eq!(message.sender_name(), "bob");

    let clients = tcp.list_clients().await.unwrap();
    assert!(clients.iter().any(|client| client.name == "alice"));
    alice.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn hmac_works_over_a_websocket_and_a_wrong_key_is_refused() {
    let key = b"a shared secret".to_vec();
    let (server, web) = hub_with_web(
        Server::builder().hmac_key(key.clone()),
        WebConfig::default(),
    )
    .await;
    let url = ws_url(web.local_addr());
    let signed = Client::connect(ClientConfig::new(url.clone(), "signed").with_hmac_key(key))
        .await
        .unwrap();
    let mut echo = signed.subscribe("echo", Replay::None).await.unwrap();
    signed
        .publish("echo", Payload::text("tagged"))
        .await
        .unwrap();
    assert_eq!(next(&mut echo).await.unwrap().text(), Some("tagged"));
    let wrong =
        Client::connect(ClientConfig::new(url, "wrong").with_hmac_key(b"another secret".to_vec()))
            .await;
    assert!(wrong.is_err(), "a wrong key is refused");
    server.shutdown().await;
}

#[tokio::test]
async fn an_origin_not_allowed_is_refused_and_an_allowed_one_let_in() {
    let (server, web) = hub_with_web(
        Server::builder(),
        WebConfig {
            allowed_origins: vec!["https://app.example.com".to_owned()],
            ..WebConfig::default()
        },
    )
    .await;
    let addr = web.local_addr();
    let with_origin = |origin: &str| {
        let mut request = ws_url(addr).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    let refused = tokio_tungstenite::connect_async(with_origin("https://evil.example"))
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("an HTTP refusal, not {refused:?}");
    };
    assert_eq!(response.status(), 403);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
    assert!(body.contains("FORBIDDEN"), "{body}");
    tokio_tungstenite::connect_async(with_origin("https://app.example.com"))
        .await
        .expect("a listed origin");
    tokio_tungstenite::connect_async(with_origin(&format!("http://{addr}")))
        .await
        .expect("the listener's own origin");
    server.shutdown().await;
}

/// Reads until the socket closes; the close frame, if one came.
async fn close_frame(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<(CloseCode, String)> {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|frame| (frame.code, frame.reason.to_string()));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn a_text_message_closes_the_socket_with_a_reason() {
    let (server, web) = hub_with_web(Server::builder(), WebConfig::default()).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(web.local_addr()))
        .await
        .unwrap();
    socket.send(Message::text("hello?")).await.unwrap();
    let (code, reason) = close_frame(&mut socket).await.expect("a close frame");
    assert_eq!(code, CloseCode::Unsupported);
    assert!(reason.contains("binary"), "{reason}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_message_larger_than_a_frame_can_be_is_refused() {
    let (server, web) = hub_with_web(
        Server::builder().configure(|config| config.max_frame = 64 * 1024),
        WebConfig::default(),
    )
    .await;
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(web.local_addr()))
        .await
        .unwrap();
    let oversized = vec![0u8; 2 * 1024 * 1024];
    let _ = socket.send(Message::binary(oversized)).await;
    let (code, _) = close_frame(&mut socket).await.expect("a close frame");
    assert_eq!(code, CloseCode::Size);
    server.shutdown().await;
}

#[tokio::test]
async fn pings_are_answered() {
    let (server, web) = hub_with_web(Server::builder(), WebConfig::default()).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(web.local_addr()))
        .await
        .unwrap();
    socket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match next(&mut socket).await.unwrap() {
        Message::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("a pong, not {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn many_websocket_sessions_at_once() {
    let (server, web) = hub_with_web(Server::builder(), WebConfig::default()).await;
    let clients = futures::future::join_all((0..100).map(|i| {
        let web = &web;
        async move { ws_client(web, &format!("ws{i}")).await }
    }))
    .await;
    let mut subscriptions = Vec::new();
    for client in &clients {
        subscriptions.push(client.subscribe("all", Replay::None).await.unwrap());
    }
    clients[0]
        .publish("all", Payload::text("to everyone"))
        .await
        .unwrap();
    for subscription in &mut subscriptions {
        assert_eq!(
            next(subscription).await.unwrap().text(),
            Some("to everyone")
        );
    }
    let listed = clients[1].list_clients().await.unwrap();
    for i in (0..100).filter(|&i| i != 1) {
        let name = format!("ws{i}");
        assert!(
            listed.iter().any(|client| client.name == name.as_str()),
            "{name} listed"
        );
    }
    server.shutdown().await;
}
