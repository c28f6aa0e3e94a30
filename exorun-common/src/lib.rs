#![doc = include_str!("../README.md")]

mod cause;
mod throttle;

pub use cause::Cause;
pub use throttle::EVERY;
pub use throttle::Throttle;

/// A boxed, sendable future, as object-safe async trait methods return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a peer's connections are counted together by: an IPv4 address, or an IPv6 address's
/// /64 (one host commonly holds a whole /64, so counting its addresses apart would bound
/// nothing; an IPv4-mapped IPv6 address is its IPv4 address).
pub fn source(address: std::net::IpAddr) -> std::net::IpAddr {
    let std::net::IpAddr::V6(v6) = address else {
        return address;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return std::net::IpAddr::V4(v4);
    }
    let network = v6.to_bits() & !((1_u128 << 64) - 1);
    std::net::IpAddr::V6(std::net::Ipv6Addr::from_bits(network))
}

/// `duration` in whole milliseconds, saturating at `u64::MAX` (about 584 million years).
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_and_ipv6_networks() {
        let parse = |text: &str| text.parse::<std::net::IpAddr>().expect("an address");
        assert_eq!(source(parse("192.0.2.7")), parse("192.0.2.7"));
        assert_eq!(source(parse("::ffff:192.0.2.7")), parse("192.0.2.7"));
        let one = source(parse("2001:db8:1:2:aaaa::1"));
        assert_eq!(one, source(parse("2001:db8:1:2:bbbb::9")));
        assert_ne!(one, source(parse("2001:db8:1:3::1")));
        assert_eq!(one.to_string(), "2001:db8:1:2::");
    }

    #[test]
    fn millis_truncate_and_saturate() {
        assert_eq!(millis(std::time::Duration::from_micros(2_999)), 2);
        assert_eq!(millis(std::time::Duration::MAX), u64::MAX);
    }
}
