//! `deploy/grafana/sextant.json`, the Grafana dashboard for `METRICS_LISTEN`: every panel has a
//! title and takes its data source from the dashboard's `datasource` variable, and every query
//! names only metrics (and labels) that a real Sextant exports — read from the `/metrics` of the
//! `sextant` binary following a real `litecoind -regtest` — and evaluates in a real Prometheus
//! (Debian's `prometheus`) that scrapes that Sextant. Every metric Sextant exports is on the
//! dashboard.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const DASHBOARD: &str = "deploy/grafana/sextant.json";
const DATASOURCE: &str = "${datasource}";

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DASHBOARD);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every panel, those inside rows included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (panel title, PromQL) of every query, the template variables' included.
fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("no expr: {t}"));
            out.push((p["title"].as_str().unwrap().to_string(), expr.to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.rsplit_once(','))
                .map(|(series, _label)| series.trim())
                .unwrap_or_else(|| panic!("variable query {q:?} is not label_values(…, label)"));
            out.push((format!("variable {}", v["name"]), inner.to_string()));
        }
    }
    out
}

/// What a PromQL expression refers to.
#[derive(Debug, Default, PartialEq)]
struct Refs {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
    functions: BTreeSet<String>,
}

const KEYWORDS: [&str; 8] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "group_left",
    "group_right",
    "inf",
];
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// PromQL's aggregations and functions (Prometheus 2.x), so that a misspelt one is caught here
/// rather than as an empty panel.
const FUNCTIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "abs",
    "absent",
    "absent_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "ln",
    "log2",
    "log10",
    "predict_linear",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "last_over_time",
    "present_over_time",
];

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn ident_char(c: char) -> bool {
    ident_start(c) || c.is_ascii_digit()
}

/// Reads the metric names, label names and functions of a PromQL expression, with Grafana's
/// `$variables` in it. Strings, durations (`[5m]`) and numbers are skipped; identifiers in `{…}`
/// before a matcher and in `by (…)`-style lists are labels, those before `(` functions, the rest
/// metric names.
fn promql_refs(expr: &str) -> Refs {
    let s: Vec<char> = expr.chars().collect();
    let mut refs = Refs::default();
    let mut i = 0;
    let skip_string = |i: &mut usize| {
        let quote = s[*i];
        *i += 1;
        while *i < s.len() && s[*i] != quote {
            if s[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        assert!(*i < s.len(), "unterminated string in {expr:?}");
        *i += 1;
    };
    let read_ident = |i: &mut usize| -> String {
        let start = *i;
        while *i < s.len() && ident_char(s[*i]) {
            *i += 1;
        }
        s[start..*i].iter().collect()
    };
    let next_non_space = |mut i: usize| -> Option<char> {
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        s.get(i).copied()
    };
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            skip_string(&mut i);
        } else if c == '$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if s.get(i) == Some(&'{') {
                while s[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                read_ident(&mut i);
            }
        } else if c == '[' {
            while s[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            // Label matchers: name op "value", …
            i += 1;
            while i < s.len() && s[i] != '}' {
                if ident_start(s[i]) {
                    refs.labels.insert(read_ident(&mut i));
                } else if s[i] == '"' || s[i] == '\'' || s[i] == '`' {
                    skip_string(&mut i);
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number (or a duration after `offset`): digits, letters, dots, exponent signs.
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let word = read_ident(&mut i);
            let lower = word.to_ascii_lowercase();
            // An aggregation may put its grouping first: `sum by (label) (expr)`.
            let mut after = i;
            while after < s.len() && s[after].is_whitespace() {
                after += 1;
            }
            let next_word = read_ident(&mut after).to_ascii_lowercase();
            let before_paren = next_non_space(i) == Some('(')
                || ((next_word == "by" || next_word == "without")
                    && next_non_space(after) == Some('('));
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) && before_paren {
                while s[i] != '(' {
                    i += 1;
                }
                while s[i] != ')' {
                    if ident_start(s[i]) {
                        refs.labels.insert(read_ident(&mut i));
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            } else if KEYWORDS.contains(&lower.as_str()) || lower == "nan" {
            } else if before_paren {
                refs.functions.insert(word);
            } else {
                refs.metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    refs
}

#[test]
fn the_promql_reader_tells_metrics_labels_and_functions_apart() {
    let r = promql_refs(
        r#"histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{instance=~"$instance",m!="x{y}"}[$__rate_interval])))
           / on (instance) group_left b_total{k='v'} offset 5m > bool 1e3 and ${other} unless c"#,
    );
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(r.metrics, set(&["a_bucket", "b_total", "c"]));
    assert_eq!(r.labels, set(&["instance", "m", "le", "method", "k"]));
    assert_eq!(r.functions, set(&["histogram_quantile", "sum", "rate"]));
    assert_eq!(promql_refs("sextant_x >= 0").metrics, set(&["sextant_x"]));
}

#[test]
fn every_panel_has_a_title_and_the_datasource_variable() {
    let dash = dashboard();
    assert!(!dash["title"].as_str().unwrap().is_empty());
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"]["uid"], DATASOURCE, "variable {}", v["name"]);
    }

    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let mut data_panels = 0;
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or("");
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "id {} twice",
            p["id"]
        );
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64().unwrap(), pos["w"].as_u64().unwrap());
        assert!(w > 0 && x + w <= 24, "{title}: outside the 24-column grid");
        if p["type"] == "row" {
            continue;
        }
        data_panels += 1;
        assert!(titles.insert(title), "two panels titled {title:?}");
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(p["datasource"]["uid"], DATASOURCE, "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], DATASOURCE, "{title}: {t}");
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores the server chosen"
            );
        }
    }
    assert!(data_panels >= 10, "{data_panels} panels");
    for (title, expr) in queries(&dash) {
        let refs = promql_refs(&expr);
        assert!(!refs.metrics.is_empty(), "{title}: {expr} reads no metric");
        for f in &refs.functions {
            assert!(
                FUNCTIONS.contains(&f.as_str()),
                "{title}: unknown function {f}"
            );
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    // HTTP/1.0: one answer, not chunked, then the connection closes.
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// Metric families (from `# TYPE`) and, per sample name, the label names seen on it.
fn exported(body: &str) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut families = BTreeSet::new();
    let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap();
        let labels = samples.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            let inner = &line[end + 1..line.rfind('}').unwrap()];
            labels.extend(promql_refs(&format!("x{{{inner}}}")).labels);
        }
    }
    (families, samples)
}

fn query_string(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

/// Evaluates `expr` at Prometheus's current time.
fn prometheus_query(port: u16, expr: &str) -> Value {
    let (head, body) = http_get(port, &format!("/api/v1/query?query={}", query_string(expr)))
        .unwrap_or_else(|| panic!("Prometheus did not answer {expr}"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {head}\n{body}"));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].clone()
}

#[test]
fn queries_read_only_what_sextant_exports_and_evaluate_in_prometheus() {
    let prometheus = Path::new("/usr/bin/prometheus");
    assert!(
        prometheus.exists(),
        "this test needs a real Prometheus: apt-get install prometheus (scripts/deps.sh does)"
    );
    let d = Litecoind::start();
    d.mine(3);
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port, prom_port) = (free_port(), free_port(), free_port());
    let mut cmd = sextant_command();
    cmd.envs([
        ("COIN", "Litecoin".to_string()),
        ("NET", "regtest".into()),
        ("DB_DIRECTORY", dir.path().join("db").display().to_string()),
        ("DAEMON_URL", format!("{}/", d.rpc_url())),
        ("SERVICES", format!("tcp://127.0.0.1:{port}")),
        ("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}")),
        // One subscription per session, so that a second one is refused: a cost-limit action.
        ("MAX_SUBS_PER_SESSION", "1".into()),
    ]);
    let mut sextant = Proc::spawn("sextant", cmd, dir.path().join("sextant.log"));

    // A wallet's traffic makes every family appear: requests and their latencies, a refused
    // subscription, and a daemon error (a transaction the daemon does not know).
    let mut wallet = Client::connect(port);
    assert!(wallet.negotiates());
    wallet.result("blockchain.headers.subscribe", json!([]));
    wallet.result("blockchain.scripthash.subscribe", json!(["00".repeat(32)]));
    wallet.error("blockchain.scripthash.subscribe", json!(["11".repeat(32)]));
    wallet.error("blockchain.transaction.get", json!(["22".repeat(32)]));

    let (families, samples) = wait_until(
        Duration::from_secs(60),
        "every metric family on /metrics",
        || {
            sextant.assert_running();
            let (_, body) = http_get(metrics_port, "/metrics")?;
            let (families, samples) = exported(&body);
            let all = [
                "sextant_cost_limit_actions_total",
                "sextant_daemon_rpc_errors_total",
                "sextant_requests_total",
                "sextant_peers",
            ];
            all.iter()
                .all(|f| families.contains(*f))
                .then_some((families, samples))
        },
    );
    assert!(families.len() >= 12, "{families:?}");

    // Every query reads exported series only, with labels those series have (Prometheus adds
    // `instance` and `job` to every scraped series).
    let dash = dashboard();
    let mut used = BTreeSet::new();
    for (title, expr) in queries(&dash) {
        let refs = promql_refs(&expr);
        let mut labels: BTreeSet<String> = ["instance", "job"].map(String::from).into();
        for m in &refs.metrics {
            let have = samples.get(m).unwrap_or_else(|| {
                panic!("{title}: {expr} reads {m}, which Sextant does not export")
            });
            labels.extend(have.iter().cloned());
            used.insert(m.clone());
        }
        for l in &refs.labels {
            assert!(
                labels.contains(l),
                "{title}: {expr}: no series has label {l}"
            );
        }
    }
    // And every family Sextant exports is on the dashboard.
    for f in &families {
        assert!(
            used.iter().any(|m| m == f
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| m.strip_suffix(s) == Some(f.as_str()))),
            "{f} is exported but on no panel"
        );
    }

    // A real Prometheus scrapes this Sextant, and every query evaluates there as Grafana would
    // send it ($instance: All; $__rate_interval: at least four scrape intervals).
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: sextant\n    static_configs:\n      \
             - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(prometheus);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg("--log.level=warn");
    let mut prom = Proc::spawn("prometheus", cmd, dir.path().join("prometheus.log"));
    wait_until(
        Duration::from_secs(60),
        "Prometheus to have scraped",
        || {
            prom.assert_running();
            sextant.assert_running();
            http_get(prom_port, "/-/ready").filter(|(h, _)| h.contains(" 200 "))?;
            let r = prometheus_query(prom_port, "count_over_time(sextant_index_height[1m])");
            (r[0]["value"][1].as_str()?.parse::<u32>().ok()? >= 4).then_some(())
        },
    );
    // More traffic between scrapes, so that the rates are not all zero.
    wallet.result("server.ping", json!([]));
    std::thread::sleep(Duration::from_secs(2));

    for (title, expr) in queries(&dash) {
        let q = expr
            .replace("$__rate_interval", "15s")
            .replace("$instance", ".*");
        let result = prometheus_query(prom_port, &q);
        // Notarizations exist on Komodo chains only: on Litecoin those series are filtered out.
        if !expr.contains("sextant_notarized_height") {
            assert!(
                result.as_array().is_some_and(|r| !r.is_empty()),
                "{title}: {q} has no data: {result}"
            );
        }
    }
    let (_, instances) = http_get(
        prom_port,
        &format!(
            "/api/v1/label/instance/values?match[]={}",
            query_string("sextant_index_height")
        ),
    )
    .unwrap();
    assert!(
        instances.contains(&format!("127.0.0.1:{metrics_port}")),
        "the instance variable lists the server: {instances}"
    );
}
