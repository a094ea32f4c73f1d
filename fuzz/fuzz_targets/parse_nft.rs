//! Fuzz the native nftables parsers: `parse_nft_text` must never panic, report errors inside the
//! input, and whatever parsed must render to text that parses back to the same rendering;
//! `parse_nft_json` must never panic on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfscope_ruleset::{NftLimits, parse_nft_json, parse_nft_text, render_nft};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lim = NftLimits::default();
    let _ = parse_nft_json(text, &lim);
    match parse_nft_text(text, &lim) {
        Err(e) => {
            let lines = text.matches('\n').count() + 1;
            assert!(e.line >= 1 && e.line <= lines && e.column >= 1, "{e}");
        }
        Ok(rs) => {
            let rendered = render_nft(&rs);
            let back = parse_nft_text(&rendered, &lim).unwrap_or_else(|e| {
                panic!("rendered text does not parse: {e}\n--- input\n{text}\n--- rendered\n{rendered}")
            });
            assert_eq!(render_nft(&back), rendered, "rendering is not a fixed point");
        }
    }
});
