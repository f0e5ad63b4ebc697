//! Differential test: ElectrumX 2.0.0 and the `sextant` binary on the same `litecoind -regtest`
//! (a varied chain with MWEB blocks and a mempool holding an unconfirmed parent → child chain)
//! must give the same answers to the same requests, valid and invalid, including batches,
//! protocol errors and the notifications a new block and a new mempool transaction cause.
//!
//! Both sessions negotiate `["1.4", "1.4.2"]`, so both serve protocol 1.4.2. Replies are compared
//! as parsed JSON (ElectrumX pads its writes with spaces), numbers numerically (Python prints
//! floats its own way). What is inherently implementation-specific is masked before comparing:
//!
//! * `server.version` result[0]: the software name and version.
//! * `server.banner`: the default banner names the software.
//! * `server.features`: `server_version` (software name) and `protocol_max` (ElectrumX 2 speaks
//!   up to 1.7.0; Sextant deliberately stops at 1.4.2 — both negotiate 1.4.2 here).
//!
//! ElectrumX's cost-based throttling is disabled (`COST_SOFT_LIMIT=0`, `COST_HARD_LIMIT=0`): it
//! would disconnect this test's deliberately error-heavy sessions (every error costs 100), and
//! Sextant has no cost engine yet, so comparing it would only measure that.
//!
//! ElectrumX is installed by `scripts/electrumx-venv.sh` (a cached virtualenv; the first run
//! needs PyPI). Every differing answer is printed with both replies; the test fails with the count.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Processes

/// Settings both servers get.
fn common_env(d: &Litecoind, db: &Path, port: u16, ws_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("COIN", "Litecoin".into()),
        ("NET", "regtest".into()),
        ("DB_DIRECTORY", db.display().to_string()),
        ("DAEMON_URL", format!("{}/", d.rpc_url())),
        (
            "SERVICES",
            format!("tcp://127.0.0.1:{port},ws://127.0.0.1:{ws_port}"),
        ),
        ("DAEMON_POLL_INTERVAL_BLOCKS", "100".into()),
        ("DAEMON_POLL_INTERVAL_MEMPOOL", "100".into()),
        ("DONATION_ADDRESS", "rltc1qdonate".into()),
        ("PEER_DISCOVERY", "off".into()),
        // Sextant's default is ElectrumX 1.16's; use one value for both so the history limit
        // and "response too large" agree.
        ("MAX_SEND", "1000000".into()),
        ("LOG_LEVEL", "info".into()),
    ]
}

fn start_electrumx(venv: &Path, d: &Litecoind, dir: &Path, port: u16, ws_port: u16) -> Proc {
    let db = dir.join("electrumx-db");
    std::fs::create_dir_all(&db).unwrap();
    let mut cmd = base_command(&venv.join("bin/electrumx_server"));
    cmd.envs(common_env(d, &db, port, ws_port))
        .env("DB_ENGINE", "leveldb")
        .env("ALLOW_ROOT", "1")
        .env("COST_SOFT_LIMIT", "0")
        .env("COST_HARD_LIMIT", "0");
    Proc::spawn("ElectrumX", cmd, dir.join("electrumx.log"))
}

fn start_sextant(d: &Litecoind, dir: &Path, port: u16, ws_port: u16) -> Proc {
    let db = dir.join("sextant-db");
    let mut cmd = base_command(Path::new(env!("CARGO_BIN_EXE_sextant")));
    cmd.envs(common_env(d, &db, port, ws_port));
    Proc::spawn("Sextant", cmd, dir.join("sextant.log"))
}

// ---------------------------------------------------------------------------------------------
// A client: newline-framed JSON over TCP, a reader thread, replies matched by id.

enum Msg {
    Json(Value),
    Eof,
}

struct Conn {
    w: TcpStream,
    rx: mpsc::Receiver<Msg>,
    next_id: u64,
    /// Notifications received while waiting for replies.
    notes: Vec<Value>,
    replies: HashMap<String, Value>,
    closed: bool,
}

const PROTOCOL: &str = "1.4.2";

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let r = s.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Msg::Eof);
                        return;
                    }
                    Ok(_) => {
                        let v = serde_json::from_str(&line).unwrap_or_else(
                            |e| json!({"unparsable": line, "error": e.to_string()}),
                        );
                        if tx.send(Msg::Json(v)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Conn {
            w: s,
            rx,
            next_id: 1000,
            notes: Vec::new(),
            replies: HashMap::new(),
            closed: false,
        }
    }

    /// Connects and negotiates protocol 1.4.2.
    fn session(port: u16) -> Conn {
        let mut c = Conn::open(port);
        let v = c.call("server.version", json!(["differential", ["1.4", "1.4.2"]]));
        assert_eq!(v["result"][1], PROTOCOL, "{v}");
        c
    }

    fn send_raw(&mut self, text: &str) {
        let _ = self.w.write_all(text.as_bytes());
    }

    fn recv(&mut self, timeout: Duration) -> Option<Value> {
        if self.closed {
            return None;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(Msg::Json(v)) => Some(v),
            Ok(Msg::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.closed = true;
                None
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
        }
    }

    fn stash(&mut self, v: Value) {
        match v.get("id") {
            Some(id) if v.get("method").is_none() => {
                self.replies.insert(id.to_string(), v);
            }
            _ => self.notes.push(v),
        }
    }

    /// Sends every request at once, then collects the replies (`None` for a missing one).
    fn pipeline(&mut self, calls: &[(String, Value)]) -> Vec<Option<Value>> {
        let mut text = String::new();
        let mut ids = Vec::new();
        for (method, params) in calls {
            self.next_id += 1;
            let id = self.next_id;
            ids.push(json!(id).to_string());
            text.push_str(
                &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
                    .to_string(),
            );
            text.push('\n');
        }
        self.send_raw(&text);
        let deadline = Instant::now() + Duration::from_secs(120);
        while ids.iter().any(|id| !self.replies.contains_key(id)) && Instant::now() < deadline {
            match self.recv(Duration::from_secs(5)) {
                Some(v) => self.stash(v),
                None if self.closed => break,
                None => {}
            }
        }
        ids.iter().map(|id| self.replies.remove(id)).collect()
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.pipeline(&[(method.to_string(), params)])
            .remove(0)
            .unwrap_or_else(|| panic!("no reply to {method}"))
    }

    /// Waits until `pred` holds for the notifications received, up to `timeout`; then keeps
    /// collecting for `settle` more.
    fn notes_until(
        &mut self,
        timeout: Duration,
        settle: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !pred(&self.notes) && Instant::now() < deadline {
            if let Some(v) = self.recv(Duration::from_millis(100)) {
                self.stash(v);
            }
        }
        let end = Instant::now() + settle;
        while Instant::now() < end {
            if let Some(v) = self.recv(Duration::from_millis(100)) {
                self.stash(v);
            }
        }
    }

    /// Everything received until the server closes or `quiet` passes without a message.
    fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.recv(quiet) {
            out.push(v);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// JSON equality with numbers compared as numbers (`1e-05` = `0.00001`, `1.0` = `1`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => {
                let (f, g) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                f == g || (f - g).abs() <= 1e-12 * f.abs().max(g.abs())
            }
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Masks what is implementation-specific in one reply to `method` (see the module comment).
fn mask(method: &str, mut reply: Value) -> Value {
    let Some(result) = reply.get_mut("result") else {
        return reply;
    };
    match method {
        "server.version" => {
            if let Some(r) = result.get_mut(0) {
                *r = json!("<software>");
            }
        }
        "server.banner" if result.is_string() => *result = json!("<banner>"),
        "server.features" => {
            for key in ["server_version", "protocol_max"] {
                if let Some(v) = result.get_mut(key) {
                    *v = json!(format!("<{key}>"));
                }
            }
        }
        _ => {}
    }
    reply
}

/// A batch reply in completion order: sorted by id for comparison.
fn sort_batch(v: Value) -> Value {
    match v {
        Value::Array(mut items) => {
            items.sort_by_key(|m| m.get("id").map(|i| i.to_string()).unwrap_or_default());
            Value::Array(items)
        }
        other => other,
    }
}

#[derive(Default)]
struct Diffs {
    count: usize,
    compared: usize,
}

impl Diffs {
    fn check(&mut self, what: &str, ex: &Value, sx: &Value) {
        self.compared += 1;
        if !same(ex, sx) {
            self.count += 1;
            eprintln!(
                "DIFF #{} {what}\n  ElectrumX: {ex}\n  Sextant:   {sx}",
                self.count
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

fn call(method: &str, params: Value) -> (String, Value) {
    (method.to_string(), params)
}

fn compare_pipeline(diffs: &mut Diffs, ex: &mut Conn, sx: &mut Conn, calls: &[(String, Value)]) {
    let a = ex.pipeline(calls);
    let b = sx.pipeline(calls);
    for ((method, params), (ra, rb)) in calls.iter().zip(a.into_iter().zip(b)) {
        let strip = |r: Option<Value>| {
            r.map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("id");
                }
                mask(method, v)
            })
            .unwrap_or(json!("<no reply>"))
        };
        diffs.check(&format!("{method} {params}"), &strip(ra), &strip(rb));
    }
}

/// One fresh connection per transcript: send `lines` (each its own write, a short pause in
/// between so the servers read them as separate messages), record everything that comes back.
fn transcript(port: u16, lines: &[String]) -> Vec<Value> {
    let mut c = Conn::open(port);
    for l in lines {
        c.send_raw(l);
        std::thread::sleep(Duration::from_millis(150));
    }
    c.drain(Duration::from_millis(2500))
        .into_iter()
        .map(|v| sort_batch(mask_versions(v)))
        .collect()
}

/// Masks the software name in every `server.version` reply of a transcript (also in batches):
/// results of the form `[name, "1.4…"]`.
fn mask_versions(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(mask_versions).collect()),
        v => {
            let is_version = v.get("result").and_then(Value::as_array).is_some_and(|r| {
                r.len() == 2
                    && r[0].is_string()
                    && r[1].as_str().is_some_and(|p| p.starts_with("1."))
            });
            if is_version {
                mask("server.version", v)
            } else {
                v
            }
        }
    }
}

/// A transcript over WebSocket: each line (without its newline) as one text message.
fn ws_transcript(port: u16, lines: &[String]) -> Vec<Value> {
    use tokio_tungstenite::tungstenite::{self, Message};
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect ws");
    tcp.set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp).expect("WebSocket handshake");
    let mut out = Vec::new();
    for l in lines {
        ws.send(Message::text(l.trim_end().to_string())).unwrap();
        // One reply per message here: read it before sending the next, so the order is fixed.
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t)
                        .unwrap_or_else(|_| json!({"unparsable": t.as_str()}));
                    out.push(sort_batch(mask_versions(v)));
                    break;
                }
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
                other => {
                    out.push(json!(format!("{other:?}")));
                    break;
                }
            }
        }
    }
    out
}

fn compare_transcripts(diffs: &mut Diffs, ex_port: u16, sx_port: u16, cases: Vec<Vec<String>>) {
    let run = |port: u16, cases: &[Vec<String>]| {
        std::thread::scope(|s| {
            let hs: Vec<_> = cases
                .iter()
                .map(|lines| s.spawn(move || transcript(port, lines)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    };
    let (a, b) = std::thread::scope(|s| {
        let ha = s.spawn(|| run(ex_port, &cases));
        let hb = s.spawn(|| run(sx_port, &cases));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    for ((lines, ta), tb) in cases.iter().zip(a).zip(b) {
        let (ta, tb) = (Value::Array(ta), Value::Array(tb));
        // Replies to concurrent requests may come in either order.
        let sorted = |v: &Value| {
            let mut items = v.as_array().unwrap().clone();
            items.sort_by_key(|m| m.to_string());
            Value::Array(items)
        };
        if !same(&ta, &tb) && same(&sorted(&ta), &sorted(&tb)) {
            diffs.compared += 1;
            continue;
        }
        diffs.check(&format!("transcript {lines:?}"), &ta, &tb);
    }
}

fn version_line(id: u64) -> String {
    format!(
        "{}\n",
        json!({"jsonrpc":"2.0","id":id,"method":"server.version","params":["differential",["1.4","1.4.2"]]})
    )
}

fn line(v: Value) -> String {
    format!("{v}\n")
}

/// Scripts paid by a wallet send with ~1,100 outputs, so the mempool holds more than one
/// fee-histogram bin (30,000 vbytes) and the histogram is not empty.
fn fill_mempool(d: &Litecoind) -> String {
    let wallet = RpcClient::new(
        d.rpc_addr(),
        &format!("/wallet/{MAIN_WALLET}"),
        RPC_USER,
        RPC_PASS,
    );
    let calls: Vec<(&str, Value)> = (0..1100)
        .map(|i| ("getnewaddress", json!([format!("fill{i}"), "bech32"])))
        .collect();
    let addrs: Vec<String> = wallet
        .batch(&calls)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().as_str().unwrap().to_string())
        .collect();
    d.ensure_funds(5 * COIN);
    let outs: Vec<(String, u64)> = addrs.into_iter().map(|a| (a, 100_000)).collect();
    d.send_many(&outs)
}

struct Chain {
    tip: u64,
    scripts: Vec<String>,
    txids: Vec<String>,
    /// (height, number of txs) of interesting blocks.
    blocks: Vec<(u64, usize)>,
    mempool: UnconfirmedChain,
    fill_txid: String,
    mweb: MwebInfo,
}

fn build(d: &Litecoind) -> Chain {
    let v1 = d.build_varied_chain();
    let mweb = d.activate_mweb();
    let v2 = d.build_varied_chain();
    let mempool = d.unconfirmed_chain();
    let fill_txid = fill_mempool(d);
    let tip = d.height();
    let mut scripts: Vec<String> = Vec::new();
    let mut txids: Vec<String> = Vec::new();
    for v in [&v1, &v2] {
        scripts.extend(v.all_scripts().iter().map(|s| s.scripthash()));
        txids.extend([
            v.op_return_txid.clone(),
            v.fanout_txid.clone(),
            v.many_input_txid.clone(),
            v.mixed_spend_txid.clone(),
            v.frequent_spend_txid.clone(),
        ]);
        txids.extend(v.chain_txids.iter().cloned());
    }
    scripts.push(mweb.pegout.scripthash());
    scripts.push(mempool.a_output.scripthash());
    scripts.push(mempool.b_output.scripthash());
    scripts.push(scripthash(&v1.op_return_script_hex));
    // The genesis coinbase, which ElectrumX does not index.
    let genesis = d.call("getblock", json!([d.block_hash(0), 2]));
    let genesis_cb = &genesis["tx"][0];
    txids.push(genesis_cb["txid"].as_str().unwrap().to_string());
    for o in genesis_cb["vout"].as_array().unwrap() {
        scripts.push(scripthash(o["scriptPubKey"]["hex"].as_str().unwrap()));
    }
    txids.extend(mweb.pegin_txids.iter().cloned());
    txids.push(mweb.pegout_hogex_txid.clone());
    let mut blocks = Vec::new();
    for h in [
        0,
        1,
        101,
        300,
        MWEB_HEIGHT - 1,
        MWEB_HEIGHT,
        mweb.pegout_height,
        tip,
    ] {
        let b = d.block_json(&d.block_hash(h));
        blocks.push((h, b["tx"].as_array().unwrap().len()));
    }
    for hash in v1.blocks.iter().chain(&v2.blocks) {
        let b = d.block_json(hash);
        blocks.push((
            b["height"].as_u64().unwrap(),
            b["tx"].as_array().unwrap().len(),
        ));
    }
    blocks.sort();
    blocks.dedup();
    Chain {
        tip,
        scripts,
        txids,
        blocks,
        mempool,
        fill_txid,
        mweb,
    }
}

/// Every 1.4.x method, valid and invalid, that reads state (safe to pipeline).
fn read_only_calls(d: &Litecoind, c: &Chain) -> Vec<(String, Value)> {
    let tip = c.tip;
    let mut v = vec![
        call("server.banner", json!([])),
        call("server.donation_address", json!([])),
        call("server.features", json!([])),
        call("server.peers.subscribe", json!([])),
        call("server.ping", json!([])),
        call("server.ping", json!([1, 2])),
        call("server.ping", json!([1, 2, 3])),
        call("server.add_peer", json!([{}])),
        call("server.add_peer", json!([])),
        call("server.version", json!(["again", "1.4"])),
        call("blockchain.headers.subscribe", json!([])),
        call("blockchain.headers.subscribe", json!([true])),
        call("blockchain.relayfee", json!([])),
        call("blockchain.relayfee", json!([1])),
        call("mempool.get_fee_histogram", json!([])),
        call("mempool.get_fee_histogram", json!(["x"])),
        call("mempool.get_info", json!([])),
        call("blockchain.address.get_balance", json!(["x"])),
        call("blockchain.numblocks.subscribe", json!([])),
        call("blockchain.block.get_header", json!([1])),
        call("blockchain.block.get_chunk", json!([0])),
        call("blockchain.utxo.get_address", json!(["00", 0])),
        call("blockchain.scriptpubkey.get_balance", json!(["0014"])),
        call("blockchain.transaction.broadcast_package", json!([[]])),
        call("no.such.method", json!([])),
        call("", json!([])),
    ];
    // Fees.
    for p in [
        json!([1]),
        json!([2]),
        json!([6]),
        json!([25]),
        json!([1008]),
        json!([2000]),
        json!([0]),
        json!([6, "economical"]),
        json!([6, "CONSERVATIVE"]),
        json!([6, "fast"]),
        json!([6, 5]),
        json!([6, null]),
        json!([-1]),
        json!(["6"]),
        json!([6.7]),
        json!(["x"]),
        json!([]),
        json!([1, 2, 3]),
        json!({"number": 3}),
        json!({"number": 3, "mode": "ECONOMICAL"}),
        json!({"nmber": 3}),
    ] {
        v.push(call("blockchain.estimatefee", p));
    }
    // Headers.
    for h in [
        json!(0),
        json!(1),
        json!(MWEB_HEIGHT),
        json!(tip),
        json!(tip + 1),
        json!(100_000),
    ] {
        v.push(call("blockchain.block.header", json!([h])));
        v.push(call("blockchain.block.header", json!([h, tip])));
        v.push(call("blockchain.block.header", json!([h, 0])));
    }
    for p in [
        json!([5, 5]),
        json!([5, 4]),
        json!([0, 1]),
        json!([tip, tip]),
        json!([tip, tip + 1]),
        json!([3, MWEB_HEIGHT]),
        json!([MWEB_HEIGHT, MWEB_HEIGHT + 1]),
        json!(["5", "10"]),
        json!([5.5, 10]),
        json!([true, 10]),
        json!([-1]),
        json!([1, -1]),
        json!(["x"]),
        json!([null]),
        json!([]),
        json!([1, 2, 3]),
        json!({"height": 4}),
        json!({"height": 4, "cp_height": 10}),
        json!({"cp_height": 10}),
        json!({"height": 4, "x": 1}),
        json!("notalist"),
    ] {
        v.push(call("blockchain.block.header", p));
    }
    for p in [
        json!([0, 0]),
        json!([0, 1]),
        json!([0, 5]),
        json!([0, 2016]),
        json!([0, 2017]),
        json!([0, 5000]),
        json!([1, 1_000_000]),
        json!([tip - 2, 10]),
        json!([tip, 1]),
        json!([tip + 1, 1]),
        json!([tip + 5, 3]),
        json!([100_000, 1]),
        json!([0, 10, tip]),
        json!([0, 10, 9]),
        json!([0, 10, 8]),
        json!([0, 0, 5]),
        json!([tip - 3, 10, tip]),
        json!([MWEB_HEIGHT - 2, 4, MWEB_HEIGHT + 5]),
        json!([tip + 1, 2, tip]),
        json!([0, 10, tip + 1]),
        json!(["0", "3"]),
        json!([0, "x"]),
        json!([-5, 3]),
        json!([0, -3]),
        json!([0]),
        json!([0, 1, 2, 3]),
        json!({"start_height": 2, "count": 3}),
        json!({"start_height": 2, "count": 3, "cp_height": tip}),
        json!({"start_height": 2}),
    ] {
        v.push(call("blockchain.block.headers", p));
    }
    // Script hashes.
    let unknown = "ab".repeat(32);
    let mut scripts = c.scripts.clone();
    scripts.push(unknown.clone());
    scripts.push(c.scripts[0].to_uppercase());
    for m in [
        "blockchain.scripthash.get_balance",
        "blockchain.scripthash.get_history",
        "blockchain.scripthash.get_mempool",
        "blockchain.scripthash.listunspent",
    ] {
        for sh in &scripts {
            v.push(call(m, json!([sh])));
        }
        for bad in [
            json!("nope"),
            json!(""),
            json!("ab".repeat(31)),
            json!("ab".repeat(33)),
            json!("zz".repeat(32)),
            json!(5),
            json!(null),
            json!(["ab"]),
        ] {
            v.push(call(m, json!([bad])));
        }
        v.push(call(m, json!([])));
        v.push(call(m, json!([unknown, 1])));
        v.push(call(m, json!({"scripthash": unknown})));
        v.push(call(m, json!({"script_hash": unknown})));
    }
    for bad in [json!("nope"), json!(5)] {
        v.push(call("blockchain.scripthash.subscribe", json!([bad])));
        v.push(call("blockchain.scripthash.unsubscribe", json!([bad])));
    }
    v.push(call("blockchain.scripthash.subscribe", json!([])));
    v.push(call("blockchain.scripthash.unsubscribe", json!([])));
    // Transactions.
    let mut txids = c.txids.clone();
    txids.push(c.mempool.a_txid.clone());
    txids.push(c.mempool.b_txid.clone());
    txids.push(c.fill_txid.clone());
    for t in &txids {
        v.push(call("blockchain.transaction.get", json!([t])));
        v.push(call("blockchain.transaction.get", json!([t, true])));
        // Only the genesis coinbase is unknown to the daemon's txindex.
        let h = match d.rpc("getrawtransaction", json!([t, false])) {
            Err(_) => Some(0),
            Ok(_) => d.tx_confirmed_height(t),
        };
        if let Some(h) = h {
            v.push(call("blockchain.transaction.get_merkle", json!([t, h])));
            v.push(call(
                "blockchain.transaction.get_merkle",
                json!([t, h.saturating_sub(1)]),
            ));
        } else {
            v.push(call("blockchain.transaction.get_merkle", json!([t, tip])));
        }
    }
    let t0 = &c.txids[0];
    for p in [
        json!([t0, false]),
        json!([t0, 0]),
        json!([t0, 1]),
        json!([t0, "yes"]),
        json!([t0, 2]),
        json!([t0, null]),
        json!([t0.to_uppercase()]),
        json!(["00".repeat(32)]),
        json!(["00".repeat(32), true]),
        json!(["nothex"]),
        json!([5]),
        json!([]),
        json!([t0, true, 1]),
        json!({"tx_hash": t0, "verbose": true}),
        json!({"txid": t0}),
    ] {
        v.push(call("blockchain.transaction.get", p));
    }
    let h0 = d.tx_confirmed_height(t0).unwrap();
    for p in [
        json!([t0, tip + 1]),
        json!([t0, 100_000]),
        json!([t0, -1]),
        json!([t0, "x"]),
        json!([t0, h0.to_string()]),
        json!(["00".repeat(32), h0]),
        json!(["bad", h0]),
        json!([t0]),
        json!([t0, h0, 1]),
        json!({"tx_hash": t0, "height": h0}),
    ] {
        v.push(call("blockchain.transaction.get_merkle", p));
    }
    for (h, n) in &c.blocks {
        for pos in [0, n / 2, n - 1, *n, n + 10] {
            v.push(call("blockchain.transaction.id_from_pos", json!([h, pos])));
            v.push(call(
                "blockchain.transaction.id_from_pos",
                json!([h, pos, true]),
            ));
        }
    }
    for p in [
        json!([tip + 1, 0]),
        json!([100_000, 0]),
        json!([tip + 1, 0, true]),
        json!([1, 0, "x"]),
        json!([1, 0, 1]),
        json!([1, 0, 0]),
        json!([1, 0, 2]),
        json!(["1", "0"]),
        json!([-1, 0]),
        json!([1, -1]),
        json!([1]),
        json!([1, 0, true, 4]),
        json!({"height": 1, "tx_pos": 0, "merkle": true}),
        json!({"height": 1}),
    ] {
        v.push(call("blockchain.transaction.id_from_pos", p));
    }
    // Broadcasts that the daemon (or the hex check) refuses.
    let confirmed_raw = d.raw_tx_hex(&c.txids[1]);
    for p in [
        json!(["00"]),
        json!(["0"]),
        json!(["zz"]),
        json!([""]),
        json!([5]),
        json!(["00 11"]),
        json!([confirmed_raw]),
        json!([]),
        json!(["00", "00"]),
    ] {
        v.push(call("blockchain.transaction.broadcast", p));
    }
    // Same script hash through the MWEB peg-out.
    v.push(call(
        "blockchain.scripthash.get_history",
        json!([c.mweb.pegout.scripthash()]),
    ));
    v
}

/// Raw protocol exchanges, each on a fresh connection.
fn transcripts() -> Vec<Vec<String>> {
    let v = version_line(1);
    let ping =
        |id: Value| line(json!({"jsonrpc":"2.0","id":id,"method":"server.ping","params":[]}));
    vec![
        // server.version must come first.
        vec![ping(json!(5))],
        vec![line(
            json!({"jsonrpc":"2.0","method":"server.ping","params":[]}),
        )],
        vec![line(
            json!({"jsonrpc":"2.0","id":3,"method":"blockchain.headers.subscribe"}),
        )],
        // Version negotiation.
        vec![line(
            json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":["x",["1.8","2.0"]]}),
        )],
        vec![line(
            json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.3"]}),
        )],
        vec![line(
            json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":["x",1.4]}),
        )],
        vec![line(
            json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":["x",["1.4"]]}),
        )],
        vec![line(
            json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":{"client_name":"x","protocol_version":["1.4","1.4.2"]}}),
        )],
        vec![line(
            json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":["x",["1.4","1.4.2"],"extra"]}),
        )],
        vec![line(
            json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":{"x":1}}),
        )],
        vec![line(
            json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.4.1"]}),
        )],
        vec![
            line(json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.4.1"]})),
            line(
                json!({"jsonrpc":"2.0","id":2,"method":"blockchain.scripthash.unsubscribe","params":["00".repeat(32)]}),
            ),
        ],
        vec![
            line(json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.4"]})),
            line(json!({"jsonrpc":"2.0","id":2,"method":"server.version","params":["x","1.4"]})),
            ping(json!(3)),
        ],
        // Protocol errors.
        vec![v.clone(), "this is not json\n".into(), ping(json!(2))],
        vec![v.clone(), "[]\n".into()],
        vec![v.clone(), "5\n".into()],
        vec![v.clone(), "\"text\"\n".into()],
        vec![v.clone(), "{}\n".into()],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","id":[1],"method":"server.ping"})),
        ],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","id":{"a":1},"method":"server.ping"})),
        ],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","id":1.5,"method":"server.ping"})),
        ],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","id":"str","method":"server.ping"})),
        ],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","id":null,"method":"server.ping"})),
        ],
        vec![v.clone(), line(json!({"jsonrpc":"2.0","id":7,"method":5}))],
        vec![v.clone(), line(json!({"jsonrpc":"2.0","id":7}))],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","id":7,"method":"server.ping","params":5})),
        ],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","id":7,"method":"server.ping","params":"x"})),
        ],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"1.0","id":7,"method":"server.ping","params":[]})),
        ],
        vec![
            v.clone(),
            line(json!({"id":7,"method":"server.ping","params":[]})),
        ],
        vec![v.clone(), line(json!({"jsonrpc":"2.0","id":7,"result":5}))],
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"}})),
        ],
        vec![
            v.clone(),
            "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"server.ping\"\n".into(),
        ],
        vec![
            v.clone(),
            b"\xff\xfe\n".iter().map(|&b| b as char).collect(),
        ],
        // Batches.
        vec![
            v.clone(),
            line(json!([
                {"jsonrpc":"2.0","id":1,"method":"server.ping"},
                {"jsonrpc":"2.0","id":2,"method":"server.donation_address"},
                {"jsonrpc":"2.0","id":3,"method":"blockchain.block.header","params":[1]},
                {"jsonrpc":"2.0","id":4,"method":"blockchain.block.header","params":[100000]},
                {"jsonrpc":"2.0","id":5,"method":"no.such"},
                {"jsonrpc":"2.0","method":"server.ping"},
                {"jsonrpc":"2.0","id":6,"method":"blockchain.block.header","params":[]},
                5,
                {"jsonrpc":"2.0","id":8},
            ])),
        ],
        vec![
            v.clone(),
            line(
                json!([{"jsonrpc":"2.0","method":"server.ping"},{"jsonrpc":"2.0","method":"server.ping"}]),
            ),
            ping(json!(9)),
        ],
        vec![line(json!([
            {"jsonrpc":"2.0","id":1,"method":"server.version","params":["x",["1.4","1.4.2"]]},
            {"jsonrpc":"2.0","id":2,"method":"server.ping"},
        ]))],
        vec![line(json!([
            {"jsonrpc":"2.0","id":2,"method":"server.ping"},
            {"jsonrpc":"2.0","id":1,"method":"server.version","params":["x",["1.4","1.4.2"]]},
        ]))],
        vec![
            v.clone(),
            line(json!([{"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.4"]}])),
        ],
        vec![line(
            json!([{"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.0"]}]),
        )],
        vec![line(
            json!([{"jsonrpc":"2.0","id":1,"method":"server.ping"}]),
        )],
        vec![line(json!([
            {"jsonrpc":"2.0","method":"server.ping"},
            {"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.4"]},
        ]))],
        vec![line(json!([
            {"jsonrpc":"2.0","id":1,"method":"server.ping"},
            {"jsonrpc":"2.0","method":"server.ping"},
        ]))],
        vec![line(json!([
            {"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.4"]},
            {"jsonrpc":"2.0","id":2,"method":"blockchain.block.header","params":[1]},
            {"jsonrpc":"2.0","id":3,"method":"server.version","params":["x","1.4"]},
        ]))],
        vec![line(json!([{"jsonrpc":"2.0","method":"server.ping"}]))],
        vec![line(json!([
            {"jsonrpc":"2.0","id":1,"method":"server.version","params":["x","1.0"]},
            {"jsonrpc":"2.0","id":2,"method":"server.ping"},
        ]))],
        // Dialects fixed by the first message.
        vec![
            line(json!({"id":1,"method":"server.version","params":["x",["1.4","1.4.2"]]})),
            line(json!({"id":2,"method":"server.ping","params":[]})),
            line(json!({"id":3,"method":"no.such","params":[]})),
            line(json!({"jsonrpc":"2.0","id":4,"method":"server.ping","params":[]})),
        ],
        vec![
            line(
                json!({"jsonrpc":"1.0","id":1,"method":"server.version","params":["x",["1.4","1.4.2"]]}),
            ),
            line(json!({"jsonrpc":"1.0","id":2,"method":"server.ping","params":[]})),
            line(json!({"jsonrpc":"1.0","id":3,"method":"no.such","params":[]})),
            line(json!({"jsonrpc":"2.0","id":4,"method":"server.ping","params":[]})),
            line(json!({"id":5,"method":"server.ping","params":[]})),
        ],
        vec![
            v.clone(),
            line(json!({"id":4,"method":"server.ping","params":[]})),
            line(json!({"jsonrpc":"1.0","id":5,"method":"server.ping","params":[]})),
        ],
    ]
}

fn wait_caught_up(port: u16, height: u64, sh: &str, want_mempool: &Value, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)).map(|_| Conn::session(port)) {
            let r = c.pipeline(&[
                call("blockchain.headers.subscribe", json!([])),
                call("blockchain.scripthash.get_mempool", json!([sh])),
            ]);
            let h = r[0].as_ref().and_then(|v| v["result"]["height"].as_u64());
            let m = r[1].as_ref().map(|v| v["result"].clone());
            if h == Some(height) && m.as_ref() == Some(want_mempool) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{who} did not catch up with the daemon"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn notes_of(c: &mut Conn, method: &str) -> Vec<Value> {
    c.notes
        .iter()
        .filter(|n| n["method"] == method)
        .map(|n| n["params"].clone())
        .collect()
}

fn sorted(mut v: Vec<Value>) -> Value {
    v.sort_by_key(|x| x.to_string());
    Value::Array(v)
}

#[test]
fn sextant_answers_like_electrumx() {
    let started = Instant::now();
    let venv = electrumx_venv();
    let d = Litecoind::start();
    let chain = build(&d);
    eprintln!(
        "chain built at height {} in {:?}",
        chain.tip,
        started.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let (ex_port, sx_port) = (free_port(), free_port());
    let (ex_ws, sx_ws) = (free_port(), free_port());
    let mut ex = start_electrumx(&venv, &d, dir.path(), ex_port, ex_ws);
    let mut sx = start_sextant(&d, dir.path(), sx_port, sx_ws);

    // Both caught up: the daemon's height, and the same mempool for the child's output.
    let probe = chain.mempool.b_output.scripthash();
    let want = json!([{"tx_hash": chain.mempool.b_txid, "height": -1, "fee": chain.mempool.b_fee}]);
    for (p, port) in [(&mut ex, ex_port), (&mut sx, sx_port)] {
        let deadline = Instant::now() + Duration::from_secs(300);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            p.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} never listened:\n{}",
                p.name,
                p.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        wait_caught_up(port, chain.tip, &probe, &want, p.name);
    }
    eprintln!("both servers caught up after {:?}", started.elapsed());

    let mut diffs = Diffs::default();
    let (mut ce, mut cs) = (Conn::session(ex_port), Conn::session(sx_port));

    // 1. Everything read-only, pipelined.
    let calls = read_only_calls(&d, &chain);
    compare_pipeline(&mut diffs, &mut ce, &mut cs, &calls);
    eprintln!(
        "{} read-only requests compared after {:?}",
        calls.len(),
        started.elapsed()
    );

    // 2. Raw exchanges on fresh connections (in parallel).
    compare_transcripts(&mut diffs, ex_port, sx_port, transcripts());
    eprintln!("transcripts compared after {:?}", started.elapsed());

    // 2b. The same session logic over WebSocket: one message per frame.
    let ws_lines = [
        version_line(1),
        line(json!({"jsonrpc":"2.0","id":2,"method":"blockchain.headers.subscribe","params":[]})),
        line(json!({"jsonrpc":"2.0","id":3,"method":"blockchain.block.header","params":[100000]})),
        line(
            json!({"jsonrpc":"2.0","id":4,"method":"blockchain.scripthash.get_history","params":[probe]}),
        ),
        line(json!([
            {"jsonrpc":"2.0","id":5,"method":"server.ping"},
            {"jsonrpc":"2.0","id":6,"method":"no.such"},
        ])),
        "not json\n".to_string(),
    ];
    let (a, b) = (
        ws_transcript(ex_ws, &ws_lines),
        ws_transcript(sx_ws, &ws_lines),
    );
    diffs.check("WebSocket transcript", &Value::Array(a), &Value::Array(b));

    // 3. Subscriptions, in order (their answers depend on what came before).
    let watched = d.new_script("watched", AddrType::Bech32);
    let subs = [
        watched.scripthash(),
        chain.mempool.a_output.scripthash(),
        chain.mempool.b_output.scripthash(),
        chain.scripts[0].clone(),
        chain.scripts[0].to_uppercase(),
        "ab".repeat(32),
    ];
    let (mut ne, mut ns) = (Conn::session(ex_port), Conn::session(sx_port));
    for c in [&mut ne, &mut ns] {
        c.notes.clear();
    }
    let mut seq: Vec<(String, Value)> = vec![call("blockchain.headers.subscribe", json!([]))];
    for sh in &subs {
        seq.push(call("blockchain.scripthash.subscribe", json!([sh])));
    }
    seq.push(call(
        "blockchain.scripthash.unsubscribe",
        json!(["ab".repeat(32)]),
    ));
    seq.push(call(
        "blockchain.scripthash.unsubscribe",
        json!(["ab".repeat(32)]),
    ));
    seq.push(call(
        "blockchain.scripthash.unsubscribe",
        json!(["cd".repeat(32)]),
    ));
    seq.push(call(
        "blockchain.scripthash.subscribe",
        json!(["ab".repeat(32)]),
    ));
    for s in &seq {
        compare_pipeline(&mut diffs, &mut ne, &mut ns, std::slice::from_ref(s));
    }

    // 4. A new mempool transaction to a subscribed script, broadcast through each server.
    let coin = d.call("listunspent", json!([1]));
    let locked = d.locked_outpoints();
    let u = coin
        .as_array()
        .unwrap()
        .iter()
        .find(|u| {
            amount_to_sats(&u["amount"]) > COIN
                && !locked.contains(&(
                    u["txid"].as_str().unwrap().to_string(),
                    u["vout"].as_u64().unwrap() as u32,
                ))
        })
        .expect("a spendable coin")
        .clone();
    let input = (
        u["txid"].as_str().unwrap().to_string(),
        u["vout"].as_u64().unwrap() as u32,
    );
    let value = amount_to_sats(&u["amount"]);
    let raw = d.sign_tx(
        &[input],
        &[(watched.address.clone().unwrap(), value - 30_000)],
        false,
    );
    let b = call("blockchain.transaction.broadcast", json!([raw]));
    compare_pipeline(&mut diffs, &mut ne, &mut ns, std::slice::from_ref(&b));
    compare_pipeline(&mut diffs, &mut ne, &mut ns, &[b]);
    let watched_sh = watched.scripthash();
    let has_watched = |n: &[Value]| {
        n.iter().any(|x| {
            x["method"] == "blockchain.scripthash.subscribe" && x["params"][0] == json!(watched_sh)
        })
    };
    let t = Instant::now();
    ns.notes_until(Duration::from_secs(10), Duration::ZERO, has_watched);
    eprintln!("Sextant announced the broadcast tx after {:?}", t.elapsed());
    ne.notes_until(Duration::from_secs(15), Duration::from_secs(2), has_watched);
    ns.notes_until(Duration::ZERO, Duration::from_millis(500), |_| true);
    for m in [
        "blockchain.headers.subscribe",
        "blockchain.scripthash.subscribe",
    ] {
        let (a, b) = (sorted(notes_of(&mut ne, m)), sorted(notes_of(&mut ns, m)));
        diffs.check(&format!("notifications {m} after a broadcast"), &a, &b);
    }
    for c in [&mut ne, &mut ns] {
        c.notes.clear();
    }

    // 5. A block confirms the mempool (the parent → child chain among it).
    d.mine(1);
    let new_tip = chain.tip + 1;
    let done = |n: &[Value]| {
        n.iter()
            .any(|x| x["method"] == "blockchain.headers.subscribe")
            && n.iter()
                .filter(|x| x["method"] == "blockchain.scripthash.subscribe")
                .count()
                >= 3
    };
    ne.notes_until(Duration::from_secs(20), Duration::from_secs(3), done);
    ns.notes_until(Duration::from_secs(20), Duration::from_secs(1), done);
    for m in [
        "blockchain.headers.subscribe",
        "blockchain.scripthash.subscribe",
    ] {
        let (a, b) = (sorted(notes_of(&mut ne, m)), sorted(notes_of(&mut ns, m)));
        diffs.check(&format!("notifications {m} after a block"), &a, &b);
    }
    let headers = notes_of(&mut ns, "blockchain.headers.subscribe");
    assert_eq!(headers.len(), 1, "one header notification: {headers:?}");
    assert_eq!(headers[0][0]["height"], new_tip);

    // 6. After the block, the read-only answers again (new tip, mempool empty again).
    wait_caught_up(ex_port, new_tip, &probe, &json!([]), "ElectrumX");
    wait_caught_up(sx_port, new_tip, &probe, &json!([]), "Sextant");
    let mut after = chain;
    after.tip = new_tip;
    let calls: Vec<(String, Value)> = read_only_calls(&d, &after)
        .into_iter()
        .filter(|(m, _)| m != "mempool.get_fee_histogram")
        .collect();
    compare_pipeline(&mut diffs, &mut ce, &mut cs, &calls);

    ex.assert_running();
    sx.assert_running();
    eprintln!(
        "{} answers compared in {:?}, {} differ",
        diffs.compared,
        started.elapsed(),
        diffs.count
    );
    if diffs.count > 0 {
        eprintln!("ElectrumX log tail:\n{}", ex.log_tail(20));
        eprintln!("Sextant log tail:\n{}", sx.log_tail(20));
    }
    assert_eq!(
        diffs.count, 0,
        "{} answers differ from ElectrumX's",
        diffs.count
    );
}
