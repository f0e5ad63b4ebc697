//! `SERVICES` / `REPORT_SERVICES` entries, parsed as ElectrumX (aiorpcX's `Service`) does:
//! `proto://host:port` with proto one of tcp, ssl, ws, wss, rpc (any case); IPv6 hosts in
//! brackets; in `SERVICES` an omitted host means all interfaces (rpc: localhost) and rpc's
//! port defaults to 8000. A bare `host:port` is rejected, as are two services on one address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Tcp,
    Ssl,
    Ws,
    Wss,
    /// The admin interface.
    Rpc,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Kind::Tcp),
            "ssl" => Some(Kind::Ssl),
            "ws" => Some(Kind::Ws),
            "wss" => Some(Kind::Wss),
            "rpc" => Some(Kind::Rpc),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Ssl => "ssl",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
            Kind::Rpc => "rpc",
        }
    }

    /// Served over TLS.
    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Kind::Ssl | Kind::Wss)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// Host omitted in `SERVICES`: listen on every interface.
    AllInterfaces,
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    /// As Python's `str()` of the host (IPv6 without brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::AllInterfaces => f.write_str("all_interfaces"),
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => ip.fmt(f),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Service {
    pub kind: Kind,
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "{}://[{ip}]:{}", self.kind.name(), self.port),
            h => write!(f, "{}://{h}:{}", self.kind.name(), self.port),
        }
    }
}

impl Service {
    /// The socket addresses to bind.
    pub(crate) fn bind_addrs(&self) -> Vec<SocketAddr> {
        match &self.host {
            Host::AllInterfaces => vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), self.port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self.port),
            ],
            Host::Ip(ip) => vec![SocketAddr::new(*ip, self.port)],
            Host::Name(n) if n.eq_ignore_ascii_case("localhost") => vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.port),
            ],
            Host::Name(n) => {
                use std::net::ToSocketAddrs;
                (n.as_str(), self.port)
                    .to_socket_addrs()
                    .map(|a| a.collect())
                    .unwrap_or_default()
            }
        }
    }
}

/// aiorpcX's hostname rule: labels of letters, digits, `-` and `_`, a non-numeric last label.
pub(crate) fn is_valid_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let last = labels.last().expect("split yields one part");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    labels.iter().all(|l| {
        let b = l.as_bytes();
        let edge = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        !b.is_empty()
            && b.len() <= 63
            && edge(b[0])
            && edge(b[b.len() - 1])
            && b.iter().all(|&c| edge(c) || c == b'-')
    })
}

fn classify_host(host: &str) -> Result<Host, String> {
    if is_valid_hostname(host) {
        return Ok(Host::Name(host.to_string()));
    }
    host.parse::<IpAddr>()
        .map(Host::Ip)
        .map_err(|_| format!("'{host}' does not appear to be an IPv4 or IPv6 address"))
}

fn split_address(s: &str) -> (&str, &str) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let after = &rest[end + 1..];
            if after.is_empty() {
                return (&rest[..end], "");
            }
            if let Some(port) = after.strip_prefix(':') {
                return (&rest[..end], port);
            }
        }
    }
    match s.find(':') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u32>()
        .ok()
        .filter(|n| p.bytes().all(|b| b.is_ascii_digit()) && (1..=65535).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| format!("invalid port: {p}"))
}

/// One entry. `defaults` applies `SERVICES`' defaults (omitted host, rpc's host and port).
fn parse_one(text: &str, defaults: bool) -> Result<Service, String> {
    let (proto, address) = match text.split_once("://") {
        Some(pair) => pair,
        None if defaults && Kind::parse(text) == Some(Kind::Rpc) => (text, ""),
        None => return Err(format!("invalid service string: {text}")),
    };
    let valid_proto = proto.len() >= 2
        && proto.as_bytes()[0].is_ascii_alphabetic()
        && proto
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid_proto {
        return Err(format!("invalid protocol: {proto}"));
    }
    let kind = Kind::parse(proto).ok_or_else(|| "unknown protocol".to_string())?;
    let (host, port) = split_address(address);
    let host = match (host, defaults, kind) {
        ("", true, Kind::Rpc) => Host::Name("localhost".into()),
        ("", true, _) => Host::AllInterfaces,
        ("", false, _) => return Err(format!("invalid address string: {address}")),
        (h, _, _) => classify_host(h)?,
    };
    let port = match (port, defaults, kind) {
        ("", true, Kind::Rpc) => 8000,
        ("", _, _) => return Err(format!("invalid address string: {address}")),
        (p, _, _) => parse_port(p)?,
    };
    Ok(Service { kind, host, port })
}

/// A comma-separated list; empty entries are skipped.
pub(crate) fn parse_services(text: &str, defaults: bool) -> Result<Vec<Service>, String> {
    let mut out: Vec<Service> = Vec::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let service = parse_one(item, defaults).map_err(|e| format!("\"{item}\" invalid: {e}"))?;
        if let Some(dup) = out
            .iter()
            .find(|s| s.host == service.host && s.port == service.port)
        {
            let addr = dup.to_string();
            let addr = addr.split_once("://").map_or(addr.as_str(), |(_, a)| a);
            return Err(format!("address {addr} has multiple services"));
        }
        out.push(service);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse_like_electrumx() {
        let s = parse_services(
            "tcp://:50001,SSL://0.0.0.0:50002,wss://[::1]:50004,rpc://",
            true,
        )
        .unwrap();
        assert_eq!(
            s[0],
            Service {
                kind: Kind::Tcp,
                host: Host::AllInterfaces,
                port: 50001
            }
        );
        assert_eq!(s[1].kind, Kind::Ssl);
        assert_eq!(s[1].host, Host::Ip("0.0.0.0".parse().unwrap()));
        assert_eq!(s[2].to_string(), "wss://[::1]:50004");
        assert_eq!(
            s[3],
            Service {
                kind: Kind::Rpc,
                host: Host::Name("localhost".into()),
                port: 8000
            }
        );
        assert_eq!(parse_services("rpc", true).unwrap()[0].port, 8000);
        assert_eq!(parse_services("", true).unwrap(), vec![]);
        assert_eq!(
            parse_services("tcp://host.example:1,", true).unwrap().len(),
            1
        );
    }

    #[test]
    fn bad_services_are_rejected() {
        let err = |s: &str| parse_services(s, true).unwrap_err();
        assert!(
            err("localhost:50001").contains("invalid service string"),
            "bare host:port"
        );
        assert!(err("tcp://:").contains("invalid address"));
        assert!(
            err("tcp://host").contains("invalid address"),
            "port required"
        );
        assert!(err("tcp://h:0").contains("invalid port"));
        assert!(err("tcp://h:99999").contains("invalid port"));
        assert!(err("ftp://h:1").contains("unknown protocol"));
        assert!(err("tcp://bad host:1").contains("does not appear"));
        assert_eq!(
            err("tcp://:50001,ssl://:50001"),
            "address all_interfaces:50001 has multiple services"
        );
        // REPORT_SERVICES has no defaults.
        assert!(parse_services("tcp://:50001", false).is_err());
        assert!(parse_services("rpc://", false).is_err());
        assert!(parse_services("tcp://example.com:50001", false).is_ok());
    }

    #[test]
    fn hostnames() {
        assert!(is_valid_hostname("electrum.example.com"));
        assert!(is_valid_hostname("a_b.example."));
        assert!(!is_valid_hostname("1.2.3.4"));
        assert!(!is_valid_hostname("-a.com"));
        assert!(!is_valid_hostname(""));
    }
}
