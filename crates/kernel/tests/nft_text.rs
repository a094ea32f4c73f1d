//! Root tests of the fork-free iptables-nft text: for every corpus ruleset (and a generated
//! kube-proxy ruleset) that `ip[6]tables-nft-restore` accepts, in a namespace of its own, the
//! text decoded from the nf_tables dump equals `ip[6]tables-nft-save`'s line for line (`#` lines
//! aside), or falls back with a reason; which dumps fell back is printed and a floor of fully
//! decoded dumps keeps coverage from regressing silently.

mod common;

use std::fs;

use common::{TestNetns, root_or_skip};
use nfscope_bench::{GenOptions, kube_proxy_ruleset};
use nfscope_kernel::{iptables_nft_text, run_in_netns};
use nfscope_ruleset::Family;

fn load(text: &str, family: Family) -> Option<TestNetns> {
    let netns = TestNetns::new("nfttext").unwrap();
    let path = std::env::temp_dir().join(format!("{}.rules", netns.name()));
    fs::write(&path, text).unwrap();
    let tool = match family {
        Family::Ipv4 => "iptables-nft-restore",
        Family::Ipv6 => "ip6tables-nft-restore",
    };
    let out = netns.sh(&format!("{tool} < {}", path.display()));
    let _ = fs::remove_file(&path);
    out.status.success().then_some(netns)
}

/// What comparing one namespace's decoded text with the save tool's found.
struct Compared {
    /// Lines equal to the save tool's.
    equal: usize,
    /// Reasons of the rules the decoder could not render (their lines are not compared).
    unsupported: Vec<String>,
    /// Lines the decoder rendered differently from the save tool.
    different: Vec<String>,
}

/// Compares the decoded text with `ip[6]tables-nft-save`'s line for line; panics on a
/// different line count; lines rendered differently are collected (the callers assert none).
fn compare(netns: &TestNetns, family: Family, what: &str) -> Compared {
    let partial = run_in_netns(Some(netns.name()), || iptables_nft_text(family, true))
        .unwrap()
        .unwrap()
        .expect("partial decoding renders every table");
    let strict = run_in_netns(Some(netns.name()), || iptables_nft_text(family, false))
        .unwrap()
        .unwrap();
    let tool = match family {
        Family::Ipv4 => "iptables-nft-save",
        Family::Ipv6 => "ip6tables-nft-save",
    };
    let saved = netns.sh_ok(tool);
    let saved: Vec<&str> = saved.lines().filter(|l| !l.starts_with('#')).collect();
    let decoded: Vec<&str> = partial.lines().collect();
    let mut compared = Compared {
        equal: 0,
        unsupported: Vec::new(),
        different: Vec::new(),
    };
    for (i, (d, s)) in decoded.iter().zip(&saved).enumerate() {
        if let Some((head, why)) = d.split_once(" <unsupported: ") {
            assert!(
                s.starts_with(&format!("{head} ")),
                "{what} {family}: line {} is {s:?}",
                i + 1
            );
            compared
                .unsupported
                .push(why.trim_end_matches('>').to_owned());
        } else if d == s {
            compared.equal += 1;
        } else {
            compared.different.push(format!(
                "{what} {family} line {}:\n  decoded {d}\n  saved   {s}",
                i + 1
            ));
        }
    }
    assert_eq!(decoded.len(), saved.len(), "{what} {family}: line count");
    match strict {
        Ok(_) if !compared.different.is_empty() => {}
        Ok(text) => {
            assert!(
                compared.unsupported.is_empty(),
                "{what}: strict decoding must fail too"
            );
            assert_eq!(
                text, partial,
                "{what}: strict and partial agree when both succeed"
            );
        }
        Err(why) => assert!(
            compared.unsupported.contains(&why),
            "{what}: strict fallback {why:?} is one of the unsupported rules"
        ),
    }
    compared
}

#[test]
fn decoded_nft_text_equals_the_save_tool_on_the_corpus() {
    if !root_or_skip("nft_text_corpus") {
        return;
    }
    let (mut equal, mut fell_back, mut lines) = (Vec::new(), Vec::new(), 0);
    let mut different: Vec<String> = Vec::new();
    for (name, text) in nfscope_test_support::corpus_rules() {
        let family = if name.contains(".ip6.") {
            Family::Ipv6
        } else {
            Family::Ipv4
        };
        let Some(netns) = load(&text, family) else {
            continue;
        };
        let compared = compare(&netns, family, &name);
        lines += compared.equal;
        different.extend(compared.different);
        if compared.unsupported.is_empty() {
            equal.push(name);
        } else {
            let mut reasons = compared.unsupported;
            reasons.sort();
            reasons.dedup();
            fell_back.push(format!("{name}: {}", reasons.join("; ")));
        }
    }
    eprintln!(
        "{lines} lines equal; decoded exactly: {equal:#?}\nfell back to the save tool: {fell_back:#?}"
    );
    assert!(different.is_empty(), "{}", different.join("\n"));
    // Floors, so coverage cannot regress silently: every dump iptables-nft-restore accepts
    // here decoded exactly when this was written (55), among them every Kubernetes shape.
    assert!(
        equal.len() >= FLOOR,
        "only {} decoded: {equal:?}",
        equal.len()
    );
    for shape in [
        "kubeadm-kubeproxy-flannel-master-2023.rules",
        "k8s-proxier-test-getchainlines-2015.rules",
        "calico-felix-fv-cali-iptables-dump.rules",
        "moby-iptabler-golden-nat-unprotected-icc-masq-2026.rules",
        "istio-cni-ambient-golden-default-2026.rules",
        "k3s-kube-router-netpol-flannel-nft-2026.rules",
        "k3s-kube-router-netpol-flannel-nft-2026.ip6.rules",
        "centos7-kubeproxy-flannel-after-flush-2024.rules",
    ] {
        assert!(
            equal.iter().any(|e| e == shape),
            "{shape} no longer decodes exactly"
        );
    }
}

/// Corpus dumps fully decoded.
const FLOOR: usize = 55;

#[test]
fn decoded_nft_text_equals_the_save_tool_on_a_generated_ruleset() {
    if !root_or_skip("nft_text_generated") {
        return;
    }
    for (family, ipv6) in [(Family::Ipv4, false), (Family::Ipv6, true)] {
        let opts = GenOptions {
            ipv6,
            ..GenOptions::default()
        };
        let text = kube_proxy_ruleset(200, 3, &opts);
        let netns = load(&text, family).expect("the generated ruleset loads");
        let compared = compare(&netns, family, "generated");
        assert_eq!(
            compared.unsupported,
            Vec::<String>::new(),
            "{family}: fully decoded"
        );
        eprintln!("generated {family}: {} lines equal", compared.equal);
        assert!(
            compared.different.is_empty(),
            "{}",
            compared.different.join("\n")
        );
        assert!(compared.equal > 1000, "{family}: {}", compared.equal);
    }
}

#[test]
fn every_native_expression_iptables_nft_emits_decodes_exactly() {
    if !root_or_skip("nft_text_native") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/kernel");
    for (file, family) in [
        ("nft-native.rules", Family::Ipv4),
        ("nft-native.ip6.rules", Family::Ipv6),
    ] {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        let netns = load(&text, family).expect("the native-expression ruleset loads");
        let compared = compare(&netns, family, file);
        assert_eq!(compared.unsupported, Vec::<String>::new(), "{file}");
        assert_eq!(compared.different, Vec::<String>::new(), "{file}");
        let rules = text.lines().filter(|l| l.starts_with("-A ")).count();
        assert!(compared.equal > rules, "{file}: {} lines", compared.equal);
    }
}
