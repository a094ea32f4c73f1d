//! Does one rule's match cover another's? Three-valued, so the linter never claims a rule is
//! shadowed on a guess.
//!
//! Owns the small model of what a rule matches that can be reasoned about statically: addresses
//! (prefix or arbitrary mask, negated or not), interfaces (with the `+` wildcard), protocol,
//! fragments, tcp/udp/sctp ports and `multiport` port lists, `icmp` types compared for equality.
//! Everything else — marks, conntrack state, ipsets, `statistic`, `addrtype`, `recent`, `limit`,
//! any module not listed — is *unknown*: a rule carrying it never covers another rule. Comments
//! match every packet. It does not decide whether a rule is terminal (see [`crate::checks`]).

use nfscope_ruleset::{AddrMatch, Family, Match, Negatable, RuleSpec};

/// A three-valued answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    /// Certainly.
    Yes,
    /// Certainly not.
    No,
    /// Cannot be told from the rules alone.
    Unknown,
}

impl Tri {
    fn from_bool(value: bool) -> Self {
        if value { Self::Yes } else { Self::No }
    }

    /// `Yes` only when both are `Yes`; `No` when either is `No`.
    fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::No, _) | (_, Self::No) => Self::No,
            (Self::Yes, Self::Yes) => Self::Yes,
            _ => Self::Unknown,
        }
    }
}

/// Does every packet that matches `later` also match `earlier`? `Yes` only when provable from
/// modelled matches; `No` when some condition of `earlier` is provably not implied; else `Unknown`.
pub fn covers(earlier: &RuleSpec, later: &RuleSpec, family: Family) -> Tri {
    if earlier.only_family.is_some_and(|f| f != family) {
        return Tri::Unknown;
    }
    let base = addr_implied(earlier.source.as_ref(), later.source.as_ref())
        .and(addr_implied(
            earlier.destination.as_ref(),
            later.destination.as_ref(),
        ))
        .and(iface_implied(
            earlier.in_interface.as_ref(),
            later.in_interface.as_ref(),
        ))
        .and(iface_implied(
            earlier.out_interface.as_ref(),
            later.out_interface.as_ref(),
        ))
        .and(protocol_implied(
            earlier.protocol.as_ref(),
            later.protocol.as_ref(),
        ))
        .and(Tri::from_bool(
            earlier.fragment.is_none() || earlier.fragment == later.fragment,
        ));
    earlier
        .matches
        .iter()
        .fold(base, |acc, m| acc.and(match_implied(m, later)))
}

/// Does the rule match every packet (no condition at all besides comments)?
pub fn matches_everything(spec: &RuleSpec) -> bool {
    spec.only_family.is_none()
        && spec.source.is_none()
        && spec.destination.is_none()
        && spec.in_interface.is_none()
        && spec.out_interface.is_none()
        && spec.protocol.is_none()
        && spec.fragment.is_none()
        && spec.matches.iter().all(|m| m.module == "comment")
}

fn addr_implied(
    earlier: Option<&Negatable<AddrMatch>>,
    later: Option<&Negatable<AddrMatch>>,
) -> Tri {
    let Some(e) = earlier else { return Tri::Yes };
    let Some(l) = later else { return Tri::No };
    let ok = match (e.negated, l.negated) {
        (false, false) => addr_subset(&l.value, &e.value),
        (true, false) => addr_disjoint(&l.value, &e.value),
        // `! -s L` ⊆ `! -s E` when E ⊆ L.
        (true, true) => addr_subset(&e.value, &l.value),
        (false, true) => false,
    };
    Tri::from_bool(ok)
}

/// (addr, mask) as 128-bit values; `None` for mixed families.
fn bits(a: &AddrMatch) -> Option<(u128, u128)> {
    use std::net::IpAddr::{V4, V6};
    match (a.addr, a.mask) {
        (V4(addr), V4(mask)) => Some((u32::from(addr).into(), u32::from(mask).into())),
        (V6(addr), V6(mask)) => Some((addr.into(), mask.into())),
        _ => None,
    }
}

/// Is every address of `inner` inside `outer`?
fn addr_subset(inner: &AddrMatch, outer: &AddrMatch) -> bool {
    let (Some((ia, im)), Some((oa, om))) = (bits(inner), bits(outer)) else {
        return false;
    };
    inner.addr.is_ipv4() == outer.addr.is_ipv4() && om & !im == 0 && ia & om == oa & om
}

/// Do the two address sets share no address?
fn addr_disjoint(a: &AddrMatch, b: &AddrMatch) -> bool {
    let (Some((aa, am)), Some((ba, bm))) = (bits(a), bits(b)) else {
        return false;
    };
    let common = am & bm;
    a.addr.is_ipv4() == b.addr.is_ipv4() && aa & common != ba & common
}

fn iface_implied(earlier: Option<&Negatable<String>>, later: Option<&Negatable<String>>) -> Tri {
    let Some(e) = earlier else { return Tri::Yes };
    let Some(l) = later else { return Tri::No };
    let ok = match (e.negated, l.negated) {
        (false, false) => iface_subset(&l.value, &e.value),
        (true, false) => iface_disjoint(&l.value, &e.value),
        (true, true) => iface_subset(&e.value, &l.value),
        (false, true) => false,
    };
    Tri::from_bool(ok)
}

/// Is every name `inner` matches also matched by `outer` (`+` is a trailing wildcard)?
fn iface_subset(inner: &str, outer: &str) -> bool {
    match (inner.strip_suffix('+'), outer.strip_suffix('+')) {
        (_, Some(prefix)) => inner.trim_end_matches('+').starts_with(prefix),
        (None, None) => inner == outer,
        (Some(_), None) => false,
    }
}

fn iface_disjoint(a: &str, b: &str) -> bool {
    match (a.strip_suffix('+'), b.strip_suffix('+')) {
        (None, None) => a != b,
        (Some(p), None) => !b.starts_with(p),
        (None, Some(p)) => !a.starts_with(p),
        (Some(p), Some(q)) => !p.starts_with(q) && !q.starts_with(p),
    }
}

/// Protocol names and numbers as one value (`tcp` = `6`).
fn protocol_number(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "icmp" => Some(1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "gre" => Some(47),
        "esp" => Some(50),
        "ah" => Some(51),
        "ipv6-icmp" | "icmpv6" | "icmp6" => Some(58),
        "sctp" => Some(132),
        "udplite" => Some(136),
        "ipencap" => Some(4),
        other => other.parse().ok(),
    }
}

fn same_protocol(a: &str, b: &str) -> bool {
    match (protocol_number(a), protocol_number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

fn protocol_implied(earlier: Option<&Negatable<String>>, later: Option<&Negatable<String>>) -> Tri {
    let Some(e) = earlier else { return Tri::Yes };
    let Some(l) = later else { return Tri::No };
    let ok = match (e.negated, l.negated) {
        (false, false) | (true, true) => same_protocol(&e.value, &l.value),
        (true, false) => !same_protocol(&e.value, &l.value),
        (false, true) => false,
    };
    Tri::from_bool(ok)
}

/// Does `later` carry a non-negated protocol equal to `name`?
fn later_has_protocol(later: &RuleSpec, name: &str) -> bool {
    later
        .protocol
        .as_ref()
        .is_some_and(|p| !p.negated && same_protocol(&p.value, name))
}

fn match_implied(m: &Match, later: &RuleSpec) -> Tri {
    match m.module.as_str() {
        "comment" => Tri::Yes,
        "tcp" | "udp" | "sctp" => port_module_implied(m, later),
        "multiport" => multiport_implied(m, later),
        "icmp" | "icmp6" => identical_in(m, later),
        _ => Tri::Unknown,
    }
}

/// `icmp --icmp-type X`: implied only by the same option in `later`.
fn identical_in(m: &Match, later: &RuleSpec) -> Tri {
    if m.options.iter().any(|o| o.negated) {
        return Tri::Unknown;
    }
    let same = later.matches.iter().any(|l| {
        l.module == m.module && {
            let mut a = l.options.clone();
            let mut b = m.options.clone();
            a.sort_by(|x, y| x.name.cmp(&y.name));
            b.sort_by(|x, y| x.name.cmp(&y.name));
            a == b
        }
    });
    if same { Tri::Yes } else { Tri::Unknown }
}

fn port_module_implied(m: &Match, later: &RuleSpec) -> Tri {
    if !later_has_protocol(later, &m.module) {
        return Tri::No;
    }
    m.options.iter().fold(Tri::Yes, |acc, o| {
        let side = match o.name.as_str() {
            "dport" | "destination-port" => Side::Dst,
            "sport" | "source-port" => Side::Src,
            _ => return acc.and(Tri::Unknown),
        };
        let wanted = match (o.negated, o.values.first().and_then(|v| parse_range(v))) {
            (false, Some(range)) => vec![range],
            _ => return acc.and(Tri::Unknown),
        };
        acc.and(ports_implied(&wanted, side, later))
    })
}

fn multiport_implied(m: &Match, later: &RuleSpec) -> Tri {
    m.options.iter().fold(Tri::Yes, |acc, o| {
        let side = match o.name.as_str() {
            "dports" | "destination-ports" => Side::Dst,
            "sports" | "source-ports" => Side::Src,
            _ => return acc.and(Tri::Unknown),
        };
        match (o.negated, o.values.first().and_then(|v| parse_list(v))) {
            (false, Some(list)) => acc.and(ports_implied(&list, side, later)),
            _ => acc.and(Tri::Unknown),
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

type Range = (u16, u16);

/// `80`, `80:90`, `:1024`, `1024:`; service names are not resolved.
fn parse_range(text: &str) -> Option<Range> {
    match text.split_once(':') {
        None => text.parse().ok().map(|p| (p, p)),
        Some((lo, hi)) => {
            let lo = if lo.is_empty() { 0 } else { lo.parse().ok()? };
            let hi = if hi.is_empty() {
                u16::MAX
            } else {
                hi.parse().ok()?
            };
            (lo <= hi).then_some((lo, hi))
        }
    }
}

fn parse_list(text: &str) -> Option<Vec<Range>> {
    text.split(',').map(parse_range).collect()
}

/// The port sets `later` restricts `side` to (each one alone bounds the packet's port).
fn later_port_sets(later: &RuleSpec, side: Side) -> Vec<Vec<Range>> {
    let mut sets = Vec::new();
    for m in &later.matches {
        for o in m.options.iter().filter(|o| !o.negated) {
            let value = o.values.first().map(String::as_str).unwrap_or("");
            let parsed = match (m.module.as_str(), o.name.as_str(), side) {
                ("tcp" | "udp" | "sctp", "dport" | "destination-port", Side::Dst)
                | ("tcp" | "udp" | "sctp", "sport" | "source-port", Side::Src) => {
                    parse_range(value).map(|r| vec![r])
                }
                ("multiport", "dports" | "destination-ports", Side::Dst)
                | ("multiport", "sports" | "source-ports", Side::Src) => parse_list(value),
                _ => None,
            };
            sets.extend(parsed);
        }
    }
    sets
}

/// Is some port bound of `later` inside `wanted`? `No` when `later` has no bound on that side.
fn ports_implied(wanted: &[Range], side: Side, later: &RuleSpec) -> Tri {
    let inside = |set: &Vec<Range>| {
        set.iter()
            .all(|&(lo, hi)| wanted.iter().any(|&(wl, wh)| wl <= lo && hi <= wh))
    };
    Tri::from_bool(later_port_sets(later, side).iter().any(inside))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfscope_ruleset::{ParseOptions, parse_ruleset};

    /// The two rules of chain `X` in a filter table built from `a` and `b`.
    fn pair(a: &str, b: &str) -> (RuleSpec, RuleSpec) {
        let text = format!("*filter\n:X - [0:0]\n-A X {a}\n-A X {b}\nCOMMIT\n");
        let rs = parse_ruleset(&text, &ParseOptions::default()).unwrap();
        let rules = &rs.tables[0].chain("X").unwrap().rules;
        ((*rules[0].spec).clone(), (*rules[1].spec).clone())
    }

    fn check(a: &str, b: &str) -> Tri {
        let (a, b) = pair(a, b);
        covers(&a, &b, Family::Ipv4)
    }

    #[test]
    fn prefixes_and_negation() {
        assert_eq!(
            check("-s 10.0.0.0/8 -j DROP", "-s 10.1.0.0/16 -j ACCEPT"),
            Tri::Yes
        );
        assert_eq!(
            check("-s 10.1.0.0/16 -j DROP", "-s 10.0.0.0/8 -j ACCEPT"),
            Tri::No
        );
        assert_eq!(
            check("! -s 10.0.0.0/8 -j DROP", "-s 192.168.0.0/16 -j ACCEPT"),
            Tri::Yes
        );
        assert_eq!(
            check("! -s 10.0.0.0/8 -j DROP", "-s 10.2.0.0/16 -j ACCEPT"),
            Tri::No
        );
        assert_eq!(
            check("! -s 10.1.0.0/16 -j DROP", "! -s 10.0.0.0/8 -j ACCEPT"),
            Tri::Yes
        );
        assert_eq!(check("-s 10.0.0.0/8 -j DROP", "-j ACCEPT"), Tri::No);
    }

    #[test]
    fn interfaces_ports_and_protocols() {
        assert_eq!(check("-i eth+ -j DROP", "-i eth0 -j ACCEPT"), Tri::Yes);
        assert_eq!(check("-i eth0 -j DROP", "-i eth+ -j ACCEPT"), Tri::No);
        assert_eq!(check("! -i lo -j DROP", "-i eth0 -j ACCEPT"), Tri::Yes);
        assert_eq!(
            check(
                "-p tcp -m tcp --dport 1:1024 -j DROP",
                "-p tcp -m tcp --dport 80 -j ACCEPT"
            ),
            Tri::Yes
        );
        assert_eq!(
            check(
                "-p tcp -m tcp --dport 80 -j DROP",
                "-p udp -m udp --dport 80 -j ACCEPT"
            ),
            Tri::No
        );
        assert_eq!(
            check(
                "-p tcp -m multiport --dports 80,443 -j DROP",
                "-p tcp -m tcp --dport 443 -j ACCEPT"
            ),
            Tri::Yes
        );
        assert_eq!(check("-p 6 -j DROP", "-p tcp -j ACCEPT"), Tri::Yes);
    }

    #[test]
    fn unmodelled_matches_are_unknown_even_when_identical() {
        for m in [
            "-m mark --mark 0x1",
            "-m conntrack --ctstate NEW",
            "-m set --match-set S src",
            "-m statistic --mode random --probability 0.5",
            "-m addrtype --dst-type LOCAL",
            "-p tcp -m tcp --tcp-flags SYN,ACK SYN",
        ] {
            assert_eq!(
                check(&format!("{m} -j DROP"), &format!("{m} -j DROP")),
                Tri::Unknown,
                "{m}"
            );
        }
        assert_eq!(
            check("-m comment --comment x -j DROP", "-s 1.2.3.4/32 -j ACCEPT"),
            Tri::Yes
        );
    }
}
