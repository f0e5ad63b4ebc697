//! The Electrum protocol, 1.4 – 1.4.2, answer for answer like ElectrumX.
//!
//! | module | job |
//! |---|---|
//! | `jsonrpc` | framing dialects, batches, error codes and texts |
//! | `params` | argument arity and value validation |
//! | `version` | `server.version` negotiation |
//! | `methods` | the methods and their answers |
//! | `status` | histories and status hashes |
//! | `merkle` | transaction and header-checkpoint proofs, with caches |
//! | `histogram` | the compact fee histogram |
//! | `daemon_calls` | daemon-backed answers, their caches and error form |
//! | `session` | one connection: reading, dispatch, writing, throttling |
//! | `cost` | ElectrumX's cost model: costs, decay, subnet groups, throttle |
//! | `limits` | session limits from the environment |
//! | `stats` | request and limit-action counters |
//! | `admin` | the `rpc://` admin interface |
//! | `admin_query` | the admin `query` command's lines |
//! | `subs` | sessions and subscriptions, indexed by script |
//! | `notify` | fan-out of block and mempool changes |
//! | `settings` | the protocol's environment variables |
//! | `pyfmt` | Python-style text in messages |

pub mod admin;
pub mod admin_query;
pub mod cost;
pub mod daemon_calls;
pub mod histogram;
pub mod jsonrpc;
pub mod limits;
pub mod merkle;
pub mod methods;
pub mod notify;
pub mod params;
pub mod pyfmt;
pub mod server;
pub mod session;
pub mod settings;
pub mod stats;
pub mod status;
pub mod subs;
pub mod version;

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::{broadcast, watch, Notify};

use crate::coin::Coin;
use crate::daemon::Daemon;
use crate::index::IndexEvent;
use crate::mempool::{Mempool, MempoolDelta};
use crate::store::Store;
pub use server::Server;
pub use settings::ServerSettings;

/// Serves Electrum clients on every configured service until `shutdown` turns true.
///
/// `index_events` and `mempool_events` drive notifications: each `IndexEvent` (new tip,
/// touched scripts) and each `MempoolDelta` (touched scripts) after a mempool refresh. Call it
/// once the index has caught up: clients are answered from the store as it is.
///
/// Without a way to ask the mempool loop for a refresh; see [`serve_with_mempool_kick`].
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    settings: ServerSettings,
    coin: Coin,
    store: Arc<Store>,
    mempool: Arc<RwLock<Mempool>>,
    daemon: Daemon,
    index_events: broadcast::Receiver<IndexEvent>,
    mempool_events: broadcast::Receiver<MempoolDelta>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    serve_with_mempool_kick(
        settings,
        coin,
        store,
        mempool,
        daemon,
        index_events,
        mempool_events,
        shutdown,
        Arc::new(Notify::new()),
    )
    .await
}

/// [`serve`], plus `mempool_kick`: notified (`notify_one`, so a kick during a refresh is kept)
/// after every successful `blockchain.transaction.broadcast`. The mempool loop should wait on
/// it beside its poll timer and refresh at once, so a wallet sees its own transaction (and
/// its subscription notification) without waiting a poll interval.
#[allow(clippy::too_many_arguments)]
pub async fn serve_with_mempool_kick(
    settings: ServerSettings,
    coin: Coin,
    store: Arc<Store>,
    mempool: Arc<RwLock<Mempool>>,
    daemon: Daemon,
    index_events: broadcast::Receiver<IndexEvent>,
    mempool_events: broadcast::Receiver<MempoolDelta>,
    shutdown: watch::Receiver<bool>,
    mempool_kick: Arc<Notify>,
) -> anyhow::Result<()> {
    let server = Arc::new(Server::new(
        settings,
        coin,
        store,
        mempool,
        daemon,
        mempool_kick,
    ));
    run(server, index_events, mempool_events, shutdown).await
}

/// Serves clients from an already built `server` (whose handle the caller may keep, e.g. for
/// an admin listener opened earlier) until `shutdown`; see [`serve`].
pub async fn run(
    server: Arc<Server>,
    index_events: broadcast::Receiver<IndexEvent>,
    mempool_events: broadcast::Receiver<MempoolDelta>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    {
        let s = server.clone();
        tokio::task::spawn_blocking(move || s.refresh_tip()).await??;
    }
    let notifier = tokio::spawn(notify::run(
        server.clone(),
        index_events,
        mempool_events,
        shutdown.clone(),
    ));
    let recalc = tokio::spawn(recalc_costs(server.clone()));
    let result = crate::net::listen(server.clone(), shutdown).await;
    recalc.abort();
    notifier.abort();
    for s in server.registry.sessions() {
        s.close();
    }
    result
}

/// ElectrumX's periodic pass over the cost model: groups refund retained cost, decay rates
/// follow subscription counts, every session's throttle is recomputed.
async fn recalc_costs(server: Arc<Server>) {
    let period = cost::RECALC_PERIOD;
    loop {
        tokio::time::sleep(period).await;
        let subs: std::collections::HashMap<u64, usize> = server
            .registry
            .sessions()
            .iter()
            .map(|s| (s.id, s.subs.lock().len()))
            .collect();
        server
            .costs
            .tick(period, |id| subs.get(&id).copied().unwrap_or(0));
    }
}
