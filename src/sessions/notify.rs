//! Fan-out of chain and mempool changes to subscribed sessions.
//!
//! Events are coalesced into rounds: after a block, the round waits briefly for the mempool
//! refresh that follows it, so a transaction moving from mempool to block is announced once.
//! Each round refreshes the tip (one `blockchain.headers.subscribe` notification per subscribed
//! session), then computes the status of every touched *subscribed* script once, however many
//! sessions share it, and notifies the sessions whose last status differs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::watch;
use tracing::{debug, error, warn};

use super::session::SessionHandle;
use super::{noise, Sessions};
use crate::index::IndexEvent;
use crate::mempool::MempoolDelta;
use crate::protocol::cost;
use crate::query::HistoryError;
use crate::types::{HashX, OutPoint};

/// How long a block's round waits for the mempool refresh that follows it.
const MEMPOOL_AFTER_BLOCK: Duration = Duration::from_millis(1500);
/// Scripts per blocking status task.
const STATUS_CHUNK: usize = 256;

#[derive(Default, Debug)]
struct Round {
    touched: HashSet<HashX>,
    /// Outpoints funded or spent (1.7 outpoint subscriptions).
    outpoints: HashSet<OutPoint>,
    block: bool,
    reorg: bool,
    mempool: bool,
    /// Events were missed: re-check every subscription.
    everything: bool,
}

impl Round {
    fn index(&mut self, e: Result<IndexEvent, RecvError>) -> bool {
        match e {
            Ok(e) => {
                self.touched.extend(e.touched.iter().copied());
                self.outpoints.extend(e.outpoints.iter().copied());
                self.block = true;
                self.reorg |= e.reorg;
                true
            }
            Err(RecvError::Lagged(n)) => {
                warn!("notifications: {n} index events missed; re-checking all subscriptions");
                self.block = true;
                self.everything = true;
                true
            }
            Err(RecvError::Closed) => false,
        }
    }

    fn mempool(&mut self, d: Result<MempoolDelta, RecvError>) -> bool {
        match d {
            Ok(d) => {
                self.touched.extend(d.touched);
                self.outpoints.extend(d.touched_outpoints);
                self.mempool = true;
                true
            }
            Err(RecvError::Lagged(n)) => {
                warn!("notifications: {n} mempool events missed; re-checking all subscriptions");
                self.mempool = true;
                self.everything = true;
                true
            }
            Err(RecvError::Closed) => false,
        }
    }
}

/// Receives from an optional channel; a closed one is replaced by `None` and never polled again.
async fn recv<T: Clone>(rx: &mut Option<broadcast::Receiver<T>>) -> Result<T, RecvError> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

fn drain<T: Clone>(
    rx: &mut Option<broadcast::Receiver<T>>,
    mut f: impl FnMut(Result<T, RecvError>) -> bool,
) {
    while let Some(r) = rx {
        let e = match r.try_recv() {
            Ok(v) => Ok(v),
            Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Closed) => Err(RecvError::Closed),
        };
        if !f(e) {
            *rx = None;
        }
    }
}

/// How long the notifier waits for the daemon's height before notifying anyway.
const HEIGHT_TIMEOUT: Duration = Duration::from_secs(2);

/// Is the index behind the daemon? Then a mempool snapshot may already lack the transactions of
/// a block the index has not stored yet: their scripts would look as if the transactions had
/// vanished (status null), one round before the block round restores them. ElectrumX applies a
/// mempool snapshot only once its DB reached the daemon height it was taken at; the notifier
/// defers such a round to the block round instead.
async fn index_lags(server: &Sessions) -> bool {
    let store = server
        .electrum
        .query()
        .db_height()
        .map_or(0, |h| u64::from(h.0));
    let daemon = tokio::time::timeout(
        HEIGHT_TIMEOUT,
        server
            .electrum
            .daemon()
            .call::<u64>("getblockcount", Vec::new()),
    )
    .await;
    matches!(daemon, Ok(Ok(h)) if h > store)
}

pub(super) async fn run(
    server: Arc<Sessions>,
    index: broadcast::Receiver<IndexEvent>,
    mempool: broadcast::Receiver<MempoolDelta>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut index, mut mempool) = (Some(index), Some(mempool));
    let mut last_mempool_round = Instant::now();
    // Touched scripts of mempool rounds deferred while the index lagged the daemon.
    let mut deferred = Round::default();
    loop {
        let mut round = Round::default();
        tokio::select! {
            e = recv(&mut index) => if !round.index(e) { index = None; continue },
            d = recv(&mut mempool) => if !round.mempool(d) { mempool = None; continue },
            _ = shutdown.changed() => return,
        }
        if round.block && !round.mempool && mempool.is_some() {
            let wait = tokio::time::sleep(MEMPOOL_AFTER_BLOCK);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    d = recv(&mut mempool) => {
                        if !round.mempool(d) { mempool = None; }
                        break;
                    }
                    e = recv(&mut index) => if !round.index(e) { index = None },
                    _ = &mut wait => break,
                    _ = shutdown.changed() => return,
                }
            }
        }
        drain(&mut index, |e| round.index(e));
        drain(&mut mempool, |d| round.mempool(d));
        if round.mempool
            && !round.block
            && (!round.touched.is_empty() || round.everything)
            && index_lags(&server).await
        {
            debug!("notifications: index behind the daemon; mempool round deferred");
            server.electrum.query().mempool_changed();
            deferred.touched.extend(round.touched);
            deferred.outpoints.extend(round.outpoints);
            deferred.everything |= round.everything;
            continue;
        }
        round.touched.extend(std::mem::take(&mut deferred.touched));
        round
            .outpoints
            .extend(std::mem::take(&mut deferred.outpoints));
        round.everything |= std::mem::take(&mut deferred.everything);
        let block = round.block;
        let outpoints = std::mem::take(&mut round.outpoints);
        let everything = round.everything;
        let mut sent = apply(&server, round).await;
        notify_outpoints(&server, (!everything).then_some(&outpoints), &mut sent).await;
        let since = last_mempool_round.elapsed();
        if !block {
            last_mempool_round = Instant::now();
        }
        send_noise(&server, block, &sent, since);
    }
}

/// Notifications sent to each session in a round, by session id.
type Sent = HashMap<u64, usize>;

/// 1.7 sessions get `server.ping` noise after each round (see `noise`).
fn send_noise(server: &Sessions, block: bool, sent: &Sent, since: Duration) {
    let mut params = None;
    for s in server.registry.sessions() {
        if !s.version().is_some_and(|v| v.is_1_7()) {
            continue;
        }
        let n = noise::pings(
            block,
            sent.get(&s.id).copied().unwrap_or(0),
            since,
            noise::uniform,
        );
        for _ in 0..n {
            let p = params.get_or_insert_with(noise::ping_params);
            s.notify("server.ping", p);
        }
    }
}

/// 1.7 outpoint subscribers hear of every subscribed outpoint a round touched (`None`: all of
/// them), changed or not, as from ElectrumX: `[tx_hash, txout_idx, status]`.
async fn notify_outpoints(server: &Sessions, touched: Option<&HashSet<OutPoint>>, sent: &mut Sent) {
    if touched.is_some_and(|t| t.is_empty()) {
        return;
    }
    let mut wanted: Vec<(Arc<SessionHandle>, Vec<OutPoint>)> = Vec::new();
    for s in server.registry.sessions() {
        let ops = s.outpoints_touched(touched);
        if !ops.is_empty() {
            wanted.push((s, ops));
        }
    }
    if wanted.is_empty() {
        return;
    }
    let mut all: Vec<OutPoint> = wanted.iter().flat_map(|(_, o)| o.iter().copied()).collect();
    all.sort_unstable_by_key(|o| (o.txid.0, o.vout));
    all.dedup();
    // The answers `get_status` gives, an unspendable output's daemon-given funder included.
    let statuses = match server.electrum.outpoint_statuses(all).await {
        Ok(s) => s,
        Err(e) => return error!("notifications: outpoint status: {e}"),
    };
    for (session, ops) in wanted {
        for op in ops {
            let Some(status) = statuses.get(&op) else {
                continue;
            };
            session.charge(cost::OUTPOINT_STATUS);
            let params = serde_json::value::to_raw_value(&(op.txid.to_string(), op.vout, status))
                .expect("notification params serialize");
            session.notify("blockchain.outpoint.subscribe", &params);
            *sent.entry(session.id).or_default() += 1;
        }
    }
}

/// The method a session's script notifications use: 1.7 names scripts by scriptPubKey.
fn script_method(session: &SessionHandle) -> &'static str {
    if session.version().is_some_and(|v| v.is_1_7()) {
        "blockchain.scriptpubkey.subscribe"
    } else {
        "blockchain.scripthash.subscribe"
    }
}

/// Sends a round's notifications; returns how many each session got.
async fn apply(server: &Arc<Sessions>, round: Round) -> Sent {
    let mut sent = Sent::new();
    let query = server.electrum.query();
    if round.mempool {
        query.mempool_changed();
    }
    if round.block {
        let q = query.clone();
        let reorg = round.reorg;
        let reorg_limit = server.electrum.coin().reorg_limit;
        let new_tip = tokio::task::spawn_blocking(move || {
            let tip = q.refresh_tip();
            if reorg {
                // The fork is at most a reorg limit deep: keep header segments below it.
                q.reorged(reorg_limit);
                // Blocks undone and the same ones connected again (the admin RPC's `reorg`)
                // leave the tip as it was: announce it anyway, so clients re-check.
                if matches!(tip, Ok(None)) {
                    return Ok(q.tip());
                }
            }
            tip
        })
        .await;
        match new_tip {
            Ok(Ok(Some(tip))) => {
                let params = serde_json::value::to_raw_value(&[&tip]).expect("tip serializes");
                for s in server.registry.sessions() {
                    if s.headers_subscribed
                        .load(std::sync::atomic::Ordering::Relaxed)
                    {
                        s.notify("blockchain.headers.subscribe", &params);
                        *sent.entry(s.id).or_default() += 1;
                    }
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => error!("notifications: reading the tip: {e}"),
            Err(e) => error!("notifications: tip task failed: {e}"),
        }
    }
    let touched = if round.everything {
        server.registry.all_subscribed()
    } else {
        round.touched
    };
    let hashxs = server.registry.subscribed(&touched);
    if hashxs.is_empty() {
        return sent;
    }
    debug!("notifications: {} subscribed scripts touched", hashxs.len());
    let statuses_started = Instant::now();
    let limit = server.electrum.history_limit();
    let mut tasks = Vec::new();
    for chunk in hashxs.chunks(STATUS_CHUNK) {
        let (q, chunk) = (query.clone(), chunk.to_vec());
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk.iter().map(|h| q.status(h, limit)).collect::<Vec<_>>()
        }));
    }
    let mut statuses = Vec::with_capacity(hashxs.len());
    for t in tasks {
        match t.await {
            Ok(v) => statuses.extend(v),
            Err(e) => {
                error!("notifications: status task failed: {e}");
                return sent;
            }
        }
    }
    debug!(
        "notifications: {} statuses in {:.1} ms",
        statuses.len(),
        statuses_started.elapsed().as_secs_f64() * 1000.0
    );
    for (hashx, status) in hashxs.into_iter().zip(statuses) {
        let (items, status) = match status {
            Ok((n, s)) => (n, Some(s)),
            Err(HistoryError::TooLarge) => (limit, None),
            Err(HistoryError::Store(e)) => {
                error!("notifications: {e}");
                continue;
            }
        };
        let (subscribers, changes) = server.registry.status_changed(&hashx, status.as_ref());
        // As in ElectrumX, every subscriber pays for the status recomputed for it.
        for session in subscribers {
            session.charge(cost::status(items));
        }
        for c in changes {
            let params = serde_json::value::to_raw_value(&(c.alias, c.status))
                .expect("notification params serialize");
            c.session.notify(script_method(&c.session), &params);
            *sent.entry(c.session.id).or_default() += 1;
        }
    }
    sent
}
