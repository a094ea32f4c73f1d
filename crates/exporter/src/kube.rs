//! Kubernetes series derived from rule annotations: traffic per Service endpoint, rejected
//! traffic per Service without endpoints, per kube-router pod firewall and per Calico policy.
//!
//! Owns which annotated rules feed which series ([`KubePlan`], computed once per rules change
//! from the annotations, so a scrape needs only counters) and how they aggregate (rules mapping
//! to the same labels are summed). It does not decide what a rule means (`nfscope-annotate`).

use std::collections::{HashMap, HashSet};

use nfscope_annotate::{Annotation, Annotations, Direction, Meaning, PolicyVerdict};
use nfscope_ruleset::Ruleset;

use crate::expo::{Exposition, Kind};
use crate::kube_conntrack::{ConnSample, NoEndpoints};
use crate::metrics::{Count, Prepared, Summed};

const ENDPOINT_HELP: &str = "New connections kube-proxy sent to a Service endpoint: in iptables mode packets of the \
DNAT rule in the endpoint's KUBE-SEP chain of table nat (nat sees only the first packet of a connection); in \
nftables mode (backend=\"nftables\", rules without counters) conntrack NEW events to the Service IP or node \
port answered by the endpoint, counted since nfscope started.";
const NO_ENDPOINTS_HELP: &str = "Packets kube-proxy rejected or dropped because the Service port has no (local_only=\"true\": \
no node-local) endpoints.";
const ROUTER_POD_HELP: &str = "Packets kube-router's network policy firewall denied for a pod (rules of its pod firewall \
chains that drop or reject).";
const CALICO_HELP: &str = "Packets a Calico policy or profile rule accepted or denied (kind: policy or profile; \
direction: ingress or egress; verdict: accept or deny).";

const NO_ENDPOINTS_LISTED_HELP: &str = "1 per Service port kube-proxy's nftables table lists in its no-endpoint \
maps (no-endpoint-services, no-endpoint-nodeports): new connections to it are rejected (local_only=\"true\": \
dropped). kube-proxy's nftables rules carry no counters and rejected connections never reach conntrack, so \
the rejected packets themselves cannot be counted in nftables mode.";

/// What the Kubernetes families get from outside the rule counters (see [`crate::kube_conntrack`]
/// and [`crate::encode_counters_streaming_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeConntrack {
    /// Endpoint series counted from conntrack NEW events.
    pub connections: Vec<ConnSample>,
    /// Service ports kube-proxy's nftables no-endpoint maps list.
    pub no_endpoints: Vec<NoEndpoints>,
}

/// The four families, in the order they are written.
const ENDPOINTS: usize = 0;
const NO_ENDPOINTS: usize = 1;
const ROUTER_PODS: usize = 2;
const CALICO: usize = 3;

/// Label values of one series after `family` and `backend` (unused trailing slots are empty).
type Key = [Box<str>; 4];

/// Which rules of one ruleset feed which Kubernetes series, and those series' label values:
/// everything the Kubernetes families need besides counters. Build it when the rules change
/// ([`crate::RuleLabels::attach_kube_plan`]); it holds one entry per distinct series instead of a
/// meaning per rule, so a server need not keep the annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubePlan {
    /// (flat rule position in table/chain/rule order, family, key index in that family).
    feeds: Vec<(u32, u8, u32)>,
    /// Distinct keys per family, in first-seen order.
    keys: [Vec<Key>; 4],
    /// Flat rule positions whose meaning is one Kubernetes object a family here summarises
    /// ([`is_summarised`]), as a bit set.
    summarised_rules: BitSet,
    /// Flat chain positions (table/chain order) of such chains, as a bit set.
    summarised_chains: BitSet,
}

/// A growable set of small integers, one bit each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn insert(&mut self, i: u32) {
        let (word, bit) = ((i / 64) as usize, i % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// Is a rule or chain with this meaning about one Kubernetes object whose traffic the
/// Kubernetes families already carry? kube-proxy's Service and endpoint chains and rules
/// (`nfscope_kube_endpoint_new_connections_total`, `…_no_endpoints_…`), kube-router's pod
/// firewalls (`nfscope_kube_router_pod_rejected_packets_total`) and Calico's policy and profile
/// chains (`nfscope_calico_policy_packets_total`). Their per-rule series are what
/// `RuleSeries::NotSummarised` leaves out.
pub(crate) fn is_summarised(meaning: Option<&Meaning>) -> bool {
    matches!(
        meaning,
        Some(
            Meaning::KubeService { .. }
                | Meaning::KubeEndpoint { .. }
                | Meaning::KubeNoEndpoints { .. }
                | Meaning::KubeRouterPod { .. }
                | Meaning::CalicoPolicy { .. }
                | Meaning::CalicoProfile { .. }
        )
    )
}

impl KubePlan {
    /// The plan for `ruleset` annotated as `annotations`.
    pub fn new(ruleset: &Ruleset, annotations: &Annotations) -> Self {
        let mut plan = Self::default();
        let mut index: HashMap<(u8, Key), u32> = HashMap::new();
        let mut flat = 0u32;
        let mut flat_chain = 0u32;
        for (t, table) in ruleset.tables.iter().enumerate() {
            for (c, chain) in table.chains.iter().enumerate() {
                if is_summarised(annotations.chain(t, c).meaning.as_ref()) {
                    plan.summarised_chains.insert(flat_chain);
                }
                flat_chain += 1;
                for r0 in 0..chain.rules.len() {
                    if is_summarised(annotations.rule(t, c, r0).meaning.as_ref()) {
                        plan.summarised_rules.insert(flat);
                    }
                    if let Some((family, key)) = series_of(annotations.rule(t, c, r0)) {
                        let keys = &mut plan.keys[family];
                        let next = keys.len() as u32;
                        let at = *index.entry((family as u8, key.clone())).or_insert_with(|| {
                            keys.push(key);
                            next
                        });
                        plan.feeds.push((flat, family as u8, at));
                    }
                    flat += 1;
                }
            }
        }
        plan.feeds.shrink_to_fit();
        plan
    }

    /// Is the rule at this flat position (table/chain/rule order) summarised by a Kubernetes
    /// family ([`is_summarised`])?
    pub(crate) fn rule_summarised(&self, flat: usize) -> bool {
        self.summarised_rules.contains(flat)
    }

    /// Is the chain at this flat position (table/chain order) summarised?
    pub(crate) fn chain_summarised(&self, flat: usize) -> bool {
        self.summarised_chains.contains(flat)
    }
}

/// The family and label values the rule with this annotation feeds, if any.
fn series_of(ann: &Annotation) -> Option<(usize, Key)> {
    let key =
        |a: &str, b: &str, c: &str, d: &str| -> Key { [a.into(), b.into(), c.into(), d.into()] };
    match (ann.meaning.as_ref()?, ann.policy_verdict) {
        (
            Meaning::KubeEndpoint {
                service: s,
                endpoint,
            },
            _,
        ) if ann.counts_endpoint_connections => {
            Some((ENDPOINTS, key(&s.namespace, &s.name, &s.port, endpoint)))
        }
        (
            Meaning::KubeNoEndpoints {
                service: s,
                local_only,
            },
            _,
        ) => {
            let local = if *local_only { "true" } else { "false" };
            Some((NO_ENDPOINTS, key(&s.namespace, &s.name, &s.port, local)))
        }
        (Meaning::KubeRouterPod { namespace, pod }, Some(PolicyVerdict::Deny)) => {
            Some((ROUTER_PODS, key(namespace, pod, "", "")))
        }
        (
            Meaning::CalicoPolicy {
                policy: name,
                direction,
            },
            Some(verdict),
        ) => Some((
            CALICO,
            key(
                "policy",
                name,
                direction_str(*direction),
                verdict_str(verdict),
            ),
        )),
        (
            Meaning::CalicoProfile {
                profile: name,
                direction,
            },
            Some(verdict),
        ) => Some((
            CALICO,
            key(
                "profile",
                name,
                direction_str(*direction),
                verdict_str(verdict),
            ),
        )),
        _ => None,
    }
}

/// Accumulates the four Kubernetes families over all rulesets. Keys borrow from the plans.
struct KubeSeries<'a> {
    endpoints: Summed<&'a str, 6, Count>,
    no_endpoints: Summed<&'a str, 6, Count>,
    router_pods: Summed<&'a str, 4, Count>,
    calico: Summed<&'a str, 6, Count>,
}

/// Writes the four Kubernetes families; returns the endpoint label values of the endpoint
/// series written, in order (see [`crate::Streamed::kube_endpoints`]).
///
/// `conntrack` adds endpoint series counted from conntrack ([`crate::kube_conntrack`]) and the
/// no-endpoint Service ports of kube-proxy's nftables table. One source per Service port: a
/// Service port with an endpoint series from iptables DNAT rule counters is counted by those
/// only, so the same connection is never counted twice.
pub(crate) fn write_kube_series(
    out: &mut Exposition<'_>,
    prepared: &[Prepared<'_>],
    conntrack: &KubeConntrack,
) -> Vec<String> {
    let mut series = KubeSeries {
        endpoints: Summed::new(),
        no_endpoints: Summed::new(),
        router_pods: Summed::new(),
        calico: Summed::new(),
    };
    for p in prepared {
        let Some(plan) = p.plan else {
            continue;
        };
        if plan.feeds.is_empty() {
            continue; // no Kubernetes rules here: no need to walk the counters
        }
        // Packets per flat rule position: only positions and counters are read.
        let packets: Vec<Option<u64>> = p
            .counters
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules)
            .map(|r| r.map(|c| c.packets))
            .collect();
        for &(flat, family, key) in &plan.feeds {
            let Some(Some(value)) = packets.get(flat as usize) else {
                continue;
            };
            let k = &plan.keys[family as usize][key as usize];
            series.add(p.family(), p.backend(), family as usize, k, Count(*value));
        }
    }
    let by_rules: HashSet<(&str, &str, &str)> = series
        .endpoints
        .merged()
        .into_iter()
        .map(|(key, _)| (key[2], key[3], key[4]))
        .collect();
    for s in &conntrack.connections {
        let sp = &s.service;
        if by_rules.contains(&(sp.namespace.as_str(), sp.name.as_str(), sp.port.as_str())) {
            continue;
        }
        series.endpoints.add(
            [
                s.family,
                s.backend,
                &sp.namespace,
                &sp.name,
                &sp.port,
                &s.endpoint,
            ],
            Count(s.connections),
        );
    }
    series.write(out);
    if !conntrack.no_endpoints.is_empty() {
        let name = "nfscope_kube_service_no_endpoints";
        out.family(name, Kind::Gauge, NO_ENDPOINTS_LISTED_HELP);
        for n in &conntrack.no_endpoints {
            let local = if n.local_only { "true" } else { "false" };
            let sp = &n.service;
            out.sample(
                name,
                &[
                    ("family", n.family),
                    ("backend", "nftables"),
                    ("namespace", &sp.namespace),
                    ("service", &sp.name),
                    ("port", &sp.port),
                    ("local_only", local),
                ],
                1u64,
            );
        }
        out.end_family();
    }
    let mut seen = HashSet::new();
    series
        .endpoints
        .merged()
        .into_iter()
        .map(|(key, _)| key[5])
        .filter(|endpoint| seen.insert(*endpoint))
        .map(str::to_owned)
        .collect()
}

impl<'a> KubeSeries<'a> {
    fn add(&mut self, f: &'static str, b: &'static str, family: usize, k: &'a Key, n: Count) {
        match family {
            ENDPOINTS => self.endpoints.add([f, b, &k[0], &k[1], &k[2], &k[3]], n),
            NO_ENDPOINTS => self.no_endpoints.add([f, b, &k[0], &k[1], &k[2], &k[3]], n),
            ROUTER_PODS => self.router_pods.add([f, b, &k[0], &k[1]], n),
            _ => self.calico.add([f, b, &k[0], &k[1], &k[2], &k[3]], n),
        }
    }

    fn write(&self, out: &mut Exposition<'_>) {
        self.endpoints.write(
            out,
            "nfscope_kube_endpoint_new_connections_total",
            Kind::Counter,
            ENDPOINT_HELP,
            [
                "family",
                "backend",
                "namespace",
                "service",
                "port",
                "endpoint",
            ],
        );
        self.no_endpoints.write(
            out,
            "nfscope_kube_service_no_endpoints_rejected_packets_total",
            Kind::Counter,
            NO_ENDPOINTS_HELP,
            [
                "family",
                "backend",
                "namespace",
                "service",
                "port",
                "local_only",
            ],
        );
        self.router_pods.write(
            out,
            "nfscope_kube_router_pod_rejected_packets_total",
            Kind::Counter,
            ROUTER_POD_HELP,
            ["family", "backend", "namespace", "pod"],
        );
        self.calico.write(
            out,
            "nfscope_calico_policy_packets_total",
            Kind::Counter,
            CALICO_HELP,
            ["family", "backend", "kind", "name", "direction", "verdict"],
        );
    }
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

fn verdict_str(v: PolicyVerdict) -> &'static str {
    match v {
        PolicyVerdict::Accept => "accept",
        PolicyVerdict::Deny => "deny",
    }
}
