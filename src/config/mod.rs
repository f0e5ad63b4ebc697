//! Configuration: every environment variable, with ElectrumX's names and defaults, read once
//! into typed settings for each part of the server.
//!
//! Every problem is one line that says what is wrong and how to fix it; `main` prints it and
//! exits with status 2.
//!
//! | module | settings |
//! |---|---|
//! | this one | the index and daemon: `COIN`, `NET`, `DB_DIRECTORY`, `DAEMON_URL`, `CACHE_MB`, … |
//! | `daemon_url` | one `DAEMON_URL` entry |
//! | `services` | `SERVICES` / `REPORT_SERVICES` entries |
//! | `server` | the Electrum service: listeners, TLS, banner, `MAX_SEND`, peer flags, … |
//! | `limits` | sessions: costs, throttling, timeouts, `MAX_SESSIONS` |
//! | `peers` | peer discovery: proxy, timings |

mod daemon_url;
mod limits;
mod peers;
mod server;
mod services;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::coin::{Coin, CoinRegistry};
pub(crate) use daemon_url::redact;
pub use daemon_url::DaemonUrl;
pub(crate) use limits::{CostSettings, SessionLimits};
pub(crate) use peers::PeerConfig;
pub(crate) use server::{PeerDiscovery, ServerSettings};
pub(crate) use services::is_valid_hostname;
pub(crate) use services::{Host, Kind, Service};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set: {1}")]
    Missing(&'static str, &'static str),
    #[error("{var}={value:?} is invalid: {why}")]
    Invalid {
        var: &'static str,
        value: String,
        why: String,
    },
    #[error("{0} is obsolete (ElectrumX refuses it too); remove it from the environment: {1}")]
    Obsolete(&'static str, &'static str),
    #[error("{0}")]
    Coin(#[from] crate::coin::CoinError),
}

/// Where to subscribe to the daemon's ZMQ notifications (`DAEMON_ZMQ_URL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZmqEndpoints {
    /// Unset: ask the daemon (`getzmqnotifications`).
    Discover,
    /// Comma-separated `tcp://host:port` endpoints, subscribed to for every topic.
    Fixed(Vec<String>),
    /// Empty or `off`: no ZMQ.
    Off,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub coin: Coin,
    pub db_dir: PathBuf,
    pub daemon_urls: Vec<DaemonUrl>,
    /// Cookie file (`DAEMON_COOKIE`) read for credentials at every (re)connection.
    pub daemon_cookie: Option<PathBuf>,
    pub cache_mb: usize,
    pub reorg_limit: u32,
    /// How often the initial sync makes its progress durable (it writes without a WAL).
    pub sync_flush: Duration,
    pub log_level: String,
    pub poll_blocks: Duration,
    pub poll_mempool: Duration,
    /// The daemon's ZMQ notifications.
    pub zmq: ZmqEndpoints,
    /// The Electrum service: listeners, TLS, protocol answers and session limits.
    pub server: ServerSettings,
    /// Peer discovery.
    pub peers: PeerConfig,
    /// `METRICS_LISTEN`: where Prometheus scrapes; off when `None`.
    pub metrics_listen: Option<SocketAddr>,
}

/// Variables ElectrumX refuses to start with.
const OBSOLETE: &[&str] = &[
    "MAX_SUBSCRIPTIONS",
    "MAX_SUBS",
    "MAX_SESSION_SUBS",
    "BANDWIDTH_LIMIT",
    "HOST",
    "TCP_PORT",
    "SSL_PORT",
    "RPC_HOST",
    "RPC_PORT",
    "REPORT_HOST",
    "REPORT_TCP_PORT",
    "REPORT_SSL_PORT",
    "REPORT_HOST_TOR",
    "REPORT_TCP_PORT_TOR",
    "REPORT_SSL_PORT_TOR",
];

/// A source of variables; the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }
}

impl Env for HashMap<&str, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

fn invalid(var: &'static str, value: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.into(),
        why: why.into(),
    }
}

/// A whole number as Python's `int()` reads it (surrounding blanks and `_` separators allowed);
/// unset or blank is `default`.
fn integer<T: std::str::FromStr>(
    env: &dyn Env,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => match v.trim().replace('_', "").parse() {
            Ok(n) => Ok(n),
            Err(_) => Err(invalid(var, v, "expected a whole number")),
        },
    }
}

/// ElectrumX booleans: true when non-empty after trimming (so `0` and `false` are true).
fn boolean(env: &dyn Env, var: &str, default: bool) -> bool {
    env.get(var).map_or(default, |v| !v.trim().is_empty())
}

fn non_empty(env: &dyn Env, var: &str) -> Option<String> {
    env.get(var).filter(|v| !v.trim().is_empty())
}

/// `METRICS_LISTEN`: where to serve metrics; `None` (off) when unset or empty.
fn metrics_listen(env: &dyn Env) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(value) = non_empty(env, "METRICS_LISTEN") else {
        return Ok(None);
    };
    use std::net::ToSocketAddrs;
    match value
        .trim()
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(addr) => Ok(Some(addr)),
        None => Err(invalid(
            "METRICS_LISTEN",
            value,
            "expected host:port, e.g. 127.0.0.1:9100",
        )),
    }
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        for var in OBSOLETE {
            if env.get(var).is_some() {
                return Err(ConfigError::Obsolete(
                    var,
                    "see ElectrumX's SERVICES and REPORT_SERVICES",
                ));
            }
        }
        let coins_dir = env.get("COINS_DIR").map(PathBuf::from);
        let registry = CoinRegistry::with_dir(coins_dir.as_deref())?;
        let coin_name = env.get("COIN").unwrap_or_else(|| "Bitcoin".into());
        let net = env.get("NET").unwrap_or_else(|| "mainnet".into());
        let coin = registry.lookup(&coin_name, &net)?;

        let db_dir = env.get("DB_DIRECTORY").ok_or(ConfigError::Missing(
            "DB_DIRECTORY",
            "set it to a writable directory for the index (it is created if missing)",
        ))?;
        let db_dir = PathBuf::from(db_dir);
        check_db_dir(&db_dir)?;

        let daemon_cookie = env.get("DAEMON_COOKIE").map(PathBuf::from);
        let urls = env.get("DAEMON_URL").ok_or(ConfigError::Missing(
            "DAEMON_URL",
            "set it to http://user:password@host:port of a txindex=1 daemon",
        ))?;
        let daemon_urls = urls
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .map(|u| {
                DaemonUrl::parse(u, coin.rpc_port, daemon_cookie.is_some())
                    .map_err(|why| invalid("DAEMON_URL", redact(u), why))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if daemon_urls.is_empty() {
            return Err(ConfigError::Missing(
                "DAEMON_URL",
                "it holds no URL; set http://user:password@host:port",
            ));
        }

        let cache_mb = integer(env, "CACHE_MB", 1200usize)?;
        let reorg_limit = integer(env, "REORG_LIMIT", coin.reorg_limit)?;
        let sync_flush = integer(env, "SYNC_FLUSH_INTERVAL", 30u64)?;
        let poll_blocks = integer(env, "DAEMON_POLL_INTERVAL_BLOCKS", 5000u64)?;
        let poll_mempool = integer(env, "DAEMON_POLL_INTERVAL_MEMPOOL", 5000u64)?;
        let zmq = zmq_endpoints(env)?;
        let log_level = env
            .get("LOG_LEVEL")
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(invalid(
                "LOG_LEVEL",
                log_level,
                "use error, warn, info, debug or trace",
            ));
        }
        let server = ServerSettings::from_env(env)?.with_coin_defaults(env, &coin);
        let peers = PeerConfig::from_env(env, &server)?;
        let metrics_listen = metrics_listen(env)?;
        Ok(Config {
            coin,
            db_dir,
            daemon_urls,
            daemon_cookie,
            cache_mb,
            reorg_limit,
            sync_flush: Duration::from_secs(sync_flush),
            log_level,
            poll_blocks: Duration::from_millis(poll_blocks.max(10)),
            poll_mempool: Duration::from_millis(poll_mempool.max(10)),
            zmq,
            server,
            peers,
            metrics_listen,
        })
    }
}

fn zmq_endpoints(env: &dyn Env) -> Result<ZmqEndpoints, ConfigError> {
    let Some(value) = env.get("DAEMON_ZMQ_URL") else {
        return Ok(ZmqEndpoints::Discover);
    };
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("off") {
        return Ok(ZmqEndpoints::Off);
    }
    let endpoints: Vec<String> = value.split(',').map(|e| e.trim().to_string()).collect();
    for e in &endpoints {
        let port = e
            .strip_prefix("tcp://")
            .and_then(|hp| hp.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok());
        if port.is_none() {
            return Err(invalid(
                "DAEMON_ZMQ_URL",
                value.to_string(),
                format!("{e:?} is not tcp://host:port"),
            ));
        }
    }
    Ok(ZmqEndpoints::Fixed(endpoints))
}

fn check_db_dir(dir: &std::path::Path) -> Result<(), ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        var: "DB_DIRECTORY",
        value: dir.display().to_string(),
        why,
    };
    std::fs::create_dir_all(dir).map_err(|e| invalid(format!("cannot create it: {e}")))?;
    let probe = dir.join(".sextant-write-test");
    std::fs::write(&probe, b"").map_err(|e| invalid(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with<'a>(extra: &[(&'a str, &'a str)], db: &'a str) -> HashMap<&'a str, &'a str> {
        let mut m = HashMap::from([
            ("COIN", "Litecoin"),
            ("NET", "regtest"),
            ("DB_DIRECTORY", db),
            ("DAEMON_URL", "http://u:p@127.0.0.1:19443/"),
        ]);
        m.extend(extra.iter().copied());
        m
    }

    #[test]
    fn defaults_follow_electrumx_and_the_coin() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().to_str().unwrap();
        let c = Config::from_env(&env_with(&[], db)).unwrap();
        assert_eq!(c.coin.name, "Litecoin");
        assert_eq!(c.reorg_limit, 4000);
        assert_eq!(c.cache_mb, 1200);
        assert_eq!(c.sync_flush, Duration::from_secs(30));
        assert_eq!(c.daemon_urls[0].url, "http://127.0.0.1:19443/");
        assert_eq!(c.daemon_urls[0].auth.as_deref(), Some("u:p"));
        let c = Config::from_env(&env_with(&[("REORG_LIMIT", "10")], db)).unwrap();
        assert_eq!(c.reorg_limit, 10);
    }

    #[test]
    fn failover_list_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().to_str().unwrap();
        let two = "http://a:b@127.0.0.1:1,http://a:b@127.0.0.2:2";
        let c = Config::from_env(&env_with(&[("DAEMON_URL", two)], db)).unwrap();
        assert_eq!(c.daemon_urls.len(), 2);

        let e = Config::from_env(&env_with(&[("DAEMON_URL", "http://a:secret@h:x")], db))
            .unwrap_err()
            .to_string();
        assert!(e.contains("DAEMON_URL") && !e.contains("secret"), "{e}");
        let e = Config::from_env(&env_with(&[("COIN", "Nope")], db))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown coin"), "{e}");
        let e = Config::from_env(&env_with(&[("CACHE_MB", "lots")], db))
            .unwrap_err()
            .to_string();
        assert!(e.contains("CACHE_MB"), "{e}");
        let e = Config::from_env(&env_with(&[("TCP_PORT", "1")], db))
            .unwrap_err()
            .to_string();
        assert!(e.contains("obsolete"), "{e}");
        let mut m = env_with(&[], db);
        m.remove("DB_DIRECTORY");
        assert!(Config::from_env(&m)
            .unwrap_err()
            .to_string()
            .contains("DB_DIRECTORY"));
    }

    #[test]
    fn unwritable_db_directory_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plainfile");
        std::fs::write(&file, b"x").unwrap();
        let db = file.join("sub");
        let e = Config::from_env(&env_with(&[], db.to_str().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("DB_DIRECTORY"), "{e}");
    }

    #[test]
    fn metrics_listen_address() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().to_str().unwrap();
        let listen = |v: &'static str| {
            Config::from_env(&env_with(&[("METRICS_LISTEN", v)], db)).map(|c| c.metrics_listen)
        };
        assert_eq!(
            Config::from_env(&env_with(&[], db)).unwrap().metrics_listen,
            None
        );
        assert_eq!(listen("").unwrap(), None);
        assert_eq!(
            listen("127.0.0.1:9100").unwrap(),
            Some("127.0.0.1:9100".parse().unwrap())
        );
        let e = listen("9100").unwrap_err().to_string();
        assert!(
            e.contains("METRICS_LISTEN") && e.contains("host:port"),
            "{e}"
        );
    }

    #[test]
    fn zmq_endpoints_are_discovered_fixed_or_off() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().to_str().unwrap();
        let zmq = |v: &'static str| {
            Config::from_env(&env_with(&[("DAEMON_ZMQ_URL", v)], db)).map(|c| c.zmq)
        };
        assert_eq!(
            Config::from_env(&env_with(&[], db)).unwrap().zmq,
            ZmqEndpoints::Discover
        );
        assert_eq!(zmq("").unwrap(), ZmqEndpoints::Off);
        assert_eq!(zmq("OFF").unwrap(), ZmqEndpoints::Off);
        assert_eq!(
            zmq("tcp://127.0.0.1:28332, tcp://[::1]:28333").unwrap(),
            ZmqEndpoints::Fixed(vec![
                "tcp://127.0.0.1:28332".into(),
                "tcp://[::1]:28333".into()
            ])
        );
        let e = zmq("127.0.0.1:28332").unwrap_err().to_string();
        assert!(e.contains("DAEMON_ZMQ_URL") && e.contains("tcp://"), "{e}");
    }

    #[test]
    fn integers_read_like_python() {
        let env = HashMap::from([("N", " 1_000 "), ("BAD", "1e3"), ("BLANK", " ")]);
        assert_eq!(integer(&env, "N", 0usize).unwrap(), 1000);
        assert_eq!(integer(&env, "UNSET", 7u32).unwrap(), 7);
        assert_eq!(integer(&env, "BLANK", 7u32).unwrap(), 7);
        assert!(integer(&env, "BAD", 0u64).is_err());
    }
}
