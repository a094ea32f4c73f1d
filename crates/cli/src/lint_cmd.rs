//! `nfscope lint`: what is broken in the rules, from saved dumps or the live node; and the
//! `nfscope_lint_findings` metric family the server appends to `/metrics`.
//!
//! Owns the command-line flags, reading the input (through `rules_cmd`, so file errors and parse
//! errors look and exit the same as for `nfscope rules`), the text/JSON choice and the exit status:
//! 1 when a finding reaches `--fail-on`, 2 for unusable input, else 0. The checks themselves are
//! `nfscope-lint`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use nfscope_lint::{Finding, LintInput, Severity, Summary};
use nfscope_ruleset::{Backend, Family, Snapshot, SourceKind};

use crate::cli::{BackendArg, FamilyArg, Format, RulesArgs};
use crate::exit::Failure;
use crate::output::print_stdout;
use crate::rules_cmd;

const LINT_EXAMPLES: &str = "\
Examples:
  nfscope lint                                    # live: both families, both backends
  nfscope lint --netns blue --fail-on warning     # live, in `ip netns` namespace `blue`
  nfscope lint --rules node.rules --ipsets node.ipset --format json
  iptables-save | nfscope lint --rules -

Exit status: 0 no finding reaches --fail-on, 1 one does, 2 unusable input (unreadable file, parse error).";

/// `nfscope lint`.
#[derive(Debug, Args)]
#[command(after_help = LINT_EXAMPLES)]
pub struct LintArgs {
    /// Lint an `iptables-save`/`ip6tables-save` dump (or restore input) from FILE instead of the
    /// live kernel; `-` is stdin. Repeat for several dumps (IPv4 and IPv6, nft and legacy). [default: live]
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// `ipset save`/`ipset list` output: also report rules matching ipsets that do not exist
    /// (only with --rules; live linting reads the node's ipsets). [default: none]
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
    /// Output format: text for people, json = {"findings": [...], "summary": {...}}.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit with status 1 when a finding of this severity or worse exists.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    /// Skip lines that are not understood instead of failing; each becomes a `garbled-rule`
    /// warning. [default: strict]
    #[arg(long)]
    pub lenient: bool,
    /// Lint the rules of the named network namespace (`ip netns` name). [default: current namespace]
    #[arg(long, value_name = "NAME", conflicts_with = "rules")]
    pub netns: Option<String>,
    /// Per-tool timeout for live collection, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Look up the save tools only in DIR instead of `PATH` and the sbin folders.
    #[arg(long, value_name = "DIR", conflicts_with = "rules")]
    pub tool_dir: Option<PathBuf>,
}

/// `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Only `error` findings fail.
    Error,
    /// `warning` and `error` findings fail.
    Warning,
    /// Any finding fails.
    Info,
}

impl From<FailOn> for Severity {
    fn from(value: FailOn) -> Self {
        match value {
            FailOn::Error => Self::Error,
            FailOn::Warning => Self::Warning,
            FailOn::Info => Self::Info,
        }
    }
}

impl LintArgs {
    /// The same input flags as `nfscope rules`, so reading behaves identically.
    fn as_rules_args(&self) -> RulesArgs {
        RulesArgs {
            rules: self.rules.clone(),
            ipsets: self.ipsets.clone(),
            family: self.family,
            backend: self.backend,
            format: self.format,
            lenient: self.lenient,
            netns: self.netns.clone(),
            timeout: self.timeout,
            tool_dir: self.tool_dir.clone(),
        }
    }
}

/// Runs the command.
pub fn run(args: &LintArgs) -> Result<(), Failure> {
    let input = args.as_rules_args();
    let snapshot = if args.rules.is_empty() {
        rules_cmd::live(&input)?
    } else {
        rules_cmd::from_files(&input)?
    };
    let findings = lint_snapshot(&snapshot);
    print_stdout(&render(&findings, &snapshot, args.format))?;
    check_threshold(&findings, args.fail_on.into())
}

/// Lints a snapshot: its iptables rulesets, then its native nftables tables. Findings about the
/// live node cite table, chain and rule position only: the line numbers of the save tools' output
/// would point into a dump the user never saw (a snapshot read from files keeps them: they are
/// lines of the user's file).
pub fn lint_snapshot(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = nfscope_lint::lint(&lint_input(snapshot));
    if let Some(native) = &snapshot.nftables.ruleset {
        findings.extend(nfscope_lint::lint_nft(native));
    }
    if is_live(snapshot) {
        findings.into_iter().map(Finding::without_lines).collect()
    } else {
        findings
    }
}

/// Was the snapshot read from the node (netlink or the save tools) rather than from files?
fn is_live(snapshot: &Snapshot) -> bool {
    !snapshot.rule_source.is_empty()
}

/// The snapshot's rulesets, and its ipsets when they were read (an ipset dump or `ipset list`
/// that worked): without them `missing-ipset` is not judged.
pub(crate) fn lint_input(snapshot: &Snapshot) -> LintInput<'_> {
    let ipsets_read = snapshot
        .sources
        .iter()
        .any(|s| s.kind == SourceKind::Ipsets && s.error.is_none());
    LintInput {
        rulesets: &snapshot.rulesets,
        ipsets: ipsets_read.then_some(snapshot.ipsets.as_slice()),
    }
}

/// The text or JSON report.
/// Sources that could not be read are named after the findings (text) or as `"unread"` (JSON).
pub fn render(findings: &[Finding], snapshot: &Snapshot, format: Format) -> String {
    let (native_rulesets, native_rules) = native_counts(snapshot);
    let rules = snapshot
        .rulesets
        .iter()
        .map(|r| r.rule_count())
        .sum::<usize>()
        + native_rules;
    let summary = Summary::new(findings, snapshot.rulesets.len() + native_rulesets, rules);
    let unread = rules_cmd::unread_sources(snapshot);
    let files = dump_files(snapshot);
    let file_of = |family: Family, backend: Backend| -> Option<&str> {
        let mut named = files
            .iter()
            .filter(|(f, b, _)| (*f, *b) == (family, backend));
        match (named.next(), named.next()) {
            (Some((_, _, name)), None) => Some(name),
            _ => None, // not from a file, or two dumps of that family and backend
        }
    };
    match format {
        Format::Text => {
            nfscope_lint::render_text_from_files(findings, &summary, &file_of)
                + &rules_cmd::unread_text(&unread)
        }
        Format::Json => rules_cmd::splice_unread(
            nfscope_lint::render_json_from_files(findings, &summary, &file_of),
            &unread,
        ),
    }
}

/// The dumps a snapshot was read from (`--rules FILE`), by family and backend, so offline
/// findings cite `FILE:LINE`.
fn dump_files(snapshot: &Snapshot) -> Vec<(Family, Backend, &str)> {
    snapshot
        .sources
        .iter()
        .filter_map(|s| match s.kind {
            SourceKind::Rules { family, backend } => {
                Some((family, backend, s.method.strip_prefix("file ")?))
            }
            _ => None,
        })
        .collect()
}

/// Native rulesets (one per nft family, as `rules` shows them) and their rules, for summaries.
pub(crate) fn native_counts(snapshot: &Snapshot) -> (usize, usize) {
    let Some(native) = snapshot.nftables.ruleset.as_deref() else {
        return (0, 0);
    };
    let mut families: Vec<_> = native.tables.iter().map(|t| t.family).collect();
    families.sort();
    families.dedup();
    (families.len(), native.rule_count())
}

/// Exit status 1 (with a one-line reason) when a finding reaches `threshold`.
pub fn check_threshold(findings: &[Finding], threshold: Severity) -> Result<(), Failure> {
    let reaching = findings.iter().filter(|f| f.severity >= threshold).count();
    if reaching == 0 {
        return Ok(());
    }
    Err(Failure::Other(anyhow::anyhow!(
        "{reaching} finding(s) at or above {threshold} (--fail-on {threshold})"
    )))
}

#[cfg(test)]
mod tests {
    use nfscope_ruleset::{Backend, Family, ParseOptions, parse_ruleset};

    use crate::demo::rules::generate;
    use crate::demo::topology::Topology;

    /// The demo node is a stock Kubernetes node with one deliberate defect (a service without
    /// endpoints): kube-proxy's normally empty chains and the other agents' scaffolds say nothing.
    #[test]
    fn the_demo_node_lints_to_its_one_deliberate_defect() {
        let rules = generate(&Topology::standard(4242));
        let rulesets: Vec<_> = [
            (&rules.iptables, Family::Ipv4),
            (&rules.ip6tables, Family::Ipv6),
        ]
        .into_iter()
        .map(|(text, family)| {
            let options = ParseOptions {
                family: Some(family),
                backend: Some(Backend::Nft),
                ..ParseOptions::default()
            };
            parse_ruleset(text, &options).expect("demo rules parse")
        })
        .collect();
        let findings = nfscope_lint::lint(&nfscope_lint::LintInput {
            rulesets: &rulesets,
            ipsets: None,
        });
        let found: Vec<String> = findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} {}",
                    f.severity,
                    f.id,
                    f.location.chain.as_deref().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            found,
            ["warning kube-service-no-endpoints KUBE-SERVICES"],
            "{findings:#?}"
        );
        assert!(findings[0].message.contains("demo/legacy"));
    }
}
