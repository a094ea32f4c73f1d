//! Every complete ruleset in the test corpus parses, and render → parse gives the same model.

mod common;

use common::without_lines;
use nfscope_ruleset::{ParseOptions, parse_ruleset, render_ruleset};
use nfscope_test_support::corpus_files;

#[test]
fn every_corpus_ruleset_parses_strictly() {
    let mut failures = Vec::new();
    for (name, text) in corpus_files("rules") {
        if let Err(e) = parse_ruleset(&text, &ParseOptions::default()) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "parse failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_corpus_ruleset_round_trips_through_render() {
    for (name, text) in corpus_files("rules") {
        let first = parse_ruleset(&text, &ParseOptions::default()).unwrap();
        let rendered = render_ruleset(&first);
        let second = parse_ruleset(&rendered, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("{name}: rendered text does not parse: {e}\n{rendered}"));
        assert_eq!(first.family, second.family, "{name}: family");
        assert_eq!(first.backend, second.backend, "{name}: backend");
        assert_eq!(
            without_lines(first.clone()),
            without_lines(second.clone()),
            "{name}: model changed"
        );
        assert_eq!(
            render_ruleset(&second),
            rendered,
            "{name}: rendering is not a fixed point"
        );
    }
}
