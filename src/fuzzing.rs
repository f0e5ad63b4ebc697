//! Entry points for the fuzz targets in `fuzz/` (a separate workspace): thin wrappers that run
//! untrusted input through the crate-private parsers the network reaches, so those parsers stay
//! `pub(crate)`. Each wrapper only returns or panics; a panic is the bug a fuzzer reports.
//! Not an API: hidden from the docs and free to change with the targets.

use std::sync::OnceLock;

use serde_json::Value;

use crate::coin::{Coin, CoinRegistry};
use crate::net::framing;
use crate::peers::peer::{Peer, Source};
use crate::protocol::jsonrpc::{Call, Dialect, Incoming, Member, Params};
use crate::protocol::method::{Method, Request};
use crate::protocol::{params, version};
use crate::sessions::session::Line;

/// The coins whose method tables a request is looked up in: one plain, one with keva methods.
fn coins() -> &'static [Coin; 2] {
    static COINS: OnceLock<[Coin; 2]> = OnceLock::new();
    COINS.get_or_init(|| {
        let reg = CoinRegistry::embedded().expect("embedded coin files parse");
        [
            reg.lookup("Litecoin", "mainnet")
                .expect("Litecoin is embedded"),
            reg.lookup("Kevacoin", "mainnet")
                .expect("Kevacoin is embedded"),
        ]
    })
}

/// Newline framing as a TCP session reads it: `data` split into lines of at most `max` bytes,
/// read through a buffer of `capacity` bytes (lines straddle refills). Returns the lines kept.
pub fn frame_lines(data: &[u8], capacity: usize, max: usize) -> Vec<Vec<u8>> {
    let mut r = tokio::io::BufReader::with_capacity(capacity.max(1), data);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    futures::executor::block_on(async {
        loop {
            match framing::read_line(&mut r, &mut buf, max).await {
                Ok(Line::Complete) => {
                    assert!(
                        max == 0 || buf.len() <= max,
                        "a kept line exceeds the limit"
                    );
                    out.push(std::mem::take(&mut buf));
                }
                Ok(Line::Oversize) => {}
                Ok(Line::Eof) | Err(_) => break,
            }
        }
    });
    out
}

/// One received line through everything a session does before a method runs: JSON-RPC parsing
/// (dialect detection, batches), method lookup at a few protocol versions, argument binding, and
/// the argument validators on every positional and named value.
pub fn request_line(line: &[u8]) {
    let mut dialect = Dialect::Detect;
    let calls: Vec<Call> = match dialect.parse(line) {
        Incoming::Call(c) => vec![c],
        Incoming::Batch(members) => members
            .into_iter()
            .filter_map(|m| match m {
                Member::Call(c) => Some(c),
                Member::Error(_) => None,
            })
            .collect(),
        Incoming::Reply(_) | Incoming::Ignore => Vec::new(),
    };
    for call in &calls {
        let _ = call.reply_id();
        let values: Vec<&Value> = match &call.params {
            Params::Positional(list) => list.iter().collect(),
            Params::Named(map) => map.values().collect(),
        };
        if let Some(first) = values.first() {
            // `server.version`'s protocol argument, negotiated.
            let _ = version::negotiate(Some(first));
        }
        for v in &values {
            arguments(v);
        }
        for coin in coins() {
            for parts in [&[1, 4][..], &[1, 4, 2], &[1, 6], &[1, 7, 0]] {
                let v = version::Version::new(parts);
                let method = Method::find(&call.method, &v, coin);
                if let Ok(req) = Request::bind(method, call, v) {
                    for i in 0..req.method.signature().required.len() {
                        arguments(req.args.req(i));
                    }
                }
            }
        }
    }
}

/// Every argument validator on one value.
fn arguments(v: &Value) {
    let _ = params::scripthash(v);
    let _ = params::tx_hash(v);
    let _ = params::non_negative_integer(v);
    let _ = params::boolean(v);
    let _ = params::hex_string(v);
    let _ = params::odd_hex_string(v);
    let _ = params::script_pubkey(v);
    let _ = params::truthy(v);
    let _ = version::Version::parse(v);
}

/// A peer's `server.features` answer (or a `server.add_peer` argument), and a
/// `server.peers.subscribe` answer, read as peer discovery reads them.
pub fn peer_answers(features: &Value, peer_list: &Value) {
    let default_ports = (50002, 50001);
    let mut peers = Peer::from_features(features, Source::AddPeer);
    if let Some(items) = peer_list.as_array() {
        for item in items {
            let Some(host) = item.get(1).and_then(Value::as_str) else {
                continue;
            };
            let mut name = host.to_string();
            for d in item.get(2).and_then(Value::as_array).into_iter().flatten() {
                name.push(' ');
                name.push_str(d.as_str().unwrap_or_default());
            }
            peers.extend(Peer::from_real_name(&name, default_ports, Source::PeerList));
        }
    }
    for mut p in peers {
        let host = p.host.clone();
        p.update_features(&host, features);
        // As if reached at the address it names, so the buckets have one to mask.
        p.ip_addr = p.ip();
        let _ = (p.is_valid(), p.is_public(false), p.is_tor(), p.ip());
        let _ = (p.bucket_internal(), p.bucket_external());
        let _ = (p.connection_order(), p.to_tuple());
    }
}

/// One peer's real name (`host v1.4 s50002 t50001 p10000`), as coin files, `PEERS` and the
/// admin RPC's `add_peer` give them.
pub fn peer_real_name(text: &str) {
    if let Some(p) = Peer::from_real_name(text, (50002, 50001), Source::Coin) {
        let _ = (p.is_valid(), p.bucket_internal(), p.to_tuple());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_drop_long_lines_across_refills() {
        let lines = frame_lines(b"ab\nfar too long\n\ncd\npartial", 3, 5);
        assert_eq!(lines, [&b"ab"[..], b"", b"cd"]);
    }

    /// The wrappers run whole inputs without panicking, and the peer-list one reaches the real
    /// name parser with what made it panic before (see `peer.rs`'s tests).
    #[test]
    fn wrappers_take_what_the_targets_give_them() {
        request_line(
            br#"{"jsonrpc":"2.0","id":1,"method":"blockchain.block.header","params":[5]}"#,
        );
        request_line(br#"[{"id":1,"method":"server.version","params":{"client_name":"x"}}]"#);
        request_line(b"\xff not json");
        let features = json!({"hosts": {"a.example": {"tcp_port": 1}}, "pruning": "10"});
        let list = json!([["1.2.3.4", "a.example", ["v1.4", "\u{78b}0", "s"]]]);
        peer_answers(&features, &list);
        peer_real_name("1.2.3.4 Мt t1");
    }
}
