//! End to end on a Komodo-format chain: the JSON-RPC stand-in (tests/common/standin.rs) plays
//! komodod serving KMD's real first blocks and blocks built over real Komodo/Zcash transactions
//! (tests/common/komodo.rs); the `sextant` binary (`COIN=Komodo`) and ElectrumX 2.0 (`COIN=Komodo`,
//! leveldb) index it and must give the same answers: histories, balances, UTXOs, full Equihash
//! headers with checkpoint proofs, header ranges up to and past `MAX_SEND`, merkle proofs,
//! `id_from_pos`, transactions (verbose JSON passed through), fees, daemon errors, batches and the
//! notifications of a new block; then again after the tip moves and after a reorg.
//!
//! Komodo DeFi Framework couplings checked on Sextant itself: `server.version [name, ["1.2",
//! "1.4"]]` answers exactly "1.4"; verbose `transaction.get` is the daemon's JSON byte for byte;
//! `estimatefee` with a mode still answers (komodod takes no mode); and while a block confirms the
//! mempool, no transaction ever counts as both confirmed and unconfirmed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::komodo::{TxVersion::*, *};
use common::*;
use serde_json::{json, Value};

/// ElectrumX's minimum; about 117 Equihash headers fit.
const MAX_SEND: usize = 350_000;

struct KmdChain {
    b: ChainBuilder,
    /// m1 spends a confirmed output (mempool height 0), m2 spends m1 (height -1).
    m1: StandinTx,
    m2: StandinTx,
    /// The txid whose verbose JSON is komodod's own (from the Komodo DeFi Framework's vectors).
    verbose_txid: String,
    verbose_json: Value,
}

fn coinbase_of(vector: &str) -> StandinTx {
    vector_txs(vector).remove(0)
}

fn mm2_vector(key: &str) -> (StandinTx, Value) {
    let v = load_vector("mm2/txTestVectors.json")[key].clone();
    let raw = hex::decode(v["hex"].as_str().unwrap()).unwrap();
    let tx = StandinTx {
        txid: dsha256_hex(&raw),
        raw,
    };
    assert_eq!(tx.txid, v["txid"].as_str().unwrap());
    (tx, v)
}

fn build() -> KmdChain {
    let mut b = ChainBuilder::new((0..=10).map(kmd_block).collect());
    let cb = |b: &ChainBuilder, h: usize| (b.blocks[h].txs[0].txid.clone(), 0u32);
    // 11: a dPoW-era KMD coinbase and a Sprout v2 JoinSplit transaction with a transparent output.
    let js = vector_txs("electrumx/zcash_mainnet_1000.json").remove(1);
    b.push(vec![
        coinbase_of("zebra-komodo/block-kmdmain-3-140-508.txt"),
        js.clone(),
    ]);
    // 12: a HUSH v4 coinbase; a v1 spend of KMD block 1's coinbase to P2PKH, P2SH, P2PK, OP_RETURN.
    let t1 = b.spend(
        V1,
        &[cb(&b, 1)],
        &[
            (400, p2pkh(0xa1)),
            (300, p2sh(0xb2)),
            (200, p2pk(0xc3)),
            (0, op_return(b"sextant komodo e2e")),
        ],
        12,
    );
    b.push(vec![
        coinbase_of("electrumx/hush_mainnet_160000.json"),
        t1.clone(),
    ]);
    // 13: a Sapling transaction with shielded spends and outputs only; a v4 spend of two outputs.
    let sapling = vector_txs("electrumx/zcash_testnet_304290.json").remove(1);
    let t2 = b.spend(
        V4,
        &[(t1.txid.clone(), 0), (js.txid.clone(), 0)],
        &[(500, p2pkh(0xa1)), (400, p2pkh(0xd4))],
        13,
    );
    b.push(vec![
        coinbase_of("electrumx/komodo_mainnet_491000.json"),
        sapling,
        t2.clone(),
    ]);
    // 14: notarization-shaped: 13 inputs, a P2PK output and an OP_RETURN.
    let mut ins: Vec<(String, u32)> = (2..=10).map(|h| cb(&b, h)).collect();
    ins.extend([
        (t1.txid.clone(), 1),
        (t1.txid.clone(), 2),
        cb(&b, 11),
        cb(&b, 12),
    ]);
    let notarization = b.spend(
        V4,
        &ins,
        &[
            (990, p2pk(0xee)),
            (0, op_return(b"KMD\0notarization-shaped")),
        ],
        14,
    );
    b.push(vec![
        coinbase_of("zebra-komodo/block-kmdmain-1-140-507.txt"),
        notarization,
    ]);
    // 15: a v4 JoinSplit transaction; a parent and its child in the same block.
    let js4 = vector_txs("electrumx/zcash_testnet_283046.json").remove(1);
    let t3 = b.spend(V1, &[(t2.txid.clone(), 1)], &[(990, p2pkh(0xe5))], 15);
    let t4 = b.spend(
        V4,
        &[(t3.txid.clone(), 0)],
        &[(600, p2pkh(0xa1)), (390, p2sh(0xf6))],
        16,
    );
    b.push(vec![
        coinbase_of("zebra-komodo/block-kmdtest-0-000-126.txt"),
        js4,
        t3,
        t4.clone(),
    ]);
    // Every other real coinbase, one block each.
    for v in [
        "zebra-komodo/block-kmdmain-1-140-500.txt",
        "zebra-komodo/block-kmdtest-0-000-127.txt",
        "zebra-komodo/block-rick-0-899-012.txt",
        "zebra-komodo/block-kmdmain-0-899-012.txt",
        "zebra-komodo/block-kmdmain-1-140-408.txt",
        "electrumx/zcash_mainnet_1000.json",
        "electrumx/zelcash_mainnet_100000.json",
        "electrumx/zcash_testnet_283046.json",
    ] {
        b.push(vec![coinbase_of(v)]);
    }
    let (mm2_cb, _) = mm2_vector("kmd_coinbase_transaction");
    let (verbose_tx, verbose_json) = mm2_vector("kmd_raw_confirmations");
    b.push(vec![mm2_cb]);
    b.push(vec![verbose_tx.clone()]);
    // Enough blocks that the whole header range is over MAX_SEND.
    while b.blocks.len() < 140 {
        let h = b.blocks.len();
        let version = if h.is_multiple_of(2) { V4 } else { V1 };
        let coinbase = b.coinbase(version, p2pkh(0x30 + (h % 3) as u8), h as u32);
        b.push(vec![coinbase]);
    }
    let m1 = b.spend(V4, &[(t4.txid.clone(), 0)], &[(980, p2pkh(0x71))], 100);
    let m2 = b.spend(V1, &[(m1.txid.clone(), 0)], &[(970, p2pk(0x72))], 101);
    KmdChain {
        b,
        m1,
        m2,
        verbose_txid: verbose_tx.txid,
        verbose_json,
    }
}

impl KmdChain {
    fn tip(&self) -> u64 {
        self.b.blocks.len() as u64 - 1
    }

    fn fee(&self, tx: &StandinTx, input: (&str, u32)) -> u64 {
        let out: u64 = transparent_outputs(&tx.raw).iter().map(|o| o.0).sum();
        self.b.value(input.0, input.1) - out
    }

    fn scripthashes(&self) -> Vec<String> {
        self.b
            .scripts
            .iter()
            .map(|s| electrum_scripthash(s))
            .collect()
    }

    fn txids(&self) -> Vec<(String, Option<usize>)> {
        let mut v: Vec<(String, Option<usize>)> = Vec::new();
        for (h, block) in self.b.blocks.iter().enumerate() {
            v.extend(block.txs.iter().map(|t| (t.txid.clone(), Some(h))));
        }
        v.push((self.m1.txid.clone(), None));
        v.push((self.m2.txid.clone(), None));
        v
    }
}

/// What the stand-in's chain is now: the builder's blocks replaced by the daemon's.
fn sync_builder(c: &mut KmdChain, d: &Standin) {
    let height = d.height();
    c.b.blocks.truncate(height + 1);
    assert_eq!(c.b.tip_hash(), d.block_hash(height));
}

fn env(d: &Standin, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("COIN", "Komodo".into()),
        ("NET", "mainnet".into()),
        ("DAEMON_URL", d.url()),
        ("SERVICES", format!("tcp://127.0.0.1:{port}")),
        ("DAEMON_POLL_INTERVAL_BLOCKS", "100".into()),
        ("DAEMON_POLL_INTERVAL_MEMPOOL", "100".into()),
        ("PEER_DISCOVERY", "off".into()),
        ("MAX_SEND", MAX_SEND.to_string()),
        ("LOG_LEVEL", "info".into()),
    ]
}

fn read_only_calls(c: &KmdChain) -> Vec<(String, Value)> {
    let tip = c.tip();
    let mut v = vec![
        call("server.features", json!([])),
        call("server.banner", json!([])),
        call("blockchain.headers.subscribe", json!([])),
        call("blockchain.relayfee", json!([])),
        call("mempool.get_fee_histogram", json!([])),
        call("blockchain.estimatefee", json!([1])),
        call("blockchain.estimatefee", json!([2])),
        call("blockchain.estimatefee", json!([6])),
        call("blockchain.estimatefee", json!([1008])),
        call("blockchain.estimatefee", json!(["x"])),
        call("blockchain.transaction.get", json!(["ab".repeat(32)])),
        call("blockchain.transaction.get", json!(["ab".repeat(32), true])),
        call("blockchain.transaction.broadcast", json!(["00"])),
        call("blockchain.transaction.broadcast", json!(["zz"])),
        call(
            "blockchain.scripthash.get_history",
            json!(["ab".repeat(32)]),
        ),
    ];
    for h in [0, 1, 10, 11, 12, 13, 14, 15, 25, tip - 1, tip, tip + 1] {
        v.push(call("blockchain.block.header", json!([h])));
        v.push(call("blockchain.block.header", json!([h, tip])));
        v.push(call("blockchain.block.header", json!([h, 20])));
    }
    for p in [
        json!([0, 1]),
        json!([0, 11]),
        json!([0, 11, tip]),
        json!([5, 20, tip]),
        json!([10, 6, 15]),
        json!([11, 5]),
        json!([tip - 2, 10]),
        json!([tip - 2, 10, tip]),
        json!([tip, 1]),
        json!([tip + 1, 1]),
        // Near and over MAX_SEND: 110 headers fit, 120 do not, 2016 (all) do not.
        json!([0, 110]),
        json!([20, 110, tip]),
        json!([0, 120]),
        json!([0, 2016]),
        json!([0, 2016, tip]),
    ] {
        v.push(call("blockchain.block.headers", p));
    }
    let mut scripts = c.scripthashes();
    scripts.push("cd".repeat(32));
    for m in SCRIPTHASH_READS {
        for sh in &scripts {
            v.push(call(m, json!([sh])));
        }
    }
    for (txid, height) in c.txids() {
        v.push(call("blockchain.transaction.get", json!([txid])));
        v.push(call("blockchain.transaction.get", json!([txid, true])));
        let h = height.unwrap_or(tip as usize);
        v.push(call("blockchain.transaction.get_merkle", json!([txid, h])));
        v.push(call(
            "blockchain.transaction.get_merkle",
            json!([txid, h.saturating_sub(1)]),
        ));
    }
    for h in [0, 1, 11, 13, 14, 15, tip] {
        let n = c.b.blocks[h as usize].txs.len();
        for pos in 0..=n {
            v.push(call("blockchain.transaction.id_from_pos", json!([h, pos])));
            v.push(call(
                "blockchain.transaction.id_from_pos",
                json!([h, pos, true]),
            ));
        }
    }
    v
}

/// Batches as the Komodo DeFi Framework sends them (one JSON array per line).
fn batch_transcripts(c: &KmdChain) -> Vec<Vec<String>> {
    let scripts = c.scripthashes();
    let batch = |method: &str, params: Vec<Value>| {
        let calls: Vec<Value> = params
            .into_iter()
            .enumerate()
            .map(|(i, p)| json!({"jsonrpc": "2.0", "id": i, "method": method, "params": p}))
            .collect();
        vec![version_line(1000), line(Value::Array(calls))]
    };
    let by_script = |m: &str| batch(m, scripts.iter().map(|s| json!([s])).collect());
    vec![
        by_script("blockchain.scripthash.listunspent"),
        by_script("blockchain.scripthash.get_history"),
        by_script("blockchain.scripthash.get_balance"),
        batch(
            "blockchain.transaction.get",
            c.txids()
                .iter()
                .skip(10)
                .map(|(t, _)| json!([t, true]))
                .collect(),
        ),
    ]
}

/// Connects once `p` listens, then waits until it serves `tip` and `probe`'s mempool `want`.
fn wait_synced(p: &mut Proc, port: u16, tip: u64, probe: &str, want: &Value) {
    p.wait_listening(port);
    wait_caught_up(port, tip, probe, want, p.name);
}

fn compare_all(diffs: &mut Diffs, servers: [(&mut Proc, u16); 2], c: &KmdChain) {
    let [(ex, ex_port), (sx, sx_port)] = servers;
    let (mut ce, mut cs) = (Conn::session(ex_port), Conn::session(sx_port));
    // ElectrumX extends its header merkle cache lazily, and cp_height requests pipelined right
    // after a start or a new tip can be answered from a half-extended cache (seen: a 5-hash
    // branch for a 140-header tree, one run in three). One proof asked alone first settles it.
    for conn in [&mut ce, &mut cs] {
        let warm = conn.call("blockchain.block.header", json!([0, c.tip()]));
        assert!(warm.get("result").is_some(), "{warm}");
    }
    compare_pipeline(diffs, &mut ce, &mut cs, &read_only_calls(c));
    ex.assert_running();
    sx.assert_running();
    if diffs.count > 0 {
        eprintln!("ElectrumX log tail:\n{}", ex.log_tail(30));
        eprintln!("Sextant log tail:\n{}", sx.log_tail(30));
    }
    compare_transcripts(diffs, ex_port, sx_port, batch_transcripts(c));
}

/// Sextant's answers are not only ElectrumX's but right: full Equihash headers, real histories.
fn spot_checks(port: u16, c: &KmdChain) {
    let mut s = Conn::session(port);
    let r = |s: &mut Conn, m: &str, p: Value| s.call(m, p)["result"].clone();
    let header = r(&mut s, "blockchain.block.header", json!([11]));
    let header = hex::decode(header.as_str().unwrap()).unwrap();
    assert_eq!(header.len(), 1487);
    assert_eq!(dsha256_hex(&header), c.b.blocks[11].hash);
    let range = r(&mut s, "blockchain.block.headers", json!([0, 110]));
    assert_eq!(range["count"], 110);
    let too_large = s.call("blockchain.block.headers", json!([0, 120]));
    assert_eq!(too_large["error"]["code"], -32600, "{too_large}");
    let a = electrum_scripthash(&p2pkh(0xa1));
    let hist = r(&mut s, "blockchain.scripthash.get_history", json!([a]));
    let heights: Vec<i64> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["height"].as_i64().unwrap())
        .collect();
    assert_eq!(
        heights,
        [12, 13, 15, 0],
        "P2PKH A: t1, t2, t4, and m1 in the mempool spends t4"
    );
    let notary = electrum_scripthash(&p2pk(0xee));
    let utxos = r(&mut s, "blockchain.scripthash.listunspent", json!([notary]));
    assert_eq!(
        utxos.as_array().unwrap().len(),
        1,
        "the 13-input transaction's P2PK output"
    );
    let kmd1 = electrum_scripthash(&transparent_outputs(&c.b.blocks[1].txs[0].raw)[0].1);
    let hist = r(&mut s, "blockchain.scripthash.get_history", json!([kmd1]));
    assert_eq!(
        hist.as_array().unwrap().len(),
        2,
        "KMD block 1's P2PK coinbase and its spend: {hist}"
    );
    let missing = s.call("blockchain.transaction.get", json!(["ab".repeat(32)]));
    assert_eq!(
        missing["error"]["message"],
        "daemon error: DaemonError({'code': -5, 'message': 'No information available about transaction'})"
    );
}

/// Polls Sextant while blocks arrive: the scripts' confirmed + unconfirmed balance must never
/// change and no history may list a transaction twice (confirmed and in the mempool).
fn watch_invariant(
    port: u16,
    scripts: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut c = Conn::session(port);
        let mut calls = Vec::new();
        for s in &scripts {
            calls.push(call("blockchain.scripthash.get_balance", json!([s])));
            calls.push(call("blockchain.scripthash.get_history", json!([s])));
        }
        let mut first: Option<Vec<i64>> = None;
        let mut polls = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = c.pipeline(&calls);
            let mut totals = Vec::new();
            for (i, s) in scripts.iter().enumerate() {
                let bal = &r[2 * i].as_ref().unwrap()["result"];
                totals.push(
                    bal["confirmed"].as_i64().unwrap() + bal["unconfirmed"].as_i64().unwrap(),
                );
                let hist = r[2 * i + 1].as_ref().unwrap()["result"]
                    .as_array()
                    .unwrap()
                    .clone();
                let mut ids: Vec<&str> = hist
                    .iter()
                    .map(|h| h["tx_hash"].as_str().unwrap())
                    .collect();
                ids.sort_unstable();
                let n = ids.len();
                ids.dedup();
                assert_eq!(
                    n,
                    ids.len(),
                    "a transaction both confirmed and unconfirmed for {s}: {hist:?}"
                );
            }
            match &first {
                None => first = Some(totals),
                Some(f) => assert_eq!(
                    f, &totals,
                    "balances moved while a block confirmed the mempool"
                ),
            }
            polls += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        polls
    })
}

#[test]
fn sextant_and_electrumx_agree_on_a_komodo_chain() {
    let started = Instant::now();
    let venv = electrumx_venv();
    let mut c = build();
    let d = Standin::start(StandinConfig::komodod("KMD"), c.b.blocks.clone());
    d.set_mempool(vec![c.m1.clone(), c.m2.clone()]);
    d.set_verbose(&c.verbose_txid, c.verbose_json.clone());
    let m2_fee = c.fee(&c.m2, (&c.m1.txid, 0));
    let probe = electrum_scripthash(&p2pk(0x72));
    let want = json!([{"tx_hash": c.m2.txid, "height": -1, "fee": m2_fee}]);

    let dir = tempfile::tempdir().unwrap();
    let (ex_port, sx_port) = (free_port(), free_port());
    let mut ex = start_electrumx(&venv, &env(&d, ex_port), dir.path());
    let mut sx = start_sextant(&env(&d, sx_port), dir.path());
    wait_synced(&mut sx, sx_port, c.tip(), &probe, &want);
    wait_synced(&mut ex, ex_port, c.tip(), &probe, &want);
    eprintln!(
        "both synced {} blocks after {:?}",
        c.tip() + 1,
        started.elapsed()
    );

    // The Komodo DeFi Framework's handshake and its verbose transactions.
    for port in [ex_port, sx_port] {
        let v = Conn::open(port).call("server.version", json!(["AtomicDEX", ["1.2", "1.4"]]));
        assert_eq!(v["result"][1], json!("1.4"), "{v}");
    }
    let mut s = Conn::session(sx_port);
    let v = s.call("blockchain.transaction.get", json!([c.verbose_txid, true]));
    assert_eq!(
        v["result"], c.verbose_json,
        "verbose JSON passes through unchanged"
    );
    let fee = s.call("blockchain.estimatefee", json!([6, "ECONOMICAL"]));
    assert_eq!(
        fee["result"],
        json!(0.00010234),
        "komodod's estimatefee takes no mode: {fee}"
    );
    let calls = d.calls();
    assert!(
        calls
            .iter()
            .all(|(m, p)| m != "estimatefee" || p.as_array().unwrap().len() == 1),
        "estimatefee sent with a mode"
    );

    spot_checks(sx_port, &c);

    let mut diffs = Diffs::default();
    compare_all(&mut diffs, [(&mut ex, ex_port), (&mut sx, sx_port)], &c);
    eprintln!(
        "{} answers compared after {:?}",
        diffs.compared,
        started.elapsed()
    );

    // A block confirms the mempool: notifications, and no double counting meanwhile.
    let watched = [p2pkh(0xa1), p2pkh(0x71), p2pk(0x72)].map(|s| electrum_scripthash(&s));
    let (mut ne, mut ns) = (Conn::session(ex_port), Conn::session(sx_port));
    let mut subs = vec![call("blockchain.headers.subscribe", json!([]))];
    subs.extend(
        watched
            .iter()
            .map(|s| call("blockchain.scripthash.subscribe", json!([s]))),
    );
    compare_pipeline(&mut diffs, &mut ne, &mut ns, &subs);
    for conn in [&mut ne, &mut ns] {
        conn.notes.clear();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_invariant(sx_port, watched.to_vec(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    // A busy daemon: the mempool snapshot after the block comes late, so readers between the
    // block and that snapshot are all but certain to be seen.
    d.set_delay("getrawmempool", Duration::from_millis(700));
    let coinbase = c.b.coinbase(V4, p2pkh(0x40), 1000);
    let block = c.b.push(vec![coinbase, c.m1.clone(), c.m2.clone()]);
    d.append(vec![block]);
    let done = |n: &[Value]| header_and_scripts(n, 3);
    ns.notes_until(Duration::from_secs(20), Duration::from_secs(1), done);
    ne.notes_until(Duration::from_secs(20), Duration::from_secs(2), done);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let polls = watcher.join().expect("the invariant held");
    d.set_delay("getrawmempool", Duration::ZERO);
    eprintln!("{polls} polls of Sextant while the block arrived");
    compare_notes(&mut diffs, &mut ne, &mut ns, "a block");
    wait_caught_up(sx_port, c.tip(), &probe, &json!([]), "Sextant");
    wait_caught_up(ex_port, c.tip(), &probe, &json!([]), "ElectrumX");
    compare_all(&mut diffs, [(&mut ex, ex_port), (&mut sx, sx_port)], &c);

    // A reorg: the last block is replaced by three; m1 confirms one block later and m2 goes back
    // to the mempool, now with a confirmed parent (height 0).
    let fork = c.tip() as usize;
    c.b.blocks.truncate(fork);
    let mut replacement = Vec::new();
    for (i, txs) in [vec![], vec![c.m1.clone()], vec![]].into_iter().enumerate() {
        let coinbase = c.b.coinbase(V1, p2pkh(0x50 + i as u8), 2000 + i as u32);
        let mut all = vec![coinbase];
        all.extend(txs);
        replacement.push(c.b.push(all));
    }
    d.reorg(fork, replacement);
    d.set_mempool(vec![c.m2.clone()]);
    sync_builder(&mut c, &d);
    let want = json!([{"tx_hash": c.m2.txid, "height": 0, "fee": m2_fee}]);
    wait_caught_up(sx_port, c.tip(), &probe, &want, "Sextant");
    wait_caught_up(ex_port, c.tip(), &probe, &want, "ElectrumX");
    compare_all(&mut diffs, [(&mut ex, ex_port), (&mut sx, sx_port)], &c);

    assert!(
        std::fs::read_to_string(&sx.log)
            .unwrap()
            .contains("chain reorganisation"),
        "Sextant saw the reorg"
    );
    diffs.finish(&mut ex, &mut sx, started);
}

/// Waits for a line containing `text` in `p`'s log.
fn wait_log(p: &mut Proc, text: &str) {
    wait_until(Duration::from_secs(30), text, || {
        p.assert_running();
        std::fs::read_to_string(&p.log)
            .unwrap()
            .contains(text)
            .then_some(())
    });
}

/// komodod's notarized height is followed (a log line per move), undo records at or below it
/// are dropped, and a reorg above it still rolls back cleanly.
#[test]
fn notarized_height_bounds_undo_data() {
    let mut c = build();
    let d = Standin::start(StandinConfig::komodod("KMD"), c.b.blocks.clone());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut sx = start_sextant(&env(&d, port), dir.path());
    let probe = electrum_scripthash(&p2pk(0x72));
    wait_synced(&mut sx, port, c.tip(), &probe, &json!([]));

    d.set_notarized(Some(100));
    wait_log(
        &mut sx,
        &format!("notarized height 100 ({})", d.block_hash(100)),
    );

    // A reorg of the 20 blocks above 119, all above the notarization.
    let fork = 120;
    c.b.blocks.truncate(fork);
    let replacement: Vec<StandinBlock> = (0..25)
        .map(|i| {
            let coinbase = c.b.coinbase(V4, p2pkh(0x60), 3000 + i);
            c.b.push(vec![coinbase])
        })
        .collect();
    d.reorg(fork, replacement);
    wait_caught_up(port, c.tip(), &probe, &json!([]), "Sextant");
    wait_log(&mut sx, "chain reorganisation: undoing 20 block(s)");

    d.set_notarized(Some(130));
    wait_log(
        &mut sx,
        &format!("notarized height 130 ({})", d.block_hash(130)),
    );
    // The reorged chain serves the new blocks' headers.
    let header = Conn::session(port).call("blockchain.block.header", json!([130]));
    let header = hex::decode(header["result"].as_str().unwrap()).unwrap();
    assert_eq!(dsha256_hex(&header), d.block_hash(130));

    // Undo records: none at or below the notarization, every one above it. The poll that logged
    // the move also pruned; stop Sextant cleanly and look.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &sx.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    sx.child.wait().unwrap();
    let coin = sextant::coin::CoinRegistry::embedded()
        .unwrap()
        .lookup("Komodo", "mainnet")
        .unwrap();
    let store = sextant::store::Store::open(
        &dir.path().join("sextant-db"),
        &coin,
        16,
        sextant::store::Mode::Follow,
    )
    .unwrap();
    for h in 0..=c.tip() as u32 {
        let undo = store.undo(sextant::types::Height(h)).unwrap();
        assert_eq!(undo.is_some(), h > 130, "undo record at height {h}");
    }
}

/// The README's worked example: HELLOWORLD's coin file in `COINS_DIR` is all a new smart chain
/// needs; a daemon running another chain (same genesis) is refused by name.
#[test]
fn a_smart_chain_is_one_coin_file() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\nname = \"HELLOWORLD\"")
        .expect("the README's example");
    let body = &readme[start + "```toml\n".len()..];
    let toml = &body[..body.find("```").unwrap()];
    let coins = tempfile::tempdir().unwrap();
    std::fs::write(coins.path().join("helloworld.toml"), toml).unwrap();

    let blocks: Vec<StandinBlock> = (0..=10).map(kmd_block).collect();
    let d = Standin::start(StandinConfig::komodod("HELLOWORLD"), blocks.clone());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut e = env(&d, port);
    e.retain(|(k, _)| *k != "COIN");
    e.push(("COIN", "HELLOWORLD".into()));
    e.push(("COINS_DIR", coins.path().display().to_string()));
    let mut sx = start_sextant(&e, dir.path());
    wait_synced(&mut sx, port, 10, &"ab".repeat(32), &json!([]));
    let v = Conn::open(port).call("server.version", json!(["AtomicDEX", ["1.2", "1.4"]]));
    assert_eq!(v["result"][1], "1.4");
    drop(sx);

    // The same file against komodod serving KMD: refused with the reason.
    let kmd = Standin::start(StandinConfig::komodod("KMD"), blocks);
    let mut e = env(&kmd, free_port());
    e.retain(|(k, _)| *k != "COIN");
    e.push(("COIN", "HELLOWORLD".into()));
    e.push(("COINS_DIR", coins.path().display().to_string()));
    let other = tempfile::tempdir().unwrap();
    let mut sx = start_sextant(&e, other.path());
    let status = sx.child.wait().unwrap();
    assert!(!status.success());
    let log = std::fs::read_to_string(&sx.log).unwrap();
    assert!(
        log.contains("runs chain \"KMD\", but COIN=HELLOWORLD expects \"HELLOWORLD\""),
        "{log}"
    );
}
