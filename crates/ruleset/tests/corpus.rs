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

/// The parsed model holds no room it does not use (a grown `Vec` keeps four slots for one
/// option), and the names kube-proxy and the save tools write most are stored without an
/// allocation: what keeps a 72.5k-rule parse at about half its former size.
#[test]
fn every_corpus_rule_is_stored_compactly() {
    let common = [
        "comment",
        "tcp",
        "udp",
        "conntrack",
        "set",
        "mark",
        "multiport",
    ];
    let common_options = [
        "comment",
        "dport",
        "sport",
        "ctstate",
        "match-set",
        "dports",
        "mark",
    ];
    let mut checked = 0;
    for (name, text) in corpus_files("rules") {
        let ruleset = parse_ruleset(&text, &ParseOptions::default()).unwrap();
        for table in &ruleset.tables {
            for chain in &table.chains {
                for (i, rule) in chain.rules.iter().enumerate() {
                    let at = format!("{name}: {} {} rule {}", table.name, chain.name, i + 1);
                    let spec = &rule.spec;
                    assert_eq!(spec.matches.capacity(), spec.matches.len(), "{at}: matches");
                    let options = spec
                        .matches
                        .iter()
                        .map(|m| &m.options)
                        .chain(spec.target.as_ref().map(|t| &t.options));
                    for options in options {
                        assert_eq!(options.capacity(), options.len(), "{at}: options");
                        for o in options {
                            assert_eq!(o.values.capacity(), o.values.len(), "{at}: --{}", o.name);
                        }
                    }
                    for m in &spec.matches {
                        if common.contains(&m.module.as_str()) {
                            assert!(m.module.is_static(), "{at}: -m {} allocated", m.module);
                            for o in m
                                .options
                                .iter()
                                .filter(|o| common_options.contains(&&*o.name))
                            {
                                assert!(o.name.is_static(), "{at}: --{} allocated", o.name);
                            }
                        }
                    }
                    if let Some(p) = &spec.protocol
                        && matches!(p.value.as_str(), "tcp" | "udp" | "icmp")
                    {
                        assert!(p.value.is_static(), "{at}: -p {} allocated", p.value);
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "the corpus has rules ({checked})");
}
