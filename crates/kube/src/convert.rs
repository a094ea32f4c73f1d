//! API objects (`k8s-openapi` types) → the small records the directory keeps.
//!
//! Pure. Owns the owner-reference walk up to the workload without extra watches: a pod owned by
//! ReplicaSet `web-7d4b9c8f6d` with label `pod-template-hash=7d4b9c8f6d` belongs to Deployment
//! `web` (the Deployment controller names its ReplicaSets `<deployment>-<pod-template-hash>`); a
//! pod owned by Job `backup-29123456` (a numeric suffix: the CronJob controller names Jobs
//! `<cronjob>-<scheduled minute>`) belongs to CronJob `backup`. StatefulSet, DaemonSet and bare
//! ReplicaSet/Job owners are taken as they are.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::directory::{
    NodeInfo, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo, Workload, WorkloadKind,
};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

fn names(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn parse_ips<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = texts.into_iter().filter_map(|t| t.parse().ok()).collect();
    ips.dedup();
    ips
}

/// A Pod's record.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let (namespace, name) = names(&pod.metadata);
    let status = pod.status.as_ref();
    let mut ip_texts: Vec<&str> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|p| p.ip.as_str()).collect())
        .unwrap_or_default();
    if ip_texts.is_empty()
        && let Some(ip) = status.and_then(|s| s.pod_ip.as_deref())
    {
        ip_texts.push(ip);
    }
    let spec = pod.spec.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    let hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_TEMPLATE_HASH))
        .map(String::as_str);
    PodInfo {
        namespace,
        name,
        ips: parse_ips(ip_texts),
        node: spec.and_then(|s| s.node_name.clone()),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        workload: controller(pod.metadata.owner_references.as_deref())
            .map(|owner| workload(owner, hash)),
        finished: matches!(phase, Some("Succeeded" | "Failed")),
    }
}

fn controller(owners: Option<&[OwnerReference]>) -> Option<&OwnerReference> {
    let owners = owners?;
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
}

/// The workload at the top of the owner chain of a pod owned by `owner`.
pub fn workload(owner: &OwnerReference, pod_template_hash: Option<&str>) -> Workload {
    let name = owner.name.clone();
    match owner.kind.as_str() {
        "ReplicaSet" => match deployment_of(&name, pod_template_hash) {
            Some(deployment) => Workload {
                kind: WorkloadKind::Deployment,
                name: deployment.to_owned(),
            },
            None => Workload {
                kind: WorkloadKind::ReplicaSet,
                name,
            },
        },
        "Job" => match cronjob_of(&name) {
            Some(cronjob) => Workload {
                kind: WorkloadKind::CronJob,
                name: cronjob.to_owned(),
            },
            None => Workload {
                kind: WorkloadKind::Job,
                name,
            },
        },
        "StatefulSet" => Workload {
            kind: WorkloadKind::StatefulSet,
            name,
        },
        "DaemonSet" => Workload {
            kind: WorkloadKind::DaemonSet,
            name,
        },
        _ => Workload {
            kind: WorkloadKind::Other,
            name,
        },
    }
}

/// `web-7d4b9c8f6d` with hash `7d4b9c8f6d` → `web`.
fn deployment_of<'a>(replicaset: &'a str, hash: Option<&str>) -> Option<&'a str> {
    let prefix = replicaset.strip_suffix(hash.filter(|h| !h.is_empty())?)?;
    prefix.strip_suffix('-').filter(|p| !p.is_empty())
}

/// `backup-29123456` → `backup` (the CronJob controller's `<name>-<minutes since epoch>`).
fn cronjob_of(job: &str) -> Option<&str> {
    let (prefix, suffix) = job.rsplit_once('-')?;
    let numeric = suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit());
    (numeric && !prefix.is_empty()).then_some(prefix)
}

/// A Service's record.
pub fn service_info(service: &Service) -> ServiceInfo {
    let (namespace, name) = names(&service.metadata);
    let spec = service.spec.as_ref();
    let mut vips: Vec<&str> = spec
        .and_then(|s| s.cluster_ips.as_ref())
        .map(|ips| ips.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if vips.is_empty()
        && let Some(ip) = spec.and_then(|s| s.cluster_ip.as_deref())
    {
        vips.push(ip);
    }
    let ports = spec
        .and_then(|s| s.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| {
                    Some(ServicePort {
                        name: p.name.clone().unwrap_or_default(),
                        port: u16::try_from(p.port).ok()?,
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    ServiceInfo {
        namespace,
        name,
        cluster_ips: parse_ips(vips), // "None" (headless) does not parse and is dropped
        ports,
    }
}

/// An EndpointSlice's record.
pub fn slice_info(slice: &EndpointSlice) -> SliceInfo {
    let (namespace, name) = names(&slice.metadata);
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned();
    let endpoints = slice
        .endpoints
        .iter()
        .flat_map(|e| {
            let pod = e
                .target_ref
                .as_ref()
                .filter(|t| t.kind.as_deref() == Some("Pod"))
                .and_then(|t| t.name.clone());
            e.addresses.iter().filter_map(move |a| {
                Some(SliceEndpoint {
                    ip: a.parse().ok()?,
                    pod: pod.clone(),
                })
            })
        })
        .collect();
    SliceInfo {
        namespace,
        name,
        service,
        endpoints,
    }
}

/// A Node's record.
pub fn node_info(node: &Node) -> NodeInfo {
    let name = node.metadata.name.clone().unwrap_or_default();
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .filter(|a| matches!(a.type_.as_str(), "InternalIP" | "ExternalIP"))
                .map(|a| a.address.as_str())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    NodeInfo {
        name,
        ips: parse_ips(addresses),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn replicaset_with_matching_hash_is_a_deployment() {
        let w = workload(&owner("ReplicaSet", "web-7d4b9c8f6d"), Some("7d4b9c8f6d"));
        assert_eq!((w.kind, w.name.as_str()), (WorkloadKind::Deployment, "web"));
    }

    #[test]
    fn replicaset_without_matching_hash_stays_a_replicaset() {
        for hash in [None, Some("abc"), Some("")] {
            let w = workload(&owner("ReplicaSet", "web-7d4b9c8f6d"), hash);
            assert_eq!(w.kind, WorkloadKind::ReplicaSet, "{hash:?}");
            assert_eq!(w.name, "web-7d4b9c8f6d");
        }
    }

    #[test]
    fn cronjob_jobs_have_a_numeric_minute_suffix() {
        let w = workload(&owner("Job", "backup-29123456"), None);
        assert_eq!((w.kind, w.name.as_str()), (WorkloadKind::CronJob, "backup"));
        let w = workload(&owner("Job", "migrate-v2"), None);
        assert_eq!((w.kind, w.name.as_str()), (WorkloadKind::Job, "migrate-v2"));
        let w = workload(&owner("Job", "x-123"), None);
        assert_eq!(w.kind, WorkloadKind::Job);
    }

    #[test]
    fn other_owners_keep_their_kind() {
        assert_eq!(
            workload(&owner("StatefulSet", "db"), None).kind,
            WorkloadKind::StatefulSet
        );
        assert_eq!(
            workload(&owner("DaemonSet", "agent"), None).kind,
            WorkloadKind::DaemonSet
        );
        assert_eq!(
            workload(&owner("Rollout", "r"), None).kind,
            WorkloadKind::Other
        );
    }
}
