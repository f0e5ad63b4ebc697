//! The indexer: initial sync from genesis, following the tip, and reorgs.

pub mod fetch;
pub mod notarized;
pub(crate) mod prefetch;
mod progress;
mod spenders;
#[cfg(test)]
pub(crate) mod test_chain;
pub mod undo;
pub mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{info, warn};

use crate::coin::Coin;
use crate::daemon::Daemon;
use crate::mempool::Mempool;
use crate::store::{Mode, Store, StoreError, Tip};
use crate::types::{HashX, Height, OutPoint, Txid};
use progress::{format_duration, Progress, SizeHint};
use writer::{WriteError, Writer};

/// What listeners hear after each commit: the new tip and the scripts whose history changed.
#[derive(Clone, Debug)]
pub struct IndexEvent {
    pub tip: Option<Tip>,
    pub touched: Arc<Vec<HashX>>,
    /// Outpoints the blocks (or their undoing) funded or spent, and those of mempool
    /// transactions that left with them: for outpoint subscriptions.
    pub outpoints: Arc<Vec<OutPoint>>,
    /// True when blocks were removed by a reorg.
    pub reorg: bool,
    /// The transactions of the blocks a reorg removed (caches of confirmed transactions
    /// drop them).
    pub undone: Arc<Vec<Txid>>,
}

/// Forced reorgs asked for by the admin RPC's `reorg` (ElectrumX's `force_chain_reorg`): the
/// indexer undoes that many blocks at its next pass, then syncs them again from the daemon.
#[derive(Clone)]
pub(crate) struct ForcedReorg {
    inner: Arc<ForcedInner>,
}

struct ForcedInner {
    pending: parking_lot::Mutex<Option<u32>>,
    wake: tokio::sync::Notify,
    caught_up: std::sync::atomic::AtomicBool,
    reorg_limit: u32,
}

/// Why a forced reorg was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ForcedReorgError {
    #[error("still catching up with daemon")]
    CatchingUp,
    #[error("cannot reorg {count} blocks: undo information is kept for {limit} (REORG_LIMIT)")]
    TooDeep { count: u32, limit: u32 },
}

impl ForcedReorg {
    fn new(reorg_limit: u32) -> ForcedReorg {
        ForcedReorg {
            inner: Arc::new(ForcedInner {
                pending: parking_lot::Mutex::new(None),
                wake: tokio::sync::Notify::new(),
                caught_up: std::sync::atomic::AtomicBool::new(false),
                reorg_limit,
            }),
        }
    }

    /// Whether a reorg of `count` blocks would be accepted now: not before the first catch-up
    /// (as in ElectrumX), nor deeper than the reorg limit.
    pub(crate) fn check(&self, count: u32) -> Result<(), ForcedReorgError> {
        use std::sync::atomic::Ordering;
        if !self.inner.caught_up.load(Ordering::Acquire) {
            return Err(ForcedReorgError::CatchingUp);
        }
        let limit = self.inner.reorg_limit;
        if count > limit {
            return Err(ForcedReorgError::TooDeep { count, limit });
        }
        Ok(())
    }

    /// Schedules a reorg of `count` blocks, if [`check`](Self::check) allows it.
    pub(crate) fn request(&self, count: u32) -> Result<(), ForcedReorgError> {
        self.check(count)?;
        *self.inner.pending.lock() = Some(count);
        self.inner.wake.notify_one();
        Ok(())
    }

    fn take(&self) -> Option<u32> {
        self.inner.pending.lock().take()
    }
}

/// The highest of the top `count` blocks (the genesis block excepted) that has no undo record,
/// so that a forced reorg of `count` could not take it back.
pub(crate) fn missing_undo(store: &Store, count: u32) -> Result<Option<Height>, StoreError> {
    let Some(tip) = store.tip() else {
        return Ok(None);
    };
    let depth = count.min(tip.height.0);
    for h in (tip.height.0 + 1 - depth..=tip.height.0).rev() {
        if store.undo(Height(h))?.is_none() {
            return Ok(Some(Height(h)));
        }
    }
    Ok(None)
}

/// Why a sync pass stopped early.
enum Stop {
    Shutdown,
    /// The daemon's chain no longer contains our tip: look for the fork point.
    Diverged,
}

pub struct Indexer {
    store: Arc<Store>,
    daemon: Daemon,
    coin: Coin,
    reorg_limit: u32,
    writer: Arc<Mutex<Writer>>,
    events: broadcast::Sender<IndexEvent>,
    caught_up_once: bool,
    daemon_behind: bool,
    /// Transactions indexed before the first catch-up, to decide whether to compact.
    initial_txs: u64,
    /// The mempool mirror, updated under its write lock with each commit (see
    /// [`Mempool::blocks_connected`]).
    mempool: Option<Arc<RwLock<Mempool>>>,
    forced: ForcedReorg,
    /// The spender index is complete (a database from before it is built up first).
    spenders_built: bool,
    /// Rung when the daemon's tip may have changed (long-poll, ZMQ): look now, not at the poll.
    tip_changed: Arc<tokio::sync::Notify>,
}

/// Threads reading a new block's spent outputs once the sync is done: its few thousand lookups
/// land all over a UTXO set the page cache no longer holds, and wait on the disk in parallel
/// rather than one after another. (The initial sync reads on one thread beside the writer: its
/// sorted sweeps are CPU-bound.)
const LIVE_UTXO_READERS: usize = 16;
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const COMPACT_AFTER_TXS: u64 = 1_000_000;
/// Level-0 files that make a start compact even after a short catch-up (see `L0_FOLLOW`).
const COMPACT_AFTER_L0_FILES: u64 = 20;

impl Indexer {
    pub fn new(
        store: Arc<Store>,
        daemon: Daemon,
        coin: Coin,
        reorg_limit: u32,
        cache_mb: usize,
    ) -> Indexer {
        // CACHE_MB is shared: an eighth for blocks not yet written (their rows are copied and
        // sorted once more at commit), a quarter for RocksDB's write buffers, half for its block
        // cache. Fetch and parse buffers come on top.
        let flush_bytes = (cache_mb.max(16) << 20) / 8;
        let writer = Writer::new(store.clone(), reorg_limit, flush_bytes);
        let (events, _) = broadcast::channel(64);
        Indexer {
            store,
            daemon,
            coin,
            reorg_limit,
            writer: Arc::new(Mutex::new(writer)),
            events,
            caught_up_once: false,
            daemon_behind: false,
            initial_txs: 0,
            mempool: None,
            forced: ForcedReorg::new(reorg_limit),
            spenders_built: false,
            tip_changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// What to ring (`notify_one`) when the daemon's tip may have changed: the follower then
    /// syncs at once instead of at its next poll.
    pub fn tip_signal(&self) -> Arc<tokio::sync::Notify> {
        self.tip_changed.clone()
    }

    /// Commits blocks under this mempool's write lock and drops what they confirm from it in the
    /// same step, so readers never see a transaction both confirmed and unconfirmed.
    pub fn set_mempool(&mut self, mempool: Arc<RwLock<Mempool>>) {
        self.mempool = Some(mempool);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<IndexEvent> {
        self.events.subscribe()
    }

    /// A handle for asking this indexer to undo and redo blocks while it runs.
    pub(crate) fn forced_reorg(&self) -> ForcedReorg {
        self.forced.clone()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Refuses a daemon that serves another chain than the coin file describes. Komodo smart
    /// chains share KMD's genesis, so for them the daemon's `getinfo.name` must match too.
    pub async fn check_daemon(&self) -> anyhow::Result<()> {
        if let Some(expected) = &self.coin.chain_name {
            let info: serde_json::Value = self.daemon.call("getinfo", vec![]).await?;
            let name = info.get("name").and_then(|n| n.as_str()).unwrap_or("");
            if !name.eq_ignore_ascii_case(expected) {
                bail!(
                    "the daemon at {} runs chain {name:?}, but COIN={} expects {expected:?}; \
                     point DAEMON_URL at that chain's daemon (its rpcport is in \
                     ~/.komodo/{expected}/{expected}.conf)",
                    self.daemon.url(),
                    self.coin.name
                );
            }
        }
        let genesis = self.daemon.block_hashes(&[Height(0)]).await?[0];
        if genesis != self.coin.genesis_hash {
            bail!(
                "the daemon at {} serves a chain with genesis {genesis}, but {} {} has genesis {}; \
                 check COIN, NET and DAEMON_URL",
                self.daemon.url(),
                self.coin.name,
                self.coin.net,
                self.coin.genesis_hash
            );
        }
        Ok(())
    }

    /// Syncs to the daemon's tip, then follows it until `shutdown` turns true.
    pub async fn run(
        &mut self,
        mut shutdown: watch::Receiver<bool>,
        poll: Duration,
    ) -> anyhow::Result<()> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            self.sync(&mut shutdown).await?;
            if *shutdown.borrow() {
                return Ok(());
            }
            self.forced
                .inner
                .caught_up
                .store(self.caught_up_once, std::sync::atomic::Ordering::Release);
            if let Some(count) = self.forced.take() {
                self.force_reorg(count).await?;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
                _ = self.forced.inner.wake.notified() => {}
                _ = self.tip_changed.notified() => {}
            }
        }
    }

    /// One pass: handle a reorg if the daemon left our tip, then index up to its tip.
    pub async fn sync(&mut self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        if !self.spenders_built {
            let chain = self.coin.chain;
            if !spenders::build(&self.store, &self.daemon, chain, shutdown).await? {
                return Ok(());
            }
            self.spenders_built = true;
        }
        loop {
            let info = tokio::select! {
                info = self.daemon.blockchain_info() => info?,
                _ = shutdown.changed() => return Ok(()),
            };
            let daemon_height = Height(info.blocks);
            match self.catch_up(daemon_height, shutdown).await? {
                None => break,
                Some(Stop::Shutdown) => return Ok(()),
                Some(Stop::Diverged) => self.reorg(daemon_height).await?,
            }
        }
        if !self.caught_up_once {
            self.caught_up_once = true;
            self.finish_initial_sync().await?;
        }
        Ok(())
    }

    async fn finish_initial_sync(&mut self) -> anyhow::Result<()> {
        let tip = self.store.tip();
        if self.store.mode() == Mode::Bulk {
            let store = self.store.clone();
            // A big bulk load leaves many overlapping files; compact them once rather than
            // slowing every later read, but beside serving, not before it. A start after a
            // shutdown stopped that compaction finds it still pending.
            let big_load = self.initial_txs >= COMPACT_AFTER_TXS;
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                if big_load
                    || store.level0_files() >= COMPACT_AFTER_L0_FILES
                    || store.compaction_pending()?
                {
                    store.compact_later()?;
                } else {
                    store.set_mode(Mode::Follow)?;
                }
                Ok(())
            })
            .await??;
        }
        self.writer.lock().unwrap().collect_touched(true);
        let _ = self.events.send(IndexEvent {
            tip,
            touched: Arc::new(Vec::new()),
            outpoints: Arc::new(Vec::new()),
            reorg: false,
            undone: Arc::default(),
        });
        match tip {
            Some(t) => info!(
                "caught up with the daemon at height {} ({} transactions, {:.1} MB on disk)",
                t.height,
                t.tx_count,
                self.store.disk_size() as f64 / 1e6
            ),
            None => info!("caught up with the daemon (empty chain)"),
        }
        Ok(())
    }

    /// Indexes blocks above our tip up to `daemon_height`. `None` when done.
    async fn catch_up(
        &mut self,
        daemon_height: Height,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Stop>> {
        let tip = self.store.tip();
        if let Some(t) = tip {
            let common = t.height.min(daemon_height);
            let theirs = self.daemon.block_hashes(&[common]).await?[0];
            if Some(theirs) != self.store.block_hash(common)? {
                return Ok(Some(Stop::Diverged));
            }
            if t.height > daemon_height {
                // Same chain, daemon behind (restarted, resyncing, or a lagging failover URL):
                // keep our blocks and wait rather than undo valid work.
                if !self.daemon_behind {
                    self.daemon_behind = true;
                    warn!(
                        "the daemon is at height {daemon_height}, behind our index at {}; waiting \
                         for it to catch up",
                        t.height
                    );
                }
                return Ok(None);
            }
            self.daemon_behind = false;
        }
        let from = tip.map_or(Height(0), |t| Height(t.height.0 + 1));
        if from > daemon_height {
            return Ok(None);
        }
        self.writer.lock().unwrap().set_daemon_height(daemon_height);
        let start_height = from;
        let start_txs = self.store.tx_count();
        let started = Instant::now();
        let mut progress = Progress::new(started, start_height, start_txs);
        let mut last_log = Instant::now();
        let (fetched_tx, fetched_rx) = mpsc::channel(2);
        let fetcher = tokio::spawn(fetch::fetch_range(
            self.daemon.clone(),
            self.coin.chain,
            from,
            daemon_height,
            fetched_tx,
        ));
        let _abort_fetch = AbortOnDrop(fetcher);
        let (tx, mut rx) = mpsc::channel(2);
        let prefetcher = tokio::spawn(prefetch::prefetch_stage(
            prefetch::Prefetcher::new(
                self.store.clone(),
                if self.caught_up_once {
                    LIVE_UTXO_READERS
                } else {
                    1
                },
            ),
            fetched_rx,
            tx,
        ));
        let _abort_prefetch = AbortOnDrop(prefetcher);
        let bulk = !self.caught_up_once;
        let mut last_commit = Instant::now();
        let stop = loop {
            let batch = tokio::select! {
                b = rx.recv() => b,
                _ = shutdown.changed() => break Ok(Some(Stop::Shutdown)),
            };
            let Some(batch) = batch else { break Ok(None) };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            let (writer, store, mempool) = (
                self.writer.clone(),
                self.store.clone(),
                self.mempool.clone(),
            );
            // Nobody is served yet and the mempool is not followed: the initial sync commits
            // only when the writer's budget fills, so that outputs spent within it are never
            // written (nor deleted) at all, or when SYNC_FLUSH_INTERVAL says a crash may not
            // lose more.
            let commit_now = bulk && last_commit.elapsed() >= self.store.sync_flush_interval();
            if commit_now {
                last_commit = Instant::now();
            }
            let result = tokio::task::spawn_blocking(move || {
                if bulk {
                    let mut writer = writer.lock().unwrap();
                    writer.stage_prefetched(&batch.blocks, batch.found, batch.looked_up_below)?;
                    if commit_now {
                        writer.commit()?;
                    }
                    return Ok(None);
                }
                let mut mempool = mempool.as_ref().map(|m| m.write());
                let mut applied = writer.lock().unwrap().apply_prefetched(
                    &batch.blocks,
                    batch.found,
                    batch.looked_up_below,
                )?;
                let mut outpoints = Vec::new();
                block_outpoints(&batch.blocks, &mut outpoints);
                if let Some(m) = mempool.as_mut() {
                    let (hashxs, ops) = m.blocks_connected(&batch.blocks, &store)?;
                    applied.touched.extend(hashxs);
                    outpoints.extend(ops);
                }
                Ok::<_, WriteError>(Some((applied, outpoints)))
            })
            .await;
            let result = match result {
                Ok(r) => r,
                Err(e) => break Err(e.into()),
            };
            match result {
                Ok(Some((applied, outpoints))) => self.notify(applied, outpoints),
                Ok(None) => {}
                Err(WriteError::NotOnTip { height, .. }) => {
                    info!("the daemon's chain changed under us at height {height}");
                    break Ok(Some(Stop::Diverged));
                }
                Err(e) => break Err(e.into()),
            }
            if last_log.elapsed() >= PROGRESS_EVERY {
                last_log = Instant::now();
                self.log_progress(&mut progress, daemon_height);
            }
        };
        if bulk {
            // What was staged is a consistent prefix of the chain whatever stopped the loop (a
            // block off our tip is refused before it changes anything; a failed block drops
            // what was staged), so it is committed even when an error ends the sync: the writer
            // and the store agree again, and a restart continues from here rather than
            // fetching up to a budget's worth of blocks again.
            let writer = self.writer.clone();
            tokio::task::spawn_blocking(move || writer.lock().unwrap().commit()).await??;
        }
        let stop = stop?;
        if stop.is_some() {
            return Ok(stop);
        }
        let tip = self.store.tip();
        if !self.caught_up_once {
            self.initial_txs += self.store.tx_count() - start_txs;
        }
        if let Some(t) = tip {
            let blocks = t.height.0 + 1 - start_height.0;
            if !self.caught_up_once || blocks > 1 {
                info!(
                    "indexed {blocks} blocks to height {} in {:.1}s",
                    t.height,
                    started.elapsed().as_secs_f64()
                );
            } else {
                info!(
                    "new block {} at height {} ({} transactions, indexed in {:.0} ms)",
                    t.hash,
                    t.height,
                    t.tx_count - start_txs,
                    started.elapsed().as_secs_f64() * 1000.0
                );
            }
        }
        Ok(None)
    }

    fn notify(&self, applied: writer::Applied, outpoints: Vec<OutPoint>) {
        if self.caught_up_once {
            let _ = self.events.send(IndexEvent {
                tip: applied.tip,
                touched: Arc::new(applied.touched),
                outpoints: Arc::new(outpoints),
                reorg: false,
                undone: Arc::default(),
            });
        }
    }

    /// Logs how far the sync is and where memory goes.
    fn log_progress(&self, progress: &mut Progress, target: Height) {
        // The writer's tip: the initial sync commits only every few hundred thousand
        // transactions.
        let (tip, staged) = {
            let writer = self.writer.lock().unwrap();
            (writer.tip(), writer.staged_bytes())
        };
        let Some(tip) = tip else { return };
        let [height, txs] = self.coin.tx_count_hint;
        let hint = SizeHint {
            height,
            txs,
            tx_per_block: self.coin.tx_per_block_hint,
        };
        let estimate = progress.look(Instant::now(), &tip, target, hint);
        // Where the memory goes, so an operator sizing CACHE_MB sees what each share holds.
        let mem = self.store.memory_use();
        let mb = |bytes: u64| bytes >> 20;
        info!(
            "sync: height {}/{} ({:.1}%), {:.0} blocks/s, {:.0} tx/s, {} transactions, ETA {}; \
             memory {} MB resident: block cache {} MB, write buffers {} MB, staged blocks {} MB",
            tip.height,
            target,
            100.0 * tip.height.0 as f64 / target.0.max(1) as f64,
            estimate.blocks_per_s,
            estimate.tx_per_s,
            tip.tx_count,
            estimate
                .eta
                .map_or_else(|| "unknown".into(), format_duration),
            crate::metrics::resident_bytes().map_or(0, mb),
            mb(mem.block_cache + mem.table_readers),
            mb(mem.write_buffers),
            mb(staged as u64),
        );
    }

    /// Finds where the daemon's chain forks from ours and rolls our blocks back to it.
    async fn reorg(&mut self, daemon_height: Height) -> anyhow::Result<()> {
        let tip = self.store.tip().context("reorg with an empty index")?;
        let fork = self.fork_point(tip.height.min(daemon_height)).await?;
        let depth = match fork {
            Some(f) => tip.height.0 - f.0,
            None => tip.height.0 + 1,
        };
        if depth > self.reorg_limit {
            bail!(
                "the daemon's chain forks {depth} blocks below our tip {}, deeper than REORG_LIMIT \
                 ({}); delete DB_DIRECTORY and reindex",
                tip.height,
                self.reorg_limit
            );
        }
        warn!(
            "chain reorganisation: undoing {depth} block(s) from height {} back to {}",
            tip.height,
            fork.map_or("before genesis".to_string(), |f| f.to_string())
        );
        self.undo_blocks(depth).await
    }

    /// The admin RPC's `reorg`: undoes `count` blocks (never the genesis block); the next
    /// pass fetches them again from the daemon.
    async fn force_reorg(&mut self, count: u32) -> anyhow::Result<()> {
        let Some(tip) = self.store.tip() else {
            return Ok(());
        };
        let depth = count.min(tip.height.0);
        let store = self.store.clone();
        let missing = tokio::task::spawn_blocking(move || missing_undo(&store, depth)).await??;
        if let Some(h) = missing {
            warn!("forced reorg of {depth} block(s) skipped: no undo information for height {h}");
            return Ok(());
        }
        warn!(
            "forced reorg: undoing {depth} block(s) from height {}",
            tip.height
        );
        self.undo_blocks(depth).await
    }

    /// Rolls the top `depth` blocks back and tells listeners.
    async fn undo_blocks(&mut self, depth: u32) -> anyhow::Result<()> {
        let (writer, store, mempool) = (
            self.writer.clone(),
            self.store.clone(),
            self.mempool.clone(),
        );
        type Undone = (Vec<HashX>, Vec<OutPoint>, Vec<Txid>);
        let (touched, outpoints, undone) =
            tokio::task::spawn_blocking(move || -> anyhow::Result<Undone> {
                // As for new blocks: mempool transactions spending outputs of the undone blocks
                // leave the mempool in the same step (the daemon's next snapshot brings them back).
                let mut mempool = mempool.as_ref().map(|m| m.write());
                let mut w = writer.lock().unwrap();
                let (mut touched, mut outpoints, mut undone) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..depth {
                    let u = w.undo_tip()?;
                    touched.extend(u.touched);
                    undone.extend(u.txids);
                    outpoints.extend(u.outpoints);
                }
                if let Some(m) = mempool.as_mut() {
                    let (hashxs, ops) = m.blocks_connected(&[], &store)?;
                    touched.extend(hashxs);
                    outpoints.extend(ops);
                }
                touched.sort_unstable();
                touched.dedup();
                Ok((touched, outpoints, undone))
            })
            .await??;
        if self.caught_up_once {
            let _ = self.events.send(IndexEvent {
                tip: self.store.tip(),
                touched: Arc::new(touched),
                outpoints: Arc::new(outpoints),
                reorg: true,
                undone: Arc::new(undone),
            });
        }
        Ok(())
    }

    /// The highest height at or below `start` where our block hash equals the daemon's.
    async fn fork_point(&self, start: Height) -> anyhow::Result<Option<Height>> {
        let mut top = start.0 as i64;
        let mut window = 1i64;
        while top >= 0 {
            let low = (top - window + 1).max(0);
            let heights: Vec<Height> = (low..=top).map(|h| Height(h as u32)).collect();
            let theirs = self.daemon.block_hashes(&heights).await?;
            for (h, their) in heights.iter().zip(&theirs).rev() {
                if self.store.block_hash(*h)? == Some(*their) {
                    return Ok(Some(*h));
                }
            }
            top = low - 1;
            window *= 2;
        }
        Ok(None)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The outpoints blocks spend and fund (spendable outputs only, as ElectrumX counts them).
fn block_outpoints(blocks: &[crate::coin::ParsedBlock], out: &mut Vec<OutPoint>) {
    for tx in blocks.iter().flat_map(|b| &b.txs) {
        out.extend_from_slice(&tx.inputs);
        out.extend(
            tx.outputs
                .iter()
                .enumerate()
                .filter(|(_, o)| o.scripthash.is_some())
                .map(|(vout, _)| OutPoint {
                    txid: tx.txid,
                    vout: vout as u32,
                }),
        );
    }
}
