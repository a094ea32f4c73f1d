//! The JSON view of a snapshot: the body of `/api/rules` and `nfscope rules --format json`.
//!
//! Owns the document shape: rulesets → tables → chains → rules, each rule with its 1-based index,
//! stable `rule_id`, canonical text, comment, counters, target, owner and Kubernetes meaning; then
//! ipsets, conntrack and the per-source reports as the model serializes them. It does not own
//! the meaning itself (`nfscope-annotate`) or the rule ids (see [`crate::labels`]).

use nfscope_annotate::{Annotation, Annotations};
use nfscope_ruleset::{Chain, Counters, Rule, Ruleset, Snapshot, Table};
use serde_json::{Map, Value, json};

use crate::labels::RuleLabels;

/// The whole snapshot as JSON. `annotations` is parallel to `snapshot.rulesets`; a missing entry
/// gives `null` owners and meanings.
pub fn rules_json(snapshot: &Snapshot, annotations: &[Annotations]) -> Value {
    let rulesets: Vec<Value> = snapshot
        .rulesets
        .iter()
        .enumerate()
        .map(|(i, rs)| ruleset_json(rs, annotations.get(i), &RuleLabels::new(rs)))
        .collect();
    json!({
        "rulesets": rulesets,
        "ipsets": to_json(&snapshot.ipsets),
        "conntrack": to_json(&snapshot.conntrack),
        "sources": to_json(&snapshot.sources),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn ruleset_json(rs: &Ruleset, ann: Option<&Annotations>, labels: &RuleLabels) -> Value {
    let tables: Vec<Value> = rs
        .tables
        .iter()
        .enumerate()
        .map(|(t, table)| table_json(t, table, ann, labels))
        .collect();
    json!({
        "family": rs.family.as_str(),
        "backend": rs.backend.as_str(),
        "notices": to_json(&rs.notices),
        "tables": tables,
    })
}

fn table_json(t: usize, table: &Table, ann: Option<&Annotations>, labels: &RuleLabels) -> Value {
    let chains: Vec<Value> = table
        .chains
        .iter()
        .enumerate()
        .map(|(c, chain)| chain_json(t, c, chain, ann, labels))
        .collect();
    json!({ "name": table.name, "chains": chains })
}

fn chain_json(
    t: usize,
    c: usize,
    chain: &Chain,
    ann: Option<&Annotations>,
    labels: &RuleLabels,
) -> Value {
    let rules: Vec<Value> = chain
        .rules
        .iter()
        .enumerate()
        .map(|(r0, rule)| rule_json(t, c, r0, rule, ann.map(|a| a.rule(t, c, r0)), labels))
        .collect();
    let mut obj = Map::new();
    obj.insert("name".into(), json!(chain.name));
    obj.insert("policy".into(), json!(chain.policy.map(|p| p.as_str())));
    insert_counters(&mut obj, chain.counters);
    insert_annotation(&mut obj, ann.map(|a| a.chain(t, c)));
    obj.insert("rules".into(), Value::Array(rules));
    Value::Object(obj)
}

fn rule_json(
    t: usize,
    c: usize,
    r0: usize,
    rule: &Rule,
    ann: Option<&Annotation>,
    labels: &RuleLabels,
) -> Value {
    let mut obj = Map::new();
    obj.insert("index".into(), json!(r0 + 1));
    obj.insert("rule_id".into(), json!(labels.ids().get(t, c, r0)));
    obj.insert("rule".into(), json!(labels.rule_text(t, c, r0)));
    obj.insert("comment".into(), json!(labels.comment(t, c, r0)));
    insert_counters(&mut obj, rule.counters);
    obj.insert("target".into(), json!(rule.spec.target_name()));
    insert_annotation(&mut obj, ann);
    Value::Object(obj)
}

fn insert_counters(obj: &mut Map<String, Value>, counters: Option<Counters>) {
    obj.insert("packets".into(), json!(counters.map(|c| c.packets)));
    obj.insert("bytes".into(), json!(counters.map(|c| c.bytes)));
}

/// `owner`, `meaning`, `summary` (and `policy_verdict` when the annotator gave one).
fn insert_annotation(obj: &mut Map<String, Value>, ann: Option<&Annotation>) {
    let meaning = ann.and_then(|a| a.meaning.as_ref());
    obj.insert("owner".into(), json!(ann.map(|a| a.owner.as_str())));
    obj.insert("meaning".into(), meaning.map_or(Value::Null, to_json));
    obj.insert(
        "summary".into(),
        json!(meaning.map(|m| m.summary().to_string())),
    );
    obj.insert(
        "policy_verdict".into(),
        ann.and_then(|a| a.policy_verdict.as_ref())
            .map_or(Value::Null, to_json),
    );
}
