//! Bitcoin's block and transaction serialization, with segwit (BIP 141/144).
//!
//! The transaction reader is split in two halves, [`read_tx_prefix`] and [`finish_tx`], so that
//! families extending Bitcoin's format (Litecoin's MWEB) can handle their own flag bits between
//! the witness and the lock time without duplicating anything here.

use bitcoin::hashes::{sha256d, Hash, HashEngine};

use super::reader::Reader;
use super::{output_scripthash, ParseError, ParsedOutput, ParsedTx};
use crate::types::{OutPoint, Txid};

pub const HEADER_LEN: usize = 80;

/// The flag bit announcing per-input witness stacks after the outputs.
pub(crate) const FLAG_WITNESS: u8 = 0x01;

/// Version, empty input and output counts, lock time: nothing smaller is a transaction.
const MIN_TX_LEN: usize = 4 + 1 + 1 + 4;
/// Outpoint, empty script, sequence.
const MIN_TXIN_LEN: usize = 36 + 1 + 4;
/// Value, empty script.
const MIN_TXOUT_LEN: usize = 8 + 1;

/// The outpoint a coinbase input "spends": it refers to nothing, so it is not an input to index.
const NULL_VOUT: u32 = u32::MAX;

pub fn read_header<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], ParseError> {
    r.read_bytes(HEADER_LEN)
}

/// A block's transactions: a CompactSize count, then the transactions.
pub(crate) fn read_block_txs(r: &mut Reader<'_>) -> Result<Vec<ParsedTx>, ParseError> {
    read_tx_list(r, read_tx)
}

/// One transaction in Bitcoin's format; any flag bit but the witness bit is an error.
pub fn read_tx(r: &mut Reader<'_>) -> Result<ParsedTx, ParseError> {
    let prefix = read_tx_prefix(r, FLAG_WITNESS)?;
    finish_tx(r, prefix, 0)
}

/// Reads a block's transaction vector with a family's transaction reader, tagging any error with
/// the index of the transaction it happened in.
pub(crate) fn read_tx_list<'a, F>(
    r: &mut Reader<'a>,
    mut read_one: F,
) -> Result<Vec<ParsedTx>, ParseError>
where
    F: FnMut(&mut Reader<'a>) -> Result<ParsedTx, ParseError>,
{
    let count = r.read_count(MIN_TX_LEN)?;
    let mut txs = Vec::with_capacity(count);
    for index in 0..count {
        let tx = read_one(r).map_err(|source| ParseError::InTx {
            index,
            source: Box::new(source),
        })?;
        txs.push(tx);
    }
    Ok(txs)
}

/// A transaction read up to its lock time, except what flag bits beyond the witness bit announce
/// (those are the caller's to read).
pub(crate) struct TxPrefix<'a> {
    /// The 4 version bytes.
    version: &'a [u8],
    /// Input and output vectors exactly as serialized: together with the version and lock time
    /// they are the legacy serialization the txid commits to.
    body: &'a [u8],
    /// Bytes the witness adds to the size (marker, flag and stacks), 0 without a witness.
    witness_len: usize,
    /// The flag byte of the extended format, 0 in the legacy format.
    pub flags: u8,
    /// Number of inputs serialized, coinbase included.
    pub vin_len: usize,
    pub inputs: Vec<OutPoint>,
    pub outputs: Vec<ParsedOutput>,
}

/// Reads version, inputs, outputs and (if flagged) witness. Flag bits outside `allowed_flags` are
/// an error, as bitcoind treats them ("Unknown transaction optional data").
pub(crate) fn read_tx_prefix<'a>(
    r: &mut Reader<'a>,
    allowed_flags: u8,
) -> Result<TxPrefix<'a>, ParseError> {
    let version = r.read_bytes(4)?;
    let mut body_start = r.position();
    let mut vin_len = r.read_count(MIN_TXIN_LEN)?;
    let mut flags = 0;
    // An empty input vector is how the extended format's marker reads; the flag byte follows.
    if vin_len == 0 {
        let flags_at = r.position();
        flags = r.read_u8()?;
        if flags & !allowed_flags != 0 {
            return Err(Reader::invalid(
                flags_at,
                format!("unknown transaction flags {flags:#04x}"),
            ));
        }
        if flags != 0 {
            body_start = r.position();
            vin_len = r.read_count(MIN_TXIN_LEN)?;
        }
    }
    let inputs = read_inputs(r, vin_len)?;
    // With marker 00 and flag 00 bitcoind reads an empty transaction: no inputs, no outputs.
    let outputs = if vin_len == 0 && flags == 0 {
        Vec::new()
    } else {
        read_outputs(r)?
    };
    let body = r.since(body_start);
    let witness_len = if flags & FLAG_WITNESS != 0 {
        let start = r.position();
        read_witnesses(r, vin_len)?;
        2 + (r.position() - start)
    } else {
        0
    };
    Ok(TxPrefix {
        version,
        body,
        witness_len,
        flags,
        vin_len,
        inputs,
        outputs,
    })
}

/// Reads the lock time and computes txid and virtual size. `extra_weight` is weight the family
/// charges beyond the serialized bytes (Litecoin's peg-ins and peg-outs).
pub(crate) fn finish_tx(
    r: &mut Reader<'_>,
    prefix: TxPrefix<'_>,
    extra_weight: u64,
) -> Result<ParsedTx, ParseError> {
    let locktime = r.read_bytes(4)?;
    let mut engine = sha256d::Hash::engine();
    engine.input(prefix.version);
    engine.input(prefix.body);
    engine.input(locktime);
    let txid = Txid(sha256d::Hash::from_engine(engine).to_byte_array());

    // BIP 141: weight = base size * 3 + total size, where total = base + witness bytes.
    let base_len = (prefix.version.len() + prefix.body.len() + locktime.len()) as u64;
    let weight = base_len * 4 + prefix.witness_len as u64 + extra_weight;
    let vsize = u32::try_from(weight.div_ceil(4)).unwrap_or(u32::MAX);
    Ok(ParsedTx {
        txid,
        inputs: prefix.inputs,
        outputs: prefix.outputs,
        vsize,
        keva: None,
    })
}

/// The outpoints spent, leaving out the coinbase's null outpoint.
pub(crate) fn read_inputs(r: &mut Reader<'_>, count: usize) -> Result<Vec<OutPoint>, ParseError> {
    let mut inputs = Vec::with_capacity(count);
    for _ in 0..count {
        let txid = *r.read_array::<32>()?;
        let vout = r.read_u32_le()?;
        r.read_var_bytes()?; // scriptSig
        r.skip(4)?; // sequence
        if vout == NULL_VOUT && txid == [0u8; 32] {
            continue;
        }
        inputs.push(OutPoint {
            txid: Txid(txid),
            vout,
        });
    }
    Ok(inputs)
}

pub(crate) fn read_outputs(r: &mut Reader<'_>) -> Result<Vec<ParsedOutput>, ParseError> {
    let count = r.read_count(MIN_TXOUT_LEN)?;
    let mut outputs = Vec::with_capacity(count);
    for _ in 0..count {
        let value = r.read_u64_le()?;
        let script = r.read_var_bytes()?;
        outputs.push(ParsedOutput {
            value,
            scripthash: output_scripthash(script),
        });
    }
    Ok(outputs)
}

/// One witness stack per input. bitcoind refuses a witness section whose stacks are all empty
/// ("Superfluous witness record"): it would give the transaction a second serialization.
fn read_witnesses(r: &mut Reader<'_>, vin_len: usize) -> Result<(), ParseError> {
    let start = r.position();
    let mut any_item = false;
    for _ in 0..vin_len {
        let items = r.read_count(1)?;
        any_item |= items != 0;
        for _ in 0..items {
            r.read_var_bytes()?;
        }
    }
    if !any_item {
        return Err(Reader::invalid(start, "superfluous witness record"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{sha256d, ScriptHash};

    const P2PKH: &str = "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac";
    const OP_RETURN_DATA: &str = "6a0401020304";

    fn compact(n: usize) -> Vec<u8> {
        assert!(n < 0xfd);
        vec![n as u8]
    }

    fn script(hex_script: &str) -> Vec<u8> {
        let s = hex::decode(hex_script).unwrap();
        let mut out = compact(s.len());
        out.extend(s);
        out
    }

    /// A two-input, two-output transaction: (inputs and outputs, witness section).
    fn parts(coinbase: bool) -> (Vec<u8>, Vec<u8>) {
        let mut io = compact(2);
        if coinbase {
            io.extend([0u8; 32]);
            io.extend(u32::MAX.to_le_bytes());
        } else {
            io.extend([0x11u8; 32]);
            io.extend(3u32.to_le_bytes());
        }
        io.extend(script("51"));
        io.extend(u32::MAX.to_le_bytes());
        io.extend([0x22u8; 32]);
        io.extend(0u32.to_le_bytes());
        io.extend(script(""));
        io.extend(0xffff_fffeu32.to_le_bytes());
        io.extend(compact(2));
        io.extend(5000u64.to_le_bytes());
        io.extend(script(P2PKH));
        io.extend(0u64.to_le_bytes());
        io.extend(script(OP_RETURN_DATA));
        // First input: empty stack; second: a signature-sized and a key-sized item.
        let mut witness = compact(0);
        witness.extend(compact(2));
        witness.extend(script(&"30".repeat(71)));
        witness.extend(script(&"02".repeat(33)));
        (io, witness)
    }

    fn legacy_tx(coinbase: bool) -> Vec<u8> {
        let (io, _) = parts(coinbase);
        let mut tx = 1i32.to_le_bytes().to_vec();
        tx.extend(io);
        tx.extend(0x0012_3456u32.to_le_bytes());
        tx
    }

    fn segwit_tx(coinbase: bool) -> Vec<u8> {
        let (io, witness) = parts(coinbase);
        let mut tx = 1i32.to_le_bytes().to_vec();
        tx.extend([0x00, FLAG_WITNESS]);
        tx.extend(io);
        tx.extend(witness);
        tx.extend(0x0012_3456u32.to_le_bytes());
        tx
    }

    fn parse(raw: &[u8]) -> Result<ParsedTx, ParseError> {
        let mut r = Reader::new(raw);
        let tx = read_tx(&mut r)?;
        assert_eq!(r.remaining(), 0, "transaction not consumed exactly");
        Ok(tx)
    }

    #[test]
    fn legacy_transaction() {
        let raw = legacy_tx(false);
        let tx = parse(&raw).unwrap();
        assert_eq!(tx.txid, Txid(sha256d(&raw)));
        assert_eq!(tx.vsize as usize, raw.len());
        assert_eq!(
            tx.inputs,
            vec![
                OutPoint {
                    txid: Txid([0x11; 32]),
                    vout: 3
                },
                OutPoint {
                    txid: Txid([0x22; 32]),
                    vout: 0
                },
            ]
        );
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

    #[test]
    fn segwit_transaction_txid_ignores_witness() {
        let legacy = legacy_tx(false);
        let raw = segwit_tx(false);
        let tx = parse(&raw).unwrap();
        assert_eq!(
            tx,
            ParsedTx {
                vsize: tx.vsize,
                ..parse(&legacy).unwrap()
            }
        );
        let weight = legacy.len() * 3 + raw.len();
        assert_eq!(tx.vsize as usize, weight.div_ceil(4));
        assert!((tx.vsize as usize) < raw.len());
    }

    #[test]
    fn coinbase_input_is_not_listed() {
        for raw in [legacy_tx(true), segwit_tx(true)] {
            let tx = parse(&raw).unwrap();
            assert_eq!(
                tx.inputs,
                vec![OutPoint {
                    txid: Txid([0x22; 32]),
                    vout: 0
                }]
            );
        }
    }

    #[test]
    fn unknown_flag_is_refused() {
        let mut raw = segwit_tx(false);
        raw[5] = 0x03;
        assert_eq!(
            parse(&raw),
            Err(ParseError::Invalid {
                offset: 5,
                what: "unknown transaction flags 0x03".into()
            })
        );
        raw[5] = 0x08;
        assert!(matches!(
            parse(&raw),
            Err(ParseError::Invalid { offset: 5, .. })
        ));
    }

    #[test]
    fn superfluous_witness_is_refused() {
        let (io, _) = parts(false);
        let mut raw = 1i32.to_le_bytes().to_vec();
        raw.extend([0x00, FLAG_WITNESS]);
        raw.extend(io);
        raw.extend([0x00, 0x00]);
        raw.extend(0u32.to_le_bytes());
        assert!(matches!(parse(&raw), Err(ParseError::Invalid { .. })));
    }

    #[test]
    fn truncation_anywhere_is_reported() {
        for raw in [legacy_tx(false), segwit_tx(false)] {
            for cut in 0..raw.len() {
                assert!(
                    matches!(parse(&raw[..cut]), Err(ParseError::Truncated { .. })),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn block_tx_errors_name_the_transaction() {
        let mut txs = compact(2);
        txs.extend(legacy_tx(true));
        let mut bad = segwit_tx(false);
        bad[5] = 0x02;
        txs.extend(bad);
        let err = read_block_txs(&mut Reader::new(&txs)).unwrap_err();
        assert!(matches!(err, ParseError::InTx { index: 1, .. }), "{err:?}");
    }

    #[test]
    fn huge_tx_count_fails_without_allocating() {
        let raw = [0xfe, 0xff, 0xff, 0xff, 0x01, 0x00];
        assert!(matches!(
            read_block_txs(&mut Reader::new(&raw)),
            Err(ParseError::Truncated { .. })
        ));
        let raw = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_block_txs(&mut Reader::new(&raw)),
            Err(ParseError::Invalid { .. })
        ));
    }
}
