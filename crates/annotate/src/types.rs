//! The vocabulary of annotations: who owns a chain or rule ([`Owner`]), what it means in
//! Kubernetes terms ([`Meaning`]) and whether its counter measures a network-policy decision
//! ([`PolicyVerdict`]).
//!
//! This module only defines the values and how they print; deciding which value applies to which
//! chain or rule is done in [`crate::resolve`].

use std::fmt;

use serde::Serialize;

/// The component that created a chain or rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// kube-proxy (iptables, IPVS or the old userspace mode).
    KubeProxy,
    /// kube-router's network policy controller (and its service proxy chains).
    KubeRouter,
    /// Calico felix.
    Calico,
    /// Cilium's iptables feeder chains.
    Cilium,
    /// flanneld.
    Flannel,
    /// Weave Net (router and network policy controller).
    Weave,
    /// Docker / moby.
    Docker,
    /// The CNI portmap (and bridge masquerade) plugins.
    CniPortmap,
    /// The kubelet (`KUBE-FIREWALL` in filter, canaries, `KUBE-MARK-DROP`, dockershim hostports).
    Kubelet,
    /// Istio's traffic capture (istio-iptables, istio-cni, ambient in-pod rules): `ISTIO_*`.
    Istio,
    /// firewalld's nftables backend (table `firewalld`, and `firewalld_policy_drop` while it starts).
    Firewalld,
    /// Anything else: the distribution's firewall, hand-written rules, built-in chains.
    Other,
}

impl Owner {
    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KubeProxy => "kube-proxy",
            Self::KubeRouter => "kube-router",
            Self::Calico => "calico",
            Self::Cilium => "cilium",
            Self::Flannel => "flannel",
            Self::Weave => "weave",
            Self::Docker => "docker",
            Self::CniPortmap => "cni-portmap",
            Self::Kubelet => "kubelet",
            Self::Istio => "istio",
            Self::Firewalld => "firewalld",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes service port as kube-proxy names it: `namespace/name:port`, where the port name
/// is empty for a service with a single unnamed port (then it prints as `namespace/name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ServicePort {
    /// Namespace of the service.
    pub namespace: String,
    /// Name of the service.
    pub name: String,
    /// Name of the service port; empty when the port is unnamed.
    pub port: String,
}

impl ServicePort {
    /// Parses `ns/name` or `ns/name:port` as kube-proxy writes it; `None` for anything else
    /// (spaces, no slash, characters a Kubernetes name cannot contain).
    pub fn parse(text: &str) -> Option<Self> {
        ServicePortRef::parse(text).map(ServicePortRef::to_owned)
    }
}

/// A [`ServicePort`] borrowed from a comment, so reading comments allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServicePortRef<'a> {
    /// Namespace of the service.
    pub namespace: &'a str,
    /// Name of the service.
    pub name: &'a str,
    /// Name of the service port; empty when the port is unnamed.
    pub port: &'a str,
}

impl<'a> ServicePortRef<'a> {
    /// See [`ServicePort::parse`].
    pub fn parse(text: &'a str) -> Option<Self> {
        let (namespace, rest) = text.split_once('/')?;
        let (name, port) = rest.split_once(':').unwrap_or((rest, ""));
        let valid = is_k8s_name(namespace)
            && is_k8s_name(name)
            && port
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        valid.then_some(Self {
            namespace,
            name,
            port,
        })
    }

    /// The owned value.
    pub fn to_owned(self) -> ServicePort {
        ServicePort {
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            port: self.port.to_owned(),
        }
    }
}

/// Lowercase letters, digits, `-` and `.`, starting with a letter or digit.
fn is_k8s_name(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

impl fmt::Display for ServicePort {
    /// `ns/name:port`, or `ns/name` for an unnamed port: kube-proxy's `ServicePortName.String()`,
    /// which is also the input of its chain-name hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// Which way of reaching a service a chain or rule handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    /// The cluster IP (`"… cluster IP"`).
    ClusterIp,
    /// An external IP (`"… external IP"`).
    ExternalIp,
    /// A node port (rules in nat `KUBE-NODEPORTS`).
    NodePort,
    /// A load balancer IP (`"… loadbalancer IP"`).
    LoadBalancer,
    /// The health check node port of an `externalTrafficPolicy: Local` service (filter `KUBE-NODEPORTS`).
    HealthCheckNodePort,
    /// Traffic to any external destination of the service (`KUBE-EXT-*`, `"… external destinations"`).
    External,
    /// Dispatch to node-local endpoints only (`KUBE-SVL-*`, the older `KUBE-XLB-*`).
    LocalEndpoints,
    /// `loadBalancerSourceRanges` filtering (`KUBE-FW-*`, and the `KUBE-PROXY-FIREWALL` drop).
    LoadBalancerSourceRanges,
}

impl ServiceKind {
    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIp => "cluster-ip",
            Self::ExternalIp => "external-ip",
            Self::NodePort => "node-port",
            Self::LoadBalancer => "load-balancer",
            Self::HealthCheckNodePort => "health-check-node-port",
            Self::External => "external",
            Self::LocalEndpoints => "local-endpoints",
            Self::LoadBalancerSourceRanges => "load-balancer-source-ranges",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Direction of a policy relative to the workload it protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Traffic to the workload.
    Ingress,
    /// Traffic from the workload.
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// What the packets counted by a rule experienced: accepted or denied by network policy.
///
/// Set only on the rule where the decision becomes final for the packet (kube-router's pod
/// firewall REJECT and its closing "set mark to ACCEPT" rule, Calico's "Return if policy
/// accepted" / "Drop if no policies passed packet" in endpoint chains, explicit DROP rules in
/// policy chains, Weave's default drops and accepts), so summing counters by verdict does not
/// count a packet twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyVerdict {
    /// Accepted by a network policy (or a profile / default-allow).
    Accept,
    /// Denied by a network policy (or for lack of one that allows it).
    Deny,
}

impl fmt::Display for PolicyVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Accept => "accept",
            Self::Deny => "deny",
        })
    }
}

/// The Kubernetes or CNI meaning of a chain or rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Meaning {
    /// kube-proxy handling of one service port: `KUBE-SVC-/SVL-/EXT-/FW-` chains and the portal
    /// rules in `KUBE-SERVICES` / `KUBE-NODEPORTS`.
    KubeService {
        /// The service port.
        service: ServicePort,
        /// Which way in; `None` for the service's main (`KUBE-SVC-`) chain.
        kind: Option<ServiceKind>,
    },
    /// One endpoint of a service: the `KUBE-SEP-` chain, its rules and the jump to it.
    KubeEndpoint {
        /// The service port.
        service: ServicePort,
        /// `ip:port` (`[ip]:port` for IPv6); only the IP when the dump does not say the port.
        endpoint: String,
    },
    /// kube-proxy rejecting (no endpoints) or dropping (no local endpoints) traffic to a service.
    KubeNoEndpoints {
        /// The service port.
        service: ServicePort,
        /// `true` for "has no local endpoints" (DROP), `false` for "has no endpoints" (REJECT).
        local_only: bool,
    },
    /// kube-router's firewall chain of one pod (`KUBE-POD-FW-`), its rules and the jumps to it.
    KubeRouterPod {
        /// Namespace of the pod.
        namespace: String,
        /// Name of the pod.
        pod: String,
    },
    /// kube-router's chain of one network policy (`KUBE-NWPLCY-`); `DEFAULT` / `COMMON` (upper
    /// case, which no Kubernetes name can be) for its built-in policy chains.
    KubeRouterPolicy {
        /// Namespace of the policy, when the dump says it.
        namespace: Option<String>,
        /// Name of the policy.
        policy: String,
    },
    /// Calico's chain for one workload interface: `cali-tw-` (to workload, ingress) or `cali-fw-`
    /// (from workload, egress).
    CalicoWorkload {
        /// The workload's host-side interface, e.g. `cali5125b8e5d77`.
        interface: String,
        /// Ingress for `cali-tw-`, egress for `cali-fw-`.
        direction: Direction,
    },
    /// Calico's chain for one host endpoint: `cali-th-`/`cali-thfw-` (to host, ingress) or
    /// `cali-fh-`/`cali-fhfw-` (from host, egress).
    CalicoHostEndpoint {
        /// The host interface.
        interface: String,
        /// Ingress for to-host chains, egress for from-host chains.
        direction: Direction,
    },
    /// Calico policy chain `cali-pi-` (ingress) / `cali-po-` (egress).
    CalicoPolicy {
        /// The policy name from the `"Policy … ingress"` comment, else the (possibly hashed) id
        /// from the chain name.
        policy: String,
        /// Ingress for `cali-pi-`, egress for `cali-po-`.
        direction: Direction,
    },
    /// Calico profile chain `cali-pri-` / `cali-pro-` (`kns.<namespace>`, `ksa.<ns>.<sa>`).
    CalicoProfile {
        /// The profile id.
        profile: String,
        /// Ingress for `cali-pri-`, egress for `cali-pro-`.
        direction: Direction,
    },
    /// A container's CNI port mapping or masquerade chain (`CNI-DN-*`, `CNI-<hash>`) and the
    /// rules that lead to it (`dnat name: "<net>" id: "<id>"`, `name: "<net>" id: "<id>"`).
    CniContainer {
        /// The CNI network name.
        network: String,
        /// The container (sandbox) id.
        container_id: String,
    },
    /// A port Docker publishes for a container (nat `DOCKER` DNAT, filter `DOCKER` accept).
    DockerPort {
        /// The host port, when the rule says it (nat DNAT rules).
        host_port: Option<String>,
        /// The container side: `ip:port`.
        container: String,
    },
    /// kube-proxy IPVS mode: a rule matching one of its ipsets, so about every service the set
    /// lists (see [`crate::dataplane`]).
    KubeIpvsSet {
        /// The set, e.g. `KUBE-CLUSTER-IP`.
        set: String,
        /// What the set lists (or, for `! --match-set`, what it does not), e.g. `service cluster IP + port`.
        contents: String,
        /// What the rule does with those packets, e.g. `marked for masquerade …`.
        action: String,
    },
    /// Istio sends the traffic to its proxy: a `REDIRECT`/`TPROXY` to the proxy's port, or the
    /// chain that does (`ISTIO_REDIRECT` → 15001, `ISTIO_IN_REDIRECT` → 15006).
    IstioCapture {
        /// The proxy port.
        port: String,
    },
    /// Istio's choice of one inbound port in `ISTIO_INBOUND`: captured (sent to the proxy) or
    /// left to the application.
    IstioInboundPort {
        /// The destination port (as written: a number or a range).
        port: String,
        /// `true` when it is sent to the proxy.
        captured: bool,
    },
    /// flanneld's masquerade (`FLANNEL-POSTRTG`) and forward (`FLANNEL-FWD`) rules for its pod network.
    Flannel {
        /// The pod network of the whole cluster, e.g. `10.244.0.0/16`.
        network: String,
        /// What the rule does, for a rule whose shape says it; `None` for the chains themselves.
        rule: Option<String>,
    },
    /// Cilium's fixed chains and the rules whose `cilium: …` comment says what they do.
    Cilium {
        /// What it does, e.g. `cluster->any on lxc+ forward accept`.
        what: String,
    },
    /// A fixed chain, rule, set or map of a component whose part in the whole is known but is
    /// about no one Kubernetes object (kube-proxy's nftables `reject-chain`, `masquerading`, …).
    Role {
        /// What it does, e.g. `rejects connections to services without endpoints`.
        what: String,
    },
    /// A firewalld zone's chain (`filter_IN_public`, `filter_IN_public_allow`, …) or a policy's
    /// (`filter_IN_policy_allow-host-ipv6…`): which traffic of which zone or policy it judges.
    FirewalldZone {
        /// The zone (`public`), or the policy for a policy chain.
        zone: String,
        /// `true` for a policy chain (`…_policy_NAME`), `false` for a zone.
        policy: bool,
        /// Which traffic: `input`, `forward`, `forward in`, `forward out`, `prerouting`, `postrouting`, `output`.
        traffic: String,
        /// The sub-chain (`pre`, `log`, `deny`, `allow`, `post`); `None` for the zone's own chain.
        part: Option<String>,
    },
    /// Weave NPC's default-allow of a namespace without isolation.
    WeaveNamespaceDefault {
        /// The namespace.
        namespace: String,
        /// Ingress or egress.
        direction: Direction,
    },
}

impl Meaning {
    /// A one-line description for people, e.g. `service default/kubernetes:https endpoint 10.0.0.1:6443`.
    pub fn summary(&self) -> String {
        match self {
            Self::KubeService {
                service,
                kind: None,
            } => format!("service {service}"),
            Self::KubeService {
                service,
                kind: Some(kind),
            } => format!("service {service} {}", kind_phrase(*kind)),
            Self::KubeEndpoint { service, endpoint } => {
                format!("service {service} endpoint {endpoint}")
            }
            Self::KubeNoEndpoints {
                service,
                local_only: false,
            } => format!("service {service} has no endpoints"),
            Self::KubeNoEndpoints {
                service,
                local_only: true,
            } => format!("service {service} has no local endpoints"),
            Self::KubeRouterPod { namespace, pod } => {
                format!("kube-router firewall of pod {namespace}/{pod}")
            }
            Self::KubeRouterPolicy {
                namespace: Some(ns),
                policy,
            } => format!("kube-router network policy {ns}/{policy}"),
            Self::KubeRouterPolicy {
                namespace: None,
                policy,
            } => format!("kube-router network policy {policy}"),
            Self::CalicoWorkload {
                interface,
                direction,
            } => format!("calico workload {interface} {direction}"),
            Self::CalicoHostEndpoint {
                interface,
                direction,
            } => format!("calico host endpoint {interface} {direction}"),
            Self::CalicoPolicy { policy, direction } => {
                format!("calico policy {policy} {direction}")
            }
            Self::CalicoProfile { profile, direction } => {
                format!("calico profile {profile} {direction}")
            }
            Self::CniContainer {
                network,
                container_id,
            } => {
                format!(
                    "cni container {} on network {network}",
                    short_id(container_id)
                )
            }
            Self::DockerPort {
                host_port: Some(host),
                container,
            } => format!("docker port {host} -> {container}"),
            Self::DockerPort {
                host_port: None,
                container,
            } => format!("docker port {container}"),
            Self::WeaveNamespaceDefault {
                namespace,
                direction,
            } => {
                format!("weave default allow {direction} for namespace {namespace}")
            }
            Self::KubeIpvsSet {
                set,
                contents,
                action,
            } => format!("kube-proxy IPVS: {contents} (set {set}), {action}"),
            Self::IstioCapture { port } => match crate::dataplane::istio_port_role(port) {
                Some(role) => format!("istio redirects to port {port}, {role}"),
                None => format!("istio redirects to port {port}"),
            },
            Self::IstioInboundPort {
                port,
                captured: true,
            } => format!("istio captures inbound port {port} (sent to the sidecar)"),
            Self::IstioInboundPort {
                port,
                captured: false,
            } => match crate::dataplane::istio_port_role(port) {
                Some(role) => format!("istio leaves inbound port {port} alone: {role}"),
                None => format!("istio leaves inbound port {port} alone"),
            },
            Self::Flannel {
                network,
                rule: Some(rule),
            } => format!("flannel pod network {network}: {rule}"),
            Self::Flannel {
                network,
                rule: None,
            } => format!("flannel pod network {network}"),
            Self::Cilium { what } => format!("cilium {what}"),
            Self::FirewalldZone {
                zone,
                policy,
                traffic,
                part,
            } => {
                let what = if *policy { "policy" } else { "zone" };
                match part {
                    Some(part) => format!("firewalld {what} {zone}, {traffic}: {part} rules"),
                    None => format!("firewalld {what} {zone}, {traffic}"),
                }
            }
            Self::Role { what } => what.clone(),
        }
    }
}

fn kind_phrase(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::ClusterIp => "cluster IP",
        ServiceKind::ExternalIp => "external IP",
        ServiceKind::NodePort => "node port",
        ServiceKind::LoadBalancer => "load balancer IP",
        ServiceKind::HealthCheckNodePort => "health check node port",
        ServiceKind::External => "external destinations",
        ServiceKind::LocalEndpoints => "local endpoints",
        ServiceKind::LoadBalancerSourceRanges => "load balancer source ranges",
    }
}

/// The first 12 characters of a container id, as `docker ps` shows it.
fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

/// Owner, meaning and verdict of one chain or rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    /// Who created it.
    pub owner: Owner,
    /// What it means, when known.
    pub meaning: Option<Meaning>,
    /// For rules: the network-policy decision its counter measures.
    pub policy_verdict: Option<PolicyVerdict>,
    /// For rules: the DNAT of a kube-proxy endpoint chain (`KUBE-SEP-*` in `nat`), whose packet
    /// counter counts the new connections sent to that endpoint (only a connection's first
    /// packet traverses `nat`). Decided from the rule's spec, so outputs that keep only
    /// counters need not keep the spec.
    #[serde(skip)]
    pub counts_endpoint_connections: bool,
}

impl Annotation {
    /// Owned by `owner`, no meaning, no verdict.
    pub const fn owned_by(owner: Owner) -> Self {
        Self {
            owner,
            meaning: None,
            policy_verdict: None,
            counts_endpoint_connections: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_port_parses_named_and_unnamed_ports() {
        let named = ServicePort::parse("default/kubernetes:https").unwrap();
        assert_eq!(
            (
                named.namespace.as_str(),
                named.name.as_str(),
                named.port.as_str()
            ),
            ("default", "kubernetes", "https")
        );
        assert_eq!(named.to_string(), "default/kubernetes:https");
        let unnamed = ServicePort::parse("default/redis").unwrap();
        assert_eq!(unnamed.port, "");
        assert_eq!(unnamed.to_string(), "default/redis");
    }

    #[test]
    fn service_port_rejects_prose_and_calico_ids() {
        for text in [
            "kubernetes service portals",
            "cali:6gwbT8clXdHdC1b1",
            "",
            "/",
            "a/",
            "/b",
            "ns/Svc:p",
            "a/b/c",
            "ns/svc:p 80",
        ] {
            assert_eq!(ServicePort::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn summaries_read_as_sentences() {
        let service = ServicePort::parse("default/kubernetes:https").unwrap();
        let endpoint = Meaning::KubeEndpoint {
            service: service.clone(),
            endpoint: "10.0.0.1:6443".into(),
        };
        assert_eq!(
            endpoint.summary(),
            "service default/kubernetes:https endpoint 10.0.0.1:6443"
        );
        let pod = Meaning::KubeRouterPod {
            namespace: "default".into(),
            pod: "redis-84f".into(),
        };
        assert_eq!(
            pod.summary(),
            "kube-router firewall of pod default/redis-84f"
        );
        let cni = Meaning::CniContainer {
            network: "k8s-pod-network".into(),
            container_id: "7ad6a8ce5b6ddfe491a3".into(),
        };
        assert_eq!(
            cni.summary(),
            "cni container 7ad6a8ce5b6d on network k8s-pod-network"
        );
    }

    #[test]
    fn serde_uses_type_tags_and_kebab_case() {
        let meaning = Meaning::KubeService {
            service: ServicePort::parse("ns/svc:p").unwrap(),
            kind: Some(ServiceKind::HealthCheckNodePort),
        };
        let json = serde_json::to_value(&meaning).unwrap();
        assert_eq!(json["type"], "kube_service");
        assert_eq!(json["kind"], "health-check-node-port");
        assert_eq!(
            serde_json::to_value(Owner::CniPortmap).unwrap(),
            "cni-portmap"
        );
        assert_eq!(serde_json::to_value(PolicyVerdict::Deny).unwrap(), "deny");
    }
}
