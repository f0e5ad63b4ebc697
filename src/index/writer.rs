//! Applies parsed blocks to the store: numbers transactions, adds history rows, moves UTXOs,
//! records undo data near the tip, and commits in atomic batches that carry the new tip.
//!
//! Outputs created since the last flush stay in memory, so an output spent soon after it was
//! created never touches the database at all.

use std::collections::HashMap;
use std::sync::Arc;

use crate::coin::ParsedBlock;
use crate::index::undo::UndoRecord;
use crate::store::{Batch, Store, StoredUtxo, Tip};
use crate::types::{BlockHash, HashX, Height, OutPoint, TxNum};

/// Estimated bytes of memory per pending output (key, value and hash-map overhead).
const PENDING_UTXO_BYTES: usize = 120;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("block {height} ({hash}) does not build on our tip {tip}")]
    NotOnTip {
        height: Height,
        hash: BlockHash,
        tip: BlockHash,
    },
    #[error(
        "block {height}: transaction {txid} spends {spent}:{vout}, which is not in the UTXO set; \
         the index is inconsistent with the daemon's chain — delete DB_DIRECTORY to reindex"
    )]
    MissingUtxo {
        height: Height,
        txid: String,
        spent: String,
        vout: u32,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Blocks applied since the last commit.
struct Pending<'a> {
    batch: Batch<'a>,
    utxos: HashMap<OutPoint, StoredUtxo>,
    counts: Vec<u64>,
    first_height: Height,
    history: Vec<(HashX, TxNum)>,
    spent: Vec<(OutPoint, StoredUtxo)>,
}

/// What a commit changed, for notifications.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub tip: Option<Tip>,
    /// Scripts whose history changed.
    pub touched: Vec<HashX>,
}

pub struct Writer {
    store: Arc<Store>,
    reorg_limit: u32,
    /// Undo data is kept for blocks at or above this height.
    undo_from: Height,
    flush_bytes: usize,
    tip: Option<Tip>,
    touched: Vec<HashX>,
    collect_touched: bool,
}

impl Writer {
    pub fn new(store: Arc<Store>, reorg_limit: u32, flush_bytes: usize) -> Writer {
        let tip = store.tip();
        Writer {
            store,
            reorg_limit,
            undo_from: Height(0),
            flush_bytes,
            tip,
            touched: Vec::new(),
            collect_touched: false,
        }
    }

    /// Undo data is needed only for blocks a reorg can still remove: the last `REORG_LIMIT`
    /// below the daemon's tip. Skipping it further down makes the initial sync faster.
    pub fn set_daemon_height(&mut self, daemon_height: Height) {
        self.undo_from = Height(daemon_height.0.saturating_sub(self.reorg_limit));
    }

    /// Whether to remember touched scripts (only worth it once clients may be listening).
    pub fn collect_touched(&mut self, yes: bool) {
        self.collect_touched = yes;
    }

    pub fn tip(&self) -> Option<Tip> {
        self.tip
    }

    /// Applies blocks in order, committing whenever the pending data outgrows the budget and
    /// once at the end. Returns what changed.
    pub fn apply(&mut self, blocks: &[ParsedBlock]) -> Result<Applied, WriteError> {
        let store = self.store.clone();
        let mut pending: Option<Pending> = None;
        for block in blocks {
            let p = pending.get_or_insert_with(|| Pending {
                batch: store.batch(),
                utxos: HashMap::new(),
                counts: Vec::new(),
                first_height: self.next_height(),
                history: Vec::new(),
                spent: Vec::new(),
            });
            self.apply_block(p, block)?;
            let size = p.batch.size_in_bytes()
                + p.utxos.len() * PENDING_UTXO_BYTES
                + p.history.len() * 40
                + p.spent.len() * 80;
            if size >= self.flush_bytes {
                self.commit(pending.take().expect("pending"))?;
            }
        }
        if let Some(p) = pending {
            self.commit(p)?;
        }
        Ok(Applied {
            tip: self.tip,
            touched: std::mem::take(&mut self.touched),
        })
    }

    fn next_height(&self) -> Height {
        self.tip.map_or(Height(0), |t| Height(t.height.0 + 1))
    }

    fn apply_block(&mut self, p: &mut Pending<'_>, block: &ParsedBlock) -> Result<(), WriteError> {
        let height = self.next_height();
        if let Some(tip) = self.tip {
            if block.prev_hash != tip.hash {
                return Err(WriteError::NotOnTip {
                    height,
                    hash: block.hash,
                    tip: tip.hash,
                });
            }
        }
        let first_txnum = self.tip.map_or(0, |t| t.tx_count);
        let keep_undo = height >= self.undo_from;
        let mut undo = UndoRecord::default();
        let mut touched: Vec<HashX> = Vec::new();

        for (i, tx) in block.txs.iter().enumerate() {
            let txnum = TxNum(first_txnum + i as u64);
            p.batch.put_txid(txnum, &tx.txid);
            // ElectrumX never indexes the genesis coinbase: its output cannot be spent.
            if height.0 == 0 {
                continue;
            }
            touched.clear();
            for input in &tx.inputs {
                let (utxo, in_db) = match p.utxos.remove(input) {
                    Some(u) => (u, false),
                    None => match self.store.lookup_spent_utxo(input)? {
                        Some(u) => (u, true),
                        None => {
                            return Err(WriteError::MissingUtxo {
                                height,
                                txid: tx.txid.to_string(),
                                spent: input.txid.to_string(),
                                vout: input.vout,
                            })
                        }
                    },
                };
                if in_db {
                    p.spent.push((*input, utxo));
                }
                if keep_undo && utxo.txnum.0 < first_txnum {
                    undo.spent.push((*input, utxo));
                }
                touched.push(utxo.hashx);
            }
            for (vout, out) in tx.outputs.iter().enumerate() {
                let Some(sh) = out.scripthash else { continue };
                let hashx = sh.hashx();
                let op = OutPoint {
                    txid: tx.txid,
                    vout: vout as u32,
                };
                let utxo = StoredUtxo {
                    hashx,
                    txnum,
                    value: out.value,
                };
                p.utxos.insert(op, utxo);
                if keep_undo {
                    undo.created.push((op, utxo));
                }
                touched.push(hashx);
            }
            if let Some(keva) = &tx.keva {
                crate::keva::record::add_confirmed(&mut p.batch, txnum, tx, keva, &mut touched);
            }
            touched.sort_unstable();
            touched.dedup();
            for hashx in &touched {
                p.history.push((*hashx, txnum));
                if keep_undo {
                    undo.history.push((*hashx, txnum));
                }
            }
            if self.collect_touched {
                self.touched.extend_from_slice(&touched);
            }
        }

        let tx_count = first_txnum + block.txs.len() as u64;
        p.batch.put_block(height, &block.header, tx_count);
        if keep_undo {
            p.batch.put_undo(height, &undo.encode());
        }
        if height.0 >= self.reorg_limit {
            p.batch.delete_undo(Height(height.0 - self.reorg_limit));
        }
        p.counts.push(tx_count);
        self.tip = Some(Tip {
            height,
            hash: block.hash,
            tx_count,
        });
        Ok(())
    }

    fn commit(&mut self, mut p: Pending<'_>) -> Result<(), WriteError> {
        // Rows in key order per column family: RocksDB's skiplist memtable then inserts each
        // row next to the previous one instead of searching from the top.
        p.history.sort_unstable();
        for (hashx, txnum) in &p.history {
            p.batch.put_history(hashx, *txnum);
        }
        let mut puts: Vec<(OutPoint, StoredUtxo)> = p.utxos.drain().collect();
        let okey = |(op, u): &(OutPoint, StoredUtxo)| (op.txid.0[..4].to_vec(), op.vout, u.txnum);
        let skey = |(op, u): &(OutPoint, StoredUtxo)| (u.hashx, u.txnum, op.vout);
        puts.sort_unstable_by_key(okey);
        for (op, u) in &puts {
            p.batch.put_utxo_outpoint(op, u);
        }
        puts.sort_unstable_by_key(skey);
        for (op, u) in &puts {
            p.batch.put_utxo_script(op, u);
        }
        p.spent.sort_unstable_by_key(okey);
        for (op, u) in &p.spent {
            p.batch.delete_utxo_outpoint(op, u);
        }
        p.spent.sort_unstable_by_key(skey);
        for (op, u) in &p.spent {
            p.batch.delete_utxo_script(op, u);
        }
        self.store
            .commit(p.batch, self.tip, p.first_height, &p.counts)?;
        if let Some(t) = self.tip {
            tracing::debug!("committed blocks {}..={}", p.first_height, t.height);
        }
        Ok(())
    }

    /// Rolls back the tip block using its undo record. Returns the scripts it touched.
    pub fn undo_tip(&mut self) -> Result<Vec<HashX>, UndoError> {
        let tip = self.tip.ok_or(UndoError::NothingToUndo)?;
        let raw = self
            .store
            .undo(tip.height)?
            .ok_or(UndoError::NoUndoData(tip.height))?;
        let rec = UndoRecord::decode(&raw).ok_or(UndoError::Damaged(tip.height))?;
        let range = self
            .store
            .block_txnums(tip.height)
            .ok_or(UndoError::Damaged(tip.height))?;
        let mut batch = self.store.batch();
        for (op, utxo) in &rec.created {
            batch.delete_utxo(op, utxo);
        }
        for (op, utxo) in &rec.spent {
            batch.put_utxo(op, utxo);
        }
        for (hashx, txnum) in &rec.history {
            batch.delete_history(hashx, *txnum);
        }
        crate::keva::record::undo_block(&self.store, &mut batch, range.clone())?;
        for txnum in range.clone() {
            batch.delete_txid(TxNum(txnum));
        }
        batch.delete_block(tip.height);
        let new_tip = if tip.height.0 == 0 {
            None
        } else {
            let h = Height(tip.height.0 - 1);
            let header = self.store.header(h)?.ok_or(UndoError::Damaged(h))?;
            Some(Tip {
                height: h,
                hash: self.store.chain_hash(&header),
                tx_count: range.start,
            })
        };
        self.store.commit(batch, new_tip, tip.height, &[])?;
        self.tip = new_tip;
        let mut touched: Vec<HashX> = rec.history.iter().map(|(h, _)| *h).collect();
        touched.sort_unstable();
        touched.dedup();
        Ok(touched)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("nothing to undo: the index is empty")]
    NothingToUndo,
    #[error(
        "no undo information for height {0}: the reorg is deeper than REORG_LIMIT; stop Sextant, \
         delete DB_DIRECTORY and reindex"
    )]
    NoUndoData(Height),
    #[error("undo information for height {0} is damaged; delete DB_DIRECTORY and reindex")]
    Damaged(Height),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::{CoinRegistry, ParsedOutput, ParsedTx};
    use crate::store::Mode;
    use crate::types::{ScriptHash, Txid};

    fn open(dir: &std::path::Path) -> Arc<Store> {
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup("Litecoin", "regtest")
            .unwrap();
        Arc::new(Store::open(dir, &coin, 64, Mode::Follow).unwrap())
    }

    fn sh(n: u8) -> ScriptHash {
        ScriptHash::of_script(&[n])
    }

    fn tx(tag: u8, inputs: Vec<OutPoint>, outs: &[(u8, u64)]) -> ParsedTx {
        ParsedTx {
            txid: Txid(crate::types::sha256d(&[tag, inputs.len() as u8])),
            inputs,
            outputs: outs
                .iter()
                .map(|(s, v)| ParsedOutput {
                    value: *v,
                    scripthash: Some(sh(*s)),
                })
                .collect(),
            vsize: 100,
            keva: None,
        }
    }

    fn block(prev: BlockHash, nonce: u8, txs: Vec<ParsedTx>) -> ParsedBlock {
        let mut header = vec![0u8; 80];
        header[4..36].copy_from_slice(&prev.0);
        header[79] = nonce;
        ParsedBlock {
            hash: BlockHash(crate::types::sha256d(&header)),
            prev_hash: prev,
            header,
            txs,
        }
    }

    fn op(t: &ParsedTx, vout: u32) -> OutPoint {
        OutPoint { txid: t.txid, vout }
    }

    /// genesis, then a block paying scripts 1 and 2, then a block spending across blocks and
    /// within itself.
    fn chain() -> Vec<ParsedBlock> {
        let g = block(BlockHash::default(), 0, vec![tx(0, vec![], &[(9, 50)])]);
        let cb1 = tx(1, vec![], &[(1, 50), (2, 25)]);
        let b1 = block(g.hash, 1, vec![cb1.clone()]);
        let spend = tx(2, vec![op(&cb1, 0)], &[(3, 30), (1, 19)]);
        let child = tx(3, vec![op(&spend, 0)], &[(4, 29)]);
        let b2 = block(b1.hash, 2, vec![tx(4, vec![], &[(5, 50)]), spend, child]);
        vec![g, b1, b2]
    }

    #[test]
    fn applies_history_utxos_and_spends() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        let blocks = chain();
        w.apply(&blocks).unwrap();
        assert_eq!(store.tip().unwrap().height, Height(2));
        assert_eq!(store.tx_count(), 5);
        // Script 1: paid in block 1 (tx 1), spent and paid again in block 2 (tx 3).
        assert_eq!(
            store.history(&sh(1).hashx()).unwrap(),
            vec![TxNum(1), TxNum(3)]
        );
        let u = store.script_utxos(&sh(1).hashx()).unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].txnum, u[0].vout, u[0].value), (TxNum(3), 1, 19));
        // Script 3 received and was spent inside the same block: history, no UTXO.
        assert_eq!(
            store.history(&sh(3).hashx()).unwrap(),
            vec![TxNum(3), TxNum(4)]
        );
        assert!(store.script_utxos(&sh(3).hashx()).unwrap().is_empty());
        // The genesis coinbase is never indexed.
        assert!(store.history(&sh(9).hashx()).unwrap().is_empty());
        assert_eq!(store.txnum_height(TxNum(4)), Some(Height(2)));
        assert_eq!(store.txnum_height(TxNum(5)), None);
    }

    #[test]
    fn undo_restores_exactly_the_previous_state() {
        let blocks = chain();
        let dir_a = tempfile::tempdir().unwrap();
        let a = open(dir_a.path());
        let mut wa = Writer::new(a.clone(), 10, 1 << 20);
        wa.apply(&blocks[..2]).unwrap();

        let dir_b = tempfile::tempdir().unwrap();
        let b = open(dir_b.path());
        // Tiny flush budget: every block its own commit, like following the tip.
        let mut wb = Writer::new(b.clone(), 10, 1);
        wb.apply(&blocks).unwrap();
        let touched = wb.undo_tip().unwrap();
        assert!(touched.contains(&sh(3).hashx()));
        assert_eq!(a.dump().unwrap(), b.dump().unwrap());
        assert_eq!(a.tip(), b.tip());
        // And the chain can grow again from there.
        wb.apply(&blocks[2..]).unwrap();
        assert_eq!(b.tx_count(), 5);
    }

    #[test]
    fn undo_beyond_kept_data_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store.clone(), 1, 1 << 20);
        w.apply(&chain()).unwrap();
        w.undo_tip().unwrap();
        assert!(matches!(
            w.undo_tip(),
            Err(UndoError::NoUndoData(Height(1)))
        ));
    }

    #[test]
    fn a_block_not_on_the_tip_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        let blocks = chain();
        w.apply(&blocks[..1]).unwrap();
        let err = w.apply(&blocks[2..]).unwrap_err();
        assert!(matches!(err, WriteError::NotOnTip { .. }));
        assert_eq!(store.tip().unwrap().height, Height(0));
    }

    #[test]
    fn a_missing_utxo_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store, 10, 1 << 20);
        let g = block(BlockHash::default(), 0, vec![tx(0, vec![], &[(9, 50)])]);
        let bogus = OutPoint {
            txid: Txid([7; 32]),
            vout: 0,
        };
        let b1 = block(
            g.hash,
            1,
            vec![tx(1, vec![], &[]), tx(2, vec![bogus], &[(1, 1)])],
        );
        let err = w.apply(&[g, b1]).unwrap_err().to_string();
        assert!(err.contains("not in the UTXO set"), "{err}");
    }
}
