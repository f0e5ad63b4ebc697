//! A zero-copy cursor over serialized blocks and transactions.
//!
//! Every read hands back slices of the caller's buffer, so parsers can hash what they read without
//! copying it. Every count read from the data is checked against what is left before anything is
//! allocated for it, so a corrupt or hostile count fails fast instead of exhausting memory.

use super::ParseError;

/// Bitcoin Core refuses any vector or byte string longer than this (`MAX_SIZE` in serialize.h);
/// the daemon never serves data that breaks it, so larger values mean corrupt input.
pub(crate) const MAX_SIZE: u64 = 0x0200_0000;

/// A read position over a byte slice.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Bytes read so far, i.e. the offset of the next read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes from an earlier `position()` up to the current one, so a caller can hash a
    /// stretch it has just parsed without re-serializing it.
    ///
    /// Panics if `start` is beyond the current position (a caller bug, never bad input).
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.data[start..self.pos]
    }

    /// An `Invalid` error at `offset`.
    pub fn invalid(offset: usize, what: impl Into<String>) -> ParseError {
        ParseError::Invalid {
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn read_bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(ParseError::Truncated {
                offset: self.pos,
                needed: n - remaining,
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    pub(crate) fn read_array<const N: usize>(&mut self) -> Result<&'a [u8; N], ParseError> {
        let bytes = self.read_bytes(N)?;
        Ok(bytes.try_into().expect("read_bytes returned N bytes"))
    }

    pub fn skip(&mut self, n: usize) -> Result<(), ParseError> {
        self.read_bytes(n).map(|_| ())
    }

    pub(crate) fn read_u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.read_array::<1>()?[0])
    }

    pub(crate) fn read_u16_le(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(*self.read_array()?))
    }

    pub fn read_u32_le(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(*self.read_array()?))
    }

    pub(crate) fn read_u64_le(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(*self.read_array()?))
    }

    /// Bitcoin's CompactSize. Like bitcoind, refuses a value encoded in more bytes than it needs:
    /// such an encoding would give the same transaction a second serialization (and txid).
    pub fn read_compact_size(&mut self) -> Result<u64, ParseError> {
        let start = self.pos;
        let (value, min) = match self.read_u8()? {
            0xfd => (u64::from(self.read_u16_le()?), 0xfd),
            0xfe => (u64::from(self.read_u32_le()?), 0x1_0000),
            0xff => (self.read_u64_le()?, 0x1_0000_0000),
            small => return Ok(u64::from(small)),
        };
        if value < min {
            return Err(Self::invalid(start, "non-canonical compact size"));
        }
        Ok(value)
    }

    /// A CompactSize element count, each element taking at least `min_item_len` bytes. Fails
    /// before the caller allocates anything if the elements cannot fit in what is left.
    pub fn read_count(&mut self, min_item_len: usize) -> Result<usize, ParseError> {
        let start = self.pos;
        let count = self.read_compact_size()?;
        if count > MAX_SIZE {
            return Err(Self::invalid(
                start,
                format!("count {count} exceeds the maximum {MAX_SIZE}"),
            ));
        }
        // Cannot overflow: count <= 2^25 and item lengths are small constants.
        let count = count as usize;
        let needed = count.saturating_mul(min_item_len);
        let remaining = self.remaining();
        if needed > remaining {
            return Err(ParseError::Truncated {
                offset: self.pos,
                needed: needed - remaining,
            });
        }
        Ok(count)
    }

    /// A CompactSize length followed by that many bytes (scripts, witness items).
    pub fn read_var_bytes(&mut self) -> Result<&'a [u8], ParseError> {
        let len = self.read_count(1)?;
        self.read_bytes(len)
    }

    /// Bitcoin Core's VARINT (serialize.h): MSB-first base-128 where every continuation digit
    /// is stored minus one, so each number has exactly one encoding. MWEB structures use it.
    pub(crate) fn read_varint(&mut self) -> Result<u64, ParseError> {
        let start = self.pos;
        let mut n: u64 = 0;
        loop {
            let byte = self.read_u8()?;
            if n > (u64::MAX >> 7) {
                return Err(Self::invalid(start, "VARINT too large"));
            }
            n = (n << 7) | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                return Ok(n);
            }
            n = n
                .checked_add(1)
                .ok_or_else(|| Self::invalid(start, "VARINT too large"))?;
        }
    }

    /// A VARINT that must not exceed `max`, as Core's typed `ReadVarInt<I>` enforces for signed
    /// and 32-bit fields.
    pub(crate) fn read_varint_max(&mut self, max: u64, what: &str) -> Result<u64, ParseError> {
        let start = self.pos;
        let value = self.read_varint()?;
        if value > max {
            return Err(Self::invalid(start, format!("{what} {value} out of range")));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(bytes: &[u8]) -> Result<u64, ParseError> {
        Reader::new(bytes).read_compact_size()
    }

    fn varint(bytes: &[u8]) -> Result<u64, ParseError> {
        let mut r = Reader::new(bytes);
        let v = r.read_varint()?;
        assert_eq!(r.remaining(), 0, "VARINT {bytes:02x?} not consumed exactly");
        Ok(v)
    }

    #[test]
    fn compact_size_boundaries() {
        assert_eq!(compact(&[0x00]), Ok(0));
        assert_eq!(compact(&[0xfc]), Ok(0xfc));
        assert_eq!(compact(&[0xfd, 0xfd, 0x00]), Ok(0xfd));
        assert_eq!(compact(&[0xfd, 0xff, 0xff]), Ok(0xffff));
        assert_eq!(compact(&[0xfe, 0x00, 0x00, 0x01, 0x00]), Ok(0x1_0000));
        assert_eq!(compact(&[0xfe, 0xff, 0xff, 0xff, 0xff]), Ok(0xffff_ffff));
        assert_eq!(compact(&[0xff, 0, 0, 0, 0, 1, 0, 0, 0]), Ok(0x1_0000_0000));
        assert_eq!(compact(&[0xff; 9]), Ok(u64::MAX));
    }

    #[test]
    fn compact_size_rejects_non_canonical() {
        for bytes in [
            &[0xfd, 0xfc, 0x00][..],
            &[0xfd, 0x00, 0x00],
            &[0xfe, 0xff, 0xff, 0x00, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ] {
            assert!(
                matches!(compact(bytes), Err(ParseError::Invalid { offset: 0, .. })),
                "{bytes:02x?} accepted"
            );
        }
    }

    #[test]
    fn compact_size_truncated() {
        assert_eq!(
            compact(&[]),
            Err(ParseError::Truncated {
                offset: 0,
                needed: 1
            })
        );
        assert_eq!(
            compact(&[0xfd, 0x01]),
            Err(ParseError::Truncated {
                offset: 1,
                needed: 1
            })
        );
        assert_eq!(
            compact(&[0xff, 1, 2, 3]),
            Err(ParseError::Truncated {
                offset: 1,
                needed: 5
            })
        );
    }

    #[test]
    fn count_that_cannot_fit_fails_before_allocating() {
        // Far beyond MAX_SIZE: refused as invalid.
        let mut r = Reader::new(&[0xff; 9]);
        assert!(matches!(r.read_count(1), Err(ParseError::Invalid { .. })));
        // Within MAX_SIZE but more than the data holds: truncated, and says by how much.
        let mut r = Reader::new(&[0xfe, 0x00, 0x00, 0x00, 0x01, 0xaa]);
        assert_eq!(
            r.read_count(10),
            Err(ParseError::Truncated {
                offset: 5,
                needed: 0x0100_0000 * 10 - 1
            })
        );
        let mut r = Reader::new(&[0x02, 0xaa, 0xbb]);
        assert_eq!(r.read_count(1), Ok(2));
    }

    #[test]
    fn var_bytes_and_positions() {
        let data = [0x03, 1, 2, 3, 0xee];
        let mut r = Reader::new(&data);
        assert_eq!(r.read_var_bytes(), Ok(&[1u8, 2, 3][..]));
        assert_eq!(r.position(), 4);
        assert_eq!(r.since(1), &[1, 2, 3]);
        assert_eq!(r.read_u8(), Ok(0xee));
        assert_eq!(r.remaining(), 0);
        assert!(Reader::new(&[0x05, 1, 2]).read_var_bytes().is_err());
    }

    #[test]
    fn fixed_width_integers_are_little_endian() {
        let data = [0x01, 0x00, 0x00, 0x80, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut r = Reader::new(&data);
        assert_eq!(r.read_u32_le(), Ok(0x8000_0001));
        assert_eq!(r.read_u64_le(), Ok(0x0807_0605_0403_0201));
        assert!(matches!(
            r.read_u8(),
            Err(ParseError::Truncated {
                offset: 12,
                needed: 1
            })
        ));
    }

    #[test]
    fn varint_matches_core_examples() {
        // The table in Bitcoin Core's serialize.h.
        assert_eq!(varint(&[0x00]), Ok(0));
        assert_eq!(varint(&[0x01]), Ok(1));
        assert_eq!(varint(&[0x7f]), Ok(127));
        assert_eq!(varint(&[0x80, 0x00]), Ok(128));
        assert_eq!(varint(&[0x80, 0x7f]), Ok(255));
        assert_eq!(varint(&[0x81, 0x00]), Ok(256));
        assert_eq!(varint(&[0xfe, 0x7f]), Ok(16383));
        assert_eq!(varint(&[0xff, 0x00]), Ok(16384));
        assert_eq!(varint(&[0xff, 0x7f]), Ok(16511));
        assert_eq!(varint(&[0x82, 0xfe, 0x7f]), Ok(65535));
        assert_eq!(varint(&[0x8e, 0xfe, 0xfe, 0xff, 0x00]), Ok(1 << 32));
    }

    #[test]
    fn varint_overflow_and_truncation() {
        assert!(matches!(
            varint(&[0xff; 11]),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x80]).read_varint(),
            Err(ParseError::Truncated { .. })
        ));
        let mut r = Reader::new(&[0x80, 0x7f]);
        assert!(r.read_varint_max(254, "height").is_err());
        let mut r = Reader::new(&[0x80, 0x7f]);
        assert_eq!(r.read_varint_max(255, "height"), Ok(255));
    }
}
