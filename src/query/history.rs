//! A script's history as Electrum serves it, and its status hash.
//!
//! Status = lowercase hex SHA-256 of `"<txid>:<height>:"` for every confirmed entry in chain
//! order, then every mempool entry (height 0, or -1 with unconfirmed inputs; 0 before -1, then
//! by txid hex); `null` when there is no entry at all.

use std::fmt::Write;

use bitcoin::hashes::{sha256, Hash};

use parking_lot::RwLock;

use super::Confirmed;
use crate::mempool::{Mempool, MempoolEntry};
use crate::store::{Store, StoreError};
use crate::types::HashX;

/// How many confirmed entries fit in a `MAX_SEND` reply (each is about 99 bytes of JSON):
/// ElectrumX 2's `(MAX_SEND - 100) // 99`.
pub(crate) fn history_limit(max_send: usize) -> usize {
    (max_send.saturating_sub(100) / 99).max(1)
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The confirmed history reaches the limit (answered as error 1 `history too large`).
    #[error("history too large")]
    TooLarge,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a confirmed history of `entries` is refused under `limit`.
pub(crate) fn history_limit_reached(entries: usize, limit: usize) -> bool {
    entries >= limit
}

/// A script's confirmed history in chain order, refused once it reaches `limit` entries.
/// Blocking: RocksDB reads.
pub(crate) fn confirmed_history(
    store: &Store,
    hashx: &HashX,
    limit: usize,
) -> Result<Vec<Confirmed>, HistoryError> {
    let nums = store.history_upto(hashx, limit)?;
    if history_limit_reached(nums.len(), limit) {
        return Err(HistoryError::TooLarge);
    }
    let heights = store.txnum_heights(&nums);
    let txids = store.txids(&nums)?;
    Ok(txids
        .into_iter()
        .zip(heights)
        .map(|(txid, height)| Confirmed { txid, height })
        .collect())
}

/// Both halves of a script's history, read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FullHistory {
    pub confirmed: Vec<Confirmed>,
    pub mempool: Vec<MempoolEntry>,
}

impl FullHistory {
    /// Blocking: RocksDB reads.
    pub(crate) fn read(
        store: &Store,
        mempool: &RwLock<Mempool>,
        hashx: &HashX,
        limit: usize,
    ) -> Result<FullHistory, HistoryError> {
        // The mempool lock is held across the store read: blocks are committed under its write
        // lock, so both halves come from the same moment.
        FullHistory::read_in(store, &mempool.read(), hashx, limit)
    }

    /// [`FullHistory::read`] with the mempool's read lock already held.
    pub(crate) fn read_in(
        store: &Store,
        mempool: &Mempool,
        hashx: &HashX,
        limit: usize,
    ) -> Result<FullHistory, HistoryError> {
        let confirmed = confirmed_history(store, hashx, limit)?;
        let mempool = mempool.history(hashx);
        Ok(FullHistory { confirmed, mempool })
    }

    pub fn status(&self) -> Option<String> {
        status(&self.confirmed, &self.mempool)
    }
}

/// The Electrum status hash of a history, `None` for an empty one.
pub(crate) fn status(confirmed: &[Confirmed], mempool: &[MempoolEntry]) -> Option<String> {
    if confirmed.is_empty() && mempool.is_empty() {
        return None;
    }
    let mut text = String::with_capacity((confirmed.len() + mempool.len()) * 72);
    for c in confirmed {
        write!(text, "{}:{}:", c.txid, c.height.0).expect("write to String");
    }
    for m in mempool {
        write!(text, "{}:{}:", m.txid, m.height).expect("write to String");
    }
    Some(hex::encode(
        sha256::Hash::hash(text.as_bytes()).to_byte_array(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Height, Txid};

    fn txid(s: &str) -> Txid {
        Txid::from_hex(s).unwrap()
    }

    #[test]
    fn empty_history_has_no_status() {
        assert_eq!(status(&[], &[]), None);
    }

    #[test]
    fn status_of_a_known_history() {
        let a = "ae0d2d1ba9d1d2f3cd1a8b5cda3f1c6b2a2ad1d4c3e0b9bb8a3ce3c7ddc53c2e";
        let b = "5c9d2a6c7a3e0f8e4f1b2d3c4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7";
        let c = "00000000000000000000000000000000000000000000000000000000000000ff";
        let confirmed = vec![
            Confirmed {
                txid: txid(a),
                height: Height(101),
            },
            Confirmed {
                txid: txid(b),
                height: Height(102),
            },
        ];
        let mempool = vec![MempoolEntry {
            txid: txid(c),
            height: -1,
            fee: 500,
        }];
        let preimage = format!("{a}:101:{b}:102:{c}:-1:");
        let expected = hex::encode(sha256::Hash::hash(preimage.as_bytes()).to_byte_array());
        assert_eq!(status(&confirmed, &mempool), Some(expected));
        // Fixed value for the preimage "<a>:101:", computed with Python's hashlib.
        assert_eq!(
            status(&confirmed[..1], &[]).unwrap(),
            "949b89ffd20ab1ad22af8303323d78ef6af772ea0d46dff1439926800383984c"
        );
    }

    #[test]
    fn limit_follows_max_send() {
        assert_eq!(history_limit(8_100_000), 81_817);
        assert_eq!(history_limit(1_000_000), 10_100);
    }
}
