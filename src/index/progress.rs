//! How far a sync has come, how fast it goes and when it should end: for the progress log, and
//! for timing the merge of history rows so that it ends with the initial sync.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::store::Tip;
use crate::types::Height;

/// The window of the recent rate. Blocks grow over a real chain, so the rate since the start
/// (early blocks are nearly empty) promises an end far sooner than the rate of late.
const RECENT: Duration = Duration::from_secs(60);

pub(crate) struct Progress {
    started: Instant,
    start: Height,
    start_txs: u64,
    /// (when, height, transactions) at each look within the last `RECENT`, oldest first.
    recent: VecDeque<(Instant, u32, u64)>,
}

/// What one look at the progress says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Estimate {
    /// Since the start of this sync.
    pub blocks_per_s: f64,
    pub tx_per_s: f64,
    /// Seconds until the target, at the recent rate; None before anything was indexed.
    pub eta: Option<f64>,
}

/// What the coin file says of its chain's size (`tx_count_hint`, `tx_per_block_hint`): where it
/// is ahead of the index, the remaining work is counted in transactions, which blocks of
/// growing size do not distort.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SizeHint {
    pub height: u64,
    pub txs: u64,
    pub tx_per_block: u64,
}

impl Progress {
    pub(crate) fn new(started: Instant, start: Height, start_txs: u64) -> Progress {
        Progress {
            started,
            start,
            start_txs,
            recent: VecDeque::new(),
        }
    }

    /// Records that the sync reached `tip` at `now`, on its way to `target`.
    pub(crate) fn look(
        &mut self,
        now: Instant,
        tip: &Tip,
        target: Height,
        hint: SizeHint,
    ) -> Estimate {
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let blocks = (tip.height.0 + 1).saturating_sub(self.start.0) as f64;
        let txs = tip.tx_count.saturating_sub(self.start_txs) as f64;
        while self
            .recent
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > RECENT)
        {
            self.recent.pop_front();
        }
        // The recent rate needs a window of some length; until then, the rate since the start.
        let (bps, tps) = match self.recent.front() {
            Some(&(t, h, n)) if now.duration_since(t) >= Duration::from_secs(1) => {
                let dt = now.duration_since(t).as_secs_f64();
                (
                    tip.height.0.saturating_sub(h) as f64 / dt,
                    tip.tx_count.saturating_sub(n) as f64 / dt,
                )
            }
            _ => (blocks / secs, txs / secs),
        };
        self.recent.push_back((now, tip.height.0, tip.tx_count));
        let remaining_blocks = target.0.saturating_sub(tip.height.0) as f64;
        let eta = if hint.txs > tip.tx_count && tps > 0.0 {
            let total = hint.txs as f64
                + (target.0 as f64 - hint.height as f64).max(0.0) * hint.tx_per_block as f64;
            Some((total - tip.tx_count as f64).max(0.0) / tps)
        } else if remaining_blocks == 0.0 {
            Some(0.0)
        } else if bps > 0.0 {
            Some(remaining_blocks / bps)
        } else {
            None
        };
        Estimate {
            blocks_per_s: blocks / secs,
            tx_per_s: txs / secs,
            eta,
        }
    }
}

pub(crate) fn format_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::BlockHash;

    fn tip(height: u32, tx_count: u64) -> Tip {
        Tip {
            height: Height(height),
            hash: BlockHash([0; 32]),
            tx_count,
        }
    }

    const NO_HINT: SizeHint = SizeHint {
        height: 0,
        txs: 0,
        tx_per_block: 1,
    };

    #[test]
    fn the_end_is_estimated_at_the_recent_rate_not_the_average() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, Height(0), 0);
        // 10,000 small blocks in the first 10 s, then 100 blocks per 10 s.
        let at = |s: u64| t0 + Duration::from_secs(s);
        let first = p.look(at(10), &tip(9_999, 10_000), Height(20_000), NO_HINT);
        assert_eq!(first.blocks_per_s, 1_000.0);
        assert_eq!(first.eta, Some(10.001));
        let mut last = first;
        for (i, s) in (20..=100).step_by(10).enumerate() {
            last = p.look(
                at(s),
                &tip(10_099 + 100 * i as u32, 0),
                Height(20_000),
                NO_HINT,
            );
        }
        // At 10 blocks/s, 9,101 blocks are left: about 910 s, where the average says 63 s.
        let eta = last.eta.unwrap();
        assert!((eta - 910.1).abs() < 0.01, "{eta}");
        assert!(last.blocks_per_s > 100.0);
    }

    #[test]
    fn a_chain_size_hint_ahead_of_the_index_counts_the_rest_in_transactions() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, Height(0), 0);
        let hint = SizeHint {
            height: 1_000,
            txs: 1_000_000,
            tx_per_block: 2_000,
        };
        p.look(
            t0 + Duration::from_secs(10),
            &tip(100, 100_000),
            Height(1_010),
            hint,
        );
        // 200,000 transactions in the next 10 s; the target is 10 blocks past the hint.
        let e = p.look(
            t0 + Duration::from_secs(20),
            &tip(300, 300_000),
            Height(1_010),
            hint,
        );
        assert_eq!(e.eta, Some((1_020_000.0 - 300_000.0) / 20_000.0));
        // Past the hint, blocks count.
        let e = p.look(
            t0 + Duration::from_secs(30),
            &tip(1_005, 1_100_000),
            Height(1_010),
            hint,
        );
        assert_eq!(e.eta, Some(5.0 / 45.25));
        let done = p.look(
            t0 + Duration::from_secs(31),
            &tip(1_010, 1_100_001),
            Height(1_010),
            hint,
        );
        assert_eq!(done.eta, Some(0.0));
    }
}
