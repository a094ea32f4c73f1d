//! A legacy x_tables table (the `*_SO_GET_ENTRIES` blob) → the text `ip[6]tables-legacy-save -t
//! TABLE` prints: `*table`, the chain headers, one `-A` line per rule, `COMMIT`.
//!
//! Follows iptables 1.8's `iptables-save` and `print_rule4` / `print_rule6`: chains in libiptc's
//! order (built-in chains as the table holds them, then user chains sorted by name), the rule's
//! `ipt_ip` / `ip6t_ip6` header (`-s`, `-d`, `-i`, `-o`, `-p`, `-f`), its matches and its target
//! through [`super::ext`]. It does not read the kernel: callers hand it a table read by
//! `netlink::legacy`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use nfscope_ruleset::Family;

use super::ext::{self, Unsupported};
use crate::netlink::legacy::{Entry, XtChain, XtRule, XtTable};

/// At most this many reasons are kept per table: the first one already decides the fallback.
const MAX_REASONS: usize = 8;

/// Why a table's text could not be decoded: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecoded {
    /// `TABLE/CHAIN rule N` (1-based) or `TABLE` for the table as a whole.
    pub place: String,
    /// A bounded label for metrics: `match NAME`, `target NAME`, `header` or `table`.
    pub reason: String,
    /// What was not modelled.
    pub why: String,
}

impl std::fmt::Display for Undecoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.why)
    }
}

/// Appends the table's save text to `out` (as `-c` prints it, with rule counters, when
/// `counters`). On `Err` (at most [`MAX_REASONS`] reasons, the
/// first one first) `out` is left as it was: the table must be read by the save tool.
pub(crate) fn table_text(
    table: &XtTable,
    family: Family,
    counters: bool,
    out: &mut String,
) -> Result<(), Vec<Undecoded>> {
    let start = out.len();
    let whole = |why: String| {
        vec![Undecoded {
            place: table.name.clone(),
            reason: "table".to_owned(),
            why,
        }]
    };
    let mut chains = table.chains().map_err(|e| whole(e.to_string()))?;
    order_chains(&mut chains);
    let _ = writeln!(out, "*{}", table.name);
    for chain in &chains {
        match (chain.policy, chain.policy_target) {
            (Some(count), Some(policy)) => {
                let _ = writeln!(
                    out,
                    ":{} {policy} [{}:{}]",
                    chain.name, count.packets, count.bytes
                );
            }
            (Some(_), None) => {
                out.truncate(start);
                return Err(whole(format!("{}: policy is not a verdict", chain.name)));
            }
            (None, _) => {
                let _ = writeln!(out, ":{} - [0:0]", chain.name);
            }
        }
    }
    let mut reasons = Vec::new();
    for chain in &chains {
        for (i, rule) in chain.rules.iter().enumerate() {
            let line = out.len();
            if let Err((reason, why)) = rule_line(family, chain.name, rule, counters, out) {
                out.truncate(line);
                if reasons.len() < MAX_REASONS {
                    reasons.push(Undecoded {
                        place: format!("{}/{} rule {}", table.name, chain.name, i + 1),
                        reason,
                        why,
                    });
                }
            }
        }
    }
    if !reasons.is_empty() {
        out.truncate(start);
        return Err(reasons);
    }
    out.push_str("COMMIT\n");
    Ok(())
}

/// libiptc's chain order: built-in chains first as the table holds them, then user chains by
/// name (`strcmp`).
fn order_chains(chains: &mut [XtChain<'_>]) {
    chains.sort_by(|a, b| {
        let (a_user, b_user) = (a.policy.is_none(), b.policy.is_none());
        match (a_user, b_user) {
            (true, true) => a.name.as_bytes().cmp(b.name.as_bytes()),
            _ => a_user.cmp(&b_user),
        }
    });
}

/// One rule's `-A CHAIN …` line (`[p:b] ` in front with `counters`) and its newline; `Err`
/// is (bounded label, explanation).
fn rule_line(
    family: Family,
    chain: &str,
    rule: &XtRule<'_>,
    counters: bool,
    out: &mut String,
) -> Result<(), (String, String)> {
    let header_err = |why: String| ("header".to_owned(), why);
    let ext_err = |e: Unsupported| (format!("{} {}", e.kind, e.name), e.to_string());
    if counters {
        let _ = write!(out, "[{}:{}] ", rule.count.packets, rule.count.bytes);
    }
    let _ = write!(out, "-A {chain}");
    let goto = header(family, &rule.entry, out).map_err(header_err)?;
    for m in rule.entry.matches() {
        let m = m.map_err(|at| header_err(format!("malformed match at offset {at}")))?;
        ext::match_text(family, m.name, m.revision, m.data, out).map_err(ext_err)?;
    }
    let target = rule.entry.target_ext();
    if target.name.is_empty() {
        match rule.standard_target {
            Some("") => {}
            Some(name) => {
                let _ = write!(out, " -{} {name}", if goto { 'g' } else { 'j' });
            }
            None => {
                return Err((
                    "target standard".to_owned(),
                    "verdict neither standard nor a chain start".to_owned(),
                ));
            }
        }
    } else {
        ext::target_text(family, target.name, target.revision, target.data, out)
            .map_err(ext_err)?;
    }
    out.push('\n');
    Ok(())
}

const INV_VIA_IN: u8 = 0x01;
const INV_VIA_OUT: u8 = 0x02;
const INV_SRCIP: u8 = 0x08;
const INV_DSTIP: u8 = 0x10;
const INV_FRAG: u8 = 0x20;
const INV_PROTO: u8 = 0x40;

/// The `ipt_ip` / `ip6t_ip6` part; returns whether the rule is a goto.
fn header(family: Family, entry: &Entry<'_>, out: &mut String) -> Result<bool, String> {
    let h = entry.header();
    match family {
        Family::Ipv4 => {
            let (flags, inv) = (h[82], h[83]);
            if flags & !0x03 != 0 || inv & !0x7b != 0 {
                return Err(format!("header flags {flags:#x}/{inv:#x} not modelled"));
            }
            let v4 = |at: usize| Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]);
            ipv4_part("-s", v4(0), v4(8), inv & INV_SRCIP != 0, out);
            ipv4_part("-d", v4(4), v4(12), inv & INV_DSTIP != 0, out);
            iface('i', &h[16..32], &h[48..64], inv & INV_VIA_IN != 0, out)?;
            iface('o', &h[32..48], &h[64..80], inv & INV_VIA_OUT != 0, out)?;
            proto(
                u16::from_ne_bytes([h[80], h[81]]),
                inv & INV_PROTO != 0,
                out,
            )?;
            if flags & 0x01 != 0 {
                if inv & INV_FRAG != 0 {
                    out.push_str(" !");
                }
                out.push_str(" -f");
            }
            Ok(flags & 0x02 != 0)
        }
        Family::Ipv6 => {
            let (flags, inv) = (h[131], h[132]);
            // IP6T_F_PROTO (0x01) and IP6T_F_GOTO (0x04); a TOS match is not modelled.
            if flags & !0x05 != 0 || inv & !0x5b != 0 {
                return Err(format!("header flags {flags:#x}/{inv:#x} not modelled"));
            }
            let v6 = |at: usize| -> [u8; 16] { h[at..at + 16].try_into().expect("16 bytes") };
            ipv6_part("-s", &v6(0), &v6(32), inv & INV_SRCIP != 0, out);
            ipv6_part("-d", &v6(16), &v6(48), inv & INV_DSTIP != 0, out);
            iface('i', &h[64..80], &h[96..112], inv & INV_VIA_IN != 0, out)?;
            iface('o', &h[80..96], &h[112..128], inv & INV_VIA_OUT != 0, out)?;
            proto(
                u16::from_ne_bytes([h[128], h[129]]),
                inv & INV_PROTO != 0,
                out,
            )?;
            Ok(flags & 0x04 != 0)
        }
    }
}

fn bang(invert: bool, out: &mut String) {
    if invert {
        out.push_str(" !");
    }
}

/// `print_ip`: nothing for 0.0.0.0/0 uninverted, else the address with `/N` (`/32` too) or a
/// dotted mask.
fn ipv4_part(opt: &str, addr: Ipv4Addr, mask: Ipv4Addr, invert: bool, out: &mut String) {
    if mask.is_unspecified() && addr.is_unspecified() && !invert {
        return;
    }
    bang(invert, out);
    let _ = write!(out, " {opt} {addr}");
    match ext::prefix_len(&mask.octets()) {
        Some(n) => {
            let _ = write!(out, "/{n}");
        }
        None => {
            let _ = write!(out, "/{mask}");
        }
    }
}

/// `print_ipv6`: nothing for a /0 uninverted, else the address with `/N` (`/128` too) or a mask.
fn ipv6_part(opt: &str, addr: &[u8; 16], mask: &[u8; 16], invert: bool, out: &mut String) {
    let len = ext::prefix_len(mask);
    if len == Some(0) && !invert {
        return;
    }
    bang(invert, out);
    let _ = write!(out, " {opt} ");
    ext::ipv6(addr, out);
    match len {
        Some(n) => {
            let _ = write!(out, "/{n}");
        }
        None => {
            out.push('/');
            ext::ipv6(mask, out);
        }
    }
}

/// `print_iface`: the name's masked bytes, `+` where the mask ends before the name does.
fn iface(
    letter: char,
    name: &[u8],
    mask: &[u8],
    invert: bool,
    out: &mut String,
) -> Result<(), String> {
    if mask[0] == 0 {
        return Ok(());
    }
    bang(invert, out);
    let _ = write!(out, " -{letter} ");
    for i in 0..name.len() {
        if mask[i] != 0 {
            if name[i] != 0 {
                if !name[i].is_ascii_graphic() {
                    return Err("interface name not printable ASCII".into());
                }
                out.push(char::from(name[i]));
            }
        } else {
            if name[i - 1] != 0 {
                out.push('+');
            }
            break;
        }
    }
    Ok(())
}

/// `print_proto`: the name `getprotobynumber` gives with Debian's `/etc/protocols` (netbase),
/// which `iptables-save` prints; a number outside this table is not guessed.
fn proto(number: u16, invert: bool, out: &mut String) -> Result<(), String> {
    if number == 0 {
        return Ok(());
    }
    let name = match number {
        1 => "icmp",
        2 => "igmp",
        4 => "ipencap",
        6 => "tcp",
        8 => "egp",
        17 => "udp",
        33 => "dccp",
        41 => "ipv6",
        43 => "ipv6-route",
        44 => "ipv6-frag",
        46 => "rsvp",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        59 => "ipv6-nonxt",
        60 => "ipv6-opts",
        89 => "ospf",
        94 => "ipip",
        103 => "pim",
        112 => "vrrp",
        115 => "l2tp",
        132 => "sctp",
        135 => "mobility-header",
        136 => "udplite",
        137 => "mpls-in-ip",
        _ => return Err(format!("protocol {number} has no name modelled")),
    };
    bang(invert, out);
    let _ = write!(out, " -p {name}");
    Ok(())
}
