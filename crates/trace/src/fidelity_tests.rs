//! Unit tests of issues 12 and 13 in the walker: unread sources make the verdict honest,
//! nested `list:set`s stay bounded, REDIRECT/TPROXY go where the kernel sends them, and
//! broadcast/multicast destinations are delivered locally.

use std::net::IpAddr;

use nfscope_ruleset::{Backend, Family, IpSet, ParseOptions, Ruleset, parse_ruleset};

use super::*;

fn rules(text: &str, family: Family) -> Ruleset {
    let options = ParseOptions {
        family: Some(family),
        backend: Some(Backend::Nft),
        ..ParseOptions::default()
    };
    parse_ruleset(text, &options).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn packet(proto: Proto, src: &str, dst: &str, dport: u16, iface: &str) -> Packet {
    let mut p = Packet::new(ip(src), ip(dst), proto);
    p.sport = Some(40000);
    p.dport = Some(dport);
    p.in_iface = Some(iface.into());
    p
}

/// (table, chain, 1-based rule or None) of the deciding rule.
fn decided(input: &TraceInput, result: &TraceResult) -> Option<(String, String, Option<usize>)> {
    result.decided_by.map(|r| {
        let t = &input.rulesets[r.ruleset].tables[r.table];
        (
            t.name.clone(),
            t.chains[r.chain].name.clone(),
            r.rule.map(|i| i + 1),
        )
    })
}

fn report_json(input: &TraceInput, p: &Packet, result: &TraceResult) -> serde_json::Value {
    serde_json::to_value(report::build_report(input, &[], p, result)).unwrap()
}

const STOCK_UFW_LIKE: &str = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p udp -m udp --dport 5353 -d 224.0.0.251 -j ACCEPT
-A INPUT -p udp -m udp --dport 1900 -d 239.255.255.250 -j ACCEPT
-A INPUT -p udp -m udp --sport 67 --dport 68 -j ACCEPT
-A INPUT -m addrtype --dst-type BROADCAST -p udp --dport 137 -j ACCEPT
COMMIT
";

#[test]
fn broadcast_and_multicast_are_delivered_locally_not_forwarded() {
    let mut input = TraceInput::new(vec![rules(STOCK_UFW_LIKE, Family::Ipv4)]);
    input.local_addrs = vec![ip("192.168.1.10")];
    for (dst, dport, rule) in [
        ("224.0.0.251", 5353, 3),     // mDNS
        ("239.255.255.250", 1900, 4), // SSDP
        ("255.255.255.255", 68, 5),   // DHCP reply to the limited broadcast
    ] {
        let p = packet(Proto::Udp, "192.168.1.1", dst, dport, "wlan0");
        if dst == "255.255.255.255" {
            let mut p = p.clone();
            p.sport = Some(67);
            let result = trace(&input, &p).unwrap();
            assert_eq!(result.verdict, Verdict::Accept, "{dst}: {result:#?}");
            assert_eq!(
                decided(&input, &result),
                Some(("filter".into(), "INPUT".into(), Some(rule)))
            );
            continue;
        }
        let result = trace(&input, &p).unwrap();
        assert_eq!(result.verdict, Verdict::Accept, "{dst}: {result:#?}");
        assert!(result.must);
        assert_eq!(
            decided(&input, &result),
            Some(("filter".into(), "INPUT".into(), Some(rule))),
            "{dst}"
        );
        assert!(
            result.main().steps.iter().all(|s| s.hook != Hook::Forward),
            "{dst} crossed FORWARD"
        );
    }
    // The broadcast address of a local subnet (a `broadcast` entry of the local table).
    input.routes = Some(
        parse_routes(
            "192.168.1.0/24 dev wlan0 proto kernel scope link src 192.168.1.10\n\
             broadcast 192.168.1.255 dev wlan0 table local proto kernel scope link src 192.168.1.10\n\
             local 192.168.1.10 dev wlan0 table local proto kernel scope host src 192.168.1.10\n",
        )
        .unwrap(),
    );
    let netbios = packet(Proto::Udp, "192.168.1.7", "192.168.1.255", 137, "wlan0");
    let result = trace(&input, &netbios).unwrap();
    assert_eq!(result.verdict, Verdict::Accept, "{result:#?}");
    assert_eq!(
        decided(&input, &result),
        Some(("filter".into(), "INPUT".into(), Some(6)))
    );
    // A unicast neighbour on the same subnet is still forwarded (and dropped by FORWARD).
    let other = packet(Proto::Udp, "192.168.1.7", "192.168.1.20", 137, "wlan0");
    let result = trace(&input, &other).unwrap();
    assert_eq!(result.verdict, Verdict::Drop);
    assert_eq!(
        decided(&input, &result),
        Some(("filter".into(), "FORWARD".into(), None))
    );
}

#[test]
fn ipv6_multicast_is_delivered_locally() {
    let v6 = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p udp -m udp --dport 5353 -d ff02::fb/128 -j ACCEPT
-A INPUT -m addrtype --dst-type MULTICAST -j DROP
COMMIT
";
    let input = TraceInput::new(vec![rules(v6, Family::Ipv6)]);
    let mdns = packet(Proto::Udp, "fe80::1", "ff02::fb", 5353, "wlan0");
    let result = trace(&input, &mdns).unwrap();
    assert_eq!(result.verdict, Verdict::Accept, "{result:#?}");
    assert_eq!(
        decided(&input, &result),
        Some(("filter".into(), "INPUT".into(), Some(1)))
    );
    let other = packet(Proto::Udp, "fe80::1", "ff02::c", 1900, "wlan0");
    let result = trace(&input, &other).unwrap();
    assert_eq!(result.verdict, Verdict::Drop);
    assert_eq!(
        decided(&input, &result),
        Some(("filter".into(), "INPUT".into(), Some(2)))
    );
    assert!(
        result
            .main()
            .notes
            .iter()
            .any(|n| n.contains("joined the group")),
        "{:?}",
        result.main().notes
    );
}

const ISTIO_REDIRECT: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-port 15006
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -d 10.0.0.5/32 -p tcp --dport 15006 -j ACCEPT
-A INPUT -p tcp -j DROP
COMMIT
";

#[test]
fn redirect_to_port_abbreviation_and_the_incoming_interfaces_address() {
    let mut input = TraceInput::new(vec![rules(ISTIO_REDIRECT, Family::Ipv4)]);
    input.routes = Some(
        parse_routes(
            "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.5\n\
             local 10.0.0.5 dev eth0 table local proto kernel scope host src 10.0.0.5\n",
        )
        .unwrap(),
    );
    let p = packet(Proto::Tcp, "10.0.0.9", "10.0.0.5", 8080, "eth0");
    let result = trace(&input, &p).unwrap();
    assert_eq!(result.main().dnat, Some((ip("10.0.0.5"), Some(15006))));
    assert_eq!(result.verdict, Verdict::Accept, "{result:#?}");
    assert_eq!(
        decided(&input, &result),
        Some(("filter".into(), "INPUT".into(), Some(1)))
    );
    // Offline without routes: the primary address of eth0 is not known; say so.
    input.routes = None;
    input.local_addrs = vec![ip("10.0.0.5")];
    let result = trace(&input, &p).unwrap();
    assert_eq!(result.main().dnat, None);
    assert_eq!(
        result.main().dnat_label.as_deref(),
        Some("REDIRECT(eth0):15006")
    );
    // The INPUT rule on the destination address cannot be decided: not ACCEPT MUST.
    assert_eq!(result.verdict, Verdict::Undetermined, "{result:#?}");
    assert!(!result.must);
    let json = report_json(&input, &p, &result);
    assert_eq!(json["nat"]["dnat"], "REDIRECT(eth0):15006");
    assert!(
        !json["nat"]["dnat"].as_str().unwrap().contains("127.0.0.1"),
        "{json}"
    );
}

#[test]
fn tproxy_marks_and_delivers_to_the_proxy_or_drops_without_a_socket() {
    let text = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m mark --mark 0x539 -j ACCEPT
-A PREROUTING -p tcp -j TPROXY --on-port 15001 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m mark --mark 0x1/0x1 -j ACCEPT
COMMIT
";
    let input = TraceInput::new(vec![rules(text, Family::Ipv4)]);
    let p = packet(Proto::Tcp, "10.1.0.7", "10.96.5.5", 80, "eth0");
    let result = trace(&input, &p).unwrap();
    assert_eq!(result.branches.len(), 2, "{result:#?}");
    let delivered = &result.branches[0];
    assert_eq!(delivered.verdict, Verdict::Accept, "{delivered:#?}");
    assert!(delivered.steps.iter().any(|s| matches!(
        &s.effect,
        Effect::Tproxy { to, new_mark: 1, .. } if to == "127.0.0.1:15001"
    )));
    assert!(delivered.steps.iter().any(|s| s.hook == Hook::Input));
    assert!(delivered.steps.iter().all(|s| s.hook != Hook::Forward));
    assert_eq!(result.branches[1].verdict, Verdict::Drop);
    assert_eq!(result.verdict, Verdict::Undetermined);
    let json = report_json(&input, &p, &result);
    assert_eq!(json["branches"].as_array().unwrap().len(), 2, "{json}");
    let why = json["explanation"].as_str().unwrap();
    assert!(why.contains("127.0.0.1:15001"), "{why}");
    assert!(!why.contains("see the branches"), "{why}");
}

#[test]
fn unread_rules_of_the_packets_family_make_it_undetermined() {
    let text =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    let mut input = TraceInput::new(vec![rules(text, Family::Ipv4)]);
    input.local_addrs = vec![ip("10.0.0.5")];
    let p = packet(Proto::Tcp, "10.0.0.9", "10.0.0.5", 80, "eth0");
    assert_eq!(trace(&input, &p).unwrap().verdict, Verdict::Accept);
    // The other family's unread rules cannot decide an IPv4 packet.
    input.unread.push(Unread {
        source: "rules".into(),
        method: "getsockopt IP6T_SO_GET_ENTRIES".into(),
        family: Some(Family::Ipv6),
        backend: Some(Backend::Legacy),
        reason: "Permission denied".into(),
    });
    let result = trace(&input, &p).unwrap();
    assert_eq!((result.verdict, result.must), (Verdict::Accept, true));
    assert_eq!(result.read_rules_said, None);
    // Its own family's unread rules can.
    input.unread.push(Unread {
        source: "rules".into(),
        method: "getsockopt IPT_SO_GET_ENTRIES".into(),
        family: Some(Family::Ipv4),
        backend: Some(Backend::Legacy),
        reason: "Permission denied".into(),
    });
    let result = trace(&input, &p).unwrap();
    assert_eq!(
        (result.verdict, result.must),
        (Verdict::Undetermined, false)
    );
    assert_eq!(result.read_rules_said, Some((Verdict::Accept, true)));
    let json = report_json(&input, &p, &result);
    assert_eq!(json["verdict"], "UNDETERMINED");
    assert_eq!(json["certainty"], "MAY");
    let unread = json["unread"].as_array().unwrap();
    assert_eq!(unread.len(), 2);
    assert_eq!(unread[1]["source"], "rules");
    assert_eq!(unread[1]["family"], "ipv4");
    assert_eq!(unread[1]["backend"], "legacy");
    assert_eq!(unread[1]["reason"], "Permission denied");
    let text = report::render_text(&p, &report::build_report(&input, &[], &p, &result));
    assert!(text.contains("verdict: UNDETERMINED (MAY)"), "{text}");
    assert!(
        text.contains(
            "not read: ipv4 legacy rules (getsockopt IPT_SO_GET_ENTRIES): Permission denied"
        ),
        "{text}"
    );
    // Nothing read at all, not even a ruleset: still UNDETERMINED, never ACCEPT MUST.
    input.rulesets.clear();
    let result = trace(&input, &p).unwrap();
    assert_eq!(
        (result.verdict, result.must),
        (Verdict::Undetermined, false)
    );
}

fn list_set(name: &str, members: Vec<String>) -> IpSet {
    IpSet {
        name: name.into(),
        set_type: "list:set".into(),
        family: None,
        header: vec![],
        entries: members.len() as u64,
        members,
        memory_bytes: None,
        references: None,
    }
}

/// 12 rules over 8 levels of 12 `list:set`s each naming all 12 of the next level (12^8 paths):
/// answered from each set once, in one branch.
#[test]
fn list_set_fan_out_is_bounded() {
    let mut sets = Vec::new();
    for level in 0..8 {
        for i in 0..12 {
            sets.push(list_set(
                &format!("L{level}_{i}"),
                (0..12).map(|j| format!("L{}_{j}", level + 1)).collect(),
            ));
        }
    }
    for i in 0..12 {
        sets.push(IpSet {
            name: format!("L8_{i}"),
            set_type: "hash:ip".into(),
            family: None,
            header: vec![],
            members: vec![format!("10.9.0.{i}")],
            entries: 1,
            memory_bytes: None,
            references: None,
        });
    }
    let mut text =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..12 {
        text.push_str(&format!("-A INPUT -m set --match-set L0_{i} src -j DROP\n"));
    }
    text.push_str("COMMIT\n");
    let mut input = TraceInput::new(vec![rules(&text, Family::Ipv4)]);
    input.ipsets = Some(sets);
    input.local_addrs = vec![ip("10.0.0.5")];
    let hit = trace(
        &input,
        &packet(Proto::Tcp, "10.9.0.11", "10.0.0.5", 80, "eth0"),
    )
    .unwrap();
    assert_eq!((hit.verdict, hit.must), (Verdict::Drop, true));
    assert_eq!(hit.branches.len(), 1);
    assert_eq!(
        decided(&input, &hit),
        Some(("filter".into(), "INPUT".into(), Some(1)))
    );
    let miss = trace(
        &input,
        &packet(Proto::Tcp, "10.9.1.1", "10.0.0.5", 80, "eth0"),
    )
    .unwrap();
    assert_eq!((miss.verdict, miss.must), (Verdict::Accept, true));
    assert_eq!(miss.branches.len(), 1);
}

#[test]
fn multicast_is_delivered_only_to_groups_joined_on_the_incoming_interface() {
    let igmp = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                1\tlo        :     1      V3\n\t\t\t\t010000E0     1 0:00000000\t\t0\n\
                2\twlan0     :     2      V3\n\t\t\t\tFB0000E0     1 0:00000000\t\t0\n\
                \t\t\t\t010000E0     1 0:00000000\t\t0\n";
    let igmp6 = "2    wlan0           ff0200000000000000000000000000fb     1 00000004 0\n";
    let groups = parse_multicast_groups(igmp, igmp6).unwrap();
    assert!(
        groups.contains(&("wlan0".to_owned(), ip("224.0.0.251"))),
        "{groups:?}"
    );
    assert!(
        groups.contains(&("lo".to_owned(), ip("224.0.0.1"))),
        "{groups:?}"
    );
    assert!(
        groups.contains(&("wlan0".to_owned(), ip("ff02::fb"))),
        "{groups:?}"
    );
    assert!(parse_multicast_groups("1\tlo :\n\t\tXYZ 1\n", "").is_err());

    let mut input = TraceInput::new(vec![rules(STOCK_UFW_LIKE, Family::Ipv4)]);
    input.multicast_groups = Some(groups);
    let mdns = packet(Proto::Udp, "192.168.1.1", "224.0.0.251", 5353, "wlan0");
    let result = trace(&input, &mdns).unwrap();
    assert_eq!((result.verdict, result.must), (Verdict::Accept, true));
    // SSDP: nobody joined 239.255.255.250 here, so routing drops it before INPUT.
    let ssdp = packet(Proto::Udp, "192.168.1.1", "239.255.255.250", 1900, "wlan0");
    let result = trace(&input, &ssdp).unwrap();
    assert_eq!((result.verdict, result.must), (Verdict::Drop, true));
    assert!(
        result
            .main()
            .steps
            .iter()
            .all(|s| s.hook == Hook::Prerouting)
    );
    // Joined on another interface only: not delivered from this one.
    let other = packet(Proto::Udp, "192.168.1.1", "224.0.0.251", 5353, "eth1");
    assert_eq!(trace(&input, &other).unwrap().verdict, Verdict::Drop);
}

#[test]
fn ipv6_primary_address_from_the_local_table() {
    let routes = parse_routes(
        "fd70::/64 dev lan0 proto kernel metric 256 pref medium\n\
         fe80::/64 dev lan0 proto kernel metric 256 pref medium\n\
         local fd70::1 dev lan0 table local proto kernel metric 0 pref medium\n\
         local fe80::1 dev lan0 table local proto kernel metric 0 pref medium\n\
         multicast ff00::/8 dev lan0 table local proto kernel metric 256 pref medium\n",
    )
    .unwrap();
    assert_eq!(
        routes.primary_address("lan0", ip("fd99::9")),
        Some(ip("fd70::1"))
    );
    assert_eq!(
        routes.primary_address("lan0", ip("fe80::9")),
        Some(ip("fe80::1"))
    );
    assert_eq!(routes.primary_address("eth0", ip("fd99::9")), None);
}

/// `-m addrtype` as the kernel classifies: IPv4 gives one type per address, IPv6 tests each
/// type, so the node's own IPv6 address is UNICAST as well as LOCAL.
#[test]
fn addrtype_classifies_like_the_kernel() {
    let v4 = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m addrtype --dst-type UNICAST -j REJECT
-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT
COMMIT
";
    let mut input = TraceInput::new(vec![rules(v4, Family::Ipv4)]);
    input.local_addrs = vec![ip("10.0.0.5")];
    let p = packet(Proto::Tcp, "10.0.0.9", "10.0.0.5", 22, "eth0");
    let result = trace(&input, &p).unwrap();
    assert_eq!(result.verdict, Verdict::Accept, "IPv4 local is LOCAL only");
    let mut input = TraceInput::new(vec![rules(v4, Family::Ipv6)]);
    input.local_addrs = vec![ip("fd00::5")];
    let p = packet(Proto::Tcp, "fd00::9", "fd00::5", 22, "eth0");
    let result = trace(&input, &p).unwrap();
    assert_eq!(result.verdict, Verdict::Reject, "IPv6 local is UNICAST too");
}

#[test]
fn unread_native_tables_make_either_family_undetermined() {
    // `nft -j list ruleset` failed: an `inet` table could hold a drop at any hook of either family.
    let text =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    let mut input = TraceInput::new(vec![rules(text, Family::Ipv4)]);
    input.local_addrs = vec![ip("10.0.0.5")];
    let p = packet(Proto::Tcp, "10.0.0.9", "10.0.0.5", 80, "eth0");
    assert_eq!(trace(&input, &p).unwrap().verdict, Verdict::Accept);
    input.unread.push(Unread {
        source: NATIVE_RULES_SOURCE.into(),
        method: "exec nft -j list ruleset".into(),
        family: None,
        backend: None,
        reason: "nft: not found".into(),
    });
    let result = trace(&input, &p).unwrap();
    assert_eq!(
        (result.verdict, result.must),
        (Verdict::Undetermined, false)
    );
    let json = report_json(&input, &p, &result);
    assert_eq!(json["unread"][0]["source"], NATIVE_RULES_SOURCE);
}
