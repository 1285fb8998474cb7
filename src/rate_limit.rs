//! Per-connection rate limits on what the peer sends.
//!
//! Each connection gets a token bucket for messages and, if asked for, one
//! for bytes (GCRA, from `governor`, on tokio's clock). A frame with
//! requests or notifications in it takes a token for each (a batch of more
//! than the burst is refused whole) and its length in bytes (a frame longer
//! than the byte burst needs the whole of it); frames of responses to this
//! side's calls take nothing (this side asked for them, and they cannot be
//! refused). Over the limit:
//!
//! - a request is answered with [`codes::RATE_LIMITED`](crate::codes::RATE_LIMITED)
//!   (-32029), and its handler does not run;
//! - a notification is dropped (and counted, with the `metrics` feature);
//! - `$/cancelRequest`, `$/enumerator/dispose` and `$/enumerator/abort` are
//!   still honoured: they end work rather than start it;
//! - a peer that keeps sending over the limit (refused again within a second
//!   of its last refusal) for [`close_after`](RateLimit::close_after)
//!   (default 10 s) is closed with 1008 (policy violation).
//!
//! Set on [`ServerBuilder::rate_limit`](crate::server::ServerBuilder::rate_limit)
//! or [`ClientBuilder::rate_limit`](crate::client::ClientBuilder::rate_limit);
//! off by default on both.
//!
//! ```
//! use std::time::Duration;
//! use wsduplex::{Server, rate_limit::RateLimit};
//!
//! // 100 messages a second in bursts of up to 200, and 1 MiB a second.
//! let limit = RateLimit::messages_per_second(100)
//!     .burst(200)
//!     .bytes_per_second(1 << 20)
//!     .close_after(Duration::from_secs(30));
//! let server = Server::builder().rate_limit(limit);
//! # drop(server);
//! ```

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// How much the peer of one connection may send (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    messages: NonZeroU32,
    burst: NonZeroU32,
    bytes: Option<NonZeroU32>,
    close_after: Duration,
}

impl RateLimit {
    /// At most `messages` requests and notifications a second (at least 1),
    /// in bursts of as many.
    pub fn messages_per_second(messages: u32) -> Self {
        let messages = at_least_one(messages);
        RateLimit { messages, burst: messages, bytes: None, close_after: Duration::from_secs(10) }
    }

    /// Lets the peer send up to `messages` at once after a quiet spell (at
    /// least 1); also the largest batch it may send.
    pub fn burst(mut self, messages: u32) -> Self {
        self.burst = at_least_one(messages);
        self
    }

    /// Also at most `bytes` of frames a second, in bursts of as many (a frame
    /// longer than that needs the whole burst).
    pub fn bytes_per_second(mut self, bytes: u32) -> Self {
        self.bytes = Some(at_least_one(bytes));
        self
    }

    /// How long the peer may keep sending over the limit before the
    /// connection is closed with 1008 (default 10 s).
    pub fn close_after(mut self, sustained: Duration) -> Self {
        self.close_after = sustained;
        self
    }
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Refusals further apart than this end a spell over the limit.
const STILL_OVER: Duration = Duration::from_secs(1);

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    /// Refuse its requests, drop its notifications.
    Refuse,
    /// The peer has been over the limit for `close_after`: close with 1008.
    Close,
}

/// One connection's buckets.
#[derive(Debug)]
pub(crate) struct Limiter {
    messages: Bucket,
    bytes: Option<Bucket>,
    close_after: Duration,
    /// Since when, and until when, the peer has been refused without a
    /// second's break.
    over: Option<(Instant, Instant)>,
}

impl Limiter {
    pub(crate) fn new(limit: &RateLimit) -> Self {
        let messages = Bucket::new(Quota::per_second(limit.messages).allow_burst(limit.burst), Past::Refused);
        Limiter {
            messages,
            bytes: limit.bytes.map(|bytes| Bucket::new(Quota::per_second(bytes), Past::WholeBurst)),
            close_after: limit.close_after,
            over: None,
        }
    }

    /// Takes `messages` tokens (and `bytes`, if bytes are limited) for a frame.
    pub(crate) fn admit(&mut self, messages: usize, bytes: usize) -> Verdict {
        // A frame refused for its bytes has spent its message tokens: a peer
        // over one limit is held to the other more tightly, never less.
        if self.messages.take(messages) && self.bytes.as_ref().is_none_or(|bucket| bucket.take(bytes)) {
            return Verdict::Admit;
        }
        let now = Instant::now();
        match &mut self.over {
            Some((since, last)) if now.duration_since(*last) <= STILL_OVER => {
                *last = now;
                if now.duration_since(*since) >= self.close_after {
                    return Verdict::Close;
                }
            }
            _ => self.over = Some((now, now)),
        }
        Verdict::Refuse
    }
}

/// What a bucket does with a cost larger than its burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Past {
    /// Refuses it: a batch larger than the burst of messages.
    Refused,
    /// Takes the whole burst: a frame longer than the burst of bytes.
    WholeBurst,
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>,
    burst: NonZeroU32,
    past: Past,
}

impl Bucket {
    fn new(quota: Quota, past: Past) -> Self {
        let clock = TokioClock { origin: Instant::now() };
        Bucket { burst: quota.burst_size(), limiter: RateLimiter::direct_with_clock(quota, clock), past }
    }

    /// Takes `n` tokens if there are as many.
    fn take(&self, n: usize) -> bool {
        let n = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        let n = match self.past {
            Past::WholeBurst => n.min(self.burst.get()),
            Past::Refused if n > self.burst.get() => return false,
            Past::Refused => n,
        };
        matches!(self.limiter.check_n(at_least_one(n)), Ok(Ok(())))
    }
}

/// Tokio's clock, so that a paused test clock drives the buckets too.
#[derive(Clone, Debug)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate_then_a_close_when_it_goes_on() {
        let mut limiter = Limiter::new(&RateLimit::messages_per_second(10).burst(5));
        for _ in 0..5 {
            assert_eq!(limiter.admit(1, 10), Verdict::Admit);
        }
        assert_eq!(limiter.admit(1, 10), Verdict::Refuse);
        // A token comes back every 100 ms.
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(limiter.admit(1, 10), Verdict::Admit);
        assert_eq!(limiter.admit(1, 10), Verdict::Refuse);
        // Refused at least once a second for ten seconds: closed.
        for _ in 0..19 {
            tokio::time::advance(Duration::from_millis(500)).await;
            assert_eq!(until_refused(&mut limiter), (5, Verdict::Refuse));
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(until_refused(&mut limiter), (5, Verdict::Close));
    }

    /// Sends single messages until one is not admitted: how many were, and why it stopped.
    fn until_refused(limiter: &mut Limiter) -> (usize, Verdict) {
        let mut admitted = 0;
        loop {
            match limiter.admit(1, 10) {
                Verdict::Admit => admitted += 1,
                other => return (admitted, other),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_break_of_more_than_a_second_starts_the_spell_over() {
        let limit = RateLimit::messages_per_second(10).close_after(Duration::from_secs(3));
        let mut limiter = Limiter::new(&limit);
        assert_eq!(until_refused(&mut limiter), (10, Verdict::Refuse));
        tokio::time::advance(Duration::from_millis(2500)).await;
        // A new spell, 2.5 s in: without the break it would end in a close at 3.1 s.
        assert_eq!(until_refused(&mut limiter), (10, Verdict::Refuse));
        for _ in 0..4 {
            tokio::time::advance(Duration::from_millis(600)).await;
            assert_eq!(until_refused(&mut limiter), (6, Verdict::Refuse));
        }
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(until_refused(&mut limiter), (6, Verdict::Close));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_larger_than_the_burst_never_passes() {
        let mut limiter = Limiter::new(&RateLimit::messages_per_second(10));
        assert_eq!(limiter.admit(11, 100), Verdict::Refuse);
        assert_eq!(limiter.admit(10, 100), Verdict::Admit);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(limiter.admit(1000, 100), Verdict::Refuse);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_have_their_own_bucket_and_a_huge_frame_takes_all_of_it() {
        let mut limiter = Limiter::new(&RateLimit::messages_per_second(1000).bytes_per_second(1000));
        assert_eq!(limiter.admit(1, 600), Verdict::Admit);
        assert_eq!(limiter.admit(1, 600), Verdict::Refuse);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limiter.admit(1, 1 << 20), Verdict::Admit);
        assert_eq!(limiter.admit(1, 1), Verdict::Refuse);
    }
}
