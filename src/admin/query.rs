//! The admin RPC's `query ITEMS [LIMIT]`: confirmed history, UTXOs and balance of scripts or
//! addresses, in ElectrumX's lines (`rpc_query`), read from the index alone so it works during
//! the initial sync too.
//!
//! As in ElectrumX an item is a script if it is hex (so a script hash is read as a script), else
//! a Base58 P2PKH or P2SH address of the coin; anything else is skipped without a line.

use crate::coin::{Coin, TxFamily};
use crate::store::{Store, StoreError};
use crate::types::{HashX, ScriptHash, TxNum};

use crate::protocol::pyfmt::thousands;

/// What `query` accepts per request when no limit is given (`electrumx_rpc`'s default).
pub(crate) const DEFAULT_LIMIT: usize = 1000;

/// The lines ElectrumX's `query` prints for `items`. `limit` bounds each list as ElectrumX's
/// does: `None` (a negative limit) prints everything, and 0 no history but every UTXO.
pub(crate) fn lines(
    coin: &Coin,
    store: &Store,
    items: &[String],
    limit: Option<usize>,
) -> Result<Vec<String>, StoreError> {
    let history_limit = limit.unwrap_or(usize::MAX);
    let utxo_limit = limit.filter(|&n| n > 0).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for item in items {
        let Some(hashx) = item_hashx(coin, item, &mut out) else {
            continue;
        };
        let txnums: Vec<TxNum> = store
            .history(&hashx)?
            .into_iter()
            .take(history_limit)
            .collect();
        if txnums.is_empty() {
            out.push("No history found".into());
        }
        let txids = store.txids(&txnums)?;
        let heights = store.txnum_heights(&txnums);
        for (n, (txid, height)) in txids.iter().zip(&heights).enumerate() {
            out.push(format!(
                "History #{}: height {} txid {txid}",
                thousands(n as i128),
                thousands(height.0.into())
            ));
        }
        // ElectrumX reads its UTXO rows in key order: output index, then tx number.
        let mut utxos = store.script_utxos(&hashx)?;
        utxos.sort_by_key(|u| (u.vout, u.txnum));
        if utxos.is_empty() {
            out.push("No UTXOs found".into());
        }
        let shown: Vec<TxNum> = utxos.iter().take(utxo_limit).map(|u| u.txnum).collect();
        let txids = store.txids(&shown)?;
        let heights = store.txnum_heights(&shown);
        for (n, ((u, txid), height)) in utxos.iter().zip(&txids).zip(&heights).enumerate() {
            out.push(format!(
                "UTXO #{}: txid {txid} tx_pos {} height {} value {}",
                thousands(n as i128 + 1),
                thousands(u.vout.into()),
                thousands(height.0.into()),
                thousands(u.value.into())
            ));
        }
        let balance: u64 = utxos.iter().map(|u| u.value).sum();
        out.push(format!("Balance: {} {}", coins(balance), coin.shortname));
    }
    Ok(out)
}

/// The item's script key, with its `Script:` or `Address:` line.
fn item_hashx(coin: &Coin, item: &str, out: &mut Vec<String>) -> Option<HashX> {
    if let Ok(script) = hex::decode(item) {
        out.push(format!("Script: {item}"));
        return Some(script_hashx(coin, &script));
    }
    let script = address_script(coin, item)?;
    out.push(format!("Address: {item}"));
    Some(script_hashx(coin, &script))
}

/// Kevacoin indexes an output under its script without the keva prefix, as its ElectrumX does.
fn script_hashx(coin: &Coin, script: &[u8]) -> HashX {
    let owner = match crate::coin::keva::script::split(script) {
        Some((_, prefix_len)) if coin.chain.tx == TxFamily::Kevacoin => &script[prefix_len..],
        _ => script,
    };
    ScriptHash::of_script(owner).hashx()
}

/// The output script of a Base58Check P2PKH or P2SH address of this coin and net.
fn address_script(coin: &Coin, address: &str) -> Option<Vec<u8>> {
    let raw = bitcoin::base58::decode_check(address).ok()?;
    let (version, hash) = raw.split_at(raw.len().checked_sub(20).filter(|&n| n > 0)?);
    let version = match version {
        [v] => *v,
        _ => return None,
    };
    if version == coin.p2pkh_verbyte {
        let mut s = vec![0x76, 0xa9, 0x14];
        s.extend_from_slice(hash);
        s.extend_from_slice(&[0x88, 0xac]);
        Some(s)
    } else if coin.p2sh_verbytes.contains(&version) {
        let mut s = vec![0xa9, 0x14];
        s.extend_from_slice(hash);
        s.push(0x87);
        Some(s)
    } else {
        None
    }
}

/// Python's `f"{Decimal(sats) / 100_000_000:,f}"`: grouped whole coins, the fraction without
/// trailing zeros.
fn coins(sats: u64) -> String {
    let whole = thousands((sats / 100_000_000).into());
    let frac = format!("{:08}", sats % 100_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole
    } else {
        format!("{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regtest() -> Coin {
        crate::coin::CoinRegistry::embedded()
            .unwrap()
            .lookup("Litecoin", "regtest")
            .unwrap()
    }

    fn base58(version: u8, hash: [u8; 20]) -> String {
        bitcoin::base58::encode_check(&[&[version][..], &hash].concat())
    }

    #[test]
    fn items_are_hex_scripts_or_base58_addresses_as_in_electrumx() {
        let coin = regtest();
        let mut lines = Vec::new();
        let p2pkh = base58(coin.p2pkh_verbyte, [7; 20]);
        let script = [&[0x76, 0xa9, 0x14][..], &[7; 20], &[0x88, 0xac]].concat();
        assert_eq!(
            item_hashx(&coin, &p2pkh, &mut lines),
            Some(ScriptHash::of_script(&script).hashx())
        );
        let p2sh = base58(coin.p2sh_verbytes[1], [8; 20]);
        let script = [&[0xa9, 0x14][..], &[8; 20], &[0x87]].concat();
        assert_eq!(
            item_hashx(&coin, &p2sh, &mut lines),
            Some(ScriptHash::of_script(&script).hashx())
        );
        // Anything hex is a script, as in ElectrumX.
        assert_eq!(
            item_hashx(&coin, "00", &mut lines),
            Some(ScriptHash::of_script(&[0]).hashx())
        );
        // Another net's address, bech32 and junk give no line at all.
        let mainnet = base58(0x30, [7; 20]);
        for item in [
            mainnet.as_str(),
            "rltc1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
            "x y",
        ] {
            assert_eq!(item_hashx(&coin, item, &mut lines), None, "{item}");
        }
        assert_eq!(
            lines,
            [
                format!("Address: {p2pkh}"),
                format!("Address: {p2sh}"),
                "Script: 00".to_string()
            ]
        );
    }

    #[test]
    fn balances_print_as_python_decimals() {
        assert_eq!(coins(0), "0");
        assert_eq!(coins(1), "0.00000001");
        assert_eq!(coins(150_000_000), "1.5");
        assert_eq!(coins(5_000_000_000), "50");
        assert_eq!(coins(123_456_789_012_345), "1,234,567.89012345");
    }
}
