//! The consuming side: [`Incoming`], a stream whose values come from the
//! peer as it asks for them.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::scope;
use crate::error::Error;
use crate::peer::{Peer, Reply};

type Asking = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>;

/// A sequence the peer sends: what a contract method takes for a stream
/// parameter, and what a stub returns for a stream result. A
/// [`futures::Stream`](futures_util::Stream) of `Result<T, Error>`.
///
/// It asks the peer for values only as it is polled, one `$/enumerator/next`
/// at a time, each answered with a batch; the next ask goes out once half
/// of the last batch is read, so the next batch travels while the rest is.
/// A consumer that stops polling stops asking, and so stops the producer,
/// holding at most about two batches. A producer's error arrives as one `Err`
/// ([`Error::Rpc`] with its error object), a closed connection as
/// `Err(Error::Closed)`; either ends the stream. Dropping it before the end
/// tells the producer to stop (`$/enumerator/dispose`). An ask has no
/// deadline (a live feed may wait long for its next value): bound a wait
/// with `tokio::time::timeout` around `next()` where that matters.
pub struct Incoming<T> {
    /// `None` once the producer holds nothing for us (the end, an error, or
    /// no token to begin with).
    remote: Option<Remote>,
    buffered: VecDeque<T>,
    /// The producer said no values follow those buffered.
    finished: bool,
    /// Ask again once no more than this many values are buffered: half the
    /// last batch.
    low_water: usize,
    asking: Option<Asking>,
    /// Yielded once, after the buffered values; the stream ends after it.
    failure: Option<Error>,
    _values: PhantomData<fn() -> T>,
}

struct Remote {
    peer: Peer,
    token: Box<RawValue>,
}

/// An answer to `$/enumerator/next`.
#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Values<T> {
    values: Vec<T>,
    #[serde(default)]
    finished: bool,
}

impl<T> Incoming<T> {
    /// Tells the producer we are done, once. Sent after the end too: a .NET
    /// producer keeps a finished enumerator until it is disposed of.
    fn dispose(&mut self) {
        self.asking = None;
        if let Some(Remote { peer, token }) = self.remote.take() {
            peer.shared().dispose_stream(&token);
        }
    }
}

impl<T: DeserializeOwned> Incoming<T> {
    fn on_values(&mut self, reply: Result<Reply, Error>) {
        match reply.and_then(Reply::decode::<Values<T>>) {
            // An empty batch that is not the end would have us ask forever.
            Ok(Values { values, finished }) => {
                self.finished = finished || values.is_empty();
                self.low_water = values.len() / 2;
                self.buffered.extend(values);
            }
            Err(error) => {
                self.failure = Some(error);
                self.finished = true;
            }
        }
    }
}

impl<T: DeserializeOwned> futures_util::Stream for Incoming<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.asking.is_none() && !this.finished && this.buffered.len() <= this.low_water {
                match &this.remote {
                    Some(remote) => this.asking = Some(remote.peer.ask_next(&remote.token)),
                    None => this.finished = true,
                }
            }
            if let Some(asking) = &mut this.asking
                && let Poll::Ready(reply) = asking.as_mut().poll(cx)
            {
                this.asking = None;
                this.on_values(reply);
                continue;
            }
            if let Some(value) = this.buffered.pop_front() {
                return Poll::Ready(Some(Ok(value)));
            }
            if this.asking.is_some() {
                return Poll::Pending;
            }
            // Finished, and everything buffered is read.
            this.dispose();
            return Poll::Ready(this.failure.take().map(Err));
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let upper = (self.finished && self.failure.is_none()).then_some(self.buffered.len());
        (self.buffered.len(), upper)
    }
}

// Nothing in it is pinned: values are moved out as they are yielded.
impl<T> Unpin for Incoming<T> {}

impl<T> Drop for Incoming<T> {
    fn drop(&mut self) {
        self.dispose();
    }
}

impl<T> fmt::Debug for Incoming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("token", &self.remote.as_ref().map(|r| r.token.get()))
            .field("buffered", &self.buffered.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// The message that carries the stream: `{"token": T, "values": [...]}`
/// (either member may be missing), or StreamJsonRpc's bare token.
impl<'de, T: DeserializeOwned> Deserialize<'de> for Incoming<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(bound = "T: DeserializeOwned")]
        struct Carried<T> {
            #[serde(default)]
            token: Present,
            values: Option<Vec<T>>,
        }
        /// A member that may be missing, told apart from one that is `null`.
        #[derive(Default)]
        struct Present(Option<Box<RawValue>>);
        impl<'de> Deserialize<'de> for Present {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Box::<RawValue>::deserialize(deserializer).map(|raw| Present(Some(raw)))
            }
        }
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get().trim_start();
        let (token, values) = match text.as_bytes().first() {
            Some(b'{') => match serde_json::from_str::<Carried<T>>(text) {
                // An object that is neither: the token itself.
                Ok(Carried { token: Present(None), values: None }) => (Some(raw), None),
                Ok(Carried { token: Present(token), values }) => (token, values),
                Err(e) => return Err(D::Error::custom(e)),
            },
            Some(b'n') => return Err(D::Error::custom("a stream's token may not be null")),
            // StreamJsonRpc's bare token.
            _ => (Some(raw), None),
        };
        // A null token is no token: the values are all of it.
        let token = token.filter(|token| token.get() != "null");
        let remote = match token {
            None => None,
            Some(token) => match scope::connection() {
                Some(shared) => Some(Remote { peer: Peer::from_shared(shared), token }),
                None => return Err(D::Error::custom("a wsduplex::Incoming is read only from a wsduplex connection")),
            },
        };
        Ok(Incoming {
            finished: remote.is_none(),
            low_water: 0,
            remote,
            buffered: values.unwrap_or_default().into(),
            asking: None,
            failure: None,
            _values: PhantomData,
        })
    }
}
