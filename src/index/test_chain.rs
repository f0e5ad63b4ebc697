//! Helpers for the tests of the index and the read side: a Litecoin regtest store in a
//! directory, and blocks that link to their parent by hash.

use std::path::Path;
use std::sync::Arc;

use crate::coin::{CoinRegistry, ParsedBlock, ParsedTx};
use crate::store::{Mode, Store};
use crate::types::{sha256d, BlockHash};

pub(crate) fn open_store(dir: &Path) -> Arc<Store> {
    let coin = CoinRegistry::embedded()
        .unwrap()
        .lookup("Litecoin", "regtest")
        .unwrap();
    Arc::new(Store::open(dir, &coin, 64, Mode::Follow).unwrap())
}

/// A block on `prev` holding `txs`; `nonce` tells siblings apart.
pub(crate) fn block(prev: BlockHash, nonce: u8, txs: Vec<ParsedTx>) -> ParsedBlock {
    let mut header = vec![0u8; 80];
    header[4..36].copy_from_slice(&prev.0);
    header[79] = nonce;
    ParsedBlock {
        hash: BlockHash(sha256d(&header)),
        prev_hash: prev,
        header,
        txs,
    }
}
