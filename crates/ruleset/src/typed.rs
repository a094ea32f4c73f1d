//! The typed rule model: one representation of what a netfilter rule *does*, whichever language
//! it was written in.
//!
//! Owns [`NftRuleset`] → [`NftTable`] → [`NftChain`] / [`NftSetDef`] → [`TypedRule`] → [`Expr`],
//! with matches split into a typed [`Key`] (what is read from the packet or its connection), an
//! [`Op`] and a typed right-hand side ([`Rhs`]: literal [`Value`]s, an anonymous set, or a named
//! set `@name`), and statements as typed variants (verdicts, NAT, marks, counters, log, …).
//! Anything the model does not know stays in the rule as [`Expr::Unmodelled`] with its text: it is
//! never dropped, so an evaluator can answer MAY instead of a confident wrong verdict.
//!
//! It does not own parsing (`crate::nft` for nft text and JSON; the iptables-save parser in
//! `crate::parse` builds the string model of `crate::model`, which `crate::lower` lowers to this
//! one) or rendering (`crate::nft`).
//!
//! # One form per meaning (how iptables lowers to this model)
//! [`crate::lower`] ([`crate::Ruleset::lower`], [`crate::Rule::typed`]) lowers iptables constructs
//! to the same forms nft's own are parsed to, so the tracer and the linter can evaluate one thing.
//! The oracle is nft's translator: **7162 of 9080 corpus rules lower identically to
//! `iptables-translate`** (1822 it cannot translate, mostly anonymised MAC addresses; the other 96
//! are its own defects or constructs neither side types; `tests/lower.rs` names each kind).
//! Every lowered rule carries a `counter` before its target, as iptables counts every rule.
//!
//! | iptables | nft | typed form |
//! |---|---|---|
//! | `-p tcp --dport 80` | `tcp dport 80` | one `Match { key: Port { proto: Some(Tcp), dir: Dst }, op: Eq, rhs: [Int(80)] }`: the protocol the port needs is part of the key, so `-p tcp` is not lowered separately when a tcp port match follows (nft lists its own dependency the same way) |
//! | `-p tcp -m multiport --dports 80,443` | `tcp dport { 80, 443 }` | same key, `rhs: Anon([80, 443])` |
//! | `-p udp` | `meta l4proto udp` / `ip protocol udp` | `Key::L4Proto { via }`, `rhs: [Sym("udp")]` |
//! | `-s 10.0.0.0/8`, `! -d 1.2.3.4` | `ip saddr 10.0.0.0/8`, `ip daddr != 1.2.3.4` | `Key::Addr { v6: false, dir }`, `Op::Ne` for `!` |
//! | `-i veth+` | `iifname "veth*"` | `Key::Iface { dir: In, by_name: true }`, `Value::Str("veth*")` (a trailing `*` is a prefix match, iptables' `+`) |
//! | `-m conntrack --ctstate NEW` | `ct state new` | `Key::Ct { dir: None, key: State }`, `Op::Implicit` (bitmask membership) |
//! | `-m mark --mark 0x4000/0x4000` | `meta mark & 0x4000 == 0x4000` | `Key::Masked { key: Meta(Mark), op: And, value: 0x4000 }`, `Op::Eq` |
//! | `-m set --match-set S dst,dst` | `ip daddr . tcp dport @S` | `Key::Concat([...])`, `Rhs::SetRef("S")` |
//! | `-m addrtype --dst-type LOCAL` | `fib daddr type local` | `Key::Fib { flags: ["daddr"], result: "type" }`, `rhs: [Sym("local")]` |
//! | `-m statistic --mode random --probability p` | `numgen random mod N vmap {…}` | `Key::Numgen` in [`Expr::Vmap`] (branch chances from [`numgen_branches`]); a statistic rule lowers to `Match { key: Numgen { random: true, modulus: 2^31, offset: 0 }, op: Lt, rhs: [Int(p·2^31)] }`, nft's own translation `meta random & 0x7fffffff < T` |
//! | `-j MARK --or-mark 0x4000` | `meta mark set meta mark \| 0x4000` | [`Expr::SetMark`] `{ target: Meta, value: Or(0x4000) }` |
//! | `-j DNAT --to-destination A:P` | `dnat to A:P` | [`Expr::Nat`] `{ kind: Dnat, addr, port }` |
//! | `-j MASQUERADE --random-fully` | `masquerade fully-random` | [`Expr::Nat`] `{ kind: Masquerade, flags: ["fully-random"] }` |
//! | `-j REJECT --reject-with tcp-reset` | `reject with tcp reset` | [`Verdict::Reject`] |
//! | `-j ACCEPT/DROP/RETURN`, `-j CHAIN`, `-g CHAIN` | `accept`/`drop`/`return`/`jump`/`goto` | [`Verdict`] |
//! | `-m limit`, `-m quota`, `-m connlimit` | `limit`, `quota`, `ct count` | [`Expr::Stateful`] (not modelled: MAY) |
//! | `-j NOTRACK`, `-j CT --notrack` | `notrack` | [`Expr::Notrack`] |
//! | `-j CONNMARK --save-mark --nfmask N --ctmask C` | (none; `ct mark set meta mark` when both are all ones) | [`Expr::SetMark`] `{ target: Ct, value: Copy { key: meta mark, mask: N, clear: C } }` |
//! | `-j NETMAP --to 10.0.0.0/24` | (none; `dnat ip prefix to …` with the direction written) | [`Expr::Nat`] `{ kind: Netmap, addr: Prefix }`: the direction is the hook's |
//! | `-j TPROXY --on-port P --tproxy-mark V/M` | `tproxy to :P meta mark set … accept` | [`Expr::Nat`] `{ kind: Tproxy }`, [`Expr::SetMark`], [`Verdict::Accept`] (iptables' TPROXY drops when no socket is found) |
//! | `-f` | `ip frag-off & 0x1fff != 0` | `Key::Masked { key: Payload { ip, frag-off }, op: And, value: 0x1fff }`, `Op::Ne`, `[Int(0)]` |
//! | `-m conntrack --ctstate ESTABLISHED,DNAT` | (none) | `Key::Ct { key: XtState }`, `Op::Implicit`: one mask over states and NAT status ([`CtKey::XtState`]); without SNAT/DNAT it is `ct state` |
//! | `-m physdev --physdev-in veth+`, `--physdev-is-bridged` | (none) | [`Key::Physdev`] `{ dir: Some(In) }` = `"veth*"`, `{ dir: None }` = `"*"` |
//! | `-m multiport --ports 80` | `tcp sport . tcp dport { 0-65535 . 80, 80 . 0-65535 }` | `Key::Concat([Port(Src), Port(Dst)])`, `Rhs::Anon` of those two elements |
//! | `-m owner --socket-exists` | `meta skuid >= 0` | `Key::Meta(Skuid)`, `Op::Ge`, `[Int(0)]` |
//! | `-m policy --dir in --pol none` | `meta secpath missing` (`--dir out`: `rt ipsec missing`) | `Key::Meta(Other("secpath"))`, `[Sym("missing")]` |
//! | `-m nfacct --nfacct-name N` | (none) | [`Expr::Counter`] `{ name: Some(N) }` among the matches |
//! | `--icmp-type any`, `! --icmp-type 3/3` | `icmp type 0-255`, `icmp type . icmp code != 3 . 3` | `Key::Icmp` range; a concatenation for a negated type and code |
//!
//! # Reading the model (for evaluators)
//! - Expressions run left to right; a [`Expr::Match`] that fails ends the rule (next rule).
//!   [`Op::Ne`] negates a value or set membership; [`Op::Implicit`] is a bitmask "any of".
//! - [`Expr::Vmap`] (and a NAT map) with no matching element ends the rule, as the kernel's failed
//!   lookup does (`NFT_BREAK`: next rule); `numgen` keys pick a
//!   branch with the chances [`numgen_branches`] gives. `@name` refers to a set or map of the
//!   same table ([`NftTable::set`]); a dynamic set ([`NftSetDef::is_dynamic`]) is a snapshot, so
//!   its lookups are MAY.
//! - Interface names compare with [`iface_name_matches`] (`*` suffix wildcard).
//! - [`Expr::Stateful`], [`Expr::Unmodelled`] and marks set to values nfscope cannot compute make
//!   [`TypedRule::fully_modelled`] false: such a rule's outcome is MAY, never a pass or a fail.
//! - Base chains run per hook in [`BaseChain::priority`] order (lower first); NAT chains only for a
//!   connection's first packet (NFTABLES.md §1).

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::model::Counters;

/// A whole native nftables ruleset (`nft list ruleset`), tables in listing order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NftRuleset {
    /// Tables in the order the listing shows them.
    pub tables: Vec<NftTable>,
    /// `#` comment lines outside tables, e.g. nft's `# Warning: table ip filter is managed by
    /// iptables-nft, do not touch!` when it was captured with the listing: never dropped.
    pub notices: Vec<String>,
}

impl NftRuleset {
    /// Number of rules in every table and chain.
    pub fn rule_count(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| &t.chains)
            .map(|c| c.rules.len())
            .sum()
    }

    /// Every rule with its table and chain.
    pub fn rules(&self) -> impl Iterator<Item = (&NftTable, &NftChain, &TypedRule)> {
        self.tables.iter().flat_map(|t| {
            t.chains
                .iter()
                .flat_map(move |c| c.rules.iter().map(move |r| (t, c, r)))
        })
    }

    /// The parts every dump format carries: source lines and notices cleared, symbolic
    /// priorities forgotten (JSON prints numbers only), so a text dump and a JSON dump of one
    /// ruleset compare equal.
    pub fn normalised(&self) -> Self {
        let mut rs = self.clone();
        rs.notices.clear();
        for t in &mut rs.tables {
            t.line = 0;
            for s in &mut t.sets {
                s.line = 0;
            }
            for c in &mut t.chains {
                c.line = 0;
                if let Some(b) = c.base.as_mut() {
                    b.priority_text = None;
                }
                for r in &mut c.rules {
                    r.line = 0;
                }
            }
        }
        rs
    }

    /// The table of this family and name.
    pub fn table(&self, family: NftFamily, name: &str) -> Option<&NftTable> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name == name)
    }
}

/// nftables address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NftFamily {
    /// IPv4 (`ip`, the default when a listing names no family).
    Ip,
    /// IPv6.
    Ip6,
    /// IPv4 and IPv6 (`meta nfproto` tells which).
    Inet,
    /// ARP.
    Arp,
    /// Bridged frames.
    Bridge,
    /// Per-device ingress/egress.
    Netdev,
}

impl NftFamily {
    /// The nft keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Ip6 => "ip6",
            Self::Inet => "inet",
            Self::Arp => "arp",
            Self::Bridge => "bridge",
            Self::Netdev => "netdev",
        }
    }

    /// Parses an nft family keyword.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ip" => Self::Ip,
            "ip6" => Self::Ip6,
            "inet" => Self::Inet,
            "arp" => Self::Arp,
            "bridge" => Self::Bridge,
            "netdev" => Self::Netdev,
            _ => return None,
        })
    }
}

impl fmt::Display for NftFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One table: its sets and maps, chains, and objects the model does not type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTable {
    /// Family.
    pub family: NftFamily,
    /// Name.
    pub name: String,
    /// Kernel handle (`nft -a`, JSON).
    pub handle: Option<u64>,
    /// `comment "…"`.
    pub comment: Option<String>,
    /// `flags dormant` etc.
    pub flags: Vec<String>,
    /// Named sets and maps, in listing order.
    pub sets: Vec<NftSetDef>,
    /// Chains, in listing order.
    pub chains: Vec<NftChain>,
    /// Stateful objects and other table members kept as text (named counters, quotas, limits,
    /// flowtables, ct helpers, …).
    pub objects: Vec<NftObject>,
    /// 1-based source line of the `table` keyword (0 when not from text).
    pub line: usize,
}

impl NftTable {
    /// The chain of this name.
    pub fn chain(&self, name: &str) -> Option<&NftChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The set or map of this name.
    pub fn set(&self, name: &str) -> Option<&NftSetDef> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// A table member the model keeps as text (`counter NAME { … }`, `flowtable`, `ct helper`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftObject {
    /// The kind keyword(s), e.g. `counter`, `quota`, `flowtable`, `ct helper`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its body as listed, normalised to single spaces (text input) or its JSON (JSON input).
    pub text: String,
}

/// A chain, base or regular.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftChain {
    /// Name (may contain `/ . - _`).
    pub name: String,
    /// Kernel handle.
    pub handle: Option<u64>,
    /// `comment "…"`.
    pub comment: Option<String>,
    /// Hook registration; `None` for a regular chain (reached only by jump/goto/vmap).
    pub base: Option<BaseChain>,
    /// Rules in order; `rules[i].position == i + 1`.
    pub rules: Vec<TypedRule>,
    /// 1-based source line of the `chain` keyword (0 when not from text).
    pub line: usize,
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseChain {
    /// `filter`, `nat` or `route`.
    pub kind: ChainType,
    /// The hook.
    pub hook: Hook,
    /// Priority as a number (symbolic names resolved per family and hook, as nft does).
    pub priority: i32,
    /// The priority as written when it was symbolic (`dstnat - 10`); `None` for a plain number.
    pub priority_text: Option<String>,
    /// `policy accept|drop`; `None` when not listed (the kernel default is accept).
    pub policy: Option<Policy>,
    /// Devices for netdev (and inet ingress) chains.
    pub devices: Vec<String>,
}

/// Chain type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    /// Filtering, every family and hook.
    Filter,
    /// NAT: consulted only for a connection's first packet.
    Nat,
    /// Output re-routing when the packet changed.
    Route,
}

impl ChainType {
    /// The nft keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Nat => "nat",
            Self::Route => "route",
        }
    }

    /// Parses the nft keyword.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "filter" => Self::Filter,
            "nat" => Self::Nat,
            "route" => Self::Route,
            _ => return None,
        })
    }
}

/// Netfilter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// netdev/inet ingress (before prerouting).
    Ingress,
    /// Prerouting.
    Prerouting,
    /// Input.
    Input,
    /// Forward.
    Forward,
    /// Output.
    Output,
    /// Postrouting.
    Postrouting,
    /// netdev egress.
    Egress,
}

impl Hook {
    /// The nft keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Prerouting => "prerouting",
            Self::Input => "input",
            Self::Forward => "forward",
            Self::Output => "output",
            Self::Postrouting => "postrouting",
            Self::Egress => "egress",
        }
    }

    /// Parses the nft keyword.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ingress" => Self::Ingress,
            "prerouting" => Self::Prerouting,
            "input" => Self::Input,
            "forward" => Self::Forward,
            "output" => Self::Output,
            "postrouting" => Self::Postrouting,
            "egress" => Self::Egress,
            _ => return None,
        })
    }
}

/// A base chain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Accept (the default).
    Accept,
    /// Drop.
    Drop,
}

/// The numeric value of a symbolic priority name for a family and hook, as nft resolves it
/// (`src/rule.c` priority tables; NFTABLES.md §1). `None` when the name is unknown there.
pub fn standard_priority(family: NftFamily, hook: Hook, name: &str) -> Option<i32> {
    if family == NftFamily::Bridge {
        return match (name, hook) {
            ("dstnat", Hook::Prerouting) => Some(-300),
            ("filter", _) => Some(-200),
            ("out", Hook::Output) => Some(100),
            ("srcnat", Hook::Postrouting) => Some(300),
            _ => None,
        };
    }
    match name {
        "raw" => Some(-300),
        "mangle" => Some(-150),
        "dstnat" => Some(-100),
        "filter" => Some(0),
        "security" => Some(50),
        "srcnat" => Some(100),
        _ => None,
    }
}

/// A named or anonymous set's or map's declaration and elements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftSetDef {
    /// Name.
    pub name: String,
    /// `map` (or verdict map) rather than `set`.
    pub is_map: bool,
    /// Kernel handle.
    pub handle: Option<u64>,
    /// Key type: datatype names (`type ipv4_addr . inet_service`) or, for `typeof`, the keys.
    pub key: SetType,
    /// Map data type (`verdict`, `ipv4_addr . inet_service`, …); `None` for a set.
    pub data: Option<SetType>,
    /// The data are intervals (`type ipv4_addr : interval ipv4_addr`, NAT ranges).
    pub data_interval: bool,
    /// Flags: `constant`, `interval`, `timeout`, `dynamic`, …
    pub flags: Vec<String>,
    /// `timeout` as listed (e.g. `3h`), if any.
    pub timeout: Option<String>,
    /// `size`, if listed.
    pub size: Option<u64>,
    /// `comment "…"`.
    pub comment: Option<String>,
    /// Other declaration lines kept as text (`policy memory`, `auto-merge`, `gc-interval 1m`, …).
    pub extra: Vec<String>,
    /// Elements as `nft list` shows them: an interval `10.0.0.0/8` or `1-5` is one element.
    pub elements: Vec<SetElem>,
    /// 1-based source line (0 when not from text).
    pub line: usize,
}

impl NftSetDef {
    /// `dynamic` or `timeout` flags: the packet path changes the contents, so a dump is only a
    /// snapshot and a lookup answers "may".
    pub fn is_dynamic(&self) -> bool {
        self.flags.iter().any(|f| f == "dynamic" || f == "timeout")
    }

    /// A map whose data are verdicts.
    pub fn is_verdict_map(&self) -> bool {
        matches!(&self.data, Some(SetType::Types(t)) if t.len() == 1 && t[0] == "verdict")
    }
}

/// A set's key or data type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetType {
    /// `type a . b`: datatype names.
    Types(Vec<String>),
    /// `typeof ip daddr . tcp dport`: the keys whose types are meant.
    Typeof(Vec<Key>),
    /// A type the model does not read (`typeof osf name`), as text after `type`/`typeof`.
    Other(String),
}

/// One element of a set or map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetElem {
    /// The key (an address, prefix, range, concatenation, …; `*` is [`Value::CatchAll`]).
    pub key: Value,
    /// Map data: a value or a verdict.
    pub data: Option<MapData>,
    /// Per-element `comment "…"`.
    pub comment: Option<String>,
    /// Per-element `timeout`, `expires`, `counter …` as listed, normalised to single spaces.
    pub options: Vec<String>,
}

/// The data side of a map element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapData {
    /// A verdict (verdict maps).
    Verdict(Verdict),
    /// A value (NAT maps, mark maps, …).
    Value(Value),
}

/// One rule, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypedRule {
    /// Expressions and statements in evaluation order.
    pub exprs: Vec<Expr>,
    /// Kernel handle (`nft -a`, JSON).
    pub handle: Option<u64>,
    /// 1-based position in its chain, as `nft list` shows it.
    pub position: usize,
    /// `comment "…"`.
    pub comment: Option<String>,
    /// 1-based source line (0 when not from text).
    pub line: usize,
    /// Canonical nft text (what `render_rule` prints; without handle, with comment).
    pub text: String,
}

impl TypedRule {
    /// True when every expression is modelled (an evaluator can be certain): no
    /// [`Expr::Unmodelled`], no [`Expr::Stateful`], no mark set to a value nfscope cannot compute.
    pub fn fully_modelled(&self) -> bool {
        !self.exprs.iter().any(|e| {
            matches!(
                e,
                Expr::Unmodelled { .. }
                    | Expr::Stateful { .. }
                    | Expr::SetMark {
                        value: MarkValue::Other(_),
                        ..
                    }
            )
        })
    }

    /// The rule's terminal verdict, if its last statement is one.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.exprs.iter().rev().find_map(|e| match e {
            Expr::Verdict(v) => Some(v),
            _ => None,
        })
    }
}

/// One expression or statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    /// A condition: the rule continues only when it holds.
    Match(Match),
    /// `KEY vmap { k : verdict, … }` / `KEY vmap @map`: a verdict chosen by lookup.
    Vmap {
        /// The lookup key (often a concatenation or `numgen`).
        key: Key,
        /// The map.
        map: MapRef,
    },
    /// `counter [packets N bytes M]` (values when listed) or `counter name "c"`.
    Counter {
        /// Values when listed (`nft list` without `-s`).
        counters: Option<Counters>,
        /// A named counter object instead of an inline one.
        name: Option<String>,
    },
    /// `log [prefix "…"] [level …] [group N] …`.
    Log {
        /// `prefix`.
        prefix: Option<String>,
        /// `group` (NFLOG).
        group: Option<u32>,
        /// Other options as text (`level warn`, `flags all`, …).
        options: Vec<String>,
    },
    /// `limit`, `quota`, `ct count`, `last`, …: state the dump cannot show. Not modelled: an
    /// evaluator answers MAY.
    Stateful {
        /// `limit`, `quota`, `ct count`, …
        kind: String,
        /// The whole statement's text.
        text: String,
    },
    /// `notrack`: the connection is not tracked (`ct state untracked`, no NAT).
    Notrack,
    /// `meta mark set …` / `ct mark set …`.
    SetMark {
        /// Which mark.
        target: MarkTarget,
        /// The new value.
        value: MarkValue,
    },
    /// Other `meta KEY set …` / `ct KEY set …` / payload mangling, typed key, value as text.
    Mangle {
        /// What is written.
        key: Key,
        /// The value expression as nft text.
        value: String,
    },
    /// `add|update|delete @set { KEY [options] }`: packet-path set updates.
    SetUpdate {
        /// `add`, `update` or `delete`.
        op: String,
        /// The set.
        set: String,
        /// The element key.
        key: Key,
        /// Element options (`timeout 3h`, `counter`, …) as text.
        options: Vec<String>,
    },
    /// dnat/snat/masquerade/redirect/tproxy.
    Nat(Nat),
    /// A verdict statement.
    Verdict(Verdict),
    /// Anything else, kept as its text: the rule's outcome may depend on it.
    Unmodelled {
        /// The expression's text (nft syntax from text input, JSON from JSON input).
        text: String,
    },
}

/// A condition: `KEY [OP] RHS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    /// What is read.
    pub key: Key,
    /// How it is compared.
    pub op: Op,
    /// What it is compared with.
    pub rhs: Rhs,
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equality or membership (`ip daddr 1.2.3.4`, `tcp dport { 80, 443 }`, `@set`); written
    /// without operator or as `==`.
    Eq,
    /// `!=`: negation (iptables `!`).
    Ne,
    /// `<`.
    Lt,
    /// `>`.
    Gt,
    /// `<=`.
    Le,
    /// `>=`.
    Ge,
    /// Bitmask test without an operator (`ct state established,related`, `tcp flags syn`):
    /// true when any of the listed bits is set (JSON `in`).
    Implicit,
}

impl Op {
    /// The nft spelling (`""` for [`Op::Eq`] and [`Op::Implicit`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq | Self::Implicit => "",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Gt => ">",
            Self::Le => "<=",
            Self::Ge => ">=",
        }
    }
}

/// The right-hand side of a match or the key side of a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rhs {
    /// One value (an address, prefix, range, number, name, …), or several for bitmask keys
    /// (`ct state`, `ct status`, `tcp flags`): with [`Op::Implicit`] the test holds when any of
    /// the listed bits is set (`established,related`); with `==`/`!=` the values are OR'ed into
    /// one mask (`tcp flags & (syn | ack) == syn | ack`).
    Values(Vec<Value>),
    /// An anonymous set `{ a, b, 10.0.0.0/8, 1-5 }`: membership (`!=`: not a member). A
    /// one-element set is stored as [`Rhs::Values`], as newer nft lists it.
    Anon(Vec<SetElem>),
    /// A named set `@name`.
    SetRef(String),
}

/// A map used by a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapRef {
    /// Named map `@name`.
    Named(String),
    /// Anonymous map `{ k : v, … }`.
    Anon(Vec<SetElem>),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// An address.
    Addr(IpAddr),
    /// A prefix `addr/len`.
    Prefix(IpAddr, u8),
    /// An integer (ports, marks, protocol numbers, …).
    Int(u64),
    /// A quoted string (interface names; a trailing `*` is a prefix wildcard).
    Str(String),
    /// A symbolic constant (`tcp`, `established`, `local`, `echo-request`, `ssh`, …).
    Sym(String),
    /// A range `a-b` (both inclusive).
    Range(Box<Self>, Box<Self>),
    /// A concatenation `a . b . c`.
    Concat(Vec<Self>),
    /// The catch-all element `*`.
    CatchAll,
    /// A value nfscope does not type, as text.
    Other(String),
}

/// What a match or lookup reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// `ip saddr|daddr` (v6 false) or `ip6 saddr|daddr` (v6 true).
    Addr {
        /// IPv6 header.
        v6: bool,
        /// Source or destination.
        dir: Dir,
    },
    /// `tcp|udp|sctp|dccp|udplite dport|sport`, or `th dport` (proto `None`: any L4 protocol,
    /// no protocol dependency).
    Port {
        /// The transport header, implying `meta l4proto` equal to it.
        proto: Option<L4Proto>,
        /// Source or destination port.
        dir: Dir,
    },
    /// The layer-4 protocol.
    L4Proto {
        /// How it is read (`meta l4proto` skips IPv6 extension headers, `ip6 nexthdr` does not).
        via: ProtoVia,
    },
    /// `meta nfproto` (ipv4/ipv6).
    NfProto,
    /// `iif`/`oif` (ifindex) or `iifname`/`oifname` (name, `*` wildcard).
    Iface {
        /// Input or output.
        dir: IfaceDir,
        /// By name (`iifname`) rather than by index (`iif`).
        by_name: bool,
    },
    /// `meta KEY`: mark, pkttype, skuid, skgid, and other meta keys.
    Meta(MetaKey),
    /// `ct [original|reply] KEY`.
    Ct {
        /// Direction qualifier, if any.
        dir: Option<CtDir>,
        /// What is read.
        key: CtKey,
    },
    /// `icmp type|code`, `icmpv6 type|code`.
    Icmp {
        /// ICMPv6.
        v6: bool,
        /// `type` rather than `code`.
        is_type: bool,
    },
    /// `tcp flags`.
    TcpFlags,
    /// `fib FLAGS RESULT` (e.g. `fib daddr type`, `fib saddr . iif oif`).
    Fib {
        /// Tuple flags: `saddr`, `daddr`, `mark`, `iif`, `oif`.
        flags: Vec<String>,
        /// What is looked up: `type`, `oif`, `oifname`, `check`.
        result: String,
    },
    /// `numgen random|inc mod N [offset K]`: a number generator (load balancing).
    Numgen {
        /// `random` or `inc`.
        random: bool,
        /// The modulus N (values 0..N-1 plus offset).
        modulus: u32,
        /// Offset added to the value.
        offset: u32,
    },
    /// `jhash …` / `symhash …`: a hash of packet fields (uniform over its modulus), as text.
    Hash(String),
    /// Other header fields: `ip ttl`, `ip6 hoplimit`, `ether saddr`, `vlan id`, …
    Payload {
        /// Protocol keyword.
        proto: String,
        /// Field keyword.
        field: String,
    },
    /// A bitwise operation on a key: `meta mark & 0xff00`, `ct mark | 0x1`.
    Masked {
        /// The operand read.
        key: Box<Self>,
        /// `&`, `|` or `^`.
        op: BitOp,
        /// The constant.
        value: u64,
    },
    /// A concatenation `a . b . c`.
    Concat(Vec<Self>),
    /// iptables' `-m physdev`: the bridge port a bridged packet entered by (`dir: In`,
    /// `--physdev-in`) or leaves by (`Out`, `--physdev-out`), compared by name like `iifname`
    /// (`"*"` for `--physdev-is-in`/`--physdev-is-out`); `dir: None` is the bridge itself
    /// (`--physdev-is-bridged`, compared with `"*"`). A routed packet has none of them. nft has no
    /// such key (its `meta ibrname` is the bridge's name, not the port): only lowering makes it.
    /// The kernel's physdev match holds for a packet without the field when the option is negated.
    Physdev {
        /// Which port; `None`: whether the packet is bridged at all.
        dir: Option<IfaceDir>,
    },
}

/// Source or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Source address/port.
    Src,
    /// Destination address/port.
    Dst,
}

/// Interface direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IfaceDir {
    /// Input interface.
    In,
    /// Output interface.
    Out,
}

/// Layer-4 protocols with port fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
    /// DCCP (33).
    Dccp,
    /// UDP-Lite (136).
    Udplite,
}

impl L4Proto {
    /// The nft keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
            Self::Dccp => "dccp",
            Self::Udplite => "udplite",
        }
    }

    /// Parses the keyword.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tcp" => Self::Tcp,
            "udp" => Self::Udp,
            "sctp" => Self::Sctp,
            "dccp" => Self::Dccp,
            "udplite" => Self::Udplite,
            _ => return None,
        })
    }

    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
            Self::Dccp => 33,
            Self::Udplite => 136,
        }
    }
}

/// How the layer-4 protocol is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtoVia {
    /// `meta l4proto`.
    Meta,
    /// `ip protocol`.
    IpProtocol,
    /// `ip6 nexthdr` (first header only).
    Ip6Nexthdr,
}

/// `meta` keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaKey {
    /// Packet mark.
    Mark,
    /// `pkttype` (host, broadcast, multicast, other).
    Pkttype,
    /// Socket owner uid.
    Skuid,
    /// Socket owner gid.
    Skgid,
    /// Any other key (`cpu`, `random`, `nftrace`, `priority`, `length`, …).
    Other(String),
}

/// Conntrack direction qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtDir {
    /// `ct original …`.
    Original,
    /// `ct reply …`.
    Reply,
}

/// `ct` keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CtKey {
    /// `state` bitmask.
    State,
    /// `status` bitmask.
    Status,
    /// Connection mark.
    Mark,
    /// Zone.
    Zone,
    /// `direction` (original/reply).
    Direction,
    /// Tuple address (`ct original ip saddr`, `ct original saddr`).
    Addr {
        /// Family qualifier `ip`/`ip6`, if written.
        v6: Option<bool>,
        /// Source or destination.
        dir: Dir,
    },
    /// Tuple port (`proto-src`, `proto-dst`).
    ProtoPort(Dir),
    /// iptables' `--ctstate`/`--state` when it lists `SNAT` or `DNAT` beside states, or negated
    /// (`--ctstate DNAT` alone is `ct status dnat`): xt_conntrack tests one mask
    /// of the state bits and two virtual bits for the connection's NAT status, so `--ctstate
    /// ESTABLISHED,DNAT` is "any of" across nft's `ct state` and `ct status` (no nft form), and a
    /// packet without a connection has the `untracked` or `invalid` bit. Values are `ct state`
    /// names plus `snat`/`dnat`.
    XtState,
    /// Any other key (`helper`, `l3proto`, `protocol`, `expiration`, `label`, …).
    Other(String),
}

/// Bitwise operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BitOp {
    /// `&`.
    And,
    /// `|`.
    Or,
    /// `^`.
    Xor,
}

impl BitOp {
    /// The nft symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::And => "&",
            Self::Or => "|",
            Self::Xor => "^",
        }
    }
}

/// Which mark a `set` statement writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkTarget {
    /// `meta mark set`.
    Meta,
    /// `ct mark set`.
    Ct,
}

/// The new mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkValue {
    /// A constant.
    Set(u64),
    /// The same mark `| v`.
    Or(u64),
    /// The same mark `& v`.
    And(u64),
    /// The same mark `^ v`.
    Xor(u64),
    /// Copied from another key, optionally masked (`ct mark set meta mark & 0xff00`,
    /// `meta mark set ct mark`).
    From {
        /// The source key.
        key: Key,
    },
    /// iptables' `CONNMARK --save-mark`/`--restore-mark` with masks: `new = (own & !clear) ^
    /// (key & mask)` — `--save-mark --nfmask N --ctmask C` is `ct mark` from `meta mark`, mask N,
    /// clear C; `--restore-mark` the reverse. nft has no form for it (an expression of two
    /// registers); with both masks all ones it is [`MarkValue::From`], as nft translates it.
    Copy {
        /// The mark copied (`meta mark` or `ct mark`).
        key: Key,
        /// The bits of `key` copied.
        mask: u64,
        /// The bits of the mark written that are cleared first.
        clear: u64,
    },
    /// Anything else (maps, shifts), as text.
    Other(String),
}

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Ends this base chain; the next base chain on the hook still runs.
    Accept,
    /// Final.
    Drop,
    /// Final; `with` is the reply (`None`: the family default, ICMP port unreachable).
    Reject {
        /// `icmp port-unreachable`, `icmpx admin-prohibited`, `tcp reset`, …
        with: Option<String>,
    },
    /// To userspace; options as text (`num 1`, `flags bypass`, `to 0-3`).
    Queue {
        /// Options.
        options: String,
    },
    /// Next rule.
    Continue,
    /// Back to the caller (or the base chain's policy).
    Return,
    /// Call a chain of the same table; come back after it.
    Jump(String),
    /// Continue in a chain of the same table, without a return point.
    Goto(String),
}

/// A NAT statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nat {
    /// Which one.
    pub kind: NatKind,
    /// `ip`/`ip6` qualifier (inet tables): `Some(false)` = ip, `Some(true)` = ip6.
    pub family: Option<bool>,
    /// The address part (`to ADDR`), or a map lookup.
    pub addr: Option<NatAddr>,
    /// The port or port range (`:80`, `:8000-8999`).
    pub port: Option<Value>,
    /// Flags (`fully-random`, `persistent`, `random`).
    pub flags: Vec<String>,
}

/// NAT kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NatKind {
    /// Destination NAT (prerouting/output).
    Dnat,
    /// Source NAT (postrouting/input).
    Snat,
    /// Source NAT to the outgoing interface's address.
    Masquerade,
    /// Destination NAT to the host itself.
    Redirect,
    /// Transparent proxying (prerouting; no NAT, socket assignment).
    Tproxy,
    /// iptables' `NETMAP --to P/len`: the network bits of the address become P's, the host bits
    /// stay (destination in prerouting/output, source in input/postrouting, by the hook it runs
    /// at). nft says it only with the direction written (`dnat ip prefix to …`); rendered
    /// `netmap to P/len`, which nft does not read.
    Netmap,
}

impl NatKind {
    /// The nft keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dnat => "dnat",
            Self::Snat => "snat",
            Self::Masquerade => "masquerade",
            Self::Redirect => "redirect",
            Self::Tproxy => "tproxy",
            Self::Netmap => "netmap",
        }
    }
}

/// NAT target address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatAddr {
    /// An address, prefix or range.
    Value(Value),
    /// `KEY map { … }` / `KEY map @m`: chosen by lookup (data may carry address and port).
    Map {
        /// The lookup key (e.g. `numgen inc mod 2`, `ip saddr . tcp dport`).
        key: Key,
        /// The map.
        map: MapRef,
    },
}

/// The branches of a `numgen … vmap { … }` / `numgen … map { … }` lookup: each element's data
/// with the probability that a draw lands on it (`numgen random|inc mod N offset K` yields
/// K..K+N-1, uniformly for `random`, round-robin for `inc`). Probabilities sum to at most 1; the
/// rest is "no element" (the rule does not match). `None` when `key` is not `numgen` or an element
/// key is not a number or range of numbers.
pub fn numgen_branches<'a>(key: &Key, elems: &'a [SetElem]) -> Option<Vec<(f64, &'a MapData)>> {
    let Key::Numgen {
        modulus, offset, ..
    } = key
    else {
        return None;
    };
    if *modulus == 0 {
        return Some(Vec::new());
    }
    let (lo, hi) = (
        u64::from(*offset),
        u64::from(*offset) + u64::from(*modulus) - 1,
    );
    let mut out = Vec::new();
    for e in elems {
        let (a, b) = match &e.key {
            Value::Int(v) => (*v, *v),
            Value::Range(a, b) => match (&**a, &**b) {
                (Value::Int(a), Value::Int(b)) => (*a, *b),
                _ => return None,
            },
            _ => return None,
        };
        let hits = b.min(hi).saturating_add(1).saturating_sub(a.max(lo));
        if let Some(d) = &e.data {
            out.push((hits as f64 / f64::from(*modulus), d));
        }
    }
    Some(out)
}

/// Whether an interface name matches an `iifname`/`oifname` value as the kernel compares them: a
/// trailing `*` matches every name with that prefix (iptables' `+`), `\\*` is a literal star, anything
/// else must be equal.
pub fn iface_name_matches(pattern: &str, name: &str) -> bool {
    if let Some(lit) = pattern.strip_suffix("\\*") {
        return name.strip_suffix('*') == Some(lit);
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_wildcards() {
        assert!(iface_name_matches("veth*", "veth1234"));
        assert!(iface_name_matches("veth*", "veth"));
        assert!(!iface_name_matches("veth*", "eth0"));
        assert!(iface_name_matches("*", "anything"));
        assert!(iface_name_matches("eth0", "eth0"));
        assert!(!iface_name_matches("eth0", "eth01"));
        assert!(iface_name_matches("a\\*", "a*"));
        assert!(!iface_name_matches("a\\*", "ab"));
    }

    #[test]
    fn standard_priorities_follow_nft() {
        assert_eq!(
            standard_priority(NftFamily::Ip, Hook::Prerouting, "dstnat"),
            Some(-100)
        );
        assert_eq!(
            standard_priority(NftFamily::Inet, Hook::Postrouting, "srcnat"),
            Some(100)
        );
        assert_eq!(
            standard_priority(NftFamily::Ip6, Hook::Input, "security"),
            Some(50)
        );
        assert_eq!(
            standard_priority(NftFamily::Bridge, Hook::Forward, "filter"),
            Some(-200)
        );
        assert_eq!(
            standard_priority(NftFamily::Bridge, Hook::Output, "out"),
            Some(100)
        );
        assert_eq!(
            standard_priority(NftFamily::Bridge, Hook::Input, "dstnat"),
            None
        );
        assert_eq!(standard_priority(NftFamily::Ip, Hook::Input, "nope"), None);
    }
}
