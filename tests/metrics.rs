//! `METRICS_LISTEN`: the `sextant` binary on a real `litecoind -regtest` serves Prometheus
//! text at `GET /metrics`. Every line must parse under the text format's rules (checked by a
//! strict parser here), histograms must be consistent, and the values must be the chain's.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// One sample: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_name(s: &str, colon_ok: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon_ok && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y\"z"}` → labels; returns the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("unquoted label")?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[eq + 1..][end + 2..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the whole exposition, checking that every sample belongs to a family whose TYPE
/// came first, and that no family is declared twice.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), _) if is_name(name, true) => {}
                (Some("TYPE"), Some(name), Some(t)) if is_name(name, true) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(at(format!("unknown type {t}")));
                    }
                    if types.insert(name.into(), t.into()).is_some() {
                        return Err(at("family declared twice".into()));
                    }
                }
                _ => return Err(at("malformed comment".into())),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        let Some(t) = types.get(family) else {
            return Err(at("sample before its TYPE".into()));
        };
        if t == "histogram" && name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(at("bucket without le".into()));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// A series: its name and labels.
type SeriesKey = (String, Vec<(String, String)>);

/// Buckets of each histogram series never decrease, and `+Inf` equals `_count`.
fn check_histograms(samples: &[Sample]) -> Result<(), String> {
    let mut series: BTreeMap<SeriesKey, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts = HashMap::new();
    for s in samples {
        let key_labels = |skip: &str| -> Vec<(String, String)> {
            s.labels
                .iter()
                .filter(|(k, _)| *k != skip)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if let Some(base) = s.name.strip_suffix("_bucket") {
            let le = parse_value(&s.labels["le"])?;
            series
                .entry((base.to_string(), key_labels("le")))
                .or_default()
                .push((le, s.value));
        } else if let Some(base) = s.name.strip_suffix("_count") {
            counts.insert((base.to_string(), key_labels("")), s.value);
        }
    }
    for (key, buckets) in &series {
        if !buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        {
            return Err(format!("{key:?}: buckets out of order or decreasing"));
        }
        let last = buckets.last().unwrap();
        if last.0 != f64::INFINITY || Some(&last.1) != counts.get(key) {
            return Err(format!("{key:?}: +Inf bucket is not the count"));
        }
    }
    Ok(())
}

fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[test]
fn the_parser_is_strict() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{m=\"q\\\"\"} 1\n";
    assert_eq!(parse(ok).unwrap()[0].labels["m"], "q\"");
    for bad in [
        "a 1\n",
        "# TYPE a gauge\na{m=x} 1\n",
        "# TYPE a gauge\na{m=\"x\"}1\n",
        "# TYPE a gauge\na one\n",
        "# TYPE a gauge\n# TYPE a gauge\n",
        "# TYPE a widget\n",
        "# TYPE a gauge\n1a 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    let h =
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
    assert!(check_histograms(&parse(h).unwrap()).is_err());
}

#[test]
fn metrics_are_served_and_match_the_chain() {
    let d = Litecoind::start();
    d.mine(25);
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let mut sextant = Proc::sextant(
        &d,
        dir.path(),
        &[
            ("SERVICES", format!("tcp://127.0.0.1:{port}")),
            ("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}")),
        ],
    );
    let height = d
        .call("getblockcount", serde_json::json!([]))
        .as_f64()
        .unwrap();
    let samples = wait_until(
        Duration::from_secs(120),
        "metrics at the chain's height",
        || {
            sextant.assert_running();
            let (head, body) = get(metrics_port, "/metrics")?;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("text/plain; version=0.0.4"), "{head}");
            let samples = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
            // Peers are counted once the service (and discovery) runs, just after the sync.
            let serving = value(&samples, "sextant_peers", &[("status", "good")]).is_some();
            (value(&samples, "sextant_index_height", &[]) == Some(height) && serving)
                .then_some(samples)
        },
    );
    check_histograms(&samples).unwrap();
    assert_eq!(value(&samples, "sextant_daemon_height", &[]), Some(height));
    assert_eq!(value(&samples, "sextant_index_lag_blocks", &[]), Some(0.0));
    assert!(value(&samples, "sextant_db_size_bytes", &[]).is_some());
    let calls = value(
        &samples,
        "sextant_daemon_rpc_duration_seconds_count",
        &[("method", "getblockchaininfo")],
    );
    assert!(calls.is_some_and(|n| n >= 1.0), "{calls:?}");
    for status in ["good", "stale", "never", "bad"] {
        assert_eq!(
            value(&samples, "sextant_peers", &[("status", status)]),
            Some(0.0),
            "no peers without REPORT_SERVICES or seeds"
        );
    }

    assert_eq!(
        value(&samples, "sextant_notarized_height", &[]),
        Some(-1.0),
        "Litecoin has no notarizations"
    );

    // A wallet's requests are counted by method, its session while it is open.
    let mut wallet = Client::connect(port);
    assert!(wallet.negotiates());
    wallet.result("blockchain.headers.subscribe", serde_json::json!([]));
    wallet.result("server.ping", serde_json::json!([]));
    wait_until(Duration::from_secs(30), "the wallet's requests", || {
        let samples = parse(&get(metrics_port, "/metrics")?.1).unwrap();
        let count = |m: &str| value(&samples, "sextant_requests_total", &[("method", m)]);
        (count("blockchain.headers.subscribe") == Some(1.0)
            && count("server.ping") == Some(1.0)
            && value(&samples, "sextant_sessions", &[]) == Some(1.0))
        .then_some(())
    });
    drop(wallet);
    wait_until(Duration::from_secs(30), "the session to close", || {
        let samples = parse(&get(metrics_port, "/metrics")?.1).unwrap();
        (value(&samples, "sextant_sessions", &[]) == Some(0.0)).then_some(())
    });

    // A new block shows up in both heights.
    d.mine(1);
    wait_until(Duration::from_secs(60), "the new height", || {
        let samples = parse(&get(metrics_port, "/metrics")?.1).unwrap();
        (value(&samples, "sextant_index_height", &[]) == Some(height + 1.0)
            && value(&samples, "sextant_daemon_height", &[]) == Some(height + 1.0))
        .then_some(())
    });
    let (head, _) = get(metrics_port, "/other").unwrap();
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}
