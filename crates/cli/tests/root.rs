//! Root tests of `nfscope serve` and `nfscope rules` against real rules in throwaway network
//! namespaces: counters must equal the namespace's own `ip[6]tables-{nft,legacy}-save -c`, removed
//! rules must vanish, duplicates must stay apart, and a real Prometheus must scrape the server.
//!
//! Every test builds its own namespaces (`nfscope_test_support::TestNetns`) and runs the server as
//! a child on the host's loopback with `--netns`; nothing is changed in the initial namespace.
//! Without root the tests skip, unless `CI=true`, where they fail.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nfscope_test_support::{Sample, free_port, named, promtool_check};
use nfscope_test_support::{TestNetns, root_or_skip};
use support::{KillOnDrop, NFSCOPE, Server, TempDir, http_get};

const HOSTILE_COMMENT: &str = r#"say "hi" \ back\\slash ünïcödé ☃ {x="y"}"#;

fn v4_nft_rules() -> String {
    let escaped = HOSTILE_COMMENT.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:NFSCOPE-IN - [0:0]
-A INPUT -j NFSCOPE-IN
-A NFSCOPE-IN -p icmp -m icmp --icmp-type 8 -m comment --comment \"echo via nft\" -j ACCEPT
-A NFSCOPE-IN -p tcp -m tcp --dport 8080 -j ACCEPT
-A NFSCOPE-IN -p tcp -m tcp --dport 8080 -j ACCEPT
-A NFSCOPE-IN -s 10.77.0.0/24 -m comment --comment \"remove me\"
-A NFSCOPE-IN -m comment --comment \"{escaped}\"
-A OUTPUT -p icmp -j ACCEPT
COMMIT
"
    )
}

const V4_LEGACY_RULES: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p icmp -j ACCEPT
-A INPUT -p tcp -m tcp --dport 8080 -m comment --comment \"legacy web\" -j ACCEPT
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -s 10.77.0.2/32
COMMIT
";

const V6_NFT_RULES: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128 -m comment --comment \"echo6 via nft\" -j ACCEPT
-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT
-A INPUT -s fd77::/64
COMMIT
";

const V6_LEGACY_RULES: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p ipv6-icmp -j ACCEPT
-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT
COMMIT
";

/// (family, backend, save tool, restore tool)
const BACKENDS: [(&str, &str, &str, &str); 4] = [
    ("ipv4", "nft", "iptables-nft-save", "iptables-nft-restore"),
    (
        "ipv4",
        "legacy",
        "iptables-legacy-save",
        "iptables-legacy-restore",
    ),
    ("ipv6", "nft", "ip6tables-nft-save", "ip6tables-nft-restore"),
    (
        "ipv6",
        "legacy",
        "ip6tables-legacy-save",
        "ip6tables-legacy-restore",
    ),
];

/// A node namespace with rules in all four (family, backend) pairs and a peer wired to it.
struct Lab {
    node: TestNetns,
    peer: TestNetns,
}

impl Lab {
    fn new(tag: &str) -> Self {
        // Legacy x_tables may be modules; best effort (built into some kernels).
        let _ = Command::new("modprobe")
            .args([
                "-qa",
                "ip_tables",
                "ip6_tables",
                "iptable_filter",
                "ip6table_filter",
                "iptable_mangle",
            ])
            .stderr(Stdio::null())
            .status();
        let node = TestNetns::new(tag).expect("create node netns");
        let peer = TestNetns::new(&format!("{tag}p")).expect("create peer netns");
        node.veth_to(
            &peer,
            &["10.77.0.1/24", "fd77::1/64"],
            &["10.77.0.2/24", "fd77::2/64"],
        )
        .expect("veth");
        let v4_nft = v4_nft_rules();
        for ((_, _, _, restore), rules) in BACKENDS.iter().zip([
            v4_nft.as_str(),
            V4_LEGACY_RULES,
            V6_NFT_RULES,
            V6_LEGACY_RULES,
        ]) {
            node.sh_ok(&format!("{restore} <<'EOF'\n{rules}EOF"));
        }
        Self { node, peer }
    }

    /// Real traffic from the peer: pings over both families and refused TCP connections.
    fn traffic(&self) {
        self.peer
            .sh_ok("ping -c 3 -i 0.2 -W 2 10.77.0.1 >/dev/null");
        self.peer
            .sh_ok("ping -6 -c 3 -i 0.2 -W 2 fd77::1 >/dev/null");
        self.peer
            .sh("nc -z -w 1 10.77.0.1 8080; nc -z -w 1 fd77::1 8080; true");
    }

    fn saves(&self) -> Vec<String> {
        BACKENDS
            .iter()
            .map(|(_, _, save, _)| self.node.sh_ok(&format!("{save} -c")))
            .collect()
    }
}

/// (family, backend, table, chain, rule text) → all (packets, bytes) with that key, sorted.
type CounterMap = BTreeMap<(String, String, String, String, String), Vec<(u64, u64)>>;

/// Reads `[p:b] -A CHAIN text` lines straight from save output (no nfscope parsing).
fn counters_from_saves(saves: &[String]) -> CounterMap {
    let mut map = CounterMap::new();
    for ((family, backend, _, _), save) in BACKENDS.iter().zip(saves) {
        let mut table = String::new();
        for line in save.lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name.to_owned();
            }
            if let Some((chain, policy, packets, bytes)) = policy_line(line) {
                let key = (
                    family.to_string(),
                    backend.to_string(),
                    table.clone(),
                    chain,
                    format!("policy {policy}"),
                );
                map.entry(key).or_default().push((packets, bytes));
            }
            let Some(rest) = line.strip_prefix('[') else {
                continue;
            };
            let (counts, rule) = rest.split_once("] -A ").expect("counter prefix");
            let (packets, bytes) = counts.split_once(':').expect("p:b");
            let (chain, text) = rule.split_once(' ').unwrap_or((rule, ""));
            let key = (
                family.to_string(),
                backend.to_string(),
                table.clone(),
                chain.to_owned(),
                text.to_owned(),
            );
            map.entry(key)
                .or_default()
                .push((packets.parse().unwrap(), bytes.parse().unwrap()));
        }
    }
    map.values_mut().for_each(|v| v.sort_unstable());
    map
}

/// `:CHAIN POLICY [p:b]` of a built-in chain (user chains have policy `-`).
fn policy_line(line: &str) -> Option<(String, String, u64, u64)> {
    let mut words = line.strip_prefix(':')?.split_whitespace();
    let (chain, policy, counts) = (words.next()?, words.next()?, words.next()?);
    let (packets, bytes) = counts
        .strip_prefix('[')?
        .strip_suffix(']')?
        .split_once(':')?;
    if policy == "-" {
        return None;
    }
    Some((
        chain.to_owned(),
        policy.to_owned(),
        packets.parse().ok()?,
        bytes.parse().ok()?,
    ))
}

fn counters_from_metrics(samples: &[Sample]) -> CounterMap {
    let key = |s: &Sample| {
        let l = |n: &str| s.label_str(n).to_owned();
        (
            l("family"),
            l("backend"),
            l("table"),
            l("chain"),
            l("rule"),
            l("rule_id"),
        )
    };
    let bytes: BTreeMap<_, f64> = named(samples, "iptables_rule_bytes_total")
        .into_iter()
        .map(|s| (key(s), s.value))
        .collect();
    let mut map = CounterMap::new();
    for sample in named(samples, "iptables_rule_packets_total") {
        let k = key(sample);
        let b = *bytes
            .get(&k)
            .unwrap_or_else(|| panic!("no bytes series for {k:?}"));
        map.entry((k.0, k.1, k.2, k.3, k.4))
            .or_default()
            .push((sample.value as u64, b as u64));
    }
    let key = |s: &Sample| {
        let l = |n: &str| s.label_str(n).to_owned();
        (
            l("family"),
            l("backend"),
            l("table"),
            l("chain"),
            format!("policy {}", l("policy")),
        )
    };
    let bytes: BTreeMap<_, f64> = named(samples, "iptables_default_bytes_total")
        .into_iter()
        .map(|s| (key(s), s.value))
        .collect();
    for sample in named(samples, "iptables_default_packets_total") {
        let k = key(sample);
        let b = *bytes
            .get(&k)
            .unwrap_or_else(|| panic!("no policy bytes series for {k:?}"));
        map.entry(k)
            .or_default()
            .push((sample.value as u64, b as u64));
    }
    map.values_mut().for_each(|v| v.sort_unstable());
    map
}

/// Scrapes until the namespace's counters stood still across the scrape (stray IPv6 neighbour
/// traffic may move them), then returns (save outputs, metrics body, samples).
fn quiet_scrape(lab: &Lab, server: &Server) -> (Vec<String>, String, Vec<Sample>) {
    for _ in 0..5 {
        let before = lab.saves();
        let (body, samples) = server.metrics();
        let after = lab.saves();
        if strip_dates(&before) == strip_dates(&after) {
            return (after, body, samples);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("counters never stood still across a scrape");
}

fn strip_dates(saves: &[String]) -> Vec<String> {
    saves
        .iter()
        .map(|s| {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// One quiet scrape of `server` compared with the namespace's own save output, counter by counter.
fn check_counters_match(lab: &Lab, server: &Server, source: &str) {
    let (saves, body, samples) = quiet_scrape(lab, server);

    let expected = counters_from_saves(&saves);
    let got = counters_from_metrics(&samples);
    assert_eq!(got, expected, "{source}: metrics vs save -c\n{body}");
    for (family, backend, _, _) in BACKENDS {
        let moved = expected
            .iter()
            .any(|(k, v)| k.0 == family && k.1 == backend && v.iter().any(|c| c.0 > 0));
        assert!(
            moved,
            "traffic was counted in {family}/{backend}, so the comparison is not vacuous"
        );
        let success = named(&samples, "iptables_scrape_success")
            .into_iter()
            .find(|s| s.label_str("family") == family && s.label_str("backend") == backend)
            .unwrap_or_else(|| panic!("iptables_scrape_success for {family}/{backend}"));
        assert_eq!(success.value, 1.0);
    }
    assert!(
        named(&samples, "iptables_rule_packets_total")
            .iter()
            .any(|s| s.label_str("comment") == HOSTILE_COMMENT)
    );
    let (ok, report) = promtool_check(&body).expect("promtool installed");
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

#[test]
fn metrics_equal_save_counters_for_both_backends_and_families() {
    if !root_or_skip("metrics_equal_save_counters_for_both_backends_and_families") {
        return;
    }
    let lab = Lab::new("cnt");
    lab.traffic();
    for source in ["netlink", "exec"] {
        let server = Server::start(&[
            "--netns",
            lab.node.name(),
            "--timeout",
            "20",
            "--source",
            source,
        ]);
        check_counters_match(&lab, &server, source);
        lab.traffic(); // the second source sees counters the first one never did
    }

    // The same namespace through `nfscope rules --netns` shows our chain with the ping counter.
    let out = Command::new(NFSCOPE)
        .args(["rules", "--netns", lab.node.name(), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        json["rulesets"].as_array().map(Vec::len),
        Some(4),
        "four rulesets"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("echo via nft"));
}

#[test]
fn removed_rules_vanish_and_duplicates_get_distinct_ids() {
    if !root_or_skip("removed_rules_vanish_and_duplicates_get_distinct_ids") {
        return;
    }
    let lab = Lab::new("del");
    let server = Server::start(&["--netns", lab.node.name()]);
    let is_v4_nft =
        |s: &&Sample| s.label_str("family") == "ipv4" && s.label_str("backend") == "nft";

    let (_, samples) = server.metrics();
    let rules: Vec<&Sample> = named(&samples, "iptables_rule_packets_total")
        .into_iter()
        .filter(is_v4_nft)
        .collect();
    let dport: Vec<&str> = rules
        .iter()
        .filter(|s| s.label_str("rule").contains("--dport 8080"))
        .map(|s| s.label_str("rule_id"))
        .collect();
    assert_eq!(
        dport.len(),
        2,
        "the duplicated rule is exported twice: {rules:#?}"
    );
    assert_ne!(dport[0], dport[1], "with distinct rule_id");
    assert_eq!(
        rules
            .iter()
            .filter(|s| s.label_str("comment") == "remove me")
            .count(),
        1
    );
    let total_before = named(&samples, "iptables_rule_packets_total").len();

    lab.node
        .sh_ok("iptables-nft -D NFSCOPE-IN -s 10.77.0.0/24 -m comment --comment 'remove me'");
    let (_, samples) = server.metrics();
    let all = named(&samples, "iptables_rule_packets_total");
    assert!(
        all.iter().all(|s| s.label_str("comment") != "remove me"),
        "the deleted rule's series is gone"
    );
    assert_eq!(all.len(), total_before - 1, "and nothing else changed");
    assert_eq!(
        named(&samples, "iptables_rule_bytes_total").len(),
        total_before - 1
    );
}

#[test]
fn a_real_prometheus_scrapes_the_server() {
    if !root_or_skip("a_real_prometheus_scrapes_the_server") {
        return;
    }
    let node = TestNetns::new("prom").expect("netns");
    node.sh_ok("iptables-nft -N NFSCOPE-PROM && iptables-nft -A INPUT -j NFSCOPE-PROM");
    let server = Server::start(&["--netns", node.name()]);
    let dir = TempDir::new("prom");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: nfscope\n    \
             static_configs:\n      - targets: ['{}']\n",
            server.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prometheus = KillOnDrop(prometheus);
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let query = |q: &str| -> Option<serde_json::Value> {
        let (status, body) = http_get(
            api,
            &format!("/api/v1/query?query={q}"),
            Duration::from_secs(5),
        )
        .ok()?;
        (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last = None;
    while Instant::now() < deadline {
        let up = query("up").and_then(|v| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned)
        });
        let rules =
            query("iptables_rule_packets_total%7Bchain%3D%22INPUT%22%2Cfamily%3D%22ipv4%22%7D");
        let jumps_to_our_chain = rules.as_ref().is_some_and(|v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| r.iter().any(|s| s["metric"]["rule"] == "-j NFSCOPE-PROM"))
        });
        if up.as_deref() == Some("1") && jumps_to_our_chain {
            return;
        }
        last = Some((up, rules));
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("prometheus never saw up == 1 and our rule series; last answers: {last:?}");
}

#[test]
fn a_namespace_without_legacy_tables_reports_legacy_read_not_failed() {
    if !root_or_skip("a_namespace_without_legacy_tables_reports_legacy_read_not_failed") {
        return;
    }
    let node = TestNetns::new("nolegacy").expect("create netns");
    node.sh_ok("iptables-nft-restore <<'EOF'\n*filter\n-A INPUT -p icmp -j ACCEPT\nCOMMIT\nEOF");
    for source in ["netlink", "exec"] {
        let server = Server::start(&["--netns", node.name(), "--source", source]);
        let (body, samples) = server.metrics();
        for family in ["ipv4", "ipv6"] {
            for backend in ["nft", "legacy"] {
                let success = named(&samples, "iptables_scrape_success")
                    .into_iter()
                    .find(|s| {
                        s.label("family") == Some(family) && s.label("backend") == Some(backend)
                    })
                    .unwrap_or_else(|| panic!("{source}: success for {family}/{backend}\n{body}"));
                assert_eq!(
                    success.value, 1.0,
                    "{source}: no tables is not a failure ({family}/{backend})"
                );
            }
        }
        assert!(
            !named(&samples, "iptables_chains")
                .iter()
                .any(|s| s.label("backend") == Some("legacy")),
            "{source}: no legacy tables were invented"
        );
    }
    let names = node.sh_ok("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names");
    assert_eq!(names.trim(), "", "reading created no legacy table");
}

/// `--rule-series=not-summarised` on a real kube-proxy node (the demo's generator, 3 Services of 2
/// endpoints, loaded with iptables-nft-restore): endpoint and Service chains get no rule series,
/// the fixed chains keep theirs, what was left out is counted, and the endpoint series remain.
#[test]
fn not_summarised_rule_series_keep_the_kubernetes_series() {
    use nfscope_annotate::kube_proxy_rules::{Node, RestoreTables, ServicePort, write_kube_proxy};
    if !root_or_skip("not_summarised_rule_series_keep_the_kubernetes_series") {
        return;
    }
    let services: Vec<ServicePort> = (0..3u8)
        .map(|i| ServicePort {
            name: format!("shop/svc{i}:http"),
            protocol: "tcp".into(),
            cluster_ip: format!("10.96.0.{}", 10 + i).parse().unwrap(),
            port: 80,
            node_port: None,
            loadbalancer_ip: None,
            endpoints: (1..=2u8)
                .map(|e| format!("10.244.{i}.{e}:8080").parse().unwrap())
                .collect(),
        })
        .collect();
    let node = Node {
        family: nfscope_ruleset::Family::Ipv4,
        pod_cidr: "10.244.0.0/16".into(),
    };
    let mut tables = RestoreTables::new();
    write_kube_proxy(&node, &services, &mut tables);
    let lab = TestNetns::new("rseries").expect("netns");
    let out = lab.exec_input(
        &["iptables-nft-restore"],
        &tables.write("# kube-proxy\n", None),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&["--netns", lab.name(), "--rule-series", "not-summarised"]);
    let (body, samples) = server.metrics();
    let rules = named(&samples, "iptables_rule_packets_total");
    assert!(
        rules
            .iter()
            .any(|s| s.label_str("chain") == "KUBE-POSTROUTING"),
        "fixed chains keep their series: {body}"
    );
    assert!(
        !rules.iter().any(|s| {
            let chain = s.label_str("chain");
            chain.starts_with("KUBE-SEP-") || chain.starts_with("KUBE-SVC-")
        }),
        "{body}"
    );
    // 3 Services: a KUBE-SERVICES portal rule, a KUBE-SVC chain of 1 + 2 rules (masquerade
    // check, two endpoint jumps) and two KUBE-SEP chains of 2 rules each.
    let left_out = named(&samples, "nfscope_rule_series_summarised");
    assert!(
        left_out.len() == 1 && left_out[0].value >= 3.0 * (1.0 + 2.0 + 4.0),
        "{body}"
    );
    let endpoints = named(&samples, "nfscope_kube_endpoint_new_connections_total");
    assert_eq!(endpoints.len(), 6, "{body}");
    assert!(
        named(&samples, "iptables_rules")
            .iter()
            .all(|s| !s.label_str("chain").starts_with("KUBE-SEP-")),
        "{body}"
    );
    assert!(promtool_check(&body).is_none_or(|(ok, out)| ok || panic!("{out}")));
}
