//! Counters of what the sessions did: requests per method with their latency, and every action
//! a limit took. Plain atomics and a small map, read by the admin RPC (and by whatever exports
//! metrics).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::metrics::Metrics;
use crate::protocol::Method;

/// Requests of one method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MethodStats {
    pub count: u64,
    pub errors: u64,
    /// Summed handling time (throttling sleep excluded), for a mean.
    pub total_time: Duration,
    pub max_time: Duration,
}

/// Counts of actions taken by the limits.
#[derive(Debug, Default)]
pub(crate) struct LimitCounters {
    /// Requests that waited because their session was over the soft limit.
    pub throttled: AtomicU64,
    /// Sessions closed at the hard limit.
    pub cost_disconnects: AtomicU64,
    /// Requests answered "server busy" after `REQUEST_TIMEOUT`.
    pub timeouts: AtomicU64,
    /// Sessions closed after `SESSION_TIMEOUT` without a message.
    pub idle_disconnects: AtomicU64,
    /// Connections refused by the per-IP connection rate limit.
    pub rate_limited: AtomicU64,
    /// Times the listeners were closed at `MAX_SESSIONS`.
    pub max_sessions_pauses: AtomicU64,
    /// Connections accepted while the listeners were closing, closed at once because
    /// `MAX_SESSIONS` sessions were open.
    pub sessions_refused: AtomicU64,
    /// Subscriptions refused over the per-session cap.
    pub subs_refused: AtomicU64,
    /// Times a session stopped being read, over `MAX_SESSION_MEMORY`.
    pub reader_pauses: AtomicU64,
    /// Sessions dropped for leaving their replies unread past `SLOW_READER_TIMEOUT`.
    pub slow_reader_disconnects: AtomicU64,
    /// Requests and batches refused by a memory budget (`MAX_SESSION_MEMORY`,
    /// `MAX_SERVER_MEMORY`).
    pub memory_refused: AtomicU64,
}

/// One kind of action a limit takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    Throttled,
    CostDisconnect,
    Timeout,
    IdleDisconnect,
    RateLimited,
    MaxSessionsPause,
    SessionRefused,
    SubsRefused,
    ReaderPaused,
    SlowReader,
    MemoryRefused,
}

impl Limit {
    /// The action's label in metrics (`sextant_cost_limit_actions_total{action=…}`).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Limit::Throttled => "throttle",
            Limit::CostDisconnect => "disconnect",
            Limit::Timeout => "timeout",
            Limit::IdleDisconnect => "idle_disconnect",
            Limit::RateLimited => "rate_limit",
            Limit::MaxSessionsPause => "max_sessions_pause",
            Limit::SessionRefused => "max_sessions_refuse",
            Limit::SubsRefused => "subs_refused",
            Limit::ReaderPaused => "reader_paused",
            Limit::SlowReader => "slow_reader_disconnect",
            Limit::MemoryRefused => "memory_refused",
        }
    }
}

impl LimitCounters {
    fn counter(&self, what: Limit) -> &AtomicU64 {
        match what {
            Limit::Throttled => &self.throttled,
            Limit::CostDisconnect => &self.cost_disconnects,
            Limit::Timeout => &self.timeouts,
            Limit::IdleDisconnect => &self.idle_disconnects,
            Limit::RateLimited => &self.rate_limited,
            Limit::MaxSessionsPause => &self.max_sessions_pauses,
            Limit::SessionRefused => &self.sessions_refused,
            Limit::SubsRefused => &self.subs_refused,
            Limit::ReaderPaused => &self.reader_pauses,
            Limit::SlowReader => &self.slow_reader_disconnects,
            Limit::MemoryRefused => &self.memory_refused,
        }
    }
}

/// Name under which requests for methods that do not exist are counted (as ElectrumX does), so
/// clients cannot grow the table.
pub(crate) const INVALID_METHOD: &str = "invalid method";

pub(crate) struct Stats {
    methods: Mutex<BTreeMap<String, MethodStats>>,
    pub limits: LimitCounters,
    pub txs_sent: AtomicU64,
    metrics: Metrics,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(Metrics::new())
    }
}

impl Stats {
    pub(crate) fn new(metrics: Metrics) -> Stats {
        Stats {
            methods: Mutex::default(),
            limits: LimitCounters::default(),
            txs_sent: AtomicU64::new(0),
            metrics,
        }
    }

    /// Counts one action of a limit, here and in the metrics.
    pub(crate) fn limit(&self, what: Limit) {
        self.limits.counter(what).fetch_add(1, Ordering::Relaxed);
        self.metrics.cost_action(what.label());
    }

    /// Records one answered request; `method` must be a known method or [`INVALID_METHOD`]
    /// (the admin RPC records its commands too: they count as `other` in metrics).
    pub(crate) fn record(&self, method: &str, elapsed: Duration, error: bool) {
        let label = if Method::is_known(method) {
            method
        } else {
            "other"
        };
        self.metrics.request_done(label, elapsed);
        let mut m = self.methods.lock();
        let s = match m.get_mut(method) {
            Some(s) => s,
            None => m.entry(method.to_string()).or_default(),
        };
        s.count += 1;
        s.errors += u64::from(error);
        s.total_time += elapsed;
        s.max_time = s.max_time.max(elapsed);
    }

    pub(crate) fn methods(&self) -> BTreeMap<String, MethodStats> {
        self.methods.lock().clone()
    }

    pub(crate) fn request_total(&self) -> u64 {
        self.methods.lock().values().map(|s| s.count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_counts_errors_and_latency() {
        let s = Stats::default();
        s.record("server.ping", Duration::from_millis(2), false);
        s.record("server.ping", Duration::from_millis(4), true);
        s.record(INVALID_METHOD, Duration::ZERO, true);
        let m = s.methods();
        assert_eq!(
            m["server.ping"],
            MethodStats {
                count: 2,
                errors: 1,
                total_time: Duration::from_millis(6),
                max_time: Duration::from_millis(4),
            }
        );
        assert_eq!(s.request_total(), 3);
    }
}
