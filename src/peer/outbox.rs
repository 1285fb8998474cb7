//! The queue of frames waiting for a connection's socket, in the order they
//! were made: those other tasks hand over (bounded by frames and by bytes: a
//! broadcast that finds it full applies the [`SlowConsumer`] policy, a call
//! waits for room) and the driver's own responses (never refused: a reply owed
//! is never dropped; each carries the call slots it frees once written).
//! Control requests (cancel a call, close, shut down) wait beside it,
//! unbounded. It allocates only while it holds something: an idle
//! connection's queue costs a few words inside its shared state.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::Control;

/// What a broadcast does for a connection whose outbound queue is full (by
/// frames or by bytes). Calls and direct messages never take this path: they
/// wait for room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Drop the connection with close code 1013 (try again later) and a log
    /// line: it reconnects and catches up, the others are not held back.
    #[default]
    Disconnect,
    /// Keep the connection; drop the oldest broadcast messages queued for it
    /// to make room (or this one, if only replies are queued). Suits feeds
    /// where the latest value supersedes the earlier ones.
    DropOldest,
}

/// Why a frame was not queued; the frame comes back.
#[derive(Debug)]
pub(crate) enum PushError {
    Full(Message),
    Closed(Message),
}

/// What became of a broadcast frame offered to one connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued.
    Queued,
    /// Queued after dropping this many older broadcast frames ([`SlowConsumer::DropOldest`]).
    QueuedDroppingOldest(usize),
    /// Not queued: the queue is full of frames that may not be dropped ([`SlowConsumer::DropOldest`]).
    Skipped,
    /// Not queued: the queue is full, and the connection is being closed with
    /// 1013 ([`SlowConsumer::Disconnect`]).
    Full,
    /// Not queued: the connection is closing.
    Closed,
}

struct Entry {
    message: Message,
    /// A broadcast frame, which [`SlowConsumer::DropOldest`] may drop.
    droppable: bool,
    /// Call slots the driver gets back once this reply is written.
    slots: usize,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Entry>,
    /// Payload bytes of `frames`.
    bytes: usize,
    controls: Vec<Control>,
    /// No more frames from other tasks (closing, or closed).
    sealed: bool,
    /// A sender waits for room: the next pop wakes it.
    room_wanted: bool,
    /// Senders waiting for room now.
    waiting: usize,
}

/// Bounds and policy of one connection's queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub frames: usize,
    pub bytes: usize,
    pub slow_consumer: SlowConsumer,
}

/// A frame taken off the queue for the socket.
pub(crate) struct Popped {
    pub(crate) message: Message,
    /// The call slots its writing frees.
    pub(crate) slots: usize,
    /// The bytes queued with it (it included), for the metrics.
    pub(crate) queued: usize,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    bounds: Bounds,
    /// The driver, woken when something is queued.
    driver: AtomicWaker,
    /// Senders waiting for room.
    room: Notify,
}

/// Above this capacity an emptied queue lets go of its buffer.
const KEEP_CAPACITY: usize = 8;

fn size_of(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => data.len(),
        Message::Close(_) | Message::Frame(_) => 0,
    }
}

/// Close code and reason for a client dropped because it did not keep up.
const SLOW_CONSUMER: (u16, &str) = (1013, "slow consumer");

impl State {
    /// Whether another frame fits. The byte bound is soft: a frame goes in
    /// while the queue is under it, so a message larger than the bound can
    /// still be sent, and the queue exceeds the bound by at most one frame.
    fn has_room(&self, bounds: &Bounds) -> bool {
        self.frames.len() < bounds.frames && self.bytes < bounds.bytes
    }

    fn push(&mut self, message: Message, droppable: bool, slots: usize) {
        self.bytes += size_of(&message);
        self.frames.push_back(Entry { message, droppable, slots });
    }

    /// Drops the oldest droppable frame; false if there is none.
    fn drop_oldest(&mut self) -> bool {
        let Some(at) = self.frames.iter().position(|entry| entry.droppable) else { return false };
        if let Some(entry) = self.frames.remove(at) {
            self.bytes -= size_of(&entry.message);
        }
        true
    }
}

impl Outbox {
    pub(crate) fn new(bounds: Bounds) -> Self {
        let bounds = Bounds { frames: bounds.frames.max(1), bytes: bounds.bytes.max(1), ..bounds };
        Outbox { state: Mutex::default(), bounds, driver: AtomicWaker::new(), room: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Queues a frame if there is room, without waiting.
    pub(crate) fn try_push(&self, frame: Message) -> Result<(), PushError> {
        {
            let mut state = self.lock();
            if state.sealed {
                return Err(PushError::Closed(frame));
            }
            if !state.has_room(&self.bounds) {
                state.room_wanted = true;
                drop(state);
                // A driver that stopped reading reads again while a sender waits on the peer.
                self.driver.wake();
                return Err(PushError::Full(frame));
            }
            state.push(frame, false, 0);
        }
        self.driver.wake();
        Ok(())
    }

    /// Queues a broadcast frame without waiting; when there is no room, the
    /// [`SlowConsumer`] policy decides. Under `Disconnect`, the close is asked
    /// for here, once: later offers find the queue sealed.
    pub(crate) fn offer(&self, frame: Message) -> Offer {
        let offer = {
            let mut state = self.lock();
            if state.sealed {
                return Offer::Closed;
            }
            let mut dropped = 0;
            while !state.has_room(&self.bounds) {
                if self.bounds.slow_consumer == SlowConsumer::Disconnect {
                    let (code, reason) = SLOW_CONSUMER;
                    let frame = CloseFrame { code: code.into(), reason: reason.into() };
                    state.controls.push(Control::Close { frame, graceful: false });
                    state.sealed = true;
                    break;
                }
                if !state.drop_oldest() {
                    return Offer::Skipped;
                }
                dropped += 1;
            }
            if state.sealed {
                Offer::Full
            } else {
                state.push(frame, true, 0);
                if dropped == 0 { Offer::Queued } else { Offer::QueuedDroppingOldest(dropped) }
            }
        };
        self.driver.wake();
        if offer == Offer::Full {
            // Senders waiting for room learn that none will come.
            self.room.notify_waiters();
        }
        offer
    }

    /// Queues a frame the driver made (a response), after everything queued
    /// before it, whatever the bounds; `slots` come back to the driver with
    /// it once it is written.
    pub(crate) fn push_own(&self, frame: Message, slots: usize) {
        self.lock().push(frame, false, slots);
    }

    /// Frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Payload bytes waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Payload bytes that fit before the byte bound.
    pub(crate) fn room_bytes(&self) -> usize {
        self.bounds.bytes.saturating_sub(self.bytes())
    }

    /// True while a sender waits for room: this side then depends on the
    /// peer reading, and the driver never stops reading.
    pub(crate) fn has_waiting_senders(&self) -> bool {
        self.lock().waiting > 0
    }

    /// Queues a frame, waiting for room; gives it back if the connection closes.
    pub(crate) async fn push(&self, mut frame: Message) -> Result<(), Message> {
        /// Counts this sender as waiting until it is done or dropped.
        struct Waiting<'a>(&'a Outbox);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.lock().waiting -= 1;
            }
        }
        self.lock().waiting += 1;
        let _waiting = Waiting(self);
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
            if state.sealed {
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

    /// The next frame, if any (the driver registers its waker first), and
    /// the call slots its writing frees.
    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<(Message, usize)> {
        self.pop_with_bytes().map(|popped| (popped.message, popped.slots))
    }

    /// Like [`pop`](Self::pop), and the bytes that were queued with it.
    fn pop_with_bytes(&self) -> Option<Popped> {
        let (entry, queued, room_wanted) = {
            let mut state = self.lock();
            let queued = state.bytes;
            let entry = state.frames.pop_front();
            if let Some(entry) = &entry {
                state.bytes -= size_of(&entry.message);
            }
            if state.frames.is_empty() && state.frames.capacity() > KEEP_CAPACITY {
                state.frames = VecDeque::new();
            }
            (entry, queued, std::mem::take(&mut state.room_wanted))
        };
        if room_wanted {
            // Every waiter retries (and asks again if it still does not fit):
            // the driver may empty the queue in one go, and one wakeup per
            // freed frame would strand the rest.
            self.room.notify_waiters();
        }
        entry.map(|entry| Popped { message: entry.message, slots: entry.slots, queued })
    }

    /// Like [`pop`](Self::pop), registering the driver's waker when empty.
    pub(crate) fn poll_pop(&self, cx: &Context<'_>) -> Poll<Popped> {
        self.register(cx);
        match self.pop_with_bytes() {
            Some(frame) => Poll::Ready(frame),
            None => Poll::Pending,
        }
    }

    /// Refuses frames and controls from other tasks from now on; what is
    /// queued stays, to be written before a graceful close.
    pub(crate) fn seal(&self) {
        {
            let mut state = self.lock();
            state.sealed = true;
            state.controls.clear();
        }
        self.room.notify_waiters();
    }

    /// Drops the frames waiting (the connection is closing).
    pub(crate) fn clear_frames(&self) {
        let dropped = {
            let mut state = self.lock();
            state.bytes = 0;
            std::mem::take(&mut state.frames)
        };
        drop(dropped);
    }

    /// Refuses everything from now on; frames still queued are dropped.
    pub(crate) fn close(&self) {
        self.seal();
        self.clear_frames();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn frame(text: &str) -> Message {
        Message::Text(text.into())
    }

    fn outbox(frames: usize, bytes: usize, slow_consumer: SlowConsumer) -> Outbox {
        Outbox::new(Bounds { frames, bytes, slow_consumer })
    }

    /// The next frame, without its slots.
    fn next(outbox: &Outbox) -> Option<Message> {
        outbox.pop().map(|(message, _)| message)
    }

    fn bounded(frames: usize) -> Outbox {
        outbox(frames, 1 << 20, SlowConsumer::Disconnect)
    }

    #[test]
    fn bounded_for_frames_and_empty_without_allocation() {
        let outbox = bounded(2);
        assert_eq!(outbox.lock().frames.capacity(), 0);
        outbox.try_push(frame("a")).unwrap();
        outbox.try_push(frame("b")).unwrap();
        assert!(matches!(outbox.try_push(frame("c")), Err(PushError::Full(_))));
        assert!(outbox.push_control(Control::Cancel(1)), "controls are never refused for room");
        assert_eq!(next(&outbox), Some(frame("a")));
        assert_eq!(next(&outbox), Some(frame("b")));
        assert_eq!(next(&outbox), None);
        assert_eq!(outbox.take_controls().len(), 1);
    }

    #[test]
    fn a_broadcast_finding_no_room_closes_the_connection_once() {
        let outbox = bounded(1);
        assert_eq!(outbox.offer(frame("a")), Offer::Queued);
        assert_eq!(outbox.offer(frame("b")), Offer::Full);
        assert_eq!(outbox.offer(frame("c")), Offer::Closed, "sealed: asked to close once");
        match outbox.take_controls().as_slice() {
            [Control::Close { frame, graceful: false }] => assert_eq!(u16::from(frame.code), 1013),
            other => panic!("expected one close, got {other:?}"),
        }
        assert!(matches!(outbox.try_push(frame("d")), Err(PushError::Closed(_))));
    }

    #[test]
    fn bounded_for_bytes_softly_so_large_frames_still_go() {
        let outbox = outbox(100, 10, SlowConsumer::Disconnect);
        outbox.try_push(frame("123456")).unwrap();
        // Under the bound: one more frame goes in, however large.
        let large = "x".repeat(50);
        outbox.try_push(frame(&large)).unwrap();
        assert!(matches!(outbox.try_push(frame("1")), Err(PushError::Full(_))));
        assert_eq!(next(&outbox), Some(frame("123456")));
        assert!(matches!(outbox.try_push(frame("1")), Err(PushError::Full(_))), "still over the bound");
        assert_eq!(next(&outbox), Some(frame(&large)));
        assert_eq!(outbox.offer(frame(&large)), Offer::Queued);
    }

    #[test]
    fn drop_oldest_drops_broadcasts_only_and_keeps_the_newest() {
        let outbox = outbox(3, 1 << 20, SlowConsumer::DropOldest);
        assert_eq!(outbox.offer(frame("news 1")), Offer::Queued);
        outbox.try_push(frame("reply")).unwrap();
        assert_eq!(outbox.offer(frame("news 2")), Offer::Queued);
        assert_eq!(outbox.offer(frame("news 3")), Offer::QueuedDroppingOldest(1));
        assert_eq!(outbox.offer(frame("news 4")), Offer::QueuedDroppingOldest(1));
        let order: Vec<_> = std::iter::from_fn(|| next(&outbox)).collect();
        assert_eq!(order, [frame("reply"), frame("news 3"), frame("news 4")]);

        // Nothing droppable: the new broadcast is the one left out.
        for text in ["a", "b", "c"] {
            outbox.push_own(frame(text), 0);
        }
        assert_eq!(outbox.offer(frame("news 5")), Offer::Skipped);
        assert_eq!(outbox.len(), 3);
    }

    #[tokio::test]
    async fn senders_waiting_for_room_are_counted_until_done_or_dropped() {
        let outbox = Arc::new(bounded(1));
        outbox.try_push(frame("a")).unwrap();
        assert!(!outbox.has_waiting_senders());
        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(frame("b")).await })
        };
        let given_up = {
            let outbox = outbox.clone();
            tokio::spawn(async move { tokio::time::timeout(Duration::from_millis(1), outbox.push(frame("c"))).await })
        };
        tokio::time::timeout(Duration::from_secs(10), given_up).await.unwrap().unwrap().unwrap_err();
        assert!(outbox.has_waiting_senders(), "one sender still waits");
        outbox.pop();
        tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
        assert!(!outbox.has_waiting_senders());
    }

    #[tokio::test]
    async fn every_waiting_sender_gets_in_when_the_queue_empties() {
        let outbox = Arc::new(bounded(2));
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
        while next(&outbox).is_some() {}
        for sender in waiting {
            tokio::time::timeout(Duration::from_secs(10), sender).await.unwrap().unwrap().unwrap();
        }
        assert_eq!(outbox.len(), 2);
    }

    #[tokio::test]
    async fn a_sender_waiting_for_bytes_is_woken_when_they_free_up() {
        let outbox = Arc::new(outbox(100, 10, SlowConsumer::Disconnect));
        outbox.try_push(frame("1234567890")).unwrap();
        let sender = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(frame("123456")).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(next(&outbox), Some(frame("1234567890")));
        tokio::time::timeout(Duration::from_secs(10), sender).await.unwrap().unwrap().unwrap();
        assert_eq!(next(&outbox), Some(frame("123456")));
    }

    #[test]
    fn the_drivers_own_frames_keep_their_place_and_are_never_refused() {
        let outbox = bounded(1);
        outbox.try_push(frame("broadcast")).unwrap();
        outbox.push_own(frame("reply"), 1);
        assert!(matches!(outbox.try_push(frame("more")), Err(PushError::Full(_))));
        assert_eq!(outbox.pop(), Some((frame("broadcast"), 0)));
        assert_eq!(outbox.pop(), Some((frame("reply"), 1)), "a reply gives its call slot back once written");
    }

    #[test]
    fn a_sealed_queue_keeps_its_frames_for_the_close_but_takes_no_more() {
        let outbox = bounded(4);
        outbox.try_push(frame("last words")).unwrap();
        outbox.seal();
        assert!(matches!(outbox.try_push(frame("late")), Err(PushError::Closed(_))));
        assert_eq!(outbox.offer(frame("late")), Offer::Closed);
        assert!(!outbox.push_control(Control::Cancel(1)));
        assert_eq!(next(&outbox), Some(frame("last words")));
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_the_freed_room_or_the_close() {
        let outbox = Arc::new(bounded(1));
        outbox.try_push(frame("first")).unwrap();
        let sender = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(frame("second")).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(next(&outbox), Some(frame("first")));
        tokio::time::timeout(Duration::from_secs(10), sender).await.unwrap().unwrap().unwrap();
        assert_eq!(next(&outbox), Some(frame("second")));

        outbox.try_push(frame("third")).unwrap();
        let blocked = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(frame("fourth")).await })
        };
        tokio::task::yield_now().await;
        outbox.close();
        let refused = tokio::time::timeout(Duration::from_secs(10), blocked).await.unwrap().unwrap();
        assert_eq!(refused, Err(frame("fourth")));
        assert!(!outbox.push_control(Control::Cancel(2)));
        assert_eq!(outbox.len(), 0);
    }
}
