//! Kevacoin: Bitcoin's transaction format, whose keva outputs carry key-value operations, and
//! headers that append a CryptoNote blob to Bitcoin's 80 bytes.
//!
//! Header: `80 bytes ‖ CompactSize(len) ‖ blob`. The blob is 76 bytes on mainnet but 72 on
//! testnet/regtest (a timestamp of 0 takes one varint byte), so its length is always read. The
//! block hash is `cn_fast_hash(blob)`: Keccak-256 with the original Keccak padding (not FIPS
//! SHA3-256) of the blob alone, length byte excluded. The whole header is what clients get.
//!
//! Transactions: a keva output's owner is the address script after the keva prefix, so its
//! script hash is taken on that part alone (a namespace output shows in its owner's history);
//! every transaction also carries its output scripts for the keva index.

use sha3::{Digest, Keccak256};

use super::bitcoin::{self, HEADER_LEN};
use super::keva::{self, KevaTx};
use super::reader::Reader;
use super::{ParseError, ParsedTx};
use crate::types::{BlockHash, ScriptHash};

/// Reads one header, blob included, and returns its bytes.
pub fn read_header<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], ParseError> {
    let start = r.position();
    r.skip(HEADER_LEN)?;
    r.read_var_bytes()?; // the CryptoNote blob
    Ok(r.since(start))
}

/// The block hash: Keccak-256 of the blob. Headers in the store were read by [`read_header`];
/// anything shorter hashes what follows the 80 bytes.
pub fn header_hash(header: &[u8]) -> BlockHash {
    let rest = header.get(HEADER_LEN..).unwrap_or(&[]);
    let blob = Reader::new(rest).read_var_bytes().unwrap_or(rest);
    BlockHash(Keccak256::digest(blob).into())
}

/// One transaction in Bitcoin's format, with keva owners and the keva data.
pub fn read_tx(r: &mut Reader<'_>) -> Result<ParsedTx, ParseError> {
    let start = r.position();
    let mut tx = bitcoin::read_tx(r)?;
    let scripts = output_scripts(r.since(start))?;
    for (out, script) in tx.outputs.iter_mut().zip(&scripts) {
        if let Some((_, prefix_len)) = keva::script::split(script) {
            out.scripthash = Some(ScriptHash::of_script(&script[prefix_len..]));
        }
    }
    tx.keva = Some(Box::new(KevaTx::from_scripts(scripts)));
    Ok(tx)
}

/// A block's transactions.
pub(crate) fn read_block_txs(r: &mut Reader<'_>) -> Result<Vec<ParsedTx>, ParseError> {
    bitcoin::read_tx_list(r, read_tx)
}

/// The output scripts of a transaction that [`bitcoin::read_tx`] has already validated.
fn output_scripts(raw: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
    let mut r = Reader::new(raw);
    r.skip(4)?; // version
    let mut vin = r.read_compact_size()?;
    if vin == 0 {
        if r.read_u8()? == 0 {
            return Ok(Vec::new()); // marker 00, flag 00: bitcoind's empty transaction
        }
        vin = r.read_compact_size()?;
    }
    for _ in 0..vin {
        r.skip(36)?;
        r.read_var_bytes()?;
        r.skip(4)?;
    }
    let n = r.read_count(9)?;
    let mut scripts = Vec::with_capacity(n);
    for _ in 0..n {
        r.skip(8)?;
        scripts.push(r.read_var_bytes()?.to_vec());
    }
    Ok(scripts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn genesis(net: &str) -> Value {
        let path = format!(
            "{}/tests/data/vectors/kevacoin/genesis_{net}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn genesis_blocks_hash_as_kevacoind_says() {
        let chain = super::super::Chain {
            header: super::super::HeaderFamily::Kevacoin,
            tx: super::super::TxFamily::Kevacoin,
        };
        for net in ["mainnet", "testnet", "regtest"] {
            let v = genesis(net);
            let header = hex::decode(v["header"].as_str().unwrap()).unwrap();
            assert_eq!(
                header.len() as u64,
                v["header_len"].as_u64().unwrap(),
                "{net}"
            );
            assert_eq!(header_hash(&header).to_string(), v["hash"], "{net}");
            // The blob's prev_id is the double SHA-256 of the 80 Bitcoin bytes.
            let original = BlockHash(crate::types::sha256d(&header[..80]));
            assert_eq!(
                original.to_string(),
                v["original_hash_dsha256_of_80_bytes"],
                "{net}"
            );
            let block = hex::decode(v["block"].as_str().unwrap()).unwrap();
            let parsed = chain.parse_block(&block).unwrap();
            assert_eq!(parsed.header, header, "{net}");
            assert_eq!(parsed.hash.to_string(), v["hash"], "{net}");
            assert_eq!(parsed.prev_hash, BlockHash::default());
            assert_eq!(parsed.txs.len(), 1);
            assert_eq!(parsed.txs[0].txid.to_string(), v["merkleroot"], "{net}");
            let keva = parsed.txs[0].keva.as_ref().unwrap();
            assert_eq!(keva.scripts.len(), parsed.txs[0].outputs.len());
        }
    }

    #[test]
    fn the_blob_length_is_read_not_assumed() {
        let v = genesis("regtest");
        let header = hex::decode(v["header"].as_str().unwrap()).unwrap();
        let mut raw = header.clone();
        raw.push(0x00); // what follows the header
        let mut r = Reader::new(&raw);
        assert_eq!(read_header(&mut r).unwrap(), &header[..]);
        assert_eq!(r.remaining(), 1);
        for cut in [0, 79, 80, 81, header.len() - 1] {
            assert!(matches!(
                read_header(&mut Reader::new(&header[..cut])),
                Err(ParseError::Truncated { .. })
            ));
        }
        // The length byte is not hashed: Keccak-256 of the blob alone.
        let blob = &header[81..];
        assert_eq!(
            header_hash(&header).0,
            <[u8; 32]>::from(Keccak256::digest(blob))
        );
    }

    #[test]
    fn the_coin_file_resolves_every_net() {
        let reg = crate::coin::CoinRegistry::embedded().unwrap();
        for (net, rpc_port, p2pkh) in [
            ("mainnet", 9337, 0x2d),
            ("testnet", 19332, 0x37),
            ("regtest", 19443, 0x6f),
        ] {
            let c = reg.lookup("Kevacoin", net).unwrap();
            assert_eq!(c.chain.header, super::super::HeaderFamily::Kevacoin);
            assert_eq!(c.chain.tx, super::super::TxFamily::Kevacoin);
            assert_eq!((c.rpc_port, c.p2pkh_verbyte), (rpc_port, p2pkh), "{net}");
            assert_eq!(c.genesis_hash.to_string(), genesis(net)["hash"], "{net}");
            assert_eq!(c.reorg_limit, 800);
        }
    }

    #[test]
    fn keccak_is_the_original_padding() {
        // Keccak-256("") as Ethereum and Monero compute it; FIPS SHA3-256("") differs.
        assert_eq!(
            hex::encode(Keccak256::digest(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }
}
