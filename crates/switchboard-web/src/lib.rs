//! The Switchboard hub on the web: one HTTP listener, in the server's process, that
//! serves the HTTP API, Server-Sent Events, the protocol over WebSocket, Prometheus
//! metrics, health checks and the browser console.
//!
//! Everything here reaches the hub the way a client does: a WebSocket is attached to the
//! hub as a connection of its own, and the HTTP API opens protocol sessions in process,
//! so identities, permissions and limits are those of the binary protocol, enforced in
//! one place.
//!
//! * `api`: `/api/v1`, the HTTP API;
//! * `gateway`: the protocol sessions that serve HTTP requests, kept per client;
//! * `error`: errors as JSON with the protocol's codes and the matching HTTP status;
//! * `health`: `/healthz` and `/readyz`;
//! * `metrics`: `/metrics`, for Prometheus;
//! * `ws`: `/ws`, a WebSocket carrying protocol frames;
//! * `console`: the browser console, its assets embedded in the binary.

mod api;
mod console;
mod error;
mod gateway;
mod health;
mod listener;
mod metrics;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use std::future::IntoFuture;

use axum::Router;
use axum::serve::ListenerExt;
use switchboard_server::HubHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{error, info};

/// The web listener's settings.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Address to listen on ("127.0.0.1:7480"; port 0 for any free port).
    pub addr: String,
    /// Origins (`https://app.example.com`) whose pages may open `/ws`, besides the
    /// listener's own; `"*"` for any.
    pub allowed_origins: Vec<String>,
    /// TLS for the listener (https, wss): the certificate chain and key, PEM.
    pub tls: Option<WebTls>,
}

/// The web listener's certificate and key (PEM files), read as the server reads its TLS
/// listeners' and reloaded with them.
#[derive(Debug, Clone)]
pub struct WebTls {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

/// The address the web listener uses unless told otherwise.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7480";

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            addr: DEFAULT_HTTP_ADDR.to_owned(),
            allowed_origins: Vec::new(),
            tls: None,
        }
    }
}

/// Why the web listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP TLS: {0}")]
    Tls(#[from] switchboard_server::TlsError),
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: HubHandle,
    pub(crate) gateway: Arc<gateway::Gateway>,
}

/// A running web listener. It stops once the hub has shut down and drained (answering
/// `/readyz` with 503 while it drains); [`WebServer::stopped`] waits for that.
#[derive(Debug)]
pub struct WebServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl WebServer {
    /// Binds `config.addr` and serves until the hub shuts down.
    pub async fn start(hub: HubHandle, config: WebConfig) -> Result<WebServer, WebError> {
        let bind_error = |source| WebError::Bind {
            addr: config.addr.clone(),
            source,
        };
        // Read before anything is opened: a bad certificate file is a start-up error.
        let tls = match &config.tls {
            Some(files) => Some(hub.load_tls(switchboard_server::TlsListenerConfig::new(
                config.addr.clone(),
                files.cert_file.clone(),
                files.key_file.clone(),
            ))?),
            None => None,
        };
        let socket = TcpListener::bind(&config.addr).await.map_err(bind_error)?;
        let addr = socket.local_addr().map_err(bind_error)?;
        let origins = ws::OriginPolicy::new(&config.allowed_origins, tls.is_some());
        // A no-op tap: it gives the custom listener axum's `ConnectInfo<SocketAddr>`.
        let listener = listener::WebListener::new(socket, hub.clone(), tls).tap_io(|_| {});
        info!(target: switchboard_server::log::GENERAL, %addr, "listening for HTTP");
        let gateway = Arc::new(gateway::Gateway::new(hub.clone()));
        let state = AppState {
            hub: hub.clone(),
            gateway: gateway.clone(),
        };
        let app = router(state, origins);
        let task = tokio::spawn(async move {
            let sweeping = hub.clone();
            let sweeper = gateway.clone();
            // Closes idle HTTP sessions until the hub shuts down.
            let sweep = async move {
                let mut ticks = tokio::time::interval(gateway::IDLE / 4);
                loop {
                    tokio::select! {
                        () = sweeping.shutting_down() => return,
                        _ = ticks.tick() => { sweeper.close_idle(); }
                    }
                }
            };
            let stopping = hub.clone();
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            // Serves while the hub drains, so that /readyz says so.
            .with_graceful_shutdown(async move { stopping.drained().await });
            let (served, ()) = tokio::join!(serve.into_future(), sweep);
            if let Err(error) = served {
                error!(target: switchboard_server::log::ERROR, %error, "the HTTP listener failed");
            }
            gateway.close_all();
        });
        Ok(WebServer { addr, task })
    }

    /// The address listened on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the listener has stopped (after the hub began shutting down and the
    /// requests in progress were answered).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Every route of the web listener.
fn router(state: AppState, origins: ws::OriginPolicy) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(ws::routes(origins))
        .merge(console::routes())
        .with_state(state)
}
