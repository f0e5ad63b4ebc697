//! Zcash's transaction serialization, as Komodo and every Komodo smart chain use it: Sprout v1/v2,
//! Overwinter v3 and Sapling v4.
//!
//! ```text
//! header (4)                 top bit = fOverwintered, the rest = version
//! nVersionGroupId (4)        only when overwintered
//! transparent inputs, outputs and nLockTime (4): exactly Bitcoin's legacy format
//! nExpiryHeight (4)          v3, v4
//! valueBalance (8), spends (CompactSize × 384), outputs (CompactSize × 948)     v4
//! JoinSplits (CompactSize × (1506 + proof)), then joinSplitPubKey (32) and joinSplitSig (64)
//!                            when any (version ≥ 2); proof = 296 bytes PHGR13, 192 bytes Groth16 in v4
//! bindingSig (64)            v4 with any spend or output description
//! ```
//!
//! The txid is double SHA-256 of the whole serialization, and there is no witness: the virtual
//! size is the serialized size. Shielded data carries no transparent script, so only transparent
//! outputs are indexed. Like zcashd ("Unknown transaction format"), a version, version group and
//! overwintered flag that do not name one of these formats is an error, never a guess.

use super::bitcoin::{self, read_tx_list};
use super::reader::Reader;
use super::{ParseError, ParsedTx};
use crate::types::{sha256d, OutPoint, Txid};

/// `nVersionGroupId` of Overwinter (v3) transactions.
pub(crate) const OVERWINTER_VERSION_GROUP_ID: u32 = 0x03C4_8270;
/// `nVersionGroupId` of Sapling (v4) transactions.
pub(crate) const SAPLING_VERSION_GROUP_ID: u32 = 0x892F_2085;

/// A Sapling spend description: cv, anchor, nullifier, rk (32 each), Groth16 proof (192),
/// spendAuthSig (64).
pub(crate) const SPEND_DESCRIPTION_LEN: usize = 384;
/// A Sapling output description: cv, cmu, ephemeralKey (32 each), encCiphertext (580),
/// outCiphertext (80), Groth16 proof (192).
pub(crate) const OUTPUT_DESCRIPTION_LEN: usize = 948;
/// A JoinSplit description without its proof: vpub_old, vpub_new (8 each), anchor (32),
/// 2 nullifiers, 2 commitments, ephemeralKey, randomSeed, 2 MACs (32 each), 2 ciphertexts (601
/// each).
pub(crate) const JOINSPLIT_BASE_LEN: usize = 1506;
/// PHGR13 zk-SNARK proof, in v2 and v3 JoinSplits.
pub(crate) const PHGR13_PROOF_LEN: usize = 296;
/// Groth16 proof, in v4 JoinSplits.
pub(crate) const GROTH16_PROOF_LEN: usize = 192;
/// joinSplitPubKey and joinSplitSig, present once when there is any JoinSplit.
const JOINSPLIT_SIG_LEN: usize = 32 + 64;
const BINDING_SIG_LEN: usize = 64;

const FOVERWINTERED: u32 = 1 << 31;
/// Outpoint, empty script, sequence.
const MIN_TXIN_LEN: usize = 36 + 1 + 4;

/// The transaction formats this family reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// v1: transparent only.
    V1,
    /// v2: JoinSplits with PHGR13 proofs.
    V2,
    /// v3 Overwinter: expiry height, JoinSplits with PHGR13 proofs.
    Overwinter,
    /// v4 Sapling: expiry height, value balance, spends, outputs, JoinSplits with Groth16 proofs.
    Sapling,
}

/// A block's transactions: a CompactSize count, then the transactions.
pub(crate) fn read_block_txs(r: &mut Reader<'_>) -> Result<Vec<ParsedTx>, ParseError> {
    read_tx_list(r, read_tx)
}

/// One transaction in Zcash's format.
pub fn read_tx(r: &mut Reader<'_>) -> Result<ParsedTx, ParseError> {
    let start = r.position();
    let format = read_format(r)?;
    let inputs = read_inputs(r)?;
    let outputs = bitcoin::read_outputs(r)?;
    r.skip(4)?; // nLockTime
    if matches!(format, Format::Overwinter | Format::Sapling) {
        r.skip(4)?; // nExpiryHeight
    }
    let mut shielded = false;
    if format == Format::Sapling {
        r.skip(8)?; // valueBalance
        let spends = r.read_count(SPEND_DESCRIPTION_LEN)?;
        r.skip(spends * SPEND_DESCRIPTION_LEN)?;
        let outputs = r.read_count(OUTPUT_DESCRIPTION_LEN)?;
        r.skip(outputs * OUTPUT_DESCRIPTION_LEN)?;
        shielded = spends > 0 || outputs > 0;
    }
    if format != Format::V1 {
        let proof_len = if format == Format::Sapling {
            GROTH16_PROOF_LEN
        } else {
            PHGR13_PROOF_LEN
        };
        let joinsplit_len = JOINSPLIT_BASE_LEN + proof_len;
        let joinsplits = r.read_count(joinsplit_len)?;
        if joinsplits > 0 {
            // read_count checked that `joinsplits * joinsplit_len` bytes remain: no overflow.
            r.skip(joinsplits * joinsplit_len)?;
            r.skip(JOINSPLIT_SIG_LEN)?;
        }
    }
    if shielded {
        r.skip(BINDING_SIG_LEN)?;
    }
    let raw = r.since(start);
    Ok(ParsedTx {
        txid: Txid(sha256d(raw)),
        inputs,
        outputs,
        vsize: u32::try_from(raw.len()).unwrap_or(u32::MAX),
        keva: None,
    })
}

/// The 4-byte header and, when overwintered, the version group: which format follows.
fn read_format(r: &mut Reader<'_>) -> Result<Format, ParseError> {
    let at = r.position();
    let header = r.read_u32_le()?;
    let version = header & !FOVERWINTERED;
    if header & FOVERWINTERED == 0 {
        return match version {
            1 => Ok(Format::V1),
            2 => Ok(Format::V2),
            _ => Err(Reader::invalid(
                at,
                format!(
                    "unknown transaction version {version} without the overwintered flag \
                     (known: 1, 2)"
                ),
            )),
        };
    }
    let group = r.read_u32_le()?;
    match (version, group) {
        (3, OVERWINTER_VERSION_GROUP_ID) => Ok(Format::Overwinter),
        (4, SAPLING_VERSION_GROUP_ID) => Ok(Format::Sapling),
        _ => Err(Reader::invalid(
            at,
            format!(
                "unknown overwintered transaction version {version} with version group \
                 {group:#010x} (known: v3 with {OVERWINTER_VERSION_GROUP_ID:#010x}, \
                 v4 with {SAPLING_VERSION_GROUP_ID:#010x})"
            ),
        )),
    }
}

/// Transparent inputs as in Bitcoin's legacy format (no segwit marker in Zcash transactions).
fn read_inputs(r: &mut Reader<'_>) -> Result<Vec<OutPoint>, ParseError> {
    let count = r.read_count(MIN_TXIN_LEN)?;
    bitcoin::read_inputs(r, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::ParsedOutput;
    use crate::types::ScriptHash;

    const P2PKH: &str = "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac";
    const OP_RETURN_DATA: &str = "6a0401020304";

    fn script(hex_script: &str) -> Vec<u8> {
        let s = hex::decode(hex_script).unwrap();
        let mut out = vec![s.len() as u8];
        out.extend(s);
        out
    }

    /// Transparent part: a coinbase or a spending input, a P2PKH and an OP_RETURN output.
    fn transparent(coinbase: bool, with_inputs: bool) -> Vec<u8> {
        let mut io = Vec::new();
        if with_inputs {
            io.push(1);
            if coinbase {
                io.extend([0u8; 32]);
                io.extend(u32::MAX.to_le_bytes());
            } else {
                io.extend([0x11u8; 32]);
                io.extend(7u32.to_le_bytes());
            }
            io.extend(script("51"));
            io.extend(u32::MAX.to_le_bytes());
        } else {
            io.push(0);
        }
        io.push(2);
        io.extend(5000u64.to_le_bytes());
        io.extend(script(P2PKH));
        io.extend(0u64.to_le_bytes());
        io.extend(script(OP_RETURN_DATA));
        io.extend(0x0012_3456u32.to_le_bytes()); // nLockTime
        io
    }

    fn joinsplits(n: usize, proof_len: usize) -> Vec<u8> {
        let mut out = vec![n as u8];
        if n > 0 {
            out.extend(vec![0x33; n * (JOINSPLIT_BASE_LEN + proof_len)]);
            out.extend([0x44; JOINSPLIT_SIG_LEN]);
        }
        out
    }

    fn v1() -> Vec<u8> {
        let mut tx = 1u32.to_le_bytes().to_vec();
        tx.extend(transparent(false, true));
        tx
    }

    fn v2(n_js: usize) -> Vec<u8> {
        let mut tx = 2u32.to_le_bytes().to_vec();
        tx.extend(transparent(false, n_js == 0));
        tx.extend(joinsplits(n_js, PHGR13_PROOF_LEN));
        tx
    }

    fn v3(n_js: usize) -> Vec<u8> {
        let mut tx = (3 | FOVERWINTERED).to_le_bytes().to_vec();
        tx.extend(OVERWINTER_VERSION_GROUP_ID.to_le_bytes());
        tx.extend(transparent(false, true));
        tx.extend(1_140_520u32.to_le_bytes()); // nExpiryHeight
        tx.extend(joinsplits(n_js, PHGR13_PROOF_LEN));
        tx
    }

    fn v4(coinbase: bool, spends: usize, outputs: usize, n_js: usize) -> Vec<u8> {
        let mut tx = (4 | FOVERWINTERED).to_le_bytes().to_vec();
        tx.extend(SAPLING_VERSION_GROUP_ID.to_le_bytes());
        tx.extend(transparent(coinbase, true));
        tx.extend(0u32.to_le_bytes()); // nExpiryHeight
        tx.extend((-10_000i64).to_le_bytes()); // valueBalance
        tx.push(spends as u8);
        tx.extend(vec![0x55; spends * SPEND_DESCRIPTION_LEN]);
        tx.push(outputs as u8);
        tx.extend(vec![0x66; outputs * OUTPUT_DESCRIPTION_LEN]);
        tx.extend(joinsplits(n_js, GROTH16_PROOF_LEN));
        if spends + outputs > 0 {
            tx.extend([0x77; BINDING_SIG_LEN]);
        }
        tx
    }

    fn parse(raw: &[u8]) -> Result<ParsedTx, ParseError> {
        let mut r = Reader::new(raw);
        let tx = read_tx(&mut r)?;
        assert_eq!(r.remaining(), 0, "transaction not consumed exactly");
        Ok(tx)
    }

    fn all_formats() -> Vec<Vec<u8>> {
        vec![
            v1(),
            v2(0),
            v2(1),
            v2(2),
            v3(0),
            v3(1),
            v4(true, 0, 0, 0),
            v4(false, 1, 2, 0),
            v4(false, 0, 1, 0),
            v4(false, 3, 1, 2),
            v4(false, 0, 0, 1),
        ]
    }

    #[test]
    fn every_format_is_consumed_exactly_and_hashed_whole() {
        for raw in all_formats() {
            let tx = parse(&raw).unwrap();
            assert_eq!(tx.txid, Txid(sha256d(&raw)));
            assert_eq!(tx.vsize as usize, raw.len());
            let p2pkh = hex::decode(P2PKH).unwrap();
            assert_eq!(
                tx.outputs,
                vec![
                    ParsedOutput {
                        value: 5000,
                        scripthash: Some(ScriptHash::of_script(&p2pkh))
                    },
                    ParsedOutput {
                        value: 0,
                        scripthash: None
                    },
                ]
            );
        }
    }

    #[test]
    fn inputs_exclude_the_coinbase() {
        let spend = OutPoint {
            txid: Txid([0x11; 32]),
            vout: 7,
        };
        assert_eq!(parse(&v1()).unwrap().inputs, vec![spend]);
        assert_eq!(parse(&v4(false, 1, 1, 0)).unwrap().inputs, vec![spend]);
        assert_eq!(parse(&v4(true, 0, 0, 0)).unwrap().inputs, vec![]);
        // A shielded-to-transparent JoinSplit: no transparent input at all.
        assert_eq!(parse(&v2(1)).unwrap().inputs, vec![]);
    }

    #[test]
    fn truncation_anywhere_is_reported() {
        for raw in all_formats() {
            for cut in 0..raw.len() {
                assert!(
                    matches!(parse(&raw[..cut]), Err(ParseError::Truncated { .. })),
                    "cut at {cut} of {}",
                    raw.len()
                );
            }
        }
    }

    #[test]
    fn binding_signature_only_with_shielded_descriptions() {
        // A v4 without spends or outputs but with 64 more bytes leaves them over.
        let mut raw = v4(false, 0, 0, 1);
        raw.extend([0x77; BINDING_SIG_LEN]);
        let mut r = Reader::new(&raw);
        read_tx(&mut r).unwrap();
        assert_eq!(r.remaining(), BINDING_SIG_LEN);
    }

    fn invalid_at_0(raw: &[u8]) -> String {
        match parse(raw) {
            Err(ParseError::Invalid { offset: 0, what }) => what,
            other => panic!("expected Invalid at 0, got {other:?}"),
        }
    }

    #[test]
    fn unknown_formats_are_refused_with_what_is_wrong() {
        // Sapling version with Overwinter's group.
        let mut raw = v4(false, 0, 0, 0);
        raw[4..8].copy_from_slice(&OVERWINTER_VERSION_GROUP_ID.to_le_bytes());
        let what = invalid_at_0(&raw);
        assert!(
            what.contains("version 4") && what.contains("0x03c48270"),
            "{what}"
        );
        // NU5 (v5, group 0x26A7270A) is not a Komodo format.
        raw[0..4].copy_from_slice(&(5 | FOVERWINTERED).to_le_bytes());
        raw[4..8].copy_from_slice(&0x26A7_270Au32.to_le_bytes());
        let what = invalid_at_0(&raw);
        assert!(
            what.contains("version 5") && what.contains("0x26a7270a"),
            "{what}"
        );
        // Overwintered flag on a Sprout version.
        let mut raw = v2(0);
        raw[3] |= 0x80;
        assert!(invalid_at_0(&raw).contains("overwintered transaction version 2"));
        // Sapling layout without the overwintered flag.
        let mut raw = v4(false, 0, 0, 0);
        raw[3] &= 0x7f;
        let what = invalid_at_0(&raw);
        assert!(
            what.contains("version 4 without the overwintered flag"),
            "{what}"
        );
        // Version 0.
        let mut raw = v1();
        raw[0] = 0;
        assert!(invalid_at_0(&raw).contains("version 0"));
    }

    #[test]
    fn block_tx_errors_name_the_transaction() {
        let mut txs = vec![2u8];
        txs.extend(v4(true, 0, 0, 0));
        let mut bad = v4(false, 0, 0, 0);
        bad[4] ^= 0xff;
        txs.extend(bad);
        let err = read_block_txs(&mut Reader::new(&txs)).unwrap_err();
        assert!(matches!(err, ParseError::InTx { index: 1, .. }), "{err:?}");
    }

    #[test]
    fn huge_shielded_counts_fail_without_allocating() {
        let mut raw = (4 | FOVERWINTERED).to_le_bytes().to_vec();
        raw.extend(SAPLING_VERSION_GROUP_ID.to_le_bytes());
        raw.extend(transparent(true, true));
        raw.extend(0u32.to_le_bytes());
        raw.extend(0i64.to_le_bytes());
        raw.extend([0xfe, 0xff, 0xff, 0xff, 0x01]); // 0x01ffffff spends
        assert!(matches!(parse(&raw), Err(ParseError::Truncated { .. })));
    }
}
