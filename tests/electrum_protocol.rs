//! The Electrum protocol server against a real `litecoind -regtest`: a client on a TCP socket
//! sees ElectrumX's answers (version rules, errors, headers, proofs, histories, notifications).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::RwLock;
use serde_json::{json, Value};
use sextant::coin::{Coin, CoinRegistry};
use sextant::config::DaemonUrl;
use sextant::daemon::Daemon;
use sextant::electrum::ServerSettings;
use sextant::index::Indexer;
use sextant::mempool::{self, Mempool, MempoolDelta};
use sextant::store::{Mode, Store};
use sextant::types::sha256d;
use tokio::sync::{broadcast, watch};

fn coin() -> Coin {
    CoinRegistry::embedded()
        .unwrap()
        .lookup("Litecoin", "regtest")
        .unwrap()
}

/// An empty index for `d`'s chain, its daemon client, and a runtime to drive them.
fn local_index(
    d: &Litecoind,
) -> (
    tempfile::TempDir,
    Arc<Store>,
    Daemon,
    tokio::runtime::Runtime,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &coin(), 64, Mode::Bulk).unwrap());
    let daemon = Daemon::new(
        vec![DaemonUrl::parse(&d.rpc_url(), 19443, false).unwrap()],
        None,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (dir, store, daemon, rt)
}

fn rev_hex(h: &str) -> [u8; 32] {
    let mut b: [u8; 32] = hex::decode(h).unwrap().try_into().unwrap();
    b.reverse();
    b
}

/// Folds a branch (display hex) from `leaf` at `index` up to the root (display hex).
fn fold(leaf: &str, branch: &Value, mut index: u64) -> String {
    let mut h = rev_hex(leaf);
    for b in branch.as_array().unwrap() {
        let s = rev_hex(b.as_str().unwrap());
        let mut buf = Vec::with_capacity(64);
        if index & 1 == 1 {
            buf.extend_from_slice(&s);
            buf.extend_from_slice(&h);
        } else {
            buf.extend_from_slice(&h);
            buf.extend_from_slice(&s);
        }
        h = sha256d(&buf);
        index >>= 1;
    }
    h.reverse();
    hex::encode(h)
}

#[test]
fn serves_electrum_like_electrumx() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let payee_sh = scripthash(&d.script_of(&payee));
    let confirmed_tx = d.send(&payee, 50_000_000);
    d.mine(1);
    let mempool_tx = d.send(&payee, 20_000_000);
    let tip = d.height();

    let (_dir, store, daemon, rt) = local_index(&d);
    let mut indexer = Indexer::new(store.clone(), daemon.clone(), coin(), 100, 64);
    let index_events = indexer.subscribe();
    let mempool = Arc::new(RwLock::new(Mempool::default()));
    let (mempool_tx_events, mempool_events) = broadcast::channel::<MempoolDelta>(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let sync = |indexer: &mut Indexer| {
        let mut rx = stop_rx.clone();
        rt.block_on(async {
            indexer.sync(&mut rx).await.unwrap();
            let delta = mempool::refresh(&mempool, &daemon, coin().chain, &store, true)
                .await
                .unwrap();
            let _ = mempool_tx_events.send(delta);
        });
    };
    sync(&mut indexer);

    let port = free_port();
    let env: std::collections::HashMap<&str, String> = [
        ("SERVICES", format!("tcp://127.0.0.1:{port}")),
        ("DONATION_ADDRESS", "donate-here".to_string()),
    ]
    .into_iter()
    .collect();
    struct E(std::collections::HashMap<&'static str, String>);
    impl sextant::config::Env for E {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }
    let settings = ServerSettings::from_env(&E(env)).unwrap();
    let server = rt.spawn(sextant::electrum::serve(
        settings,
        coin(),
        store.clone(),
        mempool.clone(),
        daemon.clone(),
        index_events,
        mempool_events,
        stop_rx.clone(),
    ));

    // server.version must come first.
    let mut c = Client::connect(port);
    c.send_line(r#"{"jsonrpc":"2.0","id":5,"method":"server.ping","params":[]}"#);
    assert_eq!(c.line().unwrap()["method"], "blockchain.relayfee");
    assert_eq!(c.line().unwrap()["method"], "blockchain.estimatefee");
    let e = c.line().unwrap();
    assert_eq!(
        e["error"],
        json!({"code": 1, "message": "use server.version to identify client"})
    );
    assert!(c.line().is_none(), "disconnected");

    // Unsupported versions are refused with a disconnect.
    let mut c = Client::connect(port);
    let (code, msg) = c.error("server.version", json!(["x", ["1.8", "2.0"]]));
    assert_eq!(
        (code, msg.as_str()),
        (1, "unsupported protocol version: ['1.8', '2.0']")
    );
    assert!(c.line().is_none());

    // The Komodo DeFi client's request negotiates exactly 1.4.
    let mut c = Client::connect(port);
    let v = c.result("server.version", json!(["AtomicDEX", ["1.2", "1.4"]]));
    assert_eq!(v[1], "1.4");
    assert!(v[0].as_str().unwrap().starts_with("Sextant "));
    assert_eq!(
        c.error("server.version", json!([])),
        (1, "server.version already sent".to_string())
    );
    assert_eq!(
        c.error("blockchain.scripthash.unsubscribe", json!([payee_sh]))
            .0,
        -32601,
        "unsubscribe is 1.4.2 only"
    );
    assert_eq!(
        c.error("blockchain.address.get_balance", json!([])),
        (
            -32601,
            "unknown method \"blockchain.address.get_balance\"".to_string()
        )
    );
    assert_eq!(
        c.result("server.donation_address", json!([])),
        "donate-here"
    );
    assert_eq!(c.result("server.ping", json!([])), Value::Null);
    assert_eq!(c.result("server.peers.subscribe", json!([])), json!([]));
    let f = c.result("server.features", json!([]));
    assert_eq!(f["genesis_hash"], coin().genesis_hash.to_string());
    assert_eq!(f["protocol_max"], "1.4.2");
    assert_eq!(c.result("blockchain.relayfee", json!([])), json!(0.00001));

    // Headers.
    let h = c.result("blockchain.headers.subscribe", json!([]));
    assert_eq!(h["height"], tip);
    assert_eq!(
        h["hex"],
        d.call("getblockheader", json!([d.best_hash(), false]))
    );
    assert_eq!(
        c.error("blockchain.block.header", json!([100000])),
        (1, "height 100,000 out of range".to_string())
    );
    let p = c.result("blockchain.block.header", json!([5, tip]));
    let hash5 = d.block_hash(5);
    assert_eq!(fold(&hash5, &p["branch"], 5), p["root"].as_str().unwrap());
    assert_eq!(
        c.error("blockchain.block.header", json!([9, 8])),
        (
            1,
            format!("require header height 9 <= cp_height 8 <= chain height {tip}")
        )
    );
    let hs = c.result("blockchain.block.headers", json!([0, 5000]));
    assert_eq!(hs["count"], tip + 1);
    assert_eq!(hs["max"], 2016);
    assert_eq!(hs["hex"].as_str().unwrap().len() as u64, (tip + 1) * 160);
    let past = c.result("blockchain.block.headers", json!([tip + 5, 3]));
    assert_eq!(past, json!({"hex": "", "count": 0, "max": 2016}));

    // Transactions and proofs.
    let block = d.block_json(&d.best_hash());
    let txids: Vec<&str> = block["tx"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().or_else(|| t["txid"].as_str()).unwrap())
        .collect();
    let pos = txids
        .iter()
        .position(|t| *t == confirmed_tx)
        .expect("in the block");
    let m = c.result(
        "blockchain.transaction.get_merkle",
        json!([confirmed_tx, tip]),
    );
    assert_eq!(m["pos"], pos);
    assert_eq!(m["block_height"], tip);
    assert_eq!(
        fold(&confirmed_tx, &m["merkle"], pos as u64),
        block["merkleroot"].as_str().unwrap()
    );
    let (code, msg) = c.error(
        "blockchain.transaction.get_merkle",
        json!([mempool_tx, tip]),
    );
    assert_eq!(
        (code, msg),
        (1, format!("tx {mempool_tx} not in block at height {tip}"))
    );
    let idp = c.result("blockchain.transaction.id_from_pos", json!([tip, 0, true]));
    assert_eq!(idp["tx_hash"], txids[0]);
    assert_eq!(
        c.error("blockchain.transaction.id_from_pos", json!([tip, 99])),
        (1, format!("no tx at position 99 in block at height {tip}"))
    );
    assert_eq!(
        c.result("blockchain.transaction.get", json!([confirmed_tx])),
        d.raw_tx_hex(&confirmed_tx)
    );
    let verbose = c.result("blockchain.transaction.get", json!([confirmed_tx, true]));
    assert_eq!(verbose["txid"], confirmed_tx);
    let (code, msg) = c.error("blockchain.transaction.get", json!(["00".repeat(32)]));
    assert_eq!(code, 2);
    assert!(
        msg.starts_with("daemon error: DaemonError({'code': -5, 'message': "),
        "{msg}"
    );
    assert_eq!(
        c.error("blockchain.transaction.get", json!([confirmed_tx, "yes"])),
        (1, "\"verbose\" must be a boolean".to_string())
    );
    let (code, msg) = c.error("blockchain.transaction.broadcast", json!(["00"]));
    assert_eq!(code, 1);
    assert!(
        msg.starts_with("the transaction was rejected by network rules.\n\n"),
        "{msg}"
    );
    assert!(msg.ends_with("\n[00]"), "{msg}");
    assert_eq!(
        c.error("blockchain.transaction.broadcast", json!(["0"])),
        (1, "0 should be a hex string".to_string())
    );

    // Script hashes.
    let hist = c.result("blockchain.scripthash.get_history", json!([payee_sh]));
    assert_eq!(hist[0], json!({"tx_hash": confirmed_tx, "height": tip}));
    assert_eq!(hist[1]["tx_hash"], mempool_tx);
    assert_eq!(hist[1]["height"], 0);
    assert!(hist[1]["fee"].as_u64().unwrap() > 0);
    let bal = c.result("blockchain.scripthash.get_balance", json!([payee_sh]));
    // The wallet may fund the second payment with the first (the payee is its own address).
    let spends_first = d.tx_json(&mempool_tx)["vin"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["txid"] == confirmed_tx);
    let unconfirmed = if spends_first {
        20_000_000 - 50_000_000
    } else {
        20_000_000
    };
    assert_eq!(
        bal,
        json!({"confirmed": 50_000_000, "unconfirmed": unconfirmed})
    );
    let utxos = c.result("blockchain.scripthash.listunspent", json!([payee_sh]));
    assert_eq!(
        utxos.as_array().unwrap().len(),
        if spends_first { 1 } else { 2 }
    );
    assert_eq!(utxos.as_array().unwrap().last().unwrap()["height"], 0);
    let preimage = format!("{confirmed_tx}:{tip}:{mempool_tx}:0:");
    let expected = hex::encode(bitcoin::hashes::sha256::Hash::hash(preimage.as_bytes()));
    assert_eq!(
        c.result("blockchain.scripthash.subscribe", json!([payee_sh])),
        expected
    );
    assert_eq!(
        c.error("blockchain.scripthash.get_balance", json!(["nope"])),
        (1, "nope is not a valid script hash".to_string())
    );
    assert_eq!(
        c.result("blockchain.scripthash.subscribe", json!(["00".repeat(32)])),
        Value::Null
    );
    assert!(c.result("mempool.get_fee_histogram", json!([])).is_array());

    // A batch is answered as an array.
    c.send_line(r#"[{"jsonrpc":"2.0","id":1,"method":"server.ping"},{"jsonrpc":"2.0","id":2,"method":"server.donation_address"}]"#);
    let b = c.line().unwrap();
    assert_eq!(b.as_array().unwrap().len(), 2);

    // Notifications: a new block confirms the mempool payment.
    d.mine(1);
    sync(&mut indexer);
    let n = c.notification("blockchain.headers.subscribe");
    assert_eq!(n[0]["height"], tip + 1);
    let n = c.notification("blockchain.scripthash.subscribe");
    assert_eq!(n[0], payee_sh);
    let preimage = format!("{confirmed_tx}:{tip}:{mempool_tx}:{}:", tip + 1);
    let expected = hex::encode(bitcoin::hashes::sha256::Hash::hash(preimage.as_bytes()));
    assert_eq!(n[1], expected);

    stop_tx.send(true).unwrap();
    rt.block_on(server).unwrap().unwrap();
}

use bitcoin::hashes::Hash as _;

/// After a successful broadcast the server kicks the mempool loop (`mempool_kick`), so the
/// wallet's own transaction shows up at once, not a poll interval later (here: 60 s).
#[test]
fn a_broadcast_refreshes_the_mempool_at_once() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let payee_sh = scripthash(&d.script_of(&payee));
    let utxo = d.call("listunspent", json!([1]))[0].clone();
    let input = (
        utxo["txid"].as_str().unwrap().to_string(),
        utxo["vout"].as_u64().unwrap() as u32,
    );
    let raw = d.sign_tx(
        &[input],
        &[(payee.clone(), amount_to_sats(&utxo["amount"]) - 50_000)],
        false,
    );

    let (_dir, store, daemon, rt) = local_index(&d);
    let mut indexer = Indexer::new(store.clone(), daemon.clone(), coin(), 100, 64);
    let index_events = indexer.subscribe();
    let (stop_tx, stop_rx) = watch::channel(false);
    rt.block_on(indexer.sync(&mut stop_rx.clone())).unwrap();
    let mempool = Arc::new(RwLock::new(Mempool::default()));
    let (mempool_tx, mempool_events) = broadcast::channel::<MempoolDelta>(16);
    let kick = Arc::new(tokio::sync::Notify::new());
    // The mempool loop as main.rs runs it, with a poll interval far longer than the test.
    let refreshes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rt.spawn({
        let (mempool, daemon, store, kick, refreshes) = (
            mempool.clone(),
            daemon.clone(),
            store.clone(),
            kick.clone(),
            refreshes.clone(),
        );
        async move {
            loop {
                let delta = mempool::refresh(&mempool, &daemon, coin().chain, &store, true)
                    .await
                    .unwrap();
                refreshes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = mempool_tx.send(delta);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = kick.notified() => {}
                }
            }
        }
    });
    wait_until(Duration::from_secs(20), "the first mempool refresh", || {
        (refreshes.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    });
    let port = free_port();
    struct E(String);
    impl sextant::config::Env for E {
        fn get(&self, name: &str) -> Option<String> {
            (name == "SERVICES").then(|| self.0.clone())
        }
    }
    let settings = ServerSettings::from_env(&E(format!("tcp://127.0.0.1:{port}"))).unwrap();
    let server = rt.spawn(sextant::electrum::serve_with_mempool_kick(
        settings,
        coin(),
        store.clone(),
        mempool.clone(),
        daemon.clone(),
        index_events,
        mempool_events,
        stop_rx.clone(),
        kick,
    ));

    let mut c = Client::connect(port);
    c.result("server.version", json!(["kick", "1.4"]));
    assert_eq!(
        c.result("blockchain.scripthash.subscribe", json!([payee_sh])),
        Value::Null
    );
    let started = std::time::Instant::now();
    let txid = c.result("blockchain.transaction.broadcast", json!([raw]));
    let n = c.notification("blockchain.scripthash.subscribe");
    assert_eq!(n[0], payee_sh);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "notified after {:?}",
        started.elapsed()
    );
    let hist = c.result("blockchain.scripthash.get_mempool", json!([payee_sh]));
    assert_eq!(hist[0]["tx_hash"], txid);

    stop_tx.send(true).unwrap();
    rt.block_on(server).unwrap().unwrap();
}
