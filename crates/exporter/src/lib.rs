//! The metric schema of nfscope and the JSON / text views of a [`Snapshot`].
//!
//! This crate owns *what* nfscope exports: the Prometheus text exposition (format 0.0.4, written
//! by hand into one `String`, see [`encode_metrics`], or streamed in chunks to a [`ChunkSink`],
//! see [`encode_metrics_streaming`]; both take the same path and give the same bytes), the stable `rule_id` of every rule
//! ([`rule_ids`], [`RuleLabels`]), the JSON behind `/api/rules` and `nfscope rules --format json`
//! ([`write_rules_json`], [`rules_json`], [`rules_json_string`]) and the terminal listing of `nfscope rules --format text` ([`rules_text`]).
//!
//! It is pure: no I/O, no clock, no state between calls. It does not collect anything (that is
//! `nfscope-kernel`), does not serve HTTP (the binary) and does not decide Kubernetes meaning
//! (`nfscope-annotate`; this crate only turns its [`Annotations`] into series and JSON).
//!
//! # Caching
//! Rendering and hashing every rule is the costly part of an encoding. [`RuleLabels`] holds those
//! strings for one ruleset and depends only on the rules' specs, not their counters, so a server
//! can keep one per ruleset, reuse it while `Ruleset::rules_id` says the rules are unchanged, and
//! call [`encode_counters_streaming`] with only the rules' counters (`RulesetCounters`).
//! [`encode_metrics`] builds them on the fly. The labels hold rule texts and comments already
//! escaped, so a rule series is written by copying its pieces. Every family is written through
//! `nfscope-expo`'s writer and its one label-value escape.

#![forbid(unsafe_code)]
use nfscope_expo as expo;

mod json;
mod kube;
pub mod kube_conntrack;
mod labels;
mod metrics;
mod native_doc;
mod nftables;
mod text;

use nfscope_ruleset::SourceKind;

pub use json::{rules_json, rules_json_string, write_rules_json};
pub use kube::{KubeConntrack, KubePlan};
pub use labels::{RuleIds, RuleLabels, native_rule_id, rule_ids};
pub use metrics::{
    CountedRules, Encoded, Streamed, encode_counters_streaming, encode_counters_streaming_with,
    encode_metrics, encode_metrics_streaming, encode_metrics_with_labels,
};
pub use nfscope_annotate::Annotations;
pub use nfscope_expo::{ChunkSink, Exposition, MetricFamilies, ScrapeFacts, SinkClosed};
pub use nftables::{NftablesFamilies, append_nftables_metrics};
pub use text::rules_text;

#[doc(no_inline)]
pub use nfscope_ruleset::Snapshot;

/// HTTP `Content-Type` of the exposition produced by [`encode_metrics`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether rule series carry the full canonical rule text as a `rule` label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RuleLabel {
    /// `rule="<canonical text after -A CHAIN>"` (retailnext-compatible; 100–200 bytes per series).
    #[default]
    Full,
    /// No `rule` label: `rule_id` and `comment` identify the rule.
    None,
}

/// Knobs of the exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Include the `rule` label or not.
    pub rule_label: RuleLabel,
    /// At most this many rules get `iptables_rule_{packets,bytes}_total` series (each rule gives one
    /// of each); the rest are counted in `nfscope_rule_series_dropped_total`. Rules are taken in
    /// snapshot order (ruleset, table, chain, rule).
    pub max_rule_series: usize,
    /// Which rules get `iptables_rule_*` series (and chains `iptables_rules`) at all.
    pub rule_series: RuleSeries,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            rule_label: RuleLabel::Full,
            max_rule_series: 500_000,
            rule_series: RuleSeries::All,
        }
    }
}

/// Which rules get per-rule series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleSeries {
    /// Every rule with counters (drop-in compatible with the iptables exporters).
    #[default]
    All,
    /// Only rules whose traffic no Kubernetes family already carries: rules and chains meaning
    /// one Service, endpoint, kube-router pod firewall or Calico policy/profile are left out
    /// (counted in `nfscope_rule_series_summarised`); the Kubernetes families stay whole.
    NotSummarised,
}

/// Counters and facts about nfscope itself that the server keeps and passes in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelfMetrics {
    /// Version for `nfscope_build_info{version}`.
    pub version: String,
    /// `/metrics` requests served, this one included.
    pub scrapes_total: u64,
    /// Rules dropped by `max_rule_series` in *earlier* scrapes. The encoder adds this scrape's
    /// drops (reported back in [`Encoded::rule_series_dropped`]) so the counter is current; the
    /// server adds that number to its running total afterwards.
    pub rule_series_dropped_total: u64,
    /// Failed collections per source since start (`nfscope_collection_errors_total`).
    pub collection_errors_total: Vec<(SourceKind, u64)>,
}

/// The `source`, `family` and `backend` label values of a source (`family`/`backend` are empty for
/// ipsets and conntrack; native nftables rules are `native_rules` with backend `nftables`).
pub fn source_labels(kind: &SourceKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        SourceKind::Rules { family, backend } => ("rules", family.as_str(), backend.as_str()),
        SourceKind::Ipsets => ("ipsets", "", ""),
        SourceKind::Conntrack => ("conntrack", "", ""),
        SourceKind::NativeRules => ("native_rules", "", "nftables"),
    }
}
