//! `--rule-series=not-summarised` on every corpus dump: the rule series it leaves out are exactly
//! those of rules that mean one Service, endpoint, kube-router pod firewall or Calico
//! policy/profile (counted in `nfscope_rule_series_summarised`), every Kubernetes family is the
//! same as with all rule series, and the exposition still passes promtool.

mod common;

use common::{add_counters, parse, snapshot_of};
use nfscope_exporter::{ExportOptions, RuleSeries, SelfMetrics, encode_metrics_with_labels};
use nfscope_test_support::{assert_promtool_clean, corpus_rules, parse_exposition};

/// Sample lines of the families whose names start with `prefix`.
fn samples<'a>(body: &'a str, prefix: &str) -> Vec<&'a str> {
    body.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn value_of(body: &str, name: &str) -> f64 {
    nfscope_test_support::prom::value_of(&parse_exposition(body), name)
}

#[test]
fn not_summarised_leaves_out_exactly_the_kubernetes_object_rules() {
    let mut left_out_somewhere = 0;
    for (name, text) in corpus_rules() {
        let mut ruleset = parse(&name, &text);
        add_counters(&mut ruleset);
        let snapshot = snapshot_of(ruleset);
        let annotations: Vec<_> = snapshot
            .rulesets
            .iter()
            .map(nfscope_annotate::annotate)
            .collect();
        let encode = |rule_series| {
            let opts = ExportOptions {
                rule_series,
                ..ExportOptions::default()
            };
            encode_metrics_with_labels(&snapshot, &annotations, &[], &SelfMetrics::default(), &opts)
        };
        let all = encode(RuleSeries::All);
        let fewer = encode(RuleSeries::NotSummarised);

        // What is left out: rules whose own meaning is one Kubernetes object.
        let mut expected_left_out = 0u64;
        for (r, ann) in snapshot.rulesets.iter().zip(&annotations) {
            for (t, table) in r.tables.iter().enumerate() {
                for (c, chain) in table.chains.iter().enumerate() {
                    for (r0, rule) in chain.rules.iter().enumerate() {
                        let meaning = ann.rule(t, c, r0).meaning.as_ref();
                        if rule.counters.is_some() && summarised(meaning) {
                            expected_left_out += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(
            all.rule_series - fewer.rule_series,
            expected_left_out,
            "{name}"
        );
        assert_eq!(
            value_of(&fewer.body, "nfscope_rule_series_summarised"),
            expected_left_out as f64,
            "{name}"
        );
        assert_eq!(value_of(&all.body, "nfscope_rule_series_summarised"), 0.0);
        assert_eq!(fewer.rule_series_dropped, all.rule_series_dropped, "{name}");
        // No Kubernetes series is lost.
        for family in ["nfscope_kube_", "nfscope_calico_"] {
            assert_eq!(
                samples(&fewer.body, family),
                samples(&all.body, family),
                "{name}: {family}"
            );
        }
        // The series kept are the same lines as with all rule series.
        let kept = samples(&fewer.body, "iptables_rule_packets_total{");
        assert_eq!(kept.len(), fewer.rule_series as usize, "{name}");
        let all_lines: std::collections::HashSet<&str> =
            samples(&all.body, "iptables_rule_packets_total{")
                .into_iter()
                .collect();
        assert!(kept.iter().all(|l| all_lines.contains(l)), "{name}");
        if expected_left_out > 0 {
            assert!(
                !kept.iter().any(|l| l.contains("chain=\"KUBE-SEP-")),
                "{name}: endpoint chains are summarised"
            );
        }
        left_out_somewhere += expected_left_out;
        assert_promtool_clean(&name, &fewer.body);
    }
    assert!(
        left_out_somewhere > 100,
        "the corpus has kube-proxy rules: {left_out_somewhere}"
    );
}

/// The same judgement as the exporter's, restated: Service, endpoint, no-endpoint, kube-router
/// pod firewall and Calico policy/profile meanings.
fn summarised(meaning: Option<&nfscope_annotate::Meaning>) -> bool {
    use nfscope_annotate::Meaning as M;
    matches!(
        meaning,
        Some(
            M::KubeService { .. }
                | M::KubeEndpoint { .. }
                | M::KubeNoEndpoints { .. }
                | M::KubeRouterPod { .. }
                | M::CalicoPolicy { .. }
                | M::CalicoProfile { .. }
        )
    )
}
