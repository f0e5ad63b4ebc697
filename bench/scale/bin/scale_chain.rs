//! `scale-chain`: generates (once, then cached) a mainnet-shaped Litecoin regtest chain as block
//! files for the scale benchmark, and prints its directory.
//!
//!     cargo run --release --example scale-chain -- build --txs 10M
//!     cargo run --release --example scale-chain -- path --txs 10M      # the dir, no build
//!
//! The directory is `${SEXTANT_BENCH_DIR:-$HOME/.cache/sextant-bench}/scale-<hash of the
//! parameters>/`; `chain.json` there is the summary. See bench/README.md, "The scale chain".

#[path = "../mod.rs"]
mod scale;

use std::collections::HashMap;
use std::path::PathBuf;

use scale::gen::{self, Params};

fn usage() -> ! {
    eprintln!(
        "usage: scale-chain build|path [--txs N] [--blocks N] [--seed N] [--fresh N] \
         [--fresh-txs N] [--root DIR]\n  N may end in k or M (--txs 10M); --txs defaults to 1M, \
         --blocks to txs/1500, --fresh to 3 blocks of --fresh-txs 4000"
    );
    std::process::exit(2)
}

/// "10M", "100k", "1_000_000".
fn number(k: &str, v: &str) -> u64 {
    let v = v.replace('_', "");
    let (digits, mult) = match v.chars().last() {
        Some('k' | 'K') => (&v[..v.len() - 1], 1_000),
        Some('m' | 'M') => (&v[..v.len() - 1], 1_000_000),
        _ => (v.as_str(), 1),
    };
    match digits.parse::<u64>() {
        Ok(n) => n * mult,
        Err(_) => {
            eprintln!("--{k}: not a number: {v}");
            std::process::exit(2)
        }
    }
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
    let num = |k: &str| opts.get(k).map(|v| number(k, v));
    let mut p = Params::new(num("txs").unwrap_or(1_000_000));
    if let Some(b) = num("blocks") {
        p.blocks = b.max(1);
    }
    if let Some(s) = num("seed") {
        p.seed = s;
    }
    if let Some(f) = num("fresh") {
        p.fresh_blocks = f;
    }
    if let Some(f) = num("fresh-txs") {
        p.fresh_txs = f;
    }
    let root = opts
        .get("root")
        .map(PathBuf::from)
        .unwrap_or_else(gen::cache_root);
    match cmd.as_str() {
        "path" => println!("{}", gen::chain_dir(&root, &p).display()),
        "build" => match gen::ensure_chain(&p, &root) {
            Ok((dir, _)) => println!("{}", dir.display()),
            Err(e) => {
                eprintln!("scale-chain: {e:#}");
                std::process::exit(1);
            }
        },
        _ => usage(),
    }
}
