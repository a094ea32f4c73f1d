//! Synthetic workloads for nfscope's benchmarks: a kube-proxy (iptables mode) ruleset generator and
//! the naive "fork `iptables-save` and split lines" baseline exporter that nfscope is measured against.
//!
//! [`kube_proxy_ruleset`] writes what `iptables-save` prints on a node whose kube-proxy serves N
//! services with E endpoints each: `iptables-restore` input in canonical **save syntax** (the option
//! order iptables-save prints, `/32` and `/128` host addresses, quoted comments, 11-digit
//! probabilities), so the same text loads with `iptables-restore` on both backends and reads back
//! unchanged. The rules come from `nfscope_annotate::kube_proxy_rules`, the one kube-proxy rule
//! generator (the demo lab uses it too); this crate adds only the synthetic service list (shapes,
//! address plan, NodePort/LoadBalancer/no-endpoint mix) and seeded counters. Chain names use
//! kube-proxy's real hash (see [`service_chain_name`]). The output is a pure function of the
//! arguments: no clock, no randomness beyond a seeded generator.
//!
//! [`kube_proxy_nft_ruleset`] writes the same services in kube-proxy's nftables mode (`nft -f`
//! input, from `nfscope_annotate::kube_proxy_rules::write_kube_proxy_nft`).
//!
//! [`naive`] holds the baseline parser. Neither module does I/O; the benchmark binaries
//! (`gen-kube-ruleset`, `scrape-bench`) and the divan benches own processes, namespaces and timing.
//! This crate does not own nfscope's real parser (`nfscope-ruleset`) or metric schema
//! (`nfscope-exporter`); it only feeds and measures them.

#![forbid(unsafe_code)]
pub mod kube_proxy_shape;
pub mod naive;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nfscope_annotate::kube_proxy_rules::{
    self, Node, RestoreTables, ServicePort, write_kube_proxy,
};
use nfscope_ruleset::Family;

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

/// First port of the default NodePort range; the range holds 2,768 ports.
const NODEPORT_BASE: u16 = 30000;
const NODEPORT_RANGE: usize = 2768;

/// `iptables-restore` input (canonical save syntax) for a kube-proxy node with `services` services
/// of `endpoints_per_service` endpoints each. Tables `mangle`, `filter` and `nat`, in that order.
///
/// The rules are those of [`nfscope_annotate::kube_proxy_rules`] (the generator the demo lab uses
/// too) for a synthetic service list: per service with endpoints one `KUBE-SERVICES` cluster-IP
/// jump, a `KUBE-SVC-…` chain (masquerade for sources outside the pod CIDR, then
/// `-m statistic --probability 1/N, 1/(N-1), …` jumps, the last unconditional), one `KUBE-SEP-…`
/// chain per endpoint (hairpin masquerade + DNAT), and for NodePort / LoadBalancer services a
/// `KUBE-NODEPORTS` rule, a `KUBE-EXT-…` chain and a loadbalancer-IP jump. With three endpoints
/// that is 14 or 15 rules per service.
pub fn kube_proxy_ruleset(
    services: usize,
    endpoints_per_service: usize,
    opts: &GenOptions,
) -> String {
    generated_text(services, endpoints_per_service, opts, None)
}

/// [`kube_proxy_ruleset`]'s save-syntax text with the service names of [`Shape::KubeProxy`]:
/// once loaded, the kernel holds the same rules as for [`kube_proxy_restore_input`] (the root
/// test in `tests/restore.rs` compares the two as `iptables-save` prints them).
pub fn kube_proxy_ruleset_with_cluster_names(
    services: usize,
    endpoints_per_service: usize,
    opts: &GenOptions,
) -> String {
    generated_text(
        services,
        endpoints_per_service,
        opts,
        Some(kube_proxy_shape::service_port_name),
    )
}

fn generated_text(
    services: usize,
    endpoints_per_service: usize,
    opts: &GenOptions,
    name: Option<fn(usize) -> String>,
) -> String {
    let family = AddressPlan { ipv6: opts.ipv6 };
    let ports: Vec<ServicePort> = (0..services)
        .map(|i| {
            let mut port = service(i, services, endpoints_per_service, opts, &family);
            if let Some(name) = name {
                port.name = name(i);
            }
            port
        })
        .collect();
    let node = Node {
        family: if opts.ipv6 {
            Family::Ipv6
        } else {
            Family::Ipv4
        },
        pod_cidr: family.pod_cidr().to_owned(),
    };
    let mut tables = RestoreTables::new();
    write_kube_proxy(&node, &ports, &mut tables);
    let header = format!(
        "# nfscope-bench synthetic kube-proxy ruleset: services={services} endpoints_per_service={endpoints_per_service} family={}\n",
        if opts.ipv6 { "ipv6" } else { "ipv4" }
    );
    let mut counters = CounterSource::new(opts);
    if opts.counters {
        tables.write(&header, Some(&mut || counters.pair()))
    } else {
        tables.write(&header, None)
    }
}

/// Which text of the same services a generator writes (`--shape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// [`kube_proxy_ruleset`]: save syntax, chains declared in name order, services named
    /// `team-NNN/svc-N:port`.
    #[default]
    Generated,
    /// [`kube_proxy_restore_input`]: what kube-proxy itself writes (see [`kube_proxy_shape`]).
    KubeProxy,
}

impl Shape {
    /// The name `--shape` takes and the benchmark tables print.
    pub fn name(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::KubeProxy => "kube-proxy",
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "generated" => Ok(Self::Generated),
            "kube-proxy" => Ok(Self::KubeProxy),
            other => Err(format!(
                "unknown shape {other:?}: expected `generated` or `kube-proxy`"
            )),
        }
    }
}

/// The iptables-mode ruleset of `shape` (`iptables-restore --counters` input either way).
pub fn ruleset_of_shape(
    shape: Shape,
    services: usize,
    endpoints_per_service: usize,
    opts: &GenOptions,
) -> String {
    match shape {
        Shape::Generated => kube_proxy_ruleset(services, endpoints_per_service, opts),
        Shape::KubeProxy => kube_proxy_restore_input(services, endpoints_per_service, opts),
    }
}

/// `iptables-restore` input for the same services, addresses and mix as [`kube_proxy_ruleset`]
/// (the same rules per service), written the way kube-proxy writes its restore input: cluster-like
/// service names, its argument order and quoting, chains and services in its (unsorted) order.
/// See [`kube_proxy_shape`].
pub fn kube_proxy_restore_input(
    services: usize,
    endpoints_per_service: usize,
    opts: &GenOptions,
) -> String {
    let family = AddressPlan { ipv6: opts.ipv6 };
    let ports: Vec<ServicePort> = (0..services)
        .map(|i| {
            let mut port = service(i, services, endpoints_per_service, opts, &family);
            port.name = kube_proxy_shape::service_port_name(i);
            port
        })
        .collect();
    let header = format!(
        "# nfscope-bench kube-proxy-shaped restore input: services={services} endpoints_per_service={endpoints_per_service} family={}\n",
        if opts.ipv6 { "ipv6" } else { "ipv4" }
    );
    kube_proxy_shape::write(&ports, family.pod_cidr(), opts.ipv6, opts, &header)
}

/// `nft -f` input: kube-proxy's nftables-mode table (`table ip kube-proxy`, or `ip6` with
/// `opts.ipv6`) for the same synthetic services as [`kube_proxy_ruleset`] (same address plan and
/// NodePort / LoadBalancer / no-endpoint mix; `opts.counters` is ignored: kube-proxy's nftables
/// rules carry no counters). The rules are those of
/// [`nfscope_annotate::kube_proxy_rules::write_kube_proxy_nft`]; node IP 192.168.1.10
/// (`fd00:1::10`), service CIDR 10.96.0.0/12 (`fd00:10:96::/108`).
pub fn kube_proxy_nft_ruleset(
    services: usize,
    endpoints_per_service: usize,
    opts: &GenOptions,
) -> String {
    let family = AddressPlan { ipv6: opts.ipv6 };
    let ports: Vec<ServicePort> = (0..services)
        .map(|i| service(i, services, endpoints_per_service, opts, &family))
        .collect();
    let node = Node {
        family: if opts.ipv6 {
            Family::Ipv6
        } else {
            Family::Ipv4
        },
        pod_cidr: family.pod_cidr().to_owned(),
    };
    let (cidr, node_ip) = if opts.ipv6 {
        ("fd00:10:96::/108", "fd00:1::10")
    } else {
        ("10.96.0.0/12", "192.168.1.10")
    };
    let node_ip: IpAddr = node_ip.parse().expect("constant node address");
    format!(
        "# nfscope-bench synthetic kube-proxy nftables-mode table: services={services} endpoints_per_service={endpoints_per_service} family={}
{}",
        if opts.ipv6 { "ipv6" } else { "ipv4" },
        kube_proxy_rules::write_kube_proxy_nft(&node, cidr, &[node_ip], &ports)
    )
}

/// The cluster IP the generators give service `index` (`ipv6`: of the IPv6 plan).
pub fn cluster_ip(index: usize, ipv6: bool) -> IpAddr {
    AddressPlan { ipv6 }.cluster_ip(index)
}

/// `KUBE-SVC-` + kube-proxy's hash of a service port: the first 16 characters of
/// base32(sha256(servicePortName + protocol)), servicePortName being `ns/name:port` and protocol
/// lowercase (`servicePortPolicyClusterChain` in kube-proxy's `proxier.go`).
pub fn service_chain_name(service_port_name: &str, protocol: &str) -> String {
    kube_proxy_rules::service_chain(service_port_name, protocol)
}

/// `KUBE-EXT-` + the same hash as [`service_chain_name`] (`serviceExternalChainName`).
pub fn external_chain_name(service_port_name: &str, protocol: &str) -> String {
    kube_proxy_rules::external_chain(service_port_name, protocol)
}

/// `KUBE-SEP-` + base32(sha256(servicePortName + protocol + endpoint))[..16], endpoint being
/// `ip:port` (`[ip]:port` for IPv6), as in kube-proxy's `servicePortEndpointChainName`.
pub fn endpoint_chain_name(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    kube_proxy_rules::endpoint_chain(service_port_name, protocol, endpoint)
}

/// Counts the rules (`-A` lines, with or without a `[p:b]` prefix) of save-syntax text.
pub fn count_rules(text: &str) -> usize {
    text.lines()
        .filter(|line| naive::rule_body(line).is_some())
        .count()
}

/// Address plan of one family: service VIPs, pod (endpoint) addresses and load balancer IPs.
struct AddressPlan {
    ipv6: bool,
}

impl AddressPlan {
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

    fn offset(&self, v4: Ipv4Addr, v6: &str, index: usize) -> IpAddr {
        let index = index as u128;
        if self.ipv6 {
            let base: Ipv6Addr = v6.parse().expect("constant IPv6 base address");
            IpAddr::V6(Ipv6Addr::from(u128::from(base) + index))
        } else {
            IpAddr::V4(Ipv4Addr::from(u32::from(v4).wrapping_add(index as u32)))
        }
    }
}

/// (port name, port, target port, protocol) of the service shapes the generator cycles through.
const PORT_SHAPES: [(&str, u16, u16, &str); 5] = [
    ("http", 80, 8080, "tcp"),
    ("https", 443, 8443, "tcp"),
    ("grpc", 9000, 9000, "tcp"),
    ("metrics", 9090, 9090, "tcp"),
    ("dns", 53, 53, "udp"),
];

/// Service port `index` of `total`: its shape, addresses, node port and load balancer by the
/// options' percentages.
fn service(
    index: usize,
    total: usize,
    endpoints: usize,
    opts: &GenOptions,
    family: &AddressPlan,
) -> ServicePort {
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
            .map(|e| SocketAddr::new(family.pod_ip(index * endpoints + e), target_port))
            .collect()
    };
    ServicePort {
        name: format!("team-{:03}/svc-{index}:{port_label}", index / 40),
        protocol: protocol.to_owned(),
        cluster_ip: family.cluster_ip(index),
        port,
        node_port,
        loadbalancer_ip,
        endpoints,
    }
}

/// Spreads `percent`% of the indices evenly (Bresenham): exactly ⌊n·percent/100⌋ of 0..n are picked.
fn picked(index: usize, percent: u8) -> bool {
    let percent = usize::from(percent.min(100));
    (index + 1) * percent / 100 != index * percent / 100
}

/// Deterministic counter values (splitmix64) for `[packets:bytes]` prefixes.
struct CounterSource {
    state: u64,
}

impl CounterSource {
    fn new(opts: &GenOptions) -> Self {
        Self { state: opts.seed }
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
}

#[cfg(test)]
mod tests;
