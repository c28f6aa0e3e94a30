//! Who the current call came from: the principal an embedder received it from, visible to
//! every host function and nested call on its path, and the party a failure is accounted to.
//!
//! exorun-core knows no key formats: a principal is text. A server that serves a call made
//! over an authenticated connection runs it inside the caller's node key (`ed25519:<hex>`, as
//! exorun-transport writes it); a call made inside this runtime (a local link, an embedder's
//! own call) keeps the principal of the call it is nested in, so a host function deep in a
//! chain sees who called into this runtime. Outside any call, or for a plaintext caller,
//! there is none.
//!
//! A call that a guard let through also carries what it was granted (`caveats`), so an app can
//! enforce rules finer than a function (per key, per argument).
//!
//! The **party** of a call is who its failures count against when supervision backs off a
//! replica (see `supervision`): the principal's, when there is one; otherwise what the
//! embedder names (a server names the connection an anonymous call came on); `0` for this
//! runtime's own calls. A replica that a party's call failed backs off for that party only:
//! another party's call restarts it at once instead of failing with someone else's fault.

use std::hash::Hash;
use std::hash::Hasher;

tokio::task_local! {
    /// The principal and party of the current task's outermost call.
    static CALLER: (Option<String>, u64);
    /// What a guard granted the current call: the caveats its capability carries.
    static GRANT: Vec<String>;
}

/// The caveats a guard granted the current call with (empty: none, or no guard).
pub fn caveats() -> Vec<String> {
    GRANT.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `work` as a call granted with `caveats` (what a guard's grant carries), which every
/// host function on its path can read (`caveats`).
pub async fn within_grant<F: Future>(caveats: Vec<String>, work: F) -> F::Output {
    GRANT.scope(caveats, work).await
}

/// The principal of the current call (`None`: anonymous, or outside any call).
pub fn current() -> Option<String> {
    CALLER
        .try_with(|(principal, _)| principal.clone())
        .ok()
        .flatten()
}

/// The party of the current call (`0` outside any call an embedder scoped).
pub fn party() -> u64 {
    CALLER.try_with(|(_, party)| *party).unwrap_or(0)
}

/// Runs `work` as a call from `principal` (its party the principal's, or `0` for none).
pub async fn within<F: Future>(principal: Option<String>, work: F) -> F::Output {
    within_party(principal, 0, work).await
}

/// Runs `work` as a call from `principal`, accounted to the principal's party when there is a
/// principal and to `anonymous` (for example, the connection it came on) when there is not.
pub async fn within_party<F: Future>(
    principal: Option<String>,
    anonymous: u64,
    work: F,
) -> F::Output {
    let party = principal.as_deref().map_or(anonymous, party_of);
    CALLER.scope((principal, party), work).await
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
    async fn the_principal_is_seen_inside_and_only_inside() {
        assert_eq!(current(), None);
        let seen = within(Some("ed25519:00".to_owned()), async {
            tokio::task::yield_now().await;
            current()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("ed25519:00"));
        assert_eq!(current(), None);
    }

    #[tokio::test]
    async fn a_party_is_the_principal_when_there_is_one_else_what_the_embedder_names() {
        assert_eq!(party(), 0);
        let key = Some("ed25519:01".to_owned());
        let keyed = within_party(key.clone(), 7, async { party() }).await;
        assert_eq!(
            keyed,
            within(key, async { party() }).await,
            "the key decides"
        );
        assert_ne!(keyed, 7);
        assert_eq!(within_party(None, 7, async { party() }).await, 7);
        assert_eq!(within(None, async { party() }).await, 0);
    }
}
