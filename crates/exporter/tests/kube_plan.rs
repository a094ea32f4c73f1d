//! What a server encodes from rule *skeletons* (specs dropped) plus cached labels carrying the
//! Kubernetes series plan equals what the full rulesets with their annotations give, byte for
//! byte, on every corpus dump with counters (the kube-proxy, kube-router and Calico ones feed
//! the Kubernetes families).

mod common;

use common::{add_counters, parse, snapshot_of};
use nfscope_exporter::{ExportOptions, RuleLabels, SelfMetrics, encode_metrics_with_labels};
use nfscope_test_support::corpus_rules;

#[test]
fn skeletons_with_planned_labels_encode_like_annotated_rulesets() {
    let mut families = std::collections::BTreeSet::new();
    for (name, text) in corpus_rules() {
        let mut ruleset = parse(&name, &text);
        add_counters(&mut ruleset);
        let full = snapshot_of(ruleset.clone());
        let annotations: Vec<_> = full
            .rulesets
            .iter()
            .map(nfscope_annotate::annotate)
            .collect();
        let expected = encode_metrics_with_labels(
            &full,
            &annotations,
            &[],
            &SelfMetrics::default(),
            &ExportOptions::default(),
        )
        .body;

        let labels: Vec<RuleLabels> = full
            .rulesets
            .iter()
            .zip(&annotations)
            .map(|(r, a)| {
                let mut labels = RuleLabels::new(r);
                labels.attach_kube_plan(r, a);
                labels
            })
            .collect();
        let mut skeleton = full.clone();
        for r in &mut skeleton.rulesets {
            r.drop_rule_specs();
        }
        let got = encode_metrics_with_labels(
            &skeleton,
            &[],
            &labels,
            &SelfMetrics::default(),
            &ExportOptions::default(),
        )
        .body;
        assert_eq!(got, expected, "{name}");
        families.extend(
            expected
                .lines()
                .filter(|l| l.starts_with("nfscope_kube_") || l.starts_with("nfscope_calico_"))
                .filter_map(|l| l.split('{').next().map(str::to_owned)),
        );
    }
    assert!(
        families.len() >= 3,
        "the corpus feeds the Kubernetes families: {families:?}"
    );
}
