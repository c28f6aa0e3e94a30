//! Each exported function's metrics: calls served by outcome, their durations, calls in
//! flight; handles made at a function's first call, so a call costs a few atomic operations.

use std::sync::Arc;

use dashmap::DashMap;
use exorun_transport::handler;

/// One exported function's metric handles, looked up once (a call then costs a few atomic
/// operations): calls that succeeded, durations, calls in flight; and its labels, for the
/// counters of failures (made as they happen).
pub(super) struct Measures {
    pub(super) labels: [(&'static str, String); 3],
    ok: metrics::Counter,
    seconds: metrics::Histogram,
    in_flight: metrics::Gauge,
}

impl Measures {
    fn new(export: &str, interface: &str, function: &str) -> Self {
        let labels = [
            ("export", export.to_owned()),
            ("interface", interface.to_owned()),
            ("function", function.to_owned()),
        ];
        let mut counted = labels.to_vec();
        counted.push(("outcome", "ok".to_owned()));
        Self {
            ok: metrics::counter!("exorun_calls_served_total", &counted),
            seconds: metrics::histogram!("exorun_call_served_seconds", &labels),
            in_flight: metrics::gauge!("exorun_calls_in_flight", "export" => export.to_owned()),
            labels,
        }
    }
}

/// The metric handles of `method` of the export whose handles are `measures`, made at its
/// first call.
pub(super) fn measures_of(
    measures: &DashMap<String, Arc<Measures>>,
    export: &str,
    method: &str,
    interface: &str,
    function: &str,
) -> Arc<Measures> {
    if let Some(found) = measures.get(method) {
        return Arc::clone(found.value());
    }
    let made = Arc::new(Measures::new(export, interface, function));
    let entry = measures.entry(method.to_owned()).or_insert(made);
    Arc::clone(entry.value())
}

/// Runs a resolved call, counting it (`exorun_calls_served_total` by export, interface,
/// function and outcome), timing it (`exorun_call_served_seconds`) and counting it in flight
/// while it runs (`exorun_calls_in_flight` by export).
pub(super) async fn measured(
    measures: Arc<Measures>,
    call: impl Future<Output = handler::Outcome>,
) -> handler::Outcome {
    measures.in_flight.increment(1.0);
    let started = std::time::Instant::now();
    let outcome = call.await;
    measures.in_flight.decrement(1.0);
    measures.seconds.record(started.elapsed().as_secs_f64());
    let Err(failure) = &outcome else {
        measures.ok.increment(1);
        return outcome;
    };
    let mut counted = measures.labels.to_vec();
    counted.push(("outcome", failure.name().to_owned()));
    metrics::counter!("exorun_calls_served_total", &counted).increment(1);
    outcome
}
