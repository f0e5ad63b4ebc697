//! Builds the spender index of a database from before it (the schema 3 step in
//! `migrations/`): the blocks it lacks come from the daemon, by this index's own block hashes,
//! before the indexer syncs anything new. Progress is logged like the initial sync's.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::info;

use crate::coin::Chain;
use crate::daemon::Daemon;
use crate::store::Store;
use crate::types::Height;

/// Blocks asked for at once.
const BATCH: u32 = 50;
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the build to its end; `false` when `shutdown` came first (it resumes at the next start).
pub(crate) async fn build(
    store: &Arc<Store>,
    daemon: &Daemon,
    chain: Chain,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let Some(mut left) = store.spender_build()? else {
        return Ok(true);
    };
    info!(
        "building the spender index: blocks {} to {} from the daemon",
        left.next, left.to
    );
    let started = Instant::now();
    let first = left.next.0;
    let mut logged = Instant::now();
    loop {
        if *shutdown.borrow() {
            info!("spender index build paused at block {}", left.next);
            return Ok(false);
        }
        let end = left.to.0.min(left.next.0.saturating_add(BATCH - 1));
        let hashes = {
            let store = store.clone();
            let (from, to) = (left.next.0, end);
            tokio::task::spawn_blocking(move || {
                (from..=to)
                    .map(|h| {
                        store.block_hash(Height(h))?.ok_or_else(|| {
                            anyhow::anyhow!("the index has no block {h} to build spends for")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .await??
        };
        let raws = tokio::select! {
            r = daemon.raw_blocks(&hashes) => r?,
            _ = shutdown.changed() => continue,
        };
        let store2 = store.clone();
        let next = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let blocks = raws
                .iter()
                .map(|raw| chain.parse_block(raw))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("cannot parse a block from the daemon: {e}"))?;
            Ok(store2.build_spenders(&blocks)?)
        })
        .await??;
        let Some(n) = next else {
            info!(
                "spender index built: {} blocks in {:.1}s",
                left.to.0 + 1 - first,
                started.elapsed().as_secs_f64()
            );
            return Ok(true);
        };
        left = n;
        if logged.elapsed() >= PROGRESS_EVERY {
            logged = Instant::now();
            let done = left.next.0 - first;
            let total = left.to.0 + 1 - first;
            info!(
                "building the spender index: block {} of {} ({:.1}%)",
                left.next,
                left.to,
                100.0 * f64::from(done) / f64::from(total.max(1))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::coin::{CoinRegistry, ParsedBlock, ParsedOutput, ParsedTx};
    use crate::index::test_chain::block;
    use crate::index::writer::Writer;
    use crate::store::{Mode, SpenderBuild, Store};
    use crate::types::{sha256d, BlockHash, Height, OutPoint, ScriptHash, Txid};

    fn open(dir: &std::path::Path) -> Store {
        let coin = CoinRegistry::embedded()
            .unwrap()
            .lookup("Litecoin", "regtest")
            .unwrap();
        Store::open(dir, &coin, 16, Mode::Follow).unwrap()
    }

    fn tx(tag: u8, inputs: Vec<OutPoint>) -> ParsedTx {
        ParsedTx {
            txid: Txid(sha256d(&[tag])),
            inputs,
            outputs: (0..2u8)
                .map(|i| ParsedOutput {
                    value: 10,
                    scripthash: Some(ScriptHash::of_script(&[tag, i])),
                })
                .collect(),
            vsize: 100,
            keva: None,
        }
    }

    /// Five blocks with spends across blocks, within a block, and of a coinbase.
    fn chain() -> Vec<ParsedBlock> {
        let op = |t: &ParsedTx, vout| OutPoint { txid: t.txid, vout };
        let mut blocks = vec![block(BlockHash::default(), 0, vec![tx(0, vec![])])];
        let cb1 = tx(1, vec![]);
        blocks.push(block(blocks[0].hash, 1, vec![cb1.clone()]));
        let a = tx(2, vec![op(&cb1, 0)]);
        let b = tx(3, vec![op(&a, 1)]);
        blocks.push(block(
            blocks[1].hash,
            2,
            vec![tx(20, vec![]), a.clone(), b.clone()],
        ));
        blocks.push(block(blocks[2].hash, 3, vec![tx(30, vec![])]));
        let c = tx(4, vec![op(&cb1, 1), op(&b, 0), op(&a, 0)]);
        blocks.push(block(blocks[3].hash, 4, vec![tx(40, vec![]), c]));
        blocks
    }

    #[test]
    fn a_built_index_equals_one_written_with_the_blocks() {
        let blocks = chain();
        let dir_a = tempfile::tempdir().unwrap();
        let a = std::sync::Arc::new(open(dir_a.path()));
        Writer::new(a.clone(), 10, 1).apply(&blocks).unwrap();
        assert!(a.dump().unwrap().iter().any(|(cf, _, _)| *cf == "spender"));

        let dir_b = tempfile::tempdir().unwrap();
        {
            let b = std::sync::Arc::new(open(dir_b.path()));
            Writer::new(b.clone(), 10, 1).apply(&blocks).unwrap();
            b.forget_spenders().unwrap();
        }
        // Reopened at schema 2: the upgrade notes every block as lacking its spends.
        let b = open(dir_b.path());
        assert_eq!(b.schema_version().unwrap(), crate::store::SCHEMA_VERSION);
        assert_eq!(
            b.spender_build().unwrap(),
            Some(SpenderBuild {
                next: Height(0),
                to: Height(4)
            })
        );
        assert_ne!(a.dump().unwrap(), b.dump().unwrap());
        // In two goes, as after a restart.
        assert_eq!(
            b.build_spenders(&blocks[..3]).unwrap(),
            Some(SpenderBuild {
                next: Height(3),
                to: Height(4)
            })
        );
        drop(b);
        let b = open(dir_b.path());
        assert!(b.build_spenders(&blocks[4..]).is_err(), "a gap is refused");
        assert_eq!(b.build_spenders(&blocks[3..]).unwrap(), None);
        assert_eq!(b.spender_build().unwrap(), None);
        // Row for row what the writer wrote, scratch gone.
        assert_eq!(a.dump().unwrap(), b.dump().unwrap());
    }
}
