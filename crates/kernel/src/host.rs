//! Host facts the packet tracer needs from the live node: ipset contents with members
//! (`ipset save`), the local addresses (`ip -o addr`), routes of both families including the
//! local table (`ip route show table all`) and interface names (`ip -o link`).
//!
//! Owns forking those tools (in a named network namespace when asked) and the small parsing of
//! `ip -o` lines; the route text itself is handed back as text for `nfscope_trace::parse_routes`.
//! It does not trace and does not modify anything.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use nfscope_ruleset::IpSet;
use nfscope_ruleset::ipset::parse_ipsets;

use crate::error::KernelError;
use crate::exec::{find_tool, run_tool};
use crate::netns::run_in_netns;

/// What the tracer needs besides the rulesets.
#[derive(Debug, Default)]
pub struct HostFacts {
    /// Every ipset with its members; `Err` when `ipset` is missing or failed.
    pub ipsets: Option<Result<Vec<IpSet>, String>>,
    /// The node's addresses, both families.
    pub local_addrs: Vec<IpAddr>,
    /// `ip route show table all`.
    pub routes_v4: String,
    /// `ip -6 route show table all`.
    pub routes_v6: String,
    /// Interface names (without the `@peer` suffix).
    pub interfaces: Vec<String>,
}

/// Reads the host facts in `netns` (or our own namespace). Fails only when `ip` cannot be run or
/// the namespace cannot be entered; ipset trouble is reported inside [`HostFacts::ipsets`].
pub fn read_host(
    netns: Option<&str>,
    timeout: Duration,
    tool_dir: Option<&Path>,
) -> Result<HostFacts, KernelError> {
    let read = || read_host_here(timeout, tool_dir);
    match netns {
        None => read(),
        Some(name) => run_in_netns(Some(name), read).map_err(|source| KernelError::Spawn {
            tool: format!("setns {name}"),
            source,
        })?,
    }
}

fn read_host_here(timeout: Duration, tool_dir: Option<&Path>) -> Result<HostFacts, KernelError> {
    let ip = find_tool("ip", tool_dir)?;
    let run = |args: &[&str]| run_tool("ip", &ip, args, timeout).map(|o| o.stdout);
    let addrs = run(&["-o", "addr", "show"])?;
    let links = run(&["-o", "link", "show"])?;
    let routes_v4 = run(&["route", "show", "table", "all"])?;
    let routes_v6 = run(&["-6", "route", "show", "table", "all"]).unwrap_or_default();
    Ok(HostFacts {
        ipsets: Some(read_ipset_members(timeout, tool_dir)),
        local_addrs: parse_addr_lines(&addrs),
        routes_v4,
        routes_v6,
        interfaces: parse_link_lines(&links),
    })
}

/// `ipset save`: every set with its members. No sets when the ipset module is not loaded.
fn read_ipset_members(timeout: Duration, tool_dir: Option<&Path>) -> Result<Vec<IpSet>, String> {
    if Path::new("/sys/module").is_dir() && !Path::new("/sys/module/ip_set").exists() {
        return Ok(Vec::new());
    }
    let path = find_tool("ipset", tool_dir).map_err(|e| e.to_string())?;
    let output = run_tool("ipset", &path, &["save"], timeout).map_err(|e| e.to_string())?;
    parse_ipsets(&output.stdout).map_err(|e| format!("ipset save: {e}"))
}

/// Addresses from `ip -o addr show` lines (`2: eth0    inet 10.0.0.1/24 brd … scope global eth0`).
pub fn parse_addr_lines(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// Interface names from `ip -o link show` lines (`3: veth0@if2: <BROADCAST,…> …`).
pub fn parse_link_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let name = line.split(": ").nth(1)?;
            Some(name.split('@').next()?.to_owned())
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_and_link_lines_parse() {
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                     2: eth0    inet6 fd00::5/64 scope global \\       valid_lft forever\n";
        assert_eq!(
            parse_addr_lines(addrs),
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n\
                     5: veth-a@if4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\n";
        assert_eq!(
            parse_link_lines(links),
            vec!["lo".to_owned(), "veth-a".to_owned()]
        );
    }
}
