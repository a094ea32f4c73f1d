//! Helpers for this crate's integration tests: parsing a corpus dump into a snapshot and giving
//! it counters. The corpus, the exposition parser and promtool come from the workspace's test
//! support.
#![allow(dead_code)]

use nfscope_ruleset::{Ruleset, Snapshot, SourceKind, SourceReport};

/// Parses a dump (lenient, family from the file name) or panics with the error.
pub fn parse(name: &str, text: &str) -> Ruleset {
    let family = name
        .contains(".ip6.")
        .then_some(nfscope_ruleset::Family::Ipv6);
    let opts = nfscope_ruleset::ParseOptions {
        lenient: true,
        family,
        ..Default::default()
    };
    nfscope_ruleset::parse_ruleset(text, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A snapshot of one ruleset with a successful synthetic rules source.
pub fn snapshot_of(ruleset: Ruleset) -> Snapshot {
    let kind = SourceKind::Rules {
        family: ruleset.family,
        backend: ruleset.backend,
    };
    Snapshot {
        rulesets: vec![ruleset],
        ipsets: Vec::new(),
        conntrack: None,
        sources: vec![SourceReport {
            kind,
            method: "test".into(),
            error: None,
            duration_seconds: 0.0125,
        }],
        ..Snapshot::default()
    }
}

/// Gives every rule and declared chain counters derived from its position, so that rulesets
/// from dumps without `-c` still exercise the rule series.
pub fn add_counters(ruleset: &mut Ruleset) {
    let mut n = 0u64;
    for table in &mut ruleset.tables {
        for chain in &mut table.chains {
            for rule in &mut chain.rules {
                n += 1;
                rule.counters = Some(nfscope_ruleset::Counters {
                    packets: n,
                    bytes: n * 60,
                });
            }
        }
    }
}
