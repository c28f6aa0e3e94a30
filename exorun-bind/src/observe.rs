//! One wrapper observes every call a link makes and every call this runtime serves: it counts
//! the call by outcome (`exorun_calls_made_total` / `exorun_calls_served_total`), times it
//! (`exorun_call_made_seconds` / `exorun_call_served_seconds`), counts served calls in flight
//! (`exorun_calls_in_flight`), writes one debug line naming its span, and hands the finished
//! span to the trace exporter when one is installed and the span is sampled.
//!
//! Metric handles are made once per linked function and once per exported function (at its
//! first call), so observing a call costs a few atomic operations; the labels are names the
//! runtime has (an export, interface and function that exist; a link's target and method). The
//! wrapper takes the call's future by value and awaits it in place: callers hand it a boxed
//! future, so nothing large is moved per call.

use std::time::Instant;
use std::time::SystemTime;

use exorun_core::trace;

/// How a call ended, as a bounded label: `ok`, a failure's name, or why no reply came.
pub(crate) trait Outcome {
    /// The label.
    fn outcome(&self) -> &'static str;
}

/// The metric handles and labels of one linked or exported function.
pub(crate) struct Observer {
    kind: trace::Kind,
    /// The counter of calls by outcome, for outcomes other than `ok` (made as they happen).
    total: &'static str,
    labels: Vec<(&'static str, String)>,
    ok: metrics::Counter,
    seconds: metrics::Histogram,
    in_flight: Option<metrics::Gauge>,
}

impl Observer {
    /// The observer of the calls a link makes to `method` of `target`.
    pub(crate) fn made(target: &str, method: &str) -> Self {
        let labels = vec![("target", target.to_owned()), ("method", method.to_owned())];
        Self::new(trace::Kind::Client, labels, None)
    }

    /// The observer of the calls served to `interface#function` of the export `export`.
    pub(crate) fn served(export: &str, interface: &str, function: &str) -> Self {
        let labels = vec![
            ("export", export.to_owned()),
            ("interface", interface.to_owned()),
            ("function", function.to_owned()),
        ];
        let in_flight = metrics::gauge!("exorun_calls_in_flight", "export" => export.to_owned());
        Self::new(trace::Kind::Server, labels, Some(in_flight))
    }

    fn new(
        kind: trace::Kind,
        labels: Vec<(&'static str, String)>,
        in_flight: Option<metrics::Gauge>,
    ) -> Self {
        let (total, seconds) = match kind {
            trace::Kind::Client => ("exorun_calls_made_total", "exorun_call_made_seconds"),
            trace::Kind::Server => ("exorun_calls_served_total", "exorun_call_served_seconds"),
        };
        let mut counted = labels.clone();
        counted.push(("outcome", "ok".to_owned()));
        Self {
            kind,
            total,
            ok: metrics::counter!(total, &counted),
            seconds: metrics::histogram!(seconds, &labels),
            labels,
            in_flight,
        }
    }

    /// Runs `call` as span `span`, observed (see the module doc).
    pub(crate) async fn observe<O: Outcome>(
        &self,
        span: trace::Span,
        call: impl Future<Output = O>,
    ) -> O {
        if let Some(in_flight) = &self.in_flight {
            in_flight.increment(1.0);
        }
        let started = Instant::now();
        let ended = call.await;
        let elapsed = started.elapsed();
        if let Some(in_flight) = &self.in_flight {
            in_flight.decrement(1.0);
        }
        self.seconds.record(elapsed.as_secs_f64());
        let outcome = ended.outcome();
        self.log(&span, outcome, elapsed);
        if trace::exporting(&span) {
            self.export(span, elapsed, outcome);
        }
        if outcome == "ok" {
            self.ok.increment(1);
            return ended;
        }
        let mut counted = self.labels.clone();
        counted.push(("outcome", outcome.to_owned()));
        metrics::counter!(self.total, &counted).increment(1);
        ended
    }

    /// The call's debug line (its fields written lazily: a line not logged costs nothing).
    fn log(&self, span: &trace::Span, outcome: &'static str, elapsed: std::time::Duration) {
        let label = |index: usize| self.labels.get(index).map_or("", |(_, value)| value);
        let (trace_id, span_id, parent_id) = (span.trace_hex(), span.span_hex(), span.parent_hex());
        let ok = outcome == "ok";
        let duration_us = elapsed.as_micros();
        match self.kind {
            trace::Kind::Client => tracing::debug!(
                target: "exorun_bind::link::remote",
                target = label(0),
                method = label(1),
                duration_us,
                ok,
                outcome,
                %trace_id,
                %span_id,
                %parent_id,
                "remote call"
            ),
            trace::Kind::Server => tracing::debug!(
                target: "exorun_bind::serve",
                export = label(0),
                interface = label(1),
                function = label(2),
                duration_us,
                ok,
                outcome,
                %trace_id,
                %span_id,
                %parent_id,
                "served call"
            ),
        }
    }

    fn export(&self, span: trace::Span, elapsed: std::time::Duration, outcome: &'static str) {
        let (name, keys): (_, &[&'static str]) = match self.kind {
            trace::Kind::Client => ("remote call", &["exorun.target", "exorun.method"]),
            trace::Kind::Server => (
                "served call",
                &["exorun.export", "exorun.interface", "exorun.function"],
            ),
        };
        let attributes: Vec<(&'static str, &str)> = keys
            .iter()
            .zip(&self.labels)
            .map(|(key, (_, value))| (*key, value.as_str()))
            .collect();
        trace::finish(&trace::Finished {
            span,
            kind: self.kind,
            name,
            started: SystemTime::now() - elapsed,
            elapsed,
            attributes: &attributes,
            outcome,
        });
    }
}
