//! What a server encodes from rule *counters* (`RulesetCounters`, no specs) plus cached labels
//! carrying the Kubernetes series plan equals what the full rulesets with their annotations
//! give, byte for byte, on every corpus dump with counters (the kube-proxy, kube-router and
//! Calico ones feed the Kubernetes families).

mod common;

use common::{add_counters, parse, snapshot_of};
use nfscope_exporter::{
    CountedRules, ExportOptions, RuleLabels, SelfMetrics, Snapshot, encode_counters_streaming,
    encode_metrics_with_labels,
};
use nfscope_ruleset::RulesetCounters;
use nfscope_test_support::corpus_rules;

#[test]
fn skeletons_with_planned_labels_encode_like_annotated_rulesets() {
    let mut families = std::collections::BTreeSet::new();
    let mut endpoints = 0;
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
        let counters: Vec<RulesetCounters> =
            full.rulesets.iter().map(RulesetCounters::of).collect();
        let rules: Vec<CountedRules<'_>> = counters
            .iter()
            .zip(&labels)
            .map(|(counters, labels)| CountedRules { counters, labels })
            .collect();
        let rest = Snapshot {
            rulesets: Vec::new(),
            ..full.clone()
        };
        let mut got = String::new();
        let mut sink = |chunk: String| {
            got.push_str(&chunk);
            Ok(())
        };
        let streamed = encode_counters_streaming(
            &rules,
            &rest,
            &SelfMetrics::default(),
            &ExportOptions::default(),
            4096,
            &mut sink,
        )
        .expect("the sink stays open");
        got.push_str(&streamed.tail);
        assert_eq!(got, expected, "{name}");
        // The endpoints handed on for `nfscope_kube_endpoint_info` are those of the series.
        let series: Vec<&str> = expected
            .lines()
            .filter(|l| l.starts_with("nfscope_kube_endpoint_new_connections_total{"))
            .filter_map(|l| l.split("endpoint=\"").nth(1)?.split('"').next())
            .collect();
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&str> = series.into_iter().filter(|e| seen.insert(*e)).collect();
        assert_eq!(streamed.kube_endpoints, unique, "{name}");
        endpoints += unique.len();
        families.extend(
            expected
                .lines()
                .filter(|l| l.starts_with("nfscope_kube_") || l.starts_with("nfscope_calico_"))
                .filter_map(|l| l.split('{').next().map(str::to_owned)),
        );
    }
    assert!(endpoints > 0, "the corpus has kube-proxy endpoints");
    assert!(
        families.len() >= 3,
        "the corpus feeds the Kubernetes families: {families:?}"
    );
}
