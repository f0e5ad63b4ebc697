//! Zcash-style block headers (Zcash, Komodo and every Komodo smart chain): a 140-byte base, then
//! a CompactSize length and the Equihash solution.
//!
//! `version (4) ‖ prev_hash (32) ‖ merkle_root (32) ‖ final_sapling_root / reserved (32) ‖
//! time (4) ‖ bits (4) ‖ nonce (32)`, then the solution: 1344 bytes for Equihash (200,9), so 1487
//! bytes in all, but smart chains started with `-ac_nk` use other parameters, so the solution's
//! length is always read, never assumed. The block hash is double SHA-256 of the whole header,
//! solution included, and the whole header is what `blockchain.block.header(s)` serves.

use super::reader::Reader;
use super::ParseError;

/// The header before the solution's length.
pub const BASE_HEADER_LEN: usize = 140;

/// Reads one header, solution included, and returns its bytes.
pub fn read_header<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], ParseError> {
    let start = r.position();
    r.skip(BASE_HEADER_LEN)?;
    r.read_var_bytes()?; // the Equihash solution
    Ok(r.since(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_includes_its_solution() {
        let mut raw = vec![0x04u8; BASE_HEADER_LEN];
        raw.extend([0xfd, 0x40, 0x05]);
        raw.extend([0xab; 1344]);
        raw.push(0x01); // the block's tx count, not part of the header
        let mut r = Reader::new(&raw);
        let header = read_header(&mut r).unwrap();
        assert_eq!(header.len(), 1487);
        assert_eq!(header, &raw[..1487]);
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    fn any_solution_length_is_read() {
        // `-ac_nk` smart chains: other Equihash parameters, other solution lengths.
        for len in [0usize, 36, 400, 1344] {
            let mut raw = vec![0u8; BASE_HEADER_LEN];
            let mut sol = Vec::new();
            if len < 0xfd {
                sol.push(len as u8);
            } else {
                sol.push(0xfd);
                sol.extend((len as u16).to_le_bytes());
            }
            raw.extend(sol);
            raw.extend(vec![0x11; len]);
            let mut r = Reader::new(&raw);
            assert_eq!(read_header(&mut r).unwrap().len(), raw.len());
        }
    }

    #[test]
    fn truncated_header_is_reported() {
        let mut raw = vec![0u8; BASE_HEADER_LEN];
        raw.extend([0xfd, 0x40, 0x05]);
        raw.extend([0u8; 1344]);
        for cut in [0, 100, BASE_HEADER_LEN, BASE_HEADER_LEN + 1, raw.len() - 1] {
            assert!(
                matches!(
                    read_header(&mut Reader::new(&raw[..cut])),
                    Err(ParseError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }
}
