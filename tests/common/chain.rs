//! Chain building on a [`Litecoind`]: mining (with automatic MWEB activation at 432), payments to
//! every script kind, a varied chain, unconfirmed chains for mempool tests, and reorgs.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::litecoind::{Litecoind, MWEB_WALLET};
use super::oracle::{amount_to_sats, sats_to_amount, scripthash};

/// Regtest height of the first MWEB block (BIP9 `mweb`, period 144: started 144, locked in 288).
pub const MWEB_HEIGHT: u64 = 432;
/// Regtest coinbase maturity.
pub const COINBASE_MATURITY: u64 = 100;
/// 1 LTC in litoshis.
pub const COIN: u64 = 100_000_000;

/// Address types `getnewaddress` accepts in litecoind 0.21 (no `bech32m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrType {
    /// P2PKH (`m…`/`n…`)
    Legacy,
    /// P2SH-P2WPKH (`Q…`)
    P2shSegwit,
    /// P2WPKH (`rltc1q…`)
    Bech32,
    /// MWEB stealth address (`tmweb1…`); never has a scriptPubKey.
    Mweb,
}

impl AddrType {
    pub fn rpc_name(self) -> &'static str {
        match self {
            AddrType::Legacy => "legacy",
            AddrType::P2shSegwit => "p2sh-segwit",
            AddrType::Bech32 => "bech32",
            AddrType::Mweb => "mweb",
        }
    }
}

/// A script a helper paid to (and maybe spent from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedScript {
    /// What it is, e.g. "p2pkh", "fanout-17".
    pub label: String,
    /// Its address, when it has one (P2PK and bare scripts have none).
    pub address: Option<String>,
    /// The scriptPubKey, hex.
    pub script_hex: String,
}

impl UsedScript {
    /// Electrum script hash (display hex).
    pub fn scripthash(&self) -> String {
        scripthash(&self.script_hex)
    }
}

/// What [`Litecoind::build_varied_chain`] made.
#[derive(Clone, Debug)]
pub struct VariedChain {
    pub p2pkh: UsedScript,
    pub p2sh_p2wpkh: UsedScript,
    pub p2wpkh: UsedScript,
    /// 1-of-1 multisig in P2WSH (`addmultisigaddress … "bech32"`).
    pub p2wsh: UsedScript,
    /// 1-of-2 multisig in plain P2SH (`addmultisigaddress … "legacy"`).
    pub p2sh_multisig: UsedScript,
    /// Bare P2PK, paid by a coinbase (`generatetodescriptor pk(…)`).
    pub p2pk: UsedScript,
    /// A tx with an OP_RETURN output (index `op_return_vout`) and a payment to `op_return_payee`.
    pub op_return_txid: String,
    pub op_return_vout: u32,
    pub op_return_script_hex: String,
    pub op_return_payee: UsedScript,
    /// One sendmany to 60 wallet addresses (mixed types).
    pub fanout_txid: String,
    pub fanout: Vec<UsedScript>,
    /// One tx spending `many_input_count` fanout outputs to `consolidation`.
    pub many_input_txid: String,
    pub many_input_count: usize,
    pub consolidation: UsedScript,
    /// One tx spending outputs of p2pkh, p2sh_p2wpkh, p2wpkh, p2wsh, p2sh_multisig; it pays
    /// `frequent` and back to p2pkh (so p2pkh is both spent and paid by the same tx).
    pub mixed_spend_txid: String,
    /// parent → child → grandchild, all confirmed in the same block (`chain_block`).
    pub chain_txids: Vec<String>,
    pub chain_scripts: Vec<UsedScript>,
    pub chain_block: String,
    /// An address paid by many separate txs and coinbases, some of its outputs spent together.
    pub frequent: UsedScript,
    pub frequent_spend_txid: String,
    /// Blocks mined by the builder, in order.
    pub blocks: Vec<String>,
}

impl VariedChain {
    /// Every script the builder produced (except the OP_RETURN one, which is never indexed).
    pub fn all_scripts(&self) -> Vec<UsedScript> {
        let mut v = vec![
            self.p2pkh.clone(),
            self.p2sh_p2wpkh.clone(),
            self.p2wpkh.clone(),
            self.p2wsh.clone(),
            self.p2sh_multisig.clone(),
            self.p2pk.clone(),
            self.op_return_payee.clone(),
            self.consolidation.clone(),
            self.frequent.clone(),
        ];
        v.extend(self.fanout.iter().cloned());
        v.extend(self.chain_scripts.iter().cloned());
        v
    }
}

/// What [`Litecoind::activate_mweb`] made.
#[derive(Clone, Debug)]
pub struct MwebInfo {
    pub activation_height: u64,
    /// The harness's peg-in txs (the first one is in block 432).
    pub pegin_txids: Vec<String>,
    /// A peg-out from the MWEB wallet to this main-wallet legacy address; its transparent output is
    /// an output of the HogEx tx `pegout_hogex_txid` in block `pegout_block` at `pegout_height`.
    pub pegout: UsedScript,
    pub pegout_value: u64,
    /// The MWEB tx id of the peg-out (as `sendtoaddress` returned it; never in `getblock … 2`).
    pub pegout_mweb_txid: String,
    pub pegout_hogex_txid: String,
    pub pegout_block: String,
    pub pegout_height: u64,
}

/// A → B in the mempool: A spends confirmed coins and pays `a_output`; B spends that output and
/// pays `b_output`. Mempool heights: A 0, B −1.
#[derive(Clone, Debug)]
pub struct UnconfirmedChain {
    pub a_txid: String,
    pub a_vout: u32,
    pub a_output: UsedScript,
    pub a_fee: u64,
    pub b_txid: String,
    pub b_vout: u32,
    pub b_output: UsedScript,
    pub b_fee: u64,
}

/// What [`Litecoind::reorg`] did.
#[derive(Clone, Debug)]
pub struct ReorgInfo {
    /// Height of the last block both branches share.
    pub fork_height: u64,
    /// The disconnected blocks (left invalidated), from fork_height+1.
    pub old_blocks: Vec<String>,
    /// The new best branch, from fork_height+1 (one block longer than the old one).
    pub new_blocks: Vec<String>,
    /// Confirmed at fork_height+1 in the old branch and at fork_height+2 in the new one.
    pub moved_txid: String,
    pub moved_output: UsedScript,
    pub moved_old_height: u64,
    pub moved_new_height: u64,
    /// Confirmed at fork_height+1 in the old branch only. Before MWEB it is double-spent in the
    /// new branch's first block by `replacement_txid`; after MWEB (no `generateblock`, and
    /// litecoind has no RBF) it is left unconfirmed, back in the mempool.
    pub dropped_txid: String,
    pub dropped_output: UsedScript,
    /// Some(..) when the dropped tx was double-spent; None when it is in the mempool.
    pub replacement_txid: Option<String>,
    pub replacement_output: Option<UsedScript>,
}

enum Target {
    Address(String),
    Descriptor(String),
}

impl Litecoind {
    // ---------------------------------------------------------------- basic queries

    pub fn height(&self) -> u64 {
        self.call("getblockcount", json!([])).as_u64().unwrap()
    }

    pub fn best_hash(&self) -> String {
        str_of(&self.call("getbestblockhash", json!([])))
    }

    pub fn block_hash(&self, height: u64) -> String {
        str_of(&self.call("getblockhash", json!([height])))
    }

    /// `getblock <hash> 2` (the daemon's own decoding).
    pub fn block_json(&self, hash: &str) -> Value {
        self.call("getblock", json!([hash, 2]))
    }

    /// `getrawtransaction <txid> true` (txindex, so any tx).
    pub fn tx_json(&self, txid: &str) -> Value {
        self.call("getrawtransaction", json!([txid, true]))
    }

    pub fn raw_tx_hex(&self, txid: &str) -> String {
        str_of(&self.call("getrawtransaction", json!([txid, false])))
    }

    pub fn mempool_txids(&self) -> HashSet<String> {
        self.call("getrawmempool", json!([]))
            .as_array()
            .unwrap()
            .iter()
            .map(str_of)
            .collect()
    }

    /// Is MWEB active for the block after the tip? (BIP9 state is reported for the next block, so
    /// this is already true at height 431.)
    pub fn mweb_active(&self) -> bool {
        let info = self.call("getblockchaininfo", json!([]));
        info["softforks"]["mweb"]["active"]
            .as_bool()
            .unwrap_or(false)
    }

    /// The address `mine()` pays.
    pub fn miner_address(&self) -> String {
        self.state.lock().unwrap().miner_address.clone()
    }

    // ---------------------------------------------------------------- addresses

    /// A fresh main-wallet address of the given type.
    pub fn new_address(&self, t: AddrType) -> String {
        let label = self.next_label("a");
        str_of(&self.call("getnewaddress", json!([label, t.rpc_name()])))
    }

    /// The scriptPubKey (hex) of any transparent address.
    pub fn script_of(&self, address: &str) -> String {
        let v = self.call("validateaddress", json!([address]));
        assert!(
            v["isvalid"].as_bool().unwrap_or(false),
            "invalid address {address}"
        );
        str_of(&v["scriptPubKey"])
    }

    /// The public key (hex) behind a main-wallet P2PKH/P2WPKH/P2SH-P2WPKH address.
    pub fn pubkey_of(&self, address: &str) -> String {
        str_of(&self.call("getaddressinfo", json!([address]))["pubkey"])
    }

    /// A fresh main-wallet address of type `t`, as a [`UsedScript`].
    pub fn new_script(&self, label: &str, t: AddrType) -> UsedScript {
        assert!(t != AddrType::Mweb, "MWEB addresses have no scriptPubKey");
        let a = self.new_address(t);
        self.used(label, &a)
    }

    /// A 1-of-1 P2WSH multisig address (or P2SH for `legacy`) known to the main wallet.
    pub fn new_multisig(&self, label: &str, nkeys: usize, address_type: &str) -> UsedScript {
        let keys: Vec<String> = (0..nkeys)
            .map(|_| self.pubkey_of(&self.new_address(AddrType::Bech32)))
            .collect();
        let v = self.call("addmultisigaddress", json!([1, keys, label, address_type]));
        self.used(label, &str_of(&v["address"]))
    }

    fn used(&self, label: &str, address: &str) -> UsedScript {
        UsedScript {
            label: label.to_string(),
            address: Some(address.to_string()),
            script_hex: self.script_of(address),
        }
    }

    fn next_label(&self, prefix: &str) -> String {
        let mut s = self.state.lock().unwrap();
        s.counter += 1;
        format!("{prefix}{}", s.counter)
    }

    // ---------------------------------------------------------------- mining

    /// Mine `n` blocks to the miner address (all mempool txs go in). Crossing heights 430–432
    /// activates MWEB on the way: at 430 the MWEB wallet is funded, at 431 it pegs in, so block
    /// 432 (the first that must carry a HogEx) can be built. Returns the new block hashes.
    pub fn mine(&self, n: u64) -> Vec<String> {
        let a = self.miner_address();
        self.generate(n, &Target::Address(a))
    }

    /// Mine `n` blocks whose coinbase pays `address`.
    pub fn mine_to(&self, address: &str, n: u64) -> Vec<String> {
        self.generate(n, &Target::Address(address.to_string()))
    }

    /// Mine `n` blocks whose coinbase pays `descriptor` (e.g. `pk(<hex>)`, `raw(<hex>)`).
    pub fn mine_to_descriptor(&self, descriptor: &str, n: u64) -> Vec<String> {
        let info = self.call("getdescriptorinfo", json!([descriptor]));
        let desc = format!(
            "{}#{}",
            descriptor.split('#').next().unwrap(),
            str_of(&info["checksum"])
        );
        self.generate(n, &Target::Descriptor(desc))
    }

    /// Mine one block holding exactly `txs` (mempool txids or raw hex), in that order.
    /// Pre-MWEB only: litecoind 0.21's `generateblock` hits an internal assertion
    /// (`block.vtx.size() == 1`) once blocks need a HogEx. Use [`hold_back`](Self::hold_back)
    /// to keep txs out of a `mine()` block instead.
    pub fn generate_block(&self, txs: &[String]) -> String {
        let h = self.height();
        assert!(
            h + 1 < MWEB_HEIGHT,
            "generate_block: litecoind 0.21 generateblock does not work for MWEB blocks (height {})",
            h + 1
        );
        let mut txs: Vec<String> = txs.to_vec();
        if let Some(t) = self.prepare_next_block(h) {
            txs.insert(0, t);
        }
        let v = self.call("generateblock", json!([self.miner_address(), txs]));
        str_of(&v["hash"])
    }

    /// Keep a mempool tx out of the blocks `mine()` builds (fee delta −1 LTC), until
    /// [`release`](Self::release). Works with MWEB blocks, unlike `generate_block`.
    pub fn hold_back(&self, txid: &str) {
        self.call("prioritisetransaction", json!([txid, 0, -(COIN as i64)]));
    }

    /// Undo [`hold_back`](Self::hold_back).
    pub fn release(&self, txid: &str) {
        self.call("prioritisetransaction", json!([txid, 0, COIN as i64]));
    }

    fn generate(&self, n: u64, target: &Target) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(n as usize);
        while (out.len() as u64) < n {
            let h = self.height();
            let left = n - out.len() as u64;
            let step = if h + 1 < MWEB_HEIGHT - 2 {
                left.min(MWEB_HEIGHT - 2 - h) // stop at 430
            } else if h < MWEB_HEIGHT {
                1 // 431 and 432 one at a time
            } else {
                left
            };
            if (MWEB_HEIGHT - 2..MWEB_HEIGHT).contains(&h) {
                self.prepare_next_block(h);
            }
            let (method, dest) = match target {
                Target::Address(a) => ("generatetoaddress", a),
                Target::Descriptor(d) => ("generatetodescriptor", d),
            };
            let hashes = match self.rpc(method, json!([step, dest])) {
                Ok(v) => v,
                Err(e) => panic!(
                    "{method} {step} at height {h} failed: {e}\n{}",
                    self.debug_log_tail(15)
                ),
            };
            let hashes: Vec<String> = hashes.as_array().unwrap().iter().map(str_of).collect();
            assert_eq!(
                hashes.len() as u64,
                step,
                "{method} made {} of {step} blocks at height {h}:\n{}",
                hashes.len(),
                self.debug_log_tail(15)
            );
            out.extend(hashes);
        }
        out
    }

    /// Before mining block `h+1`: at h = 430 fund the MWEB wallet (confirmed by 431), at h = 431
    /// make the peg-in that block 432's HogEx needs. Returns the txid it added to the mempool.
    fn prepare_next_block(&self, h: u64) -> Option<String> {
        if h + 1 == MWEB_HEIGHT - 1 {
            let bal = self
                .wallet_rpc(MWEB_WALLET, "getbalances", json!([]))
                .unwrap();
            let have = amount_to_sats(&bal["mine"]["trusted"]);
            if have < 5 * COIN {
                let a = str_of(
                    &self
                        .wallet_rpc(MWEB_WALLET, "getnewaddress", json!(["fund", "bech32"]))
                        .unwrap(),
                );
                self.ensure_funds(20 * COIN);
                return Some(self.send(&a, 10 * COIN));
            }
        } else if h + 1 == MWEB_HEIGHT {
            // (getblockchaininfo already says "active" at 431: the state is for the next block)
            let mempool = self.mempool_txids();
            let pending = self
                .state
                .lock()
                .unwrap()
                .pegins
                .iter()
                .any(|t| mempool.contains(t));
            if pending {
                return None;
            }
            let mweb_addr = self
                .wallet_rpc(MWEB_WALLET, "getnewaddress", json!(["pegin", "mweb"]))
                .unwrap();
            let txid =
                match self.wallet_rpc(MWEB_WALLET, "sendtoaddress", json!([mweb_addr, "1.0"])) {
                    Ok(t) => str_of(&t),
                    Err(e) => panic!(
                    "MWEB peg-in at height {h} failed ({e}). The MWEB wallet is funded when the \
                     chain passes height 430 through mine()/mine_to()/generate_block(); a chain \
                     built past 430 some other way cannot activate MWEB."
                ),
                };
            self.state.lock().unwrap().pegins.push(txid.clone());
            return Some(txid);
        }
        None
    }

    /// Mine until the main wallet has at least `sats` of mature, confirmed coins.
    pub fn ensure_funds(&self, sats: u64) {
        for _ in 0..100 {
            let bal = self.call("getbalances", json!([]));
            if amount_to_sats(&bal["mine"]["trusted"]) >= sats {
                return;
            }
            let h = self.height();
            let n = if h <= COINBASE_MATURITY {
                COINBASE_MATURITY + 1 - h + 9
            } else {
                10
            };
            self.mine(n);
        }
        panic!("could not gather {sats} sats in the main wallet");
    }

    // ---------------------------------------------------------------- MWEB

    /// Make sure MWEB is active (mining to 432 through the peg-in if needed), then make a peg-out
    /// from the MWEB wallet to a fresh main-wallet legacy address and mine it, so the chain has a
    /// HogEx with a transparent peg-out output. Call at height ≤ 430 or after activation.
    pub fn activate_mweb(&self) -> MwebInfo {
        let h = self.height();
        if h < MWEB_HEIGHT {
            self.mine(MWEB_HEIGHT - h);
        }
        assert!(
            self.mweb_active(),
            "MWEB is not active at height {}",
            self.height()
        );
        let pegout = self.new_script("pegout", AddrType::Legacy);
        let pegout_value = COIN / 2;
        let pegout_mweb_txid = match self.wallet_rpc(
            MWEB_WALLET,
            "sendtoaddress",
            json!([
                pegout.address.clone().unwrap(),
                sats_to_amount(pegout_value)
            ]),
        ) {
            Ok(t) => str_of(&t),
            Err(e) => panic!(
                "peg-out from the MWEB wallet failed: {e} (was MWEB activated by this harness?)"
            ),
        };
        let pegout_block = self.mine(1).remove(0);
        let block = self.block_json(&pegout_block);
        let hogex = block["tx"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|tx| {
                tx["vout"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o["scriptPubKey"]["hex"].as_str() == Some(pegout.script_hex.as_str()))
            })
            .unwrap_or_else(|| panic!("peg-out output not found in block {pegout_block}: {block}"));
        MwebInfo {
            activation_height: MWEB_HEIGHT,
            pegin_txids: self.state.lock().unwrap().pegins.clone(),
            pegout,
            pegout_value,
            pegout_mweb_txid,
            pegout_hogex_txid: str_of(&hogex["txid"]),
            pegout_height: block["height"].as_u64().unwrap(),
            pegout_block,
        }
    }

    // ---------------------------------------------------------------- payments

    /// `sendtoaddress` from the main wallet.
    pub fn send(&self, address: &str, sats: u64) -> String {
        str_of(&self.call("sendtoaddress", json!([address, sats_to_amount(sats)])))
    }

    /// `sendmany` from the main wallet (distinct addresses).
    pub fn send_many(&self, outputs: &[(String, u64)]) -> String {
        let mut m = serde_json::Map::new();
        for (a, s) in outputs {
            assert!(
                m.insert(a.clone(), json!(sats_to_amount(*s))).is_none(),
                "duplicate address {a}"
            );
        }
        str_of(&self.call("sendmany", json!(["", Value::Object(m)])))
    }

    /// Outputs of any tx: (vout, scriptPubKey hex, sats); MWEB outputs are skipped.
    pub fn tx_outputs(&self, txid: &str) -> Vec<(u32, String, u64)> {
        self.tx_json(txid)["vout"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| !o["ismweb"].as_bool().unwrap_or(false) && o.get("scriptPubKey").is_some())
            .map(|o| {
                (
                    o["n"].as_u64().unwrap() as u32,
                    str_of(&o["scriptPubKey"]["hex"]),
                    amount_to_sats(&o["value"]),
                )
            })
            .collect()
    }

    /// The output index of `txid` paying `script_hex` (the first one).
    pub fn find_vout(&self, txid: &str, script_hex: &str) -> u32 {
        self.tx_outputs(txid)
            .into_iter()
            .find(|(_, s, _)| s == script_hex)
            .map(|(n, _, _)| n)
            .unwrap_or_else(|| panic!("tx {txid} has no output paying {script_hex}"))
    }

    /// Value of an output (confirmed or mempool, spent or not).
    pub fn outpoint_value(&self, txid: &str, vout: u32) -> u64 {
        self.tx_outputs(txid)
            .into_iter()
            .find(|(n, _, _)| *n == vout)
            .map(|(_, _, v)| v)
            .unwrap_or_else(|| panic!("{txid}:{vout} does not exist"))
    }

    /// Build and sign (main wallet) a tx spending exactly `inputs` to exactly `outputs`
    /// (addresses, or `"data"` with hex); the fee is whatever is left. Not broadcast.
    pub fn sign_tx(
        &self,
        inputs: &[(String, u32)],
        outputs: &[(String, u64)],
        replaceable: bool,
    ) -> String {
        let ins: Vec<Value> = inputs
            .iter()
            .map(|(t, n)| json!({"txid": t, "vout": n}))
            .collect();
        let outs: Vec<Value> = outputs
            .iter()
            .map(|(a, s)| obj(a, json!(sats_to_amount(*s))))
            .collect();
        let raw = self.call("createrawtransaction", json!([ins, outs, 0, replaceable]));
        let signed = self.call("signrawtransactionwithwallet", json!([raw]));
        assert!(
            signed["complete"].as_bool().unwrap_or(false),
            "signing failed: {signed}"
        );
        str_of(&signed["hex"])
    }

    /// `sendrawtransaction`.
    pub fn broadcast(&self, hex: &str) -> String {
        str_of(&self.call("sendrawtransaction", json!([hex])))
    }

    /// Spend exactly `inputs` to exactly `outputs` and broadcast.
    pub fn spend(&self, inputs: &[(String, u32)], outputs: &[(String, u64)]) -> String {
        let hex = self.sign_tx(inputs, outputs, false);
        self.broadcast(&hex)
    }

    /// Spend exactly `inputs` to `address`, paying `fee` sats.
    pub fn sweep(&self, inputs: &[(String, u32)], address: &str, fee: u64) -> String {
        let total: u64 = inputs.iter().map(|(t, n)| self.outpoint_value(t, *n)).sum();
        self.spend(inputs, &[(address.to_string(), total - fee)])
    }

    /// Pay `outputs` from one confirmed, mature main-wallet coin (so the tx has no unconfirmed
    /// inputs), change to a fresh bech32 address. Returns (txid, fee).
    pub fn pay_from_confirmed(
        &self,
        outputs: &[(String, u64)],
        replaceable: bool,
    ) -> (String, u64) {
        let fee = 20_000u64;
        let need: u64 = outputs.iter().map(|(_, s)| *s).sum::<u64>() + fee + COIN / 100;
        self.ensure_funds(need);
        let utxos = self.call("listunspent", json!([1]));
        let locked = self.locked_outpoints();
        let coin = utxos
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["spendable"].as_bool().unwrap_or(false) && u.get("vout").is_some())
            .filter(|u| amount_to_sats(&u["amount"]) >= need)
            .filter(|u| !locked.contains(&(str_of(&u["txid"]), u["vout"].as_u64().unwrap() as u32)))
            .max_by_key(|u| u["confirmations"].as_u64().unwrap_or(0))
            .unwrap_or_else(|| panic!("no confirmed main-wallet coin worth {need} sats"));
        let value = amount_to_sats(&coin["amount"]);
        let change = str_of(&self.call("getrawchangeaddress", json!(["bech32"])));
        let mut outs = outputs.to_vec();
        outs.push((change, value - need + COIN / 100));
        let input = (str_of(&coin["txid"]), coin["vout"].as_u64().unwrap() as u32);
        let hex = self.sign_tx(&[input], &outs, replaceable);
        (self.broadcast(&hex), fee)
    }

    /// A tx with an OP_RETURN output carrying `data` plus a payment of `sats` to `payee`, funded
    /// and signed by the main wallet. Returns (txid, vout of the OP_RETURN output).
    pub fn send_op_return(&self, data: &[u8], payee: &str, sats: u64) -> (String, u32) {
        let outs = json!([
            obj("data", json!(hex::encode(data))),
            obj(payee, json!(sats_to_amount(sats)))
        ]);
        let raw = self.call("createrawtransaction", json!([[], outs]));
        let funded = self.call("fundrawtransaction", json!([raw]));
        let signed = self.call("signrawtransactionwithwallet", json!([funded["hex"]]));
        assert!(
            signed["complete"].as_bool().unwrap_or(false),
            "signing failed: {signed}"
        );
        let txid = self.broadcast(&str_of(&signed["hex"]));
        let vout = self.tx_json(&txid)["vout"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["scriptPubKey"]["type"].as_str() == Some("nulldata"))
            .map(|o| o["n"].as_u64().unwrap() as u32)
            .expect("OP_RETURN output");
        (txid, vout)
    }

    // ---------------------------------------------------------------- scenarios

    /// Build a chain segment with every kind of thing an indexer must get right (see
    /// [`VariedChain`]): 6 blocks on top of whatever is there. Works before or after MWEB
    /// activation; mines maturity first on an empty chain. Every output paid to one of its
    /// scripts is locked (`lockunspent`, until a restart) so that later wallet sends never spend
    /// them and the histories stay exactly as documented.
    pub fn build_varied_chain(&self) -> VariedChain {
        self.ensure_funds(40 * COIN);
        let mut blocks = Vec::new();

        // ---- block 1: payments to every script kind, OP_RETURN, fan-out, same-block chain
        let p2pkh = self.new_script("p2pkh", AddrType::Legacy);
        let p2sh_p2wpkh = self.new_script("p2sh-p2wpkh", AddrType::P2shSegwit);
        let p2wpkh = self.new_script("p2wpkh", AddrType::Bech32);
        let p2wsh = self.new_multisig("p2wsh", 1, "bech32");
        let p2sh_multisig = self.new_multisig("p2sh-multisig", 2, "legacy");
        assert!(
            p2wsh.script_hex.starts_with("0020") && p2wsh.script_hex.len() == 68,
            "not P2WSH: {p2wsh:?}"
        );
        assert!(
            p2sh_multisig.script_hex.starts_with("a914"),
            "not P2SH: {p2sh_multisig:?}"
        );
        let frequent = self.new_script("frequent", AddrType::Bech32);

        let mut typed_outs = Vec::new();
        for (s, cents) in [
            (&p2pkh, 100),
            (&p2sh_p2wpkh, 110),
            (&p2wpkh, 120),
            (&p2wsh, 130),
            (&p2sh_multisig, 140),
        ] {
            typed_outs.push(self.pay(s, cents * COIN / 100));
        }

        let op_return_payee = self.new_script("op-return-payee", AddrType::Bech32);
        let (op_return_txid, op_return_vout) = self.send_op_return(
            b"sextant harness",
            op_return_payee.address.as_ref().unwrap(),
            COIN / 2,
        );
        self.lock_outputs_to(&op_return_txid, &op_return_payee);
        let op_return_script_hex = self
            .tx_outputs(&op_return_txid)
            .into_iter()
            .find(|(n, _, _)| *n == op_return_vout)
            .unwrap()
            .1;

        let kinds = [AddrType::Legacy, AddrType::P2shSegwit, AddrType::Bech32];
        let fanout: Vec<UsedScript> = (0..60)
            .map(|i| self.new_script(&format!("fanout-{i}"), kinds[i % 3]))
            .collect();
        let fanout_txid = self.send_many(
            &fanout
                .iter()
                .map(|s| (s.address.clone().unwrap(), 2 * COIN / 100))
                .collect::<Vec<_>>(),
        );
        let fan_outs: Vec<(String, u32)> = fanout
            .iter()
            .map(|s| {
                (
                    fanout_txid.clone(),
                    self.find_vout(&fanout_txid, &s.script_hex),
                )
            })
            .collect();
        self.lock_outpoints(&fan_outs);

        let mut frequent_outs: Vec<(String, u32)> = Vec::new();
        for _ in 0..10 {
            frequent_outs.push(self.pay(&frequent, COIN / 10));
        }

        // parent → child → grandchild, all unconfirmed until the block below
        let chain_scripts: Vec<UsedScript> = (0..3)
            .map(|i| self.new_script(&format!("chain-{i}"), kinds[(i + 2) % 3]))
            .collect();
        let (parent, pv) = self.pay(&chain_scripts[0], 2 * COIN);
        let child = self.sweep(
            &[(parent.clone(), pv)],
            chain_scripts[1].address.as_ref().unwrap(),
            10_000,
        );
        let grandchild = self.sweep(
            &[(child.clone(), 0)],
            chain_scripts[2].address.as_ref().unwrap(),
            10_000,
        );
        self.lock_outpoints(&[(grandchild.clone(), 0)]);
        let chain_txids = vec![parent, child, grandchild];

        let chain_block = self.mine(1).remove(0);
        blocks.push(chain_block.clone());

        // ---- block 2: many inputs, spends from every script kind, more payments to `frequent`
        let many_input_count = 40;
        let consolidation = self.new_script("consolidation", AddrType::Bech32);
        let many_input_txid = self.sweep(
            &fan_outs[..many_input_count],
            consolidation.address.as_ref().unwrap(),
            100_000,
        );
        self.lock_outpoints(&[(many_input_txid.clone(), 0)]);

        let mixed_total: u64 = typed_outs
            .iter()
            .map(|(t, n)| self.outpoint_value(t, *n))
            .sum();
        let mixed_spend_txid = self.spend(
            &typed_outs,
            &[
                (frequent.address.clone().unwrap(), COIN),
                (p2pkh.address.clone().unwrap(), mixed_total - COIN - 50_000),
            ],
        );
        self.lock_outpoints(&[(mixed_spend_txid.clone(), 0), (mixed_spend_txid.clone(), 1)]);
        frequent_outs.push((mixed_spend_txid.clone(), 0));
        for _ in 0..10 {
            frequent_outs.push(self.pay(&frequent, COIN / 10));
        }
        blocks.extend(self.mine(1));

        // ---- block 3: `frequent` spends 5 of its coins in one tx; coinbase to P2PK
        let frequent_spend_txid =
            self.sweep(&frequent_outs[..5], p2wsh.address.as_ref().unwrap(), 20_000);
        self.lock_outpoints(&[(frequent_spend_txid.clone(), 0)]);

        let pk = self.pubkey_of(&self.new_address(AddrType::Bech32));
        let p2pk = UsedScript {
            label: "p2pk".into(),
            address: None,
            script_hex: format!("21{pk}ac"),
        };
        let b3 = self.mine_to_descriptor(&format!("pk({pk})"), 1);
        self.lock_coinbase(&b3);
        blocks.extend(b3);
        // ---- blocks 4..6: coinbases to `frequent`, so its history mixes coinbase and payments
        let b46 = self.mine_to(frequent.address.as_ref().unwrap(), 3);
        self.lock_coinbase(&b46);
        blocks.extend(b46);

        VariedChain {
            p2pkh,
            p2sh_p2wpkh,
            p2wpkh,
            p2wsh,
            p2sh_multisig,
            p2pk,
            op_return_txid,
            op_return_vout,
            op_return_script_hex,
            op_return_payee,
            fanout_txid,
            fanout,
            many_input_txid,
            many_input_count,
            consolidation,
            mixed_spend_txid,
            chain_txids,
            chain_scripts,
            chain_block,
            frequent,
            frequent_spend_txid,
            blocks,
        }
    }

    /// `sendtoaddress` to `s`, then lock the new output so automatic coin selection never spends
    /// it. Returns the outpoint.
    pub fn pay(&self, s: &UsedScript, sats: u64) -> (String, u32) {
        let txid = self.send(s.address.as_ref().expect("pay() needs an address"), sats);
        let vout = self.find_vout(&txid, &s.script_hex);
        self.lock_outpoints(&[(txid.clone(), vout)]);
        (txid, vout)
    }

    /// `lockunspent false` (main wallet): excluded from automatic coin selection until a restart
    /// or [`unlock_all`](Self::unlock_all); explicit spends (`spend`, `sweep`) still work.
    pub fn lock_outpoints(&self, outs: &[(String, u32)]) {
        let v: Vec<Value> = outs
            .iter()
            .map(|(t, n)| json!({"txid": t, "vout": n}))
            .collect();
        let ok = self.call("lockunspent", json!([false, v]));
        assert_eq!(ok, json!(true), "lockunspent failed");
    }

    /// Lock every output of `txid` paying `s`.
    pub fn lock_outputs_to(&self, txid: &str, s: &UsedScript) {
        let outs: Vec<(String, u32)> = self
            .tx_outputs(txid)
            .into_iter()
            .filter(|(_, sc, _)| *sc == s.script_hex)
            .map(|(n, _, _)| (txid.to_string(), n))
            .collect();
        self.lock_outpoints(&outs);
    }

    /// Lock the (non-OP_RETURN) coinbase outputs of these blocks.
    pub fn lock_coinbase(&self, blocks: &[String]) {
        for b in blocks {
            let cb = str_of(&self.block_json(b)["tx"][0]["txid"]);
            let outs: Vec<(String, u32)> = self
                .tx_outputs(&cb)
                .into_iter()
                .filter(|(_, s, _)| !s.starts_with("6a"))
                .map(|(n, _, _)| (cb.clone(), n))
                .collect();
            self.lock_outpoints(&outs);
        }
    }

    /// `lockunspent true`: unlock everything.
    pub fn unlock_all(&self) {
        self.call("lockunspent", json!([true]));
    }

    /// Outpoints locked in the main wallet.
    pub fn locked_outpoints(&self) -> HashSet<(String, u32)> {
        self.call("listlockunspent", json!([]))
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (str_of(&o["txid"]), o["vout"].as_u64().unwrap() as u32))
            .collect()
    }

    /// Put A → B in the mempool (see [`UnconfirmedChain`]). Nothing is mined.
    pub fn unconfirmed_chain(&self) -> UnconfirmedChain {
        let a_output = self.new_script("mempool-a", AddrType::Bech32);
        let b_output = self.new_script("mempool-b", AddrType::Legacy);
        let (a_txid, a_fee) =
            self.pay_from_confirmed(&[(a_output.address.clone().unwrap(), COIN)], false);
        let a_vout = self.find_vout(&a_txid, &a_output.script_hex);
        let b_fee = 15_000;
        let b_txid = self.sweep(
            &[(a_txid.clone(), a_vout)],
            b_output.address.as_ref().unwrap(),
            b_fee,
        );
        self.lock_outpoints(&[(b_txid.clone(), 0)]);
        UnconfirmedChain {
            a_txid,
            a_vout,
            a_output,
            a_fee,
            b_txid,
            b_vout: 0,
            b_output,
            b_fee,
        }
    }

    pub fn invalidate(&self, hash: &str) {
        self.call("invalidateblock", json!([hash]));
    }

    pub fn reconsider(&self, hash: &str) {
        self.call("reconsiderblock", json!([hash]));
    }

    /// A reorg of `depth` blocks (≥ 1). Mines `depth` blocks holding a tx M ("moved") and a tx
    /// D ("dropped") in the first one, invalidates them, and mines a branch of `depth + 1` blocks
    /// to the same miner address: M is held back from its first block and confirmed in its
    /// second; D is double-spent by D' in its first block (before MWEB, via `generateblock`) or
    /// kept out of every new block so it ends up in the mempool (MWEB chains). The old blocks
    /// stay invalidated. Not usable across heights 430–432.
    pub fn reorg(&self, depth: u64) -> ReorgInfo {
        assert!(depth >= 1);
        let moved_output = self.new_script("moved", AddrType::Bech32);
        let dropped_output = self.new_script("dropped", AddrType::Legacy);
        let (moved_txid, _) =
            self.pay_from_confirmed(&[(moved_output.address.clone().unwrap(), COIN)], false);
        let (dropped_txid, _) =
            self.pay_from_confirmed(&[(dropped_output.address.clone().unwrap(), COIN)], false);
        self.lock_outputs_to(&moved_txid, &moved_output);
        self.lock_outputs_to(&dropped_txid, &dropped_output);
        let fork_height = self.height();
        assert!(
            fork_height + depth + 1 < MWEB_HEIGHT - 2 || fork_height >= MWEB_HEIGHT,
            "reorg() across the MWEB activation heights is not supported"
        );
        let old_blocks = self.mine(depth);
        let first = self.block_json(&old_blocks[0]);
        let in_first = |t: &str| {
            first["tx"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["txid"] == t)
        };
        assert!(
            in_first(&moved_txid) && in_first(&dropped_txid),
            "reorg txs not mined together"
        );

        self.invalidate(&old_blocks[0]);
        assert_eq!(self.height(), fork_height);
        let mempool = self.mempool_txids();
        assert!(
            mempool.contains(&moved_txid) && mempool.contains(&dropped_txid),
            "disconnected txs did not return to the mempool"
        );
        let mut new_blocks = Vec::new();
        let (replacement_txid, replacement_output) = if fork_height + 1 < MWEB_HEIGHT {
            // D': same input as D, pays `replacement_output`; only D' goes in the first new block.
            let replacement_output = self.new_script("replacement", AddrType::P2shSegwit);
            let d = self.tx_json(&dropped_txid);
            let d_ins: Vec<(String, u32)> = d["vin"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (str_of(&i["txid"]), i["vout"].as_u64().unwrap() as u32))
                .collect();
            let total: u64 = d_ins.iter().map(|(t, n)| self.outpoint_value(t, *n)).sum();
            let hex = self.sign_tx(
                &d_ins,
                &[(replacement_output.address.clone().unwrap(), total - 30_000)],
                false,
            );
            let txid = str_of(&self.call("decoderawtransaction", json!([hex]))["txid"]);
            new_blocks.push(self.generate_block(&[hex]));
            assert!(
                !self.mempool_txids().contains(&dropped_txid),
                "D' did not evict D"
            );
            self.lock_outputs_to(&txid, &replacement_output);
            (Some(txid), Some(replacement_output))
        } else {
            self.hold_back(&dropped_txid);
            self.hold_back(&moved_txid);
            new_blocks.extend(self.mine(1));
            self.release(&moved_txid);
            (None, None)
        };
        new_blocks.extend(self.mine(depth));
        if replacement_txid.is_none() {
            self.release(&dropped_txid);
            assert!(self.mempool_txids().contains(&dropped_txid));
        }
        let moved_new_height = self
            .tx_confirmed_height(&moved_txid)
            .expect("moved tx not confirmed");
        assert_eq!(moved_new_height, fork_height + 2);
        ReorgInfo {
            fork_height,
            old_blocks,
            new_blocks,
            moved_txid,
            moved_output,
            moved_old_height: fork_height + 1,
            moved_new_height,
            dropped_txid,
            dropped_output,
            replacement_txid,
            replacement_output,
        }
    }

    /// Height of the block holding `txid` in the best chain, None when unconfirmed.
    pub fn tx_confirmed_height(&self, txid: &str) -> Option<u64> {
        let tx = self.tx_json(txid);
        let bh = tx.get("blockhash")?.as_str()?.to_string();
        let hdr = self.call("getblockheader", json!([bh]));
        if hdr["confirmations"].as_i64().unwrap_or(-1) < 0 {
            return None; // block not in the best chain
        }
        hdr["height"].as_u64()
    }
}

/// `{key: value}`
fn obj(key: &str, value: Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(key.to_string(), value);
    Value::Object(m)
}

pub(crate) fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a JSON string, got {v}"))
        .to_string()
}
