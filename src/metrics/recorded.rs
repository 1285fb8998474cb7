//! The metrics, recorded through the `metrics` facade.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use tokio::time::Instant;

use super::Dropped;
use crate::contract::ContractInfo;
use crate::dispatch::{Answer, Reached};
use crate::error::Error;

/// How an incoming call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Error,
    Refused,
    Cancelled,
}

/// The label of every method this side does not have.
const UNKNOWN: &str = "_unknown";

/// One builder's handles, shared by its connections: registered once per
/// method, so that a call costs a lookup and an atomic add, not a key
/// built and hashed by the recorder.
#[derive(Clone, Debug, Default)]
pub(crate) struct Meters(Arc<Tables>);

#[derive(Debug, Default)]
struct Tables {
    /// Incoming calls, by the name of a method this side has.
    incoming: RwLock<HashMap<Box<str>, Arc<MethodMeters>>>,
    unknown: OnceLock<Arc<MethodMeters>>,
    /// This side's calls, by method (names this side's code chose).
    outgoing: RwLock<HashMap<Box<str>, Arc<CallbackMeters>>>,
    send_queue: OnceLock<Histogram>,
}

#[derive(Clone, Debug)]
struct MethodMeters {
    ok: Counter,
    error: Counter,
    refused: Counter,
    cancelled: Counter,
    duration: Histogram,
}

impl MethodMeters {
    fn register(method: &str) -> Arc<Self> {
        let calls = |outcome: &'static str| counter!("wsduplex_calls_total", "method" => method.to_owned(), "outcome" => outcome);
        Arc::new(MethodMeters {
            ok: calls("ok"),
            error: calls("error"),
            refused: calls("refused"),
            cancelled: calls("cancelled"),
            duration: histogram!("wsduplex_call_duration_seconds", "method" => method.to_owned()),
        })
    }

    fn count(&self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Error => &self.error,
            Outcome::Refused => &self.refused,
            Outcome::Cancelled => &self.cancelled,
        }
        .increment(1);
    }
}

#[derive(Debug)]
struct CallbackMeters {
    ok: Counter,
    error: Counter,
    timeout: Counter,
    closed: Counter,
}

impl Meters {
    /// Registers the methods of `contract` now (the rest as they are first answered).
    pub(crate) fn seed(&self, contract: &ContractInfo) {
        let mut incoming = crate::sync::write(&self.0.incoming);
        for method in contract.methods {
            incoming.entry(method.wire_name.into()).or_insert_with(|| MethodMeters::register(method.wire_name));
        }
    }

    fn unknown(&self) -> Arc<MethodMeters> {
        self.0.unknown.get_or_init(|| MethodMeters::register(UNKNOWN)).clone()
    }

    fn known(&self, method: &str) -> Option<Arc<MethodMeters>> {
        crate::sync::read(&self.0.incoming).get(method).cloned()
    }

    /// A method the handler has: its handles, registered on first sight.
    fn found(&self, method: &str) -> Arc<MethodMeters> {
        if let Some(meters) = self.known(method) {
            return meters;
        }
        let mut incoming = crate::sync::write(&self.0.incoming);
        incoming.entry(method.into()).or_insert_with(|| MethodMeters::register(method)).clone()
    }

    /// Starts timing an incoming call to `method` on the connection whose
    /// handles `local` holds: `found` says whether the handler has it,
    /// `None` when only its answer will tell (middleware run first).
    pub(crate) fn incoming(&self, local: &mut Local, method: &str, found: Option<bool>) -> CallMeter {
        let label = match local.get(method) {
            Some(meters) => Label::Known(meters),
            None if found == Some(false) => {
                Label::Known(local.unknown.get_or_insert_with(|| own(&self.unknown())).clone())
            }
            None => match (found, self.known(method)) {
                (_, Some(meters)) => Label::Known(local.insert(method, &meters)),
                (Some(true), None) => Label::Known(local.insert(method, &self.found(method))),
                (_, None) => Label::Pending(method.into(), self.clone()),
            },
        };
        CallMeter { method: label, started: Instant::now() }
    }

    /// Counts a call refused before it was dispatched (by the rate limit,
    /// a full server, a shutdown).
    pub(crate) fn refused(&self, method: &str) {
        self.known(method).unwrap_or_else(|| self.unknown()).count(Outcome::Refused);
    }

    /// Counts a call cancelled before it was dispatched (while parked).
    pub(crate) fn cancelled(&self, method: &str) {
        self.known(method).unwrap_or_else(|| self.unknown()).count(Outcome::Cancelled);
    }

    /// Starts counting a call this side makes to `method`.
    pub(crate) fn outgoing(&self, method: &str) -> CallbackMeter {
        let known = crate::sync::read(&self.0.outgoing).get(method).cloned();
        let meters = known.unwrap_or_else(|| {
            let mut outgoing = crate::sync::write(&self.0.outgoing);
            let register = || {
                let calls = |outcome: &'static str| {
                    counter!("wsduplex_callbacks_total", "method" => method.to_owned(), "outcome" => outcome)
                };
                Arc::new(CallbackMeters {
                    ok: calls("ok"),
                    error: calls("error"),
                    timeout: calls("timeout"),
                    closed: calls("closed"),
                })
            };
            outgoing.entry(method.into()).or_insert_with(register).clone()
        });
        CallbackMeter(meters)
    }

    /// Records the bytes queued for a connection's socket.
    pub(crate) fn send_queue(&self, bytes: usize) {
        self.0.send_queue.get_or_init(|| histogram!("wsduplex_send_queue_bytes")).record(bytes as f64);
    }
}

/// A connection's own copies of the handles of the methods it was called
/// on: a call takes no lock, hash or count shared with other connections.
#[derive(Debug, Default)]
pub(crate) struct Local {
    /// At most one per method the handler has, so a short list.
    methods: Vec<(Box<str>, Arc<MethodMeters>)>,
    unknown: Option<Arc<MethodMeters>>,
}

impl Local {
    fn get(&self, method: &str) -> Option<Arc<MethodMeters>> {
        self.methods.iter().find(|(name, _)| **name == *method).map(|(_, meters)| meters.clone())
    }

    fn insert(&mut self, method: &str, shared: &MethodMeters) -> Arc<MethodMeters> {
        let meters = own(shared);
        self.methods.push((method.into(), meters.clone()));
        meters
    }
}

/// A copy of `shared` for one connection (the handles it holds are shared).
fn own(shared: &MethodMeters) -> Arc<MethodMeters> {
    Arc::new(shared.clone())
}

/// Which handles an incoming call counts under.
#[derive(Debug)]
enum Label {
    Known(Arc<MethodMeters>),
    /// A name not seen yet: known or not once the call is answered.
    Pending(Box<str>, Meters),
}

/// Times one incoming call.
#[derive(Debug)]
pub(crate) struct CallMeter {
    method: Label,
    started: Instant,
}

impl CallMeter {
    /// Counts the call as `answer` tells.
    pub(crate) fn answered(self, answer: &Answer) {
        let outcome = match (answer.reached, answer.error) {
            (Reached::Refused, _) => Outcome::Refused,
            (_, Some(_)) => Outcome::Error,
            (_, None) => Outcome::Ok,
        };
        self.finish(outcome, answer.reached != Reached::NoSuchMethod);
    }

    /// Counts the call as cancelled. Cancelled before its answer, a name
    /// not seen yet counts as unknown: nothing says a method has it (else a
    /// peer could add a label per name by cancelling calls to made-up ones).
    pub(crate) fn cancelled(self) {
        self.finish(Outcome::Cancelled, false);
    }

    /// Counts the call; `method_found` says whether a pending name is a method's.
    fn finish(self, outcome: Outcome, method_found: bool) {
        let meters = match self.method {
            Label::Known(meters) => meters,
            Label::Pending(method, shared) if method_found => shared.found(&method),
            Label::Pending(_, shared) => shared.unknown(),
        };
        meters.count(outcome);
        meters.duration.record(self.started.elapsed().as_secs_f64());
    }
}

/// Counts one call this side makes.
#[derive(Debug)]
pub(crate) struct CallbackMeter(Arc<CallbackMeters>);

impl CallbackMeter {
    pub(crate) fn finished<T>(self, result: &Result<T, Error>) {
        let meters = &self.0;
        match result {
            Ok(_) => &meters.ok,
            Err(Error::Timeout(_)) => &meters.timeout,
            Err(Error::Closed | Error::Transport(_)) => &meters.closed,
            Err(_) => &meters.error,
        }
        .increment(1);
    }
}

/// Counts `count` messages dropped for `reason`.
pub(crate) fn dropped(reason: Dropped, count: u64) {
    let reason = match reason {
        Dropped::SlowConsumer => "slow_consumer",
        Dropped::RateLimit => "rate_limit",
        Dropped::Busy => "busy",
    };
    counter!("wsduplex_notifications_dropped_total", "reason" => reason).increment(count);
}

/// A server's connection opened (`+1`) or ended (`-1`).
pub(crate) fn connections(change: i8) {
    gauge!("wsduplex_connections").increment(f64::from(change));
}

/// A WebSocket upgrade was answered with `status`, not 101.
pub(crate) fn handshake_refused(status: http::StatusCode) {
    counter!("wsduplex_handshakes_refused_total", "status" => status.as_str().to_owned()).increment(1);
}

/// The Redis backplane published `published` messages and failed to publish `failed`.
#[cfg(feature = "redis")]
pub(crate) fn backplane(published: u64, failed: u64) {
    if published > 0 {
        counter!("wsduplex_backplane_published_total").increment(published);
    }
    if failed > 0 {
        counter!("wsduplex_backplane_publish_errors_total").increment(failed);
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    /// Every counter of `name` that moved: its labels' values, and its count.
    fn counts(recorder: &DebuggingRecorder, name: &str) -> Vec<(Vec<String>, u64)> {
        let mut counts: Vec<_> = (recorder.snapshotter().snapshot().into_vec().into_iter())
            .filter(|(key, ..)| key.key().name() == name)
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) if n > 0 => {
                    Some((key.key().labels().map(|l| l.value().to_owned()).collect(), n))
                }
                _ => None,
            })
            .collect();
        counts.sort();
        counts
    }

    fn labels(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn outcomes_and_bounded_labels() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let meters = Meters::default();
            let mut local = Local::default();
            let answered = |reached, error| Answer { reached, error, ..Answer::default() };
            meters.incoming(&mut local, "a.ok", Some(true)).answered(&answered(Reached::Method, None));
            meters.incoming(&mut local, "a.ok", Some(true)).answered(&answered(Reached::Method, Some(5)));
            meters.incoming(&mut local, "a.ok", Some(true)).answered(&answered(Reached::Refused, Some(-32030)));
            meters.incoming(&mut local, "a.ok", Some(true)).cancelled();
            meters.incoming(&mut local, "zz1", Some(false)).answered(&answered(Reached::NoSuchMethod, Some(-32601)));
            // Through middleware: decided by the answer.
            meters.incoming(&mut local, "zz2", None).answered(&answered(Reached::NoSuchMethod, Some(-32601)));
            meters.incoming(&mut local, "b.late", None).answered(&answered(Reached::Method, None));
            meters.refused("zz3");
            // Cancelled before anything said the method exists.
            meters.incoming(&mut local, "zz4", None).cancelled();
            assert_eq!(local.methods.len(), 1, "one method cached, unknown names never");
            assert_eq!(
                counts(&recorder, "wsduplex_calls_total"),
                vec![
                    (labels(&["_unknown", "cancelled"]), 1),
                    (labels(&["_unknown", "error"]), 2),
                    (labels(&["_unknown", "refused"]), 1),
                    (labels(&["a.ok", "cancelled"]), 1),
                    (labels(&["a.ok", "error"]), 1),
                    (labels(&["a.ok", "ok"]), 1),
                    (labels(&["a.ok", "refused"]), 1),
                    (labels(&["b.late", "ok"]), 1),
                ]
            );
        });
    }

    #[test]
    fn callbacks_by_how_they_ended() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let meters = Meters::default();
            meters.outgoing("c.x").finished(&Ok(()));
            meters.outgoing("c.x").finished::<()>(&Err(Error::Timeout(std::time::Duration::from_secs(1))));
            meters.outgoing("c.x").finished::<()>(&Err(Error::Closed));
            meters
                .outgoing("c.y")
                .finished::<()>(&Err(Error::Rpc(jsonrpsee_types::ErrorObjectOwned::owned(1, "no", None::<()>))));
            assert_eq!(
                counts(&recorder, "wsduplex_callbacks_total"),
                vec![
                    (labels(&["c.x", "closed"]), 1),
                    (labels(&["c.x", "ok"]), 1),
                    (labels(&["c.x", "timeout"]), 1),
                    (labels(&["c.y", "error"]), 1),
                ]
            );
        });
    }
}
