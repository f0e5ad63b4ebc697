//! One client connection: newline framing with `MAX_RECV`, version negotiation first, requests
//! run concurrently up to the cost model's target (slowed past the soft limit, refused at the
//! hard one), replies in completion order, and a writer fed by a bounded queue that
//! notifications share (a client too slow to drain it is disconnected). What a session holds
//! in requests and unwritten replies is charged to its memory budget and the server's (see
//! `budget`): a session over its own is not read until its client drains it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::budget::{Budget, Charge, Over};
use super::cost::{Concurrency, CostModel, Slot, ERROR_COST, PARSE_ERROR_COST};
use super::message::Message;
use super::stats::{Limit, Stats, INVALID_METHOD};
use super::subs::Registry;
use super::Sessions;
use crate::protocol::jsonrpc::{
    self, Call, Dialect, Incoming, Member, Params, RpcError, INVALID_REQUEST, PARSE_ERROR,
};
use crate::protocol::version::server_min;
use crate::protocol::{ping_notification, Caller, Method, Reply, Request, Version};
use crate::types::{HashX, OutPoint};

/// aiorpcX's error for a session over the cost hard limit (it is then disconnected).
pub(crate) const EXCESSIVE_RESOURCE_USAGE: i64 = -101;
/// aiorpcX's error for a request that overran `REQUEST_TIMEOUT`.
pub(crate) const SERVER_BUSY: i64 = -102;
/// Queued outgoing messages before a session counts as not reading.
pub(crate) const SEND_QUEUE: usize = 1024;
/// What a request holds besides its own bytes while it runs (its task, its parsed form),
/// as charged to the memory budgets.
const CALL_OVERHEAD: usize = 2048;
/// The same for each member of a batch (its parsed form and its reply's place), measured: a
/// batch of 50,000 pings held about 200 bytes a member beyond its text and replies.
const MEMBER_OVERHEAD: usize = 256;
/// A read buffer grown past this by a long message is given back once it is handled.
const KEPT_READ_BUFFER: usize = 64 * 1024;

/// Results at least this long are shared with the message rather than copied into it.
const SHARED_RESULT: usize = 16 * 1024;

/// What a session hands its transport's writer.
pub(crate) enum Outgoing {
    /// A message, and its charge to the memory budgets (dropped once it is written).
    Line(Message, Charge),
    Close,
}

/// What reading one message produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    Complete,
    /// Longer than `MAX_RECV`: dropped (a line-framed transport resynchronises at the next
    /// newline).
    Oversize,
    Eof,
}

/// A transport's incoming messages, one JSON-RPC message (or batch) at a time.
pub(crate) trait Source: Send {
    /// Reads the next message into `buf`.
    fn next<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<Line>> + Send + 'a;
}

/// What the rest of the server sees of a session.
pub(crate) struct SessionHandle {
    pub id: u64,
    pub peer: SocketAddr,
    /// "TCP", "SSL", "WS", "WSS".
    pub kind: &'static str,
    pub started: Instant,
    pub client_name: Mutex<String>,
    pub headers_subscribed: AtomicBool,
    /// The subnet group the session's cost is shared with.
    pub group: Option<String>,
    pub counters: SessionCounters,
    /// Logs each request when set (admin `log`).
    pub log_me: AtomicBool,
    /// The concurrency target last applied.
    pub concurrency: AtomicUsize,
    costs: Arc<CostModel>,
    registry: Arc<Registry<SessionHandle>>,
    stats: Arc<Stats>,
    /// `MAX_SUBS_PER_SESSION` (0: no cap).
    max_subs: usize,
    version: Mutex<Option<Version>>,
    /// 1.7 outpoint subscriptions (notified whenever a block or the mempool touches them).
    outpoints: Mutex<HashSet<OutPoint>>,
    dialect: Mutex<Dialect>,
    out: mpsc::Sender<Outgoing>,
    closing: AtomicBool,
    /// Bytes held for the session: requests in flight, replies not yet written.
    budget: Arc<Budget>,
}

/// Traffic and requests of one session, as the admin `sessions` command shows them.
#[derive(Default)]
pub(crate) struct SessionCounters {
    pub recv_count: AtomicU64,
    pub recv_bytes: AtomicU64,
    pub send_count: AtomicU64,
    pub send_bytes: AtomicU64,
    pub errors: AtomicU64,
    pub pending: AtomicUsize,
    pub txs_sent: AtomicU64,
}

impl SessionHandle {
    /// The negotiated protocol version; `None` before `server.version`.
    pub(crate) fn version(&self) -> Option<Version> {
        self.version.lock().clone()
    }

    pub(crate) fn dialect(&self) -> Dialect {
        *self.dialect.lock()
    }

    /// The session's outpoint subscriptions among `touched` (all of them for `None`).
    pub(crate) fn outpoints_touched(&self, touched: Option<&HashSet<OutPoint>>) -> Vec<OutPoint> {
        let subs = self.outpoints.lock();
        match touched {
            None => subs.iter().copied().collect(),
            Some(t) if t.len() < subs.len() => {
                t.iter().filter(|o| subs.contains(o)).copied().collect()
            }
            Some(t) => subs.iter().filter(|o| t.contains(o)).copied().collect(),
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Adds to the session's cost (methods charge for the work they did).
    pub(crate) fn charge(&self, cost: f64) {
        self.costs.charge(self.id, cost);
    }

    /// ElectrumX's flags: the transport's letter, `C` while closing, `L` when logged, then the
    /// concurrency target.
    pub(crate) fn flags(&self) -> String {
        let mut f = self.kind[..1].to_string();
        if self.kind.starts_with("WS") {
            f = "W".into();
        }
        if self.is_closing() {
            f.push('C');
        }
        if self.log_me.load(Ordering::Relaxed) {
            f.push('L');
        }
        f.push_str(&self.concurrency.load(Ordering::Relaxed).to_string());
        f
    }

    fn sent(&self, bytes: usize) {
        self.counters.send_count.fetch_add(1, Ordering::Relaxed);
        self.counters
            .send_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.costs.charge_bytes(self.id, bytes);
    }

    /// Queues a notification without waiting; a full queue means the client is not reading,
    /// and it is disconnected rather than buffered without bound.
    pub(crate) fn notify(&self, method: &str, params: &RawValue) {
        let line = self.dialect().notification(method, Some(params));
        self.sent(line.len());
        let charge = self.budget.charge_queued(line.len());
        match self.out.try_send(Outgoing::Line(line.into(), charge)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(
                    "session {} ({}): not reading its notifications; disconnecting",
                    self.id, self.peer
                );
                self.close();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.writer_gone(),
        }
    }

    /// The writer stopped (the client reset the connection, or a write failed): nothing sent
    /// from now on can reach the client, so the session ends instead of serving what is still
    /// buffered of its requests to nobody.
    fn writer_gone(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    async fn send(&self, msg: impl Into<Message>) {
        let msg = msg.into();
        let bytes = msg.len();
        self.sent(bytes);
        let charge = match &msg {
            Message::Text(_) => self.budget.charge_queued(bytes),
            Message::Around { body, .. } => self
                .budget
                .charge_queued_around(bytes - body.get().len(), body),
        };
        if self.out.send(Outgoing::Line(msg, charge)).await.is_err() {
            self.writer_gone();
        }
    }

    /// Asks the writer to flush what is queued and close the connection.
    pub(crate) fn close(&self) {
        if !self.closing.swap(true, Ordering::Relaxed) {
            let out = self.out.clone();
            tokio::spawn(async move {
                let _ = out.send(Outgoing::Close).await;
            });
        }
    }
}

impl Caller for SessionHandle {
    fn id(&self) -> u64 {
        self.id
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn charge(&self, cost: f64) {
        SessionHandle::charge(self, cost);
    }

    fn identified(&self, client_name: Option<String>, version: Version) {
        if let Some(name) = client_name {
            *self.client_name.lock() = name;
        }
        *self.version.lock() = Some(version);
    }

    fn subscribe_headers(&self) {
        self.headers_subscribed.store(true, Ordering::Relaxed);
    }

    fn may_subscribe(&self, hashx: &HashX) -> Result<(), usize> {
        if self.registry.reserve(self.id, *hashx, self.max_subs) {
            return Ok(());
        }
        self.stats.limit(Limit::SubsRefused);
        Err(self.max_subs)
    }

    fn not_subscribed(&self, hashx: &HashX) {
        self.registry.release(self.id, hashx);
    }

    fn subscribed(&self, hashx: HashX, alias: String, status: Option<String>) {
        self.registry.subscribe(self.id, hashx, alias, status);
    }

    fn unsubscribe(&self, hashx: &HashX) -> bool {
        self.registry.unsubscribe(self.id, hashx)
    }

    fn subscribe_outpoint(&self, outpoint: OutPoint) -> Result<(), usize> {
        let mut subs = self.outpoints.lock();
        if self.max_subs > 0 && subs.len() >= self.max_subs && !subs.contains(&outpoint) {
            self.stats.limit(Limit::SubsRefused);
            return Err(self.max_subs);
        }
        subs.insert(outpoint);
        Ok(())
    }

    fn unsubscribe_outpoint(&self, outpoint: &OutPoint) -> bool {
        self.outpoints.lock().remove(outpoint)
    }

    fn sent_tx(&self) {
        self.counters.txs_sent.fetch_add(1, Ordering::Relaxed);
        self.stats.txs_sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Encodes a reply, replacing one larger than `MAX_SEND` by the "response too large" error.
fn encode(dialect: Dialect, id: &Value, reply: &Reply, max_send: usize) -> Message {
    let msg = match reply {
        Ok(raw) if raw.get().len() >= SHARED_RESULT => {
            let (head, tail) = dialect.result_around(id);
            Message::Around {
                head,
                body: raw.clone(),
                tail,
            }
        }
        Ok(raw) => Message::Text(dialect.result(id, raw)),
        Err(e) => Message::Text(dialect.error(id, e)),
    };
    if max_send > 0 && msg.len() > max_send {
        dialect
            .error(id, &RpcError::response_too_large(max_send))
            .into()
    } else {
        msg
    }
}

fn use_server_version() -> RpcError {
    RpcError::bad_request("use server.version to identify client")
}

/// Serves one connection, whatever its transport, until either side closes it: `source`
/// yields its messages, `tx` feeds its writer (`write_task`, awaited at the end so what is
/// queued goes out).
pub(crate) async fn serve<R: Source>(
    server: Arc<Sessions>,
    mut source: R,
    tx: mpsc::Sender<Outgoing>,
    write_task: tokio::task::JoinHandle<()>,
    peer: SocketAddr,
    kind: &'static str,
) {
    let id = server.next_id.fetch_add(1, Ordering::Relaxed);
    let group = server.costs.add(id, peer.ip());
    let limits = &server.limits;
    let session = Arc::new(SessionHandle {
        id,
        peer,
        kind,
        started: Instant::now(),
        client_name: Mutex::new("unknown".into()),
        headers_subscribed: AtomicBool::new(false),
        group,
        counters: SessionCounters::default(),
        log_me: AtomicBool::new(server.log_new.load(Ordering::Relaxed)),
        concurrency: AtomicUsize::new(limits.cost.initial_concurrent),
        costs: server.costs.clone(),
        registry: server.registry.clone(),
        stats: server.stats.clone(),
        max_subs: limits.max_subs_per_session,
        version: Mutex::new(None),
        outpoints: Mutex::new(HashSet::new()),
        dialect: Mutex::new(Dialect::Detect),
        out: tx,
        closing: AtomicBool::new(false),
        budget: Budget::new(server.memory.clone(), limits.max_session_memory),
    });
    // The listeners close at MAX_SESSIONS, but connections accepted just before they did may
    // still arrive here: the count is enforced exactly at registration.
    if !server
        .registry
        .add_session_within(session.id, session.clone(), limits.max_sessions)
    {
        debug!(
            "session {}: {kind} {peer} refused, {} sessions open",
            session.id, limits.max_sessions
        );
        server.stats.limit(Limit::SessionRefused);
        server.costs.remove(session.id);
        session.close();
        drop(session);
        let _ = write_task.await;
        return;
    }
    server.sessions_changed();
    info!(
        "session {}: {kind} {peer}, {} total",
        session.id,
        server.registry.session_count()
    );
    let mut dialect = Dialect::Detect;
    let mut buf = Vec::new();
    let gate = Arc::new(Concurrency::new(limits.cost.initial_concurrent));
    let max_recv = server.max_recv;
    let idle = limits.session_timeout;
    let patience = limits.slow_reader_timeout;
    // A client that reads nothing blocks its writer: its replies are then dropped unwritten.
    let mut abandon_writer = false;
    while !session.is_closing() {
        if buf.capacity() > KEPT_READ_BUFFER {
            buf = Vec::new();
        }
        // Backpressure: a session holding more than its budget is not read until its client
        // has read enough of its replies.
        if session.budget.over() {
            server.stats.limit(Limit::ReaderPaused);
            debug!(
                "session {}: not read while it holds {} bytes",
                session.id,
                session.budget.used()
            );
            if !session.budget.within(patience).await {
                slow_reader(&server, &session);
                abandon_writer = true;
                break;
            }
        }
        let next = async {
            if idle.is_zero() {
                Some(source.next(&mut buf).await)
            } else {
                tokio::time::timeout(idle, source.next(&mut buf)).await.ok()
            }
        };
        // A client may also leave notifications unread while sending nothing.
        let read = tokio::select! {
            r = next => r,
            () = session.budget.stuck(patience) => {
                slow_reader(&server, &session);
                abandon_writer = true;
                break;
            }
            () = session.out.closed() => {
                debug!("session {}: its writer stopped; closing", session.id);
                break;
            }
        };
        let Some(read) = read else {
            info!(
                "session {}: closing stale session, nothing received for {}s",
                session.id,
                idle.as_secs()
            );
            server.stats.limit(Limit::IdleDisconnect);
            break;
        };
        match read {
            Ok(Line::Complete) => {}
            Ok(Line::Oversize) => {
                warn!(
                    "session {}: dropped a message over {} bytes",
                    session.id, max_recv
                );
                session.charge(ERROR_COST);
                continue;
            }
            Ok(Line::Eof) => break,
            Err(e) => {
                debug!("session {}: read error: {e}", session.id);
                break;
            }
        }
        session.counters.recv_count.fetch_add(1, Ordering::Relaxed);
        session
            .counters
            .recv_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        server.costs.charge_bytes(session.id, buf.len());
        if session.log_me.load(Ordering::Relaxed) {
            info!(
                "session {}: processing {}",
                session.id,
                String::from_utf8_lossy(&buf)
            );
        }
        let incoming = dialect.parse(&buf);
        *session.dialect.lock() = dialect;
        match incoming {
            Incoming::Ignore => {}
            Incoming::Reply(msg) => {
                charge_error_reply(&session, &msg);
                session.send(msg).await
            }
            Incoming::Call(call) => {
                if !handle_call(&server, &session, &gate, call, buf.len()).await {
                    break;
                }
            }
            Incoming::Batch(members) => {
                if !handle_batch(&server, &session, &gate, members, buf.len()).await {
                    break;
                }
            }
        }
    }
    server.registry.remove_session(session.id);
    server.costs.remove(session.id);
    server.sessions_changed();
    session.close();
    drop(session);
    if abandon_writer {
        write_task.abort();
    }
    let _ = write_task.await;
}

/// Drops a session whose client left its replies unread past `SLOW_READER_TIMEOUT`.
fn slow_reader(server: &Sessions, session: &SessionHandle) {
    info!(
        "session {}: closing, {} bytes of replies left unread for {}s (MAX_SESSION_MEMORY {})",
        session.id,
        session.budget.queued(),
        server.limits.slow_reader_timeout.as_secs(),
        session.budget.limit()
    );
    server.stats.limit(Limit::SlowReader);
}

/// The error for work refused by a memory budget.
fn memory_refusal(
    server: &Sessions,
    session: &SessionHandle,
    bytes: usize,
    over: Over,
) -> RpcError {
    server.stats.limit(Limit::MemoryRefused);
    match over {
        Over::Server { limit } => {
            info!(
                "session {}: refused a request of ~{bytes} bytes: sessions hold {} of \
                 MAX_SERVER_MEMORY {limit}",
                session.id,
                server.memory.used()
            );
            RpcError::new(
                SERVER_BUSY,
                "server busy - memory for requests exhausted, try again later",
            )
        }
        Over::Session { limit } => {
            info!(
                "session {}: refused a batch needing ~{bytes} bytes, over MAX_SESSION_MEMORY \
                 {limit}",
                session.id
            );
            RpcError::new(
                INVALID_REQUEST,
                format!(
                    "batch too large: it needs about {} bytes, a session may hold {}",
                    crate::protocol::pyfmt::thousands(bytes as i128),
                    crate::protocol::pyfmt::thousands(limit as i128)
                ),
            )
        }
    }
}

/// An error reply costs [`ERROR_COST`], an unparsable message ten times more.
fn charge_error_reply(session: &SessionHandle, msg: &str) {
    session.counters.errors.fetch_add(1, Ordering::Relaxed);
    let parse_error = msg.contains(&format!("\"code\":{PARSE_ERROR}"));
    session.charge(ERROR_COST + if parse_error { PARSE_ERROR_COST } else { 0.0 });
}

/// Why a request was not run.
enum Refused {
    /// The session is over the hard limit: answered, then disconnected.
    Excessive,
}

fn excessive() -> RpcError {
    RpcError::new(EXCESSIVE_RESOURCE_USAGE, "excessive resource usage")
}

fn timed_out() -> RpcError {
    RpcError::new(SERVER_BUSY, "server busy - request timed out")
}

/// Waits for a place among the session's running requests, at the concurrency its cost
/// allows; refuses when the cost reached the hard limit.
async fn admit(
    server: &Sessions,
    session: &SessionHandle,
    gate: &Concurrency,
) -> Result<Slot, Refused> {
    let target = server.costs.throttle(session.id).target;
    let before = session.concurrency.swap(target, Ordering::Relaxed);
    if before.abs_diff(target) > 1 {
        info!(
            "session {}: changing task concurrency from {before} to {target}",
            session.id
        );
    }
    gate.set_target(target);
    if target == 0 {
        return Err(Refused::Excessive);
    }
    let slot = gate.acquire().await.ok_or(Refused::Excessive)?;
    // The cost may have crossed the hard limit while this request queued.
    if server.costs.throttle(session.id).target == 0 {
        return Err(Refused::Excessive);
    }
    Ok(slot)
}

/// Closes a session that went over the cost hard limit, saying why in the log.
fn disconnect_excessive(server: &Sessions, session: &SessionHandle) {
    let (cost, extra) = server.costs.cost(session.id).unwrap_or_default();
    info!(
        "session {}: closing session over resource usage (cost {cost:.0}, group {} cost \
         {extra:.0}, hard limit {}); ip {}",
        session.id,
        session.group.as_deref().unwrap_or("none"),
        server.limits.cost.hard_limit,
        session.peer.ip()
    );
    server.stats.limit(Limit::CostDisconnect);
    session.close();
}

/// Runs an admitted request: the throttling sleep, then the method, all within
/// `REQUEST_TIMEOUT`; charges the method's flat cost, and the error cost for an error.
async fn run_request(server: &Arc<Sessions>, session: &Arc<SessionHandle>, call: &Call) -> Reply {
    let limits = &server.limits;
    let throttle = server.costs.throttle(session.id);
    let electrum = &server.electrum;
    let version = session.version().unwrap_or_else(server_min);
    let method = Method::find(&call.method, &version, electrum.coin());
    let name = method.map_or(INVALID_METHOD, Method::name);
    session.counters.pending.fetch_add(1, Ordering::Relaxed);
    let work = async {
        if !throttle.sleep.is_zero() {
            server.stats.limit(Limit::Throttled);
            tokio::time::sleep(throttle.sleep).await;
        }
        let t = Instant::now();
        let caller: Arc<dyn Caller> = session.clone();
        let reply = match Request::bind(method, call, version) {
            Ok(request) => electrum.answer(&caller, &request).await,
            Err(e) => Err(e),
        };
        (reply, t.elapsed())
    };
    let timeout = if limits.request_timeout.is_zero() {
        Duration::MAX
    } else {
        limits.request_timeout
    };
    let (reply, elapsed) = match tokio::time::timeout(timeout, work).await {
        Ok((reply, elapsed)) => {
            if !limits.slow_request.is_zero() && elapsed >= limits.slow_request {
                warn!("{}", slow_request_note(session.id, call, elapsed, &reply));
            }
            (reply, elapsed)
        }
        Err(_) => {
            info!(
                "session {}: request {} timed out after {}s",
                session.id,
                call.method,
                timeout.as_secs()
            );
            server.stats.limit(Limit::Timeout);
            (Err(timed_out()), timeout)
        }
    };
    session.counters.pending.fetch_sub(1, Ordering::Relaxed);
    server.stats.record(name, elapsed, reply.is_err());
    session.charge(method.map_or(0.0, Method::base_cost));
    if reply.is_err() {
        session.counters.errors.fetch_add(1, Ordering::Relaxed);
        session.charge(ERROR_COST);
    }
    reply
}

/// Params shown in the log of a slow request: enough for a script hash or a transaction id
/// and a few more, not a whole batch of outpoints.
const SLOW_PARAMS_SHOWN: usize = 200;

/// The log line for a request slower than `SLOW_REQUEST_MS`: which call it was (method and
/// params, so an operator can replay it), how long its work took without the throttling sleep,
/// and how big its answer was.
fn slow_request_note(session: u64, call: &Call, elapsed: Duration, reply: &Reply) -> String {
    let params = match &call.params {
        Params::Positional(v) => serde_json::to_string(v),
        Params::Named(m) => serde_json::to_string(m),
    }
    .unwrap_or_default();
    let shown = match params.char_indices().nth(SLOW_PARAMS_SHOWN) {
        Some((end, _)) => format!("{}… ({} bytes)", &params[..end], params.len()),
        None => params,
    };
    let outcome = match reply {
        Ok(result) => format!("{} bytes", result.get().len()),
        Err(e) => format!("error {}: {}", e.code, e.message),
    };
    format!(
        "session {session}: slow request {} {shown} took {:.1} ms ({outcome})",
        call.method,
        elapsed.as_secs_f64() * 1000.0
    )
}

/// Handles one request or notification; `false` ends the session.
async fn handle_call(
    server: &Arc<Sessions>,
    session: &Arc<SessionHandle>,
    gate: &Arc<Concurrency>,
    call: Call,
    request_bytes: usize,
) -> bool {
    let dialect = session.dialect();
    let max_send = server.max_send;
    if session.version().is_none() {
        // server.version must come first (ElectrumX ≥ 1.19), and is answered before anything
        // else is read, so pipelined requests see the negotiated version.
        if call.method == "server.version" && !call.is_notification() {
            let (reply, disconnect) = server.electrum.version_first(session.as_ref(), &call);
            server
                .stats
                .record("server.version", Duration::ZERO, reply.is_err());
            session.charge(Method::ServerVersion.base_cost());
            session
                .send(encode(dialect, &call.reply_id(), &reply, max_send))
                .await;
            if disconnect {
                session.close();
                return false;
            }
            return true;
        }
        refuse_unidentified(session, call.id.as_ref()).await;
        return false;
    }
    if call.is_notification() {
        // Below protocol 1.7 ElectrumX has no notification handlers: ignored. From 1.7 a
        // client may ping as a notification (its own noise): checked and charged as ElectrumX
        // does, never answered.
        if call.method == Method::ServerPing.name() && session.version().is_some_and(|v| v.is_1_7())
        {
            session.charge(Method::ServerPing.base_cost());
            if ping_notification(&call).is_err() {
                session.counters.errors.fetch_add(1, Ordering::Relaxed);
                session.charge(ERROR_COST);
            }
        }
        return true;
    }
    let bytes = request_bytes + CALL_OVERHEAD;
    let charge = match session.budget.try_charge(bytes) {
        Ok(c) => c,
        Err(over) => {
            let e = memory_refusal(server, session, bytes, over);
            let msg = dialect.error(&call.reply_id(), &e);
            charge_error_reply(session, &msg);
            session.send(msg).await;
            return true;
        }
    };
    let slot = match admit(server, session, gate).await {
        Ok(slot) => slot,
        Err(Refused::Excessive) => {
            session
                .send(dialect.error(&call.reply_id(), &excessive()))
                .await;
            disconnect_excessive(server, session);
            return false;
        }
    };
    let (server, session) = (server.clone(), session.clone());
    tokio::spawn(async move {
        let reply = run_request(&server, &session, &call).await;
        let msg = encode(session.dialect(), &call.reply_id(), &reply, max_send);
        session.send(msg).await;
        drop((slot, charge));
    });
    true
}

/// ElectrumX's answer to a first message that is not `server.version`: the two old-client
/// crash notifications, error 1 (for a request), then a disconnect.
async fn refuse_unidentified(session: &Arc<SessionHandle>, id: Option<&Value>) {
    info!(
        "session {}: closing, server.version must be the first message",
        session.id
    );
    send_crash_notifications(session).await;
    if let Some(id) = id {
        let dialect = session.dialect();
        session.send(dialect.error(id, &use_server_version())).await;
    }
    session.close();
}

/// The two parameterless notifications that crash ancient Electrum clients.
async fn send_crash_notifications(session: &Arc<SessionHandle>) {
    let dialect = session.dialect();
    session
        .send(dialect.notification("blockchain.relayfee", None))
        .await;
    session
        .send(dialect.notification("blockchain.estimatefee", None))
        .await;
}

/// A batch: parse errors first, then each request's reply as it completes; once the replies
/// pass `MAX_SEND` in total, the rest are replaced by the "response too large" error.
async fn handle_batch(
    server: &Arc<Sessions>,
    session: &Arc<SessionHandle>,
    gate: &Arc<Concurrency>,
    members: Vec<Member>,
    request_bytes: usize,
) -> bool {
    let dialect = session.dialect();
    let max_send = server.max_send;
    let mut parts: Vec<String> = Vec::new();
    let mut size = 0usize;
    let mut push = |parts: &mut Vec<String>, id: &Value, reply: &Reply| {
        let mut msg = encode(dialect, id, reply, 0).into_string();
        size += msg.len() + 2;
        if max_send > 0 && size > max_send {
            msg = dialect.error(id, &RpcError::response_too_large(max_send));
        }
        parts.push(msg);
    };
    let mut calls = Vec::new();
    let mut members = members.into_iter().peekable();
    while let Some(m) = members.next() {
        match m {
            Member::Error(e) => {
                charge_error_reply(session, &e);
                parts.push(e)
            }
            Member::Call(c) if session.version().is_none() => {
                // Before negotiation, as in ElectrumX (aiorpcX starts batch members in order,
                // and a batch is answered once its last request is): a refusal (a bad
                // `server.version`, or any other member first) disconnects; the batch is sent,
                // refusal included, only if no later request was left waiting.
                let refusal = if c.method == "server.version" && !c.is_notification() {
                    let (reply, bye) = server.electrum.version_first(session.as_ref(), &c);
                    if !bye {
                        push(&mut parts, &c.reply_id(), &reply);
                        continue;
                    }
                    info!("session {}: closing, refused server.version", session.id);
                    reply
                } else {
                    info!(
                        "session {}: closing, server.version must be the first message",
                        session.id
                    );
                    send_crash_notifications(session).await;
                    Err(use_server_version())
                };
                let later_requests =
                    members.any(|m| matches!(m, Member::Call(ref c) if !c.is_notification()));
                if let (Some(id), false) = (&c.id, later_requests) {
                    push(&mut parts, id, &refusal);
                    session.send(jsonrpc::batch(&parts)).await;
                }
                session.close();
                return false;
            }
            Member::Call(c) if c.is_notification() => {}
            Member::Call(c) => calls.push(c),
        }
    }
    // Charged before it runs: when even the shortest answers cannot fit in MAX_SEND, the reply
    // is refused whatever the requests do, so none is run (a batch of tens of thousands of
    // cheap requests would otherwise hold all their replies in memory first).
    let floor = batch_reply_floor(dialect, &calls, &parts);
    if max_send > 0 && floor > max_send {
        info!(
            "session {}: refused a batch of {} requests: its reply cannot fit in {max_send} bytes",
            session.id,
            calls.len()
        );
        let msg = dialect.error(&Value::Null, &RpcError::response_too_large(max_send));
        charge_error_reply(session, &msg);
        session.send(msg).await;
        return true;
    }
    // Charged before it runs too, as its text, its parsed members and its reply (twice: the
    // replies, then the message joining them) at their shortest.
    let bytes = request_bytes + (calls.len() + parts.len()) * MEMBER_OVERHEAD + 2 * floor;
    let _charge = match session.budget.try_charge(bytes) {
        Ok(c) => c,
        Err(over) => {
            let e = memory_refusal(server, session, bytes, over);
            let msg = dialect.error(&Value::Null, &e);
            charge_error_reply(session, &msg);
            session.send(msg).await;
            return true;
        }
    };
    let mut excessive_seen = false;
    {
        // Members start as places free up, rather than all at once: a waiting member would
        // hold its task's state (a few kB) for nothing.
        let width = server.limits.cost.initial_concurrent;
        let mut running = futures::stream::iter(calls)
            .map(|call| {
                let (server, session, gate) = (server.clone(), session.clone(), gate.clone());
                async move {
                    let reply = match admit(&server, &session, &gate).await {
                        Ok(_slot) => Ok(run_request(&server, &session, &call).await),
                        Err(Refused::Excessive) => Err(()),
                    };
                    (call.reply_id(), reply)
                }
            })
            .buffer_unordered(width);
        while let Some((id, reply)) = running.next().await {
            match reply {
                Ok(reply) => push(&mut parts, &id, &reply),
                Err(()) => {
                    excessive_seen = true;
                    push(&mut parts, &id, &Err(excessive()));
                }
            }
        }
    }
    if excessive_seen {
        session.send(jsonrpc::batch(&parts)).await;
        disconnect_excessive(server, session);
        return false;
    }
    if !parts.is_empty() {
        session.send(jsonrpc::batch(&parts)).await;
    }
    true
}

/// The fewest bytes a batch's reply can take: `parts` already made, and every request of
/// `calls` answered with the shortest result there is (one character: `0`; `null` and `[]` are
/// longer, so a batch whose real reply fits is never refused), joined as [`jsonrpc::batch`]
/// joins them.
fn batch_reply_floor(dialect: Dialect, calls: &[Call], parts: &[String]) -> usize {
    let shortest = RawValue::from_string("0".into()).expect("valid JSON");
    // The shortest reply, less its `null` id.
    let reply = dialect.result(&Value::Null, &shortest).len() - "null".len();
    let made: usize = parts.iter().map(|p| p.len() + 2).sum();
    let ids: usize = calls
        .iter()
        .map(|c| serde_json::to_string(&c.reply_id()).map_or(4, |id| id.len()))
        .sum();
    let n = parts.len() + calls.len();
    // `[`, `]`, and `, ` between members.
    2 + made + calls.len() * (reply + 2) + ids - 2 * usize::from(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(line: &str) -> Call {
        match Dialect::V2.parse(line.as_bytes()) {
            Incoming::Call(c) => c,
            _ => panic!("a call"),
        }
    }

    #[test]
    fn a_slow_request_is_logged_with_what_replays_it() {
        let hash = "f".repeat(64);
        let history = call(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"blockchain.scripthash.get_history","params":["{hash}"]}}"#
        ));
        let answer = RawValue::from_string("[1,2,3]".into()).unwrap();
        let note = slow_request_note(
            7,
            &history,
            Duration::from_micros(1_234_500),
            &Ok(answer.into()),
        );
        assert_eq!(
            note,
            format!("session 7: slow request blockchain.scripthash.get_history [\"{hash}\"] took 1234.5 ms (7 bytes)")
        );
        let refused = slow_request_note(
            7,
            &history,
            Duration::from_secs(2),
            &Err(RpcError::new(-32600, "history too large")),
        );
        assert!(
            refused.ends_with("took 2000.0 ms (error -32600: history too large)"),
            "{refused}"
        );
        // Long params are cut, and say how long they were.
        let outpoints: Vec<String> = (0..100).map(|n| format!("\"{n:064x}:0\"")).collect();
        let many = call(&format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"blockchain.outpoint.subscribe","params":[{}]}}"#,
            outpoints.join(",")
        ));
        let note = slow_request_note(
            7,
            &many,
            Duration::from_secs(1),
            &Ok(RawValue::from_string("null".into()).unwrap().into()),
        );
        let shown = note.split(" took ").next().unwrap();
        assert!(shown.len() < 300, "{note}");
        assert!(
            shown.ends_with(&format!("… ({} bytes)", outpoints.join(",").len() + 2)),
            "{note}"
        );
    }

    #[test]
    fn a_batch_reply_is_never_shorter_than_its_floor() {
        let calls: Vec<Call> = (0..50)
            .map(|n| {
                let line = format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"server.ping"}}"#);
                Dialect::V2.parse(line.as_bytes())
            })
            .map(|incoming| match incoming {
                Incoming::Call(c) => c,
                _ => panic!("a call"),
            })
            .collect();
        let reply = |result: &str| {
            let raw = RawValue::from_string(result.into()).unwrap();
            let parts: Vec<String> = calls
                .iter()
                .map(|c| Dialect::V2.result(&c.reply_id(), &raw))
                .collect();
            (jsonrpc::batch(&parts).len(), parts)
        };
        // The floor is the reply of the shortest result, and below every longer one (a ping's
        // `null`, an empty history's `[]`, which a floor of `null` would have passed).
        let (exact, parts) = reply("0");
        assert_eq!(batch_reply_floor(Dialect::V2, &calls, &[]), exact);
        for longer in ["[]", "null"] {
            assert!(batch_reply_floor(Dialect::V2, &calls, &[]) < reply(longer).0);
        }
        // Replies already made (errors of the batch) count as they are.
        assert_eq!(
            batch_reply_floor(Dialect::V2, &calls[20..], &parts[..20]),
            exact
        );
    }

    #[test]
    fn oversized_replies_become_errors() {
        let raw = serde_json::value::to_raw_value(&"x".repeat(100)).unwrap();
        let msg = encode(Dialect::V2, &Value::from(1), &Ok(raw.into()), 50);
        assert_eq!(
            msg.into_string(),
            r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"response too large (over 50 bytes"},"id":1}"#
        );
        let big: Arc<RawValue> = serde_json::value::to_raw_value(&"y".repeat(SHARED_RESULT))
            .unwrap()
            .into();
        let msg = encode(
            Dialect::V2,
            &Value::from(1),
            &Ok(big.clone()),
            SHARED_RESULT + 50,
        );
        assert_eq!(msg.len(), SHARED_RESULT + 36, "a reply as long as its text");
        assert!(
            msg.into_string().ends_with(r#"yy","id":1}"#),
            "not over MAX_SEND"
        );
        let msg = encode(Dialect::V2, &Value::from(1), &Ok(big.clone()), 0);
        match msg {
            Message::Around { body, .. } => assert!(Arc::ptr_eq(&body, &big), "not copied"),
            Message::Text(_) => panic!("a big result is copied"),
        }
    }
}
