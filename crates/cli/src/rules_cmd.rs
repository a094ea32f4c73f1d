//! `nfscope rules`: print the parsed, annotated ruleset with counters, from saved dumps or live.
//!
//! Owns reading the input files (`-` is stdin; each one `iptables-save`, `nft list ruleset` text
//! or `nft -j list ruleset` JSON, told apart by content), turning parse errors into the one-line
//! `error: FILE:LINE:COL: message` form with exit code 2, and choosing text or JSON output.

use std::io::Read;
use std::path::Path;

use std::sync::Arc;

use nfscope_ruleset::typed::{NftFamily, NftRuleset};
use nfscope_ruleset::{
    Family, Format as DumpFormat, NftLimits, ParseError, ParseOptions, Ruleset, Snapshot,
    SourceKind, SourceReport, detect_format, parse_nft_json, parse_nft_text,
};

use nfscope_server::oneshot;
use nfscope_trace::Unread;

use crate::cli::{BackendArg, Format, RulesArgs, seconds};
use crate::exit::Failure;
use crate::output::print_stdout;

/// Runs the command.
pub fn run(args: &RulesArgs) -> Result<(), Failure> {
    let snapshot = if args.rules.is_empty() {
        live(args)?
    } else {
        from_files(args)?
    };
    let unread = unread_sources(&snapshot);
    let annotated = oneshot::annotate(snapshot);
    let text = match args.format {
        Format::Text => oneshot::rules_text(&annotated) + &unread_text(&unread),
        Format::Json => splice_unread(
            oneshot::rules_json(&annotated).map_err(anyhow::Error::from)?,
            &unread,
        ),
    };
    print_stdout(&text)?;
    Ok(())
}

/// The live rules; fails (exit 1, naming each source and why) when nothing could be read.
pub(crate) fn live(args: &RulesArgs) -> Result<Snapshot, Failure> {
    let snapshot = live_snapshot(args)?;
    if nothing_read(&snapshot) {
        return Err(Failure::Other(anyhow::anyhow!(
            "no ruleset could be read: {}",
            unread_sources(&snapshot)
                .iter()
                .map(|u| format!("{}: {}", u.describe(), u.reason))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(snapshot)
}

/// Every source of `snapshot` that could not be read (rules and ipsets), with why.
pub(crate) fn unread_sources(snapshot: &Snapshot) -> Vec<Unread> {
    snapshot
        .sources
        .iter()
        .filter_map(|s| {
            let reason = s.error.clone()?;
            let (source, family, backend) = match s.kind {
                SourceKind::Rules { family, backend } => ("rules", Some(family), Some(backend)),
                SourceKind::Ipsets => ("ipsets", None, None),
                SourceKind::NativeRules => (nfscope_trace::NATIVE_RULES_SOURCE, None, None),
                SourceKind::Conntrack => return None,
            };
            Some(Unread {
                source: source.to_owned(),
                method: s.method.clone(),
                family,
                backend,
                reason,
            })
        })
        .collect()
}

/// No ruleset came back (iptables or native nftables) and at least one rules source failed:
/// nothing to answer from.
pub(crate) fn nothing_read(snapshot: &Snapshot) -> bool {
    let native = snapshot
        .nftables
        .ruleset
        .as_ref()
        .is_some_and(|r| !r.tables.is_empty());
    snapshot.rulesets.is_empty()
        && !native
        && snapshot.sources.iter().any(|s| {
            matches!(s.kind, SourceKind::Rules { .. } | SourceKind::NativeRules)
                && s.error.is_some()
        })
}

/// `not read: ipv4 legacy rules (getsockopt …): why` lines for text output (empty when all read).
pub(crate) fn unread_text(unread: &[Unread]) -> String {
    let mut out = String::new();
    if !unread.is_empty() {
        out.push('\n');
    }
    for u in unread {
        out.push_str(&format!("not read: {}: {}\n", u.describe(), u.reason));
    }
    out
}

/// Adds `"unread": [{"source", "method", "family", "backend", "reason"}, …]` to a JSON object
/// document (the output of `rules`, `lint`, `doctor`), in place: a large document is not copied.
pub(crate) fn splice_unread(mut json: String, unread: &[Unread]) -> String {
    let Some(body) = json.trim_end().strip_suffix('}') else {
        return json;
    };
    let body = body.trim_end().len();
    let sep = if json[..body].ends_with('{') { "" } else { "," };
    let list = serde_json::to_string(unread).unwrap_or_else(|_| "[]".to_owned());
    json.truncate(body);
    json.push_str(sep);
    json.push_str("\n  \"unread\": ");
    json.push_str(&list);
    json.push_str("\n}\n");
    json
}

/// The live rules as read, whatever failed (each source says in `Snapshot::sources`).
pub(crate) fn live_snapshot(args: &RulesArgs) -> Result<Snapshot, Failure> {
    let mut options = crate::serve::default_collect_options();
    crate::exit::check_netns(args.netns.as_deref())?;
    options.netns = args.netns.clone();
    options.timeout = seconds("--timeout", args.timeout).map_err(Failure::Input)?;
    options.tool_dir = args.tool_dir.clone();
    let (family, only) = (
        args.family.map(Family::from),
        args.backend.map(oneshot::Only::from),
    );
    oneshot::restrict(&mut options, family, only);
    let mut snapshot = nfscope_kernel::collect(&options);
    oneshot::keep_only(&mut snapshot, family, only);
    warn_failed_sources(&snapshot.sources);
    Ok(snapshot)
}

fn warn_failed_sources(sources: &[SourceReport]) {
    for source in sources {
        if let Some(error) = &source.error {
            tracing::warn!(method = %source.method, %error, "source failed");
        }
    }
}

pub(crate) fn from_files(args: &RulesArgs) -> Result<Snapshot, Failure> {
    let options = ParseOptions {
        family: args.family.map(Family::from),
        backend: args.backend.and_then(BackendArg::iptables),
        lenient: args.lenient,
        ..Default::default()
    };
    let mut snapshot = Snapshot::default();
    let mut native = NftRuleset::default();
    for path in &args.rules {
        let text = read_input(path)?;
        let nft = match detect_format(&text) {
            DumpFormat::IptablesSave => None,
            DumpFormat::NftText => Some(parse_nft_text(&text, &NftLimits::default())),
            DumpFormat::NftJson => Some(parse_nft_json(&text, &NftLimits::default())),
        };
        if let Some(parsed) = nft {
            let parsed = parsed.map_err(|e| located(path, &e))?;
            native.tables.extend(parsed.tables);
            native.notices.extend(parsed.notices);
            snapshot.sources.push(SourceReport {
                kind: SourceKind::NativeRules,
                method: format!("file {}", display_name(path)),
                error: None,
                duration_seconds: 0.0,
            });
            continue;
        }
        let ruleset =
            nfscope_ruleset::parse_ruleset(&text, &options).map_err(|e| located(path, &e))?;
        snapshot.sources.push(SourceReport {
            kind: SourceKind::Rules {
                family: ruleset.family,
                backend: ruleset.backend,
            },
            method: format!("file {}", display_name(path)),
            error: None,
            duration_seconds: 0.0,
        });
        snapshot.rulesets.push(ruleset);
    }
    if snapshot
        .sources
        .iter()
        .any(|s| s.kind == SourceKind::NativeRules)
    {
        drop_tables_given_twice(&mut native, &snapshot.rulesets);
        snapshot.nftables.ruleset = Some(Arc::new(native));
    }
    if let Some(path) = &args.ipsets {
        let text = read_input(path)?;
        snapshot.ipsets =
            nfscope_ruleset::ipset::parse_ipsets(&text).map_err(|e| located(path, &e))?;
        snapshot.sources.push(SourceReport {
            kind: SourceKind::Ipsets,
            method: format!("file {}", display_name(path)),
            error: None,
            duration_seconds: 0.0,
        });
    }
    oneshot::keep_only(
        &mut snapshot,
        args.family.map(Family::from),
        args.backend.map(oneshot::Only::from),
    );
    Ok(snapshot)
}

/// Tables an `nft list ruleset` dump says iptables-nft manages (`# Warning: table ip filter is
/// managed by iptables-nft, do not touch!`) are shown from the iptables dump of that family when
/// one was given too, not twice.
fn drop_tables_given_twice(native: &mut NftRuleset, rulesets: &[Ruleset]) {
    let managed: Vec<(NftFamily, String)> = native
        .notices
        .iter()
        .filter_map(|n| {
            let rest = n.split("table ").nth(1)?;
            let (head, _) = rest.split_once(" is managed by iptables-nft")?;
            let (family, name) = head.split_once(' ')?;
            Some((NftFamily::parse(family)?, name.to_owned()))
        })
        .collect();
    native.tables.retain(|t| {
        let family = match t.family {
            NftFamily::Ip => Family::Ipv4,
            NftFamily::Ip6 => Family::Ipv6,
            _ => return true,
        };
        !(managed.iter().any(|(f, n)| *f == t.family && *n == t.name)
            && rulesets.iter().any(|r| r.family == family))
    });
}

/// `FILE:LINE:COL: message`, the one line a parse error prints.
fn located(path: &Path, error: &ParseError) -> Failure {
    Failure::Input(format!(
        "{}:{}:{}: {}",
        display_name(path),
        error.line,
        error.column,
        error.message
    ))
}

fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

fn read_input(path: &Path) -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map(drop)
    };
    read.map_err(|e| Failure::Input(format!("{}: {e}", display_name(path))))?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        let column = offset
            - e.as_bytes()[..offset]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        Failure::Input(format!(
            "{}:{line}:{column}: not valid UTF-8",
            display_name(path)
        ))
    })
}
