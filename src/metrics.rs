//! Prometheus metrics, served as text on `METRICS_LISTEN` (`host:port`, off when unset) at
//! `GET /metrics`.
//!
//! Counters and histograms are recorded where things happen, through the functions below
//! (cheap: a label lookup and an atomic add); gauges that describe state (index height, lag,
//! database size, peers) are read at scrape time from the sources given to [`serve`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Env;
use crate::store::Store;

/// Request latencies from 100 µs to 30 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];
/// Longest request head read from a scraper.
const MAX_HEAD: usize = 8192;

struct Metrics {
    registry: Registry,
    index_height: IntGauge,
    daemon_height: IntGauge,
    index_lag: IntGauge,
    db_size: IntGauge,
    notarized_height: IntGauge,
    sessions: IntGauge,
    peers: IntGaugeVec,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    cost_actions: IntCounterVec,
    daemon_seconds: HistogramVec,
    daemon_errors: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry =
            Registry::new_custom(Some("sextant".into()), None).expect("a valid metric prefix");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("a valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let peers = IntGaugeVec::new(
            Opts::new("peers", "Peer servers by status (good, stale, never, bad)"),
            &["status"],
        )
        .expect("a valid gauge");
        registry
            .register(Box::new(peers.clone()))
            .expect("registered once");
        Metrics {
            index_height: gauge("index_height", "Height of the indexed chain tip"),
            daemon_height: gauge("daemon_height", "Height of the daemon's chain tip"),
            index_lag: gauge("index_lag_blocks", "Blocks the index is behind the daemon"),
            db_size: gauge("db_size_bytes", "Size of the database's table files"),
            notarized_height: gauge(
                "notarized_height",
                "Komodo chains: the daemon's last notarized height (-1 when none or not Komodo)",
            ),
            sessions: gauge("sessions", "Open client sessions"),
            peers,
            requests: counter(
                "requests_total",
                "Client requests answered, by method",
                &["method"],
            ),
            request_seconds: histogram(
                "request_duration_seconds",
                "Time to answer a client request, by method",
                &["method"],
            ),
            cost_actions: counter(
                "cost_limit_actions_total",
                "Actions the cost limits took on sessions (throttle, disconnect, …)",
                &["action"],
            ),
            daemon_seconds: histogram(
                "daemon_rpc_duration_seconds",
                "Time of one daemon RPC attempt, by method",
                &["method"],
            ),
            daemon_errors: counter(
                "daemon_rpc_errors_total",
                "Failed daemon RPC attempts, by method and kind (rpc: the daemon answered with \
                 an error; transport: no usable answer, retried)",
                &["method", "kind"],
            ),
            registry,
        }
    })
}

/// The label for a client's method: a method of the protocol, or `other` (so clients cannot
/// create series at will).
fn method_label(method: &str) -> &str {
    let proto = crate::electrum::version::server_max();
    match crate::electrum::methods::signature(method, &proto) {
        Some(_) => method,
        None if method == "server.version" => method,
        None => "other",
    }
}

/// A client request answered after `elapsed`.
pub fn request_done(method: &str, elapsed: Duration) {
    let m = metrics();
    let label = method_label(method);
    m.requests.with_label_values(&[label]).inc();
    m.request_seconds
        .with_label_values(&[label])
        .observe(elapsed.as_secs_f64());
}

/// The cost limits acted on a session: `throttle`, `disconnect`, `refuse`, …
pub fn cost_action(action: &'static str) {
    metrics().cost_actions.with_label_values(&[action]).inc();
}

/// The number of open sessions.
pub fn sessions(n: usize) {
    metrics().sessions.set(n as i64);
}

/// Whether a daemon RPC attempt succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonOutcome {
    Ok,
    /// The daemon answered with an error.
    RpcError,
    /// No usable answer (connection, timeout, warm-up); the call is retried.
    TransportError,
}

/// One daemon RPC attempt of `method` took `elapsed`.
pub fn daemon_call(method: &str, elapsed: Duration, outcome: DaemonOutcome) {
    let m = metrics();
    m.daemon_seconds
        .with_label_values(&[method])
        .observe(elapsed.as_secs_f64());
    let kind = match outcome {
        DaemonOutcome::Ok => return,
        DaemonOutcome::RpcError => "rpc",
        DaemonOutcome::TransportError => "transport",
    };
    m.daemon_errors.with_label_values(&[method, kind]).inc();
}

/// The daemon's tip height, as the indexer last saw it.
pub fn daemon_height(height: u32) {
    metrics().daemon_height.set(i64::from(height));
}

/// Everything in the text exposition format, state gauges read from `store` now.
pub fn render(store: Option<&Store>) -> String {
    let m = metrics();
    if let Some(store) = store {
        let height = store.tip().map_or(-1, |t| i64::from(t.height.0));
        m.index_height.set(height);
        m.index_lag.set((m.daemon_height.get() - height).max(0));
        m.db_size.set(store.disk_size() as i64);
    }
    m.notarized_height
        .set(crate::index::notarized::notarized().map_or(-1, |(h, _)| i64::from(h.0)));
    if let Some(peers) = crate::peers::installed() {
        let c = peers.counts();
        for (status, n) in [
            ("good", c.good),
            ("stale", c.stale),
            ("never", c.never),
            ("bad", c.bad),
        ] {
            m.peers.with_label_values(&[status]).set(n as i64);
        }
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        warn!("encoding metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
#[error("METRICS_LISTEN={value:?} is invalid: expected host:port, e.g. 127.0.0.1:9100")]
pub struct MetricsConfigError {
    value: String,
}

/// `METRICS_LISTEN`: where to serve metrics; `None` (off) when unset or empty.
pub fn listen_addr(env: &dyn Env) -> Result<Option<SocketAddr>, MetricsConfigError> {
    let Some(value) = env.get("METRICS_LISTEN").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    use std::net::ToSocketAddrs;
    value
        .trim()
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(Some)
        .ok_or(MetricsConfigError { value })
}

/// Binds the metrics listener, so a taken port stops the start-up with a clear error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!("metrics on http://{addr}/metrics");
    Ok(listener)
}

/// Serves `GET /metrics` until `stop` turns true.
pub async fn serve(listener: TcpListener, store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let store = store.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &store)).await;
        });
    }
}

/// One HTTP/1.x exchange; the connection is closed after the response.
async fn answer(mut stream: TcpStream, store: &Arc<Store>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut words = std::str::from_utf8(line).unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next()) {
        ("GET", Some("/metrics")) => {
            let store = store.clone();
            let body = tokio::task::spawn_blocking(move || render(Some(&store)))
                .await
                .unwrap_or_default();
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
        }
        ("GET", _) => ("404 Not Found", "text/plain", "see /metrics\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".into(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The value of the sample line starting with `series` (name and labels), 0 when absent.
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    #[test]
    fn recorded_values_appear_in_the_text() {
        // The registry is process-wide and other tests record into it too: compare deltas.
        let series = [
            "sextant_requests_total{method=\"blockchain.block.header\"}",
            "sextant_requests_total{method=\"other\"}",
            "sextant_cost_limit_actions_total{action=\"throttle\"}",
            "sextant_daemon_rpc_errors_total{kind=\"transport\",method=\"getblockcount\"}",
            "sextant_request_duration_seconds_bucket{method=\"blockchain.block.header\",le=\"0.005\"}",
        ];
        let before = render(None);
        request_done("blockchain.block.header", Duration::from_millis(3));
        request_done("no.such.method", Duration::from_millis(1));
        cost_action("throttle");
        daemon_call(
            "getblockcount",
            Duration::from_millis(2),
            DaemonOutcome::TransportError,
        );
        sessions(7);
        let text = render(None);
        for s in series {
            assert_eq!(sample(&text, s) - sample(&before, s), 1.0, "{s}");
        }
        assert!(text.contains("sextant_sessions 7"));
    }

    #[test]
    fn listen_address() {
        let env = |v: &'static str| HashMap::from([("METRICS_LISTEN", v)]);
        assert_eq!(listen_addr(&HashMap::new()).unwrap(), None);
        assert_eq!(listen_addr(&env("")).unwrap(), None);
        assert_eq!(
            listen_addr(&env("127.0.0.1:9100")).unwrap(),
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert!(listen_addr(&env("9100")).is_err());
    }
}
