//! Sampling and exporting spans: roots sampled at the ratio set, children keeping their
//! parent's decision, and only sampled spans handed to the exporter. One test function: the
//! ratio and the exporter are process-wide.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::SystemTime;

use exorun_core::trace;
use proptest::prelude::*;

struct Recorder(Arc<Mutex<Vec<(trace::Span, String)>>>);

impl trace::Exporter for Recorder {
    fn export(&self, finished: &trace::Finished<'_>) {
        let mut seen = self.0.lock().unwrap();
        seen.push((finished.span, finished.outcome.to_owned()));
    }
}

fn finished(span: trace::Span, outcome: &str) -> trace::Finished<'_> {
    trace::Finished {
        span,
        kind: trace::Kind::Server,
        name: "served call",
        started: SystemTime::now(),
        elapsed: Duration::from_micros(5),
        attributes: &[],
        outcome,
    }
}

fn sampled_of(count: usize) -> usize {
    (0..count).filter(|_| trace::Span::root().sampled()).count()
}

#[test]
fn roots_are_sampled_at_the_ratio_and_only_sampled_spans_are_exported() {
    assert!(sampled_of(1000) == 1000, "every root by default");
    let root = trace::Span::root();
    assert!(!trace::exporting(&root), "no exporter yet");
    let seen = Arc::new(Mutex::new(Vec::new()));
    assert!(trace::set_exporter(Box::new(Recorder(Arc::clone(&seen)))));
    assert!(
        !trace::set_exporter(Box::new(Recorder(Arc::clone(&seen)))),
        "the first exporter stays"
    );
    assert!(trace::exporting(&root));
    trace::finish(&finished(root, "ok"));
    trace::set_sampling(0.0);
    assert_eq!(sampled_of(1000), 0);
    let unsampled = trace::Span::root();
    assert!(!trace::exporting(&unsampled));
    trace::finish(&finished(unsampled, "app_trapped"));
    let child = trace::Span::child_of(unsampled.trace_id, unsampled.span_id, unsampled.flags);
    trace::finish(&finished(child, "app_trapped"));
    trace::set_sampling(0.5);
    // 1000 draws at one half: 500 +- 16 (one standard deviation); 350..650 is nine of them.
    let half = sampled_of(1000);
    assert!((350..650).contains(&half), "{half}");
    trace::set_sampling(1.0);
    assert_eq!(sampled_of(1000), 1000);
    trace::set_sampling(f64::NAN);
    assert_eq!(sampled_of(100), 0, "NaN samples nothing");
    trace::set_sampling(1.0);
    assert_eq!(*seen.lock().unwrap(), vec![(root, "ok".to_owned())]);
}

proptest! {
    /// A child keeps its trace, its parent's sampling decision, and names its parent; its own
    /// id is new.
    #[test]
    fn a_child_keeps_its_trace_and_decision(
        trace_id in any::<[u8; 16]>(),
        parent_id in any::<[u8; 8]>(),
        flags in any::<u8>(),
    ) {
        let child = trace::Span::child_of(trace_id, parent_id, flags);
        prop_assert_eq!(child.trace_id, trace_id);
        prop_assert_eq!(child.parent_id, parent_id);
        prop_assert_eq!(child.sampled(), flags & 1 == 1);
        let sibling = trace::Span::child_of(trace_id, parent_id, flags);
        prop_assert_ne!(child.span_id, sibling.span_id);
    }
}
