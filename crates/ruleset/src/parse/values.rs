//! Arity and value syntax of the options nfscope models, checked the way `iptables-restore`
//! checks them (libxtables and the `libxt_*` extensions of iptables 1.8).
//!
//! Owns one table: for a (match module or target, option) pair, how many values the option takes
//! and what each must look like (a port or port range, an address, a `value/mask` mark, a state
//! list, a rate, …). [`check_match_option`] and [`check_target_option`] answer `Ok` for options
//! they do not model, so an unknown extension is never refused here. It does not bind options to
//! modules (see `modules`) and does not keep decoded values (the model stores the text).

use std::net::IpAddr;

use super::addr::parse_addr;

/// What one value of an option must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// Anything (only the count of values is checked): names, free text, values the model
    /// keeps as text (anonymised corpus dumps carry `--mac-source XX:XX:XX:XX:XX:XX`).
    Any,
    /// A comment: at most 255 bytes (`XT_MAX_COMMENT_LEN` 256 with the NUL).
    Comment,
    /// `PORT` or `[PORT]:[PORT]` (tcp, udp, sctp, dccp, conntrack ports).
    PortRange,
    /// `PORT[,PORT|PORT:PORT]…`, at most 15 ports, a range counting as two (multiport).
    PortList,
    /// `PORT` or `PORT-PORT` (REDIRECT / MASQUERADE `--to-ports`).
    PortDashRange,
    /// `ADDR[/MASK]`.
    Addr,
    /// `ADDR[-ADDR]` (iprange).
    AddrRange,
    /// `VALUE[/MASK]`, both unsigned 32-bit (decimal, `0x` hex or leading-0 octal).
    Mark,
    /// An unsigned 32-bit number.
    U32,
    /// An unsigned 8-bit number.
    U8,
    /// `N[:M]` of 16-bit numbers (length).
    U16Range,
    /// An interface name: 1–15 characters (`IFNAMSIZ` - 1), `+` wildcard allowed.
    Iface,
    /// A protocol name or a number 0–255.
    Proto,
    /// Comma list of conntrack states.
    CtStates,
    /// Comma list of `-m state` states.
    States,
    /// Comma list of conntrack status bits.
    CtStatus,
    /// `ORIGINAL` or `REPLY`.
    CtDir,
    /// `N[/second|/minute|/hour|/day]` (any prefix of the unit), N ≥ 1.
    Rate,
    /// A probability between 0 and 1.
    Probability,
    /// `random` or `nth`.
    StatisticMode,
    /// Comma list of TCP flags (`SYN,ACK,FIN,RST,URG,PSH,ALL,NONE`).
    TcpFlags,
    /// Comma list of 1–6 `src`/`dst` (set match directions).
    SetDirs,
    /// Comma list of address types (`LOCAL`, `UNICAST`, …).
    AddrTypes,
    /// A packet type (`unicast`, `broadcast`, `multicast`, …).
    PktType,
    /// An ICMP type: a name, `TYPE` or `TYPE/CODE` (numbers 0–255).
    IcmpType,
    /// `[ADDR[-ADDR]][:PORT[-PORT]]` (DNAT / SNAT), IPv6 addresses in brackets.
    NatRange,
    /// One of these words (case-insensitive).
    OneOf(&'static [&'static str]),
    /// `N[:M]` of 32-bit numbers.
    U32Range,
}

/// The values an option takes, one entry per value; empty for a flag.
type Spec = &'static [Value];

const FLAG: Spec = &[];
const ONE_ANY: Spec = &[Value::Any];

fn match_spec(module: &str, option: &str) -> Option<Spec> {
    use Value::*;
    Some(match (module, option) {
        (
            "tcp" | "udp" | "udplite" | "sctp" | "dccp",
            "sport" | "source-port" | "dport" | "destination-port",
        ) => &[PortRange],
        ("tcp", "tcp-flags") => &[TcpFlags, TcpFlags],
        ("tcp", "syn") => FLAG,
        ("tcp", "tcp-option") => &[U8],
        ("icmp", "icmp-type") | ("icmp6" | "icmpv6", "icmpv6-type") => &[IcmpType],
        ("comment", "comment") => &[Comment],
        ("conntrack", "ctstate") => &[CtStates],
        ("conntrack", "ctproto") => &[Proto],
        ("conntrack", "ctorigsrc" | "ctorigdst" | "ctreplsrc" | "ctrepldst") => &[Addr],
        ("conntrack", "ctorigsrcport" | "ctorigdstport" | "ctreplsrcport" | "ctrepldstport") => {
            &[PortRange]
        }
        ("conntrack", "ctstatus") => &[CtStatus],
        ("conntrack", "ctdir") => &[CtDir],
        ("conntrack", "ctexpire") => &[U32Range],
        ("owner", "uid-owner" | "gid-owner") => ONE_ANY,
        ("owner", "socket-exists" | "suppl-groups") => FLAG,
        ("policy", "dir") => &[OneOf(&["in", "out"])],
        ("policy", "pol") => &[OneOf(&["none", "ipsec"])],
        ("policy", "strict" | "next") => FLAG,
        (
            "hashlimit",
            "hashlimit" | "hashlimit-upto" | "hashlimit-above" | "hashlimit-burst"
            | "hashlimit-mode" | "hashlimit-name",
        ) => ONE_ANY,
        (
            "hashlimit",
            "hashlimit-srcmask"
            | "hashlimit-dstmask"
            | "hashlimit-htable-size"
            | "hashlimit-htable-max"
            | "hashlimit-htable-expire"
            | "hashlimit-htable-gcinterval",
        ) => &[U32],
        ("state", "state") => &[States],
        ("mark" | "connmark", "mark") => &[Mark],
        ("set", "match-set" | "set") => &[Any, SetDirs],
        (
            "set",
            "return-nomatch"
            | "update-counters"
            | "update-subcounters"
            | "no-update-counters"
            | "no-update-subcounters",
        ) => FLAG,
        ("addrtype", "src-type" | "dst-type") => &[AddrTypes],
        ("addrtype", "limit-iface-in" | "limit-iface-out") => FLAG,
        ("multiport", "sports" | "source-ports" | "dports" | "destination-ports" | "ports") => {
            &[PortList]
        }
        ("iprange", "src-range" | "dst-range") => &[AddrRange],
        ("physdev", "physdev-in" | "physdev-out") => &[Iface],
        ("physdev", "physdev-is-in" | "physdev-is-out" | "physdev-is-bridged") => FLAG,
        ("statistic", "mode") => &[StatisticMode],
        ("statistic", "probability") => &[Probability],
        ("statistic", "every" | "packet") => &[U32],
        ("limit", "limit") => &[Rate],
        ("limit", "limit-burst") => &[U32],
        ("pkttype", "pkt-type") => &[PktType],
        ("length", "length") => &[U16Range],
        ("ttl", "ttl-eq" | "ttl-lt" | "ttl-gt") | ("hl", "hl-eq" | "hl-lt" | "hl-gt") => &[U8],
        ("mac", "mac-source") => ONE_ANY,
        ("recent", "name") => ONE_ANY,
        ("recent", "seconds" | "hitcount") => &[U32],
        (
            "recent",
            "set" | "rcheck" | "update" | "remove" | "rsource" | "rdest" | "rttl" | "reap",
        ) => FLAG,
        ("recent", "mask") => &[Addr],
        ("helper", "helper") => ONE_ANY,
        _ => return None,
    })
}

fn target_spec(target: &str, option: &str) -> Option<Spec> {
    use Value::*;
    Some(match (target, option) {
        ("DNAT" | "SNAT" | "MASQUERADE" | "REDIRECT", "random" | "random-fully" | "persistent") => {
            FLAG
        }
        ("MASQUERADE" | "REDIRECT", "to-ports") => &[PortDashRange],
        ("REJECT", "reject-with") => ONE_ANY,
        ("MARK", "set-mark" | "set-xmark" | "and-mark" | "or-mark" | "xor-mark") => &[Mark],
        ("CONNMARK", "set-mark" | "set-xmark" | "and-mark" | "or-mark" | "xor-mark") => &[Mark],
        ("CONNMARK", "save-mark" | "restore-mark") => FLAG,
        // iptables-save prints these masks in hex (`--nfmask 0xffffffff`).
        ("CONNMARK", "nfmask" | "ctmask" | "mask") => &[Mark],
        ("LOG", "log-prefix") => ONE_ANY,
        ("LOG", "log-level") => ONE_ANY,
        ("LOG", "log-tcp-sequence" | "log-tcp-options" | "log-ip-options" | "log-uid") => FLAG,
        ("NFLOG", "nflog-group" | "nflog-threshold" | "nflog-range" | "nflog-size") => &[U32],
        ("NFLOG", "nflog-prefix") => ONE_ANY,
        ("NFQUEUE", "queue-num") => &[U32],
        ("NFQUEUE", "queue-bypass" | "fail-open" | "queue-cpu-fanout") => FLAG,
        ("TPROXY", "on-port") => &[PortRange],
        ("TPROXY", "on-ip") => &[Addr],
        ("TPROXY", "tproxy-mark") => &[Mark],
        ("TCPMSS", "set-mss") => &[U32],
        ("TCPMSS", "clamp-mss-to-pmtu") => FLAG,
        ("CT", "notrack") => FLAG,
        ("NETMAP", "to") => &[Addr],
        _ => return None,
    })
}

/// Checks a match option's values; the error names the value index (0-based, `values.len()` for
/// a missing value) and says what was expected.
pub(crate) fn check_match_option(
    module: &str,
    option: &str,
    values: &[String],
) -> Result<(), (usize, String)> {
    match match_spec(module, option) {
        Some(spec) => check(spec, option, values),
        None => Ok(()),
    }
}

/// Checks a target option's values, like [`check_match_option`].
pub(crate) fn check_target_option(
    target: &str,
    option: &str,
    values: &[String],
) -> Result<(), (usize, String)> {
    // An empty `--to-destination` is what old iptables-save prints for a DNAT it cannot render
    // (corpus: cilium-ipvs-…-garbled-dnat); it is read so that the lint reports the rule as
    // `garbled-rule` instead of the whole dump failing. A value, when there is one, is checked.
    if matches!(
        (target, option),
        ("DNAT", "to-destination") | ("SNAT", "to-source")
    ) {
        return match values {
            [] => Ok(()),
            _ => check(&[Value::NatRange], option, values),
        };
    }
    match target_spec(target, option) {
        Some(spec) => check(spec, option, values),
        None => Ok(()),
    }
}

fn check(spec: Spec, option: &str, values: &[String]) -> Result<(), (usize, String)> {
    if values.len() < spec.len() {
        let what: Vec<&str> = spec[values.len()..].iter().map(|v| describe(*v)).collect();
        return Err((
            values.len(),
            format!(
                "option `--{option}` needs a value: expected {}",
                what.join(" and ")
            ),
        ));
    }
    if values.len() > spec.len() {
        let message = if spec.is_empty() {
            format!("option `--{option}` takes no value, got `{}`", values[0])
        } else {
            format!(
                "unexpected `{}`: option `--{option}` takes {} value(s)",
                values[spec.len()],
                spec.len()
            )
        };
        return Err((spec.len(), message));
    }
    for (i, (kind, value)) in spec.iter().zip(values).enumerate() {
        if !valid(*kind, value) {
            return Err((
                i,
                format!(
                    "invalid value `{value}` for `--{option}`: expected {}",
                    describe(*kind)
                ),
            ));
        }
    }
    Ok(())
}

fn describe(kind: Value) -> &'static str {
    match kind {
        Value::Any => "a value",
        Value::Comment => "a comment of at most 255 bytes",
        Value::PortRange => "a port (0-65535 or a service name) or a range `FIRST:LAST`",
        Value::PortList => "a comma list of at most 15 ports or `FIRST:LAST` ranges",
        Value::PortDashRange => "a port or a range `FIRST-LAST`",
        Value::Addr => "an address with an optional `/prefix` or `/netmask`",
        Value::AddrRange => "an address or a range `FIRST-LAST`",
        Value::Mark => "a 32-bit value with an optional `/mask`, e.g. `0x4000/0x4000`",
        Value::U32 => "an unsigned 32-bit number",
        Value::U8 => "a number 0-255",
        Value::U16Range => "a number 0-65535 or a range `MIN:MAX`",
        Value::Iface => "an interface name of 1 to 15 characters",
        Value::Proto => "a protocol name or number 0-255",
        Value::CtStates => {
            "a comma list of INVALID, NEW, ESTABLISHED, RELATED, UNTRACKED, SNAT, DNAT"
        }
        Value::States => "a comma list of INVALID, NEW, ESTABLISHED, RELATED, UNTRACKED",
        Value::CtStatus => "a comma list of NONE, EXPECTED, SEEN_REPLY, ASSURED, CONFIRMED",
        Value::CtDir => "ORIGINAL or REPLY",
        Value::Rate => "a rate `N/second`, `N/minute`, `N/hour` or `N/day`",
        Value::Probability => "a probability between 0 and 1",
        Value::StatisticMode => "`random` or `nth`",
        Value::TcpFlags => "a comma list of SYN, ACK, FIN, RST, URG, PSH, ALL, NONE",
        Value::SetDirs => "a comma list of 1 to 6 `src`/`dst`",
        Value::AddrTypes => {
            "a comma list of UNSPEC, UNICAST, LOCAL, BROADCAST, ANYCAST, MULTICAST, BLACKHOLE, \
             UNREACHABLE, PROHIBIT, THROW, NAT, XRESOLVE"
        }
        Value::PktType => "unicast, broadcast, multicast, host, otherhost, outgoing or loopback",
        Value::IcmpType => "an ICMP type name, `TYPE` or `TYPE/CODE`",
        Value::NatRange => "`[ADDR[-ADDR]][:PORT[-PORT]]`",
        Value::OneOf(words) => match words {
            ["in", "out"] => "`in` or `out`",
            ["none", "ipsec"] => "`none` or `ipsec`",
            _ => "one of the documented words",
        },
        Value::U32Range => "an unsigned 32-bit number or a range `MIN:MAX`",
    }
}

fn valid(kind: Value, v: &str) -> bool {
    match kind {
        Value::Any => true,
        Value::Comment => v.len() <= 255,
        Value::PortRange => port_range(v, ':'),
        Value::PortList => port_list(v),
        Value::PortDashRange => port_range(v, '-'),
        Value::Addr => parse_addr(v).is_ok(),
        Value::AddrRange => match v.split_once('-') {
            Some((a, b)) => matches!(
                (a.parse::<IpAddr>(), b.parse::<IpAddr>()),
                (Ok(IpAddr::V4(_)), Ok(IpAddr::V4(_))) | (Ok(IpAddr::V6(_)), Ok(IpAddr::V6(_)))
            ),
            None => v.parse::<IpAddr>().is_ok(),
        },
        Value::Mark => match v.split_once('/') {
            Some((value, mask)) => number_u32(value).is_some() && number_u32(mask).is_some(),
            None => number_u32(v).is_some(),
        },
        Value::U32 => decimal(v).is_some_and(|n| n <= u64::from(u32::MAX)),
        Value::U8 => decimal(v).is_some_and(|n| n <= 255),
        Value::U16Range => range(v, ':', |p| decimal(p).is_some_and(|n| n <= 65535)),
        Value::Iface => interface_name(v).is_ok(),
        Value::Proto => protocol(v).is_ok(),
        Value::CtStates => list_of(
            v,
            &[
                "INVALID",
                "NEW",
                "ESTABLISHED",
                "RELATED",
                "UNTRACKED",
                "SNAT",
                "DNAT",
            ],
        ),
        Value::States => list_of(
            v,
            &["INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED"],
        ),
        Value::CtStatus => list_of(
            v,
            &["NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"],
        ),
        Value::CtDir => list_of(v, &["ORIGINAL", "REPLY"]) && !v.contains(','),
        Value::Rate => rate(v),
        Value::Probability => v.parse::<f64>().is_ok_and(|p| (0.0..=1.0).contains(&p)),
        Value::StatisticMode => matches!(v, "random" | "nth"),
        Value::TcpFlags => list_of(
            v,
            &["SYN", "ACK", "FIN", "RST", "URG", "PSH", "ALL", "NONE"],
        ),
        Value::SetDirs => {
            let n = v.split(',').count();
            (1..=6).contains(&n) && v.split(',').all(|d| matches!(d, "src" | "dst"))
        }
        Value::AddrTypes => list_of(
            v,
            &[
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
            ],
        ),
        Value::PktType => matches!(
            v.to_ascii_lowercase().as_str(),
            "unicast" | "broadcast" | "multicast" | "host" | "otherhost" | "outgoing" | "loopback"
        ),
        Value::IcmpType => icmp_type(v),
        Value::NatRange => nat_range(v),
        Value::OneOf(words) => words.iter().any(|w| w.eq_ignore_ascii_case(v)),
        Value::U32Range => range(v, ':', |p| {
            decimal(p).is_some_and(|n| n <= u64::from(u32::MAX))
        }),
    }
}

/// A decimal number without sign (what `xtables_strtoui` reads for most numeric options).
fn decimal(v: &str) -> Option<u64> {
    (!v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse().ok())
        .flatten()
}

/// `strtoul(v, 0)`: decimal, `0x` hex or leading-0 octal, within u32.
fn number_u32(v: &str) -> Option<u32> {
    let (digits, radix) = if let Some(hex) = v.strip_prefix("0x").or(v.strip_prefix("0X")) {
        (hex, 16)
    } else if v.len() > 1 && v.starts_with('0') {
        (&v[1..], 8)
    } else {
        (v, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// A port: 0–65535, or a service name (letters first, as in `/etc/services`).
fn port(v: &str) -> bool {
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return decimal(v).is_some_and(|n| n <= 65535);
    }
    v.starts_with(|c: char| c.is_ascii_alphabetic())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'/'))
}

/// `ITEM` or `[ITEM]SEP[ITEM]`, each present item valid, and a numeric range not reversed
/// (iptables refuses `90:80`).
fn range(v: &str, sep: char, item: impl Fn(&str) -> bool) -> bool {
    match v.split_once(sep) {
        Some((a, b)) => {
            let ordered = match (decimal(a), decimal(b)) {
                (Some(a), Some(b)) => a <= b,
                _ => true,
            };
            (!a.is_empty() || !b.is_empty())
                && (a.is_empty() || item(a))
                && (b.is_empty() || item(b))
                && !b.contains(sep)
                && ordered
        }
        None => item(v),
    }
}

fn port_range(v: &str, sep: char) -> bool {
    !v.is_empty() && range(v, sep, port)
}

fn port_list(v: &str) -> bool {
    let mut ports = 0;
    for item in v.split(',') {
        match item.split_once(':') {
            Some((a, b)) => {
                if !port(a) || !port(b) || decimal(a) > decimal(b) {
                    return false;
                }
                ports += 2;
            }
            None => {
                if !port(item) {
                    return false;
                }
                ports += 1;
            }
        }
    }
    ports <= 15
}

fn list_of(v: &str, words: &[&str]) -> bool {
    v.split(',')
        .all(|w| words.iter().any(|known| known.eq_ignore_ascii_case(w)))
}

fn rate(v: &str) -> bool {
    let (n, unit) = match v.split_once('/') {
        Some((n, unit)) => (n, Some(unit)),
        None => (v, None),
    };
    let unit_ok = unit.is_none_or(|u| {
        !u.is_empty()
            && ["second", "minute", "hour", "day"]
                .iter()
                .any(|full| full.len() >= u.len() && full[..u.len()].eq_ignore_ascii_case(u))
    });
    unit_ok && decimal(n).is_some_and(|n| (1..=u64::from(u32::MAX)).contains(&n))
}

fn icmp_type(v: &str) -> bool {
    if v.starts_with(|c: char| c.is_ascii_digit()) {
        return range(v, '/', |p| decimal(p).is_some_and(|n| n <= 255)) && !v.ends_with('/');
    }
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn nat_range(v: &str) -> bool {
    let (addrs, ports) = if let Some(rest) = v.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        (inside, after.strip_prefix(':'))
    } else if v.matches(':').count() > 1 {
        (v, None)
    } else {
        match v.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (v, None),
        }
    };
    let addrs_ok = addrs.is_empty()
        || addrs.split('-').all(|a| a.parse::<IpAddr>().is_ok()) && addrs.split('-').count() <= 2;
    // DNAT revision 2 shifts a port range from a base: `PORT-PORT/BASE`.
    let ports_ok = ports.is_none_or(|p| match p.split_once('/') {
        Some((range, base)) => port_range(range, '-') && port(base),
        None => port_range(p, '-'),
    });
    addrs_ok && ports_ok && !v.is_empty()
}

/// An interface name as `xtables_parse_interface` accepts it: 1–15 bytes.
pub(crate) fn interface_name(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 15 {
        return Err(format!(
            "invalid interface name `{v}`: expected 1 to 15 characters (IFNAMSIZ is 16)"
        ));
    }
    Ok(())
}

/// Protocols iptables resolves by name: its built-in table plus the IANA keywords that
/// `/etc/protocols` lists on Debian and Red Hat systems (save output prints these names).
const PROTOCOL_NAMES: &[&str] = &[
    "3pc",
    "a/n",
    "aggfrag",
    "ah",
    "all",
    "argus",
    "aris",
    "ax.25",
    "bbn-rcc-mon",
    "bna",
    "br-sat-mon",
    "cbt",
    "cftp",
    "chaos",
    "compaq-peer",
    "cphb",
    "cpnx",
    "crtp",
    "crudp",
    "dccp",
    "dcn-meas",
    "ddp",
    "ddx",
    "dgp",
    "dsr",
    "egp",
    "eigrp",
    "emcon",
    "encap",
    "esp",
    "etherip",
    "ethernet",
    "fc",
    "fire",
    "ggp",
    "gmtp",
    "gre",
    "hip",
    "hmp",
    "hopopt",
    "i-nlsp",
    "iatp",
    "icmp",
    "icmpv6",
    "idpr",
    "idpr-cmtp",
    "idrp",
    "ifmp",
    "igmp",
    "igp",
    "il",
    "ip",
    "ip-encap",
    "ipcomp",
    "ipcv",
    "ipencap",
    "ipip",
    "iplt",
    "ippc",
    "ipsec-ah",
    "ipsec-esp",
    "iptm",
    "ipv4",
    "ipv6",
    "ipv6-frag",
    "ipv6-icmp",
    "ipv6-mh",
    "ipv6-nonxt",
    "ipv6-opts",
    "ipv6-route",
    "ipx-in-ip",
    "irtp",
    "isis",
    "iso-ip",
    "iso-tp4",
    "kryptolan",
    "l2tp",
    "larp",
    "leaf-1",
    "leaf-2",
    "manet",
    "merit-inp",
    "mfe-nsp",
    "mh",
    "micp",
    "mobile",
    "mobility-header",
    "mpls-in-ip",
    "mptcp",
    "mtp",
    "mux",
    "narp",
    "netblt",
    "nsfnet-igp",
    "nsh",
    "nvp-ii",
    "ospf",
    "ospfigp",
    "pgm",
    "pim",
    "pipe",
    "pnni",
    "prm",
    "ptp",
    "pup",
    "pvp",
    "qnx",
    "rdp",
    "rohc",
    "rspf",
    "rsvp",
    "rsvp-e2e-ignore",
    "rvd",
    "sat-expak",
    "sat-mon",
    "scc-sp",
    "scps",
    "sctp",
    "sdrp",
    "secure-vmtp",
    "shim6",
    "skip",
    "sm",
    "smp",
    "snp",
    "sprite-rpc",
    "sps",
    "srp",
    "sscopmce",
    "st",
    "stp",
    "sun-nd",
    "swipe",
    "tcf",
    "tcp",
    "tlsp",
    "tp++",
    "trunk-1",
    "trunk-2",
    "ttp",
    "udp",
    "udplite",
    "uti",
    "vines",
    "visa",
    "vmtp",
    "vrrp",
    "wb-expak",
    "wb-mon",
    "wesp",
    "wsn",
    "xnet",
    "xns-idp",
    "xtp",
];

/// `-p` / `--ctproto`: a protocol name iptables resolves, or a number 0–255.
pub(crate) fn protocol(v: &str) -> Result<(), String> {
    if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
        return match decimal(v) {
            Some(n) if n <= 255 => Ok(()),
            _ => Err(format!("invalid protocol number `{v}`: expected 0-255")),
        };
    }
    if PROTOCOL_NAMES.iter().any(|p| p.eq_ignore_ascii_case(v)) {
        Ok(())
    } else {
        Err(format!(
            "unknown protocol `{v}`: expected a name such as tcp, udp, icmp, sctp or a number 0-255"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(module: &str, option: &str, values: &[&str]) -> bool {
        let values: Vec<String> = values.iter().map(|s| (*s).to_owned()).collect();
        check_match_option(module, option, &values).is_ok()
    }

    #[test]
    fn ports_and_ranges() {
        for good in [
            "80",
            "0",
            "65535",
            "1000:2000",
            ":1023",
            "1024:",
            "http",
            "ssh",
        ] {
            assert!(ok("tcp", "dport", &[good]), "{good}");
        }
        for bad in ["65536", "1:2:3", ":", "80-90", "90:80", "-", "8o80x!", ""] {
            assert!(!ok("tcp", "dport", &[bad]), "{bad}");
        }
        assert!(!ok("tcp", "dport", &[]));
        assert!(!ok("tcp", "dport", &["80", "81"]));
        assert!(ok("multiport", "dports", &["22,80,443,8000:8100"]));
        assert!(!ok(
            "multiport",
            "dports",
            &["1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16"]
        ));
        assert!(!ok("multiport", "dports", &["22,,80"]));
    }

    #[test]
    fn marks_states_rates_and_flags() {
        assert!(ok("mark", "mark", &["0x4000/0x4000"]));
        assert!(ok("mark", "mark", &["16384"]));
        assert!(!ok("mark", "mark", &["0x1ffffffff"]));
        assert!(!ok("mark", "mark", &["0x4000/"]));
        assert!(ok("conntrack", "ctstate", &["RELATED,ESTABLISHED"]));
        assert!(!ok("conntrack", "ctstate", &["RELATED,BOGUS"]));
        assert!(ok("limit", "limit", &["5/sec"]));
        assert!(ok("limit", "limit", &["100/minute"]));
        assert!(!ok("limit", "limit", &["5/fortnight"]));
        assert!(!ok("limit", "limit", &["0/s"]));
        assert!(ok("tcp", "tcp-flags", &["FIN,SYN,RST,ACK", "SYN"]));
        assert!(!ok("tcp", "tcp-flags", &["FIN,SYN"]));
        assert!(ok("tcp", "syn", &[]));
        assert!(!ok("tcp", "syn", &["80"]));
        assert!(ok("set", "match-set", &["KUBE-CLUSTER-IP", "dst,dst"]));
        assert!(!ok("set", "match-set", &["KUBE-CLUSTER-IP"]));
        assert!(!ok("set", "match-set", &["S", "dest"]));
        assert!(ok("statistic", "probability", &["0.33333333349"]));
        assert!(!ok("statistic", "probability", &["1.5"]));
        assert!(ok("iprange", "src-range", &["10.0.0.1-10.0.0.9"]));
        assert!(!ok("iprange", "src-range", &["10.0.0.1-fd00::1"]));
        assert!(!ok(
            "physdev",
            "physdev-in",
            &["a-very-long-interface-name"]
        ));
        assert!(ok("unknown-module", "whatever", &[]));
        assert!(ok("policy", "dir", &["in"]));
        assert!(!ok("policy", "dir", &["sideways"]));
        assert!(ok("conntrack", "ctexpire", &["10:100"]));
        assert!(!ok("conntrack", "ctexpire", &["100:10"]));
    }

    #[test]
    fn targets() {
        let t = |target: &str, option: &str, values: &[&str]| {
            let values: Vec<String> = values.iter().map(|s| (*s).to_owned()).collect();
            check_target_option(target, option, &values).is_ok()
        };
        assert!(t("MARK", "set-xmark", &["0x4000/0x4000"]));
        assert!(!t("MARK", "set-xmark", &[]));
        assert!(t("REDIRECT", "to-ports", &["15001"]));
        assert!(t("MASQUERADE", "to-ports", &["1024-65535"]));
        assert!(!t("REDIRECT", "to-ports", &["99999"]));
        assert!(t("DNAT", "to-destination", &[]));
        assert!(t("MASQUERADE", "random-fully", &[]));
        assert!(nat_range("10.0.0.1:80"));
        assert!(nat_range("[fd00::1]:80"));
        assert!(nat_range("fd00::1"));
        assert!(!nat_range("10.0.0.300:80"));
        assert!(nat_range("10.0.0.1:1000-2000/100"));
        assert!(t("CONNMARK", "nfmask", &["0xffffffff"]));
    }
}
