//! Root tests against the real kernel, each inside network namespaces it creates: rules of both
//! backends and families with counters moved by real traffic, ipset headers, conntrack numbers,
//! and the guarantee that reading changes nothing.

mod common;

use std::collections::BTreeSet;

use common::{TestNetns, legacy_or_skip, restore_in, root_or_skip, save_in};
use nfscope_kernel::{CollectOptions, collect, save_tool};
use nfscope_ruleset::{Backend, Family, NoticeKind, Ruleset, Snapshot, SourceKind};

const NFT_V4: &str = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:NFSCOPE-PING - [0:0]
-A INPUT -s 10.77.0.2/32 -p icmp -m icmp --icmp-type 8 -j NFSCOPE-PING
-A INPUT -p tcp -m tcp --dport 9 -j REJECT --reject-with icmp-port-unreachable
-A NFSCOPE-PING -m conntrack --ctstate NEW -m comment --comment \"first ping of a flow\" -j ACCEPT
-A NFSCOPE-PING -j ACCEPT
COMMIT
";

const LEGACY_V4: &str = "\
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -s 10.77.0.2/32 -p icmp -m icmp --icmp-type 8 -m comment --comment \"legacy ping\"
COMMIT
";

const LEGACY_V6: &str = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s fd77::2/128 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT
COMMIT
";

/// Namespace `node` with rules in three of the four (family, backend) pairs, and `peer` wired to
/// it by a veth pair; `peer` has pinged `node` 3 times over IPv4 and 2 times over IPv6.
struct Lab {
    node: TestNetns,
    peer: TestNetns,
}

impl Lab {
    fn new() -> Self {
        let node = TestNetns::new("kernel").unwrap();
        let peer = TestNetns::new("kernel").unwrap();
        node.veth_to(
            &peer,
            &["10.77.0.1/24", "fd77::1/64"],
            &["10.77.0.2/24", "fd77::2/64"],
        )
        .unwrap();
        restore_in(&node, "iptables-nft-restore", NFT_V4);
        restore_in(&node, "iptables-legacy-restore", LEGACY_V4);
        restore_in(&node, "ip6tables-legacy-restore", LEGACY_V6);
        peer.sh_ok("ping -q -c 3 -i 0.2 -W 2 10.77.0.1 && ping -q -c 2 -i 0.2 -W 2 fd77::1");
        Self { node, peer }
    }

    /// Sends `count` ICMP echo requests with a wrong checksum from `peer` to `node`: conntrack in
    /// `node` counts each as an ICMP error.
    fn send_bad_checksums(&self, count: usize) {
        let script = format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n\
             for i in range({count}): s.sendto(bytes([8, 0, 0x12, 0x34, 0, 1, 0, i]) + b'x' * 8, ('10.77.0.1', 0))\n"
        );
        let out = self.peer.exec(&["python3", "-c", &script]);
        assert!(
            out.status.success(),
            "python3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn options(&self) -> CollectOptions {
        CollectOptions {
            netns: Some(self.node.name().to_owned()),
            ..CollectOptions::default()
        }
    }
}

fn ruleset(snapshot: &Snapshot, family: Family, backend: Backend) -> &Ruleset {
    let found = snapshot
        .rulesets
        .iter()
        .find(|r| r.family == family && r.backend == backend);
    found.unwrap_or_else(|| panic!("no {family} {backend} ruleset"))
}

fn assert_no_source_errors(snapshot: &Snapshot) {
    for report in &snapshot.sources {
        assert_eq!(report.error, None, "{report:?}");
    }
}

/// One rule as compared between two reads: table, chain, rule spec (Debug) and counters.
type RuleRow = (String, String, String, Option<(u64, u64)>);

/// Every rule of a ruleset, in order, to compare two reads.
fn rule_rows(ruleset: &Ruleset) -> Vec<RuleRow> {
    let mut rows = Vec::new();
    for table in &ruleset.tables {
        for chain in &table.chains {
            for rule in &chain.rules {
                let counters = rule.counters.map(|c| (c.packets, c.bytes));
                rows.push((
                    table.name.clone(),
                    chain.name.clone(),
                    format!("{:?}", rule.spec),
                    counters,
                ));
            }
        }
    }
    rows
}

#[test]
fn collect_reads_exactly_the_backends_that_hold_rules_with_the_tools_counters() {
    if !root_or_skip("collect_reads_exactly_the_backends")
        || !legacy_or_skip("collect_reads_exactly_the_backends")
    {
        return;
    }
    let lab = Lab::new();
    let started = std::time::Instant::now();
    let snapshot = collect(&lab.options());
    let elapsed = started.elapsed().as_secs_f64();

    assert_no_source_errors(&snapshot);
    // Each ruleset reports its own read time (the netlink reader reads them one after the
    // other on the collecting thread): not one value copied or divided over all four, and
    // together never more than the collection took.
    let seconds: Vec<f64> = snapshot
        .sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Rules { .. }))
        .map(|s| s.duration_seconds)
        .collect();
    assert!(
        seconds.iter().sum::<f64>() <= elapsed,
        "{seconds:?} within {elapsed}"
    );
    assert!(
        seconds.iter().any(|&s| s != seconds[0]),
        "measured per ruleset: {seconds:?}"
    );
    let pairs: BTreeSet<(Family, Backend)> = snapshot
        .rulesets
        .iter()
        .map(|r| (r.family, r.backend))
        .collect();
    let expected = BTreeSet::from([
        (Family::Ipv4, Backend::Nft),
        (Family::Ipv4, Backend::Legacy),
        (Family::Ipv6, Backend::Legacy),
    ]);
    assert_eq!(pairs, expected);
    let rule_sources = snapshot
        .sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Rules { .. }))
        .count();
    assert_eq!(
        rule_sources, 4,
        "one report per (family, backend), also for the empty one"
    );

    for ruleset in &snapshot.rulesets {
        let tool = save_tool(ruleset.family, ruleset.backend).unwrap();
        let oracle = save_in(&lab.node, tool, ruleset.family, ruleset.backend);
        assert_eq!(rule_rows(ruleset), rule_rows(&oracle), "{tool}");
    }

    let nft = ruleset(&snapshot, Family::Ipv4, Backend::Nft);
    let ping_jump = &nft.table("filter").unwrap().chain("INPUT").unwrap().rules[0];
    assert_eq!(
        ping_jump.counters.unwrap().packets,
        3,
        "3 echo requests were sent"
    );
    assert!(
        nft.notices
            .iter()
            .any(|n| n.kind == NoticeKind::LegacyTablesPresent),
        "the legacy warning on stderr is kept: {:?}",
        nft.notices
    );
    let legacy = ruleset(&snapshot, Family::Ipv4, Backend::Legacy);
    let mangle = legacy.table("mangle").unwrap().chain("PREROUTING").unwrap();
    assert_eq!(mangle.rules[0].counters.unwrap().packets, 3);
    assert_eq!(legacy.tables.len(), 1, "legacy holds only the mangle table");
    let v6 = ruleset(&snapshot, Family::Ipv6, Backend::Legacy);
    assert_eq!(
        v6.table("filter").unwrap().chain("INPUT").unwrap().rules[0]
            .counters
            .unwrap()
            .packets,
        2
    );
    drop(lab.peer);
}

#[test]
fn an_empty_namespace_holds_nothing_and_reading_it_creates_no_table() {
    if !root_or_skip("an_empty_namespace_holds_nothing") {
        return;
    }
    let empty = TestNetns::new("kernel").unwrap();
    let options = CollectOptions {
        netns: Some(empty.name().to_owned()),
        ..CollectOptions::default()
    };
    let snapshot = collect(&options);

    assert_no_source_errors(&snapshot);
    assert!(snapshot.rulesets.is_empty(), "{:?}", snapshot.rulesets);
    assert!(snapshot.ipsets.is_empty());
    assert_eq!(snapshot.conntrack.as_ref().unwrap().entries, 0);
    // Four rule sources, native nftables rules, ipsets, conntrack.
    assert_eq!(snapshot.sources.len(), 7);
    assert!(
        snapshot
            .nftables
            .ruleset
            .as_ref()
            .is_some_and(|r| r.tables.is_empty()),
        "no native tables, and nothing failed reading them"
    );
    let tables = empty.sh_ok(
        "cat /proc/net/ip_tables_names /proc/net/ip6_tables_names; nft list tables; ipset list -n",
    );
    assert_eq!(tables.trim(), "", "reading must not create tables or sets");
}

#[test]
fn ipset_headers_match_the_sets_in_the_namespace() {
    if !root_or_skip("ipset_headers_match") {
        return;
    }
    let node = TestNetns::new("kernel").unwrap();
    node.sh_ok(
        "ipset create nfscope-a hash:ip && ipset add nfscope-a 10.0.0.1 && ipset add nfscope-a 10.0.0.2 \
         && ipset add nfscope-a 10.0.0.3 && ipset create nfscope-b hash:net family inet6 \
         && ipset add nfscope-b fd00::/8 && iptables-nft -A INPUT -m set --match-set nfscope-a src -j ACCEPT",
    );
    let options = CollectOptions {
        netns: Some(node.name().to_owned()),
        families: vec![],
        conntrack: false,
        ..CollectOptions::default()
    };
    let snapshot = collect(&options);

    assert_no_source_errors(&snapshot);
    let names: Vec<&str> = snapshot.ipsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["nfscope-a", "nfscope-b"]);
    let (a, b) = (&snapshot.ipsets[0], &snapshot.ipsets[1]);
    assert_eq!((a.entries, b.entries), (3, 1));
    assert_eq!((a.references, b.references), (Some(1), Some(0)));
    assert_eq!(a.family, Some(Family::Ipv4));
    assert_eq!(b.family, Some(Family::Ipv6));
    for set in &snapshot.ipsets {
        let listed = node.sh_ok(&format!(
            "ipset list -t {} | sed -n 's/^Size in memory: //p'",
            set.name
        ));
        assert_eq!(
            set.memory_bytes,
            Some(listed.trim().parse().unwrap()),
            "{}",
            set.name
        );
    }
}

#[test]
fn conntrack_numbers_are_the_namespaces_own() {
    if !root_or_skip("conntrack_numbers_are_the_namespaces_own")
        || !legacy_or_skip("conntrack_numbers")
    {
        return;
    }
    let lab = Lab::new();
    lab.send_bad_checksums(3);
    let only_conntrack = |netns: &TestNetns| CollectOptions {
        netns: Some(netns.name().to_owned()),
        families: vec![],
        ipsets: false,
        ..CollectOptions::default()
    };
    let node = collect(&only_conntrack(&lab.node))
        .conntrack
        .expect("conntrack in node");
    let peer = collect(&only_conntrack(&lab.peer))
        .conntrack
        .expect("conntrack in peer");

    assert!(node.entries >= 1, "the ping flows are tracked: {node:?}");
    assert_eq!(
        peer.entries, 0,
        "peer has no conntrack rules, so nothing is tracked there"
    );
    let counted = lab
        .node
        .sh_ok("cat /proc/sys/net/netfilter/nf_conntrack_count");
    assert_eq!(node.entries, counted.trim().parse::<u64>().unwrap());
    assert!(node.limit > 0);
    let stat = |name: &str| node.stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(
        stat("icmp_error"),
        Some(3),
        "the 3 bad checksums, from the node's own table"
    );
    let oracle = conntrack_tool_stats(&lab.node);
    assert_eq!(
        stat("icmp_error"),
        oracle.get("error").copied(),
        "conntrack -S calls it error"
    );
    for name in [
        "found",
        "invalid",
        "insert",
        "insert_failed",
        "drop",
        "early_drop",
    ] {
        assert_eq!(stat(name), oracle.get(name).copied(), "{name}");
    }
}

/// `conntrack -S` (netlink, per CPU) summed over CPUs.
fn conntrack_tool_stats(netns: &TestNetns) -> std::collections::BTreeMap<String, u64> {
    let mut sums = std::collections::BTreeMap::new();
    for pair in netns.sh_ok("conntrack -S").split_whitespace() {
        if let Some((name, value)) = pair.split_once('=')
            && let Ok(value) = value.parse::<u64>()
        {
            *sums.entry(name.to_owned()).or_insert(0) += value;
        }
    }
    sums
}

#[test]
fn a_missing_namespace_fails_every_source_but_not_the_collection() {
    let options = CollectOptions {
        netns: Some("nfscope-kernel-no-such-netns".to_owned()),
        ..CollectOptions::default()
    };
    let snapshot = collect(&options);
    assert!(snapshot.rulesets.is_empty());
    assert_eq!(snapshot.sources.len(), 7, "native nftables rules fail too");
    for report in &snapshot.sources {
        let error = report.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("network namespace nfscope-kernel-no-such-netns: "),
            "{error}"
        );
    }
}
