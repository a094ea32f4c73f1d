//! kube-proxy's iptables-mode rules written out: the one generator of kube-proxy rulesets that
//! the demo lab (`nfscope demo`) and the benchmarks (`nfscope-bench`) share.
//!
//! [`write_kube_proxy`] appends what kube-proxy (iptables mode, 1.28+ layout) installs for a list
//! of [`ServicePort`]s to a [`RestoreTables`]: the kubelet's canary chains, the hooks in the
//! built-in chains, the fixed chains (`KUBE-MARK-MASQ`, `KUBE-POSTROUTING`, `KUBE-FORWARD`,
//! `KUBE-FIREWALL`), and per service port the `KUBE-SERVICES` jump, a `KUBE-SVC-…` chain
//! (masquerade from outside the pod CIDR, then `-m statistic --probability 1/N, 1/(N-1), …` jumps,
//! the last unconditional), one `KUBE-SEP-…` chain per endpoint (hairpin masquerade + DNAT), for
//! NodePort and LoadBalancer services a `KUBE-NODEPORTS` rule, a `KUBE-EXT-…` chain and a
//! loadbalancer-IP jump, and for a service without endpoints the filter `REJECT`s. Chain names
//! use kube-proxy's hashes ([`crate::hash`]), the same code the annotator checks chains with.
//!
//! The text is `iptables-restore` input written in **save syntax**: the option order, `/32` and
//! `/128` host addresses, quoted comments and 11-digit probabilities `iptables-save` prints. It
//! loads the rules kube-proxy's own restore input loads (same tables, chains, rules, positions),
//! and reads back from the kernel unchanged, which the benchmarks' root test checks on both
//! backends. Callers add their own rules to the same [`RestoreTables`] (the demo adds kube-router
//! and Calico around kube-proxy's hooks); the rules of a chain keep the order they were appended
//! in, which is what rule numbers count.
//!
//! [`write_kube_proxy_nft`] writes the same service ports as kube-proxy's nftables mode does: its
//! native `kube-proxy` table (verdict maps, `numgen` load balancing, chain names with its hash),
//! as `nft list table` prints it, for the benchmarks and the tests of nftables mode.
//!
//! Pure text generation: no I/O, no clock, no randomness (rule counters come from the caller).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use nfscope_ruleset::Family;

use crate::hash::{kube_chain_hash, kube_endpoint_chain_hash};

/// The kube-proxy masquerade mark (`--masquerade-bit 14`).
const MASQ_MARK: &str = "0x4000/0x4000";

/// One service port as kube-proxy sees it, in one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `namespace/name:port-name` (kube-proxy's `ServicePortName`).
    pub name: String,
    /// Lower-case protocol: `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The cluster IP of this family.
    pub cluster_ip: IpAddr,
    /// The service port.
    pub port: u16,
    /// The node port (NodePort and LoadBalancer services).
    pub node_port: Option<u16>,
    /// The load balancer's IP (LoadBalancer services; written only with a node port).
    pub loadbalancer_ip: Option<IpAddr>,
    /// Ready endpoints (`ip:port` of the pods), in the order kube-proxy balances over them;
    /// empty: the service gets the filter `REJECT`s instead of NAT chains.
    pub endpoints: Vec<SocketAddr>,
}

/// What the rules need to know of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The family of the ruleset (`iptables` or `ip6tables`).
    pub family: Family,
    /// The cluster's pod CIDR in this family (`--cluster-cidr`): traffic from outside it to a
    /// cluster IP is masqueraded.
    pub pod_cidr: String,
}

/// `KUBE-SVC-…` of a service port (`servicePortPolicyClusterChain`).
pub fn service_chain(service_port_name: &str, protocol: &str) -> String {
    kube_chain_hash("KUBE-SVC-", service_port_name, protocol)
}

/// `KUBE-EXT-…` of a service port (`serviceExternalChainName`).
pub fn external_chain(service_port_name: &str, protocol: &str) -> String {
    kube_chain_hash("KUBE-EXT-", service_port_name, protocol)
}

/// `KUBE-SEP-…` of one endpoint (`ip:port`, `[ip]:port` for IPv6) of a service port.
pub fn endpoint_chain(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    kube_endpoint_chain_hash(service_port_name, protocol, endpoint)
}

/// The probability text `iptables-save` prints for kube-proxy's `1/n`: kube-proxy writes
/// `%0.10f`, `xt_statistic` keeps it as a fraction of 2^31 (rounded), and save prints that with
/// `%.11f` (`1/3` → `0.33333333349`).
pub fn probability(n: usize) -> String {
    let written: f64 = format!("{:.10}", 1.0 / n as f64)
        .parse()
        .unwrap_or(1.0 / n as f64);
    let stored = (written * 2_147_483_648.0).round();
    format!("{:.11}", stored / 2_147_483_648.0)
}

/// One table of restore input: built-in chains with their rules, then user chains (declared in
/// name order, as `iptables-legacy-save` prints them), each chain's rules in append order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    name: &'static str,
    builtins: Vec<(&'static str, Vec<String>)>,
    user: BTreeMap<String, Vec<String>>,
}

impl Table {
    /// An empty table with these built-in chains.
    pub fn new(name: &'static str, builtins: &[&'static str]) -> Self {
        Self {
            name,
            builtins: builtins.iter().map(|b| (*b, Vec::new())).collect(),
            user: BTreeMap::new(),
        }
    }

    /// Declares a user chain (nothing for a built-in or an already declared one).
    pub fn declare(&mut self, chain: &str) {
        if !self.builtins.iter().any(|(name, _)| *name == chain) {
            self.user.entry(chain.to_owned()).or_default();
        }
    }

    /// Appends a rule (the text after `-A CHAIN `) to a chain, declaring a user chain.
    pub fn append(&mut self, chain: &str, spec: impl Into<String>) {
        let spec = spec.into();
        match self.builtins.iter_mut().find(|(name, _)| *name == chain) {
            Some((_, rules)) => rules.push(spec),
            None => self.user.entry(chain.to_owned()).or_default().push(spec),
        }
    }

    /// The rules appended to `chain` so far (empty for an unknown chain).
    pub fn rules(&self, chain: &str) -> &[String] {
        self.builtins
            .iter()
            .find(|(name, _)| *name == chain)
            .map(|(_, rules)| rules)
            .or_else(|| self.user.get(chain))
            .map_or(&[], Vec::as_slice)
    }

    /// Writes `*table`, the chain declarations (built-ins first), the rules chain by chain in
    /// the same order, and `COMMIT`. `counters` gives each built-in chain's policy counters and
    /// each rule's `[packets:bytes]` prefix, in that order; without it policies read `[0:0]` and
    /// rules have no prefix.
    pub fn write<'a>(
        &self,
        out: &mut String,
        mut counters: Option<&mut (dyn FnMut() -> (u64, u64) + 'a)>,
    ) {
        let _ = writeln!(out, "*{}", self.name);
        for (name, _) in &self.builtins {
            let (packets, bytes) = counters.as_mut().map_or((0, 0), |next| next());
            let _ = writeln!(out, ":{name} ACCEPT [{packets}:{bytes}]");
        }
        for name in self.user.keys() {
            let _ = writeln!(out, ":{name} - [0:0]");
        }
        let builtin_rules = self.builtins.iter().map(|(name, rules)| (*name, rules));
        let user_rules = self.user.iter().map(|(name, rules)| (name.as_str(), rules));
        for (chain, rules) in builtin_rules.chain(user_rules) {
            for spec in rules {
                if let Some(next) = counters.as_mut() {
                    let (packets, bytes) = next();
                    let _ = write!(out, "[{packets}:{bytes}] ");
                }
                let _ = writeln!(out, "-A {chain} {spec}");
            }
        }
        out.push_str("COMMIT\n");
    }
}

/// The tables kube-proxy writes to, in the order they are written: `mangle`, `filter`, `nat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreTables {
    /// `mangle` (the kubelet's canaries and `KUBE-IPTABLES-HINT`).
    pub mangle: Table,
    /// `filter`.
    pub filter: Table,
    /// `nat`.
    pub nat: Table,
}

impl Default for RestoreTables {
    fn default() -> Self {
        Self::new()
    }
}

impl RestoreTables {
    /// The three tables with their built-in chains and nothing else.
    pub fn new() -> Self {
        Self {
            mangle: Table::new(
                "mangle",
                &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            ),
            filter: Table::new("filter", &["INPUT", "FORWARD", "OUTPUT"]),
            nat: Table::new("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
        }
    }

    /// The restore input: `header` (a comment line, written as given), then the tables.
    /// `counters` as for [`Table::write`], drawn table after table.
    pub fn write<'a>(
        &self,
        header: &str,
        mut counters: Option<&mut (dyn FnMut() -> (u64, u64) + 'a)>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(header);
        for table in [&self.mangle, &self.filter, &self.nat] {
            table.write(&mut out, counters.as_deref_mut());
        }
        out
    }
}

/// Appends kube-proxy's rules for `services` on `node` to `tables` (see the module docs), in
/// the order kube-proxy writes them: hooks first, then the fixed chains, then the services in
/// the order given, and last the `KUBE-NODEPORTS` jump that must end nat `KUBE-SERVICES`.
pub fn write_kube_proxy(node: &Node, services: &[ServicePort], tables: &mut RestoreTables) {
    let v4 = node.family == Family::Ipv4;
    kubelet_canaries(tables);
    filter_hooks(&mut tables.filter, v4);
    filter_fixed_chains(&mut tables.filter, v4);
    nat_hooks(&mut tables.nat);
    for svc in services.iter().filter(|s| s.endpoints.is_empty()) {
        no_endpoint_rejects(&mut tables.filter, svc, node.family);
    }
    for svc in services.iter().filter(|s| !s.endpoints.is_empty()) {
        service_nat(&mut tables.nat, svc, node);
    }
    tables.nat.append(
        "KUBE-SERVICES",
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
    );
}

/// The chains the kubelet creates so that it and kube-proxy notice a flushed table.
fn kubelet_canaries(t: &mut RestoreTables) {
    t.mangle.declare("KUBE-IPTABLES-HINT");
    for table in [&mut t.mangle, &mut t.filter, &mut t.nat] {
        table.declare("KUBE-KUBELET-CANARY");
        table.declare("KUBE-PROXY-CANARY");
    }
}

fn filter_hooks(t: &mut Table, v4: bool) {
    const FW: &str = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL";
    const SVC: &str = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES";
    const EXT: &str = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES";
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        t.declare(chain);
    }
    t.append("INPUT", FW);
    t.append(
        "INPUT",
        "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS",
    );
    t.append("INPUT", EXT);
    t.append("FORWARD", FW);
    t.append(
        "FORWARD",
        "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
    );
    t.append("FORWARD", SVC);
    t.append("FORWARD", EXT);
    t.append("OUTPUT", FW);
    t.append("OUTPUT", SVC);
    // The localnet rule exists for IPv4 only (route_localnet has no IPv6 counterpart).
    if v4 {
        t.append("INPUT", "-j KUBE-FIREWALL");
        t.append("OUTPUT", "-j KUBE-FIREWALL");
    }
}

fn filter_fixed_chains(t: &mut Table, v4: bool) {
    if v4 {
        t.append(
            "KUBE-FIREWALL",
            "! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        );
    }
    t.append("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP");
    t.append(
        "KUBE-FORWARD",
        format!("-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK} -j ACCEPT"),
    );
    t.append(
        "KUBE-FORWARD",
        "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );
}

fn nat_hooks(t: &mut Table) {
    for chain in ["KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-NODEPORTS"] {
        t.declare(chain);
    }
    t.append(
        "PREROUTING",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    t.append(
        "OUTPUT",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    t.append(
        "POSTROUTING",
        "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    );
    // kube-proxy writes `--or-mark 0x4000` and `--xor-mark 0x4000`; save prints them so.
    t.append("KUBE-MARK-MASQ", format!("-j MARK --set-xmark {MASQ_MARK}"));
    t.append(
        "KUBE-POSTROUTING",
        format!("-m mark ! --mark {MASQ_MARK} -j RETURN"),
    );
    t.append("KUBE-POSTROUTING", "-j MARK --set-xmark 0x4000/0x0");
    t.append(
        "KUBE-POSTROUTING",
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
    );
}

/// `ip/32` or `ip/128`, as save prints a host address.
fn host(ip: IpAddr) -> String {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    format!("{ip}/{prefix}")
}

fn reject_with(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "icmp-port-unreachable",
        Family::Ipv6 => "icmp6-port-unreachable",
    }
}

fn no_endpoint_rejects(t: &mut Table, svc: &ServicePort, family: Family) {
    let (name, p, reject) = (&svc.name, &svc.protocol, reject_with(family));
    let vip = host(svc.cluster_ip);
    t.append(
        "KUBE-SERVICES",
        format!("-d {vip} -p {p} -m comment --comment \"{name} has no endpoints\" -m {p} --dport {} -j REJECT --reject-with {reject}", svc.port),
    );
    let Some(node_port) = svc.node_port else {
        return;
    };
    if let Some(lb) = svc.loadbalancer_ip {
        t.append(
            "KUBE-EXTERNAL-SERVICES",
            format!("-d {} -p {p} -m comment --comment \"{name} has no endpoints\" -m {p} --dport {} -j REJECT --reject-with {reject}", host(lb), svc.port),
        );
    }
    t.append(
        "KUBE-EXTERNAL-SERVICES",
        format!("-p {p} -m comment --comment \"{name} has no endpoints\" -m addrtype --dst-type LOCAL -m {p} --dport {node_port} -j REJECT --reject-with {reject}"),
    );
}

fn service_nat(t: &mut Table, svc: &ServicePort, node: &Node) {
    let (name, p) = (&svc.name, &svc.protocol);
    let svc_chain = service_chain(name, p);
    let vip = host(svc.cluster_ip);
    t.append(
        "KUBE-SERVICES",
        format!("-d {vip} -p {p} -m comment --comment \"{name} cluster IP\" -m {p} --dport {} -j {svc_chain}", svc.port),
    );
    if let Some(node_port) = svc.node_port {
        external_nat(t, svc, node_port, &svc_chain);
    }
    t.append(
        &svc_chain,
        format!(
            "! -s {} -d {vip} -p {p} -m comment --comment \"{name} cluster IP\" -m {p} --dport {} -j KUBE-MARK-MASQ",
            node.pod_cidr, svc.port
        ),
    );
    let total = svc.endpoints.len();
    for (i, endpoint) in svc.endpoints.iter().enumerate() {
        // `ip:port`, `[ip]:port` for IPv6: Go's `net.JoinHostPort`, which kube-proxy uses.
        let endpoint_text = endpoint.to_string();
        let sep_chain = endpoint_chain(name, p, &endpoint_text);
        let statistic = match total - i {
            1 => String::new(),
            remaining => format!(
                "-m statistic --mode random --probability {} ",
                probability(remaining)
            ),
        };
        t.append(
            &svc_chain,
            format!("-m comment --comment \"{name} -> {endpoint_text}\" {statistic}-j {sep_chain}"),
        );
        t.append(
            &sep_chain,
            format!(
                "-s {} -m comment --comment \"{name}\" -j KUBE-MARK-MASQ",
                host(endpoint.ip())
            ),
        );
        t.append(
            &sep_chain,
            format!("-p {p} -m comment --comment \"{name}\" -m {p} -j DNAT --to-destination {endpoint_text}"),
        );
    }
}

fn external_nat(t: &mut Table, svc: &ServicePort, node_port: u16, svc_chain: &str) {
    let (name, p) = (&svc.name, &svc.protocol);
    let ext_chain = external_chain(name, p);
    if let Some(lb) = svc.loadbalancer_ip {
        t.append(
            "KUBE-SERVICES",
            format!("-d {} -p {p} -m comment --comment \"{name} loadbalancer IP\" -m {p} --dport {} -j {ext_chain}", host(lb), svc.port),
        );
    }
    t.append(
        "KUBE-NODEPORTS",
        format!("-p {p} -m comment --comment \"{name}\" -m {p} --dport {node_port} -j {ext_chain}"),
    );
    t.append(
        &ext_chain,
        format!("-m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"),
    );
    t.append(&ext_chain, format!("-j {svc_chain}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(endpoints: usize) -> ServicePort {
        ServicePort {
            name: "demo/web:http".to_owned(),
            protocol: "tcp".to_owned(),
            cluster_ip: "10.96.0.10".parse().unwrap(),
            port: 80,
            node_port: None,
            loadbalancer_ip: None,
            endpoints: (0..endpoints)
                .map(|i| SocketAddr::new(format!("10.244.1.{}", 11 + i).parse().unwrap(), 8080))
                .collect(),
        }
    }

    fn v4() -> Node {
        Node {
            family: Family::Ipv4,
            pod_cidr: "10.244.0.0/16".to_owned(),
        }
    }

    #[test]
    fn probabilities_print_like_iptables_save() {
        // Values read back from `iptables-legacy-save` after loading kube-proxy's `%0.10f` text.
        assert_eq!(probability(3), "0.33333333349");
        assert_eq!(probability(2), "0.50000000000");
    }

    #[test]
    fn a_service_port_gets_its_svc_and_sep_chains_in_kube_proxy_order() {
        let mut tables = RestoreTables::new();
        write_kube_proxy(&v4(), &[web(3)], &mut tables);
        let svc = service_chain("demo/web:http", "tcp");
        let rules = tables.nat.rules(&svc);
        assert_eq!(rules.len(), 4, "{rules:#?}");
        assert!(rules[0].starts_with("! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp "));
        assert!(rules[0].ends_with("-j KUBE-MARK-MASQ"));
        assert!(rules[1].contains("--probability 0.33333333349 "));
        assert!(rules[2].contains("--probability 0.50000000000 "));
        assert!(!rules[3].contains("statistic"));
        let sep = endpoint_chain("demo/web:http", "tcp", "10.244.1.13:8080");
        assert!(rules[3].ends_with(&format!("-j {sep}")));
        assert_eq!(
            tables.nat.rules(&sep),
            [
                "-s 10.244.1.13/32 -m comment --comment \"demo/web:http\" -j KUBE-MARK-MASQ",
                "-p tcp -m comment --comment \"demo/web:http\" -m tcp -j DNAT --to-destination 10.244.1.13:8080",
            ]
        );
        let services = tables.nat.rules("KUBE-SERVICES");
        assert_eq!(services.len(), 2);
        assert!(services[0].ends_with(&format!("--dport 80 -j {svc}")));
        assert!(services[1].ends_with("-j KUBE-NODEPORTS"));
    }

    #[test]
    fn a_service_without_endpoints_is_rejected_in_filter_and_has_no_nat_chain() {
        let mut tables = RestoreTables::new();
        write_kube_proxy(&v4(), &[web(0)], &mut tables);
        assert_eq!(
            tables.filter.rules("KUBE-SERVICES"),
            [
                "-d 10.96.0.10/32 -p tcp -m comment --comment \"demo/web:http has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"
            ]
        );
        assert!(
            tables
                .nat
                .rules(&service_chain("demo/web:http", "tcp"))
                .is_empty()
        );
    }

    #[test]
    fn ipv6_has_no_localnet_firewall() {
        let node = Node {
            family: Family::Ipv6,
            pod_cidr: "fd00:10:244::/56".to_owned(),
        };
        let mut svc = web(1);
        svc.cluster_ip = "fd00:10:96::10".parse().unwrap();
        svc.endpoints = vec!["[fd00:10:244:1::b]:8080".parse().unwrap()];
        let mut tables = RestoreTables::new();
        write_kube_proxy(&node, &[svc], &mut tables);
        let text = tables.write("", None);
        assert!(!text.contains("KUBE-FIREWALL"), "{text}");
        assert!(text.contains("-d fd00:10:96::10/128 -p tcp "));
        assert!(text.contains("--to-destination [fd00:10:244:1::b]:8080"));
    }

    #[test]
    fn counters_are_drawn_for_policies_then_rules_in_written_order() {
        let mut tables = RestoreTables::new();
        write_kube_proxy(&v4(), &[web(1)], &mut tables);
        let mut n = 0;
        let text = tables.write(
            "",
            Some(&mut || {
                n += 1;
                (n, n * 10)
            }),
        );
        assert!(
            text.starts_with("*mangle\n:PREROUTING ACCEPT [1:10]\n"),
            "{text}"
        );
        let rules: Vec<&str> = text.lines().filter(|l| l.contains("-A ")).collect();
        assert!(rules.iter().all(|l| l.starts_with('[')), "{rules:#?}");
        // 12 built-in chains in the three tables, then one draw per rule.
        assert_eq!(n, 12 + rules.len() as u64);
        assert!(rules[0].starts_with("[9:90] -A INPUT "), "{}", rules[0]);
    }
}

// ---------------------------------------------------------------------------------------------
// nftables mode

/// kube-proxy's nftables-mode table (`table ip kube-proxy` / `table ip6 kube-proxy`, the layout
/// of its nftables proxier up to 1.33, as `nft list table` prints it) for `services`: the sets
/// `cluster-ips` and `nodeport-ips` (`node_ips`), the verdict maps `service-ips` (cluster and
/// load balancer IPs), `service-nodeports`, `no-endpoint-services`, `no-endpoint-nodeports` and
/// `firewall-ips`, the base and fixed chains (`services`, `*-check`, `masquerading`,
/// `mark-for-masquerade`, `reject-chain`; `service_cidr` in `cluster-ips-check`), and per
/// service port with endpoints a `service-HASH-ns/name/proto/port` chain (masquerade from outside
/// the pod CIDR, then a `numgen random mod N` vmap over its endpoints), one
/// `endpoint-HASH-…__ip/port` chain per endpoint (hairpin masquerade + DNAT) and for node ports
/// and load balancers an `external-…` chain. A service port without endpoints gets elements of
/// the no-endpoint maps (commented `ns/name:port`, going to `reject-chain`) instead. Chain names
/// carry kube-proxy's hash (`hashAndTruncate`: base32(sha256(rest of the name))[..8]). The text
/// loads with `nft -f` and parses with `nfscope_ruleset::parse_nft_text`.
pub fn write_kube_proxy_nft(
    node: &Node,
    service_cidr: &str,
    node_ips: &[IpAddr],
    services: &[ServicePort],
) -> String {
    let v4 = node.family == Family::Ipv4;
    let (family, ip, addr_type) = if v4 {
        ("ip", "ip", "ipv4_addr")
    } else {
        ("ip6", "ip6", "ipv6_addr")
    };
    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    let mut no_endpoint_services = Vec::new();
    let mut no_endpoint_nodeports = Vec::new();
    let mut chains = String::new();
    // A node port belongs to one service port (the API server allocates it once); a list that
    // repeats one (the benchmarks' wrap around the port range) keeps the first, as map keys must
    // be unique.
    let mut taken = std::collections::HashSet::new();
    for svc in services {
        let proto = svc.protocol.as_str();
        let svc = &ServicePort {
            node_port: svc
                .node_port
                .filter(|np| taken.insert((svc.protocol.clone(), *np))),
            ..svc.clone()
        };
        let base = nft_service_name(&svc.name, proto);
        let service = nft_chain("service-", &base);
        let external = nft_chain("external-", &base);
        let has_external = svc.node_port.is_some() || svc.loadbalancer_ip.is_some();
        if svc.endpoints.is_empty() {
            let comment = &svc.name;
            no_endpoint_services.push(format!(
                "{} . {proto} . {} comment \"{comment}\" : goto reject-chain",
                svc.cluster_ip, svc.port
            ));
            if let Some(lb) = svc.loadbalancer_ip {
                no_endpoint_services.push(format!(
                    "{lb} . {proto} . {} comment \"{comment}\" : goto reject-chain",
                    svc.port
                ));
            }
            if let Some(np) = svc.node_port {
                no_endpoint_nodeports.push(format!(
                    "{proto} . {np} comment \"{comment}\" : goto reject-chain"
                ));
            }
            continue;
        }
        service_ips.push(format!(
            "{} . {proto} . {} : goto {service}",
            svc.cluster_ip, svc.port
        ));
        if has_external {
            if let Some(lb) = svc.loadbalancer_ip {
                service_ips.push(format!("{lb} . {proto} . {} : goto {external}", svc.port));
            }
            if let Some(np) = svc.node_port {
                node_ports.push(format!("{proto} . {np} : goto {external}"));
            }
            let _ = write!(
                chains,
                "\tchain {external} {{\n\t\tjump mark-for-masquerade\n\t\tgoto {service}\n\t}}\n"
            );
        }
        let mut branches = Vec::new();
        let mut endpoint_chains = String::new();
        for (i, ep) in svc.endpoints.iter().enumerate() {
            let name_ip = match ep.ip() {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => a.to_string().replace(':', "."),
            };
            let chain = nft_chain("endpoint-", &format!("{base}__{name_ip}/{}", ep.port()));
            branches.push(format!("{i} : goto {chain}"));
            let target = match ep.ip() {
                IpAddr::V4(a) => format!("{a}:{}", ep.port()),
                IpAddr::V6(a) => format!("[{a}]:{}", ep.port()),
            };
            let _ = write!(
                endpoint_chains,
                "\tchain {chain} {{\n\t\t{ip} saddr {} jump mark-for-masquerade\n\t\tmeta l4proto {proto} dnat to {target}\n\t}}\n",
                ep.ip()
            );
        }
        let _ = write!(
            chains,
            "\tchain {service} {{\n\t\t{ip} daddr {} {proto} dport {} {ip} saddr != {} jump mark-for-masquerade\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}\n{endpoint_chains}",
            svc.cluster_ip,
            svc.port,
            node.pod_cidr,
            svc.endpoints.len(),
            branches.join(", ")
        );
    }
    let mut out = format!("table {family} kube-proxy {{\n\tcomment \"rules for kube-proxy\"\n");
    let cluster_ips: Vec<String> = services.iter().map(|s| s.cluster_ip.to_string()).collect();
    let node_ips: Vec<String> = node_ips.iter().map(IpAddr::to_string).collect();
    let set =
        |out: &mut String, kind: &str, name: &str, ty: &str, comment: &str, elems: &[String]| {
            let _ = write!(
                out,
                "\t{kind} {name} {{\n\t\ttype {ty}\n\t\tcomment \"{comment}\"\n"
            );
            if !elems.is_empty() {
                let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(",\n\t\t\t     "));
            }
            out.push_str("\t}\n");
        };
    let concat = format!("{addr_type} . inet_proto . inet_service : verdict");
    set(
        &mut out,
        "set",
        "cluster-ips",
        addr_type,
        "Active ClusterIPs",
        &cluster_ips,
    );
    set(
        &mut out,
        "set",
        "nodeport-ips",
        addr_type,
        "IPs that accept NodePort traffic",
        &node_ips,
    );
    set(
        &mut out,
        "map",
        "no-endpoint-services",
        &concat,
        "vmap to drop or reject packets to services with no endpoints",
        &no_endpoint_services,
    );
    set(
        &mut out,
        "map",
        "no-endpoint-nodeports",
        "inet_proto . inet_service : verdict",
        "vmap to drop or reject packets to service nodeports with no endpoints",
        &no_endpoint_nodeports,
    );
    set(
        &mut out,
        "map",
        "firewall-ips",
        &concat,
        "destinations that are subject to LoadBalancerSourceRanges",
        &[],
    );
    set(
        &mut out,
        "map",
        "service-ips",
        &concat,
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        &service_ips,
    );
    set(
        &mut out,
        "map",
        "service-nodeports",
        "inet_proto . inet_service : verdict",
        "NodePort traffic",
        &node_ports,
    );
    let _ = write!(
        out,
        "\tchain filter-prerouting {{\n\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n\t\tct state new jump firewall-check\n\t}}\n\
         \tchain filter-input {{\n\t\ttype filter hook input priority -110; policy accept;\n\t\tct state new jump nodeport-endpoints-check\n\t\tct state new jump service-endpoints-check\n\t}}\n\
         \tchain filter-forward {{\n\t\ttype filter hook forward priority -110; policy accept;\n\t\tct state new jump service-endpoints-check\n\t\tct state new jump cluster-ips-check\n\t}}\n\
         \tchain filter-output {{\n\t\ttype filter hook output priority -110; policy accept;\n\t\tct state new jump service-endpoints-check\n\t\tct state new jump firewall-check\n\t}}\n\
         \tchain filter-output-post-dnat {{\n\t\ttype filter hook output priority -90; policy accept;\n\t\tct state new jump cluster-ips-check\n\t}}\n\
         \tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump masquerading\n\t}}\n\
         \tchain nodeport-endpoints-check {{\n\t\t{ip} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports\n\t}}\n\
         \tchain service-endpoints-check {{\n\t\t{ip} daddr . meta l4proto . th dport vmap @no-endpoint-services\n\t}}\n\
         \tchain firewall-check {{\n\t\t{ip} daddr . meta l4proto . th dport vmap @firewall-ips\n\t}}\n\
         \tchain services {{\n\t\t{ip} daddr . meta l4proto . th dport vmap @service-ips\n\t\t{ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports\n\t}}\n\
         \tchain masquerading {{\n\t\tmeta mark & 0x00004000 == 0x00000000 return\n\t\tmeta mark set meta mark ^ 0x00004000\n\t\tmasquerade fully-random\n\t}}\n\
         \tchain cluster-ips-check {{\n\t\t{ip} daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n\t\t{ip} daddr {service_cidr} drop comment \"Drop traffic to unallocated ClusterIPs\"\n\t}}\n\
         \tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | 0x00004000\n\t}}\n\
         \tchain reject-chain {{\n\t\tcomment \"helper for @no-endpoint-services / @no-endpoint-nodeports\"\n\t\treject\n\t}}\n"
    );
    out.push_str(&chains);
    out.push_str("}\n");
    out
}

/// `ns/name:port` and `tcp` → `ns/name/tcp/port` (kube-proxy's nftables naming of a service port;
/// the port part is empty for an unnamed port).
fn nft_service_name(service_port_name: &str, protocol: &str) -> String {
    let (svc, port) = service_port_name
        .split_once(':')
        .unwrap_or((service_port_name, ""));
    format!("{svc}/{protocol}/{port}")
}

/// `PREFIX` + kube-proxy's 8-character hash of `rest` + `-` + `rest`.
fn nft_chain(prefix: &str, rest: &str) -> String {
    format!("{prefix}{}-{rest}", &crate::hash::hash16(rest)[..8])
}

#[cfg(test)]
mod nft_tests {
    use super::*;
    use crate::native::{
        KubeNftChain, kube_nft_chain, kube_nft_hash_matches, no_endpoint_services,
    };
    use nfscope_ruleset::typed::{MapData, Value, Verdict};
    use nfscope_ruleset::{NftLimits, parse_nft_text};

    fn services(v4: bool) -> Vec<ServicePort> {
        let ip = |v4s: &str, v6s: &str| -> IpAddr {
            if v4 {
                v4s.parse().unwrap()
            } else {
                v6s.parse().unwrap()
            }
        };
        let ep = |v4s: &str, v6s: &str, port| SocketAddr::new(ip(v4s, v6s), port);
        vec![
            ServicePort {
                name: "ns1/web:http".into(),
                protocol: "tcp".into(),
                cluster_ip: ip("10.96.0.10", "fd00:10:96::a"),
                port: 80,
                node_port: Some(30080),
                loadbalancer_ip: Some(ip("172.16.0.10", "fd00:ffff::a")),
                endpoints: vec![
                    ep("10.240.0.2", "fd00:10:240::2", 8080),
                    ep("10.240.0.3", "fd00:10:240::3", 8080),
                ],
            },
            ServicePort {
                name: "kube-system/dns".into(),
                protocol: "udp".into(),
                cluster_ip: ip("10.96.0.11", "fd00:10:96::b"),
                port: 53,
                node_port: None,
                loadbalancer_ip: None,
                endpoints: vec![ep("10.240.0.4", "fd00:10:240::4", 53)],
            },
            ServicePort {
                name: "ns2/empty:http".into(),
                protocol: "tcp".into(),
                cluster_ip: ip("10.96.0.12", "fd00:10:96::c"),
                port: 80,
                node_port: Some(30081),
                loadbalancer_ip: None,
                endpoints: Vec::new(),
            },
        ]
    }

    #[test]
    fn the_nftables_table_parses_with_kube_proxys_hashes_and_maps_in_both_families() {
        for v4 in [true, false] {
            let node = Node {
                family: if v4 { Family::Ipv4 } else { Family::Ipv6 },
                pod_cidr: if v4 {
                    "10.240.0.0/12"
                } else {
                    "fd00:10:240::/48"
                }
                .into(),
            };
            let (cidr, node_ip) = if v4 {
                ("10.96.0.0/16", "192.168.1.10")
            } else {
                ("fd00:10:96::/112", "fd00:1::10")
            };
            let text =
                write_kube_proxy_nft(&node, cidr, &[node_ip.parse().unwrap()], &services(v4));
            let ruleset = parse_nft_text(&text, &NftLimits::default())
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            let table = &ruleset.tables[0];
            assert_eq!(table.name, "kube-proxy");
            let objects: Vec<KubeNftChain> = table
                .chains
                .iter()
                .filter_map(|c| kube_nft_chain(&c.name))
                .collect();
            // web: service, external, 2 endpoints; dns: service, 1 endpoint.
            assert_eq!(objects.len(), 6, "{text}");
            for c in &table.chains {
                if kube_nft_chain(&c.name).is_some() {
                    assert_eq!(kube_nft_hash_matches(&c.name), Some(true), "{}", c.name);
                }
            }
            let endpoints: Vec<&str> = objects
                .iter()
                .filter_map(|o| match o {
                    KubeNftChain::Endpoint { endpoint, .. } => Some(endpoint.as_str()),
                    KubeNftChain::Service { .. } => None,
                })
                .collect();
            let want: Vec<String> = services(v4)
                .iter()
                .flat_map(|s| s.endpoints.clone())
                .map(|e| e.to_string())
                .collect();
            assert_eq!(endpoints, want);
            let map = |name: &str| table.set(name).expect(name);
            assert_eq!(
                map("service-ips").elements.len(),
                3,
                "2 cluster IPs, 1 LB IP"
            );
            assert_eq!(map("service-nodeports").elements.len(), 1);
            assert_eq!(map("cluster-ips").elements.len(), 3);
            let first = &map("service-ips").elements[0];
            assert!(matches!(&first.key, Value::Concat(parts) if parts.len() == 3));
            assert!(matches!(
                &first.data,
                Some(MapData::Verdict(Verdict::Goto(t))) if t.starts_with("service-") && t.ends_with("-ns1/web/tcp/http")
            ));
            let empty = no_endpoint_services(table);
            assert_eq!(empty.len(), 2, "cluster IP and node port");
            assert!(
                empty
                    .iter()
                    .all(|e| e.service.name == "empty" && !e.local_only)
            );
        }
    }

    #[test]
    fn a_repeated_node_port_keeps_its_first_service_as_map_keys_are_unique() {
        let node = Node {
            family: Family::Ipv4,
            pod_cidr: "10.240.0.0/12".into(),
        };
        let mut list = services(true);
        list[2].node_port = Some(30080); // web's
        list[2].endpoints = list[1].endpoints.clone();
        let text = write_kube_proxy_nft(&node, "10.96.0.0/16", &[], &list);
        let ruleset = parse_nft_text(&text, &NftLimits::default()).expect("parses");
        let ports = ruleset.tables[0].set("service-nodeports").unwrap();
        assert_eq!(ports.elements.len(), 1, "{text}");
        assert!(matches!(
            &ports.elements[0].data,
            Some(MapData::Verdict(Verdict::Goto(t))) if t.ends_with("-ns1/web/tcp/http")
        ));
    }
}
