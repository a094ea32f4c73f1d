//! Canonical keys of rules, so two spellings of the same rule compare equal.
//!
//! Owns the order-insensitive form used by duplicate detection: the base matches, then every match
//! module rendered with its options sorted, the modules sorted, then the target. It does not judge
//! whether two rules are equivalent in effect (see [`crate::cover`]).

use nfscope_ruleset::{Match, OptionArg, RuleSpec, Target, TargetKind};

/// The key of the whole rule, comments included.
pub fn rule_key(spec: &RuleSpec) -> String {
    let mut key = match_key(spec, true);
    key.push_str(" => ");
    key.push_str(&target_key(spec.target.as_ref()));
    key
}

/// The key of what the rule matches; with `with_comments == false` comments are left out.
pub fn match_key(spec: &RuleSpec, with_comments: bool) -> String {
    let mut parts = vec![format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        spec.only_family,
        spec.source,
        spec.destination,
        spec.in_interface,
        spec.out_interface,
        spec.protocol,
        spec.fragment
    )];
    let mut modules: Vec<String> = spec
        .matches
        .iter()
        .filter(|m| with_comments || m.module != "comment")
        .map(module_key)
        .collect();
    modules.sort();
    parts.extend(modules);
    parts.join(" ")
}

fn module_key(m: &Match) -> String {
    format!("-m {} {}", m.module, options_key(&m.options))
}

fn options_key(options: &[OptionArg]) -> String {
    let mut opts: Vec<String> = options
        .iter()
        .map(|o| {
            let bang = if o.negated { "! " } else { "" };
            format!("{bang}--{} {:?}", o.name, o.values)
        })
        .collect();
    opts.sort();
    opts.join(" ")
}

/// `-j NAME opts` / `-g NAME`, options sorted; empty for a rule without target.
pub fn target_key(target: Option<&Target>) -> String {
    target.map_or_else(String::new, |t| {
        let kind = match t.kind {
            TargetKind::Jump => "-j",
            TargetKind::Goto => "-g",
        };
        format!("{kind} {} {}", t.name, options_key(&t.options))
    })
}
