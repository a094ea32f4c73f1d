//! `scrape-bench`: what one Prometheus scrape costs with nfscope and with the baselines, on
//! generated kube-proxy rulesets loaded into throwaway network namespaces (iptables mode on the nft
//! and legacy backends; kube-proxy's nftables mode as backend `nftables`).
//!
//! Each size × backend × `--shapes` entry (the generator's save-syntax text, or the same services
//! as kube-proxy writes its restore input) gets its own namespace; the tools are measured one
//! after the other. `--scale` adds issue 15's table: each nfscope figure (first collection,
//! steady scrape ÷ the kernel's dump cost, steady RSS, scrape peak, start to first `200`) beside
//! its baseline, and "not run" with the reason for whatever was not measured.
//!
//! Needs root (namespaces, iptables-restore). Never part of `cargo test`. See docs/BENCHMARKS.md
//! §3 and §3a: `cargo run --release -p nfscope-bench --bin scrape-bench -- --nfscope
//! target/release/nfscope [--scale --shapes generated,kube-proxy]`.

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
use nfscope_bench::{GenOptions, Shape, count_rules, kube_proxy_nft_ruleset, ruleset_of_shape};
use nfscope_ruleset::{NftLimits, parse_nft_text};

use crate::netns::BenchNetns;
use crate::stats::{
    BaselineDetail, ChangeWindow, LintCost, ServerDetail, SteadyRss, Summary, median, percentile,
    sorted,
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
    /// `--text-timeout` passed to `nfscope serve` (seconds for a read of the rule text; nfscope's
    /// default when not given). The first scrape waits for the larger of the two plus a minute.
    #[arg(long)]
    server_text_timeout: Option<u32>,
    /// Ruleset shapes for the iptables backends: `generated` (gen-kube-ruleset's save syntax,
    /// chains sorted) and `kube-proxy` (the same services as kube-proxy writes its restore input:
    /// cluster names, its argument and chain order). Backend `nftables` has one shape.
    #[arg(long, value_delimiter = ',', default_value = "generated")]
    shapes: Vec<Shape>,
    /// Runs of each baseline (naive, nft-json) below 20,000 services. Each run is a fresh
    /// process (the first one is the baseline's first collection). Default: `--scrapes`.
    #[arg(long)]
    baseline_scrapes: Option<usize>,
    /// Runs of each baseline from 20,000 services up (one `iptables-nft-save -c` of 290k rules
    /// takes minutes).
    #[arg(long, default_value_t = 1)]
    baseline_scrapes_large: usize,
    /// nft-json is not run above this many services (reported as not run).
    #[arg(long, default_value_t = 5000)]
    nft_json_max_services: usize,
    /// Print issue 15's scale table first (first collection, steady scrape ÷ the kernel's dump
    /// cost, steady RSS, scrape peak, time to the first answer, each beside its baseline); with
    /// `--write-doc` the run replaces the `scrape-bench-scale` section instead of `scrape-bench`.
    #[arg(long)]
    scale: bool,
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
    shape: Shape,
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
    if let Some(tool) = args
        .tools
        .iter()
        .find(|t| !KNOWN_TOOLS.contains(&t.as_str()))
    {
        bail!("unknown tool {tool:?} in --tools: expected one of {KNOWN_TOOLS:?}");
    }
    if let Some(b) = args
        .backends
        .iter()
        .find(|b| !["nft", "legacy", "nftables"].contains(&b.as_str()))
    {
        bail!("unknown backend {b:?} in --backends: expected nft, legacy or nftables");
    }
    let ticks = procfs::clock_ticks_per_second();
    let started = Started::now();
    let mut rows = Vec::new();
    let mut combos = Vec::new();
    for &services in &args.services {
        for backend in &args.backends {
            for &shape in &args.shapes {
                if backend == "nftables" && shape != Shape::Generated {
                    eprintln!(
                        "[{services} services, nftables, {}] not run: kube-proxy's nftables mode has one shape",
                        shape.name()
                    );
                    continue;
                }
                let (combo, combo_rows) = bench_one(&args, services, backend, shape, ticks)?;
                rows.extend(combo_rows);
                combos.push(combo);
                // Rewrite after every combination, so an interrupted run still leaves its results.
                if let Some(doc) = &args.write_doc {
                    write_doc(doc, &render_all(&args, &rows, &combos), &args, &started)?;
                }
            }
        }
    }
    println!("{}", render_all(&args, &rows, &combos));
    eprintln!(
        "total wall time {:.0} s",
        started.instant.elapsed().as_secs_f64()
    );
    if let Some(doc) = &args.write_doc {
        eprintln!("wrote {}", doc.display());
    }
    Ok(())
}

const KNOWN_TOOLS: [&str; 4] = ["nfscope", "nfscope-nolabel", "naive", "nft-json"];

/// When and under which load the run started.
struct Started {
    instant: Instant,
    date: String,
    load: String,
}

impl Started {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            date: sh("date -u '+%Y-%m-%d %H:%M UTC'"),
            load: sh("cut -d' ' -f1-3 /proc/loadavg"),
        }
    }
}

/// The tables this run prints (and writes with `--write-doc`).
fn render_all(args: &Args, rows: &[Row], combos: &[Combo]) -> String {
    let detail = format!("{}\n{}", render_table(rows), render_server_table(rows));
    if args.scale {
        format!("{}\n{detail}", render_scale_table(rows, combos))
    } else {
        detail
    }
}

/// One size × backend × shape: what was loaded, how long it took, what was not run and why.
struct Combo {
    services: usize,
    rules: usize,
    backend: String,
    shape: Shape,
    load_s: f64,
    /// Load and all measurements of this combination.
    wall_s: f64,
    /// System time of `ip6tables-<backend>-save -c` (nfscope reads both families).
    save6_sys_s: Option<f64>,
    /// Tool → why it has no figures here.
    not_run: Vec<(String, String)>,
}

fn bench_one(
    args: &Args,
    services: usize,
    backend: &str,
    shape: Shape,
    ticks: f64,
) -> Result<(Combo, Vec<Row>)> {
    let combo_start = Instant::now();
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
        let text = ruleset_of_shape(shape, services, args.endpoints, &opts);
        let rules = count_rules(&text);
        (text, rules)
    };
    let ns = BenchNetns::create(&format!("{backend}-{}-{services}", shape.name()))?;
    let start = Instant::now();
    ns.restore(backend, &text)?;
    let load_s = start.elapsed().as_secs_f64();
    let tag = format!(
        "[{services} services, {rules} rules, {backend}, {}]",
        shape.name()
    );
    eprintln!("{tag} loaded in {load_s:.1} s");
    drop(text);
    let large = services >= 20_000;
    let k = if large {
        args.scrapes_large
    } else {
        args.scrapes
    };
    let baseline_k = if large {
        args.baseline_scrapes_large
    } else {
        args.baseline_scrapes.unwrap_or(args.scrapes)
    }
    .max(1);
    let mut combo = Combo {
        services,
        rules,
        backend: backend.to_owned(),
        shape,
        load_s,
        wall_s: 0.0,
        save6_sys_s: None,
        not_run: Vec::new(),
    };
    let mut rows = Vec::new();
    let row = |tool: String, summary: Summary| Row {
        services,
        rules,
        backend: backend.to_owned(),
        shape,
        tool,
        summary,
    };
    for tool in &args.tools {
        // Not applicable (the table shows "n/a"): nft-json reads nf_tables only, and kube-proxy's
        // nftables mode has no iptables rules for the naive baseline.
        if (tool == "nft-json" && backend == "legacy") || (tool == "naive" && backend == "nftables")
        {
            continue;
        }
        if tool == "nft-json" && services > args.nft_json_max_services {
            let reason = format!(
                "above --nft-json-max-services {}: `nft -j` took 19 CPU s and 768 MiB per read at 72.5k rules",
                args.nft_json_max_services
            );
            eprintln!("  {tool}: not run ({reason})");
            combo.not_run.push((tool.clone(), reason));
            continue;
        }
        let extra: &[&str] = match tool.as_str() {
            "nfscope" => &[],
            "nfscope-nolabel" => &["--rule-label", "none"],
            other => {
                match measure_baseline(&ns, other, backend, baseline_k, ticks) {
                    Ok(summary) => {
                        eprintln!("  {tool}: {summary:?}");
                        rows.push(row(tool.clone(), summary));
                    }
                    Err(e) => {
                        eprintln!("  {tool}: failed: {e:#}");
                        combo
                            .not_run
                            .push((tool.clone(), format!("failed: {}", one_line(&e))));
                    }
                }
                if other == "naive" {
                    combo.save6_sys_s = measure_baseline(&ns, "save6", backend, 1, ticks)
                        .ok()
                        .and_then(|s| s.baseline)
                        .map(|b| b.child_sys_s);
                }
                continue;
            }
        };
        let builds = std::iter::once((tool.clone(), &args.nfscope)).chain(
            args.also
                .iter()
                .map(|(name, path)| (format!("{tool} ({name})"), path)),
        );
        for (label, binary) in builds {
            match measure_nfscope(args, binary, &ns, extra, k, ticks) {
                Ok(summary) => {
                    eprintln!("  {label}: {summary:?}");
                    rows.push(row(label, summary));
                }
                Err(e) => {
                    eprintln!("  {label}: failed: {e:#}");
                    combo
                        .not_run
                        .push((label, format!("failed: {}", one_line(&e))));
                }
            }
        }
    }
    combo.wall_s = combo_start.elapsed().as_secs_f64();
    eprintln!("{tag} done in {:.0} s", combo.wall_s);
    Ok((combo, rows))
}

/// An error's chain on one line, at most 160 characters (for a table cell).
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}").replace(['\n', '|'], " ");
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
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
    let server = server::Server::start(
        nfscope,
        &ns.name,
        args.server_timeout,
        args.server_text_timeout,
        extra,
        &log,
    )
    .with_context(|| format!("see {}", log.display()))?;
    let pid = server.pid();
    // The first collection: everything the fresh process did until its first `200` (it may
    // start collecting before it listens; a `503` — no rules read yet — is retried).
    let first_limit = std::time::Duration::from_secs(
        u64::from(
            args.server_timeout
                .max(args.server_text_timeout.unwrap_or(300)),
        ) + 60,
    );
    let (body, first_ms) = loop {
        let first = Instant::now();
        match server::scrape_within(server.addr, first_limit) {
            Ok(body) => break (body, first.elapsed().as_secs_f64() * 1e3),
            Err(e)
                if e.downcast_ref::<server::NotOk>()
                    .is_some_and(server::NotOk::is_unavailable)
                    && server.started.elapsed().as_secs() < u64::from(args.server_timeout) * 3 =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    };
    let first_200_s = server.started.elapsed().as_secs_f64();
    let first_cpu_ticks = procfs::cpu_ticks(&pid)?;
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
        first_200_s,
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
    runs: usize,
    ticks: f64,
) -> Result<Summary> {
    let exe = std::env::current_exe()?;
    let mut reports = Vec::with_capacity(runs);
    for _ in 0..runs {
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
    let first = reports.first().context("no baseline run")?;
    let per_run = |f: &dyn Fn(&baseline::OnceReport) -> u64| {
        reports.iter().map(|r| f(r) as f64 / ticks).sum::<f64>() / reports.len() as f64
    };
    let latencies = reports.iter().map(|r| r.latency_s * 1e3).collect();
    let peak = reports.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
    let mut summary = summarize(
        first.latency_s * 1e3,
        latencies,
        per_run(&|r| r.cpu_ticks),
        peak,
        first.body_bytes,
    );
    summary.baseline = Some(BaselineDetail {
        runs: reports.len(),
        first_cpu_s: first.cpu_ticks as f64 / ticks,
        first_peak_mib: first.peak_rss_kib as f64 / 1024.0,
        child_sys_s: per_run(&|r| r.child_sys_ticks),
    });
    Ok(summary)
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
        k: latencies.len(),
        first_ms,
        median_ms: median(&latencies),
        p99_ms: percentile(&latencies, 0.99),
        cpu_s_per_scrape: cpu_s,
        peak_rss_mib: peak_rss_kib as f64 / 1024.0,
        steady: None,
        server: None,
        baseline: None,
        body_mib: body as f64 / (1024.0 * 1024.0),
    }
}

fn render_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| services | rules | backend | shape | tool | median ms | p99 ms (= max) | first ms | CPU s/scrape | peak RSS MiB | scrape peak / RSS after MiB | body MiB |\n\
         |---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.1} | {} | {:.1} |",
            r.services,
            r.rules,
            r.backend,
            r.shape.name(),
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
        "| services | backend | shape | tool | first CPU s (without lint) | first peak MiB | lint CPU s (of it during first) | right after: CPU s/scrape (lint's share) | right after: median ms | right after: scrape peak MiB |\n\
         |---:|---|---|---|---:|---:|---:|---:|---:|---:|\n",
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
            "| {} | {} | {} | {} | {:.2} | {:.1} | {lint} | {:.3} ({:.3}) | {:.0} | {:.1} |",
            r.services,
            r.backend,
            r.shape.name(),
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

/// Issue 15's rows, one line per size × backend × shape, each figure beside its baseline.
fn render_scale_table(rows: &[Row], combos: &[Combo]) -> String {
    let mut out = String::from(
        "| rules | backend | shape | first collection CPU s: nfscope / naive / nft-json | first collection peak MiB: nfscope / naive / nft-json | steady CPU s/scrape: nfscope / naive | kernel dump s (`save -c` system time, v4 + v6) | steady ÷ kernel dump | steady RSS MiB (after K) | scrape peak MiB | start → first 200 s | K: nfscope / baselines | wall s (load) |\n\
         |---:|---|---|---|---|---|---:|---:|---:|---:|---:|---|---:|\n\
         | *target (issue 15; 72.5k kube-proxy rules)* | | | *≤ 0.5* | *≤ 64* | | | *≤ 1.2* | *≤ 40* | *legacy ≤ 64* | *290k nft: < 5* | | |\n",
    );
    for c in combos {
        let find = |tool: &str| {
            rows.iter().find(|r| {
                r.services == c.services
                    && r.backend == c.backend
                    && r.shape == c.shape
                    && r.tool == tool
            })
        };
        let missing = |tool: &str| -> String {
            if c.not_run.iter().any(|(t, _)| t == tool) {
                "not run (see below)".to_owned()
            } else {
                "n/a".to_owned()
            }
        };
        let nfscope = find("nfscope");
        let naive = find("naive").and_then(|r| r.summary.baseline.map(|b| (r, b)));
        let json = find("nft-json").and_then(|r| r.summary.baseline.map(|b| (r, b)));
        let server = nfscope.and_then(|r| r.summary.server);
        let steady = nfscope.and_then(|r| r.summary.steady);
        let cell = |v: Option<String>, tool: &str| v.unwrap_or_else(|| missing(tool));
        let first_cpu = format!(
            "{} / {} / {}",
            cell(server.map(|d| format!("{:.2}", d.first_cpu_s)), "nfscope"),
            cell(naive.map(|(_, b)| format!("{:.2}", b.first_cpu_s)), "naive"),
            cell(
                json.map(|(_, b)| format!("{:.2}", b.first_cpu_s)),
                "nft-json"
            ),
        );
        let first_peak = format!(
            "{} / {} / {}",
            cell(
                server.map(|d| format!("{:.1}", d.first_peak_mib)),
                "nfscope"
            ),
            cell(
                naive.map(|(_, b)| format!("{:.1}", b.first_peak_mib)),
                "naive"
            ),
            cell(
                json.map(|(_, b)| format!("{:.1}", b.first_peak_mib)),
                "nft-json"
            ),
        );
        let steady_cpu = format!(
            "{} / {}",
            cell(
                nfscope.map(|r| format!("{:.3}", r.summary.cpu_s_per_scrape)),
                "nfscope"
            ),
            cell(
                naive.map(|(r, _)| format!("{:.3}", r.summary.cpu_s_per_scrape)),
                "naive"
            ),
        );
        let kernel = naive.map(|(_, b)| b.child_sys_s + c.save6_sys_s.unwrap_or(0.0));
        let kernel_cell = match (naive, c.save6_sys_s) {
            (Some((_, b)), Some(v6)) => {
                format!("{:.3} ({:.3} + {v6:.3})", b.child_sys_s + v6, b.child_sys_s)
            }
            (Some((_, b)), None) => format!("{:.3} (v4 only)", b.child_sys_s),
            (None, _) => format!("{} (from the naive runs)", missing("naive")),
        };
        let ratio = match (nfscope, kernel) {
            (Some(r), Some(k)) if k > 0.0 => format!("{:.2}", r.summary.cpu_s_per_scrape / k),
            (Some(_), Some(_)) => "— (kernel dump under one tick)".to_owned(),
            _ => "—".to_owned(),
        };
        let k_cell = format!(
            "{} / {}",
            nfscope.map_or("—".to_owned(), |r| r.summary.k.to_string()),
            naive
                .or(json)
                .map_or("—".to_owned(), |(_, b)| b.runs.to_string())
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {first_cpu} | {first_peak} | {steady_cpu} | {kernel_cell} | {ratio} | {} | {} | {} | {k_cell} | {:.0} ({:.0}) |",
            c.rules,
            c.backend,
            c.shape.name(),
            cell(steady.map(|m| format!("{:.1}", m.after_mib)), "nfscope"),
            cell(steady.map(|m| format!("{:.1}", m.peak_mib)), "nfscope"),
            cell(server.map(|d| format!("{:.1}", d.first_200_s)), "nfscope"),
            c.wall_s,
            c.load_s,
        );
    }
    let not_run: Vec<String> = combos
        .iter()
        .flat_map(|c| {
            c.not_run.iter().map(move |(tool, why)| {
                format!(
                    "- {} rules, {}, {}: **{tool} not run** ({why})\n",
                    c.rules,
                    c.backend,
                    c.shape.name()
                )
            })
        })
        .collect();
    if !not_run.is_empty() {
        out.push('\n');
        out.extend(not_run);
    }
    out.push_str(
        "\nPrometheus head series per node (the seventh row of issue 15) is measured by \
         `scripts/prometheus-cost`, not here: see \"Prometheus cost: `--rule-series`\" below.\n",
    );
    out
}

/// The section markers: `scrape-bench` (the detailed tables) or, with `--scale`,
/// `scrape-bench-scale`.
fn markers(args: &Args) -> (String, String) {
    let name = if args.scale {
        "scrape-bench-scale"
    } else {
        "scrape-bench"
    };
    let flags = if args.scale { " --scale" } else { "" };
    (
        format!(
            "<!-- {name}:begin (generated by scrape-bench{flags} --write-doc; edit outside) -->"
        ),
        format!("<!-- {name}:end -->"),
    )
}

/// Replaces the text between the markers (or appends a new section) with the table and its context.
fn write_doc(doc: &Path, table: &str, args: &Args, started: &Started) -> Result<()> {
    let existing = std::fs::read_to_string(doc).unwrap_or_default();
    let (begin, end) = markers(args);
    let section = format!("{begin}\n{}\n{table}{end}", run_context(args, started));
    let updated = match (existing.find(&begin), existing.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &existing[..b], &existing[e + end.len()..])
        }
        _ => format!("{existing}\n## Scrape benchmark results\n\n{section}\n"),
    };
    std::fs::write(doc, updated).with_context(|| format!("writing {}", doc.display()))
}

/// Standard output of `sh -c cmd`, trimmed (empty if it fails).
fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn run_context(args: &Args, started: &Started) -> String {
    let command: Vec<String> = std::env::args().collect();
    let nfscope = Command::new(&args.nfscope)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "Produced by `{}` (K = {} scrapes per nfscope row, {} from 20,000 services up, after one warm-up scrape \
         reported as \"first\"; baselines: {} runs, {} from 20,000 services up, the first one reported as first), \
         source commit `{}`, nfscope binary `{}` ({nfscope}).\n\nMachine: {} CPUs ({}), kernel {}, {}; {}; {}. \
         Date: {} to {}. Load average at the start: {}; at the end: {}. Wall time {:.0} s.\n",
        command.join(" "),
        args.scrapes,
        args.scrapes_large,
        args.baseline_scrapes.unwrap_or(args.scrapes),
        args.baseline_scrapes_large,
        sh("git describe --always --dirty --abbrev=7 2>/dev/null"),
        args.nfscope.display(),
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        sh("uname -r"),
        sh("free -g | awk '/Mem:/ {print $2 \" GiB RAM\"}'"),
        sh("iptables --version"),
        sh("nft --version"),
        started.date,
        sh("date -u '+%H:%M UTC'"),
        started.load,
        sh("cut -d' ' -f1-3 /proc/loadavg"),
        started.instant.elapsed().as_secs_f64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(cpu: f64, steady: Option<SteadyRss>) -> Summary {
        let mut s = summarize(10.0, vec![5.0, 7.0, 6.0], cpu, 2048, 1 << 20);
        s.steady = steady;
        s
    }

    fn row(backend: &str, tool: &str, summary: Summary) -> Row {
        Row {
            services: 5000,
            rules: 72_523,
            backend: backend.to_owned(),
            shape: Shape::KubeProxy,
            tool: tool.to_owned(),
            summary,
        }
    }

    fn combo(backend: &str, not_run: Vec<(String, String)>) -> Combo {
        Combo {
            services: 5000,
            rules: 72_523,
            backend: backend.to_owned(),
            shape: Shape::KubeProxy,
            load_s: 4.0,
            wall_s: 200.0,
            save6_sys_s: Some(0.01),
            not_run,
        }
    }

    #[test]
    fn the_scale_table_puts_each_figure_beside_its_baseline() {
        let mut nfscope = summary(
            0.66,
            Some(SteadyRss {
                peak_mib: 53.1,
                after_mib: 49.0,
            }),
        );
        nfscope.server = Some(ServerDetail {
            first_cpu_s: 2.34,
            first_peak_mib: 163.5,
            first_200_s: 6.2,
            lint: None,
            change: ChangeWindow {
                median_ms: 1.0,
                cpu_s_per_scrape: 0.7,
                lint_cpu_s_per_scrape: 0.0,
                peak_mib: 160.0,
            },
        });
        let mut naive = summary(1.14, None);
        naive.baseline = Some(BaselineDetail {
            runs: 2,
            first_cpu_s: 1.09,
            first_peak_mib: 69.5,
            child_sys_s: 0.59,
        });
        let rows = vec![row("nft", "nfscope", nfscope), row("nft", "naive", naive)];
        let why = "above --nft-json-max-services 1".to_owned();
        let table = render_scale_table(
            &rows,
            &[
                combo("nft", vec![("nft-json".to_owned(), why.clone())]),
                combo("legacy", Vec::new()),
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
        let nft = lines
            .iter()
            .find(|l| l.starts_with("| 72523 | nft | kube-proxy |"))
            .expect("the nft line");
        // nfscope / naive / nft-json, each measure in its own column.
        assert!(
            nft.contains("| 2.34 / 1.09 / not run (see below) |"),
            "{nft}"
        );
        assert!(
            nft.contains("| 163.5 / 69.5 / not run (see below) |"),
            "{nft}"
        );
        assert!(nft.contains("| 0.660 / 1.140 |"), "{nft}");
        // Kernel dump = the save tool's system time + ip6tables-save's; ratio = 0.66 / 0.60.
        assert!(nft.contains("| 0.600 (0.590 + 0.010) | 1.10 |"), "{nft}");
        assert!(
            nft.contains("| 49.0 | 53.1 | 6.2 | 3 / 2 | 200 (4) |"),
            "{nft}"
        );
        assert!(table.contains(&format!("nft, kube-proxy: **nft-json not run** ({why})")));
        // A combination without rows says n/a, not a number.
        let legacy = lines
            .iter()
            .find(|l| l.starts_with("| 72523 | legacy |"))
            .expect("the legacy line");
        assert!(legacy.contains("| n/a / n/a / n/a |"), "{legacy}");
        // Every line has the header's number of cells.
        let cells = |l: &str| l.matches('|').count();
        let header = cells(lines[0]);
        for line in lines.iter().take_while(|l| l.starts_with('|')) {
            assert_eq!(cells(line), header, "{line}");
        }
    }
}
