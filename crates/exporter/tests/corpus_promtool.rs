//! Every complete corpus ruleset encodes to an exposition that `promtool check metrics` accepts
//! without a single complaint, and that has no duplicate series.

mod common;

use common::{add_counters, parse, snapshot_of};
use nfscope_exporter::{ExportOptions, RuleLabel, SelfMetrics, encode_metrics};
use nfscope_test_support::{assert_promtool_clean, corpus_rules, parse_exposition};

fn self_metrics() -> SelfMetrics {
    SelfMetrics {
        version: "0.1.0-test".into(),
        scrapes_total: 1,
        ..SelfMetrics::default()
    }
}

fn check(name: &str, ruleset: nfscope_ruleset::Ruleset, opts: &ExportOptions) -> usize {
    let annotations = vec![nfscope_annotate::annotate(&ruleset)];
    let with_counters: usize = ruleset
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .filter(|r| r.counters.is_some())
        .count();
    let snapshot = snapshot_of(ruleset);
    let text = encode_metrics(&snapshot, &annotations, &self_metrics(), opts);
    let samples = parse_exposition(&text);
    let rule_series = samples
        .iter()
        .filter(|s| s.name == "iptables_rule_packets_total")
        .count();
    assert_eq!(
        rule_series, with_counters,
        "{name}: one packets series per rule with counters"
    );
    assert_promtool_clean(name, &text);
    rule_series
}

#[test]
fn every_corpus_ruleset_passes_promtool_as_dumped() {
    let mut files = 0;
    for (name, text) in corpus_rules() {
        check(&name, parse(&name, &text), &ExportOptions::default());
        files += 1;
    }
    assert!(files >= 25, "only {files} corpus files");
}

#[test]
fn every_corpus_ruleset_passes_promtool_with_counters_on_every_rule() {
    let (mut series, mut appended) = (0, 0);
    for (name, text) in corpus_rules() {
        appended += text
            .lines()
            .filter(|l| l.starts_with("-A ") || (l.starts_with('[') && l.contains("] -A ")))
            .count();
        let mut ruleset = parse(&name, &text);
        add_counters(&mut ruleset);
        series += check(&name, ruleset.clone(), &ExportOptions::default());
        let no_text = ExportOptions {
            rule_label: RuleLabel::None,
            ..ExportOptions::default()
        };
        check(&format!("{name} (rule_label=None)"), ruleset, &no_text);
    }
    assert_eq!(series, appended, "one series per -A line of the corpus");
}
