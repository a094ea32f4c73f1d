//! Combining the evidence of one table into chain and rule annotations.
//!
//! A chain's meaning comes from its name (Calico, kube-router built-ins), from its own rules'
//! comments and targets (kube-proxy service and endpoint comments, the SEP's DNAT), from the rules
//! that jump to it, from its kube-proxy hash siblings (`KUBE-SVC-h`, `KUBE-EXT-h`, … name the
//! same service port) and, for a `KUBE-SEP-` chain, from the service chain that jumps to it.
//! A rule's meaning is what its own comment says, else the meaning of the chain it jumps to, else
//! the meaning of its chain.
//!
//! Everything is done in a fixed number of passes over the rules, with one name → chain map per
//! table, so the cost is linear in the number of rules. Ownership by name and verdicts live in
//! [`crate::owner`] and [`crate::verdict`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use nfscope_ruleset::{Chain, RuleSpec, Table};

use crate::comments::{self, KubeComment};
use crate::dataplane;
use crate::hash::service_chain_hash;
use crate::owner::{chain_owner, owner_from_comments, owner_from_interfaces};
use crate::types::{
    Annotation, Direction, Meaning, Owner, PolicyVerdict, ServiceKind, ServicePort, ServicePortRef,
};
use crate::verdict::rule_verdict;

/// Annotations of one table's chains.
#[derive(Debug, Clone, Default)]
pub struct TableAnnotations {
    /// One per chain, in table order.
    pub chains: Vec<ChainAnnotations>,
}

/// Annotations of one chain and its rules.
#[derive(Debug, Clone)]
pub struct ChainAnnotations {
    /// The chain's own annotation.
    pub annotation: Annotation,
    /// The lower-case protocol of the chain's traffic when its rules or the jumps to it say it.
    pub protocol: Option<String>,
    /// One per rule, in chain order.
    pub rules: Vec<Annotation>,
}

/// What a chain's name says it is, deciding which evidence builds its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChainKind {
    KubeService(Option<ServiceKind>),
    KubeEndpoint,
    KubeRouterPod,
    KubeRouterPolicy,
    CalicoPolicy(String, Direction),
    CalicoProfile(String, Direction),
    CniContainer,
    Fixed(Meaning),
    Plain,
}

fn chain_kind(name: &str) -> ChainKind {
    if let Some(kind) = kube_proxy_kind(name) {
        return kind;
    }
    if let Some(rest) = name.strip_prefix("KUBE-NWPLCY-") {
        return match rest {
            "DEFAULT" | "COMMON" | "TAIL" => ChainKind::Fixed(Meaning::KubeRouterPolicy {
                namespace: None,
                policy: rest.to_owned(),
            }),
            _ => ChainKind::KubeRouterPolicy,
        };
    }
    if name.starts_with("KUBE-POD-FW-") {
        return ChainKind::KubeRouterPod;
    }
    if name.starts_with("CNI-DN-")
        || (name.starts_with("CNI-") && !name.starts_with("CNI-HOSTPORT-"))
    {
        return ChainKind::CniContainer;
    }
    calico_kind(name).unwrap_or(ChainKind::Plain)
}

fn kube_proxy_kind(name: &str) -> Option<ChainKind> {
    let prefixes = [
        ("KUBE-SVC-", Some(None)),
        ("KUBE-SVL-", Some(Some(ServiceKind::LocalEndpoints))),
        ("KUBE-XLB-", Some(Some(ServiceKind::LocalEndpoints))),
        ("KUBE-EXT-", Some(Some(ServiceKind::External))),
        (
            "KUBE-FW-",
            Some(Some(ServiceKind::LoadBalancerSourceRanges)),
        ),
        ("KUBE-SEP-", None),
    ];
    let (_, kind) = prefixes
        .into_iter()
        .find(|(p, _)| name.len() > p.len() && name.starts_with(p))?;
    Some(kind.map_or(ChainKind::KubeEndpoint, ChainKind::KubeService))
}

/// The meaning of a Calico `cali-…` chain from its name alone (workload and host endpoint
/// chains; policy and profile chains by their id), for tables whose comments are not read.
pub(crate) fn calico_chain_meaning(name: &str) -> Option<Meaning> {
    match calico_kind(name)? {
        ChainKind::Fixed(m) => Some(m),
        ChainKind::CalicoPolicy(policy, direction) => {
            Some(Meaning::CalicoPolicy { policy, direction })
        }
        ChainKind::CalicoProfile(profile, direction) => {
            Some(Meaning::CalicoProfile { profile, direction })
        }
        _ => None,
    }
}

fn calico_kind(name: &str) -> Option<ChainKind> {
    use Direction::{Egress, Ingress};
    // Longest prefixes first: `cali-thfw-` before `cali-th-` would not matter (the dash differs),
    // but keep the table unambiguous anyway.
    const PREFIXES: [(&str, CalicoChain, Direction); 10] = [
        ("cali-thfw-", CalicoChain::HostEndpoint, Ingress),
        ("cali-fhfw-", CalicoChain::HostEndpoint, Egress),
        ("cali-tw-", CalicoChain::Workload, Ingress),
        ("cali-fw-", CalicoChain::Workload, Egress),
        ("cali-th-", CalicoChain::HostEndpoint, Ingress),
        ("cali-fh-", CalicoChain::HostEndpoint, Egress),
        ("cali-pi-", CalicoChain::Policy, Ingress),
        ("cali-po-", CalicoChain::Policy, Egress),
        ("cali-pri-", CalicoChain::Profile, Ingress),
        ("cali-pro-", CalicoChain::Profile, Egress),
    ];
    let (rest, chain, direction) = PREFIXES.iter().find_map(|(p, c, d)| {
        name.strip_prefix(p)
            .filter(|r| !r.is_empty())
            .map(|r| (r, *c, *d))
    })?;
    let id = rest.to_owned();
    Some(match chain {
        CalicoChain::Workload => ChainKind::Fixed(Meaning::CalicoWorkload {
            interface: id,
            direction,
        }),
        CalicoChain::HostEndpoint => ChainKind::Fixed(Meaning::CalicoHostEndpoint {
            interface: id,
            direction,
        }),
        CalicoChain::Policy => ChainKind::CalicoPolicy(id, direction),
        CalicoChain::Profile => ChainKind::CalicoProfile(id, direction),
    })
}

#[derive(Debug, Clone, Copy)]
enum CalicoChain {
    Workload,
    HostEndpoint,
    Policy,
    Profile,
}

/// What one rule says about itself, borrowed from its comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence<'a> {
    None,
    Kube(KubeComment<'a>),
    Pod(&'a str, &'a str),
    Policy(&'a str, &'a str),
    PolicyJump(&'a str),
    Cni(&'a str, &'a str),
    Weave(&'a str, Direction),
    CalicoName(&'a str),
}

fn rule_evidence(spec: &RuleSpec) -> Evidence<'_> {
    spec.comments()
        .map(comment_evidence)
        .find(|e| *e != Evidence::None)
        .unwrap_or(Evidence::None)
}

fn comment_evidence(comment: &str) -> Evidence<'_> {
    if let Some(kube) = comments::kube_proxy(comment) {
        Evidence::Kube(kube)
    } else if let Some((ns, pod)) = comments::kube_router_pod(comment) {
        Evidence::Pod(ns, pod)
    } else if let Some((ns, policy)) = comments::kube_router_policy(comment) {
        Evidence::Policy(ns, policy)
    } else if let Some(policy) = comments::kube_router_policy_jump(comment) {
        Evidence::PolicyJump(policy)
    } else if let Some((net, id)) = comments::cni_container(comment) {
        Evidence::Cni(net, id)
    } else if let Some((ns, dir)) = comments::weave_default_allow(comment) {
        Evidence::Weave(ns, dir)
    } else if let Some((name, _)) = comments::calico_chain_comment(comment, "Policy")
        .or_else(|| comments::calico_chain_comment(comment, "Profile"))
    {
        Evidence::CalicoName(name)
    } else {
        Evidence::None
    }
}

/// Everything gathered about one chain before its meaning is decided (borrowed from the table).
#[derive(Debug, Clone, Default)]
struct Partial<'a> {
    service: Option<ServicePortRef<'a>>,
    endpoint: Option<&'a str>,
    masq_source: Option<IpAddr>,
    pod: Option<(&'a str, &'a str)>,
    policy: Option<(Option<&'a str>, &'a str)>,
    cni: Option<(&'a str, &'a str)>,
    calico_name: Option<&'a str>,
    protocol: Option<&'a str>,
    parent: Option<usize>,
}

impl<'a> Partial<'a> {
    /// Takes what this rule's evidence says, keeping what is already known.
    fn absorb(&mut self, evidence: Evidence<'a>) {
        match evidence {
            Evidence::Kube(k) => {
                self.service.get_or_insert(k.service());
                if let KubeComment::Endpoint(_, ep) = k {
                    self.endpoint.get_or_insert(ep);
                }
            }
            Evidence::Pod(ns, pod) => {
                self.pod.get_or_insert((ns, pod));
            }
            Evidence::Policy(ns, policy) => {
                self.policy.get_or_insert((Some(ns), policy));
            }
            Evidence::Cni(net, id) => {
                self.cni.get_or_insert((net, id));
            }
            Evidence::CalicoName(name) => {
                self.calico_name.get_or_insert(name);
            }
            Evidence::None | Evidence::PolicyJump(_) | Evidence::Weave(..) => {}
        }
    }
}

/// Annotates one table.
pub fn annotate_table(table: &Table) -> TableAnnotations {
    let index: HashMap<&str, usize> = table
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let evidence: Vec<Vec<Evidence<'_>>> = table
        .chains
        .iter()
        .map(|c| c.rules.iter().map(|r| rule_evidence(&r.spec)).collect())
        .collect();
    let kinds: Vec<ChainKind> = table.chains.iter().map(|c| chain_kind(&c.name)).collect();
    let mut partials: Vec<Partial<'_>> = table
        .chains
        .iter()
        .zip(&evidence)
        .map(|(c, ev)| own_partial(c, ev))
        .collect();
    absorb_inbound(table, &index, &evidence, &mut partials);
    share_hash_siblings(table, &kinds, &mut partials);
    inherit_parent_service(&kinds, &mut partials);
    let flannel = dataplane::flannel_network(table);
    let meanings: Vec<Option<Meaning>> = kinds
        .iter()
        .zip(&partials)
        .zip(&table.chains)
        .map(|((k, p), c)| chain_meaning(k, p).or_else(|| dataplane_chain(c, flannel.as_deref())))
        .collect();
    let chains = table
        .chains
        .iter()
        .enumerate()
        .map(|(ci, chain)| {
            let ctx = RuleContext {
                table,
                index: &index,
                meanings: &meanings,
                chain_idx: ci,
                flannel: flannel.as_deref(),
            };
            let owner = chain_owner(&table.name, &chain.name);
            let mut rules: Vec<Annotation> = chain
                .rules
                .iter()
                .zip(&evidence[ci])
                .map(|(r, ev)| ctx.rule_annotation(owner, &r.spec, *ev))
                .collect();
            name_calico_accepting_policies(&mut rules);
            let annotation = Annotation {
                owner,
                meaning: meanings[ci].clone(),
                policy_verdict: None,
                counts_endpoint_connections: false,
            };
            ChainAnnotations {
                annotation,
                protocol: partials[ci].protocol.map(str::to_ascii_lowercase),
                rules,
            }
        })
        .collect();
    TableAnnotations { chains }
}

/// In a Calico endpoint chain, "Return if policy accepted" follows the jump into the policy (or
/// profile) chain that set the accept mark. That rule is where the accept becomes final, so it
/// carries the `Accept` verdict; give it the meaning of the policy it returns for, so accepts are
/// counted per policy exactly once (the policy chain's own mark rule has no verdict).
fn name_calico_accepting_policies(rules: &mut [Annotation]) {
    let mut last_policy: Option<Meaning> = None;
    for rule in rules.iter_mut() {
        match &rule.meaning {
            Some(m @ (Meaning::CalicoPolicy { .. } | Meaning::CalicoProfile { .. })) => {
                last_policy = Some(m.clone());
            }
            Some(Meaning::CalicoWorkload { .. })
                if rule.policy_verdict == Some(PolicyVerdict::Accept) =>
            {
                if let Some(policy) = last_policy.take() {
                    rule.meaning = Some(policy);
                }
            }
            _ => {}
        }
    }
}

/// What a chain's own rules say.
fn own_partial<'a>(chain: &'a Chain, evidence: &[Evidence<'a>]) -> Partial<'a> {
    let mut partial = Partial::default();
    for (rule, ev) in chain.rules.iter().zip(evidence) {
        partial.absorb(*ev);
        if partial.protocol.is_none() {
            partial.protocol = protocol_of(&rule.spec);
        }
        if partial.endpoint.is_none() {
            partial.endpoint = dnat_endpoint(&rule.spec);
        }
        if partial.masq_source.is_none() {
            partial.masq_source = masq_source(&rule.spec);
        }
    }
    partial
}

/// Evidence from the rules that jump to each chain.
fn absorb_inbound<'a>(
    table: &'a Table,
    index: &HashMap<&str, usize>,
    evidence: &[Vec<Evidence<'a>>],
    partials: &mut [Partial<'a>],
) {
    for (source, chain) in table.chains.iter().enumerate() {
        for (rule, ev) in chain.rules.iter().zip(&evidence[source]) {
            let Some(&target) = rule.spec.target_name().and_then(|t| index.get(t)) else {
                continue;
            };
            if target == source {
                continue;
            }
            let source_namespace = partials[source].pod.map(|(ns, _)| ns);
            let partial = &mut partials[target];
            partial.parent.get_or_insert(source);
            if partial.protocol.is_none() {
                partial.protocol = protocol_of(&rule.spec);
            }
            if let Evidence::PolicyJump(policy) = *ev {
                partial.policy.get_or_insert((source_namespace, policy));
            }
            partial.absorb(*ev);
        }
    }
}

/// `KUBE-SVC-h`, `KUBE-SVL-h`, `KUBE-EXT-h`, `KUBE-FW-h` and `KUBE-XLB-h` name the same service port.
fn share_hash_siblings<'a>(table: &'a Table, kinds: &[ChainKind], partials: &mut [Partial<'a>]) {
    let mut by_hash: HashMap<&str, ServicePortRef<'a>> = HashMap::new();
    let hashes: Vec<Option<&str>> = table
        .chains
        .iter()
        .map(|c| service_chain_hash(&c.name))
        .collect();
    for (hash, partial) in hashes.iter().zip(partials.iter()) {
        if let (Some(hash), Some(service)) = (hash, partial.service) {
            by_hash.entry(hash).or_insert(service);
        }
    }
    for ((hash, kind), partial) in hashes.iter().zip(kinds).zip(partials.iter_mut()) {
        if let (Some(hash), ChainKind::KubeService(_), None) = (hash, kind, &partial.service) {
            partial.service = by_hash.get(hash).copied();
        }
    }
}

/// A `KUBE-SEP-` chain without comments belongs to the service chain that jumps to it.
fn inherit_parent_service(kinds: &[ChainKind], partials: &mut [Partial<'_>]) {
    for i in 0..partials.len() {
        if kinds[i] != ChainKind::KubeEndpoint || partials[i].service.is_some() {
            continue;
        }
        let parent = partials[i]
            .parent
            .filter(|&p| matches!(kinds[p], ChainKind::KubeService(_)));
        partials[i].service = parent.and_then(|p| partials[p].service);
    }
}

fn chain_meaning(kind: &ChainKind, partial: &Partial<'_>) -> Option<Meaning> {
    let owned = |text: &str| text.to_owned();
    match kind {
        ChainKind::KubeService(kind) => Some(Meaning::KubeService {
            service: partial.service?.to_owned(),
            kind: *kind,
        }),
        ChainKind::KubeEndpoint => {
            let endpoint = partial
                .endpoint
                .map(owned)
                .or_else(|| partial.masq_source.map(|ip| ip.to_string()))?;
            Some(Meaning::KubeEndpoint {
                service: partial.service?.to_owned(),
                endpoint,
            })
        }
        ChainKind::KubeRouterPod => {
            let (namespace, pod) = partial.pod?;
            Some(Meaning::KubeRouterPod {
                namespace: owned(namespace),
                pod: owned(pod),
            })
        }
        ChainKind::KubeRouterPolicy => {
            let (namespace, policy) = partial.policy?;
            Some(Meaning::KubeRouterPolicy {
                namespace: namespace.map(owned),
                policy: owned(policy),
            })
        }
        ChainKind::CalicoPolicy(id, direction) => {
            let policy = partial.calico_name.map_or_else(|| id.clone(), owned);
            Some(Meaning::CalicoPolicy {
                policy,
                direction: *direction,
            })
        }
        ChainKind::CalicoProfile(id, direction) => {
            let profile = partial.calico_name.map_or_else(|| id.clone(), owned);
            Some(Meaning::CalicoProfile {
                profile,
                direction: *direction,
            })
        }
        ChainKind::CniContainer => {
            let (network, container_id) = partial.cni?;
            Some(Meaning::CniContainer {
                network: owned(network),
                container_id: owned(container_id),
            })
        }
        ChainKind::Fixed(meaning) => Some(meaning.clone()),
        ChainKind::Plain => None,
    }
}

/// The meaning of an Istio, flannel or Cilium chain no name-based kind covers: the proxy port of
/// an Istio redirect chain, flanneld's pod network, what a Cilium chain is for.
fn dataplane_chain(chain: &Chain, flannel: Option<&str>) -> Option<Meaning> {
    if chain.name.starts_with("FLANNEL-") {
        return Some(Meaning::Flannel {
            network: flannel?.to_owned(),
            rule: None,
        });
    }
    dataplane::istio_chain(chain).or_else(|| dataplane::cilium_chain(&chain.name))
}

/// The `-p` of a rule (not negated).
fn protocol_of(spec: &RuleSpec) -> Option<&str> {
    spec.protocol
        .as_ref()
        .filter(|p| !p.negated)
        .map(|p| p.value.as_str())
}

/// The `--to-destination` of a DNAT rule when it is a usable address (garbled targets written by
/// a too-old iptables, `0.0.0.0:0` and empty values are not).
fn dnat_endpoint(spec: &RuleSpec) -> Option<&str> {
    let target = spec.target.as_ref().filter(|t| t.name == "DNAT")?;
    let value = target
        .options
        .iter()
        .filter(|o| o.name == "to-destination")
        .flat_map(|o| &o.values)
        .find(|v| is_endpoint(v))?;
    Some(value.as_str())
}

fn is_endpoint(text: &str) -> bool {
    let ip = text
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| text.parse::<IpAddr>());
    ip.is_ok_and(|ip| !ip.is_unspecified())
}

/// The `-s <ip>/32` (or `/128`) of kube-proxy's hairpin rule `-s <endpoint> -j KUBE-MARK-MASQ`.
fn masq_source(spec: &RuleSpec) -> Option<IpAddr> {
    (spec.target_name() == Some("KUBE-MARK-MASQ")).then_some(())?;
    let source = spec.source.as_ref().filter(|s| !s.negated)?;
    let host_len = if source.value.addr.is_ipv4() { 32 } else { 128 };
    (source.value.prefix_len() == Some(host_len)).then_some(source.value.addr)
}

/// What rule annotation needs to see of its table.
struct RuleContext<'a> {
    table: &'a Table,
    index: &'a HashMap<&'a str, usize>,
    meanings: &'a [Option<Meaning>],
    chain_idx: usize,
    /// flanneld's pod network, when the table has its rules.
    flannel: Option<&'a str>,
}

impl RuleContext<'_> {
    fn chain_name(&self) -> &str {
        &self.table.chains[self.chain_idx].name
    }

    fn target_meaning(&self, spec: &RuleSpec) -> Option<&Meaning> {
        let target = *self.index.get(spec.target_name()?)?;
        (target != self.chain_idx).then_some(())?;
        self.meanings[target].as_ref()
    }

    fn rule_annotation(
        &self,
        chain_owner: Owner,
        spec: &RuleSpec,
        evidence: Evidence<'_>,
    ) -> Annotation {
        let owner = if chain_owner == Owner::Other {
            self.builtin_rule_owner(spec)
        } else {
            chain_owner
        };
        let meaning = self
            .own_meaning(spec, evidence)
            .or_else(|| self.target_meaning(spec).cloned())
            .or_else(|| self.meanings[self.chain_idx].clone());
        let counts_endpoint_connections = matches!(meaning, Some(Meaning::KubeEndpoint { .. }))
            && self.table.name == "nat"
            && self.chain_name().starts_with("KUBE-SEP-")
            && spec.target_name() == Some("DNAT");
        Annotation {
            owner,
            meaning,
            policy_verdict: rule_verdict(self.chain_name(), spec),
            counts_endpoint_connections,
        }
    }

    /// Owner of a rule in a chain no component owns: by comment, jump target, then interfaces.
    fn builtin_rule_owner(&self, spec: &RuleSpec) -> Owner {
        let by_target = || {
            spec.target_name()
                .map(|t| chain_owner(&self.table.name, t))
                .filter(|o| *o != Owner::Other)
        };
        owner_from_comments(spec)
            .or_else(by_target)
            .or_else(|| owner_from_interfaces(spec))
            .unwrap_or(Owner::Other)
    }

    /// What the rule's own comment (or, in Docker's chain, its DNAT) says.
    fn own_meaning(&self, spec: &RuleSpec, evidence: Evidence<'_>) -> Option<Meaning> {
        let owned = |text: &str| text.to_owned();
        match evidence {
            Evidence::Kube(kube) => Some(self.kube_meaning(spec, kube)),
            Evidence::Pod(namespace, pod) => Some(Meaning::KubeRouterPod {
                namespace: owned(namespace),
                pod: owned(pod),
            }),
            Evidence::Policy(ns, policy) => Some(Meaning::KubeRouterPolicy {
                namespace: Some(owned(ns)),
                policy: owned(policy),
            }),
            Evidence::Cni(network, id) => Some(Meaning::CniContainer {
                network: owned(network),
                container_id: owned(id),
            }),
            Evidence::Weave(namespace, direction) => Some(Meaning::WeaveNamespaceDefault {
                namespace: owned(namespace),
                direction,
            }),
            Evidence::PolicyJump(_) | Evidence::CalicoName(_) => None,
            Evidence::None if self.chain_name() == "DOCKER" => docker_port(&self.table.name, spec),
            Evidence::None => self.dataplane_meaning(spec),
        }
    }

    /// A rule without a comment that says it: an IPVS-mode ipset match, an Istio capture or
    /// inbound-port rule, a flanneld masquerade or forward rule.
    fn dataplane_meaning(&self, spec: &RuleSpec) -> Option<Meaning> {
        let chain = self.chain_name();
        dataplane::ipvs_set_rule(spec)
            .or_else(|| dataplane::istio_rule(chain, spec))
            .or_else(|| dataplane::cilium_rule(spec))
            .or_else(|| {
                let network = self.flannel.filter(|_| chain.starts_with("FLANNEL-"))?;
                dataplane::flannel_rule(network, chain, spec)
            })
    }

    fn kube_meaning(&self, spec: &RuleSpec, kube: KubeComment<'_>) -> Meaning {
        match kube {
            KubeComment::Service(service, kind) => Meaning::KubeService {
                service: service.to_owned(),
                kind: Some(kind),
            },
            KubeComment::Endpoint(service, endpoint) => Meaning::KubeEndpoint {
                service: service.to_owned(),
                endpoint: endpoint.to_owned(),
            },
            KubeComment::NoEndpoints(service, local_only) => Meaning::KubeNoEndpoints {
                service: service.to_owned(),
                local_only,
            },
            KubeComment::ServiceOnly(service) => self.service_only_meaning(spec, service),
        }
    }

    /// A bare `ns/svc:port` comment: an endpoint's when the rule is in or jumps to that endpoint's
    /// chain, a node port in nat `KUBE-NODEPORTS`, else just the service.
    fn service_only_meaning(&self, spec: &RuleSpec, service: ServicePortRef<'_>) -> Meaning {
        let same_endpoint = |m: &&Meaning| matches!(m, Meaning::KubeEndpoint { service: s, .. } if same_service(s, service));
        if let Some(m) = self.target_meaning(spec).filter(same_endpoint) {
            return m.clone();
        }
        if let Some(m) = self.meanings[self.chain_idx].as_ref().filter(same_endpoint) {
            return m.clone();
        }
        let node_port = self.table.name == "nat" && self.chain_name() == "KUBE-NODEPORTS";
        Meaning::KubeService {
            service: service.to_owned(),
            kind: node_port.then_some(ServiceKind::NodePort),
        }
    }
}

fn same_service(owned: &ServicePort, borrowed: ServicePortRef<'_>) -> bool {
    owned.namespace == borrowed.namespace
        && owned.name == borrowed.name
        && owned.port == borrowed.port
}

/// Docker's published ports: nat `DOCKER` DNAT (host port → container) and filter `DOCKER`
/// ACCEPT of the container's address and port.
fn docker_port(table: &str, spec: &RuleSpec) -> Option<Meaning> {
    let dport = || {
        spec.matches
            .iter()
            .filter(|m| m.module == "tcp" || m.module == "udp" || m.module == "sctp")
            .find_map(|m| m.value("dport"))
    };
    match (table, spec.target_name()?) {
        ("nat", "DNAT") => {
            let container = dnat_endpoint(spec)?.to_owned();
            Some(Meaning::DockerPort {
                host_port: dport().map(str::to_owned),
                container,
            })
        }
        ("filter", "ACCEPT") => {
            let dest = spec.destination.as_ref().filter(|d| !d.negated)?;
            let container = match dest.value.addr {
                IpAddr::V4(ip) => format!("{ip}:{}", dport()?),
                IpAddr::V6(ip) => format!("[{ip}]:{}", dport()?),
            };
            Some(Meaning::DockerPort {
                host_port: None,
                container,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_kinds_from_names() {
        assert_eq!(
            chain_kind("KUBE-SVC-NPX46M4PTMTKRN6Y"),
            ChainKind::KubeService(None)
        );
        assert_eq!(
            chain_kind("KUBE-XLB-NPX46M4PTMTKRN6Y"),
            ChainKind::KubeService(Some(ServiceKind::LocalEndpoints))
        );
        assert_eq!(
            chain_kind("KUBE-SEP-QAX236RR3UXXQODE"),
            ChainKind::KubeEndpoint
        );
        assert_eq!(chain_kind("KUBE-SEP-"), ChainKind::Plain);
        assert_eq!(chain_kind("KUBE-SERVICES"), ChainKind::Plain);
        assert_eq!(
            chain_kind("KUBE-NWPLCY-DEFAULT"),
            ChainKind::Fixed(Meaning::KubeRouterPolicy {
                namespace: None,
                policy: "DEFAULT".into()
            })
        );
        assert_eq!(chain_kind("KUBE-NWPLCY-ABC"), ChainKind::KubeRouterPolicy);
        assert_eq!(chain_kind("CNI-HOSTPORT-DNAT"), ChainKind::Plain);
        assert_eq!(
            chain_kind("CNI-DN-a07f9dd15b9a28dd35dd9"),
            ChainKind::CniContainer
        );
        assert_eq!(
            chain_kind("cali-thfw-eth0"),
            ChainKind::Fixed(Meaning::CalicoHostEndpoint {
                interface: "eth0".into(),
                direction: Direction::Ingress
            })
        );
        assert_eq!(
            chain_kind("cali-po-_iIL2GVSReX3hYOgY4sn"),
            ChainKind::CalicoPolicy("_iIL2GVSReX3hYOgY4sn".into(), Direction::Egress)
        );
        assert_eq!(
            chain_kind("cali-pri-kns.default"),
            ChainKind::CalicoProfile("kns.default".into(), Direction::Ingress)
        );
        assert_eq!(chain_kind("cali-to-wl-dispatch"), ChainKind::Plain);
        assert_eq!(chain_kind("cali-tw-"), ChainKind::Plain);
    }

    #[test]
    fn endpoints_must_be_real_addresses() {
        assert!(is_endpoint("10.0.0.1:80"));
        assert!(is_endpoint("[fd00::1]:80"));
        assert!(is_endpoint("10.0.0.1"));
        for junk in [
            "",
            "0.0.0.0",
            "0.0.0.0:0",
            ":0",
            "--random",
            "10.0.0.1:http",
        ] {
            assert!(!is_endpoint(junk), "{junk:?}");
        }
    }
}
