//! One client connection: newline framing with `MAX_RECV`, version negotiation first, up to
//! ten requests in flight, replies in completion order, and a writer fed by a bounded queue
//! that notifications share (a client too slow to drain it is disconnected).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

use super::jsonrpc::{self, Call, Dialect, Incoming, Member, RpcError};
use super::methods::{self, Reply};
use super::server::Server;
use super::version::Protocol;
use crate::types::HashX;

/// Requests of one session processed at once (ElectrumX's `INITIAL_CONCURRENT`).
const CONCURRENT_REQUESTS: usize = 10;
/// Queued outgoing messages before a session counts as not reading.
const SEND_QUEUE: usize = 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A subscribed script hash: the client's spelling and the status it last received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sub {
    pub alias: String,
    pub status: Option<String>,
}

enum Outgoing {
    Line(String),
    Close,
}

/// What the rest of the server sees of a session.
pub struct SessionHandle {
    pub id: u64,
    pub peer: SocketAddr,
    pub client_name: Mutex<String>,
    pub headers_subscribed: AtomicBool,
    pub subs: Mutex<HashMap<HashX, Sub>>,
    protocol: Mutex<Option<Protocol>>,
    dialect: Mutex<Dialect>,
    out: mpsc::Sender<Outgoing>,
    closing: AtomicBool,
}

impl SessionHandle {
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol.lock().clone()
    }

    pub fn set_protocol(&self, p: Protocol) {
        *self.protocol.lock() = Some(p);
    }

    pub fn dialect(&self) -> Dialect {
        *self.dialect.lock()
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Queues a notification without waiting; a full queue means the client is not reading,
    /// and it is disconnected rather than buffered without bound.
    pub fn notify(&self, method: &str, params: &RawValue) {
        let line = self.dialect().notification(method, Some(params));
        if let Err(mpsc::error::TrySendError::Full(_)) = self.out.try_send(Outgoing::Line(line)) {
            warn!(
                "session {} ({}): not reading its notifications; disconnecting",
                self.id, self.peer
            );
            self.close();
        }
    }

    async fn send(&self, line: String) {
        let _ = self.out.send(Outgoing::Line(line)).await;
    }

    /// Asks the writer to flush what is queued and close the connection.
    pub fn close(&self) {
        if !self.closing.swap(true, Ordering::Relaxed) {
            let out = self.out.clone();
            tokio::spawn(async move {
                let _ = out.send(Outgoing::Close).await;
            });
        }
    }
}

/// What reading one line produced.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Complete,
    /// Longer than `MAX_RECV`: dropped, and the stream resynchronised at the next newline.
    Oversize,
    Eof,
}

/// Reads up to a newline into `buf` (without it), never buffering more than `max` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut dropping = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, found) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !dropping {
            buf.extend_from_slice(chunk);
            if max > 0 && buf.len() > max {
                dropping = true;
                buf.clear();
            }
        }
        let used = found.unwrap_or(avail.len());
        r.consume(used);
        if found.is_some() {
            return Ok(if dropping {
                Line::Oversize
            } else {
                Line::Complete
            });
        }
    }
}

async fn writer<W: AsyncWrite + Unpin>(w: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut w = tokio::io::BufWriter::new(w);
    while let Some(msg) = rx.recv().await {
        match msg {
            Outgoing::Line(mut line) => {
                line.push('\n');
                if w.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
                // Flush once the queue is drained, so bursts go out in few writes.
                if rx.is_empty() && w.flush().await.is_err() {
                    break;
                }
            }
            Outgoing::Close => break,
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

/// Encodes a reply, replacing one larger than `MAX_SEND` by the "response too large" error.
fn encode(dialect: Dialect, id: &Value, reply: &Reply, max_send: usize) -> String {
    let msg = match reply {
        Ok(raw) => dialect.result(id, raw),
        Err(e) => dialect.error(id, e),
    };
    if max_send > 0 && msg.len() > max_send {
        dialect.error(id, &RpcError::response_too_large(max_send))
    } else {
        msg
    }
}

fn use_server_version() -> RpcError {
    RpcError::bad_request("use server.version to identify client")
}

/// A source of client messages.
trait Source: Send {
    /// Reads the next message into `buf`.
    fn next<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<Line>> + Send + 'a;
}

/// Newline framing over a byte stream (TCP, TLS), at most `max` bytes a line.
struct Lines<R> {
    r: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin + Send> Source for Lines<R> {
    fn next<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<Line>> + Send + 'a {
        read_line(&mut self.r, buf, self.max)
    }
}

/// Serves one newline-framed connection (TCP, SSL) until either side closes it.
pub async fn run<S>(server: Arc<Server>, stream: S, peer: SocketAddr, kind: &'static str)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(SEND_QUEUE);
    let write_task = tokio::spawn(writer(wr, rx));
    let source = Lines {
        r: BufReader::new(rd),
        max: server.settings.max_recv,
    };
    serve(server, source, tx, write_task, peer, kind).await
}

/// Serves one WebSocket connection (ws, wss; handshake done): one JSON-RPC message per text
/// (or binary) message, no newlines. The size limit is the WebSocket configuration's.
pub async fn run_ws<S>(
    server: Arc<Server>,
    ws: tokio_tungstenite::WebSocketStream<S>,
    peer: SocketAddr,
    kind: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(SEND_QUEUE);
    let write_task = tokio::spawn(ws_writer(sink, rx));
    serve(server, WsSource { stream }, tx, write_task, peer, kind).await
}

struct WsSource<S> {
    stream: futures::stream::SplitStream<tokio_tungstenite::WebSocketStream<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Source for WsSource<S> {
    fn next<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<Line>> + Send + 'a {
        use tokio_tungstenite::tungstenite::{Error, Message};
        async move {
            buf.clear();
            loop {
                match self.stream.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(Line::Eof),
                    Some(Ok(Message::Text(t))) => {
                        buf.extend_from_slice(t.as_bytes());
                        return Ok(Line::Complete);
                    }
                    Some(Ok(Message::Binary(b))) => {
                        buf.extend_from_slice(&b);
                        return Ok(Line::Complete);
                    }
                    Some(Ok(_)) => {} // ping, pong: answered by the library
                    Some(Err(Error::Capacity(e))) => {
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                    }
                    Some(Err(e)) => return Err(std::io::Error::other(e)),
                }
            }
        }
    }
}

async fn ws_writer<S>(
    mut sink: futures::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<S>,
        tokio_tungstenite::tungstenite::Message,
    >,
    mut rx: mpsc::Receiver<Outgoing>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    while let Some(msg) = rx.recv().await {
        match msg {
            Outgoing::Line(line) => {
                // Queue without flushing while more is waiting, so bursts go out together.
                let sent = if rx.is_empty() {
                    sink.send(Message::text(line)).await
                } else {
                    sink.feed(Message::text(line)).await
                };
                if sent.is_err() {
                    break;
                }
            }
            Outgoing::Close => break,
        }
    }
    let _ = sink.flush().await;
    let _ = sink.close().await;
}

async fn serve<R: Source>(
    server: Arc<Server>,
    mut source: R,
    tx: mpsc::Sender<Outgoing>,
    write_task: tokio::task::JoinHandle<()>,
    peer: SocketAddr,
    kind: &'static str,
) {
    let session = Arc::new(SessionHandle {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        peer,
        client_name: Mutex::new("unknown".into()),
        headers_subscribed: AtomicBool::new(false),
        subs: Mutex::new(HashMap::new()),
        protocol: Mutex::new(None),
        dialect: Mutex::new(Dialect::Detect),
        out: tx,
        closing: AtomicBool::new(false),
    });
    server.registry.add_session(session.clone());
    info!(
        "session {}: {kind} {peer}, {} total",
        session.id,
        server.registry.session_count()
    );
    let mut dialect = Dialect::Detect;
    let mut buf = Vec::new();
    let limit = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
    let max_recv = server.settings.max_recv;
    while !session.is_closing() {
        match source.next(&mut buf).await {
            Ok(Line::Complete) => {}
            Ok(Line::Oversize) => {
                warn!(
                    "session {}: dropped a message over {} bytes",
                    session.id, max_recv
                );
                continue;
            }
            Ok(Line::Eof) => break,
            Err(e) => {
                debug!("session {}: read error: {e}", session.id);
                break;
            }
        }
        let incoming = dialect.parse(&buf);
        *session.dialect.lock() = dialect;
        match incoming {
            Incoming::Ignore => {}
            Incoming::Reply(msg) => session.send(msg).await,
            Incoming::Call(call) => {
                if !handle_call(&server, &session, &limit, call).await {
                    break;
                }
            }
            Incoming::Batch(members) => {
                if !handle_batch(&server, &session, &limit, members).await {
                    break;
                }
            }
        }
    }
    server.registry.remove_session(session.id);
    session.close();
    drop(session);
    let _ = write_task.await;
}

/// Handles one request or notification; `false` ends the session.
async fn handle_call(
    server: &Arc<Server>,
    session: &Arc<SessionHandle>,
    limit: &Arc<Semaphore>,
    call: Call,
) -> bool {
    let dialect = session.dialect();
    let max_send = server.settings.max_send;
    if session.protocol().is_none() {
        // server.version must come first (ElectrumX ≥ 1.19), and is answered before anything
        // else is read, so pipelined requests see the negotiated version.
        if call.method == "server.version" && !call.is_notification() {
            let (reply, disconnect) = methods::server_version_first(server, session, &call);
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
        // Below protocol 1.7 ElectrumX has no notification handlers: ignored.
        return true;
    }
    let Ok(permit) = limit.clone().acquire_owned().await else {
        return false;
    };
    let (server, session) = (server.clone(), session.clone());
    tokio::spawn(async move {
        let reply = methods::dispatch(&server, &session, &call).await;
        let msg = encode(session.dialect(), &call.reply_id(), &reply, max_send);
        session.send(msg).await;
        drop(permit);
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
    server: &Arc<Server>,
    session: &Arc<SessionHandle>,
    limit: &Arc<Semaphore>,
    members: Vec<Member>,
) -> bool {
    let dialect = session.dialect();
    let max_send = server.settings.max_send;
    let mut parts: Vec<String> = Vec::new();
    let mut size = 0usize;
    let mut push = |parts: &mut Vec<String>, id: &Value, reply: &Reply| {
        let mut msg = encode(dialect, id, reply, 0);
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
            Member::Error(e) => parts.push(e),
            Member::Call(c) if session.protocol().is_none() => {
                // Before negotiation, as in ElectrumX (aiorpcX starts batch members in order,
                // and a batch is answered once its last request is): a refusal (a bad
                // `server.version`, or any other member first) disconnects; the batch is sent,
                // refusal included, only if no later request was left waiting.
                let refusal = if c.method == "server.version" && !c.is_notification() {
                    let (reply, bye) = methods::server_version_first(server, session, &c);
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
    {
        let mut running: FuturesUnordered<_> = calls
            .into_iter()
            .map(|call| {
                let (server, session, limit) = (server.clone(), session.clone(), limit.clone());
                async move {
                    let _permit = limit.acquire_owned().await;
                    let reply = methods::dispatch(&server, &session, &call).await;
                    (call.reply_id(), reply)
                }
            })
            .collect();
        while let Some((id, reply)) = running.next().await {
            push(&mut parts, &id, &reply);
        }
    }
    if !parts.is_empty() {
        session.send(jsonrpc::batch(&parts)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_limited_and_resynchronised() {
        let data: &[u8] = b"short\nthis line is far too long\nok\npartial";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Oversize
        );
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"ok");
        assert_eq!(read_line(&mut r, &mut buf, 10).await.unwrap(), Line::Eof);
    }

    #[test]
    fn oversized_replies_become_errors() {
        let raw = serde_json::value::to_raw_value(&"x".repeat(100)).unwrap();
        let msg = encode(Dialect::V2, &Value::from(1), &Ok(raw), 50);
        assert_eq!(
            msg,
            r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"response too large (over 50 bytes"},"id":1}"#
        );
    }
}
