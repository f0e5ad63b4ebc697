//! Method arguments: arity checks with aiorpcX's messages (-32602), and ElectrumX's value
//! validators (error 1) for script hashes, tx hashes, non-negative integers, booleans and hex.

use serde_json::Value;

use super::jsonrpc::{Params, RpcError};
use super::pyfmt::{py_int_from_str, py_str};
use crate::types::{ScriptHash, Txid};

/// A method's Python signature: required names, then optional names; `var_args` for methods
/// that take and ignore anything extra (`server.version`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signature {
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
    pub var_args: bool,
}

impl Signature {
    pub(crate) const fn new(
        required: &'static [&'static str],
        optional: &'static [&'static str],
    ) -> Self {
        Signature {
            required,
            optional,
            var_args: false,
        }
    }

    fn max(&self) -> usize {
        self.required.len() + self.optional.len()
    }

    /// Checks the arguments against the signature and returns them by position; a missing
    /// optional argument is `None` (the method applies its default).
    pub(crate) fn bind(&self, method: &str, params: &Params) -> Result<Args, RpcError> {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match params {
            Params::Positional(list) => {
                let n = list.len();
                if n < self.required.len() {
                    return Err(RpcError::invalid_args(format!(
                        "{n} argument{} passed to method \"{method}\" but it requires {}",
                        plural(n),
                        self.required.len()
                    )));
                }
                if !self.var_args && n > self.max() {
                    return Err(RpcError::invalid_args(format!(
                        "{n} argument{} passed to method {method} taking at most {}",
                        plural(n),
                        self.max()
                    )));
                }
                let mut out: Vec<Option<Value>> = list.iter().cloned().map(Some).collect();
                out.resize(self.max().max(out.len()), None);
                Ok(Args(out))
            }
            Params::Named(map) => {
                let mut missing: Vec<&str> = self
                    .required
                    .iter()
                    .copied()
                    .filter(|n| !map.contains_key(*n))
                    .collect();
                if !missing.is_empty() {
                    missing.sort_unstable();
                    let names: Vec<String> = missing.iter().map(|n| format!("\"{n}\"")).collect();
                    return Err(RpcError::invalid_args(format!(
                        "method \"{method}\" requires parameter{} {}",
                        plural(missing.len()),
                        names.join(", ")
                    )));
                }
                if !self.var_args {
                    let mut excess: Vec<&String> = map
                        .keys()
                        .filter(|k| {
                            !self.required.contains(&k.as_str())
                                && !self.optional.contains(&k.as_str())
                        })
                        .collect();
                    if !excess.is_empty() {
                        excess.sort_unstable();
                        let names: Vec<String> =
                            excess.iter().map(|n| format!("\"{n}\"")).collect();
                        return Err(RpcError::invalid_args(format!(
                            "method \"{method}\" does not take parameter{} {}",
                            plural(excess.len()),
                            names.join(", ")
                        )));
                    }
                }
                Ok(Args(
                    self.required
                        .iter()
                        .chain(self.optional)
                        .map(|n| map.get(*n).cloned())
                        .collect(),
                ))
            }
        }
    }
}

/// Bound arguments by position.
#[derive(Clone, Debug, Default)]
pub(crate) struct Args(pub Vec<Option<Value>>);

impl Args {
    /// A required argument (present after [`Signature::bind`]).
    pub(crate) fn req(&self, i: usize) -> &Value {
        self.0[i].as_ref().expect("required arguments are bound")
    }

    pub(crate) fn opt(&self, i: usize) -> Option<&Value> {
        self.0.get(i).and_then(|v| v.as_ref())
    }
}

/// Python's `bytes.fromhex`: pairs of hex digits, ASCII whitespace allowed between pairs.
fn from_hex_loose(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    let mut i = 0;
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    while i < b.len() {
        if matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            i += 1;
            continue;
        }
        let hi = digit(b[i])?;
        let lo = digit(*b.get(i + 1)?)?;
        out.push(hi << 4 | lo);
        i += 2;
    }
    Some(out)
}

/// 32 bytes in display (reversed) hex, returned in internal order.
fn hash32(v: &Value) -> Option<[u8; 32]> {
    let bytes = from_hex_loose(v.as_str()?)?;
    let mut out: [u8; 32] = bytes.try_into().ok()?;
    out.reverse();
    Some(out)
}

pub(crate) fn scripthash(v: &Value) -> Result<ScriptHash, RpcError> {
    hash32(v)
        .map(ScriptHash)
        .ok_or_else(|| RpcError::bad_request(format!("{} is not a valid script hash", py_str(v))))
}

pub(crate) fn tx_hash(v: &Value) -> Result<Txid, RpcError> {
    hash32(v)
        .map(Txid)
        .ok_or_else(|| RpcError::bad_request(format!("{} should be a transaction hash", py_str(v))))
}

/// Anything Python's `int()` turns into a value ≥ 0: integers, floats (truncated), booleans and
/// numeric strings. Values beyond `u64` saturate (they are out of every range anyway).
pub(crate) fn non_negative_integer(v: &Value) -> Result<u64, RpcError> {
    let err =
        |shown: String| RpcError::bad_request(format!("{shown} should be a non-negative integer"));
    let n: i128 = match v {
        Value::Bool(b) => *b as i128,
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u as i128
            } else if let Some(i) = n.as_i64() {
                i as i128
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if !f.is_finite() {
                    return Err(err(py_str(v)));
                }
                f.trunc() as i128
            }
        }
        Value::String(s) => py_int_from_str(s).ok_or_else(|| err(py_str(v)))?,
        other => return Err(err(py_str(other))),
    };
    if n < 0 {
        return Err(err(n.to_string()));
    }
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

/// ElectrumX's `value in (False, True)`: Python equality also lets 0, 1, 0.0 and 1.0 through.
pub(crate) fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => {
            let f = n.as_f64()?;
            if f == 0.0 {
                Some(false)
            } else if f == 1.0 {
                Some(true)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// An even-length hex string without whitespace (ElectrumX 2's check on `raw_tx`).
pub(crate) fn hex_string(v: &Value) -> Result<&str, RpcError> {
    match v.as_str() {
        Some(s) if s.len() % 2 == 0 && s.bytes().all(|c| c.is_ascii_hexdigit()) => Ok(s),
        _ => Err(RpcError::bad_request(format!(
            "{} should be a hex string",
            py_str(v)
        ))),
    }
}

/// `server.ping`'s `data`: hex, where an odd length counts as if a `0` led it.
pub(crate) fn odd_hex_string(v: &Value) -> Result<(), RpcError> {
    match v.as_str() {
        Some(s) if s.bytes().all(|c| c.is_ascii_hexdigit()) => Ok(()),
        _ => Err(RpcError::bad_request(format!(
            "{} should be a hex string",
            py_str(v)
        ))),
    }
}

/// A 1.7 `spk` argument: a scriptPubKey in hex, named by its script hash (SHA-256 of it), as
/// 1.4 names scripts.
pub(crate) fn script_pubkey(v: &Value) -> Result<ScriptHash, RpcError> {
    let text = hex_string(v)?;
    let script = hex::decode(text).expect("hex_string checked it");
    Ok(ScriptHash::of_script(&script))
}

/// Python truthiness of an argument.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jsonrpc::{BAD_REQUEST, INVALID_ARGS};
    use serde_json::json;

    const HEADER: Signature = Signature::new(&["height"], &["cp_height"]);

    fn pos(v: Value) -> Params {
        Params::Positional(v.as_array().unwrap().clone())
    }

    fn named(v: Value) -> Params {
        Params::Named(v.as_object().unwrap().clone())
    }

    #[test]
    fn arity_messages_match_aiorpcx() {
        let e = HEADER
            .bind("blockchain.block.header", &pos(json!([1, 2, 3])))
            .unwrap_err();
        assert_eq!(e.code, INVALID_ARGS);
        assert_eq!(
            e.message,
            "3 arguments passed to method blockchain.block.header taking at most 2"
        );
        let e = HEADER
            .bind("blockchain.block.header", &pos(json!([])))
            .unwrap_err();
        assert_eq!(
            e.message,
            "0 arguments passed to method \"blockchain.block.header\" but it requires 1"
        );
        let e = Signature::new(&["a", "b"], &[])
            .bind("m", &pos(json!([1])))
            .unwrap_err();
        assert_eq!(
            e.message,
            "1 argument passed to method \"m\" but it requires 2"
        );
        let e = HEADER
            .bind("blockchain.block.header", &named(json!({})))
            .unwrap_err();
        assert_eq!(
            e.message,
            "method \"blockchain.block.header\" requires parameter \"height\""
        );
        let e = HEADER
            .bind(
                "blockchain.block.header",
                &named(json!({"height": 1, "x": 2, "a": 3})),
            )
            .unwrap_err();
        assert_eq!(
            e.message,
            "method \"blockchain.block.header\" does not take parameters \"a\", \"x\""
        );
        let a = HEADER
            .bind("m", &named(json!({"cp_height": 5, "height": 1})))
            .unwrap();
        assert_eq!(a.req(0), &json!(1));
        assert_eq!(a.opt(1), Some(&json!(5)));
        let a = HEADER.bind("m", &pos(json!([1]))).unwrap();
        assert_eq!(a.opt(1), None);
        let var = Signature {
            required: &[],
            optional: &["client_name", "protocol_version"],
            var_args: true,
        };
        assert!(var
            .bind("server.version", &pos(json!([1, 2, 3, 4])))
            .is_ok());
        assert!(var
            .bind("server.version", &named(json!({"zzz": 1})))
            .is_ok());
    }

    #[test]
    fn scripthash_and_txid_rules() {
        let lower = "8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161";
        let sh = scripthash(&json!(lower)).unwrap();
        assert_eq!(sh.to_string(), lower);
        assert_eq!(scripthash(&json!(lower.to_uppercase())).unwrap(), sh);
        let spaced: String = lower
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(scripthash(&json!(spaced)).unwrap(), sh);
        let e = scripthash(&json!("abcd")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (BAD_REQUEST, "abcd is not a valid script hash")
        );
        assert_eq!(
            scripthash(&json!(5)).unwrap_err().message,
            "5 is not a valid script hash"
        );
        assert_eq!(
            scripthash(&json!(null)).unwrap_err().message,
            "None is not a valid script hash"
        );
        assert_eq!(
            tx_hash(&json!("zz")).unwrap_err().message,
            "zz should be a transaction hash"
        );
        assert!(tx_hash(&json!(lower)).is_ok());
    }

    #[test]
    fn non_negative_integers_like_python_int() {
        assert_eq!(non_negative_integer(&json!(5)).unwrap(), 5);
        assert_eq!(non_negative_integer(&json!("5")).unwrap(), 5);
        assert_eq!(non_negative_integer(&json!(5.9)).unwrap(), 5);
        assert_eq!(non_negative_integer(&json!(true)).unwrap(), 1);
        assert_eq!(non_negative_integer(&json!(-0.5)).unwrap(), 0);
        let msg = |v: Value| non_negative_integer(&v).unwrap_err().message;
        assert_eq!(msg(json!(-1)), "-1 should be a non-negative integer");
        assert_eq!(msg(json!("-3")), "-3 should be a non-negative integer");
        assert_eq!(msg(json!(-1.5)), "-1 should be a non-negative integer");
        assert_eq!(msg(json!("x")), "x should be a non-negative integer");
        assert_eq!(msg(json!(null)), "None should be a non-negative integer");
        assert_eq!(msg(json!([1])), "[1] should be a non-negative integer");
    }

    #[test]
    fn booleans_and_hex() {
        assert_eq!(boolean(&json!(true)), Some(true));
        assert_eq!(boolean(&json!(0)), Some(false));
        assert_eq!(boolean(&json!(1.0)), Some(true));
        assert_eq!(boolean(&json!(2)), None);
        assert_eq!(boolean(&json!("true")), None);
        assert!(hex_string(&json!("00ff")).is_ok());
        assert!(hex_string(&json!("")).is_ok());
        assert_eq!(
            hex_string(&json!("0")).unwrap_err().message,
            "0 should be a hex string"
        );
        assert!(hex_string(&json!("00 ff")).is_err());
        assert!(hex_string(&json!(5)).is_err());
    }

    #[test]
    fn script_pubkeys_and_ping_data() {
        // P2PKH of Electrum's protocol docs: the spk's script hash, display order.
        let sh =
            script_pubkey(&json!("76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac")).unwrap();
        assert_eq!(
            sh.to_string(),
            "8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161"
        );
        assert_eq!(
            script_pubkey(&json!("")).unwrap(),
            ScriptHash::of_script(&[])
        );
        for bad in [
            json!("abc"),
            json!("zz"),
            json!(" 00"),
            json!(5),
            json!(null),
        ] {
            let e = script_pubkey(&bad).unwrap_err();
            assert_eq!(e.code, BAD_REQUEST);
            assert!(
                e.message.ends_with("should be a hex string"),
                "{}",
                e.message
            );
        }
        assert!(odd_hex_string(&json!("abc")).is_ok());
        assert!(odd_hex_string(&json!("")).is_ok());
        assert_eq!(
            odd_hex_string(&json!("0g")).unwrap_err().message,
            "0g should be a hex string"
        );
    }
}
