//! iptables targets applied from their lowered statements: one test per target kind, each
//! failing if the statement were applied with the wrong meaning (xor for set, the network bits
//! for the host bits, the last port of a range, a dropped unknown option).

use std::net::IpAddr;

use nfscope_ruleset::{Backend, Family, ParseOptions, Ruleset, parse_ruleset};

use super::*;

fn rules(text: &str, family: Family) -> Ruleset {
    parse_ruleset(
        text,
        &ParseOptions {
            family: Some(family),
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

fn incoming(src: &str, dst: &str, dport: u16) -> Packet {
    let mut p = Packet::new(ip(src), ip(dst), Proto::Tcp);
    p.dport = Some(dport);
    p.sport = Some(40000);
    p.in_iface = Some("eth0".into());
    p
}

/// A mangle PREROUTING `target` rule, then a filter INPUT that accepts only `accept_if` (drop
/// policy); the packet is local.
fn mark_verdict(target: &str, accept_if: &str, p: &Packet) -> TraceResult {
    let text = format!(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING {target}\nCOMMIT\n\
         *filter\n:INPUT DROP [0:0]\n-A INPUT {accept_if} -j ACCEPT\nCOMMIT\n"
    );
    let mut input = TraceInput::new(vec![rules(&text, Family::Ipv4)]);
    input.local_addrs = vec![p.dst];
    trace(&input, p).unwrap()
}

#[test]
fn mark_xor_is_not_set() {
    let mut p = incoming("192.0.2.1", "192.0.2.9", 80);
    p.mark = 0x5;
    // 0x5 ^ 0x3 = 0x6; a set would give 0x3.
    let xor = mark_verdict("-j MARK --xor-mark 0x3", "-m mark --mark 0x6", &p);
    assert_eq!((xor.verdict, xor.must), (Verdict::Accept, true));
    let set = mark_verdict("-j MARK --set-mark 0x3", "-m mark --mark 0x6", &p);
    assert_eq!(set.verdict, Verdict::Drop);
    // `--set-mark 0x10/0x0f` clears 0x1f then sets 0x10: 0xff → 0xf0.
    p.mark = 0xff;
    let masked = mark_verdict("-j MARK --set-mark 0x10/0x0f", "-m mark --mark 0xf0", &p);
    assert_eq!(masked.verdict, Verdict::Accept);
    let steps: Vec<_> = masked
        .main()
        .steps
        .iter()
        .filter_map(|s| match s.effect {
            Effect::Mark { old, new } => Some((old, new)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![(0xff, 0xf0)]);
}

#[test]
fn connmark_copies_with_their_masks() {
    let mut p = incoming("192.0.2.1", "192.0.2.9", 80);
    p.ct_state = CtState::Established;
    p.mark = 0xab;
    p.ct_mark = Some(0x1200);
    // Save: (0x1200 & !0xf0) ^ (0xab & 0x0f) = 0x120b (not 0x12ab, not 0xab).
    let save = mark_verdict(
        "-j CONNMARK --save-mark --nfmask 0x0f --ctmask 0xf0",
        "-m connmark --mark 0x120b",
        &p,
    );
    assert_eq!((save.verdict, save.must), (Verdict::Accept, true));
    // Restore: (0xab & !0xff00) ^ (0x1200 & 0xff00) = 0x12ab.
    let restore = mark_verdict(
        "-j CONNMARK --restore-mark --mask 0xff00",
        "-m mark --mark 0x12ab",
        &p,
    );
    assert_eq!((restore.verdict, restore.must), (Verdict::Accept, true));
    assert!(
        restore
            .main()
            .steps
            .iter()
            .any(|s| s.effect == Effect::RestoreMark { new: 0x12ab })
    );
}

#[test]
fn netmap_keeps_the_host_bits() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
        -A PREROUTING -d 192.0.2.0/24 -j NETMAP --to 10.9.0.0/24\n\
        -A POSTROUTING -s 10.1.0.0/16 -j NETMAP --to 172.16.0.0/16\nCOMMIT\n";
    let input = TraceInput::new(vec![rules(text, Family::Ipv4)]);
    let mut p = incoming("10.1.2.3", "192.0.2.77", 80);
    p.out_iface = Some("eth1".into());
    let result = trace(&input, &p).unwrap();
    let b = result.main();
    assert_eq!(b.dnat, Some((ip("10.9.0.77"), Some(80))));
    assert_eq!(b.snat.as_deref(), Some("172.16.2.3"));
    // IPv6: a /64 prefix replaces the first 64 bits only.
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n\
        -A PREROUTING -j NETMAP --to fd00:9::/64\nCOMMIT\n";
    let input = TraceInput::new(vec![rules(text, Family::Ipv6)]);
    let result = trace(&input, &incoming("2001:db8::1", "2001:db8:0:1::42", 80)).unwrap();
    assert_eq!(result.main().dnat, Some((ip("fd00:9::42"), Some(80))));
}

#[test]
fn nat_port_ranges_take_their_first_port_and_say_so() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n\
        -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5:8000-8010\n\
        -A PREROUTING -p tcp --dport 81 -j REDIRECT --to-ports 9000-9010\nCOMMIT\n";
    let mut input = TraceInput::new(vec![rules(text, Family::Ipv4)]);
    input.local_addrs = vec![ip("192.0.2.9")];
    let dnat = trace(&input, &incoming("192.0.2.1", "192.0.2.9", 80)).unwrap();
    let b = dnat.main();
    assert_eq!(b.dnat, Some((ip("10.0.0.5"), Some(8000))));
    assert!(b.notes.iter().any(|n| n.contains("picks one address/port")));
    let redirect = trace(&input, &incoming("192.0.2.1", "192.0.2.9", 81)).unwrap();
    let b = redirect.main();
    assert_eq!(b.dnat_label.as_deref(), Some("REDIRECT(eth0):9000"));
}

#[test]
fn tproxy_uses_the_packets_port_for_on_port_0_and_xmarks() {
    let text = "*mangle\n:PREROUTING ACCEPT [0:0]\n\
        -A PREROUTING -p tcp -j TPROXY --on-port 0 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1\nCOMMIT\n";
    let input = TraceInput::new(vec![rules(text, Family::Ipv4)]);
    let mut p = incoming("192.0.2.1", "198.51.100.7", 8443);
    p.mark = 0x10;
    let result = trace(&input, &p).unwrap();
    // The socket branch and the no-socket DROP branch.
    assert_eq!(result.verdict, Verdict::Undetermined);
    let tproxy = result
        .branches
        .iter()
        .flat_map(|b| &b.steps)
        .find_map(|s| match &s.effect {
            Effect::Tproxy {
                to,
                old_mark,
                new_mark,
            } => Some((to.clone(), *old_mark, *new_mark)),
            _ => None,
        });
    // `0x1/0x1` keeps the other bits: 0x10 → 0x11 (a set would give 0x1).
    assert_eq!(tproxy, Some(("127.0.0.1:8443".into(), 0x10, 0x11)));
    assert!(result.branches.iter().any(|b| b.verdict == Verdict::Drop));
}

#[test]
fn an_unknown_target_option_is_may_not_a_silent_pass() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n\
        -A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.5:80 --bogus\nCOMMIT\n\
        *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n";
    let input = TraceInput::new(vec![rules(text, Family::Ipv4)]);
    let result = trace(&input, &incoming("192.0.2.1", "192.0.2.9", 80)).unwrap();
    assert_eq!(result.verdict, Verdict::Undetermined);
    assert!(!result.must);
    assert!(result.main().steps.iter().any(|s| matches!(
        &s.effect,
        Effect::UnknownTarget(t) if t.contains("--bogus")
    )));
    assert_eq!(result.main().dnat, None);
}
