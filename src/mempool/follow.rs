//! The mempool follower: keeps the mirror in step with the daemon, refreshing on a timer (a
//! cheap `getmempoolinfo` look, a listing when it moved or at least every `LIST_EVERY`), at once
//! after each block (the indexer already took the block's transactions out in its commit; the
//! refresh only checks that the daemon's mempool has the mirror's size, or lists it) and after
//! a broadcast through this server or a ZMQ message (so a wallet sees its transaction at once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use super::{refresh, Look, Mempool, MempoolDelta};
use crate::coin::Chain;
use crate::daemon::Daemon;
use crate::store::Store;

/// Follows the daemon's mempool until `stop` turns true or `blocks` closes.
///
/// `blocks` carries the indexer's events (any type: only their arrival matters). The first one
/// marks the end of the initial sync, before which the UTXO set is incomplete and nothing is
/// fetched. Every applied refresh is sent on `deltas`; `kick` (rung with `notify_one`, so a kick
/// during a refresh is kept) asks for a refresh now. The indexer must update the mirror with
/// each commit ([`Mempool::blocks_connected`]): blocks do not make this follower resolve every
/// input again.
#[allow(clippy::too_many_arguments)]
pub async fn follow<E: Clone>(
    mempool: Arc<RwLock<Mempool>>,
    daemon: Daemon,
    chain: Chain,
    store: Arc<Store>,
    poll: Duration,
    mut blocks: broadcast::Receiver<E>,
    kick: Arc<Notify>,
    deltas: broadcast::Sender<MempoolDelta>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        e = blocks.recv() => if matches!(e, Err(RecvError::Closed)) { return },
        _ = stop.changed() => return,
    }
    let mut confirmed_changed = true;
    let mut look = Look::List;
    loop {
        let started = Instant::now();
        match refresh(&mempool, &daemon, chain, &store, confirmed_changed, look).await {
            Ok(d) if d.applied => {
                // What a refresh costs is what decides how short DAEMON_POLL_INTERVAL_MEMPOOL
                // can be (bench/mempool.py reads this).
                debug!(
                    "mempool refresh: {:.1} ms",
                    started.elapsed().as_secs_f64() * 1000.0
                );
                if d.added + d.removed > 0 {
                    info!(
                        "mempool: {} txs (+{} -{})",
                        mempool.read().len(),
                        d.added,
                        d.removed
                    );
                }
                confirmed_changed = false;
                let _ = deltas.send(d);
            }
            // The daemon has a block the index has not stored yet: wait for it.
            Ok(_) => {}
            Err(e) => warn!("mempool refresh failed: {e}"),
        }
        look = tokio::select! {
            _ = tokio::time::sleep(poll) => Look::Poll,
            _ = kick.notified() => Look::List,
            e = blocks.recv() => match e {
                Err(RecvError::Closed) => return,
                // Events were missed: whatever they were, look in full.
                Err(RecvError::Lagged(_)) => Look::List,
                Ok(_) => Look::AfterBlocks,
            },
            _ = stop.changed() => return,
        };
    }
}
