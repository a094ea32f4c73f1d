//! Every corpus dump linted, as reviewed `insta` snapshots (false-positive control), plus the real
//! defects the corpus is known to hold, each asserted by id and place.
//!
//! Error-level findings that remain in the snapshots, and why each is a real defect:
//! - `cilium-ipvs-kube-proxy-garbled-dnat-2022.rules`: `garbled-rule` on the seven KUBE-SEP DNAT
//!   rules whose `--to-destination` is empty, repeated or `0.0.0.0:0` — the dump is unreliable
//!   (host iptables-save older than kube-proxy's iptables); iptables-restore would not accept it.
//! - `centos7-kubeproxy-flannel-docker-libvirt-broken-2024.rules`: `unreachable-after-catch-all`
//!   in filter FORWARD — `-j REJECT --reject-with icmp-host-prohibited` before `-j FLANNEL-FWD`,
//!   the documented broken state of that node.
//! - `fffuu-synology-ds414.ip6.rules`: `unreachable-after-catch-all` in FORWARD_FIREWALL and
//!   INPUT_FIREWALL — `-j DROP` is followed by `-i eth0 -j DROP` and `-i eth1 -j RETURN`, so the
//!   intended RETURN for eth1 never happens (the NAS UI appended after its own default drop).
//! - `fffuu-parser-test.rules`: `unreachable-after-catch-all` in FORWARD — `-g Terminal` is
//!   unconditional and `-j IPSEC_42` after it is dead (a hand-made torture test, but the rule is
//!   dead all the same).
//!
//! Warnings worth knowing when reading the snapshots: the fffuu-ugent / TUM dumps really do hold
//! dozens of exact copies (libvirt's MASQUERADE triple, generated per-host filter chains); the
//! IPVS and Cilium dumps really carry unreferenced KUBE-SVC/SEP chains from iptables mode; the
//! getchainlines test dump's `KUBE-SVC-1111…` names are placeholders, hence the hash mismatches.

use nfscope_test_support::{corpus_file, corpus_files};

use nfscope_lint::{Finding, FindingId, LintInput, Severity, Summary, lint, render_text};
use nfscope_ruleset::{ParseOptions, Ruleset, parse_ruleset};

fn read(file: &str) -> String {
    corpus_file(file)
}

fn parse(text: &str, file: &str) -> Ruleset {
    let opts = ParseOptions {
        lenient: true,
        ..ParseOptions::default()
    };
    parse_ruleset(text, &opts).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every complete dump in the corpus (not fragments, not ipset files).
fn dumps() -> Vec<String> {
    corpus_files("rules")
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

fn lint_file(file: &str) -> Vec<Finding> {
    let ruleset = parse(&read(file), file);
    lint(&LintInput {
        rulesets: std::slice::from_ref(&ruleset),
        ipsets: None,
    })
}

fn text_of(findings: &[Finding]) -> String {
    render_text(findings, &Summary::new(findings, 1, 0))
}

#[test]
fn every_corpus_dump_matches_its_reviewed_snapshot() {
    let files = dumps();
    assert!(files.len() >= 25, "corpus has {} dumps", files.len());
    for file in files {
        let findings = lint_file(&file);
        insta::assert_snapshot!(
            file.trim_end_matches(".rules").replace('.', "_"),
            text_of(&findings)
        );
    }
}

/// Dumps with a known real defect at error level; every other dump must have no error finding.
const DUMPS_WITH_REAL_ERRORS: [&str; 4] = [
    "cilium-ipvs-kube-proxy-garbled-dnat-2022.rules",
    "centos7-kubeproxy-flannel-docker-libvirt-broken-2024.rules",
    "fffuu-synology-ds414.ip6.rules",
    "fffuu-parser-test.rules",
];

#[test]
fn no_error_findings_on_dumps_without_real_defects() {
    for file in dumps()
        .iter()
        .filter(|f| !DUMPS_WITH_REAL_ERRORS.contains(&f.as_str()))
    {
        let errors: Vec<_> = lint_file(file)
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{file}: {}", text_of(&errors));
    }
}

fn find<'a>(findings: &'a [Finding], id: FindingId, chain: &str) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| f.id == id && f.location.chain.as_deref() == Some(chain))
        .collect()
}

#[test]
fn centos_forward_reject_before_flannel_is_unreachable() {
    let findings = lint_file("centos7-kubeproxy-flannel-docker-libvirt-broken-2024.rules");
    let hits = find(&findings, FindingId::UnreachableAfterCatchAll, "FORWARD");
    assert_eq!(hits.len(), 1);
    let hit = hits[0];
    assert_eq!(hit.location.table.as_deref(), Some("filter"));
    assert_eq!(hit.severity, Severity::Error);
    // The catch-all is the REJECT; the first rule that never runs is the FLANNEL-FWD jump.
    let forward = &parse(
        &read("centos7-kubeproxy-flannel-docker-libvirt-broken-2024.rules"),
        "",
    )
    .table("filter")
    .unwrap()
    .chain("FORWARD")
    .unwrap()
    .rules
    .clone();
    let unreachable = &forward[hit.location.rule_index.unwrap() - 1];
    assert_eq!(unreachable.spec.target_name(), Some("FLANNEL-FWD"));
    let catch_all = &forward[hit.related[0].location.rule_index.unwrap() - 1];
    assert_eq!(catch_all.spec.target_name(), Some("REJECT"));
}

#[test]
fn ipvs_dump_flags_its_stale_service_chains() {
    let findings = lint_file("kubeproxy-ipvs-calico-vxlan-nat-2022.rules");
    let stale: Vec<_> = findings
        .iter()
        .filter(|f| f.id == FindingId::KubeStaleChain)
        .collect();
    assert!(stale.len() >= 15, "{}", text_of(&findings));
    for f in &stale {
        let chain = f.location.chain.as_deref().unwrap();
        assert!(
            chain.starts_with("KUBE-SVC-") || chain.starts_with("KUBE-SEP-"),
            "{chain}"
        );
        assert!(f.message.contains("IPVS"), "{}", f.message);
    }
}

#[test]
fn cilium_dump_garbled_dnat_is_reported_per_rule() {
    let findings = lint_file("cilium-ipvs-kube-proxy-garbled-dnat-2022.rules");
    let garbled: Vec<_> = findings
        .iter()
        .filter(|f| f.id == FindingId::GarbledRule)
        .collect();
    assert_eq!(garbled.len(), 7, "{}", text_of(&findings));
    assert!(garbled.iter().all(|f| {
        f.location
            .chain
            .as_deref()
            .unwrap()
            .starts_with("KUBE-SEP-")
    }));
    assert!(
        garbled
            .iter()
            .all(|f| f.kube.as_ref().is_some_and(|k| k.owner == "kube-proxy"))
    );
}

#[test]
fn multus_hostport_fragment_duplicates_are_found() {
    let fragment = read("fragments/multus-cni-hostport-dnat-duplicates.rules");
    let mut text = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:CNI-HOSTPORT-DNAT - [0:0]\n");
    for line in fragment.lines() {
        let target = line.split_whitespace().last().unwrap();
        text.push_str(&format!(":{target} - [0:0]\n"));
    }
    text.push_str("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n");
    text.push_str(&fragment);
    text.push_str("\nCOMMIT\n");
    let ruleset = parse(&text, "multus");
    let findings = lint(&LintInput {
        rulesets: std::slice::from_ref(&ruleset),
        ipsets: None,
    });
    let dups = find(&findings, FindingId::DuplicateRule, "CNI-HOSTPORT-DNAT");
    let at: Vec<usize> = dups
        .iter()
        .map(|f| f.location.rule_index.unwrap())
        .collect();
    assert_eq!(at, vec![2, 3, 4], "{}", text_of(&findings));
    assert!(
        dups.iter()
            .all(|f| f.related[0].location.rule_index == Some(1))
    );
    assert!(
        dups.iter()
            .all(|f| f.kube.as_ref().is_some_and(|k| k.owner == "cni-portmap"))
    );
}

/// The server's background lint hands over the annotations it made for its Kubernetes plan
/// (`lint_one_annotated`); on every corpus dump that finds exactly what annotating again finds.
#[test]
fn linting_with_the_callers_annotations_finds_the_same() {
    let files = dumps();
    assert!(files.len() > 10, "{files:?}");
    for file in files {
        let ruleset = parse(&read(&file), &file);
        let own = nfscope_lint::lint_one(&ruleset, None);
        let handed =
            nfscope_lint::lint_one_annotated(&ruleset, &nfscope_annotate::annotate(&ruleset), None);
        assert_eq!(handed, own, "{file}");
    }
}
