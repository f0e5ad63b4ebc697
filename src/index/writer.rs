//! Applies parsed blocks to the store: numbers transactions, adds history rows, moves UTXOs,
//! records undo data near the tip, and commits in atomic batches that carry the new tip.
//!
//! Outputs created since the last flush stay in memory, so an output spent soon after it was
//! created never touches the database at all.

use std::collections::HashMap;
use std::mem::take;
use std::sync::Arc;

use crate::coin::ParsedBlock;
use crate::index::prefetch::Found;
use crate::index::undo::UndoRecord;
use crate::store::{utxo_order, Batch, Mode, Spend, Store, StoredUtxo, Tip};
use crate::types::{BlockHash, HashX, Height, OutPoint, TxNum, Txid};

/// Estimated bytes of memory per pending output (key, value and hash-map overhead).
const PENDING_UTXO_BYTES: usize = 120;

/// The `looked_up_below` of blocks no prefetch stage read ahead for: the writer looks up
/// every input it does not hold itself.
const NOT_PREFETCHED: u64 = u64::MAX;

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

/// Blocks applied since the last commit: plain rows, written to one batch at commit time so
/// they can be added in key order per column family.
#[derive(Default)]
struct Pending {
    first_height: Height,
    /// Cumulative tx counts of the pending heights.
    counts: Vec<u64>,
    headers: Vec<(Height, Vec<u8>)>,
    txids: Vec<(TxNum, crate::types::Txid)>,
    undo: Vec<(Height, Vec<u8>)>,
    undo_deletes: Vec<Height>,
    utxos: HashMap<OutPoint, StoredUtxo, OutPointHashing>,
    history: Vec<(HashX, TxNum)>,
    spent: Vec<(OutPoint, StoredUtxo)>,
    /// Every spend of the pending blocks, for the spender index.
    spenders: Vec<(OutPoint, Spend)>,
    /// Kevacoin's per-transaction rows (key, value).
    keva: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of headers, undo records and keva rows held.
    blob_bytes: usize,
}

impl Pending {
    fn new(first_height: Height) -> Pending {
        Pending {
            first_height,
            ..Pending::default()
        }
    }

    /// Estimated memory held, checked against the flush budget.
    fn size(&self) -> usize {
        self.blob_bytes
            + self.txids.len() * 40
            + self.utxos.len() * PENDING_UTXO_BYTES
            + self.history.len() * 40
            + self.spent.len() * 80
            + self.spenders.len() * 56
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Approximate bytes of the write batch these rows make (keys, values and per-row framing);
    /// a bulk load's history and spender rows are not in it.
    fn write_size(&self, bulk: bool) -> usize {
        self.blob_bytes
            + self.headers.len() * 40
            + self.txids.len() * 48
            + if bulk { 0 } else { self.history.len() * 24 }
            + self.utxos.len() * 80
            + self.spent.len() * 40
            + if bulk { 0 } else { self.spenders.len() * 40 }
    }

    /// Puts every row into `batch`, each kind freed as soon as it is in: the staged rows and
    /// the batch they become were both held until the write, and then beside the memtables
    /// the write fills (a heap profile of a 10M sync: 180 MB staged beside a 134 MB batch).
    /// Returns the new outputs in [`utxo_order`], for [`Recent`].
    fn write_into(mut self, batch: &mut Batch<'_>) -> Vec<(OutPoint, StoredUtxo)> {
        for ((height, header), count) in take(&mut self.headers).into_iter().zip(&self.counts) {
            batch.put_block(height, &header, *count);
        }
        for (txnum, txid) in take(&mut self.txids) {
            batch.put_txid(txnum, &txid);
        }
        for (height, record) in take(&mut self.undo) {
            batch.put_undo(height, &record);
        }
        for height in take(&mut self.undo_deletes) {
            batch.delete_undo(height);
        }
        let mut keva = take(&mut self.keva);
        keva.sort_unstable();
        for (key, value) in keva {
            batch.put_keva(&key, &value);
        }
        // Rows in key order per column family: RocksDB's skiplist memtable then inserts each
        // row next to the previous one instead of searching from the top.
        let mut history = take(&mut self.history);
        history.sort_unstable();
        batch.put_history_rows(history);
        let okey = |(op, u): &(OutPoint, StoredUtxo)| (utxo_order(op), u.txnum);
        let skey = |(op, u): &(OutPoint, StoredUtxo)| (u.hashx, u.txnum, op.vout);
        // Collected from the map by value, so that its table is freed here too.
        let mut puts: Vec<(OutPoint, StoredUtxo)> = take(&mut self.utxos).into_iter().collect();
        puts.sort_unstable_by_key(skey);
        for (op, u) in &puts {
            batch.put_utxo_script(op, u);
        }
        puts.sort_unstable_by_key(okey);
        for (op, u) in &puts {
            batch.put_utxo_outpoint(op, u);
        }
        let mut spent = take(&mut self.spent);
        spent.sort_unstable_by_key(okey);
        for (op, u) in &spent {
            batch.delete_utxo_outpoint(op, u);
        }
        spent.sort_unstable_by_key(skey);
        for (op, u) in spent {
            batch.delete_utxo_script(&op, &u);
        }
        let mut spenders = take(&mut self.spenders);
        spenders.sort_unstable_by_key(|(op, s)| {
            let prefix: [u8; 4] = op.txid.0[..4].try_into().expect("4 bytes");
            (prefix, op.vout, s.funding)
        });
        batch.put_spender_rows(spenders);
        puts
    }
}

/// The outputs the last commit wrote, kept until the prefetch stage has caught up with it.
/// The batches it read before that commit left their spends of then-uncommitted outputs to
/// the writer's staged set, which the commit emptied: without these, each such spend (a
/// sizeable share of a mainnet-shaped chain's inputs, which spend young coins mostly) was a
/// store lookup, 8.5% of the CPU of a 10M-transaction sync (perf).
struct Recent {
    /// Tx count after the commit: a batch prefetched at or past it needs none of these.
    end: u64,
    /// In [`utxo_order`], then by tx number.
    utxos: Vec<(OutPoint, StoredUtxo)>,
}

impl Recent {
    fn get(&self, outpoint: &OutPoint) -> Option<StoredUtxo> {
        let order = utxo_order(outpoint);
        let from = self.utxos.partition_point(|(op, _)| utxo_order(op) < order);
        self.utxos[from..]
            .iter()
            .take_while(|(op, _)| utxo_order(op) == order)
            .find(|(op, _)| op == outpoint)
            .map(|(_, u)| *u)
    }
}

/// Hashing for pending outpoints. Txids are already uniformly distributed hashes, so SipHash's
/// work buys nothing here; a per-process random key still keeps bucket placement
/// unpredictable to whoever crafts transactions.
#[derive(Clone, Copy)]
struct OutPointHashing(u64);

impl Default for OutPointHashing {
    fn default() -> Self {
        use std::hash::BuildHasher;
        OutPointHashing(std::collections::hash_map::RandomState::new().hash_one(0x5e7a47u64) | 1)
    }
}

impl std::hash::BuildHasher for OutPointHashing {
    type Hasher = OutPointHasher;
    fn build_hasher(&self) -> OutPointHasher {
        OutPointHasher(self.0)
    }
}

struct OutPointHasher(u64);

impl std::hash::Hasher for OutPointHasher {
    fn write(&mut self, bytes: &[u8]) {
        // The txid's first eight bytes carry enough entropy; other writes (the slice length
        // prefix) are mixed in whole.
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.mix(u64::from_le_bytes(word));
    }
    fn write_u32(&mut self, v: u32) {
        self.mix(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
    fn finish(&self) -> u64 {
        let x = self.0 ^ (self.0 >> 29);
        x.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (x >> 32)
    }
}

impl OutPointHasher {
    fn mix(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(23);
    }
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
    /// Our tip including staged blocks; the store's tip lags until they are committed.
    tip: Option<Tip>,
    pending: Option<Pending>,
    recent: Option<Recent>,
    touched: Vec<HashX>,
    collect_touched: bool,
    /// Spent outputs looked up in the store one at a time.
    #[cfg(test)]
    store_lookups: usize,
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
            pending: None,
            recent: None,
            touched: Vec::new(),
            collect_touched: false,
            #[cfg(test)]
            store_lookups: 0,
        }
    }

    /// Undo data is needed only for blocks a reorg can still remove: the last `REORG_LIMIT`
    /// below the daemon's tip. Skipping it further down makes the initial sync faster.
    pub fn set_daemon_height(&mut self, daemon_height: Height) {
        self.undo_from = Height(daemon_height.0.saturating_sub(self.reorg_limit));
    }

    /// Whether to remember touched scripts (only worth it once clients may be listening).
    pub(crate) fn collect_touched(&mut self, yes: bool) {
        self.collect_touched = yes;
    }

    /// The tip including blocks staged but not yet committed.
    pub fn tip(&self) -> Option<Tip> {
        self.tip
    }

    /// Estimated memory held by blocks staged but not yet committed (and the outputs of the
    /// last commit still kept).
    pub(crate) fn staged_bytes(&self) -> usize {
        let recent = self.recent.as_ref().map_or(0, |r| {
            r.utxos.len() * std::mem::size_of::<(OutPoint, StoredUtxo)>()
        });
        self.pending.as_ref().map_or(0, Pending::size) + recent
    }

    /// Applies blocks in order and commits them. Returns what changed. On an error nothing of
    /// the call stays staged (only what the budget already committed), so the caller can keep
    /// other state, such as the mempool, in step with what the store holds.
    pub fn apply(&mut self, blocks: &[ParsedBlock]) -> Result<Applied, WriteError> {
        self.apply_prefetched(blocks, Found::default(), NOT_PREFETCHED)
    }

    /// [`Writer::apply`] with the spent outputs a [`crate::index::prefetch`] stage already read
    /// from the store for the spends of transactions numbered below `looked_up_below`; inputs
    /// it did not find are looked up as usual.
    pub(crate) fn apply_prefetched(
        &mut self,
        blocks: &[ParsedBlock],
        mut found: Found,
        looked_up_below: u64,
    ) -> Result<Applied, WriteError> {
        if let Err(e) = self.stage_found(blocks, &mut found, looked_up_below) {
            self.pending = None;
            self.tip = self.store.tip();
            return Err(e);
        }
        self.commit()
    }

    /// [`Writer::stage`] with the spent outputs a prefetch stage read ahead.
    pub(crate) fn stage_prefetched(
        &mut self,
        blocks: &[ParsedBlock],
        mut found: Found,
        looked_up_below: u64,
    ) -> Result<(), WriteError> {
        self.stage_found(blocks, &mut found, looked_up_below)
    }

    /// Applies blocks in order, committing only when the staged data outgrows the budget.
    /// Outputs created and spent while staged never reach the database, so the initial sync
    /// stages many batches between commits; [`Writer::commit`] makes them durable.
    pub fn stage(&mut self, blocks: &[ParsedBlock]) -> Result<(), WriteError> {
        self.stage_found(blocks, &mut Found::default(), NOT_PREFETCHED)
    }

    fn stage_found(
        &mut self,
        blocks: &[ParsedBlock],
        found: &mut Found,
        looked_up_below: u64,
    ) -> Result<(), WriteError> {
        if self
            .recent
            .as_ref()
            .is_some_and(|r| looked_up_below >= r.end)
        {
            self.recent = None;
        }
        for block in blocks {
            let first_height = self.next_height();
            let mut p = self
                .pending
                .take()
                .unwrap_or_else(|| Pending::new(first_height));
            if let Err(e) = self.apply_block(&mut p, block, found) {
                // A block that fails half-way leaves `p` part-applied: drop everything staged
                // and fall back to the committed state.
                if !matches!(e, WriteError::NotOnTip { .. }) {
                    self.tip = self.store.tip();
                    return Err(e);
                }
                self.pending = Some(p);
                return Err(e);
            }
            let full = p.size() >= self.flush_bytes;
            self.pending = Some(p);
            if full {
                self.commit_pending()?;
            }
        }
        Ok(())
    }

    /// Commits everything staged. Returns the committed tip and the scripts touched since the
    /// previous call.
    pub(crate) fn commit(&mut self) -> Result<Applied, WriteError> {
        self.commit_pending()?;
        Ok(Applied {
            tip: self.tip,
            touched: std::mem::take(&mut self.touched),
        })
    }

    /// Whether blocks are staged but not committed.
    #[cfg(test)]
    fn has_staged(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.is_empty())
    }

    fn next_height(&self) -> Height {
        self.tip.map_or(Height(0), |t| Height(t.height.0 + 1))
    }

    fn apply_block(
        &mut self,
        p: &mut Pending,
        block: &ParsedBlock,
        found: &mut Found,
    ) -> Result<(), WriteError> {
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
            p.txids.push((txnum, tx.txid));
            // ElectrumX never indexes the genesis coinbase: its output cannot be spent.
            if height.0 == 0 {
                continue;
            }
            touched.clear();
            for input in &tx.inputs {
                // Staged outputs first: the prefetch leaves outputs not yet committed to us.
                let staged = p.utxos.remove(input).map(|u| (u, false));
                let in_db = staged.or_else(|| {
                    found
                        .remove(input)
                        .or_else(|| self.recent.as_ref()?.get(input))
                        .map(|u| (u, true))
                });
                let (utxo, in_db) = match in_db {
                    Some(hit) => hit,
                    None => match self.lookup_in_store(input)? {
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
                let spend = Spend {
                    funding: utxo.txnum,
                    spending: txnum,
                };
                p.spenders.push((*input, spend));
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
                let before = p.keva.len();
                crate::store::keva::add_confirmed(&mut p.keva, txnum, tx, keva, &mut touched);
                p.blob_bytes += p.keva[before..]
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>();
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
        if keep_undo {
            let record = undo.encode(TxNum(first_txnum));
            p.blob_bytes += record.len();
            p.undo.push((height, record));
        }
        if height.0 >= self.reorg_limit {
            p.undo_deletes.push(Height(height.0 - self.reorg_limit));
        }
        p.blob_bytes += block.header.len() + 16;
        p.headers.push((height, block.header.clone()));
        p.counts.push(tx_count);
        self.tip = Some(Tip {
            height,
            hash: block.hash,
            tx_count,
        });
        Ok(())
    }

    fn lookup_in_store(&mut self, outpoint: &OutPoint) -> Result<Option<StoredUtxo>, WriteError> {
        #[cfg(test)]
        {
            self.store_lookups += 1;
        }
        Ok(self.store.lookup_spent_utxo(outpoint)?)
    }

    fn commit_pending(&mut self) -> Result<(), WriteError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        if p.is_empty() {
            return Ok(());
        }
        // Freed before the batch is built, so they never sit beside it.
        self.recent = None;
        let first_height = p.first_height;
        let counts = p.counts.clone();
        // Sized up front: a batch grown by doubling copies itself again and again.
        let bulk = self.store.mode() == Mode::Bulk;
        let mut batch = self.store.batch_with_capacity(p.write_size(bulk));
        let utxos = p.write_into(&mut batch);
        self.store.commit(batch, self.tip, first_height, &counts)?;
        self.recent = self.tip.map(|t| Recent {
            end: t.tx_count,
            utxos,
        });
        if let Some(t) = self.tip {
            tracing::debug!("committed blocks {}..={}", first_height, t.height);
        }
        Ok(())
    }

    /// Rolls back the tip block using its undo record. Returns the scripts it touched.
    pub(crate) fn undo_tip(&mut self) -> Result<Undone, UndoError> {
        self.commit_pending()
            .map_err(|e| UndoError::Commit(Box::new(e)))?;
        // The block's outputs leave the UTXO set.
        self.recent = None;
        let tip = self.tip.ok_or(UndoError::NothingToUndo)?;
        let raw = self
            .store
            .undo(tip.height)?
            .ok_or(UndoError::NoUndoData(tip.height))?;
        let rec = UndoRecord::decode(&raw, |nums| self.store.txids(nums))?
            .ok_or(UndoError::Damaged(tip.height))?;
        let range = self
            .store
            .block_txnums(tip.height)
            .ok_or(UndoError::Damaged(tip.height))?;
        let txnums: Vec<TxNum> = range.clone().map(TxNum).collect();
        let txids = self.store.txids(&txnums)?;
        let mut batch = self.store.batch();
        // The block's spends go with it: those of older outputs (`spent`) and those of its own
        // (among `created`; deleting a spend that never was is harmless).
        for (op, utxo) in rec.created.iter().chain(&rec.spent) {
            batch.delete_spender(op, utxo.txnum);
        }
        for (op, utxo) in &rec.created {
            batch.delete_utxo(op, utxo);
        }
        for (op, utxo) in &rec.spent {
            batch.put_utxo(op, utxo);
        }
        for (hashx, txnum) in &rec.history {
            batch.delete_history(hashx, *txnum);
        }
        crate::store::keva::undo_block(&self.store, &mut batch, range.clone())?;
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
        let outpoints = rec.created.iter().chain(&rec.spent).map(|(op, _)| *op);
        Ok(Undone {
            touched,
            txids,
            outpoints: outpoints.collect(),
        })
    }
}

/// What undoing a block changed.
#[derive(Debug)]
pub(crate) struct Undone {
    /// Scripts whose history lost entries.
    pub touched: Vec<HashX>,
    /// The block's transactions, no longer confirmed.
    pub txids: Vec<Txid>,
    /// The outputs it created and those it spent.
    pub outpoints: Vec<OutPoint>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UndoError {
    #[error("nothing to undo: the index is empty")]
    NothingToUndo,
    #[error(
        "no undo information for height {0}: the reorg is deeper than REORG_LIMIT; stop Sextant, \
         delete DB_DIRECTORY and reindex"
    )]
    NoUndoData(Height),
    #[error("undo information for height {0} is damaged; delete DB_DIRECTORY and reindex")]
    Damaged(Height),
    #[error("committing staged blocks before the undo: {0}")]
    Commit(#[source] Box<WriteError>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::{ParsedOutput, ParsedTx};
    use crate::index::test_chain::{block, open_store as open};
    use crate::types::{ScriptHash, Txid};

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
    fn spends_are_indexed_with_the_block_and_undone_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store.clone(), 10, 1);
        let blocks = chain();
        let (cb1, spend) = (&blocks[1].txs[0], &blocks[2].txs[1]);
        w.apply(&blocks[..2]).unwrap();
        assert_eq!(store.spender(&op(cb1, 0)).unwrap(), None);
        w.apply(&blocks[2..]).unwrap();
        // Block 2 spends cb1:0 (tx 1) in tx 3, and its own output spend:0 in tx 4.
        assert_eq!(
            store.spender(&op(cb1, 0)).unwrap(),
            Some(Spend {
                funding: TxNum(1),
                spending: TxNum(3)
            })
        );
        assert_eq!(
            store.spender(&op(spend, 0)).unwrap(),
            Some(Spend {
                funding: TxNum(3),
                spending: TxNum(4)
            })
        );
        assert_eq!(store.spender(&op(cb1, 1)).unwrap(), None);
        assert_eq!(store.spender(&op(spend, 1)).unwrap(), None);
        // Same prefix and vout, another txid: not it.
        let mut other = op(cb1, 0);
        other.txid.0[31] ^= 1;
        assert_eq!(store.spender(&other).unwrap(), None);
        w.undo_tip().unwrap();
        assert_eq!(store.spender(&op(cb1, 0)).unwrap(), None);
        assert_eq!(store.spender(&op(spend, 0)).unwrap(), None);
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
        let undone = wb.undo_tip().unwrap();
        assert!(undone.touched.contains(&sh(3).hashx()));
        let block_txids: Vec<Txid> = blocks[2].txs.iter().map(|t| t.txid).collect();
        assert_eq!(undone.txids, block_txids, "the undone block's transactions");
        // What it spent and funded, with txids the record itself does not keep.
        assert!(undone.outpoints.contains(&op(&blocks[1].txs[0], 0)));
        assert!(undone.outpoints.contains(&op(&blocks[2].txs[1], 0)));
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

    #[test]
    fn staged_blocks_are_invisible_until_committed_then_equal_a_per_block_sync() {
        let blocks = chain();
        let dir_a = tempfile::tempdir().unwrap();
        let a = open(dir_a.path());
        let mut wa = Writer::new(a.clone(), 10, 1);
        for b in &blocks {
            wa.apply(std::slice::from_ref(b)).unwrap();
        }

        let dir_b = tempfile::tempdir().unwrap();
        let b = open(dir_b.path());
        let mut wb = Writer::new(b.clone(), 10, 1 << 20);
        // Block 2 spends an output of block 1 from another `stage` call: it must come from
        // the staged outputs, not the database.
        wb.stage(&blocks[..2]).unwrap();
        wb.stage(&blocks[2..]).unwrap();
        assert!(wb.has_staged());
        assert_eq!(wb.tip().unwrap().height, Height(2));
        assert_eq!(b.tip(), None);
        assert!(b.history(&sh(1).hashx()).unwrap().is_empty());
        let applied = wb.commit().unwrap();
        assert!(!wb.has_staged());
        assert_eq!(applied.tip, a.tip());
        assert_eq!(a.dump().unwrap(), b.dump().unwrap());
    }

    #[test]
    fn outputs_of_the_last_commit_serve_the_batches_read_ahead_before_it() {
        let blocks = chain();
        let (cb1, spend) = (&blocks[1].txs[0], &blocks[2].txs[1]);
        let dir_a = tempfile::tempdir().unwrap();
        let a = open(dir_a.path());
        Writer::new(a.clone(), 10, 1 << 20).apply(&blocks).unwrap();

        let dir_b = tempfile::tempdir().unwrap();
        let b = open(dir_b.path());
        let mut w = Writer::new(b.clone(), 10, 1 << 20);
        w.stage(&blocks[..2]).unwrap();
        w.commit().unwrap();
        // Block 2 was read ahead before block 1 was committed (nothing looked up past tx 1):
        // its spend of cb1:0 comes from what the commit kept, not from the store.
        w.stage_prefetched(&blocks[2..], Found::default(), 1)
            .unwrap();
        assert_eq!(w.store_lookups, 0);
        w.commit().unwrap();
        assert_eq!(a.dump().unwrap(), b.dump().unwrap());

        // A batch read after that commit: the prefetch stage looked up what it spends, and
        // the writer keeps nothing for it; what it did not pass is read from the store.
        let b3 = block(
            blocks[2].hash,
            3,
            vec![
                tx(5, vec![], &[(6, 50)]),
                tx(6, vec![op(cb1, 1), op(spend, 1)], &[(7, 44)]),
            ],
        );
        w.stage_prefetched(std::slice::from_ref(&b3), Found::default(), 5)
            .unwrap();
        assert_eq!(w.store_lookups, 2);
        w.commit().unwrap();
        assert!(b.script_utxos(&sh(2).hashx()).unwrap().is_empty());
        assert_eq!(b.script_utxos(&sh(7).hashx()).unwrap().len(), 1);
    }

    #[test]
    fn an_undone_blocks_outputs_are_not_kept_for_later_batches() {
        let blocks = chain();
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        w.apply(&blocks).unwrap();
        w.undo_tip().unwrap();
        // Another block 2 spending an output of the undone one, as if read ahead long ago.
        let spend = &blocks[2].txs[1];
        let other = block(
            blocks[1].hash,
            2,
            vec![
                tx(7, vec![], &[(8, 50)]),
                tx(8, vec![op(spend, 1)], &[(8, 1)]),
            ],
        );
        let err = w
            .apply_prefetched(std::slice::from_ref(&other), Found::default(), 0)
            .unwrap_err();
        assert!(matches!(err, WriteError::MissingUtxo { .. }), "{err}");
    }

    #[test]
    fn staging_commits_by_itself_past_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store.clone(), 10, 1);
        w.stage(&chain()).unwrap();
        assert_eq!(store.tip().unwrap().height, Height(2));
        assert!(!w.has_staged());
    }

    #[test]
    fn a_failed_block_drops_the_staged_blocks_and_keeps_the_committed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        let blocks = chain();
        w.apply(&blocks[..1]).unwrap();
        w.stage(&blocks[1..2]).unwrap();
        let bogus = OutPoint {
            txid: Txid([7; 32]),
            vout: 0,
        };
        let bad = block(blocks[1].hash, 9, vec![tx(9, vec![bogus], &[(1, 1)])]);
        assert!(matches!(
            w.stage(&[bad]),
            Err(WriteError::MissingUtxo { .. })
        ));
        assert!(!w.has_staged());
        assert_eq!(w.tip(), store.tip());
        assert_eq!(w.tip().unwrap().height, Height(0));
        // The writer carries on from the committed tip.
        w.apply(&blocks[1..]).unwrap();
        assert_eq!(store.tx_count(), 5);
    }

    #[test]
    fn apply_keeps_nothing_of_a_refused_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        let blocks = chain();
        w.apply(&blocks[..1]).unwrap();
        // Block 1 is fine, the block after it does not build on it: neither is kept.
        let stray = block(BlockHash([9; 32]), 7, vec![tx(7, vec![], &[(1, 1)])]);
        let err = w.apply(&[blocks[1].clone(), stray]).unwrap_err();
        assert!(matches!(err, WriteError::NotOnTip { .. }));
        assert!(!w.has_staged());
        assert_eq!(w.tip(), store.tip());
        assert_eq!(store.tip().unwrap().height, Height(0));
        w.apply(&blocks[1..]).unwrap();
        assert_eq!(store.tx_count(), 5);
    }

    #[test]
    fn outpoint_hashing_spreads_vouts_and_txids() {
        use std::hash::BuildHasher;
        let h = OutPointHashing::default();
        let mut seen = std::collections::HashSet::new();
        for t in 0..64u8 {
            for vout in 0..64u32 {
                let op = OutPoint {
                    txid: Txid(crate::types::sha256d(&[t])),
                    vout,
                };
                seen.insert(h.hash_one(op));
            }
        }
        assert_eq!(seen.len(), 64 * 64);
    }
}

/// The writer and its undo on Kevacoin transactions: a block's keva rows and name-index
/// history rows go in with it and come out with it, row for row.
#[cfg(test)]
mod keva_tests {
    use std::sync::Arc;

    use super::Writer;
    use crate::coin::keva::index::index_scripthash;
    use crate::coin::keva::script::push_data;
    use crate::coin::{Chain, CoinRegistry, HeaderFamily, ParsedBlock, TxFamily};
    use crate::store::{Mode, Store};
    use crate::types::{BlockHash, Height, Txid};

    const CHAIN: Chain = Chain {
        header: HeaderFamily::Kevacoin,
        tx: TxFamily::Kevacoin,
    };

    fn open(dir: &std::path::Path) -> Arc<Store> {
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup("Kevacoin", "regtest")
            .unwrap();
        Arc::new(Store::open(dir, &coin, 16, Mode::Follow).unwrap())
    }

    /// A one-input transaction (a coinbase when `input` is `None`) with the given outputs.
    fn tx(input: Option<(Txid, u32)>, tag: u8, outputs: &[Vec<u8>]) -> Vec<u8> {
        let mut raw = 0x7100u32.to_le_bytes().to_vec();
        raw.push(1);
        let (txid, vout) = input.unwrap_or((Txid([0; 32]), u32::MAX));
        raw.extend(txid.0);
        raw.extend(vout.to_le_bytes());
        raw.extend([2, 0x51, tag]);
        raw.extend(u32::MAX.to_le_bytes());
        raw.push(outputs.len() as u8);
        for s in outputs {
            raw.extend(1_000_000u64.to_le_bytes());
            raw.push(s.len() as u8);
            raw.extend(s);
        }
        raw.extend(0u32.to_le_bytes());
        raw
    }

    fn block(prev: BlockHash, nonce: u8, txs: &[Vec<u8>]) -> ParsedBlock {
        let mut raw = vec![0u8; 80];
        raw[4..36].copy_from_slice(&prev.0);
        raw.push(4);
        raw.extend([nonce, 1, 2, 3]);
        raw.push(txs.len() as u8);
        for t in txs {
            raw.extend(t);
        }
        CHAIN.parse_block(&raw).unwrap()
    }

    fn put(ns: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut s = vec![0xd1];
        push_data(&mut s, ns);
        push_data(&mut s, key);
        push_data(&mut s, value);
        s.extend([0x6d, 0x75, 0x51]);
        s
    }

    #[test]
    fn undo_removes_every_keva_row_of_the_block() {
        let ns = [0x35; 21];
        let g = block(BlockHash::default(), 0, &[tx(None, 0, &[vec![0x51]])]);
        let cb = CHAIN.parse_tx(&tx(None, 1, &[vec![0x51]])).unwrap();
        let b1 = block(g.hash, 1, &[tx(None, 1, &[vec![0x51]])]);
        let spend = tx(
            Some((cb.txid, 0)),
            2,
            &[put(&ns, b"k", b"#Tag v"), vec![0x52]],
        );
        let b2 = block(b1.hash, 2, &[tx(None, 2, &[vec![0x51]]), spend]);
        assert!(b2.txs[1].keva.as_ref().unwrap().op.is_some());
        let put_txid = b2.txs[1].txid;

        let dir_a = tempfile::tempdir().unwrap();
        let a = open(dir_a.path());
        Writer::new(a.clone(), 10, 1 << 20)
            .apply(&[g.clone(), b1.clone()])
            .unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let b = open(dir_b.path());
        let mut wb = Writer::new(b.clone(), 10, 1);
        wb.apply(&[g, b1, b2.clone()]).unwrap();

        // Applied: the record, the txid row, and history rows of every index entry.
        let txnum = crate::store::keva::txnum(&b, &put_txid).unwrap().unwrap();
        assert_eq!(b.txnum_height(txnum), Some(Height(2)));
        let rec = crate::store::keva::record(&b, txnum).unwrap().unwrap();
        assert_eq!(rec.inputs.len(), 1);
        for name in [&ns[..], &[&ns[..], b"k"].concat(), b"tag"] {
            assert_eq!(
                b.history(&index_scripthash(name).hashx()).unwrap(),
                vec![txnum]
            );
        }

        let undone = wb.undo_tip().unwrap();
        assert!(undone.touched.contains(&index_scripthash(b"tag").hashx()));
        assert!(undone.txids.contains(&put_txid));
        assert_eq!(a.dump().unwrap(), b.dump().unwrap());
        assert_eq!(crate::store::keva::txnum(&b, &put_txid).unwrap(), None);
        // And the block can come back.
        wb.apply(&[b2]).unwrap();
        assert_eq!(
            crate::store::keva::txnum(&b, &put_txid).unwrap(),
            Some(txnum)
        );
    }
}
