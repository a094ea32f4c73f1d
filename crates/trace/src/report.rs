//! Rendering a [`TraceResult`]: the stable JSON contract and the readable text path, both with
//! the Kubernetes meaning of the rules crossed and a one-line explanation when the pattern is
//! recognised.
//!
//! Owns the [`Report`] shape (what `nfscope trace --format json` and `GET /api/trace` print), the
//! text layout, and the explanations (NetworkPolicy reject, service without endpoints, Calico
//! policy drop, service DNAT to an endpoint, IPVS hand-off, built-in policy). It does not trace
//! (see [`crate::Tracer`]) or compute annotations (it is handed `nfscope_annotate::Annotations`).

use std::fmt::Write as _;

use nfscope_annotate::native::{KubeNftChain, kube_nft_chain};
use nfscope_annotate::{
    Annotation, Annotations, Meaning, NativeAnnotations, Owner, annotate_native,
};
use nfscope_ruleset::nft::render_rule;
use nfscope_ruleset::typed::{NftFamily, Value};
use nfscope_ruleset::{Policy, render_rule_spec};
use serde::Serialize;

use crate::engine::{endpoint, fmt_prob};
use crate::result::{Branch, Effect, RuleRef, Step, TraceResult, Verdict};
use crate::{Packet, TraceInput, Unread};

/// The JSON contract (documented in the README).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ACCEPT`, `DROP`, `REJECT` or `UNDETERMINED`.
    pub verdict: Verdict,
    /// `MUST` when every possibility was explored and agrees, else `MAY`.
    pub certainty: &'static str,
    /// The deciding rule (see the crate docs); `null` when none (no filter table crossed).
    pub decided_by: Option<RuleView>,
    /// NAT of the main branch.
    pub nat: NatView,
    /// Steps of the main branch.
    pub path: Vec<StepView>,
    /// Every explored branch when there is more than one (load balancing, undetermined matches).
    pub branches: Vec<BranchView>,
    /// Exploration stopped at the branch cap.
    pub branches_capped: bool,
    /// One line saying why, when the pattern is recognised.
    pub explanation: Option<String>,
    /// IPVS hand-off, approximations, routing remarks.
    pub notes: Vec<String>,
    /// Sources of the node that could not be read, and why (empty when everything was read).
    pub unread: Vec<Unread>,
}

/// A rule (or policy) with where it lives and what it means.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// `ipv4` / `ipv6`.
    pub family: String,
    /// `nft` / `legacy` / `unknown`.
    pub backend: String,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// 1-based as `iptables -L --line-numbers` counts; `null` for a policy.
    pub rule_index: Option<usize>,
    /// The rule in save syntax (`-A CHAIN …`), or `-P CHAIN POLICY` for a policy.
    pub rule: String,
    /// Owner and Kubernetes meaning, e.g. `kube-proxy: service default/web:http endpoint 10.0.0.5:80`.
    pub annotation: Option<String>,
    /// The kernel's rule handle (native nftables rules, when the dump has it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
}

/// Rewritten addresses.
#[derive(Debug, Clone, Serialize)]
pub struct NatView {
    /// New destination `ip:port`.
    pub dnat: Option<String>,
    /// New source `ip:port` (or `MASQUERADE(iface)` when the interface's address is unknown).
    pub snat: Option<String>,
}

/// One step of a path.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// Hook (`PREROUTING`, …).
    pub hook: String,
    /// `ipv4`/`ipv6` (null for routing steps).
    pub family: Option<String>,
    /// Backend (null for routing steps).
    pub backend: Option<String>,
    /// Table (null for routing steps).
    pub table: Option<String>,
    /// Chain (null for routing steps).
    pub chain: Option<String>,
    /// 1-based rule index; null for policies, chain ends and routing.
    pub rule_index: Option<usize>,
    /// The rule in save syntax, `-P CHAIN POLICY`, or null.
    pub rule: Option<String>,
    /// What happened, e.g. `jump KUBE-SERVICES`, `DNAT to 10.244.1.5:8080`, `policy DROP`.
    pub effect: String,
    /// The assumption or random choice this step depends on.
    pub condition: Option<String>,
    /// Owner and Kubernetes meaning of the rule or chain.
    pub annotation: Option<String>,
}

/// One branch.
#[derive(Debug, Clone, Serialize)]
pub struct BranchView {
    /// Verdict of this branch.
    pub verdict: Verdict,
    /// `MUST` when reached without assumptions, else `MAY`.
    pub certainty: &'static str,
    /// Probability from load balancing (1 when none).
    pub probability: f64,
    /// Deciding rule of this branch.
    pub decided_by: Option<RuleView>,
    /// NAT of this branch.
    pub nat: NatView,
    /// Steps.
    pub path: Vec<StepView>,
    /// Assumptions made about undetermined matches.
    pub assumptions: Vec<String>,
}

/// Builds the report. `annotations[i]` belongs to `input.rulesets[i]` (pass an empty slice to skip
/// the iptables rules' meanings); native tables (`input.native`) are annotated here.
pub fn build_report(
    input: &TraceInput,
    annotations: &[Annotations],
    packet: &Packet,
    result: &TraceResult,
) -> Report {
    let native: Vec<NativeAnnotations> = input.native.iter().map(annotate_native).collect();
    build_report_with(input, annotations, &native, packet, result)
}

/// [`build_report`] with the native tables' meanings computed once by the caller
/// (`native[i]` = `annotate_native(&input.native[i])`), for callers that build many reports
/// from one input (the failure explainer).
pub fn build_report_with(
    input: &TraceInput,
    annotations: &[Annotations],
    native: &[NativeAnnotations],
    packet: &Packet,
    result: &TraceResult,
) -> Report {
    let ctx = Ctx {
        input,
        annotations,
        native,
    };
    let main = result.main();
    let branches = if result.branches.len() > 1 {
        result.branches.iter().map(|b| ctx.branch(b)).collect()
    } else {
        Vec::new()
    };
    let mut notes = main.notes.clone();
    if result.capped {
        notes.push(format!(
            "branch cap reached: {} branches explored, more were possible",
            result.branches.len()
        ));
    }
    Report {
        verdict: result.verdict,
        certainty: if result.must { "MUST" } else { "MAY" },
        decided_by: result.decided_by.map(|r| ctx.rule(r)),
        nat: nat_view(main),
        path: main.steps.iter().map(|s| ctx.step(s)).collect(),
        branches,
        branches_capped: result.capped,
        explanation: ctx.explain(packet, result),
        notes,
        unread: input.unread.clone(),
    }
}

/// What the report reads rules with: the input and the meaning of its rules (also used by
/// `crate::failure` to classify a failure's cause).
pub(crate) struct Ctx<'a> {
    pub(crate) input: &'a TraceInput,
    pub(crate) annotations: &'a [Annotations],
    /// The meaning of `input.native[i]`'s rules (kube-proxy's nftables mode, Calico, Docker, Istio).
    pub(crate) native: &'a [NativeAnnotations],
}

/// Why kube-proxy's nftables table dropped or rejected a packet (see
/// [`Ctx::kube_proxy_nft_denial`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KubeNftDenial {
    /// A Service port without (local) endpoints: `service` as its map element's comment says.
    NoEndpoints {
        /// `ns/name:port`.
        service: String,
        /// REJECT (no endpoints) rather than DROP (no local endpoints).
        reject: bool,
    },
    /// A ClusterIP on a port no Service has.
    InvalidPort,
    /// An address of the Service CIDR no Service has.
    Unallocated,
}

impl Ctx<'_> {
    pub(crate) fn rule(&self, r: RuleRef) -> RuleView {
        if r.native {
            return self.native_rule(r);
        }
        let rs = &self.input.rulesets[r.ruleset];
        let table = &rs.tables[r.table];
        let chain = &table.chains[r.chain];
        let rule = match r.rule.and_then(|i| chain.rules.get(i)) {
            Some(rule) => format!("-A {} {}", chain.name, render_rule_spec(&rule.spec))
                .trim_end()
                .to_owned(),
            None => format!(
                "-P {} {}",
                chain.name,
                chain.policy.unwrap_or(Policy::Accept)
            ),
        };
        RuleView {
            family: rs.family.to_string(),
            backend: rs.backend.to_string(),
            table: table.name.clone(),
            chain: chain.name.clone(),
            rule_index: r.rule.map(|i| i + 1),
            rule,
            annotation: self.annotation(r),
            handle: None,
        }
    }

    /// A native nftables rule (or base-chain policy) in nft syntax.
    fn native_rule(&self, r: RuleRef) -> RuleView {
        let table = &self.input.native[r.ruleset].tables[r.table];
        let chain = &table.chains[r.chain];
        let rule = r.rule.and_then(|i| chain.rules.get(i));
        let text = match rule {
            Some(rule) => render_rule(rule),
            None => {
                let policy = chain.base.as_ref().and_then(|b| b.policy);
                format!(
                    "policy {}",
                    if policy == Some(nfscope_ruleset::typed::Policy::Drop) {
                        "drop"
                    } else {
                        "accept"
                    }
                )
            }
        };
        RuleView {
            family: match table.family {
                NftFamily::Ip => "ipv4".to_owned(),
                NftFamily::Ip6 => "ipv6".to_owned(),
                f => f.as_str().to_owned(),
            },
            backend: "nftables".to_owned(),
            table: table.name.clone(),
            chain: chain.name.clone(),
            rule_index: rule.map(|x| x.position),
            rule: text,
            annotation: self.annotation(r),
            handle: rule.and_then(|x| x.handle),
        }
    }

    pub(crate) fn annotation_of(&self, r: RuleRef) -> Option<&Annotation> {
        let (rule, chain) = if r.native {
            let ann = self.native.get(r.ruleset)?;
            (
                r.rule.map(|i| ann.rule(r.table, r.chain, i)),
                ann.chain(r.table, r.chain),
            )
        } else {
            let ann = self.annotations.get(r.ruleset)?;
            (
                r.rule.map(|i| ann.rule(r.table, r.chain, i)),
                ann.chain(r.table, r.chain),
            )
        };
        Some(match rule {
            Some(a) if a.meaning.is_some() || chain.meaning.is_none() => a,
            _ => chain,
        })
    }

    pub(crate) fn meaning(&self, r: RuleRef) -> Option<&Meaning> {
        if r.native {
            let ann = self.native.get(r.ruleset)?;
            return r
                .rule
                .and_then(|i| ann.rule(r.table, r.chain, i).meaning.as_ref())
                .or(ann.chain(r.table, r.chain).meaning.as_ref());
        }
        let ann = self.annotations.get(r.ruleset)?;
        r.rule
            .and_then(|i| ann.rule(r.table, r.chain, i).meaning.as_ref())
            .or(ann.chain(r.table, r.chain).meaning.as_ref())
    }

    fn annotation(&self, r: RuleRef) -> Option<String> {
        let a = self.annotation_of(r)?;
        match (&a.meaning, a.owner) {
            (Some(m), owner) => Some(format!("{owner}: {}", m.summary())),
            (None, Owner::Other) => None,
            (None, owner) => Some(owner.to_string()),
        }
    }

    fn step(&self, s: &Step) -> StepView {
        let view = s.at.map(|r| self.rule(r));
        let rule = match (s.at, &s.effect) {
            (Some(r), Effect::EndOfChain) if r.rule.is_none() => None,
            _ => view.as_ref().map(|v| v.rule.clone()),
        };
        StepView {
            hook: s.hook.to_string(),
            family: view.as_ref().map(|v| v.family.clone()),
            backend: view.as_ref().map(|v| v.backend.clone()),
            table: view.as_ref().map(|v| v.table.clone()),
            chain: view.as_ref().map(|v| v.chain.clone()),
            rule_index: view.as_ref().and_then(|v| v.rule_index),
            rule,
            effect: effect_text(&s.effect),
            condition: s.condition.clone(),
            annotation: view.and_then(|v| v.annotation),
        }
    }

    fn branch(&self, b: &Branch) -> BranchView {
        BranchView {
            verdict: b.verdict,
            certainty: if b.is_certain() { "MUST" } else { "MAY" },
            probability: b.probability,
            decided_by: b.decided_by.map(|r| self.rule(r)),
            nat: nat_view(b),
            path: b.steps.iter().map(|s| self.step(s)).collect(),
            assumptions: b.assumptions.clone(),
        }
    }

    /// One line for the patterns we recognise.
    fn explain(&self, packet: &Packet, result: &TraceResult) -> Option<String> {
        let main = result.main();
        if let Some((verdict, must)) = result.read_rules_said {
            let unread: Vec<String> = self
                .input
                .unread
                .iter()
                .filter(|u| u.could_decide(packet.family()))
                .map(Unread::describe)
                .collect();
            return Some(format!(
                "not every ruleset could be read ({}): the rules that were read say {} ({}), the unread ones could decide otherwise",
                unread.join(", "),
                verdict.as_str(),
                if must { "MUST" } else { "MAY" }
            ));
        }
        if result.verdict == Verdict::Undetermined
            && let Some(Effect::Tproxy { to, .. }) = main
                .steps
                .iter()
                .map(|s| &s.effect)
                .find(|e| matches!(e, Effect::Tproxy { .. }))
        {
            return Some(format!(
                "TPROXY hands {} to the transparent proxy socket {to}; the kernel drops it when no such socket exists",
                endpoint(packet.dst, packet.dport)
            ));
        }
        let service = port_label(packet);
        if main.notes.iter().any(|n| n.starts_with("handed to IPVS"))
            && main.verdict == Verdict::Accept
        {
            return Some(format!(
                "{} is an IPVS virtual service: kube-proxy (IPVS mode) load-balances it in the kernel, not in iptables",
                endpoint(packet.dst, packet.dport)
            ));
        }
        let Some(by) = result.decided_by else {
            return main.steps.iter().rev().find_map(|s| match &s.effect {
                Effect::Routed(text) if text.contains("dropped by routing") => {
                    Some(format!("no rule decided: {text}"))
                }
                _ => None,
            });
        };
        let denied = matches!(result.verdict, Verdict::Drop | Verdict::Reject);
        if by.native
            && denied
            && let Some(text) = self.kube_proxy_nft_denial_text(packet, by, result.verdict)
        {
            return Some(text);
        }
        match (self.meaning(by), denied) {
            (Some(Meaning::KubeRouterPod { namespace, pod }), true)
                if self.kube_router_egress(main, by) =>
            {
                Some(format!(
                    "no NetworkPolicy rule lets pod {namespace}/{pod} connect to {} on {service}",
                    packet.dst
                ))
            }
            (Some(Meaning::KubeRouterPod { namespace, pod }), true) => Some(format!(
                "no NetworkPolicy rule admits {} to pod {namespace}/{pod} on {service}",
                packet.src
            )),
            (
                Some(Meaning::KubeNoEndpoints {
                    service: svc,
                    local_only,
                }),
                true,
            ) => Some(format!(
                "service {svc} has no {}endpoints, so kube-proxy {} {}",
                if *local_only { "local " } else { "" },
                if *local_only { "drops" } else { "rejects" },
                endpoint(packet.dst, packet.dport)
            )),
            (
                Some(Meaning::CalicoWorkload {
                    interface,
                    direction,
                }),
                true,
            ) => Some(format!(
                "no Calico policy or profile admits {} {} workload {interface} on {service}",
                packet.src,
                if direction.to_string() == "ingress" {
                    "to"
                } else {
                    "from"
                }
            )),
            (Some(Meaning::CalicoPolicy { policy, direction }), true) => Some(format!(
                "Calico policy {policy} ({direction}) denies {} → {} on {service}",
                packet.src, packet.dst
            )),
            (Some(Meaning::CalicoProfile { profile, direction }), true) => Some(format!(
                "Calico profile {profile} ({direction}) denies {} → {} on {service}",
                packet.src, packet.dst
            )),
            _ => self.explain_generic(packet, result, by),
        }
    }

    fn explain_generic(
        &self,
        packet: &Packet,
        result: &TraceResult,
        by: RuleRef,
    ) -> Option<String> {
        let view = self.rule(by);
        if result.verdict == Verdict::Undetermined {
            return Some(format!(
                "the outcome depends on {}/{} rule {}: see the branches",
                view.table,
                view.chain,
                view.rule_index.map_or("policy".into(), |i| i.to_string())
            ));
        }
        if let Some(endpoint_text) = self.endpoint_reached(result) {
            return Some(endpoint_text);
        }
        if result.verdict == Verdict::Accept
            && packet.ct_state == crate::CtState::New
            && let Some(service) = self.iptables_cluster_ip(packet.dst)
        {
            return Some(format!(
                "{} is the ClusterIP of service {service}, but none of its ports is {}: kube-proxy leaves it untranslated",
                packet.dst,
                port_label(packet)
            ));
        }
        if by.rule.is_none() && result.verdict == Verdict::Drop {
            return Some(format!(
                "no rule in {} {} accepts {} → {} on {}: the chain's policy is DROP",
                view.table,
                view.chain,
                packet.src,
                packet.dst,
                port_label(packet)
            ));
        }
        None
    }

    /// kube-proxy's nftables mode: why its rules dropped or rejected the packet, as text.
    fn kube_proxy_nft_denial_text(
        &self,
        packet: &Packet,
        by: RuleRef,
        verdict: Verdict,
    ) -> Option<String> {
        let dst = endpoint(packet.dst, packet.dport);
        Some(match self.kube_proxy_nft_denial(packet, by, verdict)? {
            KubeNftDenial::NoEndpoints {
                service,
                reject: true,
            } => format!("service {service} has no endpoints, so kube-proxy rejects {dst}"),
            KubeNftDenial::NoEndpoints { service, .. } => {
                format!("service {service} has no local endpoints, so kube-proxy drops {dst}")
            }
            KubeNftDenial::InvalidPort => format!(
                "{} is a ClusterIP, but no Service port is {}: kube-proxy rejects it",
                packet.dst,
                port_label(packet)
            ),
            KubeNftDenial::Unallocated => format!(
                "{} is in the Service CIDR but no Service has it: kube-proxy drops it",
                packet.dst
            ),
        })
    }

    /// kube-proxy's nftables mode: why its rules dropped or rejected the packet, from its chain
    /// names, rule comments and the element comments of its no-endpoint maps.
    pub(crate) fn kube_proxy_nft_denial(
        &self,
        packet: &Packet,
        by: RuleRef,
        verdict: Verdict,
    ) -> Option<KubeNftDenial> {
        if !by.native {
            return None;
        }
        let table = &self.input.native[by.ruleset].tables[by.table];
        if table.name != "kube-proxy" {
            return None;
        }
        let chain = &table.chains[by.chain];
        if chain.name == "reject-chain"
            || matches!(
                chain.name.as_str(),
                "service-endpoints-check" | "nodeport-endpoints-check"
            )
        {
            let service = ["no-endpoint-services", "no-endpoint-nodeports"]
                .iter()
                .filter_map(|m| table.set(m))
                .flat_map(|m| &m.elements)
                .find(|e| kube_element_matches(&e.key, packet))
                .and_then(|e| e.comment.clone())?;
            return Some(KubeNftDenial::NoEndpoints {
                service,
                reject: verdict == Verdict::Reject,
            });
        }
        let comment = by
            .rule
            .and_then(|i| chain.rules.get(i))
            .and_then(|r| r.comment.as_deref())?;
        if comment.starts_with("Reject traffic to invalid ports of ClusterIPs") {
            return Some(KubeNftDenial::InvalidPort);
        }
        if comment.starts_with("Drop traffic to unallocated ClusterIPs") {
            return Some(KubeNftDenial::Unallocated);
        }
        None
    }

    /// kube-router's pod firewall chain `by` was entered for traffic *from* the pod (its
    /// egress): the jump into it on the main path matches the pod as source (`-s POD`), not as
    /// destination.
    pub(crate) fn kube_router_egress(&self, main: &Branch, by: RuleRef) -> bool {
        if by.native {
            return false;
        }
        let table = &self.input.rulesets[by.ruleset].tables[by.table];
        let name = &table.chains[by.chain].name;
        main.steps.iter().rev().any(|s| {
            let Some(at) =
                s.at.filter(|a| !a.native && a.ruleset == by.ruleset && a.table == by.table)
            else {
                return false;
            };
            let entered = matches!(&s.effect, Effect::Jump(c) | Effect::Goto(c) if c == name);
            let Some(rule) = at.rule.and_then(|i| table.chains[at.chain].rules.get(i)) else {
                return false;
            };
            entered
                && rule.spec.source.as_ref().is_some_and(|a| !a.negated)
                && rule.spec.destination.is_none()
        })
    }

    /// The Service whose ClusterIP `dst` is, from kube-proxy's iptables portal rules
    /// (`KUBE-SERVICES` in nat: `-d IP/32 … cluster IP`), with the ports it has there.
    pub(crate) fn iptables_cluster_ip(&self, dst: std::net::IpAddr) -> Option<String> {
        for (i, rs) in self.input.rulesets.iter().enumerate() {
            let ann = self.annotations.get(i)?;
            for (t, table) in rs.tables.iter().enumerate() {
                if table.name != "nat" {
                    continue;
                }
                for (c, chain) in table.chains.iter().enumerate() {
                    if chain.name != "KUBE-SERVICES" {
                        continue;
                    }
                    for (r, rule) in chain.rules.iter().enumerate() {
                        let Some(Meaning::KubeService {
                            service,
                            kind: Some(nfscope_annotate::ServiceKind::ClusterIp),
                        }) = &ann.rule(t, c, r).meaning
                        else {
                            continue;
                        };
                        let hit = rule.spec.destination.as_ref().is_some_and(|d| {
                            !d.negated
                                && d.value.addr == dst
                                && matches!(d.value.prefix_len(), Some(32 | 128))
                        });
                        if hit {
                            return Some(format!("{}/{}", service.namespace, service.name));
                        }
                    }
                }
            }
        }
        None
    }

    /// "service X → endpoint Y" from the DNAT step of each branch.
    fn endpoint_reached(&self, result: &TraceResult) -> Option<String> {
        let main = result.main();
        let step = main
            .steps
            .iter()
            .find(|s| matches!(s.effect, Effect::Dnat(_)))?;
        if let Some(r) = step.at.filter(|r| r.native) {
            return self.kube_proxy_nft_endpoint(r, result);
        }
        let Some(Meaning::KubeEndpoint { service, endpoint }) =
            step.at.and_then(|r| self.meaning(r))
        else {
            return None;
        };
        let n = result.branches.len();
        let share = if n > 1 {
            format!(
                " (one of {n} endpoints, probability {})",
                fmt_prob(main.probability)
            )
        } else {
            String::new()
        };
        Some(format!(
            "service {service} sends it to endpoint {endpoint}{share}"
        ))
    }
}

impl Ctx<'_> {
    /// kube-proxy's nftables endpoint chains are named
    /// `endpoint-HASH-NAMESPACE/NAME/PROTO/PORTNAME__IP/PORT`.
    fn kube_proxy_nft_endpoint(&self, r: RuleRef, result: &TraceResult) -> Option<String> {
        let table = &self.input.native[r.ruleset].tables[r.table];
        if table.name != "kube-proxy" {
            return None;
        }
        let Some(KubeNftChain::Endpoint { service, .. }) =
            kube_nft_chain(&table.chains[r.chain].name)
        else {
            return None;
        };
        let main = result.main();
        let (ip, port_no) = main.dnat?;
        let n = result.branches.len();
        let share = if n > 1 {
            format!(
                " (one of {n} branches, probability {})",
                fmt_prob(main.probability)
            )
        } else {
            String::new()
        };
        Some(format!(
            "service {service} sends it to endpoint {}{share}",
            endpoint(ip, port_no)
        ))
    }
}

/// Does a kube-proxy no-endpoint map key (`IP . PROTO . PORT` or `PROTO . PORT`) name this packet?
fn kube_element_matches(key: &Value, packet: &Packet) -> bool {
    let Value::Concat(parts) = key else {
        return false;
    };
    let proto_ok = |v: &Value| match v {
        Value::Sym(s) => s == packet.proto.as_str(),
        Value::Int(n) => *n == u64::from(packet.proto.number()),
        _ => false,
    };
    let port_ok = |v: &Value| matches!(v, Value::Int(p) if Some(*p) == packet.dport.map(u64::from));
    match parts.as_slice() {
        [Value::Addr(a), proto, port] => *a == packet.dst && proto_ok(proto) && port_ok(port),
        [proto, port] => proto_ok(proto) && port_ok(port),
        _ => false,
    }
}

pub(crate) fn port_label(packet: &Packet) -> String {
    match packet.dport {
        Some(p) => format!("{}/{p}", packet.proto),
        None => packet.proto.to_string(),
    }
}

fn nat_view(b: &Branch) -> NatView {
    NatView {
        dnat: b
            .dnat_label
            .clone()
            .or_else(|| b.dnat.map(|(ip, port)| endpoint(ip, port))),
        snat: b.snat.clone(),
    }
}

fn effect_text(e: &Effect) -> String {
    match e {
        Effect::Jump(c) => format!("jump {c}"),
        Effect::Goto(c) => format!("goto {c}"),
        Effect::Return => "return".into(),
        Effect::EndOfChain => "end of chain: return".into(),
        Effect::Policy(p) => format!("policy {p}"),
        Effect::Accept => "ACCEPT".into(),
        Effect::Drop => "DROP".into(),
        Effect::Reject => "REJECT".into(),
        Effect::Queue(t) => format!("{t}: handed to userspace, verdict undetermined"),
        Effect::Dnat(to) => format!("DNAT to {to}"),
        Effect::Snat(to) => format!("SNAT to {to}"),
        Effect::Mark { old, new } => format!("mark {old:#x} -> {new:#x}"),
        Effect::ConnMark { old, new } => format!(
            "connmark {} -> {}",
            hex_or_unknown(*old),
            hex_or_unknown(*new)
        ),
        Effect::RestoreMark { new } => format!("mark restored from connmark: {new:#x}"),
        Effect::Notrack => "NOTRACK: untracked from here on".into(),
        Effect::Continue(what) => format!("{what} (continue)"),
        Effect::MissingChain(c) => {
            format!("jump to {c}: no such chain in the dump, outcome undetermined")
        }
        Effect::UnknownTarget(t) => format!("target {t} is not modelled, outcome undetermined"),
        Effect::NatSkipped(why) => format!("nat not consulted: {why}"),
        Effect::Routed(what) => format!("routing: {what}"),
        Effect::Ipvs(what) => format!("handed to IPVS: {what}"),
        Effect::Tproxy {
            to,
            old_mark,
            new_mark,
        } => format!("TPROXY to {to}, mark {old_mark:#x} -> {new_mark:#x}"),
    }
}

fn hex_or_unknown(v: Option<u32>) -> String {
    v.map_or_else(|| "unknown".into(), |v| format!("{v:#x}"))
}

/// The readable form: the path with meanings, the deciding rule marked `>>`, then branches.
pub fn render_text(packet: &Packet, report: &Report) -> String {
    let mut out = String::new();
    let origin = packet
        .in_iface
        .as_deref()
        .map_or_else(|| "locally generated".to_owned(), |i| format!("in {i}"));
    let _ = writeln!(
        out,
        "packet {} {} -> {} ({origin}, ct {})",
        packet.proto,
        endpoint(packet.src, packet.sport),
        endpoint(packet.dst, packet.dport),
        packet.ct_state.as_str()
    );
    let _ = writeln!(
        out,
        "verdict: {} ({})",
        report.verdict.as_str(),
        report.certainty
    );
    if let Some(text) = &report.explanation {
        let _ = writeln!(out, "why: {text}");
    }
    for u in &report.unread {
        let family = packet.family();
        let aside = if u.source == "rules" && !u.could_decide(family) {
            format!(" (cannot decide an {family} packet)")
        } else {
            String::new()
        };
        let _ = writeln!(out, "not read: {}: {}{aside}", u.describe(), u.reason);
    }
    if let Some(by) = &report.decided_by {
        let index = by
            .rule_index
            .map_or_else(|| "policy".to_owned(), |i| format!("rule {i}"));
        let handle = by
            .handle
            .map_or_else(String::new, |h| format!(" # handle {h}"));
        let _ = writeln!(
            out,
            "decided by: {} {} {}/{} {index}: {}{handle}",
            by.family, by.backend, by.table, by.chain, by.rule
        );
        if let Some(a) = &by.annotation {
            let _ = writeln!(out, "            {a}");
        }
    }
    if report.nat.dnat.is_some() || report.nat.snat.is_some() {
        let _ = writeln!(
            out,
            "nat: dnat {} snat {}",
            report.nat.dnat.as_deref().unwrap_or("-"),
            report.nat.snat.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(out, "\npath:");
    write_path(&mut out, &report.path, report.decided_by.as_ref());
    for (i, b) in report.branches.iter().enumerate() {
        let _ = writeln!(
            out,
            "\nbranch {} of {}: {} ({}), probability {}",
            i + 1,
            report.branches.len(),
            b.verdict.as_str(),
            b.certainty,
            fmt_prob(b.probability)
        );
        if let Some(d) = &b.nat.dnat {
            let _ = writeln!(out, "  dnat {d}");
        }
        for a in &b.assumptions {
            let _ = writeln!(out, "  {a}");
        }
        if let Some(by) = &b.decided_by {
            let _ = writeln!(
                out,
                "  decided by {}/{} {}: {}",
                by.table,
                by.chain,
                by.rule_index
                    .map_or("policy".into(), |i| format!("rule {i}")),
                by.rule
            );
        }
    }
    if report.branches_capped {
        let _ = writeln!(
            out,
            "\n(branch cap reached: not every alternative was explored)"
        );
    }
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn write_path(out: &mut String, path: &[StepView], decided: Option<&RuleView>) {
    for s in path {
        let is_decider = decided.is_some_and(|d| {
            Some(&d.table) == s.table.as_ref()
                && Some(&d.chain) == s.chain.as_ref()
                && d.rule_index == s.rule_index
                && Some(&d.rule) == s.rule.as_ref()
        });
        let mark = if is_decider { ">>" } else { "  " };
        let place = match (&s.table, &s.chain) {
            (Some(t), Some(c)) => format!(
                "{t}/{c}{}",
                s.rule_index.map_or(String::new(), |i| format!(" #{i}"))
            ),
            _ => String::new(),
        };
        let _ = writeln!(out, "{mark} {:<11} {place}  {}", s.hook, s.effect);
        if let (Some(rule), Some(_)) = (&s.rule, s.rule_index) {
            let _ = writeln!(out, "{mark}             {rule}");
        }
        if let Some(a) = &s.annotation {
            let _ = writeln!(out, "               [{a}]");
        }
        if let Some(c) = &s.condition {
            let _ = writeln!(out, "               ({c})");
        }
    }
}
