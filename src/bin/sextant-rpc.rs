//! `sextant-rpc`: sends one admin command to a running Sextant's `rpc://` service and prints
//! the answer as JSON, like ElectrumX's `electrumx_rpc` (same commands, same named
//! parameters, same port rules: `-p PORT`, else `RPC_PORT`, else 8000).
//!
//! ```text
//! sextant-rpc getinfo
//! sextant-rpc -p 8000 sessions
//! sextant-rpc disconnect 12 203.0.113.0/24
//! sextant-rpc query -l 10 mr8e8bRvcCCfpjPbcL5ihL928M6N2aVgVs
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};

const USAGE: &str = "usage: sextant-rpc [-p PORT] [--host HOST] [--timeout SECS] COMMAND [ARGS...]

commands:
  getinfo                 a summary of server state
  sessions                the client sessions
  groups                  the session groups
  peers                   the peer servers
  stop                    shut the server down cleanly
  disconnect IDS...       disconnect sessions (ids, group names, or all)
  log IDS...              toggle request logging (ids, group names, all, none, new)
  inspect_session ID      one session's details
  daemon_url [URLS]       switch daemons (comma-separated; none: back to DAEMON_URL)
  add_peer REAL_NAME      add a peer
  query [-l N] ITEMS...   history, UTXOs and balance of addresses or hex scripts
                          (at most N lines of each, default 1000)
  reorg [COUNT]           undo COUNT blocks (default 3) and sync them again

The admin RPC answers from start-up: during the initial sync too.";

struct Args {
    host: String,
    port: u16,
    timeout: Duration,
    method: String,
    params: Map<String, Value>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut port = None;
    let mut host = "localhost".to_string();
    let mut timeout = Duration::from_secs(30);
    let method = loop {
        let a = argv.next().ok_or("no command given")?;
        match a.as_str() {
            "-p" | "--port" => {
                let v = argv.next().ok_or("-p needs a port number")?;
                port = Some(v.parse::<u16>().map_err(|_| format!("invalid port: {v}"))?);
            }
            "--host" => host = argv.next().ok_or("--host needs a host")?,
            "--timeout" => {
                let v = argv.next().ok_or("--timeout needs seconds")?;
                let secs = v.parse().map_err(|_| format!("invalid timeout: {v}"))?;
                timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a}")),
            _ => break a,
        }
    };
    let rest: Vec<String> = argv.collect();
    let port = match port {
        Some(p) => p,
        None => match std::env::var("RPC_PORT") {
            Ok(v) => v.parse().map_err(|_| format!("invalid RPC_PORT: {v}"))?,
            Err(_) => 8000,
        },
    };
    let mut params = Map::new();
    let int = |v: &str| -> Result<Value, String> {
        v.parse::<u64>()
            .map(Value::from)
            .map_err(|_| format!("expected a number: {v}"))
    };
    match method.as_str() {
        "getinfo" | "sessions" | "groups" | "peers" | "stop" => {
            if !rest.is_empty() {
                return Err(format!("{method} takes no arguments"));
            }
        }
        "disconnect" | "log" => {
            if rest.is_empty() {
                return Err(format!("{method} needs session ids"));
            }
            params.insert("session_ids".into(), json!(rest));
        }
        "inspect_session" => {
            let [id] = rest.as_slice() else {
                return Err("inspect_session needs one session id".into());
            };
            params.insert("session_id".into(), int(id)?);
        }
        "add_peer" => {
            let [name] = rest.as_slice() else {
                return Err("add_peer needs one real name".into());
            };
            params.insert("real_name".into(), json!(name));
        }
        "daemon_url" => {
            params.insert(
                "daemon_url".into(),
                json!(rest.first().cloned().unwrap_or_default()),
            );
        }
        "reorg" => {
            params.insert("count".into(), int(rest.first().map_or("3", |s| s))?);
        }
        "query" => {
            let mut limit = json!(1000);
            let mut items = Vec::new();
            let mut it = rest.into_iter();
            while let Some(a) = it.next() {
                if a == "-l" || a == "--limit" {
                    // Negative: no limit, as in ElectrumX.
                    let v = it.next().ok_or("-l needs a number")?;
                    limit = json!(v
                        .parse::<i64>()
                        .map_err(|_| format!("expected a number: {v}"))?);
                } else {
                    items.push(a);
                }
            }
            if items.is_empty() {
                return Err("query needs items".into());
            }
            params.insert("items".into(), json!(items));
            params.insert("limit".into(), limit);
        }
        other => return Err(format!("unknown command {other}")),
    }
    Ok(Args {
        host,
        port,
        timeout,
        method,
        params,
    })
}

fn request(args: &Args) -> Result<Value, String> {
    let stream = TcpStream::connect((args.host.as_str(), args.port)).map_err(|_| {
        format!(
            "cannot connect - is Sextant catching up, not running, or is {} the wrong RPC port?",
            args.port
        )
    })?;
    let _ = stream.set_read_timeout(Some(args.timeout));
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let msg = json!({"jsonrpc": "2.0", "id": 0, "method": args.method, "params": args.params});
    writeln!(w, "{msg}").map_err(|e| format!("error making request: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("error making request: {e}"))?;
    let reply: Value = serde_json::from_str(&line)
        .map_err(|_| "error making request: the server closed the connection".to_string())?;
    if let Some(e) = reply.get("error") {
        return Err(format!(
            "error making request: {} (code {})",
            e["message"].as_str().unwrap_or("?"),
            e["code"]
        ));
    }
    Ok(reply.get("result").cloned().unwrap_or(Value::Null))
}

/// Pretty JSON with a 4-space indent, as `electrumx_rpc` prints.
fn pretty(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).expect("JSON values serialize");
    String::from_utf8(out).expect("JSON is UTF-8")
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("sextant-rpc: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match request(&args) {
        Ok(v) => {
            println!("{}", pretty(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}
