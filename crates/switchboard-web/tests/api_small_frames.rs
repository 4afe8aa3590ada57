//! The HTTP API on a hub whose frames are smaller than a streaming chunk: bodies over
//! `max_frame` are streamed into the hub and read back whole.

mod support;

use support::{Request, get, hub_with_web};

const MAX_FRAME: u32 = 16 * 1024;

#[tokio::test]
async fn bodies_over_small_frames_are_streamed_in_and_read_back_whole() {
    let (server, web) = hub_with_web(|config| config.max_frame = MAX_FRAME).await;
    let addr = web.local_addr();
    for len in [100 * 1024, 3 * 1024 * 1024] {
        let body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let reply = Request::new("POST", "/api/v1/channels/files/messages")
            .header("Content-Type", "application/octet-stream")
            .body(body.clone())
            .send(addr)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        let id = reply.json()["id"].as_str().unwrap().to_owned();

        let latest = get(addr, "/api/v1/channels/files/messages/latest")
            .await
            .json();
        assert_eq!(latest["streamed"], true);
        assert_eq!(latest["body_len"], len);
        let raw = get(addr, &format!("/api/v1/channels/files/messages/{id}?raw")).await;
        assert_eq!(raw.status, 200, "{}", raw.text());
        assert!(raw.body == body, "a body of {len} bytes reads back whole");
    }
    server.shutdown().await;
}
