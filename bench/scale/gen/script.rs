//! Output scripts and the spending data of inputs, in mainnet shapes and proportions.
//!
//! A script is named by a 64-bit id; its bytes are derived from the id and the seed, so the
//! generator never stores a script. Ids carry their kind in the top two bits (Zipf-ranked
//! reusable payees, mining pools, fresh one-time scripts), which keeps the three spaces apart.

use super::rng::{mix64, Rng};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptType {
    P2pkh,
    P2sh,
    P2wpkh,
    P2wsh,
    P2tr,
    /// Bare 1-of-2 multisig: rare on mainnet, but servers must index it like any script.
    Multisig,
}

pub const TYPES: [ScriptType; 6] = [
    ScriptType::P2pkh,
    ScriptType::P2sh,
    ScriptType::P2wpkh,
    ScriptType::P2wsh,
    ScriptType::P2tr,
    ScriptType::Multisig,
];

impl ScriptType {
    pub fn index(self) -> u32 {
        TYPES.iter().position(|t| *t == self).unwrap() as u32
    }

    /// Whether spending it puts data in the witness (P2SH is P2SH-P2WPKH, as most of it is on
    /// Litecoin today).
    pub fn segwit(self) -> bool {
        !matches!(self, ScriptType::P2pkh | ScriptType::Multisig)
    }

    pub fn name(self) -> &'static str {
        match self {
            ScriptType::P2pkh => "p2pkh",
            ScriptType::P2sh => "p2sh",
            ScriptType::P2wpkh => "p2wpkh",
            ScriptType::P2wsh => "p2wsh",
            ScriptType::P2tr => "p2tr",
            ScriptType::Multisig => "multisig",
        }
    }
}

/// Output script types of payments, per mille, roughly Litecoin's mix in 2024 (native segwit
/// most, P2PKH and P2SH still large, taproot growing, P2WSH for multisig wallets).
pub fn type_for(h: u64) -> ScriptType {
    match h % 1000 {
        0..450 => ScriptType::P2wpkh,
        450..680 => ScriptType::P2pkh,
        680..880 => ScriptType::P2sh,
        880..960 => ScriptType::P2tr,
        _ => ScriptType::P2wsh,
    }
}

const KIND_ZIPF: u64 = 1 << 62;
const KIND_POOL: u64 = 2 << 62;
const KIND_FRESH: u64 = 3 << 62;

pub fn zipf_id(rank: u64) -> u64 {
    KIND_ZIPF | rank
}
pub fn pool_id(i: u64) -> u64 {
    KIND_POOL | i
}
pub fn fresh_id(n: u64) -> u64 {
    KIND_FRESH | n
}

/// The type of a reusable script (Zipf payee or pool), fixed by its id.
pub fn reusable_type(seed: u64, id: u64) -> ScriptType {
    if id >> 62 == KIND_POOL >> 62 {
        // Pools pay themselves the old way or the new way, half each.
        return if id & 1 == 0 {
            ScriptType::P2pkh
        } else {
            ScriptType::P2wpkh
        };
    }
    type_for(mix64(id ^ mix64(seed ^ 0x7E7E)))
}

/// The 64 bytes a script's hashes and keys are cut from.
fn body(seed: u64, id: u64) -> [u8; 64] {
    let base = mix64(id ^ mix64(seed));
    let mut out = [0u8; 64];
    for (k, c) in out.chunks_exact_mut(8).enumerate() {
        c.copy_from_slice(&mix64(base.wrapping_add(k as u64)).to_le_bytes());
    }
    out
}

/// Appends the output script of `id` as type `ty`, with its CompactSize length.
pub fn write_script(buf: &mut Vec<u8>, seed: u64, id: u64, ty: ScriptType) {
    let b = body(seed, id);
    match ty {
        ScriptType::P2pkh => {
            buf.extend_from_slice(&[25, 0x76, 0xa9, 0x14]);
            buf.extend_from_slice(&b[..20]);
            buf.extend_from_slice(&[0x88, 0xac]);
        }
        ScriptType::P2sh => {
            buf.extend_from_slice(&[23, 0xa9, 0x14]);
            buf.extend_from_slice(&b[..20]);
            buf.push(0x87);
        }
        ScriptType::P2wpkh => {
            buf.extend_from_slice(&[22, 0x00, 0x14]);
            buf.extend_from_slice(&b[..20]);
        }
        ScriptType::P2wsh => {
            buf.extend_from_slice(&[34, 0x00, 0x20]);
            buf.extend_from_slice(&b[..32]);
        }
        ScriptType::P2tr => {
            buf.extend_from_slice(&[34, 0x51, 0x20]);
            buf.extend_from_slice(&b[..32]);
        }
        ScriptType::Multisig => {
            // OP_1 <33-byte key> <33-byte key> OP_2 OP_CHECKMULTISIG
            buf.extend_from_slice(&[71, 0x51, 0x21, 0x02]);
            buf.extend_from_slice(&b[..32]);
            buf.extend_from_slice(&[0x21, 0x03]);
            buf.extend_from_slice(&b[32..64]);
            buf.extend_from_slice(&[0x52, 0xae]);
        }
    }
}

/// The output script of `id` as type `ty`, without the length (for summaries and tests).
pub fn script_bytes(seed: u64, id: u64, ty: ScriptType) -> Vec<u8> {
    let mut v = Vec::with_capacity(72);
    write_script(&mut v, seed, id, ty);
    v.remove(0);
    v
}

/// An OP_RETURN data carrier of `len` (≤ 75) bytes, with its length.
pub fn write_op_return(buf: &mut Vec<u8>, rng: &mut Rng, len: usize) {
    buf.extend_from_slice(&[(len + 2) as u8, 0x6a, len as u8]);
    let at = buf.len();
    buf.resize(at + len, 0);
    rng.fill(&mut buf[at..]);
}

/// A DER-shaped signature with its sighash byte: 72 bytes. Nobody verifies it.
fn write_sig(buf: &mut Vec<u8>, rng: &mut Rng) {
    buf.extend_from_slice(&[0x30, 0x45, 0x02, 0x21, 0x00]);
    let at = buf.len();
    buf.resize(at + 32, 0);
    rng.fill(&mut buf[at..]);
    buf.extend_from_slice(&[0x02, 0x20]);
    let at = buf.len();
    buf.resize(at + 32, 0);
    rng.fill(&mut buf[at..]);
    buf.push(0x01);
}

fn write_pubkey(buf: &mut Vec<u8>, rng: &mut Rng) {
    buf.push(0x02 | (rng.next() & 1) as u8);
    let at = buf.len();
    buf.resize(at + 32, 0);
    rng.fill(&mut buf[at..]);
}

/// The scriptSig (with its length) that spends a coin of type `ty`.
pub fn write_script_sig(buf: &mut Vec<u8>, rng: &mut Rng, ty: ScriptType) {
    match ty {
        ScriptType::P2pkh => {
            buf.extend_from_slice(&[1 + 72 + 1 + 33, 72]);
            write_sig(buf, rng);
            buf.push(33);
            write_pubkey(buf, rng);
        }
        ScriptType::P2sh => {
            // The P2WPKH redeem script, pushed.
            buf.extend_from_slice(&[23, 22, 0x00, 0x14]);
            let at = buf.len();
            buf.resize(at + 20, 0);
            rng.fill(&mut buf[at..]);
        }
        ScriptType::Multisig => {
            buf.extend_from_slice(&[1 + 1 + 72, 0x00, 72]);
            write_sig(buf, rng);
        }
        ScriptType::P2wpkh | ScriptType::P2wsh | ScriptType::P2tr => buf.push(0),
    }
}

/// The witness stack (with its item count) that spends a coin of type `ty`; an empty stack for
/// legacy types.
pub fn write_witness(buf: &mut Vec<u8>, rng: &mut Rng, ty: ScriptType) {
    match ty {
        ScriptType::P2wpkh | ScriptType::P2sh => {
            buf.extend_from_slice(&[2, 72]);
            write_sig(buf, rng);
            buf.push(33);
            write_pubkey(buf, rng);
        }
        ScriptType::P2wsh => {
            // 2-of-3 multisig: dummy, two signatures, the witness script.
            buf.extend_from_slice(&[4, 0, 72]);
            write_sig(buf, rng);
            buf.push(72);
            write_sig(buf, rng);
            buf.extend_from_slice(&[105, 0x52]);
            for _ in 0..3 {
                buf.push(33);
                write_pubkey(buf, rng);
            }
            buf.extend_from_slice(&[0x53, 0xae]);
        }
        ScriptType::P2tr => {
            // Key path: one Schnorr signature.
            buf.extend_from_slice(&[1, 64]);
            let at = buf.len();
            buf.resize(at + 64, 0);
            rng.fill(&mut buf[at..]);
        }
        ScriptType::P2pkh | ScriptType::Multisig => buf.push(0),
    }
}
