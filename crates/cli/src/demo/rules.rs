//! Renders the lab's netfilter state from the [`Topology`]: `iptables-restore` input for IPv4
//! and IPv6 and `ipset restore` input, written the way kube-proxy (iptables mode), kube-router's
//! NetworkPolicy controller and Calico felix write theirs (chain names, hashes, comments, marks).
//!
//! kube-proxy's part comes from `nfscope_annotate::kube_proxy_rules`, the one kube-proxy rule
//! generator (the benchmarks use it too): this module only turns the topology into its service
//! ports and adds kube-router's and Calico's rules around it, into the same tables (kube-proxy's
//! rules in save syntax, the others as those components write them).
//!
//! Pure text generation; loading it into a namespace is `lab`'s job. Simplifications against a
//! real node: no `-m physdev` duplicates in KUBE-ROUTER-FORWARD, no host-endpoint Calico chains,
//! and Calico's dispatch chains list only the guarded workloads (no "Unknown interface" drop).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use nfscope_annotate::kube_proxy_rules::{
    self, RestoreTables, ServicePort, Table, write_kube_proxy,
};
use nfscope_ruleset::Family;
use sha2::{Digest, Sha256};

use super::hashes::{
    hash16, kube_router_ingress_source_set, kube_router_pod_fw_chain, kube_router_policy_chain,
    kube_router_target_set,
};
use super::topology::{CalicoWorkload, K8S_NAMESPACE, NetworkPolicy, Pod, Topology};

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

/// Renders all rules and sets of the lab.
pub fn generate(topo: &Topology) -> LabRules {
    LabRules {
        iptables: ipv4_rules(topo),
        ip6tables: ipv6_rules(topo),
        ipsets: ipsets(topo),
    }
}

/// The first line of both restore inputs.
const HEADER: &str = "# nfscope demo lab (generated)\n";

fn ipv4_rules(topo: &Topology) -> String {
    let mut t = RestoreTables::new();
    calico_hooks(topo, &mut t);
    kube_router_hooks(topo, &mut t);
    kube_proxy(topo, Family::Ipv4, &mut t);
    kube_router_accept_hooks(topo, &mut t);
    kube_router_chains(topo, &mut t);
    calico_chains(topo, &mut t);
    t.write(HEADER, None)
}

fn ipv6_rules(topo: &Topology) -> String {
    let mut t = RestoreTables::new();
    kube_proxy(topo, Family::Ipv6, &mut t);
    t.write(HEADER, None)
}

/// `"text"` when the comment has spaces, bare otherwise (as kube-router writes its restore input).
fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

// ---------------------------------------------------------------------------------------------
// kube-proxy (iptables mode)

/// The topology's services as kube-proxy sees them in one family: services without a cluster IP
/// of the family are left out, endpoints are the selected pods with an address of the family.
fn service_ports(topo: &Topology, family: Family) -> Vec<ServicePort> {
    topo.services
        .iter()
        .filter_map(|svc| {
            let cluster_ip: IpAddr = match family {
                Family::Ipv4 => svc.cluster_ip.into(),
                Family::Ipv6 => svc.cluster_ip_v6?.into(),
            };
            let endpoints = topo
                .pods_with_app(&svc.selector)
                .filter_map(|pod| pod_ip(pod, family).map(|ip| SocketAddr::new(ip, pod.port)))
                .collect();
            Some(ServicePort {
                name: svc.port_name_string(),
                protocol: "tcp".to_owned(),
                cluster_ip,
                port: svc.port,
                node_port: None,
                loadbalancer_ip: None,
                endpoints,
            })
        })
        .collect()
}

fn pod_ip(pod: &Pod, family: Family) -> Option<IpAddr> {
    match family {
        Family::Ipv4 => Some(pod.ipv4.into()),
        Family::Ipv6 => pod.ipv6.map(IpAddr::from),
    }
}

fn kube_proxy(topo: &Topology, family: Family, t: &mut RestoreTables) {
    let node = kube_proxy_rules::Node {
        family,
        pod_cidr: match family {
            Family::Ipv4 => topo.node.pod_cidr_v4,
            Family::Ipv6 => topo.node.pod_cidr_v6,
        }
        .to_owned(),
    };
    write_kube_proxy(&node, &service_ports(topo, family), t);
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

fn kube_router_hooks(topo: &Topology, t: &mut RestoreTables) {
    if topo.network_policies.is_empty() {
        return;
    }
    for (builtin, chain) in [
        ("INPUT", "KUBE-ROUTER-INPUT"),
        ("FORWARD", "KUBE-ROUTER-FORWARD"),
        ("OUTPUT", "KUBE-ROUTER-OUTPUT"),
    ] {
        t.filter.append(
            builtin,
            format!("{} -j {chain}", kube_router_hook_comment(chain)),
        );
    }
}

fn kube_router_accept_hooks(topo: &Topology, t: &mut RestoreTables) {
    if topo.network_policies.is_empty() {
        return;
    }
    let text =
        comment("KUBE-ROUTER rule to explicitly ACCEPT traffic that comply to network policies");
    for builtin in ["INPUT", "FORWARD", "OUTPUT"] {
        t.filter.append(
            builtin,
            format!("{text} -m mark --mark 0x20000/0x20000 -j ACCEPT"),
        );
    }
}

fn kube_router_chains(topo: &Topology, t: &mut RestoreTables) {
    if topo.network_policies.is_empty() {
        return;
    }
    let f = &mut t.filter;
    let tag = |what: &str| hash16(&format!("{what}{KUBE_ROUTER_VERSION}"));
    f.append(
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
        f.append(
            "KUBE-ROUTER-INPUT",
            format!("-p {proto} {} -m addrtype --dst-type LOCAL -m multiport --dports 30000:32767 -j RETURN", comment(&text)),
        );
    }
    f.append(
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
    f.append("KUBE-ROUTER-FORWARD", format!("-d {ip}/32 {to} -j {chain}"));
    f.append(
        "KUBE-ROUTER-FORWARD",
        format!("-s {ip}/32 {from} -j {chain}"),
    );
    f.append("KUBE-ROUTER-INPUT", format!("-s {ip}/32 {from} -j {chain}"));
    f.append("KUBE-ROUTER-OUTPUT", format!("-d {ip}/32 {to} -j {chain}"));
    f.append(
        "KUBE-ROUTER-OUTPUT",
        format!("-s {ip}/32 {from} -j {chain}"),
    );

    f.append(
        &chain,
        format!(
            "{} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            comment("rule for stateful firewall for pod")
        ),
    );
    f.append(
        &chain,
        format!(
            "{} -m conntrack --ctstate INVALID -j DROP",
            comment("rule to drop invalid state for pod")
        ),
    );
    let local =
        comment("rule to permit the traffic traffic to pods when source is the pod's local node");
    f.append(
        &chain,
        format!("-d {ip}/32 {local} -m addrtype --src-type LOCAL -j ACCEPT"),
    );
    f.append(
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
        f.append(
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
        f.append(
            &chain,
            format!(
                "-d {ip}/32 {} -j {target}",
                comment(&format!("run through nw policy {}", policy.name))
            ),
        );
    }
    let log = comment(&format!("rule to log dropped traffic {label}"));
    f.append(
        &chain,
        format!("{log} -m mark ! --mark 0x10000/0x10000 -m limit --limit 10/min --limit-burst 10 -j NFLOG --nflog-group 100"),
    );
    let reject = comment(&format!("rule to REJECT traffic destined for {label}"));
    f.append(&chain, format!("{reject} -m mark ! --mark 0x10000/0x10000 -j REJECT --reject-with icmp-port-unreachable"));
    f.append(&chain, "-j MARK --set-xmark 0x0/0x10000");
    let accept = comment("set mark to ACCEPT traffic that comply to network policies");
    f.append(
        &chain,
        format!("{accept} -j MARK --set-xmark 0x20000/0x20000"),
    );
}

/// `KUBE-NWPLCY-<hash>`: mark then return for sources in the policy's ingress ipset.
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
    f.append(
        &chain,
        format!("{matches} -j MARK --set-xmark 0x10000/0x10000"),
    );
    f.append(
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
    let index = f.rules(chain).len();
    let id = cali_id(chain, index);
    let pre = if pre.is_empty() {
        String::new()
    } else {
        format!("{pre} ")
    };
    f.append(
        chain,
        format!("{pre}-m comment --comment \"cali:{id}\" {rest}"),
    );
}

fn calico_hooks(topo: &Topology, t: &mut RestoreTables) {
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

fn calico_chains(topo: &Topology, t: &mut RestoreTables) {
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
