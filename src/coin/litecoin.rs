//! Litecoin: Bitcoin's format plus the MWEB (MimbleWimble extension block) data.
//!
//! A transaction whose flag byte has [`FLAG_MWEB`] carries, after its witness, an optional MWEB
//! transaction (presence byte 0 or 1). A flagged transaction without one is the HogEx
//! (integrating transaction), always last in an MWEB block; when it is there (and is not the only
//! transaction), the block's MWEB body follows the transaction vector.
//!
//! MWEB outputs have no scripts and are not indexed, but every MWEB structure is still parsed
//! field by field (layouts from Litecoin Core's `src/libmw/include/mw/models`), so a block is
//! consumed exactly and malformed MWEB data is an error rather than silently skipped. MWEB data
//! is outside the txid, which commits to version, inputs, outputs and lock time only.

use super::bitcoin::{self, FLAG_WITNESS};
use super::reader::Reader;
use super::{ParseError, ParsedTx};

/// The flag bit announcing an optional MWEB transaction after the witness.
pub(crate) const FLAG_MWEB: u8 = 0x08;

/// Fixed sizes of MWEB fields, in bytes.
const HASH_LEN: usize = 32;
const BLINDING_FACTOR_LEN: usize = 32;
const COMMITMENT_LEN: usize = 33;
const PUBKEY_LEN: usize = 33;
const SIGNATURE_LEN: usize = 64;
const RANGE_PROOF_LEN: usize = 675;
/// Key exchange pubkey, view tag, masked value (u64), masked nonce (16 bytes).
const OUTPUT_STANDARD_FIELDS_LEN: usize = PUBKEY_LEN + 1 + 8 + 16;

/// The smallest serialized input, output and kernel (no optional fields), used to bound counts.
const MIN_INPUT_LEN: usize = 1 + HASH_LEN + COMMITMENT_LEN + PUBKEY_LEN + SIGNATURE_LEN;
const MIN_OUTPUT_LEN: usize = COMMITMENT_LEN + 2 * PUBKEY_LEN + 1 + RANGE_PROOF_LEN + SIGNATURE_LEN;
const MIN_KERNEL_LEN: usize = 1 + COMMITMENT_LEN + SIGNATURE_LEN;
/// VARINT amount and a non-empty script.
const MIN_PEGOUT_LEN: usize = 1 + 2;

/// mw::Input feature bits.
const INPUT_STEALTH_KEY: u8 = 0x01;
const INPUT_EXTRA_DATA: u8 = 0x02;
/// mw::OutputMessage feature bits.
const OUTPUT_STANDARD_FIELDS: u8 = 0x01;
const OUTPUT_EXTRA_DATA: u8 = 0x02;
/// mw::Kernel feature bits.
const KERNEL_FEE: u8 = 0x01;
const KERNEL_PEGIN: u8 = 0x02;
const KERNEL_PEGOUT: u8 = 0x04;
const KERNEL_HEIGHT_LOCK: u8 = 0x08;
const KERNEL_STEALTH_EXCESS: u8 = 0x10;
const KERNEL_EXTRA_DATA: u8 = 0x20;

/// Weight Litecoin charges a transaction per peg-in kernel: a 41-byte input at scale factor 4.
const PEGIN_WEIGHT: u64 = 41 * 4;

const I32_MAX: u64 = i32::MAX as u64;
const I64_MAX: u64 = i64::MAX as u64;

/// A block's transactions, then its MWEB body when the last transaction is a HogEx.
pub(crate) fn read_block_txs(r: &mut Reader<'_>) -> Result<Vec<ParsedTx>, ParseError> {
    let mut last_is_hogex = false;
    let txs = bitcoin::read_tx_list(r, |r| {
        let (tx, is_hogex) = read_tx_kind(r)?;
        last_is_hogex = is_hogex;
        Ok(tx)
    })?;
    if txs.len() >= 2 && last_is_hogex && read_presence(r)? {
        read_mweb_block(r)?;
    }
    Ok(txs)
}

/// One transaction, with or without MWEB data.
pub fn read_tx(r: &mut Reader<'_>) -> Result<ParsedTx, ParseError> {
    read_tx_kind(r).map(|(tx, _)| tx)
}

/// A transaction and whether it is a HogEx.
fn read_tx_kind(r: &mut Reader<'_>) -> Result<(ParsedTx, bool), ParseError> {
    let prefix = bitcoin::read_tx_prefix(r, FLAG_WITNESS | FLAG_MWEB)?;
    let mut is_hogex = false;
    let mut extra_weight = 0;
    if prefix.flags & FLAG_MWEB != 0 {
        let at = r.position();
        if read_presence(r)? {
            extra_weight = read_mweb_tx(r)?;
            // Litecoin's txid for such a transaction is a BLAKE3 hash of its MWEB data, which
            // this parser does not compute. The node folds MWEB transactions into the block's
            // MWEB body, so they appear here only from the mempool.
            if prefix.vin_len == 0 && prefix.outputs.is_empty() {
                return Err(Reader::invalid(
                    at,
                    "MWEB-only transaction (no canonical inputs or outputs)",
                ));
            }
        } else {
            if prefix.outputs.is_empty() {
                return Err(Reader::invalid(at, "HogEx transaction without outputs"));
            }
            is_hogex = true;
        }
    }
    let tx = bitcoin::finish_tx(r, prefix, extra_weight)?;
    Ok((tx, is_hogex))
}

/// The presence byte of Litecoin's `OptionalPtr`. The node writes only 0 or 1; anything else
/// means the data is not what we think it is.
fn read_presence(r: &mut Reader<'_>) -> Result<bool, ParseError> {
    let at = r.position();
    match r.read_u8()? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Reader::invalid(
            at,
            format!("MWEB presence byte {other:#04x} is neither 0 nor 1"),
        )),
    }
}

/// mw::Block: header, then the aggregated body of every MWEB transaction in the block.
fn read_mweb_block(r: &mut Reader<'_>) -> Result<(), ParseError> {
    read_mweb_header(r)?;
    read_tx_body(r).map(|_| ())
}

/// mw::Header: height (VARINT, a non-negative int32), output, kernel and leafset roots, kernel
/// and stealth offsets, then the output and kernel MMR sizes (VARINT, u64).
fn read_mweb_header(r: &mut Reader<'_>) -> Result<(), ParseError> {
    r.read_varint_max(I32_MAX, "MWEB header height")?;
    r.skip(3 * HASH_LEN + 2 * BLINDING_FACTOR_LEN)?;
    r.read_varint()?;
    r.read_varint()?;
    Ok(())
}

/// mw::Transaction: kernel offset, stealth offset, body. Returns the extra weight Litecoin
/// charges the carrying transaction for its peg-ins and peg-outs.
fn read_mweb_tx(r: &mut Reader<'_>) -> Result<u64, ParseError> {
    r.skip(2 * BLINDING_FACTOR_LEN)?;
    let at = r.position();
    let body = read_tx_body(r)?;
    if body.kernels == 0 {
        return Err(Reader::invalid(at, "MWEB transaction without kernels"));
    }
    Ok(body.pegins * PEGIN_WEIGHT + body.pegout_weight)
}

/// What the index-relevant weight rules need from an MWEB body.
struct BodySummary {
    kernels: usize,
    pegins: u64,
    pegout_weight: u64,
}

/// mw::TxBody: inputs, outputs, kernels, each a CompactSize-counted vector.
fn read_tx_body(r: &mut Reader<'_>) -> Result<BodySummary, ParseError> {
    for _ in 0..r.read_count(MIN_INPUT_LEN)? {
        read_mweb_input(r)?;
    }
    for _ in 0..r.read_count(MIN_OUTPUT_LEN)? {
        read_mweb_output(r)?;
    }
    let kernels = r.read_count(MIN_KERNEL_LEN)?;
    let mut summary = BodySummary {
        kernels,
        pegins: 0,
        pegout_weight: 0,
    };
    for _ in 0..kernels {
        read_kernel(r, &mut summary)?;
    }
    Ok(summary)
}

// Feature bits with no defined field are passed over, as the node's deserializer does: they are
// a policy matter, not a serialization one.

/// mw::Input: features, output id, commitment, output pubkey, optional input pubkey, optional
/// extra data, signature.
fn read_mweb_input(r: &mut Reader<'_>) -> Result<(), ParseError> {
    let features = r.read_u8()?;
    r.skip(HASH_LEN + COMMITMENT_LEN + PUBKEY_LEN)?;
    if features & INPUT_STEALTH_KEY != 0 {
        r.skip(PUBKEY_LEN)?;
    }
    if features & INPUT_EXTRA_DATA != 0 {
        r.read_var_bytes()?;
    }
    r.skip(SIGNATURE_LEN)
}

/// mw::Output: commitment, sender and receiver pubkeys, output message, range proof, signature.
fn read_mweb_output(r: &mut Reader<'_>) -> Result<(), ParseError> {
    r.skip(COMMITMENT_LEN + 2 * PUBKEY_LEN)?;
    let features = r.read_u8()?;
    if features & OUTPUT_STANDARD_FIELDS != 0 {
        r.skip(OUTPUT_STANDARD_FIELDS_LEN)?;
    }
    if features & OUTPUT_EXTRA_DATA != 0 {
        r.read_var_bytes()?;
    }
    r.skip(RANGE_PROOF_LEN + SIGNATURE_LEN)
}

/// mw::Kernel: features, then the fields they announce in this order: fee (VARINT), peg-in
/// amount (VARINT), peg-outs (vector of VARINT amount and script), lock height (VARINT, int32),
/// stealth excess (pubkey), extra data; always excess commitment and signature.
fn read_kernel(r: &mut Reader<'_>, summary: &mut BodySummary) -> Result<(), ParseError> {
    let features = r.read_u8()?;
    if features & KERNEL_FEE != 0 {
        r.read_varint_max(I64_MAX, "MWEB kernel fee")?;
    }
    if features & KERNEL_PEGIN != 0 {
        r.read_varint_max(I64_MAX, "MWEB peg-in amount")?;
        summary.pegins += 1;
    }
    if features & KERNEL_PEGOUT != 0 {
        for _ in 0..r.read_count(MIN_PEGOUT_LEN)? {
            summary.pegout_weight += read_pegout(r)?;
        }
    }
    if features & KERNEL_HEIGHT_LOCK != 0 {
        r.read_varint_max(I32_MAX, "MWEB kernel lock height")?;
    }
    if features & KERNEL_STEALTH_EXCESS != 0 {
        r.skip(PUBKEY_LEN)?;
    }
    if features & KERNEL_EXTRA_DATA != 0 {
        r.read_var_bytes()?;
    }
    r.skip(COMMITMENT_LEN + SIGNATURE_LEN)
}

/// One peg-out: amount and script. Returns the weight Litecoin charges for it: that of the
/// equivalent canonical output at scale factor 4.
fn read_pegout(r: &mut Reader<'_>) -> Result<u64, ParseError> {
    r.read_varint_max(I64_MAX, "MWEB peg-out amount")?;
    let at = r.position();
    let script = r.read_var_bytes()?;
    if script.is_empty() {
        return Err(Reader::invalid(at, "MWEB peg-out with an empty script"));
    }
    let serialized = 8 + (r.position() - at);
    Ok(serialized as u64 * 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{sha256d, Txid};

    /// A HogEx-shaped transaction: one input, one output, flags as given, null MWEB tx.
    fn hogex(flags: u8) -> Vec<u8> {
        let mut tx = 2i32.to_le_bytes().to_vec();
        tx.extend([0x00, flags, 0x01]);
        tx.extend([0x33u8; 32]);
        tx.extend(0u32.to_le_bytes());
        tx.extend([0x00]);
        tx.extend(u32::MAX.to_le_bytes());
        tx.extend([0x01]);
        tx.extend(1000u64.to_le_bytes());
        tx.extend([0x22, 0x58, 0x20]);
        tx.extend([0x44u8; 32]);
        tx.extend([0x00]); // no MWEB tx
        tx.extend(0u32.to_le_bytes());
        tx
    }

    fn legacy_of(raw: &[u8]) -> Vec<u8> {
        // Version, then everything between the flag byte and the MWEB presence byte, lock time.
        let mut legacy = raw[..4].to_vec();
        legacy.extend(&raw[6..raw.len() - 5]);
        legacy.extend(&raw[raw.len() - 4..]);
        legacy
    }

    #[test]
    fn hogex_is_recognised_and_its_txid_skips_mweb_bytes() {
        let raw = hogex(FLAG_MWEB);
        let mut r = Reader::new(&raw);
        let (tx, is_hogex) = read_tx_kind(&mut r).unwrap();
        assert!(is_hogex);
        assert_eq!(r.remaining(), 0);
        let legacy = legacy_of(&raw);
        assert_eq!(tx.txid, Txid(sha256d(&legacy)));
        // Without a witness, the MWEB flag adds nothing to the weight.
        assert_eq!(tx.vsize as usize, legacy.len());
    }

    #[test]
    fn unknown_flag_bits_are_refused() {
        for flags in [0x02, 0x04, 0x10, 0x80, 0x0a] {
            let raw = hogex(flags);
            assert!(
                matches!(
                    read_tx(&mut Reader::new(&raw)),
                    Err(ParseError::Invalid { offset: 5, .. })
                ),
                "flags {flags:#04x}"
            );
        }
    }

    #[test]
    fn bad_presence_byte_is_refused() {
        let mut raw = hogex(FLAG_MWEB);
        let at = raw.len() - 5;
        raw[at] = 0x02;
        assert_eq!(
            read_tx(&mut Reader::new(&raw)),
            Err(ParseError::Invalid {
                offset: at,
                what: "MWEB presence byte 0x02 is neither 0 nor 1".into()
            })
        );
    }

    fn kernel(features: u8, fields: &[u8]) -> Vec<u8> {
        let mut k = vec![features];
        k.extend(fields);
        k.extend([0x08u8; COMMITMENT_LEN]);
        k.extend([0x09u8; SIGNATURE_LEN]);
        k
    }

    /// An MWEB transaction with no inputs or outputs and the given kernels.
    fn mweb_tx(kernels: &[Vec<u8>]) -> Vec<u8> {
        let mut tx = vec![0x05u8; 2 * BLINDING_FACTOR_LEN];
        tx.extend([0x00, 0x00, kernels.len() as u8]);
        for k in kernels {
            tx.extend(k);
        }
        tx
    }

    #[test]
    fn kernel_fields_follow_feature_bits() {
        let pegout_script = [0x00, 0x14].iter().chain(&[0x55u8; 20]).copied();
        let mut pegout = vec![0x01, 0x80, 0x00, 22]; // one peg-out, amount 128, script length
        pegout.extend(pegout_script);
        let mut fields = vec![0x81, 0x00]; // fee 256
        fields.extend([0x7f]); // peg-in 127
        fields.extend(&pegout);
        fields.extend([0x8e, 0xfe, 0xfe, 0x7f]); // lock height
        fields.extend([0x02u8; PUBKEY_LEN]);
        fields.extend([0x03, 0xaa, 0xbb, 0xcc]);
        let raw = mweb_tx(&[kernel(0x3f, &fields), kernel(0x00, &[])]);
        let mut r = Reader::new(&raw);
        let weight = read_mweb_tx(&mut r).unwrap();
        assert_eq!(r.remaining(), 0);
        assert_eq!(weight, PEGIN_WEIGHT + (8 + 1 + 22) * 4);
    }

    #[test]
    fn malformed_kernels_are_refused() {
        assert!(matches!(
            read_mweb_tx(&mut Reader::new(&mweb_tx(&[]))),
            Err(ParseError::Invalid { .. })
        ));
        // A peg-out with an empty script.
        let raw = mweb_tx(&[kernel(KERNEL_PEGOUT, &[0x01, 0x05, 0x00])]);
        assert!(matches!(
            read_mweb_tx(&mut Reader::new(&raw)),
            Err(ParseError::Invalid { .. })
        ));
        // A lock height beyond int32.
        let raw = mweb_tx(&[kernel(KERNEL_HEIGHT_LOCK, &[0x8e, 0xfe, 0xfe, 0xff, 0x00])]);
        assert!(matches!(
            read_mweb_tx(&mut Reader::new(&raw)),
            Err(ParseError::Invalid { .. })
        ));
    }

    #[test]
    fn mweb_only_transaction_is_refused() {
        let mut raw = 2i32.to_le_bytes().to_vec();
        raw.extend([0x00, FLAG_MWEB, 0x00, 0x00, 0x01]);
        raw.extend(mweb_tx(&[kernel(KERNEL_FEE, &[0x10])]));
        raw.extend(0u32.to_le_bytes());
        assert!(matches!(
            read_tx(&mut Reader::new(&raw)),
            Err(ParseError::Invalid { offset: 8, .. })
        ));
    }
}
