//! State shared by every session: the index and mempool handles, the daemon, caches, the
//! current tip as `blockchain.headers.subscribe` reports it, and the session registry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tracing::{error, info};

use super::cost::{CostModel, SystemClock};
use super::daemon_calls::DaemonCache;
use super::jsonrpc::RpcError;
use super::merkle::{HeaderMerkle, TxTreeCache};
use super::settings::ServerSettings;
use super::stats::{Limit, Stats};
use super::status::history_limit;
use super::subs::Registry;
use crate::coin::Coin;
use crate::daemon::Daemon;
use crate::mempool::Mempool;
use crate::query::Query;
use crate::store::{Store, StoreError};
use crate::types::{BlockHash, Height};

/// The software name and version, as `server.version` and `server.features` report it.
pub fn server_version() -> String {
    format!("Sextant {}", env!("CARGO_PKG_VERSION"))
}

/// The tip as `blockchain.headers.subscribe` reports it (key order as ElectrumX: hex, height).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TipHeader {
    pub hex: String,
    pub height: u32,
    #[serde(skip)]
    pub hash: BlockHash,
}

/// Blocks served from the txid cache: big enough for recent blocks and a wallet's history.
const TX_TREE_CACHE: usize = 256;
/// Recompute the fee histogram at most this often while the mempool changes.
const HISTOGRAM_MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Histogram {
    computed: Option<Instant>,
    dirty: bool,
    value: Arc<Vec<(f64, u64)>>,
}

pub struct Server {
    pub settings: ServerSettings,
    pub coin: Coin,
    pub store: Arc<Store>,
    pub mempool: Arc<RwLock<Mempool>>,
    pub query: Query,
    pub daemon: Daemon,
    pub daemon_cache: DaemonCache,
    pub tx_trees: TxTreeCache,
    pub header_merkle: HeaderMerkle,
    pub registry: Registry,
    pub history_limit: usize,
    /// Notified after a successful `blockchain.transaction.broadcast`: the mempool loop
    /// should refresh at once, so the wallet sees its transaction without waiting a poll.
    pub mempool_kick: Arc<Notify>,
    /// Every session's cost, and their subnet groups.
    pub costs: Arc<CostModel>,
    pub stats: Stats,
    pub started: Instant,
    /// Whether client listeners accept connections: false from `MAX_SESSIONS` sessions until
    /// the count falls to the low watermark.
    pub accepting: watch::Sender<bool>,
    /// Notified by the admin `stop` command: the service winds down as on SIGTERM.
    pub stop_requested: Notify,
    tip: RwLock<Option<TipHeader>>,
    histogram: Mutex<Histogram>,
}

impl Server {
    pub fn new(
        settings: ServerSettings,
        coin: Coin,
        store: Arc<Store>,
        mempool: Arc<RwLock<Mempool>>,
        daemon: Daemon,
        mempool_kick: Arc<Notify>,
    ) -> Server {
        let history_limit = history_limit(settings.max_send);
        let costs = Arc::new(CostModel::new(
            settings.limits.cost.clone(),
            Arc::new(SystemClock::default()),
        ));
        Server {
            costs,
            stats: Stats::default(),
            started: Instant::now(),
            accepting: watch::Sender::new(true),
            stop_requested: Notify::new(),
            query: Query::new(store.clone(), mempool.clone()),
            settings,
            coin,
            store,
            mempool,
            daemon,
            daemon_cache: DaemonCache::default(),
            tx_trees: TxTreeCache::new(TX_TREE_CACHE),
            header_merkle: HeaderMerkle::default(),
            registry: Registry::default(),
            history_limit,
            mempool_kick,
            tip: RwLock::new(None),
            histogram: Mutex::new(Histogram::default()),
        }
    }

    /// Follows the session count: at `MAX_SESSIONS` the client listeners close (as in
    /// ElectrumX: new clients are refused, the others keep being served); they reopen once
    /// the count falls to the low watermark.
    pub fn sessions_changed(&self) {
        let limits = &self.settings.limits;
        let count = self.registry.session_count();
        crate::metrics::sessions(count);
        let accepting = *self.accepting.borrow();
        if accepting && limits.max_sessions > 0 && count >= limits.max_sessions {
            info!(
                "maximum sessions {} reached, stopping new connections until count drops to {}",
                limits.max_sessions,
                limits.low_watermark()
            );
            self.stats.limits.bump(Limit::MaxSessionsPause);
            self.accepting.send_replace(false);
        } else if !accepting && count <= limits.low_watermark() {
            info!("resuming listening for incoming connections");
            self.accepting.send_replace(true);
        }
    }

    /// Re-reads the tip from the store; returns the new value when it changed.
    pub fn refresh_tip(&self) -> Result<Option<TipHeader>, StoreError> {
        let Some(tip) = self.store.tip() else {
            return Ok(None);
        };
        if self.tip.read().as_ref().map(|t| t.hash) == Some(tip.hash) {
            return Ok(None);
        }
        let Some(header) = self.store.header(tip.height)? else {
            return Ok(None);
        };
        let new = TipHeader {
            hex: hex::encode(&header),
            height: tip.height.0,
            hash: tip.hash,
        };
        *self.tip.write() = Some(new.clone());
        Ok(Some(new))
    }

    /// The cached tip (refreshed by notifications, so it may lag the store a moment, as in
    /// ElectrumX).
    pub fn tip(&self) -> Option<TipHeader> {
        if let Some(t) = self.tip.read().clone() {
            return Some(t);
        }
        match self.refresh_tip() {
            Ok(_) => self.tip.read().clone(),
            Err(e) => {
                error!("reading the tip: {e}");
                None
            }
        }
    }

    /// The store's height: what "chain height" means in range checks.
    pub fn db_height(&self) -> Option<Height> {
        self.store.tip().map(|t| t.height)
    }

    pub fn mempool_changed(&self) {
        self.histogram.lock().dirty = true;
    }

    /// The compact fee histogram, recomputed (off the reactor) when stale.
    pub async fn fee_histogram(self: &Arc<Self>) -> Arc<Vec<(f64, u64)>> {
        {
            let h = self.histogram.lock();
            let fresh = h
                .computed
                .is_some_and(|at| !h.dirty || at.elapsed() < HISTOGRAM_MAX_AGE);
            if fresh {
                return h.value.clone();
            }
        }
        let this = self.clone();
        let value = tokio::task::spawn_blocking(move || this.mempool.read().fee_histogram())
            .await
            .unwrap_or_default();
        let value = Arc::new(value);
        let mut h = self.histogram.lock();
        *h = Histogram {
            computed: Some(Instant::now()),
            dirty: false,
            value: value.clone(),
        };
        value
    }

    /// Runs blocking work (RocksDB reads, hashing) off the async reactor.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, RpcError>
    where
        T: Send + 'static,
        F: FnOnce(&Server) -> Result<T, RpcError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| {
                error!("blocking task failed: {e}");
                RpcError::internal()
            })?
    }
}

/// A store failure seen by a client: logged, answered as an internal error.
pub fn store_error(e: StoreError) -> RpcError {
    error!("store: {e}");
    RpcError::internal()
}
