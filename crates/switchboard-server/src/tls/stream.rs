//! A server-side TLS stream as a [`Transport`]: one stream shared by a read half and a
//! write half under a lock held only for the length of one poll.
//!
//! Waiting without a buffer needs care here. Plain sockets are ready to read when the
//! kernel holds bytes, but a TLS stream can hold decrypted bytes of its own: one TLS
//! record may carry several frames, and rustls keeps what a read did not take. The
//! socket then shows nothing to read while a read would return at once, and a wait on
//! the socket alone would sleep on data already here. So [`TlsReadHalf`] first asks
//! rustls whether it has plaintext (or the peer's close) waiting, processing any records
//! already received, and waits on the socket only when it has none.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::connection::{Readable, Transport, WriteHalf};

type Shared = Arc<Mutex<TlsStream<TcpStream>>>;

/// An accepted connection whose TLS handshake is complete.
pub(crate) struct TlsTransport(pub(crate) TlsStream<TcpStream>);

impl Transport for TlsTransport {
    type Read = TlsReadHalf;
    type Write = TlsWriteHalf;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        let shared = Arc::new(Mutex::new(self.0));
        (TlsReadHalf(shared.clone()), TlsWriteHalf(shared))
    }
}

/// The read half of a TLS connection.
pub(crate) struct TlsReadHalf(Shared);

/// The write half of a TLS connection.
pub(crate) struct TlsWriteHalf(Shared);

impl AsyncRead for TlsReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_read(cx, buf)
    }
}

impl Readable for TlsReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.0.lock();
        let (socket, connection) = stream.get_mut();
        match connection.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                return Poll::Ready(Ok(()));
            }
            Ok(_) => {}
            // A read reports the fault (and sends the alert).
            Err(_) => return Poll::Ready(Ok(())),
        }
        socket.poll_read_ready(cx)
    }
}

impl WriteHalf for TlsWriteHalf {
    crate::connection::parked_as_itself!();
}

impl AsyncWrite for TlsWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::TlsTransport;
    use crate::connection::{Readable, Transport};

    #[allow(deprecated)]
    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server-side TLS stream and the client's end of it.
    async fn pair() -> (TlsTransport, tokio_rustls::client::TlsStream<TcpStream>) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let certificate: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connecting = tokio::spawn(async move {
            let socket = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            TlsConnector::from(Arc::new(client))
                .connect(name, socket)
                .await
                .unwrap()
        });
        let (socket, _) = listener.accept().await.unwrap();
        let accepted = TlsAcceptor::from(Arc::new(server))
            .accept(socket)
            .await
            .unwrap();
        (TlsTransport(accepted), connecting.await.unwrap())
    }

    /// One TLS record carries more than a read takes: the rest is decrypted and held by
    /// rustls, and the socket has nothing more to say. Waiting for the read half must see
    /// those bytes, not sleep on the quiet socket.
    #[tokio::test]
    async fn the_read_half_is_ready_while_tls_holds_decrypted_bytes() {
        let (server, mut client) = pair().await;
        let (mut read, _write) = server.into_halves();
        client.write_all(b"first second").await.unwrap();
        client.flush().await.unwrap();
        let mut first = [0u8; 6];
        read.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"first ");
        let ready = tokio::time::timeout(
            Duration::from_secs(2),
            poll_fn(|cx| read.poll_read_ready(cx)),
        )
        .await;
        assert!(matches!(ready, Ok(Ok(()))), "ready with bytes held by TLS");
        let mut rest = [0u8; 6];
        read.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"second");

        // With nothing held and nothing sent, the wait waits; the next record wakes it.
        let waiting = tokio::time::timeout(
            Duration::from_millis(200),
            poll_fn(|cx| read.poll_read_ready(cx)),
        )
        .await;
        assert!(waiting.is_err(), "ready with nothing to read");
        client.write_all(b"third").await.unwrap();
        client.flush().await.unwrap();
        let woken = tokio::time::timeout(
            Duration::from_secs(2),
            poll_fn(|cx| read.poll_read_ready(cx)),
        )
        .await;
        assert!(matches!(woken, Ok(Ok(()))));
    }
}
