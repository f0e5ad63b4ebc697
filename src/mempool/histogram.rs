//! ElectrumX's compact fee histogram (`mempool.get_fee_histogram`).
//!
//! Rates are rounded *down* to 0.1 sat/vB so a transaction always lands in the bin whose
//! interval contains its rate; bins hold at least `bin_size` vbytes (growing by 10% per emitted
//! bin), a single rate holding more than twice a bin first flushes what came before it, and a
//! final remainder that does not fill a bin is not emitted.

use std::collections::BTreeMap;

/// ElectrumX 2's `MEMPOOL_COMPACT_HISTOGRAM_BINSIZE`.
pub(crate) const BIN_SIZE: u64 = 30_000;

/// The rate bucket of one transaction, in tenths of a sat/vB, computed with floats as ElectrumX
/// does (`floor(10 * fee / vsize)`) so edge cases round the same way.
pub(crate) fn rate_tenths(fee: u64, vsize: u32) -> u64 {
    let rate = fee as f64 / f64::from(vsize.max(1));
    (10.0 * rate).floor() as u64
}

/// Compacts `{rate in tenths: total vsize}` into `[rate, vsize]` pairs, highest rate first.
pub(crate) fn compact(buckets: &BTreeMap<u64, u64>, bin_size: u64) -> Vec<(f64, u64)> {
    let mut bin = bin_size as f64;
    let mut out = Vec::new();
    let mut cum: u64 = 0;
    let mut prev: Option<u64> = None;
    for (&tenths, &size) in buckets.iter().rev() {
        if size as f64 > 2.0 * bin && cum > 0 {
            if let Some(p) = prev {
                out.push((p as f64 / 10.0, cum));
                cum = 0;
                bin *= 1.1;
            }
        }
        cum += size;
        if cum as f64 > bin {
            out.push((tenths as f64 / 10.0, cum));
            cum = 0;
            bin *= 1.1;
        }
        prev = Some(tenths);
    }
    out
}

/// Buckets `(fee, vsize)` pairs and compacts them with ElectrumX 2's bin size.
pub(crate) fn fee_histogram(txs: impl IntoIterator<Item = (u64, u32)>) -> Vec<(f64, u64)> {
    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
    for (fee, vsize) in txs {
        *buckets.entry(rate_tenths(fee, vsize)).or_default() += u64::from(vsize);
    }
    compact(&buckets, BIN_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_example() {
        // electrumx-reference.md §7, computed with ElectrumX 2's own function.
        let buckets: BTreeMap<u64, u64> = [
            (500, 10_000),
            (205, 25_000),
            (200, 5_000),
            (100, 100_000),
            (50, 8_000),
            (20, 30_000),
            (10, 40_000),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            compact(&buckets, 30_000),
            vec![
                (20.5, 35_000),
                (20.0, 5_000),
                (10.0, 100_000),
                (1.0, 78_000)
            ]
        );
    }

    #[test]
    fn rates_round_down_to_tenths() {
        assert_eq!(rate_tenths(1000, 141), 70); // 7.09 → 7.0
        assert_eq!(rate_tenths(23, 10), 23);
        assert_eq!(rate_tenths(1, 3), 3);
        assert_eq!(rate_tenths(0, 100), 0);
    }

    #[test]
    fn small_tail_is_not_emitted_and_empty_is_empty() {
        assert!(fee_histogram(std::iter::empty()).is_empty());
        assert!(fee_histogram([(1000u64, 200u32)]).is_empty());
        let h = fee_histogram([(10_000_000u64, 40_000u32), (1000, 200)]);
        assert_eq!(h, vec![(250.0, 40_000)]);
    }
}
