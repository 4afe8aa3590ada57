//! TLS for `tls://HOST:PORT` servers: [`TlsOptions`] (which CAs to trust, the name to
//! check, an optional client certificate), the connector built from them, and plain
//! words for the ways a TLS handshake fails.
//!
//! The server's certificate is checked against the system's root certificates (read
//! with rustls-native-certs, so the machine's own trust store and its updates apply) or
//! against the CAs of a PEM file. Only the ring provider is used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ClientError, ErrorDetail, Result};

/// How a client speaks TLS to its server.
///
/// ```
/// use switchboard_client::{ClientConfig, TlsOptions};
///
/// let config = ClientConfig::new("hub.example.com:7421", "alice").with_tls(
///     TlsOptions::new()
///         .with_ca_file("/etc/switchboard/ca.pem")
///         .with_client_certificate("alice.pem", "alice.key"),
/// );
/// assert!(config.tls().is_some());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    client_certificate: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// Trusts the system's root certificates and checks the server's certificate against
    /// the host name of the address.
    pub fn new() -> Self {
        TlsOptions::default()
    }

    /// Trusts the CA certificates of this PEM file instead of the system's.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Checks the server's certificate against this name instead of the address's host.
    #[must_use]
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Presents this certificate chain (PEM, leaf first) and private key (PEM) when the
    /// server asks for a client certificate.
    #[must_use]
    pub fn with_client_certificate(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some((cert_file.into(), key_file.into()));
        self
    }

    /// The CA file trusted instead of the system's roots, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The name the server's certificate is checked against, if not the host's.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The client certificate and key files, if any.
    pub fn client_certificate(&self) -> Option<(&Path, &Path)> {
        self.client_certificate
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()))
    }

    /// The rustls configuration these options describe, reading their files.
    fn client_config(&self) -> Result<rustls::ClientConfig> {
        let roots = match &self.ca_file {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in read_certificates(path)? {
                    roots.add(certificate).map_err(|error| {
                        setup_error(format!(
                            "CA file {}: a certificate is unusable: {error}",
                            path.display()
                        ))
                    })?;
                }
                roots
            }
            None => system_roots()?,
        };
        let builder = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| setup_error(format!("TLS versions: {error}")))?
            .with_root_certificates(roots);
        match &self.client_certificate {
            None => Ok(builder.with_no_client_auth()),
            Some((cert_file, key_file)) => {
                let chain = read_certificates(cert_file)?;
                let key = read_key(key_file)?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    setup_error(format!(
                        "client certificate {} with key {}: {error}",
                        cert_file.display(),
                        key_file.display()
                    ))
                })
            }
        }
    }
}

/// Opens TLS over a connected socket to `host_port`, checking the server's certificate.
pub(crate) async fn connect(
    stream: TcpStream,
    host_port: &str,
    options: &TlsOptions,
) -> Result<TlsStream<TcpStream>> {
    let name = options
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(host_port).to_owned());
    let server_name = ServerName::try_from(name.clone()).map_err(|_| {
        setup_error(format!(
            "{name:?} is not a server name a certificate can be checked against"
        ))
    })?;
    let connector = TlsConnector::from(Arc::new(options.client_config()?));
    connector
        .connect(server_name, stream)
        .await
        .map_err(|error| match rustls_error(&error) {
            Some(cause) => handshake_error(host_port, cause),
            None => ClientError::from(error),
        })
}

/// The host of `HOST:PORT`, without an IPv6 address's brackets.
fn host_of(host_port: &str) -> &str {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host)
}

/// The TLS fault inside an I/O error, if that is what it is.
pub(crate) fn rustls_error(error: &std::io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A failed TLS handshake (or a TLS alert right after it, which is how a TLS 1.3 server
/// refuses a client certificate) in plain words.
pub(crate) fn handshake_error(host_port: &str, cause: &rustls::Error) -> ClientError {
    use rustls::{AlertDescription, CertificateError, Error};
    let reason = match cause {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not trusted: it was not issued by a trusted CA \
             (give the CA that issued it as the CA file)"
                .to_owned()
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the server's certificate is not valid for this server name \
             (check the address, or set the server name to one the certificate names)"
                .to_owned()
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".to_owned(),
        Error::InvalidCertificate(other) => {
            format!("the server's certificate is not trusted: {other:?}")
        }
        Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate (CertificateRequired): give a \
             certificate and key issued by a CA it trusts"
                .to_owned()
        }
        Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => format!(
            "the server refused this client's certificate ({alert:?}): it requires one \
             issued by a CA it trusts"
        ),
        other => other.to_string(),
    };
    ErrorDetail::Tls(format!("TLS with {host_port} failed: {reason}")).into()
}

fn setup_error(message: String) -> ClientError {
    ErrorDetail::InvalidArgument(format!("TLS: {message}")).into()
}

/// The system's root certificates; those that cannot be parsed are skipped.
fn system_roots() -> Result<rustls::RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let detail = found
            .errors
            .first()
            .map(|error| format!(" ({error})"))
            .unwrap_or_default();
        return Err(setup_error(format!(
            "no system root certificates could be read{detail}; give a CA file"
        )));
    }
    Ok(roots)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| setup_error(format!("{}: {error}", path.display())))?;
    if certificates.is_empty() {
        return Err(setup_error(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => setup_error(format!(
            "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        )),
        error => setup_error(format!("{}: {error}", path.display())),
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|error| setup_error(format!("cannot read {}: {error}", path.display())))
}

/// The ring provider (marked deprecated for lacking post-quantum key exchange, which only
/// the aws-lc provider has; ring builds without aws-lc's toolchain).
#[allow(deprecated)]
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_is_the_address_without_its_port() {
        assert_eq!(host_of("hub.example.com:7421"), "hub.example.com");
        assert_eq!(host_of("127.0.0.1:7421"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7421"), "::1");
    }
}
