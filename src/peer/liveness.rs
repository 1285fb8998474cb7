//! Timers that notice a connection whose peer has gone quiet: keep-alive
//! pings with a deadline for the answer, and the optional idle timeout.
//!
//! Both cost one flag or one clock read per message; the timers themselves
//! fire once per interval, not per message.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::deadline::deadline_after;

/// Keep-alive settings: ping every `interval`; a peer silent for `timeout`
/// after a ping is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeepAliveConfig {
    pub interval: Duration,
    pub timeout: Duration,
}

/// What the keep-alive timer asks of the driver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeepAliveDue {
    /// Send a ping now.
    Ping,
    /// Nothing came back within the timeout: the peer is gone.
    Unresponsive,
}

/// Where the keep-alive is between two pings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next ping to fall due.
    Idle,
    /// The ping was handed to the socket and waits behind other bytes.
    Queued,
    /// The ping left at this instant: the peer's time to answer runs.
    Sent(Instant),
}

/// Pings on a schedule and checks that the peer shows it is alive after
/// each ping: any bytes read from it, or bytes it took from us after our
/// writes had to wait. The time to answer starts when the ping's bytes have
/// left, not when it fell due, so a ping queued behind a large message on a
/// slow link is not held against the peer; while it waits, the peer taking
/// our bytes shows it is there. A peer that shows nothing for `timeout` after
/// the ping left (or, while the ping cannot leave, for `timeout` at a
/// stretch) is gone.
///
/// While this side is not reading by its own choice, it pings twice per
/// `timeout` instead of once per `interval`: the peer, whose pings then wait
/// unread, still hears from it (any bytes count), whatever its own schedule.
/// Its own verdict waits for a probe: the driver reads one more frame, and
/// the peer has another `timeout` to show itself ([`probe`](Self::probe)).
pub(crate) struct KeepAlive {
    config: KeepAliveConfig,
    timer: Pin<Box<Sleep>>,
    phase: Phase,
    /// The peer showed it is alive since the phase began.
    heard: bool,
    /// When the last ping left (or the keep-alive started).
    last_ping: Instant,
    /// This side is not reading by its own choice.
    paused: bool,
}

impl KeepAlive {
    pub(crate) fn new(config: KeepAliveConfig) -> Self {
        let now = Instant::now();
        let timer = Box::pin(tokio::time::sleep_until(deadline_after(now, config.interval)));
        KeepAlive { config, timer, phase: Phase::Idle, heard: false, last_ping: now, paused: false }
    }

    /// The time between pings now.
    fn interval(&self) -> Duration {
        if self.paused { self.config.interval.min(self.config.timeout / 2) } else { self.config.interval }
    }

    /// Notes whether this side is reading by its own choice; while it is
    /// not, pings go out more often, so the peer hears from it.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        if self.paused != paused {
            self.paused = paused;
            if self.phase == Phase::Idle {
                let next = deadline_after(self.last_ping, self.interval());
                self.timer.as_mut().reset(next);
            }
        }
    }

    /// Notes that the peer showed it is alive.
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// Gives a peer that showed nothing another `timeout`, while the driver
    /// reads a frame for a sign of it (it was not reading by choice).
    pub(crate) fn probe(&mut self) {
        let now = Instant::now();
        self.phase = Phase::Sent(now);
        self.heard = false;
        self.timer.as_mut().reset(deadline_after(now, self.config.timeout));
    }

    /// Notes that the ping's bytes have left: the peer's time to answer starts now.
    pub(crate) fn ping_sent(&mut self) {
        if self.phase == Phase::Queued {
            let now = Instant::now();
            self.last_ping = now;
            self.phase = Phase::Sent(now);
            self.heard = false;
            let wake = deadline_after(now, self.interval().min(self.config.timeout));
            self.timer.as_mut().reset(wake);
        }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<KeepAliveDue> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            let next = match self.phase {
                Phase::Idle => {
                    self.phase = Phase::Queued;
                    self.heard = false;
                    self.timer.as_mut().reset(deadline_after(now, self.config.timeout));
                    return Poll::Ready(KeepAliveDue::Ping);
                }
                // Still behind other bytes, which the peer is taking: give it another stretch.
                Phase::Queued if std::mem::take(&mut self.heard) => deadline_after(now, self.config.timeout),
                Phase::Sent(sent) if std::mem::take(&mut self.heard) => {
                    self.phase = Phase::Idle;
                    deadline_after(sent, self.interval())
                }
                // The next ping fell due before the answer to this one: wait out the answer.
                Phase::Sent(sent) if now < deadline_after(sent, self.config.timeout) => {
                    deadline_after(sent, self.config.timeout)
                }
                Phase::Queued | Phase::Sent(_) => return Poll::Ready(KeepAliveDue::Unresponsive),
            };
            self.timer.as_mut().reset(next);
        }
    }
}

/// Fires when no message has gone either way, and no call has been running,
/// for the whole limit.
pub(crate) struct IdleTimeout {
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    last_active: Instant,
}

impl IdleTimeout {
    pub(crate) fn new(limit: Duration) -> Self {
        let now = Instant::now();
        IdleTimeout { limit, timer: Box::pin(tokio::time::sleep_until(deadline_after(now, limit))), last_active: now }
    }

    /// Notes a message sent or received.
    pub(crate) fn active(&mut self) {
        self.last_active = Instant::now();
    }

    /// Ready once the connection has been idle for the limit; `busy` says
    /// whether calls are running now (a long call is not idleness).
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, busy: bool) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            if busy {
                self.active();
            }
            let deadline = deadline_after(self.last_active, self.limit);
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    const CONFIG: KeepAliveConfig =
        KeepAliveConfig { interval: Duration::from_secs(30), timeout: Duration::from_secs(20) };

    async fn next(keep_alive: &mut KeepAlive) -> (KeepAliveDue, Duration) {
        let start = Instant::now();
        let due = poll_fn(|cx| keep_alive.poll(cx)).await;
        (due, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_while_the_peer_answers() {
        let mut keep_alive = KeepAlive::new(CONFIG);
        for _ in 0..3 {
            assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(30)));
            keep_alive.ping_sent();
            tokio::time::sleep(Duration::from_secs(1)).await;
            keep_alive.heard();
            // The next ping is due an interval after the last one went out.
            assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(29)));
            keep_alive.ping_sent();
            keep_alive.heard();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_to_answer_starts_when_the_ping_goes_out() {
        let mut keep_alive = KeepAlive::new(CONFIG);
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(30)));
        // The socket was busy for 15 s before the ping left.
        tokio::time::sleep(Duration::from_secs(15)).await;
        keep_alive.ping_sent();
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Unresponsive, Duration::from_secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_silent_after_a_ping_is_unresponsive_at_the_timeout() {
        let mut keep_alive = KeepAlive::new(CONFIG);
        // Frames before the ping do not answer it.
        keep_alive.heard();
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(30)));
        keep_alive.ping_sent();
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Unresponsive, Duration::from_secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_stuck_behind_a_large_message_waits_while_the_peer_takes_our_bytes() {
        let mut keep_alive = KeepAlive::new(CONFIG);
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(30)));
        // The ping waits behind a message the peer reads slowly, for a minute.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            keep_alive.heard();
            let polled = poll_fn(|cx| Poll::Ready(keep_alive.poll(cx))).await;
            assert!(polled.is_pending(), "dropped while the peer takes our bytes: {polled:?}");
        }
        // Then it stops taking anything: gone a timeout after the last sign.
        let start = Instant::now();
        let (due, _) = next(&mut keep_alive).await;
        assert_eq!(due, KeepAliveDue::Unresponsive);
        assert!(start.elapsed() <= CONFIG.timeout, "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn while_not_reading_by_choice_it_pings_twice_per_timeout() {
        let mut keep_alive = KeepAlive::new(CONFIG);
        tokio::time::sleep(Duration::from_secs(5)).await;
        keep_alive.set_paused(true);
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(5)));
        keep_alive.ping_sent();
        keep_alive.heard();
        // Heard from: the next ping is 10 s after the last.
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(10)));
        keep_alive.ping_sent();
        keep_alive.heard();
        keep_alive.set_paused(false);
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_too_long_for_the_clock_mean_never() {
        let config = KeepAliveConfig { interval: Duration::MAX, timeout: Duration::MAX };
        let mut keep_alive = KeepAlive::new(config);
        assert!(tokio::time::timeout(Duration::from_secs(86_400), next(&mut keep_alive)).await.is_err());
        let mut idle = IdleTimeout::new(Duration::MAX);
        assert!(tokio::time::timeout(Duration::from_secs(86_400), poll_fn(|cx| idle.poll(cx, false))).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_counts_from_the_last_activity_and_running_calls_are_activity() {
        let mut idle = IdleTimeout::new(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_secs(40)).await;
        idle.active();
        let start = Instant::now();
        poll_fn(|cx| idle.poll(cx, false)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(60));

        let mut idle = IdleTimeout::new(Duration::from_secs(60));
        let busy_for_a_while = tokio::time::timeout(Duration::from_secs(300), poll_fn(|cx| idle.poll(cx, true)));
        assert!(busy_for_a_while.await.is_err(), "never idle while a call runs");
        let start = Instant::now();
        poll_fn(|cx| idle.poll(cx, false)).await;
        assert!(start.elapsed() <= Duration::from_secs(60));
    }
}
