//! The `sextant` binary's transports against a real `litecoind -regtest`: TLS (with certificate
//! reload on file change and on SIGHUP, open sessions unaffected), WebSocket (ws:// and wss://,
//! one JSON-RPC message per text frame) and a real third-party client (Python aiorpcX, the
//! library ElectrumX is built on) over TLS; `SSL_SELF_SIGNED`'s certificate, made once, pinned
//! by a client (rustls, and Python's ssl as Electrum uses it), kept across restarts and set
//! aside by a supplied one. Supplied certificates come from the `openssl` CLI.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types};
use tokio_tungstenite::tungstenite::Message;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// Trusts any server certificate, and remembers the last one presented.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &pki_types::CertificateDer<'_>,
        _intermediates: &[pki_types::CertificateDer<'_>],
        _server_name: &pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.as_ref().to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection; returns the stream and the certificate the server presented.
async fn tls_connect(port: u16) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let cert = recorder
        .seen
        .lock()
        .unwrap()
        .clone()
        .expect("a certificate");
    (stream, cert)
}

// ---------------------------------------------------------------------------------------------
// Newline-framed and WebSocket clients

struct LineClient<S> {
    r: BufReader<tokio::io::ReadHalf<S>>,
    w: tokio::io::WriteHalf<S>,
    next_id: u64,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite> LineClient<S> {
    fn new(s: S) -> Self {
        let (r, w) = tokio::io::split(s);
        LineClient {
            r: BufReader::new(r),
            w,
            next_id: 0,
        }
    }

    async fn next(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), self.r.read_line(&mut line))
            .await
            .expect("a message within 30 s")
            .unwrap();
        assert!(n > 0, "connection closed");
        serde_json::from_str(&line).unwrap()
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.w
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
        loop {
            let v = self.next().await;
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

async fn ws_next<S>(ws: &mut Ws<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a WebSocket message within 30 s")
            .expect("connection open")
            .unwrap();
        match msg {
            Message::Text(t) => {
                assert!(
                    !t.contains('\n'),
                    "one message per frame, no newline: {t:?}"
                );
                return serde_json::from_str(&t).unwrap();
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected WebSocket message {other:?}"),
        }
    }
}

async fn ws_call<S>(ws: &mut Ws<S>, id: u64, method: &str, params: Value) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let msg = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
    ws.send(Message::text(msg.to_string())).await.unwrap();
    loop {
        let v = ws_next(ws).await;
        if v["id"] == id {
            return v;
        }
    }
}

/// Exercises a WebSocket session: version, headers, a batch, errors, and the header
/// notification after `mine` mines a block.
async fn ws_session<S>(mut ws: Ws<S>, d: &Litecoind, tip: u64)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let v = ws_call(
        &mut ws,
        1,
        "server.version",
        json!(["ws-test", ["1.4", "1.4.2"]]),
    )
    .await;
    assert_eq!(v["result"][1], "1.4.2");
    let h = ws_call(&mut ws, 2, "blockchain.headers.subscribe", json!([])).await;
    assert_eq!(h["result"]["height"], tip);
    let e = ws_call(&mut ws, 3, "blockchain.block.header", json!([100_000])).await;
    assert_eq!(
        e["error"],
        json!({"code": 1, "message": "height 100,000 out of range"})
    );
    let batch = json!([
        {"jsonrpc":"2.0","id":4,"method":"server.ping"},
        {"jsonrpc":"2.0","id":5,"method":"server.donation_address"},
    ]);
    ws.send(Message::text(batch.to_string())).await.unwrap();
    let b = ws_next(&mut ws).await;
    assert_eq!(b.as_array().map(Vec::len), Some(2), "{b}");
    d.mine(1);
    let n = loop {
        let v = ws_next(&mut ws).await;
        if v["method"] == "blockchain.headers.subscribe" {
            break v;
        }
    };
    assert_eq!(n["params"][0]["height"], tip + 1);
    let p = ws_call(&mut ws, 6, "server.ping", json!([])).await;
    assert_eq!(p["result"], Value::Null);
    ws.close(None).await.unwrap();
}

fn tls_env(cert: &Path, key: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SSL_CERTFILE", cert.display().to_string()),
        ("SSL_KEYFILE", key.display().to_string()),
    ]
}

// ---------------------------------------------------------------------------------------------

#[test]
fn tls_certificates_reload_without_touching_open_sessions() {
    let d = Litecoind::start();
    d.mine(3);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = make_cert(dir.path(), &cert, &key, "first");
    let port = free_port();
    let mut env = tls_env(&cert, &key);
    env.push(("SERVICES", format!("ssl://127.0.0.1:{port}")));
    let mut sx = Proc::sextant(&d, dir.path(), &env);
    sx.wait_listening(port);

    let rt = runtime();
    rt.block_on(async {
        let (s, presented) = tls_connect(port).await;
        assert_eq!(presented, first, "the configured certificate");
        let mut open = LineClient::new(s);
        let v = open
            .call("server.version", json!(["tls-test", "1.4"]))
            .await;
        assert_eq!(v[1], "1.4");
        assert_eq!(
            open.call("blockchain.headers.subscribe", json!([])).await["height"],
            3
        );

        // New files: picked up by the file watcher (polls every 5 s).
        let second = make_cert(dir.path(), &cert, &key, "second");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_s, presented) = tls_connect(port).await;
            if presented == second {
                break;
            }
            assert_eq!(presented, first);
            assert!(
                Instant::now() < deadline,
                "the new certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The open session is untouched.
        assert_eq!(open.call("server.ping", json!([])).await, Value::Null);

        // SIGHUP reloads at once.
        let third = make_cert(dir.path(), &cert, &key, "third");
        sx.signal("-HUP");
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let (s, presented) = tls_connect(port).await;
            if presented == third {
                let mut c = LineClient::new(s);
                c.call("server.version", json!(["tls-test", "1.4"])).await;
                assert_eq!(c.call("server.ping", json!([])).await, Value::Null);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SIGHUP did not reload the certificate"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A broken certificate file keeps the old configuration.
        std::fs::write(&cert, "not a certificate").unwrap();
        sx.signal("-HUP");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_s, presented) = tls_connect(port).await;
        assert_eq!(presented, third, "a bad file is not loaded");

        // The first session still works, and still gets notifications.
        d.mine(1);
        let n = loop {
            let v = open.next().await;
            if v["method"] == "blockchain.headers.subscribe" {
                break v;
            }
        };
        assert_eq!(n["params"][0]["height"], 4);
        assert_eq!(open.call("server.ping", json!([])).await, Value::Null);
    });
    assert!(
        sx.log().contains("TLS certificate reloaded (SIGHUP)"),
        "{}",
        sx.log()
    );
}

#[test]
fn websocket_sessions_over_ws_and_wss() {
    let d = Litecoind::start();
    d.mine(2);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    make_cert(dir.path(), &cert, &key, "ws");
    let (ws_port, wss_port, tcp_port) = (free_port(), free_port(), free_port());
    let mut env = tls_env(&cert, &key);
    env.push((
        "SERVICES",
        format!("ws://127.0.0.1:{ws_port},wss://127.0.0.1:{wss_port},tcp://127.0.0.1:{tcp_port}"),
    ));
    env.push(("MAX_RECV", "5000".into()));
    let mut sx = Proc::sextant(&d, dir.path(), &env);
    sx.wait_listening(ws_port);
    sx.wait_listening(wss_port);

    let rt = runtime();
    rt.block_on(async {
        // ws://
        let tcp = TcpStream::connect(("127.0.0.1", ws_port)).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{ws_port}/"), tcp)
            .await
            .expect("WebSocket handshake");
        ws_session(ws, &d, 2).await;

        // wss://
        let (tls, _) = tls_connect(wss_port).await;
        let (ws, _) = tokio_tungstenite::client_async(format!("wss://localhost:{wss_port}/"), tls)
            .await
            .expect("WebSocket handshake over TLS");
        ws_session(ws, &d, 3).await;

        // A message over MAX_RECV ends the WebSocket session (the frame cannot be skipped as
        // a line can).
        let tcp = TcpStream::connect(("127.0.0.1", ws_port)).await.unwrap();
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("ws://127.0.0.1:{ws_port}/"), tcp)
                .await
                .unwrap();
        let v = ws_call(&mut ws, 1, "server.version", json!(["big", "1.4"])).await;
        assert_eq!(v["result"][1], "1.4");
        let big =
            json!({"jsonrpc":"2.0","id":2,"method":"server.ping","params":["x".repeat(6000)]});
        let _ = ws.send(Message::text(big.to_string())).await;
        let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap();
        assert!(
            matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
            "{end:?}"
        );
    });
}

#[test]
fn a_python_aiorpcx_client_over_tls() {
    let venv = electrumx_venv();
    let d = Litecoind::start();
    d.mine(5);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    make_cert(dir.path(), &cert, &key, "python");
    let port = free_port();
    let mut env = tls_env(&cert, &key);
    env.push(("SERVICES", format!("ssl://127.0.0.1:{port}")));
    let mut sx = Proc::sextant(&d, dir.path(), &env);
    sx.wait_listening(port);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/electrum_client.py");
    let mut py = Command::new(venv.join("bin/python"))
        .arg(&script)
        .args(["127.0.0.1", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Python client");
    let stdout = py.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(60)).ok();
    let version = next().expect("the client's version line");
    assert_eq!(version["event"], "version");
    assert_eq!(version["result"][1], "1.4.2");
    assert!(version["result"][0]
        .as_str()
        .unwrap()
        .starts_with("Sextant "));
    let tip = next().expect("the client's tip line");
    assert_eq!(tip["result"]["height"], 5);
    d.mine(1);
    let Some(n) = next() else {
        let _ = py.kill();
        let out = py.wait_with_output().unwrap();
        panic!(
            "no notification line; client stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert_eq!(n["event"], "notification");
    assert_eq!(n["params"][0]["height"], 6);
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// SSL_SELF_SIGNED: TLS with no certificate supplied

/// A TLS connection that trusts only `root` (the pinned certificate, as a wallet pins it) and
/// checks that it names `name`.
async fn pinned_connect(
    port: u16,
    root: &[u8],
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pki_types::CertificateDer::from(root.to_vec()))
        .expect("a usable trust anchor");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = pki_types::ServerName::try_from(name.to_string()).unwrap();
    connector.connect(name, tcp).await
}

fn first_der(pem_file: &Path) -> Vec<u8> {
    let pem = std::fs::read(pem_file).unwrap();
    let der = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .expect("a certificate")
        .unwrap();
    der.to_vec()
}

/// `openssl x509 -fingerprint -sha256`'s form.
fn sha256_fingerprint(der: &[u8]) -> String {
    use bitcoin::hashes::{sha256, Hash};
    let hex: Vec<String> = sha256::Hash::hash(der)
        .as_byte_array()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    hex.join(":")
}

/// What Electrum does with a self-signed server: Python's ssl with the pinned certificate as
/// its only CA and no hostname check. The server's `server.version` reply.
fn python_pinned_version(port: u16, cert: &Path) -> String {
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=sys.argv[2])
ctx.check_hostname = False
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20) as raw:
    with ctx.wrap_socket(raw) as s:
        s.sendall(b'{"id":1,"method":"server.version","params":["pin","1.4"]}\n')
        print(s.makefile().readline().strip())
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .arg(cert)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "Python's ssl refused the pinned certificate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_self_signed_certificate_is_made_once_kept_and_yields_to_a_supplied_one() {
    use std::os::unix::fs::PermissionsExt;
    let d = Litecoind::start();
    d.mine(3);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let (cert, key) = (db.join("sextant.crt"), db.join("sextant.key"));
    let port = free_port();
    let env = vec![
        ("SSL_SELF_SIGNED", "1".to_string()),
        (
            "SERVICES",
            format!("tcp://127.0.0.1:{},ssl://127.0.0.1:{port}", free_port()),
        ),
        ("REPORT_SERVICES", "ssl://electrum.example.com:50002".into()),
    ];
    let rt = runtime();

    // First start: made, logged with its fingerprint, served.
    let mut sx = Proc::sextant(&d, dir.path(), &env);
    sx.wait_listening(port);
    let made = first_der(&cert);
    let fingerprint = sha256_fingerprint(&made);
    let line = sx.wait_for_log("made a self-signed certificate", Duration::from_secs(5));
    assert!(
        line.contains(&cert.display().to_string()) && line.contains(&fingerprint),
        "the log names the file and its fingerprint {fingerprint}: {line}"
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is private");
    rt.block_on(async {
        // Pinned, as a wallet pins it; its names are checked too.
        for name in ["localhost", "electrum.example.com", "127.0.0.1"] {
            let s = pinned_connect(port, &made, name)
                .await
                .unwrap_or_else(|e| panic!("pinned handshake as {name}: {e}"));
            let mut c = LineClient::new(s);
            let v = c.call("server.version", json!(["pin", "1.4"])).await;
            assert_eq!(v[1], "1.4");
        }
        let e = pinned_connect(port, &made, "other.example.org").await;
        assert!(e.is_err(), "a name the certificate lacks is refused");
    });
    assert!(python_pinned_version(port, &cert).contains("\"Sextant "));

    // Restart: the same certificate, announced with the same fingerprint.
    sx.signal("-TERM");
    assert!(sx.wait_exit(Duration::from_secs(60)).success());
    drop(sx);
    let mut sx = Proc::sextant(&d, dir.path(), &env);
    sx.wait_listening(port);
    let line = sx.wait_for_log("TLS: self-signed certificate", Duration::from_secs(5));
    assert!(line.contains(&fingerprint), "{line}");
    assert!(!sx.log().contains("made a self-signed"), "{}", sx.log());
    rt.block_on(async {
        let (_s, presented) = tls_connect(port).await;
        assert_eq!(presented, made, "reused after a restart");
    });
    sx.signal("-TERM");
    assert!(sx.wait_exit(Duration::from_secs(60)).success());
    drop(sx);

    // A certificate supplied takes precedence; the self-signed one is left for later.
    let (real_cert, real_key) = (dir.path().join("real.pem"), dir.path().join("real-key.pem"));
    let real = make_cert(dir.path(), &real_cert, &real_key, "real");
    let mut env = env;
    env.extend(tls_env(&real_cert, &real_key));
    let mut sx = Proc::sextant(&d, dir.path(), &env);
    sx.wait_listening(port);
    rt.block_on(async {
        let (_s, presented) = tls_connect(port).await;
        assert_eq!(presented, real, "SSL_CERTFILE is served");
        // Reloaded on change, as ever.
        let newer = make_cert(dir.path(), &real_cert, &real_key, "newer");
        sx.signal("-HUP");
        let deadline = Instant::now() + Duration::from_secs(5);
        while tls_connect(port).await.1 != newer {
            assert!(Instant::now() < deadline, "SSL_CERTFILE was not reloaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(
        sx.log().contains("SSL_SELF_SIGNED is not used"),
        "{}",
        sx.log()
    );
    assert_eq!(
        first_der(&cert),
        made,
        "the self-signed certificate is kept"
    );
}

#[test]
fn without_ssl_self_signed_tls_still_needs_a_certificate() {
    let d = Litecoind::start();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("SERVICES", format!("ssl://127.0.0.1:{}", free_port()))];
    let mut sx = Proc::sextant(&d, dir.path(), &env);
    let status = sx.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", sx.log());
    assert!(sx.log().contains("SSL_SELF_SIGNED=1"), "{}", sx.log());
    assert!(!dir.path().join("db/sextant.crt").exists());
}
