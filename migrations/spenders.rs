//! Schema 3: the spender index (`store::spender`) for a database from before it.
//!
//! The step itself only notes which blocks lack their spends — all of them, up to the tip at
//! the upgrade — since the store has no blocks to read them from. The indexer then fetches
//! those blocks from the daemon, by the hashes this index holds (so a reorg on the daemon side
//! changes nothing), and hands them here in order, before it syncs anything new; progress is
//! recorded in the same batches as the rows, so an interrupted build resumes where it stopped.
//!
//! A spend row needs the funding transaction's number, which an index of transaction numbers
//! by txid would give, but Sextant has none (the daemon's txindex answers by txid). The build
//! keeps one as scratch while it walks the chain (txid\[..8\] ‖ tx num, in `spender_build`),
//! checks candidates against the full txids, and drops it when done.

use std::collections::HashMap;

use super::super::{Spend, Store, StoreError, CF_META, CF_SPENDER_BUILD, KEY_TIP};
use crate::coin::ParsedBlock;
use crate::types::{Height, TxNum, Txid};

/// `meta` row while the build is unfinished: next height ‖ last height (u32 BE each).
const KEY_SPENDER_BUILD: &[u8] = b"spender_build";
const SCRATCH_PREFIX: usize = 8;

/// Blocks still lacking their spends: `next..=to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpenderBuild {
    pub next: Height,
    pub to: Height,
}

/// The schema step: every block up to the tip needs its spends (an empty index, none).
pub(crate) fn spender_index(store: &Store) -> Result<(), StoreError> {
    let meta = store.cf(CF_META);
    let Some(tip) = store.db.get_cf(meta, KEY_TIP)? else {
        return Ok(());
    };
    let tip =
        super::super::Tip::decode(&tip).ok_or_else(|| StoreError::Corrupt("bad tip".into()))?;
    let build = SpenderBuild {
        next: Height(0),
        to: tip.height,
    };
    tracing::info!(
        "the spender index will be built from the daemon's blocks 0 to {} before syncing",
        tip.height
    );
    store.db.put_cf(meta, KEY_SPENDER_BUILD, encode(build))?;
    Ok(())
}

fn encode(b: SpenderBuild) -> [u8; 8] {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&b.next.0.to_be_bytes());
    v[4..].copy_from_slice(&b.to.0.to_be_bytes());
    v
}

fn scratch_key(txid: &Txid, txnum: TxNum) -> Vec<u8> {
    let mut k = txid.0[..SCRATCH_PREFIX].to_vec();
    k.extend_from_slice(&txnum.to_bytes());
    k
}

impl Store {
    /// The blocks whose spends the spender index still lacks, if any.
    pub fn spender_build(&self) -> Result<Option<SpenderBuild>, StoreError> {
        let Some(v) = self.db.get_cf(self.cf(CF_META), KEY_SPENDER_BUILD)? else {
            return Ok(None);
        };
        let v: [u8; 8] = v
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("bad spender_build row".into()))?;
        Ok(Some(SpenderBuild {
            next: Height(u32::from_be_bytes(v[..4].try_into().expect("4 bytes"))),
            to: Height(u32::from_be_bytes(v[4..].try_into().expect("4 bytes"))),
        }))
    }

    /// Adds the spends of `blocks`, the next ones the build needs, in order. Returns what is
    /// left (`None`: the index is complete, and the scratch rows are gone).
    pub fn build_spenders(
        &self,
        blocks: &[ParsedBlock],
    ) -> Result<Option<SpenderBuild>, StoreError> {
        let Some(mut build) = self.spender_build()? else {
            return Ok(None);
        };
        let fail = |detail: String| StoreError::Migration {
            from: 2,
            to: 3,
            detail,
        };
        let mut batch = self.batch();
        // Transactions of these blocks, not yet in the scratch rows.
        let mut recent: HashMap<Txid, TxNum> = HashMap::new();
        for block in blocks {
            let h = build.next;
            if h > build.to {
                return Err(fail(format!(
                    "block {} past the build's end {}",
                    block.hash, build.to
                )));
            }
            if self.block_hash(h)? != Some(block.hash) {
                return Err(fail(format!(
                    "block {} is not this index's block {h}",
                    block.hash
                )));
            }
            let txnums = self
                .block_txnums(h)
                .ok_or_else(|| fail(format!("no tx count for height {h}")))?;
            if txnums.end - txnums.start != block.txs.len() as u64 {
                return Err(fail(format!("block {h} has another transaction count")));
            }
            for (tx, n) in block.txs.iter().zip(txnums.clone()) {
                recent.insert(tx.txid, TxNum(n));
                for input in &tx.inputs {
                    let funding = match recent.get(&input.txid) {
                        Some(t) => *t,
                        None => self.scratch_txnum(&input.txid)?.ok_or_else(|| {
                            fail(format!(
                                "{}:{} spends an unknown transaction",
                                tx.txid, input.vout
                            ))
                        })?,
                    };
                    let spend = Spend {
                        funding,
                        spending: TxNum(n),
                    };
                    batch.put_spender(input, spend);
                }
            }
            build.next = Height(h.0 + 1);
        }
        let scratch = self.cf(CF_SPENDER_BUILD);
        for (txid, txnum) in &recent {
            batch.wb.put_cf(scratch, scratch_key(txid, *txnum), []);
        }
        let meta = self.cf(CF_META);
        let done = build.next > build.to;
        if done {
            batch.wb.delete_cf(meta, KEY_SPENDER_BUILD);
        } else {
            batch.wb.put_cf(meta, KEY_SPENDER_BUILD, encode(build));
        }
        self.db.write(batch.wb)?;
        if !done {
            return Ok(Some(build));
        }
        let end = [0xffu8; 64];
        self.db
            .delete_range_cf(scratch, [].as_slice(), end.as_slice())?;
        self.db
            .compact_range_cf(scratch, None::<&[u8]>, None::<&[u8]>);
        Ok(None)
    }

    /// The number of a transaction of an earlier block, from the scratch rows.
    fn scratch_txnum(&self, txid: &Txid) -> Result<Option<TxNum>, StoreError> {
        let mut candidates = Vec::new();
        self.scan_prefix(CF_SPENDER_BUILD, &txid.0[..SCRATCH_PREFIX], |k, _| {
            candidates.push(TxNum::from_bytes(&k[SCRATCH_PREFIX..]));
            true
        })?;
        for c in candidates {
            if self.txid(c)? == Some(*txid) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}
