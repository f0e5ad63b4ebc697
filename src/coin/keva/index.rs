//! Which name-index scripts a transaction belongs to, exactly as the fork decides. For every keva
//! output, the scripthash of `index_script(x)` for:
//!
//! 1. `x = namespace` — everything that happened in the namespace;
//! 2. `x = key` when the key (for a registration: the display name) starts with 0x00 — the social
//!    keys `00 01|02|03 ‖ txid` (reply, share, like);
//! 3. `x = namespace ‖ key`, or `namespace ‖ 01 "_KEVA_NS_"` for a registration — one key's
//!    history, and the namespace's profile;
//! 4. for a put, `x = tag` for each hashtag of key ‖ value — confirmed transactions only (the
//!    fork's mempool does not index them).

use super::script::{self, KevaOp, OpKind};
use crate::types::{HashX, ScriptHash};

/// What a Kevacoin transaction brings to the index besides its outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KevaTx {
    /// Every output script in vout order, keva prefix included.
    pub scripts: Vec<Vec<u8>>,
    /// The last keva output (consensus allows one) and its operation.
    pub op: Option<(u32, KevaOp)>,
    /// Index scripthashes 1–3 of every keva output, distinct.
    pub index: Vec<ScriptHash>,
    /// Hashtag index scripthashes (4), distinct, not in `index`.
    pub hashtags: Vec<ScriptHash>,
}

/// The scripthash a wallet computes for `index_script(name)`.
pub(crate) fn index_scripthash(name: &[u8]) -> ScriptHash {
    ScriptHash::of_script(&script::index_script(name))
}

fn push_unique(list: &mut Vec<ScriptHash>, sh: ScriptHash) {
    if !list.contains(&sh) {
        list.push(sh);
    }
}

impl KevaTx {
    pub(crate) fn from_scripts(scripts: Vec<Vec<u8>>) -> KevaTx {
        let mut tx = KevaTx {
            scripts: Vec::new(),
            op: None,
            index: Vec::new(),
            hashtags: Vec::new(),
        };
        for (vout, s) in scripts.iter().enumerate() {
            let Some((op, _)) = script::split(s) else {
                continue;
            };
            push_unique(&mut tx.index, index_scripthash(&op.namespace));
            if op.key.first() == Some(&0x00) {
                push_unique(&mut tx.index, index_scripthash(&op.key));
            }
            let mut ns_key = op.namespace.clone();
            ns_key.extend_from_slice(match op.kind {
                OpKind::Namespace => script::ROOT_KEY,
                _ => &op.key,
            });
            push_unique(&mut tx.index, index_scripthash(&ns_key));
            if let (OpKind::Put, Some(value)) = (op.kind, &op.value) {
                for tag in script::hashtags(&op.key, value) {
                    push_unique(&mut tx.hashtags, index_scripthash(tag.as_bytes()));
                }
            }
            tx.op = Some((vout as u32, op));
        }
        tx.hashtags.retain(|h| !tx.index.contains(h));
        tx.scripts = scripts;
        tx
    }

    /// The index entries of a confirmed transaction.
    pub(crate) fn confirmed_hashxs(&self) -> impl Iterator<Item = HashX> + '_ {
        self.index.iter().chain(&self.hashtags).map(|s| s.hashx())
    }

    /// The index entries of a mempool transaction (no hashtags).
    pub(crate) fn mempool_hashxs(&self) -> impl Iterator<Item = HashX> + '_ {
        self.index.iter().map(|s| s.hashx())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = format!(
            "{}/tests/data/vectors/kevacoin/keva_index_vectors.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn unhex(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().unwrap()).unwrap()
    }

    #[test]
    fn index_scripts_and_scripthashes_match_the_vectors() {
        let v = vectors();
        for e in v["index_scripts"].as_array().unwrap() {
            let name = unhex(&e["index_name_hex"]);
            assert_eq!(
                hex::encode(script::index_script(&name)),
                e["index_script_hex"],
                "{}",
                e["what"]
            );
            assert_eq!(
                index_scripthash(&name).to_string(),
                e["electrum_scripthash"],
                "{}",
                e["what"]
            );
            assert_eq!(
                hex::encode(index_scripthash(&name).hashx().0),
                e["electrumx_hashX_hex"]
            );
        }
    }

    #[test]
    fn keva_outputs_split_and_index_as_the_vectors_say() {
        let v = vectors();
        let cases = v["keva_output_scripts"].as_array().unwrap();
        assert!(cases.len() >= 5);
        for e in cases {
            let what = e["what"].as_str().unwrap();
            let s = unhex(&e["script_hex"]);
            let (op, prefix_len) = script::split(&s).expect(what);
            assert_eq!(
                hex::encode(&s[..prefix_len]),
                e["keva_prefix_hex"],
                "{what}"
            );
            assert_eq!(
                hex::encode(&s[prefix_len..]),
                e["address_script_hex"],
                "{what}"
            );
            assert_eq!(
                ScriptHash::of_script(&s[prefix_len..]).to_string(),
                e["address_scripthash"],
                "{what}"
            );
            assert_eq!(op.kind.label(), e["type"], "{what}");
            assert_eq!(hex::encode(&op.key), e["key_hex"], "{what}");
            assert_eq!(
                op.value.as_ref().map(hex::encode),
                e["value_hex"].as_str().map(String::from),
                "{what}"
            );
            let tx = KevaTx::from_scripts(vec![s.clone()]);
            let mut got: Vec<String> = tx
                .index
                .iter()
                .chain(&tx.hashtags)
                .map(|h| h.to_string())
                .collect();
            let mut want: Vec<String> = e["index_entries_added_by_fork_for_confirmed_tx"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["electrum_scripthash"].as_str().unwrap().to_string())
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{what}");
            assert_eq!(tx.op.as_ref().map(|(vout, _)| *vout), Some(0));
        }
    }

    #[test]
    fn hashtag_cases_match_the_vectors() {
        let v = vectors();
        for e in v["hashtag_extraction"]["examples"].as_array().unwrap() {
            let mut got = script::hashtags(
                e["key"].as_str().unwrap().as_bytes(),
                e["value"].as_str().unwrap().as_bytes(),
            );
            let mut want: Vec<String> = e["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{e}");
        }
    }

    #[test]
    fn mempool_entries_leave_out_hashtags() {
        let v = vectors();
        let put = &v["keva_output_scripts"][1];
        assert_eq!(put["type"], "PUT");
        let tx = KevaTx::from_scripts(vec![
            hex::decode("76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac").unwrap(),
            unhex(&put["script_hex"]),
        ]);
        assert_eq!(tx.op.as_ref().unwrap().0, 1);
        assert_eq!(tx.hashtags.len(), 2);
        assert_eq!(tx.mempool_hashxs().count(), 2);
        assert_eq!(tx.confirmed_hashxs().count(), 4);
        // An ordinary transaction adds nothing.
        let plain = KevaTx::from_scripts(vec![vec![0x51]]);
        assert!(plain.op.is_none() && plain.index.is_empty() && plain.hashtags.is_empty());
    }
}
