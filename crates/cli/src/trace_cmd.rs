//! `nfscope trace` and `GET /api/trace`: which rule decides a packet's fate, in Kubernetes terms.
//!
//! Owns the command-line flags of the tracer, building a `TraceInput` from dumps (`--rules`,
//! repeatable, each auto-detected as `iptables-save`, `nft list ruleset` text or `nft -j list
//! ruleset` JSON; `--ipsets`, `--local-ip`, `--routes`) or from the live node (rules of both
//! backends and families, `ipset save`, addresses, routes, interface names; optionally in
//! `--netns`), and printing the text or JSON report. The tracing itself is `nfscope-trace`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use nfscope_ruleset::typed::{NftFamily, NftRuleset};
use nfscope_ruleset::{Family, Format as DumpFormat, NftLimits, ParseOptions, Ruleset};
use nfscope_trace::{CtState, Packet, Proto, TraceInput, Tracer, parse_routes, report};

use crate::cli::{Format, seconds};
use crate::exit::Failure;
use crate::output::print_stdout;

const TRACE_EXAMPLES: &str = "Examples:
  nfscope trace --src 192.168.1.50 --dst 10.96.0.10 --proto tcp --dport 80 --in eth0
  nfscope trace --rules node.rules --ipsets node.ipset --local-ip 192.168.1.10 --routes routes.txt \\
      --src 192.168.1.50 --dst 10.42.0.7 --proto tcp --dport 8082 --in eth0 --format json
  nfscope trace --rules iptables-save.txt --rules nft-ruleset.txt --local-ip 192.168.1.10 \\
      --src 10.42.1.7 --dst 10.43.0.10 --proto udp --dport 53 --in cni0";

/// `nfscope trace`.
#[derive(Debug, Args)]
#[command(after_help = TRACE_EXAMPLES)]
pub struct TraceArgs {
    /// Source address of the packet.
    #[arg(long, value_name = "IP")]
    pub src: IpAddr,
    /// Destination address of the packet (before any DNAT).
    #[arg(long, value_name = "IP")]
    pub dst: IpAddr,
    /// Protocol: tcp, udp, icmp, icmpv6 or sctp.
    #[arg(long, value_parser = parse_proto)]
    pub proto: Proto,
    /// Source port: a number or a service name (http, ssh, …). [default: unknown: rules on it
    /// are undetermined]
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub sport: Option<u16>,
    /// Destination port: a number or a service name (http, ssh, …).
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    pub dport: Option<u16>,
    /// The packet arrives on this interface (PREROUTING). [default: locally generated (OUTPUT)]
    #[arg(long = "in", value_name = "IFACE")]
    pub in_iface: Option<String>,
    /// The packet leaves by this interface. [default: from the routes]
    #[arg(long = "out", value_name = "IFACE")]
    pub out_iface: Option<String>,
    /// Conntrack state: new, established, related, invalid. nat rules run only for new.
    #[arg(long, value_parser = parse_ct_state, default_value = "new")]
    pub ct_state: CtState,
    /// Packet mark on entry (decimal or 0x hex).
    #[arg(long, value_parser = parse_u32, value_name = "VALUE")]
    pub mark: Option<u32>,
    /// Trace offline against this dump (`-` is stdin): `iptables-save`, `nft list ruleset` or
    /// `nft -j list ruleset` output, detected from the content; repeat for IPv6, the other
    /// backend, or a node's iptables and nft dumps together. [default: live]
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// `ipset save` output (offline mode).
    #[arg(long, value_name = "FILE", requires = "rules")]
    pub ipsets: Option<PathBuf>,
    /// A local address of the node (offline mode); repeat.
    #[arg(long = "local-ip", value_name = "IP", requires = "rules")]
    pub local_ip: Vec<IpAddr>,
    /// `ip route` or `ip -6 route` output (offline mode); repeat for both families.
    #[arg(long, value_name = "FILE", requires = "rules")]
    pub routes: Vec<PathBuf>,
    /// Trace in this network namespace (live mode).
    #[arg(long, value_name = "NAME", conflicts_with = "rules")]
    pub netns: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Skip lines of the dumps that are not understood instead of failing.
    #[arg(long)]
    pub lenient: bool,
    /// Cap on explored branches.
    #[arg(long, default_value_t = nfscope_trace::DEFAULT_MAX_BRANCHES)]
    pub max_branches: usize,
    /// Time limit in seconds for each tool run in live mode.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

fn parse_proto(s: &str) -> Result<Proto, String> {
    s.parse()
        .map_err(|e: nfscope_trace::TraceError| e.to_string())
}

fn parse_ct_state(s: &str) -> Result<CtState, String> {
    s.parse()
        .map_err(|e: nfscope_trace::TraceError| e.to_string())
}

/// A port as iptables takes it: a number 0-65535, or a service name from the parser's one
/// table of well-known names (`http`, `ssh`, `domain`, …).
fn parse_port(s: &str) -> Result<u16, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("{s:?} is out of range: expected a port 0-65535"));
    }
    nfscope_ruleset::nft::service_port(s).ok_or_else(|| {
        format!(
            "{s:?} is not a port: expected a number 0-65535 or a known service name \
             (http, https, ssh, domain, …)"
        )
    })
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not a 32-bit number (decimal or 0x hex)"))
}

impl TraceArgs {
    fn packet(&self) -> Packet {
        let mut p = Packet::new(self.src, self.dst, self.proto);
        p.sport = self.sport;
        p.dport = self.dport;
        p.in_iface = self.in_iface.clone();
        p.out_iface = self.out_iface.clone();
        p.ct_state = self.ct_state;
        p.mark = self.mark.unwrap_or(0);
        p
    }
}

/// Runs the command.
pub fn run(args: &TraceArgs) -> Result<(), Failure> {
    let mut input = if args.rules.is_empty() {
        live_input(args.netns.as_deref(), args.timeout)?
    } else {
        offline_input(args)?
    };
    input.max_branches = args.max_branches;
    let packet = args.packet();
    let text = trace_to_text(&input, &packet, args.format)?;
    print_stdout(&text)?;
    nothing_read(&input)
}

/// Exit status 1 when no ruleset could be read at all (the report, printed first, says which
/// sources failed and why; its verdict is UNDETERMINED).
fn nothing_read(input: &TraceInput) -> Result<(), Failure> {
    let failed: Vec<String> = input
        .unread
        .iter()
        .filter(|u| u.source == "rules")
        .map(|u| format!("{}: {}", u.describe(), u.reason))
        .collect();
    if input.rulesets.is_empty() && !failed.is_empty() {
        return Err(Failure::Other(anyhow::anyhow!(
            "no ruleset could be read: {}",
            failed.join("; ")
        )));
    }
    Ok(())
}

fn trace_to_text(input: &TraceInput, packet: &Packet, format: Format) -> Result<String, Failure> {
    let result = Tracer::new(input)
        .trace(packet)
        .map_err(|e| Failure::Input(e.to_string()))?;
    let annotations: Vec<_> = input
        .rulesets
        .iter()
        .map(nfscope_annotate::annotate)
        .collect();
    let report = report::build_report(input, &annotations, packet, &result);
    Ok(match format {
        Format::Text => report::render_text(packet, &report),
        Format::Json => serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)? + "\n",
    })
}

fn read_text(path: &PathBuf) -> Result<String, Failure> {
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    let bytes = bytes.map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|_| Failure::Input(format!("{}: not valid UTF-8", path.display())))
}

fn offline_input(args: &TraceArgs) -> Result<TraceInput, Failure> {
    let options = ParseOptions {
        family: None,
        backend: None,
        lenient: args.lenient,
        ..Default::default()
    };
    let mut rulesets: Vec<Ruleset> = Vec::new();
    let mut native: Vec<NftRuleset> = Vec::new();
    for path in &args.rules {
        let text = read_text(path)?;
        let at = |e: nfscope_ruleset::ParseError| {
            Failure::Input(format!(
                "{}:{}:{}: {}",
                path.display(),
                e.line,
                e.column,
                e.message
            ))
        };
        match nfscope_ruleset::detect_format(&text) {
            DumpFormat::IptablesSave => {
                rulesets.push(nfscope_ruleset::parse_ruleset(&text, &options).map_err(at)?);
            }
            DumpFormat::NftText => {
                native.push(
                    nfscope_ruleset::parse_nft_text(&text, &NftLimits::default()).map_err(at)?,
                );
            }
            DumpFormat::NftJson => {
                native.push(
                    nfscope_ruleset::parse_nft_json(&text, &NftLimits::default()).map_err(at)?,
                );
            }
        }
    }
    drop_tables_given_twice(&mut native, &rulesets);
    let mut input = TraceInput::new(rulesets);
    input.native = native;
    if let Some(path) = &args.ipsets {
        let sets = nfscope_ruleset::parse_ipsets(&read_text(path)?).map_err(|e| {
            Failure::Input(format!(
                "{}:{}:{}: {}",
                path.display(),
                e.line,
                e.column,
                e.message
            ))
        })?;
        input.ipsets = Some(sets);
    }
    input.local_addrs = args.local_ip.clone();
    for path in &args.routes {
        let routes = parse_routes(&read_text(path)?)
            .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
        input
            .routes
            .get_or_insert_with(Default::default)
            .extend(routes);
    }
    Ok(input)
}

/// Tables iptables-nft manages (`# Warning: table ip filter is managed by iptables-nft`) are
/// iptables rules: when an iptables dump of that family was given too, they are traced from it and
/// dropped here, else they would run twice. Without such a dump they stay (their `xt`
/// expressions are not modelled, which makes the rules that use them MAY).
fn drop_tables_given_twice(native: &mut [NftRuleset], rulesets: &[Ruleset]) {
    for rs in native {
        let managed: Vec<(NftFamily, String)> = rs
            .notices
            .iter()
            .filter_map(|n| {
                let rest = n.split("table ").nth(1)?;
                let (head, _) = rest.split_once(" is managed by iptables-nft")?;
                let (family, name) = head.split_once(' ')?;
                Some((NftFamily::parse(family)?, name.to_owned()))
            })
            .collect();
        rs.tables.retain(|t| {
            let given = managed.iter().any(|(f, n)| *f == t.family && *n == t.name)
                && rulesets.iter().any(|r| {
                    r.family
                        == match t.family {
                            NftFamily::Ip6 => Family::Ipv6,
                            _ => Family::Ipv4,
                        }
                });
            if given {
                tracing::warn!(
                    table = %format!("{} {}", t.family, t.name),
                    "nft table managed by iptables-nft is traced from the iptables dump, not twice"
                );
            }
            !given
        });
    }
}

/// The live node (or `netns`): rules of both backends and families, ipset members, addresses,
/// routes and interface names.
pub fn live_input(netns: Option<&str>, timeout_seconds: f64) -> Result<TraceInput, Failure> {
    let timeout = seconds("--timeout", timeout_seconds).map_err(Failure::Input)?;
    live_input_with(nfscope_kernel::CollectOptions {
        netns: netns.map(str::to_owned),
        timeout,
        ..Default::default()
    })
}

/// [`live_input`] with the server's collection options (namespace, sources, tool folder).
fn live_input_with(mut options: nfscope_kernel::CollectOptions) -> Result<TraceInput, Failure> {
    let netns = options.netns.clone();
    let netns = netns.as_deref();
    let timeout = options.timeout;
    options.ipsets = false;
    options.conntrack = false;
    let snapshot = nfscope_kernel::collect(&options);
    for source in &snapshot.sources {
        if let Some(error) = &source.error {
            tracing::warn!(method = %source.method, %error, "source failed");
        }
    }
    // Each source that could not be read is named in the report and lowers its certainty.
    let unread = crate::rules_cmd::unread_sources(&snapshot);
    let host = nfscope_kernel::host::read_host(netns, timeout, options.tool_dir.as_deref())
        .map_err(|e| Failure::Other(anyhow::Error::new(e)))?;
    // Native tables (the reader leaves iptables-nft's out); a failed read is in `unread`.
    let native = snapshot.nftables.ruleset.as_deref().cloned();
    let mut input = TraceInput::new(snapshot.rulesets);
    input.native = native.into_iter().collect();
    input.unread = unread;
    input.ipsets = match host.ipsets {
        Some(Ok(sets)) => Some(sets),
        Some(Err(error)) => {
            tracing::warn!(%error, "ipset contents unavailable: set matches will be undetermined");
            input.unread.push(nfscope_trace::Unread {
                source: "ipsets".to_owned(),
                method: "exec ipset save".to_owned(),
                family: None,
                backend: None,
                reason: error.to_string(),
            });
            None
        }
        None => None,
    };
    input.local_addrs = host.local_addrs;
    match read_multicast_groups(netns) {
        Ok(groups) => input.multicast_groups = Some(groups),
        Err(reason) => input.unread.push(nfscope_trace::Unread {
            source: "multicast groups".to_owned(),
            method: "procfs net/igmp, net/igmp6".to_owned(),
            family: None,
            backend: None,
            reason,
        }),
    }
    let routes_error =
        |e: nfscope_trace::TraceError| Failure::Other(anyhow::anyhow!("ip route output: {e}"));
    let mut routes = parse_routes(&host.routes_v4).map_err(routes_error)?;
    routes.extend(parse_routes(&host.routes_v6).map_err(routes_error)?);
    input.routes = Some(routes);
    input.interfaces = Some(host.interfaces);
    Ok(input)
}

/// The multicast groups joined per interface in `netns` (`/proc/net/igmp`, `igmp6`; a kernel
/// without IPv6 has no `igmp6`).
fn read_multicast_groups(netns: Option<&str>) -> Result<Vec<(String, IpAddr)>, String> {
    let read = || {
        let v4 = std::fs::read_to_string("/proc/thread-self/net/igmp")
            .map_err(|e| format!("/proc/net/igmp: {e}"))?;
        let v6 = std::fs::read_to_string("/proc/thread-self/net/igmp6").unwrap_or_default();
        nfscope_trace::parse_multicast_groups(&v4, &v6).map_err(|e| e.to_string())
    };
    nfscope_kernel::run_in_netns(netns, read)
        .map_err(|e| format!("network namespace: {e}"))
        .and_then(|r| r)
}

/// The live node's `TraceInput` as `/api/trace` reads it, with the error as text: what
/// `nfscope_server::failure_explain::FailureExplainer::new` reads the rules with.
pub fn live_trace_input(options: nfscope_kernel::CollectOptions) -> Result<TraceInput, String> {
    live_input_with(options).map_err(failure_text)
}

/// The query keys `/api/trace` understands (`ct-state` is accepted for `ct_state`).
pub const API_TRACE_KEYS: &[&str] = &[
    "src", "dst", "proto", "sport", "dport", "in", "out", "ct_state", "ct-state", "mark",
];

/// What `/api/trace` answers from: the live rules with their Kubernetes meaning, read once and
/// shared by every request until the server refreshes it.
pub struct TraceModel {
    input: TraceInput,
    annotations: Vec<nfscope_annotate::Annotations>,
}

impl TraceModel {
    /// Reads the live node once as `options` say (namespace, sources, tool folder, timeout):
    /// rules of both backends and families, ipset members, addresses, routes.
    pub fn live(options: nfscope_kernel::CollectOptions) -> Result<Self, String> {
        let input = live_trace_input(options)?;
        let annotations = input
            .rulesets
            .iter()
            .map(nfscope_annotate::annotate)
            .collect();
        Ok(Self { input, annotations })
    }

    /// The JSON report for the packet `params` describe (pairs already checked for unknown and
    /// repeated keys). `Err` is `(status, message)`.
    pub fn answer(&self, params: &[(&str, &str)]) -> Result<String, (u16, String)> {
        let packet = packet_from_query(params).map_err(|m| (400, m))?;
        let result = Tracer::new(&self.input)
            .trace(&packet)
            .map_err(|e| (400, e.to_string()))?;
        let report = report::build_report(&self.input, &self.annotations, &packet, &result);
        serde_json::to_string_pretty(&report)
            .map(|body| body + "\n")
            .map_err(|e| (500, format!("encoding failed: {e}")))
    }
}

/// The packet of a `/api/trace` query: `src`, `dst`, `proto` required; `sport`, `dport`, `in`,
/// `out`, `ct_state`, `mark` optional.
fn packet_from_query(params: &[(&str, &str)]) -> Result<Packet, String> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
    };
    let addr = |k: &str| -> Result<IpAddr, String> {
        let v = get(k).ok_or_else(|| format!("missing parameter {k}"))?;
        v.parse()
            .map_err(|_| format!("{k}={v:?} is not an IP address"))
    };
    let port = |k: &str| -> Result<Option<u16>, String> {
        get(k)
            .map(|v| parse_port(v).map_err(|e| format!("{k}: {e}")))
            .transpose()
    };
    let proto = parse_proto(get("proto").ok_or("missing parameter proto")?)?;
    let mut packet = Packet::new(addr("src")?, addr("dst")?, proto);
    packet.sport = port("sport")?;
    packet.dport = port("dport")?;
    packet.in_iface = get("in").map(str::to_owned);
    packet.out_iface = get("out").map(str::to_owned);
    if let Some(state) = get("ct_state").or(get("ct-state")) {
        packet.ct_state = parse_ct_state(state)?;
    }
    if let Some(mark) = get("mark") {
        packet.mark = parse_u32(mark)?;
    }
    Ok(packet)
}

fn failure_text(f: Failure) -> String {
    match f {
        Failure::Input(m) => m,
        Failure::Other(e) => format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(dport: &str) -> Result<Packet, String> {
        packet_from_query(&[
            ("src", "10.0.0.1"),
            ("dst", "10.0.0.2"),
            ("proto", "tcp"),
            ("dport", dport),
        ])
    }

    #[test]
    fn a_port_is_a_number_or_a_service_name_of_the_parsers_table() {
        assert_eq!(query("443").unwrap().dport, Some(443));
        assert_eq!(query("https").unwrap().dport, Some(443));
        assert_eq!(query("domain").unwrap().dport, Some(53));
        for bad in ["nosuchservice", "65536", "HTTP", "-1", "80x"] {
            let err = query(bad).unwrap_err();
            assert!(
                err.starts_with("dport: ") && err.contains(bad) && err.contains("expected"),
                "{bad}: {err}"
            );
        }
    }
}
