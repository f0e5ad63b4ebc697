//! Configuration from environment variables, with ElectrumX's names and defaults.
//!
//! Every problem is one line that says what is wrong and how to fix it; `main` prints it and
//! exits with status 2.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::coin::{Coin, CoinRegistry};

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

/// One daemon RPC endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonUrl {
    /// `http://host:port/` without credentials, safe to log.
    pub url: String,
    /// `user:password`, unless credentials come from a cookie file.
    pub auth: Option<String>,
}

impl DaemonUrl {
    /// Parses `[http[s]://][user:pass@]host[:port][/]`. A missing port is the coin's RPC port.
    pub fn parse(text: &str, default_port: u16, cookie: bool) -> Result<DaemonUrl, String> {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
                (s.to_ascii_lowercase(), r)
            }
            Some((s, _)) => return Err(format!("scheme {s:?} is not http or https")),
            None => ("http".to_string(), text),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) =
            match rest.rsplit_once('@') {
                Some((auth, hp)) => {
                    if !auth.contains(':') {
                        return Err("credentials must be user:password@".into());
                    }
                    (Some(auth.to_string()), hp)
                }
                None if cookie => (None, rest),
                None => return Err(
                    "no credentials: write http://user:password@host:port, or set DAEMON_COOKIE \
                     to the daemon's .cookie file"
                        .into(),
                ),
            };
        if hostport.is_empty() || hostport.contains('/') {
            return Err("expected host[:port] after the credentials".into());
        }
        let with_port = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("unclosed [ in an IPv6 address")?;
            match after.strip_prefix(':') {
                Some(p) => format!("[{host}]:{}", parse_port(p)?),
                None if after.is_empty() => format!("[{host}]:{default_port}"),
                None => return Err(format!("unexpected {after:?} after the IPv6 address")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((host, p)) => format!("{host}:{}", parse_port(p)?),
                None => format!("{hostport}:{default_port}"),
            }
        };
        url::Url::parse(&format!("{scheme}://{with_port}/")).map_err(|e| e.to_string())?;
        Ok(DaemonUrl {
            url: format!("{scheme}://{with_port}/"),
            auth,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))
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

fn integer<T: std::str::FromStr>(
    env: &dyn Env,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
            var,
            value: v,
            why: "expected a whole number".into(),
        }),
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
                DaemonUrl::parse(u, coin.rpc_port, daemon_cookie.is_some()).map_err(|why| {
                    ConfigError::Invalid {
                        var: "DAEMON_URL",
                        value: redact(u),
                        why,
                    }
                })
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
        let log_level = env
            .get("LOG_LEVEL")
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError::Invalid {
                var: "LOG_LEVEL",
                value: log_level,
                why: "use error, warn, info, debug or trace".into(),
            });
        }
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
        })
    }
}

/// Hides the password of a URL that is about to be printed.
fn redact(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((auth, rest)) => match auth.split_once(':') {
            Some((user, _)) => format!("{user}:***@{rest}"),
            None => format!("***@{rest}"),
        },
        None => url.to_string(),
    }
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
    fn daemon_urls_parse_like_electrumx() {
        let p = |s| DaemonUrl::parse(s, 9332, false);
        assert_eq!(p("u:p@host").unwrap().url, "http://host:9332/");
        assert_eq!(p("https://u:p@host:1/").unwrap().url, "https://host:1/");
        assert_eq!(p("u:p@[::1]:5").unwrap().url, "http://[::1]:5/");
        assert_eq!(p("u:p@[::1]").unwrap().url, "http://[::1]:9332/");
        assert!(p("127.0.0.1:9332").unwrap_err().contains("DAEMON_COOKIE"));
        assert!(p("ftp://u:p@h").is_err());
        assert!(p("u:p@h:99999").is_err());
        assert!(p("u:p@h:x").is_err());
        assert_eq!(DaemonUrl::parse("127.0.0.1:5", 1, true).unwrap().auth, None);
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
}
