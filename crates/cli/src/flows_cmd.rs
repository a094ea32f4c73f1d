//! `nfscope flows`: the flow monitor in the terminal — a live table of TCP connections refreshed
//! every `--interval`, sortable, or one JSON snapshot (`--format json`) after watching for one
//! interval. The monitor itself lives in `flow_api`; the table logic in `nfscope-flow`.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use nfscope_flow::api::{FlowFilter, FlowJson, flows_json};

use crate::exit::Failure;
use crate::flow_api::{FlowMonitor, FlowOptions, wall_now};

const FLOWS_EXAMPLES: &str = "\
Examples:
  nfscope flows                                 # live table, refreshed every 2 s
  nfscope flows --netns blue --sort handshake   # inside `ip netns` namespace blue
  nfscope flows --names names.txt --format json --interval 5   # watch 5 s, print JSON once

Connections are seen from the moment nfscope starts (conntrack NEW events and SYN packets).
Names file: one `IP[/LEN] [namespace/]name` per line. Needs CAP_NET_ADMIN and CAP_NET_RAW.";

/// `nfscope flows`.
#[derive(Debug, Args)]
#[command(after_help = FLOWS_EXAMPLES)]
pub struct FlowsArgs {
    /// Watch inside the named network namespace (`ip netns` name). [default: current namespace]
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Name endpoints from FILE (`IP[/LEN] [namespace/]name` per line). [default: addresses]
    #[arg(long, value_name = "FILE")]
    pub names: Option<PathBuf>,
    /// `table`: live terminal table; `json`: one snapshot after one interval.
    #[arg(long, value_enum, default_value_t = FlowsFormat::Table)]
    pub format: FlowsFormat,
    /// Sort order of the table (largest first).
    #[arg(long, value_enum, default_value_t = FlowsSort::Bytes)]
    pub sort: FlowsSort,
    /// Seconds between refreshes (and how long `--format json` watches).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub interval: f64,
    /// Stop after this many refreshes. [default: until Ctrl-C]
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Rows shown per refresh.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub rows: usize,
    /// Live connections kept at most.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_connections: usize,
}

/// `--format` of `flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowsFormat {
    /// Live terminal table.
    Table,
    /// One JSON snapshot (the `/api/flows` document).
    Json,
}

/// `--sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowsSort {
    /// Bytes both ways.
    Bytes,
    /// Duration.
    Duration,
    /// Handshake time.
    Handshake,
}

/// Runs the command.
pub fn run(args: &FlowsArgs) -> Result<(), Failure> {
    let interval = crate::cli::seconds("--interval", args.interval).map_err(Failure::Input)?;
    let options = FlowOptions {
        names_file: args.names.clone(),
        max_connections: args.max_connections,
        ..FlowOptions::default()
    };
    let monitor =
        FlowMonitor::start(args.netns.as_deref(), &options, None).map_err(Failure::Other)?;
    if args.format == FlowsFormat::Json {
        std::thread::sleep(interval);
        let doc = snapshot(&monitor);
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Failure::Other(e.into()))?;
        let _ = writeln!(std::io::stdout(), "{text}");
        return Ok(());
    }
    let mut refreshes = 0;
    loop {
        std::thread::sleep(interval.max(Duration::from_millis(100)));
        let doc = snapshot(&monitor);
        let screen = render_table(&doc, args.sort, args.rows);
        let clear = if std::io::stdout().is_terminal() {
            "\x1b[2J\x1b[H"
        } else {
            ""
        };
        if writeln!(std::io::stdout(), "{clear}{screen}").is_err() {
            return Ok(()); // stdout closed (e.g. `| head`)
        }
        refreshes += 1;
        if args.count.is_some_and(|n| refreshes >= n) {
            return Ok(());
        }
    }
}

fn snapshot(monitor: &FlowMonitor) -> nfscope_flow::api::FlowsJson {
    let table = monitor.table();
    flows_json(
        &table.snapshot(wall_now()),
        table.names(),
        &FlowFilter::default(),
    )
}

fn total_bytes(flow: &FlowJson) -> u64 {
    flow.bytes.client_to_server.unwrap_or(0) + flow.bytes.server_to_client.unwrap_or(0)
}

fn sort_key(flow: &FlowJson, sort: FlowsSort) -> f64 {
    match sort {
        FlowsSort::Bytes => total_bytes(flow) as f64,
        FlowsSort::Duration => flow.duration_seconds,
        FlowsSort::Handshake => flow.handshake_seconds.unwrap_or(-1.0),
    }
}

fn opt_bytes(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |b| b.to_string())
}

/// The table: live connections first, then recently closed ones, each group sorted.
fn render_table(doc: &nfscope_flow::api::FlowsJson, sort: FlowsSort, rows: usize) -> String {
    use std::fmt::Write as _;
    let stats = &doc.stats;
    let mut out = format!(
        "live {}  closed {}  evicted {}  conntrack events {} (lost {})  capture drops {}\n",
        stats.live,
        stats.connections_closed,
        stats.evictions,
        stats.ct_events,
        stats.ct_events_lost,
        stats.capture_drops
    );
    let _ = writeln!(
        out,
        "{:<10} {:<28} {:<28} {:<28} {:>10} {:>10} {:>9} {:>9}",
        "END", "CLIENT", "DIALLED", "SERVER", "BYTES>", "BYTES<", "HS ms", "DUR s"
    );
    let mut flows: Vec<&FlowJson> = doc.live.iter().chain(doc.closed.iter().rev()).collect();
    flows.sort_by(|a, b| {
        let open = |f: &FlowJson| f.end != nfscope_flow::End::Open;
        open(a)
            .cmp(&open(b))
            .then(sort_key(b, sort).total_cmp(&sort_key(a, sort)))
    });
    for flow in flows.into_iter().take(rows) {
        let endpoint = |e: &nfscope_flow::api::EndpointJson| format!("{}:{}", e.name, e.port);
        let _ = writeln!(
            out,
            "{:<10} {:<28} {:<28} {:<28} {:>10} {:>10} {:>9} {:>9.1}",
            flow.end.label(),
            endpoint(&flow.client),
            endpoint(&flow.dialled),
            endpoint(&flow.server),
            opt_bytes(flow.bytes.client_to_server),
            opt_bytes(flow.bytes.server_to_client),
            flow.handshake_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{:.2}", s * 1000.0)),
            flow.duration_seconds,
        );
    }
    out
}
