//! Synthetic workloads for nfscope's benchmarks: a kube-proxy (iptables mode) ruleset generator and
//! the naive "fork `iptables-save` and split lines" baseline exporter that nfscope is measured against.
//!
//! [`kube_proxy_ruleset`] writes what `iptables-save` prints on a node whose kube-proxy serves N
//! services with E endpoints each: `iptables-restore` input in canonical **save syntax** (the option
//! order iptables-save prints, `/32` and `/128` host addresses, quoted comments, 11-digit
//! probabilities), so the same text loads with `iptables-restore` on both backends and reads back
//! unchanged. Chain names use kube-proxy's real hash (see [`service_chain_name`]). The output is a
//! pure function of the arguments: no clock, no randomness beyond a seeded generator.
//!
//! [`naive`] holds the baseline parser. Neither module does I/O; the benchmark binaries
//! (`gen-kube-ruleset`, `scrape-bench`) and the divan benches own processes, namespaces and timing.
//! This crate does not own nfscope's real parser (`nfscope-ruleset`) or metric schema
//! (`nfscope-exporter`); it only feeds and measures them.

#![forbid(unsafe_code)]
pub mod naive;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Knobs of [`kube_proxy_ruleset`]. `Default` gives the mix the benchmarks use: every service has a
/// NodePort, half of them a LoadBalancer IP, all have endpoints, IPv4, no counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Prefix every rule with `[packets:bytes]` (and give built-in chains non-zero policy counters).
    pub counters: bool,
    /// Write an `ip6tables` ruleset (IPv6 addresses, `/128`, `icmp6-port-unreachable`).
    pub ipv6: bool,
    /// Percentage (0–100) of services of type NodePort (KUBE-NODEPORTS + KUBE-EXT chain).
    pub nodeport_percent: u8,
    /// Percentage (0–100) of services that also have a LoadBalancer IP (taken among the NodePort ones).
    pub loadbalancer_percent: u8,
    /// Percentage (0–100) of services without endpoints (filter `REJECT "… has no endpoints"`).
    pub no_endpoints_percent: u8,
    /// Seed of the counter values; the same seed gives the same text.
    pub seed: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            counters: false,
            ipv6: false,
            nodeport_percent: 100,
            loadbalancer_percent: 50,
            no_endpoints_percent: 0,
            seed: 0x6e66_7363_6f70_6521,
        }
    }
}

/// The kube-proxy masquerade mark (`--masquerade-bit 14`).
const MASQ_MARK: &str = "0x4000/0x4000";
/// First port of the default NodePort range; the range holds 2,768 ports.
const NODEPORT_BASE: u16 = 30000;
const NODEPORT_RANGE: usize = 2768;

/// `iptables-restore` input (canonical save syntax) for a kube-proxy node with `services` services
/// of `endpoints_per_service` endpoints each. Tables `mangle`, `filter` and `nat`, in that order.
///
/// Per service with endpoints: one `KUBE-SERVICES` cluster-IP jump, a `KUBE-SVC-…` chain (masquerade
/// for sources outside the pod CIDR, then `-m statistic --probability 1/N, 1/(N-1), …` jumps, the
/// last unconditional), one `KUBE-SEP-…` chain per endpoint (hairpin masquerade + DNAT), and for
/// NodePort / LoadBalancer services a `KUBE-NODEPORTS` rule, a `KUBE-EXT-…` chain and a
/// loadbalancer-IP jump. With three endpoints that is 14 or 15 rules per service.
pub fn kube_proxy_ruleset(
    services: usize,
    endpoints_per_service: usize,
    opts: &GenOptions,
) -> String {
    let family = Family::new(opts.ipv6);
    let svcs: Vec<Service> = (0..services)
        .map(|i| Service::new(i, services, endpoints_per_service, opts, &family))
        .collect();
    let mut out = String::with_capacity(services * (endpoints_per_service + 2) * 400 + 4096);
    let _ = writeln!(
        out,
        "# nfscope-bench synthetic kube-proxy ruleset: services={services} endpoints_per_service={endpoints_per_service} family={}",
        if opts.ipv6 { "ipv6" } else { "ipv4" }
    );
    let mut counters = CounterSource::new(opts);
    mangle_table().write(&mut out, &mut counters);
    filter_table(&svcs, &family).write(&mut out, &mut counters);
    nat_table(&svcs, &family).write(&mut out, &mut counters);
    out
}

/// `KUBE-SVC-` + kube-proxy's hash of a service port: the first 16 characters of
/// base32(sha256(servicePortName + protocol)), servicePortName being `ns/name:port` and protocol
/// lowercase (`servicePortPolicyClusterChain` in kube-proxy's `proxier.go`).
pub fn service_chain_name(service_port_name: &str, protocol: &str) -> String {
    nfscope_annotate::kube_chain_hash("KUBE-SVC-", service_port_name, protocol)
}

/// `KUBE-EXT-` + the same hash as [`service_chain_name`] (`serviceExternalChainName`).
pub fn external_chain_name(service_port_name: &str, protocol: &str) -> String {
    nfscope_annotate::kube_chain_hash("KUBE-EXT-", service_port_name, protocol)
}

/// `KUBE-SEP-` + base32(sha256(servicePortName + protocol + endpoint))[..16], endpoint being
/// `ip:port` (`[ip]:port` for IPv6), as in kube-proxy's `servicePortEndpointChainName`.
pub fn endpoint_chain_name(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    nfscope_annotate::kube_endpoint_chain_hash(service_port_name, protocol, endpoint)
}

/// Counts the rules (`-A` lines, with or without a `[p:b]` prefix) of save-syntax text.
pub fn count_rules(text: &str) -> usize {
    text.lines()
        .filter(|line| naive::rule_body(line).is_some())
        .count()
}

/// Address plan of one family: service VIPs, pod (endpoint) addresses and load balancer IPs.
struct Family {
    ipv6: bool,
}

impl Family {
    fn new(ipv6: bool) -> Self {
        Self { ipv6 }
    }

    fn cluster_ip(&self, index: usize) -> IpAddr {
        self.offset(Ipv4Addr::new(10, 96, 0, 10), "fd00:10:96::a", index)
    }

    fn pod_ip(&self, index: usize) -> IpAddr {
        self.offset(Ipv4Addr::new(10, 240, 0, 2), "fd00:10:240::2", index)
    }

    fn loadbalancer_ip(&self, index: usize) -> IpAddr {
        self.offset(Ipv4Addr::new(172, 16, 0, 10), "fd00:ffff::a", index)
    }

    fn pod_cidr(&self) -> &'static str {
        if self.ipv6 {
            "fd00:10:240::/48"
        } else {
            "10.240.0.0/12"
        }
    }

    fn host_prefix(&self) -> u8 {
        if self.ipv6 { 128 } else { 32 }
    }

    fn reject_with(&self) -> &'static str {
        if self.ipv6 {
            "icmp6-port-unreachable"
        } else {
            "icmp-port-unreachable"
        }
    }

    fn offset(&self, v4: Ipv4Addr, v6: &str, index: usize) -> IpAddr {
        let index = index as u128;
        if self.ipv6 {
            let base: Ipv6Addr = v6.parse().expect("constant IPv6 base address");
            IpAddr::V6(Ipv6Addr::from(u128::from(base) + index))
        } else {
            IpAddr::V4(Ipv4Addr::from(u32::from(v4).wrapping_add(index as u32)))
        }
    }

    fn host(&self, ip: IpAddr) -> String {
        format!("{ip}/{}", self.host_prefix())
    }

    /// `ip:port`, or `[ip]:port` for IPv6 (Go's `net.JoinHostPort`, which kube-proxy uses).
    fn endpoint(&self, ip: IpAddr, port: u16) -> String {
        match ip {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        }
    }
}

/// One service port as kube-proxy sees it.
struct Service {
    /// `ns/name:portname`.
    port_name: String,
    protocol: &'static str,
    cluster_ip: IpAddr,
    port: u16,
    target_port: u16,
    node_port: Option<u16>,
    loadbalancer_ip: Option<IpAddr>,
    /// Endpoint addresses; empty for a service without endpoints.
    endpoints: Vec<IpAddr>,
}

/// (port name, port, target port, protocol) of the service shapes the generator cycles through.
const PORT_SHAPES: [(&str, u16, u16, &str); 5] = [
    ("http", 80, 8080, "tcp"),
    ("https", 443, 8443, "tcp"),
    ("grpc", 9000, 9000, "tcp"),
    ("metrics", 9090, 9090, "tcp"),
    ("dns", 53, 53, "udp"),
];

impl Service {
    fn new(
        index: usize,
        total: usize,
        endpoints: usize,
        opts: &GenOptions,
        family: &Family,
    ) -> Self {
        let (port_label, port, target_port, protocol) = PORT_SHAPES[index % PORT_SHAPES.len()];
        let node_port = picked(index, opts.nodeport_percent)
            .then(|| NODEPORT_BASE + (index % NODEPORT_RANGE) as u16);
        let loadbalancer_ip = (node_port.is_some() && picked(index, opts.loadbalancer_percent))
            .then(|| family.loadbalancer_ip(index));
        // Rotate the selection so "no endpoints" does not coincide with the LoadBalancer pick.
        let no_endpoints = picked(
            (index + total / 2 + 1) % total.max(1),
            opts.no_endpoints_percent,
        );
        let endpoints = if no_endpoints {
            Vec::new()
        } else {
            (0..endpoints)
                .map(|e| family.pod_ip(index * endpoints + e))
                .collect()
        };
        Self {
            port_name: format!("team-{:03}/svc-{index}:{port_label}", index / 40),
            protocol,
            cluster_ip: family.cluster_ip(index),
            port,
            target_port,
            node_port,
            loadbalancer_ip,
            endpoints,
        }
    }
}

/// Spreads `percent`% of the indices evenly (Bresenham): exactly ⌊n·percent/100⌋ of 0..n are picked.
fn picked(index: usize, percent: u8) -> bool {
    let percent = usize::from(percent.min(100));
    (index + 1) * percent / 100 != index * percent / 100
}

/// One table being built: built-in chains with their rules, user chains in name order.
struct Table {
    name: &'static str,
    builtins: Vec<(&'static str, Vec<String>)>,
    user: BTreeMap<String, Vec<String>>,
}

impl Table {
    fn new(name: &'static str, builtins: &[&'static str]) -> Self {
        Self {
            name,
            builtins: builtins.iter().map(|b| (*b, Vec::new())).collect(),
            user: BTreeMap::new(),
        }
    }

    fn declare(&mut self, chain: &str) {
        self.user.entry(chain.to_owned()).or_default();
    }

    /// Appends a rule (the text after `-A CHAIN `) to a built-in or user chain.
    fn append(&mut self, chain: &str, spec: String) {
        if let Some((_, rules)) = self.builtins.iter_mut().find(|(name, _)| *name == chain) {
            rules.push(spec);
        } else {
            self.user.entry(chain.to_owned()).or_default().push(spec);
        }
    }

    /// Writes the table the way `iptables-legacy-save` orders it: declarations (built-ins first,
    /// then user chains sorted), then rules chain by chain in the same order.
    fn write(&self, out: &mut String, counters: &mut CounterSource) {
        let _ = writeln!(out, "*{}", self.name);
        for (name, _) in &self.builtins {
            let _ = writeln!(out, ":{name} ACCEPT {}", counters.policy());
        }
        for name in self.user.keys() {
            let _ = writeln!(out, ":{name} - [0:0]");
        }
        let builtin_rules = self.builtins.iter().map(|(name, rules)| (*name, rules));
        let user_rules = self.user.iter().map(|(name, rules)| (name.as_str(), rules));
        for (chain, rules) in builtin_rules.chain(user_rules) {
            for spec in rules {
                out.push_str(&counters.rule_prefix());
                let _ = writeln!(out, "-A {chain} {spec}");
            }
        }
        out.push_str("COMMIT\n");
    }
}

fn mangle_table() -> Table {
    let mut t = Table::new(
        "mangle",
        &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    );
    for chain in [
        "KUBE-IPTABLES-HINT",
        "KUBE-KUBELET-CANARY",
        "KUBE-PROXY-CANARY",
    ] {
        t.declare(chain);
    }
    t
}

fn filter_table(svcs: &[Service], family: &Family) -> Table {
    let mut t = Table::new("filter", &["INPUT", "FORWARD", "OUTPUT"]);
    for chain in [
        "KUBE-KUBELET-CANARY",
        "KUBE-PROXY-CANARY",
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
    ] {
        t.declare(chain);
    }
    add_filter_hooks(&mut t);
    add_filter_fixed_chains(&mut t, family);
    for svc in svcs.iter().filter(|s| s.endpoints.is_empty()) {
        add_no_endpoint_rejects(&mut t, svc, family);
    }
    t
}

fn add_filter_hooks(t: &mut Table) {
    const FW: &str = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL";
    const SVC: &str = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES";
    const EXT: &str = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES";
    t.append("INPUT", FW.to_owned());
    t.append(
        "INPUT",
        "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS"
            .to_owned(),
    );
    t.append("INPUT", EXT.to_owned());
    t.append("INPUT", "-j KUBE-FIREWALL".to_owned());
    t.append("FORWARD", FW.to_owned());
    t.append(
        "FORWARD",
        "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD".to_owned(),
    );
    t.append("FORWARD", SVC.to_owned());
    t.append("FORWARD", EXT.to_owned());
    t.append("OUTPUT", FW.to_owned());
    t.append("OUTPUT", SVC.to_owned());
    t.append("OUTPUT", "-j KUBE-FIREWALL".to_owned());
}

fn add_filter_fixed_chains(t: &mut Table, family: &Family) {
    t.declare("KUBE-NODEPORTS");
    t.declare("KUBE-PROXY-FIREWALL");
    t.declare("KUBE-FIREWALL");
    if !family.ipv6 {
        t.append(
            "KUBE-FIREWALL",
            "! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP".to_owned(),
        );
    }
    t.append(
        "KUBE-FORWARD",
        "-m conntrack --ctstate INVALID -j DROP".to_owned(),
    );
    t.append(
        "KUBE-FORWARD",
        format!("-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK} -j ACCEPT"),
    );
    t.append(
        "KUBE-FORWARD",
        "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_owned(),
    );
}

fn add_no_endpoint_rejects(t: &mut Table, svc: &Service, family: &Family) {
    let (name, p, reject) = (&svc.port_name, svc.protocol, family.reject_with());
    let vip = family.host(svc.cluster_ip);
    t.append(
        "KUBE-SERVICES",
        format!("-d {vip} -p {p} -m comment --comment \"{name} has no endpoints\" -m {p} --dport {} -j REJECT --reject-with {reject}", svc.port),
    );
    if let Some(lb) = svc.loadbalancer_ip {
        t.append(
            "KUBE-EXTERNAL-SERVICES",
            format!("-d {} -p {p} -m comment --comment \"{name} has no endpoints\" -m {p} --dport {} -j REJECT --reject-with {reject}", family.host(lb), svc.port),
        );
    }
    if let Some(node_port) = svc.node_port {
        t.append(
            "KUBE-EXTERNAL-SERVICES",
            format!("-p {p} -m comment --comment \"{name} has no endpoints\" -m addrtype --dst-type LOCAL -m {p} --dport {node_port} -j REJECT --reject-with {reject}"),
        );
    }
}

fn nat_table(svcs: &[Service], family: &Family) -> Table {
    let mut t = Table::new("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]);
    for chain in [
        "KUBE-KUBELET-CANARY",
        "KUBE-PROXY-CANARY",
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
    ] {
        t.declare(chain);
    }
    t.append(
        "PREROUTING",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_owned(),
    );
    t.append(
        "OUTPUT",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_owned(),
    );
    t.append(
        "POSTROUTING",
        "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING".to_owned(),
    );
    t.append("KUBE-MARK-MASQ", format!("-j MARK --set-xmark {MASQ_MARK}"));
    t.append(
        "KUBE-POSTROUTING",
        format!("-m mark ! --mark {MASQ_MARK} -j RETURN"),
    );
    t.append(
        "KUBE-POSTROUTING",
        "-j MARK --set-xmark 0x4000/0x0".to_owned(),
    );
    t.append(
        "KUBE-POSTROUTING",
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully".to_owned(),
    );
    for svc in svcs.iter().filter(|s| !s.endpoints.is_empty()) {
        add_service_nat(&mut t, svc, family);
    }
    t.append(
        "KUBE-SERVICES",
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS".to_owned(),
    );
    t
}

fn add_service_nat(t: &mut Table, svc: &Service, family: &Family) {
    let (name, p) = (&svc.port_name, svc.protocol);
    let svc_chain = service_chain_name(name, p);
    let vip = family.host(svc.cluster_ip);
    t.append(
        "KUBE-SERVICES",
        format!("-d {vip} -p {p} -m comment --comment \"{name} cluster IP\" -m {p} --dport {} -j {svc_chain}", svc.port),
    );
    if svc.node_port.is_some() {
        add_external_nat(t, svc, &svc_chain, family);
    }
    t.append(
        &svc_chain,
        format!(
            "! -s {} -d {vip} -p {p} -m comment --comment \"{name} cluster IP\" -m {p} --dport {} -j KUBE-MARK-MASQ",
            family.pod_cidr(),
            svc.port
        ),
    );
    let total = svc.endpoints.len();
    for (i, ip) in svc.endpoints.iter().enumerate() {
        let endpoint = family.endpoint(*ip, svc.target_port);
        let sep_chain = endpoint_chain_name(name, p, &endpoint);
        let statistic = match total - i {
            1 => String::new(),
            remaining => format!(
                "-m statistic --mode random --probability {} ",
                probability(remaining)
            ),
        };
        t.append(
            &svc_chain,
            format!("-m comment --comment \"{name} -> {endpoint}\" {statistic}-j {sep_chain}"),
        );
        t.append(
            &sep_chain,
            format!(
                "-s {} -m comment --comment \"{name}\" -j KUBE-MARK-MASQ",
                family.host(*ip)
            ),
        );
        t.append(
            &sep_chain,
            format!(
                "-p {p} -m comment --comment \"{name}\" -m {p} -j DNAT --to-destination {endpoint}"
            ),
        );
    }
}

fn add_external_nat(t: &mut Table, svc: &Service, svc_chain: &str, family: &Family) {
    let (name, p) = (&svc.port_name, svc.protocol);
    let ext_chain = external_chain_name(name, p);
    if let Some(lb) = svc.loadbalancer_ip {
        t.append(
            "KUBE-SERVICES",
            format!("-d {} -p {p} -m comment --comment \"{name} loadbalancer IP\" -m {p} --dport {} -j {ext_chain}", family.host(lb), svc.port),
        );
    }
    if let Some(node_port) = svc.node_port {
        t.append(
            "KUBE-NODEPORTS",
            format!(
                "-p {p} -m comment --comment \"{name}\" -m {p} --dport {node_port} -j {ext_chain}"
            ),
        );
    }
    t.append(
        &ext_chain,
        format!("-m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"),
    );
    t.append(&ext_chain, format!("-j {svc_chain}"));
}

/// The probability text iptables-save prints for kube-proxy's `1/n`: kube-proxy writes `%0.10f`,
/// xt_statistic stores it as a fraction of 2^31 (rounded), and save prints that with `%.11f`.
fn probability(n: usize) -> String {
    let written: f64 = format!("{:.10}", 1.0 / n as f64)
        .parse()
        .expect("formatted float parses");
    let stored = (written * 2_147_483_648.0).round();
    format!("{:.11}", stored / 2_147_483_648.0)
}

/// Deterministic counter values (splitmix64) for `[packets:bytes]` prefixes.
struct CounterSource {
    enabled: bool,
    state: u64,
}

impl CounterSource {
    fn new(opts: &GenOptions) -> Self {
        Self {
            enabled: opts.counters,
            state: opts.seed,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A packet/byte pair: about a third of the rules never matched, the rest are spread over six
    /// orders of magnitude with 40–1,500 bytes per packet.
    fn pair(&mut self) -> (u64, u64) {
        let draw = self.next();
        if draw.is_multiple_of(3) {
            return (0, 0);
        }
        let magnitude = 10u64.pow(((draw >> 8) % 7) as u32);
        let packets = (draw >> 16) % (magnitude * 9) + magnitude;
        let bytes_per_packet = 40 + (draw >> 40) % 1461;
        (packets, packets * bytes_per_packet)
    }

    fn policy(&mut self) -> String {
        if !self.enabled {
            return "[0:0]".to_owned();
        }
        let (p, b) = self.pair();
        format!("[{p}:{b}]")
    }

    fn rule_prefix(&mut self) -> String {
        if !self.enabled {
            return String::new();
        }
        let (p, b) = self.pair();
        format!("[{p}:{b}] ")
    }
}

#[cfg(test)]
mod tests;
