//! Unit tests of native nftables tracing: the typed evaluator and the kernel's hook order over
//! hand-written tables and the real dumps of `testdata/corpus/nft/` (k3s kube-proxy nftables
//! mode, Docker, Calico).

use std::net::IpAddr;

use nfscope_ruleset::nft::{NftLimits, parse_nft_json, parse_nft_text};
use nfscope_ruleset::typed::NftRuleset;
use nfscope_ruleset::{Backend, Family, ParseOptions, Ruleset, parse_ruleset};
use nfscope_test_support::corpus::nft_corpus_dir;

use super::*;

fn nft(text: &str) -> NftRuleset {
    parse_nft_text(text, &NftLimits::default()).unwrap()
}

fn corpus(name: &str) -> NftRuleset {
    let text = std::fs::read_to_string(nft_corpus_dir().join(name)).unwrap();
    if name.ends_with(".json") {
        parse_nft_json(&text, &NftLimits::default()).unwrap()
    } else {
        nft(&text)
    }
}

fn ipt(text: &str, backend: Backend) -> Ruleset {
    parse_ruleset(
        text,
        &ParseOptions {
            family: Some(Family::Ipv4),
            backend: Some(backend),
            lenient: false,
            ..Default::default()
        },
    )
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn native(rs: Vec<NftRuleset>) -> TraceInput {
    let mut input = TraceInput::new(Vec::new());
    input.native = rs;
    input
}

fn tcp_in(src: &str, dst: &str, dport: u16, iface: &str) -> Packet {
    let mut p = Packet::new(ip(src), ip(dst), Proto::Tcp);
    p.dport = Some(dport);
    p.sport = Some(40000);
    p.in_iface = Some(iface.into());
    p
}

fn tcp_local(src: &str, dst: &str, dport: u16) -> Packet {
    let mut p = Packet::new(ip(src), ip(dst), Proto::Tcp);
    p.dport = Some(dport);
    p.sport = Some(40000);
    p
}

/// (backend, table, chain, rule_index, rule text) of the deciding rule.
fn decider(input: &TraceInput, packet: &Packet) -> (TraceResult, Option<report::RuleView>) {
    let result = trace(input, packet).unwrap();
    let rep = report::build_report(input, &[], packet, &result);
    (result, rep.decided_by)
}

#[test]
fn one_rule_drop_table_drops() {
    let mut input = native(vec![nft(
        "table ip s { chain i { type filter hook input priority 0; tcp dport 5555 drop } }",
    )]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let (result, by) = decider(&input, &tcp_in("10.0.0.2", "10.0.0.1", 5555, "eth0"));
    assert_eq!(result.verdict, Verdict::Drop);
    assert!(result.must);
    let by = by.unwrap();
    assert_eq!(by.backend, "nftables");
    assert_eq!(by.table, "s");
    assert_eq!(by.chain, "i");
    assert_eq!(by.rule_index, Some(1));
    assert_eq!(by.rule, "tcp dport 5555 drop");
    // Another port passes (policy accept).
    let (result, _) = decider(&input, &tcp_in("10.0.0.2", "10.0.0.1", 5556, "eth0"));
    assert_eq!(result.verdict, Verdict::Accept);
    assert!(result.must);
}

#[test]
fn inet_tables_see_both_families_and_ip_tables_only_theirs() {
    let rs = nft(
        "table inet a { chain i { type filter hook input priority 0; meta l4proto tcp drop } }
table ip6 b { chain i { type filter hook input priority -5; tcp dport 80 accept } }",
    );
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("10.0.0.1"), ip("fd00::1")];
    let (r4, _) = decider(&input, &tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0"));
    assert_eq!(r4.verdict, Verdict::Drop);
    // The ip6 accept at -5 ends only its own base chain: inet's drop at 0 still runs.
    let (r6, by) = decider(&input, &tcp_in("fd00::2", "fd00::1", 80, "eth0"));
    assert_eq!(r6.verdict, Verdict::Drop);
    let by = by.unwrap();
    assert_eq!((by.table.as_str(), by.family.as_str()), ("a", "inet"));
    let steps: Vec<_> = r6.main().steps.iter().map(|s| s.effect.clone()).collect();
    assert!(steps.contains(&Effect::Accept), "{steps:?}");
}

#[test]
fn native_and_iptables_interleave_by_priority() {
    // iptables-nft filter INPUT (priority 0) accepts; a native chain at 10 drops: DROP.
    let ipt_rules = ipt(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 80 -j ACCEPT\nCOMMIT\n",
        Backend::Nft,
    );
    let mut input = TraceInput::new(vec![ipt_rules.clone()]);
    input.native = vec![nft(
        "table ip late { chain c { type filter hook input priority 10; tcp dport 80 drop } }",
    )];
    input.local_addrs = vec![ip("10.0.0.1")];
    let (r, by) = decider(&input, &tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0"));
    assert_eq!(r.verdict, Verdict::Drop);
    assert_eq!(by.unwrap().table, "late");
    // Native at -10 drops before iptables ever sees it.
    let mut input = TraceInput::new(vec![ipt_rules]);
    input.native = vec![nft(
        "table ip early { chain c { type filter hook input priority -10; tcp dport 80 drop } }",
    )];
    input.local_addrs = vec![ip("10.0.0.1")];
    let (r, _) = decider(&input, &tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0"));
    assert_eq!(r.verdict, Verdict::Drop);
    let first = r.main().steps.iter().find_map(|s| s.at).unwrap();
    assert!(first.native, "the native chain at -10 runs first");
}

#[test]
fn nat_chains_stop_at_the_first_binding() {
    let rs = nft("table ip n {
  chain a { type nat hook prerouting priority -100; tcp dport 80 dnat to 10.1.0.1:8080 }
  chain b { type nat hook prerouting priority -90; tcp dport 80 dnat to 10.2.0.2:9090 }
}");
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let mut p = tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0");
    p.out_iface = Some("eth1".into());
    let r = trace(&input, &p).unwrap();
    assert_eq!(r.main().dnat, Some((ip("10.1.0.1"), Some(8080))));
    // Established packets skip nat chains.
    p.ct_state = CtState::Established;
    let r = trace(&input, &p).unwrap();
    assert_eq!(r.main().dnat, None);
}

#[test]
fn numgen_vmap_branches_with_probabilities() {
    let rs = nft("table ip lb {
  chain pre { type nat hook prerouting priority dstnat; ip daddr 10.96.0.1 tcp dport 80 numgen random mod 4 vmap { 0 : goto a, 1-3 : goto b } }
  chain a { dnat to 10.0.1.1:80 }
  chain b { dnat to 10.0.2.2:80 }
}");
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let mut p = tcp_in("10.0.0.2", "10.96.0.1", 80, "eth0");
    p.out_iface = Some("eth1".into());
    let r = trace(&input, &p).unwrap();
    assert_eq!(r.verdict, Verdict::Accept);
    assert!(r.must);
    assert_eq!(r.branches.len(), 2);
    let mut got: Vec<_> = r
        .branches
        .iter()
        .map(|b| (b.dnat.unwrap().0, (b.probability * 100.0).round() as u32))
        .collect();
    got.sort();
    assert_eq!(got, vec![(ip("10.0.1.1"), 25), (ip("10.0.2.2"), 75)]);
}

#[test]
fn vmap_on_a_concatenation_and_interval_sets() {
    let rs = nft("table inet f {
  set nets { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.168.1.1-192.168.1.9 } }
  map ports { type ipv4_addr . inet_service : verdict; flags interval; elements = { 10.0.0.0/8 . 8000-8999 : drop, 10.0.0.5 . 22 : accept } }
  chain in { type filter hook input priority 0; policy accept;
    ip saddr @nets ip saddr . tcp dport vmap @ports
    ip saddr != @nets reject
  }
}");
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("172.16.0.1")];
    let v = |src: &str, port: u16| trace(&input, &tcp_in(src, "172.16.0.1", port, "eth0")).unwrap();
    assert_eq!(v("10.3.3.3", 8500).verdict, Verdict::Drop);
    assert_eq!(v("10.3.3.3", 9000).verdict, Verdict::Accept);
    assert_eq!(
        v("192.168.1.5", 8500).verdict,
        Verdict::Accept,
        "not in the map's range"
    );
    assert_eq!(v("192.168.1.10", 22).verdict, Verdict::Reject);
    let r = v("10.0.0.5", 22);
    assert_eq!(r.verdict, Verdict::Accept);
    assert!(r.main().steps.iter().any(|s| s.effect == Effect::Accept));
}

#[test]
fn marks_and_masquerade() {
    let rs = nft("table ip m {
  chain pre { type filter hook prerouting priority -150; meta mark set meta mark | 0x4000 }
  chain post { type nat hook postrouting priority srcnat; meta mark & 0x4000 == 0x4000 masquerade }
  chain fwd { type filter hook forward priority 0; meta mark & 0x4000 == 0 drop }
}");
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let mut p = tcp_in("10.0.0.2", "8.8.8.8", 53, "eth0");
    p.out_iface = Some("eth1".into());
    let r = trace(&input, &p).unwrap();
    assert_eq!(r.verdict, Verdict::Accept);
    assert_eq!(r.main().snat.as_deref(), Some("MASQUERADE(eth1)"));
}

#[test]
fn unmodelled_and_stateful_expressions_are_may() {
    let rs = nft("table ip u {
  chain i { type filter hook input priority 0; limit rate 10/second accept; drop }
}");
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let r = trace(&input, &tcp_in("10.0.0.2", "10.0.0.1", 22, "eth0")).unwrap();
    assert_eq!(r.verdict, Verdict::Undetermined);
    assert!(!r.must);
    assert_eq!(r.branches.len(), 2);
}

#[test]
fn netdev_ingress_is_named_not_ignored() {
    let rs = nft(
        "table netdev d { chain ing { type filter hook ingress device \"eth0\" priority 0; policy drop; } }",
    );
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let r = trace(&input, &tcp_in("10.0.0.2", "10.0.0.1", 22, "eth0")).unwrap();
    assert_eq!(r.verdict, Verdict::Undetermined);
    assert!(!r.must);
    assert!(
        r.main()
            .notes
            .iter()
            .any(|n| n.contains("netdev table d chain ing")),
        "{:?}",
        r.main().notes
    );
    // Another device: not crossed.
    let r = trace(&input, &tcp_in("10.0.0.2", "10.0.0.1", 22, "eth1")).unwrap();
    assert_eq!(r.verdict, Verdict::Accept);
    assert!(r.must);
}

const K3S: &str = "k3s-kubeproxy-nftables-mode-table-2025.nft";

fn k3s_input() -> TraceInput {
    let mut input = native(vec![corpus(K3S)]);
    input.local_addrs = vec![ip("10.34.4.246")];
    input
}

#[test]
fn k3s_service_traces_to_its_endpoints() {
    let input = k3s_input();
    // A pod on another node calls the hellopod Service (9 endpoints, numgen mod 9).
    let mut p = tcp_in("10.42.1.7", "10.43.195.72", 8000, "flannel.1");
    p.out_iface = Some("cni0".into());
    let r = trace(&input, &p).unwrap();
    assert_eq!(r.verdict, Verdict::Accept);
    assert_eq!(r.branches.len(), 9, "{}", r.branches.len());
    let mut ends: Vec<_> = r.branches.iter().map(|b| b.dnat.unwrap()).collect();
    ends.sort();
    ends.dedup();
    assert_eq!(ends.len(), 9);
    assert!(ends.contains(&(ip("10.42.4.201"), Some(8080))));
    for b in &r.branches {
        assert!((b.probability - 1.0 / 9.0).abs() < 1e-9);
    }
    let rep = report::build_report(&input, &[], &p, &r);
    let text = report::render_text(&p, &rep);
    assert!(text.contains("numgen random mod 9 vmap"), "{text}");
    assert!(text.contains("dnat to"), "{text}");
}

#[test]
fn k3s_service_without_endpoints_is_rejected_by_the_reject_chain() {
    let input = k3s_input();
    let mut p = tcp_in("10.42.1.7", "10.43.21.102", 4317, "flannel.1");
    p.out_iface = Some("cni0".into());
    let (r, by) = decider(&input, &p);
    assert_eq!(r.verdict, Verdict::Reject);
    assert!(r.must);
    let by = by.unwrap();
    assert_eq!(by.chain, "reject-chain");
    assert_eq!(by.rule, "reject");
    assert_eq!(by.backend, "nftables");
    assert_eq!(by.table, "kube-proxy");
    // Locally generated too (filter-output at -110 → service-endpoints-check).
    let (r, by) = decider(&input, &tcp_local("10.34.4.246", "10.43.21.102", 4318));
    assert_eq!(r.verdict, Verdict::Reject);
    assert_eq!(by.unwrap().chain, "reject-chain");
}

#[test]
fn k3s_wrong_port_and_unallocated_cluster_ip() {
    let input = k3s_input();
    let mut p = tcp_in("10.42.1.7", "10.43.195.72", 9999, "flannel.1");
    p.out_iface = Some("cni0".into());
    let (r, by) = decider(&input, &p);
    assert_eq!(r.verdict, Verdict::Reject);
    let by = by.unwrap();
    assert_eq!(by.chain, "cluster-ips-check");
    assert_eq!(by.rule_index, Some(1));
    let mut p = tcp_in("10.42.1.7", "10.43.99.99", 80, "flannel.1");
    p.out_iface = Some("cni0".into());
    let (r, by) = decider(&input, &p);
    assert_eq!(r.verdict, Verdict::Drop);
    let by = by.unwrap();
    assert_eq!(by.chain, "cluster-ips-check");
    assert_eq!(by.rule_index, Some(2));
    assert!(
        by.rule.contains("Drop traffic to unallocated ClusterIPs"),
        "{}",
        by.rule
    );
}

#[test]
fn k3s_nodeport_masquerades_and_dnats() {
    let input = k3s_input();
    let mut p = tcp_in("192.168.7.7", "10.34.4.246", 30000, "eth0");
    p.out_iface = Some("cni0".into());
    let r = trace(&input, &p).unwrap();
    assert_eq!(r.verdict, Verdict::Accept);
    assert_eq!(r.branches.len(), 9);
    for b in &r.branches {
        assert!(b.dnat.is_some());
        assert!(b.snat.is_some(), "mark-for-masquerade then masquerading");
    }
}

#[test]
fn json_and_text_dumps_trace_the_same() {
    let text = corpus("nftparse-kube-proxy-overall.nft");
    let json = corpus("nftparse-kube-proxy-overall.json");
    for dump in [text, json] {
        let mut input = native(vec![dump]);
        input.local_addrs = vec![ip("192.168.0.2")];
        // ns1/svc1 is 172.30.0.41:80 → endpoint 10.180.0.1:80.
        let mut p = tcp_in("10.0.0.7", "172.30.0.41", 80, "eth0");
        p.out_iface = Some("eth1".into());
        let r = trace(&input, &p).unwrap();
        assert_eq!(r.verdict, Verdict::Accept, "{r:?}");
        assert!(
            r.branches
                .iter()
                .any(|b| b.dnat == Some((ip("10.180.0.1"), Some(80)))),
            "{:?}",
            r.branches.iter().map(|b| b.dnat).collect::<Vec<_>>()
        );
    }
}

#[test]
fn json_report_has_nftables_fields() {
    let mut input = native(vec![nft(
        "table inet s { chain i { type filter hook input priority 0; tcp dport 5555 drop } }",
    )]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let p = tcp_in("10.0.0.2", "10.0.0.1", 5555, "eth0");
    let r = trace(&input, &p).unwrap();
    let rep = report::build_report(&input, &[], &p, &r);
    let v = serde_json::to_value(&rep).unwrap();
    assert_eq!(v["decided_by"]["backend"], "nftables");
    assert_eq!(v["decided_by"]["family"], "inet");
    assert_eq!(v["decided_by"]["table"], "s");
    assert_eq!(v["decided_by"]["rule_index"], 1);
}

#[test]
fn k3s_report_shows_the_meaning_of_native_rules() {
    let input = k3s_input();
    let mut p = tcp_in("10.42.1.7", "10.43.0.1", 443, "flannel.1");
    p.out_iface = Some("cni0".into());
    let r = trace(&input, &p).unwrap();
    let rep = report::build_report(&input, &[], &p, &r);
    let dnat = rep
        .path
        .iter()
        .find(|s| s.effect.starts_with("DNAT to 10.34.4.142"))
        .expect("DNAT step");
    assert_eq!(
        dnat.annotation.as_deref(),
        Some("kube-proxy: service default/kubernetes:https endpoint 10.34.4.142:6443")
    );
    let svc = rep
        .path
        .iter()
        .find(|s| s.chain.as_deref() == Some("service-2QRHZV4L-default/kubernetes/tcp/https"))
        .expect("service chain step");
    assert_eq!(
        svc.annotation.as_deref(),
        Some("kube-proxy: service default/kubernetes:https")
    );
    assert!(
        report::render_text(&p, &rep)
            .contains("service default/kubernetes:https endpoint 10.34.4.142:6443")
    );
    // The reject of a Service without endpoints names kube-proxy's reject chain's role.
    let mut p = tcp_in("10.42.1.7", "10.43.21.102", 4317, "flannel.1");
    p.out_iface = Some("cni0".into());
    let r = trace(&input, &p).unwrap();
    let rep = report::build_report(&input, &[], &p, &r);
    assert_eq!(
        rep.decided_by.unwrap().annotation.as_deref(),
        Some("kube-proxy: rejects connections to services without endpoints")
    );
}

#[test]
fn k3s_explanations_name_the_service() {
    let input = k3s_input();
    let explain = |dst: &str, port: u16| {
        let mut p = tcp_in("10.42.1.7", dst, port, "flannel.1");
        p.out_iface = Some("cni0".into());
        let r = trace(&input, &p).unwrap();
        report::build_report(&input, &[], &p, &r).explanation
    };
    assert_eq!(
        explain("10.43.21.102", 4317).as_deref(),
        Some(
            "service riset/otelcol-opentelemetry-collector:otlp has no endpoints, so kube-proxy rejects 10.43.21.102:4317"
        )
    );
    assert_eq!(
        explain("10.43.99.99", 80).as_deref(),
        Some("10.43.99.99 is in the Service CIDR but no Service has it: kube-proxy drops it")
    );
    assert_eq!(
        explain("10.43.195.72", 9999).as_deref(),
        Some("10.43.195.72 is a ClusterIP, but no Service port is tcp/9999: kube-proxy rejects it")
    );
    let reached = explain("10.43.0.1", 443).unwrap();
    assert!(
        reached.starts_with("service default/kubernetes:https sends it to endpoint "),
        "{reached}"
    );
}

/// One input-hook table around `rules`, traced for `p`; the verdict.
fn verdict_of(rules: &str, p: &Packet) -> (Verdict, bool) {
    let table = format!(
        "table inet t {{\n chain i {{\n  type filter hook input priority 0; policy accept;\n{rules}\n }}\n}}\n"
    );
    let mut input = native(vec![nft(&table)]);
    input.local_addrs = vec![ip("10.0.0.1"), ip("fd00::1")];
    let r = trace(&input, p).unwrap();
    (r.verdict, r.must)
}

#[test]
fn typed_evaluator_bitmasks_interfaces_and_protocols() {
    let mut p = tcp_in("10.0.0.2", "10.0.0.1", 80, "veth12");
    let d = (Verdict::Drop, true);
    let a = (Verdict::Accept, true);
    assert_eq!(verdict_of("ct state new drop", &p), d);
    assert_eq!(verdict_of("ct state established,related drop", &p), a);
    assert_eq!(verdict_of("iifname \"veth*\" drop", &p), d);
    assert_eq!(verdict_of("iifname \"eth*\" drop", &p), a);
    assert_eq!(verdict_of("iifname != \"veth12\" drop", &p), a);
    assert_eq!(verdict_of("meta l4proto { tcp, udp } drop", &p), d);
    assert_eq!(verdict_of("tcp dport != { 22, 443 } drop", &p), d);
    assert_eq!(verdict_of("tcp dport 1-79 drop", &p), a);
    assert_eq!(verdict_of("tcp dport >= 80 drop", &p), d);
    assert_eq!(
        verdict_of("udp dport 80 drop", &p),
        a,
        "a udp port of a tcp packet"
    );
    assert_eq!(
        verdict_of("ip6 saddr ::/0 drop", &p),
        a,
        "an IPv6 field of an IPv4 packet"
    );
    assert_eq!(
        verdict_of("meta nfproto ipv4 ip saddr 10.0.0.0/24 drop", &p),
        d
    );
    assert_eq!(
        verdict_of("tcp flags syn drop", &p),
        d,
        "a new TCP packet is a SYN"
    );
    assert_eq!(
        verdict_of("tcp flags & (syn | ack) == syn | ack drop", &p),
        a
    );
    assert_eq!(verdict_of("meta pkttype host drop", &p), d);
    assert_eq!(verdict_of("fib daddr type local drop", &p), d);
    assert_eq!(verdict_of("meta mark 0x1 drop", &p), a);
    p.mark = 1;
    assert_eq!(verdict_of("meta mark 0x1 drop", &p), d);
    assert_eq!(verdict_of("meta mark & 0xff == 0x1 drop", &p), d);
    p.ct_state = CtState::Established;
    assert_eq!(verdict_of("ct state established,related drop", &p), d);
    assert_eq!(
        verdict_of("ct state vmap { established : drop, new : accept }", &p),
        d
    );
    let mut v6 = tcp_in("fd00::2", "fd00::1", 80, "eth0");
    v6.sport = Some(1234);
    assert_eq!(
        verdict_of("ip protocol tcp drop", &v6),
        a,
        "ip protocol means IPv4 in inet"
    );
    assert_eq!(verdict_of("meta l4proto tcp th sport 1234 drop", &v6), d);
}

#[test]
fn typed_evaluator_is_honest_about_what_it_cannot_know() {
    let mut p = tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0");
    p.sport = None;
    // An unknown source port: both ways.
    let (v, must) = verdict_of("tcp sport 1000 drop", &p);
    assert_eq!((v, must), (Verdict::Undetermined, false));
    // A dynamic set is a snapshot.
    let table = "table ip t {\n set seen {\n  type ipv4_addr; flags dynamic,timeout; timeout 1h;\n  elements = { 10.0.0.2 }\n }\n chain i {\n  type filter hook input priority 0;\n  ip saddr @seen drop\n }\n}\n";
    let mut input = native(vec![nft(table)]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let r = trace(&input, &p).unwrap();
    assert_eq!(r.verdict, Verdict::Undetermined);
    assert_eq!(r.branches.len(), 2);
    // A counter-only rule that may match changes nothing: still MUST.
    let (v, must) = verdict_of("tcp sport 1000 counter", &p);
    assert_eq!((v, must), (Verdict::Accept, true));
    // A jump to a chain the dump lacks: undetermined, named.
    let mut input = native(vec![nft(
        "table ip t {\n chain i {\n  type filter hook input priority 0;\n  jump nowhere\n }\n}\n",
    )]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let r = trace(&input, &tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0")).unwrap();
    assert_eq!(r.verdict, Verdict::Undetermined);
    assert!(
        r.main()
            .steps
            .iter()
            .any(|s| s.effect == Effect::MissingChain("nowhere".into()))
    );
    // queue hands the packet to userspace.
    let (v, _) = verdict_of(
        "tcp dport 80 queue num 1",
        &tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0"),
    );
    assert_eq!(v, Verdict::Undetermined);
}

#[test]
fn ct_status_and_ct_mark_follow_the_packet() {
    let rs = nft("table ip c {
  chain pre { type nat hook prerouting priority dstnat; tcp dport 80 dnat to 10.1.0.1:8080 }
  chain fwd { type filter hook forward priority 0; ct status dnat ct mark set 0x7; ct mark 0x7 drop }
}");
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("10.0.0.1")];
    let mut p = tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0");
    p.out_iface = Some("eth1".into());
    let r = trace(&input, &p).unwrap();
    assert_eq!(r.verdict, Verdict::Drop);
    assert!(r.must);
    assert!(
        r.main()
            .steps
            .iter()
            .any(|s| matches!(s.effect, Effect::ConnMark { new: Some(7), .. }))
    );
}

#[test]
fn equal_priorities_are_noted() {
    let ipt_rules = ipt(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 80 -j ACCEPT\nCOMMIT\n",
        Backend::Nft,
    );
    let mut input = TraceInput::new(vec![ipt_rules]);
    input.native = vec![nft(
        "table inet same { chain c { type filter hook input priority 0; tcp dport 80 counter } }",
    )];
    input.local_addrs = vec![ip("10.0.0.1")];
    let r = trace(&input, &tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0")).unwrap();
    assert_eq!(r.verdict, Verdict::Accept);
    assert!(
        r.must,
        "the order of two filter chains does not change accept or drop"
    );
    let note = r
        .main()
        .notes
        .iter()
        .find(|n| n.contains("share priority 0"))
        .unwrap_or_else(|| panic!("{:?}", r.main().notes));
    assert!(note.contains("inet same chain c"), "{note}");
    assert!(note.contains("INPUT"), "{note}");
    // Different priorities: no such note.
    let input = k3s_input();
    let mut p = tcp_in("10.42.1.7", "10.43.21.102", 4317, "flannel.1");
    p.out_iface = Some("cni0".into());
    let r = trace(&input, &p).unwrap();
    assert!(!r.main().notes.iter().any(|n| n.contains("share priority")));
}

#[test]
fn set_index_hashes_exact_keys_and_keeps_the_rest() {
    use crate::typed_eval::{PktVal, SetIndex};
    let rs = corpus(K3S);
    let table = &rs.tables[0];
    let map = table.set("service-ips").unwrap();
    let idx = SetIndex::new(map).unwrap();
    let pv = PktVal::Concat(vec![
        PktVal::Addr(ip("10.43.0.10")),
        PktVal::Int(17),
        PktVal::Int(53),
    ]);
    let c = idx.candidates(&pv).unwrap();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        map.elements[c[0]].data,
        Some(nfscope_ruleset::typed::MapData::Verdict(
            nfscope_ruleset::typed::Verdict::Goto(
                "service-FY5PMXPG-kube-system/kube-dns/udp/dns".into()
            )
        ))
    );
    let miss = PktVal::Concat(vec![
        PktVal::Addr(ip("10.43.0.10")),
        PktVal::Int(6),
        PktVal::Int(1),
    ]);
    assert_eq!(idx.candidates(&miss).unwrap(), Vec::<usize>::new());
    // Interval elements are never hashed: always candidates.
    let set = nft(
        "table ip t { set s { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.168.0.1 } } }",
    );
    let idx = SetIndex::new(set.tables[0].set("s").unwrap()).unwrap();
    assert_eq!(
        idx.candidates(&PktVal::Addr(ip("10.1.2.3"))).unwrap(),
        vec![0]
    );
    assert_eq!(
        idx.candidates(&PktVal::Addr(ip("192.168.0.1"))).unwrap(),
        vec![0, 1]
    );
}

#[test]
fn netdev_egress_matters_only_for_packets_that_leave() {
    let rs = nft(
        "table netdev e { chain eg { type filter hook egress device \"eth1\" priority 0; tcp dport 80 drop } }",
    );
    let mut input = native(vec![rs]);
    input.local_addrs = vec![ip("10.0.0.1")];
    // Delivered locally: never egresses.
    let r = trace(&input, &tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0")).unwrap();
    assert!(r.must);
    // Forwarded out of eth1: named, MAY.
    let mut p = tcp_in("10.0.0.2", "8.8.8.8", 80, "eth0");
    p.out_iface = Some("eth1".into());
    let r = trace(&input, &p).unwrap();
    assert!(!r.must);
    assert!(
        r.main()
            .notes
            .iter()
            .any(|n| n.contains("netdev table e chain eg"))
    );
}

#[test]
fn numgen_and_statistic_matches_are_chances() {
    let p = tcp_in("10.0.0.2", "10.0.0.1", 80, "eth0");
    let table = |rule: &str| {
        let mut input = native(vec![nft(&format!(
            "table ip t {{ chain i {{ type filter hook input priority 0; {rule} }} }}"
        ))]);
        input.local_addrs = vec![ip("10.0.0.1")];
        trace(&input, &p).unwrap()
    };
    // numgen random mod 4 < 1: one in four.
    let r = table("numgen random mod 4 < 1 drop");
    assert_eq!(r.branches.len(), 2);
    let drop = r
        .branches
        .iter()
        .find(|b| b.verdict == Verdict::Drop)
        .unwrap();
    assert!((drop.probability - 0.25).abs() < 1e-9);
    // iptables-nft's statistic translation, probability 0.25 (0x20000000 / 2^31).
    let r = table("meta random & 2147483647 < 536870912 drop");
    let drop = r
        .branches
        .iter()
        .find(|b| b.verdict == Verdict::Drop)
        .unwrap();
    assert!(
        (drop.probability - 0.25).abs() < 1e-6,
        "{}",
        drop.probability
    );
}
