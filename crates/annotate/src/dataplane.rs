//! Meaning read from a rule itself (its ipset, addresses, ports and target) where the agent writes
//! no service comment: kube-proxy IPVS mode's ipset rules, flanneld's masquerade and forward
//! rules, Istio's capture and redirection rules, and what Cilium's fixed chains and `cilium:`
//! comments are for.
//!
//! kube-proxy in IPVS mode lists services in ipsets (`KUBE-CLUSTER-IP`, `KUBE-NODE-PORT-TCP`, …)
//! instead of writing a chain per service: a rule matching such a set is about every service the
//! set lists, and [`ipvs_set_rule`] says which and what the rule does with those packets. A
//! packet "handed to IPVS" is accepted by iptables; its destination is bound to the `kube-ipvs0`
//! dummy interface, so it is delivered locally and IPVS rewrites it to an endpoint in the INPUT
//! hook (LOCAL_IN), after the filter table has seen it.
//!
//! This module only reads single rules and chains; combining meanings is [`crate::resolve`]'s job.

use nfscope_ruleset::nft::render_value;
use nfscope_ruleset::typed::{Expr, Match, Nat, NatKind, Op, Rhs};
use nfscope_ruleset::{Chain, Family, RuleSpec, Table};

use crate::types::Meaning;

/// What one of kube-proxy's IPVS-mode ipsets lists (`pkg/proxy/ipvs/ipset.go`).
pub fn ipvs_set_contents(set: &str) -> Option<&'static str> {
    Some(match set {
        "KUBE-CLUSTER-IP" => "service cluster IP + port",
        "KUBE-LOOP-BACK" => {
            "endpoint IP + port + the same IP as source (a pod reaching itself through its service)"
        }
        "KUBE-EXTERNAL-IP" => "service external IP + port",
        "KUBE-EXTERNAL-IP-LOCAL" => "service external IP + port with externalTrafficPolicy Local",
        "KUBE-LOAD-BALANCER" => "service load balancer IP + port",
        "KUBE-LOAD-BALANCER-LOCAL" => {
            "service load balancer IP + port with externalTrafficPolicy Local"
        }
        "KUBE-LOAD-BALANCER-FW" => "service load balancer IP + port with loadBalancerSourceRanges",
        "KUBE-LOAD-BALANCER-SOURCE-IP" => "load balancer IP + port + an allowed source IP",
        "KUBE-LOAD-BALANCER-SOURCE-CIDR" => "load balancer IP + port + an allowed source CIDR",
        "KUBE-NODE-PORT-TCP" => "TCP node port",
        "KUBE-NODE-PORT-UDP" => "UDP node port",
        "KUBE-NODE-PORT-LOCAL-TCP" => "TCP node port with externalTrafficPolicy Local",
        "KUBE-NODE-PORT-LOCAL-UDP" => "UDP node port with externalTrafficPolicy Local",
        "KUBE-NODE-PORT-SCTP-HASH" => "SCTP node IP + node port",
        "KUBE-NODE-PORT-LOCAL-SCTP-HASH" => {
            "SCTP node IP + node port with externalTrafficPolicy Local"
        }
        "KUBE-HEALTH-CHECK-NODE-PORT" => "health check node port",
        "KUBE-IPVS-IPS" => "IPVS virtual server IP",
        _ => return None,
    })
}

/// Sets of IPVS virtual service addresses: a packet to one of them is IPVS's to load-balance.
fn hands_to_ipvs(set: &str) -> bool {
    set == "KUBE-CLUSTER-IP"
        || set.starts_with("KUBE-LOAD-BALANCER")
        || set.starts_with("KUBE-EXTERNAL-IP")
        || set.starts_with("KUBE-NODE-PORT")
}

/// The meaning of a rule matching one of kube-proxy's IPVS ipsets (the first such match).
pub fn ipvs_set_rule(spec: &RuleSpec) -> Option<Meaning> {
    spec.matches_named("set").next()?;
    let matches = spec.typed_matches(Family::Ipv4);
    let (set, negated) = matches.iter().find_map(|e| match e {
        Expr::Match(Match {
            op,
            rhs: Rhs::SetRef(set),
            ..
        }) => ipvs_set_contents(set).map(|_| (set.as_str(), *op == Op::Ne)),
        _ => None,
    })?;
    let contents = ipvs_set_contents(set)?;
    let target = spec.target_name().unwrap_or("");
    let action = match target {
        "ACCEPT" if hands_to_ipvs(set) => "accepted without iptables NAT: the address is on \
            kube-ipvs0, so the packet is delivered locally and IPVS load-balances it to an endpoint \
            in the INPUT hook"
            .to_owned(),
        "ACCEPT" => "accepted".to_owned(),
        "KUBE-MARK-MASQ" => "marked for masquerade (source NAT when it leaves the node)".to_owned(),
        "MASQUERADE" => "masqueraded".to_owned(),
        "RETURN" => "left to the next rules".to_owned(),
        "DROP" | "REJECT" => "dropped".to_owned(),
        "" => "counted".to_owned(),
        other => format!("handled by {other}"),
    };
    let lists = if negated {
        format!("not a {contents}")
    } else {
        contents.to_owned()
    };
    Some(Meaning::KubeIpvsSet {
        set: set.to_owned(),
        contents: lists,
        action,
    })
}

/// The proxy port of a `REDIRECT --to-ports` (or the `--to-port` abbreviation iptables accepts)
/// or `TPROXY --on-port` rule, read from the target's typed statement (ports do not depend on the
/// address family).
fn proxy_port(spec: &RuleSpec) -> Option<String> {
    let target = spec.target.as_ref()?;
    if !matches!(target.name.as_str(), "REDIRECT" | "TPROXY") {
        return None;
    }
    target.typed(Family::Ipv4).iter().find_map(|e| match e {
        Expr::Nat(Nat {
            kind: NatKind::Redirect | NatKind::Tproxy,
            port: Some(port),
            ..
        }) => Some(render_value(port, None)),
        _ => None,
    })
}

/// The `--dport` of a rule's tcp/udp match (or the `--dport` iptables-restore input writes
/// without `-m tcp`), when not negated.
fn dport(spec: &RuleSpec) -> Option<&str> {
    spec.matches
        .iter()
        .filter(|m| matches!(m.module.as_str(), "tcp" | "udp" | "sctp"))
        .filter_map(|m| m.option("dport"))
        .find(|o| !o.negated)
        .and_then(|o| o.values.first())
        .map(String::as_str)
}

/// Istio's chains: rules that send traffic to the proxy, and the inbound port selection.
pub fn istio_rule(chain: &str, spec: &RuleSpec) -> Option<Meaning> {
    if !chain.starts_with("ISTIO_") {
        return None;
    }
    if let Some(port) = proxy_port(spec) {
        return Some(Meaning::IstioCapture { port });
    }
    if chain == "ISTIO_INBOUND" {
        let port = dport(spec)?.to_owned();
        let captured = match spec.target_name()? {
            "RETURN" | "ACCEPT" => false,
            t if t.starts_with("ISTIO_") => true,
            _ => return None,
        };
        return Some(Meaning::IstioInboundPort { port, captured });
    }
    None
}

/// The proxy port of an Istio chain that only redirects (`ISTIO_REDIRECT` → 15001,
/// `ISTIO_IN_REDIRECT` → 15006): the meaning of the jumps into it. A chain that also returns or
/// accepts some traffic (`ISTIO_OUTPUT`) has none, so its other rules do not inherit one.
pub fn istio_chain(chain: &Chain) -> Option<Meaning> {
    if !chain.name.starts_with("ISTIO_") {
        return None;
    }
    let port = proxy_port(&chain.rules.first()?.spec)?;
    chain
        .rules
        .iter()
        .all(|r| proxy_port(&r.spec).as_ref() == Some(&port))
        .then_some(Meaning::IstioCapture { port })
}

/// What Istio's well-known ports are.
pub fn istio_port_role(port: &str) -> Option<&'static str> {
    Some(match port {
        "15001" => "the proxy's outbound capture port (sidecar or ztunnel)",
        "15006" => "the proxy's inbound capture port (sidecar or ztunnel)",
        "15008" => "the HBONE mTLS tunnel port",
        "15053" => "the DNS proxy",
        "15020" | "15021" | "15090" => "the proxy's own health and metrics ports",
        _ => return None,
    })
}

/// flanneld's pod network (all pods of the cluster, e.g. `10.244.0.0/16`), from its masquerade
/// rule `-s NET -d NET -j RETURN` or its forward rule `-s NET -j ACCEPT`.
pub fn flannel_network(table: &Table) -> Option<String> {
    let rules = table
        .chains
        .iter()
        .filter(|c| c.name.starts_with("FLANNEL-"))
        .flat_map(|c| &c.rules);
    for rule in rules {
        let spec = &rule.spec;
        let plain = |a: &Option<nfscope_ruleset::Negatable<nfscope_ruleset::AddrMatch>>| {
            a.as_ref().filter(|a| !a.negated).map(|a| a.value)
        };
        match (
            plain(&spec.source),
            spec.destination.as_ref(),
            spec.target_name(),
        ) {
            (Some(s), Some(d), Some("RETURN")) if !d.negated && d.value == s => {
                return Some(s.to_string());
            }
            (Some(s), None, Some("ACCEPT")) => return Some(s.to_string()),
            _ => {}
        }
    }
    None
}

/// The meaning of one rule in flanneld's `FLANNEL-POSTRTG` / `FLANNEL-FWD`, given the network.
pub fn flannel_rule(network: &str, chain: &str, spec: &RuleSpec) -> Option<Meaning> {
    let is_net = |a: &Option<nfscope_ruleset::Negatable<nfscope_ruleset::AddrMatch>>| {
        a.as_ref()
            .map(|a| (a.negated, a.value.to_string() == network))
    };
    let (source, dest) = (is_net(&spec.source), is_net(&spec.destination));
    let marked = spec.matches_named("mark").next().is_some();
    let what = match (chain, source, dest, spec.target_name()?) {
        ("FLANNEL-POSTRTG", None, None, "RETURN") if marked => {
            "already marked for kube-proxy's masquerade: left to it".to_owned()
        }
        ("FLANNEL-POSTRTG", Some((false, true)), Some((false, true)), "RETURN") => {
            "pod to pod inside the network: not masqueraded".to_owned()
        }
        ("FLANNEL-POSTRTG", Some((false, true)), _, "MASQUERADE") => {
            "pods to destinations outside the network: masqueraded".to_owned()
        }
        ("FLANNEL-POSTRTG", Some((true, true)), Some((false, false)), "RETURN") => {
            let subnet = spec.destination.as_ref()?.value;
            format!("from outside the network to this node's pod subnet {subnet}: not masqueraded")
        }
        ("FLANNEL-POSTRTG", Some((true, true)), Some((false, true)), "MASQUERADE") => {
            "from outside the network to pods on other nodes: masqueraded".to_owned()
        }
        ("FLANNEL-FWD", Some((false, true)), None, "ACCEPT") => {
            "forwarded traffic from pods: accepted".to_owned()
        }
        ("FLANNEL-FWD", None, Some((false, true)), "ACCEPT") => {
            "forwarded traffic to pods: accepted".to_owned()
        }
        _ => return None,
    };
    Some(Meaning::Flannel {
        network: network.to_owned(),
        rule: Some(what),
    })
}

/// What Cilium's fixed chains are for. The datapath (policy, kube-proxy replacement, host
/// firewall) is in BPF; these chains only let its traffic through the host's iptables and feed
/// its L7/DNS proxy.
pub fn cilium_chain(name: &str) -> Option<Meaning> {
    let what = match name {
        "CILIUM_INPUT" => "accepts traffic for its proxies, marked by the BPF datapath",
        "CILIUM_OUTPUT" => {
            "accepts proxy return traffic and marks host traffic for the BPF datapath"
        }
        "CILIUM_FORWARD" => {
            "accepts pod and node-port traffic (lxc+, cilium_host, cilium_net) the BPF datapath \
             already policed, so the host's FORWARD policy does not drop it"
        }
        "CILIUM_PRE_nat" | "CILIUM_POST_nat" | "CILIUM_OUTPUT_nat" => {
            "does masquerading and node-port NAT in iptables (empty with BPF masquerading and \
             kube-proxy replacement)"
        }
        "CILIUM_PRE_mangle" | "CILIUM_POST_mangle" => {
            "sends traffic to its L7/DNS proxy (TPROXY) and marks it for its routing"
        }
        "CILIUM_PRE_raw" | "CILIUM_OUTPUT_raw" => "skips conntrack for proxy and tunnel traffic",
        _ => return None,
    };
    Some(Meaning::Cilium {
        what: what.to_owned(),
    })
}

/// A rule whose `cilium: …` comment says what it does.
pub fn cilium_rule(spec: &RuleSpec) -> Option<Meaning> {
    spec.comments()
        .find_map(|c| c.trim().strip_prefix("cilium:"))
        .map(|what| Meaning::Cilium {
            what: what.trim().to_owned(),
        })
}
