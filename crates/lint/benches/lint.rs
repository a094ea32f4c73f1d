//! Lint cost on the generated kube-proxy ruleset (`nfscope-bench`'s generator), to keep the lint
//! linear in chains and jumps, and on the largest corpus dump. Run: `cargo bench -p nfscope-lint --bench lint`.

use nfscope_bench::{GenOptions, kube_proxy_ruleset};
use nfscope_lint::{LintInput, lint};
use nfscope_ruleset::{ParseOptions, parse_ruleset};

fn main() {
    divan::main();
}

/// 1,000 services (14.5k rules) and 5,000 services (72.5k rules, 25k chains), 3 endpoints each.
#[divan::bench(args = [1_000, 5_000], sample_count = 5)]
fn lint_kube_ruleset(bencher: divan::Bencher, services: usize) {
    let text = kube_proxy_ruleset(services, 3, &GenOptions::default());
    let ruleset = parse_ruleset(&text, &ParseOptions::default()).expect("generated ruleset parses");
    bencher.bench(|| {
        lint(&LintInput {
            rulesets: std::slice::from_ref(divan::black_box(&ruleset)),
            ipsets: None,
        })
    });
}

/// The largest corpus dump (`fffuu-tum-net-2015-09-03-large.rules`, 5k rules in few long chains:
/// where pairwise shadowing is at its most expensive).
#[divan::bench(sample_count = 10)]
fn lint_largest_corpus_dump(bencher: divan::Bencher) {
    let text = nfscope_test_support::corpus_file("fffuu-tum-net-2015-09-03-large.rules");
    let ruleset = parse_ruleset(&text, &ParseOptions::default()).expect("corpus dump parses");
    bencher.bench(|| {
        lint(&LintInput {
            rulesets: std::slice::from_ref(divan::black_box(&ruleset)),
            ipsets: None,
        })
    });
}
