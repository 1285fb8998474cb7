//! The metrics, recorded through the `metrics` facade.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use tokio::time::Instant;

use super::Dropped;
use crate::contract::ContractInfo;
use crate::dispatch::{Answer, Reached};
use crate::error::Error;

/// How an incoming call ended (in the order of [`MethodMeters::calls`]).
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
    /// By [`Dropped`] reason.
    dropped: OnceLock<[Counter; 4]>,
}

/// One counter per outcome of `name`, for calls to `method`: `outcomes`
/// are the label values, in the order the caller indexes them.
fn per_outcome<const N: usize>(name: &'static str, method: &str, outcomes: [&'static str; N]) -> [Counter; N] {
    outcomes.map(|outcome| counter!(name, "method" => method.to_owned(), "outcome" => outcome))
}

#[derive(Clone, Debug)]
struct MethodMeters {
    /// By [`Outcome`].
    calls: [Counter; 4],
    duration: Histogram,
}

impl MethodMeters {
    fn register(method: &str) -> Arc<Self> {
        Arc::new(MethodMeters {
            calls: per_outcome("wsduplex_calls_total", method, ["ok", "error", "refused", "cancelled"]),
            duration: histogram!("wsduplex_call_duration_seconds", "method" => method.to_owned()),
        })
    }

    fn count(&self, outcome: Outcome) {
        self.calls[outcome as usize].increment(1);
    }
}

/// How a call this side made ended.
#[derive(Clone, Copy, Debug)]
enum Ended {
    Ok,
    Error,
    Timeout,
    Closed,
    Cancelled,
}

/// By [`Ended`].
#[derive(Clone, Debug)]
struct CallbackMeters([Counter; 5]);

impl CallbackMeters {
    fn register(method: &str) -> Arc<Self> {
        let outcomes = ["ok", "error", "timeout", "closed", "cancelled"];
        Arc::new(CallbackMeters(per_outcome("wsduplex_callbacks_total", method, outcomes)))
    }

    fn count(&self, ended: Ended) {
        self.0[ended as usize].increment(1);
    }
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
        CallMeter { method: Some(label), started: Instant::now() }
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

    /// Starts counting a call this side makes to `method` on the
    /// connection whose handles `local` holds.
    pub(crate) fn outgoing(&self, local: &Callbacks, method: &str) -> CallbackMeter {
        let mut cached = crate::sync::lock(&local.0);
        if let Some((_, meters)) = cached.iter().find(|(name, _)| **name == *method) {
            return CallbackMeter(Some(meters.clone()));
        }
        let shared = crate::sync::read(&self.0.outgoing).get(method).cloned();
        let shared = shared.unwrap_or_else(|| {
            let mut outgoing = crate::sync::write(&self.0.outgoing);
            outgoing.entry(method.into()).or_insert_with(|| CallbackMeters::register(method)).clone()
        });
        let meters = Arc::new(CallbackMeters::clone(&shared));
        cached.push((method.into(), meters.clone()));
        CallbackMeter(Some(meters))
    }

    /// Records the bytes queued for a connection's socket.
    pub(crate) fn send_queue(&self, bytes: usize) {
        self.0.send_queue.get_or_init(|| histogram!("wsduplex_send_queue_bytes")).record(bytes as f64);
    }

    /// Counts `count` messages dropped for `reason`.
    pub(crate) fn dropped(&self, reason: Dropped, count: u64) {
        let counters = self.0.dropped.get_or_init(|| {
            ["slow_consumer", "rate_limit", "busy", "shutdown"]
                .map(|reason| counter!("wsduplex_notifications_dropped_total", "reason" => reason))
        });
        let at = match reason {
            Dropped::SlowConsumer => 0,
            Dropped::RateLimit => 1,
            Dropped::Busy => 2,
            Dropped::Shutdown => 3,
        };
        counters[at].increment(count);
    }
}

/// A connection's own copies of the handles of the methods it was called
/// on: a call takes no lock, hash or reference count shared with other
/// connections (the counters they point to are shared, as they must be).
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

/// Like [`Local`], for the calls this side makes on one connection (from
/// any task, hence the lock; one per connection, so rarely contended).
#[derive(Debug, Default)]
pub(crate) struct Callbacks(Mutex<Vec<(Box<str>, Arc<CallbackMeters>)>>);

/// Which handles an incoming call counts under.
#[derive(Debug)]
enum Label {
    Known(Arc<MethodMeters>),
    /// A name not seen yet: a method's once its method answers it, else unknown.
    Pending(Box<str>, Meters),
}

/// Times one incoming call. Dropped before it was answered (its connection
/// ended while it ran), it counts as cancelled.
#[derive(Debug)]
pub(crate) struct CallMeter {
    /// `None` once counted.
    method: Option<Label>,
    started: Instant,
}

impl CallMeter {
    /// Counts the call as `answer` tells.
    pub(crate) fn answered(mut self, answer: &Answer) {
        let outcome = match (answer.reached, answer.error) {
            (Reached::Refused, _) => Outcome::Refused,
            (_, Some(_)) => Outcome::Error,
            (_, None) => Outcome::Ok,
        };
        // Only a method's own answer proves it exists: a middleware's
        // refusal says nothing of the name (else a peer could add a label
        // per made-up name).
        self.finish(outcome, answer.reached == Reached::Method);
    }

    /// Counts the call as cancelled.
    pub(crate) fn cancelled(mut self) {
        self.finish(Outcome::Cancelled, false);
    }

    /// Counts the call; `method_found` says whether a pending name is a method's.
    fn finish(&mut self, outcome: Outcome, method_found: bool) {
        let meters = match self.method.take() {
            None => return,
            Some(Label::Known(meters)) => meters,
            Some(Label::Pending(method, shared)) if method_found => shared.found(&method),
            Some(Label::Pending(_, shared)) => shared.unknown(),
        };
        meters.count(outcome);
        meters.duration.record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for CallMeter {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled, false);
    }
}

/// Counts one call this side makes. Dropped before it finished (its caller
/// gave up on it), it counts as cancelled.
#[derive(Debug)]
pub(crate) struct CallbackMeter(Option<Arc<CallbackMeters>>);

impl CallbackMeter {
    pub(crate) fn finished<T>(mut self, result: &Result<T, Error>) {
        let Some(meters) = self.0.take() else { return };
        meters.count(match result {
            Ok(_) => Ended::Ok,
            Err(Error::Timeout(_)) => Ended::Timeout,
            Err(Error::Closed | Error::Transport(_)) => Ended::Closed,
            Err(_) => Ended::Error,
        });
    }
}

impl Drop for CallbackMeter {
    fn drop(&mut self) {
        if let Some(meters) = self.0.take() {
            meters.count(Ended::Cancelled);
        }
    }
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
            // Cancelled before anything said the method exists; refused by a
            // middleware; dropped with its connection.
            meters.incoming(&mut local, "zz4", None).cancelled();
            meters.incoming(&mut local, "zz5", None).answered(&answered(Reached::Refused, Some(-32050)));
            drop(meters.incoming(&mut local, "a.ok", Some(true)));
            assert_eq!(local.methods.len(), 1, "one method cached, unknown names never");
            assert_eq!(
                counts(&recorder, "wsduplex_calls_total"),
                vec![
                    (labels(&["_unknown", "cancelled"]), 1),
                    (labels(&["_unknown", "error"]), 2),
                    (labels(&["_unknown", "refused"]), 2),
                    (labels(&["a.ok", "cancelled"]), 2),
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
            let local = Callbacks::default();
            meters.outgoing(&local, "c.x").finished(&Ok(()));
            meters.outgoing(&local, "c.x").finished::<()>(&Err(Error::Timeout(std::time::Duration::from_secs(1))));
            meters.outgoing(&local, "c.x").finished::<()>(&Err(Error::Closed));
            // The caller gave up on it.
            drop(meters.outgoing(&local, "c.x"));
            meters
                .outgoing(&local, "c.y")
                .finished::<()>(&Err(Error::Rpc(jsonrpsee_types::ErrorObjectOwned::owned(1, "no", None::<()>))));
            assert_eq!(
                counts(&recorder, "wsduplex_callbacks_total"),
                vec![
                    (labels(&["c.x", "cancelled"]), 1),
                    (labels(&["c.x", "closed"]), 1),
                    (labels(&["c.x", "ok"]), 1),
                    (labels(&["c.x", "timeout"]), 1),
                    (labels(&["c.y", "error"]), 1),
                ]
            );
        });
    }
}
