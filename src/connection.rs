//! The server's handle to one client connection, given to the service factory.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http::{HeaderMap, Uri};

use crate::contract::{Contract, NoCallbacks};
use crate::hub::HubCore;
use crate::peer::{CloseReason, Peer};

/// Identifies one connection, unique across server nodes: the node part is
/// random for each hub (so for each server process, and for each of several
/// nodes in one process), then a counter. A backplane routes by the node part.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    node: u64,
    sequence: u64,
}

/// A random node id, from the same CSPRNG as everything random in the crate.
pub(crate) fn random_node() -> u64 {
    rand::random()
}

impl ConnectionId {
    /// A fresh id on node `node`.
    pub(crate) fn on_node(node: u64) -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(1);
        ConnectionId { node, sequence: SEQUENCE.fetch_add(1, Ordering::Relaxed) }
    }

    /// A fresh id on this process's own node (clients' connections, tests).
    pub(crate) fn next() -> Self {
        static NODE: OnceLock<u64> = OnceLock::new();
        Self::on_node(*NODE.get_or_init(random_node))
    }

    /// The node (the hub, or the process) that holds the connection.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// The counter part.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.node, self.sequence)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

/// The text of a [`ConnectionId`] was not `node-sequence`.
#[derive(Debug, thiserror::Error)]
#[error("not a connection id: {0:?}")]
pub struct ParseConnectionIdError(String);

impl FromStr for ConnectionId {
    type Err = ParseConnectionIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseConnectionIdError(text.to_owned());
        let (node, sequence) = text.split_once('-').ok_or_else(error)?;
        Ok(ConnectionId {
            node: u64::from_str_radix(node, 16).map_err(|_| error())?,
            sequence: sequence.parse().map_err(|_| error())?,
        })
    }
}

impl serde::Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ConnectionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the HTTP upgrade request said: where it came from, its URI and its
/// headers. The authentication hook decides on it; every [`Connection`]
/// keeps it.
#[derive(Clone, Default)]
pub struct Handshake {
    remote_addr: Option<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
}

/// Shows the path and the header names only: the query string and header
/// values may hold credentials.
impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("remote_addr", &self.remote_addr)
            .field("path", &self.uri.path())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The client's address, when the transport knows it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The request's URI (path and query string).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request's headers (cookies among them).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The value of the first query parameter named `name`, percent-decoded;
    /// `None` if there is none or it does not decode (browsers cannot set
    /// headers on a WebSocket, so tokens often come this way).
    pub fn query(&self, name: &str) -> Option<String> {
        let pairs = self.uri.query()?.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, "")));
        let (_, value) = pairs.into_iter().find(|(key, _)| percent_decode(key).is_some_and(|key| key == name))?;
        percent_decode(value)
    }

    /// The token of an `Authorization: Bearer TOKEN` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
    }

    /// A copy that shares no memory with the request: hyper's headers and URI
    /// point into its 8 KiB read buffer, which would otherwise live as long as
    /// the connection.
    pub(crate) fn detached(remote_addr: Option<SocketAddr>, uri: &Uri, headers: &HeaderMap) -> Self {
        let mut copied = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone());
            let value = http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            copied.append(name, value);
        }
        let uri = uri.to_string().parse().unwrap_or_else(|_| uri.clone());
        Handshake { remote_addr, uri, headers: copied }
    }
}

/// Decodes `%XX` escapes and `+` (a space, in a query string); `None` when
/// the result is not UTF-8 or an escape is malformed.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'%' => {
                let hex = rest.get(..2).filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
                bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                rest = rest.get(2..)?;
            }
            b'+' => bytes.push(b' '),
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

struct Inner {
    peer: Peer,
    handshake: Handshake,
    user: Option<Arc<str>>,
    roles: Roles,
    data: Mutex<HashMap<std::any::TypeId, Box<dyn Any + Send + Sync>>>,
    hub: Arc<HubCore>,
}

/// The server's handle to one connected client: its id, where it came from,
/// the typed proxy for calling it back, per-connection data, and its groups.
///
/// `CB` is the callback contract's stub (`ChatEventsClient` for a
/// `ChatEvents` contract). Cheap to clone.
pub struct Connection<CB = NoCallbacks> {
    inner: Arc<Inner>,
    callback: CB,
}

impl<CB: Clone> Clone for Connection<CB> {
    fn clone(&self) -> Self {
        Connection { inner: self.inner.clone(), callback: self.callback.clone() }
    }
}

impl<CB> fmt::Debug for Connection<CB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id())
            .field("remote_addr", &self.inner.handshake.remote_addr())
            .finish_non_exhaustive()
    }
}

impl<CB> Connection<CB> {
    pub(crate) fn new(peer: Peer, handshake: Handshake, identity: Identity, hub: Arc<HubCore>, callback: CB) -> Self {
        let Identity { user, roles, values } = identity;
        let data = Mutex::new(values.into_iter().collect());
        let inner = Inner { peer, handshake, user, roles, data, hub };
        Connection { inner: Arc::new(inner), callback }
    }

    /// The user this connection belongs to, as the authentication hook said
    /// ([`Identity::user`]).
    pub fn user(&self) -> Option<&str> {
        self.inner.user.as_deref()
    }

    /// The roles the authentication hook gave the connection
    /// ([`Identity::with_role`]).
    pub fn roles(&self) -> &[Arc<str>] {
        self.inner.roles.as_slice()
    }

    /// The HTTP upgrade request this connection was opened with.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// The same connection without its typed callback proxy (what lifecycle hooks get).
    pub fn untyped(&self) -> Connection {
        Connection { inner: self.inner.clone(), callback: NoCallbacks::from_caller(self.inner.peer.clone()) }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.inner.peer.id()
    }

    /// The typed proxy for calling this client back (WCF's `GetCallbackChannel`).
    pub fn callback(&self) -> &CB {
        &self.callback
    }

    /// The untyped engine handle, for calls outside the callback contract.
    pub fn peer(&self) -> &Peer {
        &self.inner.peer
    }

    /// The client's address, when the transport knows it (with axum, serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.handshake.remote_addr()
    }

    /// The headers of the HTTP upgrade request.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.handshake.headers()
    }

    /// The URI of the HTTP upgrade request (path and query string).
    pub fn uri(&self) -> &Uri {
        self.inner.handshake.uri()
    }

    /// Stores a value of type `T` with this connection, replacing any earlier one.
    pub fn insert_data<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        let old = self.data_map().insert(std::any::TypeId::of::<T>(), Box::new(value));
        old.and_then(|b| (b as Box<dyn Any>).downcast().ok()).map(|b| *b)
    }

    /// A clone of the stored value of type `T`.
    pub fn data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.data_map().get(&std::any::TypeId::of::<T>()).and_then(|b| b.downcast_ref::<T>()).cloned()
    }

    /// Removes and returns the stored value of type `T`.
    pub fn remove_data<T: Send + Sync + 'static>(&self) -> Option<T> {
        let old = self.data_map().remove(&std::any::TypeId::of::<T>());
        old.and_then(|b| (b as Box<dyn Any>).downcast().ok()).map(|b| *b)
    }

    fn data_map(&self) -> std::sync::MutexGuard<'_, HashMap<std::any::TypeId, Box<dyn Any + Send + Sync>>> {
        crate::sync::lock(&self.inner.data)
    }

    /// Adds this connection to a hub group; false if it already was a
    /// member. Resolves once the group's messages reach it (with a backplane,
    /// once this node is subscribed).
    pub async fn join_group(&self, group: &str) -> bool {
        self.inner.hub.change_group(self.id(), group, true).await
    }

    /// Removes this connection from a hub group; false if it was not a member.
    pub async fn leave_group(&self, group: &str) -> bool {
        self.inner.hub.change_group(self.id(), group, false).await
    }

    /// The groups this connection is in.
    pub fn groups(&self) -> Vec<String> {
        self.inner.hub.groups_of(self.id())
    }

    /// Closes the connection with a close code and reason.
    pub fn close(&self, code: u16, reason: &str) {
        self.inner.peer.close(code, reason);
    }

    /// Waits until the connection has ended, and says how.
    pub async fn closed(&self) -> CloseReason {
        self.inner.peer.closed().await
    }
}

/// Who a connection is, as the authentication hook decided: optionally a
/// user (so [`Hub::user`](crate::Hub::user) reaches all of that user's
/// connections), and optionally a value of your own that every handler can
/// read with [`Connection::data`](crate::Connection::data).
#[derive(Default)]
pub struct Identity {
    pub(crate) user: Option<Arc<str>>,
    pub(crate) roles: Roles,
    pub(crate) values: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

/// A connection's roles: shared by its handle and its engine, which checks
/// them against what each method requires.
#[derive(Clone, Debug, Default)]
pub(crate) struct Roles(Option<Arc<[Arc<str>]>>);

impl Roles {
    pub(crate) fn as_slice(&self) -> &[Arc<str>] {
        self.0.as_deref().unwrap_or_default()
    }

    fn add(&mut self, role: Arc<str>) {
        let mut roles = self.as_slice().to_vec();
        roles.push(role);
        self.0 = Some(roles.into());
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("user", &self.user).field("roles", &self.roles).finish_non_exhaustive()
    }
}

impl Identity {
    /// Nobody in particular: the connection is let in without a user.
    pub fn anonymous() -> Self {
        Identity::default()
    }

    /// The connection belongs to user `id`.
    pub fn user(id: impl Into<Arc<str>>) -> Self {
        Identity { user: Some(id.into()), ..Identity::default() }
    }

    /// Gives the connection `role`: methods declared
    /// `#[authorize(role = "...")]` with it let the connection call them.
    pub fn with_role(mut self, role: impl Into<Arc<str>>) -> Self {
        self.roles.add(role.into());
        self
    }

    /// Attaches `value` (claims, roles, a session) to the connection, for
    /// [`Connection::data`](crate::Connection::data); one value per type, a
    /// later one of the same type replacing the earlier.
    pub fn with<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.values.push((TypeId::of::<T>(), Box::new(value)));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_round_trip_through_text() {
        let a = ConnectionId::next();
        let b = ConnectionId::next();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<ConnectionId>().unwrap(), a);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<ConnectionId>(&json).unwrap(), b);
        assert!("nonsense".parse::<ConnectionId>().is_err());
        assert!("zz-1".parse::<ConnectionId>().is_err());
    }

    #[tokio::test]
    async fn per_connection_data_is_typed() {
        let peer = Peer::new(ConnectionId::next(), &Default::default());
        let conn = Connection::new(peer, Handshake::default(), Identity::anonymous(), HubCore::new_local(), ());
        assert_eq!(conn.insert_data(5u32), None);
        assert_eq!(conn.insert_data(6u32), Some(5));
        conn.insert_data(String::from("alice"));
        assert_eq!(conn.data::<u32>(), Some(6));
        assert_eq!(conn.remove_data::<String>().as_deref(), Some("alice"));
        assert_eq!(conn.data::<String>(), None);
    }

    #[test]
    fn query_parameters_are_found_decoded_and_never_guessed() {
        let handshake = |uri: &str| Handshake::detached(None, &uri.parse().unwrap(), &HeaderMap::new());
        assert_eq!(handshake("/ws?a=1&token=s%33cret+x").query("token").as_deref(), Some("s3cret x"));
        assert_eq!(handshake("/ws?t%6Fken=x").query("token").as_deref(), Some("x"));
        assert_eq!(handshake("/ws?token=%ZZ&token=x").query("token"), None, "the first one counts");
        assert_eq!(handshake("/ws?token=%+4").query("token"), None);
        assert_eq!(handshake("/ws?token=%4").query("token"), None);
        assert_eq!(handshake("/ws?token=%FF").query("token"), None, "not UTF-8");
        assert_eq!(handshake("/ws?token").query("token").as_deref(), Some(""));
        assert_eq!(handshake("/ws").query("token"), None);
        let debug = format!("{:?}", handshake("/ws?token=s3cret"));
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
