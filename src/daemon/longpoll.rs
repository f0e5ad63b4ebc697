//! Learning of new blocks the moment the daemon connects them, where it publishes no ZMQ: the
//! daemon's hidden `waitfornewblock <timeout_ms>` RPC (Bitcoin Core, litecoind 0.21) holds the
//! request until its tip changes or the timeout passes, then answers with the tip.
//!
//! The long-poll runs on a client (so an HTTP connection) of its own: a request held for
//! seconds never queues other calls behind it. It only wakes the block follower; the follower
//! still reads the chain itself, and its slow poll stays as the safety net.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::ArrayParams;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use super::{build_client_with_timeout, Client, Daemon};

/// How long the daemon holds one long-poll. A block connecting in the instant between two
/// calls is not reported by the second (it waits for the block after), but that call's answer
/// at its timeout names the new tip, so this bounds how late such a block can be seen.
const HOLD: Duration = Duration::from_secs(10);

/// JSON-RPC "method not found": the daemon has no `waitfornewblock`.
const METHOD_NOT_FOUND: i32 = -32601;

/// Longest pause between attempts while the daemon is away.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The tip `waitfornewblock` reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
struct Tip {
    hash: String,
    height: i64,
}

#[derive(Debug)]
enum WaitError {
    /// The daemon does not know the method: long-polling is impossible, poll instead.
    Unsupported,
    /// Unreachable, restarting, warming up: try again later.
    Transient(String),
}

/// A client of its own for the daemon's URL in use, rebuilt when the URL changes (failover,
/// the admin RPC's `daemon_url`) or after a failure (the cookie may have changed).
struct LongPollClient {
    daemon: Daemon,
    client: Option<(u64, Arc<Client>)>,
}

impl LongPollClient {
    fn client(&mut self) -> Result<Arc<Client>, WaitError> {
        let (generation, url) = {
            let cur = self.daemon.inner.current.lock();
            (cur.generation, cur.urls[cur.index].clone())
        };
        if let Some((g, c)) = &self.client {
            if *g == generation {
                return Ok(c.clone());
            }
        }
        // The daemon answers at HOLD at the latest; a request much older than that is stuck on
        // a dead connection.
        let client = build_client_with_timeout(
            &url,
            self.daemon.inner.cookie.as_ref(),
            HOLD + Duration::from_secs(30),
        )
        .map_err(|e| WaitError::Transient(format!("{e:#}")))?;
        let client = Arc::new(client);
        self.client = Some((generation, client.clone()));
        Ok(client)
    }

    async fn wait(&mut self) -> Result<Tip, WaitError> {
        let client = self.client()?;
        let mut params = ArrayParams::new();
        params
            .insert(HOLD.as_millis() as u64)
            .expect("an integer serializes");
        let result = client.request::<Tip, _>("waitfornewblock", params).await;
        match result {
            Ok(tip) => Ok(tip),
            Err(ClientError::Call(e)) if e.code() == METHOD_NOT_FOUND => {
                Err(WaitError::Unsupported)
            }
            Err(e) => {
                // Start afresh next time: a new connection, the cookie read again.
                self.client = None;
                Err(WaitError::Transient(e.to_string()))
            }
        }
    }
}

/// Long-polls the daemon until `stop` turns true, ringing `tip_changed` (with `notify_one`, so
/// a ring while the follower is busy is kept) each time the daemon's tip differs from the one
/// it reported last. Returns at once when the daemon has no `waitfornewblock`: the follower's
/// poll then does all the work, as before.
pub async fn follow_tip(daemon: Daemon, tip_changed: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut lp = LongPollClient {
        daemon,
        client: None,
    };
    let mut last: Option<Tip> = None;
    let mut backoff = Duration::from_millis(250);
    let mut down = false;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = lp.wait() => r,
            _ = stop.changed() => return,
        };
        let pause = match result {
            Ok(tip) => {
                if down {
                    info!("block long-poll: the daemon answers again");
                    down = false;
                }
                if last.is_none() {
                    debug!("block long-poll: waiting on the daemon's waitfornewblock");
                }
                backoff = Duration::from_millis(250);
                let changed = last.as_ref() != Some(&tip);
                if changed {
                    // The first answer too: a block may have come while we started.
                    tip_changed.notify_one();
                }
                last = Some(tip);
                // An unchanged tip long before the timeout: the daemon is shutting down (it
                // answers every waiter then) and would answer the next call at once too.
                if !changed && started.elapsed() < HOLD / 2 {
                    backoff
                } else {
                    Duration::ZERO
                }
            }
            Err(WaitError::Unsupported) => {
                info!(
                    "the daemon has no waitfornewblock: new blocks are found by polling \
                     (DAEMON_POLL_INTERVAL_BLOCKS)"
                );
                return;
            }
            Err(WaitError::Transient(why)) => {
                if !down {
                    warn!("block long-poll: {why}; retrying");
                    down = true;
                }
                let b = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                b
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DaemonUrl;
    use crate::metrics::Metrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the fake daemon does with the n-th `waitfornewblock`.
    #[derive(Clone)]
    enum Answer {
        Tip(&'static str, i64),
        /// Core's reply to an unknown method: HTTP 404 with a JSON-RPC 1.0 error.
        NotFound,
        /// Drops the connection without answering, as a daemon going down does.
        Hangup,
        /// Holds the request forever.
        Hold,
    }

    /// One HTTP request's JSON-RPC id, or `None` at end of stream.
    async fn read_request(s: &mut tokio::net::TcpStream) -> Option<serde_json::Value> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let n = s.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body: serde_json::Value = serde_json::from_slice(&buf[end + 4..]).unwrap();
                assert_eq!(body["method"], "waitfornewblock");
                return Some(body["id"].clone());
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A daemon that answers `waitfornewblock` calls from `script` in turn (then holds them).
    async fn fake_daemon(script: Vec<Answer>) -> Daemon {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(parking_lot::Mutex::new(script.into_iter()));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let script = script.clone();
                tokio::spawn(async move {
                    while let Some(id) = read_request(&mut s).await {
                        let next = script.lock().next().unwrap_or(Answer::Hold);
                        let (status, body) = match next {
                            Answer::Tip(hash, height) => (
                                "200 OK",
                                serde_json::json!({"result": {"hash": hash, "height": height},
                                    "error": null, "id": id}),
                            ),
                            Answer::NotFound => (
                                "404 Not Found",
                                serde_json::json!({"result": null, "error":
                                    {"code": -32601, "message": "Method not found"}, "id": id}),
                            ),
                            Answer::Hangup => return,
                            Answer::Hold => {
                                std::future::pending::<()>().await;
                                unreachable!()
                            }
                        };
                        let body = body.to_string();
                        let reply = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let url = DaemonUrl::parse(&format!("http://u:p@127.0.0.1:{port}/"), port, false).unwrap();
        Daemon::new(vec![url], None, Metrics::new()).unwrap()
    }

    const PATIENCE: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_daemon_without_waitfornewblock_leaves_it_to_the_poll() {
        let daemon = fake_daemon(vec![Answer::NotFound]).await;
        let (_stop_tx, stop) = watch::channel(false);
        let ring = Arc::new(Notify::new());
        tokio::time::timeout(PATIENCE, follow_tip(daemon, ring, stop))
            .await
            .expect("follow_tip gives up on a daemon without the method");
    }

    #[tokio::test]
    async fn each_new_tip_rings_even_across_a_lost_connection() {
        let daemon = fake_daemon(vec![
            Answer::Tip("aa", 1),
            Answer::Tip("aa", 1),
            Answer::Hangup,
            Answer::Tip("bb", 2),
        ])
        .await;
        let (stop_tx, stop) = watch::channel(false);
        let ring = Arc::new(Notify::new());
        let task = tokio::spawn(follow_tip(daemon, ring.clone(), stop));
        for tip in ["aa", "bb"] {
            tokio::time::timeout(PATIENCE, ring.notified())
                .await
                .unwrap_or_else(|_| panic!("a ring for tip {tip}"));
        }
        assert!(!task.is_finished(), "still long-polling after the hangup");
        stop_tx.send(true).unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("stops when told")
            .unwrap();
    }
}
