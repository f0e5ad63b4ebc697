//! The methods of protocol 1.4 – 1.4.2: which exist at which version, their signatures, and
//! their answers, with ElectrumX's validation order and error texts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::{info, warn};

use super::cost::charge;
use super::daemon_calls::{bitcoin_target_bucket, daemon_error, daemon_version, estimatefee_mode};
use super::jsonrpc::{Call, RpcError, METHOD_NOT_FOUND};
use super::params::{
    boolean, hex_string, non_negative_integer, scripthash, tx_hash, Args, Signature,
};
use super::pyfmt::{py_float, py_str, thousands};
use super::server::{server_version, store_error, Server};
use super::session::{SessionHandle, Sub};
use super::settings::ServerSettings;
use super::status::{FullHistory, HistoryError};
use super::version::{negotiate, server_max, server_min, Protocol};
use crate::coin::Coin;
use crate::daemon::DaemonError;
use crate::types::{Height, Txid};

pub type Reply = Result<Box<RawValue>, RpcError>;

/// Most headers one `blockchain.block.headers` returns.
pub const MAX_CHUNK_SIZE: u64 = 2016;

fn json<T: Serialize + ?Sized>(v: &T) -> Reply {
    serde_json::value::to_raw_value(v).map_err(|e| {
        warn!("serializing a reply: {e}");
        RpcError::internal()
    })
}

/// A float printed as Python prints it (`1e-05`, `20.0`), so replies match ElectrumX's bytes.
pub struct PyFloat(pub f64);

impl Serialize for PyFloat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawValue::from_string(py_float(self.0))
            .map_err(S::Error::custom)?
            .serialize(s)
    }
}

/// A daemon number: integers as they are, floats in Python's form.
fn py_number(v: &Value) -> Reply {
    match v {
        Value::Number(n) if n.is_f64() => json(&PyFloat(n.as_f64().unwrap_or(0.0))),
        other => json(other),
    }
}

fn history_error(e: HistoryError) -> RpcError {
    match e {
        // ElectrumX ≤ 1.18 (and so protocol < 1.7) use code 1, which the Komodo DeFi client
        // expects; ElectrumX 2 sends 10001.
        HistoryError::TooLarge => RpcError::bad_request("history too large"),
        HistoryError::Store(e) => store_error(e),
    }
}

fn out_of_range(height: u64) -> RpcError {
    RpcError::bad_request(format!("height {} out of range", thousands(height as i128)))
}

const NO_ARGS: Signature = Signature::new(&[], &[]);
const SCRIPTHASH: Signature = Signature::new(&["scripthash"], &[]);

/// The signature of `method` at protocol `proto`; `None` when the method does not exist there.
pub fn signature(method: &str, proto: &Protocol) -> Option<Signature> {
    Some(match method {
        "server.version" => Signature {
            required: &[],
            optional: &["client_name", "protocol_version"],
            var_args: true,
        },
        "server.banner"
        | "server.donation_address"
        | "server.features"
        | "server.peers.subscribe"
        | "blockchain.headers.subscribe"
        | "blockchain.relayfee"
        | "mempool.get_fee_histogram" => NO_ARGS,
        "server.add_peer" => Signature::new(&["features"], &[]),
        // ElectrumX 2 takes (and ignores below 1.7) up to two arguments.
        "server.ping" => Signature::new(&[], &["pong_len", "data"]),
        "blockchain.block.header" => Signature::new(&["height"], &["cp_height"]),
        "blockchain.block.headers" => Signature::new(&["start_height", "count"], &["cp_height"]),
        "blockchain.estimatefee" => Signature::new(&["number"], &["mode"]),
        "blockchain.scripthash.get_balance"
        | "blockchain.scripthash.get_history"
        | "blockchain.scripthash.get_mempool"
        | "blockchain.scripthash.listunspent"
        | "blockchain.scripthash.subscribe" => SCRIPTHASH,
        "blockchain.scripthash.unsubscribe" if proto.at_least(&[1, 4, 2]) => SCRIPTHASH,
        "blockchain.transaction.broadcast" => Signature::new(&["raw_tx"], &[]),
        "blockchain.transaction.get" => Signature::new(&["tx_hash"], &["verbose"]),
        "blockchain.transaction.get_merkle" => Signature::new(&["tx_hash", "height"], &[]),
        "blockchain.transaction.id_from_pos" => Signature::new(&["height", "tx_pos"], &["merkle"]),
        _ => return None,
    })
}

/// The first `server.version`: negotiates, or fails and asks for a disconnect (`true`).
pub fn server_version_first(
    server: &Server,
    session: &SessionHandle,
    call: &Call,
) -> (Reply, bool) {
    let sig = signature("server.version", &server_min()).expect("server.version exists");
    let args = match sig.bind(&call.method, &call.params) {
        Ok(a) => a,
        Err(e) => return (Err(e), false),
    };
    if let Some(name) = args.opt(0).filter(|v| truthy(v)) {
        let name = py_str(name);
        if let Some(re) = &server.settings.drop_client {
            if re.is_match(&name) {
                return (
                    Err(RpcError::bad_request(format!("unsupported client: {name}"))),
                    true,
                );
            }
        }
        *session.client_name.lock() = name.chars().take(100).collect();
    }
    let Some(proto) = negotiate(args.opt(1)) else {
        let sent = args.opt(1).map_or("None".into(), py_str);
        return (
            Err(RpcError::bad_request(format!(
                "unsupported protocol version: {sent}"
            ))),
            true,
        );
    };
    let reply = json(&(server_version(), proto.to_string()));
    session.set_protocol(proto);
    (reply, false)
}

/// Python truthiness of an argument.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Answers a request of a negotiated session.
pub async fn dispatch(server: &Arc<Server>, session: &Arc<SessionHandle>, call: &Call) -> Reply {
    let proto = session.protocol().unwrap_or_else(server_min);
    let keva = crate::keva::methods::signature(&server.coin, &call.method);
    let Some(sig) = signature(&call.method, &proto).or(keva) else {
        return Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("unknown method \"{}\"", call.method),
        ));
    };
    let args = sig.bind(&call.method, &call.params)?;
    let a = &args;
    match call.method.as_str() {
        "server.version" => Err(RpcError::bad_request("server.version already sent")),
        "server.banner" => banner(server).await,
        "server.donation_address" => json(&server.settings.donation_address),
        "server.features" => features(server),
        "server.peers.subscribe" => json(&crate::peers::peers_subscribe(session.peer.ip())),
        "server.add_peer" => json(&crate::peers::add_peer(a.req(0), session.peer).await),
        "server.ping" => json(&Value::Null),
        "blockchain.headers.subscribe" => {
            session.headers_subscribed.store(true, Ordering::Relaxed);
            match server.tip() {
                Some(tip) => json(&tip),
                None => Err(RpcError::internal()),
            }
        }
        "blockchain.block.header" => {
            session.charge(charge::header(a.opt(1).is_some_and(truthy)));
            block_header(server, a).await
        }
        "blockchain.block.headers" => {
            let count = a.req(1).as_u64().unwrap_or(0);
            session.charge(charge::headers(count, a.opt(2).is_some_and(truthy)));
            block_headers(server, a).await
        }
        "blockchain.estimatefee" => estimatefee(server, a).await,
        "blockchain.relayfee" => {
            let info = server.daemon_cache.networkinfo(&server.daemon).await?;
            py_number(info.get("relayfee").unwrap_or(&Value::Null))
        }
        "blockchain.scripthash.get_balance" => get_balance(server, session, a).await,
        "blockchain.scripthash.get_history" => get_history(server, session, a).await,
        "blockchain.scripthash.get_mempool" => get_mempool(server, session, a),
        "blockchain.scripthash.listunspent" => listunspent(server, session, a).await,
        "blockchain.scripthash.subscribe" => subscribe(server, session, a).await,
        "blockchain.scripthash.unsubscribe" => {
            let hashx = scripthash(a.req(0))?.hashx();
            let was = session.subs.lock().remove(&hashx).is_some();
            if was {
                server.registry.unsubscribe(session.id, &hashx);
            }
            json(&was)
        }
        "blockchain.transaction.broadcast" => broadcast(server, session, a).await,
        "blockchain.transaction.get" => transaction_get(server, a).await,
        "blockchain.transaction.get_merkle" => get_merkle(server, session, a).await,
        "blockchain.transaction.id_from_pos" => id_from_pos(server, session, a).await,
        "mempool.get_fee_histogram" => {
            let h = server.fee_histogram().await;
            let pairs: Vec<(PyFloat, u64)> = h.iter().map(|(r, s)| (PyFloat(*r), *s)).collect();
            json(&pairs)
        }
        m if keva.is_some() => crate::keva::methods::dispatch(server, m, a).await,
        other => {
            // A signature without a handler is a programming error; answer as unknown.
            warn!("no handler for {other}");
            Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("unknown method \"{other}\""),
            ))
        }
    }
}

async fn banner(server: &Arc<Server>) -> Reply {
    let default = format!("You are connected to a {} server.", server_version());
    let Some(path) = &server.settings.banner_file else {
        return json(&default);
    };
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) => {
            warn!("reading banner file {}: {e}", path.display());
            return json(&default);
        }
    };
    let info = server.daemon_cache.networkinfo(&server.daemon).await?;
    let subversion = info.get("subversion").and_then(Value::as_str).unwrap_or("");
    let text = text
        .replace("$SERVER_VERSION", env!("CARGO_PKG_VERSION"))
        .replace("$SERVER_SUBVERSION", &server_version())
        .replace("$DAEMON_VERSION", &daemon_version(&info))
        .replace("$DAEMON_SUBVERSION", subversion)
        .replace("$DONATION_ADDRESS", &server.settings.donation_address);
    json(&text)
}

/// A map serialized in insertion order.
struct Ordered<V>(Vec<(String, V)>);

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
pub struct Features {
    hosts: Ordered<Ordered<u16>>,
    pruning: Option<u32>,
    server_version: String,
    protocol_min: String,
    protocol_max: String,
    genesis_hash: String,
    hash_function: &'static str,
    services: Vec<String>,
}

fn features(server: &Server) -> Reply {
    json(&server_features(&server.settings, &server.coin))
}

/// Our `server.features`; peer discovery sends it with `server.add_peer`.
pub fn server_features(settings: &ServerSettings, coin: &Coin) -> Features {
    let mut hosts: Vec<(String, Ordered<u16>)> = Vec::new();
    for s in &settings.report_services {
        let host = s.host.to_string();
        let idx = match hosts.iter().position(|(h, _)| *h == host) {
            Some(i) => i,
            None => {
                hosts.push((host, Ordered(Vec::new())));
                hosts.len() - 1
            }
        };
        let ports = &mut hosts[idx].1 .0;
        let key = format!("{}_port", s.kind.name());
        match ports.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = s.port,
            None => ports.push((key, s.port)),
        }
    }
    Features {
        hosts: Ordered(hosts),
        pruning: None,
        server_version: server_version(),
        protocol_min: server_min().to_string(),
        protocol_max: server_max().to_string(),
        genesis_hash: coin.genesis_hash.to_string(),
        hash_function: "sha256",
        services: settings
            .report_services
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

#[derive(Serialize)]
struct Proof {
    branch: Vec<String>,
    root: String,
}

/// The checkpoint proof for `height`, checking `height <= cp_height <= chain height`.
fn header_proof(server: &Server, height: u64, cp_height: u64) -> Result<Proof, RpcError> {
    let tip = server.db_height().map_or(0, |h| u64::from(h.0));
    if !(height <= cp_height && cp_height <= tip) {
        return Err(RpcError::bad_request(format!(
            "require header height {} <= cp_height {} <= chain height {}",
            thousands(height as i128),
            thousands(cp_height as i128),
            thousands(tip as i128)
        )));
    }
    let p = server
        .header_merkle
        .proof(&server.store, cp_height as usize + 1, height as usize)
        .map_err(store_error)?;
    Ok(Proof {
        branch: p.branch,
        root: p.root,
    })
}

fn read_header(server: &Server, height: u64) -> Result<Vec<u8>, RpcError> {
    let h = u32::try_from(height).map_err(|_| out_of_range(height))?;
    match server.db_height() {
        Some(tip) if h <= tip.0 => {}
        _ => return Err(out_of_range(height)),
    }
    server
        .store
        .header(Height(h))
        .map_err(store_error)?
        .ok_or_else(|| out_of_range(height))
}

async fn block_header(server: &Arc<Server>, a: &Args) -> Reply {
    let height = non_negative_integer(a.req(0))?;
    let cp_height = a.opt(1).map(non_negative_integer).transpose()?.unwrap_or(0);
    server
        .blocking(move |s| {
            let header = hex::encode(read_header(s, height)?);
            if cp_height == 0 {
                return json(&header);
            }
            #[derive(Serialize)]
            struct WithProof {
                header: String,
                #[serde(flatten)]
                proof: Proof,
            }
            json(&WithProof {
                header,
                proof: header_proof(s, height, cp_height)?,
            })
        })
        .await
}

async fn block_headers(server: &Arc<Server>, a: &Args) -> Reply {
    let start = non_negative_integer(a.req(0))?;
    let count = non_negative_integer(a.req(1))?.min(MAX_CHUNK_SIZE);
    let cp_height = a.opt(2).map(non_negative_integer).transpose()?.unwrap_or(0);
    server
        .blocking(move |s| {
            let headers = match (u32::try_from(start), s.db_height()) {
                (Ok(h), Some(tip)) if h <= tip.0 => s
                    .store
                    .headers(Height(h), count as u32)
                    .map_err(store_error)?,
                _ => Vec::new(),
            };
            let n = headers.len() as u64;
            #[derive(Serialize)]
            struct Headers {
                hex: String,
                count: u64,
                max: u64,
                #[serde(flatten, skip_serializing_if = "Option::is_none")]
                proof: Option<Proof>,
            }
            let proof = if n > 0 && cp_height > 0 {
                Some(header_proof(s, start + n - 1, cp_height)?)
            } else {
                None
            };
            json(&Headers {
                hex: hex::encode(headers.concat()),
                count: n,
                max: MAX_CHUNK_SIZE,
                proof,
            })
        })
        .await
}

async fn estimatefee(server: &Arc<Server>, a: &Args) -> Reply {
    let number = non_negative_integer(a.req(0))?;
    let mode = estimatefee_mode(a.opt(1))?;
    let number = if server.coin.name == "Bitcoin" {
        bitcoin_target_bucket(number)
    } else {
        number
    };
    let tip = server.tip().map(|t| t.hash).unwrap_or_default();
    let rate = server
        .daemon_cache
        .estimatefee(
            &server.daemon,
            tip,
            number,
            mode,
            server.coin.estimatesmartfee,
        )
        .await?;
    py_number(&rate)
}

#[derive(Serialize)]
struct HistoryItem {
    tx_hash: String,
    height: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fee: Option<u64>,
}

async fn get_balance(server: &Arc<Server>, session: &Arc<SessionHandle>, a: &Args) -> Reply {
    let sh = scripthash(a.req(0))?;
    let session = session.clone();
    server
        .blocking(move |s| {
            let b = s.query.balance(&sh).map_err(store_error)?;
            // As ElectrumX: a balance costs like listing the UTXOs it sums.
            session.charge(charge::utxos(b.utxos));
            #[derive(Serialize)]
            struct Balance {
                confirmed: u64,
                unconfirmed: i64,
            }
            json(&Balance {
                confirmed: b.confirmed,
                unconfirmed: b.unconfirmed,
            })
        })
        .await
}

async fn get_history(server: &Arc<Server>, session: &Arc<SessionHandle>, a: &Args) -> Reply {
    let hashx = scripthash(a.req(0))?.hashx();
    let session = session.clone();
    server
        .blocking(move |s| {
            let h = FullHistory::read(&s.store, &s.mempool, &hashx, s.history_limit)
                .map_err(history_error)?;
            session.charge(charge::history(h.confirmed.len(), h.mempool.len()));
            let items: Vec<HistoryItem> = h
                .confirmed
                .iter()
                .map(|c| HistoryItem {
                    tx_hash: c.txid.to_string(),
                    height: i64::from(c.height.0),
                    fee: None,
                })
                .chain(h.mempool.iter().map(|m| HistoryItem {
                    tx_hash: m.txid.to_string(),
                    height: i64::from(m.height),
                    fee: Some(m.fee),
                }))
                .collect();
            json(&items)
        })
        .await
}

fn get_mempool(server: &Arc<Server>, session: &SessionHandle, a: &Args) -> Reply {
    let hashx = scripthash(a.req(0))?.hashx();
    let entries = server.mempool.read().history(&hashx);
    session.charge(charge::mempool(entries.len()));
    let items: Vec<HistoryItem> = entries
        .iter()
        .map(|m| HistoryItem {
            tx_hash: m.txid.to_string(),
            height: i64::from(m.height),
            fee: Some(m.fee),
        })
        .collect();
    json(&items)
}

async fn listunspent(server: &Arc<Server>, session: &Arc<SessionHandle>, a: &Args) -> Reply {
    let sh = scripthash(a.req(0))?;
    let session = session.clone();
    server
        .blocking(move |s| {
            #[derive(Serialize)]
            struct Utxo {
                tx_hash: String,
                tx_pos: u32,
                height: u32,
                value: u64,
            }
            let utxos: Vec<Utxo> = s
                .query
                .unspent(&sh)
                .map_err(store_error)?
                .into_iter()
                .map(|u| Utxo {
                    tx_hash: u.txid.to_string(),
                    tx_pos: u.vout,
                    height: u.height,
                    value: u.value,
                })
                .collect();
            session.charge(charge::utxos(utxos.len()));
            json(&utxos)
        })
        .await
}

async fn subscribe(server: &Arc<Server>, session: &Arc<SessionHandle>, a: &Args) -> Reply {
    let arg = a.req(0);
    let hashx = scripthash(arg)?.hashx();
    // Notifications name the script hash exactly as the client wrote it.
    let alias = arg.as_str().unwrap_or_default().to_string();
    let cap = server.settings.limits.max_subs_per_session;
    let over_cap = {
        let subs = session.subs.lock();
        cap > 0 && subs.len() >= cap && !subs.contains_key(&hashx)
    };
    if over_cap {
        server.stats.limits.bump(super::stats::Limit::SubsRefused);
        return Err(RpcError::bad_request(format!(
            "too many subscriptions: at most {} per session",
            thousands(cap as i128)
        )));
    }
    let sess = session.clone();
    let status = server
        .blocking(move |s| {
            FullHistory::read(&s.store, &s.mempool, &hashx, s.history_limit)
                .map(|h| {
                    sess.charge(charge::status(h.confirmed.len() + h.mempool.len()));
                    h.status()
                })
                .map_err(history_error)
        })
        .await?;
    // Stored only once the status is known, as ElectrumX does.
    session.subs.lock().insert(
        hashx,
        Sub {
            alias,
            status: status.clone(),
        },
    );
    server.registry.subscribe(session.id, hashx);
    json(&status)
}

async fn broadcast(server: &Arc<Server>, session: &SessionHandle, a: &Args) -> Reply {
    let raw = hex_string(a.req(0))?.to_string();
    session.charge(charge::broadcast(raw.len()));
    match server
        .daemon
        .call::<Value>("sendrawtransaction", vec![Value::from(raw.clone())])
        .await
    {
        Ok(txid) => {
            info!("session {}: sent tx {}", session.id, py_str(&txid));
            session.counters.txs_sent.fetch_add(1, Ordering::Relaxed);
            server.stats.txs_sent.fetch_add(1, Ordering::Relaxed);
            server.mempool_kick.notify_one();
            json(&txid)
        }
        Err(DaemonError::Rpc(e)) => {
            info!(
                "session {}: error sending transaction: {}",
                session.id, e.message
            );
            Err(RpcError::bad_request(format!(
                "the transaction was rejected by network rules.\n\n{}\n[{raw}]",
                e.message
            )))
        }
        Err(e) => Err(daemon_error(e)),
    }
}

async fn transaction_get(server: &Arc<Server>, a: &Args) -> Reply {
    let txid: Txid = tx_hash(a.req(0))?;
    let verbose = match a.opt(1) {
        None => false,
        Some(v) => {
            boolean(v).ok_or_else(|| RpcError::bad_request("\"verbose\" must be a boolean"))?
        }
    };
    // The client's text goes to the daemon as sent; the verbose object comes back unchanged.
    if !verbose {
        return server
            .daemon_cache
            .raw_transaction(&server.daemon, txid, a.req(0))
            .await;
    }
    server
        .daemon
        .call::<Box<RawValue>>("getrawtransaction", vec![a.req(0).clone(), Value::from(1)])
        .await
        .map_err(daemon_error)
}

async fn get_merkle(server: &Arc<Server>, session: &Arc<SessionHandle>, a: &Args) -> Reply {
    let txid: Txid = tx_hash(a.req(0))?;
    let height = non_negative_integer(a.req(1))?;
    let session = session.clone();
    server
        .blocking(move |s| {
            read_header(s, height)?;
            let tree = s
                .tx_trees
                .get(&s.store, Height(height as u32))
                .map_err(store_error)?
                .ok_or_else(|| out_of_range(height))?;
            session.charge(charge::merkle(tree.len()));
            let pos = tree.position(&txid).ok_or_else(|| {
                RpcError::bad_request(format!(
                    "tx {txid} not in block at height {}",
                    thousands(height as i128)
                ))
            })?;
            #[derive(Serialize)]
            struct Merkle {
                block_height: u64,
                merkle: Vec<String>,
                pos: usize,
            }
            json(&Merkle {
                block_height: height,
                merkle: tree.branch(pos),
                pos,
            })
        })
        .await
}

async fn id_from_pos(server: &Arc<Server>, session: &Arc<SessionHandle>, a: &Args) -> Reply {
    let tx_pos = non_negative_integer(a.req(1))?;
    let height = non_negative_integer(a.req(0))?;
    let merkle = match a.opt(2) {
        None => false,
        Some(v) => {
            boolean(v).ok_or_else(|| RpcError::bad_request("\"merkle\" must be a boolean"))?
        }
    };
    let session = session.clone();
    server
        .blocking(move |s| {
            let tip = s.db_height().map_or(0, |h| u64::from(h.0));
            let not_on_disk = || {
                RpcError::bad_request(format!(
                    "db error: DBError('block {} not on disk (>{})')",
                    thousands(height as i128),
                    thousands(tip as i128)
                ))
            };
            if height > tip {
                return Err(not_on_disk());
            }
            let tree = s
                .tx_trees
                .get(&s.store, Height(height as u32))
                .map_err(store_error)?
                .ok_or_else(not_on_disk)?;
            session.charge(charge::merkle(tree.len()));
            let txid = usize::try_from(tx_pos)
                .ok()
                .and_then(|p| tree.txid(p))
                .ok_or_else(|| {
                    RpcError::bad_request(format!(
                        "no tx at position {} in block at height {}",
                        thousands(tx_pos as i128),
                        thousands(height as i128)
                    ))
                })?;
            if merkle {
                #[derive(Serialize)]
                struct WithMerkle {
                    tx_hash: String,
                    merkle: Vec<String>,
                }
                json(&WithMerkle {
                    tx_hash: txid.to_string(),
                    merkle: tree.branch(tx_pos as usize),
                })
            } else {
                json(&txid.to_string())
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_availability_by_version() {
        let v14 = Protocol::new(&[1, 4]);
        let v141 = Protocol::new(&[1, 4, 1]);
        let v142 = Protocol::new(&[1, 4, 2]);
        assert!(signature("blockchain.scripthash.unsubscribe", &v14).is_none());
        assert!(signature("blockchain.scripthash.unsubscribe", &v141).is_none());
        assert!(signature("blockchain.scripthash.unsubscribe", &v142).is_some());
        assert!(signature("blockchain.relayfee", &v142).is_some());
        for gone in [
            "blockchain.address.get_balance",
            "blockchain.numblocks.subscribe",
            "blockchain.block.get_header",
            "blockchain.block.get_chunk",
            "blockchain.utxo.get_address",
            "mempool.get_info",
        ] {
            assert!(signature(gone, &v142).is_none(), "{gone}");
        }
    }

    #[test]
    fn floats_serialize_like_python() {
        let r = json(&vec![(PyFloat(20.5), 35000u64), (PyFloat(1.0), 78000)]).unwrap();
        assert_eq!(r.get(), "[[20.5,35000],[1.0,78000]]");
        assert_eq!(
            py_number(&serde_json::json!(0.00001)).unwrap().get(),
            "1e-05"
        );
        assert_eq!(py_number(&serde_json::json!(-1)).unwrap().get(), "-1");
    }

    #[test]
    fn ordered_features_shape() {
        let hosts = Ordered(vec![(
            "h.example".to_string(),
            Ordered(vec![
                ("tcp_port".to_string(), 50001u16),
                ("ssl_port".to_string(), 50002),
            ]),
        )]);
        let f = Features {
            hosts,
            pruning: None,
            server_version: "Sextant 0".into(),
            protocol_min: "1.4".into(),
            protocol_max: "1.4.2".into(),
            genesis_hash: "00".into(),
            hash_function: "sha256",
            services: vec!["tcp://h.example:50001".into()],
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"hosts":{"h.example":{"tcp_port":50001,"ssl_port":50002}},"pruning":null,"server_version":"Sextant 0","protocol_min":"1.4","protocol_max":"1.4.2","genesis_hash":"00","hash_function":"sha256","services":["tcp://h.example:50001"]}"#
        );
    }
}
