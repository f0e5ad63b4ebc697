//! Self-test of the integration harness: the oracle must agree with the daemon's own views
//! (`scantxoutset`, `getrawtransaction`, wallet RPCs) on a varied chain with MWEB blocks, across a
//! mempool chain, a reorg and daemon restarts. If the oracle is wrong, these tests fail.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

/// Compare the oracle's UTXO set with `scantxoutset` over every script the oracle knows, and its
/// size with the daemon's whole UTXO set. Returns the number of UTXOs compared.
fn check_utxo_set(d: &Litecoind, oracle: &Oracle) -> usize {
    let shs = oracle.scripthashes();
    let descs: Vec<Value> = shs
        .iter()
        .map(|sh| json!({ "desc": format!("raw({})", oracle.script_hex(sh).unwrap()) }))
        .collect();
    let scan = d.call("scantxoutset", json!(["start", descs]));
    assert!(
        scan["success"].as_bool().unwrap(),
        "scantxoutset failed: {scan}"
    );
    assert_eq!(
        scan["bestblock"].as_str().unwrap(),
        oracle.tip,
        "scan at another tip"
    );
    assert_eq!(scan["height"].as_u64().unwrap(), oracle.height);

    let mut daemon: BTreeSet<(String, Utxo)> = BTreeSet::new();
    for u in scan["unspents"].as_array().unwrap() {
        let sh = scripthash(u["scriptPubKey"].as_str().unwrap());
        daemon.insert((
            sh,
            Utxo {
                txid: u["txid"].as_str().unwrap().to_string(),
                vout: u["vout"].as_u64().unwrap() as u32,
                height: u["height"].as_u64().unwrap(),
                value: amount_to_sats(&u["amount"]),
            },
        ));
    }
    let mut ours: BTreeSet<(String, Utxo)> = BTreeSet::new();
    let mut total = 0u64;
    for sh in &shs {
        for u in oracle.utxos(sh) {
            total += u.value;
            ours.insert((sh.clone(), u));
        }
    }
    let missing: Vec<_> = daemon.difference(&ours).take(5).collect();
    let extra: Vec<_> = ours.difference(&daemon).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "UTXO mismatch: daemon-only {missing:?}, oracle-only {extra:?}"
    );
    assert_eq!(amount_to_sats(&scan["total_amount"]), total, "total amount");
    // The daemon's whole UTXO set has exactly the outputs the oracle indexes (OP_RETURN outputs
    // and the genesis coinbase are not in it either), so nothing was missed.
    assert_eq!(
        scan["txouts"].as_u64().unwrap() as usize,
        ours.len(),
        "size of the daemon's UTXO set vs the oracle's"
    );
    // Per-script balances.
    let mut by_script: HashMap<&str, u64> = HashMap::new();
    for (sh, u) in &daemon {
        *by_script.entry(sh.as_str()).or_default() += u.value;
    }
    for sh in &shs {
        assert_eq!(
            oracle.balance(sh),
            by_script.get(sh.as_str()).copied().unwrap_or(0),
            "balance of {sh}"
        );
    }
    ours.len()
}

/// Check every history entry of `scripts` through `getrawtransaction` (a path independent of the
/// block walk): the tx touches the script (pays it or spends an output paying it), its height
/// matches its block, the order is chain order, and every wallet-known receipt is present.
fn check_histories(d: &Litecoind, oracle: &Oracle, scripts: &[UsedScript]) {
    let mut txids: BTreeSet<String> = BTreeSet::new();
    for s in scripts {
        for h in oracle.history(&s.scripthash()) {
            txids.insert(h.txid);
        }
    }
    let txids: Vec<String> = txids.into_iter().collect();
    let fetch = |ids: &[String]| -> HashMap<String, Value> {
        let calls: Vec<(&str, Value)> = ids
            .iter()
            .map(|t| ("getrawtransaction", json!([t, true])))
            .collect();
        let mut m = HashMap::new();
        for (t, r) in ids.iter().zip(d.rpc_batch(&calls).unwrap()) {
            m.insert(t.clone(), r.unwrap());
        }
        m
    };
    let txs = fetch(&txids);
    let prev_ids: Vec<String> = txs
        .values()
        .flat_map(|tx| tx["vin"].as_array().unwrap().iter())
        .filter_map(|i| i.get("txid").and_then(Value::as_str).map(str::to_string))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let prevs = fetch(&prev_ids);
    let mut block_heights: HashMap<String, u64> = HashMap::new();
    for tx in txs.values() {
        let bh = tx["blockhash"]
            .as_str()
            .expect("history tx is confirmed")
            .to_string();
        block_heights.entry(bh).or_insert_with_key(|bh| {
            d.call("getblockheader", json!([bh]))["height"]
                .as_u64()
                .unwrap()
        });
    }
    let pays = |tx: &Value, script: &str| {
        tx["vout"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["scriptPubKey"]["hex"].as_str() == Some(script))
    };
    for s in scripts {
        let sh = s.scripthash();
        let hist = oracle.history(&sh);
        assert!(
            !hist.is_empty(),
            "{} ({}) has no history",
            s.label,
            s.script_hex
        );
        let mut seen = HashSet::new();
        let mut last = (0u64, 0u32);
        for h in &hist {
            assert!(
                seen.insert(h.txid.clone()),
                "{}: {} listed twice",
                s.label,
                h.txid
            );
            let tx = &txs[&h.txid];
            let height = block_heights[tx["blockhash"].as_str().unwrap()];
            assert_eq!(h.height, height as i64, "{}: height of {}", s.label, h.txid);
            let spends = tx["vin"].as_array().unwrap().iter().any(|i| {
                i.get("txid").and_then(Value::as_str).is_some_and(|pt| {
                    let n = i["vout"].as_u64().unwrap();
                    prevs[pt]["vout"].as_array().unwrap().iter().any(|o| {
                        o["n"].as_u64() == Some(n)
                            && o["scriptPubKey"]["hex"].as_str() == Some(&s.script_hex)
                    })
                })
            });
            assert!(
                pays(tx, &s.script_hex) || spends,
                "{}: {} does not touch it",
                s.label,
                h.txid
            );
            let loc = &oracle.txs[&h.txid];
            assert!(
                (loc.height, loc.position) > last || last == (0, 0),
                "{}: not in chain order",
                s.label
            );
            last = (loc.height, loc.position);
        }
        if let Some(addr) = &s.address {
            // Wallet view of receipts (confirmed): every receiving tx is in the history.
            let r = d.call("listreceivedbyaddress", json!([1, true, true, addr]));
            if let Some(entry) = r.as_array().unwrap().first() {
                for t in entry["txids"].as_array().unwrap() {
                    let t = t.as_str().unwrap();
                    assert!(
                        seen.contains(t),
                        "{}: wallet receipt {t} missing from history",
                        s.label
                    );
                }
            }
        }
    }
}

fn history_txids(oracle: &Oracle, s: &UsedScript) -> Vec<String> {
    oracle
        .history(&s.scripthash())
        .into_iter()
        .map(|h| h.txid)
        .collect()
}

#[test]
fn amounts_and_scripthash() {
    assert_eq!(amount_to_sats(&json!(12.4999837)), 1_249_998_370);
    assert_eq!(amount_to_sats(&json!(0.00000001)), 1);
    assert_eq!(amount_to_sats(&json!(0.1)), 10_000_000);
    assert_eq!(
        amount_to_sats(&json!(20999999.99999999)),
        2_099_999_999_999_999
    );
    assert_eq!(amount_to_sats(&json!(50)), 5_000_000_000);
    assert_eq!(amount_to_sats(&json!("0.0000553")), 5_530);
    for sats in [
        1u64,
        9,
        10,
        99_999_999,
        100_000_000,
        1_249_998_370,
        2_099_999_999_999_999,
    ] {
        let f: f64 = sats_to_amount(sats).parse().unwrap();
        assert_eq!(amount_to_sats(&json!(f)), sats);
    }
    // Electrum docs example: P2PKH of 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa.
    assert_eq!(
        scripthash("76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac"),
        "8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161"
    );
}

#[test]
fn missing_binary_panics_with_install_hint() {
    let r = std::panic::catch_unwind(|| {
        Litecoind::start_with(LitecoindConfig {
            binary: "/nonexistent/litecoind".into(),
            ..LitecoindConfig::default()
        })
    });
    let err = r.err().expect("start must panic without the binary");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.contains("apt-get install litecoind"),
        "panic message: {msg}"
    );
}

#[test]
fn varied_chain_with_mweb_matches_daemon() {
    let t0 = Instant::now();
    let d = Litecoind::start();
    let mweb = d.activate_mweb();
    let chain = d.build_varied_chain();
    let oracle = Oracle::from_daemon(&d);
    eprintln!("chain built to {} in {:?}", oracle.height, t0.elapsed());

    // ---- MWEB is really in the chain
    let info = d.call("getblockchaininfo", json!([]));
    assert_eq!(info["softforks"]["mweb"]["active"], json!(true));
    assert_eq!(info["softforks"]["mweb"]["height"], json!(MWEB_HEIGHT));
    let pre = d.block_json(&d.block_hash(MWEB_HEIGHT - 1));
    assert!(
        pre.get("mweb").is_none(),
        "block 431 must not carry MWEB data"
    );
    let mut prev_hogex: Option<String> = None;
    for h in MWEB_HEIGHT..=oracle.height {
        let b = d.block_json(&oracle.block_hashes[h as usize]);
        assert!(b["mweb"].is_object(), "block {h} has no MWEB data");
        let hogex = b["tx"].as_array().unwrap().last().unwrap();
        assert_eq!(
            hogex["vout"][0]["scriptPubKey"]["type"], "witness_mweb_hogaddr",
            "block {h}: last tx is not a HogEx"
        );
        let ins: Vec<&str> = hogex["vin"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["txid"].as_str().unwrap())
            .collect();
        match &prev_hogex {
            // each HogEx spends the previous block's HogAddr output first
            Some(p) => assert_eq!(ins[0], p, "block {h}: HogEx does not chain"),
            None => assert!(
                ins.contains(&mweb.pegin_txids[0].as_str()),
                "first HogEx must spend the peg-in"
            ),
        }
        prev_hogex = Some(hogex["txid"].as_str().unwrap().to_string());
        // the raw block carries the MWEB extension after the transactions
        let raw_len = d
            .call("getblock", json!([oracle.block_hashes[h as usize], 0]))
            .as_str()
            .unwrap()
            .len()
            / 2;
        let txs_len: u64 = b["tx"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["size"].as_u64().unwrap())
            .sum();
        assert!(
            raw_len as u64 > 80 + txs_len + 1,
            "block {h}: no extension bytes"
        );
    }
    // peg-out: its transparent output is an output of the HogEx, indexed for the payee
    let pegout_hist = oracle.history(&mweb.pegout.scripthash());
    assert_eq!(
        pegout_hist,
        vec![HistoryItem {
            txid: mweb.pegout_hogex_txid.clone(),
            height: mweb.pegout_height as i64
        }]
    );
    assert_eq!(oracle.balance(&mweb.pegout.scripthash()), mweb.pegout_value);
    assert_eq!(
        oracle.block_txids(mweb.pegout_height).last(),
        Some(&mweb.pegout_hogex_txid)
    );
    assert!(
        !oracle.txs.contains_key(&mweb.pegout_mweb_txid),
        "MWEB txs are not block txs"
    );

    // ---- the oracle agrees with the daemon's UTXO set
    let n = check_utxo_set(&d, &oracle);
    assert!(n > 300, "only {n} utxos");

    // ---- every history entry of every produced script is right
    let mut scripts = chain.all_scripts();
    // (no wallet-receipt check for the peg-out: the wallet files the receipt under the MWEB txid,
    // while the chain has the output in the HogEx)
    scripts.push(UsedScript {
        address: None,
        ..mweb.pegout.clone()
    });
    check_histories(&d, &oracle, &scripts);

    // ---- the builder made what it says
    let p2pkh = history_txids(&oracle, &chain.p2pkh);
    assert_eq!(
        p2pkh.len(),
        2,
        "p2pkh: funding, then spent+paid by one tx (listed once)"
    );
    assert_eq!(p2pkh[1], chain.mixed_spend_txid);
    for s in [&chain.p2sh_p2wpkh, &chain.p2wpkh, &chain.p2sh_multisig] {
        assert_eq!(history_txids(&oracle, s).len(), 2, "{}", s.label);
        assert_eq!(
            oracle.utxos(&s.scripthash()),
            vec![],
            "{} fully spent",
            s.label
        );
    }
    let p2wsh = history_txids(&oracle, &chain.p2wsh);
    assert_eq!(
        p2wsh[1..],
        [
            chain.mixed_spend_txid.clone(),
            chain.frequent_spend_txid.clone()
        ]
    );

    assert!(
        !oracle
            .scripthashes()
            .contains(&scripthash(&chain.op_return_script_hex)),
        "OP_RETURN indexed"
    );
    assert!(chain.op_return_script_hex.starts_with("6a"));
    assert_eq!(
        history_txids(&oracle, &chain.op_return_payee),
        vec![chain.op_return_txid.clone()]
    );

    let fan = d.tx_json(&chain.fanout_txid);
    assert!(fan["vout"].as_array().unwrap().len() >= 61);
    let many = d.tx_json(&chain.many_input_txid);
    assert_eq!(
        many["vin"].as_array().unwrap().len(),
        chain.many_input_count
    );
    for (i, s) in chain.fanout.iter().enumerate() {
        let mut expect = vec![chain.fanout_txid.clone()];
        if i < chain.many_input_count {
            expect.push(chain.many_input_txid.clone());
        }
        assert_eq!(history_txids(&oracle, s), expect, "{}", s.label);
    }
    assert_eq!(
        history_txids(&oracle, &chain.consolidation),
        vec![chain.many_input_txid.clone()]
    );

    let t = &chain.chain_txids;
    assert_eq!(
        history_txids(&oracle, &chain.chain_scripts[0]),
        vec![t[0].clone(), t[1].clone()]
    );
    assert_eq!(
        history_txids(&oracle, &chain.chain_scripts[1]),
        vec![t[1].clone(), t[2].clone()]
    );
    assert_eq!(
        history_txids(&oracle, &chain.chain_scripts[2]),
        vec![t[2].clone()]
    );
    let locs: Vec<&TxLocation> = t.iter().map(|x| &oracle.txs[x]).collect();
    assert!(
        locs.iter().all(|l| l.height == locs[0].height),
        "chain not in one block"
    );
    assert!(locs[0].position < locs[1].position && locs[1].position < locs[2].position);
    assert_eq!(
        oracle.block_hashes[locs[0].height as usize],
        chain.chain_block
    );

    let freq = oracle.history(&chain.frequent.scripthash());
    assert_eq!(
        freq.len(),
        25,
        "frequent: 20 payments + mixed spend + its own spend + 3 coinbases"
    );
    assert!(freq.windows(2).all(|w| w[0].height <= w[1].height));

    let p2pk = oracle.history(&chain.p2pk.scripthash());
    assert_eq!(p2pk.len(), 1);
    assert_eq!(
        oracle.txs[&p2pk[0].txid].position, 0,
        "P2PK is paid by a coinbase"
    );
    assert!(chain.p2pk.script_hex.starts_with("21") && chain.p2pk.script_hex.ends_with("ac"));

    // genesis coinbase is never indexed
    let genesis = d.block_json(&oracle.block_hashes[0]);
    let g_script = genesis["tx"][0]["vout"][0]["scriptPubKey"]["hex"]
        .as_str()
        .unwrap();
    assert!(oracle.history(&scripthash(g_script)).is_empty());

    // ---- a reorg over MWEB blocks: the dropped tx goes back to the mempool
    let r = d.reorg(1);
    let o = Oracle::from_daemon(&d);
    assert_eq!(o.tx_height(&r.moved_txid), Some(r.moved_new_height));
    assert!(r.replacement_txid.is_none());
    assert!(o.tx_height(&r.dropped_txid).is_none());
    let m = Oracle::mempool(&d);
    assert_eq!(
        m.entries(&r.dropped_output.scripthash()),
        vec![MempoolEntry {
            txid: r.dropped_txid.clone(),
            height: 0,
            fee: m.txs[&r.dropped_txid].daemon_fee
        }]
    );
    check_utxo_set(&d, &o);

    eprintln!("varied chain self-test took {:?}", t0.elapsed());
}

#[test]
fn mempool_reorg_and_restart() {
    let t0 = Instant::now();
    let d = Litecoind::start();
    d.ensure_funds(10 * COIN);

    // ---- RPC errors keep the daemon's code and message
    let e = d.rpc("getblockhash", json!([1_000_000])).unwrap_err();
    assert_eq!(e.code(), Some(-8), "{e}");
    assert!(e.message().unwrap().contains("out of range"), "{e}");
    assert_eq!(
        d.rpc("nosuchmethod", json!([])).unwrap_err().code(),
        Some(-32601)
    );
    assert!(d
        .rpc_url()
        .starts_with(&format!("http://{RPC_USER}:{RPC_PASS}@127.0.0.1:")));

    // ---- an unconfirmed chain A → B
    let u = d.unconfirmed_chain();
    let m = Oracle::mempool(&d);
    let a_sh = u.a_output.scripthash();
    let b_sh = u.b_output.scripthash();
    assert_eq!(
        m.entries(&a_sh),
        vec![
            MempoolEntry {
                txid: u.a_txid.clone(),
                height: 0,
                fee: u.a_fee
            },
            MempoolEntry {
                txid: u.b_txid.clone(),
                height: -1,
                fee: u.b_fee
            },
        ]
    );
    assert_eq!(
        m.entries(&b_sh),
        vec![MempoolEntry {
            txid: u.b_txid.clone(),
            height: -1,
            fee: u.b_fee
        }]
    );
    for t in m.txs.values() {
        assert_eq!(t.fee, t.daemon_fee, "fee of {}", t.txid);
    }
    assert_eq!(m.delta(&a_sh), 0);
    assert_eq!(m.delta(&b_sh), (COIN - u.b_fee) as i64);
    let before = Oracle::from_daemon(&d);
    assert!(before.listunspent(&a_sh, Some(&m)).is_empty());
    assert_eq!(
        before.listunspent(&b_sh, Some(&m)),
        vec![Utxo {
            txid: u.b_txid.clone(),
            vout: u.b_vout,
            height: 0,
            value: COIN - u.b_fee
        }]
    );
    let status = before.status(&a_sh, Some(&m)).unwrap();
    assert_eq!(
        status,
        status_of(&[
            HistoryItem {
                txid: u.a_txid.clone(),
                height: 0
            },
            HistoryItem {
                txid: u.b_txid.clone(),
                height: -1
            },
        ])
        .unwrap()
    );
    assert!(before.status(&a_sh, None).is_none());

    // ---- mined together: same height, A before B
    let blk = d.mine(1).remove(0);
    let after = Oracle::from_daemon(&d);
    let h = after.height as i64;
    assert_eq!(
        after.history(&a_sh),
        vec![
            HistoryItem {
                txid: u.a_txid.clone(),
                height: h
            },
            HistoryItem {
                txid: u.b_txid.clone(),
                height: h
            },
        ]
    );
    assert_eq!(after.block_hashes.last(), Some(&blk));
    assert!(Oracle::mempool(&d).txs.is_empty());
    check_utxo_set(&d, &after);

    // ---- reorg of depth 2 with a moved tx and a double-spent tx
    let r = d.reorg(2);
    let o = Oracle::from_daemon(&d);
    assert_eq!(o.height, r.fork_height + 3);
    assert_eq!(
        o.block_hashes[r.fork_height as usize + 1..],
        r.new_blocks[..]
    );
    assert_eq!(o.tx_height(&r.moved_txid), Some(r.moved_new_height));
    assert_eq!(
        o.history(&r.moved_output.scripthash()),
        vec![HistoryItem {
            txid: r.moved_txid.clone(),
            height: r.moved_new_height as i64
        }]
    );
    assert!(o.tx_height(&r.dropped_txid).is_none());
    assert!(o.history(&r.dropped_output.scripthash()).is_empty());
    let replacement = r
        .replacement_txid
        .clone()
        .expect("pre-MWEB reorg double-spends");
    assert_eq!(
        history_txids(&o, r.replacement_output.as_ref().unwrap()),
        vec![replacement]
    );
    assert!(Oracle::mempool(&d).txs.is_empty());
    assert!(!r.old_blocks.iter().any(|b| o.block_hashes.contains(b)));
    check_utxo_set(&d, &o);

    // ---- graceful restart keeps chain, wallets and mempool
    let pending = d.send(&d.new_address(AddrType::Bech32), COIN);
    let tip = d.best_hash();
    d.stop();
    assert!(!d.is_running());
    assert!(d.rpc("getblockcount", json!([])).unwrap_err().is_io());
    d.restart();
    assert_eq!(d.best_hash(), tip);
    assert!(
        d.mempool_txids().contains(&pending),
        "mempool.dat not reloaded"
    );

    // ---- crash (SIGKILL) and restart on the same datadir and port
    d.mine(1);
    d.flush();
    let tip = d.best_hash();
    d.kill();
    assert!(d.rpc("getblockcount", json!([])).unwrap_err().is_io());
    d.restart();
    assert_eq!(d.best_hash(), tip);
    d.mine(1); // the wallet still works
    check_utxo_set(&d, &Oracle::from_daemon(&d));
    eprintln!("mempool/reorg/restart self-test took {:?}", t0.elapsed());
}
