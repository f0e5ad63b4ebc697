//! `bench-chain`: builds (once, then cached) a big, realistic Litecoin regtest chain for the sync
//! benchmarks, and measures the floor: how fast every block can be pulled out of the daemon.
//!
//!     cargo run --release --example bench-chain -- build --preset medium   # prints the chain dir
//!     cargo run --release --example bench-chain -- path --preset medium    # the dir, no build
//!     cargo run --release --example bench-chain -- floor --port 19443 --mode rpc
//!
//! Transactions are built raw and never signed: coinbases and change pay P2WSH(OP_TRUE)
//! (witness script `51`, spent with the witness `[51]`); payments go to a Zipf-distributed pool
//! of synthetic P2PKH / P2SH / P2WPKH / P2WSH scripts derived from the seed (unspendable), so a
//! few scripts get very long histories and most get a few entries. See bench/README.md.

mod floor;

/// The test harness's daemon launcher and RPC client, shared rather than copied.
#[path = "../../tests/common"]
#[allow(dead_code)]
mod common {
    pub mod litecoind;
    pub mod process;
    pub mod rpc;
}

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use serde_json::{json, Value};

use common::litecoind::{Litecoind, LitecoindConfig};
use common::rpc::RpcClient as Client;

/// Bump when the generator's output changes, so old cached chains are not reused.
const GENERATOR_VERSION: u32 = 1;
const COINBASE_MATURITY: u64 = 100;
const MWEB_HEIGHT: u64 = 432;
/// Every chain reaches at least this height, so MWEB blocks are always part of it.
const MIN_HEIGHT: u64 = 440;
/// Smallest OP_TRUE output the generator keeps as change.
const MIN_CHANGE: u64 = 100_000;
/// Value of one fan-out chunk (the coins later payments spend).
const CHUNK: u64 = 2_000_000;
/// Same-block children allowed per unconfirmed parent (mempool descendant limit is 25).
const MAX_CHILDREN: u32 = 20;
const SUBMIT_BATCH: usize = 250;

#[derive(Clone, Debug)]
struct Params {
    txs: u64,
    blocks: u64,
    payees: u64,
    seed: u64,
}

impl Params {
    fn preset(name: &str) -> Option<Params> {
        let (txs, blocks, payees) = match name {
            "tiny" => (3_000, 40, 2_000),
            "medium" => (100_000, 500, 30_000),
            "large" => (300_000, 1_200, 100_000),
            _ => return None,
        };
        Some(Params {
            txs,
            blocks,
            payees,
            seed: 1,
        })
    }

    fn key(&self) -> String {
        let text = format!(
            "v{GENERATOR_VERSION} txs={} blocks={} payees={} seed={}",
            self.txs, self.blocks, self.payees, self.seed
        );
        hex::encode(&sha256::Hash::hash(text.as_bytes()).to_byte_array()[..6])
    }

    fn json(&self) -> Value {
        json!({"txs": self.txs, "blocks": self.blocks, "payees": self.payees, "seed": self.seed})
    }
}

fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("SEXTANT_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/sextant-bench")
}

fn usage() -> ! {
    eprintln!(
        "usage:\n  bench-chain build|path [--preset tiny|medium|large] [--txs N] [--blocks N] \
         [--payees N] [--seed N]\n  bench-chain floor --port PORT [--mode rpc|rest] \
         [--inflight N] [--batch N]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        usage()
    };
    let mut opts: HashMap<String, String> = HashMap::new();
    let mut it = args[1..].iter();
    while let Some(k) = it.next() {
        let Some(k) = k.strip_prefix("--") else {
            usage()
        };
        let Some(v) = it.next() else { usage() };
        opts.insert(k.to_string(), v.clone());
    }
    let num = |k: &str| -> Option<u64> {
        opts.get(k).map(|v| {
            v.replace('_', "").parse().unwrap_or_else(|_| {
                eprintln!("--{k}: not a number: {v}");
                std::process::exit(2)
            })
        })
    };
    match cmd.as_str() {
        "build" | "path" => {
            let mut p = Params::preset(opts.get("preset").map_or("tiny", String::as_str))
                .unwrap_or_else(|| usage());
            if let Some(v) = num("txs") {
                p.txs = v;
            }
            if let Some(v) = num("blocks") {
                p.blocks = v.max(1);
            }
            if let Some(v) = num("payees") {
                p.payees = v.max(4);
            }
            if let Some(v) = num("seed") {
                p.seed = v;
            }
            let dir = cache_root().join(format!("chain-{}", p.key()));
            if cmd == "build" {
                if let Err(e) = ensure_chain(&p, &dir) {
                    eprintln!("bench-chain: {e}");
                    std::process::exit(1);
                }
            }
            println!("{}", dir.display());
        }
        "floor" => {
            let port = num("port").unwrap_or_else(|| usage()) as u16;
            let mode = opts.get("mode").map_or("rpc", String::as_str);
            let inflight = num("inflight").unwrap_or(4) as usize;
            let batch = num("batch").unwrap_or(0) as usize;
            match floor::run(port, mode, inflight, batch) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("bench-chain floor: {e}");
                    std::process::exit(1);
                }
            }
        }
        _ => usage(),
    }
}

/// Builds the chain into `dir` unless a finished one is there already.
fn ensure_chain(p: &Params, dir: &Path) -> Result<(), String> {
    let info = dir.join("chain.json");
    if info.exists() {
        eprintln!("bench-chain: reusing {}", dir.display());
        return Ok(());
    }
    if dir.exists() {
        eprintln!("bench-chain: removing unfinished {}", dir.display());
        std::fs::remove_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let d = Litecoind::start_with(LitecoindConfig {
        datadir: Some(dir.join("litecoind")),
        wallets: false,
        extra_args: vec!["-rpcworkqueue=512".into(), "-maxmempool=1000".into()],
        ..LitecoindConfig::default()
    });
    let mut gen = Generator::new(p.clone(), d.client())?;
    gen.run()?;
    let c = d.client();
    let chain = c.call("getblockchaininfo", json!([]))?;
    let stats = c.call("getchaintxstats", json!([]))?;
    d.stop();
    let summary = json!({
        "params": p.json(),
        "height": chain["blocks"],
        "blocks": chain["blocks"].as_u64().unwrap_or(0) + 1,
        "txs": stats["txcount"],
        "generated_txs": gen.made,
        "payee_outputs": gen.payee_outputs,
        "build_seconds": started.elapsed().as_secs_f64().round(),
        "size_on_disk": chain["size_on_disk"],
    });
    std::fs::write(&info, serde_json::to_string_pretty(&summary).unwrap())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "bench-chain: built {} in {:.0}s: {summary}",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s = 1) over the payee pool: rank r is drawn with weight 1/(r+1).
struct Payees {
    cdf: Vec<f64>,
    scripts: Vec<ScriptBuf>,
}

impl Payees {
    fn new(n: u64, seed: u64) -> Payees {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut acc = 0.0;
        let mut scripts = Vec::with_capacity(n as usize);
        for i in 0..n {
            acc += 1.0 / (i + 1) as f64;
            cdf.push(acc);
            let mut pre = seed.to_le_bytes().to_vec();
            pre.extend_from_slice(&i.to_le_bytes());
            let h = sha256::Hash::hash(&pre).to_byte_array();
            let mut s = Vec::with_capacity(34);
            match i % 4 {
                0 => {
                    s.extend_from_slice(&[0x76, 0xa9, 0x14]);
                    s.extend_from_slice(&h[..20]);
                    s.extend_from_slice(&[0x88, 0xac]);
                }
                1 => {
                    s.extend_from_slice(&[0xa9, 0x14]);
                    s.extend_from_slice(&h[..20]);
                    s.push(0x87);
                }
                2 => {
                    s.extend_from_slice(&[0x00, 0x14]);
                    s.extend_from_slice(&h[..20]);
                }
                _ => {
                    s.extend_from_slice(&[0x00, 0x20]);
                    s.extend_from_slice(&h);
                }
            }
            scripts.push(ScriptBuf::from_bytes(s));
        }
        Payees { cdf, scripts }
    }

    fn pick(&self, rng: &mut Rng) -> ScriptBuf {
        let u = rng.unit() * self.cdf[self.cdf.len() - 1];
        let i = self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1);
        self.scripts[i].clone()
    }
}

#[derive(Clone, Copy, Debug)]
struct Coin {
    op: OutPoint,
    value: u64,
    /// Created in the current round (unconfirmed) by a tx with only confirmed inputs: one more
    /// same-block spend is allowed.
    chainable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Payment,
    BatchPayout,
    FanOut,
    Consolidate,
    OpReturn,
    Chain,
}

struct Generator {
    p: Params,
    c: Client,
    wallet: Client,
    rng: Rng,
    payees: Payees,
    op_true: ScriptBuf,
    descriptor: String,
    feerate: u64,
    confirmed: Vec<Coin>,
    created: Vec<Coin>,
    children: HashMap<Txid, u32>,
    immature: VecDeque<(u64, Txid)>,
    pegged_in: bool,
    made: u64,
    payee_outputs: u64,
    height: u64,
}

impl Generator {
    fn new(p: Params, c: Client) -> Result<Generator, String> {
        let script_hash = sha256::Hash::hash(&[0x51]).to_byte_array();
        let mut spk = vec![0x00, 0x20];
        spk.extend_from_slice(&script_hash);
        let op_true = ScriptBuf::from_bytes(spk);
        let raw = format!("raw({})", hex::encode(op_true.as_bytes()));
        let info = c.call("getdescriptorinfo", json!([raw]))?;
        let descriptor = format!("{raw}#{}", info["checksum"].as_str().unwrap_or_default());
        let relay = c.call("getnetworkinfo", json!([]))?["relayfee"]
            .as_f64()
            .unwrap_or(0.0001);
        // sat/vB, twice the relay minimum.
        let feerate = ((relay * 1e8 / 1000.0) * 2.0).ceil().max(2.0) as u64;
        let wallet = c.with_path("/wallet/gen");
        let payees = Payees::new(p.payees, p.seed);
        Ok(Generator {
            rng: Rng(p.seed ^ 0x5EED),
            p,
            c,
            wallet,
            payees,
            op_true,
            descriptor,
            feerate,
            confirmed: Vec::new(),
            created: Vec::new(),
            children: HashMap::new(),
            immature: VecDeque::new(),
            pegged_in: false,
            made: 0,
            payee_outputs: 0,
            height: 0,
        })
    }

    fn run(&mut self) -> Result<(), String> {
        let started = Instant::now();
        // name, disable_private_keys, blank, passphrase, avoid_reuse, descriptors, load_on_startup
        self.c.call(
            "createwallet",
            json!(["gen", false, false, "", false, false, true]),
        )?;
        // Block 1 pays the wallet, which makes the MWEB peg-in at height 431.
        let addr = self.wallet.call("getnewaddress", json!(["", "bech32"]))?;
        self.c.call("generatetoaddress", json!([1, addr]))?;
        self.height = 1;
        // Then enough blocks for the first coinbases to mature.
        self.mine(COINBASE_MATURITY + 10)?;
        let mut rounds_left = self.p.blocks;
        let mut last_log = Instant::now();
        while rounds_left > 0 {
            let remaining = self.p.txs.saturating_sub(self.made);
            let base = remaining as f64 / rounds_left as f64;
            // Uneven blocks: between 0.3x and 1.7x the average.
            let n = (base * (0.3 + 1.4 * self.rng.unit())).round() as u64;
            let n = if rounds_left == 1 {
                remaining
            } else {
                n.min(remaining)
            };
            self.round(n)?;
            rounds_left -= 1;
            if last_log.elapsed().as_secs() >= 10 {
                last_log = Instant::now();
                eprintln!(
                    "bench-chain: height {}, {} of {} txs, {} coins, {:.0} tx/s",
                    self.height,
                    self.made,
                    self.p.txs,
                    self.confirmed.len(),
                    self.made as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        while self.height < MIN_HEIGHT {
            self.mine(1)?;
        }
        Ok(())
    }

    /// Mines `n` blocks one call at a time around MWEB activation, collecting coinbases.
    fn mine(&mut self, n: u64) -> Result<(), String> {
        let mut left = n;
        while left > 0 {
            if self.height + 1 == MWEB_HEIGHT && !self.pegged_in {
                // Block 432 must carry the HogEx, which needs a peg-in in the mempool at 431.
                let a = self.wallet.call("getnewaddress", json!(["", "mweb"]))?;
                self.wallet.call("sendtoaddress", json!([a, 1]))?;
                self.pegged_in = true;
            }
            let step = if self.height + 1 < MWEB_HEIGHT {
                left.min(MWEB_HEIGHT - 1 - self.height)
            } else if self.height < MWEB_HEIGHT {
                1
            } else {
                left
            };
            let hashes = self
                .c
                .call("generatetodescriptor", json!([step, self.descriptor]))?;
            let hashes: Vec<Value> = hashes.as_array().cloned().unwrap_or_default();
            if hashes.len() as u64 != step {
                return Err(format!(
                    "generatetodescriptor {step} made {} blocks",
                    hashes.len()
                ));
            }
            let calls: Vec<(&str, Value)> =
                hashes.iter().map(|h| ("getblock", json!([h, 1]))).collect();
            for (chunk_start, chunk) in calls.chunks(50).enumerate() {
                for (i, r) in self.c.batch(chunk)?.into_iter().enumerate() {
                    let b = r.map_err(|e| format!("getblock: {e}"))?;
                    let cb = Txid::from_str(b["tx"][0].as_str().unwrap_or_default())
                        .map_err(|e| format!("coinbase txid: {e}"))?;
                    let h = b["height"].as_u64().unwrap_or(0);
                    debug_assert_eq!(h, self.height + 1 + (chunk_start * 50 + i) as u64);
                    self.immature.push_back((h, cb));
                }
            }
            self.height += step;
            left -= step;
        }
        Ok(())
    }

    /// Coinbases that can be spent in the next block join the pool.
    fn collect_mature(&mut self) -> Result<(), String> {
        let mut calls = Vec::new();
        while let Some(&(h, txid)) = self.immature.front() {
            if h + COINBASE_MATURITY > self.height {
                break;
            }
            self.immature.pop_front();
            calls.push(("gettxout", json!([txid.to_string(), 0])));
        }
        for chunk in calls.chunks(100) {
            let replies = self.c.batch(chunk)?;
            for ((_, params), r) in chunk.iter().zip(replies) {
                let out = r.map_err(|e| format!("gettxout: {e}"))?;
                if out.is_null()
                    || out["scriptPubKey"]["hex"].as_str()
                        != Some(&hex::encode(self.op_true.as_bytes()))
                {
                    continue;
                }
                let value = (out["value"].as_f64().unwrap_or(0.0) * 1e8).round() as u64;
                if value >= MIN_CHANGE {
                    let txid = Txid::from_str(params[0].as_str().unwrap()).unwrap();
                    self.confirmed.push(Coin {
                        op: OutPoint { txid, vout: 0 },
                        value,
                        chainable: false,
                    });
                }
            }
        }
        Ok(())
    }

    /// Builds and submits about `n` transactions, then mines them into one block.
    fn round(&mut self, n: u64) -> Result<(), String> {
        self.collect_mature()?;
        let mut raw: Vec<(Kind, String)> = Vec::with_capacity(n as usize);
        let mut fails = 0;
        while (raw.len() as u64) < n && fails < 50 {
            let kind = self.pick_kind(n - raw.len() as u64);
            match self.build(kind) {
                Some(hex) => raw.push((kind, hex)),
                None => fails += 1,
            }
        }
        for chunk in raw.chunks(SUBMIT_BATCH) {
            let calls: Vec<(&str, Value)> = chunk
                .iter()
                .map(|(_, h)| ("sendrawtransaction", json!([h])))
                .collect();
            for ((kind, hex), r) in chunk.iter().zip(self.c.batch(&calls)?) {
                if let Err(e) = r {
                    return Err(format!(
                        "sendrawtransaction of a {kind:?} tx at height {} failed: {e}\n{hex}",
                        self.height + 1
                    ));
                }
            }
        }
        self.made += raw.len() as u64;
        self.mine(1)?;
        // Anything the block template left out goes into the next blocks, so every coin the
        // generator holds is confirmed when the next round starts.
        for _ in 0..20 {
            let size = self.c.call("getmempoolinfo", json!([]))?["size"]
                .as_u64()
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            self.mine(1)?;
        }
        for mut coin in self.created.drain(..) {
            coin.chainable = false;
            self.confirmed.push(coin);
        }
        self.children.clear();
        Ok(())
    }

    fn pick_kind(&mut self, left_in_round: u64) -> Kind {
        // Keep enough coins for the rest of the round (and more for the next ones).
        if (self.confirmed.len() as u64) < 2 * left_in_round.min(500) + 20
            && self.confirmed.len() < 300_000
            && self.confirmed.iter().take(64).any(|c| c.value >= 4 * CHUNK)
        {
            return Kind::FanOut;
        }
        let r = self.rng.below(100);
        match r {
            0..=44 => Kind::Payment,
            45..=49 => Kind::BatchPayout,
            50..=54 => Kind::FanOut,
            55..=57 => Kind::Consolidate,
            58..=69 => Kind::OpReturn,
            _ => Kind::Chain,
        }
    }

    fn take_confirmed(&mut self) -> Option<Coin> {
        if self.confirmed.is_empty() {
            return None;
        }
        let i = self.rng.below(self.confirmed.len());
        Some(self.confirmed.swap_remove(i))
    }

    /// A confirmed coin worth at least `min`, from a few random tries.
    fn take_confirmed_at_least(&mut self, min: u64) -> Option<Coin> {
        for _ in 0..64 {
            if self.confirmed.is_empty() {
                return None;
            }
            let i = self.rng.below(self.confirmed.len());
            if self.confirmed[i].value >= min {
                return Some(self.confirmed.swap_remove(i));
            }
        }
        None
    }

    fn payment_value(&mut self) -> u64 {
        self.rng.range(20_000, 200_000)
    }

    fn payee_outputs(&mut self, n: u64) -> Vec<TxOut> {
        (0..n)
            .map(|_| TxOut {
                value: Amount::from_sat(self.payment_value()),
                script_pubkey: self.payees.pick(&mut self.rng),
            })
            .collect()
    }

    /// Builds one transaction of `kind` and records its effect on the coin pool; `None` (and
    /// the pool unchanged) when the pool cannot fund it.
    fn build(&mut self, kind: Kind) -> Option<String> {
        let mut inputs: Vec<Coin> = Vec::new();
        let mut outs: Vec<TxOut> = Vec::new();
        let mut change_count = 1u64;
        let mut parent: Option<Txid> = None;
        match kind {
            Kind::Payment | Kind::BatchPayout | Kind::OpReturn => {
                let n_pay = match kind {
                    Kind::Payment => self.rng.range(1, 3),
                    Kind::BatchPayout => self.rng.range(10, 100),
                    _ => self.rng.range(0, 1),
                };
                if kind == Kind::OpReturn {
                    let len = self.rng.range(4, 80) as usize;
                    let data: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                    let mut s = vec![0x6a];
                    if len <= 75 {
                        s.push(len as u8);
                    } else {
                        s.extend_from_slice(&[0x4c, len as u8]);
                    }
                    s.extend_from_slice(&data);
                    outs.push(TxOut {
                        value: Amount::ZERO,
                        script_pubkey: ScriptBuf::from_bytes(s),
                    });
                }
                outs.extend(self.payee_outputs(n_pay));
                let first_inputs = match self.rng.below(10) {
                    0..=6 => 1,
                    7..=8 => 2,
                    _ => 3,
                };
                for _ in 0..first_inputs {
                    inputs.extend(self.take_confirmed());
                }
            }
            Kind::FanOut => {
                let coin = self.take_confirmed_at_least(4 * CHUNK)?;
                let k = self.rng.range(10, 200).min(coin.value / CHUNK - 1);
                change_count = k;
                inputs.push(coin);
                let n_pay = self.rng.range(0, 3);
                outs.extend(self.payee_outputs(n_pay));
            }
            Kind::Consolidate => {
                let max = (self.confirmed.len() / 4).min(300) as u64;
                if max < 10 {
                    return None;
                }
                let n = self.rng.range(10, max);
                for _ in 0..n {
                    inputs.extend(self.take_confirmed());
                }
                let n_pay = self.rng.range(0, 1);
                outs.extend(self.payee_outputs(n_pay));
            }
            Kind::Chain => {
                let mut found = None;
                for _ in 0..8 {
                    if self.created.is_empty() {
                        break;
                    }
                    let i = self.rng.below(self.created.len());
                    let c = self.created[i];
                    if c.chainable
                        && c.value >= 4 * MIN_CHANGE
                        && self.children.get(&c.op.txid).copied().unwrap_or(0) < MAX_CHILDREN
                    {
                        found = Some(self.created.swap_remove(i));
                        break;
                    }
                }
                let coin = match found {
                    Some(c) => c,
                    None => return self.build(Kind::Payment),
                };
                *self.children.entry(coin.op.txid).or_default() += 1;
                parent = Some(coin.op.txid);
                inputs.push(coin);
                let v = self.payment_value().min(coin.value / 4);
                outs.push(TxOut {
                    value: Amount::from_sat(v),
                    script_pubkey: self.payees.pick(&mut self.rng),
                });
            }
        }
        let pay: u64 = outs.iter().map(|o| o.value.to_sat()).sum();
        // Add confirmed inputs until the payments, a generous fee and the change are covered.
        loop {
            let have: u64 = inputs.iter().map(|c| c.value).sum();
            let fee_bound =
                (60 + 70 * inputs.len() as u64 + 45 * (outs.len() as u64 + change_count))
                    * self.feerate;
            if have >= pay + fee_bound + change_count * MIN_CHANGE {
                break;
            }
            if kind == Kind::Chain || kind == Kind::FanOut || inputs.len() >= 400 {
                self.give_back(inputs, parent);
                return None;
            }
            match self.take_confirmed() {
                Some(c) => inputs.push(c),
                None => {
                    self.give_back(inputs, parent);
                    return None;
                }
            }
        }
        let have: u64 = inputs.iter().map(|c| c.value).sum();
        let n_outs = outs.len();
        for _ in 0..change_count {
            outs.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: self.op_true.clone(),
            });
        }
        // Shuffle so change is not always last (a little realism for parsers).
        if n_outs > 0 && self.rng.below(2) == 0 {
            let j = self.rng.below(outs.len());
            let last = outs.len() - 1;
            outs.swap(j, last);
        }
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: inputs
                .iter()
                .map(|c| TxIn {
                    previous_output: c.op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::from_slice(&[[0x51u8]]),
                })
                .collect(),
            output: outs,
        };
        let fee = tx.vsize() as u64 * self.feerate;
        let change_total = have - pay - fee;
        let each = change_total / change_count;
        let mut extra = change_total - each * change_count;
        for o in tx.output.iter_mut() {
            if o.script_pubkey == self.op_true {
                o.value = Amount::from_sat(each + extra);
                extra = 0;
            }
        }
        let txid = tx.compute_txid();
        // Only Chain txs spend unconfirmed coins; their outputs wait for the block.
        let chainable = parent.is_none();
        for (vout, o) in tx.output.iter().enumerate() {
            if o.script_pubkey == self.op_true {
                self.created.push(Coin {
                    op: OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    value: o.value.to_sat(),
                    chainable,
                });
            } else if !o.script_pubkey.is_op_return() {
                self.payee_outputs += 1;
            }
        }
        Some(serialize_hex(&tx))
    }

    fn give_back(&mut self, inputs: Vec<Coin>, parent: Option<Txid>) {
        if let Some(p) = parent {
            if let Some(n) = self.children.get_mut(&p) {
                *n -= 1;
            }
            self.created.extend(inputs);
        } else {
            self.confirmed.extend(inputs);
        }
    }
}
