//! Undo records: what a block changed, so a reorg can roll it back without the daemon.
//!
//! A record holds no txid: an outpoint's txid is its funding transaction's, which the `txids`
//! table has by number for as long as the block is there (the block's own transactions and
//! the older ones it spent). Txids were three fifths of the first format's bytes, and the
//! records of the last `REORG_LIMIT` blocks were half of a 10M-transaction chain's database
//! (Litecoin test networks keep 4,000). Numbers are varints, the block's own transactions
//! counted from its first.

use crate::store::StoredUtxo;
use crate::types::{HashX, OutPoint, TxNum, Txid};

/// What one block did to the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UndoRecord {
    /// Outputs of earlier blocks that this block spent: restored on undo.
    pub spent: Vec<(OutPoint, StoredUtxo)>,
    /// Outputs this block created (spent or not): removed on undo.
    pub created: Vec<(OutPoint, StoredUtxo)>,
    /// History rows this block added: removed on undo.
    pub history: Vec<(HashX, TxNum)>,
}

/// Starts a record in the compact format. A record of the first format starts with its count
/// of spent outputs (u32 LE); no block spends 2^32 - 2 of them.
const COMPACT: [u8; 4] = [0xfe, 0xff, 0xff, 0xff];

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads what [`put_varint`] wrote, or `None` past the end or beyond 64 bits.
fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        if shift == 63 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn get_hashx(b: &mut &[u8]) -> Option<HashX> {
    let h = HashX(b.get(..HashX::LEN)?.try_into().ok()?);
    *b = &b[HashX::LEN..];
    Some(h)
}

/// A count that the rest of the record can hold (each item takes at least `min_item` bytes),
/// so that damage cannot make a decoder reserve memory for billions of items.
fn get_count(b: &mut &[u8], min_item: usize) -> Option<usize> {
    let n = usize::try_from(get_varint(b)?).ok()?;
    (n <= b.len() / min_item).then_some(n)
}

impl UndoRecord {
    /// The record of a block whose first transaction is `first`, in the compact format.
    pub(crate) fn encode(&self, first: TxNum) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.spent.len() * 24 + self.created.len() * 20 + self.history.len() * 13,
        );
        out.extend_from_slice(&COMPACT);
        put_varint(&mut out, first.0);
        put_varint(&mut out, self.spent.len() as u64);
        for (op, u) in &self.spent {
            out.extend_from_slice(&u.hashx.0);
            put_varint(&mut out, u.txnum.0);
            put_varint(&mut out, op.vout.into());
            put_varint(&mut out, u.value);
        }
        // The block's own transactions in block order: each number as the step from the last.
        let mut last = first.0;
        put_varint(&mut out, self.created.len() as u64);
        for (op, u) in &self.created {
            put_varint(&mut out, u.txnum.0 - last);
            last = u.txnum.0;
            put_varint(&mut out, op.vout.into());
            out.extend_from_slice(&u.hashx.0);
            put_varint(&mut out, u.value);
        }
        let mut last = first.0;
        put_varint(&mut out, self.history.len() as u64);
        for (h, t) in &self.history {
            put_varint(&mut out, t.0 - last);
            last = t.0;
            out.extend_from_slice(&h.0);
        }
        out
    }

    /// Reads a record of either format; `Ok(None)` if it is damaged. A compact record's txids
    /// come from `txids`, asked once with the tx numbers it needs, sorted and distinct, and
    /// answering in that order.
    pub(crate) fn decode<E>(
        b: &[u8],
        txids: impl FnOnce(&[TxNum]) -> Result<Vec<Txid>, E>,
    ) -> Result<Option<UndoRecord>, E> {
        let Some(rest) = b.strip_prefix(&COMPACT) else {
            return Ok(decode_first_format(b));
        };
        let Some(rec) = decode_compact(rest) else {
            return Ok(None);
        };
        let mut nums: Vec<TxNum> = rec
            .spent
            .iter()
            .chain(&rec.created)
            .map(|(_, u)| u.txnum)
            .collect();
        nums.sort_unstable();
        nums.dedup();
        let found = txids(&nums)?;
        if found.len() != nums.len() {
            return Ok(None);
        }
        let mut rec = rec;
        for (op, u) in rec.spent.iter_mut().chain(rec.created.iter_mut()) {
            let i = nums.binary_search(&u.txnum).expect("collected above");
            op.txid = found[i];
        }
        Ok(Some(rec))
    }
}

/// A compact record with every txid zero.
fn decode_compact(mut b: &[u8]) -> Option<UndoRecord> {
    let b = &mut b;
    let first = get_varint(b)?;
    let mut rec = UndoRecord::default();
    let outpoint = |vout: u64| -> Option<OutPoint> {
        Some(OutPoint {
            txid: Txid([0; 32]),
            vout: u32::try_from(vout).ok()?,
        })
    };
    for _ in 0..get_count(b, HashX::LEN + 3)? {
        let hashx = get_hashx(b)?;
        let txnum = TxNum(get_varint(b)?);
        let op = outpoint(get_varint(b)?)?;
        let value = get_varint(b)?;
        rec.spent.push((
            op,
            StoredUtxo {
                hashx,
                txnum,
                value,
            },
        ));
    }
    let mut txnum = first;
    for _ in 0..get_count(b, HashX::LEN + 3)? {
        txnum = txnum.checked_add(get_varint(b)?)?;
        let op = outpoint(get_varint(b)?)?;
        let hashx = get_hashx(b)?;
        let value = get_varint(b)?;
        rec.created.push((
            op,
            StoredUtxo {
                hashx,
                txnum: TxNum(txnum),
                value,
            },
        ));
    }
    let mut txnum = first;
    for _ in 0..get_count(b, HashX::LEN + 1)? {
        txnum = txnum.checked_add(get_varint(b)?)?;
        rec.history.push((get_hashx(b)?, TxNum(txnum)));
    }
    b.is_empty().then_some(rec)
}

/// The first format (schemas 1 to 3 wrote it), which still holds the last `REORG_LIMIT` blocks
/// of a database written before the compact one: counts as u32 LE, outpoints with their txids,
/// tx numbers in 5 bytes.
fn decode_first_format(mut b: &[u8]) -> Option<UndoRecord> {
    const UTXO_LEN: usize = 32 + 4 + HashX::LEN + TxNum::LEN + 8;
    const HISTORY_LEN: usize = HashX::LEN + TxNum::LEN;
    fn count(b: &mut &[u8], item: usize) -> Option<usize> {
        let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        *b = &b[4..];
        (b.len() >= n.checked_mul(item)?).then_some(n)
    }
    let mut rec = UndoRecord::default();
    for list in [&mut rec.spent, &mut rec.created] {
        let n = count(&mut b, UTXO_LEN)?;
        for _ in 0..n {
            let (item, rest) = b.split_at(UTXO_LEN);
            b = rest;
            let t = 36 + HashX::LEN;
            list.push((
                OutPoint {
                    txid: Txid(item[0..32].try_into().ok()?),
                    vout: u32::from_le_bytes(item[32..36].try_into().ok()?),
                },
                StoredUtxo {
                    hashx: HashX(item[36..t].try_into().ok()?),
                    txnum: TxNum::from_bytes(&item[t..t + TxNum::LEN]),
                    value: u64::from_le_bytes(item[t + TxNum::LEN..].try_into().ok()?),
                },
            ));
        }
    }
    let n = count(&mut b, HISTORY_LEN)?;
    for _ in 0..n {
        rec.history.push((
            HashX(b[..HashX::LEN].try_into().unwrap()),
            TxNum::from_bytes(&b[HashX::LEN..HISTORY_LEN]),
        ));
        b = &b[HISTORY_LEN..];
    }
    b.is_empty().then_some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn utxo(hashx: u8, txnum: u64, value: u64) -> StoredUtxo {
        StoredUtxo {
            hashx: HashX([hashx; 11]),
            txnum: TxNum(txnum),
            value,
        }
    }

    /// Each tx number's txid, as the `txids` table would give it.
    fn txid_of(t: TxNum) -> Txid {
        let mut id = [0x5a; 32];
        id[..8].copy_from_slice(&t.0.to_le_bytes());
        Txid(id)
    }

    fn op(txnum: u64, vout: u32) -> OutPoint {
        OutPoint {
            txid: txid_of(TxNum(txnum)),
            vout,
        }
    }

    /// A block whose transactions are numbered from 1,000,000: it spends two older outputs
    /// and creates outputs in three of its transactions.
    fn record() -> UndoRecord {
        UndoRecord {
            spent: vec![
                (op(123_456, 3), utxo(7, 123_456, 5_000_000_000)),
                (op(7, 70_000), utxo(8, 7, 0)),
            ],
            created: vec![
                (
                    op(1_000_000, 0),
                    utxo(1, 1_000_000, 21_000_000 * 100_000_000),
                ),
                (op(1_000_002, 1), utxo(2, 1_000_002, 1)),
                (op(1_000_002, 2), utxo(2, 1_000_002, 546)),
            ],
            history: vec![
                (HashX([1; 11]), TxNum(1_000_000)),
                (HashX([7; 11]), TxNum(1_000_002)),
                (HashX([2; 11]), TxNum(1_000_002)),
            ],
        }
    }

    fn lookup(nums: &[TxNum]) -> Result<Vec<Txid>, ()> {
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
        Ok(nums.iter().map(|t| txid_of(*t)).collect())
    }

    #[test]
    fn a_compact_record_gets_its_txids_back_from_the_txids_table() {
        let rec = record();
        let enc = rec.encode(TxNum(1_000_000));
        assert_eq!(UndoRecord::decode(&enc, lookup), Ok(Some(rec.clone())));
        // Well under the first format's 60 bytes per output and 16 per history row.
        assert!(enc.len() < 5 * 30 + 3 * 14, "{} bytes", enc.len());
        // Every txid is asked for once.
        let mut asked = HashMap::new();
        UndoRecord::decode(&enc, |nums: &[TxNum]| {
            for t in nums {
                *asked.entry(*t).or_insert(0) += 1;
            }
            lookup(nums)
        })
        .unwrap();
        assert_eq!(asked.len(), 4);
        assert!(asked.values().all(|&n| n == 1));
        // A store that fails fails the decode; one that lacks txids makes it damaged.
        assert_eq!(UndoRecord::decode(&enc, |_| Err("down")), Err("down"));
        let short = |_: &[TxNum]| Ok::<_, ()>(vec![]);
        assert_eq!(UndoRecord::decode(&enc, short), Ok(None));
    }

    #[test]
    fn damaged_records_are_refused_not_misread() {
        let enc = record().encode(TxNum(1_000_000));
        for len in 0..enc.len() {
            assert_eq!(
                UndoRecord::decode(&enc[..len], lookup),
                Ok(None),
                "{len} bytes"
            );
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert_eq!(UndoRecord::decode(&longer, lookup), Ok(None));
        // A count beyond what the record holds.
        let mut huge = COMPACT.to_vec();
        put_varint(&mut huge, 0);
        put_varint(&mut huge, u64::MAX);
        assert_eq!(UndoRecord::decode(&huge, lookup), Ok(None));
        assert_eq!(UndoRecord::decode(&[0xff; 4], lookup), Ok(None));
    }

    #[test]
    fn a_record_of_the_first_format_still_reads() {
        // As schemas 1 to 3 wrote it: counts as u32 LE, full outpoints, 5-byte tx numbers.
        let rec = record();
        let mut enc = Vec::new();
        for list in [&rec.spent, &rec.created] {
            enc.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for (op, u) in list {
                enc.extend_from_slice(&op.txid.0);
                enc.extend_from_slice(&op.vout.to_le_bytes());
                enc.extend_from_slice(&u.hashx.0);
                enc.extend_from_slice(&u.txnum.to_bytes());
                enc.extend_from_slice(&u.value.to_le_bytes());
            }
        }
        enc.extend_from_slice(&(rec.history.len() as u32).to_le_bytes());
        for (h, t) in &rec.history {
            enc.extend_from_slice(&h.0);
            enc.extend_from_slice(&t.to_bytes());
        }
        let never = |_: &[TxNum]| -> Result<Vec<Txid>, ()> { panic!("no lookup needed") };
        assert_eq!(UndoRecord::decode(&enc, never), Ok(Some(rec)));
        assert_eq!(UndoRecord::decode(&enc[..enc.len() - 1], never), Ok(None));
    }

    #[test]
    fn varints_round_trip_and_refuse_overflow() {
        for v in [0, 1, 127, 128, 300, u32::MAX.into(), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut s = b.as_slice();
            assert_eq!(get_varint(&mut s), Some(v));
            assert!(s.is_empty());
        }
        assert_eq!(get_varint(&mut [0xff; 11].as_slice()), None);
        assert_eq!(get_varint(&mut [0x80].as_slice()), None);
    }
}
