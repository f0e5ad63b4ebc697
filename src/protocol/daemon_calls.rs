//! Daemon-backed answers and their caches: `getnetworkinfo` (60 s, as ElectrumX) for the relay
//! fee and banner, `estimatesmartfee` per (target, mode) until the tip changes, raw
//! transactions (confirmed ones only, dropped when a reorg undoes their block), and
//! `getmempoolinfo` (not cached: its minimum fee moves with the mempool).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError};
use tracing::{debug, warn};

use super::jsonrpc::{RpcError, DAEMON_ERROR};
use super::pyfmt::{py_float, py_repr_str};
use super::Electrum;
use crate::daemon::{Daemon, DaemonError};
use crate::index::IndexEvent;
use crate::query::Query;
use crate::types::{BlockHash, Txid};

/// Bitcoin Core's "method not found".
const RPC_METHOD_NOT_FOUND: i64 = -32601;
const NETWORKINFO_TTL: Duration = Duration::from_secs(60);

/// A daemon failure as ElectrumX reports it: code 2 with the Python repr of the daemon's
/// error object, e.g. `daemon error: DaemonError({'code': -5, 'message': '...'})`.
pub(crate) fn daemon_error(e: DaemonError) -> RpcError {
    match e {
        DaemonError::Rpc(r) => RpcError::new(
            DAEMON_ERROR,
            format!(
                "daemon error: DaemonError({{'code': {}, 'message': {}}})",
                r.code,
                py_repr_str(&r.message)
            ),
        ),
        other => {
            warn!("daemon: {other}");
            RpcError::internal()
        }
    }
}

/// The estimatefee modes ElectrumX accepts (`None` = no mode).
pub(crate) fn estimatefee_mode(mode: Option<&Value>) -> Result<Option<String>, RpcError> {
    let mode = mode.and_then(|m| m.as_str()).map(|m| m.to_uppercase());
    match mode.as_deref() {
        None | Some("CONSERVATIVE") | Some("ECONOMICAL") => Ok(mode),
        Some(other) => Err(RpcError::bad_request(format!(
            "unknown estimatefee mode: {other}"
        ))),
    }
}

/// Bitcoin's fee-estimate target buckets (ElectrumX applies them for Bitcoin only, to keep the
/// cache small).
pub(crate) fn bitcoin_target_bucket(n: u64) -> u64 {
    match n {
        0..=1 => 1,
        2..=12 => n,
        25 => 25,
        13..=48 => n / 2 * 2,
        49..=1008 => n / 24 * 24,
        _ => 1008,
    }
}

/// Fee estimates by (target, mode), with the tip they were computed at.
type Estimates = HashMap<(u64, Option<String>), (BlockHash, Value)>;

/// Raw transactions kept: wallets fetch the same recent transactions over and over, and a
/// transaction's bytes never change for its txid. ~1 KB of hex each.
const RAW_TX_CACHE_ENTRIES: usize = 20_000;

/// Transactions of orphaned blocks remembered, so they are not cached again.
const ORPHANED_ENTRIES: usize = 100_000;

/// Raw transactions by txid. Only transactions the daemon has confirmed belong here: a mempool
/// transaction can be replaced or evicted, and a confirmed one stops existing for the daemon
/// when a reorg orphans its block (an orphaned coinbase, a double spend), so the index's reorg
/// events drop those.
struct RawTxs {
    lru: lru::LruCache<Txid, Box<RawValue>>,
    /// Counts reorgs: an answer fetched from the daemon before one is not stored after it.
    reorgs: u64,
    /// Transactions of blocks a reorg undid, never cached again: some daemons deny them at
    /// once, others (Bitcoin Core's txindex) keep serving them until the index is rebuilt,
    /// and the cache must not outlive that.
    orphaned: lru::LruCache<Txid, ()>,
}

pub(crate) struct DaemonCache {
    networkinfo: tokio::sync::Mutex<Option<(Instant, Value)>>,
    /// (target, mode) → (tip when computed, fee rate).
    estimates: tokio::sync::Mutex<Estimates>,
    raw_txs: parking_lot::Mutex<RawTxs>,
}

impl Default for DaemonCache {
    fn default() -> Self {
        DaemonCache {
            networkinfo: Default::default(),
            estimates: Default::default(),
            raw_txs: parking_lot::Mutex::new(RawTxs {
                lru: lru::LruCache::new(
                    std::num::NonZeroUsize::new(RAW_TX_CACHE_ENTRIES).expect("non-zero"),
                ),
                reorgs: 0,
                orphaned: lru::LruCache::new(
                    std::num::NonZeroUsize::new(ORPHANED_ENTRIES).expect("non-zero"),
                ),
            }),
        }
    }
}

impl DaemonCache {
    /// `getrawtransaction <txid> 0`, answered from the cache when possible. `as_sent` is the
    /// client's own text, passed to the daemon unchanged so its error messages match. A
    /// transaction in `query`'s mempool is not cached.
    pub(crate) async fn raw_transaction(
        &self,
        daemon: &Daemon,
        query: &Query,
        txid: Txid,
        as_sent: &Value,
    ) -> Result<Box<RawValue>, RpcError> {
        let reorgs = {
            let mut cache = self.raw_txs.lock();
            if let Some(hex) = cache.lru.get(&txid) {
                return Ok(hex.clone());
            }
            cache.reorgs
        };
        let hex: Box<RawValue> = daemon
            .call::<Box<RawValue>>("getrawtransaction", vec![as_sent.clone(), Value::from(0)])
            .await
            .map_err(daemon_error)?;
        let unconfirmed = query.mempool().read().get(&txid).is_some();
        let mut cache = self.raw_txs.lock();
        if !unconfirmed && cache.reorgs == reorgs && !cache.orphaned.contains(&txid) {
            cache.lru.put(txid, hex.clone());
        }
        Ok(hex)
    }

    /// A reorg undid the blocks of `txids`: they may no longer exist for the daemon.
    /// `None`: which is not known (events were missed), everything goes.
    pub(crate) fn forget_transactions(&self, txids: Option<&[Txid]>) {
        let mut cache = self.raw_txs.lock();
        cache.reorgs += 1;
        match txids {
            Some(txids) => {
                for txid in txids {
                    cache.lru.pop(txid);
                    cache.orphaned.put(*txid, ());
                }
            }
            None => cache.lru.clear(),
        }
    }

    pub(crate) async fn networkinfo(&self, daemon: &Daemon) -> Result<Value, RpcError> {
        let mut cached = self.networkinfo.lock().await;
        if let Some((at, v)) = &*cached {
            if at.elapsed() < NETWORKINFO_TTL {
                return Ok(v.clone());
            }
        }
        let v: Value = daemon
            .call("getnetworkinfo", vec![])
            .await
            .map_err(daemon_error)?;
        *cached = Some((Instant::now(), v.clone()));
        Ok(v)
    }

    /// The daemon's fee estimate, or -1 when it has none. The lock is held across the daemon
    /// call so concurrent misses for the same tip cost one call.
    /// `smart` is false for daemons without `estimatesmartfee` (komodod): their `estimatefee`
    /// takes the block count alone.
    pub(crate) async fn estimatefee(
        &self,
        daemon: &Daemon,
        tip: BlockHash,
        target: u64,
        mode: Option<String>,
        smart: bool,
    ) -> Result<Value, RpcError> {
        let key = (target, mode);
        let mut cache = self.estimates.lock().await;
        if let Some((at, v)) = cache.get(&key) {
            if *at == tip {
                return Ok(v.clone());
            }
        }
        let mut params = vec![Value::from(target)];
        if !smart {
            let rate = daemon
                .call::<Value>("estimatefee", params)
                .await
                .map_err(daemon_error)?;
            cache.insert(key, (tip, rate.clone()));
            return Ok(rate);
        }
        if let Some(m) = &key.1 {
            params.push(Value::from(m.clone()));
        }
        let rate = match daemon
            .call::<Value>("estimatesmartfee", params.clone())
            .await
        {
            Ok(v) => v.get("feerate").cloned().unwrap_or(Value::from(-1)),
            // Daemons without estimatesmartfee: the old call answers directly.
            Err(DaemonError::Rpc(e)) if e.code == RPC_METHOD_NOT_FOUND => daemon
                .call::<Value>("estimatefee", params)
                .await
                .map_err(daemon_error)?,
            Err(e) => return Err(daemon_error(e)),
        };
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, (tip, rate.clone()));
        Ok(rate)
    }
}

impl Electrum {
    /// Follows the index's events for as long as it runs, dropping the cached transactions of
    /// every block a reorg undoes.
    pub(crate) async fn forget_undone(
        self: Arc<Self>,
        mut events: broadcast::Receiver<IndexEvent>,
    ) {
        loop {
            match events.recv().await {
                Ok(e) if e.reorg => {
                    debug!("reorg: {} cached transactions dropped", e.undone.len());
                    self.daemon_cache.forget_transactions(Some(&e.undone));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => self.daemon_cache.forget_transactions(None),
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// `mempool.get_info`'s answer: fee rates in coins per kvB, in ElectrumX's key order.
#[derive(Debug, serde::Serialize)]
pub(crate) struct MempoolInfo {
    mempoolminfee: Box<RawValue>,
    minrelaytxfee: Box<RawValue>,
    incrementalrelayfee: Box<RawValue>,
}

impl MempoolInfo {
    /// From `getmempoolinfo`, numbers printed as Python prints them. Daemons older than Bitcoin
    /// Core 25 (Litecoin Core 0.21 among them) have no `incrementalrelayfee` there; their
    /// `getnetworkinfo` has the same setting as `incrementalfee`, which `networkinfo` supplies.
    /// `None` when a rate is missing from both (ElectrumX then fails with an internal error).
    pub(crate) fn from_daemon(mempool: &Value, networkinfo: Option<&Value>) -> Option<MempoolInfo> {
        let rate = |v: Option<&Value>| v.filter(|v| v.is_number()).map(py_number);
        let incremental = mempool
            .get("incrementalrelayfee")
            .or_else(|| networkinfo?.get("incrementalfee"));
        Some(MempoolInfo {
            mempoolminfee: rate(mempool.get("mempoolminfee"))?,
            minrelaytxfee: rate(mempool.get("minrelaytxfee"))?,
            incrementalrelayfee: rate(incremental)?,
        })
    }

    /// Whether `getmempoolinfo`'s answer needs `getnetworkinfo` to be complete.
    pub(crate) fn needs_networkinfo(mempool: &Value) -> bool {
        mempool.get("incrementalrelayfee").is_none()
    }
}

/// A daemon number: integers as they are, floats in Python's form (`1e-05`, `0.0`).
pub(crate) fn py_number(v: &Value) -> Box<RawValue> {
    let text = match v {
        Value::Number(n) if n.is_f64() => py_float(n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    };
    RawValue::from_string(text).expect("a number is valid JSON")
}

/// `getnetworkinfo.version` as a dotted version: 290100 → `29.1.0`.
pub(crate) fn daemon_version(networkinfo: &Value) -> String {
    let v = networkinfo
        .get("version")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    format!("{}.{}.{}", v / 10_000, (v % 10_000) / 100, v % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::RpcError as DaemonRpcError;
    use serde_json::json;

    #[test]
    fn daemon_errors_in_python_repr() {
        let e = daemon_error(DaemonError::Rpc(DaemonRpcError {
            code: -5,
            message: "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.".into(),
        }));
        assert_eq!(e.code, 2);
        assert_eq!(
            e.message,
            "daemon error: DaemonError({'code': -5, 'message': 'No such mempool or blockchain \
             transaction. Use gettransaction for wallet transactions.'})"
        );
        let e = daemon_error(DaemonError::Rpc(DaemonRpcError {
            code: -8,
            message: "can't do it".into(),
        }));
        assert_eq!(
            e.message,
            "daemon error: DaemonError({'code': -8, 'message': \"can't do it\"})"
        );
    }

    #[test]
    fn modes_and_buckets() {
        assert_eq!(estimatefee_mode(None).unwrap(), None);
        assert_eq!(estimatefee_mode(Some(&json!(5))).unwrap(), None);
        assert_eq!(
            estimatefee_mode(Some(&json!("economical")))
                .unwrap()
                .as_deref(),
            Some("ECONOMICAL")
        );
        assert_eq!(
            estimatefee_mode(Some(&json!("fast"))).unwrap_err().message,
            "unknown estimatefee mode: FAST"
        );
        assert_eq!(bitcoin_target_bucket(0), 1);
        assert_eq!(bitcoin_target_bucket(7), 7);
        assert_eq!(bitcoin_target_bucket(25), 25);
        assert_eq!(bitcoin_target_bucket(27), 26);
        assert_eq!(bitcoin_target_bucket(100), 96);
        assert_eq!(bitcoin_target_bucket(5000), 1008);
    }

    #[test]
    fn mempool_info_from_old_and_new_daemons() {
        let text = |m: &MempoolInfo| serde_json::to_string(m).unwrap();
        // Bitcoin Core 25+: everything in getmempoolinfo.
        let core = json!({"loaded": true, "mempoolminfee": 0.00001, "minrelaytxfee": 0.00001,
                          "incrementalrelayfee": 0.00002, "size": 3});
        assert!(!MempoolInfo::needs_networkinfo(&core));
        assert_eq!(
            text(&MempoolInfo::from_daemon(&core, None).unwrap()),
            r#"{"mempoolminfee":1e-05,"minrelaytxfee":1e-05,"incrementalrelayfee":2e-05}"#
        );
        // Litecoin Core 0.21: the increment from getnetworkinfo.
        let ltc: Value = serde_json::from_str(
            r#"{"loaded": true, "mempoolminfee": 0.00001000, "minrelaytxfee": 0.00000000}"#,
        )
        .unwrap();
        assert!(MempoolInfo::needs_networkinfo(&ltc));
        assert!(MempoolInfo::from_daemon(&ltc, None).is_none());
        let net = json!({"relayfee": 0.00001, "incrementalfee": 0.00001});
        assert_eq!(
            text(&MempoolInfo::from_daemon(&ltc, Some(&net)).unwrap()),
            r#"{"mempoolminfee":1e-05,"minrelaytxfee":0.0,"incrementalrelayfee":1e-05}"#
        );
        assert!(MempoolInfo::from_daemon(&json!({"minrelaytxfee": 1}), Some(&net)).is_none());
    }

    #[test]
    fn a_reorg_drops_the_transactions_it_undid() {
        let cache = DaemonCache::default();
        let raw = |n: u8| RawValue::from_string(format!("\"{n:02x}\"")).unwrap();
        for n in 1..=3 {
            cache.raw_txs.lock().lru.put(Txid([n; 32]), raw(n));
        }
        let cached = |n: u8| cache.raw_txs.lock().lru.contains(&Txid([n; 32]));
        cache.forget_transactions(Some(&[Txid([2; 32]), Txid([9; 32])]));
        assert!(cached(1) && !cached(2) && cached(3));
        assert!(
            cache.raw_txs.lock().orphaned.contains(&Txid([2; 32])),
            "not cached again"
        );
        assert_eq!(
            cache.raw_txs.lock().reorgs,
            1,
            "fetches in flight are not stored"
        );
        cache.forget_transactions(None);
        assert!(!cached(1) && !cached(3), "missed events: everything goes");
    }

    #[test]
    fn version_numbers() {
        assert_eq!(daemon_version(&json!({"version": 290100})), "29.1.0");
        assert_eq!(daemon_version(&json!({"version": 210400})), "21.4.0");
    }
}
