use std::collections::HashSet;

use nfscope_annotate::kube_proxy_rules::{
    endpoint_chain as kube_sep_chain, service_chain as kube_svc_chain,
};

use super::*;
use crate::demo::topology::Topology;

const BUILTIN_TARGETS: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "MARK",
    "DNAT",
    "MASQUERADE",
    "NFLOG",
];

fn lab() -> (Topology, LabRules) {
    let topo = Topology::standard(4242);
    let rules = generate(&topo);
    (topo, rules)
}

/// Declared chains per table and every `-j`/`-g` target per table.
fn chains_and_targets(text: &str) -> Vec<(String, HashSet<String>, Vec<String>)> {
    let mut tables = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('*') {
            tables.push((name.to_owned(), HashSet::new(), Vec::new()));
        } else if let Some(decl) = line.strip_prefix(':') {
            let chain = decl
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            tables
                .last_mut()
                .expect("chain outside a table")
                .1
                .insert(chain);
        } else if line.starts_with("-A ") {
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2) {
                if pair[0] == "-j" || pair[0] == "-g" {
                    tables
                        .last_mut()
                        .expect("rule outside a table")
                        .2
                        .push(pair[1].to_owned());
                }
            }
        }
    }
    tables
}

/// The lines of one table (`*name` … `COMMIT`).
fn table_text(text: &str, table: &str) -> String {
    let start = text.find(&format!("*{table}\n")).expect("table present");
    let len = text[start..].find("COMMIT\n").expect("table committed");
    text[start..start + len].to_owned()
}

fn rules_of<'a>(text: &'a str, chain: &str) -> Vec<&'a str> {
    let head = format!("-A {chain} ");
    text.lines().filter(|l| l.starts_with(&head)).collect()
}

#[test]
fn every_jump_target_is_declared_or_builtin() {
    let (_, rules) = lab();
    for text in [&rules.iptables, &rules.ip6tables] {
        for (table, declared, targets) in chains_and_targets(text) {
            for target in targets {
                assert!(
                    declared.contains(&target) || BUILTIN_TARGETS.contains(&target.as_str()),
                    "table {table}: jump to undeclared chain {target}"
                );
            }
        }
    }
}

#[test]
fn every_declared_user_chain_is_referenced_or_a_known_anchor() {
    let (_, rules) = lab();
    let anchors = [
        "KUBE-IPTABLES-HINT",
        "KUBE-KUBELET-CANARY",
        "KUBE-PROXY-CANARY",
    ];
    for (table, declared, targets) in chains_and_targets(&rules.iptables) {
        for chain in declared {
            let builtin = chain.chars().all(|c| c.is_ascii_uppercase());
            assert!(
                builtin || anchors.contains(&chain.as_str()) || targets.contains(&chain),
                "table {table}: {chain} is never jumped to"
            );
        }
    }
}

#[test]
fn web_service_balances_three_endpoints_like_kube_proxy() {
    let (topo, rules) = lab();
    let web = topo.service("web").expect("web service");
    let svc_chain = kube_svc_chain(&web.port_name_string(), "tcp");
    let svc_rules = rules_of(&rules.iptables, &svc_chain);
    assert_eq!(svc_rules.len(), 4, "{svc_rules:#?}");
    assert!(
        svc_rules[0].contains(" ! -s 10.244.0.0/16 ")
            && svc_rules[0].ends_with("-j KUBE-MARK-MASQ")
    );
    // kube-proxy's `%0.10f` 1/3 and 1/2, as the kernel keeps them and save prints them.
    assert!(svc_rules[1].contains("--probability 0.33333333349 "));
    assert!(svc_rules[2].contains("--probability 0.50000000000 "));
    assert!(!svc_rules[3].contains("statistic"));
    for (rule, pod) in svc_rules[1..].iter().zip(topo.pods_with_app("web")) {
        let endpoint = format!("{}:{}", pod.ipv4, pod.port);
        assert!(
            rule.contains(&format!("\"demo/web:http -> {endpoint}\"")),
            "{rule}"
        );
        let sep = kube_sep_chain("demo/web:http", "tcp", &endpoint);
        assert!(rule.ends_with(&format!("-j {sep}")), "{rule}");
        let dnat = rules_of(&rules.iptables, &sep);
        assert!(
            dnat.iter()
                .any(|r| r.ends_with(&format!("-j DNAT --to-destination {endpoint}"))),
            "{dnat:#?}"
        );
    }
    let nat = table_text(&rules.iptables, "nat");
    let entry = rules_of(&nat, "KUBE-SERVICES");
    assert!(
        entry
            .iter()
            .any(|r| r.contains("\"demo/web:http cluster IP\"")
                && r.contains("-d 10.96.0.10/32 -p tcp ")
                && r.contains(" --dport 80 -j KUBE-SVC-"))
    );
    assert!(
        entry
            .last()
            .expect("nat KUBE-SERVICES rules")
            .contains("NOTE: this must be the last rule in this chain")
    );
}

#[test]
fn endpointless_service_gets_the_filter_reject() {
    let (_, rules) = lab();
    let hits: Vec<&str> = rules
        .iptables
        .lines()
        .filter(|l| l.contains("\"demo/legacy:http has no endpoints\""))
        .collect();
    assert_eq!(hits.len(), 1);
    assert!(
        hits[0].starts_with("-A KUBE-SERVICES ")
            && hits[0].ends_with("-j REJECT --reject-with icmp-port-unreachable")
    );
    // And nothing DNATs to it.
    assert!(!rules.iptables.contains("demo/legacy:http cluster IP"));
}

#[test]
fn ipv6_rules_serve_the_dual_stack_service_only() {
    let (_, rules) = lab();
    let v6 = &rules.ip6tables;
    assert!(v6.contains("-d fd00:10:96::10/128 -p tcp "));
    assert!(v6.contains(" --dport 80 -j KUBE-SVC-"));
    assert!(v6.contains("--to-destination [fd00:10:244:1::b]:8080"));
    assert!(!v6.contains("demo/api:grpc"));
    assert!(!v6.contains("10.244."), "IPv4 address in ip6tables input");
}

#[test]
fn db_pod_firewall_rejects_all_but_the_policy() {
    let (topo, rules) = lab();
    let db = topo.pod("db-0").expect("db pod");
    let chain = kube_router_pod_fw_chain("demo", "db-0", KUBE_ROUTER_VERSION);
    let fw = rules_of(&rules.iptables, &chain);
    let policy_chain =
        kube_router_policy_chain("demo", "db-allow-web", KUBE_ROUTER_VERSION, "IPv4");
    let jump = fw
        .iter()
        .position(|r| r.ends_with(&format!("-j {policy_chain}")))
        .expect("jump to policy chain");
    let reject = fw
        .iter()
        .position(|r| {
            r.contains("\"rule to REJECT traffic destined for POD name:db-0 namespace: demo\"")
        })
        .expect("reject rule");
    assert!(fw[0].contains("RELATED,ESTABLISHED -j ACCEPT"));
    assert!(jump < reject);
    assert!(
        rules_of(&rules.iptables, "KUBE-ROUTER-FORWARD")
            .iter()
            .any(
                |r| r.starts_with(&format!("-A KUBE-ROUTER-FORWARD -d {}/32 ", db.ipv4))
                    && r.ends_with(&chain)
            )
    );
    // The policy's source set holds exactly the web pods.
    let src = kube_router_ingress_source_set("demo", "db-allow-web", 0, "IPv4");
    assert!(
        rules_of(&rules.iptables, &policy_chain)
            .iter()
            .all(|r| r.contains(&format!("--match-set {src} src")))
    );
    let members: Vec<&str> = rules
        .ipsets
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("add {src} ")))
        .collect();
    assert_eq!(
        members,
        [
            "10.244.1.11 timeout 0",
            "10.244.1.12 timeout 0",
            "10.244.1.13 timeout 0"
        ]
    );
}

#[test]
fn builtin_hooks_run_calico_then_kube_router_then_kube_proxy() {
    let (_, rules) = lab();
    let filter = table_text(&rules.iptables, "filter");
    let forward = rules_of(&filter, "FORWARD");
    let position = |needle: &str| forward.iter().position(|r| r.contains(needle));
    let calico = position("-j cali-FORWARD").expect("Calico hook");
    let router = position("-j KUBE-ROUTER-FORWARD").expect("kube-router hook");
    let proxy = position("-j KUBE-FORWARD").expect("kube-proxy hook");
    assert!(calico < router && router < proxy, "{forward:#?}");
    // kube-router's explicit ACCEPT of policy-compliant traffic closes every built-in chain.
    for builtin in ["INPUT", "FORWARD", "OUTPUT"] {
        let last = *rules_of(&filter, builtin).last().expect("hooks");
        assert!(
            last.ends_with("-m mark --mark 0x20000/0x20000 -j ACCEPT"),
            "{builtin}: {last}"
        );
    }
}

#[test]
fn calico_workload_chains_carry_cali_ids() {
    let (topo, rules) = lab();
    let iface = topo.pod("api-1").expect("api-1").host_veth();
    let tw = rules_of(&rules.iptables, &format!("cali-tw-{iface}"));
    let fw = rules_of(&rules.iptables, &format!("cali-fw-{iface}"));
    assert!(!tw.is_empty() && !fw.is_empty());
    let mut ids = HashSet::new();
    for rule in rules.iptables.lines().filter(|l| l.contains("cali")) {
        if !rule.starts_with("-A ") {
            continue;
        }
        let id = rule
            .split("\"cali:")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("cali: comment");
        assert_eq!(id.len(), 16, "{rule}");
        assert!(ids.insert(id.to_owned()), "duplicate cali id in {rule}");
    }
    assert!(tw.iter().any(|r| r.contains("-j cali-pi-_")));
}

// ---------------------------------------------------------------------------------------------
// The generated text through nfscope's own parser and annotator.

mod through_the_annotator {
    use nfscope_annotate::{Direction, HashCheck, Meaning, PolicyVerdict, annotate};
    use nfscope_ruleset::{ParseOptions, Ruleset, parse_ruleset};

    use super::lab;

    fn parse(text: &str) -> Ruleset {
        parse_ruleset(text, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("generated rules do not parse: {e}"))
    }

    /// (chain name, meaning) of every annotated chain, and (chain name, hash check) of every
    /// `KUBE-SVC-`/`KUBE-SEP-` chain.
    type ChainNotes = (Vec<(String, Meaning)>, Vec<(String, HashCheck)>);

    fn chain_meanings(ruleset: &Ruleset) -> ChainNotes {
        let notes = annotate(ruleset);
        let mut meanings = Vec::new();
        let mut checks = Vec::new();
        for (t, table) in ruleset.tables.iter().enumerate() {
            for (c, chain) in table.chains.iter().enumerate() {
                if let Some(meaning) = &notes.chain(t, c).meaning {
                    meanings.push((chain.name.clone(), meaning.clone()));
                }
                if chain.name.starts_with("KUBE-SVC-") || chain.name.starts_with("KUBE-SEP-") {
                    checks.push((chain.name.clone(), notes.hash_check(t, c, &chain.name)));
                }
            }
        }
        (meanings, checks)
    }

    #[test]
    fn ipv4_rules_parse_and_every_component_is_recognised() {
        let (topo, rules) = lab();
        let ruleset = parse(&rules.iptables);
        let (meanings, checks) = chain_meanings(&ruleset);

        let mut services: Vec<String> = meanings
            .iter()
            .filter_map(|(_, m)| match m {
                Meaning::KubeService {
                    service,
                    kind: None,
                } => Some(service.to_string()),
                _ => None,
            })
            .collect();
        // User chains are declared in name order (as `iptables-legacy-save` prints them).
        services.sort_unstable();
        assert_eq!(services, ["demo/api:grpc", "demo/db:pg", "demo/web:http"]);

        let mut web_endpoints: Vec<&str> = meanings
            .iter()
            .filter_map(|(_, m)| match m {
                Meaning::KubeEndpoint { service, endpoint } if service.name == "web" => {
                    Some(endpoint.as_str())
                }
                _ => None,
            })
            .collect();
        web_endpoints.sort_unstable();
        assert_eq!(
            web_endpoints,
            ["10.244.1.11:8080", "10.244.1.12:8080", "10.244.1.13:8080"]
        );

        assert_eq!(
            checks.len(),
            3 + 6,
            "one SVC per served service, one SEP per endpoint: {checks:?}"
        );
        assert!(
            checks.iter().all(|(_, c)| *c == HashCheck::Matches),
            "{checks:#?}"
        );

        let pods: Vec<&str> = meanings
            .iter()
            .filter_map(|(_, m)| match m {
                Meaning::KubeRouterPod { namespace, pod } if namespace == "demo" => {
                    Some(pod.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(pods.len(), topo.pods.len(), "{pods:?}");
        assert!(pods.contains(&"db-0"));

        let api_iface = topo.pod("api-1").expect("api-1").host_veth();
        for direction in [Direction::Ingress, Direction::Egress] {
            assert!(
                meanings.iter().any(|(_, m)| *m
                    == Meaning::CalicoWorkload {
                        interface: api_iface.clone(),
                        direction
                    }),
                "no Calico {direction} workload chain for {api_iface}"
            );
        }
    }

    /// Calico's verdicts as the exporter counts them: the policy's explicit Deny (a DROP in the
    /// policy chain) names the policy; the workload chain's "Return if policy accepted" accepts.
    #[test]
    fn calico_policy_chain_denies_and_the_workload_chain_accepts() {
        let (topo, rules) = lab();
        let ruleset = parse(&rules.iptables);
        let notes = annotate(&ruleset);
        let (t, filter) = ruleset
            .tables
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == "filter")
            .expect("filter table");
        let verdicts = |prefix: &str| -> Vec<(Option<Meaning>, PolicyVerdict)> {
            filter
                .chains
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name.starts_with(prefix))
                .flat_map(|(c, chain)| (0..chain.rules.len()).map(move |r| (c, r)))
                .filter_map(|(c, r)| {
                    let note = notes.rule(t, c, r);
                    Some((note.meaning.clone(), note.policy_verdict?))
                })
                .collect()
        };
        let policy = &topo.calico_workloads[0].policy_name;
        assert_eq!(
            verdicts("cali-pi-"),
            [(
                Some(Meaning::CalicoPolicy {
                    policy: policy.clone(),
                    direction: Direction::Ingress
                }),
                PolicyVerdict::Deny
            )],
            "one explicit Deny rule per denied source"
        );
        let tw = verdicts("cali-tw-");
        assert!(
            tw.iter().any(|(_, v)| *v == PolicyVerdict::Accept)
                && tw.iter().any(|(_, v)| *v == PolicyVerdict::Deny),
            "{tw:?}"
        );
    }

    #[test]
    fn endpointless_service_is_annotated_as_such() {
        let (_, rules) = lab();
        let ruleset = parse(&rules.iptables);
        let notes = annotate(&ruleset);
        let (t, filter) = ruleset
            .tables
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == "filter")
            .expect("filter table");
        let (c, chain) = filter
            .chains
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == "KUBE-SERVICES")
            .expect("KUBE-SERVICES");
        let found = (0..chain.rules.len()).any(|r| {
            matches!(&notes.rule(t, c, r).meaning,
                Some(Meaning::KubeNoEndpoints { service, local_only: false }) if service.to_string() == "demo/legacy:http")
        });
        assert!(
            found,
            "the legacy REJECT is not annotated as 'no endpoints'"
        );
    }

    #[test]
    fn ipv6_rules_parse_and_name_the_dual_stack_service() {
        let (_, rules) = lab();
        let ruleset = parse(&rules.ip6tables);
        let (meanings, checks) = chain_meanings(&ruleset);
        assert!(meanings.iter().any(|(_, m)| matches!(m,
            Meaning::KubeEndpoint { endpoint, .. } if endpoint == "[fd00:10:244:1::b]:8080")));
        assert!(
            !checks.is_empty() && checks.iter().all(|(_, c)| *c == HashCheck::Matches),
            "{checks:#?}"
        );
    }
}
