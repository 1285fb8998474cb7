//! Backoff between attempts, with jitter: the client's reconnects and the
//! Redis subscriber's resubscriptions both wait by it.

use std::time::Duration;

/// When a client reconnects after losing its connection: exponential
/// backoff with jitter, up to a maximum delay, optionally a bounded number
/// of attempts. Set with [`ClientBuilder::reconnect`](crate::client::ClientBuilder::reconnect).
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    initial: Duration,
    max: Duration,
    max_attempts: Option<u32>,
    jitter: f64,
}

impl Default for ReconnectPolicy {
    /// 250 ms, doubling up to 30 s, with jitter, without end.
    fn default() -> Self {
        ReconnectPolicy::exponential(Duration::from_millis(250), Duration::from_secs(30))
    }
}

impl ReconnectPolicy {
    /// Waits `initial` before the first attempt, twice as long before each
    /// next one, never more than `max`; each delay is cut by a random part of
    /// up to half (jitter), so that clients dropped together do not all come
    /// back at the same instant.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        ReconnectPolicy { initial, max: max.max(initial), max_attempts: None, jitter: 0.5 }
    }

    /// Gives up after `attempts` failed attempts in a row.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// How much of each delay is random: 0 (none) to 1 (anywhere from zero
    /// to the full delay); 0.5 by default.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// The delay before attempt `attempt` (from 1), given a random number in
    /// `0..1`.
    pub(crate) fn delay(&self, attempt: u32, random: f64) -> Duration {
        let doubled = self.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(31));
        doubled.min(self.max).mul_f64(1.0 - self.jitter * random.clamp(0.0, 1.0))
    }

    pub(crate) fn gives_up_after(&self, attempt: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempt > max)
    }
}

/// A number in `0..1` for jitter, from the crate's one source of randomness.
pub(crate) fn random_unit() -> f64 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_jitter_only_shortens_them() {
        let policy = ReconnectPolicy::exponential(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (1..=6).map(|attempt| policy.delay(attempt, 0.0)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert_eq!(policy.delay(3, 1.0), ms(200), "at most half taken off by default");
        assert_eq!(policy.clone().jitter(1.0).delay(3, 1.0), Duration::ZERO);
        assert_eq!(policy.delay(u32::MAX, 0.0), ms(1000), "no overflow");
        let random: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(random.iter().all(|r| (0.0..1.0).contains(r)));
        assert!(random.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn attempts_may_be_bounded() {
        let policy = ReconnectPolicy::default().max_attempts(3);
        assert!(!policy.gives_up_after(3));
        assert!(policy.gives_up_after(4));
        assert!(!ReconnectPolicy::default().gives_up_after(u32::MAX));
    }
}
