//! Query micro-benchmarks for the Electrum hot paths, against a store built in-process from a
//! synthetic chain (no daemon needed): `cargo bench --bench query [-- FILTER]`.
//!
//! The chain: `SEXTANT_QUERY_BLOCKS` blocks (default 1500) of `SEXTANT_QUERY_TXS` transactions
//! (default 100), each spending one earlier output and paying one to three scripts drawn from a
//! Zipf(1) pool of 20,000 scripts, so the hottest script has a history of tens of thousands of
//! entries and a typical one a handful. Timing is std-only: each case runs in samples of at
//! least 20 ms for about a second; the median, fastest and slowest time per call are printed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use sextant::coin::{CoinRegistry, ParsedBlock, ParsedOutput, ParsedTx};
use sextant::index::writer::Writer;
use sextant::mempool::Mempool;
use sextant::query::merkle::{HeaderMerkle, TxTreeCache};
use sextant::query::Query;
use sextant::store::{Mode, Store};
use sextant::types::{sha256d, BlockHash, Height, OutPoint, ScriptHash, Txid};

const PAYEES: usize = 20_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn script(rank: usize) -> ScriptHash {
    ScriptHash::of_script(format!("payee {rank}").as_bytes())
}

/// Builds the synthetic chain into `store`. Returns one spendable outpoint per block for lookups.
fn build(store: &Arc<Store>, blocks: usize, txs_per_block: usize) -> Vec<OutPoint> {
    let mut rng = Rng(7);
    let mut cdf = Vec::with_capacity(PAYEES);
    let mut acc = 0.0;
    for r in 0..PAYEES {
        acc += 1.0 / (r + 1) as f64;
        cdf.push(acc);
    }
    let pick = |rng: &mut Rng| {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * acc;
        script(cdf.partition_point(|&c| c < u).min(PAYEES - 1))
    };
    let chain = coin().chain;
    let mut writer = Writer::new(store.clone(), 100, 64 << 20);
    writer.set_daemon_height(Height(blocks as u32));
    let mut unspent: Vec<OutPoint> = Vec::new();
    let mut prev = BlockHash::default();
    let mut batch = Vec::new();
    let mut sample = Vec::new();
    for h in 0..blocks {
        let mut txs = Vec::with_capacity(txs_per_block);
        for i in 0..txs_per_block {
            let txid = Txid(sha256d(
                &[(h as u64).to_le_bytes(), (i as u64).to_le_bytes()].concat(),
            ));
            let inputs = if i == 0 || unspent.is_empty() || h == 0 {
                Vec::new()
            } else {
                let k = rng.below(unspent.len());
                vec![unspent.swap_remove(k)]
            };
            let n_out = 1 + rng.below(3);
            let outputs: Vec<ParsedOutput> = (0..n_out)
                .map(|_| ParsedOutput {
                    value: 10_000 + rng.next() % 1_000_000,
                    scripthash: Some(pick(&mut rng)),
                })
                .collect();
            if h > 0 {
                for vout in 0..n_out {
                    unspent.push(OutPoint {
                        txid,
                        vout: vout as u32,
                    });
                }
            }
            txs.push(ParsedTx {
                txid,
                inputs,
                outputs,
                vsize: 200,
                keva: None,
            });
        }
        let mut header = vec![0u8; 80];
        header[0] = 0x20;
        header[4..36].copy_from_slice(&prev.0);
        header[36..68].copy_from_slice(&txs[0].txid.0);
        header[76..80].copy_from_slice(&(h as u32).to_le_bytes());
        let hash = chain.header_hash(&header);
        batch.push(ParsedBlock {
            header,
            hash,
            prev_hash: prev,
            txs,
        });
        prev = hash;
        if batch.len() == 100 {
            writer.apply(&batch).expect("apply");
            batch.clear();
        }
        if h > 0 && !unspent.is_empty() {
            sample.push(unspent[rng.below(unspent.len())]);
        }
    }
    writer.apply(&batch).expect("apply");
    store.flush().expect("flush");
    // Lookups are for outputs still unspent at the end.
    sample.retain(|op| store.lookup_utxo(op).ok().flatten().is_some());
    sample
}

fn coin() -> sextant::coin::Coin {
    CoinRegistry::embedded()
        .expect("coins")
        .lookup("Litecoin", "regtest")
        .expect("Litecoin regtest")
}

struct Bencher {
    filter: Vec<String>,
}

impl Bencher {
    fn run<T>(&mut self, name: &str, mut f: impl FnMut() -> T) {
        if !self.filter.is_empty() && !self.filter.iter().any(|p| name.contains(p.as_str())) {
            return;
        }
        // Warm up and size a sample to at least 20 ms.
        let mut iters = 1u64;
        loop {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            if t.elapsed() >= Duration::from_millis(20) {
                break;
            }
            iters *= 2;
        }
        let mut per_call = Vec::new();
        let started = Instant::now();
        while per_call.len() < 10
            || (started.elapsed() < Duration::from_secs(1) && per_call.len() < 200)
        {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            per_call.push(t.elapsed().as_secs_f64() / iters as f64);
        }
        per_call.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = per_call[per_call.len() / 2];
        println!(
            "{:<44} {:>12} (min {}, max {}; {} samples of {} calls)",
            name,
            fmt(median),
            fmt(per_call[0]),
            fmt(per_call[per_call.len() - 1]),
            per_call.len(),
            iters
        );
    }
}

fn fmt(secs: f64) -> String {
    if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.2} µs", secs * 1e6)
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else that is not a flag is a name filter.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let blocks = env_num("SEXTANT_QUERY_BLOCKS", 1500).max(10);
    let txs = env_num("SEXTANT_QUERY_TXS", 100).max(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), &coin(), 256, Mode::Bulk).expect("open store"));
    let t = Instant::now();
    let sample = build(&store, blocks, txs);
    store.set_mode(Mode::Follow).expect("follow mode");
    store.compact();
    println!(
        "synthetic chain: {} blocks, {} transactions, built and compacted in {:.1}s",
        blocks,
        store.tx_count(),
        t.elapsed().as_secs_f64()
    );
    let mempool = Arc::new(RwLock::new(Mempool::default()));
    let query = Query::new(store.clone(), mempool);
    let hot = script(0);
    let typical = script(2_000);
    let hot_len = store.history(&hot.hashx()).unwrap().len();
    let typical_len = store.history(&typical.hashx()).unwrap().len();
    let hot_utxos = store.script_utxos(&hot.hashx()).unwrap().len();
    println!(
        "hot script: {hot_len} history entries, {hot_utxos} unspent; typical script: \
         {typical_len} entries\n"
    );
    let mut b = Bencher { filter };
    let limit = usize::MAX;
    b.run(&format!("history/hot ({hot_len} entries)"), || {
        query.history(&hot.hashx(), limit).unwrap()
    });
    b.run(&format!("history/typical ({typical_len} entries)"), || {
        query.history(&typical.hashx(), limit).unwrap()
    });
    b.run("history/absent script", || {
        query.history(&script(PAYEES + 1).hashx(), limit).unwrap()
    });
    b.run("status/hot (read history + hash)", || {
        query.history(&hot.hashx(), limit).unwrap().status()
    });
    b.run("status/typical (read history + hash)", || {
        query.history(&typical.hashx(), limit).unwrap().status()
    });
    let hot_history = query.history(&hot.hashx(), limit).unwrap();
    b.run("status/hot (hash only)", || hot_history.status());
    b.run(&format!("listunspent/hot ({hot_utxos} utxos)"), || {
        query.unspent(&hot).unwrap()
    });
    b.run("listunspent/typical", || query.unspent(&typical).unwrap());
    b.run("balance/hot", || query.balance(&hot).unwrap());
    let mut rng = Rng(99);
    let tip = store.tip().unwrap().height.0;
    b.run(
        &format!("merkle/tx branch, uncached tree ({txs} txs)"),
        || {
            let cache = TxTreeCache::new(1);
            let h = Height(1 + rng.below(tip as usize) as u32);
            let tree = cache.get(&store, h).unwrap().unwrap();
            tree.branch(rng.below(tree.len()))
        },
    );
    let cache = TxTreeCache::new(4096);
    b.run("merkle/tx branch, cached tree", || {
        let h = Height(1 + rng.below(tip as usize) as u32);
        let tree = cache.get(&store, h).unwrap().unwrap();
        tree.branch(rng.below(tree.len()))
    });
    b.run("headers/range of 2016", || {
        let start = rng.below((tip as usize).saturating_sub(2016).max(1)) as u32;
        store.headers(Height(start), 2016).unwrap()
    });
    b.run("headers/single", || {
        store
            .header(Height(rng.below(tip as usize) as u32))
            .unwrap()
    });
    let hm = HeaderMerkle::default();
    b.run("headers/checkpoint proof (cp_height = tip)", || {
        hm.proof(&store, tip as usize + 1, rng.below(tip as usize))
            .unwrap()
    });
    if !sample.is_empty() {
        b.run("utxo/lookup by outpoint", || {
            store.lookup_utxo(&sample[rng.below(sample.len())]).unwrap()
        });
    }
}
