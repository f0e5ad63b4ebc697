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
//! Cost-based throttling is disabled in both (`COST_SOFT_LIMIT=0`, `COST_HARD_LIMIT=0`, set by
//! `start_electrumx` / `start_sextant`): it would slow and then disconnect this test's
//! deliberately error-heavy sessions (every error costs 100); tests/sessions_limits.rs covers it.
//!
//! ElectrumX is installed by `scripts/electrumx-venv.sh` (a cached virtualenv; the first run
//! needs PyPI). Every differing answer is printed with both replies; the test fails with the count.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Settings both servers get (each adds its own DB_DIRECTORY).
fn common_env(d: &Litecoind, port: u16, ws_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("COIN", "Litecoin".into()),
        ("NET", "regtest".into()),
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
    for m in SCRIPTHASH_READS {
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
    let mut ex = start_electrumx(&venv, &common_env(&d, ex_port, ex_ws), dir.path());
    let mut sx = start_sextant(&common_env(&d, sx_port, sx_ws), dir.path());

    // Both caught up: the daemon's height, and the same mempool for the child's output.
    let probe = chain.mempool.b_output.scripthash();
    let want = json!([{"tx_hash": chain.mempool.b_txid, "height": -1, "fee": chain.mempool.b_fee}]);
    for (p, port) in [(&mut ex, ex_port), (&mut sx, sx_port)] {
        p.wait_listening(port);
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
    compare_notes(&mut diffs, &mut ne, &mut ns, "a broadcast");
    for c in [&mut ne, &mut ns] {
        c.notes.clear();
    }

    // 5. A block confirms the mempool (the parent → child chain among it).
    d.mine(1);
    let new_tip = chain.tip + 1;
    let done = |n: &[Value]| header_and_scripts(n, 3);
    ne.notes_until(Duration::from_secs(20), Duration::from_secs(3), done);
    ns.notes_until(Duration::from_secs(20), Duration::from_secs(1), done);
    compare_notes(&mut diffs, &mut ne, &mut ns, "a block");
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

    diffs.finish(&mut ex, &mut sx, started);
}
