//! The JSON view of a snapshot: the body of `/api/rules` and `nfscope rules --format json`.
//!
//! Owns the document shape: rulesets → tables → chains → rules, each rule with its 1-based index,
//! stable `rule_id`, canonical text, comment, counters, target, owner and Kubernetes meaning; then
//! ipsets, conntrack and the per-source reports as the model serializes them. Native nftables
//! tables follow the iptables rulesets as rulesets of backend `nftables` ([`crate::native_doc`]). The document is a
//! tree of borrowed, typed structs, so serializing it straight to text ([`rules_json_string`])
//! allocates little; [`rules_json`] gives a `serde_json::Value` for callers that want to edit it.
//! It does not own the meaning itself (`nfscope-annotate`) or the rule ids (see [`crate::labels`]).

use std::borrow::Cow;

use nfscope_annotate::{Annotation, Annotations, Meaning, PolicyVerdict};
use nfscope_ruleset::{
    Chain, ConntrackStats, Counters, IpSet, Notice, Rule, Ruleset, Snapshot, SourceReport, Table,
};
use serde::Serialize;
use serde_json::Value;

use crate::labels::RuleLabels;
use crate::native_doc::{NftRulesetDoc, native_rulesets};

/// The whole snapshot as a JSON value. `annotations` is parallel to `snapshot.rulesets`; a missing
/// entry gives `null` owners and meanings. Prefer [`rules_json_string`] for large rulesets.
pub fn rules_json(snapshot: &Snapshot, annotations: &[Annotations]) -> Value {
    let labels = labels_of(snapshot);
    serde_json::to_value(document(snapshot, annotations, &labels)).unwrap_or(Value::Null)
}

/// The same document as [`rules_json`], serialized directly to compact JSON text.
pub fn rules_json_string(snapshot: &Snapshot, annotations: &[Annotations]) -> String {
    let labels = labels_of(snapshot);
    serde_json::to_string(&document(snapshot, annotations, &labels))
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

fn labels_of(snapshot: &Snapshot) -> Vec<RuleLabels> {
    snapshot.rulesets.iter().map(RuleLabels::new).collect()
}

#[derive(Serialize)]
struct Document<'a> {
    rulesets: Vec<AnyRuleset<'a>>,
    ipsets: &'a [IpSet],
    conntrack: &'a Option<ConntrackStats>,
    sources: &'a [SourceReport],
}

/// An iptables ruleset, or the native nftables tables of one family ([`crate::native_doc`]).
#[derive(Serialize)]
#[serde(untagged)]
enum AnyRuleset<'a> {
    Iptables(RulesetDoc<'a>),
    Nftables(NftRulesetDoc),
}

#[derive(Serialize)]
struct RulesetDoc<'a> {
    family: &'static str,
    backend: &'static str,
    /// The dump had no header: `backend` was inferred from what it holds.
    backend_guessed: bool,
    notices: &'a [Notice],
    tables: Vec<TableDoc<'a>>,
}

#[derive(Serialize)]
struct TableDoc<'a> {
    name: &'a str,
    chains: Vec<ChainDoc<'a>>,
}

#[derive(Serialize)]
struct ChainDoc<'a> {
    name: &'a str,
    policy: Option<&'static str>,
    packets: Option<u64>,
    bytes: Option<u64>,
    #[serde(flatten)]
    annotation: AnnotationDoc<'a>,
    rules: Vec<RuleDoc<'a>>,
}

#[derive(Serialize)]
struct RuleDoc<'a> {
    index: usize,
    rule_id: &'a str,
    rule: Cow<'a, str>,
    comment: Cow<'a, str>,
    packets: Option<u64>,
    bytes: Option<u64>,
    target: Option<&'a str>,
    #[serde(flatten)]
    annotation: AnnotationDoc<'a>,
}

/// `owner`, `meaning`, `summary`, `policy_verdict`; all `null` without annotations.
#[derive(Serialize)]
struct AnnotationDoc<'a> {
    owner: Option<&'static str>,
    meaning: Option<&'a Meaning>,
    summary: Option<String>,
    policy_verdict: Option<PolicyVerdict>,
}

impl<'a> AnnotationDoc<'a> {
    fn of(ann: Option<&'a Annotation>) -> Self {
        let meaning = ann.and_then(|a| a.meaning.as_ref());
        Self {
            owner: ann.map(|a| a.owner.as_str()),
            meaning,
            summary: meaning.map(Meaning::summary),
            policy_verdict: ann.and_then(|a| a.policy_verdict),
        }
    }
}

fn document<'a>(
    snapshot: &'a Snapshot,
    annotations: &'a [Annotations],
    labels: &'a [RuleLabels],
) -> Document<'a> {
    let rulesets = snapshot
        .rulesets
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (rs, l))| AnyRuleset::Iptables(ruleset_doc(rs, annotations.get(i), l)))
        .chain(
            native_rulesets(&snapshot.nftables)
                .into_iter()
                .map(AnyRuleset::Nftables),
        )
        .collect();
    Document {
        rulesets,
        ipsets: &snapshot.ipsets,
        conntrack: &snapshot.conntrack,
        sources: &snapshot.sources,
    }
}

fn ruleset_doc<'a>(
    rs: &'a Ruleset,
    ann: Option<&'a Annotations>,
    labels: &'a RuleLabels,
) -> RulesetDoc<'a> {
    RulesetDoc {
        family: rs.family.as_str(),
        backend: rs.backend.as_str(),
        backend_guessed: rs.backend_guessed,
        notices: &rs.notices,
        tables: rs
            .tables
            .iter()
            .enumerate()
            .map(|(t, table)| table_doc(t, table, ann, labels))
            .collect(),
    }
}

fn table_doc<'a>(
    t: usize,
    table: &'a Table,
    ann: Option<&'a Annotations>,
    labels: &'a RuleLabels,
) -> TableDoc<'a> {
    let chains = table.chains.iter().enumerate();
    TableDoc {
        name: &table.name,
        chains: chains
            .map(|(c, ch)| chain_doc((t, c), ch, ann, labels))
            .collect(),
    }
}

fn chain_doc<'a>(
    (t, c): (usize, usize),
    chain: &'a Chain,
    ann: Option<&'a Annotations>,
    labels: &'a RuleLabels,
) -> ChainDoc<'a> {
    let rules = chain.rules.iter().enumerate();
    ChainDoc {
        name: &chain.name,
        policy: chain.policy.map(|p| p.as_str()),
        packets: chain.counters.map(|k| k.packets),
        bytes: chain.counters.map(|k| k.bytes),
        annotation: AnnotationDoc::of(ann.map(|a| a.chain(t, c))),
        rules: rules
            .map(|(r0, rule)| rule_doc((t, c, r0), rule, ann, labels))
            .collect(),
    }
}

fn rule_doc<'a>(
    (t, c, r0): (usize, usize, usize),
    rule: &'a Rule,
    ann: Option<&'a Annotations>,
    labels: &'a RuleLabels,
) -> RuleDoc<'a> {
    let counters: Option<Counters> = rule.counters;
    RuleDoc {
        index: r0 + 1,
        rule_id: labels.ids().get(t, c, r0),
        rule: labels.rule_text(t, c, r0),
        comment: labels.comment(t, c, r0),
        packets: counters.map(|k| k.packets),
        bytes: counters.map(|k| k.bytes),
        target: rule.spec.target_name(),
        annotation: AnnotationDoc::of(ann.map(|a| a.rule(t, c, r0))),
    }
}
