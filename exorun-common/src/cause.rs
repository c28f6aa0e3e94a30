//! `Cause`: an error kept as the `source` of one of ours.

use std::sync::Arc;

/// An error kept whole as the cause of another (its `source`), where it is still shown in
/// words by the error that holds it. Shared, because one failure (a connection's) can reach
/// every call waiting on it; compared by its text, so the enums that hold one can derive
/// `PartialEq` and `Eq` and tests can assert their exact variants.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Keeps `error` as a cause: any error type, a boxed one (a wasmtime error converts into
    /// one), or words alone (a `String`) where a library gives no error of its own.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(Arc::from(error.into()))
    }

    /// Keeps `error` as a cause, with what was being done when it happened (`NATS flush`):
    /// shown as `context: error`, and `error` is its source.
    pub fn with_context(
        context: impl Into<String>,
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        let context = context.into();
        let error = error.into();
        Self(Arc::new(Context { context, error }))
    }

    /// The error itself, to downcast (`cause.get().downcast_ref::<std::io::Error>()`).
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// A cause with what was being done when it happened.
#[derive(Debug)]
struct Context {
    context: String,
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.context, self.error)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_keeps_the_error_and_its_words() {
        let cause = Cause::new(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        let io = cause.get().downcast_ref::<std::io::Error>();
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
        assert_eq!(cause.to_string(), "gone");
        assert_eq!(cause, Cause::new("gone"), "compared by text");
        assert_ne!(cause, Cause::new("here"));
    }

    #[test]
    fn a_context_is_shown_before_its_error_which_stays_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        let cause = Cause::with_context("NATS flush", io);
        assert_eq!(cause.to_string(), "NATS flush: pipe");
        let source = std::error::Error::source(cause.get()).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("pipe"));
    }
}
