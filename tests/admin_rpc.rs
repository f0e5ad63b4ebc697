//! The admin RPC (`rpc://`) of the `sextant` binary against a real `litecoind -regtest`, through
//! `sextant-rpc`: it answers from start-up, during the initial sync (held at a [`DaemonGate`]
//! so the sync is in progress for as long as the test looks), `stop` ends a sync cleanly and a
//! restart goes on from the stored height; `daemon_url` switches daemons at run time; `query`
//! prints ElectrumX's lines (compared with ElectrumX 2.0's own on the same chain); `reorg` undoes
//! blocks and syncs them again to the same index.

mod common;

use std::path::Path;
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
    let mut sx = Proc::sextant(&d, dir.path(), &env);
    sx.wait_listening(port);
    assert_eq!(tip_height(port), 20);
    assert_eq!(rpc_json(rpc_port, &["stop"]), json!("stopping"));
    assert!(sx.wait_exit(Duration::from_secs(60)).success());

    // The daemon moves on; the second run's block downloads wait at the gate.
    d.mine(30);
    let gate = DaemonGate::start(&d);
    let gated = [env.clone(), vec![("DAEMON_URL", gate.url())]].concat();
    let mut sx = Proc::sextant(&d, dir.path(), &gated);
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
    let mut sx = Proc::sextant(&d, dir.path(), &gated);
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
    d.mine(2);
    wait_db_height(rpc_port, 52);
    // Counted once calls begun before the switch are long over.
    let through_gate = gate.passed();
    d.mine(1);
    wait_db_height(rpc_port, 53);
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
    wait_db_height(rpc_port, 54);
    assert!(gate.passed() > through_gate);
}

/// The `query` lines of `sextant-rpc` (or of ElectrumX, which speaks the same admin protocol),
/// with the coin's ticker dropped from the balance: ElectrumX calls regtest coins XLT, the coin
/// file LTC.
fn query(rpc_port: u16, args: &[&str]) -> Vec<String> {
    let args = [&["query"], args].concat();
    let lines = rpc_json(rpc_port, &args);
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let l = l.as_str().unwrap();
            match l.strip_prefix("Balance: ") {
                Some(b) => format!("Balance: {}", b.rsplit_once(' ').unwrap().0),
                None => l.to_string(),
            }
        })
        .collect()
}

fn dump(db: &Path) -> Vec<sextant::store::DumpRow> {
    let coin = sextant::coin::CoinRegistry::embedded()
        .unwrap()
        .lookup("Litecoin", "regtest")
        .unwrap();
    let store = sextant::store::Store::open(db, &coin, 16, sextant::store::Mode::Follow).unwrap();
    store.dump().unwrap()
}

#[test]
fn query_answers_like_electrumx_and_reorg_gives_back_the_same_index() {
    let venv = electrumx_venv();
    let d = Litecoind::start();
    d.ensure_funds(20 * COIN);
    let legacy = d.new_address(AddrType::Legacy);
    let wrapped = d.new_address(AddrType::P2shSegwit);
    let native = d.new_address(AddrType::Bech32);
    d.mine_to(&legacy, 2);
    for (i, a) in [&legacy, &wrapped, &native, &legacy]
        .into_iter()
        .enumerate()
    {
        d.send(a, (i as u64 + 1) * COIN / 4);
        d.send(a, COIN / 8);
        d.mine(1);
    }
    let tip = d.height();

    let dir = tempfile::tempdir().unwrap();
    let (ex_port, ex_rpc, sx_port, sx_rpc) = (free_port(), free_port(), free_port(), free_port());
    let env = |port: u16, rpc_port: u16| {
        vec![
            ("COIN", "Litecoin".to_string()),
            ("NET", "regtest".into()),
            ("DAEMON_URL", format!("{}/", d.rpc_url())),
            services(port, rpc_port),
            ("DAEMON_POLL_INTERVAL_BLOCKS", "100".into()),
            ("DAEMON_POLL_INTERVAL_MEMPOOL", "100".into()),
            ("PEER_DISCOVERY", "off".into()),
            ("LOG_LEVEL", "info".into()),
        ]
    };
    let mut ex = start_electrumx(&venv, &env(ex_port, ex_rpc), dir.path());
    let mut sx = Proc::sextant(&d, dir.path(), &env(sx_port, sx_rpc));
    let probe = scripthash(&d.script_of(&legacy));
    ex.wait_listening(ex_port);
    sx.wait_listening(sx_port);
    wait_caught_up(ex_port, tip, &probe, &json!([]), "ElectrumX");
    wait_caught_up(sx_port, tip, &probe, &json!([]), "Sextant");

    // query: addresses (Base58 only, as in ElectrumX), hex scripts (a script hash is read as a
    // script too), junk; with and without a limit.
    let items = [
        legacy.clone(),
        wrapped.clone(),
        native.clone(),
        d.script_of(&native),
        d.script_of(&wrapped),
        probe.clone(),
        "not an address".into(),
    ];
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    let before = query(sx_rpc, &items);
    assert_eq!(before, query(ex_rpc, &items));
    assert!(
        before.iter().any(|l| l.starts_with("UTXO #3: txid")),
        "{before:#?}"
    );
    assert!(
        before.contains(&format!("Address: {legacy}")),
        "{before:#?}"
    );
    assert!(!before
        .iter()
        .any(|l| l.contains(&native) || l.contains("not an")));
    for limit in ["2", "1", "0", "-1"] {
        let limited = ["-l", limit, &legacy, &wrapped];
        assert_eq!(
            query(sx_rpc, &limited),
            query(ex_rpc, &limited),
            "-l {limit}"
        );
    }
    // Other replies that are plain text agree too.
    for cmd in [
        &["daemon_url"][..],
        &["log", "new"],
        &["log", "new"],
        &["add_peer", ""],
    ] {
        assert_eq!(rpc_json(sx_rpc, cmd), rpc_json(ex_rpc, cmd), "{cmd:?}");
    }
    let (exi, sxi) = (
        rpc_json(ex_rpc, &["getinfo"]),
        rpc_json(sx_rpc, &["getinfo"]),
    );
    for key in exi.as_object().unwrap().keys().filter(|k| *k != "caches") {
        assert!(sxi.get(key).is_some(), "getinfo lacks {key:?}: {sxi}");
    }
    drop(ex);

    // reorg: the index before, a reorg of 3 blocks, the index after.
    let db = dir.path().join("db");
    let stop = |mut sx: Proc| {
        assert_eq!(rpc_json(sx_rpc, &["stop"]), json!("stopping"));
        assert!(sx.wait_exit(Duration::from_secs(60)).success());
    };
    stop(sx);
    let index = dump(&db);
    let mut sx = Proc::sextant(&d, dir.path(), &env(sx_port, sx_rpc));
    sx.wait_listening(sx_port);
    let mut c = Client::connect(sx_port);
    c.result("server.version", json!(["test", "1.4"]));
    assert_eq!(
        c.result("blockchain.headers.subscribe", json!([]))["height"],
        tip
    );
    let (out, ok) = sextant_rpc(sx_rpc, &["reorg", "100000"]);
    assert!(!ok && out.contains("REORG_LIMIT"), "{out}");
    assert_eq!(
        rpc_json(sx_rpc, &["reorg", "3"]),
        json!("scheduled a reorg of 3 blocks")
    );
    // Subscribers hear of the tip again: at the fork first, or only once back at the top.
    loop {
        let note = c.notification("blockchain.headers.subscribe");
        let height = note[0]["height"].as_u64().unwrap();
        if height == tip {
            break;
        }
        assert!((tip - 3..tip).contains(&height), "{note}");
    }
    wait_until(Duration::from_secs(60), "the blocks synced again", || {
        sx.log()
            .contains(&format!("indexed 3 blocks to height {tip}"))
            .then_some(())
    });
    assert_eq!(query(sx_rpc, &items), before);
    stop(sx);
    assert!(dump(&db) == index, "the index differs after the reorg");
}
