//! Transaction ids by transaction number: a flat file of 32-byte txids, the one at `n × 32`
//! being transaction `n`'s, as ElectrumX's and Fulcrum's are.
//!
//! A history answer reads one txid per entry, spread over the whole chain. From RocksDB each was
//! a block-cache lookup through a two-level index and, cold, a 4 KB block read and cached: the
//! first `get_history` of a 110k-entry script took 1.0–2.0 s after the sync of the 10M scale
//! chain (perf: 83% in that multi-get), then ~25 ms. From this file a read is a `pread` of the
//! page cache, nearby entries coalesced into one; and nothing of it is kept in the process.
//!
//! Writes are positional, so the file needs no state beyond its length: the store writes a
//! batch's txids (and syncs them) before the RocksDB batch that makes them reachable, and the
//! tip's transaction count says how much of the file is valid; what lies past it (an undone
//! block, a batch that never committed) is overwritten by the next blocks and cut on open.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::types::{TxNum, Txid};

const TXID_LEN: u64 = 32;
/// Entries at most this far apart are read together: a page read across the gap costs less
/// than another system call.
const COALESCE_GAP: u64 = 4096;
/// The most one read takes in.
const MAX_READ: u64 = 1 << 20;
/// Reads that many or more are shared among up to `READERS` threads, each taking at least
/// `MIN_RUNS_PER_READER` (a thread costs about as much as a few cached reads).
const PARALLEL_RUNS: usize = 64;
const MIN_RUNS_PER_READER: usize = 32;
/// Threads reading one answer's txids: enough to keep a disk's queue busy, few enough that
/// reads from the page cache pay little for them.
const READERS: usize = 16;

pub(crate) struct TxidFile {
    file: File,
    path: PathBuf,
}

impl TxidFile {
    pub(crate) fn open(path: &Path) -> io::Result<TxidFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(TxidFile {
            file,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Transactions the file holds (valid or not).
    pub(crate) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len() / TXID_LEN)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// Cuts the file to `txs` transactions.
    pub(crate) fn truncate(&self, txs: u64) -> io::Result<()> {
        self.file.set_len(txs * TXID_LEN)
    }

    /// Writes `txids` as transactions `first`, `first + 1`, …
    pub(crate) fn write(&self, first: TxNum, txids: &[Txid]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(txids.len() * TXID_LEN as usize);
        for t in txids {
            buf.extend_from_slice(&t.0);
        }
        self.file.write_all_at(&buf, first.0 * TXID_LEN)
    }

    /// Makes what was written durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The txids of `txnums`, in the same order; `None` where the file ends first. Sorted input
    /// reads best (a history is in chain order).
    pub(crate) fn read(&self, txnums: &[TxNum]) -> io::Result<Vec<Option<Txid>>> {
        let mut order: Vec<usize> = (0..txnums.len()).collect();
        if !txnums.is_sorted() {
            order.sort_unstable_by_key(|&i| txnums[i]);
        }
        let at = |i: usize| txnums[order[i]].0 * TXID_LEN;
        let runs = runs(order.len(), at, self.bytes());
        let mut out = vec![None; txnums.len()];
        let fill = |out: &mut Vec<Option<Txid>>, runs: &[Run], txids: Vec<Txid>| {
            let first = runs.first().map_or(0, |r| r.first);
            for (&k, t) in order[first..].iter().zip(txids) {
                out[k] = Some(t);
            }
        };
        if runs.len() < PARALLEL_RUNS {
            let txids = self.read_runs(&runs, at)?;
            fill(&mut out, &runs, txids);
            return Ok(out);
        }
        // Cold, each run is a wait on the disk: one after another, the first answer for a
        // 100k-entry history took 7 s on the 10^8 chain (80 µs a read); side by side they
        // overlap in the device's queue.
        let per = runs.len().div_ceil(READERS).max(MIN_RUNS_PER_READER);
        let chunks: Vec<&[Run]> = runs.chunks(per).collect();
        let read: Vec<io::Result<Vec<Txid>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    std::thread::Builder::new()
                        .spawn_scoped(scope, move || self.read_runs(chunk, at))
                })
                .collect();
            handles
                .into_iter()
                .zip(&chunks)
                .map(|(h, chunk)| match h {
                    Ok(h) => h.join().expect("a txid reader panicked"),
                    // No thread to spare: read that share here.
                    Err(_) => self.read_runs(chunk, at),
                })
                .collect()
        });
        for (chunk, txids) in chunks.into_iter().zip(read) {
            fill(&mut out, chunk, txids?);
        }
        Ok(out)
    }

    /// The txids of the entries the runs cover, in order.
    fn read_runs(&self, runs: &[Run], at: impl Fn(usize) -> u64) -> io::Result<Vec<Txid>> {
        let mut txids = Vec::with_capacity(runs.iter().map(|r| r.end - r.first).sum());
        let mut buf = Vec::new();
        for r in runs {
            buf.resize((r.stop - r.start) as usize, 0);
            self.file.read_exact_at(&mut buf, r.start)?;
            for i in r.first..r.end {
                let o = (at(i) - r.start) as usize;
                let id: [u8; 32] = buf[o..o + TXID_LEN as usize].try_into().expect("32 bytes");
                txids.push(Txid(id));
            }
        }
        Ok(txids)
    }
}

/// One read: bytes `start..stop` of the file, holding entries `first..end` of the sorted order.
struct Run {
    start: u64,
    stop: u64,
    first: usize,
    end: usize,
}

/// The reads for `n` sorted entries whose offsets `at` gives, nearby ones coalesced; the entries
/// past `file_end` get none.
fn runs(n: usize, at: impl Fn(usize) -> u64, file_end: u64) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < n {
        let start = at(i);
        if start + TXID_LEN > file_end {
            break; // the rest lie past the end too
        }
        let mut j = i + 1;
        let mut stop = start + TXID_LEN;
        while j < n {
            let a = at(j);
            if a > stop + COALESCE_GAP || a + TXID_LEN - start > MAX_READ || a + TXID_LEN > file_end
            {
                break;
            }
            stop = stop.max(a + TXID_LEN);
            j += 1;
        }
        runs.push(Run {
            start,
            stop,
            first: i,
            end: j,
        });
        i = j;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txid(n: u64) -> Txid {
        crate::types::Txid(crate::types::sha256d(&n.to_le_bytes()))
    }

    #[test]
    fn reads_what_was_written_in_any_order_and_nothing_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let f = TxidFile::open(&dir.path().join("txids")).unwrap();
        let all: Vec<Txid> = (0..20_000).map(txid).collect();
        // Out of order, as a reorg rewrites the top.
        f.write(TxNum(10_000), &all[10_000..]).unwrap();
        f.write(TxNum(0), &all[..10_000]).unwrap();
        assert_eq!(f.len().unwrap(), 20_000);
        // Dense runs, far jumps (past MAX_READ), duplicates, unsorted, past the end.
        let mut nums: Vec<TxNum> = (0..20_000).step_by(3).map(TxNum).collect();
        nums.extend([
            TxNum(5),
            TxNum(19_999),
            TxNum(0),
            TxNum(5),
            TxNum(20_000),
            TxNum(1 << 40),
        ]);
        let got = f.read(&nums).unwrap();
        for (n, t) in nums.iter().zip(&got) {
            let expected = (n.0 < 20_000).then(|| all[n.0 as usize]);
            assert_eq!(*t, expected, "tx number {}", n.0);
        }
        // Sorted and sparse: one entry per read.
        let sparse: Vec<TxNum> = (0..20_000).step_by(997).map(TxNum).collect();
        let got = f.read(&sparse).unwrap();
        assert!(sparse
            .iter()
            .zip(got)
            .all(|(n, t)| t == Some(all[n.0 as usize])));
        assert_eq!(f.read(&[]).unwrap(), vec![]);
    }

    #[test]
    fn many_scattered_reads_are_shared_among_readers_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = TxidFile::open(&dir.path().join("txids")).unwrap();
        let all: Vec<Txid> = (0..50_000).map(txid).collect();
        f.write(TxNum(0), &all).unwrap();
        // Entries 200 apart (6,400 bytes: no two share a read), reversed, a few past the end.
        let mut nums: Vec<TxNum> = (0..250).rev().map(|k| TxNum(k * 200)).collect();
        nums.insert(7, TxNum(50_000));
        nums.push(TxNum(1 << 30));
        let sorted: Vec<TxNum> = (0..50_000).step_by(200).map(TxNum).collect();
        let reads = runs(sorted.len(), |i| sorted[i].0 * TXID_LEN, f.bytes()).len();
        assert!(reads >= PARALLEL_RUNS, "{reads} reads");
        let got = f.read(&nums).unwrap();
        for (n, t) in nums.iter().zip(&got) {
            let expected = (n.0 < 50_000).then(|| all[n.0 as usize]);
            assert_eq!(*t, expected, "tx number {}", n.0);
        }
    }

    #[test]
    fn a_cut_file_ends_there_and_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("txids");
        let f = TxidFile::open(&path).unwrap();
        f.write(TxNum(0), &[txid(0), txid(1), txid(2)]).unwrap();
        f.sync().unwrap();
        f.truncate(2).unwrap();
        assert_eq!(
            f.read(&[TxNum(1), TxNum(2)]).unwrap(),
            vec![Some(txid(1)), None]
        );
        drop(f);
        let f = TxidFile::open(&path).unwrap();
        assert_eq!(f.len().unwrap(), 2);
        f.write(TxNum(2), &[txid(7)]).unwrap();
        assert_eq!(f.read(&[TxNum(2)]).unwrap(), vec![Some(txid(7))]);
    }
}
