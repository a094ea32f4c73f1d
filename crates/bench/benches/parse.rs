//! Throughput of nfscope's pure pipeline on generated kube-proxy rulesets (1k / 5k / 20k services
//! × 3 endpoints, with counters): `parse_ruleset` (MB/s and rules/s), `annotate`, and
//! `encode_metrics` with fresh and with cached rule labels. Run with
//! `cargo bench -p nfscope-bench --bench parse`; the texts are generated once, outside timing.

use std::sync::OnceLock;

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use nfscope_annotate::annotate;
use nfscope_bench::{GenOptions, count_rules, kube_proxy_ruleset};
use nfscope_exporter::{
    Annotations, ExportOptions, RuleLabels, SelfMetrics, encode_metrics, encode_metrics_with_labels,
};
use nfscope_ruleset::{ParseOptions, Ruleset, Snapshot, parse_ruleset};

const SIZES: [usize; 3] = [1_000, 5_000, 20_000];

fn main() {
    divan::main();
}

/// The generated text of each size, built on first use.
fn text(services: usize) -> &'static str {
    static TEXTS: OnceLock<Vec<(usize, String)>> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        let opts = GenOptions {
            counters: true,
            ..GenOptions::default()
        };
        SIZES
            .iter()
            .map(|&n| (n, kube_proxy_ruleset(n, 3, &opts)))
            .collect()
    });
    &texts
        .iter()
        .find(|(n, _)| *n == services)
        .expect("a benchmarked size")
        .1
}

fn parsed(services: usize) -> Ruleset {
    parse_ruleset(text(services), &ParseOptions::default()).expect("generated text parses")
}

#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn parse(bencher: Bencher, services: usize) {
    let text = text(services);
    bencher
        .counter(BytesCount::of_str(text))
        .counter(ItemsCount::new(count_rules(text)))
        .bench(|| parse_ruleset(divan::black_box(text), &ParseOptions::default()).expect("parses"));
}

#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn annotate_ruleset(bencher: Bencher, services: usize) {
    let ruleset = parsed(services);
    bencher
        .counter(ItemsCount::new(count_rules(text(services))))
        .bench(|| annotate(divan::black_box(&ruleset)));
}

fn snapshot_and_annotations(services: usize) -> (Snapshot, Vec<Annotations>) {
    let ruleset = parsed(services);
    let annotations = vec![annotate(&ruleset)];
    let snapshot = Snapshot {
        rulesets: vec![ruleset],
        ..Snapshot::default()
    };
    (snapshot, annotations)
}

/// A whole exposition with rule labels rendered and hashed from scratch (a server's first scrape).
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn encode_fresh_labels(bencher: Bencher, services: usize) {
    let (snapshot, annotations) = snapshot_and_annotations(services);
    let opts = ExportOptions::default();
    bencher
        .counter(ItemsCount::new(count_rules(text(services))))
        .bench(|| encode_metrics(&snapshot, &annotations, &SelfMetrics::default(), &opts));
}

/// The steady state: rules unchanged since the last scrape, labels reused, only counters written.
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn encode_cached_labels(bencher: Bencher, services: usize) {
    let (snapshot, annotations) = snapshot_and_annotations(services);
    let labels = vec![RuleLabels::new(&snapshot.rulesets[0])];
    let opts = ExportOptions::default();
    bencher
        .counter(ItemsCount::new(count_rules(text(services))))
        .bench(|| {
            encode_metrics_with_labels(
                &snapshot,
                &annotations,
                &labels,
                &SelfMetrics::default(),
                &opts,
            )
        });
}

/// The baseline's whole job (split lines, build label strings, write exposition), for comparison.
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn naive_baseline(bencher: Bencher, services: usize) {
    let text = text(services);
    bencher
        .counter(BytesCount::of_str(text))
        .counter(ItemsCount::new(count_rules(text)))
        .bench(|| nfscope_bench::naive::exposition_from_save(divan::black_box(text)));
}
