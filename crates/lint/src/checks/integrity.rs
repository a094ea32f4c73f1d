//! Can the dump be trusted? Garbled targets (a host `iptables-save` older than the binary that
//! wrote the rule), lines a lenient parse skipped, tables iptables-nft could not list, and the
//! "legacy tables present" warning of one dump.
//!
//! It does not compare several dumps (see [`super::cross`]).

use nfscope_ruleset::NoticeKind;

use super::Ctx;
use crate::finding::{FindingId, Severity};

/// Runs the integrity checks of one ruleset.
pub fn check(ctx: &mut Ctx<'_>) {
    notices(ctx);
    let ruleset = ctx.ruleset;
    for (t, table) in ruleset.tables.iter().enumerate() {
        for (c, chain) in table.chains.iter().enumerate() {
            for (r, rule) in chain.rules.iter().enumerate() {
                if let Some(reason) = rule.garbled_nat() {
                    let message = format!(
                        "the dump cannot show this rule faithfully ({reason}); the rule in the kernel is \
                         fine, but the iptables-save that printed it is older than the iptables that \
                         wrote it (userspace/kernel revision mismatch). Do not restore this dump, and \
                         read the rules with the writer's own iptables (e.g. inside kube-proxy's image)"
                    );
                    ctx.report(
                        FindingId::GarbledRule,
                        Severity::Error,
                        (t, Some(c), Some(r)),
                        message,
                        vec![],
                    );
                }
            }
        }
    }
}

fn notices(ctx: &mut Ctx<'_>) {
    let ruleset = ctx.ruleset;
    let family = ruleset.family;
    for notice in &ruleset.notices {
        let line = notice.line;
        let (id, severity, message) = match &notice.kind {
            NoticeKind::IncompatibleTable { table } => (
                FindingId::IncompatibleTable,
                Severity::Error,
                format!(
                    "table {table} holds native nftables rules that iptables-nft cannot \
                     list; it is missing from this dump, not empty, and iptables commands (and \
                     kube-proxy's iptables-restore) on it fail. Inspect it with `nft list table ip {table}`"
                ),
            ),
            NoticeKind::LegacyTablesPresent => (
                FindingId::MixedBackends,
                Severity::Warning,
                format!(
                    "iptables-legacy also holds {family} rules and they are active at the \
                     same time as these; this dump does not show them (read them with \
                     iptables-legacy-save)"
                ),
            ),
            NoticeKind::IgnoredLine { reason } => (
                FindingId::GarbledRule,
                Severity::Warning,
                format!(
                    "a line was skipped ({reason}): {:?}; whatever it said is missing from the lint",
                    notice.text
                ),
            ),
            NoticeKind::TableReplaced { table, first_line } => (
                FindingId::GarbledRule,
                Severity::Warning,
                format!(
                    "table {table} is given a second time; iptables-restore flushes it \
                     there, so the section from line {first_line} never takes effect and only this \
                     one is linted"
                ),
            ),
            NoticeKind::Deprecated { .. } | NoticeKind::SkippedOtherFamily => continue,
        };
        let mut finding_at = (usize::MAX, None, None);
        if let NoticeKind::IncompatibleTable { table } = &notice.kind {
            finding_at.0 = ctx
                .ruleset
                .tables
                .iter()
                .position(|t| &t.name == table)
                .unwrap_or(usize::MAX);
        }
        ctx.report(id, severity, finding_at, message, vec![]);
        if let Some(last) = ctx.findings.last_mut() {
            last.location.line = Some(line).filter(|&l| l > 0);
            if let NoticeKind::IncompatibleTable { table } = &notice.kind {
                last.location.table = Some(table.clone());
            }
        }
    }
}
