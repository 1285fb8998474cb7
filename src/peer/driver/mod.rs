//! The task that owns one socket: reads, writes, and runs incoming calls.
//!
//! One task per connection does everything, with no hop to another task per
//! message: it reads a frame, starts the handler, and writes the handler's
//! response in the same task. Reading never waits for a handler, so a handler
//! that awaits a reply on this same connection cannot deadlock it.
//!
//! Flow control. Reading never waits for writing: responses, `$/cancelRequest`
//! and control frames are always read and handled, however slowly the peer
//! takes what we send. Back-pressure applies to new requests only. At most
//! `max_in_flight` calls run at once, and a call's slot is free again once
//! its reply has been handed to the socket (so a peer that asks and does not
//! read cannot make replies pile up here). Past the limit, requests and
//! notifications are parked, in order, up to [`PARKED_BYTES`]. With the
//! parking full, the driver stops reading (TCP holds the peer back) only when
//! nothing on this side waits on the peer (no call awaiting its reply, no
//! sender waiting for room in the queue) and its own writes flow: then
//! nothing it needs can be behind those requests, the running calls finish
//! on their own, and their replies leave. Otherwise it keeps reading and
//! answers the excess requests with -32009 (server busy). So of two peers
//! that follow these rules, one that stops reading needs nothing from the
//! other, and if both have writes waiting (calls given up on, say), both
//! read. The one other pause is for a peer that keeps asking without reading
//! the replies it is owed ([`owed_limit`](Driver::owed_limit) of them): the
//! keep-alive drops it if it takes nothing for a whole timeout.
//!
//! Liveness (see [`KeepAlive`]): any bytes read, or taken by the peer after
//! our writes had to wait, show that the peer is there; a ping's time to be
//! answered starts when its bytes have left. While not reading by choice,
//! the driver pings more often, so the peer hears from it, and when a ping
//! goes unanswered it reads one more frame (a probe) before it decides: the
//! answer may be waiting behind the frames it chose not to read.
//!
//! The same task closes an idle connection when asked to, and on shutdown
//! refuses new calls, lets running ones finish, then closes with 1001.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::Span;

mod closing;
mod routing;

use closing::{CloseHandshake, Closing, Ended, GOING_AWAY, IDLE, RATE_LIMITED, Teardown, close_code_for, close_frame};
use routing::{PARKED_BYTES, Parked};

use super::liveness::{IdleTimeout, KeepAlive, KeepAliveDue};
use super::outbox::Popped;
use super::{CloseReason, Control, Peer, PeerConfig, Shared};
use crate::dispatch::{Answer, Handler, HandlerFuture};
use crate::identity::Roles;
use crate::metrics::{self, CallMeter};
use crate::middleware::{Chain, ConnectionInfo};
use crate::rate_limit::Limiter;
use crate::socket::{Activity, Socket};
use crate::stream::scope::Scope;
use crate::wire::{self, RequestId};

/// Why the driver stopped reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    /// Its parking is full and nothing on this side waits on the peer.
    Parking,
    /// The peer is owed `owed_limit` replies it has not taken.
    Owed,
}

/// A WebSocket as the engine sees it: a [`Socket`], or channels in tests.
/// Control frames (pings) are accepted without `poll_ready`: they go out
/// ahead of queued data, at the next frame boundary.
pub(crate) trait Transport:
    Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin + Send + 'static
{
    /// What happened on the wire since the last call.
    fn take_activity(&mut self) -> Activity;
}

impl<Io: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for Socket<Io> {
    fn take_activity(&mut self) -> Activity {
        Socket::take_activity(self)
    }
}

/// One incoming call (or batch) being run.
struct Running {
    /// The request's id, for `$/cancelRequest`; `None` for notifications and batches.
    key: Option<RequestId>,
    /// Call slots it takes: 1, a batch's number of calls, or 0 for a stream's
    /// ask (each stream has at most one; the open streams bound them).
    weight: usize,
    span: Span,
    /// `None` once cancelled: the handler is dropped at once.
    future: Option<HandlerFuture>,
    /// Times a call (not a stream's ask, nor a batch as a whole) for the metrics.
    meter: Option<CallMeter>,
    /// The last waker, so a cancellation can get this entry polled (and removed).
    waker: Option<Waker>,
}

/// A call (or batch) that ended: the slots it frees, and how it ended.
struct Finished {
    weight: usize,
    answer: Answer,
}

impl Future for Running {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        let this = &mut *self;
        let weight = this.weight;
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(Finished { weight, answer: Answer::default() });
        };
        let polled = {
            let _entered = this.span.enter();
            future.as_mut().poll(cx)
        };
        if polled.is_pending() && this.key.is_some() {
            match &this.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => this.waker = Some(cx.waker().clone()),
            }
        }
        polled.map(|answer| {
            if let Some(meter) = this.meter.take() {
                meter.answered(&answer);
            }
            Finished { weight, answer }
        })
    }
}

/// Displays an optional request id for tracing without allocating.
struct ShowId<'a>(&'a Option<RequestId>);

impl fmt::Display for ShowId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => id.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The engine of one connection.
pub(crate) struct Driver<T, H> {
    transport: T,
    /// The connection's state shared with its `Peer` handles: the outbox,
    /// the calls awaiting replies.
    shared: Arc<Shared>,
    /// `None` once the connection has ended (the service is dropped then).
    handler: Option<H>,
    running: FuturesUnordered<Running>,
    /// Call slots taken by `running` and by replies not yet handed to the
    /// socket: a batch takes one per call, so it may take the connection past
    /// `max_in_flight` (by at most one batch); an immediate reply (an error,
    /// a refusal) takes one too.
    in_flight: usize,
    /// Frames read while `max_in_flight` calls were running, in arrival order.
    parked: VecDeque<Parked>,
    /// Bytes of `parked`, with [`PARKED_OVERHEAD`] per frame.
    parked_bytes: usize,
    max_in_flight: usize,
    max_batch_len: usize,
    unflushed: bool,
    keep_alive: Option<KeepAlive>,
    /// Reading one frame while paused, for a sign that the peer is there.
    probing: bool,
    idle: Option<IdleTimeout>,
    /// Set while shutting down: new calls are refused until the deadline.
    draining: Option<Pin<Box<Sleep>>>,
    /// Set once a close was asked for (boxed: every idle connection carries the field).
    closing: Option<Box<Closing>>,
    /// The middleware every incoming call goes through, and what they are
    /// told of the connection; `None` without middleware (boxed, as `closing`).
    middleware: Option<Box<(Chain, ConnectionInfo)>>,
    /// The connection's roles, for the methods that require one.
    roles: Roles,
    /// The peer's rate limit; `None` without one (boxed, as `closing`).
    limiter: Option<Box<Limiter>>,
    /// The metric handles of the methods called on this connection.
    meters: metrics::Local,
}

impl<T: Transport, H: Handler> Driver<T, H> {
    pub(crate) fn new(transport: T, peer: Peer, handler: H, config: &PeerConfig) -> Self {
        Driver {
            transport,
            shared: peer.shared().clone(),
            handler: Some(handler),
            running: FuturesUnordered::new(),
            in_flight: 0,
            parked: VecDeque::new(),
            parked_bytes: 0,
            max_in_flight: config.max_in_flight.max(1),
            max_batch_len: config.max_batch_len,
            unflushed: false,
            keep_alive: config.keep_alive.map(KeepAlive::new),
            probing: false,
            idle: config.idle_timeout.map(IdleTimeout::new),
            draining: None,
            closing: None,
            middleware: (!config.middleware.is_empty())
                .then(|| Box::new((config.middleware.clone(), ConnectionInfo::default()))),
            roles: Roles::default(),
            limiter: config.rate_limit.as_ref().map(|limit| Box::new(Limiter::new(limit))),
            meters: metrics::Local::default(),
        }
    }

    /// Says who is at the other end: to the middleware, and for the
    /// methods that require a role.
    pub(crate) fn connection_info(mut self, info: ConnectionInfo) -> Self {
        self.roles = info.roles.clone();
        if let Some(middleware) = &mut self.middleware {
            middleware.1 = info;
        }
        self
    }

    /// Runs the connection to its end. `on_end` runs after the loop stops and
    /// before the service is dropped (the server leaves the hub there); then
    /// waiting calls fail with `Closed`, and the close handshake is finished.
    pub(crate) async fn run(mut self, on_end: impl FnOnce(&CloseReason)) -> CloseReason {
        let mut teardown = Teardown { shared: self.shared.clone(), on_end: Some(on_end) };
        let ended = poll_fn(|cx| self.poll_drive(cx)).await;
        let reason = ended.reason();
        tracing::debug!(conn = %self.shared.id, ?reason, "connection ended");
        teardown.finish(reason.clone());
        // Running calls and the service go before the close handshake ends.
        self.running.clear();
        self.handler = None;
        let handshake = CloseHandshake::after(&ended);
        drop(ended);
        handshake.finish(&mut self.transport).await;
        reason
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        if let Some(ended) = self.poll_timers(cx) {
            return Poll::Ready(ended);
        }
        // Handlers run, and their params decode, as this connection's: their
        // calls on it take no turn (see `Peer::turn`), a stream in their
        // params pulls from it.
        let _serving = Scope::serving(&self.shared);
        loop {
            let mut progress = false;

            self.shared.outbox.register(cx);
            for control in self.shared.outbox.take_controls() {
                progress = true;
                match control {
                    Control::Cancel(id) => self.queue_own(wire::cancel(id), 0),
                    Control::DisposeStream(message) => self.shared.outbox.push_own(message, 0),
                    Control::Close { frame, graceful } => {
                        let reason = CloseReason::ClosedLocally { code: frame.code.into() };
                        self.start_closing(frame, reason, graceful);
                    }
                    Control::Shutdown(deadline) => {
                        self.start_draining(deadline);
                        // Polls the new deadline once, so that it wakes this task.
                        if let Some(ended) = self.poll_timers(cx) {
                            return Poll::Ready(ended);
                        }
                    }
                }
            }

            if self.closing.is_some() {
                return self.poll_close(cx);
            }

            while let Poll::Ready(Some(finished)) = self.running.poll_next_unpin(cx) {
                progress = true;
                if let Some(idle) = &mut self.idle {
                    idle.active();
                }
                match (finished.answer.frame, finished.weight) {
                    // An answer to a stream's ask took no slot while it
                    // waited, but is owed like any reply until written.
                    (Some(frame), 0) => self.reply(frame),
                    // The slots come back once the reply is handed to the socket.
                    (Some(frame), weight) => self.queue_own(frame, weight),
                    (None, weight) => self.in_flight -= weight,
                }
            }

            if self.draining.is_some() && self.running.is_empty() && self.parked.is_empty() {
                self.start_closing(close_frame(GOING_AWAY), CloseReason::Shutdown, true);
                continue;
            }

            let wrote = match self.poll_write(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Ended::Transport(e)),
                Poll::Ready(Ok(wrote)) => wrote,
                Poll::Pending => false,
            };
            progress |= wrote;

            progress |= self.unpark();

            let reading = self.pause().is_none();
            if reading {
                match Pin::new(&mut self.transport).poll_next(cx) {
                    Poll::Ready(Some(Ok(message))) => {
                        progress = true;
                        if let Some(ended) = self.on_message(message) {
                            return Poll::Ready(ended);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => match close_code_for(&e) {
                        // The peer broke a rule: say which before closing.
                        Some((code, reason)) => {
                            tracing::debug!(conn = %self.shared.id, error = %e, code, "closing");
                            let frame = CloseFrame { code: code.into(), reason: reason.into() };
                            self.start_closing(frame, CloseReason::ClosedLocally { code }, false);
                            progress = true;
                        }
                        None => return Poll::Ready(Ended::Transport(e)),
                    },
                    Poll::Ready(None) => return Poll::Ready(Ended::Eof),
                    Poll::Pending => {}
                }
            }
            self.note_activity(reading);

            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Hands what the socket saw to the keep-alive; bytes read end a probe.
    fn note_activity(&mut self, reading: bool) {
        let activity = self.transport.take_activity();
        if activity.read {
            self.probing = false;
        }
        let Some(keep_alive) = &mut self.keep_alive else { return };
        keep_alive.set_paused(!reading);
        if activity.ping_flushed {
            keep_alive.ping_sent();
        }
        if activity.read || activity.drained {
            keep_alive.heard();
        }
    }

    /// Polls the timers once per wake-up, not once per message: a poll
    /// registers the task's waker whatever it returns, and the waker stays
    /// the same. Returns how the connection ended if the peer is gone.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Option<Ended> {
        // While closing, the close handshake has its own deadline.
        if self.closing.is_none()
            && let Some(keep_alive) = &mut self.keep_alive
        {
            match keep_alive.poll(cx) {
                // Ahead of queued data, at the next frame boundary; the peer's
                // time to answer starts once it has left.
                Poll::Ready(KeepAliveDue::Ping) => {
                    if let Err(e) = Pin::new(&mut self.transport).start_send(Message::Ping(Bytes::new())) {
                        return Some(Ended::Transport(e));
                    }
                    self.unflushed = true;
                }
                // Not reading by choice, the answer may wait unread: read one
                // more frame, and give the peer another timeout to send it.
                Poll::Ready(KeepAliveDue::Unresponsive) if self.pause() == Some(Pause::Parking) => {
                    tracing::debug!(conn = %self.shared.id, "no sign of the peer while not reading; reading a frame");
                    self.probing = true;
                    if let Some(keep_alive) = &mut self.keep_alive {
                        keep_alive.probe();
                    }
                }
                Poll::Ready(KeepAliveDue::Unresponsive) => {
                    tracing::debug!(conn = %self.shared.id, "no answer to a keep-alive ping; dropping the connection");
                    return Some(Ended::Abandoned(CloseReason::Unresponsive));
                }
                Poll::Pending => {}
            }
        }
        if let Some(deadline) = &mut self.draining
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.start_closing(close_frame(GOING_AWAY), CloseReason::Shutdown, true);
        }
        if let Some(idle) = &mut self.idle {
            let busy = !self.running.is_empty() || self.shared.pending.is_waiting();
            if idle.poll(cx, busy).is_ready() {
                tracing::debug!(conn = %self.shared.id, "idle timeout");
                self.start_closing(close_frame(IDLE), CloseReason::Idle, true);
            }
        }
        None
    }

    /// Writes what is waiting while the socket takes it; `Ok(true)` if anything was written.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, WsError>> {
        let mut wrote = false;
        loop {
            match Pin::new(&mut self.transport).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
            let Popped { message, slots, queued } = match self.shared.outbox.poll_pop(cx) {
                Poll::Ready(popped) => popped,
                Poll::Pending => break,
            };
            if !wrote {
                self.shared.meters.send_queue(queued);
            }
            self.in_flight -= slots;
            Pin::new(&mut self.transport).start_send(message)?;
            wrote = true;
            self.unflushed = true;
        }
        if wrote && let Some(idle) = &mut self.idle {
            idle.active();
        }
        if self.unflushed {
            match Pin::new(&mut self.transport).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(wrote))
    }

    /// Queues a frame this task made, behind what other tasks queued before
    /// it: one connection's frames leave in the order they were made (a
    /// handler's notifications to its caller arrive before its reply). A
    /// reply holds its call's `slots` until it is handed to the socket.
    fn queue_own(&mut self, frame: String, slots: usize) {
        self.shared.outbox.push_own(Message::Text(wire::frame_text(frame)), slots);
    }

    /// Queues an immediate reply (an error, a refusal, a cancellation's
    /// answer): it takes a slot until written, like a call's reply.
    fn reply(&mut self, frame: String) {
        self.in_flight += 1;
        self.queue_own(frame, 1);
    }

    /// The most replies owed to the peer and not yet handed to the socket
    /// before the driver stops reading: only a peer that keeps asking
    /// without reading its replies gets that far.
    fn owed_limit(&self) -> usize {
        self.max_in_flight.saturating_mul(2).saturating_add(self.max_batch_len)
    }

    /// True while something on this side waits on the peer: a call for its
    /// reply, or a sender for room in the queue (which the peer's reading frees).
    fn waits_on_peer(&self) -> bool {
        self.shared.pending.is_waiting() || self.shared.outbox.has_waiting_senders()
    }

    /// Why the driver does not read now, if it does not (see the module docs).
    fn pause(&self) -> Option<Pause> {
        if self.in_flight >= self.owed_limit() {
            return Some(Pause::Owed);
        }
        // Not while this side's writes wait: the peer may have stopped
        // reading too, and one of the two must read for either to go on.
        let parking_full = self.parked_bytes >= PARKED_BYTES;
        (parking_full && !self.probing && !self.unflushed && !self.waits_on_peer()).then_some(Pause::Parking)
    }
}
