//! Chain and ipset names exactly as kube-proxy and kube-router compute them, so the lab's rules
//! carry the same hash suffixes a real node would (and a linter can recompute them).
//!
//! Every name is `PREFIX` + the first 16 characters of `base32(sha256(input))` (RFC 4648 alphabet,
//! with padding, as Go's `base32.StdEncoding`). Only the *inputs* differ per component. kube-proxy's
//! `servicePortChainName` / `servicePortEndpointChainName` come from `nfscope-annotate` (the same
//! code the annotator checks chains with and its `kube_proxy_rules` generator names them with;
//! the tests below pin them to names kube-proxy wrote); kube-router's `podFirewallChainName`,
//! `networkPolicyChainName`, `policyIndexedSourcePodIPSetName` and `policyDestinationPodIPSetName`
//! (pkg/controllers/netpol) live here, since only the lab needs to produce them.

pub use nfscope_annotate::hash::hash16;

/// kube-router's per-pod firewall chain `KUBE-POD-FW-…` (`version` is its sync generation).
pub fn kube_router_pod_fw_chain(namespace: &str, pod: &str, version: &str) -> String {
    format!(
        "KUBE-POD-FW-{}",
        hash16(&format!("{namespace}{pod}{version}"))
    )
}

/// kube-router's per-policy chain `KUBE-NWPLCY-…`; `family` is `IPv4` or `IPv6`.
pub fn kube_router_policy_chain(
    namespace: &str,
    policy: &str,
    version: &str,
    family: &str,
) -> String {
    let input = format!("{namespace}{policy}{version}{family}");
    format!("KUBE-NWPLCY-{}", hash16(&input))
}

/// kube-router's ipset of the source pods of one ingress rule, `KUBE-SRC-…`.
pub fn kube_router_ingress_source_set(
    namespace: &str,
    policy: &str,
    rule: usize,
    family: &str,
) -> String {
    let input = format!("{namespace}{policy}ingressrule{rule}{family}pod");
    ipset_name_for_family(format!("KUBE-SRC-{}", hash16(&input)), family)
}

/// kube-router's ipset of the pods a policy selects (ingress targets), `KUBE-DST-…`.
pub fn kube_router_target_set(namespace: &str, policy: &str, family: &str) -> String {
    let input = format!("{namespace}{policy}{family}");
    ipset_name_for_family(format!("KUBE-DST-{}", hash16(&input)), family)
}

/// kube-router prefixes IPv6 set names with `inet6:`.
fn ipset_name_for_family(name: String, family: &str) -> String {
    if family == "IPv6" {
        format!("inet6:{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use nfscope_annotate::kube_proxy_rules::{
        endpoint_chain as kube_sep_chain, service_chain as kube_svc_chain,
    };

    use super::*;

    /// Values from NETFILTER.md and the kube-proxy test dump in the corpus
    /// (`k8s-proxier-test-overall-restore-input.rules`), computed by kube-proxy itself.
    #[test]
    fn svc_chain_matches_kube_proxy() {
        assert_eq!(
            kube_svc_chain("default/kubernetes:https", "tcp"),
            "KUBE-SVC-NPX46M4PTMTKRN6Y"
        );
        assert_eq!(
            kube_svc_chain("ns1/svc1:p80", "tcp"),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            kube_svc_chain("ns4/svc4:p80", "tcp"),
            "KUBE-SVC-4SW47YFZTEDKD3PK"
        );
    }

    #[test]
    fn sep_chain_matches_kube_proxy() {
        assert_eq!(
            kube_sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert_eq!(
            kube_sep_chain("ns4/svc4:p80", "tcp", "10.180.0.5:80"),
            "KUBE-SEP-C6EBXVWJJZMIWKLZ"
        );
    }

    #[test]
    fn names_fit_iptables_and_ipset_limits() {
        // iptables chain names are at most 28 characters, ipset names at most 31.
        assert!(kube_router_pod_fw_chain("demo", "db-0", "1").len() <= 28);
        assert!(kube_router_policy_chain("demo", "db-allow-web", "1", "IPv4").len() <= 28);
        assert!(kube_router_ingress_source_set("demo", "p", 0, "IPv6").len() <= 31);
        assert!(kube_router_target_set("demo", "p", "IPv6").starts_with("inet6:KUBE-DST-"));
    }
}
