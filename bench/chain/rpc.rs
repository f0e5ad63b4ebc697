//! A small blocking HTTP/1.1 client for the daemon's JSON-RPC and REST interfaces, std only.
//! One keep-alive connection per client; reconnects once when the daemon closed it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

pub struct Client {
    addr: SocketAddr,
    path: String,
    auth: String,
    conn: Option<BufReader<TcpStream>>,
}

pub type Result<T> = std::result::Result<T, String>;

impl Client {
    pub fn new(addr: SocketAddr, path: &str, user: &str, pass: &str) -> Client {
        Client {
            addr,
            path: path.to_string(),
            auth: base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")),
            conn: None,
        }
    }

    pub fn with_path(&self, path: &str) -> Client {
        Client {
            addr: self.addr,
            path: path.to_string(),
            auth: self.auth.clone(),
            conn: None,
        }
    }

    fn connect(&mut self) -> Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(Duration::from_secs(600))).ok();
            self.conn = Some(BufReader::with_capacity(1 << 20, s));
        }
        Ok(self.conn.as_mut().unwrap())
    }

    /// One HTTP request; returns (status, body). Retries once on a stale keep-alive connection.
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let fresh = self.conn.is_none();
        match self.request_once(method, path, body) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.conn = None;
                if fresh {
                    return Err(e);
                }
                self.request_once(method, path, body)
                    .inspect_err(|_| self.conn = None)
            }
        }
    }

    fn request_once(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            self.addr,
            self.auth,
            body.len()
        );
        let conn = self.connect()?;
        let io = |e: std::io::Error| format!("HTTP I/O: {e}");
        {
            let s = conn.get_mut();
            s.write_all(head.as_bytes()).map_err(io)?;
            s.write_all(body).map_err(io)?;
        }
        let mut line = String::new();
        if conn.read_line(&mut line).map_err(io)? == 0 {
            return Err("connection closed".into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            conn.read_line(&mut line).map_err(io)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line).map_err(io)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                if n == 0 {
                    line.clear();
                    conn.read_line(&mut line).map_err(io)?;
                    break;
                }
                let start = out.len();
                out.resize(start + n, 0);
                conn.read_exact(&mut out[start..]).map_err(io)?;
                line.clear();
                conn.read_line(&mut line).map_err(io)?;
            }
        } else if let Some(n) = length {
            out.resize(n, 0);
            conn.read_exact(&mut out).map_err(io)?;
        } else {
            conn.read_to_end(&mut out).map_err(io)?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok((status, out))
    }

    /// One JSON-RPC call.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let body = json!({"jsonrpc": "1.0", "id": 0, "method": method, "params": params});
        let path = self.path.clone();
        let (status, reply) = self.request("POST", &path, body.to_string().as_bytes())?;
        let v: Value = serde_json::from_slice(&reply).map_err(|e| {
            format!(
                "{method}: HTTP {status}, unparsable reply ({e}): {}",
                String::from_utf8_lossy(&reply[..reply.len().min(300)])
            )
        })?;
        if !v["error"].is_null() {
            return Err(format!("{method} {params}: {}", v["error"]));
        }
        Ok(v["result"].clone())
    }

    /// A JSON-RPC batch; one result per call, in order.
    pub fn batch(
        &mut self,
        calls: &[(&str, Value)],
    ) -> Result<Vec<std::result::Result<Value, Value>>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| json!({"jsonrpc": "1.0", "id": i, "method": m, "params": p}))
            .collect();
        let path = self.path.clone();
        let (status, reply) =
            self.request("POST", &path, Value::Array(body).to_string().as_bytes())?;
        let v: Vec<Value> = serde_json::from_slice(&reply).map_err(|e| {
            format!(
                "batch: HTTP {status}, unparsable reply ({e}): {}",
                String::from_utf8_lossy(&reply[..reply.len().min(300)])
            )
        })?;
        let mut out: Vec<Option<std::result::Result<Value, Value>>> = vec![None; calls.len()];
        for mut r in v {
            let id = r["id"].as_u64().ok_or("batch reply without id")? as usize;
            let res = if r["error"].is_null() {
                Ok(r["result"].take())
            } else {
                Err(r["error"].take())
            };
            *out.get_mut(id).ok_or("batch reply id out of range")? = Some(res);
        }
        out.into_iter()
            .map(|r| r.ok_or_else(|| "batch reply missing an id".to_string()))
            .collect()
    }

    /// A REST GET (e.g. `/rest/block/<hash>.bin`); the body on HTTP 200.
    pub fn rest_get(&mut self, path: &str) -> Result<Vec<u8>> {
        let (status, body) = self.request("GET", path, &[])?;
        if status != 200 {
            return Err(format!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        Ok(body)
    }
}
