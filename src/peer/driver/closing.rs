//! How a connection ends: the close this side starts (gracefully, writing
//! what is queued first, or at once), the shutdown that drains running calls,
//! the close handshake after the loop stops, and the teardown that leaves the
//! hub and fails waiting calls however the task ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Driver, Transport};
use crate::dispatch::Handler;
use crate::peer::{CloseReason, Shared};

/// How long a close handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

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
    pub(super) fn reason(&self) -> CloseReason {
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
pub(super) const GOING_AWAY: (u16, &str) = (1001, "server shutting down");

/// Close code and reason text for a connection idle too long.
pub(super) const IDLE: (u16, &str) = (1000, "idle timeout");

/// Closes a peer that kept sending over its rate limit.
pub(super) const RATE_LIMITED: (u16, &str) = (1008, "rate limit exceeded");

pub(super) fn close_frame((code, reason): (u16, &'static str)) -> CloseFrame {
    CloseFrame { code: code.into(), reason: reason.into() }
}

/// A close this side asked for.
pub(super) struct Closing {
    /// The close frame, until it is handed to the socket.
    frame: Option<CloseFrame>,
    /// Frames already queued go out first.
    flush_first: bool,
    reason: CloseReason,
    /// When the close handshake is given up on.
    deadline: Pin<Box<Sleep>>,
}

impl<T: Transport, H: Handler> Driver<T, H> {
    /// Starts closing with `frame`, reporting `reason`. A graceful close
    /// writes what is queued first; otherwise it is dropped. Either way
    /// nothing more is read or answered, and the handshake gets
    /// [`CLOSE_TIMEOUT`].
    pub(super) fn start_closing(&mut self, frame: CloseFrame, reason: CloseReason, graceful: bool) {
        if self.closing.is_some() {
            return;
        }
        let outbox = &self.shared.outbox;
        outbox.seal();
        if !graceful {
            outbox.clear_frames();
        }
        let deadline = Box::pin(tokio::time::sleep(CLOSE_TIMEOUT));
        self.closing = Some(Box::new(Closing { frame: Some(frame), flush_first: graceful, reason, deadline }));
    }

    /// Refuses new calls from now on; the connection closes with 1001 once
    /// the running ones end, or at `deadline`.
    pub(super) fn start_draining(&mut self, deadline: Instant) {
        if self.draining.is_none() {
            tracing::debug!(conn = %self.shared.id, "shutting down");
            self.draining = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
    }

    /// Writes out what is queued (for a graceful close), then the close frame,
    /// and flushes it; gives up on a socket that stays blocked past
    /// [`CLOSE_TIMEOUT`] (abandoning the peer if the close frame never left).
    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        let Some(closing) = &self.closing else { return Poll::Pending };
        if closing.flush_first {
            if let Poll::Ready(Err(e)) = self.poll_write(cx) {
                return Poll::Ready(Ended::Transport(e));
            }
            let flushed = self.shared.outbox.len() == 0 && !self.unflushed;
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
}

/// Leaves the hub and fails waiting calls when the connection ends, also when
/// the task ends abnormally (a panic in a user's `Drop` or `Serialize`, or the
/// runtime shutting down), so no connection lingers in a hub.
pub(super) struct Teardown<F: FnOnce(&CloseReason)> {
    pub(super) shared: Arc<Shared>,
    pub(super) on_end: Option<F>,
}

impl<F: FnOnce(&CloseReason)> Teardown<F> {
    pub(super) fn finish(&mut self, reason: CloseReason) {
        if let Some(on_end) = self.on_end.take() {
            on_end(&reason);
            self.shared.mark_closed(reason);
        }
    }
}

impl<F: FnOnce(&CloseReason)> Drop for Teardown<F> {
    fn drop(&mut self) {
        self.finish(CloseReason::Transport("the connection task ended abnormally".into()));
    }
}

/// The close code for a read error that is the peer's fault (RFC 6455 section 7.4.1).
pub(super) fn close_code_for(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Capacity(_) => Some((1009, "message too big")),
        WsError::Utf8(_) => Some((1007, "invalid UTF-8 in a text frame")),
        WsError::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

/// What is left of the close handshake once the loop has stopped.
#[derive(Clone, Copy)]
pub(super) enum CloseHandshake {
    /// The peer closed: send our answering close (queued by the socket).
    Answer,
    /// We closed: wait for the peer's answering close.
    AwaitAnswer,
    /// Nothing: the socket failed, or we gave up on the peer.
    None,
}

impl CloseHandshake {
    pub(super) fn after(ended: &Ended) -> Self {
        match ended {
            Ended::ByPeer(_) => CloseHandshake::Answer,
            Ended::ByUs(_) => CloseHandshake::AwaitAnswer,
            Ended::Abandoned(_) | Ended::Transport(_) | Ended::Eof => CloseHandshake::None,
        }
    }

    /// Finishes the close handshake, within [`CLOSE_TIMEOUT`].
    pub(super) async fn finish<T: Transport>(self, transport: &mut T) {
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
