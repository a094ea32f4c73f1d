//! Checks across rulesets: one family holding rules in both the nft and the legacy backend.
//!
//! Both rulesets are active in the kernel at the same time (each hook runs nf_tables and x_tables
//! chains), which is how "two kube-proxies" and "rules that are there but do nothing" happen. It
//! does not look inside a single ruleset (see the other check modules).

use nfscope_ruleset::{Backend, Family, Ruleset};

use super::kube::is_kube_chain;
use crate::finding::{Finding, FindingId, Location, Related, Severity};

/// Reports each family whose nft and legacy rulesets both hold rules.
pub fn check(rulesets: &[Ruleset]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        let with_rules = |backend: Backend| {
            rulesets
                .iter()
                .find(|r| r.family == family && r.backend == backend && r.rule_count() > 0)
        };
        let (Some(nft), Some(legacy)) = (with_rules(Backend::Nft), with_rules(Backend::Legacy))
        else {
            continue;
        };
        let both_kube = kube_rule_count(nft) > 0 && kube_rule_count(legacy) > 0;
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
            nft.rule_count(),
            legacy.rule_count()
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
