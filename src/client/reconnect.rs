//! Reconnecting: the state an application watches, the hook, and which
//! failures are worth another attempt (the backoff is [`crate::backoff`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::peer::CloseReason;

/// Where a client's connection stands; watch it with
/// [`Client::state`](crate::Client::state).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected; calls go out.
    Connected,
    /// Dialling again: attempt `attempt` is under way (its handshake, then
    /// the reconnect hook).
    Connecting {
        /// 1 for the first attempt after the loss.
        attempt: u32,
    },
    /// The connection was lost; attempt `attempt` waits for its turn. Calls
    /// wait (or fail at once, if so configured).
    Reconnecting {
        /// 1 for the first attempt after the loss.
        attempt: u32,
        /// Why the connection was lost, or why the last attempt failed.
        last_error: String,
    },
    /// Closed for good: by this side, without a reconnect policy, after the
    /// last attempt, or because the server refused the handshake.
    Closed {
        /// How the last connection ended.
        reason: CloseReason,
        /// Why reconnecting stopped, if it was tried.
        error: Option<String>,
    },
}

/// The application's code to run after each reconnect.
pub(crate) type ReconnectHook =
    dyn Fn(crate::Client) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static;

/// Whether a failed attempt is worth another: a refusal by the server's own
/// policy (401, 403, 404, ...) will not change by trying again.
pub(crate) fn retryable(error: &crate::Error) -> bool {
    // 408 and 429 say "later", not "never".
    !matches!(error, crate::Error::Refused { status } if (400..500).contains(status) && *status != 408 && *status != 429)
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionState::Connected => f.write_str("connected"),
            ConnectionState::Connecting { attempt } => write!(f, "connecting (attempt {attempt})"),
            ConnectionState::Reconnecting { attempt, last_error } => {
                write!(f, "reconnecting (attempt {attempt}; {last_error})")
            }
            ConnectionState::Closed { error: Some(error), .. } => write!(f, "closed ({error})"),
            ConnectionState::Closed { reason, .. } => write!(f, "closed ({reason:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refusals_are_final() {
        assert!(!retryable(&crate::Error::Refused { status: 401 }));
        assert!(retryable(&crate::Error::Refused { status: 503 }));
        assert!(retryable(&crate::Error::Refused { status: 429 }));
        assert!(retryable(&crate::Error::Closed));
    }
}
