//! TLS end to end: listeners with certificates made here (rcgen), real sockets, the client
//! library and the CLI against a real `serve` process.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchboard_client::{Client, ClientConfig, ErrorKind, Payload, Replay, TlsOptions};
use switchboard_server::{ClientAuth, Hooks, Server, ServerHandle, SessionInfo, TlsListenerConfig};

mod support;

use support::certs::{Ca, write_pair};

const WAIT: Duration = Duration::from_secs(10);

/// A CA, a server certificate it issued for 127.0.0.1 and localhost, and its files.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("Switchboard test CA");
        let ca_file = ca.write_in(dir.path(), "ca.pem");
        let (cert_file, key_file) = write_pair(
            dir.path(),
            "server",
            ca.issue("hub", &["127.0.0.1", "localhost"]),
        );
        Pki {
            dir,
            ca,
            ca_file,
            cert_file,
            key_file,
        }
    }

    fn listener(&self) -> TlsListenerConfig {
        TlsListenerConfig::new("127.0.0.1:0", &self.cert_file, &self.key_file)
    }

    /// A client certificate for `common_name` issued by `ca`, written beside the others.
    fn client_pair(&self, ca: &Ca, common_name: &str) -> (PathBuf, PathBuf) {
        write_pair(
            self.dir.path(),
            &format!("client-{common_name}"),
            ca.issue(common_name, &[&format!("{common_name}.clients.example")]),
        )
    }
}

/// The sessions a server opened, with the names of their client certificates, as its
/// hooks saw them.
#[derive(Default)]
struct SeenSessions(Mutex<Vec<(String, Vec<String>)>>);

impl Hooks for SeenSessions {
    fn on_client_certificate(
        &self,
        session: &SessionInfo,
        certificate_names: &[String],
    ) -> Result<(), String> {
        let names = certificate_names.to_vec();
        self.0.lock().unwrap().push((session.name.clone(), names));
        Ok(())
    }

    fn on_connect(&self, session: &SessionInfo) -> Result<(), String> {
        let mut seen = self.0.lock().unwrap();
        if !seen.iter().any(|(name, _)| *name == session.name) {
            seen.push((session.name.clone(), Vec::new()));
        }
        Ok(())
    }
}

impl SeenSessions {
    fn names_of(&self, name: &str) -> Option<Vec<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(seen, _)| seen == name)
            .map(|(_, names)| names.clone())
    }
}

async fn tls_server(listener: TlsListenerConfig) -> ServerHandle {
    Server::builder()
        .listen_tls(listener)
        .start()
        .await
        .expect("server starts")
}

fn tls_addr(server: &ServerHandle) -> String {
    format!("tls://{}", server.tls_addrs()[0])
}

async fn connect(
    server: &ServerHandle,
    name: &str,
    tls: TlsOptions,
) -> switchboard_client::Result<Client> {
    let config = ClientConfig::new(tls_addr(server), name)
        .with_tls(tls)
        .with_request_timeout(WAIT);
    Client::connect(config).await
}

fn stat(server: &ServerHandle, name: &str) -> u64 {
    server
        .stats()
        .into_iter()
        .find(|(stat, _)| stat == name)
        .map_or(0, |(_, value)| value)
}

async fn next_text(subscription: &mut switchboard_client::Subscription) -> String {
    let message = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a message in time")
        .expect("the subscription is open")
        .expect("a message");
    message.text().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn publish_and_subscribe_over_tls() {
    let pki = Pki::new();
    let server = tls_server(pki.listener()).await;
    let trust = TlsOptions::new().with_ca_file(&pki.ca_file);
    let publisher = connect(&server, "publisher", trust.clone()).await.unwrap();
    // The name checked may differ from the address's host.
    let reader = connect(&server, "reader", trust.with_server_name("localhost"))
        .await
        .unwrap();
    let mut news = reader.subscribe("news", Replay::None).await.unwrap();

    publisher
        .publish("news", Payload::text("over TLS"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut news).await, "over TLS");

    // A burst of small frames shares TLS records: every one must come through, however
    // the records split them.
    for i in 0..300 {
        publisher
            .publish("news", Payload::text(&format!("burst {i}")))
            .no_reply()
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for i in 0..300 {
        assert_eq!(next_text(&mut news).await, format!("burst {i}"));
    }
    let body = vec![7u8; 1 << 20];
    publisher
        .publish("news", Payload::bytes(body.clone()))
        .await
        .unwrap();
    let message = tokio::time::timeout(WAIT, news.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(message.body().len(), body.len());
    assert_eq!(stat(&server, "tls_handshakes_failed"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused_with_a_clear_error() {
    let pki = Pki::new();
    let server = tls_server(pki.listener()).await;
    let other = Ca::new("Some other CA");
    let other_file = other.write_in(pki.dir.path(), "other-ca.pem");

    let error = connect(
        &server,
        "doubter",
        TlsOptions::new().with_ca_file(&other_file),
    )
    .await
    .map(drop)
    .expect_err("the server's certificate is not trusted");
    assert_eq!(error.kind(), ErrorKind::Io);
    let message = error.to_string();
    assert!(
        message.contains("certificate is not trusted"),
        "unclear error: {message}"
    );
    // The wrong name is said as plainly.
    let error = connect(
        &server,
        "misnamed",
        TlsOptions::new()
            .with_ca_file(&pki.ca_file)
            .with_server_name("elsewhere.example"),
    )
    .await
    .map(drop)
    .expect_err("the certificate does not name elsewhere.example");
    assert!(
        error.to_string().contains("not valid for this server name"),
        "unclear error: {error}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn plaintext_garbage_and_http_on_a_tls_port_are_dropped() {
    let pki = Pki::new();
    let server = tls_server(pki.listener()).await;
    let addr = server.tls_addrs()[0];
    let preface = switchboard_proto::Preface::encode(switchboard_proto::PROTOCOL_VERSION);
    let attempts: [Vec<u8>; 3] = [
        preface.to_vec(),
        b"\x00\x01\x02\x03 garbage garbage garbage garbage garbage".to_vec(),
        b"GET / HTTP/1.1\r\nHost: hub\r\n\r\n".to_vec(),
    ];
    for bytes in attempts {
        let started = Instant::now();
        let received = tokio::task::spawn_blocking(move || {
            let mut socket = std::net::TcpStream::connect(addr).unwrap();
            socket.set_read_timeout(Some(WAIT)).unwrap();
            socket.write_all(&bytes).unwrap();
            let mut received = Vec::new();
            // Ends at the close; a reset counts as a close too.
            let _ = socket.read_to_end(&mut received);
            received
        })
        .await
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not dropped at once"
        );
        // At most a TLS alert (content type 21), never the protocol or an HTTP answer.
        assert!(
            received.is_empty() || received[0] == 21,
            "answered in plaintext: {:?}",
            String::from_utf8_lossy(&received)
        );
    }
    let deadline = Instant::now() + WAIT;
    while stat(&server, "tls_handshakes_failed") < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stat(&server, "tls_handshakes_failed"), 3);
    assert_eq!(stat(&server, "connections_refused"), 3);

    // The plain client, pointed at the TLS port, fails without hanging, and is told why.
    let plain = ClientConfig::new(addr.to_string(), "plain").with_request_timeout(WAIT);
    let Err(error) = Client::connect(plain).await else {
        panic!("a plain client is refused");
    };
    assert!(
        error
            .to_string()
            .contains("this port takes TLS connections"),
        "{error}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn required_client_certificates_refuse_none_and_another_cas() {
    let pki = Pki::new();
    let seen = Arc::new(SeenSessions::default());
    let server = Server::builder()
        .listen_tls(
            pki.listener()
                .with_client_auth(ClientAuth::Required, &pki.ca_file),
        )
        .hooks(seen.clone())
        .start()
        .await
        .unwrap();
    let trust = TlsOptions::new().with_ca_file(&pki.ca_file);

    let error = connect(&server, "anonymous", trust.clone())
        .await
        .map(drop)
        .expect_err("no certificate is refused");
    assert_eq!(error.kind(), ErrorKind::Io);
    assert!(
        error.to_string().contains("requires a client certificate"),
        "unclear error: {error}"
    );

    let stranger_ca = Ca::new("Stranger CA");
    let (cert, key) = pki.client_pair(&stranger_ca, "mallory");
    let error = connect(
        &server,
        "mallory",
        trust.clone().with_client_certificate(cert, key),
    )
    .await
    .map(drop)
    .expect_err("a certificate from another CA is refused");
    assert!(
        error
            .to_string()
            .contains("refused this client's certificate"),
        "unclear error: {error}"
    );

    let (cert, key) = pki.client_pair(&pki.ca, "alice");
    let alice = connect(&server, "alice", trust.with_client_certificate(cert, key))
        .await
        .unwrap();
    alice.publish("news", Payload::text("hi")).await.unwrap();
    assert_eq!(
        seen.names_of("alice"),
        Some(vec!["alice".to_owned(), "alice.clients.example".to_owned()])
    );
    assert_eq!(seen.names_of("anonymous"), None);
    assert_eq!(seen.names_of("mallory"), None);
    assert_eq!(stat(&server, "connections_total"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn optional_client_certificates_accept_both() {
    let pki = Pki::new();
    let seen = Arc::new(SeenSessions::default());
    let server = Server::builder()
        .listen_tls(
            pki.listener()
                .with_client_auth(ClientAuth::Optional, &pki.ca_file),
        )
        .hooks(seen.clone())
        .start()
        .await
        .unwrap();
    let trust = TlsOptions::new().with_ca_file(&pki.ca_file);
    let anonymous = connect(&server, "anonymous", trust.clone()).await.unwrap();
    let (cert, key) = pki.client_pair(&pki.ca, "bob");
    let bob = connect(
        &server,
        "bob",
        trust.clone().with_client_certificate(cert, key),
    )
    .await
    .unwrap();
    anonymous.publish("a", Payload::text("1")).await.unwrap();
    bob.publish("b", Payload::text("2")).await.unwrap();
    assert_eq!(seen.names_of("anonymous"), Some(Vec::new()));
    assert_eq!(
        seen.names_of("bob"),
        Some(vec!["bob".to_owned(), "bob.clients.example".to_owned()])
    );
    // Optional still verifies: a certificate from another CA is refused.
    let stranger_ca = Ca::new("Stranger CA");
    let (cert, key) = pki.client_pair(&stranger_ca, "mallory");
    assert!(
        connect(&server, "mallory", trust.with_client_certificate(cert, key))
            .await
            .is_err()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn reloaded_certificates_serve_new_handshakes_and_old_sessions_keep_working() {
    let pki = Pki::new();
    let server = tls_server(pki.listener()).await;
    let first_trust = TlsOptions::new().with_ca_file(&pki.ca_file);
    let old = connect(&server, "old", first_trust.clone()).await.unwrap();
    let mut old_news = old.subscribe("news", Replay::None).await.unwrap();

    // New certificate files from a new CA, replacing the old ones on disk.
    let second = Ca::new("Second CA");
    let second_file = second.write_in(pki.dir.path(), "second-ca.pem");
    let (cert, key) = second.issue("hub", &["127.0.0.1"]);
    std::fs::write(&pki.cert_file, cert).unwrap();
    std::fs::write(&pki.key_file, key).unwrap();
    // Until the reload, handshakes still get the first certificate.
    connect(&server, "before-reload", first_trust.clone())
        .await
        .unwrap();
    server.reload_tls().unwrap();

    let error = connect(&server, "stale", first_trust.clone())
        .await
        .map(drop)
        .expect_err("the new certificate is not from the first CA");
    assert!(error.to_string().contains("not trusted"), "{error}");
    let second_trust = TlsOptions::new().with_ca_file(&second_file);
    let fresh = connect(&server, "fresh", second_trust.clone())
        .await
        .unwrap();

    // The session opened before the reload carries on, both ways.
    fresh
        .publish("news", Payload::text("after reload"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut old_news).await, "after reload");
    old.publish("news", Payload::text("still here"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut old_news).await, "still here");

    // A reload that cannot read its files keeps the configuration in force.
    std::fs::write(&pki.key_file, "not a key").unwrap();
    let error = server.reload_tls().expect_err("the key file is unreadable");
    assert!(
        error.to_string().contains("server.key"),
        "the error names the file: {error}"
    );
    connect(&server, "after-failed-reload", second_trust)
        .await
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_listener_with_unreadable_files_does_not_start() {
    let pki = Pki::new();
    let missing = TlsListenerConfig::new(
        "127.0.0.1:0",
        pki.dir.path().join("nope.pem"),
        &pki.key_file,
    );
    let error = Server::builder()
        .listen_tls(missing)
        .start()
        .await
        .expect_err("no certificate file");
    assert!(error.to_string().contains("nope.pem"), "{error}");
    let no_ca = pki.listener();
    let no_ca = TlsListenerConfig {
        client_auth: ClientAuth::Required,
        ..no_ca
    };
    let error = Server::builder()
        .listen_tls(no_ca)
        .start()
        .await
        .expect_err("required client auth without a CA file");
    assert!(error.to_string().contains("client CA file"), "{error}");
}

/// The CLI over TLS against `switchboard serve` as its own process.
#[test]
fn the_cli_talks_tls_to_a_serve_process() {
    let pki = Pki::new();
    let mut server = std::process::Command::new(support::BIN)
        .args([
            "serve",
            "--no-http",
            "--memory",
            "--no-unix",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--tls")
        .arg("127.0.0.1:0")
        .arg("--tls-cert")
        .arg(&pki.cert_file)
        .arg("--tls-key")
        .arg(&pki.key_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let addr = loop {
        let line = lines.next().expect("serve prints its addresses").unwrap();
        if let Some(addr) = line.strip_prefix("switchboard listening on tls://") {
            break addr.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let ca = pki.ca_file.to_str().unwrap();

    let cli = |args: &[&str]| {
        support::cli_at(&format!("tls://{addr}"), "cli")
            .args(["--ca-file", ca])
            .args(args)
            .assert()
    };
    cli(&["pub", "news", "over tls"]).success();
    let out = cli(&["--json", "history", "news"])
        .success()
        .get_output()
        .stdout
        .clone();
    let lines = support::json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["payload"], "over tls");

    // --tls with a plain address means the same.
    support::cli_at(&addr, "cli")
        .args(["--tls", "--ca-file", ca, "channels"])
        .assert()
        .success();
    // Without --ca-file, the system roots do not know this CA.
    let failed = support::cli_at(&format!("tls://{addr}"), "cli")
        .args(["channels"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
    assert!(
        stderr.contains("not trusted") || stderr.contains("root certificates"),
        "{stderr}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test]
async fn a_silent_connection_on_a_tls_port_is_dropped_at_the_handshake_limit() {
    let pki = Pki::new();
    let server = Server::builder()
        .listen_tls(pki.listener())
        .configure(|config| config.handshake_timeout = Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let addr = server.tls_addrs()[0];
    let started = Instant::now();
    let received = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let mut received = Vec::new();
        let _ = socket.read_to_end(&mut received);
        received
    })
    .await
    .unwrap();
    let waited = started.elapsed();
    assert!(received.is_empty(), "{received:?}");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert_eq!(stat(&server, "tls_handshakes_failed"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_reload_changes_every_listener_or_none() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let (second_cert, second_key) = write_pair(dir, "second", pki.ca.issue("hub", &["127.0.0.1"]));
    let server = Server::builder()
        .listen_tls(pki.listener())
        .listen_tls(TlsListenerConfig::new(
            "127.0.0.1:0",
            &second_cert,
            &second_key,
        ))
        .start()
        .await
        .unwrap();
    let other = Ca::new("Other CA");
    let other_file = other.write_in(dir, "other-ca.pem");
    // The first listener's files are renewed by another CA; the second's key is broken.
    let (cert, key) = other.issue("hub", &["127.0.0.1"]);
    std::fs::write(&pki.cert_file, cert).unwrap();
    std::fs::write(&pki.key_file, key).unwrap();
    std::fs::write(&second_key, "broken").unwrap();
    let error = server.reload_tls().expect_err("the second key is broken");
    assert!(error.to_string().contains("second.key"), "{error}");

    // Neither listener changed: both still serve certificates of the first CA.
    for addr in server.tls_addrs() {
        let config = ClientConfig::new(format!("tls://{addr}"), "probe")
            .with_tls(TlsOptions::new().with_ca_file(&pki.ca_file))
            .with_request_timeout(WAIT);
        Client::connect(config).await.unwrap();
    }
    // Once the broken file is fixed, both change together.
    std::fs::write(&second_key, pki.ca.issue("hub", &["127.0.0.1"]).1).unwrap();
    let error = server
        .reload_tls()
        .expect_err("the key no longer matches its certificate");
    assert!(error.to_string().contains("second"), "{error}");
    let (cert, key) = other.issue("hub", &["127.0.0.1"]);
    std::fs::write(&second_cert, cert).unwrap();
    std::fs::write(&second_key, key).unwrap();
    server.reload_tls().unwrap();
    for addr in server.tls_addrs() {
        let config = ClientConfig::new(format!("tls://{addr}"), "probe")
            .with_tls(TlsOptions::new().with_ca_file(&other_file))
            .with_request_timeout(WAIT);
        Client::connect(config).await.unwrap();
    }
    server.shutdown().await;
}
