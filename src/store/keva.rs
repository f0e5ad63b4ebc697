//! The `keva` column family: what the keva methods need per confirmed transaction, written and
//! undone with its block.
//!
//! | key | value |
//! |---|---|
//! | `r` ‖ tx num | outputs (value, full script) and inputs (outpoints) |
//! | `t` ‖ txid | tx num (finds a transaction the methods are asked about) |
//!
//! Output scripts are kept whole: the keva operation is read from them again, and a transaction's
//! inputs are described from their parents' records, as the fork's `tx_info` does.

use std::ops::Range;

use super::{Batch, Store, StoreError};
use crate::coin::keva::KevaTx;
use crate::coin::reader::Reader;
use crate::coin::ParsedTx;
use crate::types::{HashX, OutPoint, TxNum, Txid};

const RECORD: u8 = b'r';
const TXID: u8 = b't';

/// One transaction as the keva methods see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// `(value, script)` per output, in vout order.
    pub outputs: Vec<(u64, Vec<u8>)>,
    /// Spent outpoints; empty for a coinbase.
    pub inputs: Vec<OutPoint>,
}

impl TxRecord {
    pub(crate) fn of(tx: &ParsedTx, keva: &KevaTx) -> TxRecord {
        TxRecord {
            outputs: tx
                .outputs
                .iter()
                .zip(&keva.scripts)
                .map(|(o, s)| (o.value, s.clone()))
                .collect(),
            inputs: tx.inputs.clone(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let size: usize = self.outputs.iter().map(|(_, s)| s.len() + 12).sum();
        let mut out = Vec::with_capacity(size + self.inputs.len() * 36 + 10);
        compact_size(&mut out, self.outputs.len());
        for (value, script) in &self.outputs {
            out.extend(value.to_le_bytes());
            compact_size(&mut out, script.len());
            out.extend_from_slice(script);
        }
        compact_size(&mut out, self.inputs.len());
        for op in &self.inputs {
            out.extend(op.txid.0);
            out.extend(op.vout.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(raw: &[u8]) -> Option<TxRecord> {
        let mut r = Reader::new(raw);
        let n = r.read_count(9).ok()?;
        let mut outputs = Vec::with_capacity(n);
        for _ in 0..n {
            let value = r.read_u64_le().ok()?;
            outputs.push((value, r.read_var_bytes().ok()?.to_vec()));
        }
        let n = r.read_count(36).ok()?;
        let mut inputs = Vec::with_capacity(n);
        for _ in 0..n {
            let txid = Txid(*r.read_array::<32>().ok()?);
            inputs.push(OutPoint {
                txid,
                vout: r.read_u32_le().ok()?,
            });
        }
        (r.remaining() == 0).then_some(TxRecord { outputs, inputs })
    }
}

fn compact_size(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend((n as u16).to_le_bytes());
        }
        _ => {
            out.push(0xfe);
            out.extend((n as u32).to_le_bytes());
        }
    }
}

fn record_key(txnum: TxNum) -> [u8; 1 + TxNum::LEN] {
    let mut k = [RECORD; 1 + TxNum::LEN];
    k[1..].copy_from_slice(&txnum.to_bytes());
    k
}

fn txid_key(txid: &Txid) -> [u8; 33] {
    let mut k = [TXID; 33];
    k[1..].copy_from_slice(&txid.0);
    k
}

/// The indexer's hook for one confirmed transaction: its rows go into the block's batch, and its
/// name-index entries join the scripts whose history gets the transaction (and so the block's
/// undo record, which removes them again in a reorg).
pub(crate) fn add_confirmed(
    rows: &mut Vec<(Vec<u8>, Vec<u8>)>,
    txnum: TxNum,
    tx: &ParsedTx,
    keva: &KevaTx,
    touched: &mut Vec<HashX>,
) {
    rows.push((record_key(txnum).to_vec(), TxRecord::of(tx, keva).encode()));
    rows.push((txid_key(&tx.txid).to_vec(), txnum.to_bytes().to_vec()));
    touched.extend(keva.confirmed_hashxs());
}

/// Removes the rows of the transactions numbered `range` (a block being undone). Reads the
/// store as it was before the batch, so it runs before the batch is committed.
pub(crate) fn undo_block(
    store: &Store,
    batch: &mut Batch<'_>,
    range: Range<u64>,
) -> Result<(), StoreError> {
    let end = record_key(TxNum(range.end));
    let mut found = Vec::new();
    store.keva_scan(&record_key(TxNum(range.start)), |k, _| {
        let keep_going = k < &end[..];
        if keep_going {
            found.push(TxNum::from_bytes(&k[1..]));
        }
        keep_going
    })?;
    for (txnum, txid) in found.iter().zip(store.txids(&found)?) {
        batch.delete_keva(&record_key(*txnum));
        batch.delete_keva(&txid_key(&txid));
    }
    Ok(())
}

/// The number of a confirmed transaction, if the index has it.
pub fn txnum(store: &Store, txid: &Txid) -> Result<Option<TxNum>, StoreError> {
    let tip = store.tx_count();
    Ok(store
        .keva_get(&txid_key(txid))?
        .filter(|v| v.len() == TxNum::LEN)
        .map(|v| TxNum::from_bytes(&v))
        // A row past the tip belongs to a batch that never committed.
        .filter(|t| t.0 < tip))
}

/// The record of a confirmed transaction.
pub fn record(store: &Store, txnum: TxNum) -> Result<Option<TxRecord>, StoreError> {
    match store.keva_get(&record_key(txnum))? {
        None => Ok(None),
        Some(raw) => TxRecord::decode(&raw)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("keva record of tx {}", txnum.0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_damage() {
        let rec = TxRecord {
            outputs: vec![(5, vec![0x51]), (u64::MAX, vec![0xaa; 300]), (0, vec![])],
            inputs: vec![OutPoint {
                txid: Txid([3; 32]),
                vout: 7,
            }],
        };
        let enc = rec.encode();
        assert_eq!(TxRecord::decode(&enc), Some(rec));
        assert_eq!(TxRecord::decode(&enc[..enc.len() - 1]), None);
        let mut longer = enc.clone();
        longer.push(0);
        assert_eq!(TxRecord::decode(&longer), None);
    }
}
