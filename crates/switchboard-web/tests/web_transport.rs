//! The web listener's transport: connections admitted through the server's per-address
//! limits (shared with its own listeners), and TLS (https, wss) with the server's
//! certificate loading and reload.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use switchboard_client::{Client, ClientConfig, Payload, Replay, TlsOptions};
use switchboard_server::security::limits::AddressLimits;
use switchboard_server::{Server, ServerHandle};
use switchboard_web::{WebConfig, WebServer, WebTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(config: WebConfig, per_address: AddressLimits) -> (ServerHandle, WebServer) {
    let builder = Server::builder().configure(|config| config.limits.per_address = per_address);
    support::start(builder, config).await
}

/// The status line of a plain GET to the web listener.
async fn status_of_get(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn web_connections_count_against_the_address_limit_shared_with_tcp() {
    let limits = AddressLimits {
        connections_per_ip: 2,
        limit_loopback: true,
        ..AddressLimits::default()
    };
    let (server, web) = start(WebConfig::default(), limits).await;
    let url = format!("ws://{}/ws", web.local_addr());
    let first = Client::connect(ClientConfig::new(url.clone(), "first"))
        .await
        .unwrap();
    let tcp = Client::connect(ClientConfig::new(
        server.tcp_addr().unwrap().to_string(),
        "second",
    ))
    .await
    .unwrap();
    // The address holds two connections, one on each listener: a third is refused on both.
    let refused = status_of_get(web.local_addr()).await;
    assert!(refused.contains("429"), "{refused}");
    assert!(
        Client::connect(ClientConfig::new(url.clone(), "third"))
            .await
            .is_err()
    );
    assert!(
        Client::connect(ClientConfig::new(
            server.tcp_addr().unwrap().to_string(),
            "third"
        ))
        .await
        .is_err()
    );
    // A closed WebSocket gives its place back.
    first.close().await.unwrap();
    drop(first);
    let mut again = None;
    for _ in 0..100 {
        if let Ok(client) = Client::connect(ClientConfig::new(url.clone(), "again")).await {
            again = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = again.expect("a place once the first socket closed");
    again.publish("news", Payload::text("in")).await.unwrap();
    drop(tcp);
    server.shutdown().await;
}

/// A certificate authority and a certificate for localhost it issued, as files.
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn issue(dir: &Path, stem: &str) -> Certificates {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca = dir.join(format!("{stem}-ca.pem"));
    std::fs::write(&ca, issuer.pem()).unwrap();
    let cert = dir.join("http.pem");
    let key_file = dir.join("http.key");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    Certificates {
        ca,
        cert,
        key: key_file,
    }
}

#[tokio::test]
async fn wss_speaks_the_protocol_and_a_reload_puts_new_certificates_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let old = issue(dir.path(), "old");
    let (server, web) = start(
        WebConfig {
            tls: Some(WebTls {
                cert_file: old.cert.clone(),
                key_file: old.key.clone(),
            }),
            ..WebConfig::default()
        },
        AddressLimits::default(),
    )
    .await;
    let url = format!("wss://localhost:{}/ws", web.local_addr().port());
    let trusting = |ca: &Path| {
        ClientConfig::new(url.clone(), "secure").with_tls(TlsOptions::new().with_ca_file(ca))
    };
    let client = Client::connect(trusting(&old.ca)).await.unwrap();
    let mut echo = client.subscribe("echo", Replay::None).await.unwrap();
    client
        .publish("echo", Payload::text("sealed"))
        .await
        .unwrap();
    let message =
        tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut echo))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    assert_eq!(message.text(), Some("sealed"));
    // Plain HTTP on the TLS listener gets no answer.
    let plain = status_of_get(web.local_addr()).await;
    assert!(!plain.contains("200"), "{plain}");

    let new = issue(dir.path(), "new");
    assert!(Client::connect(trusting(&new.ca)).await.is_err());
    server.reload_tls().unwrap();
    Client::connect(trusting(&new.ca))
        .await
        .expect("the new certificate is in force after a reload");
    assert!(Client::connect(trusting(&old.ca)).await.is_err());
    server.shutdown().await;
}
