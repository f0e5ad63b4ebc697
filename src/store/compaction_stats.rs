//! What RocksDB says the compactions of one column family cost: a row of the tables it prints
//! for the `rocksdb.cfstats-no-file-histogram` property (rust-rocksdb has no map form of it).

/// Compactions of one column family since the database was opened, flushes not counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CompactionCost {
    /// Seconds the compaction jobs ran (waiting for a slot not counted).
    pub secs: f64,
    /// CPU seconds they used.
    pub cpu_secs: f64,
}

/// Reads the "Low" row of the table by thread-pool priority: compactions run in the low-
/// priority pool, flushes in the high one (the per-level table counts flushes as level 0's
/// compactions). Columns are found by the header's names; the header names `Size` once where
/// rows print a number and a unit, so a row has one token more from there on. None where the
/// table is missing or not as expected.
pub(crate) fn parse(cfstats: &str) -> Option<CompactionCost> {
    let mut lines = cfstats.lines();
    let header: Vec<&str> = lines
        .find(|l| l.split_whitespace().next() == Some("Priority"))?
        .split_whitespace()
        .collect();
    let row: Vec<&str> = lines
        .find(|l| l.split_whitespace().next() == Some("Low"))?
        .split_whitespace()
        .collect();
    let size = header.iter().position(|h| *h == "Size")?;
    let column = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| *h == name)?;
        let i = if i > size { i + 1 } else { i };
        row.get(i)?.parse().ok()
    };
    Some(CompactionCost {
        secs: column("Comp(sec)")?,
        cpu_secs: column("CompMergeCPU(sec)")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As RocksDB 10.4 prints it for a family with four flushes and one compaction.
    const SAMPLE: &str = "\
** Compaction Stats [history] **
Level    Files   Size     Score Read(GB)  Rn(GB) Rnp1(GB) Write(GB) WPreComp(GB) Wnew(GB) Moved(GB) W-Amp Rd(MB/s) Wr(MB/s) Comp(sec) CompMergeCPU(sec) Comp(cnt) Avg(sec) KeyIn KeyDrop Rblob(GB) Wblob(GB)
-------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------
  L0      0/0      0.00 KB   0.0      0.0     0.0      0.0       0.0       0.0      0.0       0.0   1.0      0.0     29.5      0.02              0.01         4    0.004     20K      0       0.0       0.0
  L6      1/0    336.08 KB   0.0      0.0     0.0      0.0       0.0       0.0      0.0       0.0   0.7     22.2     15.9      0.02              0.02         1    0.021     20K      0       0.0       0.0
 Sum      1/0    336.08 KB   0.0      0.0     0.0      0.0       0.0       0.0      0.0       0.0   1.7     12.7     21.7      0.04              0.03         5    0.007     40K      0       0.0       0.0
 Int      0/0      0.00 KB   0.0      0.0     0.0      0.0       0.0       0.0      0.0       0.0   1.7     12.7     21.7      0.04              0.03         5    0.007     40K      0       0.0       0.0
** Compaction Stats [history] **
Priority    Files   Size     Score Read(GB)  Rn(GB) Rnp1(GB) Write(GB) WPreComp(GB) Wnew(GB) Moved(GB) W-Amp Rd(MB/s) Wr(MB/s) Comp(sec) CompMergeCPU(sec) Comp(cnt) Avg(sec) KeyIn KeyDrop Rblob(GB) Wblob(GB)
----------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------
 Low      0/0      0.00 KB   0.0      0.0     0.0      0.0       0.0       0.0      0.0       0.0   0.0     22.2     15.9     38.71             28.12         1    0.021     20K      0       0.0       0.0
High      0/0      0.00 KB   0.0      0.0     0.0      0.0       0.0       0.0      0.0       0.0   0.0      0.0     29.5      0.02              0.01         4    0.004     20K      0       0.0       0.0

Uptime(secs): 0.1 total, 0.1 interval
";

    #[test]
    fn the_low_priority_row_is_the_compactions_without_the_flushes() {
        assert_eq!(
            parse(SAMPLE),
            Some(CompactionCost {
                secs: 38.71,
                cpu_secs: 28.12
            })
        );
    }

    #[test]
    fn a_table_not_as_expected_says_nothing() {
        assert_eq!(parse(""), None);
        // No compaction yet: RocksDB prints the priority table without rows.
        let header_only: String = SAMPLE
            .lines()
            .filter(|l| !l.starts_with(" Low") && !l.starts_with("High"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse(&header_only), None);
        assert_eq!(parse(&SAMPLE.replace("CompMergeCPU(sec)", "Cpu")), None);
    }
}
