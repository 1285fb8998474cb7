//! The connecting side: dial a URL, serve the callback contract, make calls.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use jsonrpsee_core::client::{BatchResponse, ClientT, Error as ClientError};
use jsonrpsee_core::params::BatchRequestBuilder;
use jsonrpsee_core::traits::ToRpcParams;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::caller::{Call, Notify};
use crate::connection::ConnectionId;
use crate::contract::{Dispatch, ServiceInstance};
use crate::error::Error;
use crate::peer::{CloseReason, Driver, Peer, PeerConfig};
use crate::server::websocket_config;

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
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            peer: PeerConfig::default(),
            connect_timeout: Duration::from_secs(10),
            max_message_size: crate::server::DEFAULT_MAX_MESSAGE_SIZE,
            headers: Vec::new(),
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

    /// Adds a header to the handshake request (an `Authorization` header, say).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Connects to `url` (`ws://host:port/path`), serving `callbacks` to the server.
    pub async fn connect<M, S>(self, url: &str, callbacks: ServiceInstance<M, S>) -> Result<Client, Error>
    where
        M: Dispatch<S> + 'static,
        S: Send + Sync + 'static,
    {
        let mut request = url.into_client_request().map_err(Error::transport)?;
        request.headers_mut().extend(self.headers);
        let config = websocket_config(self.max_message_size);
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (socket, _response) = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| Error::Timeout(self.connect_timeout))?
            .map_err(Error::transport)?;
        let id = ConnectionId::next();
        let peer = Peer::new(id, &self.peer);
        let driver = Driver::new(socket, peer.clone(), callbacks, None, &self.peer);
        let span = tracing::debug_span!("client", conn = %id, url);
        tokio::spawn(tracing::Instrument::instrument(driver.run(|| {}), span));
        Ok(Client { _owner: Arc::new(CloseOnDrop(peer.clone())), peer })
    }
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
