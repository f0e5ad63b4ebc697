//! `scale-daemon`: serves a chain made by `scale-chain` to index servers as litecoind would
//! (REST and JSON-RPC), until killed.
//!
//!     cargo run --release --example scale-daemon -- --dir "$(scale-chain path --txs 10M)" --port 19443
//!
//! Prints one JSON line when listening: `{"url":…,"port":…,"height":…,"held_back":…}`.
//! `generatetoaddress N <any address>` reveals the next N held-back fresh blocks.

#[path = "../mod.rs"]
mod scale;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!(
        "usage: scale-daemon --dir CHAIN_DIR [--port P (0: any)] [--bind 127.0.0.1] \
         [--user bench] [--pass bench]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts: HashMap<String, String> = HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(k) = k.strip_prefix("--") else {
            usage()
        };
        let Some(v) = it.next() else { usage() };
        opts.insert(k.to_string(), v.clone());
    }
    let get = |k: &str, d: &str| opts.get(k).cloned().unwrap_or_else(|| d.to_string());
    let Some(dir) = opts.get("dir").map(PathBuf::from) else {
        usage()
    };
    let bind: SocketAddr =
        match format!("{}:{}", get("bind", "127.0.0.1"), get("port", "0")).parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("scale-daemon: --bind/--port: {e}");
                std::process::exit(2)
            }
        };
    let d =
        match scale::serve::Daemon::start(&dir, bind, &get("user", "bench"), &get("pass", "bench"))
        {
            Ok(d) => d,
            Err(e) => {
                eprintln!("scale-daemon: {e:#}");
                std::process::exit(1)
            }
        };
    let line = serde_json::json!({
        "url": d.url(), "port": d.addr().port(), "height": d.chain().tip(),
        "held_back": d.chain().held_back(),
    });
    println!("{line}");
    let _ = std::io::stdout().flush();
    d.wait();
}
