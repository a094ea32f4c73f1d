//! Reading one (family, backend) ruleset by forking `ip[6]tables-{nft,legacy}-save -c`.
//!
//! Owns which tool serves which (family, backend), when the legacy backend can be known to hold
//! nothing without running anything, and turning the tool's stdout into a [`Ruleset`] with the
//! explicit family and backend. It does not parse the text itself (`nfscope-ruleset` does).

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use nfscope_ruleset::{Backend, Family, Notice, NoticeKind, ParseOptions, Ruleset, parse_ruleset};

use crate::error::KernelError;
use crate::exec::{ToolOutput, find_tool, run_tool};

/// How a ruleset was read, for [`nfscope_ruleset::SourceReport::method`].
pub(crate) fn method(family: Family, backend: Backend) -> String {
    match save_tool(family, backend) {
        Some(tool) => format!("exec {tool} -c"),
        None => "none".to_owned(),
    }
}

/// The save tool for a family and backend; `None` for `Backend::Unknown`.
pub fn save_tool(family: Family, backend: Backend) -> Option<&'static str> {
    match (family, backend) {
        (Family::Ipv4, Backend::Nft) => Some("iptables-nft-save"),
        (Family::Ipv4, Backend::Legacy) => Some("iptables-legacy-save"),
        (Family::Ipv6, Backend::Nft) => Some("ip6tables-nft-save"),
        (Family::Ipv6, Backend::Legacy) => Some("ip6tables-legacy-save"),
        (_, Backend::Unknown) => None,
    }
}

/// Reads the ruleset of one family from one backend, in the calling thread's network namespace.
///
/// `Ok(None)` means the backend holds no tables (including: the legacy x_tables module is not
/// loaded, in which case nothing is run). Never modifies the firewall.
pub fn read_ruleset(
    family: Family,
    backend: Backend,
    timeout: Duration,
) -> Result<Option<Ruleset>, KernelError> {
    read_ruleset_from(family, backend, timeout, None)
}

/// [`read_ruleset`] with the tool looked up only in `tool_dir` (when given).
pub(crate) fn read_ruleset_from(
    family: Family,
    backend: Backend,
    timeout: Duration,
    tool_dir: Option<&Path>,
) -> Result<Option<Ruleset>, KernelError> {
    let Some((tool, output)) = run_save_tool(family, backend, timeout, tool_dir)? else {
        return Ok(None);
    };
    to_ruleset(tool, &output, family, backend, false)
}

/// Like [`read_ruleset_from`], but when the strict parse fails the output is parsed again
/// leniently: the ruleset is kept (its notices say which lines were skipped) and the strict parse
/// error comes back alongside it, for the source report.
pub(crate) fn read_ruleset_tolerant(
    family: Family,
    backend: Backend,
    timeout: Duration,
    tool_dir: Option<&Path>,
) -> Result<(Option<Ruleset>, Option<KernelError>), KernelError> {
    let Some((tool, output)) = run_save_tool(family, backend, timeout, tool_dir)? else {
        return Ok((None, None));
    };
    parse_tolerant(tool, &output, family, backend)
}

/// Runs the save tool of (family, backend) with `args` (no legacy-emptiness check) and returns
/// its name and output; the netlink reader uses this to re-read rule text after a change.
pub(crate) fn run_save(
    family: Family,
    backend: Backend,
    args: &[&str],
    timeout: Duration,
    tool_dir: Option<&Path>,
) -> Result<(&'static str, ToolOutput), KernelError> {
    let tool = save_tool(family, backend).ok_or(KernelError::UnknownBackend(backend))?;
    let path = find_tool(tool, tool_dir)?;
    Ok((tool, run_tool(tool, &path, args, timeout)?))
}

/// Parses a save tool's output strictly, falling back to a lenient parse (whose strict error
/// comes back alongside), as [`read_ruleset_tolerant`] does.
pub(crate) fn parse_tolerant(
    tool: &str,
    output: &ToolOutput,
    family: Family,
    backend: Backend,
) -> Result<(Option<Ruleset>, Option<KernelError>), KernelError> {
    match to_ruleset(tool, output, family, backend, false) {
        Ok(ruleset) => Ok((ruleset, None)),
        Err(strict) => match to_ruleset(tool, output, family, backend, true) {
            Ok(ruleset) => Ok((ruleset, Some(strict))),
            Err(_) => Err(strict),
        },
    }
}

/// Runs the save tool for (family, backend) and returns its name and output; `None` when the
/// legacy backend can be seen to hold nothing without running anything.
fn run_save_tool(
    family: Family,
    backend: Backend,
    timeout: Duration,
    tool_dir: Option<&Path>,
) -> Result<Option<(&'static str, ToolOutput)>, KernelError> {
    let tool = save_tool(family, backend).ok_or(KernelError::UnknownBackend(backend))?;
    if backend == Backend::Legacy {
        match legacy_table_names(family) {
            Ok(names) if names.is_empty() => return Ok(None),
            // The tool would fail on the same file, saying less.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Err(KernelError::Io {
                    what: method(family, backend),
                    source: e,
                });
            }
            _ => {}
        }
    }
    let path = find_tool(tool, tool_dir)?;
    Ok(Some((tool, run_tool(tool, &path, &["-c"], timeout)?)))
}

/// The file listing a family's legacy tables in this thread's namespace (`/proc/net` follows
/// the main thread's namespace, `/proc/thread-self/net` this thread's).
fn legacy_names_file(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "/proc/thread-self/net/ip_tables_names",
        Family::Ipv6 => "/proc/thread-self/net/ip6_tables_names",
    }
}

/// The family's legacy table names, in the kernel's order (the order `iptables-legacy-save`
/// prints); empty when x_tables for the family is not loaded (no file).
///
/// The file is mode 0440 root:root, so a non-root reader needs supplementary group 0 or
/// CAP_DAC_READ_SEARCH; without either the error says so. There is no other read-only way to
/// learn the names: `*_SO_GET_INFO` on a standard name *creates* that table when it is not
/// there (measured on Linux 6.18: asking an empty namespace for the five standard names
/// instantiated all five), so it is only done when asked for
/// ([`crate::CollectOptions::probe_legacy_tables`]).
pub(crate) fn legacy_table_names(family: Family) -> std::io::Result<Vec<String>> {
    let file = legacy_names_file(family);
    match fs::read_to_string(file) {
        Ok(text) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(std::io::Error::new(
            e.kind(),
            format!("{file}: {e}: {LEGACY_NAMES_HINT}"),
        )),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("{file}: {e}"))),
    }
}

/// What an unreadable legacy table list needs, for error messages.
pub(crate) const LEGACY_NAMES_HINT: &str = "legacy tables cannot be listed: the file is mode \
    0440 root:root, so reading it needs supplementary group 0 (root; no capability) or \
    CAP_DAC_READ_SEARCH; nfscope does not ask for each standard table instead, because asking \
    creates the tables that are not there";

/// True when the kernel shows no legacy table for `family` in this thread's namespace: the
/// `ip[6]_tables_names` file is missing (x_tables for that family not loaded) or empty.
///
/// Running the save tool anyway could load `ip_tables` as a side effect. When the file cannot be
/// read the answer is "don't know" (`false`).
pub(crate) fn legacy_holds_nothing(family: Family) -> bool {
    legacy_table_names(family).is_ok_and(|names| names.is_empty())
}

fn to_ruleset(
    tool: &str,
    output: &ToolOutput,
    family: Family,
    backend: Backend,
    lenient: bool,
) -> Result<Option<Ruleset>, KernelError> {
    if output.stdout.trim().is_empty() {
        return Ok(None);
    }
    let options = ParseOptions {
        family: Some(family),
        backend: Some(backend),
        lenient,
        ..Default::default()
    };
    let mut ruleset =
        parse_ruleset(&output.stdout, &options).map_err(|error| KernelError::Parse {
            tool: tool.to_owned(),
            error,
        })?;
    if ruleset.tables.is_empty() && ruleset.notices.is_empty() {
        return Ok(None);
    }
    ruleset.notices.extend(stderr_notices(tool, &output.stderr));
    Ok(Some(ruleset))
}

/// What a successful tool said on stderr, as notices (line 0: not part of the dump).
///
/// iptables-nft-save prints `# Warning: iptables-legacy tables present, …` there: both backends
/// hold rules. Any other line is kept as an ignored line rather than dropped.
fn stderr_notices(tool: &str, stderr: &str) -> Vec<Notice> {
    let lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines
        .map(|line| {
            let kind = if line.contains("legacy tables present") {
                NoticeKind::LegacyTablesPresent
            } else {
                NoticeKind::IgnoredLine {
                    reason: format!("printed on stderr by {tool}"),
                }
            };
            Notice {
                line: 0,
                kind,
                text: line.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_real_backend_has_a_save_tool_and_unknown_has_none() {
        assert_eq!(
            method(Family::Ipv6, Backend::Legacy),
            "exec ip6tables-legacy-save -c"
        );
        assert_eq!(
            save_tool(Family::Ipv4, Backend::Nft),
            Some("iptables-nft-save")
        );
        assert_eq!(save_tool(Family::Ipv4, Backend::Unknown), None);
        let err = read_ruleset(Family::Ipv4, Backend::Unknown, Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.to_string(), "no save tool for backend unknown");
    }

    #[test]
    fn the_legacy_warning_on_stderr_becomes_a_notice() {
        let notices = stderr_notices(
            "iptables-nft-save",
            "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n\nodd\n",
        );
        assert_eq!(notices.len(), 2);
        assert_eq!(notices[0].kind, NoticeKind::LegacyTablesPresent);
        assert_eq!(
            notices[1].kind,
            NoticeKind::IgnoredLine {
                reason: "printed on stderr by iptables-nft-save".to_owned()
            }
        );
        assert_eq!(notices[1].text, "odd");
    }

    #[test]
    fn blank_output_means_the_backend_holds_nothing() {
        let output = ToolOutput {
            stdout: "\n \n".to_owned(),
            stderr: String::new(),
        };
        let got = to_ruleset(
            "iptables-nft-save",
            &output,
            Family::Ipv4,
            Backend::Nft,
            false,
        )
        .unwrap();
        assert_eq!(got, None);
    }
}
