//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): whatever recorder the program installs (a Prometheus exporter,
//! say) gets them; with none installed they cost a few loads and branches.
//!
//! Install the recorder before building servers and clients: a method's
//! handles are registered with the recorder of the moment, the first time
//! the method is seen.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `wsduplex_connections` | gauge | | WebSocket connections a server holds |
//! | `wsduplex_calls_total` | counter | `method`, `outcome` | incoming calls and notifications; `outcome` is `ok`, `error` (answered with an error object), `refused` (by middleware, `#[authorize]` or the rate limit, before the handler ran) or `cancelled` (`$/cancelRequest`) |
//! | `wsduplex_call_duration_seconds` | histogram | `method` | from an incoming call's arrival to its answer |
//! | `wsduplex_callbacks_total` | counter | `method`, `outcome` | calls this side made and awaited (a server's callbacks, a client's calls); `outcome` is `ok`, `error` (the peer's error object, or a reply that did not decode), `timeout` or `closed` |
//! | `wsduplex_notifications_dropped_total` | counter | `reason` | messages dropped: `slow_consumer` (broadcasts a slow client did not get), `rate_limit` and `busy` (incoming notifications over the rate limit, or past the parking) |
//! | `wsduplex_handshakes_refused_total` | counter | `status` | WebSocket upgrades answered with an error status (`400`, `401`, `403`, `426`, `500`, `503`) |
//! | `wsduplex_send_queue_bytes` | histogram | | bytes queued for a connection's socket, each time its task writes |
//! | `wsduplex_backplane_published_total` | counter | | messages the Redis backplane published |
//! | `wsduplex_backplane_publish_errors_total` | counter | | messages it could not publish (Redis failing, or its queue full) |
//!
//! Method labels are bounded: a method this side does not have counts
//! under `_unknown`, never under the name the peer sent. (So does a call
//! refused by the rate limit before its method was ever answered, when the
//! method is not in the contract, as with a merged jsonrpsee module's.)

#[cfg(feature = "metrics")]
mod recorded;
#[cfg(feature = "metrics")]
pub(crate) use recorded::*;

#[cfg(not(feature = "metrics"))]
mod off;
#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;

/// Why a message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    SlowConsumer,
    RateLimit,
    Busy,
}
