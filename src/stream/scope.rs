//! Which connection a stream being encoded or decoded belongs to.
//!
//! `Outgoing<T>` registers its producer on a connection when it is serialized,
//! and `Incoming<T>` needs a connection to pull from when it is deserialized;
//! serde gives neither a way to be told. So the engine marks the thread while
//! it encodes or decodes a message of one connection (a call's params or its
//! reply, a handler's params or its result), and the two types read the
//! mark. Anywhere else (a notification, a hub's fan-out, plain serde)
//! streams refuse to encode or decode.

use std::cell::RefCell;
use std::sync::Arc;

use jsonrpsee_types::ErrorObjectOwned;

use crate::connection_id::ConnectionId;
use crate::peer::Shared;

thread_local! {
    static CURRENT: RefCell<Option<Mark>> = const { RefCell::new(None) };
}

/// What the thread is doing for one connection.
struct Mark {
    shared: Arc<Shared>,
    /// True while the connection's driver runs its handlers.
    serving: bool,
    /// Set while one of the connection's messages is encoded or decoded.
    message: Option<Registered>,
}

/// The streams registered while a message was encoded.
#[derive(Default)]
pub(crate) struct Registered {
    pub(crate) tokens: Vec<String>,
    /// Why a stream could not be registered (the open-stream limit, a closed
    /// connection).
    pub(crate) refusal: Option<ErrorObjectOwned>,
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

    /// The driver of `shared`'s connection runs its handlers (their calls on
    /// it take no turn: see `Peer::turn`).
    pub(crate) fn serving(shared: &Arc<Shared>) -> Scope {
        Scope::enter(Mark { shared: shared.clone(), serving: true, message: None })
    }

    /// One of `shared`'s messages is encoded or decoded: streams register and
    /// decode there.
    pub(crate) fn message(shared: &Arc<Shared>) -> Scope {
        let serving = serving_connection() == Some(shared.id);
        Scope::enter(Mark { shared: shared.clone(), serving, message: Some(Registered::default()) })
    }

    /// Like [`Scope::message`], on the connection this thread serves now (a
    /// handler's params or result); `None` outside a driver.
    pub(crate) fn serving_message() -> Option<Scope> {
        let shared = with_current(|mark| mark.serving.then(|| mark.shared.clone())).flatten()?;
        Some(Scope::message(&shared))
    }

    /// Why a stream could not be registered in this message, if one could not.
    pub(crate) fn refusal(&self) -> Option<ErrorObjectOwned> {
        with_current(|mark| mark.message.as_ref().and_then(|m| m.refusal.clone())).flatten()
    }

    /// Ends the message: the streams registered while it was encoded, which
    /// the caller now answers for.
    pub(crate) fn finish(mut self) -> Registered {
        let registered = with_current(|mark| mark.message.take()).flatten().unwrap_or_default();
        self.restore();
        registered
    }

    fn restore(&mut self) {
        if let Some(previous) = self.previous.take() {
            let left = CURRENT.with_borrow_mut(|current| std::mem::replace(current, previous));
            // Not finished (a panic in a `Serialize`, say): nothing will send
            // the tokens, so nothing may keep their streams.
            if let Some(Mark { shared, message: Some(registered), .. }) = left {
                shared.streams.release(&registered.tokens);
            }
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

/// The connection whose handlers this thread runs now, if any.
pub(crate) fn serving_connection() -> Option<ConnectionId> {
    with_current(|mark| mark.serving.then_some(mark.shared.id)).flatten()
}

/// The connection whose message is being decoded, if any.
pub(crate) fn connection() -> Option<Arc<Shared>> {
    with_current(|mark| mark.message.is_some().then(|| mark.shared.clone())).flatten()
}

/// Why a stream may not be encoded here.
pub(crate) enum NotHere {
    /// No connection's message is being encoded (a notification, a hub's
    /// fan-out, plain serde).
    NoConnection,
    /// The connection refused it; the error object says why.
    Refused(ErrorObjectOwned),
}

/// Registers a stream on the connection whose message is being encoded, with
/// `register` (which makes its token); the token is recorded for the message.
pub(crate) fn register(register: impl FnOnce(&Shared) -> Result<String, ErrorObjectOwned>) -> Result<String, NotHere> {
    with_current(|mark| {
        let Some(registered) = &mut mark.message else { return Err(NotHere::NoConnection) };
        match register(&mark.shared) {
            Ok(token) => {
                registered.tokens.push(token.clone());
                Ok(token)
            }
            Err(refusal) => {
                registered.refusal.get_or_insert(refusal.clone());
                Err(NotHere::Refused(refusal))
            }
        }
    })
    .unwrap_or(Err(NotHere::NoConnection))
}

/// A handler's success response, `value` encoded as a message of the
/// connection this thread serves: a stream in it registers there. If it does
/// not encode, the streams it registered are dropped and the caller gets the
/// refusal (-32009 at the open-stream limit) or -32603.
pub(crate) fn encode_result<T: serde::Serialize>(id: &crate::wire::RequestId, value: &T) -> String {
    let scope = Scope::serving_message();
    match crate::wire::try_success(id, value) {
        Ok(frame) => {
            // The streams in it live on, until read or disposed of.
            let _ = scope.map(Scope::finish);
            frame
        }
        // Dropping the scope drops the streams it registered.
        Err(e) => {
            let refusal = scope.as_ref().and_then(Scope::refusal);
            crate::wire::failure(id, &refusal.unwrap_or_else(|| crate::wire::encode_failure(&e)))
        }
    }
}
