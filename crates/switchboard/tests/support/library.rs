//! In-process servers and library clients for tests that drive the hub through the
//! client library rather than the CLI.

use std::path::Path;

use switchboard_client::{Client, ClientConfig};
use switchboard_server::{Server, ServerHandle, SyncPolicy};

/// A memory-only server on an ephemeral loopback port.
pub async fn server() -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .start()
        .await
        .expect("server starts")
}

/// A server keeping history in `dir` under `sync`.
pub async fn durable_server(dir: &Path, sync: SyncPolicy) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(dir)
        .sync(sync)
        .start()
        .await
        .expect("server starts")
}

/// A client of `server` going by `name`.
pub async fn client(server: &ServerHandle, name: &str) -> Client {
    let addr = server.tcp_addr().expect("tcp").to_string();
    Client::connect(ClientConfig::new(addr, name))
        .await
        .expect("client connects")
}
