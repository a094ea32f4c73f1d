//! `nfscope lint`: finds what is broken in iptables rulesets and native nftables tables before it
//! bites.
//!
//! [`lint`] reads parsed rulesets (one per family and backend, from dumps or the live node) and
//! returns [`Finding`]s, each with a stable id ([`FindingId`]), a [`Severity`], where it is, a
//! message saying the consequence in plain words, related places and the Kubernetes meaning of the
//! place. What a rule matches and does is judged on the typed rule model of
//! `nfscope_ruleset::typed` only — iptables rules lowered to it (`Ruleset::lower`), nft rules parsed
//! to it — so both languages share one coverage test ([`cover`]) and one canonical duplicate key
//! ([`canon`]), and the linter reads no option string; from the iptables model it takes only
//! names, positions and lines (and renders rules for messages). The checks: jumps to missing chains, jump loops, duplicate and shadowed rules (three-valued coverage,
//! see [`cover`]), rules after a catch-all, unreferenced and empty chains, kube-proxy services
//! without endpoints, stale kube-proxy chains, the NodePort rule order, garbled dumps, mixed
//! backends and incompatible tables; native nftables tables get the same ids where the meaning is
//! the same ([`native`], [`lint_nft`]), plus unreferenced sets and maps. Chains a stock tool (ufw, firewalld, Docker, kube-proxy,
//! Calico, Istio, …) leaves empty or unhooked by design are not findings: [`scaffold`] holds the
//! one table of those scaffolds, each with the findings it makes normal and why. Findings carry
//! the dump line of what they are about; for rules read live, whose dump the user never saw,
//! [`Finding::without_lines`] leaves table, chain and rule position only; offline, the renderers
//! can name each ruleset's file (`FILE:LINE`). [`report`] renders them as text, JSON or Prometheus metrics
//! ([`FindingCounts`]; when to lint again is the server's business, keyed by
//! `Ruleset::rules_id`). [`node`] judges node facts (sysctls, interfaces, routes, conntrack) for
//! `nfscope doctor`.
//!
//! It does no I/O: reading dumps and the node is the caller's job (`nfscope-kernel`, the CLI). It
//! does not parse rules or their options (`nfscope-ruleset`, which also tells a garbled NAT target:
//! `Rule::garbled_nat`) nor decide Kubernetes meaning (`nfscope-annotate`).

#![forbid(unsafe_code)]
pub mod canon;
pub mod checks;
pub mod cover;
pub mod finding;
pub mod native;
pub mod node;
pub mod report;
pub mod scaffold;

use std::collections::HashMap;

use nfscope_annotate::Annotations;
use nfscope_ruleset::{IpSet, Ruleset};

pub use checks::cross::RulesetFacts;
pub use finding::{Finding, FindingId, KubeContext, Location, Related, Severity, Summary};
pub use native::lint_nft;
pub use report::{
    FileOf, FindingCounts, encode_finding_metrics, render_doctor_json, render_doctor_text,
    render_json, render_json_from_files, render_text, render_text_from_files,
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

/// [`lint_one`] for a caller that has annotated the ruleset already: `annotations` must be
/// `nfscope_annotate::annotate(ruleset)` (the server annotates new rules for its Kubernetes
/// plan and hands the same annotations to its background lint instead of annotating twice).
pub fn lint_one_annotated(
    ruleset: &Ruleset,
    annotations: &Annotations,
    ipsets: Option<&[IpSet]>,
) -> Vec<Finding> {
    sorted(
        checks::lint_ruleset_annotated(ruleset, annotations, ipsets),
        ruleset,
    )
}

/// Which ipsets a ruleset's rules match, and how often: all `missing-ipset` needs of a ruleset,
/// small enough for a server to keep after it let go of the rules, so a change of the node's
/// ipsets needs no new lint. `lint_one(r, None)` plus `IpsetRefs::of(r).missing(sets)` counts
/// what `lint_one(r, sets)` finds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpsetRefs(Vec<(String, u64)>);

impl IpsetRefs {
    /// The ipset matches of `ruleset`'s rules, by set name.
    pub fn of(ruleset: &Ruleset) -> Self {
        let mut refs: HashMap<String, u64> = HashMap::new();
        for t in &ruleset.tables {
            for c in &t.chains {
                // Only rules with a `set` match can look an ipset up: the others are not
                // lowered (this runs on the server's collection path).
                let with_sets = c
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.spec.matches.iter().any(|m| m.module == "set"));
                for (i, rule) in with_sets {
                    let typed = rule.typed(ruleset.family, i + 1);
                    for name in checks::set_refs(&typed) {
                        *refs.entry(name.to_owned()).or_default() += 1;
                    }
                }
            }
        }
        let mut refs: Vec<(String, u64)> = refs.into_iter().collect();
        refs.sort();
        Self(refs)
    }

    /// The `missing-ipset` findings against the node's ipsets (none when they are unknown).
    pub fn missing(&self, ipsets: Option<&[IpSet]>) -> FindingCounts {
        let mut counts = FindingCounts::default();
        let Some(ipsets) = ipsets else {
            return counts;
        };
        let known: std::collections::HashSet<&str> =
            ipsets.iter().map(|s| s.name.as_str()).collect();
        let missing = self
            .0
            .iter()
            .filter(|(name, _)| !known.contains(name.as_str()))
            .map(|(_, n)| n)
            .sum();
        counts.add_count(FindingId::MissingIpset, Severity::Error, missing);
        counts
    }
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
