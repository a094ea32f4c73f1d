//! The chain graph of each table: jumps to chains that do not exist, jumps that loop, user chains
//! nothing jumps to, referenced chains without rules, and `-m set` matches on ipsets the ipset
//! dump lacks. Chains are looked up through one [`nfscope_ruleset::ChainIndex`] per table, so the
//! checks stay linear in chains plus rules.
//!
//! A chain a stock tool leaves empty or unhooked by design (ufw's, Docker's, kube-proxy's, … see
//! [`crate::scaffold`]) draws no finding. Per-object Kubernetes chains (`KUBE-SVC-…`) that nothing
//! references are left to [`super::kube`], which says *why* they are there. Whether a jump is ever *taken* is not judged here (see [`super::order`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use nfscope_ruleset::typed::{Expr, TypedRule, Verdict};
use nfscope_ruleset::{ChainIndex, Family, Table};

use super::{Ctx, chain_target, kube, set_refs};
use crate::finding::{FindingId, Severity};
use crate::scaffold::Expected;

/// Runs the structure checks of one ruleset.
pub fn check(ctx: &mut Ctx<'_>) {
    let ruleset = ctx.ruleset;
    let typed = Arc::clone(&ctx.typed);
    for (t, table) in ruleset.tables.iter().enumerate() {
        let index = table.chain_index();
        missing_targets(ctx, t, &index);
        jump_loop(ctx, t, table, &index);
        let refs = references_in(
            table,
            typed.tables[t].chains.iter().map(|c| c.rules.as_slice()),
        );
        let complete = kube::shows_hooks(table);
        for (c, chain) in table.chains.iter().enumerate() {
            if chain.is_builtin() || kube::is_per_object_chain(&chain.name) {
                continue;
            }
            let expected = match (
                refs.contains_key(chain.name.as_str()),
                chain.rules.is_empty(),
            ) {
                (false, _) if !complete => continue,
                (false, true) => Expected::UnhookedEmpty,
                (false, false) => Expected::UnhookedWithRules,
                (true, true) => Expected::Empty,
                (true, false) => continue,
            };
            if ctx.scaffolds.expects(&chain.name, expected).is_some() {
                continue;
            }
            if expected == Expected::Empty {
                let message = format!(
                    "chain {} has no rules: every jump to it returns at once and does nothing",
                    chain.name
                );
                ctx.report(
                    FindingId::EmptyChain,
                    Severity::Info,
                    (t, Some(c), None),
                    message,
                    vec![],
                );
            } else {
                unreferenced(ctx, t, c);
            }
        }
        missing_ipsets(ctx, t);
    }
}

/// For each user chain, the (chain, rule) indices of the rules in *other* chains that jump or go
/// to it.
pub fn references(table: &Table) -> HashMap<&str, Vec<(usize, usize)>> {
    // A jump's target does not depend on the family the rule is lowered for.
    let typed: Vec<Vec<TypedRule>> = table
        .chains
        .iter()
        .map(|c| {
            c.rules
                .iter()
                .enumerate()
                .map(|(i, r)| r.typed(Family::Ipv4, i + 1))
                .collect()
        })
        .collect();
    references_in(table, typed.iter().map(Vec::as_slice))
}

/// [`references`] over the rules of `table` already lowered (`typed`: each chain's rules, in
/// chain order).
pub fn references_in<'a, 't>(
    table: &'a Table,
    typed: impl Iterator<Item = &'t [TypedRule]>,
) -> HashMap<&'a str, Vec<(usize, usize)>> {
    let index = table.chain_index();
    let mut refs: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (c, (chain, rules)) in table.chains.iter().zip(typed).enumerate() {
        for (r, rule) in rules.iter().enumerate() {
            let Some(name) = chain_target(rule).filter(|n| *n != chain.name) else {
                continue;
            };
            // Keyed by the table's own name of the chain: only chains that exist are referenced.
            if let Some(target) = index.get(name) {
                refs.entry(table.chains[target].name.as_str())
                    .or_default()
                    .push((c, r));
            }
        }
    }
    refs
}

fn unreferenced(ctx: &mut Ctx<'_>, t: usize, c: usize) {
    let chain = &ctx.ruleset.tables[t].chains[c];
    let (severity, message) = if chain.rules.is_empty() {
        (
            Severity::Info,
            format!(
                "chain {} is empty and nothing jumps to it: a leftover, harmless",
                chain.name
            ),
        )
    } else {
        (
            Severity::Warning,
            format!(
                "nothing jumps to chain {}, so its {} rule(s) never run; a leftover from a tool that \
                 was removed or reconfigured, or a missing hook rule",
                chain.name,
                chain.rules.len()
            ),
        )
    };
    ctx.report(
        FindingId::UnreferencedChain,
        severity,
        (t, Some(c), None),
        message,
        vec![],
    );
}

/// The table's jump loop, if any: an error when a built-in chain reaches it (the kernel refuses
/// the table; the parser refuses such a dump, so this comes from rulesets built otherwise), a
/// warning when nothing reaches it (loaded, but any jump into it from a hook will be refused).
fn jump_loop(ctx: &mut Ctx<'_>, t: usize, table: &Table, index: &ChainIndex<'_>) {
    let Some(found) = table.jump_loop() else {
        return;
    };
    let place =
        |jump: &nfscope_ruleset::LoopJump| index.get(&jump.chain).map(|c| (c, jump.rule_index - 1));
    let Some((c, r)) = found.jumps.first().and_then(place) else {
        return;
    };
    let (severity, consequence) = if found.reachable {
        (
            Severity::Error,
            "a built-in chain reaches it, so the kernel refuses to load this table (\"Too many links\")",
        )
    } else {
        (
            Severity::Warning,
            "no built-in chain reaches it yet, but the kernel will refuse any rule that jumps into it from a hook",
        )
    };
    let message = format!("jumps form a loop: {found}; {consequence}");
    let related = found
        .jumps
        .iter()
        .skip(1)
        .filter_map(place)
        .map(|(c, r)| ctx.related(t, c, Some(r), "jump in the loop"))
        .collect();
    ctx.report(
        FindingId::JumpLoop,
        severity,
        (t, Some(c), Some(r)),
        message,
        related,
    );
}

fn missing_targets(ctx: &mut Ctx<'_>, t: usize, index: &ChainIndex<'_>) {
    let typed = Arc::clone(&ctx.typed);
    let table = &typed.tables[t];
    for (c, chain) in table.chains.iter().enumerate() {
        for (r, rule) in chain.rules.iter().enumerate() {
            let Some(target) = chain_target(rule) else {
                continue;
            };
            if index.contains(target) {
                continue;
            }
            let goto = rule
                .exprs
                .iter()
                .any(|e| matches!(e, Expr::Verdict(Verdict::Goto(_))));
            let verb = if goto { "goes (-g) to" } else { "jumps to" };
            let message = format!(
                "rule {verb} chain {target}, which table {} does not have: iptables-restore rejects \
                 the whole table (\"Couldn't load target\"), so none of its rules would load from this dump",
                table.name
            );
            ctx.report(
                FindingId::MissingJumpTarget,
                Severity::Error,
                (t, Some(c), Some(r)),
                message,
                vec![],
            );
        }
    }
}

fn missing_ipsets(ctx: &mut Ctx<'_>, t: usize) {
    let Some(ipsets) = ctx.ipsets else { return };
    let known: HashSet<&str> = ipsets.iter().map(|s| s.name.as_str()).collect();
    let typed = Arc::clone(&ctx.typed);
    for (c, chain) in typed.tables[t].chains.iter().enumerate() {
        for (r, rule) in chain.rules.iter().enumerate() {
            for name in set_refs(rule) {
                if known.contains(name) {
                    continue;
                }
                let message = format!(
                    "rule matches ipset {name}, which the ipset dump does not have: iptables-restore \
                     fails (\"Set {name} doesn't exist\") and the rule cannot be loaded"
                );
                ctx.report(
                    FindingId::MissingIpset,
                    Severity::Error,
                    (t, Some(c), Some(r)),
                    message,
                    vec![],
                );
            }
        }
    }
}
