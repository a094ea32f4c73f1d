//! Builds the lab described by a [`Topology`] out of real network namespaces, veth pairs, a
//! bridge, sysctls, ipsets and iptables-nft rules, starts its helper processes, and removes all of
//! it again.
//!
//! [`Lab`] is the guard: every namespace and process is recorded the moment it exists, and
//! dropping the `Lab` (normal exit, error half-way through setup, panic) kills the processes and
//! deletes the namespaces. ipsets and rules live inside the node namespace and go with it. It never
//! touches the initial namespace (no host sysctl, no host route). Rule text comes from `rules`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use super::roles::Role;
use super::rules::LabRules;
use super::topology::{Client, NETNS_PREFIX, Pod, Topology};

/// Link that carries the service CIDR routes, so endpoint-less VIPs are forwarded (and reach
/// kube-proxy's filter REJECT) instead of failing the route lookup. A veth pair whose peer stays in
/// the node namespace, because the `dummy` link type is not available everywhere.
const SERVICE_LINK: &str = "kube-svc0";
const SERVICE_LINK_PEER: &str = "kube-svc1";

/// A built lab; dropping it tears everything down.
pub struct Lab {
    netns: Vec<String>,
    children: Vec<tokio::process::Child>,
}

impl Lab {
    /// Creates namespaces, links, addresses, routes, sysctls, ipsets and rules (blocking).
    /// On error, whatever was already created is removed before returning.
    pub fn build(topo: &Topology, rules: &LabRules) -> anyhow::Result<Self> {
        let mut lab = Self {
            netns: Vec::new(),
            children: Vec::new(),
        };
        for name in topo.all_netns() {
            run("ip", &["netns", "add", &name])?;
            lab.netns.push(name.clone());
            run("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        }
        setup_node(topo)?;
        for pod in &topo.pods {
            setup_pod(topo, pod)?;
        }
        for client in &topo.clients {
            setup_client(topo, client)?;
        }
        load_rules(&topo.node_netns(), rules)?;
        Ok(lab)
    }

    /// Starts the pod servers and traffic loops (this binary, re-executed inside each namespace).
    pub fn start_processes(&mut self, topo: &Topology, exe: &Path) -> anyhow::Result<()> {
        for pod in &topo.pods {
            let role = Role::PodServer {
                pod: pod.name.clone(),
                port: pod.port,
            };
            self.spawn(&topo.pod_netns(pod), exe, &role)?;
        }
        for lp in &topo.traffic {
            let netns = topo
                .origin_netns(&lp.origin)
                .context("traffic loop from an unknown origin")?;
            let targets = lp
                .targets
                .iter()
                .filter_map(|t| topo.target_address(t))
                .map(|a| a.parse().context("target address"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            self.spawn(
                &netns,
                exe,
                &Role::Traffic {
                    targets,
                    interval_ms: lp.interval_ms,
                    reset_on_close: lp.reset_on_close,
                },
            )?;
        }
        Ok(())
    }

    /// Fails if a helper process has already exited (e.g. a server could not bind).
    pub fn check_processes(&mut self) -> anyhow::Result<()> {
        for child in &mut self.children {
            if let Some(status) = child.try_wait()? {
                bail!("a lab helper process exited early ({status})");
            }
        }
        Ok(())
    }

    fn spawn(&mut self, netns: &str, exe: &Path, role: &Role) -> anyhow::Result<()> {
        let child = tokio::process::Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .args([
                "demo",
                "--internal-role",
                &role.to_arg(),
                "--internal-parent",
            ])
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting a helper in {netns}"))?;
        self.children.push(child);
        Ok(())
    }

    /// Kills the processes and deletes the namespaces; returns what could not be removed.
    pub fn teardown(&mut self) -> Vec<String> {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        self.children.clear();
        let mut failures = Vec::new();
        for name in self.netns.drain(..).rev() {
            if let Err(e) = remove_netns(&name) {
                failures.push(format!("{name}: {e:#}"));
            }
        }
        failures
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for failure in self.teardown() {
            eprintln!("nfscope demo: cleanup failed: {failure}");
        }
    }
}

fn setup_node(topo: &Topology) -> anyhow::Result<()> {
    let ns = topo.node_netns();
    let n = &topo.node;
    let ip = |args: &[&str]| run("ip", &[&["-n", ns.as_str()], args].concat());
    // Forwarding inside the node namespace only, never on the host.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ],
    )?;
    ip(&["link", "add", n.lan_bridge, "type", "bridge"])?;
    ip(&[
        "addr",
        "add",
        &format!("{}/{}", n.lan_gateway_v4, n.lan_prefix_v4),
        "dev",
        n.lan_bridge,
    ])?;
    ip(&[
        "addr",
        "add",
        &format!("{}/{}", n.lan_gateway_v6, n.lan_prefix_v6),
        "dev",
        n.lan_bridge,
        "nodad",
    ])?;
    ip(&["link", "set", n.lan_bridge, "up"])?;
    ip(&[
        "link",
        "add",
        SERVICE_LINK,
        "type",
        "veth",
        "peer",
        "name",
        SERVICE_LINK_PEER,
    ])?;
    ip(&["link", "set", SERVICE_LINK, "up"])?;
    ip(&["link", "set", SERVICE_LINK_PEER, "up"])?;
    ip(&["route", "add", n.service_cidr_v4, "dev", SERVICE_LINK])?;
    ip(&["-6", "route", "add", n.service_cidr_v6, "dev", SERVICE_LINK])
}

/// A routed veth per pod (Calico style): `/32` on the pod, the gateway on the node side.
fn setup_pod(topo: &Topology, pod: &Pod) -> anyhow::Result<()> {
    let node = topo.node_netns();
    let pod_ns = topo.pod_netns(pod);
    let veth = pod.host_veth();
    let on_node = |args: &[&str]| run("ip", &[&["-n", node.as_str()], args].concat());
    let on_pod = |args: &[&str]| run("ip", &[&["-n", pod_ns.as_str()], args].concat());
    let gw4 = topo.node.pod_gateway_v4.to_string();
    let gw6 = topo.node.pod_gateway_v6.to_string();
    on_node(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod_ns,
    ])?;
    on_node(&["addr", "add", &format!("{gw4}/32"), "dev", &veth])?;
    on_node(&["addr", "add", &format!("{gw6}/64"), "dev", &veth, "nodad"])?;
    on_node(&["link", "set", &veth, "up"])?;
    on_node(&["route", "add", &format!("{}/32", pod.ipv4), "dev", &veth])?;
    on_pod(&["addr", "add", &format!("{}/32", pod.ipv4), "dev", "eth0"])?;
    on_pod(&["link", "set", "eth0", "up"])?;
    on_pod(&["route", "add", &gw4, "dev", "eth0", "scope", "link"])?;
    on_pod(&["route", "add", "default", "via", &gw4, "dev", "eth0"])?;
    if let Some(v6) = pod.ipv6 {
        on_node(&["-6", "route", "add", &format!("{v6}/128"), "dev", &veth])?;
        on_pod(&[
            "-6",
            "addr",
            "add",
            &format!("{v6}/128"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        on_pod(&["-6", "route", "add", "default", "via", &gw6, "dev", "eth0"])?;
    }
    Ok(())
}

/// A veth from the client into the node's LAN bridge.
fn setup_client(topo: &Topology, client: &Client) -> anyhow::Result<()> {
    let node = topo.node_netns();
    let client_ns = topo.client_netns(client);
    let n = &topo.node;
    let port = format!("lan-{}", client.name);
    let on_node = |args: &[&str]| run("ip", &[&["-n", node.as_str()], args].concat());
    let on_client = |args: &[&str]| run("ip", &[&["-n", client_ns.as_str()], args].concat());
    on_node(&[
        "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &client_ns,
    ])?;
    on_node(&["link", "set", &port, "master", n.lan_bridge, "up"])?;
    on_client(&[
        "addr",
        "add",
        &format!("{}/{}", client.ipv4, n.lan_prefix_v4),
        "dev",
        "eth0",
    ])?;
    on_client(&["link", "set", "eth0", "up"])?;
    on_client(&[
        "route",
        "add",
        "default",
        "via",
        &n.lan_gateway_v4.to_string(),
    ])?;
    if let Some(v6) = client.ipv6 {
        on_client(&[
            "-6",
            "addr",
            "add",
            &format!("{v6}/{}", n.lan_prefix_v6),
            "dev",
            "eth0",
            "nodad",
        ])?;
        on_client(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &n.lan_gateway_v6.to_string(),
        ])?;
    }
    Ok(())
}

/// ipsets first (the rules reference them), then both families through the nft backend.
fn load_rules(node: &str, rules: &LabRules) -> anyhow::Result<()> {
    run_with_input(
        "ip",
        &["netns", "exec", node, "ipset", "restore"],
        &rules.ipsets,
    )?;
    run_with_input(
        "ip",
        &["netns", "exec", node, restore_tool("iptables"), "-w"],
        &rules.iptables,
    )?;
    run_with_input(
        "ip",
        &["netns", "exec", node, restore_tool("ip6tables"), "-w"],
        &rules.ip6tables,
    )
}

/// `iptables-nft-restore` when installed, else plain `iptables-restore`.
fn restore_tool(family_tool: &str) -> &'static str {
    let nft = if family_tool == "iptables" {
        "iptables-nft-restore"
    } else {
        "ip6tables-nft-restore"
    };
    let plain = if family_tool == "iptables" {
        "iptables-restore"
    } else {
        "ip6tables-restore"
    };
    let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(nft).exists());
    if found { nft } else { plain }
}

/// Deletes one namespace after killing every process still inside it.
pub fn remove_netns(name: &str) -> anyhow::Result<()> {
    let pids = output("ip", &["netns", "pids", name]).unwrap_or_default();
    let pids: Vec<&str> = pids.split_whitespace().collect();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }
    match run("ip", &["netns", "del", name]) {
        // Someone else (another demo's stale cleanup) removed it first: that is fine.
        Err(_) if !Path::new("/run/netns").join(name).exists() => Ok(()),
        result => result,
    }
}

/// Namespaces with the demo prefix, as `ip netns list` shows them.
pub fn demo_netns() -> anyhow::Result<Vec<String>> {
    let listing = output("ip", &["netns", "list"])?;
    Ok(listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .map(str::to_owned)
        .collect())
}

/// The demo pid encoded in a namespace name `nfsd-<pid>-…`.
pub fn owner_pid(netns: &str) -> Option<u32> {
    netns
        .strip_prefix(NETNS_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// True when `pid` is a live nfscope process (so its namespaces are in use).
fn demo_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim().starts_with("nfscope"))
}

/// Removes namespaces of demos that are no longer running; returns their names.
pub fn remove_stale_netns() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in demo_netns()? {
        let stale =
            owner_pid(&name).is_some_and(|pid| pid != std::process::id() && !demo_alive(pid));
        if stale {
            remove_netns(&name)?;
            removed.push(name);
        }
    }
    Ok(removed)
}

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    run_with_input(cmd, args, "")
}

fn run_with_input(cmd: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("writing to {cmd}"))?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn output(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {cmd}"))?;
    if !out.status.success() {
        bail!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_is_read_from_the_name() {
        assert_eq!(owner_pid("nfsd-1234-node"), Some(1234));
        assert_eq!(owner_pid("nfsd-77-pod-web-1"), Some(77));
        assert_eq!(owner_pid("nfsd-x-node"), None);
        assert_eq!(owner_pid("other-1-node"), None);
    }
}
