//! Lowering of parsed iptables rules (the string model of [`crate::model`]) to the typed rule model
//! of [`crate::typed`], the forms the table "One form per meaning" in that module lists.
//!
//! Owns [`lower_rule`], [`Rule::typed`], [`Ruleset::lower`], [`lower_matches`] and
//! [`lower_target`] (the match part and the target part alone, without text: what the tracer
//! evaluates and applies): every base match, match module and target nfscope knows becomes a typed
//! [`Expr`] — targets as the statements nft writes (NAT, mark sets, verdicts), and where nft has
//! no form the typed extensions of [`crate::typed`] (`NETMAP`, `CONNMARK` copies with masks) —
//! with abbreviated target options read as getopt_long does; anything else (an unknown target or
//! option) becomes [`Expr::Unmodelled`] with its iptables text (never dropped), so an evaluator
//! answers MAY there. The protocol of `-p` is folded
//! into the port, tcp-flags and icmp keys that need it, as nft lists its dependencies. Pure: no I/O.
//!
//! It does not evaluate rules (the tracer) and does not change the string model or its users.

use std::fmt;
use std::net::IpAddr;

use crate::model::{
    Family, Match as IptMatch, OptionArg, Rule, RuleSpec, Ruleset, Target, TargetKind,
};
use crate::typed::{
    BaseChain, BitOp, ChainType, CtDir, CtKey, Dir, Expr, Hook, IfaceDir, Key, L4Proto, MarkTarget,
    MarkValue, Match, MetaKey, Nat, NatAddr, NatKind, NftChain, NftFamily, NftRuleset, NftTable,
    Op, Policy, ProtoVia, Rhs, SetElem, TypedRule, Value, Verdict,
};

impl Rule {
    /// This rule in the typed model ([`lower_rule`]); `position` is its 1-based place in its chain.
    pub fn typed(&self, family: Family, position: usize) -> TypedRule {
        lower_rule(self, family, position)
    }
}

impl Ruleset {
    /// The whole ruleset in the typed model: one `ip`/`ip6` table per table, built-in chains as
    /// base chains at the priorities iptables-nft registers, every rule lowered ([`lower_rule`]).
    pub fn lower(&self) -> NftRuleset {
        self.lower_with(true)
    }

    /// [`Ruleset::lower`] without each rule's nft text ([`TypedRule::text`] left empty), for
    /// checks that judge the expressions only: at kube-proxy scale the texts are a fifth of the
    /// lowered ruleset (11 MiB of 60 at 72.5k rules) and rendering them a good part of its cost.
    pub fn lower_without_text(&self) -> NftRuleset {
        self.lower_with(false)
    }

    fn lower_with(&self, text: bool) -> NftRuleset {
        let family = match self.family {
            Family::Ipv4 => NftFamily::Ip,
            Family::Ipv6 => NftFamily::Ip6,
        };
        let tables = self
            .tables
            .iter()
            .map(|t| NftTable {
                family,
                name: t.name.clone(),
                handle: None,
                comment: None,
                flags: Vec::new(),
                sets: Vec::new(),
                chains: t
                    .chains
                    .iter()
                    .map(|c| NftChain {
                        name: c.name.clone(),
                        handle: None,
                        comment: None,
                        base: base_chain(&t.name, &c.name, c.policy),
                        rules: c
                            .rules
                            .iter()
                            .enumerate()
                            .map(|(i, r)| lower_rule_with(r, self.family, i + 1, text))
                            .collect(),
                        line: c.line,
                    })
                    .collect(),
                objects: Vec::new(),
                line: t.line,
            })
            .collect();
        NftRuleset {
            tables,
            notices: Vec::new(),
        }
    }
}

/// The hook registration of a built-in chain of a standard table (type, hook, priority), as
/// iptables-nft creates it; `None` for a user chain or an unknown table.
fn base_chain(table: &str, chain: &str, policy: Option<crate::model::Policy>) -> Option<BaseChain> {
    let hook = Hook::parse(&chain.to_ascii_lowercase())?;
    if !crate::model::is_builtin_chain(chain) {
        return None;
    }
    let (kind, priority) = match (table, hook) {
        ("raw", _) => (ChainType::Filter, -300),
        ("mangle", Hook::Output) => (ChainType::Route, -150),
        ("mangle", _) => (ChainType::Filter, -150),
        ("nat", Hook::Prerouting | Hook::Output) => (ChainType::Nat, -100),
        ("nat", _) => (ChainType::Nat, 100),
        ("filter", _) => (ChainType::Filter, 0),
        ("security", _) => (ChainType::Filter, 50),
        _ => return None,
    };
    Some(BaseChain {
        kind,
        hook,
        priority,
        priority_text: None,
        policy: policy.and_then(|p| match p {
            crate::model::Policy::Accept => Some(Policy::Accept),
            crate::model::Policy::Drop => Some(Policy::Drop),
            crate::model::Policy::Return => None,
        }),
        devices: Vec::new(),
    })
}

/// Lowers one iptables rule of a `family` ruleset to the typed model; `position` is its 1-based
/// place in its chain. Never fails: what is not modelled is kept as [`Expr::Unmodelled`].
pub fn lower_rule(rule: &Rule, family: Family, position: usize) -> TypedRule {
    lower_rule_with(rule, family, position, true)
}

/// [`lower_rule`], rendering [`TypedRule::text`] only when `text` is set.
fn lower_rule_with(rule: &Rule, family: Family, position: usize, text: bool) -> TypedRule {
    let mut cx = match_cx(&rule.spec, family);
    cx.exprs.push(Expr::Counter {
        counters: rule.counters,
        name: None,
    });
    if let Some(t) = &rule.spec.target {
        cx.target(t);
    }
    let comment = (!cx.comments.is_empty()).then(|| cx.comments.join("; "));
    let mut typed = TypedRule {
        exprs: crate::nft::canonical_exprs(cx.exprs),
        handle: None,
        position,
        comment,
        line: rule.line,
        text: String::new(),
    };
    if text {
        typed.text = crate::nft::render_rule(&typed);
    }
    typed
}

/// The match part of [`lower_rule`]: the typed matches of one iptables rule (everything before
/// its counter and target), in the same canonical form, without rendering any text — for an
/// evaluator (the tracer) that lowers rules as it reaches them.
pub fn lower_matches(rule: &Rule, family: Family) -> Vec<Expr> {
    rule.spec.typed_matches(family)
}

impl RuleSpec {
    /// The typed matches of this rule ([`lower_matches`]), for a reader that holds the rule's
    /// spec only.
    pub fn typed_matches(&self, family: Family) -> Vec<Expr> {
        crate::nft::canonical_exprs(match_cx(self, family).exprs)
    }
}

/// The target part of [`lower_rule`]: the statements one iptables rule's target lowers to
/// (everything after its counter; empty without a target), in the same canonical form — what the
/// tracer applies. A target or option the lowering does not know is one [`Expr::Unmodelled`].
pub fn lower_target(rule: &Rule, family: Family) -> Vec<Expr> {
    rule.spec
        .target
        .as_ref()
        .map_or_else(Vec::new, |t| t.typed(family))
}

impl Target {
    /// The statements this target lowers to in a `family` ruleset ([`lower_target`]).
    pub fn typed(&self, family: Family) -> Vec<Expr> {
        let mut cx = Cx {
            v6: family == Family::Ipv6,
            proto: None,
            exprs: Vec::new(),
            comments: Vec::new(),
        };
        cx.target(self);
        crate::nft::canonical_exprs(cx.exprs)
    }
}

/// The lowering context after the base matches and match modules of `spec`.
fn match_cx(spec: &RuleSpec, family: Family) -> Cx {
    let v6 = family == Family::Ipv6;
    let mut cx = Cx {
        v6,
        proto: spec
            .protocol
            .as_ref()
            .filter(|p| !p.negated)
            .map(|p| p.value.to_ascii_lowercase()),
        exprs: Vec::new(),
        comments: Vec::new(),
    };
    for (iface, dir) in [
        (&spec.in_interface, IfaceDir::In),
        (&spec.out_interface, IfaceDir::Out),
    ] {
        if let Some(i) = iface {
            let name = match i.value.strip_suffix('+') {
                Some(p) => format!("{p}*"),
                None => i.value.clone(),
            };
            cx.push(
                Key::Iface { dir, by_name: true },
                neg(i.negated),
                vec![Value::Str(name)],
            );
        }
    }
    if let Some(p) = &spec.protocol {
        let folded = !p.negated && cx.proto_folded(&spec.matches);
        // `-p all` (`0`): every protocol, no test.
        let any = !p.negated && matches!(p.value.to_ascii_lowercase().as_str(), "all" | "0");
        if !folded && !any {
            let via = if v6 {
                ProtoVia::Meta
            } else {
                ProtoVia::IpProtocol
            };
            cx.push(
                Key::L4Proto { via },
                neg(p.negated),
                vec![proto_value(&p.value)],
            );
        }
    }
    for (addr, dir) in [(&spec.source, Dir::Src), (&spec.destination, Dir::Dst)] {
        if let Some(a) = addr {
            let key = Key::Addr { v6, dir };
            match a.value.prefix_len() {
                Some(len) if u32::from(len) == if v6 { 128 } else { 32 } => {
                    cx.push(key, neg(a.negated), vec![Value::Addr(a.value.addr)]);
                }
                Some(len) => cx.push(key, neg(a.negated), vec![Value::Prefix(a.value.addr, len)]),
                // A non-contiguous IPv4 mask: `ip daddr & 255.0.255.0 == 10.0.0.0`.
                None => match (a.value.addr, a.value.mask) {
                    (IpAddr::V4(addr), IpAddr::V4(mask)) => cx.push(
                        Key::Masked {
                            key: Box::new(key),
                            op: BitOp::And,
                            value: u64::from(u32::from(mask)),
                        },
                        neg(a.negated),
                        vec![Value::Addr(IpAddr::V4(addr & mask))],
                    ),
                    _ => cx.unmodelled(format!(
                        "{}-{} {}",
                        if a.negated { "! " } else { "" },
                        if dir == Dir::Src { 's' } else { 'd' },
                        a.value
                    )),
                },
            }
        }
    }
    if let Some(not) = spec.fragment {
        if v6 {
            cx.unmodelled(if not { "! -f" } else { "-f" }.to_owned());
        } else {
            // `-f`: a second or later fragment, iptables-translate's `ip frag-off & 0x1fff != 0`.
            cx.push(
                Key::Masked {
                    key: Box::new(Key::Payload {
                        proto: "ip".into(),
                        field: "frag-off".into(),
                    }),
                    op: BitOp::And,
                    value: 0x1fff,
                },
                if not { Op::Eq } else { Op::Ne },
                vec![Value::Int(0)],
            );
        }
    }
    for m in &spec.matches {
        cx.module(m);
    }
    cx
}

fn neg(n: bool) -> Op {
    if n { Op::Ne } else { Op::Eq }
}

/// `-p` value: a number stays a number, a name lower-cased (`ipv6-icmp` is nft's `icmpv6`).
fn proto_value(p: &str) -> Value {
    let p = p.to_ascii_lowercase();
    match p.as_str() {
        "icmpv6" | "icmp6" => Value::Sym("ipv6-icmp".into()),
        _ => int(&p).unwrap_or(Value::Sym(p)),
    }
}

/// A decimal or `0x` hex number.
fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn int(s: &str) -> Option<Value> {
    parse_u64(s).map(Value::Int)
}

/// A port or `a:b` port range (names stay symbols; `canon_exprs` maps well-known ones).
fn port(s: &str) -> Value {
    let one = |s: &str| int(s).unwrap_or_else(|| Value::Sym(s.to_owned()));
    match s.split_once(':') {
        Some((a, b)) => Value::Range(
            Box::new(one(if a.is_empty() { "0" } else { a })),
            Box::new(one(if b.is_empty() { "65535" } else { b })),
        ),
        None => one(s),
    }
}

/// Values as a right-hand side: one value plain, several as an anonymous set.
fn set_of(vals: Vec<Value>) -> Rhs {
    if vals.len() == 1 {
        Rhs::Values(vals)
    } else {
        Rhs::Anon(
            vals.into_iter()
                .map(|key| SetElem {
                    key,
                    data: None,
                    comment: None,
                    options: Vec::new(),
                })
                .collect(),
        )
    }
}

/// A `value[/mask]` mark.
fn mark_mask(s: &str) -> Option<(u64, Option<u64>)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u64(v)?, Some(parse_u64(m)?))),
        None => Some((parse_u64(s)?, None)),
    }
}

/// The iptables text of a module, for [`Expr::Unmodelled`].
fn module_text(m: &IptMatch) -> String {
    let mut s = format!("-m {}", m.module);
    push_opts(&mut s, &m.options);
    s
}

fn target_text(t: &Target) -> String {
    let mut s = format!(
        "{} {}",
        if t.kind == TargetKind::Goto {
            "-g"
        } else {
            "-j"
        },
        t.name
    );
    push_opts(&mut s, &t.options);
    s
}

fn push_opts(s: &mut String, opts: &[OptionArg]) {
    for o in opts {
        if o.negated {
            s.push_str(" !");
        }
        s.push_str(" --");
        s.push_str(&o.name);
        for v in &o.values {
            s.push(' ');
            if v.is_empty() || v.contains([' ', '"', '\'']) {
                s.push_str(&format!("{v:?}"));
            } else {
                s.push_str(v);
            }
        }
    }
}

struct Cx {
    v6: bool,
    /// `-p` (not negated), lower-cased.
    proto: Option<String>,
    exprs: Vec<Expr>,
    comments: Vec<String>,
}

impl Cx {
    fn push(&mut self, key: Key, op: Op, vals: Vec<Value>) {
        self.push_rhs(key, op, Rhs::Values(vals));
    }

    fn push_rhs(&mut self, key: Key, op: Op, rhs: Rhs) {
        self.exprs.push(Expr::Match(Match { key, op, rhs }));
    }

    fn unmodelled(&mut self, text: String) {
        self.exprs.push(Expr::Unmodelled { text });
    }

    fn l4(&self) -> Option<L4Proto> {
        self.proto.as_deref().and_then(|p| {
            L4Proto::parse(p).or(match p {
                "6" => Some(L4Proto::Tcp),
                "17" => Some(L4Proto::Udp),
                "132" => Some(L4Proto::Sctp),
                _ => None,
            })
        })
    }

    /// Is `-p` implied by a later match whose key needs that protocol (ports, tcp flags, icmp)?
    fn proto_folded(&self, matches: &[IptMatch]) -> bool {
        let Some(p) = self.proto.as_deref() else {
            return false;
        };
        matches.iter().any(|m| {
            let header = match m.module.as_str() {
                "tcp" | "udp" | "sctp" | "dccp" | "udplite" => m.module == p,
                "multiport" => self.l4().is_some(),
                "icmp" => p == "icmp" || p == "1",
                "icmp6" => matches!(p, "icmpv6" | "ipv6-icmp" | "icmp6" | "58"),
                _ => false,
            };
            header && m.options.iter().any(|o| self.option_typed(&m.module, o))
        })
    }

    /// Does this option of a protocol module lower to a key carrying the protocol?
    fn option_typed(&self, module: &str, o: &OptionArg) -> bool {
        match module {
            "multiport" => matches!(
                o.name.as_str(),
                "dports" | "destination-ports" | "sports" | "source-ports"
            ),
            "icmp" => o.name == "icmp-type",
            "icmp6" => o.name == "icmpv6-type",
            _ => matches!(
                o.name.as_str(),
                "dport" | "destination-port" | "sport" | "source-port" | "tcp-flags" | "syn"
            ),
        }
    }

    fn module(&mut self, m: &IptMatch) {
        let before = self.exprs.len();
        let ok = match m.module.as_str() {
            "tcp" | "udp" | "sctp" | "dccp" | "udplite" => self.ports(m),
            "multiport" => self.multiport(m),
            "state" | "conntrack" => self.conntrack(m),
            "comment" => {
                self.comments.extend(
                    m.options
                        .iter()
                        .filter(|o| o.name == "comment")
                        .map(|o| o.values.first().cloned().unwrap_or_default()),
                );
                m.options.iter().all(|o| o.name == "comment" && !o.negated)
            }
            "mark" => self.mark(m, Key::Meta(MetaKey::Mark)),
            "connmark" => self.mark(
                m,
                Key::Ct {
                    dir: None,
                    key: CtKey::Mark,
                },
            ),
            "set" => self.set(m),
            "addrtype" => self.addrtype(m),
            "physdev" => self.physdev(m),
            "policy" => self.policy(m),
            "nfacct" => match m.options.as_slice() {
                [o] if o.name == "nfacct-name" && !o.negated && !o.values.is_empty() => {
                    // Counts in a named accounting object; matches every packet.
                    self.exprs.push(Expr::Counter {
                        counters: None,
                        name: Some(o.values[0].clone()),
                    });
                    true
                }
                _ => false,
            },
            "statistic" => self.statistic(m),
            "iprange" => self.iprange(m),
            "icmp" | "icmp6" => self.icmp(m),
            "mac" => self.each(m, |o| {
                let v = o.values.first().filter(|_| o.name == "mac-source")?;
                Some((
                    Key::Payload {
                        proto: "ether".into(),
                        field: "saddr".into(),
                    },
                    Value::Sym(v.to_ascii_lowercase()),
                ))
            }),
            "pkttype" => self.each(m, |o| {
                let v = o.values.first().filter(|_| o.name == "pkt-type")?;
                Some((
                    Key::Meta(MetaKey::Pkttype),
                    Value::Sym(v.to_ascii_lowercase()),
                ))
            }),
            "owner" => self.each_op(m, |o| {
                let key = match o.name.as_str() {
                    "uid-owner" => MetaKey::Skuid,
                    "gid-owner" => MetaKey::Skgid,
                    // The packet has a socket: it has an owner uid, whichever.
                    "socket-exists" => {
                        let op = if o.negated { Op::Lt } else { Op::Ge };
                        return Some((Key::Meta(MetaKey::Skuid), op, Value::Int(0)));
                    }
                    _ => return None,
                };
                let v = o.values.first()?;
                Some((
                    Key::Meta(key),
                    neg(o.negated),
                    if v.contains('-') {
                        let (a, b) = v.split_once('-')?;
                        Value::Range(Box::new(int(a)?), Box::new(int(b)?))
                    } else {
                        int(v).unwrap_or_else(|| Value::Sym(v.clone()))
                    },
                ))
            }),
            "ttl" | "hl" => {
                let (proto, field) = if m.module == "ttl" {
                    ("ip", "ttl")
                } else {
                    ("ip6", "hoplimit")
                };
                self.each_op(m, |o| {
                    let v = int(o.values.first()?)?;
                    let op = match o.name.rsplit('-').next()? {
                        "eq" => neg(o.negated),
                        "lt" if !o.negated => Op::Lt,
                        "gt" if !o.negated => Op::Gt,
                        _ => return None,
                    };
                    Some((
                        Key::Payload {
                            proto: proto.into(),
                            field: field.into(),
                        },
                        op,
                        v,
                    ))
                })
            }
            "rpfilter" => {
                let has = |n: &str| m.options.iter().any(|o| o.name == n && !o.negated);
                if !m
                    .options
                    .iter()
                    .all(|o| matches!(o.name.as_str(), "invert" | "validmark" | "loose"))
                {
                    false
                } else {
                    // The reverse route lookup finds no output interface: `fib … oif 0`.
                    let mut flags = vec!["saddr".to_owned()];
                    if has("validmark") {
                        flags.push("mark".into());
                    }
                    if !has("loose") {
                        flags.push("iif".into());
                    }
                    self.push(
                        Key::Fib {
                            flags,
                            result: "oif".into(),
                        },
                        if has("invert") { Op::Eq } else { Op::Ne },
                        vec![Value::Int(0)],
                    );
                    true
                }
            }
            "limit" if limit_text(m).is_some() => {
                self.exprs.push(Expr::Stateful {
                    kind: "limit".to_owned(),
                    text: limit_text(m).expect("checked"),
                });
                true
            }
            "limit" | "hashlimit" | "quota" | "connlimit" | "connbytes" => {
                let kind = match m.module.as_str() {
                    "connlimit" => "ct count",
                    k => k,
                };
                self.exprs.push(Expr::Stateful {
                    kind: kind.to_owned(),
                    text: module_text(m),
                });
                true
            }
            _ => false,
        };
        if !ok {
            self.exprs.truncate(before);
            self.unmodelled(module_text(m));
        }
    }

    /// Every option is one `KEY [!=] VALUE` match built by `f`; `false` when one is not.
    fn each(&mut self, m: &IptMatch, f: impl Fn(&OptionArg) -> Option<(Key, Value)>) -> bool {
        self.each_op(m, |o| f(o).map(|(k, v)| (k, neg(o.negated), v)))
    }

    /// As [`Cx::each`], with the operator chosen by `f`.
    fn each_op(
        &mut self,
        m: &IptMatch,
        f: impl Fn(&OptionArg) -> Option<(Key, Op, Value)>,
    ) -> bool {
        for o in &m.options {
            let Some((key, op, v)) = f(o) else {
                return false;
            };
            self.push(key, op, vec![v]);
        }
        true
    }

    fn ports(&mut self, m: &IptMatch) -> bool {
        let proto = L4Proto::parse(&m.module);
        for o in &m.options {
            let v = |i: usize| o.values.get(i).map(String::as_str);
            match o.name.as_str() {
                "dport" | "destination-port" | "sport" | "source-port" => {
                    let dir = if o.name.starts_with('d') {
                        Dir::Dst
                    } else {
                        Dir::Src
                    };
                    let Some(p) = v(0) else { return false };
                    self.push(Key::Port { proto, dir }, neg(o.negated), vec![port(p)]);
                }
                "tcp-flags" | "syn" if m.module == "tcp" => {
                    let (mask, comp) = if o.name == "syn" {
                        ("FIN,SYN,RST,ACK", "SYN")
                    } else {
                        match (v(0), v(1)) {
                            (Some(a), Some(b)) => (a, b),
                            _ => return false,
                        }
                    };
                    let names = |s: &str| -> Option<Vec<String>> {
                        match s {
                            "ALL" => Some(
                                ["fin", "syn", "rst", "psh", "ack", "urg"]
                                    .map(String::from)
                                    .to_vec(),
                            ),
                            "NONE" => Some(Vec::new()),
                            s => Some(s.split(',').map(|f| f.to_ascii_lowercase()).collect()),
                        }
                    };
                    let (Some(mask), Some(comp)) = (names(mask), names(comp)) else {
                        return false;
                    };
                    let mut bits = 0;
                    for f in &mask {
                        let Some(b) = crate::nft::tcp_flag_bit(f) else {
                            return false;
                        };
                        bits |= b;
                    }
                    let rhs = if comp.is_empty() {
                        vec![Value::Int(0)]
                    } else {
                        comp.into_iter().map(Value::Sym).collect()
                    };
                    self.push(
                        Key::Masked {
                            key: Box::new(Key::TcpFlags),
                            op: BitOp::And,
                            value: bits,
                        },
                        neg(o.negated),
                        rhs,
                    );
                }
                _ => return false,
            }
        }
        true
    }

    fn multiport(&mut self, m: &IptMatch) -> bool {
        let Some(proto) = self.l4() else {
            return false;
        };
        for o in &m.options {
            let dir = match o.name.as_str() {
                "dports" | "destination-ports" => Dir::Dst,
                "sports" | "source-ports" => Dir::Src,
                "ports" => {
                    // Source or destination port, as iptables-translate writes it:
                    // `sport . dport` in `{ 0-65535 . p, p . 0-65535 }`.
                    let Some(list) = o.values.first() else {
                        return false;
                    };
                    let key = |dir| Key::Port {
                        proto: Some(proto),
                        dir,
                    };
                    let elems = list
                        .split(',')
                        .map(port)
                        .flat_map(|p| {
                            let any = || {
                                Value::Range(Box::new(Value::Int(0)), Box::new(Value::Int(65535)))
                            };
                            [
                                Value::Concat(vec![any(), p.clone()]),
                                Value::Concat(vec![p, any()]),
                            ]
                        })
                        .map(|key| SetElem {
                            key,
                            data: None,
                            comment: None,
                            options: Vec::new(),
                        })
                        .collect();
                    self.push_rhs(
                        Key::Concat(vec![key(Dir::Src), key(Dir::Dst)]),
                        neg(o.negated),
                        Rhs::Anon(elems),
                    );
                    continue;
                }
                _ => return false,
            };
            let Some(list) = o.values.first() else {
                return false;
            };
            let vals = list.split(',').map(port).collect();
            self.push_rhs(
                Key::Port {
                    proto: Some(proto),
                    dir,
                },
                neg(o.negated),
                set_of(vals),
            );
        }
        true
    }

    fn conntrack(&mut self, m: &IptMatch) -> bool {
        // nft's translation reads the protocol first; a conjunction's order does not matter.
        let (first, rest): (Vec<&OptionArg>, Vec<&OptionArg>) =
            m.options.iter().partition(|o| o.name == "ctproto");
        for o in first.into_iter().chain(rest) {
            let Some(v) = o.values.first() else {
                return false;
            };
            let op = neg(o.negated);
            let ct = |dir, key| Key::Ct { dir, key };
            match o.name.as_str() {
                "state" | "ctstate" if xt_state_mask(v, o.negated) => {
                    // One xt_conntrack mask over states and NAT status (see `CtKey::XtState`).
                    self.push(
                        ct(None, CtKey::XtState),
                        if o.negated { Op::Ne } else { Op::Implicit },
                        v.split(',')
                            .map(|s| Value::Sym(s.to_ascii_lowercase()))
                            .collect(),
                    );
                }
                "state" | "ctstate" | "ctstatus" => {
                    // `--ctstate SNAT,DNAT` are status bits (`ct status dnat`).
                    let (status, state): (Vec<String>, Vec<String>) = v
                        .split(',')
                        .map(str::to_ascii_lowercase)
                        .partition(|s| o.name == "ctstatus" || s == "snat" || s == "dnat");
                    if !o.negated && !status.is_empty() && !state.is_empty() {
                        // "any of" across two keys is not one conjunction.
                        return false;
                    }
                    let op = if o.negated { Op::Ne } else { Op::Implicit };
                    for (key, vals) in [(CtKey::State, state), (CtKey::Status, status)] {
                        if !vals.is_empty() {
                            self.push(
                                ct(None, key),
                                op,
                                vals.into_iter().map(Value::Sym).collect(),
                            );
                        }
                    }
                }
                "ctproto" => self.push(
                    ct(Some(CtDir::Original), CtKey::Other("protocol".into())),
                    op,
                    vec![proto_value(v)],
                ),
                "ctdir" => self.push(
                    ct(None, CtKey::Direction),
                    op,
                    vec![Value::Sym(v.to_ascii_lowercase())],
                ),
                "ctorigsrc" | "ctorigdst" | "ctreplsrc" | "ctrepldst" => {
                    let dir = if o.name.starts_with("ctorig") {
                        CtDir::Original
                    } else {
                        CtDir::Reply
                    };
                    let sd = if o.name.ends_with("src") {
                        Dir::Src
                    } else {
                        Dir::Dst
                    };
                    let Some(val) = addr_value(v) else {
                        return false;
                    };
                    self.push(
                        ct(Some(dir), CtKey::Addr { v6: None, dir: sd }),
                        op,
                        vec![val],
                    );
                }
                "ctorigsrcport" | "ctorigdstport" | "ctreplsrcport" | "ctrepldstport" => {
                    let dir = if o.name.starts_with("ctorig") {
                        CtDir::Original
                    } else {
                        CtDir::Reply
                    };
                    let sd = if o.name.ends_with("srcport") {
                        Dir::Src
                    } else {
                        Dir::Dst
                    };
                    self.push(ct(Some(dir), CtKey::ProtoPort(sd)), op, vec![port(v)]);
                }
                _ => return false,
            }
        }
        true
    }

    fn mark(&mut self, m: &IptMatch, key: Key) -> bool {
        for o in &m.options {
            if o.name != "mark" {
                return false;
            }
            let Some((v, mask)) = o.values.first().and_then(|s| mark_mask(s)) else {
                return false;
            };
            let key = match mask {
                Some(mask) if mask != 0xffff_ffff => Key::Masked {
                    key: Box::new(key.clone()),
                    op: BitOp::And,
                    value: mask,
                },
                _ => key.clone(),
            };
            self.push(key, neg(o.negated), vec![Value::Int(v)]);
        }
        true
    }

    fn set(&mut self, m: &IptMatch) -> bool {
        for o in &m.options {
            if matches!(
                o.name.as_str(),
                "return-nomatch" | "update-counters" | "update-subcounters"
            ) {
                // Counter and nomatch-return options: nfscope answers membership only.
                continue;
            }
            if o.name != "match-set" || o.values.len() != 2 {
                return false;
            }
            let mut keys = Vec::new();
            for (i, flag) in o.values[1].split(',').enumerate() {
                let dir = match flag {
                    "src" => Dir::Src,
                    "dst" => Dir::Dst,
                    _ => return false,
                };
                // The set's type decides what each dimension is; the usual kube-proxy/ipset
                // types are `hash:ip[,port[,ip|net]]`: address, port (of `-p`), address.
                keys.push(if i == 1 {
                    Key::Port {
                        proto: self.l4(),
                        dir,
                    }
                } else {
                    Key::Addr { v6: self.v6, dir }
                });
            }
            let key = if keys.len() == 1 {
                keys.pop().expect("one")
            } else {
                Key::Concat(keys)
            };
            self.push_rhs(key, neg(o.negated), Rhs::SetRef(o.values[0].clone()));
        }
        true
    }

    /// `-m physdev`: bridge ports by name (`+` wildcard), `--physdev-is-*` as "any name".
    fn physdev(&mut self, m: &IptMatch) -> bool {
        self.each(m, |o| {
            let (dir, name) = match o.name.as_str() {
                "physdev-in" => (Some(IfaceDir::In), o.values.first()?.as_str()),
                "physdev-out" => (Some(IfaceDir::Out), o.values.first()?.as_str()),
                "physdev-is-in" => (Some(IfaceDir::In), "+"),
                "physdev-is-out" => (Some(IfaceDir::Out), "+"),
                "physdev-is-bridged" => (None, "+"),
                _ => return None,
            };
            let name = match name.strip_suffix('+') {
                Some(p) => format!("{p}*"),
                None => name.to_owned(),
            };
            Some((Key::Physdev { dir }, Value::Str(name)))
        })
    }

    /// `-m policy --dir in|out --pol none|ipsec [--strict]`: whether the packet was (in) or will
    /// be (out) IPsec-processed, nft's `meta secpath` / `rt ipsec` `exists|missing`. Options
    /// naming the policy's elements (`--proto`, `--mode`, …) are not modelled.
    fn policy(&mut self, m: &IptMatch) -> bool {
        if !m
            .options
            .iter()
            .all(|o| matches!(o.name.as_str(), "dir" | "pol" | "strict") && !o.negated)
        {
            return false;
        }
        let (Some(dir), Some(pol)) = (m.value("dir"), m.value("pol")) else {
            return false;
        };
        let key = match dir {
            "in" => Key::Meta(MetaKey::Other("secpath".into())),
            "out" => Key::Payload {
                proto: "rt".into(),
                field: "ipsec".into(),
            },
            _ => return false,
        };
        let v = match pol {
            "none" => "missing",
            "ipsec" => "exists",
            _ => return false,
        };
        self.push(key, Op::Eq, vec![Value::Sym(v.into())]);
        true
    }

    fn addrtype(&mut self, m: &IptMatch) -> bool {
        let iface = m.options.iter().find_map(|o| match o.name.as_str() {
            "limit-iface-in" => Some("iif"),
            "limit-iface-out" => Some("oif"),
            _ => None,
        });
        for o in &m.options {
            let flag = match o.name.as_str() {
                "src-type" => "saddr",
                "dst-type" => "daddr",
                "limit-iface-in" | "limit-iface-out" => continue,
                _ => return false,
            };
            let Some(types) = o.values.first() else {
                return false;
            };
            let mut flags = vec![flag.to_owned()];
            flags.extend(iface.map(String::from));
            let vals = types
                .split(',')
                .map(|t| Value::Sym(t.to_ascii_lowercase()))
                .collect();
            self.push_rhs(
                Key::Fib {
                    flags,
                    result: "type".into(),
                },
                neg(o.negated),
                set_of(vals),
            );
        }
        true
    }

    fn statistic(&mut self, m: &IptMatch) -> bool {
        let get = |n: &str| m.option(n);
        match m.value("mode") {
            Some("random") => {
                let Some(p) = get("probability") else {
                    return false;
                };
                let Some(prob) = p.values.first().and_then(|s| s.parse::<f64>().ok()) else {
                    return false;
                };
                let t = (prob * f64::from(1u32 << 31)).round() as u64;
                self.push(
                    Key::Numgen {
                        random: true,
                        modulus: 1 << 31,
                        offset: 0,
                    },
                    if p.negated { Op::Ge } else { Op::Lt },
                    vec![Value::Int(t)],
                );
                m.options
                    .iter()
                    .all(|o| o.name == "mode" || o.name == "probability")
            }
            Some("nth") => {
                let every = m.value("every").and_then(|s| s.parse::<u32>().ok());
                let packet = m.value("packet").and_then(parse_u64).unwrap_or(0);
                let Some(every) = every else { return false };
                let negated = get("every").is_some_and(|o| o.negated);
                self.push(
                    Key::Numgen {
                        random: false,
                        modulus: every,
                        offset: 0,
                    },
                    neg(negated),
                    vec![Value::Int(packet)],
                );
                m.options
                    .iter()
                    .all(|o| matches!(o.name.as_str(), "mode" | "every" | "packet"))
            }
            _ => false,
        }
    }

    fn iprange(&mut self, m: &IptMatch) -> bool {
        let v6 = self.v6;
        self.each(m, |o| {
            let dir = match o.name.as_str() {
                "src-range" => Dir::Src,
                "dst-range" => Dir::Dst,
                _ => return None,
            };
            let (a, b) = o.values.first()?.split_once('-')?;
            let (a, b): (IpAddr, IpAddr) = (a.parse().ok()?, b.parse().ok()?);
            Some((
                Key::Addr { v6, dir },
                Value::Range(Box::new(Value::Addr(a)), Box::new(Value::Addr(b))),
            ))
        })
    }

    /// `--icmp-type NAME|T[/C]`: `icmp type T [icmp code C]`, numbers (a name that means a code
    /// too, `port-unreachable`, is both).
    fn icmp(&mut self, m: &IptMatch) -> bool {
        let v6 = m.module == "icmp6";
        let [o] = m.options.as_slice() else {
            return false;
        };
        if o.name != if v6 { "icmpv6-type" } else { "icmp-type" } {
            return false;
        }
        let Some(t) = o.values.first() else {
            return false;
        };
        let key = |is_type| Key::Icmp { v6, is_type };
        if t == "any" {
            // Every type: the key's protocol check alone.
            self.push(
                key(true),
                neg(o.negated),
                vec![Value::Range(
                    Box::new(Value::Int(0)),
                    Box::new(Value::Int(255)),
                )],
            );
            return true;
        }
        let (ty, code) = match t.split_once('/') {
            Some((a, b)) => match (parse_u64(a), parse_u64(b)) {
                (Some(a), Some(b)) => (a, Some(b)),
                _ => return false,
            },
            None => match parse_u64(t).map(|n| (n, None)).or_else(|| icmp_name(t, v6)) {
                Some(tc) => tc,
                None => return false,
            },
        };
        if let (true, Some(c)) = (o.negated, code) {
            // Not this type and code: one test of the pair.
            self.push(
                Key::Concat(vec![key(true), key(false)]),
                Op::Ne,
                vec![Value::Concat(vec![Value::Int(ty), Value::Int(c)])],
            );
            return true;
        }
        self.push(
            Key::Icmp { v6, is_type: true },
            neg(o.negated),
            vec![Value::Int(ty)],
        );
        if let Some(c) = code {
            self.push(
                Key::Icmp { v6, is_type: false },
                Op::Eq,
                vec![Value::Int(c)],
            );
        }
        true
    }

    fn target(&mut self, t: &Target) {
        let before = self.exprs.len();
        if !self.try_target(&expand_options(t)) {
            self.exprs.truncate(before);
            self.unmodelled(target_text(t));
        }
    }

    fn try_target(&mut self, t: &Target) -> bool {
        let opt = |n: &str| t.value(n);
        let only = |names: &[&str]| t.options.iter().all(|o| names.contains(&o.name.as_str()));
        let verdict = |v| Expr::Verdict(v);
        let e = match t.name.as_str() {
            "ACCEPT" => verdict(Verdict::Accept),
            "DROP" => verdict(Verdict::Drop),
            "RETURN" => verdict(Verdict::Return),
            "QUEUE" => verdict(Verdict::Queue {
                options: String::new(),
            }),
            "REJECT" => {
                if !only(&["reject-with"]) {
                    return false;
                }
                verdict(Verdict::Reject {
                    with: opt("reject-with").and_then(|w| reject_with(w, self.v6)),
                })
            }
            "DNAT" | "SNAT" => {
                let (kind, o) = if t.name == "DNAT" {
                    (NatKind::Dnat, "to-destination")
                } else {
                    (NatKind::Snat, "to-source")
                };
                if !only(&[o, "random", "persistent", "random-fully"]) {
                    return false;
                }
                let Some(to) = opt(o) else { return false };
                let Some((addr, port)) = nat_to(to, self.v6) else {
                    return false;
                };
                Expr::Nat(Nat {
                    kind,
                    family: None,
                    addr,
                    port,
                    flags: nat_flags(t),
                })
            }
            "MASQUERADE" | "REDIRECT" => {
                if !only(&["to-ports", "to-port", "random", "random-fully"]) {
                    return false;
                }
                Expr::Nat(Nat {
                    kind: if t.name == "REDIRECT" {
                        NatKind::Redirect
                    } else {
                        NatKind::Masquerade
                    },
                    family: None,
                    addr: None,
                    port: opt("to-ports").or(opt("to-port")).map(nat_port),
                    flags: nat_flags(t),
                })
            }
            "TPROXY" => {
                if !only(&["on-port", "on-ip", "tproxy-mark"]) {
                    return false;
                }
                let addr = match opt("on-ip").map(str::parse::<IpAddr>) {
                    Some(Ok(a)) => Some(NatAddr::Value(Value::Addr(a))),
                    Some(Err(_)) => return false,
                    None => None,
                };
                self.exprs.push(Expr::Nat(Nat {
                    kind: NatKind::Tproxy,
                    family: None,
                    addr,
                    port: opt("on-port").map(nat_port),
                    flags: Vec::new(),
                }));
                if let Some(m) = opt("tproxy-mark") {
                    let Some(value) = mark_value(m, Key::Meta(MetaKey::Mark)) else {
                        return false;
                    };
                    self.exprs.push(Expr::SetMark {
                        target: MarkTarget::Meta,
                        value,
                    });
                }
                verdict(Verdict::Accept)
            }
            "MARK" | "CONNMARK" => {
                let Some(e) = set_mark(t) else { return false };
                e
            }
            "NOTRACK" => Expr::Notrack,
            "CT" if t.options.iter().any(|o| o.name == "notrack" && !o.negated) => {
                if only(&["notrack"]) {
                    Expr::Notrack
                } else {
                    // `--notrack` beside zone/helper options: notrack, the rest kept as text.
                    self.exprs.push(Expr::Notrack);
                    Expr::Unmodelled {
                        text: target_text(t),
                    }
                }
            }
            "NETMAP" => {
                if !only(&["to"]) {
                    return false;
                }
                match opt("to").and_then(addr_value) {
                    Some(v @ (Value::Addr(a) | Value::Prefix(a, _))) if a.is_ipv6() == self.v6 => {
                        Expr::Nat(Nat {
                            kind: NatKind::Netmap,
                            family: None,
                            addr: Some(NatAddr::Value(v)),
                            port: None,
                            flags: Vec::new(),
                        })
                    }
                    _ => return false,
                }
            }
            "LOG" => {
                let mut options = Vec::new();
                if let Some(l) = opt("log-level") {
                    options.push(format!("level {}", log_level(l)));
                }
                // nft's form: `flags tcp sequence,options flags ip options flags skuid`.
                let has = |n: &str| t.options.iter().any(|o| o.name == n);
                if !only(&[
                    "log-prefix",
                    "log-level",
                    "log-tcp-sequence",
                    "log-tcp-options",
                    "log-ip-options",
                    "log-uid",
                    "log-macdecode",
                ]) {
                    return false;
                }
                let tcp: Vec<&str> = [
                    ("log-tcp-sequence", "sequence"),
                    ("log-tcp-options", "options"),
                ]
                .into_iter()
                .filter(|(o, _)| has(o))
                .map(|(_, f)| f)
                .collect();
                if !tcp.is_empty() {
                    options.push(format!("flags tcp {}", tcp.join(",")));
                }
                for (o, f) in [
                    ("log-ip-options", "flags ip options"),
                    ("log-uid", "flags skuid"),
                    ("log-macdecode", "flags ether"),
                ] {
                    if has(o) {
                        options.push(f.to_owned());
                    }
                }
                Expr::Log {
                    prefix: opt("log-prefix").map(String::from),
                    group: None,
                    options,
                }
            }
            "NFLOG" => {
                if !only(&[
                    "nflog-group",
                    "nflog-prefix",
                    "nflog-threshold",
                    "nflog-size",
                    "nflog-range",
                ]) {
                    return false;
                }
                // nft's order: snaplen, then queue-threshold.
                let mut options = Vec::new();
                if let Some(v) = opt("nflog-size").or(opt("nflog-range")) {
                    options.push(format!("snaplen {v}"));
                }
                if let Some(v) = opt("nflog-threshold") {
                    options.push(format!("queue-threshold {v}"));
                }
                Expr::Log {
                    prefix: opt("nflog-prefix").map(String::from),
                    group: Some(match opt("nflog-group") {
                        Some(g) => match g.parse() {
                            Ok(g) => g,
                            Err(_) => return false,
                        },
                        None => 0,
                    }),
                    options,
                }
            }
            name if is_extension_target(name) => return false,
            name => {
                if !t.options.is_empty() {
                    return false;
                }
                verdict(match t.kind {
                    TargetKind::Jump => Verdict::Jump(name.to_owned()),
                    TargetKind::Goto => Verdict::Goto(name.to_owned()),
                })
            }
        };
        self.exprs.push(e);
        true
    }
}

/// Does `[!] --ctstate LIST` need xt_conntrack's one mask ([`CtKey::XtState`])? When it lists
/// `SNAT`/`DNAT` beside states ("any of" across nft's `ct state` and `ct status`), or negates
/// them (`! --ctstate DNAT` holds for a packet without a connection; `ct status != dnat` does
/// not). `--ctstate DNAT` alone is `ct status dnat`.
fn xt_state_mask(list: &str, negated: bool) -> bool {
    let nat = |s: &str| s.eq_ignore_ascii_case("snat") || s.eq_ignore_ascii_case("dnat");
    list.split(',').any(nat) && (negated || !list.split(',').all(nat))
}

/// Targets provided by an extension (upper-case by convention) rather than a user chain: a
/// user chain may be called anything, but iptables resolves a name to an extension first.
fn is_extension_target(name: &str) -> bool {
    matches!(
        name,
        "CHECKSUM"
            | "TCPMSS"
            | "CT"
            | "CLASSIFY"
            | "DSCP"
            | "TOS"
            | "TTL"
            | "HL"
            | "NFQUEUE"
            | "SET"
            | "TEE"
            | "AUDIT"
            | "SECMARK"
            | "CONNSECMARK"
            | "IDLETIMER"
            | "LED"
            | "SYNPROXY"
            | "TRACE"
            | "ULOG"
            | "CLUSTERIP"
            | "ECN"
            | "RATEEST"
            | "HMARK"
            | "TCPOPTSTRIP"
            | "MIRROR"
            | "SAME"
            | "DNPT"
            | "SNPT"
    )
}

/// `-m limit --limit N/unit [--limit-burst B]` as nft writes it (`limit rate N/unit burst B packets`).
fn limit_text(m: &IptMatch) -> Option<String> {
    let (mut rate, mut burst) = ("3/hour".to_owned(), 5u32);
    for o in &m.options {
        let v = o.values.first()?;
        match o.name.as_str() {
            "limit" if !o.negated => rate = v.clone(),
            "limit-burst" if !o.negated => burst = v.parse().ok()?,
            _ => return None,
        }
    }
    let (n, unit) = rate.split_once('/').unwrap_or((rate.as_str(), "sec"));
    let unit = match unit {
        u if u.starts_with('s') => "second",
        u if u.starts_with('m') => "minute",
        u if u.starts_with('h') => "hour",
        u if u.starts_with('d') => "day",
        _ => return None,
    };
    Some(format!("limit rate {n}/{unit} burst {burst} packets"))
}

/// iptables' ICMP type names (`iptables -p icmp -h`; ICMPv6 with `v6`): type and, for some,
/// code. The one table of them: the tracer reads names through it too.
pub fn icmp_name(name: &str, v6: bool) -> Option<(u64, Option<u64>)> {
    const V4: &[(&str, u64, Option<u64>)] = &[
        ("echo-reply", 0, None),
        ("pong", 0, None),
        ("destination-unreachable", 3, None),
        ("network-unreachable", 3, Some(0)),
        ("host-unreachable", 3, Some(1)),
        ("protocol-unreachable", 3, Some(2)),
        ("port-unreachable", 3, Some(3)),
        ("fragmentation-needed", 3, Some(4)),
        ("source-route-failed", 3, Some(5)),
        ("network-unknown", 3, Some(6)),
        ("host-unknown", 3, Some(7)),
        ("network-prohibited", 3, Some(9)),
        ("host-prohibited", 3, Some(10)),
        ("tos-network-unreachable", 3, Some(11)),
        ("tos-host-unreachable", 3, Some(12)),
        ("communication-prohibited", 3, Some(13)),
        ("host-precedence-violation", 3, Some(14)),
        ("precedence-cutoff", 3, Some(15)),
        ("source-quench", 4, None),
        ("redirect", 5, None),
        ("network-redirect", 5, Some(0)),
        ("host-redirect", 5, Some(1)),
        ("tos-network-redirect", 5, Some(2)),
        ("tos-host-redirect", 5, Some(3)),
        ("echo-request", 8, None),
        ("ping", 8, None),
        ("router-advertisement", 9, None),
        ("router-solicitation", 10, None),
        ("time-exceeded", 11, None),
        ("ttl-exceeded", 11, None),
        ("ttl-zero-during-transit", 11, Some(0)),
        ("ttl-zero-during-reassembly", 11, Some(1)),
        ("parameter-problem", 12, None),
        ("ip-header-bad", 12, Some(0)),
        ("required-option-missing", 12, Some(1)),
        ("timestamp-request", 13, None),
        ("timestamp-reply", 14, None),
        ("address-mask-request", 17, None),
        ("address-mask-reply", 18, None),
    ];
    const V6: &[(&str, u64, Option<u64>)] = &[
        ("destination-unreachable", 1, None),
        ("no-route", 1, Some(0)),
        ("communication-prohibited", 1, Some(1)),
        ("beyond-scope", 1, Some(2)),
        ("address-unreachable", 1, Some(3)),
        ("port-unreachable", 1, Some(4)),
        ("failed-policy", 1, Some(5)),
        ("reject-route", 1, Some(6)),
        ("packet-too-big", 2, None),
        ("time-exceeded", 3, None),
        ("ttl-exceeded", 3, None),
        ("ttl-zero-during-transit", 3, Some(0)),
        ("ttl-zero-during-reassembly", 3, Some(1)),
        ("parameter-problem", 4, None),
        ("bad-header", 4, Some(0)),
        ("unknown-header-type", 4, Some(1)),
        ("unknown-option", 4, Some(2)),
        ("echo-request", 128, None),
        ("ping", 128, None),
        ("echo-reply", 129, None),
        ("pong", 129, None),
        ("mld-listener-query", 130, None),
        ("mld-listener-report", 131, None),
        ("mld-listener-done", 132, None),
        ("router-solicitation", 133, None),
        ("router-advertisement", 134, None),
        ("neighbour-solicitation", 135, None),
        ("neighbor-solicitation", 135, None),
        ("neighbour-advertisement", 136, None),
        ("neighbor-advertisement", 136, None),
        ("redirect", 137, None),
    ];
    let name = name.to_ascii_lowercase();
    (if v6 { V6 } else { V4 })
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, c)| (*t, *c))
}

fn log_level(l: &str) -> &str {
    const LEVELS: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
    ];
    match l.parse::<usize>() {
        Ok(n) if n < 8 => LEVELS[n],
        _ => match l {
            "warning" => "warn",
            "error" => "err",
            "panic" => "emerg",
            l => l,
        },
    }
}

fn reject_with(w: &str, v6: bool) -> Option<String> {
    let w = w.to_ascii_lowercase();
    if w == "tcp-reset" {
        return Some("tcp reset".into());
    }
    let (fam, rest) = if v6 {
        ("icmpv6", w.strip_prefix("icmp6-")?)
    } else {
        ("icmp", w.strip_prefix("icmp-")?)
    };
    let rest = match rest {
        "port-unreachable" => return None,
        "adm-prohibited" => "admin-prohibited",
        "proto-unreachable" => "prot-unreachable",
        r => r,
    };
    Some(format!("{fam} {rest}"))
}

fn nat_flags(t: &Target) -> Vec<String> {
    t.options
        .iter()
        .filter_map(|o| match o.name.as_str() {
            "random" => Some("random".to_owned()),
            "random-fully" => Some("fully-random".to_owned()),
            "persistent" => Some("persistent".to_owned()),
            _ => None,
        })
        .collect()
}

fn nat_port(p: &str) -> Value {
    match p.split_once('-') {
        Some((a, b)) => Value::Range(Box::new(port(a)), Box::new(port(b))),
        None => port(p),
    }
}

fn addr_value(s: &str) -> Option<Value> {
    match s.split_once('/') {
        Some((a, l)) => Some(Value::Prefix(a.parse().ok()?, l.parse().ok()?)),
        None => Some(Value::Addr(s.parse().ok()?)),
    }
}

/// `--to-destination [A[-B]][:P[-Q]]` (`[A]:P` for IPv6).
fn nat_to(s: &str, v6: bool) -> Option<(Option<NatAddr>, Option<Value>)> {
    let (addr, port) = if v6 {
        match s.strip_prefix('[') {
            Some(r) => {
                let (a, p) = r.split_once(']')?;
                (a, p.strip_prefix(':'))
            }
            None => (s, None),
        }
    } else {
        match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    };
    let addr = if addr.is_empty() {
        None
    } else {
        Some(NatAddr::Value(match addr.split_once('-') {
            Some((a, b)) => Value::Range(
                Box::new(Value::Addr(a.parse().ok()?)),
                Box::new(Value::Addr(b.parse().ok()?)),
            ),
            None => Value::Addr(addr.parse().ok()?),
        }))
    };
    Some((addr, port.map(nat_port)))
}

/// `--set-xmark V/M` and friends as a mark statement value.
/// `V/M` means `mark = (mark & ~M) ^ V`.
fn mark_value(s: &str, key: Key) -> Option<MarkValue> {
    let (v, m) = mark_mask(s)?;
    Some(xmark_value(v, m, key))
}

/// `mark = (mark & ~m) ^ v` (`m` absent: all ones) in the simplest mark statement.
fn xmark_value(v: u64, m: Option<u64>, key: Key) -> MarkValue {
    match m {
        None | Some(0xffff_ffff) => MarkValue::Set(v),
        Some(m) if m == v => MarkValue::Or(v),
        Some(0) => MarkValue::Xor(v),
        Some(m) if v == 0 => MarkValue::And(!m & 0xffff_ffff),
        Some(m) => MarkValue::From {
            key: Key::Masked {
                key: Box::new(Key::Masked {
                    key: Box::new(key),
                    op: BitOp::And,
                    value: !m & 0xffff_ffff,
                }),
                op: BitOp::Xor,
                value: v,
            },
        },
    }
}

/// `MARK`/`CONNMARK`: `--set-xmark V/M` and its spellings as the mark statement nft writes;
/// CONNMARK's `--save-mark`/`--restore-mark` copy between the marks, with `--nfmask`/`--ctmask`
/// (`--mask` sets both) as [`MarkValue::Copy`] when a mask is not all ones. `None` for anything
/// else (shifts of revision 2, a negated or unknown option): the caller keeps the target as text.
fn set_mark(t: &Target) -> Option<Expr> {
    const FULL: u64 = 0xffff_ffff;
    let target = if t.name == "MARK" {
        MarkTarget::Meta
    } else {
        MarkTarget::Ct
    };
    let (o, rest) = t.options.split_first()?;
    let (mut nf, mut ct) = (FULL, FULL);
    for m in rest {
        let v = parse_u64(m.values.first()?)?;
        match m.name.as_str() {
            _ if m.negated => return None,
            "nfmask" => nf = v,
            "ctmask" => ct = v,
            "mask" => (nf, ct) = (v, v),
            _ => return None,
        }
    }
    let copying = matches!(o.name.as_str(), "save-mark" | "restore-mark");
    if o.negated || (!copying && (nf, ct) != (FULL, FULL)) {
        return None;
    }
    let v = o.values.first().map(String::as_str);
    let meta = Key::Meta(MetaKey::Mark);
    let ctmark = Key::Ct {
        dir: None,
        key: CtKey::Mark,
    };
    let own = match target {
        MarkTarget::Meta => meta.clone(),
        MarkTarget::Ct => ctmark.clone(),
    };
    // `(own & !clear) ^ (key & mask)`; all ones both: a plain copy, as nft writes it.
    let copy = |key: Key, mask: u64, clear: u64| {
        if (mask, clear) == (FULL, FULL) {
            MarkValue::From { key }
        } else {
            MarkValue::Copy { key, mask, clear }
        }
    };
    let value = match o.name.as_str() {
        "set-xmark" => mark_value(v?, own)?,
        // `--set-mark V/M` clears `V | M` (libxt_MARK, libxt_CONNMARK).
        "set-mark" => match mark_mask(v?)? {
            (val, Some(m)) => xmark_value(val, Some(val | m), own),
            (val, None) => MarkValue::Set(val),
        },
        "or-mark" => MarkValue::Or(parse_u64(v?)?),
        "and-mark" => MarkValue::And(parse_u64(v?)?),
        "xor-mark" => MarkValue::Xor(parse_u64(v?)?),
        "save-mark" if target == MarkTarget::Ct => copy(meta, nf, ct),
        "restore-mark" if target == MarkTarget::Ct => {
            return Some(Expr::SetMark {
                target: MarkTarget::Meta,
                value: copy(ctmark, ct, nf),
            });
        }
        _ => return None,
    };
    Some(Expr::SetMark { target, value })
}

/// The options each target lowered here knows, for the abbreviations getopt_long accepts
/// (`REDIRECT --to-port 15001` is `--to-ports`).
fn target_options(name: &str) -> &'static [&'static str] {
    const MARK: &[&str] = &["set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark"];
    match name {
        "DNAT" => &["to-destination", "random", "persistent"],
        "SNAT" => &["to-source", "random", "random-fully", "persistent"],
        "MASQUERADE" => &["to-ports", "random", "random-fully"],
        "REDIRECT" => &["to-ports", "random"],
        "TPROXY" => &["on-port", "on-ip", "tproxy-mark"],
        "NETMAP" => &["to"],
        "MARK" => MARK,
        "CONNMARK" => &[
            "set-xmark",
            "set-mark",
            "and-mark",
            "or-mark",
            "xor-mark",
            "save-mark",
            "restore-mark",
            "nfmask",
            "ctmask",
            "mask",
        ],
        "CT" => &[
            "notrack",
            "helper",
            "ctevents",
            "expevents",
            "zone",
            "zone-orig",
            "zone-reply",
            "timeout",
        ],
        _ => &[],
    }
}

/// `t` with each abbreviated option spelled in full: an option name that is a prefix of exactly
/// one option the target knows (an exact name wins), as getopt_long resolves it.
fn expand_options(t: &Target) -> std::borrow::Cow<'_, Target> {
    let known = target_options(&t.name);
    let full = |n: &str| -> Option<&'static str> {
        if n.is_empty() || known.contains(&n) {
            return None;
        }
        let mut hits = known.iter().filter(|k| k.starts_with(n));
        match (hits.next(), hits.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    };
    if t.options.iter().all(|o| full(&o.name).is_none()) {
        return std::borrow::Cow::Borrowed(t);
    }
    let mut t = t.clone();
    for o in &mut t.options {
        if let Some(k) = full(&o.name) {
            o.name = crate::model::Symbol::new(k);
        }
    }
    std::borrow::Cow::Owned(t)
}

/// A NAT target as a dump shows it that cannot be what the kernel runs: an `iptables-save` older
/// than the iptables that wrote the rule prints the target's address option without value, more
/// than once, or as `0.0.0.0…` / `:port`. What [`Rule::garbled_nat`] reports, so readers of the typed
/// model need not parse the target's options themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarbledNat {
    /// The target (`DNAT`, `SNAT`, `NETMAP`).
    pub target: String,
    /// Its address option (`to-destination`, `to-source`, `to`).
    pub option: &'static str,
    /// What is wrong.
    pub defect: NatDefect,
}

/// What is wrong with a [`GarbledNat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatDefect {
    /// The address option is given this many times.
    Repeated(usize),
    /// The address option has no value.
    NoAddress,
    /// The value (`0.0.0.0:0`, `:80`) names no usable address.
    Unusable(String),
}

impl fmt::Display for GarbledNat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, option) = (&self.target, self.option);
        match &self.defect {
            NatDefect::Repeated(n) => write!(f, "{name} has --{option} {n} times"),
            NatDefect::NoAddress => write!(f, "{name} --{option} has no address"),
            NatDefect::Unusable(v) => write!(f, "{name} --{option} {v} is not a usable address"),
        }
    }
}

impl Rule {
    /// The rule's NAT target when the dump garbled it (see [`GarbledNat`]); `None` for every other
    /// rule.
    pub fn garbled_nat(&self) -> Option<GarbledNat> {
        let target = self.spec.target.as_ref()?;
        let option = match target.name.as_str() {
            "DNAT" => "to-destination",
            "SNAT" => "to-source",
            "NETMAP" => "to",
            _ => return None,
        };
        let values: Vec<Option<&str>> = target
            .options
            .iter()
            .filter(|o| o.name == option)
            .map(|o| o.values.first().map(String::as_str))
            .collect();
        let defect = match values.as_slice() {
            [] => return None,
            [_, _, ..] => NatDefect::Repeated(values.len()),
            [None | Some("")] => NatDefect::NoAddress,
            [Some(v)] if v.starts_with("0.0.0.0") || v.starts_with(':') => {
                NatDefect::Unusable((*v).to_owned())
            }
            [Some(_)] => return None,
        };
        Some(GarbledNat {
            target: target.name.clone(),
            option,
            defect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xmark_is_and_then_xor() {
        let m = || Key::Meta(MetaKey::Mark);
        assert_eq!(mark_value("0x4000", m()), Some(MarkValue::Set(0x4000)));
        assert_eq!(
            mark_value("0x4000/0x4000", m()),
            Some(MarkValue::Or(0x4000))
        );
        assert_eq!(mark_value("0x4000/0x0", m()), Some(MarkValue::Xor(0x4000)));
        assert_eq!(
            mark_value("0x0/0x4000", m()),
            Some(MarkValue::And(0xffff_bfff))
        );
        assert_eq!(
            mark_value("0x111/0xfff", m()),
            Some(MarkValue::From {
                key: Key::Masked {
                    key: Box::new(Key::Masked {
                        key: Box::new(m()),
                        op: BitOp::And,
                        value: 0xffff_f000,
                    }),
                    op: BitOp::Xor,
                    value: 0x111,
                }
            })
        );
        assert_eq!(mark_value("zz", m()), None);
    }

    #[test]
    fn nat_targets_split_address_and_port() {
        let a = |s: &str| Value::Addr(s.parse().unwrap());
        assert_eq!(
            nat_to("10.0.0.1:80-90", false),
            Some((
                Some(NatAddr::Value(a("10.0.0.1"))),
                Some(Value::Range(
                    Box::new(Value::Int(80)),
                    Box::new(Value::Int(90))
                ))
            ))
        );
        assert_eq!(
            nat_to("[fd00::1]:8080", true),
            Some((Some(NatAddr::Value(a("fd00::1"))), Some(Value::Int(8080))))
        );
        assert_eq!(nat_to("fd00::1", true).unwrap().1, None);
        assert_eq!(nat_to("not-an-address", false), None);
    }

    #[test]
    fn garbled_nat_targets_are_reported_typed() {
        let rule = |t: &str| {
            let text = format!("*nat\n:X - [0:0]\n-A X -p tcp {t}\nCOMMIT\n");
            let rs = crate::parse_ruleset(&text, &crate::ParseOptions::default()).unwrap();
            rs.tables[0].chains[0].rules[0].garbled_nat()
        };
        assert_eq!(rule("-j DNAT --to-destination 10.0.0.1:80"), None);
        assert_eq!(rule("-j MASQUERADE"), None);
        let g = rule("-j DNAT --to-destination 0.0.0.0:0").unwrap();
        assert_eq!(g.defect, NatDefect::Unusable("0.0.0.0:0".into()));
        assert_eq!(
            g.to_string(),
            "DNAT --to-destination 0.0.0.0:0 is not a usable address"
        );
        let g = rule("-j SNAT --to-source 10.0.0.1 --to-source 10.0.0.2").unwrap();
        assert_eq!(g.to_string(), "SNAT has --to-source 2 times");
    }

    /// The statements `-j TARGET` lowers to, in an `ip` (or with `v6`, `ip6`) nat table.
    fn target_of(t: &str, v6: bool) -> Vec<Expr> {
        let text = format!("*nat\n:X - [0:0]\n-A X {t}\nCOMMIT\n");
        let rs = crate::parse_ruleset(&text, &crate::ParseOptions::default()).unwrap();
        let family = if v6 { Family::Ipv6 } else { Family::Ipv4 };
        let rule = &rs.tables[0].chains[0].rules[0];
        let stmts = lower_target(rule, family);
        // The tracer's statements are the target part of the whole lowered rule.
        let whole = lower_rule(rule, family, 1).exprs;
        assert_eq!(whole[whole.len() - stmts.len()..], stmts[..], "{t}");
        stmts
    }

    fn mark(target: MarkTarget, value: MarkValue) -> Vec<Expr> {
        vec![Expr::SetMark { target, value }]
    }

    fn xmark(key: Key, v: u64, keep: u64) -> MarkValue {
        MarkValue::From {
            key: Key::Masked {
                key: Box::new(Key::Masked {
                    key: Box::new(key),
                    op: BitOp::And,
                    value: keep,
                }),
                op: BitOp::Xor,
                value: v,
            },
        }
    }

    fn nat(kind: NatKind, addr: Option<Value>, port: Option<Value>, flags: &[&str]) -> Vec<Expr> {
        vec![Expr::Nat(Nat {
            kind,
            family: None,
            addr: addr.map(NatAddr::Value),
            port,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        })]
    }

    fn range(a: Value, b: Value) -> Value {
        Value::Range(Box::new(a), Box::new(b))
    }

    #[test]
    fn mark_targets_lower_to_the_mark_arithmetic_they_mean() {
        use MarkTarget::{Ct, Meta};
        let meta = || Key::Meta(MetaKey::Mark);
        let ct = || Key::Ct {
            dir: None,
            key: CtKey::Mark,
        };
        let t = |s: &str| target_of(s, false);
        assert_eq!(
            t("-j MARK --set-xmark 0x10/0xf0"),
            mark(Meta, xmark(meta(), 0x10, 0xffff_ff0f))
        );
        // `--set-mark V/M` clears V|M before the xor (libxt_MARK).
        assert_eq!(
            t("-j MARK --set-mark 0x10/0x0f"),
            mark(Meta, xmark(meta(), 0x10, 0xffff_ffe0))
        );
        assert_eq!(t("-j MARK --set-mark 0x7"), mark(Meta, MarkValue::Set(7)));
        assert_eq!(t("-j MARK --xor-mark 0x3"), mark(Meta, MarkValue::Xor(3)));
        assert_eq!(t("-j MARK --or-mark 0x3"), mark(Meta, MarkValue::Or(3)));
        assert_eq!(t("-j MARK --and-mark 0x3"), mark(Meta, MarkValue::And(3)));
        // getopt_long abbreviations, as iptables accepts them.
        assert_eq!(t("-j MARK --xor 0x3"), mark(Meta, MarkValue::Xor(3)));
        assert_eq!(
            t("-j CONNMARK --set-xmark 0x100/0xf00"),
            mark(Ct, xmark(ct(), 0x100, 0xffff_f0ff))
        );
        assert_eq!(
            t("-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff"),
            mark(Ct, MarkValue::From { key: meta() })
        );
        assert_eq!(
            t("-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xf0"),
            mark(
                Ct,
                MarkValue::Copy {
                    key: meta(),
                    mask: 0xff,
                    clear: 0xf0
                }
            )
        );
        assert_eq!(
            t("-j CONNMARK --restore-mark --mask 0xff00"),
            mark(
                Meta,
                MarkValue::Copy {
                    key: ct(),
                    mask: 0xff00,
                    clear: 0xff00
                }
            )
        );
        assert_eq!(
            t("-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff"),
            mark(Meta, MarkValue::From { key: ct() })
        );
    }

    #[test]
    fn nat_targets_lower_with_ranges_flags_and_netmap() {
        let a = |s: &str| Value::Addr(s.parse().unwrap());
        let t = |s: &str| target_of(s, false);
        assert_eq!(
            t("-j DNAT --to-destination 10.0.0.1-10.0.0.3:8000-8010 --random --persistent"),
            nat(
                NatKind::Dnat,
                Some(range(a("10.0.0.1"), a("10.0.0.3"))),
                Some(range(Value::Int(8000), Value::Int(8010))),
                &["random", "persistent"]
            )
        );
        assert_eq!(
            target_of("-j DNAT --to-destination [fd00::1]:80", true),
            nat(NatKind::Dnat, Some(a("fd00::1")), Some(Value::Int(80)), &[])
        );
        assert_eq!(
            t("-j SNAT --to-source 192.0.2.1 --random-fully"),
            nat(NatKind::Snat, Some(a("192.0.2.1")), None, &["fully-random"])
        );
        assert_eq!(
            t("-j REDIRECT --to-ports 8000-8010"),
            nat(
                NatKind::Redirect,
                None,
                Some(range(Value::Int(8000), Value::Int(8010))),
                &[]
            )
        );
        assert_eq!(
            t("-j REDIRECT --to-port 15001"),
            nat(NatKind::Redirect, None, Some(Value::Int(15001)), &[])
        );
        assert_eq!(
            t("-j MASQUERADE --to-ports 1024-2048 --random-fully"),
            nat(
                NatKind::Masquerade,
                None,
                Some(range(Value::Int(1024), Value::Int(2048))),
                &["fully-random"]
            )
        );
        assert_eq!(
            t("-j NETMAP --to 10.9.0.0/24"),
            nat(
                NatKind::Netmap,
                Some(Value::Prefix("10.9.0.0".parse().unwrap(), 24)),
                None,
                &[]
            )
        );
        assert_eq!(
            target_of("-j NETMAP --to fd00:9::/64", true),
            nat(
                NatKind::Netmap,
                Some(Value::Prefix("fd00:9::".parse().unwrap(), 64)),
                None,
                &[]
            )
        );
    }

    #[test]
    fn tproxy_and_notrack_lower_to_their_statements() {
        let mut want = nat(
            NatKind::Tproxy,
            Some(Value::Addr("127.0.0.1".parse().unwrap())),
            Some(Value::Int(15001)),
            &[],
        );
        want.push(Expr::SetMark {
            target: MarkTarget::Meta,
            value: MarkValue::Or(1),
        });
        want.push(Expr::Verdict(Verdict::Accept));
        let t = |s: &str| target_of(s, false);
        assert_eq!(
            t("-j TPROXY --on-port 15001 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1"),
            want
        );
        assert_eq!(
            t("-j TPROXY --on-p 15001 --on-i 127.0.0.1 --tproxy-m 0x1/0x1"),
            want
        );
        assert_eq!(t("-j CT --notrack"), vec![Expr::Notrack]);
        assert_eq!(t("-j NOTRACK"), vec![Expr::Notrack]);
        assert_eq!(
            t("-j CT --notrack --zone 1"),
            vec![
                Expr::Notrack,
                Expr::Unmodelled {
                    text: "-j CT --notrack --zone 1".into()
                }
            ]
        );
    }

    /// What the lowering does not understand stays one `Unmodelled` statement with the target's
    /// text (the tracer answers MAY there), never a statement that drops the option.
    #[test]
    fn unknown_target_options_lower_to_unmodelled() {
        let unmodelled = |s: &str| {
            assert_eq!(
                target_of(s, false),
                vec![Expr::Unmodelled { text: s.into() }],
                "{s}"
            );
        };
        unmodelled("-j DNAT --to-destination 10.0.0.1 --bogus");
        unmodelled("-j MARK --set-xmark 0x1/0x1 --nfmask 0xff");
        unmodelled("-j CONNMARK --save-mark --mask 0xff --left-shift-mark 8");
        unmodelled("-j CONNMARK --set-mark 0x1 --ctmask 0xff");
        unmodelled("-j NETMAP --to 10.9.0.0/24 --bogus");
        unmodelled("-j NETMAP --to fd00::/64");
        unmodelled("-j SYNPROXY --mss 1460");
        // An abbreviation that fits two options is not resolved.
        unmodelled("-j MASQUERADE --random-f --ran");
    }

    #[test]
    fn icmp_names_carry_codes_and_reject_names_follow_nft() {
        assert_eq!(icmp_name("port-unreachable", false), Some((3, Some(3))));
        assert_eq!(icmp_name("echo-request", true), Some((128, None)));
        assert_eq!(icmp_name("nope", false), None);
        assert_eq!(reject_with("icmp-port-unreachable", false), None);
        assert_eq!(
            reject_with("tcp-reset", false).as_deref(),
            Some("tcp reset")
        );
        assert_eq!(
            reject_with("icmp6-adm-prohibited", true).as_deref(),
            Some("icmpv6 admin-prohibited")
        );
    }
}
