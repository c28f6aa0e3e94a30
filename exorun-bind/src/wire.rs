//! Where the two stacks meet, value for value: exorun-core's call chain and the wire's hops,
//! and a span and the trace context a frame carries. Every remote link and every served call
//! converts through here; failures are the serving side's (`serve`), since only it makes them.

use exorun_core::call;
use exorun_core::trace;
use neorpc::frame;

/// The wire form of a call chain.
pub(crate) fn to_wire(chain: &[call::Hop]) -> Vec<frame::Hop> {
    let hops = chain.iter().map(|hop| frame::Hop {
        runtime: hop.runtime,
        instance: hop.instance,
    });
    hops.collect()
}

/// A call chain received from the wire.
pub(crate) fn from_wire(chain: &[frame::Hop]) -> Vec<call::Hop> {
    let hops = chain.iter().map(|hop| call::Hop {
        runtime: hop.runtime,
        instance: hop.instance,
    });
    hops.collect()
}

/// The trace context a call made as `span` carries: the callee's parent is `span`.
pub(crate) fn trace_context(span: &trace::Span) -> frame::TraceContext {
    frame::TraceContext {
        trace_id: span.trace_id,
        parent_id: span.span_id,
        flags: span.flags,
    }
}

/// The span a served call runs as: a child of the caller's, or the root of a trace of its own
/// (also when the caller's ids are all zeros, which W3C calls invalid and collectors refuse).
pub(crate) fn served_span(caller: Option<frame::TraceContext>) -> trace::Span {
    let valid =
        |caller: &frame::TraceContext| caller.trace_id != [0; 16] && caller.parent_id != [0; 8];
    match caller.filter(valid) {
        Some(caller) => trace::Span::child_of(caller.trace_id, caller.parent_id, caller.flags),
        None => trace::Span::root(),
    }
}

/// The span of a call made now: a child of the current call's, or the root of a new trace.
pub(crate) fn made_span() -> trace::Span {
    match call::span() {
        Some(current) => trace::Span::child_of(current.trace_id, current.span_id, current.flags),
        None => trace::Span::root(),
    }
}
