//! Root tests of the fork-free legacy rule text: for every corpus ruleset that
//! `ip[6]tables-legacy-restore` accepts here, the text decoded from the kernel's
//! `*_SO_GET_ENTRIES` bytes equals `ip[6]tables-legacy-save -t TABLE` line for line (its `#`
//! lines aside); tables that fell back to the save tool are listed, and the dumps of the
//! Kubernetes-era producers must decode fully.

mod common;

use common::{TestNetns, legacy_or_skip, root_or_skip};
use nfscope_kernel::decode_legacy_tables;
use nfscope_ruleset::Family;

/// The save tool's output without its `#` comment lines.
fn saved(netns: &TestNetns, family: Family, table: &str) -> String {
    let tool = match family {
        Family::Ipv4 => "iptables-legacy-save",
        Family::Ipv6 => "ip6tables-legacy-save",
    };
    let out = netns.exec(&[tool, "-t", table]);
    assert!(out.status.success(), "{tool} -t {table}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Loads `text` into a fresh namespace; `None` when the restore tool rejects it here.
fn load(text: &str, family: Family) -> Option<TestNetns> {
    let netns = TestNetns::new("xttext").unwrap();
    let tool = match family {
        Family::Ipv4 => "iptables-legacy-restore",
        Family::Ipv6 => "ip6tables-legacy-restore",
    };
    let path = std::env::temp_dir().join(format!("{}.rules", netns.name()));
    std::fs::write(&path, text).unwrap();
    let out = netns.sh(&format!("{tool} < {}", path.display()));
    let _ = std::fs::remove_file(&path);
    out.status.success().then_some(netns)
}

/// (tables decoded and equal, fell-back tables with their reasons) of one loaded ruleset;
/// differences go to `diffs` (the first differing line per table).
fn compare(
    netns: &TestNetns,
    family: Family,
    what: &str,
    diffs: &mut Vec<String>,
) -> (usize, Vec<String>) {
    let tables = decode_legacy_tables(Some(netns.name()), family).expect("decode");
    assert!(!tables.is_empty(), "{what}: no tables read");
    let (mut equal, mut fell_back) = (0, Vec::new());
    for table in tables {
        match table.text {
            Ok(text) => {
                let want = saved(netns, family, &table.name);
                let (got, want): (Vec<&str>, Vec<&str>) =
                    (text.lines().collect(), want.lines().collect());
                let differs = got.iter().zip(&want).find(|(g, w)| g != w);
                if let Some((g, w)) = differs {
                    diffs.push(format!("{what} {}:\n  got  {g}\n  want {w}", table.name));
                } else if got.len() != want.len() {
                    diffs.push(format!(
                        "{what} {}: {} lines, the save tool {}",
                        table.name,
                        got.len(),
                        want.len()
                    ));
                } else {
                    equal += 1;
                }
            }
            Err(reasons) => {
                assert!(!reasons.is_empty());
                fell_back.push(format!(
                    "{what} {}: {}",
                    table.name,
                    reasons
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
    }
    (equal, fell_back)
}

#[test]
fn decoded_legacy_text_equals_the_save_tools_on_the_corpus() {
    let test = "xt_text_corpus";
    if !root_or_skip(test) || !legacy_or_skip(test) {
        return;
    }
    let (mut full, mut partial, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fell_back, mut diffs) = (Vec::new(), Vec::new());
    for (name, text) in nfscope_test_support::corpus_rules() {
        let family = if name.contains(".ip6.") {
            Family::Ipv6
        } else {
            Family::Ipv4
        };
        let Some(netns) = load(&text, family) else {
            rejected.push(name);
            continue;
        };
        let (equal, fallbacks) = compare(&netns, family, &name, &mut diffs);
        if fallbacks.is_empty() {
            full.push(format!("{name} ({equal} tables)"));
        } else {
            partial.push(name.clone());
            fell_back.extend(fallbacks);
        }
    }
    eprintln!(
        "fully decoded: {full:#?}\nwith fallbacks: {fell_back:#?}\nrejected by the restore tool here: {rejected:#?}"
    );
    assert!(diffs.is_empty(), "decoded text differs: {diffs:#?}");
    // Every dump that loads here decodes fully (hashlimit and connlimit included): a decoder
    // that stops matching the save tools shows as a fallback or a difference above.
    assert!(
        fell_back.is_empty() && partial.is_empty(),
        "tables fell back to the save tool: {fell_back:#?}"
    );
    for producer in ["kube", "calico", "moby", "istio", "k3s", "flannel"] {
        assert!(
            full.iter().filter(|n| n.contains(producer)).count() >= 2,
            "{producer}: too few dumps decoded: {full:#?}"
        );
    }
    assert!(full.len() >= 55, "too few fully decoded: {full:#?}");
}
