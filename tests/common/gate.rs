//! A gate in front of litecoind's RPC port: every request passes through to the real daemon,
//! except block downloads (`getblock`, REST `/rest/block/`), which wait while the gate is closed. A test can so hold
//! a sync in progress for as long as it needs, with no timing involved. Long-polls
//! (`waitfor…`) can be slowed on their way to the daemon, as over a slow link.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::litecoind::{Litecoind, RPC_PASS, RPC_USER};

#[derive(Default)]
struct State {
    open: bool,
    /// Block downloads still let through while the gate is closed.
    allowance: usize,
    /// Block downloads waiting at the gate now.
    held: usize,
    /// Requests answered by the daemon.
    passed: usize,
    /// How long a long-poll request waits before it goes on to the daemon.
    long_poll_delay: Duration,
}

pub struct DaemonGate {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl DaemonGate {
    /// A closed gate in front of `d`.
    pub fn start(d: &Litecoind) -> DaemonGate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let target = d.rpc_addr();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || relay(conn, target, &st));
            }
        });
        DaemonGate { port, state }
    }

    /// A `DAEMON_URL` through the gate.
    pub fn url(&self) -> String {
        format!("http://{RPC_USER}:{RPC_PASS}@127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Block downloads waiting at the gate.
    pub fn held(&self) -> usize {
        self.state.0.lock().unwrap().held
    }

    /// Requests that went through to the daemon.
    pub fn passed(&self) -> usize {
        self.state.0.lock().unwrap().passed
    }

    /// Lets the next `n` block downloads through while the gate stays closed for later ones.
    #[allow(dead_code)] // not every test binary that includes the harness uses it
    pub fn let_through(&self, n: usize) {
        self.state.0.lock().unwrap().allowance += n;
        self.state.1.notify_all();
    }

    /// Holds each long-poll request (`waitfornewblock`, `waitforblockheight`) this long before
    /// it goes on to the daemon.
    #[allow(dead_code)]
    pub fn delay_long_polls(&self, delay: Duration) {
        self.state.0.lock().unwrap().long_poll_delay = delay;
    }

    /// Lets everything through from now on.
    pub fn open(&self) {
        self.state.0.lock().unwrap().open = true;
        self.state.1.notify_all();
    }
}

impl Drop for DaemonGate {
    fn drop(&mut self) {
        self.open();
    }
}

/// One request per connection: read it, wait at the gate if it downloads blocks, forward it
/// (asking the daemon to close after answering), copy the answer back, close.
fn relay(conn: TcpStream, target: SocketAddr, state: &(Mutex<State>, Condvar)) {
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
    // Blocks come as JSON-RPC `getblock` or, with the daemon's REST on, `GET /rest/block/`.
    let block_download = String::from_utf8_lossy(&body).contains("\"method\":\"getblock\"")
        || head
            .first()
            .is_some_and(|l| l.starts_with("GET /rest/block/"));
    if String::from_utf8_lossy(&body).contains("\"method\":\"waitfor") {
        let delay = state.0.lock().unwrap().long_poll_delay;
        std::thread::sleep(delay);
    }
    if block_download {
        let (lock, cv) = state;
        let mut st = lock.lock().unwrap();
        st.held += 1;
        while !st.open && st.allowance == 0 {
            st = cv.wait(st).unwrap();
        }
        if !st.open {
            st.allowance -= 1;
        }
        st.held -= 1;
    }
    let Ok(mut daemon) = TcpStream::connect(target) else {
        return;
    };
    let mut request = head.concat().into_bytes();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(&body);
    let mut answer = Vec::new();
    if daemon.write_all(&request).is_err() || daemon.read_to_end(&mut answer).is_err() {
        return;
    }
    state.0.lock().unwrap().passed += 1;
    let mut conn = conn;
    let _ = conn.write_all(&answer);
}
