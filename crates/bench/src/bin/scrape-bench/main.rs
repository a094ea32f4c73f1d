//! `scrape-bench`: what one Prometheus scrape costs with nfscope and with the baselines, on
//! generated kube-proxy rulesets loaded into throwaway network namespaces (iptables mode on the nft
//! and legacy backends; kube-proxy's nftables mode as backend `nftables`).
//!
//! Needs root (namespaces, iptables-restore). Never part of `cargo test`. See docs/BENCHMARKS.md:
//! `cargo run --release -p nfscope-bench --bin scrape-bench -- --nfscope target/release/nfscope`.

mod baseline;
mod netns;
mod procfs;
mod server;
mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use nfscope_bench::{GenOptions, count_rules, kube_proxy_nft_ruleset, kube_proxy_ruleset};
use nfscope_ruleset::{NftLimits, parse_nft_text};

use crate::netns::BenchNetns;
use crate::stats::{
    ChangeWindow, LintCost, ServerDetail, SteadyRss, Summary, median, percentile, sorted,
};

/// Scrape cost of nfscope against a fork-and-split baseline and `nft -j`, per ruleset size and backend.
#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    once: Option<Once>,
    /// Path of the nfscope binary (build it with `cargo build --release -p nfscope`).
    #[arg(long, default_value = "target/release/nfscope")]
    nfscope: PathBuf,
    /// Service counts to test (3 endpoints each by default).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,20000")]
    services: Vec<usize>,
    /// Endpoints per service.
    #[arg(long, default_value_t = 3)]
    endpoints: usize,
    /// Backends to test: nft, legacy (kube-proxy's iptables mode on iptables-nft / -legacy),
    /// nftables (kube-proxy's nftables mode: its native table, rules without counters).
    #[arg(long, value_delimiter = ',', default_value = "nft,legacy")]
    backends: Vec<String>,
    /// Tools to measure: nfscope, nfscope-nolabel (`--rule-label none`), naive (iptables
    /// backends), nft-json (nft and nftables backends).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "nfscope,nfscope-nolabel,naive,nft-json"
    )]
    tools: Vec<String>,
    /// Scrapes per measurement below 20,000 services (after one warm-up scrape).
    #[arg(long, default_value_t = 20)]
    scrapes: usize,
    /// Scrapes per measurement from 20,000 services up.
    #[arg(long, default_value_t = 10)]
    scrapes_large: usize,
    /// Other nfscope builds to measure on the same rulesets, right after `--nfscope` (tools
    /// `nfscope` and `nfscope-nolabel`), as `NAME=PATH`; their rows read `nfscope (NAME)`.
    /// For before/after comparisons in one run.
    #[arg(long = "also", value_name = "NAME=PATH", value_parser = parse_build)]
    also: Vec<(String, PathBuf)>,
    /// `--timeout` passed to `nfscope serve` (seconds per tool).
    #[arg(long, default_value_t = 120)]
    server_timeout: u32,
    /// Replace the generated section of this Markdown file with the results.
    #[arg(long)]
    write_doc: Option<PathBuf>,
}

fn parse_build(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {text:?}"))?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// Internal: one baseline scrape inside the current namespace, printing a JSON report.
#[derive(Debug, Subcommand)]
enum Once {
    #[command(hide = true)]
    BaselineOnce {
        #[arg(long)]
        tool: String,
        #[arg(long)]
        backend: String,
    },
}

/// One line of the results table.
struct Row {
    services: usize,
    rules: usize,
    backend: String,
    tool: String,
    summary: Summary,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Once::BaselineOnce { tool, backend }) = &args.once {
        println!("{}", baseline::run_once(tool, backend)?.to_json());
        return Ok(());
    }
    if args.tools.iter().any(|t| t.starts_with("nfscope")) && !args.nfscope.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p nfscope` or drop nfscope from --tools",
            args.nfscope.display()
        );
    }
    if let Some((name, path)) = args.also.iter().find(|(_, path)| !path.exists()) {
        bail!("--also {name}={}: no such file", path.display());
    }
    let ticks = procfs::clock_ticks_per_second();
    let mut rows = Vec::new();
    for &services in &args.services {
        for backend in &args.backends {
            rows.extend(bench_one(&args, services, backend, ticks)?);
            // Rewrite after every combination, so an interrupted run still leaves its results.
            if let Some(doc) = &args.write_doc {
                let tables = format!("{}\n{}", render_table(&rows), render_server_table(&rows));
                write_doc(doc, &tables, &args)?;
            }
        }
    }
    println!("{}\n{}", render_table(&rows), render_server_table(&rows));
    if let Some(doc) = &args.write_doc {
        eprintln!("wrote {}", doc.display());
    }
    Ok(())
}

fn bench_one(args: &Args, services: usize, backend: &str, ticks: f64) -> Result<Vec<Row>> {
    if backend == "legacy" {
        // The x_tables modules may be built in; a real failure shows up at restore.
        let _ = Command::new("modprobe")
            .args(["-q", "ip_tables", "iptable_nat", "iptable_filter"])
            .status();
    }
    let opts = GenOptions {
        counters: true,
        ..GenOptions::default()
    };
    let (text, rules) = if backend == "nftables" {
        let text = kube_proxy_nft_ruleset(services, args.endpoints, &opts);
        let rules = parse_nft_text(&text, &NftLimits::default())
            .context("the generated nftables table parses")?
            .rule_count();
        (text, rules)
    } else {
        let text = kube_proxy_ruleset(services, args.endpoints, &opts);
        let rules = count_rules(&text);
        (text, rules)
    };
    let ns = BenchNetns::create(&format!("{backend}-{services}"))?;
    let start = Instant::now();
    ns.restore(backend, &text)?;
    eprintln!(
        "[{services} services, {rules} rules, {backend}] loaded in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    drop(text);
    let k = if services >= 20_000 {
        args.scrapes_large
    } else {
        args.scrapes
    };
    let mut rows = Vec::new();
    for tool in &args.tools {
        if (tool == "nft-json" && backend == "legacy") || (tool == "naive" && backend == "nftables")
        {
            continue;
        }
        let extra: &[&str] = match tool.as_str() {
            "nfscope" => &[],
            "nfscope-nolabel" => &["--rule-label", "none"],
            other => {
                let summary = measure_baseline(&ns, other, backend, k, ticks)?;
                eprintln!("  {tool}: {summary:?}");
                rows.push(Row {
                    services,
                    rules,
                    backend: backend.to_owned(),
                    tool: tool.clone(),
                    summary,
                });
                continue;
            }
        };
        let builds = std::iter::once((tool.clone(), &args.nfscope)).chain(
            args.also
                .iter()
                .map(|(name, path)| (format!("{tool} ({name})"), path)),
        );
        for (label, binary) in builds {
            let summary = measure_nfscope(args, binary, &ns, extra, k, ticks)?;
            eprintln!("  {label}: {summary:?}");
            rows.push(Row {
                services,
                rules,
                backend: backend.to_owned(),
                tool: label,
                summary,
            });
        }
    }
    Ok(rows)
}

fn measure_nfscope(
    args: &Args,
    nfscope: &Path,
    ns: &BenchNetns,
    extra: &[&str],
    k: usize,
    ticks: f64,
) -> Result<Summary> {
    let log = std::env::temp_dir().join(format!("{}-nfscope.log", ns.name));
    let server = server::Server::start(nfscope, &ns.name, args.server_timeout, extra, &log)
        .with_context(|| format!("see {}", log.display()))?;
    let pid = server.pid();
    let cpu_start = procfs::cpu_ticks(&pid)?;
    let first = Instant::now();
    let body = server::scrape(server.addr)?;
    let first_ms = first.elapsed().as_secs_f64() * 1e3;
    let first_cpu_ticks = procfs::cpu_ticks(&pid)? - cpu_start;
    let first_peak_kib = procfs::peak_rss_kib(&pid)?;
    // The server lints new rules on a thread of its own, started by the first collection: a
    // window started at once may overlap it (what a server whose rules just changed costs), one
    // started once it is idle is the steady state. Both are measured; the lint thread's own CPU
    // is read apart, so no figure mixes the one-off lint into the per-scrape cost.
    let lint_tid = procfs::thread_named(&pid, LINT_THREAD)?;
    let lint_ticks = |tid: &Option<String>| -> Result<u64> {
        tid.as_deref().map_or(Ok(0), |t| {
            procfs::thread_state_and_ticks(&pid, t).map(|(_, t)| t)
        })
    };
    let lint_in_first = lint_ticks(&lint_tid)?;
    let first_cpu_s = first_cpu_ticks.saturating_sub(lint_in_first) as f64 / ticks;
    procfs::reset_peak_rss(&pid)?;
    let (lint_before, cpu_before) = (lint_ticks(&lint_tid)?, procfs::cpu_ticks(&pid)?);
    let change_latencies = scrape_k(server.addr, k)?;
    let (lint_after, cpu_after) = (lint_ticks(&lint_tid)?, procfs::cpu_ticks(&pid)?);
    let change = ChangeWindow {
        median_ms: median(&sorted(change_latencies)),
        cpu_s_per_scrape: (cpu_after - cpu_before) as f64 / ticks / k as f64,
        lint_cpu_s_per_scrape: (lint_after - lint_before) as f64 / ticks / k as f64,
        peak_mib: procfs::peak_rss_kib(&pid)? as f64 / 1024.0,
    };
    wait_idle(&pid, lint_tid.as_deref())?;
    let lint_total_cpu_s = lint_ticks(&lint_tid)? as f64 / ticks;

    procfs::reset_peak_rss(&pid)?;
    let (lint_before, cpu_before) = (lint_ticks(&lint_tid)?, procfs::cpu_ticks(&pid)?);
    let latencies = scrape_k(server.addr, k)?;
    let (lint_after, cpu_after) = (lint_ticks(&lint_tid)?, procfs::cpu_ticks(&pid)?);
    if lint_after != lint_before {
        eprintln!(
            "  warning: the lint thread ran {} ticks during the steady window",
            lint_after - lint_before
        );
    }
    let cpu_ticks = cpu_after - cpu_before;
    let steady = SteadyRss {
        peak_mib: procfs::peak_rss_kib(&pid)? as f64 / 1024.0,
        after_mib: procfs::rss_kib(&pid)? as f64 / 1024.0,
    };
    let mut summary = summarize(
        first_ms,
        latencies,
        cpu_ticks as f64 / ticks / k as f64,
        first_peak_kib
            .max((change.peak_mib * 1024.0) as u64)
            .max(procfs::peak_rss_kib(&pid)?),
        body,
    );
    summary.steady = Some(steady);
    summary.server = Some(ServerDetail {
        first_cpu_s,
        first_peak_mib: first_peak_kib as f64 / 1024.0,
        lint: lint_tid.map(|_| LintCost {
            cpu_s: lint_total_cpu_s,
            during_first_s: lint_in_first as f64 / ticks,
        }),
        change,
    });
    Ok(summary)
}

/// The name nfscope gives its background lint thread.
const LINT_THREAD: &str = "nfscope-lint";

/// K sequential scrapes; their latencies in ms.
fn scrape_k(addr: std::net::SocketAddr, k: usize) -> Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(k);
    for _ in 0..k {
        let start = Instant::now();
        server::scrape(addr)?;
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(latencies)
}

/// Waits until thread `tid` of `pid` sleeps and its CPU time stood still over two polls 100 ms
/// apart (the lint thread waits on a condition variable when it has nothing to do), at most
/// 10 minutes. Nothing to wait for without a thread.
fn wait_idle(pid: &str, tid: Option<&str>) -> Result<()> {
    let Some(tid) = tid else {
        return Ok(());
    };
    let limit = Instant::now() + std::time::Duration::from_secs(600);
    let mut last = procfs::thread_state_and_ticks(pid, tid)?;
    let mut idle_polls = 0;
    while Instant::now() < limit {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = procfs::thread_state_and_ticks(pid, tid)?;
        idle_polls = if now.0 == 'S' && now.1 == last.1 {
            idle_polls + 1
        } else {
            0
        };
        if idle_polls == 2 {
            return Ok(());
        }
        last = now;
    }
    bail!("the {LINT_THREAD} thread of {pid} was still busy after 10 minutes")
}

fn measure_baseline(
    ns: &BenchNetns,
    tool: &str,
    backend: &str,
    k: usize,
    ticks: f64,
) -> Result<Summary> {
    let exe = std::env::current_exe()?;
    let mut reports = Vec::with_capacity(k + 1);
    for _ in 0..=k {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(&exe)
            .args(["baseline-once", "--tool", tool, "--backend", backend])
            .output()?;
        if !out.status.success() {
            bail!(
                "{tool} baseline failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        reports.push(baseline::OnceReport::from_json(&String::from_utf8_lossy(
            &out.stdout,
        ))?);
    }
    let first = reports.remove(0);
    let latencies = reports.iter().map(|r| r.latency_s * 1e3).collect();
    let cpu_s = reports
        .iter()
        .map(|r| r.cpu_ticks as f64 / ticks)
        .sum::<f64>()
        / k as f64;
    let peak = reports.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
    Ok(summarize(
        first.latency_s * 1e3,
        latencies,
        cpu_s,
        peak,
        first.body_bytes,
    ))
}

fn summarize(
    first_ms: f64,
    latencies: Vec<f64>,
    cpu_s: f64,
    peak_rss_kib: u64,
    body: usize,
) -> Summary {
    let latencies = sorted(latencies);
    Summary {
        first_ms,
        median_ms: median(&latencies),
        p99_ms: percentile(&latencies, 0.99),
        cpu_s_per_scrape: cpu_s,
        peak_rss_mib: peak_rss_kib as f64 / 1024.0,
        steady: None,
        server: None,
        body_mib: body as f64 / (1024.0 * 1024.0),
    }
}

fn render_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| services | rules | backend | tool | median ms | p99 ms (= max) | first ms | CPU s/scrape | peak RSS MiB | scrape peak / RSS after MiB | body MiB |\n\
         |---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.1} | {} | {:.1} |",
            r.services,
            r.rules,
            r.backend,
            r.tool,
            s.median_ms,
            s.p99_ms,
            s.first_ms,
            s.cpu_s_per_scrape,
            s.peak_rss_mib,
            s.steady.map_or("—".to_owned(), |m| format!(
                "{:.1} / {:.1}",
                m.peak_mib, m.after_mib
            )),
            s.body_mib
        );
    }
    out
}

/// The nfscope rows' one-off costs and the window right after the first collection.
fn render_server_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| services | backend | tool | first CPU s (without lint) | first peak MiB | lint CPU s (of it during first) | right after: CPU s/scrape (lint's share) | right after: median ms | right after: scrape peak MiB |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let Some(d) = r.summary.server else {
            continue;
        };
        let lint = d
            .lint
            .map_or("— (in the first collection)".to_owned(), |l| {
                format!("{:.2} ({:.2})", l.cpu_s, l.during_first_s)
            });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.1} | {lint} | {:.3} ({:.3}) | {:.0} | {:.1} |",
            r.services,
            r.backend,
            r.tool,
            d.first_cpu_s,
            d.first_peak_mib,
            d.change.cpu_s_per_scrape,
            d.change.lint_cpu_s_per_scrape,
            d.change.median_ms,
            d.change.peak_mib,
        );
    }
    out
}

const BEGIN: &str =
    "<!-- scrape-bench:begin (generated by scrape-bench --write-doc; edit outside) -->";
const END: &str = "<!-- scrape-bench:end -->";

/// Replaces the text between the markers (or appends a new section) with the table and its context.
fn write_doc(doc: &Path, table: &str, args: &Args) -> Result<()> {
    let existing = std::fs::read_to_string(doc).unwrap_or_default();
    let section = format!("{BEGIN}\n{}\n{table}{END}", run_context(args));
    let updated = match (existing.find(BEGIN), existing.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &existing[..b], &existing[e + END.len()..])
        }
        _ => format!("{existing}\n## Scrape benchmark results\n\n{section}\n"),
    };
    std::fs::write(doc, updated).with_context(|| format!("writing {}", doc.display()))
}

fn run_context(args: &Args) -> String {
    let command: Vec<String> = std::env::args().collect();
    let sh = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "Produced by `{}` (K = {} scrapes per row, {} from 20,000 services up, after one warm-up scrape \
         reported as \"first\").\n\nMachine: {} CPUs ({}), kernel {}, {}; {}; {}. Date: {}. \
         Load average when the run ended: {}.\n",
        command.join(" "),
        args.scrapes,
        args.scrapes_large,
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        sh("uname -r"),
        sh("free -g | awk '/Mem:/ {print $2 \" GiB RAM\"}'"),
        sh("iptables --version"),
        sh("nft --version"),
        sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        sh("cut -d' ' -f1-3 /proc/loadavg"),
    )
}
