//! Kubernetes-specific checks: services kube-proxy says have no endpoints, kube-proxy chains that
//! are stale (unreferenced, or named with a hash that is not their service's), and the NodePort
//! jump that must stay last in nat `KUBE-SERVICES`.
//!
//! Meaning comes from `nfscope-annotate` (owners, services, chain-name hashes); this module only
//! judges. Generic graph checks are in [`super::structure`].

use std::collections::BTreeMap;

use nfscope_annotate::{HashCheck, Meaning};
use nfscope_ruleset::Table;
use nfscope_ruleset::typed::NftTable;

use super::structure::references_in;
use super::{Ctx, chain_target, set_refs};
use crate::finding::{FindingId, Related, Severity};

/// Prefixes of chains kube-proxy and kube-router create per service, endpoint, pod or policy.
const PER_OBJECT_PREFIXES: &[&str] = &[
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-XLB-",
    "KUBE-SEP-",
    "KUBE-POD-FW-",
    "KUBE-NWPLCY-",
    "KUBE-HP-",
];

/// Is this a chain kube-proxy, kubelet or kube-router (which reuses the prefix) owns by name?
pub fn is_kube_chain(name: &str) -> bool {
    name.starts_with("KUBE-")
}

/// Is this a per-object Kubernetes chain (`KUBE-SVC-<hash>`, `KUBE-POD-FW-<hash>`, …), as opposed
/// to a fixed one (`KUBE-SERVICES`, kube-router's `KUBE-NWPLCY-DEFAULT`)?
pub fn is_per_object_chain(name: &str) -> bool {
    PER_OBJECT_PREFIXES.iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty() && !matches!(rest, "DEFAULT" | "COMMON" | "TAIL"))
    })
}

/// Does the dump show the table's hook rules? kube-proxy's restore input leaves the built-in
/// chains out, so there "nothing jumps to it" says nothing. A saved table declares its built-in
/// chains with their policies even when no rule is in them: then it is complete, and an empty
/// hook really means nothing jumps to its user chains.
pub fn shows_hooks(table: &Table) -> bool {
    table
        .chains
        .iter()
        .any(|c| c.is_builtin() && (!c.rules.is_empty() || (c.line > 0 && c.policy.is_some())))
}

/// Runs the Kubernetes checks of one ruleset.
pub fn check(ctx: &mut Ctx<'_>) {
    no_endpoints(ctx);
    let ruleset = ctx.ruleset;
    let typed = std::sync::Arc::clone(&ctx.typed);
    let ipvs = typed.tables.iter().any(uses_ipvs);
    for (t, (table, typed)) in ruleset.tables.iter().zip(&typed.tables).enumerate() {
        stale_chains(ctx, t, table, typed, ipvs);
        service_chains_without_endpoints(ctx, t, table, typed);
        if table.name == "nat" {
            nodeports_last(ctx, t, typed);
        }
    }
}

/// kube-proxy in IPVS mode matches cluster IPs with the `KUBE-CLUSTER-IP` ipset.
fn uses_ipvs(table: &NftTable) -> bool {
    table
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .any(|r| set_refs(r).any(|s| s == "KUBE-CLUSTER-IP"))
}

/// (table, chain, rule) indices, rule 0-based.
type RulePlace = (usize, usize, usize);

/// One finding per service (and kind), at its first "has no (local) endpoints" rule.
fn no_endpoints(ctx: &mut Ctx<'_>) {
    let ruleset = ctx.ruleset;
    let mut by_service: BTreeMap<(String, bool), Vec<RulePlace>> = BTreeMap::new();
    for (t, table) in ruleset.tables.iter().enumerate() {
        for (c, chain) in table.chains.iter().enumerate() {
            for r in 0..chain.rules.len() {
                if let Some(Meaning::KubeNoEndpoints {
                    service,
                    local_only,
                }) = &ctx.annotations.rule(t, c, r).meaning
                {
                    by_service
                        .entry((service.to_string(), *local_only))
                        .or_default()
                        .push((t, c, r));
                }
            }
        }
    }
    let mut ordered: Vec<_> = by_service.into_iter().collect();
    ordered.sort_by_key(|(_, places)| places[0]);
    for ((service, local_only), places) in ordered {
        let (t, c, r) = places[0];
        let related: Vec<Related> = places[1..]
            .iter()
            .map(|&(t, c, r)| ctx.related(t, c, Some(r), "same service"))
            .collect();
        let (severity, message) = if local_only {
            (
                Severity::Info,
                format!(
                    "service {service} has no endpoints on this node and externalTrafficPolicy is Local: \
                     traffic for it that reaches this node is dropped (normal on nodes without its pods)"
                ),
            )
        } else {
            (
                Severity::Warning,
                format!(
                    "service {service} has no endpoints: kube-proxy rejects every connection to it \
                     (clients see \"connection refused\" / ICMP unreachable). Check its selector and \
                     whether its pods are ready"
                ),
            )
        };
        ctx.report(
            FindingId::KubeServiceNoEndpoints,
            severity,
            (t, Some(c), Some(r)),
            message,
            related,
        );
    }
}

/// A referenced `KUBE-SVC-`/`KUBE-SVL-` chain that jumps to no `KUBE-SEP-` chain.
fn service_chains_without_endpoints(ctx: &mut Ctx<'_>, t: usize, table: &Table, typed: &NftTable) {
    let refs = references_in(table, typed.chains.iter().map(|c| c.rules.as_slice()));
    for (c, (chain, typed)) in table.chains.iter().zip(&typed.chains).enumerate() {
        let service_chain =
            chain.name.starts_with("KUBE-SVC-") || chain.name.starts_with("KUBE-SVL-");
        if !service_chain || !refs.contains_key(chain.name.as_str()) {
            continue;
        }
        let has_endpoint = typed
            .rules
            .iter()
            .any(|r| chain_target(r).is_some_and(|n| n.starts_with("KUBE-SEP-")));
        if has_endpoint {
            continue;
        }
        let service = match &ctx.annotations.chain(t, c).meaning {
            Some(Meaning::KubeService { service, .. }) => format!("service {service}"),
            _ => "its service".to_owned(),
        };
        let message = format!(
            "service chain {} is jumped to but leads to no endpoint (KUBE-SEP-) chain: connections to \
             {service} are not load-balanced anywhere",
            chain.name
        );
        ctx.report(
            FindingId::KubeServiceNoEndpoints,
            Severity::Warning,
            (t, Some(c), None),
            message,
            vec![],
        );
    }
}

fn stale_chains(ctx: &mut Ctx<'_>, t: usize, table: &Table, typed: &NftTable, ipvs: bool) {
    let refs = references_in(table, typed.chains.iter().map(|c| c.rules.as_slice()));
    let complete = shows_hooks(table);
    for (c, chain) in table.chains.iter().enumerate() {
        if !is_per_object_chain(&chain.name) {
            continue;
        }
        if !refs.contains_key(chain.name.as_str()) && complete {
            let per_service =
                chain.name.starts_with("KUBE-SVC-") || chain.name.starts_with("KUBE-SEP-");
            let why = if ipvs && per_service {
                "kube-proxy runs in IPVS mode here, so this is a leftover of iptables mode"
            } else {
                "a leftover of a deleted service, pod or policy, or of a kube-proxy mode or version change"
            };
            let message = format!(
                "nothing jumps to chain {} ({} rule(s)): {why}. It is harmless for traffic but \
                 misleading, and it slows every kube-proxy sync; kube-proxy --cleanup or deleting it removes it",
                chain.name,
                chain.rules.len()
            );
            ctx.report(
                FindingId::KubeStaleChain,
                Severity::Warning,
                (t, Some(c), None),
                message,
                vec![],
            );
            continue;
        }
        if let HashCheck::Mismatch {
            service_port,
            protocol,
        } = ctx.annotations.hash_check(t, c, &chain.name)
        {
            let message = format!(
                "chain {} says it serves {service_port} ({protocol}), but kube-proxy would name that \
                 chain differently: the name is not the hash of its service, so it is stale (left from \
                 an older service or kube-proxy) or was written by another tool",
                chain.name
            );
            ctx.report(
                FindingId::KubeStaleChain,
                Severity::Warning,
                (t, Some(c), None),
                message,
                vec![],
            );
        }
    }
}

fn nodeports_last(ctx: &mut Ctx<'_>, t: usize, table: &NftTable) {
    let Some((c, chain)) = table
        .chains
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == "KUBE-SERVICES")
    else {
        return;
    };
    let Some(r) = chain
        .rules
        .iter()
        .position(|rule| chain_target(rule) == Some("KUBE-NODEPORTS"))
    else {
        return;
    };
    if r + 1 == chain.rules.len() {
        return;
    }
    let message = format!(
        "the jump to KUBE-NODEPORTS is rule {} of {} in nat KUBE-SERVICES, but kube-proxy requires it \
         to be the last: it catches all traffic to the node's own addresses, so the {} service rule(s) \
         after it lose traffic for node-local destinations (external IPs, load balancer IPs on the node)",
        r + 1,
        chain.rules.len(),
        chain.rules.len() - r - 1
    );
    let related = (r + 1..chain.rules.len())
        .map(|i| ctx.related(t, c, Some(i), "rule after the NodePort jump"))
        .collect();
    ctx.report(
        FindingId::KubeNodeportsNotLast,
        Severity::Warning,
        (t, Some(c), Some(r)),
        message,
        related,
    );
}
