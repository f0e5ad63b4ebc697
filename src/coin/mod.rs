//! Coins are data: one TOML file per coin in `coins/` (embedded at build time) or in `COINS_DIR`.
//!
//! Everything chain-specific lives here: network parameters from the coin file, and the header and
//! transaction *families* that know how to parse a chain's blocks. The indexer sees only
//! [`Chain::parse_block`] / [`Chain::parse_tx`] and the [`ParsedBlock`] they return.

pub mod bitcoin;
pub mod equihash;
pub mod file;
pub mod keva;
pub mod kevacoin;
pub mod litecoin;
pub mod reader;
pub mod zcash;

use crate::types::{BlockHash, OutPoint, ScriptHash, Txid};
pub use file::{Coin, CoinError, CoinRegistry};

/// How a coin's block headers are laid out and hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderFamily {
    /// 80 bytes, hash = double SHA-256 of the header.
    Bitcoin,
    /// Zcash/Komodo: 140 bytes plus a CompactSize-prefixed Equihash solution; hash = double
    /// SHA-256 of the whole header, solution included.
    Equihash,
    /// Kevacoin: 80 bytes plus a CompactSize-prefixed CryptoNote blob; hash = Keccak-256 of the
    /// blob alone.
    Kevacoin,
}

/// How a coin's transactions (and what follows them in a block) are serialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxFamily {
    /// Bitcoin with segwit.
    Bitcoin,
    /// Bitcoin's format plus Litecoin's MWEB extension (HogEx, MWEB block after the txs).
    Litecoin,
    /// Zcash's format (Komodo and its smart chains): Sprout v1/v2, Overwinter v3, Sapling v4.
    Zcash,
    /// Bitcoin's format with Kevacoin's keva scripts: owners hashed without the keva prefix, and
    /// the namespace index with its `blockchain.keva.*` methods.
    Kevacoin,
}

/// One transaction output, reduced to what the index needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedOutput {
    /// Value in the coin's smallest unit.
    pub value: u64,
    /// The script hash this output belongs to; `None` for outputs that are never indexed
    /// (OP_RETURN data carriers, MWEB-only outputs).
    pub scripthash: Option<ScriptHash>,
}

/// One transaction, reduced to what the index needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedTx {
    pub txid: Txid,
    /// Outpoints spent by the transaction; empty for a coinbase.
    pub inputs: Vec<OutPoint>,
    /// Every output in order (vout = index), indexed or not.
    pub outputs: Vec<ParsedOutput>,
    /// Virtual size in vbytes (weight / 4, rounded up), for fee rates.
    pub vsize: u32,
    /// Kevacoin's output scripts and name-index entries; `None` for every other family.
    pub keva: Option<Box<keva::KevaTx>>,
}

/// A block, reduced to what the index needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedBlock {
    /// The raw header bytes, as served by `blockchain.block.header`.
    pub header: Vec<u8>,
    pub hash: BlockHash,
    pub prev_hash: BlockHash,
    pub txs: Vec<ParsedTx>,
}

/// A parse failure, with where in the input it happened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("unexpected end of data at byte {offset} (needed {needed} more)")]
    Truncated { offset: usize, needed: usize },
    #[error("{what} at byte {offset}")]
    Invalid { offset: usize, what: String },
    #[error("{trailing} bytes left over after the block")]
    TrailingBytes { trailing: usize },
    #[error("transaction {index}: {source}")]
    InTx {
        index: usize,
        #[source]
        source: Box<ParseError>,
    },
}

/// The parsing rules of one chain: its header and transaction families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    pub header: HeaderFamily,
    pub tx: TxFamily,
}

impl Chain {
    /// Parses a whole serialized block (as `getblock <hash> 0` returns it). The block must be
    /// consumed exactly: trailing bytes are an error, never silently ignored.
    pub fn parse_block(&self, raw: &[u8]) -> Result<ParsedBlock, ParseError> {
        let mut r = reader::Reader::new(raw);
        let header = match self.header {
            HeaderFamily::Bitcoin => bitcoin::read_header(&mut r)?,
            HeaderFamily::Equihash => equihash::read_header(&mut r)?,
            HeaderFamily::Kevacoin => kevacoin::read_header(&mut r)?,
        };
        let hash = self.header_hash(header);
        let prev_hash = self.header_prev_hash(header);
        let txs = match self.tx {
            TxFamily::Bitcoin => bitcoin::read_block_txs(&mut r)?,
            TxFamily::Litecoin => litecoin::read_block_txs(&mut r)?,
            TxFamily::Zcash => zcash::read_block_txs(&mut r)?,
            TxFamily::Kevacoin => kevacoin::read_block_txs(&mut r)?,
        };
        if r.remaining() != 0 {
            return Err(ParseError::TrailingBytes {
                trailing: r.remaining(),
            });
        }
        Ok(ParsedBlock {
            header: header.to_vec(),
            hash,
            prev_hash,
            txs,
        })
    }

    /// Parses one serialized transaction (as `getrawtransaction <txid>` returns it).
    pub fn parse_tx(&self, raw: &[u8]) -> Result<ParsedTx, ParseError> {
        let mut r = reader::Reader::new(raw);
        let tx = match self.tx {
            TxFamily::Bitcoin => bitcoin::read_tx(&mut r)?,
            TxFamily::Litecoin => litecoin::read_tx(&mut r)?,
            TxFamily::Zcash => zcash::read_tx(&mut r)?,
            TxFamily::Kevacoin => kevacoin::read_tx(&mut r)?,
        };
        if r.remaining() != 0 {
            return Err(ParseError::TrailingBytes {
                trailing: r.remaining(),
            });
        }
        Ok(tx)
    }

    pub fn header_hash(&self, header: &[u8]) -> BlockHash {
        match self.header {
            HeaderFamily::Bitcoin | HeaderFamily::Equihash => {
                BlockHash(crate::types::sha256d(header))
            }
            HeaderFamily::Kevacoin => kevacoin::header_hash(header),
        }
    }

    /// The previous block's hash, read from a header.
    pub fn header_prev_hash(&self, header: &[u8]) -> BlockHash {
        match self.header {
            HeaderFamily::Bitcoin | HeaderFamily::Equihash | HeaderFamily::Kevacoin => {
                let mut h = [0u8; 32];
                h.copy_from_slice(&header[4..36]);
                BlockHash(h)
            }
        }
    }
}

/// The script hash an output is indexed under, or `None` for scripts that can never be spent
/// and that ElectrumX does not index (OP_RETURN).
pub(crate) fn output_scripthash(script: &[u8]) -> Option<ScriptHash> {
    const OP_RETURN: u8 = 0x6a;
    if script.first() == Some(&OP_RETURN) {
        None
    } else {
        Some(ScriptHash::of_script(script))
    }
}
