//! HTTP/1.1 for the stand-in: a thread per connection (index servers open a few dozen at most),
//! keep-alive, `Content-Length` bodies, TCP_NODELAY so a reply's last segment never waits for
//! the client's delayed ACK. Block bodies go from the mapped file to the socket in one
//! vectored write with the head, never copied.

use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Request {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

pub struct Response<'a> {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body<'a>,
}

pub enum Body<'a> {
    Owned(Vec<u8>),
    Mapped(&'a [u8]),
}

impl Response<'_> {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<'static> {
        Response {
            status,
            content_type,
            body: Body::Owned(body),
        }
    }

    pub fn text(status: u16, text: &str) -> Response<'static> {
        Response::new(status, "text/plain", format!("{text}\r\n").into_bytes())
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &Request) -> Response<'_>;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    }
}

/// Accepts connections until `stop` is set (and one more connection wakes the loop).
pub fn serve(listener: TcpListener, handler: Arc<dyn Handler>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(sock) = conn else { continue };
        let handler = handler.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = connection(sock, &*handler, &stop);
        });
    }
}

fn connection(sock: TcpStream, handler: &dyn Handler, stop: &AtomicBool) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut r = BufReader::with_capacity(1 << 16, sock.try_clone()?);
    let mut w = sock;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path, version) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let mut len = 0usize;
        let mut authorization = None;
        let mut close = version == "HTTP/1.0";
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.to_string());
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close")
                    || (close && !v.eq_ignore_ascii_case("keep-alive"));
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        let req = Request {
            method,
            path,
            authorization,
            body,
        };
        let resp = handler.handle(&req);
        let body: &[u8] = match &resp.body {
            Body::Owned(v) => v,
            Body::Mapped(s) => s,
        };
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
            resp.status,
            reason(resp.status),
            resp.content_type,
            body.len(),
            if close { "Connection: close\r\n" } else { "" },
        );
        write_all2(&mut w, head.as_bytes(), body)?;
        if close {
            return Ok(());
        }
    }
}

fn write_all2(w: &mut TcpStream, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let mut bufs = [IoSlice::new(a), IoSlice::new(b)];
    let mut slices: &mut [IoSlice] = &mut bufs;
    while !slices.is_empty() {
        let n = w.write_vectored(slices)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}
