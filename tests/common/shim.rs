//! A proxy in front of litecoind's RPC port, for the differential tests:
//!
//! * **Filling**: ElectrumX 2.0 reads fields of newer Bitcoin Core RPCs that Litecoin Core 0.21
//!   lacks, and fails without them where Sextant answers. With filling on, the proxy completes
//!   those answers from litecoind's other RPCs, so the two servers can be compared on the same
//!   daemon: `getmempoolinfo` gets `incrementalrelayfee` from `getnetworkinfo`'s `incrementalfee`
//!   (what Sextant itself falls back to; `mempool.get_info`, protocol 1.6).
//! * **Freezing**: while frozen, requests wait at the proxy (those already forwarded finish), so
//!   a test can change the chain in several steps — a reorg — and have the server see only the
//!   end result, as one change.
//!
//! One request per connection, like [`super::gate`]: read it, forward it with
//! `Connection: close`, copy the answer back (rewritten when filled), close.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::litecoind::{Litecoind, RPC_PASS, RPC_USER};
use super::rpc::RpcClient;

#[derive(Default)]
struct State {
    frozen: bool,
    /// Requests forwarded and not yet answered.
    in_flight: usize,
    /// Answers completed with a filled-in field.
    filled: usize,
}

pub struct DaemonShim {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl DaemonShim {
    /// An open shim in front of `d`; `fill` completes answers as the module comment says.
    pub fn start(d: &Litecoind, fill: bool) -> DaemonShim {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let target = d.rpc_addr();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || relay(conn, target, fill, &st));
            }
        });
        DaemonShim { port, state }
    }

    /// A `DAEMON_URL` through the shim.
    pub fn url(&self) -> String {
        format!("http://{RPC_USER}:{RPC_PASS}@127.0.0.1:{}/", self.port)
    }

    /// Holds new requests, and returns once every forwarded one is answered.
    pub fn freeze(&self) {
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().unwrap();
        st.frozen = true;
        let deadline = Instant::now() + Duration::from_secs(30);
        while st.in_flight > 0 {
            assert!(Instant::now() < deadline, "daemon requests still in flight");
            st = cv.wait_timeout(st, Duration::from_millis(50)).unwrap().0;
        }
    }

    pub fn thaw(&self) {
        self.state.0.lock().unwrap().frozen = false;
        self.state.1.notify_all();
    }

    /// How many answers were completed so far.
    pub fn filled(&self) -> usize {
        self.state.0.lock().unwrap().filled
    }
}

impl Drop for DaemonShim {
    fn drop(&mut self) {
        self.thaw();
    }
}

fn relay(conn: TcpStream, target: SocketAddr, fill: bool, state: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push(line);
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    {
        let (lock, cv) = state;
        let mut st = lock.lock().unwrap();
        while st.frozen {
            st = cv.wait(st).unwrap();
        }
        st.in_flight += 1;
    }
    let answer = forward(target, &head, &body);
    let answer = match answer {
        Some(a) if fill => match filled(target, &body, &a) {
            Some(f) => {
                state.0.lock().unwrap().filled += 1;
                f
            }
            None => a,
        },
        other => other.unwrap_or_default(),
    };
    {
        let mut st = state.0.lock().unwrap();
        st.in_flight -= 1;
        state.1.notify_all();
    }
    let mut conn = conn;
    let _ = conn.write_all(&answer);
}

fn forward(target: SocketAddr, head: &[String], body: &[u8]) -> Option<Vec<u8>> {
    let mut daemon = TcpStream::connect(target).ok()?;
    let mut request = head.concat().into_bytes();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(body);
    let mut answer = Vec::new();
    daemon.write_all(&request).ok()?;
    daemon.read_to_end(&mut answer).ok()?;
    Some(answer)
}

/// The answer with the missing fields filled in, or `None` when nothing is to be filled.
fn filled(target: SocketAddr, request: &[u8], answer: &[u8]) -> Option<Vec<u8>> {
    let request: Value = serde_json::from_slice(request).ok()?;
    if request.get("method")?.as_str()? != "getmempoolinfo" {
        return None;
    }
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (head, body) = answer.split_at(split);
    let mut reply: Value = serde_json::from_slice(body).ok()?;
    let result = reply.get_mut("result")?.as_object_mut()?;
    if result.contains_key("incrementalrelayfee") {
        return None;
    }
    let daemon = RpcClient::new(target, "/", RPC_USER, RPC_PASS);
    let network = daemon.call("getnetworkinfo", serde_json::json!([])).ok()?;
    result.insert(
        "incrementalrelayfee".into(),
        network["incrementalfee"].clone(),
    );
    let body = format!("{reply}\n");
    let head: String = String::from_utf8_lossy(head)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}\r\n", body.len())
            } else {
                format!("{l}\r\n")
            }
        })
        .collect();
    Some(format!("{head}\r\n{body}").into_bytes())
}
