//! A generated chain as the stand-in serves it: the block files and the txid table mapped, the
//! index in memory, and the tip the daemon shows (the held-back fresh blocks are above it until
//! revealed).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{ensure, Context, Result};
use memmap2::Mmap;
use serde_json::Value;

use super::super::layout::{self, Entry};

pub type H256 = [u8; 32];

pub struct Chain {
    entries: Vec<Entry>,
    files: Vec<Mmap>,
    txids: Mmap,
    by_hash: HashMap<H256, u64>,
    tip: AtomicU64,
    /// Sorted `(first 4 txid bytes) << 32 | tx number`: built on the first transaction lookup
    /// (8 bytes per transaction, 800 MB at 10^8), since syncing servers never ask for one.
    tx_index: OnceLock<Vec<u64>>,
    pub bytes: u64,
}

fn map(path: &Path) -> Result<Mmap> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    // Safety: the generator finished these files (chain.json exists) and nothing writes them.
    unsafe { Mmap::map(&f) }.with_context(|| format!("map {}", path.display()))
}

impl Chain {
    /// Opens the chain in `dir`, showing its main chain (the fresh blocks held back).
    pub fn open(dir: &Path) -> Result<Chain> {
        let summary = dir.join(layout::SUMMARY);
        let text = std::fs::read_to_string(&summary)
            .with_context(|| format!("read {} (is the chain finished?)", summary.display()))?;
        let summary: Value = serde_json::from_str(&text).context("parse chain.json")?;
        let height = summary["height"].as_u64().context("chain.json: height")?;
        let entries = layout::read_index(dir)?;
        ensure!(
            (height as usize) < entries.len(),
            "index has {} blocks, chain.json says height {height}",
            entries.len()
        );
        let n_files = entries.iter().map(|e| e.file).max().unwrap_or(0) + 1;
        let files = (0..n_files)
            .map(|i| map(&layout::block_file(dir, i)))
            .collect::<Result<Vec<_>>>()?;
        for (h, e) in entries.iter().enumerate() {
            ensure!(
                (e.offset + e.len as u64) as usize <= files[e.file as usize].len(),
                "block {h} lies past the end of its file"
            );
        }
        let txids = map(&dir.join(layout::TXIDS))?;
        let by_hash = entries
            .iter()
            .enumerate()
            .map(|(h, e)| (e.hash, h as u64))
            .collect();
        let bytes = entries.iter().map(|e| e.len as u64).sum();
        Ok(Chain {
            entries,
            files,
            txids,
            by_hash,
            tip: AtomicU64::new(height),
            tx_index: OnceLock::new(),
            bytes,
        })
    }

    pub fn tip(&self) -> u64 {
        self.tip.load(Ordering::Acquire)
    }

    /// Shows up to `n` more held-back blocks; their heights.
    pub fn reveal(&self, n: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..n {
            let tip = self.tip();
            if tip + 1 >= self.entries.len() as u64 {
                break;
            }
            self.tip.store(tip + 1, Ordering::Release);
            out.push(tip + 1);
        }
        out
    }

    pub fn held_back(&self) -> u64 {
        self.entries.len() as u64 - 1 - self.tip()
    }

    pub fn entry(&self, height: u64) -> &Entry {
        &self.entries[height as usize]
    }

    /// The height of a block the daemon shows.
    pub fn height_of(&self, hash: &H256) -> Option<u64> {
        self.by_hash.get(hash).copied().filter(|h| *h <= self.tip())
    }

    pub fn block(&self, height: u64) -> &[u8] {
        let e = &self.entries[height as usize];
        &self.files[e.file as usize][e.offset as usize..(e.offset + e.len as u64) as usize]
    }

    pub fn header(&self, height: u64) -> &[u8] {
        &self.block(height)[..80]
    }

    pub fn txid(&self, n: u64) -> H256 {
        let at = n as usize * 32;
        self.txids[at..at + 32].try_into().unwrap()
    }

    fn tx_index(&self) -> &[u64] {
        self.tx_index.get_or_init(|| {
            let n = (self.txids.len() / 32) as u64;
            let mut v: Vec<u64> = (0..n)
                .map(|i| {
                    let t = self.txid(i);
                    (u32::from_le_bytes(t[..4].try_into().unwrap()) as u64) << 32 | i
                })
                .collect();
            v.sort_unstable();
            v
        })
    }

    /// Where a transaction the daemon shows is: (height, position in the block).
    pub fn find_tx(&self, txid: &H256) -> Option<(u64, u64)> {
        let prefix = u32::from_le_bytes(txid[..4].try_into().unwrap()) as u64;
        let idx = self.tx_index();
        let start = idx.partition_point(|v| v >> 32 < prefix);
        let n = idx[start..]
            .iter()
            .take_while(|v| *v >> 32 == prefix)
            .map(|v| v & 0xffff_ffff)
            .find(|n| self.txid(*n) == *txid)?;
        let height = self.entries.partition_point(|e| e.first_tx <= n) as u64 - 1;
        if height > self.tip() {
            return None;
        }
        Some((height, n - self.entries[height as usize].first_tx))
    }

    /// The bytes of the `pos`-th transaction of block `height`.
    pub fn tx_bytes(&self, height: u64, pos: u64) -> Result<&[u8]> {
        let b = self.block(height);
        let (_, mut at) = read_compact(b, 80)?;
        for _ in 0..pos {
            at += tx_len(&b[at..])?;
        }
        let len = tx_len(&b[at..])?;
        Ok(&b[at..at + len])
    }
}

fn read_compact(b: &[u8], at: usize) -> Result<(u64, usize)> {
    let first = *b.get(at).context("truncated CompactSize")?;
    let (n, len) = match first {
        0xfd => (
            u16::from_le_bytes(b.get(at + 1..at + 3).context("truncated")?.try_into()?) as u64,
            3,
        ),
        0xfe => (
            u32::from_le_bytes(b.get(at + 1..at + 5).context("truncated")?.try_into()?) as u64,
            5,
        ),
        0xff => (
            u64::from_le_bytes(b.get(at + 1..at + 9).context("truncated")?.try_into()?),
            9,
        ),
        n => (n as u64, 1),
    };
    Ok((n, at + len))
}

/// Length of the serialized transaction at the start of `b` (segwit or not; the generator
/// writes no MWEB data).
fn tx_len(b: &[u8]) -> Result<usize> {
    let mut at = 4;
    let segwit = b.get(4) == Some(&0) && b.get(5) == Some(&1);
    if segwit {
        at += 2;
    }
    let (n_in, mut at2) = read_compact(b, at)?;
    for _ in 0..n_in {
        let (len, next) = read_compact(b, at2 + 36)?;
        at2 = next + len as usize + 4;
    }
    let (n_out, mut at3) = read_compact(b, at2)?;
    for _ in 0..n_out {
        let (len, next) = read_compact(b, at3 + 8)?;
        at3 = next + len as usize;
    }
    at = at3;
    if segwit {
        for _ in 0..n_in {
            let (items, mut next) = read_compact(b, at)?;
            for _ in 0..items {
                let (len, n2) = read_compact(b, next)?;
                next = n2 + len as usize;
            }
            at = next;
        }
    }
    at += 4;
    ensure!(at <= b.len(), "transaction runs past the block");
    Ok(at)
}
