//! A bulk load's history and spender rows, kept out of RocksDB until the load ends.
//!
//! Written through the memtables, a load's history rows reach level 0 as files that each span
//! every key, and merging them into the last level is one job that reads and rewrites all of
//! them: 6 GB at 10^8 transactions, nine minutes of one of the two cores at the end of the load,
//! while the UTXO families waited for the only compaction slot (bench/README.md, fourteenth
//! round). Spender rows are the same: one per input, written once, never read by the load.
//! Here each commit of the load appends a family's rows, already sorted, as one run to the
//! family's file; when the load ends the runs are read back one key range at a time, each range
//! sorted and written as a table file, and the files are ingested together into the last level.
//! Every row is then written once raw and once in its final table, never compacted.
//!
//! A run is `rows: u64 LE`, the row index where each of [`BUCKETS`] key ranges starts
//! (`BUCKETS + 1` × `u32 LE`, the last one `rows`), then the rows in key order, [`Row::BYTES`]
//! each: the family's key, then its value. The file is valid up to the length the index's last
//! commit recorded; anything after it was written for a commit that never happened and is cut
//! at open.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::types::{HashX, TxNum};

/// Key ranges a run is indexed by (the first 12 bits of a key, a hash in both families), so
/// that one range of every run is read back without the rest: at 10^9 transactions a range
/// holds ~600k history rows.
pub(crate) const BUCKETS: usize = 4096;
const HEADER: usize = 8 + (BUCKETS + 1) * 4;
/// Rows written by one `pwrite`: the run is encoded a piece at a time, not copied whole.
const WRITE_ROWS: usize = 1 << 16;

/// A row of a runs file: a family's key and value in a fixed number of bytes, ordered as the
/// key's bytes are.
pub(crate) trait Row: Copy + Ord + Send + Sync {
    /// Bytes of the row.
    const BYTES: usize;
    /// Bytes of its key (the value follows).
    const KEY: usize;
    /// Writes the row's [`Self::BYTES`] bytes.
    fn put(&self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
    /// Its key range: the key's first 12 bits.
    fn bucket(&self) -> usize;
}

fn bucket_of(key: &[u8]) -> usize {
    (usize::from(key[0]) << 4) | usize::from(key[1] >> 4)
}

/// A history row (`hashX ‖ tx num`, no value) as a number whose order is the key's byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HistoryRow(pub(crate) u128);

impl HistoryRow {
    pub(crate) fn new(hashx: &HashX, txnum: TxNum) -> HistoryRow {
        let mut key = [0u8; 16];
        key[..HashX::LEN].copy_from_slice(&hashx.0);
        key[HashX::LEN..].copy_from_slice(&txnum.to_bytes());
        HistoryRow(u128::from_be_bytes(key))
    }
}

impl Row for HistoryRow {
    const BYTES: usize = HashX::LEN + TxNum::LEN;
    const KEY: usize = Self::BYTES;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_be_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        HistoryRow(u128::from_be_bytes(bytes.try_into().expect("16 bytes")))
    }
    fn bucket(&self) -> usize {
        (self.0 >> 116) as usize
    }
}

/// A spender row: the `spender` family's key (txid\[..4\] ‖ vout ‖ funding tx num) and value
/// (the spending tx num).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SpenderRow(pub(crate) [u8; 18]);

impl SpenderRow {
    pub(crate) fn new(key: &[u8; Self::KEY], spending: TxNum) -> SpenderRow {
        let mut row = [0u8; 18];
        row[..Self::KEY].copy_from_slice(key);
        row[Self::KEY..].copy_from_slice(&spending.to_bytes());
        SpenderRow(row)
    }
}

impl Row for SpenderRow {
    const BYTES: usize = 18;
    const KEY: usize = 18 - TxNum::LEN;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn get(bytes: &[u8]) -> Self {
        SpenderRow(bytes.try_into().expect("18 bytes"))
    }
    fn bucket(&self) -> usize {
        bucket_of(&self.0)
    }
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

    fn end(&self, row: usize) -> u64 {
        self.rows_at + self.rows() * row as u64
    }
}

/// The runs file of one family, its rows of type `R`.
pub(crate) struct Runs<R> {
    file: File,
    /// Bytes the index has committed (the end of the last run).
    len: u64,
    runs: Vec<Run>,
    rows: std::marker::PhantomData<R>,
}

impl<R: Row> Runs<R> {
    /// Opens the file, keeping the runs within the `committed` bytes the index recorded.
    pub(crate) fn open(path: &Path, committed: u64) -> io::Result<Runs<R>> {
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
            if run.end(R::BYTES) > committed {
                return Err(invalid(format!("a run at {at} ends past {committed}")));
            }
            at = run.end(R::BYTES);
            runs.push(run);
        }
        Ok(Runs {
            file,
            len: committed,
            runs,
            rows: std::marker::PhantomData,
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
    pub(crate) fn write(&self, rows: &[R]) -> io::Result<(Run, u64)> {
        debug_assert!(rows.windows(2).all(|w| w[0] < w[1]), "rows in key order");
        let count = u32::try_from(rows.len()).map_err(|_| invalid("a run of 2^32 rows".into()))?;
        let mut starts = vec![0u32; BUCKETS + 1].into_boxed_slice();
        // starts[b + 1] counts the rows of range b first, then the counts are summed up.
        for row in rows {
            starts[row.bucket() + 1] += 1;
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
        let mut piece = Vec::with_capacity(WRITE_ROWS.min(rows.len()) * R::BYTES);
        let mut at = run.rows_at;
        for chunk in rows.chunks(WRITE_ROWS) {
            piece.clear();
            for row in chunk {
                row.put(&mut piece);
            }
            self.file.write_all_at(&piece, at)?;
            at += piece.len() as u64;
        }
        self.file.sync_data()?;
        let end = run.end(R::BYTES);
        Ok((run, end))
    }

    /// Counts a run from [`Self::write`] once its length is committed.
    pub(crate) fn push(&mut self, run: Run) {
        self.len = run.end(R::BYTES);
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
    pub(crate) fn read_sorted(&self, buckets: Range<usize>, out: &mut Vec<R>) -> io::Result<()> {
        out.clear();
        let mut bytes = Vec::new();
        for run in &self.runs {
            let (first, last) = (run.starts[buckets.start], run.starts[buckets.end]);
            let n = (last - first) as usize;
            if n == 0 {
                continue;
            }
            bytes.resize(n * R::BYTES, 0);
            self.file
                .read_exact_at(&mut bytes, run.rows_at + u64::from(first) * R::BYTES as u64)?;
            out.extend(bytes.chunks_exact(R::BYTES).map(R::get));
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

    fn hashx(n: u64) -> HashX {
        let h = crate::types::sha256d(&n.to_le_bytes());
        HashX(h[..HashX::LEN].try_into().unwrap())
    }

    fn row(n: u64) -> HistoryRow {
        HistoryRow::new(&hashx(n), TxNum(n))
    }

    fn sorted(range: Range<u64>) -> Vec<HistoryRow> {
        let mut rows: Vec<_> = range.map(row).collect();
        rows.sort_unstable();
        rows
    }

    fn all<R: Row>(runs: &Runs<R>, max_rows: u64) -> Vec<R> {
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
        let mut runs = Runs::open(&path, 0).unwrap();
        for r in [0..5_000, 5_000..5_001, 5_001..20_000] {
            let (run, end) = runs.write(&sorted(r)).unwrap();
            runs.push(run);
            assert_eq!(runs.bytes(), end);
        }
        assert_eq!((runs.runs(), runs.rows()), (3, 20_000));
        let expected = sorted(0..20_000);
        assert_eq!(all(&runs, 1_000), expected);
        assert_eq!(all(&runs, u64::MAX), expected);
        // The byte order of keys is the numbers' order.
        let mut bytes = Vec::new();
        row(7).put(&mut bytes);
        assert_eq!(&bytes[..HashX::LEN], &hashx(7).0);
        assert_eq!(row(7).bucket(), bucket_of(&hashx(7).0));
    }

    #[test]
    fn spender_rows_keep_their_values_and_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs");
        let mut runs = Runs::open(&path, 0).unwrap();
        let spender = |n: u64| {
            let mut key = [0u8; SpenderRow::KEY];
            key[..11].copy_from_slice(&hashx(n).0);
            SpenderRow::new(&key, TxNum(n * 3))
        };
        let mut expected = Vec::new();
        for r in [0..3_000, 3_000..7_000] {
            let mut rows: Vec<SpenderRow> = r.map(spender).collect();
            rows.sort_unstable();
            let (run, _) = runs.write(&rows).unwrap();
            runs.push(run);
            expected.extend(rows);
        }
        expected.sort_unstable();
        let back = all(&runs, 500);
        assert_eq!(back, expected);
        assert_eq!(
            TxNum::from_bytes(&back[0].0[SpenderRow::KEY..]).0 % 3,
            0,
            "the value follows the key"
        );
        let runs = Runs::<SpenderRow>::open(&path, runs.bytes()).unwrap();
        assert_eq!(runs.rows(), 7_000);
    }

    #[test]
    fn what_was_not_committed_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs");
        let mut runs = Runs::<HistoryRow>::open(&path, 0).unwrap();
        let (run, committed) = runs.write(&sorted(0..3_000)).unwrap();
        runs.push(run);
        // Written, but the batch recording it never was.
        runs.write(&sorted(3_000..4_000)).unwrap();
        drop(runs);
        assert!(std::fs::metadata(&path).unwrap().len() > committed);
        let runs = Runs::<HistoryRow>::open(&path, committed).unwrap();
        assert_eq!((runs.runs(), runs.rows()), (1, 3_000));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), committed);
        assert_eq!(all(&runs, u64::MAX).len(), 3_000);
        // A file shorter than what the index committed is damage, not a state to guess from.
        drop(runs);
        let err = Runs::<HistoryRow>::open(&path, committed + 1)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // Nothing committed: nothing kept.
        let mut runs = Runs::<HistoryRow>::open(&path, 0).unwrap();
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
        let mut runs = Runs::<HistoryRow>::open(&path, 0).unwrap();
        let (run, end) = runs.write(&sorted(0..100)).unwrap();
        runs.push(run);
        drop(runs);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&7u32.to_le_bytes(), 8 + 4 * 9).unwrap();
        let err = Runs::<HistoryRow>::open(&path, end).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
