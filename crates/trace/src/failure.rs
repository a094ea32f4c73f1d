//! Why a connection attempt failed: its first packet, as it arrived, traced through the node's
//! rules, and the failure put in words.
//!
//! Owns the explainer of failed attempts ([`Explainer`]): from an [`Attempt`] (client, the
//! address it dialled, protocol, incoming interface, mark, how it failed, the server when known)
//! it builds the [`Packet`] as it arrived (conntrack NEW, the original destination), traces it,
//! renders the report (the `/api/trace` JSON, with Kubernetes meaning) and says why in one line
//! with a bounded [`Cause`]. A rule, policy or Service is blamed only when the rules dropped or
//! rejected the packet; when they accepted it the failure is put on what was at the other end
//! (nothing listening, no answer, a reset) and the rules are said to have let it through.
//!
//! It also owns the bound on that cost ([`TraceCache`]): traces are shared per (client
//! prefix, dialled address and port, protocol, incoming interface, mark, ruleset generation) in a
//! cache of bounded size, and traces made on misses are limited by a budget per second, so a
//! scanner or a crash-looping client cannot make the node trace every packet; hits, misses,
//! evictions and misses over budget are counted ([`CacheStats`]). A shared trace stands for every
//! client of its prefix: it names the client it was made for, and the one-line explanation is
//! written for each attempt's own client.
//!
//! It does no I/O and reads no clock (the caller passes the time in milliseconds); where the
//! input comes from (the live node, a dump) and how the result is published are the caller's.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use nfscope_annotate::{Annotations, Meaning, NativeAnnotations, Owner, PolicyVerdict};

use crate::engine::endpoint;
use crate::report::{self, Ctx, KubeNftDenial, Report, RuleView, port_label};
use crate::result::{Effect, RuleRef, TraceResult, Verdict};
use crate::{CtState, Packet, Proto, TraceError, TraceInput, Tracer};

/// How the attempt failed, as the flow monitor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptFailure {
    /// TCP: a RST answered the SYN, or an ICMP/ICMPv6 unreachable did.
    Refused,
    /// TCP: reset during the handshake (after the SYN was answered).
    Reset,
    /// No answer in time (a SYN retransmitted without reply).
    Timeout,
    /// UDP: an ICMP port or administratively-prohibited unreachable answered a datagram.
    Unreachable,
}

impl AttemptFailure {
    /// `refused`, `reset`, `timeout`, `unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
        }
    }
}

/// One failed attempt, described by what the node saw of its first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The client's address and port.
    pub client: SocketAddr,
    /// The address and port the client dialled (before any DNAT).
    pub dialled: SocketAddr,
    /// Transport protocol (TCP or UDP in practice).
    pub proto: Proto,
    /// The interface the first packet came in by; `None` when it is not known (then a client
    /// that is one of the node's addresses is taken as locally generated, any other as coming in
    /// by the interface of the route back to it, and the trace says so).
    pub in_iface: Option<String>,
    /// The packet mark on entry, when known.
    pub mark: Option<u32>,
    /// How it failed.
    pub failure: AttemptFailure,
    /// The server that answered or was aimed at after DNAT, when known.
    pub server: Option<SocketAddr>,
}

/// Why an attempt failed, as a bounded identifier (a metric label value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A network policy denied it (kube-router, Calico, Weave, …).
    NetworkPolicy,
    /// kube-proxy rejected it: the Service has no endpoints.
    ServiceNoEndpoints,
    /// kube-proxy dropped it: the Service has no endpoints on this node
    /// (`externalTrafficPolicy: Local`).
    ServiceNoLocalEndpoints,
    /// The address is in the Service CIDR but no Service has it.
    UnallocatedClusterIp,
    /// The address is a ClusterIP, but no port of its Service is the one dialled.
    ClusterIpWrongPort,
    /// A rule without Kubernetes meaning rejected it.
    RuleReject,
    /// A rule without Kubernetes meaning dropped it.
    RuleDrop,
    /// No rule accepted it and a built-in chain's policy dropped it.
    ChainPolicyDrop,
    /// Routing dropped or rejected it (no route, a blackhole, unreachable or prohibit route).
    NoRoute,
    /// The rules accepted it; nothing was listening at the other end (RST or ICMP port
    /// unreachable from there).
    NoListener,
    /// The rules accepted it; the other end reset the connection during the handshake.
    EndpointReset,
    /// The rules accepted it; the other end did not answer.
    EndpointSilent,
    /// The rules do not decide it (MAY), or some could not be read.
    Undetermined,
    /// It could not be traced (the attempt names something the node does not have).
    NotTraced,
}

impl Cause {
    /// Every cause, for label budgets and documentation.
    pub const ALL: [Self; 14] = [
        Self::NetworkPolicy,
        Self::ServiceNoEndpoints,
        Self::ServiceNoLocalEndpoints,
        Self::UnallocatedClusterIp,
        Self::ClusterIpWrongPort,
        Self::RuleReject,
        Self::RuleDrop,
        Self::ChainPolicyDrop,
        Self::NoRoute,
        Self::NoListener,
        Self::EndpointReset,
        Self::EndpointSilent,
        Self::Undetermined,
        Self::NotTraced,
    ];

    /// The identifier: `network-policy`, `service-no-endpoints`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "network-policy",
            Self::ServiceNoEndpoints => "service-no-endpoints",
            Self::ServiceNoLocalEndpoints => "service-no-local-endpoints",
            Self::UnallocatedClusterIp => "unallocated-cluster-ip",
            Self::ClusterIpWrongPort => "cluster-ip-wrong-port",
            Self::RuleReject => "rule-reject",
            Self::RuleDrop => "rule-drop",
            Self::ChainPolicyDrop => "chain-policy-drop",
            Self::NoRoute => "no-route",
            Self::NoListener => "no-listener",
            Self::EndpointReset => "endpoint-reset",
            Self::EndpointSilent => "endpoint-silent",
            Self::Undetermined => "undetermined",
            Self::NotTraced => "not-traced",
        }
    }

    /// Does this cause blame a rule, policy or Service (the rules dropped or rejected it)?
    pub fn blames_rules(self) -> bool {
        !matches!(
            self,
            Self::NoListener
                | Self::EndpointReset
                | Self::EndpointSilent
                | Self::Undetermined
                | Self::NotTraced
        )
    }
}

/// A failed attempt explained.
#[derive(Debug, Clone)]
pub struct Explained {
    /// The trace of the first packet: the `/api/trace` report as JSON (shared by every attempt
    /// the same cache entry answers).
    pub trace_json: Arc<str>,
    /// One line saying why, written for this attempt's client.
    pub explanation: String,
    /// The cause, bounded.
    pub cause: Cause,
    /// The trace it came from.
    pub trace: Arc<Traced>,
}

/// What a trace of an attempt's first packet found, before it is put in words for one attempt:
/// what a [`TraceCache`] keeps.
#[derive(Debug)]
pub struct Traced {
    /// The report as JSON.
    pub trace_json: Arc<str>,
    /// The report.
    pub report: Report,
    /// The client the packet was traced for.
    pub client: IpAddr,
    /// What the rules did with it.
    finding: Finding,
}

impl Traced {
    /// The deciding rule, when one decided.
    pub fn decided_by(&self) -> Option<&RuleView> {
        self.report.decided_by.as_ref()
    }

    /// The verdict of the rules.
    pub fn verdict(&self) -> Verdict {
        self.report.verdict
    }
}

/// A sentence that may name the client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Says {
    /// The same for every client.
    Fixed(String),
    /// `before` + the client's address + `after`.
    Client { before: String, after: String },
}

impl Says {
    fn render(&self, client: IpAddr) -> String {
        match self {
            Self::Fixed(text) => text.clone(),
            Self::Client { before, after } => format!("{before}{client}{after}"),
        }
    }
}

/// What the rules did with the packet, in terms the explanation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finding {
    /// Dropped or rejected (by a rule, a policy or routing): who is to blame.
    Denied {
        cause: Cause,
        says: Says,
        /// A DROP (no answer sent), as opposed to a REJECT.
        silent: bool,
    },
    /// Accepted: where it went (DNAT targets of each branch, with the Service they belong to).
    Accepted {
        /// `(address:port, Service)` of each branch's DNAT; empty when not translated.
        delivered: Vec<(String, Option<String>)>,
        /// The dialled address is a ClusterIP whose Service has no such port (iptables mode).
        cluster_ip_without_port: Option<String>,
    },
    /// Not decided by the rules.
    Undetermined(String),
}

/// Explains attempts against one [`TraceInput`] (the node's rules at one generation).
pub struct Explainer<'a> {
    input: &'a TraceInput,
    annotations: &'a [Annotations],
    native: &'a [NativeAnnotations],
    tracer: Tracer<'a>,
}

impl<'a> Explainer<'a> {
    /// Prepares `input` for explaining: `annotations[i]` belongs to `input.rulesets[i]`,
    /// `native[i]` to `input.native[i]` (`nfscope_annotate::annotate_native`); indexes the rules
    /// once for every attempt explained with it.
    pub fn new(
        input: &'a TraceInput,
        annotations: &'a [Annotations],
        native: &'a [NativeAnnotations],
    ) -> Self {
        Self {
            input,
            annotations,
            native,
            tracer: Tracer::new(input),
        }
    }

    /// The packet as it arrived: the client to the dialled address, conntrack NEW, on its
    /// incoming interface (see [`Attempt::in_iface`]) with its mark. The `String` is a note when
    /// the incoming interface was inferred.
    pub fn packet(&self, attempt: &Attempt) -> Result<(Packet, Option<String>), TraceError> {
        let (src, dst) = (attempt.client.ip(), attempt.dialled.ip());
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(TraceError::Input(format!(
                "client {} and dialled {} are of different families",
                attempt.client, attempt.dialled
            )));
        }
        let mut packet = Packet::new(src, dst, attempt.proto);
        if attempt.proto.has_ports() {
            packet.sport = Some(attempt.client.port());
            packet.dport = Some(attempt.dialled.port());
        }
        packet.ct_state = CtState::New;
        packet.mark = attempt.mark.unwrap_or(0);
        let mut note = None;
        packet.in_iface = match &attempt.in_iface {
            Some(i) => Some(i.clone()),
            None if self.is_local(src) => None,
            None => {
                let dev = self
                    .input
                    .routes
                    .as_ref()
                    .and_then(|r| r.lookup(src))
                    .and_then(|r| r.dev.clone())
                    .ok_or_else(|| {
                        TraceError::Input(format!(
                            "the incoming interface of {} is not known and no route leads back to it",
                            attempt.client
                        ))
                    })?;
                note = Some(format!(
                    "incoming interface not seen: taken as {dev}, the interface of the route back to {src}"
                ));
                Some(dev)
            }
        };
        Ok((packet, note))
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback()
            || self.input.local_addrs.contains(&ip)
            || self.input.routes.as_ref().is_some_and(|r| r.is_local(ip))
    }

    /// Traces the attempt's first packet and finds what the rules did with it (what the cache
    /// keeps); [`Traced::explain`] then puts it in words for one attempt.
    pub fn trace(&self, attempt: &Attempt) -> Result<Arc<Traced>, TraceError> {
        let (packet, note) = self.packet(attempt)?;
        let result = self.tracer.trace(&packet)?;
        let mut report =
            report::build_report_with(self.input, self.annotations, self.native, &packet, &result);
        if let Some(note) = note {
            report.notes.push(note);
        }
        report.notes.push(format!(
            "traced for the first packet of a failed attempt from {} to {} ({}); the trace stands for the attempts of nearby clients too",
            attempt.client,
            attempt.dialled,
            attempt.failure.as_str()
        ));
        let finding = self.finding(&packet, &result, &report);
        let trace_json: Arc<str> = serde_json::to_string(&report)
            .unwrap_or_else(|e| format!("{{\"error\":\"encoding failed: {e}\"}}"))
            .into();
        Ok(Arc::new(Traced {
            trace_json,
            report,
            client: packet.src,
            finding,
        }))
    }

    /// Traces and explains one attempt (no cache).
    pub fn explain(&self, attempt: &Attempt) -> Result<Explained, TraceError> {
        Ok(self.trace(attempt)?.explain(attempt))
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            input: self.input,
            annotations: self.annotations,
            native: self.native,
        }
    }

    fn finding(&self, packet: &Packet, result: &TraceResult, report: &Report) -> Finding {
        let ctx = self.ctx();
        let main = result.main();
        if result.read_rules_said.is_some() || result.verdict == Verdict::Undetermined {
            return Finding::Undetermined(report.explanation.clone().unwrap_or_else(|| {
                "the rules do not decide this packet: see the branches of the trace".to_owned()
            }));
        }
        let port = port_label(packet);
        let dst = packet.dst;
        if result.verdict == Verdict::Accept {
            let delivered = result
                .branches
                .iter()
                .filter_map(|b| {
                    let (ip, p) = b.dnat?;
                    let service = b
                        .steps
                        .iter()
                        .find(|s| matches!(s.effect, Effect::Dnat(_)))
                        .and_then(|s| s.at)
                        .and_then(|r| self.service_of(r));
                    Some((endpoint(ip, p), service))
                })
                .collect::<Vec<_>>();
            let cluster_ip_without_port = if delivered.is_empty() {
                ctx.iptables_cluster_ip(dst)
            } else {
                None
            };
            return Finding::Accepted {
                delivered,
                cluster_ip_without_port,
            };
        }
        let silent = result.verdict == Verdict::Drop;
        let Some(by) = result.decided_by else {
            // Routing decided (no route, blackhole, unreachable, prohibit).
            let text = main
                .steps
                .iter()
                .rev()
                .find_map(|s| match &s.effect {
                    Effect::Routed(t) if t.contains("dropped by routing") => Some(t.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| format!("no rule decided, and {dst} could not be routed"));
            return Finding::Denied {
                cause: Cause::NoRoute,
                says: Says::Fixed(text),
                silent,
            };
        };
        let dialled = endpoint(dst, packet.dport);
        if let Some(denial) = ctx.kube_proxy_nft_denial(packet, by, result.verdict) {
            let (cause, text) = match denial {
                KubeNftDenial::NoEndpoints {
                    service,
                    reject: true,
                } => (
                    Cause::ServiceNoEndpoints,
                    format!("Service {service} has no endpoints: kube-proxy rejects {dialled}"),
                ),
                KubeNftDenial::NoEndpoints { service, .. } => (
                    Cause::ServiceNoLocalEndpoints,
                    format!(
                        "Service {service} has no endpoints on this node (externalTrafficPolicy: Local): kube-proxy drops {dialled}"
                    ),
                ),
                KubeNftDenial::InvalidPort => (
                    Cause::ClusterIpWrongPort,
                    format!(
                        "{dst} is a ClusterIP, but no Service has port {port} on it: kube-proxy rejects it"
                    ),
                ),
                KubeNftDenial::Unallocated => (
                    Cause::UnallocatedClusterIp,
                    format!(
                        "ClusterIP {dst} is not allocated: no Service has it, kube-proxy drops it"
                    ),
                ),
            };
            return Finding::Denied {
                cause,
                says: Says::Fixed(text),
                silent,
            };
        }
        let client_says = |before: String, after: String| Says::Client { before, after };
        let policy = |says| Finding::Denied {
            cause: Cause::NetworkPolicy,
            says,
            silent,
        };
        match ctx.meaning(by) {
            Some(Meaning::KubeRouterPod { namespace, pod }) => {
                return policy(if ctx.kube_router_egress(main, by) {
                    Says::Fixed(format!(
                        "no NetworkPolicy lets pod {namespace}/{pod} connect to {dst} on {port}"
                    ))
                } else {
                    client_says(
                        "no NetworkPolicy admits ".into(),
                        format!(" to pod {namespace}/{pod} on {port}"),
                    )
                });
            }
            Some(Meaning::KubeNoEndpoints {
                service,
                local_only,
            }) => {
                return Finding::Denied {
                    cause: if *local_only {
                        Cause::ServiceNoLocalEndpoints
                    } else {
                        Cause::ServiceNoEndpoints
                    },
                    says: Says::Fixed(if *local_only {
                        format!(
                            "Service {service} has no endpoints on this node (externalTrafficPolicy: Local): kube-proxy drops {dialled}"
                        )
                    } else {
                        format!("Service {service} has no endpoints: kube-proxy rejects {dialled}")
                    }),
                    silent,
                };
            }
            Some(Meaning::CalicoWorkload {
                interface,
                direction: nfscope_annotate::Direction::Ingress,
            }) => {
                return policy(client_says(
                    "no Calico policy or profile admits ".into(),
                    format!(" to workload {interface} on {port}"),
                ));
            }
            Some(Meaning::CalicoWorkload { interface, .. }) => {
                return policy(Says::Fixed(format!(
                    "no Calico policy or profile lets workload {interface} connect to {dst} on {port}"
                )));
            }
            Some(Meaning::CalicoPolicy {
                policy: name,
                direction,
            }) => {
                return policy(client_says(
                    format!("Calico policy {name} ({direction}) denies "),
                    format!(" → {dst} on {port}"),
                ));
            }
            Some(Meaning::CalicoProfile { profile, direction }) => {
                return policy(client_says(
                    format!("Calico profile {profile} ({direction}) denies "),
                    format!(" → {dst} on {port}"),
                ));
            }
            _ => {}
        }
        let annotation = ctx.annotation_of(by);
        if annotation.is_some_and(|a| a.policy_verdict == Some(PolicyVerdict::Deny)) {
            let owner = annotation.map_or(Owner::Other, |a| a.owner);
            return policy(client_says(
                format!("a {owner} network policy rule denies "),
                format!(" → {dst} on {port}"),
            ));
        }
        let view = ctx.rule(by);
        let place = format!("{} {}/{}", view.family, view.table, view.chain);
        let meaning = view
            .annotation
            .as_deref()
            .map_or_else(String::new, |a| format!(" [{a}]"));
        let (cause, text) = match (by.rule, result.verdict) {
            (None, _) => (
                Cause::ChainPolicyDrop,
                format!(
                    "no rule in {place} accepts {dialled} ({port}): the chain's policy drops it"
                ),
            ),
            (Some(i), Verdict::Reject) => (
                Cause::RuleReject,
                format!("{place} rule {} rejects it: {}{meaning}", i + 1, view.rule),
            ),
            (Some(i), _) => (
                Cause::RuleDrop,
                format!("{place} rule {} drops it: {}{meaning}", i + 1, view.rule),
            ),
        };
        // A ClusterIP dialled on a port its Service lacks is not translated, and then whatever
        // the rules do with an address nothing answers for is only the consequence.
        let translated = main
            .steps
            .iter()
            .any(|s| matches!(s.effect, Effect::Dnat(_)));
        if !translated && let Some(service) = ctx.iptables_cluster_ip(dst) {
            return Finding::Denied {
                cause: Cause::ClusterIpWrongPort,
                says: Says::Fixed(format!(
                    "{dst} is the ClusterIP of Service {service}, which has no port {port}: kube-proxy leaves it untranslated, and then {text}"
                )),
                silent,
            };
        }
        Finding::Denied {
            cause,
            says: Says::Fixed(text),
            silent,
        }
    }

    /// The Service a DNAT rule sends to, from its meaning (iptables `KUBE-SEP-`, kube-proxy's
    /// nftables `endpoint-` chains).
    fn service_of(&self, r: RuleRef) -> Option<String> {
        match self.ctx().meaning(r)? {
            Meaning::KubeEndpoint { service, .. } | Meaning::KubeService { service, .. } => {
                Some(service.to_string())
            }
            _ => None,
        }
    }
}

impl Traced {
    /// Puts what the trace found in words for `attempt` (whose client may differ from the one
    /// traced, within the cache's prefix).
    pub fn explain(self: &Arc<Self>, attempt: &Attempt) -> Explained {
        let (cause, explanation) = self.words(attempt);
        Explained {
            trace_json: Arc::clone(&self.trace_json),
            explanation,
            cause,
            trace: Arc::clone(self),
        }
    }

    fn words(&self, attempt: &Attempt) -> (Cause, String) {
        let client = attempt.client.ip();
        let dialled = attempt.dialled;
        match &self.finding {
            Finding::Undetermined(text) => (Cause::Undetermined, text.clone()),
            Finding::Denied {
                cause,
                says,
                silent,
            } => {
                let mut text = says.render(client);
                if *silent
                    && matches!(
                        attempt.failure,
                        AttemptFailure::Refused | AttemptFailure::Unreachable
                    )
                {
                    text.push_str(
                        " (a drop sends no answer, yet the client was refused: the refusal came from elsewhere, or the rules changed since)",
                    );
                }
                (*cause, text)
            }
            Finding::Accepted {
                delivered,
                cluster_ip_without_port,
            } => {
                if let Some(service) = cluster_ip_without_port {
                    return (
                        Cause::ClusterIpWrongPort,
                        format!(
                            "{} is the ClusterIP of Service {service}, which has no port {}/{}: kube-proxy leaves it untranslated and nothing answers there",
                            dialled.ip(),
                            attempt.proto,
                            dialled.port()
                        ),
                    );
                }
                let target = self.target(attempt, delivered);
                match attempt.failure {
                    AttemptFailure::Refused | AttemptFailure::Unreachable => (
                        Cause::NoListener,
                        format!(
                            "the rules accepted it; nothing listening on {target} ({})",
                            attempt.proto
                        ),
                    ),
                    AttemptFailure::Reset => (
                        Cause::EndpointReset,
                        format!(
                            "the rules accepted it; {target} reset the connection during the handshake"
                        ),
                    ),
                    AttemptFailure::Timeout => (
                        Cause::EndpointSilent,
                        format!("the rules accepted it; {target} did not answer"),
                    ),
                }
            }
        }
    }

    /// Where the accepted packet went: the server the attempt names, else the one DNAT target,
    /// else the dialled address; with the Service it belongs to when known.
    fn target(&self, attempt: &Attempt, delivered: &[(String, Option<String>)]) -> String {
        let label = |addr: &str, service: &Option<String>| match service {
            Some(s) => format!("{addr} (endpoint of Service {s})"),
            None => addr.to_owned(),
        };
        if let Some(server) = attempt.server {
            let text = endpoint(server.ip(), Some(server.port()));
            let service = delivered
                .iter()
                .find(|(d, _)| *d == text)
                .and_then(|(_, s)| s.clone());
            return label(&text, &service);
        }
        let mut distinct: Vec<&(String, Option<String>)> = Vec::new();
        for d in delivered {
            if !distinct.iter().any(|x| x.0 == d.0) {
                distinct.push(d);
            }
        }
        match distinct.as_slice() {
            [] => endpoint(attempt.dialled.ip(), Some(attempt.dialled.port())),
            [(addr, service)] => label(addr, service),
            [(_, service), ..] => match service {
                Some(s) => format!("an endpoint of Service {s} (one of {})", distinct.len()),
                None => format!("one of {} endpoints", distinct.len()),
            },
        }
    }
}

/// What a cached trace is shared by: the client's prefix, what it dialled, how it arrived, and
/// the rules it was traced against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The client's address with only its prefix kept (`/24`, `/64` by default).
    pub client_prefix: IpAddr,
    /// The dialled address and port.
    pub dialled: SocketAddr,
    /// Protocol.
    pub proto: Proto,
    /// Incoming interface.
    pub in_iface: Option<String>,
    /// Packet mark.
    pub mark: Option<u32>,
    /// The generation of the rules (see [`input_generation`]).
    pub generation: u64,
}

/// Limits of a [`TraceCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Entries kept; the least recently used is evicted beyond it.
    pub capacity: usize,
    /// Client prefix length shared by one IPv4 entry.
    pub v4_prefix: u8,
    /// Client prefix length shared by one IPv6 entry.
    pub v6_prefix: u8,
    /// Traces made on misses per second, on average.
    pub traces_per_second: u32,
    /// Traces that may be made at once after a quiet spell.
    pub burst: u32,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            capacity: 4096,
            v4_prefix: 24,
            v6_prefix: 64,
            traces_per_second: 20,
            burst: 100,
        }
    }
}

/// Counters of a [`TraceCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Attempts answered from the cache.
    pub hits: u64,
    /// Attempts not in the cache (traced, or over budget).
    pub misses: u64,
    /// Entries evicted to stay within capacity.
    pub evictions: u64,
    /// Misses not traced because the budget of traces per second was spent.
    pub over_budget: u64,
    /// Traces that failed (the attempt named something the node does not have).
    pub errors: u64,
    /// Entries now.
    pub entries: u64,
}

/// What [`TraceCache::get_or_trace`] answered.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Explained, from the cache or a new trace.
    Explained(Explained),
    /// The trace failed (cached, so the same attempt is not traced again).
    Failed(String),
    /// A miss over the budget of traces: not traced.
    OverBudget,
}

/// A bounded cache of traces of failed attempts, with a budget of traces per second (see the
/// module documentation).
#[derive(Debug)]
pub struct TraceCache {
    limits: CacheLimits,
    entries: HashMap<CacheKey, (Result<Arc<Traced>, String>, u64)>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    stats: CacheStats,
    /// Token bucket: tokens left, and when it was last filled (ms).
    tokens: f64,
    filled_at: Option<u64>,
}

impl TraceCache {
    /// An empty cache with these limits (a capacity of 0 keeps nothing).
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            stats: CacheStats::default(),
            tokens: f64::from(limits.burst),
            filled_at: None,
        }
    }

    /// The limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len() as u64,
            ..self.stats
        }
    }

    /// The key of `attempt` under rules of `generation`.
    pub fn key(&self, attempt: &Attempt, generation: u64) -> CacheKey {
        let ip = attempt.client.ip();
        let len = if ip.is_ipv4() {
            self.limits.v4_prefix
        } else {
            self.limits.v6_prefix
        };
        CacheKey {
            client_prefix: prefix(ip, len),
            dialled: attempt.dialled,
            proto: attempt.proto,
            in_iface: attempt.in_iface.clone(),
            mark: attempt.mark,
            generation,
        }
    }

    /// The explanation of `attempt` from the cache, else from `trace` (called at most once, and
    /// only while the budget allows) whose result is kept. `now_ms` is a monotonic clock in
    /// milliseconds (for the budget).
    pub fn get_or_trace(
        &mut self,
        attempt: &Attempt,
        generation: u64,
        now_ms: u64,
        trace: impl FnOnce() -> Result<Arc<Traced>, TraceError>,
    ) -> Lookup {
        let key = self.key(attempt, generation);
        self.tick += 1;
        if let Some((found, used)) = self.entries.get_mut(&key) {
            self.order.remove(used);
            *used = self.tick;
            self.order.insert(self.tick, key);
            self.stats.hits += 1;
            return match found {
                Ok(traced) => Lookup::Explained(traced.explain(attempt)),
                Err(e) => Lookup::Failed(e.clone()),
            };
        }
        self.stats.misses += 1;
        if !self.take_token(now_ms) {
            self.stats.over_budget += 1;
            return Lookup::OverBudget;
        }
        let result = trace().map_err(|e| e.to_string());
        if result.is_err() {
            self.stats.errors += 1;
        }
        let answer = match &result {
            Ok(traced) => Lookup::Explained(traced.explain(attempt)),
            Err(e) => Lookup::Failed(e.clone()),
        };
        if self.limits.capacity > 0 {
            while self.entries.len() >= self.limits.capacity {
                let Some((_, oldest)) = self.order.pop_first() else {
                    break;
                };
                self.entries.remove(&oldest);
                self.stats.evictions += 1;
            }
            self.order.insert(self.tick, key.clone());
            self.entries.insert(key, (result, self.tick));
        }
        answer
    }

    /// Drops every entry of a generation other than `generation` (they can never hit again);
    /// returns how many (not counted as evictions: the rules changed).
    pub fn retain_generation(&mut self, generation: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|k, _| k.generation == generation);
        let entries = &self.entries;
        self.order.retain(|_, k| entries.contains_key(k));
        before - self.entries.len()
    }

    /// Drops every entry (not counted as evictions); returns how many.
    pub fn clear(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        self.order.clear();
        n
    }

    fn take_token(&mut self, now_ms: u64) -> bool {
        let burst = f64::from(self.limits.burst.max(1));
        if let Some(at) = self.filled_at {
            let elapsed = now_ms.saturating_sub(at) as f64 / 1000.0;
            self.tokens =
                (self.tokens + elapsed * f64::from(self.limits.traces_per_second)).min(burst);
        }
        self.filled_at = Some(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `ip` with only its first `len` bits kept.
pub fn prefix(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let len = u32::from(len.min(32));
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let len = u32::from(len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// A fingerprint of what decides a trace in `input`: the rules of every ruleset (their
/// `rules_id`), the native tables' chains, rules (canonical text, no counters) and sets, ipset
/// members, local addresses, routes, interfaces and unread sources. Equal fingerprints mean the
/// same traces (within one process), so cached traces survive a re-read of unchanged rules.
pub fn input_generation(input: &TraceInput) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for rs in &input.rulesets {
        rs.rules_id().hash(&mut h);
    }
    for rs in &input.native {
        for t in &rs.tables {
            t.family.as_str().hash(&mut h);
            t.name.hash(&mut h);
            for c in &t.chains {
                c.name.hash(&mut h);
                format!("{:?}", c.base).hash(&mut h);
                for r in &c.rules {
                    r.text.hash(&mut h);
                }
            }
            for s in &t.sets {
                format!("{s:?}").hash(&mut h);
            }
        }
    }
    if let Some(sets) = &input.ipsets {
        for s in sets {
            s.name.hash(&mut h);
            s.members.hash(&mut h);
        }
    }
    input.local_addrs.hash(&mut h);
    if let Some(routes) = &input.routes {
        for r in &routes.routes {
            format!("{r:?}").hash(&mut h);
        }
    }
    input.interfaces.hash(&mut h);
    input.multicast_groups.hash(&mut h);
    for u in &input.unread {
        u.source.hash(&mut h);
        u.method.hash(&mut h);
    }
    input.max_branches.hash(&mut h);
    h.finish()
}

#[cfg(test)]
#[path = "failure_tests.rs"]
mod tests;
