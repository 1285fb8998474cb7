//! One connection's engine, the same on both ends: a [`Peer`] handle for making
//! calls and sending notifications, and the driver task that owns the socket.
//!
//! Calls register a oneshot in the pending map before their frame is queued; the
//! driver routes each response to the call it answers and, when the connection
//! ends, fails every call still waiting at once. At most `max_outgoing_calls`
//! of this side's calls await replies at once; more wait their turn within
//! their deadline, so one side never sends the other more requests than it
//! serves at once (by default both numbers are 128), and the peer need not
//! park or refuse them.

mod driver;
mod liveness;
mod outbox;
mod pending;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument;

use crate::connection_id::ConnectionId;
use crate::deadline::deadline_in;
use crate::error::Error;
use crate::wire;

use crate::stream::Producers;
use crate::stream::scope::{self, Scope};
pub(crate) use driver::{Driver, Transport};
pub(crate) use liveness::KeepAliveConfig;
pub use outbox::SlowConsumer;
use outbox::{Bounds, Outbox};
pub(crate) use outbox::{Offer, PushError};
pub(crate) use pending::Reply;
use pending::{CallGuard, Pending};

/// Settings for one connection's engine.
#[derive(Clone, Debug)]
pub(crate) struct PeerConfig {
    /// Deadline of a call made without its own.
    pub call_timeout: Duration,
    /// Incoming requests running at once; past it they are parked.
    pub max_in_flight: usize,
    /// This side's calls awaiting replies at once; past it calls wait their turn.
    pub max_outgoing_calls: usize,
    /// Frames waiting for the socket, per connection.
    pub outbound_capacity: usize,
    /// Bytes waiting for the socket, per connection.
    pub outbound_bytes: usize,
    /// What a broadcast does when a connection's queue is full.
    pub slow_consumer: SlowConsumer,
    /// Pings, and how long an answer may take; `None` turns them off.
    pub keep_alive: Option<KeepAliveConfig>,
    /// Close a connection quiet for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
    /// The most entries an incoming batch may hold.
    pub max_batch_len: usize,
    /// The most streams this side sends on the connection at once.
    pub max_open_streams: usize,
    /// What every incoming call goes through before its handler.
    pub middleware: crate::middleware::Chain,
    /// How fast the peer may send; `None` for no limit.
    pub rate_limit: Option<crate::rate_limit::RateLimit>,
    /// The builder's metric handles, shared by its connections.
    pub meters: crate::metrics::Meters,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            call_timeout: Duration::from_secs(30),
            max_in_flight: 128,
            max_outgoing_calls: 128,
            outbound_capacity: 256,
            outbound_bytes: 4 << 20,
            slow_consumer: SlowConsumer::Disconnect,
            keep_alive: Some(KeepAliveConfig { interval: Duration::from_secs(30), timeout: Duration::from_secs(20) }),
            idle_timeout: None,
            max_batch_len: wire::MAX_BATCH_LEN,
            max_open_streams: crate::stream::MAX_OPEN_STREAMS,
            middleware: crate::middleware::Chain::default(),
            rate_limit: None,
            meters: crate::metrics::Meters::default(),
        }
    }
}

/// Requests to the driver that must not wait behind a full outbound queue.
#[derive(Debug)]
pub(crate) enum Control {
    /// Send `$/cancelRequest` for one of our calls that its caller gave up on.
    Cancel(u64),
    /// Send this `$/enumerator/dispose` notification (a stream we consumed
    /// was dropped, and the queue was full).
    DisposeStream(Message),
    /// Close the connection with this frame: after the frames already queued
    /// (`graceful`), or at once, dropping them.
    Close { frame: CloseFrame, graceful: bool },
    /// The server is shutting down: refuse new calls, let running ones finish
    /// until the deadline, then close with 1001.
    Shutdown(Instant),
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer sent a close frame with this code (1005 when it gave none).
    ClosedByPeer {
        /// The close code.
        code: u16,
        /// The reason text.
        reason: String,
    },
    /// This side closed it, with this code.
    ClosedLocally {
        /// The close code.
        code: u16,
    },
    /// The server shut down (close code 1001).
    Shutdown,
    /// The peer answered no keep-alive ping in time; the socket was dropped.
    Unresponsive,
    /// Nothing went either way for the idle timeout (close code 1000).
    Idle,
    /// The socket failed or ended without a close frame.
    Transport(String),
}

pub(crate) struct Shared {
    pub(crate) id: ConnectionId,
    outbox: Outbox,
    pending: Pending,
    /// The streams this side sends on the connection.
    pub(crate) streams: Arc<Producers>,
    pub(crate) meters: crate::metrics::Meters,
    /// The metric handles of the calls this side made on the connection.
    callback_meters: crate::metrics::Callbacks,
    /// Turns for this side's calls (see `max_outgoing_calls`).
    call_turns: Semaphore,
    max_outgoing_calls: usize,
    next_id: AtomicU64,
    call_timeout: Duration,
    /// Set once, when the connection ends.
    closed: std::sync::Mutex<Option<CloseReason>>,
    closed_signal: Notify,
}

/// A handle to one live connection: makes calls and sends notifications to the
/// peer at the other end, on either side of the socket.
///
/// Cheap to clone; every clone drives the same connection. Calls through it
/// are multiplexed: any number can be in flight, answered in any order.
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer").field("id", &self.shared.id).finish_non_exhaustive()
    }
}

impl Peer {
    pub(crate) fn new(id: ConnectionId, config: &PeerConfig) -> Peer {
        let max_outgoing_calls = config.max_outgoing_calls.clamp(1, Semaphore::MAX_PERMITS);
        let shared = Shared {
            id,
            outbox: Outbox::new(Bounds {
                frames: config.outbound_capacity,
                bytes: config.outbound_bytes,
                slow_consumer: config.slow_consumer,
            }),
            pending: Pending::default(),
            streams: Arc::new(Producers::new(config.max_open_streams)),
            meters: config.meters.clone(),
            callback_meters: crate::metrics::Callbacks::default(),
            call_turns: Semaphore::new(max_outgoing_calls),
            max_outgoing_calls,
            next_id: AtomicU64::new(1),
            call_timeout: config.call_timeout,
            closed: std::sync::Mutex::new(None),
            closed_signal: Notify::new(),
        };
        Peer { shared: Arc::new(shared) }
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Peer {
        Peer { shared }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.shared.id
    }

    /// The deadline of a call made without one of its own.
    pub fn call_timeout(&self) -> Duration {
        self.shared.call_timeout
    }

    /// Calls `method` and awaits its reply; `None` params leaves the member out.
    pub(crate) async fn call_with<P, R>(
        &self,
        method: &str,
        params: Option<P>,
        timeout: Option<Duration>,
    ) -> Result<R, Error>
    where
        P: Serialize,
        R: DeserializeOwned,
    {
        let timeout = timeout.unwrap_or(self.shared.call_timeout);
        let deadline = deadline_in(timeout);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("rpc.out", conn = %self.shared.id, method, id);
        let meter = self.shared.meters.outgoing(&self.shared.callback_meters, method);
        let result = async {
            // Serialized once it has its turn: a call that waits holds no frame.
            let turn = self.turn(1, deadline, timeout).await?;
            let encoding = Scope::message(&self.shared);
            let frame = wire::request(id, method, params);
            // The streams the params carry live until the call completes, however it does.
            let _release = ReleaseStreams { shared: &self.shared, tokens: encoding.finish().tokens };
            let frame = frame.map_err(Error::Encode)?;
            let reply = self.call_in_turn(id, frame, deadline, timeout, turn).await?;
            // A stream in the result pulls from this connection.
            let _decoding = Scope::message(&self.shared);
            reply.decode()
        }
        .instrument(span)
        .await;
        meter.finished(&result);
        result
    }

    /// Waits until this side may have `calls` more calls awaiting replies
    /// (a batch larger than the whole allowance waits for all of it). A call
    /// made by a handler serving this same connection takes no turn: the
    /// calls holding the turns may be waiting for that handler.
    async fn turn(
        &self,
        calls: usize,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<SemaphorePermit<'_>>, Error> {
        if scope::serving_connection() == Some(self.shared.id) {
            return Ok(None);
        }
        let calls = calls.min(self.shared.max_outgoing_calls) as u32;
        match tokio::time::timeout_at(deadline, self.shared.call_turns.acquire_many(calls)).await {
            Ok(Ok(turn)) => Ok(Some(turn)),
            // The semaphore is never closed.
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Sends a request frame and awaits its reply, holding its turn until then.
    async fn call_in_turn(
        &self,
        id: u64,
        frame: String,
        deadline: Instant,
        timeout: Duration,
        _turn: Option<SemaphorePermit<'_>>,
    ) -> Result<Reply, Error> {
        let receiver = self.shared.pending.register(id)?;
        let mut guard = CallGuard::new(&self.shared, id);
        self.send_before(frame, deadline, timeout).await?;
        guard.mark_sent();
        let reply = tokio::time::timeout_at(deadline, receiver)
            .await
            .map_err(|_| Error::Timeout(timeout))?
            .map_err(|_| Error::Closed)?;
        guard.mark_answered();
        Ok(reply)
    }

    /// Asks the peer for the next values of stream `token` (see
    /// [`Incoming`](crate::Incoming)): a call with no deadline (a stream may
    /// wait for its next value as long as it likes) that takes no turn (each
    /// stream asks once at a time, and the peer's registry bounds them).
    pub(crate) fn ask_next(
        &self,
        token: &RawValue,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, Error>> + Send>> {
        let peer = self.clone();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::request(id, crate::stream::NEXT_METHOD, Some(TokenParams { token }));
        Box::pin(async move {
            let frame = frame.map_err(Error::Encode)?;
            let deadline = deadline_in(Duration::MAX);
            peer.call_in_turn(id, frame, deadline, Duration::MAX, None).await
        })
    }

    /// Sends several calls as one batch frame and awaits every reply, in order.
    pub(crate) async fn call_batch(
        &self,
        calls: &[(&str, Option<Box<serde_json::value::RawValue>>)],
        timeout: Duration,
    ) -> Result<Vec<Reply>, Error> {
        let deadline = deadline_in(timeout);
        let _turn = self.turn(calls.len(), deadline, timeout).await?;
        let mut frames = Vec::with_capacity(calls.len());
        let mut waiting = Vec::with_capacity(calls.len());
        for (method, params) in calls {
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            frames.push(wire::request(id, method, params.as_deref()).map_err(Error::Encode)?);
            waiting.push((self.shared.pending.register(id)?, CallGuard::new(&self.shared, id)));
        }
        self.send_before(wire::batch(&frames), deadline, timeout).await?;
        let mut replies = Vec::with_capacity(waiting.len());
        for (_, guard) in &mut waiting {
            guard.mark_sent();
        }
        for (receiver, guard) in &mut waiting {
            let reply = tokio::time::timeout_at(deadline, receiver)
                .await
                .map_err(|_| Error::Timeout(timeout))?
                .map_err(|_| Error::Closed)?;
            guard.mark_answered();
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Sends a notification, returning once it is queued; `None` params leaves the member out.
    pub(crate) async fn notify_with<P: Serialize>(&self, method: &str, params: Option<P>) -> Result<(), Error> {
        let frame = wire::notification(method, params).map_err(Error::Encode)?;
        let timeout = self.shared.call_timeout;
        self.send_before(frame, deadline_in(timeout), timeout).await
    }

    /// Sends an already serialized frame, waiting for room within the default deadline.
    pub(crate) async fn send_frame(&self, frame: String) -> Result<(), Error> {
        let timeout = self.shared.call_timeout;
        self.send_before(frame, deadline_in(timeout), timeout).await
    }

    /// Queues a text frame, waiting for room until `deadline`.
    async fn send_before(&self, frame: String, deadline: Instant, timeout: Duration) -> Result<(), Error> {
        match self.shared.outbox.try_push(Message::Text(wire::frame_text(frame))) {
            Ok(()) => Ok(()),
            Err(PushError::Closed(_)) => Err(Error::Closed),
            Err(PushError::Full(message)) => tokio::time::timeout_at(deadline, self.shared.outbox.push(message))
                .await
                .map_err(|_| Error::Timeout(timeout))?
                .map_err(|_| Error::Closed),
        }
    }

    /// Offers an already serialized broadcast frame without waiting: the hub's fan-out path.
    pub(crate) fn offer(&self, frame: Message) -> Offer {
        self.shared.outbox.offer(frame)
    }

    /// Closes the connection with a close code and reason, after the frames
    /// already queued for it (within a few seconds). Calls waiting on it fail
    /// with [`Error::Closed`]. A code that may not be sent (1005, 1006, 1015,
    /// below 1000) is sent as 1000.
    pub fn close(&self, code: u16, reason: &str) {
        let code = Some(CloseCode::from(code)).filter(|c| c.is_allowed()).unwrap_or(CloseCode::Normal);
        let frame = CloseFrame { code, reason: reason.into() };
        // Refused only when the connection is already closing.
        self.shared.outbox.push_control(Control::Close { frame, graceful: true });
    }

    /// Asks the connection to shut down: see [`Control::Shutdown`].
    pub(crate) fn shutdown(&self, deadline: Instant) {
        self.shared.outbox.push_control(Control::Shutdown(deadline));
    }

    /// The metric handles of the connection's builder.
    pub(crate) fn meters(&self) -> &crate::metrics::Meters {
        &self.shared.meters
    }

    /// Bytes of messages queued for this connection and not yet handed to
    /// its socket: how far behind the peer is. Bounded by the outbound limits.
    pub fn queued_bytes(&self) -> usize {
        self.shared.outbox.bytes()
    }

    /// How many streams this side sends on the connection that are still
    /// open (not read to the end, disposed of, or released with their call).
    pub fn open_streams(&self) -> usize {
        self.shared.streams.len()
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.close_reason().is_some()
    }

    /// Waits until the connection has ended, and says how.
    pub async fn closed(&self) -> CloseReason {
        loop {
            let mut signal = std::pin::pin!(self.shared.closed_signal.notified());
            signal.as_mut().enable();
            if let Some(reason) = self.shared.close_reason() {
                return reason;
            }
            signal.await;
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The next frame waiting for the driver (tests stand in for the driver).
    #[cfg(test)]
    pub(crate) fn next_queued(&self) -> Option<Message> {
        self.shared.outbox.pop().map(|(message, _)| message)
    }

    /// Control requests waiting for the driver.
    #[cfg(test)]
    pub(crate) fn queued_controls(&self) -> Vec<Control> {
        self.shared.outbox.take_controls()
    }
}

/// `{"token": …}`: the params of `$/enumerator/next` and `dispose`.
#[derive(Serialize)]
struct TokenParams<'a> {
    token: &'a RawValue,
}

/// Drops the streams a call's params carried, when the call completes.
struct ReleaseStreams<'a> {
    shared: &'a Shared,
    tokens: Vec<String>,
}

impl Drop for ReleaseStreams<'_> {
    fn drop(&mut self) {
        if !self.tokens.is_empty() {
            self.shared.streams.release(&self.tokens);
        }
    }
}

impl Shared {
    /// True if this side made a call with `id` (ids count up from 1).
    pub(crate) fn issued(&self, id: u64) -> bool {
        id != 0 && id < self.next_id.load(Ordering::Relaxed)
    }

    /// Tells the peer we are done with stream `token`, without waiting.
    pub(crate) fn dispose_stream(&self, token: &RawValue) {
        let Ok(frame) = wire::notification(crate::stream::DISPOSE_METHOD, Some(TokenParams { token })) else {
            return;
        };
        if let Err(PushError::Full(message)) = self.outbox.try_push(Message::Text(wire::frame_text(frame))) {
            self.outbox.push_control(Control::DisposeStream(message));
        }
    }

    /// Marks the connection ended: queued frames are dropped, pending calls
    /// fail at once, new ones fail with `Closed`, the streams this side
    /// sends are dropped.
    pub(crate) fn mark_closed(&self, reason: CloseReason) {
        self.outbox.close();
        self.pending.close_all();
        self.streams.close();
        *crate::sync::lock(&self.closed) = Some(reason);
        self.closed_signal.notify_waiters();
    }

    fn close_reason(&self) -> Option<CloseReason> {
        crate::sync::lock(&self.closed).clone()
    }
}

#[cfg(test)]
mod tests;
