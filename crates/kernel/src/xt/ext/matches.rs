//! Match payloads (`xt_*` / `ipt_*` / `ip6t_*` match info) → ` -m NAME opts`, as iptables
//! 1.8's `extensions/lib*t_*.c` `save` functions print them.

use std::fmt::Write as _;

use nfscope_ruleset::Family;

use super::bytes::{Payload, ipv4_mask, ipv6, ipv6_mask};
use super::{Decoded, save_string};

pub(super) fn payload(data: &[u8], size: usize) -> Result<Payload<'_>, String> {
    Payload::new(data, size).ok_or_else(|| format!("{} bytes, expected {size}", data.len()))
}

fn bang(invert: bool, out: &mut String) {
    if invert {
        out.push_str(" !");
    }
}

/// `mark` revision 1 (`xt_mark_mtinfo1`).
pub(super) fn mark(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 1 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 9)?;
    out.push_str(" -m mark");
    bang(p.u8(8) != 0, out);
    out.push_str(" --mark");
    print_mark(p.u32(0), p.u32(4), out);
    Ok(())
}

/// `connmark` revision 1 (`xt_connmark_mtinfo1`).
pub(super) fn connmark(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 1 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 9)?;
    out.push_str(" -m connmark");
    bang(p.u8(8) != 0, out);
    out.push_str(" --mark");
    print_mark(p.u32(0), p.u32(4), out);
    Ok(())
}

fn print_mark(mark: u32, mask: u32, out: &mut String) {
    if mask == u32::MAX {
        let _ = write!(out, " 0x{mark:x}");
    } else {
        let _ = write!(out, " 0x{mark:x}/0x{mask:x}");
    }
}

const STATE_INVALID: u32 = 1;
const STATE_ESTABLISHED: u32 = 1 << 1;
const STATE_RELATED: u32 = 1 << 2;
const STATE_NEW: u32 = 1 << 3;
/// `XT_STATE_UNTRACKED` of the state match.
const STATE_UNTRACKED: u32 = 1 << 6;
/// `XT_CONNTRACK_STATE_{SNAT,DNAT,UNTRACKED}` of the conntrack match.
const CT_STATE_SNAT: u32 = 1 << 6;
const CT_STATE_DNAT: u32 = 1 << 7;
const CT_STATE_UNTRACKED: u32 = 1 << 8;

const CT_STATE_NAMES: [(u32, &str); 7] = [
    (STATE_INVALID, "INVALID"),
    (STATE_NEW, "NEW"),
    (STATE_RELATED, "RELATED"),
    (STATE_ESTABLISHED, "ESTABLISHED"),
    (CT_STATE_UNTRACKED, "UNTRACKED"),
    (CT_STATE_SNAT, "SNAT"),
    (CT_STATE_DNAT, "DNAT"),
];

fn print_states(mask: u32, names: &[(u32, &str)], out: &mut String) -> Decoded {
    let known: u32 = names.iter().map(|(b, _)| b).sum();
    if mask == 0 || mask & !known != 0 {
        return Err(format!("state mask {mask:#x} not modelled"));
    }
    let mut sep = ' ';
    for &(bit, name) in names {
        if mask & bit != 0 {
            out.push(sep);
            out.push_str(name);
            sep = ',';
        }
    }
    Ok(())
}

const STATE_NAMES: [(u32, &str); 5] = [
    (STATE_INVALID, "INVALID"),
    (STATE_NEW, "NEW"),
    (STATE_RELATED, "RELATED"),
    (STATE_ESTABLISHED, "ESTABLISHED"),
    (STATE_UNTRACKED, "UNTRACKED"),
];

/// `state` revision 0 (`xt_state_info`).
pub(super) fn state(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 4)?;
    out.push_str(" -m state --state");
    print_states(p.u32(0), &STATE_NAMES, out)
}

const CT_STATE: u16 = 1 << 0;
const CT_PROTO: u16 = 1 << 1;
const CT_ADDRS: [(u16, &str); 4] = [
    (1 << 2, "ctorigsrc"),
    (1 << 3, "ctorigdst"),
    (1 << 4, "ctreplsrc"),
    (1 << 5, "ctrepldst"),
];
const CT_STATUS: u16 = 1 << 6;
const CT_EXPIRES: u16 = 1 << 7;
const CT_PORTS: [(u16, &str); 4] = [
    (1 << 8, "ctorigsrcport"),
    (1 << 9, "ctorigdstport"),
    (1 << 10, "ctreplsrcport"),
    (1 << 11, "ctrepldstport"),
];
const CT_DIRECTION: u16 = 1 << 12;
const CT_STATE_ALIAS: u16 = 1 << 13;

/// `conntrack` revisions 1–3 (`xt_conntrack_mtinfo{1,2,3}`); printed as `-m state` when
/// iptables stored a `--state` through the conntrack match (`XT_CONNTRACK_STATE_ALIAS`).
pub(super) fn conntrack(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    let (size, wide) = match rev {
        1 => (152, false),
        2 => (154, true),
        3 => (162, true),
        _ => return Err("revision not modelled".into()),
    };
    let p = payload(data, size)?;
    let flags = p.u16(146);
    let invert = p.u16(148);
    let (state_mask, status_mask) = if wide {
        (u32::from(p.u16(150)), u32::from(p.u16(152)))
    } else {
        (u32::from(p.u8(150)), u32::from(p.u8(151)))
    };
    if flags >> 14 != 0 {
        return Err(format!("match flags {flags:#x} not modelled"));
    }
    if flags & CT_STATE_ALIAS != 0 {
        if flags != CT_STATE | CT_STATE_ALIAS {
            return Err("state alias with other options".into());
        }
        out.push_str(" -m state");
        bang(invert & CT_STATE != 0, out);
        out.push_str(" --state");
        return print_states(state_mask, &CT_STATE_NAMES, out);
    }
    out.push_str(" -m conntrack");
    if flags & CT_STATE != 0 {
        bang(invert & CT_STATE != 0, out);
        out.push_str(" --ctstate");
        print_states(state_mask, &CT_STATE_NAMES, out)?;
    }
    if flags & CT_PROTO != 0 {
        bang(invert & CT_PROTO != 0, out);
        let _ = write!(out, " --ctproto {}", p.u16(136));
    }
    for (i, (bit, opt)) in CT_ADDRS.iter().enumerate() {
        if flags & bit == 0 {
            continue;
        }
        bang(invert & bit != 0, out);
        let _ = write!(out, " --{opt} ");
        let (addr, mask) = (32 * i, 32 * i + 16);
        match family {
            Family::Ipv4 => {
                let _ = write!(out, "{}", p.ipv4(addr));
                ipv4_mask(p.ipv4(mask), out);
            }
            Family::Ipv6 => {
                ipv6(&p.ipv6(addr), out);
                ipv6_mask(&p.ipv6(mask), out);
            }
        }
    }
    for (i, (bit, opt)) in CT_PORTS.iter().enumerate() {
        if flags & bit == 0 {
            continue;
        }
        bang(invert & bit != 0, out);
        // Revision 3 keeps its ports (and their range ends) in host order.
        let (low, high) = if rev == 3 {
            (p.u16(138 + 2 * i), p.u16(154 + 2 * i))
        } else {
            (p.be16(138 + 2 * i), 0)
        };
        if high == 0 || high == low {
            let _ = write!(out, " --{opt} {low}");
        } else {
            let _ = write!(out, " --{opt} {low}:{high}");
        }
    }
    if flags & CT_STATUS != 0 {
        bang(invert & CT_STATUS != 0, out);
        out.push_str(" --ctstatus");
        let names = [
            (1, "EXPECTED"),
            (2, "SEEN_REPLY"),
            (4, "ASSURED"),
            (8, "CONFIRMED"),
        ];
        print_states(status_mask, &names, out)?;
    }
    if flags & CT_EXPIRES != 0 {
        bang(invert & CT_EXPIRES != 0, out);
        let (min, max) = (p.u32(128), p.u32(132));
        if min == max {
            let _ = write!(out, " --ctexpire {min}");
        } else {
            let _ = write!(out, " --ctexpire {min}:{max}");
        }
    }
    if flags & CT_DIRECTION != 0 {
        if invert & CT_DIRECTION != 0 {
            out.push_str(" --ctdir REPLY");
        } else {
            out.push_str(" --ctdir ORIGINAL");
        }
    }
    Ok(())
}

/// `multiport` revisions 0 (`xt_multiport`) and 1 (`xt_multiport_v1`).
pub(super) fn multiport(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    let size = match rev {
        0 => 32,
        1 => 48,
        _ => return Err("revision not modelled".into()),
    };
    let p = payload(data, size)?;
    let count = usize::from(p.u8(1));
    if count > 15 {
        return Err(format!("{count} ports"));
    }
    out.push_str(" -m multiport");
    if rev == 1 {
        bang(p.u8(47) != 0, out);
    }
    out.push_str(match p.u8(0) {
        0 => " --sports ",
        1 => " --dports ",
        2 => " --ports ",
        f => return Err(format!("flags {f} not modelled")),
    });
    let mut i = 0;
    while i < count {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}", p.u16(2 + 2 * i));
        if rev == 1 && p.u8(32 + i) != 0 {
            i += 1;
            if i >= count {
                return Err("port range past the count".into());
            }
            let _ = write!(out, ":{}", p.u16(2 + 2 * i));
        }
        i += 1;
    }
    Ok(())
}

fn print_ports(opt: &str, ports: (u16, u16), invert: bool, out: &mut String) {
    if ports == (0, 0xffff) {
        return;
    }
    bang(invert, out);
    if ports.0 == ports.1 {
        let _ = write!(out, " --{opt} {}", ports.0);
    } else {
        let _ = write!(out, " --{opt} {}:{}", ports.0, ports.1);
    }
}

/// `tcp` (`xt_tcp`).
pub(super) fn tcp(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 12)?;
    let (option, flg_mask, flg_cmp, inv) = (p.u8(8), p.u8(9), p.u8(10), p.u8(11));
    if (flg_mask | flg_cmp) & 0xc0 != 0 {
        return Err("ECE/CWR flags not modelled".into());
    }
    out.push_str(" -m tcp");
    print_ports("sport", (p.u16(0), p.u16(2)), inv & 1 != 0, out);
    print_ports("dport", (p.u16(4), p.u16(6)), inv & 2 != 0, out);
    if option != 0 || inv & 8 != 0 {
        bang(inv & 8 != 0, out);
        let _ = write!(out, " --tcp-option {option}");
    }
    if flg_mask != 0 || inv & 4 != 0 {
        bang(inv & 4 != 0, out);
        out.push_str(" --tcp-flags ");
        tcp_flags(flg_mask, out);
        out.push(' ');
        tcp_flags(flg_cmp, out);
    }
    Ok(())
}

fn tcp_flags(flags: u8, out: &mut String) {
    const NAMES: [&str; 6] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG"];
    if flags == 0 {
        out.push_str("NONE");
        return;
    }
    let mut sep = "";
    for (i, name) in NAMES.iter().enumerate() {
        if flags & (1 << i) != 0 {
            out.push_str(sep);
            out.push_str(name);
            sep = ",";
        }
    }
}

/// `udp` (`xt_udp`).
pub(super) fn udp(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 9)?;
    let inv = p.u8(8);
    out.push_str(" -m udp");
    print_ports("sport", (p.u16(0), p.u16(2)), inv & 1 != 0, out);
    print_ports("dport", (p.u16(4), p.u16(6)), inv & 2 != 0, out);
    Ok(())
}

/// `icmp` (`ipt_icmp`), IPv4 only.
pub(super) fn icmp(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 || family != Family::Ipv4 {
        return Err("revision or family not modelled".into());
    }
    let p = payload(data, 4)?;
    let (kind, code_min, code_max, inv) = (p.u8(0), p.u8(1), p.u8(2), p.u8(3));
    out.push_str(" -m icmp");
    bang(inv & 1 != 0, out);
    if kind == 0xff {
        out.push_str(" --icmp-type any");
        return Ok(());
    }
    let _ = write!(out, " --icmp-type {kind}");
    if code_min != 0 || code_max != 0xff {
        let _ = write!(out, "/{code_min}");
    }
    Ok(())
}

/// `icmp6` (`ip6t_icmp`), IPv6 only.
pub(super) fn icmp6(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 || family != Family::Ipv6 {
        return Err("revision or family not modelled".into());
    }
    let p = payload(data, 4)?;
    let (kind, code_min, code_max, inv) = (p.u8(0), p.u8(1), p.u8(2), p.u8(3));
    out.push_str(" -m icmp6");
    bang(inv & 1 != 0, out);
    let _ = write!(out, " --icmpv6-type {kind}");
    if code_min != 0 || code_max != 0xff {
        let _ = write!(out, "/{code_min}");
    }
    Ok(())
}

/// `addrtype` revision 1 (`xt_addrtype_info_v1`).
pub(super) fn addrtype(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    const NAMES: [&str; 12] = [
        "UNSPEC",
        "UNICAST",
        "LOCAL",
        "BROADCAST",
        "ANYCAST",
        "MULTICAST",
        "BLACKHOLE",
        "UNREACHABLE",
        "PROHIBIT",
        "THROW",
        "NAT",
        "XRESOLVE",
    ];
    if rev != 1 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 8)?;
    let (source, dest, flags) = (p.u16(0), p.u16(2), p.u32(4));
    if (source | dest) >> NAMES.len() != 0 || flags & !0xf != 0 {
        return Err("address types or flags not modelled".into());
    }
    let types = |mask: u16, out: &mut String| {
        let mut sep = "";
        for (i, name) in NAMES.iter().enumerate() {
            if mask & (1 << i) != 0 {
                out.push_str(sep);
                out.push_str(name);
                sep = ",";
            }
        }
    };
    out.push_str(" -m addrtype");
    if source != 0 {
        bang(flags & 1 != 0, out);
        out.push_str(" --src-type ");
        types(source, out);
    }
    if dest != 0 {
        bang(flags & 2 != 0, out);
        out.push_str(" --dst-type ");
        types(dest, out);
    }
    if flags & 4 != 0 {
        out.push_str(" --limit-iface-in");
    }
    if flags & 8 != 0 {
        out.push_str(" --limit-iface-out");
    }
    Ok(())
}

/// `statistic` (`xt_statistic_info`).
pub(super) fn statistic(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 24)?;
    let (mode, flags) = (p.u16(0), p.u16(2));
    if flags & !1 != 0 {
        return Err(format!("flags {flags:#x} not modelled"));
    }
    let inv = if flags & 1 != 0 { " !" } else { "" };
    out.push_str(" -m statistic");
    match mode {
        0 => {
            let probability = f64::from(p.u32(4)) / f64::from(0x8000_0000u32);
            let _ = write!(out, " --mode random{inv} --probability {probability:.11}");
        }
        1 => {
            let (every, packet) = (p.u32(4), p.u32(8));
            let _ = write!(
                out,
                " --mode nth{inv} --every {} --packet {packet}",
                u64::from(every) + 1
            );
        }
        m => return Err(format!("mode {m} not modelled")),
    }
    Ok(())
}

/// `physdev` (`xt_physdev_info`).
pub(super) fn physdev(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 66)?;
    let (invert, bitmask) = (p.u8(64), p.u8(65));
    if bitmask & !0x1f != 0 {
        return Err(format!("bitmask {bitmask:#x} not modelled"));
    }
    let name = |at| p.str(at, 16).ok_or("interface name not UTF-8");
    let flag = |bit: u8, opt: &str, out: &mut String| {
        if bitmask & bit != 0 {
            bang(invert & bit != 0, out);
            out.push_str(opt);
        }
    };
    out.push_str(" -m physdev");
    flag(0x01, " --physdev-in", out);
    if bitmask & 0x01 != 0 {
        save_string(name(0)?, out);
    }
    flag(0x02, " --physdev-out", out);
    if bitmask & 0x02 != 0 {
        save_string(name(32)?, out);
    }
    flag(0x08, " --physdev-is-in", out);
    flag(0x10, " --physdev-is-out", out);
    flag(0x04, " --physdev-is-bridged", out);
    Ok(())
}

/// `mac` (`xt_mac_info`).
pub(super) fn mac(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 12)?;
    out.push_str(" -m mac");
    bang(p.i32(8) != 0, out);
    out.push_str(" --mac-source ");
    for (i, b) in p.bytes(0, 6).iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02x}");
    }
    Ok(())
}

/// `iprange` revision 1 (`xt_iprange_mtinfo`).
pub(super) fn iprange(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 1 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 65)?;
    let flags = p.u8(64);
    if flags & !0x33 != 0 {
        return Err(format!("flags {flags:#x} not modelled"));
    }
    let addr = |at: usize, out: &mut String| match family {
        Family::Ipv4 => {
            let _ = write!(out, "{}", p.ipv4(at));
        }
        Family::Ipv6 => ipv6(&p.ipv6(at), out),
    };
    out.push_str(" -m iprange");
    for (bit, inv, opt, at) in [(1, 0x10, "src-range", 0), (2, 0x20, "dst-range", 32)] {
        if flags & bit != 0 {
            bang(flags & inv != 0, out);
            let _ = write!(out, " --{opt} ");
            addr(at, out);
            out.push('-');
            addr(at + 16, out);
        }
    }
    Ok(())
}

/// `owner` revision 1 (`xt_owner_match_info`).
pub(super) fn owner(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 1 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 18)?;
    let (matched, invert) = (p.u8(16), p.u8(17));
    if matched & !0xf != 0 {
        return Err(format!("match flags {matched:#x} not modelled"));
    }
    out.push_str(" -m owner");
    let items: [(u8, &str, Option<usize>); 4] = [
        (4, "--socket-exists", None),
        (1, "--uid-owner", Some(0)),
        (2, "--gid-owner", Some(8)),
        (8, "--suppl-groups", None),
    ];
    for (bit, opt, range) in items {
        if matched & bit == 0 {
            continue;
        }
        bang(invert & bit != 0, out);
        let _ = write!(out, " {opt}");
        if let Some(at) = range {
            let (min, max) = (p.u32(at), p.u32(at + 4));
            if min == max {
                let _ = write!(out, " {min}");
            } else {
                let _ = write!(out, " {min}-{max}");
            }
        }
    }
    Ok(())
}

/// `socket` revisions 0–3 (`xt_socket_mtinfo{1,2,3}`: one flags byte).
pub(super) fn socket(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    out.push_str(" -m socket");
    if rev == 0 {
        return if data.is_empty() {
            Ok(())
        } else {
            Err("revision 0 with data".into())
        };
    }
    if rev > 3 {
        return Err("revision not modelled".into());
    }
    let flags = payload(data, 1)?.u8(0);
    let known = match rev {
        1 => 1,
        2 => 3,
        _ => 7,
    };
    if flags & !known != 0 {
        return Err(format!("flags {flags:#x} not modelled"));
    }
    for (bit, opt) in [
        (1, " --transparent"),
        (2, " --nowildcard"),
        (4, " --restore-skmark"),
    ] {
        if flags & bit != 0 {
            out.push_str(opt);
        }
    }
    Ok(())
}

/// `limit` (`xt_rateinfo`).
pub(super) fn limit(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 40)?;
    let (avg, burst) = (p.u32(0), p.u32(4));
    if avg == 0 {
        return Err("infinite rate not modelled".into());
    }
    out.push_str(" -m limit --limit");
    print_rate(avg, out);
    if burst != 5 {
        let _ = write!(out, " --limit-burst {burst}");
    }
    Ok(())
}

/// libxt_limit's `print_rate`: the coarsest unit that still shows the rate (periods are in
/// 1/10000 s).
pub(crate) fn print_rate(period: u32, out: &mut String) {
    const RATES: [(&str, u32); 4] = [
        ("day", 10_000 * 24 * 60 * 60),
        ("hour", 10_000 * 60 * 60),
        ("min", 10_000 * 60),
        ("sec", 10_000),
    ];
    let mut i = 1;
    while i < RATES.len() {
        let mult = RATES[i].1;
        if period > mult || mult / period < mult % period {
            break;
        }
        i += 1;
    }
    let (name, mult) = RATES[i - 1];
    let _ = write!(out, " {}/{name}", mult / period);
}

/// `recent` revisions 0 (`xt_recent_mtinfo`) and 1 (`xt_recent_mtinfo_v1`).
pub(super) fn recent(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    let size = match rev {
        0 => 211,
        1 => 228,
        _ => return Err("revision not modelled".into()),
    };
    let p = payload(data, size)?;
    let (seconds, hit_count, check_set, invert) = (p.u32(0), p.u32(4), p.u8(8), p.u8(9));
    let name = p.str(10, 200).ok_or("list name not UTF-8")?;
    let side = p.u8(210);
    if check_set & !0x3f != 0 || side > 1 {
        return Err("flags not modelled".into());
    }
    out.push_str(" -m recent");
    bang(invert != 0, out);
    for (bit, opt) in [
        (2, " --set"),
        (1, " --rcheck"),
        (4, " --update"),
        (8, " --remove"),
    ] {
        if check_set & bit != 0 {
            out.push_str(opt);
        }
    }
    if seconds != 0 {
        let _ = write!(out, " --seconds {}", seconds as i32);
    }
    if check_set & 32 != 0 {
        out.push_str(" --reap");
    }
    if hit_count != 0 {
        let _ = write!(out, " --hitcount {}", hit_count as i32);
    }
    if check_set & 16 != 0 {
        out.push_str(" --rttl");
    }
    let _ = write!(out, " --name {name}");
    if rev == 1 {
        out.push_str(" --mask ");
        match family {
            Family::Ipv4 => {
                let _ = write!(out, "{}", p.ipv4(212));
            }
            Family::Ipv6 => ipv6(&p.ipv6(212), out),
        }
    }
    out.push_str(if side == 0 { " --rsource" } else { " --rdest" });
    Ok(())
}

/// `length` (`xt_length_info`).
pub(super) fn length(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 5)?;
    out.push_str(" -m length");
    bang(p.u8(4) != 0, out);
    range_u16(" --length ", p.u16(0), p.u16(2), out);
    Ok(())
}

fn range_u16(opt: &str, min: u16, max: u16, out: &mut String) {
    out.push_str(opt);
    if min == max {
        let _ = write!(out, "{min}");
    } else {
        let _ = write!(out, "{min}:{max}");
    }
}

/// `pkttype` (`xt_pkttype_info`).
pub(super) fn pkttype(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 8)?;
    out.push_str(" -m pkttype");
    bang(p.i32(4) != 0, out);
    out.push_str(" --pkt-type ");
    match p.i32(0) {
        0 => out.push_str("unicast"),
        1 => out.push_str("broadcast"),
        2 => out.push_str("multicast"),
        3 => out.push_str("otherhost"),
        n => {
            let _ = write!(out, "{n}");
        }
    }
    Ok(())
}

/// `tcpmss` match (`xt_tcpmss_match_info`).
pub(super) fn tcpmss(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 5)?;
    out.push_str(" -m tcpmss");
    bang(p.u8(4) != 0, out);
    range_u16(" --mss ", p.u16(0), p.u16(2), out);
    Ok(())
}

/// `rpfilter` (`xt_rpfilter_info`).
pub(super) fn rpfilter(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 {
        return Err("revision not modelled".into());
    }
    let flags = payload(data, 1)?.u8(0);
    if flags & !0xf != 0 {
        return Err(format!("flags {flags:#x} not modelled"));
    }
    out.push_str(" -m rpfilter");
    for (bit, opt) in [
        (1, " --loose"),
        (2, " --validmark"),
        (4, " --accept-local"),
        (8, " --invert"),
    ] {
        if flags & bit != 0 {
            out.push_str(opt);
        }
    }
    Ok(())
}

/// `ttl` (`ipt_ttl_info`), IPv4 only.
pub(super) fn ttl(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 0 || family != Family::Ipv4 {
        return Err("revision or family not modelled".into());
    }
    let p = payload(data, 2)?;
    out.push_str(" -m ttl");
    out.push_str(match p.u8(0) {
        0 => " --ttl-eq",
        1 => " ! --ttl-eq",
        2 => " --ttl-lt",
        3 => " --ttl-gt",
        m => return Err(format!("mode {m} not modelled")),
    });
    let _ = write!(out, " {}", p.u8(1));
    Ok(())
}

/// `hashlimit` revisions 2 (`xt_hashlimit_mtinfo2`) and 3 (`xt_hashlimit_mtinfo3`), packet
/// rates only: `char name[255]`, then the config at offset 256.
pub(super) fn hashlimit(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    const SIP: u32 = 4;
    const SPT: u32 = 8;
    const DIP: u32 = 1;
    const DPT: u32 = 2;
    const INVERT: u32 = 0x10;
    const BYTES: u32 = 0x20;
    const RATE_MATCH: u32 = 0x40;
    let p = match rev {
        2 => payload(data, 304)?,
        3 => payload(data, 312)?,
        _ => return Err("revision not modelled".into()),
    };
    let c = 256;
    let (avg, burst) = (p.u64(c), p.u64(c + 8));
    let (mode, size, max, gc_interval, expire) = (
        p.u32(c + 16),
        p.u32(c + 20),
        p.u32(c + 24),
        p.u32(c + 28),
        p.u32(c + 32),
    );
    let (interval, masks) = if rev == 3 {
        (p.u32(c + 36), c + 40)
    } else {
        (1, c + 36)
    };
    let (srcmask, dstmask) = (p.u8(masks), p.u8(masks + 1));
    let known = SIP | SPT | DIP | DPT | INVERT | if rev == 3 { RATE_MATCH } else { 0 };
    if mode & BYTES != 0 || mode & !known != 0 {
        return Err(format!("mode {mode:#x} not modelled"));
    }
    let period = avg;
    if period == 0 {
        return Err("infinite rate not modelled".into());
    }
    let name = p.str(0, 255).ok_or("name not UTF-8")?;
    out.push_str(" -m hashlimit");
    out.push_str(if mode & INVERT != 0 {
        " --hashlimit-above"
    } else {
        " --hashlimit-upto"
    });
    let rates: [(&str, u64); 4] = [
        ("day", 1_000_000 * 24 * 60 * 60),
        ("hour", 1_000_000 * 60 * 60),
        ("min", 1_000_000 * 60),
        ("sec", 1_000_000),
    ];
    let mut i = 1;
    while i < rates.len() {
        let mult = rates[i].1;
        if period > mult || mult / period < mult % period {
            break;
        }
        i += 1;
    }
    let _ = write!(
        out,
        " {}/{} --hashlimit-burst {burst}",
        rates[i - 1].1 / period,
        rates[i - 1].0
    );
    // The default expiry: the rate's unit, in milliseconds.
    let quantum = rates[i - 1].1 / 1_000_000 * 1000;
    if mode & (SIP | SPT | DIP | DPT) != 0 {
        out.push_str(" --hashlimit-mode ");
        let mut sep = "";
        for (bit, name) in [
            (SIP, "srcip"),
            (SPT, "srcport"),
            (DIP, "dstip"),
            (DPT, "dstport"),
        ] {
            if mode & bit != 0 {
                out.push_str(sep);
                out.push_str(name);
                sep = ",";
            }
        }
    }
    let _ = write!(out, " --hashlimit-name {name}");
    if size != 0 {
        let _ = write!(out, " --hashlimit-htable-size {size}");
    }
    if max != 0 {
        let _ = write!(out, " --hashlimit-htable-max {max}");
    }
    if gc_interval != 1000 {
        let _ = write!(out, " --hashlimit-htable-gcinterval {gc_interval}");
    }
    if u64::from(expire) != quantum {
        let _ = write!(out, " --hashlimit-htable-expire {expire}");
    }
    let dmask = match family {
        Family::Ipv4 => 32,
        Family::Ipv6 => 128,
    };
    if srcmask != dmask {
        let _ = write!(out, " --hashlimit-srcmask {srcmask}");
    }
    if dstmask != dmask {
        let _ = write!(out, " --hashlimit-dstmask {dstmask}");
    }
    if mode & RATE_MATCH != 0 {
        out.push_str(" --hashlimit-rate-match");
        if interval != 1 {
            let _ = write!(out, " --hashlimit-rate-interval {interval}");
        }
    }
    Ok(())
}

/// `connlimit` revision 1 (`xt_connlimit_info`).
pub(super) fn connlimit(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 1 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 32)?;
    let (limit, flags) = (p.u32(16), p.u32(20));
    if flags & !3 != 0 {
        return Err(format!("flags {flags:#x} not modelled"));
    }
    let mask = match family {
        Family::Ipv4 => super::bytes::prefix_len(p.bytes(0, 4)),
        Family::Ipv6 => super::bytes::prefix_len(p.bytes(0, 16)),
    }
    .ok_or("mask not a prefix")?;
    let above = if flags & 1 != 0 { "upto" } else { "above" };
    let _ = write!(
        out,
        " -m connlimit --connlimit-{above} {limit} --connlimit-mask {mask}"
    );
    out.push_str(if flags & 2 != 0 {
        " --connlimit-daddr"
    } else {
        " --connlimit-saddr"
    });
    Ok(())
}
