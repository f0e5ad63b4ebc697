//! Comparing Sextant with ElectrumX: both as child processes, an Electrum client that pipelines
//! requests and keeps notifications, and JSON comparison with what is implementation-specific
//! masked. Shared by the differential tests (litecoind, the Komodo stand-in).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::{base_command, Proc};
use super::server::sextant_command;

// ---------------------------------------------------------------------------------------------
// Processes

/// ElectrumX with `env` (the settings both servers share) and its database in `dir`.
pub fn start_electrumx(venv: &Path, env: &[(&'static str, String)], dir: &Path) -> Proc {
    let db = dir.join("electrumx-db");
    std::fs::create_dir_all(&db).unwrap();
    let mut cmd = base_command(&venv.join("bin/electrumx_server"));
    cmd.envs(env.iter().cloned())
        .env("DB_DIRECTORY", &db)
        .env("DB_ENGINE", "leveldb")
        .env("ALLOW_ROOT", "1")
        .env("COST_SOFT_LIMIT", "0")
        .env("COST_HARD_LIMIT", "0");
    Proc::spawn("ElectrumX", cmd, dir.join("electrumx.log"))
}

/// The `sextant` binary with `env` and its database in `dir`.
pub fn start_sextant(env: &[(&'static str, String)], dir: &Path) -> Proc {
    let mut cmd = sextant_command();
    cmd.envs(env.iter().cloned())
        .env("DB_DIRECTORY", dir.join("sextant-db"))
        .env("COST_SOFT_LIMIT", "0")
        .env("COST_HARD_LIMIT", "0");
    Proc::spawn("Sextant", cmd, dir.join("sextant.log"))
}

pub fn electrumx_venv() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/electrumx-venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/electrumx-venv.sh");
    assert!(out.status.success(), "scripts/electrumx-venv.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

// ---------------------------------------------------------------------------------------------
// A client: newline-framed JSON over TCP, a reader thread, replies matched by id.

pub enum Msg {
    Json(Value),
    Eof,
}

pub struct Conn {
    pub w: TcpStream,
    pub rx: mpsc::Receiver<Msg>,
    pub next_id: u64,
    /// Notifications received while waiting for replies.
    pub notes: Vec<Value>,
    pub replies: HashMap<String, Value>,
    pub closed: bool,
}

pub const PROTOCOL: &str = "1.4.2";

impl Conn {
    pub fn open(port: u16) -> Conn {
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
    pub fn session(port: u16) -> Conn {
        Conn::session_at(port, &json!(["1.4", "1.4.2"]), PROTOCOL)
    }

    /// Connects asking for `protocol` (a version or a `[min, max]` pair); the server must
    /// choose `expect`.
    pub fn session_at(port: u16, protocol: &Value, expect: &str) -> Conn {
        let mut c = Conn::open(port);
        let v = c.call("server.version", json!(["differential", protocol]));
        assert_eq!(v["result"][1], expect, "{v}");
        c
    }

    pub fn send_raw(&mut self, text: &str) {
        let _ = self.w.write_all(text.as_bytes());
    }

    pub fn recv(&mut self, timeout: Duration) -> Option<Value> {
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

    pub fn stash(&mut self, v: Value) {
        match v.get("id") {
            Some(id) if v.get("method").is_none() => {
                self.replies.insert(id.to_string(), v);
            }
            _ => self.notes.push(v),
        }
    }

    /// Sends every request at once, then collects the replies (`None` for a missing one).
    pub fn pipeline(&mut self, calls: &[(String, Value)]) -> Vec<Option<Value>> {
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

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.pipeline(&[(method.to_string(), params)])
            .remove(0)
            .unwrap_or_else(|| panic!("no reply to {method}"))
    }

    /// Waits until `pred` holds for the notifications received, up to `timeout`; then keeps
    /// collecting for `settle` more.
    pub fn notes_until(
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
    pub fn drain(&mut self, quiet: Duration) -> Vec<Value> {
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
pub fn same(a: &Value, b: &Value) -> bool {
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
pub fn mask(method: &str, mut reply: Value) -> Value {
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
        // See tests/electrumx_differential.rs: no order among what arrived at once.
        "mempool.recent" => {
            if let Some(items) = result.as_array_mut() {
                items.sort_by_key(|i| i["txid"].to_string());
            }
        }
        _ => {}
    }
    reply
}

/// A batch reply in completion order: sorted by id for comparison.
pub fn sort_batch(v: Value) -> Value {
    match v {
        Value::Array(mut items) => {
            items.sort_by_key(|m| m.get("id").map(|i| i.to_string()).unwrap_or_default());
            Value::Array(items)
        }
        other => other,
    }
}

#[derive(Default)]
pub struct Diffs {
    pub count: usize,
    pub compared: usize,
}

impl Diffs {
    /// The end of a differential test: both servers still running, the count printed (with
    /// both logs' tails when something differed), and no difference allowed.
    pub fn finish(&self, ex: &mut Proc, sx: &mut Proc, started: Instant) {
        ex.assert_running();
        sx.assert_running();
        eprintln!(
            "{} answers compared in {:?}, {} differ",
            self.compared,
            started.elapsed(),
            self.count
        );
        if self.count > 0 {
            eprintln!("ElectrumX log tail:\n{}", ex.log_tail(20));
            eprintln!("Sextant log tail:\n{}", sx.log_tail(20));
        }
        assert_eq!(
            self.count, 0,
            "{} answers differ from ElectrumX's",
            self.count
        );
    }

    pub fn check(&mut self, what: &str, ex: &Value, sx: &Value) {
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

/// The read-only methods that take one script hash.
pub const SCRIPTHASH_READS: [&str; 4] = [
    "blockchain.scripthash.get_balance",
    "blockchain.scripthash.get_history",
    "blockchain.scripthash.get_mempool",
    "blockchain.scripthash.listunspent",
];

/// 1.7's read-only methods that take one scriptPubKey.
pub const SCRIPTPUBKEY_READS: [&str; 4] = [
    "blockchain.scriptpubkey.get_balance",
    "blockchain.scriptpubkey.get_history",
    "blockchain.scriptpubkey.get_mempool",
    "blockchain.scriptpubkey.listunspent",
];

/// The methods of script notifications: before 1.7 and from 1.7.
pub const SCRIPT_NOTES: [&str; 2] = [
    "blockchain.scripthash.subscribe",
    "blockchain.scriptpubkey.subscribe",
];

pub fn call(method: &str, params: Value) -> (String, Value) {
    (method.to_string(), params)
}

pub fn compare_pipeline(
    diffs: &mut Diffs,
    ex: &mut Conn,
    sx: &mut Conn,
    calls: &[(String, Value)],
) {
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
pub fn transcript(port: u16, lines: &[String]) -> Vec<Value> {
    let mut c = Conn::open(port);
    for l in lines {
        c.send_raw(l);
        std::thread::sleep(Duration::from_millis(150));
    }
    c.drain(Duration::from_millis(2500))
        .into_iter()
        .filter(|v| !is_noise(v))
        .map(|v| sort_batch(mask_versions(v)))
        .collect()
}

/// A `server.ping` notification from the server: at 1.7 ElectrumX sends them at random as
/// noise after a block or a mempool change (and Sextant as well), so transcripts leave them out.
pub fn is_noise(v: &Value) -> bool {
    v["method"] == "server.ping" && v.get("id").is_none()
}

/// Masks the software name in every `server.version` reply of a transcript (also in batches):
/// results of the form `[name, "1.4…"]`.
pub fn mask_versions(v: Value) -> Value {
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
pub fn ws_transcript(port: u16, lines: &[String]) -> Vec<Value> {
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
                    if is_noise(&v) {
                        continue;
                    }
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

pub fn compare_transcripts(diffs: &mut Diffs, ex_port: u16, sx_port: u16, cases: Vec<Vec<String>>) {
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

pub fn version_line(id: u64) -> String {
    version_line_at(id, &json!(["1.4", "1.4.2"]))
}

/// A `server.version` request asking for `protocol`.
pub fn version_line_at(id: u64, protocol: &Value) -> String {
    format!(
        "{}\n",
        json!({"jsonrpc":"2.0","id":id,"method":"server.version","params":["differential",protocol]})
    )
}

pub fn line(v: Value) -> String {
    format!("{v}\n")
}

pub fn wait_caught_up(port: u16, height: u64, sh: &str, want_mempool: &Value, who: &str) {
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

pub fn notes_of(c: &mut Conn, method: &str) -> Vec<Value> {
    c.notes
        .iter()
        .filter(|n| n["method"] == method)
        .map(|n| n["params"].clone())
        .collect()
}

/// Whether `notes` hold a header notification and at least `scripts` script notifications
/// (of either protocol's method).
pub fn header_and_scripts(notes: &[Value], scripts: usize) -> bool {
    let count = |m: &str| notes.iter().filter(|x| x["method"] == m).count();
    count("blockchain.headers.subscribe") > 0
        && SCRIPT_NOTES.iter().map(|m| count(m)).sum::<usize>() >= scripts
}

/// Compares the header and script notifications two sessions received, as sets.
pub fn compare_notes(diffs: &mut Diffs, ne: &mut Conn, ns: &mut Conn, after: &str) {
    for m in [
        "blockchain.headers.subscribe",
        "blockchain.scripthash.subscribe",
        "blockchain.scriptpubkey.subscribe",
        "blockchain.outpoint.subscribe",
    ] {
        let (a, b) = (sorted(notes_of(ne, m)), sorted(notes_of(ns, m)));
        diffs.check(&format!("notifications {m} after {after}"), &a, &b);
    }
}

pub fn sorted(mut v: Vec<Value>) -> Value {
    v.sort_by_key(|x| x.to_string());
    Value::Array(v)
}
