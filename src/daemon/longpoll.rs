//! Learning of new blocks the moment the daemon connects them, where it publishes no ZMQ: the
//! daemon's hidden `waitforblockheight <height> <timeout_ms>` RPC (Bitcoin Core, litecoind 0.21)
//! holds the request until the tip reaches that height or the timeout passes, then answers with
//! the tip.
//!
//! Why `waitforblockheight` and not `waitfornewblock`: the latter waits for the tip to differ
//! from the one the daemon has *when the call arrives*, so a block connecting in the instant
//! between one answer and the next call (a block mined right after another, or while the
//! answer was on its way) was only reported at that call's timeout, up to `HOLD` late. Asking
//! for "the height after the last tip I was told" has no such gap: a block already there
//! answers at once. `waitfornewblock` stays for daemons without `waitforblockheight`.
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

/// How long the daemon holds one long-poll. A tip change that does not raise the height (a
/// reorg to a chain no longer than ours, `invalidateblock`), or any change falling between two
/// calls where only `waitfornewblock` exists, is reported by the answer at the timeout: this
/// bounds how late such a tip can be seen.
const HOLD: Duration = Duration::from_secs(10);

/// JSON-RPC "method not found": the daemon has no such long-poll RPC.
const METHOD_NOT_FOUND: i32 = -32601;

/// Longest pause between attempts while the daemon is away.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The tip both long-poll RPCs report.
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

/// The long-poll RPC the daemon offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// `waitforblockheight <last height + 1>`: no gap between calls.
    BlockHeight,
    /// `waitfornewblock`: blocks connecting between two calls wait for the timeout.
    NewBlock,
}

/// A client of its own for the daemon's URL in use, rebuilt when the URL changes (failover,
/// the admin RPC's `daemon_url`) or after a failure (the cookie may have changed).
struct LongPollClient {
    daemon: Daemon,
    client: Option<(u64, Arc<Client>)>,
    method: Method,
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

    /// Waits for a tip past `last` (the tip the daemon reported last; `None` at first, which
    /// answers at once).
    async fn wait(&mut self, last: Option<&Tip>) -> Result<Tip, WaitError> {
        loop {
            let client = self.client()?;
            let mut params = ArrayParams::new();
            let method = match self.method {
                Method::BlockHeight => {
                    let next = last.map_or(0, |t| t.height + 1);
                    params.insert(next).expect("an integer serializes");
                    "waitforblockheight"
                }
                Method::NewBlock => "waitfornewblock",
            };
            params
                .insert(HOLD.as_millis() as u64)
                .expect("an integer serializes");
            let result = client.request::<Tip, _>(method, params).await;
            return match result {
                Ok(tip) => Ok(tip),
                Err(ClientError::Call(e)) if e.code() == METHOD_NOT_FOUND => {
                    if self.method == Method::BlockHeight {
                        info!("the daemon has no waitforblockheight: long-polling waitfornewblock");
                        self.method = Method::NewBlock;
                        continue;
                    }
                    Err(WaitError::Unsupported)
                }
                Err(e) => {
                    // Start afresh next time: a new connection, the cookie read again.
                    self.client = None;
                    Err(WaitError::Transient(e.to_string()))
                }
            };
        }
    }
}

/// Long-polls the daemon until `stop` turns true, ringing `tip_changed` (with `notify_one`, so
/// a ring while the follower is busy is kept) each time the daemon's tip differs from the one
/// it reported last. Returns at once when the daemon has neither `waitforblockheight` nor
/// `waitfornewblock`: the follower's poll then does all the work, as before.
pub async fn follow_tip(daemon: Daemon, tip_changed: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut lp = LongPollClient {
        daemon,
        client: None,
        method: Method::BlockHeight,
    };
    let mut last: Option<Tip> = None;
    let mut backoff = Duration::from_millis(250);
    let mut down = false;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = lp.wait(last.as_ref()) => r,
            _ = stop.changed() => return,
        };
        let pause = match result {
            Ok(tip) => {
                if down {
                    info!("block long-poll: the daemon answers again");
                    down = false;
                }
                if last.is_none() {
                    debug!("block long-poll: waiting on the daemon's {:?}", lp.method);
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
                    "the daemon has no waitforblockheight nor waitfornewblock: new blocks are \
                     found by polling \
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
    use tokio::io::AsyncWriteExt;

    /// What the fake daemon does with the n-th long-poll call.
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

    /// The calls a fake daemon received: method and params.
    type Calls = Arc<parking_lot::Mutex<Vec<(String, serde_json::Value)>>>;

    /// A daemon that answers long-poll calls from `script` in turn (then holds them), and logs
    /// them.
    async fn fake_daemon(script: Vec<Answer>) -> (Daemon, Calls) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(parking_lot::Mutex::new(script.into_iter()));
        let calls = Calls::default();
        let log = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (script, log) = (script.clone(), log.clone());
                tokio::spawn(async move {
                    while let Some(body) = crate::daemon::fake_http::read_request(&mut s).await {
                        let id = body["id"].clone();
                        let method = body["method"].as_str().unwrap().to_string();
                        log.lock().push((method, body["params"].clone()));
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
        (Daemon::new(vec![url], None, Metrics::new()).unwrap(), calls)
    }

    fn methods(calls: &Calls) -> Vec<String> {
        calls.lock().iter().map(|(m, _)| m.clone()).collect()
    }

    const PATIENCE: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_daemon_without_either_method_leaves_it_to_the_poll() {
        let (daemon, calls) = fake_daemon(vec![Answer::NotFound, Answer::NotFound]).await;
        let (_stop_tx, stop) = watch::channel(false);
        let ring = Arc::new(Notify::new());
        tokio::time::timeout(PATIENCE, follow_tip(daemon, ring, stop))
            .await
            .expect("follow_tip gives up on a daemon without the methods");
        assert_eq!(methods(&calls), ["waitforblockheight", "waitfornewblock"]);
    }

    /// Each call asks for the height after the last tip reported, so a block that connected
    /// before the call arrives is answered at once (`waitfornewblock` would wait for the next).
    #[tokio::test]
    async fn each_new_tip_rings_even_across_a_lost_connection() {
        let (daemon, calls) = fake_daemon(vec![
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
        tokio::time::timeout(PATIENCE, async {
            while calls.lock().len() < 5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a fifth call after tip bb");
        assert!(!task.is_finished(), "still long-polling after the hangup");
        let hold = HOLD.as_millis() as u64;
        let expected: Vec<(String, serde_json::Value)> = [0, 2, 2, 2, 3]
            .iter()
            .map(|h| {
                (
                    "waitforblockheight".to_string(),
                    serde_json::json!([h, hold]),
                )
            })
            .collect();
        assert_eq!(calls.lock()[..5], expected[..]);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("stops when told")
            .unwrap();
    }

    #[tokio::test]
    async fn a_daemon_with_only_waitfornewblock_is_long_polled_with_it() {
        let (daemon, calls) = fake_daemon(vec![
            Answer::NotFound,
            Answer::Tip("aa", 1),
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
        assert_eq!(
            methods(&calls)[..3],
            ["waitforblockheight", "waitfornewblock", "waitfornewblock"]
        );
        stop_tx.send(true).unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("stops when told")
            .unwrap();
    }
}
