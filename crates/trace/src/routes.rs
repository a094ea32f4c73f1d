//! A small `ip route` / `ip -6 route` output parser and the route lookup the tracer needs.
//!
//! Owns turning `ip route show [table all]` text into a [`RouteTable`] and answering "which
//! interface does a packet to this address leave by, and with which preferred source". The main
//! table decides; `local` and `broadcast` entries (from `table local`) add local and broadcast
//! addresses. Other tables and policy routing rules are ignored (documented approximation). It
//! does not read the kernel (see `nfscope-kernel`).

use std::net::IpAddr;

use crate::TraceError;

/// What kind of route an entry is (`ip route` prints the type first when it is not unicast).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Forward to a next hop or a directly connected network.
    Unicast,
    /// Addressed to this host.
    Local,
    /// A broadcast address of a local network.
    Broadcast,
    /// Silently discarded.
    Blackhole,
    /// Rejected with "host unreachable".
    Unreachable,
    /// Rejected with "prohibited".
    Prohibit,
    /// Lookup continues in another table (treated as no route).
    Throw,
    /// Multicast or anycast and other rare types.
    Other,
}

/// One route entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Type of the route.
    pub kind: RouteKind,
    /// Destination network address.
    pub dst: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Next hop, if any.
    pub via: Option<IpAddr>,
    /// Outgoing interface, if any.
    pub dev: Option<String>,
    /// Preferred source address, if any.
    pub src: Option<IpAddr>,
    /// Metric (0 when not printed).
    pub metric: u32,
}

impl Route {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.dst, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix_len,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix_len)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    a & mask == b & mask
}

/// Routes of both families, as parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Entries in input order.
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// The route a packet to `dst` takes: `local`/`broadcast` entries first (the local table),
    /// then the longest matching prefix, lowest metric on ties.
    pub fn lookup(&self, dst: IpAddr) -> Option<&Route> {
        let local = self
            .routes
            .iter()
            .filter(|r| {
                matches!(r.kind, RouteKind::Local | RouteKind::Broadcast) && r.contains(dst)
            })
            .max_by_key(|r| r.prefix_len);
        local.or_else(|| {
            self.routes
                .iter()
                .filter(|r| {
                    !matches!(r.kind, RouteKind::Local | RouteKind::Broadcast) && r.contains(dst)
                })
                .min_by_key(|r| (std::cmp::Reverse(r.prefix_len), r.metric))
        })
    }

    /// Addresses the `local` entries name (host routes only, as `ip route show table local` lists them).
    pub fn local_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.routes
            .iter()
            .filter(|r| {
                r.kind == RouteKind::Local
                    && matches!(
                        (r.dst, r.prefix_len),
                        (IpAddr::V4(_), 32) | (IpAddr::V6(_), 128)
                    )
            })
            .map(|r| r.dst)
    }

    /// Is `ip` covered by a `local` entry (e.g. `local 127.0.0.0/8`)?
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.routes
            .iter()
            .any(|r| r.kind == RouteKind::Local && r.contains(ip))
    }

    /// Is `ip` a broadcast address per a `broadcast` entry?
    pub fn is_broadcast(&self, ip: IpAddr) -> bool {
        self.routes
            .iter()
            .any(|r| r.kind == RouteKind::Broadcast && r.contains(ip))
    }

    /// The preferred source address of some route on `dev` (what MASQUERADE would pick).
    pub fn source_for_dev(&self, dev: &str, family_of: IpAddr) -> Option<IpAddr> {
        self.routes
            .iter()
            .filter(|r| r.dev.as_deref() == Some(dev))
            .filter_map(|r| r.src)
            .find(|s| s.is_ipv4() == family_of.is_ipv4())
    }

    /// The address REDIRECT/TPROXY use on `dev` for a packet to `dst`: the preferred source of
    /// its routes, else (IPv6 routes carry no `src`) the one local address of `dev` in `dst`'s
    /// scope (link-local or not). `None` when unknown or when several could be first.
    pub fn primary_address(&self, dev: &str, dst: IpAddr) -> Option<IpAddr> {
        if let Some(src) = self.source_for_dev(dev, dst) {
            return Some(src);
        }
        let link_local =
            |ip: IpAddr| matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        let candidates: std::collections::BTreeSet<IpAddr> = self
            .routes
            .iter()
            .filter(|r| {
                r.kind == RouteKind::Local
                    && r.dev.as_deref() == Some(dev)
                    && r.dst.is_ipv4() == dst.is_ipv4()
                    && r.prefix_len == if r.dst.is_ipv4() { 32 } else { 128 }
                    && link_local(r.dst) == link_local(dst)
            })
            .map(|r| r.dst)
            .collect();
        let mut candidates = candidates.into_iter();
        let first = candidates.next()?;
        candidates.next().is_none().then_some(first)
    }

    /// Adds the routes of `other` (e.g. the IPv6 table to the IPv4 one).
    pub fn extend(&mut self, other: Self) {
        self.routes.extend(other.routes);
    }

    /// Every interface name the table mentions.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().filter_map(|r| r.dev.as_deref())
    }
}

/// Parses `ip route` / `ip -6 route` / `ip route show table all` output. Lines of other tables
/// than main and local are skipped; a line that cannot be read is an error with line:column.
/// A `default` route without an address on its line belongs to IPv6 when the text has IPv6
/// addresses and no IPv4 ones (`ip -6 route` output), else to IPv4. Parse the outputs of
/// `ip route` and `ip -6 route` separately and [`RouteTable::extend`] one with the other.
pub fn parse_routes(text: &str) -> Result<RouteTable, TraceError> {
    let mut table = RouteTable::default();
    let v6_text = looks_v6(text);
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("nexthop") {
            attach_nexthop(&mut table, line);
            continue;
        }
        if let Some(route) = parse_route_line(index + 1, raw, v6_text)? {
            table.routes.push(route);
        }
    }
    Ok(table)
}

/// A multipath route's first `nexthop via … dev …` fills the previous entry's gaps.
fn attach_nexthop(table: &mut RouteTable, line: &str) {
    let Some(last) = table.routes.last_mut() else {
        return;
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.windows(2) {
        match pair[0] {
            "via" if last.via.is_none() => last.via = pair[1].parse().ok(),
            "dev" if last.dev.is_none() => last.dev = Some(pair[1].to_owned()),
            _ => {}
        }
    }
}

/// Does the text name IPv6 addresses and no IPv4 ones?
fn looks_v6(text: &str) -> bool {
    let words = || {
        text.split_whitespace()
            .map(|w| w.split('/').next().unwrap_or(w))
            .filter_map(|w| w.parse::<IpAddr>().ok())
    };
    words().any(|ip| ip.is_ipv6()) && !words().any(|ip| ip.is_ipv4())
}

fn parse_route_line(line_no: usize, raw: &str, v6_text: bool) -> Result<Option<Route>, TraceError> {
    let words: Vec<(usize, &str)> = word_offsets(raw);
    let mut i = 0;
    let mut kind = RouteKind::Unicast;
    if let Some(k) = words.first().and_then(|(_, w)| route_kind(w)) {
        kind = k;
        i = 1;
    }
    let Some(&(col, dst_word)) = words.get(i) else {
        return Err(TraceError::Routes {
            line: line_no,
            column: 1,
            message: "missing destination".into(),
        });
    };
    let (dst, prefix_len) =
        parse_destination(dst_word, &words, v6_text).ok_or_else(|| TraceError::Routes {
            line: line_no,
            column: col + 1,
            message: format!("{dst_word:?} is not a route destination"),
        })?;
    let mut route = Route {
        kind,
        dst,
        prefix_len,
        via: None,
        dev: None,
        src: None,
        metric: 0,
    };
    let mut table_name: Option<&str> = None;
    let mut j = i + 1;
    while j < words.len() {
        let key = words[j].1;
        let value = words.get(j + 1).map(|(_, w)| *w);
        let consumed = apply_route_key(&mut route, key, value, &mut table_name);
        if consumed && value.is_none() {
            return Err(TraceError::Routes {
                line: line_no,
                column: words[j].0 + 1,
                message: format!("{key} needs a value"),
            });
        }
        j += if consumed { 2 } else { 1 };
    }
    let wanted_table = matches!(table_name, None | Some("main" | "local" | "254" | "255"));
    Ok(wanted_table.then_some(route))
}

/// Applies `key value`; returns whether the key takes a value.
fn apply_route_key<'a>(
    route: &mut Route,
    key: &str,
    value: Option<&'a str>,
    table: &mut Option<&'a str>,
) -> bool {
    match key {
        "via" => route.via = value.and_then(|v| v.trim_start_matches("inet6 ").parse().ok()),
        "dev" | "oif" => route.dev = value.map(str::to_owned),
        "src" => route.src = value.and_then(|v| v.parse().ok()),
        "metric" => route.metric = value.and_then(|v| v.parse().ok()).unwrap_or(0),
        "table" => *table = value,
        "proto" | "scope" | "pref" | "mtu" | "advmss" | "realm" | "realms" | "expires"
        | "hoplimit" | "initcwnd" | "initrwnd" | "rto_min" | "tos" | "dsfield" | "nhid"
        | "weight" | "congctl" | "features" | "quickack" | "fastopen_no_cookie" | "window"
        | "rtt" | "rttvar" | "ssthresh" | "cwnd" | "reordering" | "encap" | "from" => {}
        _ => return false,
    }
    !matches!(
        key,
        "onlink" | "linkdown" | "dead" | "pervasive" | "offload" | "trap"
    )
}

fn route_kind(word: &str) -> Option<RouteKind> {
    Some(match word {
        "unicast" => RouteKind::Unicast,
        "local" => RouteKind::Local,
        "broadcast" => RouteKind::Broadcast,
        "blackhole" => RouteKind::Blackhole,
        "unreachable" => RouteKind::Unreachable,
        "prohibit" => RouteKind::Prohibit,
        "throw" => RouteKind::Throw,
        "multicast" | "anycast" | "nat" => RouteKind::Other,
        _ => return None,
    })
}

fn parse_destination(word: &str, words: &[(usize, &str)], v6_text: bool) -> Option<(IpAddr, u8)> {
    if word == "default" {
        let addrs: Vec<IpAddr> = words
            .iter()
            .filter_map(|(_, w)| w.parse::<IpAddr>().ok())
            .collect();
        let v6 = addrs.first().map_or(v6_text, IpAddr::is_ipv6);
        let any: IpAddr = if v6 {
            "::".parse().ok()?
        } else {
            "0.0.0.0".parse().ok()?
        };
        return Some((any, 0));
    }
    let (addr, len) = match word.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (word.parse::<IpAddr>().ok()?, None),
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(width);
    (len <= width).then_some((addr, len))
}

fn word_offsets(raw: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in raw.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &raw[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &raw[s..]));
    }
    out
}

/// Multicast group memberships per interface from `/proc/net/igmp` (IPv4) and
/// `/proc/net/igmp6` (IPv6) text: `(interface, group)`. A line that cannot be read is an error
/// with its line and column (`igmp` or `igmp6` in the message says which text).
pub fn parse_multicast_groups(
    igmp: &str,
    igmp6: &str,
) -> Result<Vec<(String, IpAddr)>, TraceError> {
    let mut groups = Vec::new();
    let bad = |which: &str, line: usize, column: usize, what: &str| TraceError::Routes {
        line,
        column,
        message: format!("{which}: {what}"),
    };
    // IPv4: a device line `IDX\tDEV : COUNT QUERIER`, then one tab-indented line per group whose
    // first word is the group as the kernel's native-endian hex of the network-order address.
    let mut device: Option<String> = None;
    for (i, raw) in igmp.lines().enumerate() {
        if i == 0 && raw.starts_with("Idx") || raw.trim().is_empty() {
            continue;
        }
        if raw.starts_with(char::is_whitespace) {
            let word = raw.split_whitespace().next().unwrap_or("");
            let column = raw.len() - raw.trim_start().len() + 1;
            let value = u32::from_str_radix(word, 16)
                .map_err(|_| bad("igmp", i + 1, column, "expected a hex group address"))?;
            let dev = device
                .clone()
                .ok_or_else(|| bad("igmp", i + 1, 1, "a group before any device line"))?;
            groups.push((
                dev,
                IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(value))),
            ));
        } else {
            let name = raw
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| bad("igmp", i + 1, 1, "expected `INDEX DEVICE : …`"))?;
            device = Some(name.trim_end_matches(':').to_owned());
        }
    }
    // IPv6: `IDX DEV GROUP(32 hex) USERS FLAGS TIMER`.
    for (i, raw) in igmp6.lines().enumerate() {
        let words: Vec<&str> = raw.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let (Some(dev), Some(hex)) = (words.get(1), words.get(2)) else {
            return Err(bad("igmp6", i + 1, 1, "expected `INDEX DEVICE GROUP …`"));
        };
        let value = (hex.len() == 32)
            .then(|| u128::from_str_radix(hex, 16).ok())
            .flatten()
            .ok_or_else(|| {
                let column = raw.find(hex).map_or(1, |c| c + 1);
                bad(
                    "igmp6",
                    i + 1,
                    column,
                    "expected a 32-digit hex group address",
                )
            })?;
        groups.push((
            (*dev).to_owned(),
            IpAddr::V6(std::net::Ipv6Addr::from(value)),
        ));
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
default via 192.168.1.1 dev eth0 proto dhcp src 192.168.1.10 metric 100
10.42.0.0/24 dev cni0 proto kernel scope link src 10.42.0.1
10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink
192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.10 metric 100
blackhole 10.99.0.0/16
local 192.168.1.10 dev eth0 table local proto kernel scope host src 192.168.1.10
broadcast 192.168.1.255 dev eth0 table local proto kernel scope link src 192.168.1.10
10.200.0.0/16 dev eth9 table 100
";

    #[test]
    fn longest_prefix_wins_over_default() {
        let t = parse_routes(SAMPLE).unwrap();
        let r = t.lookup("10.42.1.7".parse().unwrap()).unwrap();
        assert_eq!(r.dev.as_deref(), Some("flannel.1"));
        assert_eq!(r.via, Some("10.42.1.0".parse().unwrap()));
        let d = t.lookup("8.8.8.8".parse().unwrap()).unwrap();
        assert_eq!(d.dev.as_deref(), Some("eth0"));
        assert_eq!(d.prefix_len, 0);
    }

    #[test]
    fn local_table_entries_give_local_and_broadcast_addresses() {
        let t = parse_routes(SAMPLE).unwrap();
        assert_eq!(
            t.local_addresses().collect::<Vec<_>>(),
            vec!["192.168.1.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            t.lookup("192.168.1.10".parse().unwrap()).unwrap().kind,
            RouteKind::Local
        );
        assert!(t.is_broadcast("192.168.1.255".parse().unwrap()));
        assert_eq!(
            t.lookup("10.99.3.3".parse().unwrap()).unwrap().kind,
            RouteKind::Blackhole
        );
    }

    #[test]
    fn other_tables_are_ignored_and_sources_found() {
        let t = parse_routes(SAMPLE).unwrap();
        assert_eq!(
            t.lookup("10.200.1.1".parse().unwrap())
                .unwrap()
                .dev
                .as_deref(),
            Some("eth0")
        );
        assert_eq!(
            t.source_for_dev("cni0", "1.1.1.1".parse().unwrap()),
            Some("10.42.0.1".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_routes_parse() {
        let t = parse_routes("fd00::/64 dev eth0 proto kernel metric 256 pref medium\ndefault via fe80::1 dev eth0 proto ra metric 1024 expires 1790sec hoplimit 64 pref medium\n").unwrap();
        assert_eq!(t.lookup("fd00::5".parse().unwrap()).unwrap().prefix_len, 64);
        assert_eq!(
            t.lookup("2001:db8::1".parse().unwrap()).unwrap().via,
            Some("fe80::1".parse().unwrap())
        );
        assert!(t.lookup("10.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn bare_default_follows_the_family_of_the_text() {
        let v6 = parse_routes("default dev wan0 metric 1024 pref medium\nlocal ::1 dev lo table local proto kernel metric 0 pref medium\n").unwrap();
        assert!(v6.lookup("2001:db8::1".parse().unwrap()).is_some());
        assert!(v6.lookup("8.8.8.8".parse().unwrap()).is_none());
        let v4 = parse_routes("default dev wan0 scope link\n").unwrap();
        assert!(v4.lookup("8.8.8.8".parse().unwrap()).is_some());
    }

    #[test]
    fn bad_lines_report_line_and_column() {
        let err =
            parse_routes("default via 1.1.1.1 dev eth0\n  10.0.0.0/99 dev eth0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "routes 2:3: \"10.0.0.0/99\" is not a route destination"
        );
    }
}
