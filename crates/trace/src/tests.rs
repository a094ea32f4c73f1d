//! Unit tests of the walker on small hand-written rulesets (each checks a kernel rule of
//! traversal: order, jumps, policies, NAT, marks, branching).

use std::net::IpAddr;

use nfscope_ruleset::{Backend, Family, ParseOptions, Ruleset, parse_ruleset};

use super::*;

fn rules(text: &str) -> Ruleset {
    parse_ruleset(
        text,
        &ParseOptions {
            family: Some(Family::Ipv4),
            backend: Some(Backend::Legacy),
            lenient: false,
            ..Default::default()
        },
    )
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn incoming(src: &str, dst: &str, dport: u16, iface: &str) -> Packet {
    let mut p = Packet::new(ip(src), ip(dst), Proto::Tcp);
    p.dport = Some(dport);
    p.sport = Some(40000);
    p.in_iface = Some(iface.into());
    p
}

/// (table, chain, 1-based rule index or None for policy) of a rule reference.
fn loc(input: &TraceInput, r: RuleRef) -> (String, String, Option<usize>) {
    let t = &input.rulesets[r.ruleset].tables[r.table];
    (
        t.name.clone(),
        t.chains[r.chain].name.clone(),
        r.rule.map(|i| i + 1),
    )
}

fn decided(input: &TraceInput, result: &TraceResult) -> (String, String, Option<usize>) {
    loc(input, result.decided_by.expect("a deciding rule"))
}

const FILTER_DROP_POLICY: &str = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -s 10.0.0.0/8 -j ACCEPT
COMMIT
";

#[test]
fn input_policy_drops_and_port_rule_accepts() {
    let mut input = TraceInput::new(vec![rules(FILTER_DROP_POLICY)]);
    input.local_addrs = vec![ip("192.168.1.10")];
    let dropped = trace(
        &input,
        &incoming("192.168.1.50", "192.168.1.10", 80, "eth0"),
    )
    .unwrap();
    assert_eq!(dropped.verdict, Verdict::Drop);
    assert!(dropped.must);
    assert_eq!(
        decided(&input, &dropped),
        ("filter".into(), "INPUT".into(), None)
    );
    let ssh = trace(
        &input,
        &incoming("192.168.1.50", "192.168.1.10", 22, "eth0"),
    )
    .unwrap();
    assert_eq!(ssh.verdict, Verdict::Accept);
    assert_eq!(
        decided(&input, &ssh),
        ("filter".into(), "INPUT".into(), Some(1))
    );
    let lan = trace(&input, &incoming("10.1.2.3", "192.168.1.10", 80, "eth0")).unwrap();
    assert_eq!(
        decided(&input, &lan),
        ("filter".into(), "INPUT".into(), Some(2))
    );
}

#[test]
fn not_local_destination_goes_to_forward() {
    let mut input = TraceInput::new(vec![rules(FILTER_DROP_POLICY)]);
    input.local_addrs = vec![ip("192.168.1.10")];
    // Port 22 is accepted in INPUT only; a forwarded packet meets FORWARD's DROP policy.
    let fwd = trace(&input, &incoming("192.168.1.50", "10.42.0.5", 22, "eth0")).unwrap();
    assert_eq!(fwd.verdict, Verdict::Drop);
    assert_eq!(
        decided(&input, &fwd),
        ("filter".into(), "FORWARD".into(), None)
    );
}

const KUBE_PROXY: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-A -m statistic --mode random --probability 0.25000000000 -j KUBE-SEP-1
-A KUBE-SVC-A -j KUBE-SEP-2
-A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080
-A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.244.2.7:8080
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -j KUBE-FORWARD
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -d 10.244.1.0/24 -j ACCEPT
COMMIT
";

#[test]
fn service_dnat_yields_each_endpoint_with_its_probability() {
    let mut input = TraceInput::new(vec![rules(KUBE_PROXY)]);
    input.local_addrs = vec![ip("192.168.1.10")];
    let result = trace(&input, &incoming("192.168.1.50", "10.96.0.10", 80, "eth0")).unwrap();
    assert_eq!(result.branches.len(), 2);
    let dnats: Vec<_> = result
        .branches
        .iter()
        .map(|b| (b.dnat, b.probability))
        .collect();
    assert_eq!(dnats[0], (Some((ip("10.244.1.5"), Some(8080))), 0.25));
    assert_eq!(dnats[1], (Some((ip("10.244.2.7"), Some(8080))), 0.75));
    // Both accepted in FORWARD by the masquerade mark set in KUBE-SVC-A (source outside the pod CIDR).
    assert_eq!(result.verdict, Verdict::Accept);
    assert!(result.must);
    assert_eq!(
        decided(&input, &result),
        ("filter".into(), "KUBE-FORWARD".into(), Some(1))
    );
    // Masquerade happened on the way out, with the address unknown (no routes).
    assert_eq!(result.branches[0].snat.as_deref(), Some("MASQUERADE(?)"));
}

#[test]
fn pod_source_is_not_marked_and_endpoints_can_disagree() {
    let mut input = TraceInput::new(vec![rules(KUBE_PROXY)]);
    input.local_addrs = vec![ip("192.168.1.10")];
    // From a pod: no masquerade mark; only the endpoint in 10.244.1.0/24 is accepted.
    let result = trace(&input, &incoming("10.244.3.3", "10.96.0.10", 80, "cni0")).unwrap();
    assert_eq!(result.verdict, Verdict::Undetermined);
    assert!(!result.must);
    let verdicts: Vec<_> = result.branches.iter().map(|b| b.verdict).collect();
    assert_eq!(verdicts, vec![Verdict::Accept, Verdict::Drop]);
    // The split happened at the statistic rule.
    assert_eq!(
        decided(&input, &result),
        ("nat".into(), "KUBE-SVC-A".into(), Some(2))
    );
}

#[test]
fn established_connections_skip_nat() {
    let mut input = TraceInput::new(vec![rules(KUBE_PROXY)]);
    input.local_addrs = vec![ip("192.168.1.10")];
    let mut p = incoming("192.168.1.50", "10.96.0.10", 80, "eth0");
    p.ct_state = CtState::Established;
    let result = trace(&input, &p).unwrap();
    assert_eq!(result.branches.len(), 1);
    assert_eq!(result.main().dnat, None);
    assert!(
        result
            .main()
            .steps
            .iter()
            .any(|s| matches!(s.effect, Effect::NatSkipped(_)))
    );
}

#[test]
fn goto_returns_to_the_caller_of_the_built_in_chain() {
    let text = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A INPUT -j A
-A INPUT -p tcp -j DROP
-A A -g B
-A A -j ACCEPT
-A B -p udp -j ACCEPT
-A B -j RETURN
COMMIT
";
    let input = TraceInput::new(vec![rules(text)]);
    // B returns past A (goto) to INPUT rule 2, which drops tcp; A's ACCEPT is never reached.
    let result = trace(&input, &incoming("1.1.1.1", "127.0.0.1", 80, "eth0")).unwrap();
    assert_eq!(result.verdict, Verdict::Drop);
    assert_eq!(
        decided(&input, &result),
        ("filter".into(), "INPUT".into(), Some(2))
    );
}

#[test]
fn undetermined_match_explores_both_sides_but_logging_does_not_split() {
    let text = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m limit --limit 5/min -j LOG --log-prefix \"x \"
-A INPUT -p tcp -m recent --rcheck --name BAD -j DROP
COMMIT
";
    let input = TraceInput::new(vec![rules(text)]);
    let result = trace(&input, &incoming("1.1.1.1", "127.0.0.1", 80, "eth0")).unwrap();
    assert_eq!(result.branches.len(), 2);
    assert_eq!(result.verdict, Verdict::Undetermined);
    assert_eq!(
        decided(&input, &result),
        ("filter".into(), "INPUT".into(), Some(2))
    );
    assert_eq!(result.branches[0].verdict, Verdict::Drop);
    assert_eq!(result.branches[1].verdict, Verdict::Accept);
    assert!(result.branches.iter().all(|b| !b.is_certain()));
}

#[test]
fn same_verdict_on_both_sides_is_still_must() {
    let text = "*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m hashlimit --hashlimit-above 5/sec --hashlimit-name x -j DROP
COMMIT
";
    let input = TraceInput::new(vec![rules(text)]);
    let result = trace(&input, &incoming("1.1.1.1", "127.0.0.1", 80, "eth0")).unwrap();
    assert_eq!(result.verdict, Verdict::Drop);
    assert!(result.must);
}

#[test]
fn mark_arithmetic_and_mark_based_accept() {
    let text = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth1 -j MARK --set-xmark 0x10/0xf0
-A PREROUTING -j MARK --or-mark 0x1
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m mark --mark 0x11/0xff -j ACCEPT
COMMIT
";
    let input = TraceInput::new(vec![rules(text)]);
    let mut p = incoming("1.1.1.1", "127.0.0.1", 80, "eth1");
    p.mark = 0xff;
    let result = trace(&input, &p).unwrap();
    // (0xff & !0xf0) ^ 0x10 = 0x1f; | 0x1 = 0x1f: the mask 0xff sees 0x1f, not 0x11.
    assert_eq!(result.verdict, Verdict::Drop);
    p.mark = 0;
    let result = trace(&input, &p).unwrap();
    assert_eq!(result.verdict, Verdict::Accept);
    assert_eq!(
        decided(&input, &result),
        ("filter".into(), "INPUT".into(), Some(1))
    );
    let marks: Vec<_> = result
        .main()
        .steps
        .iter()
        .filter_map(|s| match s.effect {
            Effect::Mark { old, new } => Some((old, new)),
            _ => None,
        })
        .collect();
    assert_eq!(marks, vec![(0, 0x10), (0x10, 0x11)]);
}

#[test]
fn missing_chain_is_an_undetermined_step() {
    let text = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -j cali-INPUT
COMMIT
";
    let input = TraceInput::new(vec![rules(text)]);
    let result = trace(&input, &incoming("1.1.1.1", "127.0.0.1", 80, "eth0")).unwrap();
    assert_eq!(result.verdict, Verdict::Undetermined);
    assert!(
        matches!(&result.main().steps.last().unwrap().effect, Effect::MissingChain(c) if c == "cali-INPUT")
    );
}

#[test]
fn local_to_local_loops_back_and_input_decides() {
    let text = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -p tcp -m tcp --dport 9000 -j REJECT
-A OUTPUT -j ACCEPT
COMMIT
";
    let input = TraceInput::new(vec![rules(text)]);
    let mut p = Packet::new(ip("127.0.0.1"), ip("127.0.0.1"), Proto::Tcp);
    p.dport = Some(9000);
    let result = trace(&input, &p).unwrap();
    assert_eq!(result.verdict, Verdict::Reject);
    assert_eq!(
        decided(&input, &result),
        ("filter".into(), "INPUT".into(), Some(1))
    );
    let hooks: Vec<Hook> = result
        .main()
        .steps
        .iter()
        .filter(|s| s.at.is_some())
        .map(|s| s.hook)
        .collect();
    assert_eq!(hooks, vec![Hook::Output, Hook::Input]);
}

#[test]
fn both_backends_run_and_a_drop_in_either_wins() {
    let legacy = rules(FILTER_DROP_POLICY);
    let nft_text = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j DROP
COMMIT
";
    let nft = parse_ruleset(
        nft_text,
        &ParseOptions {
            family: Some(Family::Ipv4),
            backend: Some(Backend::Nft),
            lenient: false,
            ..Default::default()
        },
    )
    .unwrap();
    let mut input = TraceInput::new(vec![nft, legacy]);
    input.local_addrs = vec![ip("192.168.1.10")];
    let result = trace(
        &input,
        &incoming("192.168.1.50", "192.168.1.10", 22, "eth0"),
    )
    .unwrap();
    assert_eq!(result.verdict, Verdict::Drop);
    let by = result.decided_by.unwrap();
    assert_eq!(input.rulesets[by.ruleset].backend, Backend::Nft);
}

#[test]
fn bad_packets_are_errors_not_panics() {
    let mut input = TraceInput::new(vec![rules(FILTER_DROP_POLICY)]);
    let mixed = Packet::new(ip("10.0.0.1"), ip("fd00::1"), Proto::Tcp);
    assert!(trace(&input, &mixed).is_err());
    let mut icmp_port = Packet::new(ip("10.0.0.1"), ip("10.0.0.2"), Proto::Icmp);
    icmp_port.dport = Some(1);
    assert!(trace(&input, &icmp_port).is_err());
    input.interfaces = Some(vec!["lo".into(), "eth0".into()]);
    let err = trace(&input, &incoming("1.1.1.1", "10.0.0.1", 1, "eth7")).unwrap_err();
    assert!(
        err.to_string().contains("unknown interface \"eth7\""),
        "{err}"
    );
    assert!(validate_iface_name("a/b").is_err());
}

#[test]
fn branch_cap_bounds_exploration() {
    let mut text =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..20 {
        text.push_str(&format!(
            "-A INPUT -m recent --rcheck --name r{i} -j MARK --set-xmark 0x{i:x}/0xff\n"
        ));
    }
    text.push_str("COMMIT\n");
    let mut input = TraceInput::new(vec![rules(&text)]);
    input.max_branches = 16;
    let result = trace(&input, &incoming("1.1.1.1", "127.0.0.1", 80, "eth0")).unwrap();
    assert!(result.capped);
    assert!(result.branches.len() <= 16);
    assert!(!result.must);
}

/// DNAT's `--to-destination` forms, lowered and applied: the first address and port of a
/// range, `[v6]:port`, a v6 address alone (the port kept), a port alone (the address kept).
#[test]
fn nat_specs_apply_their_first_address_and_port() {
    let dnat = |family: Family, spec: &str, dst: &str| {
        let text = format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j DNAT --to-destination {spec}\nCOMMIT\n"
        );
        let options = ParseOptions {
            family: Some(family),
            backend: Some(Backend::Legacy),
            lenient: false,
            ..Default::default()
        };
        let input = TraceInput::new(vec![parse_ruleset(&text, &options).unwrap()]);
        let src = if family == Family::Ipv4 {
            "192.0.2.1"
        } else {
            "2001:db8::1"
        };
        let result = trace(&input, &incoming(src, dst, 443, "eth0")).unwrap();
        result.branches[0].dnat
    };
    let (v4, v6) = (Family::Ipv4, Family::Ipv6);
    assert_eq!(
        dnat(v4, "10.0.0.1:80", "192.0.2.9"),
        Some((ip("10.0.0.1"), Some(80)))
    );
    assert_eq!(
        dnat(v4, "10.0.0.1-10.0.0.9:80-90", "192.0.2.9"),
        Some((ip("10.0.0.1"), Some(80)))
    );
    assert_eq!(
        dnat(v6, "[fd00::1]:8080", "2001:db8::9"),
        Some((ip("fd00::1"), Some(8080)))
    );
    assert_eq!(
        dnat(v6, "fd00::1", "2001:db8::9"),
        Some((ip("fd00::1"), Some(443)))
    );
    assert_eq!(
        dnat(v4, ":8080", "192.0.2.9"),
        Some((ip("192.0.2.9"), Some(8080)))
    );
}

/// iptables matches the string matcher decided, now decided on their lowered typed form with
/// x_tables semantics: each packet is accepted by the one rule that must hold for it, certainly.
#[test]
fn x_tables_matches_are_decided_on_the_typed_model() {
    let text = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -f -j ACCEPT
-A INPUT -d 10.0.0.0/255.0.255.0 -p tcp -m tcp --dport 1 -j ACCEPT
-A INPUT -m physdev --physdev-is-bridged -j ACCEPT
-A INPUT -p udp -m multiport --ports 53 -j ACCEPT
-A INPUT -m conntrack --ctstate ESTABLISHED,DNAT -j ACCEPT
-A INPUT -m policy --dir in --pol ipsec -j ACCEPT
-A INPUT -p icmp -m icmp ! --icmp-type 3/3 -j ACCEPT
-A INPUT -m physdev ! --physdev-is-bridged -p tcp -m tcp --dport 2 -j ACCEPT
COMMIT
";
    let mut input = TraceInput::new(vec![rules(text)]);
    input.local_addrs = vec![ip("10.5.0.9"), ip("10.5.1.9")];
    let tracer = Tracer::new(&input);
    let check = |p: &Packet, want: Option<usize>| {
        let r = tracer.trace(p).unwrap();
        assert!(r.must, "{p:?}: {r:?}");
        let (_, chain, rule) = decided(&input, &r);
        assert_eq!((chain.as_str(), rule), ("INPUT", want), "{p:?}");
        let verdict = if want.is_some() {
            Verdict::Accept
        } else {
            Verdict::Drop
        };
        assert_eq!(r.verdict, verdict, "{p:?}");
    };
    // A non-contiguous mask compares the masked bits only.
    check(&incoming("192.168.1.1", "10.5.0.9", 1, "eth0"), Some(2));
    check(&incoming("192.168.1.1", "10.5.1.9", 1, "eth0"), None);
    // Bridged: --physdev-is-bridged holds; routed, its negation holds.
    let mut bridged = incoming("192.168.1.1", "10.5.1.9", 2, "br0");
    bridged.physdev = Some((Some("veth1".into()), None));
    check(&bridged, Some(3));
    check(&incoming("192.168.1.1", "10.5.1.9", 2, "eth0"), Some(8));
    // --ports: either port; the other may be unknown.
    let mut dns = incoming("192.168.1.1", "10.5.1.9", 9999, "eth0");
    dns.proto = Proto::Udp;
    dns.sport = Some(53);
    check(&dns, Some(4));
    dns.sport = None;
    dns.dport = Some(53);
    check(&dns, Some(4));
    // --ctstate ESTABLISHED,DNAT: one mask of states and NAT status.
    let mut est = incoming("192.168.1.1", "10.5.1.9", 9, "eth0");
    est.ct_state = CtState::Established;
    check(&est, Some(5));
    // ! --icmp-type 3/3: the pair, not the type alone.
    let mut icmp = Packet::new(ip("192.168.1.1"), ip("10.5.1.9"), Proto::Icmp);
    icmp.in_iface = Some("eth0".into());
    icmp.icmp = Some((3, 3));
    check(&icmp, None);
    icmp.icmp = Some((3, 1));
    check(&icmp, Some(7));
}
