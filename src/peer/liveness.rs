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

/// Pings on a schedule and checks that something (a pong, or any other frame)
/// arrived after each ping.
pub(crate) struct KeepAlive {
    config: KeepAliveConfig,
    timer: Pin<Box<Sleep>>,
    /// When the unanswered ping went out.
    ping_sent: Option<Instant>,
    /// Something arrived since the last ping.
    heard: bool,
}

impl KeepAlive {
    pub(crate) fn new(config: KeepAliveConfig) -> Self {
        KeepAlive { config, timer: Box::pin(tokio::time::sleep(config.interval)), ping_sent: None, heard: false }
    }

    /// Notes that a frame arrived from the peer.
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// Notes that the ping went out (it may have waited for room in the
    /// socket): the peer's time to answer starts now.
    pub(crate) fn ping_sent(&mut self) {
        if self.ping_sent.is_some() {
            let now = Instant::now();
            self.ping_sent = Some(now);
            self.timer.as_mut().reset(now + self.config.timeout);
        }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<KeepAliveDue> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            match self.ping_sent {
                None => {
                    self.ping_sent = Some(now);
                    self.heard = false;
                    self.timer.as_mut().reset(now + self.config.timeout);
                    return Poll::Ready(KeepAliveDue::Ping);
                }
                Some(_) if !self.heard => return Poll::Ready(KeepAliveDue::Unresponsive),
                Some(sent) => {
                    self.ping_sent = None;
                    self.timer.as_mut().reset(sent + self.config.interval);
                }
            }
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
        IdleTimeout { limit, timer: Box::pin(tokio::time::sleep(limit)), last_active: Instant::now() }
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
            let deadline = self.last_active + self.limit;
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
            tokio::time::sleep(Duration::from_secs(1)).await;
            keep_alive.heard();
            // The next ping is due an interval after the last one went out.
            assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Ping, Duration::from_secs(29)));
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
        assert_eq!(next(&mut keep_alive).await, (KeepAliveDue::Unresponsive, Duration::from_secs(20)));
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
