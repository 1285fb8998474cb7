//! The server's handle to one client connection, given to the service factory.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, Uri};

use crate::connection_id::ConnectionId;
use crate::contract::{Contract, NoCallbacks};
use crate::hub::HubCore;
use crate::identity::{Handshake, Identity, Roles};
use crate::peer::{CloseReason, Peer};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
