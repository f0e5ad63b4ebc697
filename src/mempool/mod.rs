//! An incremental mirror of the daemon's mempool, indexed by script.
//!
//! Each refresh asks for the mempool's txids and fetches only the new transactions. Inputs are
//! resolved against the mempool itself (unconfirmed parents) and then the confirmed UTXO set, so
//! fees and the "spends unconfirmed outputs" flag (Electrum height −1 vs 0) need no extra calls.

mod follow;
mod histogram;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use tracing::debug;

use crate::coin::{Chain, ParsedBlock, ParsedTx};
use crate::daemon::{Daemon, DaemonError};
use crate::store::{Store, StoreError};
use crate::types::{HashX, OutPoint, Txid};
pub use follow::follow;

/// One input's spent output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prevout {
    hashx: HashX,
    value: u64,
    /// Created by another mempool transaction.
    unconfirmed: bool,
}

#[derive(Clone, Debug)]
pub struct MempoolTx {
    pub txid: Txid,
    pub fee: u64,
    pub vsize: u32,
    tx: ParsedTx,
    prevouts: Vec<Prevout>,
    /// Scripts this transaction touches, deduplicated.
    hashxs: Vec<HashX>,
}

impl MempoolTx {
    /// The transaction as parsed.
    pub fn parsed(&self) -> &ParsedTx {
        &self.tx
    }

    /// Electrum's mempool height: −1 when an input spends an unconfirmed output, else 0.
    pub fn height(&self) -> i32 {
        if self.prevouts.iter().any(|p| p.unconfirmed) {
            -1
        } else {
            0
        }
    }
}

/// A mempool entry of a script's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolEntry {
    pub txid: Txid,
    pub height: i32,
    pub fee: u64,
}

/// An unconfirmed, unspent output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolUtxo {
    pub txid: Txid,
    pub vout: u32,
    pub value: u64,
}

#[derive(Default)]
pub struct Mempool {
    txs: HashMap<Txid, MempoolTx>,
    by_hashx: HashMap<HashX, HashSet<Txid>>,
    /// Outpoints spent by mempool transactions, with the spender.
    spends: HashMap<OutPoint, Txid>,
    /// Order of arrival (`mempool.recent`): a transaction keeps its place while it stays in
    /// the mempool, even when a block makes it resolve its inputs again.
    arrival: HashMap<Txid, u64>,
    arrivals: BTreeMap<u64, Txid>,
    next_arrival: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MempoolError {
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a refresh changed.
#[derive(Clone, Debug, Default)]
pub struct MempoolDelta {
    /// False when the refresh was skipped because the daemon's chain and the index differed.
    pub applied: bool,
    pub added: usize,
    pub removed: usize,
    /// Scripts whose mempool entries changed.
    pub touched: Vec<HashX>,
    /// Outpoints spent or created by transactions that came or went.
    pub touched_outpoints: Vec<OutPoint>,
}

/// What the mempool knows of an outpoint (ElectrumX's `spender_for_txo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MempoolOutpoint {
    /// The funding transaction's mempool height (0, or −1 when it has unconfirmed inputs),
    /// when it is in the mempool.
    pub funder: Option<i32>,
    /// The mempool transaction spending it, with its mempool height.
    pub spender: Option<(Txid, i32)>,
    /// The funding transaction is in the mempool but has no such output.
    pub no_such_output: bool,
}

/// The outpoints a transaction touches: what it spends and what it creates.
fn tx_outpoints(tx: &ParsedTx, out: &mut Vec<OutPoint>) {
    out.extend_from_slice(&tx.inputs);
    out.extend((0..tx.outputs.len() as u32).map(|vout| OutPoint {
        txid: tx.txid,
        vout,
    }));
}

/// Brings a shared mempool up to date with the daemon: only new transactions are fetched, and
/// the lock is held only while the changes are applied.
///
/// The snapshot is applied only when it belongs to the chain the index holds: the daemon's
/// height must be the same before and after `getrawmempool` and equal the index's tip.
/// Otherwise a transaction that just confirmed would leave the mempool before its block is
/// indexed (or stay after), and wallets would briefly see it nowhere (or twice). A skipped
/// refresh returns a delta with `applied == false`; the caller retries after the index moves.
pub async fn refresh(
    mempool: &Arc<RwLock<Mempool>>,
    daemon: &Daemon,
    chain: Chain,
    store: &Arc<Store>,
    confirmed_changed: bool,
) -> Result<MempoolDelta, MempoolError> {
    let height_before: u32 = daemon.call("getblockcount", vec![]).await?;
    let ids: HashSet<Txid> = daemon.raw_mempool().await?.into_iter().collect();
    let height_after: u32 = daemon.call("getblockcount", vec![]).await?;
    let indexed = store.tip().map(|t| t.height.0);
    if height_before != height_after || indexed != Some(height_after) {
        return Ok(MempoolDelta::default());
    }
    let new: Vec<Txid> = {
        let m = mempool.read();
        ids.iter()
            .filter(|t| !m.txs.contains_key(t))
            .copied()
            .collect()
    };
    let mut fresh = Vec::with_capacity(new.len());
    for chunk in new.chunks(500) {
        for (txid, raw) in chunk.iter().zip(daemon.raw_transactions(chunk).await?) {
            let Some(raw) = raw else { continue }; // left the mempool meanwhile
            match chain.parse_tx(&raw) {
                Ok(tx) if tx.txid == *txid => fresh.push(tx),
                Ok(tx) => debug!("mempool tx {txid} parsed as {}", tx.txid),
                Err(e) => debug!("mempool tx {txid} does not parse: {e}"),
            }
        }
    }
    let (mempool, store) = (mempool.clone(), store.clone());
    let delta = tokio::task::spawn_blocking(move || {
        // The index may have moved while transactions were fetched. Checked under the lock: the
        // indexer commits blocks while holding it (see `blocks_connected`).
        let mut m = mempool.write();
        if store.tip().map(|t| t.height.0) != Some(height_after) {
            return Ok(MempoolDelta::default());
        }
        m.apply(&ids, fresh, &store, confirmed_changed)
    })
    .await
    .expect("mempool update panicked")?;
    Ok(delta)
}

/// Orders txids as their display hex strings compare, without formatting them.
fn display_order(a: &Txid, b: &Txid) -> std::cmp::Ordering {
    a.0.iter().rev().cmp(b.0.iter().rev())
}

impl Mempool {
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn get(&self, txid: &Txid) -> Option<&MempoolTx> {
        self.txs.get(txid)
    }

    /// Applies one refresh: `ids` is the daemon's mempool now, `fresh` the newly fetched
    /// transactions. `confirmed_changed` says the index moved since the last refresh, so every
    /// transaction's inputs are resolved again (parents may have confirmed, or come back with a
    /// reorg).
    pub fn apply(
        &mut self,
        ids: &HashSet<Txid>,
        fresh: Vec<ParsedTx>,
        store: &Store,
        confirmed_changed: bool,
    ) -> Result<MempoolDelta, StoreError> {
        let mut touched: HashSet<HashX> = HashSet::new();
        let mut touched_outpoints = Vec::new();
        let gone: Vec<Txid> = self
            .txs
            .keys()
            .filter(|t| !ids.contains(t))
            .copied()
            .collect();
        for txid in &gone {
            if let Some(tx) = self.remove(txid) {
                tx_outpoints(&tx.tx, &mut touched_outpoints);
                touched.extend(tx.hashxs);
            }
        }
        let mut waiting: Vec<ParsedTx> = Vec::new();
        if confirmed_changed {
            let txids: Vec<Txid> = self.txs.keys().copied().collect();
            for txid in txids {
                if let Some(tx) = self.remove(&txid) {
                    touched.extend(tx.hashxs.iter().copied());
                    waiting.push(tx.tx);
                }
            }
        }
        let added = fresh.len();
        for tx in &fresh {
            tx_outpoints(tx, &mut touched_outpoints);
        }
        waiting.extend(fresh.into_iter().filter(|t| ids.contains(&t.txid)));
        let dropped = self.admit(waiting, store, &mut touched)?;
        if !dropped.is_empty() {
            debug!("{} mempool txs dropped: inputs not found", dropped.len());
        }
        for tx in &dropped {
            tx_outpoints(tx, &mut touched_outpoints);
        }
        touched_outpoints.sort_unstable_by_key(|o| (o.txid.0, o.vout));
        touched_outpoints.dedup();
        let txs = &self.txs;
        self.arrivals.retain(|_, t| txs.contains_key(t));
        self.arrival.retain(|t, _| txs.contains_key(t));
        Ok(MempoolDelta {
            applied: true,
            added,
            removed: gone.len(),
            touched: touched.into_iter().collect(),
            touched_outpoints,
        })
    }

    /// Called by the indexer right after it committed `blocks` (none after a reorg's undo),
    /// still holding this mempool's write lock: drops the transactions the blocks confirmed (or
    /// conflict with) and resolves the rest again against the new UTXO set. Readers hold the read lock across their store
    /// reads, so no transaction is ever seen both confirmed and unconfirmed — the daemon's next
    /// snapshot would come only after a poll. Returns the scripts whose mempool entries changed,
    /// and the outpoints of the transactions that left.
    pub(crate) fn blocks_connected(
        &mut self,
        blocks: &[ParsedBlock],
        store: &Store,
    ) -> Result<(Vec<HashX>, Vec<OutPoint>), StoreError> {
        if self.txs.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let confirmed: HashSet<Txid> = blocks
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| t.txid))
            .collect();
        let ids: HashSet<Txid> = self
            .txs
            .keys()
            .filter(|t| !confirmed.contains(t))
            .copied()
            .collect();
        let delta = self.apply(&ids, Vec::new(), store, true)?;
        Ok((delta.touched, delta.touched_outpoints))
    }

    /// Adds transactions whose inputs can be resolved, parents before children, and returns
    /// those that could not be.
    fn admit(
        &mut self,
        mut waiting: Vec<ParsedTx>,
        store: &Store,
        touched: &mut HashSet<HashX>,
    ) -> Result<Vec<ParsedTx>, StoreError> {
        loop {
            let before = waiting.len();
            let mut still = Vec::new();
            for tx in waiting {
                match self.resolve(&tx, store)? {
                    Some(prevouts) => {
                        let mtx = self.build(tx, prevouts);
                        touched.extend(mtx.hashxs.iter().copied());
                        self.insert(mtx);
                    }
                    None => still.push(tx),
                }
            }
            waiting = still;
            if waiting.is_empty() || waiting.len() == before {
                return Ok(waiting);
            }
        }
    }

    fn resolve(&self, tx: &ParsedTx, store: &Store) -> Result<Option<Vec<Prevout>>, StoreError> {
        let mut out = Vec::with_capacity(tx.inputs.len());
        for input in &tx.inputs {
            if let Some(parent) = self.txs.get(&input.txid) {
                let Some(o) = parent.tx.outputs.get(input.vout as usize) else {
                    return Ok(None);
                };
                out.push(Prevout {
                    hashx: o.scripthash.map(|s| s.hashx()).unwrap_or_default(),
                    value: o.value,
                    unconfirmed: true,
                });
            } else if let Some(u) = store.lookup_utxo(input)? {
                out.push(Prevout {
                    hashx: u.hashx,
                    value: u.value,
                    unconfirmed: false,
                });
            } else {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }

    fn build(&self, tx: ParsedTx, prevouts: Vec<Prevout>) -> MempoolTx {
        let in_value: u64 = prevouts.iter().map(|p| p.value).sum();
        let out_value: u64 = tx.outputs.iter().map(|o| o.value).sum();
        let mut hashxs: Vec<HashX> = prevouts
            .iter()
            .map(|p| p.hashx)
            .chain(
                tx.outputs
                    .iter()
                    .filter_map(|o| o.scripthash.map(|s| s.hashx())),
            )
            .filter(|h| *h != HashX::default())
            .collect();
        if let Some(keva) = &tx.keva {
            hashxs.extend(keva.mempool_hashxs());
        }
        hashxs.sort_unstable();
        hashxs.dedup();
        MempoolTx {
            txid: tx.txid,
            fee: in_value.saturating_sub(out_value),
            vsize: tx.vsize,
            tx,
            prevouts,
            hashxs,
        }
    }

    fn insert(&mut self, tx: MempoolTx) {
        for h in &tx.hashxs {
            self.by_hashx.entry(*h).or_default().insert(tx.txid);
        }
        for input in &tx.tx.inputs {
            self.spends.insert(*input, tx.txid);
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.arrival.entry(tx.txid) {
            e.insert(self.next_arrival);
            self.arrivals.insert(self.next_arrival, tx.txid);
            self.next_arrival += 1;
        }
        self.txs.insert(tx.txid, tx);
    }

    fn remove(&mut self, txid: &Txid) -> Option<MempoolTx> {
        let tx = self.txs.remove(txid)?;
        for h in &tx.hashxs {
            if let Some(set) = self.by_hashx.get_mut(h) {
                set.remove(txid);
                if set.is_empty() {
                    self.by_hashx.remove(h);
                }
            }
        }
        for input in &tx.tx.inputs {
            if self.spends.get(input) == Some(txid) {
                self.spends.remove(input);
            }
        }
        Some(tx)
    }

    /// A script's mempool history in Electrum's order: height 0 before −1, then by txid hex.
    pub fn history(&self, hashx: &HashX) -> Vec<MempoolEntry> {
        let Some(set) = self.by_hashx.get(hashx) else {
            return Vec::new();
        };
        let mut out: Vec<MempoolEntry> = set
            .iter()
            .filter_map(|t| self.txs.get(t))
            .map(|t| MempoolEntry {
                txid: t.txid,
                height: t.height(),
                fee: t.fee,
            })
            .collect();
        out.sort_by(|a, b| {
            b.height
                .cmp(&a.height)
                .then_with(|| display_order(&a.txid, &b.txid))
        });
        out
    }

    /// The unconfirmed change to a script's balance: received minus spent, in mempool.
    pub(crate) fn balance_delta(&self, hashx: &HashX) -> i64 {
        let Some(set) = self.by_hashx.get(hashx) else {
            return 0;
        };
        let mut delta: i64 = 0;
        for tx in set.iter().filter_map(|t| self.txs.get(t)) {
            for o in &tx.tx.outputs {
                if o.scripthash.map(|s| s.hashx()) == Some(*hashx) {
                    delta += o.value as i64;
                }
            }
            for p in &tx.prevouts {
                if p.hashx == *hashx {
                    delta -= p.value as i64;
                }
            }
        }
        delta
    }

    /// A script's unconfirmed outputs not spent by another mempool transaction.
    pub fn utxos(&self, hashx: &HashX) -> Vec<MempoolUtxo> {
        let Some(set) = self.by_hashx.get(hashx) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for tx in set.iter().filter_map(|t| self.txs.get(t)) {
            for (vout, o) in tx.tx.outputs.iter().enumerate() {
                let op = OutPoint {
                    txid: tx.txid,
                    vout: vout as u32,
                };
                if o.scripthash.map(|s| s.hashx()) == Some(*hashx) && !self.spends.contains_key(&op)
                {
                    out.push(MempoolUtxo {
                        txid: tx.txid,
                        vout: vout as u32,
                        value: o.value,
                    });
                }
            }
        }
        out.sort_by(|a, b| display_order(&a.txid, &b.txid).then(a.vout.cmp(&b.vout)));
        out
    }

    /// The mempool's part of an outpoint's status.
    pub fn outpoint(&self, op: &OutPoint) -> MempoolOutpoint {
        let mut out = MempoolOutpoint::default();
        if let Some(funder) = self.txs.get(&op.txid) {
            if funder.tx.outputs.len() <= op.vout as usize {
                out.no_such_output = true;
                return out;
            }
            out.funder = Some(funder.height());
        }
        if let Some(spender) = self.spends.get(op).and_then(|t| self.txs.get(t)) {
            out.spender = Some((spender.txid, spender.height()));
        }
        out
    }

    /// The `count` transactions that entered the mempool last, newest first.
    pub(crate) fn recent(&self, count: usize) -> Vec<&MempoolTx> {
        self.arrivals
            .values()
            .rev()
            .filter_map(|t| self.txs.get(t))
            .take(count)
            .collect()
    }

    /// Whether a mempool transaction spends this outpoint.
    pub(crate) fn is_spent(&self, outpoint: &OutPoint) -> bool {
        self.spends.contains_key(outpoint)
    }

    /// ElectrumX's compact fee histogram: `[fee_rate, vsize]` pairs, highest rate first (the
    /// algorithm, with its 0.1 sat/vB rounding and bin rules, is in `histogram`).
    pub(crate) fn fee_histogram(&self) -> Vec<(f64, u64)> {
        histogram::fee_histogram(self.txs.values().map(|t| (t.fee, t.vsize)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::{CoinRegistry, ParsedOutput};
    use crate::store::{Mode, StoredUtxo, Tip};
    use crate::types::{BlockHash, Height, ScriptHash, TxNum};

    fn store(dir: &std::path::Path, funding: OutPoint) -> Store {
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup("Litecoin", "regtest")
            .unwrap();
        let s = Store::open(dir, &coin, 16, Mode::Follow).unwrap();
        let mut b = s.batch();
        b.put_block(Height(0), &[0; 80], 1);
        b.put_txid(TxNum(0), &funding.txid);
        let utxo = StoredUtxo {
            hashx: ScriptHash::of_script(&[1]).hashx(),
            txnum: TxNum(0),
            value: 1000,
        };
        b.put_utxo(&funding, &utxo);
        let tip = Tip {
            height: Height(0),
            hash: BlockHash([1; 32]),
            tx_count: 1,
        };
        s.commit(b, Some(tip), Height(0), &[1]).unwrap();
        s
    }

    fn tx(tag: u8, inputs: Vec<OutPoint>) -> ParsedTx {
        ParsedTx {
            txid: Txid([tag; 32]),
            inputs,
            outputs: (0..2)
                .map(|i| ParsedOutput {
                    value: 100,
                    scripthash: Some(ScriptHash::of_script(&[tag, i])),
                })
                .collect(),
            vsize: 100 + u32::from(tag),
            keva: None,
        }
    }

    fn op(t: &ParsedTx, vout: u32) -> OutPoint {
        OutPoint { txid: t.txid, vout }
    }

    #[test]
    fn recent_lists_arrivals_newest_first_and_keeps_places_across_blocks() {
        let funding = OutPoint {
            txid: Txid([9; 32]),
            vout: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), funding);
        let a = tx(1, vec![funding]);
        let b = tx(2, vec![op(&a, 0)]);
        let c = tx(3, vec![op(&a, 1)]);
        let mut m = Mempool::default();
        let mut ids = HashSet::new();
        for t in [&a, &b, &c] {
            ids.insert(t.txid);
            m.apply(&ids, vec![t.clone()], &s, false).unwrap();
        }
        let recent =
            |m: &Mempool, n| -> Vec<u8> { m.recent(n).iter().map(|t| t.txid.0[0]).collect() };
        assert_eq!(recent(&m, 10), [3, 2, 1]);
        assert_eq!(recent(&m, 2), [3, 2]);
        let oldest = m.recent(3)[2];
        assert_eq!((oldest.fee, oldest.vsize), (1000 - 200, 101));
        // A block resolves every input again: the order stays.
        m.apply(&ids, Vec::new(), &s, true).unwrap();
        assert_eq!(recent(&m, 10), [3, 2, 1]);
        // B leaves, and comes back as the newest.
        ids.remove(&b.txid);
        m.apply(&ids, Vec::new(), &s, false).unwrap();
        assert_eq!(recent(&m, 10), [3, 1]);
        ids.insert(b.txid);
        m.apply(&ids, vec![b.clone()], &s, false).unwrap();
        assert_eq!(recent(&m, 10), [2, 3, 1]);
    }
}
