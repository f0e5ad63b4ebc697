//! A small blocking JSON-RPC 1.0 and REST client over HTTP/1.1 (std::net only), for the tests
//! and the benchmarks' chain builder alike.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// An error from a JSON-RPC call. `Rpc` keeps the daemon's own code and message.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcError {
    /// The daemon answered with a JSON-RPC error object.
    Rpc { code: i64, message: String },
    /// The daemon answered with an HTTP status and a body that is not a JSON-RPC reply
    /// (e.g. 401 on wrong credentials).
    Http { status: u16, body: String },
    /// Connecting, writing or reading failed (daemon down, connection refused, timeout…).
    Io(String),
    /// The reply could not be parsed.
    Protocol(String),
}

impl RpcError {
    /// The daemon's JSON-RPC error code, when the daemon sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            RpcError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The daemon's JSON-RPC error message, when the daemon sent one.
    pub fn message(&self) -> Option<&str> {
        match self {
            RpcError::Rpc { message, .. } => Some(message),
            _ => None,
        }
    }

    /// True for transport-level failures (daemon not reachable).
    pub fn is_io(&self) -> bool {
        matches!(self, RpcError::Io(_))
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Rpc { code, message } => write!(f, "RPC error {code}: {message}"),
            RpcError::Http { status, body } => write!(f, "HTTP {status}: {body}"),
            RpcError::Io(e) => write!(f, "I/O error: {e}"),
            RpcError::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl std::error::Error for RpcError {}

impl From<RpcError> for String {
    fn from(e: RpcError) -> String {
        e.to_string()
    }
}

/// Blocking JSON-RPC (and REST) client for one endpoint path (`/` or `/wallet/<name>`).
///
/// One keep-alive connection, shared by the clones' callers in turn; a request that fails on a
/// connection that was already used is sent once more on a fresh one, so a daemon restarted
/// under a test (or one that closed an idle connection) costs no error.
#[derive(Debug)]
pub struct RpcClient {
    addr: SocketAddr,
    path: String,
    auth: String,
    timeout: Duration,
    conn: Mutex<Option<BufReader<TcpStream>>>,
}

impl Clone for RpcClient {
    fn clone(&self) -> RpcClient {
        self.with_path(&self.path)
    }
}

impl RpcClient {
    pub fn new(addr: SocketAddr, path: &str, user: &str, pass: &str) -> RpcClient {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        RpcClient {
            addr,
            path: path.to_string(),
            auth,
            timeout: Duration::from_secs(600),
            conn: Mutex::new(None),
        }
    }

    /// The same daemon and credentials at another path (a wallet's), on its own connection.
    pub fn with_path(&self, path: &str) -> RpcClient {
        RpcClient {
            addr: self.addr,
            path: path.to_string(),
            auth: self.auth.clone(),
            timeout: self.timeout,
            conn: Mutex::new(None),
        }
    }

    /// One call. `params` must be a JSON array (or `null` for none).
    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let params = if params.is_null() { json!([]) } else { params };
        let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        let (status, reply) = self.request("POST", &self.path, body.to_string().as_bytes())?;
        parse_single(status, &reply)
    }

    /// A JSON-RPC batch: one result per call, in call order.
    pub fn batch(&self, calls: &[(&str, Value)]) -> Result<Vec<Result<Value, RpcError>>, RpcError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| {
                let p = if p.is_null() { json!([]) } else { p.clone() };
                json!({"jsonrpc": "1.0", "id": i, "method": m, "params": p})
            })
            .collect();
        let body = Value::Array(body).to_string();
        let (status, reply) = self.request("POST", &self.path, body.as_bytes())?;
        let v: Value = serde_json::from_slice(&reply).map_err(|_| RpcError::Http {
            status,
            body: String::from_utf8_lossy(&reply).into_owned(),
        })?;
        let arr = v
            .as_array()
            .ok_or_else(|| RpcError::Protocol(format!("batch reply is not an array: {v}")))?;
        let mut out: Vec<Option<Result<Value, RpcError>>> = vec![None; calls.len()];
        for item in arr {
            let id = item
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| RpcError::Protocol(format!("batch item without id: {item}")))?
                as usize;
            if id >= out.len() {
                return Err(RpcError::Protocol(format!("batch id {id} out of range")));
            }
            out[id] = Some(reply_to_result(item));
        }
        out.into_iter()
            .enumerate()
            .map(|(i, r)| r.ok_or_else(|| RpcError::Protocol(format!("batch reply lacks id {i}"))))
            .collect()
    }

    /// A REST GET (e.g. `/rest/block/<hash>.bin`): the body of a 200 answer.
    pub fn rest_get(&self, path: &str) -> Result<Vec<u8>, RpcError> {
        let (status, body) = self.request("GET", path, &[])?;
        if status != 200 {
            return Err(RpcError::Http {
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            });
        }
        Ok(body)
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), RpcError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let reused = conn.is_some();
        match self.request_on(&mut conn, method, path, body) {
            Err(RpcError::Io(_)) if reused => {
                *conn = None;
                self.request_on(&mut conn, method, path, body)
            }
            r => r,
        }
    }

    fn request_on(
        &self,
        conn: &mut Option<BufReader<TcpStream>>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), RpcError> {
        let io = |e: std::io::Error| RpcError::Io(format!("{}: {e}", self.addr));
        if conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(io)?;
            s.set_nodelay(true).map_err(io)?;
            s.set_read_timeout(Some(self.timeout)).map_err(io)?;
            s.set_write_timeout(Some(self.timeout)).map_err(io)?;
            *conn = Some(BufReader::with_capacity(1 << 20, s));
        }
        let r = conn.as_mut().expect("connected");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            self.auth,
            body.len()
        );
        let result = write_and_read(r, head.as_bytes(), body).map_err(io);
        match result {
            Ok((status, reply, keep)) => {
                if !keep {
                    *conn = None;
                }
                Ok((status, reply))
            }
            Err(e) => {
                *conn = None;
                Err(e)
            }
        }
    }
}

/// Sends one request and reads its response: status, (de-chunked) body, and whether the
/// connection stays open.
fn write_and_read(
    r: &mut BufReader<TcpStream>,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>, bool)> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    {
        let s = r.get_mut();
        s.write_all(head)?;
        s.write_all(body)?;
        s.flush()?;
    }
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed before a reply".into()));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => keep = !v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(size, 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            if n == 0 {
                line.clear();
                r.read_line(&mut line)?;
                break;
            }
            let start = out.len();
            out.resize(start + n, 0);
            r.read_exact(&mut out[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
        keep = false;
    }
    Ok((status, out, keep))
}

fn parse_single(status: u16, reply: &[u8]) -> Result<Value, RpcError> {
    match serde_json::from_slice::<Value>(reply) {
        Ok(v) if v.is_object() && (v.get("result").is_some() || v.get("error").is_some()) => {
            reply_to_result(&v)
        }
        _ => Err(RpcError::Http {
            status,
            body: String::from_utf8_lossy(reply).into_owned(),
        }),
    }
}

fn reply_to_result(v: &Value) -> Result<Value, RpcError> {
    match v.get("error") {
        Some(e) if !e.is_null() => Err(RpcError::Rpc {
            code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }),
        _ => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
    }
}
