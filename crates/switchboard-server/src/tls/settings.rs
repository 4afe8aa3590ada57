//! A TLS listener's settings and the rustls server configuration built from its PEM
//! files. Only the ring provider is used (no OpenSSL, no aws-lc), with TLS 1.2 and 1.3.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Whether a TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client may present a certificate; when it does, it must chain to the client CA.
    Optional,
    /// A client must present a certificate that chains to the client CA.
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(ClientAuth::None),
            "optional" => Ok(ClientAuth::Optional),
            "required" => Ok(ClientAuth::Required),
            other => Err(format!(
                "client auth {other:?} is not one of none, optional, required"
            )),
        }
    }
}

impl std::fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "none",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "required",
        })
    }
}

/// One TLS listener: its address and the PEM files it serves with. The files are read at
/// start and again at each reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListenerConfig {
    /// TCP address to listen on ("0.0.0.0:7421"; port 0 picks a free port).
    pub addr: String,
    /// The server's certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Whether clients are asked for a certificate.
    pub client_auth: ClientAuth,
    /// The CA certificates (PEM) client certificates must chain to; required unless
    /// `client_auth` is `None`.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsListenerConfig {
    /// A listener on `addr` serving this certificate chain and key, without client
    /// certificates.
    pub fn new(
        addr: impl Into<String>,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        TlsListenerConfig {
            addr: addr.into(),
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_auth: ClientAuth::None,
            client_ca_file: None,
        }
    }

    /// Asks clients for a certificate chaining to the CAs in `ca_file`.
    #[must_use]
    pub fn with_client_auth(
        mut self,
        client_auth: ClientAuth,
        ca_file: impl Into<PathBuf>,
    ) -> Self {
        self.client_auth = client_auth;
        self.client_ca_file = Some(ca_file.into());
        self
    }

    /// Reads the PEM files as a start would, and says what is wrong with them, if
    /// anything.
    pub fn check(&self) -> Result<(), TlsError> {
        self.load().map(drop)
    }

    /// Reads the PEM files and builds the rustls configuration they describe.
    pub(crate) fn load(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let chain = read_certificates(&self.cert_file)?;
        let key = read_key(&self.key_file)?;
        let provider = ring_provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|source| TlsError::Rustls {
                what: "choosing the protocol versions".to_owned(),
                source,
            })?;
        let builder = match (self.client_auth, &self.client_ca_file) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(TlsError::MissingClientCa {
                    addr: self.addr.clone(),
                    client_auth: self.client_auth,
                });
            }
            (client_auth, Some(ca_file)) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in read_certificates(ca_file)? {
                    roots.add(certificate).map_err(|source| TlsError::Rustls {
                        what: format!("adding a CA certificate from {}", ca_file.display()),
                        source,
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match client_auth {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier.build().map_err(|error| TlsError::ClientCa {
                    path: ca_file.clone(),
                    message: error.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|source| TlsError::Rustls {
                what: format!(
                    "pairing {} with {}",
                    self.cert_file.display(),
                    self.key_file.display()
                ),
                source,
            })?;
        Ok(Arc::new(config))
    }
}

/// The ring provider with its default suites and key exchange groups. The provider
/// function is marked deprecated for lacking post-quantum key exchange, which only the
/// aws-lc provider has; ring is chosen to build without a C/assembly toolchain for aws-lc.
#[allow(deprecated)]
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS listener's configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("TLS listener {addr}: client auth {client_auth} needs a client CA file")]
    MissingClientCa {
        addr: String,
        client_auth: ClientAuth,
    },
    #[error("client CA file {}: {message}", path.display())]
    ClientCa { path: PathBuf, message: String },
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
}

/// Every certificate in a PEM file, in order.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// The first private key in a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        error => TlsError::Pem {
            path: path.to_path_buf(),
            message: error.to_string(),
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}
