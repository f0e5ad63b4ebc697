//! The daemon's JSON-RPC methods and REST resources, answered as litecoind 0.21 (Bitcoin Core
//! < 28) answers them: JSON-RPC 1.0 replies with `"error": null` beside every result, Core's
//! error codes and messages, HTTP 500 for a failed single call and 404 for an unknown method.
//!
//! Only what index servers call is here (Sextant, ElectrumX 2.0; Fulcrum's calls are the same
//! set plus `getzmqnotifications`). `generatetoaddress`/`generate` reveal held-back blocks
//! instead of mining, which is how a benchmark makes a fresh block arrive after the sync.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::chain::{Chain, H256};

pub type RpcResult = Result<Reply, (i64, String)>;

/// A result: JSON, or JSON text already written (a block's hex is megabytes: it is written
/// once, straight into the reply).
pub enum Reply {
    Json(Value),
    Text(String),
}

pub const METHOD_NOT_FOUND: i64 = -32601;
const DIFFICULTY: f64 = 4.656_542_373_906_925e-10;
const RELAY_FEE: f64 = 0.00001;
const FEE_RATE: f64 = 0.0001;

static HEX: &[u8; 16] = b"0123456789abcdef";

pub fn hex_into(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    // Safety: only ASCII hex digits are pushed.
    let v = unsafe { out.as_mut_vec() };
    for b in bytes {
        v.push(HEX[(b >> 4) as usize]);
        v.push(HEX[(b & 15) as usize]);
    }
}

pub fn hash_hex(h: &H256) -> String {
    let mut r = *h;
    r.reverse();
    hex::encode(r)
}

/// A 64-hex-digit hash as the RPC writes it (byte-reversed) into internal order.
pub fn parse_hash(s: &str) -> Option<H256> {
    let mut h: H256 = hex::decode(s).ok()?.try_into().ok()?;
    h.reverse();
    Some(h)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn hex_string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2 + 2);
    s.push('"');
    hex_into(&mut s, bytes);
    s.push('"');
    s
}

pub fn chain_info(c: &Chain) -> Value {
    let tip = c.tip();
    let time = u32_at(c.header(tip), 68);
    json!({
        "chain": "regtest", "blocks": tip, "headers": tip,
        "bestblockhash": hash_hex(&c.entry(tip).hash), "difficulty": DIFFICULTY,
        "mediantime": time, "verificationprogress": 1, "initialblockdownload": false,
        "chainwork": format!("{:064x}", (tip + 1) * 2), "size_on_disk": c.bytes,
        "pruned": false, "warnings": "",
    })
}

fn header_json(c: &Chain, h: u64) -> Value {
    let hdr = c.header(h);
    let e = c.entry(h);
    let mut merkle: H256 = hdr[36..68].try_into().unwrap();
    merkle.reverse();
    let version = u32_at(hdr, 0);
    let mut v = json!({
        "hash": hash_hex(&e.hash), "confirmations": c.tip() - h + 1, "height": h,
        "version": version, "versionHex": format!("{version:08x}"),
        "merkleroot": hex::encode(merkle), "time": u32_at(hdr, 68),
        "mediantime": u32_at(hdr, 68), "nonce": u32_at(hdr, 76),
        "bits": format!("{:08x}", u32_at(hdr, 72)), "difficulty": DIFFICULTY,
        "chainwork": format!("{:064x}", (h + 1) * 2), "nTx": e.n_tx,
    });
    if h > 0 {
        v["previousblockhash"] = json!(hash_hex(&c.entry(h - 1).hash));
    }
    if h < c.tip() {
        v["nextblockhash"] = json!(hash_hex(&c.entry(h + 1).hash));
    }
    v
}

pub fn block_json(c: &Chain, h: u64) -> Value {
    let mut v = header_json(c, h);
    let e = c.entry(h);
    let txs: Vec<String> = (e.first_tx..e.first_tx + e.n_tx as u64)
        .map(|n| hash_hex(&c.txid(n)))
        .collect();
    v["size"] = json!(e.len);
    v["tx"] = json!(txs);
    v
}

fn block_param(c: &Chain, v: &Value) -> Result<u64, (i64, String)> {
    let s = v
        .as_str()
        .ok_or((-1, "JSON value is not a string as expected".to_string()))?;
    let h = parse_hash(s).ok_or((
        -8,
        format!(
            "blockhash must be of length 64 (not {}, for '{s}')",
            s.len()
        ),
    ))?;
    c.height_of(&h).ok_or((-5, "Block not found".into()))
}

/// A verbosity or verbose flag: a number or a boolean (ElectrumX sends `false`).
fn level(v: &Value, default: u64) -> u64 {
    match v {
        Value::Null => default,
        Value::Bool(b) => *b as u64,
        v => v.as_u64().unwrap_or(default),
    }
}

fn tx_json(c: &Chain, txid: &H256, raw: &[u8], height: u64) -> Value {
    let hdr = c.header(height);
    json!({
        "txid": hash_hex(txid), "hash": hash_hex(txid), "hex": hex::encode(raw),
        "size": raw.len(), "version": u32_at(raw, 0),
        "locktime": u32_at(raw, raw.len() - 4),
        "blockhash": hash_hex(&c.entry(height).hash), "confirmations": c.tip() - height + 1,
        "time": u32_at(hdr, 68), "blocktime": u32_at(hdr, 68),
    })
}

/// The transaction and its height, or Core's error.
pub fn find_tx<'c>(c: &'c Chain, s: &str) -> Result<(H256, &'c [u8], u64), (i64, String)> {
    let txid = parse_hash(s).ok_or((
        -8,
        format!(
            "parameter 1 must be of length 64 (not {}, for '{s}')",
            s.len()
        ),
    ))?;
    let (height, pos) = c.find_tx(&txid).ok_or((
        -5,
        "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."
            .to_string(),
    ))?;
    if height == 0 {
        return Err((
            -5,
            "The genesis block coinbase is not considered an ordinary transaction and cannot be \
             retrieved"
                .into(),
        ));
    }
    let raw = c
        .tx_bytes(height, pos)
        .map_err(|e| (-1, format!("cannot read the transaction: {e}")))?;
    Ok((txid, raw, height))
}

pub fn call(c: &Chain, method: &str, params: &[Value]) -> RpcResult {
    let p = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    let tip = c.tip();
    let ok = |v: Value| Ok(Reply::Json(v));
    match method {
        "getblockcount" => ok(json!(tip)),
        "getbestblockhash" => ok(json!(hash_hex(&c.entry(tip).hash))),
        "getblockchaininfo" => ok(chain_info(c)),
        "getblockhash" => match p(0).as_u64() {
            Some(h) if h <= tip => ok(json!(hash_hex(&c.entry(h).hash))),
            _ => Err((-8, "Block height out of range".into())),
        },
        "getblock" => {
            let h = block_param(c, &p(0))?;
            match level(&p(1), 1) {
                0 => Ok(Reply::Text(hex_string(c.block(h)))),
                1 => ok(block_json(c, h)),
                _ => Err((-8, "scale-daemon serves verbosity 0 and 1 only".into())),
            }
        }
        "getblockheader" => {
            let h = block_param(c, &p(0))?;
            match level(&p(1), 1) {
                0 => Ok(Reply::Text(hex_string(c.header(h)))),
                _ => ok(header_json(c, h)),
            }
        }
        "getrawtransaction" => {
            let s = p(0);
            let s = s
                .as_str()
                .ok_or((-1, "JSON value is not a string as expected".to_string()))?;
            let (txid, raw, height) = find_tx(c, s)?;
            match level(&p(1), 0) {
                0 => Ok(Reply::Text(hex_string(raw))),
                _ => ok(tx_json(c, &txid, raw, height)),
            }
        }
        "getrawmempool" => {
            if level(&p(1), 0) != 0 {
                ok(json!({"txids": [], "mempool_sequence": 1}))
            } else if level(&p(0), 0) != 0 {
                ok(json!({}))
            } else {
                ok(json!([]))
            }
        }
        "getmempoolinfo" => ok(json!({
            "loaded": true, "size": 0, "bytes": 0, "usage": 0, "maxmempool": 300_000_000,
            "mempoolminfee": RELAY_FEE, "minrelaytxfee": RELAY_FEE, "unbroadcastcount": 0,
        })),
        "getnetworkinfo" => ok(json!({
            "version": 210201, "subversion": "/LitecoinCore:0.21.2.1(scale-daemon)/",
            "protocolversion": 70016, "localservices": "0000000001000409",
            "localrelay": true, "timeoffset": 0, "networkactive": true, "connections": 0,
            "connections_in": 0, "connections_out": 0, "networks": [],
            "relayfee": RELAY_FEE, "incrementalfee": RELAY_FEE, "localaddresses": [],
            "warnings": "",
        })),
        "estimatesmartfee" => match p(0).as_u64() {
            Some(n) => ok(json!({"feerate": FEE_RATE, "blocks": n.clamp(2, 1008)})),
            None => Err((
                -1,
                "estimatesmartfee conf_target ( \"estimate_mode\" )".into(),
            )),
        },
        "getindexinfo" => ok(json!({"txindex": {"synced": true, "best_block_height": tip}})),
        "getzmqnotifications" => ok(json!([])),
        "uptime" => ok(json!(0)),
        "sendrawtransaction" => Err((-26, "scale-daemon does not relay transactions".into())),
        "generatetoaddress" | "generate" => {
            let n = p(0).as_u64().unwrap_or(1);
            let heights = c.reveal(n);
            if heights.is_empty() {
                return Err((-1, "scale-daemon: no held-back blocks left".into()));
            }
            ok(json!(heights
                .iter()
                .map(|h| hash_hex(&c.entry(*h).hash))
                .collect::<Vec<_>>()))
        }
        // litecoind's hidden long-poll RPCs, which Sextant waits on for new blocks: without them
        // a fresh block's time would include up to a poll interval of waiting.
        "waitforblockheight" => {
            let height = p(0).as_u64().unwrap_or(0);
            ok(wait_for(c, timeout_param(&p(1)), |tip| tip >= height))
        }
        "waitfornewblock" => ok(wait_for(c, timeout_param(&p(0)), |now| now != tip)),
        "help" => ok(json!(HELP)),
        _ => Err((METHOD_NOT_FOUND, "Method not found".into())),
    }
}

/// A long poll's timeout in milliseconds; 0 or none waits for ever, as in Core.
fn timeout_param(v: &Value) -> Option<std::time::Duration> {
    v.as_u64()
        .filter(|&ms| ms > 0)
        .map(std::time::Duration::from_millis)
}

/// Waits until `done(tip)` or the timeout, then answers with the tip, as Core's `waitfor*`
/// calls do (`{"hash", "height"}`). Each connection has its own thread, so a wait holds
/// only its own.
fn wait_for(c: &Chain, timeout: Option<std::time::Duration>, done: impl Fn(u64) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let tip = c.tip();
        if done(tip) || timeout.is_some_and(|t| start.elapsed() >= t) {
            return json!({"hash": hash_hex(&c.entry(tip).hash), "height": tip});
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

const HELP: &str = "== scale-daemon ==\ngetbestblockhash\ngetblock \"blockhash\" ( verbosity )\n\
getblockchaininfo\ngetblockcount\ngetblockhash height\ngetblockheader \"blockhash\" ( verbose )\n\
getindexinfo\ngetmempoolinfo\ngetnetworkinfo\ngetrawmempool ( verbose mempool_sequence )\n\
getrawtransaction \"txid\" ( verbose )\nestimatesmartfee conf_target\ngetzmqnotifications\n\
generatetoaddress nblocks \"address\" (reveals held-back blocks)\nuptime\n\
waitforblockheight height ( timeout )\nwaitfornewblock ( timeout )\nhelp";

/// One reply object, written as bitcoind writes it.
pub fn write_reply(out: &mut String, id: &Value, r: RpcResult) {
    match r {
        Ok(Reply::Text(t)) => {
            out.push_str("{\"result\":");
            out.push_str(&t);
            let _ = write!(out, ",\"error\":null,\"id\":{id}}}");
        }
        Ok(Reply::Json(v)) => {
            let _ = write!(out, "{{\"result\":{v},\"error\":null,\"id\":{id}}}");
        }
        Err((code, message)) => {
            let e = json!({"code": code, "message": message});
            let _ = write!(out, "{{\"result\":null,\"error\":{e},\"id\":{id}}}");
        }
    }
}

/// A JSON-RPC request body (one call or a batch): the HTTP status and the reply.
pub fn handle(c: &Chain, body: &[u8]) -> (u16, String) {
    let mut out = String::new();
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        write_reply(&mut out, &Value::Null, Err((-32700, "Parse error".into())));
        return (500, out);
    };
    let one = |out: &mut String, req: &Value| -> u16 {
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = req.get("method").and_then(Value::as_str) else {
            write_reply(out, &id, Err((-32600, "Method must be a string".into())));
            return 500;
        };
        let empty = Vec::new();
        let params = match req.get("params") {
            Some(Value::Array(a)) => a,
            _ => &empty,
        };
        let r = call(c, method, params);
        let status = match &r {
            Ok(_) => 200,
            Err((METHOD_NOT_FOUND, _)) => 404,
            Err(_) => 500,
        };
        write_reply(out, &id, r);
        status
    };
    match &req {
        Value::Array(calls) => {
            out.push('[');
            for (i, req) in calls.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                one(&mut out, req);
            }
            out.push(']');
            (200, out)
        }
        req => {
            let status = one(&mut out, req);
            (status, out)
        }
    }
}
