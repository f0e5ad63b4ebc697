//! The Komodo parsers (`equihash` headers, `zcash` transactions) against real blocks and
//! transactions: Komodo, RICK and test-chain blocks, Zcash-family blocks from ElectrumX's test
//! suite (v1–v4, JoinSplits, Sapling spends and outputs), dPoW notarizations and the Komodo DeFi
//! Framework's test transactions; plus corrupted variants of them.
//!
//! Vectors are read from `tests/data/vectors/komodo` (copies kept in the tree so a fresh clone is
//! self-contained; provenance in its README.md), falling back to the shared reference folder
//! beside the checkout.

mod common;

use bitcoin::hashes::{sha256, Hash};
use common::komodo::{load_vector as load, read_vector as read};
use serde_json::Value;
use sextant::coin::reader::Reader;
use sextant::coin::{
    equihash, zcash, Chain, CoinRegistry, HeaderFamily, ParseError, ParsedBlock, TxFamily,
};
use sextant::types::{BlockHash, ScriptHash, Txid};

const KOMODO: Chain = Chain {
    header: HeaderFamily::Equihash,
    tx: TxFamily::Zcash,
};

const ELECTRUMX_BLOCKS: [&str; 8] = [
    "electrumx/hush_mainnet_160000.json",
    "electrumx/komodo_mainnet_491000.json",
    "electrumx/zcash_mainnet_1000.json",
    "electrumx/zcash_testnet_242100.json",
    "electrumx/zcash_testnet_283046.json",
    "electrumx/zcash_testnet_304290.json",
    "electrumx/zclassic_mainnet_1001.json",
    "electrumx/zelcash_mainnet_100000.json",
];

const ZEBRA_BLOCKS: [&str; 19] = [
    "zebra-komodo/block-kmdmain-0-000-000.txt",
    "zebra-komodo/block-kmdmain-0-000-001.txt",
    "zebra-komodo/block-kmdmain-0-000-002.txt",
    "zebra-komodo/block-kmdmain-0-000-003.txt",
    "zebra-komodo/block-kmdmain-0-000-004.txt",
    "zebra-komodo/block-kmdmain-0-000-005.txt",
    "zebra-komodo/block-kmdmain-0-000-006.txt",
    "zebra-komodo/block-kmdmain-0-000-007.txt",
    "zebra-komodo/block-kmdmain-0-000-008.txt",
    "zebra-komodo/block-kmdmain-0-000-009.txt",
    "zebra-komodo/block-kmdmain-0-000-010.txt",
    "zebra-komodo/block-kmdmain-0-899-012.txt",
    "zebra-komodo/block-kmdmain-1-140-408.txt",
    "zebra-komodo/block-kmdmain-1-140-500.txt",
    "zebra-komodo/block-kmdmain-1-140-507.txt",
    "zebra-komodo/block-kmdmain-3-140-508.txt",
    "zebra-komodo/block-kmdtest-0-000-126.txt",
    "zebra-komodo/block-kmdtest-0-000-127.txt",
    "zebra-komodo/block-rick-0-899-012.txt",
];

const NOTARIZATION_BLOCK: &str = "zebra-komodo/block-kmdmain-3-140-508.txt";
const EXPECTED: &str = "expected_computed.json";

fn text<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key:?} is not a string in {v:.80}"))
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim()).unwrap_or_else(|e| panic!("bad hex: {e}"))
}

fn number(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key:?} is not a number in {v:.80}")) as usize
}

/// A raw block: the `block` field of an ElectrumX JSON, or a one-line hex file.
fn raw_block(name: &str) -> Vec<u8> {
    if name.ends_with(".json") {
        unhex(text(&load(name), "block"))
    } else {
        unhex(&read(name))
    }
}

fn parse(name: &str) -> (Vec<u8>, ParsedBlock) {
    let raw = raw_block(name);
    let block = KOMODO
        .parse_block(&raw)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (raw, block)
}

/// The block's merkle root by the server's own merkle code (the one behind `get_merkle` and
/// `id_from_pos`), so real blocks check it too.
fn merkle_root(txids: &[Txid]) -> Txid {
    let leaves: Vec<[u8; 32]> = txids.iter().map(|t| t.0).collect();
    Txid(sextant::query::merkle::root(&leaves, None))
}

/// Cuts every transaction out of the block with the family's own readers and checks that
/// `Chain::parse_tx` on those bytes alone gives what the block parse gave. Returns each
/// transaction's bytes.
fn txs_standalone<'a>(name: &str, raw: &'a [u8], block: &ParsedBlock) -> Vec<&'a [u8]> {
    let mut r = Reader::new(raw);
    equihash::read_header(&mut r).unwrap();
    assert_eq!(r.read_count(1).unwrap(), block.txs.len(), "{name}");
    let mut out = Vec::new();
    for (index, tx) in block.txs.iter().enumerate() {
        let start = r.position();
        zcash::read_tx(&mut r).unwrap();
        let bytes = r.since(start);
        let alone = KOMODO
            .parse_tx(bytes)
            .unwrap_or_else(|e| panic!("{name} tx {index} alone: {e}"));
        assert_eq!(&alone, tx, "{name}: tx {index} parsed alone");
        out.push(bytes);
    }
    assert_eq!(r.remaining(), 0, "{name}");
    out
}

/// Compares a parsed block with `expected_computed.json`: sizes, hashes, merkle root, and for
/// every transaction its txid, size and transparent input and output counts.
fn check_expected(name: &str, raw: &[u8], block: &ParsedBlock) {
    let expected = load(EXPECTED);
    let e = &expected["blocks"][name];
    assert!(e.is_object(), "{name} missing from {EXPECTED}");
    assert_eq!(raw.len(), number(e, "block_size"), "{name}: block size");
    assert_eq!(block.header.len(), number(e, "header_size"), "{name}");
    assert_eq!(block.header, raw[..block.header.len()], "{name}");
    assert_eq!(
        block.header.len() - equihash::BASE_HEADER_LEN - 3,
        number(e, "solution_len"),
        "{name}: Equihash solution"
    );
    assert_eq!(block.hash.to_hex(), text(e, "hash"), "{name}: block hash");
    assert_eq!(
        block.prev_hash.to_hex(),
        text(e, "prev"),
        "{name}: prev hash"
    );
    let txids: Vec<Txid> = block.txs.iter().map(|t| t.txid).collect();
    assert_eq!(
        merkle_root(&txids).to_hex(),
        text(e, "merkle_root"),
        "{name}: merkle root"
    );
    let shapes = e["txs"].as_array().unwrap();
    assert_eq!(block.txs.len(), number(e, "tx_count"), "{name}");
    assert_eq!(block.txs.len(), shapes.len(), "{name}");
    for (index, (tx, shape)) in block.txs.iter().zip(shapes).enumerate() {
        let what = format!("{name} tx {index}");
        assert_eq!(tx.txid.to_hex(), text(shape, "txid"), "{what}: txid");
        assert_eq!(tx.vsize as usize, number(shape, "size"), "{what}: vsize");
        assert_eq!(tx.outputs.len(), number(shape, "n_out"), "{what}: outputs");
        // The coinbase's input spends nothing and is not listed.
        let n_in = number(shape, "n_in");
        let listed = if index == 0 { n_in - 1 } else { n_in };
        assert_eq!(tx.inputs.len(), listed, "{what}: inputs");
    }
    txs_standalone(name, raw, block);
}

#[test]
fn electrumx_zcash_family_blocks() {
    for name in ELECTRUMX_BLOCKS {
        let v = load(name);
        let (raw, block) = parse(name);
        assert_eq!(block.hash.to_hex(), text(&v, "hash"), "{name}: block hash");
        if let Some(prev) = v.get("previousblockhash") {
            assert_eq!(block.prev_hash.to_hex(), prev.as_str().unwrap(), "{name}");
        }
        if let Some(root) = v.get("merkleroot") {
            let txids: Vec<Txid> = block.txs.iter().map(|t| t.txid).collect();
            assert_eq!(merkle_root(&txids).to_hex(), root.as_str().unwrap());
        }
        let expected: Vec<&str> = v["tx"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let got: Vec<String> = block.txs.iter().map(|t| t.txid.to_hex()).collect();
        assert_eq!(got, expected, "{name}: txids");
        check_expected(name, &raw, &block);
    }
}

#[test]
fn komodo_rick_and_test_chain_blocks() {
    for name in ZEBRA_BLOCKS {
        let (raw, block) = parse(name);
        check_expected(name, &raw, &block);
    }
}

#[test]
fn kmd_blocks_0_to_10_link_from_the_genesis() {
    let coin = CoinRegistry::embedded()
        .unwrap()
        .lookup("Komodo", "mainnet")
        .unwrap();
    assert_eq!(coin.chain, KOMODO);
    let blocks: Vec<ParsedBlock> = ZEBRA_BLOCKS[..=10].iter().map(|n| parse(n).1).collect();
    assert_eq!(blocks[0].hash, coin.genesis_hash);
    assert_eq!(blocks[0].prev_hash, BlockHash([0; 32]));
    for pair in blocks.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(
            KOMODO.header_prev_hash(&pair[1].header),
            KOMODO.header_hash(&pair[0].header)
        );
    }
    // The genesis coinbase is Bitcoin's.
    assert_eq!(
        blocks[0].txs[0].txid.to_hex(),
        "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
    );
}

#[test]
fn rick_test_headers_hash_and_link() {
    let headers = load("mm2/RICK_HEADERS.json");
    let expected = load(EXPECTED);
    let expected = expected["mm2/RICK_HEADERS.json"].as_array().unwrap();
    let headers = headers.as_array().unwrap();
    assert_eq!(headers.len(), expected.len());
    let mut prev: Option<BlockHash> = None;
    for (h, e) in headers.iter().zip(expected) {
        let raw = unhex(h.as_str().unwrap());
        let mut r = Reader::new(&raw);
        assert_eq!(equihash::read_header(&mut r).unwrap(), &raw[..]);
        assert_eq!(raw.len(), number(e, "size"));
        let hash = KOMODO.header_hash(&raw);
        assert_eq!(hash.to_hex(), text(e, "hash"));
        assert_eq!(KOMODO.header_prev_hash(&raw).to_hex(), text(e, "prev"));
        if let Some(p) = prev {
            assert_eq!(KOMODO.header_prev_hash(&raw), p);
        }
        prev = Some(hash);
    }
}

/// A transaction's transparent output scripts, read independently of the parser under test
/// (Sapling v4 or Sprout v1 layout up to the outputs).
fn output_scripts(tx: &[u8]) -> Vec<Vec<u8>> {
    let mut r = Reader::new(tx);
    let header = r.read_u32_le().unwrap();
    if header >> 31 == 1 {
        r.skip(4).unwrap();
    }
    for _ in 0..r.read_compact_size().unwrap() {
        r.skip(36).unwrap();
        r.read_var_bytes().unwrap();
        r.skip(4).unwrap();
    }
    (0..r.read_compact_size().unwrap())
        .map(|_| {
            r.skip(8).unwrap();
            r.read_var_bytes().unwrap().to_vec()
        })
        .collect()
}

#[test]
fn notarization_p2pk_output_has_its_own_scripthash() {
    let (raw, block) = parse(NOTARIZATION_BLOCK);
    let txs = txs_standalone(NOTARIZATION_BLOCK, &raw, &block);
    assert_eq!(block.txs.len(), 5);
    for (index, (tx, bytes)) in block.txs.iter().zip(&txs).enumerate().skip(1) {
        // 13 notary inputs, a P2PK output to the notary address, an OP_RETURN notarization.
        assert_eq!(tx.inputs.len(), 13, "tx {index}");
        let scripts = output_scripts(bytes);
        assert_eq!(scripts.len(), 2);
        let p2pk = &scripts[0];
        assert_eq!(p2pk.len(), 35, "tx {index}: 33-byte key push + OP_CHECKSIG");
        assert_eq!((p2pk[0], p2pk[34]), (0x21, 0xac));
        assert_eq!(hex::encode(&p2pk[1..5]), "020e46e7");
        let sha = sha256::Hash::hash(p2pk).to_byte_array();
        assert_eq!(
            tx.outputs[0].scripthash,
            Some(ScriptHash(sha)),
            "tx {index}"
        );
        assert_eq!(scripts[1][0], 0x6a, "tx {index}: OP_RETURN");
        assert_eq!(tx.outputs[1].scripthash, None, "tx {index}");
        assert_eq!(tx.outputs[1].value, 0);
    }
    // The four notarizations pay the same notary script.
    let first = block.txs[1].outputs[0].scripthash;
    assert!(block.txs[2..]
        .iter()
        .all(|t| t.outputs[0].scripthash == first));
}

/// Parses every transaction of an `extracted/*.json` file and checks its recorded txid (the
/// source's where it gives one, else the independently computed one) and shape.
fn check_extracted(name: &str) -> usize {
    let v = load(name);
    let txs = v["transactions"].as_array().unwrap();
    for t in txs {
        let raw = unhex(text(t, "hex"));
        let what = format!("{name} line {}", t["source_line"]);
        let tx = KOMODO
            .parse_tx(&raw)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let expected = t["txid_in_source"]
            .as_str()
            .unwrap_or_else(|| text(t, "txid_computed"));
        assert_eq!(tx.txid.to_hex(), expected, "{what}");
        assert_eq!(tx.txid.to_hex(), text(t, "txid_computed"), "{what}");
        let shape = &t["shape"];
        assert_eq!(tx.vsize as usize, raw.len(), "{what}");
        assert_eq!(raw.len(), number(shape, "size"), "{what}");
        assert_eq!(tx.outputs.len(), number(shape, "n_out"), "{what}");
        assert_eq!(tx.inputs.len(), number(shape, "n_in"), "{what}");
    }
    txs.len()
}

#[test]
fn extracted_transactions() {
    assert_eq!(
        check_extracted("extracted/komodo_notarization_txs.json"),
        57
    );
    assert_eq!(check_extracted("extracted/mm2_zcash_format_txs.json"), 5);
}

#[test]
fn mm2_daemon_transactions() {
    let v = load("mm2/txTestVectors.json");
    let mut checked = 0;
    for (key, t) in v.as_object().unwrap() {
        if !key.starts_with("kmd_") {
            continue; // BTC, FIRO, NAV, QTUM: not Zcash-format
        }
        let raw = unhex(text(t, "hex"));
        let tx = KOMODO
            .parse_tx(&raw)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(tx.txid.to_hex(), text(t, "txid"), "{key}");
        let vin = t["vin"].as_array().unwrap();
        let coinbase = vin.iter().filter(|i| i.get("coinbase").is_some()).count();
        assert_eq!(tx.inputs.len(), vin.len() - coinbase, "{key}");
        let vout = t["vout"].as_array().unwrap();
        assert_eq!(tx.outputs.len(), vout.len(), "{key}");
        for (out, expected) in tx.outputs.iter().zip(vout) {
            assert_eq!(out.value, expected["valueSat"].as_u64().unwrap(), "{key}");
            let script = unhex(text(&expected["scriptPubKey"], "hex"));
            let sha = sha256::Hash::hash(&script).to_byte_array();
            let indexed = if script.first() == Some(&0x6a) {
                None
            } else {
                Some(ScriptHash(sha))
            };
            assert_eq!(out.scripthash, indexed, "{key}");
        }
        checked += 1;
    }
    assert_eq!(checked, 3);
}

fn is_truncated(e: &ParseError) -> bool {
    match e {
        ParseError::Truncated { .. } => true,
        ParseError::InTx { source, .. } => is_truncated(source),
        _ => false,
    }
}

#[test]
fn truncated_blocks_and_transactions_are_refused() {
    for name in [
        "electrumx/komodo_mainnet_491000.json",
        "zebra-komodo/block-kmdmain-1-140-500.txt",
    ] {
        let raw = raw_block(name);
        for cut in 0..raw.len() {
            let e = KOMODO.parse_block(&raw[..cut]).unwrap_err();
            assert!(is_truncated(&e), "{name} cut at {cut}: {e}");
        }
    }
    // Every shielded layout: v2 and v3 JoinSplits, v4 spends, outputs and bindingSig.
    for name in [
        "electrumx/zcash_mainnet_1000.json",
        "electrumx/zcash_testnet_242100.json",
        "electrumx/zcash_testnet_283046.json",
        "electrumx/zcash_testnet_304290.json",
    ] {
        let (raw, block) = parse(name);
        for (index, tx) in txs_standalone(name, &raw, &block).into_iter().enumerate() {
            for cut in 0..tx.len() {
                let e = KOMODO.parse_tx(&tx[..cut]).unwrap_err();
                assert!(is_truncated(&e), "{name} tx {index} cut at {cut}: {e}");
            }
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut raw = raw_block(NOTARIZATION_BLOCK);
    raw.push(0);
    assert_eq!(
        KOMODO.parse_block(&raw),
        Err(ParseError::TrailingBytes { trailing: 1 })
    );
    let tx = unhex(text(
        &load("mm2/txTestVectors.json")["kmd_raw_confirmations"],
        "hex",
    ));
    let mut long = tx.clone();
    long.extend([0xaa, 0xbb]);
    assert_eq!(
        KOMODO.parse_tx(&long),
        Err(ParseError::TrailingBytes { trailing: 2 })
    );
}

#[test]
fn unknown_version_group_is_refused_with_its_position() {
    let (raw, block) = parse(NOTARIZATION_BLOCK);
    let txs = txs_standalone(NOTARIZATION_BLOCK, &raw, &block);
    let offset = txs[2].as_ptr() as usize - raw.as_ptr() as usize;
    // NU5's version group on a v4 header.
    let mut bad = raw.clone();
    bad[offset + 4..offset + 8].copy_from_slice(&0x26A7_270Au32.to_le_bytes());
    match KOMODO.parse_block(&bad) {
        Err(ParseError::InTx { index: 2, source }) => match *source {
            ParseError::Invalid { offset: at, what } => {
                assert_eq!(at, offset);
                assert!(what.contains("0x26a7270a"), "{what}");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // The same transaction alone: the error is at its start.
    let mut alone = txs[2].to_vec();
    alone[4..8].copy_from_slice(&0x0102_0304u32.to_le_bytes());
    let e = KOMODO.parse_tx(&alone).unwrap_err();
    assert!(
        matches!(&e, ParseError::Invalid { offset: 0, what } if what.contains("0x01020304")),
        "{e:?}"
    );
    assert!(e.to_string().contains("version group"), "{e}");
    // The overwintered flag cleared: version 4 has no legacy format.
    let mut legacy = txs[2].to_vec();
    legacy[3] &= 0x7f;
    let e = KOMODO.parse_tx(&legacy).unwrap_err();
    assert!(e.to_string().contains("overwintered flag"), "{e}");
}
