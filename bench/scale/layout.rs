//! The on-disk form of a generated chain, written by `gen` and served by `serve`:
//!
//! - `blocks-NNNNN.dat`: serialized blocks back to back, no framing, a new file past 1 GiB (a
//!   block never spans two files), so the stand-in maps a few large files;
//! - `index.bin`: one 64-byte [`Entry`] per block in height order (genesis first, then the main
//!   chain, then the held-back fresh blocks): hash, file, offset, length, first transaction number
//!   and transaction count;
//! - `txids.bin`: every txid (internal byte order) by transaction number, 32 bytes each, which the
//!   generator reads back to spend coins and the stand-in uses for `getrawtransaction`;
//! - `chain.json`: the summary, written last: a directory without it is unfinished.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use memmap2::MmapMut;

pub const INDEX: &str = "index.bin";
pub const TXIDS: &str = "txids.bin";
pub const SUMMARY: &str = "chain.json";
pub const ENTRY_BYTES: usize = 64;
/// Block files are closed once they pass this size.
pub const BLOCK_FILE_BYTES: u64 = 1 << 30;

pub fn block_file(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("blocks-{n:05}.dat"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Block hash, internal byte order (the RPC shows it reversed).
    pub hash: [u8; 32],
    pub file: u32,
    pub len: u32,
    pub offset: u64,
    /// Number of the block's first transaction (the coinbase) in the chain.
    pub first_tx: u64,
    pub n_tx: u32,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[..32].copy_from_slice(&self.hash);
        b[32..36].copy_from_slice(&self.file.to_le_bytes());
        b[36..40].copy_from_slice(&self.len.to_le_bytes());
        b[40..48].copy_from_slice(&self.offset.to_le_bytes());
        b[48..56].copy_from_slice(&self.first_tx.to_le_bytes());
        b[56..60].copy_from_slice(&self.n_tx.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Entry {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Entry {
            hash: b[..32].try_into().unwrap(),
            file: u32_at(32),
            len: u32_at(36),
            offset: u64_at(40),
            first_tx: u64_at(48),
            n_tx: u32_at(56),
        }
    }
}

/// Appends blocks to the block files and their entries to the index.
pub struct BlockWriter {
    dir: PathBuf,
    file_no: u32,
    file: BufWriter<File>,
    file_len: u64,
    index: BufWriter<File>,
    pub bytes: u64,
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("create {}", path.display()))
}

impl BlockWriter {
    pub fn create(dir: &Path) -> Result<BlockWriter> {
        Ok(BlockWriter {
            dir: dir.to_path_buf(),
            file_no: 0,
            file: BufWriter::with_capacity(8 << 20, create(&block_file(dir, 0))?),
            file_len: 0,
            index: BufWriter::new(create(&dir.join(INDEX))?),
            bytes: 0,
        })
    }

    /// Writes one block given as consecutive parts (header and count, coinbase, the rest).
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        hash: [u8; 32],
        first_tx: u64,
        n_tx: u32,
    ) -> Result<Entry> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.file_len > 0 && self.file_len + len as u64 > BLOCK_FILE_BYTES {
            self.file.flush().context("flush a block file")?;
            self.file_no += 1;
            self.file =
                BufWriter::with_capacity(8 << 20, create(&block_file(&self.dir, self.file_no))?);
            self.file_len = 0;
        }
        let e = Entry {
            hash,
            file: self.file_no,
            len: len as u32,
            offset: self.file_len,
            first_tx,
            n_tx,
        };
        for p in parts {
            self.file.write_all(p).context("write a block")?;
        }
        self.file_len += len as u64;
        self.bytes += len as u64;
        self.index
            .write_all(&e.encode())
            .context("write the index")?;
        Ok(e)
    }

    pub fn files(&self) -> u32 {
        self.file_no + 1
    }

    pub fn finish(mut self) -> Result<()> {
        self.file.flush().context("flush the last block file")?;
        self.index.flush().context("flush the index")?;
        Ok(())
    }
}

pub fn read_index(dir: &Path) -> Result<Vec<Entry>> {
    let path = dir.join(INDEX);
    let mut raw = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .with_context(|| format!("read {}", path.display()))?;
    ensure!(
        raw.len() % ENTRY_BYTES == 0,
        "{}: {} bytes is not a whole number of entries",
        path.display(),
        raw.len()
    );
    Ok(raw.chunks_exact(ENTRY_BYTES).map(Entry::decode).collect())
}

/// The txid table while it is written: a sparse file of `capacity` slots, mapped, so that
/// random reads of old txids (the quarter of inputs that spend old coins) cost a memory access
/// and the table never sits on the heap.
pub struct TxidTable {
    file: File,
    map: MmapMut,
}

impl TxidTable {
    pub fn create(path: &Path, capacity: u64) -> Result<TxidTable> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("create {}", path.display()))?;
        file.set_len(capacity * 32)
            .with_context(|| format!("size {}", path.display()))?;
        // Safety: the file is ours alone while the chain is generated.
        let map = unsafe { MmapMut::map_mut(&file) }
            .with_context(|| format!("map {}", path.display()))?;
        Ok(TxidTable { file, map })
    }

    pub fn capacity(&self) -> u64 {
        self.map.len() as u64 / 32
    }

    pub fn set(&mut self, n: u64, txid: &[u8; 32]) {
        let at = n as usize * 32;
        self.map[at..at + 32].copy_from_slice(txid);
    }

    pub fn get(&self, n: u64) -> [u8; 32] {
        let at = n as usize * 32;
        self.map[at..at + 32].try_into().unwrap()
    }

    /// Flushes the table and cuts the file to the `len` txids written.
    pub fn finish(self, len: u64) -> Result<()> {
        self.map.flush().context("flush the txid table")?;
        drop(self.map);
        self.file
            .set_len(len * 32)
            .context("truncate the txid table")?;
        Ok(())
    }
}
