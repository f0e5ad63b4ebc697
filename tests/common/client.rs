//! A blocking newline-framed JSON-RPC client of the Electrum protocol.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use super::process::wait_until;

pub struct Client {
    r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::connect_to(Ipv4Addr::LOCALHOST, port)
    }

    /// Connects to 127.0.0.1 from the loopback address `from` (all of 127/8 is loopback), so
    /// one test can be clients on several addresses.
    pub fn connect_to(from: Ipv4Addr, port: u16) -> Client {
        let s = wait_until(Duration::from_secs(20), "the server to listen", || {
            connect_from(from, port).ok()
        });
        Client::from_stream(s)
    }

    pub fn from_stream(s: TcpStream) -> Client {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // A request and its newline go out in two writes: without this, Nagle holds the
        // newline for the server's delayed ACK (~40 ms a call).
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Sends one line; a write to a connection the server already closed is ignored (the
    /// next read tells).
    pub fn send_line(&mut self, line: &str) {
        let _ = self.w.write_all(line.as_bytes());
        let _ = self.w.write_all(b"\n");
    }

    /// The next line, or `None` when the server closed the connection.
    pub fn line(&mut self) -> Option<Value> {
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"))),
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next line; `None` once the server closed the connection, even abruptly (reset).
    pub fn line_or_closed(&mut self) -> Option<Value> {
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => serde_json::from_str(&s).ok(),
        }
    }

    /// Sends `server.version`; whether it was answered (false: refused or closed).
    pub fn negotiates(&mut self) -> bool {
        self.send_line(
            r#"{"jsonrpc":"2.0","id":0,"method":"server.version","params":["test","1.4"]}"#,
        );
        self.line_or_closed().is_some()
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send_line(
            &json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}).to_string(),
        );
        loop {
            let v = self.line().expect("a reply");
            if v.get("id").is_some() {
                return v;
            }
        }
    }

    pub fn result(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params.clone());
        assert!(v.get("error").is_none(), "{method} {params}: {v}");
        v["result"].clone()
    }

    pub fn error(&mut self, method: &str, params: Value) -> (i64, String) {
        let v = self.call(method, params.clone());
        let e = v
            .get("error")
            .unwrap_or_else(|| panic!("{method} {params}: no error: {v}"));
        (
            e["code"].as_i64().unwrap(),
            e["message"].as_str().unwrap().to_string(),
        )
    }

    pub fn notification(&mut self, method: &str) -> Value {
        loop {
            let v = self.line().expect("a notification");
            if v["method"] == method {
                return v["params"].clone();
            }
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` from the local address `from` (std cannot bind before
/// connecting; tokio's socket can).
pub fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind((from, 0).into())?;
        sock.connect((Ipv4Addr::LOCALHOST, port).into()).await
    })?;
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(s)
}
