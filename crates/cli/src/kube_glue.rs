//! Glue between `nfscope serve` and the Kubernetes watcher (`nfscope-kube`).
//!
//! Owns `--kube auto|off` and starting the watcher, which returns the directory the server is
//! handed (`ServeConfig::kube`; `nfscope demo` hands in a directory it fills itself). What the
//! directory adds to `/metrics` is `nfscope-kube`'s (its own series and
//! `nfscope_kube_endpoint_info` for the endpoints the exporter's Kubernetes plan names). Without a
//! cluster nothing starts and one info line is logged.

use clap::ValueEnum;
use nfscope_kube::{DirectoryConfig, SharedDirectory};

/// `--kube`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum KubeMode {
    /// Watch the API when an in-cluster config or a kubeconfig exists; otherwise run without.
    #[default]
    Auto,
    /// Never contact the Kubernetes API.
    Off,
}

/// Starts the watcher (must run inside the tokio runtime); its directory, when there is a
/// cluster to watch. The watch tasks run for the life of the process.
pub async fn start(mode: KubeMode) -> Option<SharedDirectory> {
    if mode == KubeMode::Off {
        tracing::info!("--kube off: running without Kubernetes names");
        return None;
    }
    let client = nfscope_kube::watch::connect_auto().await?;
    let directory = SharedDirectory::new(DirectoryConfig::default());
    drop(nfscope_kube::watch::spawn(client, directory.clone()));
    Some(directory)
}
