//! Undo records: what a block changed, so a reorg can roll it back without the daemon.

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

const UTXO_LEN: usize = 32 + 4 + HashX::LEN + TxNum::LEN + 8;
const HISTORY_LEN: usize = HashX::LEN + TxNum::LEN;

fn put_utxo(out: &mut Vec<u8>, op: &OutPoint, u: &StoredUtxo) {
    out.extend_from_slice(&op.txid.0);
    out.extend_from_slice(&op.vout.to_le_bytes());
    out.extend_from_slice(&u.hashx.0);
    out.extend_from_slice(&u.txnum.to_bytes());
    out.extend_from_slice(&u.value.to_le_bytes());
}

fn get_utxo(b: &[u8]) -> (OutPoint, StoredUtxo) {
    let op = OutPoint {
        txid: Txid(b[0..32].try_into().unwrap()),
        vout: u32::from_le_bytes(b[32..36].try_into().unwrap()),
    };
    let hashx = HashX(b[36..36 + HashX::LEN].try_into().unwrap());
    let t = 36 + HashX::LEN;
    let txnum = TxNum::from_bytes(&b[t..t + TxNum::LEN]);
    let value = u64::from_le_bytes(b[t + TxNum::LEN..t + TxNum::LEN + 8].try_into().unwrap());
    (
        op,
        StoredUtxo {
            hashx,
            txnum,
            value,
        },
    )
}

impl UndoRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            12 + (self.spent.len() + self.created.len()) * UTXO_LEN
                + self.history.len() * HISTORY_LEN,
        );
        for list in [&self.spent, &self.created] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for (op, u) in list {
                put_utxo(&mut out, op, u);
            }
        }
        out.extend_from_slice(&(self.history.len() as u32).to_le_bytes());
        for (h, t) in &self.history {
            out.extend_from_slice(&h.0);
            out.extend_from_slice(&t.to_bytes());
        }
        out
    }

    pub(crate) fn decode(mut b: &[u8]) -> Option<UndoRecord> {
        fn count(b: &mut &[u8], item: usize) -> Option<usize> {
            let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
            *b = &b[4..];
            (b.len() >= n.checked_mul(item)?).then_some(n)
        }
        let mut rec = UndoRecord::default();
        for list in [&mut rec.spent, &mut rec.created] {
            let n = count(&mut b, UTXO_LEN)?;
            for _ in 0..n {
                list.push(get_utxo(&b[..UTXO_LEN]));
                b = &b[UTXO_LEN..];
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_record_roundtrip_and_rejects_damage() {
        let u = StoredUtxo {
            hashx: HashX([7; 11]),
            txnum: TxNum(123_456),
            value: 5_000_000_000,
        };
        let op = OutPoint {
            txid: Txid([9; 32]),
            vout: 3,
        };
        let rec = UndoRecord {
            spent: vec![(op, u)],
            created: vec![(op, u), (op, u)],
            history: vec![(HashX([1; 11]), TxNum(5))],
        };
        let enc = rec.encode();
        assert_eq!(UndoRecord::decode(&enc), Some(rec));
        assert_eq!(UndoRecord::decode(&enc[..enc.len() - 1]), None);
        assert_eq!(UndoRecord::decode(&[0xff; 4]), None);
    }
}
