//! The JSON and text views of native nftables tables (the typed rules in
//! [`NftablesState::ruleset`]), in the shape the iptables rulesets have in `/api/rules` and
//! `nfscope rules`.
//!
//! Owns the native part of the document: one ruleset per nft family (`family` `ipv4`, `ipv6`,
//! `inet`, `arp`, `bridge`, `netdev`; `backend` `nftables`), tables, chains with type, hook,
//! priority and policy, rules with their 1-based index as `nft list` shows it, kernel handle,
//! `rule_id`, canonical nft text (counter values left out, as in the metric labels), comment,
//! counters and verdict, and sets and maps with their element counts as `nft list` shows them.
//! Counters are the freshest known: those the collection read for the rule's handle
//! ([`NftablesState::rules`]), else the values in the rule text. It does not own parsing or
//! rendering (`nfscope_ruleset::nft`) nor the Kubernetes meaning: `owner`, `meaning` and
//! `summary` of chains and rules come from `nfscope_annotate::annotate_native` (kube-proxy's
//! nftables mode, Calico, Docker, Istio; `other` and `null` for tables it does not know).

use std::collections::HashMap;
use std::fmt::Write as _;

use nfscope_annotate::{
    Annotation, Meaning, NativeAnnotations, Owner, PolicyVerdict, annotate_native,
};
use nfscope_ruleset::nft::{render_key, render_rule_without_counters, render_value};
use nfscope_ruleset::typed::{
    Expr, NftChain, NftFamily, NftRuleset, NftSetDef, NftTable, Policy, SetType, TypedRule, Verdict,
};
use nfscope_ruleset::{Counters, NftablesState};
use serde::Serialize;

use crate::labels::native_rule_id;

/// The JSON `family` of an nft family: `ipv4`/`ipv6` as the iptables rulesets say, else the nft
/// keyword.
pub(crate) fn family_label(family: NftFamily) -> &'static str {
    match family {
        NftFamily::Ip => "ipv4",
        NftFamily::Ip6 => "ipv6",
        other => other.as_str(),
    }
}

// Fields are declared in sorted order (by their JSON names): serde writes them in declaration
// order, and the document prints as a sorted value tree would.

#[derive(Serialize)]
pub(crate) struct NftRulesetDoc {
    backend: &'static str,
    backend_guessed: bool,
    family: &'static str,
    notices: Vec<String>,
    tables: Vec<NftTableDoc>,
}

#[derive(Serialize)]
struct NftTableDoc {
    chains: Vec<NftChainDoc>,
    comment: Option<String>,
    handle: Option<u64>,
    name: String,
    /// The nft family keyword (`ip`, `inet`, …).
    nft_family: &'static str,
    sets: Vec<NftSetDoc>,
}

#[derive(Serialize)]
struct NftChainDoc {
    bytes: Option<u64>,
    comment: Option<String>,
    handle: Option<u64>,
    hook: Option<&'static str>,
    /// Sorted keys (a `serde_json::Value` orders them), as the iptables document prints.
    meaning: Option<serde_json::Value>,
    name: String,
    owner: Option<&'static str>,
    packets: Option<u64>,
    /// `accept` or `drop` for a base chain (the kernel default `accept` when not listed).
    policy: Option<&'static str>,
    policy_verdict: Option<PolicyVerdict>,
    priority: Option<i32>,
    rules: Vec<NftRuleDoc>,
    summary: Option<String>,
    /// `filter`, `nat`, `route`; `null` for a regular chain.
    #[serde(rename = "type")]
    kind: Option<&'static str>,
}

#[derive(Serialize)]
struct NftRuleDoc {
    bytes: Option<u64>,
    comment: String,
    handle: Option<u64>,
    index: usize,
    meaning: Option<serde_json::Value>,
    /// Every expression is modelled (an evaluator can be certain about this rule).
    modelled: bool,
    owner: Option<&'static str>,
    packets: Option<u64>,
    policy_verdict: Option<PolicyVerdict>,
    rule: String,
    rule_id: String,
    summary: Option<String>,
    /// The rule's verdict as nft writes it (`accept`, `jump X`, `goto X`, …); `null` without one.
    target: Option<String>,
}

#[derive(Serialize)]
struct NftSetDoc {
    comment: Option<String>,
    data: Option<String>,
    /// Elements as `nft list` shows them (a range or prefix is one).
    elements: usize,
    flags: Vec<String>,
    handle: Option<u64>,
    key: String,
    /// `set`, `map` or `vmap` (a map whose data are verdicts).
    kind: &'static str,
    /// The Kubernetes meaning of the elements that have one (kube-proxy's `service-ips`,
    /// `no-endpoint-services`, …), in element order; empty for other sets.
    meanings: Vec<NftElementDoc>,
    name: String,
}

/// One set or map element with a meaning.
#[derive(Serialize)]
struct NftElementDoc {
    /// The element's key as `nft list` writes it (`10.43.0.10 . tcp . 53`).
    element: String,
    meaning: Option<serde_json::Value>,
    summary: String,
}

/// Fresh counters by (nft family, table, chain, handle).
type Fresh<'a> = HashMap<(&'a str, &'a str, &'a str, u64), Counters>;

fn fresh(state: &NftablesState) -> Fresh<'_> {
    state
        .rules
        .iter()
        .map(|r| {
            (
                (
                    r.family.as_str(),
                    r.table.as_str(),
                    r.chain.as_str(),
                    r.handle,
                ),
                r.counters,
            )
        })
        .collect()
}

/// Families in the order their first table is listed.
fn families(rs: &NftRuleset) -> Vec<NftFamily> {
    let mut out: Vec<NftFamily> = Vec::new();
    for t in &rs.tables {
        if !out.contains(&t.family) {
            out.push(t.family);
        }
    }
    out
}

/// The native rulesets of `state`, one per nft family; empty when the rules were not read.
pub(crate) fn native_rulesets(state: &NftablesState) -> Vec<NftRulesetDoc> {
    let Some(rs) = state.ruleset.as_deref() else {
        return Vec::new();
    };
    let fresh = fresh(state);
    let ann = annotate_native(rs);
    families(rs)
        .into_iter()
        .map(|family| NftRulesetDoc {
            family: family_label(family),
            backend: "nftables",
            backend_guessed: false,
            notices: rs.notices.clone(),
            tables: rs
                .tables
                .iter()
                .enumerate()
                .filter(|(_, t)| t.family == family)
                .map(|(i, t)| {
                    table_doc(
                        t,
                        &fresh,
                        &Place {
                            ann: &ann,
                            table: i,
                        },
                    )
                })
                .collect(),
        })
        .collect()
}

/// Where the annotations of one table are.
struct Place<'a> {
    ann: &'a NativeAnnotations,
    table: usize,
}

/// `owner`, `meaning` (sorted keys), `summary` and `policy_verdict` of one annotation.
type AnnFields = (
    Option<&'static str>,
    Option<serde_json::Value>,
    Option<String>,
    Option<PolicyVerdict>,
);

fn ann_fields(a: &Annotation) -> AnnFields {
    (
        Some(a.owner.as_str()),
        a.meaning
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok()),
        a.meaning.as_ref().map(Meaning::summary),
        a.policy_verdict,
    )
}

fn table_doc(t: &NftTable, fresh: &Fresh<'_>, place: &Place<'_>) -> NftTableDoc {
    NftTableDoc {
        name: t.name.clone(),
        nft_family: t.family.as_str(),
        handle: t.handle,
        comment: t.comment.clone(),
        chains: t
            .chains
            .iter()
            .enumerate()
            .map(|(ci, c)| chain_doc(t, c, fresh, place, ci))
            .collect(),
        sets: t
            .sets
            .iter()
            .enumerate()
            .map(|(si, s)| set_doc(s, place, si))
            .collect(),
    }
}

fn chain_doc(
    t: &NftTable,
    c: &NftChain,
    fresh: &Fresh<'_>,
    place: &Place<'_>,
    ci: usize,
) -> NftChainDoc {
    let base = c.base.as_ref();
    let (owner, meaning, summary, policy_verdict) = ann_fields(place.ann.chain(place.table, ci));
    NftChainDoc {
        name: c.name.clone(),
        handle: c.handle,
        kind: base.map(|b| b.kind.as_str()),
        hook: base.map(|b| b.hook.as_str()),
        priority: base.map(|b| b.priority),
        policy: base.map(|b| policy(b.policy)),
        packets: None,
        bytes: None,
        comment: c.comment.clone(),
        owner,
        meaning,
        summary,
        policy_verdict,
        rules: c
            .rules
            .iter()
            .enumerate()
            .map(|(ri, r)| {
                let a = place.ann.rule(place.table, ci, ri);
                rule_doc(t, c, r, fresh, a)
            })
            .collect(),
    }
}

fn policy(p: Option<Policy>) -> &'static str {
    match p {
        Some(Policy::Drop) => "drop",
        Some(Policy::Accept) | None => "accept",
    }
}

/// The rule's counters: the collection's for its handle, else the first inline counter's values.
pub(crate) fn rule_counters(
    t: &NftTable,
    c: &NftChain,
    r: &TypedRule,
    fresh: &Fresh<'_>,
) -> Option<Counters> {
    r.handle
        .and_then(|h| {
            fresh
                .get(&(t.family.as_str(), t.name.as_str(), c.name.as_str(), h))
                .copied()
        })
        .or_else(|| {
            r.exprs.iter().find_map(|e| match e {
                Expr::Counter {
                    counters: Some(k),
                    name: None,
                } => Some(*k),
                _ => None,
            })
        })
}

fn rule_doc(
    t: &NftTable,
    c: &NftChain,
    r: &TypedRule,
    fresh: &Fresh<'_>,
    a: &Annotation,
) -> NftRuleDoc {
    let text = render_rule_without_counters(r);
    let (owner, meaning, summary, policy_verdict) = ann_fields(a);
    let counters = rule_counters(t, c, r, fresh);
    NftRuleDoc {
        index: r.position,
        handle: r.handle,
        rule_id: native_rule_id(t.family.as_str(), &t.name, &c.name, &text),
        rule: text,
        comment: r.comment.clone().unwrap_or_default(),
        packets: counters.map(|k| k.packets),
        bytes: counters.map(|k| k.bytes),
        target: r.verdict().map(verdict_text),
        modelled: r.fully_modelled(),
        owner,
        meaning,
        summary,
        policy_verdict,
    }
}

/// A verdict as nft writes it.
pub(crate) fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject { with: None } => "reject".into(),
        Verdict::Reject { with: Some(w) } => format!("reject with {w}"),
        Verdict::Queue { .. } => "queue".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
    }
}

fn set_type(t: &SetType) -> String {
    match t {
        SetType::Types(v) => v.join(" . "),
        SetType::Typeof(ks) => ks.iter().map(render_key).collect::<Vec<_>>().join(" . "),
        SetType::Other(o) => o.clone(),
    }
}

fn set_doc(s: &NftSetDef, place: &Place<'_>, set: usize) -> NftSetDoc {
    let meanings = s
        .elements
        .iter()
        .enumerate()
        .filter_map(|(ei, e)| {
            let m = place.ann.element(place.table, set, ei)?;
            Some(NftElementDoc {
                element: render_value(&e.key, None),
                meaning: serde_json::to_value(m).ok(),
                summary: m.summary(),
            })
        })
        .collect();
    NftSetDoc {
        name: s.name.clone(),
        kind: if s.is_verdict_map() {
            "vmap"
        } else if s.is_map {
            "map"
        } else {
            "set"
        },
        handle: s.handle,
        key: set_type(&s.key),
        data: s.data.as_ref().map(set_type),
        flags: s.flags.clone(),
        elements: s.elements.len(),
        comment: s.comment.clone(),
        meanings,
    }
}

/// The terminal listing of the native tables: per family a heading, per table its chains (base
/// chains with type, hook, priority and policy; owner and meaning as for iptables chains) with
/// numbered rules, counters and handles, then
/// its sets and maps with their element counts.
pub(crate) fn write_native_text(out: &mut String, state: &NftablesState) {
    let Some(rs) = state.ruleset.as_deref() else {
        return;
    };
    let fresh = fresh(state);
    let ann = annotate_native(rs);
    for family in families(rs) {
        if !out.is_empty() {
            out.push('\n');
        }
        let tables: Vec<(usize, &NftTable)> = rs
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.family == family)
            .collect();
        let rules: usize = tables
            .iter()
            .flat_map(|(_, t)| &t.chains)
            .map(|c| c.rules.len())
            .sum();
        let _ = writeln!(
            out,
            "=== {} nftables ({} tables, {rules} rules) ===",
            family_label(family),
            tables.len()
        );
        for (ti, t) in tables {
            let _ = writeln!(out, "\ntable {} {}", t.family, t.name);
            for (ci, c) in t.chains.iter().enumerate() {
                let _ = write!(out, "\nChain {}", c.name);
                match &c.base {
                    Some(b) => {
                        let _ = write!(
                            out,
                            " (type {} hook {} priority {}; policy {})",
                            b.kind.as_str(),
                            b.hook.as_str(),
                            b.priority,
                            policy(b.policy)
                        );
                    }
                    None => {
                        let n = c.rules.len();
                        let _ = write!(out, " ({n} {})", if n == 1 { "rule" } else { "rules" });
                    }
                }
                let a = ann.chain(ti, ci);
                if a.owner != Owner::Other {
                    let _ = write!(out, "  [{}]", a.owner.as_str());
                }
                if let Some(m) = &a.meaning {
                    let _ = write!(out, "  # {}", m.summary());
                }
                out.push('\n');
                for r in &c.rules {
                    let _ = write!(out, "  {:>3}", r.position);
                    match rule_counters(t, c, r, &fresh) {
                        Some(k) => {
                            let _ = write!(out, " {:>10} {:>12}", k.packets, k.bytes);
                        }
                        None => {
                            let _ = write!(out, " {:>10} {:>12}", "-", "-");
                        }
                    }
                    let _ = write!(out, "  {}", render_rule_without_counters(r));
                    if let Some(h) = r.handle {
                        let _ = write!(out, "  # handle {h}");
                    }
                    out.push('\n');
                }
            }
            for (si, s) in t.sets.iter().enumerate() {
                let d = set_doc(
                    s,
                    &Place {
                        ann: &ann,
                        table: ti,
                    },
                    si,
                );
                let _ = writeln!(
                    out,
                    "\n{} {} ({}{}): {} {}",
                    d.kind,
                    d.name,
                    d.key,
                    d.data
                        .as_deref()
                        .map(|x| format!(" : {x}"))
                        .unwrap_or_default(),
                    d.elements,
                    if d.elements == 1 {
                        "element"
                    } else {
                        "elements"
                    }
                );
                for m in &d.meanings {
                    let _ = writeln!(out, "    {}  # {}", m.element, m.summary);
                }
            }
        }
    }
}
