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
    Annotations, CountedRules, ExportOptions, RuleLabels, SelfMetrics, encode_counters_streaming,
    encode_metrics,
};
use nfscope_ruleset::{ParseOptions, Ruleset, RulesetCounters, Snapshot, parse_ruleset};

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

/// The steady state of a server: rules unchanged since the last scrape, labels (with the
/// Kubernetes plan) reused, only counters (`RulesetCounters`) written, streamed in the server's
/// 112 KiB chunks.
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn encode_cached_labels(bencher: Bencher, services: usize) {
    let (snapshot, annotations) = snapshot_and_annotations(services);
    let ruleset = &snapshot.rulesets[0];
    let mut labels = RuleLabels::new(ruleset);
    labels.attach_kube_plan(ruleset, &annotations[0]);
    let counters = RulesetCounters::of(ruleset);
    let rest = Snapshot::default();
    let opts = ExportOptions::default();
    bencher
        .counter(ItemsCount::new(count_rules(text(services))))
        .bench(|| {
            let rules = [CountedRules {
                counters: &counters,
                labels: &labels,
            }];
            let mut bytes = 0;
            let mut sink = |chunk: String| {
                bytes += chunk.len();
                Ok(())
            };
            let streamed = encode_counters_streaming(
                &rules,
                &rest,
                &SelfMetrics::default(),
                &opts,
                112 * 1024,
                &mut sink,
            )
            .expect("the sink stays open");
            bytes + streamed.tail.len()
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
