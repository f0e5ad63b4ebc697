//! An incremental mirror of the daemon's mempool, indexed by script.
//!
//! Each refresh asks for the mempool's txids and fetches only the new transactions. Inputs are
//! resolved against the mempool itself (unconfirmed parents) and then the confirmed UTXO set, so
//! fees and the "spends unconfirmed outputs" flag (Electrum height −1 vs 0) need no extra calls.
//!
//! The cost of keeping up tracks the change, not the mempool's size: a refresh whose snapshot
//! carries the daemon's `mempool_sequence` unchanged since the last one does nothing, and a new
//! block only touches the transactions it confirms, conflicts with, or un-parents
//! ([`Mempool::blocks_connected`]); every input is resolved again only after a reorg.
//!
//! Listing the mempool is itself the daemon's largest cost for a big one (`getrawmempool` of
//! 100,000 txids: ~0.4 s of litecoind's time), so a timer's poll first asks `getmempoolinfo`
//! and lists only when its numbers moved, or when the last listing is [`LIST_EVERY`] old. After
//! a block the mirror, updated in the commit, is trusted without a listing when the daemon's
//! mempool has its size (see [`Look`]).

mod follow;
mod histogram;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::debug;

use crate::coin::{Chain, ParsedBlock, ParsedTx};
use crate::daemon::{Daemon, DaemonError, MempoolInfo};
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
    /// The daemon's `mempool_sequence` this mirror is exactly in step with; `None` when unknown
    /// (no snapshot yet, a daemon without it, a block connected since, a transaction left out).
    sequence: Option<u64>,
    /// The daemon's `getmempoolinfo` when the mirror last matched it (`None`: not known to).
    summary: Option<MempoolInfo>,
    /// When the daemon's mempool was last listed in full.
    listed: Option<Instant>,
    /// Blocks were applied to a mirror in step with the daemon ([`Mempool::blocks_connected`]):
    /// it is the daemon's mempool less what the blocks confirmed or conflict with.
    after_blocks: bool,
}

/// The longest a timer's poll trusts an unchanged `getmempoolinfo`: the mempool is listed at
/// least this often, as often as the default poll (`DAEMON_POLL_INTERVAL_MEMPOOL`) always did,
/// so a shorter poll never makes the mirror less exact than the default: at worst a swap of two
/// transactions of the same size (which leaves the summary alike) waits this long.
pub const LIST_EVERY: Duration = Duration::from_secs(5);

/// What made a refresh, which decides how much of the daemon's word it may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// A timer's poll: an unchanged `getmempoolinfo` means an unchanged mempool, for up to
    /// [`LIST_EVERY`] since the last listing.
    Poll,
    /// Right after the indexer applied blocks to the mirror: a daemon mempool of the mirror's
    /// size is the mirror (the daemon dropped what the blocks confirmed, as the commit did).
    AfterBlocks,
    /// Something did change (a ZMQ message, a broadcast, the start): list the mempool.
    List,
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
    /// New transactions left out because their inputs could not be resolved.
    pub dropped: usize,
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
    look: Look,
) -> Result<MempoolDelta, MempoolError> {
    let height_before: u32 = daemon.call("getblockcount", vec![]).await?;
    if store.tip().map(|t| t.height.0) != Some(height_before) {
        // A listing now would be thrown away below: the index has not stored the daemon's
        // tip yet (its commit will bring a look of its own).
        return Ok(MempoolDelta::default());
    }
    // A daemon without getmempoolinfo (or with other fields) is listed every time.
    let info_before = daemon.mempool_info().await.ok();
    if look != Look::List && !confirmed_changed {
        if let Some(info) = info_before {
            let height_after: u32 = daemon.call("getblockcount", vec![]).await?;
            let indexed = store.tip().map(|t| t.height.0);
            if height_after == height_before && indexed == Some(height_after) {
                let mut m = mempool.write();
                // A commit may land between a timer's tick and its look: the mirror it left
                // is trusted the same way whichever look comes first.
                let after_blocks = m.after_blocks && info.size == m.txs.len() as u64;
                let trusted = match look {
                    Look::Poll => {
                        after_blocks
                            || (m.summary == Some(info)
                                && m.listed.is_some_and(|t| t.elapsed() < LIST_EVERY))
                    }
                    Look::AfterBlocks => after_blocks,
                    Look::List => false,
                };
                // The index may have moved since: the commit holds this lock.
                if trusted && store.tip().map(|t| t.height.0) == Some(height_after) {
                    m.summary = Some(info);
                    m.after_blocks = false;
                    return Ok(MempoolDelta {
                        applied: true,
                        ..MempoolDelta::default()
                    });
                }
            }
        }
    }
    let started = Instant::now();
    let snapshot = daemon.mempool_snapshot().await?;
    let height_after: u32 = daemon.call("getblockcount", vec![]).await?;
    let info_after = daemon.mempool_info().await.ok();
    let listed = Instant::now();
    let indexed = store.tip().map(|t| t.height.0);
    if height_before != height_after || indexed != Some(height_after) {
        return Ok(MempoolDelta::default());
    }
    // The summary belongs to the listing only when it did not move across it.
    let summary = info_after.filter(|_| info_before == info_after);
    let sequence = snapshot.sequence;
    if !confirmed_changed && sequence.is_some() && mempool.read().sequence == sequence {
        // Nothing was added or removed since the snapshot the mirror reflects.
        let mut m = mempool.write();
        m.listed = Some(listed);
        if m.sequence == sequence {
            m.summary = summary;
        }
        return Ok(MempoolDelta {
            applied: true,
            ..MempoolDelta::default()
        });
    }
    let ids: HashSet<Txid> = snapshot.txids.into_iter().collect();
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
    let fetched = Instant::now();
    let (mempool, store) = (mempool.clone(), store.clone());
    let delta = tokio::task::spawn_blocking(move || {
        // The index may have moved while transactions were fetched. Checked under the lock: the
        // indexer commits blocks while holding it (see `blocks_connected`).
        let mut m = mempool.write();
        if store.tip().map(|t| t.height.0) != Some(height_after) {
            return Ok(MempoolDelta::default());
        }
        let delta = m.apply(&ids, fresh, &store, confirmed_changed)?;
        m.sequence = sequence.filter(|_| delta.dropped == 0);
        m.summary = summary.filter(|_| delta.dropped == 0);
        m.listed = Some(listed);
        Ok::<_, StoreError>(delta)
    })
    .await
    .expect("mempool update panicked")?;
    // Where a listing refresh's time goes: the daemon's answers or our own work.
    debug!(
        "mempool listing: {} new; listed in {:.1} ms, fetched in {:.1} ms, applied in {:.1} ms",
        new.len(),
        (listed - started).as_secs_f64() * 1000.0,
        (fetched - listed).as_secs_f64() * 1000.0,
        fetched.elapsed().as_secs_f64() * 1000.0
    );
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
        self.forget_arrivals();
        self.sequence = None;
        self.summary = None;
        self.after_blocks = false;
        Ok(MempoolDelta {
            applied: true,
            added,
            removed: gone.len(),
            dropped: dropped.len(),
            touched: touched.into_iter().collect(),
            touched_outpoints,
        })
    }

    /// Called by the indexer right after it committed `blocks` (none after a reorg's undo),
    /// still holding this mempool's write lock: drops the transactions the blocks confirmed (or
    /// conflict with) in the same step. Readers hold the read lock across their store reads, so
    /// no transaction is ever seen both confirmed and unconfirmed — the daemon's next snapshot
    /// would come only after a poll. Returns the scripts whose mempool entries changed, and the
    /// outpoints of the transactions that left.
    ///
    /// The work tracks the blocks, not the mempool: besides the confirmed transactions, only
    /// those spending what the blocks spent (conflicts, and their descendants) leave, and only
    /// the children of confirmed transactions change (their parent is now confirmed, which can
    /// move them from height −1 to 0). Every other transaction's inputs stay resolved as they
    /// were. After a reorg's undo, outputs may have vanished from the UTXO set, so every input
    /// is resolved again.
    pub(crate) fn blocks_connected(
        &mut self,
        blocks: &[ParsedBlock],
        store: &Store,
    ) -> Result<(Vec<HashX>, Vec<OutPoint>), StoreError> {
        // The daemon's mempool changed with the blocks; the next snapshot is compared in full.
        self.sequence = None;
        // In step before, in step after (the daemon drops the same transactions), unless a
        // reorg's undo brings transactions back.
        self.after_blocks = self.summary.take().is_some() && !blocks.is_empty();
        if self.txs.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        if blocks.is_empty() {
            let ids: HashSet<Txid> = self.txs.keys().copied().collect();
            let delta = self.apply(&ids, Vec::new(), store, true)?;
            return Ok((delta.touched, delta.touched_outpoints));
        }
        let mut touched: HashSet<HashX> = HashSet::new();
        let mut outpoints = Vec::new();
        let confirmed: HashSet<Txid> = blocks
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| t.txid))
            .collect();
        // Leaving: the confirmed transactions, and the mempool spenders of what the blocks spent
        // that are not those same transactions (double spends the daemon has dropped).
        let mut leaving: Vec<Txid> = confirmed
            .iter()
            .filter(|t| self.txs.contains_key(t))
            .copied()
            .collect();
        for tx in blocks.iter().flat_map(|b| &b.txs) {
            for input in &tx.inputs {
                if let Some(spender) = self.spends.get(input) {
                    if !confirmed.contains(spender) {
                        leaving.push(*spender);
                    }
                }
            }
        }
        // A conflict's descendants leave with it: their inputs are gone. A confirmed
        // transaction's children stay, their parent now confirmed.
        while let Some(txid) = leaving.pop() {
            let Some(tx) = self.remove(&txid) else {
                continue; // already gone (several routes lead to one descendant)
            };
            touched.extend(tx.hashxs.iter().copied());
            tx_outpoints(&tx.tx, &mut outpoints);
            for vout in 0..tx.tx.outputs.len() as u32 {
                let op = OutPoint { txid, vout };
                if let Some(child) = self.spends.get(&op) {
                    if confirmed.contains(&txid) {
                        if let Some(c) = self.txs.get_mut(child) {
                            for (input, prevout) in c.tx.inputs.iter().zip(&mut c.prevouts) {
                                if input.txid == txid {
                                    prevout.unconfirmed = false;
                                }
                            }
                            touched.extend(c.hashxs.iter().copied());
                        }
                    } else {
                        leaving.push(*child);
                    }
                }
            }
        }
        self.forget_arrivals();
        outpoints.sort_unstable_by_key(|o| (o.txid.0, o.vout));
        outpoints.dedup();
        Ok((touched.into_iter().collect(), outpoints))
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

    /// Drops the arrival places of transactions no longer here.
    fn forget_arrivals(&mut self) {
        let txs = &self.txs;
        self.arrivals.retain(|_, t| txs.contains_key(t));
        self.arrival.retain(|t, _| txs.contains_key(t));
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
    use crate::store::{Mode, StoredUtxo};
    use crate::types::{sha256d, BlockHash, Height, ScriptHash, TxNum};

    fn sh(n: u8) -> ScriptHash {
        ScriptHash::of_script(&[n])
    }

    fn tx(tag: u8, inputs: &[OutPoint], outs: &[(u8, u64)]) -> ParsedTx {
        ParsedTx {
            txid: Txid(sha256d(&[tag])),
            inputs: inputs.to_vec(),
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

    fn out(t: &ParsedTx, vout: u32) -> OutPoint {
        OutPoint { txid: t.txid, vout }
    }

    /// A store whose UTXO set is `utxos` (outpoint, script, value).
    fn store_with(dir: &std::path::Path, utxos: &[(OutPoint, u8, u64)]) -> Store {
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup("Litecoin", "regtest")
            .unwrap();
        let store = Store::open(dir, &coin, 16, Mode::Follow).unwrap();
        set_utxos(&store, &[], utxos);
        store
    }

    fn set_utxos(store: &Store, spent: &[(OutPoint, u8, u64)], created: &[(OutPoint, u8, u64)]) {
        let mut batch = store.batch();
        // Each transaction its own number, from its txid (none of the tests' txids share
        // their first two bytes).
        let txnum =
            |op: &OutPoint| TxNum(u16::from_le_bytes(op.txid.0[..2].try_into().unwrap()).into());
        let stored = |op: &OutPoint, s: u8, v: u64| StoredUtxo {
            hashx: sh(s).hashx(),
            txnum: txnum(op),
            value: v,
        };
        for (op, s, v) in spent {
            batch.delete_utxo(op, &stored(op, *s, *v));
        }
        for (op, s, v) in created {
            batch.put_txid(txnum(op), &op.txid);
            batch.put_utxo(op, &stored(op, *s, *v));
        }
        store.commit(batch, None, Height(0), &[]).unwrap();
    }

    /// Every script's mempool history, balance change and unspent outputs.
    type View = Vec<(u8, Vec<MempoolEntry>, i64, Vec<MempoolUtxo>)>;

    fn view(m: &Mempool) -> View {
        (0..=20)
            .map(|s| {
                let h = sh(s).hashx();
                (s, m.history(&h), m.balance_delta(&h), m.utxos(&h))
            })
            .collect()
    }

    #[test]
    fn recent_lists_arrivals_newest_first_and_keeps_places_across_blocks() {
        let funding = OutPoint {
            txid: Txid([9; 32]),
            vout: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let s = store_with(dir.path(), &[(funding, 1, 1000)]);
        let a = tx(1, &[funding], &[(2, 100), (3, 100)]);
        let b = tx(2, &[out(&a, 0)], &[(4, 50)]);
        let c = tx(3, &[out(&a, 1)], &[(5, 50)]);
        let mut m = Mempool::default();
        let mut ids = HashSet::new();
        for t in [&a, &b, &c] {
            ids.insert(t.txid);
            m.apply(&ids, vec![t.clone()], &s, false).unwrap();
        }
        let recent = |m: &Mempool, n| -> Vec<Txid> { m.recent(n).iter().map(|t| t.txid).collect() };
        assert_eq!(recent(&m, 10), [c.txid, b.txid, a.txid]);
        assert_eq!(recent(&m, 2), [c.txid, b.txid]);
        let oldest = m.recent(3)[2];
        assert_eq!((oldest.fee, oldest.vsize), (800, 100));
        // A reorg resolves every input again: the order stays.
        m.apply(&ids, Vec::new(), &s, true).unwrap();
        assert_eq!(recent(&m, 10), [c.txid, b.txid, a.txid]);
        // B leaves, and comes back as the newest.
        ids.remove(&b.txid);
        m.apply(&ids, Vec::new(), &s, false).unwrap();
        assert_eq!(recent(&m, 10), [c.txid, a.txid]);
        ids.insert(b.txid);
        m.apply(&ids, vec![b.clone()], &s, false).unwrap();
        assert_eq!(recent(&m, 10), [b.txid, c.txid, a.txid]);
    }

    /// A block confirming a parent and double-spending another transaction's input leaves the
    /// mirror exactly as if it were built afresh on the new UTXO set, and names every script
    /// whose mempool entries changed.
    #[test]
    fn a_block_updates_only_what_it_confirms_conflicts_with_or_unparents() {
        let dir = tempfile::tempdir().unwrap();
        let funding = tx(
            100,
            &[],
            &[(1, 10_000), (2, 10_000), (3, 10_000), (4, 10_000)],
        );
        let o: Vec<(OutPoint, u8, u64)> = (0..4)
            .map(|v| (out(&funding, v), v as u8 + 1, 10_000))
            .collect();
        let store = store_with(dir.path(), &o);
        let a = tx(1, &[o[0].0], &[(5, 9_000), (6, 500)]);
        let b = tx(2, &[out(&a, 0)], &[(7, 8_000)]);
        let c = tx(3, &[out(&b, 0)], &[(8, 7_000)]);
        let d = tx(4, &[out(&a, 1), o[1].0], &[(9, 10_000)]);
        let e = tx(5, &[o[2].0], &[(10, 9_000)]);
        let f = tx(6, &[out(&e, 0)], &[(11, 8_000)]);
        let g = tx(7, &[o[3].0], &[(12, 9_000)]);
        let all = vec![a.clone(), b, c, d, e.clone(), f, g];
        let ids: HashSet<Txid> = all.iter().map(|t| t.txid).collect();
        let mut m = Mempool::default();
        let first = m.apply(&ids, all.clone(), &store, false).unwrap();
        assert_eq!((first.added, first.dropped, m.len()), (7, 0, 7));
        let before = view(&m);

        // The block confirms A and spends E's input with another transaction, X.
        let x = tx(8, &[o[2].0], &[(13, 9_500)]);
        set_utxos(
            &store,
            &[o[0], o[2]],
            &[
                (out(&a, 0), 5, 9_000),
                (out(&a, 1), 6, 500),
                (out(&x, 0), 13, 9_500),
            ],
        );
        let block = ParsedBlock {
            header: vec![0; 80],
            hash: BlockHash([1; 32]),
            prev_hash: BlockHash([0; 32]),
            txs: vec![x, a.clone()],
        };
        let touched: HashSet<HashX> = m
            .blocks_connected(std::slice::from_ref(&block), &store)
            .unwrap()
            .0
            .into_iter()
            .collect();

        // The same transactions admitted from scratch against the new UTXO set.
        let mut fresh = Mempool::default();
        let left: HashSet<Txid> = ids.iter().filter(|t| **t != a.txid).copied().collect();
        let rebuilt = fresh.apply(&left, all, &store, false).unwrap();
        assert_eq!(rebuilt.dropped, 2, "E and its child F conflict with X");
        let after = view(&m);
        assert_eq!(after, view(&fresh));
        assert_eq!(m.len(), 4, "B, C, D, G stay");
        assert!(m.get(&e.txid).is_none());
        for ((s, h0, b0, u0), (_, h1, b1, u1)) in before.iter().zip(&after) {
            if (h0, b0, u0) != (h1, b1, u1) {
                assert!(touched.contains(&sh(*s).hashx()), "script {s} changed");
            }
        }
        // B's only parent confirmed: height 0 now; C still waits on B.
        assert_eq!(m.history(&sh(7).hashx())[0].height, 0);
        assert_eq!(m.history(&sh(8).hashx())[0].height, -1);
        assert_eq!(m.history(&sh(9).hashx())[0].height, 0);
        assert_eq!(m.history(&sh(12).hashx())[0].height, 0);
    }
}
