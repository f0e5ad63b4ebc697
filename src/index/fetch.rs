//! The fetch pipeline: block hashes and raw blocks from the daemon in batches, several batches
//! in flight, parsed on blocking threads, delivered in height order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::coin::{Chain, ParsedBlock};
use crate::daemon::Daemon;
use crate::store::StoredUtxo;
use crate::types::{Height, OutPoint};

/// Spent outputs read ahead for a batch by the prefetch stage.
pub(crate) type Found = HashMap<OutPoint, StoredUtxo>;

/// Blocks fetched together, in height order.
pub(crate) struct FetchedBatch {
    pub blocks: Vec<ParsedBlock>,
    /// Outputs the blocks spend, read ahead by the prefetch stage (empty until then).
    pub found: Found,
    /// The prefetch stage looked up the spent outputs of transactions numbered below this; it
    /// left those of later ones, not committed when it read, to the writer.
    pub looked_up_below: u64,
}

/// Bytes of raw blocks to ask for in one `getblock` batch: big enough to amortize the round
/// trip, small enough that a few batches in flight stay well inside memory.
const TARGET_BATCH_BYTES: usize = 8 << 20;
const MAX_BATCH_BLOCKS: usize = 100;
const BATCHES_IN_FLIGHT: usize = 4;

/// Fetches and parses heights `from..=to`, sending batches in order until done, an error, or
/// the receiver hangs up.
pub(crate) async fn fetch_range(
    daemon: Daemon,
    chain: Chain,
    from: Height,
    to: Height,
    out: mpsc::Sender<anyhow::Result<FetchedBatch>>,
) {
    if from > to {
        return;
    }
    // Average raw block size seen so far: sizes the next batches. The first batches are sized
    // before any block is seen, so assume big (1 MB) blocks: overestimating costs a few round
    // trips on a small-block chain, underestimating could pull gigabytes at once on mainnet.
    let avg_size = Arc::new(AtomicUsize::new(1 << 20));
    let ranges = futures::stream::unfold(from.0, {
        let avg_size = avg_size.clone();
        move |next| {
            let avg_size = avg_size.clone();
            async move {
                if next > to.0 {
                    return None;
                }
                let n = (TARGET_BATCH_BYTES / avg_size.load(Ordering::Relaxed).max(1))
                    .clamp(1, MAX_BATCH_BLOCKS) as u32;
                let end = next.saturating_add(n - 1).min(to.0);
                Some(((next, end), end + 1))
            }
        }
    });
    let batches = ranges
        .map(|(start, end)| {
            let daemon = daemon.clone();
            let avg_size = avg_size.clone();
            async move {
                let heights: Vec<Height> = (start..=end).map(Height).collect();
                let hashes = daemon.block_hashes(&heights).await?;
                let raws = daemon.raw_blocks(&hashes).await?;
                let raw_bytes: usize = raws.iter().map(Vec::len).sum();
                avg_size.store(raw_bytes / raws.len().max(1), Ordering::Relaxed);
                let blocks = tokio::task::spawn_blocking(move || {
                    raws.iter()
                        .zip(&heights)
                        .map(|(raw, h)| {
                            chain.parse_block(raw).map_err(|e| {
                                anyhow::anyhow!("cannot parse block {h} from the daemon: {e}")
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .await??;
                for (block, expected) in blocks.iter().zip(&hashes) {
                    anyhow::ensure!(
                        block.hash == *expected,
                        "block {} hashes to {}, the daemon said {expected}",
                        start,
                        block.hash
                    );
                }
                Ok(FetchedBatch {
                    blocks,
                    found: Found::default(),
                    looked_up_below: 0,
                })
            }
        })
        .buffered(BATCHES_IN_FLIGHT);
    let mut batches = std::pin::pin!(batches);
    while let Some(batch) = batches.next().await {
        let failed = batch.is_err();
        if out.send(batch).await.is_err() || failed {
            return;
        }
    }
}
