//! A proxy in front of litecoind's RPC port, for the differential tests:
//!
//! * **Filling**: ElectrumX 2.0 reads fields of newer Bitcoin Core RPCs that Litecoin Core 0.21
//!   lacks, and fails without them where Sextant answers. With filling on, the proxy completes
//!   those answers from litecoind's other RPCs, so the two servers can be compared on the same
//!   daemon: `getmempoolinfo` gets `incrementalrelayfee` from `getnetworkinfo`'s `incrementalfee`
//!   (what Sextant itself falls back to; `mempool.get_info`, protocol 1.6);
//!   `testmempoolaccept` results get the `wtxid` (Bitcoin Core 22) from `decoderawtransaction`'s
//!   `hash` of the transaction sent at the same position (1.7's
//!   `blockchain.transaction.testmempoolaccept`); and `gettxspendingprevout` (Bitcoin Core 24,
//!   with `blockhash` from its `txospenderindex`), which litecoind lacks altogether, is answered
//!   by the proxy itself (1.7's `blockchain.outpoint.*`): a mempool spender from
//!   `getrawmempool` + `getrawtransaction` (no `blockhash`), else — when `gettxout` says the
//!   output is gone from the chain's UTXO set — the block spender found by scanning the active
//!   chain with `getblock` from the funding block up (`spendingtxid` and `blockhash`), else just
//!   the outpoint, as Bitcoin Core answers an unspent one.
//! * **Freezing**: while frozen, requests wait at the proxy (those already forwarded finish), so
//!   a test can change the chain in several steps — a reorg — and have the server see only the
//!   end result, as one change.
//!
//! One request per connection, like [`super::gate`]: read it, forward it with
//! `Connection: close`, copy the answer back (rewritten when filled), close.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::litecoind::{Litecoind, RPC_PASS, RPC_USER};
use super::rpc::RpcClient;

#[derive(Default)]
struct State {
    frozen: bool,
    /// Requests forwarded and not yet answered.
    in_flight: usize,
    /// Answers completed with a filled-in field (or made up, for `gettxspendingprevout`).
    filled: usize,
    /// Spenders found so far, for `gettxspendingprevout`.
    spends: SpendCache,
}

pub struct DaemonShim {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl DaemonShim {
    /// An open shim in front of `d`; `fill` completes answers as the module comment says.
    pub fn start(d: &Litecoind, fill: bool) -> DaemonShim {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let target = d.rpc_addr();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || relay(conn, target, fill, &st));
            }
        });
        DaemonShim { port, state }
    }

    /// A `DAEMON_URL` through the shim.
    pub fn url(&self) -> String {
        format!("http://{RPC_USER}:{RPC_PASS}@127.0.0.1:{}/", self.port)
    }

    /// Holds new requests, and returns once every forwarded one is answered.
    pub fn freeze(&self) {
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().unwrap();
        st.frozen = true;
        let deadline = Instant::now() + Duration::from_secs(30);
        while st.in_flight > 0 {
            assert!(Instant::now() < deadline, "daemon requests still in flight");
            st = cv.wait_timeout(st, Duration::from_millis(50)).unwrap().0;
        }
    }

    pub fn thaw(&self) {
        self.state.0.lock().unwrap().frozen = false;
        self.state.1.notify_all();
    }

    /// How many answers were completed so far.
    pub fn filled(&self) -> usize {
        self.state.0.lock().unwrap().filled
    }
}

impl Drop for DaemonShim {
    fn drop(&mut self) {
        self.thaw();
    }
}

fn relay(conn: TcpStream, target: SocketAddr, fill: bool, state: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push(line);
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    {
        let (lock, cv) = state;
        let mut st = lock.lock().unwrap();
        while st.frozen {
            st = cv.wait(st).unwrap();
        }
        st.in_flight += 1;
    }
    let local = if fill {
        answered(target, &body, state)
    } else {
        None
    };
    let answer = if local.is_some() {
        state.0.lock().unwrap().filled += 1;
        local
    } else {
        forward(target, &head, &body)
    };
    let answer = match answer {
        Some(a) if fill => match filled(target, &body, &a) {
            Some(f) => {
                state.0.lock().unwrap().filled += 1;
                f
            }
            None => a,
        },
        other => other.unwrap_or_default(),
    };
    {
        let mut st = state.0.lock().unwrap();
        st.in_flight -= 1;
        state.1.notify_all();
    }
    let mut conn = conn;
    let _ = conn.write_all(&answer);
}

fn forward(target: SocketAddr, head: &[String], body: &[u8]) -> Option<Vec<u8>> {
    let mut daemon = TcpStream::connect(target).ok()?;
    let mut request = head.concat().into_bytes();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(body);
    let mut answer = Vec::new();
    daemon.write_all(&request).ok()?;
    daemon.read_to_end(&mut answer).ok()?;
    Some(answer)
}

/// The answer with the missing fields filled in, or `None` when nothing is to be filled.
fn filled(target: SocketAddr, request: &[u8], answer: &[u8]) -> Option<Vec<u8>> {
    let request: Value = serde_json::from_slice(request).ok()?;
    let method = request.get("method")?.as_str()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (head, body) = answer.split_at(split);
    let mut reply: Value = serde_json::from_slice(body).ok()?;
    let daemon = RpcClient::new(target, "/", RPC_USER, RPC_PASS);
    match method {
        "getmempoolinfo" => {
            let result = reply.get_mut("result")?.as_object_mut()?;
            if result.contains_key("incrementalrelayfee") {
                return None;
            }
            let network = daemon.call("getnetworkinfo", json!([])).ok()?;
            result.insert(
                "incrementalrelayfee".into(),
                network["incrementalfee"].clone(),
            );
        }
        "testmempoolaccept" => {
            let raw = request.get("params")?.get(0)?.as_array()?.clone();
            let items = reply.get_mut("result")?.as_array_mut()?;
            if items.iter().all(|i| i.get("wtxid").is_some()) {
                return None;
            }
            for (item, raw) in items.iter_mut().zip(raw) {
                let tx = daemon.call("decoderawtransaction", json!([raw])).ok()?;
                item.as_object_mut()?
                    .insert("wtxid".into(), tx["hash"].clone());
            }
        }
        _ => return None,
    }
    Some(http_reply(&String::from_utf8_lossy(head), &reply))
}

/// `head`'s status line and headers with `reply` as the body (its length set).
fn http_reply(head: &str, reply: &Value) -> Vec<u8> {
    let body = format!("{reply}\n");
    let head: String = head
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}\r\n", body.len())
            } else {
                format!("{l}\r\n")
            }
        })
        .collect();
    format!("{head}\r\n{body}").into_bytes()
}

/// The proxy's own answer to a request litecoind cannot answer (`gettxspendingprevout`), or
/// `None` to forward it.
fn answered(
    target: SocketAddr,
    request: &[u8],
    state: &(Mutex<State>, Condvar),
) -> Option<Vec<u8>> {
    let request: Value = serde_json::from_slice(request).ok()?;
    if request.get("method")?.as_str()? != "gettxspendingprevout" {
        return None;
    }
    let daemon = RpcClient::new(target, "/", RPC_USER, RPC_PASS);
    let outpoints = request.get("params")?.get(0)?.as_array()?.clone();
    let mut results = Vec::new();
    for o in outpoints {
        let (txid, vout) = (o["txid"].as_str()?.to_string(), o["vout"].as_u64()? as u32);
        let mut item = json!({"txid": txid, "vout": vout});
        if let Some((spender, block)) = spender(&daemon, &txid, vout, state) {
            item["spendingtxid"] = json!(spender);
            if let Some(b) = block {
                item["blockhash"] = json!(b);
            }
        }
        results.push(item);
    }
    let reply = json!({"result": results, "error": null, "id": request["id"]});
    Some(http_reply(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n",
        &reply,
    ))
}

/// Spenders already seen: a block's or a mempool transaction's spends never change.
#[derive(Default)]
struct SpendCache {
    /// Block hash → (spent outpoint → spending txid).
    blocks: HashMap<String, HashMap<(String, u32), String>>,
    /// Mempool txid → the outpoints it spends.
    mempool: HashMap<String, Vec<(String, u32)>>,
}

/// The outpoints a decoded transaction spends.
fn inputs(tx: &Value) -> Vec<(String, u32)> {
    tx["vin"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| Some((i["txid"].as_str()?.to_string(), i["vout"].as_u64()? as u32)))
        .collect()
}

/// Bitcoin Core's `gettxspendingprevout` with `mempool_only: false`: the mempool spender first
/// (no block), else the active chain's.
fn spender(
    daemon: &RpcClient,
    txid: &str,
    vout: u32,
    state: &(Mutex<State>, Condvar),
) -> Option<(String, Option<String>)> {
    let key = (txid.to_string(), vout);
    let pool = daemon.call("getrawmempool", json!([false])).ok()?;
    for t in pool.as_array()?.iter().filter_map(Value::as_str) {
        let known = state.0.lock().unwrap().spends.mempool.get(t).cloned();
        let spent = match known {
            Some(s) => s,
            None => {
                let Ok(tx) = daemon.call("getrawtransaction", json!([t, true])) else {
                    continue;
                };
                let s = inputs(&tx);
                state
                    .0
                    .lock()
                    .unwrap()
                    .spends
                    .mempool
                    .insert(t.into(), s.clone());
                s
            }
        };
        if spent.contains(&key) {
            return Some((t.to_string(), None));
        }
    }
    // Still in the chain's UTXO set (or never there): not spent in a block.
    if !daemon
        .call("gettxout", json!([txid, vout, false]))
        .ok()?
        .is_null()
    {
        return None;
    }
    let funder = daemon.call("getrawtransaction", json!([txid, true])).ok()?;
    let funding_block = funder["blockhash"].as_str()?;
    let header = daemon.call("getblockheader", json!([funding_block])).ok()?;
    let (from, tip) = (
        header["height"].as_u64()?,
        daemon.call("getblockcount", json!([])).ok()?.as_u64()?,
    );
    for h in from..=tip {
        let hash = daemon.call("getblockhash", json!([h])).ok()?;
        let hash = hash.as_str()?.to_string();
        let known = state.0.lock().unwrap().spends.blocks.get(&hash).cloned();
        let spends = match known {
            Some(s) => s,
            None => {
                let block = daemon.call("getblock", json!([hash, 2])).ok()?;
                let s: HashMap<(String, u32), String> = block["tx"]
                    .as_array()?
                    .iter()
                    .flat_map(|tx| {
                        let id = tx["txid"].as_str().unwrap_or_default().to_string();
                        inputs(tx).into_iter().map(move |o| (o, id.clone()))
                    })
                    .collect();
                state
                    .0
                    .lock()
                    .unwrap()
                    .spends
                    .blocks
                    .insert(hash.clone(), s.clone());
                s
            }
        };
        if let Some(s) = spends.get(&key) {
            return Some((s.clone(), Some(hash)));
        }
    }
    None
}
