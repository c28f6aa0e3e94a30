//! The context of the current call: one task-local that every host function and nested call on
//! its path can read, entered once per call an embedder serves.
//!
//! - **The chain**: which instances the call is nested in, outermost first, across runtimes.
//!   An instance handle runs each call inside the chain with itself appended, and refuses a
//!   call into an instance already on it (`instance::Error::Reentrant`) instead of waiting for
//!   a lock its own caller holds. A link that crosses to another runtime sends the chain along
//!   (the wire form is the binder's business), and the serving side runs the call inside what
//!   it received, so A -> B -> A fails at once even when B is elsewhere.
//! - **The principal**: who the call came from. exorun-core knows no key formats: a principal is
//!   text. A server that serves a call made over an authenticated connection runs it as the
//!   caller's node key (`ed25519:<hex>`, as exorun-transport writes it); a call made inside this
//!   runtime (a local link, an embedder's own call) keeps the principal of the call it is
//!   nested in. Outside any call, or for a plaintext caller, there is none.
//! - **The grant**: what a guard granted the call (the caveats its capability carries), so an
//!   app can enforce rules finer than a function.
//! - **The party**: who the call's failures count against when supervision backs off a replica
//!   (see `supervision`): the principal's, when there is one; otherwise what the embedder names
//!   (a server names the connection an anonymous call came on, HTTP the request's source); `0`
//!   for this runtime's own calls. A replica that a party's call failed backs off for that
//!   party only.
//! - **The span**: the trace the call belongs to (`trace::Span`), which remote links carry
//!   across runtimes and guest logs name.
//!
//! Entering a context moves only the future it wraps into one scope; an embedder that serves
//! many calls boxes its call's future once and hands the box in, so nothing large is moved per
//! call.

use std::hash::Hash;
use std::hash::Hasher;
use std::sync::Arc;

use crate::trace::Span;

tokio::task_local! {
    /// The context of the current task's call.
    static CURRENT: Context;
}

/// One call on a chain: the runtime and the instance it runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The runtime's id (`Runtime::id`): distinct within a process, random across.
    pub runtime: u64,
    /// The instance's id within that runtime.
    pub instance: u64,
}

/// What a call runs inside: its chain, principal, party, grant and span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The instances the call is nested in, outermost first.
    pub chain: Vec<Hop>,
    /// Who the call came from (`None`: anonymous, or this runtime's own).
    pub principal: Option<Arc<str>>,
    /// Who its failures count against (see the module doc).
    pub party: u64,
    /// The caveats a guard granted it with (empty: none, or no guard).
    pub caveats: Arc<[String]>,
    /// The span it runs as, if it belongs to a trace.
    pub span: Option<Span>,
}

impl Context {
    /// A call from `principal` (its party the principal's), or, with none, one accounted to
    /// `anonymous` (for example, the connection it came on).
    pub fn from(principal: Option<&str>, anonymous: u64) -> Self {
        let party = principal.map_or(anonymous, party_of);
        Self {
            principal: principal.map(Arc::from),
            party,
            ..Self::default()
        }
    }

    /// The context of the current call (the default outside any).
    pub fn current() -> Self {
        CURRENT.try_with(Clone::clone).unwrap_or_default()
    }

    /// Runs `work` inside this context.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }
}

/// The chain of the current call, outermost first (empty outside any call).
pub fn chain() -> Vec<Hop> {
    CURRENT
        .try_with(|context| context.chain.clone())
        .unwrap_or_default()
}

/// The principal of the current call (`None`: anonymous, or outside any call).
pub fn principal() -> Option<String> {
    let principal = CURRENT.try_with(|context| context.principal.as_deref().map(str::to_owned));
    principal.ok().flatten()
}

/// The caveats a guard granted the current call with (empty: none, or no guard).
pub fn caveats() -> Vec<String> {
    let caveats = CURRENT.try_with(|context| context.caveats.to_vec());
    caveats.unwrap_or_default()
}

/// The party of the current call (`0` outside any call an embedder scoped).
pub fn party() -> u64 {
    CURRENT.try_with(|context| context.party).unwrap_or(0)
}

/// The span of the current call, if it belongs to a trace.
pub fn span() -> Option<Span> {
    CURRENT.try_with(|context| context.span).ok().flatten()
}

/// Whether `hop` is on the current call's chain.
pub(crate) fn contains(hop: Hop) -> bool {
    let on_chain = CURRENT.try_with(|context| context.chain.contains(&hop));
    on_chain.unwrap_or(false)
}

/// Runs `work` as a call into `hop`, nested in the current call: the same principal, party,
/// grant and span, with `hop` appended to the chain.
pub(crate) async fn nested<F: Future>(hop: Hop, work: F) -> F::Output {
    let mut context = Context::current();
    context.chain.push(hop);
    context.scope(work).await
}

/// The party of a principal: a hash with fixed keys, the same in every process (never `0`,
/// which is this runtime's own).
fn party_of(principal: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    principal.hash(&mut hasher);
    hasher.finish() | 1 << 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_context_is_seen_inside_and_only_inside() {
        assert_eq!(principal(), None);
        let context = Context::from(Some("ed25519:00"), 0);
        let seen = context
            .scope(async {
                tokio::task::yield_now().await;
                principal()
            })
            .await;
        assert_eq!(seen.as_deref(), Some("ed25519:00"));
        assert_eq!(principal(), None);
        assert_eq!(Context::current(), Context::default());
    }

    #[tokio::test]
    async fn a_party_is_the_principal_when_there_is_one_else_what_the_embedder_names() {
        assert_eq!(party(), 0);
        let key = Some("ed25519:01");
        let keyed = Context::from(key, 7).scope(async { party() }).await;
        let again = Context::from(key, 9).scope(async { party() }).await;
        assert_eq!(keyed, again, "the key decides");
        assert_ne!(keyed, 7);
        assert_eq!(Context::from(None, 7).scope(async { party() }).await, 7);
        assert_eq!(Context::from(None, 0).scope(async { party() }).await, 0);
    }

    #[tokio::test]
    async fn a_nested_call_keeps_its_callers_context_and_extends_the_chain() {
        let outer = Hop {
            runtime: 1,
            instance: 2,
        };
        let inner = Hop {
            runtime: 1,
            instance: 3,
        };
        let mut context = Context::from(Some("ed25519:02"), 0);
        context.chain = vec![outer];
        context.caveats = Arc::from(vec!["read-only".to_owned()]);
        let seen = context
            .clone()
            .scope(nested(inner, async {
                (chain(), principal(), caveats(), contains(outer))
            }))
            .await;
        let principal = Some("ed25519:02".to_owned());
        let caveats = vec!["read-only".to_owned()];
        assert_eq!(seen, (vec![outer, inner], principal, caveats, true));
        assert!(!contains(outer), "nothing outside the call");
    }
}
