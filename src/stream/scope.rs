//! Which connection a stream being encoded or decoded belongs to.
//!
//! `Stream<T>` registers its producer on a connection when it is serialized,
//! and `Incoming<T>` needs a connection to pull from when it is deserialized;
//! serde gives neither a way to be told. So the engine marks the thread while
//! it encodes or decodes a message of one connection, and the two types read
//! the mark. Outside a mark, streams refuse to encode or decode.

use std::cell::RefCell;
use std::sync::Arc;

use jsonrpsee_types::ErrorObjectOwned;

use crate::connection::ConnectionId;
use crate::peer::Shared;

thread_local! {
    static CURRENT: RefCell<Option<Mark>> = const { RefCell::new(None) };
}

/// What the thread is doing for one connection.
struct Mark {
    shared: Arc<Shared>,
    /// Set while encoding a request's params or a call's result: the tokens
    /// of the streams registered meanwhile. `None` while only serving (the
    /// driver polling handlers, or decoding their params).
    encoding: Option<Encoding>,
    /// True while the connection's driver runs its handlers.
    serving: bool,
}

#[derive(Default)]
struct Encoding {
    tokens: Vec<String>,
    /// Why a stream could not be registered (the open-stream limit).
    refusal: Option<ErrorObjectOwned>,
}

/// Restores the previous mark when dropped; marks nest. Not `Send`, so a
/// future cannot hold one across an `.await` (the mark is the thread's).
pub(crate) struct Scope {
    /// The mark to put back; `None` once put back.
    previous: Option<Option<Mark>>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Scope {
    fn enter(mark: Mark) -> Scope {
        Scope {
            previous: Some(CURRENT.with_borrow_mut(|current| current.replace(mark))),
            _not_send: std::marker::PhantomData,
        }
    }

    /// The driver of `shared`'s connection runs its handlers and decodes
    /// their params: an `Incoming<T>` in them pulls from this connection.
    pub(crate) fn serving(shared: &Arc<Shared>) -> Scope {
        Scope::enter(Mark { shared: shared.clone(), encoding: None, serving: true })
    }

    /// A message of `shared`'s connection is being encoded (a request) or a
    /// reply decoded: streams register and decode there.
    pub(crate) fn encoding(shared: &Arc<Shared>) -> Scope {
        let serving = serving_connection() == Some(shared.id);
        Scope::enter(Mark { shared: shared.clone(), encoding: Some(Encoding::default()), serving })
    }

    /// Like [`Scope::encoding`], on the connection the thread serves now (a
    /// handler's result); `None` outside a driver.
    pub(crate) fn encoding_result() -> Option<Scope> {
        let shared = with_current(|mark| mark.shared.clone())?;
        Some(Scope::encoding(&shared))
    }

    /// Ends the encoding: the tokens of the streams registered in it, and the
    /// refusal that stopped one, if any.
    pub(crate) fn finish(mut self) -> (Vec<String>, Option<ErrorObjectOwned>) {
        let encoding = CURRENT.with_borrow_mut(|current| current.as_mut().and_then(|mark| mark.encoding.take()));
        let Encoding { tokens, refusal } = encoding.unwrap_or_default();
        self.restore();
        (tokens, refusal)
    }

    fn restore(&mut self) {
        if let Some(previous) = self.previous.take() {
            CURRENT.with_borrow_mut(|current| *current = previous);
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.restore();
    }
}

fn with_current<R>(f: impl FnOnce(&mut Mark) -> R) -> Option<R> {
    CURRENT.with_borrow_mut(|current| current.as_mut().map(f))
}

/// The connection whose handlers this thread runs now, if any (their calls
/// on that connection take no turn: see `Peer::turn`).
pub(crate) fn serving_connection() -> Option<ConnectionId> {
    with_current(|mark| mark.serving.then_some(mark.shared.id)).flatten()
}

/// The connection a message is being decoded for, if any.
pub(crate) fn connection() -> Option<Arc<Shared>> {
    with_current(|mark| mark.shared.clone())
}

/// Why a stream may not be encoded here.
pub(crate) enum NotHere {
    /// No connection's message is being encoded (a notification, or plain serde).
    NoConnection,
    /// The connection has its most open streams; the error object says so.
    Refused,
}

/// Registers a stream on the connection whose message is being encoded, with
/// `register` (which makes its token); the token is recorded for the encoding.
pub(crate) fn register(register: impl FnOnce(&Shared) -> Result<String, ErrorObjectOwned>) -> Result<String, NotHere> {
    with_current(|mark| {
        let Some(encoding) = &mut mark.encoding else { return Err(NotHere::NoConnection) };
        match register(&mark.shared) {
            Ok(token) => {
                encoding.tokens.push(token.clone());
                Ok(token)
            }
            Err(refusal) => {
                encoding.refusal.get_or_insert(refusal);
                Err(NotHere::Refused)
            }
        }
    })
    .unwrap_or(Err(NotHere::NoConnection))
}

/// A handler's success response, `value` encoded as the connection this
/// thread serves: a stream in it registers there. If it does not encode, the
/// streams it registered are dropped and the caller gets -32009 (the
/// open-stream limit) or -32603.
pub(crate) fn encode_result<T: serde::Serialize>(id: &crate::wire::RequestId, value: &T) -> String {
    let scope = Scope::encoding_result();
    let frame = crate::wire::try_success(id, value);
    let (tokens, refusal) = scope.map(Scope::finish).unwrap_or_default();
    match frame {
        Ok(frame) => frame,
        Err(e) => {
            if let Some(shared) = connection() {
                shared.streams.release(&tokens);
            }
            let error = refusal.unwrap_or_else(|| {
                ErrorObjectOwned::owned(
                    crate::codes::INTERNAL_ERROR,
                    format!("could not encode the result: {e}"),
                    None::<()>,
                )
            });
            crate::wire::failure(id, &error)
        }
    }
}
