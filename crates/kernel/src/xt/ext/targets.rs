//! Target payloads (`xt_*` / `ipt_*` / `ip6t_*` target info) → ` -j NAME opts`, as iptables
//! 1.8's `extensions/lib*t_*.c` `save` functions print them.

use std::fmt::Write as _;

use nfscope_ruleset::Family;

use super::bytes::{Payload, ipv6, prefix_len};
use super::{Decoded, save_string};

fn payload(data: &[u8], size: usize) -> Result<Payload<'_>, String> {
    Payload::new(data, size).ok_or_else(|| format!("{} bytes, expected {size}", data.len()))
}

fn rev0(rev: u8) -> Result<(), String> {
    if rev == 0 {
        Ok(())
    } else {
        Err("revision not modelled".into())
    }
}

/// `REJECT`: `ipt_reject_info` (IPv4) or `ip6t_reject_info` (IPv6).
pub(super) fn reject(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    let with = payload(data, 4)?.u32(0);
    let name = match (family, with) {
        (Family::Ipv4, 0) => "icmp-net-unreachable",
        (Family::Ipv4, 1) => "icmp-host-unreachable",
        (Family::Ipv4, 2) => "icmp-proto-unreachable",
        (Family::Ipv4, 3) => "icmp-port-unreachable",
        (Family::Ipv4, 5) => "icmp-net-prohibited",
        (Family::Ipv4, 6) => "icmp-host-prohibited",
        (Family::Ipv4, 7) => "tcp-reset",
        (Family::Ipv4, 8) => "icmp-admin-prohibited",
        (Family::Ipv6, 0) => "icmp6-no-route",
        (Family::Ipv6, 1) => "icmp6-adm-prohibited",
        (Family::Ipv6, 3) => "icmp6-addr-unreachable",
        (Family::Ipv6, 4) => "icmp6-port-unreachable",
        (Family::Ipv6, 6) => "tcp-reset",
        (Family::Ipv6, 7) => "icmp6-policy-fail",
        (Family::Ipv6, 8) => "icmp6-reject-route",
        _ => return Err(format!("reject-with {with} not modelled")),
    };
    let _ = write!(out, " -j REJECT --reject-with {name}");
    Ok(())
}

const MAP_IPS: u32 = 1;
const PROTO_SPECIFIED: u32 = 2;
const PROTO_RANDOM: u32 = 4;
const PERSISTENT: u32 = 8;
const PROTO_RANDOM_FULLY: u32 = 16;
const PROTO_OFFSET: u32 = 32;

/// One NAT range, from any of the three layouts.
struct NatRange {
    flags: u32,
    min_addr: [u8; 16],
    max_addr: [u8; 16],
    min_port: u16,
    max_port: u16,
    base_port: u16,
}

/// `nf_nat_ipv4_multi_range_compat` (revision 0 of the IPv4 NAT targets; exactly one range),
/// `nf_nat_range` (revision 1, IPv6 revision 0) or `nf_nat_range2` (revision 2).
fn nat_range(family: Family, layout: u8, data: &[u8]) -> Result<NatRange, String> {
    if layout == 0 {
        if family != Family::Ipv4 {
            return Err("IPv4 range layout for IPv6".into());
        }
        let p = payload(data, 20)?;
        if p.u32(0) != 1 {
            return Err(format!("{} ranges", p.u32(0)));
        }
        let mut min_addr = [0; 16];
        let mut max_addr = [0; 16];
        min_addr[..4].copy_from_slice(p.bytes(8, 4));
        max_addr[..4].copy_from_slice(p.bytes(12, 4));
        return Ok(NatRange {
            flags: p.u32(4),
            min_addr,
            max_addr,
            min_port: p.be16(16),
            max_port: p.be16(18),
            base_port: 0,
        });
    }
    let p = payload(data, if layout == 1 { 40 } else { 42 })?;
    Ok(NatRange {
        flags: p.u32(0),
        min_addr: p.ipv6(4),
        max_addr: p.ipv6(20),
        min_port: p.be16(36),
        max_port: p.be16(38),
        base_port: if layout == 2 { p.be16(40) } else { 0 },
    })
}

fn nat_addr(family: Family, addr: &[u8; 16], out: &mut String) {
    match family {
        Family::Ipv4 => {
            let _ = write!(
                out,
                "{}",
                std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])
            );
        }
        Family::Ipv6 => ipv6(addr, out),
    }
}

fn nat_flags(r: &NatRange, out: &mut String) {
    if r.flags & PROTO_RANDOM != 0 {
        out.push_str(" --random");
    }
    if r.flags & PROTO_RANDOM_FULLY != 0 {
        out.push_str(" --random-fully");
    }
    if r.flags & PERSISTENT != 0 {
        out.push_str(" --persistent");
    }
}

/// `SNAT` / `DNAT`, revisions 0 (IPv4), 1 and 2.
fn snat_dnat(
    target: &str,
    opt: &str,
    family: Family,
    rev: u8,
    data: &[u8],
    out: &mut String,
) -> Decoded {
    if rev > 2 || (rev == 0 && family != Family::Ipv4) {
        return Err("revision not modelled".into());
    }
    let r = nat_range(family, rev, data)?;
    if r.flags & !(MAP_IPS | PROTO_SPECIFIED | PROTO_RANDOM | PERSISTENT | PROTO_RANDOM_FULLY) != 0
    {
        return Err(format!("flags {:#x} not modelled", r.flags));
    }
    let _ = write!(out, " -j {target}");
    if r.flags & (MAP_IPS | PROTO_SPECIFIED) != 0 {
        let _ = write!(out, " --{opt} ");
        let brackets = family == Family::Ipv6 && r.flags & PROTO_SPECIFIED != 0;
        if r.flags & MAP_IPS != 0 {
            if brackets {
                out.push('[');
            }
            nat_addr(family, &r.min_addr, out);
            if r.max_addr != r.min_addr {
                out.push('-');
                nat_addr(family, &r.max_addr, out);
            }
            if brackets {
                out.push(']');
            }
        }
        if r.flags & PROTO_SPECIFIED != 0 {
            let _ = write!(out, ":{}", r.min_port);
            if r.max_port != r.min_port {
                let _ = write!(out, "-{}", r.max_port);
            }
            if r.flags & PROTO_OFFSET != 0 {
                let _ = write!(out, "/{}", r.base_port);
            }
        }
    }
    nat_flags(&r, out);
    Ok(())
}

pub(super) fn snat(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    snat_dnat("SNAT", "to-source", family, rev, data, out)
}

pub(super) fn dnat(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    snat_dnat("DNAT", "to-destination", family, rev, data, out)
}

/// `MASQUERADE` / `REDIRECT` revision 0: the IPv4 compat range or IPv6 `nf_nat_range`; only
/// ports and flags.
fn to_ports(target: &str, family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    let layout = match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    };
    let r = nat_range(family, layout, data)?;
    if r.flags & !(PROTO_SPECIFIED | PROTO_RANDOM | PROTO_RANDOM_FULLY) != 0 {
        return Err(format!("flags {:#x} not modelled", r.flags));
    }
    if target == "REDIRECT" && r.flags & PROTO_RANDOM_FULLY != 0 {
        return Err("REDIRECT --random-fully not modelled".into());
    }
    let _ = write!(out, " -j {target}");
    if r.flags & PROTO_SPECIFIED != 0 {
        let _ = write!(out, " --to-ports {}", r.min_port);
        if r.max_port != r.min_port {
            let _ = write!(out, "-{}", r.max_port);
        }
    }
    nat_flags(&r, out);
    Ok(())
}

pub(super) fn masquerade(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    to_ports("MASQUERADE", family, rev, data, out)
}

pub(super) fn redirect(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    to_ports("REDIRECT", family, rev, data, out)
}

/// `NETMAP` revision 0: the IPv4 compat range or IPv6 `nf_nat_range`.
pub(super) fn netmap(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    let layout = match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    };
    let r = nat_range(family, layout, data)?;
    if r.flags != MAP_IPS {
        return Err(format!("flags {:#x} not modelled", r.flags));
    }
    let len = if family == Family::Ipv4 { 4 } else { 16 };
    let mask: Vec<u8> = (0..len).map(|i| !(r.min_addr[i] ^ r.max_addr[i])).collect();
    out.push_str(" -j NETMAP --to ");
    nat_addr(family, &r.min_addr, out);
    match prefix_len(&mask) {
        Some(bits) => {
            let _ = write!(out, "/{bits}");
        }
        None => {
            let mut m = [0u8; 16];
            m[..len].copy_from_slice(&mask);
            out.push('/');
            nat_addr(family, &m, out);
        }
    }
    Ok(())
}

/// `MARK` revision 2 (`xt_mark_tginfo2`).
pub(super) fn mark(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 2 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 8)?;
    let _ = write!(
        out,
        " -j MARK --set-xmark 0x{:x}/0x{:x}",
        p.u32(0),
        p.u32(4)
    );
    Ok(())
}

/// `CONNMARK` revisions 1 (`xt_connmark_tginfo1`) and 2 without shifts (`xt_connmark_tginfo2`).
pub(super) fn connmark(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    let mode = match rev {
        1 => payload(data, 13)?.u8(12),
        2 => {
            let p = payload(data, 15)?;
            if p.u8(13) != 0 {
                return Err("mark shift not modelled".into());
            }
            p.u8(14)
        }
        _ => return Err("revision not modelled".into()),
    };
    let p = Payload::new(data, 12).ok_or("short")?;
    let (ctmark, ctmask, nfmask) = (p.u32(0), p.u32(4), p.u32(8));
    let _ = match mode {
        0 => write!(out, " -j CONNMARK --set-xmark 0x{ctmark:x}/0x{ctmask:x}"),
        1 => write!(
            out,
            " -j CONNMARK --save-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"
        ),
        2 => write!(
            out,
            " -j CONNMARK --restore-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"
        ),
        m => return Err(format!("mode {m} not modelled")),
    };
    Ok(())
}

/// `LOG` (`xt_log_info`).
pub(super) fn log(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    let p = payload(data, 32)?;
    let (level, flags) = (p.u8(0), p.u8(1));
    let prefix = p.str(2, 30).ok_or("prefix not UTF-8")?;
    if flags & !0x2f != 0 {
        return Err(format!("log flags {flags:#x} not modelled"));
    }
    out.push_str(" -j LOG");
    if !prefix.is_empty() {
        out.push_str(" --log-prefix");
        save_string(prefix, out);
    }
    if level != 4 {
        let _ = write!(out, " --log-level {level}");
    }
    for (bit, opt) in [
        (0x01, " --log-tcp-sequence"),
        (0x02, " --log-tcp-options"),
        (0x04, " --log-ip-options"),
        (0x08, " --log-uid"),
        (0x20, " --log-macdecode"),
    ] {
        if flags & bit != 0 {
            out.push_str(opt);
        }
    }
    Ok(())
}

/// `NFLOG` (`xt_nflog_info`).
pub(super) fn nflog(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    let p = payload(data, 76)?;
    let (len, group, threshold, flags) = (p.u32(0), p.u16(4), p.u16(6), p.u16(8));
    let prefix = p.str(12, 64).ok_or("prefix not UTF-8")?;
    if flags & !1 != 0 {
        return Err(format!("flags {flags:#x} not modelled"));
    }
    out.push_str(" -j NFLOG");
    if !prefix.is_empty() {
        out.push_str(" --nflog-prefix");
        save_string(prefix, out);
    }
    if group != 0 {
        let _ = write!(out, " --nflog-group {group}");
    }
    if flags & 1 != 0 {
        let _ = write!(out, " --nflog-size {len}");
    } else if len != 0 {
        let _ = write!(out, " --nflog-range {len}");
    }
    if threshold != 0 {
        let _ = write!(out, " --nflog-threshold {threshold}");
    }
    Ok(())
}

const CT_NOTRACK: u16 = 1;
const CT_NOTRACK_ALIAS: u16 = 2;

/// `CT` revisions 0 (`xt_ct_target_info`), 1 and 2 (`xt_ct_target_info_v1`): notrack, helper,
/// timeout and a plain zone; printed as `-j NOTRACK` when iptables stored that alias.
pub(super) fn ct(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    let p = match rev {
        0 => payload(data, 40)?,
        1 | 2 => payload(data, 72)?,
        _ => return Err("revision not modelled".into()),
    };
    let (flags, zone, ct_events, exp_events) = (p.u16(0), p.u16(2), p.u32(4), p.u32(8));
    if flags & !(CT_NOTRACK | CT_NOTRACK_ALIAS) != 0 || ct_events != 0 || exp_events != 0 {
        return Err("zone direction, zone mark or events not modelled".into());
    }
    if flags & CT_NOTRACK_ALIAS != 0 {
        out.push_str(" -j NOTRACK");
        return Ok(());
    }
    out.push_str(" -j CT");
    if flags & CT_NOTRACK != 0 {
        out.push_str(" --notrack");
    }
    let helper = p.str(12, 16).ok_or("helper not UTF-8")?;
    if !helper.is_empty() {
        let _ = write!(out, " --helper {helper}");
    }
    if rev > 0 {
        let timeout = p.str(28, 32).ok_or("timeout not UTF-8")?;
        if !timeout.is_empty() {
            let _ = write!(out, " --timeout {timeout}");
        }
    }
    if zone != 0 {
        let _ = write!(out, " --zone {zone}");
    }
    Ok(())
}

/// The old `NOTRACK` target (no payload).
pub(super) fn notrack(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    if !data.is_empty() {
        return Err("payload not expected".into());
    }
    out.push_str(" -j NOTRACK");
    Ok(())
}

/// `TPROXY` revisions 0 (IPv4 `xt_tproxy_target_info`) and 1 (`xt_tproxy_target_info_v1`).
pub(super) fn tproxy(family: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    let (p, port_at) = match rev {
        0 if family == Family::Ipv4 => (payload(data, 14)?, 12),
        1 => (payload(data, 26)?, 24),
        _ => return Err("revision not modelled".into()),
    };
    let (mask, value) = (p.u32(0), p.u32(4));
    let _ = write!(out, " -j TPROXY --on-port {} --on-ip ", p.be16(port_at));
    match family {
        Family::Ipv4 => {
            let _ = write!(out, "{}", p.ipv4(8));
        }
        Family::Ipv6 => ipv6(&p.ipv6(8), out),
    }
    let _ = write!(out, " --tproxy-mark 0x{value:x}/0x{mask:x}");
    Ok(())
}

/// `TCPMSS` target (`xt_tcpmss_info`).
pub(super) fn tcpmss(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    let mss = payload(data, 2)?.u16(0);
    if mss == 0xffff {
        out.push_str(" -j TCPMSS --clamp-mss-to-pmtu");
    } else {
        let _ = write!(out, " -j TCPMSS --set-mss {mss}");
    }
    Ok(())
}

/// `CHECKSUM` (`xt_CHECKSUM_info`).
pub(super) fn checksum(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    let op = payload(data, 1)?.u8(0);
    if op & !1 != 0 {
        return Err(format!("operation {op:#x} not modelled"));
    }
    out.push_str(" -j CHECKSUM");
    if op & 1 != 0 {
        out.push_str(" --checksum-fill");
    }
    Ok(())
}

/// `DSCP` target (`xt_DSCP_info`).
pub(super) fn dscp(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    rev0(rev)?;
    let _ = write!(out, " -j DSCP --set-dscp 0x{:02x}", payload(data, 1)?.u8(0));
    Ok(())
}

/// `TOS` target revision 1 (`xt_tos_target_info`).
pub(super) fn tos(_: Family, rev: u8, data: &[u8], out: &mut String) -> Decoded {
    if rev != 1 {
        return Err("revision not modelled".into());
    }
    let p = payload(data, 2)?;
    let _ = write!(out, " -j TOS --set-tos 0x{:02x}/0x{:02x}", p.u8(0), p.u8(1));
    Ok(())
}
