//! The security parts working together, through the client library against a real
//! server on loopback: TLS client certificates logging in as users, `{user}` rules with
//! a password login, roles from a JWT claim, a reload revoking live subscriptions and
//! removed users, and a user's publish rate shared by all of its sessions.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use jsonwebtoken::{EncodingKey, Header};
use switchboard_client::{
    Client, ClientConfig, ClientError, ErrorCode, ErrorKind, Payload, Replay, Subscription,
    TlsOptions,
};
use switchboard_server::security::limits::{LimitSpec, ManualClock};
use switchboard_server::security::permissions::{ChannelRule, Rule};
use switchboard_server::security::{
    JwtAlgorithm, JwtSpec, RoleSpec, SecurityConfig, ThrottleSpec, UserSpec, hash_password,
};
use switchboard_server::{ClientAuth, Server, ServerConfig, ServerHandle, TlsListenerConfig};

use support::certs::Ca;

const WAIT: Duration = Duration::from_secs(5);
const ADMIN_TOKEN: &str = "security-together-admin";
const JWT_SECRET: &str = "a shared secret of at least thirty-two bytes";

fn rule(allow: &[&str], deny: &[&str]) -> Rule {
    Rule {
        allow: allow.iter().map(|pattern| (*pattern).to_owned()).collect(),
        deny: deny.iter().map(|pattern| (*pattern).to_owned()).collect(),
    }
}

fn user(name: &str, password: Option<&str>, roles: &[&str]) -> UserSpec {
    UserSpec {
        name: name.to_owned(),
        password: password.map(|password| hash_password(password.as_bytes()).unwrap()),
        roles: roles.iter().map(|role| (*role).to_owned()).collect(),
    }
}

/// Security settings whose failed logins are hardly slowed: refusals are the point here.
fn security() -> SecurityConfig {
    SecurityConfig {
        throttle: ThrottleSpec {
            max_failures: 1000,
            delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            ..ThrottleSpec::default()
        },
        ..SecurityConfig::default()
    }
}

async fn start(security: SecurityConfig) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .admin_token(ADMIN_TOKEN)
        .configure(|config| config.security = security)
        .start()
        .await
        .expect("server starts")
}

fn config(server: &ServerHandle, name: &str) -> ClientConfig {
    ClientConfig::new(server.tcp_addr().unwrap().to_string(), name).with_request_timeout(WAIT)
}

async fn login(server: &ServerHandle, user: &str, password: &str) -> Client {
    Client::connect(config(server, user).with_password(user, password.as_bytes().to_vec()))
        .await
        .unwrap_or_else(|error| panic!("{user} logs in: {error}"))
}

async fn admin(server: &ServerHandle) -> Client {
    Client::connect(config(server, "root").with_token(ADMIN_TOKEN.as_bytes().to_vec()))
        .await
        .expect("the admin logs in")
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, ClientError>, code: ErrorCode, text: &str) {
    let error = result.expect_err(text);
    assert_eq!(error.code(), Some(code), "{error}");
    assert!(error.to_string().contains(text), "{error} lacks {text:?}");
}

async fn next_text(subscription: &mut Subscription) -> String {
    let message = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a message in time")
        .expect("the subscription is open")
        .expect("a message");
    message.text().unwrap_or_default().to_owned()
}

fn stat(server: &ServerHandle, name: &str) -> u64 {
    server
        .stats()
        .into_iter()
        .find(|(stat, _)| stat == name)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// A server with a TLS listener requiring client certificates from a CA of the test.
struct MtlsHub {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_file: PathBuf,
    server: ServerHandle,
}

impl MtlsHub {
    async fn start(security: SecurityConfig) -> MtlsHub {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("Switchboard test CA");
        let ca_file = dir.path().join("ca.pem");
        ca.write_to(&ca_file);
        let (cert_file, key_file) =
            ca.issue_files(dir.path(), "server", Some("hub"), &["127.0.0.1"]);
        let server = Server::builder()
            .listen_tls(
                TlsListenerConfig::new("127.0.0.1:0", cert_file, key_file)
                    .with_client_auth(ClientAuth::Required, &ca_file),
            )
            .admin_token(ADMIN_TOKEN)
            .configure(|config| config.security = security)
            .start()
            .await
            .expect("server starts");
        MtlsHub {
            dir,
            ca,
            ca_file,
            server,
        }
    }

    /// A client presenting a certificate for `common_name` and `names`.
    async fn connect(
        &self,
        stem: &str,
        common_name: Option<&str>,
        names: &[&str],
    ) -> Result<Client, ClientError> {
        let (cert, key) = self
            .ca
            .issue_files(self.dir.path(), stem, common_name, names);
        let tls = TlsOptions::new()
            .with_ca_file(&self.ca_file)
            .with_client_certificate(cert, key);
        let address = format!("tls://{}", self.server.tls_addrs()[0]);
        Client::connect(
            ClientConfig::new(address, "asked-for")
                .with_tls(tls)
                .with_request_timeout(WAIT),
        )
        .await
    }
}

/// A client certificate naming a configured user logs in as that user, by its CN or by
/// a subject alternative name alone; one naming nobody is refused when there is no
/// anonymous role.
#[tokio::test]
async fn a_client_certificate_logs_in_as_the_user_it_names() {
    let mut security = security();
    security.users.push(user("alice", Some("wonderland"), &[]));
    security.users.push(user("bob", None, &[]));
    let hub = MtlsHub::start(security).await;

    let alice = hub
        .connect("alice", Some("alice"), &["device-17.example"])
        .await
        .expect("alice's certificate logs in");
    assert_eq!(alice.session().user.as_deref(), Some("alice"));
    assert_eq!(alice.session().name, "alice", "the authenticated name wins");
    let identity = alice.identity().await.unwrap();
    assert_eq!(identity.name, "alice");

    let bob = hub
        .connect("bob", None, &["bob"])
        .await
        .expect("a certificate naming bob only in its SAN logs in");
    assert_eq!(bob.session().user.as_deref(), Some("bob"));

    let refused = hub
        .connect("mallory", Some("mallory"), &["mallory.example"])
        .await
        .map(drop);
    let error = refused.expect_err("a certificate naming no user is refused");
    assert_eq!(error.code(), Some(ErrorCode::AuthFailed), "{error}");
    hub.server.shutdown().await;
}

/// Users whose roles are given: alice may publish to `news.>` with the role writer.
fn writers(alice_roles: &[&str]) -> SecurityConfig {
    let mut security = security();
    security.roles.insert(
        "writer".into(),
        RoleSpec {
            publish: rule(&["news.>"], &[]),
            create_channel: ChannelRule {
                allow: vec!["news.>".to_owned()],
                ..ChannelRule::default()
            },
            ..RoleSpec::default()
        },
    );
    security.roles.insert("idle".into(), RoleSpec::default());
    security.users.push(user("alice", None, alice_roles));
    security
}

/// A certificate login takes its roles from the user's entry, and follows that entry
/// through a reload as a password login does: roles taken away are gone from the live
/// session, and roles given are there.
#[tokio::test]
async fn a_reload_changes_the_roles_of_a_certificate_login() {
    let hub = MtlsHub::start(writers(&["writer"])).await;
    let alice = hub.connect("alice", Some("alice"), &[]).await.unwrap();
    alice
        .publish("news.x", Payload::text("as a writer"))
        .await
        .expect("the writer role allows news.>");

    let mut demoted = ServerConfig {
        security: writers(&["idle"]),
        ..ServerConfig::default()
    };
    hub.server.reload(&demoted).expect("the reload is accepted");
    // The session takes the new policy on its own time; a request after it is answered
    // under the new roles.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match alice.publish("news.x", Payload::text("demoted")).await {
            Err(error) if error.code() == Some(ErrorCode::Forbidden) => break,
            Err(error) => panic!("unexpected {error}"),
            Ok(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the certificate session kept the role the reload took away"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!alice.is_closed(), "alice is still configured");

    demoted.security = writers(&["writer"]);
    hub.server.reload(&demoted).expect("the reload is accepted");
    let deadline = tokio::time::Instant::now() + WAIT;
    while alice
        .publish("news.x", Payload::text("promoted"))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the certificate session never got the role back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.server.shutdown().await;
}

/// `{user}` in a rule stands for the logged-in user: alice may use her own inbox and not
/// bob's, and bob may not subscribe to every inbox at once.
#[tokio::test]
async fn user_rules_follow_the_password_login() {
    let mut security = security();
    security.roles.insert(
        "member".into(),
        RoleSpec {
            publish: rule(&["inbox.{user}.>"], &[]),
            create_channel: ChannelRule {
                allow: vec!["inbox.{user}.>".to_owned()],
                ..ChannelRule::default()
            },
            subscribe: rule(&["inbox.{user}.>"], &[]),
            ..RoleSpec::default()
        },
    );
    security
        .users
        .push(user("alice", Some("wonderland"), &["member"]));
    security
        .users
        .push(user("bob", Some("builder"), &["member"]));
    let server = start(security).await;
    let alice = login(&server, "alice", "wonderland").await;
    let bob = login(&server, "bob", "builder").await;

    alice
        .publish("inbox.alice.x", Payload::text("mine"))
        .await
        .expect("alice publishes to her inbox");
    assert_code(
        alice
            .publish("inbox.bob.x", Payload::text("not mine"))
            .await,
        ErrorCode::Forbidden,
        "publish to inbox.bob.x is not permitted",
    );
    assert_code(
        bob.subscribe("inbox.>", Replay::None).await.map(drop),
        ErrorCode::Forbidden,
        "subscribe to inbox.> is not permitted",
    );
    let mut inbox = bob
        .subscribe("inbox.bob.>", Replay::None)
        .await
        .expect("bob's own inbox");
    alice
        .publish("inbox.bob.x", Payload::text("refused"))
        .await
        .unwrap_err();
    bob.publish("inbox.bob.note", Payload::text("to self"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut inbox).await, "to self");
    server.shutdown().await;
}

fn jwt(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The roles a JWT names in its `roles` claim are the session's: the token with the
/// claim may publish where the role allows, the same user's token without it may not.
#[tokio::test]
async fn a_jwt_roles_claim_grants_the_roles_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt.secret");
    std::fs::write(&secret_file, format!("{JWT_SECRET}\n")).unwrap();
    let mut security = security();
    security.roles.insert(
        "reporter".into(),
        RoleSpec {
            publish: rule(&["reports.>"], &[]),
            create_channel: ChannelRule {
                allow: vec!["reports.>".to_owned()],
                ..ChannelRule::default()
            },
            ..RoleSpec::default()
        },
    );
    security.jwt = Some(JwtSpec {
        algorithm: JwtAlgorithm::HS256,
        secret_file: Some(secret_file),
        public_key_file: None,
        issuer: None,
        audience: Some("hub".into()),
        user_claim: None,
        roles_claim: None,
        leeway_seconds: Some(0),
    });
    let server = start(security).await;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let with_role = jwt(serde_json::json!({
        "sub": "carol", "aud": "hub", "exp": exp, "roles": ["reporter"],
    }));
    let without = jwt(serde_json::json!({ "sub": "carol", "aud": "hub", "exp": exp }));

    let reporter = Client::connect(config(&server, "x").with_jwt(with_role.into_bytes()))
        .await
        .expect("the JWT logs in");
    assert_eq!(reporter.session().user.as_deref(), Some("carol"));
    reporter
        .publish("reports.daily", Payload::text("numbers"))
        .await
        .expect("the role from the claim allows reports.>");
    assert_code(
        reporter.publish("elsewhere", Payload::text("no")).await,
        ErrorCode::Forbidden,
        "publish to elsewhere is not permitted",
    );

    let plain = Client::connect(config(&server, "y").with_jwt(without.into_bytes()))
        .await
        .expect("the JWT without roles logs in");
    assert_eq!(plain.session().user.as_deref(), Some("carol"));
    assert_code(
        plain
            .publish("reports.daily", Payload::text("numbers"))
            .await,
        ErrorCode::Forbidden,
        "publish to reports.daily is not permitted",
    );
    server.shutdown().await;
}

/// Users alice (role reader) and bob and carol (role other); reader may subscribe to
/// `news.>` unless `deny_news`.
fn newsroom(deny_news: bool) -> SecurityConfig {
    let mut security = security();
    let deny: &[&str] = if deny_news { &["news.>"] } else { &[] };
    security.roles.insert(
        "reader".into(),
        RoleSpec {
            subscribe: rule(&["news.>", "weather"], deny),
            ..RoleSpec::default()
        },
    );
    security.roles.insert(
        "other".into(),
        RoleSpec {
            subscribe: rule(&["weather"], &[]),
            ..RoleSpec::default()
        },
    );
    security
        .users
        .push(user("alice", Some("wonderland"), &["reader"]));
    security
        .users
        .push(user("bob", Some("builder"), &["other"]));
    security
        .users
        .push(user("carol", Some("christmas"), &["other"]));
    security
}

/// A reload that denies what a live subscription holds ends it on the client with an
/// error that says it was revoked, and delivers nothing more to it; a reload that
/// removes a user disconnects that user's session with the reason and keeps the others.
#[tokio::test]
async fn a_reload_revokes_live_subscriptions_and_removed_users() {
    let server = start(newsroom(false)).await;
    let root = admin(&server).await;
    let alice = login(&server, "alice", "wonderland").await;
    let bob = login(&server, "bob", "builder").await;
    let carol = login(&server, "carol", "christmas").await;
    let mut news = alice.subscribe("news.>", Replay::None).await.unwrap();
    let mut weather = alice.subscribe("weather", Replay::None).await.unwrap();
    root.publish("news.x", Payload::text("before"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut news).await, "before");

    let mut revoked = ServerConfig {
        security: newsroom(true),
        ..ServerConfig::default()
    };
    revoked.security.users.retain(|user| user.name != "bob");
    server.reload(&revoked).expect("the reload is accepted");

    let end = tokio::time::timeout(WAIT, news.next())
        .await
        .expect("the subscription ends in time")
        .expect("the end is reported, not a silent end of stream");
    let error = end.map(drop).expect_err("the subscription was revoked");
    assert_eq!(error.kind(), ErrorKind::SubscriptionRevoked, "{error}");
    assert!(error.to_string().contains("news.>"), "{error}");
    assert!(
        tokio::time::timeout(WAIT, news.next())
            .await
            .unwrap()
            .is_none(),
        "nothing follows the end"
    );

    // The admin's own subscription shows when news.x has been delivered: alice's
    // session gets none of it.
    let mut watch = root.subscribe("news.>", Replay::None).await.unwrap();
    let delivered = stat(&server, "messages_delivered");
    root.publish("news.x", Payload::text("after"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut watch).await, "after");
    assert_eq!(
        stat(&server, "messages_delivered"),
        delivered + 1,
        "only the admin's subscription got news.x"
    );
    assert_code(
        alice.subscribe("news.>", Replay::None).await.map(drop),
        ErrorCode::Forbidden,
        "subscribe to news.> is not permitted",
    );
    // What the role still allows goes on.
    root.publish("weather", Payload::text("sunny"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut weather).await, "sunny");

    // bob is gone with the reason; carol is still served.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !bob.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob is never closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reason = bob.close_reason().expect("a close reason");
    assert_eq!(reason.code(), Some(ErrorCode::AuthFailed), "{reason:?}");
    assert!(format!("{reason}").contains("removed"), "{reason}");
    assert!(!carol.is_closed());
    carol.identity().await.expect("carol is still served");
    assert_eq!(stat(&server, "sessions_ended_by_reload"), 1);
    server.shutdown().await;
}

/// A reload that denies one channel under a live wildcard subscription keeps the
/// subscription and stops delivering that channel alone.
#[tokio::test]
async fn a_reload_narrowing_a_wildcard_filters_it_without_revoking_it() {
    let server = start(newsroom(false)).await;
    let root = admin(&server).await;
    let alice = login(&server, "alice", "wonderland").await;
    let mut news = alice.subscribe("news.>", Replay::None).await.unwrap();

    let mut narrowed = newsroom(false);
    narrowed
        .roles
        .get_mut("reader")
        .unwrap()
        .subscribe
        .deny
        .push("news.secret".into());
    server
        .reload(&ServerConfig {
            security: narrowed,
            ..ServerConfig::default()
        })
        .expect("the reload is accepted");
    // The session re-checks itself on its own time; a refused SUBSCRIBE shows it has.
    let deadline = tokio::time::Instant::now() + WAIT;
    while alice.subscribe("news.secret", Replay::None).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new rules never reached the session"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (channel, body) in [("news.secret", "hidden"), ("news.open", "shown")] {
        root.publish(channel, Payload::text(body)).await.unwrap();
    }
    assert_eq!(next_text(&mut news).await, "shown");
    assert!(!alice.is_closed());
    server.shutdown().await;
}

/// With an anonymous role, a certificate naming no user opens an anonymous session
/// under that role instead of being refused.
#[tokio::test]
async fn a_certificate_naming_nobody_is_anonymous_when_a_role_allows_it() {
    let mut security = writers(&["writer"]);
    security.roles.insert(
        "guest".into(),
        RoleSpec {
            publish: rule(&["lobby"], &[]),
            create_channel: ChannelRule {
                allow: vec!["lobby".to_owned()],
                ..ChannelRule::default()
            },
            ..RoleSpec::default()
        },
    );
    security.anonymous_role = Some("guest".into());
    let hub = MtlsHub::start(security).await;
    let stranger = hub
        .connect("stranger", Some("stranger"), &[])
        .await
        .expect("an anonymous session");
    assert_eq!(stranger.session().user, None);
    stranger
        .publish("lobby", Payload::text("hi"))
        .await
        .unwrap();
    assert_code(
        stranger.publish("news.x", Payload::text("no")).await,
        ErrorCode::Forbidden,
        "publish to news.x is not permitted",
    );
    hub.server.shutdown().await;
}

/// Alice with a password and a named token `ci` (role writer) unless `without_token`.
fn alice_with_token(without_token: bool) -> SecurityConfig {
    let mut security = writers(&[]);
    security.users[0] = user("alice", Some("wonderland"), &[]);
    if !without_token {
        let digest = switchboard_server::security::token_sha256(b"ci-secret");
        security
            .tokens
            .push(switchboard_server::security::TokenSpec {
                name: "ci".into(),
                user: "alice".into(),
                sha256: digest.iter().map(|byte| format!("{byte:02x}")).collect(),
                roles: vec!["writer".into()],
            });
    }
    security
}

/// Removing a token from the configuration and reloading ends the sessions it opened,
/// even though its user is still configured; the user's password session stays.
#[tokio::test]
async fn a_reload_removing_a_token_ends_the_sessions_it_opened() {
    let server = start(alice_with_token(false)).await;
    let by_token = Client::connect(config(&server, "ci").with_token(b"ci-secret".to_vec()))
        .await
        .expect("the token logs in");
    assert_eq!(by_token.session().user.as_deref(), Some("alice"));
    by_token
        .publish("news.x", Payload::text("with the token's role"))
        .await
        .unwrap();
    let by_password = login(&server, "alice", "wonderland").await;

    server
        .reload(&ServerConfig {
            security: alice_with_token(true),
            ..ServerConfig::default()
        })
        .expect("the reload is accepted");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !by_token.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the removed token's session is still open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reason = by_token.close_reason().expect("a close reason");
    assert_eq!(reason.code(), Some(ErrorCode::AuthFailed), "{reason:?}");
    assert!(format!("{reason}").contains("removed"), "{reason}");
    by_password
        .identity()
        .await
        .expect("the password session stays");
    server.shutdown().await;
}

/// A role's publish rate is per user: two sessions of alice share one bucket, and bob
/// has his own.
#[tokio::test]
async fn sessions_of_one_user_share_the_users_publish_rate() {
    let clock = ManualClock::new();
    let mut security = security();
    security.roles.insert(
        "writer".into(),
        RoleSpec {
            publish: rule(&[">"], &[]),
            create_channel: ChannelRule {
                allow: vec![">".to_owned()],
                ..ChannelRule::default()
            },
            limits: LimitSpec {
                publishes_per_second: Some(10),
                publish_burst: Some(3),
                ..LimitSpec::default()
            },
            ..RoleSpec::default()
        },
    );
    security
        .users
        .push(user("alice", Some("wonderland"), &["writer"]));
    security
        .users
        .push(user("bob", Some("builder"), &["writer"]));
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .clock(clock.clone())
        .configure(|config| config.security = security)
        .start()
        .await
        .expect("server starts");
    let first = login(&server, "alice", "wonderland").await;
    let second = login(&server, "alice", "wonderland").await;
    let bob = login(&server, "bob", "builder").await;

    for (session, body) in [(&first, "one"), (&second, "two"), (&first, "three")] {
        session
            .publish("news", Payload::text(body))
            .await
            .expect("within the burst");
    }
    for session in [&first, &second] {
        assert_code(
            session.publish("news", Payload::text("over")).await,
            ErrorCode::RateLimited,
            "publish rate of 10 per second (burst 3) reached",
        );
    }
    bob.publish("news", Payload::text("bob's own bucket"))
        .await
        .expect("another user is not limited by alice");
    clock.advance(Duration::from_millis(100));
    second
        .publish("news", Payload::text("refilled"))
        .await
        .expect("a token back after 100 ms");
    assert_code(
        first.publish("news", Payload::text("again")).await,
        ErrorCode::RateLimited,
        "reached",
    );
    server.shutdown().await;
}

/// `switchboard serve --config FILE` as its own process, with the file and its
/// addresses; killed when dropped.
#[cfg(unix)]
mod served {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    pub use super::support::{BIN, ConfigServer, wait_exit};

    pub const LISTEN: &str = "[listen]\ntcp = [\"127.0.0.1:0\"]\nunix = \"server.sock\"\n\
                              [storage]\nmemory = true\n[auth]\nfailure_delay = \"1ms\"\n";

    pub struct Served {
        server: ConfigServer,
        pub config: PathBuf,
        pub tcp: String,
        pub tls: Option<String>,
        pub unix: String,
    }

    /// Writes `LISTEN` and `rest` as the config file in `dir` and serves it; `tls` says
    /// whether to wait for a TLS listener's address too.
    pub fn serve(dir: &Path, rest: &str, tls: bool) -> Served {
        let config = dir.join("switchboard.toml");
        std::fs::write(&config, format!("{LISTEN}{rest}")).unwrap();
        let server = ConfigServer::start(&config, tls);
        Served {
            unix: format!("unix:{}", dir.join("server.sock").display()),
            config,
            tcp: server.tcp.clone(),
            tls: server.tls.clone(),
            server,
        }
    }

    impl Served {
        pub fn rewrite(&self, rest: &str) {
            std::fs::write(&self.config, format!("{LISTEN}{rest}")).unwrap();
        }

        pub fn hangup(&self) {
            self.server.hangup();
        }
    }

    /// The CLI against `server` under `name`, with no login from the environment.
    pub fn cli(server: &str, name: &str) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::new(BIN);
        for variable in [
            "SWITCHBOARD_SERVER",
            "SWITCHBOARD_NAME",
            "SWITCHBOARD_TOKEN",
            "SWITCHBOARD_TOKEN_FILE",
            "SWITCHBOARD_USER",
            "SWITCHBOARD_PASSWORD",
            "SWITCHBOARD_JWT_FILE",
        ] {
            command.env_remove(variable);
        }
        command
            .args(["--server", server, "--name", name])
            .timeout(Duration::from_secs(30));
        command
    }

    /// A running CLI process, its stdout lines on a channel, its stderr kept.
    pub struct Running {
        pub child: Child,
        pub lines: mpsc::Receiver<String>,
    }

    pub fn spawn(server: &str, name: &str, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(BIN)
            .env_remove("SWITCHBOARD_SERVER")
            .env_remove("SWITCHBOARD_USER")
            .env_remove("SWITCHBOARD_PASSWORD")
            .envs(env.iter().copied())
            .args(["--server", server, "--name", name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Running { child, lines }
    }

    impl Running {
        /// Runs `publish` until this process prints a line containing `text` (the
        /// subscription may not be in place at the first tries).
        pub fn until_received(&self, text: &str, mut publish: impl FnMut()) {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                publish();
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    if line.contains(text) {
                        return;
                    }
                }
                assert!(Instant::now() < deadline, "{text:?} never arrived");
            }
        }

        /// Waits for the exit; the status and what it wrote on stderr.
        pub fn exit(mut self) -> (std::process::ExitStatus, String) {
            let status = wait_exit(&mut self.child, Duration::from_secs(10));
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr)
                .unwrap();
            (status, stderr)
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

mod support;

/// End to end: a `sub` logged in as alice receives `news.x`; the file changed to deny
/// `news.>` and `switchboard reload` run, the `sub` ends with the revocation on stderr
/// and a non-zero exit, while the admin's subscription on the Unix socket goes on.
#[cfg(unix)]
#[test]
fn a_reload_of_the_file_revokes_a_cli_subscription() {
    use served::{cli, serve, spawn};
    let dir = tempfile::tempdir().unwrap();
    let hash = hash_password(b"wonderland").unwrap();
    let file = |deny: &str| {
        format!(
            "[[users]]\nname = \"alice\"\npassword = \"{hash}\"\nroles = [\"reader\"]\n\
             [roles.reader]\nsubscribe = {{ allow = [\"news.>\"], deny = [{deny}] }}\n"
        )
    };
    let server = serve(dir.path(), &file(""), false);
    let alice = spawn(
        &server.tcp,
        "alice",
        &["--user", "alice", "sub", "news.>"],
        &[("SWITCHBOARD_PASSWORD", "wonderland")],
    );
    let watcher = spawn(&server.unix, "watcher", &["sub", "news.>"], &[]);
    let publish = |body: &str| {
        cli(&server.unix, "root")
            .args(["pub", "news.x", body])
            .assert()
            .success();
    };
    alice.until_received("before", || publish("before"));
    watcher.until_received("before", || {});

    server.rewrite(&file("\"news.>\""));
    cli(&server.unix, "root").arg("reload").assert().success();
    let (status, stderr) = alice.exit();
    assert!(!status.success());
    assert!(
        stderr.contains("to news.> was revoked"),
        "the revocation is shown: {stderr}"
    );
    watcher.until_received("after", || publish("after"));
}

/// End to end: a reload (SIGHUP) re-reads a `[[tls]]` listener's certificate files:
/// a client trusting only the new CA gets in, one trusting only the old CA no longer
/// does, and a session opened before the reload keeps working both ways.
#[cfg(unix)]
#[test]
fn a_sighup_reloads_the_tls_certificates() {
    use served::{cli, serve, spawn};
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("Old CA");
    let new_ca = Ca::new("New CA");
    let old_ca_file = dir.path().join("old-ca.pem");
    let new_ca_file = dir.path().join("new-ca.pem");
    old_ca.write_to(&old_ca_file);
    new_ca.write_to(&new_ca_file);
    old_ca.issue_files(dir.path(), "server", Some("hub"), &["127.0.0.1"]);
    let server = serve(
        dir.path(),
        "[[tls]]\nlisten = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server.key\"\n",
        true,
    );
    let tls = server.tls.clone().expect("a TLS address");
    let trusting = |ca: &Path, name: &str| {
        let mut command = cli(&tls, name);
        command.arg("--ca-file").arg(ca);
        command
    };
    let old_ca_arg = old_ca_file.to_str().unwrap();
    let old = spawn(&tls, "old", &["--ca-file", old_ca_arg, "sub", "news"], &[]);
    old.until_received("before", || {
        trusting(&old_ca_file, "pub")
            .args(["pub", "news", "before"])
            .assert()
            .success();
    });

    new_ca.issue_files(dir.path(), "server", Some("hub"), &["127.0.0.1"]);
    server.hangup();
    // The signal is handled on its own time: wait until the new certificate is served.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !trusting(&new_ca_file, "fresh")
        .arg("channels")
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stale = trusting(&old_ca_file, "stale")
        .arg("channels")
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&stale.get_output().stderr).into_owned();
    assert!(stderr.contains("not trusted"), "{stderr}");

    // The session from before the reload still receives what a new session publishes.
    old.until_received("after", || {
        trusting(&new_ca_file, "fresh")
            .args(["pub", "news", "after"])
            .assert()
            .success();
    });
}

/// With users configured and no anonymous role, every CLI command without credentials
/// fails to log in, with the AUTH_FAILED message and a non-zero exit.
#[cfg(unix)]
#[test]
fn cli_commands_without_credentials_fail_to_log_in() {
    use served::{cli, serve};
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        "[[users]]\nname = \"alice\"\n[roles.reader]\nsubscribe = { allow = [\">\"] }\n",
        false,
    );
    let commands: [&[&str]; 5] = [
        &["pub", "news", "hi"],
        &["sub", "news"],
        &["history", "news"],
        &["clients"],
        &["stats"],
    ];
    for command in commands {
        let out = cli(&server.tcp, "anonymous")
            .args(command)
            .assert()
            .failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains("AUTH_FAILED: authentication required"),
            "{command:?}: {stderr}"
        );
    }
}
