//! Which component owns a chain (by its name) or a rule in a built-in chain (by its comment, its
//! jump target or the interfaces it matches).
//!
//! Meaning and verdicts are decided elsewhere ([`crate::resolve`], [`crate::verdict`]).

use nfscope_ruleset::{RuleSpec, is_builtin_chain};

use crate::types::Owner;

/// The owner of a chain, from its name alone. Built-in chains belong to no component (`Other`).
pub fn chain_owner(table: &str, name: &str) -> Owner {
    if is_builtin_chain(name) {
        return Owner::Other;
    }
    if let Some(rest) = name.strip_prefix("KUBE-") {
        return kube_chain_owner(table, rest);
    }
    let by_prefix: [(&str, Owner); 10] = [
        ("cali-", Owner::Calico),
        ("felix-", Owner::Calico),
        ("CILIUM_", Owner::Cilium),
        ("OLD_CILIUM_", Owner::Cilium),
        ("FLANNEL-", Owner::Flannel),
        ("WEAVE", Owner::Weave),
        ("DOCKER", Owner::Docker),
        ("CNI-", Owner::CniPortmap),
        ("ISTIO_", Owner::Istio),
        ("KUBE-", Owner::KubeProxy),
    ];
    by_prefix
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map_or(Owner::Other, |(_, owner)| *owner)
}

/// Owner of a `KUBE-…` chain; `rest` is the name after `KUBE-`.
fn kube_chain_owner(table: &str, rest: &str) -> Owner {
    const KUBE_ROUTER: [&str; 3] = ["ROUTER-", "POD-FW-", "NWPLCY-"];
    const KUBE_PROXY_HASHED: [&str; 6] = ["SVC-", "SVL-", "SEP-", "EXT-", "FW-", "XLB-"];
    const KUBE_PROXY: [&str; 20] = [
        "SERVICES",
        "NODEPORTS",
        "POSTROUTING",
        "MARK-MASQ",
        "EXTERNAL-SERVICES",
        "FORWARD",
        "PROXY-FIREWALL",
        "PROXY-CANARY",
        "LOAD-BALANCER",
        "NODE-PORT",
        "LOOP-BACK",
        "SOURCE-RANGES-FIREWALL",
        "IPVS-FILTER",
        "IPVS-OUT-FILTER",
        "PORTALS-CONTAINER",
        "PORTALS-HOST",
        "NODEPORT-CONTAINER",
        "NODEPORT-HOST",
        "LOAD-BALANCER-LOCAL",
        "LOAD-BALANCER-FW",
    ];
    const KUBELET: [&str; 4] = ["KUBELET-CANARY", "IPTABLES-HINT", "MARK-DROP", "HOSTPORTS"];
    if KUBE_ROUTER.iter().any(|p| rest.starts_with(p)) {
        Owner::KubeRouter
    } else if KUBE_PROXY_HASHED.iter().any(|p| rest.starts_with(p)) || KUBE_PROXY.contains(&rest) {
        Owner::KubeProxy
    } else if KUBELET.contains(&rest) || rest.starts_with("HP-") {
        Owner::Kubelet
    } else if rest == "FIREWALL" {
        // filter KUBE-FIREWALL is the kubelet's; nat KUBE-FIREWALL is kube-proxy IPVS mode's.
        if table == "nat" {
            Owner::KubeProxy
        } else {
            Owner::Kubelet
        }
    } else {
        Owner::Other
    }
}

/// The owner a rule's comments reveal, if any.
pub fn owner_from_comments(spec: &RuleSpec) -> Option<Owner> {
    spec.comments().find_map(owner_from_comment)
}

fn owner_from_comment(comment: &str) -> Option<Owner> {
    let c = comment.trim();
    let owner = if c.starts_with("cali:") {
        Owner::Calico
    } else if c.starts_with("kube-router netpol") || c.starts_with("KUBE-ROUTER ") {
        Owner::KubeRouter
    } else if c.starts_with("cilium-feeder:") || c.starts_with("cilium:") {
        Owner::Cilium
    } else if c.starts_with("flanneld ") {
        Owner::Flannel
    } else if c.starts_with("kubernetes ") || c.starts_with("Kubernetes ") {
        Owner::KubeProxy
    } else if c.starts_with("CNI portfwd") || crate::comments::cni_container(c).is_some() {
        Owner::CniPortmap
    } else {
        return None;
    };
    Some(owner)
}

/// The owner the rule's interfaces reveal: `docker0` / `br-<id>` (Docker), `weave` (Weave),
/// `cali…` (Calico), `lxc…` / `cilium_…` (Cilium), `flannel…` (Flannel).
pub fn owner_from_interfaces(spec: &RuleSpec) -> Option<Owner> {
    let ifaces = [&spec.in_interface, &spec.out_interface];
    ifaces
        .into_iter()
        .flatten()
        .find_map(|i| interface_owner(&i.value))
}

fn interface_owner(iface: &str) -> Option<Owner> {
    let is_docker_bridge = iface
        .strip_prefix("br-")
        .is_some_and(|id| id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()));
    if iface == "docker0" || iface == "docker_gwbridge" || is_docker_bridge {
        Some(Owner::Docker)
    } else if iface == "weave" {
        Some(Owner::Weave)
    } else if iface.starts_with("cali") || iface == "vxlan.calico" || iface == "tunl0" {
        Some(Owner::Calico)
    } else if iface.starts_with("lxc") || iface.starts_with("cilium_") {
        Some(Owner::Cilium)
    } else if iface.starts_with("flannel") {
        Some(Owner::Flannel)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names() {
        let cases = [
            ("nat", "KUBE-SVC-NPX46M4PTMTKRN6Y", Owner::KubeProxy),
            ("nat", "KUBE-SEP-QAX236RR3UXXQODE", Owner::KubeProxy),
            ("nat", "KUBE-MARK-MASQ", Owner::KubeProxy),
            ("nat", "KUBE-MARK-DROP", Owner::Kubelet),
            ("filter", "KUBE-FIREWALL", Owner::Kubelet),
            ("nat", "KUBE-FIREWALL", Owner::KubeProxy),
            ("mangle", "KUBE-KUBELET-CANARY", Owner::Kubelet),
            ("mangle", "KUBE-PROXY-CANARY", Owner::KubeProxy),
            ("filter", "KUBE-ROUTER-FORWARD", Owner::KubeRouter),
            ("filter", "KUBE-POD-FW-4BDGZEWEU32YM75H", Owner::KubeRouter),
            ("filter", "KUBE-NWPLCY-DEFAULT", Owner::KubeRouter),
            ("filter", "cali-tw-cali5125b8e5d77", Owner::Calico),
            ("nat", "CILIUM_POST_nat", Owner::Cilium),
            ("nat", "FLANNEL-POSTRTG", Owner::Flannel),
            ("filter", "WEAVE-NPC-EGRESS", Owner::Weave),
            ("filter", "DOCKER-ISOLATION-STAGE-1", Owner::Docker),
            ("nat", "CNI-HOSTPORT-DNAT", Owner::CniPortmap),
            ("nat", "ISTIO_INBOUND", Owner::Istio),
            ("mangle", "ISTIO_PRERT", Owner::Istio),
            ("filter", "FORWARD", Owner::Other),
            ("filter", "KUBE-SOMETHING-NEW", Owner::Other),
            ("filter", "IN_public_allow", Owner::Other),
            ("filter", "", Owner::Other),
        ];
        for (table, name, owner) in cases {
            assert_eq!(chain_owner(table, name), owner, "{table} {name}");
        }
    }

    #[test]
    fn comments_and_interfaces() {
        assert_eq!(
            owner_from_comment("cali:6gwbT8clXdHdC1b1"),
            Some(Owner::Calico)
        );
        assert_eq!(
            owner_from_comment("kube-router netpol - 4IA2OSFRMVNDXBVV"),
            Some(Owner::KubeRouter)
        );
        assert_eq!(
            owner_from_comment("cilium-feeder: CILIUM_INPUT"),
            Some(Owner::Cilium)
        );
        assert_eq!(owner_from_comment("flanneld masq"), Some(Owner::Flannel));
        assert_eq!(
            owner_from_comment("kubernetes service portals"),
            Some(Owner::KubeProxy)
        );
        assert_eq!(
            owner_from_comment("CNI portfwd requiring masquerade"),
            Some(Owner::CniPortmap)
        );
        assert_eq!(
            owner_from_comment("NOTE: this must go before '-j KUBE-FORWARD'"),
            None
        );
        assert_eq!(interface_owner("docker0"), Some(Owner::Docker));
        assert_eq!(interface_owner("br-0123456789ab"), Some(Owner::Docker));
        assert_eq!(interface_owner("br-dummy"), None);
        assert_eq!(interface_owner("weave"), Some(Owner::Weave));
        assert_eq!(interface_owner("cali+"), Some(Owner::Calico));
        assert_eq!(interface_owner("virbr0"), None);
    }
}
