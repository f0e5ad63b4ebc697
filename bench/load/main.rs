//! `bench-load`: many wallet sessions starting up at once against one Electrum server.
//!
//!     cargo run --release --example bench-load -- --server 127.0.0.1:50001 \
//!         --daemon-port 19443 --sessions 500 --label Sextant --pid $(pidof sextant)
//!
//! The scripthashes come from the outputs of the daemon's last `--blocks` blocks (so they have
//! histories on the chain both servers index). Each session then does what a wallet does at
//! start-up, every phase pipelined as wallets do: `server.version`, `headers.subscribe`,
//! `scripthash.subscribe` for its `--subs` scripthashes, `get_history` and `listunspent` of those
//! with a history, then `transaction.get` and `get_merkle` for up to `--txs` of their
//! transactions. It prints one JSON line: requests, errors, requests/s, p50/p99 latency, and
//! the server's peak RSS when `--pid` is given.
//!
//! For ElectrumX over TCP, mind its 1 s write hold (see bench/README.md): compare over a venv
//! where `WAIT_FOR_BUFFER_GROWTH_SECONDS` is 0, and say so.

#[path = "../chain/rpc.rs"]
#[allow(dead_code)]
mod rpc;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::{sha256, Hash};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Options {
    server: SocketAddr,
    daemon_port: u16,
    daemon_user: String,
    daemon_pass: String,
    sessions: usize,
    subs: usize,
    txs: usize,
    blocks: u64,
    label: String,
    pid: Option<u32>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        server: "127.0.0.1:50001".parse().expect("address"),
        daemon_port: 19443,
        daemon_user: "bench".into(),
        daemon_pass: "bench".into(),
        sessions: 500,
        subs: 20,
        txs: 10,
        blocks: 100,
        label: "server".into(),
        pid: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|_| format!("not a number: {v}"));
        match flag.as_str() {
            "--server" => {
                let v = value()?;
                o.server = v.parse().map_err(|_| format!("bad address {v}"))?;
            }
            "--daemon-port" => o.daemon_port = num(value()?)? as u16,
            "--daemon-user" => o.daemon_user = value()?,
            "--daemon-pass" => o.daemon_pass = value()?,
            "--sessions" => o.sessions = num(value()?)? as usize,
            "--subs" => o.subs = num(value()?)? as usize,
            "--txs" => o.txs = num(value()?)? as usize,
            "--blocks" => o.blocks = num(value()?)?,
            "--label" => o.label = value()?,
            "--pid" => o.pid = Some(num(value()?)? as u32),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// Scripthashes of the outputs in the daemon's last `blocks` blocks.
fn scripthashes(o: &Options) -> Result<Vec<String>, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], o.daemon_port));
    let mut d = rpc::Client::new(addr, "/", &o.daemon_user, &o.daemon_pass);
    let err = |e: String| format!("daemon: {e}");
    let tip = d.call("getblockcount", json!([])).map_err(err)?;
    let tip = tip.as_u64().ok_or("getblockcount")?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for h in tip.saturating_sub(o.blocks)..=tip {
        let hash = d.call("getblockhash", json!([h])).map_err(err)?;
        let block = d.call("getblock", json!([hash, 2])).map_err(err)?;
        for tx in block["tx"].as_array().into_iter().flatten() {
            for vout in tx["vout"].as_array().into_iter().flatten() {
                let Some(script) = vout["scriptPubKey"]["hex"].as_str() else {
                    continue;
                };
                let Ok(bytes) = hex::decode(script) else {
                    continue;
                };
                if bytes.first() == Some(&0x6a) {
                    continue; // OP_RETURN
                }
                let mut sh = sha256::Hash::hash(&bytes).to_byte_array();
                sh.reverse();
                let sh = hex::encode(sh);
                if seen.insert(sh.clone()) {
                    out.push(sh);
                }
            }
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
    first_errors: Vec<String>,
}

struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    next_id: u64,
}

impl Conn {
    /// Sends `calls` at once and waits for every reply; their results by position (`None`
    /// for an error, which is tallied).
    async fn phase(&mut self, calls: &[(&str, Value)], tally: &Mutex<Tally>) -> Vec<Option<Value>> {
        let start = Instant::now();
        let mut text = String::new();
        let mut ids = HashMap::new();
        for (i, (method, params)) in calls.iter().enumerate() {
            self.next_id += 1;
            ids.insert(self.next_id, i);
            text.push_str(
                &json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
                    .to_string(),
            );
            text.push('\n');
        }
        let mut out = vec![None; calls.len()];
        if let Err(e) = self.w.write_all(text.as_bytes()).await {
            let mut t = tally.lock();
            t.errors += calls.len() as u64;
            t.first_errors.push(format!("write: {e}"));
            return out;
        }
        let mut pending = calls.len();
        let mut line = String::new();
        while pending > 0 {
            line.clear();
            match self.r.read_line(&mut line).await {
                Ok(0) | Err(_) => {
                    let mut t = tally.lock();
                    t.errors += pending as u64;
                    t.first_errors.push("connection closed".into());
                    break;
                }
                Ok(_) => {}
            }
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(i) = v["id"].as_u64().and_then(|id| ids.get(&id)) else {
                continue; // a notification
            };
            pending -= 1;
            let mut t = tally.lock();
            t.latencies.push(start.elapsed());
            if v.get("error").is_some_and(|e| !e.is_null()) {
                t.errors += 1;
                if t.first_errors.len() < 5 {
                    t.first_errors.push(v["error"].to_string());
                }
            } else {
                out[*i] = Some(v["result"].clone());
            }
        }
        out
    }
}

async fn wallet(o: Arc<Options>, shs: Vec<String>, tally: Arc<Mutex<Tally>>) {
    let stream = match TcpStream::connect(o.server).await {
        Ok(s) => s,
        Err(e) => {
            let mut t = tally.lock();
            t.errors += 1;
            t.first_errors.push(format!("connect: {e}"));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut c = Conn {
        r: BufReader::new(r),
        w,
        next_id: 0,
    };
    let version = [("server.version", json!(["bench-load", "1.4"]))];
    c.phase(&version, &tally).await;
    c.phase(&[("blockchain.headers.subscribe", json!([]))], &tally)
        .await;
    let subs: Vec<(&str, Value)> = shs
        .iter()
        .map(|sh| ("blockchain.scripthash.subscribe", json!([sh])))
        .collect();
    let statuses = c.phase(&subs, &tally).await;
    let used: Vec<&String> = shs
        .iter()
        .zip(&statuses)
        .filter(|(_, s)| matches!(s, Some(v) if !v.is_null()))
        .map(|(sh, _)| sh)
        .collect();
    let mut calls: Vec<(&str, Value)> = Vec::new();
    for sh in &used {
        calls.push(("blockchain.scripthash.get_history", json!([sh])));
        calls.push(("blockchain.scripthash.listunspent", json!([sh])));
    }
    let replies = c.phase(&calls, &tally).await;
    let mut txs: Vec<(String, u64)> = Vec::new();
    for history in replies.iter().step_by(2).flatten() {
        for item in history.as_array().into_iter().flatten() {
            if let (Some(tx), Some(h)) = (item["tx_hash"].as_str(), item["height"].as_i64()) {
                if h > 0 && txs.len() < o.txs {
                    txs.push((tx.to_string(), h as u64));
                }
            }
        }
    }
    let mut calls: Vec<(&str, Value)> = Vec::new();
    for (tx, h) in &txs {
        calls.push(("blockchain.transaction.get", json!([tx])));
        calls.push(("blockchain.transaction.get_merkle", json!([tx, h])));
    }
    if !calls.is_empty() {
        c.phase(&calls, &tally).await;
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let o = match options() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("bench-load: {e}");
            std::process::exit(2);
        }
    };
    let pool = match scripthashes(&o) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!(
                "bench-load: no scripthashes in the last {} blocks",
                o.blocks
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("bench-load: {e}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..o.sessions)
            .map(|i| {
                let shs: Vec<String> = (0..o.subs)
                    .map(|k| pool[(i * o.subs + k) % pool.len()].clone())
                    .collect();
                tokio::spawn(wallet(o.clone(), shs, tally.clone()))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut t = tally.lock();
    t.latencies.sort_unstable();
    let requests = t.latencies.len();
    let out = json!({
        "label": o.label,
        "sessions": o.sessions,
        "scripthash pool": pool.len(),
        "requests": requests,
        "errors": t.errors,
        "first errors": t.first_errors,
        "seconds": elapsed,
        "requests/s": requests as f64 / elapsed,
        "p50 ms": percentile(&t.latencies, 0.5),
        "p99 ms": percentile(&t.latencies, 0.99),
        "peak RSS MiB": o.pid.and_then(peak_rss_kib).map(|k| k / 1024),
    });
    println!("{out}");
}
