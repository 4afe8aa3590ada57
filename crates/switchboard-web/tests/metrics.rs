//! `/metrics` and `/readyz` on a real hub: what a scrape reports after real sessions,
//! publishes and refusals; that `promtool` accepts it; readiness while a stop drains and
//! while the store refuses writes; and (ignored, run by hand) the cost of a scrape with
//! 10,000 sessions open.

mod support;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchboard_client::{Client, ClientConfig, Payload, Replay};
use switchboard_proto::packet::ChannelOptions;
use switchboard_server::{
    AttachedPeer, LogKind, Server, ServerBuilder, ServerHandle, Snapshot, Storage, StorageError,
    StoreHealth, StoredMessage, SyncFuture, SyncPolicy,
};
use switchboard_web::{WebConfig, WebServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

async fn start(builder: ServerBuilder) -> (ServerHandle, WebServer) {
    support::start(builder, WebConfig::default()).await
}

/// A response read whole: status, headers (lower-cased names) and body.
struct Response {
    status: u16,
    headers: String,
    body: String,
}

/// A bare HTTP/1.1 GET.
async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok(Response {
        status: head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0),
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    })
}

async fn scrape(web: &WebServer) -> String {
    let response = get(web.local_addr(), "/metrics").await.unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .contains("content-type: text/plain; version=0.0.4"),
        "the Prometheus text format, not {}",
        response.headers
    );
    response.body
}

/// The value of the sample written exactly as `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// Scrapes until `series` has `expected`, for what is counted as a session closes.
async fn wait_for(web: &WebServer, series: &str, expected: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(web).await;
        if value(&text, series) == expected || Instant::now() > deadline {
            assert_eq!(value(&text, series), expected, "{series}");
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_scrape_counts_sessions_by_transport_messages_refusals_and_latencies() {
    let (server, web) = start(Server::builder()).await;
    let tcp = server.tcp_addr().unwrap().to_string();
    let reader = Client::connect(ClientConfig::new(tcp.clone(), "reader"))
        .await
        .unwrap();
    let mut news = reader.subscribe("news", Replay::None).await.unwrap();
    let writer = Client::connect(ClientConfig::new(tcp.clone(), "writer"))
        .await
        .unwrap();
    let (near, far) = tokio::io::duplex(64 * 1024);
    assert!(
        server
            .hub()
            .attach(far, AttachedPeer::WebSocket("127.0.0.1:9".parse().unwrap()))
    );
    let websocket = Client::connect_over(near, ClientConfig::new("", "over-websocket"))
        .await
        .unwrap();
    for i in 0..5 {
        writer
            .publish("news", Payload::text(&format!("story {i}")))
            .await
            .unwrap();
    }
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), news.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    // An HTTP request on the protocol's port is refused before any session opens.
    let mut http = tokio::net::TcpStream::connect(&tcp).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    http.read_to_end(&mut answer).await.unwrap();

    let text = scrape(&web).await;
    let version = format!(
        "switchboard_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&text, &version), 1.0);
    assert_eq!(
        value(&text, r#"switchboard_connections{transport="tcp"}"#),
        2.0
    );
    assert_eq!(
        value(&text, r#"switchboard_connections{transport="websocket"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"switchboard_connections{transport="http"}"#),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"switchboard_connections_accepted_total{transport="tcp"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"switchboard_connections_refused_total{reason="protocol"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "switchboard_messages_published_total"), 5.0);
    assert_eq!(value(&text, "switchboard_messages_delivered_total"), 5.0);
    assert_eq!(value(&text, "switchboard_subscriptions"), 1.0);
    assert_eq!(value(&text, "switchboard_channels"), 1.0);
    assert_eq!(value(&text, "switchboard_history_messages"), 5.0);
    assert!(value(&text, "switchboard_history_bytes") > 0.0);
    assert!(value(&text, "switchboard_received_bytes_total") > 0.0);
    assert!(value(&text, "switchboard_sent_bytes_total") > 0.0);
    assert_eq!(
        value(&text, "switchboard_publish_ack_duration_seconds_count"),
        5.0
    );
    assert_eq!(
        value(
            &text,
            r#"switchboard_publish_ack_duration_seconds_bucket{le="+Inf"}"#
        ),
        5.0
    );
    assert!(value(&text, "switchboard_publish_ack_duration_seconds_sum") > 0.0);
    assert_eq!(value(&text, "switchboard_listeners_running"), 1.0);
    assert_eq!(value(&text, "switchboard_draining"), 0.0);
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        assert!(line.starts_with("switchboard_"), "{line}");
    }

    drop(news);
    reader.close().await.unwrap();
    websocket.close().await.unwrap();
    let text = wait_for(&web, r#"switchboard_connections{transport="tcp"}"#, 1.0).await;
    assert_eq!(value(&text, "switchboard_subscriptions"), 0.0);
    wait_for(
        &web,
        r#"switchboard_connections{transport="websocket"}"#,
        0.0,
    )
    .await;
    let text = scrape(&web).await;
    assert!(value(&text, "switchboard_connections_closed_total") >= 2.0);
    server.shutdown().await;
}

#[tokio::test]
async fn promtool_accepts_the_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let (server, web) = start(
        Server::builder()
            .data_dir(dir.path())
            .sync(SyncPolicy::Always),
    )
    .await;
    let client = Client::connect(ClientConfig::new(
        server.tcp_addr().unwrap().to_string(),
        "writer",
    ))
    .await
    .unwrap();
    for i in 0..3 {
        client
            .publish("durable", Payload::text(&format!("kept {i}")))
            .await
            .unwrap();
    }
    let text = scrape(&web).await;
    assert!(value(&text, "switchboard_store_syncs_total") >= 1.0);
    assert!(value(&text, "switchboard_store_sync_duration_seconds_count") >= 1.0);
    assert_eq!(value(&text, "switchboard_store_writable"), 1.0);

    let mut promtool = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!(
            "promtool is needed to check the metrics format and could not be run ({error}): \
             install it (Debian's `prometheus` package; CI installs it). This test fails \
             rather than skips without it."
        ),
    };
    let mut stdin = promtool.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, text.as_bytes()).unwrap();
    drop(stdin);
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the scrape:\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    client.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_is_trivial_and_readyz_answers_503_while_a_stop_drains() {
    let (server, web) =
        start(Server::builder().configure(|config| config.shutdown_grace = Duration::from_secs(2)))
            .await;
    let addr = web.local_addr();
    let ready = get(addr, "/readyz").await.unwrap();
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let healthy = get(addr, "/healthz").await.unwrap();
    assert_eq!((healthy.status, healthy.body.as_str()), (200, "ok\n"));

    // A session whose socket takes nothing more once it is open: on stop, the server
    // waits for it to take its goodbye, up to the shutdown grace.
    let stalled = Arc::new(AtomicBool::new(false));
    let (near, far) = tokio::io::duplex(64 * 1024);
    let far = Stalling {
        inner: far,
        stalled: stalled.clone(),
    };
    assert!(
        server
            .hub()
            .attach(far, AttachedPeer::Http("127.0.0.1:9".parse().unwrap()))
    );
    let _client = Client::connect_over(near, ClientConfig::new("", "stuck"))
        .await
        .unwrap();
    stalled.store(true, Ordering::SeqCst);

    let stopping = tokio::spawn(async move { server.shutdown().await });
    let deadline = Instant::now() + Duration::from_secs(2);
    let draining = loop {
        let response = get(addr, "/readyz").await.expect("answers while draining");
        if response.status != 200 || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(draining.status, 503);
    assert!(draining.body.contains("draining"), "{}", draining.body);
    let healthy = get(addr, "/healthz").await.unwrap();
    assert_eq!(healthy.status, 200, "the process still serves");
    let metrics = get(addr, "/metrics").await.unwrap();
    assert_eq!(value(&metrics.body, "switchboard_draining"), 1.0);

    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), web.stopped())
        .await
        .expect("the web listener stops once the hub drained");
}

#[tokio::test]
async fn readyz_answers_503_while_the_store_refuses_writes() {
    let (server, web) = start(Server::builder().storage(Arc::new(RefusingStore))).await;
    let response = get(web.local_addr(), "/readyz").await.unwrap();
    assert_eq!(response.status, 503);
    assert!(
        response
            .body
            .contains("the store refuses writes: disk gone"),
        "{}",
        response.body
    );
    let text = scrape(&web).await;
    assert_eq!(value(&text, "switchboard_store_writable"), 0.0);
    server.shutdown().await;
}

/// A socket that stops taking writes once told to.
struct Stalling {
    inner: DuplexStream,
    stalled: Arc<AtomicBool>,
}

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.stalled.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.stalled.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.stalled.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A store that keeps nothing and says it refuses writes.
struct RefusingStore;

impl Storage for RefusingStore {
    fn is_durable(&self) -> bool {
        false
    }
    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot::default())
    }
    fn put_channel(&self, _: &str, _: &ChannelOptions) -> Result<(), StorageError> {
        Err(StorageError::unavailable("disk gone"))
    }
    fn append(
        &self,
        _: LogKind,
        _: &str,
        _: &std::sync::Arc<StoredMessage>,
    ) -> Result<(), StorageError> {
        Err(StorageError::unavailable("disk gone"))
    }
    fn trim(&self, _: LogKind, _: &str, _: u64) {}
    fn put_group(&self, _: &str, _: &str) -> Result<(), StorageError> {
        Err(StorageError::unavailable("disk gone"))
    }
    fn add_member(&self, _: &str, _: &str) -> Result<(), StorageError> {
        Err(StorageError::unavailable("disk gone"))
    }
    fn remove_member(&self, _: &str, _: &str) -> Result<(), StorageError> {
        Err(StorageError::unavailable("disk gone"))
    }
    fn delete_channel(&self, _: &str) -> Result<(), StorageError> {
        Err(StorageError::unavailable("disk gone"))
    }
    fn delete_group(&self, _: &str) -> Result<(), StorageError> {
        Err(StorageError::unavailable("disk gone"))
    }
    fn sync(&self) -> SyncFuture {
        Box::pin(async { Err(StorageError::unavailable("disk gone")) })
    }
    fn close(&self, _: &[(LogKind, String, u64)]) {}
    fn health(&self) -> StoreHealth {
        StoreHealth {
            refusing: Some("disk gone".to_owned()),
            ..StoreHealth::default()
        }
    }
}

/// The cost of a scrape with 10,000 sessions open, each subscribed, over 100 channels
/// with history. Run by hand:
/// `cargo test -p switchboard-web --test metrics -- --ignored --nocapture`
///
/// 2,000 sessions come over TCP (two descriptors each in this process, so the soft
/// descriptor limit is raised to the hard one), the rest are attached in process as
/// WebSocket sessions are: what a scrape reads is the same for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens 10,000 sessions; run by hand to measure"]
async fn a_scrape_with_ten_thousand_sessions_takes_well_under_a_scrape_interval() {
    const SESSIONS: usize = 10_000;
    const OVER_TCP: usize = 2_000;
    const CHANNELS: usize = 100;
    #[cfg(unix)]
    raise_descriptor_limit();
    let (server, web) = start(Server::builder().configure(|config| {
        config.max_connections = SESSIONS * 2;
    }))
    .await;
    let tcp = server.tcp_addr().unwrap().to_string();
    let opening = Instant::now();
    let mut clients = Vec::with_capacity(SESSIONS);
    let mut subscriptions = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let config = ClientConfig::new(tcp.clone(), format!("client-{i}"));
        let client = if i < OVER_TCP {
            Client::connect(config).await.unwrap()
        } else {
            let (near, far) = tokio::io::duplex(16 * 1024);
            let peer = AttachedPeer::WebSocket("127.0.0.1:9".parse().unwrap());
            assert!(server.hub().attach(far, peer));
            Client::connect_over(near, config).await.unwrap()
        };
        let channel = format!("room.{}", i % CHANNELS);
        if i < CHANNELS {
            client
                .publish(&channel, Payload::text("hello"))
                .await
                .unwrap();
        }
        subscriptions.push(client.subscribe(&channel, Replay::None).await.unwrap());
        clients.push(client);
    }
    println!(
        "opened {SESSIONS} sessions in {:.1} s",
        opening.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let text = scrape(&web).await;
        times.push(started.elapsed());
        assert_eq!(
            value(&text, r#"switchboard_connections{transport="tcp"}"#)
                + value(&text, r#"switchboard_connections{transport="websocket"}"#),
            SESSIONS as f64
        );
        assert_eq!(value(&text, "switchboard_subscriptions"), SESSIONS as f64);
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "scrape of /metrics with {SESSIONS} sessions: median {:.2} ms, worst {:.2} ms (20 scrapes)",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    assert!(
        worst < Duration::from_secs(1),
        "a scrape took {worst:?}, not well under a 15 s scrape interval"
    );
    drop(subscriptions);
    drop(clients);
    server.shutdown().await;
}

/// Raises the soft limit on open descriptors to the hard limit.
#[cfg(unix)]
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    if let Err(error) = setrlimit(Resource::Nofile, limit) {
        println!("could not raise the descriptor limit: {error}");
    }
}
