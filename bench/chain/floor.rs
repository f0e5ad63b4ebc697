//! The floor: pull every block (genesis to tip) out of the daemon as fast as this machine
//! allows, with nothing else done to it. `rpc`: batched `getblockhash` then batched
//! `getblock <hash> 0` (hex, decoded); `rest`: batched `getblockhash`, then
//! `GET /rest/block/<hash>.bin` per block. `inflight` batches run at once, one connection each.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::common::rpc::RpcClient as Client;

/// The credentials bench/sync.sh and bench/load.sh start litecoind with.
const USER: &str = "bench";
const PASS: &str = "bench";

pub fn run(port: u16, mode: &str, inflight: usize, batch: usize) -> Result<String, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let c = Client::new(addr, "/", USER, PASS);
    let height = c
        .call("getblockcount", json!([]))?
        .as_u64()
        .ok_or("getblockcount")?;
    if mode != "rpc" && mode != "rest" {
        return Err(format!("unknown mode {mode}: rpc or rest"));
    }
    let batch = if batch == 0 { 100 } else { batch } as u64;
    let started = Instant::now();
    let n_batches = (height + 1).div_ceil(batch) as usize;
    let next = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let blocks = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..inflight.max(1))
        .map(|_| {
            let (next, bytes, blocks) = (next.clone(), bytes.clone(), blocks.clone());
            let mode = mode.to_string();
            std::thread::spawn(move || -> Result<(), String> {
                let c = Client::new(addr, "/", USER, PASS);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n_batches {
                        return Ok(());
                    }
                    let start = i as u64 * batch;
                    let end = (start + batch - 1).min(height);
                    let calls: Vec<(&str, Value)> = (start..=end)
                        .map(|h| ("getblockhash", json!([h])))
                        .collect();
                    let hashes: Vec<String> = c
                        .batch(&calls)?
                        .into_iter()
                        .map(|r| {
                            r.map_err(|e| e.to_string())
                                .map(|v| v.as_str().unwrap_or_default().to_string())
                        })
                        .collect::<Result<_, _>>()?;
                    let mut got = 0u64;
                    if mode == "rpc" {
                        let calls: Vec<(&str, Value)> =
                            hashes.iter().map(|h| ("getblock", json!([h, 0]))).collect();
                        for r in c.batch(&calls)? {
                            let hex = r.map_err(|e| e.to_string())?;
                            let raw = hex::decode(hex.as_str().unwrap_or_default())
                                .map_err(|e| e.to_string())?;
                            got += raw.len() as u64;
                        }
                    } else {
                        for h in &hashes {
                            got += c.rest_get(&format!("/rest/block/{h}.bin"))?.len() as u64;
                        }
                    }
                    bytes.fetch_add(got, Ordering::Relaxed);
                    blocks.fetch_add(hashes.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "worker panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    let (blocks, bytes) = (
        blocks.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    );
    Ok(json!({
        "mode": mode,
        "inflight": inflight,
        "batch": batch,
        "blocks": blocks,
        "bytes": bytes,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "blocks_per_s": (blocks as f64 / secs).round(),
        "mb_per_s": (bytes as f64 / secs / 1e6 * 10.0).round() / 10.0,
    })
    .to_string())
}
