//! Accepting TLS connections, and the configurations a reload swaps: each listener holds
//! its rustls configuration in an `ArcSwap`; every handshake takes the one in force when
//! it starts, so a reload changes what new handshakes see and nothing of the connections
//! already open.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::names::certificate_names;
use super::settings::{TlsError, TlsListenerConfig};
use super::stream::TlsTransport;
use crate::connection::{self, Peer};
use crate::hub::Hub;
use crate::hub::stats::Counters;
use crate::log;
use crate::security::addresses::AddressSlot;

/// One TLS listener's settings and the rustls configuration in force.
pub(crate) struct TlsListener {
    settings: TlsListenerConfig,
    current: ArcSwap<rustls::ServerConfig>,
}

impl TlsListener {
    /// Reads the listener's files; an error names the file at fault.
    pub(crate) fn load(settings: TlsListenerConfig) -> Result<TlsListener, TlsError> {
        let current = ArcSwap::new(settings.load()?);
        Ok(TlsListener { settings, current })
    }

    pub(crate) fn settings(&self) -> &TlsListenerConfig {
        &self.settings
    }

    /// The rustls configuration in force: the one a handshake starting now uses.
    pub(crate) fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current.load_full()
    }
}

/// Re-reads every TLS listener's certificate, key and client CA files and puts the new
/// configurations in force together: either every listener gets its new files or, when
/// one cannot be read, none changes.
///
/// Clones share their listeners: a listener added later (the web listener's, see
/// [`crate::HubHandle::load_tls`]) is reloaded with the others.
#[derive(Clone, Default)]
pub struct TlsReloader {
    listeners: Arc<parking_lot::RwLock<Vec<Arc<TlsListener>>>>,
}

impl TlsReloader {
    pub(crate) fn new(listeners: Vec<Arc<TlsListener>>) -> Self {
        TlsReloader {
            listeners: Arc::new(parking_lot::RwLock::new(listeners)),
        }
    }

    /// Reloads `listener` with the others from now on.
    pub(crate) fn add(&self, listener: Arc<TlsListener>) {
        self.listeners.write().push(listener);
    }

    /// Reloads every listener's files. New handshakes use them; connections already open
    /// keep the certificate they were opened with. On an error, the configurations in
    /// force stay and the error names the file at fault.
    pub fn reload(&self) -> Result<(), TlsError> {
        let listeners = self.listeners.read().clone();
        let fresh = listeners
            .iter()
            .map(|listener| listener.settings.load())
            .collect::<Result<Vec<_>, _>>()?;
        for (listener, config) in listeners.iter().zip(fresh) {
            listener.current.store(config);
            info!(target: log::GENERAL, addr = %listener.settings.addr, "TLS certificates reloaded");
        }
        Ok(())
    }
}

impl std::fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader")
            .field("listeners", &self.listeners.read().len())
            .finish()
    }
}

/// Accepts connections on a TLS listener until shutdown; each runs its TLS handshake on a
/// task of its own, so a slow handshake never holds up the next accept.
pub(crate) async fn accept_tls(
    hub: Arc<Hub>,
    socket: TcpListener,
    tls: Arc<TlsListener>,
    tracker: TaskTracker,
) {
    let serving = hub.clone();
    let refusing = hub.clone();
    crate::server::accept_loop(
        hub,
        socket,
        move |stream, peer, slot| {
            debug!(target: log::CONNECTION, %peer, "accepted on TLS");
            let config = tls.current.load_full();
            tracker.spawn(serve_tls(serving.clone(), stream, peer, config, slot));
        },
        // Nothing can be said before a TLS handshake: counted, logged and closed.
        move |_stream, peer, refusal| {
            crate::server::count_address_refusal(&refusing, peer, refusal);
        },
    )
    .await;
}

/// The TLS handshake, within the handshake time limit, then the connection as on plain
/// TCP. A peer that does not complete the handshake (plaintext, garbage, an HTTP request,
/// a certificate the listener refuses) is dropped and counted as refused.
async fn serve_tls(
    hub: Arc<Hub>,
    stream: TcpStream,
    addr: std::net::SocketAddr,
    config: Arc<rustls::ServerConfig>,
    slot: AddressSlot,
) {
    let limit = hub.config().handshake_timeout;
    let handshake = Box::pin(tokio::time::timeout(
        limit,
        TlsAcceptor::from(config).accept(stream),
    ));
    let handshake = tokio::select! {
        () = hub.shutting_down() => return,
        handshake = handshake => handshake,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        // Gone before saying anything (a port probe, a health check): nothing was refused,
        // as on plain TCP.
        Ok(Err(error))
            if matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            debug!(target: log::CONNECTION, peer = %addr, %error, "connection ended during the TLS handshake");
            return;
        }
        Ok(Err(error)) => {
            refused(&hub);
            debug!(target: log::CONNECTION, peer = %addr, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            refused(&hub);
            debug!(target: log::CONNECTION, peer = %addr, "no TLS handshake within {limit:?}; closing");
            return;
        }
    };
    let certificate_names = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| certificate_names(leaf))
        .unwrap_or_default();
    debug!(target: log::CONNECTION, peer = %addr, ?certificate_names, "TLS handshake complete");
    let peer = Peer::Tls {
        addr,
        certificate_names,
    };
    connection::serve(hub, TlsTransport(stream), peer, Some(slot)).await;
}

fn refused(hub: &Hub) {
    hub.counters()
        .refused(crate::metrics::RefusalReason::TlsHandshake);
    Counters::add(&hub.counters().tls_handshakes_failed, 1);
}
