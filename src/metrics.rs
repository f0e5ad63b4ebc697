//! Prometheus metrics, served as text on `METRICS_LISTEN` at `GET /metrics`.
//!
//! A sink: components record into the [`Metrics`] handle they are given (cheap: a label lookup
//! and an atomic add), and gauges that describe state (heights, database size, peers, the
//! notarized height) are read at scrape time by closures the composition root registers with
//! [`Metrics::on_scrape`]. This module knows no component.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{info, warn};

/// Request latencies from 100 µs to 30 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];
/// Longest request head read from a scraper.
const MAX_HEAD: usize = 8192;

type Scraper = Box<dyn Fn(&Scrape) + Send + Sync>;

/// The metrics of one server; cheap to clone and share.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
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
    scrapers: Mutex<Vec<Scraper>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("sextant".into()), None).expect("a valid metric prefix");
        let register = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("registered once");
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid gauge");
            register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            register(Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("a valid histogram");
            register(Box::new(h.clone()));
            h
        };
        let peers = IntGaugeVec::new(
            Opts::new("peers", "Peer servers by status (good, stale, never, bad)"),
            &["status"],
        )
        .expect("a valid gauge");
        register(Box::new(peers.clone()));
        let inner = Inner {
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
            scrapers: Mutex::new(Vec::new()),
            registry,
        };
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// A client request answered after `elapsed`. `label` must come from a bounded set (the
    /// protocol's method names and `other`), so clients cannot create series at will.
    pub(crate) fn request_done(&self, label: &str, elapsed: Duration) {
        let m = &self.inner;
        m.requests.with_label_values(&[label]).inc();
        m.request_seconds
            .with_label_values(&[label])
            .observe(elapsed.as_secs_f64());
    }

    /// The cost limits acted on a session: `throttle`, `disconnect`, `refuse`, …
    pub(crate) fn cost_action(&self, action: &'static str) {
        self.inner.cost_actions.with_label_values(&[action]).inc();
    }

    /// The number of open sessions.
    pub fn sessions(&self, n: usize) {
        self.inner.sessions.set(n as i64);
    }

    /// One daemon RPC attempt of `method` took `elapsed`.
    pub(crate) fn daemon_call(&self, method: &str, elapsed: Duration, outcome: DaemonOutcome) {
        let m = &self.inner;
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

    /// Registers `f`, called at every scrape to set the state gauges.
    pub(crate) fn on_scrape(&self, f: impl Fn(&Scrape) + Send + Sync + 'static) {
        self.inner.scrapers.lock().push(Box::new(f));
    }

    /// Everything in the text exposition format, state gauges read now. Blocking: scrapers may
    /// read the database.
    pub(crate) fn render(&self) -> String {
        let m = &self.inner;
        let scrape = Scrape { m };
        for f in m.scrapers.lock().iter() {
            f(&scrape);
        }
        m.index_lag
            .set((m.daemon_height.get() - m.index_height.get()).max(0));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
            warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The state gauges, as a scraper sets them.
pub(crate) struct Scrape<'a> {
    m: &'a Inner,
}

impl Scrape<'_> {
    /// The indexed tip (`None`: empty index) and the daemon's (`None`: not known yet).
    pub(crate) fn heights(&self, index: Option<u32>, daemon: Option<u32>) {
        self.m.index_height.set(index.map_or(-1, i64::from));
        if let Some(h) = daemon {
            self.m.daemon_height.set(i64::from(h));
        }
    }

    pub(crate) fn db_size(&self, bytes: u64) {
        self.m.db_size.set(bytes as i64);
    }

    /// Komodo chains: the daemon's last notarized height; `None` elsewhere.
    pub(crate) fn notarized_height(&self, height: Option<u32>) {
        self.m.notarized_height.set(height.map_or(-1, i64::from));
    }

    pub(crate) fn peers(&self, good: usize, stale: usize, never: usize, bad: usize) {
        for (status, n) in [
            ("good", good),
            ("stale", stale),
            ("never", never),
            ("bad", bad),
        ] {
            self.m.peers.with_label_values(&[status]).set(n as i64);
        }
    }
}

/// Whether a daemon RPC attempt succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DaemonOutcome {
    Ok,
    /// The daemon answered with an error.
    RpcError,
    /// No usable answer (connection, timeout, warm-up); the call is retried.
    TransportError,
}

/// Binds the metrics listener, so a taken port stops the start-up with a clear error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!("metrics on http://{addr}/metrics");
    Ok(listener)
}

/// Serves `GET /metrics` until `stop` turns true.
pub async fn serve(listener: TcpListener, metrics: Metrics, mut stop: watch::Receiver<bool>) {
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
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, metrics)).await;
        });
    }
}

/// One HTTP/1.x exchange; the connection is closed after the response.
async fn answer(mut stream: TcpStream, metrics: Metrics) -> std::io::Result<()> {
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
            let body = tokio::task::spawn_blocking(move || metrics.render())
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

/// This process's resident memory, from `/proc/self/statm` (Linux); `None` elsewhere.
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line starting with `series` (name and labels), 0 when absent.
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    #[test]
    fn recorded_values_appear_in_the_text() {
        let m = Metrics::new();
        m.request_done("blockchain.block.header", Duration::from_millis(3));
        m.request_done("other", Duration::from_millis(1));
        m.cost_action("throttle");
        m.daemon_call(
            "getblockcount",
            Duration::from_millis(2),
            DaemonOutcome::TransportError,
        );
        m.sessions(7);
        let text = m.render();
        for s in [
            "sextant_requests_total{method=\"blockchain.block.header\"}",
            "sextant_requests_total{method=\"other\"}",
            "sextant_cost_limit_actions_total{action=\"throttle\"}",
            "sextant_daemon_rpc_errors_total{kind=\"transport\",method=\"getblockcount\"}",
            "sextant_request_duration_seconds_bucket{method=\"blockchain.block.header\",le=\"0.005\"}",
        ] {
            assert_eq!(sample(&text, s), 1.0, "{s}");
        }
        assert_eq!(sample(&text, "sextant_sessions"), 7.0);
    }

    #[test]
    fn state_gauges_come_from_scrapers_at_render_time() {
        let m = Metrics::new();
        let height = Arc::new(std::sync::atomic::AtomicU32::new(10));
        let h = height.clone();
        m.on_scrape(move |s| {
            s.heights(Some(h.load(std::sync::atomic::Ordering::Relaxed)), Some(12));
            s.db_size(4096);
            s.notarized_height(None);
            s.peers(1, 2, 3, 4);
        });
        let text = m.render();
        assert_eq!(sample(&text, "sextant_index_height"), 10.0);
        assert_eq!(sample(&text, "sextant_index_lag_blocks"), 2.0);
        assert_eq!(sample(&text, "sextant_db_size_bytes"), 4096.0);
        assert_eq!(sample(&text, "sextant_notarized_height"), -1.0);
        assert_eq!(sample(&text, "sextant_peers{status=\"never\"}"), 3.0);
        height.store(12, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(sample(&m.render(), "sextant_index_lag_blocks"), 0.0);
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        let rss = super::resident_bytes().expect("/proc/self/statm");
        // A test binary holds at least a megabyte and, here, less than 64 GB.
        assert!((1 << 20..64 << 30).contains(&rss), "{rss}");
    }
}
