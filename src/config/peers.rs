//! Peer discovery's settings: which servers to announce, the Tor proxy, and ElectrumX's peer
//! timings.

use std::time::Duration;

use super::server::{PeerDiscovery, ServerSettings};
use super::services::Service;
use super::{invalid, non_empty, ConfigError, Env};

/// ElectrumX's peer timings. Tests shrink them with `PEER_TIME_SCALE`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timings {
    /// A peer verified longer ago than this is not listed.
    pub stale: Duration,
    /// Backoff unit: after n consecutive failures the next try is `wakeup × 2ⁿ` later; a good
    /// peer is re-checked `stale − 2 × wakeup` after its last success.
    pub wakeup: Duration,
    /// One accepted `server.add_peer` per bucket per this long.
    pub add_pause: Duration,
    /// Onion peers from `server.add_peer`: at most one per random interval below this.
    pub onion_pause: Duration,
    /// Per connection attempt and per request.
    pub request_timeout: Duration,
    pub tor_request_timeout: Duration,
}

impl Timings {
    pub(crate) const ELECTRUMX: Timings = Timings {
        stale: Duration::from_secs(3 * 3600),
        wakeup: Duration::from_secs(300),
        add_pause: Duration::from_secs(600),
        onion_pause: Duration::from_secs(1200),
        request_timeout: Duration::from_secs(30),
        tor_request_timeout: Duration::from_secs(120),
    };

    /// Every interval times `factor`; request timeouts stay as they are (a slow peer is not
    /// faster in a test).
    pub(crate) fn scaled(factor: f64) -> Timings {
        let s = |d: Duration| d.mul_f64(factor);
        let e = Timings::ELECTRUMX;
        Timings {
            stale: s(e.stale),
            wakeup: s(e.wakeup),
            add_pause: s(e.add_pause),
            onion_pause: s(e.onion_pause),
            ..e
        }
    }

    pub(crate) fn recheck(&self) -> Duration {
        self.stale.saturating_sub(self.wakeup * 2)
    }

    pub(crate) fn retry_after(&self, failures: u32) -> Duration {
        self.wakeup * 2u32.saturating_pow(failures.min(20))
    }
}

/// Where the SOCKS5 proxy for `.onion` peers (or all peers with `FORCE_PROXY`) listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
}

/// Peer discovery's settings.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub discovery: PeerDiscovery,
    pub announce: bool,
    pub allow_private: bool,
    pub services: Vec<Service>,
    pub report_services: Vec<Service>,
    /// `TOR_PROXY_HOST` / `TOR_PROXY_PORT`: set when either is (defaults `localhost`, 9050).
    pub proxy: Option<Proxy>,
    pub force_proxy: bool,
    pub timings: Timings,
}

impl PeerConfig {
    pub(crate) fn from_env(
        env: &dyn Env,
        server: &ServerSettings,
    ) -> Result<PeerConfig, ConfigError> {
        let text = |var: &str| non_empty(env, var);
        let proxy_port = match text("TOR_PROXY_PORT") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| invalid("TOR_PROXY_PORT", v, "expected a port number"))?,
            ),
        };
        let proxy_host = text("TOR_PROXY_HOST");
        let proxy = (proxy_host.is_some() || proxy_port.is_some()).then(|| Proxy {
            host: proxy_host.unwrap_or_else(|| "localhost".into()),
            port: proxy_port.unwrap_or(9050),
        });
        let timings = match text("PEER_TIME_SCALE") {
            None => Timings::ELECTRUMX,
            Some(v) => Timings::scaled(
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1.0)
                    .ok_or_else(|| invalid("PEER_TIME_SCALE", v, "expected a number in (0, 1]"))?,
            ),
        };
        Ok(PeerConfig {
            discovery: server.peer_discovery,
            announce: server.peer_announce,
            allow_private: server.peer_allow_private,
            services: server.services.clone(),
            report_services: server.report_services.clone(),
            proxy,
            force_proxy: text("FORCE_PROXY").is_some(),
            timings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&'static str, &'static str)]) -> Result<PeerConfig, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        PeerConfig::from_env(&env, &ServerSettings::from_env(&env)?)
    }

    #[test]
    fn proxy_and_timings() {
        let c = config(&[]).unwrap();
        assert_eq!(c.proxy, None);
        assert_eq!(c.timings, Timings::ELECTRUMX);
        assert_eq!(c.timings.recheck(), Duration::from_secs(10_200));
        assert_eq!(c.timings.retry_after(1), Duration::from_secs(600));
        assert_eq!(c.timings.retry_after(3), Duration::from_secs(2400));
        let c = config(&[("TOR_PROXY_PORT", "9150"), ("PEER_TIME_SCALE", "0.01")]).unwrap();
        assert_eq!(
            c.proxy,
            Some(Proxy {
                host: "localhost".into(),
                port: 9150
            })
        );
        assert_eq!(c.timings.wakeup, Duration::from_secs(3));
        assert_eq!(c.timings.request_timeout, Duration::from_secs(30));
        let c = config(&[("TOR_PROXY_HOST", "10.0.0.1")]).unwrap();
        assert_eq!(c.proxy.unwrap().port, 9050);
        assert!(config(&[("TOR_PROXY_PORT", "x")]).is_err());
        assert!(config(&[("PEER_TIME_SCALE", "0")]).is_err());
        assert!(config(&[("PEER_TIME_SCALE", "2")]).is_err());
    }
}
