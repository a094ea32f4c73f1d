//! The lab's "cluster" as Kubernetes watch events: the pods, Services, EndpointSlices and node of
//! the [`Topology`], synthesized as the [`Change`]s the watcher would decode from an API server.
//!
//! `nfscope demo` has no API server, so it feeds these into the same IP directory `serve --kube`
//! fills from real watches; `/metrics` then carries the `nfscope_kube_directory_*` and
//! `nfscope_kube_endpoint_info` series exactly as on a cluster. Pure: it only builds the events.
//! It does not own the directory or its metrics (`nfscope-kube`), nor serving them (the server
//! is handed the directory).

use std::net::IpAddr;

use nfscope_kube::directory::{
    NodeInfo, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo,
};
use nfscope_kube::{Change, Object, Resource, Workload, WorkloadKind};

use super::topology::{K8S_NAMESPACE, Pod, Service, Topology};

/// The node every lab pod runs on.
pub const NODE_NAME: &str = "nfscope-demo-node";

/// One complete list of every resource, each framed by `Resync` … `Synced` like a watcher's
/// initial list.
pub fn initial_list(topo: &Topology) -> Vec<Change> {
    let pods = topo.pods.iter().map(|p| Object::Pod(pod_info(topo, p)));
    let services = topo
        .services
        .iter()
        .map(|s| Object::Service(service_info(s)));
    let slices = topo
        .services
        .iter()
        .flat_map(|s| slices(topo, s))
        .map(Object::Slice);
    let node = Object::Node(NodeInfo {
        name: NODE_NAME.to_owned(),
        ips: vec![
            topo.node.lan_gateway_v4.into(),
            topo.node.lan_gateway_v6.into(),
        ],
    });
    let mut changes = Vec::new();
    listed(&mut changes, Resource::Pods, pods);
    listed(&mut changes, Resource::Services, services);
    listed(&mut changes, Resource::EndpointSlices, slices);
    listed(&mut changes, Resource::Nodes, [node]);
    changes
}

fn listed(out: &mut Vec<Change>, resource: Resource, objects: impl IntoIterator<Item = Object>) {
    out.push(Change::Resync(resource));
    out.extend(objects.into_iter().map(Change::Upsert));
    out.push(Change::Synced(resource));
}

fn pod_info(topo: &Topology, pod: &Pod) -> PodInfo {
    PodInfo {
        namespace: K8S_NAMESPACE.to_owned(),
        name: pod.name.clone(),
        ips: pod_ips(pod),
        node: Some(NODE_NAME.to_owned()),
        host_network: false,
        workload: Some(Workload {
            kind: workload_kind(topo, &pod.app),
            name: pod.app.clone(),
        }),
        finished: false,
    }
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    std::iter::once(IpAddr::from(pod.ipv4))
        .chain(pod.ipv6.map(IpAddr::from))
        .collect()
}

/// A StatefulSet when the app has an ordinal-0 pod (`db-0`), else a Deployment.
fn workload_kind(topo: &Topology, app: &str) -> WorkloadKind {
    let ordinal_zero = format!("{app}-0");
    if topo.pods_with_app(app).any(|p| p.name == ordinal_zero) {
        WorkloadKind::StatefulSet
    } else {
        WorkloadKind::Deployment
    }
}

fn service_info(service: &Service) -> ServiceInfo {
    ServiceInfo {
        namespace: K8S_NAMESPACE.to_owned(),
        name: service.name.clone(),
        cluster_ips: std::iter::once(IpAddr::from(service.cluster_ip))
            .chain(service.cluster_ip_v6.map(IpAddr::from))
            .collect(),
        ports: vec![ServicePort {
            name: service.port_name.clone(),
            port: service.port,
            protocol: "TCP".to_owned(),
        }],
    }
}

/// One slice per address family of the Service, as the EndpointSlice controller writes them (an
/// IPv4 slice even when no pod is selected).
fn slices(topo: &Topology, service: &Service) -> Vec<SliceInfo> {
    let slice = |family: &str, endpoints: Vec<SliceEndpoint>| SliceInfo {
        namespace: K8S_NAMESPACE.to_owned(),
        name: format!("{}-{family}", service.name),
        service: Some(service.name.clone()),
        endpoints,
    };
    let endpoint = |ip: IpAddr, pod: &Pod| SliceEndpoint {
        ip,
        pod: Some(pod.name.clone()),
    };
    let selected = || topo.pods_with_app(&service.selector);
    let mut out = vec![slice(
        "ipv4",
        selected().map(|p| endpoint(p.ipv4.into(), p)).collect(),
    )];
    if service.cluster_ip_v6.is_some() {
        let v6 = selected()
            .filter_map(|p| Some(endpoint(p.ipv6?.into(), p)))
            .collect();
        out.push(slice("ipv6", v6));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nfscope_kube::{DirectoryConfig, IpDirectory, NamedKind};

    use super::*;

    fn directory() -> IpDirectory {
        let mut directory = IpDirectory::new(DirectoryConfig::default());
        for change in initial_list(&Topology::standard(1)) {
            directory.apply(change, Duration::ZERO);
        }
        directory
    }

    #[test]
    fn pods_are_named_with_their_workload() {
        let directory = directory();
        let web2 = directory.lookup("10.244.1.12".parse().unwrap()).unwrap();
        assert_eq!(web2.kind, NamedKind::Pod);
        assert_eq!(web2.name, "web-2");
        assert_eq!(web2.namespace.as_deref(), Some(K8S_NAMESPACE));
        assert_eq!(
            web2.workload,
            Some(Workload {
                kind: WorkloadKind::Deployment,
                name: "web".into()
            })
        );
        let web3_v6 = directory
            .lookup("fd00:10:244:1::d".parse().unwrap())
            .unwrap();
        assert_eq!(web3_v6.name, "web-3");
        let db = directory.lookup("10.244.1.31".parse().unwrap()).unwrap();
        assert_eq!(db.workload.map(|w| w.kind), Some(WorkloadKind::StatefulSet));
        assert_eq!(directory.lookup("10.244.1.99".parse().unwrap()), None);
    }

    #[test]
    fn services_slices_and_the_node_are_known() {
        let directory = directory();
        let api = directory
            .service("10.96.0.20".parse().unwrap(), 9090)
            .unwrap();
        assert_eq!(
            (api.name.as_str(), api.port_name.as_deref()),
            ("api", Some("grpc"))
        );
        let web_v6 = directory
            .service("fd00:10:96::10".parse().unwrap(), 80)
            .unwrap();
        assert_eq!(web_v6.name, "web");
        assert_eq!(
            directory.endpoint_service("10.244.1.31".parse().unwrap()),
            Some((K8S_NAMESPACE.to_owned(), "db".to_owned()))
        );
        let node = directory.lookup("192.168.50.1".parse().unwrap()).unwrap();
        assert_eq!(
            (node.kind, node.name.as_str()),
            (NamedKind::Node, NODE_NAME)
        );
        let stats = directory.stats();
        let topo = Topology::standard(1);
        assert_eq!(stats.pods, topo.pods.len());
        assert_eq!(stats.services, topo.services.len());
        // Pods, Services, one slice per family (web is dual-stack) and the node.
        assert_eq!(
            stats.entries,
            topo.pods.len() + 2 * topo.services.len() + 1 + 1
        );
        assert_eq!(stats.resyncs_total, 4, "one list per resource");
    }
}
