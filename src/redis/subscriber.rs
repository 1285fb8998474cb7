//! The node's subscription to Redis: one dedicated pub/sub connection, the
//! channels this node wants, and their resubscription after Redis comes back.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Msg;
use tokio::sync::{Notify, mpsc};

use crate::backoff::{ReconnectPolicy, random_unit};

/// A change to the channels wanted.
#[derive(Debug)]
pub(crate) enum Change {
    Subscribe(String),
    Unsubscribe(String),
}

impl Change {
    fn channel(&self) -> &str {
        match self {
            Change::Subscribe(channel) | Change::Unsubscribe(channel) => channel,
        }
    }
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
    /// Changes sent to the task and not handled yet, by channel: while one
    /// is pending, what `confirmed` says may be about to change.
    pending: HashMap<String, usize>,
}

impl Subscriptions {
    /// Connected, with `channels` confirmed.
    pub(crate) fn connected(&self, channels: &HashSet<String>) {
        self.update(|state| {
            state.connected = true;
            state.confirmed = channels.clone();
        });
    }

    /// A change for `channel` is on its way to the task.
    pub(crate) fn sent(&self, channel: &str) {
        self.update(|state| *state.pending.entry(channel.to_owned()).or_default() += 1);
    }

    /// The task has handled a change for `channel`.
    fn handled(state: &mut State, channel: &str) {
        if let Some(count) = state.pending.get_mut(channel) {
            *count -= 1;
            if *count == 0 {
                state.pending.remove(channel);
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut crate::sync::lock(&self.state));
        self.changed.notify_waiters();
    }

    /// True once `channel` is confirmed with no change to it pending, or
    /// while Redis is unreachable (nothing published then reaches anyone anyway).
    fn settled(&self, channel: &str) -> bool {
        let state = crate::sync::lock(&self.state);
        !state.connected || (!state.pending.contains_key(channel) && state.confirmed.contains(channel))
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

/// Most changes sent to Redis in one SUBSCRIBE or UNSUBSCRIBE.
const CHANGES_AT_ONCE: usize = 512;

/// Keeps the node subscribed to `wanted` (plus what `changes` adds) until
/// `changes` closes, reconnecting with `policy` when Redis goes away. `first`
/// is a connection subscribed to `wanted` already. The connection is checked
/// with a PING every `ping_every`; every request to Redis gets `patience` to
/// be answered.
pub(crate) async fn run(
    client: redis::Client,
    first: redis::aio::PubSub,
    mut wanted: HashSet<String>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    subscriptions: std::sync::Arc<Subscriptions>,
    (policy, ping_every): (ReconnectPolicy, Duration),
    on_message: impl Fn(Msg),
) {
    // A PING may wait as long as it is apart, but never less than this.
    let patience = ping_every.max(Duration::from_secs(2));
    let mut failures = 0u32;
    let mut first = Some(first);
    let mut batch = Vec::with_capacity(CHANGES_AT_ONCE);
    loop {
        let connected = match first.take() {
            Some(pubsub) => Ok(pubsub),
            None => match tokio::time::timeout(patience, connect(&client, &wanted)).await {
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
                        received = changes.recv_many(&mut batch, CHANGES_AT_ONCE) => {
                            if received == 0 {
                                return;
                            }
                            // Many changes, one request each way: what each channel ends up as.
                            let (subscribe, unsubscribe) = settle(&mut wanted, &batch);
                            let mut failed = false;
                            if !subscribe.is_empty() {
                                let done = tokio::time::timeout(patience, sink.subscribe(&subscribe)).await;
                                failed |= !matches!(done, Ok(Ok(())));
                            }
                            if !unsubscribe.is_empty() && !failed {
                                let done = tokio::time::timeout(patience, sink.unsubscribe(&unsubscribe)).await;
                                failed |= !matches!(done, Ok(Ok(())));
                            }
                            subscriptions.update(|state| {
                                for channel in &subscribe {
                                    state.confirmed.insert(channel.clone());
                                }
                                for channel in &unsubscribe {
                                    state.confirmed.remove(channel);
                                }
                                for change in batch.drain(..) {
                                    Subscriptions::handled(state, change.channel());
                                }
                            });
                            if failed {
                                break "SUBSCRIBE or UNSUBSCRIBE failed";
                            }
                        },
                        _ = ping.tick() => {
                            // Subscribed, Redis answers PING with ["pong", ""]: any answer will do.
                            let answered = tokio::time::timeout(patience, sink.ping::<redis::Value>()).await;
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
                received = changes.recv_many(&mut batch, CHANGES_AT_ONCE) => {
                    if received == 0 {
                        return;
                    }
                    settle(&mut wanted, &batch);
                    subscriptions.update(|state| {
                        for change in batch.drain(..) {
                            Subscriptions::handled(state, change.channel());
                        }
                    });
                },
            }
        }
    }
}

/// Applies `changes` to `wanted`, in order; returns the channels to
/// subscribe to and to unsubscribe from, each once.
fn settle(wanted: &mut HashSet<String>, changes: &[Change]) -> (Vec<String>, Vec<String>) {
    let before = wanted.clone();
    for change in changes {
        match change {
            Change::Subscribe(channel) => wanted.insert(channel.clone()),
            Change::Unsubscribe(channel) => wanted.remove(channel),
        };
    }
    let subscribe = wanted.difference(&before).cloned().collect();
    let unsubscribe = before.difference(wanted).cloned().collect();
    (subscribe, unsubscribe)
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

    #[test]
    fn many_changes_become_one_request_each_way() {
        let mut wanted: HashSet<String> = ["all".into(), "g".into()].into();
        let changes = [
            Change::Subscribe("h".into()),
            Change::Unsubscribe("g".into()),
            Change::Subscribe("g".into()),
            Change::Subscribe("k".into()),
            Change::Unsubscribe("k".into()),
            Change::Unsubscribe("all".into()),
        ];
        let (mut subscribe, unsubscribe) = settle(&mut wanted, &changes);
        subscribe.sort();
        assert_eq!(subscribe, ["h"]);
        assert_eq!(unsubscribe, ["all"]);
        assert_eq!(wanted, ["g".to_owned(), "h".to_owned()].into());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_change_holds_back_confirmation() {
        let subscriptions = Subscriptions::default();
        subscriptions.connected(&["den".to_owned()].into());
        // The last member left and another joined: both changes not handled yet.
        subscriptions.sent("den");
        subscriptions.sent("den");
        let started = tokio::time::Instant::now();
        subscriptions.confirmed("den", Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5), "confirmed while changes were pending");
        subscriptions.update(|state| {
            Subscriptions::handled(state, "den");
            Subscriptions::handled(state, "den");
        });
        let started = tokio::time::Instant::now();
        subscriptions.confirmed("den", Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

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
