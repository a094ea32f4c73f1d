//! Root tests: the native nftables tables of a namespace read into the typed model, next to an
//! iptables-nft table in the same kernel. The oracle is `nft -j list ruleset` of the namespace,
//! parsed directly; the reader must give the same tables, leave iptables-nft's out, re-read the
//! text only when the generation moved, and count set elements as `nft list` does.

mod common;

use common::{TestNetns, restore_in, root_or_skip};
use nfscope_kernel::{CollectOptions, Reader, RuleSource};
use nfscope_ruleset::typed::{NftFamily, NftRuleset};
use nfscope_ruleset::{Backend, Family, NftLimits, Snapshot, SourceKind, parse_nft_json};
use nfscope_test_support::assert_same;

const NATIVE: &str = r#"
table inet guard {
	set blocked {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.1, 198.51.100.0/24, 203.0.113.5-203.0.113.9 }
	}
	map ports {
		type inet_service : verdict
		elements = { 22 : jump ssh, 5555 : drop }
	}
	chain input {
		type filter hook input priority -10; policy accept;
		ip saddr @blocked counter drop comment "blocked sources"
		tcp dport vmap @ports
		meta l4proto icmp counter accept
	}
	chain ssh {
		ct state new counter accept
	}
}
table ip6 plain {
	chain out {
		type filter hook output priority 0;
		ip6 daddr ::1 accept
	}
}
"#;

const IPT: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    -A INPUT -p tcp --dport 9 -m comment --comment \"iptables rule\" -j DROP\nCOMMIT\n";

fn lab() -> TestNetns {
    let ns = TestNetns::new("native").expect("create a test namespace");
    ns.sh_ok("ip link set lo up");
    restore_in(&ns, "iptables-nft-restore", IPT);
    ns.exec_input(&["nft", "-f", "-"], NATIVE);
    ns.sh_ok("nft list table inet guard >/dev/null");
    ns
}

fn options(ns: &TestNetns, source: RuleSource) -> CollectOptions {
    CollectOptions {
        netns: Some(ns.name().to_owned()),
        families: vec![Family::Ipv4, Family::Ipv6],
        backends: vec![Backend::Nft],
        ipsets: false,
        conntrack: false,
        source,
        ..CollectOptions::default()
    }
}

/// `nft -j list ruleset` of the namespace, parsed, with only the tables named.
fn oracle(ns: &TestNetns, tables: &[(NftFamily, &str)]) -> NftRuleset {
    let json = ns.sh_ok("nft -j list ruleset");
    let mut all = parse_nft_json(&json, &NftLimits::default()).expect("nft's JSON parses");
    all.tables
        .retain(|t| tables.iter().any(|(f, n)| t.family == *f && t.name == *n));
    all
}

fn native_report(snapshot: &Snapshot) -> &nfscope_ruleset::SourceReport {
    snapshot
        .sources
        .iter()
        .find(|s| s.kind == SourceKind::NativeRules)
        .expect("a native rules report")
}

#[test]
fn native_tables_read_back_as_nft_lists_them_and_iptables_nft_tables_stay_out() {
    if !root_or_skip("native_tables_read_back") {
        return;
    }
    let ns = lab();
    let mut reader = Reader::new();
    let snapshot = reader.collect(&options(&ns, RuleSource::Netlink));
    assert_eq!(native_report(&snapshot).error, None);
    let got = snapshot
        .nftables
        .ruleset
        .clone()
        .expect("native rules read");
    let want = oracle(
        &ns,
        &[(NftFamily::Inet, "guard"), (NftFamily::Ip6, "plain")],
    );
    assert_same(&got.normalised(), &want.normalised(), "native tables");
    assert!(
        got.tables.iter().all(|t| t.name != "filter"),
        "iptables-nft's filter table is not native"
    );
    // The iptables-nft rule is still read as iptables.
    let v4 = snapshot
        .rulesets
        .iter()
        .find(|r| r.family == Family::Ipv4)
        .expect("the iptables-nft ruleset");
    assert!(v4.tables.iter().any(|t| t.name == "filter"));

    // Counted native rules carry their text; set sizes are nft's elements, not the kernel's
    // interval boundaries (7 there for 3 listed).
    let blocked = snapshot
        .nftables
        .rules
        .iter()
        .find(|r| r.comment.as_deref() == Some("blocked sources"))
        .expect("the counted drop rule");
    assert_eq!(
        blocked.rule.as_deref(),
        Some("ip saddr @blocked counter drop comment \"blocked sources\"")
    );
    let sizes: Vec<(&str, u64)> = snapshot
        .nftables
        .sets
        .iter()
        .filter(|s| s.table == "guard")
        .map(|s| (s.name.as_str(), s.elements))
        .collect();
    assert_eq!(sizes, [("blocked", 3), ("ports", 2)]);
}

#[test]
fn the_native_text_is_read_again_only_when_the_generation_moved() {
    if !root_or_skip("native_text_reread") {
        return;
    }
    let ns = lab();
    let opts = options(&ns, RuleSource::Netlink);
    let mut reader = Reader::counters_only();
    let first = reader.read(&opts);
    assert_eq!(first.snapshot.nftables.text_reads, 1);
    assert_eq!(reader.native_text_reads(), 1);
    // Traffic moves counters, not the generation.
    ns.sh_ok("ping -q -c 2 -W 1 127.0.0.1 >/dev/null");
    for _ in 0..3 {
        let again = reader.read(&opts);
        assert_eq!(reader.native_text_reads(), 1, "nothing changed: no re-read");
        assert_eq!(
            again.snapshot.nftables.ruleset, first.snapshot.nftables.ruleset,
            "the cached rules are handed out"
        );
    }
    ns.sh_ok("nft add rule inet guard ssh udp dport 53 accept");
    let changed = reader.read(&opts);
    assert_eq!(reader.native_text_reads(), 2, "a new rule: read once more");
    let ssh = changed
        .snapshot
        .nftables
        .ruleset
        .as_ref()
        .and_then(|r| r.table(NftFamily::Inet, "guard"))
        .and_then(|t| t.chain("ssh"))
        .expect("chain ssh");
    assert_eq!(ssh.rules.len(), 2);
    assert_eq!(ssh.rules[1].text, "udp dport 53 accept");
}

#[test]
fn exec_source_keeps_native_tables() {
    if !root_or_skip("exec_source_keeps_native_tables") {
        return;
    }
    let ns = lab();
    let snapshot = nfscope_kernel::collect(&options(&ns, RuleSource::Exec));
    assert_eq!(native_report(&snapshot).error, None);
    let got = snapshot
        .nftables
        .ruleset
        .clone()
        .expect("native rules read");
    let want = oracle(
        &ns,
        &[(NftFamily::Inet, "guard"), (NftFamily::Ip6, "plain")],
    );
    assert_same(&got.normalised(), &want.normalised(), "native tables");
    assert!(
        snapshot
            .nftables
            .rules
            .iter()
            .any(|r| r.comment.as_deref() == Some("blocked sources")),
        "counted rules from the dump"
    );
}

#[test]
fn a_missing_nft_is_reported_not_silent() {
    if !root_or_skip("a_missing_nft_is_reported") {
        return;
    }
    let ns = lab();
    let empty = std::env::temp_dir().join(format!("nfscope-no-nft-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let tools = std::env::temp_dir().join(format!("nfscope-ipt-only-{}", std::process::id()));
    std::fs::create_dir_all(&tools).unwrap();
    for tool in ["iptables-nft-save", "ip6tables-nft-save"] {
        let path = nfscope_kernel::find_tool(tool, None).expect("the save tool is installed");
        let _ = std::fs::remove_file(tools.join(tool));
        std::os::unix::fs::symlink(path, tools.join(tool)).unwrap();
    }
    let opts = CollectOptions {
        tool_dir: Some(tools.clone()),
        ..options(&ns, RuleSource::Netlink)
    };
    let snapshot = Reader::new().collect(&opts);
    let report = native_report(&snapshot);
    let error = report.error.as_deref().expect("an error");
    assert!(error.contains("nft not found"), "{error}");
    assert_eq!(snapshot.nftables.ruleset, None, "nothing made up");
    assert!(
        !snapshot.rulesets.is_empty(),
        "the iptables rules are still read"
    );
    let _ = std::fs::remove_dir_all(&tools);
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn iptables_nft_tables_of_a_family_not_read_are_still_told_apart() {
    if !root_or_skip("iptables_nft_tables_of_a_family_not_read") {
        return;
    }
    let ns = lab();
    ns.sh_ok("ip6tables-nft -A INPUT -p tcp --dport 9 -j DROP");
    // Only IPv4 is read as iptables: the ip6 filter table is recognised by its shape (iptables'
    // table and chain names, xt expressions), not shown as a native table.
    let opts = CollectOptions {
        families: vec![Family::Ipv4],
        ..options(&ns, RuleSource::Netlink)
    };
    let snapshot = Reader::new().collect(&opts);
    let got = snapshot
        .nftables
        .ruleset
        .clone()
        .expect("native rules read");
    let names: Vec<String> = got
        .tables
        .iter()
        .map(|t| format!("{} {}", t.family, t.name))
        .collect();
    assert_eq!(names, ["inet guard", "ip6 plain"]);
    let exec = nfscope_kernel::collect(&CollectOptions {
        source: RuleSource::Exec,
        ..opts
    });
    let names: Vec<String> = exec
        .nftables
        .ruleset
        .expect("native rules read")
        .tables
        .iter()
        .map(|t| format!("{} {}", t.family, t.name))
        .collect();
    assert_eq!(names, ["inet guard", "ip6 plain"]);
}

/// Set sizes at the edges of the kernel's interval encoding, compared with the elements
/// `nft -j list ruleset` shows: ranges touching 0.0.0.0 and the top of the address space (no
/// leading or trailing end marker), IPv6 intervals, a concatenation with a port range (the
/// kernel keeps start and end in one element there), kube-proxy's concatenated maps.
#[test]
fn set_sizes_are_the_elements_nft_lists_at_the_interval_edges() {
    if !root_or_skip("set_sizes_at_interval_edges") {
        return;
    }
    let ns = TestNetns::new("setedges").expect("create a test namespace");
    let out = ns.exec_input(
        &["nft", "-f", "-"],
        "table ip edges {
	set low_high { type ipv4_addr; flags interval;
		elements = { 0.0.0.0/8, 10.0.0.0-10.0.0.5, 10.0.0.9, 255.255.255.0/24 } }
	set concat { type ipv4_addr . inet_service; flags interval;
		elements = { 10.0.0.0/8 . 80-90, 192.0.2.1 . 22, 192.0.2.2 . 1-65535 } }
	map service-ips { type ipv4_addr . inet_proto . inet_service : verdict;
		elements = { 10.96.0.10 . tcp . 80 : drop, 10.96.0.10 . udp . 53 : accept } }
	set empty { type ipv4_addr; flags interval; }
}
table ip6 edges6 {
	set v6 { type ipv6_addr; flags interval;
		elements = { ::/64, fd00::1-fd00::9, ffff::/16 } }
}
",
    );
    assert!(
        out.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshot = Reader::new().collect(&options(&ns, RuleSource::Netlink));
    let want = oracle(&ns, &[(NftFamily::Ip, "edges"), (NftFamily::Ip6, "edges6")]);
    let listed: Vec<(String, u64)> = want
        .tables
        .iter()
        .flat_map(|t| &t.sets)
        .map(|s| (s.name.clone(), s.elements.len() as u64))
        .collect();
    assert_eq!(
        listed,
        [
            ("low_high".to_owned(), 4),
            ("concat".to_owned(), 3),
            ("service-ips".to_owned(), 2),
            ("empty".to_owned(), 0),
            ("v6".to_owned(), 3),
        ],
        "what nft lists"
    );
    let got: Vec<(String, u64)> = snapshot
        .nftables
        .sets
        .iter()
        .filter(|s| s.table.starts_with("edges"))
        .map(|s| (s.name.clone(), s.elements))
        .collect();
    assert_eq!(got, listed, "nftables_set_elements counts what nft lists");
}
