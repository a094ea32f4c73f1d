//! End-to-end test of `nfscope demo` (root): the lab comes up, its metrics move, SIGTERM removes
//! every namespace it created. Skips when not root, fails instead under `CI=true`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nfscope_test_support::{free_port, root_or_skip};

const NFSCOPE: &str = env!("CARGO_BIN_EXE_nfscope");

fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn remove_netns(name: &str) {
    let pids = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let pids = String::from_utf8_lossy(&pids)
        .split_whitespace()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    if !pids.is_empty() {
        let _ = Command::new("kill").arg("-KILL").args(&pids).status();
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// Kills the demo and removes its namespaces if the test fails half-way.
struct DemoGuard {
    child: Option<Child>,
    prefix: String,
}

impl Drop for DemoGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in netns_with_prefix(&self.prefix) {
            remove_netns(&name);
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.starts_with("HTTP/1.") && status.contains(" 200 ")).then(|| body.to_owned())
}

/// Value of every sample of `metric` whose labels contain all of `labels` (`name="value"`).
fn samples(body: &str, metric: &str, labels: &[&str]) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    series[start..].split('"').next()
}

fn sum(samples: &[(String, f64)]) -> f64 {
    samples.iter().map(|(_, v)| v).sum()
}

/// Scrapes until `ready` holds for the body, or panics after `within`.
fn scrape_until(port: u16, within: Duration, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(body) = http_get(port, "/metrics") {
            if ready(&body) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let kube: Vec<&str> = last
        .lines()
        .filter(|l| l.starts_with("nfscope_kube"))
        .collect();
    panic!(
        "timed out waiting for {what}; last kube series:\n{}",
        kube.join("\n")
    );
}

const ENDPOINTS: &str = "nfscope_kube_endpoint_new_connections_total";
const NO_ENDPOINTS: &str = "nfscope_kube_service_no_endpoints_rejected_packets_total";
const ROUTER_REJECTS: &str = "nfscope_kube_router_pod_rejected_packets_total";
const WEB_V4: &[&str] = &["family=\"ipv4\"", "namespace=\"demo\"", "service=\"web\""];

#[test]
fn demo_lab_serves_moving_metrics_and_cleans_up_on_sigterm() {
    if !root_or_skip("demo_lab_serves_moving_metrics_and_cleans_up_on_sigterm") {
        return;
    }
    let port = free_port();
    let child = Command::new(NFSCOPE)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nfscope demo");
    let pid = child.id();
    let mut guard = DemoGuard {
        child: Some(child),
        prefix: format!("nfsd-{pid}-"),
    };

    // All three web endpoints carry connections.
    let first = scrape_until(
        port,
        Duration::from_secs(60),
        "three busy web endpoints",
        |body| {
            let web = samples(body, ENDPOINTS, WEB_V4);
            web.len() == 3 && web.iter().all(|(_, v)| *v > 0.0)
        },
    );
    let mut endpoints: Vec<String> = samples(&first, ENDPOINTS, WEB_V4)
        .iter()
        .filter_map(|(s, _)| label(s, "endpoint").map(str::to_owned))
        .collect();
    endpoints.sort();
    assert_eq!(
        endpoints,
        ["10.244.1.11:8080", "10.244.1.12:8080", "10.244.1.13:8080"]
    );

    // Counters move between two scrapes.
    let before = sum(&samples(&first, ENDPOINTS, WEB_V4));
    scrape_until(
        port,
        Duration::from_secs(20),
        "web connection counts to grow",
        |body| sum(&samples(body, ENDPOINTS, WEB_V4)) > before,
    );

    // The endpoint-less service and kube-router's policy reject traffic.
    scrape_until(
        port,
        Duration::from_secs(20),
        "rejects to be counted",
        |body| {
            sum(&samples(body, NO_ENDPOINTS, &["service=\"legacy\""])) > 0.0
                && sum(&samples(body, ROUTER_REJECTS, &["pod=\"db-0\""])) > 0.0
        },
    );
    assert!(!netns_with_prefix(&guard.prefix).is_empty());

    // The flow monitor names the graph from the topology: workloads, not pod IPs.
    let graph_has_named_web = |body: &str| {
        let graph: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let has_node = |id: &str| {
            graph["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["id"] == id))
        };
        let busy_edge = graph["edges"].as_array().is_some_and(|edges| {
            edges.iter().any(|e| {
                e["source"] == "lan-client"
                    && e["target"] == "demo/web"
                    && e["mainStat"].as_str().is_some_and(|s| !s.starts_with("0 "))
            })
        });
        has_node("demo/web") && has_node("lan-client") && busy_edge
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut graph = String::new();
    while Instant::now() < deadline && !graph_has_named_web(&graph) {
        std::thread::sleep(Duration::from_millis(500));
        graph = http_get(port, "/api/graph/data").unwrap_or_default();
    }
    assert!(
        graph_has_named_web(&graph),
        "no lan-client -> demo/web edge with traffic: {graph}"
    );

    // SIGTERM: clean exit, nothing left.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut child = guard.child.take().expect("child");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nfscope demo did not exit within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "demo exited with {exit}");
    assert_eq!(
        netns_with_prefix(&guard.prefix),
        Vec::<String>::new(),
        "namespaces left behind"
    );
}

/// Starts `nfscope demo` serving on a free port; the guard stops it and removes its namespaces.
fn start_demo() -> (u16, DemoGuard) {
    let port = free_port();
    let child = Command::new(NFSCOPE)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nfscope demo");
    let prefix = format!("nfsd-{}-", child.id());
    (
        port,
        DemoGuard {
            child: Some(child),
            prefix,
        },
    )
}

/// The metric families of an exposition: the names of its `# TYPE` lines.
fn families(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every `code span` of the README that looks like a metric name; `<x>` stands for any name part
/// (as in `conntrack_stat_<name>_total`).
fn readme_names(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("```"))
        .flat_map(|l| l.split('`').skip(1).step_by(2))
        .filter(|t| {
            !t.is_empty()
                && t.contains('_')
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_<>".contains(c))
        })
        .map(str::to_owned)
        .collect()
}

/// Does the documented `pattern` (a name, or one with `<x>` parts) name `family`?
fn names(pattern: &str, family: &str) -> bool {
    let mut parts = pattern.split('<');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = family.strip_prefix(first) else {
        return false;
    };
    let mut any = false;
    for part in parts {
        let Some((_, literal)) = part.split_once('>') else {
            return false;
        };
        // `<x>` matches a non-empty run of name characters up to the next literal part.
        let Some(at) = (1..=rest.len())
            .rev()
            .find(|&i| rest[i..].starts_with(literal) && (!literal.is_empty() || i == rest.len()))
        else {
            return false;
        };
        rest = &rest[at + literal.len()..];
        any = true;
    }
    rest.is_empty() && (any || first == family)
}

/// The metric names in the first column of the README's main metrics table (under `## Metrics`).
fn main_table_names(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .expect("README has a ## Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .skip_while(|l| !l.starts_with("| metric |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|row| readme_names(row.split('|').nth(1).unwrap_or_default()))
        .collect()
}

#[test]
fn readme_documents_every_metric_family_the_demo_serves() {
    if !root_or_skip("readme_documents_every_metric_family_the_demo_serves") {
        return;
    }
    let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(readme_path).expect("read README.md");
    let documented = readme_names(&readme);
    let table = main_table_names(&readme);
    assert!(table.len() >= 20, "main metrics table not found: {table:?}");

    let (port, _guard) = start_demo();
    // Wait for every kind of series: rules, Kubernetes meaning, rejects, lint, flows.
    let body = scrape_until(
        port,
        Duration::from_secs(90),
        "rule, Kubernetes, lint and flow families",
        |body| {
            let fams = families(body);
            sum(&samples(body, ENDPOINTS, WEB_V4)) > 0.0
                && sum(&samples(body, ROUTER_REJECTS, &["pod=\"db-0\""])) > 0.0
                && ["nfscope_lint_findings", "nfscope_tcp_connections_total"]
                    .iter()
                    .all(|f| fams.iter().any(|x| x == f))
        },
    );
    let served = families(&body);

    let undocumented: Vec<&String> = served
        .iter()
        .filter(|f| !documented.iter().any(|d| names(d, f)))
        .collect();
    assert!(
        undocumented.is_empty(),
        "metric families served by the demo but not documented in README.md: {undocumented:?}"
    );

    // The main table names only families the demo serves; flow and native nftables families are
    // documented in their own sections. A family with no sample writes nothing, and the README
    // says when these have none.
    const ONLY_AFTER_A_FAILURE: &[&str] = &["nfscope_collection_errors_total"];
    let missing: Vec<&String> = table
        .iter()
        .filter(|d| !ONLY_AFTER_A_FAILURE.contains(&d.as_str()))
        .filter(|d| !served.iter().any(|f| names(d, f)))
        .collect();
    assert!(
        missing.is_empty(),
        "README's metrics table names families the demo does not serve: {missing:?}\nserved: {served:?}"
    );
}

#[test]
fn documented_name_patterns_match_as_intended() {
    assert!(names(
        "conntrack_stat_<name>_total",
        "conntrack_stat_insert_failed_total"
    ));
    assert!(names("iptables_rules", "iptables_rules"));
    assert!(!names("iptables_rules", "iptables_rules_total"));
    assert!(!names(
        "conntrack_stat_<name>_total",
        "conntrack_stat__total"
    ));
    assert!(!names("conntrack_stat_<name>_total", "conntrack_entries"));
    let readme = "x `conntrack_stat_<name>_total` y `iptables_rules`, `Ctrl-C` `a b`";
    assert_eq!(
        readme_names(readme),
        ["conntrack_stat_<name>_total", "iptables_rules"]
    );
}

#[test]
fn cleanup_stale_removes_namespaces_of_dead_demos_only() {
    if !root_or_skip("cleanup_stale_removes_namespaces_of_dead_demos_only") {
        return;
    }
    // A pid that is certainly dead: a finished child of ours.
    let mut dead = Command::new("true").spawn().expect("spawn true");
    let dead_pid = dead.id();
    dead.wait().expect("wait true");
    let stale = format!("nfsd-{dead_pid}-node");
    let other = format!("nfscope-demo-test-{}", std::process::id());
    let _guard = DemoGuard {
        child: None,
        prefix: format!("nfsd-{dead_pid}-"),
    };
    let _other_guard = DemoGuard {
        child: None,
        prefix: other.clone(),
    };
    for name in [&stale, &other] {
        assert!(
            Command::new("ip")
                .args(["netns", "add", name])
                .status()
                .expect("ip")
                .success()
        );
    }

    let out = Command::new(NFSCOPE)
        .args(["demo", "--cleanup-stale"])
        .output()
        .expect("run cleanup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (Another demo starting in parallel may have removed it first, so the listing may not name it.)
    assert!(String::from_utf8_lossy(&out.stdout).contains("stale demo namespace(s) removed"));
    assert!(
        netns_with_prefix(&stale).is_empty(),
        "stale namespace survived"
    );
    assert_eq!(
        netns_with_prefix(&other),
        std::slice::from_ref(&other),
        "a namespace without the demo prefix was touched"
    );
}

#[test]
fn demo_refuses_to_run_without_root() {
    if !root_or_skip("demo_refuses_to_run_without_root") {
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            NFSCOPE,
            "demo",
            "--duration",
            "1",
        ])
        .output()
        .expect("run setpriv");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nfscope demo needs root (it creates network namespaces)"),
        "{stderr}"
    );
}
