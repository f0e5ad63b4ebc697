//! A database written by an earlier Sextant must open with this build — upgraded through
//! `migrations/` when its schema is older — and answer exactly as it did when it was written.
//!
//! `tests/data/db/litecoin-regtest-schema1/` was written by Sextant at schema 1 (the first
//! layout) from a litecoind regtest chain of 457 blocks; `litecoin-regtest-schema1.json` holds
//! what that build answered for it (tip, and every script's history, unspent outputs and
//! balance), recorded once with `cargo test --test db_fixture -- --ignored`. Never regenerate
//! the directory: its point is to be old.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use sextant::coin::CoinRegistry;
use sextant::mempool::Mempool;
use sextant::query::Query;
use sextant::store::{Mode, SpenderBuild, Store, SCHEMA_VERSION};
use sextant::types::{HashX, Height, ScriptHash};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/db/litecoin-regtest-schema1")
}

fn expectations_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/db/litecoin-regtest-schema1.json")
}

/// A copy of the fixture, so opening (and upgrading) it never touches the committed files.
fn open_copy() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let coin = CoinRegistry::embedded()
        .unwrap()
        .lookup("Litecoin", "regtest")
        .unwrap();
    let store = Store::open(dir.path(), &coin, 16, Mode::Follow).unwrap();
    (dir, store)
}

/// Every script in the index, found from its history rows, with what the index answers for it.
fn answers(store: Store) -> Value {
    let mut hashxs: Vec<Vec<u8>> = store
        .dump()
        .unwrap()
        .into_iter()
        .filter(|(cf, _, _)| *cf == "history")
        .map(|(_, k, _)| k[..HashX::LEN].to_vec())
        .collect();
    hashxs.dedup();
    let tip = store.tip().unwrap();
    let store = Arc::new(store);
    let q = Query::new(
        store.clone(),
        Arc::new(parking_lot::RwLock::new(Mempool::default())),
    );
    let scripts: Vec<Value> = hashxs
        .iter()
        .map(|h| {
            // Queries only look at the hashX prefix of a script hash.
            let mut sh = [0u8; 32];
            sh[..HashX::LEN].copy_from_slice(h);
            let sh = ScriptHash(sh);
            let history: Vec<Value> = q
                .history(&sh.hashx(), usize::MAX)
                .map(|h| h.confirmed)
                .unwrap()
                .iter()
                .map(|c| json!([c.txid.to_string(), c.height.0]))
                .collect();
            let unspent: Vec<Value> = q
                .unspent(&sh)
                .unwrap()
                .iter()
                .map(|u| json!([u.txid.to_string(), u.vout, u.height, u.value]))
                .collect();
            json!({
                "hashx": hex::encode(h),
                "history": history,
                "unspent": unspent,
                "balance": q.balance(&sh).unwrap().confirmed,
            })
        })
        .collect();
    json!({
        "tip_height": tip.height.0,
        "tip_hash": tip.hash.to_string(),
        "tx_count": tip.tx_count,
        "scripts": scripts,
    })
}

#[test]
fn a_database_from_the_previous_version_opens_upgraded_and_answers_the_same() {
    let (_dir, store) = open_copy();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    // Schema 3's spender index is built from the daemon's blocks before the next sync: the
    // upgrade notes that every block lacks it, and nothing is spent as far as it knows.
    let tip = store.tip().unwrap().height;
    assert_eq!(
        store.spender_build().unwrap(),
        Some(SpenderBuild {
            next: Height(0),
            to: tip
        })
    );
    assert!(store
        .dump()
        .unwrap()
        .iter()
        .all(|(cf, _, _)| *cf != "spender" && *cf != "spender_build"));
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(expectations_path()).unwrap()).unwrap();
    assert!(expected["scripts"].as_array().unwrap().len() > 20);
    assert_eq!(answers(store), expected);
}

#[test]
#[ignore = "records the fixture's expectations; run once when a fixture is added"]
fn record_fixture_expectations() {
    let (_dir, store) = open_copy();
    let text = serde_json::to_string_pretty(&answers(store)).unwrap();
    std::fs::write(expectations_path(), text + "\n").unwrap();
}
