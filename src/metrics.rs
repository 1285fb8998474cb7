//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): whatever recorder the program installs (a Prometheus exporter,
//! say) gets them. With none installed, a call still costs a lookup in its
//! connection's short list of methods and two clock reads (BENCHMARKS.md
//! measures what that costs); without the feature, nothing.
//!
//! Install the recorder before building servers and clients: a method's
//! handles are registered with the recorder of the moment, the first time
//! the method is seen.
//!
//! The README's *In production* section lists every metric with its kind
//! and labels; the chat example serves them at `/metrics` (`--metrics ADDR`).
//! With `metrics-exporter-prometheus`, for example:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Before any server or client is built.
//! let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
//! // ... build and start the server; then serve this at /metrics, and call
//! // `prometheus.run_upkeep()` every few seconds.
//! let text: String = prometheus.render();
//! # drop(text);
//! # Ok(())
//! # }
//! ```
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
    Shutdown,
}
