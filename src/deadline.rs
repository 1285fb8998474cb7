//! Instant arithmetic that cannot overflow. Every deadline in the crate is
//! made here: a timeout too long for the clock (`Duration::MAX`, say) means
//! "no deadline", which in practice is thirty years away, as in tokio.

use std::time::Duration;

use tokio::time::Instant;

/// As far as any deadline goes: past it, waiting is the same as waiting forever.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `start + timeout`, or thirty years after `start` when that is sooner.
pub(crate) fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout.min(FAR))
        // Only a clock near the end of its range gets here; a day is still "much later".
        .or_else(|| start.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(start)
}

/// A deadline `timeout` from now (see [`deadline_after`]).
pub(crate) fn deadline_in(timeout: Duration) -> Instant {
    deadline_after(Instant::now(), timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_timeout_past_the_clock_is_far_away_not_a_panic() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR);
        assert_eq!(deadline_in(Duration::MAX), now + FAR);
        // A deadline that far is usable with tokio's timers.
        let waited = tokio::time::timeout_at(deadline_in(Duration::MAX), std::future::ready(7)).await;
        assert_eq!(waited, Ok(7));
    }
}
