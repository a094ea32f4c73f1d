//! The pure directory: event → state, IP reuse, resync after a relist, grace expiry, entry cap.

use std::net::IpAddr;
use std::time::Duration;

use nfscope_kube::directory::{
    NodeInfo, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo,
};
use nfscope_kube::{
    Change, DirectoryConfig, IpDirectory, NamedKind, Object, Resource, Workload, WorkloadKind,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn pod(ns: &str, name: &str, addr: &str) -> Object {
    Object::Pod(PodInfo {
        namespace: ns.into(),
        name: name.into(),
        ips: vec![ip(addr)],
        node: Some("node-a".into()),
        host_network: false,
        workload: Some(Workload {
            kind: WorkloadKind::Deployment,
            name: name.split('-').next().unwrap().into(),
        }),
        finished: false,
    })
}

fn directory(max_entries: usize) -> IpDirectory {
    IpDirectory::new(DirectoryConfig {
        max_entries,
        grace: secs(60),
    })
}

#[test]
fn pods_services_nodes_and_endpoints_are_named() {
    let mut d = directory(100);
    d.apply(Change::Upsert(pod("shop", "web-1", "10.244.1.5")), secs(0));
    d.apply(
        Change::Upsert(Object::Service(ServiceInfo {
            namespace: "shop".into(),
            name: "web".into(),
            cluster_ips: vec![ip("10.96.0.20"), ip("fd00:10:96::20")],
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                protocol: "TCP".into(),
            }],
        })),
        secs(0),
    );
    d.apply(
        Change::Upsert(Object::Node(NodeInfo {
            name: "node-a".into(),
            ips: vec![ip("192.168.1.10")],
        })),
        secs(0),
    );
    d.apply(
        Change::Upsert(Object::Slice(SliceInfo {
            namespace: "shop".into(),
            name: "web-abcde".into(),
            service: Some("web".into()),
            endpoints: vec![SliceEndpoint {
                ip: ip("10.244.2.9"),
                pod: Some("web-2".into()),
            }],
        })),
        secs(0),
    );

    let p = d.lookup(ip("10.244.1.5")).expect("pod");
    assert_eq!((p.kind, p.name.as_str()), (NamedKind::Pod, "web-1"));
    assert_eq!(p.workload_or_name(), "web");
    assert_eq!(
        d.lookup(ip("fd00:10:96::20")).unwrap().kind,
        NamedKind::Service
    );
    assert_eq!(d.lookup(ip("192.168.1.10")).unwrap().name, "node-a");
    // A pod known only through its EndpointSlice.
    let e = d.lookup(ip("10.244.2.9")).expect("endpoint pod");
    assert_eq!((e.kind, e.name.as_str()), (NamedKind::Pod, "web-2"));
    assert_eq!(
        d.endpoint_service(ip("10.244.2.9")),
        Some(("shop".into(), "web".into()))
    );
    let hit = d.service(ip("10.96.0.20"), 80).expect("service");
    assert_eq!(
        (hit.name.as_str(), hit.port_name.as_deref()),
        ("web", Some("http"))
    );
    assert_eq!(d.service(ip("10.96.0.20"), 81).unwrap().port_name, None);
    assert_eq!(d.lookup(ip("10.0.0.1")), None);
    assert_eq!(d.stats().entries, 4);
}

#[test]
fn deleted_pods_stay_named_for_the_grace_period_then_expire() {
    let mut d = directory(100);
    d.apply(Change::Upsert(pod("shop", "web-1", "10.244.1.5")), secs(0));
    d.apply(Change::Delete(pod("shop", "web-1", "10.244.1.5")), secs(10));
    d.expire(secs(69));
    assert_eq!(d.lookup(ip("10.244.1.5")).unwrap().name, "web-1");
    d.expire(secs(70));
    assert_eq!(d.lookup(ip("10.244.1.5")), None);
    assert_eq!(d.stats().entries, 0);
}

#[test]
fn a_reused_ip_names_the_new_pod_even_after_the_old_one_expires() {
    let mut d = directory(100);
    d.apply(Change::Upsert(pod("shop", "web-1", "10.244.1.5")), secs(0));
    d.apply(Change::Delete(pod("shop", "web-1", "10.244.1.5")), secs(1));
    d.apply(Change::Upsert(pod("shop", "api-7", "10.244.1.5")), secs(2));
    assert_eq!(d.lookup(ip("10.244.1.5")).unwrap().name, "api-7");
    d.expire(secs(120));
    assert_eq!(d.lookup(ip("10.244.1.5")).unwrap().name, "api-7");
}

#[test]
fn a_relist_drops_objects_it_no_longer_contains() {
    let mut d = directory(100);
    d.apply(Change::Resync(Resource::Pods), secs(0));
    d.apply(Change::Upsert(pod("shop", "web-1", "10.244.1.5")), secs(0));
    d.apply(Change::Upsert(pod("shop", "web-2", "10.244.1.6")), secs(0));
    d.apply(Change::Synced(Resource::Pods), secs(0));
    // The watch broke (410 Gone); web-1 was deleted meanwhile; the relist has only web-2.
    d.apply(Change::Resync(Resource::Pods), secs(100));
    d.apply(
        Change::Upsert(pod("shop", "web-2", "10.244.1.6")),
        secs(100),
    );
    d.apply(Change::Synced(Resource::Pods), secs(100));
    d.expire(secs(161));
    assert_eq!(d.lookup(ip("10.244.1.5")), None, "web-1 should be gone");
    assert_eq!(d.lookup(ip("10.244.1.6")).unwrap().name, "web-2");
    assert_eq!(d.stats().resyncs_total, 2);
}

#[test]
fn a_relist_of_one_resource_leaves_the_others_alone() {
    let mut d = directory(100);
    d.apply(
        Change::Upsert(Object::Node(NodeInfo {
            name: "node-a".into(),
            ips: vec![ip("192.168.1.10")],
        })),
        secs(0),
    );
    d.apply(Change::Resync(Resource::Pods), secs(1));
    d.apply(Change::Synced(Resource::Pods), secs(1));
    d.expire(secs(1000));
    assert_eq!(d.lookup(ip("192.168.1.10")).unwrap().name, "node-a");
}

#[test]
fn the_entry_cap_evicts_the_least_recently_updated_and_counts_it() {
    let mut d = directory(3);
    for i in 0..3 {
        d.apply(
            Change::Upsert(pod("ns", &format!("p-{i}"), &format!("10.0.0.{i}"))),
            secs(i),
        );
    }
    // Touch p-0 so p-1 is the oldest.
    d.apply(Change::Upsert(pod("ns", "p-0", "10.0.0.0")), secs(5));
    d.apply(Change::Upsert(pod("ns", "p-9", "10.0.0.9")), secs(6));
    assert_eq!(d.stats().entries, 3);
    assert_eq!(d.stats().evictions_total, 1);
    assert_eq!(d.lookup(ip("10.0.0.1")), None, "p-1 evicted");
    for kept in ["10.0.0.0", "10.0.0.2", "10.0.0.9"] {
        assert!(d.lookup(ip(kept)).is_some(), "{kept} kept");
    }
    // Many updates of one pod never evict anything nor grow without bound.
    for t in 0..10_000 {
        d.apply(Change::Upsert(pod("ns", "p-9", "10.0.0.9")), secs(10 + t));
    }
    assert_eq!(d.stats().evictions_total, 1);
}

#[test]
fn host_network_and_finished_pods_do_not_claim_ips() {
    let mut d = directory(100);
    d.apply(
        Change::Upsert(Object::Node(NodeInfo {
            name: "node-a".into(),
            ips: vec![ip("192.168.1.10")],
        })),
        secs(0),
    );
    let Object::Pod(mut host) = pod("kube-system", "kube-proxy-x", "192.168.1.10") else {
        unreachable!()
    };
    host.host_network = true;
    d.apply(Change::Upsert(Object::Pod(host)), secs(0));
    assert_eq!(d.lookup(ip("192.168.1.10")).unwrap().kind, NamedKind::Node);

    d.apply(Change::Upsert(pod("ns", "job-1", "10.244.3.3")), secs(0));
    let Object::Pod(mut done) = pod("ns", "job-1", "10.244.3.3") else {
        unreachable!()
    };
    done.finished = true;
    d.apply(Change::Upsert(Object::Pod(done)), secs(1));
    assert_eq!(d.lookup(ip("10.244.3.3")), None);
}

#[test]
fn a_pod_changing_ip_releases_the_old_one() {
    let mut d = directory(100);
    d.apply(Change::Upsert(pod("ns", "web-1", "10.244.1.5")), secs(0));
    d.apply(Change::Upsert(pod("ns", "web-1", "10.244.1.8")), secs(1));
    assert_eq!(d.lookup(ip("10.244.1.5")), None);
    assert_eq!(d.lookup(ip("10.244.1.8")).unwrap().name, "web-1");
}
