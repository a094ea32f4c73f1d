//! `nfscope failures`: failed connection attempts in the terminal — refused, reset during the
//! handshake, timed out, UDP unreachable — grouped by client, dialled address, protocol and
//! reason, newest first, refreshed every `--interval`; or one JSON snapshot (`--format json`, the
//! `/api/failures` document) after watching for one interval. The monitor is `flow_api`'s, with
//! failure detection on; detection and grouping are `nfscope-flow`'s.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use nfscope_flow::api::FlowFilter;
use nfscope_flow::failure::{FailuresJson, failures_json};

use crate::exit::Failure;
use crate::flow_api::{FlowMonitor, FlowOptions, wall_now};

const FAILURES_EXAMPLES: &str = "\
Examples:
  nfscope failures                              # live table, refreshed every 2 s
  nfscope failures --netns blue --syn-timeout 5 # inside `ip netns` namespace blue
  nfscope failures --format json --interval 10  # watch 10 s, print the /api/failures JSON once

Attempts are seen from the moment nfscope starts: a SYN answered by a RST or an ICMP unreachable
(refused), a reset before the handshake completed (reset), a SYN unanswered for --syn-timeout
(timeout), an ICMP unreachable answering a UDP datagram (unreachable). Needs CAP_NET_ADMIN and
CAP_NET_RAW.";

/// `nfscope failures`.
#[derive(Debug, Args)]
#[command(after_help = FAILURES_EXAMPLES)]
pub struct FailuresArgs {
    /// Watch inside the named network namespace (`ip netns` name). [default: current namespace]
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Name endpoints from FILE (`IP[/LEN] [namespace/]name` per line). [default: addresses]
    #[arg(long, value_name = "FILE")]
    pub names: Option<PathBuf>,
    /// `table`: live terminal table; `json`: one snapshot after one interval.
    #[arg(long, value_enum, default_value_t = FailuresFormat::Table)]
    pub format: FailuresFormat,
    /// Seconds between refreshes (and how long `--format json` watches).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub interval: f64,
    /// Stop after this many refreshes. [default: until Ctrl-C]
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Rows shown per refresh.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub rows: usize,
    /// Seconds a SYN may go unanswered before the attempt is a timeout.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub syn_timeout: f64,
    /// Failure groups kept at most.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub max_failures: usize,
}

/// `--format` of `failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailuresFormat {
    /// Live terminal table.
    Table,
    /// One JSON snapshot (the `/api/failures` document).
    Json,
}

/// Runs the command.
pub fn run(args: &FailuresArgs) -> Result<(), Failure> {
    let interval = crate::cli::seconds("--interval", args.interval).map_err(Failure::Input)?;
    let syn_timeout = crate::cli::syn_timeout(args.syn_timeout).map_err(Failure::Input)?;
    let options = FlowOptions {
        names_file: args.names.clone(),
        syn_timeout: Some(syn_timeout),
        max_failures: args.max_failures,
        ..FlowOptions::default()
    };
    // Each failure traced through the rules of the same namespace, as `serve --flows` does.
    let mut collect = crate::serve::default_collect_options();
    collect.netns = args.netns.clone();
    let traces = crate::flow_api::trace_explainer(&collect).map_err(Failure::Other)?;
    let explainer: crate::flow_api::Explainer = Arc::new(crate::flow_api::TraceExplainer(traces));
    let monitor = FlowMonitor::start_explained(args.netns.as_deref(), &options, None, explainer)
        .map_err(Failure::Other)?;
    if args.format == FailuresFormat::Json {
        std::thread::sleep(interval);
        let doc = snapshot(&monitor);
        let text = serde_json::to_string_pretty(&doc).map_err(|e| Failure::Other(e.into()))?;
        let _ = writeln!(std::io::stdout(), "{text}");
        return Ok(());
    }
    let mut refreshes = 0;
    loop {
        std::thread::sleep(interval.max(Duration::from_millis(100)));
        let screen = render_table(&snapshot(&monitor), args.rows);
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

fn snapshot(monitor: &FlowMonitor) -> FailuresJson {
    let table = monitor.table();
    failures_json(
        table.failures(),
        table.names(),
        &FlowFilter::default(),
        wall_now(),
    )
}

/// The table: one line per group, newest first.
fn render_table(doc: &FailuresJson, rows: usize) -> String {
    use std::fmt::Write as _;
    let stats = &doc.stats;
    let mut out = format!(
        "failed attempts {}  groups {}  evicted {}  dropped {}\n",
        stats.recorded, stats.groups, stats.evictions, stats.dropped
    );
    let _ = writeln!(
        out,
        "{:<11} {:<5} {:>6} {:>8} {:<24} {:<28} {:<28} EXPLANATION",
        "REASON", "PROTO", "COUNT", "AGO s", "CLIENT", "DIALLED", "SERVER"
    );
    for failure in doc.failures.iter().take(rows) {
        let ago = doc.now_unix_ms.saturating_sub(failure.last_unix_ms) as f64 / 1000.0;
        let server = failure
            .server
            .as_ref()
            .map_or_else(|| "-".to_owned(), |s| format!("{}:{}", s.name, s.port));
        let _ = writeln!(
            out,
            "{:<11} {:<5} {:>6} {:>8.1} {:<24} {:<28} {:<28} {}",
            failure.reason.label(),
            failure.proto.label(),
            failure.count,
            ago,
            failure.client.name,
            format!("{}:{}", failure.dialled.name, failure.dialled.port),
            server,
            failure.explanation.as_deref().unwrap_or("-"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use nfscope_flow::{FailedAttempt, FailureReason, FailureTable, Names, Proto};

    use super::*;

    #[test]
    fn the_table_shows_each_group_newest_first() {
        let names = Names::parse("10.0.1.0/24 shop/client\n").unwrap();
        let mut table = FailureTable::new(10, 10);
        for (i, reason) in [FailureReason::Refused, FailureReason::Timeout]
            .into_iter()
            .enumerate()
        {
            let attempt = FailedAttempt {
                at: Duration::from_secs(100 + i as u64),
                proto: Proto::Tcp,
                reason,
                client: SocketAddr::from(([10, 0, 1, 2], 40_000)),
                dialled: SocketAddr::from(([10, 96, 0, 10], 80)),
                server: None,
                in_interface: None,
                mark: None,
            };
            table.record(attempt.clone(), None, &names);
            table.record(attempt, None, &names);
        }
        let doc = failures_json(
            &table,
            &names,
            &FlowFilter::default(),
            Duration::from_secs(103),
        );
        let text = render_table(&doc, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("failed attempts 4  groups 2"), "{text}");
        assert!(
            lines[2].starts_with("timeout ") && lines[3].starts_with("refused "),
            "{text}"
        );
        assert!(
            lines[2].contains("shop/client") && lines[2].contains("10.96.0.10:80"),
            "{text}"
        );
        assert!(
            lines[3].contains("     2 ") && lines[3].contains("3.0"),
            "{text}"
        );
    }
}
