//! Fuzz `parse_ipsets`: any input gives sets or a located error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfscope_ruleset::parse_ipsets;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = parse_ipsets(text) {
        assert!(e.line >= 1 && e.column >= 1, "{e}");
    }
});
