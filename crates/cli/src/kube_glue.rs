//! Glue between `nfscope serve` and the Kubernetes watcher (`nfscope-kube`).
//!
//! Owns `--kube auto|off`, starting the watcher once per process (or [`install`]ing a directory
//! fed by someone else, as `nfscope demo` does), and what its names add to the
//! exposition: the directory's own series and `nfscope_kube_endpoint_info{endpoint, pod,
//! workload, namespace}` for the endpoints the exporter already emits (so the info series adds
//! no cardinality of its own). The tracer and the flow monitor name IPs through [`name_ip`] (or a
//! [`NameIp`] handle from [`directory`]). Without a cluster nothing starts, one info line is
//! logged, and every function here is a no-op.

use std::net::IpAddr;
use std::sync::OnceLock;

use clap::ValueEnum;
use nfscope_kube::{DirectoryConfig, SharedDirectory};
pub use nfscope_kube::{NameIp, Named};

/// `--kube`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum KubeMode {
    /// Watch the API when an in-cluster config or a kubeconfig exists; otherwise run without.
    #[default]
    Auto,
    /// Never contact the Kubernetes API.
    Off,
}

static DIRECTORY: OnceLock<SharedDirectory> = OnceLock::new();

/// Starts the watcher (must run inside the tokio runtime). Returns whether names are available.
pub async fn start(mode: KubeMode) -> bool {
    if mode == KubeMode::Off {
        tracing::info!("--kube off: running without Kubernetes names");
        return false;
    }
    if DIRECTORY.get().is_some() {
        return true;
    }
    let Some(client) = nfscope_kube::watch::connect_auto().await else {
        return false;
    };
    let directory = SharedDirectory::new(DirectoryConfig::default());
    if DIRECTORY.set(directory.clone()).is_ok() {
        // The tasks run for the life of the process.
        drop(nfscope_kube::watch::spawn(client, directory));
    }
    true
}

/// Uses `directory` as this process's Kubernetes names instead of a watcher (`nfscope demo`
/// feeds it the lab's synthesized objects). Returns false, changing nothing, when a directory is
/// already in place.
pub fn install(directory: SharedDirectory) -> bool {
    DIRECTORY.set(directory).is_ok()
}

/// The shared directory, when the watcher runs.
pub fn directory() -> Option<&'static SharedDirectory> {
    DIRECTORY.get()
}

/// What `ip` is in the cluster (pod with its workload, Service, node), when the watcher runs.
#[allow(
    dead_code,
    reason = "the entry point the tracer and flow monitor name IPs through"
)]
pub fn name_ip(ip: IpAddr) -> Option<Named> {
    directory()?.name_ip(ip)
}

/// Appends the Kubernetes directory series to a `/metrics` body (nothing without a cluster).
pub fn append_metrics(body: &mut String) {
    let Some(directory) = directory() else {
        return;
    };
    directory.render_metrics(body);
    let endpoints = endpoint_labels(body);
    let mut info = String::new();
    directory.render_endpoint_info(endpoints.iter().map(String::as_str), &mut info);
    body.push_str(&info);
}

const ENDPOINT_SERIES: &str = "nfscope_kube_endpoint_new_connections_total{";

/// The `endpoint` label values of the endpoint series already in `body`.
fn endpoint_labels(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| l.starts_with(ENDPOINT_SERIES))
        .filter_map(|l| {
            let start = l.find("endpoint=\"")? + "endpoint=\"".len();
            let end = l[start..].find('"')?;
            Some(l[start..start + end].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_come_from_the_endpoint_series_only() {
        let body = "# HELP x\n\
            nfscope_kube_endpoint_new_connections_total{family=\"ipv4\",namespace=\"demo\",service=\"web\",port=\"http\",endpoint=\"10.244.1.11:8080\"} 3\n\
            nfscope_kube_endpoint_new_connections_total{family=\"ipv6\",endpoint=\"[fd00::b]:8080\"} 1\n\
            iptables_rule_packets_total{endpoint=\"1.2.3.4:1\"} 1\n";
        assert_eq!(
            endpoint_labels(body),
            ["10.244.1.11:8080", "[fd00::b]:8080"]
        );
    }

    #[test]
    fn without_a_cluster_nothing_is_added() {
        let mut body = String::from("x 1\n");
        if directory().is_none() {
            append_metrics(&mut body);
            assert_eq!(body, "x 1\n");
            assert_eq!(name_ip("10.0.0.1".parse().unwrap()), None);
        }
    }
}
