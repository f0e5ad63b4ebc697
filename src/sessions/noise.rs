//! Protocol 1.7's noise: `server.ping` notifications sent to 1.7 sessions for no reason but to
//! blur the traffic pattern that their real notifications would otherwise show an observer of
//! encrypted connections (a block that touched a wallet's scripts makes more messages than one
//! that did not). ElectrumX 2.0's policy, per session:
//!
//! * after a block: one ping when fewer than two notifications went out in that round, then
//!   one more with probability 0.1, again and again (a geometric number, 0.11 on average);
//! * after a mempool refresh: one ping with probability `refresh interval / 600 s`, i.e. about
//!   one every ten minutes. Rounds here are not evenly spaced (they follow refreshes that
//!   changed something, or not), so the probability is the time since the previous mempool
//!   round over 600 s, which keeps the same rate.
//!
//! Each ping carries 128 zeros, about the size of a `blockchain.scriptpubkey.subscribe`
//! notification.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::value::RawValue;

/// `server.ping` padding: as long as ElectrumX's.
pub(crate) const PING_DATA_LEN: usize = 128;
/// A mempool round pings with probability (time since the previous one) / this.
const MEMPOOL_PING_EVERY: Duration = Duration::from_secs(600);

/// A uniform number in [0, 1): SipHash under a per-process random key of a counter. No
/// cryptographic strength is needed, only that an observer cannot predict it from outside.
pub(crate) fn uniform() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static KEY: std::collections::hash_map::RandomState = Default::default();
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let x = KEY.with(|k| {
        let mut h = k.build_hasher();
        h.write_u64(n);
        h.finish()
    });
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// How many noise pings a 1.7 session gets after a round: `block` says the round had a block,
/// `sent` how many notifications the session got in it, `since` the time since the previous
/// mempool round; `random` draws from [0, 1).
pub(crate) fn pings(
    block: bool,
    sent: usize,
    since: Duration,
    mut random: impl FnMut() -> f64,
) -> usize {
    if block {
        let mut n = usize::from(sent < 2);
        while random() < 0.1 {
            n += 1;
        }
        n
    } else {
        let p = since.as_secs_f64() / MEMPOOL_PING_EVERY.as_secs_f64();
        usize::from(random() < p)
    }
}

/// The notification's parameters: `["000…0"]`.
pub(crate) fn ping_params() -> Box<RawValue> {
    serde_json::value::to_raw_value(&["0".repeat(PING_DATA_LEN)]).expect("strings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_block_always_pings_once() {
        // A random source that never comes under 0.1: no extra pings.
        assert_eq!(pings(true, 0, Duration::ZERO, || 0.5), 1);
        assert_eq!(pings(true, 1, Duration::ZERO, || 0.5), 1);
        assert_eq!(pings(true, 2, Duration::ZERO, || 0.5), 0);
        assert_eq!(pings(true, 7, Duration::ZERO, || 0.5), 0);
        // Extra pings while the draws stay under 0.1.
        let mut draws = [0.05, 0.09, 0.3].into_iter();
        assert_eq!(pings(true, 5, Duration::ZERO, || draws.next().unwrap()), 2);
    }

    #[test]
    fn mempool_rounds_ping_about_once_in_ten_minutes() {
        let five_s = Duration::from_secs(5);
        assert_eq!(pings(false, 0, five_s, || 0.008), 1);
        assert_eq!(pings(false, 0, five_s, || 0.009), 0);
        assert_eq!(pings(false, 0, Duration::from_secs(900), || 0.99), 1);
        // Over many draws the rate is the interval over ten minutes.
        let n: usize = (0..100_000).map(|_| pings(false, 0, five_s, uniform)).sum();
        assert!((600..1100).contains(&n), "{n}");
    }

    #[test]
    fn uniform_draws_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (0..10_000).map(|_| uniform()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let low = draws.iter().filter(|x| **x < 0.1).count();
        assert!((700..1300).contains(&low), "{low}");
    }

    #[test]
    fn ping_carries_128_zeros() {
        let p = ping_params();
        let v: Vec<String> = serde_json::from_str(p.get()).unwrap();
        assert_eq!(v, vec!["0".repeat(128)]);
    }
}
