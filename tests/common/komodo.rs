//! A Komodo-format chain for the stand-in daemon, built from real vectors.
//!
//! Heights 0–10 are KMD mainnet's real first blocks (they link; block 0 is the genesis both
//! servers check). Blocks above are built here: real Equihash-format headers (140 bytes +
//! 1344-byte solution, correct prev-hash and merkle root; neither Sextant nor ElectrumX checks the
//! proof of work) over real Komodo/Zcash transactions that spend nothing transparent (coinbases of
//! KMD, HUSH, RICK and test-chain blocks; Sprout JoinSplit and Sapling shielded transactions) and
//! synthetic Zcash-format transactions (v1 and v4 Sapling) that spend earlier outputs, so that
//! histories, spends and UTXOs are not trivial: P2PKH, P2SH, P2PK outputs, OP_RETURN, a 13-input
//! notarization-shaped transaction, and a parent → child spend inside one block.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bitcoin::hashes::{sha256d, Hash};
use serde_json::Value;

use super::standin::{dsha256_hex, StandinBlock, StandinTx};

pub fn vector_path(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("tests/data/vectors/komodo"),
        manifest.join("../shared/vectors/komodo"),
    ];
    candidates
        .iter()
        .map(|dir| dir.join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("vector {name} not found in {candidates:?}"))
}

pub fn read_vector(name: &str) -> String {
    let path = vector_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

pub fn load_vector(name: &str) -> Value {
    serde_json::from_str(&read_vector(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The raw bytes of a vector block: a zebra-komodo `.txt` (one hex line) or an ElectrumX `.json`.
pub fn vector_block(name: &str) -> Vec<u8> {
    let text = if name.ends_with(".json") {
        load_vector(name)["block"].as_str().unwrap().to_string()
    } else {
        read_vector(name)
    };
    hex::decode(text.trim()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A vector block's transactions, cut by the sizes recorded in `expected_computed.json`.
pub fn vector_txs(name: &str) -> Vec<StandinTx> {
    let raw = vector_block(name);
    let expected = &load_vector("expected_computed.json")["blocks"][name];
    let mut at = expected["header_size"].as_u64().unwrap() as usize;
    let count = expected["tx_count"].as_u64().unwrap();
    at += compact_size(count).len();
    let txs: Vec<StandinTx> = expected["txs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let size = t["size"].as_u64().unwrap() as usize;
            let raw = raw[at..at + size].to_vec();
            at += size;
            let tx = StandinTx {
                txid: dsha256_hex(&raw),
                raw,
            };
            assert_eq!(tx.txid, t["txid"].as_str().unwrap(), "{name}");
            tx
        })
        .collect();
    assert_eq!(at, raw.len(), "{name}: transactions end the block");
    txs
}

/// A real KMD mainnet block 0–10 as the stand-in serves it.
pub fn kmd_block(height: usize) -> StandinBlock {
    let name = format!("zebra-komodo/block-kmdmain-0-000-{height:03}.txt");
    let raw = vector_block(&name);
    let hash = dsha256_hex(&raw[..1487]);
    StandinBlock {
        hash,
        raw,
        txs: vector_txs(&name),
    }
}

pub fn compact_size(n: u64) -> Vec<u8> {
    match n {
        0..=0xfc => vec![n as u8],
        0xfd..=0xffff => {
            let mut v = vec![0xfd];
            v.extend((n as u16).to_le_bytes());
            v
        }
        _ => {
            let mut v = vec![0xfe];
            v.extend((n as u32).to_le_bytes());
            v
        }
    }
}

fn txid_bytes(txid_hex: &str) -> [u8; 32] {
    let mut b: [u8; 32] = hex::decode(txid_hex).unwrap().try_into().unwrap();
    b.reverse();
    b
}

/// One transparent output of a transaction: (value, script).
pub type Output = (u64, Vec<u8>);

/// The transparent outputs of a v1–v4 Zcash-format transaction (read independently of Sextant).
pub fn transparent_outputs(raw: &[u8]) -> Vec<Output> {
    struct Cursor<'a>(&'a [u8]);
    impl Cursor<'_> {
        fn take(&mut self, n: usize) -> &[u8] {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        }
        fn u32(&mut self) -> u32 {
            u32::from_le_bytes(self.take(4).try_into().unwrap())
        }
        fn varint(&mut self) -> usize {
            match self.take(1)[0] {
                0xfd => u16::from_le_bytes(self.take(2).try_into().unwrap()) as usize,
                0xfe => self.u32() as usize,
                n => n as usize,
            }
        }
    }
    let mut c = Cursor(raw);
    if c.u32() & 0x8000_0000 != 0 {
        c.u32(); // version group id
    }
    for _ in 0..c.varint() {
        c.take(36);
        let n = c.varint();
        c.take(n + 4);
    }
    (0..c.varint())
        .map(|_| {
            let value = u64::from_le_bytes(c.take(8).try_into().unwrap());
            let n = c.varint();
            (value, c.take(n).to_vec())
        })
        .collect()
}

/// Transaction formats the builder writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxVersion {
    /// Sprout v1: Bitcoin's legacy layout.
    V1,
    /// Sapling v4 without shielded parts: overwintered header, version group, expiry height,
    /// valueBalance and three empty counts.
    V4,
}

/// A Zcash-format transaction spending `inputs` (txid, vout), or a coinbase when `inputs` is
/// empty (`tag` then makes its txid unique). Scripts are not signed: nothing checks them.
pub fn zcash_tx(
    version: TxVersion,
    inputs: &[(String, u32)],
    outputs: &[Output],
    tag: u32,
) -> Vec<u8> {
    let mut t = Vec::new();
    match version {
        TxVersion::V1 => t.extend(1u32.to_le_bytes()),
        TxVersion::V4 => {
            t.extend(0x8000_0004u32.to_le_bytes());
            t.extend(0x892F_2085u32.to_le_bytes());
        }
    }
    if inputs.is_empty() {
        t.extend(compact_size(1));
        t.extend([0u8; 32]);
        t.extend(u32::MAX.to_le_bytes());
        let script_sig = [&[0x04][..], &tag.to_le_bytes(), b"standin"].concat();
        t.extend(compact_size(script_sig.len() as u64));
        t.extend(script_sig);
        t.extend(u32::MAX.to_le_bytes());
    } else {
        t.extend(compact_size(inputs.len() as u64));
        for (txid, vout) in inputs {
            t.extend(txid_bytes(txid));
            t.extend(vout.to_le_bytes());
            // A stand-in signature push: 72 bytes, the size of a DER signature.
            t.extend([0x48, 0x47]);
            t.extend([0x30u8; 71]);
            t.extend(0xffff_fffeu32.to_le_bytes());
        }
    }
    t.extend(compact_size(outputs.len() as u64));
    for (value, script) in outputs {
        t.extend(value.to_le_bytes());
        t.extend(compact_size(script.len() as u64));
        t.extend(script);
    }
    t.extend(tag.to_le_bytes()); // nLockTime
    if version == TxVersion::V4 {
        t.extend(0u32.to_le_bytes()); // nExpiryHeight
        t.extend(0i64.to_le_bytes()); // valueBalance
        t.extend([0, 0, 0]); // no spends, outputs or JoinSplits: no bindingSig
    }
    t
}

pub fn p2pkh(tag: u8) -> Vec<u8> {
    [&[0x76, 0xa9, 0x14][..], &[tag; 20], &[0x88, 0xac]].concat()
}

pub fn p2sh(tag: u8) -> Vec<u8> {
    [&[0xa9, 0x14][..], &[tag; 20], &[0x87]].concat()
}

/// Pay-to-public-key with a compressed key (notary outputs are of this kind).
pub fn p2pk(tag: u8) -> Vec<u8> {
    [&[0x21, 0x02][..], &[tag; 32], &[0xac]].concat()
}

pub fn op_return(data: &[u8]) -> Vec<u8> {
    [&[0x6a, data.len() as u8][..], data].concat()
}

/// The Electrum scripthash of a script: SHA-256, byte-reversed, hex.
pub fn electrum_scripthash(script: &[u8]) -> String {
    use bitcoin::hashes::sha256;
    let mut h = sha256::Hash::hash(script).to_byte_array();
    h.reverse();
    hex::encode(h)
}

/// Builds blocks on top of a chain and remembers every transparent output, for spending and for
/// listing the scripts a test should ask about.
pub struct ChainBuilder {
    pub blocks: Vec<StandinBlock>,
    /// (txid, vout) → output, for every transparent output seen.
    pub outputs: HashMap<(String, u32), Output>,
    /// Every script seen in an output, in order of first appearance.
    pub scripts: Vec<Vec<u8>>,
    time: u32,
}

impl ChainBuilder {
    pub fn new(blocks: Vec<StandinBlock>) -> ChainBuilder {
        let mut b = ChainBuilder {
            blocks: Vec::new(),
            outputs: HashMap::new(),
            scripts: Vec::new(),
            time: 1_700_000_000,
        };
        for block in blocks {
            b.remember(&block.txs);
            b.blocks.push(block);
        }
        b
    }

    pub fn tip_hash(&self) -> &str {
        &self.blocks.last().unwrap().hash
    }

    pub fn remember(&mut self, txs: &[StandinTx]) {
        for tx in txs {
            for (vout, out) in transparent_outputs(&tx.raw).into_iter().enumerate() {
                if !self.scripts.contains(&out.1) {
                    self.scripts.push(out.1.clone());
                }
                self.outputs.insert((tx.txid.clone(), vout as u32), out);
            }
        }
    }

    /// The value of an output this builder has seen.
    pub fn value(&self, txid: &str, vout: u32) -> u64 {
        self.outputs[&(txid.to_string(), vout)].0
    }

    /// A synthetic transaction spending `inputs`; each output gets its per mille of the inputs'
    /// value, the rest is the fee.
    pub fn spend(
        &mut self,
        version: TxVersion,
        inputs: &[(String, u32)],
        outs: &[(u64, Vec<u8>)],
        tag: u32,
    ) -> StandinTx {
        let total: u64 = inputs.iter().map(|(t, v)| self.value(t, *v)).sum();
        let outputs: Vec<Output> = outs
            .iter()
            .map(|(per_mille, s)| (total / 1000 * per_mille, s.clone()))
            .collect();
        let raw = zcash_tx(version, inputs, &outputs, tag);
        let tx = StandinTx {
            txid: dsha256_hex(&raw),
            raw,
        };
        self.remember(std::slice::from_ref(&tx));
        tx
    }

    /// A block of `txs` (the first must be a coinbase) on top of `prev_hash`.
    pub fn block_on(&mut self, prev_hash: &str, txs: Vec<StandinTx>) -> StandinBlock {
        self.remember(&txs);
        self.time += 60;
        let mut header = Vec::with_capacity(1487);
        header.extend(4u32.to_le_bytes());
        header.extend(txid_bytes(prev_hash));
        header.extend(merkle_root(&txs));
        header.extend([0u8; 32]); // hashFinalSaplingRoot: not checked by Electrum servers
        header.extend(self.time.to_le_bytes());
        header.extend(0x200f_0f0fu32.to_le_bytes());
        header.extend([self.blocks.len() as u8; 32]); // nonce
        header.extend(compact_size(1344));
        header.extend((0..1344).map(|i| (i * 7 + self.time as usize) as u8));
        let mut raw = header.clone();
        raw.extend(compact_size(txs.len() as u64));
        for t in &txs {
            raw.extend(&t.raw);
        }
        StandinBlock {
            hash: dsha256_hex(&header),
            raw,
            txs,
        }
    }

    /// A block on the current tip, appended to the builder's chain.
    pub fn push(&mut self, txs: Vec<StandinTx>) -> StandinBlock {
        let prev = self.tip_hash().to_string();
        let b = self.block_on(&prev, txs);
        self.blocks.push(b.clone());
        b
    }

    /// A synthetic coinbase paying `script`.
    pub fn coinbase(&mut self, version: TxVersion, script: Vec<u8>, tag: u32) -> StandinTx {
        let raw = zcash_tx(version, &[], &[(3 * 100_000_000, script)], tag);
        let tx = StandinTx {
            txid: dsha256_hex(&raw),
            raw,
        };
        self.remember(std::slice::from_ref(&tx));
        tx
    }
}

/// Bitcoin's merkle root over txids (internal byte order), the last one paired with itself.
pub fn merkle_root(txs: &[StandinTx]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = txs.iter().map(|t| txid_bytes(&t.txid)).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let right = pair.get(1).unwrap_or(&pair[0]);
                sha256d::Hash::hash(&[pair[0], *right].concat()).to_byte_array()
            })
            .collect();
    }
    level[0]
}
