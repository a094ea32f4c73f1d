//! The JSON view of a snapshot: the body of `/api/rules` and `nfscope rules --format json`.
//!
//! Owns the document shape: rulesets → tables → chains → rules, each rule with its 1-based index,
//! stable `rule_id`, canonical text, comment, counters, target, owner and Kubernetes meaning; then
//! ipsets, conntrack, the rule source and the per-source reports as the model serializes them.
//! Native nftables tables follow the iptables rulesets as rulesets of backend `nftables`
//! ([`crate::native_doc`]).
//! The document is a tree of borrowed, typed structs whose keys come in sorted order (nested
//! model types are sorted on the fly, one small item at a time), so it is written straight to a
//! [`std::io::Write`] ([`write_rules_json`], the bytes `serde_json::Value` would print) without a
//! tree of values or a second copy of the text; [`rules_json`] gives a `serde_json::Value` for
//! callers that want to edit it. It does not own the meaning itself (`nfscope-annotate`) or the
//! rule ids (see [`crate::labels`]).

use std::borrow::Cow;

use nfscope_annotate::{Annotation, Annotations, Meaning, PolicyVerdict};
use nfscope_ruleset::{
    Chain, ConntrackStats, Counters, IpSet, Notice, Rule, Ruleset, Snapshot, SourceReport, Table,
};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::labels::RuleLabels;
use crate::native_doc::{NftRulesetDoc, native_rulesets};

/// The whole snapshot as a JSON value. `annotations` is parallel to `snapshot.rulesets`; a missing
/// entry gives `null` owners and meanings. Prefer [`write_rules_json`] for large rulesets.
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

/// The same document, pretty-printed (two-space indent, keys sorted, a final newline) into
/// `out` as it is serialized: what `/api/rules` serves and `rules --format json` prints. The
/// bytes are those of `serde_json::to_string_pretty(&rules_json(..))` plus `\n`, without the
/// value tree in between.
pub fn write_rules_json<W: std::io::Write>(
    snapshot: &Snapshot,
    annotations: &[Annotations],
    mut out: W,
) -> Result<(), serde_json::Error> {
    let labels = labels_of(snapshot);
    serde_json::to_writer_pretty(&mut out, &document(snapshot, annotations, &labels))?;
    out.write_all(b"\n").map_err(serde_json::Error::io)
}

fn labels_of(snapshot: &Snapshot) -> Vec<RuleLabels> {
    snapshot.rulesets.iter().map(RuleLabels::new).collect()
}

/// A model type serialized with its keys sorted (through a small transient `Value`, as
/// `serde_json::Value` orders them), so the typed document prints like a value tree would.
struct Sorted<'a, T>(&'a T);

impl<T: Serialize> Serialize for Sorted<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::to_value(self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// A slice whose items are each [`Sorted`].
struct SortedItems<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for SortedItems<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Sorted))
    }
}

/// An optional model value, [`Sorted`] when present.
struct SortedOption<'a, T>(Option<&'a T>);

impl<T: Serialize> Serialize for SortedOption<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(value) => serializer.serialize_some(&Sorted(value)),
            None => serializer.serialize_none(),
        }
    }
}

// The fields of every document struct below are declared in sorted order: serde writes them in
// declaration order, and the document must print as a sorted value tree would.

#[derive(Serialize)]
struct Document<'a> {
    conntrack: SortedOption<'a, ConntrackStats>,
    ipsets: SortedItems<'a, IpSet>,
    rulesets: Vec<AnyRuleset<'a>>,
    /// Where the rule text came from, when the reader says (`Snapshot::rule_source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    sources: SortedItems<'a, SourceReport>,
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
    backend: &'static str,
    /// The dump had no header: `backend` was inferred from what it holds.
    backend_guessed: bool,
    family: &'static str,
    notices: SortedItems<'a, Notice>,
    tables: Vec<TableDoc<'a>>,
}

#[derive(Serialize)]
struct TableDoc<'a> {
    chains: Vec<ChainDoc<'a>>,
    name: &'a str,
}

/// A chain; `meaning`, `owner`, `policy_verdict` and `summary` are its [`AnnotationDoc`].
#[derive(Serialize)]
struct ChainDoc<'a> {
    bytes: Option<u64>,
    meaning: SortedOption<'a, Meaning>,
    name: &'a str,
    owner: Option<&'static str>,
    packets: Option<u64>,
    policy: Option<&'static str>,
    policy_verdict: Option<PolicyVerdict>,
    rules: Vec<RuleDoc<'a>>,
    summary: Option<String>,
}

/// A rule; `meaning`, `owner`, `policy_verdict` and `summary` are its [`AnnotationDoc`].
#[derive(Serialize)]
struct RuleDoc<'a> {
    bytes: Option<u64>,
    comment: Cow<'a, str>,
    index: usize,
    meaning: SortedOption<'a, Meaning>,
    owner: Option<&'static str>,
    packets: Option<u64>,
    policy_verdict: Option<PolicyVerdict>,
    rule: Cow<'a, str>,
    rule_id: &'a str,
    summary: Option<String>,
    target: Option<&'a str>,
}

/// `owner`, `meaning`, `summary`, `policy_verdict`; all `null` without annotations.
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
        conntrack: SortedOption(snapshot.conntrack.as_ref()),
        ipsets: SortedItems(&snapshot.ipsets),
        rulesets,
        source: Some(snapshot.rule_source.as_str()).filter(|s| !s.is_empty()),
        sources: SortedItems(&snapshot.sources),
    }
}

fn ruleset_doc<'a>(
    rs: &'a Ruleset,
    ann: Option<&'a Annotations>,
    labels: &'a RuleLabels,
) -> RulesetDoc<'a> {
    RulesetDoc {
        backend: rs.backend.as_str(),
        backend_guessed: rs.backend_guessed,
        family: rs.family.as_str(),
        notices: SortedItems(&rs.notices),
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
        chains: chains
            .map(|(c, ch)| chain_doc((t, c), ch, ann, labels))
            .collect(),
        name: &table.name,
    }
}

fn chain_doc<'a>(
    (t, c): (usize, usize),
    chain: &'a Chain,
    ann: Option<&'a Annotations>,
    labels: &'a RuleLabels,
) -> ChainDoc<'a> {
    let rules = chain.rules.iter().enumerate();
    let annotation = AnnotationDoc::of(ann.map(|a| a.chain(t, c)));
    ChainDoc {
        bytes: chain.counters.map(|k| k.bytes),
        meaning: SortedOption(annotation.meaning),
        name: &chain.name,
        owner: annotation.owner,
        packets: chain.counters.map(|k| k.packets),
        policy: chain.policy.map(|p| p.as_str()),
        policy_verdict: annotation.policy_verdict,
        rules: rules
            .map(|(r0, rule)| rule_doc((t, c, r0), rule, ann, labels))
            .collect(),
        summary: annotation.summary,
    }
}

fn rule_doc<'a>(
    (t, c, r0): (usize, usize, usize),
    rule: &'a Rule,
    ann: Option<&'a Annotations>,
    labels: &'a RuleLabels,
) -> RuleDoc<'a> {
    let counters: Option<Counters> = rule.counters;
    let annotation = AnnotationDoc::of(ann.map(|a| a.rule(t, c, r0)));
    RuleDoc {
        bytes: counters.map(|k| k.bytes),
        comment: labels.comment(t, c, r0),
        index: r0 + 1,
        meaning: SortedOption(annotation.meaning),
        owner: annotation.owner,
        packets: counters.map(|k| k.packets),
        policy_verdict: annotation.policy_verdict,
        rule: labels.rule_text(t, c, r0),
        rule_id: labels.ids().get(t, c, r0),
        summary: annotation.summary,
        target: rule.spec.target_name(),
    }
}
