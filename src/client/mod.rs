//! The connecting side: dial a URL, serve the callback contract, make calls.
#![doc = include_str!("../../docs/guide/reconnect.md")]

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::caller::{OneWay, TwoWay};
use crate::connection_id::ConnectionId;
use crate::contract::Serve;
use crate::deadline::deadline_in;
use crate::error::Error;
use crate::peer::{CloseReason, Driver, Peer, PeerConfig};
use crate::socket::Socket;
#[cfg(feature = "tls")]
use crate::tls::RootCertificates;
use crate::transport::ClientTls;
use handshake::{ClientIo, Shown, handshake};
use reconnect::ReconnectHook;

mod handshake;
mod reconnect;

pub use crate::backoff::ReconnectPolicy;
pub use reconnect::ConnectionState;

/// A connection to a wsduplex server (or any JSON-RPC 2.0 WebSocket server).
///
/// Cheap to clone; the connection closes (code 1000) when the last clone is
/// dropped, or on [`close`](Client::close). A callback handler that keeps a
/// clone of its own client keeps the connection open until `close` is called.
/// Usually wrapped by a generated stub: `ChatClient::connect(url, handler)`.
///
/// With a [`ReconnectPolicy`] ([`ClientBuilder::reconnect`]) the same client
/// (and the stub around it) outlives its connections: when one is lost, it
/// dials again with backoff, runs the [`on_reconnect`](ClientBuilder::on_reconnect)
/// hook, then lets waiting calls through. Server-side state of the old
/// connection (its groups, its per-connection data) is gone: the hook
/// restores what the application needs. Calls in flight when a connection
/// drops fail with [`Error::Closed`] and are never sent again (the server may
/// have run them); calls made while disconnected wait for the next
/// connection within their deadline (or fail at once, with
/// [`ClientBuilder::fail_while_disconnected`]); one-way messages are kept, up
/// to a bound, and sent after the hook.
#[derive(Clone)]
pub struct Client {
    link: Arc<Link>,
    /// Set on the client given to the reconnect hook: it talks to that new
    /// connection, before it is opened to everyone.
    pinned: Option<Peer>,
}

/// What every clone of a client shares: the connection of the moment.
struct Link {
    current: Mutex<Option<Peer>>,
    state: watch::Sender<ConnectionState>,
    /// One-way messages sent while disconnected, in order.
    offline: Mutex<VecDeque<String>>,
    offline_capacity: usize,
    fail_while_disconnected: bool,
    call_timeout: Duration,
    /// Set by [`Client::close`]: no more reconnecting.
    closing: AtomicBool,
    /// False for the link of the client a reconnect hook gets: dropping that
    /// one must not close the connection it borrows.
    owns_connection: bool,
}

impl Link {
    fn current(&self) -> Option<Peer> {
        crate::sync::lock(&self.current).clone()
    }

    fn set_current(&self, peer: Option<Peer>) {
        *crate::sync::lock(&self.current) = peer;
    }

    fn offline(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        crate::sync::lock(&self.offline)
    }

    /// Forgets `peer` as the current connection (it ended), unless another
    /// took its place already.
    fn lost(&self, peer: &Peer) {
        let mut current = crate::sync::lock(&self.current);
        if current.as_ref().is_some_and(|now| now.id() == peer.id()) {
            *current = None;
        }
    }
}

/// The last client handle is gone: close the connection, stop reconnecting.
impl Drop for Link {
    fn drop(&mut self) {
        let current = crate::sync::lock(&self.current).take();
        if let Some(peer) = current
            && self.owns_connection
        {
            peer.close(1000, "");
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("state", &*self.link.state.borrow()).finish_non_exhaustive()
    }
}

impl Client {
    /// Settings for a new connection.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The engine handle of the connection of the moment (`None` while
    /// reconnecting or once closed).
    pub fn peer(&self) -> Option<Peer> {
        self.pinned.clone().or_else(|| self.link.current())
    }

    /// Closes the connection for good (no reconnect); waiting calls fail
    /// with [`Error::Closed`].
    pub fn close(&self) {
        self.link.closing.store(true, Ordering::SeqCst);
        match self.link.current() {
            Some(peer) => peer.close(1000, ""),
            // Between connections: the reconnect loop sees `closing`.
            None => self.link.state.send_modify(|_| {}),
        }
    }

    /// True once the client is closed for good.
    pub fn is_closed(&self) -> bool {
        matches!(*self.link.state.borrow(), ConnectionState::Closed { .. })
    }

    /// The connection's state, to watch (`changed().await`, or as a stream
    /// with `tokio_stream::wrappers::WatchStream`).
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.link.state.subscribe()
    }

    /// Waits until the client is closed for good, and says how its last
    /// connection ended.
    pub async fn closed(&self) -> CloseReason {
        let mut state = self.link.state.subscribe();
        loop {
            if let ConnectionState::Closed { reason, .. } = &*state.borrow_and_update() {
                return reason.clone();
            }
            if state.changed().await.is_err() {
                return CloseReason::Transport("the client is gone".into());
            }
        }
    }

    /// The connection to use for a call with this deadline: the current one,
    /// or the next, waited for until the deadline.
    async fn connected(&self, deadline: Instant, timeout: Duration) -> Result<Peer, Error> {
        if let Some(peer) = &self.pinned {
            return Ok(peer.clone());
        }
        let mut state = self.link.state.subscribe();
        loop {
            // The state is marked seen before `current` is read: a connection
            // that opens in between is then a change still to come.
            let closed = matches!(*state.borrow_and_update(), ConnectionState::Closed { .. });
            if let Some(peer) = self.link.current() {
                return Ok(peer);
            }
            if closed || self.link.fail_while_disconnected {
                return Err(Error::Closed);
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => return Err(Error::Timeout(timeout)),
            }
        }
    }
}

/// Settings for [`Client`] connections.
#[derive(Clone)]
pub struct ClientBuilder {
    peer: PeerConfig,
    connect_timeout: Duration,
    max_message_size: usize,
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: ClientTls,
    reconnect: Option<ReconnectPolicy>,
    on_reconnect: Option<Arc<ReconnectHook>>,
    fail_while_disconnected: bool,
    offline_capacity: usize,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("peer", &self.peer)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("reconnect", &self.reconnect)
            .field("fail_while_disconnected", &self.fail_while_disconnected)
            .field("offline_capacity", &self.offline_capacity)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            peer: PeerConfig::default(),
            connect_timeout: Duration::from_secs(10),
            max_message_size: crate::socket::DEFAULT_MAX_MESSAGE_SIZE,
            headers: Vec::new(),
            tls: ClientTls::default(),
            reconnect: None,
            on_reconnect: None,
            fail_while_disconnected: false,
            offline_capacity: 256,
        }
    }
}

impl ClientBuilder {
    /// How long connecting (TCP and the WebSocket handshake) may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Callbacks from the server running at once (default 128); past it
    /// they are parked and then held back as the server's
    /// [`max_in_flight`](crate::server::ServerBuilder::max_in_flight) describes.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.peer.max_in_flight = limit;
        self
    }

    /// Largest message accepted from the server (default 10 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    peer_settings!("server", peer);

    /// Trusts `roots` for `wss://` URLs, besides the operating system's
    /// roots: a private CA, or a self-signed server
    /// ([`RootCertificates::from_pem`](crate::tls::RootCertificates::from_pem)).
    #[cfg(feature = "tls")]
    pub fn root_certificates(mut self, roots: RootCertificates) -> Self {
        self.tls.add_roots(roots);
        self
    }

    /// Uses this rustls configuration for `wss://` URLs (client
    /// certificates, pinned roots), instead of the system's roots and of any
    /// given with [`root_certificates`](Self::root_certificates).
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.set_config(config);
        self
    }

    /// Reconnects when the connection is lost, with `policy`'s backoff. A
    /// server that refuses the handshake with a 4xx status (401, say) is not
    /// tried again: the client closes with [`Error::Refused`] as its error.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Runs `hook` after every reconnect, before waiting calls and kept
    /// one-way messages go out: the place to re-join rooms and re-subscribe,
    /// since the server kept nothing of the old connection. The client given
    /// to it talks to the new connection only; wrap it in the stub
    /// (`ChatClient::new(client)`) to make typed calls.
    pub fn on_reconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_reconnect = Some(Arc::new(move |client| Box::pin(hook(client))));
        self
    }

    /// Calls made while disconnected fail at once with [`Error::Closed`]
    /// instead of waiting for the next connection within their deadline.
    pub fn fail_while_disconnected(mut self) -> Self {
        self.fail_while_disconnected = true;
        self
    }

    /// One-way messages kept while disconnected, to send after the reconnect
    /// (default 256); past it they fail with [`Error::OfflineBufferFull`].
    pub fn offline_buffer(mut self, messages: usize) -> Self {
        self.offline_capacity = messages;
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
    pub async fn connect<S: Serve>(self, url: &str, callbacks: S) -> Result<Client, Error> {
        self.peer.meters.seed(<S::Contract as crate::contract::Contract>::info());
        let socket = self.dial(url).await?;
        let peer = Peer::new(ConnectionId::next(), &self.peer);
        let driver = Driver::new(socket, peer.clone(), callbacks.clone(), &self.peer);
        let link = Arc::new(Link {
            current: Mutex::new(Some(peer.clone())),
            state: watch::Sender::new(ConnectionState::Connected),
            offline: Mutex::default(),
            offline_capacity: self.offline_capacity,
            fail_while_disconnected: self.fail_while_disconnected,
            call_timeout: self.peer.call_timeout,
            closing: AtomicBool::new(false),
            owns_connection: true,
        });
        let span = tracing::debug_span!("client", url = %Shown(url));
        let connections = Connections { builder: self, url: url.to_owned(), callbacks, link: Arc::downgrade(&link) };
        let running = connections.drive(driver, &peer);
        tokio::spawn(connections.run(peer, running).instrument(span));
        Ok(Client { link, pinned: None })
    }

    /// TCP, TLS and the WebSocket handshake, within the connect timeout.
    async fn dial(&self, url: &str) -> Result<Socket<ClientIo>, Error> {
        let dialing = handshake(url, &self.headers, self.max_message_size, &self.tls);
        tokio::time::timeout(self.connect_timeout, dialing).await.map_err(|_| Error::Timeout(self.connect_timeout))?
    }
}

type Running = Pin<Box<dyn Future<Output = CloseReason> + Send>>;

/// How a new connection ends when its client was closed or dropped while it opened.
const GIVEN_UP: CloseReason = CloseReason::ClosedLocally { code: 1000 };

/// A connection that lasted this long resets the reconnect attempts.
const STABLE: Duration = Duration::from_secs(10);

/// A client's connections, one after the other: the task that drives each
/// and, with a reconnect policy, dials the next. It holds the client's
/// shared state weakly: when the last handle is gone, it ends.
struct Connections<S> {
    builder: ClientBuilder,
    url: String,
    callbacks: S,
    link: Weak<Link>,
}

impl<S: Serve> Connections<S> {
    /// The future driving one connection. It stops being the client's
    /// connection as soon as it ends, before its close handshake is done,
    /// so calls made meanwhile wait for the next one instead of failing.
    fn drive<T: crate::peer::Transport>(&self, driver: Driver<T, S>, peer: &Peer) -> Running {
        let (link, peer) = (self.link.clone(), peer.clone());
        Box::pin(driver.run(move |_| {
            if let Some(link) = link.upgrade() {
                link.lost(&peer);
            }
        }))
    }

    async fn run(self, mut peer: Peer, mut running: Running) {
        // Attempts so far, carried over while connections do not last: a
        // server that accepts and drops at once is not dialled at the
        // initial delay forever, and `max_attempts` still applies.
        let (mut attempts, mut opened) = (0, Instant::now());
        loop {
            let reason = running.as_mut().await;
            tracing::debug!(conn = %peer.id(), ?reason, "connection ended");
            let Some(link) = self.link.upgrade() else { return };
            link.lost(&peer);
            let Some(policy) = self.builder.reconnect.clone().filter(|_| !link.closing.load(Ordering::SeqCst)) else {
                link.state.send_replace(ConnectionState::Closed { reason, error: None });
                return;
            };
            drop(link);
            if opened.elapsed() >= STABLE {
                attempts = 0;
            }
            match self.reconnect(&policy, reason, attempts).await {
                Some((next_peer, next_running, used)) => {
                    (peer, running, attempts, opened) = (next_peer, next_running, used, Instant::now());
                }
                None => return,
            }
        }
    }

    /// Dials until a connection is up and its hook has run; `None` when the
    /// client is gone or gave up (its state then says why).
    async fn reconnect(
        &self,
        policy: &ReconnectPolicy,
        lost: CloseReason,
        before: u32,
    ) -> Option<(Peer, Running, u32)> {
        let mut last_error = format!("connection lost: {lost:?}");
        let mut attempt = before;
        loop {
            attempt += 1;
            let link = self.link.upgrade()?;
            // Subscribed before `closing` is read: a `close()` after it wakes the wait below.
            let mut state = link.state.subscribe();
            if link.closing.load(Ordering::SeqCst) || policy.gives_up_after(attempt) {
                let error = Some(last_error).filter(|_| !link.closing.load(Ordering::SeqCst));
                link.state.send_replace(ConnectionState::Closed { reason: lost, error });
                return None;
            }
            link.state.send_replace(ConnectionState::Reconnecting { attempt, last_error: last_error.clone() });
            state.mark_unchanged();
            drop(link);
            // Woken early by `close()`.
            let delay = policy.delay(attempt, crate::backoff::random_unit());
            let _ = tokio::time::timeout(delay, state.changed()).await;
            match self.link.upgrade() {
                Some(link) if !link.closing.load(Ordering::SeqCst) => {
                    link.state.send_replace(ConnectionState::Connecting { attempt });
                }
                _ => continue,
            }
            let socket = match self.builder.dial(&self.url).await {
                Ok(socket) => socket,
                Err(error) if !reconnect::retryable(&error) => {
                    if let Some(link) = self.link.upgrade() {
                        let error = Some(error.to_string());
                        link.state.send_replace(ConnectionState::Closed { reason: lost, error });
                    }
                    return None;
                }
                Err(error) => {
                    tracing::debug!(attempt, %error, "reconnect attempt failed");
                    last_error = error.to_string();
                    continue;
                }
            };
            let config = &self.builder.peer;
            let peer = Peer::new(ConnectionId::next(), config);
            let driver = Driver::new(socket, peer.clone(), self.callbacks.clone(), config);
            let mut running = self.drive(driver, &peer);
            match self.reopen(&peer, &mut running).await {
                Ok(()) => return Some((peer, running, attempt)),
                Err(reason) => last_error = format!("lost again while reconnecting: {reason:?}"),
            }
        }
    }

    /// Runs the hook on the new connection (driving it meanwhile, within the
    /// call timeout), sends the kept one-way messages, then opens the
    /// connection to every caller, unless the client was closed or dropped
    /// meanwhile.
    async fn reopen(&self, peer: &Peer, running: &mut Running) -> Result<(), CloseReason> {
        let restore = async {
            if let Some(hook) = &self.builder.on_reconnect {
                // The hook's client holds this connection only, not the whole
                // client: dropping the client meanwhile still closes it.
                let link = Link {
                    current: Mutex::new(Some(peer.clone())),
                    state: watch::Sender::new(ConnectionState::Connected),
                    offline: Mutex::default(),
                    offline_capacity: 0,
                    fail_while_disconnected: true,
                    call_timeout: self.builder.peer.call_timeout,
                    closing: AtomicBool::new(false),
                    owns_connection: false,
                };
                let pinned = Client { link: Arc::new(link), pinned: Some(peer.clone()) };
                let hook = AssertUnwindSafe(hook(pinned)).catch_unwind();
                match tokio::time::timeout(self.builder.peer.call_timeout, hook).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => tracing::error!("the reconnect hook panicked; the connection opens anyway"),
                    Err(_) => tracing::warn!("the reconnect hook did not finish in time; the connection opens anyway"),
                }
            }
            self.flush_kept(peer).await
        };
        tokio::select! {
            opened = restore => opened,
            reason = running.as_mut() => Err(reason),
            () = self.closing() => {
                peer.close(1000, "");
                Err(GIVEN_UP)
            }
        }
    }

    /// Hands the kept one-way messages to `peer`, oldest first; the
    /// connection opens, under the buffer's lock, once it is empty (`notify`
    /// keeps adding to it until then, under the same lock). A message leaves
    /// the buffer only once the connection has queued it: if this future is
    /// dropped while it waits for room (the connection died meanwhile), the
    /// message is still kept, for the next connection.
    async fn flush_kept(&self, peer: &Peer) -> Result<(), CloseReason> {
        loop {
            let link = self.link.upgrade().ok_or(GIVEN_UP)?;
            if link.closing.load(Ordering::SeqCst) {
                peer.close(1000, "");
                return Err(GIVEN_UP);
            }
            let next = {
                let offline = link.offline();
                let next = offline.front().cloned();
                if next.is_none() {
                    link.set_current(Some(peer.clone()));
                }
                next
            };
            let Some(frame) = next else {
                link.state.send_replace(ConnectionState::Connected);
                tracing::debug!(conn = %peer.id(), "reconnected");
                return Ok(());
            };
            drop(link);
            if let Err(error) = peer.send_frame(frame).await {
                tracing::debug!(%error, "could not send a kept one-way message; keeping it");
                return Err(CloseReason::Transport(error.to_string()));
            }
            // Queued: no await since, so it is still the first (`notify` only adds at the back).
            if let Some(link) = self.link.upgrade() {
                link.offline().pop_front();
            }
        }
    }

    /// Resolves once the client is closed or dropped.
    async fn closing(&self) {
        loop {
            let Some(link) = self.link.upgrade() else { return };
            let mut state = link.state.subscribe();
            if link.closing.load(Ordering::SeqCst) {
                return;
            }
            drop(link);
            if state.changed().await.is_err() {
                return;
            }
        }
    }
}

impl OneWay for Client {
    /// Sent at once while connected; kept for the next connection while
    /// reconnecting (see [`ClientBuilder::offline_buffer`]).
    async fn notify<P: Serialize + Send + Sync>(&self, method: &str, params: P) -> Result<(), Error> {
        if let Some(peer) = self.peer() {
            return peer.notify(method, params).await;
        }
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let frame = crate::wire::notification(method, Some(params)).map_err(Error::Encode)?;
        let mut offline = self.link.offline();
        // Under the buffer's lock, which the reconnect holds while opening the
        // connection: either the message is kept and sent by it, or it goes out now.
        if let Some(peer) = self.link.current() {
            drop(offline);
            return peer.send_frame(frame).await;
        }
        if offline.len() >= self.link.offline_capacity {
            return Err(Error::OfflineBufferFull(self.link.offline_capacity));
        }
        offline.push_back(frame);
        Ok(())
    }
}

impl TwoWay for Client {
    /// Waits for a connection while reconnecting, within the call's deadline.
    async fn call<P, R>(&self, method: &str, params: P, timeout: Option<Duration>) -> Result<R, Error>
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        let timeout = timeout.unwrap_or(self.link.call_timeout);
        let deadline = deadline_in(timeout);
        let peer = self.connected(deadline, timeout).await?;
        peer.call(method, params, Some(deadline.saturating_duration_since(Instant::now()))).await
    }
}

impl Client {
    /// The connection, waited for within the default deadline (for callers
    /// that take no deadline of their own, as jsonrpsee's `ClientT`).
    pub(crate) async fn ready(&self) -> Result<Peer, Error> {
        let timeout = self.link.call_timeout;
        self.connected(deadline_in(timeout), timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::NoCallbacks;

    #[tokio::test]
    async fn a_kept_message_waiting_for_room_stays_kept_when_the_connection_dies() {
        let kept: VecDeque<String> = (0..5).map(|n| n.to_string()).collect();
        let link = Arc::new(Link {
            current: Mutex::new(None),
            state: watch::Sender::new(ConnectionState::Connecting { attempt: 1 }),
            offline: Mutex::new(kept),
            offline_capacity: 16,
            fail_while_disconnected: false,
            call_timeout: Duration::from_secs(30),
            closing: AtomicBool::new(false),
            owns_connection: true,
        });
        let connections = Connections {
            builder: ClientBuilder::default(),
            url: String::new(),
            callbacks: NoCallbacks::service(),
            link: Arc::downgrade(&link),
        };
        // The new connection's queue takes two frames, and no driver empties it.
        let peer = Peer::new(ConnectionId::next(), &PeerConfig { outbound_capacity: 2, ..PeerConfig::default() });
        let (die, died) = tokio::sync::oneshot::channel::<()>();
        let mut running: Running = Box::pin(async move {
            let _ = died.await;
            CloseReason::Transport("lost".into())
        });
        let reopening = connections.reopen(&peer, &mut running);
        let mut reopening = std::pin::pin!(reopening);
        // "0" and "1" are queued; "2" waits for room.
        assert!(futures_util::poll!(reopening.as_mut()).is_pending());
        // The connection dies meanwhile.
        die.send(()).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), reopening).await.unwrap();
        assert_eq!(ended, Err(CloseReason::Transport("lost".into())));
        let queued: Vec<_> = std::iter::from_fn(|| peer.next_queued()).collect();
        assert_eq!(queued, ["0", "1"].map(|text| tokio_tungstenite::tungstenite::Message::Text(text.into())));
        assert_eq!(*link.offline(), ["2", "3", "4"], "a kept message went missing");
        assert!(link.current().is_none(), "the dead connection was opened to callers");
    }
}
