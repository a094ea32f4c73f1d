//! Helpers for this crate's integration tests: the corpus (from the workspace's test support)
//! and comparing models.
#![allow(dead_code)]

pub mod strict_cases;

use nfscope_ruleset::{Ruleset, Table};

/// The ruleset with every `line` field zeroed and notices dropped, for round-trip comparison.
pub fn without_lines(mut rs: Ruleset) -> Ruleset {
    rs.notices.clear();
    for t in &mut rs.tables {
        zero_table(t);
    }
    rs
}

fn zero_table(t: &mut Table) {
    t.line = 0;
    for c in &mut t.chains {
        c.line = 0;
        for r in &mut c.rules {
            r.line = 0;
        }
    }
}
