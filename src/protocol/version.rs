//! Protocol version negotiation (`server.version`), following ElectrumX's rules exactly:
//! versions are tuples of integers compared lexicographically (so `1.4 < 1.4.0`), the client
//! may send one version or a `[min, max]` pair, and the chosen version is printed back as the
//! tuple it came from.
//!
//! We speak 1.4 to 1.7.0. What changes with the version is decided here, in one place per
//! change, so the method table and the answers ask a question instead of comparing tuples:
//!
//! | version | change (as ElectrumX 2.0 makes it) |
//! |---|---|
//! | 1.4.2 | `blockchain.scripthash.unsubscribe` |
//! | 1.5 | none: the number was skipped, and ElectrumX answers it as 1.4.2 |
//! | 1.6 | `blockchain.block.headers` answers a list; `mempool.get_info` and `blockchain.transaction.broadcast_package`; `blockchain.relayfee` gone |
//! | 1.7 | `blockchain.scriptpubkey.*` replace `blockchain.scripthash.*` (notifications too); `blockchain.outpoint.*`, `blockchain.transaction.testmempoolaccept`, `mempool.recent`; `server.ping` answers `{"data"}` and may be a notification either way; `server.features` without `hash_function`; "history too large" is code 10001 |
//!
//! What 1.6 also states — `server.version` first, extra `server.version` arguments ignored,
//! `blockchain.estimatefee`'s `mode`, the canonical order of mempool transactions in statuses and
//! `get_mempool` — ElectrumX 2.0 does at every version, and so do we: a script's status is the
//! same at every version, so one status per script serves every subscriber.

use std::fmt;

use serde_json::Value;

use super::pyfmt::py_int_from_str;

/// A protocol version as a tuple of integers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Version(pub Vec<i64>);

impl Version {
    pub(crate) fn new(parts: &[i64]) -> Version {
        Version(parts.to_vec())
    }

    /// Python's `protocol_tuple`: a string split on dots into integers, else version 0.
    pub(crate) fn parse(v: &Value) -> Version {
        let zero = Version(vec![0]);
        let Some(s) = v.as_str() else { return zero };
        let parts: Option<Vec<i64>> = s
            .split('.')
            .map(|p| py_int_from_str(p).and_then(|n| i64::try_from(n).ok()))
            .collect();
        parts.map(Version).unwrap_or(zero)
    }

    pub(crate) fn at_least(&self, parts: &[i64]) -> bool {
        self.0.as_slice() >= parts
    }

    /// 1.4.2 added `blockchain.scripthash.unsubscribe`.
    pub(crate) fn has_unsubscribe(&self) -> bool {
        self.at_least(&[1, 4, 2])
    }

    /// 1.6: `blockchain.block.headers` answers a list of headers, not one concatenated hex
    /// string.
    pub(crate) fn headers_as_list(&self) -> bool {
        self.at_least(&[1, 6])
    }

    /// 1.6 added `mempool.get_info` and `blockchain.transaction.broadcast_package`, and removed
    /// `blockchain.relayfee` (`mempool.get_info`'s `minrelaytxfee` replaces it).
    pub(crate) fn has_mempool_info(&self) -> bool {
        self.at_least(&[1, 6])
    }

    /// 1.7: scripts are named by their scriptPubKey (`blockchain.scriptpubkey.*`, whose
    /// notifications are `blockchain.scriptpubkey.subscribe`) and the `blockchain.scripthash.*`
    /// methods are gone; `blockchain.outpoint.*`, `blockchain.transaction.testmempoolaccept`
    /// and `mempool.recent` arrive; `server.ping` echoes padding and is also sent as a
    /// notification (by the client, and by the server as noise); `server.features` drops
    /// `hash_function`; "history too large" has its own error code.
    pub(crate) fn is_1_7(&self) -> bool {
        self.at_least(&[1, 7])
    }
}

impl fmt::Display for Version {
    /// At least two components: `(1,)` prints as `1.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = self.0.clone();
        while parts.len() < 2 {
            parts.push(0);
        }
        let text: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
        f.write_str(&text.join("."))
    }
}

/// The range this server speaks.
pub(crate) fn server_min() -> Version {
    Version::new(&[1, 4])
}

/// `1.7.0` rather than `1.7`, as ElectrumX spells its maxima: a client asking for exactly
/// `1.7.0` is then served too (`1.7 < 1.7.0`).
pub(crate) fn server_max() -> Version {
    Version::new(&[1, 7, 0])
}

/// The highest common version, or `None` when there is none. `requested` is the client's
/// `protocol_version` argument (missing or null = the server's minimum).
pub(crate) fn negotiate(requested: Option<&Value>) -> Option<Version> {
    let (min, max) = (server_min(), server_max());
    let (client_min, client_max) = match requested {
        None | Some(Value::Null) => (min.clone(), min.clone()),
        Some(Value::Array(pair)) if pair.len() == 2 => {
            (Version::parse(&pair[0]), Version::parse(&pair[1]))
        }
        Some(other) => (Version::parse(other), Version::parse(other)),
    };
    let chosen = std::cmp::min(client_max, max);
    if chosen < std::cmp::max(client_min, min) || chosen == Version(vec![0]) {
        None
    } else {
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(v: Value) -> Option<String> {
        negotiate(Some(&v)).map(|p| p.to_string())
    }

    #[test]
    fn negotiation_table() {
        assert_eq!(negotiate(None).unwrap().to_string(), "1.4");
        assert_eq!(n(json!(null)).as_deref(), Some("1.4"));
        assert_eq!(n(json!("1.4")).as_deref(), Some("1.4"));
        assert_eq!(n(json!("1.4.0")).as_deref(), Some("1.4.0"));
        assert_eq!(n(json!("1.4.1")).as_deref(), Some("1.4.1"));
        assert_eq!(n(json!("1.4.2")).as_deref(), Some("1.4.2"));
        assert_eq!(n(json!(["1.4", "1.4.2"])).as_deref(), Some("1.4.2"));
        assert_eq!(n(json!(["1.0", "9.9"])).as_deref(), Some("1.7.0"));
        // The Komodo DeFi client, and the Kevacoin wallet (KevaWallet's `initElectrum`).
        assert_eq!(n(json!(["1.2", "1.4"])).as_deref(), Some("1.4"));
        assert_eq!(n(json!("1.4")).as_deref(), Some("1.4"));
        // Electrum 4.7.
        assert_eq!(n(json!(["1.4", "1.6"])).as_deref(), Some("1.6"));
        assert_eq!(n(json!("1.5")).as_deref(), Some("1.5"));
        assert_eq!(n(json!(["1.4", "1.5"])).as_deref(), Some("1.5"));
        assert_eq!(n(json!("1.6")).as_deref(), Some("1.6"));
        assert_eq!(n(json!("1.6.0")).as_deref(), Some("1.6.0"));
        assert_eq!(n(json!("1.6.1")).as_deref(), Some("1.6.1"));
        assert_eq!(n(json!(["1.4", "1.7"])).as_deref(), Some("1.7"));
        assert_eq!(n(json!("1.7")).as_deref(), Some("1.7"));
        assert_eq!(n(json!("1.7.0")).as_deref(), Some("1.7.0"));
        assert_eq!(n(json!(["1.7", "1.8"])).as_deref(), Some("1.7.0"));
        assert_eq!(n(json!("1.7.1")), None, "above our maximum when sent alone");
        assert_eq!(n(json!(["1.7.1", "1.8"])), None);
        assert_eq!(n(json!("1.3")), None);
        assert_eq!(n(json!(["1.8", "2.0"])), None);
        assert_eq!(n(json!(1.4)), None, "a number is version 0");
        assert_eq!(n(json!(["1.4"])), None, "a one-element array is version 0");
        assert_eq!(n(json!("x")), None);
        assert_eq!(n(json!(" 1 . 4 ")).as_deref(), Some("1.4"));
    }

    #[test]
    fn tuple_order() {
        assert!(Version::new(&[1, 4]) < Version::new(&[1, 4, 0]));
        assert!(Version::new(&[1, 4, 2]).at_least(&[1, 4, 2]));
        assert!(!Version::new(&[1, 4, 1]).at_least(&[1, 4, 2]));
        assert_eq!(Version::new(&[1]).to_string(), "1.0");
    }

    #[test]
    fn changes_by_version() {
        let v = |p: &[i64]| Version::new(p);
        assert!(!v(&[1, 4, 1]).has_unsubscribe());
        assert!(v(&[1, 4, 2]).has_unsubscribe());
        assert!(v(&[1, 5]).has_unsubscribe());
        for old in [&[1, 4][..], &[1, 4, 2], &[1, 5], &[1, 5, 9]] {
            assert!(!v(old).headers_as_list(), "{old:?}");
            assert!(!v(old).has_mempool_info(), "{old:?}");
            assert!(!v(old).is_1_7(), "{old:?}");
        }
        assert!(!v(&[1, 6, 9]).is_1_7());
        assert!(v(&[1, 7]).is_1_7() && v(&[1, 7, 0]).is_1_7());
        for new in [&[1, 6][..], &[1, 6, 0]] {
            assert!(v(new).headers_as_list(), "{new:?}");
            assert!(v(new).has_mempool_info(), "{new:?}");
        }
    }
}
