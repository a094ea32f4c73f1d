//! Kubernetes series derived from rule annotations: traffic per Service endpoint, rejected
//! traffic per Service without endpoints, per kube-router pod firewall and per Calico policy.
//!
//! Owns which annotated rules feed which series and how they aggregate (rules mapping to the
//! same labels are summed). It does not decide what a rule means (`nfscope-annotate`).

use nfscope_annotate::{Annotation, Direction, Meaning, PolicyVerdict};
use nfscope_ruleset::Counters;

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

/// Accumulates the four Kubernetes families over all rulesets. Keys borrow from the annotations.
struct KubeSeries<'a> {
    endpoints: Summed<&'a str, 6, Count>,
    no_endpoints: Summed<&'a str, 6, Count>,
    router_pods: Summed<&'a str, 4, Count>,
    calico: Summed<&'a str, 6, Count>,
}

pub(crate) fn write_kube_series(out: &mut Exposition<'_>, prepared: &[Prepared<'_>]) {
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
        let place = Place {
            family: p.family(),
            backend: p.backend(),
        };
        // Counters and annotations only: the rules' specs may have been dropped
        // (`Ruleset::drop_rule_specs`) once the annotations were computed.
        for (t, table) in p.ruleset.tables.iter().enumerate() {
            for (c, chain) in table.chains.iter().enumerate() {
                for (r0, rule) in chain.rules.iter().enumerate() {
                    let Some(counters) = rule.counters else {
                        continue;
                    };
                    series.add(&place, counters, annotations.rule(t, c, r0));
                }
            }
        }
    }
    series.write(out);
}

/// Which ruleset a rule belongs to.
struct Place {
    family: &'static str,
    backend: &'static str,
}

impl<'a> KubeSeries<'a> {
    fn add(&mut self, at: &Place, counters: Counters, ann: &'a Annotation) {
        let Some(meaning) = &ann.meaning else { return };
        let packets = Count(counters.packets);
        let (f, b) = (at.family, at.backend);
        match (meaning, ann.policy_verdict) {
            (
                Meaning::KubeEndpoint {
                    service: s,
                    endpoint,
                },
                _,
            ) if ann.counts_endpoint_connections => {
                self.endpoints
                    .add([f, b, &s.namespace, &s.name, &s.port, endpoint], packets);
            }
            (
                Meaning::KubeNoEndpoints {
                    service: s,
                    local_only,
                },
                _,
            ) => {
                let local = if *local_only { "true" } else { "false" };
                self.no_endpoints
                    .add([f, b, &s.namespace, &s.name, &s.port, local], packets);
            }
            (Meaning::KubeRouterPod { namespace, pod }, Some(PolicyVerdict::Deny)) => {
                self.router_pods.add([f, b, namespace, pod], packets);
            }
            (
                Meaning::CalicoPolicy {
                    policy: name,
                    direction,
                },
                Some(verdict),
            ) => {
                self.calico.add(
                    [
                        f,
                        b,
                        "policy",
                        name,
                        direction_str(*direction),
                        verdict_str(verdict),
                    ],
                    packets,
                );
            }
            (
                Meaning::CalicoProfile {
                    profile: name,
                    direction,
                },
                Some(verdict),
            ) => {
                self.calico.add(
                    [
                        f,
                        b,
                        "profile",
                        name,
                        direction_str(*direction),
                        verdict_str(verdict),
                    ],
                    packets,
                );
            }
            _ => {}
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
