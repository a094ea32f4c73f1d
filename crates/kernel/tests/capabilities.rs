//! Which capabilities collection needs as a non-root user: this test binary re-runs itself as
//! uid 65534 under `setpriv` with a chosen ambient capability set, inside a namespace holding
//! nft and legacy rules, and looks at which sources failed and what was read.

mod common;

use std::process::Command;

use common::{TestNetns, legacy_or_skip, restore_in, root_or_skip};
use nfscope_kernel::{CollectOptions, RuleSource, collect};
use serde_json::Value;

/// Set in the re-run child: collect here and print the source reports as JSON.
const CHILD_ENV: &str = "NFSCOPE_KERNEL_CAPS_CHILD";
/// The child's rule source: `exec` or `netlink`.
const SOURCE_ENV: &str = "NFSCOPE_KERNEL_CAPS_SOURCE";
/// Set in the child: probe legacy table names when they cannot be listed.
const PROBE_ENV: &str = "NFSCOPE_KERNEL_CAPS_PROBE";

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
        probe_legacy_tables: std::env::var_os(PROBE_ENV).is_some(),
        ..CollectOptions::default()
    });
    let pairs: Vec<String> = snapshot
        .rulesets
        .iter()
        .map(|r| format!("{}-{}", r.family, r.backend))
        .collect();
    // "family-backend table chain target packets bytes" per rule.
    let mut rules = Vec::new();
    for ruleset in &snapshot.rulesets {
        for table in &ruleset.tables {
            for chain in &table.chains {
                for rule in &chain.rules {
                    let c = rule.counters.unwrap_or_default();
                    rules.push(format!(
                        "{}-{} {} {} {} {} {}",
                        ruleset.family,
                        ruleset.backend,
                        table.name,
                        chain.name,
                        rule.spec.target_name().unwrap_or("-"),
                        c.packets,
                        c.bytes
                    ));
                }
            }
        }
    }
    let json = serde_json::json!({
        "sources": snapshot.sources,
        "rulesets": pairs,
        "rules": rules,
    });
    println!("\nREPORT {json}");
}

/// What the child reported: (kind, error) per source, the rulesets, and one line per rule.
struct Report {
    sources: Vec<(String, Option<String>)>,
    rulesets: Vec<String>,
    rules: Vec<String>,
}

/// How the child runs besides its capabilities.
#[derive(Default, Clone, Copy)]
struct As {
    /// Supplementary group 0 (root) instead of none.
    root_group: bool,
    /// Probe legacy table names when they cannot be listed.
    probe: bool,
}

/// Runs the child test as nobody with `caps` ambient, in `netns`; returns (kind, error) per source
/// and the rulesets it saw.
fn collect_as_nobody(
    netns: &TestNetns,
    caps: &str,
    source: &str,
) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let report = collect_as(netns, caps, source, As::default());
    (report.sources, report.rulesets)
}

fn collect_as(netns: &TestNetns, caps: &str, source: &str, how: As) -> Report {
    let me = std::env::current_exe().unwrap();
    let groups = if how.root_group {
        ["--groups", "0"].as_slice()
    } else {
        ["--clear-groups"].as_slice()
    };
    let mut setpriv = vec!["setpriv", "--reuid", "65534", "--regid", "65534"];
    setpriv.extend(groups);
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
        .envs(how.probe.then_some((PROBE_ENV, "1")))
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
    let strings = |key: &str| -> Vec<String> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    Report {
        sources: sources.collect(),
        rulesets: strings("rulesets"),
        rules: strings("rules"),
    }
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

    // `nft -j list ruleset` (the native tables, read with `--source exec` on every collection)
    // needs CAP_NET_ADMIN like iptables-nft-save.
    let (sources, _) = collect_as_nobody(&node, "", "exec");
    let all_but_conntrack = [
        "rules-ipv4-nft",
        "rules-ipv4-legacy",
        "rules-ipv6-nft",
        "rules-ipv6-legacy",
        "native_rules",
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
    for (kind, error) in &sources[1..4] {
        if kind.ends_with("legacy") {
            let error = error.as_deref().unwrap_or_default();
            assert!(
                error.contains("supplementary group 0") && error.contains("CAP_DAC_READ_SEARCH"),
                "says what is missing: {error}"
            );
        }
    }
    let names_before = node.sh_ok("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names");
    assert_eq!(names_before.trim(), "filter", "reading created no table");

    let (sources, _) = collect_as_nobody(&node, "", "netlink");
    let nft_error = sources[0].1.as_deref().unwrap_or_default();
    assert!(nft_error.contains("needs CAP_NET_ADMIN"), "{nft_error}");
    let legacy_error = sources[1].1.as_deref().unwrap_or_default();
    assert!(legacy_error.contains("needs CAP_NET_RAW"), "{legacy_error}");
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

#[test]
fn nobody_in_group_root_reads_legacy_rules_and_counters_with_net_admin_and_net_raw_only() {
    let test = "nobody_in_group_root_reads_legacy";
    if !root_or_skip(test) || !legacy_or_skip(test) {
        return;
    }
    let node = TestNetns::new("kernel-grp").unwrap();
    restore_in(
        &node,
        "iptables-nft-restore",
        "*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
    );
    restore_in(
        &node,
        "iptables-legacy-restore",
        "*filter\n-A INPUT -p tcp --dport 23 -j DROP\nCOMMIT\n",
    );
    // One SYN (60 bytes), given up before its first retransmission.
    node.sh("socat -u OPEN:/dev/null TCP:127.0.0.1:23,connect-timeout=0.5");
    let root_group = As {
        root_group: true,
        ..As::default()
    };
    for source in ["netlink", "exec"] {
        let report = collect_as(&node, "+net_admin,+net_raw", source, root_group);
        // The IPv6 legacy backend holds no table: read as empty, not failed.
        assert_eq!(
            failing(&report.sources),
            Vec::<&str>::new(),
            "{source}: {:?}",
            report.sources
        );
        assert_eq!(report.rulesets, ["ipv4-nft", "ipv4-legacy"], "{source}");
        assert!(
            report
                .rules
                .iter()
                .any(|r| r == "ipv4-legacy filter INPUT DROP 1 60"),
            "{source}: the legacy DROP rule with the SYN it dropped: {:?}",
            report.rules
        );
    }
    let names = node.sh_ok("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names");
    assert_eq!(names.trim(), "filter", "reading created no table");
}

/// Why probing legacy table names is opt-in: the kernel creates the tables it is asked about.
/// If a kernel ever stops doing so, this fails, and probing could become the default.
#[test]
fn probing_legacy_table_names_creates_the_tables_it_asks_about() {
    let test = "probing_legacy_table_names";
    if !root_or_skip(test) || !legacy_or_skip(test) {
        return;
    }
    let node = TestNetns::new("kernel-probe").unwrap();
    let probe = As {
        probe: true,
        ..As::default()
    };
    let report = collect_as(&node, "+net_admin,+net_raw", "netlink", probe);
    assert_eq!(
        failing(&report.sources),
        Vec::<&str>::new(),
        "{:?}",
        report.sources
    );
    let created = node.sh_ok("sort /proc/net/ip_tables_names");
    assert_eq!(
        created.split_whitespace().collect::<Vec<_>>(),
        ["filter", "mangle", "nat", "raw", "security"],
        "asking IPT_SO_GET_INFO for the standard names instantiated them"
    );
    // Empty, all-accepting tables: read as rulesets without rules.
    assert!(
        report.rules.iter().all(|r| !r.contains("legacy")),
        "{:?}",
        report.rules
    );
}
