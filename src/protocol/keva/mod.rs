//! The Kevacoin fork's methods, registered only for coins of the `kevacoin` transaction family:
//! `blockchain.keva.get_keyvalues`, `get_hashtag`, `get_keyvalue_reactions`,
//! `get_transactions_info` and `blockchain.block.count`, with the fork's parameter names, result
//! shapes and error texts.
//!
//! Paging: a page holds the 25 newest confirmed entries older than the cursor (`start_tx_num`;
//! falsy or −1 for the newest), and the returned `min_tx_num` is the cursor of the next page (−1
//! when there is none). Cursors are tx numbers of this index, opaque to clients. Mempool entries
//! come first, on every page (the fork's behaviour, which wallets de-duplicate).
//!
//! Deliberate differences, where the fork fails with an internal error: a namespace whose
//! registration is still unconfirmed gets `shortCode` −1 (the fork's "no short code" value), and a
//! profile value that is not JSON with a `displayName` gives an empty `displayName`. The fork's
//! admin-banned transactions (`keva_ban_tx`) do not exist here.

mod info;

use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::jsonrpc::RpcError;
use super::method::Method;
use super::params::{boolean, scripthash, tx_hash, Args};
use super::{json, store_error, Electrum, Reply};
use crate::coin::keva::index::index_scripthash;
use crate::coin::keva::script::{self, KevaOp, LIKE_PREFIX, REPLY_PREFIX, ROOT_KEY, SHARE_PREFIX};
use crate::coin::Coin;
use crate::mempool::Mempool;
use crate::store::keva::{self as record, TxRecord};
use crate::store::{Store, StoreError};
use crate::types::{HashX, Height, TxNum, Txid};
use info::{namespace_id, KeyValue, SpentOutput, TxInfo};

/// Items per page (the fork's `HASHTAG_LIMIT`).
pub(crate) const PAGE: usize = 25;
/// Replies listed by `get_keyvalue_reactions`.
pub(crate) const MAX_REPLIES: usize = 2000;
/// Most txids one `get_transactions_info` takes.
pub(crate) const MAX_INFO_TXS: usize = 200;

/// Answers a keva method (the method table binds their arguments and offers them only for
/// coins of the `kevacoin` transaction family).
pub(super) async fn answer(electrum: &Arc<Electrum>, method: Method, a: &Args) -> Reply {
    match method {
        Method::KevaGetKeyvalues | Method::KevaGetHashtag => {
            let hashx = scripthash(a.req(0))?.hashx();
            let start = cursor(a.req(1))?;
            let hashtags = method == Method::KevaGetHashtag;
            electrum
                .blocking(move |e| {
                    with_view(e, |v| {
                        if hashtags {
                            get_hashtag(v, &hashx, start)
                        } else {
                            get_keyvalues(v, &hashx, start)
                        }
                    })
                })
                .await
        }
        Method::KevaGetKeyvalueReactions => {
            let txid = tx_hash(a.req(0))?;
            let shown = a.req(0).as_str().unwrap_or_default().to_string();
            electrum
                .blocking(move |e| with_view(e, |v| get_keyvalue_reactions(v, txid, shown)))
                .await
        }
        Method::KevaGetTransactionsInfo => {
            let namespace_info = boolean(a.req(1))
                .ok_or_else(|| RpcError::bad_request("\"namespace_info\" must be a boolean"))?;
            let Value::Array(list) = a.req(0) else {
                return Err(RpcError::bad_request(
                    "expected a list of transaction hashes",
                ));
            };
            if list.len() > MAX_INFO_TXS {
                return Err(RpcError::bad_request(format!(
                    "too many transactions, max: {MAX_INFO_TXS}"
                )));
            }
            let txids = list.iter().map(tx_hash).collect::<Result<Vec<_>, _>>()?;
            electrum
                .blocking(move |e| {
                    with_view(e, |v| get_transactions_info(v, &txids, namespace_info))
                })
                .await
        }
        other => unreachable!("{other:?} is not a keva method"),
    }
}

/// The fork's cursor: falsy means the newest page, anything else goes through Python's `int()`.
fn cursor(v: &Value) -> Result<Option<TxNum>, RpcError> {
    let bad = || RpcError::bad_request(format!("invalid start_tx_num: {v}"));
    let n: i128 = match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => i128::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i128::from(i),
            (_, Some(u), _) => i128::from(u),
            (_, _, Some(f)) if f.is_finite() => f.trunc() as i128,
            _ => return Err(bad()),
        },
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => super::pyfmt::py_int_from_str(s).ok_or_else(bad)?,
        Value::Array(a) if a.is_empty() => return Ok(None),
        Value::Object(o) if o.is_empty() => return Ok(None),
        _ => return Err(bad()),
    };
    // A number 0 is falsy (the newest page); the string "0" pages below tx 0: nothing.
    if (n == 0 && !v.is_string()) || n < 0 {
        return Ok(None);
    }
    Ok(Some(TxNum(u64::try_from(n).unwrap_or(u64::MAX))))
}

/// What one entry of a history is, for the items of every method.
struct Entry {
    txid: Txid,
    /// Confirmed height, or the mempool's 0 / −1.
    height: i64,
    op: KevaOp,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The keva operation among a transaction's output scripts: the last keva output's.
fn op_of_scripts(scripts: &[Vec<u8>]) -> Option<KevaOp> {
    scripts
        .iter()
        .rev()
        .find_map(|s| script::split(s).map(|(op, _)| op))
}

/// The social index name `prefix ‖ txid in display order`.
fn social_name(prefix: [u8; 2], txid: &Txid) -> Vec<u8> {
    let mut name = prefix.to_vec();
    name.extend(txid.0.iter().rev());
    name
}

/// The store and a consistent view of the mempool, for one request.
struct View<'a> {
    coin: &'a Coin,
    store: &'a Store,
    mempool: &'a Mempool,
    banned_hashtags: &'a [String],
}

impl View<'_> {
    fn time(&self, height: u32) -> Result<u32, StoreError> {
        let header = self.store.header(Height(height))?.unwrap_or_default();
        Ok(header
            .get(68..72)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes"))))
    }

    /// The block time of a confirmed height; `None` in mempool.
    fn confirmed_time(&self, height: i64) -> Result<Option<u32>, StoreError> {
        match u32::try_from(height) {
            Ok(h) if h > 0 => self.time(h).map(Some),
            _ => Ok(None),
        }
    }

    fn confirmed_op(&self, txnum: TxNum) -> Result<Option<KevaOp>, StoreError> {
        Ok(record::record(self.store, txnum)?.and_then(|r| {
            op_of_scripts(&r.outputs.into_iter().map(|(_, s)| s).collect::<Vec<_>>())
        }))
    }

    fn mempool_op(&self, txid: &Txid) -> Option<KevaOp> {
        let tx = self.mempool.get(txid)?;
        let (_, op) = tx.parsed().keva.as_ref()?.op.as_ref()?;
        Some(op.clone())
    }

    /// A transaction's keva operation with its height (0 in mempool), mempool first.
    fn op_of(&self, txid: &Txid) -> Result<Option<(KevaOp, i64)>, StoreError> {
        if let Some(op) = self.mempool_op(txid) {
            return Ok(Some((op, 0)));
        }
        let Some(txnum) = record::txnum(self.store, txid)? else {
            return Ok(None);
        };
        let height = self.store.txnum_height(txnum).map_or(0, |h| i64::from(h.0));
        Ok(self.confirmed_op(txnum)?.map(|op| (op, height)))
    }

    /// Up to `limit` confirmed entries of `hashx` newest first, below `before` if given, and the
    /// cursor of the next page.
    fn page(
        &self,
        hashx: &HashX,
        before: Option<TxNum>,
        limit: usize,
    ) -> Result<(Vec<Entry>, i64), StoreError> {
        let nums: Vec<TxNum> = self
            .store
            .history(hashx)?
            .into_iter()
            .rev()
            .filter(|t| before.is_none_or(|b| *t < b))
            .take(limit)
            .collect();
        let min = nums.last().map_or(-1, |t| t.0 as i64);
        let heights = self.store.txnum_heights(&nums);
        let txids = self.store.txids(&nums)?;
        let mut out = Vec::with_capacity(nums.len());
        for ((txnum, height), txid) in nums.iter().zip(heights).zip(txids) {
            if let Some(op) = self.confirmed_op(*txnum)? {
                out.push(Entry {
                    txid,
                    height: i64::from(height.0),
                    op,
                });
            }
        }
        Ok((out, min))
    }

    /// The mempool entries of `hashx`, with the mempool's heights (0, or −1 when a parent is
    /// unconfirmed).
    fn mempool_entries(&self, hashx: &HashX) -> Vec<Entry> {
        self.mempool
            .history(hashx)
            .into_iter()
            .filter_map(|m| {
                Some(Entry {
                    op: self.mempool_op(&m.txid)?,
                    txid: m.txid,
                    height: i64::from(m.height),
                })
            })
            .collect()
    }

    /// Transactions in a history, confirmed and in mempool.
    fn count(&self, name: &[u8]) -> Result<usize, StoreError> {
        let hashx = index_scripthash(name).hashx();
        Ok(self.store.history(&hashx)?.len() + self.mempool.history(&hashx).len())
    }

    fn reactions(&self, txid: &Txid) -> Result<Reactions, StoreError> {
        Ok(Reactions {
            replies: self.count(&social_name(REPLY_PREFIX, txid))?,
            shares: self.count(&social_name(SHARE_PREFIX, txid))?,
            likes: self.count(&social_name(LIKE_PREFIX, txid))?,
        })
    }

    /// A namespace's `displayName` (from the last entry of its root key) and `shortCode` (from
    /// the block and position of the first, its registration).
    fn profile(&self, namespace: &[u8]) -> Result<(Value, Value), StoreError> {
        let mut name = namespace.to_vec();
        name.extend_from_slice(ROOT_KEY);
        let hashx = index_scripthash(&name).hashx();
        let confirmed = self.store.history(&hashx)?;
        let short_code = match confirmed.first() {
            Some(first) => {
                let height = self.store.txnum_height(*first).unwrap_or_default();
                let start = self.store.block_txnums(height).map_or(0, |r| r.start);
                let h = height.0.to_string();
                Value::from(format!("{}{h}{}", h.len(), first.0 - start))
            }
            None => Value::from(-1),
        };
        let last_op = match self.mempool.history(&hashx).last() {
            Some(m) => self.mempool_op(&m.txid),
            None => match confirmed.last() {
                Some(t) => self.confirmed_op(*t)?,
                None => None,
            },
        };
        let display = last_op.map_or(Value::from(""), |op| display_name(&op));
        Ok((display, short_code))
    }

    fn info(&self, txid: &Txid) -> Result<Option<TxInfo>, StoreError> {
        if let Some(txnum) = record::txnum(self.store, txid)? {
            let Some(rec) = record::record(self.store, txnum)? else {
                return Ok(None);
            };
            let height = self.store.txnum_height(txnum).unwrap_or_default();
            let block = self.store.block_txnums(height).unwrap_or(0..0);
            let inputs = self.spent_outputs(&rec, |parent| block.contains(&parent.0))?;
            let time = i64::from(self.time(height.0)?);
            return Ok(Some(TxInfo::new(
                self.coin,
                &rec.outputs,
                inputs,
                time,
                i64::from(height.0),
            )));
        }
        let Some(tx) = self.mempool.get(txid) else {
            return Ok(None);
        };
        let parsed = tx.parsed();
        let Some(keva) = parsed.keva.as_ref() else {
            return Ok(None);
        };
        let rec = TxRecord::of(parsed, keva);
        let inputs = self.spent_outputs(&rec, |_| false)?;
        Ok(Some(TxInfo::new(self.coin, &rec.outputs, inputs, -1, -1)))
    }

    /// What a transaction's inputs spent, in input order, from confirmed parents or (for a
    /// mempool transaction) mempool parents; inputs whose parent is unknown are left out.
    fn spent_outputs(
        &self,
        rec: &TxRecord,
        same_block: impl Fn(TxNum) -> bool,
    ) -> Result<Vec<SpentOutput>, StoreError> {
        let mut out = Vec::with_capacity(rec.inputs.len());
        for input in &rec.inputs {
            let v = input.vout as usize;
            let spent = match record::txnum(self.store, &input.txid)? {
                Some(parent) => record::record(self.store, parent)?
                    .and_then(|p| p.outputs.get(v).cloned())
                    .map(|o| (o, same_block(parent))),
                None => self.mempool.get(&input.txid).and_then(|m| {
                    let p = m.parsed();
                    let script = p.keva.as_ref()?.scripts.get(v)?.clone();
                    Some(((p.outputs.get(v)?.value, script), false))
                }),
            };
            if let Some(((value, script), same_block)) = spent {
                out.push(SpentOutput {
                    address: info::address(self.coin, &script),
                    value,
                    same_block,
                });
            }
        }
        Ok(out)
    }
}

/// The profile's display name: a put's JSON value (single quotes allowed, as the fork replaces
/// them), or a registration's display name.
fn display_name(op: &KevaOp) -> Value {
    match &op.value {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t.replace('\'', "\"")).ok())
            .and_then(|j| j.get("displayName").cloned())
            .unwrap_or_else(|| Value::from("")),
        None => Value::from(std::str::from_utf8(&op.key).unwrap_or("")),
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
struct Reactions {
    replies: usize,
    shares: usize,
    likes: usize,
}

/// `key` and `value` in Base64, when the operation has them.
#[derive(Serialize)]
struct KeyValueFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

impl KeyValueFields {
    fn of(op: &KevaOp) -> KeyValueFields {
        KeyValueFields {
            key: Some(b64(&op.key)),
            value: op.value.as_deref().map(b64),
        }
    }
}

/// Runs `f` on the store and the mempool, read-locked for the whole answer.
fn with_view(e: &Electrum, f: impl FnOnce(&View) -> Reply) -> Reply {
    // Held across the store reads: blocks are committed under the mempool's write lock.
    let mempool = e.query.mempool().read();
    f(&View {
        coin: &e.coin,
        store: e.query.store(),
        mempool: &mempool,
        banned_hashtags: &e.settings.banned_hashtags,
    })
}

fn get_keyvalues(v: &View, hashx: &HashX, start: Option<TxNum>) -> Reply {
    #[derive(Serialize)]
    struct Item {
        tx_hash: String,
        height: i64,
        replies: usize,
        shares: usize,
        likes: usize,
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        kv: KeyValueFields,
        #[serde(skip_serializing_if = "Option::is_none")]
        time: Option<u32>,
    }
    #[derive(Serialize)]
    struct Page {
        keyvalues: Vec<Item>,
        min_tx_num: i64,
    }
    let (confirmed, min_tx_num) = v.page(hashx, start, PAGE).map_err(store_error)?;
    let mut keyvalues = Vec::new();
    for e in v.mempool_entries(hashx).into_iter().chain(confirmed) {
        let r = v.reactions(&e.txid).map_err(store_error)?;
        let time = v.confirmed_time(e.height).map_err(store_error)?;
        keyvalues.push(Item {
            tx_hash: e.txid.to_string(),
            height: e.height,
            replies: r.replies,
            shares: r.shares,
            likes: r.likes,
            kind: e.op.kind.label(),
            kv: KeyValueFields::of(&e.op),
            time,
        });
    }
    json(&Page {
        keyvalues,
        min_tx_num,
    })
}

fn get_hashtag(v: &View, hashx: &HashX, start: Option<TxNum>) -> Reply {
    #[derive(Serialize)]
    struct Item {
        tx_hash: String,
        #[serde(rename = "displayName")]
        display_name: Value,
        height: i64,
        #[serde(rename = "shortCode")]
        short_code: Value,
        replies: usize,
        shares: usize,
        likes: usize,
        #[serde(rename = "type")]
        kind: &'static str,
        namespace: String,
        #[serde(flatten)]
        kv: KeyValueFields,
        time: u32,
    }
    #[derive(Serialize)]
    struct Page {
        hashtags: Vec<Item>,
        min_tx_num: i64,
    }
    let banned = v
        .banned_hashtags
        .iter()
        .any(|t| index_scripthash(t.as_bytes()).hashx() == *hashx);
    if banned {
        return json(&Page {
            hashtags: Vec::new(),
            min_tx_num: -1,
        });
    }
    let (confirmed, min_tx_num) = v.page(hashx, start, PAGE).map_err(store_error)?;
    let mut hashtags = Vec::new();
    for e in confirmed {
        let (display_name, short_code) = v.profile(&e.op.namespace).map_err(store_error)?;
        let r = v.reactions(&e.txid).map_err(store_error)?;
        hashtags.push(Item {
            tx_hash: e.txid.to_string(),
            display_name,
            height: e.height,
            short_code,
            replies: r.replies,
            shares: r.shares,
            likes: r.likes,
            kind: e.op.kind.label(),
            namespace: namespace_id(&e.op.namespace),
            kv: KeyValueFields::of(&e.op),
            time: v.time(e.height as u32).map_err(store_error)?,
        });
    }
    json(&Page {
        hashtags,
        min_tx_num,
    })
}

fn get_keyvalue_reactions(v: &View, txid: Txid, shown: String) -> Reply {
    #[derive(Serialize)]
    struct Sender {
        #[serde(rename = "shortCode")]
        short_code: Value,
        #[serde(rename = "displayName")]
        display_name: Value,
    }
    #[derive(Serialize)]
    struct ReplyItem {
        tx_hash: String,
        height: i64,
        #[serde(rename = "type")]
        kind: &'static str,
        sender: Sender,
        #[serde(flatten)]
        kv: KeyValueFields,
        #[serde(skip_serializing_if = "Option::is_none")]
        time: Option<u32>,
    }
    #[derive(Serialize)]
    struct Item {
        tx_hash: String,
        replies: Vec<ReplyItem>,
        shares: usize,
        likes: usize,
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        kv: KeyValueFields,
        #[serde(rename = "displayName")]
        display_name: Value,
        #[serde(rename = "shortCode")]
        short_code: Value,
        height: i64,
        time: u32,
    }
    #[derive(Serialize)]
    struct Answer<T> {
        result: T,
    }
    let Some((op, height)) = v.op_of(&txid).map_err(store_error)? else {
        return json(&Answer {
            result: serde_json::Map::new(),
        });
    };
    let reply_hashx = index_scripthash(&social_name(REPLY_PREFIX, &txid)).hashx();
    let (confirmed, _) = v
        .page(&reply_hashx, None, MAX_REPLIES)
        .map_err(store_error)?;
    let mut replies = Vec::new();
    for e in confirmed.into_iter().chain(v.mempool_entries(&reply_hashx)) {
        let (display_name, short_code) = v.profile(&e.op.namespace).map_err(store_error)?;
        let time = v.confirmed_time(e.height).map_err(store_error)?;
        replies.push(ReplyItem {
            tx_hash: e.txid.to_string(),
            height: e.height,
            kind: e.op.kind.label(),
            sender: Sender {
                short_code,
                display_name,
            },
            kv: KeyValueFields::of(&e.op),
            time,
        });
    }
    let r = v.reactions(&txid).map_err(store_error)?;
    let (display_name, short_code) = v.profile(&op.namespace).map_err(store_error)?;
    json(&Answer {
        result: Item {
            tx_hash: shown,
            replies,
            shares: r.shares,
            likes: r.likes,
            kind: op.kind.label(),
            kv: KeyValueFields::of(&op),
            display_name,
            short_code,
            height,
            // A mempool target reads header 0, as the fork does.
            time: v.time(height.max(0) as u32).map_err(store_error)?,
        },
    })
}

fn get_transactions_info(v: &View, txids: &[Txid], namespace_info: bool) -> Reply {
    let mut out: Vec<Value> = Vec::with_capacity(txids.len());
    for txid in txids {
        let Some(mut info) = v.info(txid).map_err(store_error)? else {
            out.push(Value::Object(serde_json::Map::new()));
            continue;
        };
        if namespace_info && info.n.is_some() {
            if let Some((op, _)) = v.op_of(txid).map_err(store_error)? {
                info.kv = Some(KeyValue {
                    op: op.kind.opcode(),
                    key: Some(b64(&op.key)),
                    value: op.value.as_deref().map(b64),
                });
            }
        }
        out.push(serde_json::to_value(&info).map_err(|_| RpcError::internal())?);
    }
    json(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::keva::script::OpKind;
    use serde_json::json;

    #[test]
    fn cursors_follow_python_truthiness_and_int() {
        assert_eq!(cursor(&json!(null)).unwrap(), None);
        assert_eq!(cursor(&json!(0)).unwrap(), None);
        assert_eq!(cursor(&json!(-1)).unwrap(), None);
        assert_eq!(cursor(&json!("")).unwrap(), None);
        assert_eq!(cursor(&json!(false)).unwrap(), None);
        assert_eq!(cursor(&json!(1234)).unwrap(), Some(TxNum(1234)));
        assert_eq!(cursor(&json!("1234")).unwrap(), Some(TxNum(1234)));
        assert_eq!(cursor(&json!(" -1 ")).unwrap(), None);
        assert_eq!(cursor(&json!("0")).unwrap(), Some(TxNum(0)));
        assert_eq!(cursor(&json!(12.9)).unwrap(), Some(TxNum(12)));
        assert!(cursor(&json!("abc")).is_err());
        assert!(cursor(&json!([1])).is_err());
    }

    #[test]
    fn display_names_from_registrations_and_profiles() {
        let op = |kind, key: &[u8], value: Option<&[u8]>| KevaOp {
            kind,
            namespace: vec![0x35; 21],
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        };
        assert_eq!(
            display_name(&op(OpKind::Namespace, b"My blog", None)),
            "My blog"
        );
        let profile = br#"{'displayName': 'Keva fan', 'bio': 'hi'}"#;
        assert_eq!(
            display_name(&op(OpKind::Put, ROOT_KEY, Some(profile))),
            "Keva fan"
        );
        assert_eq!(
            display_name(&op(OpKind::Put, ROOT_KEY, Some(b"not json"))),
            ""
        );
    }
}
