//! iptables-nft rules, decoded from an nf_tables rule dump, as the exact text
//! `ip[6]tables-nft-save` 1.8.9 prints.
//!
//! Owns the mapping from the native expressions iptables-nft emits (`meta` + `cmp` for
//! `-i`/`-o`/`-p` and `--mark`, `payload` (+ `bitwise`) + `cmp`/`range` for `-s`/`-d`/`-f` and
//! tcp/udp ports and flags, `limit`, `immediate` verdicts) back to options, in the order the
//! save tool prints them (`nft_rule_to_iptables_command_state` and `nft_ipv{4,6}_save_rule` of
//! iptables 1.8.9), and the table layout around the rules: the save tool's table order, built-in
//! chains first (in hook order, including those the kernel does not hold), then user chains by
//! name. `match`/`target` expressions (x_tables payloads) go to [`super::ext`]. Anything the
//! save tool would print differently, or not at all, is [`Unsupported`]: the reader then runs
//! the save tool. It does not talk to the kernel (`netlink::nft` decodes the messages).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use nfscope_ruleset::Family;

use super::ext::{self, Unsupported};
use crate::netlink::nft::{ChainView, RuleView, userdata_comment};
use crate::netlink::socket::{attrs, be_u16, be_u32, be_u64, c_str};

/// One built-in chain of an iptables-nft table (`builtin_table` in iptables' `nft.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BuiltinChain {
    pub name: &'static str,
    pub hook: u32,
    pub prio: i32,
    pub kind: &'static str,
}

const fn bc(name: &'static str, hook: u32, prio: i32, kind: &'static str) -> BuiltinChain {
    BuiltinChain {
        name,
        hook,
        prio,
        kind,
    }
}

/// The tables `iptables-nft-save` prints, in its order (`NFT_TABLE_*` index order), with their
/// built-in chains in hook order. The same for IPv4 and IPv6.
pub(crate) const TABLES: [(&str, &[BuiltinChain]); 5] = [
    (
        "mangle",
        &[
            bc("PREROUTING", 0, -150, "filter"),
            bc("INPUT", 1, -150, "filter"),
            bc("FORWARD", 2, -150, "filter"),
            bc("OUTPUT", 3, -150, "route"),
            bc("POSTROUTING", 4, -150, "filter"),
        ],
    ),
    (
        "security",
        &[
            bc("INPUT", 1, 150, "filter"),
            bc("FORWARD", 2, 150, "filter"),
            bc("OUTPUT", 3, 150, "filter"),
        ],
    ),
    (
        "raw",
        &[
            bc("PREROUTING", 0, -300, "filter"),
            bc("OUTPUT", 3, -300, "filter"),
        ],
    ),
    (
        "filter",
        &[
            bc("INPUT", 1, 0, "filter"),
            bc("FORWARD", 2, 0, "filter"),
            bc("OUTPUT", 3, 0, "filter"),
        ],
    ),
    (
        "nat",
        &[
            bc("PREROUTING", 0, -100, "nat"),
            bc("INPUT", 1, 100, "nat"),
            bc("OUTPUT", 3, -100, "nat"),
            bc("POSTROUTING", 4, 100, "nat"),
        ],
    ),
];

/// A chain as the dump describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub name: String,
    /// (hook number, priority, type) of a base chain.
    pub hook: Option<(u32, i32, String)>,
    /// `NFTA_CHAIN_POLICY` (`NF_DROP` 0, `NF_ACCEPT` 1).
    pub policy: Option<u32>,
    /// (packets, bytes) of `NFTA_CHAIN_COUNTERS`.
    pub counters: (u64, u64),
}

/// One iptables-nft table being assembled from the chain and rule dumps.
#[derive(Debug, Default)]
pub(crate) struct TableText {
    pub name: String,
    pub chains: Vec<ChainHead>,
    /// Per chain (same index as `chains`), its rule lines (`-A …\n`).
    pub rules: Vec<String>,
    /// Chain name → index into `chains` (a dump of 20,000 chains must not scan them per rule).
    pub index: HashMap<String, usize>,
}

impl TableText {
    /// Appends the table as the save tool prints it (without its `#` lines). Base chains must
    /// be the table's built-in ones with the built-in hook, priority and type, else the save
    /// tool marks the table tainted.
    pub(crate) fn write(&mut self, out: &mut String) -> Result<(), Unsupported> {
        let builtins = TABLES
            .iter()
            .find(|(name, _)| *name == self.name)
            .map(|(_, chains)| *chains)
            .ok_or_else(|| table_unsupported(&self.name, "not an iptables table"))?;
        let mut order: Vec<Option<usize>> = vec![None; builtins.len()];
        let mut user: Vec<usize> = Vec::new();
        for (i, chain) in self.chains.iter().enumerate() {
            match &chain.hook {
                None => user.push(i),
                Some((hook, prio, kind)) => {
                    let slot = builtins
                        .iter()
                        .position(|b| {
                            b.hook == *hook
                                && b.prio == *prio
                                && b.kind == kind
                                && b.name == chain.name
                        })
                        .ok_or_else(|| {
                            table_unsupported(&self.name, "a base chain that is not built in")
                        })?;
                    if order[slot].replace(i).is_some() {
                        return Err(table_unsupported(&self.name, "two base chains on one hook"));
                    }
                }
            }
        }
        user.sort_by(|&a, &b| {
            self.chains[a]
                .name
                .as_bytes()
                .cmp(self.chains[b].name.as_bytes())
        });
        let _ = writeln!(out, "*{}", self.name);
        for (slot, builtin) in order.iter().zip(builtins) {
            match slot {
                Some(i) => {
                    let chain = &self.chains[*i];
                    let policy = match chain.policy {
                        Some(0) => "DROP",
                        Some(1) | None => "ACCEPT",
                        Some(_) => return Err(table_unsupported(&self.name, "policy")),
                    };
                    let (p, b) = chain.counters;
                    let _ = writeln!(out, ":{} {policy} [{p}:{b}]", chain.name);
                }
                // The save tool adds the built-in chains the kernel lacks.
                None => {
                    let _ = writeln!(out, ":{} ACCEPT [0:0]", builtin.name);
                }
            }
        }
        for &i in &user {
            let chain = &self.chains[i];
            let policy = match chain.policy {
                Some(0) => "DROP",
                Some(1) => "ACCEPT",
                _ => "-",
            };
            let (p, b) = chain.counters;
            let _ = writeln!(out, ":{} {policy} [{p}:{b}]", chain.name);
        }
        for i in order.iter().flatten().copied().chain(user.iter().copied()) {
            // Moved out and freed chain by chain: the text is never held twice.
            if let Some(lines) = self.rules.get_mut(i) {
                out.push_str(lines);
                *lines = String::new();
            }
        }
        out.push_str("COMMIT\n");
        Ok(())
    }
}

/// Assembles one family's iptables-nft text from chain and rule dump messages, in any order
/// of chains (rules of a chain in dump order).
#[derive(Debug)]
pub(crate) struct Assembler {
    family: Family,
    proto: u8,
    partial: bool,
    tables: Vec<TableText>,
    unsupported: Option<Unsupported>,
}

impl Assembler {
    /// For the tables of `names` (the family's table dump) that `iptables-nft-save` prints.
    pub(crate) fn new(family: Family, names: &[String], partial: bool) -> Self {
        let tables = TABLES
            .iter()
            .filter(|(name, _)| names.iter().any(|n| n == name))
            .map(|(name, _)| TableText {
                name: (*name).to_owned(),
                ..TableText::default()
            })
            .collect();
        let proto = match family {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
        };
        Self {
            family,
            proto,
            partial,
            tables,
            unsupported: None,
        }
    }

    /// No table to print.
    pub(crate) fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Has a rule failed to decode (strict mode)? The rest need not be dumped.
    pub(crate) fn failed(&self) -> bool {
        self.unsupported.is_some()
    }

    /// Takes one chain of the chain dump (other families' and tables' are ignored).
    pub(crate) fn add_chain(&mut self, chain: &ChainView<'_>) {
        if chain.family != self.proto {
            return;
        }
        if let Some(table) = self.tables.iter_mut().find(|t| t.name == chain.table) {
            let counters = chain.counters.unwrap_or_default();
            table.chains.push(ChainHead {
                name: chain.name.to_owned(),
                hook: chain
                    .hook
                    .map(|(hook, prio)| (hook, prio, chain.kind.to_owned())),
                policy: chain.policy,
                counters: (counters.packets, counters.bytes),
            });
            table
                .index
                .insert(chain.name.to_owned(), table.chains.len() - 1);
            table.rules.push(String::new());
        }
    }

    /// (table, chain) of every chain taken, for the per-chain rule dumps.
    pub(crate) fn chains(&self) -> Vec<(String, String)> {
        self.tables
            .iter()
            .flat_map(|t| t.chains.iter().map(|c| (t.name.clone(), c.name.clone())))
            .collect()
    }

    /// Takes one rule of a rule dump (rules of chains not taken are ignored).
    pub(crate) fn add_rule(&mut self, rule: &RuleView<'_>) {
        if rule.family != self.proto || self.unsupported.is_some() {
            return;
        }
        let Some(table) = self.tables.iter_mut().find(|t| t.name == rule.table) else {
            return;
        };
        let Some(&i) = table.index.get(rule.chain) else {
            self.unsupported = Some(table_unsupported(&table.name, "a rule of an unknown chain"));
            return;
        };
        let lines = &mut table.rules[i];
        let start = lines.len();
        if let Err(e) = rule_line(self.family, rule.chain, rule.exprs, rule.udata, lines) {
            lines.truncate(start);
            if self.partial {
                let _ = writeln!(lines, "-A {} <unsupported: {e}>", rule.chain);
            } else {
                self.unsupported = Some(e);
            }
        }
    }

    /// The text, or why it cannot be rendered exactly.
    pub(crate) fn finish(mut self) -> Result<String, Unsupported> {
        if let Some(e) = self.unsupported {
            return Err(e);
        }
        let mut out = String::with_capacity(
            self.tables
                .iter()
                .flat_map(|t| &t.rules)
                .map(String::len)
                .sum::<usize>()
                + 64 * self
                    .tables
                    .iter()
                    .map(|t| t.chains.len() + 8)
                    .sum::<usize>(),
        );
        for table in &mut self.tables {
            table.write(&mut out)?;
        }
        Ok(out)
    }
}

impl Unsupported {
    /// A bounded metric label: the kind and the (truncated, sanitized) name, never the detail.
    pub(crate) fn label(&self) -> String {
        let name: String = self
            .name
            .chars()
            .take(29)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{} {name}", self.kind)
    }
}

fn table_unsupported(table: &str, why: &str) -> Unsupported {
    Unsupported {
        kind: "table",
        name: table.to_owned(),
        revision: 0,
        why: why.to_owned(),
    }
}

fn native(name: &str, why: impl Into<String>) -> Unsupported {
    Unsupported {
        kind: "expression",
        name: name.to_owned(),
        revision: 0,
        why: why.into(),
    }
}

/// What a register holds (`nft_xt_ctx_reg`).
#[derive(Debug, Clone, Default)]
struct Reg {
    what: Loaded,
    /// `bitwise` mask applied, when one was.
    mask: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Loaded {
    #[default]
    Undef,
    Meta(u32),
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct PortMatch {
    tcp: bool,
    spts: [u16; 2],
    dpts: [u16; 2],
    flg_mask: u8,
    flg_cmp: u8,
    /// `XT_TCP_INV_SRCPT` 1, `XT_TCP_INV_DSTPT` 2, `XT_TCP_INV_FLAGS` 4 (udp: the first two).
    invflags: u8,
}

#[derive(Debug)]
enum Match {
    /// Index into `Rule::ports`.
    Ports,
    Mark {
        mark: u32,
        mask: u32,
        invert: bool,
    },
    Limit {
        avg: u32,
        burst: u32,
    },
    /// Already rendered by [`ext::match_text`].
    Text(String),
}

/// `iptables_command_state` as far as the save line needs it.
#[derive(Debug, Default)]
struct Rule {
    proto: u8,
    inv_proto: bool,
    src: Option<(Vec<u8>, Vec<u8>, bool)>,
    dst: Option<(Vec<u8>, Vec<u8>, bool)>,
    iniface: Option<(String, bool)>,
    outiface: Option<(String, bool)>,
    /// `-f`: Some(inverted).
    frag: Option<bool>,
    matches: Vec<Match>,
    ports: Option<PortMatch>,
    /// ` -j X` / ` -g X` / a rendered target.
    target: Option<String>,
}

/// Verdict codes (`NF_DROP`, `NF_ACCEPT`, `NFT_JUMP`, `NFT_GOTO`, `NFT_RETURN`).
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

/// Appends `-A CHAIN …\n` for one rule: `exprs` is its `NFTA_RULE_EXPRESSIONS`, `udata` its
/// `NFTA_RULE_USERDATA`.
pub(crate) fn rule_line(
    family: Family,
    chain: &str,
    exprs: &[u8],
    udata: &[u8],
    out: &mut String,
) -> Result<(), Unsupported> {
    let mut regs: Vec<Reg> = vec![Reg::default(); 24];
    let mut rule = Rule::default();
    for (_, elem) in attrs(exprs) {
        let (mut name, mut data): (&str, &[u8]) = ("", &[]);
        for (kind, payload) in attrs(elem) {
            match kind {
                1 => name = c_str(payload),
                2 => data = payload,
                _ => {}
            }
        }
        expression(family, name, data, &mut regs, &mut rule)?;
    }
    if let Some(comment) = userdata_comment(udata) {
        let mut text = String::from(" -m comment --comment");
        ext::save_string(comment, &mut text);
        rule.matches.push(Match::Text(text));
    }
    out.push_str("-A ");
    out.push_str(chain);
    save(family, &rule, out);
    out.push('\n');
    Ok(())
}

fn reg_of<'r>(regs: &'r mut [Reg], payload: &[u8], what: &str) -> Result<&'r mut Reg, Unsupported> {
    let n = be_u32(payload).unwrap_or(u32::MAX) as usize;
    regs.get_mut(n)
        .ok_or_else(|| native(what, format!("register {n}")))
}

/// The value of a nested `nft_data` (`NFTA_DATA_VALUE`).
fn data_value(nested: &[u8]) -> &[u8] {
    attrs(nested)
        .find(|&(k, _)| k == 1)
        .map_or(&[][..], |(_, v)| v)
}

fn expression(
    family: Family,
    name: &str,
    data: &[u8],
    regs: &mut [Reg],
    rule: &mut Rule,
) -> Result<(), Unsupported> {
    match name {
        "counter" => Ok(()),
        "meta" => {
            let (mut dreg, mut key, mut sreg) = (None, None, false);
            for (kind, payload) in attrs(data) {
                match kind {
                    1 => dreg = Some(payload),
                    2 => key = be_u32(payload),
                    3 => sreg = true,
                    _ => {}
                }
            }
            let (Some(dreg), Some(key), false) = (dreg, key, sreg) else {
                return Err(native("meta", "not a load"));
            };
            *reg_of(regs, dreg, "meta")? = Reg {
                what: Loaded::Meta(key),
                mask: None,
            };
            Ok(())
        }
        "payload" => {
            let (mut dreg, mut base, mut offset, mut len, mut sreg) = (None, 0, 0, 0, false);
            for (kind, payload) in attrs(data) {
                match kind {
                    1 => dreg = Some(payload),
                    2 => base = be_u32(payload).unwrap_or(u32::MAX),
                    3 => offset = be_u32(payload).unwrap_or(u32::MAX),
                    4 => len = be_u32(payload).unwrap_or(u32::MAX),
                    5 => sreg = true,
                    _ => {}
                }
            }
            let (Some(dreg), false) = (dreg, sreg) else {
                return Err(native("payload", "not a load"));
            };
            *reg_of(regs, dreg, "payload")? = Reg {
                what: Loaded::Payload { base, offset, len },
                mask: None,
            };
            Ok(())
        }
        "bitwise" => {
            let (mut sreg, mut dreg, mut mask, mut xor, mut op) = (None, None, None, None, 0);
            for (kind, payload) in attrs(data) {
                match kind {
                    1 => sreg = Some(payload),
                    2 => dreg = Some(payload),
                    4 => mask = Some(data_value(payload)),
                    5 => xor = Some(data_value(payload)),
                    6 => op = be_u32(payload).unwrap_or(u32::MAX),
                    _ => {}
                }
            }
            let (Some(sreg), Some(dreg), Some(mask), 0) = (sreg, dreg, mask, op) else {
                return Err(native("bitwise", "not a mask-and-xor"));
            };
            if xor.is_some_and(|x| x.iter().any(|&b| b != 0)) {
                return Err(native("bitwise", "non-zero xor"));
            }
            let mut reg = reg_of(regs, sreg, "bitwise")?.clone();
            reg.mask = Some(mask.to_vec());
            *reg_of(regs, dreg, "bitwise")? = reg;
            Ok(())
        }
        "cmp" => {
            let (mut sreg, mut op, mut value) = (None, u32::MAX, &[][..]);
            for (kind, payload) in attrs(data) {
                match kind {
                    1 => sreg = Some(payload),
                    2 => op = be_u32(payload).unwrap_or(u32::MAX),
                    3 => value = data_value(payload),
                    _ => {}
                }
            }
            let reg = reg_of(regs, sreg.unwrap_or(&[]), "cmp")?.clone();
            cmp(family, &reg, op, value, rule)
        }
        "range" => {
            let (mut sreg, mut op, mut from, mut to) = (None, u32::MAX, &[][..], &[][..]);
            for (kind, payload) in attrs(data) {
                match kind {
                    1 => sreg = Some(payload),
                    2 => op = be_u32(payload).unwrap_or(u32::MAX),
                    3 => from = data_value(payload),
                    4 => to = data_value(payload),
                    _ => {}
                }
            }
            let reg = reg_of(regs, sreg.unwrap_or(&[]), "range")?.clone();
            let Loaded::Payload {
                base: 2,
                offset: offset @ (0 | 2),
                ..
            } = reg.what
            else {
                return Err(native("range", "not a port range"));
            };
            let (Ok(from), Ok(to)) = (<[u8; 2]>::try_from(from), <[u8; 2]>::try_from(to)) else {
                return Err(native("range", "not 16-bit"));
            };
            let range = [u16::from_be_bytes(from), u16::from_be_bytes(to)];
            let ports = ports(rule)?;
            let inv = match op {
                0 => false,
                1 => true,
                _ => return Err(native("range", format!("op {op}"))),
            };
            let (slot, bit) = if offset == 0 {
                (&mut ports.spts, 1)
            } else {
                (&mut ports.dpts, 2)
            };
            *slot = range;
            if inv {
                ports.invflags |= bit;
            }
            Ok(())
        }
        "immediate" => {
            let mut verdict = None;
            for (kind, payload) in attrs(data) {
                if kind == 2 {
                    verdict = attrs(payload).find(|&(k, _)| k == 2).map(|(_, v)| v);
                }
            }
            let Some(verdict) = verdict else {
                return Err(native("immediate", "data, not a verdict"));
            };
            let (mut code, mut chain) = (None, "");
            for (kind, payload) in attrs(verdict) {
                match kind {
                    1 => code = be_u32(payload).map(|c| c as i32),
                    2 => chain = c_str(payload),
                    _ => {}
                }
            }
            let text = match code {
                Some(NF_ACCEPT) => " -j ACCEPT".to_owned(),
                Some(NF_DROP) => " -j DROP".to_owned(),
                Some(NFT_RETURN) => " -j RETURN".to_owned(),
                Some(NFT_JUMP) => format!(" -j {chain}"),
                Some(NFT_GOTO) => format!(" -g {chain}"),
                other => return Err(native("immediate", format!("verdict {other:?}"))),
            };
            set_target(rule, text)
        }
        "match" | "target" => {
            let (mut xt_name, mut rev, mut info) = ("", 0u32, &[][..]);
            for (kind, payload) in attrs(data) {
                match kind {
                    1 => xt_name = c_str(payload),
                    2 => rev = be_u32(payload).unwrap_or(u32::MAX),
                    3 => info = payload,
                    _ => {}
                }
            }
            let rev = u8::try_from(rev).map_err(|_| native(name, "revision"))?;
            let mut text = String::new();
            if name == "match" {
                ext::match_text(family, xt_name, rev, info, &mut text)?;
                rule.matches.push(Match::Text(text));
                Ok(())
            } else {
                ext::target_text(family, xt_name, rev, info, &mut text)?;
                set_target(rule, text)
            }
        }
        "limit" => {
            let (mut rate, mut unit, mut burst, mut kind_, mut flags) = (0u64, 0u64, 0u32, 0, 0);
            for (kind, payload) in attrs(data) {
                match kind {
                    1 => rate = be_u64(payload).unwrap_or(0),
                    2 => unit = be_u64(payload).unwrap_or(0),
                    3 => burst = be_u32(payload).unwrap_or(0),
                    4 => kind_ = be_u32(payload).unwrap_or(u32::MAX),
                    5 => flags = be_u32(payload).unwrap_or(u32::MAX),
                    _ => {}
                }
            }
            if kind_ != 0 || flags != 0 || rate == 0 {
                return Err(native("limit", "not a packet limit"));
            }
            rule.matches.push(Match::Limit {
                avg: (10_000u64.wrapping_mul(unit) / rate) as u32,
                burst,
            });
            Ok(())
        }
        "log" => {
            // iptables-nft's NFLOG (`nft_parse_log`): only a log to a group is compatible.
            let (mut group, mut prefix, mut snaplen, mut threshold) = (None, "", None, 0u16);
            for (kind, payload) in attrs(data) {
                match kind {
                    1 => group = be_u16(payload),
                    2 => prefix = c_str(payload),
                    3 => snaplen = be_u32(payload),
                    4 => threshold = be_u16(payload).unwrap_or(0),
                    _ => {}
                }
            }
            let Some(group) = group else {
                return Err(native("log", "not a log to a group"));
            };
            let mut text = String::from(" -j NFLOG");
            if !prefix.is_empty() {
                text.push_str(" --nflog-prefix");
                ext::save_string(prefix, &mut text);
            }
            if group != 0 {
                let _ = write!(text, " --nflog-group {group}");
            }
            if let Some(len) = snaplen {
                let _ = write!(text, " --nflog-size {len}");
            }
            if threshold != 0 {
                let _ = write!(text, " --nflog-threshold {threshold}");
            }
            set_target(rule, text)
        }
        other => Err(native(other, "expression not modelled")),
    }
}

fn set_target(rule: &mut Rule, text: String) -> Result<(), Unsupported> {
    if rule.target.replace(text).is_some() {
        return Err(native("target", "two targets"));
    }
    Ok(())
}

fn ports(rule: &mut Rule) -> Result<&mut PortMatch, Unsupported> {
    let tcp = match rule.proto {
        6 => true,
        17 => false,
        p => {
            return Err(native(
                "payload",
                format!("transport header of protocol {p}"),
            ));
        }
    };
    if rule.ports.is_none() {
        rule.matches.push(Match::Ports);
    }
    Ok(rule.ports.get_or_insert(PortMatch {
        tcp,
        spts: [0, 0xffff],
        dpts: [0, 0xffff],
        flg_mask: 0,
        flg_cmp: 0,
        invflags: 0,
    }))
}

/// `port_match_single_to_range`.
fn single_port(ports: &mut [u16; 2], invflags: &mut u8, op: u32, port: u16, bit: u8) {
    match op {
        1 => {
            *invflags |= bit;
            *ports = [port, port];
        }
        0 => *ports = [port, port],
        2 => ports[1] = port.saturating_sub(1).max(1),
        3 => ports[1] = port,
        4 => ports[0] = port.saturating_add(1),
        5 => ports[0] = port,
        _ => {}
    }
}

const META_MARK: u32 = 3;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_L4PROTO: u32 = 16;

fn cmp(
    family: Family,
    reg: &Reg,
    op: u32,
    value: &[u8],
    rule: &mut Rule,
) -> Result<(), Unsupported> {
    let inv = match op {
        0 => false,
        1 => true,
        _ => {
            // Only port compares use the ordering operators.
            if !matches!(reg.what, Loaded::Payload { base: 2, .. }) || op > 5 {
                return Err(native("cmp", format!("op {op}")));
            }
            false
        }
    };
    match reg.what {
        Loaded::Undef => Err(native("cmp", "register not loaded")),
        Loaded::Meta(key) => {
            if reg.mask.is_some() && key != META_MARK {
                return Err(native("meta", "masked"));
            }
            match key {
                META_L4PROTO => {
                    rule.proto = *value.first().ok_or_else(|| native("meta", "empty"))?;
                    rule.inv_proto = inv;
                }
                META_IIFNAME | META_OIFNAME => {
                    let name = ifname(value, inv)?;
                    let slot = if key == META_IIFNAME {
                        &mut rule.iniface
                    } else {
                        &mut rule.outiface
                    };
                    *slot = Some(name);
                }
                META_MARK => {
                    let mark = u32::from_ne_bytes(
                        value.try_into().map_err(|_| native("meta mark", "size"))?,
                    );
                    let mask = match &reg.mask {
                        Some(m) => u32::from_ne_bytes(
                            m.as_slice()
                                .try_into()
                                .map_err(|_| native("meta mark", "mask size"))?,
                        ),
                        None => u32::MAX,
                    };
                    rule.matches.push(Match::Mark {
                        mark,
                        mask,
                        invert: inv,
                    });
                }
                other => return Err(native("meta", format!("key {other}"))),
            }
            Ok(())
        }
        Loaded::Payload {
            base: 1,
            offset,
            len,
        } => network(family, reg, offset, len, inv, value, rule),
        Loaded::Payload {
            base: 2,
            offset,
            len,
        } => {
            let ports = ports(rule)?;
            match (offset, len, value.len()) {
                (0, 2, 2) => {
                    let port = u16::from_be_bytes([value[0], value[1]]);
                    single_port(&mut ports.spts, &mut ports.invflags, op, port, 1);
                }
                (0, 4, 4) => {
                    let both = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                    let (sport, dport) = ((both >> 16) as u16, both as u16);
                    single_port(&mut ports.spts, &mut ports.invflags, op, sport, 1);
                    single_port(&mut ports.dpts, &mut ports.invflags, op, dport, 2);
                }
                (2, 2, 2) => {
                    let port = u16::from_be_bytes([value[0], value[1]]);
                    single_port(&mut ports.dpts, &mut ports.invflags, op, port, 2);
                }
                (13, 1, 1) if ports.tcp => {
                    if op > 1 {
                        return Err(native("cmp", "ordered tcp flags"));
                    }
                    if inv {
                        ports.invflags |= 4;
                    }
                    ports.flg_cmp = value[0];
                    ports.flg_mask = reg
                        .mask
                        .as_ref()
                        .and_then(|m| m.first().copied())
                        .unwrap_or(0xff);
                }
                _ => return Err(native("payload", format!("transport +{offset}/{len}"))),
            }
            Ok(())
        }
        Loaded::Payload { base, .. } => Err(native("payload", format!("base {base}"))),
    }
}

/// `parse_ifname` + `parse_invalid_iface` + `save_iface`: the name as printed, and inversion.
fn ifname(value: &[u8], inv: bool) -> Result<(String, bool), Unsupported> {
    if value.is_empty() || value.len() > 16 {
        return Err(native("meta", "interface name size"));
    }
    if value.last() == Some(&0) {
        let name = c_str(value);
        if name == "INVAL/D" && !inv {
            return Ok(("+".to_owned(), true));
        }
        if name.is_empty() || name.len() + 1 != value.len() {
            return Err(native("meta", "interface name"));
        }
        return Ok((name.to_owned(), inv));
    }
    if value.len() >= 16 || value.contains(&0) {
        return Err(native("meta", "interface name"));
    }
    let name = std::str::from_utf8(value).map_err(|_| native("meta", "interface name"))?;
    Ok((format!("{name}+"), inv))
}

fn network(
    family: Family,
    reg: &Reg,
    offset: u32,
    len: u32,
    inv: bool,
    value: &[u8],
    rule: &mut Rule,
) -> Result<(), Unsupported> {
    let (src, dst, addr_len) = match family {
        Family::Ipv4 => (12, 16, 4),
        Family::Ipv6 => (8, 24, 16),
    };
    if offset == src || offset == dst {
        let len = len as usize;
        if len == 0 || len > addr_len || value.len() != len {
            return Err(native("payload", "address size"));
        }
        let mut addr = vec![0u8; addr_len];
        addr[..len].copy_from_slice(value);
        let mask = match &reg.mask {
            Some(m) if m.len() == len => {
                let mut mask = vec![0u8; addr_len];
                mask[..len].copy_from_slice(m);
                mask
            }
            Some(_) => return Err(native("bitwise", "address mask size")),
            None => {
                let mut mask = vec![0u8; addr_len];
                mask[..len].fill(0xff);
                mask
            }
        };
        let slot = if offset == src {
            &mut rule.src
        } else {
            &mut rule.dst
        };
        *slot = Some((addr, mask, inv));
        return Ok(());
    }
    match (family, offset) {
        (Family::Ipv4, 9) if reg.mask.is_none() && value.len() == 1 => {
            rule.proto = value[0];
            rule.inv_proto = inv;
            Ok(())
        }
        (Family::Ipv4, 6) if reg.mask.is_some() => {
            // `-f`: frag_off & 0x1fff != 0; `! -f`: == 0 (`get_frag`): inverted when `==`.
            rule.frag = Some(!inv);
            Ok(())
        }
        _ => Err(native("payload", format!("network header +{offset}"))),
    }
}

/// Protocol names as `proto_to_name` finds them: iptables' own list, then `/etc/protocols`.
fn proto_name(proto: u8) -> Option<String> {
    let known = match proto {
        6 => Some("tcp"),
        132 => Some("sctp"),
        17 => Some("udp"),
        136 => Some("udplite"),
        1 => Some("icmp"),
        58 => Some("ipv6-icmp"),
        50 => Some("esp"),
        51 => Some("ah"),
        135 => Some("mobility-header"),
        _ => None,
    };
    if let Some(name) = known {
        return Some(name.to_owned());
    }
    etc_protocols()
        .iter()
        .find(|(n, _)| *n == proto)
        .map(|(_, name)| name.clone())
}

/// `/etc/protocols` as (number, first name), read once (what `getprotobynumber` answers).
fn etc_protocols() -> &'static [(u8, String)] {
    static TABLE: std::sync::OnceLock<Vec<(u8, String)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let text = std::fs::read_to_string("/etc/protocols").unwrap_or_default();
        let mut out: Vec<(u8, String)> = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(number)) = (words.next(), words.next()) else {
                continue;
            };
            if let Ok(n) = number.parse::<u8>()
                && !out.iter().any(|(m, _)| *m == n)
            {
                out.push((n, name.to_owned()));
            }
        }
        out
    })
}

fn save(family: Family, rule: &Rule, out: &mut String) {
    for (letter, addr) in [('s', &rule.src), ('d', &rule.dst)] {
        if let Some((addr, mask, inv)) = addr {
            save_addr(family, letter, addr, mask, *inv, out);
        }
    }
    for (letter, iface) in [('i', &rule.iniface), ('o', &rule.outiface)] {
        if let Some((name, inv)) = iface {
            let _ = write!(out, "{} -{letter} {name}", if *inv { " !" } else { "" });
        }
    }
    if rule.proto > 0 {
        if rule.inv_proto {
            out.push_str(" !");
        }
        match proto_name(rule.proto) {
            Some(name) => {
                let _ = write!(out, " -p {name}");
            }
            None => {
                let _ = write!(out, " -p {}", rule.proto);
            }
        }
    }
    if let Some(inv) = rule.frag {
        out.push_str(if inv { " ! -f" } else { " -f" });
    }
    for m in &rule.matches {
        match m {
            Match::Ports => {
                if let Some(p) = &rule.ports {
                    save_ports(p, out);
                }
            }
            Match::Mark { mark, mask, invert } => {
                out.push_str(" -m mark");
                if *invert {
                    out.push_str(" !");
                }
                if *mask == u32::MAX {
                    let _ = write!(out, " --mark 0x{mark:x}");
                } else {
                    let _ = write!(out, " --mark 0x{mark:x}/0x{mask:x}");
                }
            }
            Match::Limit { avg, burst } => {
                out.push_str(" -m limit --limit");
                save_rate(*avg, out);
                if *burst != 5 {
                    let _ = write!(out, " --limit-burst {burst}");
                }
            }
            Match::Text(text) => out.push_str(text),
        }
    }
    if let Some(target) = &rule.target {
        out.push_str(target);
    }
}

fn save_addr(family: Family, letter: char, addr: &[u8], mask: &[u8], inv: bool, out: &mut String) {
    let bang = if inv { " !" } else { "" };
    match family {
        Family::Ipv4 => {
            let a = Ipv4Addr::from(<[u8; 4]>::try_from(addr).unwrap_or_default());
            let m = <[u8; 4]>::try_from(mask).unwrap_or_default();
            if m == [0; 4] && !inv && a.is_unspecified() {
                return;
            }
            let bits = u32::from_be_bytes(m);
            let mask = if bits.leading_ones() + bits.trailing_zeros() == 32 {
                bits.leading_ones().to_string()
            } else {
                Ipv4Addr::from(m).to_string()
            };
            let _ = write!(out, "{bang} -{letter} {a}/{mask}");
        }
        Family::Ipv6 => {
            let a = Ipv6Addr::from(<[u8; 16]>::try_from(addr).unwrap_or_default());
            let m = <[u8; 16]>::try_from(mask).unwrap_or_default();
            let bits = u128::from_be_bytes(m);
            let cidr =
                (bits.leading_ones() + bits.trailing_zeros() >= 128).then(|| bits.leading_ones());
            if !inv && cidr == Some(0) {
                return;
            }
            match cidr {
                Some(l) => {
                    let _ = write!(out, "{bang} -{letter} {a}/{l}");
                }
                None => {
                    let _ = write!(out, "{bang} -{letter} {a}/{}", Ipv6Addr::from(m));
                }
            }
        }
    }
}

/// `tcp_save` / `udp_save`.
fn save_ports(p: &PortMatch, out: &mut String) {
    out.push_str(if p.tcp { " -m tcp" } else { " -m udp" });
    for (name, pts, bit) in [("sport", p.spts, 1), ("dport", p.dpts, 2)] {
        if pts[0] != 0 || pts[1] != 0xffff {
            if p.invflags & bit != 0 {
                out.push_str(" !");
            }
            if pts[0] != pts[1] {
                let _ = write!(out, " --{name} {}:{}", pts[0], pts[1]);
            } else {
                let _ = write!(out, " --{name} {}", pts[0]);
            }
        }
    }
    if p.tcp && (p.flg_mask != 0 || p.invflags & 4 != 0) {
        if p.invflags & 4 != 0 {
            out.push_str(" !");
        }
        out.push_str(" --tcp-flags ");
        tcp_flags(p.flg_mask, out);
        out.push(' ');
        tcp_flags(p.flg_cmp, out);
    }
}

/// `print_tcpf`.
fn tcp_flags(mut flags: u8, out: &mut String) {
    const NAMES: [(&str, u8); 7] = [
        ("FIN", 0x01),
        ("SYN", 0x02),
        ("RST", 0x04),
        ("PSH", 0x08),
        ("ACK", 0x10),
        ("URG", 0x20),
        ("ALL", 0x3f),
    ];
    let mut first = true;
    while flags != 0 {
        let Some(&(name, bit)) = NAMES.iter().find(|(_, bit)| flags & bit != 0) else {
            break;
        };
        if !first {
            out.push(',');
        }
        out.push_str(name);
        first = false;
        flags &= !bit;
    }
    if first {
        out.push_str("NONE");
    }
}

/// libxt_limit's `print_rate`, with `inf` for a zero period as iptables-nft prints a native limit.
fn save_rate(period: u32, out: &mut String) {
    if period == 0 {
        out.push_str(" inf");
        return;
    }
    ext::print_rate(period, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_parse_ifname_and_the_invalid_name_trick() {
        assert_eq!(ifname(b"lo\0", false), Ok(("lo".to_owned(), false)));
        assert_eq!(ifname(b"eth", true), Ok(("eth+".to_owned(), true)));
        // `! -i +` is stored as `iifname == "INVAL/D"`.
        assert_eq!(ifname(b"INVAL/D\0", false), Ok(("+".to_owned(), true)));
        assert!(ifname(b"", false).is_err());
        assert!(
            ifname(&[b'a'; 16], false).is_err(),
            "16 bytes without a NUL"
        );
    }

    #[test]
    fn limits_and_tcp_flags_print_as_their_extensions_do() {
        let mut out = String::new();
        save_rate(10_000 * 60 / 3, &mut out); // 3/min
        save_rate(10_000 / 10, &mut out); // 10/sec
        save_rate(10_000 * 60 * 60 * 24 / 7, &mut out); // 7/day
        assert_eq!(out, " 3/min 10/sec 7/day");
        out.clear();
        tcp_flags(0x17, &mut out);
        out.push(' ');
        tcp_flags(0x3f, &mut out);
        out.push(' ');
        tcp_flags(0, &mut out);
        assert_eq!(out, "FIN,SYN,RST,ACK FIN,SYN,RST,PSH,ACK,URG NONE");
    }

    #[test]
    fn ordered_port_compares_become_ranges_like_port_match_single_to_range() {
        let (mut ports, mut inv) = ([0u16, 0xffff], 0u8);
        single_port(&mut ports, &mut inv, 3, 1023, 2); // <= 1023
        assert_eq!((ports, inv), ([0, 1023], 0));
        let mut ports = [0u16, 0xffff];
        single_port(&mut ports, &mut inv, 5, 1024, 2); // >= 1024
        assert_eq!(ports, [1024, 0xffff]);
        single_port(&mut ports, &mut inv, 1, 22, 2); // != 22
        assert_eq!((ports, inv), ([22, 22], 2));
    }

    #[test]
    fn fallback_labels_are_bounded_and_carry_no_detail() {
        let long = Unsupported {
            kind: "match",
            name: "a name with spaces and much too long to be a label".to_owned(),
            revision: 0,
            why: "details stay out".to_owned(),
        };
        assert_eq!(long.label(), "match a_name_with_spaces_and_much_t");
    }

    #[test]
    fn a_table_with_a_foreign_base_chain_is_unsupported() {
        let mut table = TableText {
            name: "filter".to_owned(),
            chains: vec![ChainHead {
                name: "INPUT".to_owned(),
                hook: Some((1, 10, "filter".to_owned())), // priority 10, not 0
                policy: Some(1),
                counters: (0, 0),
            }],
            rules: vec![String::new()],
            index: HashMap::new(),
        };
        let err = table.write(&mut String::new()).unwrap_err();
        assert_eq!(
            (err.kind, err.why.as_str()),
            ("table", "a base chain that is not built in")
        );
    }
}
