//! The typed evaluator: does one typed expression hold for the packet as it is now?
//!
//! Owns reading a [`Key`] from a packet ([`read_key`]: addresses, ports, layer-4 protocol, nfproto,
//! interface names with the `*` wildcard, meta mark/pkttype/skuid, ct state/status/mark and
//! tuple, icmp type/code, tcp flags, `fib … type`, masks and concatenations), comparing it with a
//! typed right-hand side ([`eval_match`]: values, prefixes, ranges, bitmasks, anonymous and named
//! sets with intervals and concatenations; dynamic sets answer "maybe"), and map lookups
//! ([`lookup`]: verdict and data maps, `numgen` keys as branches with probabilities). Each
//! answers yes, no, "with this probability" or "cannot tell, because …" ([`Outcome`]). It is keyed
//! on the typed model of `nfscope_ruleset::typed`, not on a syntax: native nft rules and iptables
//! rules lowered to the model share it. For iptables rules ([`TypedEnv::xt`]) it follows
//! x_tables where the kernel's modules differ from nft's expressions: a negated owner or physdev
//! option holds for a packet without the field, `-m addrtype` gives an IPv6 address several
//! types, `--ctstate` mixes states and NAT status in one mask ([`CtKey::XtState`]), `--ports`
//! decides per element when one port is unknown, and `@name` is an ipset whose own type gives
//! each dimension ([`TypedEnv::ipsets`], `sets`). It does not apply statements (verdicts, NAT,
//! marks) or walk chains: that is `nft_walk` and `engine`.

use std::cmp::Ordering;
use std::net::IpAddr;

use nfscope_ruleset::typed::{
    BitOp, CtDir, CtKey, Dir, IfaceDir, Key, MapData, MapRef, Match, MetaKey, NftSetDef, NftTable,
    Op, ProtoVia, Rhs, SetElem, Value, iface_name_matches, numgen_branches,
};

use crate::packet::{CtState, Proto};
use crate::state::{Hook, IfaceView, PktState};

/// The answer for one match (or a whole rule's match part).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Matches.
    Yes,
    /// Does not match.
    No,
    /// Matches with this probability (statistic, numgen), strictly between 0 and 1.
    Chance(f64),
    /// Cannot tell; the reason.
    Maybe(String),
}

/// Where named sets and maps come from (an nft table; later also ipsets lowered to this model).
pub trait SetSource<'a> {
    /// The set or map of this name.
    fn set_named(&self, name: &str) -> Option<&'a NftSetDef>;

    /// The indices of the elements of set `name` that can hold for the packet value `pv`, in
    /// element order, when an index can tell (an exact-key hash plus every element it cannot
    /// hash: ranges, prefixes, wildcards); `None` = look at every element.
    fn candidates(&self, _name: &str, _pv: &PktVal) -> Option<Vec<usize>> {
        None
    }
}

/// A hashable form of an exact packet value or element key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Exact {
    /// An address.
    Addr(IpAddr),
    /// A number.
    Int(u64),
    /// A name (interfaces).
    Str(String),
    /// A concatenation.
    Concat(Vec<Self>),
}

impl Exact {
    /// The packet value's exact form (`None` for symbolic results).
    pub fn of_packet(pv: &PktVal) -> Option<Self> {
        Some(match pv {
            PktVal::Addr(a) => Self::Addr(*a),
            PktVal::Int(n) => Self::Int(*n),
            PktVal::Name(n, _) => Self::Str(n.clone()),
            PktVal::Sym(_) | PktVal::Types(_) | PktVal::Unknown(_) => return None,
            PktVal::Concat(v) => {
                Self::Concat(v.iter().map(Self::of_packet).collect::<Option<_>>()?)
            }
        })
    }

    /// An element key's exact form, with symbols read for `key` (the set's type); `None` when
    /// the element can match more than one value or its meaning is not plain.
    fn of_element(key: &Key, v: &Value) -> Option<Self> {
        Some(match (key, v) {
            (Key::Concat(keys), Value::Concat(vs)) if keys.len() == vs.len() => Self::Concat(
                keys.iter()
                    .zip(vs)
                    .map(|(k, v)| Self::of_element(k, v))
                    .collect::<Option<_>>()?,
            ),
            (_, Value::Addr(a)) => Self::Addr(*a),
            (_, Value::Prefix(a, len)) if (a.is_ipv4() && *len == 32) || *len == 128 => {
                Self::Addr(*a)
            }
            (Key::Iface { .. }, Value::Str(s) | Value::Sym(s))
                if !s.ends_with('*') && !s.contains('\\') =>
            {
                Self::Str(s.clone())
            }
            (k, Value::Int(_) | Value::Sym(_))
                if !matches!(k, Key::Iface { .. } | Key::Fib { .. }) =>
            {
                Self::Int(value_number(k, v).ok()?)
            }
            _ => return None,
        })
    }
}

/// An index of one set's elements: exact keys hashed, the rest listed.
#[derive(Debug, Default)]
pub struct SetIndex {
    exact: std::collections::HashMap<Exact, Vec<usize>>,
    others: Vec<usize>,
}

impl SetIndex {
    /// Indexes `set` (its key type read from its declaration); `None` when the type is not one
    /// the index understands.
    pub fn new(set: &NftSetDef) -> Option<Self> {
        let key = set_key(&set.key)?;
        let mut idx = Self::default();
        for (i, e) in set.elements.iter().enumerate() {
            match Exact::of_element(&key, &e.key) {
                Some(x) => idx.exact.entry(x).or_default().push(i),
                None => idx.others.push(i),
            }
        }
        Some(idx)
    }

    /// Elements that can hold for `pv`, in order.
    pub fn candidates(&self, pv: &PktVal) -> Option<Vec<usize>> {
        let x = Exact::of_packet(pv)?;
        let mut out: Vec<usize> = self.exact.get(&x).cloned().unwrap_or_default();
        out.extend(&self.others);
        out.sort_unstable();
        Some(out)
    }
}

/// A key standing for a set's declared type, for reading symbolic element values.
fn set_key(t: &nfscope_ruleset::typed::SetType) -> Option<Key> {
    use nfscope_ruleset::typed::SetType;
    let one = |name: &str| -> Option<Key> {
        Some(match name {
            "ipv4_addr" => Key::Addr {
                v6: false,
                dir: Dir::Dst,
            },
            "ipv6_addr" => Key::Addr {
                v6: true,
                dir: Dir::Dst,
            },
            "inet_proto" => Key::L4Proto {
                via: ProtoVia::Meta,
            },
            "inet_service" => Key::Port {
                proto: None,
                dir: Dir::Dst,
            },
            "ifname" => Key::Iface {
                dir: IfaceDir::In,
                by_name: true,
            },
            "mark" => Key::Meta(MetaKey::Mark),
            "nf_proto" => Key::NfProto,
            _ => return None,
        })
    };
    let keys: Vec<Key> = match t {
        SetType::Types(names) => names.iter().map(|n| one(n)).collect::<Option<_>>()?,
        SetType::Typeof(keys) => keys.clone(),
        SetType::Other(_) => return None,
    };
    Some(match <[Key; 1]>::try_from(keys) {
        Ok([k]) => k,
        Err(keys) => Key::Concat(keys),
    })
}

/// The sets and maps of one nft table, with their indexes when built.
pub struct TableSets<'a, 'i> {
    /// The table.
    pub table: &'a NftTable,
    /// Indexes by set name (see [`SetIndex`]).
    pub index: Option<&'i std::collections::HashMap<String, SetIndex>>,
}

impl<'a> SetSource<'a> for TableSets<'a, '_> {
    fn set_named(&self, name: &str) -> Option<&'a NftSetDef> {
        self.table.set(name)
    }

    fn candidates(&self, name: &str, pv: &PktVal) -> Option<Vec<usize>> {
        self.index?.get(name)?.candidates(pv)
    }
}

/// Indexes every named set and map of `table` whose type the index understands.
pub fn index_table(table: &NftTable) -> std::collections::HashMap<String, SetIndex> {
    table
        .sets
        .iter()
        .filter_map(|s| Some((s.name.clone(), SetIndex::new(s)?)))
        .collect()
}

/// Facts the evaluator needs besides the packet.
pub struct TypedEnv<'a, 's> {
    /// The hook being traversed.
    pub hook: Hook,
    /// Is conntrack information attached yet (false before conntrack at priority -200 in
    /// prerouting/output)?
    pub ct_attached: bool,
    /// Is this address one of the node's own?
    pub is_local: &'a dyn Fn(IpAddr) -> bool,
    /// Is this address a broadcast address of a local subnet?
    pub is_broadcast: &'a dyn Fn(IpAddr) -> bool,
    /// Was the packet generated on this node (it has a socket)?
    pub locally_generated: bool,
    /// Named sets and maps of the rule's table.
    pub sets: &'a dyn SetSource<'s>,
    /// The rule is an iptables rule lowered to the typed model: its matches are the kernel's
    /// x_tables modules, whose semantics differ from nft's where a packet lacks a field (a
    /// negated owner or physdev option holds then, nft's expression breaks the rule), in
    /// `-m addrtype` (IPv6 addresses have several types) and in `--ctstate` ([`CtKey::XtState`]).
    pub xt: bool,
    /// ipset contents, for `@name` of iptables rules (`-m set`): with [`TypedEnv::xt`], a named
    /// set is an ipset, whose real type decides what each dimension of the key is.
    pub ipsets: Option<&'a crate::sets::SetIndex>,
}

/// No named sets or maps (iptables rules name ipsets, see [`TypedEnv::ipsets`]).
pub struct NoSets;

impl SetSource<'static> for NoSets {
    fn set_named(&self, _: &str) -> Option<&'static NftSetDef> {
        None
    }
}

/// A value read from the packet.
#[derive(Debug, Clone, PartialEq)]
pub enum PktVal {
    /// An address.
    Addr(IpAddr),
    /// A number (ports, protocol numbers, marks, bitmasks, types).
    Int(u64),
    /// An interface name (`by_name`) or index shown as a name.
    Name(String, bool),
    /// A symbolic result (`fib daddr type`: `local`, `unicast`, …).
    Sym(&'static str),
    /// A concatenation.
    Concat(Vec<Self>),
    /// Every type `-m addrtype` sees for an address (IPv6 addresses can have several).
    Types(&'static [&'static str]),
    /// A part of a concatenation nfscope cannot tell (iptables `-m multiport --ports`), why.
    Unknown(String),
}

/// What reading a key gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The value.
    Val(PktVal),
    /// The packet has no such field (a tcp port of a udp packet, `ip saddr` of an IPv6
    /// packet): the expression breaks the rule, as the kernel's does.
    Absent,
    /// There is one, but nfscope cannot tell it.
    Unknown(String),
}

fn int(v: impl Into<u64>) -> Read {
    Read::Val(PktVal::Int(v.into()))
}

/// Reads `key` from `pkt`.
pub fn read_key(key: &Key, pkt: &PktState, env: &TypedEnv<'_, '_>) -> Read {
    match key {
        Key::Addr { v6, dir } => {
            let ip = if *dir == Dir::Src { pkt.src } else { pkt.dst };
            if ip.is_ipv6() != *v6 {
                return Read::Absent;
            }
            if *dir == Dir::Dst
                && let Some(p) = &pkt.dst_unknown
            {
                return Read::Unknown(format!(
                    "the destination is {p}, the primary address of that interface, which is not known (give --routes)"
                ));
            }
            Read::Val(PktVal::Addr(ip))
        }
        Key::Port { proto, dir } => {
            match proto {
                Some(p) if proto_number(pkt.proto) != u64::from(p.number()) => {
                    return Read::Absent;
                }
                None if !pkt.proto.has_ports() => {
                    return Read::Unknown(format!(
                        "`th` reads bytes of the {} header as a port, not modelled",
                        pkt.proto
                    ));
                }
                _ => {}
            }
            let port = if *dir == Dir::Src {
                pkt.sport
            } else {
                pkt.dport
            };
            match port {
                Some(p) => int(p),
                None => Read::Unknown(format!(
                    "{} port unknown (give --{}port)",
                    if *dir == Dir::Src {
                        "source"
                    } else {
                        "destination"
                    },
                    if *dir == Dir::Src { "s" } else { "d" }
                )),
            }
        }
        Key::L4Proto { via } if !proto_via_family(*via, pkt) => Read::Absent,
        Key::L4Proto { .. } => int(proto_number(pkt.proto)),
        Key::NfProto => int(if pkt.src.is_ipv4() { 2u64 } else { 10 }),
        Key::Iface { dir, by_name } => {
            let view = match dir {
                IfaceDir::In => pkt.in_view(env.hook),
                IfaceDir::Out => pkt.out_view(env.hook),
            };
            match view {
                IfaceView::Name(n) => Read::Val(PktVal::Name(n, *by_name)),
                IfaceView::Empty => Read::Val(PktVal::Name(String::new(), *by_name)),
                IfaceView::Unknown => Read::Unknown(format!(
                    "{} interface unknown (give --out or --routes)",
                    if *dir == IfaceDir::In {
                        "incoming"
                    } else {
                        "outgoing"
                    }
                )),
            }
        }
        Key::Meta(m) => match m {
            MetaKey::Mark => int(pkt.mark),
            MetaKey::Pkttype if env.xt => int(match xt_addr_types(pkt.dst, false, env)[0] {
                "multicast" => 2u64,
                "broadcast" => 1,
                _ => 0,
            }),
            MetaKey::Pkttype => int(pkttype(pkt.dst, env)),
            // The traced packet never went through IPsec (`-m policy --dir in`).
            MetaKey::Other(k) if k == "secpath" => Read::Val(PktVal::Sym("missing")),
            MetaKey::Skuid => {
                if !env.locally_generated || !matches!(env.hook, Hook::Output | Hook::Postrouting) {
                    Read::Absent
                } else {
                    match pkt.uid {
                        Some(u) => int(u),
                        None => Read::Unknown("socket owner unknown".into()),
                    }
                }
            }
            MetaKey::Skgid => {
                if !env.locally_generated || !matches!(env.hook, Hook::Output | Hook::Postrouting) {
                    Read::Absent
                } else {
                    Read::Unknown("socket group unknown".into())
                }
            }
            MetaKey::Other(k) => Read::Unknown(format!("meta {k} is not modelled")),
        },
        Key::Ct { dir, key } => read_ct(*dir, key, pkt, env),
        Key::Icmp { v6, is_type } => {
            let want = if *v6 { Proto::Icmpv6 } else { Proto::Icmp };
            if pkt.proto != want {
                return Read::Absent;
            }
            int(if *is_type { pkt.icmp.0 } else { pkt.icmp.1 })
        }
        Key::TcpFlags => {
            if pkt.proto != Proto::Tcp {
                return Read::Absent;
            }
            int(pkt.tcp_flags)
        }
        Key::Fib { flags, result } => {
            let has = |f: &str| flags.iter().any(|x| x == f);
            if result != "type" || flags.len() != 1 || !(has("daddr") || has("saddr")) {
                return Read::Unknown(format!(
                    "fib {} {result} needs a route lookup nfscope does not model",
                    flags.join(" . ")
                ));
            }
            let ip = if has("daddr") { pkt.dst } else { pkt.src };
            if env.xt {
                let redirected = has("daddr") && pkt.dst_unknown.is_some();
                return Read::Val(PktVal::Types(xt_addr_types(ip, redirected, env)));
            }
            if has("daddr") && pkt.dst_unknown.is_some() {
                return Read::Val(PktVal::Sym("local"));
            }
            Read::Val(PktVal::Sym(fib_type(ip, env)))
        }
        Key::Numgen { .. } => Read::Unknown("a number generator".into()),
        Key::Hash(h) => Read::Unknown(format!("{h} is not modelled")),
        // A traced packet is never a fragment: `-f` (frag-off & 0x1fff != 0) never holds.
        Key::Payload { proto, field } if proto == "ip" && field == "frag-off" => {
            if pkt.src.is_ipv4() {
                int(0u64)
            } else {
                Read::Absent
            }
        }
        // Nor will it be IPsec-transformed (`-m policy --dir out`).
        Key::Payload { proto, field } if proto == "rt" && field == "ipsec" => {
            Read::Val(PktVal::Sym("missing"))
        }
        Key::Payload { proto, field } => Read::Unknown(format!("{proto} {field} is not modelled")),
        Key::Physdev { dir } => {
            let Some((pin, pout)) = &pkt.physdev else {
                return Read::Absent;
            };
            let port = match dir {
                None => return Read::Val(PktVal::Name(String::new(), true)),
                Some(IfaceDir::In) => pin,
                Some(IfaceDir::Out) => pout,
            };
            port.as_ref()
                .map_or(Read::Absent, |p| Read::Val(PktVal::Name(p.clone(), true)))
        }
        Key::Masked { key, op, value } => match read_key(key, pkt, env) {
            Read::Val(PktVal::Int(v)) => int(match op {
                BitOp::And => v & value,
                BitOp::Or => v | value,
                BitOp::Xor => v ^ value,
            }),
            // `ip daddr & 255.0.255.0` (a non-contiguous iptables mask).
            Read::Val(PktVal::Addr(IpAddr::V4(a))) if *op == BitOp::And => Read::Val(PktVal::Addr(
                IpAddr::V4(a & std::net::Ipv4Addr::from(*value as u32)),
            )),
            Read::Val(_) => Read::Unknown("a mask on a non-numeric value".into()),
            other => other,
        },
        Key::Concat(keys) => {
            let mut vals = Vec::with_capacity(keys.len());
            for k in keys {
                match read_key(k, pkt, env) {
                    Read::Val(v) => vals.push(v),
                    // A part iptables' `--ports` may not need: decided per element.
                    Read::Unknown(why) if env.xt => vals.push(PktVal::Unknown(why)),
                    other => return other,
                }
            }
            Read::Val(PktVal::Concat(vals))
        }
    }
}

fn proto_number(p: Proto) -> u64 {
    u64::from(p.number())
}

fn pkttype(dst: IpAddr, env: &TypedEnv<'_, '_>) -> u64 {
    match dst {
        IpAddr::V4(v) if v.is_broadcast() => 1,
        _ if dst.is_multicast() => 2,
        _ if (env.is_broadcast)(dst) => 1,
        _ => 0,
    }
}

/// `fib … type` of an address, as the kernel's `inet_addr_type` classifies it.
fn fib_type(ip: IpAddr, env: &TypedEnv<'_, '_>) -> &'static str {
    match ip {
        IpAddr::V4(v) if v.is_broadcast() => "broadcast",
        _ if ip.is_multicast() => "multicast",
        _ if (env.is_local)(ip) => "local",
        IpAddr::V4(_) if (env.is_broadcast)(ip) => "broadcast",
        IpAddr::V4(v) if v.octets()[0] == 0 => "broadcast",
        _ => "unicast",
    }
}

/// The `-m addrtype` types `ip` has, as the kernel's xt_addrtype classifies them. IPv4
/// (`inet_addr_type`) gives one: 0.0.0.0/8 and 255.255.255.255 broadcast, 224/4 multicast, then
/// the local table (local, subnet broadcast), else unicast. IPv6 (`match_type6`) tests each type
/// on its own, so an address of the node is both unicast and local; `::` is unspec, ff00::/8
/// multicast. `redirected`: the address is REDIRECT's unknown local one.
fn xt_addr_types(ip: IpAddr, redirected: bool, env: &TypedEnv<'_, '_>) -> &'static [&'static str] {
    match ip {
        IpAddr::V4(_) if redirected => &["local"],
        IpAddr::V4(v) if v.octets()[0] == 0 || v.is_broadcast() => &["broadcast"],
        IpAddr::V4(v) if v.is_multicast() => &["multicast"],
        IpAddr::V4(_) if (env.is_local)(ip) => &["local"],
        IpAddr::V4(_) if (env.is_broadcast)(ip) => &["broadcast"],
        IpAddr::V4(_) => &["unicast"],
        IpAddr::V6(_) if redirected => &["unicast", "local"],
        IpAddr::V6(v) if v.is_multicast() => &["multicast"],
        IpAddr::V6(v) if v.is_unspecified() => &["unspec"],
        IpAddr::V6(_) if (env.is_local)(ip) => &["unicast", "local"],
        IpAddr::V6(_) => &["unicast"],
    }
}

fn read_ct(dir: Option<CtDir>, key: &CtKey, pkt: &PktState, env: &TypedEnv<'_, '_>) -> Read {
    let untracked = pkt.ct_state == CtState::Untracked;
    if *key == CtKey::State {
        if untracked {
            return int(64u64);
        }
        if !env.ct_attached {
            return int(1u64);
        }
        return int(match pkt.ct_state {
            CtState::Invalid => 1u64,
            CtState::Established => 2,
            CtState::Related => 4,
            CtState::New => 8,
            CtState::Untracked => 64,
        });
    }
    if untracked || !env.ct_attached || pkt.ct_state == CtState::Invalid {
        // No conntrack entry: every other ct key breaks the rule.
        return Read::Absent;
    }
    let new = pkt.ct_state == CtState::New;
    let needs_new = |what: &str| {
        Read::Unknown(format!(
            "ct {what} of an existing connection is not known (trace a new connection)"
        ))
    };
    match key {
        CtKey::State => unreachable!("handled above"),
        CtKey::Status if new => {
            let mut bits = 0u64;
            if pkt.snat_done {
                bits |= 16;
            }
            if pkt.dnat_done {
                bits |= 32;
            }
            int(bits)
        }
        CtKey::Status => needs_new("status"),
        CtKey::Mark => match pkt.ct_mark {
            Some(m) => int(m),
            None => Read::Unknown("connection mark unknown (give --ct-mark)".into()),
        },
        CtKey::Direction if new => int(0u64),
        CtKey::Direction => needs_new("direction"),
        CtKey::Addr { dir: d, .. } if new => {
            let reply = dir == Some(CtDir::Reply);
            let ip = match (reply, d) {
                (false, Dir::Src) => pkt.orig.src,
                (false, Dir::Dst) => pkt.orig.dst,
                (true, Dir::Src) => pkt.dst,
                (true, Dir::Dst) => pkt.src,
            };
            Read::Val(PktVal::Addr(ip))
        }
        CtKey::ProtoPort(d) if new => {
            let reply = dir == Some(CtDir::Reply);
            let port = match (reply, d) {
                (false, Dir::Src) => pkt.orig.sport,
                (false, Dir::Dst) => pkt.orig.dport,
                (true, Dir::Src) => pkt.dport,
                (true, Dir::Dst) => pkt.sport,
            };
            port.map_or_else(|| Read::Unknown("port unknown".into()), int)
        }
        CtKey::Addr { .. } | CtKey::ProtoPort(_) => needs_new("tuple"),
        CtKey::Zone => Read::Unknown("ct zone is not modelled".into()),
        // The connection's layer-4 protocol: the packet's (`--ctproto`, `ct original protocol`).
        CtKey::Other(k) if k == "protocol" => int(proto_number(pkt.proto)),
        CtKey::XtState => Read::Unknown("an iptables --ctstate mask read as a value".into()),
        CtKey::Other(k) => Read::Unknown(format!("ct {k} is not modelled")),
    }
}

/// Three-valued truth for one comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Tri {
    /// Holds.
    Yes,
    /// Does not hold.
    No,
    /// Cannot tell.
    Maybe(String),
}

impl Tri {
    fn of(b: bool) -> Self {
        if b { Self::Yes } else { Self::No }
    }

    fn and(self, other: impl FnOnce() -> Self) -> Self {
        match self {
            Self::No => Self::No,
            Self::Yes => other(),
            Self::Maybe(w) => match other() {
                Self::No => Self::No,
                _ => Self::Maybe(w),
            },
        }
    }

    fn not(self) -> Self {
        match self {
            Self::Yes => Self::No,
            Self::No => Self::Yes,
            m => m,
        }
    }

    fn into_outcome(self) -> Outcome {
        match self {
            Self::Yes => Outcome::Yes,
            Self::No => Outcome::No,
            Self::Maybe(w) => Outcome::Maybe(w),
        }
    }
}

/// The number a symbolic constant stands for, for the key it is compared with.
fn sym_number(key: &Key, s: &str) -> Option<u64> {
    let base = match key {
        Key::Masked { key, .. } => key,
        k => k,
    };
    let table: &[(&str, u64)] = match base {
        Key::L4Proto { .. }
        | Key::Ct {
            key: CtKey::Other(_),
            ..
        } => &[
            ("icmp", 1),
            ("igmp", 2),
            ("tcp", 6),
            ("udp", 17),
            ("gre", 47),
            ("esp", 50),
            ("ah", 51),
            ("icmpv6", 58),
            ("ipv6-icmp", 58),
            ("dccp", 33),
            ("sctp", 132),
            ("udplite", 136),
        ],
        Key::NfProto => &[("ipv4", 2), ("ipv6", 10)],
        Key::Ct {
            key: CtKey::State, ..
        } => &[
            ("invalid", 1),
            ("established", 2),
            ("related", 4),
            ("new", 8),
            ("untracked", 64),
        ],
        Key::Ct {
            key: CtKey::Status, ..
        } => &[
            ("expected", 1),
            ("seen-reply", 2),
            ("assured", 4),
            ("confirmed", 8),
            ("snat", 16),
            ("dnat", 32),
            ("dying", 512),
        ],
        Key::Ct {
            key: CtKey::Direction,
            ..
        } => &[("original", 0), ("reply", 1)],
        Key::Meta(MetaKey::Pkttype) => &[
            ("host", 0),
            ("unicast", 0),
            ("broadcast", 1),
            ("multicast", 2),
            ("other", 3),
        ],
        Key::TcpFlags => &[
            ("fin", 1),
            ("syn", 2),
            ("rst", 4),
            ("psh", 8),
            ("ack", 16),
            ("urg", 32),
            ("ecn", 64),
            ("cwr", 128),
        ],
        Key::Port { .. }
        | Key::Ct {
            key: CtKey::ProtoPort(_),
            ..
        } => &[
            ("ftp", 21),
            ("ssh", 22),
            ("telnet", 23),
            ("smtp", 25),
            ("domain", 53),
            ("bootps", 67),
            ("bootpc", 68),
            ("http", 80),
            ("ntp", 123),
            ("https", 443),
            ("dhcpv6-client", 546),
            ("dhcpv6-server", 547),
        ],
        Key::Icmp { v6, is_type: true } => {
            return nfscope_ruleset::lower::icmp_name(s, *v6)
                .filter(|(_, code)| code.is_none())
                .map(|(t, _)| t);
        }
        Key::Icmp { is_type: false, .. } => &[
            ("net-unreachable", 0),
            ("no-route", 0),
            ("host-unreachable", 1),
            ("admin-prohibited", 1),
            ("prot-unreachable", 2),
            ("port-unreachable", 3),
            ("frag-needed", 4),
            ("net-prohibited", 9),
            ("host-prohibited", 10),
        ],
        _ => &[],
    };
    table.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
}

fn is_bitmask(key: &Key) -> bool {
    match key {
        Key::TcpFlags
        | Key::Ct {
            key: CtKey::State | CtKey::Status,
            ..
        } => true,
        Key::Masked { key, .. } => is_bitmask(key),
        _ => false,
    }
}

/// A rule value as a number for `key`, when it is one.
fn value_number(key: &Key, v: &Value) -> Result<u64, Tri> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::Sym(s) => sym_number(key, s).ok_or_else(|| {
            if matches!(key, Key::L4Proto { .. }) {
                // A protocol nfscope does not know is none of those it traces.
                Tri::No
            } else {
                Tri::Maybe(format!("{s:?} is not a value nfscope knows for this key"))
            }
        }),
        Value::Other(t) => Err(Tri::Maybe(format!("value {t:?} is not modelled"))),
        _ => Err(Tri::No),
    }
}

fn order(key: &Key, pv: &PktVal, v: &Value) -> Result<Ordering, Tri> {
    match (pv, v) {
        (PktVal::Addr(a), Value::Addr(b)) if a.is_ipv4() == b.is_ipv4() => Ok(a.cmp(b)),
        (PktVal::Addr(_), Value::Addr(_)) => Err(Tri::No),
        (PktVal::Int(a), v) => value_number(key, v).map(|b| a.cmp(&b)),
        _ => Err(Tri::Maybe(format!("cannot compare {pv:?} with {v:?}"))),
    }
}

/// Does the packet value `pv` (read from `key`) equal or fall within the rule value `v`?
pub fn value_hit(key: &Key, pv: &PktVal, v: &Value) -> Tri {
    match (pv, v) {
        (_, Value::CatchAll) => Tri::Yes,
        // Every port is in 0-65535, known or not (`--ports`' other side).
        (PktVal::Unknown(_), Value::Range(a, b))
            if matches!(key, Key::Port { .. })
                && **a == Value::Int(0)
                && **b == Value::Int(65535) =>
        {
            Tri::Yes
        }
        (PktVal::Unknown(why), _) => Tri::Maybe(why.clone()),
        (PktVal::Concat(pvs), Value::Concat(vs)) => {
            let Key::Concat(keys) = key else {
                return Tri::Maybe("a concatenation on a single key".into());
            };
            if pvs.len() != vs.len() || keys.len() != vs.len() {
                return Tri::No;
            }
            let mut acc = Tri::Yes;
            for ((k, p), v) in keys.iter().zip(pvs).zip(vs) {
                acc = acc.and(|| value_hit(k, p, v));
                if acc == Tri::No {
                    break;
                }
            }
            acc
        }
        (PktVal::Concat(_), _) | (_, Value::Concat(_)) => Tri::No,
        (_, Value::Range(a, b)) => match (order(key, pv, a), order(key, pv, b)) {
            (Ok(lo), Ok(hi)) => Tri::of(lo != Ordering::Less && hi != Ordering::Greater),
            (Err(e), _) | (_, Err(e)) => e,
        },
        (PktVal::Addr(ip), Value::Prefix(net, len)) => Tri::of(in_prefix(*ip, *net, *len)),
        (PktVal::Addr(_), Value::Addr(_)) | (PktVal::Int(_), _) => match order(key, pv, v) {
            Ok(o) => Tri::of(o == Ordering::Equal),
            Err(e) => e,
        },
        (PktVal::Name(name, by_name), Value::Str(pattern) | Value::Sym(pattern)) => {
            if *by_name {
                Tri::of(iface_name_matches(pattern, name))
            } else {
                Tri::of(pattern == name)
            }
        }
        (PktVal::Sym(s), Value::Sym(w)) => Tri::of(s == w),
        (PktVal::Types(ts), Value::Sym(w)) => Tri::of(ts.contains(&w.as_str())),
        (_, Value::Other(t)) => Tri::Maybe(format!("value {t:?} is not modelled")),
        _ => Tri::No,
    }
}

fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// Membership of `pv` in `elems` (only those at `only`, when an index says): any element's key
/// holds.
fn member(key: &Key, pv: &PktVal, elems: &[SetElem], only: Option<Vec<usize>>) -> Tri {
    let mut maybe = None;
    let picked: Box<dyn Iterator<Item = &SetElem>> = match only {
        Some(ix) => Box::new(ix.into_iter().filter_map(|i| elems.get(i))),
        None => Box::new(elems.iter()),
    };
    for e in picked {
        match value_hit(key, pv, &e.key) {
            Tri::Yes => return Tri::Yes,
            Tri::Maybe(w) => {
                maybe.get_or_insert(w);
            }
            Tri::No => {}
        }
    }
    maybe.map_or(Tri::No, Tri::Maybe)
}

fn named_set<'s>(name: &str, env: &TypedEnv<'_, 's>) -> Result<&'s NftSetDef, Tri> {
    let set = env
        .sets
        .set_named(name)
        .ok_or_else(|| Tri::Maybe(format!("set @{name} is not in the dump")))?;
    if set.is_dynamic() {
        return Err(Tri::Maybe(format!(
            "@{name} is a dynamic set: the packet path changes it, the dump is a snapshot"
        )));
    }
    Ok(set)
}

/// Evaluates one match.
pub fn eval_match(m: &Match, pkt: &PktState, env: &TypedEnv<'_, '_>) -> Outcome {
    if let Key::Numgen {
        modulus, offset, ..
    } = &m.key
    {
        return numgen_match(m, *modulus, *offset);
    }
    if let Some(t) = xt_match(m, pkt, env) {
        return t.into_outcome();
    }
    if let (Key::Meta(MetaKey::Skuid), Op::Ge | Op::Lt, Rhs::Values(v)) = (&m.key, m.op, &m.rhs)
        && v.as_slice() == [Value::Int(0)]
    {
        // `meta skuid >= 0`: the packet has a socket (`-m owner --socket-exists`), whatever its
        // owner; `< 0` never holds (under x_tables, `! --socket-exists` holds without a socket).
        let has = !matches!(read_key(&m.key, pkt, env), Read::Absent);
        return Tri::of(if m.op == Op::Ge { has } else { env.xt && !has }).into_outcome();
    }
    let pv = match read_key(&m.key, pkt, env) {
        Read::Val(v) => v,
        // x_tables' owner and physdev matches hold, negated, for a packet without the field.
        Read::Absent if env.xt && m.op == Op::Ne && xt_inverts_absent(&m.key) => {
            return Outcome::Yes;
        }
        Read::Absent => return Outcome::No,
        Read::Unknown(why) => return Outcome::Maybe(why),
    };
    compare(&m.key, m.op, &m.rhs, &pv, env).into_outcome()
}

/// Keys whose x_tables match holds when negated and the packet lacks the field (`-m owner`
/// without a socket, `-m physdev` for a routed packet): `(match ^ invert) == 0` in the kernel.
fn xt_inverts_absent(key: &Key) -> bool {
    matches!(
        key,
        Key::Meta(MetaKey::Skuid | MetaKey::Skgid) | Key::Physdev { .. }
    )
}

/// iptables matches evaluated as x_tables does, not through a key read: `--ctstate` with NAT
/// bits ([`CtKey::XtState`]) and `-m set` (an ipset, its dimensions from its real type).
/// `None` for every other match (and for native rules).
fn xt_match(m: &Match, pkt: &PktState, env: &TypedEnv<'_, '_>) -> Option<Tri> {
    if !env.xt {
        return None;
    }
    let t = match (&m.key, &m.rhs) {
        (
            Key::Ct {
                key: CtKey::XtState,
                ..
            },
            Rhs::Values(vals),
        ) => xt_state(vals, pkt, env),
        (key, Rhs::SetRef(name)) => ipset_match(key, name, pkt, env),
        _ => return None,
    };
    Some(if m.op == Op::Ne { t.not() } else { t })
}

/// xt_conntrack's state test: any listed bit among the packet's state and its connection's NAT
/// status (only known for a new connection, whose NAT the trace itself makes).
fn xt_state(vals: &[Value], pkt: &PktState, env: &TypedEnv<'_, '_>) -> Tri {
    const SNAT: u64 = 1 << 8;
    const DNAT: u64 = 1 << 9;
    let mut mask = 0;
    for v in vals {
        let Value::Sym(s) = v else {
            return Tri::Maybe(format!("--ctstate {v:?} not understood"));
        };
        mask |= match s.as_str() {
            "invalid" => 1,
            "established" => 2,
            "related" => 4,
            "new" => 8,
            "untracked" => 64,
            "snat" => SNAT,
            "dnat" => DNAT,
            other => return Tri::Maybe(format!("--ctstate {other} not understood")),
        };
    }
    let tracked = env.ct_attached && !matches!(pkt.ct_state, CtState::Untracked | CtState::Invalid);
    let mut bits = match read_ct(None, &CtKey::State, pkt, env) {
        Read::Val(PktVal::Int(b)) => b,
        _ => 1,
    };
    if tracked {
        if pkt.dnat_done {
            bits |= DNAT;
        }
        if pkt.snat_done {
            bits |= SNAT;
        }
    }
    if bits & mask != 0 {
        Tri::Yes
    } else if tracked && pkt.ct_state != CtState::New && mask & (SNAT | DNAT) != 0 {
        Tri::Maybe("whether an established connection was NATed is unknown".into())
    } else {
        Tri::No
    }
}

/// `-m set --match-set NAME src,dst,…`: the key's directions are the flags; the ipset's own
/// type says what each dimension is (address, port with protocol, interface, mark).
fn ipset_match(key: &Key, name: &str, pkt: &PktState, env: &TypedEnv<'_, '_>) -> Tri {
    let Some(ipsets) = env.ipsets else {
        return Tri::Maybe(format!("ipset {name} is not known"));
    };
    let dir_of = |k: &Key| match k {
        Key::Addr { dir, .. } | Key::Port { dir, .. } => Some(*dir),
        _ => None,
    };
    let dirs: Option<Vec<Dir>> = match key {
        Key::Concat(keys) => keys.iter().map(dir_of).collect(),
        k => dir_of(k).map(|d| vec![d]),
    };
    let Some(dirs) = dirs else {
        return Tri::Maybe(format!("a set match on {key:?} is not modelled"));
    };
    let flags: Vec<&str> = dirs
        .iter()
        .map(|d| if *d == Dir::Src { "src" } else { "dst" })
        .collect();
    if let Some(p) = &pkt.dst_unknown
        && dirs.contains(&Dir::Dst)
    {
        return Tri::Maybe(format!(
            "the destination is {p}, the primary address of that interface, which is not known (give --routes)"
        ));
    }
    let in_view = pkt.in_view(env.hook);
    let out_view = pkt.out_view(env.hook);
    let query = crate::sets::SetQuery {
        src: crate::sets::Field {
            addr: pkt.src,
            port: pkt.sport,
            iface: in_view.name(),
        },
        dst: crate::sets::Field {
            addr: pkt.dst,
            port: pkt.dport,
            iface: out_view.name(),
        },
        proto: pkt.proto,
        icmp: pkt.icmp,
        mark: pkt.mark,
    };
    match ipsets.test(name, &flags, &query) {
        crate::sets::Membership::In => Tri::Yes,
        crate::sets::Membership::Out => Tri::No,
        crate::sets::Membership::Unknown(why) => Tri::Maybe(why),
    }
}

fn compare(key: &Key, op: Op, rhs: &Rhs, pv: &PktVal, env: &TypedEnv<'_, '_>) -> Tri {
    match rhs {
        Rhs::Values(vals) if is_bitmask(key) && matches!(op, Op::Implicit | Op::Eq | Op::Ne) => {
            let PktVal::Int(x) = pv else {
                return Tri::Maybe("a bitmask of a non-numeric value".into());
            };
            let mut mask = 0;
            for v in vals {
                match value_number(key, v) {
                    Ok(n) => mask |= n,
                    Err(e) => return e,
                }
            }
            match op {
                Op::Implicit => Tri::of(x & mask != 0),
                Op::Eq => Tri::of(*x == mask),
                _ => Tri::of(*x != mask),
            }
        }
        Rhs::Values(vals) => {
            let hit = || {
                let mut maybe = None;
                for v in vals {
                    match value_hit(key, pv, v) {
                        Tri::Yes => return Tri::Yes,
                        Tri::Maybe(w) => {
                            maybe.get_or_insert(w);
                        }
                        Tri::No => {}
                    }
                }
                maybe.map_or(Tri::No, Tri::Maybe)
            };
            match op {
                Op::Eq | Op::Implicit => hit(),
                Op::Ne => hit().not(),
                Op::Lt | Op::Gt | Op::Le | Op::Ge => {
                    let Some(v) = vals.first() else {
                        return Tri::No;
                    };
                    match order(key, pv, v) {
                        Ok(o) => Tri::of(match op {
                            Op::Lt => o == Ordering::Less,
                            Op::Gt => o == Ordering::Greater,
                            Op::Le => o != Ordering::Greater,
                            _ => o != Ordering::Less,
                        }),
                        Err(e) => e,
                    }
                }
            }
        }
        Rhs::Anon(elems) => {
            let t = member(key, pv, elems, None);
            if op == Op::Ne { t.not() } else { t }
        }
        Rhs::SetRef(name) => {
            let t = match named_set(name, env) {
                Ok(set) => member(key, pv, &set.elements, env.sets.candidates(name, pv)),
                Err(e) => e,
            };
            if op == Op::Ne { t.not() } else { t }
        }
    }
}

/// `numgen … == k` (or a range, a set): the share of generator values that satisfy the match.
fn numgen_match(m: &Match, modulus: u32, offset: u32) -> Outcome {
    if modulus == 0 {
        return Outcome::No;
    }
    if modulus > 1 << 16 {
        // Large moduli (the statistic translation, 2^31): compare the threshold directly.
        return numgen_threshold(m, modulus, offset);
    }
    let key = &m.key;
    let mut hits = 0u64;
    for n in u64::from(offset)..u64::from(offset) + u64::from(modulus) {
        let pv = PktVal::Int(n);
        let t = match &m.rhs {
            Rhs::SetRef(_) => return Outcome::Maybe("numgen against a named set".into()),
            rhs => compare_plain(key, m.op, rhs, &pv),
        };
        match t {
            Tri::Yes => hits += 1,
            Tri::No => {}
            Tri::Maybe(w) => return Outcome::Maybe(w),
        }
    }
    chance(hits as f64 / f64::from(modulus))
}

fn numgen_threshold(m: &Match, modulus: u32, offset: u32) -> Outcome {
    let Rhs::Values(v) = &m.rhs else {
        return Outcome::Maybe("numgen against a set".into());
    };
    let Some(Value::Int(t)) = v.first() else {
        return Outcome::Maybe("numgen against a non-number".into());
    };
    let (lo, n) = (u64::from(offset), f64::from(modulus));
    let below = t.saturating_sub(lo) as f64;
    let p = match m.op {
        Op::Lt => below / n,
        Op::Le => (below + 1.0) / n,
        Op::Gt => 1.0 - (below + 1.0) / n,
        Op::Ge => 1.0 - below / n,
        Op::Eq | Op::Implicit => 1.0 / n,
        Op::Ne => 1.0 - 1.0 / n,
    };
    chance(p.clamp(0.0, 1.0))
}

fn chance(p: f64) -> Outcome {
    if p <= 0.0 {
        Outcome::No
    } else if p >= 1.0 {
        Outcome::Yes
    } else {
        Outcome::Chance(p)
    }
}

/// `compare` without named sets (numgen values).
fn compare_plain(key: &Key, op: Op, rhs: &Rhs, pv: &PktVal) -> Tri {
    let env = TypedEnv {
        hook: Hook::Prerouting,
        ct_attached: true,
        is_local: &|_| false,
        is_broadcast: &|_| false,
        locally_generated: false,
        sets: &NoSets,
        xt: false,
        ipsets: None,
    };
    compare(key, op, rhs, pv, &env)
}

/// How one alternative of a lookup is weighted.
#[derive(Debug, Clone, PartialEq)]
pub enum Weight {
    /// A random draw (numgen) lands on it with this probability.
    Chance(f64),
    /// It holds only under this assumption (a key nfscope cannot read, a dynamic map).
    Assume(String),
}

/// What a map lookup gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<'a> {
    /// This element's data.
    Hit(&'a MapData, Option<&'a SetElem>),
    /// No element: the lookup breaks the rule (the kernel's `NFT_BREAK`).
    Miss,
    /// Several possibilities: each with its weight; `None` data = no element.
    Branches(Vec<(Weight, Option<&'a MapData>)>),
}

/// Looks `key` up in `map` for `pkt`: one element, none, or weighted alternatives.
pub fn lookup<'a>(
    key: &Key,
    map: &'a MapRef,
    pkt: &PktState,
    env: &TypedEnv<'_, 'a>,
) -> Result<Lookup<'a>, String> {
    let (elems, dynamic, name): (&'a [SetElem], Option<String>, Option<&str>) = match map {
        MapRef::Anon(e) => (e, None, None),
        MapRef::Named(name) => {
            let set = env
                .sets
                .set_named(name)
                .ok_or_else(|| format!("map @{name} is not in the dump"))?;
            let dynamic = set.is_dynamic().then(|| {
                format!(
                    "@{name} is a dynamic map: the packet path changes it, the dump is a snapshot"
                )
            });
            (&set.elements, dynamic, Some(name.as_str()))
        }
    };
    if matches!(key, Key::Numgen { .. }) {
        let Some(branches) = numgen_branches(key, elems) else {
            return Err("numgen map keys that are not numbers".into());
        };
        let total: f64 = branches.iter().map(|(p, _)| p).sum();
        let mut out: Vec<(Weight, Option<&MapData>)> = branches
            .into_iter()
            .filter(|(p, _)| *p > 0.0)
            .map(|(p, d)| (Weight::Chance(p), Some(d)))
            .collect();
        if total < 1.0 - 1e-9 {
            out.push((Weight::Chance(1.0 - total), None));
        }
        return Ok(match out.as_slice() {
            [] => Lookup::Miss,
            [(_, Some(d))] => Lookup::Hit(d, None),
            _ => Lookup::Branches(out),
        });
    }
    let pv = match read_key(key, pkt, env) {
        Read::Val(v) => Some(v),
        Read::Absent => return Ok(Lookup::Miss),
        Read::Unknown(why) => {
            // Every element may be the one: branch over them, plus "none".
            let mut out: Vec<(Weight, Option<&MapData>)> = elems
                .iter()
                .filter_map(|e| {
                    e.data.as_ref().map(|d| {
                        (
                            Weight::Assume(format!(
                                "{why}; assumed to be {}",
                                nfscope_ruleset::nft::render_value(&e.key, Some(key))
                            )),
                            Some(d),
                        )
                    })
                })
                .collect();
            out.push((
                Weight::Assume(format!("{why}; assumed in no element")),
                None,
            ));
            return Ok(Lookup::Branches(out));
        }
    };
    let pv = pv.expect("value");
    let mut maybes: Vec<(Weight, Option<&MapData>)> = Vec::new();
    let mut hit = None;
    let mut catch_all = None;
    let only = name.and_then(|n| env.sets.candidates(n, &pv));
    let picked: Box<dyn Iterator<Item = &'a SetElem>> = match only {
        Some(ix) => Box::new(ix.into_iter().filter_map(|i| elems.get(i))),
        None => Box::new(elems.iter()),
    };
    for e in picked {
        if e.key == Value::CatchAll {
            catch_all = Some(e);
            continue;
        }
        match value_hit(key, &pv, &e.key) {
            Tri::Yes => {
                hit = Some(e);
                break;
            }
            Tri::Maybe(w) => {
                if let Some(d) = &e.data {
                    maybes.push((Weight::Assume(w), Some(d)));
                }
            }
            Tri::No => {}
        }
    }
    let found = hit.or(catch_all);
    if let Some(why) = dynamic {
        let mut out = maybes;
        if let Some(e) = found
            && let Some(d) = &e.data
        {
            out.push((
                Weight::Assume(format!("{why}; the element listed is still there")),
                Some(d),
            ));
        }
        out.push((
            Weight::Assume(format!("{why}; assumed no element matches")),
            None,
        ));
        return Ok(Lookup::Branches(out));
    }
    if maybes.is_empty() {
        return Ok(match found.and_then(|e| e.data.as_ref().map(|d| (d, e))) {
            Some((d, e)) => Lookup::Hit(d, Some(e)),
            None => Lookup::Miss,
        });
    }
    let mut out = maybes;
    let rest = found.and_then(|e| e.data.as_ref());
    out.push((
        Weight::Assume("no undetermined element matches".into()),
        rest,
    ));
    Ok(Lookup::Branches(out))
}

/// Is `via` a protocol read that also holds the family (`ip protocol` in an inet table)?
fn proto_via_family(via: ProtoVia, pkt: &PktState) -> bool {
    match via {
        ProtoVia::IpProtocol => pkt.src.is_ipv4(),
        ProtoVia::Ip6Nexthdr => pkt.src.is_ipv6(),
        ProtoVia::Meta => true,
    }
}
