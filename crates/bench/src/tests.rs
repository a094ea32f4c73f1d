use std::collections::BTreeSet;

use nfscope_annotate::kube_proxy_rules::probability;

use super::*;

fn gen_with(services: usize, endpoints: usize, tweak: impl FnOnce(&mut GenOptions)) -> String {
    let mut opts = GenOptions::default();
    tweak(&mut opts);
    kube_proxy_ruleset(services, endpoints, &opts)
}

fn rule_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| naive::rule_body(l).is_some())
        .collect()
}

#[test]
fn chain_hashes_match_names_seen_on_a_real_k3s_node() {
    // corpus/k3s-node-iptables-save-c-counters-2022.rules, written by a real kube-proxy.
    assert_eq!(
        service_chain_name("default/kubernetes:https", "tcp"),
        "KUBE-SVC-NPX46M4PTMTKRN6Y"
    );
    assert_eq!(
        endpoint_chain_name("default/kubernetes:https", "tcp", "10.0.20.5:6443"),
        "KUBE-SEP-VD5CM36UTN4SSMVL"
    );
}

#[test]
fn probabilities_print_like_iptables_save() {
    // Values read back from `iptables-legacy-save` after loading kube-proxy's `%0.10f` text.
    assert_eq!(probability(3), "0.33333333349");
    assert_eq!(probability(2), "0.50000000000");
}

#[test]
fn output_is_deterministic_and_seed_dependent() {
    let a = gen_with(50, 3, |o| o.counters = true);
    let b = gen_with(50, 3, |o| o.counters = true);
    let c = gen_with(50, 3, |o| {
        o.counters = true;
        o.seed = 7;
    });
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(rule_lines(&a).len(), rule_lines(&c).len());
}

/// Rules one more service adds, by service shape (hand-derived from kube-proxy's layout).
#[test]
fn rules_per_service_follow_the_kube_proxy_layout() {
    let added = |tweak: fn(&mut GenOptions)| {
        count_rules(&gen_with(2, 3, tweak)) - count_rules(&gen_with(1, 3, tweak))
    };
    // ClusterIP: KUBE-SERVICES jump, SVC masquerade, 3 SVC→SEP jumps, 3 × (SEP masquerade + DNAT).
    assert_eq!(
        added(|o| {
            o.nodeport_percent = 0;
            o.loadbalancer_percent = 0;
        }),
        1 + 1 + 3 + 6
    );
    // NodePort adds the KUBE-NODEPORTS rule and the two-rule KUBE-EXT chain.
    assert_eq!(added(|o| o.loadbalancer_percent = 0), 11 + 3);
    // LoadBalancer adds the loadbalancer-IP jump in KUBE-SERVICES.
    assert_eq!(added(|o| o.loadbalancer_percent = 100), 14 + 1);
}

#[test]
fn default_mix_is_about_fifteen_rules_per_service() {
    let rules = count_rules(&kube_proxy_ruleset(1000, 3, &GenOptions::default()));
    assert!(
        (14_000..15_500).contains(&rules),
        "{rules} rules for 1,000 services"
    );
}

#[test]
fn load_balancing_uses_decreasing_probabilities_and_an_unconditional_last_jump() {
    let text = gen_with(1, 4, |_| {});
    let svc = service_chain_name("team-000/svc-0:http", "tcp");
    let jumps: Vec<&str> = rule_lines(&text)
        .into_iter()
        .filter(|l| l.starts_with(&format!("-A {svc} ")) && l.contains("-j KUBE-SEP-"))
        .collect();
    assert_eq!(jumps.len(), 4);
    for (line, n) in jumps.iter().zip([4, 3, 2]) {
        assert!(
            line.contains(&format!("--probability {}", probability(n))),
            "{line}"
        );
    }
    assert!(!jumps[3].contains("statistic"), "{}", jumps[3]);
}

#[test]
fn every_jump_target_chain_is_declared_in_its_table() {
    let text = gen_with(30, 3, |o| o.no_endpoints_percent = 20);
    let mut declared = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with('*') {
            declared.clear();
        } else if let Some(decl) = line.strip_prefix(':') {
            declared.insert(decl.split(' ').next().unwrap().to_owned());
        } else if let Some(rule) = naive::rule_body(line) {
            assert!(declared.contains(rule.chain), "undeclared chain in {line}");
            let target = rule
                .rest
                .split(" -j ")
                .nth(1)
                .and_then(|t| t.split(' ').next());
            if let Some(t) = target.filter(|t| t.starts_with("KUBE-")) {
                assert!(declared.contains(t), "undeclared target in {line}");
            }
        }
    }
}

#[test]
fn services_without_endpoints_get_filter_rejects_and_no_nat_chains() {
    let text = gen_with(100, 3, |o| o.no_endpoints_percent = 10);
    let rejects = text
        .lines()
        .filter(|l| l.starts_with("-A KUBE-SERVICES") && l.contains("has no endpoints"))
        .count();
    assert_eq!(rejects, 10);
    let svc_chains = text.lines().filter(|l| l.starts_with(":KUBE-SVC-")).count();
    assert_eq!(svc_chains, 90);
}

#[test]
fn counters_prefix_every_rule_only_when_asked() {
    let with = gen_with(10, 2, |o| o.counters = true);
    let without = gen_with(10, 2, |_| {});
    assert!(rule_lines(&with).iter().all(|l| l.starts_with('[')));
    assert!(rule_lines(&with).iter().any(|l| !l.starts_with("[0:0]")));
    assert!(rule_lines(&without).iter().all(|l| l.starts_with("-A ")));
}

#[test]
fn ipv6_variant_uses_v6_addresses_throughout() {
    let text = gen_with(10, 2, |o| o.ipv6 = true);
    assert!(
        !text.contains("/32") && !text.contains("10.96."),
        "v4 leftovers"
    );
    assert!(text.contains("-d fd00:10:96::a/128"));
    assert!(text.contains("--to-destination [fd00:10:240::2]:8080"));
    assert!(text.contains("icmp6-port-unreachable") || !text.contains("REJECT"));
}

#[test]
fn chain_names_fit_the_kernel_limit() {
    let text = gen_with(200, 3, |o| o.ipv6 = true);
    for line in text.lines().filter_map(|l| l.strip_prefix(':')) {
        let name = line.split(' ').next().unwrap();
        assert!(name.len() <= 28, "{name}");
    }
}

#[test]
fn naive_exposition_collapses_whitespace_and_escapes_quotes() {
    let dump = "*nat\n:OUTPUT ACCEPT [5:300]\n:KUBE-X - [0:0]\n[7:420] -A OUTPUT -m comment --comment \"a  b\" -j KUBE-X\n-A KUBE-X -j RETURN\nCOMMIT\n";
    let (text, rules) = naive::exposition_from_save(dump);
    assert_eq!(rules, 2);
    assert!(text.contains(
        "iptables_rule_packets_total{table=\"nat\",chain=\"OUTPUT\",rule=\"-m comment --comment \\\"a b\\\" -j KUBE-X\"} 7"
    ));
    assert!(text.contains(
        "iptables_rule_bytes_total{table=\"nat\",chain=\"KUBE-X\",rule=\"-j RETURN\"} 0"
    ));
    assert!(text.contains(
        "iptables_default_packets_total{table=\"nat\",chain=\"OUTPUT\",policy=\"ACCEPT\"} 5"
    ));
    assert!(!text.contains("chain=\"KUBE-X\",policy"));
}

#[test]
fn naive_rule_body_rejects_non_rule_lines() {
    assert!(naive::rule_body(":INPUT ACCEPT [0:0]").is_none());
    assert!(naive::rule_body("COMMIT").is_none());
    assert!(naive::rule_body("[1:2] COMMIT").is_none());
    let rule = naive::rule_body("[1:2] -A INPUT -j ACCEPT").unwrap();
    assert_eq!(
        (rule.counters, rule.chain, rule.rest),
        (Some((1, 2)), "INPUT", "-j ACCEPT")
    );
}
