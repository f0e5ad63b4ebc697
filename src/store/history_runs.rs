//! A bulk load's history rows, kept out of RocksDB until the load ends.
//!
//! Written through the memtables, a load's history rows reach level 0 as files that each span
//! every key, and merging them into the last level is one job that reads and rewrites all of
//! them: 6 GB at 10^8 transactions, nine minutes of one of the two cores at the end of the load,
//! while the UTXO families waited for the only compaction slot (bench/README.md, fourteenth
//! round). Here each commit of the load appends its rows, already sorted, as one run to a
//! file; when the load ends the runs are read back one key range at a time, each range sorted
//! and written as a table file, and the files are ingested together into the last level. Every
//! row is then written once as a raw 16 bytes and once in its final table, never compacted.
//!
//! A run is `rows: u64 LE`, the row index where each of [`BUCKETS`] key ranges starts
//! (`BUCKETS + 1` × `u32 LE`, the last one `rows`), then the rows: `hashX ‖ tx num`, 16 bytes
//! each, in key order. The file is valid up to the length the index's last commit recorded;
//! anything after it was written for a commit that never happened and is cut at open.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::types::{HashX, TxNum};

/// Bytes of a row: the history key.
pub(crate) const ROW: usize = HashX::LEN + TxNum::LEN;
/// Key ranges a run is indexed by (the first 12 bits of the script hash), so that one range of
/// every run is read back without the rest: at 10^9 transactions a range holds ~600k rows.
pub(crate) const BUCKETS: usize = 4096;
const HEADER: usize = 8 + (BUCKETS + 1) * 4;
/// Rows written by one `pwrite`: the run is encoded a piece at a time, not copied whole.
const WRITE_ROWS: usize = 1 << 16;

/// A history row as a number whose order is the key's byte order.
pub(crate) fn encode(hashx: &HashX, txnum: TxNum) -> u128 {
    let mut key = [0u8; ROW];
    key[..HashX::LEN].copy_from_slice(&hashx.0);
    key[HashX::LEN..].copy_from_slice(&txnum.to_bytes());
    u128::from_be_bytes(key)
}

fn bucket(hashx: &HashX) -> usize {
    (usize::from(hashx.0[0]) << 4) | usize::from(hashx.0[1] >> 4)
}

/// One commit's rows in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// Offset of the first row.
    rows_at: u64,
    /// Row index where each key range starts; the last entry is the run's row count.
    starts: Box<[u32]>,
}

impl Run {
    fn rows(&self) -> u64 {
        u64::from(self.starts[BUCKETS])
    }

    fn end(&self) -> u64 {
        self.rows_at + self.rows() * ROW as u64
    }
}

pub(crate) struct HistoryRuns {
    file: File,
    /// Bytes the index has committed (the end of the last run).
    len: u64,
    runs: Vec<Run>,
}

impl HistoryRuns {
    /// Opens the file, keeping the runs within the `committed` bytes the index recorded.
    pub(crate) fn open(path: &Path, committed: u64) -> io::Result<HistoryRuns> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let found = file.metadata()?.len();
        if found < committed {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{found} bytes where the index committed {committed}"),
            ));
        }
        if found > committed {
            file.set_len(committed)?;
            file.sync_all()?;
        }
        let mut runs = Vec::new();
        let mut at = 0;
        while at < committed {
            let run = read_header(&file, at)?;
            if run.end() > committed {
                return Err(invalid(format!("a run at {at} ends past {committed}")));
            }
            at = run.end();
            runs.push(run);
        }
        Ok(HistoryRuns {
            file,
            len: committed,
            runs,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    pub(crate) fn rows(&self) -> u64 {
        self.runs.iter().map(Run::rows).sum()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.len
    }

    /// Writes `rows` (in key order) as a run after the committed ones and syncs it; returns it
    /// with the file's length once it is committed. It counts only from [`Self::push`], after
    /// the index's batch recording that length is written.
    pub(crate) fn write(&self, rows: &[(HashX, TxNum)]) -> io::Result<(Run, u64)> {
        debug_assert!(rows.windows(2).all(|w| w[0] < w[1]), "rows in key order");
        let count = u32::try_from(rows.len()).map_err(|_| invalid("a run of 2^32 rows".into()))?;
        let mut starts = vec![0u32; BUCKETS + 1].into_boxed_slice();
        // starts[b + 1] counts the rows of range b first, then the counts are summed up.
        for (hashx, _) in rows {
            starts[bucket(hashx) + 1] += 1;
        }
        for b in 1..=BUCKETS {
            starts[b] += starts[b - 1];
        }
        debug_assert_eq!(starts[BUCKETS], count);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(&u64::from(count).to_le_bytes());
        for s in starts.iter() {
            header.extend_from_slice(&s.to_le_bytes());
        }
        self.file.write_all_at(&header, self.len)?;
        let run = Run {
            rows_at: self.len + HEADER as u64,
            starts,
        };
        let mut piece = Vec::with_capacity(WRITE_ROWS.min(rows.len()) * ROW);
        let mut at = run.rows_at;
        for chunk in rows.chunks(WRITE_ROWS) {
            piece.clear();
            for (hashx, txnum) in chunk {
                piece.extend_from_slice(&encode(hashx, *txnum).to_be_bytes());
            }
            self.file.write_all_at(&piece, at)?;
            at += piece.len() as u64;
        }
        self.file.sync_data()?;
        let end = run.end();
        Ok((run, end))
    }

    /// Counts a run from [`Self::write`] once its length is committed.
    pub(crate) fn push(&mut self, run: Run) {
        self.len = run.end();
        self.runs.push(run);
    }

    /// Key ranges to read back together: consecutive [`BUCKETS`] of at most `max_rows` rows
    /// in all runs (or one range, where a range alone has more).
    pub(crate) fn chunks(&self, max_rows: u64) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut rows = 0u64;
        for b in 0..BUCKETS {
            let here: u64 = self
                .runs
                .iter()
                .map(|r| u64::from(r.starts[b + 1] - r.starts[b]))
                .sum();
            if rows > 0 && rows + here > max_rows {
                out.push(start..b);
                start = b;
                rows = 0;
            }
            rows += here;
        }
        if rows > 0 {
            out.push(start..BUCKETS);
        }
        out
    }

    /// Every row of the key ranges `buckets`, from every run, in key order.
    pub(crate) fn read_sorted(&self, buckets: Range<usize>, out: &mut Vec<u128>) -> io::Result<()> {
        out.clear();
        for run in &self.runs {
            let (first, last) = (run.starts[buckets.start], run.starts[buckets.end]);
            let n = (last - first) as usize;
            if n == 0 {
                continue;
            }
            let have = out.len();
            out.reserve(n);
            // SAFETY: the spare capacity holds n u128s (reserved above), any bit pattern is a
            // valid u128, and only what read_exact_at filled is counted by set_len.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(out.as_mut_ptr().add(have).cast::<u8>(), n * ROW)
            };
            self.file
                .read_exact_at(bytes, run.rows_at + u64::from(first) * ROW as u64)?;
            unsafe { out.set_len(have + n) };
        }
        for row in out.iter_mut() {
            *row = u128::from_be(*row);
        }
        // Each run is sorted already: the sort merges them.
        out.sort_unstable();
        out.dedup();
        Ok(())
    }

    /// Forgets every run once the index has them (or never committed them).
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        self.runs.clear();
        Ok(())
    }
}

fn read_header(file: &File, at: u64) -> io::Result<Run> {
    let mut header = vec![0u8; HEADER];
    file.read_exact_at(&mut header, at)?;
    let rows = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    let starts: Box<[u32]> = header[8..]
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    if starts[0] != 0
        || u64::from(starts[BUCKETS]) != rows
        || starts.windows(2).any(|w| w[0] > w[1])
    {
        return Err(invalid(format!("the run at {at} has a damaged header")));
    }
    Ok(Run {
        rows_at: at + HEADER as u64,
        starts,
    })
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u64) -> (HashX, TxNum) {
        let h = crate::types::sha256d(&n.to_le_bytes());
        (HashX(h[..HashX::LEN].try_into().unwrap()), TxNum(n))
    }

    fn sorted(range: Range<u64>) -> Vec<(HashX, TxNum)> {
        let mut rows: Vec<_> = range.map(row).collect();
        rows.sort_unstable();
        rows
    }

    fn all(runs: &HistoryRuns, max_rows: u64) -> Vec<u128> {
        let chunks = runs.chunks(max_rows);
        // The ranges cover every key once, in order.
        assert_eq!(chunks.first().map(|c| c.start), Some(0));
        assert_eq!(chunks.last().map(|c| c.end), Some(BUCKETS));
        assert!(chunks.windows(2).all(|w| w[0].end == w[1].start));
        let mut out = Vec::new();
        let mut chunk = Vec::new();
        for c in chunks {
            runs.read_sorted(c, &mut chunk).unwrap();
            assert!(chunk.len() as u64 <= max_rows, "{}", chunk.len());
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn runs_read_back_in_key_order_a_range_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs");
        let mut runs = HistoryRuns::open(&path, 0).unwrap();
        for r in [0..5_000, 5_000..5_001, 5_001..20_000] {
            let (run, end) = runs.write(&sorted(r)).unwrap();
            runs.push(run);
            assert_eq!(runs.bytes(), end);
        }
        assert_eq!((runs.runs(), runs.rows()), (3, 20_000));
        let mut expected: Vec<u128> = (0..20_000)
            .map(|n| {
                let (h, t) = row(n);
                encode(&h, t)
            })
            .collect();
        expected.sort_unstable();
        assert_eq!(all(&runs, 1_000), expected);
        assert_eq!(all(&runs, u64::MAX), expected);
        // The byte order of keys is the numbers' order.
        let (h, t) = row(7);
        assert_eq!(&encode(&h, t).to_be_bytes()[..HashX::LEN], &h.0);
    }

    #[test]
    fn what_was_not_committed_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs");
        let mut runs = HistoryRuns::open(&path, 0).unwrap();
        let (run, committed) = runs.write(&sorted(0..3_000)).unwrap();
        runs.push(run);
        // Written, but the batch recording it never was.
        runs.write(&sorted(3_000..4_000)).unwrap();
        drop(runs);
        assert!(std::fs::metadata(&path).unwrap().len() > committed);
        let runs = HistoryRuns::open(&path, committed).unwrap();
        assert_eq!((runs.runs(), runs.rows()), (1, 3_000));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), committed);
        assert_eq!(all(&runs, u64::MAX).len(), 3_000);
        // A file shorter than what the index committed is damage, not a state to guess from.
        drop(runs);
        let err = HistoryRuns::open(&path, committed + 1).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // Nothing committed: nothing kept.
        let mut runs = HistoryRuns::open(&path, 0).unwrap();
        assert!(runs.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let (run, _) = runs.write(&sorted(0..10)).unwrap();
        runs.push(run);
        runs.clear().unwrap();
        assert!(runs.is_empty() && runs.bytes() == 0);
    }

    #[test]
    fn a_damaged_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs");
        let mut runs = HistoryRuns::open(&path, 0).unwrap();
        let (run, end) = runs.write(&sorted(0..100)).unwrap();
        runs.push(run);
        drop(runs);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&7u32.to_le_bytes(), 8 + 4 * 9).unwrap();
        let err = HistoryRuns::open(&path, end).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
