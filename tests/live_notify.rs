//! New blocks reach subscribed wallets as soon as the daemon has them, not at the next poll:
//! against a real `litecoind -regtest`, with both poll intervals at 60 s, so that a
//! notification within the client's read timeout can only come from the live path
//! (`waitfornewblock` long-poll), including across a daemon restart.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Polls that never fire during a test: only the live path can explain a prompt notification.
fn slow_polls(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("SERVICES", format!("tcp://127.0.0.1:{port}")),
        ("DAEMON_POLL_INTERVAL_BLOCKS", "60000".to_string()),
        ("DAEMON_POLL_INTERVAL_MEMPOOL", "60000".to_string()),
    ]
}

/// A client subscribed to headers and to `payee`'s script; returns it with the script hash.
fn subscriber(port: u16, d: &Litecoind, payee: &str) -> (Client, String) {
    let payee_sh = scripthash(&d.script_of(payee));
    let mut c = Client::connect(port);
    c.result("server.version", json!(["live", "1.4"]));
    let h = c.result("blockchain.headers.subscribe", json!([]));
    assert_eq!(h["height"], d.height());
    assert_eq!(
        c.result("blockchain.scripthash.subscribe", json!([payee_sh])),
        Value::Null
    );
    (c, payee_sh)
}

/// Mines one block paying `payee` and checks both notifications arrive (each within the
/// client's read timeout, far below the 60 s polls).
fn mine_and_hear(d: &Litecoind, c: &mut Client, payee: &str, payee_sh: &str) {
    let hash = d.mine_to(payee, 1)[0].clone();
    let n = c.notification("blockchain.headers.subscribe");
    assert_eq!(n[0]["height"], d.height(), "{n}");
    let header = d.call("getblockheader", json!([hash, false]));
    assert_eq!(n[0]["hex"], header);
    let n = c.notification("blockchain.scripthash.subscribe");
    assert_eq!(n[0], payee_sh);
    let history = c.result("blockchain.scripthash.get_history", json!([payee_sh]));
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["height"],
        d.height()
    );
}

#[test]
fn a_mined_block_reaches_subscribers_before_any_poll() {
    let d = Litecoind::start();
    d.mine(3);
    let payee = d.new_address(AddrType::Bech32);
    let port = free_port();
    let server = InProcess::start(&d, &slow_polls(port));
    let (mut c, payee_sh) = subscriber(port, &d, &payee);
    for _ in 0..3 {
        mine_and_hear(&d, &mut c, &payee, &payee_sh);
    }
    server.stop();
}

/// Blocks mined back to back (two in one `generatetoaddress`) or a few milliseconds apart each
/// reach the subscriber at once. A block connecting between two long-polls, while the answer to
/// the first was on its way, used to wait for the second's 10 s hold (`waitfornewblock` waits
/// for a tip other than the one the daemon has when the call arrives): with both polls at 60 s,
/// the last block of each pair must be announced within a second of the daemon having it.
#[test]
fn blocks_mined_in_quick_succession_each_reach_subscribers_at_once() {
    let d = Litecoind::start();
    d.mine(3);
    let port = free_port();
    let server = InProcess::start(&d, &slow_polls(port));
    let mut c = Client::connect(port);
    c.result("server.version", json!(["live", "1.4"]));
    let mut height = c.result("blockchain.headers.subscribe", json!([]))["height"]
        .as_u64()
        .unwrap();
    // Long enough to see how late a block is (the old hold was 10 s), not just that it is.
    c.w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let delays_ms = [
        None,
        Some(0),
        Some(1),
        None,
        Some(2),
        Some(3),
        None,
        Some(4),
        Some(5),
        None,
        Some(7),
        Some(10),
        None,
        Some(15),
        Some(25),
        None,
        Some(50),
        Some(0),
        None,
        Some(1),
    ];
    let mut late = Vec::new();
    for delay in delays_ms {
        match delay {
            None => assert_eq!(d.mine(2).len(), 2),
            Some(ms) => {
                d.mine(1);
                std::thread::sleep(Duration::from_millis(ms));
                d.mine(1);
            }
        }
        let mined = std::time::Instant::now();
        height += 2;
        loop {
            let n = c.notification("blockchain.headers.subscribe");
            if n[0]["height"].as_u64() == Some(height) {
                break;
            }
        }
        late.push((delay, mined.elapsed().as_millis()));
    }
    let worst = late.iter().map(|(_, ms)| *ms).max().unwrap();
    assert!(
        worst < 1000,
        "ms from the second block to its notification, by delay between the two: {late:?}"
    );
    server.stop();
}

/// A block that connects after the follower read the daemon's tip and before the next
/// long-poll reaches the daemon is reported the moment that long-poll arrives. With
/// `waitfornewblock`, that call waited for the block after it: the block was seen at the call's
/// 10 s hold. The gate holds each long-poll 1 s on its way, as a slow link would, so the second
/// block surely falls in that gap.
#[test]
fn a_block_mined_before_the_next_long_poll_arrives_is_seen_when_it_does() {
    let d = Litecoind::start();
    d.mine(3);
    let gate = DaemonGate::start(&d);
    gate.open();
    let hold = Duration::from_secs(1);
    gate.delay_long_polls(hold);
    let port = free_port();
    let mut env = slow_polls(port);
    env.push(("DAEMON_URL", gate.url()));
    let server = InProcess::start(&d, &env);
    let mut c = Client::connect(port);
    c.result("server.version", json!(["live", "1.4"]));
    c.result("blockchain.headers.subscribe", json!([]));
    c.w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The first long-poll is at the daemon by now.
    std::thread::sleep(2 * hold);
    for round in 0..3 {
        // The long-poll's answer wakes the follower, which reads the tip at once; the next
        // long-poll is then on its way for `hold`.
        d.mine(1);
        let n = c.notification("blockchain.headers.subscribe");
        assert_eq!(n[0]["height"], d.height());
        d.mine(1);
        let mined = std::time::Instant::now();
        let n = c.notification("blockchain.headers.subscribe");
        assert_eq!(n[0]["height"], d.height());
        let late = mined.elapsed();
        assert!(
            late < hold + Duration::from_secs(2),
            "round {round}: the second block was announced {late:?} after it was mined"
        );
        // The long-poll that reported it is re-armed before the next round.
        std::thread::sleep(2 * hold);
    }
    server.stop();
}

#[test]
fn the_long_poll_survives_a_daemon_restart() {
    let d = Litecoind::start();
    d.mine(3);
    let payee = d.new_address(AddrType::Bech32);
    let port = free_port();
    let server = InProcess::start(&d, &slow_polls(port));
    let (mut c, payee_sh) = subscriber(port, &d, &payee);
    mine_and_hear(&d, &mut c, &payee, &payee_sh);

    // The daemon goes away under the held `waitfornewblock` and comes back.
    d.stop_and_restart();
    // The long-poll reconnects within its backoff (at most a few seconds) and a block connected
    // before it is back is reported by its first answer (at most its 10 s hold): give the
    // notifications 45 s, still well under the 60 s polls.
    c.w.set_read_timeout(Some(Duration::from_secs(45))).unwrap();
    mine_and_hear(&d, &mut c, &payee, &payee_sh);
    mine_and_hear(&d, &mut c, &payee, &payee_sh);
    server.stop();
}

/// A payment is seen in the mempool, then its block moves it to the confirmed history in one
/// step: the subscriber's statuses go straight from "unconfirmed" to "confirmed at height h",
/// never through a status without the payment (the incremental mempool update happens in the
/// block's commit; the follower's refresh after it only adds what is new).
#[test]
fn a_payment_and_its_confirmation_notify_without_a_flap() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let port = free_port();
    let mut env = slow_polls(port);
    env.retain(|(k, _)| *k != "DAEMON_POLL_INTERVAL_MEMPOOL");
    let server = InProcess::start(&d, &env);
    let (mut c, payee_sh) = subscriber(port, &d, &payee);
    let mut expected: Vec<HistoryItem> = Vec::new();
    for round in 0..3 {
        let txid = d.send(&payee, COIN / 4 + round);
        let mut pending = expected.clone();
        pending.push(HistoryItem {
            txid: txid.clone(),
            height: 0,
        });
        let n = c.notification("blockchain.scripthash.subscribe");
        assert_eq!(
            n[1].as_str(),
            status_of(&pending).as_deref(),
            "round {round}: unconfirmed"
        );
        d.mine(1);
        let mut confirmed = expected.clone();
        confirmed.push(HistoryItem {
            txid,
            height: d.height() as i64,
        });
        let n = c.notification("blockchain.scripthash.subscribe");
        assert_eq!(
            n[1].as_str(),
            status_of(&confirmed).as_deref(),
            "round {round}: confirmed"
        );
        let mempool = c.result("blockchain.scripthash.get_mempool", json!([payee_sh]));
        assert_eq!(mempool, json!([]));
        expected = confirmed;
    }
    server.stop();
}

/// A test publisher speaking the daemon's ZMQ wire format (`[topic, body, 4-byte LE
/// sequence]`) on a real ZMQ socket, named by `DAEMON_ZMQ_URL`: its `sequence` "A" message
/// brings a payment to the subscriber at once, with the mempool polled only every minute (and
/// the long-poll never looks at the mempool).
#[test]
fn a_zmq_mempool_message_brings_a_payment_at_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use zeromq::{PubSocket, Socket, SocketSend, ZmqMessage};

    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let (endpoint_tx, endpoint_rx) = std::sync::mpsc::channel();
    let (txid_tx, txid_rx) = std::sync::mpsc::channel::<String>();
    let done = Arc::new(AtomicBool::new(false));
    let publisher = std::thread::spawn({
        let done = done.clone();
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut socket = PubSocket::new();
                let endpoint = socket.bind("tcp://127.0.0.1:0").await.unwrap();
                endpoint_tx.send(endpoint.to_string()).unwrap();
                let txid = txid_rx.recv().unwrap();
                let mut hash = hex::decode(&txid).unwrap();
                hash.push(b'A');
                hash.extend_from_slice(&1u64.to_le_bytes());
                // The subscription may not have reached the socket yet: repeat, in sequence.
                let mut seq = 0u32;
                while !done.load(Ordering::Relaxed) {
                    let mut m = ZmqMessage::from("sequence".to_string());
                    m.push_back(hash.clone().into());
                    m.push_back(seq.to_le_bytes().to_vec().into());
                    socket.send(m).await.unwrap();
                    seq += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
    });
    let endpoint = endpoint_rx.recv().unwrap();
    let port = free_port();
    let mut env = slow_polls(port);
    env.push(("DAEMON_ZMQ_URL", endpoint));
    let server = InProcess::start(&d, &env);
    let (mut c, payee_sh) = subscriber(port, &d, &payee);
    let txid = d.send(&payee, COIN / 4);
    txid_tx.send(txid.clone()).unwrap();
    let n = c.notification("blockchain.scripthash.subscribe");
    let pending = [HistoryItem { txid, height: 0 }];
    assert_eq!(n[0], payee_sh);
    assert_eq!(n[1].as_str(), status_of(&pending).as_deref());
    done.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    server.stop();
}

/// How many times the server has called the daemon's `method` (its Prometheus count).
fn daemon_calls(metrics_port: u16, method: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let series = format!("daemon_rpc_duration_seconds_count{{method=\"{method}\"}}");
    text.lines()
        .find(|l| l.contains(&series))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}

/// A mempool polled every 50 ms costs the daemon a `getmempoolinfo` per poll, not a listing of
/// its mempool (`getrawmempool`, ~0.4 s of litecoind's time at 100,000 transactions): the
/// mempool is listed when the summary moved (so a payment still shows within a poll), at least
/// every 5 s, and not after a block that confirmed what the mirror held.
#[test]
fn a_fast_mempool_poll_lists_the_mempool_only_when_it_changed() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let (port, metrics_port) = (free_port(), free_port());
    let mut env = slow_polls(port);
    env.retain(|(k, _)| *k != "DAEMON_POLL_INTERVAL_MEMPOOL");
    env.push(("DAEMON_POLL_INTERVAL_MEMPOOL", "50".to_string()));
    env.push(("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}")));
    let server = InProcess::start(&d, &env);
    let (mut c, _) = subscriber(port, &d, &payee);

    let txid = d.send(&payee, COIN / 4);
    let sent = std::time::Instant::now();
    let n = c.notification("blockchain.scripthash.subscribe");
    let pending = [HistoryItem {
        txid: txid.clone(),
        height: 0,
    }];
    assert_eq!(n[1].as_str(), status_of(&pending).as_deref());
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );

    // Three idle seconds: some sixty polls, at most one listing (the 5 s safety net).
    std::thread::sleep(Duration::from_millis(500));
    let (lists, infos) = (
        daemon_calls(metrics_port, "getrawmempool"),
        daemon_calls(metrics_port, "getmempoolinfo"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let listed = daemon_calls(metrics_port, "getrawmempool") - lists;
    let looked = daemon_calls(metrics_port, "getmempoolinfo") - infos;
    assert!(looked >= 20, "{looked} getmempoolinfo calls in 3 s");
    assert!(listed <= 1, "{listed} listings in 3 idle seconds");

    // Blocks, the first confirming the payment: each refresh after them trusts the mirror
    // the commit updated.
    let lists = daemon_calls(metrics_port, "getrawmempool");
    for i in 0..4 {
        d.mine(1);
        let n = c.notification("blockchain.headers.subscribe");
        assert_eq!(n[0]["height"], d.height());
        if i == 0 {
            let confirmed = [HistoryItem {
                txid: txid.clone(),
                height: d.height() as i64,
            }];
            let n = c.notification("blockchain.scripthash.subscribe");
            assert_eq!(n[1].as_str(), status_of(&confirmed).as_deref());
        }
    }
    let listed = daemon_calls(metrics_port, "getrawmempool") - lists;
    assert!(listed <= 1, "{listed} listings for 4 blocks");
    let mempool = c.result(
        "blockchain.scripthash.get_mempool",
        json!([scripthash(&d.script_of(&payee))]),
    );
    assert_eq!(mempool, json!([]));
    server.stop();
}
