//! The node's subscription to Redis: one dedicated pub/sub connection, the
//! channels this node wants, and their resubscription after Redis comes back.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Msg;
use tokio::sync::{Notify, mpsc};

use crate::client::{ReconnectPolicy, random_unit};

/// A change to the channels wanted.
#[derive(Debug)]
pub(crate) enum Change {
    Subscribe(String),
    Unsubscribe(String),
}

/// Which wanted channels Redis has confirmed, for [`Subscriptions::confirmed`].
#[derive(Default)]
pub(crate) struct Subscriptions {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    connected: bool,
    confirmed: HashSet<String>,
}

impl Subscriptions {
    /// Connected, with `channels` confirmed.
    pub(crate) fn connected(&self, channels: &HashSet<String>) {
        self.update(|state| {
            state.connected = true;
            state.confirmed = channels.clone();
        });
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_waiters();
    }

    /// True once `channel` is confirmed, or while Redis is unreachable
    /// (nothing published then reaches anyone anyway).
    fn settled(&self, channel: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        !state.connected || state.confirmed.contains(channel)
    }

    /// Resolves once `channel` is settled, or after `limit`.
    pub(crate) async fn confirmed(&self, channel: &str, limit: Duration) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.settled(channel) {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// Keeps the node subscribed to `wanted` (plus what `changes` adds) until
/// `changes` closes, reconnecting with `policy` when Redis goes away. `first`
/// is a connection subscribed to `wanted` already.
pub(crate) async fn run(
    client: redis::Client,
    first: redis::aio::PubSub,
    mut wanted: HashSet<String>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    subscriptions: std::sync::Arc<Subscriptions>,
    (policy, ping_every): (ReconnectPolicy, Duration),
    on_message: impl Fn(Msg),
) {
    let mut failures = 0u32;
    let mut first = Some(first);
    loop {
        let connected = match first.take() {
            Some(pubsub) => Ok(pubsub),
            None => match tokio::time::timeout(ping_every, connect(&client, &wanted)).await {
                Ok(connected) => connected,
                Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "connecting took too long"))),
            },
        };
        match connected {
            Ok(pubsub) => {
                if failures > 0 {
                    tracing::info!(channels = wanted.len(), "reconnected to Redis and subscribed again");
                }
                failures = 0;
                subscriptions.connected(&wanted);
                let (mut sink, mut stream) = pubsub.split();
                let mut ping = tokio::time::interval(ping_every);
                ping.tick().await;
                let lost = loop {
                    tokio::select! {
                        message = stream.next() => match message {
                            Some(message) => on_message(message),
                            None => break "the connection closed",
                        },
                        change = changes.recv() => match change {
                            None => return,
                            Some(Change::Subscribe(channel)) => {
                                if wanted.insert(channel.clone()) {
                                    // Bounded like a PING: a frozen Redis must not hold the loop.
                                    let done = tokio::time::timeout(ping_every, sink.subscribe(&channel)).await;
                                    if !matches!(done, Ok(Ok(()))) {
                                        break "SUBSCRIBE failed";
                                    }
                                    subscriptions.update(|state| {
                                        state.confirmed.insert(channel);
                                    });
                                }
                            }
                            Some(Change::Unsubscribe(channel)) => {
                                wanted.remove(&channel);
                                subscriptions.update(|state| {
                                    state.confirmed.remove(&channel);
                                });
                                let done = tokio::time::timeout(ping_every, sink.unsubscribe(&channel)).await;
                                if !matches!(done, Ok(Ok(()))) {
                                    break "UNSUBSCRIBE failed";
                                }
                            }
                        },
                        _ = ping.tick() => {
                            // Subscribed, Redis answers PING with ["pong", ""]: any answer will do.
                            let answered = tokio::time::timeout(ping_every, sink.ping::<redis::Value>()).await;
                            if !matches!(answered, Ok(Ok(_))) {
                                break "PING went unanswered";
                            }
                        }
                    }
                };
                tracing::warn!(reason = lost, "lost the subscription to Redis; reconnecting");
                subscriptions.update(|state| {
                    state.connected = false;
                    state.confirmed.clear();
                });
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "cannot subscribe to Redis; retrying");
                } else {
                    tracing::debug!(error = %e, attempt = failures + 1, "cannot subscribe to Redis; retrying");
                }
            }
        }
        failures = failures.saturating_add(1);
        // Wait before the next attempt, still taking changes to what is wanted.
        let pause = tokio::time::sleep(policy.delay(failures, random_unit()));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                change = changes.recv() => match change {
                    None => return,
                    Some(Change::Subscribe(channel)) => {
                        wanted.insert(channel);
                    }
                    Some(Change::Unsubscribe(channel)) => {
                        wanted.remove(&channel);
                    }
                },
            }
        }
    }
}

/// A pub/sub connection subscribed to every channel of `wanted`.
pub(crate) async fn connect(
    client: &redis::Client,
    wanted: &HashSet<String>,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    if !wanted.is_empty() {
        let channels: Vec<&String> = wanted.iter().collect();
        pubsub.subscribe(channels).await?;
    }
    Ok(pubsub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn confirmation_waits_for_the_channel_or_gives_up() {
        let subscriptions = std::sync::Arc::new(Subscriptions::default());
        subscriptions.update(|state| state.connected = true);
        // Not confirmed: waits out the limit.
        let started = tokio::time::Instant::now();
        subscriptions.confirmed("a", Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // Confirmed while waiting: returns then.
        let waiter = tokio::spawn({
            let subscriptions = subscriptions.clone();
            async move { subscriptions.confirmed("b", Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        subscriptions.update(|state| {
            state.confirmed.insert("b".into());
        });
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        // Disconnected: nothing to wait for.
        subscriptions.update(|state| state.connected = false);
        let started = tokio::time::Instant::now();
        subscriptions.confirmed("c", Duration::from_secs(60)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
