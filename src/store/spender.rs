//! The spender index: for every output spent in the chain, which transaction spent it.
//!
//! `spender` rows use the `utxo` family's key — txid\[..4\] ‖ vout ‖ tx num of the funding
//! transaction — so spending an output moves its key from one family to the other, and a
//! lookup is the same prefix seek with the same check of the candidates' full txids. The value
//! is the spending transaction's number: its txid and height follow from it. Rows are written
//! with the block (`index::writer`; a bulk load's wait in a file of runs until it ends, see
//! `runs`), removed when a reorg undoes it, and built once for a database from before them
//! (`migrations/`).

use super::runs::SpenderRow;
use super::{
    outpoint_prefix, utxo_key, Batch, Mode, Store, StoreError, CF_SPENDER, OUTPOINT_PREFIX_LEN,
};
use crate::types::{OutPoint, TxNum};

/// A confirmed spend: the funding and the spending transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spend {
    pub funding: TxNum,
    pub spending: TxNum,
}

impl Store {
    /// Who spent `outpoint` in the chain, if a committed block did.
    pub fn spender(&self, outpoint: &OutPoint) -> Result<Option<Spend>, StoreError> {
        self.settle_runs()?;
        let prefix = outpoint_prefix(&outpoint.txid, outpoint.vout);
        let mut candidates = Vec::new();
        self.scan_prefix(CF_SPENDER, &prefix, |k, v| {
            if v.len() == TxNum::LEN {
                candidates.push(Spend {
                    funding: TxNum::from_bytes(&k[OUTPOINT_PREFIX_LEN..]),
                    spending: TxNum::from_bytes(v),
                });
            }
            true
        })?;
        let tx_count = self.tx_count();
        for c in candidates {
            // A row past the tip belongs to a batch that never committed.
            if c.spending.0 < tx_count && self.txid(c.funding)? == Some(outpoint.txid) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

impl Store {
    /// Makes this a database from before the spender index (schema 2), for tests of its build.
    #[doc(hidden)]
    pub fn forget_spenders(&self) -> Result<(), StoreError> {
        let end = [0xffu8; 64];
        self.db
            .delete_range_cf(self.cf(CF_SPENDER), [].as_slice(), end.as_slice())?;
        self.set_schema_version(2)
    }
}

impl Batch<'_> {
    pub(crate) fn put_spender(&mut self, outpoint: &OutPoint, spend: Spend) {
        self.wb.put_cf(
            self.store.cf(CF_SPENDER),
            utxo_key(&outpoint.txid, outpoint.vout, spend.funding),
            spend.spending.to_bytes(),
        );
    }

    /// Spender rows in key order: in a bulk load a run of `runs`, otherwise rows of the batch.
    pub(crate) fn put_spender_rows(&mut self, rows: Vec<(OutPoint, Spend)>) {
        if self.store.mode() == Mode::Bulk {
            debug_assert!(self.spender_run.is_empty(), "one run per batch");
            self.spender_run = rows
                .iter()
                .map(|(op, spend)| {
                    let mut key = [0u8; OUTPOINT_PREFIX_LEN + TxNum::LEN];
                    key[..OUTPOINT_PREFIX_LEN].copy_from_slice(&outpoint_prefix(&op.txid, op.vout));
                    key[OUTPOINT_PREFIX_LEN..].copy_from_slice(&spend.funding.to_bytes());
                    SpenderRow::new(&key, spend.spending)
                })
                .collect();
        } else {
            for (op, spend) in rows {
                self.put_spender(&op, spend);
            }
        }
    }

    /// Removes the spend of `outpoint` (funded by `funding`), if there is one.
    pub(crate) fn delete_spender(&mut self, outpoint: &OutPoint, funding: TxNum) {
        self.deletes_run_rows = true;
        self.wb.delete_cf(
            self.store.cf(CF_SPENDER),
            utxo_key(&outpoint.txid, outpoint.vout, funding),
        );
    }
}
