//! The read side: a script's history, balance and unspent outputs, confirmed and unconfirmed,
//! as the Electrum methods need them.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::mempool::{Mempool, MempoolEntry};
use crate::store::{Store, StoreError};
use crate::types::{Height, OutPoint, ScriptHash, Txid};

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

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Balance {
    pub confirmed: u64,
    pub unconfirmed: i64,
    /// Confirmed outputs summed: what the answer cost to compute.
    pub utxos: usize,
}

#[derive(Clone)]
pub struct Query {
    store: Arc<Store>,
    mempool: Arc<RwLock<Mempool>>,
}

impl Query {
    pub fn new(store: Arc<Store>, mempool: Arc<RwLock<Mempool>>) -> Query {
        Query { store, mempool }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Confirmed history in chain order.
    pub fn confirmed_history(&self, sh: &ScriptHash) -> Result<Vec<Confirmed>, StoreError> {
        let nums = self.store.history(&sh.hashx())?;
        let heights = self.store.txnum_heights(&nums);
        let txids = self.store.txids(&nums)?;
        Ok(txids
            .into_iter()
            .zip(heights)
            .map(|(txid, height)| Confirmed { txid, height })
            .collect())
    }

    pub fn mempool_history(&self, sh: &ScriptHash) -> Vec<MempoolEntry> {
        self.mempool.read().history(&sh.hashx())
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
}
