//! Fuzz `parse_ruleset` in strict and lenient mode: it must never panic, and whatever parsed must
//! render to text that parses back (strictly, with the same family and backend) to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfscope_ruleset::{ParseOptions, Ruleset, parse_ruleset, render_rule_spec, render_ruleset};

/// The model without `line` fields, notices and whether the backend was a guess (the reparse is
/// told the backend), which rendering does not preserve.
fn comparable(mut rs: Ruleset) -> Ruleset {
    rs.notices.clear();
    rs.backend_guessed = false;
    for t in &mut rs.tables {
        t.line = 0;
        for c in &mut t.chains {
            c.line = 0;
            c.rules.iter_mut().for_each(|r| r.line = 0);
        }
    }
    rs
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for lenient in [false, true] {
        let opts = ParseOptions { lenient, ..Default::default() };
        let Ok(rs) = parse_ruleset(text, &opts) else { continue };
        for rule in rs.tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules) {
            let _ = render_rule_spec(&rule.spec);
        }
        let rendered = render_ruleset(&rs);
        let again = ParseOptions { family: Some(rs.family), backend: Some(rs.backend), ..Default::default() };
        let back = parse_ruleset(&rendered, &again)
            .unwrap_or_else(|e| panic!("rendered text does not parse: {e}\n--- input\n{text}\n--- rendered\n{rendered}"));
        assert_eq!(render_ruleset(&back), rendered, "rendering is not a fixed point");
        assert_eq!(comparable(back), comparable(rs), "model changed through render\n{rendered}");
    }
});
