//! `nfscope`: the binary. Owns the command line (clap), the HTTP server (axum), process exit codes
//! and logging setup, and wires the library crates together: `nfscope-kernel` collects,
//! `nfscope-ruleset` parses, `nfscope-annotate` explains, `nfscope-exporter` renders,
//! `nfscope-server` runs the scrape pipeline behind `serve`.
//!
//! It deliberately holds no netfilter logic of its own: anything that can be tested without I/O
//! lives in the library crates.
//!
//! Exit codes: 0 success, 2 unusable input (unreadable file, parse error), 1 any other failure.

#![forbid(unsafe_code)]
mod ambient_caps;
mod cli;
mod demo;
mod doctor_cmd;
mod exit;
mod failures_cmd;
mod flow_api;
mod flows_cmd;
mod http;
mod kube_glue;
mod lint_cmd;
mod output;
mod rules_cmd;
mod serve;
mod trace_cmd;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    ambient_caps::pass_on_to_children();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Rules(args) => rules_cmd::run(&args),
        Command::Serve(args) => {
            let kube = args.kube;
            let config = args.into_config().map_err(Failure::Input)?;
            exit::check_netns(config.collect.netns.as_deref())?;
            block_on(async move {
                let mut config = config;
                config.kube = kube_glue::start(kube).await;
                serve::run_server(config, serve::shutdown_signal()).await
            })
        }
        Command::Demo(args) => block_on(demo::run(args)),
        Command::Trace(args) => trace_cmd::run(&args),
        Command::Lint(args) => lint_cmd::run(&args),
        Command::Doctor(args) => doctor_cmd::run(&args),
        Command::Flows(args) => flows_cmd::run(&args),
        Command::Failures(args) => failures_cmd::run(&args),
    }
}

/// Runs an async entry point on a fresh multi-threaded runtime.
fn block_on(fut: impl Future<Output = anyhow::Result<()>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(anyhow::Error::new(e).context("starting the async runtime")))?;
    runtime.block_on(fut).map_err(Failure::Other)
}

/// `RUST_LOG`-style filter (default `info`), human-readable lines on stderr.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
