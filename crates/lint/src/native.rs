//! Lint of native nftables tables (the typed model of `nfscope_ruleset::typed`).
//!
//! Owns the per-table checks of rules nft wrote, with the same [`FindingId`]s the iptables checks
//! use where the meaning is the same: `duplicate-rule` (the same canonical rule twice in a chain,
//! counter values ignored, when a second run cannot differ: see `repeats_to_no_effect`),
//! `shadowed-rule` (an earlier terminal rule whose conditions are a subset
//! of a later rule's decides every packet the later one would), `unreachable-after-catch-all`
//! (rules after a terminal rule without conditions), `unreferenced-chain` and `empty-chain`
//! (regular chains nothing jumps to, gotos or dispatches to by verdict map; referenced ones
//! without rules), `missing-jump-target` (a `jump`/`goto`, or a verdict-map element, naming a
//! chain the table does not have), and `unreferenced-set` (a named set or map no rule refers to).
//!
//! Coverage is the iptables checks' own ([`crate::cover`]), judged only where it is certain: a
//! rule covers another only when its statements are modelled and end the chain (`accept`,
//! `drop`, `reject`, `return`, `goto`, `queue`, NAT without a map lookup), and each of its
//! conditions — addresses, ports, protocols, interface names, ICMP types — is implied by the
//! other rule's (a lookup in a set without `dynamic`/`timeout` by the same lookup; a
//! `numgen`/hash draw, a mark test, a dynamic set, a map lookup or anything unmodelled
//! never covers). Duplicates use the iptables checks' canonical key ([`crate::canon`]). For the doctor it also tells which hooks two or more rule systems
//! program (iptables tables of either backend, native tables: [`shared_hooks`],
//! [`judge_native_backends`]).
//! In kube-proxy's nftables table (meaning from `nfscope_annotate::native`) it also says, with the
//! iptables mode's ids: `kube-service-no-endpoints` (a Service port listed in
//! `no-endpoint-services` / `no-endpoint-nodeports`, one finding per Service port and kind) and
//! `kube-stale-chain` (a `service-`/`external-`/`firewall-`/`endpoint-` chain no rule or map points
//! to, reported instead of `unreferenced-chain`, as in iptables mode — info when it is empty, as
//! kube-proxy leaves a flushed chain for a second before deleting it — or whose name is not
//! kube-proxy's hash of the service port it names).
//! Empty and unreferenced chains that a stock tool's scaffold explains ([`crate::scaffold`], e.g.
//! firewalld's empty zone sub-chains) are not reported, as in iptables mode.
//! Jumps, sets and maps never cross tables, so each table is linted on its own. It does no I/O.

use std::collections::{HashMap, HashSet};

use nfscope_ruleset::nft::{render_rule, render_rule_without_counters};
use nfscope_ruleset::typed::{
    CtKey, Expr, Key, MapData, MapRef, MarkValue, Match, MetaKey, NftFamily, NftRuleset, NftTable,
    Rhs, TypedRule, Verdict,
};

use crate::canon::rule_key;
use crate::checks::order::draws;
use crate::cover::{Coverers, Shape};
use nfscope_ruleset::{Backend, Family};

use nfscope_annotate::Owner;
use nfscope_annotate::native::{
    kube_nft_chain, kube_nft_hash_matches, no_endpoint_services, table_owner,
};

use crate::finding::{Finding, FindingId, KubeContext, Location, Related, Severity};
use crate::scaffold::{Expected, Known};

/// Lints every table of a native ruleset; findings in table, chain and rule order.
pub fn lint_nft(ruleset: &NftRuleset) -> Vec<Finding> {
    ruleset.tables.iter().flat_map(lint_table).collect()
}

/// The `family` an nft family is reported under (see [`Finding::nftables`]).
fn family_of(f: NftFamily) -> Family {
    match f {
        NftFamily::Ip6 => Family::Ipv6,
        _ => Family::Ipv4,
    }
}

struct TableCtx<'a> {
    table: &'a NftTable,
    index: Index<'a>,
    findings: Vec<Finding>,
}

/// Name lookups of one table, built once (linting stays linear in rules and chains).
struct Index<'a> {
    chains: HashSet<&'a str>,
    /// Named sets whose contents only a ruleset change can change (not dynamic).
    static_sets: HashSet<&'a str>,
}

impl<'a> Index<'a> {
    fn of(table: &'a NftTable) -> Self {
        Self {
            chains: table.chains.iter().map(|c| c.name.as_str()).collect(),
            static_sets: table
                .sets
                .iter()
                .filter(|s| !s.is_dynamic())
                .map(|s| s.name.as_str())
                .collect(),
        }
    }
}

impl TableCtx<'_> {
    /// Gives the last finding kube-proxy's owner and `meaning`.
    fn set_kube(&mut self, meaning: String) {
        if let Some(f) = self.findings.last_mut() {
            f.kube = Some(KubeContext {
                owner: Owner::KubeProxy.as_str().to_owned(),
                meaning: Some(meaning),
            });
        }
    }

    fn location(&self, c: Option<usize>, r: Option<usize>) -> Location {
        let chain = c.and_then(|c| self.table.chains.get(c));
        let rule = r.and_then(|r| chain?.rules.get(r));
        let line = rule
            .map(|r| r.line)
            .or(chain.map(|c| c.line))
            .or(Some(self.table.line))
            .filter(|&l| l > 0);
        Location {
            table: Some(self.table.name.clone()),
            chain: chain.map(|c| c.name.clone()),
            rule_index: rule.map(|r| r.position),
            line,
        }
    }

    fn related(&self, c: usize, r: Option<usize>, note: &str) -> Related {
        Related {
            family: family_of(self.table.family),
            backend: Backend::Nft,
            location: self.location(Some(c), r),
            note: note.to_owned(),
        }
    }

    fn report(
        &mut self,
        id: FindingId,
        severity: Severity,
        location: Location,
        message: String,
        related: Vec<Related>,
    ) {
        self.findings.push(Finding {
            id,
            severity,
            family: family_of(self.table.family),
            backend: Backend::Nft,
            location,
            message,
            related,
            kube: None,
            nftables: Some(self.table.family),
        });
    }
}

fn lint_table(table: &NftTable) -> Vec<Finding> {
    let mut ctx = TableCtx {
        table,
        index: Index::of(table),
        findings: Vec::new(),
    };
    let targets = chain_targets(table);
    for (c, chain) in table.chains.iter().enumerate() {
        duplicates_and_shadows(&mut ctx, c);
        catch_all(&mut ctx, c);
        for (r, rule) in chain.rules.iter().enumerate() {
            for target in rule_targets(rule) {
                if !ctx.index.chains.contains(target) {
                    let at = ctx.location(Some(c), Some(r));
                    ctx.report(
                        FindingId::MissingJumpTarget,
                        Severity::Error,
                        at,
                        format!(
                            "rule {} sends packets to chain {target}, which table {} {} does not have: nft refuses such a ruleset, so this dump is not what the kernel runs",
                            rule.position, table.family, table.name
                        ),
                        Vec::new(),
                    );
                }
            }
        }
    }
    // Named verdict maps dispatch too.
    for set in &table.sets {
        for e in &set.elements {
            if let Some(MapData::Verdict(Verdict::Jump(t) | Verdict::Goto(t))) = &e.data
                && !ctx.index.chains.contains(t.as_str())
            {
                let location = Location {
                    table: Some(table.name.clone()),
                    chain: None,
                    rule_index: None,
                    line: Some(set.line).filter(|&l| l > 0),
                };
                ctx.report(
                    FindingId::MissingJumpTarget,
                    Severity::Error,
                    location,
                    format!(
                        "an element of map {} sends packets to chain {t}, which table {} {} does not have",
                        set.name, table.family, table.name
                    ),
                    Vec::new(),
                );
            }
        }
    }
    let kube_proxy = table_owner(table) == Some(Owner::KubeProxy);
    if kube_proxy {
        kube_no_endpoints(&mut ctx);
    }
    let known = Known::for_chain_names(|| table.chains.iter().map(|c| c.name.as_str()));
    for (c, chain) in table.chains.iter().enumerate() {
        if chain.base.is_some() {
            continue;
        }
        let referenced = targets.contains(chain.name.as_str());
        if kube_proxy
            && !referenced
            && let Some(k) = kube_nft_chain(&chain.name)
        {
            let at = ctx.location(Some(c), None);
            ctx.report(
                FindingId::KubeStaleChain,
                // kube-proxy flushes a stale chain and deletes it a second or more later.
                if chain.rules.is_empty() {
                    Severity::Info
                } else {
                    Severity::Warning
                },
                at,
                format!(
                    "nothing points to chain {} ({} rule(s)): no rule and no element of service-ips, \
                     service-nodeports or firewall-ips sends packets to it, so it is a leftover of a \
                     deleted {}. kube-proxy flushes such chains and deletes them on a later sync; one that \
                     stays is stale",
                    chain.name,
                    chain.rules.len(),
                    match k {
                        nfscope_annotate::native::KubeNftChain::Endpoint { .. } => "endpoint",
                        nfscope_annotate::native::KubeNftChain::Service { .. } => "service port",
                    }
                ),
                Vec::new(),
            );
            ctx.set_kube(k.meaning().summary());
            continue;
        }
        if kube_proxy && kube_nft_hash_matches(&chain.name) == Some(false) {
            let at = ctx.location(Some(c), None);
            ctx.report(
                FindingId::KubeStaleChain,
                Severity::Warning,
                at,
                format!(
                    "chain {} is not named with kube-proxy's hash of the service port it names, so \
                     kube-proxy did not write it this way: written by another tool or edited by hand",
                    chain.name
                ),
                Vec::new(),
            );
            if let Some(k) = kube_nft_chain(&chain.name) {
                ctx.set_kube(k.meaning().summary());
            }
        }
        let expected = match (referenced, chain.rules.is_empty()) {
            (false, true) => Expected::UnhookedEmpty,
            (false, false) => Expected::UnhookedWithRules,
            (true, _) => Expected::Empty,
        };
        if known.expects(&chain.name, expected).is_some() {
            continue;
        }
        match (referenced, chain.rules.is_empty()) {
            (false, empty) => {
                let at = ctx.location(Some(c), None);
                ctx.report(
                    FindingId::UnreferencedChain,
                    if empty {
                        Severity::Info
                    } else {
                        Severity::Warning
                    },
                    at,
                    format!(
                        "no rule or verdict map of table {} {} jumps or goes to chain {}, so its {} rule(s) never run",
                        table.family,
                        table.name,
                        chain.name,
                        chain.rules.len()
                    ),
                    Vec::new(),
                );
            }
            (true, true) => {
                let at = ctx.location(Some(c), None);
                ctx.report(
                    FindingId::EmptyChain,
                    Severity::Info,
                    at,
                    format!(
                        "chain {} has no rules: a jump to it returns at once, a goto ends in the base chain's policy",
                        chain.name
                    ),
                    Vec::new(),
                );
            }
            (true, false) => {}
        }
    }
    unreferenced_sets(&mut ctx);
    ctx.findings
}

/// One finding per Service port (and kind) that kube-proxy's no-endpoint maps list, at the map.
fn kube_no_endpoints(ctx: &mut TableCtx<'_>) {
    let table = ctx.table;
    let mut seen: Vec<(String, bool)> = Vec::new();
    for n in no_endpoint_services(table) {
        let key = (n.service.to_string(), n.local_only);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let set = &table.sets[n.set_index];
        let location = Location {
            table: Some(table.name.clone()),
            chain: None,
            rule_index: None,
            line: Some(set.line).filter(|&l| l > 0),
        };
        let service = &n.service;
        let (severity, message) = if n.local_only {
            (
                Severity::Info,
                format!(
                    "service {service} has no endpoints on this node and externalTrafficPolicy is Local \
                     (map {}): traffic for it that reaches this node is dropped (normal on nodes without its pods)",
                    n.map
                ),
            )
        } else {
            (
                Severity::Warning,
                format!(
                    "service {service} has no endpoints (map {}): kube-proxy rejects every connection to it \
                     (clients see \"connection refused\" / ICMP unreachable). Check its selector and \
                     whether its pods are ready",
                    n.map
                ),
            )
        };
        ctx.report(
            FindingId::KubeServiceNoEndpoints,
            severity,
            location,
            message,
            Vec::new(),
        );
        let meaning = nfscope_annotate::Meaning::KubeNoEndpoints {
            service: n.service.clone(),
            local_only: n.local_only,
        };
        ctx.set_kube(meaning.summary());
    }
}

/// Every chain name a rule or a named verdict map of `table` sends packets to.
fn chain_targets(table: &NftTable) -> HashSet<&str> {
    let mut out: HashSet<&str> = table
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .flat_map(rule_targets)
        .collect();
    for set in &table.sets {
        for e in &set.elements {
            if let Some(MapData::Verdict(Verdict::Jump(t) | Verdict::Goto(t))) = &e.data {
                out.insert(t);
            }
        }
    }
    out
}

/// The chains a rule's verdicts name: its own `jump`/`goto` and those of anonymous verdict maps.
fn rule_targets(rule: &TypedRule) -> Vec<&str> {
    let mut out = Vec::new();
    for e in &rule.exprs {
        match e {
            Expr::Verdict(Verdict::Jump(t) | Verdict::Goto(t)) => out.push(t.as_str()),
            Expr::Vmap {
                map: MapRef::Anon(elems),
                ..
            } => {
                for el in elems {
                    if let Some(MapData::Verdict(Verdict::Jump(t) | Verdict::Goto(t))) = &el.data {
                        out.push(t.as_str());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A test of something earlier rules of the path can change: the packet or connection mark, or
/// membership of a dynamic set (`update @s`).
fn is_mutable(ix: &Index<'_>, m: &Match) -> bool {
    fn mark(key: &Key) -> bool {
        match key {
            Key::Meta(MetaKey::Mark) => true,
            Key::Ct {
                key: CtKey::Mark, ..
            } => true,
            Key::Masked { key, .. } => mark(key),
            Key::Concat(keys) => keys.iter().any(mark),
            _ => false,
        }
    }
    let dynamic_set = match &m.rhs {
        Rhs::SetRef(name) => !ix.static_sets.contains(name.as_str()),
        _ => false,
    };
    mark(&m.key) || dynamic_set
}

/// Whether running the rule a second time right after a first copy (with anything in between
/// that the path may do) changes nothing: no test of a mark, a dynamic set or a draw (rules in
/// between may change them), and no statement whose repetition counts (`limit`, `quota`, a mark
/// toggled with `^`, a set update) or that nfscope does not model.
fn repeats_to_no_effect(ix: &Index<'_>, rule: &TypedRule) -> bool {
    rule.exprs.iter().all(|e| match e {
        Expr::Match(m) => !draws(&m.key) && !is_mutable(ix, m),
        Expr::Vmap { key, .. } => !draws(key),
        // A masked copy repeats to the same mark only when it clears every bit it copies.
        Expr::SetMark { value, .. } => {
            !matches!(value, MarkValue::Xor(_) | MarkValue::Other(_))
                && !matches!(value, MarkValue::Copy { mask, clear, .. } if mask & !clear != 0)
        }
        Expr::Stateful { .. } | Expr::Unmodelled { .. } | Expr::SetUpdate { .. } => false,
        _ => true,
    })
}

fn duplicates_and_shadows(ctx: &mut TableCtx<'_>, c: usize) {
    let chain = &ctx.table.chains[c];
    let family = ctx.table.family;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut coverers = Coverers::default();
    let mut reports = Vec::new();
    for (r, rule) in chain.rules.iter().enumerate() {
        let shape = Shape::of(rule);
        let key = rule_key(rule);
        let repeatable = repeats_to_no_effect(&ctx.index, rule);
        if let Some(&first) = seen.get(&key).filter(|_| repeatable) {
            reports.push((
                FindingId::DuplicateRule,
                Severity::Warning,
                r,
                format!(
                    "rule {} repeats rule {} of chain {} ({}): the copy never changes what happens",
                    rule.position,
                    chain.rules[first].position,
                    chain.name,
                    render_rule_without_counters(rule)
                ),
                first,
                "first copy",
            ));
        } else {
            seen.insert(key, r);
            if let Some(by) = coverers.first_covering(&shape.matches(), family) {
                reports.push((
                    FindingId::ShadowedRule,
                    Severity::Warning,
                    r,
                    format!(
                        "rule {} ({}) is decided first by rule {} ({}), whose conditions every packet it matches also meets: it never runs",
                        rule.position,
                        render_rule(rule),
                        chain.rules[by].position,
                        render_rule(&chain.rules[by])
                    ),
                    by,
                    "covering rule",
                ));
            }
        }
        if let Some(conds) = shape.covering_with(|s| ctx.index.static_sets.contains(s))
            && !conds.is_empty()
        {
            coverers.add(r, conds);
        }
    }
    for (id, severity, r, message, other, note) in reports {
        let at = ctx.location(Some(c), Some(r));
        let related = vec![ctx.related(c, Some(other), note)];
        ctx.report(id, severity, at, message, related);
    }
}

fn catch_all(ctx: &mut TableCtx<'_>, c: usize) {
    let chain = &ctx.table.chains[c];
    let Some(i) = chain.rules.iter().position(|r| {
        let shape = Shape::of(r);
        shape.ends_chain && shape.statements_modelled && shape.matches_everything()
    }) else {
        return;
    };
    if i + 1 >= chain.rules.len() {
        return;
    }
    let after = chain.rules.len() - i - 1;
    let message = format!(
        "rule {} ({}) takes every packet, so the {after} rule(s) after it in {} never run",
        chain.rules[i].position,
        render_rule(&chain.rules[i]),
        chain.name
    );
    let at = ctx.location(Some(c), Some(i + 1));
    let mut related = vec![ctx.related(c, Some(i), "catch-all rule")];
    related.extend((i + 2..chain.rules.len()).map(|r| ctx.related(c, Some(r), "also unreachable")));
    ctx.report(
        FindingId::UnreachableAfterCatchAll,
        Severity::Error,
        at,
        message,
        related,
    );
}

fn unreferenced_sets(ctx: &mut TableCtx<'_>) {
    let table = ctx.table;
    if table.sets.is_empty() {
        return;
    }
    // Every `@name` the rules (and table objects, rarely) write, collected once.
    let mut named: HashSet<String> = HashSet::new();
    for text in table
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .map(render_rule)
        .chain(table.objects.iter().map(|o| o.text.clone()))
    {
        named.extend(references(&text).map(str::to_owned));
    }
    for set in &table.sets {
        if named.contains(set.name.as_str()) {
            continue;
        }
        let kind = if set.is_map { "map" } else { "set" };
        let location = Location {
            table: Some(table.name.clone()),
            chain: None,
            rule_index: None,
            line: Some(set.line).filter(|&l| l > 0),
        };
        ctx.report(
            FindingId::UnreferencedSet,
            if set.elements.is_empty() {
                Severity::Info
            } else {
                Severity::Warning
            },
            location,
            format!(
                "no rule of table {} {} refers to {kind} {} (@{}), so its {} element(s) decide nothing",
                table.family,
                table.name,
                set.name,
                set.name,
                set.elements.len()
            ),
            Vec::new(),
        );
    }
}

/// The names written as `@name` in `text` (a name is what nft prints bare: letters, digits and
/// `_ - . / $`).
fn references(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('@').map(move |(at, _)| {
        let rest = &text[at + 1..];
        let end = rest
            .find(|c: char| {
                !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '$'))
            })
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

/// One netfilter hook of one family and the rule systems that hold rules there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUse {
    /// `ipv4`, `ipv6`, or an nft family of its own (`arp`, `bridge`, `netdev`).
    pub family: String,
    /// `prerouting`, `input`, `forward`, `output`, `postrouting`, `ingress`, `egress`.
    pub hook: &'static str,
    /// Who programs it: `iptables-nft filter`, `iptables-legacy nat`, `nftables inet guard`, …
    pub systems: Vec<String>,
}

/// The hooks two or more rule systems program: an iptables table of one backend counts at the
/// hooks of its built-in chains that hold rules or drop by policy; a native table at the hooks of
/// its base chains that hold rules or drop by policy (`inet` for both IPv4 and IPv6). All of them
/// run on every packet at that hook, in priority order.
pub fn shared_hooks(rulesets: &[nfscope_ruleset::Ruleset], native: &NftRuleset) -> Vec<HookUse> {
    let mut uses: Vec<HookUse> = Vec::new();
    let mut add = |family: &str, hook: &'static str, system: String| match uses
        .iter_mut()
        .find(|u| u.family == family && u.hook == hook)
    {
        Some(u) if !u.systems.contains(&system) => u.systems.push(system),
        Some(_) => {}
        None => uses.push(HookUse {
            family: family.to_owned(),
            hook,
            systems: vec![system],
        }),
    };
    for rs in rulesets {
        for t in &rs.tables {
            for c in &t.chains {
                let hook = match c.name.as_str() {
                    "PREROUTING" => "prerouting",
                    "INPUT" => "input",
                    "FORWARD" => "forward",
                    "OUTPUT" => "output",
                    "POSTROUTING" => "postrouting",
                    _ => continue,
                };
                let drops = c.policy == Some(nfscope_ruleset::Policy::Drop);
                if c.rules.is_empty() && !drops {
                    continue;
                }
                add(
                    rs.family.as_str(),
                    hook,
                    format!("iptables-{} {}", rs.backend, t.name),
                );
            }
        }
    }
    for t in &native.tables {
        let families: &[&str] = match t.family {
            NftFamily::Ip => &["ipv4"],
            NftFamily::Ip6 => &["ipv6"],
            NftFamily::Inet => &["ipv4", "ipv6"],
            NftFamily::Arp => &["arp"],
            NftFamily::Bridge => &["bridge"],
            NftFamily::Netdev => &["netdev"],
        };
        for c in &t.chains {
            let Some(b) = &c.base else { continue };
            let drops = b.policy == Some(nfscope_ruleset::typed::Policy::Drop);
            if c.rules.is_empty() && !drops {
                continue;
            }
            for f in families {
                add(
                    f,
                    b.hook.as_str(),
                    format!("nftables {} {}", t.family, t.name),
                );
            }
        }
    }
    uses.retain(|u| u.systems.len() > 1);
    uses
}

/// Adds native nftables to the doctor's `backends` check: how many native tables and rules the
/// node has, and a warning (unless it already fails) for every hook that two or more systems
/// program, naming leftover iptables `KUBE-*` chains beside kube-proxy's nftables table.
pub fn judge_native_backends(
    check: &mut crate::node::NodeCheck,
    rulesets: &[nfscope_ruleset::Ruleset],
    native: &NftRuleset,
) {
    use crate::node::Status;
    let names: Vec<String> = native
        .tables
        .iter()
        .map(|t| format!("{} {}", t.family, t.name))
        .collect();
    check.evidence.push(format!(
        "native nftables: {} table(s), {} rule(s){}",
        native.tables.len(),
        native.rule_count(),
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    ));
    let shared = shared_hooks(rulesets, native);
    for u in &shared {
        check
            .evidence
            .push(format!("{} {}: {}", u.family, u.hook, u.systems.join(", ")));
    }
    if shared.is_empty() {
        return;
    }
    let kube_proxy_nft = native.tables.iter().any(|t| t.name == "kube-proxy");
    let kube_iptables = rulesets.iter().any(|r| {
        r.tables
            .iter()
            .flat_map(|t| &t.chains)
            .any(|c| c.name.starts_with("KUBE-") && !c.rules.is_empty())
    });
    let hooks: Vec<String> = shared
        .iter()
        .map(|u| format!("{} {}", u.family, u.hook))
        .collect();
    let mut summary = format!(
        "{} hook(s) are programmed by more than one rule system ({}): all of them run on every packet there, in priority order, and a tool reading one misses what the other decides",
        shared.len(),
        hooks.join(", ")
    );
    if kube_proxy_nft && kube_iptables {
        summary.push_str(
            "; kube-proxy's nftables table runs beside iptables KUBE-* chains, which a previous proxy mode left behind: flush them",
        );
    }
    if check.status != Status::Fail {
        check.status = Status::Warn;
        if check.summary.starts_with("rules live in one backend") {
            check.summary = summary;
        } else {
            check.summary = format!("{}; {summary}", check.summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfscope_ruleset::{NftLimits, parse_nft_text};

    pub(super) fn lint_text(
        text: &str,
    ) -> Vec<(FindingId, Severity, Option<String>, Option<usize>)> {
        let rs = parse_nft_text(text, &NftLimits::default()).expect("test text parses");
        lint_nft(&rs)
            .into_iter()
            .map(|f| (f.id, f.severity, f.location.chain, f.location.rule_index))
            .collect()
    }

    const T: &str = "table inet t {
	set used { type ipv4_addr; elements = { 10.0.0.1 } }
	set stale { type ipv4_addr; elements = { 10.0.0.2 } }
	set stalemore { type ipv4_addr; }
	map dispatch { type ifname : verdict; elements = { \"eth0\" : jump a, \"eth1\" : goto gone } }
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr @used counter packets 1 bytes 2 drop
		ip saddr @used counter packets 9 bytes 9 drop
		tcp dport 22 accept
		tcp dport 22 ip saddr 10.0.0.0/8 accept
		numgen random mod 2 0 accept
		numgen random mod 2 0 udp dport 53 accept
		iifname vmap @dispatch
		jump empty
		jump nowhere
		tcp dport 80 jump a
		tcp dport 80 udp dport 1 drop
		counter drop
		accept
	}
	chain a {
		ct state vmap { new : goto b }
	}
	chain b {
		ip daddr @stalemore2 accept
	}
	chain empty {
	}
	chain orphan {
		drop
	}
	chain orphan2 {
	}
}
";

    #[test]
    fn native_findings_use_the_iptables_ids() {
        let found = lint_text(T);
        let has = |id: FindingId, chain: &str, rule: Option<usize>| {
            found
                .iter()
                .any(|(i, _, c, r)| *i == id && c.as_deref() == Some(chain) && *r == rule)
        };
        assert!(has(FindingId::DuplicateRule, "in", Some(2)), "{found:?}");
        assert!(has(FindingId::ShadowedRule, "in", Some(4)), "{found:?}");
        assert!(
            !has(FindingId::ShadowedRule, "in", Some(6)),
            "a numgen draw never covers: {found:?}"
        );
        assert!(
            !has(FindingId::ShadowedRule, "in", Some(11)),
            "a jump returns, so it never covers: {found:?}"
        );
        assert!(
            has(FindingId::MissingJumpTarget, "in", Some(9)),
            "{found:?}"
        );
        assert!(
            has(FindingId::UnreachableAfterCatchAll, "in", Some(13)),
            "{found:?}"
        );
        assert!(has(FindingId::EmptyChain, "empty", None), "{found:?}");
        assert!(
            has(FindingId::UnreferencedChain, "orphan", None),
            "{found:?}"
        );
        assert!(
            has(FindingId::UnreferencedChain, "orphan2", None),
            "{found:?}"
        );
        assert!(
            !has(FindingId::UnreferencedChain, "a", None)
                && !has(FindingId::UnreferencedChain, "b", None),
            "reached through a named map and an anonymous vmap: {found:?}"
        );
        let sets: Vec<_> = found
            .iter()
            .filter(|(i, ..)| *i == FindingId::UnreferencedSet)
            .map(|(_, s, ..)| *s)
            .collect();
        assert_eq!(
            sets,
            [Severity::Warning, Severity::Info],
            "stale (1 element) and stalemore (empty, not a prefix of @stalemore2): {found:?}"
        );
        let missing_in_map = found
            .iter()
            .filter(|(i, _, c, _)| *i == FindingId::MissingJumpTarget && c.is_none())
            .count();
        assert_eq!(missing_in_map, 1, "goto gone in map dispatch: {found:?}");
    }

    #[test]
    fn a_mark_test_never_covers_because_a_jump_between_may_set_the_mark() {
        // Calico's layout: accept if marked, jump to the endpoint chain that marks, test again.
        let found = lint_text(
            "table ip c {\n\tset d { type ipv4_addr; flags dynamic; }\n\tchain in {\n\t\ttype filter hook input priority 0;\n\t\tmeta mark & 0x00010000 == 0x00010000 accept\n\t\tip saddr @d drop\n\t\tjump mark\n\t\tmeta mark & 0x00010000 == 0x00010000 accept\n\t\tip saddr @d drop\n\t}\n\tchain mark {\n\t\tmeta mark set meta mark | 0x00010000\n\t\tupdate @d { ip saddr }\n\t}\n}\n",
        );
        assert_eq!(found, []);
    }

    #[test]
    fn kube_proxy_nftables_beside_leftover_kube_iptables_chains_is_a_warning() {
        use crate::node::{NodeCheck, Status};
        let native = parse_nft_text(
            "table ip kube-proxy {\n\tchain filter-forward {\n\t\ttype filter hook forward priority -110; policy accept;\n\t\tct state new jump service-endpoints-check\n\t}\n\tchain service-endpoints-check {\n\t}\n\tchain nat-output {\n\t\ttype nat hook output priority -100;\n\t}\n}\n",
            &NftLimits::default(),
        )
        .unwrap();
        let ipt = nfscope_ruleset::parse_ruleset(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FORWARD - [0:0]\n-A FORWARD -j KUBE-FORWARD\n-A KUBE-FORWARD -j ACCEPT\nCOMMIT\n",
            &Default::default(),
        )
        .unwrap();
        let shared = shared_hooks(std::slice::from_ref(&ipt), &native);
        assert_eq!(shared.len(), 1, "{shared:?}");
        assert_eq!(
            (shared[0].family.as_str(), shared[0].hook),
            ("ipv4", "forward")
        );
        assert_eq!(shared[0].systems.len(), 2, "{shared:?}");
        let mut check = NodeCheck {
            id: "backends",
            status: Status::Pass,
            summary: "rules live in one backend per family".into(),
            evidence: vec![],
        };
        judge_native_backends(&mut check, std::slice::from_ref(&ipt), &native);
        assert_eq!(check.status, Status::Warn);
        assert!(check.summary.contains("ipv4 forward"), "{}", check.summary);
        assert!(check.summary.contains("KUBE-*"), "{}", check.summary);
        assert!(
            check.evidence[0].starts_with("native nftables: 1 table(s), 1 rule(s)"),
            "{:?}",
            check.evidence
        );
        // The empty nat-output base chain programs nothing; no iptables: no warning.
        let mut alone = NodeCheck {
            id: "backends",
            status: Status::Pass,
            summary: "rules live in one backend per family".into(),
            evidence: vec![],
        };
        judge_native_backends(&mut alone, &[], &native);
        assert_eq!(alone.status, Status::Pass);
    }

    #[test]
    fn coverers_of_every_size_are_found_and_the_earliest_is_named() {
        let found = lint_text(
            "table ip c {\n\tchain in {\n\t\ttype filter hook input priority 0;\n             \t\tip saddr 10.0.0.1 tcp dport 22 iifname \"eth0\" drop\n             \t\tip saddr 10.0.0.1 tcp dport 22 iifname \"eth0\" oifname \"eth1\" ip daddr 10.0.0.2 accept\n             \t\tip saddr 10.0.0.3 tcp dport 23 iifname \"eth0\" oifname \"eth1\" accept\n             \t\tip daddr 10.9.9.9 oifname \"eth1\" iifname \"eth0\" tcp dport 23 ip saddr 10.0.0.3 accept\n             \t\tip saddr 10.0.0.1 tcp dport 22 accept\n\t}\n}\n",
        );
        let shadowed: Vec<Option<usize>> = found
            .iter()
            .filter(|(id, ..)| *id == FindingId::ShadowedRule)
            .map(|(.., r)| *r)
            .collect();
        // #2 by #1 (three conditions, in another order), #4 by #3 (four conditions); #5 is not
        // covered (fewer conditions than #1).
        assert_eq!(shadowed, [Some(2), Some(4)], "{found:?}");
    }

    #[test]
    fn coverage_reasons_about_prefixes_ranges_and_lookups() {
        let found = lint_text(
            "table ip c {\n\tmap m { type ipv4_addr : ipv4_addr; elements = { 10.0.0.1 : 10.0.0.2 } }\n\tchain n {\n\t\ttype nat hook prerouting priority dstnat;\n\t\tdnat to ip daddr map @m\n\t\tip saddr 10.0.0.0/8 tcp dport 1-1024 dnat to 10.9.9.9\n\t\tip saddr 10.1.0.0/16 tcp dport { 22, 80 } dnat to 10.9.9.8\n\t\tip saddr != 10.0.0.0/8 tcp dport 22 counter dnat to 10.9.9.7\n\t\tip saddr 192.168.0.0/16 tcp dport 22 dnat to 10.9.9.6\n\t}\n}\n",
        );
        let shadowed: Vec<Option<usize>> = found
            .iter()
            .filter(|(id, ..)| *id == FindingId::ShadowedRule)
            .map(|(.., r)| *r)
            .collect();
        // #3 by #2 (a /16 inside the /8, both ports inside 1-1024); #5 by #4 (outside 10/8); a
        // map lookup that finds nothing lets the packet on, so #1 takes nothing for sure.
        assert_eq!(shadowed, [Some(3), Some(5)], "{found:?}");
        assert!(
            !found
                .iter()
                .any(|(id, ..)| *id == FindingId::UnreachableAfterCatchAll),
            "{found:?}"
        );
    }

    #[test]
    fn a_static_set_lookup_covers_the_same_lookup_a_dynamic_one_does_not() {
        let text = "table ip c {\n\tset s { type ipv4_addr; FLAGSelements = { 10.0.0.1 } }\n\tchain in {\n\t\ttype filter hook input priority 0;\n\t\tip saddr @s drop\n\t\tip saddr @s tcp dport 22 accept\n\t\tip daddr @s tcp dport 22 accept\n\t}\n}\n";
        let shadowed = |found: Vec<(FindingId, Severity, Option<String>, Option<usize>)>| {
            found
                .into_iter()
                .filter(|(id, ..)| *id == FindingId::ShadowedRule)
                .map(|(.., r)| r)
                .collect::<Vec<_>>()
        };
        assert_eq!(shadowed(lint_text(&text.replace("FLAGS", ""))), [Some(2)]);
        assert_eq!(
            shadowed(lint_text(&text.replace("FLAGS", "flags dynamic; "))),
            []
        );
    }

    #[test]
    fn counters_are_part_of_the_duplicate_key_but_not_their_values() {
        let found = lint_text(
            "table ip c {\n\tcounter a { }\n\tcounter b { }\n\tchain in {\n\t\ttype filter hook input priority 0;\n\t\ttcp dport 22 counter name \"a\" accept\n\t\ttcp dport 22 counter name \"b\" accept\n\t\ttcp dport 23 accept\n\t\ttcp dport 23 counter packets 1 bytes 2 accept\n\t\ttcp dport 24 counter packets 1 bytes 2 accept\n\t\ttcp dport 24 counter packets 7 bytes 9 accept\n\t}\n}\n",
        );
        let of = |id: FindingId| -> Vec<Option<usize>> {
            found.iter().filter(|f| f.0 == id).map(|f| f.3).collect()
        };
        // Another named counter or an added counter is another rule (shadowed, not a copy); only
        // counter values differ between the copies of #5.
        assert_eq!(of(FindingId::DuplicateRule), [Some(6)], "{found:?}");
        assert_eq!(of(FindingId::ShadowedRule), [Some(2), Some(4)], "{found:?}");
    }

    #[test]
    fn a_clean_table_has_no_findings() {
        let found = lint_text(
            "table ip f {\n\tset s { type ipv4_addr; }\n\tchain in {\n\t\ttype filter hook input priority 0;\n\t\tip saddr @s drop\n\t\ttcp dport 22 jump ssh\n\t}\n\tchain ssh {\n\t\tct state new accept\n\t}\n}\n",
        );
        assert_eq!(found, []);
    }
}

#[cfg(test)]
mod kube_tests {
    //! kube-proxy's nftables mode: Services without endpoints and stale chains, on the real
    //! dumps of `testdata/corpus/nft/` and on small hand-written tables.

    use super::tests::lint_text;
    use super::*;
    use nfscope_ruleset::{NftLimits, parse_nft_text};
    use nfscope_test_support::corpus::corpus_file;

    fn lint(text: &str) -> Vec<Finding> {
        let rs = parse_nft_text(text, &NftLimits::default()).expect("parses");
        lint_nft(&rs)
    }

    fn of(findings: &[Finding], id: FindingId) -> Vec<&Finding> {
        findings.iter().filter(|f| f.id == id).collect()
    }

    #[test]
    fn k3s_services_without_endpoints_are_named_once_each() {
        let f = lint(&corpus_file(
            "nft/k3s-kubeproxy-nftables-mode-table-2025.nft",
        ));
        let none = of(&f, FindingId::KubeServiceNoEndpoints);
        let services: Vec<Option<&str>> = none
            .iter()
            .map(|f| f.kube.as_ref().and_then(|k| k.meaning.as_deref()))
            .collect();
        assert_eq!(
            services,
            [
                Some("service riset/otelcol-opentelemetry-collector:otlp has no endpoints"),
                Some("service riset/otelcol-opentelemetry-collector:otlp-http has no endpoints"),
            ]
        );
        assert!(none.iter().all(|f| f.severity == Severity::Warning));
        assert!(none[0].message.contains("map no-endpoint-services"));
        assert_eq!(none[0].location.table.as_deref(), Some("kube-proxy"));
        // Every per-object chain of this dump is pointed to.
        assert!(of(&f, FindingId::KubeStaleChain).is_empty());
    }

    #[test]
    fn local_only_service_is_info_and_listed_once_across_maps() {
        // ns2/svc2:p80 is in no-endpoint-services (twice) and no-endpoint-nodeports, all drops.
        let f = lint(&corpus_file("nft/nftparse-kube-proxy-overall.nft"));
        let svc2: Vec<&Finding> = of(&f, FindingId::KubeServiceNoEndpoints)
            .into_iter()
            .filter(|f| f.message.contains("ns2/svc2:p80"))
            .collect();
        assert_eq!(svc2.len(), 1, "{svc2:?}");
        assert_eq!(svc2[0].severity, Severity::Info);
    }

    const STALE: &str = r#"table ip kube-proxy {
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.10 . tcp . 80 : goto service-Y6QD5CCT-ns/web/tcp/http }
	}
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.11 . tcp . 80 comment "ns/empty:http" : goto reject-chain }
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain filter-forward {
		type filter hook forward priority -110; policy accept;
		ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}
	chain reject-chain {
		reject
	}
	chain service-Y6QD5CCT-ns/web/tcp/http {
		numgen random mod 1 vmap { 0 : goto endpoint-726L2SFA-ns/web/tcp/http__10.0.0.5/8080 }
	}
	chain endpoint-726L2SFA-ns/web/tcp/http__10.0.0.5/8080 {
		meta l4proto tcp dnat to 10.0.0.5:8080
	}
	chain endpoint-DETZAWPG-ns/web/tcp/http__10.0.0.6/8080 {
		meta l4proto tcp dnat to 10.0.0.6:8080
	}
	chain service-G7FVZ73I-ns/gone/tcp/ {
	}
	chain helper {
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump service-ZZZZZZZZ-ns/web/tcp/http
	}
	chain service-ZZZZZZZZ-ns/web/tcp/http {
		jump mark-for-masquerade
	}
	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}
}
"#;

    #[test]
    fn stale_service_and_endpoint_chains_are_kube_stale_chain() {
        let f = lint(STALE);
        let stale: Vec<(Option<&str>, Option<&str>)> = of(&f, FindingId::KubeStaleChain)
            .iter()
            .map(|f| {
                (
                    f.location.chain.as_deref(),
                    f.kube.as_ref().and_then(|k| k.meaning.as_deref()),
                )
            })
            .collect();
        assert_eq!(
            stale,
            [
                (
                    Some("endpoint-DETZAWPG-ns/web/tcp/http__10.0.0.6/8080"),
                    Some("service ns/web:http endpoint 10.0.0.6:8080")
                ),
                (
                    Some("service-G7FVZ73I-ns/gone/tcp/"),
                    Some("service ns/gone")
                ),
                (
                    Some("service-ZZZZZZZZ-ns/web/tcp/http"),
                    Some("service ns/web:http")
                ),
            ]
        );
        let severities: Vec<Severity> = of(&f, FindingId::KubeStaleChain)
            .iter()
            .map(|f| f.severity)
            .collect();
        // The flushed (empty) one is info: kube-proxy deletes it on a later sync.
        assert_eq!(
            severities,
            [Severity::Warning, Severity::Info, Severity::Warning]
        );
        assert!(
            of(&f, FindingId::KubeStaleChain)[2]
                .message
                .contains("not named with kube-proxy's hash")
        );
        // Not also unreferenced-chain; a plain helper chain still is.
        let unref: Vec<Option<&str>> = of(&f, FindingId::UnreferencedChain)
            .iter()
            .map(|f| f.location.chain.as_deref())
            .collect();
        assert_eq!(unref, [Some("helper")]);
        let none = of(&f, FindingId::KubeServiceNoEndpoints);
        assert_eq!(none.len(), 1);
        assert!(
            none[0]
                .message
                .starts_with("service ns/empty:http has no endpoints")
        );
    }

    #[test]
    fn other_tables_get_no_kube_findings() {
        // The same layout under another table name is not kube-proxy's.
        let f = lint(&STALE.replace("table ip kube-proxy", "table ip mine"));
        assert!(of(&f, FindingId::KubeStaleChain).is_empty());
        assert!(of(&f, FindingId::KubeServiceNoEndpoints).is_empty());
        assert_eq!(of(&f, FindingId::UnreferencedChain).len(), 3);
    }

    /// firewalld's empty zone sub-chains are its scaffold, not findings; the same empty chain in a
    /// table without firewalld's dispatch chains, and an empty chain outside the scheme, still are.
    #[test]
    fn firewalld_zone_scaffold_is_not_a_finding() {
        let zone = "chain filter_INPUT { type filter hook input priority 10; policy accept; jump filter_INPUT_ZONES }
	chain filter_INPUT_ZONES { iifname \"eth0\" goto filter_IN_public }
	chain filter_IN_public { jump filter_IN_public_allow; jump filter_IN_public_deny; jump helper }
	chain filter_IN_public_allow { tcp dport 22 accept }
	chain filter_IN_public_deny { }
	chain helper { }";
        let firewalld = lint_text(&format!("table inet firewalld {{ {zone} }}"));
        let empty =
            |found: &[(FindingId, Severity, Option<String>, Option<usize>)]| -> Vec<String> {
                found
                    .iter()
                    .filter(|f| f.0 == FindingId::EmptyChain)
                    .filter_map(|f| f.2.clone())
                    .collect()
            };
        assert_eq!(empty(&firewalld), ["helper"], "{firewalld:?}");
        // Without the dispatch chain the row does not hold: the empty deny chain is reported.
        let bare = zone.replace("filter_INPUT_ZONES", "filter_INPUT_Z");
        let other = lint_text(&format!("table inet firewalld {{ {bare} }}"));
        assert_eq!(
            empty(&other),
            ["filter_IN_public_deny", "helper"],
            "{other:?}"
        );
    }
}
