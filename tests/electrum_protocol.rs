//! The Electrum protocol server against a real `litecoind -regtest`: a client on a TCP socket
//! sees ElectrumX's answers (version rules, errors, headers, proofs, histories, notifications).

mod common;

use common::*;
use serde_json::{json, Value};
use sextant::types::sha256d;
use std::time::Duration;

fn rev_hex(h: &str) -> [u8; 32] {
    let mut b: [u8; 32] = hex::decode(h).unwrap().try_into().unwrap();
    b.reverse();
    b
}

/// Folds a branch (display hex) from `leaf` at `index` up to the root (display hex).
fn fold(leaf: &str, branch: &Value, mut index: u64) -> String {
    let mut h = rev_hex(leaf);
    for b in branch.as_array().unwrap() {
        let s = rev_hex(b.as_str().unwrap());
        let mut buf = Vec::with_capacity(64);
        if index & 1 == 1 {
            buf.extend_from_slice(&s);
            buf.extend_from_slice(&h);
        } else {
            buf.extend_from_slice(&h);
            buf.extend_from_slice(&s);
        }
        h = sha256d(&buf);
        index >>= 1;
    }
    h.reverse();
    hex::encode(h)
}

#[test]
fn serves_electrum_like_electrumx() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let payee_sh = scripthash(&d.script_of(&payee));
    let confirmed_tx = d.send(&payee, 50_000_000);
    d.mine(1);
    let mempool_tx = d.send(&payee, 20_000_000);
    let tip = d.height();

    // The whole server, built in this process by the composition root.
    let port = free_port();
    let server = InProcess::start(
        &d,
        &[
            ("SERVICES", format!("tcp://127.0.0.1:{port}")),
            ("DONATION_ADDRESS", "donate-here".to_string()),
        ],
    );

    // server.version must come first.
    let mut c = Client::connect(port);
    c.send_line(r#"{"jsonrpc":"2.0","id":5,"method":"server.ping","params":[]}"#);
    assert_eq!(c.line().unwrap()["method"], "blockchain.relayfee");
    assert_eq!(c.line().unwrap()["method"], "blockchain.estimatefee");
    let e = c.line().unwrap();
    assert_eq!(
        e["error"],
        json!({"code": 1, "message": "use server.version to identify client"})
    );
    assert!(c.line().is_none(), "disconnected");

    // Unsupported versions are refused with a disconnect.
    let mut c = Client::connect(port);
    let (code, msg) = c.error("server.version", json!(["x", ["1.8", "2.0"]]));
    assert_eq!(
        (code, msg.as_str()),
        (1, "unsupported protocol version: ['1.8', '2.0']")
    );
    assert!(c.line().is_none());

    // The Komodo DeFi client's request negotiates exactly 1.4.
    let mut c = Client::connect(port);
    let v = c.result("server.version", json!(["AtomicDEX", ["1.2", "1.4"]]));
    assert_eq!(v[1], "1.4");
    assert!(v[0].as_str().unwrap().starts_with("Sextant "));
    assert_eq!(
        c.error("server.version", json!([])),
        (1, "server.version already sent".to_string())
    );
    assert_eq!(
        c.error("blockchain.scripthash.unsubscribe", json!([payee_sh]))
            .0,
        -32601,
        "unsubscribe is 1.4.2 only"
    );
    assert_eq!(
        c.error("blockchain.address.get_balance", json!([])),
        (
            -32601,
            "unknown method \"blockchain.address.get_balance\"".to_string()
        )
    );
    assert_eq!(
        c.result("server.donation_address", json!([])),
        "donate-here"
    );
    assert_eq!(c.result("server.ping", json!([])), Value::Null);
    assert_eq!(c.result("server.peers.subscribe", json!([])), json!([]));
    let f = c.result("server.features", json!([]));
    assert_eq!(f["genesis_hash"], d.block_hash(0));
    assert_eq!(f["protocol_max"], "1.7.0");
    assert_eq!(c.result("blockchain.relayfee", json!([])), json!(0.00001));

    // Headers.
    let h = c.result("blockchain.headers.subscribe", json!([]));
    assert_eq!(h["height"], tip);
    assert_eq!(
        h["hex"],
        d.call("getblockheader", json!([d.best_hash(), false]))
    );
    assert_eq!(
        c.error("blockchain.block.header", json!([100000])),
        (1, "height 100,000 out of range".to_string())
    );
    let p = c.result("blockchain.block.header", json!([5, tip]));
    let hash5 = d.block_hash(5);
    assert_eq!(fold(&hash5, &p["branch"], 5), p["root"].as_str().unwrap());
    assert_eq!(
        c.error("blockchain.block.header", json!([9, 8])),
        (
            1,
            format!("require header height 9 <= cp_height 8 <= chain height {tip}")
        )
    );
    let hs = c.result("blockchain.block.headers", json!([0, 5000]));
    assert_eq!(hs["count"], tip + 1);
    assert_eq!(hs["max"], 2016);
    assert_eq!(hs["hex"].as_str().unwrap().len() as u64, (tip + 1) * 160);
    let past = c.result("blockchain.block.headers", json!([tip + 5, 3]));
    assert_eq!(past, json!({"hex": "", "count": 0, "max": 2016}));

    // Transactions and proofs.
    let block = d.block_json(&d.best_hash());
    let txids: Vec<&str> = block["tx"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().or_else(|| t["txid"].as_str()).unwrap())
        .collect();
    let pos = txids
        .iter()
        .position(|t| *t == confirmed_tx)
        .expect("in the block");
    let m = c.result(
        "blockchain.transaction.get_merkle",
        json!([confirmed_tx, tip]),
    );
    assert_eq!(m["pos"], pos);
    assert_eq!(m["block_height"], tip);
    assert_eq!(
        fold(&confirmed_tx, &m["merkle"], pos as u64),
        block["merkleroot"].as_str().unwrap()
    );
    let (code, msg) = c.error(
        "blockchain.transaction.get_merkle",
        json!([mempool_tx, tip]),
    );
    assert_eq!(
        (code, msg),
        (1, format!("tx {mempool_tx} not in block at height {tip}"))
    );
    let idp = c.result("blockchain.transaction.id_from_pos", json!([tip, 0, true]));
    assert_eq!(idp["tx_hash"], txids[0]);
    assert_eq!(
        c.error("blockchain.transaction.id_from_pos", json!([tip, 99])),
        (1, format!("no tx at position 99 in block at height {tip}"))
    );
    assert_eq!(
        c.result("blockchain.transaction.get", json!([confirmed_tx])),
        d.raw_tx_hex(&confirmed_tx)
    );
    let verbose = c.result("blockchain.transaction.get", json!([confirmed_tx, true]));
    assert_eq!(verbose["txid"], confirmed_tx);
    let (code, msg) = c.error("blockchain.transaction.get", json!(["00".repeat(32)]));
    assert_eq!(code, 2);
    assert!(
        msg.starts_with("daemon error: DaemonError({'code': -5, 'message': "),
        "{msg}"
    );
    assert_eq!(
        c.error("blockchain.transaction.get", json!([confirmed_tx, "yes"])),
        (1, "\"verbose\" must be a boolean".to_string())
    );
    let (code, msg) = c.error("blockchain.transaction.broadcast", json!(["00"]));
    assert_eq!(code, 1);
    assert!(
        msg.starts_with("the transaction was rejected by network rules.\n\n"),
        "{msg}"
    );
    assert!(msg.ends_with("\n[00]"), "{msg}");
    assert_eq!(
        c.error("blockchain.transaction.broadcast", json!(["0"])),
        (1, "0 should be a hex string".to_string())
    );

    // Script hashes.
    let hist = c.result("blockchain.scripthash.get_history", json!([payee_sh]));
    assert_eq!(hist[0], json!({"tx_hash": confirmed_tx, "height": tip}));
    assert_eq!(hist[1]["tx_hash"], mempool_tx);
    assert_eq!(hist[1]["height"], 0);
    assert!(hist[1]["fee"].as_u64().unwrap() > 0);
    let bal = c.result("blockchain.scripthash.get_balance", json!([payee_sh]));
    // The wallet may fund the second payment with the first (the payee is its own address).
    let spends_first = d.tx_json(&mempool_tx)["vin"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["txid"] == confirmed_tx);
    let unconfirmed = if spends_first {
        20_000_000 - 50_000_000
    } else {
        20_000_000
    };
    assert_eq!(
        bal,
        json!({"confirmed": 50_000_000, "unconfirmed": unconfirmed})
    );
    let utxos = c.result("blockchain.scripthash.listunspent", json!([payee_sh]));
    assert_eq!(
        utxos.as_array().unwrap().len(),
        if spends_first { 1 } else { 2 }
    );
    assert_eq!(utxos.as_array().unwrap().last().unwrap()["height"], 0);
    let preimage = format!("{confirmed_tx}:{tip}:{mempool_tx}:0:");
    let expected = hex::encode(bitcoin::hashes::sha256::Hash::hash(preimage.as_bytes()));
    assert_eq!(
        c.result("blockchain.scripthash.subscribe", json!([payee_sh])),
        expected
    );
    assert_eq!(
        c.error("blockchain.scripthash.get_balance", json!(["nope"])),
        (1, "nope is not a valid script hash".to_string())
    );
    assert_eq!(
        c.result("blockchain.scripthash.subscribe", json!(["00".repeat(32)])),
        Value::Null
    );
    assert!(c.result("mempool.get_fee_histogram", json!([])).is_array());

    // A batch is answered as an array.
    c.send_line(r#"[{"jsonrpc":"2.0","id":1,"method":"server.ping"},{"jsonrpc":"2.0","id":2,"method":"server.donation_address"}]"#);
    let b = c.line().unwrap();
    assert_eq!(b.as_array().unwrap().len(), 2);

    // Notifications: a new block confirms the mempool payment.
    d.mine(1);
    let n = c.notification("blockchain.headers.subscribe");
    assert_eq!(n[0]["height"], tip + 1);
    let n = c.notification("blockchain.scripthash.subscribe");
    assert_eq!(n[0], payee_sh);
    let preimage = format!("{confirmed_tx}:{tip}:{mempool_tx}:{}:", tip + 1);
    let expected = hex::encode(bitcoin::hashes::sha256::Hash::hash(preimage.as_bytes()));
    assert_eq!(n[1], expected);

    server.stop();
}

use bitcoin::hashes::Hash as _;

/// After a successful broadcast the server kicks the mempool follower, so the wallet's own
/// transaction shows up at once, not a poll interval later (here: 60 s).
#[test]
fn a_broadcast_refreshes_the_mempool_at_once() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let payee_sh = scripthash(&d.script_of(&payee));
    let utxo = d.call("listunspent", json!([1]))[0].clone();
    let input = (
        utxo["txid"].as_str().unwrap().to_string(),
        utxo["vout"].as_u64().unwrap() as u32,
    );
    let raw = d.sign_tx(
        &[input],
        &[(payee.clone(), amount_to_sats(&utxo["amount"]) - 50_000)],
        false,
    );

    // Blocks are noticed at once, the mempool only every minute: a notification within the
    // client's 20 s read timeout can only come from the broadcast's own refresh.
    let port = free_port();
    let server = InProcess::start(
        &d,
        &[
            ("SERVICES", format!("tcp://127.0.0.1:{port}")),
            ("DAEMON_POLL_INTERVAL_MEMPOOL", "60000".to_string()),
        ],
    );

    let mut c = Client::connect(port);
    c.result("server.version", json!(["kick", "1.4"]));
    assert_eq!(
        c.result("blockchain.scripthash.subscribe", json!([payee_sh])),
        Value::Null
    );
    let txid = c.result("blockchain.transaction.broadcast", json!([raw]));
    let n = c.notification("blockchain.scripthash.subscribe");
    assert_eq!(n[0], payee_sh);
    let hist = c.result("blockchain.scripthash.get_mempool", json!([payee_sh]));
    assert_eq!(hist[0]["tx_hash"], txid);

    server.stop();
}

/// Protocol 1.6 as Electrum 4.7 negotiates it, next to 1.4 as the Komodo DeFi Framework and
/// KevaWallet do: headers as a list, `mempool.get_info` (its increment taken from
/// `getnetworkinfo`, as litecoind 0.21's `getmempoolinfo` has none), packages refused with the
/// daemon's reason, `blockchain.relayfee` gone; and the same script status at both versions.
#[test]
fn speaks_1_6_to_new_wallets_and_1_4_to_old_ones() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let payee_sh = scripthash(&d.script_of(&payee));
    let confirmed_tx = d.send(&payee, 50_000_000);
    d.mine(1);
    // Two mempool payments at height 0 (confirmed inputs): their order in the status is by txid.
    let mut mempool = [
        d.pay_from_confirmed(&[(payee.clone(), 20_000_000)], false)
            .0,
        d.pay_from_confirmed(&[(payee.clone(), 30_000_000)], false)
            .0,
    ];
    mempool.sort();
    let tip = d.height();
    let port = free_port();
    let server = InProcess::start(&d, &[("SERVICES", format!("tcp://127.0.0.1:{port}"))]);

    let mut new = Client::connect(port);
    let v = new.result(
        "server.version",
        json!(["electrum/4.7.0", ["1.4", "1.6"], "future", {"x": 1}]),
    );
    assert_eq!(v[1], "1.6");
    let f = new.result("server.features", json!([]));
    assert_eq!(
        (&f["protocol_min"], &f["protocol_max"]),
        (&json!("1.4"), &json!("1.7.0"))
    );
    assert_eq!(f["hash_function"], "sha256");
    assert_eq!(
        new.result("blockchain.headers.subscribe", json!([]))["height"],
        tip
    );

    let hs = new.result("blockchain.block.headers", json!([0, 3]));
    let want: Vec<Value> = (0..3)
        .map(|h| d.call("getblockheader", json!([d.block_hash(h), false])))
        .collect();
    assert_eq!(hs, json!({"count": 3, "max": 2016, "headers": want}));
    let proved = new.result("blockchain.block.headers", json!([tip - 1, 5, tip]));
    assert_eq!(proved["count"], 2);
    assert_eq!(proved["headers"].as_array().unwrap().len(), 2);
    assert!(proved.get("hex").is_none());
    let tip_hash = d.block_hash(tip);
    assert_eq!(
        fold(&tip_hash, &proved["branch"], tip),
        proved["root"].as_str().unwrap()
    );
    assert_eq!(
        new.result("blockchain.block.headers", json!([tip + 1, 3])),
        json!({"count": 0, "max": 2016, "headers": []})
    );

    let net = d.call("getnetworkinfo", json!([]));
    let pool = d.call("getmempoolinfo", json!([]));
    assert!(pool.get("incrementalrelayfee").is_none(), "litecoind 0.21");
    assert_eq!(
        new.result("mempool.get_info", json!([])),
        json!({
            "mempoolminfee": pool["mempoolminfee"],
            "minrelaytxfee": pool["minrelaytxfee"],
            "incrementalrelayfee": net["incrementalfee"],
        })
    );
    assert_eq!(
        new.error("blockchain.relayfee", json!([])),
        (-32601, "unknown method \"blockchain.relayfee\"".to_string())
    );
    let raw = d.raw_tx_hex(&confirmed_tx);
    assert_eq!(
        new.error("blockchain.transaction.broadcast_package", json!([[raw]])),
        (
            1,
            "the tx package was rejected by network rules.\n\nMethod not found.".to_string()
        )
    );
    assert_eq!(
        new.error("blockchain.transaction.broadcast_package", json!(["00"])),
        (1, "00 should be a list".to_string())
    );
    assert_eq!(
        new.error(
            "blockchain.transaction.broadcast_package",
            json!([["00", "zz"]])
        ),
        (1, "zz should be a hex string".to_string())
    );
    assert_eq!(
        new.result("blockchain.estimatefee", json!([2, "economical"])),
        new.result("blockchain.estimatefee", json!([2, "ECONOMICAL"]))
    );

    // The status and get_mempool: mempool transactions by txid, the same at 1.4 and 1.6.
    let preimage = format!("{confirmed_tx}:{tip}:{}:0:{}:0:", mempool[0], mempool[1]);
    let status = hex::encode(bitcoin::hashes::sha256::Hash::hash(preimage.as_bytes()));
    assert_eq!(
        new.result("blockchain.scripthash.subscribe", json!([payee_sh])),
        status
    );
    let listed = new.result("blockchain.scripthash.get_mempool", json!([payee_sh]));
    let order: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tx_hash"].as_str().unwrap())
        .collect();
    assert_eq!(order, mempool);

    for (client, asked) in [
        ("AtomicDEX", json!(["1.2", "1.4"])),
        ("bluewallet", json!("1.4")),
    ] {
        let mut old = Client::connect(port);
        let v = old.result("server.version", json!([client, asked]));
        assert_eq!(v[1], "1.4", "{client}");
        let hs = old.result("blockchain.block.headers", json!([0, 3]));
        assert_eq!(
            hs["hex"],
            json!(want.iter().map(|h| h.as_str().unwrap()).collect::<String>())
        );
        assert!(hs.get("headers").is_none());
        assert_eq!(
            old.result("blockchain.relayfee", json!([])),
            net["relayfee"]
        );
        assert_eq!(
            old.error("mempool.get_info", json!([])).0,
            -32601,
            "{client}: 1.6 only"
        );
        assert_eq!(
            old.result("blockchain.scripthash.subscribe", json!([payee_sh])),
            status,
            "{client}"
        );
    }

    // A block: the 1.6 subscriber hears the new status.
    d.mine(1);
    let n = new.notification("blockchain.headers.subscribe");
    assert_eq!(n[0]["height"], tip + 1);
    let n = new.notification("blockchain.scripthash.subscribe");
    let preimage = format!(
        "{confirmed_tx}:{tip}:{}:{h}:{}:{h}:",
        mempool[0],
        mempool[1],
        h = tip + 1
    );
    // Within a block, transactions are in block order, not txid order.
    let block = d.block_json(&d.best_hash());
    let pos = |t: &str| {
        block["tx"]
            .as_array()
            .unwrap()
            .iter()
            .position(|x| x["txid"] == t || *x == t)
            .unwrap()
    };
    let preimage = if pos(&mempool[0]) < pos(&mempool[1]) {
        preimage
    } else {
        format!(
            "{confirmed_tx}:{tip}:{}:{h}:{}:{h}:",
            mempool[1],
            mempool[0],
            h = tip + 1
        )
    };
    assert_eq!(
        n,
        json!([
            payee_sh,
            hex::encode(bitcoin::hashes::sha256::Hash::hash(preimage.as_bytes()))
        ])
    );

    server.stop();
}

#[test]
fn speaks_1_7_by_script_pubkey_and_1_4_to_old_wallets() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let spk = d.script_of(&payee);
    let payee_sh = scripthash(&spk);
    let confirmed_tx = d.send(&payee, 50_000_000);
    d.mine(1);
    let (mempool_tx, _) = d.pay_from_confirmed(&[(payee.clone(), 20_000_000)], false);
    let port = free_port();
    let server = InProcess::start(
        &d,
        &[
            ("SERVICES", format!("tcp://127.0.0.1:{port}")),
            ("MAX_SEND", "400000".to_string()),
        ],
    );

    let mut new = Client::connect(port);
    let v = new.result("server.version", json!(["electrum/4.8", ["1.4", "1.7"]]));
    assert_eq!(v[1], "1.7");
    let f = new.result("server.features", json!([]));
    assert_eq!(f["protocol_max"], "1.7.0");
    assert!(f.get("hash_function").is_none(), "{f}");

    // The old wallets keep 1.4 and its methods.
    let mut old = Vec::new();
    for (client, asked) in [
        ("AtomicDEX", json!(["1.2", "1.4"])),
        ("bluewallet", json!("1.4")),
    ] {
        let mut c = Client::connect(port);
        assert_eq!(c.result("server.version", json!([client, asked]))[1], "1.4");
        assert_eq!(
            c.result("server.features", json!([]))["hash_function"],
            "sha256"
        );
        assert_eq!(c.result("server.ping", json!([])), Value::Null);
        assert_eq!(
            c.error("blockchain.scriptpubkey.get_balance", json!([spk]))
                .0,
            -32601,
            "{client}: 1.7 only"
        );
        old.push(c);
    }
    let old_balance = old[0].result("blockchain.scripthash.get_balance", json!([payee_sh]));
    let old_history = old[0].result("blockchain.scripthash.get_history", json!([payee_sh]));
    let old_mempool = old[0].result("blockchain.scripthash.get_mempool", json!([payee_sh]));
    let old_utxos = old[0].result("blockchain.scripthash.listunspent", json!([payee_sh]));
    let status = old[1].result("blockchain.scripthash.subscribe", json!([payee_sh]));
    assert_eq!(old_history.as_array().unwrap().len(), 2);

    // 1.7: the same answers by scriptPubKey, wrapped; the scripthash methods are gone.
    for m in [
        "get_balance",
        "get_history",
        "get_mempool",
        "listunspent",
        "subscribe",
        "unsubscribe",
    ] {
        assert_eq!(
            new.error(&format!("blockchain.scripthash.{m}"), json!([payee_sh])),
            (
                -32601,
                format!("unknown method \"blockchain.scripthash.{m}\"")
            )
        );
    }
    assert_eq!(
        new.result("blockchain.scriptpubkey.get_balance", json!([spk])),
        old_balance
    );
    assert_eq!(
        new.result("blockchain.scriptpubkey.get_history", json!([spk])),
        json!({"history": old_history})
    );
    assert_eq!(
        new.result("blockchain.scriptpubkey.get_mempool", json!([spk])),
        json!({"history": old_mempool})
    );
    assert_eq!(
        new.result("blockchain.scriptpubkey.listunspent", json!([spk])),
        json!({"utxos": old_utxos})
    );
    assert_eq!(
        new.error(
            "blockchain.scriptpubkey.get_balance",
            json!([format!("{payee_sh}0")])
        ),
        (1, format!("{payee_sh}0 should be a hex string"))
    );
    assert_eq!(
        new.result("blockchain.scriptpubkey.subscribe", json!([spk])),
        status
    );
    assert_eq!(
        new.result("blockchain.scriptpubkey.unsubscribe", json!([spk])),
        true
    );
    assert_eq!(
        new.result("blockchain.scriptpubkey.unsubscribe", json!([spk])),
        false
    );
    assert_eq!(
        new.result("blockchain.scriptpubkey.subscribe", json!([spk])),
        status
    );

    // Another 1.7 session for what follows, so `new` reads its notifications only.
    let mut t = Client::connect(port);
    t.result("server.version", json!(["t", "1.7"]));
    // server.ping echoes padding; a ping notification is never answered.
    assert_eq!(t.result("server.ping", json!([])), json!({"data": ""}));
    assert_eq!(
        t.result("server.ping", json!([3, "abc"])),
        json!({"data": "000"})
    );
    assert_eq!(
        t.error("server.ping", json!([0, "xyz"])),
        (1, "xyz should be a hex string".to_string())
    );
    assert_eq!(
        t.error("server.ping", json!([400001])),
        (1, "pong_len value too high".to_string())
    );
    assert_eq!(
        t.error("server.ping", json!([-1])),
        (1, "-1 should be a non-negative integer".to_string())
    );
    t.send_line(r#"{"jsonrpc":"2.0","method":"server.ping","params":["00ff"]}"#);
    t.send_line(r#"{"jsonrpc":"2.0","id":9,"method":"server.ping","params":[1]}"#);
    assert_eq!(
        t.line().unwrap(),
        json!({"jsonrpc": "2.0", "result": {"data": "0"}, "id": 9})
    );

    // mempool.recent: the newest mempool transactions with their fee and vsize.
    let recent = t.result("mempool.recent", json!([]));
    let entry = d.call("getmempoolentry", json!([mempool_tx]));
    let fee = (entry["fee"].as_f64().unwrap() * 1e8).round() as u64;
    assert_eq!(
        recent,
        json!([{"txid": mempool_tx, "fee": fee, "vsize": entry["vsize"]}])
    );

    // testmempoolaccept: what the daemon would say, with the wtxid it leaves out.
    let coin = d.pay_from_confirmed(&[(payee.clone(), 1_000_000)], false).0;
    let unsent = d.sign_tx(&[(coin.clone(), 0)], &[(payee.clone(), 900_000)], false);
    let wtxid = {
        let mut h = sextant::types::sha256d(&hex::decode(&unsent).unwrap());
        h.reverse();
        hex::encode(h)
    };
    let tested = t.result(
        "blockchain.transaction.testmempoolaccept",
        json!([[unsent]]),
    );
    let txid = d.call("decoderawtransaction", json!([unsent]))["txid"].clone();
    assert_eq!(
        tested,
        json!([{"txid": txid, "wtxid": wtxid, "allowed": true}])
    );
    let again = d.raw_tx_hex(&confirmed_tx);
    let tested = t.result("blockchain.transaction.testmempoolaccept", json!([[again]]));
    assert_eq!(tested[0]["allowed"], false);
    assert!(tested[0]["reason"].is_string(), "{tested}");
    assert_eq!(
        t.error("blockchain.transaction.testmempoolaccept", json!(["00"])),
        (1, "00 should be a list".to_string())
    );
    assert_eq!(
        t.error("blockchain.transaction.testmempoolaccept", json!([["0"]])),
        (1, "0 should be a hex string".to_string())
    );
    assert_eq!(
        t.error(
            "blockchain.transaction.testmempoolaccept",
            json!([[again.clone(), again]])
        )
        .0,
        2,
        "litecoind 0.21 tests one transaction at a time"
    );

    // The payment to `coin` reached the mempool: each subscriber hears of the script in its
    // own version's words.
    let n = new.notification("blockchain.scriptpubkey.subscribe");
    assert_eq!(n[0], payee_sh);
    assert_ne!(n[1], status);
    assert_eq!(old[1].notification("blockchain.scripthash.subscribe"), n);

    // A quiet 1.7 session: a block makes one notification, so noise follows it.
    let mut quiet = Client::connect(port);
    quiet.result("server.version", json!(["quiet", "1.7"]));
    quiet.result("blockchain.headers.subscribe", json!([]));

    // A block.
    d.mine(1);
    let b = new.notification("blockchain.scriptpubkey.subscribe");
    assert_eq!(b[0], payee_sh);
    assert_ne!(b[1], n[1]);
    assert_eq!(old[1].notification("blockchain.scripthash.subscribe"), b);
    assert_eq!(
        quiet.notification("blockchain.headers.subscribe")[0]["height"],
        d.height()
    );
    assert_eq!(quiet.notification("server.ping"), json!(["0".repeat(128)]));

    server.stop();
}

/// The next `blockchain.outpoint.subscribe` notification's status.
fn outpoint_notification(c: &mut Client, txid: &str, vout: u32) -> Value {
    let n = c.notification("blockchain.outpoint.subscribe");
    assert_eq!((&n[0], &n[1]), (&json!(txid), &json!(vout)), "{n}");
    n[2].clone()
}

#[test]
fn outpoint_subscriptions_follow_funding_spends_blocks_and_reorgs() {
    let d = Litecoind::start();
    d.mine(110);
    let payee = d.new_address(AddrType::Bech32);
    let other = d.new_address(AddrType::Bech32);
    let port = free_port();
    let server = InProcess::start(&d, &[("SERVICES", format!("tcp://127.0.0.1:{port}"))]);
    let mut c = Client::connect(port);
    c.result("server.version", json!(["wallet", "1.7"]));
    let mut old = Client::connect(port);
    old.result("server.version", json!(["old", "1.6"]));
    assert_eq!(
        old.error(
            "blockchain.outpoint.get_status",
            json!(["00".repeat(32), 0, ""])
        )
        .0,
        -32601
    );

    // Checks in ElectrumX's order; the hint must be hex and is otherwise ignored.
    let nowhere = "ab".repeat(32);
    assert_eq!(
        c.result("blockchain.outpoint.get_status", json!([nowhere, 0, ""])),
        json!({})
    );
    assert_eq!(
        c.error("blockchain.outpoint.subscribe", json!(["zz", -1, "q"])),
        (1, "zz should be a transaction hash".to_string())
    );
    assert_eq!(
        c.error("blockchain.outpoint.subscribe", json!([nowhere, -1, "q"])),
        (1, "-1 should be a non-negative integer".to_string())
    );
    assert_eq!(
        c.error("blockchain.outpoint.subscribe", json!([nowhere, 0, "q"])),
        (1, "q should be a hex string".to_string())
    );
    assert_eq!(
        c.error("blockchain.outpoint.subscribe", json!([nowhere, 0]))
            .0,
        -32602
    );

    // Funded in the mempool (confirmed inputs: height 0).
    let (funding, _) = d.pay_from_confirmed(&[(payee.clone(), 100_000_000)], false);
    let vout = d.find_vout(&funding, &d.script_of(&payee));
    let mut t = Client::connect(port);
    t.result("server.version", json!(["t", "1.7"]));
    let seen = |t: &mut Client| {
        t.result("blockchain.outpoint.get_status", json!([funding, vout, ""]))
            .get("funder_height")
            .is_some()
    };
    for _ in 0..100 {
        if seen(&mut t) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        c.result(
            "blockchain.outpoint.subscribe",
            json!([funding, vout, "51"])
        ),
        json!({"funder_height": 0})
    );
    assert_eq!(
        c.result(
            "blockchain.outpoint.get_status",
            json!([funding, vout + 7, ""])
        ),
        json!({}),
        "no such output"
    );

    // Mined.
    d.mine(1);
    let h1 = d.height();
    assert_eq!(
        outpoint_notification(&mut c, &funding, vout),
        json!({"funder_height": h1})
    );

    // Spent in the mempool, then in a block.
    let spending = d.spend(&[(funding.clone(), vout)], &[(other.clone(), 99_000_000)]);
    assert_eq!(
        outpoint_notification(&mut c, &funding, vout),
        json!({"funder_height": h1, "spender_txhash": spending, "spender_height": 0})
    );
    d.mine(1);
    let h2 = d.height();
    let spent = json!({"funder_height": h1, "spender_txhash": spending, "spender_height": h2});
    assert_eq!(outpoint_notification(&mut c, &funding, vout), spent);
    assert_eq!(
        t.result("blockchain.outpoint.get_status", json!([funding, vout, ""])),
        spent
    );

    // A reorg to a longer branch without it takes the spend out of the chain: back in the
    // mempool (on the way, possibly unspent for a moment, never still spent at h2).
    d.invalidate(&d.block_hash(h2));
    d.generate_block(&[]);
    d.generate_block(&[]);
    loop {
        let s = outpoint_notification(&mut c, &funding, vout);
        assert_eq!(s["funder_height"], h1, "{s}");
        assert_ne!(s.get("spender_height"), Some(&json!(h2)), "{s}");
        if s.get("spender_height") == Some(&json!(0)) {
            assert_eq!(s["spender_txhash"], spending);
            break;
        }
    }

    assert_eq!(
        c.result("blockchain.outpoint.unsubscribe", json!([funding, vout])),
        true
    );
    assert_eq!(
        c.result("blockchain.outpoint.unsubscribe", json!([funding, vout])),
        false
    );
    server.stop();
}

/// `blockchain.transaction.get`'s answer must be the daemon's, whatever was fetched before:
/// its hex, or its error as ElectrumX words it.
fn assert_answers_as_daemon(d: &Litecoind, c: &mut Client, txid: &str) -> bool {
    let daemon = d.rpc("getrawtransaction", json!([txid, false]));
    let answer = c.call("blockchain.transaction.get", json!([txid]));
    match &daemon {
        Ok(hex) => assert_eq!(answer["result"], *hex, "{answer}"),
        Err(e) => assert_eq!(
            answer["error"],
            json!({"code": 2, "message": format!(
                "daemon error: DaemonError({{'code': {}, 'message': '{}'}})",
                e.code().unwrap(), e.message().unwrap())}),
            "{answer}"
        ),
    }
    daemon.is_err()
}

/// Raw transactions are cached, but never one the daemon may come to deny: a mempool
/// transaction (a double spend can evict it), or one of a block a reorg orphaned (litecoind's
/// txindex keeps serving those until it is rebuilt; other daemons deny them at once).
#[test]
fn transactions_the_daemon_no_longer_has_are_not_served_from_the_cache() {
    let d = Litecoind::start();
    d.mine(101);
    let port = free_port();
    let server = InProcess::start(&d, &[("SERVICES", format!("tcp://127.0.0.1:{port}"))]);
    let mut c = Client::connect(port);
    c.result("server.version", json!(["test", "1.4"]));
    c.result("blockchain.headers.subscribe", json!([]));
    fn wait_height(c: &mut Client, h: u64) {
        while c.notification("blockchain.headers.subscribe")[0]["height"] != h {}
    }

    // A coinbase is fetched (and cached); a reorg orphans its block. The replacement pays
    // another address, so its coinbase is another transaction.
    let old = d.mine(1)[0].clone();
    let height = d.height();
    wait_height(&mut c, height);
    let coinbase = d.block_json(&old)["tx"][0]["txid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.result("blockchain.transaction.get", json!([coinbase])),
        d.raw_tx_hex(&coinbase)
    );
    d.invalidate(&old);
    d.mine_to(&d.new_address(AddrType::Bech32), 2);
    wait_height(&mut c, height + 1);

    // A mempool transaction is fetched, then a block double-spends it.
    let payee = d.new_address(AddrType::Bech32);
    let payee_sh = scripthash(&d.script_of(&payee));
    let spent = d.send(&payee, 50_000_000);
    wait_until(Duration::from_secs(20), "the mempool mirror", || {
        let m = c.result("blockchain.scripthash.get_mempool", json!([payee_sh]));
        (m.as_array().unwrap().len() == 1).then_some(())
    });
    assert_eq!(
        c.result("blockchain.transaction.get", json!([spent])),
        d.raw_tx_hex(&spent)
    );
    let ins: Vec<(String, u32)> = d.tx_json(&spent)["vin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let txid = i["txid"].as_str().unwrap().to_string();
            (txid, i["vout"].as_u64().unwrap() as u32)
        })
        .collect();
    let total: u64 = ins.iter().map(|(t, n)| d.outpoint_value(t, *n)).sum();
    let other = d.new_address(AddrType::Bech32);
    let double_spend = d.sign_tx(&ins, &[(other, total - 30_000)], false);
    d.generate_block(&[double_spend]);
    wait_height(&mut c, height + 2);
    assert!(
        !d.mempool_txids().contains(&spent),
        "evicted by the double spend"
    );
    assert!(
        assert_answers_as_daemon(&d, &mut c, &spent),
        "the daemon denies the evicted transaction"
    );

    // litecoind forgets the orphaned coinbase once its txindex is rebuilt from the active
    // chain; Sextant follows it through the restart.
    assert_answers_as_daemon(&d, &mut c, &coinbase);
    d.stop_and_restart_with(&["-reindex"]);
    wait_until(Duration::from_secs(60), "the daemon's txindex", || {
        let info = d.rpc("getindexinfo", json!([])).ok()?;
        let synced = info["txindex"]["synced"].as_bool()? && d.height() == height + 2;
        synced.then_some(())
    });
    assert!(
        assert_answers_as_daemon(&d, &mut c, &coinbase),
        "the daemon denies the orphaned coinbase"
    );
    server.stop();
}

#[test]
fn kept_answers_of_a_long_history_follow_the_mempool_blocks_and_reorgs() {
    let d = Litecoind::start();
    d.mine(101);
    // 150 coinbases: a history long enough for its answers to be kept.
    let hoard = d.new_address(AddrType::Bech32);
    d.mine_to(&hoard, 150);
    let sh = scripthash(&d.script_of(&hoard));
    let (cached_port, plain_port) = (free_port(), free_port());
    let _cached = InProcess::start(
        &d,
        &[("SERVICES", format!("tcp://127.0.0.1:{cached_port}"))],
    );
    let _plain = InProcess::start(
        &d,
        &[
            ("SERVICES", format!("tcp://127.0.0.1:{plain_port}")),
            ("RESPONSE_CACHE_MB", "0".into()),
        ],
    );
    let mut cached = Client::connect(cached_port);
    let mut plain = Client::connect(plain_port);
    for c in [&mut cached, &mut plain] {
        c.result("server.version", json!(["test", "1.4"]));
    }
    let methods = [
        "blockchain.scripthash.get_history",
        "blockchain.scripthash.listunspent",
        "blockchain.scripthash.get_balance",
    ];
    // Both servers give the same answers once they follow the daemon (a stale kept answer
    // never would); `entries` is the history's length then, `unconfirmed` how many of them
    // are in the mempool.
    let mut same = |label: &str, entries: usize, unconfirmed: usize| {
        wait_until(Duration::from_secs(30), label, || {
            let a: Vec<Value> = methods
                .iter()
                .map(|m| cached.result(m, json!([sh])))
                .collect();
            let b: Vec<Value> = methods
                .iter()
                .map(|m| plain.result(m, json!([sh])))
                .collect();
            let history = a[0].as_array().unwrap();
            let pending = history.iter().filter(|e| e["height"].as_i64() <= Some(0));
            (a == b && history.len() == entries && pending.count() == unconfirmed).then_some(())
        });
        // Asked again: the kept answers.
        for m in methods {
            assert_eq!(cached.result(m, json!([sh])), plain.result(m, json!([sh])));
        }
    };
    same("the chain as mined", 150, 0);
    d.send(&hoard, 100_000_000);
    same("a mempool payment", 151, 1);
    d.mine(1);
    same("the payment confirmed", 151, 0);
    let coinbase = d.mine_to(&hoard, 1)[0].clone();
    same("another coinbase", 152, 0);
    // A reorg replaces the coinbase's block by two others.
    d.invalidate(&coinbase);
    d.mine_to(&d.new_address(AddrType::Bech32), 2);
    same("the coinbase undone", 151, 0);
}
