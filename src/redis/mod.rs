//! One hub across many server nodes, over Redis pub/sub (as SignalR's Redis
//! backplane does).
//!
//! Each node publishes its fan-out to Redis and delivers what the other nodes
//! publish to its own connections. A node listens on `PREFIX:all`, on its own
//! `PREFIX:node:ID` (messages to its connections, calls and their replies,
//! group changes), and on `PREFIX:group:NAME` / `PREFIX:user:NAME` only while
//! it has members of that group or user.
//!
//! What it guarantees, and what it does not:
//! - At most once. A message published while Redis is unreachable, or while
//!   a node is resubscribing, is lost for the other nodes; local delivery
//!   goes on during an outage.
//! - Order: messages from one node reach each other node in the order they
//!   were published.
//! - A fan-out is serialized once; each node hands the same bytes to all its
//!   recipients.
//! - A call to a connection on another node has the caller's deadline: it
//!   fails with `Timeout` if no answer comes in time (the node holding the
//!   connection died, or Redis is down) and with `Closed` when no node holds
//!   the connection or it closes before answering.
//!
//! Trust: whoever may publish on the Redis can speak for any node. A node
//! therefore bounds what it does for the bus (at most `max_remote_calls`
//! calls and group changes at once, each call for at most
//! `max_call_timeout`), answers a call only to the node it asked with an id
//! nobody can guess, and, given a shared [`secret`](RedisOptions::secret),
//! ignores every message not signed with it (HMAC-SHA256).
#![doc = include_str!("../../docs/guide/backplane.md")]

mod bus;
mod publisher;
mod subscriber;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use ring::hmac;
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::backoff::ReconnectPolicy;
use crate::connection_id::{ConnectionId, random_node};
use crate::deadline::deadline_in;
use crate::error::{Error, server_busy};
use crate::hub::{Audience, Backplane, LocalConnections, Payload, Topic};
use bus::{Channels, Message, Outcome};
use publisher::Publication;
use subscriber::{Change, Subscriptions};

/// Settings for a [`RedisBackplane`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    prefix: String,
    call_timeout: Duration,
    reconnect: ReconnectPolicy,
    publish_queue: usize,
    subscribe_timeout: Duration,
    keep_alive: Duration,
    max_remote_calls: usize,
    max_call_timeout: Duration,
    /// Signs and checks every message when set (its `Debug` shows no key bytes).
    secret: Option<hmac::Key>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "wsduplex".into(),
            call_timeout: Duration::from_secs(30),
            reconnect: ReconnectPolicy::exponential(Duration::from_millis(100), Duration::from_secs(5)),
            publish_queue: 65_536,
            subscribe_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(10),
            max_remote_calls: 1024,
            max_call_timeout: Duration::from_secs(300),
            secret: None,
        }
    }
}

impl RedisOptions {
    /// The defaults: prefix `wsduplex`, calls to other nodes time out after
    /// 30 s, resubscription backs off from 100 ms to 5 s, 65,536 messages may
    /// wait to be published, the subscription is checked every 10 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The prefix of every channel name: hubs with different prefixes share a
    /// Redis without hearing each other.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a call to a connection on another node waits for its answer
    /// when the stub sets no deadline of its own.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How the subscription reconnects after Redis goes away.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Most messages waiting to be published; past it a fan-out to other
    /// nodes is dropped (and logged), never waited for.
    pub fn publish_queue(mut self, messages: usize) -> Self {
        self.publish_queue = messages.max(1);
        self
    }

    /// How often the subscription's connection is checked with a PING (10 s):
    /// a connection that stopped answering is replaced.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval.max(Duration::from_millis(1));
        self
    }

    /// Longest a group join waits for this node's subscription to the group
    /// to be confirmed.
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// Most calls and group changes from other nodes this node runs at once
    /// (default 1,024); a call past it is answered -32009 (busy) at once, a
    /// group change past it is dropped (its caller times out).
    pub fn max_remote_calls(mut self, limit: usize) -> Self {
        self.max_remote_calls = limit;
        self
    }

    /// Longest a call from another node may wait here for its connection's
    /// answer (default 5 minutes), whatever deadline the message carries.
    pub fn max_call_timeout(mut self, timeout: Duration) -> Self {
        self.max_call_timeout = timeout;
        self
    }

    /// Signs every message this node publishes with HMAC-SHA256 under
    /// `secret`, and ignores every message not signed with it: only nodes
    /// given the same secret are heard, whoever else may publish on the
    /// Redis. A signature proves who sent a message, not when: someone who
    /// can read the channels can replay what they saw. Use 32 random bytes.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(hmac::Key::new(hmac::HMAC_SHA256, secret.as_ref()));
        self
    }
}

/// A [`Backplane`] over Redis pub/sub: one per hub, so one per server node
/// (it is not `Clone`: give it to one hub).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use wsduplex::{Hub, redis::RedisBackplane, redis::RedisOptions};
/// # #[wsduplex::callback] pub trait Events { #[oneway] async fn news(&self, text: String); }
///
/// let backplane = RedisBackplane::connect("redis://127.0.0.1:6379/", RedisOptions::new()).await?;
/// let hub = Hub::<EventsClient>::with_backplane(backplane);
/// // Reaches every connection of every node behind the same Redis.
/// hub.all().news("hello".into()).await?;
/// # Ok(())
/// # }
/// ```
pub struct RedisBackplane {
    shared: Arc<Shared>,
    publish: mpsc::Sender<Publication>,
    subscriptions: mpsc::UnboundedSender<Change>,
}

/// What the tasks and the backplane share.
struct Shared {
    node: u64,
    channels: Channels,
    options: RedisOptions,
    local: OnceLock<LocalConnections>,
    confirmed: Arc<Subscriptions>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Places for calls and group changes from other nodes.
    remote_calls: Arc<Semaphore>,
    /// Who to tell about publish queue overflow, once per burst.
    overflowing: std::sync::atomic::AtomicBool,
    /// Refusing remote calls (at `max_remote_calls`): logged once per burst.
    refusing: std::sync::atomic::AtomicBool,
}

/// The answer to a call or a group change made on another node.
enum Answer {
    Call(Outcome),
    /// A group change or close: whether it changed anything.
    Done(bool),
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &format_args!("{:016x}", self.shared.node))
            .field("prefix", &self.shared.options.prefix)
            .finish()
    }
}

impl RedisBackplane {
    /// Connects to Redis at `url` (`redis://host:port/`), subscribes this
    /// node, and starts publishing. Fails if Redis cannot be reached now;
    /// once connected, it rides out Redis restarts by itself.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisBackplane, Error> {
        let client = redis::Client::open(url).map_err(Error::transport)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let publisher = client.get_connection_manager_with_config(config).await.map_err(Error::transport)?;

        let node = random_node();
        let channels = Channels::new(&options.prefix);
        let wanted: HashSet<String> = [channels.all(), channels.node(node)].into();
        let pubsub = match tokio::time::timeout(Duration::from_secs(10), subscriber::connect(&client, &wanted)).await {
            Ok(connected) => connected.map_err(Error::transport)?,
            Err(_) => return Err(Error::Timeout(Duration::from_secs(10))),
        };

        let shared = Arc::new(Shared {
            node,
            channels,
            local: OnceLock::new(),
            confirmed: Arc::new(Subscriptions::default()),
            pending: Mutex::new(HashMap::new()),
            remote_calls: Arc::new(Semaphore::new(options.max_remote_calls.min(Semaphore::MAX_PERMITS))),
            overflowing: Default::default(),
            refusing: Default::default(),
            options,
        });
        let (publish, queue) = mpsc::channel(shared.options.publish_queue);
        tokio::spawn(publisher::run(publisher, queue));
        let (subscriptions, changes) = mpsc::unbounded_channel();
        let backplane = RedisBackplane { shared: shared.clone(), publish, subscriptions };
        let receiver = backplane.clone_for_receiving();
        shared.confirmed.connected(&wanted);
        tokio::spawn(subscriber::run(
            client,
            pubsub,
            wanted,
            changes,
            shared.confirmed.clone(),
            (shared.options.reconnect.clone(), shared.options.keep_alive),
            move |message| receiver.receive(message),
        ));
        tracing::debug!(node = format_args!("{node:016x}"), "joined the Redis backplane");
        Ok(backplane)
    }

    /// Asks the node holding connection `id` to do what `message` says (a
    /// group change, a close): whether it changed anything; `false` when no
    /// node holds it.
    fn ask_done(
        &self,
        id: ConnectionId,
        message: impl FnOnce(u64) -> Message + Send + 'static,
    ) -> BoxFuture<'static, Result<bool, Error>> {
        let this = self.share();
        let timeout = self.shared.options.call_timeout;
        Box::pin(async move {
            match this.ask(id.node(), message, timeout).await {
                Ok(Answer::Done(changed)) => Ok(changed),
                Ok(Answer::Call(_)) | Err(Error::Closed) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    /// Another handle, for the backplane's own futures.
    fn share(&self) -> RedisBackplane {
        RedisBackplane {
            shared: self.shared.clone(),
            publish: self.publish.clone(),
            subscriptions: self.subscriptions.clone(),
        }
    }

    /// What the subscriber task holds: it must not keep the queues open, or
    /// the tasks would outlive every hub.
    fn clone_for_receiving(&self) -> Receiver {
        Receiver { shared: Arc::downgrade(&self.shared), publish: self.publish.downgrade() }
    }

    fn queue(&self, channel: String, message: &Message) -> bool {
        publish_sealed(&self.shared, &self.publish, channel, message)
    }

    /// Publishes `message` to node `node`'s channel, in order with the rest,
    /// and says whether that node is there: `Closed` when no node listens on
    /// it (it died, or never was), a transport error when Redis cannot be reached.
    async fn publish_to_node(&self, node: u64, message: &Message) -> Result<(), Error> {
        let (heard, count) = oneshot::channel();
        let outgoing = Publication {
            channel: self.shared.channels.node(node),
            message: self.shared.seal(message),
            heard: Some(heard),
        };
        if !enqueue(&self.shared, &self.publish, outgoing) {
            return Err(Error::Transport("the Redis publish queue is full".into()));
        }
        match count.await {
            Ok(Ok(0)) => Err(Error::Closed),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Transport(format!("cannot publish to Redis: {e}").into())),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Registers a call, sends `message` for it to node `target`, and waits
    /// for that node's answer until `timeout`.
    async fn ask(&self, target: u64, message: impl FnOnce(u64) -> Message, timeout: Duration) -> Result<Answer, Error> {
        let (sender, answer) = oneshot::channel();
        // A random id: only the node asked can answer, by reading the question.
        let call = {
            let mut pending = self.shared.lock_pending();
            let call = std::iter::repeat_with(rand::random::<u64>).find(|id| !pending.contains_key(id)).unwrap_or(0);
            pending.insert(call, Pending { from: target, answer: sender });
            call
        };
        // Forgets the call however this ends (answered, timed out, dropped).
        let _forget = Forget { shared: &self.shared, call };
        // The deadline covers the publishing too: a stalled Redis must not hold the caller.
        let asked = async {
            self.publish_to_node(target, &message(call)).await?;
            answer.await.map_err(|_| Error::Closed)
        };
        tokio::time::timeout_at(deadline_in(timeout), asked).await.map_err(|_| Error::Timeout(timeout))?
    }
}

/// Bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// A call waiting for node `from` to answer.
struct Pending {
    from: u64,
    answer: oneshot::Sender<Answer>,
}

impl Shared {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        crate::sync::lock(&self.pending)
    }

    /// The bytes to publish for `message`: signed when there is a secret
    /// (the tag first, then the message).
    fn seal(&self, message: &Message) -> Vec<u8> {
        let encoded = message.encode();
        let Some(key) = &self.options.secret else { return encoded };
        let tag = hmac::sign(key, &encoded);
        let mut sealed = Vec::with_capacity(tag.as_ref().len() + encoded.len());
        sealed.extend_from_slice(tag.as_ref());
        sealed.extend_from_slice(&encoded);
        sealed
    }

    /// The message inside `bytes`, if its signature holds (or no secret is set).
    fn open<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let Some(key) = &self.options.secret else { return Some(bytes) };
        let (tag, message) = bytes.split_at_checked(TAG_LEN)?;
        hmac::verify(key, message, tag).ok().map(|()| message)
    }

    /// Hands `answer` to call `call`, if it waits for node `from`.
    fn answer(&self, call: u64, from: u64, answer: Answer) {
        let mut pending = self.lock_pending();
        if pending.get(&call).is_some_and(|p| p.from == from)
            && let Some(waiting) = pending.remove(&call)
        {
            let _ = waiting.answer.send(answer);
        }
    }
}

struct Forget<'a> {
    shared: &'a Shared,
    call: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.lock_pending().remove(&self.call);
    }
}

/// Queues `outgoing`; false (and a log line per burst) when the queue is
/// full or closed.
fn enqueue(shared: &Shared, publish: &mpsc::Sender<Publication>, outgoing: Publication) -> bool {
    let queued = publish.try_send(outgoing).is_ok();
    if !queued {
        crate::metrics::backplane(0, 1);
    }
    if burst_begins(&shared.overflowing, !queued) {
        tracing::warn!("the Redis publish queue is full; messages to other nodes are dropped");
    }
    queued
}

/// Queues `message`, sealed, for `channel`, answering nobody back.
fn publish_sealed(shared: &Shared, publish: &mpsc::Sender<Publication>, channel: String, message: &Message) -> bool {
    enqueue(shared, publish, Publication { channel, message: shared.seal(message), heard: None })
}

/// Records whether something is failing now; true when a run of failures
/// begins, so that a burst is logged once.
fn burst_begins(failing_before: &std::sync::atomic::AtomicBool, failing: bool) -> bool {
    let was = failing_before.swap(failing, Ordering::Relaxed);
    failing && !was
}

impl Backplane for RedisBackplane {
    fn node(&self) -> u64 {
        self.shared.node
    }

    fn attach(&self, local: LocalConnections) {
        if self.shared.local.set(local).is_err() {
            tracing::error!("a RedisBackplane serves one hub; this one is attached already");
        }
    }

    fn publish(&self, local: &LocalConnections, audience: &Audience, payload: &Payload) {
        local.deliver(audience, payload);
        if let Audience::Connection(id) = audience
            && id.node() == self.shared.node
        {
            return;
        }
        let message =
            Message::Fanout { origin: self.shared.node, audience: audience.clone(), payload: payload.clone() };
        self.queue(self.shared.channels.of(audience), &message);
    }

    fn subscribe(&self, topic: &Topic) {
        let channel = self.shared.channels.topic(topic);
        self.shared.confirmed.sent(&channel);
        let _ = self.subscriptions.send(Change::Subscribe(channel));
    }

    fn unsubscribe(&self, topic: &Topic) {
        let channel = self.shared.channels.topic(topic);
        self.shared.confirmed.sent(&channel);
        let _ = self.subscriptions.send(Change::Unsubscribe(channel));
    }

    fn subscribed(&self, topic: &Topic) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        let channel = shared.channels.topic(topic);
        Box::pin(async move { shared.confirmed.confirmed(&channel, shared.options.subscribe_timeout).await })
    }

    fn reaches(&self, id: ConnectionId) -> bool {
        id.node() != self.shared.node
    }

    fn send_to(&self, id: ConnectionId, payload: &Payload) -> BoxFuture<'static, Result<(), Error>> {
        let this = self.share();
        let message =
            Message::Fanout { origin: self.shared.node, audience: Audience::Connection(id), payload: payload.clone() };
        let timeout = self.shared.options.call_timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, this.publish_to_node(id.node(), &message)).await {
                Ok(sent) => sent,
                Err(_) => Err(Error::Timeout(timeout)),
            }
        })
    }

    fn call(
        &self,
        id: ConnectionId,
        method: &str,
        params: Box<RawValue>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<Box<RawValue>, Error>> {
        let this = self.share();
        let method = method.to_owned();
        let timeout = timeout.unwrap_or(self.shared.options.call_timeout);
        Box::pin(async move {
            let origin = this.shared.node;
            let message =
                |call| Message::Call { origin, call, target: id, timeout, method, params: params.get().to_owned() };
            match this.ask(id.node(), message, timeout).await? {
                Answer::Call(Outcome::Result(json)) => RawValue::from_string(json).map_err(Error::Decode),
                Answer::Call(Outcome::Rpc(json)) => match serde_json::from_str(&json) {
                    Ok(object) => Err(Error::Rpc(object)),
                    Err(e) => Err(Error::Decode(e)),
                },
                Answer::Call(Outcome::Closed) | Answer::Done(_) => Err(Error::Closed),
                Answer::Call(Outcome::Timeout) => Err(Error::Timeout(timeout)),
            }
        })
    }

    fn change_group(&self, id: ConnectionId, group: &str, join: bool) -> BoxFuture<'static, Result<bool, Error>> {
        let (origin, group) = (self.shared.node, group.to_owned());
        self.ask_done(id, move |call| Message::Group { origin, call, target: id, join, group })
    }

    fn close(&self, id: ConnectionId, code: u16, reason: &str) -> BoxFuture<'static, Result<bool, Error>> {
        let (origin, reason) = (self.shared.node, reason.to_owned());
        self.ask_done(id, move |call| Message::Close { origin, call, target: id, code, reason })
    }
}

/// The subscriber's handle on the backplane: weak, so the tasks end with the
/// last hub.
struct Receiver {
    shared: std::sync::Weak<Shared>,
    publish: mpsc::WeakSender<Publication>,
}

impl Receiver {
    /// Handles one message from Redis; never waits (calls and group changes
    /// run in their own tasks, as many at once as `max_remote_calls`).
    fn receive(&self, message: redis::Msg) {
        let Some(shared) = self.shared.upgrade() else { return };
        let Some(local) = shared.local.get().cloned() else { return };
        let Some(bytes) = shared.open(message.get_payload_bytes()) else {
            tracing::debug!(channel = message.get_channel_name(), "ignored a message without a valid signature");
            return;
        };
        // A node hears its own fan-out on shared channels: skip it uncopied.
        if Message::origin_of(bytes) == Some(shared.node) {
            return;
        }
        let Some(message) = Message::decode(bytes::Bytes::copy_from_slice(bytes)) else {
            tracing::debug!(channel = message.get_channel_name(), "ignored a message that is not the backplane's");
            return;
        };
        if message.origin() == shared.node {
            return;
        }
        let remote_call = || {
            let place = shared.remote_calls.clone().try_acquire_owned().ok();
            if burst_begins(&shared.refusing, place.is_none()) {
                tracing::warn!("at max_remote_calls: refusing calls and group changes from other nodes");
            }
            Some((place?, self.publish.upgrade()?))
        };
        match message {
            Message::Fanout { audience, payload, .. } => {
                local.deliver(&audience, &payload);
            }
            Message::Call { origin, call, target, timeout, method, params } => {
                let Some((place, publish)) = remote_call() else {
                    let busy = serde_json::to_string(&server_busy()).unwrap_or_else(|_| "{}".into());
                    if let Some(publish) = self.publish.upgrade() {
                        let reply = Message::Reply { origin: shared.node, call, outcome: Outcome::Rpc(busy) };
                        publish_sealed(&shared, &publish, shared.channels.node(origin), &reply);
                    }
                    return;
                };
                let timeout = timeout.min(shared.options.max_call_timeout);
                tokio::spawn(async move {
                    let outcome = match RawValue::from_string(params) {
                        Ok(params) => match local.call(target, &method, &params, timeout).await {
                            Ok(result) => Outcome::Result(result.get().to_owned()),
                            Err(Error::Rpc(object)) => {
                                Outcome::Rpc(serde_json::to_string(&object).unwrap_or_else(|_| "{}".into()))
                            }
                            Err(Error::Timeout(_)) => Outcome::Timeout,
                            Err(_) => Outcome::Closed,
                        },
                        Err(_) => Outcome::Closed,
                    };
                    drop(place);
                    let reply = Message::Reply { origin: shared.node, call, outcome };
                    publish_sealed(&shared, &publish, shared.channels.node(origin), &reply);
                });
            }
            Message::Group { origin, call, target, join, group } => {
                let Some((place, publish)) = remote_call() else { return };
                tokio::spawn(async move {
                    let changed = local.change_group(target, &group, join).await;
                    drop(place);
                    let reply = Message::Done { origin: shared.node, call, changed };
                    publish_sealed(&shared, &publish, shared.channels.node(origin), &reply);
                });
            }
            Message::Close { origin, call, target, code, reason } => {
                // Asking to close never waits: answered at once, in this task.
                let closed = local.close(target, code, &reason);
                if let Some(publish) = self.publish.upgrade() {
                    let reply = Message::Done { origin: shared.node, call, changed: closed };
                    publish_sealed(&shared, &publish, shared.channels.node(origin), &reply);
                }
            }
            Message::Reply { origin, call, outcome } => shared.answer(call, origin, Answer::Call(outcome)),
            Message::Done { origin, call, changed } => shared.answer(call, origin, Answer::Done(changed)),
        }
    }
}
