//! The indexer against a real `litecoind -regtest -txindex=1`: initial sync, reorgs, mempool,
//! crash safety and daemon outages, each checked against what the daemon itself reports.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::RwLock;
use sextant::coin::{Coin, CoinRegistry};
use sextant::config::DaemonUrl;
use sextant::daemon::Daemon;
use sextant::index::Indexer;
use sextant::mempool::{self, Mempool};

type OracleMempool = common::Mempool;
use serde_json::Value;
use sextant::query::{OutpointStatus, Query};
use sextant::store::{Mode, SpenderBuild, Store, SCHEMA_VERSION};
use sextant::types::{Height, OutPoint, ScriptHash, Txid};
use tokio::sync::watch;

fn coin() -> Coin {
    CoinRegistry::embedded()
        .unwrap()
        .lookup("Litecoin", "regtest")
        .unwrap()
}

fn daemon_for(d: &Litecoind) -> Daemon {
    let url = DaemonUrl::parse(&d.rpc_url(), 19443, false).unwrap();
    Daemon::new(vec![url], None, sextant::metrics::Metrics::new()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An in-process indexer on its own database.
struct Index {
    rt: tokio::runtime::Runtime,
    store: Arc<Store>,
    daemon: Daemon,
    indexer: Indexer,
    mempool: Arc<RwLock<Mempool>>,
    _dir: tempfile::TempDir,
}

impl Index {
    fn new(d: &Litecoind, cache_mb: usize) -> Index {
        Index::open(d, tempfile::tempdir().unwrap(), cache_mb)
    }

    /// An indexer on the database in `dir`, as it is (opening upgrades an older schema).
    fn open(d: &Litecoind, dir: tempfile::TempDir, cache_mb: usize) -> Index {
        let store = Arc::new(Store::open(dir.path(), &coin(), cache_mb, Mode::Bulk).unwrap());
        let daemon = daemon_for(d);
        let indexer = Indexer::new(store.clone(), daemon.clone(), coin(), 100, cache_mb);
        Index {
            rt: runtime(),
            store,
            daemon,
            indexer,
            mempool: Arc::default(),
            _dir: dir,
        }
    }

    /// Indexes up to the daemon's tip, then refreshes the mempool.
    fn sync(&mut self) {
        let (_tx, mut rx) = watch::channel(false);
        let Index {
            rt,
            indexer,
            mempool,
            daemon,
            store,
            ..
        } = self;
        rt.block_on(async {
            indexer.check_daemon().await.unwrap();
            indexer.sync(&mut rx).await.unwrap();
            mempool::refresh(
                mempool,
                daemon,
                coin().chain,
                store,
                true,
                mempool::Look::List,
            )
            .await
            .unwrap();
        });
    }

    fn query(&self) -> Query {
        Query::new(self.store.clone(), self.mempool.clone())
    }

    /// Closes the database (every handle on it dropped) and hands its directory back.
    fn close(self) -> tempfile::TempDir {
        self.store.flush().unwrap();
        let Index {
            rt,
            store,
            indexer,
            _dir,
            ..
        } = self;
        drop(indexer);
        rt.shutdown_timeout(Duration::from_secs(10));
        // The compaction after the initial sync holds the store until it ends.
        wait_until(Duration::from_secs(60), "the compaction", || {
            (!store.compacting()).then_some(())
        });
        store.stop_background_work();
        assert_eq!(Arc::strong_count(&store), 1, "the store is still shared");
        drop(store);
        _dir
    }
}

fn sh(hex: &str) -> ScriptHash {
    ScriptHash::from_hex(hex).unwrap()
}

/// Every script the daemon's chain touches has exactly the oracle's history, UTXOs and balance,
/// and the index holds no script the oracle lacks.
fn assert_matches_oracle(index: &Index, oracle: &Oracle) {
    let q = index.query();
    let tip = index.store.tip().expect("indexed");
    assert_eq!(tip.height.0 as u64, oracle.height, "tip height");
    assert_eq!(tip.hash.to_string(), oracle.tip, "tip hash");
    assert_eq!(tip.tx_count, oracle.tx_count, "tx count");
    for (h, hash) in oracle.block_hashes.iter().enumerate() {
        let ours = index
            .store
            .block_hash(sextant::types::Height(h as u32))
            .unwrap();
        assert_eq!(
            ours.map(|x| x.to_string()).as_deref(),
            Some(hash.as_str()),
            "block {h}"
        );
    }
    let scripts = oracle.scripthashes();
    assert!(scripts.len() > 50, "the chain should touch many scripts");
    for s in &scripts {
        let hist: Vec<(String, i64)> = q
            .history(&sh(s).hashx(), usize::MAX)
            .map(|h| h.confirmed)
            .unwrap()
            .into_iter()
            .map(|c| (c.txid.to_string(), c.height.0 as i64))
            .collect();
        let want: Vec<(String, i64)> = oracle
            .history(s)
            .into_iter()
            .map(|i| (i.txid, i.height))
            .collect();
        assert_eq!(hist, want, "history of {s} ({:?})", oracle.script_hex(s));
        let utxos: Vec<(String, u32, u64, u64)> = index
            .store
            .script_utxos(&sh(s).hashx())
            .unwrap()
            .into_iter()
            .map(|u| {
                let txid = index.store.txid(u.txnum).unwrap().unwrap().to_string();
                let h = index.store.txnum_height(u.txnum).unwrap().0 as u64;
                (txid, u.vout, h, u.value)
            })
            .collect();
        let want: Vec<(String, u32, u64, u64)> = oracle
            .utxos(s)
            .into_iter()
            .map(|u| (u.txid, u.vout, u.height, u.value))
            .collect();
        assert_eq!(utxos, want, "utxos of {s}");
        assert_eq!(
            q.balance(&sh(s)).unwrap().confirmed,
            oracle.balance(s),
            "balance of {s}"
        );
    }
    // No history for scripts the oracle does not know (e.g. OP_RETURN or the genesis coinbase).
    let mut ours: Vec<Vec<u8>> = index
        .store
        .dump()
        .unwrap()
        .into_iter()
        .filter(|(cf, _, _)| *cf == "history")
        .map(|(_, k, _)| k[..11].to_vec())
        .collect();
    ours.dedup();
    assert_eq!(ours.len(), scripts.len(), "scripts with history");
}

#[test]
fn initial_sync_of_a_varied_chain_matches_the_daemon() {
    let d = Litecoind::start();
    let varied = d.build_varied_chain();
    d.activate_mweb();
    let varied_after_mweb = d.build_varied_chain();
    d.mine(2);
    let oracle = Oracle::from_daemon(&d);
    assert!(oracle.height >= MWEB_HEIGHT, "MWEB blocks are in the chain");

    // A small cache makes the writer flush many times along the way.
    let mut index = Index::new(&d, 16);
    index.sync();
    assert_matches_oracle(&index, &oracle);

    // Spot checks that name what the generic comparison covers.
    let q = index.query();
    for v in [&varied, &varied_after_mweb] {
        let op_return = ScriptHash::of_script(&hex::decode(&v.op_return_script_hex).unwrap());
        assert!(q
            .history(&op_return.hashx(), usize::MAX)
            .map(|h| h.confirmed)
            .unwrap()
            .is_empty());
        let frequent = q
            .history(&sh(&v.frequent.scripthash()).hashx(), usize::MAX)
            .map(|h| h.confirmed)
            .unwrap();
        assert!(frequent.len() >= 5, "frequent script history {frequent:?}");
        for s in v.all_scripts() {
            assert!(
                !q.history(&sh(&s.scripthash()).hashx(), usize::MAX)
                    .map(|h| h.confirmed)
                    .unwrap()
                    .is_empty(),
                "{} has history",
                s.label
            );
        }
    }
    // Following: new blocks are picked up by the next pass.
    d.build_varied_chain();
    index.sync();
    assert_matches_oracle(&index, &Oracle::from_daemon(&d));
}

/// Dumps are equal when two indexes of the same chain hold the same rows.
fn assert_same_index(a: &Index, b: &Index) {
    assert_eq!(a.store.tip(), b.store.tip());
    let (da, db) = (a.store.dump().unwrap(), b.store.dump().unwrap());
    assert_eq!(da.len(), db.len(), "row count");
    assert!(da == db, "indexes differ");
}

#[test]
fn reorgs_leave_exactly_the_index_of_a_clean_sync() {
    let d = Litecoind::start();
    d.build_varied_chain();
    let mut index = Index::new(&d, 64);
    index.sync();

    // Old branch: three blocks with payments, indexed.
    let moved = d.new_script("moved", AddrType::Bech32);
    let dropped = d.new_script("dropped", AddrType::Legacy);
    let fork = d.height();
    // `pay` locks the new outputs, so later wallet sends cannot spend them.
    let (moved_txid, _) = d.pay(&moved, COIN);
    let old = d.mine(1);
    d.pay(&dropped, COIN / 2);
    d.mine(2);
    index.sync();
    let q = index.query();
    assert_eq!(
        q.history(&sh(&moved.scripthash()).hashx(), usize::MAX)
            .map(|h| h.confirmed)
            .unwrap()
            .len(),
        1
    );

    // New, longer branch from the fork: `moved` goes to a later block than before.
    d.invalidate(&old[0]);
    d.hold_back(&moved_txid);
    d.mine(1); // without `moved`, so it lands at another height
    d.release(&moved_txid);
    d.mine(4);
    assert!(d.tx_confirmed_height(&moved_txid).is_some());
    index.sync();
    let oracle = Oracle::from_daemon(&d);
    assert_matches_oracle(&index, &oracle);
    let hist = index
        .query()
        .history(&sh(&moved.scripthash()).hashx(), usize::MAX)
        .map(|h| h.confirmed)
        .unwrap();
    assert_eq!(hist.len(), 1);
    assert!(
        hist[0].height.0 as u64 > fork + 1,
        "moved tx re-confirmed later: {hist:?}"
    );
    // A second reorg back to the original branch (now longer again) also undoes cleanly.
    d.reconsider(&old[0]);
    d.mine(3);
    index.sync();
    let mut clean = Index::new(&d, 64);
    clean.sync();
    assert_matches_oracle(&index, &Oracle::from_daemon(&d));
    assert_same_index(&index, &clean);
}

#[test]
fn mempool_mirror_follows_adds_chains_and_confirmations() {
    let d = Litecoind::start();
    d.build_varied_chain();
    let mut index = Index::new(&d, 64);
    index.sync();
    let chain = d.unconfirmed_chain();
    let payee = d.new_script("mempool-payee", AddrType::P2shSegwit);
    let single = d.send(payee.address.as_ref().unwrap(), COIN / 4);
    index.sync();

    let expected = OracleMempool::from_daemon(&d);
    let q = index.query();
    assert_eq!(index.mempool.read().len(), expected.txs.len());
    for s in expected.scripthashes() {
        let ours: Vec<(String, i64, u64)> = q
            .mempool_history(&sh(&s).hashx())
            .into_iter()
            .map(|e| (e.txid.to_string(), e.height as i64, e.fee))
            .collect();
        let want: Vec<(String, i64, u64)> = expected
            .entries(&s)
            .into_iter()
            .map(|e| (e.txid, e.height, e.fee))
            .collect();
        assert_eq!(ours, want, "mempool entries of {s}");
        assert_eq!(
            q.balance(&sh(&s)).unwrap().unconfirmed,
            expected.delta(&s),
            "unconfirmed balance of {s}"
        );
    }
    // The child spends its unconfirmed parent: height -1; the parent and the single payment 0.
    let b = q.mempool_history(&sh(&chain.b_output.scripthash()).hashx());
    assert_eq!(
        (b[0].txid.to_string(), b[0].height),
        (chain.b_txid.clone(), -1)
    );
    assert_eq!(b[0].fee, chain.b_fee);
    let single_entry = q.mempool_history(&sh(&payee.scripthash()).hashx());
    assert_eq!(
        (single_entry[0].txid.to_string(), single_entry[0].height),
        (single, 0)
    );
    // A's output is spent by B in mempool: not listed as unspent; B's output is, at height 0.
    assert!(q
        .unspent(&sh(&chain.a_output.scripthash()))
        .unwrap()
        .is_empty());
    let b_unspent = q.unspent(&sh(&chain.b_output.scripthash())).unwrap();
    assert_eq!(b_unspent.len(), 1);
    assert_eq!(b_unspent[0].height, 0);

    // Confirmation moves everything out of the mempool and into the confirmed history.
    d.mine(1);
    index.sync();
    assert_eq!(index.mempool.read().len(), 0);
    let q = index.query();
    for s in [&chain.a_output, &chain.b_output, &payee] {
        assert!(q.mempool_history(&sh(&s.scripthash()).hashx()).is_empty());
        assert!(!q
            .history(&sh(&s.scripthash()).hashx(), usize::MAX)
            .map(|h| h.confirmed)
            .unwrap()
            .is_empty());
    }
    assert_matches_oracle(&index, &Oracle::from_daemon(&d));
}

// -------------------------------------------------------------------------------------------
// The `sextant` binary: crash safety, signals, outages, configuration errors.

/// `sextant` on `d`'s chain in `dir` (database in `dir/db`), on a free client port.
fn start_server(d: &Litecoind, dir: &Path, extra: &[(&str, &str)]) -> Proc {
    let mut env = vec![("SERVICES", format!("tcp://127.0.0.1:{}", free_port()))];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Proc::sextant(d, dir, &env)
}

/// The index a server started by [`start_server`] in `dir` left.
fn open_store(dir: &Path) -> Store {
    Store::open(&dir.join("db"), &coin(), 16, Mode::Follow).unwrap()
}

/// A chain long enough that the initial sync commits several batches: varied transactions,
/// fan-out blocks, then thousands of blocks.
fn build_long_chain(d: &Litecoind) {
    d.build_varied_chain();
    let scripts: Vec<UsedScript> = (0..40)
        .map(|i| d.new_script(&format!("long-{i}"), AddrType::Bech32))
        .collect();
    for round in 0..30 {
        let outs: Vec<(String, u64)> = scripts
            .iter()
            .map(|s| (s.address.clone().unwrap(), 100_000 + round as u64))
            .collect();
        d.send_many(&outs);
        d.mine(1);
    }
    d.mine(2500);
}

#[test]
fn kill_9_during_initial_sync_then_restart_ends_with_a_clean_index() {
    let d = Litecoind::start();
    build_long_chain(&d);
    let target = d.height();
    let db = tempfile::tempdir().unwrap();
    let mut killed_at = Vec::new();
    // Kill right after a batch commits, so the next batch is in flight; each restart continues
    // from what the previous run left. The initial sync writes without a WAL: the first two
    // runs make every batch durable (the tip must move), the last keeps the default flush
    // interval, so its unflushed batches are lost and the restart must still find a
    // consistent index at an earlier tip.
    for run in 0..3 {
        let flush = if run < 2 { "0" } else { "30" };
        let env = [("LOG_LEVEL", "debug"), ("SYNC_FLUSH_INTERVAL", flush)];
        let server = start_server(&d, db.path(), &env);
        server.wait_for_log("committed blocks", Duration::from_secs(60));
        server.signal("-KILL");
        let (status, _) = server.wait();
        assert!(!status.success());
        let tip = open_store(db.path()).tip().map(|t| t.height.0 as u64);
        killed_at.push(tip);
    }
    assert!(
        killed_at
            .iter()
            .filter(|t| t.is_some_and(|h| h < target))
            .count()
            >= 2,
        "kills should land mid-sync: tips {killed_at:?} of {target}"
    );
    let server = start_server(&d, db.path(), &[]);
    server.wait_for_log("caught up with the daemon", Duration::from_secs(120));
    server.signal("-TERM");
    let (status, log) = server.wait();
    assert!(status.success(), "clean exit after SIGTERM: {log}");

    let recovered = open_store(db.path());
    let mut clean = Index::new(&d, 64);
    clean.sync();
    assert_eq!(recovered.tip(), clean.store.tip());
    assert!(
        recovered.dump().unwrap() == clean.store.dump().unwrap(),
        "recovered index differs from a clean sync (killed at {killed_at:?})"
    );
}

/// The initial sync keeps recent blocks staged in memory between commits; an outage in the
/// middle must leave the writer and the store agreeing, so the sync continues where it stopped
/// and ends with the index of a clean sync.
#[test]
fn a_daemon_outage_during_the_initial_sync_continues_where_it_stopped() {
    let d = Litecoind::start();
    build_long_chain(&d);
    let gate = DaemonGate::start(&d);
    // Enough downloads for a few whole batches to be staged; the later ones wait.
    gate.let_through(60);
    let db = tempfile::tempdir().unwrap();
    let server = start_server(&d, db.path(), &[("DAEMON_URL", gate.url().as_str())]);
    wait_until(
        Duration::from_secs(60),
        "downloads held at the gate",
        || (gate.held() > 0).then_some(()),
    );
    d.stop();
    gate.open();
    server.wait_for_log("retrying", Duration::from_secs(60));
    d.restart();
    server.wait_for_log("caught up with the daemon", Duration::from_secs(120));
    server.signal("-TERM");
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    let recovered = open_store(db.path());
    let mut clean = Index::new(&d, 64);
    clean.sync();
    assert_eq!(recovered.tip(), clean.store.tip(), "{log}");
    assert!(
        recovered.dump().unwrap() == clean.store.dump().unwrap(),
        "the index differs from a clean sync"
    );
}

#[test]
fn sigterm_flushes_and_exits_cleanly() {
    let d = Litecoind::start();
    d.build_varied_chain();
    let db = tempfile::tempdir().unwrap();
    let server = start_server(&d, db.path(), &[]);
    server.wait_for_log("caught up with the daemon", Duration::from_secs(60));
    server.signal("-TERM");
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    assert!(log.contains("flushing the index"), "{log}");
    assert_eq!(
        open_store(db.path()).tip().unwrap().hash.to_string(),
        d.best_hash()
    );
}

#[test]
fn a_daemon_outage_is_survived_and_logged() {
    let d = Litecoind::start();
    d.build_varied_chain();
    let db = tempfile::tempdir().unwrap();
    let server = start_server(&d, db.path(), &[]);
    server.wait_for_log("caught up with the daemon", Duration::from_secs(60));
    d.stop();
    server.wait_for_log("retrying", Duration::from_secs(30));
    d.restart();
    let new_tip = d.mine(2).pop().unwrap();
    server.wait_for_log("is back", Duration::from_secs(60));
    server.wait_for_log(
        &format!("to height {}", d.height()),
        Duration::from_secs(60),
    );
    server.signal("-TERM");
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    // One line per state change, not one per retry.
    assert_eq!(log.matches("unreachable").count(), 1, "{log}");
    assert_eq!(
        open_store(db.path()).tip().unwrap().hash.to_string(),
        new_tip
    );
}

#[test]
fn configuration_mistakes_exit_2_with_one_clear_line() {
    let db = tempfile::tempdir().unwrap();
    let dbs = db.path().to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("COIN", "Nocoin")], "unknown coin"),
        (&[("NET", "moonnet")], "has no net"),
        (
            &[("DAEMON_URL", "http://u:p@127.0.0.1:notaport")],
            "DAEMON_URL",
        ),
        (&[("DAEMON_URL", "")], "DAEMON_URL"),
        (&[("CACHE_MB", "-5")], "CACHE_MB"),
    ];
    for (env, expect) in cases {
        let mut cmd = sextant_command();
        cmd.env("COIN", "Litecoin")
            .env("NET", "regtest")
            .env("DB_DIRECTORY", dbs)
            .env("DAEMON_URL", "http://u:p@127.0.0.1:1/");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{env:?}: {stderr}");
        assert!(stderr.contains(expect), "{env:?}: {stderr}");
    }
    let out = sextant_command()
        .env("DAEMON_URL", "http://u:p@127.0.0.1:1/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DB_DIRECTORY"));
}

#[test]
fn a_daemon_of_another_chain_is_refused() {
    let d = Litecoind::start();
    let db = tempfile::tempdir().unwrap();
    let server = start_server(&d, db.path(), &[("COIN", "Bitcoin"), ("NET", "regtest")]);
    let (status, log) = server.wait();
    assert!(!status.success());
    assert!(log.contains("genesis"), "{log}");
}

// -------------------------------------------------------------------------------------------
// Schema 2 → 3: the spender index built for a database written without it.

/// Turns a database this build wrote into what schema 2 left: no spender column families (the
/// only thing schema 3 added; its undo records and other rows are as schema 2 wrote them) and
/// the schema marker at 2. The store has no way to do it, so RocksDB is opened directly.
fn downgrade_to_schema_2(path: &Path) {
    let opts = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&opts, path).unwrap();
    assert!(families.iter().any(|f| f == "spender"), "{families:?}");
    let mut db = rocksdb::DB::open_cf(&opts, path, &families).unwrap();
    for cf in ["spender", "spender_build"] {
        db.drop_cf(cf).unwrap();
    }
    let meta = db.cf_handle("meta").unwrap();
    db.put_cf(meta, b"schema", 2u32.to_be_bytes()).unwrap();
    db.flush_cf(meta).unwrap();
}

/// Every outpoint of the daemon's best chain (the genesis coinbase aside, as it is never
/// indexed) with the status the daemon's blocks give it: its block's height, and the
/// transaction and height of the block that spent it. Unspendable (OP_RETURN) outputs are in
/// no index, and a query without a daemon answers nothing for them; MWEB inputs and outputs
/// are not outpoints of the canonical chain.
fn outpoints_of_the_chain(d: &Litecoind) -> Vec<(OutPoint, OutpointStatus)> {
    let mut statuses: Vec<(OutPoint, OutpointStatus)> = Vec::new();
    let mut at: HashMap<OutPoint, usize> = HashMap::new();
    let op = |txid: &Value, vout: &Value| OutPoint {
        txid: Txid::from_hex(txid.as_str().unwrap()).unwrap(),
        vout: vout.as_u64().unwrap() as u32,
    };
    for h in 1..=d.height() {
        let block = d.block_json(&d.block_hash(h));
        for tx in block["tx"].as_array().unwrap() {
            let txid = Txid::from_hex(tx["txid"].as_str().unwrap()).unwrap();
            for vin in tx["vin"].as_array().unwrap() {
                if vin.get("txid").is_none() || vin["ismweb"].as_bool() == Some(true) {
                    continue;
                }
                let i = at[&op(&vin["txid"], &vin["vout"])];
                assert_eq!(statuses[i].1.spender, None, "spent twice");
                statuses[i].1.spender = Some((txid, h as i64));
            }
            for out in tx["vout"].as_array().unwrap() {
                if out["ismweb"].as_bool() == Some(true) || out.get("scriptPubKey").is_none() {
                    continue;
                }
                let o = op(&tx["txid"], &out["n"]);
                let spendable = !out["scriptPubKey"]["hex"]
                    .as_str()
                    .unwrap()
                    .starts_with("6a");
                at.insert(o, statuses.len());
                let status = OutpointStatus {
                    funder_height: spendable.then_some(h as i64),
                    spender: None,
                };
                statuses.push((o, status));
            }
        }
    }
    statuses
}

/// How many of `want`'s outpoints `index` answers differently, and the first such.
fn outpoint_mismatches(
    index: &Index,
    want: &[(OutPoint, OutpointStatus)],
) -> (usize, Option<String>) {
    let q = index.query();
    let wrong: Vec<String> = want
        .iter()
        .filter_map(|(op, w)| {
            let got = q.outpoint_status(op).unwrap();
            (got != *w).then(|| format!("{}:{}: {got:?}, want {w:?}", op.txid, op.vout))
        })
        .collect();
    (wrong.len(), wrong.into_iter().next())
}

#[test]
fn a_schema_2_database_gets_the_spender_index_of_a_fresh_sync() {
    let d = Litecoind::start();
    d.build_varied_chain();
    d.activate_mweb();
    d.build_varied_chain();
    d.mine(2);

    // The database schema 2 wrote: synced, closed, its spender index taken away.
    let mut old = Index::new(&d, 16);
    old.sync();
    let dir = old.close();
    downgrade_to_schema_2(dir.path());

    // Opening it runs the schema step, which only notes what to build.
    let mut upgraded = Index::open(&d, dir, 16);
    let tip = upgraded.store.tip().unwrap().height;
    assert_eq!(upgraded.store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        upgraded.store.spender_build().unwrap(),
        Some(SpenderBuild {
            next: Height(0),
            to: tip
        })
    );
    let want = outpoints_of_the_chain(&d);
    let spent = want.iter().filter(|(_, s)| s.spender.is_some()).count();
    assert!(spent > 100, "the chain spends {spent} outpoints");
    // Until the build, every spent outpoint is unknown: what this test would catch.
    assert_eq!(outpoint_mismatches(&upgraded, &want).0, spent);

    // The next sync builds it from the daemon's blocks first; a chain grown meanwhile is
    // synced after.
    d.build_varied_chain();
    let want = outpoints_of_the_chain(&d);
    upgraded.sync();
    assert_eq!(upgraded.store.spender_build().unwrap(), None);
    assert_eq!(outpoint_mismatches(&upgraded, &want), (0, None));
    let mut fresh = Index::new(&d, 64);
    fresh.sync();
    assert_eq!(outpoint_mismatches(&fresh, &want), (0, None));
    assert_same_index(&upgraded, &fresh);

    // The rows the build wrote are undone by a reorg as a sync's are.
    let tip = d.height();
    d.invalidate(&d.block_hash(tip - 2));
    d.mine(4);
    let want = outpoints_of_the_chain(&d);
    for index in [&mut upgraded, &mut fresh] {
        index.sync();
        assert_eq!(outpoint_mismatches(index, &want), (0, None));
    }
    assert_same_index(&upgraded, &fresh);
}
