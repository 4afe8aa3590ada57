//! TLS listeners: encrypted TCP beside the plain listeners. A TLS connection completes its
//! TLS handshake first, then speaks the same protocol as plain TCP (preface, SESSION_INIT).
//!
//! * `settings`: a listener's configuration, and the rustls configuration read from its
//!   PEM files (certificate chain, key, client CA);
//! * `names`: the names a verified client certificate carries (subject CN, SANs);
//! * `stream`: a TLS stream split into the halves a connection is served on;
//! * `listener`: the accept loop, and the configurations a reload swaps.

mod listener;
mod names;
mod settings;
mod stream;

pub use self::listener::TlsReloader;
pub(crate) use self::listener::{TlsListener, accept_tls};
pub use self::names::certificate_names;
pub use self::settings::{ClientAuth, TlsError, TlsListenerConfig};
