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

mod kube_proxy_shape {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use nfscope_annotate::kube_proxy_rules::ServicePort;
    use nfscope_ruleset::{ParseOptions, parse_ruleset};

    use super::*;
    use crate::kube_proxy_shape::{service_lines, service_port_name};

    const PROXIER_TEST: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/corpus/k8s-proxier-test-overall-restore-input.rules"
    ));

    fn port(name: &str, vip: &str, node_port: Option<u16>, endpoints: &[&str]) -> ServicePort {
        ServicePort {
            name: name.to_owned(),
            protocol: "tcp".to_owned(),
            cluster_ip: vip.parse().expect("vip"),
            port: 80,
            node_port,
            loadbalancer_ip: None,
            endpoints: endpoints
                .iter()
                .map(|e| e.parse::<SocketAddr>().expect("endpoint"))
                .collect(),
        }
    }

    /// Every line this shape writes for three services of kube-proxy's `TestOverallIPTablesRules`
    /// is, byte for byte, a line of kube-proxy's own restore input for them: chain hashes,
    /// comments, argument order, probabilities.
    #[test]
    fn service_lines_are_kube_proxys_own_for_services_of_its_test() {
        let corpus: Vec<&str> = PROXIER_TEST.lines().collect();
        let services = [
            port("ns1/svc1:p80", "172.30.0.41", None, &["10.180.0.1:80"]),
            port(
                "ns3/svc3:p80",
                "172.30.0.43",
                Some(3003),
                &["10.180.0.3:80"],
            ),
            port(
                "ns4/svc4:p80",
                "172.30.0.44",
                None,
                &["10.180.0.4:80", "10.180.0.5:80"],
            ),
        ];
        let mut checked = 0;
        for svc in &services {
            let lines = service_lines(svc, "10.0.0.0/8");
            assert!(lines.len() >= 4, "{lines:?}");
            for line in lines {
                assert!(
                    corpus.contains(&line.as_str()),
                    "not in kube-proxy's restore input: {line}"
                );
                checked += 1;
            }
        }
        // ns1: 1 + 1 + 1 + 2; ns3: the same + node port + 2 external; ns4: 1 + 1 + 2 + 4.
        assert_eq!(checked, 5 + 8 + 8);
        assert!(PROXIER_TEST.contains(":KUBE-SVC-XPGD46QRK7WJZT7O"));
        assert_eq!(
            service_chain_name("ns1/svc1:p80", "tcp"),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            endpoint_chain_name("ns4/svc4:p80", "tcp", "10.180.0.5:80"),
            "KUBE-SEP-C6EBXVWJJZMIWKLZ"
        );
        assert_eq!(
            external_chain_name("ns3/svc3:p80", "tcp"),
            "KUBE-EXT-X27LE4BHSL4DOUIK"
        );
    }

    fn chain_sizes(text: &str) -> BTreeMap<(String, String), usize> {
        let ruleset = parse_ruleset(text, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("parse error {e}"));
        ruleset
            .tables
            .iter()
            .flat_map(|t| {
                t.chains
                    .iter()
                    .map(move |c| ((t.name.clone(), c.name.clone()), c.rules.len()))
            })
            .collect()
    }

    /// Both shapes of the same services parse with nfscope's parser into the same number of
    /// rules and chains, and the same rules per fixed chain; only names and order differ.
    #[test]
    fn kube_proxy_shape_parses_with_the_generated_shapes_rule_and_chain_counts() {
        for ipv6 in [false, true] {
            let opts = GenOptions {
                counters: true,
                ipv6,
                no_endpoints_percent: 10,
                ..GenOptions::default()
            };
            let generated = kube_proxy_ruleset(200, 3, &opts);
            let shaped = kube_proxy_restore_input(200, 3, &opts);
            assert_ne!(generated, shaped);
            assert_eq!(count_rules(&generated), count_rules(&shaped));
            let (g, k) = (chain_sizes(&generated), chain_sizes(&shaped));
            assert_eq!(g.len(), k.len());
            assert_eq!(
                g.values().sum::<usize>(),
                k.values().sum::<usize>(),
                "ipv6={ipv6}"
            );
            assert_eq!(k.values().sum::<usize>(), count_rules(&shaped));
            for fixed in [
                "KUBE-SERVICES",
                "KUBE-NODEPORTS",
                "KUBE-POSTROUTING",
                "FORWARD",
            ] {
                for table in ["filter", "nat"] {
                    let key = (table.to_owned(), fixed.to_owned());
                    assert_eq!(g.get(&key), k.get(&key), "{table} {fixed}");
                }
            }
        }
    }

    #[test]
    fn kube_proxy_shape_uses_cluster_names_unnamed_ports_and_kube_proxys_order() {
        let text = kube_proxy_restore_input(50, 3, &GenOptions::default());
        let names: std::collections::HashSet<String> = (0..5000).map(service_port_name).collect();
        assert_eq!(names.len(), 5000, "service port names are unique");
        assert!(
            service_port_name(0).split_once(':').is_none(),
            "unnamed port"
        );
        let svc = service_chain_name(&service_port_name(1), "tcp");
        assert!(text.contains(&format!(
            "-m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {} --dport 443 -j {svc}",
            service_port_name(1),
            cluster_ip(1, false)
        )));
        // Chains are declared as kube-proxy meets them, not sorted.
        let decls: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(":KUBE-SVC-"))
            .collect();
        let mut sorted_decls = decls.clone();
        sorted_decls.sort_unstable();
        assert_eq!(decls.len(), 50);
        assert_ne!(decls, sorted_decls);
        // The rule that must stay last in nat KUBE-SERVICES is the last rule written.
        let last_rule = text.lines().rev().find(|l| l.starts_with("-A ")).unwrap();
        assert!(
            last_rule.contains("this must be the last rule"),
            "{last_rule}"
        );
        assert_eq!(
            "kube-proxy".parse::<Shape>().map(Shape::name),
            Ok("kube-proxy")
        );
        assert!("kubeproxy".parse::<Shape>().is_err());
    }
}
