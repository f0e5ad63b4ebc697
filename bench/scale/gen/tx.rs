//! Serializing transactions and blocks (Bitcoin/Litecoin format, segwit where an input needs
//! it, no MWEB) and the hashes that tie them together: txid, wtxid, merkle roots, the witness
//! commitment and the block hash. These are the parts servers do check, so they are exact.

use bitcoin::hashes::{sha256d, Hash, HashEngine};

use super::rng::Rng;
use super::script::{self, ScriptType};

pub type H256 = [u8; 32];

/// An input: the coin it spends and the coin's script type (which shapes its spending data).
#[derive(Clone, Copy, Debug)]
pub struct In {
    pub txid: H256,
    pub vout: u32,
    pub ty: ScriptType,
}

#[derive(Clone, Copy, Debug)]
pub enum Out {
    Pay {
        value: u64,
        id: u64,
        ty: ScriptType,
    },
    /// An OP_RETURN carrier of `len` data bytes (never indexed).
    Data {
        len: usize,
    },
    /// The coinbase's witness commitment.
    Commitment(H256),
}

pub fn write_compact(buf: &mut Vec<u8>, n: u64) {
    match n {
        0..0xfd => buf.push(n as u8),
        0xfd..=0xffff => {
            buf.push(0xfd);
            buf.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            buf.push(0xfe);
            buf.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            buf.push(0xff);
            buf.extend_from_slice(&n.to_le_bytes());
        }
    }
}

pub fn sha256d_parts(parts: &[&[u8]]) -> H256 {
    let mut e = sha256d::Hash::engine();
    for p in parts {
        e.input(p);
    }
    sha256d::Hash::from_engine(e).to_byte_array()
}

fn write_outputs(buf: &mut Vec<u8>, rng: &mut Rng, seed: u64, outs: &[Out]) {
    write_compact(buf, outs.len() as u64);
    for o in outs {
        match *o {
            Out::Pay { value, id, ty } => {
                buf.extend_from_slice(&value.to_le_bytes());
                script::write_script(buf, seed, id, ty);
            }
            Out::Data { len } => {
                buf.extend_from_slice(&0u64.to_le_bytes());
                script::write_op_return(buf, rng, len);
            }
            Out::Commitment(c) => {
                buf.extend_from_slice(&0u64.to_le_bytes());
                buf.extend_from_slice(&[38, 0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed]);
                buf.extend_from_slice(&c);
            }
        }
    }
}

/// Appends a transaction; returns its txid and wtxid.
pub fn write_tx(
    buf: &mut Vec<u8>,
    rng: &mut Rng,
    seed: u64,
    ins: &[In],
    outs: &[Out],
) -> (H256, H256) {
    let segwit = ins.iter().any(|i| i.ty.segwit());
    let start = buf.len();
    buf.extend_from_slice(&2u32.to_le_bytes());
    if segwit {
        buf.extend_from_slice(&[0x00, 0x01]);
    }
    let body = buf.len();
    write_compact(buf, ins.len() as u64);
    for i in ins {
        buf.extend_from_slice(&i.txid);
        buf.extend_from_slice(&i.vout.to_le_bytes());
        script::write_script_sig(buf, rng, i.ty);
        buf.extend_from_slice(&0xffff_fffdu32.to_le_bytes());
    }
    write_outputs(buf, rng, seed, outs);
    let witness = buf.len();
    if segwit {
        for i in ins {
            script::write_witness(buf, rng, i.ty);
        }
    }
    let lock = buf.len();
    buf.extend_from_slice(&0u32.to_le_bytes());
    let wtxid = sha256d_parts(&[&buf[start..]]);
    let txid = if segwit {
        sha256d_parts(&[&buf[start..start + 4], &buf[body..witness], &buf[lock..]])
    } else {
        wtxid
    };
    (txid, wtxid)
}

/// BIP34's height push: OP_1..OP_16 for small heights, else a minimal script number.
fn write_height_push(buf: &mut Vec<u8>, height: u64) {
    if (1..=16).contains(&height) {
        buf.push(0x50 + height as u8);
        return;
    }
    let mut n = Vec::new();
    let mut h = height;
    while h > 0 {
        n.push(h as u8);
        h >>= 8;
    }
    if n.last().is_some_and(|b| b & 0x80 != 0) {
        n.push(0);
    }
    buf.push(n.len() as u8);
    buf.extend_from_slice(&n);
}

/// Appends a coinbase; with `witness` it carries the 32-byte witness reserved value. Returns
/// its txid.
pub fn write_coinbase(
    buf: &mut Vec<u8>,
    rng: &mut Rng,
    seed: u64,
    height: u64,
    outs: &[Out],
    witness: bool,
) -> H256 {
    let start = buf.len();
    buf.extend_from_slice(&1u32.to_le_bytes());
    if witness {
        buf.extend_from_slice(&[0x00, 0x01]);
    }
    let body = buf.len();
    buf.push(1);
    buf.extend_from_slice(&[0u8; 32]);
    buf.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut sig = Vec::with_capacity(32);
    write_height_push(&mut sig, height);
    sig.push(8);
    sig.extend_from_slice(&rng.next().to_le_bytes());
    sig.extend_from_slice(b"\x07/scale/");
    write_compact(buf, sig.len() as u64);
    buf.extend_from_slice(&sig);
    buf.extend_from_slice(&u32::MAX.to_le_bytes());
    write_outputs(buf, rng, seed, outs);
    let wit = buf.len();
    if witness {
        buf.extend_from_slice(&[1, 32]);
        buf.extend_from_slice(&[0u8; 32]);
    }
    let lock = buf.len();
    buf.extend_from_slice(&0u32.to_le_bytes());
    sha256d_parts(&[&buf[start..start + 4], &buf[body..wit], &buf[lock..]])
}

/// The merkle root of `hashes` (consumed as scratch space).
pub fn merkle_root(hashes: &mut Vec<H256>) -> H256 {
    if hashes.is_empty() {
        return [0; 32];
    }
    while hashes.len() > 1 {
        if hashes.len() % 2 == 1 {
            hashes.push(*hashes.last().unwrap());
        }
        let n = hashes.len() / 2;
        for i in 0..n {
            hashes[i] = sha256d_parts(&[&hashes[2 * i], &hashes[2 * i + 1]]);
        }
        hashes.truncate(n);
    }
    hashes[0]
}

/// BIP141's commitment: the witness merkle root (coinbase wtxid zero) with a zero reserved value.
pub fn witness_commitment(wtxids: &mut Vec<H256>) -> H256 {
    let root = merkle_root(wtxids);
    sha256d_parts(&[&root, &[0u8; 32]])
}

/// An 80-byte header.
pub fn header(prev: &H256, merkle: &H256, time: u32, nonce: u32) -> [u8; 80] {
    let mut h = [0u8; 80];
    h[..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
    h[4..36].copy_from_slice(prev);
    h[36..68].copy_from_slice(merkle);
    h[68..72].copy_from_slice(&time.to_le_bytes());
    // Regtest's minimum difficulty; nobody checks the proof of work.
    h[72..76].copy_from_slice(&0x207f_ffffu32.to_le_bytes());
    h[76..80].copy_from_slice(&nonce.to_le_bytes());
    h
}
