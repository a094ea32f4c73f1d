//! The terminal listing of `nfscope rules --format text`.
//!
//! Owns the layout: one heading per ruleset (family, backend, notices), one per table, one per
//! chain with its policy, counters and owner, then numbered rules with right-aligned packet and
//! byte counts, the canonical rule text and the Kubernetes summary after `  # `. It does not own
//! the rule text (`nfscope_ruleset::render_rule_spec`) or the meaning (`nfscope-annotate`).
//! Native nftables tables follow (`crate::native_doc`).

use std::fmt::Write as _;

use nfscope_annotate::{Annotation, Annotations, Owner};
use nfscope_ruleset::{Chain, Counters, Ruleset, Snapshot, escape_control};

use crate::labels::RuleLabels;

/// A readable listing of every ruleset in the snapshot. `annotations` is parallel to
/// `snapshot.rulesets`. Control characters that came from the dump (in chain names, comments,
/// notices) are escaped, so the listing cannot drive the terminal.
pub fn rules_text(snapshot: &Snapshot, annotations: &[Annotations]) -> String {
    let mut out = String::new();
    for (i, rs) in snapshot.rulesets.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        write_ruleset(&mut out, rs, annotations.get(i), &RuleLabels::new(rs));
    }
    crate::native_doc::write_native_text(&mut out, &snapshot.nftables);
    if out.is_empty() {
        out.push_str("no rulesets\n");
    }
    if out.chars().any(|c| c.is_control() && c != '\n') {
        out = out
            .split_inclusive('\n')
            .map(|line| match line.strip_suffix('\n') {
                Some(body) => escape_control(body).into_owned() + "\n",
                None => escape_control(line).into_owned(),
            })
            .collect();
    }
    out
}

/// Column widths shared by every chain of a ruleset, so the numbers line up.
struct Columns {
    index: usize,
    /// `None` when no rule of the ruleset has counters.
    counters: Option<(usize, usize)>,
}

impl Columns {
    fn of(rs: &Ruleset) -> Self {
        let chains = || rs.tables.iter().flat_map(|t| &t.chains);
        let index = chains()
            .map(|c| digits(c.rules.len() as u64))
            .max()
            .unwrap_or(1);
        let counted: Vec<Counters> = chains()
            .flat_map(|c| &c.rules)
            .filter_map(|r| r.counters)
            .collect();
        let counters = (!counted.is_empty()).then(|| {
            let packets = counted.iter().map(|k| digits(k.packets)).max().unwrap_or(1);
            let bytes = counted.iter().map(|k| digits(k.bytes)).max().unwrap_or(1);
            (packets.max("packets".len()), bytes.max("bytes".len()))
        });
        Self { index, counters }
    }
}

fn write_ruleset(out: &mut String, rs: &Ruleset, ann: Option<&Annotations>, labels: &RuleLabels) {
    let _ = writeln!(
        out,
        "=== {} {}{} ({} tables, {} rules) ===",
        rs.family,
        rs.backend,
        if rs.backend_guessed {
            " (guessed: the dump has no header)"
        } else {
            ""
        },
        rs.tables.len(),
        rs.rule_count()
    );
    for notice in &rs.notices {
        let _ = writeln!(out, "note (line {}): {}", notice.line, notice.text);
    }
    let columns = Columns::of(rs);
    for (t, table) in rs.tables.iter().enumerate() {
        let _ = writeln!(out, "\n*{}", table.name);
        for (c, chain) in table.chains.iter().enumerate() {
            let chain_ann = ann.map(|a| a.chain(t, c));
            write_chain_heading(out, chain, chain_ann, &columns);
            for r0 in 0..chain.rules.len() {
                write_rule(out, (t, c, r0), chain, ann, chain_ann, labels, &columns);
            }
        }
    }
}

fn write_chain_heading(
    out: &mut String,
    chain: &Chain,
    ann: Option<&Annotation>,
    columns: &Columns,
) {
    let _ = write!(out, "\nChain {}", chain.name);
    match (chain.policy, chain.counters) {
        (Some(p), Some(k)) => {
            let _ = write!(
                out,
                " (policy {p} {} packets, {} bytes)",
                k.packets, k.bytes
            );
        }
        (Some(p), None) => {
            let _ = write!(out, " (policy {p})");
        }
        (None, _) => {
            let n = chain.rules.len();
            let _ = write!(out, " ({n} {})", if n == 1 { "rule" } else { "rules" });
        }
    }
    if let Some(ann) = ann {
        if ann.owner != Owner::Other {
            let _ = write!(out, "  [{}]", ann.owner.as_str());
        }
        if let Some(meaning) = &ann.meaning {
            let _ = write!(out, "  # {}", meaning.summary());
        }
    }
    out.push('\n');
    if let (Some((pw, bw)), false) = (columns.counters, chain.rules.is_empty()) {
        let _ = writeln!(
            out,
            "  {:>iw$} {:>pw$} {:>bw$}  rule",
            "#",
            "packets",
            "bytes",
            iw = columns.index
        );
    }
}

/// One numbered rule; its summary is shown only when it says more than the chain's.
fn write_rule(
    out: &mut String,
    (t, c, r0): (usize, usize, usize),
    chain: &Chain,
    ann: Option<&Annotations>,
    chain_ann: Option<&Annotation>,
    labels: &RuleLabels,
    columns: &Columns,
) {
    let _ = write!(out, "  {:>iw$}", r0 + 1, iw = columns.index);
    if let Some((pw, bw)) = columns.counters {
        match chain.rules[r0].counters {
            Some(k) => {
                let _ = write!(out, " {:>pw$} {:>bw$}", k.packets, k.bytes);
            }
            None => {
                let _ = write!(out, " {:>pw$} {:>bw$}", "-", "-");
            }
        }
    }
    out.push_str("  ");
    out.push_str(&labels.rule_text(t, c, r0));
    let meaning = ann.and_then(|a| a.rule(t, c, r0).meaning.as_ref());
    let chain_meaning = chain_ann.and_then(|a| a.meaning.as_ref());
    if let Some(meaning) = meaning.filter(|m| Some(*m) != chain_meaning) {
        let _ = write!(out, "  # {}", meaning.summary());
    }
    out.push('\n');
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_counts_decimal_width() {
        assert_eq!(
            (digits(0), digits(9), digits(10), digits(u64::MAX)),
            (1, 1, 2, 20)
        );
    }
}
