//! Node facts for `nfscope doctor`, read-only: networking sysctls, interfaces, routes, loaded
//! kernel modules and conntrack statistics of one network namespace.
//!
//! Owns *getting* the raw material: files under `/proc/sys` (opened from a thread inside the
//! namespace, so they are that namespace's values), `ip -d -j link show` and `ip -j route show`
//! output as text, `/proc/modules` and the running kernel's `modules.builtin`. It never writes a
//! sysctl or loads a module, and it does not judge anything (`nfscope-lint`'s `node` module
//! parses the `ip` JSON and decides pass / warn / fail).

use std::fs;
use std::path::Path;
use std::time::Duration;

use nfscope_ruleset::ConntrackStats;

use crate::conntrack::read_conntrack_stats;
use crate::error::KernelError;
use crate::exec::{find_tool, run_tool};
use crate::netns::run_in_netns;

/// What [`read_node`] found. Each part that could not be read says why instead.
#[derive(Debug, Clone)]
pub struct NodeReadings {
    /// Sysctls as `(dotted.name, value)`, e.g. `("net.ipv4.ip_forward", "1")`; absent ones are left
    /// out (e.g. `net.bridge.*` without br_netfilter).
    pub sysctls: Vec<(String, String)>,
    /// `ip -d -j link show` output (JSON), or why it failed.
    pub links_json: Result<String, String>,
    /// `ip -j route show` output (JSON, main table), or why it failed.
    pub routes_json: Result<String, String>,
    /// `/proc/modules`, or why it could not be read.
    pub modules: Result<String, String>,
    /// `modules.builtin` of the running kernel (empty when not found).
    pub builtin_modules: String,
    /// Conntrack fill and statistics, or why they are unavailable.
    pub conntrack: Result<ConntrackStats, String>,
}

/// Fixed sysctls the doctor looks at (per-interface `rp_filter` values are added to these).
const SYSCTLS: &[&str] = &[
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_acct",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_count",
];

/// Reads the node facts of `netns` (or our own namespace). Fails only when the namespace cannot
/// be entered; every other problem is kept in its field.
pub fn read_node(
    netns: Option<&str>,
    timeout: Duration,
    tool_dir: Option<&Path>,
) -> Result<NodeReadings, KernelError> {
    let read = || read_here(timeout, tool_dir);
    match netns {
        None => Ok(read()),
        Some(name) => run_in_netns(Some(name), read).map_err(|source| KernelError::Spawn {
            tool: format!("setns {name}"),
            source,
        }),
    }
}

fn read_here(timeout: Duration, tool_dir: Option<&Path>) -> NodeReadings {
    let ip = |args: &[&str]| -> Result<String, String> {
        let path = find_tool("ip", tool_dir).map_err(|e| e.to_string())?;
        run_tool("ip", &path, args, timeout)
            .map(|o| o.stdout)
            .map_err(|e| e.to_string())
    };
    NodeReadings {
        sysctls: read_sysctls(),
        links_json: ip(&["-d", "-j", "link", "show"]),
        routes_json: ip(&["-j", "route", "show"]),
        modules: fs::read_to_string("/proc/modules").map_err(|e| format!("/proc/modules: {e}")),
        builtin_modules: read_builtin_modules(),
        conntrack: read_conntrack_stats().map_err(|e| e.to_string()),
    }
}

fn read_sysctls() -> Vec<(String, String)> {
    let mut names: Vec<String> = SYSCTLS.iter().map(|s| (*s).to_owned()).collect();
    if let Ok(dir) = fs::read_dir("/proc/sys/net/ipv4/conf") {
        let mut ifaces: Vec<String> = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        ifaces.sort();
        names.extend(
            ifaces
                .iter()
                .map(|i| format!("net/ipv4/conf/{i}/rp_filter")),
        );
    }
    names
        .into_iter()
        .filter_map(|name| {
            let value = fs::read_to_string(format!("/proc/sys/{name}")).ok()?;
            Some((name.replace('/', "."), value.trim().to_owned()))
        })
        .collect()
}

fn read_builtin_modules() -> String {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    fs::read_to_string(format!("/lib/modules/{}/modules.builtin", release.trim()))
        .unwrap_or_default()
}
