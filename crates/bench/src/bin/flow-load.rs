//! `flow-load`: the flow monitor's load benchmark (issue 6). Builds `client ─ node ─ server`
//! network namespaces with a DNAT VIP on the node, starts `nfscope serve --flows` inside the node
//! namespace, opens and closes short TCP connections through the VIP at a target rate for a
//! bounded time, and prints what nfscope cost (CPU from `/proc/<pid>/stat`, RSS) and whether it
//! counted every connection (generator's count vs its metrics).
//!
//! ```text
//! cargo build --release -p nfscope -p nfscope-bench
//! sudo target/release/flow-load run --nfscope target/release/nfscope --rate 5000 --seconds 60
//! ```
//!
//! Failed attempts beside the good connections (issue 17): `--refused-rate N` attempts per second
//! refused (half REJECTed with ICMP port unreachable after DNAT, half answered by the server's RST:
//! nothing listens on the port), `--timeout-rate N` attempts per second DROPped (timeouts; the
//! client gives up after 1.2 s, nfscope counts them after its 3 s SYN timeout). `--bridged` puts the
//! client behind a port of a bridge on the node (br_netfilter) with MASQUERADE to the server, as
//! the demo lab's LAN clients. The report compares nfscope's failure counts with the client's.
//!
//! ```text
//! sudo target/release/flow-load run --rate 5000 --refused-rate 1000 --timeout-rate 200 --bridged
//! ```
//!
//! `hold` measures memory instead: it opens `--connections` (default 100,000) connections through
//! two VIPs (a client port range holds about 64,000 per destination), keeps them open, and prints
//! nfscope's RSS and live-connection count while they are.
//!
//! ```text
//! sudo target/release/flow-load hold --nfscope target/release/nfscope --connections 100000
//! ```
//!
//! `hold --then COMMAND` runs a command inside the node namespace while the connections stay
//! open (`scripts/api-load --graph` uses it to load `/api/graph/data` and time `/healthz`).
//!
//! `client`, `client-hold` and `server` are the halves it runs inside the namespaces (via
//! `ip netns exec`).
//! All traffic stays inside the namespaces it creates; they are deleted on exit (guards).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

const VIP: &str = "10.96.77.10";
/// A second VIP, DNATed to the server's second port, for `hold` (more than one port range).
const VIP2: &str = "10.96.77.11";
const SERVER_IP: &str = "10.77.2.2";
/// Service ports of the failure load: REJECTed (ICMP) after DNAT, nothing listening (the
/// server's RST), DROPped.
const REJECTED_PORT: u16 = 81;
const CLOSED_PORT: u16 = 82;
const DROPPED_PORT: u16 = 84;
/// How long the client waits for a DROPped attempt.
const DROPPED_WAIT: Duration = Duration::from_millis(1200);
/// Bytes the client sends, and the server answers, per connection.
const REQUEST: usize = 100;
const RESPONSE: usize = 200;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load benchmark of nfscope's flow monitor, inside namespaces it creates"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The whole benchmark: namespaces, server, nfscope, client, report.
    Run {
        /// The nfscope binary to measure.
        #[arg(long, default_value = "target/release/nfscope")]
        nfscope: String,
        /// Target new connections per second.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Seconds of load.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Client threads.
        #[arg(long, default_value_t = 8)]
        workers: u64,
        /// Turn conntrack accounting on in the node namespace (`nf_conntrack_acct=1`).
        #[arg(long)]
        acct: bool,
        /// Also write nfscope's `/api/flows` document after the run to this file.
        #[arg(long)]
        dump_flows: Option<String>,
        /// Refused attempts per second beside the good connections.
        #[arg(long, default_value_t = 0)]
        refused_rate: u64,
        /// Timed-out (DROPped) attempts per second beside the good connections.
        #[arg(long, default_value_t = 0)]
        timeout_rate: u64,
        /// The client behind a bridge port on the node, MASQUERADEd to the server.
        #[arg(long)]
        bridged: bool,
    },
    /// Memory with many live connections: opens them, holds them, reports nfscope's RSS.
    Hold {
        /// The nfscope binary to measure.
        #[arg(long, default_value = "target/release/nfscope")]
        nfscope: String,
        /// Connections to hold open.
        #[arg(long, default_value_t = 100_000)]
        connections: u64,
        /// Once they are open and reported, run this `sh -c` command inside the node namespace
        /// (environment: `NFSCOPE_ADDR`, `NFSCOPE_PID`) while they stay open; its exit status
        /// is flow-load's.
        #[arg(long, value_name = "COMMAND")]
        then: Option<String>,
    },
    /// Accepts, reads the request, answers, closes first; exits after `seconds`. With `--hold`,
    /// accepts and keeps every connection open instead.
    Server {
        #[arg(long)]
        listen: Vec<SocketAddr>,
        #[arg(long)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        threads: u64,
        #[arg(long)]
        hold: bool,
    },
    /// Opens `connections` to the `target`s (split evenly), prints one JSON line once they are
    /// open, and holds them for `seconds`.
    ClientHold {
        #[arg(long)]
        target: Vec<SocketAddr>,
        #[arg(long)]
        connections: u64,
        #[arg(long)]
        seconds: u64,
    },
    /// Opens connections to `target` at `rate` per second for `seconds`; prints counts as JSON.
    /// With `--refused-rate`/`--timeout-rate`, also attempts that fail, to `--refused-target`s
    /// (in turn) and `--timeout-target`.
    Client {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
        #[arg(long)]
        workers: u64,
        #[arg(long, default_value_t = 0)]
        refused_rate: u64,
        #[arg(long)]
        refused_target: Vec<SocketAddr>,
        #[arg(long, default_value_t = 0)]
        timeout_rate: u64,
        #[arg(long)]
        timeout_target: Option<SocketAddr>,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Cmd::Run {
            nfscope,
            rate,
            seconds,
            workers,
            acct,
            dump_flows,
            refused_rate,
            timeout_rate,
            bridged,
        } => run(&RunOptions {
            nfscope,
            rate,
            seconds,
            workers,
            acct,
            dump_flows,
            refused_rate,
            timeout_rate,
            bridged,
        }),
        Cmd::Hold {
            nfscope,
            connections,
            then,
        } => hold(&nfscope, connections, then.as_deref()),
        Cmd::Server {
            listen,
            seconds,
            threads,
            hold,
        } => server(&listen, seconds, threads, hold),
        Cmd::ClientHold {
            target,
            connections,
            seconds,
        } => client_hold(&target, connections, seconds),
        Cmd::Client {
            target,
            rate,
            seconds,
            workers,
            refused_rate,
            refused_target,
            timeout_rate,
            timeout_target,
        } => client(&ClientLoad {
            target,
            rate,
            seconds,
            workers,
            refused_rate,
            refused_targets: refused_target,
            timeout_rate,
            timeout_target,
        }),
    }
}

// ---- the namespaces ----

/// A namespace `nfscope-flowload-<pid>-<tag>`, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(tag: &str) -> Result<Self> {
        let name = format!("nfscope-flowload-{}-{tag}", std::process::id());
        sh(&format!("ip netns add {name}"))?;
        let ns = Self { name };
        ns.exec("ip link set lo up")?;
        Ok(ns)
    }

    fn exec(&self, script: &str) -> Result<()> {
        sh(&format!("ip netns exec {} sh -ec '{script}'", self.name))
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process killed (by its pid) and reaped on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(script: &str) -> Result<()> {
    let out = Command::new("sh")
        .args(["-ec", script])
        .output()
        .context("running sh")?;
    if !out.status.success() {
        bail!(
            "`{script}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Links `a` (address `a_ip`) and `b` (address `b_ip`) with a veth pair.
fn veth(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str, tag: &str) -> Result<()> {
    let (va, vb) = (
        format!("fl{}{tag}a", std::process::id() % 100_000),
        format!("fl{}{tag}b", std::process::id() % 100_000),
    );
    sh(&format!(
        "ip link add {va} netns {} type veth peer name {vb} netns {}",
        a.name, b.name
    ))?;
    a.exec(&format!("ip addr add {a_ip} dev {va}; ip link set {va} up"))?;
    b.exec(&format!("ip addr add {b_ip} dev {vb}; ip link set {vb} up"))
}

struct Lab {
    client: Netns,
    node: Netns,
    server: Netns,
}

fn lab(acct: bool, bridged: bool) -> Result<Lab> {
    let lab = Lab {
        client: Netns::create("c")?,
        node: Netns::create("n")?,
        server: Netns::create("s")?,
    };
    if bridged {
        // The node's side of the client's veth is a bridge port; the bridge has the address.
        veth(&lab.client, "10.77.1.2/24", &lab.node, "10.77.9.9/32", "c")?;
        let port = format!("fl{}cb", std::process::id() % 100_000);
        lab.node.exec(&format!(
            "ip addr flush dev {port}; ip link add br0 type bridge; ip link set {port} master br0;              ip addr add 10.77.1.1/24 dev br0; ip link set br0 up;              sysctl -qw net.bridge.bridge-nf-call-iptables=1 || true;              iptables -t nat -A POSTROUTING -s 10.77.1.0/24 -d {SERVER_IP} -j MASQUERADE"
        ))?;
    } else {
        veth(&lab.client, "10.77.1.2/24", &lab.node, "10.77.1.1/24", "c")?;
    }
    veth(&lab.server, "10.77.2.2/24", &lab.node, "10.77.2.1/24", "s")?;
    lab.client.exec(
        "ip route add default via 10.77.1.1; sysctl -qw net.ipv4.ip_local_port_range=\"1024 65000\"",
    )?;
    lab.server.exec("ip route add default via 10.77.2.1")?;
    lab.node.exec(&format!(
        "sysctl -qw net.ipv4.ip_forward=1; \
         iptables -t nat -A PREROUTING -d {VIP} -p tcp --dport 80 -j DNAT --to-destination {SERVER_IP}:8080; \
         iptables -t nat -A PREROUTING -d {VIP2} -p tcp --dport 80 -j DNAT --to-destination {SERVER_IP}:8081; \
         sysctl -qw net.netfilter.nf_conntrack_acct={}",
        u8::from(acct)
    ))?;
    // The failure load's ports: REJECTed after DNAT (ICMP, not rate limited here), nothing
    // listening on the server (its RST), DROPped.
    lab.node.exec(&format!(
        "sysctl -qw net.ipv4.icmp_ratelimit=0; sysctl -qw net.ipv4.icmp_msgs_per_sec=100000; \
         for p in {REJECTED_PORT} {CLOSED_PORT} {DROPPED_PORT}; do \
           iptables -t nat -A PREROUTING -d {VIP} -p tcp --dport $p -j DNAT --to-destination {SERVER_IP}:$((8000 + p)); \
         done; \
         iptables -A FORWARD -d {SERVER_IP} -p tcp --dport {} -j REJECT; \
         iptables -A FORWARD -d {SERVER_IP} -p tcp --dport {} -j DROP",
        8000 + REJECTED_PORT,
        8000 + DROPPED_PORT,
    ))?;
    Ok(lab)
}

// ---- the orchestrator ----

/// `run`'s options.
struct RunOptions {
    nfscope: String,
    rate: u64,
    seconds: u64,
    workers: u64,
    acct: bool,
    dump_flows: Option<String>,
    refused_rate: u64,
    timeout_rate: u64,
    bridged: bool,
}

fn run(options: &RunOptions) -> Result<()> {
    let RunOptions {
        ref nfscope,
        rate,
        seconds,
        workers,
        acct,
        ref dump_flows,
        refused_rate,
        timeout_rate,
        bridged,
    } = *options;
    let me = std::env::current_exe().context("locating flow-load")?;
    let me = me.to_str().context("path")?;
    let lab = lab(acct, bridged)?;
    let _server = ChildGuard(
        lab.server
            .command(me)
            .args(["server", "--listen", "0.0.0.0:8080"])
            .args(["--seconds", &(seconds + 30).to_string()])
            .spawn()
            .context("starting the server")?,
    );
    let (monitor, listen) = start_monitor(&lab, nfscope)?;
    let pid = monitor.0.id().to_string();
    let idle_rss = status_kib(&pid, "VmRSS")?;
    let (cpu0, wall0) = (cpu_seconds(&pid)?, Instant::now());
    let out = lab
        .client
        .command(me)
        .args(["client", "--target", &format!("{VIP}:80")])
        .args([
            "--rate",
            &rate.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--workers", &workers.to_string()])
        .args(["--refused-rate", &refused_rate.to_string()])
        .args(["--refused-target", &format!("{VIP}:{REJECTED_PORT}")])
        .args(["--refused-target", &format!("{VIP}:{CLOSED_PORT}")])
        .args(["--timeout-rate", &timeout_rate.to_string()])
        .args(["--timeout-target", &format!("{VIP}:{DROPPED_PORT}")])
        .output()
        .context("running the client")?;
    let (cpu1, wall1) = (cpu_seconds(&pid)?, wall0.elapsed());
    let load_rss = status_kib(&pid, "VmRSS")?;
    if !out.status.success() {
        bail!("client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let client: serde_json::Value = serde_json::from_slice(&out.stdout).context("client output")?;
    std::thread::sleep(Duration::from_secs(5)); // let the last FINs and events arrive
    let metrics = scrape(&lab.node, listen, "/metrics")?;
    if let Some(path) = dump_flows {
        std::fs::write(path, scrape(&lab.node, listen, "/api/flows")?)?;
    }
    let failures = by_label(&metrics, "nfscope_connection_failures_total", "reason");
    let failed = |reason: &str| failures.get(reason).copied().unwrap_or(0.0);
    let refused_seen = client["refused"]["refused"].as_f64().unwrap_or(0.0);
    let timeouts_seen = client["timed_out"]["timed_out"].as_f64().unwrap_or(0.0);
    let hwm = status_kib(&pid, "VmHWM")?;
    let closed: f64 = sum(&metrics, "nfscope_tcp_connections_total");
    let report = serde_json::json!({
        "target_rate": rate,
        "refused_rate": refused_rate,
        "timeout_rate": timeout_rate,
        "bridged": bridged,
        "seconds": seconds,
        "conntrack_accounting": acct,
        "failures": {
            "by_reason": failures,
            "refused_missed": refused_seen - failed("refused"),
            "timeouts_missed": timeouts_seen - failed("timeout"),
            "groups": sum(&metrics, "nfscope_flow_failure_groups"),
            "evictions": sum(&metrics, "nfscope_flow_failure_evictions_total"),
            "dropped": sum(&metrics, "nfscope_flow_failures_dropped_total"),
        },
        "client": client,
        "nfscope": {
            "cpu_percent_of_one_core": 100.0 * (cpu1 - cpu0) / wall1.as_secs_f64(),
            "cpu_seconds": cpu1 - cpu0,
            "wall_seconds": wall1.as_secs_f64(),
            "rss_idle_kib": idle_rss,
            "rss_after_load_kib": load_rss,
            "rss_peak_kib": hwm,
            "connections_closed": closed,
            "connections_by_end": by_label(&metrics, "nfscope_tcp_connections_total", "end"),
            "connections_live": sum(&metrics, "nfscope_flow_connections_live"),
            "connections_seen": sum(&metrics, "nfscope_flow_connections_seen_total"),
            "evictions": sum(&metrics, "nfscope_flow_table_evictions_total"),
            "conntrack_events": sum(&metrics, "nfscope_flow_conntrack_events_total"),
            "conntrack_events_lost": sum(&metrics, "nfscope_flow_conntrack_events_lost_total"),
            "capture_packets": sum(&metrics, "nfscope_flow_capture_packets_total"),
            "capture_drops": sum(&metrics, "nfscope_flow_capture_drops_total"),
            "packets_unmatched": sum(&metrics, "nfscope_flow_packets_unmatched_total"),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Connections one `client-hold` process opens at most (a process may open 20,000 files here).
const CONNECTIONS_PER_PROCESS: u64 = 17_000;

fn hold(nfscope: &str, connections: u64, then: Option<&str>) -> Result<()> {
    use std::io::BufRead as _;
    let me = std::env::current_exe().context("locating flow-load")?;
    let me = me.to_str().context("path")?;
    let lab = lab(false, false)?;
    // The server never accepts: the connections wait, established, in two listen queues as
    // deep as the namespace allows, so it needs no descriptor per connection (std's listener
    // has a backlog of 128, so a python3 one-liner listens). Clients hold a descriptor each:
    // several processes, each under the 20,000 files a process may open here.
    lab.server.exec("sysctl -qw net.core.somaxconn=1000000")?;
    let listen_forever = "import socket, time\n\
        held = []\n\
        for port in (8080, 8081):\n\
        \x20   s = socket.socket()\n\
        \x20   s.bind(('0.0.0.0', port))\n\
        \x20   s.listen(1000000)\n\
        \x20   held.append(s)\n\
        time.sleep(600)\n";
    let _server = ChildGuard(
        lab.server
            .command("python3")
            .args(["-c", listen_forever])
            .spawn()
            .context("starting the server (python3)")?,
    );
    let (monitor, listen) = start_monitor(&lab, nfscope)?;
    let pid = monitor.0.id().to_string();
    let idle_rss = status_kib(&pid, "VmRSS")?;
    let started = Instant::now();
    let processes = connections.div_ceil(CONNECTIONS_PER_PROCESS);
    let mut clients = Vec::new();
    for p in 0..processes {
        let share = CONNECTIONS_PER_PROCESS.min(connections - p * CONNECTIONS_PER_PROCESS);
        let mut child = ChildGuard(
            lab.client
                .command(me)
                .args(["client-hold", "--seconds", "600"])
                .args([
                    "--target",
                    &format!("{VIP}:80"),
                    "--target",
                    &format!("{VIP2}:80"),
                ])
                .args(["--connections", &share.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .context("starting a client")?,
        );
        let stdout = child.0.stdout.take().context("client stdout")?;
        clients.push((child, std::io::BufReader::new(stdout)));
    }
    let (mut opened, mut failed) = (0, 0);
    for (_, stdout) in &mut clients {
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let counts: serde_json::Value = serde_json::from_str(&line).context("client output")?;
        opened += counts["opened"].as_u64().unwrap_or(0);
        failed += counts["failed"].as_u64().unwrap_or(0);
    }
    let opened = serde_json::json!({ "opened": opened, "failed": failed, "processes": processes });
    let open_seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(10)); // let the events and the capture catch up
    let metrics = scrape(&lab.node, listen, "/metrics")?;
    let report = serde_json::json!({
        "client": opened,
        "seconds_to_open": open_seconds,
        "nfscope": {
            "rss_idle_kib": idle_rss,
            "rss_holding_kib": status_kib(&pid, "VmRSS")?,
            "rss_peak_kib": status_kib(&pid, "VmHWM")?,
            "connections_live": sum(&metrics, "nfscope_flow_connections_live"),
            "connections_seen": sum(&metrics, "nfscope_flow_connections_seen_total"),
            "evictions": sum(&metrics, "nfscope_flow_table_evictions_total"),
            "conntrack_events_lost": sum(&metrics, "nfscope_flow_conntrack_events_lost_total"),
            "capture_drops": sum(&metrics, "nfscope_flow_capture_drops_total"),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(command) = then {
        std::io::stdout().flush()?;
        let status = lab
            .node
            .command("sh")
            .args(["-c", command])
            .env("NFSCOPE_ADDR", listen)
            .env("NFSCOPE_PID", &pid)
            .status()
            .context("running --then")?;
        if !status.success() {
            bail!("--then command failed: {status}");
        }
    }
    Ok(())
}

/// Starts `nfscope serve --flows` in the lab's node namespace and gives it 3 s to settle;
/// returns its guard and the address it listens on.
fn start_monitor(lab: &Lab, nfscope: &str) -> Result<(ChildGuard, &'static str)> {
    let listen = "127.0.0.1:9466";
    let monitor = ChildGuard(
        lab.node
            .command(nfscope)
            .args(["serve", "--flows", "--listen", listen])
            .args(["--max-failures", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nfscope")?,
    );
    std::thread::sleep(Duration::from_secs(3));
    Ok((monitor, listen))
}

fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime 15.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let hz = Command::new("getconf").arg("CLK_TCK").output()?;
    let hz: f64 = String::from_utf8_lossy(&hz.stdout).trim().parse()?;
    Ok(ticks as f64 / hz)
}

fn status_kib(pid: &str, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

fn scrape(node: &Netns, listen: &str, path: &str) -> Result<String> {
    let out = node
        .command("curl")
        .args(["-sf", &format!("http://{listen}{path}")])
        .output()?;
    if !out.status.success() {
        bail!("scraping nfscope failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sum of every sample of `family` (exact name, any labels).
fn sum(metrics: &str, family: &str) -> f64 {
    samples(metrics, family).map(|(_, v)| v).sum()
}

fn samples<'a>(metrics: &'a str, family: &'a str) -> impl Iterator<Item = (&'a str, f64)> {
    metrics.lines().filter_map(move |line| {
        let rest = line.strip_prefix(family)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.trim().parse().ok()?))
    })
}

fn by_label(metrics: &str, family: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let key = format!("{label}=\"");
    for (labels, value) in samples(metrics, family) {
        if let Some(v) = labels.split(&key).nth(1).and_then(|r| r.split('"').next()) {
            *out.entry(v.to_owned()).or_insert(0.0) += value;
        }
    }
    out
}

// ---- the halves inside the namespaces ----

fn server(listen: &[SocketAddr], seconds: u64, threads: u64, hold: bool) -> Result<()> {
    for &address in listen {
        let listener = Arc::new(TcpListener::bind(address).context("binding")?);
        if hold {
            // Never accepts: established connections wait in the listen queue.
            std::mem::forget(listener);
        } else {
            serve_and_close(&listener, threads);
        }
    }
    std::thread::sleep(Duration::from_secs(seconds));
    Ok(())
}

fn serve_and_close(listener: &Arc<TcpListener>, threads: u64) {
    for _ in 0..threads.max(1) {
        let listener = Arc::clone(listener);
        std::thread::spawn(move || {
            let response = [b'y'; RESPONSE];
            loop {
                let Ok((mut stream, _)) = listener.accept() else {
                    continue;
                };
                let mut request = [0u8; REQUEST];
                if stream.read_exact(&mut request).is_ok() {
                    let _ = stream.write_all(&response);
                }
            } // dropped: the server closes first, so TIME_WAIT stays here
        });
    }
}

fn client_hold(targets: &[SocketAddr], connections: u64, seconds: u64) -> Result<()> {
    let (mut held, mut failed) = (Vec::new(), 0u64);
    for i in 0..connections {
        let target = targets[(i % targets.len().max(1) as u64) as usize];
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(stream) => held.push(stream),
            Err(_) => failed += 1,
        }
    }
    println!(
        "{}",
        serde_json::json!({ "opened": held.len(), "failed": failed })
    );
    std::io::stdout().flush()?;
    std::thread::sleep(Duration::from_secs(seconds));
    Ok(())
}

#[derive(Default)]
struct Counts {
    attempted: AtomicU64,
    completed: AtomicU64,
    connect_failed: AtomicU64,
    io_failed: AtomicU64,
}

/// `client`'s load.
struct ClientLoad {
    target: SocketAddr,
    rate: u64,
    seconds: u64,
    workers: u64,
    refused_rate: u64,
    refused_targets: Vec<SocketAddr>,
    timeout_rate: u64,
    timeout_target: Option<SocketAddr>,
}

/// Runs `each(attempt number)` at `rate` per second for `seconds` on `workers` threads.
fn paced(
    rate: u64,
    seconds: u64,
    workers: u64,
    each: impl Fn(u64) + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    if rate == 0 {
        return Vec::new();
    }
    let workers = workers.max(1);
    let interval = Duration::from_secs_f64(workers as f64 / rate as f64);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let each = Arc::new(each);
    (0..workers)
        .map(|w| {
            let each = Arc::clone(&each);
            std::thread::spawn(move || {
                let mut next = start + interval.mul_f64(w as f64 / workers as f64);
                let mut n = w;
                while next < deadline {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    next += interval;
                    each(n);
                    n += workers;
                }
            })
        })
        .collect()
}

/// What failing attempts got.
#[derive(Default)]
struct FailCounts {
    attempted: AtomicU64,
    /// Refused (ECONNREFUSED) or timed out, as the pool expects.
    expected: AtomicU64,
    other: AtomicU64,
}

fn client(load: &ClientLoad) -> Result<()> {
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let target = load.target;
    let mut handles = {
        let counts = Arc::clone(&counts);
        paced(load.rate, load.seconds, load.workers, move |_| {
            counts.attempted.fetch_add(1, Ordering::Relaxed);
            one_connection(target, &counts);
        })
    };
    let refused = Arc::new(FailCounts::default());
    if !load.refused_targets.is_empty() {
        let (counts, targets) = (Arc::clone(&refused), load.refused_targets.clone());
        handles.extend(paced(load.refused_rate, load.seconds, 4, move |n| {
            counts.attempted.fetch_add(1, Ordering::Relaxed);
            let target = targets[(n % targets.len() as u64) as usize];
            let outcome = TcpStream::connect_timeout(&target, Duration::from_secs(2));
            let counter = match outcome {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => &counts.expected,
                _ => &counts.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }));
    }
    let timed_out = Arc::new(FailCounts::default());
    if let Some(target) = load.timeout_target {
        // Each attempt holds its thread while it waits: enough threads for the rate.
        let workers = (load.timeout_rate as f64 * DROPPED_WAIT.as_secs_f64() * 1.5).ceil() as u64;
        let counts = Arc::clone(&timed_out);
        handles.extend(paced(load.timeout_rate, load.seconds, workers, move |_| {
            counts.attempted.fetch_add(1, Ordering::Relaxed);
            let counter = match TcpStream::connect_timeout(&target, DROPPED_WAIT) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => &counts.expected,
                _ => &counts.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for handle in handles {
        let _ = handle.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let completed = counts.completed.load(Ordering::Relaxed);
    let fails = |c: &FailCounts, name: &str| {
        serde_json::json!({
            "attempted": c.attempted.load(Ordering::Relaxed),
            name: c.expected.load(Ordering::Relaxed),
            "other": c.other.load(Ordering::Relaxed),
        })
    };
    println!(
        "{}",
        serde_json::json!({
            "attempted": counts.attempted.load(Ordering::Relaxed),
            "completed": completed,
            "connect_failed": counts.connect_failed.load(Ordering::Relaxed),
            "io_failed": counts.io_failed.load(Ordering::Relaxed),
            "elapsed_seconds": elapsed,
            "achieved_rate": completed as f64 / elapsed,
            "refused": fails(&refused, "refused"),
            "timed_out": fails(&timed_out, "timed_out"),
        })
    );
    Ok(())
}

fn one_connection(target: SocketAddr, counts: &Counts) {
    let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
        counts.connect_failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut response = Vec::with_capacity(RESPONSE);
    let ok = stream.write_all(&[b'x'; REQUEST]).is_ok()
        && stream.read_to_end(&mut response).is_ok()
        && response.len() == RESPONSE;
    let counter = if ok {
        &counts.completed
    } else {
        &counts.io_failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
}
