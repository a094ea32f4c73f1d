//! The IP directory: IP → pod (with its workload and namespace) or node, ClusterIP(:port) →
//! Service, endpoint IP → Service and pod, kept from watch events.
//!
//! Pure: no I/O and no clock. Time is passed in as a [`Time`] (any monotonic origin). It owns
//! the bookkeeping rules: which object owns an IP when several claim it, how a relist (`Init` …
//! `InitDone` after a reconnect or a 410 Gone) removes objects that vanished meanwhile, how long
//! deleted objects stay nameable (`grace`), and the entry cap with its eviction count. It does
//! not talk to the API server (see [`crate::watch`]) nor decode API objects (see [`crate::convert`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

/// A point in time, from whatever monotonic origin the caller uses.
pub type Time = Duration;

/// What a workload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// apps/v1 Deployment (pod → ReplicaSet → Deployment).
    Deployment,
    /// apps/v1 ReplicaSet without a Deployment.
    ReplicaSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 Job without a CronJob.
    Job,
    /// batch/v1 CronJob (pod → Job → CronJob).
    CronJob,
    /// Another controller kind (its `kind` is not kept).
    Other,
}

impl WorkloadKind {
    /// The Kubernetes kind name, e.g. `Deployment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::ReplicaSet => "ReplicaSet",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::Other => "Other",
        }
    }
}

/// The controller at the top of a pod's owner chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name (same namespace as the pod).
    pub name: String,
}

/// A pod, reduced to what naming needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `status.podIPs` (empty until scheduled and running).
    pub ips: Vec<IpAddr>,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `spec.hostNetwork`: the pod's IPs are the node's, so they are not indexed.
    pub host_network: bool,
    /// Workload from the owner chain, if any.
    pub workload: Option<Workload>,
    /// Phase Succeeded or Failed: the IPs are released.
    pub finished: bool,
}

/// A Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name (may be empty).
    pub name: String,
    /// Port number on the ClusterIP.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// A Service, reduced to what naming needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.clusterIPs` (empty for headless Services and ExternalName).
    pub cluster_ips: Vec<IpAddr>,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// One endpoint address of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// The address.
    pub ip: IpAddr,
    /// `targetRef.name` when the target is a Pod.
    pub pod: Option<String>,
}

/// An EndpointSlice, reduced to what naming needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    /// Namespace.
    pub namespace: String,
    /// Slice name.
    pub name: String,
    /// The `kubernetes.io/service-name` label.
    pub service: Option<String>,
    /// Endpoint addresses.
    pub endpoints: Vec<SliceEndpoint>,
}

/// A node, reduced to what naming needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// `status.addresses` of type InternalIP / ExternalIP.
    pub ips: Vec<IpAddr>,
}

/// One watched object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A Pod.
    Pod(PodInfo),
    /// A Service.
    Service(ServiceInfo),
    /// An EndpointSlice.
    Slice(SliceInfo),
    /// A Node.
    Node(NodeInfo),
}

/// The watched resource kinds; each resyncs on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Pods.
    Pods,
    /// Services.
    Services,
    /// EndpointSlices.
    EndpointSlices,
    /// Nodes.
    Nodes,
}

/// A watch event, already decoded (see [`crate::convert`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A (re)list of `Resource` starts; objects not seen again before [`Change::Synced`] are gone.
    Resync(Resource),
    /// An object was added or modified (also during a relist).
    Upsert(Object),
    /// An object was deleted.
    Delete(Object),
    /// The (re)list of `Resource` is complete.
    Synced(Resource),
}

/// What an IP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedKind {
    /// A pod's IP.
    Pod,
    /// A Service's ClusterIP.
    Service,
    /// A node's address.
    Node,
}

/// The answer to "what is this IP?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Pod, Service or Node.
    pub kind: NamedKind,
    /// Namespace (None for nodes).
    pub namespace: Option<String>,
    /// Pod, Service or node name.
    pub name: String,
    /// The pod's workload, when it has one.
    pub workload: Option<Workload>,
}

impl Named {
    /// The workload name if any, else the object's own name: what flows and graphs group by.
    pub fn workload_or_name(&self) -> &str {
        self.workload.as_ref().map_or(&self.name, |w| &w.name)
    }
}

/// A ClusterIP:port resolved to its Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHit {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Port name, when the port matched a declared one.
    pub port_name: Option<String>,
}

/// Limits of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// At most this many objects (pods, Services, EndpointSlices, nodes) are kept; beyond it the
    /// least recently updated one is evicted and counted.
    pub max_entries: usize,
    /// Deleted objects (and ones missing from a relist) stay nameable this long, so traffic of a
    /// pod that just went away is still named.
    pub grace: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            max_entries: 200_000,
            grace: Duration::from_secs(60),
        }
    }
}

/// Counters of a directory, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryStats {
    /// Objects held (deleted ones in their grace period included).
    pub entries: usize,
    /// Pods held.
    pub pods: usize,
    /// Services held.
    pub services: usize,
    /// Objects evicted because `max_entries` was reached (since creation).
    pub evictions_total: u64,
    /// Resyncs completed (all resources, since creation).
    pub resyncs_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pod(String, String),
    Service(String, String),
    Slice(String, String),
    Node(String),
}

impl Key {
    fn of(object: &Object) -> Self {
        match object {
            Object::Pod(p) => Self::Pod(p.namespace.clone(), p.name.clone()),
            Object::Service(s) => Self::Service(s.namespace.clone(), s.name.clone()),
            Object::Slice(s) => Self::Slice(s.namespace.clone(), s.name.clone()),
            Object::Node(n) => Self::Node(n.name.clone()),
        }
    }

    fn resource(&self) -> Resource {
        match self {
            Self::Pod(..) => Resource::Pods,
            Self::Service(..) => Resource::Services,
            Self::Slice(..) => Resource::EndpointSlices,
            Self::Node(_) => Resource::Nodes,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    object: Object,
    /// Bumped on every update; the eviction queue holds (key, generation).
    generation: u64,
    /// The resync epoch of its resource when last seen.
    epoch: u64,
    /// Set when deleted (or missing from a relist): removed `grace` after.
    deleted_at: Option<Time>,
}

/// The directory. See the module docs.
#[derive(Debug, Default)]
pub struct IpDirectory {
    config: DirectoryConfig,
    entries: HashMap<Key, Entry>,
    /// Pod and node IPs → owning key.
    by_ip: HashMap<IpAddr, Key>,
    /// ClusterIPs → Service key.
    by_vip: HashMap<IpAddr, Key>,
    /// Endpoint IPs → slice key.
    by_endpoint: HashMap<IpAddr, Key>,
    /// Oldest update first; stale (key, generation) pairs are skipped lazily.
    order: VecDeque<(Key, u64)>,
    next_generation: u64,
    epochs: HashMap<Resource, u64>,
    stats: DirectoryStats,
}

impl IpDirectory {
    /// An empty directory.
    pub fn new(config: DirectoryConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Applies one watch event at time `now`.
    pub fn apply(&mut self, change: Change, now: Time) {
        match change {
            Change::Resync(resource) => {
                *self.epochs.entry(resource).or_default() += 1;
            }
            Change::Upsert(object) => self.upsert(object),
            Change::Delete(object) => self.mark_deleted(&Key::of(&object), now),
            Change::Synced(resource) => self.finish_resync(resource, now),
        }
    }

    /// Removes objects whose grace period after deletion is over.
    pub fn expire(&mut self, now: Time) {
        let grace = self.config.grace;
        let expired: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.deleted_at
                    .is_some_and(|at| now.saturating_sub(at) >= grace)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }

    /// What `ip` is: a pod (preferred), a node or a Service ClusterIP.
    pub fn lookup(&self, ip: IpAddr) -> Option<Named> {
        if let Some(named) = self.by_ip.get(&ip).and_then(|k| self.named(k)) {
            return Some(named);
        }
        if let Some(named) = self
            .by_endpoint
            .get(&ip)
            .and_then(|k| self.endpoint_pod(k, ip))
        {
            return Some(named);
        }
        self.by_vip.get(&ip).and_then(|k| self.named(k))
    }

    /// The Service behind a ClusterIP and port (`port_name` is None when the port is not one of
    /// the Service's).
    pub fn service(&self, vip: IpAddr, port: u16) -> Option<ServiceHit> {
        let Object::Service(s) = &self.entries.get(self.by_vip.get(&vip)?)?.object else {
            return None;
        };
        Some(ServiceHit {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            port_name: s
                .ports
                .iter()
                .find(|p| p.port == port)
                .map(|p| p.name.clone()),
        })
    }

    /// The Service (namespace, name) whose EndpointSlice lists `ip`.
    pub fn endpoint_service(&self, ip: IpAddr) -> Option<(String, String)> {
        let Object::Slice(s) = &self.entries.get(self.by_endpoint.get(&ip)?)?.object else {
            return None;
        };
        Some((s.namespace.clone(), s.service.clone()?))
    }

    /// Counters for metrics.
    pub fn stats(&self) -> DirectoryStats {
        let mut stats = self.stats;
        stats.entries = self.entries.len();
        stats.pods = self.count(Resource::Pods);
        stats.services = self.count(Resource::Services);
        stats
    }

    fn count(&self, resource: Resource) -> usize {
        self.entries
            .keys()
            .filter(|k| k.resource() == resource)
            .count()
    }

    fn upsert(&mut self, object: Object) {
        let key = Key::of(&object);
        let finished = matches!(&object, Object::Pod(p) if p.finished);
        if !self.entries.contains_key(&key) {
            if finished {
                return; // a finished pod holds no IP worth naming
            }
            self.make_room();
        }
        self.unindex(&key);
        self.next_generation += 1;
        let entry = Entry {
            object,
            generation: self.next_generation,
            epoch: self.epochs.get(&key.resource()).copied().unwrap_or(0),
            deleted_at: None,
        };
        self.entries.insert(key.clone(), entry);
        self.index(&key);
        self.order.push_back((key, self.next_generation));
        self.compact_order();
    }

    fn mark_deleted(&mut self, key: &Key, now: Time) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.deleted_at.get_or_insert(now);
        }
    }

    /// Objects of `resource` not seen since its last `Resync` are treated as deleted now.
    fn finish_resync(&mut self, resource: Resource, now: Time) {
        let epoch = self.epochs.get(&resource).copied().unwrap_or(0);
        for (key, entry) in &mut self.entries {
            if key.resource() == resource && entry.epoch < epoch {
                entry.deleted_at.get_or_insert(now);
            }
        }
        self.stats.resyncs_total += 1;
    }

    fn make_room(&mut self) {
        while self.entries.len() >= self.config.max_entries.max(1) {
            let Some((key, generation)) = self.order.pop_front() else {
                return;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation)
            {
                self.remove(&key);
                self.stats.evictions_total += 1;
            }
        }
    }

    /// Keeps the eviction queue within a small multiple of the live entries.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    fn remove(&mut self, key: &Key) {
        self.unindex(key);
        self.entries.remove(key);
    }

    fn index(&mut self, key: &Key) {
        let Some((which, ips)) = self.entries.get(key).map(|e| indexed_ips(&e.object)) else {
            return;
        };
        let map = self.map_mut(which);
        for ip in ips {
            // A pod wins an IP over a node (hostNetwork pods are never indexed); the newest
            // object wins among equals (IP reuse after a delete).
            let keep_existing = matches!((map.get(&ip), key), (Some(Key::Pod(..)), Key::Node(_)));
            if !keep_existing {
                map.insert(ip, key.clone());
            }
        }
    }

    /// Drops the index entries `key` owns (only those: an IP taken over by a newer object stays).
    fn unindex(&mut self, key: &Key) {
        let Some((which, ips)) = self.entries.get(key).map(|e| indexed_ips(&e.object)) else {
            return;
        };
        let map = self.map_mut(which);
        for ip in ips {
            if map.get(&ip) == Some(key) {
                map.remove(&ip);
            }
        }
    }

    fn map_mut(&mut self, which: IndexKind) -> &mut HashMap<IpAddr, Key> {
        match which {
            IndexKind::Ip => &mut self.by_ip,
            IndexKind::Vip => &mut self.by_vip,
            IndexKind::Endpoint => &mut self.by_endpoint,
        }
    }

    fn named(&self, key: &Key) -> Option<Named> {
        Some(match &self.entries.get(key)?.object {
            Object::Pod(p) => Named {
                kind: NamedKind::Pod,
                namespace: Some(p.namespace.clone()),
                name: p.name.clone(),
                workload: p.workload.clone(),
            },
            Object::Node(n) => Named {
                kind: NamedKind::Node,
                namespace: None,
                name: n.name.clone(),
                workload: None,
            },
            Object::Service(s) => Named {
                kind: NamedKind::Service,
                namespace: Some(s.namespace.clone()),
                name: s.name.clone(),
                workload: None,
            },
            Object::Slice(_) => return None,
        })
    }

    /// A pod known only from an EndpointSlice's targetRef (its Pod object not watched or evicted).
    fn endpoint_pod(&self, key: &Key, ip: IpAddr) -> Option<Named> {
        let Object::Slice(s) = &self.entries.get(key)?.object else {
            return None;
        };
        let pod = s.endpoints.iter().find(|e| e.ip == ip)?.pod.clone()?;
        Some(Named {
            kind: NamedKind::Pod,
            namespace: Some(s.namespace.clone()),
            name: pod,
            workload: None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum IndexKind {
    Ip,
    Vip,
    Endpoint,
}

/// Which index an object's IPs go to, and which IPs (none for hostNetwork pods).
fn indexed_ips(object: &Object) -> (IndexKind, Vec<IpAddr>) {
    match object {
        Object::Pod(p) if p.host_network || p.finished => (IndexKind::Ip, Vec::new()),
        Object::Pod(p) => (IndexKind::Ip, p.ips.clone()),
        Object::Node(n) => (IndexKind::Ip, n.ips.clone()),
        Object::Service(s) => (IndexKind::Vip, s.cluster_ips.clone()),
        Object::Slice(s) => (
            IndexKind::Endpoint,
            s.endpoints.iter().map(|e| e.ip).collect(),
        ),
    }
}
