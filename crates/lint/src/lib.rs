//! `nfscope lint`: finds what is broken in iptables rulesets before it bites.
//!
//! [`lint`] reads parsed rulesets (one per family and backend, from dumps or the live node) and
//! returns [`Finding`]s, each with a stable id ([`FindingId`]), a [`Severity`], where it is, a
//! message saying the consequence in plain words, related places and the Kubernetes meaning of the
//! place. The checks: jumps to missing chains, jump loops, duplicate and shadowed rules (three-valued coverage,
//! see [`cover`]), rules after a catch-all, unreferenced and empty chains, kube-proxy services
//! without endpoints, stale kube-proxy chains, the NodePort rule order, garbled dumps, mixed
//! backends and incompatible tables. [`report`] renders them as text, JSON or Prometheus metrics,
//! and [`LintCache`] reruns the lint only when the rules changed. [`node`] judges node facts
//! (sysctls, interfaces, routes, conntrack) for `nfscope doctor`.
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

use std::hash::{DefaultHasher, Hash, Hasher};

use nfscope_ruleset::{IpSet, Ruleset};

pub use finding::{Finding, FindingId, KubeContext, Location, Related, Severity, Summary};
pub use report::{
    encode_finding_metrics, render_doctor_json, render_doctor_text, render_json, render_text,
};

/// What to lint.
#[derive(Debug, Clone, Copy, Default)]
pub struct LintInput<'a> {
    /// The rulesets, e.g. IPv4 and IPv6 of each backend.
    pub rulesets: &'a [Ruleset],
    /// The node's ipsets, when known (enables `missing-ipset`).
    pub ipsets: Option<&'a [IpSet]>,
}

/// Lints every ruleset and the rulesets together. Findings come in ruleset order, then table,
/// chain and rule order, cross-ruleset findings last.
pub fn lint(input: &LintInput<'_>) -> Vec<Finding> {
    let mut findings: Vec<Finding> = input
        .rulesets
        .iter()
        .flat_map(|ruleset| sorted(checks::lint_ruleset(ruleset, input.ipsets), ruleset))
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

/// An in-process identity of rulesets and ipset names: everything the lint reads except counters
/// and line numbers. Equal fingerprints mean the lint would give the same findings (std's hasher
/// is deterministic within a process; the value is never persisted).
pub fn fingerprint(input: &LintInput<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    for ruleset in input.rulesets {
        (ruleset.family, ruleset.backend).hash(&mut h);
        for notice in &ruleset.notices {
            format!("{:?}", notice.kind).hash(&mut h);
        }
        for table in &ruleset.tables {
            table.name.hash(&mut h);
            for chain in &table.chains {
                (&chain.name, chain.policy, chain.rules.len()).hash(&mut h);
                chain.rules.iter().for_each(|r| r.spec.hash(&mut h));
            }
        }
    }
    if let Some(ipsets) = input.ipsets {
        ipsets.iter().for_each(|s| s.name.hash(&mut h));
    }
    h.finish()
}

/// The last lint's findings, recomputed only when the [`fingerprint`] changes (counters moving
/// does not count as a change). For a server that lints on every scrape.
#[derive(Debug, Default)]
pub struct LintCache {
    key: Option<u64>,
    findings: Vec<Finding>,
    runs: u64,
}

impl LintCache {
    /// The findings for `input`, from the cache when its rules are unchanged.
    pub fn findings(&mut self, input: &LintInput<'_>) -> &[Finding] {
        let key = fingerprint(input);
        if self.key != Some(key) {
            self.findings = lint(input);
            self.key = Some(key);
            self.runs += 1;
        }
        &self.findings
    }

    /// How many times the lint actually ran.
    pub fn runs(&self) -> u64 {
        self.runs
    }
}
