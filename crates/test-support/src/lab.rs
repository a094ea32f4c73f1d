//! Building blocks of the root tests' namespace labs, so each test states its topology and
//! rules instead of repeating the plumbing.
//!
//! Owns: the `client — node — server` routed lab ([`RoutedLab`]: two veth pairs, a forwarding
//! node, default routes via the node); background processes killed on drop ([`Children`], e.g.
//! the `socat` listeners a lab starts with [`TestNetns::spawn`]); waiting for a TCP listener
//! inside a namespace ([`wait_listening`]); and the check that the tools a test runs are
//! installed ([`have`], [`tools_or_skip`]). It does not know what a test loads into the
//! namespaces (rulesets, Services) nor what it asserts.

use std::io;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestNetns, skip_unless};

/// Is `tool` on the `PATH`?
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when every one of `tools` is installed; otherwise prints which are missing and returns
/// false (panics under `CI=true`, like [`skip_unless`]).
pub fn tools_or_skip(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    skip_unless(test, missing.is_empty(), &format!("missing {missing:?}"))
}

/// Background processes, killed and reaped on drop.
#[derive(Debug, Default)]
pub struct Children(Vec<Child>);

impl Children {
    /// Keeps `child` until the guard drops.
    pub fn push(&mut self, child: Child) {
        self.0.push(child);
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl TestNetns {
    /// Starts `argv` in the background inside the namespace, standard streams closed (panics
    /// only if `ip` cannot run). Keep the child in a [`Children`] guard.
    pub fn spawn(&self, argv: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", self.name()])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} {argv:?}: {e}", self.name()))
    }

    /// Runs `argv` inside the namespace with `input` on its standard input (`nft -f -`,
    /// `iptables-nft-restore`), panics with its stderr unless it succeeds, and returns stdout.
    pub fn exec_input_ok(&self, argv: &[&str], input: &str) -> String {
        let out = self.exec_input(argv, input);
        assert!(
            out.status.success(),
            "in {}: {argv:?} failed ({}): {}",
            self.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Waits (at most `limit`) until a TCP socket listens on `ip:port` inside `ns`; panics after.
pub fn wait_listening(ns: &TestNetns, ip: &str, port: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !ns
        .sh(&format!("ss -ltnH 'src {ip}:{port}' | grep -q LISTEN"))
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "nothing listened on {ip}:{port} in {}",
            ns.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `client — node — server`: three namespaces, the node joined to each by a veth pair,
/// forwarding both families (no reverse-path filter, no ICMP rate limit, so every rejected
/// attempt gets its answer), and the client and the server routed by default via the node's
/// address of each family on their link.
#[derive(Debug)]
pub struct RoutedLab {
    pub client: TestNetns,
    pub node: TestNetns,
    pub server: TestNetns,
    /// The node's interface toward the client.
    pub if_client: String,
    /// The node's interface toward the server.
    pub if_server: String,
}

impl RoutedLab {
    /// Builds the lab; addresses in CIDR notation, the node's first IPv4 and first IPv6 address
    /// of each link are the other side's gateways.
    pub fn new(
        tag: &str,
        node_to_client: &[&str],
        client: &[&str],
        node_to_server: &[&str],
        server: &[&str],
    ) -> io::Result<Self> {
        let client_ns = TestNetns::new(tag)?;
        let node = TestNetns::new(tag)?;
        let server_ns = TestNetns::new(tag)?;
        let (if_client, _) = node.veth_to(&client_ns, node_to_client, client)?;
        let (if_server, _) = node.veth_to(&server_ns, node_to_server, server)?;
        node.sh_ok(
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
             net.ipv4.icmp_ratelimit=0 net.ipv6.conf.all.forwarding=1 net.ipv6.icmp.ratelimit=0",
        );
        client_ns.sh_ok(&default_routes(node_to_client));
        server_ns.sh_ok(&default_routes(node_to_server));
        Ok(Self {
            client: client_ns,
            node,
            server: server_ns,
            if_client,
            if_server,
        })
    }
}

/// `ip route add default via …` for the first address of each family in `gateways`.
fn default_routes(gateways: &[&str]) -> String {
    let host = |a: &&str| a.split('/').next().unwrap_or(a).to_owned();
    let v4 = gateways.iter().find(|a| !a.contains(':')).map(host);
    let v6 = gateways.iter().find(|a| a.contains(':')).map(host);
    let mut script: Vec<String> = Vec::new();
    if let Some(gw) = v4 {
        script.push(format!("ip route add default via {gw}"));
    }
    if let Some(gw) = v6 {
        script.push(format!("ip -6 route add default via {gw}"));
    }
    script.join(" && ")
}
