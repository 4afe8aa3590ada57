//! The HTTP API over real HTTP on loopback: publishing any body (buffered or streamed),
//! reading messages back as JSON or raw, history, channels, tags, groups, clients and
//! relays, the server's counters and its stop, and JSON errors for what is not there.

mod support;

use base64::Engine;
use futures::StreamExt;
use serde_json::json;
use support::{Request, WAIT, get, hub_with_web};
use switchboard_client::{Client, ClientConfig};

#[tokio::test]
async fn a_published_body_reads_back_as_json_raw_by_id_and_in_history() {
    let (server, web) = hub_with_web(|_| {}).await;
    let addr = web.local_addr();
    let mut acks = Vec::new();
    for text in ["one #rust", "two", "three"] {
        let reply = Request::new("POST", "/api/v1/channels/news/messages")
            .header("Content-Type", "text/plain")
            .body(text)
            .send(addr)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        acks.push(reply.json());
    }
    assert_eq!(acks[2]["channel"], "news");
    assert_eq!(acks[2]["seq"], 3);
    assert!(acks[2]["timestamp"].as_str().unwrap().ends_with('Z'));

    let latest = get(addr, "/api/v1/channels/news/messages/latest").await;
    assert_eq!(latest.status, 200);
    let latest = latest.json();
    assert_eq!(latest["seq"], 3);
    assert_eq!(latest["body"], "three");
    assert_eq!(latest["encoding"], "text");
    assert_eq!(latest["content_type"], "text/plain");
    assert_eq!(latest["id"], acks[2]["id"]);

    let id = acks[0]["id"].as_str().unwrap();
    let raw = get(addr, &format!("/api/v1/channels/news/messages/{id}?raw")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text(), "one #rust");
    assert_eq!(raw.header("content-type"), Some("text/plain"));
    assert_eq!(raw.header("switchboard-seq"), Some("1"));

    let history = get(addr, "/api/v1/channels/news/messages?since_seq=2")
        .await
        .json();
    let seqs: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(2), json!(3)]);
    let newest = get(addr, "/api/v1/channels/news/messages?limit=1")
        .await
        .json();
    assert_eq!(newest[0]["body"], "three");

    let with_header = Request::new("POST", "/api/v1/channels/traced/messages")
        .header("Switchboard-Header-Trace", "abc-123")
        .body("traced")
        .send(addr)
        .await;
    assert_eq!(with_header.status, 201, "{}", with_header.text());
    let traced = get(addr, "/api/v1/channels/traced/messages/latest")
        .await
        .json();
    assert_eq!(traced["headers"], json!([["trace", "abc-123"]]));
    let traced = get(addr, "/api/v1/channels/traced/messages/latest?raw").await;
    assert_eq!(traced.header("switchboard-header-trace"), Some("abc-123"));

    let tagged = get(addr, "/api/v1/tags/rust/messages").await.json();
    assert_eq!(tagged[0]["body"], "one #rust");

    let missing = get(addr, "/api/v1/channels/nothing-here/messages/latest").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "NOT_FOUND");
    let bad_id = get(addr, "/api/v1/channels/news/messages/not-a-uuid").await;
    assert_eq!(bad_id.status, 400);
    assert_eq!(bad_id.code(), "INVALID_ARGUMENT");
    let bad_since = get(addr, "/api/v1/channels/news/messages?since_seq=x").await;
    assert_eq!(bad_since.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn a_binary_body_is_base64_in_json_and_itself_raw() {
    let (server, web) = hub_with_web(|_| {}).await;
    let addr = web.local_addr();
    let bytes = vec![0u8, 159, 146, 150, 255];
    let reply = Request::new("POST", "/api/v1/channels/bin/messages")
        .header("Content-Type", "application/x-thing")
        .body(bytes.clone())
        .send(addr)
        .await;
    assert_eq!(reply.status, 201);
    let latest = get(addr, "/api/v1/channels/bin/messages/latest")
        .await
        .json();
    assert_eq!(latest["encoding"], "base64");
    assert_eq!(latest["content_type"], "application/x-thing");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(latest["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, bytes);
    let raw = get(addr, "/api/v1/channels/bin/messages/latest?raw").await;
    assert_eq!(raw.body, bytes);
    server.shutdown().await;
}

#[tokio::test]
async fn a_body_over_one_frame_is_streamed_with_its_length_and_refused_without() {
    // Frames of 2 MiB keep it quick (a 3 MB body is then two chunks); small frames have
    // a test of their own (api_small_frames.rs).
    let (server, web) = hub_with_web(|config| {
        config.max_frame = 2 * 1024 * 1024;
        config.max_body = 8 * 1024 * 1024;
    })
    .await;
    let addr = web.local_addr();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let reply = Request::new("POST", "/api/v1/channels/files/messages")
        .header("Content-Type", "application/octet-stream")
        .body(big.clone())
        .send(addr)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let latest = get(addr, "/api/v1/channels/files/messages/latest")
        .await
        .json();
    assert_eq!(latest["streamed"], true);
    assert_eq!(latest["body_len"], 3_000_000);
    assert!(latest["body"].is_null());
    let raw = get(addr, "/api/v1/channels/files/messages/latest?raw").await;
    assert_eq!(raw.status, 200);
    assert!(raw.body == big, "the streamed body reads back whole");

    // Chunked, no length: fine while it fits in one frame, 411 past it.
    let small = Request::new("POST", "/api/v1/channels/files/messages")
        .body(vec![7u8; 100_000])
        .chunked()
        .send(addr)
        .await;
    assert_eq!(small.status, 201, "{}", small.text());
    let no_length = Request::new("POST", "/api/v1/channels/files/messages")
        .body(big.clone())
        .chunked()
        .send(addr)
        .await;
    assert_eq!(no_length.status, 411);
    assert_eq!(no_length.code(), "TOO_LARGE");

    let huge = Request::new("POST", "/api/v1/channels/files/messages")
        .header("Content-Length", (9 * 1024 * 1024).to_string())
        .send(addr)
        .await;
    assert_eq!(huge.status, 413);
    assert_eq!(huge.code(), "TOO_LARGE");
    server.shutdown().await;
}

#[tokio::test]
async fn channels_are_created_with_options_listed_and_deleted() {
    let (server, web) = hub_with_web(|_| {}).await;
    let addr = web.local_addr();
    let create = json!({"name": "orders", "options": {"history": 5, "durability": "memory"}});
    let created = Request::new("POST", "/api/v1/channels")
        .json(create)
        .send(addr)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["options"]["history"], 5);
    let other = json!({"name": "orders", "options": {"history": 9}});
    let conflict = Request::new("POST", "/api/v1/channels")
        .json(other)
        .send(addr)
        .await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.code(), "ALREADY_EXISTS");
    let bad = json!({"name": "x", "options": {"durability": "forever"}});
    let bad = Request::new("POST", "/api/v1/channels")
        .json(bad)
        .send(addr)
        .await;
    assert_eq!(bad.status, 400);
    let not_json = Request::new("POST", "/api/v1/channels")
        .header("Content-Type", "application/json")
        .body("{")
        .send(addr)
        .await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.code(), "INVALID_ARGUMENT");

    let list = get(addr, "/api/v1/channels").await.json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "orders")
    );
    assert_eq!(
        get(addr, "/api/v1/channels/orders").await.json()["name"],
        "orders"
    );
    let deleted = Request::new("DELETE", "/api/v1/channels/orders")
        .send(addr)
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(get(addr, "/api/v1/channels/orders").await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn groups_are_joined_posted_to_and_read() {
    let (server, web) = hub_with_web(|_| {}).await;
    let addr = web.local_addr();
    let create = json!({"name": "team", "description": "the crew"});
    let created = Request::new("POST", "/api/v1/groups")
        .json(create)
        .send(addr)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let directory = get(addr, "/api/v1/groups").await.json();
    assert_eq!(directory[0]["description"], "the crew");

    let outsider = Request::new("POST", "/api/v1/groups/team/messages")
        .body("hello")
        .send(addr)
        .await;
    assert_eq!(outsider.status, 403, "{}", outsider.text());
    assert_eq!(outsider.code(), "FORBIDDEN");

    let joined = Request::new("POST", "/api/v1/groups/team/join")
        .send(addr)
        .await;
    assert_eq!(joined.status, 204, "{}", joined.text());
    let members = get(addr, "/api/v1/groups/team/members").await.json();
    assert_eq!(members.as_array().unwrap().len(), 1);
    for text in ["a", "b", "c"] {
        let posted = Request::new("POST", "/api/v1/groups/team/messages")
            .header("Content-Type", "text/plain")
            .body(text)
            .send(addr)
            .await;
        assert_eq!(posted.status, 201, "{}", posted.text());
    }
    let history = get(addr, "/api/v1/groups/team/messages?limit=2")
        .await
        .json();
    let bodies: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("b"), json!("c")]);
    assert_eq!(history[0]["scope"], "group");
    let left = Request::new("POST", "/api/v1/groups/team/leave")
        .send(addr)
        .await;
    assert_eq!(left.status, 204);
    assert_eq!(get(addr, "/api/v1/groups/nope/members").await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn clients_are_listed_and_relayed_to() {
    let (server, web) = hub_with_web(|_| {}).await;
    let addr = web.local_addr();
    let bob = Client::connect(ClientConfig::new(
        server.tcp_addr().unwrap().to_string(),
        "bob",
    ))
    .await
    .unwrap();
    let mut directs = bob.direct_feed().unwrap();
    let clients = get(addr, "/api/v1/clients").await.json();
    let listed = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|client| client["name"] == "bob")
        .expect("bob is listed");
    assert_eq!(listed["client_id"], bob.session().client_id);

    let path = format!("/api/v1/relay?to={},999999", bob.session().client_id);
    let relayed = Request::new("POST", &path)
        .header("Content-Type", "text/plain")
        .body("psst")
        .send(addr)
        .await;
    assert_eq!(relayed.status, 200, "{}", relayed.text());
    let outcomes = relayed.json();
    assert_eq!(outcomes[0]["status"], "delivered");
    assert_eq!(outcomes[1]["status"], "unknown");
    let direct = tokio::time::timeout(WAIT, directs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(direct.text(), Some("psst"));

    let nobody = Request::new("POST", "/api/v1/relay")
        .body("x")
        .send(addr)
        .await;
    assert_eq!(nobody.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn stats_answer_and_an_admin_stops_the_server() {
    let (server, web) = hub_with_web(|config| {
        config.admin_token = Some("let-me-in".to_owned());
    })
    .await;
    let addr = web.local_addr();
    let stats = get(addr, "/api/v1/stats").await;
    assert_eq!(stats.status, 200);
    assert!(
        stats
            .json()
            .as_object()
            .unwrap()
            .contains_key("messages_published")
    );

    let refused = Request::new("POST", "/api/v1/admin/stop").send(addr).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let stopped = Request::new("POST", "/api/v1/admin/stop")
        .bearer("let-me-in")
        .send(addr)
        .await;
    assert_eq!(stopped.status, 202, "{}", stopped.text());
    tokio::time::timeout(WAIT, server.stopping())
        .await
        .expect("the stop request stops the hub");
    // As `serve` does: the hub drains, then the listener, which answers until then, stops.
    tokio::time::timeout(WAIT, async {
        server.shutdown().await;
        web.stopped().await;
    })
    .await
    .expect("the listener stops with the hub");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let (server, web) = hub_with_web(|_| {}).await;
    let reply = get(web.local_addr(), "/api/v1/no-such-thing").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.code(), "NOT_FOUND");
    assert_eq!(reply.json()["error"]["number"], 101);
    let wrong_method = Request::new("PUT", "/api/v1/channels")
        .send(web.local_addr())
        .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.code(), "INVALID_ARGUMENT");
    server.shutdown().await;
}
