//! The node's outgoing messages: queued without waiting, published in order,
//! many to a round trip.

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

/// One message for a channel.
pub(crate) struct Publication {
    pub(crate) channel: String,
    pub(crate) message: Vec<u8>,
    /// Told how many nodes received it (Redis's count of subscribers), or
    /// why it could not be published.
    pub(crate) heard: Option<oneshot::Sender<Result<usize, String>>>,
}

/// Most messages in one pipeline.
const BATCH: usize = 256;

/// Publishes what `queue` holds until it closes. While Redis is unreachable
/// messages are dropped (at most once), with one log line when that starts
/// and one when it ends.
pub(crate) async fn run(mut connection: ConnectionManager, mut queue: mpsc::Receiver<Publication>) {
    let mut failing = false;
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        // A call whose caller gave up (its deadline passed while queued) is not sent.
        batch.retain(|outgoing| !outgoing.heard.as_ref().is_some_and(oneshot::Sender::is_closed));
        if batch.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for outgoing in &batch {
            pipe.cmd("PUBLISH").arg(&outgoing.channel).arg(&outgoing.message);
        }
        let published: redis::RedisResult<Vec<usize>> = pipe.query_async(&mut connection).await;
        let sent = batch.len() as u64;
        match &published {
            Ok(_) => crate::metrics::backplane(sent, 0),
            Err(_) => crate::metrics::backplane(0, sent),
        }
        match &published {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("publishing to Redis again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, lost = batch.len(), "cannot publish to Redis; messages to other nodes are lost until it is back");
            }
            Err(e) => tracing::debug!(error = %e, lost = batch.len(), "cannot publish to Redis"),
        }
        for (i, outgoing) in batch.drain(..).enumerate() {
            if let Some(heard) = outgoing.heard {
                let count = match &published {
                    Ok(counts) => Ok(counts.get(i).copied().unwrap_or(0)),
                    Err(e) => Err(e.to_string()),
                };
                let _ = heard.send(count);
            }
        }
    }
}
