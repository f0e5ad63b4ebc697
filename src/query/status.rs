//! Status hashes of long histories without rereading them: the SHA-256 state after a script's
//! confirmed entries is kept, so a new block costs a hash of its new entries only.
//!
//! A status covers every confirmed entry as `"<txid>:<height>:"`, and computing it from scratch
//! reads one txid per entry: at 10^7 transactions a block touching a thousand subscribed
//! scripts with long histories took 1.7 s to notify, nearly all of it those reads. Confirmed
//! histories only grow at the end, except when a reorg undoes blocks; such commits move the
//! store's generation, which retires every kept state.

use std::fmt::Write;
use std::num::NonZeroUsize;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use lru::LruCache;
use parking_lot::{Mutex, RwLock};

use super::history::{history_limit_reached, HistoryError};
use super::single_flight::SingleFlight;
use crate::mempool::{Mempool, MempoolEntry};
use crate::store::Store;
use crate::types::{HashX, TxNum};

/// Histories shorter than this are hashed from scratch: cheap, and not worth a cache slot.
const MIN_KEPT_ENTRIES: usize = 64;

/// The confirmed part of a status, ready to be continued.
#[derive(Clone)]
struct Hashed {
    /// The store's generation it was read at.
    generation: u64,
    entries: usize,
    last: TxNum,
    engine: sha256::HashEngine,
}

#[derive(Clone)]
enum Kept {
    Hashed(Hashed),
    /// A history refused at `entries` entries with nothing of it kept: it stays at least that
    /// long while the generation holds, so asking again needs no read (the hottest script of
    /// a start-up storm was read to its limit, 202k rows, once per subscription).
    Refused {
        generation: u64,
        entries: usize,
    },
}

pub(crate) struct StatusCache {
    kept: Mutex<LruCache<HashX, Kept>>,
    /// One read from scratch per script at a time: the others wait and continue what it kept.
    computing: SingleFlight<HashX>,
}

/// A status and the number of entries it covers (what computing it costs).
pub(crate) type Status = (usize, Option<String>);

impl StatusCache {
    pub(crate) fn new(capacity: usize) -> StatusCache {
        StatusCache {
            kept: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("nonzero"),
            )),
            computing: SingleFlight::default(),
        }
    }

    /// The status of `hashx`'s history, refused once the confirmed part reaches `limit`
    /// entries. Blocking: RocksDB reads.
    pub(crate) fn status(
        &self,
        store: &Store,
        mempool: &RwLock<Mempool>,
        hashx: &HashX,
        limit: usize,
    ) -> Result<Status, HistoryError> {
        // Held across the store reads: blocks are committed under the mempool's write lock,
        // so both halves come from the same moment.
        self.status_in(store, &mempool.read(), hashx, limit)
    }

    /// [`StatusCache::status`] with the mempool's read lock already held (so a caller can read
    /// more of the same moment).
    pub(crate) fn status_in(
        &self,
        store: &Store,
        mempool: &Mempool,
        hashx: &HashX,
        limit: usize,
    ) -> Result<Status, HistoryError> {
        // Blocks are committed under the mempool's write lock, which the caller holds off:
        // the generation cannot move while the history is read.
        let generation = store.generation();
        match self.lookup(hashx, generation, limit)? {
            Some(hashed) => {
                self.continue_from(store, mempool, hashx, limit, generation, Some(hashed))
            }
            None => self.computing.run(hashx, || {
                let hashed = self.lookup(hashx, generation, limit)?;
                self.continue_from(store, mempool, hashx, limit, generation, hashed)
            }),
        }
    }

    /// The kept state to continue from, or the refusal a kept one already implies.
    fn lookup(
        &self,
        hashx: &HashX,
        generation: u64,
        limit: usize,
    ) -> Result<Option<Hashed>, HistoryError> {
        match self.kept.lock().get(hashx) {
            Some(Kept::Hashed(h)) if h.generation == generation => Ok(Some(h.clone())),
            Some(Kept::Refused {
                generation: g,
                entries,
            }) if *g == generation && history_limit_reached(*entries, limit) => {
                Err(HistoryError::TooLarge)
            }
            _ => Ok(None),
        }
    }

    /// Hashes the entries after `kept` (all of them without it) and keeps the new state.
    fn continue_from(
        &self,
        store: &Store,
        mempool: &Mempool,
        hashx: &HashX,
        limit: usize,
        generation: u64,
        kept: Option<Hashed>,
    ) -> Result<Status, HistoryError> {
        let (mut entries, mut engine, new) = match kept {
            Some(k) => {
                let new = store.history_from(hashx, TxNum(k.last.0 + 1))?;
                (k.entries, k.engine, new)
            }
            // A history that reaches the limit is refused: reading past it would be for nothing.
            None => {
                let new = store.history_upto(hashx, limit)?;
                if history_limit_reached(new.len(), limit) {
                    let refused = Kept::Refused {
                        generation,
                        entries: new.len(),
                    };
                    self.kept.lock().put(*hashx, refused);
                    return Err(HistoryError::TooLarge);
                }
                (0, sha256::HashEngine::default(), new)
            }
        };
        if history_limit_reached(entries + new.len(), limit) {
            return Err(HistoryError::TooLarge);
        }
        let heights = store.txnum_heights(&new);
        let txids = store.txids(&new)?;
        let mut text = String::with_capacity(72 * new.len());
        for (txid, height) in txids.iter().zip(&heights) {
            write!(text, "{txid}:{}:", height.0).expect("write to String");
        }
        engine.input(text.as_bytes());
        entries += new.len();
        if let Some(last) = new.last() {
            if entries >= MIN_KEPT_ENTRIES {
                let hashed = Hashed {
                    generation,
                    entries,
                    last: *last,
                    engine: engine.clone(),
                };
                self.kept.lock().put(*hashx, Kept::Hashed(hashed));
            }
        }
        let unconfirmed = mempool.history(hashx);
        Ok((
            entries + unconfirmed.len(),
            finish(engine, entries, &unconfirmed),
        ))
    }
}

fn finish(
    mut engine: sha256::HashEngine,
    confirmed: usize,
    mempool: &[MempoolEntry],
) -> Option<String> {
    if confirmed == 0 && mempool.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(72 * mempool.len());
    for m in mempool {
        write!(text, "{}:{}:", m.txid, m.height).expect("write to String");
    }
    engine.input(text.as_bytes());
    Some(hex::encode(
        sha256::Hash::from_engine(engine).to_byte_array(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::{ParsedBlock, ParsedOutput, ParsedTx};
    use crate::index::test_chain::open_store as open;
    use crate::index::writer::Writer;
    use crate::query::FullHistory;
    use crate::types::{BlockHash, ScriptHash, Txid};

    /// A block of `n` transactions, each paying script 1 (and, for every third, script 2).
    fn block(prev: BlockHash, nonce: u8, n: usize) -> ParsedBlock {
        let txs = (0..n)
            .map(|i| ParsedTx {
                txid: Txid(crate::types::sha256d(&[nonce, i as u8, (i >> 8) as u8])),
                inputs: Vec::new(),
                outputs: [1u8, 2]
                    .iter()
                    .filter(|s| **s == 1 || i % 3 == 0)
                    .map(|s| ParsedOutput {
                        value: 1000,
                        scripthash: Some(ScriptHash::of_script(&[*s])),
                    })
                    .collect(),
                vsize: 100,
                keva: None,
            })
            .collect();
        crate::index::test_chain::block(prev, nonce, txs)
    }

    fn from_scratch(store: &Store, mempool: &RwLock<Mempool>, h: &HashX) -> Status {
        let f = FullHistory::read(store, mempool, h, usize::MAX).unwrap();
        (f.confirmed.len() + f.mempool.len(), f.status())
    }

    #[test]
    fn kept_statuses_follow_new_blocks_and_reorgs_as_a_fresh_computation_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mempool = RwLock::new(Mempool::default());
        let cache = StatusCache::new(10);
        let scripts = [1u8, 2, 3].map(|s| ScriptHash::of_script(&[s]).hashx());
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        let g = block(BlockHash([0; 32]), 0, 1);
        let b1 = block(g.hash, 1, 150);
        w.apply(&[g, b1.clone()]).unwrap();
        let check = |label: &str| {
            for h in &scripts {
                let got = cache.status(&store, &mempool, h, usize::MAX).unwrap();
                assert_eq!(got, from_scratch(&store, &mempool, h), "{label}");
            }
        };
        check("first read");
        assert_eq!(cache.kept.lock().len(), 1, "only script 1 has 64+ entries");
        let b2 = block(b1.hash, 2, 90);
        w.apply(std::slice::from_ref(&b2)).unwrap();
        check("a block appended");
        assert!(cache.kept.lock().len() == 2, "script 2 passed 64 entries");
        assert!(matches!(
            cache.kept.lock().peek(&scripts[0]),
            Some(Kept::Hashed(Hashed { entries: 240, .. }))
        ));

        // A reorg: block 2 is replaced by one of another size.
        w.undo_tip().unwrap();
        check("block 2 undone");
        let b2b = block(b1.hash, 22, 7);
        w.apply(std::slice::from_ref(&b2b)).unwrap();
        check("another block 2");

        // Refused at the limit, kept or not.
        let entries = from_scratch(&store, &mempool, &scripts[0]).0;
        assert!(matches!(
            cache.status(&store, &mempool, &scripts[0], entries),
            Err(HistoryError::TooLarge)
        ));
        assert!(cache
            .status(&store, &mempool, &scripts[0], entries + 1)
            .is_ok());
    }

    #[test]
    fn a_refusal_is_remembered_while_the_history_can_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mempool = RwLock::new(Mempool::default());
        let cache = StatusCache::new(10);
        let script = ScriptHash::of_script(&[1]).hashx();
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        let g = block(BlockHash([0; 32]), 0, 1);
        let b1 = block(g.hash, 1, 150);
        let b2 = block(b1.hash, 2, 90);
        w.apply(&[g, b1, b2]).unwrap();
        let refused = |limit| {
            matches!(
                cache.status(&store, &mempool, &script, limit),
                Err(HistoryError::TooLarge)
            )
        };
        assert!(refused(200));
        assert!(matches!(
            cache.kept.lock().peek(&script),
            Some(Kept::Refused { entries: 200, .. })
        ));
        assert!(
            refused(200) && refused(100),
            "at the limit or below: refused"
        );
        // A larger limit reads it and keeps its state instead.
        let full = from_scratch(&store, &mempool, &script);
        assert_eq!(cache.status(&store, &mempool, &script, 1000).unwrap(), full);
        assert!(matches!(
            cache.kept.lock().peek(&script),
            Some(Kept::Hashed(_))
        ));
        assert!(refused(200));
        // Refused again from scratch, then a reorg makes the history shorter than the limit.
        cache.kept.lock().clear();
        assert!(refused(200));
        w.undo_tip().unwrap();
        let shorter = from_scratch(&store, &mempool, &script);
        assert_eq!(shorter.0, 150);
        assert_eq!(
            cache.status(&store, &mempool, &script, 200).unwrap(),
            shorter
        );
    }
}
