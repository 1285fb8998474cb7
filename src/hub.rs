//! Live connections, groups, and fan-out (SignalR's `Clients` and `Groups`).
//!
//! A broadcast serializes its message once; every recipient's queue gets the
//! same shared bytes. It never waits on a recipient: when a client's queue is
//! full, the [`SlowConsumer`] policy drops that client (close code 1013) or its
//! oldest broadcasts, so one slow consumer cannot stall the others. Fan-out
//! goes through a [`Backplane`], so a hub can span processes.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::caller::{Call, Notify};
use crate::connection::ConnectionId;
use crate::contract::Contract;
use crate::error::Error;
use crate::peer::{Offer, Peer};
use crate::wire;

/// What a broadcast does for a connection whose outbound queue is full (by
/// frames or by bytes). Calls and direct messages never take this path: they
/// wait for room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Drop the connection with close code 1013 (try again later) and a log
    /// line: it reconnects and catches up, the others are not held back.
    #[default]
    Disconnect,
    /// Keep the connection; drop the oldest broadcast messages queued for it
    /// to make room (or this one, if only replies are queued). Suits feeds
    /// where the latest value supersedes the earlier ones.
    DropOldest,
}

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
    /// Every connection of a user (see [`Identity::user`](crate::Identity::user)).
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
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload(text.into())
    }
}

/// Carries a hub's fan-out to every server process that holds connections.
///
/// The default, [`InProcess`], has one process. Another implementation
/// publishes to a bus and, when messages arrive from the bus, hands them to
/// [`LocalConnections::deliver`] on each process.
pub trait Backplane: Send + Sync + 'static {
    /// Called once, when the hub is made: `local` delivers to this process's connections.
    fn attach(&self, local: LocalConnections) {
        let _ = local;
    }

    /// Delivers `payload` to `audience` on every process, this one included.
    fn publish(&self, local: &LocalConnections, audience: &Audience, payload: &Payload);

    /// A group got its first member on this process.
    fn group_opened(&self, group: &str) {
        let _ = group;
    }

    /// A group lost its last member on this process.
    fn group_closed(&self, group: &str) {
        let _ = group;
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
}

impl HubCore {
    pub(crate) fn new(backplane: Arc<dyn Backplane>) -> Arc<Self> {
        let core = Arc::new_cyclic(|myself| HubCore { state: RwLock::default(), backplane, myself: myself.clone() });
        core.backplane.attach(core.local());
        core
    }

    pub(crate) fn new_local() -> Arc<Self> {
        HubCore::new(Arc::new(InProcess))
    }

    fn local(&self) -> LocalConnections {
        LocalConnections(self.myself.clone())
    }

    // No code panics while holding these locks; recover rather than propagate.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn register(&self, peer: Peer, user: Option<Arc<str>>) {
        let mut state = self.write();
        if let Some(user) = &user {
            state.users.entry(user.clone()).or_default().insert(peer.id(), peer.clone());
        }
        state.connections.insert(peer.id(), Member { peer, groups: Vec::new(), user });
    }

    /// Removes a connection and takes it out of every group.
    pub(crate) fn unregister(&self, id: ConnectionId) {
        let mut closed = Vec::new();
        {
            let mut state = self.write();
            let Some(member) = state.connections.remove(&id) else { return };
            if let Some(user) = &member.user
                && let Some(connections) = state.users.get_mut(user)
            {
                connections.remove(&id);
                if connections.is_empty() {
                    state.users.remove(user);
                }
            }
            for group in member.groups {
                if let Some(members) = state.groups.get_mut(&group) {
                    members.remove(&id);
                    if members.is_empty() {
                        state.groups.remove(&group);
                        closed.push(group);
                    }
                }
            }
        }
        for group in closed {
            self.backplane.group_closed(&group);
        }
    }

    pub(crate) fn add_to_group(&self, id: ConnectionId, group: &str) -> bool {
        let opened = {
            let mut state = self.write();
            let State { connections, groups, .. } = &mut *state;
            let Some(member) = connections.get_mut(&id) else { return false };
            if member.groups.iter().any(|g| &**g == group) {
                return false;
            }
            let name: Arc<str> = match groups.get_key_value(group) {
                Some((name, _)) => name.clone(),
                None => group.into(),
            };
            member.groups.push(name.clone());
            let members = groups.entry(name).or_default();
            members.insert(id, member.peer.clone());
            members.len() == 1
        };
        if opened {
            self.backplane.group_opened(group);
        }
        true
    }

    pub(crate) fn remove_from_group(&self, id: ConnectionId, group: &str) -> bool {
        let closed = {
            let mut state = self.write();
            let State { connections, groups, .. } = &mut *state;
            let Some(member) = connections.get_mut(&id) else { return false };
            let Some(at) = member.groups.iter().position(|g| &**g == group) else { return false };
            member.groups.swap_remove(at);
            let Some(members) = groups.get_mut(group) else { return true };
            members.remove(&id);
            let empty = members.is_empty();
            if empty {
                groups.remove(group);
            }
            empty
        };
        if closed {
            self.backplane.group_closed(group);
        }
        true
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
                    tracing::debug!(conn = %peer.id(), dropped, "dropped the oldest broadcasts for a slow client");
                }
                Offer::Skipped => tracing::debug!(conn = %peer.id(), "skipped a broadcast for a slow client"),
                // The queue asked for the close (1013) itself, once.
                Offer::Full => {
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
/// builder ([`ServerBuilder::hub`](crate::ServerBuilder::hub)) so connections
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

    /// Adds connection `id` to `group`; false if it is not connected here or already a member.
    pub fn add_to_group(&self, id: ConnectionId, group: &str) -> bool {
        self.core.add_to_group(id, group)
    }

    /// Removes connection `id` from `group`; false if it was not a member.
    pub fn remove_from_group(&self, id: ConnectionId, group: &str) -> bool {
        self.core.remove_from_group(id, group)
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

impl Notify for Fanout {
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

impl ConnectionTarget {
    fn peer(&self) -> Result<Peer, Error> {
        self.core.peer(self.id).ok_or(Error::Closed)
    }
}

impl Notify for ConnectionTarget {
    /// Fails with [`Error::Closed`] when the connection is gone.
    async fn notify<P: Serialize + Send + Sync>(&self, method: &str, params: P) -> Result<(), Error> {
        self.peer()?.notify(method, params).await
    }
}

impl Call for ConnectionTarget {
    /// Fails with [`Error::Closed`] when the connection is gone or closes before answering.
    async fn call<P, R>(&self, method: &str, params: P, timeout: Option<Duration>) -> Result<R, Error>
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        self.peer()?.call(method, params, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerConfig;

    fn peer(capacity: usize) -> Peer {
        let config = PeerConfig { outbound_capacity: capacity, ..PeerConfig::default() };
        Peer::new(ConnectionId::next(), &config)
    }

    fn payload(text: &str) -> Payload {
        Payload::from(text.to_owned())
    }

    #[test]
    fn groups_track_membership_and_empty_groups_disappear() {
        let hub = HubCore::new_local();
        let a = peer(4);
        let b = peer(4);
        hub.register(a.clone(), None);
        hub.register(b.clone(), None);
        assert!(hub.add_to_group(a.id(), "room"));
        assert!(!hub.add_to_group(a.id(), "room"));
        assert!(hub.add_to_group(b.id(), "room"));
        assert!(!hub.add_to_group(ConnectionId::next(), "room"));
        assert_eq!(hub.groups_of(a.id()), vec!["room".to_string()]);
        assert!(hub.remove_from_group(a.id(), "room"));
        assert!(!hub.remove_from_group(a.id(), "room"));
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
        hub.add_to_group(a.id(), "g");
        hub.add_to_group(b.id(), "g");

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

    #[test]
    fn backplanes_hear_about_groups_opening_and_closing() {
        #[derive(Default)]
        struct Recorder(std::sync::Mutex<Vec<String>>);
        impl Backplane for Arc<Recorder> {
            fn publish(&self, local: &LocalConnections, audience: &Audience, payload: &Payload) {
                self.0.lock().unwrap().push("publish".into());
                local.deliver(audience, payload);
            }
            fn group_opened(&self, group: &str) {
                self.0.lock().unwrap().push(format!("open {group}"));
            }
            fn group_closed(&self, group: &str) {
                self.0.lock().unwrap().push(format!("close {group}"));
            }
        }
        let recorder = Arc::new(Recorder::default());
        let hub = HubCore::new(Arc::new(recorder.clone()));
        let a = peer(4);
        let b = peer(4);
        hub.register(a.clone(), None);
        hub.register(b.clone(), None);
        hub.add_to_group(a.id(), "g");
        hub.add_to_group(b.id(), "g");
        hub.remove_from_group(a.id(), "g");
        hub.publish(&Audience::Group("g".into()), &payload("{}"));
        hub.unregister(b.id());
        assert_eq!(*recorder.0.lock().unwrap(), ["open g", "publish", "close g"]);
    }
}
