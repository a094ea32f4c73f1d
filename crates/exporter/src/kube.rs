//! Kubernetes series derived from rule annotations: traffic per Service endpoint, rejected
//! traffic per Service without endpoints, per kube-router pod firewall and per Calico policy.
//!
//! Owns which annotated rules feed which series and how they aggregate (rules mapping to the
//! same labels are summed). It does not decide what a rule means (`nfscope-annotate`).

use nfscope_annotate::{Annotation, Direction, Meaning, PolicyVerdict};
use nfscope_ruleset::{Counters, Rule};

use crate::expo::{Exposition, Kind};
use crate::metrics::{Count, Prepared, Summed};

const ENDPOINT_HELP: &str = "New connections kube-proxy sent to a Service endpoint: packets of the DNAT rule in the \
endpoint's KUBE-SEP chain of table nat (nat sees only the first packet of a connection).";
const NO_ENDPOINTS_HELP: &str = "Packets kube-proxy rejected or dropped because the Service port has no (local_only=\"true\": \
no node-local) endpoints.";
const ROUTER_POD_HELP: &str = "Packets kube-router's network policy firewall denied for a pod (rules of its pod firewall \
chains that drop or reject).";
const CALICO_HELP: &str = "Packets a Calico policy or profile rule accepted or denied (kind: policy or profile; \
direction: ingress or egress; verdict: accept or deny).";

/// Accumulates the four Kubernetes families over all rulesets.
struct KubeSeries {
    endpoints: Summed<String, 6, Count>,
    no_endpoints: Summed<String, 6, Count>,
    router_pods: Summed<String, 4, Count>,
    calico: Summed<String, 6, Count>,
}

pub(crate) fn write_kube_series(out: &mut Exposition, prepared: &[Prepared<'_>]) {
    let mut series = KubeSeries {
        endpoints: Summed::new(),
        no_endpoints: Summed::new(),
        router_pods: Summed::new(),
        calico: Summed::new(),
    };
    for p in prepared {
        let Some(annotations) = p.annotations else {
            continue;
        };
        for (t, table) in p.ruleset.tables.iter().enumerate() {
            for (c, chain) in table.chains.iter().enumerate() {
                for (r0, rule) in chain.rules.iter().enumerate() {
                    let Some(counters) = rule.counters else {
                        continue;
                    };
                    let place = Place {
                        family: p.family(),
                        backend: p.backend(),
                        table: &table.name,
                        chain: &chain.name,
                    };
                    series.add(&place, rule, counters, annotations.rule(t, c, r0));
                }
            }
        }
    }
    series.write(out);
}

/// Where a rule sits.
struct Place<'a> {
    family: &'static str,
    backend: &'static str,
    table: &'a str,
    chain: &'a str,
}

impl KubeSeries {
    fn add(&mut self, at: &Place<'_>, rule: &Rule, counters: Counters, ann: &Annotation) {
        let Some(meaning) = &ann.meaning else { return };
        let packets = Count(counters.packets);
        let (f, b) = (at.family, at.backend);
        let owned =
            |parts: &[&str]| -> Vec<String> { parts.iter().map(|p| (*p).to_owned()).collect() };
        match (meaning, ann.policy_verdict) {
            (Meaning::KubeEndpoint { service, endpoint }, _) if is_endpoint_dnat(at, rule) => {
                let key = [
                    f,
                    b,
                    &service.namespace,
                    &service.name,
                    &service.port,
                    endpoint,
                ];
                self.endpoints.add(to_array(owned(&key)), packets);
            }
            (
                Meaning::KubeNoEndpoints {
                    service,
                    local_only,
                },
                _,
            ) => {
                let local = if *local_only { "true" } else { "false" };
                let key = [
                    f,
                    b,
                    &service.namespace,
                    &service.name,
                    &service.port,
                    local,
                ];
                self.no_endpoints.add(to_array(owned(&key)), packets);
            }
            (Meaning::KubeRouterPod { namespace, pod }, Some(PolicyVerdict::Deny)) => {
                self.router_pods
                    .add(to_array(owned(&[f, b, namespace, pod])), packets);
            }
            (
                Meaning::CalicoPolicy {
                    policy: name,
                    direction,
                },
                Some(verdict),
            ) => {
                self.add_calico([f, b, "policy", name], *direction, verdict, packets);
            }
            (
                Meaning::CalicoProfile {
                    profile: name,
                    direction,
                },
                Some(verdict),
            ) => {
                self.add_calico([f, b, "profile", name], *direction, verdict, packets);
            }
            _ => {}
        }
    }

    fn add_calico(
        &mut self,
        head: [&str; 4],
        direction: Direction,
        verdict: PolicyVerdict,
        packets: Count,
    ) {
        let [f, b, kind, name] = head.map(str::to_owned);
        self.calico.add(
            [f, b, kind, name, direction.to_string(), verdict.to_string()],
            packets,
        );
    }

    fn write(&self, out: &mut Exposition) {
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

/// The one rule of a KUBE-SEP chain that counts connections: its DNAT in table nat.
fn is_endpoint_dnat(at: &Place<'_>, rule: &Rule) -> bool {
    at.table == "nat"
        && at.chain.starts_with("KUBE-SEP-")
        && rule.spec.target_name() == Some("DNAT")
}

fn to_array<const N: usize>(parts: Vec<String>) -> [String; N] {
    let mut parts = parts.into_iter();
    std::array::from_fn(|_| parts.next().unwrap_or_default())
}
