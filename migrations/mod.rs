//! Schema upgrades, in order. Each step takes a database at version `from` to `from + 1` and
//! records the new version in the same run, so an interrupted upgrade restarts from the last
//! finished step. A version with no step here cannot be upgraded: the operator reindexes.
//!
//! (This file is compiled into the `sextant` library as `store::migrate`.)

mod spenders;

use super::{Store, StoreError, ALL_CFS, CF_META, CF_TXIDS, KEY_TIP, SCHEMA_VERSION};
use crate::coin::TxFamily;
use crate::types::{TxNum, Txid};
pub use spenders::SpenderBuild;

/// One upgrade step: the version it starts from and what it does.
pub(crate) struct Step {
    pub from: u32,
    pub describe: &'static str,
    pub run: fn(&Store) -> Result<(), StoreError>,
}

/// Every step, oldest first. Schema 1 is the first released layout.
pub(crate) const STEPS: &[Step] = &[
    Step {
        from: 1,
        describe: "the keva column family (a Kevacoin index is rebuilt for its namespace index)",
        run: keva_index,
    },
    Step {
        from: 2,
        describe: "the spender index (built from the daemon's blocks before the next sync)",
        run: spenders::spender_index,
    },
    Step {
        from: 3,
        describe: "compact undo records and ZSTD tables (older records and tables still read)",
        run: compact_undo,
    },
    Step {
        from: 4,
        describe: "transaction ids moved from RocksDB to their own file (txids.bin)",
        run: txid_file,
    },
];

/// Schema 5 keeps transaction ids in a flat file by number (`store::txid_file`): copied there
/// in order, synced, then deleted from the `txids` family. An interrupted copy is redone from
/// the start (the family is emptied only after the sync, and the version moves after that).
fn txid_file(store: &Store) -> Result<(), StoreError> {
    let cf = store.cf(CF_TXIDS);
    let mut chunk = Vec::with_capacity(1 << 15);
    let mut first = TxNum(0);
    let mut next = 0u64;
    let started = std::time::Instant::now();
    for item in store.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let n = TxNum::from_bytes(&k);
        if n.0 != next || v.len() != 32 {
            return Err(StoreError::Migration {
                from: 4,
                to: 5,
                detail: format!("transaction id row {} where {next} was due", n.0),
            });
        }
        chunk.push(Txid(v[..].try_into().expect("32 bytes")));
        next += 1;
        if chunk.len() == chunk.capacity() {
            store.write_txid_run(first, &chunk)?;
            first = TxNum(next);
            chunk.clear();
            if next.is_multiple_of(1 << 24) {
                tracing::info!("{next} transaction ids copied");
            }
        }
    }
    store.write_txid_run(first, &chunk)?;
    store.sync_txids()?;
    let end = [0xffu8; 8];
    store
        .db
        .delete_range_cf(cf, [].as_slice(), end.as_slice())?;
    store.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
    tracing::info!(
        "{next} transaction ids moved in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Schema 4 writes undo records without txids (`index::undo`) and compresses the last level
/// with ZSTD. Both read the older records and tables as they are, so the step only records the
/// version; that keeps an older Sextant, which could read neither, out of a newer database.
fn compact_undo(_store: &Store) -> Result<(), StoreError> {
    Ok(())
}

/// Schema 2 adds the `keva` column family, which opening the database has already created
/// (empty, as every coin but Kevacoin keeps it). A Kevacoin index from before it lacks more than
/// the keva rows: its keva outputs were hashed with their keva prefix, so owners' histories and
/// UTXOs are wrong too, and the name-index rows are missing from the history and undo records.
/// Only the whole chain fixes all of that, so the index is emptied (keeping the database's coin
/// identity) and the indexer rebuilds it from the daemon, with its usual progress lines.
fn keva_index(store: &Store) -> Result<(), StoreError> {
    if store.chain.tx != TxFamily::Kevacoin {
        return Ok(());
    }
    tracing::warn!(
        "this Kevacoin index predates the keva namespace index: emptying it to reindex the chain \
         from the daemon"
    );
    // Past every key: keys are at most 33 bytes, and none is all 0xff.
    let end = [0xffu8; 64];
    for name in ALL_CFS.iter().filter(|n| **n != CF_META) {
        store
            .db
            .delete_range_cf(store.cf(name), [].as_slice(), end.as_slice())?;
    }
    store.db.delete_cf(store.cf(CF_META), KEY_TIP)?;
    for name in ALL_CFS {
        store
            .db
            .compact_range_cf(store.cf(name), None::<&[u8]>, None::<&[u8]>);
    }
    Ok(())
}

/// Brings a database at `version` up to [`SCHEMA_VERSION`].
pub(crate) fn upgrade(store: &Store, mut version: u32) -> Result<(), StoreError> {
    upgrade_with(store, &mut version, STEPS, SCHEMA_VERSION)
}

pub(crate) fn upgrade_with(
    store: &Store,
    version: &mut u32,
    steps: &[Step],
    target: u32,
) -> Result<(), StoreError> {
    while *version < target {
        let step =
            steps
                .iter()
                .find(|s| s.from == *version)
                .ok_or_else(|| StoreError::NoUpgrade {
                    dir: store.dir.clone(),
                    found: *version,
                    supported: target,
                })?;
        tracing::info!(
            "upgrading the database from schema {} to {}: {}",
            step.from,
            step.from + 1,
            step.describe
        );
        (step.run)(store)?;
        *version += 1;
        store.set_schema_version(*version)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Mode, Tip};
    use super::*;
    use crate::coin::CoinRegistry;
    use crate::types::{BlockHash, Height};

    /// A store of `coin` holding one block, stamped with schema 1, then reopened.
    fn reopen_from_schema_1(coin: &str) -> (Store, tempfile::TempDir) {
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup(coin, "regtest")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &coin, 16, Mode::Follow).unwrap();
        let mut b = s.batch();
        b.put_block(Height(0), &[7; 80], 1);
        b.put_txid(TxNum(0), &Txid([1; 32]));
        b.put_keva(b"x", b"y");
        let tip = Tip {
            height: Height(0),
            hash: BlockHash([2; 32]),
            tx_count: 1,
        };
        s.commit(b, Some(tip), Height(0), &[1]).unwrap();
        s.set_schema_version(1).unwrap();
        drop(s);
        let s = Store::open(dir.path(), &coin, 16, Mode::Follow).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        (s, dir)
    }

    #[test]
    fn schema_1_keeps_its_index_except_for_kevacoin() {
        let (ltc, _d) = reopen_from_schema_1("Litecoin");
        assert_eq!(ltc.tip().unwrap().tx_count, 1);
        assert_eq!(ltc.txid(TxNum(0)).unwrap(), Some(Txid([1; 32])));

        let (kva, _d) = reopen_from_schema_1("Kevacoin");
        assert_eq!(kva.tip(), None);
        let rows = kva.dump().unwrap();
        assert!(rows.iter().all(|(cf, _, _)| *cf == CF_META), "{rows:?}");
        // The coin identity and the new version stay.
        assert_eq!(rows.len(), 2, "{rows:?}");
    }

    #[test]
    fn schema_4_transaction_ids_move_to_their_file() {
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup("Litecoin", "regtest")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &coin, 16, Mode::Follow).unwrap();
        // Two blocks as schema 4 wrote them: ids in the family, none in the file.
        let txid = |n: u64| Txid(crate::types::sha256d(&n.to_le_bytes()));
        let mut b = s.batch();
        b.put_block(Height(0), &[7; 80], 1);
        b.put_block(Height(1), &[8; 80], 40_000);
        for n in 0..40_000u64 {
            b.wb.put_cf(s.cf(CF_TXIDS), TxNum(n).to_bytes(), txid(n).0);
        }
        let tip = Tip {
            height: Height(1),
            hash: BlockHash([2; 32]),
            tx_count: 40_000,
        };
        s.commit(b, Some(tip), Height(0), &[1, 40_000]).unwrap();
        s.set_schema_version(4).unwrap();
        drop(s);
        let s = Store::open(dir.path(), &coin, 16, Mode::Follow).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let nums: Vec<TxNum> = (0..40_000).map(TxNum).collect();
        let expected: Vec<Txid> = (0..40_000).map(txid).collect();
        assert_eq!(s.txids(&nums).unwrap(), expected);
        assert_eq!(s.txid(TxNum(40_000)).unwrap(), None);
        let left =
            s.db.iterator_cf(s.cf(CF_TXIDS), rocksdb::IteratorMode::Start);
        assert_eq!(left.count(), 0, "the family is emptied");
        // A gap in the old rows is refused, not copied.
        let mut b = s.batch();
        b.wb.put_cf(s.cf(CF_TXIDS), TxNum(5).to_bytes(), txid(5).0);
        s.commit(b, Some(tip), Height(2), &[]).unwrap();
        s.set_schema_version(4).unwrap();
        drop(s);
        let e = Store::open(dir.path(), &coin, 16, Mode::Follow)
            .err()
            .unwrap();
        assert!(e.to_string().contains("row 5 where 0 was due"), "{e}");
    }
}
