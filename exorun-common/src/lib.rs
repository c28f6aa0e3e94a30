#![doc = include_str!("../README.md")]

mod cause;
mod throttle;

pub use cause::Cause;
pub use throttle::EVERY;
pub use throttle::Throttle;

/// A boxed, sendable future, as object-safe async trait methods return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// `duration` in whole milliseconds, saturating at `u64::MAX` (about 584 million years).
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_truncate_and_saturate() {
        assert_eq!(millis(std::time::Duration::from_micros(2_999)), 2);
        assert_eq!(millis(std::time::Duration::MAX), u64::MAX);
    }
}
