//! Zcash/Komodo blocks (Equihash headers) and transactions (Sprout, Overwinter, Sapling): the input as a whole block and as one transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sextant::coin::{Chain, HeaderFamily, TxFamily};

const CHAIN: Chain = Chain {
    header: HeaderFamily::Equihash,
    tx: TxFamily::Zcash,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = CHAIN.parse_block(data) {
        assert_eq!(CHAIN.header_hash(&block.header), block.hash);
    }
    let _ = CHAIN.parse_tx(data);
});
