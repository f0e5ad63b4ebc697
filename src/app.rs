//! The composition root: builds every component from the configuration, hands each only what it
//! needs, and runs them until asked to stop. The one place that knows them all.
//!
//! Start-up order, as ElectrumX: the store opens, the admin RPC listens (so an operator can
//! follow or stop a long initial sync), the daemon is checked, the indexer syncs; once it has
//! caught up and the mempool synced once, the client services open.

use std::sync::Arc;

use anyhow::Context;
use parking_lot::RwLock;
use tokio::sync::{broadcast, watch, Notify};
use tracing::info;

use crate::admin::AdminState;
use crate::config::{Config, Kind, Service};
use crate::daemon::{follow_tip, follow_zmq, Daemon};
use crate::index::{notarized, Indexer};
use crate::mempool::{self, Mempool};
use crate::metrics::{self, Metrics};
use crate::net;
use crate::peers::PeerManager;
use crate::protocol::{server_features, Electrum};
use crate::query::Query;
use crate::sessions::Sessions;
use crate::store::{Mode, Store};

/// Runs a whole server for `config` until `stop` turns true (SIGTERM, the admin RPC's `stop`,
/// or a test) or a component fails; the index is flushed before it returns.
pub async fn run(config: Config, stop: Arc<watch::Sender<bool>>) -> anyhow::Result<()> {
    info!(
        "Sextant {} for {} {}, index in {}",
        env!("CARGO_PKG_VERSION"),
        config.coin.name,
        config.coin.net,
        config.db_dir.display()
    );
    let store = {
        let (dir, coin, cache) = (config.db_dir.clone(), config.coin.clone(), config.cache_mb);
        tokio::task::spawn_blocking(move || Store::open(&dir, &coin, cache, Mode::Bulk)).await??
    };
    store.set_sync_flush_interval(config.sync_flush);
    let mut server_settings = config.server.clone();
    net::provide_self_signed(&mut server_settings, &config.db_dir)?;
    let store = Arc::new(store);
    match store.tip() {
        Some(t) => info!("index tip: height {} ({})", t.height, t.hash),
        None => info!("index is empty: initial sync from genesis"),
    }
    let metrics = Metrics::new();
    let daemon = Daemon::new(
        config.daemon_urls.clone(),
        config.daemon_cookie.clone(),
        metrics.clone(),
    )?;
    let stop_rx = stop.subscribe();

    let mempool = Arc::new(RwLock::new(Mempool::default()));
    let query = Arc::new(
        Query::new(store.clone(), mempool.clone())
            .with_answer_cache(config.server.response_cache_bytes),
    );
    let (notarized_tx, notarized_rx) = watch::channel(None);
    let features = serde_json::to_value(server_features(&config.server, &config.coin))?;
    let peers = Arc::new(PeerManager::new(
        config.peers.clone(),
        &config.coin,
        store.clone(),
        features,
    ));
    // Rung by a successful broadcast, so the wallet sees its transaction without a poll delay.
    let mempool_kick = Arc::new(Notify::new());
    let electrum = Arc::new(Electrum::new(
        config.server.clone(),
        config.coin.clone(),
        query.clone(),
        daemon.clone(),
        peers.clone(),
        mempool_kick.clone(),
    ));
    let sessions = Arc::new(Sessions::new(electrum.clone(), metrics.clone()));
    register_scrapers(&metrics, &store, &daemon, &peers, notarized_rx.clone());
    if let Some(addr) = config.metrics_listen {
        let listener = metrics::bind(addr)
            .await
            .with_context(|| format!("METRICS_LISTEN: cannot listen on {addr}"))?;
        tokio::spawn(metrics::serve(listener, metrics.clone(), stop_rx.clone()));
    }

    let mut indexer = Indexer::new(
        store.clone(),
        daemon.clone(),
        config.coin.clone(),
        config.reorg_limit,
        config.cache_mb,
    );
    // Cached transactions of blocks a reorg undoes are dropped.
    tokio::spawn(electrum.forget_undone(indexer.subscribe()));
    // The admin RPC listens from now on, through the initial sync, as in ElectrumX.
    let admin = Arc::new(AdminState::new(
        config.coin.clone(),
        store.clone(),
        daemon.clone(),
        stop.clone(),
        indexer.forced_reorg(),
        peers.clone(),
        notarized_rx,
        sessions.clone(),
    ));
    let rpc: Vec<&Service> = config
        .server
        .services
        .iter()
        .filter(|s| s.kind == Kind::Rpc)
        .collect();
    admin.listen(&rpc).await?;
    tokio::select! {
        r = indexer.check_daemon() => r?,
        _ = stopped(stop_rx.clone()) => return shutdown(&store),
    }

    if config.coin.notarized {
        tokio::spawn(notarized::follow(
            daemon.clone(),
            store.clone(),
            config.poll_blocks,
            notarized_tx,
            stop_rx.clone(),
        ));
    }
    indexer.set_mempool(mempool.clone());
    // New blocks are noticed at once where the daemon can tell (the poll stays as a safety net).
    tokio::spawn(follow_tip(
        daemon.clone(),
        indexer.tip_signal(),
        stop_rx.clone(),
    ));
    tokio::spawn(follow_zmq(
        daemon.clone(),
        config.zmq.clone(),
        indexer.tip_signal(),
        mempool_kick.clone(),
        stop_rx.clone(),
    ));
    let (mempool_tx, mut mempool_ready) = broadcast::channel(64);
    let mempool_task = tokio::spawn(mempool::follow(
        mempool,
        daemon.clone(),
        config.coin.chain,
        store.clone(),
        config.poll_mempool,
        indexer.subscribe(),
        mempool_kick,
        mempool_tx,
        stop_rx.clone(),
    ));
    // The client services start once the index has caught up and the mempool synced once, as
    // ElectrumX does: before that, answers would be wrong.
    let server_task = tokio::spawn({
        let index_events = indexer.subscribe();
        let stop_rx = stop_rx.clone();
        let settings = server_settings;
        async move {
            if mempool_ready.recv().await.is_err() {
                return Ok(());
            }
            let mempool_events = mempool_ready.resubscribe();
            tokio::spawn(peers.run(stop_rx.clone()));
            let _running = sessions
                .start(index_events, mempool_events, stop_rx.clone())
                .await?;
            net::serve(&settings, sessions, stop_rx).await
        }
    });

    let poll = config.poll_blocks;
    let indexer_rx = stop_rx.clone();
    let mut indexed = tokio::spawn(async move { indexer.run(indexer_rx, poll).await });
    let mut server_task = server_task;
    let result = tokio::select! {
        r = &mut indexed => r?.context("indexer stopped"),
        r = &mut server_task => {
            // The service failed (a port in use, say): stop the indexer at a batch boundary,
            // then flush.
            let _ = stop.send(true);
            let served = r?.context("Electrum service failed");
            indexed.await??;
            served
        }
    };
    let _ = stop.send(true);
    mempool_task.abort();
    server_task.abort();
    shutdown(&store)?;
    result
}

/// The state gauges, read at scrape time.
fn register_scrapers(
    metrics: &Metrics,
    store: &Arc<Store>,
    daemon: &Daemon,
    peers: &Arc<PeerManager>,
    notarized: watch::Receiver<notarized::Notarized>,
) {
    let (store, daemon, peers) = (store.clone(), daemon.clone(), peers.clone());
    metrics.on_scrape(move |s| {
        s.heights(store.tip().map(|t| t.height.0), daemon.cached_height());
        s.db_size(store.disk_size());
        s.notarized_height(notarized.borrow().map(|(h, _)| h.0));
        let c = peers.counts();
        s.peers(c.good, c.stale, c.never, c.bad);
    });
}

fn shutdown(store: &Store) -> anyhow::Result<()> {
    info!("flushing the index and exiting");
    store.stop_background_work();
    store.flush()?;
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
