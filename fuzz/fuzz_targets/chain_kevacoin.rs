//! Kevacoin blocks (CryptoNote headers) and transactions, their keva scripts included; and the input itself as a keva script: the input as a whole block and as one transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sextant::coin::{Chain, HeaderFamily, TxFamily};

const CHAIN: Chain = Chain {
    header: HeaderFamily::Kevacoin,
    tx: TxFamily::Kevacoin,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = CHAIN.parse_block(data) {
        assert_eq!(CHAIN.header_hash(&block.header), block.hash);
    }
    let _ = CHAIN.parse_tx(data);
    if let Some((op, prefix_len)) = sextant::coin::keva::script::split(data) {
        assert!(prefix_len <= data.len());
        let _ = sextant::coin::keva::script::hashtags(&op.key, op.value.as_deref().unwrap_or(&[]));
    }
    let (key, value) = data.split_at(data.len() / 2);
    let _ = sextant::coin::keva::script::hashtags(key, value);
});
