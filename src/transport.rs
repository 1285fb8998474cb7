//! The byte streams under WebSockets: TCP, or TLS over TCP with the `tls`
//! feature. Without it the TLS side is a type with no values, so the code
//! that carries either stream is the same in every build.

#[cfg(not(feature = "tls"))]
use std::io;
#[cfg(not(feature = "tls"))]
use std::pin::Pin;
#[cfg(not(feature = "tls"))]
use std::task::{Context, Poll};

#[cfg(not(feature = "tls"))]
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A server-side TLS stream (boxed: it is large, and most connections are
/// plain TCP behind a proxy).
#[cfg(feature = "tls")]
pub(crate) type ServerTlsStream = Box<tokio_rustls::server::TlsStream<TcpStream>>;
/// A client-side TLS stream.
#[cfg(feature = "tls")]
pub(crate) type ClientTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

#[cfg(not(feature = "tls"))]
pub(crate) type ServerTlsStream = NoTls;
#[cfg(not(feature = "tls"))]
pub(crate) type ClientTlsStream = NoTls;

/// The server's TLS settings (a builder holds `None` without the `tls` feature).
#[cfg(feature = "tls")]
pub(crate) use crate::tls::Tls as ServerTls;
#[cfg(not(feature = "tls"))]
pub(crate) type ServerTls = NoTls;

/// The client's TLS settings: trusted roots, or a whole rustls configuration.
#[cfg(feature = "tls")]
pub(crate) use crate::tls::ClientTls;

/// Without the `tls` feature a client has no TLS settings, and a `wss://`
/// URL is an error.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientTls(());

/// Makes the TLS stream of a `wss://` connection over `tcp`.
#[cfg(feature = "tls")]
pub(crate) async fn secure(tls: &ClientTls, host: &str, tcp: TcpStream) -> Result<ClientTlsStream, crate::Error> {
    use rustls::pki_types::ServerName;
    let connector = tls.connector().await.map_err(crate::Error::transport)?;
    let name = ServerName::try_from(host.to_owned()).map_err(crate::Error::transport)?;
    Ok(connector.connect(name, tcp).await?)
}

/// Refuses a `wss://` URL: this build has no TLS.
#[cfg(not(feature = "tls"))]
pub(crate) async fn secure(_: &ClientTls, _: &str, _: TcpStream) -> Result<ClientTlsStream, crate::Error> {
    Err(crate::Error::transport(io::Error::other("wss:// needs wsduplex's `tls` feature")))
}

/// A TLS stream in a build without TLS: it cannot be made.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub(crate) enum NoTls {}

#[cfg(not(feature = "tls"))]
impl AsyncRead for NoTls {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
}

#[cfg(not(feature = "tls"))]
impl AsyncWrite for NoTls {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        match *self {}
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
}
