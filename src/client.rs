//! The connecting side: dial a URL, serve the callback contract, make calls.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use jsonrpsee_core::client::{BatchResponse, ClientT, Error as ClientError};
use jsonrpsee_core::params::BatchRequestBuilder;
use jsonrpsee_core::traits::ToRpcParams;
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::either::Either;

use crate::caller::{Call, Notify};
use crate::connection::ConnectionId;
use crate::contract::{Dispatch, ServiceInstance};
use crate::error::Error;
use crate::peer::{CloseReason, Driver, Peer, PeerConfig};
use crate::socket::Socket;
use crate::tls::{ClientTls, TlsError};

/// A connection to a wsduplex server (or any JSON-RPC 2.0 WebSocket server).
///
/// Cheap to clone; the connection closes (code 1000) when the last clone is
/// dropped, or on [`close`](Client::close). A callback handler that keeps a
/// clone of its own client keeps the connection open until `close` is called.
/// Usually wrapped by a generated stub: `ChatClient::connect(url, handler)`.
#[derive(Clone)]
pub struct Client {
    peer: Peer,
    _owner: Arc<CloseOnDrop>,
}

struct CloseOnDrop(Peer);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(1000, "");
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("id", &self.peer.id()).finish_non_exhaustive()
    }
}

impl Client {
    /// Settings for a new connection.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The engine handle of this connection.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Closes the connection; waiting calls fail with [`Error::Closed`].
    pub fn close(&self) {
        self.peer.close(1000, "");
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.peer.is_closed()
    }

    /// Waits until the connection has ended, and says how.
    pub async fn closed(&self) -> CloseReason {
        self.peer.closed().await
    }
}

/// Settings for [`Client`] connections.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    peer: PeerConfig,
    connect_timeout: Duration,
    max_message_size: usize,
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: ClientTls,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            peer: PeerConfig::default(),
            connect_timeout: Duration::from_secs(10),
            max_message_size: crate::server::DEFAULT_MAX_MESSAGE_SIZE,
            headers: Vec::new(),
            tls: ClientTls::default(),
        }
    }
}

impl ClientBuilder {
    /// The deadline of a call made without its own (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.peer.call_timeout = timeout;
        self
    }

    /// How long connecting (TCP and the WebSocket handshake) may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Callbacks from the server running at once (default 128); past it the
    /// client stops reading until one finishes.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.peer.max_in_flight = limit;
        self
    }

    /// Largest message accepted from the server (default 10 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    liveness_settings!("server");

    /// Trusts the certificates in `pem` (PEM text) for `wss://` URLs, besides
    /// the operating system's roots: a private CA, or a self-signed server.
    pub fn root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        self.tls.add_roots_pem(pem.as_ref())?;
        Ok(self)
    }

    /// Uses this rustls configuration for `wss://` URLs (client
    /// certificates, pinned roots), instead of the system's roots and of any
    /// given with [`root_certificate_pem`](Self::root_certificate_pem).
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.set_config(config);
        self
    }

    /// Adds a header to the handshake request (an `Authorization` header, say).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Connects to `url` (`ws://host:port/path`, or `wss://` for TLS), serving
    /// `callbacks` to the server.
    ///
    /// The handshake runs over hyper; the connection then uses the same
    /// WebSocket codec as the server.
    pub async fn connect<M, S>(self, url: &str, callbacks: ServiceInstance<M, S>) -> Result<Client, Error>
    where
        M: Dispatch<S> + 'static,
        S: Send + Sync + 'static,
    {
        let connecting = handshake(url, &self.headers, self.max_message_size, &self.tls);
        let socket = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| Error::Timeout(self.connect_timeout))??;
        let id = ConnectionId::next();
        let peer = Peer::new(id, &self.peer);
        let driver = Driver::new(socket, peer.clone(), callbacks, None, &self.peer);
        let span = tracing::debug_span!("client", conn = %id, url = %Shown(url));
        tokio::spawn(tracing::Instrument::instrument(driver.run(|_| {}), span));
        Ok(Client { _owner: Arc::new(CloseOnDrop(peer.clone())), peer })
    }
}

/// Why a handshake failed, when it is not an I/O error.
fn refused(why: String) -> Error {
    Error::transport(std::io::Error::other(why))
}

/// A URL as logs and errors show it: no credentials, no query string.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(uri) = self.0.parse::<Uri>() else { return f.write_str("(not a URL)") };
        let host = uri.authority().map(|a| a.as_str().rsplit('@').next().unwrap_or_default()).unwrap_or_default();
        write!(f, "{}://{host}{}", uri.scheme_str().unwrap_or_default(), uri.path())
    }
}

/// The byte stream under a client's WebSocket: TCP, or TLS over TCP.
type ClientIo = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// Connects to `url` and performs the WebSocket handshake (RFC 6455 section 4.1).
async fn handshake(
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    max_message: usize,
    tls: &ClientTls,
) -> Result<Socket<ClientIo>, Error> {
    let uri: Uri = url.parse().map_err(Error::transport)?;
    // Errors name the URL without its query or credentials: tokens go there.
    let url = Shown(url);
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(refused(format!("{url}: a WebSocket URL starts with ws:// or wss://"))),
    };
    let authority = uri.authority().ok_or_else(|| refused(format!("{url}: no host")))?.clone();
    // An IPv6 literal comes bracketed in a URL but not in a socket address.
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let stream = TcpStream::connect((host, port)).await?;
    // Latency over throughput: every message is a small frame.
    stream.set_nodelay(true)?;
    let stream: ClientIo = if secure {
        let connector = tls.connector().await.map_err(Error::transport)?;
        let name = ServerName::try_from(host.to_owned()).map_err(|e| refused(format!("{url}: {e}")))?;
        Either::Right(connector.connect(name, stream).await?)
    } else {
        Either::Left(stream)
    };

    let key = generate_key();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::get(path).body(String::new()).map_err(Error::transport)?;
    let request_headers = request.headers_mut();
    // Host and port only: credentials in the URL do not belong in a header.
    let host_header = match authority.port() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    };
    let host_value = HeaderValue::from_str(&host_header).map_err(Error::transport)?;
    request_headers.insert(HOST, host_value);
    request_headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    request_headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    request_headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    request_headers.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_str(&key).map_err(Error::transport)?);
    for (name, value) in headers {
        request_headers.append(name.clone(), value.clone());
    }

    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(stream)).await.map_err(Error::transport)?;
    // Drives the HTTP exchange until the connection is handed over.
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "the WebSocket handshake's HTTP connection failed");
        }
    });
    let response = sender.send_request(request).await.map_err(Error::transport)?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refused(format!("{url}: the server answered {} instead of upgrading", response.status())));
    }
    check_upgrade_response(response.headers(), &key).map_err(|why| refused(format!("{url}: {why}")))?;
    let upgraded = hyper::upgrade::on(response).await.map_err(Error::transport)?;
    let parts = upgraded
        .downcast::<TokioIo<ClientIo>>()
        .map_err(|_| refused("the upgraded connection is not the stream it was made on".into()))?;
    Ok(Socket::new(parts.io.into_inner(), Role::Client, max_message, &parts.read_buf))
}

/// Checks a server's 101 answer (RFC 6455 section 4.1, steps 2 to 6).
fn check_upgrade_response(headers: &http::HeaderMap, key: &str) -> Result<(), &'static str> {
    let has_token = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        return Err("the server's answer lacks Upgrade: websocket or Connection: upgrade");
    }
    let expected = derive_accept_key(key.as_bytes());
    if headers.get(SEC_WEBSOCKET_ACCEPT).map(HeaderValue::as_bytes) != Some(expected.as_bytes()) {
        return Err("the server's Sec-WebSocket-Accept does not match");
    }
    // Nothing was asked for, so nothing may be agreed to.
    if headers.contains_key(SEC_WEBSOCKET_EXTENSIONS) || headers.contains_key(SEC_WEBSOCKET_PROTOCOL) {
        return Err("the server chose an extension or subprotocol that was not offered");
    }
    Ok(())
}

impl Notify for Client {
    async fn notify<P: Serialize + Send + Sync>(&self, method: &str, params: P) -> Result<(), Error> {
        self.peer.notify(method, params).await
    }
}

impl Call for Client {
    async fn call<P, R>(&self, method: &str, params: P, timeout: Option<Duration>) -> Result<R, Error>
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        self.peer.call(method, params, timeout).await
    }
}

/// jsonrpsee's client interface, so jsonrpsee `#[rpc(client)]` traits work on a wsduplex client.
impl ClientT for Client {
    async fn notification<Params>(&self, method: &str, params: Params) -> Result<(), ClientError>
    where
        Params: ToRpcParams + Send,
    {
        self.peer.notification(method, params).await
    }

    async fn request<R, Params>(&self, method: &str, params: Params) -> Result<R, ClientError>
    where
        R: DeserializeOwned,
        Params: ToRpcParams + Send,
    {
        self.peer.request(method, params).await
    }

    async fn batch_request<'a, R>(&self, batch: BatchRequestBuilder<'a>) -> Result<BatchResponse<'a, R>, ClientError>
    where
        R: DeserializeOwned + std::fmt::Debug + 'a,
    {
        self.peer.batch_request(batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn a_proper_answer_passes_and_every_flaw_is_named() {
        let good = [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-accept", ACCEPT)];
        assert_eq!(check_upgrade_response(&answer(&good), KEY), Ok(()));
        assert!(check_upgrade_response(&answer(&good[1..]), KEY).unwrap_err().contains("Upgrade"));
        let wrong_key = [good[0], good[1], ("sec-websocket-accept", "nope")];
        assert!(check_upgrade_response(&answer(&wrong_key), KEY).unwrap_err().contains("Accept"));
        let deflate = [good[0], good[1], good[2], ("sec-websocket-extensions", "permessage-deflate")];
        assert!(check_upgrade_response(&answer(&deflate), KEY).unwrap_err().contains("extension"));
    }

    #[test]
    fn urls_in_logs_and_errors_carry_no_credentials() {
        assert_eq!(Shown("wss://ada:pw@chat.example:8443/ws?token=s3cret").to_string(), "wss://chat.example:8443/ws");
        assert_eq!(Shown("ws://127.0.0.1/").to_string(), "ws://127.0.0.1/");
        assert_eq!(Shown("not a url at all").to_string(), "(not a URL)");
    }
}
