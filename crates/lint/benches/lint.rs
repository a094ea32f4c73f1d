//! Lint cost on the generated kube-proxy ruleset (`nfscope-bench`'s generator), to keep the lint
//! linear in chains and jumps. Run: `cargo bench -p nfscope-lint --bench lint`.

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
