//! `nfscope lint`: finds what is broken in iptables rulesets before it bites.
//!
//! [`lint`] reads parsed rulesets (one per family and backend, from dumps or the live node) and
//! returns [`Finding`]s, each with a stable id ([`FindingId`]), a [`Severity`], where it is, a
//! message saying the consequence in plain words, related places and the Kubernetes meaning of the
//! place. The checks: jumps to missing chains, jump loops, duplicate and shadowed rules (three-valued coverage,
//! see [`cover`]), rules after a catch-all, unreferenced and empty chains, kube-proxy services
//! without endpoints, stale kube-proxy chains, the NodePort rule order, garbled dumps, mixed
//! backends and incompatible tables. [`report`] renders them as text, JSON or Prometheus metrics
//! ([`FindingCounts`]; when to lint again is the server's business, keyed by
//! `Ruleset::rules_id`). [`node`] judges node facts (sysctls, interfaces, routes, conntrack) for
//! `nfscope doctor`.
//!
//! It does no I/O: reading dumps and the node is the caller's job (`nfscope-kernel`, the CLI). It
//! does not parse (`nfscope-ruleset`) nor decide Kubernetes meaning (`nfscope-annotate`).

#![forbid(unsafe_code)]
pub mod canon;
pub mod checks;
pub mod cover;
pub mod finding;
pub mod node;
pub mod report;

use nfscope_ruleset::{IpSet, Ruleset};

pub use checks::cross::RulesetFacts;
pub use finding::{Finding, FindingId, KubeContext, Location, Related, Severity, Summary};
pub use report::{
    FindingCounts, encode_finding_metrics, render_doctor_json, render_doctor_text, render_json,
    render_text,
};

/// What to lint.
#[derive(Debug, Clone, Copy, Default)]
pub struct LintInput<'a> {
    /// The rulesets, e.g. IPv4 and IPv6 of each backend.
    pub rulesets: &'a [Ruleset],
    /// The node's ipsets, when known (enables `missing-ipset`).
    pub ipsets: Option<&'a [IpSet]>,
}

/// Lints one ruleset on its own: [`lint`] without the cross-ruleset checks (for those, see
/// [`lint_across`]), in the same order.
pub fn lint_one(ruleset: &Ruleset, ipsets: Option<&[IpSet]>) -> Vec<Finding> {
    sorted(checks::lint_ruleset(ruleset, ipsets), ruleset)
}

/// The cross-ruleset checks of [`lint`], over what they read of each ruleset.
pub fn lint_across(rulesets: &[RulesetFacts]) -> Vec<Finding> {
    checks::cross::check_facts(rulesets)
}

/// Lints every ruleset and the rulesets together. Findings come in ruleset order, then table,
/// chain and rule order, cross-ruleset findings last.
pub fn lint(input: &LintInput<'_>) -> Vec<Finding> {
    let mut findings: Vec<Finding> = input
        .rulesets
        .iter()
        .flat_map(|ruleset| lint_one(ruleset, input.ipsets))
        .collect();
    findings.extend(checks::cross::check(input.rulesets));
    findings
}

/// Orders one ruleset's findings by table, chain and rule position, then id (chains looked up
/// through one index per table, so sorting stays linear in findings plus chains).
fn sorted(mut findings: Vec<Finding>, ruleset: &Ruleset) -> Vec<Finding> {
    let indexes: Vec<_> = ruleset.tables.iter().map(|t| t.chain_index()).collect();
    let position = |f: &Finding| {
        let t = f
            .location
            .table
            .as_ref()
            .and_then(|n| ruleset.tables.iter().position(|t| &t.name == n));
        let c = t.and_then(|t| indexes[t].get(f.location.chain.as_ref()?));
        (
            t.map_or(0, |t| t + 1),
            c.map_or(0, |c| c + 1),
            f.location.rule_index.unwrap_or(0),
            f.id,
        )
    };
    findings.sort_by_cached_key(position);
    findings
}

/// Does any finding reach `threshold`?
pub fn reaches(findings: &[Finding], threshold: Severity) -> bool {
    findings.iter().any(|f| f.severity >= threshold)
}
