//! The session runtime: every client connection's life (framing-independent reading, dispatch
//! to the protocol, writing), ElectrumX's cost model and limits, subscriptions, and the fan-out
//! of chain and mempool changes to subscribers.
//!
//! | module | job |
//! |---|---|
//! | `session` | one connection: reading, dispatch, writing, throttling |
//! | `budget` | memory budgets: per session and shared, backpressure on slow readers |
//! | `cost` | ElectrumX's cost model: decay, subnet groups, throttle |
//! | `stats` | request and limit-action counters |
//! | `subs` | sessions and subscriptions, indexed by script, in one structure |
//! | `notify` | fan-out of block and mempool changes |

pub(crate) mod budget;
pub(crate) mod cost;
pub(crate) mod message;
mod noise;
mod notify;
pub(crate) mod session;
pub(crate) mod stats;
mod subs;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::SessionLimits;
use crate::index::IndexEvent;
use crate::mempool::MempoolDelta;
use crate::metrics::Metrics;
use crate::protocol::Electrum;
use budget::ServerBudget;
use cost::{CostModel, GroupInfo, SystemClock};
use session::SessionHandle;
use stats::{Limit, Stats};
use subs::Registry;

/// State shared by every session.
pub(crate) struct Sessions {
    electrum: Arc<Electrum>,
    limits: SessionLimits,
    /// Largest request line / WebSocket message (`MAX_RECV`) and response (`MAX_SEND`).
    max_recv: usize,
    max_send: usize,
    /// Every session's cost, and their subnet groups.
    costs: Arc<CostModel>,
    stats: Arc<Stats>,
    registry: Arc<Registry<SessionHandle>>,
    /// `MAX_SERVER_MEMORY`: what every session's budget draws from.
    memory: Arc<ServerBudget>,
    metrics: Metrics,
    /// Whether client listeners accept connections: false from `MAX_SESSIONS` sessions until
    /// the count falls to the low watermark.
    accepting: watch::Sender<bool>,
    next_id: AtomicU64,
    /// Whether new sessions have their requests logged (admin `log new`).
    log_new: AtomicBool,
}

impl Sessions {
    pub(crate) fn new(electrum: Arc<Electrum>, metrics: Metrics) -> Sessions {
        let settings = electrum.settings();
        let limits = settings.limits.clone();
        let costs = Arc::new(CostModel::new(
            limits.cost.clone(),
            Arc::new(SystemClock::default()),
        ));
        Sessions {
            max_recv: settings.max_recv,
            max_send: settings.max_send,
            costs,
            stats: Arc::new(Stats::new(metrics.clone())),
            registry: Arc::default(),
            memory: Arc::new(ServerBudget::new(limits.max_server_memory)),
            limits,
            metrics,
            accepting: watch::Sender::new(true),
            next_id: AtomicU64::new(0),
            log_new: AtomicBool::new(false),
            electrum,
        }
    }

    pub(crate) fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// Bytes the sessions hold in requests and unwritten replies, and `MAX_SERVER_MEMORY`.
    pub(crate) fn memory(&self) -> (usize, usize) {
        (self.memory.used(), self.memory.limit())
    }

    pub(crate) fn max_recv(&self) -> usize {
        self.max_recv
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Open sessions.
    pub(crate) fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        self.registry.sessions()
    }

    /// Script subscriptions of session `id`.
    pub(crate) fn subscriptions_of(&self, id: u64) -> usize {
        self.registry.count_of(id)
    }

    /// Every session's subnet group, with its cost.
    pub(crate) fn groups(&self) -> Vec<GroupInfo> {
        self.costs.groups()
    }

    /// A session's cost and its group's (`None` once it closed).
    pub(crate) fn cost(&self, id: u64) -> Option<(f64, f64)> {
        self.costs.cost(id)
    }

    /// Sets (`Some`) or flips (`None`) whether new sessions have their requests logged;
    /// returns the new setting.
    pub(crate) fn log_new(&self, set: Option<bool>) -> bool {
        match set {
            Some(on) => {
                self.log_new.store(on, Ordering::Relaxed);
                on
            }
            None => !self.log_new.fetch_xor(true, Ordering::Relaxed),
        }
    }

    /// Counts one action of a limit (here and in the metrics).
    pub(crate) fn limit(&self, what: Limit) {
        self.stats.limit(what);
    }

    /// Whether the client listeners should accept connections now (see `MAX_SESSIONS`).
    pub(crate) fn accepting(&self) -> watch::Receiver<bool> {
        self.accepting.subscribe()
    }

    /// Follows the session count: at `MAX_SESSIONS` the client listeners close (as in
    /// ElectrumX: new clients are refused, the others keep being served); they reopen once
    /// the count falls to the low watermark.
    fn sessions_changed(&self) {
        let limits = &self.limits;
        let count = self.registry.session_count();
        self.metrics.sessions(count);
        let accepting = *self.accepting.borrow();
        if accepting && limits.max_sessions > 0 && count >= limits.max_sessions {
            info!(
                "maximum sessions {} reached, stopping new connections until count drops to {}",
                limits.max_sessions,
                limits.low_watermark()
            );
            self.stats.limit(Limit::MaxSessionsPause);
            self.accepting.send_replace(false);
        } else if !accepting && count <= limits.low_watermark() {
            info!("resuming listening for incoming connections");
            self.accepting.send_replace(true);
        }
    }

    /// Starts the background work of the runtime: notifications from `index_events` and
    /// `mempool_events`, and the periodic pass over the cost model. Call it once the index has
    /// caught up: clients are answered from the store as it is.
    pub(crate) async fn start(
        self: &Arc<Self>,
        index_events: broadcast::Receiver<IndexEvent>,
        mempool_events: broadcast::Receiver<MempoolDelta>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Running> {
        let query = self.electrum.query().clone();
        tokio::task::spawn_blocking(move || query.refresh_tip()).await??;
        let notifier = tokio::spawn(notify::run(
            self.clone(),
            index_events,
            mempool_events,
            shutdown,
        ));
        let recalc = tokio::spawn(recalc_costs(self.clone()));
        Ok(Running {
            sessions: self.clone(),
            tasks: vec![notifier, recalc],
        })
    }
}

/// The runtime's background tasks; dropping it stops them and closes every session.
pub(crate) struct Running {
    sessions: Arc<Sessions>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for s in self.sessions.sessions() {
            s.close();
        }
    }
}

/// ElectrumX's periodic pass over the cost model: groups refund retained cost, decay rates
/// follow subscription counts, every session's throttle is recomputed.
async fn recalc_costs(sessions: Arc<Sessions>) {
    let period = cost::RECALC_PERIOD;
    loop {
        tokio::time::sleep(period).await;
        let subs: HashMap<u64, usize> = sessions
            .sessions()
            .iter()
            .map(|s| (s.id, sessions.registry.count_of(s.id)))
            .collect();
        sessions
            .costs
            .tick(period, |id| subs.get(&id).copied().unwrap_or(0));
    }
}
