//! Domain types shared by every layer: heights, transaction numbers, hashes, and which IP
//! addresses count as private.
//!
//! Hashes are kept in internal (little-endian, as serialized) byte order and displayed reversed,
//! the way bitcoind and Electrum show them.

use std::fmt;
use std::net::IpAddr;

/// A block height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Height(pub u32);

/// The position of a confirmed transaction in chain order, counted from the genesis coinbase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxNum(pub u64);

impl TxNum {
    /// Bytes of a serialized `TxNum` in keys: 2^40 transactions is far beyond any chain.
    pub(crate) const LEN: usize = 5;

    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let b = self.0.to_be_bytes();
        [b[3], b[4], b[5], b[6], b[7]]
    }

    pub(crate) fn from_bytes(b: &[u8]) -> TxNum {
        let mut full = [0u8; 8];
        full[3..].copy_from_slice(&b[..Self::LEN]);
        TxNum(u64::from_be_bytes(full))
    }
}

impl Height {
    pub(crate) fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(b: &[u8]) -> Height {
        Height(u32::from_be_bytes(b[..4].try_into().expect("4 bytes")))
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Writes a hash in display order (reversed) as lowercase hex, in one `write_str`: hashes are
/// formatted for every history entry and status hash, so per-byte `{:02x}` showed in profiles.
fn fmt_reversed(bytes: &[u8; 32], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().rev().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    f.write_str(std::str::from_utf8(&out).expect("hex digits are ASCII"))
}

/// Parses display-order hex (64 chars) into internal byte order.
fn parse_reversed(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    out.reverse();
    Some(out)
}

macro_rules! hash_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// From display-order hex, as the daemon and wallets write it.
            pub fn from_hex(s: &str) -> Option<Self> {
                parse_reversed(s).map(Self)
            }

            pub fn to_hex(&self) -> String {
                self.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_reversed(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
    };
}

hash_type!(
    /// A transaction id: double SHA-256 of the transaction without witness (or MWEB) data.
    Txid
);
hash_type!(
    /// A block hash as the coin's header family defines it.
    BlockHash
);
hash_type!(
    /// SHA-256 of an output script (Electrum's "script hash"), in internal order.
    ScriptHash
);

impl ScriptHash {
    pub fn of_script(script: &[u8]) -> ScriptHash {
        use bitcoin::hashes::{sha256, Hash};
        ScriptHash(sha256::Hash::hash(script).to_byte_array())
    }

    /// The key prefix under which this script's rows are stored.
    pub fn hashx(&self) -> HashX {
        let mut h = [0u8; HashX::LEN];
        h.copy_from_slice(&self.0[..HashX::LEN]);
        HashX(h)
    }
}

/// Double SHA-256, the hash behind txids, block hashes and merkle trees.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    use bitcoin::hashes::{sha256d, Hash};
    sha256d::Hash::hash(data).to_byte_array()
}

/// The first bytes of a script hash, as ElectrumX keys its rows. 88 bits make accidental
/// collisions negligible while keeping history keys short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HashX(pub [u8; HashX::LEN]);

impl HashX {
    pub const LEN: usize = 11;
}

/// A reference to a transaction output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutPoint {
    pub txid: Txid,
    pub vout: u32,
}

/// Python's `ip_address(…).is_private` (roughly): loopback, RFC 1918, link-local, documentation,
/// shared and reserved ranges. Such clients are never grouped or rate-limited as a subnet.
pub(crate) fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_documentation()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]))
                || (v4.octets()[0] == 198 && (18..20).contains(&v4.octets()[1]))
                || v4.octets()[0] >= 240
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || (v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txnum_roundtrip_keeps_order() {
        let a = TxNum(255).to_bytes();
        let b = TxNum(256).to_bytes();
        assert!(a < b);
        assert_eq!(TxNum::from_bytes(&b), TxNum(256));
        assert_eq!(
            TxNum::from_bytes(&TxNum((1 << 40) - 1).to_bytes()),
            TxNum((1 << 40) - 1)
        );
    }

    #[test]
    fn hashes_display_reversed() {
        let h = Txid::from_hex("00000000000000000000000000000000000000000000000000000000000000ff")
            .unwrap();
        assert_eq!(h.0[0], 0xff);
        assert_eq!(
            h.to_string(),
            "00000000000000000000000000000000000000000000000000000000000000ff"
        );
        assert!(Txid::from_hex("zz").is_none());
    }

    #[test]
    fn scripthash_matches_electrum_definition() {
        // Electrum docs: P2PKH 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa
        let script = hex::decode("76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac").unwrap();
        assert_eq!(
            ScriptHash::of_script(&script).to_string(),
            "8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161"
        );
    }
}
