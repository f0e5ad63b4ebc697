//! The block parsers against real blocks: mainnet blocks from ElectrumX's test suite and Litecoin
//! regtest blocks with MWEB data made by litecoind, plus corrupted variants of them.
//!
//! Vectors are read from `tests/data/vectors` (copies kept in the tree so a fresh clone is
//! self-contained), falling back to the shared reference folder beside the checkout.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sextant::coin::reader::Reader;
use sextant::coin::{bitcoin, litecoin, Chain, HeaderFamily, ParseError, ParsedBlock, TxFamily};
use sextant::types::{OutPoint, ScriptHash, Txid};

const BITCOIN: Chain = Chain {
    header: HeaderFamily::Bitcoin,
    tx: TxFamily::Bitcoin,
};
const LITECOIN: Chain = Chain {
    header: HeaderFamily::Bitcoin,
    tx: TxFamily::Litecoin,
};

const BITCOIN_951658: &str = "electrumx-tests/bitcoin_mainnet_951658.json";
const LITECOIN_900000: &str = "electrumx-tests/litecoin_mainnet_900000.json";
const LITECOIN_2265985: &str = "electrumx-tests/litecoin_mainnet_2265985.json";
const LITECOIN_REGTEST: [&str; 5] = [
    "litecoin/litecoin_regtest_431.json",
    "litecoin/litecoin_regtest_432.json",
    "litecoin/litecoin_regtest_433.json",
    "litecoin/litecoin_regtest_437.json",
    "litecoin/litecoin_regtest_438.json",
];

fn vector_path(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("tests/data/vectors"),
        manifest.join("../shared/vectors"),
    ];
    candidates
        .iter()
        .map(|dir| dir.join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("vector {name} not found in {candidates:?}"))
}

fn load(name: &str) -> Value {
    let path = vector_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn text<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key:?} is not a string in {v:.80}"))
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(text(v, key)).unwrap_or_else(|e| panic!("field {key:?}: {e}"))
}

fn raw_block(name: &str) -> Vec<u8> {
    let v = load(name);
    if v.get("block_hex").is_some() {
        hex_field(&v, "block_hex")
    } else {
        hex_field(&v, "block")
    }
}

/// The block's merkle root by the server's own merkle code (the one behind `get_merkle` and
/// `id_from_pos`), so real blocks check it too.
fn merkle_root(txids: &[Txid]) -> Txid {
    let leaves: Vec<[u8; 32]> = txids.iter().map(|t| t.0).collect();
    Txid(sextant::query::merkle::root(&leaves, None))
}

/// A decimal coin amount ("12.5000553") in the smallest unit, without going through floats.
fn to_base_units(amount: &str) -> u64 {
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    assert!(frac.len() <= 8, "more than 8 decimals in {amount}");
    let whole: u64 = whole.parse().unwrap();
    let frac: u64 = format!("{frac:0<8}").parse().unwrap();
    whole * 100_000_000 + frac
}

/// Cuts every transaction out of the block with the family's reader, checks that
/// `Chain::parse_tx` on those bytes alone gives what the block parse gave, and returns the
/// offset where the transaction vector ends.
fn check_txs_standalone(chain: Chain, raw: &[u8], block: &ParsedBlock) -> usize {
    let mut r = Reader::new(raw);
    r.skip(bitcoin::HEADER_LEN).unwrap();
    assert_eq!(r.read_count(1).unwrap(), block.txs.len());
    for (index, tx) in block.txs.iter().enumerate() {
        let start = r.position();
        match chain.tx {
            TxFamily::Bitcoin => bitcoin::read_tx(&mut r),
            TxFamily::Litecoin => litecoin::read_tx(&mut r),
            TxFamily::Zcash => sextant::coin::zcash::read_tx(&mut r),
            TxFamily::Kevacoin => sextant::coin::kevacoin::read_tx(&mut r),
        }
        .unwrap();
        let alone = chain
            .parse_tx(r.since(start))
            .unwrap_or_else(|e| panic!("tx {index} alone: {e}"));
        assert_eq!(&alone, tx, "tx {index} parsed alone");
    }
    r.position()
}

/// Block hash, previous hash, txids in order, merkle root, exact consumption.
fn check_electrumx_block(name: &str, chain: Chain) -> ParsedBlock {
    let v = load(name);
    let raw = hex_field(&v, "block");
    let block = chain
        .parse_block(&raw)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(block.hash.to_hex(), text(&v, "hash"), "{name}: block hash");
    assert_eq!(
        block.prev_hash.to_hex(),
        text(&v, "previousblockhash"),
        "{name}: previous block hash"
    );
    assert_eq!(block.header, raw[..80]);
    let expected: Vec<&str> = v["tx"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let got: Vec<String> = block.txs.iter().map(|t| t.txid.to_hex()).collect();
    assert_eq!(got, expected, "{name}: txids");
    let txids: Vec<Txid> = block.txs.iter().map(|t| t.txid).collect();
    assert_eq!(
        merkle_root(&txids).to_hex(),
        text(&v, "merkleroot"),
        "{name}: merkle root"
    );
    check_txs_standalone(chain, &raw, &block);
    block
}

#[test]
fn bitcoin_mainnet_951658() {
    let block = check_electrumx_block(BITCOIN_951658, BITCOIN);
    assert_eq!(block.txs.len(), 374);
    // The block weight is header and count at 4 per byte plus every transaction's weight, so
    // the rounded-up vsizes must sum to between a quarter of the rest and that plus one per tx.
    let v = load(BITCOIN_951658);
    let weight = v["weight"].as_u64().unwrap();
    let tx_weight = weight - 4 * (80 + 3);
    let vsizes: u64 = block.txs.iter().map(|t| u64::from(t.vsize)).sum();
    assert!(
        (tx_weight / 4..=tx_weight / 4 + 374).contains(&vsizes),
        "vsizes sum to {vsizes}, weight {weight}"
    );
    let coinbase = &block.txs[0];
    assert!(coinbase.inputs.is_empty());
    assert!(block.txs[1..].iter().all(|t| !t.inputs.is_empty()));
}

#[test]
fn litecoin_mainnet_900000_before_mweb() {
    let block = check_electrumx_block(LITECOIN_900000, LITECOIN);
    assert_eq!(block.txs.len(), 5);
    // Before MWEB the Litecoin format is Bitcoin's.
    let raw = raw_block(LITECOIN_900000);
    assert_eq!(BITCOIN.parse_block(&raw), Ok(block));
}

#[test]
fn litecoin_mainnet_2265985_with_mweb() {
    let block = check_electrumx_block(LITECOIN_2265985, LITECOIN);
    assert_eq!(block.txs.len(), 58);
    let raw = raw_block(LITECOIN_2265985);
    let txs_end = check_txs_standalone(LITECOIN, &raw, &block);
    assert!(raw.len() - txs_end > 1000, "the MWEB body is there");
}

#[test]
fn litecoin_regtest_blocks() {
    for name in LITECOIN_REGTEST {
        let v = load(name);
        let header = hex_field(&v, "header_hex");
        assert_eq!(LITECOIN.header_hash(&header).to_hex(), text(&v, "hash"));
        let raw = hex_field(&v, "block_hex");
        let block = LITECOIN
            .parse_block(&raw)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(block.header, header, "{name}: header");
        assert_eq!(block.hash.to_hex(), text(&v, "hash"), "{name}: hash");

        let expected = v["txs"].as_array().unwrap();
        assert_eq!(block.txs.len(), expected.len(), "{name}: tx count");
        for (index, (tx, want)) in block.txs.iter().zip(expected).enumerate() {
            let at = format!("{name} tx {index}");
            assert_eq!(tx.txid.to_hex(), text(want, "txid"), "{at}: txid");
            check_outputs(&at, tx, want);
            check_inputs(&at, tx, want);
        }

        let txs_end = check_txs_standalone(LITECOIN, &raw, &block);
        let has_mweb_body = txs_end < raw.len();
        assert_eq!(has_mweb_body, v["mweb"].as_bool().unwrap(), "{name}: mweb");
    }
}

fn check_outputs(at: &str, tx: &sextant::coin::ParsedTx, want: &Value) {
    let want = want["vout"].as_array().unwrap();
    assert_eq!(tx.outputs.len(), want.len(), "{at}: output count");
    for (n, (out, w)) in tx.outputs.iter().zip(want).enumerate() {
        assert_eq!(w["n"].as_u64(), Some(n as u64));
        assert_eq!(out.value, to_base_units(text(w, "value")), "{at}:{n} value");
        let script = hex_field(w, "scriptPubKey");
        let expected = (script.first() != Some(&0x6a)).then(|| ScriptHash::of_script(&script));
        assert_eq!(out.scripthash, expected, "{at}:{n} script hash");
    }
}

fn check_inputs(at: &str, tx: &sextant::coin::ParsedTx, want: &Value) {
    let want: Vec<OutPoint> = want["vin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| OutPoint {
            txid: Txid::from_hex(text(i, "txid")).unwrap(),
            vout: i["vout"].as_u64().unwrap() as u32,
        })
        .collect();
    assert_eq!(tx.inputs, want, "{at}: inputs");
}

#[test]
fn amounts_convert_exactly() {
    assert_eq!(to_base_units("12.5"), 1_250_000_000);
    assert_eq!(to_base_units("12.5000553"), 1_250_005_530);
    assert_eq!(to_base_units("0.00000001"), 1);
    assert_eq!(to_base_units("0.0"), 0);
    assert_eq!(to_base_units("21000000"), 2_100_000_000_000_000);
}

/// The innermost error, under any `InTx` wrapping.
fn root(err: &ParseError) -> &ParseError {
    match err {
        ParseError::InTx { source, .. } => root(source),
        other => other,
    }
}

fn every_cut_is_truncated(chain: Chain, raw: &[u8], stride: usize) {
    let cuts = (0..raw.len())
        .step_by(stride)
        .chain(raw.len().saturating_sub(300)..raw.len());
    for cut in cuts {
        let err = chain
            .parse_block(&raw[..cut])
            .expect_err("a cut block must not parse");
        assert!(
            matches!(root(&err), ParseError::Truncated { .. }),
            "cut at {cut} of {}: {err}",
            raw.len()
        );
    }
}

#[test]
fn truncated_blocks_are_reported_as_truncated() {
    every_cut_is_truncated(BITCOIN, &raw_block(BITCOIN_951658), 499);
    every_cut_is_truncated(LITECOIN, &raw_block(LITECOIN_900000), 1);
    every_cut_is_truncated(LITECOIN, &raw_block(LITECOIN_2265985), 97);
    every_cut_is_truncated(LITECOIN, &raw_block(LITECOIN_REGTEST[3]), 1);
}

#[test]
fn trailing_bytes_are_refused() {
    for (chain, name) in [
        (BITCOIN, BITCOIN_951658),
        (LITECOIN, LITECOIN_900000),
        (LITECOIN, LITECOIN_2265985),
        (LITECOIN, LITECOIN_REGTEST[0]),
        (LITECOIN, LITECOIN_REGTEST[4]),
    ] {
        for garbage in [&[0x00][..], &[0xde, 0xad, 0xbe]] {
            let mut raw = raw_block(name);
            raw.extend_from_slice(garbage);
            assert_eq!(
                chain.parse_block(&raw),
                Err(ParseError::TrailingBytes {
                    trailing: garbage.len()
                }),
                "{name}"
            );
        }
    }
}

#[test]
fn unknown_tx_flag_is_refused() {
    let mut raw = raw_block(BITCOIN_951658);
    // Header, 3-byte tx count (374), coinbase version, then segwit marker and flag.
    let flag_at = 80 + 3 + 4 + 1;
    assert_eq!(raw[flag_at - 1..=flag_at], [0x00, 0x01]);
    for flags in [0x02, 0x03, 0x80] {
        raw[flag_at] = flags;
        for chain in [BITCOIN, LITECOIN] {
            match chain.parse_block(&raw) {
                Err(ParseError::InTx { index: 0, source }) => assert!(
                    matches!(*source, ParseError::Invalid { offset, .. } if offset == flag_at),
                    "{source}"
                ),
                other => panic!("flags {flags:#04x}: {other:?}"),
            }
        }
    }
}

#[test]
fn huge_tx_count_fails_without_allocating() {
    let mut raw = raw_block(LITECOIN_900000)[..80].to_vec();
    raw.extend([0xff; 9]);
    raw.extend([0x01; 40]);
    assert!(matches!(
        BITCOIN.parse_block(&raw),
        Err(ParseError::Invalid { offset: 80, .. })
    ));

    // Within bitcoind's size limit, but far more transactions than bytes left.
    let mut raw = raw[..80].to_vec();
    raw.extend([0xfe, 0x00, 0x00, 0xff, 0x01]);
    raw.extend([0x01; 40]);
    assert!(matches!(
        LITECOIN.parse_block(&raw),
        Err(ParseError::Truncated { offset: 85, .. })
    ));
}

#[test]
fn bitcoin_family_refuses_mweb_block() {
    let raw = raw_block(LITECOIN_2265985);
    match BITCOIN.parse_block(&raw) {
        Err(ParseError::InTx { index, source }) => {
            // The HogEx, last of 58, is the first transaction with the MWEB flag.
            assert_eq!(index, 57);
            assert!(
                matches!(&*source, ParseError::Invalid { what, .. } if what.contains("0x08")),
                "{source}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mweb_body_is_parsed_not_skipped() {
    let raw = raw_block(LITECOIN_2265985);
    let block = LITECOIN.parse_block(&raw).unwrap();
    let txs_end = check_txs_standalone(LITECOIN, &raw, &block);
    assert_eq!(raw[txs_end], 0x01, "MWEB body presence byte");

    // Without its MWEB body the block is cut short.
    assert!(matches!(
        LITECOIN.parse_block(&raw[..txs_end]),
        Err(ParseError::Truncated { .. })
    ));

    // Declared absent, the body is left over.
    let mut absent = raw.clone();
    absent[txs_end] = 0x00;
    assert_eq!(
        LITECOIN.parse_block(&absent),
        Err(ParseError::TrailingBytes {
            trailing: raw.len() - txs_end - 1
        })
    );

    // Any other presence byte is refused.
    let mut bad = raw.clone();
    bad[txs_end] = 0x02;
    assert!(matches!(
        LITECOIN.parse_block(&bad),
        Err(ParseError::Invalid { offset, .. }) if offset == txs_end
    ));

    // One byte too many or too few inside the body shifts every later field: the parse must
    // fail rather than land on the end by chance.
    let mut longer = raw[..raw.len() - 1].to_vec();
    longer.extend([0x00, raw[raw.len() - 1]]);
    assert!(LITECOIN.parse_block(&longer).is_err());
    let mut shorter = raw[..txs_end + 200].to_vec();
    shorter.extend(&raw[txs_end + 201..]);
    assert!(LITECOIN.parse_block(&shorter).is_err());
}
