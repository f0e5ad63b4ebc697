//! The protocol server's environment variables, with ElectrumX's names and rules.
//!
//! Differences from ElectrumX, on purpose: with `SERVICES` unset Sextant listens on
//! `tcp://:50001` (plus `ssl://:50002` when `SSL_CERTFILE` is set or `SSL_SELF_SIGNED` on)
//! instead of nowhere; `MAX_SEND` defaults to ElectrumX 1.16's 1,000,000 since we serve protocol
//! 1.4.x; and `SSL_SELF_SIGNED` (Sextant only) does in the server what the ElectrumX image's
//! start script does with openssl: TLS without a certificate supplied.

use std::path::PathBuf;

use regex::Regex;

use super::limits::SessionLimits;
use super::services::{parse_services, Host, Kind, Service};
use super::{boolean, integer, invalid, non_empty, ConfigError, Env};
use crate::types::is_private;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerDiscovery {
    On,
    SelfOnly,
    Off,
}

/// Settings of the Electrum protocol server.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub services: Vec<Service>,
    pub report_services: Vec<Service>,
    pub ssl_certfile: Option<PathBuf>,
    pub ssl_keyfile: Option<PathBuf>,
    /// `SSL_SELF_SIGNED`: with no `SSL_CERTFILE`, TLS services use a self-signed certificate
    /// made once in `DB_DIRECTORY` and kept there (wallets pin it on first use).
    pub ssl_self_signed: bool,
    /// Read at each `server.banner`; relative paths are under `DB_DIRECTORY`, as in ElectrumX.
    pub banner_file: Option<PathBuf>,
    pub donation_address: String,
    /// Largest response; also sets the history limit.
    pub max_send: usize,
    /// Largest request line.
    pub max_recv: usize,
    /// `RESPONSE_CACHE_MB` in bytes: serialized answers of scripts with long histories kept.
    pub response_cache_bytes: usize,
    pub peer_discovery: PeerDiscovery,
    pub peer_announce: bool,
    /// `PEER_ALLOW_PRIVATE` (Sextant only): private and loopback addresses may be peers and may
    /// be announced, for private networks and tests.
    pub peer_allow_private: bool,
    /// Refuse clients whose name matches at its start.
    pub drop_client: Option<Regex>,
    /// Kevacoin's `BANNED_HASHTAGS`: hashtags `blockchain.keva.get_hashtag` answers empty for.
    pub banned_hashtags: Vec<String>,
    /// Costs, throttling and session limits.
    pub limits: SessionLimits,
}

pub(crate) const DEFAULT_MAX_SEND: usize = 1_000_000;
pub(crate) const MIN_MAX_SEND: usize = 350_000;
pub(crate) const DEFAULT_MAX_RECV: usize = 1_000_000;
const DEFAULT_TCP_PORT: u16 = 50001;
const DEFAULT_SSL_PORT: u16 = 50002;

/// `BANNED_HASHTAGS` as the Kevacoin fork reads it: a comma list, each tag trimmed and
/// lower-cased (`#` not included).
fn banned_hashtags(var: Option<String>) -> Vec<String> {
    var.as_deref()
        .unwrap_or("")
        .to_lowercase()
        .split(',')
        .map(|t| t.trim().to_string())
        .collect()
}

impl ServerSettings {
    /// Applies the coin file's defaults where the environment is silent: a coin may need a
    /// bigger `MAX_SEND` (2016 Equihash headers are ~6 MB of hex).
    pub(super) fn with_coin_defaults(mut self, env: &dyn Env, coin: &crate::coin::Coin) -> Self {
        if env.get("MAX_SEND").is_none() {
            if let Some(max_send) = coin.max_send {
                self.max_send = max_send.max(MIN_MAX_SEND);
            }
        }
        self
    }

    pub(crate) fn from_env(env: &dyn Env) -> Result<ServerSettings, ConfigError> {
        let ssl_certfile = non_empty(env, "SSL_CERTFILE").map(PathBuf::from);
        let ssl_keyfile = non_empty(env, "SSL_KEYFILE").map(PathBuf::from);
        let ssl_self_signed = boolean(env, "SSL_SELF_SIGNED", false);
        let services = match env.get("SERVICES") {
            Some(text) => {
                parse_services(&text, true).map_err(|why| invalid("SERVICES", &text, why))?
            }
            None => {
                let mut s = vec![Service {
                    kind: Kind::Tcp,
                    host: Host::AllInterfaces,
                    port: DEFAULT_TCP_PORT,
                }];
                if ssl_certfile.is_some() || ssl_self_signed {
                    s.push(Service {
                        kind: Kind::Ssl,
                        host: Host::AllInterfaces,
                        port: DEFAULT_SSL_PORT,
                    });
                }
                s
            }
        };
        for s in &services {
            if s.host.to_string().ends_with(".onion") {
                return Err(invalid(
                    "SERVICES",
                    s.to_string(),
                    format!("bad host for SERVICES: {s}"),
                ));
            }
        }
        // A half-supplied pair is a mistake even with SSL_SELF_SIGNED on: say so rather than
        // quietly serve the self-signed certificate.
        let self_signed = ssl_self_signed && ssl_certfile.is_none() && ssl_keyfile.is_none();
        if services.iter().any(|s| s.kind.is_tls()) && !self_signed {
            if ssl_certfile.is_none() {
                return Err(ConfigError::Missing(
                    "SSL_CERTFILE",
                    "an ssl:// or wss:// service needs a PEM certificate chain \
                     (or SSL_SELF_SIGNED=1 for a self-signed one)",
                ));
            } else if ssl_keyfile.is_none() {
                return Err(ConfigError::Missing(
                    "SSL_KEYFILE",
                    "an ssl:// or wss:// service needs the certificate's PEM private key",
                ));
            }
        }

        let peer_announce = boolean(env, "PEER_ANNOUNCE", true);
        let peer_allow_private = boolean(env, "PEER_ALLOW_PRIVATE", false);
        let report_text = env.get("REPORT_SERVICES").unwrap_or_default();
        let report_services = parse_services(&report_text, false)
            .map_err(|why| invalid("REPORT_SERVICES", &report_text, why))?;
        for s in &report_services {
            let bad = |why: String| invalid("REPORT_SERVICES", &report_text, why);
            match &s.host {
                _ if s.kind == Kind::Rpc => {
                    return Err(bad("bad protocol for REPORT_SERVICES: rpc".into()))
                }
                Host::Ip(ip)
                    if ip.is_multicast()
                        || ip.is_unspecified()
                        || (is_private(ip) && peer_announce && !peer_allow_private) =>
                {
                    return Err(bad(format!("bad IP address for REPORT_SERVICES: {ip}")))
                }
                Host::Name(n) if n.eq_ignore_ascii_case("localhost") => {
                    return Err(bad(format!("bad host for REPORT_SERVICES: {n}")))
                }
                _ => {}
            }
        }

        let db_dir = env.get("DB_DIRECTORY").map(PathBuf::from);
        let banner_file = non_empty(env, "BANNER_FILE").map(|f| {
            let p = PathBuf::from(f);
            match (&db_dir, p.is_relative()) {
                (Some(dir), true) => dir.join(p),
                _ => p,
            }
        });
        let max_send = integer(env, "MAX_SEND", DEFAULT_MAX_SEND)?.max(MIN_MAX_SEND);
        let max_recv = integer(env, "MAX_RECV", DEFAULT_MAX_RECV)?;
        let peer_discovery = match env
            .get("PEER_DISCOVERY")
            .unwrap_or_else(|| "on".into())
            .trim()
            .to_lowercase()
            .as_str()
        {
            "off" | "" => PeerDiscovery::Off,
            "self" => PeerDiscovery::SelfOnly,
            _ => PeerDiscovery::On,
        };
        let drop_client = match non_empty(env, "DROP_CLIENT") {
            None => None,
            // Python's re.match anchors at the start only.
            Some(re) => Some(
                Regex::new(&format!("^(?:{re})"))
                    .map_err(|e| invalid("DROP_CLIENT", &re, e.to_string()))?,
            ),
        };
        let banned_hashtags = banned_hashtags(env.get("BANNED_HASHTAGS"));
        Ok(ServerSettings {
            banned_hashtags,
            services,
            report_services,
            ssl_certfile,
            ssl_keyfile,
            ssl_self_signed,
            banner_file,
            donation_address: env.get("DONATION_ADDRESS").unwrap_or_default(),
            max_send,
            max_recv,
            response_cache_bytes: integer(env, "RESPONSE_CACHE_MB", 256usize)?
                .saturating_mul(1_000_000),
            peer_discovery,
            peer_announce,
            peer_allow_private,
            drop_client,
            limits: SessionLimits::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&'static str, &'static str)]) -> Result<ServerSettings, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        ServerSettings::from_env(&env)
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.services[0].to_string(), "tcp://all_interfaces:50001");
        assert!(s.report_services.is_empty());
        assert_eq!(s.max_send, 1_000_000);
        assert_eq!(s.max_recv, 1_000_000);
        assert_eq!(s.response_cache_bytes, 256_000_000);
        assert_eq!(
            settings(&[("RESPONSE_CACHE_MB", "0")])
                .unwrap()
                .response_cache_bytes,
            0
        );
        assert_eq!(s.peer_discovery, PeerDiscovery::On);
        assert!(s.peer_announce);
        assert_eq!(s.donation_address, "");
        assert!(s.drop_client.is_none());
        let s = settings(&[("SSL_CERTFILE", "/c.pem"), ("SSL_KEYFILE", "/k.pem")]).unwrap();
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.services[1].kind, Kind::Ssl);
        assert_eq!(s.services[1].port, 50002);
        assert!(!s.ssl_self_signed);
        let s = settings(&[("SSL_SELF_SIGNED", "1")]).unwrap();
        assert!(s.ssl_self_signed);
        assert_eq!(
            s.services.len(),
            2,
            "ssl://:50002 without a certificate supplied"
        );
        assert_eq!(s.services[1].to_string(), "ssl://all_interfaces:50002");
        let s = settings(&[("SSL_SELF_SIGNED", "")]).unwrap();
        assert!(!s.ssl_self_signed, "empty is off, as ElectrumX booleans");
        assert_eq!(s.services.len(), 1);
    }

    #[test]
    fn explicit_values() {
        let s = settings(&[
            ("SERVICES", "tcp://127.0.0.1:1,rpc://"),
            (
                "REPORT_SERVICES",
                "tcp://electrum.example.com:50001,ssl://electrum.example.com:50002",
            ),
            ("MAX_SEND", "100"),
            ("MAX_RECV", "5000"),
            ("PEER_DISCOVERY", " OFF "),
            ("PEER_ANNOUNCE", ""),
            ("DROP_CLIENT", "bad|evil"),
            ("BANNER_FILE", "banner.txt"),
            ("DB_DIRECTORY", "/db"),
            ("DONATION_ADDRESS", "addr"),
        ])
        .unwrap();
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.report_services.len(), 2);
        assert_eq!(s.max_send, MIN_MAX_SEND, "raised to the minimum");
        assert_eq!(s.max_recv, 5000);
        assert_eq!(s.peer_discovery, PeerDiscovery::Off);
        assert!(!s.peer_announce);
        let re = s.drop_client.unwrap();
        assert!(re.is_match("evil client"));
        assert!(!re.is_match("an evil client"), "matched at the start only");
        assert_eq!(s.banner_file.unwrap(), PathBuf::from("/db/banner.txt"));
        assert_eq!(s.donation_address, "addr");
        let s = settings(&[("PEER_DISCOVERY", "self"), ("PEER_ANNOUNCE", "0")]).unwrap();
        assert_eq!(s.peer_discovery, PeerDiscovery::SelfOnly);
        assert!(s.peer_announce, "any non-empty value is true");
        assert!(settings(&[("SERVICES", "")]).unwrap().services.is_empty());
    }

    #[test]
    fn errors() {
        let e = |pairs: &[(&'static str, &'static str)]| settings(pairs).unwrap_err().to_string();
        assert!(e(&[("SERVICES", "ssl://:50002")]).contains("SSL_CERTFILE"));
        assert!(e(&[("SERVICES", "ssl://:50002"), ("SSL_CERTFILE", "c")]).contains("SSL_KEYFILE"));
        let self_signed = ("SSL_SELF_SIGNED", "1");
        assert!(settings(&[("SERVICES", "ssl://:50002,wss://:50004"), self_signed]).is_ok());
        assert!(
            e(&[("SERVICES", "ssl://:1"), self_signed, ("SSL_KEYFILE", "k")])
                .contains("SSL_CERTFILE")
        );
        assert!(
            e(&[("SERVICES", "ssl://:1"), self_signed, ("SSL_CERTFILE", "c")])
                .contains("SSL_KEYFILE")
        );
        assert!(e(&[("SERVICES", "localhost:50001")]).contains("SERVICES"));
        assert!(e(&[("SERVICES", "tcp://x.onion:1")]).contains("onion"));
        assert!(e(&[("REPORT_SERVICES", "rpc://h.com:1")]).contains("rpc"));
        assert!(e(&[("REPORT_SERVICES", "tcp://localhost:1")]).contains("localhost"));
        assert!(e(&[("REPORT_SERVICES", "tcp://10.0.0.1:1")]).contains("bad IP"));
        assert!(settings(&[
            ("REPORT_SERVICES", "tcp://10.0.0.1:1"),
            ("PEER_ANNOUNCE", "")
        ])
        .is_ok());
        assert!(settings(&[
            ("REPORT_SERVICES", "tcp://127.0.0.2:1"),
            ("PEER_ALLOW_PRIVATE", "1")
        ])
        .is_ok());
        assert!(e(&[("REPORT_SERVICES", "tcp://0.0.0.0:1")]).contains("bad IP"));
        assert!(e(&[("MAX_SEND", "lots")]).contains("MAX_SEND"));
        assert!(e(&[("DROP_CLIENT", "(")]).contains("DROP_CLIENT"));
    }
}

#[cfg(test)]
mod coin_default_tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_coin_file_sets_max_send_unless_the_environment_does() {
        let reg = crate::coin::CoinRegistry::embedded().unwrap();
        let kmd = reg.lookup("Komodo", "mainnet").unwrap();
        let ltc = reg.lookup("Litecoin", "mainnet").unwrap();
        let quiet: HashMap<&str, &str> = HashMap::new();
        let base = ServerSettings::from_env(&quiet).unwrap();
        let default = base.max_send;
        assert_eq!(
            base.clone().with_coin_defaults(&quiet, &kmd).max_send,
            8_100_000
        );
        assert_eq!(
            base.clone().with_coin_defaults(&quiet, &ltc).max_send,
            default
        );
        let set: HashMap<&str, &str> = HashMap::from([("MAX_SEND", "2000000")]);
        let s = ServerSettings::from_env(&set).unwrap();
        assert_eq!(s.with_coin_defaults(&set, &kmd).max_send, 2_000_000);
    }
}
