//! Sending transactions to the network through the daemon: one (`blockchain.transaction.broadcast`)
//! or, from protocol 1.6, a package of a child and its parents
//! (`blockchain.transaction.broadcast_package`, the daemon's `submitpackage`). Both with
//! ElectrumX 2.0's checks, costs and error texts.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::info;

use super::daemon_calls::daemon_error;
use super::jsonrpc::RpcError;
use super::params::{hex_string, truthy, Args};
use super::pyfmt::py_str;
use super::{cost, json, Caller, Electrum, Reply};
use crate::daemon::DaemonError;

pub(super) async fn broadcast(server: &Electrum, session: &dyn Caller, a: &Args) -> Reply {
    let raw = hex_string(a.req(0))?.to_string();
    session.charge(cost::broadcast(raw.len()));
    match server
        .daemon
        .call::<Value>("sendrawtransaction", vec![Value::from(raw.clone())])
        .await
    {
        Ok(txid) => {
            info!("session {}: sent tx {}", session.id(), py_str(&txid));
            session.sent_tx();
            server.mempool_kick.notify_one();
            json(&txid)
        }
        Err(DaemonError::Rpc(e)) => {
            info!(
                "session {}: error sending transaction: {}",
                session.id(),
                e.message
            );
            Err(RpcError::bad_request(format!(
                "the transaction was rejected by network rules.\n\n{}\n[{raw}]",
                e.message
            )))
        }
        Err(e) => Err(daemon_error(e)),
    }
}

/// `raw_txs` must be a list of hex strings; `verbose` (any truthy value) passes the daemon's
/// answer through, otherwise it is summarised by [`summary`]. A daemon without
/// `submitpackage` (Bitcoin Core < 28, Litecoin Core 0.21) refuses with "Method not found",
/// which the client sees as a rejected package, as from ElectrumX.
pub(super) async fn broadcast_package(
    server: &Electrum,
    session: &dyn Caller,
    a: &Args,
    verbose: bool,
) -> Reply {
    let list = a.req(0);
    let txs = raw_tx_list(list)?;
    let hex_len: usize = txs.iter().filter_map(Value::as_str).map(str::len).sum();
    session.charge(cost::broadcast(hex_len));
    match server
        .daemon
        .call::<Box<RawValue>>("submitpackage", vec![list.clone()])
        .await
    {
        Ok(result) => {
            info!(
                "session {}: broadcast a package of {} transactions",
                session.id(),
                txs.len()
            );
            for _ in txs {
                session.sent_tx();
            }
            server.mempool_kick.notify_one();
            if verbose {
                return Ok(result.into());
            }
            json(&summary(result.get())?)
        }
        Err(DaemonError::Rpc(e)) => {
            info!(
                "session {}: error submitting package: {}",
                session.id(),
                e.message
            );
            Err(RpcError::bad_request(format!(
                "the tx package was rejected by network rules.\n\n{}.",
                e.message
            )))
        }
        Err(e) => Err(daemon_error(e)),
    }
}

/// `raw_txs` as a list of hex strings, with ElectrumX's errors.
fn raw_tx_list(list: &Value) -> Result<&Vec<Value>, RpcError> {
    let Some(txs) = list.as_array() else {
        return Err(RpcError::bad_request(format!(
            "{} should be a list",
            py_str(list)
        )));
    };
    for tx in txs {
        hex_string(tx)?;
    }
    Ok(txs)
}

/// 1.7's `blockchain.transaction.testmempoolaccept`: the daemon's `testmempoolaccept`, each
/// result reduced to `txid`, `wtxid`, `allowed` and `reason`.
pub(super) async fn testmempoolaccept(server: &Electrum, session: &dyn Caller, a: &Args) -> Reply {
    let list = a.req(0);
    let txs = raw_tx_list(list)?;
    let hex_len: usize = txs.iter().filter_map(Value::as_str).map(str::len).sum();
    session.charge(cost::broadcast(hex_len));
    let result: Value = server
        .daemon
        .call("testmempoolaccept", vec![list.clone()])
        .await
        .map_err(daemon_error)?;
    let raw: Vec<&str> = txs.iter().filter_map(Value::as_str).collect();
    json(&accept_results(&result, &raw)?)
}

#[derive(Debug, PartialEq, Serialize)]
struct Accept {
    txid: Value,
    wtxid: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Value>,
}

/// ElectrumX's reduction of a `testmempoolaccept` answer. The reason is the first truthy of
/// `package-error`, `reject-details`, `reject-reason`. Daemons before Bitcoin Core 22
/// (Litecoin Core 0.21 among them) give no `wtxid`, where ElectrumX fails: it is then the
/// hash of the transaction's full serialization, the definition of a wtxid, computed from the
/// `raw` transaction at the same position (results come in the order the transactions were
/// sent). A result without a `txid` is an internal error, as in ElectrumX.
fn accept_results(result: &Value, raw: &[&str]) -> Result<Vec<Accept>, RpcError> {
    let internal = |why: &str| {
        tracing::warn!("testmempoolaccept answer {result}: {why}");
        RpcError::internal()
    };
    let items = result.as_array().ok_or_else(|| internal("not a list"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let txid = item
                .get("txid")
                .cloned()
                .ok_or_else(|| internal("no txid"))?;
            let wtxid = match item.get("wtxid") {
                Some(w) => w.clone(),
                None => {
                    let bytes = raw
                        .get(i)
                        .and_then(|h| hex::decode(h).ok())
                        .ok_or_else(|| internal("no wtxid"))?;
                    Value::from(crate::types::Txid(crate::types::sha256d(&bytes)).to_string())
                }
            };
            let reason = ["package-error", "reject-details", "reject-reason"]
                .iter()
                .filter_map(|k| item.get(*k))
                .find(|v| truthy(v))
                .cloned();
            Ok(Accept {
                txid,
                wtxid,
                allowed: item.get("allowed").and_then(Value::as_bool),
                reason,
            })
        })
        .collect()
}

#[derive(Debug, PartialEq, Serialize)]
pub(super) struct PackageSummary {
    success: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<TxError>,
}

#[derive(Debug, PartialEq, Serialize)]
struct TxError {
    txid: Value,
    error: Value,
}

/// The parts of a `submitpackage` answer the summary reads; `tx-results` in the daemon's order
/// (a JSON object, which `serde_json::Map` would sort).
#[derive(Deserialize)]
struct SubmitPackage {
    package_msg: Option<Value>,
    #[serde(rename = "tx-results", default)]
    tx_results: InOrder,
}

#[derive(Default)]
struct InOrder(Vec<Value>);

impl<'de> Deserialize<'de> for InOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = InOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<InOrder, M::Error> {
                let mut out = Vec::new();
                while let Some((_, v)) = m.next_entry::<serde::de::IgnoredAny, Value>()? {
                    out.push(v);
                }
                Ok(InOrder(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// ElectrumX's summary of a `submitpackage` answer: `success` when its `package_msg` is
/// "success", and each transaction result that has an error, in the daemon's order. An answer
/// without `package_msg` is an internal error (ElectrumX fails on the missing key).
pub(super) fn summary(result: &str) -> Result<PackageSummary, RpcError> {
    let internal = |why: String| {
        tracing::warn!("submitpackage answer {result}: {why}");
        RpcError::internal()
    };
    let parsed: SubmitPackage =
        serde_json::from_str(result).map_err(|e| internal(e.to_string()))?;
    let msg = parsed
        .package_msg
        .ok_or_else(|| internal("no package_msg".into()))?;
    let errors = parsed
        .tx_results
        .0
        .iter()
        .filter_map(|tx| {
            let error = tx.get("error").filter(|e| truthy(e))?;
            Some(TxError {
                txid: tx.get("txid").cloned().unwrap_or(Value::Null),
                error: error.clone(),
            })
        })
        .collect();
    Ok(PackageSummary {
        success: msg == "success",
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &PackageSummary) -> String {
        serde_json::to_string(s).unwrap()
    }

    #[test]
    fn testmempoolaccept_results_like_electrumx() {
        let text = |v: &[Accept]| serde_json::to_string(v).unwrap();
        // Bitcoin Core 29: everything there; the reason's fields in ElectrumX's preference.
        let core = serde_json::json!([
            {"txid": "t1", "wtxid": "w1", "allowed": true, "vsize": 141, "fees": {"base": 0.0001}},
            {"txid": "t2", "wtxid": "w2", "allowed": false, "reject-reason": "missing-inputs",
             "reject-details": "missing-inputs, details"},
            {"txid": "t3", "wtxid": "w3", "package-error": "package-not-child-with-parents",
             "reject-reason": "x"},
            {"txid": "t4", "wtxid": "w4", "allowed": false, "reject-details": "",
             "reject-reason": "r"}
        ]);
        assert_eq!(
            text(&accept_results(&core, &[]).unwrap()),
            r#"[{"txid":"t1","wtxid":"w1","allowed":true},{"txid":"t2","wtxid":"w2","allowed":false,"reason":"missing-inputs, details"},{"txid":"t3","wtxid":"w3","reason":"package-not-child-with-parents"},{"txid":"t4","wtxid":"w4","allowed":false,"reason":"r"}]"#
        );
        // Litecoin Core 0.21: no wtxid; the hash of the raw transaction stands in (for a
        // transaction without witness it is the txid).
        let raw = concat!(
            "01000000010000000000000000000000000000000000000000000000000000000000000000",
            "00000000ffffffff0100000000000000000000000000"
        );
        let txid = crate::types::Txid(crate::types::sha256d(&hex::decode(raw).unwrap()));
        let ltc = serde_json::json!([{"txid": txid.to_string(), "allowed": false,
                                      "reject-reason": "bad-txns-vin-empty"}]);
        let r = accept_results(&ltc, &[raw]).unwrap();
        assert_eq!(r[0].wtxid, Value::from(txid.to_string()));
        assert_eq!(r[0].reason, Some(Value::from("bad-txns-vin-empty")));
        for broken in [
            serde_json::json!({}),
            serde_json::json!([{"allowed": true}]),
        ] {
            assert!(accept_results(&broken, &[raw]).is_err(), "{broken}");
        }
    }

    #[test]
    fn package_summaries_like_electrumx() {
        let ok = r#"{
            "package_msg": "success",
            "tx-results": {
                "w1": {"txid": "t1", "vsize": 100, "fees": {"base": 0.0001}},
                "w2": {"txid": "t2", "other-wtxid": "w9"}
            },
            "replaced-transactions": []
        }"#;
        assert_eq!(text(&summary(ok).unwrap()), r#"{"success":true}"#);
        // Errors in the daemon's order (the keys are wtxids, in no sorted order).
        let failed = r#"{
            "package_msg": "transaction failed",
            "tx-results": {
                "ff": {"txid": "t1", "error": "min relay fee not met"},
                "00": {"txid": "t2", "error": ""},
                "aa": {"txid": "t3"},
                "11": {"error": "bad-txns-inputs-missingorspent"}
            }
        }"#;
        assert_eq!(
            text(&summary(failed).unwrap()),
            r#"{"success":false,"errors":[{"txid":"t1","error":"min relay fee not met"},{"txid":null,"error":"bad-txns-inputs-missingorspent"}]}"#
        );
        assert_eq!(
            text(&summary(r#"{"package_msg": "x"}"#).unwrap()),
            r#"{"success":false}"#
        );
        for broken in [r#"{"tx-results": {}}"#, "[]", "5"] {
            assert_eq!(
                summary(broken).unwrap_err().code,
                crate::protocol::jsonrpc::INTERNAL_ERROR,
                "{broken}"
            );
        }
    }
}
