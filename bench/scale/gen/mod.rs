//! The mainnet-shaped chain generator: Litecoin regtest blocks written straight to files.
//!
//! Shape (see bench/README.md, "The scale chain"):
//! - block 0 is Litecoin regtest's real genesis, so `COIN=Litecoin NET=regtest` servers accept
//!   the chain; every later block has a valid previous hash, merkle root and (when it carries
//!   segwit spends) witness commitment. Proof of work and signatures are not real: index servers
//!   check neither.
//! - blocks grow over the chain (a tenth of the average at the start, 1.9× at the end, noise
//!   0.2–2.5×, capped at 4 MB), as a real chain's do;
//! - transactions in mainnet shapes: mostly one or two inputs and two outputs, multi-payee
//!   payments, exchange batch payouts (10–300 payees) and consolidations (10–200 inputs),
//!   OP_RETURN carriers and a few bare multisig outputs; output scripts P2WPKH, P2PKH, P2SH,
//!   P2TR, P2WSH in Litecoin's proportions;
//! - three quarters of inputs spend young coins (log-uniform age over the last 2M coins made),
//!   one quarter a coin drawn uniformly from everything older ([`utxo`]); the UTXO set grows by
//!   about a quarter of a coin per transaction (25M coins at 10^8 transactions);
//! - a fifth of payees are reused scripts drawn Zipf-like from a population of `txs / 20`, so
//!   the top (exchange-like) scripts reach 10^5–10^6 history entries at 10^8 transactions while
//!   most scripts have one or two; every other output goes to a fresh script.
//!
//! History sizes of every reused script among the first ~2M ranks are counted exactly as the
//! chain is made; `chain.json` names probe scripts of about 10, 1k, 100k and 1M entries.

pub mod rng;
pub mod script;
pub mod tx;
pub mod utxo;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use bitcoin::hashes::{sha256, Hash};
use serde_json::{json, Value};

use super::layout::{self, BlockWriter, Entry, TxidTable};
use rng::Rng;
use script::{ScriptType, TYPES};
use tx::{In, Out, H256};
use utxo::{Coin, Pool, TAG_BITS};

/// Bump when the generator's output changes, so cached chains are not reused.
pub const GENERATOR_VERSION: u32 = 1;

/// Litecoin regtest's genesis block, as `litecoind -regtest` serves it (`getblock <hash> 0`).
const GENESIS_HEX: &str = "010000000000000000000000000000000000000000000000000000000000000000000000d9ced4ed1130f7b7faad9be25323ffafa33232a17c3edf6cfd97bee6bafbdd97dae5494dffff7f20000000000101000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4804ffff001d0104404e592054696d65732030352f4f63742f32303131205374657665204a6f62732c204170706c65e280997320566973696f6e6172792c2044696573206174203536ffffffff0100f2052a010000004341040184710fa689ad5023690c80f3a49c8f13f8d45b8c857fbcbc8bc4a8e4d3eb4b10f4d4604fa08dce601aaf0f470216fe1b51850b4acf21b179c45070ac7b03a9ac00000000";
pub const GENESIS_HASH: &str = "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9";
const GENESIS_TIME: u32 = 1_296_688_602;
/// Litecoin's 2.5-minute blocks.
const BLOCK_SPACING: u32 = 150;

/// Share of inputs spending a coin drawn uniformly from the old UTXO set.
const OLD_SHARE: f64 = 0.25;
/// Coins younger than this many creations are "young".
const YOUNG_WINDOW: usize = 1 << 21;
const MAX_BLOCK_BYTES: usize = 4_000_000;
const COINBASE_MATURITY: u64 = 100;
/// Block 1's coinbase pays this many coins, spendable at once, to start the economy.
const PREMINE_OUTPUTS: u64 = 2_000;
/// Share of payees drawn from the reused (Zipf) population; the rest are fresh scripts.
const ZIPF_SHARE: f64 = 0.2;
/// Share of change outputs that go back to the first input's script (address reuse).
const CHANGE_REUSE: f64 = 0.1;
/// The top Zipf ranks are exchanges: they pay batches and receive consolidations.
const EXCHANGES: u64 = 20;
const POOLS: u64 = 8;
const SUBSIDY: u64 = 625_000_000;

/// Owner tags (21 bits of a coin): 1..=6 an untracked coin of script type `tag - 1`; then the
/// mining pools; then Zipf ranks. Tags from `POOL_TAG0` up have exact history counts.
const POOL_TAG0: u32 = 8;
const ZIPF_TAG0: u32 = 16;
const TAGS: usize = 1 << TAG_BITS;

#[derive(Clone, Debug)]
pub struct Params {
    /// Transactions above the genesis block, coinbases included.
    pub txs: u64,
    /// Planned blocks above genesis (a few more when the 4 MB cap pushes transactions on).
    pub blocks: u64,
    pub seed: u64,
    /// Blocks made after the main chain and held back by the stand-in until asked for.
    pub fresh_blocks: u64,
    pub fresh_txs: u64,
}

impl Params {
    /// `txs` transactions in blocks of 1,500 on average.
    pub fn new(txs: u64) -> Params {
        Params {
            txs,
            blocks: (txs / 1_500).max(1),
            seed: 1,
            fresh_blocks: 3,
            fresh_txs: 4_000,
        }
    }

    pub fn key(&self) -> String {
        let text = format!(
            "v{GENERATOR_VERSION} txs={} blocks={} seed={} fresh={}x{}",
            self.txs, self.blocks, self.seed, self.fresh_blocks, self.fresh_txs
        );
        hex::encode(&sha256::Hash::hash(text.as_bytes()).to_byte_array()[..6])
    }

    pub fn json(&self) -> Value {
        json!({"txs": self.txs, "blocks": self.blocks, "seed": self.seed,
               "fresh_blocks": self.fresh_blocks, "fresh_txs": self.fresh_txs})
    }
}

pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("SEXTANT_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/sextant-bench")
}

pub fn chain_dir(root: &Path, p: &Params) -> PathBuf {
    root.join(format!("scale-{}", p.key()))
}

/// The chain of `p` under `root`, built unless a finished one is there; returns its directory
/// and summary.
pub fn ensure_chain(p: &Params, root: &Path) -> Result<(PathBuf, Value)> {
    let dir = chain_dir(root, p);
    let summary = dir.join(layout::SUMMARY);
    if summary.exists() {
        let text = std::fs::read_to_string(&summary)
            .with_context(|| format!("read {}", summary.display()))?;
        return Ok((
            dir,
            serde_json::from_str(&text).context("parse chain.json")?,
        ));
    }
    if dir.exists() {
        eprintln!("scale-chain: removing unfinished {}", dir.display());
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    let v = build(p, &dir)?;
    Ok((dir, v))
}

/// Reversed hex, as the RPC shows hashes.
pub fn hash_hex(h: &H256) -> String {
    let mut r = *h;
    r.reverse();
    hex::encode(r)
}

/// Electrum's script hash: sha256 of the script, reversed, hex.
pub fn electrum_scripthash(script: &[u8]) -> String {
    hash_hex(&sha256::Hash::hash(script).to_byte_array())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Payment,
    MultiIn,
    Sweep,
    MultiPayee,
    Batch,
    Consolidate,
    Data,
    Multisig,
}

/// Transaction kinds, per mille: the mix gives ~1.9 inputs and ~2.2 spendable outputs per
/// transaction (~380 bytes) on average, close to mainnet's.
const KINDS: [(Kind, u64, &str); 8] = [
    (Kind::Payment, 609, "payment"),
    (Kind::MultiIn, 140, "multi_input"),
    (Kind::Sweep, 160, "sweep"),
    (Kind::MultiPayee, 50, "multi_payee"),
    (Kind::Batch, 3, "batch_payout"),
    (Kind::Consolidate, 6, "consolidation"),
    (Kind::Data, 30, "op_return"),
    (Kind::Multisig, 2, "bare_multisig"),
];

#[derive(Default)]
struct Stats {
    kinds: [u64; 8],
    inputs: u64,
    outputs: u64,
    data_outputs: u64,
    types: [u64; 6],
    segwit_txs: u64,
    max_block_bytes: u64,
    max_block_txs: u64,
}

struct FreshBlock {
    entry: Entry,
    height: u64,
    paid: Vec<(u64, ScriptType)>,
}

struct Generator {
    seed: u64,
    rng: Rng,
    pool: Pool,
    txids: TxidTable,
    out: BlockWriter,
    zipf_n: u64,
    fresh_next: u64,
    tx_num: u64,
    height: u64,
    prev: H256,
    /// History entries and unspent coins per tracked tag.
    hist: Vec<u32>,
    utxos: Vec<u32>,
    stats: Stats,
    // Scratch space reused for every transaction and block.
    body: Vec<u8>,
    cb: Vec<u8>,
    txid_list: Vec<H256>,
    wtxid_list: Vec<H256>,
    ins: Vec<In>,
    outs: Vec<Out>,
    out_tags: Vec<u32>,
    touched: Vec<u32>,
    block_segwit: bool,
    /// While making fresh blocks: the scripts they pay.
    paid: Option<Vec<(u64, ScriptType)>>,
}

fn tracked(tag: u32) -> bool {
    tag >= POOL_TAG0
}

impl Generator {
    fn new(p: &Params, dir: &Path) -> Result<Generator> {
        let capacity = p.txs + 2 + p.fresh_blocks * (p.fresh_txs + 1) + p.blocks / 4 + 1000;
        ensure!(capacity < u32::MAX as u64, "at most 4e9 transactions");
        Ok(Generator {
            seed: p.seed,
            rng: Rng::new(p.seed),
            pool: Pool::new(YOUNG_WINDOW, (p.txs / 3) as usize),
            txids: TxidTable::create(&dir.join(layout::TXIDS), capacity)?,
            out: BlockWriter::create(dir)?,
            zipf_n: (p.txs / 20).max(1_000),
            fresh_next: 0,
            tx_num: 0,
            height: 0,
            prev: [0; 32],
            hist: vec![0; TAGS],
            utxos: vec![0; TAGS],
            stats: Stats::default(),
            body: Vec::with_capacity(MAX_BLOCK_BYTES + (1 << 20)),
            cb: Vec::with_capacity(1 << 17),
            txid_list: Vec::new(),
            wtxid_list: Vec::new(),
            ins: Vec::new(),
            outs: Vec::new(),
            out_tags: Vec::new(),
            touched: Vec::new(),
            block_segwit: false,
            paid: None,
        })
    }

    fn genesis(&mut self) -> Result<()> {
        let raw = hex::decode(GENESIS_HEX).expect("genesis hex");
        let hash = tx::sha256d_parts(&[&raw[..80]]);
        ensure!(hash_hex(&hash) == GENESIS_HASH, "genesis hash");
        let coinbase = tx::sha256d_parts(&[&raw[81..]]);
        self.txids.set(0, &coinbase);
        self.out.append(&[&raw], hash, 0, 1)?;
        self.tx_num = 1;
        self.prev = hash;
        Ok(())
    }

    fn tag_type(&self, tag: u32) -> ScriptType {
        if tag >= ZIPF_TAG0 {
            script::reusable_type(self.seed, script::zipf_id((tag - ZIPF_TAG0) as u64))
        } else if tag >= POOL_TAG0 {
            script::reusable_type(self.seed, script::pool_id((tag - POOL_TAG0) as u64))
        } else {
            TYPES[tag as usize - 1]
        }
    }

    fn tag_script(&self, tag: u32) -> (u64, ScriptType) {
        let id = if tag >= ZIPF_TAG0 {
            script::zipf_id((tag - ZIPF_TAG0) as u64)
        } else {
            script::pool_id((tag - POOL_TAG0) as u64)
        };
        (id, self.tag_type(tag))
    }

    /// A reused script of Zipf rank `rank`: (id, type, tag).
    fn ranked(&self, rank: u64) -> (u64, ScriptType, u32) {
        let id = script::zipf_id(rank);
        let ty = script::reusable_type(self.seed, id);
        let tag = if rank < (TAGS as u64 - ZIPF_TAG0 as u64) {
            ZIPF_TAG0 + rank as u32
        } else {
            1 + ty.index()
        };
        (id, ty, tag)
    }

    fn fresh(&mut self, ty: ScriptType) -> (u64, ScriptType, u32) {
        let id = script::fresh_id(self.fresh_next);
        self.fresh_next += 1;
        (id, ty, 1 + ty.index())
    }

    fn payee(&mut self) -> (u64, ScriptType, u32) {
        if self.rng.chance(ZIPF_SHARE) {
            // Log-uniform rank: P(rank r) ≈ 1/(r+1), Zipf with exponent 1, without a table.
            let l = ((self.zipf_n + 1) as f64).ln();
            let rank = ((self.rng.unit() * l).exp() as u64).saturating_sub(1);
            self.ranked(rank.min(self.zipf_n - 1))
        } else {
            let ty = script::type_for(self.rng.next());
            self.fresh(ty)
        }
    }

    fn push_out(&mut self, value: u64, (id, ty, tag): (u64, ScriptType, u32)) {
        self.outs.push(Out::Pay { value, id, ty });
        self.out_tags.push(tag);
        self.stats.types[ty.index() as usize] += 1;
        if let Some(paid) = &mut self.paid {
            paid.push((id, ty));
        }
    }

    fn amount(&mut self) -> u64 {
        self.rng.log_uniform(1_000, 5_000_000_000)
    }

    fn kind(&mut self) -> (Kind, usize) {
        let mut r = self.rng.below(1000);
        for (i, (k, w, _)) in KINDS.iter().enumerate() {
            if r < *w {
                return (*k, i);
            }
            r -= w;
        }
        unreachable!("weights add up to 1000")
    }

    /// Makes one transaction at the end of the block body; false when no coin is spendable.
    fn make_tx(&mut self) -> bool {
        if self.pool.len() == 0 {
            return false;
        }
        let (kind, ki) = self.kind();
        let rng = &mut self.rng;
        let (n_in, payees) = match kind {
            Kind::Payment => (1, 1),
            Kind::MultiIn => (rng.range(2, 4), 1),
            Kind::Sweep => (rng.range(1, 3), 1),
            Kind::MultiPayee => (rng.range(1, 2), rng.range(2, 5)),
            Kind::Batch => (rng.range(1, 3), rng.log_uniform(10, 300)),
            Kind::Consolidate => (rng.log_uniform(10, 200), 0),
            Kind::Data | Kind::Multisig => (1, 0),
        };
        // Early on, leave coins for the next transactions.
        let n_in = n_in.min((self.pool.len() as u64 / 2).max(1));
        self.ins.clear();
        self.outs.clear();
        self.out_tags.clear();
        self.touched.clear();
        let mut first_tag = 0;
        for _ in 0..n_in {
            let Some(c) = self.pool.take(&mut self.rng, OLD_SHARE) else {
                break;
            };
            let ty = self.tag_type(c.tag);
            self.ins.push(In {
                txid: self.txids.get(c.tx_num as u64),
                vout: c.vout,
                ty,
            });
            if tracked(c.tag) {
                self.touched.push(c.tag);
                self.utxos[c.tag as usize] -= 1;
            }
            if first_tag == 0 {
                first_tag = c.tag;
            }
        }
        for _ in 0..payees {
            let v = self.amount();
            let p = self.payee();
            self.push_out(v, p);
        }
        match kind {
            Kind::Data => {
                let len = self.rng.range(20, 75) as usize;
                self.outs.push(Out::Data { len });
                self.out_tags.push(0);
                self.stats.data_outputs += 1;
            }
            Kind::Multisig => {
                let v = self.amount();
                let f = self.fresh(ScriptType::Multisig);
                self.push_out(v, f);
            }
            _ => {}
        }
        if kind != Kind::Sweep {
            let exchange = self.rng.below(EXCHANGES);
            let change = match kind {
                Kind::Batch => self.ranked(exchange),
                Kind::Consolidate if self.rng.chance(0.5) => self.ranked(exchange),
                _ if tracked(first_tag) && self.rng.chance(CHANGE_REUSE) => {
                    let (id, ty) = self.tag_script(first_tag);
                    (id, ty, first_tag)
                }
                _ => {
                    let ty = script::type_for(self.rng.next());
                    self.fresh(ty)
                }
            };
            let v = self.amount();
            self.push_out(v, change);
            // Wallets put change at a random position.
            let last = self.outs.len() - 1;
            let at = self.rng.below(self.outs.len() as u64) as usize;
            self.outs.swap(at, last);
            self.out_tags.swap(at, last);
        }
        let (txid, wtxid) = tx::write_tx(
            &mut self.body,
            &mut self.rng,
            self.seed,
            &self.ins,
            &self.outs,
        );
        self.txids.set(self.tx_num, &txid);
        self.txid_list.push(txid);
        self.wtxid_list.push(wtxid);
        let segwit = self.ins.iter().any(|i| i.ty.segwit());
        self.block_segwit |= segwit;
        for (vout, &tag) in self.out_tags.iter().enumerate() {
            if tag == 0 {
                continue;
            }
            self.pool.add(Coin {
                tx_num: self.tx_num as u32,
                vout: vout as u32,
                tag,
            });
            if tracked(tag) {
                self.touched.push(tag);
                self.utxos[tag as usize] += 1;
            }
        }
        self.count_history();
        let s = &mut self.stats;
        s.kinds[ki] += 1;
        s.inputs += self.ins.len() as u64;
        s.outputs += self.outs.len() as u64;
        s.segwit_txs += segwit as u64;
        self.tx_num += 1;
        true
    }

    /// One history entry per tracked script the transaction touched, however often.
    fn count_history(&mut self) {
        self.touched.sort_unstable();
        self.touched.dedup();
        for &t in &self.touched {
            self.hist[t as usize] += 1;
        }
    }

    /// Makes and writes the next block with up to `target` transactions besides the coinbase;
    /// returns how many it got (fewer when it reached the size cap or ran out of coins).
    fn block(&mut self, target: u64) -> Result<(Entry, u64)> {
        self.height += 1;
        let height = self.height;
        self.pool.mature(height);
        let cb_num = self.tx_num;
        self.tx_num += 1;
        self.body.clear();
        self.txid_list.clear();
        self.wtxid_list.clear();
        self.wtxid_list.push([0; 32]);
        self.block_segwit = false;
        let mut made = 0;
        while made < target && self.body.len() < MAX_BLOCK_BYTES - 64_000 {
            if !self.make_tx() {
                break;
            }
            made += 1;
        }

        // The coinbase: the finding pool (big pools find more), block 1's premine, and the
        // witness commitment when anything in the block has a witness.
        self.outs.clear();
        self.out_tags.clear();
        self.touched.clear();
        let pool = ((self.rng.unit() * ((POOLS + 1) as f64).ln()).exp() as u64 - 1).min(POOLS - 1);
        let pool_tag = POOL_TAG0 + pool as u32;
        let (id, ty) = self.tag_script(pool_tag);
        self.push_out(SUBSIDY, (id, ty, pool_tag));
        if height == 1 {
            for _ in 0..PREMINE_OUTPUTS {
                let ty = script::type_for(self.rng.next());
                let f = self.fresh(ty);
                self.push_out(100_000_000, f);
            }
        }
        if self.block_segwit {
            let c = tx::witness_commitment(&mut self.wtxid_list);
            self.outs.push(Out::Commitment(c));
            self.out_tags.push(0);
        }
        self.cb.clear();
        let cb_txid = tx::write_coinbase(
            &mut self.cb,
            &mut self.rng,
            self.seed,
            height,
            &self.outs,
            self.block_segwit,
        );
        self.txids.set(cb_num, &cb_txid);
        for (vout, &tag) in self.out_tags.iter().enumerate() {
            if tag == 0 {
                continue;
            }
            let c = Coin {
                tx_num: cb_num as u32,
                vout: vout as u32,
                tag,
            };
            if height == 1 {
                self.pool.add(c);
            } else {
                self.pool.add_maturing(height + COINBASE_MATURITY, c);
            }
            if tracked(tag) {
                self.touched.push(tag);
                self.utxos[tag as usize] += 1;
            }
        }
        self.count_history();
        self.stats.outputs += self.outs.len() as u64;

        self.txid_list.insert(0, cb_txid);
        let n_tx = self.txid_list.len() as u64;
        let merkle = tx::merkle_root(&mut self.txid_list);
        let time = GENESIS_TIME + BLOCK_SPACING * height as u32;
        let hdr = tx::header(&self.prev, &merkle, time, height as u32);
        let hash = tx::sha256d_parts(&[&hdr]);
        let mut head = Vec::with_capacity(89);
        head.extend_from_slice(&hdr);
        tx::write_compact(&mut head, n_tx);
        let e = self
            .out
            .append(&[&head, &self.cb, &self.body], hash, cb_num, n_tx as u32)?;
        self.prev = hash;
        let s = &mut self.stats;
        s.max_block_bytes = s.max_block_bytes.max(e.len as u64);
        s.max_block_txs = s.max_block_txs.max(n_tx);
        Ok((e, made))
    }

    /// Probe scripts: for each target history size, the tracked script closest to it. The
    /// largest targets choose first, so on a small chain they get the longest histories there
    /// are.
    fn probes(&self, targets: &[u64]) -> Vec<Value> {
        let mut used = Vec::new();
        let mut out = Vec::new();
        for &target in targets.iter().rev() {
            let best = (ZIPF_TAG0 as usize..TAGS)
                .filter(|t| self.hist[*t] > 0 && !used.contains(t))
                .min_by(|a, b| {
                    let d = |t: &usize| (self.hist[*t] as f64 / target as f64).ln().abs();
                    d(a).total_cmp(&d(b))
                });
            if let Some(t) = best {
                used.push(t);
                let mut v = self.script_json(t as u32);
                v["target"] = json!(target);
                out.push(v);
            }
        }
        out.reverse();
        out
    }

    fn script_json(&self, tag: u32) -> Value {
        let (id, ty) = self.tag_script(tag);
        let s = script::script_bytes(self.seed, id, ty);
        json!({
            "script": hex::encode(&s),
            "scripthash": electrum_scripthash(&s),
            "type": ty.name(),
            "history": self.hist[tag as usize],
            "utxos": self.utxos[tag as usize],
        })
    }

    /// The scripts with the longest histories.
    fn top(&self, n: usize) -> Vec<Value> {
        let mut tags: Vec<u32> = (POOL_TAG0..TAGS as u32)
            .filter(|t| self.hist[*t as usize] > 0)
            .collect();
        tags.sort_by_key(|t| std::cmp::Reverse(self.hist[*t as usize]));
        tags.iter().take(n).map(|t| self.script_json(*t)).collect()
    }
}

/// Transactions per block (coinbase aside), summing to `txs - blocks`.
fn plan_blocks(p: &Params) -> Vec<u64> {
    let mut rng = Rng::new(p.seed ^ 0xB10C);
    let n = p.blocks as usize;
    let weights: Vec<f64> = (0..n)
        .map(|b| {
            let x = (b as f64 + 0.5) / n as f64;
            let noise = (0.5 * rng.gaussish()).exp().clamp(0.2, 2.5);
            (0.1 + 1.8 * x) * noise
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let to_place = p.txs.saturating_sub(p.blocks) as f64;
    let mut cum = 0.0;
    let mut placed = 0u64;
    weights
        .iter()
        .map(|w| {
            cum += w;
            let upto = (cum / total * to_place).round() as u64;
            let n = upto - placed;
            placed = upto;
            n
        })
        .collect()
}

fn progress(g: &Generator, started: Instant, what: &str) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "scale-chain: {what} height {}, {} txs, {} coins, {:.0} tx/s, {:.0} MB/s",
        g.height,
        g.tx_num,
        g.pool.unspent(),
        g.tx_num as f64 / secs,
        g.out.bytes as f64 / secs / 1e6
    );
}

/// Generates the chain of `p` into `dir` (created; must not hold a chain) and writes its summary.
pub fn build(p: &Params, dir: &Path) -> Result<Value> {
    ensure!(
        p.txs >= p.blocks,
        "--txs must be at least --blocks (a coinbase each)"
    );
    ensure!(p.blocks >= 1, "at least one block");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let started = Instant::now();
    let mut g = Generator::new(p, dir)?;
    g.genesis()?;
    let mut carry = 0;
    let mut last_log = Instant::now();
    let plan = plan_blocks(p);
    let mut planned = plan.iter();
    loop {
        let target = match planned.next() {
            Some(t) => t + carry,
            None if carry > 0 => carry,
            None => break,
        };
        let (_, made) = g.block(target)?;
        carry = target - made;
        if made == 0 && target > 0 && g.pool.len() == 0 && g.height > COINBASE_MATURITY + 2 {
            bail!("no spendable coins left at height {}", g.height);
        }
        if last_log.elapsed().as_secs() >= 10 {
            last_log = Instant::now();
            progress(&g, started, "");
        }
    }
    let main_secs = started.elapsed().as_secs_f64();
    let main_bytes = g.out.bytes;
    let main_txs = g.tx_num;
    let tip = g.prev;
    let height = g.height;
    let utxos = g.pool.unspent();
    let probes = g.probes(&[10, 1_000, 100_000, 1_000_000]);
    let top = g.top(5);

    let mut fresh = Vec::new();
    for _ in 0..p.fresh_blocks {
        g.paid = Some(Vec::new());
        let (entry, _) = g.block(p.fresh_txs)?;
        fresh.push(FreshBlock {
            entry,
            height: g.height,
            paid: g.paid.take().unwrap_or_default(),
        });
    }
    let fresh: Vec<Value> = fresh
        .iter()
        .map(|f| {
            let mut paid = f.paid.clone();
            paid.sort_unstable_by_key(|(id, _)| *id);
            paid.dedup_by_key(|(id, _)| *id);
            let scripts: Vec<String> = paid
                .iter()
                .take(1_000)
                .map(|(id, ty)| hex::encode(script::script_bytes(p.seed, *id, *ty)))
                .collect();
            json!({"height": f.height, "hash": hash_hex(&f.entry.hash), "txs": f.entry.n_tx,
                   "bytes": f.entry.len, "paid_scripts": scripts})
        })
        .collect();

    let s = &g.stats;
    let kinds: serde_json::Map<String, Value> = KINDS
        .iter()
        .zip(s.kinds)
        .map(|((_, _, name), n)| (name.to_string(), json!(n)))
        .collect();
    let types: serde_json::Map<String, Value> = TYPES
        .iter()
        .zip(s.types)
        .map(|(t, n)| (t.name().to_string(), json!(n)))
        .collect();
    let summary = json!({
        "generator_version": GENERATOR_VERSION,
        "params": p.json(),
        "key": p.key(),
        "genesis_hash": GENESIS_HASH,
        "height": height,
        "blocks": height + 1,
        "txs": main_txs,
        "bytes": main_bytes,
        "tip_hash": hash_hex(&tip),
        "block_files": g.out.files(),
        "utxos": utxos,
        "inputs": s.inputs,
        "outputs": s.outputs,
        "op_return_outputs": s.data_outputs,
        "segwit_txs": s.segwit_txs,
        "output_types": types,
        "tx_kinds": kinds,
        "max_block_bytes": s.max_block_bytes,
        "max_block_txs": s.max_block_txs,
        "young_fallbacks": g.pool.fallbacks,
        "build_seconds": (main_secs * 10.0).round() / 10.0,
        "tx_per_s": (main_txs as f64 / main_secs).round(),
        "mb_per_s": (main_bytes as f64 / main_secs / 1e6).round(),
        "probes": probes,
        "top": top,
        "fresh": fresh,
    });
    progress(&g, started, "done:");
    let total_txs = g.tx_num;
    let Generator { out, txids, .. } = g;
    out.finish()?;
    txids.finish(total_txs)?;
    let path = dir.join(layout::SUMMARY);
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(summary)
}
