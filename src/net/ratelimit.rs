//! Per-IP limit on new connections (governor's keyed GCRA): a client reconnecting in a loop is
//! refused before it costs a session. 127.0.0.1 and ::1 are exempt, as in Fulcrum: behind a
//! local reverse proxy or Tor daemon every client has that address. Other loopback addresses
//! are limited like any client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub(crate) struct ConnectionLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

/// Connections one IP may open at once before the per-second rate applies.
const BURST_SECONDS: u32 = 3;

impl ConnectionLimiter {
    /// `per_sec` new connections a second per IP, with a burst of three seconds' worth;
    /// 0 disables the limit.
    pub(crate) fn new(per_sec: u32) -> ConnectionLimiter {
        let limiter = NonZeroU32::new(per_sec).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::new(BURST_SECONDS).expect("non-zero"));
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        ConnectionLimiter { limiter }
    }

    /// Whether a new connection from `ip` may proceed (and counts it).
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST) {
            return true;
        }
        self.limiter
            .as_ref()
            .is_none_or(|l| l.check_key(&ip).is_ok())
    }

    /// Forgets addresses whose allowance is full again, so the table stays small.
    pub(crate) fn forget_idle(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_per_address() {
        let l = ConnectionLimiter::new(2);
        let a: IpAddr = "127.0.0.3".parse().unwrap();
        let b: IpAddr = "203.0.113.9".parse().unwrap();
        // A burst of 3 s × 2/s, then refusals (the test runs far faster than 0.5 s a refill).
        let allowed = (0..20).filter(|_| l.allow(a)).count();
        assert!((6..=8).contains(&allowed), "{allowed}");
        assert!(l.allow(b), "another address has its own allowance");
        for _ in 0..100 {
            assert!(l.allow("127.0.0.1".parse().unwrap()), "exempt");
            assert!(l.allow("::1".parse().unwrap()), "exempt");
        }
        let off = ConnectionLimiter::new(0);
        assert!((0..100).all(|_| off.allow(a)));
    }
}
