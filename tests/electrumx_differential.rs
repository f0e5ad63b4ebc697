//! Differential test: ElectrumX 2.0.0 and the `sextant` binary on the same `litecoind -regtest`
//! (a varied chain with MWEB blocks and a mempool holding an unconfirmed parent → child chain)
//! must give the same answers to the same requests, valid and invalid, including batches,
//! protocol errors and the notifications a new mempool transaction, a new block and a reorg
//! cause.
//!
//! Every comparison runs at each protocol version Sextant speaks, in sessions that ask the way
//! clients do: `"1.4"` (the Kevacoin wallet), `["1.4", "1.4.2"]`, `"1.5"` (a number ElectrumX
//! accepts and serves as 1.4.2), `["1.4", "1.6"]` (Electrum 4.7) and `["1.4", "1.7"]`; each
//! session's every method call, every method of every version included (those a version lacks
//! must be refused alike): at 1.7 the `blockchain.scriptpubkey.*` and `blockchain.outpoint.*`
//! methods, `blockchain.transaction.testmempoolaccept`, `mempool.recent` and `server.ping` with
//! `data` and `pong_len`, valid and invalid, and their notifications (scriptpubkey, outpoint,
//! headers) after a mempool spend, a block and a reorg. Version negotiation is compared on its
//! own (ranges such as `["1.4", "1.7"]`, `"1.6.1"`, `["1.7", "1.8"]` included).
//!
//! Two OP_RETURN outputs (unspendable, so never indexed; their status comes from the daemon)
//! are watched at 1.7 from the mempool through their block and the reorg: one goes back to the
//! mempool and is mined again by one more block (step 8), the other is mined again at the same
//! height. Left out on purpose: an OP_RETURN transaction that a reorg moves to another height
//! without ElectrumX ever seeing it in its mempool. Nothing touches such an outpoint there (its
//! block processor skips unspendable outputs), so ElectrumX neither notifies nor forgets its
//! cached status, and `get_status` keeps answering the old height until the cache entry is
//! evicted; Sextant also stays silent but answers the new height.
//!
//! Replies are compared as parsed JSON (ElectrumX pads its writes with spaces), numbers
//! numerically (Python prints floats its own way). What is inherently implementation-specific is
//! masked before comparing:
//!
//! * `server.version` result[0]: the software name and version.
//! * `server.banner`: the default banner names the software.
//! * `server.features`: `server_version` (software name) and `protocol_max` (both 1.7.0 now).
//! * `server.ping` notifications: at 1.7 ElectrumX sends them as noise, at random, after a
//!   block or a mempool change (Sextant too); notifications are compared per method and these
//!   are left out, of transcripts as well.
//! * `mempool.recent`: transactions that reach a server's mempool mirror in one refresh (at
//!   start, the whole mempool) have no order of arrival among them (ElectrumX takes them in
//!   Python's randomised set order), so the list is compared sorted by txid; after the
//!   broadcast of step 4 the newest (the first) is compared as it comes.
//!
//! Both servers reach litecoind through a [`DaemonShim`], a JSON-RPC proxy on a loopback port.
//! ElectrumX's fills in the three things Litecoin Core 0.21 lacks and ElectrumX 2.0 reads at
//! 1.6 and 1.7, from litecoind's other RPCs (tests/common/shim.rs says how):
//! `incrementalrelayfee` in `getmempoolinfo` (else `mempool.get_info` fails with an internal
//! error), `wtxid` in `testmempoolaccept` (else `blockchain.transaction.testmempoolaccept`
//! does), and the whole of `gettxspendingprevout` with its `blockhash` (Bitcoin Core's
//! `txospenderindex`; else every `blockchain.outpoint.*` call on a confirmed outpoint fails and
//! ElectrumX drops 1.7 outpoint subscribers at the next block). Sextant answers all three from
//! its own index and the daemon's other fields; its shim passes everything unchanged. Both
//! shims freeze while the test builds a reorg, so each server sees it as one change.
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

/// Settings both servers get (each adds its own DB_DIRECTORY), with the daemon at `daemon_url`.
fn common_env(daemon_url: String, port: u16, ws_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("COIN", "Litecoin".into()),
        ("NET", "regtest".into()),
        ("DAEMON_URL", daemon_url),
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
    /// The scriptPubKeys (hex) of `scripts`, for 1.7's `blockchain.scriptpubkey.*`.
    spks: Vec<String>,
    /// Outpoints for `blockchain.outpoint.*`: spent and unspent, confirmed and in the mempool,
    /// and one past each transaction's last output.
    outpoints: Vec<(String, u32)>,
    /// A signed transaction never broadcast (its coin locked in the wallet), which the
    /// daemon's `testmempoolaccept` accepts.
    accept_raw: String,
}

fn build(d: &Litecoind) -> Chain {
    let v1 = d.build_varied_chain();
    let mweb = d.activate_mweb();
    let v2 = d.build_varied_chain();
    let mempool = d.unconfirmed_chain();
    let fill_txid = fill_mempool(d);
    let tip = d.height();
    let mut scripts: Vec<String> = Vec::new();
    let mut spks: Vec<String> = Vec::new();
    let mut txids: Vec<String> = Vec::new();
    for v in [&v1, &v2] {
        scripts.extend(v.all_scripts().iter().map(|s| s.scripthash()));
        spks.extend(v.all_scripts().iter().map(|s| s.script_hex.clone()));
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
    for s in [&mweb.pegout, &mempool.a_output, &mempool.b_output] {
        spks.push(s.script_hex.clone());
    }
    spks.push(v1.op_return_script_hex.clone());
    // The genesis coinbase, which ElectrumX does not index.
    let genesis = d.call("getblock", json!([d.block_hash(0), 2]));
    let genesis_cb = &genesis["tx"][0];
    txids.push(genesis_cb["txid"].as_str().unwrap().to_string());
    for o in genesis_cb["vout"].as_array().unwrap() {
        scripts.push(scripthash(o["scriptPubKey"]["hex"].as_str().unwrap()));
        spks.push(o["scriptPubKey"]["hex"].as_str().unwrap().to_string());
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
    let mut outpoints = Vec::new();
    for t in txids
        .iter()
        .chain([&mempool.a_txid, &mempool.b_txid, &fill_txid])
    {
        let Ok(tx) = d.rpc("getrawtransaction", json!([t, true])) else {
            outpoints.push((t.clone(), 0));
            continue;
        };
        let n = tx["vout"].as_array().unwrap().len() as u32;
        for i in [0, 1, n - 1, n] {
            outpoints.push((t.clone(), i));
        }
        // Every output this transaction spends.
        for i in tx["vin"].as_array().unwrap() {
            if let (Some(p), Some(n)) = (i["txid"].as_str(), i["vout"].as_u64()) {
                outpoints.push((p.to_string(), n as u32));
            }
        }
    }
    outpoints.sort();
    outpoints.dedup();
    let accept_raw = {
        let u = spendable_coin(d);
        let raw = d.sign_tx(
            &[(u.0.clone(), u.1)],
            &[(d.new_address(AddrType::Bech32), u.2 - 20_000)],
            false,
        );
        d.call("lockunspent", json!([false, [{"txid": u.0, "vout": u.1}]]));
        raw
    };
    Chain {
        tip,
        scripts,
        txids,
        blocks,
        mempool,
        fill_txid,
        mweb,
        spks,
        outpoints,
        accept_raw,
    }
}

/// A confirmed wallet coin worth more than one coin and not locked: (txid, vout, value).
fn spendable_coin(d: &Litecoind) -> (String, u32, u64) {
    let coins = d.call("listunspent", json!([1]));
    let locked = d.locked_outpoints();
    coins
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["txid"].as_str().unwrap().to_string(),
                u["vout"].as_u64().unwrap() as u32,
                amount_to_sats(&u["amount"]),
            )
        })
        .find(|(t, n, v)| *v > COIN && !locked.contains(&(t.clone(), *n)))
        .expect("a spendable coin")
}

/// Every method of every version, valid and invalid, that reads state (safe to pipeline); each
/// session sends all of them, so what its version lacks is compared too.
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
        call("mempool.get_info", json!([1])),
        call("mempool.get_info", json!({"verbose": true})),
        call("blockchain.address.get_balance", json!(["x"])),
        call("blockchain.numblocks.subscribe", json!([])),
        call("blockchain.block.get_header", json!([1])),
        call("blockchain.block.get_chunk", json!([0])),
        call("blockchain.utxo.get_address", json!(["00", 0])),
        call("blockchain.scriptpubkey.get_balance", json!(["0014"])),
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
    // Packages: litecoind 0.21 has no submitpackage, so every well-formed one is rejected.
    for p in [
        json!([[]]),
        json!([["00"]]),
        json!([[confirmed_raw]]),
        json!([[confirmed_raw, "00"], true]),
        json!([["00"], false]),
        json!([["00"], 0]),
        json!([["zz"]]),
        json!([["0"]]),
        json!([["00", 5]]),
        json!([[null]]),
        json!([["00 11"]]),
        json!(["00"]),
        json!([5]),
        json!([null]),
        json!([{"a": 1}]),
        json!([]),
        json!([["00"], true, 3]),
        json!({"raw_txs": ["00"]}),
        json!({"raw_txs": ["00"], "verbose": true}),
        json!({"txs": ["00"]}),
    ] {
        v.push(call("blockchain.transaction.broadcast_package", p));
    }
    // Same script hash through the MWEB peg-out.
    v.push(call(
        "blockchain.scripthash.get_history",
        json!([c.mweb.pegout.scripthash()]),
    ));
    v.extend(calls_of_1_7(d, c));
    v
}

/// 1.7's methods, valid and invalid (read-only ones; subscriptions only with bad params).
fn calls_of_1_7(d: &Litecoind, c: &Chain) -> Vec<(String, Value)> {
    let mut v = Vec::new();
    // Script pubkeys: the known ones, an unknown one, upper case, the empty script.
    let mut spks = c.spks.clone();
    spks.extend(["51".into(), c.spks[0].to_uppercase(), String::new()]);
    for m in SCRIPTPUBKEY_READS {
        for spk in &spks {
            v.push(call(m, json!([spk])));
        }
        for bad in [
            json!("nope"),
            json!("5"),
            json!("zz"),
            json!(5),
            json!(null),
            json!(["51"]),
            json!(c.scripts[0]),
        ] {
            v.push(call(m, json!([bad])));
        }
        v.push(call(m, json!([])));
        v.push(call(m, json!(["51", 1])));
        v.push(call(m, json!({"spk": "51"})));
        v.push(call(m, json!({"scriptpubkey": "51"})));
    }
    for bad in [json!("nope"), json!(5), json!("5")] {
        v.push(call("blockchain.scriptpubkey.subscribe", json!([bad])));
        v.push(call("blockchain.scriptpubkey.unsubscribe", json!([bad])));
    }
    v.push(call("blockchain.scriptpubkey.subscribe", json!([])));
    v.push(call("blockchain.scriptpubkey.unsubscribe", json!([])));
    v.push(call("blockchain.scriptpubkey.unsubscribe", json!(["51"])));
    // Outpoints.
    for (t, n) in &c.outpoints {
        v.push(call("blockchain.outpoint.get_status", json!([t, n, "51"])));
    }
    let (t, n) = c.outpoints[0].clone();
    let unknown = "ab".repeat(32);
    for p in [
        json!([unknown, 0, "51"]),
        json!([t, n, ""]),
        json!([t, n, c.spks[0]]),
        json!([t, n]),
        json!([t]),
        json!([]),
        json!([t, -1, "51"]),
        json!([t, n.to_string(), "51"]),
        json!([t, 0.5, "51"]),
        json!([t, null, "51"]),
        json!([t, n, "zz"]),
        json!([t, n, "515"]),
        json!([t, n, 5]),
        json!([t, n, null]),
        json!(["bad", n, "51"]),
        json!([5, n, "51"]),
        json!([t.to_uppercase(), n, "51"]),
        json!([t, n, "51", 1]),
        json!({"tx_hash": t, "txout_idx": n, "spk_hint": "51"}),
        json!({"tx_hash": t, "txout_idx": n}),
    ] {
        v.push(call("blockchain.outpoint.get_status", p));
    }
    for p in [
        json!([t, -1, "51"]),
        json!(["bad", n, "51"]),
        json!([t, n, "zz"]),
        json!([t, n]),
        json!([]),
    ] {
        v.push(call("blockchain.outpoint.subscribe", p));
    }
    for p in [
        json!([t, n]),
        json!([unknown, 0]),
        json!([t, n, "51"]),
        json!([t]),
        json!([t, -1]),
        json!(["bad", n]),
        json!({"tx_hash": t, "txout_idx": n}),
    ] {
        v.push(call("blockchain.outpoint.unsubscribe", p));
    }
    // testmempoolaccept (litecoind 0.21 takes exactly one transaction).
    let confirmed_raw = d.raw_tx_hex(&c.txids[1]);
    for p in [
        json!([[c.accept_raw]]),
        json!([[confirmed_raw]]),
        json!([[d.raw_tx_hex(&c.mempool.b_txid)]]),
        json!([["00"]]),
        json!([[]]),
        json!([[c.accept_raw, confirmed_raw]]),
        json!([c.accept_raw]),
        json!([["zz"]]),
        json!([["0"]]),
        json!([[5]]),
        json!([5]),
        json!([]),
        json!([[c.accept_raw], 1]),
        json!({"raw_txs": [c.accept_raw]}),
    ] {
        v.push(call("blockchain.transaction.testmempoolaccept", p));
    }
    // mempool.recent and server.ping.
    v.push(call("mempool.recent", json!([])));
    v.push(call("mempool.recent", json!([1])));
    for p in [
        json!([0]),
        json!([3]),
        json!([3, "ab"]),
        json!([0, "abc"]),
        json!([0, "zz"]),
        json!([0, 5]),
        json!([-1]),
        json!(["2"]),
        json!([2.5]),
        json!([null]),
        json!([999_999]),
        json!([1_000_001]),
        json!({"pong_len": 2, "data": "ab"}),
        json!({"data": "ab"}),
        json!({"len": 2}),
    ] {
        v.push(call("server.ping", p));
    }
    v
}

/// Raw protocol exchanges, each on a fresh connection: those that open with negotiating
/// `protocol` (as [`version_line_at`] writes it) run in a session at that version; the others
/// are about negotiation itself.
fn transcripts(protocol: &Value) -> Vec<Vec<String>> {
    let v = version_line_at(1, protocol);
    let sv = |params: Value| {
        line(json!({"jsonrpc":"2.0","id":1,"method":"server.version","params":params}))
    };
    let then = |id: u64, method: &str, params: Value| {
        line(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
    };
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
        // Versions 1.5 and 1.6, single and in ranges; extra arguments are ignored.
        vec![sv(json!(["x", ["1.4", "1.6"]]))],
        vec![sv(json!(["x", "1.6"]))],
        vec![sv(json!(["x", "1.6.0"]))],
        vec![sv(json!(["x", "1.5"]))],
        vec![sv(json!(["x", "1.5.0"]))],
        vec![sv(json!(["x", ["1.5", "1.6"]]))],
        vec![sv(json!(["x", ["1.4", "1.5"]]))],
        vec![sv(json!(["x", ["1.6", "1.4"]]))],
        vec![sv(json!(["x", ["1.4", "1.6"], "extra", {"k": 1}, [2]]))],
        vec![sv(
            json!({"client_name": "x", "protocol_version": ["1.4", "1.6"], "future": [1]}),
        )],
        vec![sv(json!(["x", "1.6"])), sv(json!(["x", "1.6"]))],
        // 1.7 and the numbers around it.
        vec![sv(json!(["x", ["1.4", "1.7"]]))],
        vec![sv(json!(["x", "1.7"]))],
        vec![sv(json!(["x", "1.7.0"]))],
        vec![sv(json!(["x", "1.7.1"]))],
        vec![sv(json!(["x", "1.6.1"]))],
        vec![sv(json!(["x", ["1.6.1", "1.7"]]))],
        vec![sv(json!(["x", ["1.4", "1.6.1"]]))],
        vec![sv(json!(["x", ["1.7", "1.8"]]))],
        vec![sv(json!(["x", ["1.7", "1.4"]]))],
        vec![sv(json!(["x", "1.8"]))],
        vec![
            sv(json!(["x", ["1.4", "1.7"]])),
            then(
                2,
                "blockchain.scripthash.get_balance",
                json!(["00".repeat(32)]),
            ),
            then(3, "blockchain.scriptpubkey.get_balance", json!(["51"])),
            then(4, "server.ping", json!([2, "ab"])),
            then(5, "blockchain.relayfee", json!([])),
        ],
        vec![
            sv(json!(["electrum/4.7.0", ["1.4", "1.6"]])),
            then(2, "blockchain.block.headers", json!([0, 3])),
            then(3, "blockchain.relayfee", json!([])),
            then(4, "mempool.get_info", json!([])),
        ],
        // Wallets that keep getting 1.4: the Komodo DeFi Framework and KevaWallet.
        vec![
            sv(json!(["AtomicDEX", ["1.2", "1.4"]])),
            then(2, "blockchain.block.headers", json!([0, 3])),
            then(3, "blockchain.relayfee", json!([])),
            then(
                4,
                "blockchain.scripthash.unsubscribe",
                json!(["00".repeat(32)]),
            ),
        ],
        vec![
            sv(json!(["bluewallet", "1.4"])),
            then(2, "blockchain.block.headers", json!([0, 3])),
            then(3, "mempool.get_info", json!([])),
        ],
        // Before server.version at 1.6 too: refused.
        vec![
            then(5, "mempool.get_info", json!([])),
            sv(json!(["x", "1.6"])),
        ],
        // Ping notifications (1.7: handled, never answered), valid and not.
        vec![
            v.clone(),
            line(json!({"jsonrpc":"2.0","method":"server.ping","params":["ab"]})),
            line(json!({"jsonrpc":"2.0","method":"server.ping","params":["zz"]})),
            line(json!({"jsonrpc":"2.0","method":"server.ping","params":[]})),
            line(json!({"jsonrpc":"2.0","method":"server.ping","params":{"data":"ab"}})),
            line(json!({"jsonrpc":"2.0","method":"server.ping","params":[1, 2]})),
            line(json!({"jsonrpc":"2.0","method":"mempool.recent","params":[]})),
            ping(json!(2)),
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

/// A mempool transaction's OP_RETURN output, watched at 1.7 through its block and a reorg.
struct OpReturn {
    txid: String,
    vout: u32,
    spk: String,
}

impl OpReturn {
    fn send(d: &Litecoind, data: &[u8]) -> OpReturn {
        let payee = d.new_address(AddrType::Bech32);
        let (txid, vout) = d.send_op_return(data, &payee, 100_000);
        let spk = d.tx_json(&txid)["vout"][vout as usize]["scriptPubKey"]["hex"]
            .as_str()
            .unwrap()
            .to_string();
        OpReturn { txid, vout, spk }
    }

    fn get_status(&self) -> (String, Value) {
        call(
            "blockchain.outpoint.get_status",
            json!([self.txid, self.vout, self.spk]),
        )
    }

    /// Waits until a 1.7 session's server answers `want` for the output (its mempool caught up).
    fn wait_status(&self, c: &mut Conn, want: Value) {
        let (method, params) = self.get_status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = c.call(&method, params.clone());
            if r["result"] == want {
                return;
            }
            assert!(Instant::now() < deadline, "{} {params}: {r}", self.txid);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether a session at version `v` has heard of the output (only 1.7 subscribes to it).
    fn noted(&self, v: &str, notes: &[Value]) -> bool {
        v != "1.7"
            || notes.iter().any(|x| {
                x["method"] == "blockchain.outpoint.subscribe"
                    && x["params"][0] == json!(self.txid)
                    && x["params"][1] == json!(self.vout)
            })
    }
}

/// The versions compared: what the session asks for, and what both servers choose.
fn versions() -> Vec<(Value, &'static str)> {
    vec![
        (json!("1.4"), "1.4"),
        (json!(["1.4", "1.4.2"]), "1.4.2"),
        (json!("1.5"), "1.5"),
        (json!(["1.4", "1.6"]), "1.6"),
        (json!(["1.4", "1.7"]), "1.7"),
    ]
}

/// A session on each server at one version, as the same client.
struct Pair {
    version: &'static str,
    ex: Conn,
    sx: Conn,
}

impl Pair {
    fn open(ex_port: u16, sx_port: u16, protocol: &Value, version: &'static str) -> Pair {
        Pair {
            version,
            ex: Conn::session_at(ex_port, protocol, version),
            sx: Conn::session_at(sx_port, protocol, version),
        }
    }

    fn compare(&mut self, diffs: &mut Diffs, calls: &[(String, Value)]) {
        let a = self.ex.pipeline(calls);
        let b = self.sx.pipeline(calls);
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
            diffs.check(
                &format!("[{}] {method} {params}", self.version),
                &strip(ra),
                &strip(rb),
            );
        }
    }

    fn clear_notes(&mut self) {
        self.ex.notes.clear();
        self.sx.notes.clear();
    }

    /// Collects both sessions' notifications until `done` holds for each (with time to settle),
    /// then compares them.
    fn compare_notes(&mut self, diffs: &mut Diffs, after: &str, done: impl Fn(&[Value]) -> bool) {
        self.sx
            .notes_until(Duration::from_secs(20), Duration::from_millis(500), &done);
        self.ex
            .notes_until(Duration::from_secs(20), Duration::from_secs(2), &done);
        self.sx
            .notes_until(Duration::ZERO, Duration::from_millis(500), |_| true);
        assert!(
            done(&self.sx.notes),
            "Sextant's notifications after {after} at {}: {:?}",
            self.version,
            self.sx.notes
        );
        compare_notes(
            diffs,
            &mut self.ex,
            &mut self.sx,
            &format!("{after} at {}", self.version),
        );
        self.clear_notes();
    }
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
    let (ex_shim, sx_shim) = (DaemonShim::start(&d, true), DaemonShim::start(&d, false));
    let mut ex = start_electrumx(
        &venv,
        &common_env(ex_shim.url(), ex_port, ex_ws),
        dir.path(),
    );
    let mut sx = start_sextant(&common_env(sx_shim.url(), sx_port, sx_ws), dir.path());

    // Both caught up: the daemon's height, and the same mempool for the child's output.
    let probe = chain.mempool.b_output.scripthash();
    let want = json!([{"tx_hash": chain.mempool.b_txid, "height": -1, "fee": chain.mempool.b_fee}]);
    for (p, port) in [(&mut ex, ex_port), (&mut sx, sx_port)] {
        p.wait_listening(port);
        wait_caught_up(port, chain.tip, &probe, &want, p.name);
    }
    eprintln!("both servers caught up after {:?}", started.elapsed());

    let mut diffs = Diffs::default();

    // 1. Everything read-only, pipelined, at every version.
    let calls = read_only_calls(&d, &chain);
    let mut readers: Vec<Pair> = versions()
        .iter()
        .map(|(p, v)| Pair::open(ex_port, sx_port, p, v))
        .collect();
    for r in &mut readers {
        r.compare(&mut diffs, &calls);
        eprintln!(
            "{} read-only requests compared at {} after {:?}",
            calls.len(),
            r.version,
            started.elapsed()
        );
    }
    assert!(
        ex_shim.filled() > 0,
        "ElectrumX's getmempoolinfo was never completed: was mempool.get_info compared?"
    );

    // 2. Raw exchanges on fresh connections (in parallel): negotiation once, sessions at every
    // version.
    for (i, (protocol, _)) in versions().iter().enumerate() {
        let opening = version_line_at(1, protocol);
        let cases: Vec<Vec<String>> = transcripts(protocol)
            .into_iter()
            .filter(|t| i == 0 || t.first() == Some(&opening))
            .collect();
        compare_transcripts(&mut diffs, ex_port, sx_port, cases);
    }
    eprintln!("transcripts compared after {:?}", started.elapsed());

    // 2b. The same session logic over WebSocket: one message per frame.
    for (protocol, _) in versions() {
        let ws_lines = [
            version_line_at(1, &protocol),
            line(
                json!({"jsonrpc":"2.0","id":2,"method":"blockchain.headers.subscribe","params":[]}),
            ),
            line(
                json!({"jsonrpc":"2.0","id":3,"method":"blockchain.block.header","params":[100000]}),
            ),
            line(
                json!({"jsonrpc":"2.0","id":4,"method":"blockchain.scripthash.get_history","params":[probe]}),
            ),
            line(json!([
                {"jsonrpc":"2.0","id":5,"method":"server.ping"},
                {"jsonrpc":"2.0","id":6,"method":"no.such"},
                {"jsonrpc":"2.0","id":7,"method":"blockchain.block.headers","params":[1, 2]},
            ])),
            "not json\n".to_string(),
        ];
        let (a, b) = (
            ws_transcript(ex_ws, &ws_lines),
            ws_transcript(sx_ws, &ws_lines),
        );
        diffs.check(
            &format!("WebSocket transcript at {protocol}"),
            &Value::Array(a),
            &Value::Array(b),
        );
    }

    // 3. Subscriptions, in order (their answers depend on what came before), at every version.
    let watched = d.new_script("watched", AddrType::Bech32);
    let subs = [
        watched.scripthash(),
        chain.mempool.a_output.scripthash(),
        chain.mempool.b_output.scripthash(),
        chain.scripts[0].clone(),
        chain.scripts[0].to_uppercase(),
        "ab".repeat(32),
    ];
    let mut seq: Vec<(String, Value)> = vec![call("blockchain.headers.subscribe", json!([]))];
    for sh in &subs {
        seq.push(call("blockchain.scripthash.subscribe", json!([sh])));
    }
    for sh in ["ab".repeat(32), "ab".repeat(32), "cd".repeat(32)] {
        seq.push(call("blockchain.scripthash.unsubscribe", json!([sh])));
    }
    seq.push(call(
        "blockchain.scripthash.subscribe",
        json!(["ab".repeat(32)]),
    ));
    // Two unconfirmed OP_RETURN outputs (never indexed: their status comes from the daemon
    // once confirmed), both confirmed by step 5's block; in step 7's reorg `moved` goes back
    // to the mempool and step 8 mines it again, `kept` is mined again at the same height.
    let op_returns = [OpReturn::send(&d, b"moved"), OpReturn::send(&d, b"kept")];
    for port in [ex_port, sx_port] {
        let mut c = Conn::session_at(port, &json!(["1.4", "1.7"]), "1.7");
        for o in &op_returns {
            o.wait_status(&mut c, json!({"funder_height": 0}));
        }
    }
    // The same at 1.7, by scriptPubKey; and outpoints: the coin step 4 spends, the mempool
    // chain's parent output (spent by its child) and child output, confirmed ones, unknown ones,
    // the OP_RETURN outputs.
    let u = spendable_coin(&d);
    let u_spk = d.call("gettxout", json!([u.0, u.1]))["scriptPubKey"]["hex"]
        .as_str()
        .unwrap()
        .to_string();
    let m = &chain.mempool;
    for spk in [
        watched.script_hex.clone(),
        m.a_output.script_hex.clone(),
        m.b_output.script_hex.clone(),
        chain.spks[0].clone(),
        chain.spks[0].to_uppercase(),
        "51".into(),
    ] {
        seq.push(call("blockchain.scriptpubkey.subscribe", json!([spk])));
    }
    for spk in ["51", "51", "52"] {
        seq.push(call("blockchain.scriptpubkey.unsubscribe", json!([spk])));
    }
    seq.push(call("blockchain.scriptpubkey.subscribe", json!(["51"])));
    let unknown = "ab".repeat(32);
    let mut watched_outpoints = vec![
        (u.0.clone(), u.1, u_spk.clone()),
        (m.a_txid.clone(), m.a_vout, m.a_output.script_hex.clone()),
        (m.b_txid.clone(), m.b_vout, m.b_output.script_hex.clone()),
        (unknown.clone(), 0, "51".into()),
    ];
    for (t, n) in chain.outpoints.iter().take(6) {
        watched_outpoints.push((t.clone(), *n, "51".into()));
    }
    for o in &op_returns {
        watched_outpoints.push((o.txid.clone(), o.vout, o.spk.clone()));
    }
    for (t, n, spk) in &watched_outpoints {
        seq.push(call("blockchain.outpoint.subscribe", json!([t, n, spk])));
    }
    for p in [
        json!([unknown, 0]),
        json!([unknown, 0]),
        json!([unknown, 1]),
    ] {
        seq.push(call("blockchain.outpoint.unsubscribe", p));
    }
    seq.push(call(
        "blockchain.outpoint.subscribe",
        json!([unknown, 0, "51"]),
    ));
    let mut listeners: Vec<Pair> = versions()
        .iter()
        .map(|(p, v)| Pair::open(ex_port, sx_port, p, v))
        .collect();
    for l in &mut listeners {
        l.clear_notes();
        for s in &seq {
            l.compare(&mut diffs, std::slice::from_ref(s));
        }
    }

    // 4. A new mempool transaction to a subscribed script, spending a subscribed outpoint,
    // broadcast through each server (at 1.4.2; the other sessions only listen).
    let input = (u.0.clone(), u.1);
    let value = u.2;
    let raw = d.sign_tx(
        &[input],
        &[(watched.address.clone().unwrap(), value - 30_000)],
        false,
    );
    let spend_txid = d.call("decoderawtransaction", json!([raw]))["txid"]
        .as_str()
        .unwrap()
        .to_string();
    let b = call("blockchain.transaction.broadcast", json!([raw]));
    listeners[1].compare(&mut diffs, std::slice::from_ref(&b));
    listeners[1].compare(&mut diffs, &[b]);
    let watched_sh = watched.scripthash();
    let is_watched = |x: &Value| {
        SCRIPT_NOTES.contains(&x["method"].as_str().unwrap_or_default())
            && (x["params"][0] == json!(watched_sh) || x["params"][0] == json!(watched.script_hex))
    };
    // At 1.7 also the outpoint step 4 spends.
    let has_u = |v: &str, n: &[Value]| {
        v != "1.7"
            || n.iter().any(|x| {
                x["method"] == "blockchain.outpoint.subscribe" && x["params"][0] == json!(u.0)
            })
    };
    for l in &mut listeners {
        let v = l.version;
        l.compare_notes(&mut diffs, "a broadcast", |n| {
            n.iter().any(is_watched) && has_u(v, n)
        });
    }
    // The newest in the mempool, as it comes (see the module comment), and an outpoint that
    // exists only in the mempool.
    {
        let l = &mut listeners[4];
        let (a, b) = (
            l.ex.call("mempool.recent", json!([])),
            l.sx.call("mempool.recent", json!([])),
        );
        diffs.check(
            "[1.7] mempool.recent's newest after a broadcast",
            &a["result"][0],
            &b["result"][0],
        );
        assert_eq!(b["result"][0]["txid"], json!(spend_txid));
    }
    let fresh = call(
        "blockchain.outpoint.subscribe",
        json!([spend_txid, 0, watched.script_hex]),
    );
    for l in &mut listeners {
        l.compare(&mut diffs, std::slice::from_ref(&fresh));
    }

    // 5. A block confirms the mempool (the parent → child chain among it).
    let block = d.mine(1);
    let new_tip = chain.tip + 1;
    for l in &mut listeners {
        let v = l.version;
        l.compare_notes(&mut diffs, "a block", |n| {
            header_and_scripts(n, 3) && has_u(v, n) && op_returns.iter().all(|o| o.noted(v, n))
        });
    }
    let op_status: Vec<(String, Value)> = op_returns.iter().map(OpReturn::get_status).collect();
    listeners[4].compare(&mut diffs, &op_status);

    // 6. After the block, the read-only answers again (new tip, mempool empty again).
    wait_caught_up(ex_port, new_tip, &probe, &json!([]), "ElectrumX");
    wait_caught_up(sx_port, new_tip, &probe, &json!([]), "Sextant");
    let mut after = chain;
    after.tip = new_tip;
    let calls: Vec<(String, Value)> = read_only_calls(&d, &after)
        .into_iter()
        .filter(|(m, _)| m != "mempool.get_fee_histogram")
        .collect();
    for r in &mut readers {
        r.compare(&mut diffs, &calls);
    }

    // 7. A reorg, seen by both as one change (their daemon shims frozen meanwhile): the block
    // of step 5 is replaced by two; the broadcast spend confirms one block later, and the child
    // of the mempool chain goes back to the mempool (its parent confirmed: height 0).
    for shim in [&ex_shim, &sx_shim] {
        shim.freeze();
    }
    d.invalidate(&block[0]);
    d.hold_back(&spend_txid);
    d.hold_back(&after.mempool.b_txid);
    d.hold_back(&op_returns[0].txid);
    d.mine(1);
    d.release(&spend_txid);
    d.mine(1);
    assert_eq!(d.tx_confirmed_height(&spend_txid), Some(new_tip + 1));
    assert!(d.mempool_txids().contains(&after.mempool.b_txid));
    assert!(d.mempool_txids().contains(&op_returns[0].txid));
    assert_eq!(d.tx_confirmed_height(&op_returns[1].txid), Some(new_tip));
    for shim in [&ex_shim, &sx_shim] {
        shim.thaw();
    }
    let reorg_tip = new_tip + 1;
    let b_sh = after.mempool.b_output.scripthash();
    let b_spk = after.mempool.b_output.script_hex.clone();
    for l in &mut listeners {
        let v = l.version;
        l.compare_notes(&mut diffs, "a reorg", |n| {
            header_and_scripts(n, 1)
                && has_u(v, n)
                && n.iter().any(|x| {
                    SCRIPT_NOTES.contains(&x["method"].as_str().unwrap_or_default())
                        && (x["params"][0] == json!(b_sh) || x["params"][0] == json!(b_spk))
                })
                && op_returns[0].noted(v, n)
        });
    }
    listeners[4].compare(&mut diffs, &op_status);
    let want = json!([{"tx_hash": after.mempool.b_txid, "height": 0, "fee": after.mempool.b_fee}]);
    wait_caught_up(ex_port, reorg_tip, &probe, &want, "ElectrumX");
    wait_caught_up(sx_port, reorg_tip, &probe, &want, "Sextant");
    after.tip = reorg_tip;
    let calls: Vec<(String, Value)> = read_only_calls(&d, &after)
        .into_iter()
        .filter(|(m, _)| m != "mempool.get_fee_histogram")
        .collect();
    for r in &mut readers {
        r.compare(&mut diffs, &calls);
    }
    assert!(
        std::fs::read_to_string(&sx.log)
            .unwrap()
            .contains("chain reorganisation"),
        "Sextant saw the reorg"
    );

    // 8. A block mines again the OP_RETURN transaction the reorg sent back to the mempool.
    d.release(&op_returns[0].txid);
    d.mine(1);
    assert_eq!(
        d.tx_confirmed_height(&op_returns[0].txid),
        Some(reorg_tip + 1)
    );
    for l in &mut listeners {
        let v = l.version;
        l.compare_notes(&mut diffs, "a block after the reorg", |n| {
            header_and_scripts(n, 0) && op_returns[0].noted(v, n)
        });
    }
    listeners[4].compare(&mut diffs, &op_status);

    diffs.finish(&mut ex, &mut sx, started);
}
