//! The watch I/O: one `kube` watcher per resource (pods, Services, EndpointSlices, nodes), all
//! cluster-wide, feeding a [`SharedDirectory`].
//!
//! Owns connecting (in-cluster config, then kubeconfig; neither means "no Kubernetes", not an
//! error), turning watcher events into [`Change`]s and the expiry tick. Reconnects, backoff and
//! the relist after a watch ends in 410 Gone come from `kube::runtime::watcher`: its `Init` …
//! `InitDone` sequence becomes `Resync` … `Synced`, which makes the directory drop objects that
//! disappeared while the watch was down. It owns no bookkeeping (see [`crate::directory`]).

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::SharedDirectory;
use crate::convert::{node_info, pod_info, service_info, slice_info};
use crate::directory::{Change, Object, Resource};

/// How often deleted objects past their grace period are dropped.
pub const EXPIRY_TICK: Duration = Duration::from_secs(10);

/// A client from the in-cluster service account or the kubeconfig, or `None` (with one info
/// line in the log) when neither exists or the client cannot be built.
pub async fn connect_auto() -> Option<Client> {
    let config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(error) => {
            tracing::info!(%error, "no Kubernetes API configured (no in-cluster config, no kubeconfig): running without Kubernetes names");
            return None;
        }
    };
    let url = config.cluster_url.clone();
    match Client::try_from(config) {
        Ok(client) => {
            tracing::info!(%url, "watching the Kubernetes API for pod, Service and node names");
            Some(client)
        }
        Err(error) => {
            tracing::warn!(%error, %url, "cannot build a Kubernetes client: running without Kubernetes names");
            None
        }
    }
}

/// Starts the four watchers and the expiry tick; they run until the tasks are aborted.
pub fn spawn(client: Client, directory: SharedDirectory) -> Vec<JoinHandle<()>> {
    vec![
        spawn_one(
            Api::<Pod>::all(client.clone()),
            Resource::Pods,
            &directory,
            |p| Object::Pod(pod_info(p)),
        ),
        spawn_one(
            Api::<Service>::all(client.clone()),
            Resource::Services,
            &directory,
            |s| Object::Service(service_info(s)),
        ),
        spawn_one(
            Api::<EndpointSlice>::all(client.clone()),
            Resource::EndpointSlices,
            &directory,
            |s| Object::Slice(slice_info(s)),
        ),
        spawn_one(Api::<Node>::all(client), Resource::Nodes, &directory, |n| {
            Object::Node(node_info(n))
        }),
        tokio::spawn(expire_forever(directory)),
    ]
}

fn spawn_one<K>(
    api: Api<K>,
    resource: Resource,
    directory: &SharedDirectory,
    convert: fn(&K) -> Object,
) -> JoinHandle<()>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let directory = directory.clone();
    tokio::spawn(watch_resource(api, resource, directory, convert))
}

/// Feeds one resource's watch events into the directory, forever.
pub async fn watch_resource<K>(
    api: Api<K>,
    resource: Resource,
    directory: SharedDirectory,
    convert: fn(&K) -> Object,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut stream = watcher(api).boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                if let Some(change) = change_of(event, resource, convert) {
                    directory.apply(change);
                }
            }
            Err(error) => {
                directory.count_error(resource);
                tracing::warn!(?resource, %error, "Kubernetes watch failed; retrying with backoff");
            }
        }
    }
}

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher::watcher(api, watcher::Config::default().page_size(500)).default_backoff()
}

fn change_of<K>(event: Event<K>, resource: Resource, convert: fn(&K) -> Object) -> Option<Change> {
    Some(match event {
        Event::Init => Change::Resync(resource),
        Event::InitApply(obj) | Event::Apply(obj) => Change::Upsert(convert(&obj)),
        Event::Delete(obj) => Change::Delete(convert(&obj)),
        Event::InitDone => Change::Synced(resource),
    })
}

async fn expire_forever(directory: SharedDirectory) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    loop {
        tick.tick().await;
        directory.expire();
    }
}
