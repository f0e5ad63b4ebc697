//! End to end on a Kevacoin chain: the JSON-RPC stand-in (tests/common/standin.rs) plays
//! kevacoind on regtest, serving the real regtest genesis block and blocks this test builds in
//! Kevacoin's format (80-byte header ‖ CompactSize ‖ 72-byte CryptoNote blob, hashed with
//! Keccak-256; Bitcoin-serialized transactions) with namespaces, puts, deletes, a reply, a share,
//! a like, hashtags and a page's worth of puts. The `sextant` binary (`COIN=Kevacoin`) indexes it,
//! and every keva method's answer is compared with what this test derives on its own from the
//! transactions it built (its own index-script and scripthash code, not the server's): paging,
//! Base64 keys and values, display names, short codes, timestamps, reaction counts, transaction
//! info, banned hashtags. Then a mempool put shows at height 0 (not under its hashtag), and a
//! reorg that removes a confirmed put removes it from every index.

mod common;

use bitcoin::hashes::{hash160, sha256, sha256d, Hash};
use common::*;
use serde_json::{json, Value};
use sha3::{Digest, Keccak256};
use std::time::Duration;

const GENESIS: &str = include_str!("data/vectors/kevacoin/genesis_regtest.json");
/// Regtest P2SH version byte (kevacoind's SCRIPT_ADDRESS2).
const P2SH_VERSION: u8 = 0x3a;
const LOCKED: u64 = 1_000_000;
const ROOT_KEY: &[u8] = b"\x01_KEVA_NS_";

// ---------------------------------------------------------------------------------------------
// Building Kevacoin blocks and transactions

fn push(out: &mut Vec<u8>, data: &[u8]) {
    match data.len() {
        0 => out.push(0x00),
        n if n < 0x4c => out.push(n as u8),
        n if n < 0x100 => out.extend([0x4c, n as u8]),
        n => {
            out.push(0x4d);
            out.extend((n as u16).to_le_bytes());
        }
    }
    out.extend_from_slice(data);
}

fn compact(out: &mut Vec<u8>, n: usize) {
    assert!(n < 0xfd);
    out.push(n as u8);
}

/// The owner scripts: P2SH, as KevaWallet's addresses are.
fn owner(tag: u8) -> Vec<u8> {
    let mut s = vec![0xa9, 0x14];
    s.extend([tag; 20]);
    s.push(0x87);
    s
}

fn owner_address(tag: u8) -> String {
    let mut payload = vec![P2SH_VERSION];
    payload.extend([tag; 20]);
    bitcoin::base58::encode_check(&payload)
}

/// A transaction's keva operation with its namespace.
type KevaOutput = (Vec<u8>, Op);

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Reg(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
}

fn keva_script(ns: &[u8], op: &Op, owner_tag: u8) -> Vec<u8> {
    let mut s = Vec::new();
    match op {
        Op::Reg(name) => {
            s.push(0xd0);
            push(&mut s, ns);
            push(&mut s, name);
            s.push(0x6d);
        }
        Op::Put(k, v) => {
            s.push(0xd1);
            push(&mut s, ns);
            push(&mut s, k);
            push(&mut s, v);
            s.extend([0x6d, 0x75]);
        }
        Op::Del(k) => {
            s.push(0xd2);
            push(&mut s, ns);
            push(&mut s, k);
            s.push(0x6d);
        }
    }
    s.extend(owner(owner_tag));
    s
}

#[derive(Clone, Debug)]
struct Tx {
    /// Internal byte order.
    id: [u8; 32],
    raw: Vec<u8>,
    inputs: Vec<([u8; 32], u32)>,
    outputs: Vec<(u64, Vec<u8>)>,
}

impl Tx {
    fn new(version: u32, inputs: &[([u8; 32], u32)], outputs: &[(u64, Vec<u8>)], tag: u32) -> Tx {
        let mut raw = version.to_le_bytes().to_vec();
        compact(&mut raw, inputs.len().max(1));
        if inputs.is_empty() {
            // A coinbase: the null outpoint, a script with a distinguishing number.
            raw.extend([0u8; 32]);
            raw.extend(u32::MAX.to_le_bytes());
            let mut sig = Vec::new();
            push(&mut sig, &tag.to_le_bytes());
            compact(&mut raw, sig.len());
            raw.extend(sig);
            raw.extend(u32::MAX.to_le_bytes());
        }
        for (txid, vout) in inputs {
            raw.extend(txid);
            raw.extend(vout.to_le_bytes());
            raw.push(0);
            raw.extend(u32::MAX.to_le_bytes());
        }
        compact(&mut raw, outputs.len());
        for (value, script) in outputs {
            raw.extend(value.to_le_bytes());
            compact(&mut raw, script.len());
            raw.extend(script);
        }
        raw.extend(0u32.to_le_bytes());
        Tx {
            id: sha256d::Hash::hash(&raw).to_byte_array(),
            raw,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        }
    }

    fn txid(&self) -> String {
        display(&self.id)
    }

    fn standin(&self) -> StandinTx {
        StandinTx {
            txid: self.txid(),
            raw: self.raw.clone(),
        }
    }
}

fn display(internal: &[u8; 32]) -> String {
    let mut b = *internal;
    b.reverse();
    hex::encode(b)
}

fn merkle_root(mut level: Vec<[u8; 32]>) -> [u8; 32] {
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            level.push(*level.last().unwrap());
        }
        level = level
            .chunks(2)
            .map(|p| sha256d::Hash::hash(&[p[0], p[1]].concat()).to_byte_array())
            .collect();
    }
    level[0]
}

struct Block {
    header: Vec<u8>,
    /// Keccak-256 of the blob, internal order.
    hash: [u8; 32],
    txs: Vec<Tx>,
}

impl Block {
    fn time(&self) -> u32 {
        u32::from_le_bytes(self.header[68..72].try_into().unwrap())
    }

    fn standin(&self) -> StandinBlock {
        let mut raw = self.header.clone();
        compact(&mut raw, self.txs.len());
        for t in &self.txs {
            raw.extend(&t.raw);
        }
        StandinBlock {
            hash: display(&self.hash),
            raw,
            txs: self.txs.iter().map(Tx::standin).collect(),
        }
    }
}

/// A block as kevacoind's `generatetoaddress` makes them on regtest: nonce = height, and a
/// 72-byte blob whose prev_id is the double SHA-256 of the 80 bytes.
fn make_block(height: u32, prev: [u8; 32], txs: Vec<Tx>, salt: u8) -> Block {
    let mut header = 0x2000_0000u32.to_le_bytes().to_vec();
    header.extend(prev);
    header.extend(merkle_root(txs.iter().map(|t| t.id).collect()));
    header.extend((1_600_000_000 + height * 120 + u32::from(salt)).to_le_bytes());
    header.extend(0x207f_ffffu32.to_le_bytes());
    header.extend(height.to_le_bytes());
    let mut blob = vec![10u8, 0, 0];
    blob.extend(sha256d::Hash::hash(&header).to_byte_array());
    blob.extend(u32::from(salt).to_le_bytes());
    blob.extend([0u8; 32]);
    blob.push(0);
    assert_eq!(blob.len(), 72);
    header.push(72);
    header.extend(&blob);
    Block {
        hash: Keccak256::digest(&blob).into(),
        header,
        txs,
    }
}

/// One namespace operation as the test knows it.
#[derive(Clone, Debug)]
struct Keva {
    tx: Tx,
    ns: Vec<u8>,
    op: Op,
    height: u32,
    pos: usize,
}

struct Chain {
    blocks: Vec<Block>,
    ops: Vec<Keva>,
    coinbases: u32,
}

impl Chain {
    fn new() -> Chain {
        let g: Value = serde_json::from_str(GENESIS).unwrap();
        let raw = hex::decode(g["block"].as_str().unwrap()).unwrap();
        let header = raw[..153].to_vec();
        let mut hash = hex::decode(g["hash"].as_str().unwrap()).unwrap();
        hash.reverse();
        let genesis_tx = Tx {
            id: {
                let mut m = hex::decode(g["merkleroot"].as_str().unwrap()).unwrap();
                m.reverse();
                m.try_into().unwrap()
            },
            raw: raw[154..].to_vec(),
            inputs: vec![],
            outputs: vec![],
        };
        Chain {
            blocks: vec![Block {
                header,
                hash: hash.try_into().unwrap(),
                txs: vec![genesis_tx],
            }],
            ops: Vec::new(),
            coinbases: 0,
        }
    }

    fn tip(&self) -> &Block {
        self.blocks.last().unwrap()
    }

    fn coinbase(&mut self, owner_tag: u8) -> Tx {
        self.coinbases += 1;
        Tx::new(
            1,
            &[],
            &[(50 * 100_000_000, owner(owner_tag))],
            self.coinbases,
        )
    }

    /// Mines `txs` (after a coinbase paying `miner`) and records their keva operations.
    fn mine(&mut self, miner: u8, txs: Vec<(Tx, Option<KevaOutput>)>) -> &Block {
        let height = self.blocks.len() as u32;
        let mut all = vec![self.coinbase(miner)];
        for (pos, (tx, keva)) in txs.into_iter().enumerate() {
            if let Some((ns, op)) = keva {
                self.ops.push(Keva {
                    tx: tx.clone(),
                    ns,
                    op,
                    height,
                    pos: pos + 1,
                });
            }
            all.push(tx);
        }
        let b = make_block(height, self.tip().hash, all, 0);
        self.blocks.push(b);
        self.tip()
    }

    fn standin_blocks(&self) -> Vec<StandinBlock> {
        self.blocks.iter().map(Block::standin).collect()
    }

    fn op(&self, tx: &Tx) -> &Keva {
        self.ops.iter().find(|k| k.tx.id == tx.id).unwrap()
    }
}

/// A namespace id: 0x35 ‖ HASH160(prevout txid ‖ decimal vout) of the registration's first input.
fn namespace_of(prevout: &([u8; 32], u32)) -> Vec<u8> {
    let mut pre = prevout.0.to_vec();
    pre.extend(prevout.1.to_string().as_bytes());
    let mut ns = vec![0x35];
    ns.extend(hash160::Hash::hash(&pre).to_byte_array());
    ns
}

/// A keva transaction (version 0x7100) spending `input`: the keva output (vout 0) and change.
fn keva_tx(input: ([u8; 32], u32), ns: &[u8], op: &Op, owner_tag: u8) -> Tx {
    Tx::new(
        0x7100,
        &[input],
        &[
            (LOCKED, keva_script(ns, op, owner_tag)),
            (2_000_000, owner(owner_tag)),
        ],
        0,
    )
}

// ---------------------------------------------------------------------------------------------
// The test's own index rules

/// `d1 ‖ push(name) ‖ OP_0 ‖ OP_2DROP OP_DROP OP_RETURN`, hashed as wallets do.
fn index_sh(name: &[u8]) -> String {
    let mut s = vec![0xd1];
    push(&mut s, name);
    s.extend([0x00, 0x6d, 0x75, 0x6a]);
    let mut h = sha256::Hash::hash(&s).to_byte_array();
    h.reverse();
    hex::encode(h)
}

fn script_sh(script: &[u8]) -> String {
    let mut h = sha256::Hash::hash(script).to_byte_array();
    h.reverse();
    hex::encode(h)
}

fn social(prefix: u8, target: &Tx) -> Vec<u8> {
    let mut k = vec![0x00, prefix];
    k.extend(hex::decode(target.txid()).unwrap());
    k
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

// ---------------------------------------------------------------------------------------------
// The scenario

struct World {
    chain: Chain,
    ns1: Vec<u8>,
    ns2: Vec<u8>,
    reg1: Tx,
    put1: Tx,
    reply: Tx,
    put1b: Tx,
    del: Tx,
    /// The namespace-1 operation whose keva output the next one spends.
    last1: Tx,
}

fn build() -> World {
    let mut c = Chain::new();
    let a = 0xaa;
    let b = 0xbb;
    let cb1 = c.mine(a, vec![]).txs[0].clone();
    let cb2 = c.mine(b, vec![]).txs[0].clone();
    c.mine(0xcc, vec![]);
    // 4: two namespaces.
    let ns1 = namespace_of(&(cb1.id, 0));
    let ns2 = namespace_of(&(cb2.id, 0));
    let reg1_op = Op::Reg(b"Alice blog".to_vec());
    let reg2_op = Op::Reg(b"Bob".to_vec());
    let reg1 = keva_tx((cb1.id, 0), &ns1, &reg1_op, a);
    let reg2 = keva_tx((cb2.id, 0), &ns2, &reg2_op, b);
    c.mine(
        0xcc,
        vec![
            (reg1.clone(), Some((ns1.clone(), reg1_op))),
            (reg2.clone(), Some((ns2.clone(), reg2_op))),
        ],
    );
    // 5: a post with hashtags; Bob's profile (single-quoted JSON, as the wallet writes it).
    let put1_op = Op::Put(b"title".to_vec(), b"Hello #Keva world #NFT".to_vec());
    let put1 = keva_tx((reg1.id, 0), &ns1, &put1_op, a);
    let prof_op = Op::Put(
        ROOT_KEY.to_vec(),
        br#"{'displayName': 'Bobby', 'bio': 'hi'}"#.to_vec(),
    );
    let profile2 = keva_tx((reg2.id, 0), &ns2, &prof_op, b);
    c.mine(
        0xcc,
        vec![
            (put1.clone(), Some((ns1.clone(), put1_op))),
            (profile2.clone(), Some((ns2.clone(), prof_op))),
        ],
    );
    // 6: Bob replies to the post; Alice posts again.
    let reply_op = Op::Put(social(1, &put1), "nice #keva ünïcode".as_bytes().to_vec());
    let reply = keva_tx((profile2.id, 0), &ns2, &reply_op, b);
    let put1b_op = Op::Put(b"k2".to_vec(), b"v2 #Other".to_vec());
    let put1b = keva_tx((put1.id, 0), &ns1, &put1b_op, a);
    c.mine(
        0xcc,
        vec![
            (reply.clone(), Some((ns2.clone(), reply_op))),
            (put1b.clone(), Some((ns1.clone(), put1b_op))),
        ],
    );
    // 7: Bob shares the post; Alice likes it (an empty value is OP_0).
    let share_op = Op::Put(social(2, &put1), b"shared".to_vec());
    let share = keva_tx((reply.id, 0), &ns2, &share_op, b);
    let like_op = Op::Put(social(3, &put1), Vec::new());
    let like = keva_tx((put1b.id, 0), &ns1, &like_op, a);
    c.mine(
        0xcc,
        vec![
            (share.clone(), Some((ns2.clone(), share_op))),
            (like.clone(), Some((ns1.clone(), like_op))),
        ],
    );
    // 8: Alice deletes k2.
    let del_op = Op::Del(b"k2".to_vec());
    let del = keva_tx((like.id, 0), &ns1, &del_op, a);
    c.mine(0xcc, vec![(del.clone(), Some((ns1.clone(), del_op)))]);
    // 9: 27 chained puts in one block: namespace 1 now has 32 entries, more than a page.
    let mut last = del.clone();
    let mut txs = Vec::new();
    for i in 0..27 {
        let op = Op::Put(
            format!("p{i}").into_bytes(),
            format!("value {i}").into_bytes(),
        );
        let t = keva_tx((last.id, 0), &ns1, &op, a);
        txs.push((t.clone(), Some((ns1.clone(), op))));
        last = t;
    }
    c.mine(0xcc, txs);
    World {
        chain: c,
        ns1,
        ns2,
        reg1,
        put1,
        reply,
        put1b,
        del,
        last1: last,
    }
}

// ---------------------------------------------------------------------------------------------
// Expected answers, from the test's own knowledge of the chain

impl World {
    fn time(&self, height: u32) -> u32 {
        self.chain.blocks[height as usize].time()
    }

    /// Every operation whose transaction the index `name` lists, in chain order.
    fn history(&self, name: &[u8]) -> Vec<&Keva> {
        self.chain
            .ops
            .iter()
            .filter(|k| self.names_of(k).iter().any(|n| n == name))
            .collect()
    }

    /// The index names a confirmed operation belongs to.
    fn names_of(&self, k: &Keva) -> Vec<Vec<u8>> {
        let mut names = vec![k.ns.clone()];
        let (key, value) = match &k.op {
            Op::Reg(n) => (n.clone(), None),
            Op::Put(key, v) => (key.clone(), Some(v.clone())),
            Op::Del(key) => (key.clone(), None),
        };
        if key.first() == Some(&0) {
            names.push(key.clone());
        }
        names.push(match &k.op {
            Op::Reg(_) => cat(&k.ns, ROOT_KEY),
            _ => cat(&k.ns, &key),
        });
        if value.is_some() {
            names.extend(self.tags_of(k).into_iter().map(String::into_bytes));
        }
        names
    }

    /// Hashtags, written out by hand for each post of the scenario.
    fn tags_of(&self, k: &Keva) -> Vec<String> {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        if k.tx.id == self.put1.id {
            t(&["keva", "nft"])
        } else if k.tx.id == self.reply.id {
            t(&["keva"])
        } else if k.tx.id == self.put1b.id {
            t(&["other"])
        } else if let Op::Put(key, _) = &k.op {
            if key == b"mem" {
                t(&["mempooltag"])
            } else {
                vec![]
            }
        } else {
            vec![]
        }
    }

    fn count(&self, name: &[u8]) -> usize {
        self.history(name).len()
    }

    fn kv_fields(op: &Op, item: &mut Value) {
        match op {
            Op::Reg(n) => item["key"] = json!(b64(n)),
            Op::Put(k, v) => {
                item["key"] = json!(b64(k));
                item["value"] = json!(b64(v));
            }
            Op::Del(k) => item["key"] = json!(b64(k)),
        }
    }

    fn kind(op: &Op) -> &'static str {
        match op {
            Op::Reg(_) => "REG",
            Op::Put(..) => "PUT",
            Op::Del(_) => "DEL",
        }
    }

    fn keyvalue_item(&self, k: &Keva) -> Value {
        let mut item = json!({
            "tx_hash": k.tx.txid(),
            "height": k.height,
            "replies": self.count(&social(1, &k.tx)),
            "shares": self.count(&social(2, &k.tx)),
            "likes": self.count(&social(3, &k.tx)),
            "type": Self::kind(&k.op),
            "time": self.time(k.height),
        });
        Self::kv_fields(&k.op, &mut item);
        item
    }

    /// (displayName, shortCode) of a namespace.
    fn profile(&self, ns: &[u8]) -> (Value, Value) {
        let root = self.history(&cat(ns, ROOT_KEY));
        let first = root[0];
        let h = first.height.to_string();
        let short = format!("{}{h}{}", h.len(), first.pos);
        let name = match &root.last().unwrap().op {
            Op::Reg(n) => String::from_utf8(n.clone()).unwrap(),
            Op::Put(_, v) => {
                let j: Value = serde_json::from_str(
                    &String::from_utf8(v.clone()).unwrap().replace('\'', "\""),
                )
                .unwrap();
                j["displayName"].as_str().unwrap().to_string()
            }
            Op::Del(_) => unreachable!(),
        };
        (json!(name), json!(short))
    }

    fn hashtag_item(&self, k: &Keva) -> Value {
        let (name, short) = self.profile(&k.ns);
        let mut item = self.keyvalue_item(k);
        item["displayName"] = name;
        item["shortCode"] = short;
        item["namespace"] = json!(bitcoin::base58::encode_check(&k.ns));
        item
    }

    /// A page of `get_keyvalues`/`get_hashtag`: newest first, 25 at most, below `before`.
    fn page<'a>(&self, list: &[&'a Keva], before: Option<usize>) -> (Vec<&'a Keva>, usize) {
        let end = before.unwrap_or(list.len());
        let start = end.saturating_sub(25);
        (list[start..end].iter().rev().copied().collect(), start)
    }

    fn tx_info(&self, tx: &Tx, namespace_info: bool) -> Value {
        let (height, block) = self
            .chain
            .blocks
            .iter()
            .enumerate()
            .find(|(_, b)| b.txs.iter().any(|t| t.id == tx.id))
            .unwrap();
        let address = |s: &[u8]| {
            // Every script here is P2SH behind an optional keva prefix.
            let tag = s[s.len() - 21];
            owner_address(tag)
        };
        let o: Vec<Value> = tx
            .outputs
            .iter()
            .flat_map(|(v, s)| [json!(address(s)), json!(v)])
            .collect();
        let mut i: Vec<Value> = Vec::new();
        for (txid, vout) in &tx.inputs {
            let parent = self
                .chain
                .blocks
                .iter()
                .flat_map(|b| &b.txs)
                .find(|t| t.id == *txid)
                .unwrap();
            let (value, script) = &parent.outputs[*vout as usize];
            let same_block = block.txs.iter().any(|t| t.id == *txid);
            let addr = json!(address(script));
            match i.iter().position(|x| *x == addr) {
                Some(p) if !same_block => i[p + 1] = json!(i[p + 1].as_u64().unwrap() + value),
                _ => i.extend([addr, json!(value)]),
            }
        }
        let mut v = json!({"o": o, "t": block.time(), "h": height, "i": i});
        if let Some(k) = self.chain.ops.iter().find(|k| k.tx.id == tx.id) {
            v["n"] = json!([bitcoin::base58::encode_check(&k.ns), 0]);
            if namespace_info {
                let mut kv = json!({"op": match k.op {
                    Op::Reg(_) => 208, Op::Put(..) => 209, Op::Del(_) => 210 }});
                Self::kv_fields(&k.op, &mut kv);
                v["kv"] = kv;
            }
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Checks against the running server

fn env(d: &Standin, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("COIN", "Kevacoin".into()),
        ("NET", "regtest".into()),
        ("DAEMON_URL", d.url()),
        ("SERVICES", format!("tcp://127.0.0.1:{port}")),
        ("DAEMON_POLL_INTERVAL_BLOCKS", "100".into()),
        ("DAEMON_POLL_INTERVAL_MEMPOOL", "100".into()),
        ("PEER_DISCOVERY", "off".into()),
        ("BANNED_HASHTAGS", " Other, spam".into()),
        ("LOG_LEVEL", "info".into()),
    ]
}

fn result(c: &mut Conn, method: &str, params: Value) -> Value {
    let v = c.call(method, params.clone());
    assert!(
        v.get("error").is_none_or(Value::is_null),
        "{method} {params}: {v}"
    );
    v["result"].clone()
}

fn error(c: &mut Conn, method: &str, params: Value) -> String {
    let v = c.call(method, params.clone());
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {params} should fail: {v}"))
        .to_string()
}

/// Every page of `get_keyvalues` (or `get_hashtag`) of `name`, followed with the returned
/// cursors, checked against the expected pages.
fn check_pages(c: &mut Conn, w: &World, method: &str, name: &[u8], mempool: &[Value]) {
    let list = w.history(name);
    let field = if method.ends_with("hashtag") {
        "hashtags"
    } else {
        "keyvalues"
    };
    let mut before = None;
    let mut cursor = json!(-1);
    loop {
        let got = result(c, method, json!([index_sh(name), cursor]));
        let (page, start) = w.page(&list, before);
        let mut want: Vec<Value> = mempool.to_vec();
        want.extend(page.iter().map(|k| {
            if field == "hashtags" {
                w.hashtag_item(k)
            } else {
                w.keyvalue_item(k)
            }
        }));
        assert_eq!(
            got[field],
            json!(want),
            "{method} {} page below {cursor}",
            String::from_utf8_lossy(name)
        );
        if page.is_empty() {
            assert_eq!(got["min_tx_num"], -1);
            break;
        }
        cursor = got["min_tx_num"].clone();
        assert!(cursor.as_i64().unwrap() >= 0);
        before = Some(start);
    }
}

fn check_confirmed(c: &mut Conn, w: &World) {
    let tip = w.chain.blocks.len() as u64 - 1;
    assert_eq!(result(c, "blockchain.block.count", json!([])), tip);
    // Namespace indexes: everything, and more than one page of it for namespace 1.
    assert!(w.count(&w.ns1) > 25);
    check_pages(c, w, "blockchain.keva.get_keyvalues", &w.ns1, &[]);
    check_pages(c, w, "blockchain.keva.get_keyvalues", &w.ns2, &[]);
    // One key's history, the profile, a deleted key, the social indexes.
    for name in [
        cat(&w.ns1, b"title"),
        cat(&w.ns1, b"k2"),
        cat(&w.ns1, ROOT_KEY),
        cat(&w.ns2, ROOT_KEY),
        social(1, &w.put1),
        social(2, &w.put1),
        social(3, &w.put1),
    ] {
        assert!(!w.history(&name).is_empty());
        check_pages(c, w, "blockchain.keva.get_keyvalues", &name, &[]);
    }
    assert_eq!(w.count(&cat(&w.ns1, b"k2")), 2);
    // Hashtags: lower-cased, confirmed only; a banned one answers empty.
    for tag in ["keva", "nft"] {
        assert!(!w.history(tag.as_bytes()).is_empty());
        check_pages(c, w, "blockchain.keva.get_hashtag", tag.as_bytes(), &[]);
    }
    assert_eq!(
        result(
            c,
            "blockchain.keva.get_hashtag",
            json!([index_sh(b"other"), -1])
        ),
        json!({"hashtags": [], "min_tx_num": -1})
    );
    // The post's reactions.
    let k = w.chain.op(&w.put1);
    let (name, short) = w.profile(&k.ns);
    assert_eq!(short, "141");
    assert_eq!(name, "Alice blog");
    let reply = w.chain.op(&w.reply);
    let (bob, bob_short) = w.profile(&reply.ns);
    assert_eq!(
        (bob.as_str(), bob_short.as_str()),
        (Some("Bobby"), Some("142"))
    );
    let mut reply_item = json!({
        "tx_hash": w.reply.txid(), "height": reply.height, "type": "PUT",
        "sender": {"shortCode": bob_short, "displayName": bob},
        "time": w.time(reply.height),
    });
    World::kv_fields(&reply.op, &mut reply_item);
    let mut want = json!({
        "tx_hash": w.put1.txid(), "replies": [reply_item], "shares": 1, "likes": 1,
        "type": "PUT", "displayName": name, "shortCode": short, "height": k.height,
        "time": w.time(k.height),
    });
    World::kv_fields(&k.op, &mut want);
    assert_eq!(
        result(
            c,
            "blockchain.keva.get_keyvalue_reactions",
            json!([w.put1.txid(), -1])
        ),
        json!({ "result": want })
    );
    assert_eq!(
        result(
            c,
            "blockchain.keva.get_keyvalue_reactions",
            json!(["11".repeat(32), -1])
        ),
        json!({"result": {}})
    );
    // Transaction info: keva and plain transactions, coinbases, unknown txids.
    let cb1 = &w.chain.blocks[1].txs[0];
    let txs = [&w.reg1, &w.put1, &w.reply, &w.del, cb1, &w.last1];
    let ids: Vec<String> = txs
        .iter()
        .map(|t| t.txid())
        .chain(["22".repeat(32)])
        .collect();
    for ns_info in [true, false] {
        let mut want: Vec<Value> = txs.iter().map(|t| w.tx_info(t, ns_info)).collect();
        want.push(json!({}));
        assert_eq!(
            result(
                c,
                "blockchain.keva.get_transactions_info",
                json!([ids, ns_info])
            ),
            json!(want)
        );
    }
    // The owner's history holds its namespace operations: the keva prefix is not hashed.
    let hist = result(
        c,
        "blockchain.scripthash.get_history",
        json!([script_sh(&owner(0xaa))]),
    );
    let txids: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["tx_hash"].as_str().unwrap())
        .collect();
    for t in [&w.reg1, &w.put1, &w.del, &w.last1] {
        assert!(txids.contains(&t.txid().as_str()), "{}", t.txid());
    }
    // Headers: the full 153 bytes, with checkpoint proofs over Keccak-256 leaves.
    let cp = tip;
    let got = result(c, "blockchain.block.header", json!([3, cp]));
    assert_eq!(got["header"], hex::encode(&w.chain.blocks[3].header));
    let leaves: Vec<[u8; 32]> = w.chain.blocks.iter().map(|b| b.hash).collect();
    assert_eq!(got["root"], display(&merkle_root(leaves.clone())));
    let mut h = leaves[3];
    let mut idx = 3;
    for sibling in got["branch"].as_array().unwrap() {
        let mut s = hex::decode(sibling.as_str().unwrap()).unwrap();
        s.reverse();
        let pair = if idx % 2 == 0 {
            [h.to_vec(), s].concat()
        } else {
            [s, h.to_vec()].concat()
        };
        h = sha256d::Hash::hash(&pair).to_byte_array();
        idx /= 2;
    }
    assert_eq!(display(&h), got["root"].as_str().unwrap());
    // Header ranges: variable-length headers, concatenated.
    let all: Vec<u8> = w
        .chain
        .blocks
        .iter()
        .flat_map(|b| b.header.clone())
        .collect();
    let got = result(c, "blockchain.block.headers", json!([0, tip + 5]));
    assert_eq!(got["count"], tip + 1);
    assert_eq!(got["hex"], hex::encode(&all));
    let got = result(c, "blockchain.headers.subscribe", json!([]));
    assert_eq!(got["hex"], hex::encode(&w.chain.tip().header));
    // Errors, with the fork's texts.
    let e = error(
        c,
        "blockchain.keva.get_transactions_info",
        json!([ids, "yes"]),
    );
    assert_eq!(e, "\"namespace_info\" must be a boolean");
    let e = error(
        c,
        "blockchain.keva.get_transactions_info",
        json!(["ab", true]),
    );
    assert_eq!(e, "expected a list of transaction hashes");
    let many: Vec<String> = (0..201).map(|_| "33".repeat(32)).collect();
    let e = error(
        c,
        "blockchain.keva.get_transactions_info",
        json!([many, true]),
    );
    assert_eq!(e, "too many transactions, max: 200");
    let e = error(c, "blockchain.keva.get_keyvalues", json!(["zz", -1]));
    assert!(e.contains("is not a valid script hash"), "{e}");
    let e = error(
        c,
        "blockchain.keva.get_keyvalue_reactions",
        json!(["zz", -1]),
    );
    assert!(e.contains("should be a transaction hash"), "{e}");
}

fn wait_tip(port: u16, w: &World, mempool: &Value) {
    let tip = w.chain.blocks.len() as u64 - 1;
    wait_caught_up(port, tip, &script_sh(&owner(0xaa)), mempool, "Sextant");
}

#[test]
fn keva_methods_answer_as_the_fork_on_a_built_chain() {
    let mut w = build();
    let d = Standin::start(StandinConfig::bitcoind("regtest"), w.chain.standin_blocks());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut sx = start_sextant(&env(&d, port), dir.path());
    sx.wait_listening(port);
    wait_tip(port, &w, &json!([]));
    // As KevaWallet connects (BlueElectrum.js: `initElectrum({client: 'bluewallet', version:
    // '1.4'})`): protocol 1.4, whatever newer versions Sextant speaks.
    let mut c = Conn::open(port);
    let v = c.call("server.version", json!(["bluewallet", "1.4"]));
    assert_eq!(v["result"][1], "1.4", "{v}");
    check_confirmed(&mut c, &w);
    // At 1.6 headers come as a list, each a whole Kevacoin header (80 bytes and the CryptoNote
    // blob), split at the index's own header boundaries.
    let mut c16 = Conn::session_at(port, &json!(["1.4", "1.6"]), "1.6");
    let n = w.chain.blocks.len();
    let got = result(&mut c16, "blockchain.block.headers", json!([0, n]));
    let each: Vec<String> = w.chain.blocks[..n]
        .iter()
        .map(|b| hex::encode(&b.header))
        .collect();
    assert_eq!(got, json!({"count": n, "max": 2016, "headers": each}));

    // A put in the mempool: first on every page at height 0, in its key's index, not under its
    // hashtag; transaction info with h = t = -1.
    let mem_op = Op::Put(b"mem".to_vec(), b"#MempoolTag".to_vec());
    let mem = keva_tx((w.last1.id, 0), &w.ns1, &mem_op, 0xaa);
    d.set_mempool(vec![mem.standin()]);
    let mempool_entry = |c: &mut Conn| {
        result(
            c,
            "blockchain.scripthash.get_mempool",
            json!([script_sh(&owner(0xaa))]),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while mempool_entry(&mut c).as_array().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "mempool tx never seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut mem_item = json!({
        "tx_hash": mem.txid(), "height": 0, "replies": 0, "shares": 0, "likes": 0, "type": "PUT",
    });
    World::kv_fields(&mem_op, &mut mem_item);
    check_pages(
        &mut c,
        &w,
        "blockchain.keva.get_keyvalues",
        &w.ns1,
        &[mem_item.clone()],
    );
    let got = result(
        &mut c,
        "blockchain.keva.get_keyvalues",
        json!([index_sh(&cat(&w.ns1, b"mem")), -1]),
    );
    assert_eq!(got, json!({"keyvalues": [mem_item], "min_tx_num": -1}));
    assert_eq!(
        result(
            &mut c,
            "blockchain.keva.get_hashtag",
            json!([index_sh(b"mempooltag"), -1])
        ),
        json!({"hashtags": [], "min_tx_num": -1})
    );
    let info = result(
        &mut c,
        "blockchain.keva.get_transactions_info",
        json!([[mem.txid()], true]),
    );
    assert_eq!(info[0]["h"], -1);
    assert_eq!(info[0]["t"], -1);
    assert_eq!(info[0]["kv"]["op"], 209);
    assert_eq!(info[0]["i"], json!([owner_address(0xaa), LOCKED]));

    // It confirms: now under its hashtag too, and the hashtag's subscribers hear of it.
    let tag_sh = index_sh(b"mempooltag");
    let mut sub = Conn::session(port);
    assert_eq!(
        result(&mut sub, "blockchain.scripthash.subscribe", json!([tag_sh])),
        Value::Null
    );
    let before_reorg = w.chain.blocks.len();
    w.chain.mine(
        0xcc,
        vec![(mem.clone(), Some((w.ns1.clone(), mem_op.clone())))],
    );
    d.append(vec![w.chain.tip().standin()]);
    wait_tip(port, &w, &json!([]));
    check_confirmed(&mut c, &w);
    check_pages(
        &mut c,
        &w,
        "blockchain.keva.get_hashtag",
        b"mempooltag",
        &[],
    );
    assert_eq!(w.count(b"mempooltag"), 1);
    let status = hex::encode(
        sha256::Hash::hash(format!("{}:{}:", mem.txid(), before_reorg).as_bytes()).to_byte_array(),
    );
    let heard = |sub: &mut Conn, want: Value| {
        let note = json!([tag_sh, want]);
        sub.notes_until(Duration::from_secs(60), Duration::ZERO, |n| {
            n.iter().any(|x| x["params"] == note)
        });
        assert!(
            notes_of(sub, "blockchain.scripthash.subscribe").contains(&note),
            "{:?}",
            sub.notes
        );
    };
    heard(&mut sub, json!(status));

    // A reorg replaces that block with one without the put: gone from every index.
    w.chain.blocks.truncate(before_reorg);
    w.chain.ops.retain(|k| k.tx.id != mem.id);
    let replacement = make_block(
        before_reorg as u32,
        w.chain.tip().hash,
        vec![Tx::new(1, &[], &[(1, owner(0xdd))], 9999)],
        1,
    );
    let second = make_block(
        before_reorg as u32 + 1,
        replacement.hash,
        vec![Tx::new(1, &[], &[(1, owner(0xdd))], 10000)],
        1,
    );
    w.chain.blocks.push(replacement);
    w.chain.blocks.push(second);
    d.set_mempool(vec![]);
    d.reorg(
        before_reorg,
        w.chain.blocks[before_reorg..]
            .iter()
            .map(Block::standin)
            .collect(),
    );
    wait_tip(port, &w, &json!([]));
    heard(&mut sub, Value::Null);
    check_confirmed(&mut c, &w);
    for name in [w.ns1.clone(), cat(&w.ns1, b"mem"), b"mempooltag".to_vec()] {
        let got = result(
            &mut c,
            "blockchain.keva.get_keyvalues",
            json!([index_sh(&name), -1]),
        );
        let listed: Vec<&Value> = got["keyvalues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["tx_hash"] == mem.txid())
            .collect();
        assert!(
            listed.is_empty(),
            "{}: {got}",
            String::from_utf8_lossy(&name)
        );
        let hist = result(
            &mut c,
            "blockchain.scripthash.get_history",
            json!([index_sh(&name)]),
        );
        assert!(
            !hist.to_string().contains(&mem.txid()),
            "{}",
            String::from_utf8_lossy(&name)
        );
    }
    assert_eq!(
        result(
            &mut c,
            "blockchain.keva.get_transactions_info",
            json!([[mem.txid()], true])
        ),
        json!([{}])
    );
    assert_eq!(
        result(
            &mut c,
            "blockchain.keva.get_keyvalue_reactions",
            json!([mem.txid(), -1])
        ),
        json!({"result": {}})
    );
    sx.assert_running();
}
