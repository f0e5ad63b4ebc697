//! The operator's files: `Dockerfile`, `systemd/sextant.service` and
//! `systemd/sextant.env.example` must name the binary Cargo builds, configure it only with
//! variables it knows (each documented in README.md's table), and their environments must start
//! a working server against a real `litecoind -regtest`, the image's serving TLS with no
//! certificate supplied. No container engine or systemd runs here, so the files are read, and
//! what they would run is run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::*;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The Dockerfile's instructions with continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (op, rest) = l.trim().split_once(' ')?;
            Some((op.to_ascii_uppercase(), rest.trim().to_string()))
        })
        .collect()
}

/// The instructions of the last stage (the image that runs).
fn runtime_stage() -> Vec<(String, String)> {
    let all = dockerfile();
    let last_from = all.iter().rposition(|(op, _)| op == "FROM").unwrap();
    all[last_from..].to_vec()
}

fn image_env() -> Vec<(String, String)> {
    runtime_stage()
        .iter()
        .filter(|(op, _)| op == "ENV")
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("ENV key=value");
                    (k.to_string(), v.to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `KEY=value` lines of the env file, and the commented-out `#KEY=value` examples.
fn env_example() -> (Vec<(String, String)>, Vec<String>) {
    let mut set = Vec::new();
    let mut examples = Vec::new();
    for line in read("systemd/sextant.env.example").lines() {
        let commented = line.strip_prefix('#');
        let body = commented.unwrap_or(line);
        let Some((k, v)) = body.split_once('=') else {
            continue;
        };
        if !k.chars().all(|c| c.is_ascii_uppercase() || c == '_') || k.is_empty() {
            continue;
        }
        match commented {
            Some(_) => examples.push(k.to_string()),
            None => set.push((k.to_string(), v.to_string())),
        }
    }
    (set, examples)
}

fn documented(var: &str) -> bool {
    read("README.md")
        .lines()
        .any(|l| l.starts_with('|') && l.contains(&format!("`{var}`")))
}

#[test]
fn the_image_runs_the_binary_cargo_builds_as_a_user_with_a_db_volume() {
    let cargo = read("Cargo.toml");
    assert!(cargo.contains("[[bin]]\nname = \"sextant\""));
    let all = dockerfile();
    let build = all
        .iter()
        .find(|(op, r)| op == "RUN" && r.contains("cargo build"))
        .unwrap();
    assert!(
        build.1.contains("--release") && build.1.contains("--bin sextant"),
        "{build:?}"
    );
    let stage = runtime_stage();
    let get = |op: &str| -> Vec<&String> {
        stage
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r)
            .collect()
    };
    for bin in ["sextant", "sextant-rpc"] {
        assert!(
            get("COPY").iter().any(|c| c.starts_with("--from=")
                && c.contains(&format!("target/release/{bin} /usr/local/bin/{bin}"))),
            "the image carries {bin}"
        );
        assert!(build.1.contains(&format!("--bin {bin}")), "{build:?}");
    }
    assert_eq!(get("ENTRYPOINT"), vec!["[\"/usr/local/bin/sextant\"]"]);
    let user = get("USER");
    assert!(!user.is_empty() && user.iter().all(|u| *u != "root" && *u != "0"));
    let env = image_env();
    let db = env.iter().find(|(k, _)| k == "DB_DIRECTORY").unwrap();
    assert_eq!(get("VOLUME"), vec![&db.1]);
    let ports: Vec<&str> = get("EXPOSE").iter().flat_map(|e| e.split(' ')).collect();
    assert!(ports.contains(&"50001") && ports.contains(&"50002"));
}

#[test]
fn the_unit_runs_the_binary_as_its_user_with_the_env_file() {
    let unit = read("systemd/sextant.service");
    let value = |key: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing"))
            .to_string()
    };
    assert_eq!(value("ExecStart"), "/usr/local/bin/sextant");
    assert_eq!(value("User"), "sextant");
    assert_eq!(value("EnvironmentFile"), "/etc/sextant/sextant.env");
    assert!(unit.contains("systemd/sextant.env.example /etc/sextant/sextant.env"));
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("KillSignal"), "SIGTERM");
    assert!(value("TimeoutStopSec").parse::<u32>().unwrap() >= 300);
    assert!(value("LimitNOFILE").parse::<u32>().unwrap() >= 4096);
    for hardening in [
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    // DB_DIRECTORY must be the unit's writable state directory.
    let (set, _) = env_example();
    let db = set.iter().find(|(k, _)| k == "DB_DIRECTORY").unwrap();
    assert_eq!(db.1, format!("/var/lib/{}", value("StateDirectory")));
}

#[test]
fn every_variable_the_files_set_is_documented() {
    let (set, examples) = env_example();
    let names = image_env()
        .into_iter()
        .chain(set)
        .map(|(k, _)| k)
        .chain(examples);
    for var in names {
        assert!(documented(&var), "{var} is not in README.md's table");
    }
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

/// The image's and the env file's settings start a server; only what must differ here
/// (daemon, database and certificate paths, ports) is replaced.
#[test]
fn their_environments_start_a_server() {
    let d = Litecoind::start();
    d.mine(3);
    let dir = tempfile::tempdir().unwrap();
    let (cert, privkey) = (
        dir.path().join("fullchain.pem"),
        dir.path().join("privkey.pem"),
    );
    make_cert(dir.path(), &cert, &privkey, "localhost");
    let local = |key: &str, value: String, tcp: u16, ssl: u16| -> String {
        match key {
            "DB_DIRECTORY" => dir.path().join(format!("db-{tcp}")).display().to_string(),
            "DAEMON_URL" => format!("{}/", d.rpc_url()),
            "NET" => "regtest".into(),
            "SSL_CERTFILE" => cert.display().to_string(),
            "SSL_KEYFILE" => privkey.display().to_string(),
            "SERVICES" => format!("tcp://127.0.0.1:{tcp},ssl://127.0.0.1:{ssl}"),
            _ => value,
        }
    };
    let (set, _) = env_example();
    let image: Vec<(String, String)> = image_env()
        .into_iter()
        .chain([
            ("COIN".to_string(), "Litecoin".to_string()),
            ("DAEMON_URL".into(), String::new()),
            ("NET".into(), String::new()),
            ("SERVICES".into(), String::new()),
            // As README.md's `docker run` example passes them.
            ("SSL_CERTFILE".into(), String::new()),
            ("SSL_KEYFILE".into(), String::new()),
        ])
        .collect();
    for (name, env) in [("image", image), ("env-file", set)] {
        let (tcp, ssl) = (free_port(), free_port());
        let mut cmd = sextant_command();
        for (k, v) in env {
            let v = local(&k, v, tcp, ssl);
            cmd.env(k, v);
        }
        let mut p = Proc::spawn(name, cmd, dir.path().join(format!("{name}.log")));
        wait_serving(&mut p, tcp);
    }
}

/// `server.version` over TLS to `port`, trusting only the certificate in `pinned` (as a wallet
/// that pinned it) and checking that it names localhost.
fn pinned_tls_version(port: u16, pinned: &Path) -> String {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(pinned).unwrap();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    writeln!(
        tls,
        r#"{{"id":1,"method":"server.version","params":["t","1.4"]}}"#
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(tls).read_line(&mut line).unwrap();
    line
}

/// The image, as `docker run` with only the coin and daemon given: TLS answers with the
/// certificate it made in its volume, as the ElectrumX image's users expect.
#[test]
fn the_image_serves_tls_with_no_certificate_supplied() {
    let image = image_env();
    assert!(
        image
            .iter()
            .any(|(k, v)| k == "SSL_SELF_SIGNED" && !v.trim().is_empty()),
        "the image turns SSL_SELF_SIGNED on: {image:?}"
    );
    let d = Litecoind::start();
    d.mine(3);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let (tcp, ssl) = (free_port(), free_port());
    let mut cmd = sextant_command();
    for (k, v) in image {
        let v = match k.as_str() {
            "DB_DIRECTORY" => db.display().to_string(),
            _ => v,
        };
        cmd.env(k, v);
    }
    cmd.envs([
        ("COIN", "Litecoin".to_string()),
        ("NET", "regtest".into()),
        ("DAEMON_URL", format!("{}/", d.rpc_url())),
        // The image's default, tcp://:50001,ssl://:50002, on free loopback ports.
        (
            "SERVICES",
            format!("tcp://127.0.0.1:{tcp},ssl://127.0.0.1:{ssl}"),
        ),
    ]);
    let mut p = Proc::spawn("image", cmd, dir.path().join("image.log"));
    wait_serving(&mut p, tcp);
    let reply = pinned_tls_version(ssl, &db.join("sextant.crt"));
    assert!(reply.contains("\"Sextant "), "{reply}");
}
