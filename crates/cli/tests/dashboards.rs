//! Every PromQL expression in `dashboards/*.json` returns data from a real Prometheus scraping
//! `nfscope demo` (root: the demo builds network namespaces). Skips when not root or without
//! `/usr/bin/prometheus`, fails instead under `CI=true`.
//!
//! Template variables become `.*` (`$__rate_interval` becomes `30s`, `$__range` `5m`), and each
//! variable's `label_values(metric, label)` query is checked too. There is no allow-list: the demo
//! produces every series the dashboards use (its synthesized cluster objects feed the Kubernetes
//! names, a client loop closes with RST, its Calico policy has an explicit Deny rule).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nfscope_test_support::{free_port, root_or_skip, skip_unless};
use serde_json::Value;

const NFSCOPE: &str = env!("CARGO_BIN_EXE_nfscope");
const PROMETHEUS: &str = "/usr/bin/prometheus";

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboards")
}

/// One expression to check: where it comes from and the query to send.
#[derive(Debug, Clone)]
struct Expr {
    origin: String,
    query: String,
}

/// Every `expr` of every panel target and every `label_values` variable query, with template
/// variables substituted.
fn dashboard_exprs() -> Vec<Expr> {
    let mut files: Vec<_> = std::fs::read_dir(dashboards_dir())
        .expect("read dashboards/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected five dashboards, found {files:?}"
    );
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read dashboard");
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        collect_exprs(&json, &name, &mut out);
    }
    out
}

fn collect_exprs(value: &Value, file: &str, out: &mut Vec<Expr>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(expr)) = map.get("expr") {
                let title = map.get("refId").and_then(Value::as_str).unwrap_or("?");
                out.push(Expr {
                    origin: format!("{file} target {title}"),
                    query: substitute(expr),
                });
            }
            if map.get("type").and_then(Value::as_str) == Some("query")
                && let Some(query) = map.get("definition").and_then(Value::as_str)
            {
                out.push(Expr {
                    origin: format!("{file} variable {}", map["name"]),
                    query: label_values_to_promql(&substitute(query)),
                });
            }
            map.values().for_each(|v| collect_exprs(v, file, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, file, out)),
        _ => {}
    }
}

/// Grafana's built-in intervals to fixed values, every other `$var` / `${var}` to `.*`.
fn substitute(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "30s")
        .replace("$__interval", "15s")
        .replace("$__range", "5m");
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let skip = if let Some(braced) = after.strip_prefix('{') {
            braced.find('}').map_or(0, |end| end + 2)
        } else {
            after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len())
        };
        out.push_str(".*");
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
}

/// `label_values(metric{...}, label)` → `group by (label) (metric{...})`.
fn label_values_to_promql(query: &str) -> String {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unsupported variable query {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("label_values without a label: {query}"));
    format!("group by ({}) ({})", label.trim(), selector.trim())
}

/// Kills the demo and Prometheus, and removes the temp dir, whatever happens.
struct Guard {
    children: Vec<Child>,
    dir: PathBuf,
    demo_prefix: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SIGTERM first: the demo removes its namespaces on the way out.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for child in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_netns_with_prefix(&self.demo_prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn remove_netns_with_prefix(prefix: &str) {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let list = out.map(|o| o.stdout).unwrap_or_default();
    for name in String::from_utf8_lossy(&list)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
    {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `path` on 127.0.0.1:`port`: (status code, body), or None when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Result of one instant query: Ok(number of series or samples) or Err(Prometheus' error).
fn query(port: u16, promql: &str) -> Result<usize, String> {
    let (code, body) = http_get(
        port,
        &format!("/api/v1/query?query={}", percent_encode(promql)),
    )
    .ok_or("Prometheus did not answer")?;
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("HTTP {code}: {e}"))?;
    if json["status"] != "success" {
        return Err(format!("{}: {}", json["errorType"], json["error"]));
    }
    Ok(match &json["data"]["result"] {
        Value::Array(items) => items.len(),
        Value::Null => 0,
        _ => 1, // scalar or string
    })
}

fn start_demo(port: u16) -> Child {
    Command::new(NFSCOPE)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nfscope demo")
}

fn start_prometheus(dir: &Path, demo_port: u16, port: u16) -> Child {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: nfscope\n    static_configs:\n      - targets: ['127.0.0.1:{demo_port}']\n"
        ),
    )
    .expect("write prometheus.yml");
    Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus")
}

#[test]
fn substitution_and_variable_queries() {
    assert_eq!(
        substitute(r#"rate(x{a=~"$ns",b=~"${svc}"}[$__rate_interval])"#),
        r#"rate(x{a=~".*",b=~".*"}[30s])"#
    );
    assert_eq!(
        label_values_to_promql(r#"label_values(m{a=~".*"}, chain)"#),
        r#"group by (chain) (m{a=~".*"})"#
    );
    let exprs = dashboard_exprs();
    assert!(exprs.len() > 30, "only {} expressions found", exprs.len());
    for e in &exprs {
        assert!(
            !e.query.contains('$'),
            "{}: unsubstituted {}",
            e.origin,
            e.query
        );
    }
}

#[test]
fn every_dashboard_expression_returns_data_from_the_demo() {
    let test = "every_dashboard_expression_returns_data_from_the_demo";
    if !root_or_skip(test)
        || !skip_unless(
            test,
            Path::new(PROMETHEUS).exists(),
            "no /usr/bin/prometheus",
        )
    {
        return;
    }
    let exprs = dashboard_exprs();
    let dir = std::env::temp_dir().join(format!("nfscope-dashboards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (demo_port, prom_port) = (free_port(), free_port());
    let mut guard = Guard {
        children: Vec::new(),
        dir: dir.clone(),
        demo_prefix: String::new(),
    };
    let demo = start_demo(demo_port);
    guard.demo_prefix = format!("nfsd-{}-", demo.id());
    guard.children.push(demo);
    guard
        .children
        .push(start_prometheus(&dir, demo_port, prom_port));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(150);
    let total = exprs.len();
    let mut pending = exprs;
    let mut last_errors = Vec::new();
    while !pending.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        last_errors.clear();
        pending.retain(|e| match query(prom_port, &e.query) {
            Ok(n) => n == 0,
            Err(err) => {
                last_errors.push(format!("{}: {err}", e.origin));
                true
            }
        });
    }
    let waited = started.elapsed();
    let failures: Vec<String> = pending
        .iter()
        .map(|e| format!("{}: no data for {}", e.origin, e.query))
        .chain(last_errors)
        .collect();
    assert!(
        failures.is_empty(),
        "after {waited:?}:\n{}",
        failures.join("\n")
    );

    eprintln!("{total} expressions checked in {waited:?}, every one returned data");
}
