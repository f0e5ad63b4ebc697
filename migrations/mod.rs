//! Schema upgrades, in order. Each step takes a database at version `from` to `from + 1` and
//! records the new version in the same run, so an interrupted upgrade restarts from the last
//! finished step. A version with no step here cannot be upgraded: the operator reindexes.
//!
//! (This file is compiled into the `sextant` library as `store::migrate`.)

mod spenders;

use super::{Store, StoreError, ALL_CFS, CF_META, KEY_TIP, SCHEMA_VERSION};
use crate::coin::TxFamily;
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
];

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
    use crate::types::{BlockHash, Height, TxNum, Txid};

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
}
