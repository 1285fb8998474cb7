//! The producing side: [`Outgoing`], what a method returns (or a caller
//! passes) to send a sequence, and the per-connection registry that answers
//! the consumer's `$/enumerator/next` and `$/enumerator/dispose`.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::{BoxStream, StreamExt};
use jsonrpsee_types::ErrorObjectOwned;
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};

use super::Settings;
use super::scope::{self, NotHere};
use crate::dispatch::{Answer, HandlerFuture};
use crate::sync::lock;
use crate::wire::{self, RequestId};

/// The most bytes of values one `$/enumerator/next` answer carries (soft by
/// one value): big enough that small values travel thousands at a time,
/// small enough for any peer's message limit.
pub(crate) const MAX_BATCH_BYTES: usize = 64 << 10;

/// A sequence of values sent to the peer as it asks for them: what a contract
/// method returns for a stream result, or what a caller passes for a stream
/// parameter (the peer receives an [`Incoming`](super::Incoming)).
///
/// Made from any [`futures::Stream`](futures_util::Stream) with [`Outgoing::new`]
/// (or one of `Result`s with [`Outgoing::from_results`], whose first error ends
/// the sequence with that error object), from a channel's receiver with
/// `From`, or from an iterator with [`Outgoing::iter`]. An `async_stream`-style
/// generator is a `futures::Stream` too.
///
/// It travels as a token (StreamJsonRpc's `IAsyncEnumerable` protocol, see the
/// [wire guide](crate::codes)). Nothing is produced until the peer asks, and
/// at most [`max_read_ahead`](Outgoing::max_read_ahead) values wait unasked, so
/// a consumer that stops asking stops the producer. The stream is dropped
/// when the peer disposes of it or reads it to the end, when the call that
/// carried it as a parameter completes, or when the connection closes.
///
/// ```
/// # async fn demo() {
/// let numbers = wsduplex::Outgoing::iter(0..1_000_000u64).min_batch_size(64);
/// # let _ = numbers;
/// let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
/// let lines: wsduplex::Outgoing<String> = rx.into();
/// # drop((tx, lines));
/// # }
/// ```
pub struct Outgoing<T> {
    /// Taken when serialized: a stream is sent once.
    unsent: Mutex<Option<Unsent<T>>>,
}

struct Unsent<T> {
    items: BoxStream<'static, Result<T, ErrorObjectOwned>>,
    settings: Settings,
    /// Values read by [`Outgoing::prefetch`], sent with the token.
    prefetched: Vec<T>,
    /// Set by [`Outgoing::prefetch`] when it saw the end (or an error).
    ended: Option<Option<ErrorObjectOwned>>,
}

impl<T: Send + 'static> Outgoing<T> {
    /// Sends the items of `stream`.
    pub fn new(stream: impl futures_util::Stream<Item = T> + Send + 'static) -> Self {
        Outgoing::from_boxed(stream.map(Ok).boxed())
    }

    /// Sends the `Ok` items of `stream`; the first `Err` ends the sequence,
    /// and the consumer receives it as the error object it converts into.
    pub fn from_results<E: Into<ErrorObjectOwned>>(
        stream: impl futures_util::Stream<Item = Result<T, E>> + Send + 'static,
    ) -> Self {
        Outgoing::from_boxed(stream.map(|item| item.map_err(Into::into)).boxed())
    }

    /// Sends the items of `iter`, produced as the consumer asks.
    pub fn iter<I>(iter: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Outgoing::new(futures_util::stream::iter(iter))
    }

    fn from_boxed(items: BoxStream<'static, Result<T, ErrorObjectOwned>>) -> Self {
        let unsent = Unsent { items, settings: Settings::default(), prefetched: Vec::new(), ended: None };
        Outgoing { unsent: Mutex::new(Some(unsent)) }
    }

    fn settings(self, f: impl FnOnce(&mut Settings)) -> Self {
        if let Some(unsent) = lock(&self.unsent).as_mut() {
            f(&mut unsent.settings);
        }
        self
    }

    /// Each answer to the consumer carries at least `count` values (fewer
    /// only at the end): StreamJsonRpc's `MinBatchSize`, 1 by default. Values
    /// ready at once always travel together, up to 64 KiB of them.
    pub fn min_batch_size(self, count: usize) -> Self {
        self.settings(|s| s.min_batch_size = count.max(1))
    }

    /// Produces up to `count` values ahead of the consumer's asking, in a task
    /// of their own: StreamJsonRpc's `MaxReadAhead`, 0 by default (values
    /// are produced only when asked for).
    pub fn max_read_ahead(self, count: usize) -> Self {
        self.settings(|s| s.max_read_ahead = count)
    }

    /// Reads up to `count` values now, to send with the token in the message
    /// that carries the stream (StreamJsonRpc's `WithPrefetchAsync`): the
    /// consumer has them without asking, and a sequence that ends within them
    /// needs no token at all.
    pub async fn prefetch(self, count: usize) -> Self {
        let mut unsent = lock(&self.unsent).take();
        if let Some(unsent) = &mut unsent {
            while unsent.ended.is_none() && unsent.prefetched.len() < count {
                match unsent.items.next().await {
                    Some(Ok(value)) => unsent.prefetched.push(value),
                    Some(Err(error)) => unsent.ended = Some(Some(error)),
                    None => unsent.ended = Some(None),
                }
            }
        }
        *lock(&self.unsent) = unsent;
        self
    }
}

impl<T: Send + 'static> From<tokio::sync::mpsc::Receiver<T>> for Outgoing<T> {
    /// Sends what the channel receives, until every sender is dropped.
    fn from(mut receiver: tokio::sync::mpsc::Receiver<T>) -> Self {
        Outgoing::new(futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
    }
}

impl<T> fmt::Debug for Outgoing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent = lock(&self.unsent).is_none();
        f.debug_struct("Outgoing").field("sent", &sent).finish_non_exhaustive()
    }
}

/// What a caller passes for a stream parameter: any `futures::Stream`, or a
/// [`Outgoing`] made with settings of its own.
pub trait IntoOutgoing<T> {
    /// The stream to send.
    fn into_outgoing(self) -> Outgoing<T>;
}

impl<T: Send + 'static, S: futures_util::Stream<Item = T> + Send + 'static> IntoOutgoing<T> for S {
    fn into_outgoing(self) -> Outgoing<T> {
        Outgoing::new(self)
    }
}

impl<T> IntoOutgoing<T> for Outgoing<T> {
    fn into_outgoing(self) -> Outgoing<T> {
        self
    }
}

/// On the wire: `{"token": …, "values": [prefetched…]}`, `values` left out
/// when none were prefetched; a sequence that ended in its prefetched values
/// (or with none) has no token. The token is registered on the connection the message goes to.
impl<T: Serialize + Send + 'static> Serialize for Outgoing<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(unsent) = lock(&self.unsent).take() else {
            return Err(S::Error::custom("a wsduplex::Outgoing is sent once; this one was sent already"));
        };
        let Unsent { items, settings, prefetched, ended } = unsent;
        let token = match ended {
            Some(None) => None,
            Some(Some(error)) => Some(register(Producer::failed(error))),
            None => Some(register(Producer::new(items, settings))),
        };
        let token = match token.transpose() {
            Ok(token) => token,
            Err(NotHere::NoConnection) => {
                return Err(S::Error::custom(
                    "a wsduplex::Outgoing travels only in a call or its result on a wsduplex connection \
                     (never in a notification, a hub's fan-out, or another transport)",
                ));
            }
            Err(NotHere::Refused(refusal)) => return Err(S::Error::custom(refusal.message())),
        };
        let mut map = serializer.serialize_map(None)?;
        if let Some(token) = &token {
            map.serialize_entry("token", token)?;
        }
        // Without a token the values are all of it, even none.
        if token.is_none() || !prefetched.is_empty() {
            map.serialize_entry("values", &prefetched)?;
        }
        map.end()
    }
}

fn register(producer: Producer) -> Result<String, NotHere> {
    scope::register(|shared| shared.streams.open(producer))
}

/// A stream on its way to the peer, its value type erased.
pub(crate) struct Producer {
    source: Option<Box<dyn Source>>,
    min_batch_size: usize,
    /// An error to answer the next ask with (it came after values already sent).
    failure: Option<ErrorObjectOwned>,
}

/// Produces values, each written as JSON.
trait Source: Send {
    /// Polls for the next value and appends its JSON to `out`.
    fn poll_write_next(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) -> Poll<Option<Result<(), ErrorObjectOwned>>>;
}

impl<T: Serialize + Send + 'static> Source for BoxStream<'static, Result<T, ErrorObjectOwned>> {
    fn poll_write_next(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) -> Poll<Option<Result<(), ErrorObjectOwned>>> {
        self.poll_next_unpin(cx).map(|item| {
            item.map(|value| {
                serde_json::to_writer(out, &value?).map_err(|e| {
                    ErrorObjectOwned::owned(
                        crate::codes::INTERNAL_ERROR,
                        format!("could not encode a stream value: {e}"),
                        None::<()>,
                    )
                })
            })
        })
    }
}

impl Producer {
    pub(super) fn new<T: Serialize + Send + 'static>(
        items: BoxStream<'static, Result<T, ErrorObjectOwned>>,
        settings: Settings,
    ) -> Producer {
        let items = match settings.max_read_ahead {
            0 => items,
            ahead => read_ahead(items, ahead),
        };
        Producer { source: Some(Box::new(items)), min_batch_size: settings.min_batch_size, failure: None }
    }

    /// A sequence whose prefetch ended in `error`: the first ask gets it.
    fn failed(error: ErrorObjectOwned) -> Producer {
        Producer { source: None, min_batch_size: 1, failure: Some(error) }
    }
}

/// Produces up to `ahead` values before they are asked for, in a task that
/// ends when the consumer side of the buffer is dropped.
fn read_ahead<T: Send + 'static>(
    mut items: BoxStream<'static, Result<T, ErrorObjectOwned>>,
    ahead: usize,
) -> BoxStream<'static, Result<T, ErrorObjectOwned>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(ahead);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                () = tx.closed() => return,
                item = items.next() => item,
            };
            let Some(item) = item else { return };
            let last = item.is_err();
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// The streams this side of one connection sends, by token.
pub(crate) struct Producers {
    state: Mutex<State>,
    limit: usize,
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    closed: bool,
}

enum Slot {
    /// Waiting to be asked.
    Idle(Producer),
    /// Answering an ask; disposing of it stops that.
    Busy(AbortHandle),
}

impl Producers {
    pub(crate) fn new(limit: usize) -> Self {
        Producers { state: Mutex::new(State::default()), limit }
    }

    /// Registers `producer` under a new unguessable token.
    pub(super) fn open(&self, producer: Producer) -> Result<String, ErrorObjectOwned> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(ErrorObjectOwned::owned(crate::codes::PEER_CLOSED, "The connection is closed", None::<()>));
        }
        if state.slots.len() >= self.limit {
            let message = format!("Too many open streams: at most {} per connection", self.limit);
            return Err(ErrorObjectOwned::owned(crate::codes::SERVER_BUSY, message, None::<()>));
        }
        let token = super::new_token();
        state.slots.insert(token.clone(), Slot::Idle(producer));
        Ok(token)
    }

    /// Drops the stream `token` (stopping an ask in progress); false if there was none.
    pub(crate) fn dispose(&self, token: &str) -> bool {
        let slot = lock(&self.state).slots.remove(token);
        match slot {
            Some(Slot::Busy(abort)) => abort.abort(),
            Some(Slot::Idle(producer)) => drop(producer),
            None => return false,
        }
        true
    }

    /// Drops the streams `tokens` (those a call's params carried, once it completed).
    pub(crate) fn release(&self, tokens: &[String]) {
        for token in tokens {
            self.dispose(token);
        }
    }

    /// Drops every stream, and registers none from now on.
    pub(crate) fn close(&self) {
        let slots = {
            let mut state = lock(&self.state);
            state.closed = true;
            std::mem::take(&mut state.slots)
        };
        for slot in slots.into_values() {
            if let Slot::Busy(abort) = slot {
                abort.abort();
            }
        }
    }

    /// Open streams (tests watch for leaks).
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).slots.len()
    }

    /// Starts answering `$/enumerator/next` for `token` with at most `budget`
    /// bytes of values past the first, or says why not (the error object to
    /// answer with).
    pub(crate) fn ask(
        self: &Arc<Self>,
        id: RequestId,
        token: String,
        budget: usize,
    ) -> Result<HandlerFuture, ErrorObjectOwned> {
        let (abort, registration) = AbortHandle::new_pair();
        let producer = {
            let mut state = lock(&self.state);
            let Some(slot) = state.slots.get_mut(&token) else {
                return Err(super::no_such_stream());
            };
            match std::mem::replace(slot, Slot::Busy(abort)) {
                Slot::Idle(producer) => producer,
                Slot::Busy(other) => {
                    *slot = Slot::Busy(other);
                    return Err(ErrorObjectOwned::owned(
                        crate::codes::INVALID_REQUEST,
                        "A $/enumerator/next for this token is already waiting",
                        None::<()>,
                    ));
                }
            }
        };
        let mut asking = Asking { producers: self.clone(), token, answered: false };
        Ok(Box::pin(async move {
            let pulled = Abortable::new(Batch::new(producer, budget), registration).await;
            asking.answered = true;
            let Asking { producers, token, .. } = &asking;
            let frame = match pulled {
                // Disposed of meanwhile (released with its call, say): cut short, not finished.
                Err(_aborted) => {
                    let error =
                        ErrorObjectOwned::owned(crate::codes::NO_SUCH_STREAM, "The stream was disposed of", None::<()>);
                    wire::failure(&id, &error)
                }
                Ok((producer, Ok(batch))) => {
                    producers.settle(token, producer, batch.finished);
                    wire::enumerator_values(&id, &batch.values, batch.finished)
                }
                Ok((producer, Err(error))) => {
                    producers.settle(token, producer, true);
                    wire::failure(&id, &error)
                }
            };
            Answer::frame(Some(frame))
        }))
    }

    /// Puts a producer back after an ask, or drops it if its sequence is
    /// over or it was disposed of meanwhile.
    fn settle(&self, token: &str, producer: Producer, over: bool) {
        let mut state = lock(&self.state);
        match state.slots.get_mut(token) {
            Some(slot @ Slot::Busy(_)) if !over => *slot = Slot::Idle(producer),
            Some(Slot::Busy(_)) => {
                state.slots.remove(token);
            }
            _ => {}
        }
    }
}

/// An ask in progress. Dropped before it is answered (`$/cancelRequest`, or
/// the connection ending), it took the producer with it: the stream is
/// disposed of, as StreamJsonRpc does when an ask is cancelled.
struct Asking {
    producers: Arc<Producers>,
    token: String,
    answered: bool,
}

impl Drop for Asking {
    fn drop(&mut self) {
        if !self.answered {
            self.producers.dispose(&self.token);
        }
    }
}

/// One answer to `$/enumerator/next`: at least `min_batch_size` values (fewer
/// only at the end), and then every value ready at once, up to its budget.
struct Batch {
    producer: Option<Producer>,
    /// The values' JSON, comma-separated.
    values: Vec<u8>,
    count: usize,
    /// Bytes of values past which it takes no more ([`MAX_BATCH_BYTES`], or
    /// less when the connection's queue is filling: a peer that asks without
    /// reading gets a value per ask).
    budget: usize,
}

struct Values {
    values: Vec<u8>,
    finished: bool,
}

impl Batch {
    fn new(producer: Producer, budget: usize) -> Self {
        Batch { producer: Some(producer), values: Vec::new(), count: 0, budget: budget.min(MAX_BATCH_BYTES) }
    }

    fn done(&mut self, finished: bool) -> Poll<(Producer, Result<Values, ErrorObjectOwned>)> {
        let producer = self.producer.take().expect("a batch completes once");
        Poll::Ready((producer, Ok(Values { values: std::mem::take(&mut self.values), finished })))
    }
}

impl std::future::Future for Batch {
    type Output = (Producer, Result<Values, ErrorObjectOwned>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(producer) = this.producer.as_mut() else { return Poll::Pending };
        if let Some(error) = producer.failure.take() {
            producer.source = None;
            let producer = this.producer.take().expect("checked above");
            return Poll::Ready((producer, Err(error)));
        }
        loop {
            let Some(source) = producer.source.as_mut() else { return this.done(true) };
            if this.count > 0 && this.values.len() >= this.budget {
                return this.done(false);
            }
            let mark = this.values.len();
            if this.count > 0 {
                this.values.push(b',');
            }
            match source.poll_write_next(cx, &mut this.values) {
                Poll::Ready(Some(Ok(()))) => this.count += 1,
                Poll::Ready(Some(Err(error))) => {
                    this.values.truncate(mark);
                    producer.source = None;
                    if this.count == 0 {
                        let producer = this.producer.take().expect("checked above");
                        return Poll::Ready((producer, Err(error)));
                    }
                    // The values come first; the next ask gets the error.
                    producer.failure = Some(error);
                    return this.done(false);
                }
                Poll::Ready(None) => {
                    this.values.truncate(mark);
                    producer.source = None;
                    return this.done(true);
                }
                Poll::Pending => {
                    this.values.truncate(mark);
                    if this.count >= producer.min_batch_size {
                        return this.done(false);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
