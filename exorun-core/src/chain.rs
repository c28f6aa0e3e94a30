//! The call chain: which instances the current task's call is nested in, outermost first,
//! across runtimes.
//!
//! An instance handle runs each call inside the chain with itself appended, and refuses a call
//! into an instance already on it (`instance::Error::Reentrant`) instead of waiting for a lock
//! its own caller holds. A link that crosses to another runtime sends the chain along (the wire
//! form is the binder's business), and the serving side runs the call inside what it received,
//! so A -> B -> A fails at once even when B is elsewhere.

tokio::task_local! {
    /// The instances the current task's call chain is inside, outermost first.
    static CALL_CHAIN: Vec<Hop>;
}

/// One call on a chain: the runtime and the instance it runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The runtime's id (`registry::Runtime::id`): distinct within a process, random across.
    pub runtime: u64,
    /// The instance's id within that runtime.
    pub instance: u64,
}

/// The chain of the current task, outermost first (empty outside any call).
pub fn current() -> Vec<Hop> {
    CALL_CHAIN.try_with(Clone::clone).unwrap_or_default()
}

/// Whether `hop` is on the current task's chain.
pub(crate) fn contains(hop: Hop) -> bool {
    CALL_CHAIN
        .try_with(|chain| chain.contains(&hop))
        .unwrap_or(false)
}

/// Runs `work` inside `chain` (a call that arrived from another runtime, or a nested call).
pub async fn within<F: Future>(chain: Vec<Hop>, work: F) -> F::Output {
    CALL_CHAIN.scope(chain, work).await
}

/// The current chain with `hop` appended: the chain a call into `hop` runs inside.
pub(crate) fn extended(hop: Hop) -> Vec<Hop> {
    let mut chain = current();
    chain.push(hop);
    chain
}
