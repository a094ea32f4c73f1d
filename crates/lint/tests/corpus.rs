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

/// One finding as `severity id table chain #rule` (no family, backend or line).
fn headline(f: &Finding) -> String {
    let mut text = format!("{} {}", f.severity, f.id);
    for part in [&f.location.table, &f.location.chain].into_iter().flatten() {
        text.push(' ');
        text.push_str(part);
    }
    if let Some(r) = f.location.rule_index {
        text.push_str(&format!(" #{r}"));
    }
    text
}

/// The twelve findings `testdata/corpus/LINT-REVIEW.md` reviewed as false: warnings that call a
/// tool's stock scaffold "a leftover" (issue 13 item 4).
const FALSE_FINDINGS: [(&str, &str); 12] = [
    ("fffuu-ufw-server2-2015.rules", "ufw-logging-allow"),
    ("fffuu-ufw-server2-2015.rules", "ufw-skip-to-policy-forward"),
    ("fffuu-ufw-server2-2015.rules", "ufw-skip-to-policy-output"),
    ("fffuu-ufw-server2-2015.rules", "ufw-user-limit"),
    ("fffuu-ufw-server2-2015.rules", "ufw-user-limit-accept"),
    (
        "istio-iptables-golden-drop-invalid-2026.rules",
        "ISTIO_INBOUND",
    ),
    (
        "istio-iptables-golden-drop-invalid-2026.rules",
        "ISTIO_REDIRECT",
    ),
    (
        "istio-iptables-golden-inbound-ports-include-2026.rules",
        "ISTIO_REDIRECT",
    ),
    ("istio-iptables-golden-ip-range-2026.rules", "ISTIO_INBOUND"),
    (
        "istio-iptables-golden-loopback-outbound-iprange-2026.rules",
        "ISTIO_INBOUND",
    ),
    (
        "istio-iptables-golden-outbound-owner-groups-exclude-2026.rules",
        "ISTIO_INBOUND",
    ),
    (
        "istio-iptables-golden-outbound-owner-groups-exclude-2026.rules",
        "ISTIO_REDIRECT",
    ),
];

#[test]
fn the_reviewed_false_findings_are_gone() {
    for (file, chain) in FALSE_FINDINGS {
        // The premise still holds (a chain with rules that nothing jumps to), so the test could fail.
        let ruleset = parse(&read(file), file);
        let table = ruleset
            .tables
            .iter()
            .find(|t| t.chain(chain).is_some())
            .unwrap_or_else(|| panic!("{file}: no chain {chain}"));
        assert!(
            !table.chain(chain).unwrap().rules.is_empty(),
            "{file} {chain}"
        );
        assert!(
            !nfscope_lint::checks::structure::references(table).contains_key(chain),
            "{file}: something jumps to {chain}"
        );
        let findings = lint_file(file);
        assert!(
            find(&findings, FindingId::UnreferencedChain, chain).is_empty(),
            "{file}: {}",
            text_of(&findings)
        );
    }
}

/// Every dump of the review's "wider corpus" batch, with the findings reviewed as true that are
/// not a stock scaffold's normal state: exactly these must be found, nothing else.
fn reviewed_true_findings() -> Vec<(&'static str, Vec<String>)> {
    let lines = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let none = Vec::new;
    let mut spoofing: Vec<String> = (2..=16)
        .map(|r| format!("warning duplicate-rule mangle POSTROUTING #{r}"))
        .collect();
    spoofing.extend((7..=21).map(|r| format!("warning duplicate-rule nat POSTROUTING #{r}")));
    spoofing.extend((18..=21).map(|r| format!("warning shadowed-rule filter INPUT #{r}")));
    let mut home = lines(&[
        "info unreferenced-chain filter dhcpv6",
        "info unreferenced-chain filter icmpv6-forward",
        "info unreferenced-chain filter icmpv6-input",
        "info unreferenced-chain filter icmpv6-local",
        "info unreferenced-chain filter icmpv6-related",
        "info unreferenced-chain filter ll",
        "info unreferenced-chain filter mc",
        "info unreferenced-chain filter mc-ll",
        "warning duplicate-rule nat PREROUTING #2",
    ]);
    for (chain, rules) in [
        ("invalid_ext", [15, 16, 33, 34]),
        ("invalid_vpn", [13, 14, 31, 32]),
    ] {
        home.extend(rules.map(|r| format!("info shadowed-rule raw {chain} #{r}")));
    }
    vec![
        (
            "fffuu-gopherproxy-2015.rules",
            lines(&[
                "warning duplicate-rule filter INPUT #147",
                "warning duplicate-rule filter INPUT #164",
                "warning duplicate-rule filter INPUT #242",
            ]),
        ),
        (
            "fffuu-memphis-testbed-2015.rules",
            lines(&["warning unreferenced-chain filter LOG_RECENT_DROP"]),
        ),
        ("fffuu-openvpn-eu-2011.rules", none()),
        (
            // fw3's empty user hooks and zone verdict chains are its scaffold; the zones nothing
            // dispatches to (WAN device down) are still said.
            "fffuu-openwrt-router-2014.rules",
            lines(&[
                "warning duplicate-rule filter FORWARD #5",
                "warning unreferenced-chain filter zone_lan_DROP",
                "warning unreferenced-chain filter zone_wan",
                "warning unreferenced-chain filter zone_wan_forward",
            ]),
        ),
        (
            "fffuu-pastebin-bbWXHaTn-2015.rules",
            lines(&["warning duplicate-rule filter INPUT #8"]),
        ),
        ("fffuu-random-srv-2015.rules", none()),
        ("fffuu-ringofsaturn-2015.rules", none()),
        ("fffuu-rlworkman-2015.rules", none()),
        (
            "fffuu-sargon-2015.rules",
            lines(&[
                "warning unreferenced-chain filter DROP-log",
                "warning unreferenced-chain filter bat-input",
                "warning unreferenced-chain filter icvpn-fwd-in",
                "warning duplicate-rule filter icvpn-fwd-in #2",
                "warning unreferenced-chain filter icvpn-fwd-out",
                "info empty-chain filter icvpn-input",
                "warning unreferenced-chain filter mesh-fwd-in",
                "warning duplicate-rule filter mesh-fwd-in #2",
                "warning duplicate-rule filter mesh-fwd-in #4",
                "warning unreferenced-chain filter mesh-fwd-out",
                "warning unreferenced-chain filter peering-fwd-in",
                "warning unreferenced-chain filter peering-fwd-out",
                "info unreferenced-chain filter peering-input",
                "warning unreferenced-chain filter uplink-fwd-in",
                "warning unreferenced-chain filter uplink-fwd-out",
                "info empty-chain filter uplink-input",
            ]),
        ),
        (
            "fffuu-sqrl-shorewall-spoofing-protection-2015.rules",
            spoofing,
        ),
        ("fffuu-synology-ds414-2015.rules", none()),
        ("fffuu-typical-home-user-2015.rules", home),
        ("fffuu-ufw-server2-2015.rules", none()),
        ("istio-ambient-inpod-tproxy-2024.rules", none()),
        ("istio-cni-ambient-golden-default-2026.rules", none()),
        (
            "istio-cni-ambient-golden-ingress-virtual-interfaces-2026.rules",
            lines(&[
                "warning shadowed-rule nat ISTIO_PRERT #2",
                "warning shadowed-rule nat ISTIO_PRERT #4",
            ]),
        ),
        ("istio-iptables-golden-drop-invalid-2026.rules", none()),
        (
            "istio-iptables-golden-inbound-ports-include-2026.rules",
            none(),
        ),
        ("istio-iptables-golden-ip-range-2026.rules", none()),
        (
            "istio-iptables-golden-loopback-outbound-iprange-2026.rules",
            none(),
        ),
        (
            "istio-iptables-golden-outbound-owner-groups-exclude-2026.rules",
            none(),
        ),
        ("kubeadm-kubeproxy-flannel-master-2023.rules", none()),
        ("kubeadm-kubeproxy-flannel-worker-2023.rules", none()),
        ("linkerd-proxy-init-test-existing-rules-2023.rules", none()),
        ("moby-iptabler-golden-cleaned-2026.rules", none()),
        ("moby-iptabler-golden-internal-icc-2026.rules", none()),
        ("moby-iptabler-golden-internal-noicc-2026.ip6.rules", none()),
        ("moby-iptabler-golden-nat-icc-masq-2026.ip6.rules", none()),
        (
            "moby-iptabler-golden-nat-unprotected-hairpin-bindlh-2026.ip6.rules",
            none(),
        ),
        (
            "moby-iptabler-golden-nat-unprotected-icc-masq-2026.rules",
            none(),
        ),
        ("moby-iptabler-golden-routed-bindlh-2026.rules", none()),
        (
            "moby-iptabler-golden-routed-hairpin-masq-snat-2026.ip6.rules",
            none(),
        ),
        (
            "rhel7-insights-firewalld-ip6tables-save-2017.ip6.rules",
            lines(&[
                "warning shadowed-rule filter INPUT #3",
                "warning unreferenced-chain filter REJECT-LOG",
            ]),
        ),
    ]
}

#[test]
fn the_reviewed_true_findings_are_still_found_and_nothing_else() {
    let reviewed = reviewed_true_findings();
    assert_eq!(reviewed.len(), 33, "the review covers 33 dumps");
    let mut total = 0;
    for (file, expected) in reviewed {
        let found: Vec<String> = lint_file(file).iter().map(headline).collect();
        assert_eq!(found, expected, "{file}");
        total += found.len();
    }
    // 149 findings reviewed: 12 false, 57 a stock scaffold's normal state (info), 80 true.
    assert_eq!(total, 80);
}

/// Stock firewalls and nodes of the whole corpus: no warning and no error comes from a chain a
/// known tool leaves empty or unhooked on purpose.
#[test]
fn no_corpus_finding_is_a_known_scaffolds_normal_state() {
    for file in dumps() {
        let ruleset = parse(&read(&file), &file);
        let known = nfscope_lint::scaffold::Known::for_ruleset(&ruleset);
        for f in lint_file(&file) {
            let Some(chain) = f.location.chain.as_deref() else {
                continue;
            };
            let expected = match (f.id, f.severity) {
                (FindingId::EmptyChain, _) => nfscope_lint::scaffold::Expected::Empty,
                (FindingId::UnreferencedChain, Severity::Info) => {
                    nfscope_lint::scaffold::Expected::UnhookedEmpty
                }
                (FindingId::UnreferencedChain, _) => {
                    nfscope_lint::scaffold::Expected::UnhookedWithRules
                }
                _ => continue,
            };
            assert!(
                known.expects(chain, expected).is_none(),
                "{file}: {}",
                headline(&f)
            );
        }
    }
}

/// The exporter's `nfscope_lint_findings` for a stock ufw host: every warning and error series
/// is there, and zero.
#[test]
fn stock_ufw_metrics_show_no_warning() {
    let mut text = String::new();
    nfscope_lint::encode_finding_metrics(&lint_file("fffuu-ufw-server2-2015.rules"), &mut text);
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("nfscope_lint_findings{"))
        .collect();
    assert!(
        samples
            .iter()
            .any(|l| l.contains("id=\"unreferenced-chain\",severity=\"warning\"")),
        "{text}"
    );
    for sample in samples {
        assert!(sample.ends_with(" 0"), "{sample}");
    }
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
