//! The UTXO prefetch stage of the initial sync: between fetching a batch and writing it, reads
//! the outputs its inputs spend from the store, in key order, on its own thread.
//!
//! On a big chain most of the writer's time went to these lookups, one random read per input
//! while the other core idled. Here they run one batch ahead of the writer, sorted so one
//! iterator sweeps the `utxo` keys forward. Only outputs already committed are looked up:
//! outputs of batches still in flight (fetched here, not yet committed by the writer) are left
//! to the writer's staged set, since a store read for them could return a different output that
//! shares the key prefix.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::coin::ParsedBlock;
use crate::index::fetch::FetchedBatch;
pub(crate) use crate::index::fetch::Found;
use crate::store::{utxo_order, Store, StoreError};
use crate::types::{OutPoint, Txid};

pub(crate) struct Prefetcher {
    store: Arc<Store>,
    /// Blocks passed on but maybe not committed yet (the writer stages many between commits
    /// during the initial sync): the tx count after each, and its transactions.
    in_flight: VecDeque<(u64, Vec<Txid>)>,
    /// The transactions of `in_flight`, for a quick check per input.
    uncommitted: HashSet<Txid>,
    /// Tx count after the last batch seen.
    tx_count: u64,
    /// The prefetch looks up the spent outputs of transactions numbered below this (every batch
    /// up to it is committed); those of later ones are left to the writer.
    looked_up_below: u64,
    /// Threads reading at once (see [`Store::lookup_spent_utxos`]).
    readers: usize,
}

impl Prefetcher {
    pub(crate) fn new(store: Arc<Store>, readers: usize) -> Prefetcher {
        let tx_count = store.tx_count();
        Prefetcher {
            store,
            in_flight: VecDeque::new(),
            uncommitted: HashSet::new(),
            tx_count,
            looked_up_below: tx_count,
            readers,
        }
    }

    /// Reads the committed outputs that `blocks` spend. Blocks must follow the previous call's.
    pub(crate) fn prefetch(&mut self, blocks: &[ParsedBlock]) -> Result<Found, StoreError> {
        // Whatever the writer committed is visible in the store now (the tip moves after the
        // write), so its outputs can be read there.
        let committed = self.store.tx_count();
        while let Some((end, _)) = self.in_flight.front() {
            if *end > committed {
                break;
            }
            let (end, txids) = self.in_flight.pop_front().expect("front exists");
            self.looked_up_below = end;
            for txid in &txids {
                self.uncommitted.remove(txid);
            }
        }
        // A block at a time: the writer commits at block boundaries, and the spends it leaves
        // to the writer after a commit are kept there until the batches read after it come.
        for block in blocks {
            let txids: Vec<Txid> = block.txs.iter().map(|t| t.txid).collect();
            self.tx_count += txids.len() as u64;
            self.uncommitted.extend(txids.iter().copied());
            self.in_flight.push_back((self.tx_count, txids));
        }

        let mut wanted: Vec<OutPoint> = blocks
            .iter()
            .flat_map(|b| &b.txs)
            .flat_map(|tx| &tx.inputs)
            .filter(|op| !self.uncommitted.contains(&op.txid))
            .copied()
            .collect();
        wanted.sort_unstable_by_key(utxo_order);
        wanted.dedup();
        let stored = self.store.lookup_spent_utxos(&wanted, self.readers)?;
        Ok(wanted
            .into_iter()
            .zip(stored)
            .filter_map(|(op, u)| Some((op, u?)))
            .collect())
    }
}

/// Passes fetched batches on with their spent outputs read ahead, in order, until the input
/// ends, an error, or the receiver hangs up.
pub(crate) async fn prefetch_stage(
    prefetcher: Prefetcher,
    mut input: mpsc::Receiver<anyhow::Result<FetchedBatch>>,
    out: mpsc::Sender<anyhow::Result<FetchedBatch>>,
) {
    let mut prefetcher = Some(prefetcher);
    while let Some(batch) = input.recv().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        let Some(mut p) = prefetcher.take() else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || {
            let mut batch = batch;
            let found = p.prefetch(&batch.blocks);
            let looked_up_below = p.looked_up_below;
            (
                p,
                found.map(|f| {
                    batch.found = f;
                    batch.looked_up_below = looked_up_below;
                    batch
                }),
            )
        })
        .await;
        let (p, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                let _ = out
                    .send(Err(anyhow::anyhow!("UTXO prefetch failed: {e}")))
                    .await;
                return;
            }
        };
        prefetcher = Some(p);
        let failed = result.is_err();
        if out.send(result.map_err(Into::into)).await.is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::{ParsedOutput, ParsedTx};
    use crate::index::test_chain::{block, open_store as open};
    use crate::index::writer::Writer;
    use crate::types::{BlockHash, ScriptHash};

    fn tx(tag: u8, inputs: Vec<OutPoint>, outputs: usize) -> ParsedTx {
        ParsedTx {
            txid: Txid(crate::types::sha256d(&[tag, 0x77])),
            inputs,
            outputs: (0..outputs)
                .map(|i| ParsedOutput {
                    value: 1000 + i as u64,
                    scripthash: Some(ScriptHash::of_script(&[tag, i as u8])),
                })
                .collect(),
            vsize: 100,
            keva: None,
        }
    }

    fn op(t: &ParsedTx, vout: u32) -> OutPoint {
        OutPoint { txid: t.txid, vout }
    }

    /// Genesis, then block 1 with a coinbase of three outputs; returns both and the coinbase.
    fn committed_chain(store: &Arc<Store>) -> (Vec<ParsedBlock>, ParsedTx) {
        let g = block(BlockHash([0; 32]), 0, vec![tx(0, vec![], 1)]);
        let cb = tx(1, vec![], 3);
        let b1 = block(g.hash, 1, vec![cb.clone()]);
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        w.apply(&[g.clone(), b1.clone()]).unwrap();
        (vec![g, b1], cb)
    }

    #[test]
    fn reads_committed_outputs_and_leaves_in_flight_ones_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (chain, cb) = committed_chain(&store);
        let mut pre = Prefetcher::new(store.clone(), 1);

        // Block 2 spends two committed outputs and one of its own transaction's outputs.
        let t2a = tx(2, vec![op(&cb, 0), op(&cb, 2)], 2);
        let t2b = tx(3, vec![op(&t2a, 0)], 1);
        let b2 = block(chain[1].hash, 2, vec![tx(20, vec![], 1), t2a.clone(), t2b]);
        let found = pre.prefetch(std::slice::from_ref(&b2)).unwrap();
        let mut keys: Vec<_> = found.keys().copied().collect();
        keys.sort_by_key(|o| o.vout);
        assert_eq!(keys, vec![op(&cb, 0), op(&cb, 2)]);
        assert_eq!(found[&op(&cb, 2)].value, 1002);

        // Block 3 arrives before the writer commits block 2: its spend of block 2's output
        // is not read (the store does not have it yet).
        let t3 = tx(4, vec![op(&t2a, 1), op(&cb, 1)], 1);
        let b3 = block(b2.hash, 3, vec![tx(30, vec![], 1), t3]);
        let found3 = pre.prefetch(std::slice::from_ref(&b3)).unwrap();
        assert_eq!(found3.keys().copied().collect::<Vec<_>>(), vec![op(&cb, 1)]);
        // Only the spends of transactions 0 and 1 (genesis and block 1) were looked up.
        assert_eq!(pre.looked_up_below, 2);

        // The writer applies both with what was read ahead and ends where a plain apply ends.
        let mut w = Writer::new(store.clone(), 10, 1 << 20);
        w.apply_prefetched(std::slice::from_ref(&b2), found, 2)
            .unwrap();
        w.apply_prefetched(std::slice::from_ref(&b3), found3, 2)
            .unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        let plain = open(dir2.path());
        let mut w2 = Writer::new(plain.clone(), 10, 1 << 20);
        w2.apply(&chain).unwrap();
        w2.apply(&[b2, b3]).unwrap();
        assert_eq!(store.dump().unwrap(), plain.dump().unwrap());
    }

    #[test]
    fn outputs_become_readable_once_their_batch_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (chain, _) = committed_chain(&store);
        let mut pre = Prefetcher::new(store.clone(), 1);
        let t2 = tx(2, vec![], 2);
        let b2 = block(chain[1].hash, 2, vec![t2.clone()]);
        assert!(pre.prefetch(std::slice::from_ref(&b2)).unwrap().is_empty());
        // Genesis and block 1 hold transactions 0 and 1.
        assert_eq!(pre.looked_up_below, 2);
        Writer::new(store.clone(), 10, 1 << 20)
            .apply(std::slice::from_ref(&b2))
            .unwrap();

        let t3 = tx(3, vec![op(&t2, 1)], 1);
        let b3 = block(b2.hash, 3, vec![tx(30, vec![], 1), t3]);
        let found = pre.prefetch(std::slice::from_ref(&b3)).unwrap();
        assert_eq!(pre.looked_up_below, 3);
        assert_eq!(found.len(), 1);
        assert_eq!(found[&op(&t2, 1)].value, 1001);
        assert!(!pre.uncommitted.contains(&t2.txid));
    }

    #[test]
    fn a_commit_inside_a_batch_counts_from_the_block_it_ended_with() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (chain, _) = committed_chain(&store);
        let mut pre = Prefetcher::new(store.clone(), 1);
        let b2 = block(chain[1].hash, 2, vec![tx(2, vec![], 2)]);
        let b3 = block(b2.hash, 3, vec![tx(3, vec![], 2)]);
        pre.prefetch(&[b2.clone(), b3.clone()]).unwrap();
        // The writer's budget filled at block 2: it commits that block alone.
        Writer::new(store.clone(), 10, 1 << 20)
            .apply(std::slice::from_ref(&b2))
            .unwrap();
        let spends = vec![op(&b2.txs[0], 0), op(&b3.txs[0], 0)];
        let b4 = block(b3.hash, 4, vec![tx(4, spends, 1)]);
        let found = pre.prefetch(std::slice::from_ref(&b4)).unwrap();
        assert_eq!(pre.looked_up_below, 3);
        assert_eq!(
            found.keys().copied().collect::<Vec<_>>(),
            vec![op(&b2.txs[0], 0)]
        );
    }

    #[test]
    fn batched_lookups_answer_in_the_order_asked_and_miss_unknown_outpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (chain, cb) = committed_chain(&store);
        // Enough outputs that several readers share them.
        let big = tx(5, vec![], 600);
        let b2 = block(chain[1].hash, 2, vec![big.clone()]);
        Writer::new(store.clone(), 10, 1 << 20)
            .apply(std::slice::from_ref(&b2))
            .unwrap();
        let unknown = |i: u8| OutPoint {
            txid: Txid([i; 32]),
            vout: 0,
        };
        let mut asked = vec![op(&cb, 2), unknown(9), op(&cb, 0), op(&cb, 1)];
        // Out of key order, with unknown outpoints among them.
        for v in (0..600).rev() {
            asked.push(op(&big, v));
            if v % 50 == 0 {
                asked.push(unknown(v as u8 / 50 + 10));
            }
        }
        let one_by_one: Vec<_> = asked
            .iter()
            .map(|o| store.lookup_spent_utxo(o).unwrap())
            .collect();
        assert_eq!(one_by_one.iter().filter(|u| u.is_none()).count(), 13);
        assert_eq!(one_by_one[0].unwrap().value, 1002);
        for readers in [1, 2, 16] {
            assert_eq!(
                store.lookup_spent_utxos(&asked, readers).unwrap(),
                one_by_one
            );
        }
    }
}
