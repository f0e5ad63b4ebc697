//! The block-file stand-in daemon: serves a generated chain the way `litecoind -rest=1
//! -txindex=1` serves an index server — REST `/rest/block/<hash>.bin` (and `.hex`, `.json`,
//! `/rest/chaininfo.json`, `/rest/headers/…`, `/rest/tx/…`, `/rest/blockhashbyheight/…`) without
//! credentials, JSON-RPC (single calls and batches) with basic auth on any other POST.
//!
//! Nothing is parsed or copied per request beyond the reply: blocks are slices of the mapped
//! files, block hashes are looked up in a map built at start. See bench/README.md, "The scale
//! chain", for what is answered and how.

pub mod chain;
pub mod http;
pub mod rpc;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;

use chain::Chain;
use http::{Body, Handler, Request, Response};

struct App {
    chain: Chain,
    /// The `Authorization` header JSON-RPC calls must carry.
    auth: String,
}

impl Handler for App {
    fn handle(&self, req: &Request) -> Response<'_> {
        if req.method == "GET" {
            return self.rest(req.path.split('?').next().unwrap_or_default());
        }
        if req.method != "POST" {
            return Response::text(405, "method not allowed");
        }
        if req.authorization.as_deref() != Some(self.auth.as_str()) {
            return Response::new(401, "text/html", Vec::new());
        }
        let (status, text) = rpc::handle(&self.chain, &req.body);
        Response::new(status, "application/json", text.into_bytes())
    }
}

const JSON: &str = "application/json";

impl App {
    fn rest(&self, path: &str) -> Response<'_> {
        let c = &self.chain;
        if path == "/rest/chaininfo.json" {
            return Response::new(200, JSON, rpc::chain_info(c).to_string().into_bytes());
        }
        let Some((stem, ext)) = path.rsplit_once('.') else {
            return Response::text(404, "Not found");
        };
        let parts: Vec<&str> = stem.trim_start_matches("/rest/").split('/').collect();
        let block = |h: &str| match rpc::parse_hash(h) {
            None => Err(Response::text(400, &format!("Invalid hash: {h}"))),
            Some(hash) => c
                .height_of(&hash)
                .ok_or_else(|| Response::text(404, &format!("{h} not found"))),
        };
        let bad_format = || {
            Response::text(
                404,
                "output format not found (available: .bin, .hex, .json)",
            )
        };
        let hex_reply = |bytes: &[u8]| {
            let mut s = String::new();
            rpc::hex_into(&mut s, bytes);
            s.push('\n');
            Response::new(200, "text/plain", s.into_bytes())
        };
        match parts.as_slice() {
            ["block", h] | ["block", "notxdetails", h] => {
                let height = match block(h) {
                    Ok(height) => height,
                    Err(r) => return r,
                };
                match ext {
                    "bin" => Response {
                        status: 200,
                        content_type: "application/octet-stream",
                        body: Body::Mapped(c.block(height)),
                    },
                    "hex" => hex_reply(c.block(height)),
                    "json" => {
                        Response::new(200, JSON, rpc::block_json(c, height).to_string().into())
                    }
                    _ => bad_format(),
                }
            }
            ["headers", count, h] => {
                let height = match block(h) {
                    Ok(height) => height,
                    Err(r) => return r,
                };
                let count: u64 = count.parse().unwrap_or(0);
                if !(1..=2000).contains(&count) {
                    return Response::text(400, &format!("Header count out of range: {count}"));
                }
                let end = (height + count - 1).min(c.tip());
                let mut raw = Vec::with_capacity(80 * (end - height + 1) as usize);
                for h in height..=end {
                    raw.extend_from_slice(c.header(h));
                }
                match ext {
                    "bin" => Response::new(200, "application/octet-stream", raw),
                    "hex" => hex_reply(&raw),
                    _ => bad_format(),
                }
            }
            ["tx", t] => match rpc::find_tx(c, t) {
                Err((_, m)) => Response::text(404, &format!("{t} not found: {m}")),
                Ok((_, raw, _)) => match ext {
                    "bin" => Response {
                        status: 200,
                        content_type: "application/octet-stream",
                        body: Body::Mapped(raw),
                    },
                    "hex" => hex_reply(raw),
                    _ => bad_format(),
                },
            },
            ["blockhashbyheight", h] => match h.parse::<u64>() {
                Ok(h) if h <= c.tip() => {
                    let hash = c.entry(h).hash;
                    match ext {
                        "bin" => Response::new(200, "application/octet-stream", hash.to_vec()),
                        "hex" => Response::new(
                            200,
                            "text/plain",
                            format!("{}\n", rpc::hash_hex(&hash)).into(),
                        ),
                        "json" => Response::new(
                            200,
                            JSON,
                            serde_json::json!({"blockhash": rpc::hash_hex(&hash)})
                                .to_string()
                                .into(),
                        ),
                        _ => bad_format(),
                    }
                }
                _ => Response::text(404, "Block height out of range"),
            },
            _ => Response::text(404, "Not found"),
        }
    }
}

/// A running stand-in. Stops when dropped.
pub struct Daemon {
    addr: SocketAddr,
    user: String,
    pass: String,
    app: Arc<App>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Serves the chain in `dir` on `bind` (port 0: any free port).
    pub fn start(dir: &Path, bind: SocketAddr, user: &str, pass: &str) -> Result<Daemon> {
        let chain = Chain::open(dir)?;
        let listener = TcpListener::bind(bind).with_context(|| format!("bind {bind}"))?;
        let addr = listener.local_addr()?;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let app = Arc::new(App { chain, auth });
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<dyn Handler> = app.clone();
        let s = stop.clone();
        let thread = std::thread::spawn(move || http::serve(listener, handler, s));
        Ok(Daemon {
            addr,
            user: user.into(),
            pass: pass.into(),
            app,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://user:pass@127.0.0.1:port/`, the form `DAEMON_URL` takes.
    pub fn url(&self) -> String {
        format!("http://{}:{}@{}/", self.user, self.pass, self.addr)
    }

    pub fn chain(&self) -> &Chain {
        &self.app.chain
    }

    /// Blocks until the daemon is stopped from elsewhere (the CLI runs until killed).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
