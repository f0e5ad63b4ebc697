//! The read side, the one every answer comes from: a script's history and status, balance and
//! unspent outputs (confirmed and unconfirmed, read at one moment), headers and their checkpoint
//! proofs, transaction merkle branches, the tip as clients are told of it, and the fee histogram
//! — with the caches that make them cheap.
//!
//! | module | job |
//! |---|---|
//! | `history` | histories and status hashes |
//! | `merkle` | transaction and header-checkpoint proofs, with caches |
//! | `status` | status hashes of long histories, continued rather than recomputed |
//! | `answers` | serialized answers of long histories, kept while the status holds |
//! | `single_flight` | one computation per key at a time, the others waiting for what it keeps |
//!
//! Most methods read RocksDB and block: call them off the async reactor.

mod answers;
mod history;
pub mod merkle;
mod single_flight;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tracing::error;

use crate::mempool::{Mempool, MempoolEntry};
use crate::store::{Store, StoreError};
use crate::types::{BlockHash, HashX, Height, OutPoint, ScriptHash, TxNum, Txid};
pub(crate) use answers::{Answer, AnswerKind};
use answers::{AnswerCache, MIN_CACHED_ENTRIES};
pub(crate) use history::{history_limit, FullHistory, HistoryError};
use merkle::{HeaderMerkle, HeaderProof, TxTree, TxTreeCache};
use status::{Status, StatusCache};

/// A confirmed history entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    pub txid: Txid,
    pub height: Height,
}

/// An unspent output of a script, confirmed (`height` > 0) or in mempool (`height` 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unspent {
    pub txid: Txid,
    pub vout: u32,
    pub height: u32,
    pub value: u64,
}

/// An outpoint's funding and spending heights (mempool: 0, or −1 with unconfirmed inputs).
/// No funder: the outpoint does not exist, as far as this server knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutpointStatus {
    pub funder_height: Option<i64>,
    pub spender: Option<(Txid, i64)>,
}

impl Serialize for OutpointStatus {
    /// The protocol's object, in ElectrumX's key order: `{}`, `{"funder_height"}`, or with
    /// `spender_txhash` and `spender_height` too.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let spender = self.spender.filter(|_| self.funder_height.is_some());
        let n = usize::from(self.funder_height.is_some()) + 2 * usize::from(spender.is_some());
        let mut m = s.serialize_map(Some(n))?;
        if let Some(h) = self.funder_height {
            m.serialize_entry("funder_height", &h)?;
        }
        if let Some((txid, h)) = spender {
            m.serialize_entry("spender_txhash", &txid.to_string())?;
            m.serialize_entry("spender_height", &h)?;
        }
        m.end()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Balance {
    pub confirmed: u64,
    pub unconfirmed: i64,
    /// Confirmed outputs summed: what the answer cost to compute.
    pub utxos: usize,
}

/// The tip as `blockchain.headers.subscribe` reports it (key order as ElectrumX: hex, height).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TipHeader {
    pub hex: String,
    pub height: u32,
    #[serde(skip)]
    pub hash: BlockHash,
}

/// Blocks served from the txid cache: big enough for recent blocks and a wallet's history.
const TX_TREE_CACHE: usize = 256;
/// Long histories whose status hashing state is kept (~200 bytes each).
const STATUS_CACHE: usize = 20_000;
/// Recompute the fee histogram at most this often while the mempool changes.
const HISTOGRAM_MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Histogram {
    computed: Option<Instant>,
    dirty: bool,
    value: Arc<Vec<(f64, u64)>>,
}

/// What a script's answer is built from, read at one moment.
pub(crate) enum ScriptData {
    History(FullHistory),
    Unspent(Vec<Unspent>),
    Balance(Balance),
}

impl ScriptData {
    /// Entries read: whether the answer is worth keeping.
    fn entries(&self) -> usize {
        match self {
            ScriptData::History(h) => h.confirmed.len() + h.mempool.len(),
            ScriptData::Unspent(u) => u.len(),
            ScriptData::Balance(b) => b.utxos,
        }
    }
}

pub struct Query {
    store: Arc<Store>,
    mempool: Arc<RwLock<Mempool>>,
    tx_trees: TxTreeCache,
    statuses: StatusCache,
    answers: AnswerCache,
    header_merkle: HeaderMerkle,
    tip: RwLock<Option<TipHeader>>,
    histogram: Mutex<Histogram>,
}

impl Query {
    pub fn new(store: Arc<Store>, mempool: Arc<RwLock<Mempool>>) -> Query {
        Query {
            store,
            mempool,
            tx_trees: TxTreeCache::new(TX_TREE_CACHE),
            statuses: StatusCache::new(STATUS_CACHE),
            answers: AnswerCache::new(0),
            header_merkle: HeaderMerkle::default(),
            tip: RwLock::new(None),
            histogram: Mutex::new(Histogram::default()),
        }
    }

    /// Keeps serialized answers of scripts with long histories, up to `bytes` of them
    /// (`RESPONSE_CACHE_MB`).
    pub fn with_answer_cache(mut self, bytes: usize) -> Query {
        self.answers = AnswerCache::new(bytes);
        self
    }

    /// Bytes and number of the answers kept.
    #[cfg(test)]
    pub(crate) fn answer_cache_usage(&self) -> (usize, usize) {
        self.answers.usage()
    }

    /// A script's answer of `kind`, as `build` makes it from the script's data: the one kept
    /// for the script when its status is still the one it was built at, else built now (and
    /// kept when the script has [`MIN_CACHED_ENTRIES`] or more). Histories are refused once
    /// their confirmed part reaches `limit` entries. Blocking: RocksDB reads.
    pub(crate) fn answer<E>(
        &self,
        sh: &ScriptHash,
        kind: AnswerKind,
        limit: usize,
        error: impl Fn(HistoryError) -> E,
        build: impl FnOnce(ScriptData) -> Result<Answer, E>,
    ) -> Result<Arc<Answer>, E> {
        let hashx = sh.hashx();
        let status_limit = kind.status_limit(limit);
        // The status and the data are read under one hold of the mempool's lock (blocks are
        // committed under its write lock), so a kept answer always matches its status.
        let status = |mempool: &Mempool| {
            self.statuses
                .status_in(&self.store, mempool, &hashx, status_limit)
                .map(|s| s.1)
                .map_err(&error)
        };
        if self.answers.has(&hashx, kind) {
            {
                let mempool = self.mempool.read();
                if let Some(kept) = self.answers.get(&hashx, kind, &status(&mempool)?) {
                    return Ok(kept);
                }
            }
            // Changed: rebuilt once, however many sessions ask at the same time.
            return self.answers.rebuilding(&hashx, kind, || {
                let mempool = self.mempool.read();
                let s = status(&mempool)?;
                if let Some(kept) = self.answers.get(&hashx, kind, &s) {
                    return Ok(kept);
                }
                self.build_answer(mempool, sh, kind, limit, Some(s), &error, build)
            });
        }
        self.build_answer(self.mempool.read(), sh, kind, limit, None, &error, build)
    }

    /// Reads a script's data with `mempool` held, builds its answer with `build`, and keeps it
    /// (at `status`, read with the same hold) when the script has enough entries.
    #[allow(clippy::too_many_arguments)]
    fn build_answer<E>(
        &self,
        mempool: parking_lot::RwLockReadGuard<'_, Mempool>,
        sh: &ScriptHash,
        kind: AnswerKind,
        limit: usize,
        mut status: Option<Option<String>>,
        error: &impl Fn(HistoryError) -> E,
        build: impl FnOnce(ScriptData) -> Result<Answer, E>,
    ) -> Result<Arc<Answer>, E> {
        let hashx = sh.hashx();
        let status_limit = kind.status_limit(limit);
        let data = match kind {
            AnswerKind::History => {
                let h = FullHistory::read_in(&self.store, &mempool, &hashx, limit);
                ScriptData::History(h.map_err(error)?)
            }
            AnswerKind::Unspent => ScriptData::Unspent(
                self.unspent_in(&mempool, &hashx)
                    .map_err(|e| error(e.into()))?,
            ),
            AnswerKind::Balance => ScriptData::Balance(
                self.balance_in(&mempool, &hashx)
                    .map_err(|e| error(e.into()))?,
            ),
        };
        let keep = data.entries() >= MIN_CACHED_ENTRIES;
        if keep && status.is_none() {
            status = Some(
                self.statuses
                    .status_in(&self.store, &mempool, &hashx, status_limit)
                    .map_err(error)?
                    .1,
            );
        }
        drop(mempool);
        let answer = Arc::new(build(data)?);
        if let (true, Some(status)) = (keep, status) {
            self.answers.put(&hashx, kind, status, answer.clone());
        }
        Ok(answer)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The mempool mirror, for readers that combine it with the store themselves (hold the read
    /// lock across the store reads: blocks are committed under its write lock).
    pub(crate) fn mempool(&self) -> &RwLock<Mempool> {
        &self.mempool
    }

    /// Both halves of a script's history, refused once the confirmed part reaches `limit`.
    pub fn history(&self, hashx: &HashX, limit: usize) -> Result<FullHistory, HistoryError> {
        FullHistory::read(&self.store, &self.mempool, hashx, limit)
    }

    /// The status hash of a script's history and how many entries it covers, refused once the
    /// confirmed part reaches `limit`: what subscriptions and their notifications need, without
    /// rereading a long history.
    pub(crate) fn status(&self, hashx: &HashX, limit: usize) -> Result<Status, HistoryError> {
        self.statuses
            .status(&self.store, &self.mempool, hashx, limit)
    }

    /// A script's unconfirmed history.
    pub fn mempool_history(&self, hashx: &HashX) -> Vec<MempoolEntry> {
        self.mempool.read().history(hashx)
    }

    /// The `count` newest mempool transactions, newest first: txid, fee, vsize.
    pub(crate) fn mempool_recent(&self, count: usize) -> Vec<(Txid, u64, u32)> {
        self.mempool
            .read()
            .recent(count)
            .into_iter()
            .map(|t| (t.txid, t.fee, t.vsize))
            .collect()
    }

    /// An outpoint's status as 1.7's `blockchain.outpoint.*` give it, ElectrumX's way: the
    /// chain's (from the UTXO set and the spender index) unless a block spent it already, and
    /// then the mempool's funding and spending heights where it has them.
    pub fn outpoint_status(&self, op: &OutPoint) -> Result<OutpointStatus, StoreError> {
        // Held across the store reads: blocks are committed under the mempool's write lock.
        let mempool = self.mempool.read();
        let height = |t: TxNum| self.store.txnum_height(t).map(|h| i64::from(h.0));
        let mut status = OutpointStatus::default();
        if let Some(u) = self.store.lookup_utxo(op)? {
            status.funder_height = height(u.txnum);
        } else if let Some(spend) = self.store.spender(op)? {
            status.funder_height = height(spend.funding);
            if let (Some(txid), Some(h)) =
                (self.store.txid(spend.spending)?, height(spend.spending))
            {
                status.spender = Some((txid, h));
                return Ok(status);
            }
        }
        let m = mempool.outpoint(op);
        if m.no_such_output {
            return Ok(OutpointStatus::default());
        }
        if let Some(h) = m.funder {
            status.funder_height = Some(i64::from(h));
        }
        if let Some((txid, h)) = m.spender {
            status.spender = Some((txid, i64::from(h)));
        }
        Ok(status)
    }

    /// Confirmed unspent outputs (minus those spent in mempool), then mempool outputs.
    pub fn unspent(&self, sh: &ScriptHash) -> Result<Vec<Unspent>, StoreError> {
        // Held across the store reads: blocks are committed under the mempool's write lock.
        self.unspent_in(&self.mempool.read(), &sh.hashx())
    }

    fn unspent_in(&self, mempool: &Mempool, hashx: &HashX) -> Result<Vec<Unspent>, StoreError> {
        let utxos = self.store.script_utxos(hashx)?;
        let nums: Vec<_> = utxos.iter().map(|u| u.txnum).collect();
        let heights = self.store.txnum_heights(&nums);
        let txids = self.store.txids(&nums)?;
        let mut out: Vec<Unspent> = utxos
            .iter()
            .zip(heights)
            .zip(txids)
            .filter(|((u, _), txid)| {
                !mempool.is_spent(&OutPoint {
                    txid: *txid,
                    vout: u.vout,
                })
            })
            .map(|((u, h), txid)| Unspent {
                txid,
                vout: u.vout,
                height: h.0,
                value: u.value,
            })
            .collect();
        out.extend(mempool.utxos(hashx).into_iter().map(|u| Unspent {
            txid: u.txid,
            vout: u.vout,
            height: 0,
            value: u.value,
        }));
        Ok(out)
    }

    pub fn balance(&self, sh: &ScriptHash) -> Result<Balance, StoreError> {
        self.balance_in(&self.mempool.read(), &sh.hashx())
    }

    fn balance_in(&self, mempool: &Mempool, hashx: &HashX) -> Result<Balance, StoreError> {
        let utxos = self.store.script_utxos(hashx)?;
        Ok(Balance {
            confirmed: utxos.iter().map(|u| u.value).sum(),
            unconfirmed: mempool.balance_delta(hashx),
            utxos: utxos.len(),
        })
    }

    /// The store's height: what "chain height" means in range checks.
    pub(crate) fn db_height(&self) -> Option<Height> {
        self.store.tip().map(|t| t.height)
    }

    /// The header at `height`, if the index has it.
    pub fn header(&self, height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db_height() {
            Some(tip) if height <= tip => self.store.header(height),
            _ => Ok(None),
        }
    }

    /// Up to `count` headers from `start`; empty when `start` is above the tip.
    pub fn headers(&self, start: Height, count: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        match self.db_height() {
            Some(tip) if start <= tip => self.store.headers(start, count),
            _ => Ok(Vec::new()),
        }
    }

    /// The proof of header `height` in the tree of the headers up to `cp_height`.
    pub(crate) fn header_proof(
        &self,
        height: u32,
        cp_height: u32,
    ) -> Result<HeaderProof, StoreError> {
        self.header_merkle
            .proof(&self.store, cp_height as usize + 1, height as usize)
    }

    /// The txids of the block at `height`, as a merkle tree.
    pub(crate) fn tx_tree(&self, height: Height) -> Result<Option<Arc<TxTree>>, StoreError> {
        self.tx_trees.get(&self.store, height)
    }

    /// Re-reads the tip from the store; returns the new value when it changed.
    pub(crate) fn refresh_tip(&self) -> Result<Option<TipHeader>, StoreError> {
        let Some(tip) = self.store.tip() else {
            return Ok(None);
        };
        if self.tip.read().as_ref().map(|t| t.hash) == Some(tip.hash) {
            return Ok(None);
        }
        let Some(header) = self.store.header(tip.height)? else {
            return Ok(None);
        };
        let new = TipHeader {
            hex: hex::encode(&header),
            height: tip.height.0,
            hash: tip.hash,
        };
        *self.tip.write() = Some(new.clone());
        Ok(Some(new))
    }

    /// The cached tip (refreshed by notifications, so it may lag the store a moment, as in
    /// ElectrumX).
    pub fn tip(&self) -> Option<TipHeader> {
        if let Some(t) = self.tip.read().clone() {
            return Some(t);
        }
        match self.refresh_tip() {
            Ok(_) => self.tip.read().clone(),
            Err(e) => {
                error!("reading the tip: {e}");
                None
            }
        }
    }

    /// After a reorg that reached down to at most `depth` blocks below the tip: cached header
    /// segments that may hold undone blocks are forgotten.
    pub fn reorged(&self, depth: u32) {
        let height = self.store.tip().map_or(0, |t| t.height.0);
        self.header_merkle
            .truncate(height.saturating_sub(depth.max(1)));
    }

    pub(crate) fn mempool_changed(&self) {
        self.histogram.lock().dirty = true;
    }

    /// The compact fee histogram, recomputed (off the reactor) when stale.
    pub(crate) async fn fee_histogram(self: &Arc<Self>) -> Arc<Vec<(f64, u64)>> {
        {
            let h = self.histogram.lock();
            let fresh = h
                .computed
                .is_some_and(|at| !h.dirty || at.elapsed() < HISTOGRAM_MAX_AGE);
            if fresh {
                return h.value.clone();
            }
        }
        let this = self.clone();
        let value = tokio::task::spawn_blocking(move || this.mempool.read().fee_histogram())
            .await
            .unwrap_or_default();
        let value = Arc::new(value);
        let mut h = self.histogram.lock();
        *h = Histogram {
            computed: Some(Instant::now()),
            dirty: false,
            value: value.clone(),
        };
        value
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::coin::{ParsedBlock, ParsedOutput, ParsedTx};
    use crate::index::test_chain::{block, open_store};
    use crate::index::writer::Writer;

    fn pay(script: u8, nonce: u8, i: usize, inputs: Vec<OutPoint>) -> ParsedTx {
        ParsedTx {
            txid: Txid(crate::types::sha256d(&[nonce, i as u8, (i >> 8) as u8])),
            inputs,
            outputs: vec![ParsedOutput {
                value: 1000,
                scripthash: Some(ScriptHash::of_script(&[script])),
            }],
            vsize: 100,
            keva: None,
        }
    }

    /// A block of `n` transactions paying `script`.
    fn paying(prev: BlockHash, nonce: u8, script: u8, n: usize) -> ParsedBlock {
        block(
            prev,
            nonce,
            (0..n).map(|i| pay(script, nonce, i, vec![])).collect(),
        )
    }

    /// Each answer as the cache serves it, as (JSON, whether it is the one kept before).
    fn answers(q: &Query, sh: &ScriptHash, before: &[Arc<Answer>]) -> Vec<(String, bool)> {
        let kinds = [
            AnswerKind::History,
            AnswerKind::Unspent,
            AnswerKind::Balance,
        ];
        kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let a = q
                    .answer(sh, *kind, usize::MAX, |e| e, |data| Ok(built(&data)))
                    .unwrap();
                let same = before.get(i).is_some_and(|b| Arc::ptr_eq(b, &a));
                (a.json.get().to_string(), same)
            })
            .collect()
    }

    fn kept(q: &Query, sh: &ScriptHash) -> Vec<Arc<Answer>> {
        let kinds = [
            AnswerKind::History,
            AnswerKind::Unspent,
            AnswerKind::Balance,
        ];
        kinds
            .iter()
            .map(|kind| {
                q.answer(sh, *kind, usize::MAX, |e| e, |data| Ok(built(&data)))
                    .unwrap()
            })
            .collect()
    }

    /// An answer built without the cache, from data as it is read now.
    fn built(data: &ScriptData) -> Answer {
        let text = match data {
            ScriptData::History(h) => format!(
                "{:?}",
                (
                    h.confirmed
                        .iter()
                        .map(|c| (c.txid, c.height))
                        .collect::<Vec<_>>(),
                    &h.mempool
                )
            ),
            ScriptData::Unspent(u) => format!("{u:?}"),
            ScriptData::Balance(b) => format!("{b:?}"),
        };
        Answer {
            json: serde_json::value::to_raw_value(&text).unwrap().into(),
            cost: 1.0,
        }
    }

    fn uncached(q: &Query, sh: &ScriptHash) -> Vec<String> {
        let h = q.history(&sh.hashx(), usize::MAX).unwrap();
        [
            ScriptData::History(h),
            ScriptData::Unspent(q.unspent(sh).unwrap()),
            ScriptData::Balance(q.balance(sh).unwrap()),
        ]
        .iter()
        .map(|d| built(d).json.get().to_string())
        .collect()
    }

    #[test]
    fn kept_answers_equal_fresh_ones_and_only_a_change_to_their_script_rebuilds_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let mempool = Arc::new(RwLock::new(Mempool::default()));
        let q = Query::new(store.clone(), mempool.clone()).with_answer_cache(10_000_000);
        let (hot, small) = (ScriptHash::of_script(&[1]), ScriptHash::of_script(&[2]));
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        let g = paying(BlockHash([0; 32]), 0, 9, 1);
        let b1 = paying(g.hash, 1, 1, 150);
        let b1s = paying(b1.hash, 2, 2, 5);
        w.apply(&[g, b1.clone(), b1s.clone()]).unwrap();

        let check = |label: &str, before: &[Arc<Answer>], reused: bool| {
            let got = answers(&q, &hot, before);
            let fresh = uncached(&q, &hot);
            for ((json, same), want) in got.iter().zip(&fresh) {
                assert_eq!(json, want, "{label}");
                assert_eq!(*same, reused, "{label}: served from the cache");
            }
        };
        check("first read", &[], false);
        assert_eq!(
            q.answer_cache_usage().1,
            3,
            "the hot script's three answers"
        );
        let first = kept(&q, &hot);
        check("read again", &first, true);
        // A short history is not kept.
        answers(&q, &small, &[]);
        assert_eq!(q.answer_cache_usage().1, 3);

        // A block paying another script leaves the hot one's answers as they are.
        let b2 = paying(b1s.hash, 3, 2, 3);
        w.apply(std::slice::from_ref(&b2)).unwrap();
        check("a block for another script", &first, true);

        // A block paying the hot script rebuilds them.
        let b3 = paying(b2.hash, 4, 1, 2);
        w.apply(std::slice::from_ref(&b3)).unwrap();
        check("a block for the script", &first, false);
        let second = kept(&q, &hot);

        // A mempool transaction spending one of its outputs, then leaving the mempool.
        let spend = pay(
            7,
            9,
            0,
            vec![OutPoint {
                txid: b1.txs[0].txid,
                vout: 0,
            }],
        );
        let ids: HashSet<Txid> = [spend.txid].into();
        mempool
            .write()
            .apply(&ids, vec![spend], &store, false)
            .unwrap();
        check("a mempool spend", &second, false);
        let third = kept(&q, &hot);
        assert!(q.mempool_history(&hot.hashx()).len() == 1);
        mempool
            .write()
            .apply(&HashSet::new(), vec![], &store, false)
            .unwrap();
        check("the spend gone", &third, false);

        // A reorg undoing the script's last block.
        let fourth = kept(&q, &hot);
        w.undo_tip().unwrap();
        check("its block undone", &fourth, false);
    }
}
