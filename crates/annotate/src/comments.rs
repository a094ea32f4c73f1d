//! Reading the `--comment` vocabulary of kube-proxy, kube-router, Calico, the CNI plugins and Weave.
//!
//! Every function takes one decoded comment and returns what it says, or `None`. Nothing here
//! looks at chains or targets; combining the evidence is [`crate::resolve`]'s job.

use crate::types::{Direction, ServiceKind, ServicePortRef};

/// What a kube-proxy comment says about a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeComment<'a> {
    /// The comment names the service port and which way in (`"ns/svc:p cluster IP"`, …).
    Service(ServicePortRef<'a>, ServiceKind),
    /// Only the service port (`"ns/svc:p"`: SEP rules, node ports, older SVC→SEP jumps).
    ServiceOnly(ServicePortRef<'a>),
    /// The SVC→SEP jump of newer kube-proxy: `"ns/svc:p -> 10.0.0.1:80"`.
    Endpoint(ServicePortRef<'a>, &'a str),
    /// `"… has no endpoints"` (`local_only == false`) or `"… has no local endpoints"`.
    NoEndpoints(ServicePortRef<'a>, bool),
}

impl<'a> KubeComment<'a> {
    /// The service port the comment names.
    pub fn service(&self) -> ServicePortRef<'a> {
        match *self {
            Self::Service(s, _)
            | Self::ServiceOnly(s)
            | Self::Endpoint(s, _)
            | Self::NoEndpoints(s, _) => s,
        }
    }
}

const SUFFIX_KINDS: [(&str, ServiceKind); 4] = [
    (" cluster IP", ServiceKind::ClusterIp),
    (" external IP", ServiceKind::ExternalIp),
    (" loadbalancer IP", ServiceKind::LoadBalancer),
    (" health check node port", ServiceKind::HealthCheckNodePort),
];

const EXTERNAL_PREFIXES: [&str; 4] = [
    "masquerade traffic for ",
    "pod traffic for ",
    "masquerade LOCAL traffic for ",
    "route LOCAL traffic for ",
];

/// Parses one kube-proxy comment.
pub fn kube_proxy(comment: &str) -> Option<KubeComment<'_>> {
    let comment = comment.trim();
    if let Some(service) = ServicePortRef::parse(comment) {
        return Some(KubeComment::ServiceOnly(service));
    }
    if let Some((name, endpoint)) = comment.split_once(" -> ") {
        let endpoint = endpoint.trim();
        let plausible = !endpoint.is_empty() && !endpoint.contains(char::is_whitespace);
        return ServicePortRef::parse(name)
            .filter(|_| plausible)
            .map(|s| KubeComment::Endpoint(s, endpoint));
    }
    if let Some(name) = comment.strip_suffix(" has no local endpoints") {
        return ServicePortRef::parse(name).map(|s| KubeComment::NoEndpoints(s, true));
    }
    if let Some(name) = comment.strip_suffix(" has no endpoints") {
        return ServicePortRef::parse(name).map(|s| KubeComment::NoEndpoints(s, false));
    }
    for (suffix, kind) in SUFFIX_KINDS {
        if let Some(name) = comment.strip_suffix(suffix) {
            return ServicePortRef::parse(name).map(|s| KubeComment::Service(s, kind));
        }
    }
    kube_proxy_prose(comment)
}

/// The longer sentences of `KUBE-EXT-`, `KUBE-FW-` and `KUBE-PROXY-FIREWALL` rules.
fn kube_proxy_prose(comment: &str) -> Option<KubeComment<'_>> {
    for prefix in EXTERNAL_PREFIXES {
        if let Some(name) = comment
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(" external destinations"))
        {
            return ServicePortRef::parse(name)
                .map(|s| KubeComment::Service(s, ServiceKind::External));
        }
    }
    let lbsr = |s| KubeComment::Service(s, ServiceKind::LoadBalancerSourceRanges);
    if let Some(name) = comment
        .strip_prefix("other traffic to ")
        .and_then(|r| r.strip_suffix(" will be dropped by KUBE-PROXY-FIREWALL"))
    {
        return ServicePortRef::parse(name).map(lbsr);
    }
    let (name, _) = comment.split_once(" traffic not accepted by KUBE-FW-")?;
    ServicePortRef::parse(name).map(lbsr)
}

/// `(namespace, pod)` from kube-router's `"… POD name:<pod> namespace: <ns> …"`.
pub fn kube_router_pod(comment: &str) -> Option<(&str, &str)> {
    let rest = &comment[comment.find("POD name:")? + "POD name:".len()..];
    let (pod, rest) = rest.trim_start().split_once(char::is_whitespace)?;
    let rest = rest.trim_start().strip_prefix("namespace:")?;
    let namespace = rest.split_whitespace().next()?;
    Some((namespace, pod)).filter(|(ns, pod)| !ns.is_empty() && !pod.is_empty())
}

/// `(namespace, policy)` from kube-router's policy rule comments:
/// `"rule to ACCEPT traffic from … selected by policy name[:] <policy> namespace <ns>"`.
pub fn kube_router_policy(comment: &str) -> Option<(&str, &str)> {
    let rest = &comment[comment.find("policy name")? + "policy name".len()..];
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    let mut words = rest.split_whitespace();
    let policy = words.next()?;
    (words.next()? == "namespace").then_some(())?;
    let namespace = words.next()?;
    Some((namespace, policy))
}

/// The policy name of kube-router's pod-firewall jump `"run through nw policy <name>"`.
pub fn kube_router_policy_jump(comment: &str) -> Option<&str> {
    let name = comment
        .trim()
        .strip_prefix("run through nw policy ")?
        .trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then_some(name)
}

/// `(name, direction)` from felix's first-rule comment `"Policy <name> ingress"` /
/// `"Profile <name> egress"`; `kind` is `"Policy"` or `"Profile"`.
pub fn calico_chain_comment<'a>(comment: &'a str, kind: &str) -> Option<(&'a str, Direction)> {
    let rest = comment.trim().strip_prefix(kind)?.strip_prefix(' ')?;
    let (name, direction) = rest.rsplit_once(' ')?;
    let direction = match direction {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    (!name.is_empty()).then_some((name, direction))
}

/// `(network, container id)` from the CNI portmap comment `dnat name: "<net>" id: "<id>"` or the
/// bridge plugin's `name: "<net>" id: "<id>"` (quotes already decoded by the parser).
pub fn cni_container(comment: &str) -> Option<(&str, &str)> {
    let rest = comment.trim();
    let rest = rest.strip_prefix("dnat ").unwrap_or(rest);
    let rest = rest.strip_prefix("name: ")?;
    let (network, rest) = quoted(rest)?;
    let (id, _) = quoted(rest.trim_start().strip_prefix("id: ")?)?;
    Some((network, id)).filter(|(n, id)| !n.is_empty() && !id.is_empty())
}

/// `"text" rest` → `(text, rest)`.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('"')?;
    let end = inner.find('"')?;
    Some((&inner[..end], &inner[end + 1..]))
}

/// `(namespace, direction)` from Weave NPC's `"DefaultAllow ingress isolation for namespace: <ns>"`.
pub fn weave_default_allow(comment: &str) -> Option<(&str, Direction)> {
    let rest = comment.trim().strip_prefix("DefaultAllow ")?;
    let (direction, rest) = rest.split_once(' ')?;
    let direction = match direction {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    let namespace = rest.strip_prefix("isolation for namespace:")?.trim();
    (!namespace.is_empty()).then_some((namespace, direction))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(text: &str) -> ServicePortRef<'_> {
        ServicePortRef::parse(text).unwrap()
    }

    #[test]
    fn kube_proxy_portal_comments() {
        assert_eq!(
            kube_proxy("ns1/svc1:p80 cluster IP"),
            Some(KubeComment::Service(
                sp("ns1/svc1:p80"),
                ServiceKind::ClusterIp
            ))
        );
        assert_eq!(
            kube_proxy("ns2/svc2:p80 external IP"),
            Some(KubeComment::Service(
                sp("ns2/svc2:p80"),
                ServiceKind::ExternalIp
            ))
        );
        assert_eq!(
            kube_proxy("ns2/svc2:p80 loadbalancer IP"),
            Some(KubeComment::Service(
                sp("ns2/svc2:p80"),
                ServiceKind::LoadBalancer
            ))
        );
        assert_eq!(
            kube_proxy("ns2/svc2:p80 health check node port"),
            Some(KubeComment::Service(
                sp("ns2/svc2:p80"),
                ServiceKind::HealthCheckNodePort
            ))
        );
        assert_eq!(
            kube_proxy("default/redis cluster IP"),
            Some(KubeComment::Service(
                sp("default/redis"),
                ServiceKind::ClusterIp
            ))
        );
    }

    #[test]
    fn kube_proxy_endpoint_and_no_endpoint_comments() {
        assert_eq!(
            kube_proxy("ns4/svc4:p80 -> 10.180.0.4:80"),
            Some(KubeComment::Endpoint(sp("ns4/svc4:p80"), "10.180.0.4:80"))
        );
        assert_eq!(
            kube_proxy("ns6/svc6:p80 has no endpoints"),
            Some(KubeComment::NoEndpoints(sp("ns6/svc6:p80"), false))
        );
        assert_eq!(
            kube_proxy("ns2/svc2:p80 has no local endpoints"),
            Some(KubeComment::NoEndpoints(sp("ns2/svc2:p80"), true))
        );
        assert_eq!(
            kube_proxy("kube-system/kube-dns:dns"),
            Some(KubeComment::ServiceOnly(sp("kube-system/kube-dns:dns")))
        );
    }

    #[test]
    fn kube_proxy_external_and_firewall_prose() {
        for text in [
            "masquerade traffic for ns4/svc4:p80 external destinations",
            "pod traffic for ns4/svc4:p80 external destinations",
            "masquerade LOCAL traffic for ns4/svc4:p80 external destinations",
            "route LOCAL traffic for ns4/svc4:p80 external destinations",
        ] {
            assert_eq!(
                kube_proxy(text),
                Some(KubeComment::Service(
                    sp("ns4/svc4:p80"),
                    ServiceKind::External
                )),
                "{text}"
            );
        }
        let lbsr = Some(KubeComment::Service(
            sp("ns5/svc5:p80"),
            ServiceKind::LoadBalancerSourceRanges,
        ));
        assert_eq!(
            kube_proxy("ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C"),
            lbsr
        );
        assert_eq!(
            kube_proxy("other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"),
            lbsr
        );
    }

    #[test]
    fn kube_proxy_ignores_its_generic_comments() {
        for text in [
            "kubernetes service portals",
            "kubernetes service nodeports; NOTE: this must be the last rule in this chain",
            "kubernetes service traffic requiring SNAT",
            "block incoming localnet connections",
            "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
            "",
            " -> ",
            "a/b -> ",
        ] {
            assert_eq!(kube_proxy(text), None, "{text:?}");
        }
    }

    #[test]
    fn kube_router_pod_comments() {
        let pod = Some(("default", "redis-84f85f9cdc-nfbl2"));
        assert_eq!(
            kube_router_pod(
                "rule to REJECT traffic destined for POD name:redis-84f85f9cdc-nfbl2 namespace: default"
            ),
            pod
        );
        assert_eq!(
            kube_router_pod(
                "rule to jump traffic from POD name:redis-84f85f9cdc-nfbl2 namespace: default to chain KUBE-POD-FW-4BDGZEWEU32YM75H"
            ),
            pod
        );
        assert_eq!(kube_router_pod("rule for stateful firewall for pod"), None);
        assert_eq!(kube_router_pod("POD name:"), None);
        assert_eq!(kube_router_pod("POD name:x namespace:"), None);
    }

    #[test]
    fn kube_router_policy_comments() {
        let policy = Some(("prod", "allow-web"));
        assert_eq!(
            kube_router_policy(
                "rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-web namespace prod"
            ),
            policy
        );
        assert_eq!(
            kube_router_policy(
                "rule to ACCEPT traffic from all sources to dest pods selected by policy name: allow-web namespace prod"
            ),
            policy
        );
        assert_eq!(
            kube_router_policy("rule to mark traffic matching a network policy"),
            None
        );
        assert_eq!(
            kube_router_policy_jump("run through nw policy allow-web"),
            Some("allow-web")
        );
        assert_eq!(
            kube_router_policy_jump("run through default egress network policy chain"),
            None
        );
    }

    #[test]
    fn calico_chain_comments() {
        assert_eq!(
            calico_chain_comment("Policy default/knp.default.allow-dns ingress", "Policy"),
            Some(("default/knp.default.allow-dns", Direction::Ingress))
        );
        assert_eq!(
            calico_chain_comment("Profile kns.default egress", "Profile"),
            Some(("kns.default", Direction::Egress))
        );
        assert_eq!(
            calico_chain_comment("Policy explicitly accepted packet.", "Policy"),
            None
        );
        assert_eq!(calico_chain_comment("Start of policies", "Policy"), None);
    }

    #[test]
    fn cni_comments() {
        let expected = Some(("k8s-pod-network", "7ad6a8ce"));
        assert_eq!(
            cni_container(r#"dnat name: "k8s-pod-network" id: "7ad6a8ce""#),
            expected
        );
        assert_eq!(
            cni_container(r#"name: "k8s-pod-network" id: "7ad6a8ce""#),
            expected
        );
        assert_eq!(cni_container(r#"name: "k8s-pod-network" id: ""#), None);
        assert_eq!(cni_container("CNI portfwd masquerade mark"), None);
    }

    #[test]
    fn weave_comments() {
        assert_eq!(
            weave_default_allow("DefaultAllow egress isolation for namespace: kube-system"),
            Some(("kube-system", Direction::Egress))
        );
        assert_eq!(
            weave_default_allow("DefaultAllow sideways isolation for namespace: x"),
            None
        );
    }
}
