//! `deploy/compose.yaml`, many chains on one box: every service runs the image with a coin that
//! exists, on its own volume, ports and memory budget, configured only with documented variables;
//! its daemon's default URL uses the coin file's RPC port; README's table says what the file
//! does; and a service's environment (the LTC one, the chain that runs here) starts a working
//! server against a real `litecoind -regtest`. No compose implementation runs here
//! (scripts/image-test.sh runs the image itself), so the file is read with a reader for the
//! block-style YAML it is written in.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Map, Value};
use sextant::coin::CoinRegistry;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Block-style YAML (mappings, lists of scalars, `#` comments) as JSON values; anything else
/// (flow collections, anchors, multi-line scalars) is refused, so the file stays this simple.
fn yaml(text: &str) -> Value {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .map(|l| match l.find(" #") {
            Some(i) if !l[..i].contains('"') && !l[..i].contains('\'') => &l[..i],
            _ => l,
        })
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| (l.len() - l.trim_start().len(), l.trim_end()))
        .collect();
    let mut at = 0;
    let v = block(&lines, &mut at, 0);
    assert_eq!(at, lines.len(), "unparsed YAML from {:?}", lines.get(at));
    v
}

fn scalar(s: &str) -> Value {
    let s = s.trim();
    for c in ['{', '[', '&', '*', '|', '>'] {
        assert!(!s.starts_with(c), "unsupported YAML: {s}");
    }
    let unquoted = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(s);
    Value::String(unquoted.to_string())
}

fn block(lines: &[(usize, &str)], at: &mut usize, indent: usize) -> Value {
    let is_list = lines[*at].1.trim_start().starts_with("- ");
    let mut list = Vec::new();
    let mut map = Map::new();
    while *at < lines.len() && lines[*at].0 == indent {
        let body = lines[*at].1.trim_start();
        *at += 1;
        if is_list {
            let item = body.strip_prefix("- ").expect("a list item");
            list.push(scalar(item));
            continue;
        }
        let (key, rest) = body.split_once(':').expect("key: value");
        let value = if rest.trim().is_empty() {
            match lines.get(*at) {
                Some((i, _)) if *i > indent => block(lines, at, *i),
                _ => Value::Null,
            }
        } else {
            scalar(rest)
        };
        assert!(map.insert(key.to_string(), value).is_none(), "{key} twice");
    }
    if let Some((i, l)) = lines.get(*at) {
        assert!(*i < indent, "bad indentation: {l}");
    }
    if is_list {
        Value::Array(list)
    } else {
        Value::Object(map)
    }
}

fn compose() -> Value {
    yaml(&read("deploy/compose.yaml"))
}

fn services(c: &Value) -> &Map<String, Value> {
    c["services"].as_object().unwrap()
}

fn env(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// `${NAME:-default}` → (NAME, default).
fn variable(value: &str) -> Option<(&str, &str)> {
    let inner = value.strip_prefix("${")?.strip_suffix('}')?;
    inner.split_once(":-")
}

/// The port of `host:port` or of a URL's authority.
fn port_of(s: &str) -> u16 {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split('/').next().unwrap();
    authority.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn documented(var: &str) -> bool {
    read("README.md")
        .lines()
        .any(|l| l.starts_with('|') && l.contains(&format!("`{var}`")))
}

#[test]
fn the_yaml_reader_reads_blocks_and_refuses_the_rest() {
    let v = yaml("a:\n  b: 1 # note\n  c:\n    - x\n    - \"y z\"\nd: '$e'\n");
    assert_eq!(v["a"]["b"], "1");
    assert_eq!(v["a"]["c"], serde_json::json!(["x", "y z"]));
    assert_eq!(v["d"], "$e");
    for bad in [
        "a: {b: 1}\n",
        "a: &x 1\n",
        "a:\n  b: 1\n c: 2\n",
        "a: 1\na: 2\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| yaml(bad)).is_err(),
            "{bad:?} was read"
        );
    }
}

#[test]
fn each_service_is_one_chain_with_its_own_volume_ports_and_budget() {
    let c = compose();
    let coins = CoinRegistry::embedded().unwrap();
    let volumes: BTreeSet<&String> = c["volumes"].as_object().unwrap().keys().collect();
    let image_db = "/db"; // the Dockerfile's DB_DIRECTORY and VOLUME (tests/operator_files.rs)
    let mut ports = BTreeSet::new();
    let mut own_volumes = BTreeSet::new();
    let mut chains = BTreeSet::new();
    let services = services(&c);
    assert!(services.len() >= 4, "{:?}", services.keys());
    for (name, s) in services {
        assert_eq!(s["image"], "localhost/sextant", "{name}");
        assert_eq!(
            s["build"], "..",
            "{name}: built from the repository's Dockerfile"
        );
        assert_eq!(s["network_mode"], "host", "{name}");
        let grace = s["stop_grace_period"].as_str().unwrap();
        let minutes: u32 = grace.strip_suffix('m').unwrap().parse().unwrap();
        assert!(minutes >= 5, "{name}: SIGTERM needs time to flush");
        assert!(
            s["restart"].as_str().unwrap().starts_with("on-failure"),
            "{name}: a configuration error (exit 2) must not restart forever"
        );

        let e = env(s);
        for var in e.keys() {
            assert!(
                documented(var),
                "{name}: {var} is not in README.md's tables"
            );
        }
        assert!(!e.contains_key("DB_DIRECTORY"), "{name}: the image's /db");
        let db_mount = s["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .find(|v| v.ends_with(&format!(":{image_db}")))
            .unwrap_or_else(|| panic!("{name}: no volume on {image_db}"));
        let volume = db_mount.split(':').next().unwrap().to_string();
        assert!(
            volumes.contains(&volume),
            "{name}: {volume} is not declared"
        );
        assert!(own_volumes.insert(volume), "{name} shares its index volume");

        let coin = coins
            .lookup(&e["COIN"], &e["NET"])
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(
            chains.insert((coin.name.clone(), coin.net.clone())),
            "{name}: {} twice",
            coin.name
        );
        let (var, url) = variable(&e["DAEMON_URL"]).expect("DAEMON_URL from the .env file");
        assert!(var.ends_with("_DAEMON_URL"), "{name}: {var}");
        assert_eq!(
            port_of(url),
            coin.rpc_port,
            "{name}: the default daemon URL uses {}'s RPC port",
            coin.name
        );
        let cache: u32 = e["CACHE_MB"].parse().unwrap();
        assert!((100..=8000).contains(&cache), "{name}: CACHE_MB {cache}");

        let services_var: Vec<&str> = e["SERVICES"].split(',').collect();
        let kinds: Vec<&str> = services_var
            .iter()
            .map(|s| s.split_once("://").unwrap().0)
            .collect();
        assert_eq!(kinds, ["tcp", "ssl", "rpc"], "{name}");
        assert!(e.contains_key("SSL_CERTFILE") && e.contains_key("SSL_KEYFILE"));
        for s in services_var {
            if s.starts_with("rpc://") {
                assert!(
                    s.starts_with("rpc://127.0.0.1:"),
                    "{name}: {s} off loopback"
                );
            }
            assert!(ports.insert(port_of(s)), "{name}: port of {s} is taken");
        }
        let metrics = &e["METRICS_LISTEN"];
        assert!(metrics.starts_with("127.0.0.1:"), "{name}: {metrics}");
        assert!(ports.insert(port_of(metrics)), "{name}: {metrics} is taken");
    }
    assert_eq!(own_volumes.len(), volumes.len(), "unused volumes");
}

/// Every `${VAR:-default}` in the compose file is in the example `.env`, with the same value.
#[test]
fn the_example_env_file_sets_every_variable() {
    let example: BTreeMap<String, String> = read("deploy/chains.env.example")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let c = compose();
    let mut used = BTreeSet::new();
    for (name, s) in services(&c) {
        for value in env(s).values() {
            if let Some((var, default)) = variable(value) {
                assert_eq!(
                    example.get(var).map(String::as_str),
                    Some(default),
                    "{name}"
                );
                used.insert(var.to_string());
            } else {
                assert!(!value.contains('$'), "{name}: {value}");
            }
        }
    }
    assert_eq!(used, example.keys().cloned().collect());
}

/// README's table of the services says what the compose file does.
#[test]
fn the_readme_table_matches_the_services() {
    let readme = read("README.md");
    let section = readme
        .split("### Many chains on one box")
        .nth(1)
        .expect("README section")
        .split("\n### ")
        .next()
        .unwrap();
    let rows: BTreeMap<String, Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| service"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            (cells[0].clone(), cells)
        })
        .collect();
    let c = compose();
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        services(&c).keys().collect::<Vec<_>>()
    );
    let mut total_cache = 0;
    for (name, s) in services(&c) {
        let e = env(s);
        let row = &rows[name];
        let ports: Vec<u16> = e["SERVICES"].split(',').map(port_of).collect();
        assert_eq!(row[1], e["COIN"], "{name}");
        assert_eq!(row[2], format!("{} / {}", ports[0], ports[1]), "{name}");
        assert_eq!(row[3], format!("127.0.0.1:{}", ports[2]), "{name}");
        assert_eq!(row[4], e["METRICS_LISTEN"], "{name}");
        assert_eq!(row[5], e["CACHE_MB"], "{name}");
        total_cache += e["CACHE_MB"].parse::<u32>().unwrap();
    }
    let total = format!("{} MB of `CACHE_MB`", {
        let t = total_cache.to_string();
        if t.len() > 3 {
            format!("{},{}", &t[..t.len() - 3], &t[t.len() - 3..])
        } else {
            t
        }
    });
    assert!(section.contains(&total), "the RAM arithmetic uses {total}");
}

fn wait_serving(p: &mut Proc, port: u16) {
    wait_until(Duration::from_secs(120), "the server to answer", || {
        p.assert_running();
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        let mut w = s.try_clone().ok()?;
        writeln!(
            w,
            r#"{{"id":1,"method":"server.version","params":["t","1.4"]}}"#
        )
        .ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        line.contains("Sextant").then_some(())
    });
}

/// The LTC service's environment, with only what must differ here replaced (regtest, the test
/// daemon, free ports, a test certificate, a temporary index), starts a server that answers.
#[test]
fn the_ltc_service_environment_starts_a_server() {
    let c = compose();
    let ltc = services(&c)
        .values()
        .find(|s| s["environment"]["COIN"] == "Litecoin")
        .expect("an LTC service");
    let d = Litecoind::start();
    d.mine(3);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        dir.path().join("fullchain.pem"),
        dir.path().join("privkey.pem"),
    );
    make_cert(dir.path(), &cert, &key, "localhost");
    let (tcp, ssl, rpc, metrics) = (free_port(), free_port(), free_port(), free_port());
    let mut cmd = sextant_command();
    cmd.env("DB_DIRECTORY", dir.path().join("db"));
    for (k, v) in env(ltc) {
        let v = match k.as_str() {
            "NET" => "regtest".to_string(),
            "DAEMON_URL" => format!("{}/", d.rpc_url()),
            "SERVICES" => {
                format!("tcp://127.0.0.1:{tcp},ssl://127.0.0.1:{ssl},rpc://127.0.0.1:{rpc}")
            }
            "METRICS_LISTEN" => format!("127.0.0.1:{metrics}"),
            "SSL_CERTFILE" => cert.display().to_string(),
            "SSL_KEYFILE" => key.display().to_string(),
            _ => v,
        };
        cmd.env(k, v);
    }
    let mut p = Proc::spawn("sextant", cmd, dir.path().join("sextant.log"));
    wait_serving(&mut p, tcp);
    let (out, ok) = sextant_rpc(rpc, &["getinfo"]);
    assert!(ok, "{out}");
}
