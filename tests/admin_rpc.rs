//! The admin RPC (`rpc://`) of the `sextant` binary against a real `litecoind -regtest`, through
//! `sextant-rpc`: it answers from start-up, during the initial sync (held at a [`DaemonGate`]
//! so the sync is in progress for as long as the test looks), `stop` ends a sync cleanly and a
//! restart goes on from the stored height; `daemon_url` switches daemons at run time.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// A client service and the admin RPC, both on 127.0.0.1.
fn services(port: u16, rpc_port: u16) -> (&'static str, String) {
    (
        "SERVICES",
        format!("tcp://127.0.0.1:{port},rpc://127.0.0.1:{rpc_port}"),
    )
}

fn tip_height(port: u16) -> u64 {
    let mut c = Client::connect(port);
    c.result("server.version", json!(["test", "1.4"]));
    c.result("blockchain.headers.subscribe", json!([]))["height"]
        .as_u64()
        .unwrap()
}

/// Waits until the admin RPC's `getinfo` reports `db height` = `height`.
fn wait_db_height(rpc_port: u16, height: u64) {
    wait_until(
        Duration::from_secs(60),
        "the index to reach the height",
        || (rpc_json(rpc_port, &["getinfo"])["db height"] == json!(height)).then_some(()),
    );
}

#[test]
fn admin_rpc_answers_during_the_initial_sync_and_stop_ends_it_cleanly() {
    let d = Litecoind::start();
    d.mine(20);
    let dir = tempfile::tempdir().unwrap();
    let (port, rpc_port) = (free_port(), free_port());
    let env = vec![services(port, rpc_port)];

    // A first run indexes 20 blocks and stops.
    let mut sx = Sextant::start(&d, dir.path(), &env);
    sx.wait_listening(port);
    assert_eq!(tip_height(port), 20);
    assert_eq!(rpc_json(rpc_port, &["stop"]), json!("stopping"));
    assert!(sx.wait_exit(Duration::from_secs(60)).success());

    // The daemon moves on; the second run's block downloads wait at the gate.
    d.mine(30);
    let gate = DaemonGate::start(&d);
    let gated = [env.clone(), vec![("DAEMON_URL", gate.url())]].concat();
    let mut sx = Sextant::start(&d, dir.path(), &gated);
    wait_until(
        Duration::from_secs(60),
        "a block download at the gate",
        || (gate.held() > 0).then_some(()),
    );
    let info = rpc_json(rpc_port, &["getinfo"]);
    assert!(!sx.log().contains("caught up"), "{}", sx.log());
    assert_eq!(info["db height"], 20, "{info}");
    assert_eq!(info["daemon height"], 50, "{info}");
    assert_eq!(info["coin"], "LitecoinRegtest");
    assert_eq!(info["daemon"], format!("127.0.0.1:{}/", gate.port()));
    assert_eq!(info["groups"], 0);
    assert_eq!(info["sessions"]["count"], 0);
    assert_eq!(info["request total"], 0);
    assert_eq!(info["pid"], sx.child.id());
    assert_eq!(rpc_json(rpc_port, &["sessions"]), json!([]));
    assert_eq!(rpc_json(rpc_port, &["groups"]), json!([]));
    assert_eq!(
        rpc_json(rpc_port, &["disconnect", "all"]),
        json!(["disconnecting all sessions"])
    );
    let (out, ok) = sextant_rpc(rpc_port, &["reorg", "2"]);
    assert!(
        !ok && out.contains("still catching up with daemon"),
        "{out}"
    );
    // Clients are not served before the index has caught up.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // stop: the sync ends at a batch boundary, the index is flushed, the exit is clean.
    assert_eq!(rpc_json(rpc_port, &["stop"]), json!("stopping"));
    let status = sx.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}:\n{}", sx.log());
    assert!(sx.log().contains("flushing the index"), "{}", sx.log());
    assert!(!sx.log().contains("caught up"), "{}", sx.log());

    // A restart goes on from the stored height to the daemon's tip.
    gate.open();
    let mut sx = Sextant::start(&d, dir.path(), &gated);
    sx.wait_listening(port);
    assert!(sx.log().contains("index tip: height 20"), "{}", sx.log());
    assert_eq!(tip_height(port), 50);
    let info = rpc_json(rpc_port, &["getinfo"]);
    assert_eq!(
        (info["db height"].clone(), info["daemon height"].clone()),
        (json!(50), json!(50))
    );

    // daemon_url: straight to litecoind, away from the gate; the index keeps following.
    let direct = format!("127.0.0.1:{}/", d.rpc_port());
    assert_eq!(
        rpc_json(rpc_port, &["daemon_url", &d.rpc_url()]),
        json!(format!("now using daemon at {direct}"))
    );
    assert_eq!(rpc_json(rpc_port, &["getinfo"])["daemon"], direct);
    let through_gate = gate.passed();
    d.mine(2);
    wait_db_height(rpc_port, 52);
    assert_eq!(gate.passed(), through_gate, "the gate is no longer asked");
    // A bad URL is refused and the daemon in use stays; no URL goes back to DAEMON_URL.
    let (out, ok) = sextant_rpc(rpc_port, &["daemon_url", "ftp://x"]);
    assert!(!ok && out.contains("an error occurred"), "{out}");
    assert_eq!(rpc_json(rpc_port, &["getinfo"])["daemon"], direct);
    assert_eq!(
        rpc_json(rpc_port, &["daemon_url"]),
        json!(format!("now using daemon at 127.0.0.1:{}/", gate.port()))
    );
    d.mine(1);
    wait_db_height(rpc_port, 53);
    assert!(gate.passed() > through_gate);
}
