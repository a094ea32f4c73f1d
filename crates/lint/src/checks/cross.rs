//! Checks across rulesets: one family holding rules in both the nft and the legacy backend.
//!
//! Both rulesets are active in the kernel at the same time (each hook runs nf_tables and x_tables
//! chains), which is how "two kube-proxies" and "rules that are there but do nothing" happen. It
//! does not look inside a single ruleset (see the other check modules).

use nfscope_ruleset::{Backend, Family, Ruleset};

use super::kube::is_kube_chain;
use crate::finding::{Finding, FindingId, Location, Related, Severity};

/// What the cross-ruleset checks read of one ruleset: small enough for a server to keep per
/// ruleset after it let go of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RulesetFacts {
    /// The ruleset's family.
    pub family: Family,
    /// The ruleset's backend.
    pub backend: Backend,
    /// Rules in all its tables.
    pub rules: usize,
    /// Rules in its Kubernetes (`KUBE-*`) chains.
    pub kube_rules: usize,
}

impl RulesetFacts {
    /// The facts of `ruleset`.
    pub fn of(ruleset: &Ruleset) -> Self {
        Self {
            family: ruleset.family,
            backend: ruleset.backend,
            rules: ruleset.rule_count(),
            kube_rules: kube_rule_count(ruleset),
        }
    }
}

/// Reports each family whose nft and legacy rulesets both hold rules.
pub fn check(rulesets: &[Ruleset]) -> Vec<Finding> {
    let facts: Vec<RulesetFacts> = rulesets.iter().map(RulesetFacts::of).collect();
    check_facts(&facts)
}

/// [`check`] over the facts of each ruleset.
pub fn check_facts(rulesets: &[RulesetFacts]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        let with_rules = |backend: Backend| {
            rulesets
                .iter()
                .find(|r| r.family == family && r.backend == backend && r.rules > 0)
        };
        let (Some(nft), Some(legacy)) = (with_rules(Backend::Nft), with_rules(Backend::Legacy))
        else {
            continue;
        };
        let both_kube = nft.kube_rules > 0 && legacy.kube_rules > 0;
        let (severity, what) = if both_kube {
            (
                Severity::Error,
                "both hold Kubernetes (KUBE-*) rules: two generations of kube-proxy/kubelet rules are \
                 active at once, and the stale side still rewrites or drops traffic. Flush the backend \
                 the node no longer uses",
            )
        } else {
            (
                Severity::Warning,
                "both are active at once, in both orders of evaluation per hook; tools that read only one \
                 backend (and `iptables -L`) miss half of what decides a packet",
            )
        };
        let message = format!(
            "{family} rules exist in iptables-nft ({} rules) and iptables-legacy ({} rules): {what}",
            nft.rules, legacy.rules
        );
        findings.push(Finding {
            id: FindingId::MixedBackends,
            severity,
            family,
            backend: Backend::Nft,
            location: Location::default(),
            message,
            related: vec![Related {
                family,
                backend: Backend::Legacy,
                location: Location::default(),
                note: "the legacy ruleset".to_owned(),
            }],
            kube: None,
            nftables: None,
        });
    }
    findings
}

fn kube_rule_count(ruleset: &Ruleset) -> usize {
    ruleset
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .filter(|c| is_kube_chain(&c.name))
        .map(|c| c.rules.len())
        .sum()
}
