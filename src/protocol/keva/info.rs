//! `blockchain.keva.get_transactions_info`'s per-transaction record, shaped as the fork's `tx_info`
//! JSON: `{"o": [address, value, …], "t": time, "h": height, "n": [namespace, vout]?, "i":
//! [address, value, …]}` (`t` = `h` = −1 in mempool).
//!
//! Addresses are written the fork's way: P2SH (`a9 14 …`, 23 bytes) as a Base58Check address,
//! OP_RETURN as `"ret"`, and anything else as `"unh"` + Base58Check of the script. One deliberate
//! difference: the fork tests P2PKH with the bytes `76 a4 14` (a typo for `76 a9 14`), so its
//! P2PKH outputs come out as `"unh…"`; here P2PKH scripts get their real address (see README).

use serde::Serialize;
use serde_json::Value;

use crate::coin::keva::script;
use crate::coin::Coin;

/// An address label of an output script (keva prefix included or not).
pub(crate) fn address(coin: &Coin, script: &[u8]) -> String {
    let owner = match script::split(script) {
        Some((_, prefix_len)) => &script[prefix_len..],
        None => script,
    };
    let versioned = |version: u8, hash: &[u8]| {
        let mut payload = Vec::with_capacity(21);
        payload.push(version);
        payload.extend_from_slice(hash);
        bitcoin::base58::encode_check(&payload)
    };
    if owner.len() == 23 && owner.starts_with(&[0xa9, 0x14]) {
        versioned(coin.p2sh_verbytes[0], &owner[2..22])
    } else if owner.len() == 25 && owner.starts_with(&[0x76, 0xa9, 0x14]) {
        versioned(coin.p2pkh_verbyte, &owner[3..23])
    } else if owner.first() == Some(&0x6a) {
        "ret".to_string()
    } else {
        format!("unh{}", bitcoin::base58::encode_check(owner))
    }
}

/// A namespace id as users see it: Base58Check of its 21 bytes (`N…`).
pub(crate) fn namespace_id(namespace: &[u8]) -> String {
    bitcoin::base58::encode_check(namespace)
}

/// An input's spent output, as the record describes it.
pub(crate) struct SpentOutput {
    pub address: String,
    pub value: u64,
    /// Created in the same block: the fork lists such inputs one by one, while inputs from
    /// earlier blocks are merged by address with their values added.
    pub same_block: bool,
}

/// The `kv` part added with `namespace_info`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct KeyValue {
    pub op: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct TxInfo {
    pub o: Vec<Value>,
    pub t: i64,
    pub h: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<(String, u32)>,
    pub i: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv: Option<KeyValue>,
}

impl TxInfo {
    /// `outputs` as `(value, script)` in vout order; `inputs` resolved (unresolvable inputs left
    /// out, as the fork skips them).
    pub(crate) fn new(
        coin: &Coin,
        outputs: &[(u64, Vec<u8>)],
        inputs: Vec<SpentOutput>,
        time: i64,
        height: i64,
    ) -> TxInfo {
        let mut o = Vec::with_capacity(outputs.len() * 2);
        let mut n = None;
        for (vout, (value, s)) in outputs.iter().enumerate() {
            if let Some((op, _)) = script::split(s) {
                n = Some((namespace_id(&op.namespace), vout as u32));
            }
            o.push(Value::from(address(coin, s)));
            o.push(Value::from(*value));
        }
        let mut merged: Vec<(String, u64)> = Vec::with_capacity(inputs.len());
        for input in inputs {
            match merged.iter_mut().find(|(a, _)| *a == input.address) {
                Some(entry) if !input.same_block => entry.1 += input.value,
                _ => merged.push((input.address, input.value)),
            }
        }
        let i = merged
            .into_iter()
            .flat_map(|(a, v)| [Value::from(a), Value::from(v)])
            .collect();
        TxInfo {
            o,
            t: time,
            h: height,
            n,
            i,
            kv: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::CoinRegistry;

    fn mainnet() -> Coin {
        CoinRegistry::embedded()
            .unwrap()
            .lookup("Kevacoin", "mainnet")
            .unwrap()
    }

    #[test]
    fn addresses_as_kevacoind_writes_them() {
        let coin = mainnet();
        // kevacoind's own base58 test data: a mainnet P2SH "V…" address.
        let p2sh = hex::decode("a914965681baf2c68aff9b800e5703a821e13d35c47a87").unwrap();
        assert_eq!(address(&coin, &p2sh), "VQN8uyJJb7diPuh67uQT3LX58nFZk2RMMF");
        // The same owner behind a keva prefix.
        let mut keva = vec![0xd2, 0x01, 0x35, 0x01, 0x6b, 0x6d];
        keva.extend(&p2sh);
        assert_eq!(address(&coin, &keva), "VQN8uyJJb7diPuh67uQT3LX58nFZk2RMMF");
        let p2pkh = hex::decode("76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac").unwrap();
        assert!(address(&coin, &p2pkh).starts_with('K'));
        assert_eq!(address(&coin, &[0x6a, 0x01, 0x00]), "ret");
        let p2wpkh = hex::decode("0014d835eee06db7225ac4b93d0c4468b9001fb7a43a").unwrap();
        assert_eq!(
            address(&coin, &p2wpkh),
            format!("unh{}", bitcoin::base58::encode_check(&p2wpkh))
        );
    }

    #[test]
    fn inputs_merge_by_address_unless_from_the_same_block() {
        let coin = mainnet();
        let spent = |a: &str, v, same_block| SpentOutput {
            address: a.into(),
            value: v,
            same_block,
        };
        let info = TxInfo::new(
            &coin,
            &[(5, vec![0x6a])],
            vec![
                spent("A", 1, false),
                spent("B", 2, false),
                spent("A", 3, false),
                spent("B", 4, true),
            ],
            7,
            9,
        );
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"o":["ret",5],"t":7,"h":9,"i":["A",4,"B",2,"B",4]}"#
        );
    }
}
