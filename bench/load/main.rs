//! `bench-load`: many wallet sessions against one Electrum server, in three phases.
//!
//!     cargo run --release --example bench-load -- --server 127.0.0.1:50001 \
//!         --daemon-port 19443 --sessions 500 --label Sextant --pid $(pidof sextant)
//!
//! 1. **Start-up storm.** Every session connects at once and does what a wallet does on
//!    start-up, each step pipelined as wallets do: `server.version`, `headers.subscribe`,
//!    `scripthash.subscribe` for its `--subs` scripthashes (two of them fresh receive scripts
//!    with no history, the rest drawn from the outputs of the daemon's last `--blocks` blocks, so
//!    they have histories on the chain both servers index), `get_history` and `listunspent` of
//!    those with a history, then `transaction.get` and `get_merkle` for up to `--txs` of their
//!    transactions. A reply's latency counts from the start of its pipelined step.
//! 2. **Steady load.** The connected sessions then send single requests (history, UTXOs,
//!    balance, transaction, merkle proof, header: a wallet's mix) with random think times so
//!    that all together they ask `--rate` requests/s for `--steady` seconds. Each request waits
//!    for its answer before the session thinks again; its latency is its own round trip.
//! 3. **Notifications.** One transaction pays the `2 × sessions` fresh scripts (1,000 for 500
//!    sessions), so every session has two subscriptions touched; then a block confirms it. For
//!    the mempool round and the block round: the time from the daemon accepting the
//!    transaction/block until the last session got its last notification, and the spread from
//!    the first to the last notification (the server's fan-out, without its daemon polling).
//!
//! `--zipf S` (hot-address mode) gives the wallets popular scripts: the pool is ranked by how
//! many outputs pay each script, and each session draws its scripts from that ranking with a
//! Zipf(S) law (probability ∝ 1/rank^S), so the hottest scripts — the longest histories — are in
//! many wallets at once, as exchange and pool addresses are. Without it each script of the pool is
//! in one wallet.
//!
//! `--latency N` runs only a leaner notification phase, N rounds of it (bench/latency.sh): each
//! session subscribes to `headers` and to its two fresh scripts, nothing else; then each round
//! pays all the fresh scripts with one transaction and confirms it with a block. A note counts
//! only with the status (or header height) the round must produce, computed beforehand, so a
//! late note of an earlier round cannot pass for this one. Per round: the times from
//! `sendrawtransaction` / `generatetodescriptor` returning to the last session's scripthash note
//! and, for blocks, to the last session's header note.
//!
//! `--pool-tip H` draws the scripthashes from the blocks up to H instead of the daemon's tip, so a
//! second run after a notification round (which mines a block) uses the same pool.
//!
//! It prints one JSON object per run. `--pid` adds the server's peak RSS (`VmHWM`). A session
//! that gets no answer within `--timeout` seconds in a phase is counted as stuck and dropped.
//! Errors are counted apart from refusals of histories and replies over `MAX_SEND` ("history
//! too large", "response too large"): the protocol's answers for the hottest scripts, from both
//! servers alike.
//!
//! For ElectrumX over TCP, mind its 1 s write hold (see bench/README.md): bench/load.sh runs it
//! with `WAIT_FOR_BUFFER_GROWTH_SECONDS` at 0.

/// The test harness's RPC client, shared rather than copied.
#[path = "../../tests/common"]
#[allow(dead_code)]
mod common {
    pub mod rpc;
}

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bitcoin::hashes::{hash160, sha256, Hash};
use bitcoin::{
    absolute::LockTime, transaction::Version, Amount, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness,
};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use common::rpc::RpcClient;
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
    pool_tip: Option<u64>,
    rate: f64,
    steady: f64,
    notify: bool,
    timeout: Duration,
    label: String,
    pid: Option<u32>,
    /// Hot-address mode: the Zipf exponent of the wallets' scripts over the pool's ranking.
    zipf: Option<f64>,
    latency: Option<usize>,
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
        pool_tip: None,
        rate: 500.0,
        steady: 20.0,
        notify: true,
        timeout: Duration::from_secs(120),
        label: "server".into(),
        pid: None,
        zipf: None,
        latency: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|_| format!("not a number: {v}"));
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
            "--blocks" => o.blocks = num(value()?)? as u64,
            "--pool-tip" => o.pool_tip = Some(num(value()?)? as u64),
            "--rate" => o.rate = num(value()?)?,
            "--steady" => o.steady = num(value()?)?,
            "--no-notify" => o.notify = false,
            "--timeout" => o.timeout = Duration::from_secs_f64(num(value()?)?),
            "--label" => o.label = value()?,
            "--pid" => o.pid = Some(num(value()?)? as u32),
            "--zipf" => o.zipf = Some(num(value()?)?).filter(|s| *s > 0.0),
            "--latency" => o.latency = Some(num(value()?)? as usize),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.subs < 3 {
        return Err("--subs must be at least 3 (two fresh scripts per session)".into());
    }
    Ok(o)
}

fn daemon(o: &Options) -> RpcClient {
    let addr = SocketAddr::from(([127, 0, 0, 1], o.daemon_port));
    RpcClient::new(addr, "/", &o.daemon_user, &o.daemon_pass)
}

/// The Electrum scripthash of a script, as hex.
fn scripthash(script: &[u8]) -> String {
    let mut sh = sha256::Hash::hash(script).to_byte_array();
    sh.reverse();
    hex::encode(sh)
}

/// Scripthashes of the outputs in the `blocks` blocks up to `pool_tip` (the daemon's tip by
/// default; runs after a notification round pass the height before it, to draw the same pool).
fn pool(o: &Options) -> Result<Vec<String>, String> {
    let d = daemon(o);
    let err = |e: common::rpc::RpcError| format!("daemon: {e}");
    let tip = match o.pool_tip {
        Some(t) => t,
        None => {
            let tip = d.call("getblockcount", json!([])).map_err(err)?;
            tip.as_u64().ok_or("getblockcount")?
        }
    };
    // Scripts in the order first seen, with how many outputs pay each.
    let mut seen: HashMap<String, usize> = HashMap::new();
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
                let sh = scripthash(&bytes);
                let n = seen.entry(sh.clone()).or_insert(0);
                if *n == 0 {
                    out.push(sh);
                }
                *n += 1;
            }
        }
    }
    if o.zipf.is_some() {
        // Most paid first (a stable sort keeps the chain's order among equals).
        out.sort_by_key(|sh| std::cmp::Reverse(seen[sh]));
    }
    Ok(out)
}

/// `n` distinct indexes below `len` drawn with probability ∝ 1/(index+1)^s.
fn zipf_draw(rng: &mut Rng, len: usize, n: usize, s: f64) -> Vec<usize> {
    let weights: Vec<f64> = (1..=len).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut picked = Vec::new();
    while picked.len() < n.min(len) {
        let mut x = rng.unit() * total;
        let mut k = 0;
        while k + 1 < len && x >= weights[k] {
            x -= weights[k];
            k += 1;
        }
        if !picked.contains(&k) {
            picked.push(k);
        }
    }
    picked
}

/// Fresh P2PKH scripts nobody has paid yet: a wallet's unused receive addresses.
fn fresh_scripts(n: usize, label: &str) -> Vec<ScriptBuf> {
    let nonce = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (0..n)
        .map(|i| {
            let seed = format!("bench-load {label} {nonce} {i}");
            let h = hash160::Hash::hash(seed.as_bytes());
            let mut s = vec![0x76, 0xa9, 0x14];
            s.extend_from_slice(h.as_byte_array());
            s.extend_from_slice(&[0x88, 0xac]);
            ScriptBuf::from_bytes(s)
        })
        .collect()
}

/// xorshift64*: enough randomness for think times and request picks, reproducible per session.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    /// Steady load only: latencies by method, to tell which one makes the tail.
    by_method: HashMap<&'static str, Vec<Duration>>,
    errors: u64,
    refused: u64,
    stuck: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, e: String) {
        if refusal(&e) {
            self.refused += 1;
            return;
        }
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(e);
        }
    }

    fn report(&mut self, seconds: f64) -> Value {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let by_method: serde_json::Map<String, Value> = self
            .by_method
            .iter_mut()
            .map(|(m, l)| {
                l.sort_unstable();
                let v = json!({
                    "requests": l.len(),
                    "p50 ms": round(percentile(l, 0.5), 2),
                    "p99 ms": round(percentile(l, 0.99), 2),
                });
                (m.to_string(), v)
            })
            .collect();
        json!({
            "by method": by_method,
            "requests": n,
            "errors": self.errors,
            "refused (over MAX_SEND)": self.refused,
            "stuck sessions": self.stuck,
            "first errors": self.first_errors,
            "seconds": round(seconds, 2),
            "requests/s": round(n as f64 / seconds, 0),
            "p50 ms": round(percentile(&self.latencies, 0.5), 2),
            "p99 ms": round(percentile(&self.latencies, 0.99), 2),
            "max ms": round(percentile(&self.latencies, 1.0), 2),
        })
    }
}

/// The protocol's answers for histories and replies over `MAX_SEND`: "history too large" and
/// "response too large" (the same texts from ElectrumX/aiorpcx and Sextant).
fn refusal(e: &str) -> bool {
    e.contains("history too large") || e.contains("response too large")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// A `blockchain.scripthash.subscribe` (scripthash, status) or `blockchain.headers.subscribe`
/// (height) notification.
enum Note {
    Script(String, Option<String>),
    Header(Option<u64>),
}

/// What a round's notes must say to count (`--latency`): every fresh script's status and, for
/// a block, the new tip's height. `None` fields accept any note.
#[derive(Clone, Default)]
struct Expect {
    status: Option<String>,
    height: Option<u64>,
}

/// The Electrum status of a history of (txid, height) items, in order.
fn status(history: &[(String, u64)]) -> String {
    let text: String = history.iter().map(|(t, h)| format!("{t}:{h}:")).collect();
    hex::encode(sha256::Hash::hash(text.as_bytes()).to_byte_array())
}

/// A message as read: a reply's result (or a notification's params) left as text.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// What a wallet here reads of a list: its first entries (a history's oldest, from which it
/// picks transactions to fetch).
const HEAD: usize = 64;

/// A short reply's result (or a notification's params) as a value.
fn value_of(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// Replies longer than this are read by [`big_reply`].
const BIG_REPLY: usize = 1 << 16;

/// A long reply `{…, "result": <list>, "id": <n>}` (Sextant's and ElectrumX's layout) read
/// without walking all of it: the id from the line's end, the list's first [`HEAD`] entries
/// from its start. serde's reading of every multi-MB history (once to find the result's end,
/// once more past the head) took more of the two cores than the server spent answering, so
/// the storm measured this client; the rest of such a reply is not checked here, every shorter
/// one is. `None` for any other shape (read the usual way).
fn big_reply(line: &str) -> Option<(u64, Result<Value, String>)> {
    let b = line.trim_end().as_bytes();
    // Backwards: `, "id": <n> }`.
    let back = |mut i: usize, expect: &[u8]| {
        while i > 0 && b[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        i.checked_sub(expect.len()).filter(|&j| &b[j..i] == expect)
    };
    let mut i = back(b.len(), b"}")?;
    let digits = b[..i]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let id: u64 = line.get(i - digits..i)?.parse().ok()?;
    i = back(i - digits, b":")?;
    i = back(i, b"\"id\"")?;
    let result_end = back(i, b",")?;
    // Forwards: `{ "jsonrpc": "2.0", "result": `.
    let ws = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    (b.get(i) == Some(&b'{')).then_some(())?;
    let start = loop {
        i = ws(i + 1);
        let (key_end, _) = json_end(b, i, 0)?;
        let key = line.get(i + 1..key_end - 1)?;
        i = ws(key_end);
        (b.get(i) == Some(&b':')).then_some(())?;
        i = ws(i + 1);
        match key {
            "result" => break i,
            "error" => return None,
            _ => {}
        }
        i = ws(json_end(b, i, 0)?.0);
        (b.get(i) == Some(&b',')).then_some(())?;
    };
    let text = line.get(start..result_end)?.trim_end();
    let result = match json_end(text.as_bytes(), 0, HEAD)? {
        (_, Some(cut)) => serde_json::from_str(&format!("{}]", &text[..cut])),
        _ => serde_json::from_str(text),
    };
    Some((id, Ok(result.ok()?)))
}

/// The end of the JSON value at `start` found from its brackets and quotes alone. For a list
/// with more than `head` entries (`head` > 0) it stops at the comma after the `head`-th, and
/// gives that position as the cut.
fn json_end(b: &[u8], start: usize, head: usize) -> Option<(usize, Option<usize>)> {
    let list = b.get(start) == Some(&b'[');
    let (mut depth, mut entries) = (0usize, 0usize);
    let mut i = start;
    loop {
        match *b.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    i += memchr::memchr2(b'"', b'\\', &b[i..])?;
                    if b[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
                if depth == 0 {
                    return Some((i + 1, None));
                }
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some((i + 1, None));
                }
            }
            b',' if list && depth == 1 => {
                entries += 1;
                if entries == head {
                    return Some((i, Some(i)));
                }
            }
            c if depth == 0 => {
                // A number, true, false or null.
                (c.is_ascii_alphanumeric() || c == b'-').then_some(())?;
                let len = b[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || b"+-.".contains(c)))
                    .unwrap_or(b.len() - i);
                return Some((i + len, None));
            }
            _ => {}
        }
        i += 1;
    }
}

struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    next_id: u64,
    line: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Ok(Conn {
            // Multi-MB replies read in large pieces rather than 8 KB ones.
            r: BufReader::with_capacity(1 << 18, r),
            w,
            next_id: 0,
            line: String::new(),
        })
    }

    /// The next message: `Ok((id, result-or-error))` for a reply, `Err(note)` for a notification.
    async fn read(&mut self) -> Result<Result<(u64, Result<Value, String>), Note>, String> {
        loop {
            self.line.clear();
            match self.r.read_line(&mut self.line).await {
                Ok(0) => return Err("connection closed".into()),
                Err(e) => return Err(format!("read: {e}")),
                Ok(_) => {}
            }
            if self.line.len() > BIG_REPLY {
                if let Some(reply) = big_reply(&self.line) {
                    // Once per run, the shortcut is checked against serde's full reading.
                    static CHECKED: std::sync::Once = std::sync::Once::new();
                    CHECKED.call_once(|| {
                        let v: Value = serde_json::from_str(&self.line).expect("a JSON reply");
                        let mut result = v["result"].clone();
                        if let Value::Array(list) = &mut result {
                            list.truncate(HEAD);
                        }
                        let expected = (v["id"].as_u64().expect("an id"), Ok(result));
                        assert_eq!(reply, expected, "big_reply read a reply wrong");
                    });
                    return Ok(Ok(reply));
                }
            }
            let Ok(msg) = serde_json::from_str::<Incoming>(&self.line) else {
                continue;
            };
            if let Some(id) = msg.id.as_ref().and_then(Value::as_u64) {
                let reply = match msg.error {
                    Some(e) if e.get() != "null" => Err(e.get().to_string()),
                    _ => Ok(msg.result.map_or(Value::Null, value_of)),
                };
                return Ok(Ok((id, reply)));
            }
            let v = Value::Object(
                [
                    ("method", msg.method.map(Value::from)),
                    ("params", msg.params.map(value_of)),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect(),
            );
            match v["method"].as_str() {
                Some("blockchain.scripthash.subscribe") => {
                    let sh = v["params"][0].as_str().unwrap_or_default().to_string();
                    let status = v["params"][1].as_str().map(str::to_string);
                    return Ok(Err(Note::Script(sh, status)));
                }
                Some("blockchain.headers.subscribe") => {
                    return Ok(Err(Note::Header(v["params"][0]["height"].as_u64())));
                }
                _ => {}
            }
        }
    }

    /// Sends `calls` at once and waits for every reply; their results by position (`None`
    /// for an error, which is tallied).
    async fn pipeline(
        &mut self,
        calls: &[(&str, Value)],
        tally: &Mutex<Tally>,
    ) -> Vec<Option<Value>> {
        let start = Instant::now();
        let mut text = String::new();
        let mut ids = HashMap::new();
        for (i, (method, params)) in calls.iter().enumerate() {
            self.next_id += 1;
            ids.insert(self.next_id, i);
            let call =
                json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
            text.push_str(&call.to_string());
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
        while pending > 0 {
            let (id, reply) = match self.read().await {
                Ok(Ok(r)) => r,
                Ok(Err(_note)) => continue,
                Err(e) => {
                    let mut t = tally.lock();
                    t.errors += pending as u64;
                    t.first_errors.push(e);
                    break;
                }
            };
            let Some(&i) = ids.get(&id) else { continue };
            pending -= 1;
            let mut t = tally.lock();
            t.latencies.push(start.elapsed());
            match reply {
                Ok(v) => out[i] = Some(v),
                Err(e) => t.error(e),
            }
        }
        out
    }

    /// One request, alone on the connection; its answer and round trip.
    async fn call(&mut self, method: &str, params: Value) -> Result<(Value, Duration), String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut text =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        text.push('\n');
        let start = Instant::now();
        self.w
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        loop {
            if let Ok((got, reply)) = self.read().await? {
                if got == id {
                    return reply.map(|v| (v, start.elapsed()));
                }
            }
        }
    }
}

/// One wallet after its start-up: its connection and what it learnt.
struct Wallet {
    conn: Conn,
    rng: Rng,
    /// Scripthashes with a history the server answered.
    used: Vec<String>,
    /// (txid, height) of confirmed transactions from those histories.
    txs: Vec<(String, u64)>,
    tip: u64,
    /// Its number: its fresh scripts are `2 * index` and `2 * index + 1`.
    index: usize,
    /// The two fresh scripthashes the notification round pays.
    fresh: [String; 2],
}

async fn start_up(
    o: Arc<Options>,
    index: usize,
    shs: Vec<String>,
    fresh: [String; 2],
    tally: Arc<Mutex<Tally>>,
) -> Result<Wallet, String> {
    let mut c = Conn::open(o.server).await?;
    c.pipeline(&[("server.version", json!(["bench-load", "1.4"]))], &tally)
        .await;
    let tip = c
        .pipeline(&[("blockchain.headers.subscribe", json!([]))], &tally)
        .await;
    let tip = tip[0]
        .as_ref()
        .and_then(|t| t["height"].as_u64())
        .unwrap_or(0);
    let subs: Vec<(&str, Value)> = fresh
        .iter()
        .chain(&shs)
        .map(|sh| ("blockchain.scripthash.subscribe", json!([sh])))
        .collect();
    let statuses = c.pipeline(&subs, &tally).await;
    let with_history: Vec<&String> = fresh
        .iter()
        .chain(&shs)
        .zip(&statuses)
        .filter(|(_, s)| matches!(s, Some(v) if !v.is_null()))
        .map(|(sh, _)| sh)
        .collect();
    let mut calls: Vec<(&str, Value)> = Vec::new();
    for sh in &with_history {
        calls.push(("blockchain.scripthash.get_history", json!([sh])));
        calls.push(("blockchain.scripthash.listunspent", json!([sh])));
    }
    let replies = c.pipeline(&calls, &tally).await;
    let mut used = Vec::new();
    let mut txs: Vec<(String, u64)> = Vec::new();
    for (sh, history) in with_history.iter().zip(replies.iter().step_by(2)) {
        let Some(history) = history else { continue };
        used.push(sh.to_string());
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
        c.pipeline(&calls, &tally).await;
    }
    Ok(Wallet {
        conn: c,
        rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)),
        used,
        txs,
        tip,
        index,
        fresh,
    })
}

/// Single requests with exponential think times (mean `think`) until `until`.
async fn steady(
    mut w: Wallet,
    think: f64,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> Option<Wallet> {
    // Sessions start out of step, as real ones are.
    let first = Duration::from_secs_f64(w.rng.unit() * think);
    tokio::time::sleep(first).await;
    while Instant::now() < until {
        let (method, params) = match w.rng.below(6) {
            0..=2 if !w.used.is_empty() => {
                let sh = &w.used[w.rng.below(w.used.len())];
                let m = [
                    "blockchain.scripthash.get_history",
                    "blockchain.scripthash.listunspent",
                    "blockchain.scripthash.get_balance",
                ];
                (m[w.rng.below(3)], json!([sh]))
            }
            3 | 4 if !w.txs.is_empty() => {
                let (tx, h) = &w.txs[w.rng.below(w.txs.len())];
                if w.rng.below(2) == 0 {
                    ("blockchain.transaction.get", json!([tx]))
                } else {
                    ("blockchain.transaction.get_merkle", json!([tx, h]))
                }
            }
            _ => {
                let h = w.rng.below(w.tip as usize + 1);
                ("blockchain.block.header", json!([h]))
            }
        };
        match w.conn.call(method, params).await {
            Ok((_, latency)) => {
                let mut t = tally.lock();
                t.latencies.push(latency);
                t.by_method.entry(method).or_default().push(latency);
            }
            Err(e) if refusal(&e) => tally.lock().refused += 1,
            Err(e) if e.starts_with("read:") || e.starts_with("write:") || e.contains("closed") => {
                tally.lock().error(e);
                return None;
            }
            Err(e) => tally.lock().error(e),
        }
        // -ln(U) * mean: exponential think time, so arrivals are Poisson-like overall.
        let pause = Duration::from_secs_f64(-(1.0 - w.rng.unit()).ln() * think);
        if Instant::now() + pause >= until {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Some(w)
}

/// When a session's notes of a round arrived.
struct NoteTimes {
    first: Instant,
    last: Instant,
    /// The last scripthash note.
    scripts: Instant,
    header: Option<Instant>,
}

/// Reads until both fresh scripthashes (and the header, when `header`) were notified as
/// `expect` says.
async fn await_notes(
    mut w: Wallet,
    header: bool,
    expect: Expect,
) -> (Wallet, Result<NoteTimes, String>) {
    let mut want: HashSet<String> = w.fresh.iter().cloned().collect();
    let mut header_left = header;
    let (mut first, mut scripts, mut header_at) = (None, None, None);
    let result = loop {
        match w.conn.read().await {
            Err(e) => break Err(e),
            Ok(Ok(_reply)) => continue,
            Ok(Err(note)) => {
                let now = Instant::now();
                let hit = match note {
                    Note::Script(sh, s) => {
                        let hit =
                            (expect.status.is_none() || s == expect.status) && want.remove(&sh);
                        if hit {
                            scripts = Some(now);
                        }
                        hit
                    }
                    Note::Header(h) => {
                        let hit = header_left && (expect.height.is_none() || h == expect.height);
                        if hit {
                            header_left = false;
                            header_at = Some(now);
                        }
                        hit
                    }
                };
                if hit {
                    first.get_or_insert(now);
                    if want.is_empty() && !header_left {
                        break Ok(NoteTimes {
                            first: first.unwrap_or(now),
                            last: now,
                            scripts: scripts.unwrap_or(now),
                            header: header_at,
                        });
                    }
                }
            }
        }
    };
    (w, result)
}

/// One notification round: every wallet waits for its notes while `trigger` runs on the
/// daemon; times from the trigger's return to the first and the last note, to the last
/// scripthash note and to the last header note.
async fn notify_round<F>(
    wallets: Vec<Wallet>,
    header: bool,
    expect: Expect,
    timeout: Duration,
    trigger: F,
) -> (Vec<Wallet>, Value)
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    let tasks: Vec<_> = wallets
        .into_iter()
        .map(|w| {
            let fut = await_notes(w, header, expect.clone());
            tokio::spawn(tokio::time::timeout(timeout, fut))
        })
        .collect();
    let triggered = tokio::task::spawn_blocking(trigger).await.expect("trigger");
    let t0 = Instant::now();
    if let Err(e) = triggered {
        for t in &tasks {
            t.abort();
        }
        return (Vec::new(), json!({ "error": e }));
    }
    let mut kept = Vec::new();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let (mut scripts, mut headers) = (None::<Instant>, None::<Instant>);
    let (mut missing, mut failed) = (0u64, Vec::new());
    let sessions = tasks.len();
    let latest = |a: Option<Instant>, b: Instant| Some(a.map_or(b, |a| a.max(b)));
    for t in tasks {
        match t.await {
            Ok(Ok((w, Ok(n)))) => {
                first = Some(first.map_or(n.first, |f| f.min(n.first)));
                last = latest(last, n.last);
                scripts = latest(scripts, n.scripts);
                if let Some(h) = n.header {
                    headers = latest(headers, h);
                }
                kept.push(w);
            }
            Ok(Ok((_, Err(e)))) => {
                missing += 1;
                if failed.len() < 3 {
                    failed.push(e);
                }
            }
            _ => missing += 1,
        }
    }
    // Negative when a note came before the daemon's answer reached us (a server told by ZMQ).
    let ms = |t: Option<Instant>| {
        t.map(|t| {
            let ms = if t >= t0 {
                (t - t0).as_secs_f64()
            } else {
                -(t0 - t).as_secs_f64()
            };
            round(ms * 1000.0, 1)
        })
    };
    let spread = match (first, last) {
        (Some(f), Some(l)) => Some(round((l - f).as_secs_f64() * 1000.0, 1)),
        _ => None,
    };
    let report = json!({
        "sessions": sessions,
        "sessions missing notifications": missing,
        "first errors": failed,
        "first note ms": ms(first),
        "last note ms": ms(last),
        "last scripthash note ms": ms(scripts),
        "last header note ms": ms(headers),
        "first to last ms": spread,
    });
    (kept, report)
}

/// The largest confirmed P2WSH(OP_TRUE) output (the bench chain's change and coinbases).
fn op_true_coin(d: &RpcClient, op_true: &ScriptBuf) -> Result<(OutPoint, u64), String> {
    let desc = format!("raw({})", hex::encode(op_true.as_bytes()));
    let scan = d.call("scantxoutset", json!(["start", [desc]]))?;
    let best = scan["unspents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| {
            let txid = Txid::from_str(u["txid"].as_str()?).ok()?;
            let vout = u["vout"].as_u64()? as u32;
            let value = (u["amount"].as_f64()? * 1e8).round() as u64;
            Some((OutPoint { txid, vout }, value))
        })
        .max_by_key(|(_, v)| *v);
    best.ok_or_else(|| "no P2WSH(OP_TRUE) output to spend: is this a bench-chain chain?".into())
}

/// A transaction paying every script in `to`, sent to the daemon.
fn pay_all(o: &Options, to: &[ScriptBuf]) -> Result<(), String> {
    let (raw, _) = payment(o, to)?;
    daemon(o).call("sendrawtransaction", json!([raw]))?;
    Ok(())
}

/// A transaction paying every script in `to` from the largest confirmed OP_TRUE coin: its hex
/// and txid.
fn payment(o: &Options, to: &[ScriptBuf]) -> Result<(String, String), String> {
    let d = daemon(o);
    let witness_script = [0x51u8];
    let mut op_true = vec![0x00, 0x20];
    op_true.extend_from_slice(&sha256::Hash::hash(&witness_script).to_byte_array());
    let op_true = ScriptBuf::from_bytes(op_true);
    let (coin, value) = op_true_coin(&d, &op_true)?;
    let each = 100_000u64;
    // 34 bytes per P2PKH output plus an input; 4 sat/vB clears any relay minimum here.
    let fee = (to.len() as u64 * 34 + 200) * 4;
    let change = value
        .checked_sub(each * to.len() as u64 + fee)
        .ok_or(format!(
            "largest OP_TRUE coin holds {value} sat: too little"
        ))?;
    let mut output: Vec<TxOut> = to
        .iter()
        .map(|s| TxOut {
            value: Amount::from_sat(each),
            script_pubkey: s.clone(),
        })
        .collect();
    output.push(TxOut {
        value: Amount::from_sat(change),
        script_pubkey: op_true,
    });
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: coin,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[witness_script.to_vec()]),
        }],
        output,
    };
    let raw = bitcoin::consensus::encode::serialize_hex(&tx);
    Ok((raw, tx.compute_txid().to_string()))
}

/// Mines one block (to P2WSH(OP_TRUE)) on the regtest daemon.
fn mine(o: &Options) -> Result<(), String> {
    let d = daemon(o);
    let mut op_true = vec![0x00, 0x20];
    op_true.extend_from_slice(&sha256::Hash::hash(&[0x51]).to_byte_array());
    let raw = format!("raw({})", hex::encode(op_true));
    let info = d.call("getdescriptorinfo", json!([raw]))?;
    let desc = format!("{raw}#{}", info["checksum"].as_str().unwrap_or_default());
    d.call("generatetodescriptor", json!([1, desc]))?;
    Ok(())
}

/// Waits until the server's tip is the daemon's (the other server may just have been resumed).
async fn wait_synced(o: &Options) -> Result<(), String> {
    let want = daemon(o)
        .call("getblockcount", json!([]))?
        .as_u64()
        .ok_or("getblockcount")?;
    let deadline = Instant::now() + o.timeout;
    loop {
        let mut c = Conn::open(o.server).await?;
        c.call("server.version", json!(["bench-load", "1.4"]))
            .await?;
        let (tip, _) = c.call("blockchain.headers.subscribe", json!([])).await?;
        if tip["height"].as_u64() == Some(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "server tip {} is not the daemon's {want}",
                tip["height"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CPU seconds (user and system) a process has used: `self` or a pid.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is the first, then utime
    // and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(
        ticks
            / if per_second > 0 {
                per_second as f64
            } else {
                100.0
            },
    )
}

/// CPU seconds of the server and of this client since `before` (taken with `None`).
struct CpuClock(Option<f64>, Option<f64>);

impl CpuClock {
    fn now(o: &Options) -> CpuClock {
        let server = o.pid.and_then(|p| cpu_seconds(&p.to_string()));
        CpuClock(server, cpu_seconds("self"))
    }

    /// Adds the CPU used since `self` to a phase's report, and the server's requests per CPU
    /// second: a figure the two cores' sharing with this client does not bend.
    fn add_to(&self, o: &Options, report: &mut Value) {
        let now = CpuClock::now(o);
        let server = now.0.zip(self.0).map(|(b, a)| b - a);
        let client = now.1.zip(self.1).map(|(b, a)| b - a);
        report["server CPU s"] = json!(server.map(|s| round(s, 2)));
        report["client CPU s"] = json!(client.map(|s| round(s, 2)));
        let requests = report["requests"].as_f64().unwrap_or(0.0);
        report["requests per server CPU s"] =
            json!(server.filter(|s| *s > 0.0).map(|s| round(requests / s, 0)));
    }
}

fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

async fn run(o: Arc<Options>, pool: Vec<String>) -> Result<Value, String> {
    wait_synced(&o).await?;
    let fresh_scripts = fresh_scripts(2 * o.sessions, &o.label);
    let fresh: Vec<String> = fresh_scripts
        .iter()
        .map(|s| scripthash(s.as_bytes()))
        .collect();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let cpu = CpuClock::now(&o);
    let start = Instant::now();
    let tasks: Vec<_> = (0..o.sessions)
        .map(|i| {
            let shs: Vec<String> = match o.zipf {
                Some(s) => {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                    zipf_draw(&mut rng, pool.len(), o.subs - 2, s)
                        .into_iter()
                        .map(|k| pool[k].clone())
                        .collect()
                }
                None => (0..o.subs - 2)
                    .map(|k| pool[(i * (o.subs - 2) + k) % pool.len()].clone())
                    .collect(),
            };
            let f = [fresh[2 * i].clone(), fresh[2 * i + 1].clone()];
            let fut = start_up(o.clone(), i, shs, f, tally.clone());
            tokio::spawn(tokio::time::timeout(o.timeout, fut))
        })
        .collect();
    let mut wallets = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(Ok(w))) => wallets.push(w),
            Ok(Ok(Err(e))) => tally.lock().error(e),
            _ => tally.lock().stuck += 1,
        }
    }
    let mut storm = tally.lock().report(start.elapsed().as_secs_f64());
    cpu.add_to(&o, &mut storm);

    let tally = Arc::new(Mutex::new(Tally::default()));
    let think = wallets.len() as f64 / o.rate;
    let cpu = CpuClock::now(&o);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(o.steady);
    let tasks: Vec<_> = wallets
        .drain(..)
        .map(|w| {
            let fut = steady(w, think, until, tally.clone());
            tokio::spawn(tokio::time::timeout(
                o.timeout + Duration::from_secs_f64(o.steady),
                fut,
            ))
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(Ok(Some(w))) => wallets.push(w),
            Ok(Ok(None)) => {}
            _ => tally.lock().stuck += 1,
        }
    }
    let mut steady = tally.lock().report(start.elapsed().as_secs_f64());
    cpu.add_to(&o, &mut steady);
    steady["target requests/s"] = json!(o.rate);

    let mut out = json!({
        "label": o.label,
        "sessions": o.sessions,
        "subscriptions per session": o.subs,
        "scripthash pool": pool.len(),
        "zipf": o.zipf,
        "start-up storm": storm,
        "steady load": steady,
    });
    if o.notify {
        let touched = 2 * wallets.len();
        let scripts: Vec<ScriptBuf> = wallets
            .iter()
            .flat_map(|w| fresh_scripts[2 * w.index..2 * w.index + 2].iter().cloned())
            .collect();
        let o2 = o.clone();
        let any = Expect::default();
        let (wallets, mempool) = notify_round(wallets, false, any.clone(), o.timeout, move || {
            pay_all(&o2, &scripts)
        })
        .await;
        let o2 = o.clone();
        let (_, block) = notify_round(wallets, true, any, o.timeout, move || mine(&o2)).await;
        out["notifications"] = json!({
            "scripthashes touched": touched,
            "mempool transaction": mempool,
            "block": block,
        });
    }
    out["peak RSS MiB"] = json!(o.pid.and_then(peak_rss_mib));
    Ok(out)
}

/// `--latency N`: sessions subscribed to headers and their two fresh scripts only, then N
/// rounds of a payment to every fresh script and a block confirming it.
async fn latency(o: Arc<Options>, rounds: usize) -> Result<Value, String> {
    wait_synced(&o).await?;
    let fresh_scripts = fresh_scripts(2 * o.sessions, &o.label);
    let fresh: Vec<String> = fresh_scripts
        .iter()
        .map(|s| scripthash(s.as_bytes()))
        .collect();
    let tasks: Vec<_> = (0..o.sessions)
        .map(|i| {
            let f = [fresh[2 * i].clone(), fresh[2 * i + 1].clone()];
            let server = o.server;
            tokio::spawn(async move {
                let tally = Mutex::new(Tally::default());
                let mut conn = Conn::open(server).await?;
                conn.pipeline(&[("server.version", json!(["bench-load", "1.4"]))], &tally)
                    .await;
                let subs: Vec<(&str, Value)> =
                    std::iter::once(("blockchain.headers.subscribe", json!([])))
                        .chain(
                            f.iter()
                                .map(|sh| ("blockchain.scripthash.subscribe", json!([sh]))),
                        )
                        .collect();
                let replies = conn.pipeline(&subs, &tally).await;
                if replies.iter().any(Option::is_none) {
                    return Err(format!(
                        "subscriptions failed: {:?}",
                        tally.lock().first_errors
                    ));
                }
                Ok::<_, String>(Wallet {
                    conn,
                    rng: Rng(1),
                    used: Vec::new(),
                    txs: Vec::new(),
                    tip: 0,
                    index: i,
                    fresh: f,
                })
            })
        })
        .collect();
    let mut wallets = Vec::new();
    for t in tasks {
        wallets.push(t.await.map_err(|e| e.to_string())??);
    }
    let scripts: Arc<Vec<ScriptBuf>> = Arc::new(fresh_scripts);
    let mut history: Vec<(String, u64)> = Vec::new();
    let mut out = Vec::new();
    for r in 0..rounds {
        // Whatever the last round left settles first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (raw, txid) = payment(&o, &scripts)?;
        history.push((txid, 0));
        let expect = Expect {
            status: Some(status(&history)),
            height: None,
        };
        let o2 = o.clone();
        let (w, mempool) = notify_round(wallets, false, expect, o.timeout, move || {
            daemon(&o2).call("sendrawtransaction", json!([raw]))?;
            Ok(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let height = daemon(&o)
            .call("getblockcount", json!([]))?
            .as_u64()
            .ok_or("height")?
            + 1;
        history.last_mut().expect("a payment").1 = height;
        let expect = Expect {
            status: Some(status(&history)),
            height: Some(height),
        };
        let o2 = o.clone();
        let (w, block) = notify_round(w, true, expect, o.timeout, move || mine(&o2)).await;
        wallets = w;
        eprintln!(
            "{} round {}: tx -> last scripthash note {} ms; block -> last scripthash note {} ms, last header note {} ms",
            o.label,
            r + 1,
            mempool["last scripthash note ms"],
            block["last scripthash note ms"],
            block["last header note ms"]
        );
        out.push(json!({"round": r + 1, "mempool transaction": mempool, "block": block}));
        if wallets.len() < o.sessions {
            return Err(format!("sessions lost notifications: {out:?}"));
        }
    }
    Ok(json!({
        "label": o.label,
        "sessions": o.sessions,
        "scripthashes": 2 * o.sessions,
        "rounds": out,
        "peak RSS MiB": o.pid.and_then(peak_rss_mib),
    }))
}

fn main() {
    let o = match options() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("bench-load: {e}");
            std::process::exit(2);
        }
    };
    if let Some(rounds) = o.latency {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        match rt.block_on(latency(o.clone(), rounds)) {
            Ok(v) => println!("{v}"),
            Err(e) => {
                eprintln!("bench-load: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let pool = match pool(&o) {
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
    match rt.block_on(run(o, pool)) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("bench-load: {e}");
            std::process::exit(1);
        }
    }
}
