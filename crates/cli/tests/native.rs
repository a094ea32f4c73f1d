//! Native nftables tables in `rules`, `lint`, `doctor`, `/api/rules` and `/metrics`: offline from
//! the real dumps in `testdata/corpus/nft/` (kube-proxy's nftables mode on k3s, Calico, moby),
//! and live from namespaces the root tests build, where `nft -j list ruleset` is the oracle.

mod support;

use std::process::{Command, Stdio};

use nfscope_ruleset::typed::NftRuleset;
use nfscope_ruleset::{NftLimits, parse_nft_json, parse_nft_text};
use nfscope_test_support::{
    TestNetns, named, nft_corpus_dir, promtool_check, root_or_skip, run, run_json, value_of,
};
use serde_json::Value;
use support::NFSCOPE;

fn nfscope(args: &[&str]) -> std::process::Output {
    run(NFSCOPE, args)
}

fn corpus(name: &str) -> String {
    nft_corpus_dir().join(name).display().to_string()
}

fn json_of(args: &[&str]) -> Value {
    run_json(NFSCOPE, args)
}

fn native_rulesets(doc: &Value) -> Vec<&Value> {
    doc["rulesets"]
        .as_array()
        .expect("rulesets")
        .iter()
        .filter(|r| r["backend"] == "nftables")
        .collect()
}

/// The typed model of a corpus file, whichever format.
fn model(name: &str) -> NftRuleset {
    let text = std::fs::read_to_string(nft_corpus_dir().join(name)).expect("corpus file");
    if name.ends_with(".json") {
        parse_nft_json(&text, &NftLimits::default()).expect("parses")
    } else {
        parse_nft_text(&text, &NftLimits::default()).expect("parses")
    }
}

#[test]
fn kube_proxy_nftables_mode_shows_as_a_ruleset_with_hooks_priorities_and_vmaps() {
    let file = corpus("k3s-kubeproxy-nftables-mode-table-2025.nft");
    let doc = json_of(&["rules", "--format", "json", "--rules", &file]);
    let native = native_rulesets(&doc);
    assert_eq!(native.len(), 1);
    assert_eq!(native[0]["family"], "ipv4");
    let table = &native[0]["tables"][0];
    assert_eq!(table["name"], "kube-proxy");
    let chains = table["chains"].as_array().unwrap();
    let want = model("k3s-kubeproxy-nftables-mode-table-2025.nft");
    let want_table = &want.tables[0];
    assert_eq!(chains.len(), want_table.chains.len());
    let fwd = chains
        .iter()
        .find(|c| c["name"] == "filter-forward")
        .expect("filter-forward");
    assert_eq!(
        (&fwd["type"], &fwd["hook"], &fwd["priority"], &fwd["policy"]),
        (
            &Value::from("filter"),
            &Value::from("forward"),
            &Value::from(-110),
            &Value::from("accept")
        )
    );
    let services = chains.iter().find(|c| c["name"] == "services").unwrap();
    assert_eq!(services["hook"], Value::Null, "a regular chain");
    assert_eq!(
        services["rules"][0]["rule"],
        "ip daddr . meta l4proto . th dport vmap @service-ips"
    );
    assert_eq!(services["rules"][0]["index"], 1);
    // Every rule of the dump is there, in order, with nft's own text.
    let rules: usize = chains
        .iter()
        .map(|c| c["rules"].as_array().unwrap().len())
        .sum();
    assert_eq!(rules, want.rule_count());
    // Sets and maps with nft's element counts.
    let sets = table["sets"].as_array().unwrap();
    for s in &want_table.sets {
        let got = sets.iter().find(|d| d["name"] == s.name.as_str()).unwrap();
        assert_eq!(got["elements"], s.elements.len(), "{}", s.name);
    }
    let service_ips = sets.iter().find(|d| d["name"] == "service-ips").unwrap();
    assert_eq!(service_ips["kind"], "vmap");
    assert_eq!(service_ips["key"], "ipv4_addr . inet_proto . inet_service");
    // Kubernetes meaning, in the iptables document's vocabulary.
    let svc = chains
        .iter()
        .find(|c| c["name"] == "service-2QRHZV4L-default/kubernetes/tcp/https")
        .unwrap();
    assert_eq!(svc["owner"], "kube-proxy");
    assert_eq!(svc["meaning"]["type"], "kube_service");
    assert_eq!(svc["meaning"]["service"]["name"], "kubernetes");
    assert_eq!(svc["summary"], "service default/kubernetes:https");
    let ep = chains
        .iter()
        .find(|c| c["name"] == "endpoint-T5HMVMWK-kube-system/kube-dns/tcp/dns-tcp__10.42.0.171/53")
        .unwrap();
    assert_eq!(
        ep["summary"],
        "service kube-system/kube-dns:dns-tcp endpoint 10.42.0.171:53"
    );
    assert_eq!(ep["rules"][1]["meaning"]["endpoint"], "10.42.0.171:53");
    // Map elements carry the Service they dispatch to (or lack endpoints for), in element order.
    let meanings = service_ips["meanings"].as_array().unwrap();
    assert_eq!(
        meanings.len(),
        service_ips["elements"],
        "every Service IP element has one"
    );
    let dns = meanings
        .iter()
        .find(|m| m["element"] == "10.43.0.10 . udp . 53")
        .expect("kube-dns element");
    assert_eq!(
        dns["summary"],
        "service kube-system/kube-dns:dns cluster IP"
    );
    assert_eq!(dns["meaning"]["type"], "kube_service");
    let no_ep = sets
        .iter()
        .find(|d| d["name"] == "no-endpoint-services")
        .unwrap();
    assert_eq!(
        no_ep["meanings"][0]["summary"],
        "service riset/otelcol-opentelemetry-collector:otlp has no endpoints"
    );
    let plain = sets.iter().find(|d| d["name"] == "cluster-ips").unwrap();
    assert_eq!(
        plain["meanings"],
        Value::Array(Vec::new()),
        "a plain set has none"
    );
    let reject = chains.iter().find(|c| c["name"] == "reject-chain").unwrap();
    assert_eq!(reject["meaning"]["type"], "role");
    assert_eq!(services["owner"], "kube-proxy");
    // The text view names owner and meaning on chain headings.
    let text = nfscope(&["rules", "--rules", &file]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Chain service-2QRHZV4L-default/kubernetes/tcp/https (2 rules)  [kube-proxy]  # service default/kubernetes:https"),
        "{text}"
    );
    assert!(
        text.contains("    10.43.0.10 . udp . 53  # service kube-system/kube-dns:dns cluster IP\n"),
        "{text}"
    );
}

#[test]
fn moby_and_unknown_tables_get_owners() {
    let doc = json_of(&[
        "rules",
        "--format",
        "json",
        "--rules",
        &corpus("nftparse-moby-usernet-portmap.nft"),
    ]);
    let native = native_rulesets(&doc);
    let rules: Vec<&Value> = native
        .iter()
        .flat_map(|r| r["tables"].as_array().unwrap())
        .filter(|t| t["name"] == "docker-bridges")
        .flat_map(|t| t["chains"].as_array().unwrap())
        .flat_map(|c| c["rules"].as_array().unwrap())
        .collect();
    assert!(!rules.is_empty());
    assert!(rules.iter().all(|r| r["owner"] == "docker"));
    assert!(
        rules
            .iter()
            .any(|r| r["summary"] == "docker port 8080 -> 192.0.2.2:80"),
        "the published port's DNAT"
    );
    let doc = json_of(&[
        "rules",
        "--format",
        "json",
        "--rules",
        &corpus("nftparse-upstream-sample-ruleset.nft"),
    ]);
    for r in native_rulesets(&doc) {
        for t in r["tables"].as_array().unwrap() {
            for c in t["chains"].as_array().unwrap() {
                assert_eq!(c["owner"], "other");
                assert_eq!(c["meaning"], Value::Null);
            }
        }
    }
}

#[test]
fn text_and_json_dumps_of_one_ruleset_show_the_same_rules() {
    for base in [
        "nftparse-calico-felix-fv-cali-nftables-dump",
        "nftparse-moby-usernet-portmap",
        "nftparse-kube-proxy-overall",
    ] {
        let from_text = json_of(&[
            "rules",
            "--format",
            "json",
            "--rules",
            &corpus(&format!("{base}.nft")),
        ]);
        let from_json = json_of(&[
            "rules",
            "--format",
            "json",
            "--rules",
            &corpus(&format!("{base}.json")),
        ]);
        let strip = |doc: &Value| -> Vec<(String, String, String, String)> {
            native_rulesets(doc)
                .iter()
                .flat_map(|r| r["tables"].as_array().unwrap().iter())
                .flat_map(|t| {
                    t["chains"].as_array().unwrap().iter().flat_map(move |c| {
                        c["rules"].as_array().unwrap().iter().map(move |r| {
                            (
                                t["name"].to_string(),
                                c["name"].to_string(),
                                r["rule"].to_string(),
                                r["rule_id"].to_string(),
                            )
                        })
                    })
                })
                .collect()
        };
        let (a, b) = (strip(&from_text), strip(&from_json));
        assert!(!a.is_empty(), "{base}: rules shown");
        assert_eq!(a, b, "{base}: text and JSON dumps agree");
    }
}

#[test]
fn an_iptables_dump_and_an_nft_dump_are_shown_together() {
    let ipt = nfscope_test_support::corpus_path("calico-felix-fv-iptables-dump.rules");
    let doc = json_of(&[
        "rules",
        "--format",
        "json",
        "--rules",
        ipt.to_str().unwrap(),
        "--rules",
        &corpus("moby-nftabler-golden-routed-icc-masq-2026.nft"),
    ]);
    let backends: Vec<&str> = doc["rulesets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    assert!(backends.contains(&"nftables"), "{backends:?}");
    assert!(backends.iter().any(|b| *b != "nftables"), "{backends:?}");
    let kinds: Vec<&str> = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rules", "native_rules"]);

    let text = nfscope(&[
        "rules",
        "--rules",
        &corpus("moby-nftabler-golden-routed-icc-masq-2026.nft"),
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("nftables ("), "{text}");
    assert!(
        text.contains("(type filter hook forward priority 0; policy accept)"),
        "{text}"
    );
}

/// `--backend` and `--family` filter native tables too: `nftables` keeps only them, `nft`/`legacy`
/// none of them, and a family keeps its own tables plus `inet` ones.
#[test]
fn backend_and_family_filter_native_tables() {
    let ipt = nfscope_test_support::corpus_path("calico-felix-fv-iptables-dump.rules");
    let nft = corpus("rhel8-firewalld-libvirt-iptables-nft-2019.nft");
    let shown = |extra: &[&str]| -> Vec<(String, String)> {
        let mut args = vec![
            "rules",
            "--format",
            "json",
            "--rules",
            ipt.to_str().unwrap(),
        ];
        args.extend(["--rules", nft.as_str()]);
        args.extend(extra);
        json_of(&args)["rulesets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_owned();
                (s("family"), s("backend"))
            })
            .collect()
    };
    let all = shown(&[]);
    assert!(
        all.iter().any(|(f, b)| f == "bridge" && b == "nftables"),
        "{all:?}"
    );
    assert!(all.iter().any(|(_, b)| b != "nftables"), "{all:?}");
    let native = shown(&["--backend", "nftables"]);
    assert!(
        !native.is_empty() && native.iter().all(|(_, b)| b == "nftables"),
        "{native:?}"
    );
    let iptables = shown(&["--backend", "nft"]);
    assert!(
        !iptables.is_empty() && iptables.iter().all(|(_, b)| b != "nftables"),
        "{iptables:?}"
    );
    let v6 = shown(&["--backend", "nftables", "--family", "ipv6"]);
    let families: Vec<&str> = v6.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(families, ["ipv6", "inet"], "{v6:?}");
    // lint reads the same filter: native-only lints no iptables ruleset (moby's golden has findings).
    let moby = corpus("moby-nftabler-golden-internal-noicc-2026.nft");
    let lint = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["lint", "--format", "json", "--rules", ipt.to_str().unwrap()];
        args.extend(["--rules", moby.as_str()]);
        args.extend(extra);
        let out = nfscope(&args);
        let doc: Value = serde_json::from_slice(&out.stdout).expect("lint JSON");
        doc["findings"].as_array().expect("findings").clone()
    };
    let native_finding = |f: &Value| f["nftables"].is_string();
    let everything = lint(&[]);
    assert!(everything.iter().any(native_finding), "{everything:?}");
    assert!(!everything.iter().all(native_finding), "{everything:?}");
    let native = lint(&["--backend", "nftables"]);
    assert!(
        !native.is_empty() && native.iter().all(native_finding),
        "{native:?}"
    );
    let iptables = lint(&["--backend", "legacy"]);
    assert!(
        !iptables.is_empty() && !iptables.iter().any(native_finding),
        "{iptables:?}"
    );
}

#[test]
fn a_broken_nft_dump_is_an_error_at_file_line_column() {
    let dir = std::env::temp_dir().join(format!("nfscope-native-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.nft");
    std::fs::write(
        &path,
        "table ip t {\n\tchain c {\n\t\ttype filter hook nowhere priority 0;\n\t}\n}\n",
    )
    .unwrap();
    let out = nfscope(&["rules", "--rules", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:", path.display())),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A namespace with an iptables-nft rule and a native table that has rules, a set and a map.
fn native_lab() -> TestNetns {
    let ns = TestNetns::new("clinative").expect("create a test namespace");
    ns.sh_ok("ip link set lo up");
    ns.sh_ok("iptables-nft -A INPUT -p tcp --dport 9 -m comment --comment 'iptables rule' -j DROP");
    ns.exec_input_ok(
        &["nft", "-f", "-"],
        "table inet guard {\n\
         \tset blocked { type ipv4_addr; flags interval; elements = { 192.0.2.0/24, 198.51.100.7 } }\n\
         \tchain input {\n\t\ttype filter hook input priority -10; policy accept;\n\
         \t\tip saddr @blocked counter drop comment \"blocked sources\"\n\
         \t\tmeta l4proto icmp counter accept comment \"pings\"\n\t}\n\
         \tchain unused {\n\t\ttcp dport 1 drop\n\t}\n}\n",
    );
    ns.sh_ok("ping -q -c 3 -i 0.2 -W 1 127.0.0.1 >/dev/null");
    ns
}

#[test]
fn live_rules_show_native_tables_beside_iptables_nft() {
    if !root_or_skip("live_rules_show_native_tables") {
        return;
    }
    let ns = native_lab();
    let doc = json_of(&["rules", "--netns", ns.name(), "--format", "json"]);
    let native = native_rulesets(&doc);
    assert_eq!(native.len(), 1, "one family: inet");
    assert_eq!(native[0]["family"], "inet");
    let names: Vec<&str> = native[0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["guard"],
        "iptables-nft's filter table is not native"
    );
    let input = &native[0]["tables"][0]["chains"][0];
    assert_eq!(
        (&input["hook"], &input["priority"]),
        (&Value::from("input"), &Value::from(-10))
    );
    let pings = &input["rules"][1];
    assert_eq!(
        pings["rule"],
        "meta l4proto icmp counter accept comment \"pings\""
    );
    assert_eq!(pings["packets"], 6, "3 echo requests and 3 replies on lo");
    assert!(pings["handle"].as_u64().is_some());
    let set = &native[0]["tables"][0]["sets"][0];
    assert_eq!(
        (&set["name"], &set["elements"]),
        (&Value::from("blocked"), &Value::from(2))
    );
    // The iptables-nft rule is still an iptables rule.
    assert!(doc["rulesets"].as_array().unwrap().iter().any(|r| {
        r["backend"] == "nft"
            && r["tables"][0]["chains"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| {
                    c["rules"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r["comment"] == "iptables rule")
                })
    }));
}

#[test]
fn metrics_and_api_rules_carry_native_rule_text_and_nft_set_sizes() {
    if !root_or_skip("metrics_carry_native_rule_text") {
        return;
    }
    let ns = native_lab();
    let server = support::Server::start(&["--netns", ns.name()]);
    let (body, samples) = server.metrics();
    let drop = named(&samples, "nftables_rule_packets_total")
        .into_iter()
        .find(|s| s.label_str("comment") == "blocked sources")
        .unwrap_or_else(|| panic!("the counted drop rule:\n{body}"));
    assert_eq!(
        drop.label_str("rule"),
        "ip saddr @blocked counter drop comment \"blocked sources\""
    );
    assert_eq!(drop.label_str("family"), "inet");
    assert_eq!(drop.label_str("rule_id").len(), 16);
    assert!(drop.label("handle").is_some());
    let pings = named(&samples, "nftables_rule_packets_total")
        .into_iter()
        .find(|s| s.label_str("comment") == "pings")
        .expect("the pings rule");
    assert_eq!(pings.value, 6.0, "3 echo requests and 3 replies on lo");
    let blocked = named(&samples, "nftables_set_elements")
        .into_iter()
        .find(|s| s.label_str("set") == "blocked")
        .expect("the set");
    assert_eq!(
        blocked.value, 2.0,
        "a prefix and an address: 2 elements, not 4"
    );
    let (ok, report) = promtool_check(&body).expect("promtool installed");
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );

    // Counters move without a re-read of the text; a new rule causes exactly one.
    let reads = |samples: &[nfscope_test_support::Sample]| {
        value_of(samples, "nfscope_nftables_text_reads_total")
    };
    let first = reads(&samples);
    assert_eq!(first, 1.0);
    ns.sh_ok("ping -q -c 2 -i 0.2 -W 1 127.0.0.1 >/dev/null");
    let (_, samples) = wait_for_scrape(&server, |s| {
        named(s, "nftables_rule_packets_total")
            .iter()
            .any(|x| x.label_str("comment") == "pings" && x.value == 10.0)
    });
    assert_eq!(reads(&samples), 1.0, "traffic is not a ruleset change");
    ns.sh_ok("nft add rule inet guard unused udp dport 2 counter drop comment later");
    let (_, samples) = wait_for_scrape(&server, |s| {
        named(s, "nftables_rule_packets_total")
            .iter()
            .any(|x| x.label_str("comment") == "later")
    });
    assert_eq!(reads(&samples), 2.0, "one re-read for one change");
    let later = named(&samples, "nftables_rule_packets_total")
        .into_iter()
        .find(|x| x.label_str("comment") == "later")
        .unwrap();
    assert_eq!(
        later.label_str("rule"),
        "udp dport 2 counter drop comment \"later\""
    );

    // The background lint counts native findings too (chain `unused` is reached by nothing).
    let (_, samples) = wait_for_scrape(&server, |s| {
        named(s, "nfscope_lint_findings").iter().any(|x| {
            x.label_str("id") == "unreferenced-chain"
                && x.label_str("severity") == "warning"
                && x.value == 1.0
        })
    });
    assert!(!named(&samples, "nfscope_lint_findings").is_empty());

    let (status, api) = server.get("/api/rules");
    assert_eq!(status, 200, "{api}");
    let doc: Value = serde_json::from_str(&api).expect("JSON");
    let native = native_rulesets(&doc);
    assert_eq!(native.len(), 1, "{api}");
    assert_eq!(native[0]["tables"][0]["name"], "guard");
}

/// Scrapes until `done` holds (the server caches a collection for a short while).
fn wait_for_scrape(
    server: &support::Server,
    done: impl Fn(&[nfscope_test_support::Sample]) -> bool,
) -> (String, Vec<nfscope_test_support::Sample>) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (body, samples) = server.metrics();
        if done(&samples) {
            return (body, samples);
        }
        assert!(
            std::time::Instant::now() < until,
            "condition not met in 20 s:\n{body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn lint_reads_nft_dumps_and_counts_their_rulesets() {
    let k3s = nfscope(&[
        "lint",
        "--rules",
        &corpus("k3s-kubeproxy-nftables-mode-table-2025.nft"),
    ]);
    let text = String::from_utf8_lossy(&k3s.stdout);
    assert!(k3s.status.success(), "{text}");
    assert!(
        text.contains("1 ruleset(s), 77 rule(s) checked"),
        "kube-proxy's own table is clean: {text}"
    );

    let doc = json_of(&[
        "lint",
        "--format",
        "json",
        "--rules",
        &corpus("nftparse-calico-felix-fv-cali-nftables-dump.nft"),
    ]);
    let findings = doc["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["nftables"] == "ip"), "{doc}");
    // Calico's empty endpoint chains are info, and the mark re-tests after its endpoint jumps
    // are not shadowed (the jump may set the mark).
    assert!(findings.iter().any(|f| f["id"] == "empty-chain"
        && f["chain"] == "filter-cali-to-host-endpoint"
        && f["severity"] == "info"));
    assert!(
        !findings.iter().any(|f| f["id"] == "shadowed-rule"),
        "{doc}"
    );
    assert_eq!(doc["summary"]["rules"], 62);

    let dir = std::env::temp_dir().join(format!("nfscope-native-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dup.nft");
    std::fs::write(
        &path,
        "table inet f {\n\tchain in {\n\t\ttype filter hook input priority 0; policy drop;\n\
         \t\ttcp dport 22 accept\n\t\ttcp dport 22 accept\n\t\tiifname vmap { \"eth0\" : jump gone }\n\t}\n}\n",
    )
    .unwrap();
    let out = nfscope(&[
        "lint",
        "--rules",
        path.to_str().unwrap(),
        "--fail-on",
        "warning",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("warning duplicate-rule inet/nftables f in #2"),
        "{text}"
    );
    assert!(
        text.contains("error   missing-jump-target inet/nftables f in #3"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn doctor_counts_native_tables_and_warns_when_two_systems_program_one_hook() {
    if !root_or_skip("doctor_native_backends") {
        return;
    }
    let doctor = |ns: &TestNetns| -> Value {
        let out = Command::new(NFSCOPE)
            .args(["doctor", "--netns", ns.name(), "--format", "json"])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run nfscope doctor");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let backends = |report: &Value| -> Value {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "backends")
            .cloned()
            .expect("a backends check")
    };
    // kube-proxy's nftables layout (filter-forward at -110) and nothing else: one system per hook.
    let ns = TestNetns::new("clidoctor").expect("create a test namespace");
    ns.exec_input_ok(
        &["nft", "-f", "-"],
        "table ip kube-proxy {\n\tchain filter-forward {\n\t\ttype filter hook forward priority -110; policy accept;\n\
         \t\tct state new jump service-endpoints-check\n\t}\n\tchain service-endpoints-check {\n\t\tip daddr 10.43.0.9 reject\n\t}\n}\n",
    );
    let report = doctor(&ns);
    let check = backends(&report);
    assert_eq!(check["status"], "pass", "{check}");
    let evidence = check["evidence"].to_string();
    assert!(
        evidence.contains("native nftables: 1 table(s), 2 rule(s) (ip kube-proxy)"),
        "{evidence}"
    );
    // A leftover iptables-mode KUBE-* chain at the same hook: both run.
    ns.sh_ok("iptables-nft -N KUBE-FORWARD && iptables-nft -A FORWARD -j KUBE-FORWARD && iptables-nft -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP");
    let report = doctor(&ns);
    let check = backends(&report);
    assert_eq!(check["status"], "warn", "{check}");
    let summary = check["summary"].as_str().unwrap();
    assert!(summary.contains("ipv4 forward"), "{summary}");
    assert!(summary.contains("KUBE-*"), "{summary}");
    assert!(
        check["evidence"]
            .to_string()
            .contains("ipv4 forward: iptables-nft filter, nftables ip kube-proxy"),
        "{check}"
    );
}

/// Issue 11's first case, live: a one-rule native table drops a port. The kernel is the oracle:
/// the client's connection to that port times out (to another port it is refused at once) and
/// the rule's counter moved; the live trace must name that rule, not answer ACCEPT.
#[test]
fn live_trace_names_the_native_rule_that_drops() {
    if !root_or_skip("live_trace_names_the_native_rule_that_drops") {
        return;
    }
    let ns = TestNetns::new("clinftdrop").expect("create a test namespace");
    let client = TestNetns::new("clinftcli").expect("create a client namespace");
    let (node_if, _) = ns
        .veth_to(&client, &["10.99.0.1/24"], &["10.99.0.2/24"])
        .expect("veth pair");
    ns.exec_input_ok(
        &["nft", "-f", "-"],
        "table ip s {\n\tchain i {\n\t\ttype filter hook input priority 0;\n\
         \t\ttcp dport 5555 counter drop\n\t}\n}\n",
    );
    let status = |port: u16| {
        client.sh(&format!(
            "timeout 2 bash -c 'echo > /dev/tcp/10.99.0.1/{port}'; echo $?"
        ))
    };
    let dropped = String::from_utf8_lossy(&status(5555).stdout)
        .trim()
        .to_owned();
    let refused = String::from_utf8_lossy(&status(5556).stdout)
        .trim()
        .to_owned();
    assert_eq!(
        (dropped.as_str(), refused.as_str()),
        ("124", "1"),
        "client saw"
    );
    let listed = ns.sh_ok("nft list table ip s");
    assert!(
        !listed.contains("packets 0 "),
        "the kernel's counter moved: {listed}"
    );

    let trace = json_of(&[
        "trace",
        "--netns",
        ns.name(),
        "--src",
        "10.99.0.2",
        "--dst",
        "10.99.0.1",
        "--proto",
        "tcp",
        "--sport",
        "40000",
        "--dport",
        "5555",
        "--in",
        &node_if,
        "--format",
        "json",
    ]);
    assert_eq!(trace["verdict"], "DROP", "{trace:#}");
    assert_eq!(trace["certainty"], "MUST", "{trace:#}");
    let by = &trace["decided_by"];
    assert_eq!(
        (
            &by["backend"],
            &by["table"],
            &by["chain"],
            &by["rule_index"]
        ),
        (
            &Value::from("nftables"),
            &Value::from("s"),
            &Value::from("i"),
            &Value::from(1)
        ),
        "{trace:#}"
    );
    // Another port passes the same table: the answer is not a blanket DROP.
    let other = json_of(&[
        "trace",
        "--netns",
        ns.name(),
        "--src",
        "10.99.0.2",
        "--dst",
        "10.99.0.1",
        "--proto",
        "tcp",
        "--sport",
        "40000",
        "--dport",
        "5556",
        "--in",
        &node_if,
        "--format",
        "json",
    ]);
    assert_eq!(other["verdict"], "ACCEPT", "{other:#}");
}
