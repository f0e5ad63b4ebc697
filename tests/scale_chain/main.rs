//! The scale benchmark's generator and stand-in daemon (bench/scale/), end to end and small
//! enough for CI: a ~3,000-transaction mainnet-shaped chain is generated, checked block by block
//! by an independent oracle (rust-bitcoin's decoder: structure, hashes, every input spending an
//! unspent output once), served by the stand-in, and synced by Sextant, whose answers for the
//! probe scripts and a sample of all others must equal the oracle's. Then the stand-in reveals
//! its held-back fresh block and Sextant must index it and notify a subscriber.
//!
//! Why an oracle and not litecoind: a generated chain has no valid signatures, proof of work or
//! value balance, so `litecoind` would refuse every block; index servers check none of these.

#[path = "../common/mod.rs"]
mod common;
mod oracle;
#[path = "../../bench/scale/mod.rs"]
mod scale;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Value};

use common::{free_port, start_sextant, Client};
use oracle::{scripthash, Oracle};
use scale::gen::{self, Params};
use scale::serve::Daemon;

const USER: &str = "scale";
const PASS: &str = "scalepass";

/// One HTTP request to the stand-in, `Connection: close`; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str, auth: bool) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to the stand-in");
    let auth = if auth {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
        )
    } else {
        String::new()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

fn rpc(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"method": method, "params": params, "id": 7}).to_string();
    let (status, reply) = http(addr, "POST", "/", &body, true);
    let v: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(status, 200, "{method}: {v}");
    assert_eq!(v["error"], Value::Null, "{method}: {v}");
    assert_eq!(v["id"], 7);
    v["result"].clone()
}

/// The stand-in answers as litecoind does: what servers call, in its shapes.
fn check_daemon(d: &Daemon, o: &Oracle, dir: &std::path::Path) {
    let addr = d.addr();
    let tip = o.height();
    assert_eq!(rpc(addr, "getblockcount", json!([])), json!(tip));
    // The long polls answer with the tip: at once when it is there, at the timeout when not.
    let tip_json = json!({"hash": o.hashes[tip as usize], "height": tip});
    assert_eq!(rpc(addr, "waitforblockheight", json!([tip, 0])), tip_json);
    let waited = std::time::Instant::now();
    assert_eq!(
        rpc(addr, "waitforblockheight", json!([tip + 1, 50])),
        tip_json
    );
    assert_eq!(rpc(addr, "waitfornewblock", json!([50])), tip_json);
    assert!(waited.elapsed() >= std::time::Duration::from_millis(100));
    assert_eq!(
        rpc(addr, "getbestblockhash", json!([])),
        json!(o.hashes[tip as usize])
    );
    let info = rpc(addr, "getblockchaininfo", json!([]));
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], json!(tip));
    // Batched getblockhash, past the tip an error in its slot.
    let batch: Vec<Value> = (0..=tip + 1)
        .map(|h| json!({"method": "getblockhash", "params": [h], "id": h}))
        .collect();
    let (status, reply) = http(addr, "POST", "/", &Value::Array(batch).to_string(), true);
    assert_eq!(status, 200);
    let replies: Vec<Value> = serde_json::from_slice(&reply).unwrap();
    for (h, r) in replies.iter().enumerate() {
        if h as u64 <= tip {
            assert_eq!(r["result"], json!(o.hashes[h]), "{r}");
        } else {
            assert_eq!(r["error"]["code"], -8, "{r}");
        }
    }
    let index = scale::layout::read_index(dir).unwrap();
    for h in 0..=tip {
        let hash = &o.hashes[h as usize];
        let (status, rest) = http(addr, "GET", &format!("/rest/block/{hash}.bin"), "", false);
        assert_eq!(status, 200);
        let e = index[h as usize];
        let file = std::fs::read(scale::layout::block_file(dir, e.file)).unwrap();
        assert_eq!(
            rest,
            &file[e.offset as usize..][..e.len as usize],
            "block {h}"
        );
        if h % 10 == 0 {
            let hex = rpc(addr, "getblock", json!([hash, 0]));
            assert_eq!(hex, json!(hex::encode(&rest)));
            let hex = rpc(addr, "getblock", json!([hash, false]));
            assert_eq!(hex, json!(hex::encode(&rest)));
            let header = rpc(addr, "getblockheader", json!([hash, false]));
            assert_eq!(header, json!(hex::encode(&o.headers[h as usize])));
            let v = rpc(addr, "getblock", json!([hash, 1]));
            assert_eq!(v["height"], json!(h));
            assert_eq!(v["tx"].as_array().unwrap().len(), e.n_tx as usize);
        }
    }
    // Held-back blocks are unknown until revealed.
    let hidden = gen::hash_hex(&index[tip as usize + 1].hash);
    let (status, _) = http(addr, "GET", &format!("/rest/block/{hidden}.bin"), "", false);
    assert_eq!(status, 404);
    let (status, _) = http(addr, "GET", "/rest/chaininfo.json", "", false);
    assert_eq!(status, 200);
    // Transactions by txid, raw and verbose; the genesis coinbase is not retrievable.
    let t = &o.txids[o.txids.len() / 2];
    let raw = rpc(addr, "getrawtransaction", json!([t, 0]));
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(&hex::decode(raw.as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(tx.compute_txid().to_string(), *t);
    let v = rpc(addr, "getrawtransaction", json!([t, true]));
    assert_eq!(v["txid"], json!(t));
    assert_eq!(v["hex"], raw);
    let body = json!({"method": "getrawtransaction", "params": [o.txids[0]], "id": 1});
    let (status, reply) = http(addr, "POST", "/", &body.to_string(), true);
    assert_eq!(status, 500);
    assert!(String::from_utf8_lossy(&reply).contains("-5"));
    assert_eq!(rpc(addr, "getrawmempool", json!([])), json!([]));
    assert_eq!(
        rpc(addr, "getrawmempool", json!([false, true]))["txids"],
        json!([])
    );
    // Unknown methods are 404 with -32601; calls without credentials 401.
    let (status, _) = http(addr, "POST", "/", r#"{"method":"getinfo","id":1}"#, true);
    assert_eq!(status, 404);
    let (status, _) = http(
        addr,
        "POST",
        "/",
        r#"{"method":"getblockcount","id":1}"#,
        false,
    );
    assert_eq!(status, 401);
}

/// Sextant's history, balance and UTXOs for `script` equal the oracle's.
fn check_script(c: &mut Client, o: &Oracle, script: &[u8]) {
    let sh = scripthash(script);
    let what = hex::encode(script);
    let h = c.result("blockchain.scripthash.get_history", json!([sh]));
    assert_eq!(h, o.history(script), "history of {what}");
    let b = c.result("blockchain.scripthash.get_balance", json!([sh]));
    assert_eq!(b, o.balance(script), "balance of {what}");
    let u = c.result("blockchain.scripthash.listunspent", json!([sh]));
    assert_eq!(u, o.listunspent(script), "listunspent of {what}");
}

fn scripts_of(v: &Value) -> Vec<Vec<u8>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| hex::decode(p["script"].as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn generated_chain_indexes_to_the_oracles_answers() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chain");
    let p = Params {
        txs: 3_000,
        blocks: 30,
        seed: 16,
        fresh_blocks: 1,
        fresh_txs: 300,
    };
    let summary = gen::build(&p, &dir).expect("generate the chain");
    let tip = summary["height"].as_u64().unwrap();
    assert!(tip >= 30, "{summary}");
    assert_eq!(summary["txs"], json!(p.txs + 1));

    let mut o = Oracle::load(&dir, tip).expect("the chain checks out");
    assert_eq!(o.txids.len() as u64, p.txs + 1);
    assert_eq!(summary["tip_hash"], json!(o.hashes[tip as usize]));
    assert_eq!(summary["utxos"], json!(o.utxo_count()));
    // The generator's own records of its probe scripts agree with the decoded chain.
    let probes = scripts_of(&summary["probes"]);
    for (s, rec) in probes.iter().zip(summary["probes"].as_array().unwrap()) {
        assert_eq!(rec["history"], json!(o.history_len(s)), "{rec}");
        assert_eq!(rec["utxos"], json!(o.utxo_len(s)), "{rec}");
        assert_eq!(rec["scripthash"], json!(scripthash(s)));
    }
    assert!(
        o.history_len(probes.last().unwrap()) > 100,
        "a long history: {}",
        summary["probes"]
    );
    let generated = started.elapsed();

    let d = Daemon::start(&dir, "127.0.0.1:0".parse().unwrap(), USER, PASS).unwrap();
    check_daemon(&d, &o, &dir);

    let port = free_port();
    let env = vec![
        ("COIN", "Litecoin".to_string()),
        ("NET", "regtest".into()),
        ("DAEMON_URL", d.url()),
        ("SERVICES", format!("tcp://127.0.0.1:{port}")),
        ("DAEMON_POLL_INTERVAL_BLOCKS", "100".into()),
        ("DAEMON_POLL_INTERVAL_MEMPOOL", "100".into()),
        ("PEER_DISCOVERY", "off".into()),
        ("LOG_LEVEL", "info".into()),
    ];
    let work = tmp.path().join("sextant");
    std::fs::create_dir_all(&work).unwrap();
    let mut sx = start_sextant(&env, &work);
    // Sextant listens once it has caught up with the daemon.
    sx.wait_listening(port);
    let synced = started.elapsed();
    let mut c = Client::connect(port);
    // The client writes a request and its newline separately: without this, Nagle holds the
    // newline for the server's delayed ACK, 40 ms a call.
    c.w.set_nodelay(true).unwrap();
    c.result("server.version", json!(["scale_chain", "1.4"]));
    let header = c.result("blockchain.headers.subscribe", json!([]));
    assert_eq!(header["height"], json!(tip));
    assert_eq!(header["hex"], json!(hex::encode(&o.headers[tip as usize])));

    // Every script the chain touches (a few thousand: well under a second).
    let all = o.scripts();
    for s in &all {
        check_script(&mut c, &o, s);
    }
    // A script nobody paid.
    check_script(&mut c, &o, &[0x51]);

    // The fresh block: a subscriber to a script it pays is notified with the oracle's status.
    let paid: Vec<Vec<u8>> = summary["fresh"][0]["paid_scripts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| hex::decode(s.as_str().unwrap()).unwrap())
        .collect();
    let watched = paid
        .iter()
        .find(|s| o.history_len(s) > 0)
        .unwrap_or(&paid[0])
        .clone();
    let status = c.result(
        "blockchain.scripthash.subscribe",
        json!([scripthash(&watched)]),
    );
    assert_eq!(status, o.status(&watched));
    let revealed = rpc(d.addr(), "generatetoaddress", json!([1, "rltc1qanything"]));
    assert_eq!(revealed, json!([summary["fresh"][0]["hash"]]));
    o.extend(&dir, tip + 1).expect("the fresh block checks out");
    let note = c.notification("blockchain.scripthash.subscribe");
    assert_eq!(note, json!([scripthash(&watched), o.status(&watched)]));
    // Every script again, the fresh block's payees and the owners of the coins it spent
    // among them.
    let all = o.scripts();
    for s in &all {
        check_script(&mut c, &o, s);
    }
    eprintln!(
        "scale_chain: generated and checked in {:.2} s, Sextant synced at {:.2} s, done at {:.2} s \
         ({} scripts compared)",
        generated.as_secs_f64(),
        synced.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        all.len()
    );
    drop(sx);
}
