//! Annotations of the Kubernetes dumps in the test corpus (`testdata/corpus`), as reviewable snapshots, plus
//! properties that must hold on every dump (hash agreement, verdict placement, no panics).

use std::fmt::Write as _;

use nfscope_annotate::{
    Annotation, Annotations, HashCheck, Meaning, Owner, PolicyVerdict, annotate,
};
use nfscope_ruleset::{ParseOptions, Ruleset, parse_ruleset};

const KUBERNETES_DUMPS: [&str; 17] = [
    "k3s-kube-router-netpol-flannel-nft-2026.rules",
    "k3s-kube-router-netpol-flannel-nft-2026.ip6.rules",
    "k8s-proxier-test-overall-restore-input.rules",
    "calico-felix-fv-cali-iptables-dump.rules",
    "calico-felix-fv-iptables-dump.rules",
    "kubeproxy-ipvs-calico-vxlan-nat-2022.rules",
    "cilium-ipvs-kube-proxy-garbled-dnat-2022.rules",
    "centos7-kubeproxy-flannel-after-flush-2024.rules",
    "centos7-kubeproxy-flannel-docker-libvirt-broken-2024.rules",
    "kubeadm-weave-npc-docker-2018.rules",
    "k3s-node-iptables-save-c-counters-2022.rules",
    "moby-iptabler-golden-nat-hairpin-snat-bindlh-wsl2.rules",
    "moby-iptabler-golden-nat-hairpin-snat-bindlh.ip6.rules",
    "k8s-proxier-test-getchainlines-2015.rules",
    "kubeadm-kubeproxy-flannel-master-2023.rules",
    "istio-iptables-golden-inbound-ports-include-2026.rules",
    "istio-ambient-inpod-tproxy-2024.rules",
];

/// Fragments have no table header: they are wrapped in `*table` … `COMMIT` before parsing.
const FRAGMENTS: [(&str, &str); 2] = [
    (
        "fragments/calico-accountant-cali-fw-tw-counters.rules",
        "filter",
    ),
    ("fragments/multus-cni-hostport-dnat-duplicates.rules", "nat"),
];

fn load(file: &str) -> Ruleset {
    let text = nfscope_test_support::corpus_file(file);
    let wrapped = FRAGMENTS
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, table)| wrap_fragment(table, &text));
    let opts = ParseOptions {
        lenient: true,
        ..ParseOptions::default()
    };
    parse_ruleset(wrapped.as_deref().unwrap_or(&text), &opts)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// `*table`, a declaration of every chain the fragment appends to or jumps to, the rules, `COMMIT`.
fn wrap_fragment(table: &str, text: &str) -> String {
    let mut chains: Vec<&str> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            let user_chain = pair[1].starts_with("cali-") || pair[1].starts_with("CNI-");
            if matches!(pair[0], "-A" | "-j" | "-g") && user_chain && !chains.contains(&pair[1]) {
                chains.push(pair[1]);
            }
        }
    }
    let declarations: String = chains.iter().map(|c| format!(":{c} - [0:0]\n")).collect();
    format!("*{table}\n{declarations}{text}\nCOMMIT\n")
}

fn all_files() -> impl Iterator<Item = &'static str> {
    KUBERNETES_DUMPS
        .into_iter()
        .chain(FRAGMENTS.iter().map(|(f, _)| *f))
}

fn describe(annotation: &Annotation) -> String {
    let mut line = annotation.owner.as_str().to_owned();
    if let Some(meaning) = &annotation.meaning {
        write!(line, " | {}", meaning.summary()).unwrap();
    }
    if let Some(verdict) = annotation.policy_verdict {
        write!(line, " | verdict {verdict}").unwrap();
    }
    line
}

/// One line per chain (`table chain owner | meaning`), then one per rule whose annotation differs
/// from its chain's or carries a verdict (`table chain#N owner | meaning | verdict`, N 1-based).
/// Rules not listed have exactly their chain's annotation.
fn listing(ruleset: &Ruleset, annotations: &Annotations) -> Vec<String> {
    let mut lines = Vec::new();
    for (ti, table) in ruleset.tables.iter().enumerate() {
        for (ci, chain) in table.chains.iter().enumerate() {
            let chain_annotation = annotations.chain(ti, ci);
            let interesting_chain =
                chain_annotation.owner != Owner::Other || chain_annotation.meaning.is_some();
            if interesting_chain {
                lines.push(format!(
                    "{} {} {}",
                    table.name,
                    chain.name,
                    describe(chain_annotation)
                ));
            }
            for ri in 0..chain.rules.len() {
                let rule = annotations.rule(ti, ci, ri);
                let differs = rule.owner != chain_annotation.owner
                    || rule.meaning != chain_annotation.meaning;
                if differs || rule.policy_verdict.is_some() {
                    lines.push(format!(
                        "{} {}#{} {}",
                        table.name,
                        chain.name,
                        ri + 1,
                        describe(rule)
                    ));
                }
            }
        }
    }
    lines
}

fn snapshot_name(file: &str) -> String {
    file.trim_start_matches("fragments/")
        .trim_end_matches(".rules")
        .replace('.', "-")
}

#[test]
fn snapshots_of_kubernetes_dumps() {
    for file in all_files() {
        let ruleset = load(file);
        let annotations = annotate(&ruleset);
        insta::assert_yaml_snapshot!(snapshot_name(file), listing(&ruleset, &annotations));
    }
}

/// Every kube-proxy chain whose service (and endpoint) and protocol are known carries the hash
/// kube-proxy computes from them.
#[test]
fn kube_proxy_chain_hashes_agree_with_comments() {
    // The 2015 unit-test dump uses made-up chain names (KUBE-SVC-1111111111111111).
    let fabricated = ["k8s-proxier-test-getchainlines-2015.rules"];
    let mut checked = 0;
    for file in all_files().filter(|f| !fabricated.contains(f)) {
        let ruleset = load(file);
        let annotations = annotate(&ruleset);
        for (ti, table) in ruleset.tables.iter().enumerate() {
            for (ci, chain) in table.chains.iter().enumerate() {
                match annotations.hash_check(ti, ci, &chain.name) {
                    HashCheck::Matches => checked += 1,
                    HashCheck::Mismatch {
                        service_port,
                        protocol,
                    } => {
                        panic!(
                            "{file}: {} {} is not the hash of {service_port} {protocol}",
                            table.name, chain.name
                        )
                    }
                    HashCheck::Unknown => {}
                }
            }
        }
    }
    assert!(checked >= 80, "only {checked} chains could be checked");
}

/// Every KUBE-SVC/SEP chain in the iptables-mode dumps gets a meaning (the IPVS and garbled dumps
/// hold empty stale chains, which have nothing to go on).
#[test]
fn every_live_kube_proxy_chain_is_understood() {
    let live = [
        "k3s-kube-router-netpol-flannel-nft-2026.rules",
        "k8s-proxier-test-overall-restore-input.rules",
        "centos7-kubeproxy-flannel-after-flush-2024.rules",
        "kubeadm-weave-npc-docker-2018.rules",
        "calico-felix-fv-iptables-dump.rules",
        "cilium-ipvs-kube-proxy-garbled-dnat-2022.rules",
    ];
    for file in live {
        let ruleset = load(file);
        let annotations = annotate(&ruleset);
        for (ti, table) in ruleset.tables.iter().enumerate() {
            for (ci, chain) in table.chains.iter().enumerate() {
                let hashed = [
                    "KUBE-SVC-",
                    "KUBE-SEP-",
                    "KUBE-EXT-",
                    "KUBE-FW-",
                    "KUBE-XLB-",
                    "KUBE-POD-FW-",
                ];
                if hashed.iter().any(|p| chain.name.starts_with(p)) && !chain.rules.is_empty() {
                    assert!(
                        annotations.chain(ti, ci).meaning.is_some(),
                        "{file}: {} has no meaning",
                        chain.name
                    );
                }
            }
        }
    }
}

/// In the kube-router dump every pod firewall chain has exactly one Deny (the REJECT) and one
/// Accept (the closing mark), for the same pod its jumps name.
#[test]
fn kube_router_pod_firewalls_have_one_deny_and_one_accept() {
    let ruleset = load("k3s-kube-router-netpol-flannel-nft-2026.rules");
    let annotations = annotate(&ruleset);
    let ti = ruleset
        .tables
        .iter()
        .position(|t| t.name == "filter")
        .unwrap();
    let mut pods = 0;
    for (ci, chain) in ruleset.tables[ti]
        .chains
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name.starts_with("KUBE-POD-FW-"))
    {
        let verdicts: Vec<_> = (0..chain.rules.len())
            .filter_map(|ri| annotations.rule(ti, ci, ri).policy_verdict)
            .collect();
        assert_eq!(
            verdicts,
            [PolicyVerdict::Deny, PolicyVerdict::Accept],
            "{}",
            chain.name
        );
        assert!(
            matches!(
                annotations.chain(ti, ci).meaning,
                Some(Meaning::KubeRouterPod { .. })
            ),
            "{}",
            chain.name
        );
        pods += 1;
    }
    assert_eq!(pods, 11);
}

#[test]
fn annotation_indices_cover_every_rule_and_out_of_range_is_other() {
    for file in all_files() {
        let ruleset = load(file);
        let annotations = annotate(&ruleset);
        for (ti, table) in ruleset.tables.iter().enumerate() {
            assert_eq!(
                annotations.chain(ti, table.chains.len()).owner,
                Owner::Other
            );
            for (ci, chain) in table.chains.iter().enumerate() {
                assert_eq!(
                    annotations.rule(ti, ci, chain.rules.len()),
                    &Annotation::owned_by(Owner::Other)
                );
            }
        }
        assert_eq!(
            annotations.chain(ruleset.tables.len(), 0).owner,
            Owner::Other
        );
    }
}

/// Every (table, chain, rule, annotation) of `ruleset`.
fn rules_of<'a>(
    ruleset: &'a Ruleset,
    annotations: &'a Annotations,
) -> Vec<(&'a str, &'a str, &'a nfscope_ruleset::Rule, &'a Annotation)> {
    let mut out = Vec::new();
    for (ti, t) in ruleset.tables.iter().enumerate() {
        for (ci, c) in t.chains.iter().enumerate() {
            for (ri, r) in c.rules.iter().enumerate() {
                out.push((
                    t.name.as_str(),
                    c.name.as_str(),
                    r,
                    annotations.rule(ti, ci, ri),
                ));
            }
        }
    }
    out
}

/// kube-proxy in IPVS mode writes no chain per service: every rule matching one of its ipsets
/// says which services the set lists and what happens to their packets.
#[test]
fn ipvs_mode_set_rules_say_which_services_and_what_happens() {
    for file in [
        "kubeproxy-ipvs-calico-vxlan-nat-2022.rules",
        "cilium-ipvs-kube-proxy-garbled-dnat-2022.rules",
    ] {
        let ruleset = load(file);
        let annotations = annotate(&ruleset);
        let mut seen = 0;
        for (table, chain, rule, annotation) in rules_of(&ruleset, &annotations) {
            let Some(set) = rule
                .spec
                .matches_named("set")
                .filter_map(|m| m.value("match-set"))
                .find(|s| s.starts_with("KUBE-"))
            else {
                continue;
            };
            seen += 1;
            let Some(Meaning::KubeIpvsSet {
                set: named, action, ..
            }) = &annotation.meaning
            else {
                panic!("{file}: {table} {chain}: {:?}", annotation.meaning);
            };
            assert_eq!(named, set);
            assert_eq!(annotation.owner, Owner::KubeProxy, "{file} {chain}");
            match (set, rule.spec.target_name().unwrap_or("")) {
                ("KUBE-CLUSTER-IP", "ACCEPT") => assert!(action.contains("IPVS"), "{action}"),
                (_, "KUBE-MARK-MASQ") => assert!(action.contains("masquerade"), "{action}"),
                ("KUBE-LOOP-BACK", "MASQUERADE") => assert_eq!(action, "masqueraded"),
                _ => {}
            }
        }
        assert!(seen >= 4, "{file}: {seen} set rules");
    }
}

/// flanneld's rules carry its pod network and what each does (masquerade or not, forward).
#[test]
fn flannel_rules_carry_the_pod_network() {
    let ruleset = load("kubeadm-kubeproxy-flannel-master-2023.rules");
    let annotations = annotate(&ruleset);
    let mut rules = Vec::new();
    for (_, chain, _, a) in rules_of(&ruleset, &annotations) {
        if !chain.starts_with("FLANNEL-") {
            continue;
        }
        assert_eq!(a.owner, Owner::Flannel, "{chain}");
        let Some(Meaning::Flannel { network, rule }) = &a.meaning else {
            panic!("{chain}: {:?}", a.meaning);
        };
        assert_eq!(network, "10.244.0.0/16");
        rules.push(rule.clone().unwrap_or_default());
    }
    assert_eq!(
        rules,
        [
            "already marked for kube-proxy's masquerade: left to it",
            "pod to pod inside the network: not masqueraded",
            "pods to destinations outside the network: masqueraded",
            "from outside the network to this node's pod subnet 10.244.0.0/24: not masqueraded",
            "from outside the network to pods on other nodes: masqueraded",
            "forwarded traffic from pods: accepted",
            "forwarded traffic to pods: accepted",
        ]
    );
}

/// Istio's chains are Istio's; their redirects name the proxy port, and ISTIO_INBOUND says which
/// ports go to the sidecar.
#[test]
fn istio_chains_have_an_owner_and_name_their_ports() {
    let ruleset = load("istio-iptables-golden-inbound-ports-include-2026.rules");
    let annotations = annotate(&ruleset);
    let mut inbound = Vec::new();
    let mut jumps = 0;
    for (_, chain, rule, a) in rules_of(&ruleset, &annotations) {
        if chain.starts_with("ISTIO_") {
            assert_eq!(a.owner, Owner::Istio, "{chain}");
        }
        if let Some(Meaning::IstioInboundPort { port, captured }) = &a.meaning {
            inbound.push((port.clone(), *captured));
            continue;
        }
        let port = match rule.spec.target_name() {
            Some("ISTIO_REDIRECT") => "15001",
            Some("ISTIO_IN_REDIRECT") => "15006",
            _ => continue,
        };
        jumps += 1;
        let want = Meaning::IstioCapture {
            port: port.to_owned(),
        };
        assert_eq!(a.meaning.as_ref(), Some(&want), "{chain}");
    }
    assert!(jumps >= 1);
    let inbound_ports: Vec<(&str, bool)> = inbound.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    assert_eq!(
        inbound_ports,
        [("15008", false), ("32000", true), ("31000", true)]
    );
    // Ambient in-pod rules: TPROXY to ztunnel's inbound and HBONE ports.
    let ambient = load("istio-ambient-inpod-tproxy-2024.rules");
    let annotations = annotate(&ambient);
    let ports: Vec<String> = rules_of(&ambient, &annotations)
        .into_iter()
        .filter_map(|(_, _, _, a)| match &a.meaning {
            Some(Meaning::IstioCapture { port }) => Some(port.clone()),
            _ => None,
        })
        .collect();
    assert!(
        ports.contains(&"15008".to_owned()) && ports.contains(&"15006".to_owned()),
        "{ports:?}"
    );
}

/// Cilium's chains say what they are for, and its commented rules what they do.
#[test]
fn cilium_chains_and_rules_have_a_meaning() {
    let ruleset = load("cilium-ipvs-kube-proxy-garbled-dnat-2022.rules");
    let annotations = annotate(&ruleset);
    let mut rules = 0;
    for (_, chain, rule, a) in rules_of(&ruleset, &annotations) {
        let feeds = rule
            .spec
            .comments()
            .any(|c| c.starts_with("cilium-feeder:"));
        if !chain.starts_with("CILIUM_") && !feeds {
            continue;
        }
        rules += 1;
        assert_eq!(a.owner, Owner::Cilium, "{chain}");
        let Some(Meaning::Cilium { what }) = &a.meaning else {
            panic!("{chain}: {:?}", a.meaning);
        };
        if let Some(comment) = rule
            .spec
            .comments()
            .find_map(|c| c.strip_prefix("cilium: "))
        {
            assert_eq!(what, comment);
        }
    }
    assert_eq!(rules, 15);
}
