//! `nfscope demo`: a throwaway Kubernetes-like node built from network namespaces, with
//! kube-proxy, kube-router and Calico style rules, live traffic, and nfscope serving its metrics.
//!
//! Layout: [`topology`] describes the lab as data, [`hashes`] and [`rules`] turn it into the
//! exact rule text real components would write (pure, unit-tested), [`lab`] creates and removes the
//! namespaces (root, I/O), [`roles`] are the helper processes (pod servers, traffic loops) that run
//! inside them, [`cluster`] synthesizes the Kubernetes objects the names come from (no API
//! server). This module wires them together with the metrics server and signal handling. It
//! does not own collecting or the metric schema (`serve`, `nfscope-kernel`, `nfscope-exporter`).

pub mod cluster;
pub mod hashes;
pub mod lab;
pub mod roles;
pub mod rules;
pub mod topology;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};

use self::lab::Lab;
use self::roles::Role;
use self::topology::{Origin, Topology};
use crate::serve::{ServeConfig, serve_on};

/// Options of `nfscope demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Address of the metrics server for the lab's node namespace.
    #[arg(long, default_value = "127.0.0.1:9455")]
    pub listen: SocketAddr,
    /// Run this many seconds, then clean up and exit 0 (default: until Ctrl-C / SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Only remove namespaces left behind by demos that are no longer running, then exit.
    #[arg(long)]
    pub cleanup_stale: bool,
    /// Build the lab and its traffic but do not start the metrics server.
    #[arg(long)]
    pub no_server: bool,
    /// Internal: run as a helper process inside a lab namespace (JSON role).
    #[arg(long, hide = true)]
    pub internal_role: Option<String>,
    /// Internal: pid of the demo that started this helper (the helper exits when it is gone).
    #[arg(long, hide = true)]
    pub internal_parent: Option<u32>,
}

/// Runs the demo lab until Ctrl-C, SIGTERM or `--duration`, then removes everything it created.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if let Some(role) = &args.internal_role {
        let parent = args
            .internal_parent
            .unwrap_or_else(std::os::unix::process::parent_id);
        return roles::run_role(Role::from_arg(role)?, parent).await;
    }
    ensure_root()?;
    let stale = tokio::task::spawn_blocking(lab::remove_stale_netns).await?;
    if args.cleanup_stale {
        let stale = stale?;
        stale
            .iter()
            .for_each(|name| println!("removed stale namespace {name}"));
        println!("{} stale demo namespace(s) removed", stale.len());
        return Ok(());
    }
    // Leftovers of crashed demos are removed on the way; failing to do so is not fatal.
    match stale {
        Ok(names) => names
            .iter()
            .for_each(|name| println!("removed stale namespace {name}")),
        Err(e) => eprintln!("nfscope demo: warning: stale namespaces not removed: {e:#}"),
    }
    // Handlers first, so a signal during setup is noticed (and cleaned up) afterwards.
    let sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    // Bind before building anything, so a busy port fails fast with nothing to undo.
    let listener = if args.no_server {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        Some(listener)
    };

    let topo = Topology::standard(std::process::id());
    let directory = cluster_directory(&topo);
    let lab = build_lab(&topo).await?;
    print_summary(&topo, &args);

    let signals = Signals { sigint, sigterm };
    let outcome = serve_until_stopped(listener, &topo, &args, directory, signals).await;
    let reason = outcome?;
    println!("\n{reason}: removing the lab…");
    teardown(lab, &topo).await
}

/// The signals that end the demo.
struct Signals {
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
}

/// Serves the node namespace's metrics until a signal, `--duration`, or a server failure; returns
/// why it stopped. The server is shut down before returning.
async fn serve_until_stopped(
    listener: Option<tokio::net::TcpListener>,
    topo: &Topology,
    args: &DemoArgs,
    directory: nfscope_kube::SharedDirectory,
    mut signals: Signals,
) -> anyhow::Result<&'static str> {
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = listener.map(|listener| {
        let mut config = ServeConfig::new(args.listen, Some(topo.node_netns()));
        config.flows = Some(crate::flow_api::FlowOptions {
            names: topo.flow_names(), // pods by workload, clients, Service VIPs
            syn_timeout: Some(crate::flow_api::DEFAULT_SYN_TIMEOUT),
            ..Default::default()
        }); // the clients keep the graph alive
        config.kube = Some(directory);
        tokio::spawn(serve_on(listener, config, async move {
            let _ = server_stopped.await;
        }))
    });
    let duration = args.duration.map_or(Duration::MAX, Duration::from_secs);
    let outcome = tokio::select! {
        _ = signals.sigint.recv() => Ok("SIGINT"),
        _ = signals.sigterm.recv() => Ok("SIGTERM"),
        () = tokio::time::sleep(duration) => Ok("--duration elapsed"),
        result = async { server.as_mut().expect("guarded by the if").await }, if server.is_some() => {
            server = None;
            match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("the metrics server stopped on its own")),
                Ok(Err(e)) => Err(e.context("metrics server")),
                Err(e) => Err(anyhow::anyhow!("metrics server task failed: {e}")),
            }
        }
    };
    let _ = stop_server.send(());
    if let Some(server) = server {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    outcome
}

/// The lab's synthesized pods, Services, EndpointSlices and node as the server's Kubernetes
/// names: an IP directory fed a watcher's initial list (there is no API server).
fn cluster_directory(topo: &Topology) -> nfscope_kube::SharedDirectory {
    let directory = nfscope_kube::SharedDirectory::new(nfscope_kube::DirectoryConfig::default());
    cluster::initial_list(topo)
        .into_iter()
        .for_each(|change| directory.apply(change));
    directory
}

/// Builds namespaces and rules on a blocking thread, then starts the helpers.
async fn build_lab(topo: &Topology) -> anyhow::Result<Lab> {
    let rules = rules::generate(topo);
    let topo_for_build = topo.clone();
    let mut lab = tokio::task::spawn_blocking(move || Lab::build(&topo_for_build, &rules))
        .await
        .context("lab setup thread")??;
    let exe = std::env::current_exe().context("locating the nfscope binary")?;
    lab.start_processes(topo, &exe)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lab.check_processes()?;
    Ok(lab)
}

/// Tears the lab down and checks that no namespace of ours is left.
async fn teardown(mut lab: Lab, topo: &Topology) -> anyhow::Result<()> {
    let failures = tokio::task::spawn_blocking(move || lab.teardown()).await?;
    let prefix = topo.netns_prefix.clone();
    let left: Vec<String> = tokio::task::spawn_blocking(lab::demo_netns)
        .await??
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    if !failures.is_empty() || !left.is_empty() {
        bail!("cleanup incomplete: {failures:?}; namespaces left: {left:?}");
    }
    println!(
        "removed {} namespaces, nothing left behind",
        topo.all_netns().len()
    );
    Ok(())
}

/// A ready-to-run `nfscope trace` command line for a trace example; `nfscope` is the path of the
/// running binary, so the line works in a shell whose PATH lacks it.
fn trace_command(nfscope: &str, topo: &Topology, ex: &topology::TraceExample) -> Option<String> {
    let src = topo.origin_address(&ex.origin, ex.target.ipv6)?;
    let dst: SocketAddr = topo.target_address(&ex.target)?.parse().ok()?;
    let iface = topo.origin_interface(&ex.origin)?;
    Some(format!(
        "{nfscope} trace --netns {} --src {src} --dst {} --proto tcp --dport {} --in {iface}",
        topo.node_netns(),
        dst.ip(),
        dst.port()
    ))
}

/// The demo creates namespaces and loads rules, which needs root.
fn ensure_root() -> anyhow::Result<()> {
    if effective_uid() == Some(0) {
        Ok(())
    } else {
        bail!("nfscope demo needs root (it creates network namespaces)")
    }
}

/// Effective uid from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn print_summary(topo: &Topology, args: &DemoArgs) {
    let node = topo.node_netns();
    println!("nfscope demo lab is up (node namespace {node})\n");
    println!("services (namespace {}):", topology::K8S_NAMESPACE);
    for svc in &topo.services {
        let eps: Vec<String> = topo
            .pods_with_app(&svc.selector)
            .map(|p| format!("{}:{}", p.ipv4, p.port))
            .collect();
        let v6 = svc
            .cluster_ip_v6
            .map(|ip| format!(" [{ip}]:{}", svc.port))
            .unwrap_or_default();
        let eps = if eps.is_empty() {
            "no endpoints (REJECT)".to_owned()
        } else {
            eps.join(", ")
        };
        println!(
            "  {:<22} {}:{}{v6} -> {eps}",
            svc.port_name_string(),
            svc.cluster_ip,
            svc.port
        );
    }
    println!(
        "  (synthesized cluster objects: {} pods, {} Services, their EndpointSlices and node {} \
         feed the Kubernetes IP directory as watch events would; there is no API server)",
        topo.pods.len(),
        topo.services.len(),
        cluster::NODE_NAME
    );
    println!("clients:");
    for c in &topo.clients {
        println!(
            "  {:<6} {} ({})  netns {}",
            c.name,
            c.ipv4,
            c.role,
            topo.client_netns(c)
        );
    }
    println!("traffic loops:");
    for lp in &topo.traffic {
        let from = match &lp.origin {
            Origin::Client(n) => format!("client {n}"),
            Origin::Pod(n) => format!("pod {n}"),
        };
        let to: Vec<String> = lp
            .targets
            .iter()
            .filter_map(|t| topo.target_address(t))
            .collect();
        let close = if lp.reset_on_close {
            ", closing with RST"
        } else {
            ""
        };
        println!(
            "  {from} -> {} every {} ms{close}",
            to.join(", "),
            lp.interval_ms
        );
    }
    let lan = topo
        .clients
        .first()
        .map(|c| topo.client_netns(c))
        .unwrap_or_default();
    // The demo runs as root (`ensure_root`), so the lines need no sudo; they name this binary by
    // its path because it need not be on PATH.
    let nfscope = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "nfscope".to_owned());
    println!("\ntry (as root):");
    if !args.no_server {
        println!(
            "  curl -s http://{}/metrics | grep '^nfscope_kube'",
            args.listen
        );
    }
    if let Some(web) = topo.service("web") {
        println!("  ip netns exec {lan} curl -s http://{}/", web.cluster_ip);
    }
    println!("  {nfscope} rules --netns {node}");
    println!("  ip netns exec {node} iptables-save -c");
    for ex in &topo.trace_examples {
        if let Some(cmd) = trace_command(&nfscope, topo, ex) {
            println!("  {cmd}\n      # {}", ex.expect);
        }
    }
    println!("\nCtrl-C removes everything.");
}
