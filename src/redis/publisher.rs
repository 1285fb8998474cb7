//! The node's outgoing messages: queued without waiting, published in order,
//! many to a round trip.

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

/// One message for a channel.
pub(crate) type Outgoing = (String, Vec<u8>);

/// Most messages in one pipeline.
const BATCH: usize = 256;

/// Publishes what `queue` holds until it closes. While Redis is unreachable
/// messages are dropped (at most once), with one log line when that starts
/// and one when it ends.
pub(crate) async fn run(mut connection: ConnectionManager, mut queue: mpsc::Receiver<Outgoing>) {
    let mut failing = false;
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, message) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(message).ignore();
        }
        match pipe.query_async::<()>(&mut connection).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("publishing to Redis again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, lost = batch.len(), "cannot publish to Redis; messages to other nodes are lost until it is back");
            }
            Err(e) => tracing::debug!(error = %e, lost = batch.len(), "cannot publish to Redis"),
        }
        batch.clear();
    }
}
