//! Does one rule's match cover another's? Three-valued, so the linter never claims a rule is
//! shadowed on a guess. One implementation for every rule language: it reads the typed rule
//! model (`nfscope_ruleset::typed`), which iptables rules are lowered to and nft rules parsed to,
//! so `-p tcp --dport 80` and `tcp dport 80` are one condition and `-s 10.0.0.0/8` covers
//! `ip saddr 10.1.0.0/16`.
//!
//! Owns the split of a rule into conditions and statements ([`Shape`]), whether a rule ends its
//! chain, when its conditions can cover later rules ([`Shape::covering`]), and [`covers`]:
//! what can be reasoned about statically is addresses (addresses, prefixes, ranges and sets of
//! them, negated or not), interfaces by name (with the `*` wildcard, iptables' `+`), the layer-4
//! protocol (also the one a port, ICMP or TCP-flags key carries), ports (values, ranges, sets;
//! `th` ports of any protocol), ICMP types and codes compared for equality, and lookups in nft
//! sets only a ruleset change can change, implied by the same lookup. Everything else —
//! marks, conntrack state, dynamic sets and ipsets, `numgen`/`statistic` draws, `fib`/`addrtype`, TCP
//! flags, limits, anything unmodelled — is *unknown*: a rule carrying it never covers another
//! rule. [`Coverers`] finds the earliest covering rule of a chain without comparing every pair.
//! It does not decide what a finding says (see [`crate::checks::order`], [`crate::native`]).

use std::collections::HashMap;
use std::net::IpAddr;

use nfscope_ruleset::nft::{render_expr, render_key};
use nfscope_ruleset::typed::{
    Dir, Expr, Key, L4Proto, Match, NatAddr, NatKind, NftFamily, Op, ProtoVia, Rhs, TypedRule,
    Value, Verdict,
};

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

/// A rule split into its conditions (what it matches) and its statements (what it does).
///
/// Conditions are the matches, the stateful tests (`limit`, `quota`) and the unmodelled
/// expressions before the rule's inline counter; statements are the rest. Lowered iptables rules
/// carry that counter between the matches and the target, so an unmodelled target stays a
/// statement.
#[derive(Debug, Clone)]
pub struct Shape<'a> {
    /// Conditions, in rule order.
    pub conditions: Vec<&'a Expr>,
    /// How many of the conditions come before the first statement that rewrites the packet (NAT,
    /// payload or meta mangling): the later ones test the rewritten packet, not the one the rule
    /// was given.
    pub before_rewrite: usize,
    /// Statements, in rule order (the rule's own inline counters left out).
    pub statements: Vec<&'a Expr>,
    /// The rule ends its chain for every packet it matches (a verdict other than jump/continue, or
    /// a NAT statement).
    pub ends_chain: bool,
    /// Every statement is modelled (no unmodelled target, no mark nfscope cannot compute).
    pub statements_modelled: bool,
    /// A statement looks its outcome up in a map (a verdict map, a NAT map): a lookup that finds
    /// no element ends the rule as a failed match does, so the rule is conditional even without
    /// conditions.
    pub looks_up: bool,
}

impl<'a> Shape<'a> {
    /// The shape of `rule`.
    pub fn of(rule: &'a TypedRule) -> Self {
        let mut conditions = Vec::new();
        let mut statements = Vec::new();
        let mut seen_counter = false;
        let mut before_rewrite = None;
        for e in &rule.exprs {
            if before_rewrite.is_none() && matches!(e, Expr::Nat(_) | Expr::Mangle { .. }) {
                before_rewrite = Some(conditions.len());
            }
            match e {
                // The rule's own counter (a lowered iptables rule has one right before its
                // target); a named counter (`counter name "c"`, iptables' `-m nfacct`) is a
                // statement like any other.
                Expr::Counter { name: None, .. } => seen_counter = true,
                Expr::Match(_) | Expr::Stateful { .. } => conditions.push(e),
                Expr::Unmodelled { .. } if !seen_counter => conditions.push(e),
                _ => statements.push(e),
            }
        }
        let ends_chain = statements.iter().any(|e| match e {
            Expr::Verdict(v) => matches!(
                v,
                Verdict::Accept
                    | Verdict::Drop
                    | Verdict::Reject { .. }
                    | Verdict::Return
                    | Verdict::Goto(_)
                    | Verdict::Queue { .. }
            ),
            Expr::Nat(n) => n.kind != NatKind::Tproxy,
            _ => false,
        });
        let statements_modelled = statements.iter().all(|e| {
            !matches!(
                e,
                Expr::Unmodelled { .. }
                    | Expr::SetMark {
                        value: nfscope_ruleset::typed::MarkValue::Other(_),
                        ..
                    }
            )
        });
        // A NAT value nfscope does not type (a port map in `nft -j` JSON) may be a lookup too.
        let looks_up = statements.iter().any(|e| match e {
            Expr::Vmap { .. } => true,
            Expr::Nat(n) => {
                matches!(
                    n.addr,
                    Some(NatAddr::Map { .. } | NatAddr::Value(Value::Other(_)))
                ) || matches!(n.port, Some(Value::Other(_)))
            }
            _ => false,
        });
        Self {
            before_rewrite: before_rewrite.unwrap_or(conditions.len()),
            conditions,
            statements,
            ends_chain,
            statements_modelled,
            looks_up,
        }
    }

    /// No condition and no lookup at all: the rule matches every packet.
    pub fn matches_everything(&self) -> bool {
        self.conditions.is_empty() && !self.looks_up
    }

    /// The conditions when the rule can cover later rules: it ends the chain, every statement is
    /// modelled, and every condition is a plain match whose truth cannot change along the chain
    /// and that [`covers`] can reason about (see the module text). `None` otherwise.
    pub fn covering(&self) -> Option<Vec<&'a Match>> {
        self.covering_with(|_| false)
    }

    /// [`Shape::covering`], where a lookup in a named set that `is_static` says only a ruleset
    /// change can change (an nft set without `dynamic`/`timeout`; never an ipset, which `-j SET`
    /// and `ipset add` change) also counts, as the same lookup in the later rule implies it.
    pub fn covering_with(&self, is_static: impl Fn(&str) -> bool) -> Option<Vec<&'a Match>> {
        if !self.ends_chain
            || !self.statements_modelled
            || self.looks_up
            || self.before_rewrite < self.conditions.len()
        {
            return None;
        }
        self.conditions
            .iter()
            .map(|e| match e {
                Expr::Match(m) if decidable(m) => Some(m),
                Expr::Match(m) if static_lookup(m, &is_static) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// The plain matches among the conditions that test the packet as the rule was given it
    /// (what a covering rule is compared with).
    pub fn matches(&self) -> Vec<&'a Match> {
        self.conditions[..self.before_rewrite]
            .iter()
            .filter_map(|e| match e {
                Expr::Match(m) => Some(m),
                _ => None,
            })
            .collect()
    }
}

/// What [`covers`] can decide a condition of: its key kind is modelled, its operator is one the
/// kind supports, and it compares with literals (not a named set).
fn decidable(m: &Match) -> bool {
    if let Rhs::SetRef(_) = m.rhs {
        return false;
    }
    match &m.key {
        Key::Addr { .. } | Key::Port { .. } | Key::L4Proto { .. } => {
            matches!(m.op, Op::Eq | Op::Ne)
        }
        Key::Iface { by_name: true, .. } => matches!(m.op, Op::Eq | Op::Ne),
        Key::Icmp { .. } => m.op == Op::Eq,
        _ => false,
    }
}

/// A lookup in a static named set, of a key read from the packet as given (no mark, no draw).
fn static_lookup(m: &Match, is_static: impl Fn(&str) -> bool) -> bool {
    fn stable(key: &Key) -> bool {
        match key {
            Key::Meta(nfscope_ruleset::typed::MetaKey::Mark)
            | Key::Ct {
                key: nfscope_ruleset::typed::CtKey::Mark,
                ..
            }
            | Key::Numgen { .. }
            | Key::Hash(_) => false,
            Key::Masked { key, .. } => stable(key),
            Key::Concat(keys) => keys.iter().all(stable),
            _ => true,
        }
    }
    matches!(&m.rhs, Rhs::SetRef(name) if is_static(name))
        && matches!(m.op, Op::Eq | Op::Ne)
        && stable(&m.key)
}

/// Does every packet that matches all of `later` also match all of `earlier`? `Yes` only when
/// provable; `No` when some condition of `earlier` is provably not implied; else `Unknown`.
/// `family` is the table's (an `ip protocol` test is implied by a port key only in `ip` tables).
pub fn covers(earlier: &[&Match], later: &[&Match], family: NftFamily) -> Tri {
    earlier
        .iter()
        .fold(Tri::Yes, |acc, e| acc.and(implied(e, later, family)))
}

/// Is condition `e` implied by the conditions `later`? (A set lookup reaches here only from
/// [`Shape::covering_with`], which admits static sets alone: the same lookup implies it.)
fn implied(e: &Match, later: &[&Match], family: NftFamily) -> Tri {
    if let Rhs::SetRef(_) = e.rhs {
        return if later.contains(&e) {
            Tri::Yes
        } else {
            Tri::Unknown
        };
    }
    match &e.key {
        Key::Addr { v6, dir } => addr_implied(e, *v6, *dir, later),
        Key::Iface {
            dir, by_name: true, ..
        } => iface_implied(e, *dir, later),
        Key::L4Proto { via } => protocol_implied(e, *via, later, family),
        Key::Port { proto, dir } => port_implied(e, *proto, *dir, later),
        Key::Icmp { .. } => Tri::from_bool(later.contains(&e)),
        _ => Tri::Unknown,
    }
    .or_unknown_for(e)
}

impl Tri {
    /// Conditions [`decidable`] refuses are unknown whatever the comparison said.
    fn or_unknown_for(self, e: &Match) -> Self {
        if decidable(e) { self } else { Self::Unknown }
    }
}

/// Inclusive intervals of one kind of scalar (addresses as 128-bit numbers, ports).
type Intervals = Vec<(u128, u128)>;

/// The values of a right-hand side as intervals; `None` when one is not a literal of the kind
/// `one` reads.
fn intervals(rhs: &Rhs, one: impl Fn(&Value) -> Option<(u128, u128)>) -> Option<Intervals> {
    match rhs {
        Rhs::Values(vals) if vals.len() == 1 => one(&vals[0]).map(|i| vec![i]),
        Rhs::Anon(elems) => elems
            .iter()
            .map(|e| e.data.is_none().then(|| one(&e.key)).flatten())
            .collect(),
        _ => None,
    }
}

fn subset(inner: &Intervals, outer: &Intervals) -> bool {
    inner
        .iter()
        .all(|&(lo, hi)| outer.iter().any(|&(ol, oh)| ol <= lo && hi <= oh))
}

fn disjoint(a: &Intervals, b: &Intervals) -> bool {
    a.iter()
        .all(|&(lo, hi)| b.iter().all(|&(bl, bh)| hi < bl || bh < lo))
}

/// Set semantics shared by addresses and ports: `earlier` (`==`/`!=` a set E) is implied by a
/// later condition on the same key: `== L` with L ⊆ E (or, for `!=`, L disjoint from E), or
/// `!= L` with E ⊆ L when `earlier` is `!=`.
fn set_implied<'m>(
    e: &Match,
    later: impl Iterator<Item = &'m Match>,
    one: impl Fn(&Value) -> Option<(u128, u128)> + Copy,
) -> Tri {
    let Some(wanted) = intervals(&e.rhs, one) else {
        return Tri::Unknown;
    };
    let mut found = false;
    for l in later {
        let Some(got) = intervals(&l.rhs, one) else {
            continue;
        };
        found |= match (e.op, l.op) {
            (Op::Eq, Op::Eq) => subset(&got, &wanted),
            (Op::Ne, Op::Eq) => disjoint(&got, &wanted),
            (Op::Ne, Op::Ne) => subset(&wanted, &got),
            _ => false,
        };
    }
    Tri::from_bool(found)
}

/// An address, prefix or address range as (first, last) of one family (`v6`).
fn addr_interval(v: &Value, v6: bool) -> Option<(u128, u128)> {
    let bits = |a: &IpAddr| match a {
        IpAddr::V4(a) if !v6 => Some(u128::from(u32::from(*a))),
        IpAddr::V6(a) if v6 => Some(u128::from(*a)),
        _ => None,
    };
    let width = if v6 { 128 } else { 32 };
    match v {
        Value::Addr(a) => bits(a).map(|b| (b, b)),
        Value::Prefix(a, len) if u32::from(*len) <= width => {
            let host = if u32::from(*len) == width {
                0
            } else {
                (u128::MAX >> (128 - width)) >> len
            };
            bits(a).map(|b| (b & !host, b | host))
        }
        Value::Range(a, b) => match (&**a, &**b) {
            (Value::Addr(a), Value::Addr(b)) => Some((bits(a)?, bits(b)?)),
            _ => None,
        },
        _ => None,
    }
}

fn addr_implied(e: &Match, v6: bool, dir: Dir, later: &[&Match]) -> Tri {
    let same = later
        .iter()
        .copied()
        .filter(|l| l.key == (Key::Addr { v6, dir }));
    set_implied(e, same, |v| addr_interval(v, v6))
}

fn port_interval(v: &Value) -> Option<(u128, u128)> {
    match v {
        Value::Int(p) if *p <= 0xffff => Some((u128::from(*p), u128::from(*p))),
        Value::Range(a, b) => match (&**a, &**b) {
            (Value::Int(a), Value::Int(b)) if a <= b && *b <= 0xffff => {
                Some((u128::from(*a), u128::from(*b)))
            }
            _ => None,
        },
        _ => None,
    }
}

fn port_implied(e: &Match, proto: Option<L4Proto>, dir: Dir, later: &[&Match]) -> Tri {
    if let Some(p) = proto
        && !later_protocols(later).any(|n| n == p.number())
    {
        return Tri::No;
    }
    let same = later.iter().copied().filter(|l| match &l.key {
        Key::Port { proto: lp, dir: ld } => *ld == dir && (proto.is_none() || *lp == proto),
        _ => false,
    });
    set_implied(e, same, port_interval)
}

/// Interface names a later condition restricts the packet to, compared with `*` as a trailing
/// wildcard (iptables' `+`).
fn iface_implied(e: &Match, dir: nfscope_ruleset::typed::IfaceDir, later: &[&Match]) -> Tri {
    let name = |m: &Match| match &m.rhs {
        Rhs::Values(v) if v.len() == 1 => match &v[0] {
            Value::Str(s) if !s.ends_with("\\*") => Some(s.clone()),
            _ => None,
        },
        _ => None,
    };
    let Some(wanted) = name(e) else {
        return Tri::Unknown;
    };
    let found = later
        .iter()
        .filter(|l| l.key == (Key::Iface { dir, by_name: true }))
        .filter_map(|l| name(l).map(|n| (l.op, n)))
        .any(|(op, got)| match (e.op, op) {
            (Op::Eq, Op::Eq) => iface_subset(&got, &wanted),
            (Op::Ne, Op::Eq) => iface_disjoint(&got, &wanted),
            (Op::Ne, Op::Ne) => iface_subset(&wanted, &got),
            _ => false,
        });
    Tri::from_bool(found)
}

/// Is every name `inner` matches also matched by `outer`?
fn iface_subset(inner: &str, outer: &str) -> bool {
    match (inner.strip_suffix('*'), outer.strip_suffix('*')) {
        (_, Some(prefix)) => inner.trim_end_matches('*').starts_with(prefix),
        (None, None) => inner == outer,
        (Some(_), None) => false,
    }
}

fn iface_disjoint(a: &str, b: &str) -> bool {
    match (a.strip_suffix('*'), b.strip_suffix('*')) {
        (None, None) => a != b,
        (Some(p), None) => !b.starts_with(p),
        (None, Some(p)) => !a.starts_with(p),
        (Some(p), Some(q)) => !p.starts_with(q) && !q.starts_with(p),
    }
}

/// A protocol value as its number (`tcp` = 6, `ipv6-icmp` = 58).
fn protocol_number(v: &Value) -> Option<u8> {
    match v {
        Value::Int(n) => u8::try_from(*n).ok(),
        Value::Sym(s) => Some(match s.as_str() {
            "icmp" => 1,
            "ipencap" => 4,
            "tcp" => 6,
            "udp" => 17,
            "gre" => 47,
            "esp" => 50,
            "ah" => 51,
            "icmpv6" | "ipv6-icmp" => 58,
            "sctp" => 132,
            "udplite" => 136,
            "dccp" => 33,
            other => return L4Proto::parse(other).map(L4Proto::number),
        }),
        _ => None,
    }
}

/// The layer-4 protocols the later conditions pin the packet to: `== P` tests and the protocol
/// a port, ICMP or TCP-flags key reads.
fn later_protocols<'l>(later: &'l [&'l Match]) -> impl Iterator<Item = u8> + 'l {
    later.iter().filter_map(|l| match (&l.key, l.op, &l.rhs) {
        (Key::L4Proto { .. }, Op::Eq, Rhs::Values(v)) if v.len() == 1 => protocol_number(&v[0]),
        (Key::Port { proto: Some(p), .. }, ..) => Some(p.number()),
        (Key::Icmp { v6, .. }, ..) => Some(if *v6 { 58 } else { 1 }),
        (Key::TcpFlags, ..) => Some(6),
        (Key::Masked { key, .. }, ..) if **key == Key::TcpFlags => Some(6),
        _ => None,
    })
}

fn protocol_implied(e: &Match, via: ProtoVia, later: &[&Match], family: NftFamily) -> Tri {
    let Rhs::Values(v) = &e.rhs else {
        return Tri::Unknown;
    };
    let [value] = v.as_slice() else {
        return Tri::Unknown;
    };
    let Some(p) = protocol_number(value) else {
        return Tri::Unknown;
    };
    // `ip protocol` also means IPv4; `ip6 nexthdr` reads the first header only.
    let reads_alike = |l: &Match| match (&l.key, via) {
        (Key::L4Proto { via: lv }, _) => {
            *lv == via
                || (via != ProtoVia::Ip6Nexthdr
                    && *lv != ProtoVia::Ip6Nexthdr
                    && (family != NftFamily::Inet || via == ProtoVia::Meta))
        }
        _ => via != ProtoVia::Ip6Nexthdr && (family != NftFamily::Inet || via == ProtoVia::Meta),
    };
    let mut found = false;
    for l in later.iter().filter(|l| reads_alike(l)) {
        let single = std::slice::from_ref(l);
        let got = match (&l.key, l.op) {
            (Key::L4Proto { .. }, Op::Ne) => match &l.rhs {
                Rhs::Values(v) if v.len() == 1 => protocol_number(&v[0]).map(|n| (false, n)),
                _ => None,
            },
            _ => later_protocols(single).next().map(|n| (true, n)),
        };
        let Some((eq, n)) = got else { continue };
        found |= match (e.op, eq) {
            (Op::Eq, true) => n == p,
            (Op::Ne, true) => n != p,
            (Op::Ne, false) => n == p,
            _ => false,
        };
    }
    Tri::from_bool(found)
}

/// A condition's key as one name, for bucketing coverers: every protocol test is `l4proto`, as
/// port, ICMP and TCP-flags keys imply one.
fn key_name(m: &Match) -> String {
    match &m.key {
        Key::L4Proto { .. } => "l4proto".to_owned(),
        // A `th` port is implied by a port of any protocol.
        Key::Port { dir, .. } => format!("port {dir:?}"),
        k => render_key(k),
    }
}

/// The key names a rule with these conditions offers a coverer (protocols implied by keys too).
fn offered_names(conds: &[&Match]) -> Vec<String> {
    let mut names: Vec<String> = conds.iter().map(|m| key_name(m)).collect();
    if later_protocols(conds).next().is_some() {
        names.push("l4proto".to_owned());
    }
    names.sort();
    names.dedup();
    names
}

/// Coverers with at most this many distinct keys are found by looking up the candidate's key
/// subsets of that size (so a chain is linted in time linear in its rules when coverers differ
/// in their keys); larger ones, rare, are scanned.
const SMALL_COVER: usize = 3;

/// The earlier covering rules of one chain, bucketed by the keys their conditions test: a rule
/// can only be covered by one whose keys it tests too.
#[derive(Default)]
pub struct Coverers<'a> {
    /// Sorted key names joined by NUL → (rule index, conditions), in rule order.
    small: HashMap<String, Vec<(usize, Vec<&'a Match>)>>,
    /// (rule index, key names, conditions) of coverers with more than [`SMALL_COVER`] keys.
    large: Vec<(usize, Vec<String>, Vec<&'a Match>)>,
}

impl<'a> Coverers<'a> {
    /// Adds rule `r` (later than every rule added so far) with its covering conditions.
    pub fn add(&mut self, r: usize, conds: Vec<&'a Match>) {
        let names = offered_keys(&conds);
        if names.len() <= SMALL_COVER {
            self.small
                .entry(names.join("\0"))
                .or_default()
                .push((r, conds));
        } else {
            self.large.push((r, names, conds));
        }
    }

    /// The earliest coverer that [`covers`] the conditions `later` (`Yes`).
    pub fn first_covering(&self, later: &[&Match], family: NftFamily) -> Option<usize> {
        let mine = offered_names(later);
        let mut best: Option<usize> = None;
        let mut scan = |bucket: &[(usize, Vec<&Match>)]| {
            for (r, conds) in bucket {
                if best.is_some_and(|b| b <= *r) {
                    break;
                }
                if covers(conds, later, family) == Tri::Yes {
                    best = Some(*r);
                    break;
                }
            }
        };
        let k = mine.len();
        let mut keys = Vec::new();
        for a in 0..k {
            keys.push(mine[a].clone());
            for b in a + 1..k {
                keys.push([mine[a].as_str(), mine[b].as_str()].join("\0"));
                // Triples only for rules of ordinary size (k ≤ 24: at most 2,024 lookups).
                for c in (b + 1..k).take_while(|_| k <= 24) {
                    keys.push([mine[a].as_str(), mine[b].as_str(), mine[c].as_str()].join("\0"));
                }
            }
        }
        for key in &keys {
            if let Some(bucket) = self.small.get(key) {
                scan(bucket);
            }
        }
        for (r, names, conds) in &self.large {
            if best.is_some_and(|b| b <= *r) {
                break;
            }
            if names.iter().all(|n| mine.binary_search(n).is_ok())
                && covers(conds, later, family) == Tri::Yes
            {
                best = Some(*r);
                break;
            }
        }
        best
    }
}

/// The key names of a coverer's own conditions, sorted and deduplicated.
fn offered_keys(conds: &[&Match]) -> Vec<String> {
    let mut names: Vec<String> = conds.iter().map(|m| key_name(m)).collect();
    names.sort();
    names.dedup();
    names
}

/// A condition as canonical text (the duplicate keys of [`crate::canon`] are built from these).
pub fn condition_text(e: &Expr) -> String {
    render_expr(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfscope_ruleset::{Family, ParseOptions, parse_ruleset};

    /// The two rules of chain `X` in a filter table built from `a` and `b`, lowered.
    fn pair(a: &str, b: &str) -> (TypedRule, TypedRule) {
        let text = format!("*filter\n:X - [0:0]\n-A X {a}\n-A X {b}\nCOMMIT\n");
        let rs = parse_ruleset(&text, &ParseOptions::default()).unwrap();
        let rules = &rs.tables[0].chain("X").unwrap().rules;
        (
            rules[0].typed(Family::Ipv4, 1),
            rules[1].typed(Family::Ipv4, 2),
        )
    }

    /// Does `a`'s match cover `b`'s, as the shadowing check asks (`Unknown` when `a` cannot
    /// cover at all)?
    fn check(a: &str, b: &str) -> Tri {
        let (a, b) = pair(a, b);
        let Some(earlier) = Shape::of(&a).covering() else {
            return Tri::Unknown;
        };
        covers(&earlier, &Shape::of(&b).matches(), NftFamily::Ip)
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
        // The protocol a port key carries implies `-p`.
        assert_eq!(
            check("-p tcp -j DROP", "-p tcp -m tcp --dport 22 -j ACCEPT"),
            Tri::Yes
        );
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

    #[test]
    fn a_test_after_a_rewrite_is_not_the_packet_the_rule_was_given() {
        let rs = nfscope_ruleset::parse_nft_text(
            "table ip t {\n\tchain c {\n\t\tip daddr 10.0.0.0/8 accept\n\t\tip daddr set 10.0.0.1 ip daddr 10.0.0.1 accept\n\t\tip daddr 10.0.0.1 ip daddr set 10.9.9.9 ip daddr 10.9.9.9 accept\n\t}\n}\n",
            &nfscope_ruleset::NftLimits::default(),
        )
        .unwrap();
        let rules = &rs.tables[0].chains[0].rules;
        let first = Shape::of(&rules[0]).covering().expect("covering");
        let (second, third) = (Shape::of(&rules[1]), Shape::of(&rules[2]));
        assert!(second.matches().is_empty(), "{:?}", rules[1].exprs);
        assert_eq!(covers(&first, &second.matches(), NftFamily::Ip), Tri::No);
        assert_eq!(covers(&first, &third.matches(), NftFamily::Ip), Tri::Yes);
        assert!(third.covering().is_none(), "it tests after rewriting");
    }

    #[test]
    fn iptables_and_nft_spellings_are_one_condition() {
        let rs = nfscope_ruleset::parse_nft_text(
            "table ip t {\n\tchain c {\n\t\tip saddr 10.0.0.0/8 meta l4proto tcp drop\n\t\tiifname \"eth*\" drop\n\t}\n}\n",
            &nfscope_ruleset::NftLimits::default(),
        )
        .unwrap();
        let rules = &rs.tables[0].chains[0].rules;
        let (ipt, _) = pair(
            "-s 10.1.2.0/24 -p tcp -m tcp --dport 22 -i eth1 -j ACCEPT",
            "-j DROP",
        );
        let later = Shape::of(&ipt).matches();
        for r in rules {
            let earlier = Shape::of(r).covering().expect("covering");
            assert_eq!(
                covers(&earlier, &later, NftFamily::Ip),
                Tri::Yes,
                "{}",
                r.text
            );
        }
    }
}
