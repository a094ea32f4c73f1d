//! Rule order inside a chain: exact duplicates, sibling duplicates (same match, sibling targets),
//! rules shadowed by an earlier terminal rule, and rules after an unconditional terminal rule.
//!
//! Every judgement reads the rules' typed form ([`Ctx::typed`]): coverage is three-valued
//! ([`crate::cover`], shared with the native checks): a rule is only called shadowed when an
//! earlier rule that ends the chain provably matches every packet it matches; copies are found by
//! the canonical key of [`crate::canon`]. Messages show the rules as the dump wrote them. It does
//! not look across chains.

use std::collections::HashMap;
use std::sync::Arc;

use nfscope_ruleset::typed::{Expr, NatAddr, NatKind, NftFamily, TypedRule, Value, Verdict};
use nfscope_ruleset::{Chain, Family, Rule, render_rule_spec};

use super::Ctx;
use crate::canon::{match_key, rule_key, statement_key};
use crate::cover::{Coverers, Shape};
use crate::finding::{FindingId, Severity};

/// Runs the order checks of every chain.
pub fn check(ctx: &mut Ctx<'_>) {
    let ruleset = ctx.ruleset;
    let typed = Arc::clone(&ctx.typed);
    for (t, table) in ruleset.tables.iter().enumerate() {
        for (c, chain) in table.chains.iter().enumerate() {
            let rules = &typed.tables[t].chains[c].rules;
            let shapes: Vec<Shape<'_>> = rules.iter().map(Shape::of).collect();
            let duplicates = duplicates(ctx, t, c, chain, rules, &shapes);
            let catch_all = catch_all(ctx, t, c, chain, &shapes);
            let end = catch_all.map_or(chain.rules.len(), |i| i + 1);
            shadowed(
                ctx,
                (t, c),
                &chain.rules[..end],
                &shapes[..end],
                &duplicates,
            );
        }
    }
}

/// Reports duplicates; returns the indices reported as exact copies (not reported again as shadowed).
fn duplicates(
    ctx: &mut Ctx<'_>,
    t: usize,
    c: usize,
    chain: &Chain,
    rules: &[TypedRule],
    shapes: &[Shape<'_>],
) -> Vec<usize> {
    let mut exact: HashMap<String, usize> = HashMap::new();
    let mut by_match: HashMap<String, usize> = HashMap::new();
    let mut copies = Vec::new();
    for (r, rule) in chain.rules.iter().enumerate() {
        let key = rule_key(&rules[r]);
        if let Some(&first) = exact.get(&key) {
            copies.push(r);
            exact_duplicate(ctx, (t, c), first, r, rule, &shapes[r]);
            continue;
        }
        exact.insert(key, r);
        let key = match_key(&shapes[r]);
        match by_match.get(&key) {
            Some(&first) if siblings(&shapes[first], &shapes[r]) => {
                sibling_duplicate(ctx, (t, c), first, r, &shapes[first], &shapes[r]);
            }
            Some(_) => {}
            None => {
                by_match.insert(key, r);
            }
        }
    }
    copies
}

fn exact_duplicate(
    ctx: &mut Ctx<'_>,
    (t, c): (usize, usize),
    first: usize,
    r: usize,
    rule: &Rule,
    shape: &Shape<'_>,
) {
    let effect = if shape.ends_chain {
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
/// different NAT destinations: the first one takes the traffic. Not when the later rule's match
/// changes from one evaluation to the next (a draw, a limit, something unmodelled).
fn siblings(first: &Shape<'_>, later: &Shape<'_>) -> bool {
    let stateful = later.conditions.iter().any(|e| match e {
        Expr::Match(m) => draws(&m.key),
        _ => true,
    });
    !stateful
        && !first.statements.is_empty()
        && !later.statements.is_empty()
        && statement_key(first) != statement_key(later)
        && (sibling_chains(first, later) || same_nat(first, later))
}

/// A key whose value is drawn anew at each evaluation (`numgen`, `statistic`, hashes).
pub fn draws(key: &nfscope_ruleset::typed::Key) -> bool {
    use nfscope_ruleset::typed::Key;
    match key {
        Key::Numgen { .. } | Key::Hash(_) => true,
        Key::Masked { key, .. } => draws(key),
        Key::Concat(keys) => keys.iter().any(draws),
        _ => false,
    }
}

/// The rule's only statement is a jump or goto to this chain.
fn only_jump<'a>(shape: &Shape<'a>) -> Option<&'a str> {
    match shape.statements.as_slice() {
        [Expr::Verdict(Verdict::Jump(name) | Verdict::Goto(name))] => Some(name),
        _ => None,
    }
}

/// Two per-object chains of one kind: the same prefix and a generated suffix (`CNI-DN-<hash>`).
fn sibling_chains(a: &Shape<'_>, b: &Shape<'_>) -> bool {
    let family = |name: &str| {
        let (prefix, suffix) = name.rsplit_once('-')?;
        let generated = suffix.len() >= 8
            && suffix.chars().all(|c| c.is_ascii_alphanumeric())
            && suffix.chars().any(|c| c.is_ascii_digit());
        generated.then(|| prefix.to_owned())
    };
    match (only_jump(a), only_jump(b)) {
        (Some(a), Some(b)) => family(a).is_some() && family(a) == family(b),
        _ => false,
    }
}

/// The rule's NAT statement.
fn nat<'a>(shape: &Shape<'a>) -> Option<&'a nfscope_ruleset::typed::Nat> {
    shape.statements.iter().find_map(|e| match e {
        Expr::Nat(n) => Some(n),
        _ => None,
    })
}

fn same_nat(a: &Shape<'_>, b: &Shape<'_>) -> bool {
    match (nat(a), nat(b)) {
        (Some(a), Some(b)) => {
            a.kind == b.kind && matches!(a.kind, NatKind::Dnat | NatKind::Snat | NatKind::Redirect)
        }
        _ => false,
    }
}

fn sibling_duplicate(
    ctx: &mut Ctx<'_>,
    (t, c): (usize, usize),
    first: usize,
    r: usize,
    first_shape: &Shape<'_>,
    shape: &Shape<'_>,
) {
    let chain = &ctx.ruleset.tables[t].chains[c];
    let v6 = ctx.ruleset.family == Family::Ipv6;
    let message = format!(
        "rule {} matches exactly the same packets as rule {} but sends them to {} instead of {}: \
         once rule {}'s chain has translated or decided a packet this one never sees it, so only the \
         first mapping works. Stale copies like this are left behind when containers restart and \
         their port mappings are not cleaned up",
        r + 1,
        first + 1,
        target_name(&chain.rules[r], shape, v6),
        target_name(&chain.rules[first], first_shape, v6),
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

/// The target's name (as the dump wrote it) and, for DNAT, where it sends packets, in
/// iptables' `--to-destination` syntax.
fn target_name(rule: &Rule, shape: &Shape<'_>, v6: bool) -> String {
    let name = rule
        .spec
        .target
        .as_ref()
        .map_or_else(String::new, |t| t.name.clone());
    match nat(shape) {
        Some(n) if n.kind == NatKind::Dnat && (n.addr.is_some() || n.port.is_some()) => {
            format!("{name} {}", nat_to(n, v6))
        }
        _ => name,
    }
}

/// A NAT statement's address and port as iptables writes them (`A[-B][:P[-Q]]`, `[A]:P` for
/// IPv6).
fn nat_to(n: &nfscope_ruleset::typed::Nat, v6: bool) -> String {
    fn value(v: &Value) -> String {
        match v {
            Value::Addr(a) => a.to_string(),
            Value::Int(p) => p.to_string(),
            Value::Range(a, b) => format!("{}-{}", value(a), value(b)),
            other => nfscope_ruleset::nft::render_value(other, None),
        }
    }
    let addr = match &n.addr {
        Some(NatAddr::Value(v)) => value(v),
        Some(NatAddr::Map { .. }) | None => String::new(),
    };
    match &n.port {
        Some(p) if v6 && !addr.is_empty() => format!("[{addr}]:{}", value(p)),
        Some(p) => format!("{addr}:{}", value(p)),
        None => addr,
    }
}

/// Reports rules after the first unconditional terminal rule; returns its index.
fn catch_all(
    ctx: &mut Ctx<'_>,
    t: usize,
    c: usize,
    chain: &Chain,
    shapes: &[Shape<'_>],
) -> Option<usize> {
    let i = shapes
        .iter()
        .position(|s| s.ends_chain && s.matches_everything())?;
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

/// Reports rules covered by an earlier terminal rule (the earliest such rule is named).
fn shadowed(
    ctx: &mut Ctx<'_>,
    (t, c): (usize, usize),
    rules: &[Rule],
    shapes: &[Shape<'_>],
    skip: &[usize],
) {
    let family = match ctx.ruleset.family {
        Family::Ipv4 => NftFamily::Ip,
        Family::Ipv6 => NftFamily::Ip6,
    };
    let mut coverers = Coverers::default();
    for (j, shape) in shapes.iter().enumerate() {
        if !skip.contains(&j)
            && let Some(i) = coverers.first_covering(&shape.matches(), family)
        {
            report_shadowed(ctx, (t, c), i, j, rules, shapes);
        }
        if let Some(conds) = shape.covering() {
            coverers.add(j, conds);
        }
    }
}

fn report_shadowed(
    ctx: &mut Ctx<'_>,
    (t, c): (usize, usize),
    i: usize,
    j: usize,
    rules: &[Rule],
    shapes: &[Shape<'_>],
) {
    let (earlier, later) = (&rules[i], &rules[j]);
    let same_effect = statement_key(&shapes[i]) == statement_key(&shapes[j]);
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
