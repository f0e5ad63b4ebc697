//! ElectrumX's cost model: every session accrues a cost (connection, requests by the work they
//! do, bandwidth, errors) that decays over time. Past the soft limit its requests are slowed
//! and fewer run at once; at the hard limit it is disconnected. Sessions from one subnet share
//! their costs, and a subnet keeps the cost of its closed sessions for a while, so reconnecting
//! or spreading load over many connections does not reset anything.
//!
//! Time comes from a [`Clock`], so the model is tested without sleeping.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::CostSettings;

/// The cost of opening a session.
pub(crate) const CONNECTION_COST: f64 = 5.0;
/// Every error reply.
pub(crate) const ERROR_COST: f64 = 100.0;
/// On top of [`ERROR_COST`] for a message that is not JSON at all.
pub(crate) const PARSE_ERROR_COST: f64 = 1000.0;
/// A session's throttle is recomputed once its cost moved this far since the last time.
const RECALC_DRIFT: f64 = 100.0;
/// Seconds between the periodic recalculation of every session and group.
pub(crate) const RECALC_PERIOD: Duration = Duration::from_secs(300);

/// Monotonic time since an arbitrary origin.
pub(crate) trait Clock: Send + Sync {
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
pub(crate) struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock moved by hand, for tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct ManualClock(Mutex<Duration>);

#[cfg(test)]
impl ManualClock {
    pub(crate) fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.0.lock()
    }
}

impl CostSettings {
    /// Cost decays by this much a second for a session with `subs` subscriptions: subscribed
    /// sessions cost the server on every block, so they recover more slowly.
    fn decay_per_sec(&self, subs: usize) -> f64 {
        self.hard_limit / (10000.0 + 5.0 * subs as f64)
    }

    fn limited(&self) -> bool {
        self.hard_limit - self.soft_limit > 0.0
    }
}

/// What a session's cost means for its next request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Throttle {
    /// 0 below the soft limit, 1 at the hard limit.
    pub fraction: f64,
    /// How many of its requests may run at once; 0 means disconnect.
    pub target: usize,
    /// How long each request waits before it runs.
    pub sleep: Duration,
}

struct SessionCost {
    cost: f64,
    /// The cost at the last recalculation, to notice drift.
    last: f64,
    at: Duration,
    decay: f64,
    throttle: Throttle,
    group: Option<Arc<str>>,
}

#[derive(Default)]
struct Group {
    members: HashSet<u64>,
    /// The cost of members that left, refunded slowly.
    retained: f64,
}

#[derive(Default)]
struct State {
    sessions: HashMap<u64, SessionCost>,
    groups: HashMap<Arc<str>, Group>,
}

/// A group as the admin `groups` command shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupInfo {
    pub name: String,
    pub members: Vec<u64>,
    pub cost: f64,
    pub retained: f64,
}

/// The costs of every session of a server.
pub(crate) struct CostModel {
    settings: CostSettings,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// ElectrumX's group name: the CIDR subnet of the address; private addresses (loopback,
/// RFC 1918, link-local…) join no group, so a local proxy's or test's clients are never pooled.
pub(crate) fn group_name(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Option<String> {
    if crate::types::is_private(&ip) {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => {
            let p = v4_prefix.min(32);
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            let net = std::net::Ipv4Addr::from(u32::from(v4) & mask);
            Some(format!("{net}/{p}"))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return group_name(IpAddr::V4(v4), v4_prefix, v6_prefix);
            }
            let p = v6_prefix.min(128);
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            Some(format!("{net}/{p}"))
        }
    }
}

impl CostModel {
    pub(crate) fn new(settings: CostSettings, clock: Arc<dyn Clock>) -> CostModel {
        CostModel {
            settings,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn unthrottled(&self) -> Throttle {
        Throttle {
            fraction: 0.0,
            target: self.settings.initial_concurrent,
            sleep: Duration::ZERO,
        }
    }

    /// A new session from `ip`, starting at the connection cost; returns its group's name.
    pub(crate) fn add(&self, id: u64, ip: IpAddr) -> Option<String> {
        let name = group_name(
            ip,
            self.settings.group_prefix_v4,
            self.settings.group_prefix_v6,
        );
        let group: Option<Arc<str>> = name.as_deref().map(Arc::from);
        let mut st = self.state.lock();
        if let Some(g) = &group {
            st.groups.entry(g.clone()).or_default().members.insert(id);
        }
        st.sessions.insert(
            id,
            SessionCost {
                cost: CONNECTION_COST,
                last: CONNECTION_COST,
                at: self.clock.now(),
                decay: self.settings.decay_per_sec(0),
                throttle: self.unthrottled(),
                group,
            },
        );
        self.recalc(&mut st, id);
        name
    }

    /// A session closed: its cost stays with its group.
    pub(crate) fn remove(&self, id: u64) {
        let mut st = self.state.lock();
        let Some(s) = st.sessions.remove(&id) else {
            return;
        };
        if let Some(g) = s.group.and_then(|name| st.groups.get_mut(&name)) {
            g.members.remove(&id);
            g.retained += s.cost;
        }
    }

    /// Adds `delta` to a session's cost; the throttle follows once the cost has drifted.
    pub(crate) fn charge(&self, id: u64, delta: f64) {
        let mut st = self.state.lock();
        let Some(s) = st.sessions.get_mut(&id) else {
            return;
        };
        s.cost = (s.cost + delta).max(0.0);
        if (s.cost - s.last).abs() > RECALC_DRIFT {
            self.recalc(&mut st, id);
        }
    }

    /// Charges `bytes` of traffic in either direction.
    pub(crate) fn charge_bytes(&self, id: u64, bytes: usize) {
        if self.settings.bandwidth_unit_cost > 0 {
            self.charge(id, bytes as f64 / self.settings.bandwidth_unit_cost as f64);
        }
    }

    /// The session's throttle as of its last recalculation.
    pub(crate) fn throttle(&self, id: u64) -> Throttle {
        self.state
            .lock()
            .sessions
            .get(&id)
            .map_or_else(|| self.unthrottled(), |s| s.throttle)
    }

    /// The session's own cost and the share of its group's cost added to it.
    pub(crate) fn cost(&self, id: u64) -> Option<(f64, f64)> {
        let st = self.state.lock();
        st.sessions
            .get(&id)
            .map(|s| (s.cost, Self::extra(&st, id, s)))
    }

    /// The periodic pass: groups refund part of their retained cost (empty, fully refunded
    /// groups are forgotten), decay rates follow subscription counts, every throttle is
    /// recomputed. `subs` gives a session's subscription count.
    pub(crate) fn tick(&self, elapsed: Duration, subs: impl Fn(u64) -> usize) {
        let refund = elapsed.as_secs_f64() * self.settings.hard_limit / 5000.0;
        let mut st = self.state.lock();
        st.groups.retain(|_, g| {
            g.retained = (g.retained - refund).max(0.0);
            g.retained > 0.0 || !g.members.is_empty()
        });
        let ids: Vec<u64> = st.sessions.keys().copied().collect();
        for id in ids {
            if let Some(s) = st.sessions.get_mut(&id) {
                s.decay = self.settings.decay_per_sec(subs(id));
            }
            self.recalc(&mut st, id);
        }
    }

    pub(crate) fn groups(&self) -> Vec<GroupInfo> {
        let st = self.state.lock();
        let mut out: Vec<GroupInfo> = st
            .groups
            .iter()
            .map(|(name, g)| {
                let mut members: Vec<u64> = g.members.iter().copied().collect();
                members.sort_unstable();
                GroupInfo {
                    name: name.to_string(),
                    cost: members
                        .iter()
                        .filter_map(|m| st.sessions.get(m))
                        .map(|s| s.cost)
                        .sum(),
                    members,
                    retained: g.retained,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The group's retained cost plus its other members' costs.
    fn extra(st: &State, id: u64, s: &SessionCost) -> f64 {
        let Some(g) = s.group.as_ref().and_then(|name| st.groups.get(name)) else {
            return 0.0;
        };
        g.retained
            + g.members
                .iter()
                .filter(|&&m| m != id)
                .filter_map(|m| st.sessions.get(m))
                .map(|o| o.cost)
                .sum::<f64>()
    }

    /// Applies the decay since the last recalculation, then derives the throttle from the
    /// session's cost plus its group's.
    fn recalc(&self, st: &mut State, id: u64) {
        let now = self.clock.now();
        let Some(s) = st.sessions.get_mut(&id) else {
            return;
        };
        let secs = now.saturating_sub(s.at).as_secs_f64();
        s.cost = (s.cost - secs * s.decay).max(0.0);
        s.at = now;
        s.last = s.cost;
        if !self.settings.limited() {
            return;
        }
        let s = &st.sessions[&id];
        let total = s.cost + Self::extra(st, id, s);
        let (soft, hard) = (self.settings.soft_limit, self.settings.hard_limit);
        let fraction = ((total - soft) / (hard - soft)).max(0.0);
        let target = ((1.0 - fraction) * self.settings.initial_concurrent as f64)
            .ceil()
            .max(0.0) as usize;
        let throttle = Throttle {
            fraction,
            target,
            sleep: self.settings.request_sleep.mul_f64(fraction.min(1.0)),
        };
        if let Some(s) = st.sessions.get_mut(&id) {
            s.throttle = throttle;
        }
    }
}

/// How many of a session's requests run at once, following a target that the cost model
/// lowers and raises (aiorpcX's `Concurrency`): raising adds permits at once, lowering
/// retires permits as running requests finish.
pub(crate) struct Concurrency {
    sem: Arc<tokio::sync::Semaphore>,
    /// (target, permits in circulation)
    counts: Arc<Mutex<(usize, usize)>>,
}

/// A running request's place; returned (or retired) when dropped.
pub(crate) struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    counts: Arc<Mutex<(usize, usize)>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        if let Some(p) = self.permit.take() {
            if c.1 > c.0 {
                c.1 -= 1;
                p.forget();
            }
        }
    }
}

impl Concurrency {
    pub(crate) fn new(target: usize) -> Concurrency {
        Concurrency {
            sem: Arc::new(tokio::sync::Semaphore::new(target)),
            counts: Arc::new(Mutex::new((target, target))),
        }
    }

    #[cfg(test)]
    fn target(&self) -> usize {
        self.counts.lock().0
    }

    pub(crate) fn set_target(&self, target: usize) {
        let mut c = self.counts.lock();
        c.0 = target;
        while c.1 < c.0 {
            c.1 += 1;
            self.sem.add_permits(1);
        }
    }

    /// Waits for a place; `None` when the semaphore is closed.
    pub(crate) async fn acquire(&self) -> Option<Slot> {
        let permit = self.sem.clone().acquire_owned().await.ok()?;
        Some(Slot {
            permit: Some(permit),
            counts: self.counts.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(soft: f64, hard: f64) -> (CostModel, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let settings = CostSettings {
            soft_limit: soft,
            hard_limit: hard,
            ..CostSettings::default()
        };
        (CostModel::new(settings, clock.clone()), clock)
    }

    fn public(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 114, last])
    }

    #[test]
    fn sessions_start_at_the_connection_cost_unthrottled() {
        let (m, _) = model(1000.0, 10000.0);
        m.add(1, public(1));
        assert_eq!(m.cost(1), Some((CONNECTION_COST, 0.0)));
        let t = m.throttle(1);
        assert_eq!((t.fraction, t.target, t.sleep), (0.0, 10, Duration::ZERO));
    }

    #[test]
    fn bandwidth_costs_one_per_unit() {
        let (m, _) = model(1000.0, 10000.0);
        m.add(1, public(1));
        m.charge_bytes(1, 100_000);
        assert_eq!(m.cost(1).unwrap().0, CONNECTION_COST + 20.0);
    }

    #[test]
    fn soft_limit_slows_and_hard_limit_disconnects() {
        let (m, _) = model(1000.0, 10000.0);
        m.add(1, public(1));
        // Below the soft limit: nothing.
        m.charge(1, 900.0);
        assert_eq!(m.throttle(1).target, 10);
        // Halfway between soft and hard: half the sleep, half the concurrency.
        m.charge(1, 4595.0);
        let t = m.throttle(1);
        assert!((t.fraction - 0.5).abs() < 1e-9, "{t:?}");
        assert_eq!(t.target, 5);
        assert_eq!(t.sleep, Duration::from_millis(1250));
        // Just short of the hard limit: one request at a time.
        m.charge(1, 4450.0);
        assert_eq!(m.throttle(1).target, 1);
        // At the hard limit: target 0, the session is to be closed.
        m.charge(1, 200.0);
        let t = m.throttle(1);
        assert_eq!(t.target, 0);
        assert_eq!(
            t.sleep,
            Duration::from_millis(2500),
            "capped at REQUEST_SLEEP"
        );
    }

    #[test]
    fn small_charges_wait_for_drift_before_recalculating() {
        let (m, _) = model(10.0, 200.0);
        m.add(1, public(1));
        for _ in 0..99 {
            m.charge(1, 1.0);
        }
        assert_eq!(m.throttle(1).target, 10, "drift of 99 < 100: stale");
        m.charge(1, 2.0);
        assert!(m.throttle(1).target < 10);
    }

    #[test]
    fn zero_limits_disable_throttling() {
        let (m, _) = model(0.0, 0.0);
        m.add(1, public(1));
        m.charge(1, 1e9);
        assert_eq!(m.throttle(1).target, 10);
        assert_eq!(m.throttle(1).sleep, Duration::ZERO);
    }

    #[test]
    fn cost_decays_with_time_slower_with_subscriptions() {
        let (m, clock) = model(1000.0, 10000.0);
        m.add(1, public(1));
        m.add(2, public(200));
        m.charge(1, 995.0);
        m.charge(2, 995.0);
        clock.advance(Duration::from_secs(100));
        // Decay applies at a recalculation: 1.0/s at the default hard limit.
        m.tick(Duration::ZERO, |_| 0);
        assert!((m.cost(1).unwrap().0 - 900.0).abs() < 1e-9);
        // 10,000 subscriptions: hard / (10000 + 50000) per second.
        m.tick(Duration::ZERO, |id| if id == 2 { 10_000 } else { 0 });
        clock.advance(Duration::from_secs(600));
        m.tick(Duration::ZERO, |id| if id == 2 { 10_000 } else { 0 });
        assert!((m.cost(1).unwrap().0 - 300.0).abs() < 1e-9);
        assert!((m.cost(2).unwrap().0 - 800.0).abs() < 1e-9);
        // Never below zero.
        clock.advance(Duration::from_secs(100_000));
        m.tick(Duration::ZERO, |_| 0);
        assert_eq!(m.cost(1).unwrap().0, 0.0);
    }

    #[test]
    fn a_throttled_session_recovers_as_its_cost_decays() {
        let (m, clock) = model(1000.0, 10000.0);
        m.add(1, public(1));
        m.charge(1, 5495.0);
        assert_eq!(m.throttle(1).target, 5);
        clock.advance(Duration::from_secs(5000));
        m.tick(RECALC_PERIOD, |_| 0);
        assert_eq!(m.throttle(1).target, 10);
    }

    #[test]
    fn a_subnet_shares_its_cost_and_keeps_it_after_disconnects() {
        let (m, clock) = model(1000.0, 10000.0);
        assert_eq!(m.add(1, public(1)).as_deref(), Some("203.0.114.0/24"));
        m.add(2, public(2));
        // Another subnet is unaffected.
        m.add(3, IpAddr::from([203, 0, 115, 1]));
        m.charge(1, 5495.0);
        assert_eq!(m.cost(2), Some((CONNECTION_COST, 5500.0)));
        assert_eq!(m.cost(3), Some((CONNECTION_COST, 0.0)));
        // The sibling is throttled at its next recalculation, as if it had spent the cost.
        m.charge(2, 101.0);
        assert!(m.throttle(2).target <= 5, "{:?}", m.throttle(2));
        assert_eq!(m.throttle(3).target, 10);
        // Closing sessions moves their cost to the group: a reconnect inherits it.
        m.remove(1);
        m.remove(2);
        let g = &m.groups()[0];
        assert_eq!((g.name.as_str(), g.members.len()), ("203.0.114.0/24", 0));
        assert!((g.retained - 5606.0).abs() < 1e-9, "{g:?}");
        m.add(4, public(9));
        assert!(m.throttle(4).target <= 5);
        // Retained cost is refunded at hard/5000 per second; an empty group then goes away.
        clock.advance(RECALC_PERIOD);
        m.tick(RECALC_PERIOD, |_| 0);
        assert!((m.groups()[0].retained - 5006.0).abs() < 1e-9);
        m.remove(4);
        clock.advance(RECALC_PERIOD * 10);
        m.tick(RECALC_PERIOD * 10, |_| 0);
        assert_eq!(
            m.groups()
                .iter()
                .filter(|g| g.name.starts_with("203.0.114"))
                .count(),
            0
        );
    }

    #[test]
    fn groups_by_subnet() {
        let v6: IpAddr = "2001:470:1:2::5".parse().unwrap();
        assert_eq!(group_name(v6, 24, 48).as_deref(), Some("2001:470:1::/48"));
        assert_eq!(
            group_name(public(7), 16, 48).as_deref(),
            Some("203.0.0.0/16")
        );
        let mapped: IpAddr = "::ffff:203.0.114.9".parse().unwrap();
        assert_eq!(
            group_name(mapped, 24, 48).as_deref(),
            Some("203.0.114.0/24")
        );
        for private in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "fe80::1"] {
            assert_eq!(group_name(private.parse().unwrap(), 24, 48), None);
        }
    }

    #[tokio::test]
    async fn concurrency_follows_its_target() {
        use futures::FutureExt;
        let c = Concurrency::new(2);
        let a = c.acquire().await.unwrap();
        let b = c.acquire().await.unwrap();
        assert!(c.acquire().now_or_never().is_none(), "full");
        c.set_target(1);
        drop(a); // retired: still full
        assert!(c.acquire().now_or_never().is_none());
        drop(b);
        let a = c.acquire().await.unwrap();
        c.set_target(3);
        let _b = c.acquire().await.unwrap();
        let _d = c.acquire().await.unwrap();
        drop(a);
        assert_eq!(c.target(), 3);
    }
}
