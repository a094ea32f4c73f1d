//! Rule order inside a chain: exact duplicates, sibling duplicates (same match, sibling targets),
//! rules shadowed by an earlier terminal rule, and rules after an unconditional terminal rule.
//!
//! Coverage is three-valued ([`crate::cover`]): a rule is only called shadowed when an earlier
//! terminal rule provably matches every packet it matches. It does not look across chains.

use std::collections::HashMap;

use nfscope_ruleset::{Chain, Rule, Target, render_rule_spec};

use super::{Ctx, is_terminal};
use crate::canon::{match_key, rule_key, target_key};
use crate::cover::{Tri, covers, matches_everything};
use crate::finding::{FindingId, Severity};

/// Modules whose outcome changes from one evaluation to the next: two rules with the same
/// matches including one of these do not see the same packets.
const STATEFUL_MODULES: &[&str] = &[
    "statistic",
    "recent",
    "limit",
    "hashlimit",
    "connlimit",
    "quota",
    "nth",
];

/// Runs the order checks of every chain.
pub fn check(ctx: &mut Ctx<'_>) {
    let ruleset = ctx.ruleset;
    for (t, table) in ruleset.tables.iter().enumerate() {
        for (c, chain) in table.chains.iter().enumerate() {
            let duplicates = duplicates(ctx, t, c, chain);
            let catch_all = catch_all(ctx, t, c, chain);
            let end = catch_all.map_or(chain.rules.len(), |i| i + 1);
            shadowed(ctx, (t, c), &chain.rules[..end], &duplicates);
        }
    }
}

/// Reports duplicates; returns the indices reported as exact copies (not reported again as shadowed).
fn duplicates(ctx: &mut Ctx<'_>, t: usize, c: usize, chain: &Chain) -> Vec<usize> {
    let mut exact: HashMap<String, usize> = HashMap::new();
    let mut by_match: HashMap<String, usize> = HashMap::new();
    let mut copies = Vec::new();
    for (r, rule) in chain.rules.iter().enumerate() {
        if let Some(&first) = exact.get(&rule_key(&rule.spec)) {
            copies.push(r);
            exact_duplicate(ctx, (t, c), first, r, rule);
            continue;
        }
        exact.insert(rule_key(&rule.spec), r);
        let key = match_key(&rule.spec, false);
        match by_match.get(&key) {
            Some(&first) if siblings(&chain.rules[first], rule) => {
                sibling_duplicate(ctx, (t, c), first, r, &chain.rules[first]);
            }
            Some(_) => {}
            None => {
                by_match.insert(key, r);
            }
        }
    }
    copies
}

fn exact_duplicate(ctx: &mut Ctx<'_>, (t, c): (usize, usize), first: usize, r: usize, rule: &Rule) {
    let effect = if is_terminal(rule.spec.target.as_ref()) {
        "the copy never sees a packet, because the first one already decides them all"
    } else {
        "every matching packet goes through it twice (counted, marked, logged or jumped twice)"
    };
    let message = format!(
        "rule {} is an exact copy of rule {} ({}): {effect}. Copies like this pile up when a tool's \
         `iptables -C` check misses its own rule (e.g. after a runtime or backend change) and it appends again",
        r + 1,
        first + 1,
        render_rule_spec(&rule.spec)
    );
    let related = vec![ctx.related(t, c, Some(first), "first copy")];
    ctx.report(
        FindingId::DuplicateRule,
        Severity::Warning,
        (t, Some(c), Some(r)),
        message,
        related,
    );
}

/// Same match (comments aside) leading to different chains of one family (`CNI-DN-…`) or to
/// different NAT destinations: the first one takes the traffic.
fn siblings(first: &Rule, later: &Rule) -> bool {
    let (Some(a), Some(b)) = (first.spec.target.as_ref(), later.spec.target.as_ref()) else {
        return false;
    };
    let stateful = later
        .spec
        .matches
        .iter()
        .any(|m| STATEFUL_MODULES.contains(&m.module.as_str()));
    !stateful
        && target_key(Some(a)) != target_key(Some(b))
        && (sibling_chains(a, b) || same_nat(a, b))
}

/// Two per-object chains of one kind: the same prefix and a generated suffix (`CNI-DN-<hash>`).
fn sibling_chains(a: &Target, b: &Target) -> bool {
    let family = |t: &Target| {
        let (prefix, suffix) = t.name.rsplit_once('-')?;
        let generated = suffix.len() >= 8
            && suffix.chars().all(|c| c.is_ascii_alphanumeric())
            && suffix.chars().any(|c| c.is_ascii_digit());
        generated.then(|| prefix.to_owned())
    };
    a.options.is_empty() && b.options.is_empty() && family(a).is_some() && family(a) == family(b)
}

fn same_nat(a: &Target, b: &Target) -> bool {
    a.name == b.name && matches!(a.name.as_str(), "DNAT" | "SNAT" | "REDIRECT")
}

fn sibling_duplicate(
    ctx: &mut Ctx<'_>,
    (t, c): (usize, usize),
    first: usize,
    r: usize,
    first_rule: &Rule,
) {
    let rule = &ctx.ruleset.tables[t].chains[c].rules[r];
    let message = format!(
        "rule {} matches exactly the same packets as rule {} but sends them to {} instead of {}: \
         once rule {}'s chain has translated or decided a packet this one never sees it, so only the \
         first mapping works. Stale copies like this are left behind when containers restart and \
         their port mappings are not cleaned up",
        r + 1,
        first + 1,
        target_name(rule),
        target_name(first_rule),
        first + 1,
    );
    let related = vec![ctx.related(t, c, Some(first), "same match, earlier")];
    ctx.report(
        FindingId::DuplicateRule,
        Severity::Warning,
        (t, Some(c), Some(r)),
        message,
        related,
    );
}

fn target_name(rule: &Rule) -> String {
    rule.spec
        .target
        .as_ref()
        .map_or_else(String::new, |t| match t.value("to-destination") {
            Some(dest) => format!("{} {dest}", t.name),
            None => t.name.clone(),
        })
}

/// Reports rules after the first unconditional terminal rule; returns its index.
fn catch_all(ctx: &mut Ctx<'_>, t: usize, c: usize, chain: &Chain) -> Option<usize> {
    let i = chain.rules.iter().position(|rule| {
        is_terminal(rule.spec.target.as_ref()) && matches_everything(&rule.spec)
    })?;
    if i + 1 >= chain.rules.len() {
        return None;
    }
    let after = chain.rules.len() - i - 1;
    let verdict = render_rule_spec(&chain.rules[i].spec);
    let message = format!(
        "rule {} ({verdict}) takes every packet, so the {after} rule(s) after it in {} never run{}",
        i + 1,
        chain.name,
        if after > 1 {
            format!(" (rules {} to {})", i + 2, chain.rules.len())
        } else {
            String::new()
        }
    );
    let mut related = vec![ctx.related(t, c, Some(i), "catch-all rule")];
    related
        .extend((i + 2..chain.rules.len()).map(|r| ctx.related(t, c, Some(r), "also unreachable")));
    ctx.report(
        FindingId::UnreachableAfterCatchAll,
        Severity::Error,
        (t, Some(c), Some(i + 1)),
        message,
        related,
    );
    Some(i)
}

/// Reports rules covered by an earlier terminal rule (the first such rule is named).
fn shadowed(ctx: &mut Ctx<'_>, (t, c): (usize, usize), rules: &[Rule], skip: &[usize]) {
    let family = ctx.ruleset.family;
    let mut coverers: Vec<usize> = Vec::new();
    for (j, later) in rules.iter().enumerate() {
        let covering = coverers.iter().copied().find(|&i| {
            !skip.contains(&j) && covers(&rules[i].spec, &later.spec, family) == Tri::Yes
        });
        if let Some(i) = covering {
            report_shadowed(ctx, (t, c), i, j, rules);
        }
        if is_terminal(later.spec.target.as_ref()) && could_cover(later) {
            coverers.push(j);
        }
    }
}

/// Cheap filter: a rule with an unmodelled module can never cover another.
fn could_cover(rule: &Rule) -> bool {
    rule.spec.matches.iter().all(|m| {
        matches!(
            m.module.as_str(),
            "comment" | "tcp" | "udp" | "sctp" | "multiport" | "icmp" | "icmp6"
        )
    })
}

fn report_shadowed(ctx: &mut Ctx<'_>, (t, c): (usize, usize), i: usize, j: usize, rules: &[Rule]) {
    let (earlier, later) = (&rules[i], &rules[j]);
    let same_effect =
        target_key(earlier.spec.target.as_ref()) == target_key(later.spec.target.as_ref());
    let (severity, tail) = if same_effect {
        (
            Severity::Info,
            "it has the same target, so it is only redundant",
        )
    } else {
        (Severity::Warning, "what it was meant to do never happens")
    };
    let message = format!(
        "rule {} ({}) can never match: every packet it matches is already decided by rule {} ({}); {tail}",
        j + 1,
        render_rule_spec(&later.spec),
        i + 1,
        render_rule_spec(&earlier.spec),
    );
    let related = vec![ctx.related(t, c, Some(i), "covering rule")];
    ctx.report(
        FindingId::ShadowedRule,
        severity,
        (t, Some(c), Some(j)),
        message,
        related,
    );
}
