//! The JSON-RPC stand-in daemon (tests/common/standin.rs) speaks like bitcoind/komodod: basic
//! auth, JSON-RPC 1.0 replies with `"error": null`, HTTP 500/404 errors, batches, keep-alive for
//! Sextant's own client, and a chain and mempool the test changes at run time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use serde_json::{json, Value};
use sextant::config::DaemonUrl;
use sextant::daemon::{Daemon, DaemonError};
use sextant::types::{BlockHash, Height, Txid};

/// A block of fake bytes whose "hash" is the test's own choice: the stand-in never parses.
fn block(tag: u8, txs: &[u8]) -> StandinBlock {
    let txs: Vec<StandinTx> = txs
        .iter()
        .map(|&t| {
            let raw = vec![t; 10];
            StandinTx {
                txid: dsha256_hex(&raw),
                raw,
            }
        })
        .collect();
    StandinBlock {
        hash: format!("{tag:02x}").repeat(32),
        raw: vec![tag; 20],
        txs,
    }
}

/// One POST with the raw HTTP reply (status line, headers and body) as text.
fn raw_post(addr: std::net::SocketAddr, auth: &str, body: &str) -> String {
    use base64::Engine as _;
    let mut s = TcpStream::connect(addr).unwrap();
    let token = base64::engine::general_purpose::STANDARD.encode(auth);
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn standin_speaks_like_a_core_daemon() {
    let d = Standin::start(
        StandinConfig::komodod("RICK"),
        vec![block(1, &[1]), block(2, &[2, 3])],
    );
    let rpc = RpcClient::new(d.addr(), "/", STANDIN_USER, STANDIN_PASS);

    // Wire format: 1.0 replies, HTTP 500 for errors, 404 for unknown methods, 401 without auth.
    let ok = raw_post(
        d.addr(),
        &format!("{STANDIN_USER}:{STANDIN_PASS}"),
        r#"{"method":"getblockcount","id":7}"#,
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("application/json"), "{ok}");
    assert!(ok.ends_with(r#"{"error":null,"id":7,"result":1}"#), "{ok}");
    let err = raw_post(
        d.addr(),
        &format!("{STANDIN_USER}:{STANDIN_PASS}"),
        r#"{"method":"getblockhash","params":[9],"id":1}"#,
    );
    assert!(err.starts_with("HTTP/1.1 500"), "{err}");
    let missing = raw_post(
        d.addr(),
        &format!("{STANDIN_USER}:{STANDIN_PASS}"),
        r#"{"method":"estimatesmartfee","params":[2],"id":1}"#,
    );
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let denied = raw_post(
        d.addr(),
        "standin:wrong",
        r#"{"method":"getblockcount","id":1}"#,
    );
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");

    // komodod's answers.
    let info = rpc.call("getinfo", json!([])).unwrap();
    assert_eq!(info["name"], "RICK");
    assert_eq!(info["notarized"], 0);
    d.set_notarized(Some(1));
    let info = rpc.call("getinfo", json!([])).unwrap();
    assert_eq!(
        (info["notarized"].clone(), info["notarizedhash"].clone()),
        (json!(1), json!(d.block_hash(1)))
    );
    assert_eq!(
        rpc.call("estimatefee", json!([6])).unwrap(),
        json!(0.00010234)
    );
    assert_eq!(
        rpc.call("estimatefee", json!([6, "ECONOMICAL"]))
            .unwrap_err()
            .code(),
        Some(-1)
    );
    let t2 = dsha256_hex(&[2; 10]);
    let v = rpc.call("getrawtransaction", json!([t2, 1])).unwrap();
    assert_eq!(
        (v["height"].clone(), v["confirmations"].clone()),
        (json!(1), json!(1))
    );
    let e = rpc
        .call("getrawtransaction", json!(["ab".repeat(32), 0]))
        .unwrap_err();
    assert_eq!(
        e.message(),
        Some("No information available about transaction")
    );
    // The genesis coinbase is not in the transaction index.
    let genesis_cb = dsha256_hex(&[1; 10]);
    assert_eq!(
        rpc.call("getrawtransaction", json!([genesis_cb, 0]))
            .unwrap_err()
            .code(),
        Some(-5)
    );

    // Batches: one reply per call, each with its own error.
    let replies = rpc
        .batch(&[("getblockhash", json!([0])), ("getblockhash", json!([5]))])
        .unwrap();
    assert_eq!(replies[0].as_ref().unwrap(), &json!(d.block_hash(0)));
    assert_eq!(replies[1].as_ref().unwrap_err().code(), Some(-8));

    // The chain and mempool change under the test's control.
    let e = rpc.call("sendrawtransaction", json!(["aabb"])).unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Some(-22), Some("TX decode failed"))
    );
    // A v1 transaction: no inputs, no outputs, lock time 0.
    let tx = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let sent = rpc
        .call("sendrawtransaction", json!([hex::encode(tx)]))
        .unwrap();
    assert_eq!(sent, json!(dsha256_hex(&tx)));
    assert_eq!(rpc.call("getrawmempool", json!([])).unwrap(), json!([sent]));
    let mut b3 = block(3, &[4]);
    b3.txs.push(StandinTx {
        txid: sent.as_str().unwrap().into(),
        raw: tx.to_vec(),
    });
    d.append(vec![b3]);
    assert_eq!(
        rpc.call("getrawmempool", json!([])).unwrap(),
        json!([]),
        "confirmed txs leave"
    );
    assert_eq!(rpc.call("getblockcount", json!([])).unwrap(), json!(2));
    d.reorg(1, vec![block(9, &[9])]);
    assert_eq!(rpc.call("getblockcount", json!([])).unwrap(), json!(1));
    assert_eq!(
        rpc.call("getbestblockhash", json!([])).unwrap(),
        json!("09".repeat(32))
    );
    assert_eq!(
        rpc.call("getrawtransaction", json!([t2, 0]))
            .unwrap_err()
            .code(),
        Some(-5)
    );
    let b = rpc.call("getblock", json!(["09".repeat(32), 1])).unwrap();
    assert_eq!(b["previousblockhash"], json!(d.block_hash(0)));
    assert_eq!(
        rpc.call("getblock", json!(["09".repeat(32), false]))
            .unwrap(),
        json!("09".repeat(20))
    );

    // Sextant's own daemon client (jsonrpsee over kept-alive connections, 1.0 → 2.0 rewriting).
    let url = DaemonUrl::parse(&d.url(), 0, false).unwrap();
    let daemon = Daemon::new(vec![url], None, sextant::metrics::Metrics::new()).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let info = daemon.blockchain_info().await.unwrap();
        assert_eq!((info.blocks, info.chain.as_str()), (1, "main"));
        let hashes = daemon.block_hashes(&[Height(0), Height(1)]).await.unwrap();
        assert_eq!(hashes[1], BlockHash::from_hex(&"09".repeat(32)).unwrap());
        let raw = daemon.raw_blocks(&hashes).await.unwrap();
        assert_eq!(raw[1], vec![9u8; 20]);
        let txs = daemon
            .raw_transactions(&[
                Txid::from_hex(&dsha256_hex(&[9; 10])).unwrap(),
                Txid::from_hex(&t2).unwrap(),
            ])
            .await
            .unwrap();
        assert_eq!(txs, vec![Some(vec![9u8; 10]), None]);
        match daemon
            .call::<Value>("estimatesmartfee", vec![json!(2)])
            .await
        {
            Err(DaemonError::Rpc(e)) => assert_eq!(e.code, -32601),
            other => panic!("estimatesmartfee on komodod: {other:?}"),
        }
    });
    assert!(d
        .calls()
        .iter()
        .any(|(m, p)| m == "getblock" && p[1] == json!(0)));
}
