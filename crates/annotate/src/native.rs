//! Kubernetes and CNI meaning of native nftables tables (the typed model of
//! `nfscope_ruleset::typed`), in the same [`Owner`] / [`Meaning`] vocabulary as the iptables
//! annotations, so both modes of a component read alike.
//!
//! Recognised by table name:
//! - kube-proxy's nftables mode (table `kube-proxy`, ip/ip6): `service-HASH-ns/name/proto/port`
//!   (the service port), `local-…` (its node-local endpoints), `external-…` (its external
//!   destinations), `firewall-…` (its
//!   `loadBalancerSourceRanges`), `endpoint-HASH-ns/name/proto/port__ip/port` (one endpoint); the
//!   elements of the maps `service-ips`, `service-nodeports`, `firewall-ips`,
//!   `no-endpoint-services` and `no-endpoint-nodeports` (from the chain they dispatch to or from
//!   their `ns/name:port` comment); the fixed chains (`services`, `reject-chain`, `masquerading`,
//!   `cluster-ips-check`, `nodeport-endpoints-check`, base chains `filter-*`/`nat-*`, …) as
//!   [`Meaning::Role`].
//! - Calico's nftables dataplane (table `calico`): chains `<table>-cali-…` mean what the iptables
//!   `cali-…` chain of the same name means (workload, host endpoint, policy, profile), and their
//!   rules count the same network-policy decisions ([`PolicyVerdict`]).
//! - Docker's nftables backend (table `docker-bridges`): DNAT of a published port
//!   ([`Meaning::DockerPort`]), per-bridge chains.
//! - Istio's nftables mode (tables `istio-*`): the redirects to the proxy and the inbound port
//!   choices, as for its `ISTIO_*` iptables chains.
//! - firewalld's nftables backend (table `firewalld`, and `firewalld_policy_drop` while it
//!   starts): zone and policy chains `<table>_<IN|FWD|FWDI|FWDO|PRE|POST|OUT>_<zone>[_<part>]`
//!   ([`Meaning::FirewalldZone`]), the dispatch chains that pick a zone by interface or source,
//!   and the base chains' final reject, as [`Meaning::Role`].
//!
//! Anything else is owned by [`Owner::Other`] without meaning. It does no I/O, never panics on
//! odd names, and is linear in rules plus set elements.

use std::net::IpAddr;

use nfscope_ruleset::typed::{
    CtKey, Expr, Key, MapData, MapRef, Nat, NatAddr, NatKind, NftChain, NftRuleset, NftSetDef,
    NftTable, Rhs, TypedRule, Value, Verdict,
};

use crate::types::{Annotation, Meaning, Owner, PolicyVerdict, ServiceKind, ServicePort};

/// Returned for indices the ruleset does not have.
static UNKNOWN: Annotation = Annotation::owned_by(Owner::Other);

/// The annotations of every chain, rule and set element of one [`NftRuleset`], addressed by the
/// same indices.
#[derive(Debug, Clone, Default)]
pub struct NativeAnnotations {
    tables: Vec<TableAnn>,
}

#[derive(Debug, Clone, Default)]
struct TableAnn {
    owner: Option<Owner>,
    chains: Vec<ChainAnn>,
    /// Per set, per element.
    elements: Vec<Vec<Option<Meaning>>>,
}

#[derive(Debug, Clone)]
struct ChainAnn {
    annotation: Annotation,
    rules: Vec<Annotation>,
}

impl NativeAnnotations {
    /// The annotation of `ruleset.tables[t].chains[c]` (owner `Other`, no meaning, when out of range).
    pub fn chain(&self, t: usize, c: usize) -> &Annotation {
        self.chain_entry(t, c).map_or(&UNKNOWN, |c| &c.annotation)
    }

    /// The annotation of rule `r` (0-based) of that chain.
    pub fn rule(&self, t: usize, c: usize, r: usize) -> &Annotation {
        self.chain_entry(t, c)
            .and_then(|c| c.rules.get(r))
            .unwrap_or(&UNKNOWN)
    }

    /// The meaning of element `e` of set or map `s` of table `t`, if any.
    pub fn element(&self, t: usize, s: usize, e: usize) -> Option<&Meaning> {
        self.tables.get(t)?.elements.get(s)?.get(e)?.as_ref()
    }

    /// The owner of the whole table, when its name says it.
    pub fn table_owner(&self, t: usize) -> Option<Owner> {
        self.tables.get(t)?.owner
    }

    fn chain_entry(&self, t: usize, c: usize) -> Option<&ChainAnn> {
        self.tables.get(t)?.chains.get(c)
    }
}

/// Annotates every table of `ruleset`.
pub fn annotate_native(ruleset: &NftRuleset) -> NativeAnnotations {
    NativeAnnotations {
        tables: ruleset.tables.iter().map(annotate_table).collect(),
    }
}

/// Which component writes a native table, from its name.
pub fn table_owner(table: &NftTable) -> Option<Owner> {
    let name = table.name.as_str();
    match name {
        "kube-proxy" => Some(Owner::KubeProxy),
        "calico" => Some(Owner::Calico),
        "docker-bridges" => Some(Owner::Docker),
        "firewalld" | "firewalld_policy_drop" => Some(Owner::Firewalld),
        _ if name.starts_with("istio") => Some(Owner::Istio),
        _ if name.starts_with("cilium") => Some(Owner::Cilium),
        _ => None,
    }
}

fn annotate_table(table: &NftTable) -> TableAnn {
    let owner = table_owner(table);
    let (chains, elements) = match owner {
        Some(Owner::KubeProxy) => kube_proxy_table(table),
        Some(Owner::Calico) => {
            let mut parts = plain(table, Owner::Calico, |c| calico_chain(&c.name), |_, _| None);
            for (c, ann) in table.chains.iter().zip(&mut parts.0) {
                for (r, a) in c.rules.iter().zip(&mut ann.rules) {
                    a.policy_verdict = calico_verdict(&c.name, r);
                }
            }
            parts
        }
        Some(Owner::Docker) => plain(table, Owner::Docker, docker_chain, |_, r| docker_rule(r)),
        Some(Owner::Istio) => plain(table, Owner::Istio, istio_chain, istio_rule),
        Some(Owner::Firewalld) => plain(table, Owner::Firewalld, firewalld_chain, firewalld_rule),
        Some(o) => plain(table, o, |_| None, |_, _| None),
        None => plain(table, Owner::Other, |_| None, |_, _| None),
    };
    TableAnn {
        owner,
        chains,
        elements,
    }
}

fn with_meaning(owner: Owner, meaning: Option<Meaning>) -> Annotation {
    Annotation {
        meaning,
        ..Annotation::owned_by(owner)
    }
}

fn role(what: &str) -> Option<Meaning> {
    Some(Meaning::Role {
        what: what.to_owned(),
    })
}

type Parts = (Vec<ChainAnn>, Vec<Vec<Option<Meaning>>>);

/// Owner on everything; chain meaning from `chain`, rule meaning from `rule` else the chain's.
fn plain(
    table: &NftTable,
    owner: Owner,
    chain: impl Fn(&NftChain) -> Option<Meaning>,
    rule: impl Fn(&NftChain, &TypedRule) -> Option<Meaning>,
) -> Parts {
    let chains = table
        .chains
        .iter()
        .map(|c| {
            let meaning = chain(c);
            ChainAnn {
                rules: c
                    .rules
                    .iter()
                    .map(|r| with_meaning(owner, rule(c, r).or_else(|| meaning.clone())))
                    .collect(),
                annotation: with_meaning(owner, meaning),
            }
        })
        .collect();
    let elements = table
        .sets
        .iter()
        .map(|s| vec![None; s.elements.len()])
        .collect();
    (chains, elements)
}

// ---------------------------------------------------------------------------------------------
// kube-proxy (nftables mode)

/// A kube-proxy nftables per-object chain, parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeNftChain {
    /// `service-HASH-ns/name/proto/port` (kind `None`), `external-…` (`External`), `firewall-…`
    /// (`LoadBalancerSourceRanges`).
    Service {
        /// The service port.
        service: ServicePort,
        /// Lower-case protocol from the name.
        protocol: String,
        /// Which way in; `None` for the main service chain.
        kind: Option<ServiceKind>,
    },
    /// `endpoint-HASH-ns/name/proto/port__ip/port`.
    Endpoint {
        /// The service port.
        service: ServicePort,
        /// Lower-case protocol from the name.
        protocol: String,
        /// `ip:port` (`[ip]:port` for IPv6).
        endpoint: String,
    },
}

impl KubeNftChain {
    /// The meaning of the chain.
    pub fn meaning(&self) -> Meaning {
        match self {
            Self::Service { service, kind, .. } => Meaning::KubeService {
                service: service.clone(),
                kind: *kind,
            },
            Self::Endpoint {
                service, endpoint, ..
            } => Meaning::KubeEndpoint {
                service: service.clone(),
                endpoint: endpoint.clone(),
            },
        }
    }
}

/// Parses a kube-proxy nftables chain name (`service-`, `external-`, `firewall-`, `endpoint-`
/// followed by an 8-character hash, `-` and the service port as `ns/name/proto/port`).
pub fn kube_nft_chain(name: &str) -> Option<KubeNftChain> {
    const PREFIXES: [(&str, Option<Option<ServiceKind>>); 5] = [
        ("service-", Some(None)),
        ("local-", Some(Some(ServiceKind::LocalEndpoints))),
        ("external-", Some(Some(ServiceKind::External))),
        (
            "firewall-",
            Some(Some(ServiceKind::LoadBalancerSourceRanges)),
        ),
        ("endpoint-", None),
    ];
    let (rest, kind) = PREFIXES
        .iter()
        .find_map(|(p, k)| name.strip_prefix(p).map(|r| (r, *k)))?;
    let (hash, rest) = rest.split_once('-')?;
    if hash.len() != 8
        || !hash
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return None;
    }
    let (svc, ep) = match kind {
        Some(_) => (rest, None),
        None => {
            let (svc, ep) = rest.split_once("__")?;
            (svc, Some(ep))
        }
    };
    let mut parts = svc.split('/');
    let (ns, svc_name, proto, port) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !matches!(proto, "tcp" | "udp" | "sctp") {
        return None;
    }
    let service = ServicePort::parse(&if port.is_empty() {
        format!("{ns}/{svc_name}")
    } else {
        format!("{ns}/{svc_name}:{port}")
    })?;
    let protocol = proto.to_owned();
    Some(match (kind, ep) {
        (Some(kind), _) => KubeNftChain::Service {
            service,
            protocol,
            kind,
        },
        (None, Some(ep)) => KubeNftChain::Endpoint {
            service,
            protocol,
            endpoint: endpoint_from_name(ep)?,
        },
        (None, None) => return None,
    })
}

/// Whether a kube-proxy nftables per-object chain's hash is kube-proxy's for the rest of its name:
/// `PREFIX-HASH-REST` with HASH the first 8 characters of base32(sha256(REST)) (`hashAndTruncate`
/// in kube-proxy's nftables proxier). `None` when the name is not such a chain or was truncated
/// (`…...` above 240 characters), so its input is unknown.
pub fn kube_nft_hash_matches(name: &str) -> Option<bool> {
    kube_nft_chain(name)?;
    let (_, rest) = name.split_once('-')?;
    let (hash, input) = rest.split_once('-')?;
    if input.ends_with("...") {
        return None;
    }
    Some(hash == &crate::hash::hash16(input)[..8])
}

/// `10.0.0.1/80` → `10.0.0.1:80`; `fd00.10.180..1/80` (kube-proxy writes an IPv6 address with
/// `.` for `:`) → `[fd00:10:180::1]:80`.
fn endpoint_from_name(ep: &str) -> Option<String> {
    let (ip, port) = ep.rsplit_once('/')?;
    port.parse::<u16>().ok()?;
    if let Ok(v4) = ip.parse::<std::net::Ipv4Addr>() {
        return Some(format!("{v4}:{port}"));
    }
    let v6: std::net::Ipv6Addr = ip.replace('.', ":").parse().ok()?;
    Some(format!("[{v6}]:{port}"))
}

/// What kube-proxy's fixed chains, sets and maps do.
fn kube_proxy_fixed(name: &str) -> Option<&'static str> {
    Some(match name {
        "services" => "dispatches traffic to service IPs and node ports to their service chains",
        "reject-chain" => "rejects connections to services without endpoints",
        "masquerading" => "masquerades packets marked for it (mark 0x4000)",
        "mark-for-masquerade" => "marks packets for masquerading (mark 0x4000)",
        "cluster-ips-check" => {
            "rejects traffic to unused ports of cluster IPs and drops traffic to unallocated cluster IPs"
        }
        "nodeport-endpoints-check" => {
            "drops or rejects new connections to node ports of services without endpoints"
        }
        "service-endpoints-check" => {
            "drops or rejects new connections to services without endpoints"
        }
        "firewall-check" => "applies loadBalancerSourceRanges to load balancer IPs",
        "filter-prerouting"
        | "filter-input"
        | "filter-forward"
        | "filter-output"
        | "filter-output-post-dnat" => "kube-proxy filter hook (new connections to services)",
        "nat-prerouting" | "nat-output" => "kube-proxy service DNAT hook",
        "nat-postrouting" => "kube-proxy masquerade hook",
        "service-ips" => "cluster, external and load balancer IPs of services",
        "service-nodeports" => "node ports of services",
        "no-endpoint-services" => "service IPs of services without endpoints",
        "no-endpoint-nodeports" => "node ports of services without endpoints",
        "firewall-ips" => "load balancer IPs subject to loadBalancerSourceRanges",
        "cluster-ips" => "active cluster IPs",
        "nodeport-ips" => "node IPs that accept node port traffic",
        _ => return None,
    })
}

fn kube_proxy_table(table: &NftTable) -> Parts {
    let owner = Owner::KubeProxy;
    let chains = table
        .chains
        .iter()
        .map(|c| {
            let parsed = kube_nft_chain(&c.name);
            let meaning = match &parsed {
                Some(k) => Some(k.meaning()),
                None => kube_proxy_fixed(&c.name).and_then(role),
            };
            let rules = c
                .rules
                .iter()
                .map(|r| {
                    let own = match &parsed {
                        Some(_) => meaning.clone(),
                        None => kube_proxy_rule(r).or_else(|| meaning.clone()),
                    };
                    with_meaning(owner, own)
                })
                .collect();
            ChainAnn {
                annotation: with_meaning(owner, meaning),
                rules,
            }
        })
        .collect();
    let cluster_ips = table.set("cluster-ips");
    let elements = table
        .sets
        .iter()
        .map(|s| {
            s.elements
                .iter()
                .map(|e| kube_proxy_element(s, e, cluster_ips))
                .collect()
        })
        .collect();
    (chains, elements)
}

/// Rules of fixed chains: the map lookups say which map they consult.
fn kube_proxy_rule(r: &TypedRule) -> Option<Meaning> {
    r.exprs.iter().find_map(|e| match e {
        Expr::Vmap {
            map: MapRef::Named(m),
            ..
        } => kube_proxy_fixed(m).map(|what| Meaning::Role {
            what: format!("looks up @{m}: {what}"),
        }),
        _ => None,
    })
}

/// The meaning of one element of kube-proxy's maps.
fn kube_proxy_element(
    set: &NftSetDef,
    e: &nfscope_ruleset::typed::SetElem,
    cluster_ips: Option<&NftSetDef>,
) -> Option<Meaning> {
    let target = match &e.data {
        Some(MapData::Verdict(Verdict::Goto(t) | Verdict::Jump(t))) => Some(t.as_str()),
        _ => None,
    };
    match set.name.as_str() {
        "no-endpoint-services" | "no-endpoint-nodeports" => {
            let service = ServicePort::parse(e.comment.as_deref()?.trim())?;
            let local_only = matches!(e.data, Some(MapData::Verdict(Verdict::Drop)));
            Some(Meaning::KubeNoEndpoints {
                service,
                local_only,
            })
        }
        "service-ips" | "service-nodeports" | "firewall-ips" => {
            let (service, chain_kind) = match kube_nft_chain(target?)? {
                KubeNftChain::Service { service, kind, .. } => (service, kind),
                KubeNftChain::Endpoint { .. } => return None,
            };
            let kind = match set.name.as_str() {
                "service-nodeports" => ServiceKind::NodePort,
                "firewall-ips" => ServiceKind::LoadBalancerSourceRanges,
                _ => {
                    let is_cluster_ip = first_addr(&e.key).is_some_and(|a| {
                        cluster_ips.is_some_and(|s| {
                            s.elements.iter().any(|c| first_addr(&c.key) == Some(a))
                        })
                    });
                    if is_cluster_ip && chain_kind.is_none() {
                        ServiceKind::ClusterIp
                    } else {
                        // An external IP and a load balancer IP look the same here.
                        ServiceKind::External
                    }
                }
            };
            Some(Meaning::KubeService {
                service,
                kind: Some(kind),
            })
        }
        _ => None,
    }
}

fn first_addr(v: &Value) -> Option<IpAddr> {
    match v {
        Value::Addr(a) => Some(*a),
        Value::Concat(vs) => vs.first().and_then(first_addr),
        _ => None,
    }
}

/// One kube-proxy Service port that `no-endpoint-services` / `no-endpoint-nodeports` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEndpointService {
    /// The service port (from the element comment).
    pub service: ServicePort,
    /// `true` when the element drops (no local endpoints, `externalTrafficPolicy: Local`).
    pub local_only: bool,
    /// The map.
    pub map: String,
    /// Index of the map in the table's sets.
    pub set_index: usize,
    /// Index of the element in the map.
    pub element_index: usize,
}

/// The services a kube-proxy table lists as having no (local) endpoints, in map and element
/// order; empty for other tables.
pub fn no_endpoint_services(table: &NftTable) -> Vec<NoEndpointService> {
    if table_owner(table) != Some(Owner::KubeProxy) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (s, set) in table.sets.iter().enumerate() {
        if !matches!(
            set.name.as_str(),
            "no-endpoint-services" | "no-endpoint-nodeports"
        ) {
            continue;
        }
        for (i, e) in set.elements.iter().enumerate() {
            if let Some(Meaning::KubeNoEndpoints {
                service,
                local_only,
            }) = kube_proxy_element(set, e, None)
            {
                out.push(NoEndpointService {
                    service,
                    local_only,
                    map: set.name.clone(),
                    set_index: s,
                    element_index: i,
                });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Calico, Docker, Istio

/// Calico names its nft chains `<iptables table>-<iptables chain>`: `filter-cali-tw-cali123`.
fn calico_chain(name: &str) -> Option<Meaning> {
    let (_, rest) = name.split_once('-')?;
    crate::resolve::calico_chain_meaning(rest)
}

/// The network-policy decision a Calico rule counts, as for its iptables chains
/// ([`crate::verdict`]): in endpoint chains (`<layer>-cali-tw-/fw-/th-/fh-/thfw-/fhfw-`) a
/// `return` commented "Return if policy/profile accepted" is `Accept` and a drop or reject is
/// `Deny`; in policy and profile chains (`cali-pi-/po-/pri-/pro-`) a drop or reject is `Deny`.
/// Drops of `ct state invalid` packets are no policy's decision.
fn calico_verdict(chain: &str, r: &TypedRule) -> Option<PolicyVerdict> {
    const ENDPOINT: [&str; 6] = [
        "cali-tw-",
        "cali-fw-",
        "cali-th-",
        "cali-fh-",
        "cali-thfw-",
        "cali-fhfw-",
    ];
    const POLICY: [&str; 4] = ["cali-pi-", "cali-po-", "cali-pri-", "cali-pro-"];
    let (_, name) = chain.split_once('-')?;
    let endpoint = ENDPOINT.iter().any(|p| name.starts_with(p));
    let policy = POLICY.iter().any(|p| name.starts_with(p));
    if !endpoint && !policy {
        return None;
    }
    let invalid = r.exprs.iter().any(|e| match e {
        Expr::Match(m) => {
            matches!(m.key, Key::Ct { key: CtKey::State, .. })
                && matches!(&m.rhs, Rhs::Values(v) if v.iter().any(|x| matches!(x, Value::Sym(s) if s == "invalid")))
        }
        _ => false,
    });
    match r.verdict()? {
        Verdict::Drop | Verdict::Reject { .. } if !invalid => Some(PolicyVerdict::Deny),
        Verdict::Return if endpoint => {
            let c = r.comment.as_deref().unwrap_or("");
            (c.contains("Return if policy accepted") || c.contains("Return if profile accepted"))
                .then_some(PolicyVerdict::Accept)
        }
        _ => None,
    }
}

/// Docker's per-bridge chains: `filter-forward-in__docker0`, `nat-postrouting-out__br-x`.
fn docker_chain(c: &NftChain) -> Option<Meaning> {
    let (what, bridge) = c.name.split_once("__")?;
    let phrase = match what {
        "filter-forward-in" => "forwarded traffic into bridge",
        "filter-forward-out" => "forwarded traffic out of bridge",
        "nat-postrouting-in" => "source NAT of traffic into bridge",
        "nat-postrouting-out" => "source NAT (masquerade) of traffic out of bridge",
        _ => return None,
    };
    Some(Meaning::Role {
        what: format!("docker: {phrase} {bridge}"),
    })
}

/// Docker's published ports: `… tcp dport 8080 dnat to 192.0.2.2:80`.
fn docker_rule(r: &TypedRule) -> Option<Meaning> {
    let nat = nat_of(r, NatKind::Dnat)?;
    let Some(NatAddr::Value(Value::Addr(ip))) = &nat.addr else {
        return None;
    };
    let port = match &nat.port {
        Some(Value::Int(p)) => p.to_string(),
        _ => return None,
    };
    let container = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    Some(Meaning::DockerPort {
        host_port: dport(r),
        container,
    })
}

fn nat_of(r: &TypedRule, kind: NatKind) -> Option<&Nat> {
    r.exprs.iter().find_map(|e| match e {
        Expr::Nat(n) if n.kind == kind => Some(n),
        _ => None,
    })
}

/// The destination port a rule matches with `==` on one value.
fn dport(r: &TypedRule) -> Option<String> {
    use nfscope_ruleset::typed::{Dir, Key, Op};
    r.exprs.iter().find_map(|e| match e {
        Expr::Match(m) if matches!(m.key, Key::Port { dir: Dir::Dst, .. }) && m.op == Op::Eq => {
            match &m.rhs {
                Rhs::Values(v) => match v.as_slice() {
                    [Value::Int(p)] => Some(p.to_string()),
                    [Value::Range(a, b)] => match (&**a, &**b) {
                        (Value::Int(a), Value::Int(b)) => Some(format!("{a}:{b}")),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    })
}

fn redirect_port(r: &TypedRule) -> Option<String> {
    let nat = r.exprs.iter().find_map(|e| match e {
        Expr::Nat(n) if matches!(n.kind, NatKind::Redirect | NatKind::Tproxy) => Some(n),
        _ => None,
    })?;
    match &nat.port {
        Some(Value::Int(p)) => Some(p.to_string()),
        _ => None,
    }
}

/// A chain whose every rule redirects to the same port (`istio-redirect` → 15001).
fn istio_chain(c: &NftChain) -> Option<Meaning> {
    let port = redirect_port(c.rules.first()?)?;
    c.rules
        .iter()
        .all(|r| redirect_port(r).as_deref() == Some(port.as_str()))
        .then_some(Meaning::IstioCapture { port })
}

fn istio_rule(c: &NftChain, r: &TypedRule) -> Option<Meaning> {
    if let Some(port) = redirect_port(r) {
        return Some(Meaning::IstioCapture { port });
    }
    if c.name == "istio-inbound" {
        let port = dport(r)?;
        let captured = match r.verdict()? {
            Verdict::Return | Verdict::Accept => false,
            Verdict::Jump(t) | Verdict::Goto(t) if t.starts_with("istio") => true,
            _ => return None,
        };
        return Some(Meaning::IstioInboundPort { port, captured });
    }
    None
}

// ---------------------------------------------------------------------------------------------
// firewalld (nftables backend)

/// The netfilter tables firewalld prefixes its chain names with.
const FIREWALLD_TABLES: [&str; 5] = ["raw", "mangle", "nat", "filter", "security"];

/// The chain-name shortcuts firewalld uses (`SHORTCUTS` in firewalld's `core/base.py`; `FWDI` /
/// `FWDO` in releases before policies) and the traffic each judges.
const FIREWALLD_TRAFFIC: [(&str, &str); 7] = [
    ("IN", "input"),
    ("FWDI", "forward in"),
    ("FWDO", "forward out"),
    ("FWD", "forward"),
    ("PRE", "prerouting"),
    ("POST", "postrouting"),
    ("OUT", "output"),
];

/// The sub-chains every zone and policy chain jumps to, in order.
const FIREWALLD_PARTS: [&str; 5] = ["pre", "log", "deny", "allow", "post"];

/// `filter_IN_public_allow` → zone `public`, input, part `allow`; `nat_PRE_policy_x` → policy `x`.
/// The dispatch chains (`filter_INPUT_ZONES`, `…_ZONES_SOURCE`, `…_dispatch`, `…_to_…`) get a
/// [`Meaning::Role`]; base chains none (their rules say what they do).
fn firewalld_chain(c: &NftChain) -> Option<Meaning> {
    firewalld_chain_name(&c.name)
}

fn firewalld_chain_name(name: &str) -> Option<Meaning> {
    let (_table, rest) = name
        .split_once('_')
        .filter(|(t, _)| FIREWALLD_TABLES.contains(t))?;
    if let Some(role) = firewalld_dispatch(rest) {
        return Some(role);
    }
    let (short, name) = rest.split_once('_')?;
    let traffic = FIREWALLD_TRAFFIC.iter().find(|(s, _)| *s == short)?.1;
    let (name, part) = match name.rsplit_once('_') {
        Some((n, p)) if FIREWALLD_PARTS.contains(&p) && !n.is_empty() => (n, Some(p.to_owned())),
        _ => (name, None),
    };
    let (zone, policy) = match name.strip_prefix("policy_") {
        Some(p) => (p, true),
        None => (name, false),
    };
    (!zone.is_empty()).then(|| Meaning::FirewalldZone {
        zone: zone.to_owned(),
        policy,
        traffic: traffic.to_owned(),
        part,
    })
}

/// The chains that send traffic on to a zone or policy chain.
fn firewalld_dispatch(rest: &str) -> Option<Meaning> {
    let what = if rest.ends_with("_ZONES_SOURCE") {
        "firewalld: sends traffic to the zone bound to its source address"
    } else if rest.ends_with("_ZONES") {
        "firewalld: sends traffic to its zone by interface (else the default zone)"
    } else if rest.ends_with("_dispatch") || rest.ends_with("_dispatch_stage2") {
        "firewalld: sends traffic to its zones and policies"
    } else if rest.contains("_to_") && rest.split_once('_').is_some_and(|(s, _)| s.len() <= 4) {
        "firewalld: sends traffic between two zones to their policies"
    } else if rest.starts_with("POLICIES") || rest.contains("_POLICIES_") {
        "firewalld: runs the policies of this hook"
    } else {
        return None;
    };
    role(what)
}

/// A jump or goto to a zone or policy chain means that zone; the final reject or drop of a
/// filter base chain is firewalld's default for what no zone or policy accepted.
fn firewalld_rule(c: &NftChain, r: &TypedRule) -> Option<Meaning> {
    match r.verdict()? {
        Verdict::Jump(target) | Verdict::Goto(target) => match firewalld_chain_name(target)? {
            m @ Meaning::FirewalldZone { part: None, .. } => Some(m),
            _ => None,
        },
        Verdict::Reject { .. } | Verdict::Drop
            if c.base.is_some()
                && c.name.starts_with("filter_")
                && r.exprs
                    .iter()
                    .all(|e| matches!(e, Expr::Verdict(_) | Expr::Counter { .. })) =>
        {
            role("firewalld: rejects what no zone or policy accepted")
        }
        _ => None,
    }
}

#[cfg(test)]
mod firewalld_tests {
    use super::firewalld_chain_name;
    use crate::types::Meaning;

    fn summary(name: &str) -> Option<String> {
        firewalld_chain_name(name).map(|m| m.summary())
    }

    /// Names as firewalld 1.x builds them (`policy_base_chain_name` and `build_policy_chain_rules`
    /// in firewalld's `core/fw_policy.py` / `core/nftables.py`: `<table>_<SHORT>_policy_<name>`
    /// plus `_pre/_log/_deny/_allow/_post`; `<table>_<CHAIN>_dispatch`, `…_<zone>_to_<zone>`).
    #[test]
    fn policy_and_dispatch_chain_names() {
        assert_eq!(
            summary("filter_IN_policy_allow-host-ipv6").as_deref(),
            Some("firewalld policy allow-host-ipv6, input")
        );
        assert_eq!(
            summary("nat_POST_policy_egress_allow").as_deref(),
            Some("firewalld policy egress, postrouting: allow rules")
        );
        assert_eq!(
            summary("filter_OUT_work_post").as_deref(),
            Some("firewalld zone work, output: post rules")
        );
        for dispatch in [
            "filter_INPUT_dispatch",
            "filter_IN_public_dispatch_stage2",
            "filter_FWD_public_to_internal",
        ] {
            assert!(
                matches!(firewalld_chain_name(dispatch), Some(Meaning::Role { .. })),
                "{dispatch}"
            );
        }
        // Base chains and names outside firewalld's scheme mean nothing.
        for plain in [
            "filter_INPUT",
            "nat_PREROUTING",
            "input",
            "filter_XYZ_public",
            "mine_IN_a",
        ] {
            assert_eq!(firewalld_chain_name(plain), None, "{plain}");
        }
    }
}
