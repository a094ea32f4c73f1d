//! Kubernetes names for nfscope: which pod, workload, namespace, Service or node an IP belongs to.
//!
//! The only crate that depends on `kube` / `k8s-openapi`. It owns the watcher ([`watch`]: pods,
//! Services, EndpointSlices and nodes, cluster-wide, reconnecting and relisting on its own), the
//! pure [`IpDirectory`] those events maintain ([`directory`], time passed in, bounded by an entry
//! cap with an eviction count) and the decoding of API objects ([`convert`]). [`SharedDirectory`]
//! is the handle the binary holds and hands to the server, whose `/metrics` it adds to through
//! `nfscope-expo`'s [`MetricFamilies`]: the directory's own series and
//! `nfscope_kube_endpoint_info` for the endpoints the exporter's Kubernetes series name.
//! [`NameIp`] is the small lookup interface it implements; today only that info family names
//! IPs (the tracer does not, and the flow monitor names workloads from its own `Names`). It does
//! not decide which endpoints appear in metrics (the exporter's Kubernetes plan does), and
//! without a cluster nothing here runs.

#![forbid(unsafe_code)]
pub mod convert;
pub mod directory;
pub mod watch;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use nfscope_expo::{Exposition, Kind, MetricFamilies, ScrapeFacts};

pub use directory::{
    Change, DirectoryConfig, DirectoryStats, IpDirectory, Named, NamedKind, Object, Resource,
    ServiceHit, Time, Workload, WorkloadKind,
};

/// Names an IP address. Implemented by [`SharedDirectory`]; tests and other sources (a static
/// names file) can implement it too.
pub trait NameIp {
    /// What `ip` is, if known.
    fn name_ip(&self, ip: IpAddr) -> Option<Named>;
}

/// A directory shared between the watch tasks and the readers (HTTP handlers, tracer, flows).
/// Cloning shares it. Time is measured from its creation.
#[derive(Debug, Clone)]
pub struct SharedDirectory {
    inner: Arc<RwLock<IpDirectory>>,
    errors: Arc<[AtomicU64; 4]>,
    started: Instant,
}

impl NameIp for SharedDirectory {
    fn name_ip(&self, ip: IpAddr) -> Option<Named> {
        self.read().lookup(ip)
    }
}

impl SharedDirectory {
    /// An empty directory with these limits.
    pub fn new(config: DirectoryConfig) -> Self {
        Self {
            inner: Arc::new(RwLock::new(IpDirectory::new(config))),
            errors: Arc::new(Default::default()),
            started: Instant::now(),
        }
    }

    fn now(&self) -> Time {
        self.started.elapsed()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IpDirectory> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IpDirectory> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies one watch event now.
    pub fn apply(&self, change: Change) {
        let now = self.now();
        self.write().apply(change, now);
    }

    /// Drops deleted objects whose grace period is over.
    pub fn expire(&self) {
        let now = self.now();
        self.write().expire(now);
    }

    /// The Service behind ClusterIP `vip` and `port`.
    pub fn service(&self, vip: IpAddr, port: u16) -> Option<ServiceHit> {
        self.read().service(vip, port)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> DirectoryStats {
        self.read().stats()
    }

    /// Counts a failed watch request of `resource`.
    pub fn count_error(&self, resource: Resource) {
        self.errors[resource_index(resource)].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the directory's own families (Prometheus text 0.0.4).
    pub fn render_metrics(&self, out: &mut String) {
        let mut expo = Exposition::appending_to(std::mem::take(out));
        self.write_directory(&mut expo);
        *out = expo.into_string();
    }

    /// Appends `nfscope_kube_endpoint_info{endpoint, pod, workload, namespace} 1` for each
    /// endpoint (`ip:port`, `[ip6]:port` or a bare IP) that names a known pod. Cardinality is
    /// that of the endpoint series the exporter already emits.
    pub fn render_endpoint_info<'a>(
        &self,
        endpoints: impl IntoIterator<Item = &'a str>,
        out: &mut String,
    ) {
        let mut expo = Exposition::appending_to(std::mem::take(out));
        self.write_endpoint_info(endpoints, &mut expo);
        *out = expo.into_string();
    }

    fn write_directory(&self, out: &mut Exposition<'_>) {
        let stats = self.stats();
        let families: [(&str, Kind, &str, u64); 3] = [
            (
                "nfscope_kube_directory_entries",
                Kind::Gauge,
                "Kubernetes objects (pods, Services, EndpointSlices, nodes) the IP directory holds.",
                stats.entries as u64,
            ),
            (
                "nfscope_kube_directory_evictions_total",
                Kind::Counter,
                "Objects dropped from the IP directory because its entry cap was reached.",
                stats.evictions_total,
            ),
            (
                "nfscope_kube_resyncs_total",
                Kind::Counter,
                "Complete lists of a watched resource (startup, reconnects, 410 Gone).",
                stats.resyncs_total,
            ),
        ];
        for (name, kind, help, value) in families {
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
        let name = "nfscope_kube_watch_errors_total";
        out.family(
            name,
            Kind::Counter,
            "Failed Kubernetes list/watch requests, by resource.",
        );
        for resource in RESOURCES {
            let n = self.errors[resource_index(resource)].load(Ordering::Relaxed);
            out.sample(name, &[("resource", resource_label(resource))], n);
        }
    }

    fn write_endpoint_info<'a>(
        &self,
        endpoints: impl IntoIterator<Item = &'a str>,
        out: &mut Exposition<'_>,
    ) {
        let name = "nfscope_kube_endpoint_info";
        out.family(
            name,
            Kind::Gauge,
            "The pod and workload behind a Service endpoint of nfscope_kube_endpoint_new_connections_total (always 1).",
        );
        let directory = self.read();
        let mut seen = std::collections::HashSet::new();
        for endpoint in endpoints {
            if !seen.insert(endpoint) {
                continue;
            }
            let Some(ip) = endpoint_ip(endpoint) else {
                continue;
            };
            let Some(named) = directory.lookup(ip).filter(|n| n.kind == NamedKind::Pod) else {
                continue;
            };
            let workload = named.workload.as_ref().map_or("", |w| w.name.as_str());
            let labels = [
                ("endpoint", endpoint),
                ("pod", named.name.as_str()),
                ("workload", workload),
                ("namespace", named.namespace.as_deref().unwrap_or("")),
            ];
            out.sample(name, &labels, 1u64);
        }
    }
}

impl MetricFamilies for SharedDirectory {
    /// The directory's own families, then `nfscope_kube_endpoint_info` for the endpoints of
    /// this scrape's endpoint series ([`ScrapeFacts::kube_endpoints`]).
    fn encode(&self, facts: &ScrapeFacts<'_>, out: &mut Exposition<'_>) {
        self.write_directory(out);
        self.write_endpoint_info(facts.kube_endpoints.iter().map(String::as_str), out);
    }
}

const RESOURCES: [Resource; 4] = [
    Resource::Pods,
    Resource::Services,
    Resource::EndpointSlices,
    Resource::Nodes,
];

fn resource_index(resource: Resource) -> usize {
    match resource {
        Resource::Pods => 0,
        Resource::Services => 1,
        Resource::EndpointSlices => 2,
        Resource::Nodes => 3,
    }
}

fn resource_label(resource: Resource) -> &'static str {
    match resource {
        Resource::Pods => "pods",
        Resource::Services => "services",
        Resource::EndpointSlices => "endpointslices",
        Resource::Nodes => "nodes",
    }
}

/// The IP of `10.0.0.1:80`, `[fd00::1]:80` or a bare address.
pub fn endpoint_ip(endpoint: &str) -> Option<IpAddr> {
    endpoint
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| endpoint.parse::<IpAddr>())
        .ok()
}
