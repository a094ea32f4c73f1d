//! Renders the lab's netfilter state from the [`Topology`]: `iptables-restore` input for IPv4
//! and IPv6 and `ipset restore` input, written the way kube-proxy (iptables mode), kube-router's
//! NetworkPolicy controller and Calico felix write theirs (chain names, hashes, comments, marks).
//!
//! Pure text generation; loading it into a namespace is `lab`'s job. Simplifications against a
//! real node: no `-m physdev` duplicates in KUBE-ROUTER-FORWARD, no host-endpoint Calico chains,
//! and Calico's dispatch chains list only the guarded workloads (no "Unknown interface" drop).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

use super::hashes::{
    hash16, kube_router_ingress_source_set, kube_router_pod_fw_chain, kube_router_policy_chain,
    kube_router_target_set, kube_sep_chain, kube_svc_chain,
};
use super::topology::{CalicoWorkload, K8S_NAMESPACE, NetworkPolicy, Pod, Service, Topology};

/// kube-router's sync "version" that feeds its chain hashes.
const KUBE_ROUTER_VERSION: &str = "1";
const KUBE_ROUTER_FAMILY: &str = "IPv4";

/// Everything to load into the node namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabRules {
    /// Input for `iptables-restore`.
    pub iptables: String,
    /// Input for `ip6tables-restore`.
    pub ip6tables: String,
    /// Input for `ipset restore` (must be loaded before `iptables`).
    pub ipsets: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Renders all rules and sets of the lab.
pub fn generate(topo: &Topology) -> LabRules {
    LabRules {
        iptables: ipv4_rules(topo),
        ip6tables: ipv6_rules(topo),
        ipsets: ipsets(topo),
    }
}

fn ipv4_rules(topo: &Topology) -> String {
    let mut t = Tables::new();
    kubelet_canaries(&mut t);
    calico_hooks(topo, &mut t);
    kube_router_hooks(topo, &mut t);
    kube_proxy(topo, Family::V4, &mut t);
    kube_router_accept_hooks(topo, &mut t);
    kube_router_chains(topo, &mut t);
    calico_chains(topo, &mut t);
    t.render()
}

fn ipv6_rules(topo: &Topology) -> String {
    let mut t = Tables::new();
    kubelet_canaries(&mut t);
    kube_proxy(topo, Family::V6, &mut t);
    t.render()
}

// ---------------------------------------------------------------------------------------------
// Restore-file builder

/// One table of restore input: declared chains in order, then rules in order.
struct Table {
    name: &'static str,
    builtins: &'static [&'static str],
    chains: Vec<String>,
    rules: Vec<String>,
}

impl Table {
    fn new(name: &'static str, builtins: &'static [&'static str]) -> Self {
        Self {
            name,
            builtins,
            chains: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Declares a user chain (idempotent; built-in chains are always declared).
    fn declare(&mut self, chain: &str) {
        if !self.builtins.contains(&chain) && !self.chains.iter().any(|c| c == chain) {
            self.chains.push(chain.to_owned());
        }
    }

    /// Appends `-A chain spec`, declaring the chain.
    fn rule(&mut self, chain: &str, spec: impl AsRef<str>) {
        self.declare(chain);
        self.rules.push(format!("-A {chain} {}", spec.as_ref()));
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "*{}", self.name);
        for builtin in self.builtins {
            let _ = writeln!(out, ":{builtin} ACCEPT [0:0]");
        }
        for chain in &self.chains {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for rule in &self.rules {
            let _ = writeln!(out, "{rule}");
        }
        out.push_str("COMMIT\n");
    }
}

struct Tables {
    mangle: Table,
    nat: Table,
    filter: Table,
}

impl Tables {
    fn new() -> Self {
        Self {
            mangle: Table::new(
                "mangle",
                &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            ),
            nat: Table::new("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
            filter: Table::new("filter", &["INPUT", "FORWARD", "OUTPUT"]),
        }
    }

    fn render(&self) -> String {
        let mut out = String::from("# nfscope demo lab (generated)\n");
        self.mangle.render(&mut out);
        self.nat.render(&mut out);
        self.filter.render(&mut out);
        out
    }
}

/// `"text"` when the comment has spaces, bare otherwise (as kube-proxy writes its restore input).
fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

// ---------------------------------------------------------------------------------------------
// kubelet / kube-proxy (iptables mode)

fn kubelet_canaries(t: &mut Tables) {
    t.mangle.declare("KUBE-IPTABLES-HINT");
    for table in [&mut t.mangle, &mut t.nat, &mut t.filter] {
        table.declare("KUBE-KUBELET-CANARY");
        table.declare("KUBE-PROXY-CANARY");
    }
}

/// A service port's endpoints in one family: (`ip`, `ip:port` as kube-proxy spells it).
fn endpoints(topo: &Topology, svc: &Service, family: Family) -> Vec<(IpAddr, String)> {
    topo.pods_with_app(&svc.selector)
        .filter_map(|pod| {
            pod_ip(pod, family).map(|ip| (ip, SocketAddr::new(ip, pod.port).to_string()))
        })
        .collect()
}

fn pod_ip(pod: &Pod, family: Family) -> Option<IpAddr> {
    match family {
        Family::V4 => Some(pod.ipv4.into()),
        Family::V6 => pod.ipv6.map(IpAddr::from),
    }
}

fn cluster_ip(svc: &Service, family: Family) -> Option<IpAddr> {
    match family {
        Family::V4 => Some(svc.cluster_ip.into()),
        Family::V6 => svc.cluster_ip_v6.map(IpAddr::from),
    }
}

fn kube_proxy(topo: &Topology, family: Family, t: &mut Tables) {
    kube_proxy_hooks(family, t);
    kube_proxy_fixed_chains(family, t);
    let pod_cidr = match family {
        Family::V4 => topo.node.pod_cidr_v4,
        Family::V6 => topo.node.pod_cidr_v6,
    };
    for svc in &topo.services {
        let Some(vip) = cluster_ip(svc, family) else {
            continue;
        };
        let eps = endpoints(topo, svc, family);
        if eps.is_empty() {
            let spn = svc.port_name_string();
            let text = format!("{spn} has no endpoints");
            t.filter.rule(
                "KUBE-SERVICES",
                format!(
                    "{} -m tcp -p tcp -d {vip} --dport {} -j REJECT",
                    comment(&text),
                    svc.port
                ),
            );
        } else {
            kube_proxy_service(svc, vip, &eps, pod_cidr, t);
        }
    }
    let last = "kubernetes service nodeports; NOTE: this must be the last rule in this chain";
    t.nat.rule(
        "KUBE-SERVICES",
        format!(
            "{} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
            comment(last)
        ),
    );
}

fn kube_proxy_hooks(family: Family, t: &mut Tables) {
    let portals = comment("kubernetes service portals");
    t.nat
        .rule("PREROUTING", format!("{portals} -j KUBE-SERVICES"));
    t.nat.rule("OUTPUT", format!("{portals} -j KUBE-SERVICES"));
    t.nat.rule(
        "POSTROUTING",
        format!(
            "{} -j KUBE-POSTROUTING",
            comment("kubernetes postrouting rules")
        ),
    );

    let lb_firewall = format!(
        "-m conntrack --ctstate NEW {} -j KUBE-PROXY-FIREWALL",
        comment("kubernetes load balancer firewall")
    );
    let external = format!(
        "-m conntrack --ctstate NEW {} -j KUBE-EXTERNAL-SERVICES",
        comment("kubernetes externally-visible service portals")
    );
    let new_portals = format!("-m conntrack --ctstate NEW {portals} -j KUBE-SERVICES");
    let f = &mut t.filter;
    f.rule("INPUT", &lb_firewall);
    f.rule(
        "INPUT",
        format!(
            "{} -j KUBE-NODEPORTS",
            comment("kubernetes health check service ports")
        ),
    );
    f.rule("INPUT", &external);
    f.rule("FORWARD", &lb_firewall);
    f.rule(
        "FORWARD",
        format!("{} -j KUBE-FORWARD", comment("kubernetes forwarding rules")),
    );
    f.rule("FORWARD", &new_portals);
    f.rule("FORWARD", &external);
    f.rule("OUTPUT", &lb_firewall);
    f.rule("OUTPUT", &new_portals);
    if family == Family::V4 {
        f.rule("INPUT", "-j KUBE-FIREWALL");
        f.rule("OUTPUT", "-j KUBE-FIREWALL");
    }
}

fn kube_proxy_fixed_chains(family: Family, t: &mut Tables) {
    for chain in [
        "KUBE-NODEPORTS",
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-PROXY-FIREWALL",
        "KUBE-FORWARD",
    ] {
        t.filter.declare(chain);
    }
    t.nat.declare("KUBE-NODEPORTS");
    t.nat.declare("KUBE-SERVICES");
    t.nat.rule("KUBE-MARK-MASQ", "-j MARK --or-mark 0x4000");
    t.nat.rule(
        "KUBE-POSTROUTING",
        "-m mark ! --mark 0x4000/0x4000 -j RETURN",
    );
    t.nat.rule("KUBE-POSTROUTING", "-j MARK --xor-mark 0x4000");
    t.nat.rule(
        "KUBE-POSTROUTING",
        format!(
            "{} -j MASQUERADE",
            comment("kubernetes service traffic requiring SNAT")
        ),
    );
    let f = &mut t.filter;
    f.rule("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP");
    f.rule(
        "KUBE-FORWARD",
        format!(
            "{} -m mark --mark 0x4000/0x4000 -j ACCEPT",
            comment("kubernetes forwarding rules")
        ),
    );
    f.rule(
        "KUBE-FORWARD",
        format!(
            "{} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            comment("kubernetes forwarding conntrack rule")
        ),
    );
    if family == Family::V4 {
        f.rule(
            "KUBE-FIREWALL",
            format!(
                "{} -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
                comment("block incoming localnet connections")
            ),
        );
    }
}

/// KUBE-SERVICES → KUBE-SVC (random probability chain) → KUBE-SEP (DNAT), as kube-proxy writes them.
fn kube_proxy_service(
    svc: &Service,
    vip: IpAddr,
    eps: &[(IpAddr, String)],
    pod_cidr: &str,
    t: &mut Tables,
) {
    let spn = svc.port_name_string();
    let svc_chain = kube_svc_chain(&spn, "tcp");
    let cluster = comment(&format!("{spn} cluster IP"));
    let port = svc.port;
    t.nat.rule(
        "KUBE-SERVICES",
        format!("{cluster} -m tcp -p tcp -d {vip} --dport {port} -j {svc_chain}"),
    );
    t.nat.rule(
        &svc_chain,
        format!(
            "{cluster} -m tcp -p tcp -d {vip} --dport {port} ! -s {pod_cidr} -j KUBE-MARK-MASQ"
        ),
    );
    let n = eps.len();
    for (i, (_, endpoint)) in eps.iter().enumerate() {
        let sep = kube_sep_chain(&spn, "tcp", endpoint);
        let arrow = comment(&format!("{spn} -> {endpoint}"));
        let remaining = n - i;
        let statistic = if remaining > 1 {
            format!(
                " -m statistic --mode random --probability {:.10}",
                1.0 / remaining as f64
            )
        } else {
            String::new()
        };
        t.nat
            .rule(&svc_chain, format!("{arrow}{statistic} -j {sep}"));
    }
    for (ip, endpoint) in eps {
        let sep = kube_sep_chain(&spn, "tcp", endpoint);
        t.nat
            .rule(&sep, format!("{} -s {ip} -j KUBE-MARK-MASQ", comment(&spn)));
        t.nat.rule(
            &sep,
            format!(
                "{} -m tcp -p tcp -j DNAT --to-destination {endpoint}",
                comment(&spn)
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// kube-router NetworkPolicy controller

/// The stable hash kube-router prints in its hook comments (`kube-router netpol - HASH`).
fn kube_router_hook_comment(chain: &str) -> String {
    comment(&format!(
        "kube-router netpol - {}",
        hash16(&format!("{chain}{KUBE_ROUTER_VERSION}"))
    ))
}

fn kube_router_hooks(topo: &Topology, t: &mut Tables) {
    if topo.network_policies.is_empty() {
        return;
    }
    for (builtin, chain) in [
        ("INPUT", "KUBE-ROUTER-INPUT"),
        ("FORWARD", "KUBE-ROUTER-FORWARD"),
        ("OUTPUT", "KUBE-ROUTER-OUTPUT"),
    ] {
        t.filter.rule(
            builtin,
            format!("{} -j {chain}", kube_router_hook_comment(chain)),
        );
    }
}

fn kube_router_accept_hooks(topo: &Topology, t: &mut Tables) {
    if topo.network_policies.is_empty() {
        return;
    }
    let text =
        comment("KUBE-ROUTER rule to explicitly ACCEPT traffic that comply to network policies");
    for builtin in ["INPUT", "FORWARD", "OUTPUT"] {
        t.filter.rule(
            builtin,
            format!("{text} -m mark --mark 0x20000/0x20000 -j ACCEPT"),
        );
    }
}

fn kube_router_chains(topo: &Topology, t: &mut Tables) {
    if topo.network_policies.is_empty() {
        return;
    }
    let f = &mut t.filter;
    let tag = |what: &str| hash16(&format!("{what}{KUBE_ROUTER_VERSION}"));
    f.rule(
        "KUBE-ROUTER-INPUT",
        format!(
            "-d {} {} -j RETURN",
            topo.node.service_cidr_v4,
            comment(&format!(
                "allow traffic to primary/secondary cluster IP range - {}",
                tag("cluster-ip-range")
            ))
        ),
    );
    for proto in ["tcp", "udp"] {
        let text = format!(
            "allow LOCAL {} traffic to node ports - {}",
            proto.to_uppercase(),
            tag(proto)
        );
        f.rule(
            "KUBE-ROUTER-INPUT",
            format!("-p {proto} {} -m addrtype --dst-type LOCAL -m multiport --dports 30000:32767 -j RETURN", comment(&text)),
        );
    }
    f.rule(
        "KUBE-NWPLCY-DEFAULT",
        format!(
            "{} -j MARK --set-xmark 0x10000/0x10000",
            comment("rule to mark traffic matching a network policy")
        ),
    );
    for pod in &topo.pods {
        kube_router_pod_chain(topo, pod, f);
    }
    for policy in &topo.network_policies {
        kube_router_policy(policy, f);
    }
}

fn pod_label(pod: &Pod) -> String {
    format!("POD name:{} namespace: {K8S_NAMESPACE}", pod.name)
}

/// KUBE-ROUTER-* jumps and the pod's own KUBE-POD-FW chain.
fn kube_router_pod_chain(topo: &Topology, pod: &Pod, f: &mut Table) {
    let chain = kube_router_pod_fw_chain(K8S_NAMESPACE, &pod.name, KUBE_ROUTER_VERSION);
    let ip = pod.ipv4;
    let label = pod_label(pod);
    let to = comment(&format!(
        "rule to jump traffic destined to {label} to chain {chain}"
    ));
    let from = comment(&format!(
        "rule to jump traffic from {label} to chain {chain}"
    ));
    f.rule("KUBE-ROUTER-FORWARD", format!("-d {ip}/32 {to} -j {chain}"));
    f.rule(
        "KUBE-ROUTER-FORWARD",
        format!("-s {ip}/32 {from} -j {chain}"),
    );
    f.rule("KUBE-ROUTER-INPUT", format!("-s {ip}/32 {from} -j {chain}"));
    f.rule("KUBE-ROUTER-OUTPUT", format!("-d {ip}/32 {to} -j {chain}"));
    f.rule(
        "KUBE-ROUTER-OUTPUT",
        format!("-s {ip}/32 {from} -j {chain}"),
    );

    f.rule(
        &chain,
        format!(
            "{} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            comment("rule for stateful firewall for pod")
        ),
    );
    f.rule(
        &chain,
        format!(
            "{} -m conntrack --ctstate INVALID -j DROP",
            comment("rule to drop invalid state for pod")
        ),
    );
    let local =
        comment("rule to permit the traffic traffic to pods when source is the pod's local node");
    f.rule(
        &chain,
        format!("-d {ip}/32 {local} -m addrtype --src-type LOCAL -j ACCEPT"),
    );
    f.rule(
        &chain,
        format!(
            "-s {ip}/32 {} -j KUBE-NWPLCY-DEFAULT",
            comment("run through default egress network policy chain")
        ),
    );
    let policies: Vec<&NetworkPolicy> = topo
        .network_policies
        .iter()
        .filter(|p| p.target == pod.app)
        .collect();
    if policies.is_empty() {
        f.rule(
            &chain,
            format!(
                "-d {ip}/32 {} -j KUBE-NWPLCY-DEFAULT",
                comment("run through default ingress network policy chain")
            ),
        );
    }
    for policy in policies {
        let target = kube_router_policy_chain(
            K8S_NAMESPACE,
            &policy.name,
            KUBE_ROUTER_VERSION,
            KUBE_ROUTER_FAMILY,
        );
        f.rule(
            &chain,
            format!(
                "-d {ip}/32 {} -j {target}",
                comment(&format!("run through nw policy {}", policy.name))
            ),
        );
    }
    let log = comment(&format!("rule to log dropped traffic {label}"));
    f.rule(
        &chain,
        format!("{log} -m mark ! --mark 0x10000/0x10000 -m limit --limit 10/min --limit-burst 10 -j NFLOG --nflog-group 100"),
    );
    let reject = comment(&format!("rule to REJECT traffic destined for {label}"));
    f.rule(&chain, format!("{reject} -m mark ! --mark 0x10000/0x10000 -j REJECT --reject-with icmp-port-unreachable"));
    f.rule(&chain, "-j MARK --set-xmark 0x0/0x10000");
    let accept = comment("set mark to ACCEPT traffic that comply to network policies");
    f.rule(
        &chain,
        format!("{accept} -j MARK --set-xmark 0x20000/0x20000"),
    );
}

/// KUBE-NWPLCY-<hash>: mark then return for sources in the policy's ingress ipset.
fn kube_router_policy(policy: &NetworkPolicy, f: &mut Table) {
    let chain = kube_router_policy_chain(
        K8S_NAMESPACE,
        &policy.name,
        KUBE_ROUTER_VERSION,
        KUBE_ROUTER_FAMILY,
    );
    let src = kube_router_ingress_source_set(K8S_NAMESPACE, &policy.name, 0, KUBE_ROUTER_FAMILY);
    let dst = kube_router_target_set(K8S_NAMESPACE, &policy.name, KUBE_ROUTER_FAMILY);
    let text = format!(
        "rule to ACCEPT traffic from source pods to dest pods selected by policy name {} namespace {K8S_NAMESPACE}",
        policy.name
    );
    let matches = format!(
        "{} -m set --match-set {src} src -m set --match-set {dst} dst -p tcp -m tcp --dport {}",
        comment(&text),
        policy.port
    );
    f.rule(
        &chain,
        format!("{matches} -j MARK --set-xmark 0x10000/0x10000"),
    );
    f.rule(
        &chain,
        format!("{matches} -m mark --mark 0x10000/0x10000 -j RETURN"),
    );
}

// ---------------------------------------------------------------------------------------------
// Calico felix

/// A felix-style rule id: 16 characters of URL-safe base64 of a hash of the chain and position.
fn cali_id(chain: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{chain}/{index}").as_bytes());
    let mut id = data_encoding::BASE64URL_NOPAD.encode(&digest);
    id.truncate(16);
    id
}

fn cali_hash(input: &str, len: usize) -> String {
    let mut id = data_encoding::BASE64URL_NOPAD.encode(&Sha256::digest(input.as_bytes()));
    id.truncate(len);
    id
}

fn calico_policy_chain(w: &CalicoWorkload) -> String {
    format!("cali-pi-_{}", cali_hash(&w.policy_name, 19))
}

fn calico_source_set(w: &CalicoWorkload) -> String {
    format!(
        "cali40s:{}",
        cali_hash(&format!("{}/src", w.policy_name), 22)
    )
}

/// Appends a Calico rule: `-m comment --comment "cali:<id>"` then the matches (felix's layout puts
/// `-p`/`-i`/`-o`/`-s` before the comment, which `pre` carries).
fn cali_rule(f: &mut Table, chain: &str, pre: &str, rest: &str) {
    let index = f
        .rules
        .iter()
        .filter(|r| r.starts_with(&format!("-A {chain} ")))
        .count();
    let id = cali_id(chain, index);
    let pre = if pre.is_empty() {
        String::new()
    } else {
        format!("{pre} ")
    };
    f.rule(
        chain,
        format!("{pre}-m comment --comment \"cali:{id}\" {rest}"),
    );
}

fn calico_hooks(topo: &Topology, t: &mut Tables) {
    if topo.calico_workloads.is_empty() {
        return;
    }
    let f = &mut t.filter;
    cali_rule(f, "FORWARD", "", "-j cali-FORWARD");
    cali_rule(
        f,
        "FORWARD",
        "",
        "-m comment --comment \"Policy explicitly accepted packet.\" -m mark --mark 0x10000/0x10000 -j ACCEPT",
    );
}

fn calico_chains(topo: &Topology, t: &mut Tables) {
    if topo.calico_workloads.is_empty() {
        return;
    }
    let f = &mut t.filter;
    cali_rule(f, "cali-FORWARD", "", "-j MARK --set-xmark 0x0/0x1a0000");
    cali_rule(f, "cali-FORWARD", "-i cali+", "-j cali-from-wl-dispatch");
    cali_rule(f, "cali-FORWARD", "-o cali+", "-j cali-to-wl-dispatch");
    let profile_in = format!("cali-pri-kns.{K8S_NAMESPACE}");
    let profile_out = format!("cali-pro-kns.{K8S_NAMESPACE}");
    for profile in [&profile_in, &profile_out] {
        cali_rule(f, profile, "", "-j MARK --set-xmark 0x10000/0x10000");
        cali_rule(f, profile, "", "-m mark --mark 0x10000/0x10000 -j RETURN");
    }
    for w in &topo.calico_workloads {
        let Some(pod) = topo.pod(&w.pod) else {
            continue;
        };
        calico_workload(w, pod, &profile_in, &profile_out, f);
    }
}

fn calico_workload(
    w: &CalicoWorkload,
    pod: &Pod,
    profile_in: &str,
    profile_out: &str,
    f: &mut Table,
) {
    let iface = pod.host_veth();
    let tw = format!("cali-tw-{iface}");
    let fw = format!("cali-fw-{iface}");
    let policy = calico_policy_chain(w);
    cali_rule(
        f,
        "cali-from-wl-dispatch",
        &format!("-i {iface}"),
        &format!("-g {fw}"),
    );
    cali_rule(
        f,
        "cali-to-wl-dispatch",
        &format!("-o {iface}"),
        &format!("-g {tw}"),
    );

    cali_rule(
        f,
        &tw,
        "",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );
    cali_rule(f, &tw, "", "-m conntrack --ctstate INVALID -j DROP");
    cali_rule(f, &tw, "", "-j MARK --set-xmark 0x0/0x10000");
    cali_rule(
        f,
        &tw,
        "",
        "-m comment --comment \"Start of policies\" -j MARK --set-xmark 0x0/0x20000",
    );
    cali_rule(
        f,
        &tw,
        "",
        &format!("-m mark --mark 0x0/0x20000 -j {policy}"),
    );
    cali_rule(
        f,
        &tw,
        "",
        "-m comment --comment \"Return if policy accepted\" -m mark --mark 0x10000/0x10000 -j RETURN",
    );
    cali_rule(
        f,
        &tw,
        "",
        "-m comment --comment \"Drop if no policies passed packet\" -m mark --mark 0x0/0x20000 -j DROP",
    );
    cali_rule(f, &tw, "", &format!("-j {profile_in}"));
    cali_rule(
        f,
        &tw,
        "",
        "-m comment --comment \"Return if profile accepted\" -m mark --mark 0x10000/0x10000 -j RETURN",
    );
    cali_rule(
        f,
        &tw,
        "",
        "-m comment --comment \"Drop if no profiles matched\" -j DROP",
    );

    cali_rule(
        f,
        &fw,
        "",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );
    cali_rule(f, &fw, "", "-m conntrack --ctstate INVALID -j DROP");
    cali_rule(f, &fw, "", "-j MARK --set-xmark 0x0/0x10000");
    cali_rule(f, &fw, "", &format!("-j {profile_out}"));
    cali_rule(
        f,
        &fw,
        "",
        "-m comment --comment \"Return if profile accepted\" -m mark --mark 0x10000/0x10000 -j RETURN",
    );
    cali_rule(
        f,
        &fw,
        "",
        "-m comment --comment \"Drop if no profiles matched\" -j DROP",
    );

    let set = calico_source_set(w);
    let named = format!("-m comment --comment \"Policy {} ingress\"", w.policy_name);
    cali_rule(
        f,
        &policy,
        "-p tcp",
        &format!(
            "{named} -m set --match-set {set} src -m multiport --dports {} -j MARK --set-xmark 0x10000/0x10000",
            w.port
        ),
    );
    cali_rule(f, &policy, "", "-m mark --mark 0x10000/0x10000 -j RETURN");
    // An explicit Deny rule: felix renders it as a plain DROP in the policy chain.
    for cidr in &w.denied_sources {
        cali_rule(f, &policy, &format!("-s {cidr}"), "-j DROP");
    }
}

// ---------------------------------------------------------------------------------------------
// ipsets

fn ipsets(topo: &Topology) -> String {
    let mut out = String::new();
    for policy in &topo.network_policies {
        let src =
            kube_router_ingress_source_set(K8S_NAMESPACE, &policy.name, 0, KUBE_ROUTER_FAMILY);
        let dst = kube_router_target_set(K8S_NAMESPACE, &policy.name, KUBE_ROUTER_FAMILY);
        ipset_hash_ip(
            &mut out,
            &src,
            topo.pods_with_app(&policy.from).map(|p| p.ipv4.to_string()),
        );
        ipset_hash_ip(
            &mut out,
            &dst,
            topo.pods_with_app(&policy.target)
                .map(|p| p.ipv4.to_string()),
        );
    }
    for w in &topo.calico_workloads {
        let set = calico_source_set(w);
        let _ = writeln!(
            out,
            "create {set} hash:net family inet hashsize 1024 maxelem 1048576"
        );
        for cidr in &w.allowed_sources {
            let _ = writeln!(out, "add {set} {cidr}");
        }
    }
    out
}

/// A kube-router style set: `hash:ip` with `timeout 0` entries.
fn ipset_hash_ip(out: &mut String, name: &str, members: impl Iterator<Item = String>) {
    let _ = writeln!(
        out,
        "create {name} hash:ip family inet hashsize 1024 maxelem 65536 timeout 0"
    );
    for ip in members {
        let _ = writeln!(out, "add {name} {ip} timeout 0");
    }
}

#[cfg(test)]
mod tests;
