//! A small JSON-RPC stand-in daemon for coins whose daemon cannot be installed here (komodod,
//! kevacoind): it serves a chain of raw blocks and a mempool of raw transactions that the test
//! builds, answering every call Sextant and ElectrumX make of a daemon the way bitcoind-family
//! daemons do (HTTP/1.1 with keep-alive, basic auth, JSON-RPC 1.0 replies with `"error": null`,
//! HTTP 500/404 on errors, batches).
//!
//! It is coin-agnostic: the test gives each block's hash and each transaction's txid, since the
//! hashing rules differ per coin; the stand-in never parses a block. Tests change the chain while
//! servers follow it: [`Standin::append`], [`Standin::reorg`] (replace the tail),
//! [`Standin::set_mempool`], [`Standin::set_notarized`].
//!
//! What it does not do: validate anything beyond decoding. `sendrawtransaction` puts what
//! [`StandinConfig::txid_of`] decodes into the mempool under the txid it computes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bitcoin::hashes::{sha256d, Hash};
use serde_json::{json, Value};
use sextant::coin::{Chain, HeaderFamily, TxFamily};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const STANDIN_USER: &str = "standin";
pub const STANDIN_PASS: &str = "standinpass";

/// One transaction: its txid as the daemon shows it (byte-reversed hex) and its bytes.
#[derive(Clone, Debug)]
pub struct StandinTx {
    pub txid: String,
    pub raw: Vec<u8>,
}

/// One block: its hash (byte-reversed hex), its bytes, and its transactions in block order.
#[derive(Clone, Debug)]
pub struct StandinBlock {
    pub hash: String,
    pub raw: Vec<u8>,
    pub txs: Vec<StandinTx>,
}

/// How the stand-in presents itself. Fields are public so a test can adjust a preset.
#[derive(Clone, Debug)]
pub struct StandinConfig {
    /// `getblockchaininfo.chain`: "main", "test", "regtest".
    pub chain: String,
    /// `getinfo.name` (komodod smart chains); `None` leaves it out.
    pub name: Option<String>,
    /// Whether `estimatesmartfee` exists; komodod has only `estimatefee <nblocks>`.
    pub estimatesmartfee: bool,
    /// Fee rate answered by the fee estimators, in coins per kB.
    pub fee_rate: f64,
    pub relay_fee: f64,
    /// `getnetworkinfo.version`.
    pub version: u64,
    /// The daemon's message for an unknown txid (code -5).
    pub tx_not_found: String,
    /// komodod's dPoW confirmations: verbose transactions above the notarized height show
    /// `confirmations: 1` and the plain count in `rawconfirmations`.
    pub dpow: bool,
    /// The txid of a raw transaction sent with `sendrawtransaction`, `None` when it does not
    /// decode (the daemon's "TX decode failed": Electrum servers never see such a transaction).
    pub txid_of: fn(&[u8]) -> Option<String>,
}

/// Double SHA-256 of the whole serialization, byte-reversed: the txid of legacy and Zcash-format
/// transactions (not of segwit ones).
pub fn dsha256_hex(raw: &[u8]) -> String {
    let mut h = sha256d::Hash::hash(raw).to_byte_array();
    h.reverse();
    hex::encode(h)
}

/// The txid of a transaction in the coin family's format, when it parses.
fn family_txid(tx: TxFamily, raw: &[u8]) -> Option<String> {
    let chain = Chain {
        header: HeaderFamily::Bitcoin,
        tx,
    };
    chain.parse_tx(raw).ok().map(|t| t.txid.to_string())
}

pub fn bitcoin_txid(raw: &[u8]) -> Option<String> {
    family_txid(TxFamily::Bitcoin, raw)
}

pub fn zcash_txid(raw: &[u8]) -> Option<String> {
    family_txid(TxFamily::Zcash, raw)
}

impl StandinConfig {
    /// A bitcoind-family daemon (kevacoind, litecoind).
    pub fn bitcoind(chain: &str) -> StandinConfig {
        StandinConfig {
            chain: chain.into(),
            name: None,
            estimatesmartfee: true,
            fee_rate: 0.00012345,
            relay_fee: 0.00001,
            version: 160300,
            tx_not_found:
                "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."
                    .into(),
            dpow: false,
            txid_of: bitcoin_txid,
        }
    }

    /// komodod serving the chain `name` (KMD or a smart chain's `-ac_name`).
    pub fn komodod(name: &str) -> StandinConfig {
        StandinConfig {
            chain: "main".into(),
            name: Some(name.into()),
            estimatesmartfee: false,
            fee_rate: 0.00010234,
            relay_fee: 0.000001,
            version: 3000850,
            tx_not_found: "No information available about transaction".into(),
            dpow: true,
            txid_of: zcash_txid,
        }
    }
}

struct State {
    cfg: StandinConfig,
    blocks: Vec<StandinBlock>,
    heights: HashMap<String, usize>,
    /// txid → (height, position) for confirmed transactions.
    confirmed: HashMap<String, (usize, usize)>,
    mempool: Vec<StandinTx>,
    /// Verbose `getrawtransaction` answers the test provides (otherwise a minimal one is built).
    verbose: HashMap<String, Value>,
    notarized: Option<usize>,
    /// Every (method, params) received, in order.
    calls: Vec<(String, Value)>,
    /// Replies to these methods are held back this long (a busy daemon), to widen races.
    delays: HashMap<String, Duration>,
}

type RpcResult = Result<Value, (i64, String)>;

const METHOD_NOT_FOUND: i64 = -32601;

impl State {
    fn reindex(&mut self) {
        self.heights.clear();
        self.confirmed.clear();
        for (h, b) in self.blocks.iter().enumerate() {
            self.heights.insert(b.hash.clone(), h);
            for (pos, tx) in b.txs.iter().enumerate() {
                self.confirmed.insert(tx.txid.clone(), (h, pos));
            }
        }
        // A daemon drops mempool transactions that a block confirmed.
        let confirmed = &self.confirmed;
        self.mempool.retain(|t| !confirmed.contains_key(&t.txid));
        if let Some(n) = self.notarized {
            self.notarized = Some(n.min(self.blocks.len() - 1));
        }
    }

    fn tip(&self) -> usize {
        self.blocks.len() - 1
    }

    fn block(&self, hash: &Value) -> Result<usize, (i64, String)> {
        hash.as_str()
            .and_then(|h| self.heights.get(h).copied())
            .ok_or((-5, "Block not found".into()))
    }

    fn notarized_json(&self) -> Value {
        match self.notarized {
            Some(h) => json!({
                "notarized": h,
                "notarizedhash": self.blocks[h].hash,
                "notarizedtxid": "00".repeat(32),
            }),
            None => json!({"notarized": 0, "notarizedhash": "00".repeat(32),
                           "notarizedtxid": "00".repeat(32)}),
        }
    }

    fn handle(&mut self, method: &str, params: &[Value]) -> RpcResult {
        let p = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
        let tip = self.tip();
        match method {
            "getblockcount" => Ok(json!(tip)),
            "getbestblockhash" => Ok(json!(self.blocks[tip].hash)),
            "getblockhash" => match p(0).as_u64() {
                Some(h) if (h as usize) <= tip => Ok(json!(self.blocks[h as usize].hash)),
                _ => Err((-8, "Block height out of range".into())),
            },
            "getblock" => {
                let h = self.block(&p(0))?;
                let b = &self.blocks[h];
                let verbosity = match p(1) {
                    Value::Null => 1,
                    Value::Bool(v) => v as u64,
                    v => v.as_u64().unwrap_or(1),
                };
                if verbosity == 0 {
                    return Ok(json!(hex::encode(&b.raw)));
                }
                let txs: Vec<Value> = b
                    .txs
                    .iter()
                    .map(|t| match verbosity {
                        1 => json!(t.txid),
                        _ => json!({"txid": t.txid, "hex": hex::encode(&t.raw)}),
                    })
                    .collect();
                let mut v = json!({
                    "hash": b.hash, "height": h, "confirmations": tip - h + 1,
                    "size": b.raw.len(), "tx": txs,
                });
                if h > 0 {
                    v["previousblockhash"] = json!(self.blocks[h - 1].hash);
                }
                if h < tip {
                    v["nextblockhash"] = json!(self.blocks[h + 1].hash);
                }
                Ok(v)
            }
            "getblockchaininfo" => Ok(json!({
                "chain": self.cfg.chain, "blocks": tip, "headers": tip,
                "bestblockhash": self.blocks[tip].hash, "initialblockdownload": false,
                "verificationprogress": 1.0, "pruned": false,
            })),
            "getinfo" => {
                let mut v = json!({
                    "version": self.cfg.version, "protocolversion": 170010, "blocks": tip,
                    "longestchain": tip, "connections": 8, "relayfee": self.cfg.relay_fee,
                    "testnet": self.cfg.chain != "main", "errors": "",
                });
                if let Some(n) = &self.cfg.name {
                    v["name"] = json!(n);
                }
                if self.cfg.dpow {
                    for (k, x) in self.notarized_json().as_object().unwrap() {
                        v[k] = x.clone();
                    }
                }
                Ok(v)
            }
            "getnetworkinfo" => Ok(json!({
                "version": self.cfg.version, "subversion": "/standin/", "protocolversion": 170010,
                "connections": 8, "relayfee": self.cfg.relay_fee, "incrementalfee": 0.00001,
                "localrelay": true, "warnings": "",
            })),
            "getmempoolinfo" => Ok(json!({
                "loaded": true, "size": self.mempool.len(),
                "bytes": self.mempool.iter().map(|t| t.raw.len()).sum::<usize>(),
                "usage": 0, "maxmempool": 300_000_000, "mempoolminfee": self.cfg.relay_fee,
                "minrelaytxfee": self.cfg.relay_fee, "incrementalrelayfee": 0.00001,
            })),
            "getindexinfo" => Ok(json!({"txindex": {"synced": true, "best_block_height": tip}})),
            "getzmqnotifications" => Ok(json!([])),
            "getrawmempool" => Ok(json!(self
                .mempool
                .iter()
                .map(|t| t.txid.clone())
                .collect::<Vec<_>>())),
            "getrawtransaction" => self.raw_transaction(&p(0), &p(1)),
            "sendrawtransaction" => {
                let decoded = p(0).as_str().and_then(|s| hex::decode(s).ok());
                let (raw, txid) = decoded
                    .and_then(|raw| (self.cfg.txid_of)(&raw).map(|txid| (raw, txid)))
                    .ok_or((-22, "TX decode failed".to_string()))?;
                if self.confirmed.contains_key(&txid) {
                    return Err((-27, "transaction already in block chain".into()));
                }
                if !self.mempool.iter().any(|t| t.txid == txid) {
                    self.mempool.push(StandinTx {
                        txid: txid.clone(),
                        raw,
                    });
                }
                Ok(json!(txid))
            }
            "estimatesmartfee" if self.cfg.estimatesmartfee => match p(0).as_u64() {
                Some(n) => Ok(json!({"feerate": self.cfg.fee_rate, "blocks": n.max(2)})),
                None => Err((
                    -1,
                    "estimatesmartfee conf_target (\"estimate_mode\")".into(),
                )),
            },
            "estimatefee" => {
                // komodod's estimatefee takes exactly one argument (its help text otherwise).
                if params.len() != 1 || !p(0).is_u64() {
                    return Err((-1, "estimatefee nblocks".into()));
                }
                Ok(json!(self.cfg.fee_rate))
            }
            _ => Err((METHOD_NOT_FOUND, "Method not found".into())),
        }
    }

    fn raw_transaction(&self, txid: &Value, verbose: &Value) -> RpcResult {
        let txid = txid
            .as_str()
            .filter(|s| s.len() == 64 && hex::decode(s).is_ok())
            .ok_or((-8, "parameter 1 must be hexadecimal string".to_string()))?;
        let verbose = match verbose {
            Value::Bool(b) => *b,
            v => v.as_u64().unwrap_or(0) != 0,
        };
        let not_found = || (-5, self.cfg.tx_not_found.clone());
        let (raw, place) = match self.confirmed.get(txid) {
            // As Core, the genesis coinbase is not in the transaction index.
            Some((0, _)) => return Err(not_found()),
            Some(&(h, pos)) => (&self.blocks[h].txs[pos].raw, Some(h)),
            None => match self.mempool.iter().find(|t| t.txid == txid) {
                Some(t) => (&t.raw, None),
                None => return Err(not_found()),
            },
        };
        if !verbose {
            return Ok(json!(hex::encode(raw)));
        }
        if let Some(v) = self.verbose.get(txid) {
            return Ok(v.clone());
        }
        let mut v = json!({"hex": hex::encode(raw), "txid": txid});
        if let Some(h) = place {
            let raw_confs = self.tip() - h + 1;
            v["blockhash"] = json!(self.blocks[h].hash);
            v["height"] = json!(h);
            v["confirmations"] = json!(raw_confs);
            if self.cfg.dpow {
                v["rawconfirmations"] = json!(raw_confs);
                if self.notarized.is_none_or(|n| h > n) {
                    v["confirmations"] = json!(1);
                }
            }
        }
        Ok(v)
    }
}

/// One reply object, JSON-RPC 1.0 style as bitcoind writes it.
fn reply(id: Value, r: RpcResult) -> Value {
    match r {
        Ok(v) => json!({"result": v, "error": null, "id": id}),
        Err((code, message)) => {
            json!({"result": null, "error": {"code": code, "message": message}, "id": id})
        }
    }
}

/// A running stand-in daemon. Stops when dropped.
pub struct Standin {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Standin {
    /// Serves `blocks` (height 0 first; at least the genesis block) on a free loopback port.
    pub fn start(cfg: StandinConfig, blocks: Vec<StandinBlock>) -> Standin {
        assert!(!blocks.is_empty(), "a chain has a genesis block");
        let mut state = State {
            cfg,
            blocks,
            heights: HashMap::new(),
            confirmed: HashMap::new(),
            mempool: Vec::new(),
            verbose: HashMap::new(),
            notarized: None,
            calls: Vec::new(),
            delays: HashMap::new(),
        };
        state.reindex();
        let state = Arc::new(Mutex::new(state));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{STANDIN_USER}:{STANDIN_PASS}"))
        );
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((sock, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(serve_connection(sock, shared.clone(), auth.clone()));
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Standin {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://user:pass@127.0.0.1:port`, the form DAEMON_URL takes.
    pub fn url(&self) -> String {
        format!("http://{STANDIN_USER}:{STANDIN_PASS}@{}", self.addr)
    }

    pub fn height(&self) -> usize {
        self.state.lock().unwrap().tip()
    }

    pub fn block_hash(&self, height: usize) -> String {
        self.state.lock().unwrap().blocks[height].hash.clone()
    }

    /// Extends the chain (the daemon found new blocks).
    pub fn append(&self, blocks: Vec<StandinBlock>) {
        let mut s = self.state.lock().unwrap();
        s.blocks.extend(blocks);
        s.reindex();
    }

    /// Replaces every block from `fork_height` up with `blocks` (a reorg; the chain may get
    /// shorter). Transactions of the dropped blocks are not returned to the mempool: set it.
    pub fn reorg(&self, fork_height: usize, blocks: Vec<StandinBlock>) {
        assert!(fork_height > 0, "the genesis block stays");
        let mut s = self.state.lock().unwrap();
        s.blocks.truncate(fork_height);
        s.blocks.extend(blocks);
        s.reindex();
    }

    pub fn set_mempool(&self, txs: Vec<StandinTx>) {
        let mut s = self.state.lock().unwrap();
        s.mempool = txs;
        s.reindex();
    }

    pub fn mempool(&self) -> Vec<StandinTx> {
        self.state.lock().unwrap().mempool.clone()
    }

    /// komodod's last notarized height (`getinfo.notarized`, with that block's hash).
    pub fn set_notarized(&self, height: Option<usize>) {
        let mut s = self.state.lock().unwrap();
        s.notarized = height.map(|h| h.min(s.tip()));
    }

    /// The answer to `getrawtransaction <txid> 1`, passed through by Electrum servers.
    pub fn set_verbose(&self, txid: &str, v: Value) {
        self.state
            .lock()
            .unwrap()
            .verbose
            .insert(txid.to_string(), v);
    }

    pub fn set_fee_rate(&self, rate: f64) {
        self.state.lock().unwrap().cfg.fee_rate = rate;
    }

    /// Holds back every reply to `method` by `delay` (zero: none), as a busy daemon would.
    pub fn set_delay(&self, method: &str, delay: Duration) {
        self.state
            .lock()
            .unwrap()
            .delays
            .insert(method.to_string(), delay);
    }

    /// Every (method, params) received so far.
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().calls.clone()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 connection, kept alive across requests as jsonrpsee and aiohttp expect.
async fn serve_connection(mut sock: TcpStream, state: Arc<Mutex<State>>, auth: String) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || head.starts_with("POST / HTTP/1.0");
        while buf.len() < head_end + len {
            let mut chunk = vec![0u8; (head_end + len - buf.len()).min(1 << 20)];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        let (status, text, delay) = if header("authorization").as_deref() != Some(auth.as_str()) {
            (401, String::new(), Duration::ZERO)
        } else {
            respond(&state, &body)
        };
        tokio::time::sleep(delay).await;
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            404 => "Not Found",
            _ => "Internal Server Error",
        };
        let out = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             {}\r\n{text}",
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if sock.write_all(out.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// The HTTP status, body and hold-back delay for one request body (a call or a batch).
fn respond(state: &Mutex<State>, body: &[u8]) -> (u16, String, Duration) {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        let v = reply(Value::Null, Err((-32700, "Parse error".into())));
        return (500, v.to_string(), Duration::ZERO);
    };
    let mut s = state.lock().unwrap();
    let mut delay = Duration::ZERO;
    let mut one = |call: &Value| -> (Value, u16) {
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = call.get("method").and_then(Value::as_str) else {
            let v = reply(id, Err((-32600, "Method must be a string".into())));
            return (v, 500);
        };
        let params = match call.get("params") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        s.calls
            .push((method.to_string(), Value::Array(params.clone())));
        delay = delay.max(s.delays.get(method).copied().unwrap_or_default());
        let r = s.handle(method, &params);
        let status = match &r {
            Ok(_) => 200,
            Err((METHOD_NOT_FOUND, _)) => 404,
            Err(_) => 500,
        };
        (reply(id, r), status)
    };
    let (status, text) = match &req {
        Value::Array(calls) => {
            let replies: Vec<Value> = calls.iter().map(|c| one(c).0).collect();
            (200, Value::Array(replies).to_string())
        }
        call => {
            let (v, status) = one(call);
            (status, v.to_string())
        }
    };
    (status, text, delay)
}
