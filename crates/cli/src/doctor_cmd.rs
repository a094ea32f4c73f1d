//! `nfscope doctor`: the lint of the live rules plus node checks (forwarding, rp_filter, bridge
//! netfilter, kernel modules, conntrack, backends, tunnels, BGP routes, MTU), each with its
//! evidence. Read-only. The backends check also counts native nftables tables and warns when two
//! rule systems program one hook (`nfscope_lint::native::judge_native_backends`).
//!
//! Owns the flags, reading the node through `nfscope-kernel` (in `--netns` when asked) and the
//! exit status: 1 when a node check fails or a finding reaches `--fail-on`, else 0. The judging
//! is `nfscope_lint::node`.

use std::path::PathBuf;

use clap::Args;
use nfscope_kernel::node::{NodeReadings, read_node};
use nfscope_lint::node::{
    NodeCheck, NodeFacts, Status, check_node, parse_builtin_modules, parse_links, parse_modules,
    parse_routes,
};
use nfscope_lint::{Severity, Summary};
use nfscope_trace::Unread;

use crate::cli::{Format, RulesArgs, seconds};
use crate::exit::Failure;
use crate::lint_cmd::{FailOn, check_threshold, lint_snapshot, native_counts};
use crate::output::print_stdout;
use crate::rules_cmd;

const DOCTOR_EXAMPLES: &str = "\
Examples:
  nfscope doctor                       # this node
  nfscope doctor --netns blue          # inside `ip netns` namespace `blue`
  nfscope doctor --format json --fail-on warning

Exit status: 1 when a node check fails or a lint finding reaches --fail-on, else 0.";

/// `nfscope doctor`.
#[derive(Debug, Args)]
#[command(after_help = DOCTOR_EXAMPLES)]
pub struct DoctorArgs {
    /// Examine the named network namespace (`ip netns` name). [default: current namespace]
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Output format: text, or json = {"checks": [...], "findings": [...], "summary": {...}}.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit with status 1 when a lint finding of this severity or worse exists.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    /// Per-tool timeout, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Look up the tools (`iptables-nft-save`, `ip`, …) only in DIR. [default: PATH and sbin]
    #[arg(long, value_name = "DIR")]
    pub tool_dir: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: &DoctorArgs) -> Result<(), Failure> {
    let rules_args = RulesArgs {
        rules: Vec::new(),
        ipsets: None,
        family: None,
        backend: None,
        format: args.format,
        lenient: false,
        netns: args.netns.clone(),
        timeout: args.timeout,
        tool_dir: args.tool_dir.clone(),
    };
    // A node whose rules cannot be read still gets its node checks; what was not read is
    // named in the backends check (a failure when no ruleset at all could be read).
    let snapshot = rules_cmd::live_snapshot(&rules_args)?;
    let unread = rules_cmd::unread_sources(&snapshot);
    let nothing_read = rules_cmd::nothing_read(&snapshot);
    let timeout = seconds("--timeout", args.timeout).map_err(Failure::Input)?;
    let readings = read_node(args.netns.as_deref(), timeout, args.tool_dir.as_deref())
        .map_err(|e| Failure::Other(anyhow::Error::new(e)))?;
    let mut checks = check_node(&facts(readings), &snapshot.rulesets);
    if let (Some(native), Some(check)) = (
        snapshot.nftables.ruleset.as_deref(),
        checks.iter_mut().find(|c| c.id == "backends"),
    ) {
        nfscope_lint::native::judge_native_backends(check, &snapshot.rulesets, native);
    }
    mark_unread(&mut checks, &unread, nothing_read);
    let findings = lint_snapshot(&snapshot);
    let (native_rulesets, native_rules) = native_counts(&snapshot);
    let rules = snapshot
        .rulesets
        .iter()
        .map(|r| r.rule_count())
        .sum::<usize>()
        + native_rules;
    let summary = Summary::new(&findings, snapshot.rulesets.len() + native_rulesets, rules);
    let text = match args.format {
        Format::Text => nfscope_lint::render_doctor_text(&checks, &findings, &summary),
        Format::Json => rules_cmd::splice_unread(
            nfscope_lint::render_doctor_json(&checks, &findings, &summary),
            &unread,
        ),
    };
    print_stdout(&text)?;
    failed_checks(&checks)?;
    check_threshold(&findings, Severity::from(args.fail_on))
}

/// The backends check judged only the rules that were read: say which were not, and why
/// (warn; fail when no ruleset could be read at all).
fn mark_unread(checks: &mut [NodeCheck], unread: &[Unread], nothing_read: bool) {
    let rules: Vec<&Unread> = unread
        .iter()
        .filter(|u| u.source == "rules" || u.source == "native nftables rules")
        .collect();
    let Some(check) = checks.iter_mut().find(|c| c.id == "backends") else {
        return;
    };
    if rules.is_empty() {
        return;
    }
    check.status = if nothing_read {
        Status::Fail
    } else {
        Status::Warn
    };
    check.summary = format!(
        "{} ruleset(s) could not be read, so which backends hold rules is not known: {}",
        rules.len(),
        rules
            .iter()
            .map(|u| u.describe())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for u in rules {
        check
            .evidence
            .push(format!("not read: {}: {}", u.describe(), u.reason));
    }
}

fn failed_checks(checks: &[NodeCheck]) -> Result<(), Failure> {
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.id)
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failure::Other(anyhow::anyhow!(
        "node check(s) failed: {}",
        failed.join(", ")
    )))
}

/// Turns raw readings into the facts the checks judge (unreadable or unparseable parts become unknown).
fn facts(readings: NodeReadings) -> NodeFacts {
    NodeFacts {
        sysctls: readings.sysctls.into_iter().collect(),
        links: readable("interfaces", readings.links_json).and_then(|t| logged(parse_links(&t))),
        routes: readable("routes", readings.routes_json).and_then(|t| logged(parse_routes(&t))),
        modules: readings.modules.ok().map(|t| parse_modules(&t)),
        builtin_modules: parse_builtin_modules(&readings.builtin_modules),
        conntrack: readings.conntrack,
    }
}

fn readable(what: &str, result: Result<String, String>) -> Option<String> {
    result
        .map_err(|error| tracing::warn!(%error, "{what} could not be read"))
        .ok()
}

fn logged<T>(result: Result<T, nfscope_lint::node::NodeParseError>) -> Option<T> {
    result
        .map_err(|error| tracing::warn!(%error, "unexpected ip output"))
        .ok()
}
