//! What an index of a generated chain must say, computed from the block files alone with
//! rust-bitcoin's decoder — neither the generator's bookkeeping nor Sextant's parser — while
//! checking that the chain is what the generator promises: the regtest genesis, linked headers,
//! exact merkle roots and witness commitments, the txid table, and inputs that each spend an
//! existing unspent output exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Block, BlockHash, OutPoint};
use serde_json::{json, Value};

use crate::scale::layout;

#[derive(Default)]
struct ScriptState {
    /// (txid, height), chain order, once per transaction.
    history: Vec<(String, u64)>,
    /// Unspent outputs by (chain order of the transaction, vout): (txid, height, value).
    utxos: BTreeMap<(u64, u32), (String, u64, u64)>,
}

pub struct Oracle {
    /// Block hashes by height (RPC byte order).
    pub hashes: Vec<String>,
    pub headers: Vec<Vec<u8>>,
    /// Every txid by chain order, genesis coinbase first.
    pub txids: Vec<String>,
    scripts: HashMap<Vec<u8>, ScriptState>,
    /// Unspent outputs: (script, chain order of their transaction, value).
    coins: HashMap<OutPoint, (Vec<u8>, u64, u64)>,
    tx_count: u64,
}

/// Electrum's script hash.
pub fn scripthash(script: &[u8]) -> String {
    let mut h = sha256::Hash::hash(script).to_byte_array();
    h.reverse();
    hex::encode(h)
}

impl Oracle {
    pub fn new() -> Oracle {
        Oracle {
            hashes: Vec::new(),
            headers: Vec::new(),
            txids: Vec::new(),
            scripts: HashMap::new(),
            coins: HashMap::new(),
            tx_count: 0,
        }
    }

    pub fn height(&self) -> u64 {
        self.hashes.len() as u64 - 1
    }

    /// Reads and applies blocks `0..=upto` of the chain in `dir`.
    pub fn load(dir: &Path, upto: u64) -> Result<Oracle> {
        let mut o = Oracle::new();
        o.extend(dir, upto)?;
        Ok(o)
    }

    /// Applies blocks from the next height up to `upto`.
    pub fn extend(&mut self, dir: &Path, upto: u64) -> Result<()> {
        let index = layout::read_index(dir)?;
        let table = std::fs::read(dir.join(layout::TXIDS)).context("read txids.bin")?;
        let mut file: Option<(u32, Vec<u8>)> = None;
        for h in self.hashes.len() as u64..=upto {
            let e = index.get(h as usize).context("height past the index")?;
            if file.as_ref().map(|(n, _)| *n) != Some(e.file) {
                file = Some((
                    e.file,
                    std::fs::read(layout::block_file(dir, e.file)).context("read a block file")?,
                ));
            }
            let bytes = &file.as_ref().unwrap().1[e.offset as usize..][..e.len as usize];
            let mut index_hash = e.hash;
            index_hash.reverse();
            self.apply(h, bytes, &hex::encode(index_hash))
                .with_context(|| format!("block {h}"))?;
            for (i, t) in (e.first_tx..).zip(&self.txids[e.first_tx as usize..]) {
                let mut stored: [u8; 32] = table[i as usize * 32..][..32].try_into().unwrap();
                stored.reverse();
                ensure!(
                    hex::encode(stored) == *t,
                    "txids.bin at {i} differs from the block"
                );
            }
            ensure!(
                e.first_tx + e.n_tx as u64 == self.txids.len() as u64,
                "index transaction numbers at {h}"
            );
        }
        Ok(())
    }

    /// Checks and applies the block at `height`.
    pub fn apply(&mut self, height: u64, bytes: &[u8], index_hash: &str) -> Result<()> {
        let block: Block = bitcoin::consensus::deserialize(bytes).context("decode")?;
        let hash = block.block_hash().to_string();
        ensure!(
            hash == index_hash,
            "hash {hash} but the index says {index_hash}"
        );
        if height == 0 {
            ensure!(
                hash == "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9",
                "not Litecoin regtest's genesis"
            );
        } else {
            let prev: BlockHash = self.hashes[height as usize - 1].parse()?;
            ensure!(block.header.prev_blockhash == prev, "previous hash");
        }
        ensure!(block.check_merkle_root(), "merkle root");
        ensure!(block.check_witness_commitment(), "witness commitment");
        self.hashes.push(hash);
        self.headers
            .push(bitcoin::consensus::serialize(&block.header));
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            let txid_s = txid.to_string();
            self.txids.push(txid_s.clone());
            let order = self.tx_count;
            self.tx_count += 1;
            // ElectrumX never indexes the genesis coinbase.
            if height == 0 {
                continue;
            }
            let mut touched: Vec<Vec<u8>> = Vec::new();
            if !tx.is_coinbase() {
                for i in &tx.input {
                    let Some((script, spent_order, _)) = self.coins.remove(&i.previous_output)
                    else {
                        bail!("{txid} spends {}: unknown or spent", i.previous_output);
                    };
                    let s = self.scripts.get_mut(&script).unwrap();
                    s.utxos
                        .remove(&(spent_order, i.previous_output.vout))
                        .context("script's utxo")?;
                    touched.push(script);
                }
            }
            for (vout, o) in tx.output.iter().enumerate() {
                let script = o.script_pubkey.as_bytes().to_vec();
                // OP_RETURN outputs are never indexed.
                if script.first() == Some(&0x6a) {
                    continue;
                }
                let op = OutPoint::new(txid, vout as u32);
                self.coins
                    .insert(op, (script.clone(), order, o.value.to_sat()));
                self.scripts
                    .entry(script.clone())
                    .or_default()
                    .utxos
                    .insert(
                        (order, vout as u32),
                        (txid_s.clone(), height, o.value.to_sat()),
                    );
                touched.push(script);
            }
            let mut seen = HashSet::new();
            for s in touched {
                if seen.insert(s.clone()) {
                    self.scripts
                        .get_mut(&s)
                        .unwrap()
                        .history
                        .push((txid_s.clone(), height));
                }
            }
        }
        Ok(())
    }

    pub fn utxo_count(&self) -> usize {
        self.coins.len()
    }

    /// Every script with a history, in a stable order (by script hash).
    pub fn scripts(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<(String, Vec<u8>)> = self
            .scripts
            .keys()
            .map(|s| (scripthash(s), s.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }

    pub fn history_len(&self, script: &[u8]) -> usize {
        self.scripts.get(script).map_or(0, |s| s.history.len())
    }

    pub fn utxo_len(&self, script: &[u8]) -> usize {
        self.scripts.get(script).map_or(0, |s| s.utxos.len())
    }

    /// `blockchain.scripthash.get_history`.
    pub fn history(&self, script: &[u8]) -> Value {
        let items: Vec<Value> = self
            .scripts
            .get(script)
            .map(|s| {
                s.history
                    .iter()
                    .map(|(t, h)| json!({"tx_hash": t, "height": h}))
                    .collect()
            })
            .unwrap_or_default();
        json!(items)
    }

    /// `blockchain.scripthash.get_balance`.
    pub fn balance(&self, script: &[u8]) -> Value {
        let confirmed: u64 = self
            .scripts
            .get(script)
            .map_or(0, |s| s.utxos.values().map(|(_, _, v)| v).sum());
        json!({"confirmed": confirmed, "unconfirmed": 0})
    }

    /// `blockchain.scripthash.listunspent`, in chain order.
    pub fn listunspent(&self, script: &[u8]) -> Value {
        let items: Vec<Value> = self
            .scripts
            .get(script)
            .map(|s| {
                s.utxos
                    .iter()
                    .map(|((_, vout), (t, h, v))| {
                        json!({"tx_hash": t, "tx_pos": vout, "height": h, "value": v})
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!(items)
    }

    /// ElectrumX's status: sha256 of `txid:height:` for every entry, hex; null when empty.
    pub fn status(&self, script: &[u8]) -> Value {
        let Some(s) = self.scripts.get(script).filter(|s| !s.history.is_empty()) else {
            return Value::Null;
        };
        let text: String = s.history.iter().map(|(t, h)| format!("{t}:{h}:")).collect();
        json!(hex::encode(
            sha256::Hash::hash(text.as_bytes()).to_byte_array()
        ))
    }
}
