//! The daemon's JSON-RPC interface: a jsonrpsee HTTP client with failover, cookie auth and retry.
//!
//! Bitcoin Core before v28 (and so litecoind, komodod, kevacoind) answers in JSON-RPC 1.0 style:
//! `"error": null` beside every result and HTTP 500 on errors. jsonrpsee's client is strict 2.0,
//! so an HTTP middleware layer ([`CoreCompat`]) rewrites each reply into 2.0 form first.
//!
//! Outages are survived: connection failures and the daemon's warm-up (`-28`) are retried with
//! backoff forever, failing over between `DAEMON_URL` entries, and logged once per state change.
//!
//! [`follow_tip`] long-polls the daemon for new blocks on a connection of its own;
//! [`follow_zmq`] hears its ZMQ notifications where it publishes them.

#[cfg(test)]
mod fake_http;
mod longpoll;
mod zmq;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use jsonrpsee::core::client::{BatchResponse, ClientT, Error as ClientError};
use jsonrpsee::core::params::{ArrayParams, BatchRequestBuilder};
use jsonrpsee::http_client::transport::{Error as TransportError, HttpBackend};
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::config::DaemonUrl;
use crate::metrics::{DaemonOutcome, Metrics};
use crate::rest::Rest;
use crate::types::{BlockHash, Height, Txid};
pub use longpoll::follow_tip;
pub use zmq::follow_zmq;

/// Bitcoin Core's "still loading" error code.
const RPC_IN_WARMUP: i64 = -28;

/// An error the daemon returned for a request: it will not go away by retrying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("daemon error {code}: {message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("daemon reply to {method} could not be understood: {detail}")]
    BadReply { method: String, detail: String },
}

// ---------------------------------------------------------------------------------------------
// HTTP middleware: JSON-RPC 1.0 replies → 2.0.

/// Tower layer that turns Bitcoin Core's 1.0-style replies into JSON-RPC 2.0 for jsonrpsee.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CoreCompatLayer;

impl<S> tower::Layer<S> for CoreCompatLayer {
    type Service = CoreCompat<S>;
    fn layer(&self, inner: S) -> CoreCompat<S> {
        CoreCompat { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CoreCompat<S> {
    inner: S,
}

type Request = jsonrpsee::http_client::HttpRequest;
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower::Service<Request> for CoreCompat<HttpBackend> {
    type Response = http::Response<Full<Bytes>>;
    type Error = TransportError;
    type Future = BoxFuture<Result<Self::Response, TransportError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let fut = tower::Service::call(&mut self.inner, req);
        Box::pin(async move {
            let resp = fut.await?;
            let (mut parts, body) = resp.into_parts();
            let status = parts.status;
            let bytes = body
                .collect()
                .await
                .map_err(|e| {
                    TransportError::Http(jsonrpsee::core::http_helpers::HttpError::Stream(e.into()))
                })?
                .to_bytes();
            // Core answers RPC errors with HTTP 404/500 and a JSON body; anything else that is
            // not a success (401 bad credentials, 503 work queue full) stays an HTTP error.
            let json_error = matches!(status.as_u16(), 404 | 500) && bytes.first() == Some(&b'{');
            if !status.is_success() && !json_error {
                return Ok(http::Response::from_parts(parts, Full::new(bytes)));
            }
            let fixed = to_jsonrpc2(&bytes).unwrap_or(bytes);
            parts.status = http::StatusCode::OK;
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Ok(http::Response::from_parts(parts, Full::new(fixed)))
        })
    }
}

#[derive(serde::Deserialize)]
struct LooseReply<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    id: &'a RawValue,
}

#[derive(serde::Serialize)]
struct StrictReply<'a> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RawValue>,
    id: &'a RawValue,
}

fn strict(r: LooseReply<'_>) -> StrictReply<'_> {
    let error = r.error.filter(|e| e.get() != "null");
    // A JSON-RPC 2.0 reply has exactly one of result and error.
    let result = match error {
        Some(_) => None,
        None => Some(
            r.result
                .unwrap_or_else(|| serde_json::from_str("null").unwrap()),
        ),
    };
    StrictReply {
        jsonrpc: "2.0",
        result,
        error,
        id: r.id,
    }
}

/// Rewrites one reply or a batch of replies; `None` when the body is not JSON-RPC at all
/// (then jsonrpsee reports it as it is). Values are carried as raw JSON, never re-parsed.
fn to_jsonrpc2(body: &[u8]) -> Option<Bytes> {
    // Block batches are tens of megabytes of hex: parse the body once (`from_slice` checks the
    // UTF-8 of what it reads) and write into a buffer sized up front, without regrowing it.
    let mut out = Vec::with_capacity(body.len() + 64);
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if batch {
        let replies: Vec<LooseReply> = serde_json::from_slice(body).ok()?;
        out.reserve(replies.len() * 16);
        let replies: Vec<StrictReply> = replies.into_iter().map(strict).collect();
        serde_json::to_writer(&mut out, &replies).ok()?;
    } else {
        let reply: LooseReply = serde_json::from_slice(body).ok()?;
        serde_json::to_writer(&mut out, &strict(reply)).ok()?;
    }
    Some(Bytes::from(out))
}

// ---------------------------------------------------------------------------------------------
// The client.

type Client = HttpClient<
    jsonrpsee::http_client::RpcLogger<jsonrpsee::http_client::RpcService<CoreCompat<HttpBackend>>>,
>;

/// What went wrong on the way to the daemon, for deciding whether to retry.
enum Attempt<T> {
    Done(T),
    /// The daemon is unreachable, warming up or refusing us: wait and try again.
    Retry(Trouble, String),
    Fail(DaemonError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Unknown,
    Up,
    Down(Trouble),
}

/// Kinds of daemon trouble; a change of kind is logged, a repeat is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    Unreachable,
    WarmingUp,
    Credentials,
    Timeout,
}

struct Current {
    /// Replaced at run time by the admin RPC's `daemon_url`.
    urls: Vec<DaemonUrl>,
    index: usize,
    client: Arc<Client>,
    /// Bumped at every switch, so a failure seen on an older client does not move us on twice.
    generation: u64,
}

/// A handle on the daemon; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

struct Inner {
    cookie: Option<PathBuf>,
    current: Mutex<Current>,
    health: Mutex<Health>,
    max_backoff: Duration,
    /// The daemon's block count at its last `getblockchaininfo` answer; -1 before the first.
    cached_height: AtomicI64,
    /// REST access for the URL in use (the URL it was made for, the client).
    rest: Mutex<Option<(String, Arc<Rest>)>>,
    /// Set once the daemon turned out to lack `getrawmempool`'s `mempool_sequence`; cleared
    /// when the daemon in use changes.
    no_mempool_sequence: AtomicBool,
    metrics: Metrics,
}

impl Daemon {
    pub fn new(
        urls: Vec<DaemonUrl>,
        cookie: Option<PathBuf>,
        metrics: Metrics,
    ) -> anyhow::Result<Daemon> {
        anyhow::ensure!(!urls.is_empty(), "no daemon URL");
        let client = Arc::new(build_client(&urls[0], cookie.as_ref())?);
        Ok(Daemon {
            inner: Arc::new(Inner {
                cookie,
                current: Mutex::new(Current {
                    urls,
                    index: 0,
                    client,
                    generation: 0,
                }),
                health: Mutex::new(Health::Unknown),
                max_backoff: Duration::from_secs(4),
                cached_height: AtomicI64::new(-1),
                rest: Mutex::new(None),
                no_mempool_sequence: AtomicBool::new(false),
                metrics,
            }),
        })
    }

    /// The URL in use, without credentials.
    pub fn url(&self) -> String {
        let cur = self.inner.current.lock();
        cur.urls[cur.index].url.clone()
    }

    /// The URL list in use.
    pub(crate) fn urls(&self) -> Vec<DaemonUrl> {
        self.inner.current.lock().urls.clone()
    }

    /// Whether credentials come from `DAEMON_COOKIE` (URLs then need none).
    pub(crate) fn has_cookie(&self) -> bool {
        self.inner.cookie.is_some()
    }

    /// The daemon's block count when it last answered `getblockchaininfo` (ElectrumX's
    /// `cached_height`); `None` before that.
    pub(crate) fn cached_height(&self) -> Option<u32> {
        u32::try_from(self.inner.cached_height.load(Ordering::Relaxed)).ok()
    }

    /// Replaces the URL list and switches to its first entry, as ElectrumX's `daemon_url`
    /// admin command does. Calls under way finish on the client they started with.
    pub(crate) fn set_urls(&self, urls: Vec<DaemonUrl>) -> anyhow::Result<()> {
        anyhow::ensure!(!urls.is_empty(), "no daemon URL");
        let client = Arc::new(build_client(&urls[0], self.inner.cookie.as_ref())?);
        for (n, u) in urls.iter().enumerate() {
            let current = if n == 0 { " (current)" } else { "" };
            info!("daemon #{} at {}{current}", n + 1, u.url);
        }
        self.inner
            .no_mempool_sequence
            .store(false, Ordering::Relaxed);
        let mut cur = self.inner.current.lock();
        let generation = cur.generation + 1;
        *cur = Current {
            urls,
            index: 0,
            client,
            generation,
        };
        Ok(())
    }

    fn client(&self) -> (u64, Arc<Client>) {
        let cur = self.inner.current.lock();
        (cur.generation, cur.client.clone())
    }

    /// Moves to the next URL (or rebuilds the client for the same one, re-reading the cookie).
    fn fail_over(&self, failed_generation: u64) {
        let mut cur = self.inner.current.lock();
        if cur.generation != failed_generation {
            return; // another task already moved on
        }
        let next = (cur.index + 1) % cur.urls.len();
        match build_client(&cur.urls[next], self.inner.cookie.as_ref()) {
            Ok(client) => {
                if next != cur.index {
                    info!("daemon: failing over to {}", cur.urls[next].url);
                }
                if next != cur.index {
                    self.inner
                        .no_mempool_sequence
                        .store(false, Ordering::Relaxed);
                }
                cur.index = next;
                cur.client = Arc::new(client);
                cur.generation += 1;
            }
            Err(e) => warn!("daemon: cannot use {}: {e:#}", cur.urls[next].url),
        }
    }

    fn set_health(&self, h: Health, detail: &str) {
        let mut cur = self.inner.health.lock();
        if *cur == h {
            return;
        }
        match h {
            Health::Up if *cur != Health::Unknown => info!("daemon at {} is back", self.url()),
            Health::Up => info!("daemon at {} is up", self.url()),
            Health::Down(_) => warn!("daemon at {}: {detail}; retrying", self.url()),
            Health::Unknown => {}
        }
        *cur = h;
    }

    /// Runs `op` against the current client until it succeeds or fails for good.
    async fn retrying<T, F, Fut>(&self, method: &str, op: F) -> Result<T, DaemonError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut backoff = Duration::from_millis(250);
        let mut failures = 0u32;
        loop {
            let (generation, client) = self.client();
            let started = std::time::Instant::now();
            let attempt = op(client).await;
            let outcome = match &attempt {
                Attempt::Done(_) => DaemonOutcome::Ok,
                Attempt::Fail(_) => DaemonOutcome::RpcError,
                Attempt::Retry(..) => DaemonOutcome::TransportError,
            };
            self.inner
                .metrics
                .daemon_call(method, started.elapsed(), outcome);
            match attempt {
                Attempt::Done(v) => {
                    self.set_health(Health::Up, "");
                    return Ok(v);
                }
                Attempt::Fail(e) => {
                    self.set_health(Health::Up, "");
                    return Err(e);
                }
                Attempt::Retry(trouble, why) => {
                    failures += 1;
                    // The daemon closes a kept-alive connection after its idle timeout (Core's
                    // -rpcservertimeout, 30 s), and the client's pool may hand it out just then.
                    // A new connection is the cure: an outage only if that fails too.
                    if failures == 1 && trouble == Trouble::Unreachable {
                        debug!("daemon {method}: {why}; retrying on a new connection");
                        continue;
                    }
                    self.set_health(Health::Down(trouble), &why);
                    // Persistent trouble on this URL: try the next one (and re-read the cookie).
                    if failures.is_multiple_of(4) {
                        self.fail_over(generation);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.inner.max_backoff);
                }
            }
        }
    }

    /// One call, retried through outages. Daemon-side errors are returned as [`RpcError`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<T, DaemonError> {
        self.retrying(method, |client| {
            let params = params.clone();
            async move {
                let mut p = ArrayParams::new();
                for v in params {
                    p.insert(v).expect("a JSON value serializes");
                }
                match client.request::<T, _>(method, p).await {
                    Ok(v) => Attempt::Done(v),
                    Err(e) => classify(method, e),
                }
            }
        })
        .await
    }

    /// The same method with many parameter lists, as one JSON-RPC batch. Each entry keeps its own
    /// daemon error; a warm-up error anywhere retries the whole batch.
    pub async fn batch<T: DeserializeOwned + Clone + std::fmt::Debug>(
        &self,
        method: &str,
        params: &[Vec<Value>],
    ) -> Result<Vec<Result<T, RpcError>>, DaemonError> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        self.retrying(method, |client| async move {
            let mut batch = BatchRequestBuilder::new();
            for list in params {
                let mut p = ArrayParams::new();
                for v in list {
                    p.insert(v).expect("a JSON value serializes");
                }
                batch.insert(method, p).expect("params serialize");
            }
            let resp: BatchResponse<T> = match client.batch_request(batch).await {
                Ok(r) => r,
                Err(e) => return classify(method, e),
            };
            let mut out = Vec::with_capacity(params.len());
            for entry in resp.into_iter() {
                match entry {
                    Ok(v) => out.push(Ok(v)),
                    Err(e) if i64::from(e.code()) == RPC_IN_WARMUP => {
                        return Attempt::Retry(
                            Trouble::WarmingUp,
                            format!("warming up ({})", e.message()),
                        )
                    }
                    Err(e) => out.push(Err(RpcError {
                        code: e.code().into(),
                        message: e.message().to_string(),
                    })),
                }
            }
            Attempt::Done(out)
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Typed calls.

    pub async fn blockchain_info(&self) -> Result<BlockchainInfo, DaemonError> {
        let info: BlockchainInfo = self.call("getblockchaininfo", vec![]).await?;
        self.inner
            .cached_height
            .store(i64::from(info.blocks), Ordering::Relaxed);
        Ok(info)
    }

    /// Block hashes of consecutive heights; a height past the tip is an error.
    pub async fn block_hashes(&self, heights: &[Height]) -> Result<Vec<BlockHash>, DaemonError> {
        let params: Vec<Vec<Value>> = heights.iter().map(|h| vec![Value::from(h.0)]).collect();
        let replies: Vec<Result<String, RpcError>> = self.batch("getblockhash", &params).await?;
        replies
            .into_iter()
            .map(|r| parse_hash("getblockhash", &r?))
            .collect()
    }

    /// REST access to the URL in use (probed on first use), `None` for https.
    fn rest(&self) -> Option<Arc<Rest>> {
        let url = self.url();
        let mut rest = self.inner.rest.lock();
        match &*rest {
            Some((u, r)) if *u == url => Some(r.clone()),
            _ => {
                let r = Arc::new(Rest::new(&url, self.inner.metrics.clone())?);
                *rest = Some((url, r.clone()));
                Some(r)
            }
        }
    }

    /// Raw blocks: binary over REST when the daemon has it on, else `getblock <hash> 0`
    /// decoded from hex.
    pub async fn raw_blocks(&self, hashes: &[BlockHash]) -> Result<Vec<Vec<u8>>, DaemonError> {
        if let Some(rest) = self.rest() {
            if rest.usable().await {
                if let Ok(raws) = rest.blocks(hashes).await {
                    return Ok(raws);
                }
            }
        }
        let params: Vec<Vec<Value>> = hashes
            .iter()
            .map(|h| vec![Value::from(h.to_string()), Value::from(0)])
            .collect();
        let replies: Vec<Result<String, RpcError>> = self.batch("getblock", &params).await?;
        replies
            .into_iter()
            .map(|r| decode_hex("getblock", &r?))
            .collect()
    }

    /// The daemon's mempool txids and, where it has `getrawmempool`'s `mempool_sequence`
    /// (Bitcoin Core / Litecoin Core 0.21 on), the sequence number of that snapshot: it moves
    /// with every transaction added or removed, blocks included, so an unchanged number means an
    /// unchanged mempool. Daemons without it (an error, or a plain list: komodod ignores the
    /// extra argument) get the plain call from then on.
    pub(crate) async fn mempool_snapshot(&self) -> Result<MempoolSnapshot, DaemonError> {
        if !self.inner.no_mempool_sequence.load(Ordering::Relaxed) {
            let reply: Result<Value, DaemonError> = self
                .call("getrawmempool", vec![Value::from(false), Value::from(true)])
                .await;
            match reply {
                Ok(v) => {
                    if let Some(snapshot) = MempoolSnapshot::from_reply(&v)? {
                        return Ok(snapshot);
                    }
                }
                Err(DaemonError::Rpc(_)) => {}
                Err(e) => return Err(e),
            }
            info!("the daemon's getrawmempool has no mempool_sequence: the mempool is compared in full");
            self.inner
                .no_mempool_sequence
                .store(true, Ordering::Relaxed);
        }
        let ids: Vec<String> = self.call("getrawmempool", vec![]).await?;
        Ok(MempoolSnapshot {
            txids: parse_txids(&ids)?,
            sequence: None,
        })
    }

    /// `getmempoolinfo`: a few numbers, however large the mempool.
    pub(crate) async fn mempool_info(&self) -> Result<MempoolInfo, DaemonError> {
        self.call("getmempoolinfo", vec![]).await
    }

    /// Raw transactions; `None` for one the daemon does not know (left the mempool, say).
    pub async fn raw_transactions(
        &self,
        txids: &[Txid],
    ) -> Result<Vec<Option<Vec<u8>>>, DaemonError> {
        let params: Vec<Vec<Value>> = txids
            .iter()
            .map(|t| vec![Value::from(t.to_string()), Value::from(0)])
            .collect();
        let replies: Vec<Result<String, RpcError>> =
            self.batch("getrawtransaction", &params).await?;
        replies
            .into_iter()
            .map(|r| match r {
                Ok(hex) => decode_hex("getrawtransaction", &hex).map(Some),
                Err(_) => Ok(None),
            })
            .collect()
    }
}

/// The daemon's mempool summary (`getmempoolinfo`): what a cheap poll compares. Any added or
/// removed transaction moves `usage` (and nearly always `size` and `bytes`); only a swap of
/// transactions of the same size and memory use within one poll leaves all three alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct MempoolInfo {
    pub size: u64,
    pub bytes: u64,
    pub usage: u64,
}

/// The daemon's mempool at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MempoolSnapshot {
    pub txids: Vec<Txid>,
    /// `mempool_sequence`, where the daemon has it.
    pub sequence: Option<u64>,
}

impl MempoolSnapshot {
    /// `getrawmempool false true`'s `{"txids", "mempool_sequence"}`; `None` for a reply of
    /// another shape (a daemon that ignored the argument).
    fn from_reply(v: &Value) -> Result<Option<MempoolSnapshot>, DaemonError> {
        let (Some(ids), Some(sequence)) = (
            v.get("txids").and_then(Value::as_array),
            v.get("mempool_sequence").and_then(Value::as_u64),
        ) else {
            return Ok(None);
        };
        let ids: Vec<String> = ids
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_string())
            .collect();
        Ok(Some(MempoolSnapshot {
            txids: parse_txids(&ids)?,
            sequence: Some(sequence),
        }))
    }
}

fn parse_txids(ids: &[String]) -> Result<Vec<Txid>, DaemonError> {
    ids.iter()
        .map(|s| {
            Txid::from_hex(s).ok_or_else(|| DaemonError::BadReply {
                method: "getrawmempool".into(),
                detail: format!("bad txid {s:?}"),
            })
        })
        .collect()
}

/// The fields of `getblockchaininfo` the indexer uses.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BlockchainInfo {
    pub chain: String,
    pub blocks: u32,
    #[serde(default)]
    pub headers: u32,
    pub bestblockhash: String,
    #[serde(default)]
    pub initialblockdownload: bool,
}

fn parse_hash(method: &str, s: &str) -> Result<BlockHash, DaemonError> {
    BlockHash::from_hex(s).ok_or_else(|| DaemonError::BadReply {
        method: method.into(),
        detail: format!("bad hash {s:?}"),
    })
}

/// Nibble value of each byte, 0xff for a non-hex byte.
static HEX_NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes a daemon's hex with a lookup table into a buffer sized up front: blocks are
/// megabytes of hex, and `hex::decode` was the top symbol of a sync profile.
fn decode_hex(method: &str, s: &str) -> Result<Vec<u8>, DaemonError> {
    let bad = |detail: String| DaemonError::BadReply {
        method: method.into(),
        detail,
    };
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(bad("odd-length hex".into()));
    }
    let mut out = vec![0u8; bytes.len() / 2];
    for (i, (pair, o)) in bytes.chunks_exact(2).zip(out.iter_mut()).enumerate() {
        let (hi, lo) = (HEX_NIBBLE[pair[0] as usize], HEX_NIBBLE[pair[1] as usize]);
        if (hi | lo) > 0x0f {
            return Err(bad(format!("bad hex at character {}", 2 * i)));
        }
        *o = hi << 4 | lo;
    }
    Ok(out)
}

fn classify<T>(method: &str, e: ClientError) -> Attempt<T> {
    match e {
        ClientError::Call(obj) if i64::from(obj.code()) == RPC_IN_WARMUP => Attempt::Retry(
            Trouble::WarmingUp,
            format!("warming up ({})", obj.message()),
        ),
        ClientError::Call(obj) => Attempt::Fail(DaemonError::Rpc(RpcError {
            code: obj.code().into(),
            message: obj.message().to_string(),
        })),
        ClientError::Transport(t) => {
            let text = t.to_string();
            if text.contains("401") {
                Attempt::Retry(
                    Trouble::Credentials,
                    "credentials refused (HTTP 401): check the user:password in DAEMON_URL \
                     against rpcuser/rpcpassword, or DAEMON_COOKIE"
                        .into(),
                )
            } else {
                Attempt::Retry(Trouble::Unreachable, format!("unreachable ({text})"))
            }
        }
        ClientError::RequestTimeout => Attempt::Retry(Trouble::Timeout, "request timed out".into()),
        ClientError::RestartNeeded(why) => {
            Attempt::Retry(Trouble::Unreachable, format!("connection lost ({why})"))
        }
        ClientError::ParseError(e) => Attempt::Fail(DaemonError::BadReply {
            method: method.into(),
            detail: e.to_string(),
        }),
        other => Attempt::Fail(DaemonError::BadReply {
            method: method.into(),
            detail: other.to_string(),
        }),
    }
}

fn build_client(url: &DaemonUrl, cookie: Option<&PathBuf>) -> anyhow::Result<Client> {
    build_client_with_timeout(url, cookie, Duration::from_secs(120))
}

fn build_client_with_timeout(
    url: &DaemonUrl,
    cookie: Option<&PathBuf>,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let auth = match (&url.auth, cookie) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read DAEMON_COOKIE {}: {e}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let mut headers = HeaderMap::new();
    if let Some(auth) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(auth);
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}"))?,
        );
    }
    let client = HttpClientBuilder::default()
        .set_headers(headers)
        .max_request_size(64 << 20)
        .max_response_size(u32::MAX)
        .request_timeout(timeout)
        .max_concurrent_requests(64)
        .set_http_middleware(tower::ServiceBuilder::new().layer(CoreCompatLayer))
        .build(&url.url)?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tracing macros write while a test runs, to read its warnings.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Found by the soak: a call whose pooled connection the daemon had just closed (its idle
    /// timeout) was logged as the daemon being unreachable, then back 11 ms later.
    #[tokio::test]
    async fn a_kept_alive_connection_the_daemon_closed_is_no_outage() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
                tokio::spawn(async move {
                    let mut answered = 0;
                    while let Some(body) = fake_http::read_request(&mut s).await {
                        if first && answered == 1 {
                            // The first connection's second request: closed unanswered, as
                            // Core's server does to a connection idle past its timeout.
                            return;
                        }
                        let body = json_reply(&body["id"]);
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        s.write_all(reply.as_bytes()).await.unwrap();
                        answered += 1;
                    }
                });
            }
        });
        fn json_reply(id: &Value) -> String {
            serde_json::json!({"result": 7, "error": null, "id": id}).to_string()
        }
        let log = Captured::default();
        let writer = log.clone();
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone())
                .finish(),
        );
        let url = DaemonUrl::parse(&format!("http://u:p@127.0.0.1:{port}/"), port, false).unwrap();
        let daemon = Daemon::new(vec![url], None, Metrics::new()).unwrap();
        for _ in 0..2 {
            let n: u64 = daemon.call("getblockcount", vec![]).await.unwrap();
            assert_eq!(n, 7);
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            2,
            "the second call went to a new connection"
        );
        let log = String::from_utf8(log.0.lock().clone()).unwrap();
        assert!(!log.contains("unreachable"), "{log}");
        assert!(!log.contains("is back"), "{log}");
        assert_eq!(*daemon.inner.health.lock(), Health::Up);
    }

    #[test]
    fn hex_decodes_both_cases_and_rejects_garbage() {
        assert_eq!(
            decode_hex("m", "00ff7fA0aB").unwrap(),
            vec![0, 255, 127, 160, 171]
        );
        assert_eq!(decode_hex("m", "").unwrap(), Vec::<u8>::new());
        assert!(decode_hex("m", "abc").is_err());
        assert!(decode_hex("m", "0g").is_err());
        assert!(decode_hex("m", "zz").is_err());
    }

    #[test]
    fn core_replies_become_jsonrpc2() {
        let one = to_jsonrpc2(br#"{"result":"ab","error":null,"id":1}"#).unwrap();
        assert_eq!(&one[..], br#"{"jsonrpc":"2.0","result":"ab","id":1}"#);
        let err =
            to_jsonrpc2(br#"{"result":null,"error":{"code":-5,"message":"x"},"id":2}"#).unwrap();
        assert_eq!(
            &err[..],
            br#"{"jsonrpc":"2.0","error":{"code":-5,"message":"x"},"id":2}"#
        );
        let null_result = to_jsonrpc2(br#"{"result":null,"error":null,"id":3}"#).unwrap();
        assert_eq!(
            &null_result[..],
            br#"{"jsonrpc":"2.0","result":null,"id":3}"#
        );
        let batch = to_jsonrpc2(
            br#"[{"result":1,"error":null,"id":0},{"result":null,"error":{"code":-8,"message":"m"},"id":1}]"#,
        )
        .unwrap();
        assert_eq!(
            &batch[..],
            br#"[{"jsonrpc":"2.0","result":1,"id":0},{"jsonrpc":"2.0","error":{"code":-8,"message":"m"},"id":1}]"#
        );
        // Already 2.0 (Core >= 28): unchanged in meaning.
        let v2 = to_jsonrpc2(br#"{"jsonrpc":"2.0","result":5,"id":4}"#).unwrap();
        assert_eq!(&v2[..], br#"{"jsonrpc":"2.0","result":5,"id":4}"#);
        assert!(to_jsonrpc2(b"<html>").is_none());
    }

    #[test]
    fn mempool_snapshots_read_the_sequence_or_say_it_is_missing() {
        let txid = "11".repeat(32);
        let v = serde_json::json!({"txids": [txid], "mempool_sequence": 7});
        let snap = MempoolSnapshot::from_reply(&v).unwrap().unwrap();
        assert_eq!(snap.sequence, Some(7));
        assert_eq!(snap.txids, vec![Txid::from_hex(&txid).unwrap()]);
        // komodod ignores the argument and answers the plain list.
        assert_eq!(
            MempoolSnapshot::from_reply(&serde_json::json!([txid])).unwrap(),
            None
        );
        let bad = serde_json::json!({"txids": ["zz"], "mempool_sequence": 1});
        assert!(MempoolSnapshot::from_reply(&bad).is_err());
    }
}
