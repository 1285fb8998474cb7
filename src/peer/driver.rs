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
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use jsonrpsee_core::server::{MethodCallback, MethodResponse, Methods};
use jsonrpsee_types::{ErrorObjectOwned, Extensions, Params};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tracing::Span;

use super::liveness::{IdleTimeout, KeepAlive, KeepAliveDue};
use super::{CloseReason, Control, Peer, PeerConfig, Reply, Serving};
use crate::dispatch::{Answer, Handler, HandlerError, HandlerFuture, IncomingCall};
use crate::error::codes;
use crate::socket::{Activity, Socket};
use crate::wire::{self, RequestId};

/// How long a close handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The most bytes of frames a connection parks while at its call limit
/// (soft by one frame: one frame is parked whatever its size).
const PARKED_BYTES: usize = 4 << 20;

/// What a parked frame costs besides its bytes, so that many tiny frames
/// also reach the bound.
const PARKED_OVERHEAD: usize = 64;

/// Parked frames smaller than this are copied out of the read buffer they
/// arrived in, which may be far larger (a large frame read just before).
const OWN_COPY: usize = 64 * 1024;

/// A frame read while the connection was at its call limit.
struct Parked {
    /// Its id when it is a single request, for `$/cancelRequest` (a copy of
    /// part of `text`, so no more than it).
    request: Option<RequestId>,
    text: Utf8Bytes,
}

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

/// Why the driver loop stopped.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The peer sent a close frame.
    ByPeer(Option<CloseFrame>),
    /// We sent a close frame, for this reason.
    ByUs(CloseReason),
    /// We gave up on the peer without a close handshake.
    Abandoned(CloseReason),
    /// The socket failed.
    Transport(WsError),
    /// The stream ended without a close frame.
    Eof,
}

impl Ended {
    fn reason(&self) -> CloseReason {
        match self {
            Ended::ByPeer(Some(frame)) => {
                CloseReason::ClosedByPeer { code: frame.code.into(), reason: frame.reason.to_string() }
            }
            Ended::ByPeer(None) => CloseReason::ClosedByPeer { code: 1005, reason: String::new() },
            Ended::ByUs(reason) | Ended::Abandoned(reason) => reason.clone(),
            Ended::Transport(e) => CloseReason::Transport(e.to_string()),
            Ended::Eof => CloseReason::Transport("the stream ended without a close frame".into()),
        }
    }
}

/// Close code and reason text for a server shutting down.
const GOING_AWAY: (u16, &str) = (1001, "server shutting down");

/// Close code and reason text for a connection idle too long.
const IDLE: (u16, &str) = (1000, "idle timeout");

fn close_frame((code, reason): (u16, &'static str)) -> CloseFrame {
    CloseFrame { code: code.into(), reason: reason.into() }
}

/// One incoming call (or batch) being run.
struct Running {
    /// The request's id, for `$/cancelRequest`; `None` for notifications and batches.
    key: Option<RequestId>,
    /// Call slots it takes: 1, or a batch's number of calls.
    weight: usize,
    span: Span,
    /// `None` once cancelled: the handler is dropped at once.
    future: Option<HandlerFuture>,
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
        polled.map(|answer| Finished { weight, answer })
    }
}

/// What one incoming message asks of the driver.
enum Action {
    Nothing,
    /// Answer at once with this frame.
    Reply(String),
    /// Run this call.
    Run(Running),
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
    peer: Peer,
    /// `None` once the connection has ended (the service is dropped then).
    handler: Option<H>,
    methods: Option<Methods>,
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
    /// Told of every handler that returned an error or panicked.
    on_handler_error: Option<Box<HandlerErrorHook>>,
}

/// The server's hook for failed handlers, bound to one connection.
pub(crate) type HandlerErrorHook = dyn Fn(&HandlerError) + Send + Sync;

/// A close this side asked for.
struct Closing {
    /// The close frame, until it is handed to the socket.
    frame: Option<CloseFrame>,
    /// Frames already queued go out first.
    flush_first: bool,
    reason: CloseReason,
    /// When the close handshake is given up on.
    deadline: Pin<Box<Sleep>>,
}

impl<T: Transport, H: Handler> Driver<T, H> {
    pub(crate) fn new(transport: T, peer: Peer, handler: H, methods: Option<Methods>, config: &PeerConfig) -> Self {
        Driver {
            transport,
            peer,
            handler: Some(handler),
            methods,
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
            on_handler_error: None,
        }
    }

    /// Calls `hook` for every handler on this connection that fails.
    pub(crate) fn on_handler_error(mut self, hook: Box<HandlerErrorHook>) -> Self {
        self.on_handler_error = Some(hook);
        self
    }

    /// Runs the connection to its end. `on_end` runs after the loop stops and
    /// before the service is dropped (the server leaves the hub there); then
    /// waiting calls fail with `Closed`, and the close handshake is finished.
    pub(crate) async fn run(mut self, on_end: impl FnOnce(&CloseReason)) -> CloseReason {
        let mut teardown = Teardown { peer: self.peer.clone(), on_end: Some(on_end) };
        let ended = poll_fn(|cx| self.poll_drive(cx)).await;
        let reason = ended.reason();
        tracing::debug!(conn = %self.peer.id(), ?reason, "connection ended");
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
        loop {
            let mut progress = false;

            self.peer.shared().outbox.register(cx);
            for control in self.peer.shared().outbox.take_controls() {
                progress = true;
                match control {
                    Control::Cancel(id) => self.queue_own(wire::cancel(id), 0),
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

            // Calls the handlers make on this connection take no turn (see `Peer::turn`).
            let serving = Serving::enter(self.peer.id());
            while let Poll::Ready(Some(finished)) = self.running.poll_next_unpin(cx) {
                progress = true;
                if let Some(idle) = &mut self.idle {
                    idle.active();
                }
                let Answer { frame, failures } = finished.answer;
                match frame {
                    // The slots come back once the reply is handed to the socket.
                    Some(frame) => self.queue_own(frame, finished.weight),
                    None => self.in_flight -= finished.weight,
                }
                if let Some(hook) = &self.on_handler_error {
                    for failure in &failures {
                        if std::panic::catch_unwind(AssertUnwindSafe(|| hook(failure))).is_err() {
                            tracing::error!("the handler-error hook panicked");
                        }
                    }
                }
            }

            drop(serving);

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

            while self.in_flight < self.max_in_flight {
                let Some(Parked { text, .. }) = self.parked.pop_front() else { break };
                self.parked_bytes -= text.len() + PARKED_OVERHEAD;
                progress = true;
                self.on_json(&text);
            }

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
                            tracing::debug!(conn = %self.peer.id(), error = %e, code, "closing");
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
                    tracing::debug!(conn = %self.peer.id(), "no sign of the peer while not reading; reading a frame");
                    self.probing = true;
                    if let Some(keep_alive) = &mut self.keep_alive {
                        keep_alive.probe();
                    }
                }
                Poll::Ready(KeepAliveDue::Unresponsive) => {
                    tracing::debug!(conn = %self.peer.id(), "no answer to a keep-alive ping; dropping the connection");
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
            let busy = !self.running.is_empty() || self.peer.shared().pending.is_waiting();
            if idle.poll(cx, busy).is_ready() {
                tracing::debug!(conn = %self.peer.id(), "idle timeout");
                self.start_closing(close_frame(IDLE), CloseReason::Idle, true);
            }
        }
        None
    }

    /// Starts closing with `frame`, reporting `reason`. A graceful close
    /// writes what is queued first; otherwise it is dropped. Either way
    /// nothing more is read or answered, and the handshake gets
    /// [`CLOSE_TIMEOUT`].
    fn start_closing(&mut self, frame: CloseFrame, reason: CloseReason, graceful: bool) {
        if self.closing.is_some() {
            return;
        }
        let outbox = &self.peer.shared().outbox;
        outbox.seal();
        if !graceful {
            outbox.clear_frames();
        }
        let deadline = Box::pin(tokio::time::sleep(CLOSE_TIMEOUT));
        self.closing = Some(Box::new(Closing { frame: Some(frame), flush_first: graceful, reason, deadline }));
    }

    /// Refuses new calls from now on; the connection closes with 1001 once
    /// the running ones end, or at `deadline`.
    fn start_draining(&mut self, deadline: Instant) {
        if self.draining.is_none() {
            tracing::debug!(conn = %self.peer.id(), "shutting down");
            self.draining = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
    }

    /// Writes out what is queued (for a graceful close), then the close frame,
    /// and flushes it; gives up on a socket that stays blocked past
    /// [`CLOSE_TIMEOUT`] (abandoning the peer if the close frame never left).
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        let Some(closing) = &self.closing else { return Poll::Pending };
        if closing.flush_first {
            if let Poll::Ready(Err(e)) = self.poll_write(cx) {
                return Poll::Ready(Ended::Transport(e));
            }
            let flushed = self.peer.shared().outbox.len() == 0 && !self.unflushed;
            if let Some(closing) = &mut self.closing {
                closing.flush_first = !flushed;
            }
        }
        let Driver { transport, closing, .. } = self;
        let Some(closing) = closing else { return Poll::Pending };
        if !closing.flush_first
            && closing.frame.is_some()
            && let Poll::Ready(ready) = Pin::new(&mut *transport).poll_ready(cx)
        {
            let sent = ready.and_then(|()| match closing.frame.take() {
                Some(frame) => Pin::new(&mut *transport).start_send(Message::Close(Some(frame))),
                None => Ok(()),
            });
            if let Err(e) = sent {
                return Poll::Ready(Ended::Transport(e));
            }
        }
        if closing.frame.is_none() && Pin::new(&mut *transport).poll_flush(cx).is_ready() {
            return Poll::Ready(Ended::ByUs(closing.reason.clone()));
        }
        match closing.deadline.as_mut().poll(cx) {
            // The close frame never left: waiting for the peer's answer is pointless.
            Poll::Ready(()) if closing.frame.is_some() => Poll::Ready(Ended::Abandoned(closing.reason.clone())),
            Poll::Ready(()) => Poll::Ready(Ended::ByUs(closing.reason.clone())),
            Poll::Pending => Poll::Pending,
        }
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
            let (message, slots) = match self.peer.shared().outbox.poll_pop(cx) {
                Poll::Ready(popped) => popped,
                Poll::Pending => break,
            };
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

    /// Handles one message; `Some` when it ends the connection.
    fn on_message(&mut self, message: Message) -> Option<Ended> {
        if let (Some(idle), Message::Text(_) | Message::Binary(_)) = (&mut self.idle, &message) {
            idle.active();
        }
        match message {
            Message::Text(text) => self.on_text(text),
            Message::Binary(data) => match Utf8Bytes::try_from(data) {
                Ok(text) => self.on_text(text),
                Err(_) => self.reply_parse_error(),
            },
            Message::Close(frame) => return Some(Ended::ByPeer(frame)),
            // The socket answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        None
    }

    fn reply_parse_error(&mut self) {
        let error = ErrorObjectOwned::owned(codes::PARSE_ERROR, "Parse error", None::<()>);
        self.reply(wire::failure(&RequestId::Null, &error));
    }

    /// Queues a frame this task made, behind what other tasks queued before
    /// it: one connection's frames leave in the order they were made (a
    /// handler's notifications to its caller arrive before its reply). A
    /// reply holds its call's `slots` until it is handed to the socket.
    fn queue_own(&mut self, frame: String, slots: usize) {
        self.peer.shared().outbox.push_own(Message::Text(wire::frame_text(frame)), slots);
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
        let shared = self.peer.shared();
        shared.pending.is_waiting() || shared.outbox.has_waiting_senders()
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

    /// Handles a frame now, parks it while the connection is at its call
    /// limit, or refuses it when even the parking is full.
    fn on_text(&mut self, text: Utf8Bytes) {
        // A response in the usual form goes to its caller without being parsed here.
        if let Some(id) = wire::response_prefix_id(&text) {
            if !self.peer.shared().pending.resolve(id, Reply::Frame(text.into())) {
                tracing::debug!(conn = %self.peer.id(), id, "dropping a response no call waits for");
            }
            return;
        }
        if self.in_flight < self.max_in_flight && self.parked.is_empty() {
            return self.on_json(&text);
        }
        let frame = wire::parse_frame(&text, self.max_batch_len);
        if needs_no_slot(&frame) {
            return self.on_frame(frame, &text);
        }
        // Soft by one frame, like `pause`: whatever it reads while not full,
        // it parks; a probe's frame may go up to twice the bound.
        let bound = if self.probing { 2 * PARKED_BYTES } else { PARKED_BYTES };
        if self.parked_bytes < bound {
            self.parked_bytes += text.len() + PARKED_OVERHEAD;
            let request = match &frame {
                wire::Frame::Single(wire::Message::Request { id, .. }) => Some(id.clone()),
                _ => None,
            };
            // A small frame may share a large read buffer: parked, it holds its own bytes only.
            let text = if text.len() < OWN_COPY { Utf8Bytes::from(text.as_str().to_owned()) } else { text };
            self.parked.push_back(Parked { request, text });
            return;
        }
        match frame {
            wire::Frame::Single(message) => {
                if let Some(refusal) = self.refuse(message, &text) {
                    self.reply(refusal);
                }
            }
            wire::Frame::Batch(items) => {
                let refusals: Vec<String> =
                    items.into_iter().filter_map(|item| self.refuse(wire::classify(item), &text)).collect();
                if !refusals.is_empty() {
                    self.reply(wire::batch(&refusals));
                }
            }
            other => self.on_frame(other, &text),
        }
    }

    /// Answers a message that arrived while the connection could take no more
    /// calls: requests get -32009, responses are still routed.
    fn refuse(&mut self, message: wire::Message<'_>, text: &Utf8Bytes) -> Option<String> {
        match message {
            wire::Message::Request { id, method, .. } if method != wire::CANCEL_METHOD => {
                tracing::debug!(conn = %self.peer.id(), %method, "busy: refusing a request");
                Some(wire::failure(&id, &crate::error::server_busy()))
            }
            wire::Message::Notification { method, .. } if method != wire::CANCEL_METHOD => {
                tracing::warn!(conn = %self.peer.id(), %method, "busy: dropping a notification");
                None
            }
            // Responses and cancellations need no slot.
            other => match self.on_single(other, text) {
                Action::Reply(frame) => Some(frame),
                Action::Nothing | Action::Run(_) => None,
            },
        }
    }

    fn on_json(&mut self, text: &Utf8Bytes) {
        self.on_frame(wire::parse_frame(text, self.max_batch_len), text);
    }

    fn on_frame(&mut self, frame: wire::Frame<'_>, text: &Utf8Bytes) {
        match frame {
            wire::Frame::ParseError => self.reply_parse_error(),
            wire::Frame::BatchTooLarge => {
                let message = format!("Batch too large: at most {} entries", self.max_batch_len);
                let error = ErrorObjectOwned::owned(codes::BATCH_TOO_LARGE, message, None::<()>);
                self.reply(wire::failure(&RequestId::Null, &error));
            }
            wire::Frame::Single(message) => match self.on_single(message, text) {
                Action::Nothing => {}
                Action::Reply(frame) => self.reply(frame),
                Action::Run(running) => self.launch(running),
            },
            wire::Frame::Batch(items) => self.on_batch(items, text),
        }
    }

    fn on_single(&mut self, message: wire::Message<'_>, text: &Utf8Bytes) -> Action {
        match message {
            wire::Message::Request { id, method, params } => {
                if method == wire::CANCEL_METHOD {
                    self.cancel(params);
                    return Action::Reply(wire::success(&id, &()));
                }
                self.start(Some(id), &method, params)
            }
            wire::Message::Notification { method, params } => {
                if method == wire::CANCEL_METHOD {
                    self.cancel(params);
                    return Action::Nothing;
                }
                self.start(None, &method, params)
            }
            wire::Message::Response { id, outcome } => {
                self.route_response(id, outcome, text);
                Action::Nothing
            }
            wire::Message::BadResponse { reason } => {
                tracing::debug!(conn = %self.peer.id(), reason, "dropping a malformed response");
                Action::Nothing
            }
            wire::Message::Invalid { id, reason } => {
                let error = ErrorObjectOwned::owned(codes::INVALID_REQUEST, "Invalid request", Some(reason));
                Action::Reply(wire::failure(&id, &error))
            }
        }
    }

    fn route_response(&self, id: &RawValue, outcome: Result<&RawValue, &RawValue>, text: &Utf8Bytes) {
        let Some(call) = wire::own_call_id(id) else {
            tracing::debug!(conn = %self.peer.id(), id = id.get(), "dropping a response to an id this side never used");
            return;
        };
        let reply = match outcome {
            Ok(result) => Reply::Ok(slice_of(text, result.get())),
            Err(error) => match wire::error_object(error) {
                Ok(object) => Reply::Err(object),
                Err(e) => Reply::Undecodable(e),
            },
        };
        if !self.peer.shared().pending.resolve(call, reply) {
            tracing::debug!(conn = %self.peer.id(), id = call, "dropping a response no call waits for");
        }
    }

    /// Starts an incoming call; answers -32601 at once if no method has the
    /// name, and -32009 while shutting down.
    fn start(&mut self, id: Option<RequestId>, method: &str, params: Option<&RawValue>) -> Action {
        if self.draining.is_some() {
            tracing::debug!(conn = %self.peer.id(), method, "shutting down: refusing a call");
            let Some(id) = id else { return Action::Nothing };
            let error = ErrorObjectOwned::owned(codes::SERVER_BUSY, "Server is shutting down", None::<()>);
            return Action::Reply(wire::failure(&id, &error));
        }
        let span = tracing::debug_span!("rpc.in", conn = %self.peer.id(), method, id = %ShowId(&id));
        let key = id.clone();
        let dispatched = {
            let _entered = span.enter();
            let call = IncomingCall { id, params };
            let dispatched = match &self.handler {
                Some(handler) => handler.dispatch(method, call),
                None => Err(call),
            };
            match dispatched {
                Ok(future) => Ok(future),
                Err(call) => self.dispatch_jsonrpsee(method, call),
            }
        };
        match dispatched {
            Ok(future) => Action::Run(Running { key, weight: 1, span, future: Some(future), waker: None }),
            Err(call) => {
                tracing::debug!(conn = %self.peer.id(), method = echo(method), "method not found");
                match call.id {
                    Some(id) => {
                        let error =
                            ErrorObjectOwned::owned(codes::METHOD_NOT_FOUND, "Method not found", Some(echo(method)));
                        Action::Reply(wire::failure(&id, &error))
                    }
                    None => Action::Nothing,
                }
            }
        }
    }

    /// Tries the merged jsonrpsee methods.
    fn dispatch_jsonrpsee<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        let Some(callback) = self.methods.as_ref().and_then(|m| m.method(method)) else {
            return Err(call);
        };
        let IncomingCall { id, params } = call;
        // jsonrpsee's Id has no negative or fractional numbers: such ids are put back below.
        let jsonrpsee_id = id.as_ref().and_then(RequestId::to_jsonrpsee).unwrap_or(jsonrpsee_types::Id::Null);
        let params = Params::new(params.map(RawValue::get)).into_owned();
        let connection = jsonrpsee_core::server::ConnectionId(self.peer.id().sequence() as usize);
        let response: Pin<Box<dyn Future<Output = Option<MethodResponse>> + Send>> = match callback {
            MethodCallback::Sync(f) => {
                let f = f.clone();
                let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    f(jsonrpsee_id, params, usize::MAX, Extensions::new())
                }));
                Box::pin(std::future::ready(out.ok()))
            }
            MethodCallback::Async(f) => {
                let running = f(jsonrpsee_id, params, connection, usize::MAX, Extensions::new());
                Box::pin(AssertUnwindSafe(running).catch_unwind().map(Result::ok))
            }
            MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => {
                let error = ErrorObjectOwned::owned(
                    codes::METHOD_NOT_FOUND,
                    "jsonrpsee subscriptions are not served by wsduplex; use a callback contract",
                    Some(method),
                );
                return Ok(Box::pin(std::future::ready(Answer::frame(id.map(|id| wire::failure(&id, &error))))));
            }
        };
        Ok(Box::pin(async move {
            let response = response.await;
            let Some(id) = id else { return Answer::default() };
            Answer::frame(Some(match response {
                Some(response) => jsonrpsee_frame(&id, response),
                None => wire::failure(
                    &id,
                    &ErrorObjectOwned::owned(codes::INTERNAL_ERROR, "Internal error: the handler panicked", None::<()>),
                ),
            }))
        }))
    }

    /// Starts running a call or batch, taking its slots.
    fn launch(&mut self, running: Running) {
        self.in_flight += running.weight;
        self.running.push(running);
    }

    fn cancel(&mut self, params: Option<&RawValue>) {
        let Some(target) = wire::cancel_target(params) else {
            tracing::debug!(conn = %self.peer.id(), "ignoring $/cancelRequest without a usable id");
            return;
        };
        let found = self.running.iter_mut().find(|r| r.future.is_some() && r.key.as_ref() == Some(&target));
        if let Some(running) = found {
            running.future = None;
            if let Some(waker) = running.waker.take() {
                waker.wake();
            }
        } else if let Some(at) = self.parked.iter().position(|parked| parked.request.as_ref() == Some(&target)) {
            // Not started yet: it never will be.
            if let Some(Parked { text, .. }) = self.parked.remove(at) {
                self.parked_bytes -= text.len() + PARKED_OVERHEAD;
            }
        } else {
            return;
        }
        tracing::debug!(conn = %self.peer.id(), id = %target, "request cancelled by the peer");
        let error = ErrorObjectOwned::owned(codes::REQUEST_CANCELLED, "Request cancelled", None::<()>);
        self.reply(wire::failure(&target, &error));
    }

    fn on_batch(&mut self, items: Vec<&RawValue>, text: &Utf8Bytes) {
        let mut answers = Vec::new();
        let mut calls = Vec::new();
        for item in items {
            match self.on_single(wire::classify(item), text) {
                Action::Nothing => {}
                Action::Reply(frame) => answers.push(frame),
                Action::Run(running) => calls.push(running),
            }
        }
        if calls.is_empty() {
            if !answers.is_empty() {
                self.reply(wire::batch(&answers));
            }
            return;
        }
        let weight = calls.len();
        let future = Box::pin(async move {
            let mut failures = Vec::new();
            for call in futures_util::future::join_all(calls).await {
                answers.extend(call.answer.frame);
                failures.extend(call.answer.failures);
            }
            Answer { frame: (!answers.is_empty()).then(|| wire::batch(&answers)), failures }
        });
        self.launch(Running { key: None, weight, span: Span::none(), future: Some(future), waker: None });
    }
}

/// True for frames that take no call slot: responses (a running handler may be
/// waiting for one) and cancellations (which free slots), alone or in a batch.
fn needs_no_slot(frame: &wire::Frame<'_>) -> bool {
    fn slot_free(message: &wire::Message<'_>) -> bool {
        match message {
            wire::Message::Response { .. } | wire::Message::BadResponse { .. } => true,
            wire::Message::Request { method, .. } | wire::Message::Notification { method, .. } => {
                method == wire::CANCEL_METHOD
            }
            wire::Message::Invalid { .. } => false,
        }
    }
    match frame {
        wire::Frame::Single(message) => slot_free(message),
        wire::Frame::Batch(items) => items.iter().all(|item| slot_free(&wire::classify(item))),
        wire::Frame::ParseError | wire::Frame::BatchTooLarge => false,
    }
}

/// Leaves the hub and fails waiting calls when the connection ends, also when
/// the task ends abnormally (a panic in a user's `Drop` or `Serialize`, or the
/// runtime shutting down), so no connection lingers in a hub.
struct Teardown<F: FnOnce(&CloseReason)> {
    peer: Peer,
    on_end: Option<F>,
}

impl<F: FnOnce(&CloseReason)> Teardown<F> {
    fn finish(&mut self, reason: CloseReason) {
        if let Some(on_end) = self.on_end.take() {
            on_end(&reason);
            self.peer.shared().mark_closed(reason);
        }
    }
}

impl<F: FnOnce(&CloseReason)> Drop for Teardown<F> {
    fn drop(&mut self) {
        self.finish(CloseReason::Transport("the connection task ended abnormally".into()));
    }
}

/// The bytes of `part` (a slice of `text`) without copying them.
fn slice_of(text: &Utf8Bytes, part: &str) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let frame = Bytes::from(text.clone());
    match start.checked_add(part.len()) {
        Some(end) if end <= frame.len() => frame.slice(start..end),
        _ => Bytes::copy_from_slice(part.as_bytes()),
    }
}

/// The most of an unknown method's name echoed back in -32601's `data`.
const ECHOED_NAME: usize = 256;

/// `name`, cut to [`ECHOED_NAME`] bytes on a character boundary (a peer's
/// megabyte-long method name is not worth sending back).
fn echo(name: &str) -> &str {
    let mut end = name.len().min(ECHOED_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A jsonrpsee response as our frame, with our exact id put back if jsonrpsee could not hold it.
fn jsonrpsee_frame(id: &RequestId, response: MethodResponse) -> String {
    let json = String::from(Box::<str>::from(response.into_json()));
    if id.to_jsonrpsee().is_some() {
        return json;
    }
    match serde_json::from_str::<&RawValue>(&json).map(wire::classify) {
        Ok(wire::Message::Response { outcome: Ok(result), .. }) => wire::success(id, &result),
        Ok(wire::Message::Response { outcome: Err(error), .. }) => match wire::error_object(error) {
            Ok(object) => wire::failure(id, &object),
            Err(_) => json,
        },
        _ => json,
    }
}

/// The close code for a read error that is the peer's fault (RFC 6455 section 7.4.1).
fn close_code_for(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Capacity(_) => Some((1009, "message too big")),
        WsError::Utf8(_) => Some((1007, "invalid UTF-8 in a text frame")),
        WsError::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

/// What is left of the close handshake once the loop has stopped.
#[derive(Clone, Copy)]
enum CloseHandshake {
    /// The peer closed: send our answering close (queued by the socket).
    Answer,
    /// We closed: wait for the peer's answering close.
    AwaitAnswer,
    /// Nothing: the socket failed, or we gave up on the peer.
    None,
}

impl CloseHandshake {
    fn after(ended: &Ended) -> Self {
        match ended {
            Ended::ByPeer(_) => CloseHandshake::Answer,
            Ended::ByUs(_) => CloseHandshake::AwaitAnswer,
            Ended::Abandoned(_) | Ended::Transport(_) | Ended::Eof => CloseHandshake::None,
        }
    }

    /// Finishes the close handshake, within [`CLOSE_TIMEOUT`].
    async fn finish<T: Transport>(self, transport: &mut T) {
        let finish = async {
            match self {
                CloseHandshake::Answer => {
                    let _ = transport.close().await;
                }
                CloseHandshake::AwaitAnswer => {
                    let _ = transport.flush().await;
                    // Wait for the peer's answering close (or the end of the stream).
                    while let Some(Ok(_)) = transport.next().await {}
                }
                CloseHandshake::None => {}
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, finish).await;
    }
}
