//! The full exposition of one small real dump with counters, for reviewers to read.

mod common;

use common::{parse, snapshot_of};
use nfscope_exporter::{ExportOptions, SelfMetrics, encode_metrics, rules_text};
use nfscope_test_support::corpus_file;

fn k3s() -> (
    nfscope_ruleset::Snapshot,
    Vec<nfscope_exporter::Annotations>,
) {
    let ruleset = parse(
        "k3s",
        &corpus_file("k3s-node-iptables-save-c-counters-2022.rules"),
    );
    let annotations = vec![nfscope_annotate::annotate(&ruleset)];
    (snapshot_of(ruleset), annotations)
}

#[test]
fn k3s_counters_exposition() {
    let (snapshot, annotations) = k3s();
    let self_metrics = SelfMetrics {
        version: "0.1.0".into(),
        scrapes_total: 1,
        ..SelfMetrics::default()
    };
    let text = encode_metrics(
        &snapshot,
        &annotations,
        &self_metrics,
        &ExportOptions::default(),
    );
    insta::assert_snapshot!(text);
}

#[test]
fn k3s_counters_text_listing() {
    let (snapshot, annotations) = k3s();
    insta::assert_snapshot!(rules_text(&snapshot, &annotations));
}
