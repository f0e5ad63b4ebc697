//! `sextant`: configured entirely by ElectrumX's environment variables.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use parking_lot::RwLock;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tracing::{error, info, warn};

use sextant::config::{Config, ProcessEnv};
use sextant::daemon::Daemon;
use sextant::electrum::admin::AdminState;
use sextant::electrum::methods::server_features;
use sextant::electrum::{self, Server, ServerSettings};
use sextant::index::{notarized, Indexer};
use sextant::mempool::{self, Mempool};
use sextant::metrics;
use sextant::net::service::Kind;
use sextant::peers::{self, PeerConfig, PeerManager};
use sextant::store::{Mode, Store};

fn main() -> ExitCode {
    let config = match Config::from_env(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let settings = match ServerSettings::from_env(&ProcessEnv) {
        Ok(s) => s.with_coin_defaults(&ProcessEnv, &config.coin),
        Err(e) => return config_error(e),
    };
    let peer_config = match PeerConfig::from_env(&ProcessEnv, &settings) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let metrics_addr = match metrics::listen_addr(&ProcessEnv) {
        Ok(a) => a,
        Err(e) => return config_error(e),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{},rocksdb=warn,jsonrpsee=warn,hyper=warn",
            config.log_level
        )))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(config, settings, peer_config, metrics_addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("sextant: {e}");
    ExitCode::from(2)
}

async fn run(
    config: Config,
    mut settings: ServerSettings,
    peer_config: PeerConfig,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
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
    let store = Arc::new(store);
    match store.tip() {
        Some(t) => info!("index tip: height {} ({})", t.height, t.hash),
        None => info!("index is empty: initial sync from genesis"),
    }
    let daemon = Daemon::new(config.daemon_urls.clone(), config.daemon_cookie.clone())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(addr) = metrics_addr {
        let listener = metrics::bind(addr)
            .await
            .with_context(|| format!("METRICS_LISTEN: cannot listen on {addr}"))?;
        tokio::spawn(metrics::serve(listener, store.clone(), stop_rx.clone()));
    }
    let stop_tx = Arc::new(stop_tx);
    let stop_tx_for_exit = stop_tx.clone();
    tokio::spawn(wait_for_signal(stop_tx));

    let mut indexer = Indexer::new(
        store.clone(),
        daemon.clone(),
        config.coin.clone(),
        config.reorg_limit,
        config.cache_mb,
    );
    // The admin RPC listens from now on, through the initial sync, as in ElectrumX; the
    // Electrum service attaches to it once it runs.
    let admin = Arc::new(
        AdminState::new(config.coin.clone(), store.clone(), daemon.clone())
            .with_stop(stop_tx_for_exit.clone())
            .with_forced_reorg(indexer.forced_reorg()),
    );
    let (rpc, client_services) = settings
        .services
        .iter()
        .cloned()
        .partition(|s| s.kind == Kind::Rpc);
    settings.services = client_services;
    admin.listen(&rpc).await?;
    tokio::select! {
        r = indexer.check_daemon() => r?,
        _ = wait_stop(stop_rx.clone()) => return shutdown(&store),
    }

    if config.coin.notarized {
        let (daemon, store, stop) = (daemon.clone(), store.clone(), stop_rx.clone());
        tokio::spawn(notarized::follow(daemon, store, config.poll_blocks, stop));
    }
    let mempool = Arc::new(RwLock::new(Mempool::default()));
    indexer.set_mempool(mempool.clone());
    let (mempool_tx, _) = broadcast::channel(64);
    // Rung by a successful broadcast, so the wallet sees its transaction without a poll delay.
    let mempool_kick = Arc::new(tokio::sync::Notify::new());
    let mut events = indexer.subscribe();
    // The Electrum service starts once the index has caught up and the mempool synced once, as
    // ElectrumX does: before that, answers would be wrong.
    let server_task = tokio::spawn({
        let (coin, store, mempool, daemon) = (
            config.coin.clone(),
            store.clone(),
            mempool.clone(),
            daemon.clone(),
        );
        let index_events = indexer.subscribe();
        let kick = mempool_kick.clone();
        let mut ready = mempool_tx.subscribe();
        let stop = stop_rx.clone();
        async move {
            if ready.recv().await.is_err() {
                return Ok(());
            }
            let mempool_events = ready.resubscribe();
            let features = serde_json::to_value(server_features(&settings, &coin))?;
            let peers = Arc::new(PeerManager::new(
                peer_config,
                &coin,
                store.clone(),
                features,
            ));
            peers::install(peers.clone());
            tokio::spawn(peers.run(stop.clone()));
            let server = Arc::new(Server::new(settings, coin, store, mempool, daemon, kick));
            admin.attach(server.clone());
            electrum::run(server, index_events, mempool_events, stop).await
        }
    });
    let mempool_task = tokio::spawn({
        let (daemon, store, mempool, mut stop) = (
            daemon.clone(),
            store.clone(),
            mempool.clone(),
            stop_rx.clone(),
        );
        let chain = config.coin.chain;
        let poll = config.poll_mempool;
        let mempool_tx = mempool_tx.clone();
        let kick = mempool_kick.clone();
        async move {
            // Start once the initial sync is over: before that the UTXO set is incomplete.
            tokio::select! {
                e = events.recv() => if matches!(e, Err(RecvError::Closed)) { return },
                _ = stop.changed() => return,
            }
            let mut confirmed_changed = true;
            loop {
                match mempool::refresh(&mempool, &daemon, chain, &store, confirmed_changed).await {
                    Ok(d) if d.applied => {
                        if d.added + d.removed > 0 {
                            info!(
                                "mempool: {} txs (+{} -{})",
                                mempool.read().len(),
                                d.added,
                                d.removed
                            );
                        }
                        confirmed_changed = false;
                        let _ = mempool_tx.send(d);
                    }
                    // The daemon has a block the index has not stored yet: wait for it.
                    Ok(_) => {}
                    Err(e) => warn!("mempool refresh failed: {e}"),
                }
                // A new block refreshes at once, so no transaction stays both confirmed and
                // unconfirmed for a poll interval; so does a broadcast through this server.
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = kick.notified() => {}
                    e = events.recv() => match e {
                        Err(RecvError::Closed) => return,
                        _ => confirmed_changed = true,
                    },
                    _ = stop.changed() => return,
                }
            }
        }
    });

    let mut indexed = tokio::spawn(async move { indexer.run(stop_rx, config.poll_blocks).await });
    let mut server_task = server_task;
    let result = tokio::select! {
        r = &mut indexed => r?.context("indexer stopped"),
        r = &mut server_task => {
            // The service ended: it failed (a port in use, say) or the admin RPC's `stop`
            // asked for a clean shutdown. Stop the indexer at a batch boundary, then flush.
            let _ = stop_tx_for_exit.send(true);
            let served = r?.context("Electrum service failed");
            indexed.await??;
            served
        }
    };
    let _ = stop_tx_for_exit.send(true);
    mempool_task.abort();
    server_task.abort();
    shutdown(&store)?;
    result
}

fn shutdown(store: &Store) -> anyhow::Result<()> {
    info!("flushing the index and exiting");
    store.flush()?;
    Ok(())
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn wait_for_signal(stop: Arc<watch::Sender<bool>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    let _ = stop.send(true);
}
