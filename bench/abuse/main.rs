//! `bench-abuse`: the two burst figures of issue 15, each against a running server.
//!
//!     bench-abuse handshakes --port 50002 --count 500
//!     bench-abuse batches --port 50001 --sessions 500 --bytes 999000 --method ping --pid PID
//!
//! **handshakes**: `--count` clients connect over TLS at the same instant, each sends
//! `server.version` and waits for its answer. Reported: the time until the last one was answered
//! (`seconds`), per-client p50/p99 and failures. Every client runs on this process's runtime, so
//! its own TLS work is in the figure too (on a shared box, a bound, not the server's cost alone).
//!
//! **batches**: `--sessions` TCP sessions negotiate, then all send one JSON-RPC batch of just
//! under `--bytes` at once (`--method ping`: `server.ping`, tiny answers; `header`:
//! `blockchain.block.header` at random heights, answers ~2.5× the request) and read what comes
//! back: the whole batch answered, one JSON-RPC error (refused), or the connection closed. Beside
//! them an honest session asks `server.ping` and a block header in turn, one at a time, from
//! before the burst until every abusive session is done; its round trips give p50/p99/max. The
//! server's RSS (`--pid`) is sampled every 10 ms: `peak_rss_mb` is the highest sample during the
//! burst, `hwm_mb` the process's high-water mark (`VmHWM`) at the end.
//!
//! Each prints one JSON object.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_rustls::rustls;

struct Options {
    mode: String,
    port: u16,
    count: usize,
    bytes: usize,
    method: String,
    pid: Option<u32>,
    timeout: Duration,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .ok_or("usage: bench-abuse handshakes|batches --port P …")?;
    let mut o = Options {
        mode,
        port: 0,
        count: 500,
        bytes: 999_000,
        method: "ping".into(),
        pid: None,
        timeout: Duration::from_secs(120),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--port" => o.port = num(&value)? as u16,
            "--count" | "--sessions" => o.count = num(&value)? as usize,
            "--bytes" => o.bytes = num(&value)? as usize,
            "--method" => o.method = value,
            "--pid" => o.pid = Some(num(&value)? as u32),
            "--timeout" => o.timeout = Duration::from_secs(num(&value)?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.port == 0 {
        return Err("--port is required".into());
    }
    Ok(o)
}

/// Accepts the server's certificate whatever it is: servers run with self-signed ones, and
/// what is timed is the handshake, not the trust decision.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One line-framed JSON-RPC session over any stream.
struct Session<S> {
    r: BufReader<tokio::io::ReadHalf<S>>,
    w: tokio::io::WriteHalf<S>,
    line: String,
}

impl<S: AsyncRead + AsyncWrite> Session<S> {
    fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Session {
            r: BufReader::with_capacity(1 << 16, r),
            w,
            line: String::new(),
        }
    }

    async fn send(&mut self, text: &str) -> Result<(), String> {
        self.w
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.w
            .write_all(b"\n")
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// The next line that is a reply (notifications skipped); `None` once the server closed.
    async fn reply(&mut self) -> Result<Option<Value>, String> {
        loop {
            self.line.clear();
            match self.r.read_line(&mut self.line).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
            let v: Value = serde_json::from_str(&self.line).map_err(|e| format!("reply: {e}"))?;
            if v.is_array() || v.get("method").is_none() {
                return Ok(Some(v));
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.send(
            &json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params}).to_string(),
        )
        .await?;
        let v = self.reply().await?.ok_or("connection closed")?;
        match v.get("error") {
            Some(e) if !e.is_null() => Err(e.to_string()),
            _ => Ok(v["result"].clone()),
        }
    }
}

async fn tcp(port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn percentiles(mut ms: Vec<f64>) -> Value {
    if ms.is_empty() {
        return json!(null);
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| (ms[((ms.len() - 1) as f64 * p).round() as usize] * 100.0).round() / 100.0;
    json!({"n": ms.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)})
}

async fn handshakes(o: &Options) -> Value {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let barrier = Arc::new(Barrier::new(o.count + 1));
    let mut tasks = Vec::new();
    for _ in 0..o.count {
        let (connector, barrier, port) = (connector.clone(), barrier.clone(), o.port);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let start = Instant::now();
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let stream = connector
                .connect(name, tcp(port).await?)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let mut s = Session::new(stream);
            s.call("server.version", json!(["bench-abuse", "1.4"]))
                .await?;
            Ok::<_, String>(start.elapsed())
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let (mut done, mut failures) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + o.timeout;
    for t in tasks {
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(Ok(d))) => done.push(d.as_secs_f64() * 1e3),
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("timed out".into()),
        }
    }
    failures.sort();
    failures.dedup();
    json!({"mode": "handshakes", "count": o.count, "seconds": start.elapsed().as_secs_f64(),
           "answered": percentiles(done), "failures": failures})
}

/// A batch of `method` calls whose text is just under `bytes`.
fn batch(method: &str, bytes: usize, tip: u64, seed: u64) -> String {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut text = String::from("[");
    for id in 0.. {
        let call = match method {
            "header" => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                json!({"jsonrpc": "2.0", "id": id, "method": "blockchain.block.header",
                       "params": [rng % (tip + 1)]})
            }
            _ => json!({"jsonrpc": "2.0", "id": id, "method": "server.ping", "params": []}),
        }
        .to_string();
        if text.len() + call.len() + 2 > bytes {
            break;
        }
        if id > 0 {
            text.push(',');
        }
        text.push_str(&call);
    }
    text.push(']');
    text
}

fn rss_mb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// The honest session, on a thread and runtime of its own so that reading 500 big replies
/// here does not delay it: its round trips until `stop`, and its errors.
fn honest(
    port: u16,
    tip: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<f64>, Vec<String>)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (mut ms, mut errors) = (Vec::new(), Vec::new());
            let mut s = match tcp(port).await {
                Ok(t) => Session::new(t),
                Err(e) => return (ms, vec![e]),
            };
            if let Err(e) = s
                .call("server.version", json!(["bench-abuse honest", "1.4"]))
                .await
            {
                return (ms, vec![e]);
            }
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let r = if i.is_multiple_of(2) {
                    s.call("server.ping", json!([])).await
                } else {
                    s.call("blockchain.block.header", json!([i % (tip + 1)]))
                        .await
                };
                match r {
                    Ok(_) => ms.push(start.elapsed().as_secs_f64() * 1e3),
                    Err(e) => errors.push(e),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ms, errors)
        })
    })
}

/// One abusive session: negotiate, wait for the others, send the batch, classify the reply.
async fn abuser(port: u16, text: String, barrier: Arc<Barrier>) -> (String, Duration) {
    let negotiated = async {
        let mut s = Session::new(tcp(port).await?);
        s.call("server.version", json!(["bench-abuse", "1.4"]))
            .await?;
        Ok::<_, String>(s)
    }
    .await;
    barrier.wait().await;
    let mut s = match negotiated {
        Ok(s) => s,
        Err(e) => return (format!("failed: {e}"), Duration::ZERO),
    };
    let start = Instant::now();
    // A server that refuses the batch may close before it has read all of it: the reply (or
    // the close) says which, so a failed write is not the outcome.
    let _ = s.send(&text).await;
    s.line.clear();
    // Only the first byte is looked at: parsing 500 answers of megabytes here would take the
    // CPU the server is being measured with.
    let outcome = match s.r.read_line(&mut s.line).await {
        Ok(n) if n > 0 && s.line.starts_with('[') => "answered".to_string(),
        Ok(n) if n > 0 => {
            let v: Value = serde_json::from_str(&s.line).unwrap_or_default();
            format!("refused: {}", v["error"]["message"].as_str().unwrap_or("?"))
        }
        _ => "closed".to_string(),
    };
    (outcome, start.elapsed())
}

async fn batches(o: &Options) -> Result<Value, String> {
    let tip = {
        let mut s = Session::new(tcp(o.port).await?);
        s.call("server.version", json!(["bench-abuse", "1.4"]))
            .await?;
        s.call("blockchain.headers.subscribe", json!([])).await?["height"]
            .as_u64()
            .ok_or("no tip height")?
    };
    let baseline_mb = o.pid.and_then(|p| rss_mb(p, "VmRSS:"));
    let barrier = Arc::new(Barrier::new(o.count + 1));
    let tasks: Vec<_> = (0..o.count)
        .map(|i| {
            let text = batch(&o.method, o.bytes, tip, i as u64 + 1);
            tokio::spawn(abuser(o.port, text, barrier.clone()))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = o.pid.map(|pid| {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(mb) = rss_mb(pid, "VmRSS:") {
                    peak.fetch_max(mb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    });
    let pinger = honest(o.port, tip, stop.clone());
    // The honest session's rhythm before the burst.
    tokio::time::sleep(Duration::from_millis(500)).await;
    barrier.wait().await;
    let start = Instant::now();
    let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
    let mut took = Vec::new();
    // One deadline for the whole burst: a session still waiting then has timed out.
    let deadline = tokio::time::Instant::now() + o.timeout;
    for t in tasks {
        let (outcome, d) = match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => (format!("failed: {e}"), o.timeout),
            Err(_) => ("timed out".to_string(), o.timeout),
        };
        *outcomes.entry(outcome).or_default() += 1;
        took.push(d.as_secs_f64() * 1e3);
    }
    let burst = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (pings, errors) = pinger.join().map_err(|_| "the honest session panicked")?;
    if let Some(s) = sampler {
        let _ = s.join();
    }
    Ok(json!({
        "mode": "batches", "method": o.method, "sessions": o.count,
        "batch_bytes": batch(&o.method, o.bytes, tip, 1).len(),
        "burst_seconds": burst, "outcomes": outcomes, "per_session": percentiles(took),
        "honest": percentiles(pings), "honest_errors": errors,
        "baseline_rss_mb": baseline_mb, "peak_rss_mb": o.pid.map(|_| peak.load(Ordering::Relaxed)),
        "hwm_mb": o.pid.and_then(|p| rss_mb(p, "VmHWM:")),
    }))
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-abuse: {e}");
            std::process::exit(2);
        }
    };
    let result = match o.mode.as_str() {
        "handshakes" => Ok(handshakes(&o).await),
        "batches" => batches(&o).await,
        other => Err(format!("unknown mode {other}")),
    };
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("bench-abuse: {e}");
            std::process::exit(1);
        }
    }
}
