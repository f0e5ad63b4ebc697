//! The daemon's REST interface (`-rest=1`), used for raw blocks when it is on.
//!
//! `getblock <hash> 0` over JSON-RPC makes the daemon hex-encode every block into a JSON string
//! and us scan and decode it again: on a 300k-transaction regtest chain litecoind spent 3.2
//! CPU-s serving the blocks that way and 1.9 CPU-s serving `/rest/block/<hash>.bin`, and hex
//! decoding plus JSON scanning was ~7% of our own sync. REST is unauthenticated and off by
//! default, so it is probed once per daemon URL; when it is off or fails, blocks come through
//! JSON-RPC as before.
//!
//! One block per request: on loopback a reply's last segment often waits ~40 ms for a delayed
//! ACK, so 16 requests run at once: what Bitcoin Core 0.21's defaults take (4 RPC threads
//! serving, 16 waiting), JSON-RPC calls included. A full queue (HTTP 503) is retried.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::metrics::{DaemonOutcome, Metrics};
use crate::types::BlockHash;

/// Requests in flight at once, over all batches.
const IN_FLIGHT: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(120);
/// Consecutive batches answered with an HTTP error after which REST is given up for this URL.
const MAX_FAILURES: u8 = 3;

const UNKNOWN: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RestError {
    #[error("HTTP {status} for {path}")]
    Status { status: u16, path: String },
    #[error("{path}: {detail}")]
    Transport { path: String, detail: String },
    #[error("{path}: no answer in {TIMEOUT:?}")]
    Timeout { path: String },
}

/// REST access to one daemon URL.
pub(crate) struct Rest {
    /// `http://host:port`, no path, no credentials.
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    state: AtomicU8,
    failures: AtomicU8,
    permits: Semaphore,
    metrics: Metrics,
}

impl Rest {
    /// For a JSON-RPC URL as `DaemonUrl` keeps it (`http://host:port/…`); `None` for https,
    /// whose REST use would need a TLS client for a daemon setup nobody runs.
    pub(crate) fn new(rpc_url: &str, metrics: Metrics) -> Option<Rest> {
        let rest = rpc_url.strip_prefix("http://")?;
        let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Some(Rest {
            base: format!("http://{authority}"),
            client: Client::builder(TokioExecutor::new()).build(connector),
            state: AtomicU8::new(UNKNOWN),
            failures: AtomicU8::new(0),
            permits: Semaphore::new(IN_FLIGHT),
            metrics,
        })
    }

    #[cfg(test)]
    fn base(&self) -> &str {
        &self.base
    }

    /// Whether blocks should come through REST; asks the daemon the first time.
    pub(crate) async fn usable(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            ON => return true,
            OFF => return false,
            _ => {}
        }
        let on = match self.get("/rest/chaininfo.json").await {
            Ok(_) => true,
            Err(RestError::Status { .. }) => false,
            // No answer (the daemon is down or starting): JSON-RPC copes with that; ask again
            // next time rather than decide now.
            Err(_) => return false,
        };
        // Several batches may probe at once; one logs.
        let was = self
            .state
            .swap(if on { ON } else { OFF }, Ordering::Relaxed);
        if was == UNKNOWN {
            if on {
                info!("daemon REST interface is on: blocks are fetched in binary");
            } else {
                info!(
                    "daemon REST interface is off: blocks come through JSON-RPC \
                     (-rest=1 on the daemon makes the initial sync faster)"
                );
            }
        }
        on
    }

    /// Raw blocks by hash, in order.
    pub(crate) async fn blocks(&self, hashes: &[BlockHash]) -> Result<Vec<Vec<u8>>, RestError> {
        let result = futures::future::try_join_all(hashes.iter().map(|h| self.block(h))).await;
        match &result {
            Ok(_) => self.failures.store(0, Ordering::Relaxed),
            // No answer: the daemon is down or overloaded, which JSON-RPC's retries handle and
            // log; REST is tried again with the next batch.
            Err(e @ (RestError::Transport { .. } | RestError::Timeout { .. })) => {
                debug!("daemon REST: {e}; this batch comes through JSON-RPC");
            }
            // The daemon answers, but not with blocks: after a few, stop asking it.
            Err(e) => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= MAX_FAILURES {
                    self.state.store(OFF, Ordering::Relaxed);
                    warn!("daemon REST: {e}; {n} failures in a row, using JSON-RPC from now on");
                } else {
                    warn!("daemon REST: {e}; this batch comes through JSON-RPC");
                }
            }
        }
        result
    }

    async fn block(&self, hash: &BlockHash) -> Result<Vec<u8>, RestError> {
        let path = format!("/rest/block/{hash}.bin");
        let _permit = self.permits.acquire().await.expect("never closed");
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.get(&path).await {
                // The daemon's work queue is full: our own JSON-RPC calls may be in it.
                Err(RestError::Status { status: 503, .. }) if backoff < Duration::from_secs(2) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                r => return r.map(|b| b.to_vec()),
            }
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes, RestError> {
        let started = Instant::now();
        let result = tokio::time::timeout(TIMEOUT, self.get_once(path))
            .await
            .unwrap_or_else(|_| Err(RestError::Timeout { path: path.into() }));
        let outcome = match &result {
            Ok(_) => DaemonOutcome::Ok,
            Err(RestError::Status { .. }) => DaemonOutcome::RpcError,
            Err(_) => DaemonOutcome::TransportError,
        };
        self.metrics.daemon_call("rest", started.elapsed(), outcome);
        result
    }

    async fn get_once(&self, path: &str) -> Result<Bytes, RestError> {
        let transport = |e: &dyn std::fmt::Display| RestError::Transport {
            path: path.into(),
            detail: e.to_string(),
        };
        let uri: hyper::Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| transport(&e))?;
        let resp = self.client.get(uri).await.map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(&e))?;
        if status != 200 {
            return Err(RestError::Status {
                status,
                path: path.into(),
            });
        }
        Ok(body.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(url: &str) -> Option<Rest> {
        Rest::new(url, Metrics::new())
    }

    #[test]
    fn base_is_the_rpc_urls_authority() {
        let r = rest("http://127.0.0.1:19443/").unwrap();
        assert_eq!(r.base(), "http://127.0.0.1:19443");
        let r = rest("http://node.lan:9332/wallet/x").unwrap();
        assert_eq!(r.base(), "http://node.lan:9332");
        assert!(rest("https://node.lan:9332/").is_none());
        assert!(rest("http:///").is_none());
    }

    /// An HTTP server answering every request with `status` and an empty body.
    async fn answering(status: &'static str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn rest_off_is_decided_by_the_daemons_answer_not_by_its_absence() {
        // Nobody listens: undecided, JSON-RPC is used and the next batch asks again.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = rest(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert!(!r.usable().await);
        assert_eq!(r.state.load(Ordering::Relaxed), UNKNOWN);

        // A daemon started without -rest answers 404: off for good.
        let r = rest(&format!(
            "http://127.0.0.1:{}/",
            answering("404 Not Found").await
        ));
        let r = r.unwrap();
        assert!(!r.usable().await);
        assert_eq!(r.state.load(Ordering::Relaxed), OFF);
        assert!(!r.usable().await);
    }

    #[tokio::test]
    async fn http_errors_give_rest_up_after_three_batches_in_a_row_outages_do_not() {
        // Answers the probe and every block with 200 and nothing: the probe passes; blocks
        // come back empty, which the fetcher's hash check would refuse. A 500 is a failure.
        let ok = rest(&format!("http://127.0.0.1:{}/", answering("200 OK").await)).unwrap();
        assert!(ok.usable().await);
        let hash = BlockHash::from_hex(&"11".repeat(32)).unwrap();
        assert_eq!(
            ok.blocks(&[hash, hash]).await.unwrap(),
            vec![Vec::<u8>::new(); 2]
        );

        // A daemon that went away is no reason to give REST up.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gone = rest(&format!("http://127.0.0.1:{port}/")).unwrap();
        gone.state.store(ON, Ordering::Relaxed);
        for _ in 0..=MAX_FAILURES {
            let e = gone.blocks(&[hash]).await.unwrap_err();
            assert!(matches!(e, RestError::Transport { .. }), "{e}");
        }
        assert!(gone.usable().await);

        let bad = rest(&format!(
            "http://127.0.0.1:{}/",
            answering("500 Oops").await
        ));
        let bad = bad.unwrap();
        bad.state.store(ON, Ordering::Relaxed);
        for _ in 0..MAX_FAILURES {
            assert!(bad.usable().await);
            let e = bad.blocks(&[hash]).await.unwrap_err();
            assert!(matches!(e, RestError::Status { status: 500, .. }), "{e}");
        }
        assert!(!bad.usable().await);
    }
}
