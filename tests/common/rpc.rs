//! A tiny blocking JSON-RPC 1.0 client over HTTP/1.1 (std::net only).
//!
//! One TCP connection per request (`Connection: close`), so there is no connection state to go
//! stale when the daemon is stopped and restarted under a test.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// Blocking JSON-RPC client for one endpoint path (`/` or `/wallet/<name>`).
#[derive(Clone, Debug)]
pub struct RpcClient {
    addr: SocketAddr,
    path: String,
    auth: String,
    timeout: Duration,
}

impl RpcClient {
    pub fn new(addr: SocketAddr, path: &str, user: &str, pass: &str) -> RpcClient {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        RpcClient {
            addr,
            path: path.to_string(),
            auth,
            timeout: Duration::from_secs(300),
        }
    }

    /// One call. `params` must be a JSON array (or `null` for none).
    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let params = if params.is_null() { json!([]) } else { params };
        let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        let (status, reply) = self.post(&body.to_string())?;
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
        let (status, reply) = self.post(&Value::Array(body).to_string())?;
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

    fn post(&self, body: &str) -> Result<(u16, Vec<u8>), RpcError> {
        let io = |e: std::io::Error| RpcError::Io(format!("{}: {e}", self.addr));
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(io)?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.addr,
            self.auth,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(io)?;
        s.write_all(body.as_bytes()).map_err(io)?;
        s.flush().map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io)?;
        parse_http(&raw)
    }
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

/// Split an HTTP/1.1 response into status and (de-chunked) body.
fn parse_http(raw: &[u8]) -> Result<(u16, Vec<u8>), RpcError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| RpcError::Io(format!("truncated HTTP reply ({} bytes)", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RpcError::Protocol(format!("bad status line: {status_line}")))?;
    let mut chunked = false;
    let mut content_length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                content_length = v.parse::<usize>().ok();
            }
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = content_length {
        if body.len() < n {
            return Err(RpcError::Io(format!(
                "truncated HTTP body: {} of {n} bytes",
                body.len()
            )));
        }
        body[..n].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| RpcError::Io("truncated chunked body".into()))?;
        let size_txt = String::from_utf8_lossy(&b[..eol]);
        let size_txt = size_txt
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let size = usize::from_str_radix(&size_txt, 16)
            .map_err(|_| RpcError::Protocol(format!("bad chunk size {size_txt:?}")))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err(RpcError::Io("truncated chunk".into()));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}
