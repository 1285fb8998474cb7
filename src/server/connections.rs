//! The connections one endpoint has admitted: the count behind
//! `max_connections`, the live connections a shutdown reaches, and the tasks
//! it waits for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::upgrade::Rejection;
use crate::connection_id::ConnectionId;
use crate::deadline::deadline_in;
use crate::peer::Peer;

pub(crate) struct Connections {
    max: usize,
    shutdown_timeout: Duration,
    /// Connections admitted and not yet ended, upgrades in progress included.
    admitted: AtomicUsize,
    /// Connections past their upgrade, by id.
    live: Mutex<HashMap<ConnectionId, Peer>>,
    /// Every task this endpoint spawned.
    tasks: TaskTracker,
    /// Cancelled when the shutdown starts.
    stopping: CancellationToken,
}

impl Connections {
    pub(crate) fn new(max: usize, shutdown_timeout: Duration) -> Arc<Self> {
        Arc::new(Connections {
            max,
            shutdown_timeout,
            admitted: AtomicUsize::new(0),
            live: Mutex::default(),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
        })
    }

    /// The most connections admitted at once (`max_connections`).
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    fn live(&self) -> MutexGuard<'_, HashMap<ConnectionId, Peer>> {
        crate::sync::lock(&self.live)
    }

    /// Reserves room for one more connection, or says why there is none.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Slot, Rejection> {
        if self.stopping.is_cancelled() {
            return Err(Rejection::ShuttingDown);
        }
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Rejection::Full);
        }
        // The token keeps a shutdown waiting for this connection from here on,
        // also before its task is spawned.
        Ok(Slot { connections: self.clone(), id: None, _task: self.tasks.token() })
    }

    /// Connections open now (past their upgrade, not yet ended).
    pub(crate) fn count(&self) -> usize {
        self.live().len()
    }

    /// Spawns a task that the shutdown waits for.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.tasks.spawn(task));
    }

    /// Cancelled once the shutdown starts.
    pub(crate) fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// Refuses new connections, asks every open one to finish its running
    /// calls (until the shutdown timeout) and close with 1001, and returns
    /// once every task of this endpoint has ended.
    pub(crate) async fn shutdown(&self) {
        self.stopping.cancel();
        let deadline = deadline_in(self.shutdown_timeout);
        let open: Vec<Peer> = self.live().values().cloned().collect();
        for peer in open {
            peer.shutdown(deadline);
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// One admitted connection's place; given back when dropped.
pub(crate) struct Slot {
    connections: Arc<Connections>,
    id: Option<ConnectionId>,
    _task: TaskTrackerToken,
}

impl Slot {
    /// Records the connection as open. One that opens while the server is
    /// shutting down is told to close at once.
    pub(crate) fn attach(&mut self, peer: &Peer) {
        self.connections.live().insert(peer.id(), peer.clone());
        self.id = Some(peer.id());
        // After the insert: a shutdown that began before it is seen here, one
        // that begins after it finds this connection in `live`.
        if self.connections.stopping.is_cancelled() {
            peer.shutdown(Instant::now());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.connections.live().remove(&id);
        }
        self.connections.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{Control, PeerConfig};

    fn peer() -> Peer {
        Peer::new(ConnectionId::next(), &PeerConfig::default())
    }

    #[test]
    fn admits_up_to_the_limit_and_frees_places_as_connections_end() {
        let connections = Connections::new(2, Duration::from_secs(1));
        let mut first = connections.admit().unwrap();
        let second = connections.admit().unwrap();
        assert!(matches!(connections.admit(), Err(Rejection::Full)));
        first.attach(&peer());
        assert_eq!(connections.count(), 1, "only connections past their upgrade count as open");
        drop(first);
        assert_eq!(connections.count(), 0);
        let third = connections.admit().unwrap();
        drop((second, third));
        assert_eq!(connections.admitted.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_shutdown_reaches_open_connections_and_late_ones_and_waits_for_them() {
        let connections = Connections::new(10, Duration::from_secs(1));
        let open = peer();
        let mut slot = connections.admit().unwrap();
        slot.attach(&open);
        let mut upgrading = connections.admit().unwrap();
        let mut shutdown = Box::pin(connections.shutdown());
        assert!(futures_util::poll!(shutdown.as_mut()).is_pending(), "two connections still hold their places");
        assert!(matches!(open.queued_controls().as_slice(), [Control::Shutdown(_)]));
        assert!(matches!(connections.admit(), Err(Rejection::ShuttingDown)));
        let late = peer();
        upgrading.attach(&late);
        assert!(matches!(late.queued_controls().as_slice(), [Control::Shutdown(_)]));
        drop((slot, upgrading));
        tokio::time::timeout(Duration::from_secs(10), shutdown).await.unwrap();
    }
}
