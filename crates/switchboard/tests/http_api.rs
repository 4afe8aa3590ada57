//! The HTTP API of `switchboard serve --config FILE`, end to end: a real server process
//! with users from its config file, spoken to over HTTP/1.1 on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;

mod support;

use support::ConfigServer;

/// One request on its own connection: the status and the body.
fn http(addr: &str, request_line: &str, headers: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let request = format!(
        "{request_line} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response[9..12].parse().expect("a status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_user_of_the_config_file_publishes_and_reads_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let hash = switchboard_server::security::hash_password(b"wonderland").unwrap();
    let config = format!(
        "[listen]\ntcp = [\"127.0.0.1:0\"]\n[storage]\nmemory = true\n\
         [[users]]\nname = \"alice\"\npassword = \"{hash}\"\nroles = [\"writer\"]\n\
         [roles.writer]\npublish = {{ allow = [\">\"] }}\nhistory = {{ allow = [\">\"] }}\n\
         create_channel = {{ allow = [\">\"] }}\n"
    );
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, config).unwrap();
    let server = ConfigServer::start(&path, false);
    // alice:wonderland and alice:wrong, in base64.
    let alice = "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==\r\n";
    let wrong = "Authorization: Basic YWxpY2U6d3Jvbmc=\r\n";

    let (status, body) = http(
        &server.http,
        "POST /api/v1/channels/news/messages",
        &format!("{alice}Content-Type: text/plain\r\n"),
        "over http",
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(
        &server.http,
        "GET /api/v1/channels/news/messages/latest?raw",
        alice,
        "",
    );
    assert_eq!((status, body.as_str()), (200, "over http"));
    let (status, body) = http(&server.http, "GET /api/v1/identity", wrong, "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"AUTH_FAILED\""), "{body}");
    let (status, body) = http(&server.http, "GET /api/v1/identity", "", "");
    assert_eq!(
        status, 401,
        "anonymous sessions are refused once users exist: {body}"
    );
}
