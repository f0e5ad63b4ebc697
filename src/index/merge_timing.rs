//! When a bulk load merges its history rows (see `Store::merge_history`): once early and small,
//! to time merging on this machine, then so that the merge ends before the load does.

use crate::store::{Merge, TrialMerge};

/// Bytes of history tables from which the load times a merge of them ([`Merge::Trial`]):
/// enough to time, and little to merge once more (the final merge reads them again).
const TRIAL_FROM_BYTES: u64 = 64 << 20;

/// Past these, the history of this load (or of one that a restart continues) is too big for a
/// trial: its merge would cost what the final one does.
const TRIAL_UP_TO_BYTES: u64 = 256 << 20;

/// Bytes per second a merge of history is counted to read until a trial has timed one: about
/// the slowest measured beside a load (629 MB in 44.3 s, 10M scale chain, bench/README.md).
const UNTIMED_BYTES_PER_SEC: f64 = 14e6;

/// The share of a core the final merge gets beside the load on two cores: 28.1 CPU-s in
/// 38.7 s and 34.5 in 46.7 (10M scale chain). The trial comes when the load is at its most
/// CPU-bound and gets less (8.2 CPU-s in 12.0 s), so its own pace would start the final merge
/// far too early; its CPU time is what tells this machine's speed.
const FINAL_CPU_SHARE: f64 = 0.73;

/// How much longer than it expects the load takes while the merge runs: the merge takes one
/// of the two cores, and the last blocks of a chain are its heaviest. Measured from the merge's
/// start to "caught up": 1.2-2.0x on the 30M scale chain, 1.6-2.1x on the 10M one. Counting on
/// less makes the merge end early, and what the load writes after it is then compacted level by
/// level beside the load (at 30M, three minutes early: 56 CPU-s, 80 s of the only compaction
/// slot); on more, it outlasts the load, and the first blocks after it read a level 0 of
/// hundreds of files (at 30M, 100 s late: 1.4 s for a new block's notifications).
const LOAD_SLOWDOWN: f64 = 1.6;

/// Seconds a merge of `history_bytes` is expected to take beside the load.
pub(crate) fn merge_secs(history_bytes: u64, trial: Option<TrialMerge>) -> f64 {
    let rate = match trial {
        Some(TrialMerge {
            bytes,
            cpu_secs: Some(cpu),
            ..
        }) if cpu > 0.0 => bytes as f64 / cpu * FINAL_CPU_SHARE,
        // Its whole time, waiting for a slot and the load included, errs on the early side.
        Some(TrialMerge { bytes, secs, .. }) if secs > 0.0 => bytes as f64 / secs,
        _ => UNTIMED_BYTES_PER_SEC,
    };
    history_bytes as f64 / rate
}

/// The merge the load should start now, with the seconds it is expected to take: the final one
/// once the load, slowed by it, is expected to end within them; the trial once there is enough
/// history to time, and only if no final merge is due yet.
pub(crate) fn merge_due(
    history_bytes: u64,
    eta: f64,
    trial: Option<TrialMerge>,
) -> Option<(Merge, f64)> {
    let secs = merge_secs(history_bytes, trial);
    if eta * LOAD_SLOWDOWN <= secs {
        Some((Merge::Final, secs))
    } else if (TRIAL_FROM_BYTES..TRIAL_UP_TO_BYTES).contains(&history_bytes) {
        Some((Merge::Trial, secs))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    /// The 10M scale chain's trial on a two-core machine.
    const TIMED: TrialMerge = TrialMerge {
        bytes: 116 * MB,
        secs: 14.6,
        cpu_secs: Some(8.2),
    };

    #[test]
    fn the_final_merge_is_timed_by_the_trials_cpu_time() {
        // 116 MB per 8.2 CPU-s at 73% of a core: 10.3 MB/s, so 451 MB take 43.7 s (the
        // final merge of that load took 39.1 s); the load, expected to end in 27.3 s, then
        // takes about as long.
        let secs = merge_secs(451 * MB, Some(TIMED));
        assert!((secs - 43.7).abs() < 0.1, "{secs}");
        assert_eq!(merge_due(451 * MB, 28.0, Some(TIMED)), None);
        assert_eq!(
            merge_due(451 * MB, 27.0, Some(TIMED)),
            Some((Merge::Final, secs))
        );
        // A machine twice as fast starts it later.
        let fast = TrialMerge {
            cpu_secs: Some(4.1),
            ..TIMED
        };
        assert_eq!(merge_due(451 * MB, 20.0, Some(fast)), None);
        assert_eq!(
            merge_due(451 * MB, 13.0, Some(fast)).map(|(m, _)| m),
            Some(Merge::Final)
        );
    }

    #[test]
    fn without_its_cpu_time_the_trials_whole_time_counts() {
        let trial = TrialMerge {
            cpu_secs: None,
            ..TIMED
        };
        // 116 MB in 14.6 s: 7.9 MB/s.
        let secs = merge_secs(451 * MB, Some(trial));
        assert!((secs - 56.8).abs() < 0.1, "{secs}");
        let zero = TrialMerge {
            cpu_secs: Some(0.0),
            ..TIMED
        };
        assert_eq!(merge_secs(451 * MB, Some(zero)), secs);
    }

    #[test]
    fn an_untimed_merge_counts_the_slowest_rate_measured() {
        // 500 MB at 14 MB/s: about 36 s, so a load expected to end in 22 s.
        assert_eq!(merge_due(500 * MB, 23.0, None), None);
        assert_eq!(
            merge_due(500 * MB, 22.0, None).map(|(m, _)| m),
            Some(Merge::Final)
        );
    }

    #[test]
    fn the_trial_merge_is_early_and_small() {
        let far = 3_600.0;
        assert_eq!(merge_due(TRIAL_FROM_BYTES - 1, far, None), None);
        assert_eq!(
            merge_due(TRIAL_FROM_BYTES, far, None).map(|(m, _)| m),
            Some(Merge::Trial)
        );
        assert_eq!(
            merge_due(TRIAL_UP_TO_BYTES - 1, far, None).map(|(m, _)| m),
            Some(Merge::Trial)
        );
        // A restart deep into a load has too much history to time it that way.
        assert_eq!(merge_due(TRIAL_UP_TO_BYTES, far, None), None);
        // A load about to end merges for good at once.
        assert_eq!(
            merge_due(TRIAL_FROM_BYTES, 1.0, None).map(|(m, _)| m),
            Some(Merge::Final)
        );
        // The store refuses a second trial: asking again in the window is harmless.
        assert_eq!(
            merge_due(TRIAL_FROM_BYTES, far, Some(TIMED)).map(|(m, _)| m),
            Some(Merge::Trial)
        );
    }
}
