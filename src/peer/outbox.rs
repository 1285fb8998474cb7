//! The queue of frames waiting for a connection's socket, in the order they
//! were made: those other tasks hand over (bounded: a broadcast finds it full
//! and drops a slow client, a call waits for room) and the driver's own
//! responses (never refused: a reply owed is never dropped). Control requests
//! (cancel a call, close) wait beside it, unbounded. It allocates only while it
//! holds something: an idle connection's queue costs a few words inside its
//! shared state.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use super::Control;

/// Why a frame was not queued; the frame comes back.
#[derive(Debug)]
pub(crate) enum PushError {
    Full(Message),
    Closed(Message),
}

#[derive(Default)]
struct State {
    frames: VecDeque<Message>,
    controls: Vec<Control>,
    closed: bool,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    /// The driver, woken when something is queued.
    driver: AtomicWaker,
    /// Senders waiting for room.
    room: Notify,
}

/// Above this capacity an emptied queue lets go of its buffer.
const KEEP_CAPACITY: usize = 8;

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Outbox { state: Mutex::default(), capacity: capacity.max(1), driver: AtomicWaker::new(), room: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover rather than propagate.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame if there is room, without waiting.
    pub(crate) fn try_push(&self, frame: Message) -> Result<(), PushError> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(PushError::Closed(frame));
            }
            if state.frames.len() >= self.capacity {
                return Err(PushError::Full(frame));
            }
            state.frames.push_back(frame);
        }
        self.driver.wake();
        Ok(())
    }

    /// Queues a frame the driver made (a response), after everything queued
    /// before it, whatever the capacity.
    pub(crate) fn push_own(&self, frame: Message) {
        self.lock().frames.push_back(frame);
    }

    /// Frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Drops the frames waiting (the connection is closing), freeing room for no one.
    pub(crate) fn clear_frames(&self) {
        let dropped = std::mem::take(&mut self.lock().frames);
        drop(dropped);
    }

    /// Queues a frame, waiting for room; gives it back if the connection closes.
    pub(crate) async fn push(&self, mut frame: Message) -> Result<(), Message> {
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            match self.try_push(frame) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(back)) => return Err(back),
                Err(PushError::Full(back)) => frame = back,
            }
            room.await;
        }
    }

    /// Queues a control request; false once the connection is closed.
    pub(crate) fn push_control(&self, control: Control) -> bool {
        {
            let mut state = self.lock();
            if state.closed {
                return false;
            }
            state.controls.push(control);
        }
        self.driver.wake();
        true
    }

    /// Wakes the driver of `cx` when anything is queued from now on.
    pub(crate) fn register(&self, cx: &Context<'_>) {
        self.driver.register(cx.waker());
    }

    pub(crate) fn take_controls(&self) -> Vec<Control> {
        std::mem::take(&mut self.lock().controls)
    }

    /// The next frame, if any (the driver registers its waker first).
    pub(crate) fn pop(&self) -> Option<Message> {
        let (frame, was_full) = {
            let mut state = self.lock();
            let was_full = state.frames.len() >= self.capacity;
            let frame = state.frames.pop_front();
            if state.frames.is_empty() && state.frames.capacity() > KEEP_CAPACITY {
                state.frames = VecDeque::new();
            }
            (frame, was_full)
        };
        if was_full && frame.is_some() {
            // Every waiter retries: the driver may empty the queue in one go,
            // and one wakeup per full-to-not-full step would strand the rest.
            self.room.notify_waiters();
        }
        frame
    }

    /// Like [`pop`](Self::pop), registering the driver's waker when empty.
    pub(crate) fn poll_pop(&self, cx: &Context<'_>) -> Poll<Message> {
        self.register(cx);
        match self.pop() {
            Some(frame) => Poll::Ready(frame),
            None => Poll::Pending,
        }
    }

    /// Refuses everything from now on; frames still queued are dropped.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.lock();
            state.closed = true;
            state.controls.clear();
            std::mem::take(&mut state.frames)
        };
        drop(dropped);
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(text: &str) -> Message {
        Message::Text(text.into())
    }

    #[test]
    fn bounded_for_frames_and_empty_without_allocation() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.lock().frames.capacity(), 0);
        outbox.try_push(frame("a")).unwrap();
        outbox.try_push(frame("b")).unwrap();
        assert!(matches!(outbox.try_push(frame("c")), Err(PushError::Full(_))));
        assert!(outbox.push_control(Control::Cancel(1)), "controls are never refused for room");
        assert_eq!(outbox.pop(), Some(frame("a")));
        assert_eq!(outbox.pop(), Some(frame("b")));
        assert_eq!(outbox.pop(), None);
        assert_eq!(outbox.take_controls().len(), 1);
    }

    #[tokio::test]
    async fn every_waiting_sender_gets_in_when_the_queue_empties() {
        let outbox = Arc::new(Outbox::new(2));
        outbox.try_push(frame("a")).unwrap();
        outbox.try_push(frame("b")).unwrap();
        let waiting: Vec<_> = ["c", "d"]
            .into_iter()
            .map(|text| {
                let outbox = outbox.clone();
                tokio::spawn(async move { outbox.push(frame(text)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // The driver empties the queue in one go.
        while outbox.pop().is_some() {}
        for sender in waiting {
            tokio::time::timeout(std::time::Duration::from_secs(10), sender).await.unwrap().unwrap().unwrap();
        }
        assert_eq!(outbox.len(), 2);
    }

    #[test]
    fn the_drivers_own_frames_keep_their_place_and_are_never_refused() {
        let outbox = Outbox::new(1);
        outbox.try_push(frame("broadcast")).unwrap();
        outbox.push_own(frame("reply"));
        assert!(matches!(outbox.try_push(frame("more")), Err(PushError::Full(_))));
        assert_eq!(outbox.pop(), Some(frame("broadcast")));
        assert_eq!(outbox.pop(), Some(frame("reply")));
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_the_freed_room_or_the_close() {
        let outbox = Arc::new(Outbox::new(1));
        outbox.try_push(frame("first")).unwrap();
        let sender = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(frame("second")).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(outbox.pop(), Some(frame("first")));
        tokio::time::timeout(std::time::Duration::from_secs(10), sender).await.unwrap().unwrap().unwrap();
        assert_eq!(outbox.pop(), Some(frame("second")));

        outbox.try_push(frame("third")).unwrap();
        let blocked = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(frame("fourth")).await })
        };
        tokio::task::yield_now().await;
        outbox.close();
        let refused = tokio::time::timeout(std::time::Duration::from_secs(10), blocked).await.unwrap().unwrap();
        assert_eq!(refused, Err(frame("fourth")));
        assert!(!outbox.push_control(Control::Cancel(2)));
    }
}
