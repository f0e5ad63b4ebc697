//! The answers of protocol 1.4 – 1.7, with ElectrumX's validation order and error texts.

use std::sync::Arc;

use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::warn;

use super::broadcast::{broadcast, broadcast_package};
use super::daemon_calls::{
    self, bitcoin_target_bucket, daemon_error, daemon_version, estimatefee_mode, MempoolInfo,
};
use super::jsonrpc::{Call, RpcError};
use super::method::{Method, Request};
use super::params::{
    boolean, hex_string, non_negative_integer, odd_hex_string, script_pubkey, scripthash, truthy,
    tx_hash, Args,
};
use super::pyfmt::{py_float, py_str, thousands};
use super::version::{negotiate, server_max, server_min, Version};
use super::{cost, json, keva, server_version, store_error, Caller, Electrum, Reply};
use crate::coin::Coin;
use crate::config::ServerSettings;
use crate::query::{Answer, AnswerKind, FullHistory, HistoryError, ScriptData};
use crate::types::{HashX, Height, OutPoint, ScriptHash, Txid};

/// Most headers one `blockchain.block.headers` returns.
pub(crate) const MAX_CHUNK_SIZE: u64 = 2016;

/// A float printed as Python prints it (`1e-05`, `20.0`), so replies match ElectrumX's bytes.
pub(crate) struct PyFloat(pub f64);

impl Serialize for PyFloat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawValue::from_string(py_float(self.0))
            .map_err(S::Error::custom)?
            .serialize(s)
    }
}

/// A daemon number as the reply: integers as they are, floats in Python's form.
fn py_number(v: &Value) -> Reply {
    Ok(daemon_calls::py_number(v).into())
}

/// ElectrumX 2's error code for a history longer than `MAX_SEND` allows.
pub(crate) const HISTORY_TOO_LARGE: i64 = 10_001;

fn history_error(e: HistoryError, version: &Version) -> RpcError {
    match e {
        // ElectrumX ≤ 1.18 (and so protocol < 1.7) use code 1, which the Komodo DeFi client
        // expects; ElectrumX 2 sends 10001, which 1.7 clients get.
        HistoryError::TooLarge if version.is_1_7() => {
            RpcError::new(HISTORY_TOO_LARGE, "history too large")
        }
        HistoryError::TooLarge => RpcError::bad_request("history too large"),
        HistoryError::Store(e) => store_error(e),
    }
}

fn out_of_range(height: u64) -> RpcError {
    RpcError::bad_request(format!("height {} out of range", thousands(height as i128)))
}

impl Electrum {
    /// The first `server.version`: negotiates, or fails and asks for a disconnect (`true`).
    pub(crate) fn version_first(&self, caller: &dyn Caller, call: &Call) -> (Reply, bool) {
        let args = match Method::ServerVersion
            .signature()
            .bind(&call.method, &call.params)
        {
            Ok(a) => a,
            Err(e) => return (Err(e), false),
        };
        let mut client_name = None;
        if let Some(name) = args.opt(0).filter(|v| truthy(v)) {
            let name = py_str(name);
            if let Some(re) = &self.settings.drop_client {
                if re.is_match(&name) {
                    return (
                        Err(RpcError::bad_request(format!("unsupported client: {name}"))),
                        true,
                    );
                }
            }
            client_name = Some(name.chars().take(100).collect());
        }
        let Some(version) = negotiate(args.opt(1)) else {
            let sent = args.opt(1).map_or("None".into(), py_str);
            return (
                Err(RpcError::bad_request(format!(
                    "unsupported protocol version: {sent}"
                ))),
                true,
            );
        };
        let reply = json(&(server_version(), version.to_string()));
        caller.identified(client_name, version);
        (reply, false)
    }

    /// Answers a request of a negotiated session.
    pub(crate) async fn answer(self: &Arc<Self>, caller: &Arc<dyn Caller>, req: &Request) -> Reply {
        let a = &req.args;
        match req.method {
            Method::ServerVersion => Err(RpcError::bad_request("server.version already sent")),
            Method::ServerBanner => banner(self).await,
            Method::ServerDonationAddress => json(&self.settings.donation_address),
            Method::ServerFeatures => {
                let mut features = server_features(&self.settings, &self.coin);
                if req.version.is_1_7() {
                    features.hash_function = None;
                }
                json(&features)
            }
            Method::ServerPeersSubscribe => json(&self.peers.subscribe(caller.peer().ip())),
            Method::ServerAddPeer => json(&self.peers.add_peer(a.req(0), caller.peer().ip()).await),
            Method::ServerPing => ping(self, a, &req.version),
            Method::HeadersSubscribe => {
                caller.subscribe_headers();
                match self.query.tip() {
                    Some(tip) => json(&tip),
                    None => Err(RpcError::internal()),
                }
            }
            Method::BlockHeader => {
                caller.charge(cost::header(a.opt(1).is_some_and(truthy)));
                block_header(self, a).await
            }
            Method::BlockHeaders => {
                let count = a.req(1).as_u64().unwrap_or(0);
                caller.charge(cost::headers(count, a.opt(2).is_some_and(truthy)));
                block_headers(self, a, req.version.headers_as_list()).await
            }
            Method::EstimateFee => estimatefee(self, a).await,
            Method::RelayFee => {
                let info = self.daemon_cache.networkinfo(&self.daemon).await?;
                py_number(info.get("relayfee").unwrap_or(&Value::Null))
            }
            Method::GetBalance => get_balance(self, caller, scripthash(a.req(0))?).await,
            Method::GetHistory => {
                get_history(self, caller, scripthash(a.req(0))?, req.version.clone()).await
            }
            Method::GetMempool => get_mempool(self, caller.as_ref(), scripthash(a.req(0))?),
            Method::ListUnspent => listunspent(self, caller, scripthash(a.req(0))?).await,
            Method::Subscribe => {
                // Notifications name the script hash exactly as the client wrote it.
                let alias = a.req(0).as_str().unwrap_or_default().to_string();
                let sh = scripthash(a.req(0))?;
                subscribe(self, caller, sh, alias, req.version.clone()).await
            }
            Method::Unsubscribe => {
                let hashx = scripthash(a.req(0))?.hashx();
                json(&caller.unsubscribe(&hashx))
            }
            // 1.7 names scripts by their scriptPubKey; the answers are 1.6's, wrapped in an
            // object, and notifications name the script hash computed from it.
            Method::SpkGetBalance => get_balance(self, caller, script_pubkey(a.req(0))?).await,
            Method::SpkGetHistory => {
                let sh = script_pubkey(a.req(0))?;
                let history = get_history(self, caller, sh, req.version.clone()).await?;
                json(&Wrapped { history: &history })
            }
            Method::SpkGetMempool => {
                let history = get_mempool(self, caller.as_ref(), script_pubkey(a.req(0))?)?;
                json(&Wrapped { history: &history })
            }
            Method::SpkListUnspent => {
                let utxos = listunspent(self, caller, script_pubkey(a.req(0))?).await?;
                #[derive(Serialize)]
                struct Utxos<'a> {
                    utxos: &'a RawValue,
                }
                json(&Utxos { utxos: &utxos })
            }
            Method::SpkSubscribe => {
                let sh = script_pubkey(a.req(0))?;
                subscribe(self, caller, sh, sh.to_string(), req.version.clone()).await
            }
            Method::SpkUnsubscribe => {
                let hashx = script_pubkey(a.req(0))?.hashx();
                json(&caller.unsubscribe(&hashx))
            }
            Method::TestMempoolAccept => {
                super::broadcast::testmempoolaccept(self, caller.as_ref(), a).await
            }
            Method::OutpointSubscribe | Method::OutpointGetStatus => {
                let op = outpoint(a)?;
                hex_string(a.req(2))?;
                let subscribe = req.method == Method::OutpointSubscribe;
                if subscribe {
                    if let Err(cap) = caller.subscribe_outpoint(op) {
                        return Err(RpcError::bad_request(format!(
                            "too many subscriptions: at most {} per session",
                            thousands(cap as i128)
                        )));
                    }
                }
                caller.charge(cost::OUTPOINT_STATUS);
                let status = self
                    .outpoint_statuses(vec![op])
                    .await
                    .map_err(store_error)
                    .map(|mut s| s.remove(&op).unwrap_or_default());
                if status.is_err() && subscribe {
                    // Stored only once the status is known, as ElectrumX does.
                    caller.unsubscribe_outpoint(&op);
                }
                json(&status?)
            }
            Method::OutpointUnsubscribe => {
                let op = outpoint(a)?;
                json(&caller.unsubscribe_outpoint(&op))
            }
            Method::MempoolRecent => {
                #[derive(Serialize)]
                struct Recent {
                    txid: String,
                    fee: u64,
                    vsize: u32,
                }
                let recent: Vec<Recent> = self
                    .query
                    .mempool_recent(MEMPOOL_RECENT)
                    .into_iter()
                    .map(|(txid, fee, vsize)| Recent {
                        txid: txid.to_string(),
                        fee,
                        vsize,
                    })
                    .collect();
                json(&recent)
            }
            Method::Broadcast => broadcast(self, caller.as_ref(), a).await,
            Method::BroadcastPackage => {
                let verbose = a.opt(1).is_some_and(truthy);
                broadcast_package(self, caller.as_ref(), a, verbose).await
            }
            Method::TransactionGet => transaction_get(self, a).await,
            Method::GetMerkle => get_merkle(self, caller, a).await,
            Method::IdFromPos => id_from_pos(self, caller, a).await,
            Method::FeeHistogram => {
                let h = self.query.fee_histogram().await;
                let pairs: Vec<(PyFloat, u64)> = h.iter().map(|(r, s)| (PyFloat(*r), *s)).collect();
                json(&pairs)
            }
            Method::MempoolInfo => mempool_info(self).await,
            Method::BlockCount => json(&self.query.db_height().map_or(0, |h| h.0)),
            Method::KevaGetKeyvalues
            | Method::KevaGetHashtag
            | Method::KevaGetKeyvalueReactions
            | Method::KevaGetTransactionsInfo => keva::answer(self, req.method, a).await,
        }
    }
}

/// An outpoint argument pair (`tx_hash`, `txout_idx`), checked in ElectrumX's order. An index
/// past any output's is an outpoint that does not exist.
fn outpoint(a: &Args) -> Result<OutPoint, RpcError> {
    let txid = tx_hash(a.req(0))?;
    let vout = non_negative_integer(a.req(1))?;
    Ok(OutPoint {
        txid,
        vout: u32::try_from(vout).unwrap_or(u32::MAX),
    })
}

/// `mempool.recent`: how many of the newest mempool transactions it lists.
const MEMPOOL_RECENT: usize = 10;

/// A 1.7 history answer: `{"history": [...]}`.
#[derive(Serialize)]
struct Wrapped<'a> {
    history: &'a RawValue,
}

/// `server.ping`: nothing before 1.7; from 1.7 `data` (hex, odd length allowed) is checked and
/// ignored, and `pong_len` zeros come back as `{"data": "000…"}` (at most `MAX_SEND`).
fn ping(server: &Electrum, a: &Args, version: &Version) -> Reply {
    if !version.is_1_7() {
        return json(&Value::Null);
    }
    if let Some(data) = a.opt(1) {
        odd_hex_string(data)?;
    }
    let pong_len = a.opt(0).map(non_negative_integer).transpose()?.unwrap_or(0);
    if pong_len > server.settings.max_send as u64 {
        return Err(RpcError::bad_request("pong_len value too high"));
    }
    #[derive(Serialize)]
    struct Pong {
        data: String,
    }
    json(&Pong {
        data: "0".repeat(pong_len as usize),
    })
}

/// A client's `server.ping` notification (1.7): `data`, if any, must be hex; nothing is
/// answered. `Err` is what ElectrumX would charge as an error.
pub(crate) fn ping_notification(call: &Call) -> Result<(), RpcError> {
    let args = super::params::Signature::new(&[], &["data"]).bind(&call.method, &call.params)?;
    match args.opt(0) {
        Some(data) => odd_hex_string(data),
        None => Ok(()),
    }
}

async fn banner(server: &Arc<Electrum>) -> Reply {
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
pub(crate) struct Features {
    hosts: Ordered<Ordered<u16>>,
    pruning: Option<u32>,
    server_version: String,
    protocol_min: String,
    protocol_max: String,
    genesis_hash: String,
    /// Gone at 1.7 (ElectrumX drops it for 1.7 sessions; peers still read it, so the
    /// advertised features keep it).
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_function: Option<&'static str>,
    services: Vec<String>,
}

/// Our `server.features`; peer discovery sends it with `server.add_peer`.
pub(crate) fn server_features(settings: &ServerSettings, coin: &Coin) -> Features {
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
        hash_function: Some("sha256"),
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
fn header_proof(server: &Electrum, height: u64, cp_height: u64) -> Result<Proof, RpcError> {
    let tip = server.query.db_height().map_or(0, |h| u64::from(h.0));
    if !(height <= cp_height && cp_height <= tip) {
        return Err(RpcError::bad_request(format!(
            "require header height {} <= cp_height {} <= chain height {}",
            thousands(height as i128),
            thousands(cp_height as i128),
            thousands(tip as i128)
        )));
    }
    let p = server
        .query
        .header_proof(height as u32, cp_height as u32)
        .map_err(store_error)?;
    Ok(Proof {
        branch: p.branch,
        root: p.root,
    })
}

fn read_header(server: &Electrum, height: u64) -> Result<Vec<u8>, RpcError> {
    let h = u32::try_from(height).map_err(|_| out_of_range(height))?;
    server
        .query
        .header(Height(h))
        .map_err(store_error)?
        .ok_or_else(|| out_of_range(height))
}

async fn block_header(server: &Arc<Electrum>, a: &Args) -> Reply {
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

/// Up to [`MAX_CHUNK_SIZE`] headers from `start`: one concatenated hex string (`hex`) before
/// 1.6, a list (`headers`) from 1.6; with a proof of the last one when `cp_height` is given.
async fn block_headers(server: &Arc<Electrum>, a: &Args, as_list: bool) -> Reply {
    let start = non_negative_integer(a.req(0))?;
    let count = non_negative_integer(a.req(1))?.min(MAX_CHUNK_SIZE);
    let cp_height = a.opt(2).map(non_negative_integer).transpose()?.unwrap_or(0);
    server
        .blocking(move |s| {
            let headers = match u32::try_from(start) {
                Ok(h) => s
                    .query
                    .headers(Height(h), count as u32)
                    .map_err(store_error)?,
                Err(_) => Vec::new(),
            };
            let n = headers.len() as u64;
            let proof = if n > 0 && cp_height > 0 {
                Some(header_proof(s, start + n - 1, cp_height)?)
            } else {
                None
            };
            // Fields in ElectrumX's order.
            #[derive(Serialize)]
            struct Concatenated {
                hex: String,
                count: u64,
                max: u64,
                #[serde(flatten, skip_serializing_if = "Option::is_none")]
                proof: Option<Proof>,
            }
            #[derive(Serialize)]
            struct Listed {
                count: u64,
                max: u64,
                headers: Vec<String>,
                #[serde(flatten, skip_serializing_if = "Option::is_none")]
                proof: Option<Proof>,
            }
            if as_list {
                json(&Listed {
                    count: n,
                    max: MAX_CHUNK_SIZE,
                    headers: headers.iter().map(hex::encode).collect(),
                    proof,
                })
            } else {
                json(&Concatenated {
                    hex: hex::encode(headers.concat()),
                    count: n,
                    max: MAX_CHUNK_SIZE,
                    proof,
                })
            }
        })
        .await
}

/// `getmempoolinfo`'s fee rates (with `getnetworkinfo`'s increment for daemons that lack it
/// there); uncached, as ElectrumX.
async fn mempool_info(server: &Electrum) -> Reply {
    let mempool: Value = server
        .daemon
        .call("getmempoolinfo", vec![])
        .await
        .map_err(daemon_error)?;
    let networkinfo = if MempoolInfo::needs_networkinfo(&mempool) {
        Some(server.daemon_cache.networkinfo(&server.daemon).await?)
    } else {
        None
    };
    let info = MempoolInfo::from_daemon(&mempool, networkinfo.as_ref()).ok_or_else(|| {
        warn!("getmempoolinfo lacks a fee rate: {mempool}");
        RpcError::internal()
    })?;
    json(&info)
}

async fn estimatefee(server: &Arc<Electrum>, a: &Args) -> Reply {
    let number = non_negative_integer(a.req(0))?;
    let mode = estimatefee_mode(a.opt(1))?;
    let number = if server.coin.name == "Bitcoin" {
        bitcoin_target_bucket(number)
    } else {
        number
    };
    let tip = server.query.tip().map(|t| t.hash).unwrap_or_default();
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

/// The kept answer's JSON, charged what building it cost.
fn served(session: &dyn Caller, answer: &Answer) -> Reply {
    session.charge(answer.cost);
    Ok(answer.json.clone())
}

/// A query failure of an answer that has no history limit (unspent outputs, balances).
fn unlimited_error(e: HistoryError) -> RpcError {
    match e {
        HistoryError::Store(e) => store_error(e),
        HistoryError::TooLarge => RpcError::internal(),
    }
}

async fn get_balance(server: &Arc<Electrum>, session: &Arc<dyn Caller>, sh: ScriptHash) -> Reply {
    let session = session.clone();
    server
        .blocking(move |s| {
            let answer = s.query.answer(
                &sh,
                AnswerKind::Balance,
                usize::MAX,
                unlimited_error,
                |data| {
                    let ScriptData::Balance(b) = data else {
                        unreachable!("a balance is asked for")
                    };
                    #[derive(Serialize)]
                    struct Balance {
                        confirmed: u64,
                        unconfirmed: i64,
                    }
                    Ok(Answer {
                        json: json(&Balance {
                            confirmed: b.confirmed,
                            unconfirmed: b.unconfirmed,
                        })?,
                        // As ElectrumX: a balance costs like listing the UTXOs it sums.
                        cost: cost::utxos(b.utxos),
                    })
                },
            )?;
            served(session.as_ref(), &answer)
        })
        .await
}

async fn get_history(
    server: &Arc<Electrum>,
    session: &Arc<dyn Caller>,
    sh: ScriptHash,
    version: Version,
) -> Reply {
    let session = session.clone();
    server
        .blocking(move |s| {
            let answer = s.query.answer(
                &sh,
                AnswerKind::History,
                s.history_limit,
                |e| history_error(e, &version),
                |data| {
                    let ScriptData::History(h) = data else {
                        unreachable!("a history is asked for")
                    };
                    Ok(Answer {
                        json: history_json(&h)?,
                        cost: cost::history(h.confirmed.len(), h.mempool.len()),
                    })
                },
            )?;
            served(session.as_ref(), &answer)
        })
        .await
}

fn history_json(h: &FullHistory) -> Reply {
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
}

fn get_mempool(server: &Electrum, session: &dyn Caller, sh: ScriptHash) -> Reply {
    let hashx = sh.hashx();
    let entries = server.query.mempool_history(&hashx);
    session.charge(cost::mempool(entries.len()));
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

async fn listunspent(server: &Arc<Electrum>, session: &Arc<dyn Caller>, sh: ScriptHash) -> Reply {
    let session = session.clone();
    server
        .blocking(move |s| {
            let answer = s.query.answer(
                &sh,
                AnswerKind::Unspent,
                usize::MAX,
                unlimited_error,
                |data| {
                    let ScriptData::Unspent(unspent) = data else {
                        unreachable!("unspent outputs are asked for")
                    };
                    #[derive(Serialize)]
                    struct Utxo {
                        tx_hash: String,
                        tx_pos: u32,
                        height: u32,
                        value: u64,
                    }
                    let utxos: Vec<Utxo> = unspent
                        .into_iter()
                        .map(|u| Utxo {
                            tx_hash: u.txid.to_string(),
                            tx_pos: u.vout,
                            height: u.height,
                            value: u.value,
                        })
                        .collect();
                    Ok(Answer {
                        json: json(&utxos)?,
                        cost: cost::utxos(utxos.len()),
                    })
                },
            )?;
            served(session.as_ref(), &answer)
        })
        .await
}

/// Subscribes to a script; `alias` is the name its notifications carry.
async fn subscribe(
    server: &Arc<Electrum>,
    session: &Arc<dyn Caller>,
    sh: ScriptHash,
    alias: String,
    version: Version,
) -> Reply {
    let hashx = sh.hashx();
    if let Err(cap) = session.may_subscribe(&hashx) {
        return Err(RpcError::bad_request(format!(
            "too many subscriptions: at most {} per session",
            thousands(cap as i128)
        )));
    }
    // The place is given back if the status fails or the request is dropped (timed out).
    let reserved = Reserved { session, hashx };
    let sess = session.clone();
    let status = server
        .blocking(move |s| {
            s.query
                .status(&hashx, s.history_limit)
                .map(|(items, status)| {
                    sess.charge(cost::status(items));
                    status
                })
                .map_err(|e| history_error(e, &version))
        })
        .await?;
    // Stored only once the status is known, as ElectrumX does.
    std::mem::forget(reserved);
    session.subscribed(hashx, alias, status.clone());
    json(&status)
}

/// A subscription place reserved under the cap while the status is computed.
struct Reserved<'a> {
    session: &'a Arc<dyn Caller>,
    hashx: HashX,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.session.not_subscribed(&self.hashx);
    }
}

async fn transaction_get(server: &Electrum, a: &Args) -> Reply {
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
            .raw_transaction(&server.daemon, &server.query, txid, a.req(0))
            .await
            .map(Arc::from);
    }
    server
        .daemon
        .call::<Box<RawValue>>("getrawtransaction", vec![a.req(0).clone(), Value::from(1)])
        .await
        .map(Arc::from)
        .map_err(daemon_error)
}

async fn get_merkle(server: &Arc<Electrum>, session: &Arc<dyn Caller>, a: &Args) -> Reply {
    let txid: Txid = tx_hash(a.req(0))?;
    let height = non_negative_integer(a.req(1))?;
    let session = session.clone();
    server
        .blocking(move |s| {
            read_header(s, height)?;
            let tree = s
                .query
                .tx_tree(Height(height as u32))
                .map_err(store_error)?
                .ok_or_else(|| out_of_range(height))?;
            session.charge(cost::merkle(tree.len()));
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

async fn id_from_pos(server: &Arc<Electrum>, session: &Arc<dyn Caller>, a: &Args) -> Reply {
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
            let tip = s.query.db_height().map_or(0, |h| u64::from(h.0));
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
                .query
                .tx_tree(Height(height as u32))
                .map_err(store_error)?
                .ok_or_else(not_on_disk)?;
            session.charge(cost::merkle(tree.len()));
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
    fn floats_serialize_like_python() {
        let r = json(&vec![(PyFloat(20.5), 35000u64), (PyFloat(1.0), 78000)]).unwrap();
        assert_eq!(r.get(), "[[20.5,35000],[1.0,78000]]");
        assert_eq!(
            py_number(&serde_json::json!(0.00001)).unwrap().get(),
            "1e-05"
        );
        assert_eq!(py_number(&serde_json::json!(2.0)).unwrap().get(), "2.0");
        assert_eq!(py_number(&serde_json::json!(-1)).unwrap().get(), "-1");
    }

    #[test]
    fn history_too_large_has_its_own_code_from_1_7() {
        let e = history_error(HistoryError::TooLarge, &Version::new(&[1, 6]));
        assert_eq!((e.code, e.message.as_str()), (1, "history too large"));
        let e = history_error(HistoryError::TooLarge, &Version::new(&[1, 7]));
        assert_eq!((e.code, e.message.as_str()), (10_001, "history too large"));
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
            protocol_max: "1.7.0".into(),
            genesis_hash: "00".into(),
            hash_function: Some("sha256"),
            services: vec!["tcp://h.example:50001".into()],
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"hosts":{"h.example":{"tcp_port":50001,"ssl_port":50002}},"pruning":null,"server_version":"Sextant 0","protocol_min":"1.4","protocol_max":"1.7.0","genesis_hash":"00","hash_function":"sha256","services":["tcp://h.example:50001"]}"#
        );
        // 1.7 sessions get it without `hash_function`.
        let f = Features {
            hash_function: None,
            ..f
        };
        assert!(!serde_json::to_string(&f).unwrap().contains("hash_function"));
    }
}
