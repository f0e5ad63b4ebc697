//! Answers for scripts with long histories, built once: the serialized `get_history`,
//! `listunspent` and `get_balance` of a script is kept with the script's status, and served
//! again while the status is the same.
//!
//! A status is the hash of the script's whole history, confirmed and unconfirmed, and every
//! change to the script's transactions (a block paying or spending it, a reorg undoing one, a
//! mempool transaction arriving or leaving) changes its history and so its status: a kept answer
//! whose status no longer matches is stale, and exactly those are. Statuses of long histories
//! are cheap to recompute (see `status`); rebuilding a 20,000-entry answer is not, and many
//! sessions asking for the same hot script would each rebuild it.

use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use serde_json::value::RawValue;

use super::single_flight::SingleFlight;
use crate::types::HashX;

/// Scripts with fewer history entries are answered without the cache: their answers are
/// cheap, and the status would cost as much as the answer.
pub(crate) const MIN_CACHED_ENTRIES: usize = 100;

/// Which answer of a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AnswerKind {
    History,
    Unspent,
    Balance,
}

impl AnswerKind {
    /// How many confirmed entries the status of an answer of this kind may cover: a history
    /// is refused past `limit`, while statuses of unspent outputs and balances cover the
    /// whole history, however long.
    pub(crate) fn status_limit(self, limit: usize) -> usize {
        match self {
            AnswerKind::History => limit,
            AnswerKind::Unspent | AnswerKind::Balance => usize::MAX,
        }
    }
}

/// A serialized answer, and what building it costs a client (charged again for a kept one,
/// as ElectrumX charges by the work the answer stands for).
#[derive(Debug)]
pub(crate) struct Answer {
    pub json: Arc<RawValue>,
    pub cost: f64,
}

/// A kept answer's key: the script and which answer it is.
type Key = (HashX, AnswerKind);

struct Kept {
    status: Option<String>,
    answer: Arc<Answer>,
}

/// The kept answers, least recently used dropped first once their bytes pass the budget.
pub(crate) struct AnswerCache {
    budget: usize,
    inner: Mutex<Inner>,
    /// Sessions asking for a hot script after it changed wait for one rebuild instead of each
    /// doing it.
    building: SingleFlight<Key>,
}

struct Inner {
    kept: LruCache<Key, Kept>,
    bytes: usize,
}

/// What an entry is counted as besides its JSON.
const ENTRY_OVERHEAD: usize = 200;

fn size(k: &Kept) -> usize {
    k.answer.json.get().len() + ENTRY_OVERHEAD
}

impl AnswerCache {
    /// A cache holding at most `budget` bytes of answers (0: none kept).
    pub(crate) fn new(budget: usize) -> AnswerCache {
        AnswerCache {
            budget,
            inner: Mutex::new(Inner {
                kept: LruCache::unbounded(),
                bytes: 0,
            }),
            building: SingleFlight::default(),
        }
    }

    /// Runs `f` as the only rebuild of the answer under way (others wait for it, then find it
    /// kept).
    pub(crate) fn rebuilding<T>(
        &self,
        hashx: &HashX,
        kind: AnswerKind,
        f: impl FnOnce() -> T,
    ) -> T {
        self.building.run(&(*hashx, kind), f)
    }

    /// Whether an answer of `kind` is kept for the script (at whatever status).
    pub(crate) fn has(&self, hashx: &HashX, kind: AnswerKind) -> bool {
        self.inner.lock().kept.contains(&(*hashx, kind))
    }

    /// The kept answer, if it was built at `status` (a stale one stays until it is replaced or
    /// pushed out: it marks the script as one whose answers are kept).
    pub(crate) fn get(
        &self,
        hashx: &HashX,
        kind: AnswerKind,
        status: &Option<String>,
    ) -> Option<Arc<Answer>> {
        let mut inner = self.inner.lock();
        inner
            .kept
            .get(&(*hashx, kind))
            .filter(|k| &k.status == status)
            .map(|k| k.answer.clone())
    }

    /// Keeps `answer`, built at `status`, dropping the least recently used past the budget.
    pub(crate) fn put(
        &self,
        hashx: &HashX,
        kind: AnswerKind,
        status: Option<String>,
        answer: Arc<Answer>,
    ) {
        let kept = Kept { status, answer };
        let bytes = size(&kept);
        // One answer may not take more than a quarter of the budget.
        if bytes > self.budget / 4 {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(old) = inner.kept.put((*hashx, kind), kept) {
            inner.bytes -= size(&old);
        }
        inner.bytes += bytes;
        while inner.bytes > self.budget {
            match inner.kept.pop_lru() {
                Some((_, old)) => inner.bytes -= size(&old),
                None => break,
            }
        }
    }

    /// Bytes kept, and answers kept.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.bytes, inner.kept.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: usize) -> Arc<Answer> {
        let json = RawValue::from_string(format!("\"{}\"", "x".repeat(n - 2))).unwrap();
        Arc::new(Answer {
            json: json.into(),
            cost: n as f64,
        })
    }

    #[test]
    fn answers_are_served_at_their_status_only_and_kept_within_the_budget() {
        let cache = AnswerCache::new(10_000);
        let (a, b) = (HashX([1; 11]), HashX([2; 11]));
        let s1 = Some("1".to_string());
        let s2 = Some("2".to_string());
        cache.put(&a, AnswerKind::History, s1.clone(), answer(1000));
        assert_eq!(
            cache.get(&a, AnswerKind::History, &s1).unwrap().cost,
            1000.0
        );
        assert!(
            cache.get(&a, AnswerKind::Unspent, &s1).is_none(),
            "per kind"
        );
        assert!(
            cache.get(&b, AnswerKind::History, &s1).is_none(),
            "per script"
        );
        // Another status: stale.
        assert!(cache.get(&a, AnswerKind::History, &s2).is_none());
        cache.put(&a, AnswerKind::History, s2.clone(), answer(500));
        assert_eq!(cache.get(&a, AnswerKind::History, &s2).unwrap().cost, 500.0);
        assert_eq!(cache.usage(), (700, 1));
        cache.put(&a, AnswerKind::History, s2.clone(), answer(9000));
        assert_eq!(cache.usage(), (700, 1), "too big: the old one stays");
        // Past the budget the least recently used goes.
        for i in 0..4u8 {
            cache.put(&HashX([i; 11]), AnswerKind::Balance, None, answer(2000));
        }
        cache
            .get(&HashX([0; 11]), AnswerKind::Balance, &None)
            .unwrap();
        cache.put(&b, AnswerKind::History, None, answer(2000));
        assert!(cache.usage().0 <= 10_000);
        assert!(cache.has(&HashX([0; 11]), AnswerKind::Balance), "used last");
        assert!(
            !cache.has(&HashX([1; 11]), AnswerKind::Balance),
            "least recent"
        );
        // Too big for the budget: not kept.
        cache.put(&a, AnswerKind::Unspent, None, answer(3000));
        assert!(!cache.has(&a, AnswerKind::Unspent));
    }
}
