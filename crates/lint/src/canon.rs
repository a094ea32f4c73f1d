//! Canonical keys of rules, so two spellings of the same rule compare equal — one key for
//! iptables rules (lowered) and native nft rules alike.
//!
//! Owns the order-insensitive form used by duplicate detection, built from the typed rule model:
//! the conditions as canonical nft text, sorted (so `-m comment -m tcp` and `-m tcp -m comment`,
//! or `-p tcp --dport 80` and `-p tcp -m multiport --dports 80`, are one key), then the statements
//! in order, counters with their values left out (values differ between copies). It does not judge whether
//! two rules are equivalent in effect (see [`crate::cover`]).

use nfscope_ruleset::typed::{Expr, TypedRule};

use crate::cover::{Shape, condition_text};

/// The key of the whole rule, comments included; counters count as statements, their values do
/// not (`counter drop` is not `drop`, two copies of `counter packets 3 … drop` are one rule).
pub fn rule_key(rule: &TypedRule) -> String {
    let shape = Shape::of(rule);
    let mut key = match_key(&shape);
    key.push_str(" =>");
    for e in &rule.exprs {
        let text = match e {
            Expr::Counter { name, .. } => condition_text(&Expr::Counter {
                counters: None,
                name: name.clone(),
            }),
            e if shape.statements.iter().any(|s| std::ptr::eq(*s, e)) => condition_text(e),
            _ => continue,
        };
        key.push(' ');
        key.push_str(&text);
    }
    if let Some(c) = &rule.comment {
        key.push_str(" comment ");
        key.push_str(&format!("{c:?}"));
    }
    key
}

/// The key of what the rule matches (comments left out).
pub fn match_key(shape: &Shape<'_>) -> String {
    let mut conds: Vec<String> = shape.conditions.iter().map(|e| condition_text(e)).collect();
    conds.sort();
    conds.join(" ")
}

/// The key of what the rule does: its statements in order; empty for a rule without any.
pub fn statement_key(shape: &Shape<'_>) -> String {
    shape
        .statements
        .iter()
        .map(|e| condition_text(e))
        .collect::<Vec<_>>()
        .join(" ")
}
