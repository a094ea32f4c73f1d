//! A compact, reviewed summary per corpus dump (tables, chain and rule counts, modules, notices),
//! pinned with insta, plus an independent count of `-A` lines against the parsed rule count.

mod common;

use std::collections::BTreeSet;

use nfscope_ruleset::{NoticeKind, ParseOptions, Ruleset, parse_ruleset};
use nfscope_test_support::corpus_files;
use serde::Serialize;

#[derive(Serialize)]
struct TableSummary {
    name: String,
    chains: usize,
    builtin_policies: Vec<String>,
    rules: usize,
    rules_with_counters: usize,
    rules_without_target: usize,
}

#[derive(Serialize)]
struct Summary {
    family: String,
    backend: String,
    tables: Vec<TableSummary>,
    modules: BTreeSet<String>,
    extension_targets: BTreeSet<String>,
    notices: Vec<String>,
}

fn summarize(rs: &Ruleset) -> Summary {
    let mut modules = BTreeSet::new();
    let mut extension_targets = BTreeSet::new();
    let tables = rs
        .tables
        .iter()
        .map(|t| {
            let rules = t.chains.iter().flat_map(|c| &c.rules);
            for r in rules.clone() {
                modules.extend(r.spec.matches.iter().map(|m| m.module.to_string()));
                if let Some(name) = r.spec.target_name().filter(|n| t.chain(n).is_none()) {
                    extension_targets.insert(name.to_owned());
                }
            }
            TableSummary {
                name: t.name.clone(),
                chains: t.chains.len(),
                builtin_policies: t
                    .chains
                    .iter()
                    .filter(|c| c.is_builtin())
                    .map(|c| {
                        format!(
                            "{} {}",
                            c.name,
                            c.policy.map_or("(undeclared)", |p| p.as_str())
                        )
                    })
                    .collect(),
                rules: t.rule_count(),
                rules_with_counters: rules.clone().filter(|r| r.counters.is_some()).count(),
                rules_without_target: rules.filter(|r| r.spec.target.is_none()).count(),
            }
        })
        .collect();
    let notices = rs
        .notices
        .iter()
        .map(|n| match &n.kind {
            NoticeKind::IncompatibleTable { table } => {
                format!("{}: incompatible table {table}", n.line)
            }
            other => format!("{}: {other:?}", n.line),
        })
        .collect();
    Summary {
        family: rs.family.to_string(),
        backend: rs.backend.to_string(),
        tables,
        modules,
        extension_targets,
        notices,
    }
}

#[test]
fn corpus_summaries() {
    for (name, text) in corpus_files("rules") {
        let rs = parse_ruleset(&text, &ParseOptions::default()).unwrap();
        insta::assert_yaml_snapshot!(name.trim_end_matches(".rules").to_owned(), summarize(&rs));
    }
}

#[test]
fn rule_count_matches_the_append_lines_in_each_dump() {
    for (name, text) in corpus_files("rules") {
        let appends = text
            .lines()
            .map(|l| l.trim_start())
            .map(|l| {
                if l.starts_with('[') {
                    l.split_once("] ").map_or(l, |x| x.1)
                } else {
                    l
                }
            })
            .filter(|l| l.starts_with("-A "))
            .count();
        let rs = parse_ruleset(&text, &ParseOptions::default()).unwrap();
        assert_eq!(rs.rule_count(), appends, "{name}");
    }
}
