//! Peer discovery between real servers on one `litecoind -regtest` chain: three Sextant
//! instances and one ElectrumX 2.0.0, each on its own loopback address (127.0.0.2 – .5) so
//! that every server has its own host and the `server.add_peer` address check can pass.
//! Every Sextant is seeded (through a `COINS_DIR` coin file's regtest `peers`) with the
//! others and the ElectrumX; the first also with a stand-in server on another chain and an
//! address where nothing listens.
//!
//! Loopback addresses are private, so the Sextants run with `PEER_ALLOW_PRIVATE=1`, and with
//! `PEER_TIME_SCALE=0.01` so the backoff takes seconds instead of an hour. ElectrumX has no
//! such switch: it never takes a private address as a peer, so it lists none of them; it is
//! only checked as a peer the Sextants verify and list. A second test reaches an `.onion` peer
//! through a SOCKS5 proxy (a stand-in for Tor that maps the name to a local Sextant).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(180);

struct Addr {
    ip: &'static str,
    port: u16,
    /// An ssl:// service too, with a self-signed certificate (cert, key).
    ssl: Option<(u16, PathBuf, PathBuf)>,
}

impl Addr {
    fn new(ip: &'static str) -> Addr {
        Addr {
            ip,
            port: free_port(),
            ssl: None,
        }
    }

    fn with_ssl(ip: &'static str, dir: &Path) -> Addr {
        let (cert, key) = (dir.join(format!("{ip}.pem")), dir.join(format!("{ip}.key")));
        make_cert(dir, &cert, &key, ip);
        Addr {
            ssl: Some((free_port(), cert, key)),
            ..Addr::new(ip)
        }
    }

    fn real_name(&self) -> String {
        match &self.ssl {
            Some((port, ..)) => format!("{} s{port} t{}", self.ip, self.port),
            None => format!("{} t{}", self.ip, self.port),
        }
    }
}

/// A `COINS_DIR` whose Litecoin regtest net lists `seeds` as its peers.
fn coins_dir(dir: &Path, seeds: &[String]) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("coins/litecoin.toml"))
            .unwrap();
    let regtest = text.find("[nets.regtest]").expect("a regtest net");
    assert!(
        !text[regtest + 1..].contains("\n["),
        "the regtest net must be the file's last section"
    );
    let list: Vec<String> = seeds.iter().map(|s| format!("{s:?}")).collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("litecoin.toml"),
        format!("{text}\npeers = [{}]\n", list.join(", ")),
    )
    .unwrap();
    dir.to_path_buf()
}

fn server_env(d: &Litecoind, db: &Path, a: &Addr) -> Vec<(&'static str, String)> {
    let mut service = format!("tcp://{}:{}", a.ip, a.port);
    let mut tls = Vec::new();
    if let Some((port, cert, key)) = &a.ssl {
        service.push_str(&format!(",ssl://{}:{port}", a.ip));
        tls.push(("SSL_CERTFILE", cert.display().to_string()));
        tls.push(("SSL_KEYFILE", key.display().to_string()));
    }
    let mut env = vec![
        ("COIN", "Litecoin".into()),
        ("NET", "regtest".into()),
        ("DB_DIRECTORY", db.display().to_string()),
        ("DAEMON_URL", format!("{}/", d.rpc_url())),
        ("SERVICES", service.clone()),
        ("REPORT_SERVICES", service),
        ("DAEMON_POLL_INTERVAL_BLOCKS", "100".into()),
        ("DAEMON_POLL_INTERVAL_MEMPOOL", "100".into()),
        ("PEER_DISCOVERY", "on".into()),
    ];
    env.extend(tls);
    env
}

/// A Sextant named `name`, with its index in `dir/db`.
fn start_sextant(
    name: &'static str,
    db: &str,
    d: &Litecoind,
    dir: &Path,
    a: &Addr,
    seeds: &[String],
) -> Proc {
    let mut cmd = sextant_command();
    cmd.envs(server_env(d, &dir.join(db), a))
        .env(
            "COINS_DIR",
            coins_dir(&dir.join(format!("{name}-coins")), seeds),
        )
        .env("PEER_ALLOW_PRIVATE", "1")
        .env("PEER_TIME_SCALE", "0.01")
        .env("LOG_LEVEL", "info");
    Proc::spawn(name, cmd, dir.join(format!("{name}.log")))
}

fn start_electrumx(d: &Litecoind, dir: &Path, a: &Addr) -> Proc {
    let venv = electrumx_venv();
    let db = dir.join("electrumx-db");
    std::fs::create_dir_all(&db).unwrap();
    let mut cmd = base_command(&venv.join("bin/electrumx_server"));
    // ElectrumX refuses a private REPORT_SERVICES address unless it does not announce itself.
    cmd.envs(server_env(d, &db, a))
        .env("PEER_ANNOUNCE", "")
        .env("DB_ENGINE", "leveldb")
        .env("ALLOW_ROOT", "1");
    Proc::spawn("ElectrumX", cmd, dir.join("electrumx.log"))
}

/// One request on a fresh session (after `server.version`); `None` while the server is not up.
fn ask(a: &Addr, method: &str, params: Value) -> Option<Value> {
    let s = TcpStream::connect((a.ip, a.port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut w = s.try_clone().ok()?;
    let mut r = BufReader::new(s);
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "server.version", "params": ["test", "1.4"]}),
        json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params}),
    ];
    for req in requests {
        writeln!(w, "{req}").ok()?;
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&line).ok()?;
        if v["id"] == 2 {
            return Some(v["result"].clone());
        }
    }
}

/// The hosts a server lists in `server.peers.subscribe`.
fn listed_hosts(a: &Addr) -> Option<Vec<String>> {
    let list = ask(a, "server.peers.subscribe", json!([]))?;
    let mut hosts: Vec<String> = list
        .as_array()?
        .iter()
        .filter_map(|p| p[1].as_str().map(String::from))
        .collect();
    hosts.sort();
    Some(hosts)
}

/// A server on another chain: answers `server.version` and a `server.features` with another
/// genesis hash, and records the methods it was asked.
fn other_chain_server(a: &Addr) -> Arc<Mutex<Vec<String>>> {
    let listener = TcpListener::bind((a.ip, a.port)).unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let features = json!({
        "hosts": {a.ip: {"tcp_port": a.port, "ssl_port": null}},
        "genesis_hash": "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
        "hash_function": "sha256",
        "server_version": "Other 1.0",
        "protocol_min": "1.4",
        "protocol_max": "1.4.2",
        "pruning": null,
    });
    let log = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (log, features) = (log.clone(), features.clone());
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    let Ok(req) = serde_json::from_str::<Value>(&line) else {
                        return;
                    };
                    let method = req["method"].as_str().unwrap_or("").to_string();
                    let result = match method.as_str() {
                        "server.version" => json!(["Other 1.0", "1.4.2"]),
                        "server.features" => features.clone(),
                        _ => Value::Null,
                    };
                    log.lock().unwrap().push(method);
                    let reply = json!({"jsonrpc": "2.0", "id": req["id"], "result": result});
                    if writeln!(w, "{reply}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    asked
}

fn wait_for_log(p: &mut Proc, text: &str) {
    wait_until(DEADLINE, &format!("{} to log {text:?}", p.name), || {
        p.assert_running();
        std::fs::read_to_string(&p.log)
            .unwrap_or_default()
            .contains(text)
            .then_some(())
    });
}

#[test]
fn servers_find_verify_and_list_each_other() {
    let d = Litecoind::start();
    d.mine(30);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let sx = [
        Addr::new("127.0.0.2"),
        // Verified over TLS first, its certificate self-signed.
        Addr::with_ssl("127.0.0.3", dir),
        Addr::new("127.0.0.4"),
    ];
    let ex = Addr::new("127.0.0.5");
    let other = Addr::new("127.0.0.6");
    let dead = Addr::new("127.0.0.7");
    let asked = other_chain_server(&other);

    let mut electrumx = start_electrumx(&d, dir, &ex);
    let names = ["sextant-a", "sextant-b", "sextant-c"];
    let mut servers: Vec<Proc> = (0..3)
        .map(|i| {
            let mut seeds: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| sx[j].real_name())
                .collect();
            seeds.push(ex.real_name());
            if i == 0 {
                seeds.push(other.real_name());
                seeds.push(dead.real_name());
            }
            start_sextant(names[i], names[i], &d, dir, &sx[i], &seeds)
        })
        .collect();

    // Each Sextant lists itself, the two others and the ElectrumX — and nothing else.
    let mut everyone: Vec<String> = sx.iter().map(|a| a.ip.to_string()).collect();
    everyone.push(ex.ip.to_string());
    for (i, a) in sx.iter().enumerate() {
        wait_until(
            DEADLINE,
            &format!("{} to list every peer", names[i]),
            || {
                servers[i].assert_running();
                electrumx.assert_running();
                listed_hosts(a).filter(|h| *h == everyone)
            },
        );
    }
    // ElectrumX's form, ports explicit; our own protocol_max; both transports of the second.
    let list = ask(&sx[0], "server.peers.subscribe", json!([])).unwrap();
    let b = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[1] == sx[1].ip)
        .unwrap();
    assert_eq!(
        b,
        &json!([
            sx[1].ip,
            sx[1].ip,
            [
                "v1.7.0",
                format!("s{}", sx[1].ssl.as_ref().unwrap().0),
                format!("t{}", sx[1].port)
            ]
        ])
    );
    wait_for_log(
        &mut servers[0],
        &format!("peer {} verified over Ssl", sx[1].ip),
    );

    // The server on another chain was asked for its features and judged by them.
    wait_for_log(
        &mut servers[0],
        "peer 127.0.0.6 marked bad: incorrect genesis hash",
    );
    assert!(asked.lock().unwrap().iter().any(|m| m == "server.features"));
    // Both it and the dead address are forgotten after three failed tries.
    wait_for_log(&mut servers[0], "forgetting bad peer 127.0.0.6");
    wait_for_log(&mut servers[0], "forgetting unreachable peer 127.0.0.7");
    assert!(!listed_hosts(&sx[0])
        .unwrap()
        .contains(&other.ip.to_string()));

    // ElectrumX takes no private address as a peer: it lists nobody, and says so when asked.
    assert_eq!(
        ask(&ex, "server.peers.subscribe", json!([])),
        Some(json!([]))
    );

    // The peer table survives a restart: without seeds, the first Sextant lists again the
    // ElectrumX, which announces to nobody, so it can only come from the stored table.
    let stopped = servers.remove(0);
    let pid = stopped.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    drop(stopped);
    let mut restarted = start_sextant("sextant-a-again", names[0], &d, dir, &sx[0], &[]);
    wait_until(
        DEADLINE,
        "the restarted Sextant to list the ElectrumX",
        || {
            restarted.assert_running();
            listed_hosts(&sx[0]).filter(|h| h.contains(&ex.ip.to_string()))
        },
    );
    wait_for_log(&mut restarted, "from the store");
}

/// A SOCKS5 proxy (no authentication, CONNECT by name) that sends every connection to
/// `target` and records the host names asked for, like Tor mapping an onion name to a service.
fn socks_proxy(target: (&'static str, u16)) -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::Read;
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = names.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut c = client;
                let mut head = [0u8; 2];
                c.read_exact(&mut head)?;
                let mut methods = vec![0u8; usize::from(head[1])];
                c.read_exact(&mut methods)?;
                c.write_all(&[5, 0])?;
                let mut req = [0u8; 5];
                c.read_exact(&mut req)?;
                assert_eq!(&req[..4], &[5, 1, 0, 3], "CONNECT by host name");
                let mut name = vec![0u8; usize::from(req[4]) + 2];
                c.read_exact(&mut name)?;
                name.truncate(name.len() - 2);
                seen.lock().unwrap().push(String::from_utf8(name).unwrap());
                let upstream = TcpStream::connect(target)?;
                c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
                let (mut c2, mut u2) = (c.try_clone()?, upstream.try_clone()?);
                std::thread::spawn(move || std::io::copy(&mut u2, &mut c2));
                let mut u = upstream;
                std::io::copy(&mut c, &mut u)?;
                Ok(())
            });
        }
    });
    (port, names)
}

/// An onion peer is reached through TOR_PROXY_HOST/PORT and listed; a server without a proxy
/// keeps it in its table but never contacts it (it outlives a dead peer's three tries).
#[test]
fn onion_peers_go_through_the_proxy_or_wait_for_one() {
    const ONION: &str = "sextantpeerxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion";
    let d = Litecoind::start();
    d.mine(12);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (a, b, c) = (
        Addr::new("127.0.0.2"),
        Addr::new("127.0.0.3"),
        Addr::new("127.0.0.4"),
    );
    let dead = Addr::new("127.0.0.7");
    let onion_seed = format!("{ONION} t{}", b.port);

    // The onion service: a Sextant whose features list the onion name too.
    let mut onion_server = {
        let mut cmd = sextant_command();
        cmd.envs(server_env(&d, &dir.join("onion"), &b))
            .env(
                "REPORT_SERVICES",
                format!("tcp://{}:{},tcp://{ONION}:{}", b.ip, b.port, b.port),
            )
            .env("PEER_ALLOW_PRIVATE", "1");
        Proc::spawn("onion", cmd, dir.join("onion.log"))
    };
    let (proxy_port, asked) = socks_proxy((b.ip, b.port));

    let mut with_proxy = {
        let mut cmd = sextant_command();
        cmd.envs(server_env(&d, &dir.join("with-proxy"), &a))
            .env(
                "COINS_DIR",
                coins_dir(
                    &dir.join("with-proxy-coins"),
                    std::slice::from_ref(&onion_seed),
                ),
            )
            .env("TOR_PROXY_HOST", "127.0.0.1")
            .env("TOR_PROXY_PORT", proxy_port.to_string())
            .env("PEER_ALLOW_PRIVATE", "1")
            .env("PEER_TIME_SCALE", "0.01");
        Proc::spawn("with-proxy", cmd, dir.join("with-proxy.log"))
    };
    let metrics_port = free_port();
    let mut without = {
        let mut cmd = sextant_command();
        cmd.envs(server_env(&d, &dir.join("without"), &c))
            .env(
                "COINS_DIR",
                coins_dir(
                    &dir.join("without-coins"),
                    &[onion_seed.clone(), dead.real_name()],
                ),
            )
            .env("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("PEER_ALLOW_PRIVATE", "1")
            .env("PEER_TIME_SCALE", "0.001");
        Proc::spawn("without-proxy", cmd, dir.join("without.log"))
    };

    wait_until(DEADLINE, "the onion peer listed through the proxy", || {
        onion_server.assert_running();
        with_proxy.assert_running();
        let list = ask(&a, "server.peers.subscribe", json!([]))?;
        let listed = list
            .as_array()?
            .iter()
            .any(|p| *p == json!([ONION, ONION, ["v1.7.0", format!("t{}", b.port)]]));
        listed.then_some(())
    });
    assert!(asked.lock().unwrap().iter().any(|n| n == ONION));

    // Without a proxy: the dead address is tried three times and forgotten meanwhile, the
    // onion peer is still there, never tried.
    wait_for_log(&mut without, "forgetting unreachable peer 127.0.0.7");
    let log = std::fs::read_to_string(&without.log).unwrap();
    assert!(log.contains(&format!("accepted new peer {ONION}")));
    assert!(
        !log.contains(&format!("[{ONION}:")),
        "contacted without a proxy"
    );
    let metrics = {
        let mut s = TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        text
    };
    assert!(
        metrics.contains("sextant_peers{status=\"never\"} 1"),
        "{metrics}"
    );
    assert!(!listed_hosts(&c).unwrap().contains(&ONION.to_string()));
}
