//! Which capabilities collection needs as a non-root user: this test binary re-runs itself as
//! uid 65534 under `setpriv` with a chosen ambient capability set, inside a namespace holding
//! nft and legacy rules, and looks at which sources failed.

mod common;

use std::process::Command;

use common::{TestNetns, legacy_or_skip, restore_in, root_or_skip};
use nfscope_kernel::{CollectOptions, RuleSource, collect};
use serde_json::Value;

/// Set in the re-run child: collect here and print the source reports as JSON.
const CHILD_ENV: &str = "NFSCOPE_KERNEL_CAPS_CHILD";
/// The child's rule source: `exec` or `netlink`.
const SOURCE_ENV: &str = "NFSCOPE_KERNEL_CAPS_SOURCE";

#[test]
fn child_collects_and_prints_reports() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let source = match std::env::var(SOURCE_ENV).as_deref() {
        Ok("exec") => RuleSource::Exec,
        _ => RuleSource::Netlink,
    };
    let snapshot = collect(&CollectOptions {
        source,
        ..CollectOptions::default()
    });
    let pairs: Vec<String> = snapshot
        .rulesets
        .iter()
        .map(|r| format!("{}-{}", r.family, r.backend))
        .collect();
    let json = serde_json::json!({ "sources": snapshot.sources, "rulesets": pairs });
    println!("\nREPORT {json}");
}

/// Runs the child test as nobody with `caps` ambient, in `netns`; returns (kind, error) per source
/// and the rulesets it saw.
fn collect_as_nobody(
    netns: &TestNetns,
    caps: &str,
    source: &str,
) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let me = std::env::current_exe().unwrap();
    let mut setpriv = vec![
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
    ];
    if !caps.is_empty() {
        setpriv.extend(["--inh-caps", caps, "--ambient-caps", caps]);
    }
    let out = Command::new("ip")
        .args(["netns", "exec", netns.name()])
        .args(&setpriv)
        .arg(&me)
        .args([
            "--exact",
            "child_collects_and_prints_reports",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env(SOURCE_ENV, source)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("REPORT ").map(|(_, json)| json))
        .unwrap_or_else(|| {
            panic!(
                "no report from child ({}): {stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let json: Value = serde_json::from_str(line).unwrap();
    let sources = json["sources"].as_array().unwrap().iter().map(|s| {
        let kind = [&s["kind"], &s["family"], &s["backend"]]
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join("-");
        (kind, s["error"].as_str().map(str::to_owned))
    });
    let rulesets = json["rulesets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned());
    (sources.collect(), rulesets.collect())
}

fn failing(sources: &[(String, Option<String>)]) -> Vec<&str> {
    sources
        .iter()
        .filter(|(_, e)| e.is_some())
        .map(|(k, _)| k.as_str())
        .collect()
}

#[test]
fn exec_as_nobody_needs_net_admin_net_raw_and_dac_read_search() {
    if !root_or_skip("nobody_needs_net_admin") || !legacy_or_skip("nobody_needs_net_admin") {
        return;
    }
    let node = TestNetns::new("kernel-caps").unwrap();
    restore_in(
        &node,
        "iptables-nft-restore",
        "*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
    );
    restore_in(
        &node,
        "iptables-legacy-restore",
        "*filter\n-A INPUT -p tcp --dport 23 -j ACCEPT\nCOMMIT\n",
    );
    node.sh_ok("ipset create nfscope-caps hash:ip");

    let (sources, rulesets) =
        collect_as_nobody(&node, "+net_admin,+net_raw,+dac_read_search", "exec");
    assert_eq!(failing(&sources), Vec::<&str>::new(), "{sources:?}");
    assert_eq!(rulesets, ["ipv4-nft", "ipv4-legacy"]);

    // Without CAP_DAC_READ_SEARCH the table lists cannot be read, so even the empty IPv6 legacy
    // backend cannot be seen to hold nothing: its tool runs and fails.
    let (sources, _) = collect_as_nobody(&node, "+net_admin,+net_raw", "exec");
    assert_eq!(
        failing(&sources),
        ["rules-ipv4-legacy", "rules-ipv6-legacy"],
        "{sources:?}"
    );

    let (sources, _) = collect_as_nobody(&node, "+net_admin,+dac_read_search", "exec");
    assert_eq!(failing(&sources), ["rules-ipv4-legacy"], "{sources:?}");
    let legacy_error = sources[1].1.as_deref().unwrap_or_default();
    assert!(legacy_error.contains("Permission denied"), "{legacy_error}");

    let (sources, _) = collect_as_nobody(&node, "", "exec");
    let all_but_conntrack = [
        "rules-ipv4-nft",
        "rules-ipv4-legacy",
        "rules-ipv6-nft",
        "rules-ipv6-legacy",
        "ipsets",
    ];
    assert_eq!(failing(&sources), all_but_conntrack, "{sources:?}");
}

#[test]
fn netlink_as_nobody_reads_nft_with_net_admin_and_legacy_with_net_raw_and_dac_read_search() {
    let test = "netlink_as_nobody";
    if !root_or_skip(test) || !legacy_or_skip(test) {
        return;
    }
    let node = TestNetns::new("kernel-nlcaps").unwrap();
    restore_in(
        &node,
        "iptables-nft-restore",
        "*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
    );
    restore_in(
        &node,
        "iptables-legacy-restore",
        "*filter\n-A INPUT -p tcp --dport 23 -j ACCEPT\nCOMMIT\n",
    );

    let (sources, rulesets) =
        collect_as_nobody(&node, "+net_admin,+net_raw,+dac_read_search", "netlink");
    assert_eq!(failing(&sources), Vec::<&str>::new(), "{sources:?}");
    assert_eq!(rulesets, ["ipv4-nft", "ipv4-legacy"]);

    // NET_ADMIN + NET_RAW: nf_tables (netlink) and ipsets work; legacy tables cannot be listed
    // without reading the 0440 table-name files (probing by name is opt-in, it creates tables).
    let (sources, rulesets) = collect_as_nobody(&node, "+net_admin,+net_raw", "netlink");
    assert_eq!(
        failing(&sources),
        ["rules-ipv4-legacy", "rules-ipv6-legacy"],
        "{sources:?}"
    );
    assert_eq!(rulesets, ["ipv4-nft"]);
    let names_before = node.sh_ok("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names");
    assert_eq!(names_before.trim(), "filter", "reading created no table");

    let (sources, _) = collect_as_nobody(&node, "", "netlink");
    assert_eq!(
        failing(&sources),
        [
            "rules-ipv4-nft",
            "rules-ipv4-legacy",
            "rules-ipv6-nft",
            "rules-ipv6-legacy",
            "ipsets"
        ],
        "{sources:?}"
    );
}
