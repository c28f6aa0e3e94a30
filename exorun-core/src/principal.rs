//! Who the current call came from: the principal an embedder received it from, visible to
//! every host function and nested call on its path.
//!
//! exorun-core knows no key formats: a principal is text. A server that serves a call made
//! over an authenticated connection runs it inside the caller's node key (`ed25519:<hex>`, as
//! exorun-transport writes it); a call made inside this runtime (a local link, an embedder's
//! own call) keeps the principal of the call it is nested in, so a host function deep in a
//! chain sees who called into this runtime. Outside any call, or for a plaintext caller,
//! there is none.

tokio::task_local! {
    /// The principal of the current task's outermost call.
    static PRINCIPAL: Option<String>;
}

/// The principal of the current call (`None`: anonymous, or outside any call).
pub fn current() -> Option<String> {
    PRINCIPAL.try_with(Clone::clone).ok().flatten()
}

/// Runs `work` as a call from `principal`.
pub async fn within<F: Future>(principal: Option<String>, work: F) -> F::Output {
    PRINCIPAL.scope(principal, work).await
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
}
