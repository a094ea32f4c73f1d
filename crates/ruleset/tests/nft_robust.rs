//! Bad input never panics the nft parsers: every prefix of every corpus file, corpus files with
//! pieces cut out, and arbitrary token soups either parse (and then render to a fixed point) or
//! fail with a `line:col` inside the input.

use nfscope_ruleset::{NftLimits, parse_nft_json, parse_nft_text, render_nft};
use nfscope_test_support::nft_corpus_files;
use proptest::prelude::*;

/// Parses `text`; when it parses, rendering must re-parse to the same rendering; when it fails,
/// the position must lie inside the input.
fn check(text: &str) {
    match parse_nft_text(text, &NftLimits::default()) {
        Ok(rs) => {
            let r = render_nft(&rs);
            let again = parse_nft_text(&r, &NftLimits::default())
                .unwrap_or_else(|e| panic!("rendering does not parse: {e}\n{r}\nfrom:\n{text}"));
            assert_eq!(render_nft(&again), r, "not a fixed point, from:\n{text}");
        }
        Err(e) => {
            let lines = text.matches('\n').count() + 1;
            assert!(
                e.line >= 1 && e.line <= lines && e.column >= 1,
                "{e} outside the input ({lines} lines)"
            );
            assert!(!e.message.is_empty());
        }
    }
}

#[test]
fn every_prefix_of_every_corpus_file_is_handled() {
    for (name, text) in nft_corpus_files(".nft") {
        let cuts: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .step_by((text.len() / 150).max(1))
            .collect();
        for cut in cuts {
            let piece = &text[..cut];
            std::panic::catch_unwind(|| check(piece))
                .unwrap_or_else(|_| panic!("{name}: panicked on the first {cut} bytes"));
        }
    }
}

#[test]
fn corpus_files_with_a_line_removed_are_handled() {
    for (name, text) in nft_corpus_files(".nft") {
        let lines: Vec<&str> = text.lines().collect();
        for skip in (0..lines.len()).step_by((lines.len() / 40).max(1)) {
            let mut t: Vec<&str> = lines.clone();
            t.remove(skip);
            let t = t.join("\n");
            std::panic::catch_unwind(|| check(&t))
                .unwrap_or_else(|_| panic!("{name}: panicked without line {}", skip + 1));
        }
    }
}

#[test]
fn truncated_json_is_an_error_not_a_panic() {
    for (name, text) in nft_corpus_files(".json") {
        for cut in (0..text.len()).step_by((text.len() / 50).max(1)) {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let r = parse_nft_json(&text[..cut], &NftLimits::default());
            assert!(r.is_err() || cut == 0, "{name}: {cut} bytes parsed");
        }
    }
}

const WORDS: &[&str] = &[
    "table",
    "ip",
    "inet",
    "chain",
    "set",
    "map",
    "type",
    "filter",
    "hook",
    "input",
    "priority",
    "dstnat",
    "-",
    "10",
    "policy",
    "accept",
    "drop",
    "{",
    "}",
    ";",
    ",",
    "\n",
    "ip",
    "saddr",
    "daddr",
    "tcp",
    "dport",
    "meta",
    "mark",
    "ct",
    "state",
    "new",
    "vmap",
    "@s",
    ":",
    ".",
    "goto",
    "jump",
    "c",
    "elements",
    "=",
    "10.0.0.0/8",
    "1-5",
    "\"x\"",
    "\"",
    "#",
    "handle",
    "1",
    "!=",
    "&",
    "0x10",
    "dnat",
    "to",
    "1.2.3.4:80",
    "numgen",
    "random",
    "mod",
    "2",
    "counter",
    "packets",
    "bytes",
    "comment",
    "reject",
    "with",
    "fib",
    "type",
    "local",
    "limit",
    "rate",
    "(",
    ")",
    "\\",
    "[::1]:53",
    "typeof",
    "flags",
    "interval",
    "log",
    "prefix",
    "queue",
    "update",
    "é",
    "\u{1b}",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn token_soup_never_panics(idx in prop::collection::vec(0..WORDS.len(), 0..80)) {
        let text: String = idx.iter().map(|&i| WORDS[i]).collect::<Vec<_>>().join(" ");
        check(&text);
        let wrapped = format!("table ip t {{\n\tchain c {{\n\t\t{text}\n\t}}\n}}\n");
        check(&wrapped);
    }
}
