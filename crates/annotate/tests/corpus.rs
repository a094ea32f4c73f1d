//! Annotations of the Kubernetes dumps in the test corpus (`testdata/corpus`), as reviewable snapshots, plus
//! properties that must hold on every dump (hash agreement, verdict placement, no panics).

use std::fmt::Write as _;

use nfscope_annotate::{
    Annotation, Annotations, HashCheck, Meaning, Owner, PolicyVerdict, annotate,
};
use nfscope_ruleset::{ParseOptions, Ruleset, parse_ruleset};

const KUBERNETES_DUMPS: [&str; 14] = [
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
