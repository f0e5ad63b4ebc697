//! JSON-RPC as aiorpcX (ElectrumX's RPC library) speaks it: one JSON text per line, three
//! dialects detected from the first message, batches, and its exact error texts.
//!
//! Dialects: `"jsonrpc":"2.0"` → strict 2.0; `"jsonrpc":"1.0"` or both `result` and `error` →
//! 1.0; anything else → "loose" (no `jsonrpc` member needed, answers in 2.0 form). The first
//! parsable message fixes the dialect for the connection.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::pyfmt::py_str;

pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_ARGS: i64 = -32602;
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// Electrum application errors.
pub(crate) const BAD_REQUEST: i64 = 1;
pub(crate) const DAEMON_ERROR: i64 = 2;

/// An error reply: a code and ElectrumX's message text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub(crate) struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> RpcError {
        RpcError::new(BAD_REQUEST, message)
    }

    pub(crate) fn invalid_args(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_ARGS, message)
    }

    pub(crate) fn internal() -> RpcError {
        RpcError::new(INTERNAL_ERROR, "internal server error")
    }

    /// The reply replacing one that would exceed `MAX_SEND` (aiorpcX omits the closing
    /// parenthesis; so do we).
    pub(crate) fn response_too_large(max_send: usize) -> RpcError {
        RpcError::new(
            INVALID_REQUEST,
            format!(
                "response too large (over {} bytes",
                super::pyfmt::thousands(max_send as i128)
            ),
        )
    }
}

/// Request arguments: by position or by name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Params {
    Positional(Vec<Value>),
    Named(Map<String, Value>),
}

/// A request (with an id) or a notification (`id` is `None`: missing or null, as aiorpcX
/// treats a null id).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Call {
    pub id: Option<Value>,
    pub method: String,
    pub params: Params,
}

impl Call {
    pub(crate) fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// The id to answer with (null for a notification, whose answers are never sent anyway).
    pub(crate) fn reply_id(&self) -> Value {
        self.id.clone().unwrap_or(Value::Null)
    }
}

/// One member of a request batch, as parsed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Member {
    Call(Call),
    /// A member that was invalid: its encoded error reply.
    Error(String),
}

/// What one incoming line amounts to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Incoming {
    Call(Call),
    Batch(Vec<Member>),
    /// A protocol error: send this encoded reply.
    Reply(String),
    /// Nothing to answer (the client sent responses, which a server never asked for).
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// No message parsed yet; errors are sent in 2.0 form.
    Detect,
    V2,
    V1,
    Loose,
}

fn payload_dialect(v: &Value) -> Dialect {
    let Value::Object(m) = v else {
        return Dialect::Loose;
    };
    match m.get("jsonrpc") {
        Some(Value::String(s)) if s == "2.0" => return Dialect::V2,
        Some(Value::String(s)) if s == "1.0" => return Dialect::V1,
        _ => {}
    }
    if m.contains_key("result") && m.contains_key("error") {
        Dialect::V1
    } else {
        Dialect::Loose
    }
}

fn detect(v: &Value) -> Dialect {
    match v {
        Value::Array(items) => {
            let kinds: Vec<Dialect> = items.iter().map(payload_dialect).collect();
            if let Some(first) = kinds.first() {
                if kinds.iter().all(|k| k == first) {
                    return *first;
                }
            }
            // Mixed: a strict dialect wins, 2.0 first.
            for d in [Dialect::V2, Dialect::V1] {
                if kinds.contains(&d) {
                    return d;
                }
            }
            Dialect::Loose
        }
        other => payload_dialect(other),
    }
}

impl Dialect {
    /// Parses one line (without its newline). Fixes the dialect on the first parsable message.
    pub(crate) fn parse(&mut self, line: &[u8]) -> Incoming {
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(_) => {
                return Incoming::Reply(self.error(
                    &Value::Null,
                    &RpcError::new(PARSE_ERROR, "messages must be encoded in UTF-8"),
                ))
            }
        };
        let payload: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                return Incoming::Reply(
                    self.error(&Value::Null, &RpcError::new(PARSE_ERROR, "invalid JSON")),
                )
            }
        };
        if *self == Dialect::Detect {
            *self = detect(&payload);
        }
        match payload {
            Value::Object(ref m) => {
                if m.contains_key("method") {
                    match self.request(&payload) {
                        Ok(call) => Incoming::Call(call),
                        Err(reply) => Incoming::Reply(reply),
                    }
                } else {
                    Incoming::Ignore
                }
            }
            Value::Array(items) if *self != Dialect::V1 => {
                if items.is_empty() {
                    return Incoming::Reply(self.error(
                        &Value::Null,
                        &RpcError::new(INVALID_REQUEST, "batch is empty"),
                    ));
                }
                let all_responses = items.iter().all(|p| {
                    p.as_object()
                        .is_some_and(|m| m.contains_key("result") || m.contains_key("error"))
                });
                if all_responses {
                    return Incoming::Ignore;
                }
                Incoming::Batch(
                    items
                        .iter()
                        .map(|p| match self.request(p) {
                            Ok(call) => Member::Call(call),
                            Err(reply) => Member::Error(reply),
                        })
                        .collect(),
                )
            }
            _ => Incoming::Reply(self.error(
                &Value::Null,
                &RpcError::new(INVALID_REQUEST, "request object must be a dictionary"),
            )),
        }
    }

    /// Validates one request object in aiorpcX's order: id, `jsonrpc`, params, method.
    fn request(&self, payload: &Value) -> Result<Call, String> {
        let invalid =
            |id: &Value, code: i64, msg: String| self.error(id, &RpcError::new(code, msg));
        let Value::Object(m) = payload else {
            return Err(invalid(
                &Value::Null,
                INVALID_REQUEST,
                "request object must be a dictionary".into(),
            ));
        };
        let id = match (self, m.get("id")) {
            (Dialect::V1, None) => {
                return Err(invalid(
                    &Value::Null,
                    INVALID_REQUEST,
                    "request has no \"id\"".into(),
                ))
            }
            (Dialect::V1, Some(id)) => id.clone(),
            (_, None) => Value::Null,
            (
                _,
                Some(id @ (Value::Number(_) | Value::String(_) | Value::Null | Value::Bool(_))),
            ) => id.clone(),
            (_, Some(other)) => {
                return Err(invalid(
                    &Value::Null,
                    INVALID_REQUEST,
                    format!("invalid \"id\": {}", py_str(other)),
                ))
            }
        };
        if matches!(self, Dialect::V2 | Dialect::Detect)
            && m.get("jsonrpc") != Some(&Value::String("2.0".into()))
        {
            return Err(invalid(
                &id,
                INVALID_REQUEST,
                "\"jsonrpc\" is not \"2.0\"".into(),
            ));
        }
        let params = match (self, m.get("params")) {
            (Dialect::V1, Some(Value::Array(a))) => Params::Positional(a.clone()),
            (Dialect::V1, p) => {
                return Err(invalid(
                    &id,
                    INVALID_ARGS,
                    format!(
                        "invalid request arguments: {}",
                        p.map_or("None".into(), py_str)
                    ),
                ))
            }
            (_, None) => Params::Positional(Vec::new()),
            (_, Some(Value::Array(a))) => Params::Positional(a.clone()),
            (_, Some(Value::Object(o))) => Params::Named(o.clone()),
            (_, Some(other)) => {
                return Err(invalid(
                    &id,
                    INVALID_ARGS,
                    format!("invalid request arguments: {}", py_str(other)),
                ))
            }
        };
        let Some(Value::String(method)) = m.get("method") else {
            return Err(invalid(
                &id,
                METHOD_NOT_FOUND,
                "method must be a string".into(),
            ));
        };
        Ok(Call {
            id: (!id.is_null()).then_some(id),
            method: method.clone(),
            params,
        })
    }

    /// A success reply, with the result already encoded as JSON.
    pub(crate) fn result(&self, id: &Value, result: &RawValue) -> String {
        let (head, tail) = self.result_around(id);
        [head, result.get(), &tail].concat()
    }

    /// The text before and after the result in a reply.
    pub(crate) fn result_around(&self, id: &Value) -> (&'static str, String) {
        let id = serde_json::to_string(id).expect("ids serialize");
        match self {
            Dialect::V1 => ("{\"result\":", format!(",\"error\":null,\"id\":{id}}}")),
            _ => (
                "{\"jsonrpc\":\"2.0\",\"result\":",
                format!(",\"id\":{id}}}"),
            ),
        }
    }

    pub(crate) fn error(&self, id: &Value, err: &RpcError) -> String {
        let id = serde_json::to_string(id).expect("ids serialize");
        let message = serde_json::to_string(&err.message).expect("strings serialize");
        let error = format!("{{\"code\":{},\"message\":{message}}}", err.code);
        match self {
            Dialect::V1 => format!("{{\"result\":null,\"error\":{error},\"id\":{id}}}"),
            _ => format!("{{\"jsonrpc\":\"2.0\",\"error\":{error},\"id\":{id}}}"),
        }
    }

    /// A server notification; `params` `None` omits them (as aiorpcX does for empty params).
    pub(crate) fn notification(&self, method: &str, params: Option<&RawValue>) -> String {
        let method = serde_json::to_string(method).expect("strings serialize");
        match (self, params) {
            (Dialect::V1, Some(p)) => {
                format!("{{\"method\":{method},\"params\":{},\"id\":null}}", p.get())
            }
            (Dialect::V1, None) => format!("{{\"method\":{method},\"params\":[],\"id\":null}}"),
            (_, Some(p)) => {
                format!(
                    "{{\"jsonrpc\":\"2.0\",\"method\":{method},\"params\":{}}}",
                    p.get()
                )
            }
            (_, None) => format!("{{\"jsonrpc\":\"2.0\",\"method\":{method}}}"),
        }
    }
}

/// Joins batch replies the way aiorpcX does: `[` + members joined by `", "` + `]`.
pub(crate) fn batch(parts: &[String]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 2).sum::<usize>() + 2);
    out.push('[');
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(p);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(d: &mut Dialect, s: &str) -> Incoming {
        d.parse(s.as_bytes())
    }

    fn reply(i: Incoming) -> String {
        match i {
            Incoming::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn parse_errors() {
        let mut d = Dialect::Detect;
        assert_eq!(
            reply(parse(&mut d, "{nope")),
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"invalid JSON"},"id":null}"#
        );
        assert_eq!(d, Dialect::Detect, "an unparsable message fixes no dialect");
        assert!(reply(d.parse(b"\xff\xfe")).contains("messages must be encoded in UTF-8"));
        assert!(reply(parse(&mut d, "")).contains("invalid JSON"));
    }

    #[test]
    fn dialect_detection() {
        let mut d = Dialect::Detect;
        let i = parse(&mut d, r#"{"jsonrpc":"2.0","method":"server.ping","id":1}"#);
        assert_eq!(d, Dialect::V2);
        assert!(
            matches!(i, Incoming::Call(ref c) if c.method == "server.ping" && c.id == Some(json!(1)))
        );

        let mut d = Dialect::Detect;
        parse(&mut d, r#"{"method":"server.ping","params":[],"id":7}"#);
        assert_eq!(d, Dialect::Loose);
        let r = d.result(&json!(7), &RawValue::from_string("null".into()).unwrap());
        assert_eq!(r, r#"{"jsonrpc":"2.0","result":null,"id":7}"#);

        let mut d = Dialect::Detect;
        parse(
            &mut d,
            r#"{"jsonrpc":"1.0","method":"server.ping","params":[],"id":"a"}"#,
        );
        assert_eq!(d, Dialect::V1);
        let r = d.result(&json!("a"), &RawValue::from_string("5".into()).unwrap());
        assert_eq!(r, r#"{"result":5,"error":null,"id":"a"}"#);
        let e = d.error(&json!(1), &RpcError::bad_request("x"));
        assert_eq!(
            e,
            r#"{"result":null,"error":{"code":1,"message":"x"},"id":1}"#
        );
    }

    #[test]
    fn strict_2_0_checks_jsonrpc_member() {
        let mut d = Dialect::V2;
        let r = reply(parse(&mut d, r#"{"method":"server.ping","id":3}"#));
        assert_eq!(
            r,
            r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"\"jsonrpc\" is not \"2.0\""},"id":3}"#
        );
    }

    #[test]
    fn ids_params_and_method_checks() {
        let mut d = Dialect::Loose;
        let r = reply(parse(&mut d, r#"{"method":"x","id":[1,2]}"#));
        assert!(
            r.contains(r#""code":-32600,"message":"invalid \"id\": [1, 2]"},"id":null"#),
            "{r}"
        );
        let r = reply(parse(&mut d, r#"{"method":"x","id":4,"params":5}"#));
        assert!(
            r.contains(r#"-32602,"message":"invalid request arguments: 5"},"id":4"#),
            "{r}"
        );
        let r = reply(parse(&mut d, r#"{"method":7,"id":4}"#));
        assert!(
            r.contains(r#"-32601,"message":"method must be a string"#),
            "{r}"
        );
        // Missing params mean no arguments; named params are kept as a map.
        let Incoming::Call(c) = parse(&mut d, r#"{"method":"m","id":1}"#) else {
            panic!()
        };
        assert_eq!(c.params, Params::Positional(vec![]));
        let Incoming::Call(c) = parse(&mut d, r#"{"method":"m","id":1,"params":{"a":1}}"#) else {
            panic!()
        };
        assert!(matches!(c.params, Params::Named(_)));
        // No id, or a null id: a notification.
        let Incoming::Call(c) = parse(&mut d, r#"{"method":"m"}"#) else {
            panic!()
        };
        assert!(c.is_notification());
        let Incoming::Call(c) = parse(&mut d, r#"{"method":"m","id":null}"#) else {
            panic!()
        };
        assert!(c.is_notification());
        // Responses from the client are ignored.
        assert_eq!(parse(&mut d, r#"{"result":1,"id":1}"#), Incoming::Ignore);
        let r = reply(parse(&mut d, "5"));
        assert!(r.contains("request object must be a dictionary"), "{r}");
    }

    #[test]
    fn v1_rules() {
        let mut d = Dialect::V1;
        let r = reply(parse(&mut d, r#"{"method":"m"}"#));
        assert!(r.contains(r#"request has no \"id\""#), "{r}");
        let r = reply(parse(&mut d, r#"{"method":"m","id":1}"#));
        assert!(r.contains("invalid request arguments: None"), "{r}");
        let r = reply(parse(&mut d, r#"[{"method":"m","id":1,"params":[]}]"#));
        assert!(r.contains("request object must be a dictionary"), "{r}");
    }

    #[test]
    fn batches() {
        let mut d = Dialect::Detect;
        let r = reply(parse(&mut d, "[]"));
        assert_eq!(
            r,
            r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"batch is empty"},"id":null}"#
        );
        let mut d = Dialect::Detect;
        let Incoming::Batch(members) = parse(
            &mut d,
            r#"[{"jsonrpc":"2.0","method":"a","id":1},5,{"jsonrpc":"2.0","method":"b"}]"#,
        ) else {
            panic!()
        };
        assert_eq!(d, Dialect::V2);
        assert_eq!(members.len(), 3);
        assert!(matches!(&members[0], Member::Call(c) if c.method == "a"));
        assert!(matches!(&members[1], Member::Error(e) if e.contains("dictionary")));
        assert!(matches!(&members[2], Member::Call(c) if c.is_notification()));
        assert_eq!(
            batch(&["1".into(), "2".into()]),
            "[1, 2]",
            "members are joined with a comma and a space"
        );
        assert_eq!(
            parse(&mut d, r#"[{"jsonrpc":"2.0","result":1,"id":1}]"#),
            Incoming::Ignore
        );
    }

    #[test]
    fn notifications_and_oversize_text() {
        let p = RawValue::from_string("[1]".into()).unwrap();
        assert_eq!(
            Dialect::V2.notification("a.b", Some(&p)),
            r#"{"jsonrpc":"2.0","method":"a.b","params":[1]}"#
        );
        assert_eq!(
            Dialect::Loose.notification("blockchain.relayfee", None),
            r#"{"jsonrpc":"2.0","method":"blockchain.relayfee"}"#
        );
        assert_eq!(
            RpcError::response_too_large(1_000_000).message,
            "response too large (over 1,000,000 bytes"
        );
    }
}
