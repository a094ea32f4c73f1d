//! Kubernetes series on real dumps, checked against what the dumps' own rules say (comments,
//! DNAT destinations), not against the annotator's output.

mod common;

use std::collections::BTreeMap;

use common::{add_counters, parse, snapshot_of};
use nfscope_exporter::{ExportOptions, SelfMetrics, encode_metrics};
use nfscope_ruleset::Ruleset;
use nfscope_test_support::{Sample, assert_promtool_clean, corpus_file, named, parse_exposition};

fn encode(ruleset: &Ruleset) -> (String, Vec<Sample>) {
    let annotations = vec![nfscope_annotate::annotate(ruleset)];
    let snapshot = snapshot_of(ruleset.clone());
    let text = encode_metrics(
        &snapshot,
        &annotations,
        &SelfMetrics::default(),
        &ExportOptions::default(),
    );
    let samples = parse_exposition(&text);
    (text, samples)
}

fn labels(s: &Sample, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            s.label(k)
                .unwrap_or_else(|| panic!("{k} missing in {s:?}"))
                .to_owned()
        })
        .collect()
}

/// Every (rule comment, rule, chain name, table name) of a ruleset with counters.
fn rules_of(ruleset: &Ruleset) -> impl Iterator<Item = (&str, &str, &nfscope_ruleset::Rule)> {
    ruleset.tables.iter().flat_map(|t| {
        t.chains.iter().flat_map(move |c| {
            c.rules
                .iter()
                .map(move |r| (t.name.as_str(), c.name.as_str(), r))
        })
    })
}

#[test]
fn endpoint_series_match_kube_sep_dnat_rules() {
    let mut ruleset = parse(
        "restore",
        &corpus_file("k8s-proxier-test-overall-restore-input.rules"),
    );
    add_counters(&mut ruleset);
    // Expected, straight from the rules: comment "ns/svc:port" and --to-destination of each DNAT.
    let mut expected: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (table, chain, rule) in rules_of(&ruleset) {
        let Some(target) = &rule.spec.target else {
            continue;
        };
        if table != "nat" || !chain.starts_with("KUBE-SEP-") || target.name != "DNAT" {
            continue;
        }
        let comment = rule
            .spec
            .comments()
            .next()
            .expect("kube-proxy SEP rules carry a comment");
        let (ns, rest) = comment.split_once('/').expect("ns/svc");
        let (svc, port) = rest.split_once(':').unwrap_or((rest, ""));
        let dest = target.value("to-destination").expect("DNAT destination");
        let key = vec![ns.into(), svc.into(), port.into(), dest.into()];
        *expected.entry(key).or_default() += rule.counters.expect("counters").packets;
    }
    assert!(
        expected.len() >= 6,
        "the dump has six KUBE-SEP DNAT rules: {expected:?}"
    );

    let (text, samples) = encode(&ruleset);
    assert_promtool_clean("endpoints", &text);
    let got: BTreeMap<Vec<String>, u64> =
        named(&samples, "nfscope_kube_endpoint_new_connections_total")
            .into_iter()
            .map(|s| {
                (
                    labels(s, &["namespace", "service", "port", "endpoint"]),
                    s.value_u64(),
                )
            })
            .collect();
    assert_eq!(got, expected);
}

#[test]
fn k3s_dump_with_real_counters_has_the_kubernetes_endpoint_and_no_endpoint_services() {
    let ruleset = parse(
        "k3s",
        &corpus_file("k3s-node-iptables-save-c-counters-2022.rules"),
    );
    let (_, samples) = encode(&ruleset);
    let endpoints = named(&samples, "nfscope_kube_endpoint_new_connections_total");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        labels(endpoints[0], &["namespace", "service", "port", "endpoint"]),
        ["default", "kubernetes", "https", "10.0.20.5:6443"]
    );
    let no_ep = named(
        &samples,
        "nfscope_kube_service_no_endpoints_rejected_packets_total",
    );
    let mut got: Vec<Vec<String>> = no_ep
        .iter()
        .map(|s| labels(s, &["namespace", "service", "port", "local_only"]))
        .collect();
    got.sort();
    let want = [
        ["kube-system", "kube-dns", "dns"],
        ["kube-system", "kube-dns", "dns-tcp"],
        ["kube-system", "kube-dns", "metrics"],
        ["kube-system", "metrics-server", "https"],
    ];
    let want: Vec<Vec<String>> = want
        .iter()
        .map(|w| {
            w.iter()
                .map(|s| s.to_string())
                .chain(["false".to_owned()])
                .collect()
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn no_endpoint_series_carry_the_reject_rule_counters() {
    let mut ruleset = parse(
        "k3s",
        &corpus_file("k3s-node-iptables-save-c-counters-2022.rules"),
    );
    add_counters(&mut ruleset);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (_, _, rule) in rules_of(&ruleset) {
        if let Some(svc) = rule
            .spec
            .comments()
            .find_map(|c| c.strip_suffix(" has no endpoints"))
        {
            *expected.entry(svc.to_owned()).or_default() +=
                rule.counters.expect("counters").packets;
        }
    }
    let (_, samples) = encode(&ruleset);
    let got: BTreeMap<String, u64> = named(
        &samples,
        "nfscope_kube_service_no_endpoints_rejected_packets_total",
    )
    .into_iter()
    .map(|s| {
        (
            format!(
                "{}/{}:{}",
                s.label("namespace").unwrap_or(""),
                s.label("service").unwrap_or(""),
                s.label("port").unwrap_or("")
            ),
            s.value_u64(),
        )
    })
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn kube_router_pod_rejects_are_summed_per_pod() {
    let mut ruleset = parse(
        "kube-router",
        &corpus_file("k3s-kube-router-netpol-flannel-nft-2026.rules"),
    );
    add_counters(&mut ruleset);
    // "rule to REJECT traffic destined for POD name:<pod> namespace: <ns>" in KUBE-POD-FW-* chains.
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (_, chain, rule) in rules_of(&ruleset) {
        let Some(rest) = rule
            .spec
            .comments()
            .find_map(|c| c.strip_prefix("rule to REJECT traffic destined for POD name:"))
        else {
            continue;
        };
        let (pod, ns) = rest.split_once(" namespace: ").expect("pod and namespace");
        assert!(chain.starts_with("KUBE-POD-FW-"), "{chain}");
        *expected
            .entry((ns.trim().to_owned(), pod.trim().to_owned()))
            .or_default() += rule.counters.expect("c").packets;
    }
    assert!(expected.len() >= 5, "{expected:?}");
    let (text, samples) = encode(&ruleset);
    assert_promtool_clean("kube-router", &text);
    let got: BTreeMap<(String, String), u64> =
        named(&samples, "nfscope_kube_router_pod_rejected_packets_total")
            .into_iter()
            .map(|s| {
                (
                    (
                        s.label("namespace").unwrap_or("").to_owned(),
                        s.label("pod").unwrap_or("").to_owned(),
                    ),
                    s.value_u64(),
                )
            })
            .collect();
    for (pod, packets) in &expected {
        let value = got
            .get(pod)
            .unwrap_or_else(|| panic!("no series for {pod:?}; got {got:?}"));
        assert!(
            value >= packets,
            "{pod:?}: {value} < reject rule's {packets}"
        );
    }
}

#[test]
fn calico_policy_drop_is_counted_per_policy_and_direction() {
    // The calico-accountant fragment (real counters) wrapped into a complete filter table.
    let fragment = corpus_file("fragments/calico-accountant-cali-fw-tw-counters.rules");
    let mut chains: Vec<&str> = fragment
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    chains.dedup();
    let declared: String = chains.iter().map(|c| format!(":{c} - [0:0]\n")).collect();
    let text = format!(
        "# Generated by iptables-save v1.8.4\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         {declared}:cali-pi-_hvIhg5e42MGXRa9paIF - [0:0]\n:cali-pri-kns.default - [0:0]\n:cali-pro-kns.default - [0:0]\n\
         :cali-po-_hvIhg5e42MGXRa9paIF - [0:0]\n{fragment}COMMIT\n"
    );
    let ruleset = parse("calico", &text);
    let (text, samples) = encode(&ruleset);
    assert_promtool_clean("calico", &text);
    let calico = named(&samples, "nfscope_calico_policy_packets_total");
    let find = |name: &str, verdict: &str| {
        calico
            .iter()
            .find(|s| {
                s.label("name").is_some_and(|n| n.contains(name))
                    && s.label("verdict") == Some(verdict)
            })
            .unwrap_or_else(|| panic!("no {verdict} series for {name}: {calico:?}"))
    };
    let drop = find("iIL2GVSReX3hYOgY4sn", "deny");
    assert_eq!(
        labels(drop, &["kind", "direction", "verdict"]),
        ["policy", "egress", "deny"]
    );
    assert_eq!(drop.value_u64(), 1_127_764);
    // Accepts are counted at the endpoint chain's "Return if policy accepted", named after the
    // policy whose jump precedes it (the fragment's ingress policy accepted 3 packets).
    let accept = find("hvIhg5e42MGXRa9paIF", "accept");
    assert_eq!(
        labels(accept, &["kind", "direction", "verdict"]),
        ["policy", "ingress", "accept"]
    );
    assert_eq!(accept.value_u64(), 3);
}
