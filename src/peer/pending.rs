//! Calls this side made that still wait for their reply.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Control, Shared};
use crate::error::Error;

/// A reply to one of our calls, as the driver hands it over: the response
/// object's JSON, unparsed (a slice of the frame it came in, not a copy);
/// the caller parses it once, into the type it expects.
#[derive(Debug)]
pub(crate) struct Reply(pub(crate) Bytes);

impl Reply {
    /// The result as `R`, or the error the caller sees.
    pub(crate) fn decode<R: serde::de::DeserializeOwned>(self) -> Result<R, Error> {
        match crate::wire::decode_response(&self.0) {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(object)) => Err(Error::Rpc(object)),
            Err(e) => Err(Error::Decode(e)),
        }
    }
}

#[derive(Default)]
pub(crate) struct Pending {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    calls: HashMap<u64, oneshot::Sender<Reply>>,
    closed: bool,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Registers call `id`; fails with `Closed` once the connection has ended.
    pub(crate) fn register(&self, id: u64) -> Result<oneshot::Receiver<Reply>, Error> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        state.calls.insert(id, tx);
        Ok(rx)
    }

    /// Hands a reply to the call it answers; gives it back when no call
    /// waits for `id`.
    pub(crate) fn resolve(&self, id: u64, reply: Reply) -> Result<(), Reply> {
        let waiting = self.lock().calls.remove(&id);
        match waiting {
            // The caller may have just given up; that is not a stray reply.
            Some(tx) => {
                let _ = tx.send(reply);
                Ok(())
            }
            None => Err(reply),
        }
    }

    /// Forgets call `id`; true when it was still waiting.
    pub(crate) fn forget(&self, id: u64) -> bool {
        self.lock().calls.remove(&id).is_some()
    }

    /// True while any call waits for its reply.
    pub(crate) fn is_waiting(&self) -> bool {
        !self.lock().calls.is_empty()
    }

    /// Fails every waiting call with `Closed` (their senders drop) and refuses new ones.
    pub(crate) fn close_all(&self) {
        let calls = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.calls)
        };
        drop(calls);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().calls.len()
    }
}

/// Cleans up after a call whose future is dropped before its reply: forgets
/// it, and tells the peer to stop the work if the request went out.
pub(crate) struct CallGuard<'a> {
    shared: &'a Shared,
    id: u64,
    sent: bool,
    answered: bool,
}

impl<'a> CallGuard<'a> {
    pub(crate) fn new(shared: &'a Shared, id: u64) -> Self {
        CallGuard { shared, id, sent: false, answered: false }
    }

    pub(crate) fn mark_sent(&mut self) {
        self.sent = true;
    }

    pub(crate) fn mark_answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let was_waiting = self.shared.pending.forget(self.id);
        if self.sent && was_waiting {
            // Refused only when the connection is closed, and then there is no one to tell.
            self.shared.outbox.push_control(Control::Cancel(self.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_reach_their_call_and_strays_are_reported() {
        let pending = Pending::default();
        let rx = pending.register(1).unwrap();
        let response = || Reply(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":true}"#));
        assert!(pending.resolve(2, response()).is_err());
        assert!(pending.resolve(1, response()).is_ok());
        assert!(rx.await.unwrap().decode::<bool>().unwrap());
        // A duplicate reply finds no one.
        assert!(pending.resolve(1, response()).is_err());
    }

    #[tokio::test]
    async fn closing_fails_waiting_calls_and_refuses_new_ones() {
        let pending = Pending::default();
        let rx = pending.register(1).unwrap();
        pending.close_all();
        assert!(rx.await.is_err());
        assert!(matches!(pending.register(2), Err(Error::Closed)));
        assert_eq!(pending.len(), 0);
    }
}
