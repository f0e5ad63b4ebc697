//! What each method costs, as ElectrumX charges it: a flat part per method
//! ([`Method::base_cost`](super::Method::base_cost)) and, for methods whose work varies, the
//! parts below, which grow with the work done. The session layer adds them up and throttles.

/// Reading a confirmed history of `items` entries and the mempool's `mempool` entries.
pub(crate) fn history(items: usize, mempool: usize) -> f64 {
    0.2 + items as f64 / 1000.0 + 0.25 + mempool as f64 / 50.0
}

/// Computing a status over `items` history entries (about 67 bytes of text each).
pub(crate) fn status(items: usize) -> f64 {
    0.2 + items as f64 / 1000.0 + 0.1 + (items * 67) as f64 * 0.00002
}

/// The mempool part of a history alone.
pub(crate) fn mempool(entries: usize) -> f64 {
    0.25 + entries as f64 / 50.0
}

/// A balance or unspent list over `utxos` outputs.
pub(crate) fn utxos(utxos: usize) -> f64 {
    1.0 + utxos as f64 / 50.0
}

/// `count` headers requested, with or without a checkpoint proof.
pub(crate) fn headers(count: u64, proof: bool) -> f64 {
    count as f64 / 50.0 + if proof { 1.0 } else { 0.0 }
}

pub(crate) fn header(proof: bool) -> f64 {
    if proof {
        1.25
    } else {
        0.25
    }
}

/// A merkle branch in a block of `txs` transactions: reading its txids, then the tree
/// (cheaper per transaction in big blocks, whose trees are cached).
pub(crate) fn merkle(txs: usize) -> f64 {
    let tree = if txs >= 200 {
        10.0 * (txs as f64).sqrt()
    } else {
        txs as f64
    };
    0.25 + txs as f64 * 0.0001 + tree / 2500.0
}

/// Broadcasting `hex_len` characters of transaction.
pub(crate) fn broadcast(hex_len: usize) -> f64 {
    0.25 + hex_len as f64 / 5000.0
}

/// An outpoint's status: ElectrumX charges 0.1, plus 1 for each of its two daemon calls when
/// its cache misses, plus 0.1 for the mempool; here two index reads stand in for the calls.
pub(crate) const OUTPOINT_STATUS: f64 = 2.2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Method;

    #[test]
    fn method_costs_grow_with_work() {
        assert_eq!(Method::ServerPing.base_cost(), 0.1);
        assert_eq!(Method::ServerVersion.base_cost(), 0.5);
        assert_eq!(Method::TransactionGet.base_cost(), 1.0);
        assert!(history(10_000, 0) > history(10, 0) + 9.0);
        assert!((history(1000, 0) - 1.45).abs() < 1e-9);
        assert!((utxos(100) - 3.0).abs() < 1e-9);
        assert!((headers(2016, true) - (2016.0 / 50.0 + 1.0)).abs() < 1e-9);
        assert!(merkle(4000) > merkle(100));
        assert!(merkle(4000) < 4000.0 / 2500.0, "big trees are cached");
        assert!((broadcast(5000) - 1.25).abs() < 1e-9);
        assert!(status(1000) > history(1000, 0) - 0.25);
    }
}
