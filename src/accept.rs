//! What a listener does when `accept` fails: the standalone server's and
//! the `TlsListener`'s.

use std::io;
use std::time::Duration;

/// Accept errors are about one connection or a passing shortage (of file
/// descriptors, say): log, pause briefly if it is a shortage, keep serving.
pub(crate) async fn accept_failed(error: io::Error) {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock => {
            tracing::debug!(%error, "accept failed");
        }
        _ => {
            tracing::warn!(%error, "accept failed; pausing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
