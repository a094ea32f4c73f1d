//! Node checks of `nfscope doctor`: judging what the kernel crate read from a live node.
//!
//! Owns parsing the `ip -d -j link show` / `ip -j route show` JSON and `/proc/modules`, and the
//! checks, each reported as pass / warn / fail (or info) with its evidence: IP forwarding,
//! `rp_filter` on pod and tunnel interfaces, `bridge-nf-call-iptables`, kernel modules the rules
//! need, conntrack fill and drop counters, conntrack accounting, both backends holding rules,
//! tunnel interface state, BGP-learned routes and MTU consistency. It does not read anything
//! (`nfscope-kernel` does) and does not lint rules (see [`crate::lint`]).

use std::collections::BTreeMap;
use std::fmt;

use nfscope_ruleset::{Backend, ConntrackStats, Family, Ruleset};
use serde::{Deserialize, Serialize};

/// Outcome of one node check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Worth knowing; not a judgement.
    Info,
    /// Likely to cause trouble.
    Warn,
    /// Broken.
    Fail,
}

impl Status {
    /// `pass`, `info`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCheck {
    /// Stable id, e.g. `ip-forwarding`.
    pub id: &'static str,
    /// Outcome.
    pub status: Status,
    /// One sentence: what was found and what it means.
    pub summary: String,
    /// The values the judgement rests on, e.g. `net.ipv4.ip_forward = 0`.
    pub evidence: Vec<String>,
}

/// A network interface, from `ip -d -j link show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// `linkinfo.info_kind`: `veth`, `vxlan`, `ipip`, `bridge`, `wireguard`, …
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (`UP` flag).
    pub up: bool,
    /// Operational state as the kernel says (`UP`, `DOWN`, `UNKNOWN`, `LOWERLAYERDOWN`).
    pub operstate: String,
}

/// A route, from `ip -j route show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination (`default`, `10.244.1.0/24`).
    pub dst: String,
    /// Output device.
    pub dev: Option<String>,
    /// Routing protocol (`kernel`, `boot`, `static`, `bird`, …).
    pub protocol: Option<String>,
}

/// Everything the node checks look at.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// Sysctls by dotted name (`net.ipv4.ip_forward`, `net.ipv4.conf.eth0.rp_filter`).
    pub sysctls: BTreeMap<String, String>,
    /// Interfaces; `None` when they could not be read.
    pub links: Option<Vec<Link>>,
    /// Routes of the main table; `None` when they could not be read.
    pub routes: Option<Vec<Route>>,
    /// Loaded modules (`/proc/modules` names); `None` when unknown.
    pub modules: Option<Vec<String>>,
    /// Modules built into the kernel (names without path and `.ko`).
    pub builtin_modules: Vec<String>,
    /// Conntrack statistics; `Err` says why they are missing.
    pub conntrack: Result<ConntrackStats, String>,
}

impl Default for NodeFacts {
    /// Nothing known.
    fn default() -> Self {
        Self {
            sysctls: BTreeMap::new(),
            links: None,
            routes: None,
            modules: None,
            builtin_modules: Vec::new(),
            conntrack: Err("not read".to_owned()),
        }
    }
}

/// Bad `ip` JSON.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NodeParseError {
    what: &'static str,
    source: serde_json::Error,
}

#[derive(Deserialize)]
struct RawLink {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    operstate: String,
    linkinfo: Option<RawLinkInfo>,
}

#[derive(Deserialize)]
struct RawLinkInfo {
    info_kind: Option<String>,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: String,
    dev: Option<String>,
    protocol: Option<String>,
}

/// Parses `ip -d -j link show`.
pub fn parse_links(json: &str) -> Result<Vec<Link>, NodeParseError> {
    let raw: Vec<RawLink> = serde_json::from_str(json).map_err(|source| NodeParseError {
        what: "ip -d -j link show",
        source,
    })?;
    Ok(raw
        .into_iter()
        .map(|l| Link {
            up: l.flags.iter().any(|f| f == "UP"),
            kind: l.linkinfo.and_then(|i| i.info_kind),
            name: l.ifname,
            mtu: l.mtu,
            operstate: l.operstate,
        })
        .collect())
}

/// Parses `ip -j route show`.
pub fn parse_routes(json: &str) -> Result<Vec<Route>, NodeParseError> {
    let raw: Vec<RawRoute> = serde_json::from_str(json).map_err(|source| NodeParseError {
        what: "ip -j route show",
        source,
    })?;
    Ok(raw
        .into_iter()
        .map(|r| Route {
            dst: r.dst,
            dev: r.dev,
            protocol: r.protocol,
        })
        .collect())
}

/// Module names from `/proc/modules` (first word of each line).
pub fn parse_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Module names from `modules.builtin` (`kernel/net/netfilter/xt_mark.ko` → `xt_mark`).
pub fn parse_builtin_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(|m| m.replace('-', "_"))
        .collect()
}

/// Runs every node check. `rulesets` are the live rulesets (for modules and backends).
pub fn check_node(facts: &NodeFacts, rulesets: &[Ruleset]) -> Vec<NodeCheck> {
    vec![
        ip_forwarding(facts, rulesets),
        rp_filter(facts),
        bridge_nf(facts),
        kernel_modules(facts, rulesets),
        conntrack_fill(facts),
        conntrack_accounting(facts),
        backends(rulesets),
        tunnels(facts),
        bgp_routes(facts, rulesets),
        mtu(facts),
    ]
}

fn check(id: &'static str, status: Status, summary: String, evidence: Vec<String>) -> NodeCheck {
    NodeCheck {
        id,
        status,
        summary,
        evidence,
    }
}

fn sysctl<'a>(facts: &'a NodeFacts, name: &str) -> Option<&'a str> {
    facts.sysctls.get(name).map(String::as_str)
}

fn evidence_of(facts: &NodeFacts, name: &str) -> String {
    format!("{name} = {}", sysctl(facts, name).unwrap_or("(absent)"))
}

fn has_rules(rulesets: &[Ruleset], family: Family) -> bool {
    rulesets
        .iter()
        .any(|r| r.family == family && r.rule_count() > 0)
}

fn ip_forwarding(facts: &NodeFacts, rulesets: &[Ruleset]) -> NodeCheck {
    let v4 = sysctl(facts, "net.ipv4.ip_forward");
    let v6 = sysctl(facts, "net.ipv6.conf.all.forwarding");
    let evidence = vec![
        evidence_of(facts, "net.ipv4.ip_forward"),
        evidence_of(facts, "net.ipv6.conf.all.forwarding"),
    ];
    let (status, summary) = match (v4, v6) {
        (Some("1"), Some("0")) if has_rules(rulesets, Family::Ipv6) => (
            Status::Warn,
            "IPv4 forwarding is on but IPv6 forwarding is off while ip6tables holds rules: IPv6 pod traffic is not routed".to_owned(),
        ),
        (Some("1"), _) => (Status::Pass, "IP forwarding is on".to_owned()),
        (Some(_), _) => (
            Status::Fail,
            "IPv4 forwarding is off: the node does not route pod traffic, so pods cannot reach other nodes, services backed by other nodes, or the outside".to_owned(),
        ),
        (None, _) => (Status::Warn, "IPv4 forwarding could not be read".to_owned()),
    };
    check("ip-forwarding", status, summary, evidence)
}

/// Interfaces that carry pod traffic, by the names CNI plugins give them.
fn is_pod_interface(name: &str) -> bool {
    [
        "veth",
        "cali",
        "lxc",
        "cni",
        "cbr0",
        "weave",
        "kube-bridge",
        "docker0",
        "cilium_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Tunnel interfaces by kind (overlay encapsulation).
fn is_tunnel(link: &Link) -> bool {
    matches!(
        link.kind.as_deref(),
        Some("vxlan" | "ipip" | "geneve" | "wireguard" | "gre" | "sit" | "ip6tnl")
    ) || link.name == "tunl0"
}

fn rp_filter(facts: &NodeFacts) -> NodeCheck {
    let all = sysctl(facts, "net.ipv4.conf.all.rp_filter")
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(0);
    let links = facts.links.as_deref().unwrap_or_default();
    let mut evidence = vec![evidence_of(facts, "net.ipv4.conf.all.rp_filter")];
    let mut strict = Vec::new();
    for link in links
        .iter()
        .filter(|l| is_tunnel(l) || is_pod_interface(&l.name))
    {
        let key = format!("net.ipv4.conf.{}.rp_filter", link.name);
        let own = sysctl(facts, &key)
            .and_then(|v| v.parse::<u8>().ok())
            .unwrap_or(0);
        let effective = own.max(all);
        evidence.push(format!("{key} = {own} (effective {effective})"));
        // Calico sets strict mode on its workload interfaces on purpose (anti-spoofing).
        if effective == 1 && !link.name.starts_with("cali") {
            strict.push(link.name.clone());
        }
    }
    let (status, summary) = if strict.is_empty() {
        (
            Status::Pass,
            "no pod or tunnel interface has strict reverse-path filtering".to_owned(),
        )
    } else {
        (
            Status::Warn,
            format!(
                "strict rp_filter (1) on {}: packets arriving there whose source is routed via another interface \
                 (asymmetric pod, tunnel or DSR traffic) are dropped silently; use 0 or loose (2)",
                strict.join(", ")
            ),
        )
    };
    check("rp-filter", status, summary, evidence)
}

fn bridge_nf(facts: &NodeFacts) -> NodeCheck {
    let bridges: Vec<&str> = facts
        .links
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|l| l.kind.as_deref() == Some("bridge"))
        .map(|l| l.name.as_str())
        .collect();
    let evidence = vec![
        evidence_of(facts, "net.bridge.bridge-nf-call-iptables"),
        evidence_of(facts, "net.bridge.bridge-nf-call-ip6tables"),
        format!(
            "bridges: {}",
            if bridges.is_empty() {
                "none".to_owned()
            } else {
                bridges.join(", ")
            }
        ),
    ];
    let (status, summary) = match (sysctl(facts, "net.bridge.bridge-nf-call-iptables"), bridges.is_empty()) {
        (Some("1"), _) => (Status::Pass, "bridged traffic goes through iptables".to_owned()),
        (_, true) => (Status::Pass, "no bridge interfaces, so bridge netfilter does not matter here".to_owned()),
        (Some(_), false) => (
            Status::Fail,
            "bridge-nf-call-iptables is 0 with bridges present: pod-to-service traffic between pods on one bridge skips kube-proxy's DNAT and network policy".to_owned(),
        ),
        (None, false) => (
            Status::Fail,
            "br_netfilter is not loaded (no net.bridge sysctls) with bridges present: bridged pod traffic skips iptables (services and policies break for same-node pods)".to_owned(),
        ),
    };
    check("bridge-nf-call-iptables", status, summary, evidence)
}

/// Modules the tables, matches and targets in use need, by backend.
fn needed_modules(rulesets: &[Ruleset]) -> Vec<String> {
    let mut needed = std::collections::BTreeSet::new();
    for ruleset in rulesets.iter().filter(|r| r.rule_count() > 0) {
        let v6 = ruleset.family == Family::Ipv6;
        match ruleset.backend {
            Backend::Nft => {
                needed.insert("nf_tables".to_owned());
                needed.insert("nft_compat".to_owned());
            }
            _ => {
                for table in &ruleset.tables {
                    let prefix = if v6 { "ip6table_" } else { "iptable_" };
                    needed.insert(format!("{prefix}{}", table.name));
                }
            }
        }
        for rule in ruleset
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules)
        {
            for m in &rule.spec.matches {
                if let Some(module) = match_module(&m.module) {
                    needed.insert(module.to_owned());
                }
            }
            if let Some(module) = rule
                .spec
                .target
                .as_ref()
                .and_then(|t| target_module(&t.name, v6))
            {
                needed.insert(module.to_owned());
            }
        }
    }
    needed.into_iter().collect()
}

fn match_module(name: &str) -> Option<&'static str> {
    Some(match name {
        "conntrack" => "xt_conntrack",
        "state" => "xt_state",
        "comment" => "xt_comment",
        "mark" => "xt_mark",
        "connmark" => "xt_connmark",
        "set" => "xt_set",
        "statistic" => "xt_statistic",
        "multiport" => "xt_multiport",
        "addrtype" => "xt_addrtype",
        "physdev" => "xt_physdev",
        "recent" => "xt_recent",
        "limit" => "xt_limit",
        "tcp" | "udp" => "xt_tcpudp",
        _ => return None,
    })
}

fn target_module(name: &str, v6: bool) -> Option<&'static str> {
    Some(match name {
        "DNAT" | "SNAT" => "xt_nat",
        "MASQUERADE" => "xt_MASQUERADE",
        "REDIRECT" => "xt_REDIRECT",
        "REJECT" if v6 => "ip6t_REJECT",
        "REJECT" => "ipt_REJECT",
        "NFLOG" => "xt_NFLOG",
        "LOG" => "xt_LOG",
        "CT" | "NOTRACK" => "xt_CT",
        "CHECKSUM" => "xt_CHECKSUM",
        _ => return None,
    })
}

fn kernel_modules(facts: &NodeFacts, rulesets: &[Ruleset]) -> NodeCheck {
    let needed = needed_modules(rulesets);
    let Some(loaded) = &facts.modules else {
        // Say what the list is: the modules the rules need, which could not be checked.
        let summary = if needed.is_empty() {
            "loaded modules could not be read (the rules in use need no extra module)".to_owned()
        } else {
            format!(
                "loaded modules could not be read, so the {} module(s) the rules in use need were not checked",
                needed.len()
            )
        };
        let evidence = if needed.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "needed by the rules in use (not checked): {}",
                needed.join(" ")
            )]
        };
        return check("kernel-modules", Status::Info, summary, evidence);
    };
    let present = |m: &String| loaded.contains(m) || facts.builtin_modules.contains(m);
    let missing: Vec<String> = needed.iter().filter(|m| !present(m)).cloned().collect();
    let evidence = vec![
        format!(
            "needed by the rules in use: {}",
            if needed.is_empty() {
                "none".to_owned()
            } else {
                needed.join(" ")
            }
        ),
        format!(
            "neither loaded nor built in: {}",
            if missing.is_empty() {
                "none".to_owned()
            } else {
                missing.join(" ")
            }
        ),
    ];
    let (status, summary) = if missing.is_empty() {
        (
            Status::Pass,
            format!("all {} modules the rules use are present", needed.len()),
        )
    } else {
        (
            Status::Warn,
            format!(
                "{} module(s) the rules use are not loaded and not listed as built in ({}); if the kernel cannot autoload \
                 them, restoring these rules (kube-proxy resync, reboot) fails",
                missing.len(),
                missing.join(", ")
            ),
        )
    };
    check("kernel-modules", status, summary, evidence)
}

fn stat(stats: &ConntrackStats, name: &str) -> u64 {
    stats
        .stats
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| *v)
}

fn conntrack_fill(facts: &NodeFacts) -> NodeCheck {
    let stats = match &facts.conntrack {
        Ok(stats) => stats,
        Err(why) => {
            return check(
                "conntrack-fill",
                Status::Info,
                "conntrack is not in use here (nf_conntrack not loaded or not readable)".to_owned(),
                vec![why.clone()],
            );
        }
    };
    let percent = if stats.limit == 0 {
        0.0
    } else {
        stats.entries as f64 * 100.0 / stats.limit as f64
    };
    let (insert_failed, drop, early_drop) = (
        stat(stats, "insert_failed"),
        stat(stats, "drop"),
        stat(stats, "early_drop"),
    );
    let evidence = vec![
        format!(
            "nf_conntrack_count = {} of nf_conntrack_max = {} ({percent:.1}%)",
            stats.entries, stats.limit
        ),
        format!(
            "insert_failed = {insert_failed}, drop = {drop}, early_drop = {early_drop} (since boot)"
        ),
    ];
    let (status, summary) = if percent >= 90.0 {
        (Status::Fail, "the conntrack table is nearly full: new connections are dropped (\"nf_conntrack: table full\")".to_owned())
    } else if percent >= 75.0 {
        (
            Status::Warn,
            "the conntrack table is over 75% full".to_owned(),
        )
    } else if drop > 0 || insert_failed > 0 {
        (
            Status::Warn,
            "conntrack has dropped packets or failed inserts since boot (table full, or the SNAT/DNAT race behind 5-second DNS delays)".to_owned(),
        )
    } else {
        (
            Status::Pass,
            format!("conntrack table {percent:.1}% full, no drops"),
        )
    };
    check("conntrack-fill", status, summary, evidence)
}

fn conntrack_accounting(facts: &NodeFacts) -> NodeCheck {
    let value = sysctl(facts, "net.netfilter.nf_conntrack_acct");
    let summary = match value {
        Some("1") => {
            "conntrack accounting is on: per-flow byte and packet counts are available to the flow monitor"
        }
        Some(_) => {
            "conntrack accounting is off: flow byte counts come only from TCP sequence numbers (nfscope never switches it on)"
        }
        None => "conntrack accounting could not be read (nf_conntrack not loaded)",
    };
    check(
        "conntrack-accounting",
        Status::Info,
        summary.to_owned(),
        vec![evidence_of(facts, "net.netfilter.nf_conntrack_acct")],
    )
}

fn backends(rulesets: &[Ruleset]) -> NodeCheck {
    let mut evidence = Vec::new();
    let mut mixed = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        let count = |b: Backend| {
            rulesets
                .iter()
                .filter(|r| r.family == family && r.backend == b)
                .map(Ruleset::rule_count)
                .sum::<usize>()
        };
        let (nft, legacy) = (count(Backend::Nft), count(Backend::Legacy));
        evidence.push(format!("{family}: nft {nft} rules, legacy {legacy} rules"));
        if nft > 0 && legacy > 0 {
            mixed.push(family.as_str());
        }
    }
    let (status, summary) = if mixed.is_empty() {
        (
            Status::Pass,
            "rules live in one backend per family".to_owned(),
        )
    } else {
        (
            Status::Warn,
            format!(
                "both iptables-nft and iptables-legacy hold {} rules: both run on every packet, and tools reading one backend miss the other",
                mixed.join(" and ")
            ),
        )
    };
    check("backends", status, summary, evidence)
}

fn tunnels(facts: &NodeFacts) -> NodeCheck {
    let Some(links) = &facts.links else {
        return check(
            "tunnels",
            Status::Info,
            "interfaces could not be read".to_owned(),
            vec![],
        );
    };
    let tunnels: Vec<&Link> = links.iter().filter(|l| is_tunnel(l)).collect();
    let evidence = tunnels
        .iter()
        .map(|l| {
            format!(
                "{} ({}): {}, operstate {}, mtu {}",
                l.name,
                l.kind.as_deref().unwrap_or("?"),
                if l.up { "up" } else { "down" },
                l.operstate,
                l.mtu
            )
        })
        .collect();
    let down: Vec<&str> = tunnels
        .iter()
        .filter(|l| !l.up || l.operstate == "DOWN")
        .map(|l| l.name.as_str())
        .collect();
    let (status, summary) = if tunnels.is_empty() {
        (
            Status::Pass,
            "no tunnel interfaces (no IPIP/VXLAN overlay on this node)".to_owned(),
        )
    } else if down.is_empty() {
        (
            Status::Pass,
            format!("{} tunnel interface(s) up", tunnels.len()),
        )
    } else {
        (
            Status::Fail,
            format!(
                "tunnel interface(s) down: {}; pod traffic to other nodes over the overlay is blackholed",
                down.join(", ")
            ),
        )
    };
    check("tunnels", status, summary, evidence)
}

fn bgp_routes(facts: &NodeFacts, rulesets: &[Ruleset]) -> NodeCheck {
    let Some(routes) = &facts.routes else {
        return check(
            "bgp-routes",
            Status::Info,
            "routes could not be read".to_owned(),
            vec![],
        );
    };
    let bird: Vec<&Route> = routes
        .iter()
        .filter(|r| r.protocol.as_deref() == Some("bird"))
        .collect();
    let calico = rulesets
        .iter()
        .flat_map(|r| &r.tables)
        .flat_map(|t| &t.chains)
        .any(|c| c.name.starts_with("cali-"))
        || facts
            .links
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|l| l.name == "tunl0" && l.up);
    let mut evidence = vec![format!("{} route(s) with proto bird", bird.len())];
    evidence.extend(
        bird.iter()
            .take(20)
            .map(|r| format!("{} dev {}", r.dst, r.dev.as_deref().unwrap_or("?"))),
    );
    let (status, summary) = match (bird.is_empty(), calico) {
        (false, _) => (Status::Pass, format!("{} route(s) learned from BGP (bird)", bird.len())),
        (true, true) => (
            Status::Warn,
            "Calico is present but no route was learned from BGP (proto bird): in BGP/IPIP mode other nodes' pod CIDRs are unreachable (fine in VXLAN mode)".to_owned(),
        ),
        (true, false) => (Status::Pass, "no BGP routes, and no Calico here that would need them".to_owned()),
    };
    check("bgp-routes", status, summary, evidence)
}

fn mtu(facts: &NodeFacts) -> NodeCheck {
    let links = facts.links.as_deref().unwrap_or_default();
    let tunnels: Vec<&Link> = links.iter().filter(|l| is_tunnel(l) && l.up).collect();
    let pods: Vec<&Link> = links
        .iter()
        .filter(|l| is_pod_interface(&l.name) && !is_tunnel(l))
        .collect();
    let Some(smallest) = tunnels.iter().min_by_key(|l| l.mtu) else {
        return check(
            "mtu",
            Status::Pass,
            "no tunnel is up, so no encapsulation overhead to match".to_owned(),
            vec![],
        );
    };
    let too_big: Vec<String> = pods
        .iter()
        .filter(|l| l.mtu > smallest.mtu)
        .map(|l| format!("{} mtu {}", l.name, l.mtu))
        .collect();
    let mut evidence = vec![format!("tunnel {} mtu {}", smallest.name, smallest.mtu)];
    evidence.extend(pods.iter().map(|l| format!("{} mtu {}", l.name, l.mtu)));
    let (status, summary) = if too_big.is_empty() {
        (
            Status::Pass,
            "pod interfaces fit inside the tunnel MTU".to_owned(),
        )
    } else {
        (
            Status::Warn,
            format!(
                "pod interface MTU above the tunnel's ({}): full-size packets to other nodes need fragmenting or are dropped (stalls on large transfers, TLS handshakes)",
                too_big.join(", ")
            ),
        )
    };
    check("mtu", status, summary, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, kind: Option<&str>, mtu: u32, up: bool) -> Link {
        Link {
            name: name.to_owned(),
            kind: kind.map(str::to_owned),
            mtu,
            up,
            operstate: if up { "UP" } else { "DOWN" }.to_owned(),
        }
    }

    fn facts(sysctls: &[(&str, &str)], links: Vec<Link>) -> NodeFacts {
        NodeFacts {
            sysctls: sysctls
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            links: Some(links),
            routes: Some(vec![]),
            modules: Some(vec![]),
            builtin_modules: vec![],
            conntrack: Err("not loaded".to_owned()),
        }
    }

    fn status(checks: &[NodeCheck], id: &str) -> Status {
        checks.iter().find(|c| c.id == id).unwrap().status
    }

    #[test]
    fn forwarding_rp_filter_tunnels_and_mtu_are_judged() {
        let bad = facts(
            &[
                ("net.ipv4.ip_forward", "0"),
                ("net.ipv4.conf.veth1.rp_filter", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"),
            ],
            vec![
                link("veth1", Some("veth"), 1500, true),
                link("vxlan.calico", Some("vxlan"), 1450, false),
                link("flannel.1", Some("vxlan"), 1450, true),
            ],
        );
        let checks = check_node(&bad, &[]);
        assert_eq!(status(&checks, "ip-forwarding"), Status::Fail);
        assert_eq!(status(&checks, "rp-filter"), Status::Warn);
        assert_eq!(status(&checks, "tunnels"), Status::Fail);
        assert_eq!(status(&checks, "mtu"), Status::Warn);
        let good = facts(
            &[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.cali1.rp_filter", "1"),
                ("net.ipv4.conf.all.rp_filter", "2"),
            ],
            vec![
                link("cali1", Some("veth"), 1440, true),
                link("tunl0", Some("ipip"), 1480, true),
            ],
        );
        let checks = check_node(&good, &[]);
        for id in [
            "ip-forwarding",
            "rp-filter",
            "tunnels",
            "mtu",
            "bridge-nf-call-iptables",
            "backends",
        ] {
            assert_eq!(status(&checks, id), Status::Pass, "{id}: {checks:#?}");
        }
        // tunl0 up but no BGP routes and so no other node's pods.
        assert_eq!(status(&checks, "bgp-routes"), Status::Warn);
    }

    #[test]
    fn conntrack_fill_thresholds_and_counters() {
        let with = |entries, insert_failed| NodeFacts {
            conntrack: Ok(ConntrackStats {
                entries,
                limit: 1000,
                stats: vec![("insert_failed".to_owned(), insert_failed)],
            }),
            ..NodeFacts::default()
        };
        assert_eq!(conntrack_fill(&with(100, 0)).status, Status::Pass);
        assert_eq!(conntrack_fill(&with(100, 3)).status, Status::Warn);
        assert_eq!(conntrack_fill(&with(800, 0)).status, Status::Warn);
        assert_eq!(conntrack_fill(&with(950, 0)).status, Status::Fail);
    }

    #[test]
    fn conntrack_accounting_off_names_the_sysctl_and_the_consequence() {
        let off = conntrack_accounting(&facts(&[("net.netfilter.nf_conntrack_acct", "0")], vec![]));
        assert_eq!(off.id, "conntrack-accounting");
        assert!(
            off.summary.contains("only from TCP sequence numbers"),
            "{off:?}"
        );
        assert!(
            off.evidence
                .iter()
                .any(|e| e.contains("net.netfilter.nf_conntrack_acct = 0")),
            "{off:?}"
        );
        let on = conntrack_accounting(&facts(&[("net.netfilter.nf_conntrack_acct", "1")], vec![]));
        assert!(on.summary.contains("is on"), "{on:?}");
    }

    #[test]
    fn unreadable_modules_say_what_the_list_is() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n";
        let rs = nfscope_ruleset::parse_ruleset(text, &Default::default()).unwrap();
        let unknown = NodeFacts {
            modules: None,
            ..NodeFacts::default()
        };
        let c = kernel_modules(&unknown, &[rs]);
        assert_eq!(c.status, Status::Info);
        assert!(c.summary.contains("were not checked"), "{c:?}");
        assert_eq!(c.evidence.len(), 1, "{c:?}");
        assert!(
            c.evidence[0].starts_with("needed by the rules in use (not checked): ")
                && c.evidence[0].contains("xt_conntrack"),
            "{c:?}"
        );
    }

    #[test]
    fn bridge_without_br_netfilter_fails() {
        let f = facts(&[], vec![link("cni0", Some("bridge"), 1500, true)]);
        assert_eq!(bridge_nf(&f).status, Status::Fail);
        let f = facts(
            &[("net.bridge.bridge-nf-call-iptables", "1")],
            vec![link("cni0", Some("bridge"), 1500, true)],
        );
        assert_eq!(bridge_nf(&f).status, Status::Pass);
    }

    #[test]
    fn ip_json_and_module_lists_parse() {
        let links = parse_links(r#"[{"ifname":"tunl0","flags":["NOARP"],"mtu":1480,"operstate":"DOWN","linkinfo":{"info_kind":"ipip"}},{"ifname":"lo","flags":["UP"],"mtu":65536,"operstate":"UNKNOWN"}]"#).unwrap();
        assert_eq!(links[0], link("tunl0", Some("ipip"), 1480, false));
        assert!(links[1].up && links[1].kind.is_none());
        let routes = parse_routes(r#"[{"dst":"10.244.1.0/26","gateway":"192.0.2.3","dev":"tunl0","protocol":"bird","flags":["onlink"]}]"#).unwrap();
        assert_eq!(routes[0].protocol.as_deref(), Some("bird"));
        assert!(parse_links("not json").is_err());
        assert_eq!(
            parse_modules("xt_mark 16384 2 - Live 0x0\nnf_tables 1 0 - Live\n"),
            ["xt_mark", "nf_tables"]
        );
        assert_eq!(
            parse_builtin_modules("kernel/net/netfilter/xt-foo.ko\n"),
            ["xt_foo"]
        );
    }
}
