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
//!
//! Most methods read RocksDB and block: call them off the async reactor.

mod history;
pub mod merkle;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tracing::error;

use crate::mempool::{Mempool, MempoolEntry};
use crate::store::{Store, StoreError};
use crate::types::{BlockHash, HashX, Height, OutPoint, ScriptHash, TxNum, Txid};
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

pub struct Query {
    store: Arc<Store>,
    mempool: Arc<RwLock<Mempool>>,
    tx_trees: TxTreeCache,
    statuses: StatusCache,
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
            header_merkle: HeaderMerkle::default(),
            tip: RwLock::new(None),
            histogram: Mutex::new(Histogram::default()),
        }
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
        let hashx = sh.hashx();
        // Held across the store reads: blocks are committed under the mempool's write lock.
        let mempool = self.mempool.read();
        let utxos = self.store.script_utxos(&hashx)?;
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
        out.extend(mempool.utxos(&hashx).into_iter().map(|u| Unspent {
            txid: u.txid,
            vout: u.vout,
            height: 0,
            value: u.value,
        }));
        Ok(out)
    }

    pub fn balance(&self, sh: &ScriptHash) -> Result<Balance, StoreError> {
        let hashx = sh.hashx();
        let mempool = self.mempool.read();
        let utxos = self.store.script_utxos(&hashx)?;
        Ok(Balance {
            confirmed: utxos.iter().map(|u| u.value).sum(),
            unconfirmed: mempool.balance_delta(&hashx),
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
