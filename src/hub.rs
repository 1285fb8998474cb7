//! Live connections, groups, and fan-out (SignalR's `Clients` and `Groups`).
//!
//! A broadcast serializes its message once; every recipient's queue gets the
//! same shared bytes. It never waits on a recipient: when a client's queue is
//! full, the [`SlowConsumer`](crate::server::SlowConsumer) policy drops that client (close code 1013) or its
//! oldest broadcasts, so one slow consumer cannot stall the others. Fan-out
//! goes through a [`Backplane`], so a hub can span processes.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::caller::{OneWay, TwoWay};
use crate::connection_id::{ConnectionId, random_node};
use crate::contract::Contract;
use crate::error::Error;
use crate::metrics::Dropped;
use crate::peer::{Offer, Peer};
use crate::wire;

/// Who a fan-out reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Audience {
    /// Every connection.
    All,
    /// Every connection but these.
    AllExcept(Vec<ConnectionId>),
    /// Every member of a group.
    Group(Arc<str>),
    /// Every member of a group but these.
    GroupExcept(Arc<str>, Vec<ConnectionId>),
    /// One connection.
    Connection(ConnectionId),
    /// Every connection of a user (see [`Identity::user`](crate::server::Identity::user)).
    User(Arc<str>),
}

/// A serialized JSON-RPC message, shared (not copied) by every recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload(Utf8Bytes);

impl Payload {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Text received from a bus, kept in the buffer it arrived in; `None`
    /// when it is not UTF-8.
    pub fn from_utf8(bytes: bytes::Bytes) -> Option<Payload> {
        Utf8Bytes::try_from(bytes).ok().map(Payload)
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload(crate::wire::frame_text(text))
    }
}

/// What a process receives from a bus besides what every process gets: the
/// messages of a group, or of a user, it has members of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topic {
    /// A hub group.
    Group(Arc<str>),
    /// A user's connections.
    User(Arc<str>),
}

/// Carries a hub's fan-out, and its dealings with single connections, to
/// every server node that holds connections.
///
/// The default, [`InProcess`], has one node and needs none of the optional
/// methods. A bus implementation (`wsduplex::redis::RedisBackplane`, feature `redis`)
/// publishes what [`publish`](Self::publish) gets to the other nodes, hands
/// what arrives to [`LocalConnections`], subscribes to the topics this node
/// has members of, and carries calls and group changes to the node that holds
/// a connection.
pub trait Backplane: Send + Sync + 'static {
    /// This node's id, the node part of the ids of the connections its hub
    /// holds; asked once, when the hub is made. Random unless the bus needs
    /// to know it first.
    fn node(&self) -> u64 {
        random_node()
    }

    /// Called once, when the hub is made: `local` reaches this node's connections.
    fn attach(&self, local: LocalConnections) {
        let _ = local;
    }

    /// Delivers `payload` to `audience` on every node, this one included.
    /// Never waits.
    fn publish(&self, local: &LocalConnections, audience: &Audience, payload: &Payload);

    /// This node has its first member of `topic`: start receiving its
    /// messages. Called under the hub's lock, in the order membership
    /// changed: it must not block, nor call back into the hub.
    fn subscribe(&self, topic: &Topic) {
        let _ = topic;
    }

    /// This node has no member of `topic` left. Called like [`subscribe`](Self::subscribe).
    fn unsubscribe(&self, topic: &Topic) {
        let _ = topic;
    }

    /// Resolves once messages published to `topic` from now on reach this
    /// node (at once when the bus cannot be reached: what it misses is lost
    /// anyway).
    fn subscribed(&self, topic: &Topic) -> BoxFuture<'static, ()> {
        let _ = topic;
        Box::pin(std::future::ready(()))
    }

    /// True when connection `id`, not held here, may be held by another node
    /// on this bus.
    fn reaches(&self, id: ConnectionId) -> bool {
        let _ = id;
        false
    }

    /// Sends a one-way message to connection `id`, held by another node;
    /// fails with [`Error::Closed`] when no node can hold it. At most once.
    fn send_to(&self, id: ConnectionId, payload: &Payload) -> BoxFuture<'static, Result<(), Error>> {
        let _ = (id, payload);
        Box::pin(std::future::ready(Err(Error::Closed)))
    }

    /// Calls `method` on connection `id`, held by another node, and returns
    /// its result; fails with [`Error::Closed`] when no node holds it, and
    /// with [`Error::Timeout`] after `timeout` (the backplane's default when
    /// `None`).
    fn call(
        &self,
        id: ConnectionId,
        method: &str,
        params: Box<RawValue>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<Box<RawValue>, Error>> {
        let _ = (id, method, params, timeout);
        Box::pin(std::future::ready(Err(Error::Closed)))
    }

    /// Adds connection `id`, held by another node, to `group` (or removes it,
    /// when `join` is false); true when that changed its membership.
    fn change_group(&self, id: ConnectionId, group: &str, join: bool) -> BoxFuture<'static, Result<bool, Error>> {
        let _ = (id, group, join);
        Box::pin(std::future::ready(Ok(false)))
    }

    /// Closes connection `id`, held by another node, with `code` and
    /// `reason`; true when a node held it and was told.
    fn close(&self, id: ConnectionId, code: u16, reason: &str) -> BoxFuture<'static, Result<bool, Error>> {
        let _ = (id, code, reason);
        Box::pin(std::future::ready(Ok(false)))
    }
}

/// The backplane of a hub that lives in one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl Backplane for InProcess {
    fn publish(&self, local: &LocalConnections, audience: &Audience, payload: &Payload) {
        local.deliver(audience, payload);
    }
}

#[derive(Default)]
struct State {
    connections: HashMap<ConnectionId, Member>,
    groups: HashMap<Arc<str>, HashMap<ConnectionId, Peer>>,
    users: HashMap<Arc<str>, HashMap<ConnectionId, Peer>>,
}

struct Member {
    peer: Peer,
    groups: Vec<Arc<str>>,
    user: Option<Arc<str>>,
}

pub(crate) struct HubCore {
    state: RwLock<State>,
    backplane: Arc<dyn Backplane>,
    /// The node part of the ids of connections this hub holds.
    node: u64,
    myself: Weak<HubCore>,
}

/// This process's connections of one hub, as a backplane sees them.
#[derive(Clone)]
pub struct LocalConnections(Weak<HubCore>);

impl fmt::Debug for LocalConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalConnections")
    }
}

impl LocalConnections {
    /// Queues `payload` for every local connection in `audience`, never waiting;
    /// returns how many queues took it.
    pub fn deliver(&self, audience: &Audience, payload: &Payload) -> usize {
        match self.0.upgrade() {
            Some(core) => core.deliver(audience, payload),
            None => 0,
        }
    }

    /// This node's id: the node part of the ids of the connections it holds.
    pub fn node(&self) -> u64 {
        self.0.upgrade().map_or(0, |core| core.node)
    }

    /// True while connection `id` is connected to this node.
    pub fn holds(&self, id: ConnectionId) -> bool {
        self.0.upgrade().is_some_and(|core| core.peer(id).is_some())
    }

    /// Calls `method` on local connection `id` for another node: its result,
    /// its error, or [`Error::Closed`] when it is not here.
    pub async fn call(
        &self,
        id: ConnectionId,
        method: &str,
        params: &RawValue,
        timeout: Duration,
    ) -> Result<Box<RawValue>, Error> {
        let peer = self.0.upgrade().and_then(|core| core.peer(id)).ok_or(Error::Closed)?;
        peer.call(method, params, Some(timeout)).await
    }

    /// Closes local connection `id` with `code` and `reason` for another
    /// node; false when it is not here.
    pub fn close(&self, id: ConnectionId, code: u16, reason: &str) -> bool {
        self.0.upgrade().is_some_and(|core| core.close_here(id, code, reason))
    }

    /// Adds local connection `id` to `group` (or removes it) for another
    /// node; true when that changed its membership. Resolves once the group's
    /// messages reach this node.
    pub async fn change_group(&self, id: ConnectionId, group: &str, join: bool) -> bool {
        let Some(core) = self.0.upgrade() else { return false };
        core.change_group_here(id, group, join).await.unwrap_or(false)
    }
}

impl HubCore {
    pub(crate) fn new(backplane: Arc<dyn Backplane>) -> Arc<Self> {
        let core = Arc::new_cyclic(|myself| HubCore {
            state: RwLock::default(),
            node: backplane.node(),
            backplane,
            myself: myself.clone(),
        });
        core.backplane.attach(core.local());
        core
    }

    /// Resolves once the bus delivers `topic`'s messages to this node.
    pub(crate) fn subscribed(&self, topic: &Topic) -> BoxFuture<'static, ()> {
        self.backplane.subscribed(topic)
    }

    /// A fresh id for a connection this hub is to hold.
    pub(crate) fn next_connection_id(&self) -> ConnectionId {
        ConnectionId::on_node(self.node)
    }

    pub(crate) fn new_local() -> Arc<Self> {
        HubCore::new(Arc::new(InProcess))
    }

    fn local(&self) -> LocalConnections {
        LocalConnections(self.myself.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        crate::sync::read(&self.state)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        crate::sync::write(&self.state)
    }

    // Topics open and close under the state's lock, so a bus hears of them
    // in the order membership changed (a close racing an open must not
    // overtake it).

    pub(crate) fn register(&self, peer: Peer, user: Option<Arc<str>>) {
        let mut state = self.write();
        if let Some(user) = &user {
            let connections = state.users.entry(user.clone()).or_default();
            connections.insert(peer.id(), peer.clone());
            if connections.len() == 1 {
                self.backplane.subscribe(&Topic::User(user.clone()));
            }
        }
        state.connections.insert(peer.id(), Member { peer, groups: Vec::new(), user });
    }

    /// Removes a connection and takes it out of every group.
    pub(crate) fn unregister(&self, id: ConnectionId) {
        let mut state = self.write();
        let Some(member) = state.connections.remove(&id) else { return };
        if let Some(user) = &member.user
            && let Some(connections) = state.users.get_mut(user)
        {
            connections.remove(&id);
            if connections.is_empty() {
                state.users.remove(user);
                self.backplane.unsubscribe(&Topic::User(user.clone()));
            }
        }
        for group in member.groups {
            if let Some(members) = state.groups.get_mut(&group) {
                members.remove(&id);
                if members.is_empty() {
                    state.groups.remove(&group);
                    self.backplane.unsubscribe(&Topic::Group(group));
                }
            }
        }
    }

    /// Adds local connection `id` to `group`: `None` when it is not here,
    /// else whether it was not a member yet.
    fn add_here(&self, id: ConnectionId, group: &str) -> Option<bool> {
        let mut state = self.write();
        let State { connections, groups, .. } = &mut *state;
        let member = connections.get_mut(&id)?;
        if member.groups.iter().any(|g| &**g == group) {
            return Some(false);
        }
        let name: Arc<str> = match groups.get_key_value(group) {
            Some((name, _)) => name.clone(),
            None => group.into(),
        };
        member.groups.push(name.clone());
        let members = groups.entry(name.clone()).or_default();
        members.insert(id, member.peer.clone());
        if members.len() == 1 {
            self.backplane.subscribe(&Topic::Group(name));
        }
        Some(true)
    }

    /// Removes local connection `id` from `group`: `None` when it is not
    /// here, else whether it was a member.
    fn remove_here(&self, id: ConnectionId, group: &str) -> Option<bool> {
        let mut state = self.write();
        let State { connections, groups, .. } = &mut *state;
        let member = connections.get_mut(&id)?;
        let Some(at) = member.groups.iter().position(|g| &**g == group) else { return Some(false) };
        let name = member.groups.swap_remove(at);
        let Some(members) = groups.get_mut(group) else { return Some(true) };
        members.remove(&id);
        if members.is_empty() {
            groups.remove(group);
            self.backplane.unsubscribe(&Topic::Group(name));
        }
        Some(true)
    }

    /// Changes the membership of a local connection; for a join, resolves
    /// once the group's messages reach this node.
    async fn change_group_here(&self, id: ConnectionId, group: &str, join: bool) -> Option<bool> {
        if !join {
            return self.remove_here(id, group);
        }
        let changed = self.add_here(id, group)?;
        self.backplane.subscribed(&Topic::Group(group.into())).await;
        Some(changed)
    }

    /// Changes the membership of connection `id`, here or on another node.
    pub(crate) async fn change_group(&self, id: ConnectionId, group: &str, join: bool) -> bool {
        match self.change_group_here(id, group, join).await {
            Some(changed) => changed,
            None => self.elsewhere(id, "change the group of", || self.backplane.change_group(id, group, join)).await,
        }
    }

    /// Closes connection `id`, here or on another node.
    pub(crate) async fn close(&self, id: ConnectionId, code: u16, reason: &str) -> bool {
        self.close_here(id, code, reason)
            || self.elsewhere(id, "close", || self.backplane.close(id, code, reason)).await
    }

    /// Closes local connection `id`; false when it is not here.
    fn close_here(&self, id: ConnectionId, code: u16, reason: &str) -> bool {
        let Some(peer) = self.peer(id) else { return false };
        peer.close(code, reason);
        true
    }

    /// What `ask` gets from the backplane about connection `id`, not held
    /// here; false when no other node can hold it, or the bus failed
    /// (`doing` says what, for the log).
    async fn elsewhere(
        &self,
        id: ConnectionId,
        doing: &str,
        ask: impl FnOnce() -> BoxFuture<'static, Result<bool, Error>>,
    ) -> bool {
        if !self.backplane.reaches(id) {
            return false;
        }
        ask().await.unwrap_or_else(|e| {
            tracing::warn!(conn = %id, error = %e, "could not {doing} a connection on another node");
            false
        })
    }

    pub(crate) fn groups_of(&self, id: ConnectionId) -> Vec<String> {
        let state = self.read();
        state.connections.get(&id).map(|m| m.groups.iter().map(|g| g.to_string()).collect()).unwrap_or_default()
    }

    fn peer(&self, id: ConnectionId) -> Option<Peer> {
        self.read().connections.get(&id).map(|m| m.peer.clone())
    }

    fn publish(&self, audience: &Audience, payload: &Payload) {
        self.backplane.publish(&self.local(), audience, payload);
    }

    fn deliver(&self, audience: &Audience, payload: &Payload) -> usize {
        let state = self.read();
        let mut delivered = 0;
        let mut offer = |peer: &Peer| {
            // A clone of the shared bytes: a reference count, not a copy.
            match peer.offer(Message::Text(payload.0.clone())) {
                Offer::Queued => delivered += 1,
                Offer::QueuedDroppingOldest(dropped) => {
                    delivered += 1;
                    peer.meters().dropped(Dropped::SlowConsumer, dropped as u64);
                    tracing::debug!(conn = %peer.id(), dropped, "dropped the oldest broadcasts for a slow client");
                }
                Offer::Skipped => {
                    peer.meters().dropped(Dropped::SlowConsumer, 1);
                    tracing::debug!(conn = %peer.id(), "skipped a broadcast for a slow client")
                }
                // The queue asked for the close (1013) itself, once.
                Offer::Full => {
                    peer.meters().dropped(Dropped::SlowConsumer, 1);
                    tracing::warn!(conn = %peer.id(), "dropping a client that does not keep up with broadcasts")
                }
                // Closing already; it leaves the hub in a moment.
                Offer::Closed => {}
            }
        };
        match audience {
            Audience::All => state.connections.values().for_each(|m| offer(&m.peer)),
            Audience::AllExcept(excluded) => {
                state.connections.iter().filter(|(id, _)| !excluded.contains(id)).for_each(|(_, m)| offer(&m.peer))
            }
            Audience::Group(group) => {
                if let Some(members) = state.groups.get(group) {
                    members.values().for_each(&mut offer);
                }
            }
            Audience::GroupExcept(group, excluded) => {
                if let Some(members) = state.groups.get(group) {
                    members.iter().filter(|(id, _)| !excluded.contains(id)).for_each(|(_, p)| offer(p));
                }
            }
            Audience::Connection(id) => {
                if let Some(member) = state.connections.get(id) {
                    offer(&member.peer);
                }
            }
            Audience::User(user) => {
                if let Some(connections) = state.users.get(user) {
                    connections.values().for_each(&mut offer);
                }
            }
        }
        delivered
    }
}

/// Live connections and their groups, with typed fan-out of callback contract `M`.
///
/// `M` is the callback stub (`ChatEventsClient`). Give the hub to the server
/// builder ([`ServerBuilder::hub`](crate::server::ServerBuilder::hub)) so connections
/// join it when they open and leave it, and all their groups, when they close.
/// Cheap to clone.
///
/// ```
/// use wsduplex::Hub;
///
/// #[wsduplex::callback(namespace = "feed")]
/// pub trait Feed {
///     #[oneway]
///     async fn item(&self, text: String);
///     async fn ack(&self) -> bool;
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let hub = Hub::<FeedClient>::new();
/// // Fan-out offers the one-way methods only; it reaches whoever is in the
/// // group now (nobody yet) and never waits for them.
/// hub.group("news").item("hello".into()).await.unwrap();
/// assert!(hub.group_members("news").is_empty());
/// // One connection can also be asked and awaited; this one is not connected.
/// # let id = "00000000-1".parse().unwrap();
/// assert!(matches!(hub.connection(id).ack().await, Err(wsduplex::Error::Closed)));
/// # }
/// ```
pub struct Hub<M> {
    core: Arc<HubCore>,
    _contract: PhantomData<fn() -> M>,
}

impl<M> Clone for Hub<M> {
    fn clone(&self) -> Self {
        Hub { core: self.core.clone(), _contract: PhantomData }
    }
}

impl<M> fmt::Debug for Hub<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub").field("connections", &self.core.read().connections.len()).finish()
    }
}

impl<M: Contract> Default for Hub<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Contract> Hub<M> {
    /// A hub in this process.
    pub fn new() -> Self {
        Self::with_backplane(InProcess)
    }

    /// A hub whose fan-out goes through `backplane`.
    pub fn with_backplane(backplane: impl Backplane) -> Self {
        Hub { core: HubCore::new(Arc::new(backplane)), _contract: PhantomData }
    }

    pub(crate) fn core(&self) -> &Arc<HubCore> {
        &self.core
    }

    /// A one-way fan-out to `audience`.
    pub fn to(&self, audience: Audience) -> M::Stub<Fanout> {
        <M::Stub<Fanout> as Contract>::from_caller(Fanout { core: self.core.clone(), audience })
    }

    /// Every connection.
    pub fn all(&self) -> M::Stub<Fanout> {
        self.to(Audience::All)
    }

    /// Every connection but `id`.
    pub fn except(&self, id: ConnectionId) -> M::Stub<Fanout> {
        self.to(Audience::AllExcept(vec![id]))
    }

    /// Every member of `group`.
    pub fn group(&self, group: &str) -> M::Stub<Fanout> {
        self.to(Audience::Group(group.into()))
    }

    /// Every member of `group` but `id` (for example, everyone but the sender).
    pub fn group_except(&self, group: &str, id: ConnectionId) -> M::Stub<Fanout> {
        self.to(Audience::GroupExcept(group.into(), vec![id]))
    }

    /// Every connection of user `id`: several tabs, several devices.
    pub fn user(&self, id: &str) -> M::Stub<Fanout> {
        self.to(Audience::User(id.into()))
    }

    /// The connections of user `id` open here.
    pub fn user_connections(&self, id: &str) -> Vec<ConnectionId> {
        let state = self.core.read();
        state.users.get(id).map(|c| c.keys().copied().collect()).unwrap_or_default()
    }

    /// One connection, with calls that await its reply (SignalR's client results).
    pub fn connection(&self, id: ConnectionId) -> M::Stub<ConnectionTarget> {
        <M::Stub<ConnectionTarget> as Contract>::from_caller(ConnectionTarget { core: self.core.clone(), id })
    }

    /// Adds connection `id` to `group`, on whichever node holds it; false if
    /// no node does, or it already was a member. Resolves once the group's
    /// messages reach it: a fan-out to the group after this includes it.
    pub async fn add_to_group(&self, id: ConnectionId, group: &str) -> bool {
        self.core.change_group(id, group, true).await
    }

    /// Removes connection `id` from `group`, on whichever node holds it;
    /// false if it was not a member.
    pub async fn remove_from_group(&self, id: ConnectionId, group: &str) -> bool {
        self.core.change_group(id, group, false).await
    }

    /// Closes connection `id` with `code` (a WebSocket close code, 1008 for
    /// a policy violation say) and `reason`, on whichever node holds it, as
    /// [`Peer::close`] does; false if no node does. The connection leaves
    /// its groups as it ends.
    pub async fn close(&self, id: ConnectionId, code: u16, reason: &str) -> bool {
        self.core.close(id, code, reason).await
    }

    /// This hub's node id: the node part of the ids of its connections.
    pub fn node(&self) -> u64 {
        self.core.node
    }

    /// The groups connection `id` is in.
    pub fn groups_of(&self, id: ConnectionId) -> Vec<String> {
        self.core.groups_of(id)
    }

    /// The members of `group`.
    pub fn group_members(&self, group: &str) -> Vec<ConnectionId> {
        let state = self.core.read();
        state.groups.get(group).map(|m| m.keys().copied().collect()).unwrap_or_default()
    }

    /// The ids of every live connection.
    pub fn connection_ids(&self) -> Vec<ConnectionId> {
        self.core.read().connections.keys().copied().collect()
    }

    /// True while connection `id` is connected here.
    pub fn contains(&self, id: ConnectionId) -> bool {
        self.core.read().connections.contains_key(&id)
    }
}

/// The caller behind a fan-out stub: one-way messages to an [`Audience`].
#[derive(Clone)]
pub struct Fanout {
    core: Arc<HubCore>,
    audience: Audience,
}

impl fmt::Debug for Fanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fanout").field("audience", &self.audience).finish()
    }
}

impl OneWay for Fanout {
    /// Serializes once and queues the same bytes for every recipient; never waits.
    async fn notify<P: Serialize + Send + Sync>(&self, method: &str, params: P) -> Result<(), Error> {
        let frame = wire::notification(method, Some(params)).map_err(Error::Encode)?;
        self.core.publish(&self.audience, &Payload::from(frame));
        Ok(())
    }
}

/// The caller behind `hub.connection(id)`: one connection, found when used.
#[derive(Clone)]
pub struct ConnectionTarget {
    core: Arc<HubCore>,
    id: ConnectionId,
}

impl fmt::Debug for ConnectionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionTarget").field("id", &self.id).finish()
    }
}

impl OneWay for ConnectionTarget {
    /// Fails with [`Error::Closed`] when no node can hold the connection. To
    /// a connection on another node the message goes through the backplane,
    /// at most once (that node may have lost the connection meanwhile).
    async fn notify<P: Serialize + Send + Sync>(&self, method: &str, params: P) -> Result<(), Error> {
        if let Some(peer) = self.core.peer(self.id) {
            return peer.notify(method, params).await;
        }
        if !self.core.backplane.reaches(self.id) {
            return Err(Error::Closed);
        }
        let frame = wire::notification(method, Some(params)).map_err(Error::Encode)?;
        self.core.backplane.send_to(self.id, &Payload::from(frame)).await
    }
}

impl TwoWay for ConnectionTarget {
    /// Fails with [`Error::Closed`] when no node holds the connection or it
    /// closes before answering, and with [`Error::Timeout`] past the deadline,
    /// wherever the connection is.
    async fn call<P, R>(&self, method: &str, params: P, timeout: Option<Duration>) -> Result<R, Error>
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        if let Some(peer) = self.core.peer(self.id) {
            return peer.call(method, params, timeout).await;
        }
        if !self.core.backplane.reaches(self.id) {
            return Err(Error::Closed);
        }
        let params = serde_json::value::to_raw_value(&params).map_err(Error::Encode)?;
        let result = self.core.backplane.call(self.id, method, params, timeout).await?;
        serde_json::from_str(result.get()).map_err(Error::Decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{Control, PeerConfig};

    fn peer(capacity: usize) -> Peer {
        let config = PeerConfig { outbound_capacity: capacity, ..PeerConfig::default() };
        Peer::new(ConnectionId::next(), &config)
    }

    fn payload(text: &str) -> Payload {
        Payload::from(text.to_owned())
    }

    #[tokio::test]
    async fn close_reaches_a_held_connection_and_no_other() {
        let hub = Hub::<crate::contract::NoCallbacks>::new();
        let held = peer(4);
        hub.core().register(held.clone(), None);
        assert!(hub.close(held.id(), 1008, "kicked").await);
        match held.queued_controls().as_slice() {
            [Control::Close { frame, graceful: true }] => {
                assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1008, "kicked"));
            }
            other => panic!("expected one close, got {other:?}"),
        }
        // Not held here, and no bus reaches another node.
        assert!(!hub.close(ConnectionId::next(), 1008, "kicked").await);
        assert!(!LocalConnections(Arc::downgrade(hub.core())).close(ConnectionId::next(), 1008, "kicked"));
    }

    #[tokio::test]
    async fn groups_track_membership_and_empty_groups_disappear() {
        let hub = HubCore::new_local();
        let a = peer(4);
        let b = peer(4);
        hub.register(a.clone(), None);
        hub.register(b.clone(), None);
        assert!(hub.change_group(a.id(), "room", true).await);
        assert!(!hub.change_group(a.id(), "room", true).await);
        assert!(hub.change_group(b.id(), "room", true).await);
        assert!(!hub.change_group(ConnectionId::next(), "room", true).await);
        assert_eq!(hub.groups_of(a.id()), vec!["room".to_string()]);
        assert!(hub.change_group(a.id(), "room", false).await);
        assert!(!hub.change_group(a.id(), "room", false).await);
        hub.unregister(b.id());
        assert!(hub.read().groups.is_empty());
        assert!(hub.groups_of(b.id()).is_empty());
    }

    #[test]
    fn fan_out_shares_one_buffer_and_respects_the_audience() {
        let hub = HubCore::new_local();
        let a = peer(4);
        let b = peer(4);
        let c = peer(4);
        for p in [&a, &b, &c] {
            hub.register(p.clone(), None);
        }
        hub.add_here(a.id(), "g");
        hub.add_here(b.id(), "g");

        let message = payload(r#"{"jsonrpc":"2.0","method":"x"}"#);
        assert_eq!(hub.deliver(&Audience::GroupExcept("g".into(), vec![a.id()]), &message), 1);
        assert_eq!(hub.deliver(&Audience::AllExcept(vec![c.id()]), &message), 2);
        assert_eq!(hub.deliver(&Audience::Connection(c.id()), &message), 1);

        let Some(Message::Text(first)) = b.next_queued() else { panic!("b got nothing") };
        let Some(Message::Text(second)) = a.next_queued() else { panic!("a got nothing") };
        // Same allocation, not a copy.
        assert_eq!(first.as_ptr(), message.0.as_ptr());
        assert_eq!(second.as_ptr(), message.0.as_ptr());
        assert!(a.next_queued().is_none());
        assert!(c.next_queued().is_some());
    }

    #[test]
    fn a_user_is_reached_on_every_connection_until_the_last_one_leaves() {
        let hub = HubCore::new_local();
        let (tab, phone, other) = (peer(4), peer(4), peer(4));
        hub.register(tab.clone(), Some("ada".into()));
        hub.register(phone.clone(), Some("ada".into()));
        hub.register(other.clone(), Some("bob".into()));
        assert_eq!(hub.deliver(&Audience::User("ada".into()), &payload("{}")), 2);
        assert!(other.next_queued().is_none());
        hub.unregister(tab.id());
        assert_eq!(hub.deliver(&Audience::User("ada".into()), &payload("{}")), 1);
        hub.unregister(phone.id());
        assert!(!hub.read().users.contains_key("ada"), "no user entry outlives its connections");
        assert_eq!(hub.deliver(&Audience::User("ada".into()), &payload("{}")), 0);
    }

    #[test]
    fn a_full_queue_drops_that_client_only() {
        let hub = HubCore::new_local();
        let slow = peer(1);
        let fast = peer(8);
        hub.register(slow.clone(), None);
        hub.register(fast.clone(), None);
        let message = payload("{}");
        assert_eq!(hub.deliver(&Audience::All, &message), 2);
        assert_eq!(hub.deliver(&Audience::All, &message), 1);
        match slow.queued_controls().as_slice() {
            [crate::peer::Control::Close { frame, graceful: false }] => assert_eq!(u16::from(frame.code), 1013),
            other => panic!("expected a close, got {other:?}"),
        }
        assert!(fast.queued_controls().is_empty());
        assert_eq!(std::iter::from_fn(|| fast.next_queued()).count(), 2);
    }

    #[tokio::test]
    async fn backplanes_hear_about_topics_opening_and_closing() {
        #[derive(Default)]
        struct Recorder(std::sync::Mutex<Vec<String>>);
        impl Backplane for Arc<Recorder> {
            fn publish(&self, local: &LocalConnections, audience: &Audience, payload: &Payload) {
                self.0.lock().unwrap().push("publish".into());
                local.deliver(audience, payload);
            }
            fn subscribe(&self, topic: &Topic) {
                self.0.lock().unwrap().push(format!("subscribe {topic:?}"));
            }
            fn unsubscribe(&self, topic: &Topic) {
                self.0.lock().unwrap().push(format!("unsubscribe {topic:?}"));
            }
            fn subscribed(&self, topic: &Topic) -> BoxFuture<'static, ()> {
                self.0.lock().unwrap().push(format!("await {topic:?}"));
                Box::pin(std::future::ready(()))
            }
        }
        let recorder = Arc::new(Recorder::default());
        let hub = HubCore::new(Arc::new(recorder.clone()));
        let a = peer(4);
        let b = peer(4);
        hub.register(a.clone(), Some("ada".into()));
        hub.register(b.clone(), None);
        hub.change_group(a.id(), "g", true).await;
        hub.change_group(b.id(), "g", true).await;
        hub.change_group(a.id(), "g", false).await;
        hub.publish(&Audience::Group("g".into()), &payload("{}"));
        hub.unregister(b.id());
        hub.unregister(a.id());
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                r#"subscribe User("ada")"#,
                r#"subscribe Group("g")"#,
                r#"await Group("g")"#,
                r#"await Group("g")"#,
                "publish",
                r#"unsubscribe Group("g")"#,
                r#"unsubscribe User("ada")"#,
            ]
        );
    }

    #[tokio::test]
    async fn a_connection_no_node_holds_is_closed_and_in_no_group() {
        let hub = Hub::<crate::contract::NoCallbacks>::new();
        let stranger = ConnectionId::next();
        assert!(!hub.add_to_group(stranger, "g").await);
        let target = ConnectionTarget { core: hub.core().clone(), id: stranger };
        assert!(matches!(target.notify("x", ()).await, Err(Error::Closed)));
        assert!(matches!(target.call::<_, bool>("x", (), None).await, Err(Error::Closed)));
    }
}
