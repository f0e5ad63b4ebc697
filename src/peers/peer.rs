//! One peer server: what we know of it, its IRC "real name" form (`host v1.4.2 p1000 s50002
//! t50001`), the `server.features` object that describes it, and which hosts may be peers.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::is_valid_hostname;
use crate::types::is_private;

/// How a peer was first heard of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// Ourselves, from `REPORT_SERVICES`.
    Myself,
    /// The coin file's seed list.
    Coin,
    /// Another server's `server.peers.subscribe` reply.
    PeerList,
    /// An accepted `server.add_peer` request.
    AddPeer,
    /// The admin RPC's `add_peer`.
    Admin,
    /// Verified at least once: where it came from no longer matters.
    Verified,
}

impl Source {
    /// ElectrumX's words in the admin `peers` list.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::Myself => "env",
            Source::Coin => "coins.py",
            Source::PeerList => "peer",
            Source::AddPeer => "add_peer",
            Source::Admin => "RPC",
            Source::Verified => "peer",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Transport {
    Ssl,
    Tcp,
}

/// A peer, keyed by its host name (lower case). Times are Unix milliseconds, 0 for never.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Peer {
    pub host: String,
    pub tcp_port: Option<u16>,
    pub ssl_port: Option<u16>,
    pub protocol_max: String,
    pub pruning: Option<u64>,
    pub server_version: Option<String>,
    pub source: Source,
    /// The address we last reached it at (not for onion peers).
    pub ip_addr: Option<IpAddr>,
    pub last_good: u64,
    pub last_try: u64,
    /// Consecutive failed verifications.
    pub try_count: u32,
    /// Failed a verification check (wrong chain, …): never advertised.
    pub bad: bool,
    /// Ports another source reported, tried after the known ones at the next attempt.
    #[serde(skip)]
    pub other_ports: Vec<(Transport, u16)>,
    /// Verify at the next opportunity, whatever the backoff says.
    #[serde(skip)]
    pub wake: bool,
}

/// ElectrumX's `version_string(protocol_tuple(text))`: dotted integers with at least one dot;
/// anything unparsable becomes `0.0`.
fn canonical_version(text: &str) -> String {
    let parts: Option<Vec<u64>> = text.split('.').map(|p| p.parse().ok()).collect();
    let mut parts = parts.unwrap_or_else(|| vec![0]);
    if parts.len() == 1 {
        parts.push(0);
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// An integer feature, which ElectrumX also accepts as a numeric string.
fn integer(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn port(v: Option<&Value>) -> Option<u16> {
    integer(v)
        .filter(|p| (1..65536).contains(p))
        .map(|p| p as u16)
}

impl Peer {
    pub(crate) fn new(host: &str, source: Source) -> Peer {
        Peer {
            host: host.to_ascii_lowercase(),
            tcp_port: None,
            ssl_port: None,
            protocol_max: "1.4".into(),
            pruning: None,
            server_version: None,
            source,
            ip_addr: None,
            last_good: 0,
            last_try: 0,
            try_count: 0,
            bad: false,
            other_ports: Vec::new(),
            wake: true,
        }
    }

    /// Parses `host [v1.4.2] [pNNN] [s[port]] [t[port]]`; a bare `s`/`t` is the coin's default
    /// port. `None` without a host.
    pub(crate) fn from_real_name(
        text: &str,
        default_ports: (u16, u16),
        source: Source,
    ) -> Option<Peer> {
        let mut words = text.split_whitespace();
        let mut peer = Peer::new(words.next()?, source);
        for w in words {
            // The first character, not byte: another server's peer list may start a word with
            // any character (fuzzing found the byte split panicking on one).
            let mut chars = w.chars();
            let letter = chars.next();
            let rest = chars.as_str();
            match letter {
                Some('s') if rest.is_empty() => peer.ssl_port = Some(default_ports.0),
                Some('t') if rest.is_empty() => peer.tcp_port = Some(default_ports.1),
                Some('s') => peer.ssl_port = port(Some(&Value::String(rest.into()))),
                Some('t') => peer.tcp_port = port(Some(&Value::String(rest.into()))),
                Some('v') => peer.protocol_max = canonical_version(rest),
                Some('p') => peer.pruning = rest.parse().ok().filter(|p| *p > 0),
                _ => {}
            }
        }
        Some(peer)
    }

    /// One peer per host of a `server.features` object (as `server.add_peer` receives it).
    pub(crate) fn from_features(features: &Value, source: Source) -> Vec<Peer> {
        let Some(hosts) = features.get("hosts").and_then(Value::as_object) else {
            return Vec::new();
        };
        hosts
            .keys()
            .map(|host| {
                let mut p = Peer::new(host, source);
                p.update_features(host, features);
                p
            })
            .collect()
    }

    /// Takes ports and versions from a `server.features` object whose `hosts` has `host`.
    pub(crate) fn update_features(&mut self, host: &str, features: &Value) {
        let entry = features
            .get("hosts")
            .and_then(Value::as_object)
            .and_then(|h| h.get(host));
        self.tcp_port = port(entry.and_then(|e| e.get("tcp_port")));
        self.ssl_port = port(entry.and_then(|e| e.get("ssl_port")));
        self.pruning = integer(features.get("pruning")).filter(|p| *p > 0);
        if let Some(v) = features.get("protocol_max").and_then(Value::as_str) {
            self.protocol_max = canonical_version(v);
        }
        if let Some(v) = features.get("server_version").and_then(Value::as_str) {
            self.server_version = Some(v.to_string());
        }
    }

    pub(crate) fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    pub(crate) fn is_tor(&self) -> bool {
        self.host.ends_with(".onion")
    }

    /// A host we could ever connect to: a valid name, or a unicast address.
    pub(crate) fn is_valid(&self) -> bool {
        match self.ip() {
            Some(ip) => !(ip.is_multicast() || ip.is_unspecified()),
            None => is_valid_hostname(&self.host),
        }
    }

    /// May be listed and contacted: valid, and neither a private address nor `localhost`
    /// unless `allow_private`.
    pub(crate) fn is_public(&self, allow_private: bool) -> bool {
        self.is_valid()
            && (allow_private
                || match self.ip() {
                    Some(ip) => !is_private(&ip),
                    None => self.host != "localhost",
                })
    }

    /// The same server as `other`: same host name, or one's host is the other's address.
    pub(crate) fn matches(&self, other: &Peer) -> bool {
        let ip_text = |p: &Peer| p.ip_addr.map(|ip| ip.to_string());
        other.host == self.host
            || Some(&other.host) == ip_text(self).as_ref()
            || ip_text(other).as_ref() == Some(&self.host)
    }

    /// Ports to try in order: SSL first, then TCP, then ports another source reported.
    pub(crate) fn connection_order(&self) -> Vec<(Transport, u16)> {
        let mut out: Vec<(Transport, u16)> = [
            self.ssl_port.map(|p| (Transport::Ssl, p)),
            self.tcp_port.map(|p| (Transport::Tcp, p)),
        ]
        .into_iter()
        .flatten()
        .collect();
        for pair in &self.other_ports {
            if !out.contains(pair) {
                out.push(*pair);
            }
        }
        out
    }

    /// Remembers ports that differ from ours; true when there were any.
    pub(crate) fn check_ports(&mut self, other: &Peer) -> bool {
        if let Some(p) = other.ssl_port.filter(|p| Some(*p) != self.ssl_port) {
            self.other_ports.push((Transport::Ssl, p));
        }
        if let Some(p) = other.tcp_port.filter(|p| Some(*p) != self.tcp_port) {
            self.other_ports.push((Transport::Tcp, p));
        }
        !self.other_ports.is_empty()
    }

    /// At most one recently good peer per bucket while verifying: one IPv4 address, one IPv6
    /// /64, or all onion peers together.
    pub(crate) fn bucket_internal(&self) -> String {
        self.bucket(32, 64)
    }

    /// The bucket for `server.peers.subscribe`'s at most two peers per IPv4 /16 or IPv6 /56.
    pub(crate) fn bucket_external(&self) -> String {
        self.bucket(16, 56)
    }

    fn bucket(&self, v4_bits: u32, v6_bits: u32) -> String {
        if self.is_tor() {
            return "onion".into();
        }
        match self.ip_addr {
            None => String::new(),
            Some(IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - v4_bits).unwrap_or(0);
                format!(
                    "{}/{v4_bits}",
                    std::net::Ipv4Addr::from(u32::from(ip) & mask)
                )
            }
            Some(IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - v6_bits).unwrap_or(0);
                format!("{}/{v6_bits}", Ipv6Addr::from(u128::from(ip) & mask))
            }
        }
    }

    /// `server.peers.subscribe`'s entry: `[ip or host, host, ["v…", "p…", "s…", "t…"]]`, ports
    /// always explicit as ElectrumX writes them.
    pub(crate) fn to_tuple(&self) -> Value {
        let mut details = vec![format!("v{}", self.protocol_max)];
        if let Some(p) = self.pruning {
            details.push(format!("p{p}"));
        }
        if let Some(p) = self.ssl_port {
            details.push(format!("s{p}"));
        }
        if let Some(p) = self.tcp_port {
            details.push(format!("t{p}"));
        }
        let first = self
            .ip_addr
            .map_or_else(|| self.host.clone(), |ip| ip.to_string());
        serde_json::json!([first, self.host, details])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn real_names_parse_like_electrumx() {
        let p = Peer::from_real_name("Host.Example s t", (50002, 50001), Source::Coin).unwrap();
        assert_eq!(p.host, "host.example");
        assert_eq!((p.ssl_port, p.tcp_port), (Some(50002), Some(50001)));
        let p = Peer::from_real_name("h.example v1.4.2 p1000 s444", (1, 2), Source::Coin).unwrap();
        assert_eq!(
            (p.ssl_port, p.tcp_port, p.pruning),
            (Some(444), None, Some(1000))
        );
        assert_eq!(p.protocol_max, "1.4.2");
        let p = Peer::from_real_name("h.example v1 sx t0", (1, 2), Source::Coin).unwrap();
        assert_eq!((p.ssl_port, p.tcp_port), (None, None));
        assert_eq!(p.protocol_max, "1.0");
        assert!(Peer::from_real_name("  ", (1, 2), Source::Coin).is_none());
    }

    /// Found by fuzzing (`fuzz/`, target `peer_features`): a `server.peers.subscribe` entry
    /// whose detail starts with a multi-byte character panicked, splitting the word at byte 1.
    #[test]
    fn real_names_whose_words_start_with_any_character() {
        let p = Peer::from_real_name("h.example \u{78b}0 Мt é sé t1", (1, 2), Source::PeerList)
            .unwrap();
        assert_eq!((p.ssl_port, p.tcp_port), (None, Some(1)));
        assert_eq!(p.protocol_max, "1.4");
    }

    #[test]
    fn features_give_one_peer_per_host() {
        let f = json!({
            "hosts": {"a.example": {"tcp_port": 1, "ssl_port": "2"}, "b.onion": {"tcp_port": 70000}},
            "protocol_max": "1.4.2", "pruning": null, "server_version": "ElectrumX 1.16.0"
        });
        let peers = Peer::from_features(&f, Source::AddPeer);
        assert_eq!(peers.len(), 2);
        assert_eq!((peers[0].tcp_port, peers[0].ssl_port), (Some(1), Some(2)));
        assert_eq!(peers[1].tcp_port, None, "port out of range");
        assert!(peers[1].is_tor());
        assert_eq!(peers[0].server_version.as_deref(), Some("ElectrumX 1.16.0"));
        assert!(Peer::from_features(&json!({"hosts": []}), Source::AddPeer).is_empty());
        assert!(Peer::from_features(&json!("x"), Source::AddPeer).is_empty());
    }

    #[test]
    fn tuple_has_explicit_ports() {
        let mut p =
            Peer::from_real_name("h.example v1.4 p5 s t", (50002, 50001), Source::Coin).unwrap();
        assert_eq!(
            p.to_tuple(),
            json!(["h.example", "h.example", ["v1.4", "p5", "s50002", "t50001"]])
        );
        p.ip_addr = Some("1.2.3.4".parse().unwrap());
        assert_eq!(p.to_tuple()[0], "1.2.3.4");
    }

    #[test]
    fn public_and_buckets() {
        let peer = |h: &str| Peer::new(h, Source::Coin);
        assert!(peer("electrum.example.com").is_public(false));
        assert!(!peer("localhost").is_public(false));
        assert!(!peer("127.0.0.1").is_public(false));
        assert!(!peer("10.1.2.3").is_public(false));
        assert!(peer("127.0.0.1").is_public(true));
        assert!(!peer("0.0.0.0").is_public(true));
        assert!(!peer("224.0.0.1").is_public(true));
        assert!(peer("8.8.8.8").is_public(false));
        assert!(!peer("bad host").is_valid());
        let mut p = peer("a.example");
        assert_eq!(p.bucket_external(), "");
        p.ip_addr = Some("1.2.3.4".parse().unwrap());
        assert_eq!(p.bucket_internal(), "1.2.3.4/32");
        assert_eq!(p.bucket_external(), "1.2.0.0/16");
        p.ip_addr = Some("2001:db8:1:2:3::1".parse().unwrap());
        assert_eq!(p.bucket_internal(), "2001:db8:1:2::/64");
        assert_eq!(p.bucket_external(), "2001:db8:1::/56");
        assert_eq!(peer("x.onion").bucket_external(), "onion");
    }

    #[test]
    fn matching_and_ports() {
        let mut a = Peer::from_real_name("a.example s1 t2", (0, 0), Source::Coin).unwrap();
        a.ip_addr = Some("1.2.3.4".parse().unwrap());
        let by_ip = Peer::new("1.2.3.4", Source::Coin);
        assert!(a.matches(&by_ip) && by_ip.matches(&a));
        assert!(!a.matches(&Peer::new("b.example", Source::Coin)));
        let moved = Peer::from_real_name("a.example s1 t3", (0, 0), Source::Coin).unwrap();
        assert!(a.check_ports(&moved));
        assert_eq!(
            a.connection_order(),
            vec![
                (Transport::Ssl, 1),
                (Transport::Tcp, 2),
                (Transport::Tcp, 3)
            ]
        );
    }
}
