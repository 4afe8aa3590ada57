//! Credentials on the HTTP API, against a hub with users, tokens and JWTs configured:
//! Basic for a password, Bearer for a named token or a JWT, `?access_token=`, and the
//! refusals as JSON with the protocol's codes and the statuses that say the same
//! (401, 403, 429 with Retry-After).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use support::{Request, hub_with_web};
use switchboard_server::security::{SecurityConfig, ThrottleSpec, hash_password, token_sha256};

const JWT_SECRET: &[u8] = b"a secret shared with the identity provider";

/// alice (password "wonderland") writes news.*; the token "deploy-token" is the user
/// deploy, who only reads; JWTs signed with [`JWT_SECRET`] name their user; slow may
/// publish once a minute. Sessions without credentials are refused.
fn identities(secret_file: &std::path::Path) -> SecurityConfig {
    let sha256: String = token_sha256(b"deploy-token")
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut security: SecurityConfig = serde_json::from_value(json!({
        "users": [
            {"name": "alice", "password": hash_password(b"wonderland").unwrap(), "roles": ["writer"]},
            {"name": "slow", "password": hash_password(b"snail").unwrap(), "roles": ["slow"]},
        ],
        "tokens": [{"name": "ci", "user": "deploy", "sha256": sha256, "roles": ["reader"]}],
        "jwt": {"algorithm": "HS256", "secret_file": secret_file, "audience": "switchboard"},
        "roles": {
            "writer": {
                "publish": {"allow": ["news.>"]},
                "history": {"allow": ["news.>"]},
                "create_channel": {"allow": ["news.>"]},
            },
            "reader": {"history": {"allow": ["news.>"]}, "subscribe": {"allow": ["news.>"]}},
            "slow": {
                "publish": {"allow": [">"]},
                "create_channel": {"allow": [">"]},
                "limits": {"publishes_per_second": 1, "publish_burst": 1},
            },
        },
    }))
    .unwrap();
    security.throttle = ThrottleSpec {
        max_failures: 1000,
        delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        ..ThrottleSpec::default()
    };
    security
}

fn jwt(user: &str) -> String {
    let expiry = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": user, "aud": "switchboard", "exp": expiry});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap()
}

#[tokio::test]
async fn each_kind_of_credentials_logs_in_through_the_permission_engine() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt.secret");
    std::fs::write(&secret_file, JWT_SECRET).unwrap();
    let security = identities(&secret_file);
    let (server, web) = hub_with_web(move |config| config.security = security).await;
    let addr = web.local_addr();

    let identity = Request::new("GET", "/api/v1/identity")
        .basic("alice", "wonderland")
        .send(addr)
        .await;
    assert_eq!(identity.status, 200, "{}", identity.text());
    assert_eq!(identity.json()["user"], "alice");
    let published = Request::new("POST", "/api/v1/channels/news.today/messages")
        .basic("alice", "wonderland")
        .body("extra")
        .send(addr)
        .await;
    assert_eq!(published.status, 201, "{}", published.text());
    let elsewhere = Request::new("POST", "/api/v1/channels/gossip/messages")
        .basic("alice", "wonderland")
        .body("psst")
        .send(addr)
        .await;
    assert_eq!(elsewhere.status, 403);
    assert_eq!(elsewhere.code(), "FORBIDDEN");

    let as_token = Request::new("GET", "/api/v1/channels/news.today/messages/latest")
        .bearer("deploy-token")
        .send(addr)
        .await;
    assert_eq!(as_token.status, 200, "{}", as_token.text());
    assert_eq!(as_token.json()["body"], "extra");
    let token_writes = Request::new("POST", "/api/v1/channels/news.today/messages")
        .bearer("deploy-token")
        .body("no")
        .send(addr)
        .await;
    assert_eq!(token_writes.status, 403);
    let in_query = Request::new(
        "GET",
        "/api/v1/channels/news.today/messages/latest?access_token=deploy-token",
    )
    .send(addr)
    .await;
    assert_eq!(in_query.status, 200, "{}", in_query.text());

    let as_jwt = Request::new("GET", "/api/v1/identity")
        .bearer(&jwt("carol"))
        .send(addr)
        .await;
    assert_eq!(as_jwt.status, 200, "{}", as_jwt.text());
    assert_eq!(as_jwt.json()["user"], "carol");
    server.shutdown().await;
}

#[tokio::test]
async fn refused_credentials_are_401_and_a_rate_limit_is_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt.secret");
    std::fs::write(&secret_file, JWT_SECRET).unwrap();
    let security = identities(&secret_file);
    let (server, web) = hub_with_web(move |config| config.security = security).await;
    let addr = web.local_addr();

    for request in [
        Request::new("GET", "/api/v1/identity"),
        Request::new("GET", "/api/v1/identity").basic("alice", "looking-glass"),
        Request::new("GET", "/api/v1/identity").bearer("not-a-token"),
        Request::new("GET", "/api/v1/identity").bearer("a.b.c"),
        Request::new("GET", "/api/v1/identity").header("Authorization", "Digest x"),
    ] {
        let refused = request.send(addr).await;
        assert_eq!(refused.status, 401, "{}", refused.text());
        assert_eq!(refused.code(), "AUTH_FAILED");
        assert!(refused.header("www-authenticate").is_some());
    }

    let first = Request::new("POST", "/api/v1/channels/slow/messages")
        .basic("slow", "snail")
        .body("one")
        .send(addr)
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let second = Request::new("POST", "/api/v1/channels/slow/messages")
        .basic("slow", "snail")
        .body("two")
        .send(addr)
        .await;
    assert_eq!(second.status, 429, "{}", second.text());
    assert_eq!(second.code(), "RATE_LIMITED");
    let wait: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    server.shutdown().await;
}
