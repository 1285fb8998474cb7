//! TLS with rustls: the server's certificate and key, the client's trusted
//! roots, and [`TlsListener`] for serving `wss://` from an axum router.
//!
#![doc = include_str!("../docs/guide/tls.md")]

/// The TLS library, for configurations beyond [`Tls::from_pem_files`].
pub use rustls;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// A TLS setting could not be made (an unreadable or invalid PEM file, a
/// key that does not match its certificate).
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// The server side of TLS: a certificate chain and its private key.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key (PKCS #8, PKCS #1
    /// or SEC1).
    pub fn from_pem_files(certificate: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Tls, TlsError> {
        let (certificate, key) = (certificate.as_ref(), key.as_ref());
        let chain = CertificateDer::pem_file_iter(certificate)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError(format!("{}: {e}", certificate.display())))?;
        if chain.is_empty() {
            return Err(TlsError(format!("{}: no certificate in it", certificate.display())));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| TlsError(e.to_string()))?;
        Ok(Tls::from_config(Arc::new(config)))
    }

    /// Uses a rustls configuration made elsewhere (client certificates,
    /// certificate resolvers, ALPN).
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Tls {
        Tls { acceptor: tokio_rustls::TlsAcceptor::from(config) }
    }

    /// Runs the server side of a TLS handshake.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

/// The cryptography behind every TLS connection: rustls with *ring*.
/// rustls 0.23.48 deprecates this provider for its lack of post-quantum key
/// exchange; the alternative, aws-lc-rs, needs a C toolchain to build.
/// Allowed here so that no build of a dependent prints the warning.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static SYSTEM_ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();

/// The roots a client trusts by default: the operating system's.
fn system_roots() -> &'static [CertificateDer<'static>] {
    SYSTEM_ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::debug!(%error, "could not load a system root certificate");
        }
        loaded.certs
    })
}

/// The client side of TLS: the system's roots plus any given.
#[derive(Clone, Default)]
pub(crate) struct ClientTls {
    extra_roots: Vec<CertificateDer<'static>>,
    config: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").field("extra_roots", &self.extra_roots.len()).finish_non_exhaustive()
    }
}

/// Certificates a client trusts besides the system's roots (a private CA, a
/// self-signed server), for
/// [`ClientBuilder::root_certificates`](crate::client::ClientBuilder::root_certificates).
#[derive(Clone, Debug)]
pub struct RootCertificates(Vec<CertificateDer<'static>>);

impl RootCertificates {
    /// Every certificate in PEM text (`-----BEGIN CERTIFICATE-----` blocks);
    /// an error when there is none or one does not parse.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        let roots: Vec<_> = CertificateDer::pem_slice_iter(pem.as_ref())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError(format!("root certificate: {e}")))?;
        if roots.is_empty() {
            return Err(TlsError("root certificate: no certificate in the PEM text".into()));
        }
        Ok(RootCertificates(roots))
    }

    /// The certificates in the PEM file at `path`.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
        Self::from_pem(pem)
    }
}

impl ClientTls {
    pub(crate) fn add_roots(&mut self, roots: RootCertificates) {
        self.extra_roots.extend(roots.0);
    }

    pub(crate) fn set_config(&mut self, config: Arc<rustls::ClientConfig>) {
        self.config = Some(config);
    }

    /// The connector for one connection: the configuration given, or one
    /// with the system's roots (loaded once, off the runtime's threads, and
    /// shared while no extra roots are given) plus the extra ones.
    pub(crate) async fn connector(&self) -> Result<tokio_rustls::TlsConnector, TlsError> {
        static SYSTEM_ONLY: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        if let Some(config) = &self.config {
            return Ok(tokio_rustls::TlsConnector::from(config.clone()));
        }
        if SYSTEM_ROOTS.get().is_none() {
            // Reading the system's certificate files blocks.
            let _ = tokio::task::spawn_blocking(system_roots).await;
        }
        if self.extra_roots.is_empty()
            && let Some(config) = SYSTEM_ONLY.get()
        {
            return Ok(tokio_rustls::TlsConnector::from(config.clone()));
        }
        let config = Arc::new(self.build_config()?);
        if self.extra_roots.is_empty() {
            let _ = SYSTEM_ONLY.set(config.clone());
        }
        Ok(tokio_rustls::TlsConnector::from(config))
    }

    fn build_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
        for root in &self.extra_roots {
            roots.add(root.clone()).map_err(|e| TlsError(format!("root certificate: {e}")))?;
        }
        if added == 0 && self.extra_roots.is_empty() {
            return Err(TlsError("no root certificates: none on this system, and none given".into()));
        }
        Ok(rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

type Handshaking = Pin<Box<dyn Future<Output = Option<(TlsStream<TcpStream>, SocketAddr)>> + Send>>;

/// A TCP listener whose connections speak TLS, for `Endpoint::serve` (or
/// `axum::serve`), with the `axum` feature: serves an
/// axum router (a wsduplex [`Endpoint`](crate::server::Endpoint) mounted in it
/// included) over `https://` and `wss://`.
///
/// Handshakes run side by side, each within a timeout, so a slow client holds
/// up no other; one that fails (a client that does not trust the
/// certificate, say) is logged and dropped.
///
/// Once a handshake is done, `Endpoint::serve` bounds the HTTP phase as
/// for plain TCP (`axum::serve` does not). `ListenerExt::tap_io` is the
/// place to turn off Nagle's algorithm (with the `axum` feature):
///
#[cfg_attr(
    feature = "axum",
    doc = r#"
```no_run
# async fn serve(app: axum::Router, endpoint: wsduplex::server::Endpoint, tls: wsduplex::tls::Tls) -> std::io::Result<()> {
use axum::serve::ListenerExt;

let tcp = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
let listener = wsduplex::tls::TlsListener::new(tcp, tls).tap_io(|tls| {
    let _ = tls.get_ref().0.set_nodelay(true);
});
endpoint.serve(listener, app).await;
# Ok(())
# }
```
"#
)]
pub struct TlsListener {
    tcp: TcpListener,
    tls: Tls,
    handshake_timeout: Duration,
    handshaking: FuturesUnordered<Handshaking>,
    max_handshaking: usize,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener").field("local_addr", &self.tcp.local_addr().ok()).finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Serves TLS on `tcp`, each handshake within 10 s, at most 1,000 at once
    /// (past that, a new connection is closed at once).
    pub fn new(tcp: TcpListener, tls: Tls) -> TlsListener {
        TlsListener {
            tcp,
            tls,
            handshake_timeout: Duration::from_secs(10),
            handshaking: FuturesUnordered::new(),
            max_handshaking: 1000,
        }
    }

    /// How long one TLS handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How many TLS handshakes may run at once (default 1,000).
    pub fn max_handshakes(mut self, limit: usize) -> Self {
        self.max_handshaking = limit;
        self
    }

    fn start_handshake(&mut self, stream: TcpStream, remote: SocketAddr) {
        if self.handshaking.len() >= self.max_handshaking {
            tracing::warn!(%remote, "too many TLS handshakes at once; closing a new connection");
            return;
        }
        let (tls, timeout) = (self.tls.clone(), self.handshake_timeout);
        self.handshaking.push(Box::pin(async move {
            match tokio::time::timeout(timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => Some((stream, remote)),
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    None
                }
            }
        }));
    }
}

impl TlsListener {
    /// The next connection whose handshake is done.
    pub(crate) async fn next_connection(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, remote)) => self.start_handshake(stream, remote),
                    Err(error) => crate::accept::accept_failed(error).await,
                },
                Some(done) = self.handshaking.next(), if !self.handshaking.is_empty() => {
                    if let Some(connection) = done {
                        return connection;
                    }
                }
            }
        }
    }
}

#[cfg(feature = "axum")]
impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        self.next_connection()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}
