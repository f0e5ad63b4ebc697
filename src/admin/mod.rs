//! The admin RPC on the `rpc://` service: newline-framed JSON-RPC answering `electrumx_rpc`'s
//! commands in ElectrumX's shapes (`getinfo`, `sessions`, `groups`, `peers`, `add_peer`,
//! `disconnect`, `log`, `inspect_session`, `daemon_url`, `query`, `reorg`, `stop`). No
//! `server.version`, no cost limits, no response cap: it is for the operator, on loopback by
//! default.
//!
//! As in ElectrumX the listener opens at start-up, before the initial sync, so an operator can
//! follow or stop a long sync: until the Electrum service is attached ([`AdminState::attach`])
//! the answers say what is known (heights, no sessions).

mod query;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::coin::Coin;
use crate::config::{DaemonUrl, Service};
use crate::daemon::Daemon;
use crate::index::notarized::Notarized;
use crate::index::{missing_undo, ForcedReorg, ForcedReorgError};
use crate::peers::PeerManager;
use crate::protocol::jsonrpc::{
    self, Call, Dialect, Incoming, Member, Params, RpcError, INVALID_ARGS, METHOD_NOT_FOUND,
};
use crate::protocol::pyfmt::thousands;
use crate::protocol::{server_version, store_error};
use crate::sessions::cost::GroupInfo;
use crate::sessions::session::SessionHandle;
use crate::sessions::stats::INVALID_METHOD;
use crate::sessions::Sessions;
use crate::store::Store;

/// What the admin RPC answers from: the index, daemon, indexer, peers and session runtime.
pub(crate) struct AdminState {
    coin: Coin,
    store: Arc<Store>,
    daemon: Daemon,
    /// `DAEMON_URL` as configured: where `daemon_url` without a URL goes back to.
    configured_urls: Vec<DaemonUrl>,
    /// The process-wide stop signal: the indexer stops at a batch boundary, the index is
    /// flushed.
    stop: Arc<watch::Sender<bool>>,
    forced_reorg: ForcedReorg,
    peers: Arc<PeerManager>,
    notarized: watch::Receiver<Notarized>,
    started: Instant,
    sessions: Arc<Sessions>,
}

impl AdminState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        coin: Coin,
        store: Arc<Store>,
        daemon: Daemon,
        stop: Arc<watch::Sender<bool>>,
        forced_reorg: ForcedReorg,
        peers: Arc<PeerManager>,
        notarized: watch::Receiver<Notarized>,
        sessions: Arc<Sessions>,
    ) -> AdminState {
        AdminState {
            coin,
            store,
            configured_urls: daemon.urls(),
            daemon,
            stop,
            forced_reorg,
            peers,
            notarized,
            started: Instant::now(),
            sessions,
        }
    }

    /// Binds the `rpc://` services and serves them until the process ends.
    pub(crate) async fn listen(self: &Arc<Self>, services: &[&Service]) -> anyhow::Result<()> {
        for service in services {
            for listener in crate::net::bind(service).await? {
                tokio::spawn(accept_loop(self.clone(), listener));
            }
        }
        Ok(())
    }
}

/// Accepts admin connections until the task is aborted.
async fn accept_loop(state: Arc<AdminState>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                debug!("admin RPC connection from {peer}");
                tokio::spawn(serve(state.clone(), stream));
            }
            Err(e) => {
                warn!("admin RPC accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(state: Arc<AdminState>, stream: TcpStream) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut dialect = Dialect::Detect;
    let mut line = Vec::new();
    loop {
        line.clear();
        match tokio::io::AsyncBufReadExt::read_until(&mut rd, b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        let reply = match dialect.parse(&line) {
            Incoming::Ignore => continue,
            Incoming::Reply(msg) => msg,
            Incoming::Call(call) => match answer(&state, &dialect, &call).await {
                Some(msg) => msg,
                None => continue,
            },
            Incoming::Batch(members) => {
                let mut parts = Vec::new();
                for m in &members {
                    match m {
                        Member::Error(e) => parts.push(e.clone()),
                        Member::Call(c) => parts.extend(answer(&state, &dialect, c).await),
                    }
                }
                if parts.is_empty() {
                    continue;
                }
                jsonrpc::batch(&parts)
            }
        };
        if wr.write_all(reply.as_bytes()).await.is_err() || wr.write_all(b"\n").await.is_err() {
            return;
        }
    }
}

/// The encoded answer to a call; `None` for a notification.
async fn answer(state: &Arc<AdminState>, dialect: &Dialect, call: &Call) -> Option<String> {
    let result = command(state, call).await;
    let id = call.id.as_ref()?;
    state.sessions.stats().record(
        if known(&call.method) {
            &call.method
        } else {
            INVALID_METHOD
        },
        std::time::Duration::ZERO,
        result.is_err(),
    );
    Some(match result {
        Ok(v) => {
            let raw = serde_json::value::to_raw_value(&v).expect("JSON values serialize");
            dialect.result(id, &raw)
        }
        Err(e) => dialect.error(id, &e),
    })
}

const COMMANDS: &[&str] = &[
    "getinfo",
    "sessions",
    "groups",
    "peers",
    "add_peer",
    "disconnect",
    "log",
    "inspect_session",
    "daemon_url",
    "query",
    "reorg",
    "stop",
];

fn known(method: &str) -> bool {
    COMMANDS.contains(&method)
}

/// Argument `index` (or `name`, for named parameters).
fn arg<'a>(call: &'a Call, index: usize, name: &str) -> Option<&'a Value> {
    match &call.params {
        Params::Positional(v) => v.get(index),
        Params::Named(m) => m.get(name),
    }
}

/// The sessions and groups at one moment, oldest session first.
struct View {
    server: Arc<Sessions>,
    sessions: Vec<Arc<SessionHandle>>,
    groups: Vec<GroupInfo>,
}

impl View {
    fn of(state: &AdminState) -> View {
        let server = state.sessions.clone();
        let mut sessions = server.sessions();
        sessions.sort_by_key(|s| (s.started, s.id));
        View {
            groups: server.groups(),
            server,
            sessions,
        }
    }

    /// Script subscriptions of a session.
    fn subs(&self, s: &SessionHandle) -> usize {
        self.server.subscriptions_of(s.id)
    }
}

async fn command(state: &Arc<AdminState>, call: &Call) -> Result<Value, RpcError> {
    let view = View::of(state);
    match call.method.as_str() {
        "getinfo" => Ok(getinfo(state, &view)),
        "sessions" => Ok(sessions(&view)),
        "groups" => Ok(groups(&view)),
        "peers" => Ok(state.peers.admin_peers()),
        "add_peer" => match arg(call, 0, "real_name").and_then(Value::as_str) {
            // ElectrumX's reply whatever became of the name; `peers` shows the table.
            Some(name) => {
                state.peers.admin_add_peer(name);
                Ok(json!(format!("peer '{name}' added")))
            }
            None => Err(RpcError::new(
                INVALID_ARGS,
                "add_peer needs a real name (\"host t50001 s50002\")",
            )),
        },
        "disconnect" => disconnect(&view, session_ids(call)?),
        "log" => log(&view, session_ids(call)?),
        "inspect_session" => inspect_session(&view, arg(call, 0, "session_id")),
        "daemon_url" => daemon_url(state, arg(call, 0, "daemon_url")),
        "query" => query(state, call).await,
        "reorg" => reorg(state, arg(call, 0, "count")).await,
        "stop" => {
            info!("admin RPC: stop");
            let _ = state.stop.send(true);
            Ok(json!("stopping"))
        }
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("unknown method \"{other}\""),
        )),
    }
}

/// ElectrumX's `logged_url`: the host and port part.
fn logged_url(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// `daemon_url [URLS]`: a comma-separated list as in `DAEMON_URL`, or nothing for the
/// configured one; switches to its first entry.
fn daemon_url(state: &AdminState, text: Option<&Value>) -> Result<Value, RpcError> {
    let text = match text {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(RpcError::bad_request("daemon_url must be a string")),
    };
    let urls = if text.trim().is_empty() {
        state.configured_urls.clone()
    } else {
        text.split(',')
            .map(|u| DaemonUrl::parse(u, state.coin.rpc_port, state.daemon.has_cookie()))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| RpcError::bad_request(format!("an error occurred: {e}")))?
    };
    state
        .daemon
        .set_urls(urls)
        .map_err(|e| RpcError::bad_request(format!("an error occurred: {e:#}")))?;
    Ok(json!(format!(
        "now using daemon at {}",
        logged_url(&state.daemon.url())
    )))
}

/// `query ITEMS [LIMIT]`, read off the reactor.
async fn query(state: &AdminState, call: &Call) -> Result<Value, RpcError> {
    let items: Vec<String> = match arg(call, 0, "items") {
        Some(Value::Array(v)) => v
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<_>>(),
        _ => None,
    }
    .ok_or_else(|| RpcError::bad_request("items must be a list of strings"))?;
    let limit = match arg(call, 1, "limit") {
        None | Some(Value::Null) => Some(query::DEFAULT_LIMIT),
        Some(v) => match v.as_i64() {
            Some(n) if n < 0 => None,
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => return Err(RpcError::bad_request(format!("{v} should be an integer"))),
        },
    };
    let (coin, store) = (state.coin.clone(), state.store.clone());
    let lines = tokio::task::spawn_blocking(move || query::lines(&coin, &store, &items, limit))
        .await
        .map_err(|_| RpcError::internal())?
        .map_err(store_error)?;
    Ok(json!(lines))
}

/// `reorg COUNT`: undo COUNT blocks, then sync them again (for testing clients).
async fn reorg(state: &AdminState, count: Option<&Value>) -> Result<Value, RpcError> {
    let count = match count {
        None => 3,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                RpcError::bad_request(format!("{v} should be a non-negative integer"))
            })?,
    };
    let forced = &state.forced_reorg;
    // Refused before anything is undone: blocks whose undo records are gone (below the reorg
    // limit, or below a Komodo notarization) cannot be taken back.
    let store = state.store.clone();
    let missing = tokio::task::spawn_blocking(move || missing_undo(&store, count))
        .await
        .map_err(|_| RpcError::internal())?
        .map_err(store_error)?;
    let refused = |e: ForcedReorgError| RpcError::bad_request(e.to_string());
    forced.check(count).map_err(refused)?;
    if let Some(height) = missing {
        return Err(RpcError::bad_request(format!(
            "cannot reorg {count} blocks: no undo information for height {height}"
        )));
    }
    forced.request(count).map_err(refused)?;
    info!("admin RPC: forced reorg of {count} blocks");
    Ok(json!(format!(
        "scheduled a reorg of {} blocks",
        thousands(count.into())
    )))
}

/// ElectrumX's `formatted_time`: "1d 02h 03m", "05m 07s", "09s".
pub(crate) fn formatted_time(secs: u64, sep: &str) -> String {
    let mut t = secs;
    let mut parts = Vec::new();
    for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60)] {
        let val = t / n;
        if !parts.is_empty() || val > 0 {
            parts.push(if unit == "d" {
                format!("{val}d")
            } else {
                format!("{val:02}{unit}")
            });
        }
        t %= n;
    }
    if parts.len() < 3 {
        parts.push(format!("{t:02}s"));
    }
    parts.join(sep)
}

/// ElectrumX names the coin by its class: `Litecoin`, `LitecoinTestnet`, `LitecoinRegtest`.
fn coin_class(coin: &Coin) -> String {
    let net = match coin.net.to_lowercase().as_str() {
        "mainnet" => String::new(),
        other => {
            let mut c = other.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    };
    format!("{}{net}", coin.name)
}

fn getinfo(state: &AdminState, view: &View) -> Value {
    let sessions = &view.sessions;
    let subs = |s: &SessionHandle| view.subs(s);
    let sum = |f: &dyn Fn(&SessionHandle) -> u64| sessions.iter().map(|s| f(s)).sum::<u64>();
    // ElectrumX's -1 for an empty index.
    let db_height = state.store.tip().map_or(-1, |t| i64::from(t.height.0));
    let stats = view.server.stats();
    let counts: BTreeMap<String, u64> = stats
        .methods()
        .into_iter()
        .map(|(k, v)| (k, v.count))
        .collect();
    let limits = &stats.limits;
    json!({
        "coin": coin_class(&state.coin),
        "daemon": logged_url(&state.daemon.url()),
        "daemon height": state.daemon.cached_height(),
        "db height": db_height,
        "groups": view.groups.len(),
        "pid": std::process::id(),
        "peers": state.peers.admin_counts(),
        // Komodo chains: the last notarized height and block, as komodod's getinfo gives them.
        "notarized": state.notarized.borrow()
            .map(|(h, hash)| json!({"height": h.0, "hash": hash.to_string()})),
        "request counts": counts,
        "request total": stats.request_total(),
        "sessions": {
            "count": sessions.len(),
            "count with subs_sh": sessions.iter().filter(|s| subs(s) > 0).count(),
            "count with subs_txo": 0,
            "count with subs_any": sessions.iter().filter(|s| subs(s) > 0).count(),
            "errors": sum(&|s| s.counters.errors.load(Ordering::Relaxed)),
            "logged": sessions.iter().filter(|s| s.log_me.load(Ordering::Relaxed)).count(),
            "pending requests": sum(&|s| s.counters.pending.load(Ordering::Relaxed) as u64),
            "subs_sh": sum(&|s| subs(s) as u64),
            "subs_txo": 0,
        },
        // Sextant's own: what the limits did since start.
        "limits": {
            "throttled requests": limits.throttled.load(Ordering::Relaxed),
            "cost disconnects": limits.cost_disconnects.load(Ordering::Relaxed),
            "request timeouts": limits.timeouts.load(Ordering::Relaxed),
            "idle disconnects": limits.idle_disconnects.load(Ordering::Relaxed),
            "rate limited connections": limits.rate_limited.load(Ordering::Relaxed),
            "max sessions pauses": limits.max_sessions_pauses.load(Ordering::Relaxed),
            "max sessions refused": limits.sessions_refused.load(Ordering::Relaxed),
            "subscriptions refused": limits.subs_refused.load(Ordering::Relaxed),
            "reader pauses": limits.reader_pauses.load(Ordering::Relaxed),
            "slow reader disconnects": limits.slow_reader_disconnects.load(Ordering::Relaxed),
            "memory refusals": limits.memory_refused.load(Ordering::Relaxed),
        },
        // Sextant's own: bytes of requests in flight and replies queued, all sessions.
        "session memory": {
            "used": view.server.memory().0,
            "limit": view.server.memory().1,
        },
        "txs sent": stats.txs_sent.load(Ordering::Relaxed),
        "uptime": formatted_time(state.started.elapsed().as_secs(), " "),
        "version": server_version(),
    })
}

fn sessions(view: &View) -> Value {
    let server = &view.server;
    let rows: Vec<Value> = view
        .sessions
        .iter()
        .map(|s| {
            let c = &s.counters;
            let (cost, extra) = server.cost(s.id).unwrap_or_default();
            let client: String = s.client_name.lock().chars().take(17).collect();
            json!([
                s.id,
                s.flags(),
                s.peer.to_string(),
                client,
                s.version().map_or_else(String::new, |p| p.to_string()),
                cost,
                extra,
                c.pending.load(Ordering::Relaxed),
                c.txs_sent.load(Ordering::Relaxed),
                view.subs(s),
                c.recv_count.load(Ordering::Relaxed),
                c.recv_bytes.load(Ordering::Relaxed),
                c.send_count.load(Ordering::Relaxed),
                c.send_bytes.load(Ordering::Relaxed),
                s.started.elapsed().as_secs_f64(),
            ])
        })
        .collect();
    Value::Array(rows)
}

fn groups(view: &View) -> Value {
    let by_id: BTreeMap<u64, &Arc<SessionHandle>> =
        view.sessions.iter().map(|s| (s.id, s)).collect();
    let rows: Vec<Value> = view
        .groups
        .iter()
        .map(|g| {
            let members: Vec<&Arc<SessionHandle>> = g
                .members
                .iter()
                .filter_map(|id| by_id.get(id).copied())
                .collect();
            let sum = |f: &dyn Fn(&SessionHandle) -> u64| members.iter().map(|s| f(s)).sum::<u64>();
            json!([
                g.name,
                g.members.len(),
                g.cost,
                g.retained,
                sum(&|s| s.counters.pending.load(Ordering::Relaxed) as u64),
                sum(&|s| s.counters.txs_sent.load(Ordering::Relaxed)),
                sum(&|s| view.subs(s) as u64),
                sum(&|s| s.counters.recv_count.load(Ordering::Relaxed)),
                sum(&|s| s.counters.recv_bytes.load(Ordering::Relaxed)),
                sum(&|s| s.counters.send_count.load(Ordering::Relaxed)),
                sum(&|s| s.counters.send_bytes.load(Ordering::Relaxed)),
            ])
        })
        .collect();
    Value::Array(rows)
}

/// The `session_ids` argument: a list of strings, as ElectrumX requires.
fn session_ids(call: &Call) -> Result<Vec<String>, RpcError> {
    let bad = || RpcError::bad_request("expected a list of session IDs");
    let list = match &call.params {
        // electrumx_rpc sends {"session_ids": [...]}; positionally, the list or its items.
        Params::Named(m) => m.get("session_ids").cloned().ok_or_else(bad)?,
        Params::Positional(v) if v.len() == 1 && v[0].is_array() => v[0].clone(),
        Params::Positional(v) => Value::Array(v.clone()),
    };
    list.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

/// Sessions, groups, specials and unknown items named by `items`, as ElectrumX resolves them.
struct References {
    sessions: Vec<Arc<SessionHandle>>,
    groups: Vec<String>,
    specials: Vec<String>,
    unknown: Vec<String>,
}

fn references(view: &View, items: &[String], specials: &[&str]) -> References {
    let mut r = References {
        sessions: Vec::new(),
        groups: Vec::new(),
        specials: Vec::new(),
        unknown: Vec::new(),
    };
    for item in items {
        if !item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()) {
            match item
                .parse::<u64>()
                .ok()
                .and_then(|id| view.sessions.iter().find(|s| s.id == id))
            {
                Some(s) if !r.sessions.iter().any(|x| x.id == s.id) => r.sessions.push(s.clone()),
                Some(_) => {}
                None => r.unknown.push(item.clone()),
            }
            continue;
        }
        let lc = item.to_lowercase();
        if specials.contains(&lc.as_str()) {
            r.specials.push(lc);
        } else if view.groups.iter().any(|g| g.name == lc) {
            r.groups.push(lc);
        } else {
            r.unknown.push(item.clone());
        }
    }
    r
}

fn group_members(view: &View, name: &str) -> Vec<Arc<SessionHandle>> {
    view.sessions
        .iter()
        .filter(|s| s.group.as_deref() == Some(name))
        .cloned()
        .collect()
}

fn disconnect(view: &View, items: Vec<String>) -> Result<Value, RpcError> {
    let refs = references(view, &items, &["all"]);
    let mut lines = Vec::new();
    let mut targets: Vec<Arc<SessionHandle>> = Vec::new();
    if refs.specials.iter().any(|s| s == "all") {
        targets = view.sessions.clone();
        lines.push("disconnecting all sessions".to_string());
    } else {
        for s in &refs.sessions {
            lines.push(format!("disconnecting session {}", s.id));
            targets.push(s.clone());
        }
        for g in &refs.groups {
            lines.push(format!("disconnecting group {g}"));
            targets.extend(group_members(view, g));
        }
    }
    lines.extend(refs.unknown.iter().map(|u| format!("unknown: {u}")));
    if !targets.is_empty() {
        let ids: Vec<String> = targets.iter().map(|s| s.id.to_string()).collect();
        info!(
            "local RPC request to disconnect session ids {}",
            ids.join(", ")
        );
    }
    for s in targets {
        s.close();
    }
    Ok(json!(lines))
}

fn log(view: &View, items: Vec<String>) -> Result<Value, RpcError> {
    let refs = references(view, &items, &["all", "none", "new"]);
    let mut lines = Vec::new();
    let say = |lines: &mut Vec<String>, what: String, on: bool| {
        lines.push(if on {
            format!("logging {what}")
        } else {
            format!("not logging {what}")
        })
    };
    if refs.specials.iter().any(|s| s == "all") {
        for s in &view.sessions {
            s.log_me.store(true, Ordering::Relaxed);
        }
        view.server.log_new(Some(true));
        lines.push("logging all sessions".into());
    }
    if refs.specials.iter().any(|s| s == "none") {
        for s in &view.sessions {
            s.log_me.store(false, Ordering::Relaxed);
        }
        view.server.log_new(Some(false));
        lines.push("logging no sessions".into());
    }
    if refs.specials.iter().any(|s| s == "new") {
        let on = view.server.log_new(None);
        say(&mut lines, "new sessions".into(), on);
    }
    let mut toggled: Vec<u64> = Vec::new();
    let mut toggle = |lines: &mut Vec<String>, s: &SessionHandle| {
        if toggled.contains(&s.id) {
            return;
        }
        toggled.push(s.id);
        let on = !s.log_me.fetch_xor(true, Ordering::Relaxed);
        say(lines, format!("session {}", s.id), on);
    };
    for s in &refs.sessions {
        toggle(&mut lines, s);
    }
    for g in &refs.groups {
        for s in group_members(view, g) {
            toggle(&mut lines, &s);
        }
    }
    lines.extend(refs.unknown.iter().map(|u| format!("unknown: {u}")));
    Ok(json!(lines))
}

fn inspect_session(view: &View, id: Option<&Value>) -> Result<Value, RpcError> {
    let id = id
        .and_then(Value::as_u64)
        .ok_or_else(|| RpcError::bad_request("expected a session id"))?;
    let Some(s) = view.sessions.iter().find(|s| s.id == id) else {
        return Err(RpcError::bad_request(format!("no session with id={id}")));
    };
    let c = &s.counters;
    let mut m = Map::new();
    m.insert("client_name".into(), json!(s.client_name.lock().clone()));
    m.insert("subs_sh".into(), json!(view.subs(s)));
    m.insert("subs_txo".into(), json!(0));
    m.insert("errors".into(), json!(c.errors.load(Ordering::Relaxed)));
    m.insert("is_logged".into(), json!(s.log_me.load(Ordering::Relaxed)));
    m.insert(
        "pending requests".into(),
        json!(c.pending.load(Ordering::Relaxed)),
    );
    m.insert("txs sent".into(), json!(c.txs_sent.load(Ordering::Relaxed)));
    m.insert(
        "conn_time".into(),
        json!(formatted_time(s.started.elapsed().as_secs(), " ")),
    );
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_like_electrumx() {
        assert_eq!(formatted_time(0, " "), "00s");
        assert_eq!(formatted_time(73, " "), "01m 13s");
        assert_eq!(formatted_time(3600 + 120 + 5, " "), "01h 02m 05s");
        assert_eq!(formatted_time(2 * 86400 + 3600 + 5, ""), "2d01h00m");
    }

    #[test]
    fn session_ids_take_electrumx_shapes() {
        let call = |params: Params| Call {
            id: Some(json!(1)),
            method: "disconnect".into(),
            params,
        };
        let named = Params::Named(
            json!({"session_ids": ["1", "all"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(session_ids(&call(named)).unwrap(), vec!["1", "all"]);
        let nested = Params::Positional(vec![json!(["2"])]);
        assert_eq!(session_ids(&call(nested)).unwrap(), vec!["2"]);
        let flat = Params::Positional(vec![json!("3"), json!("4")]);
        assert_eq!(session_ids(&call(flat)).unwrap(), vec!["3", "4"]);
        let bad = Params::Positional(vec![json!(5)]);
        assert_eq!(
            session_ids(&call(bad)).unwrap_err().message,
            "expected a list of session IDs"
        );
    }
}
