//! Session limits from the environment: ElectrumX's cost knobs and session limits (same names,
//! defaults and rules), plus two of Sextant's own (a per-IP connection rate and a cap on
//! subscriptions per session, which ElectrumX lacks).

use std::time::Duration;

use super::{integer, invalid, ConfigError, Env};

/// The cost knobs (`COST_SOFT_LIMIT`, `COST_HARD_LIMIT`, `REQUEST_SLEEP`, `INITIAL_CONCURRENT`,
/// `BANDWIDTH_UNIT_COST`, `SESSION_GROUP_BY_SUBNET_IPV4/6`).
#[derive(Clone, Debug, PartialEq)]
pub struct CostSettings {
    pub soft_limit: f64,
    pub hard_limit: f64,
    pub request_sleep: Duration,
    pub initial_concurrent: usize,
    /// Bytes in or out that cost 1.0.
    pub bandwidth_unit_cost: usize,
    pub group_prefix_v4: u8,
    pub group_prefix_v6: u8,
}

impl Default for CostSettings {
    fn default() -> Self {
        CostSettings {
            soft_limit: 1000.0,
            hard_limit: 10000.0,
            request_sleep: Duration::from_millis(2500),
            initial_concurrent: 10,
            bandwidth_unit_cost: 5000,
            group_prefix_v4: 24,
            group_prefix_v6: 48,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SessionLimits {
    pub cost: CostSettings,
    /// Queueing, throttling sleep and work of one request; past it the client gets an error.
    pub request_timeout: Duration,
    /// Sessions that sent nothing for this long are closed.
    pub session_timeout: Duration,
    /// Past this many sessions new connections are refused until the count falls back to
    /// 95% of it.
    pub max_sessions: usize,
    /// New connections a second from one IP address (0: unlimited).
    pub connections_per_sec: u32,
    /// Scripthash subscriptions one session may hold (0: unlimited).
    pub max_subs_per_session: usize,
    /// Bytes one session may hold in requests being worked on and replies not yet written
    /// (0: unlimited): past it the session is not read, and a batch bigger is refused.
    pub max_session_memory: usize,
    /// The same bytes, every session together (0: unlimited): work past it is refused.
    pub max_server_memory: usize,
    /// A session whose unwritten replies stay over its budget this long, none of them read,
    /// is dropped.
    pub slow_reader_timeout: Duration,
    /// A request that takes this long to answer is logged with its parameters (zero: never).
    pub slow_request: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            cost: CostSettings::default(),
            request_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(600),
            max_sessions: 1000,
            connections_per_sec: 10,
            max_subs_per_session: 75_000,
            max_session_memory: 10_000_000,
            max_server_memory: 500_000_000,
            slow_reader_timeout: Duration::from_secs(30),
            slow_request: Duration::from_secs(1),
        }
    }
}

impl SessionLimits {
    /// Sessions are accepted again once their count falls to this (ElectrumX: 19/20).
    pub(crate) fn low_watermark(&self) -> usize {
        self.max_sessions * 19 / 20
    }

    pub(crate) fn from_env(env: &dyn Env) -> Result<SessionLimits, ConfigError> {
        let d = SessionLimits::default();
        let soft: usize = integer(env, "COST_SOFT_LIMIT", d.cost.soft_limit as usize)?;
        let mut hard = integer(env, "COST_HARD_LIMIT", d.cost.hard_limit as usize)?;
        if hard < soft {
            return Err(invalid(
                "COST_HARD_LIMIT",
                hard.to_string(),
                format!("must be >= COST_SOFT_LIMIT ({soft})"),
            ));
        }
        // Hard must exceed soft unless both are 0 (which disables throttling).
        if hard == soft && soft > 0 {
            hard = soft + 1;
        }
        let initial_concurrent = integer(env, "INITIAL_CONCURRENT", d.cost.initial_concurrent)?;
        if initial_concurrent == 0 {
            return Err(invalid(
                "INITIAL_CONCURRENT",
                "0",
                "at least one request must be able to run",
            ));
        }
        let prefix = |var: &'static str, default: u8, max: usize| {
            let v: usize = integer(env, var, default.into())?;
            if v > max {
                return Err(invalid(
                    var,
                    v.to_string(),
                    format!("a prefix length is at most {max}"),
                ));
            }
            Ok(v as u8)
        };
        let cost = CostSettings {
            soft_limit: soft as f64,
            hard_limit: hard as f64,
            request_sleep: Duration::from_millis(integer(env, "REQUEST_SLEEP", 2500u64)?),
            initial_concurrent,
            bandwidth_unit_cost: integer(env, "BANDWIDTH_UNIT_COST", d.cost.bandwidth_unit_cost)?,
            group_prefix_v4: prefix("SESSION_GROUP_BY_SUBNET_IPV4", d.cost.group_prefix_v4, 32)?,
            group_prefix_v6: prefix("SESSION_GROUP_BY_SUBNET_IPV6", d.cost.group_prefix_v6, 128)?,
        };
        let secs = |var, default: Duration| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(integer(env, var, default.as_secs())?))
        };
        let connections_per_sec: usize =
            integer(env, "CONNECTION_RATE_LIMIT", d.connections_per_sec as usize)?;
        Ok(SessionLimits {
            cost,
            request_timeout: secs("REQUEST_TIMEOUT", d.request_timeout)?,
            session_timeout: secs("SESSION_TIMEOUT", d.session_timeout)?,
            max_sessions: integer(env, "MAX_SESSIONS", d.max_sessions)?,
            connections_per_sec: u32::try_from(connections_per_sec).map_err(|_| {
                invalid(
                    "CONNECTION_RATE_LIMIT",
                    connections_per_sec.to_string(),
                    "too large",
                )
            })?,
            max_subs_per_session: integer(env, "MAX_SUBS_PER_SESSION", d.max_subs_per_session)?,
            max_session_memory: integer(env, "MAX_SESSION_MEMORY", d.max_session_memory)?,
            max_server_memory: integer(env, "MAX_SERVER_MEMORY", d.max_server_memory)?,
            slow_reader_timeout: secs("SLOW_READER_TIMEOUT", d.slow_reader_timeout)?,
            slow_request: Duration::from_millis(integer(
                env,
                "SLOW_REQUEST_MS",
                d.slow_request.as_millis() as u64,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn limits(pairs: &[(&'static str, &'static str)]) -> Result<SessionLimits, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        SessionLimits::from_env(&env)
    }

    #[test]
    fn electrumx_defaults() {
        let l = limits(&[]).unwrap();
        assert_eq!(l, SessionLimits::default());
        assert_eq!(l.cost.soft_limit, 1000.0);
        assert_eq!(l.cost.hard_limit, 10000.0);
        assert_eq!(l.cost.request_sleep, Duration::from_millis(2500));
        assert_eq!(l.cost.initial_concurrent, 10);
        assert_eq!(l.cost.bandwidth_unit_cost, 5000);
        assert_eq!(l.request_timeout, Duration::from_secs(30));
        assert_eq!(l.session_timeout, Duration::from_secs(600));
        assert_eq!(l.max_sessions, 1000);
        assert_eq!(l.low_watermark(), 950);
        assert_eq!(l.max_session_memory, 10_000_000);
        assert_eq!(l.max_server_memory, 500_000_000);
        assert_eq!(l.slow_reader_timeout, Duration::from_secs(30));
        assert_eq!(l.slow_request, Duration::from_secs(1));
    }

    #[test]
    fn explicit_values_and_rules() {
        let l = limits(&[
            ("COST_SOFT_LIMIT", "50"),
            ("COST_HARD_LIMIT", "50"),
            ("REQUEST_SLEEP", "100"),
            ("INITIAL_CONCURRENT", "4"),
            ("BANDWIDTH_UNIT_COST", "1000"),
            ("REQUEST_TIMEOUT", "5"),
            ("SESSION_TIMEOUT", "2"),
            ("MAX_SESSIONS", "3"),
            ("SESSION_GROUP_BY_SUBNET_IPV4", "16"),
            ("CONNECTION_RATE_LIMIT", "0"),
            ("MAX_SUBS_PER_SESSION", "7"),
            ("MAX_SESSION_MEMORY", "2000000"),
            ("MAX_SERVER_MEMORY", "0"),
            ("SLOW_READER_TIMEOUT", "5"),
            ("SLOW_REQUEST_MS", "250"),
        ])
        .unwrap();
        assert_eq!(l.cost.hard_limit, 51.0, "hard == soft is bumped");
        assert_eq!(l.cost.request_sleep, Duration::from_millis(100));
        assert_eq!(l.cost.initial_concurrent, 4);
        assert_eq!(l.cost.group_prefix_v4, 16);
        assert_eq!(l.session_timeout, Duration::from_secs(2));
        assert_eq!(l.max_sessions, 3);
        assert_eq!(l.connections_per_sec, 0);
        assert_eq!(l.max_subs_per_session, 7);
        assert_eq!(l.max_session_memory, 2_000_000);
        assert_eq!(l.max_server_memory, 0);
        assert_eq!(l.slow_reader_timeout, Duration::from_secs(5));
        assert_eq!(l.slow_request, Duration::from_millis(250));
        let both_zero = limits(&[("COST_SOFT_LIMIT", "0"), ("COST_HARD_LIMIT", "0")]).unwrap();
        assert_eq!(both_zero.cost.hard_limit, 0.0, "0/0 disables throttling");
    }

    #[test]
    fn mistakes_are_errors() {
        let e = |pairs: &[(&'static str, &'static str)]| limits(pairs).unwrap_err().to_string();
        assert!(
            e(&[("COST_SOFT_LIMIT", "2000"), ("COST_HARD_LIMIT", "1000")])
                .contains("must be >= COST_SOFT_LIMIT")
        );
        assert!(e(&[("INITIAL_CONCURRENT", "0")]).contains("INITIAL_CONCURRENT"));
        assert!(e(&[("MAX_SESSIONS", "many")]).contains("MAX_SESSIONS"));
        assert!(e(&[("SESSION_GROUP_BY_SUBNET_IPV4", "33")]).contains("at most 32"));
        assert!(e(&[("REQUEST_TIMEOUT", "-1")]).contains("REQUEST_TIMEOUT"));
    }
}
