//! An independent oracle of what an ElectrumX-compatible index must say, computed only from the
//! daemon's own JSON decoding (`getblock <hash> 2`, `getrawtransaction <txid> true`) — never from
//! our parser.
//!
//! Rules (ElectrumX): outputs whose script starts with OP_RETURN (0x6a) are never indexed; the
//! genesis coinbase is never indexed; coinbase inputs are not spends; a tx appears once per script
//! in a history even if it touches the script several times; a script is touched by a tx when one
//! of its outputs pays the script or one of its inputs spends an output of the script. MWEB inputs
//! and outputs (`"ismweb": true`) are not transparent and never touch a script; the HogEx is an
//! ordinary transparent tx (its outputs: the HogAddr and the peg-outs).

use std::collections::{BTreeMap, HashMap, HashSet};

use bitcoin::hashes::{sha256, Hash};
use serde_json::{json, Value};

use super::litecoind::Litecoind;

// ---------------------------------------------------------------- amounts and hashes

/// Electrum script hash of a scriptPubKey given in hex: sha256, byte-reversed, hex.
pub fn scripthash(script_hex: &str) -> String {
    let bytes = hex::decode(script_hex).unwrap_or_else(|_| panic!("bad script hex {script_hex}"));
    scripthash_bytes(&bytes)
}

pub fn scripthash_bytes(script: &[u8]) -> String {
    let mut h = sha256::Hash::hash(script).to_byte_array();
    h.reverse();
    hex::encode(h)
}

/// An amount in coins (JSON number like `12.4999837` or a decimal string) → satoshis, exactly.
///
/// serde_json parses numbers to the nearest f64; Rust's `Display` for f64 prints the shortest
/// decimal that round-trips, which for any ≤ 8-decimal amount below 2^53 sats is the daemon's own
/// text, so the conversion goes through that decimal text (no `* 1e8` rounding).
pub fn amount_to_sats(v: &Value) -> u64 {
    let text = match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                return u.checked_mul(100_000_000).expect("amount overflow");
            }
            let f = n.as_f64().unwrap_or_else(|| panic!("bad amount {v}"));
            format!("{f}")
        }
        Value::String(s) => s.clone(),
        _ => panic!("amount is not a number: {v}"),
    };
    decimal_to_sats(&text)
}

/// "12.4999837" → 1249998370. Panics on negative, exponent or more than 8 decimals.
pub fn decimal_to_sats(text: &str) -> u64 {
    let t = text.trim();
    assert!(
        !t.starts_with('-') && !t.contains(['e', 'E']),
        "unsupported amount text {t:?}"
    );
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    assert!(frac.len() <= 8, "amount {t:?} has more than 8 decimals");
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().unwrap_or_else(|_| panic!("bad amount {t:?}"))
    };
    let frac_val: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<8}")
            .parse()
            .unwrap_or_else(|_| panic!("bad amount {t:?}"))
    };
    int * 100_000_000 + frac_val
}

/// Satoshis → the daemon's amount text ("1.50000000").
pub fn sats_to_amount(sats: u64) -> String {
    format!("{}.{:08}", sats / 100_000_000, sats % 100_000_000)
}

/// ElectrumX status: sha256 hex (not reversed) of `txid:height:` for every entry, or None.
pub fn status_of(items: &[HistoryItem]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let s: String = items
        .iter()
        .map(|i| format!("{}:{}:", i.txid, i.height))
        .collect();
    Some(hex::encode(
        sha256::Hash::hash(s.as_bytes()).to_byte_array(),
    ))
}

fn is_op_return(script_hex: &str) -> bool {
    script_hex.starts_with("6a")
}

fn is_mweb(io: &Value) -> bool {
    io.get("ismweb").and_then(Value::as_bool).unwrap_or(false)
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a JSON string, got {v}"))
        .to_string()
}

// ---------------------------------------------------------------- confirmed state

/// One history entry: height ≥ 1 confirmed, 0 mempool with confirmed inputs, −1 mempool with an
/// unconfirmed input.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HistoryItem {
    pub txid: String,
    pub height: i64,
}

/// An unspent output. `height` 0 for a mempool output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utxo {
    pub txid: String,
    pub vout: u32,
    pub height: u64,
    pub value: u64,
}

#[derive(Clone, Debug, Default)]
struct ScriptState {
    script_hex: String,
    /// (tx_num, txid, height), chain order, one entry per tx.
    history: Vec<(u64, String, u64)>,
    /// (tx_num, vout) → utxo: chain order then output index.
    utxos: BTreeMap<(u64, u32), Utxo>,
}

/// Where a confirmed tx is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub height: u64,
    pub position: u32,
    pub tx_num: u64,
}

/// The confirmed index of the daemon's best chain, as ElectrumX would build it.
#[derive(Clone, Debug)]
pub struct Oracle {
    pub height: u64,
    pub tip: String,
    /// Best-chain block hashes by height (index 0 = genesis).
    pub block_hashes: Vec<String>,
    /// Number of transactions in the chain (genesis coinbase included, as ElectrumX numbers it).
    pub tx_count: u64,
    pub txs: HashMap<String, TxLocation>,
    scripts: HashMap<String, ScriptState>,
    /// Unspent indexed outputs → (scripthash, tx_num).
    unspent: HashMap<(String, u32), (String, u64)>,
}

impl Oracle {
    /// Walk the daemon's best chain from genesis (batched `getblockhash` + `getblock … 2`).
    pub fn from_daemon(d: &Litecoind) -> Oracle {
        let height = d.call("getblockcount", json!([])).as_u64().unwrap();
        let mut block_hashes = Vec::with_capacity(height as usize + 1);
        let heights: Vec<u64> = (0..=height).collect();
        for chunk in heights.chunks(1000) {
            let calls: Vec<(&str, Value)> =
                chunk.iter().map(|h| ("getblockhash", json!([h]))).collect();
            for r in d.rpc_batch(&calls).expect("getblockhash batch") {
                block_hashes.push(s(&r.expect("getblockhash")));
            }
        }
        let mut o = Oracle {
            height,
            tip: block_hashes.last().unwrap().clone(),
            block_hashes: Vec::new(),
            tx_count: 0,
            txs: HashMap::new(),
            scripts: HashMap::new(),
            unspent: HashMap::new(),
        };
        let mut prev: Option<String> = None;
        for chunk in block_hashes.chunks(40) {
            let calls: Vec<(&str, Value)> =
                chunk.iter().map(|h| ("getblock", json!([h, 2]))).collect();
            for (hash, r) in chunk
                .iter()
                .zip(d.rpc_batch(&calls).expect("getblock batch"))
            {
                let block = r.unwrap_or_else(|e| panic!("getblock {hash}: {e}"));
                assert_eq!(
                    block["previousblockhash"].as_str(),
                    prev.as_deref(),
                    "chain moved during the oracle walk"
                );
                o.add_block(&block);
                prev = Some(hash.clone());
            }
        }
        assert_eq!(
            s(&d.call("getbestblockhash", json!([]))),
            o.tip,
            "the tip moved during the oracle walk"
        );
        o
    }

    fn add_block(&mut self, block: &Value) {
        let height = block["height"].as_u64().unwrap();
        assert_eq!(
            height as usize,
            self.block_hashes.len(),
            "blocks out of order"
        );
        self.block_hashes.push(s(&block["hash"]));
        for (pos, tx) in block["tx"].as_array().unwrap().iter().enumerate() {
            let tx_num = self.tx_count;
            self.tx_count += 1;
            let txid = s(&tx["txid"]);
            let prev = self.txs.insert(
                txid.clone(),
                TxLocation {
                    height,
                    position: pos as u32,
                    tx_num,
                },
            );
            assert!(
                prev.is_none(),
                "duplicate txid {txid} (BIP30) — the oracle does not model it"
            );
            if height == 0 {
                continue; // the genesis coinbase is never indexed
            }
            let mut touched: Vec<String> = Vec::new();
            for vin in tx["vin"].as_array().unwrap() {
                if vin.get("coinbase").is_some() || is_mweb(vin) || vin.get("txid").is_none() {
                    continue;
                }
                let key = (s(&vin["txid"]), vin["vout"].as_u64().unwrap() as u32);
                let (sh, spent_num) = self.unspent.remove(&key).unwrap_or_else(|| {
                    panic!("{txid} at {height} spends unknown outpoint {key:?}")
                });
                let st = self.scripts.get_mut(&sh).unwrap();
                st.utxos
                    .remove(&(spent_num, key.1))
                    .expect("utxo bookkeeping");
                touched.push(sh);
            }
            for out in tx["vout"].as_array().unwrap() {
                if is_mweb(out) || out.get("scriptPubKey").is_none() {
                    continue;
                }
                let script = s(&out["scriptPubKey"]["hex"]);
                if is_op_return(&script) {
                    continue;
                }
                let vout = out["n"].as_u64().unwrap() as u32;
                let value = amount_to_sats(&out["value"]);
                let sh = scripthash(&script);
                let st = self.scripts.entry(sh.clone()).or_default();
                st.script_hex = script;
                st.utxos.insert(
                    (tx_num, vout),
                    Utxo {
                        txid: txid.clone(),
                        vout,
                        height,
                        value,
                    },
                );
                self.unspent
                    .insert((txid.clone(), vout), (sh.clone(), tx_num));
                touched.push(sh);
            }
            for sh in touched {
                let st = self.scripts.get_mut(&sh).unwrap();
                if st.history.last().map(|(n, _, _)| *n) != Some(tx_num) {
                    st.history.push((tx_num, txid.clone(), height));
                }
            }
        }
    }

    /// Every script hash with a non-empty history.
    pub fn scripthashes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.scripts.keys().cloned().collect();
        v.sort();
        v
    }

    /// The scriptPubKey (hex) behind a script hash the chain has seen.
    pub fn script_hex(&self, sh: &str) -> Option<String> {
        self.scripts.get(sh).map(|s| s.script_hex.clone())
    }

    /// Confirmed history, chain order.
    pub fn history(&self, sh: &str) -> Vec<HistoryItem> {
        self.scripts
            .get(sh)
            .map(|s| {
                s.history
                    .iter()
                    .map(|(_, t, h)| HistoryItem {
                        txid: t.clone(),
                        height: *h as i64,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Confirmed UTXOs, chain order then output index (ElectrumX `listunspent` order).
    pub fn utxos(&self, sh: &str) -> Vec<Utxo> {
        self.scripts
            .get(sh)
            .map(|s| s.utxos.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Confirmed balance (sum of confirmed UTXOs).
    pub fn balance(&self, sh: &str) -> u64 {
        self.utxos(sh).iter().map(|u| u.value).sum()
    }

    /// All indexed unspent outputs of the chain.
    pub fn all_utxos(&self) -> Vec<Utxo> {
        let mut v: Vec<Utxo> = self
            .scripts
            .values()
            .flat_map(|s| s.utxos.values().cloned())
            .collect();
        v.sort();
        v
    }

    /// The script hash owning an unspent outpoint.
    pub fn owner_of(&self, txid: &str, vout: u32) -> Option<String> {
        self.unspent
            .get(&(txid.to_string(), vout))
            .map(|(sh, _)| sh.clone())
    }

    /// Height of a confirmed tx.
    pub fn tx_height(&self, txid: &str) -> Option<u64> {
        self.txs.get(txid).map(|l| l.height)
    }

    /// Txids of a block, in block order.
    pub fn block_txids(&self, height: u64) -> Vec<String> {
        let mut v: Vec<(&String, &TxLocation)> = self
            .txs
            .iter()
            .filter(|(_, l)| l.height == height)
            .collect();
        v.sort_by_key(|(_, l)| l.position);
        v.into_iter().map(|(t, _)| t.clone()).collect()
    }

    /// `blockchain.scripthash.get_history`: confirmed in chain order, then mempool entries
    /// (height 0 before −1, then by txid).
    pub fn full_history(&self, sh: &str, mempool: Option<&Mempool>) -> Vec<HistoryItem> {
        let mut v = self.history(sh);
        if let Some(m) = mempool {
            v.extend(m.entries(sh).into_iter().map(|e| HistoryItem {
                txid: e.txid,
                height: e.height,
            }));
        }
        v
    }

    /// ElectrumX status hash of a script (None for an empty history).
    pub fn status(&self, sh: &str, mempool: Option<&Mempool>) -> Option<String> {
        status_of(&self.full_history(sh, mempool))
    }

    /// `blockchain.scripthash.get_balance`: (confirmed, unconfirmed delta).
    pub fn get_balance(&self, sh: &str, mempool: Option<&Mempool>) -> (u64, i64) {
        (self.balance(sh), mempool.map(|m| m.delta(sh)).unwrap_or(0))
    }

    /// `blockchain.scripthash.listunspent`: confirmed UTXOs in chain order, then mempool outputs
    /// paying the script (height 0, sorted by txid/vout here — ElectrumX gives no order), minus
    /// every outpoint a mempool tx spends.
    pub fn listunspent(&self, sh: &str, mempool: Option<&Mempool>) -> Vec<Utxo> {
        let mut v = self.utxos(sh);
        if let Some(m) = mempool {
            v.extend(m.outputs_to(sh));
            v.retain(|u| !m.spends(&u.txid, u.vout));
        }
        v
    }

    /// Per-script unconfirmed view of the daemon's mempool.
    pub fn mempool(d: &Litecoind) -> Mempool {
        Mempool::from_daemon(d)
    }
}

// ---------------------------------------------------------------- mempool

/// One mempool entry of a script's history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MempoolEntry {
    pub txid: String,
    /// 0 when every input is confirmed, −1 when one spends another mempool tx.
    pub height: i64,
    /// ElectrumX's fee: transparent inputs − outputs, floored at 0.
    pub fee: u64,
}

#[derive(Clone, Debug)]
pub struct MempoolTx {
    pub txid: String,
    pub height: i64,
    pub fee: u64,
    /// `getrawmempool true` → `fees.base`.
    pub daemon_fee: u64,
    /// Outputs paying a script: (scripthash, vout, value).
    pub funds: Vec<(String, u32, u64)>,
    /// Inputs: (prev txid, prev vout, scripthash of the spent output, value).
    pub spends: Vec<(String, u32, String, u64)>,
    /// Has MWEB inputs or outputs (its transparent effect may be incomplete, e.g. a peg-out's
    /// output only appears in the next block's HogEx).
    pub mweb: bool,
}

/// The daemon's mempool seen per script.
#[derive(Clone, Debug, Default)]
pub struct Mempool {
    pub txs: HashMap<String, MempoolTx>,
}

impl Mempool {
    pub fn from_daemon(d: &Litecoind) -> Mempool {
        let info = d.call("getrawmempool", json!([true]));
        let info = info.as_object().unwrap();
        let txids: Vec<String> = info.keys().cloned().collect();
        let in_pool: HashSet<&String> = txids.iter().collect();
        let calls: Vec<(&str, Value)> = txids
            .iter()
            .map(|t| ("getrawtransaction", json!([t, true])))
            .collect();
        let mut txjson: HashMap<String, Value> = HashMap::new();
        for (t, r) in txids
            .iter()
            .zip(d.rpc_batch(&calls).expect("getrawtransaction batch"))
        {
            // A tx can leave the mempool between the two calls; the caller controls mining, so
            // treat it as an error.
            txjson.insert(
                t.clone(),
                r.unwrap_or_else(|e| panic!("getrawtransaction {t}: {e}")),
            );
        }
        // Parents outside the mempool.
        let mut parents: Vec<String> = txjson
            .values()
            .flat_map(|tx| tx["vin"].as_array().unwrap().iter())
            .filter(|i| !is_mweb(i) && i.get("txid").is_some())
            .map(|i| s(&i["txid"]))
            .filter(|t| !in_pool.contains(t))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        parents.sort();
        let calls: Vec<(&str, Value)> = parents
            .iter()
            .map(|t| ("getrawtransaction", json!([t, true])))
            .collect();
        let mut all = txjson.clone();
        for (t, r) in parents
            .iter()
            .zip(d.rpc_batch(&calls).expect("parent batch"))
        {
            all.insert(
                t.clone(),
                r.unwrap_or_else(|e| panic!("getrawtransaction {t}: {e}")),
            );
        }
        let output = |txid: &str, vout: u32| -> (String, u64) {
            let tx = &all[txid];
            let o = tx["vout"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["n"].as_u64() == Some(vout as u64))
                .unwrap_or_else(|| panic!("{txid}:{vout} not found"));
            (s(&o["scriptPubKey"]["hex"]), amount_to_sats(&o["value"]))
        };
        let mut m = Mempool::default();
        for (txid, tx) in &txjson {
            let mut mweb = false;
            let mut unconfirmed_input = false;
            let mut spends = Vec::new();
            let mut in_total = 0u64;
            for vin in tx["vin"].as_array().unwrap() {
                if is_mweb(vin) || vin.get("txid").is_none() {
                    mweb |= is_mweb(vin);
                    continue;
                }
                let pt = s(&vin["txid"]);
                let pv = vin["vout"].as_u64().unwrap() as u32;
                unconfirmed_input |= in_pool.contains(&pt);
                let (script, value) = output(&pt, pv);
                in_total += value;
                if !is_op_return(&script) {
                    spends.push((pt, pv, scripthash(&script), value));
                }
            }
            let mut funds = Vec::new();
            let mut out_total = 0u64;
            for out in tx["vout"].as_array().unwrap() {
                if is_mweb(out) || out.get("scriptPubKey").is_none() {
                    mweb |= is_mweb(out);
                    continue;
                }
                let script = s(&out["scriptPubKey"]["hex"]);
                let value = amount_to_sats(&out["value"]);
                out_total += value;
                if !is_op_return(&script) {
                    funds.push((
                        scripthash(&script),
                        out["n"].as_u64().unwrap() as u32,
                        value,
                    ));
                }
            }
            mweb |= tx.get("vkern").is_some();
            let daemon_fee = amount_to_sats(&info[txid]["fees"]["base"]);
            m.txs.insert(
                txid.clone(),
                MempoolTx {
                    txid: txid.clone(),
                    height: if unconfirmed_input { -1 } else { 0 },
                    fee: in_total.saturating_sub(out_total),
                    daemon_fee,
                    funds,
                    spends,
                    mweb,
                },
            );
        }
        m
    }

    /// Mempool entries touching `sh`: height 0 first, then −1; ties by txid.
    pub fn entries(&self, sh: &str) -> Vec<MempoolEntry> {
        let mut v: Vec<MempoolEntry> = self
            .txs
            .values()
            .filter(|t| t.funds.iter().any(|f| f.0 == sh) || t.spends.iter().any(|p| p.2 == sh))
            .map(|t| MempoolEntry {
                txid: t.txid.clone(),
                height: t.height,
                fee: t.fee,
            })
            .collect();
        v.sort_by(|a, b| b.height.cmp(&a.height).then_with(|| a.txid.cmp(&b.txid)));
        v
    }

    /// Outputs to `sh` minus spends of `sh`'s outputs, over the whole mempool.
    pub fn delta(&self, sh: &str) -> i64 {
        let mut d = 0i64;
        for t in self.txs.values() {
            d += t
                .funds
                .iter()
                .filter(|f| f.0 == sh)
                .map(|f| f.2 as i64)
                .sum::<i64>();
            d -= t
                .spends
                .iter()
                .filter(|p| p.2 == sh)
                .map(|p| p.3 as i64)
                .sum::<i64>();
        }
        d
    }

    /// Mempool outputs paying `sh` (height 0), sorted by txid/vout.
    pub fn outputs_to(&self, sh: &str) -> Vec<Utxo> {
        let mut v: Vec<Utxo> = self
            .txs
            .values()
            .flat_map(|t| {
                t.funds.iter().filter(|f| f.0 == sh).map(|f| Utxo {
                    txid: t.txid.clone(),
                    vout: f.1,
                    height: 0,
                    value: f.2,
                })
            })
            .collect();
        v.sort();
        v
    }

    /// Does some mempool tx spend this outpoint?
    pub fn spends(&self, txid: &str, vout: u32) -> bool {
        self.txs
            .values()
            .any(|t| t.spends.iter().any(|p| p.0 == txid && p.1 == vout))
    }

    /// Every script hash the mempool touches.
    pub fn scripthashes(&self) -> HashSet<String> {
        self.txs
            .values()
            .flat_map(|t| {
                t.funds
                    .iter()
                    .map(|f| f.0.clone())
                    .chain(t.spends.iter().map(|p| p.2.clone()))
            })
            .collect()
    }
}
