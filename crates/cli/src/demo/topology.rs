//! The lab described as data: which pods, services, clients, policies and traffic loops exist.
//!
//! Owns the description only (addresses, names, who talks to whom). It does not create anything
//! (`lab`) nor render rules (`rules`). Later features (trace targets, lint findings, flows) extend
//! the lab by adding entries here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

/// Kubernetes namespace every demo object lives in.
pub const K8S_NAMESPACE: &str = "demo";
/// Common start of every network namespace name the demo creates (`nfsd-<pid>-…`).
pub const NETNS_PREFIX: &str = "nfsd-";

/// The whole lab: one node routing between pods and LAN clients.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Network namespace name prefix for this run, `nfsd-<pid>-`.
    pub netns_prefix: String,
    pub node: Node,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub clients: Vec<Client>,
    /// kube-router style NetworkPolicies (ingress only).
    pub network_policies: Vec<NetworkPolicy>,
    /// Pods whose veth gets a Calico-style `cali-tw-`/`cali-fw-` chain pair.
    pub calico_workloads: Vec<CalicoWorkload>,
    /// Background connection loops that make counters move.
    pub traffic: Vec<TrafficLoop>,
    /// Packets worth tracing, printed as ready-to-run `nfscope trace` commands.
    pub trace_examples: Vec<TraceExample>,
}

/// Addresses of the node namespace.
#[derive(Debug, Clone)]
pub struct Node {
    /// Gateway address on every pod-facing veth (point-to-point, Calico style).
    pub pod_gateway_v4: Ipv4Addr,
    /// Link-local IPv6 gateway on every pod-facing veth.
    pub pod_gateway_v6: Ipv6Addr,
    pub pod_cidr_v4: &'static str,
    pub pod_cidr_v6: &'static str,
    pub service_cidr_v4: &'static str,
    pub service_cidr_v6: &'static str,
    /// Node address on the LAN bridge, and the LAN prefix length.
    pub lan_gateway_v4: Ipv4Addr,
    pub lan_gateway_v6: Ipv6Addr,
    pub lan_prefix_v4: u8,
    pub lan_prefix_v6: u8,
    /// Name of the LAN bridge inside the node namespace.
    pub lan_bridge: &'static str,
}

/// A pod: its own network namespace with a server on `port`.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    /// The `app` label services and policies select on.
    pub app: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub port: u16,
}

/// A service port (kube-proxy iptables mode); endpoints are the pods with `app == selector`.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub port_name: String,
    pub port: u16,
    pub selector: String,
    pub cluster_ip: Ipv4Addr,
    /// Dual-stack services also get an IPv6 ClusterIP (served by ip6tables).
    pub cluster_ip_v6: Option<Ipv6Addr>,
}

/// A machine on the LAN behind the node.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    /// What the client is meant to show (printed in the summary).
    pub role: String,
}

/// An ingress NetworkPolicy: pods with `app == target` accept `port` only from pods with
/// `app == from`; everything else to them is rejected by kube-router.
#[derive(Debug, Clone)]
pub struct NetworkPolicy {
    pub name: String,
    pub target: String,
    pub from: String,
    pub port: u16,
}

/// A pod guarded by Calico-style workload chains: ingress to `port` only from `allowed_sources`;
/// `denied_sources` hit the policy's explicit Deny rule (felix renders it as a DROP in the policy
/// chain), anything else the endpoint chain's "Drop if no policies passed packet".
#[derive(Debug, Clone)]
pub struct CalicoWorkload {
    pub pod: String,
    pub policy_name: String,
    pub port: u16,
    pub allowed_sources: Vec<String>,
    pub denied_sources: Vec<String>,
}

/// Where a traffic loop runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Client(String),
    Pod(String),
}

/// One background loop: connect to each target every `interval_ms`.
#[derive(Debug, Clone)]
pub struct TrafficLoop {
    pub origin: Origin,
    pub targets: Vec<Target>,
    pub interval_ms: u64,
    /// End each connection with a RST (`SO_LINGER` 0) instead of a FIN, like a client that
    /// gives up abruptly: the flow monitor's resets.
    pub reset_on_close: bool,
}

/// A new TCP connection from `origin` to `target`, and what should happen to it.
#[derive(Debug, Clone)]
pub struct TraceExample {
    pub origin: Origin,
    pub target: Target,
    pub expect: String,
}

/// A service and address family to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub ipv6: bool,
}

impl Topology {
    /// The standard lab for a demo process with this pid.
    pub fn standard(pid: u32) -> Self {
        Self {
            netns_prefix: format!("{NETNS_PREFIX}{pid}-"),
            node: standard_node(),
            pods: standard_pods(),
            services: standard_services(),
            clients: standard_clients(),
            network_policies: vec![NetworkPolicy {
                name: "db-allow-web".into(),
                target: "db".into(),
                from: "web".into(),
                port: 5432,
            }],
            calico_workloads: vec![CalicoWorkload {
                pod: "api-1".into(),
                policy_name: "demo.api-allow-lan-and-web".into(),
                port: 9090,
                allowed_sources: vec!["192.168.50.10/32".into(), "10.244.1.0/28".into()],
                denied_sources: vec!["192.168.50.66/32".into()],
            }],
            traffic: standard_traffic(),
            trace_examples: standard_trace_examples(),
        }
    }

    pub fn node_netns(&self) -> String {
        format!("{}node", self.netns_prefix)
    }

    pub fn pod_netns(&self, pod: &Pod) -> String {
        format!("{}pod-{}", self.netns_prefix, pod.name)
    }

    pub fn client_netns(&self, client: &Client) -> String {
        format!("{}client-{}", self.netns_prefix, client.name)
    }

    pub fn origin_netns(&self, origin: &Origin) -> Option<String> {
        match origin {
            Origin::Client(name) => self.client(name).map(|c| self.client_netns(c)),
            Origin::Pod(name) => self.pod(name).map(|p| self.pod_netns(p)),
        }
    }

    /// Every namespace of the lab, node first.
    pub fn all_netns(&self) -> Vec<String> {
        let mut names = vec![self.node_netns()];
        names.extend(self.pods.iter().map(|p| self.pod_netns(p)));
        names.extend(self.clients.iter().map(|c| self.client_netns(c)));
        names
    }

    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name == name)
    }

    pub fn client(&self, name: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The pods a service (or policy) selects, in declaration order.
    pub fn pods_with_app<'a>(&'a self, app: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods.iter().filter(move |p| p.app == app)
    }

    /// Source address of an origin in the given family.
    pub fn origin_address(&self, origin: &Origin, ipv6: bool) -> Option<IpAddr> {
        let (v4, v6) = match origin {
            Origin::Client(name) => self.client(name).map(|c| (c.ipv4, c.ipv6))?,
            Origin::Pod(name) => self.pod(name).map(|p| (p.ipv4, p.ipv6))?,
        };
        if ipv6 {
            v6.map(IpAddr::from)
        } else {
            Some(v4.into())
        }
    }

    /// The node-side interface an origin's packets arrive on.
    pub fn origin_interface(&self, origin: &Origin) -> Option<String> {
        match origin {
            Origin::Client(name) => self.client(name).map(|_| self.node.lan_bridge.to_owned()),
            Origin::Pod(name) => self.pod(name).map(Pod::host_veth),
        }
    }

    /// `ip:port` (IPv6 as `[ip]:port`) a traffic target connects to, if the service has that family.
    pub fn target_address(&self, target: &Target) -> Option<String> {
        let service = self.service(&target.service)?;
        let ip: IpAddr = if target.ipv6 {
            service.cluster_ip_v6?.into()
        } else {
            service.cluster_ip.into()
        };
        Some(std::net::SocketAddr::new(ip, service.port).to_string())
    }
}

impl Topology {
    /// What the flow monitor calls the lab's addresses: pods by workload (`demo/web` for every
    /// `web-N`), Service ClusterIPs as `demo/<service>-svc`, LAN machines as `<client>-client`.
    /// The node's own addresses are named by the monitor itself.
    pub fn flow_names(&self) -> nfscope_flow::Names {
        use nfscope_flow::{Name, Names};
        let mut names = Names::default();
        let mut add = |ip: IpAddr, name: Name| {
            let full = if ip.is_ipv4() { 32 } else { 128 };
            names.insert(ip, full, name);
        };
        let in_demo = |name: String| Name {
            namespace: Some(K8S_NAMESPACE.to_owned()),
            name,
        };
        for pod in &self.pods {
            add(pod.ipv4.into(), in_demo(pod.app.clone()));
            if let Some(v6) = pod.ipv6 {
                add(v6.into(), in_demo(pod.app.clone()));
            }
        }
        for service in &self.services {
            add(
                service.cluster_ip.into(),
                in_demo(format!("{}-svc", service.name)),
            );
            if let Some(v6) = service.cluster_ip_v6 {
                add(v6.into(), in_demo(format!("{}-svc", service.name)));
            }
        }
        for client in &self.clients {
            let name = Name::parse(&format!("{}-client", client.name));
            add(client.ipv4.into(), name.clone());
            if let Some(v6) = client.ipv6 {
                add(v6.into(), name);
            }
        }
        names
    }
}

impl Pod {
    /// Node-side veth name, Calico style: `cali` + 11 hex characters derived from `ns.pod`.
    pub fn host_veth(&self) -> String {
        let digest = Sha256::digest(format!("{K8S_NAMESPACE}.{}", self.name).as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("cali{}", &hex[..11])
    }
}

impl Service {
    /// kube-proxy's `ServicePortName` string, `namespace/name:port`.
    pub fn port_name_string(&self) -> String {
        format!("{K8S_NAMESPACE}/{}:{}", self.name, self.port_name)
    }
}

fn standard_node() -> Node {
    Node {
        pod_gateway_v4: Ipv4Addr::new(10, 244, 1, 1),
        pod_gateway_v6: "fe80::1".parse().expect("literal IPv6 address"),
        pod_cidr_v4: "10.244.0.0/16",
        pod_cidr_v6: "fd00:10:244::/56",
        service_cidr_v4: "10.96.0.0/16",
        service_cidr_v6: "fd00:10:96::/112",
        lan_gateway_v4: Ipv4Addr::new(192, 168, 50, 1),
        lan_gateway_v6: "fd00:192:168:50::1".parse().expect("literal IPv6 address"),
        lan_prefix_v4: 24,
        lan_prefix_v6: 64,
        lan_bridge: "br-lan",
    }
}

fn pod(name: &str, app: &str, last_octet: u8, port: u16, dual_stack: bool) -> Pod {
    Pod {
        name: name.into(),
        app: app.into(),
        ipv4: Ipv4Addr::new(10, 244, 1, last_octet),
        ipv6: dual_stack
            .then(|| Ipv6Addr::new(0xfd00, 0x10, 0x244, 0x1, 0, 0, 0, u16::from(last_octet))),
        port,
    }
}

fn standard_pods() -> Vec<Pod> {
    vec![
        pod("web-1", "web", 11, 8080, true),
        pod("web-2", "web", 12, 8080, true),
        pod("web-3", "web", 13, 8080, true),
        pod("api-1", "api", 21, 9090, false),
        pod("api-2", "api", 22, 9090, false),
        pod("db-0", "db", 31, 5432, false),
    ]
}

fn service(name: &str, port_name: &str, port: u16, selector: &str, last_octet: u8) -> Service {
    Service {
        name: name.into(),
        port_name: port_name.into(),
        port,
        selector: selector.into(),
        cluster_ip: Ipv4Addr::new(10, 96, 0, last_octet),
        cluster_ip_v6: None,
    }
}

fn standard_services() -> Vec<Service> {
    let mut web = service("web", "http", 80, "web", 10);
    web.cluster_ip_v6 = Some(Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x10));
    vec![
        web,
        service("api", "grpc", 9090, "api", 20),
        service("db", "pg", 5432, "db", 30),
        // Selects no pod: kube-proxy installs the "has no endpoints" REJECT.
        service("legacy", "http", 80, "legacy", 40),
    ]
}

fn standard_clients() -> Vec<Client> {
    vec![
        Client {
            name: "lan".into(),
            ipv4: Ipv4Addr::new(192, 168, 50, 10),
            ipv6: Some("fd00:192:168:50::10".parse().expect("literal IPv6 address")),
            role: "allowed LAN client (web, api, IPv6 web; also hits the endpoint-less legacy service)".into(),
        },
        Client {
            name: "rogue".into(),
            ipv4: Ipv4Addr::new(192, 168, 50, 66),
            ipv6: None,
            role: "client the policies reject (db via kube-router, api-1 via Calico)".into(),
        },
    ]
}

fn target(service: &str, ipv6: bool) -> Target {
    Target {
        service: service.into(),
        ipv6,
    }
}

fn standard_traffic() -> Vec<TrafficLoop> {
    vec![
        TrafficLoop {
            origin: Origin::Client("lan".into()),
            targets: vec![
                target("web", false),
                target("web", true),
                target("api", false),
                target("legacy", false),
            ],
            interval_ms: 500,
            reset_on_close: false,
        },
        TrafficLoop {
            origin: Origin::Client("rogue".into()),
            targets: vec![
                target("db", false),
                target("api", false),
                target("web", false),
            ],
            interval_ms: 500,
            reset_on_close: false,
        },
        TrafficLoop {
            origin: Origin::Pod("web-1".into()),
            targets: vec![target("db", false), target("api", false)],
            interval_ms: 1000,
            reset_on_close: false,
        },
        TrafficLoop {
            origin: Origin::Pod("api-2".into()),
            targets: vec![target("web", false)],
            interval_ms: 1000,
            reset_on_close: true,
        },
    ]
}

fn trace(origin: Origin, service: &str, expect: &str) -> TraceExample {
    TraceExample {
        origin,
        target: target(service, false),
        expect: expect.into(),
    }
}

fn standard_trace_examples() -> Vec<TraceExample> {
    let lan = || Origin::Client("lan".into());
    let rogue = || Origin::Client("rogue".into());
    vec![
        trace(lan(), "web", "DNAT to one of three web pods"),
        trace(
            rogue(),
            "db",
            "REJECTed by kube-router's pod firewall of db-0",
        ),
        trace(
            Origin::Pod("web-1".into()),
            "db",
            "allowed by NetworkPolicy db-allow-web",
        ),
        trace(lan(), "legacy", "REJECTed: the service has no endpoints"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_kernel_limits() {
        let topo = Topology::standard(4_194_304);
        let mut names = topo.all_netns();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate netns names");
        let mut veths: Vec<String> = topo.pods.iter().map(Pod::host_veth).collect();
        assert!(veths.iter().all(|v| v.len() <= 15), "{veths:?}");
        veths.sort();
        veths.dedup();
        assert_eq!(veths.len(), topo.pods.len());
    }

    #[test]
    fn every_reference_resolves() {
        let topo = Topology::standard(1);
        for lp in &topo.traffic {
            assert!(topo.origin_netns(&lp.origin).is_some(), "{:?}", lp.origin);
            for t in &lp.targets {
                assert!(topo.target_address(t).is_some(), "{t:?}");
            }
        }
        for ex in &topo.trace_examples {
            assert!(
                topo.origin_address(&ex.origin, ex.target.ipv6).is_some(),
                "{ex:?}"
            );
            assert!(topo.origin_interface(&ex.origin).is_some(), "{ex:?}");
            assert!(topo.target_address(&ex.target).is_some(), "{ex:?}");
        }
        for w in &topo.calico_workloads {
            assert!(topo.pod(&w.pod).is_some());
        }
        assert_eq!(topo.pods_with_app("web").count(), 3);
        assert_eq!(topo.pods_with_app("legacy").count(), 0);
    }

    #[test]
    fn flow_names_group_pods_by_workload() {
        let topo = Topology::standard(1);
        let names = topo.flow_names();
        let name = |ip: &str| names.lookup(ip.parse().unwrap()).map(|n| n.display());
        assert_eq!(name("10.244.1.12").as_deref(), Some("demo/web"), "web-2");
        assert_eq!(
            name("fd00:10:244:1::d").as_deref(),
            Some("demo/web"),
            "web-3 v6"
        );
        assert_eq!(name("10.244.1.31").as_deref(), Some("demo/db"));
        assert_eq!(name("10.96.0.20").as_deref(), Some("demo/api-svc"));
        assert_eq!(name("192.168.50.10").as_deref(), Some("lan-client"));
        assert_eq!(name("fd00:192:168:50::10").as_deref(), Some("lan-client"));
        assert_eq!(name("192.168.50.66").as_deref(), Some("rogue-client"));
        assert_eq!(name("10.244.1.99"), None, "no pod there");
        let workloads: std::collections::BTreeSet<String> = topo
            .pods
            .iter()
            .filter_map(|p| names.lookup(p.ipv4.into()).map(|n| n.display()))
            .collect();
        assert_eq!(
            workloads.len(),
            3,
            "six pods, three workloads: {workloads:?}"
        );
    }

    #[test]
    fn ipv6_target_address_is_bracketed() {
        let topo = Topology::standard(1);
        assert_eq!(
            topo.target_address(&target("web", true)).as_deref(),
            Some("[fd00:10:96::10]:80")
        );
        assert_eq!(topo.target_address(&target("api", true)), None);
    }
}
