//! What the driver does with each frame it reads: responses go to the calls
//! waiting for them, requests and notifications start handlers (or are
//! parked, or refused, at the call limit), `$/cancelRequest` stops one, and
//! batches are run together and answered as one.

use bytes::Bytes;
use jsonrpsee_types::ErrorObjectOwned;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::Span;

use super::{CloseReason, Driver, Ended, RATE_LIMITED, Running, ShowId, Transport, close_frame};
use crate::dispatch::{Answer, Handler, IncomingCall, Reached};
use crate::error::codes;
use crate::metrics;
use crate::peer::Reply;
use crate::rate_limit::Verdict;
use crate::stream;
use crate::wire::{self, RequestId};

/// The most bytes of frames a connection parks while at its call limit
/// (soft by one frame: one frame is parked whatever its size).
pub(super) const PARKED_BYTES: usize = 4 << 20;

/// What a parked frame costs besides its bytes, so that many tiny frames
/// also reach the bound.
const PARKED_OVERHEAD: usize = 64;

/// A frame read while the connection was at its call limit, parsed once:
/// what its turn needs, owned (so it keeps no read buffer, and is not
/// parsed again when its turn comes).
pub(super) struct Parked {
    frame: ParkedFrame,
    /// What it counts against the parking bound: its frame's bytes and [`PARKED_OVERHEAD`].
    cost: usize,
}

enum ParkedFrame {
    /// One message.
    Single(ParkedEntry),
    /// A batch's entries, but for its responses (handed over at once).
    Batch(Vec<ParkedEntry>),
}

/// A message that waits for a slot.
enum ParkedEntry {
    /// A request (its id also for `$/cancelRequest`) or a notification.
    Call { id: Option<RequestId>, method: Box<str>, params: Option<Box<RawValue>> },
    /// The answer to one that gets it at once: not JSON, a batch too large,
    /// an invalid message.
    Answer(String),
}

/// A frame as the driver handles it: its batch's entries classified, once.
enum Classified<'a> {
    /// One message, and its JSON (the whole frame).
    Single(wire::Message<'a>, &'a str),
    /// A batch's messages, each with its JSON.
    Batch(Vec<(wire::Message<'a>, &'a str)>),
    ParseError,
    BatchTooLarge,
}

impl<'a> Classified<'a> {
    fn of(frame: wire::Frame<'a>, text: &'a str) -> Self {
        match frame {
            wire::Frame::Single(message) => Classified::Single(message, text),
            wire::Frame::Batch(items) => {
                Classified::Batch(items.into_iter().map(|item| (wire::classify(item), item.get())).collect())
            }
            wire::Frame::ParseError => Classified::ParseError,
            wire::Frame::BatchTooLarge => Classified::BatchTooLarge,
        }
    }

    /// The requests and notifications in it (what a rate limit counts);
    /// a frame that is not JSON counts as one.
    fn messages(&self) -> usize {
        let counted = |message: &wire::Message<'_>| {
            !matches!(message, wire::Message::Response { .. } | wire::Message::BadResponse { .. })
        };
        match self {
            Classified::Single(message, _) => usize::from(counted(message)),
            Classified::Batch(entries) => entries.iter().filter(|(message, _)| counted(message)).count(),
            Classified::ParseError | Classified::BatchTooLarge => 1,
        }
    }

    /// True for frames that take no call slot: responses (a running handler
    /// may be waiting for one) and cancellations (which free slots), alone or
    /// in a batch.
    fn needs_no_slot(&self) -> bool {
        fn slot_free(message: &wire::Message<'_>) -> bool {
            match message {
                wire::Message::Response { .. } | wire::Message::BadResponse { .. } => true,
                wire::Message::Request { method, .. } | wire::Message::Notification { method, .. } => {
                    takes_no_slot(method)
                }
                wire::Message::Invalid { .. } => false,
            }
        }
        match self {
            Classified::Single(message, _) => slot_free(message),
            Classified::Batch(entries) => entries.iter().all(|(message, _)| slot_free(message)),
            Classified::ParseError | Classified::BatchTooLarge => false,
        }
    }
}

/// Why a frame's requests are refused.
#[derive(Clone, Copy, Debug)]
enum Refused {
    /// The connection runs all the calls it may, and its parking is full.
    Busy,
    /// The peer is over its rate limit.
    RateLimited,
}

impl Refused {
    /// Messages handled all the same: at the call limit those that take no
    /// slot; over the rate limit those that end work rather than start it.
    fn spares(self, method: &str) -> bool {
        match self {
            Refused::Busy => takes_no_slot(method),
            Refused::RateLimited => {
                method == wire::CANCEL_METHOD || (stream::is_control(method) && method != stream::NEXT_METHOD)
            }
        }
    }

    fn dropped(self) -> metrics::Dropped {
        match self {
            Refused::Busy => metrics::Dropped::Busy,
            Refused::RateLimited => metrics::Dropped::RateLimit,
        }
    }

    fn error(self) -> ErrorObjectOwned {
        match self {
            Refused::Busy => crate::error::server_busy(),
            Refused::RateLimited => crate::error::rate_limited(),
        }
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

impl<T: Transport, H: Handler> Driver<T, H> {
    /// Handles parked frames, in order, while there are free call slots;
    /// true if it handled any.
    pub(super) fn unpark(&mut self) -> bool {
        let mut handled = false;
        while self.in_flight < self.max_in_flight {
            let Some(Parked { frame, cost }) = self.parked.pop_front() else { break };
            self.parked_bytes -= cost;
            handled = true;
            match frame {
                ParkedFrame::Single(entry) => {
                    let action = self.resume(entry);
                    self.act(action);
                }
                ParkedFrame::Batch(entries) => {
                    let actions = entries.into_iter().map(|entry| self.resume(entry)).collect();
                    self.run_batch(actions);
                }
            }
        }
        handled
    }

    /// Parks `frame` (`bytes` long, part of `text`), owning what its turn
    /// needs; a response in it goes to its caller now (it needs no slot).
    fn park(&mut self, frame: Classified<'_>, bytes: usize, text: &Utf8Bytes) {
        let frame = match frame {
            Classified::Single(message, raw) => match self.entry(message, raw, text) {
                Some(entry) => ParkedFrame::Single(entry),
                None => return,
            },
            Classified::Batch(entries) => ParkedFrame::Batch(
                entries.into_iter().filter_map(|(message, raw)| self.entry(message, raw, text)).collect(),
            ),
            Classified::ParseError => ParkedFrame::Single(ParkedEntry::Answer(parse_error())),
            Classified::BatchTooLarge => ParkedFrame::Single(ParkedEntry::Answer(batch_too_large(self.max_batch_len))),
        };
        let cost = bytes + PARKED_OVERHEAD;
        self.parked_bytes += cost;
        self.parked.push_back(Parked { frame, cost });
    }

    /// What parking keeps of a message; a response goes to its caller now
    /// instead (it needs no slot, and a handler may be waiting for it).
    fn entry(&mut self, message: wire::Message<'_>, raw: &str, text: &Utf8Bytes) -> Option<ParkedEntry> {
        Some(match message {
            wire::Message::Request { id, method, params } => {
                ParkedEntry::Call { id: Some(id), method: Box::from(&*method), params: params.map(ToOwned::to_owned) }
            }
            wire::Message::Notification { method, params } => {
                ParkedEntry::Call { id: None, method: Box::from(&*method), params: params.map(ToOwned::to_owned) }
            }
            wire::Message::Invalid { id, reason } => ParkedEntry::Answer(invalid_request(&id, reason)),
            response @ (wire::Message::Response { .. } | wire::Message::BadResponse { .. }) => {
                self.on_single(response, raw, text);
                return None;
            }
        })
    }

    /// What a parked message asks, now that its turn has come.
    fn resume(&mut self, entry: ParkedEntry) -> Action {
        match entry {
            ParkedEntry::Call { id, method, params } => self.start(id, &method, params.as_deref()),
            ParkedEntry::Answer(frame) => Action::Reply(frame),
        }
    }

    /// Does what a message asks.
    fn act(&mut self, action: Action) {
        match action {
            Action::Nothing => {}
            Action::Reply(frame) => self.reply(frame),
            Action::Run(running) => self.launch(running),
        }
    }

    /// Handles one message; `Some` when it ends the connection.
    pub(super) fn on_message(&mut self, message: Message) -> Option<Ended> {
        if let (Some(idle), Message::Text(_) | Message::Binary(_)) = (&mut self.idle, &message) {
            idle.active();
        }
        match message {
            Message::Text(text) => self.on_text(text),
            Message::Binary(data) => match Utf8Bytes::try_from(data) {
                Ok(text) => self.on_text(text),
                Err(_) => self.reply(parse_error()),
            },
            Message::Close(frame) => return Some(Ended::ByPeer(frame)),
            // The socket answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        None
    }

    /// Handles a frame now, parks it while the connection is at its call
    /// limit, or refuses it when even the parking is full or the peer is
    /// over its rate limit.
    fn on_text(&mut self, text: Utf8Bytes) {
        // A response in the usual form goes to its caller without being parsed here.
        if let Some(id) = wire::response_prefix_id(&text) {
            let reply = Reply(text.into());
            if let Err(Reply(response)) = self.shared.pending.resolve(id, reply) {
                self.orphaned(id, &response);
            }
            return;
        }
        let free = self.in_flight < self.max_in_flight && self.parked.is_empty();
        if free && self.limiter.is_none() {
            return self.on_json(&text);
        }
        let frame = Classified::of(wire::parse_frame(&text, self.max_batch_len), text.as_str());
        if let Some(limiter) = &mut self.limiter {
            let messages = frame.messages();
            let verdict = if messages == 0 { Verdict::Admit } else { limiter.admit(messages, text.len()) };
            match verdict {
                Verdict::Admit => {}
                Verdict::Refuse => return self.refuse_frame(frame, &text, Refused::RateLimited),
                Verdict::Close => {
                    tracing::info!(conn = %self.shared.id, "closing a connection that kept sending over its rate limit");
                    let code = RATE_LIMITED.0;
                    return self.start_closing(close_frame(RATE_LIMITED), CloseReason::ClosedLocally { code }, false);
                }
            }
        }
        if free || frame.needs_no_slot() {
            return self.on_frame(frame, &text);
        }
        // Soft by one frame, like `pause`: whatever it reads while not full,
        // it parks; a probe's frame may go up to twice the bound.
        let bound = if self.probing { 2 * PARKED_BYTES } else { PARKED_BYTES };
        if self.parked_bytes < bound {
            return self.park(frame, text.len(), &text);
        }
        self.refuse_frame(frame, &text, Refused::Busy);
    }

    /// Answers a frame's requests with the refusal `why` names, and drops
    /// its notifications; what needs no slot (responses, cancellations) is
    /// still handled, as is what frees work when rate limited.
    fn refuse_frame(&mut self, frame: Classified<'_>, text: &Utf8Bytes, why: Refused) {
        match frame {
            Classified::Single(message, raw) => {
                if let Some(refusal) = self.refuse(message, raw, text, why) {
                    self.reply(refusal);
                }
            }
            Classified::Batch(entries) => {
                let refusals: Vec<String> =
                    entries.into_iter().filter_map(|(message, raw)| self.refuse(message, raw, text, why)).collect();
                if !refusals.is_empty() {
                    self.reply(wire::batch(&refusals));
                }
            }
            other => self.on_frame(other, text),
        }
    }

    /// Answers a message that arrived while the connection could take no more
    /// calls, or over the rate limit: requests get -32009 or -32029.
    fn refuse(&mut self, message: wire::Message<'_>, raw: &str, text: &Utf8Bytes, why: Refused) -> Option<String> {
        match message {
            wire::Message::Request { id, method, .. } if !why.spares(&method) => {
                tracing::debug!(conn = %self.shared.id, %method, ?why, "refusing a request");
                self.shared.meters.refused(&method);
                Some(wire::failure(&id, &why.error()))
            }
            wire::Message::Notification { method, .. } if !why.spares(&method) => {
                match why {
                    Refused::Busy => tracing::warn!(conn = %self.shared.id, %method, "busy: dropping a notification"),
                    Refused::RateLimited => {
                        tracing::debug!(conn = %self.shared.id, %method, "rate limited: dropping a notification")
                    }
                }
                self.shared.meters.dropped(why.dropped(), 1);
                None
            }
            // Responses, and the messages `why` spares.
            other => match self.on_single(other, raw, text) {
                Action::Reply(frame) => Some(frame),
                Action::Nothing | Action::Run(_) => None,
            },
        }
    }

    fn on_json(&mut self, text: &Utf8Bytes) {
        self.on_frame(Classified::of(wire::parse_frame(text, self.max_batch_len), text.as_str()), text);
    }

    fn on_frame(&mut self, frame: Classified<'_>, text: &Utf8Bytes) {
        match frame {
            Classified::ParseError => self.reply(parse_error()),
            Classified::BatchTooLarge => self.reply(batch_too_large(self.max_batch_len)),
            Classified::Single(message, raw) => {
                let action = self.on_single(message, raw, text);
                self.act(action);
            }
            Classified::Batch(entries) => {
                let actions = entries.into_iter().map(|(message, raw)| self.on_single(message, raw, text)).collect();
                self.run_batch(actions);
            }
        }
    }

    /// Handles one message: `raw` is its JSON, part of the frame `text`.
    fn on_single(&mut self, message: wire::Message<'_>, raw: &str, text: &Utf8Bytes) -> Action {
        match message {
            wire::Message::Request { id, method, params } => {
                if method == wire::CANCEL_METHOD {
                    self.cancel(params);
                    return Action::Reply(wire::success(&id, &()));
                }
                if stream::is_control(&method) {
                    return self.on_stream(Some(id), &method, params);
                }
                self.start(Some(id), &method, params)
            }
            wire::Message::Notification { method, params } => {
                if method == wire::CANCEL_METHOD {
                    self.cancel(params);
                    return Action::Nothing;
                }
                if stream::is_control(&method) {
                    return self.on_stream(None, &method, params);
                }
                self.start(None, &method, params)
            }
            wire::Message::Response { id, .. } => {
                self.route_response(id, raw, text);
                Action::Nothing
            }
            wire::Message::BadResponse { reason } => {
                tracing::debug!(conn = %self.shared.id, reason, "dropping a malformed response");
                Action::Nothing
            }
            wire::Message::Invalid { id, reason } => Action::Reply(invalid_request(&id, reason)),
        }
    }

    /// Hands a response (`raw`, part of `text`) to the call waiting for it,
    /// as the fast path in `on_text` does: the call decodes it.
    fn route_response(&self, id: &RawValue, raw: &str, text: &Utf8Bytes) {
        let Some(call) = wire::own_call_id(id) else {
            tracing::debug!(conn = %self.shared.id, id = id.get(), "dropping a response to an id this side never used");
            return;
        };
        if let Err(Reply(response)) = self.shared.pending.resolve(call, Reply(slice_of(text, raw))) {
            self.orphaned(call, &response);
        }
    }

    /// A response no call waits for any more (its caller gave up just before
    /// it came): a stream in its result would never be read, so its producer
    /// is told at once rather than when the connection ends.
    fn orphaned(&self, id: u64, response: &[u8]) {
        tracing::debug!(conn = %self.shared.id, id, "dropping a response no call waits for");
        // Only for a call this side made: a peer's stray responses get nothing back.
        if !self.shared.issued(id) {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Carrier {
            token: Box<RawValue>,
        }
        if let Ok(Ok(Carrier { token })) = wire::decode_response::<Carrier>(response)
            && token.get() != "null"
        {
            self.shared.dispose_stream(&token);
        }
    }

    /// Starts an incoming call; answers -32601 at once if no method has the
    /// name, and -32009 while shutting down.
    fn start(&mut self, id: Option<RequestId>, method: &str, params: Option<&RawValue>) -> Action {
        if self.draining.is_some() {
            tracing::debug!(conn = %self.shared.id, method, "shutting down: refusing a call");
            let Some(id) = id else {
                self.shared.meters.dropped(metrics::Dropped::Shutdown, 1);
                return Action::Nothing;
            };
            self.shared.meters.refused(method);
            let error = ErrorObjectOwned::owned(codes::SERVER_BUSY, "Server is shutting down", None::<()>);
            return Action::Reply(wire::failure(&id, &error));
        }
        let span = tracing::debug_span!("rpc.in", conn = %self.shared.id, method, id = %ShowId(&id));
        let key = id.clone();
        // Without middleware, dispatching tells whether the method exists.
        let found = |dispatched: bool| self.middleware.is_none().then_some(dispatched);
        let dispatched = {
            let _entered = span.enter();
            let call = IncomingCall { id, params, roles: self.roles.as_slice() };
            match (&self.handler, &self.middleware) {
                (Some(handler), None) => handler.dispatch(method, call),
                (Some(handler), Some(chain)) => {
                    let (chain, info) = &**chain;
                    Ok(chain.dispatch(handler, self.shared.id, info, method, call))
                }
                (None, _) => Err(call),
            }
        };
        match dispatched {
            Ok(future) => {
                let meter = Some(self.shared.meters.incoming(&mut self.meters, method, found(true)));
                Action::Run(Running { key, weight: 1, span, future: Some(future), waker: None, meter })
            }
            Err(call) => {
                tracing::debug!(conn = %self.shared.id, method = wire::echo(method), "method not found");
                let error = wire::method_not_found(method);
                let answer = Answer::early(call.id.as_ref(), &error, Reached::NoSuchMethod);
                self.shared.meters.incoming(&mut self.meters, method, found(false)).answered(&answer);
                answer.frame.map_or(Action::Nothing, Action::Reply)
            }
        }
    }

    /// Answers the consumer of a stream we send: `next` runs until it has
    /// values (taking no call slot while it waits: each stream has at most
    /// one), `dispose` and `abort` drop the stream. A notification gets no
    /// answer, so `next` in one is ignored.
    fn on_stream(&mut self, id: Option<RequestId>, method: &str, params: Option<&RawValue>) -> Action {
        let token = match stream::named_token(params) {
            stream::Named::Missing => {
                let reason = "expected the stream's token: {\"token\": …} or […]";
                let error = ErrorObjectOwned::owned(codes::INVALID_PARAMS, "Invalid params", Some(reason));
                return id.map_or(Action::Nothing, |id| Action::Reply(wire::failure(&id, &error)));
            }
            stream::Named::Foreign => None,
            stream::Named::Token(token) => Some(token),
        };
        if method != stream::NEXT_METHOD {
            if let Some(token) = token {
                self.shared.streams.dispose(&token);
            }
            return id.map_or(Action::Nothing, |id| Action::Reply(wire::success(&id, &())));
        }
        let Some(id) = id else { return Action::Nothing };
        let asked = match token {
            // Room left in the queue bounds the answer, so asks from a peer
            // that does not read cannot fill memory 64 KiB at a time.
            Some(token) => self.shared.streams.ask(id.clone(), token, self.shared.outbox.room_bytes()),
            None => Err(stream::no_such_stream()),
        };
        match asked {
            Ok(future) => {
                let span = tracing::trace_span!("stream.next", conn = %self.shared.id);
                Action::Run(Running { key: Some(id), weight: 0, span, future: Some(future), waker: None, meter: None })
            }
            Err(error) => Action::Reply(wire::failure(&id, &error)),
        }
    }

    /// Starts running a call or batch, taking its slots.
    fn launch(&mut self, running: Running) {
        self.in_flight += running.weight;
        self.running.push(running);
    }

    fn cancel(&mut self, params: Option<&RawValue>) {
        let Some(target) = wire::cancel_target(params) else {
            tracing::debug!(conn = %self.shared.id, "ignoring $/cancelRequest without a usable id");
            return;
        };
        let found = self.running.iter_mut().find(|r| r.future.is_some() && r.key.as_ref() == Some(&target));
        if let Some(running) = found {
            running.future = None;
            if let Some(meter) = running.meter.take() {
                meter.cancelled();
            }
            if let Some(waker) = running.waker.take() {
                waker.wake();
            }
        } else if let Some(at) = self.parked.iter().position(|parked| parked.request() == Some(&target)) {
            // Not started yet: it never will be.
            if let Some(Parked { cost, frame }) = self.parked.remove(at) {
                self.parked_bytes -= cost;
                if let ParkedFrame::Single(ParkedEntry::Call { method, .. }) = frame {
                    self.shared.meters.cancelled(&method);
                }
            }
        } else {
            return;
        }
        tracing::debug!(conn = %self.shared.id, id = %target, "request cancelled by the peer");
        let error = ErrorObjectOwned::owned(codes::REQUEST_CANCELLED, "Request cancelled", None::<()>);
        self.reply(wire::failure(&target, &error));
    }

    /// Runs a batch's calls together, and answers the batch as one.
    fn run_batch(&mut self, actions: Vec<Action>) {
        let mut answers = Vec::new();
        let mut calls = Vec::new();
        for action in actions {
            match action {
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
        // A stream's ask in the batch takes no slot, as on its own.
        let weight = calls.iter().map(|call| call.weight).sum();
        let future = Box::pin(async move {
            let mut failures = Vec::new();
            for call in futures_util::future::join_all(calls).await {
                answers.extend(call.answer.frame);
                failures.extend(call.answer.failures);
            }
            Answer { failures, ..Answer::frame((!answers.is_empty()).then(|| wire::batch(&answers))) }
        });
        self.launch(Running { key: None, weight, span: Span::none(), future: Some(future), waker: None, meter: None });
    }
}

/// Messages answered without a call slot: cancellations, which free slots,
/// and the stream protocol's, which the open streams bound.
fn takes_no_slot(method: &str) -> bool {
    method == wire::CANCEL_METHOD || stream::is_control(method)
}

/// The bytes of `part` (a slice of `text`) without copying them.
pub(super) fn slice_of(text: &Utf8Bytes, part: &str) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let frame = Bytes::from(text.clone());
    match start.checked_add(part.len()) {
        Some(end) if end <= frame.len() => frame.slice(start..end),
        _ => Bytes::copy_from_slice(part.as_bytes()),
    }
}

impl Parked {
    /// The id of the request it is, for `$/cancelRequest`.
    fn request(&self) -> Option<&RequestId> {
        match &self.frame {
            ParkedFrame::Single(ParkedEntry::Call { id, .. }) => id.as_ref(),
            _ => None,
        }
    }
}

/// The answer to a frame that is not JSON (-32700, with a null id).
fn parse_error() -> String {
    let error = ErrorObjectOwned::owned(codes::PARSE_ERROR, "Parse error", None::<()>);
    wire::failure(&RequestId::Null, &error)
}

/// The answer to a batch of more than `limit` entries (-32010, with a null id).
fn batch_too_large(limit: usize) -> String {
    let message = format!("Batch too large: at most {limit} entries");
    wire::failure(&RequestId::Null, &ErrorObjectOwned::owned(codes::BATCH_TOO_LARGE, message, None::<()>))
}

/// The answer to an invalid message (-32600; the reason in `data`).
fn invalid_request(id: &RequestId, reason: &'static str) -> String {
    wire::failure(id, &ErrorObjectOwned::owned(codes::INVALID_REQUEST, "Invalid request", Some(reason)))
}
