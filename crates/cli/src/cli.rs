//! The command line: clap definitions and their translation into library options.
//!
//! Every flag says its default; each command ends its `--help` with examples. Turning parsed
//! flags into `CollectOptions` / `ExportOptions` happens here too, so `main` stays a dispatcher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nfscope_ruleset::{Backend, Family};
use nfscope_server::oneshot;

use crate::demo::DemoArgs;
use crate::serve::ServeConfig;

const TOP_EXAMPLES: &str = "\
Examples:
  nfscope rules                                 # live rules of this namespace, with counters
  iptables-save -c | nfscope rules --rules -    # explain a dump read from stdin
  nfscope serve --listen 127.0.0.1:9455         # Prometheus exporter
  nfscope demo                                  # a throwaway lab to try it on

Logging goes to stderr; set RUST_LOG (default: info), e.g. RUST_LOG=nfscope=debug.
Exit codes: 0 ok, 2 unusable input (unreadable file, parse error), 1 other failures.";

const RULES_EXAMPLES: &str = "\
Examples:
  nfscope rules                                   # live: both families, both backends
  nfscope rules --family ipv6 --backend nft       # live, one family and backend
  nfscope rules --netns blue --format json        # live, inside `ip netns` namespace `blue`
  nfscope rules --rules v4.rules --rules v6.rules # two saved dumps
  iptables-save -c | nfscope rules --rules -      # from stdin
  nfscope rules --rules v4.rules --rules nft.txt  # iptables and `nft list ruleset` dumps
  nfscope rules --rules node.rules --ipsets node.ipset --lenient";

const SERVE_EXAMPLES: &str = "\
Examples:
  nfscope serve                                   # 0.0.0.0:9455, every scrape collects
  nfscope serve --listen 127.0.0.1:9455 --netns blue
  nfscope serve --rule-label full --max-rule-series 50000
  nfscope serve --cache-seconds 5                 # scrapes within 5 s reuse one collection

Endpoints:
  /                  index of these endpoints
  /metrics           Prometheus text exposition
  /healthz           liveness; never waits for a collection
  /api/rules         every ruleset as JSON (iptables and native nftables; concurrent requests
                     share one read, reused for --api-reuse-seconds)
  /api/trace         which rule decides a packet's fate (?src=&dst=&proto=&dport=…)
  /api/lint          the lint findings of the live rules as JSON (as `nfscope lint --format json`)
  /ui/               web console for a browser: rules (with findings), traces, graph, failures
  with --flows also:
  /api/flows         live and recent TCP connections as JSON
  /api/failures      failed connection attempts (refused, reset, timeout, unreachable) as JSON
  /api/health        the flow monitor's sources
  /api/graph/fields  Grafana Node Graph field definitions
  /api/graph/data    Grafana Node Graph nodes and edges

Concurrent scrapes always share one collection. A collection that does not finish within --timeout
plus a small grace answers 503 with a plain-text reason (Prometheus then records up=0); the stuck
collection keeps running and later scrapes join it instead of piling up. Lint findings
(nfscope_lint_findings) are computed in the background after the rules change; a scrape never
waits for them and shows the previous counts meanwhile (none before the first lint is done).";

/// Netfilter observability for Kubernetes nodes.
#[derive(Debug, Parser)]
#[command(name = "nfscope", version, about, after_help = TOP_EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the parsed, annotated ruleset with counters (live, or from saved dumps).
    Rules(RulesArgs),
    /// Run the Prometheus exporter and JSON API over HTTP.
    Serve(ServeArgs),
    /// Start a throwaway lab (network namespaces, rules, traffic) and serve its metrics.
    Demo(DemoArgs),
    /// Trace a packet through the rules: which rule decides its fate, in Kubernetes terms.
    Trace(crate::trace_cmd::TraceArgs),
    /// Find what is broken in the rules: missing targets, duplicates, shadowed rules, stale chains.
    Lint(crate::lint_cmd::LintArgs),
    /// Check this node: the lint plus forwarding, rp_filter, bridge netfilter, conntrack, tunnels, MTU.
    Doctor(crate::doctor_cmd::DoctorArgs),
    /// Watch TCP connections: who talks to whom, bytes, handshake time, how they ended.
    Flows(crate::flows_cmd::FlowsArgs),
    /// Watch failed connection attempts: refused, reset, timed out, unreachable.
    Failures(crate::failures_cmd::FailuresArgs),
}

/// `nfscope rules`.
#[derive(Debug, Args)]
#[command(after_help = RULES_EXAMPLES)]
pub struct RulesArgs {
    /// Read a dump from FILE instead of the live kernel; `-` is stdin: `iptables-save` /
    /// `ip6tables-save` output (or restore input), `nft list ruleset` text or `nft -j list
    /// ruleset` JSON, told apart by content. Repeat for several dumps (IPv4 and IPv6, or a node's
    /// iptables and nft dumps together). [default: live]
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Read `ipset save`/`ipset list` output from FILE (only with --rules). [default: none]
    #[arg(long, value_name = "FILE", requires = "rules")]
    pub ipsets: Option<PathBuf>,
    /// Only this address family (native `inet` tables serve both; arp/bridge/netdev tables are left
    /// out); with --rules, the family of iptables dumps that do not say. [default: all]
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    /// Only these rules: `nft` or `legacy` iptables rules, or `nftables` (native tables only); with
    /// --rules, `nft`/`legacy` is also the backend of iptables dumps without a header. [default: all]
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Skip lines that are not understood (pasted prompts, markdown damage) instead of failing;
    /// each skipped line is reported as a notice. [default: strict]
    #[arg(long)]
    pub lenient: bool,
    /// Collect inside the named network namespace (`ip netns` name) instead of the current one.
    /// [default: current namespace]
    #[arg(long, value_name = "NAME", conflicts_with = "rules")]
    pub netns: Option<String>,
    /// Per-tool timeout for live collection, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Look up the save tools (`iptables-nft-save`, …, `ipset`) only in DIR instead of `PATH`
    /// and the sbin folders. [default: PATH, then /usr/sbin, /sbin, /usr/local/sbin]
    #[arg(long, value_name = "DIR", conflicts_with = "rules")]
    pub tool_dir: Option<PathBuf>,
}

/// `nfscope serve`.
#[derive(Debug, Args)]
#[command(after_help = SERVE_EXAMPLES)]
pub struct ServeArgs {
    /// Name pod, workload, Service and node IPs from the Kubernetes API: `auto` watches it when an
    /// in-cluster config or a kubeconfig exists (else runs without), `off` never contacts it.
    #[arg(long, value_enum, default_value_t = crate::kube_glue::KubeMode::Auto)]
    pub kube: crate::kube_glue::KubeMode,
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9455")]
    pub listen: SocketAddr,
    /// Collect inside the named network namespace (`ip netns` name). [default: current namespace]
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Whether per-rule series carry the canonical rule text as a `rule` label (`full`,
    /// retailnext-compatible) or only `rule_id` and `comment` (`none`, smaller series).
    #[arg(long, value_enum, default_value_t = RuleLabelArg::Full)]
    pub rule_label: RuleLabelArg,
    /// Per-tool collection timeout in seconds; a whole collection gets this plus a 2 s grace
    /// before requests give up on it with 503.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Time limit for the save tools when the netlink source falls back to them for the rule
    /// *text* (only after the ruleset changed, and only for rules the kernel decoder cannot
    /// render: counted in nfscope_rule_text_fallbacks_total). On big nf_tables rulesets that
    /// read takes minutes (iptables-nft-save 1.8.9: 11 s at 72k rules, 192 s at 290k); scrapes
    /// answer 503 until the first text is read. Never less than --timeout.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub text_timeout: f64,
    /// Cardinality budget: at most N rules get `iptables_rule_*` series per scrape; the rest are
    /// counted in `nfscope_rule_series_dropped_total` (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = 500_000)]
    pub max_rule_series: usize,
    /// Which rules get `iptables_rule_*` series: `all`, as the iptables exporters do, or
    /// `not-summarised`: leave out rules and chains that mean one Service, endpoint, kube-router
    /// pod firewall or Calico policy, whose traffic the `nfscope_kube_*` / `nfscope_calico_*`
    /// families already carry (counted in `nfscope_rule_series_summarised`). Recommended on
    /// Kubernetes nodes (deploy/ uses it): a kube-proxy node's rule series shrink to its fixed chains.
    #[arg(long, value_enum, default_value_t = RuleSeriesArg::All)]
    pub rule_series: RuleSeriesArg,
    /// Reuse a finished collection for this many seconds. 0 means every scrape collects, but
    /// concurrent scrapes still share one collection.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub cache_seconds: f64,
    /// Look up the save tools (`iptables-nft-save`, …, `ipset`) only in DIR instead of `PATH`
    /// and the sbin folders. [default: PATH, then /usr/sbin, /sbin, /usr/local/sbin]
    #[arg(long, value_name = "DIR")]
    pub tool_dir: Option<PathBuf>,
    /// How rule counters are read: `netlink` (nf_tables netlink + x_tables getsockopt, the save
    /// tools run only when the ruleset changed) or `exec` (fork `iptables-save -c` every scrape).
    #[arg(long, value_enum, default_value_t = SourceArg::Netlink)]
    pub source: SourceArg,
    /// Also run the TCP flow monitor (conntrack events + packet capture): adds `/api/flows`,
    /// `/api/health`, `/api/graph/*` (Grafana Node Graph) and `nfscope_tcp_*` metrics.
    #[arg(long)]
    pub flows: bool,
    /// With --flows: name endpoints from FILE (`IP[/LEN] [namespace/]name` per line).
    #[arg(long, value_name = "FILE", requires = "flows")]
    pub names: Option<PathBuf>,
    /// With --flows: live connections kept at most (the oldest are evicted and counted).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_connections: usize,
    /// With --flows: seconds a SYN may go unanswered (retransmitted) before the attempt is a
    /// failure of reason `timeout`.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub syn_timeout: f64,
    /// With --flows: failure groups (client, dialled address, protocol, reason) kept at most
    /// for `/api/failures` (the least recently failing is evicted and counted).
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub max_failures: usize,
    /// HTTP client connections open at most (lowered to fit the descriptor limit). At the cap the
    /// longest-idle keep-alive connection is closed to admit a new one; when all are busy a small
    /// reserve still answers /healthz and gives 503 to the rest.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub http_max_connections: usize,
    /// Seconds a client may take to send a request's headers, counted from the connection's start
    /// or the previous response: slow, silent and idle keep-alive connections are closed after it.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub http_header_timeout: f64,
    /// Seconds /api/rules and /api/trace reuse one read of the full rules (concurrent requests
    /// always share one); the read is dropped, its memory freed, when they have passed, whether
    /// or not requests come. 0: no reuse.
    #[arg(long, value_name = "SECS", default_value_t = crate::serve::API_REUSE.as_secs_f64())]
    pub api_reuse_seconds: f64,
    /// Service destination/endpoint pairs the conntrack connection counter tracks at most
    /// (`nfscope_kube_endpoint_new_connections_total` in kube-proxy's nftables mode); new pairs
    /// past it are counted in nfscope_kube_conntrack_keys_dropped_total. 0: no counting (no
    /// conntrack subscription).
    #[arg(long, value_name = "N", default_value_t = nfscope_exporter::kube_conntrack::DEFAULT_MAX_KEYS)]
    pub kube_conntrack_keys: usize,
}

/// `--source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    /// Read counters from the kernel directly; no fork per scrape.
    Netlink,
    /// Fork the save tools on every collection.
    Exec,
}

impl From<SourceArg> for nfscope_kernel::RuleSource {
    fn from(arg: SourceArg) -> Self {
        match arg {
            SourceArg::Netlink => Self::Netlink,
            SourceArg::Exec => Self::Exec,
        }
    }
}

/// `--family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    /// iptables (IPv4).
    Ipv4,
    /// ip6tables (IPv6).
    Ipv6,
}

impl From<FamilyArg> for Family {
    fn from(arg: FamilyArg) -> Self {
        match arg {
            FamilyArg::Ipv4 => Self::Ipv4,
            FamilyArg::Ipv6 => Self::Ipv6,
        }
    }
}

/// `--rule-series`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuleSeriesArg {
    /// Every rule with counters.
    All,
    /// Only rules no Kubernetes family summarises.
    NotSummarised,
}

impl From<RuleSeriesArg> for nfscope_exporter::RuleSeries {
    fn from(arg: RuleSeriesArg) -> Self {
        match arg {
            RuleSeriesArg::All => Self::All,
            RuleSeriesArg::NotSummarised => Self::NotSummarised,
        }
    }
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// iptables-nft (nf_tables).
    Nft,
    /// iptables-legacy (x_tables).
    Legacy,
    /// Native nftables tables (written with `nft`, not managed by iptables-nft).
    Nftables,
}

impl From<BackendArg> for oneshot::Only {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Nft => Self::Iptables(Backend::Nft),
            BackendArg::Legacy => Self::Iptables(Backend::Legacy),
            BackendArg::Nftables => Self::Native,
        }
    }
}

impl BackendArg {
    /// The iptables backend it names; `None` for native nftables.
    pub fn iptables(self) -> Option<Backend> {
        match oneshot::Only::from(self) {
            oneshot::Only::Iptables(backend) => Some(backend),
            oneshot::Only::Native => None,
        }
    }
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: aligned, annotated, readable in a terminal.
    Text,
    /// For programs: the documented JSON of each command (`rules` prints what `/api/rules` serves).
    Json,
}

/// `--rule-label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuleLabelArg {
    /// Add the canonical rule text as a `rule` label.
    Full,
    /// No rule text label.
    None,
}

/// Seconds from the command line as a `Duration`, rejecting negative, NaN and absurd values.
pub fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{flag} {value}: not a usable number of seconds"))
}

/// `--syn-timeout`: a positive number of seconds (zero would call every SYN a failure).
pub fn syn_timeout(value: f64) -> Result<Duration, String> {
    let timeout = seconds("--syn-timeout", value)?;
    if timeout.is_zero() {
        return Err("--syn-timeout must be greater than 0".to_owned());
    }
    Ok(timeout)
}

impl ServeArgs {
    /// The server configuration these flags describe.
    pub fn into_config(self) -> Result<ServeConfig, String> {
        let timeout = seconds("--timeout", self.timeout)?;
        if timeout.is_zero() {
            return Err("--timeout must be greater than 0".to_owned());
        }
        let mut collect = crate::serve::default_collect_options();
        collect.netns = self.netns;
        collect.timeout = timeout;
        collect.text_timeout = seconds("--text-timeout", self.text_timeout)?;
        collect.tool_dir = self.tool_dir;
        collect.source = self.source.into();
        let mut export = crate::serve::export_options(self.rule_label, self.max_rule_series);
        export.rule_series = self.rule_series.into();
        Ok(ServeConfig {
            listen: self.listen,
            collect,
            export,
            cache: seconds("--cache-seconds", self.cache_seconds)?,
            deadline: timeout + crate::serve::DEADLINE_GRACE,
            flows: match self.flows {
                true => Some(crate::flow_api::FlowOptions {
                    names_file: self.names,
                    max_connections: self.max_connections,
                    syn_timeout: Some(syn_timeout(self.syn_timeout)?),
                    max_failures: self.max_failures,
                    ..Default::default()
                }),
                false => None,
            },
            http: crate::http::HttpLimits {
                max_connections: self.http_max_connections,
                header_timeout: seconds("--http-header-timeout", self.http_header_timeout)?,
                ..Default::default()
            },
            kube: None,
            api_reuse: seconds("--api-reuse-seconds", self.api_reuse_seconds)?,
            kube_conntrack_keys: self.kube_conntrack_keys,
        })
    }
}
