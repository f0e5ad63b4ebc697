//! The admin RPC on the `rpc://` service: newline-framed JSON-RPC answering `electrumx_rpc`'s
//! commands in ElectrumX's shapes (`getinfo`, `sessions`, `groups`, `peers`, `disconnect`, `log`,
//! `inspect_session`, `stop`). No `server.version`, no cost limits, no response cap: it is for
//! the operator, on loopback by default.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::jsonrpc::{
    Call, Dialect, Incoming, Member, Params, RpcError, INVALID_ARGS, METHOD_NOT_FOUND,
};
use super::server::Server;
use super::session::{SessionHandle, LOG_NEW};

/// Accepts admin connections until the task is aborted.
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                debug!("admin RPC connection from {peer}");
                tokio::spawn(serve(server.clone(), stream));
            }
            Err(e) => {
                warn!("admin RPC accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(server: Arc<Server>, stream: TcpStream) {
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
            Incoming::Call(call) => match answer(&server, &dialect, &call) {
                Some(msg) => msg,
                None => continue,
            },
            Incoming::Batch(members) => {
                let parts: Vec<String> = members
                    .iter()
                    .filter_map(|m| match m {
                        Member::Error(e) => Some(e.clone()),
                        Member::Call(c) => answer(&server, &dialect, c),
                    })
                    .collect();
                if parts.is_empty() {
                    continue;
                }
                super::jsonrpc::batch(&parts)
            }
        };
        if wr.write_all(reply.as_bytes()).await.is_err() || wr.write_all(b"\n").await.is_err() {
            return;
        }
    }
}

/// The encoded answer to a call; `None` for a notification.
fn answer(server: &Arc<Server>, dialect: &Dialect, call: &Call) -> Option<String> {
    let result = command(server, call);
    let id = call.id.as_ref()?;
    server.stats.record(
        if known(&call.method) {
            &call.method
        } else {
            super::stats::INVALID_METHOD
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

fn command(server: &Arc<Server>, call: &Call) -> Result<Value, RpcError> {
    match call.method.as_str() {
        "getinfo" => Ok(getinfo(server)),
        "sessions" => Ok(sessions(server)),
        "groups" => Ok(groups(server)),
        "peers" => Ok(crate::peers::admin_peers()),
        "add_peer" => match arg(call, 0, "real_name").and_then(Value::as_str) {
            Some(name) => Ok(json!(crate::peers::admin_add_peer(name))),
            None => Err(RpcError::new(
                INVALID_ARGS,
                "add_peer needs a real name (\"host t50001 s50002\")",
            )),
        },
        "disconnect" => disconnect(server, session_ids(call)?),
        "log" => log(server, session_ids(call)?),
        "inspect_session" => inspect_session(server, arg(call, 0, "session_id")),
        "stop" => {
            info!("admin RPC: stop");
            server.stop_requested.notify_one();
            Ok(json!("stopping"))
        }
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("unknown method \"{other}\""),
        )),
    }
}

/// ElectrumX's `formatted_time`: "1d 02h 03m", "05m 07s", "09s".
pub fn formatted_time(secs: u64, sep: &str) -> String {
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
fn coin_class(server: &Server) -> String {
    let net = match server.coin.net.to_lowercase().as_str() {
        "mainnet" => String::new(),
        other => {
            let mut c = other.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    };
    format!("{}{net}", server.coin.name)
}

fn getinfo(server: &Arc<Server>) -> Value {
    let sessions = server.registry.sessions();
    let subs = |s: &SessionHandle| s.subs.lock().len();
    let sum = |f: &dyn Fn(&SessionHandle) -> u64| sessions.iter().map(|s| f(s)).sum::<u64>();
    let height = server.db_height().map(|h| h.0);
    let counts: BTreeMap<String, u64> = server
        .stats
        .methods()
        .into_iter()
        .map(|(k, v)| (k, v.count))
        .collect();
    let limits = &server.stats.limits;
    json!({
        "coin": coin_class(server),
        "daemon": server.daemon.url(),
        "daemon height": height,
        "db height": height,
        "groups": server.costs.groups().len(),
        "pid": std::process::id(),
        "peers": crate::peers::admin_counts(),
        // Komodo chains: the last notarized height and block, as komodod's getinfo gives them.
        "notarized": crate::index::notarized::notarized()
            .map(|(h, hash)| json!({"height": h.0, "hash": hash.to_string()})),
        "request counts": counts,
        "request total": server.stats.request_total(),
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
            "subscriptions refused": limits.subs_refused.load(Ordering::Relaxed),
        },
        "txs sent": server.stats.txs_sent.load(Ordering::Relaxed),
        "uptime": formatted_time(server.started.elapsed().as_secs(), " "),
        "version": super::server::server_version(),
    })
}

fn sorted_sessions(server: &Server) -> Vec<Arc<SessionHandle>> {
    let mut sessions = server.registry.sessions();
    sessions.sort_by_key(|s| (s.started, s.id));
    sessions
}

fn sessions(server: &Arc<Server>) -> Value {
    let rows: Vec<Value> = sorted_sessions(server)
        .iter()
        .map(|s| {
            let c = &s.counters;
            let (cost, extra) = server.costs.cost(s.id).unwrap_or_default();
            let client: String = s.client_name.lock().chars().take(17).collect();
            json!([
                s.id,
                s.flags(),
                s.peer.to_string(),
                client,
                s.protocol().map_or_else(String::new, |p| p.to_string()),
                cost,
                extra,
                c.pending.load(Ordering::Relaxed),
                c.txs_sent.load(Ordering::Relaxed),
                s.subs.lock().len(),
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

fn groups(server: &Arc<Server>) -> Value {
    let by_id: BTreeMap<u64, Arc<SessionHandle>> = server
        .registry
        .sessions()
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let rows: Vec<Value> = server
        .costs
        .groups()
        .into_iter()
        .map(|g| {
            let members: Vec<&Arc<SessionHandle>> =
                g.members.iter().filter_map(|id| by_id.get(id)).collect();
            let sum = |f: &dyn Fn(&SessionHandle) -> u64| members.iter().map(|s| f(s)).sum::<u64>();
            json!([
                g.name,
                g.members.len(),
                g.cost,
                g.retained,
                sum(&|s| s.counters.pending.load(Ordering::Relaxed) as u64),
                sum(&|s| s.counters.txs_sent.load(Ordering::Relaxed)),
                sum(&|s| s.subs.lock().len() as u64),
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

fn references(server: &Server, items: &[String], specials: &[&str]) -> References {
    let all = sorted_sessions(server);
    let group_names: Vec<String> = server.costs.groups().into_iter().map(|g| g.name).collect();
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
                .and_then(|id| all.iter().find(|s| s.id == id))
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
        } else if group_names.contains(&lc) {
            r.groups.push(lc);
        } else {
            r.unknown.push(item.clone());
        }
    }
    r
}

fn group_members(server: &Server, name: &str) -> Vec<Arc<SessionHandle>> {
    sorted_sessions(server)
        .into_iter()
        .filter(|s| s.group.as_deref() == Some(name))
        .collect()
}

fn disconnect(server: &Arc<Server>, items: Vec<String>) -> Result<Value, RpcError> {
    let refs = references(server, &items, &["all"]);
    let mut lines = Vec::new();
    let mut targets: Vec<Arc<SessionHandle>> = Vec::new();
    if refs.specials.iter().any(|s| s == "all") {
        targets = sorted_sessions(server);
        lines.push("disconnecting all sessions".to_string());
    } else {
        for s in &refs.sessions {
            lines.push(format!("disconnecting session {}", s.id));
            targets.push(s.clone());
        }
        for g in &refs.groups {
            lines.push(format!("disconnecting group {g}"));
            targets.extend(group_members(server, g));
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

fn log(server: &Arc<Server>, items: Vec<String>) -> Result<Value, RpcError> {
    let refs = references(server, &items, &["all", "none", "new"]);
    let mut lines = Vec::new();
    let say = |lines: &mut Vec<String>, what: String, on: bool| {
        lines.push(if on {
            format!("logging {what}")
        } else {
            format!("not logging {what}")
        })
    };
    if refs.specials.iter().any(|s| s == "all") {
        for s in server.registry.sessions() {
            s.log_me.store(true, Ordering::Relaxed);
        }
        LOG_NEW.store(true, Ordering::Relaxed);
        lines.push("logging all sessions".into());
    }
    if refs.specials.iter().any(|s| s == "none") {
        for s in server.registry.sessions() {
            s.log_me.store(false, Ordering::Relaxed);
        }
        LOG_NEW.store(false, Ordering::Relaxed);
        lines.push("logging no sessions".into());
    }
    if refs.specials.iter().any(|s| s == "new") {
        let on = !LOG_NEW.fetch_xor(true, Ordering::Relaxed);
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
        for s in group_members(server, g) {
            toggle(&mut lines, &s);
        }
    }
    lines.extend(refs.unknown.iter().map(|u| format!("unknown: {u}")));
    Ok(json!(lines))
}

fn inspect_session(server: &Arc<Server>, id: Option<&Value>) -> Result<Value, RpcError> {
    let id = id
        .and_then(Value::as_u64)
        .ok_or_else(|| RpcError::bad_request("expected a session id"))?;
    let Some(s) = server.registry.sessions().into_iter().find(|s| s.id == id) else {
        return Err(RpcError::bad_request(format!("no session with id={id}")));
    };
    let c = &s.counters;
    let mut m = Map::new();
    m.insert("client_name".into(), json!(s.client_name.lock().clone()));
    m.insert("subs_sh".into(), json!(s.subs.lock().len()));
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
