//! Rule matching: does one rule's match part hold for the packet as it is now?
//!
//! Owns the semantics of the base matches (`-s -d -i -o -p -f`) and of the match modules the
//! tracer models (tcp, udp, sctp, multiport, icmp, icmp6, conntrack, state, mark, connmark, set,
//! addrtype, iprange, statistic, physdev, owner, pkttype, policy, comment, nfacct). Each answers
//! yes, no, "with this probability" (statistic) or "cannot tell, because …" (limit, recent, any
//! module not modelled, a field the caller did not give). It does not apply targets or walk
//! chains (see `engine`).

use std::net::IpAddr;

use nfscope_ruleset::{Match, Negatable, OptionArg, RuleSpec};

use crate::packet::{CtState, Proto, tcp_flags};
use crate::sets::{Field, Membership, SetIndex, SetQuery};
use crate::state::{Hook, IfaceView, PktState};

/// The answer for one rule (or one part of it).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Matches.
    Yes,
    /// Does not match.
    No,
    /// Matches with this probability (statistic), strictly between 0 and 1.
    Chance(f64),
    /// Cannot tell; the reason.
    Maybe(String),
}

/// Facts the matcher needs besides the packet.
pub struct Env<'a> {
    /// The hook being traversed.
    pub hook: Hook,
    /// Is conntrack information attached yet (false in the raw table)?
    pub ct_attached: bool,
    /// ipset contents.
    pub sets: &'a SetIndex,
    /// Is this address one of the node's own?
    pub is_local: &'a dyn Fn(IpAddr) -> bool,
    /// Is this address a broadcast address?
    pub is_broadcast: &'a dyn Fn(IpAddr) -> bool,
    /// Was the packet generated on this node (it has a socket)?
    pub locally_generated: bool,
}

/// Evaluates every part of `spec` against `pkt`; the first definite "no" wins.
pub fn match_rule(spec: &RuleSpec, pkt: &PktState, env: &Env<'_>) -> Outcome {
    let mut acc = Acc::default();
    let base = [
        spec.source
            .as_ref()
            .map(|s| negate(s.negated, bool_outcome(s.value.contains(pkt.src)))),
        spec.destination.as_ref().map(|d| match &pkt.dst_unknown {
            Some(placeholder) => unknown_dst(placeholder),
            None => negate(d.negated, bool_outcome(d.value.contains(pkt.dst))),
        }),
        spec.protocol
            .as_ref()
            .map(|p| negate(p.negated, proto_outcome(&p.value, pkt.proto))),
        spec.in_interface
            .as_ref()
            .map(|i| iface_outcome(i, &pkt.in_view(env.hook), "incoming")),
        spec.out_interface
            .as_ref()
            .map(|o| iface_outcome(o, &pkt.out_view(env.hook), "outgoing")),
        // `-f` is stored as Some(false), `! -f` as Some(true); the traced packet is never a fragment.
        spec.fragment.map(bool_outcome),
    ];
    for outcome in base.into_iter().flatten() {
        if !acc.add(outcome) {
            return Outcome::No;
        }
    }
    for m in &spec.matches {
        if !acc.add(match_module(m, pkt, env)) {
            return Outcome::No;
        }
    }
    acc.finish()
}

#[derive(Default)]
struct Acc {
    maybe: Option<String>,
    chance: Option<f64>,
}

impl Acc {
    /// Adds one part; returns false on a definite "no".
    fn add(&mut self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Yes => true,
            Outcome::No => false,
            Outcome::Chance(p) => {
                self.chance = Some(self.chance.unwrap_or(1.0) * p);
                true
            }
            Outcome::Maybe(why) => {
                self.maybe.get_or_insert(why);
                true
            }
        }
    }

    fn finish(self) -> Outcome {
        match (self.maybe, self.chance) {
            (Some(why), _) => Outcome::Maybe(why),
            (None, Some(p)) => Outcome::Chance(p),
            (None, None) => Outcome::Yes,
        }
    }
}

/// A match on a destination address the tracer does not know (REDIRECT without routes).
fn unknown_dst(placeholder: &str) -> Outcome {
    Outcome::Maybe(format!(
        "the destination is {placeholder}, the primary address of that interface, which is not known (give --routes)"
    ))
}

fn bool_outcome(b: bool) -> Outcome {
    if b { Outcome::Yes } else { Outcome::No }
}

fn negate(negated: bool, outcome: Outcome) -> Outcome {
    if !negated {
        return outcome;
    }
    match outcome {
        Outcome::Yes => Outcome::No,
        Outcome::No => Outcome::Yes,
        Outcome::Chance(p) => Outcome::Chance(1.0 - p),
        maybe @ Outcome::Maybe(_) => maybe,
    }
}

/// `-p NAME|NUMBER` against the packet's protocol.
fn proto_outcome(value: &str, proto: Proto) -> Outcome {
    let number = match value.to_ascii_lowercase().as_str() {
        "all" | "0" => return Outcome::Yes,
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" | "icmp6" => 58,
        "sctp" => 132,
        other => match other.parse::<u8>() {
            Ok(n) => n,
            // A named protocol we do not know (esp, gre, …) is none of the five we trace.
            Err(_) => return Outcome::No,
        },
    };
    bool_outcome(number == proto.number())
}

/// `-i`/`-o` with the `+` wildcard.
fn iface_outcome(rule: &Negatable<String>, view: &IfaceView, what: &str) -> Outcome {
    let name = match view {
        IfaceView::Unknown => {
            return Outcome::Maybe(format!("{what} interface unknown (give --out or --routes)"));
        }
        IfaceView::Empty => "",
        IfaceView::Name(n) => n.as_str(),
    };
    negate(rule.negated, bool_outcome(iface_matches(&rule.value, name)))
}

/// Interface name match as the kernel does it: a trailing `+` matches any suffix.
pub fn iface_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn match_module(m: &Match, pkt: &PktState, env: &Env<'_>) -> Outcome {
    match m.module.as_str() {
        "comment" | "nfacct" => Outcome::Yes,
        "tcp" | "udp" | "sctp" | "udplite" => ports_module(m, pkt),
        "multiport" => multiport(m, pkt),
        "icmp" | "icmp6" | "icmpv6" => icmp_module(m, pkt),
        "conntrack" | "state" => conntrack(m, pkt, env),
        "mark" => mark_match(m, Some(pkt.mark), "mark"),
        "connmark" => connmark(m, pkt, env),
        "set" => set_match(m, pkt, env),
        "addrtype" => addrtype(m, pkt, env),
        "iprange" => iprange(m, pkt),
        "statistic" => statistic(m),
        "physdev" => physdev(m, pkt),
        "owner" => owner(m, pkt, env),
        "pkttype" => pkttype(m, pkt, env),
        "policy" => policy(m),
        "limit" | "hashlimit" => {
            Outcome::Maybe(format!("-m {} depends on the packet rate", m.module))
        }
        "recent" => Outcome::Maybe("-m recent depends on earlier packets".into()),
        other => Outcome::Maybe(format!("-m {other} is not modelled")),
    }
}

/// Runs each option through `check`; options it does not know make the module undetermined.
fn each_option(m: &Match, mut check: impl FnMut(&OptionArg) -> Option<Outcome>) -> Outcome {
    let mut acc = Acc::default();
    let outcomes: Vec<(Option<Outcome>, &OptionArg)> =
        m.options.iter().map(|o| (check(o), o)).collect();
    // DIFFERENTIAL: an option the kernel does not know makes the whole module undetermined (the
    // lowering keeps such a module whole as `Unmodelled`).
    if let Some((_, opt)) = outcomes.iter().find(|(o, _)| o.is_none()) {
        return Outcome::Maybe(format!("-m {} --{} is not modelled", m.module, opt.name));
    }
    for (outcome, opt) in outcomes {
        if !acc.add(negate(opt.negated, outcome.expect("checked"))) {
            return Outcome::No;
        }
    }
    acc.finish()
}

fn first(opt: &OptionArg) -> &str {
    opt.values.first().map_or("", String::as_str)
}

fn module_proto(module: &str) -> Option<Proto> {
    match module {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        "sctp" => Some(Proto::Sctp),
        _ => None,
    }
}

fn ports_module(m: &Match, pkt: &PktState) -> Outcome {
    if module_proto(&m.module) != Some(pkt.proto) {
        return Outcome::No;
    }
    each_option(m, |opt| match opt.name.as_str() {
        "sport" | "source-port" => Some(port_outcome(first(opt), pkt.sport, "source")),
        "dport" | "destination-port" => Some(port_outcome(first(opt), pkt.dport, "destination")),
        "tcp-flags" => Some(tcp_flags_outcome(opt, pkt.tcp_flags)),
        "syn" => Some(bool_outcome(
            pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::RST | tcp_flags::ACK | tcp_flags::FIN)
                == tcp_flags::SYN,
        )),
        _ => None,
    })
}

fn port_range(text: &str) -> Option<(u16, u16)> {
    match text.split_once(':') {
        Some((a, b)) => Some((
            if a.is_empty() { 0 } else { a.parse().ok()? },
            if b.is_empty() { 65535 } else { b.parse().ok()? },
        )),
        None => {
            let p = text.parse().ok()?;
            Some((p, p))
        }
    }
}

fn port_outcome(spec: &str, port: Option<u16>, which: &str) -> Outcome {
    let Some(port) = port else {
        return Outcome::Maybe(format!("{which} port unknown (give --{}port)", &which[..1]));
    };
    match port_range(spec) {
        Some((lo, hi)) => bool_outcome((lo..=hi).contains(&port)),
        None => Outcome::Maybe(format!("port {spec:?} is a service name, not modelled")),
    }
}

fn tcp_flag_bits(list: &str) -> Option<u8> {
    let mut bits = 0;
    for name in list.split(',') {
        bits |= match name {
            "FIN" => tcp_flags::FIN,
            "SYN" => tcp_flags::SYN,
            "RST" => tcp_flags::RST,
            "PSH" => tcp_flags::PSH,
            "ACK" => tcp_flags::ACK,
            "URG" => tcp_flags::URG,
            "ALL" => 0x3f,
            "NONE" => 0,
            _ => return None,
        };
    }
    Some(bits)
}

fn tcp_flags_outcome(opt: &OptionArg, flags: u8) -> Outcome {
    let mask = opt.values.first().and_then(|v| tcp_flag_bits(v));
    let comp = opt.values.get(1).and_then(|v| tcp_flag_bits(v));
    match (mask, comp) {
        (Some(mask), Some(comp)) => bool_outcome(flags & mask == comp),
        _ => Outcome::Maybe(format!("--tcp-flags {:?} not understood", opt.values)),
    }
}

fn multiport(m: &Match, pkt: &PktState) -> Outcome {
    if !pkt.proto.has_ports() {
        return Outcome::No;
    }
    each_option(m, |opt| {
        let list = first(opt);
        Some(match opt.name.as_str() {
            "sports" | "source-ports" => port_list(list, &[pkt.sport]),
            "dports" | "destination-ports" => port_list(list, &[pkt.dport]),
            "ports" => port_list(list, &[pkt.sport, pkt.dport]),
            _ => return None,
        })
    })
}

/// Any of `ports` in the comma list of ports and ranges.
fn port_list(list: &str, ports: &[Option<u16>]) -> Outcome {
    let mut ranges = Vec::new();
    for item in list.split(',') {
        match port_range(item) {
            Some(r) => ranges.push(r),
            None => {
                return Outcome::Maybe(format!("port {item:?} is a service name, not modelled"));
            }
        }
    }
    let mut unknown = false;
    for port in ports {
        match port {
            Some(p) if ranges.iter().any(|(lo, hi)| (lo..=hi).contains(&p)) => return Outcome::Yes,
            Some(_) => {}
            None => unknown = true,
        }
    }
    if unknown {
        Outcome::Maybe("port unknown (give --sport/--dport)".into())
    } else {
        Outcome::No
    }
}

fn icmp_module(m: &Match, pkt: &PktState) -> Outcome {
    let want = if m.module == "icmp" {
        Proto::Icmp
    } else {
        Proto::Icmpv6
    };
    if pkt.proto != want {
        return Outcome::No;
    }
    each_option(m, |opt| match opt.name.as_str() {
        "icmp-type" | "icmpv6-type" => Some(icmp_type_outcome(first(opt), pkt.icmp, want)),
        _ => None,
    })
}

fn icmp_type_outcome(spec: &str, (t, c): (u8, u8), proto: Proto) -> Outcome {
    if spec == "any" {
        return Outcome::Yes;
    }
    let parsed = match spec.split_once('/') {
        Some((a, b)) => a
            .parse()
            .ok()
            .zip(b.parse().ok())
            .map(|(a, b)| (a, Some(b))),
        None => spec
            .parse()
            .ok()
            .map(|a| (a, None))
            .or_else(|| icmp_name(spec, proto)),
    };
    match parsed {
        Some((want_t, want_c)) => bool_outcome(want_t == t && want_c.is_none_or(|wc| wc == c)),
        None => Outcome::Maybe(format!("icmp type {spec:?} not known")),
    }
}

pub(crate) fn icmp_name(name: &str, proto: Proto) -> Option<(u8, Option<u8>)> {
    let v4: &[(&str, u8, Option<u8>)] = &[
        ("echo-reply", 0, None),
        ("pong", 0, None),
        ("destination-unreachable", 3, None),
        ("network-unreachable", 3, Some(0)),
        ("host-unreachable", 3, Some(1)),
        ("protocol-unreachable", 3, Some(2)),
        ("port-unreachable", 3, Some(3)),
        ("fragmentation-needed", 3, Some(4)),
        ("source-quench", 4, None),
        ("redirect", 5, None),
        ("echo-request", 8, None),
        ("ping", 8, None),
        ("router-advertisement", 9, None),
        ("router-solicitation", 10, None),
        ("time-exceeded", 11, None),
        ("ttl-exceeded", 11, None),
        ("parameter-problem", 12, None),
        ("timestamp-request", 13, None),
        ("timestamp-reply", 14, None),
    ];
    let v6: &[(&str, u8, Option<u8>)] = &[
        ("destination-unreachable", 1, None),
        ("no-route", 1, Some(0)),
        ("communication-prohibited", 1, Some(1)),
        ("address-unreachable", 1, Some(3)),
        ("port-unreachable", 1, Some(4)),
        ("packet-too-big", 2, None),
        ("time-exceeded", 3, None),
        ("ttl-exceeded", 3, None),
        ("parameter-problem", 4, None),
        ("echo-request", 128, None),
        ("ping", 128, None),
        ("echo-reply", 129, None),
        ("pong", 129, None),
        ("router-solicitation", 133, None),
        ("router-advertisement", 134, None),
        ("neighbour-solicitation", 135, None),
        ("neighbor-solicitation", 135, None),
        ("neighbour-advertisement", 136, None),
        ("neighbor-advertisement", 136, None),
        ("redirect", 137, None),
    ];
    let table = if proto == Proto::Icmp { v4 } else { v6 };
    table
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, c)| (*t, *c))
}

/// The conntrack states that hold for the packet, or `None` when it cannot be told.
fn ct_states(pkt: &PktState, env: &Env<'_>) -> Vec<&'static str> {
    if pkt.ct_state == CtState::Untracked {
        return vec!["UNTRACKED"];
    }
    if !env.ct_attached {
        return vec!["INVALID"];
    }
    let mut states = vec![pkt.ct_state.as_str()];
    if pkt.dnat_done {
        states.push("DNAT");
    }
    if pkt.snat_done {
        states.push("SNAT");
    }
    states
}

fn conntrack(m: &Match, pkt: &PktState, env: &Env<'_>) -> Outcome {
    let tracked = env.ct_attached && pkt.ct_state != CtState::Untracked;
    let nat_known = pkt.ct_state == CtState::New;
    if !tracked
        && m.options
            .iter()
            .any(|o| !matches!(o.name.as_str(), "ctstate" | "state"))
    {
        // The kernel: without a conntrack entry only a pure state match can hold.
        return Outcome::No;
    }
    each_option(m, |opt| {
        Some(match opt.name.as_str() {
            "ctstate" | "state" => {
                let holds = ct_states(pkt, env);
                let listed: Vec<&str> = first(opt).split(',').collect();
                if listed.iter().any(|s| holds.contains(s)) {
                    Outcome::Yes
                } else if !nat_known
                    && tracked
                    && pkt.ct_state != CtState::Invalid
                    && listed.iter().any(|s| matches!(*s, "DNAT" | "SNAT"))
                {
                    Outcome::Maybe("whether an established connection was NATed is unknown".into())
                } else {
                    Outcome::No
                }
            }
            "ctproto" => proto_outcome(first(opt), pkt.proto),
            "ctdir" if nat_known => bool_outcome(first(opt).eq_ignore_ascii_case("ORIGINAL")),
            "ctorigsrc" if nat_known => addr_outcome(first(opt), pkt.orig.src),
            "ctorigdst" if nat_known => addr_outcome(first(opt), pkt.orig.dst),
            "ctreplsrc" if nat_known => addr_outcome(first(opt), pkt.dst),
            "ctrepldst" if nat_known => addr_outcome(first(opt), pkt.src),
            "ctorigsrcport" if nat_known => port_outcome(first(opt), pkt.orig.sport, "source"),
            "ctorigdstport" if nat_known => port_outcome(first(opt), pkt.orig.dport, "destination"),
            "ctreplsrcport" if nat_known => port_outcome(first(opt), pkt.dport, "destination"),
            "ctrepldstport" if nat_known => port_outcome(first(opt), pkt.sport, "source"),
            name => Outcome::Maybe(format!(
                "--{name} of an existing connection is not modelled"
            )),
        })
    })
}

fn addr_outcome(spec: &str, ip: IpAddr) -> Outcome {
    let (addr, len) = spec.split_once('/').unwrap_or((spec, ""));
    let Ok(net) = addr.parse::<IpAddr>() else {
        return Outcome::Maybe(format!("address {spec:?} not understood"));
    };
    let width = if net.is_ipv4() { 32 } else { 128 };
    let len: u32 = if len.is_empty() {
        width
    } else {
        len.parse().unwrap_or(width)
    };
    let bits = |ip: IpAddr| match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
        IpAddr::V6(v) => u128::from(v),
    };
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - (len + 128 - width).min(128))
    };
    bool_outcome(net.is_ipv4() == ip.is_ipv4() && bits(net) & mask == bits(ip) & mask)
}

/// `--mark value[/mask]` against `mark` (`None` = unknown).
fn mark_match(m: &Match, mark: Option<u32>, what: &str) -> Outcome {
    each_option(m, |opt| {
        (opt.name == "mark").then(|| match (parse_mark(first(opt)), mark) {
            (None, _) => Outcome::Maybe(format!("mark {:?} not understood", first(opt))),
            (Some(_), None) => Outcome::Maybe(format!(
                "{what} unknown (give --ct-mark or trace a new connection)"
            )),
            (Some((v, mask)), Some(mark)) => bool_outcome(mark & mask == v),
        })
    })
}

fn connmark(m: &Match, pkt: &PktState, env: &Env<'_>) -> Outcome {
    if !env.ct_attached || matches!(pkt.ct_state, CtState::Untracked | CtState::Invalid) {
        return Outcome::No;
    }
    mark_match(m, pkt.ct_mark, "connection mark")
}

/// `0x4000`, `0x4000/0x4000`, `16384`: value and mask (default all ones).
pub fn parse_mark(text: &str) -> Option<(u32, u32)> {
    let num = |s: &str| match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    match text.split_once('/') {
        Some((v, m)) => Some((num(v)?, num(m)?)),
        None => Some((num(text)?, u32::MAX)),
    }
}

fn set_match(m: &Match, pkt: &PktState, env: &Env<'_>) -> Outcome {
    each_option(m, |opt| match opt.name.as_str() {
        "match-set" => {
            let name = first(opt);
            let flags: Vec<&str> = opt
                .values
                .get(1)
                .map_or(vec!["src"], |f| f.split(',').collect());
            if let Some(placeholder) = &pkt.dst_unknown
                && flags.contains(&"dst")
            {
                return Some(unknown_dst(placeholder));
            }
            let in_view = pkt.in_view(env.hook);
            let out_view = pkt.out_view(env.hook);
            let query = SetQuery {
                src: Field {
                    addr: pkt.src,
                    port: pkt.sport,
                    iface: in_view.name(),
                },
                dst: Field {
                    addr: pkt.dst,
                    port: pkt.dport,
                    iface: out_view.name(),
                },
                proto: pkt.proto,
                icmp: pkt.icmp,
                mark: pkt.mark,
            };
            Some(match env.sets.test(name, &flags, &query) {
                Membership::In => Outcome::Yes,
                Membership::Out => Outcome::No,
                Membership::Unknown(why) => Outcome::Maybe(why),
            })
        }
        "return-nomatch" | "update-counters" | "update-subcounters" => Some(Outcome::Yes),
        _ => None,
    })
}

fn addr_type(ip: IpAddr, env: &Env<'_>) -> &'static str {
    addr_types(ip, false, env)[0]
}

/// The `-m addrtype` types `ip` has, as the kernel classifies them. IPv4 (`inet_addr_type`)
/// gives one: 0.0.0.0/8 and 255.255.255.255 BROADCAST, 224/4 MULTICAST, then the local table
/// (LOCAL, subnet BROADCAST), else UNICAST. IPv6 (`match_type6`) tests each type on its own, so
/// an address of the node is both UNICAST and LOCAL; `::` is UNSPEC, ff00::/8 MULTICAST.
/// `redirected`: the address is REDIRECT's unknown local one.
fn addr_types(ip: IpAddr, redirected: bool, env: &Env<'_>) -> &'static [&'static str] {
    match ip {
        IpAddr::V4(_) if redirected => &["LOCAL"],
        IpAddr::V4(v) if v.octets()[0] == 0 || v.is_broadcast() => &["BROADCAST"],
        IpAddr::V4(v) if v.is_multicast() => &["MULTICAST"],
        IpAddr::V4(_) if (env.is_local)(ip) => &["LOCAL"],
        IpAddr::V4(_) if (env.is_broadcast)(ip) => &["BROADCAST"],
        IpAddr::V4(_) => &["UNICAST"],
        IpAddr::V6(_) if redirected => &["UNICAST", "LOCAL"],
        IpAddr::V6(v) if v.is_multicast() => &["MULTICAST"],
        IpAddr::V6(v) if v.is_unspecified() => &["UNSPEC"],
        IpAddr::V6(_) if (env.is_local)(ip) => &["UNICAST", "LOCAL"],
        IpAddr::V6(_) => &["UNICAST"],
    }
}

fn addrtype(m: &Match, pkt: &PktState, env: &Env<'_>) -> Outcome {
    if m.options.iter().any(|o| o.name.starts_with("limit-iface")) {
        return Outcome::Maybe("addrtype --limit-iface-* is not modelled".into());
    }
    each_option(m, |opt| {
        let ip = match opt.name.as_str() {
            "src-type" => pkt.src,
            "dst-type" => pkt.dst,
            "limit-iface-in" | "limit-iface-out" => {
                return Some(Outcome::Maybe(
                    "addrtype --limit-iface-* is not modelled".into(),
                ));
            }
            _ => return None,
        };
        // REDIRECT's unknown target is an address of the incoming interface.
        let redirected = opt.name == "dst-type" && pkt.dst_unknown.is_some();
        let kinds = addr_types(ip, redirected, env);
        Some(bool_outcome(
            first(opt)
                .split(',')
                .any(|t| kinds.iter().any(|k| t.eq_ignore_ascii_case(k))),
        ))
    })
}

fn iprange(m: &Match, pkt: &PktState) -> Outcome {
    each_option(m, |opt| {
        let ip = match opt.name.as_str() {
            "src-range" => pkt.src,
            "dst-range" => match &pkt.dst_unknown {
                Some(placeholder) => return Some(unknown_dst(placeholder)),
                None => pkt.dst,
            },
            _ => return None,
        };
        let (lo, hi) = first(opt).split_once('-')?;
        let (lo, hi): (IpAddr, IpAddr) = (lo.parse().ok()?, hi.parse().ok()?);
        Some(bool_outcome(
            ip.is_ipv4() == lo.is_ipv4() && lo <= ip && ip <= hi,
        ))
    })
}

fn statistic(m: &Match) -> Outcome {
    let mode = m.value("mode").unwrap_or("random");
    let mut acc = Acc::default();
    let chance = match mode {
        "random" => m.option("probability").and_then(|o| {
            let p: f64 = first(o).parse().ok()?;
            Some(negate(o.negated, Outcome::Chance(p.clamp(0.0, 1.0))))
        }),
        "nth" => m.option("every").and_then(|o| {
            let every: f64 = first(o).parse().ok()?;
            Some(negate(o.negated, Outcome::Chance(1.0 / every.max(1.0))))
        }),
        _ => None,
    };
    acc.add(
        chance.unwrap_or_else(|| Outcome::Maybe(format!("statistic mode {mode} not understood"))),
    );
    match acc.finish() {
        Outcome::Chance(p) if p >= 1.0 => Outcome::Yes,
        Outcome::Chance(p) if p <= 0.0 => Outcome::No,
        other => other,
    }
}

fn physdev(m: &Match, pkt: &PktState) -> Outcome {
    let Some((pin, pout)) = &pkt.physdev else {
        // Not bridged: the kernel matches only when every option used is negated.
        return bool_outcome(m.options.iter().all(|o| o.negated));
    };
    each_option(m, |opt| {
        Some(match opt.name.as_str() {
            "physdev-in" => {
                bool_outcome(pin.as_deref().is_some_and(|p| iface_matches(first(opt), p)))
            }
            "physdev-out" => bool_outcome(
                pout.as_deref()
                    .is_some_and(|p| iface_matches(first(opt), p)),
            ),
            "physdev-is-in" => bool_outcome(pin.is_some()),
            "physdev-is-out" => bool_outcome(pout.is_some()),
            "physdev-is-bridged" => Outcome::Yes,
            _ => return None,
        })
    })
}

fn owner(m: &Match, pkt: &PktState, env: &Env<'_>) -> Outcome {
    let has_socket = env.locally_generated
        && matches!(env.hook, Hook::Output | Hook::Postrouting)
        && !pkt.looped;
    if !has_socket {
        return bool_outcome(m.options.iter().all(|o| o.negated));
    }
    each_option(m, |opt| {
        Some(match (opt.name.as_str(), pkt.uid) {
            ("socket-exists", _) => Outcome::Yes,
            ("uid-owner", Some(uid)) => {
                let (lo, hi) = first(opt)
                    .split_once('-')
                    .unwrap_or((first(opt), first(opt)));
                match (lo.parse::<u32>(), hi.parse::<u32>()) {
                    (Ok(lo), Ok(hi)) => bool_outcome((lo..=hi).contains(&uid)),
                    _ => Outcome::Maybe(format!(
                        "user name {:?} cannot be resolved offline",
                        first(opt)
                    )),
                }
            }
            ("uid-owner", None) => Outcome::Maybe("the sending socket's uid is unknown".into()),
            _ => Outcome::Maybe(format!("owner --{} is not modelled", opt.name)),
        })
    })
}

fn pkttype(m: &Match, pkt: &PktState, env: &Env<'_>) -> Outcome {
    let kind = match addr_type(pkt.dst, env) {
        "MULTICAST" => "multicast",
        "BROADCAST" => "broadcast",
        _ => "unicast",
    };
    each_option(m, |opt| {
        (opt.name == "pkt-type").then(|| bool_outcome(first(opt).eq_ignore_ascii_case(kind)))
    })
}

fn policy(m: &Match) -> Outcome {
    each_option(m, |opt| match opt.name.as_str() {
        "dir" | "strict" => Some(Outcome::Yes),
        "pol" => Some(bool_outcome(first(opt) == "none")),
        _ => None,
    })
}
