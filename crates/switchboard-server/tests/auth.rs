//! Authentication in the handshake: passwords, named tokens, JWTs, the Unix uid map,
//! the admin token, anonymous sessions, names that cannot be taken, the end of a session
//! at its token's expiry, and failed logins slowed and refused per address. Real server,
//! real sockets.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use common::{WAIT, stat};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard_proto::packet::{Packet, SessionAck, SessionInit};
use switchboard_proto::{
    ErrorCode, Flags, FrameCodec, Limits, PREFACE_LEN, PROTOCOL_VERSION, Preface,
};
use switchboard_server::security::{
    JwtAlgorithm, JwtSpec, RoleSpec, SecurityConfig, ThrottleSpec, TokenSpec, UnixUserSpec,
    UserSpec, hash_password, token_sha256,
};
use switchboard_server::{Server, ServerConfig, ServerHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::Decoder;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Users alice (password "wonderland", role "staff") and bob (no password), a token
/// "deploy-token" for the user deploy, an ES256 key, and failed logins hardly slowed.
fn identities() -> SecurityConfig {
    let mut config = SecurityConfig::default();
    config.roles.insert("staff".into(), RoleSpec::default());
    config.roles.insert("ops".into(), RoleSpec::default());
    config.roles.insert("guest".into(), RoleSpec::default());
    config.users.push(UserSpec {
        name: "alice".into(),
        password: Some(hash_password(b"wonderland").unwrap()),
        roles: vec!["staff".into()],
    });
    config.users.push(UserSpec {
        name: "bob".into(),
        password: None,
        roles: Vec::new(),
    });
    config.tokens.push(TokenSpec {
        name: "ci".into(),
        user: "deploy".into(),
        sha256: hex(&token_sha256(b"deploy-token")),
        roles: vec!["ops".into()],
    });
    config.jwt = Some(JwtSpec {
        algorithm: JwtAlgorithm::ES256,
        secret_file: None,
        public_key_file: Some(fixture("es256.pub")),
        issuer: Some("https://id.example".into()),
        audience: Some("switchboard".into()),
        user_claim: None,
        roles_claim: None,
        leeway_seconds: Some(0),
    });
    // Failed logins are the point of most tests here: barely slowed, never refused.
    config.throttle = ThrottleSpec {
        max_failures: 1000,
        delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        ..ThrottleSpec::default()
    };
    config
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn start(security: SecurityConfig) -> ServerHandle {
    start_with(security, |_| {}).await
}

async fn start_with(
    security: SecurityConfig,
    change: impl FnOnce(&mut ServerConfig),
) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| {
            config.security = security;
            change(config);
        })
        .start()
        .await
        .expect("server starts")
}

/// A connection after the preface exchange, on any stream.
struct Conn<S> {
    stream: S,
    codec: FrameCodec,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn new(mut stream: S) -> Conn<S> {
        stream
            .write_all(&Preface::encode(PROTOCOL_VERSION))
            .await
            .unwrap();
        let mut preface = [0u8; PREFACE_LEN];
        tokio::time::timeout(WAIT, stream.read_exact(&mut preface))
            .await
            .expect("preface in time")
            .unwrap();
        Conn {
            stream,
            codec: FrameCodec::new(Limits::default()),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        self.codec
            .encode_packet(1, Flags::empty(), &packet, &mut out)
            .unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next packet, or `None` once the server closed.
    async fn next(&mut self, within: Duration) -> Option<Packet> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(Packet::from_frame(&frame).unwrap());
            }
            let read = tokio::time::timeout(within, self.stream.read_buf(&mut self.buf))
                .await
                .expect("the server answers in time");
            if matches!(read, Ok(0) | Err(_)) {
                return None;
            }
        }
    }

    async fn init(&mut self, init: SessionInit) -> Packet {
        self.send(Packet::SessionInit(init)).await;
        self.next(WAIT).await.expect("an answer to SESSION_INIT")
    }
}

async fn tcp(server: &ServerHandle) -> Conn<TcpStream> {
    Conn::new(
        TcpStream::connect(server.tcp_addr().unwrap())
            .await
            .unwrap(),
    )
    .await
}

/// A connection from another loopback address than 127.0.0.1.
async fn tcp_from(server: &ServerHandle, local: &str) -> Conn<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    Conn::new(socket.connect(server.tcp_addr().unwrap()).await.unwrap()).await
}

fn named(name: &str) -> SessionInit {
    SessionInit {
        name: name.into(),
        ..SessionInit::default()
    }
}

fn with_password(name: &str, user: &str, password: &str) -> SessionInit {
    SessionInit {
        user: user.into(),
        password: Bytes::copy_from_slice(password.as_bytes()),
        ..named(name)
    }
}

fn with_jwt(jwt: String) -> SessionInit {
    SessionInit {
        jwt: Bytes::from(jwt),
        ..named("whoever")
    }
}

fn ack(packet: Packet) -> SessionAck {
    match packet {
        Packet::SessionAck(ack) => ack,
        other => panic!("expected SESSION_ACK, got {other:?}"),
    }
}

fn refusal(packet: Packet) -> (ErrorCode, String) {
    match packet {
        Packet::Error(error) => (error.code, error.message.to_string()),
        other => panic!("expected ERROR, got {other:?}"),
    }
}

/// Claims signed with a key in the fixtures.
fn jwt(algorithm: Algorithm, key_file: &str, claims: serde_json::Value) -> String {
    let pem = std::fs::read(fixture(key_file)).unwrap();
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_secret(&pem),
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
}

fn claims(exp: u64) -> serde_json::Value {
    serde_json::json!({
        "sub": "carol",
        "iss": "https://id.example",
        "aud": "switchboard",
        "exp": exp,
        "roles": ["ops", "no-such-role"],
    })
}

#[tokio::test]
async fn a_password_logs_in_as_the_user_whatever_name_was_asked() {
    let server = start(identities()).await;
    let ack = ack(tcp(&server)
        .await
        .init(with_password("mallory", "alice", "wonderland"))
        .await);
    assert_eq!(ack.name, "alice", "the authenticated name wins");
    assert_eq!(ack.user, "alice");
    assert_eq!(stat(&server, "auth_failures"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_refusal() {
    let server = start(identities()).await;
    let wrong = refusal(
        tcp(&server)
            .await
            .init(with_password("x", "alice", "nope"))
            .await,
    );
    let unknown = refusal(
        tcp(&server)
            .await
            .init(with_password("x", "zed", "nope"))
            .await,
    );
    let passwordless = refusal(tcp(&server).await.init(with_password("x", "bob", "")).await);
    assert_eq!(wrong.0, ErrorCode::AuthFailed);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, passwordless);
    assert_eq!(stat(&server, "auth_failures"), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn without_credentials_a_server_with_users_lets_nobody_in() {
    let server = start(identities()).await;
    let mut conn = tcp(&server).await;
    let (code, message) = refusal(conn.init(named("curious")).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    assert_eq!(message, "authentication required");
    assert!(conn.next(WAIT).await.is_none(), "the connection is closed");
    // Nor does anything but SESSION_INIT get past the handshake.
    let mut conn = tcp(&server).await;
    conn.send(Packet::Heartbeat(switchboard_proto::packet::Heartbeat))
        .await;
    let (code, _) = refusal(conn.next(WAIT).await.unwrap());
    assert_eq!(code, ErrorCode::SessionRequired);
    server.shutdown().await;
}

#[tokio::test]
async fn an_anonymous_session_cannot_take_a_users_name() {
    let mut security = identities();
    security.anonymous_role = Some("guest".into());
    let server = start(security).await;
    let guest = ack(tcp(&server).await.init(named("visitor")).await);
    assert_eq!(guest.name, "visitor");
    assert_eq!(guest.user, "");
    for taken in ["alice", "deploy"] {
        let (code, message) = refusal(tcp(&server).await.init(named(taken)).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "{taken}");
        assert!(message.contains("belongs to a user"), "{message}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn named_tokens_log_in_as_their_user() {
    let server = start(identities()).await;
    let token = |token: &'static [u8]| SessionInit {
        credentials: Bytes::from_static(token),
        ..named("ci-runner")
    };
    let ack = ack(tcp(&server).await.init(token(b"deploy-token")).await);
    assert_eq!((ack.name.as_str(), ack.user.as_str()), ("deploy", "deploy"));
    let (code, message) = refusal(tcp(&server).await.init(token(b"guess")).await);
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::AuthFailed, "invalid token")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn more_than_one_kind_of_credentials_is_refused() {
    let server = start(identities()).await;
    let init = SessionInit {
        credentials: Bytes::from_static(b"deploy-token"),
        ..with_password("x", "alice", "wonderland")
    };
    let (code, _) = refusal(tcp(&server).await.init(init).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    server.shutdown().await;
}

#[tokio::test]
async fn jwts_are_checked_for_signature_algorithm_time_issuer_and_audience() {
    let server = start(identities()).await;
    let now = now_secs();
    let good = jwt(Algorithm::ES256, "es256.key", claims(now + 600));
    let ack = ack(tcp(&server).await.init(with_jwt(good)).await);
    assert_eq!((ack.name.as_str(), ack.user.as_str()), ("carol", "carol"));

    let mut not_yet = claims(now + 600);
    not_yet["nbf"] = (now + 300).into();
    let mut wrong_audience = claims(now + 600);
    wrong_audience["aud"] = "elsewhere".into();
    let mut wrong_issuer = claims(now + 600);
    wrong_issuer["iss"] = "https://evil.example".into();
    let mut no_subject = claims(now + 600);
    no_subject.as_object_mut().unwrap().remove("sub");
    let public_key = std::fs::read(fixture("es256.pub")).unwrap();
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(now + 600),
        &EncodingKey::from_secret(&public_key),
    )
    .unwrap();
    let cases = [
        (
            "expired",
            jwt(Algorithm::ES256, "es256.key", claims(now - 60)),
            "token expired",
        ),
        (
            "not yet valid",
            jwt(Algorithm::ES256, "es256.key", not_yet),
            "token not yet valid",
        ),
        (
            "badly signed",
            jwt(Algorithm::ES256, "es256-other.key", claims(now + 600)),
            "token signature invalid",
        ),
        (
            "wrong audience",
            jwt(Algorithm::ES256, "es256.key", wrong_audience),
            "token audience not accepted",
        ),
        (
            "wrong issuer",
            jwt(Algorithm::ES256, "es256.key", wrong_issuer),
            "token issuer not accepted",
        ),
        (
            "no subject",
            jwt(Algorithm::ES256, "es256.key", no_subject),
            "the token has no sub claim",
        ),
        (
            "HS256 against an ES256 key",
            confused,
            "token algorithm not accepted",
        ),
        (
            "RS256 against an ES256 key",
            jwt(Algorithm::RS256, "rs256.key", claims(now + 600)),
            "token algorithm not accepted",
        ),
        ("garbage", "not.a.token".to_owned(), "malformed token"),
    ];
    for (case, token, expected) in cases {
        let (code, message) = refusal(tcp(&server).await.init(with_jwt(token)).await);
        assert_eq!(code, ErrorCode::AuthFailed, "{case}");
        assert_eq!(message, expected, "{case}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rs256_jwts_verify_against_an_rsa_key() {
    let mut security = identities();
    if let Some(jwt) = &mut security.jwt {
        jwt.algorithm = JwtAlgorithm::RS256;
        jwt.public_key_file = Some(fixture("rs256.pub"));
    }
    let server = start(security).await;
    let token = jwt(Algorithm::RS256, "rs256.key", claims(now_secs() + 600));
    assert_eq!(
        ack(tcp(&server).await.init(with_jwt(token)).await).user,
        "carol"
    );
    let token = jwt(Algorithm::ES256, "es256.key", claims(now_secs() + 600));
    assert_eq!(
        refusal(tcp(&server).await.init(with_jwt(token)).await).0,
        ErrorCode::AuthFailed
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_jwt_session_is_closed_when_its_token_expires() {
    let server = start(identities()).await;
    let exp = now_secs() + 2;
    let mut conn = tcp(&server).await;
    let opened = Instant::now();
    ack(conn
        .init(with_jwt(jwt(Algorithm::ES256, "es256.key", claims(exp))))
        .await);
    // Heartbeats keep it alive until then; the expiry ends it anyway.
    let closed = loop {
        conn.send(Packet::Heartbeat(switchboard_proto::packet::Heartbeat))
            .await;
        match conn.next(Duration::from_secs(5)).await {
            Some(Packet::Disconnect(disconnect)) => break disconnect,
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            None => panic!("closed without a DISCONNECT"),
        }
    };
    assert_eq!(closed.code, ErrorCode::AuthFailed);
    assert_eq!(closed.reason, "token expired");
    let lived = opened.elapsed();
    assert!(lived < Duration::from_secs(4), "closed after {lived:?}");
    assert!(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            >= exp,
        "not before the expiry"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_open_hub_refuses_a_wrong_admin_token() {
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .admin_token("the-admin-token")
        .start()
        .await
        .unwrap();
    let token = |token: &'static [u8]| SessionInit {
        credentials: Bytes::from_static(token),
        ..named("op")
    };
    assert_eq!(
        ack(tcp(&server).await.init(token(b"the-admin-token")).await).name,
        "op"
    );
    assert_eq!(
        ack(tcp(&server).await.init(named("anyone")).await).name,
        "anyone"
    );
    let (code, _) = refusal(tcp(&server).await.init(token(b"the-admin-tokeN")).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    let (code, _) = refusal(
        tcp(&server)
            .await
            .init(with_password("x", "alice", "pw"))
            .await,
    );
    assert_eq!(code, ErrorCode::AuthFailed);
    assert_eq!(stat(&server, "auth_failures"), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn failed_logins_are_slowed_then_refused_per_address() {
    let throttle = ThrottleSpec {
        max_failures: 3,
        window: Duration::from_secs(60),
        refuse_for: Duration::from_secs(60),
        delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
    };
    let mut security = identities();
    security.throttle = throttle;
    let server = start(security).await;
    let mut answered_in = Vec::new();
    for _ in 0..3 {
        let mut conn = tcp(&server).await;
        let began = Instant::now();
        let (code, _) = refusal(conn.init(with_password("x", "alice", "guess")).await);
        answered_in.push(began.elapsed());
        assert_eq!(code, ErrorCode::AuthFailed);
    }
    assert!(
        answered_in[0] >= Duration::from_millis(200),
        "{answered_in:?}"
    );
    assert!(
        answered_in[1] >= Duration::from_millis(400),
        "{answered_in:?}"
    );
    assert!(
        answered_in[2] >= Duration::from_millis(800),
        "{answered_in:?}"
    );

    // The address is refused now, even with the right password, at once.
    let mut conn = tcp(&server).await;
    let began = Instant::now();
    let (code, message) = refusal(conn.init(with_password("x", "alice", "wonderland")).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    assert!(message.contains("too many failed logins"), "{message}");
    assert!(
        began.elapsed() < Duration::from_millis(150),
        "{:?}",
        began.elapsed()
    );

    // Another address logs in promptly meanwhile.
    let mut other = tcp_from(&server, "127.0.0.2").await;
    let began = Instant::now();
    assert_eq!(
        ack(other.init(with_password("x", "alice", "wonderland")).await).user,
        "alice"
    );
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(stat(&server, "auth_failures"), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_security_configuration_stops_the_server_from_starting() {
    let bad = |change: fn(&mut SecurityConfig)| {
        let mut config = identities();
        change(&mut config);
        config
    };
    type Change = fn(&mut SecurityConfig);
    let cases: [(Change, &str); 5] = [
        (
            |c| c.users[0].password = Some("plaintext".into()),
            "password",
        ),
        (|c| c.users[1].name = "alice".into(), "defined twice"),
        (
            |c| c.users[0].roles.push("nobody".into()),
            "role \"nobody\"",
        ),
        (|c| c.tokens[0].sha256 = "abc".into(), "64 hex digits"),
        (
            |c| {
                if let Some(jwt) = &mut c.jwt {
                    jwt.public_key_file = Some("/nonexistent/key.pem".into());
                }
            },
            "cannot read /nonexistent/key.pem",
        ),
    ];
    for (change, expected) in cases {
        let started = Server::builder()
            .listen_tcp("127.0.0.1:0")
            .configure(|config| config.security = bad(change))
            .start()
            .await;
        let Err(error) = started else {
            panic!("started despite: {expected}");
        };
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_unix_socket_peer_is_known_by_its_uid() {
    use tokio::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hub.sock");
    let own_uid = std::fs::metadata(dir.path()).unwrap();
    let own_uid = std::os::unix::fs::MetadataExt::uid(&own_uid);

    // Mapped: the process's own uid is the user "ops".
    let mut security = identities();
    security.unix_users.push(UnixUserSpec {
        uid: own_uid,
        user: "ops".into(),
    });
    let server = Server::builder()
        .listen_unix(&socket)
        .configure(|config| config.security = security)
        .start()
        .await
        .unwrap();
    let mut conn = Conn::new(UnixStream::connect(&socket).await.unwrap()).await;
    let mapped = ack(conn.init(named("someone")).await);
    assert_eq!((mapped.name.as_str(), mapped.user.as_str()), ("ops", "ops"));
    server.shutdown().await;

    // Unmapped: the server's own uid is still let in, as an admin, without a secret.
    let server = Server::builder()
        .listen_unix(&socket)
        .configure(|config| config.security = identities())
        .start()
        .await
        .unwrap();
    let mut conn = Conn::new(UnixStream::connect(&socket).await.unwrap()).await;
    let admin = ack(conn.init(named("local-admin")).await);
    assert_eq!(
        (admin.name.as_str(), admin.user.as_str()),
        ("local-admin", "")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn with_identities_the_admin_token_still_makes_an_admin() {
    let server = start_with(identities(), |config| {
        config.admin_token = Some("the-admin-token".into());
    })
    .await;
    let mut user = tcp(&server).await;
    ack(user.init(with_password("x", "alice", "wonderland")).await);
    user.send(Packet::Stop(switchboard_proto::packet::Stop))
        .await;
    let (code, _) = refusal(user.next(WAIT).await.unwrap());
    assert_eq!(code, ErrorCode::Forbidden, "a user is no admin");

    let mut admin = tcp(&server).await;
    let init = SessionInit {
        credentials: Bytes::from_static(b"the-admin-token"),
        ..named("operator")
    };
    let opened = ack(admin.init(init).await);
    assert_eq!(
        (opened.name.as_str(), opened.user.as_str()),
        ("operator", "")
    );
    admin
        .send(Packet::Stop(switchboard_proto::packet::Stop))
        .await;
    assert!(matches!(admin.next(WAIT).await, Some(Packet::Ok(_))));
    server.shutdown().await;
}
