//! Fuzz the tracer over random rulesets, ipsets and packets: it must never panic, must answer or
//! refuse with an error, and must stay within its branch cap (libFuzzer's `-rss_limit_mb` and
//! `-timeout` bound memory and time per input).
//!
//! Input layout: 24 bytes describe the packet (family, addresses, protocol, ports, interfaces,
//! conntrack state, mark); the rest is UTF-8 text, split at the first `\n---\n` into an
//! `iptables-save` ruleset (parsed leniently) and an `ipset save` text.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use nfscope_ruleset::{ParseOptions, parse_ipsets, parse_ruleset};
use nfscope_trace::{CtState, Packet, Proto, TraceInput, trace};

const HEADER: usize = 24;
const MAX_BRANCHES: usize = 64;
const IFACES: [&str; 4] = ["eth0", "cni0", "lo", "veth1"];

fn addr(v6: bool, b: &[u8]) -> IpAddr {
    if v6 {
        let mut o = [0u8; 16];
        o[0] = 0xfd;
        o[12..16].copy_from_slice(&b[..4]);
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

fn packet(h: &[u8]) -> Packet {
    let v6 = h[0] & 1 == 1;
    let proto = match (h[0] >> 1) % 4 {
        0 => Proto::Tcp,
        1 => Proto::Udp,
        2 => Proto::Sctp,
        _ if v6 => Proto::Icmpv6,
        _ => Proto::Icmp,
    };
    let mut p = Packet::new(addr(v6, &h[1..5]), addr(v6, &h[5..9]), proto);
    if proto.has_ports() {
        p.sport = Some(u16::from_be_bytes([h[9], h[10]]));
        p.dport = Some(u16::from_be_bytes([h[11], h[12]]));
    }
    p.in_iface = (h[13] & 4 != 0).then(|| IFACES[usize::from(h[13] & 3)].to_owned());
    p.out_iface = (h[14] & 4 != 0).then(|| IFACES[usize::from(h[14] & 3)].to_owned());
    p.ct_state = match h[15] % 4 {
        0 => CtState::New,
        1 => CtState::Established,
        2 => CtState::Related,
        _ => CtState::Invalid,
    };
    p.mark = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    p
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let (header, rest) = data.split_at(HEADER);
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (rules, sets) = text.split_once("\n---\n").unwrap_or((text, ""));
    let options = ParseOptions { lenient: true, ..Default::default() };
    let Ok(ruleset) = parse_ruleset(rules, &options) else { return };
    let mut input = TraceInput::new(vec![ruleset]);
    input.ipsets = parse_ipsets(sets).ok();
    input.local_addrs = vec![addr(header[0] & 1 == 1, &header[20..24])];
    input.max_branches = MAX_BRANCHES;
    let packet = packet(header);
    if packet.validate().is_err() {
        return;
    }
    if let Ok(result) = trace(&input, &packet) {
        assert!(
            result.branches.len() <= MAX_BRANCHES,
            "{} branches over a cap of {MAX_BRANCHES}",
            result.branches.len()
        );
    }
});
