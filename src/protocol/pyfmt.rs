//! Python-flavoured text: ElectrumX builds its error messages with Python's `str()`, `repr()` and
//! `{:,d}`, and clients (and differential tests) see those texts verbatim, so we reproduce them.

use std::fmt::Write;

use serde_json::Value;

/// An integer with thousands separators, as Python's `f"{n:,d}"`.
pub(crate) fn thousands(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Python's `str()` of a decoded JSON value: strings unquoted, everything else as `repr()`.
pub(crate) fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a decoded JSON value (`None`, `True`, `'text'`, `[1, 2]`, `{'a': 1}`).
pub(crate) fn py_repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, v);
    out
}

fn write_repr(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => write!(out, "{i}").expect("write to String"),
            (_, Some(u), _) => write!(out, "{u}").expect("write to String"),
            (_, _, Some(f)) => out.push_str(&py_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(&py_repr_str(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&py_repr_str(k));
                out.push_str(": ");
                write_repr(out, item);
            }
            out.push('}');
        }
    }
}

/// Python's `repr()` of a string: single quotes unless the text has a single quote and no
/// double quote; backslash escapes for the quote, `\\`, `\n`, `\r`, `\t` and other controls.
pub(crate) fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                write!(out, "\\x{:02x}", c as u32).expect("write to String")
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                write!(out, "\\x{:02x}", c as u32).expect("write to String")
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of a float: the shortest round-tripping digits, scientific notation when
/// the exponent is below -4 or at least 16 (`1e-05`, `1e+16`), otherwise fixed with at least
/// one decimal (`20.0`). The output is also valid JSON, so results can carry it verbatim.
pub(crate) fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "-1.25e-5".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                let zeros = "0".repeat(int_len - digits.len());
                format!("{sign}{digits}{zeros}.0")
            } else {
                format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

/// Python's `int()` of a string: surrounding whitespace, an optional sign, and digits with
/// single underscores between them.
pub(crate) fn py_int_from_str(s: &str) -> Option<i128> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let mut n: i128 = 0;
    for c in body.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(10)?;
        n = n.checked_mul(10)?.checked_add(d as i128)?;
    }
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1_234), "-1,234");
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(20.0), "20.0");
        assert_eq!(py_float(20.5), "20.5");
        assert_eq!(py_float(1.4), "1.4");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1.5e16), "1.5e+16");
        assert_eq!(py_float(123456789012345.0), "123456789012345.0");
        assert_eq!(py_float(-0.00012), "-0.00012");
        assert_eq!(py_float(0.00002), "2e-05");
        assert_eq!(py_float(0.0), "0.0");
    }

    #[test]
    fn repr_and_str_like_python() {
        assert_eq!(py_str(&json!("abc")), "abc");
        assert_eq!(py_repr(&json!("abc")), "'abc'");
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
        assert_eq!(py_repr(&json!("a'b\"c")), "'a\\'b\"c'");
        assert_eq!(py_repr(&json!("x\ny")), "'x\\ny'");
        assert_eq!(py_str(&json!(["1.8", "2.0"])), "['1.8', '2.0']");
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(1.5)), "1.5");
        assert_eq!(py_str(&json!(-3)), "-3");
        assert_eq!(py_str(&json!({"a": [1, null]})), "{'a': [1, None]}");
    }

    #[test]
    fn int_parsing_like_python() {
        assert_eq!(py_int_from_str(" 5 "), Some(5));
        assert_eq!(py_int_from_str("+7"), Some(7));
        assert_eq!(py_int_from_str("-3"), Some(-3));
        assert_eq!(py_int_from_str("1_000"), Some(1000));
        assert_eq!(py_int_from_str("1__0"), None);
        assert_eq!(py_int_from_str("5.0"), None);
        assert_eq!(py_int_from_str(""), None);
        assert_eq!(py_int_from_str("x"), None);
    }
}
