//! Rendering findings: the terminal listing, the JSON document of `nfscope lint --format json`
//! (both citing `FILE:LINE` when the caller says which file a ruleset came from), and the
//! `nfscope_lint_findings` Prometheus family.
//!
//! It does not decide what is a finding (see [`crate::checks`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nfscope_expo::{Exposition, Kind, MetricFamilies, ScrapeFacts};
use nfscope_ruleset::{Backend, Family, escape_control};
use serde::Serialize;

use crate::finding::{Finding, FindingId, Location, Severity, Summary};
use crate::node::NodeCheck;

/// The JSON document: `{"findings": [...], "summary": {...}}`.
#[derive(Debug, Serialize)]
struct Document<'a> {
    findings: &'a [Finding],
    summary: &'a Summary,
}

/// The name of the file a ruleset (by family and backend) was read from, when the caller knows
/// it: offline findings then cite `FILE:LINE` instead of a bare line.
pub type FileOf<'a> = &'a dyn Fn(Family, Backend) -> Option<&'a str>;

fn no_file(_: Family, _: Backend) -> Option<&'static str> {
    None
}

/// Pretty JSON with a trailing newline.
pub fn render_json(findings: &[Finding], summary: &Summary) -> String {
    render_json_from_files(findings, summary, &no_file)
}

/// [`render_json`], each finding (and related place) with a line also naming its `"file"`.
pub fn render_json_from_files(
    findings: &[Finding],
    summary: &Summary,
    file_of: FileOf<'_>,
) -> String {
    let mut document = match serde_json::to_value(Document { findings, summary }) {
        Ok(value) => value,
        Err(e) => return format!("{{\"error\": \"{e}\"}}\n"),
    };
    let entries = document["findings"].as_array_mut().into_iter().flatten();
    for (finding, value) in findings.iter().zip(entries) {
        add_file(
            value,
            finding.family,
            finding.backend,
            &finding.location,
            file_of,
        );
        let related = value["related"].as_array_mut().into_iter().flatten();
        for (r, value) in finding.related.iter().zip(related) {
            add_file(value, r.family, r.backend, &r.location, file_of);
        }
    }
    let mut text = serde_json::to_string_pretty(&document)
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

fn add_file(
    value: &mut serde_json::Value,
    family: Family,
    backend: Backend,
    location: &Location,
    file_of: FileOf<'_>,
) {
    if location.line.is_none() {
        return;
    }
    if let (Some(file), Some(object)) = (file_of(family, backend), value.as_object_mut()) {
        object.insert("file".to_owned(), serde_json::Value::from(file));
    }
}

/// One block per finding (`severity id family/backend table chain #rule (line N)`, the message,
/// then related places and Kubernetes context indented), then a summary line. Text that came
/// from the dump (chain names, comments in messages) has its control characters escaped. A
/// finding without a line (read live) shows table, chain and rule position only.
pub fn render_text(findings: &[Finding], summary: &Summary) -> String {
    render_text_from_files(findings, summary, &no_file)
}

/// [`render_text`], citing `(FILE:LINE)` where `file_of` names the file of a finding's ruleset.
pub fn render_text_from_files(
    findings: &[Finding],
    summary: &Summary,
    file_of: FileOf<'_>,
) -> String {
    let mut out = String::new();
    for f in findings {
        let (family, backend) = match f.nftables {
            Some(nft) => (nft.as_str().to_owned(), "nftables".to_owned()),
            None => (f.family.to_string(), f.backend.to_string()),
        };
        let _ = writeln!(
            out,
            "{:<7} {} {family}/{backend}{}",
            f.severity.as_str(),
            f.id,
            escape_control(&place(&f.location, file_of(f.family, f.backend)))
        );
        let _ = writeln!(out, "        {}", escape_control(&f.message));
        if let Some(kube) = &f.kube {
            let meaning = kube
                .meaning
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "        kubernetes: {}{}",
                kube.owner,
                escape_control(&meaning)
            );
        }
        for r in &f.related {
            let _ = writeln!(
                out,
                "        related: {}{} ({})",
                r.family,
                escape_control(&place(&r.location, file_of(r.family, r.backend))),
                r.note
            );
        }
    }
    let _ = writeln!(
        out,
        "{} finding(s): {} error(s), {} warning(s), {} info; {} ruleset(s), {} rule(s) checked",
        summary.total,
        summary.errors,
        summary.warnings,
        summary.infos,
        summary.rulesets,
        summary.rules
    );
    out
}

fn place(location: &Location, file: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(table) = &location.table {
        let _ = write!(text, " {table}");
    }
    if let Some(chain) = &location.chain {
        let _ = write!(text, " {chain}");
    }
    if let Some(rule) = location.rule_index {
        let _ = write!(text, " #{rule}");
    }
    match (location.line, file) {
        (Some(line), Some(file)) => {
            let _ = write!(text, " ({file}:{line})");
        }
        (Some(line), None) => {
            let _ = write!(text, " (line {line})");
        }
        (None, _) => {}
    }
    text
}

/// Appends the `nfscope_lint_findings{id, severity}` gauge (HELP and TYPE included). Every id is
/// written at each severity it can have, zero when absent, so alerts can compare against 0
/// instead of relying on `absent()`.
pub fn encode_finding_metrics(findings: &[Finding], out: &mut String) {
    let mut expo = Exposition::appending_to(std::mem::take(out));
    FindingCounts::of(findings).encode(&ScrapeFacts::default(), &mut expo);
    *out = expo.into_string();
}

/// Findings counted by id and severity: all a server keeps of a lint (at 70k rules the findings
/// themselves are ~12 MiB). Counts of separate lints (one per ruleset, the cross-ruleset checks)
/// add up to the counts of one lint over everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingCounts(BTreeMap<(FindingId, Severity), u64>);

impl FindingCounts {
    /// Counts `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        let mut counts = BTreeMap::new();
        for f in findings {
            *counts.entry((f.id, f.severity)).or_default() += 1;
        }
        Self(counts)
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        for (key, n) in &other.0 {
            *self.0.entry(*key).or_default() += n;
        }
    }

    /// Adds `n` findings of one id at one severity.
    pub fn add_count(&mut self, id: FindingId, severity: Severity, n: u64) {
        if n > 0 {
            *self.0.entry((id, severity)).or_default() += n;
        }
    }

    /// The count of one id at one severity.
    pub fn get(&self, id: FindingId, severity: Severity) -> u64 {
        self.0.get(&(id, severity)).copied().unwrap_or(0)
    }
}

impl MetricFamilies for FindingCounts {
    /// The `nfscope_lint_findings` gauge, with a zero for every id and severity not found.
    fn encode(&self, _: &ScrapeFacts<'_>, out: &mut Exposition<'_>) {
        let mut counts: BTreeMap<(FindingId, Severity), u64> = BTreeMap::new();
        for id in FindingId::ALL {
            for &severity in id.severities() {
                counts.insert((id, severity), 0);
            }
        }
        for (key, n) in &self.0 {
            *counts.entry(*key).or_default() += n;
        }
        let name = "nfscope_lint_findings";
        out.family(
            name,
            Kind::Gauge,
            "Lint findings in the node's current rulesets, by finding id and severity.",
        );
        for ((id, severity), count) in counts {
            let (id, severity) = (id.to_string(), severity.to_string());
            out.sample(name, &[("id", &id), ("severity", &severity)], count);
        }
        out.end_family();
    }
}

/// The `nfscope doctor` JSON document: `{"checks": [...], "findings": [...], "summary": {...}}`.
pub fn render_doctor_json(checks: &[NodeCheck], findings: &[Finding], summary: &Summary) -> String {
    #[derive(Serialize)]
    struct Doctor<'a> {
        checks: &'a [NodeCheck],
        findings: &'a [Finding],
        summary: &'a Summary,
    }
    let mut text = serde_json::to_string_pretty(&Doctor {
        checks,
        findings,
        summary,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// The `nfscope doctor` listing: one line per node check with its evidence, then the lint.
pub fn render_doctor_text(checks: &[NodeCheck], findings: &[Finding], summary: &Summary) -> String {
    let mut out = String::from("node checks:\n");
    for c in checks {
        let _ = writeln!(out, "{:<5} {:<24} {}", c.status.as_str(), c.id, c.summary);
        for e in &c.evidence {
            let _ = writeln!(out, "      {e}");
        }
    }
    out.push_str("\nrules:\n");
    out.push_str(&render_text(findings, summary));
    out
}
