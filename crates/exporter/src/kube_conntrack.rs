//! Kubernetes Service connections counted from conntrack: the source of
//! `nfscope_kube_endpoint_new_connections_total` where no rule counter exists (kube-proxy's
//! nftables mode writes its rules without counters).
//!
//! A NEW conntrack event whose original destination is a Service IP:port (or a node port) and
//! whose reply source is one of that Service's endpoints is one new connection to that endpoint.
//! This module owns the counting ([`ServiceConnCounter`]: a bounded table of destination →
//! endpoint counts, fed with [`NewConnection`]s), which Services exist and where they send
//! traffic ([`ServiceIndex`], from kube-proxy's native nftables table: the `service-ips` and
//! `service-nodeports` maps and the `endpoint-…` chains) and the join of the two into series
//! ([`ServiceConnCounter::series`]). It does not read events (`nfscope-kernel`) and does not own
//! the choice between rule counters and conntrack for one Service (`crate::kube`: a Service whose
//! endpoints have counted iptables DNAT rules is counted by those rules only).
//!
//! Pure: no I/O, no clock. Memory is bounded by [`ServiceConnCounter::max_keys`]; a key that does
//! not fit is counted in [`ConnCounterStats::keys_dropped`], never silently lost.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use nfscope_annotate::native::{KubeNftChain, kube_nft_chain, no_endpoint_services, table_owner};
use nfscope_annotate::{Owner, ServicePort};
use nfscope_ruleset::Family;
use nfscope_ruleset::typed::{MapData, NftFamily, NftRuleset, NftTable, Value, Verdict};

use crate::expo::{Exposition, Kind};

/// Default bound on the (destination, endpoint) keys a counter tracks.
pub const DEFAULT_MAX_KEYS: usize = 65_536;

/// What one NEW conntrack event says about a connection, as the counter needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NewConnection {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
    /// Original destination address (what the client dialled: a Service IP, a node IP).
    pub dst: IpAddr,
    /// Original destination port.
    pub dport: u16,
    /// Reply source address (who answers after DNAT: the endpoint).
    pub endpoint: IpAddr,
    /// Reply source port.
    pub endpoint_port: u16,
}

impl NewConnection {
    /// Whether the connection's destination was rewritten (only such connections can be to a
    /// Service endpoint).
    pub fn is_dnat(&self) -> bool {
        self.dst != self.endpoint || self.dport != self.endpoint_port
    }
}

/// The counter's own running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounterStats {
    /// NEW events seen.
    pub events: u64,
    /// Of those, events whose destination was rewritten (candidates for a Service).
    pub dnat_events: u64,
    /// Events not counted because the table was full.
    pub keys_dropped: u64,
    /// Keys removed because their destination is no Service endpoint of the current index.
    pub keys_pruned: u64,
    /// Receive overruns of the event socket (the kernel dropped events).
    pub overruns: u64,
    /// Keys tracked now.
    pub keys: usize,
    /// The bound on keys.
    pub max_keys: usize,
}

/// Counts NEW connections per (destination, endpoint), bounded.
#[derive(Debug, Clone)]
pub struct ServiceConnCounter {
    counts: HashMap<NewConnection, u64>,
    max_keys: usize,
    stats: ConnCounterStats,
}

impl Default for ServiceConnCounter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_KEYS)
    }
}

/// One series value of the join: a Service endpoint and its new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSample {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// The rules the Service came from (`nftables`: kube-proxy's native table).
    pub backend: &'static str,
    /// The Service port.
    pub service: ServicePort,
    /// `ip:port` (`[ip]:port` for IPv6).
    pub endpoint: String,
    /// New connections counted.
    pub connections: u64,
}

impl ServiceConnCounter {
    /// A counter tracking at most `max_keys` (destination, endpoint) pairs.
    pub fn new(max_keys: usize) -> Self {
        Self {
            counts: HashMap::new(),
            max_keys,
            stats: ConnCounterStats {
                max_keys,
                ..ConnCounterStats::default()
            },
        }
    }

    /// The bound on keys.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Counts one NEW event. Connections without DNAT are no Service's and are not kept.
    pub fn observe(&mut self, connection: NewConnection) {
        self.stats.events += 1;
        if !connection.is_dnat() {
            return;
        }
        self.stats.dnat_events += 1;
        if let Some(n) = self.counts.get_mut(&connection) {
            *n += 1;
        } else if self.counts.len() < self.max_keys {
            self.counts.insert(connection, 1);
        } else {
            self.stats.keys_dropped += 1;
        }
    }

    /// Adds receive overruns reported by the event source.
    pub fn add_overruns(&mut self, n: u64) {
        self.stats.overruns += n;
    }

    /// Running totals.
    pub fn stats(&self) -> ConnCounterStats {
        ConnCounterStats {
            keys: self.counts.len(),
            ..self.stats
        }
    }

    /// The series of `index`'s Services, summed per endpoint, in a stable order; keys that are no
    /// endpoint of a Service in `index` are removed (a Service or endpoint that went away takes
    /// its series with it, as its rule does in iptables mode), so the table holds Service keys.
    pub fn series(&mut self, index: &ServiceIndex) -> Vec<ConnSample> {
        let mut summed: HashMap<(u32, IpAddr, u16), u64> = HashMap::new();
        let before = self.counts.len();
        self.counts.retain(|c, n| match index.service_of(c) {
            Some(s) => {
                *summed.entry((s, c.endpoint, c.endpoint_port)).or_default() += *n;
                true
            }
            None => false,
        });
        self.stats.keys_pruned += (before - self.counts.len()) as u64;
        let mut out: Vec<ConnSample> = summed
            .into_iter()
            .map(|((s, ip, port), connections)| {
                let svc = &index.services[s as usize];
                ConnSample {
                    family: svc.family.as_str(),
                    backend: "nftables",
                    service: svc.service.clone(),
                    endpoint: endpoint_label(ip, port),
                    connections,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (
                a.family,
                &a.service.namespace,
                &a.service.name,
                &a.service.port,
                &a.endpoint,
            )
                .cmp(&(
                    b.family,
                    &b.service.namespace,
                    &b.service.name,
                    &b.service.port,
                    &b.endpoint,
                ))
        });
        out
    }
}

/// `ip:port`, `[ip]:port` for IPv6: the endpoint label of both modes.
pub fn endpoint_label(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// One Service port of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexedService {
    family: Family,
    service: ServicePort,
    /// Endpoints (`endpoint-…` chains of this Service port), as (address, port).
    endpoints: HashSet<(IpAddr, u16)>,
}

/// A kube-proxy no-endpoint map element: a Service port whose connections kube-proxy rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEndpoints {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// The Service port.
    pub service: ServicePort,
    /// The element drops (no node-local endpoints under `externalTrafficPolicy: Local`).
    pub local_only: bool,
}

/// Which destinations are Service ports and which replies are their endpoints, from
/// kube-proxy's native nftables tables (family `ip` and `ip6`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceIndex {
    services: Vec<IndexedService>,
    /// (protocol, address, port) of `service-ips` elements.
    by_dest: HashMap<(u8, IpAddr, u16), u32>,
    /// (family, protocol, port) of `service-nodeports` elements.
    by_node_port: HashMap<(Family, u8, u16), u32>,
    no_endpoints: Vec<NoEndpoints>,
}

impl ServiceIndex {
    /// The index of every kube-proxy table in `ruleset`; empty without one.
    pub fn from_native(ruleset: &NftRuleset) -> Self {
        let mut index = Self::default();
        for table in &ruleset.tables {
            if table_owner(table) == Some(Owner::KubeProxy) {
                index.add_table(table);
            }
        }
        index
    }

    /// Service ports indexed.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// No Service port indexed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Service ports kube-proxy's no-endpoint maps list, in map and element order.
    pub fn no_endpoints(&self) -> &[NoEndpoints] {
        &self.no_endpoints
    }

    fn add_table(&mut self, table: &NftTable) {
        let family = match table.family {
            NftFamily::Ip => Family::Ipv4,
            NftFamily::Ip6 => Family::Ipv6,
            _ => return,
        };
        // Service ports by (service port, protocol) from the chains, with their endpoints.
        let mut ids: HashMap<(ServicePort, String), u32> = HashMap::new();
        let mut id_of = |services: &mut Vec<IndexedService>, sp: &ServicePort, proto: &str| {
            *ids.entry((sp.clone(), proto.to_owned()))
                .or_insert_with(|| {
                    services.push(IndexedService {
                        family,
                        service: sp.clone(),
                        endpoints: HashSet::new(),
                    });
                    (services.len() - 1) as u32
                })
        };
        for chain in &table.chains {
            if let Some(KubeNftChain::Endpoint {
                service,
                protocol,
                endpoint,
            }) = kube_nft_chain(&chain.name)
            {
                let id = id_of(&mut self.services, &service, &protocol);
                if let Some(ep) = parse_endpoint(&endpoint) {
                    self.services[id as usize].endpoints.insert(ep);
                }
            }
        }
        for set in &table.sets {
            let node_ports = match set.name.as_str() {
                "service-ips" => false,
                "service-nodeports" => true,
                _ => continue,
            };
            for e in &set.elements {
                let Some(MapData::Verdict(Verdict::Goto(target) | Verdict::Jump(target))) = &e.data
                else {
                    continue;
                };
                let Some(KubeNftChain::Service {
                    service, protocol, ..
                }) = kube_nft_chain(target)
                else {
                    continue;
                };
                let id = id_of(&mut self.services, &service, &protocol);
                let Value::Concat(parts) = &e.key else {
                    continue;
                };
                match (node_ports, parts.as_slice()) {
                    (false, [Value::Addr(addr), proto, port]) => {
                        if let (Some(p), Some(port)) = (proto_number(proto), port_number(port)) {
                            self.by_dest.insert((p, *addr, port), id);
                        }
                    }
                    (true, [proto, port]) => {
                        if let (Some(p), Some(port)) = (proto_number(proto), port_number(port)) {
                            self.by_node_port.insert((family, p, port), id);
                        }
                    }
                    _ => {}
                }
            }
        }
        for n in no_endpoint_services(table) {
            self.no_endpoints.push(NoEndpoints {
                family: family.as_str(),
                service: n.service,
                local_only: n.local_only,
            });
        }
    }

    /// The Service port `c` went to, when its reply source is one of that port's endpoints.
    fn service_of(&self, c: &NewConnection) -> Option<u32> {
        let family = match c.dst {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        };
        let id = self
            .by_dest
            .get(&(c.proto, c.dst, c.dport))
            .or_else(|| self.by_node_port.get(&(family, c.proto, c.dport)))?;
        self.services[*id as usize]
            .endpoints
            .contains(&(c.endpoint, c.endpoint_port))
            .then_some(*id)
    }
}

fn proto_number(v: &Value) -> Option<u8> {
    match v {
        Value::Int(n) => u8::try_from(*n).ok(),
        Value::Sym(s) => match s.as_str() {
            "tcp" => Some(6),
            "udp" => Some(17),
            "sctp" => Some(132),
            _ => None,
        },
        _ => None,
    }
}

fn port_number(v: &Value) -> Option<u16> {
    match v {
        Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    }
}

/// `10.0.0.1:80` / `[fd00::1]:80` (the meaning's endpoint label) → address and port.
fn parse_endpoint(label: &str) -> Option<(IpAddr, u16)> {
    let addr: std::net::SocketAddr = label.parse().ok()?;
    Some((addr.ip(), addr.port()))
}

/// Writes the counter's own families: `nfscope_kube_conntrack_*`.
pub fn write_conn_counter_stats(out: &mut Exposition<'_>, stats: &ConnCounterStats, up: bool) {
    let families: [(&str, Kind, &str, u64); 7] = [
        (
            "nfscope_kube_conntrack_up",
            Kind::Gauge,
            "1 when the conntrack NEW-event subscription that counts Service connections is open.",
            u64::from(up),
        ),
        (
            "nfscope_kube_conntrack_events_total",
            Kind::Counter,
            "Conntrack NEW events read to count Service connections.",
            stats.events,
        ),
        (
            "nfscope_kube_conntrack_overruns_total",
            Kind::Counter,
            "Receive overruns of the conntrack NEW-event socket (the kernel dropped events; connections went uncounted).",
            stats.overruns,
        ),
        (
            "nfscope_kube_conntrack_keys",
            Kind::Gauge,
            "Destination/endpoint pairs the Service connection counter tracks.",
            stats.keys as u64,
        ),
        (
            "nfscope_kube_conntrack_keys_limit",
            Kind::Gauge,
            "The bound on destination/endpoint pairs the Service connection counter tracks.",
            stats.max_keys as u64,
        ),
        (
            "nfscope_kube_conntrack_keys_dropped_total",
            Kind::Counter,
            "New DNATed connections not counted because the Service connection counter was full.",
            stats.keys_dropped,
        ),
        (
            "nfscope_kube_conntrack_keys_pruned_total",
            Kind::Counter,
            "Destination/endpoint pairs removed because they were no endpoint of a Service kube-proxy's nftables table lists.",
            stats.keys_pruned,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        out.sample(name, &[], value);
        out.end_family();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfscope_ruleset::NftLimits;
    use nfscope_ruleset::nft::parse_nft_text;

    const TABLE: &str = "table ip kube-proxy {
 map service-ips {
  type ipv4_addr . inet_proto . inet_service : verdict
  elements = { 10.96.0.10 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80,
               10.96.0.11 . udp . 53 : goto service-AAAAAAAA-ns1/dns/udp/ }
 }
 map service-nodeports {
  type inet_proto . inet_service : verdict
  elements = { tcp . 30080 : goto external-ULMVA6XW-ns1/svc1/tcp/p80 }
 }
 map no-endpoint-services {
  type ipv4_addr . inet_proto . inet_service : verdict
  elements = { 10.96.0.12 . tcp . 80 comment \"ns2/svc2:p80\" : goto reject-chain }
 }
 chain reject-chain {
  reject
 }
 chain external-ULMVA6XW-ns1/svc1/tcp/p80 {
  goto service-ULMVA6XW-ns1/svc1/tcp/p80
 }
 chain service-ULMVA6XW-ns1/svc1/tcp/p80 {
  numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.0.2.7/8080, 1 : goto endpoint-ZZZZZZZZ-ns1/svc1/tcp/p80__10.0.2.8/8080 }
 }
 chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.0.2.7/8080 {
  meta l4proto tcp dnat to 10.0.2.7:8080
 }
 chain endpoint-ZZZZZZZZ-ns1/svc1/tcp/p80__10.0.2.8/8080 {
  meta l4proto tcp dnat to 10.0.2.8:8080
 }
 chain service-AAAAAAAA-ns1/dns/udp/ {
  goto endpoint-BBBBBBBB-ns1/dns/udp/__10.0.2.9/53
 }
 chain endpoint-BBBBBBBB-ns1/dns/udp/__10.0.2.9/53 {
  meta l4proto udp dnat to 10.0.2.9:53
 }
}
";

    fn conn(proto: u8, dst: &str, dport: u16, ep: &str, eport: u16) -> NewConnection {
        NewConnection {
            proto,
            dst: dst.parse().unwrap(),
            dport,
            endpoint: ep.parse().unwrap(),
            endpoint_port: eport,
        }
    }

    fn index() -> ServiceIndex {
        let ruleset = parse_nft_text(TABLE, &NftLimits::default()).expect("parses");
        ServiceIndex::from_native(&ruleset)
    }

    #[test]
    fn connections_to_service_ips_and_node_ports_count_per_endpoint() {
        let index = index();
        assert_eq!(index.len(), 2);
        let mut counter = ServiceConnCounter::new(100);
        for _ in 0..3 {
            counter.observe(conn(6, "10.96.0.10", 80, "10.0.2.7", 8080));
        }
        counter.observe(conn(6, "10.96.0.10", 80, "10.0.2.8", 8080));
        counter.observe(conn(6, "192.0.2.1", 30080, "10.0.2.8", 8080)); // node port
        counter.observe(conn(17, "10.96.0.11", 53, "10.0.2.9", 53));
        // Not a Service's: no DNAT, a reply from no endpoint, a wrong protocol.
        counter.observe(conn(6, "10.0.2.7", 8080, "10.0.2.7", 8080));
        counter.observe(conn(6, "10.96.0.10", 80, "10.0.2.99", 8080));
        counter.observe(conn(17, "10.96.0.10", 80, "10.0.2.7", 8080));
        let series = counter.series(&index);
        let got: Vec<(&str, &str, &str, u64)> = series
            .iter()
            .map(|s| {
                (
                    s.service.name.as_str(),
                    s.service.port.as_str(),
                    s.endpoint.as_str(),
                    s.connections,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("dns", "", "10.0.2.9:53", 1),
                ("svc1", "p80", "10.0.2.7:8080", 3),
                ("svc1", "p80", "10.0.2.8:8080", 2),
            ]
        );
        assert!(
            series
                .iter()
                .all(|s| s.family == "ipv4" && s.backend == "nftables")
        );
        let stats = counter.stats();
        assert_eq!((stats.events, stats.dnat_events), (9, 8));
        assert_eq!(
            (stats.keys, stats.keys_pruned),
            (4, 2),
            "the two strays are pruned"
        );
        // Counts are kept across joins.
        counter.observe(conn(6, "10.96.0.10", 80, "10.0.2.7", 8080));
        assert_eq!(counter.series(&index)[1].connections, 4);
    }

    #[test]
    fn the_table_is_bounded_and_overflow_is_counted() {
        let mut counter = ServiceConnCounter::new(2);
        counter.observe(conn(6, "10.96.0.10", 80, "10.0.2.7", 8080));
        counter.observe(conn(6, "10.96.0.10", 80, "10.0.2.8", 8080));
        counter.observe(conn(17, "10.96.0.11", 53, "10.0.2.9", 53));
        counter.observe(conn(6, "10.96.0.10", 80, "10.0.2.7", 8080)); // known key: counted
        let stats = counter.stats();
        assert_eq!((stats.keys, stats.keys_dropped, stats.max_keys), (2, 1, 2));
        assert_eq!(counter.series(&index()).len(), 2);
    }

    #[test]
    fn no_endpoint_elements_and_an_empty_ruleset() {
        let index = index();
        assert_eq!(
            index.no_endpoints(),
            [NoEndpoints {
                family: "ipv4",
                service: ServicePort::parse("ns2/svc2:p80").unwrap(),
                local_only: false,
            }]
        );
        let empty = ServiceIndex::from_native(&NftRuleset::default());
        assert!(empty.is_empty());
        let mut counter = ServiceConnCounter::default();
        counter.observe(conn(6, "10.96.0.10", 80, "10.0.2.7", 8080));
        assert!(counter.series(&empty).is_empty());
        assert_eq!(counter.stats().keys, 0);
    }
}
